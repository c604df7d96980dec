//! berth's core services: the use cases of an OCI registry.
//!
//! Each operation (push, pull, delete, mount, upload, list, referrers) is a
//! plain async method of [`Registry`] over a [`BlobStore`] and the metadata
//! database ([`Meta`]). This layer decides what is allowed and what is valid;
//! it knows nothing about HTTP types. Its one error enum, [`Error`], says which
//! OCI error code each failure is.

use std::sync::Arc;
use std::time::Duration;

use berth_meta::Meta;
use berth_oci::RepositoryName;
use berth_store::BlobStore;

pub mod auth;
mod blobs;
mod cache;
mod caller;
mod error;
mod gc;
pub mod glob;
pub mod invalidation;
mod inventory;
mod jobs;
mod listing;
mod manifests;
pub mod mirror_cache;
mod mirror_tags;
pub mod observe;
mod pulls;
mod quota;
mod referrer_docs;
pub mod replication;
pub mod retention;
mod rules;
pub mod scanning;
pub mod scrub;
mod serving;
mod snapshot;
mod tag_page;
pub mod trust;
mod uploads;
pub mod vulndb;
pub mod webhooks;
pub mod worker;

pub use berth_meta::accounts::{Member, Namespace, NamespaceKind, Role, User, Visibility};
pub use berth_meta::audit::{AuditFilter, StoredEvent};
pub use berth_meta::tokens::{TokenKind, TokenRecord};
pub use berth_meta::{now_ms, JobRun, TagRule, TagRuleKind};
pub use berth_scan::sbom::read::{Listed, Listing};
pub use berth_store::{BlobBody, BlobRead, ByteStream, Staged, UploadInfo};
pub use blobs::ByteRange;
pub use caller::Caller;
pub use error::{Error, Kind, UploadRef, UpstreamFailure};
pub use gc::{GcCounts, GcHeld, GcItem, GcReport, GcUpload, GC_JOB};
pub use inventory::{AttestationView, ManifestView, TagView};
pub use jobs::{DueJob, GcSchedule};
pub use listing::{Page, ReferrersIndex};
pub use manifests::{accepts, ManifestEntry, PushedManifest};
pub use pulls::{Count, PullStats};
pub use quota::{NamespaceTotals, NamespaceUsage, QuotaView, RepositoryUsage};
pub use referrer_docs::{ReferrerDetail, ReferrerKind, MAX_DOCUMENT};
pub use rules::TagRules;
pub use scrub::{ScrubReport, SCRUB_JOB};
pub use serving::Reader;
pub use tag_page::{SignatureState, TagOrder, TagPage, TagPageQuery};
pub use uploads::UPLOAD_PURGE_JOB;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Tunables of the core services.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Largest manifest accepted, in bytes.
    pub max_manifest_bytes: usize,
    /// Upload sessions untouched for longer than this are removed.
    pub upload_ttl: Duration,
    /// Whether other processes write the same database (replicas sharing
    /// a PostgreSQL). Then what another replica can change (tag
    /// resolutions, manifests, blob links, tag rules, quotas, trust
    /// settings) is cached only while the database's change notifications
    /// are heard ([`invalidation`]; `Meta::start_listening`), and quota
    /// reservations of open uploads live in the database, so a change
    /// through any replica is seen by all on the next request. `false`
    /// (one process, SQLite): those are cached, exactly, because every
    /// change passes through this process.
    pub shared_database: bool,
    /// Garbage collection removes only unreferenced content older than
    /// this: the longest a push may take from its first blob to its
    /// manifest.
    pub gc_grace_period: Duration,
    /// How often garbage collection runs on its own; `None`: only on
    /// demand.
    pub gc_interval: Option<Duration>,
    /// Webhook delivery.
    pub webhooks: webhooks::Settings,
    /// How often the integrity scrub runs on its own; `None`: only on
    /// demand.
    pub scrub_interval: Option<Duration>,
    /// Bytes per second the scrub reads at most, while the server serves
    /// no request; a tenth of it while it does (0: no limit).
    pub scrub_rate: u64,
    /// The pull-through mirror's caches (its upstreams' namespaces) and
    /// their size limits.
    pub mirror_cache: mirror_cache::Settings,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_manifest_bytes: 4 * 1024 * 1024,
            upload_ttl: Duration::from_secs(24 * 3600),
            shared_database: false,
            gc_grace_period: Duration::from_secs(3600),
            gc_interval: Some(Duration::from_secs(24 * 3600)),
            webhooks: webhooks::Settings::default(),
            scrub_interval: None,
            scrub_rate: 50 * 1024 * 1024,
            mirror_cache: mirror_cache::Settings::default(),
        }
    }
}

/// The registry: storage, metadata and the rules that tie them together.
pub struct Registry {
    store: Arc<dyn BlobStore>,
    meta: Meta,
    settings: Settings,
    cache: Arc<cache::Caches>,
    rules: Arc<snapshot::Snapshot<Vec<berth_meta::TagRule>>>,
    quotas: Arc<snapshot::Snapshot<std::collections::HashMap<berth_oci::Namespace, u64>>>,
    pulls: pulls::PullStats,
    jobs: jobs::Jobs,
    sessions: Arc<quota::Sessions>,
    webhooks: webhooks::Hub,
    stop: worker::Stop,
    gauge_clock: observe::GaugeClock,
    repair: std::sync::OnceLock<Arc<dyn scrub::RepairSource>>,
    traffic: Arc<scrub::Traffic>,
    replication: std::sync::OnceLock<Arc<dyn replication::Transport>>,
    trust: Arc<snapshot::Snapshot<trust::TrustConfig>>,
    verdicts: Arc<trust::Verdicts>,
    scans: scanning::Queue,
    pull_gates: Arc<snapshot::Snapshot<scanning::gate::GateConfig>>,
    pull_verdicts: Arc<scanning::gate::Verdicts>,
    refusals: scanning::gate::Refusals,
}

impl Registry {
    /// Builds the services over a store and a metadata database.
    pub fn new(store: Arc<dyn BlobStore>, meta: Meta, settings: Settings) -> Registry {
        let shared = settings.shared_database;
        let gate = invalidation::Invalidation::new(&meta, shared);
        let cache = cache::Caches::new(&gate);
        Registry {
            rules: snapshot::Snapshot::new(&gate, &["tag_rules"]),
            quotas: snapshot::Snapshot::new(&gate, &["quotas"]),
            trust: snapshot::Snapshot::new(&gate, &["trust_keys", "trust_policies"]),
            store,
            meta,
            pulls: pulls::PullStats::default(),
            webhooks: webhooks::Hub::new(settings.webhooks.clone()),
            settings,
            cache,
            jobs: jobs::Jobs::new(),
            sessions: Arc::default(),
            stop: worker::Stop::new(),
            gauge_clock: observe::GaugeClock::default(),
            repair: std::sync::OnceLock::new(),
            traffic: Arc::default(),
            replication: std::sync::OnceLock::new(),
            verdicts: trust::Verdicts::new(&gate),
            scans: scanning::Queue::default(),
            pull_gates: snapshot::Snapshot::new(&gate, &["scan_policies", "scan_allowances"]),
            pull_verdicts: scanning::gate::Verdicts::new(&gate),
            refusals: scanning::gate::Refusals::default(),
        }
    }

    /// Asks long-running jobs (garbage collection, retention) to end after
    /// their current step: the server calls this when it starts shutting
    /// down, before it waits for requests and workers to finish.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// The signal [`Registry::stop`] sets, for the background workers.
    pub fn stop_signal(&self) -> worker::Stop {
        self.stop.clone()
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// On replicas sharing a database, returns once every replica has
    /// heard the changes this one committed so far, so none answers from
    /// a copy made before them (see `berth_meta::changes`, bounded by
    /// `FENCE_WAIT`); at once on a database of its own. The server calls
    /// it before answering any request that may have changed something.
    pub async fn fence(&self) {
        if self.settings.shared_database {
            self.meta.fence().await;
        }
    }

    /// Drops what this process holds in memory about a namespace whose
    /// owner was deleted: its settings (tag rules, quota, reloaded from
    /// the database) and the `repositories` deleted with it.
    pub fn forget_namespace(&self, repositories: &[RepositoryName]) {
        self.rules.invalidate();
        self.quotas.invalidate();
        self.pull_gates.invalidate();
        for r in repositories {
            self.cache.invalidate_repository(r);
            self.pull_verdicts.forget(r);
        }
    }

    /// Closes the metadata database (at shutdown).
    pub async fn close(&self) {
        self.meta.close().await;
    }

    /// The events of the audit log matching `filter`.
    pub async fn audit_events(&self, filter: &AuditFilter) -> Result<Vec<StoredEvent>> {
        Ok(self.meta.audit_events(filter).await?)
    }

    /// The latest `limit` runs of background job `job`.
    pub async fn job_runs(&self, job: &str, limit: i64) -> Result<Vec<JobRun>> {
        Ok(self.meta.job_runs(job, limit).await?)
    }

    /// The blob store.
    pub fn store(&self) -> &Arc<dyn BlobStore> {
        &self.store
    }
}
