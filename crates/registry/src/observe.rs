//! What the health endpoints and `/metrics` ask the services: whether the
//! registry can serve ([`Registry::readiness`]), and the gauges read from
//! the database and the store at scrape time ([`Registry::refresh_gauges`]).
//!
//! Counters are recorded where things happen (pushes in `uploads` and
//! `manifests`, GC and retention at the end of a run, authentication in
//! `auth`); the figures here live in the database, so they are read when
//! Prometheus asks, at most once per [`GAUGE_TTL`] however often it asks
//! (several Prometheus servers, or a dashboard's refresh, cost one read).

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use berth_metrics::NamespaceUsage;

use crate::{Registry, Result};

/// How long scrape-time gauges are reused before they are read again.
pub const GAUGE_TTL: Duration = Duration::from_secs(10);

/// Why the registry is not ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotReady {
    /// The server is shutting down (draining its requests).
    Stopping,
    /// The metadata database does not answer.
    Database(String),
    /// The blob storage does not answer.
    Storage(String),
}

impl std::fmt::Display for NotReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotReady::Stopping => f.write_str("shutting down"),
            NotReady::Database(e) => write!(f, "metadata database unreachable: {e}"),
            NotReady::Storage(e) => write!(f, "blob storage unreachable: {e}"),
        }
    }
}

/// When the scrape-time gauges were last read.
#[derive(Default)]
pub(crate) struct GaugeClock(Mutex<Option<Instant>>);

/// Seconds since the Unix epoch, now.
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl Registry {
    /// Whether the registry can serve: not shutting down, and both the
    /// metadata database and the blob storage answer (each probed with
    /// one cheap request; see [`berth_meta::Meta::probe`] and
    /// [`berth_store::BlobStore::probe`]). Migrations run before the
    /// server accepts requests, so a migrating server answers nothing.
    pub async fn readiness(&self) -> std::result::Result<(), NotReady> {
        if self.stop.is_cancelled() {
            return Err(NotReady::Stopping);
        }
        let (db, store) = tokio::join!(self.meta.probe(), self.store.probe());
        db.map_err(|e| NotReady::Database(e.to_string()))?;
        store.map_err(|e| NotReady::Storage(e.to_string()))?;
        Ok(())
    }

    /// Sets the gauges of `/metrics` that live in the database and the
    /// store (stored bytes and blobs by namespace, quotas, uploads in
    /// progress, database pool use, the vulnerability database's age, the
    /// scan queue's depth),
    /// unless they were read less than [`GAUGE_TTL`] ago. A failure leaves the previous values and is
    /// returned (the scrape still answers).
    pub async fn refresh_gauges(&self) -> Result<()> {
        {
            let mut at = self.gauge_clock.0.lock().unwrap_or_else(|p| p.into_inner());
            if at.is_some_and(|t| t.elapsed() < GAUGE_TTL) {
                return Ok(());
            }
            // Concurrent scrapes read once; a failed read is retried at
            // the next TTL.
            *at = Some(Instant::now());
        }
        let m = berth_metrics::get();
        let (in_use, idle, max) = self.meta.pool_use();
        m.db_pool(i64::from(in_use), i64::from(idle), i64::from(max));
        let usage = self.meta.usage_by_namespace().await?;
        let quotas = self.quota_limits().await?;
        let stored = usage.iter().map(|(ns, blobs, bytes)| NamespaceUsage {
            namespace: ns,
            stored_bytes: *bytes,
            stored_blobs: *blobs,
            quota_bytes: quotas.get(ns.as_str()).copied(),
        });
        // Namespaces with a quota and no content yet.
        let empty = quotas
            .iter()
            .filter(|(ns, _)| !usage.iter().any(|(n, _, _)| n == ns.as_str()))
            .map(|(ns, limit)| NamespaceUsage {
                namespace: ns.as_str(),
                stored_bytes: 0,
                stored_blobs: 0,
                quota_bytes: Some(*limit),
            });
        m.storage_usage(stored.chain(empty));
        let uploads = self.store.upload_list().await?;
        m.uploads_in_progress(uploads.len() as u64);
        self.refresh_vulndb_gauges().await?;
        self.refresh_scan_gauges().await?;
        Ok(())
    }
}
