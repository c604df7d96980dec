//! `berth serve`: wires storage, metadata, services and HTTP together.

use std::sync::Arc;

use anyhow::Context;
use berth_meta::Meta;
use berth_registry::auth::{Authority, ADMIN};
use berth_registry::{Registry, Settings};
use berth_server::{App, ServerSettings};
use berth_store::FsStore;
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, ServeArgs, ServeConfig};

/// How often the last-use times of access tokens are written.
const TOKEN_USE_FLUSH: std::time::Duration = std::time::Duration::from_secs(30);

fn init_logging(cfg: &ServeConfig) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&cfg.log_level)
        .with_context(|| format!("invalid log level {:?}", cfg.log_level))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let result = match cfg.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot initialise logging: {e}"))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}

/// How often the scheduler looks for due jobs (GC, retention policies).
const JOB_TICK: std::time::Duration = std::time::Duration::from_secs(60);

/// The scheduler: every minute, runs whatever is due (each job takes its
/// lease, so with several replicas one of them runs it).
async fn run_jobs(registry: Arc<Registry>) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + JOB_TICK, JOB_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match registry.run_due_jobs(berth_meta::now_ms()).await {
            Ok(ran) => {
                for j in ran {
                    match j.outcome {
                        Ok(summary) => tracing::info!(job = %j.job, %summary, "scheduled job done"),
                        Err(berth_registry::Error::Conflict(why)) => {
                            tracing::debug!(job = %j.job, %why, "scheduled job skipped")
                        }
                        Err(e) => tracing::warn!(job = %j.job, error = %e, "scheduled job failed"),
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "looking for due jobs failed"),
        }
    }
}

/// Runs the registry until SIGINT/SIGTERM.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let cfg = ServeConfig::resolve(args)?;
    init_logging(&cfg)?;
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating data directory {}", cfg.data_dir.display()))?;
    let store = FsStore::open(&cfg.data_dir)
        .with_context(|| format!("opening blob storage in {}", cfg.data_dir.display()))?;
    let db = cfg.data_dir.join("berth.db");
    let meta = Meta::open_sqlite(&db)
        .await
        .with_context(|| format!("opening metadata database {}", db.display()))?;
    let registry = Arc::new(Registry::new(
        Arc::new(store),
        meta.clone(),
        Settings {
            max_manifest_bytes: cfg.max_manifest_bytes,
            upload_ttl: cfg.upload_ttl,
            cache_ttl: None,
            gc_grace_period: cfg.gc_grace_period,
            gc_interval: cfg.gc_interval,
        },
    ));
    let auth = Arc::new(
        Authority::new(meta, cfg.auth.clone())
            .await
            .context("starting authentication")?,
    );
    if auth.enforced() {
        match auth
            .bootstrap_admin(cfg.admin_password.as_deref())
            .await
            .context("creating the administrator account")?
        {
            Some(generated) => tracing::warn!(
                user = ADMIN,
                password = %generated,
                "created the site administrator with a generated password; it is shown only \
                 this once: log in and change it, or set BERTH_ADMIN_PASSWORD before the first start"
            ),
            None => tracing::debug!("site administrator present"),
        }
    } else {
        tracing::warn!(
            "authentication is off (--auth none): anyone who can reach this port may push, \
             pull and delete; use it for local development only"
        );
    }
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    if let Some(f) = &cfg.addr_file {
        std::fs::write(f, addr.to_string())
            .with_context(|| format!("writing address file {}", f.display()))?;
    }
    tracing::info!(%addr, data_dir = %cfg.data_dir.display(), "berth is listening");

    let purge = {
        let registry = registry.clone();
        let every = cfg.upload_purge_interval;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                if let Err(e) = registry.purge_uploads().await {
                    tracing::warn!(error = %e, "purging abandoned uploads failed");
                }
            }
        })
    };

    let jobs = tokio::spawn(run_jobs(registry.clone()));
    // Pull statistics: flushed on an interval, then once more after the
    // server drained (the loop is stopped between flushes, never inside
    // one, so no taken counts are dropped).
    let (stop_flush, mut stopped) = tokio::sync::watch::channel(false);
    let flush = {
        let registry = registry.clone();
        let every = cfg.pull_stats_flush_interval;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        // Failures are logged by the registry; counts are kept.
                        let _ = registry.flush_pulls().await;
                    }
                    _ = stopped.changed() => break,
                }
            }
        })
    };

    let touch = {
        let auth = auth.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(TOKEN_USE_FLUSH);
            loop {
                tick.tick().await;
                if let Err(e) = auth.flush_token_uses().await {
                    tracing::warn!(error = %e, "recording token use failed");
                }
            }
        })
    };

    let app = Arc::new(App {
        registry: registry.clone(),
        auth: auth.clone(),
        settings: ServerSettings {
            chunk_min_length: cfg.chunk_min_length,
            external_url: cfg.external_url.clone(),
            trust_forwarded_for: cfg.trust_forwarded_for,
            limits: cfg.limits.clone(),
        },
    });
    berth_server::serve(listener, app, shutdown_signal()).await?;
    purge.abort();
    jobs.abort();
    let _ = stop_flush.send(true);
    let _ = flush.await;
    // The last counts of the pull statistics, now that no request runs.
    match registry.flush_pulls().await {
        Ok(n) => tracing::info!(rows = n, "flushed pull statistics"),
        Err(e) => tracing::warn!(error = %e, "flushing pull statistics at shutdown failed"),
    }
    touch.abort();
    if let Err(e) = auth.flush_token_uses().await {
        tracing::warn!(error = %e, "recording token use failed");
    }
    registry.close().await;
    Ok(())
}
