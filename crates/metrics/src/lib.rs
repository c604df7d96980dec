//! berth's Prometheus metrics: every metric family of the process, with
//! typed label sets, in one place.
//!
//! This crate sits below every other berth crate and depends only on
//! `prometheus-client`, so `store`, `meta`, `registry` and `server` can all
//! record without knowing about each other. There is one set of families per
//! process, reached through [`get`]; the server encodes it on `/metrics`
//! (see [`Metrics::encode`]).
//!
//! Recording is cheap: counters and gauges are atomics, label sets of fixed
//! values are enums or `&'static str` (no allocation to look a series up),
//! and when metrics are switched off ([`Metrics::set_enabled`]) the recording helpers
//! return after one relaxed atomic load. Families are public for the rare
//! caller that needs one directly; most callers use the helpers.
//!
//! Gauges of things that live in the database (stored bytes, quotas, uploads
//! in progress, webhook backlog, pool use) are set at scrape time by whoever
//! serves `/metrics`, not kept up to date on every change.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{LazyLock, RwLock};
use std::time::Duration;

use prometheus_client::encoding::text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

mod histogram;
mod labels;

pub use histogram::AtomicHistogram;

pub use labels::*;

/// The `Content-Type` of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Latency buckets in seconds, 0.5 ms to 60 s.
const LATENCY_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// Job duration buckets in seconds, 10 ms to one hour.
const JOB_BUCKETS: [f64; 12] = [
    0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

/// Makes each histogram of a family with the family's buckets.
#[derive(Clone, Debug)]
pub struct Buckets(&'static [f64]);

impl MetricConstructor<AtomicHistogram> for Buckets {
    fn new_metric(&self) -> AtomicHistogram {
        AtomicHistogram::new(self.0)
    }
}

/// A family of histograms sharing one set of buckets.
pub type HistogramFamily<S> = Family<S, AtomicHistogram, Buckets>;

fn histograms<S: Clone + std::hash::Hash + Eq>(buckets: &'static [f64]) -> HistogramFamily<S> {
    Family::new_with_constructor(Buckets(buckets))
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metric families.
pub fn get() -> &'static Metrics {
    &METRICS
}

/// HTTP request families.
pub struct Http {
    /// `berth_http_requests_total{route, method, status}`.
    pub requests: Family<HttpStatusLabels, Counter>,
    /// `berth_http_request_duration_seconds{route, method}`: from the
    /// request until its response body was sent (a blob pull's includes
    /// its transfer).
    pub duration: HistogramFamily<HttpRouteLabels>,
    /// `berth_http_request_bytes_total{route, method}`: request body bytes.
    pub received_bytes: Family<HttpRouteLabels, Counter>,
    /// `berth_http_response_bytes_total{route, method}`: response body bytes.
    pub sent_bytes: Family<HttpRouteLabels, Counter>,
    /// `berth_http_requests_in_flight`.
    pub in_flight: Gauge,
}

/// Registry content families.
pub struct Content {
    /// `berth_pushes_total{namespace, repository, kind}`.
    pub pushes: Family<TransferLabels, Counter>,
    /// `berth_pulls_total{namespace, repository, kind}`.
    pub pulls: Family<TransferLabels, Counter>,
    /// `berth_pushed_bytes_total{namespace, repository, kind}`.
    pub pushed_bytes: Family<TransferLabels, Counter>,
    /// `berth_pulled_bytes_total{namespace, repository, kind}`.
    pub pulled_bytes: Family<TransferLabels, Counter>,
    /// `berth_stored_bytes{namespace}` (scrape time).
    pub stored_bytes: Family<NamespaceLabels, Gauge>,
    /// `berth_stored_blobs{namespace}` (scrape time).
    pub stored_blobs: Family<NamespaceLabels, Gauge>,
    /// `berth_quota_limit_bytes{namespace}`: namespaces with a quota only
    /// (scrape time).
    pub quota_limit_bytes: Family<NamespaceLabels, Gauge>,
    /// `berth_quota_used_ratio{namespace}`: stored bytes over the quota
    /// (scrape time).
    pub quota_used_ratio: Family<NamespaceLabels, Gauge<f64, AtomicU64>>,
    /// `berth_uploads_in_progress` (scrape time).
    pub uploads_in_progress: Gauge,
}

/// Garbage collection and retention families.
pub struct Jobs {
    /// `berth_job_runs_total{task, outcome}`.
    pub runs: Family<JobRunLabels, Counter>,
    /// `berth_job_duration_seconds{task}`.
    pub duration: HistogramFamily<JobLabels>,
    /// `berth_job_deleted_total{task, kind}`.
    pub deleted: Family<JobDeletedLabels, Counter>,
    /// `berth_job_reclaimed_bytes_total{task}`.
    pub reclaimed_bytes: Family<JobLabels, Counter>,
    /// `berth_job_last_success_timestamp_seconds{task}`.
    pub last_success: Family<JobLabels, Gauge>,
}

/// Authentication and throttling families.
pub struct Auth {
    /// `berth_auth_failures_total{kind}`.
    pub failures: Family<AuthFailureLabels, Counter>,
    /// `berth_rate_limited_total`: requests refused by the pull rate limit.
    pub rate_limited: Counter,
    /// `berth_login_throttled_total`: logins refused because of earlier
    /// failures.
    pub login_throttled: Counter,
}

/// Webhook delivery families.
pub struct Webhooks {
    /// `berth_webhook_deliveries_total{outcome}`: delivery attempts.
    pub deliveries: Family<DeliveryLabels, Counter>,
    /// `berth_webhook_queue_depth`: deliveries waiting (set by the
    /// delivery worker).
    pub queue_depth: Gauge,
    /// `berth_webhook_oldest_undelivered_age_seconds` (set by the delivery
    /// worker; 0 when the queue is empty).
    pub oldest_undelivered_age: Gauge<f64, AtomicU64>,
}

/// Integrity scrub families.
pub struct Scrub {
    /// `berth_scrub_findings_total{problem, action}`: damaged or missing
    /// blobs found.
    pub findings: Family<ScrubLabels, Counter>,
    /// `berth_scrub_checked_bytes_total`: bytes read and hashed.
    pub checked_bytes: Counter,
}

/// The vulnerability database's families.
pub struct Vulndb {
    /// `berth_vulndb_age_seconds{ecosystem}`: time since an import last
    /// carried the ecosystem's advisories (scrape time).
    pub age: Family<EcosystemLabels, Gauge<f64, AtomicU64>>,
}

/// Vulnerability scan families.
pub struct Scans {
    /// `berth_scans_total{outcome}`: scans of image manifests by how they
    /// ended (`clean`, `vulnerable`, `unreadable`, `failed`).
    pub finished: Family<ScanLabels, Counter>,
    /// `berth_scan_queue_depth`: scans waiting or running (scrape time).
    pub queue_depth: Gauge,
    /// `berth_pulls_blocked_total{namespace, reason}`: manifest pulls
    /// refused by a namespace's vulnerability policy (`vulnerable`,
    /// `unscanned`).
    pub pulls_blocked: Family<PullBlockedLabels, Counter>,
}

/// Database and storage families.
pub struct Backends {
    /// `berth_db_pool_connections{state}` (scrape time).
    pub pool_connections: Family<PoolLabels, Gauge>,
    /// `berth_db_pool_max_connections` (scrape time).
    pub pool_max_connections: Gauge,
    /// `berth_db_query_duration_seconds{operation}`.
    pub query_duration: HistogramFamily<DbLabels>,
    /// `berth_db_errors_total{operation}`.
    pub query_errors: Family<DbLabels, Counter>,
    /// `berth_storage_operation_duration_seconds{backend, operation}`.
    pub storage_duration: HistogramFamily<StorageLabels>,
    /// `berth_storage_errors_total{backend, operation}`.
    pub storage_errors: Family<StorageLabels, Counter>,
}

/// Every metric family of the process.
pub struct Metrics {
    registry: Registry,
    enabled: AtomicBool,
    per_repository: AtomicBool,
    /// The push and pull series of each namespace (or repository) seen,
    /// so a push or pull finds its counters without building a label set.
    transfers: RwLock<HashMap<String, TransferSeries>>,
    /// Tells this set of families from others in [`HTTP_SERIES`] (tests
    /// make several).
    id: u64,
    /// HTTP requests.
    pub http: Http,
    /// Pushes, pulls, stored content.
    pub content: Content,
    /// GC and retention.
    pub jobs: Jobs,
    /// Authentication.
    pub auth: Auth,
    /// Webhook deliveries.
    pub webhooks: Webhooks,
    /// Database and storage.
    pub backends: Backends,
    /// The integrity scrub.
    pub scrub: Scrub,
    /// The pull-through mirror.
    pub mirror: Mirror,
    /// The vulnerability database.
    pub vulndb: Vulndb,
    /// Signature enforcement.
    pub signatures: Signatures,
    /// Vulnerability scans.
    pub scans: Scans,
}

/// Signature enforcement families.
pub struct Signatures {
    /// `berth_signature_pull_checks_total{policy, outcome}`: manifest pulls
    /// of namespaces with a signature policy, by what the check found.
    pub pull_checks: Family<SignatureCheckLabels, Counter>,
}

/// The pull-through mirror's families.
pub struct Mirror {
    /// `berth_mirror_upstream_requests_total{upstream, outcome}`: requests
    /// sent to an upstream, by how they ended.
    pub upstream_requests: Family<MirrorLabels, Counter>,
    /// `berth_mirror_stale_served_total{upstream}`: tags served from the
    /// cache because the upstream could not revalidate them.
    pub stale_served: Family<MirrorUpstreamLabels, Counter>,
    /// `berth_mirror_evicted_total{upstream, kind}`: cached manifests and
    /// blobs the cache limit evicted.
    pub evicted: Family<MirrorEvictLabels, Counter>,
    /// `berth_mirror_evicted_bytes_total{upstream}`: bytes of cached
    /// content the cache limit evicted.
    pub evicted_bytes: Family<MirrorUpstreamLabels, Counter>,
}

impl Metrics {
    /// A fresh set of families (the process uses [`get`]; tests make
    /// their own).
    pub fn new() -> Metrics {
        let http = Http {
            requests: Family::default(),
            duration: histograms(&LATENCY_BUCKETS),
            received_bytes: Family::default(),
            sent_bytes: Family::default(),
            in_flight: Gauge::default(),
        };
        let content = Content {
            pushes: Family::default(),
            pulls: Family::default(),
            pushed_bytes: Family::default(),
            pulled_bytes: Family::default(),
            stored_bytes: Family::default(),
            stored_blobs: Family::default(),
            quota_limit_bytes: Family::default(),
            quota_used_ratio: Family::default(),
            uploads_in_progress: Gauge::default(),
        };
        let jobs = Jobs {
            runs: Family::default(),
            duration: histograms(&JOB_BUCKETS),
            deleted: Family::default(),
            reclaimed_bytes: Family::default(),
            last_success: Family::default(),
        };
        let auth = Auth {
            failures: Family::default(),
            rate_limited: Counter::default(),
            login_throttled: Counter::default(),
        };
        let webhooks = Webhooks {
            deliveries: Family::default(),
            queue_depth: Gauge::default(),
            oldest_undelivered_age: Gauge::default(),
        };
        let backends = Backends {
            pool_connections: Family::default(),
            pool_max_connections: Gauge::default(),
            query_duration: histograms(&LATENCY_BUCKETS),
            query_errors: Family::default(),
            storage_duration: histograms(&LATENCY_BUCKETS),
            storage_errors: Family::default(),
        };

        let scrub = Scrub {
            findings: Family::default(),
            checked_bytes: Counter::default(),
        };
        let mirror = Mirror {
            upstream_requests: Family::default(),
            stale_served: Family::default(),
            evicted: Family::default(),
            evicted_bytes: Family::default(),
        };

        let vulndb = Vulndb {
            age: Family::default(),
        };
        let scans = Scans {
            finished: Family::default(),
            queue_depth: Gauge::default(),
            pulls_blocked: Family::default(),
        };

        let mut r = Registry::with_prefix("berth");
        let build = Info::new(BuildLabels {
            version: env!("CARGO_PKG_VERSION"),
        });
        r.register("build", "berth's version", build);

        r.register(
            "http_requests",
            "HTTP requests by route template, method and status",
            http.requests.clone(),
        );
        r.register_with_unit(
            "http_request_duration",
            "Time from request until the response was sent, by route template",
            Unit::Seconds,
            http.duration.clone(),
        );
        r.register_with_unit(
            "http_request",
            "Request body bytes received, by route template",
            Unit::Bytes,
            http.received_bytes.clone(),
        );
        r.register_with_unit(
            "http_response",
            "Response body bytes sent, by route template",
            Unit::Bytes,
            http.sent_bytes.clone(),
        );
        r.register(
            "http_requests_in_flight",
            "HTTP requests being handled",
            http.in_flight.clone(),
        );

        r.register(
            "pushes",
            "Manifests and blobs pushed, by namespace",
            content.pushes.clone(),
        );
        r.register(
            "pulls",
            "Manifests and blobs pulled, by namespace",
            content.pulls.clone(),
        );
        r.register_with_unit(
            "pushed",
            "Bytes pushed, by namespace",
            Unit::Bytes,
            content.pushed_bytes.clone(),
        );
        r.register_with_unit(
            "pulled",
            "Bytes pulled, by namespace",
            Unit::Bytes,
            content.pulled_bytes.clone(),
        );
        r.register_with_unit(
            "stored",
            "Bytes of distinct blobs referenced in each namespace",
            Unit::Bytes,
            content.stored_bytes.clone(),
        );
        r.register(
            "stored_blobs",
            "Distinct blobs referenced in each namespace",
            content.stored_blobs.clone(),
        );
        r.register_with_unit(
            "quota_limit",
            "Storage quota of each namespace that has one",
            Unit::Bytes,
            content.quota_limit_bytes.clone(),
        );
        r.register(
            "quota_used_ratio",
            "Stored bytes over the quota of each namespace that has one",
            content.quota_used_ratio.clone(),
        );
        r.register(
            "uploads_in_progress",
            "Upload sessions started and not yet finished or cancelled",
            content.uploads_in_progress.clone(),
        );

        r.register(
            "job_runs",
            "Garbage collection and retention runs, by outcome",
            jobs.runs.clone(),
        );
        r.register_with_unit(
            "job_duration",
            "Duration of garbage collection and retention runs",
            Unit::Seconds,
            jobs.duration.clone(),
        );
        r.register(
            "job_deleted",
            "Items deleted by garbage collection and retention, by kind",
            jobs.deleted.clone(),
        );
        r.register_with_unit(
            "job_reclaimed",
            "Bytes of storage reclaimed",
            Unit::Bytes,
            jobs.reclaimed_bytes.clone(),
        );
        r.register(
            "job_last_success_timestamp_seconds",
            "Unix time of the last successful run",
            jobs.last_success.clone(),
        );

        r.register(
            "auth_failures",
            "Failed authentications and refused requests, by kind",
            auth.failures.clone(),
        );
        r.register(
            "rate_limited",
            "Requests refused by the pull rate limit",
            auth.rate_limited.clone(),
        );
        r.register(
            "login_throttled",
            "Logins refused because of recent failures from the same client or account",
            auth.login_throttled.clone(),
        );

        r.register(
            "webhook_deliveries",
            "Webhook delivery attempts, by outcome",
            webhooks.deliveries.clone(),
        );
        r.register(
            "mirror_upstream_requests",
            "Requests the pull-through mirror sent to an upstream, by outcome",
            mirror.upstream_requests.clone(),
        );
        r.register(
            "mirror_stale_served",
            "Tags the mirror served from its cache because the upstream could not revalidate them",
            mirror.stale_served.clone(),
        );
        r.register(
            "mirror_evicted",
            "Cached manifests and blobs the mirror's cache limit evicted (least recently pulled first)",
            mirror.evicted.clone(),
        );
        r.register(
            "mirror_evicted_bytes",
            "Bytes of cached content the mirror's cache limit evicted",
            mirror.evicted_bytes.clone(),
        );
        r.register(
            "webhook_queue_depth",
            "Webhook deliveries waiting to be sent",
            webhooks.queue_depth.clone(),
        );
        r.register_with_unit(
            "webhook_oldest_undelivered_age",
            "Age of the oldest webhook delivery not yet sent",
            Unit::Seconds,
            webhooks.oldest_undelivered_age.clone(),
        );

        r.register(
            "db_pool_connections",
            "Database connections by state",
            backends.pool_connections.clone(),
        );
        r.register(
            "db_pool_max_connections",
            "Database pool size limit",
            backends.pool_max_connections.clone(),
        );
        r.register_with_unit(
            "db_query_duration",
            "Metadata operation latency",
            Unit::Seconds,
            backends.query_duration.clone(),
        );
        r.register(
            "db_errors",
            "Metadata operations that failed",
            backends.query_errors.clone(),
        );
        r.register_with_unit(
            "storage_operation_duration",
            "Blob storage operation latency",
            Unit::Seconds,
            backends.storage_duration.clone(),
        );
        r.register(
            "storage_errors",
            "Blob storage operations that failed",
            backends.storage_errors.clone(),
        );

        let signatures = Signatures {
            pull_checks: Family::default(),
        };
        r.register(
            "signature_pull_checks",
            "Manifest pulls checked against a namespace's signature policy, by outcome",
            signatures.pull_checks.clone(),
        );

        r.register(
            "scrub_findings",
            "Blobs the integrity scrub found missing or corrupt, by what was done",
            scrub.findings.clone(),
        );
        r.register(
            "scrub_checked_bytes",
            "Bytes the integrity scrub read and hashed",
            scrub.checked_bytes.clone(),
        );
        r.register_with_unit(
            "vulndb_age",
            "Time since an import last carried the ecosystem's vulnerability advisories",
            Unit::Seconds,
            vulndb.age.clone(),
        );
        r.register(
            "scans",
            "Vulnerability scans of image manifests, by outcome",
            scans.finished.clone(),
        );
        r.register(
            "scan_queue_depth",
            "Vulnerability scans waiting or running",
            scans.queue_depth.clone(),
        );
        r.register(
            "pulls_blocked",
            "Manifest pulls refused by a namespace's vulnerability policy, by namespace and reason",
            scans.pulls_blocked.clone(),
        );

        Metrics {
            registry: r,
            enabled: AtomicBool::new(true),
            per_repository: AtomicBool::new(false),
            transfers: RwLock::default(),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            http,
            content,
            jobs,
            auth,
            webhooks,
            backends,
            scrub,
            mirror,
            vulndb,
            signatures,
            scans,
        }
    }

    /// Records one finished scan attempt: `clean`, `vulnerable`,
    /// `unreadable` (the image could not be read) or `failed` (retried).
    pub fn scan_finished(&self, outcome: &'static str) {
        if self.enabled() {
            self.scans
                .finished
                .get_or_create(&ScanLabels { outcome })
                .inc();
        }
    }

    /// Records one pull refused by the vulnerability policy of
    /// `namespace`: `vulnerable` or `unscanned`.
    pub fn pull_blocked(&self, namespace: &str, reason: &'static str) {
        if self.enabled() {
            self.scans
                .pulls_blocked
                .get_or_create(&PullBlockedLabels {
                    namespace: namespace.to_owned(),
                    reason,
                })
                .inc();
        }
    }

    /// Sets the scan queue's depth (at scrape time).
    pub fn scan_queue(&self, depth: i64) {
        self.scans.queue_depth.set(depth);
    }

    /// Replaces the vulnerability database age gauges (at scrape time):
    /// `(ecosystem, seconds since its last import)`.
    pub fn vulndb_ages(&self, ages: impl IntoIterator<Item = (String, f64)>) {
        self.vulndb.age.clear();
        for (ecosystem, age) in ages {
            self.vulndb
                .age
                .get_or_create(&EcosystemLabels { ecosystem })
                .set(age);
        }
    }

    /// Records one pull checked against a signature policy (`enforce` or
    /// `warn`): `verified`, `exempt` (the signing flow's own reads),
    /// `allowed_unverified` (warn) or `refused` (enforce).
    pub fn signature_check(&self, policy: &'static str, outcome: &'static str) {
        if self.enabled() {
            self.signatures
                .pull_checks
                .get_or_create(&SignatureCheckLabels { policy, outcome })
                .inc();
        }
    }

    /// Records one finding of the integrity scrub.
    pub fn scrub_finding(&self, problem: ScrubProblem, action: ScrubAction) {
        if self.enabled() {
            self.scrub
                .findings
                .get_or_create(&ScrubLabels { problem, action })
                .inc();
        }
    }

    /// Records bytes the scrub read and hashed.
    pub fn scrub_checked(&self, bytes: u64) {
        if self.enabled() {
            self.scrub.checked_bytes.inc_by(bytes);
        }
    }

    /// Writes every family in the OpenMetrics text format (which Prometheus
    /// reads; see [`CONTENT_TYPE`]).
    pub fn encode(&self, out: &mut String) -> std::fmt::Result {
        text::encode(out, &self.registry)
    }

    /// Switches recording on or off (on by default). Off, the recording
    /// helpers return at once.
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
    }

    /// Whether recording is on.
    #[inline]
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Labels pushes and pulls with the repository too (off by default:
    /// namespaces keep the number of series bounded).
    pub fn set_per_repository(&self, on: bool) {
        self.per_repository.store(on, Ordering::Relaxed);
        self.transfers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Records one HTTP request: its status, its duration (until its
    /// response body was sent) and its body bytes both ways.
    ///
    /// This runs for every request, so it looks nothing up by label set:
    /// each thread keeps the series handles of the routes, methods and
    /// statuses it has recorded, keyed by the addresses of the `'static`
    /// labels (a route template and a method name are always the same
    /// string), and after the first request of a kind a recording is a
    /// few atomic additions.
    pub fn http_request(
        &self,
        route: &'static str,
        method: &'static str,
        status: u16,
        elapsed: Duration,
        received: u64,
        sent: u64,
    ) {
        if !self.enabled() {
            return;
        }
        let key = (
            self.id,
            route.as_ptr() as usize,
            method.as_ptr() as usize,
            status,
        );
        HTTP_SERIES.with(|cache| {
            let mut cache = cache.borrow_mut();
            let s = cache
                .entry(key)
                .or_insert_with(|| self.http_series(route, method, status));
            s.requests.inc();
            s.duration.observe(elapsed.as_secs_f64());
            if received > 0 {
                s.received
                    .get_or_insert_with(|| {
                        self.http
                            .received_bytes
                            .get_or_create_owned(&HttpRouteLabels { route, method })
                    })
                    .inc_by(received);
            }
            if sent > 0 {
                s.sent
                    .get_or_insert_with(|| {
                        self.http
                            .sent_bytes
                            .get_or_create_owned(&HttpRouteLabels { route, method })
                    })
                    .inc_by(sent);
            }
        });
    }

    /// The handles of one route, method and status (byte counters are
    /// made on their first byte, so a route without bodies has none).
    fn http_series(&self, route: &'static str, method: &'static str, status: u16) -> HttpSeries {
        HttpSeries {
            requests: self.http.requests.get_or_create_owned(&HttpStatusLabels {
                route,
                method,
                status,
            }),
            duration: self
                .http
                .duration
                .get_or_create_owned(&HttpRouteLabels { route, method }),
            received: None,
            sent: None,
        }
    }

    /// Adds one transfer of `bytes` to the series of `repository`'s
    /// namespace (or of the repository): under a read lock, with no
    /// allocation, once the series exist.
    fn transfer(&self, repository: &str, kind: ArtifactKind, push: bool, bytes: u64) {
        let namespace = repository.split('/').next().unwrap_or(repository);
        let per_repository = self.per_repository.load(Ordering::Relaxed);
        let key = if per_repository {
            repository
        } else {
            namespace
        };
        let add = |s: &TransferSeries| {
            let (n, b) = s.get(kind, push);
            n.inc();
            b.inc_by(bytes);
        };
        {
            let known = self.transfers.read().unwrap_or_else(|p| p.into_inner());
            if let Some(s) = known.get(key) {
                return add(s);
            }
        }
        let series = TransferSeries::new(
            &self.content,
            namespace,
            if per_repository { repository } else { "" },
        );
        add(&series);
        self.transfers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.to_owned(), series);
    }

    /// Records a push of `bytes` into `repository` (a full name such as
    /// `acme/app`; its namespace is the first component).
    pub fn pushed(&self, repository: &str, kind: ArtifactKind, bytes: u64) {
        if self.enabled() {
            self.transfer(repository, kind, true, bytes);
        }
    }

    /// Records a pull of `bytes` from `repository`.
    pub fn pulled(&self, repository: &str, kind: ArtifactKind, bytes: u64) {
        if self.enabled() {
            self.transfer(repository, kind, false, bytes);
        }
    }

    /// Records a finished GC or retention run. `deleted` lists what it
    /// deleted by kind (`blob`, `manifest`, `tag`, `upload`); `now_unix` is
    /// the time of the end of the run, for the last-success gauge.
    pub fn job_run(&self, run: JobRun<'_>) {
        if !self.enabled() {
            return;
        }
        let job = run.job;
        let outcome = if run.success {
            Outcome::Success
        } else {
            Outcome::Failure
        };
        self.jobs
            .runs
            .get_or_create(&JobRunLabels { task: job, outcome })
            .inc();
        self.jobs
            .duration
            .get_or_create(&JobLabels { task: job })
            .observe(run.elapsed.as_secs_f64());
        for &(kind, n) in run.deleted {
            self.jobs
                .deleted
                .get_or_create(&JobDeletedLabels { task: job, kind })
                .inc_by(n);
        }
        if run.reclaimed_bytes > 0 {
            self.jobs
                .reclaimed_bytes
                .get_or_create(&JobLabels { task: job })
                .inc_by(run.reclaimed_bytes);
        }
        if run.success {
            self.jobs
                .last_success
                .get_or_create(&JobLabels { task: job })
                .set(run.now_unix);
        }
    }

    /// Counts `n` items of `kind` deleted by `job` (for jobs that count as
    /// they go rather than at the end of the run).
    pub fn job_deleted(&self, job: Job, kind: &'static str, n: u64) {
        if self.enabled() {
            self.jobs
                .deleted
                .get_or_create(&JobDeletedLabels { task: job, kind })
                .inc_by(n);
        }
    }

    /// Records a failed authentication or a refused request.
    pub fn auth_failure(&self, kind: AuthFailure) {
        if self.enabled() {
            self.auth
                .failures
                .get_or_create(&AuthFailureLabels { kind })
                .inc();
        }
    }

    /// Records a request refused by the pull rate limit.
    pub fn rate_limited(&self) {
        if self.enabled() {
            self.auth.rate_limited.inc();
        }
    }

    /// Records a login refused by the failed-login throttle.
    pub fn login_throttled(&self) {
        if self.enabled() {
            self.auth.login_throttled.inc();
        }
    }

    /// Records one request the mirror sent to an upstream.
    pub fn mirror_request(&self, upstream: &str, outcome: &'static str) {
        if self.enabled() {
            self.mirror
                .upstream_requests
                .get_or_create(&MirrorLabels {
                    upstream: upstream.to_owned(),
                    outcome,
                })
                .inc();
        }
    }

    /// Records a tag served stale from the mirror's cache.
    pub fn mirror_stale(&self, upstream: &str) {
        if self.enabled() {
            self.mirror
                .stale_served
                .get_or_create(&MirrorUpstreamLabels {
                    upstream: upstream.to_owned(),
                })
                .inc();
        }
    }

    /// Records what the mirror's cache limit evicted from the cache of
    /// `upstream`: manifests, blobs and their bytes.
    pub fn mirror_evicted(&self, upstream: &str, manifests: u64, blobs: u64, bytes: u64) {
        if self.enabled() {
            for (kind, n) in [("manifest", manifests), ("blob", blobs)] {
                self.mirror
                    .evicted
                    .get_or_create(&MirrorEvictLabels {
                        upstream: upstream.to_owned(),
                        kind,
                    })
                    .inc_by(n);
            }
            self.mirror
                .evicted_bytes
                .get_or_create(&MirrorUpstreamLabels {
                    upstream: upstream.to_owned(),
                })
                .inc_by(bytes);
        }
    }

    /// Records one webhook delivery attempt.
    pub fn webhook_delivery(&self, outcome: DeliveryOutcome) {
        if self.enabled() {
            self.webhooks
                .deliveries
                .get_or_create(&DeliveryLabels { outcome })
                .inc();
        }
    }

    /// Sets the webhook backlog gauges: deliveries waiting
    /// and the age of the oldest (zero when none waits).
    pub fn webhook_backlog(&self, waiting: i64, oldest: Duration) {
        self.webhooks.queue_depth.set(waiting);
        self.webhooks
            .oldest_undelivered_age
            .set(oldest.as_secs_f64());
    }

    /// Records the latency of one metadata operation, and an error when it
    /// failed.
    pub fn db_operation(&self, operation: DbOperation, elapsed: Duration, ok: bool) {
        if !self.enabled() {
            return;
        }
        let labels = DbLabels { operation };
        self.backends
            .query_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        if !ok {
            self.backends.query_errors.get_or_create(&labels).inc();
        }
    }

    /// Sets the pool gauges (at scrape time).
    pub fn db_pool(&self, in_use: i64, idle: i64, max: i64) {
        let p = &self.backends.pool_connections;
        p.get_or_create(&PoolLabels { state: "in_use" }).set(in_use);
        p.get_or_create(&PoolLabels { state: "idle" }).set(idle);
        self.backends.pool_max_connections.set(max);
    }

    /// Records the latency of one blob storage operation, and an error when
    /// it failed.
    pub fn storage_operation(
        &self,
        backend: &'static str,
        operation: &'static str,
        elapsed: Duration,
        ok: bool,
    ) {
        if !self.enabled() {
            return;
        }
        let labels = StorageLabels { backend, operation };
        self.backends
            .storage_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        if !ok {
            self.backends.storage_errors.get_or_create(&labels).inc();
        }
    }

    /// Replaces the per-namespace storage gauges (at scrape time).
    pub fn storage_usage<'a>(&self, usage: impl IntoIterator<Item = NamespaceUsage<'a>>) {
        let c = &self.content;
        c.stored_bytes.clear();
        c.stored_blobs.clear();
        c.quota_limit_bytes.clear();
        c.quota_used_ratio.clear();
        for u in usage {
            let labels = NamespaceLabels {
                namespace: u.namespace.to_owned(),
            };
            c.stored_bytes
                .get_or_create(&labels)
                .set(saturate(u.stored_bytes));
            c.stored_blobs
                .get_or_create(&labels)
                .set(saturate(u.stored_blobs));
            if let Some(limit) = u.quota_bytes {
                c.quota_limit_bytes
                    .get_or_create(&labels)
                    .set(saturate(limit));
                let ratio = if limit == 0 {
                    1.0
                } else {
                    u.stored_bytes as f64 / limit as f64
                };
                c.quota_used_ratio.get_or_create(&labels).set(ratio);
            }
        }
    }

    /// Sets the uploads-in-progress gauge (at scrape time).
    pub fn uploads_in_progress(&self, n: u64) {
        self.content.uploads_in_progress.set(saturate(n));
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// Series handles of `(metrics id, route address, method address, status)`.
type HttpSeriesCache = HashMap<(u64, usize, usize, u16), HttpSeries, rustc_hash::FxBuildHasher>;

thread_local! {
    /// Each thread's handles of the HTTP series it recorded into (see
    /// [`Metrics::http_request`]); bounded by routes x methods x statuses.
    static HTTP_SERIES: std::cell::RefCell<HttpSeriesCache> = Default::default();
}

/// The series one HTTP request records into.
struct HttpSeries {
    requests: Counter,
    duration: AtomicHistogram,
    received: Option<Counter>,
    sent: Option<Counter>,
}

/// The push and pull counters of one namespace (or repository), by kind
/// (manifest, blob): handles into the families' series.
struct TransferSeries {
    pushes: [Counter; 2],
    pushed_bytes: [Counter; 2],
    pulls: [Counter; 2],
    pulled_bytes: [Counter; 2],
}

impl TransferSeries {
    fn new(content: &Content, namespace: &str, repository: &str) -> TransferSeries {
        let series = |family: &Family<TransferLabels, Counter>| {
            [ArtifactKind::Manifest, ArtifactKind::Blob].map(|kind| {
                family.get_or_create_owned(&TransferLabels {
                    namespace: namespace.to_owned(),
                    repository: repository.to_owned(),
                    kind,
                })
            })
        };
        TransferSeries {
            pushes: series(&content.pushes),
            pushed_bytes: series(&content.pushed_bytes),
            pulls: series(&content.pulls),
            pulled_bytes: series(&content.pulled_bytes),
        }
    }

    fn get(&self, kind: ArtifactKind, push: bool) -> (&Counter, &Counter) {
        let i = match kind {
            ArtifactKind::Manifest => 0,
            ArtifactKind::Blob => 1,
        };
        if push {
            (&self.pushes[i], &self.pushed_bytes[i])
        } else {
            (&self.pulls[i], &self.pulled_bytes[i])
        }
    }
}

/// One namespace's storage use, for [`Metrics::storage_usage`].
#[derive(Debug, Clone, Copy)]
pub struct NamespaceUsage<'a> {
    /// The namespace.
    pub namespace: &'a str,
    /// Bytes of distinct blobs it references.
    pub stored_bytes: u64,
    /// Distinct blobs it references.
    pub stored_blobs: u64,
    /// Its quota, if it has one.
    pub quota_bytes: Option<u64>,
}

/// One finished job run, for [`Metrics::job_run`].
#[derive(Debug, Clone, Copy)]
pub struct JobRun<'a> {
    /// GC or retention.
    pub job: Job,
    /// Whether it finished without error.
    pub success: bool,
    /// How long it took.
    pub elapsed: Duration,
    /// What it deleted, by kind.
    pub deleted: &'a [(&'static str, u64)],
    /// Storage bytes it freed.
    pub reclaimed_bytes: u64,
    /// Unix seconds at the end of the run.
    pub now_unix: i64,
}

fn saturate(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;
