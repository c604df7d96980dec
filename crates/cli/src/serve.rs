//! `berth serve`: wires storage, metadata, services, background workers
//! and HTTP together.
//!
//! Start-up order: settings, logging, the listening socket (so a taken
//! port fails before anything is created), storage and metadata, the
//! administrator account, then requests and workers. Shutdown (SIGINT or
//! SIGTERM): long jobs are told to stop after their current step, the
//! server drains its requests, and the workers end with their last flush.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use berth_meta::Meta;
use berth_registry::auth::{Authority, Bootstrap, ADMIN};
use berth_registry::worker::{self, Runner};
use berth_registry::Registry;
use berth_server::tls::Tls;
use berth_server::{redirect, App, ServerSettings};
use clap::ArgMatches;
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, ServeArgs, Settings};

/// How often the last-use times of access tokens are written.
const TOKEN_USE_FLUSH: Duration = Duration::from_secs(30);
/// How often expired shared counters (rate windows, failed logins) are
/// deleted from PostgreSQL.
const COUNTER_PRUNE: Duration = Duration::from_secs(600);
/// How often ended web UI sessions are deleted.
const UI_SESSION_PRUNE: Duration = Duration::from_secs(600);

/// How often the webhook worker looks for events to deliver.
const WEBHOOK_POLL: Duration = Duration::from_secs(1);
/// How often the replication worker looks for work (pushes to replicate,
/// schedules that fired, runs asked for, retries due).
const REPLICATION_POLL: Duration = Duration::from_secs(1);
/// How often the scan worker looks for requests other replicas queued (its
/// own process's pushes wake it at once).
const SCAN_POLL: Duration = Duration::from_secs(5);
/// How often the mirror's cache is measured against its limits when no
/// fetch woke the eviction worker.
const MIRROR_EVICT_POLL: Duration = Duration::from_secs(60);

/// The file in the data directory that receives a generated administrator
/// password (readable by its owner only).
pub const ADMIN_PASSWORD_FILE: &str = "admin-password";

/// Sets up the log on stderr. Lines are formatted where they happen and
/// appended to a buffer that a thread of its own writes out in batches
/// ([`crate::log_writer`]), so a request never waits for a write to stderr
/// nor wakes another thread (with the access log on there is one line per
/// request). Nothing is dropped: when 8 MiB are queued, loggers wait. The
/// returned guard writes what is queued when dropped, at the end of
/// [`run`]. With the text format and no colours, access-log lines skip
/// `tracing` and are written by the returned sink
/// ([`crate::log_format::AccessLines`]).
fn init_logging(
    cfg: &Settings,
) -> anyhow::Result<(
    crate::log_writer::Guard,
    Option<Arc<dyn berth_server::observe::AccessSink>>,
)> {
    let filter = EnvFilter::try_new(&cfg.log_level)
        .with_context(|| format!("invalid log level {:?}", cfg.log_level))?;
    let (writer, guard) = crate::log_writer::batched(std::io::stderr(), "berth-log")
        .context("starting the log writer thread")?;
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let sink: Option<Arc<dyn berth_server::observe::AccessSink>> = match (cfg.log_format, ansi) {
        (LogFormat::Text, false) => Some(Arc::new(crate::log_format::AccessLines::new(
            writer.clone(),
        ))),
        _ => None,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    let result = match cfg.log_format {
        LogFormat::Text => builder
            .event_format(crate::log_format::Text::default())
            .try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot initialise logging: {e}"))?;
    Ok((guard, sink))
}

/// SIGTERM, listened for from when this was made: before the address
/// file says the server is up, so a SIGTERM sent right after it is not
/// the default action (exit 143 without draining).
#[cfg(unix)]
type Term = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Term = ();

fn listen_for_term() -> Term {
    #[cfg(unix)]
    return tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    #[cfg(not(unix))]
    ()
}

async fn shutdown_signal(registry: Arc<Registry>, term: Term) {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async move {
        match term {
            Some(mut s) => {
                s.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
    // Jobs in progress (a GC run started by a request included) end after
    // their current step, so that the requests running them can finish.
    registry.stop();
}

/// Writes `password` to `path`, readable and writable by its owner only.
fn write_secret(path: &Path, password: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(path)?;
    #[cfg(unix)]
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    f.write_all(password.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()
}

/// Creates `admin` on first start and says where its password is.
async fn bootstrap_admin(auth: &Authority, cfg: &Settings) -> anyhow::Result<()> {
    let given = cfg.admin_password.as_ref().map(|s| s.expose());
    let file: PathBuf = cfg.data_dir.join(ADMIN_PASSWORD_FILE);
    match auth
        .bootstrap_admin(given)
        .await
        .context("creating the administrator account")?
    {
        Bootstrap::Generated(password) => {
            write_secret(&file, &password)
                .with_context(|| format!("writing the admin password to {}", file.display()))?;
            tracing::warn!(
                user = ADMIN,
                password_file = %file.display(),
                "created the site administrator with a generated password, written to \
                 password_file (readable by its owner only): log in with it, change it, \
                 then delete the file"
            );
        }
        Bootstrap::Created => tracing::info!(
            user = ADMIN,
            "created the site administrator with the password of BERTH_ADMIN_PASSWORD"
        ),
        Bootstrap::Existed if given.is_some() => tracing::warn!(
            user = ADMIN,
            "BERTH_ADMIN_PASSWORD (admin_password) is set but the site administrator already \
             exists: its password was NOT changed (it applies only when the account is created \
             on first start); log in with the current password (a generated one is in \
             DATA_DIR/admin-password) and change it with `berth user passwd`, or start on an \
             empty data directory"
        ),
        Bootstrap::Existed => tracing::debug!("site administrator present"),
    }
    Ok(())
}

/// Connects to the metadata database and migrates it. The error names the
/// database (password hidden) and what to check.
pub async fn open_database(cfg: &Settings) -> anyhow::Result<Meta> {
    let url = cfg.database();
    match Meta::connect_with(url.expose(), &cfg.pool_options()).await {
        Ok(meta) => Ok(meta),
        Err(e) if url.is_postgres() && e.is_unavailable() => {
            Err(anyhow::Error::new(e).context(format!(
                "cannot reach the metadata database {url}: check that PostgreSQL is running and \
                 accepts connections from this host, and the host, port and credentials of \
                 database_url (BERTH_DATABASE_URL)"
            )))
        }
        Err(e) => Err(anyhow::Error::new(e).context(format!("opening metadata database {url}"))),
    }
}

/// Resolves once shutdown was signalled.
async fn stopped(mut stopping: tokio::sync::watch::Receiver<bool>) {
    let _ = stopping.wait_for(|s| *s).await;
}

/// The plain-HTTP redirect listener's server (see
/// [`berth_server::redirect`]): 308 to HTTPS, or the registry itself for
/// loopback clients when `loopback_api`.
fn serve_redirects(
    plain: tokio::net::TcpListener,
    app: &Arc<App>,
    https_port: u16,
    loopback_api: bool,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    let at = plain.local_addr()?;
    let target = redirect::Target {
        https_port,
        external_url: app.settings.external_url.clone(),
    };
    let api = loopback_api.then(|| {
        // Loopback clients here speak plain HTTP: their token realm too.
        let mut settings = app.settings.clone();
        settings.https = false;
        Arc::new(App {
            registry: app.registry.clone(),
            auth: app.auth.clone(),
            settings,
            mirror: app.mirror.clone(),
        })
    });
    let limits = app.settings.limits.clone();
    tracing::info!(addr = %at, loopback_api, "plain HTTP redirects to HTTPS are served here");
    Ok(async move {
        // With the loopback API, its requests are recorded as on the
        // main listener (the redirects with them).
        let served = match api {
            Some(api) => berth_server::Served::watched(
                redirect::router(target, Some(berth_server::router(api.clone()))),
                api,
            ),
            None => redirect::router(target, None).into(),
        };
        if let Err(e) = berth_server::listener::serve(plain, served, limits, shutdown).await {
            tracing::warn!(error = %e, "the redirect listener stopped");
        }
    })
}

/// The metrics listener's server (`metrics_listen`): `/metrics`, `/livez`
/// and `/readyz`, nothing else (see [`berth_server::health`]).
fn serve_metrics(
    listener: tokio::net::TcpListener,
    app: &Arc<App>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    let at = listener.local_addr()?;
    let router = berth_server::health::metrics_router(app.clone());
    let limits = app.settings.limits.clone();
    tracing::info!(addr = %at, "/metrics, /livez and /readyz are served here");
    Ok(async move {
        if let Err(e) = berth_server::listener::serve(listener, router, limits, shutdown).await {
            tracing::warn!(error = %e, "the metrics listener stopped");
        }
    })
}

/// Runs the registry until SIGINT/SIGTERM.
pub async fn run(args: ServeArgs, matches: &ArgMatches) -> anyhow::Result<()> {
    let cfg = Settings::resolve(args, matches)?;
    let (_log, access_sink) = init_logging(&cfg)?;
    // Listen first: a taken port must fail before anything is created.
    let listener = tokio::net::TcpListener::bind(cfg.listen.as_str())
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    // TLS files next: a certificate that cannot be used fails here, named.
    let tls = match cfg.tls_files() {
        Some(files) => Some(Arc::new(
            Tls::load(files).context("cannot serve HTTPS with the configured files")?,
        )),
        None => None,
    };
    let metrics_listener = match &cfg.metrics_listen {
        Some(at) => Some(
            tokio::net::TcpListener::bind(at.as_str())
                .await
                .with_context(|| format!("cannot listen on {at} (metrics_listen)"))?,
        ),
        None => None,
    };
    berth_metrics::get().set_enabled(cfg.metrics);
    berth_metrics::get().set_per_repository(cfg.metrics_per_repository);
    let redirect_listener = match &cfg.tls_redirect_listen {
        Some(at) => Some(
            tokio::net::TcpListener::bind(at.as_str())
                .await
                .with_context(|| format!("cannot listen on {at} (tls_redirect_listen)"))?,
        ),
        None => None,
    };

    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating data directory {}", cfg.data_dir.display()))?;
    let database = cfg.database();
    // On SQLite this process is the only one serving the data directory.
    let store = crate::storage::open(
        &cfg.storage,
        &cfg.s3_options(),
        &cfg.data_dir,
        !database.is_postgres(),
    )
    .await?;
    let meta = open_database(&cfg).await?;
    // Replicas on PostgreSQL hear each other's changes, so their caches
    // stay correct (nothing on SQLite).
    meta.start_listening();
    let registry = Arc::new(Registry::new(
        store,
        meta.clone(),
        berth_registry::Settings {
            max_manifest_bytes: usize::try_from(cfg.max_manifest_size.0).unwrap_or(usize::MAX),
            upload_ttl: cfg.upload_ttl.get(),
            shared_database: database.is_postgres(),
            gc_grace_period: cfg.gc_grace_period.get(),
            gc_interval: cfg.gc_schedule(),
            webhooks: cfg.webhook_settings(),
            scrub_interval: cfg.scrub_schedule(),
            scrub_rate: cfg.scrub_rate.0,
            mirror_cache: cfg.mirror_cache_settings(),
        },
    ));
    if let Some(url) = &cfg.scrub_repair_from {
        registry.set_repair_source(Arc::new(crate::scrub::Upstream::new(url)?));
    }
    let auth = Arc::new(
        Authority::new(meta.clone(), cfg.auth_settings())
            .await
            .context("starting authentication")?,
    );
    if auth.enforced() {
        bootstrap_admin(&auth, &cfg).await?;
    } else {
        tracing::warn!(
            "authentication is off (--auth none): anyone who can reach this port may push, \
             pull and delete; use it for local development only"
        );
    }
    let term = listen_for_term();
    if let Some(f) = &cfg.addr_file {
        std::fs::write(f, addr.to_string())
            .with_context(|| format!("writing address file {}", f.display()))?;
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(
        %addr,
        scheme,
        data_dir = %cfg.data_dir.display(),
        storage = %cfg.storage,
        database = %database,
        "berth is listening"
    );
    match cfg.gc_schedule() {
        Some(every) => tracing::info!(
            interval = %berth_oci::duration::format(every),
            grace_period = %cfg.gc_grace_period,
            "garbage collection runs on its own: first within a minute of the first start, \
             then every interval after the last run (`berth gc --status` shows the next)"
        ),
        None => tracing::info!("garbage collection runs only on demand (gc_interval = 0)"),
    }

    let mut workers = Runner::new(registry.stop_signal());
    workers.spawn(Arc::new(worker::UploadPurge {
        registry: registry.clone(),
        every: cfg.upload_purge_interval.get(),
    }));
    workers.spawn(Arc::new(worker::PullStatsFlush {
        registry: registry.clone(),
        every: cfg.pull_stats_flush_interval.get(),
    }));
    workers.spawn(Arc::new(worker::TokenUseFlush {
        auth: auth.clone(),
        every: TOKEN_USE_FLUSH,
    }));
    workers.spawn(Arc::new(worker::CounterPrune {
        registry: registry.clone(),
        auth: auth.clone(),
        every: COUNTER_PRUNE,
    }));
    if cfg.ui {
        workers.spawn(Arc::new(worker::UiSessionPrune {
            auth: auth.clone(),
            idle: cfg.ui_session_idle.get(),
            every: UI_SESSION_PRUNE,
        }));
    }
    workers.spawn(Arc::new(worker::Gc {
        registry: registry.clone(),
    }));
    workers.spawn(Arc::new(worker::Scrub {
        registry: registry.clone(),
    }));
    workers.spawn(Arc::new(worker::Retention {
        registry: registry.clone(),
    }));
    workers.spawn(Arc::new(worker::WebhookDelivery {
        registry: registry.clone(),
        every: WEBHOOK_POLL,
    }));
    workers.spawn(Arc::new(worker::Scans {
        registry: registry.clone(),
        every: SCAN_POLL,
    }));
    registry.set_replication_transport(Arc::new(berth_mirror::Replicator::new(registry.clone())));
    workers.spawn(Arc::new(worker::Replication {
        registry: registry.clone(),
        every: REPLICATION_POLL,
    }));

    let mirror = Arc::new(berth_mirror::Mirror::new(
        registry.clone(),
        cfg.mirror_settings(),
    )?);
    if mirror.is_enabled() {
        tracing::info!(upstreams = ?cfg.mirror_upstreams.0.iter().map(|u| &u.name).collect::<Vec<_>>(), "pull-through mirror on");
        workers.spawn(Arc::new(berth_mirror::CacheEviction {
            mirror: mirror.clone(),
            every: MIRROR_EVICT_POLL,
        }));
    }
    let app = Arc::new(App {
        mirror: Some(mirror),
        registry: registry.clone(),
        auth: auth.clone(),
        settings: ServerSettings {
            chunk_min_length: cfg.chunk_min_length.0,
            external_url: cfg.external_url.as_ref().map(|u| u.0.clone()),
            trust_forwarded_for: cfg.trust_forwarded_for,
            limits: cfg.connection_limits(),
            https: tls.is_some(),
            observe: berth_server::observe::Settings {
                access_sink,
                ..cfg.observe()
            },
            ui: cfg.ui(),
        },
    });
    let (stop, stopping) = tokio::sync::watch::channel(false);
    tokio::spawn({
        let registry = registry.clone();
        async move {
            shutdown_signal(registry, term).await;
            let _ = stop.send(true);
        }
    });
    if let Some(tls) = &tls {
        tokio::spawn(
            tls.clone()
                .watch(cfg.tls_reload_interval.get(), stopped(stopping.clone())),
        );
    }
    let redirecting = match redirect_listener {
        Some(plain) => Some(tokio::spawn(serve_redirects(
            plain,
            &app,
            addr.port(),
            cfg.tls_redirect_loopback_api,
            stopped(stopping.clone()),
        )?)),
        None => None,
    };
    // The metrics listener outlives the main one's drain, so that
    // `/readyz` answers 503 there while requests finish.
    let (drained, draining) = tokio::sync::watch::channel(false);
    let metrics_served = match metrics_listener {
        Some(l) => Some(tokio::spawn(serve_metrics(l, &app, stopped(draining))?)),
        None => None,
    };
    let served = berth_server::serve_with(listener, app, tls, stopped(stopping)).await;
    let _ = drained.send(true);
    if let Some(task) = redirecting {
        let _ = task.await;
    }
    if let Some(task) = metrics_served {
        let _ = task.await;
    }
    // Whatever ended the server, the workers end their rounds and flush.
    registry.stop();
    workers.shutdown().await;
    meta.close().await;
    served?;
    Ok(())
}
