//! Registry metadata: repositories, blob links, manifests, tags, referrers,
//! accounts and tokens ([`accounts`], [`tokens`]), the audit log ([`audit`]),
//! retention policies, background jobs.
//!
//! One API over two engines: SQLite (the embedded default) and PostgreSQL
//! (scale-out). Both go through sqlx's `Any` driver with portable SQL only
//! (`$n` placeholders, `ON CONFLICT`, `RETURNING`); the schema differs only
//! where the engines' types differ, in one migration list per dialect
//! ([`migrations`]). This layer knows nothing about HTTP or blob bytes.
//!
//! Times are Unix milliseconds (`i64`); digests are their canonical strings.

pub mod accounts;
pub mod audit;
pub mod certificates;
mod commit;
pub use commit::BoxFuture;
mod db;
mod gc;
mod inventory;
mod jobs;
pub mod migrations;
mod queries;
mod retention;
mod rules;
mod stats;
pub mod tokens;
mod usage;
pub(crate) mod writes;

pub use db::{Dialect, Meta};
pub use gc::{LinkAge, Unreferenced};
pub use inventory::{Inventory, ManifestInfo, ManifestRef, TagInfo};
pub use jobs::{JobRun, Lease};
pub use queries::{ManifestRecord, NewManifest, RefKind, Referrer};
pub use retention::{Deletion, ManifestTarget, StoredPolicy};
pub use rules::{TagGuard, TagRule, TagRuleKind};
pub use stats::{PullDelta, PullTarget};
pub use usage::{Content, ContentKind, Quota};

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
        digest: String,
        /// The repository.
        repository: String,
    },
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
