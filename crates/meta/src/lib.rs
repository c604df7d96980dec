//! Registry metadata: repositories, blob links, manifests, tags, referrers,
//! accounts and tokens ([`accounts`], [`tokens`]), the audit log ([`audit`]),
//! retention policies, background jobs, the event outbox ([`events`]),
//! webhooks with their deliveries ([`webhooks`]) and the offline
//! vulnerability database ([`vulndb`]).
//!
//! One API over two engines: SQLite (the embedded default) and PostgreSQL
//! (scale-out). Both go through sqlx's `Any` driver with portable SQL only
//! (`$n` placeholders, `ON CONFLICT`, `RETURNING`); the schema differs only
//! where the engines' types differ, in one migration list per dialect
//! ([`migrations`]). This layer knows nothing about HTTP or blob bytes.
//!
//! Times are Unix milliseconds (`i64`). Digests, repository names,
//! namespaces and tags cross this API as the validated types of
//! `berth_oci` ([`Digest`], [`RepositoryName`], [`berth_oci::Namespace`],
//! [`Tag`]) and are stored as their canonical strings; a stored value that
//! no longer parses is [`Error::Corrupt`].

use berth_oci::{Digest, Namespace, RepositoryName, Tag};

pub mod accounts;
pub mod allowances;
pub mod audit;
pub mod backup;
pub mod certificates;
pub mod changes;
mod commit;
pub use commit::BoxFuture;
mod db;
pub mod events;
mod gc;
mod inventory;
mod inventory_cache;
mod jobs;
pub mod migrations;
mod mirror_checks;
pub mod oidc;
mod queries;
pub mod replication;
mod retention;
mod rules;
pub mod scans;
mod scrub;
pub mod sessions;
mod shared;
mod stats;
pub mod tag_page;
pub mod tokens;
pub mod transfer;
pub mod trust;
mod usage;
pub mod vulndb;
pub mod webhooks;
pub(crate) mod writes;

pub use db::{is_postgres_url, redact_url, Dialect, Meta, PoolOptions};
pub use gc::{LinkAge, Unreferenced};
pub use inventory::{Inventory, ManifestInfo, ManifestRef, TagInfo};
pub use jobs::{JobRun, Lease};
pub use queries::{AttestationRef, ManifestRecord, NewManifest, RefKind, Referrer};
pub use retention::{Deletion, ManifestTarget, StoredPolicy};
pub use rules::{TagGuard, TagRule, TagRuleKind};
pub use scrub::{BlobUser, ScrubProgress};
pub use stats::{PullDelta, PullTarget};
pub use usage::{Content, ContentKind, Quota, RepositoryUsage, UsageSummary};

/// Errors of the metadata layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database failed (the driver's error is the source).
    #[error("metadata database error: {0}")]
    Db(#[from] sqlx::Error),
    /// The database URL names an engine berth does not support.
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://...")]
    UnsupportedUrl(String),
    /// Stored data that cannot be decoded.
    #[error("corrupt metadata: {0}")]
    Corrupt(String),
    /// The database was migrated by a newer berth, whose schema this one
    /// does not know: nothing was changed.
    #[error(
        "the metadata database has schema version {stored}, newer than the {known} this berth \
         knows (a newer berth migrated it): run that berth, or restore a backup taken before \
         the upgrade"
    )]
    NewerSchema {
        /// The newest version applied to the database.
        stored: i64,
        /// The newest version this build knows.
        known: i64,
    },
    /// A group commit failed; the source is the batch's error, shared by
    /// every write of the batch.
    #[error("metadata commit failed: {0}")]
    Commit(#[source] std::sync::Arc<Error>),
    /// The metadata writer task has stopped (the server is shutting down).
    #[error("the metadata writer has stopped")]
    WriterStopped,
    /// A guarded write was refused (a tag rule, a quota); the message says
    /// why and is meant for the client. Nothing was written.
    #[error("{0}")]
    Refused(String),
    /// A manifest being stored references a blob or manifest that is not
    /// (or no longer) in its repository.
    #[error("{kind} {digest} referenced by the manifest is not in repository {repository}")]
    MissingReference {
        /// `blob` or `manifest`.
        kind: &'static str,
        /// The missing digest.
        digest: Digest,
        /// The repository.
        repository: RepositoryName,
    },
}

impl Error {
    /// Whether the database could not be reached or is restarting (the
    /// connection failed, the pool timed out, the server is shutting down
    /// or cancelled the statement): a failure to retry later, not a bug.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Error::Db(e) => match e {
                sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed
                | sqlx::Error::Protocol(_) => true,
                sqlx::Error::Database(d) => d.code().is_some_and(|c| {
                    // 08: connection exception; 57P0x: shutting down or
                    // starting; 57014: statement timeout; 53300: too
                    // many connections.
                    c.starts_with("08") || c.starts_with("57P") || c == "57014" || c == "53300"
                }),
                _ => false,
            },
            Error::Commit(e) => e.is_unavailable(),
            Error::WriterStopped => false,
            _ => false,
        }
    }
}

/// Column `i` of `row` as a digest.
pub(crate) fn digest_at(row: &sqlx::any::AnyRow, i: usize) -> Result<Digest> {
    use sqlx::Row as _;
    let s: String = row.try_get(i)?;
    Digest::parse(&s).map_err(|e| Error::Corrupt(format!("stored digest: {e}")))
}

/// Column `i` of `row` as a digest, if not NULL.
pub(crate) fn optional_digest_at(row: &sqlx::any::AnyRow, i: usize) -> Result<Option<Digest>> {
    use sqlx::Row as _;
    let s: Option<String> = row.try_get(i)?;
    s.map(|s| Digest::parse(&s).map_err(|e| Error::Corrupt(format!("stored digest: {e}"))))
        .transpose()
}

/// Column `i` of `row` as a repository name.
pub(crate) fn repository_at(row: &sqlx::any::AnyRow, i: usize) -> Result<RepositoryName> {
    use sqlx::Row as _;
    let s: String = row.try_get(i)?;
    RepositoryName::parse(s).map_err(|e| Error::Corrupt(format!("stored repository name: {e}")))
}

/// Column `i` of `row` as a namespace, if not NULL.
pub(crate) fn namespace_at(row: &sqlx::any::AnyRow, i: usize) -> Result<Option<Namespace>> {
    use sqlx::Row as _;
    let s: Option<String> = row.try_get(i)?;
    s.map(|s| Namespace::parse(s).map_err(|e| Error::Corrupt(format!("stored namespace: {e}"))))
        .transpose()
}

/// Column `i` of `row` as a tag.
pub(crate) fn tag_at(row: &sqlx::any::AnyRow, i: usize) -> Result<Tag> {
    use sqlx::Row as _;
    let s: String = row.try_get(i)?;
    Tag::parse(s).map_err(|e| Error::Corrupt(format!("stored tag: {e}")))
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Current time in Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
