//! Scans as background jobs: the queue in `scan_requests` and the worker
//! round that empties it.
//!
//! A request is made inside the transaction of the push that asks for it
//! (see `berth_meta::scans`), so a push never waits for a scan and a
//! crash never loses one. A worker claims the oldest free request with a
//! lease ([`SCAN_LEASE`]): the claim is a conditional update that only one
//! replica can win, and a replica that dies mid-scan leaves the request
//! to be taken over when its lease runs out. A scan that fails for a
//! reason of the server's (the store or the database unreachable) is
//! retried with a growing delay, [`MAX_ATTEMPTS`] times; an image that
//! cannot be read (not a container image, a layer missing) is a result,
//! stored with its `error`.
//!
//! When the queue is empty and the vulnerability data changed since
//! results were stored, a round requests rescans of those results, the
//! oldest scans first, [`RESCAN_BATCH`] at a time, so the queue stays
//! short and pushes keep their turn.

use std::sync::Mutex;
use std::time::Duration;

use berth_meta::scans::ScanRequest;
use tokio::sync::Notify;

use crate::worker::Stop;
use crate::{Registry, Result};

/// How long a claim on a request lasts: longer than any scan takes.
pub const SCAN_LEASE: Duration = Duration::from_secs(15 * 60);

/// Attempts before a request whose scans keep failing is given up.
pub const MAX_ATTEMPTS: u64 = 5;

/// Rescans requested at a time after the vulnerability data changed.
pub const RESCAN_BATCH: i64 = 100;

/// Scans one round does at most before it lets the next round start.
const MAX_PER_ROUND: usize = 50;

/// The delay before attempt `n + 1`: 30 s, 1 min, 2 min, ...
fn backoff(n: u64) -> i64 {
    30_000 * (1i64 << n.saturating_sub(1).min(10))
}

/// The in-memory state of the scan queue of one process.
#[derive(Default)]
pub(crate) struct Queue {
    /// Wakes this process's worker (a push that requested a scan).
    pub(crate) wake: Notify,
    /// The data time every stale result has been requested for, once a
    /// round found none left (no rescan query until the data changes).
    rescanned_for: Mutex<Option<i64>>,
}

/// What one worker round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanRound {
    /// Images scanned and stored.
    pub scanned: u64,
    /// Of those, images that could not be read (stored with an error).
    pub unreadable: u64,
    /// Attempts that failed and will be retried (or were given up).
    pub failed: u64,
    /// Rescans requested after a change of the vulnerability data.
    pub rescans_requested: u64,
}

impl ScanRound {
    /// A line for the log, if the round did anything.
    pub fn summary(&self) -> Option<String> {
        (self.scanned + self.failed + self.rescans_requested > 0).then(|| {
            format!(
                "scans: {} stored ({} unreadable), {} failed attempts, {} rescans requested",
                self.scanned, self.unreadable, self.failed, self.rescans_requested
            )
        })
    }
}

impl Registry {
    /// The notification a push that requested a scan sends to this
    /// process's scan worker.
    pub fn scan_wake(&self) -> &Notify {
        &self.scans.wake
    }

    /// One round of the scan worker: scans queued requests, oldest first,
    /// until the queue is empty (or `stop`, or [`MAX_PER_ROUND`]), then
    /// requests rescans of results older than the vulnerability data.
    pub async fn run_scans(&self, stop: &Stop) -> Result<ScanRound> {
        let mut round = ScanRound::default();
        let holder = self.job_holder().to_owned();
        for _ in 0..MAX_PER_ROUND {
            if stop.is_cancelled() {
                return Ok(round);
            }
            let now = crate::now_ms();
            let until = now + SCAN_LEASE.as_millis() as i64;
            let Some(request) = self.meta.claim_scan(&holder, now, until).await? else {
                round.rescans_requested = self.request_rescans().await?;
                return Ok(round);
            };
            self.run_request(&request, &holder, &mut round).await?;
        }
        Ok(round)
    }

    async fn run_request(
        &self,
        request: &ScanRequest,
        holder: &str,
        round: &mut ScanRound,
    ) -> Result<()> {
        let metrics = berth_metrics::get();
        let (repo, digest) = (&request.repository, &request.digest);
        match self.scan_image(repo, digest, None).await {
            Ok(scan) => {
                self.store_scan(repo, &scan, &request.reason, Some(holder))
                    .await?;
                round.scanned += 1;
                let outcome = if scan.error.is_some() {
                    round.unreadable += 1;
                    "unreadable"
                } else if scan.findings.is_empty() {
                    "clean"
                } else {
                    "vulnerable"
                };
                metrics.scan_finished(outcome);
                tracing::info!(repository = %repo, %digest, reason = %request.reason, outcome,
                    critical = scan.counts.critical, high = scan.counts.high, "scanned");
            }
            // The manifest went away under the scan: nothing to store,
            // and its request went with it (the foreign key cascades).
            Err(crate::Error::ManifestUnknown(_)) => {}
            Err(e) => {
                round.failed += 1;
                metrics.scan_finished("failed");
                if request.attempts >= MAX_ATTEMPTS {
                    tracing::warn!(repository = %repo, %digest, attempts = request.attempts,
                        error = %e, "scan failed; giving up");
                    let mut scan = self.scan_stub(digest).await?;
                    scan.error = Some(format!(
                        "the scan failed {} times; last: {e}",
                        request.attempts
                    ));
                    self.store_scan(repo, &scan, &request.reason, Some(holder))
                        .await?;
                } else {
                    tracing::warn!(repository = %repo, %digest, attempts = request.attempts,
                        error = %e, "scan failed; retrying later");
                    let retry_at = crate::now_ms() + backoff(request.attempts);
                    self.meta
                        .retry_scan(request, holder, retry_at, &e.to_string())
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// Requests rescans of results older than the vulnerability data,
    /// [`RESCAN_BATCH`] at most; remembers when none are left.
    async fn request_rescans(&self) -> Result<u64> {
        let Some(changed) = self.meta.vulndb_changed_at().await? else {
            return Ok(0);
        };
        let done = *self
            .scans
            .rescanned_for
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if done == Some(changed) {
            return Ok(0);
        }
        let n = self
            .meta
            .request_rescans(changed, crate::now_ms(), RESCAN_BATCH)
            .await?;
        if n == 0 {
            *self
                .scans
                .rescanned_for
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(changed);
        }
        Ok(n)
    }

    /// Scans waiting or running (for `/metrics`).
    pub(crate) async fn refresh_scan_gauges(&self) -> Result<()> {
        let depth = self.meta.scan_queue_depth().await?;
        berth_metrics::get().scan_queue(depth);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off() {
        assert_eq!(backoff(1), 30_000);
        assert_eq!(backoff(2), 60_000);
        assert_eq!(backoff(5), 480_000);
        assert_eq!(backoff(64), 30_000 << 10);
    }
}
