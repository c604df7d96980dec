//! Background work in one shape: a [`Worker`] does one round of work in
//! [`Worker::run_once`], every [`Worker::interval`]; a [`Runner`] runs
//! workers, each in its own task, and stops them cooperatively.
//!
//! Stopping never cuts a round short from outside: the [`Stop`] signal is
//! passed to `run_once`, long rounds (garbage collection, retention) look
//! at it between their steps and end early, recording how far they got,
//! and then [`Worker::on_shutdown`] runs once (the last flush of counters
//! kept in memory). [`Runner::shutdown`] returns when every worker has.
//!
//! Jobs that only one replica may run at a time (GC, retention, the purge
//! of abandoned uploads, the prune of expired shared counters) take a lease in the database inside their round
//! (see the `jobs` module); the workers of every replica tick, and the one
//! holding the lease works (the others' rounds end in `Conflict`, logged at
//! debug). The flushes (pull counts, token last-use times) run on every
//! replica: each writes the counts it gathered in its own memory, as
//! increments, so nothing is counted twice.
//! Tests call `run_once` (or the services it calls) directly instead of
//! waiting for a tick.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
pub use tokio_util::sync::CancellationToken as Stop;

use crate::auth::Authority;
use crate::{Caller, Registry, Result};

/// One kind of background work.
#[async_trait]
pub trait Worker: Send + Sync + 'static {
    /// A short name for logs (`gc`, `upload-purge`, ...).
    fn name(&self) -> &'static str;

    /// Time between the end of one round and the start of the next.
    fn interval(&self) -> Duration;

    /// Time from the start of the runner to the first round (by default
    /// one interval).
    fn first_run(&self) -> Duration {
        self.interval()
    }

    /// Does one round of work. A long round checks `stop` between steps
    /// and returns early once it is set, leaving nothing half done.
    /// Returns a one-line summary for the log, if there is anything to say.
    async fn run_once(&self, stop: &Stop) -> Result<Option<String>>;

    /// Runs once after the last round, when the runner stops.
    async fn on_shutdown(&self) {}

    /// A notification that starts the next round before the interval is
    /// over (a queue's worker, woken by what fills its queue).
    fn wake(&self) -> Option<&tokio::sync::Notify> {
        None
    }
}

/// Runs workers until told to stop.
pub struct Runner {
    stop: Stop,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Runner {
    /// A runner whose workers stop when `stop` is cancelled (or at
    /// [`Runner::shutdown`]).
    pub fn new(stop: Stop) -> Runner {
        Runner {
            stop,
            tasks: Vec::new(),
        }
    }

    /// Starts `worker` in a task of its own.
    pub fn spawn(&mut self, worker: Arc<dyn Worker>) {
        let stop = self.stop.clone();
        self.tasks.push(tokio::spawn(run(worker, stop)));
    }

    /// Asks every worker to stop and waits until each has finished its
    /// current round and its shutdown step.
    pub async fn shutdown(self) {
        self.stop.cancel();
        for t in self.tasks {
            if let Err(e) = t.await {
                tracing::warn!(error = %e, "a background worker ended abnormally");
            }
        }
    }
}

async fn run(worker: Arc<dyn Worker>, stop: Stop) {
    let mut wait = worker.first_run();
    loop {
        let woken = async {
            match worker.wake() {
                Some(n) => n.notified().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = woken => {}
            _ = stop.cancelled() => break,
        }
        match worker.run_once(&stop).await {
            Ok(Some(summary)) => {
                tracing::info!(worker = worker.name(), %summary, "background work done")
            }
            Ok(None) => {}
            Err(crate::Error::Conflict(why)) => {
                tracing::debug!(worker = worker.name(), %why, "background work skipped")
            }
            Err(e) => tracing::warn!(worker = worker.name(), error = %e, "background work failed"),
        }
        if stop.is_cancelled() {
            break;
        }
        wait = worker.interval();
    }
    worker.on_shutdown().await;
}

/// How often the scheduled jobs (GC, retention) look whether they are due.
pub const SCHEDULER_TICK: Duration = Duration::from_secs(60);

/// Removes upload sessions idle for longer than the upload TTL.
pub struct UploadPurge {
    /// The registry.
    pub registry: Arc<Registry>,
    /// Time between rounds.
    pub every: Duration,
}

#[async_trait]
impl Worker for UploadPurge {
    fn name(&self) -> &'static str {
        "upload-purge"
    }
    fn interval(&self) -> Duration {
        self.every
    }
    fn first_run(&self) -> Duration {
        Duration::ZERO
    }
    async fn run_once(&self, _stop: &Stop) -> Result<Option<String>> {
        let n = self.registry.purge_uploads().await?;
        Ok((n > 0).then(|| format!("removed {n} abandoned uploads")))
    }
}

/// The job name (lease) of [`CounterPrune`].
pub const COUNTER_PRUNE_JOB: &str = "counter-prune";

/// Deletes expired rows of the counters replicas share in the database
/// (pull rate windows, failed-login counts), so the tables stay as small
/// as the set of clients active lately. Does nothing on one node (SQLite
/// keeps these in memory). One replica prunes at a time (a lease).
pub struct CounterPrune {
    /// The registry (for the lease).
    pub registry: Arc<Registry>,
    /// Authentication, whose settings say when rows expire.
    pub auth: Arc<Authority>,
    /// Time between rounds.
    pub every: Duration,
}

#[async_trait]
impl Worker for CounterPrune {
    fn name(&self) -> &'static str {
        COUNTER_PRUNE_JOB
    }
    fn interval(&self) -> Duration {
        self.every
    }
    async fn run_once(&self, _stop: &Stop) -> Result<Option<String>> {
        if !self.auth.settings().shared_database {
            return Ok(None);
        }
        let held = self.registry.hold_job(COUNTER_PRUNE_JOB).await?;
        let pruned = self.auth.prune_shared_counters(berth_meta::now_ms()).await;
        held.release().await;
        let n = pruned?;
        Ok((n > 0).then(|| format!("deleted {n} expired rate-limit and login-failure rows")))
    }
}

/// Deletes the web UI sessions that ended (idle or past their lifetime);
/// a session is also refused and deleted when presented after its end, so
/// this only keeps the table small. Deleting is idempotent: no lease.
pub struct UiSessionPrune {
    /// Authentication (the sessions' service).
    pub auth: Arc<Authority>,
    /// A session unused this long has ended.
    pub idle: Duration,
    /// Time between rounds.
    pub every: Duration,
}

#[async_trait]
impl Worker for UiSessionPrune {
    fn name(&self) -> &'static str {
        "ui-session-prune"
    }
    fn interval(&self) -> Duration {
        self.every
    }
    async fn run_once(&self, _stop: &Stop) -> Result<Option<String>> {
        let idle = i64::try_from(self.idle.as_millis()).unwrap_or(i64::MAX);
        let n = self.auth.prune_ui_sessions(idle).await?;
        Ok((n > 0).then(|| format!("deleted {n} ended web UI sessions")))
    }
}

/// Writes the pull counts kept in memory to the database, and the counts
/// of repeated refused pulls onto their audit events.
pub struct PullStatsFlush {
    /// The registry.
    pub registry: Arc<Registry>,
    /// Time between rounds.
    pub every: Duration,
}

#[async_trait]
impl Worker for PullStatsFlush {
    fn name(&self) -> &'static str {
        "pull-stats-flush"
    }
    fn interval(&self) -> Duration {
        self.every
    }
    async fn run_once(&self, _stop: &Stop) -> Result<Option<String>> {
        // A failed flush keeps its counts for the next one.
        let refusals = self.registry.flush_refusals().await;
        self.registry.flush_pulls().await?;
        refusals.map(|_| None)
    }
    async fn on_shutdown(&self) {
        if let Err(e) = self.registry.flush_refusals().await {
            tracing::warn!(error = %e, "counting refused pulls at shutdown failed");
        }
        match self.registry.flush_pulls().await {
            Ok(n) => tracing::info!(rows = n, "flushed pull statistics"),
            Err(e) => tracing::warn!(error = %e, "flushing pull statistics at shutdown failed"),
        }
    }
}

/// Writes the batched last-use times of access tokens.
pub struct TokenUseFlush {
    /// Authentication.
    pub auth: Arc<Authority>,
    /// Time between rounds.
    pub every: Duration,
}

#[async_trait]
impl Worker for TokenUseFlush {
    fn name(&self) -> &'static str {
        "token-use-flush"
    }
    fn interval(&self) -> Duration {
        self.every
    }
    async fn run_once(&self, _stop: &Stop) -> Result<Option<String>> {
        self.auth.flush_token_uses().await?;
        Ok(None)
    }
    async fn on_shutdown(&self) {
        if let Err(e) = self.auth.flush_token_uses().await {
            tracing::warn!(error = %e, "recording token use at shutdown failed");
        }
    }
}

/// Garbage collection when `gc_interval` has passed since the last run.
pub struct Gc {
    /// The registry.
    pub registry: Arc<Registry>,
}

#[async_trait]
impl Worker for Gc {
    fn name(&self) -> &'static str {
        "gc"
    }
    fn interval(&self) -> Duration {
        SCHEDULER_TICK
    }
    async fn run_once(&self, _stop: &Stop) -> Result<Option<String>> {
        let now = berth_meta::now_ms();
        match self
            .registry
            .due_gc(now, &Caller::system("scheduler"))
            .await?
        {
            Some(report) => Ok(Some(report.summary().to_string())),
            None => Ok(None),
        }
    }
}

/// The integrity scrub, every `scrub_interval` (resuming a pass that was
/// cut short); one replica at a time (its lease).
pub struct Scrub {
    /// The registry.
    pub registry: Arc<Registry>,
}

#[async_trait]
impl Worker for Scrub {
    fn name(&self) -> &'static str {
        "scrub"
    }
    fn interval(&self) -> Duration {
        SCHEDULER_TICK
    }
    async fn run_once(&self, _stop: &Stop) -> Result<Option<String>> {
        match self.registry.due_scrub(berth_meta::now_ms()).await? {
            Some(report) => Ok(Some(report.summary().to_string())),
            None => Ok(None),
        }
    }
}

/// Every retention policy whose schedule fired since its last run.
pub struct Retention {
    /// The registry.
    pub registry: Arc<Registry>,
}

#[async_trait]
impl Worker for Retention {
    fn name(&self) -> &'static str {
        "retention"
    }
    fn interval(&self) -> Duration {
        SCHEDULER_TICK
    }
    async fn run_once(&self, stop: &Stop) -> Result<Option<String>> {
        let ran = self
            .registry
            .due_retention(berth_meta::now_ms(), stop)
            .await?;
        for j in &ran {
            match &j.outcome {
                Ok(summary) => tracing::info!(job = %j.job, %summary, "scheduled job done"),
                Err(crate::Error::Conflict(why)) => {
                    tracing::debug!(job = %j.job, %why, "scheduled job skipped")
                }
                Err(e) => tracing::warn!(job = %j.job, error = %e, "scheduled job failed"),
            }
        }
        Ok(None)
    }
}

/// Delivers webhook events (see [`crate::webhooks`]): polls the outbox
/// every interval and delivers what is due; one replica at a time.
pub struct WebhookDelivery {
    /// The registry.
    pub registry: Arc<Registry>,
    /// Time between rounds.
    pub every: Duration,
}

#[async_trait]
impl Worker for WebhookDelivery {
    fn name(&self) -> &'static str {
        "webhooks"
    }
    fn interval(&self) -> Duration {
        self.every
    }
    fn first_run(&self) -> Duration {
        Duration::ZERO
    }
    async fn run_once(&self, stop: &Stop) -> Result<Option<String>> {
        Ok(self.registry.deliver_webhooks(stop).await?.summary())
    }
    async fn on_shutdown(&self) {
        self.registry.release_delivery_lease().await;
    }
}

/// Replication (see [`crate::replication`]): every interval, each rule
/// with work (matching pushes, a schedule that fired, a run on demand, a
/// retry that is due) runs, under its own lease.
pub struct Replication {
    /// The registry.
    pub registry: Arc<Registry>,
    /// Time between rounds (how soon a push is replicated).
    pub every: Duration,
}

#[async_trait]
impl Worker for Replication {
    fn name(&self) -> &'static str {
        "replication"
    }
    fn interval(&self) -> Duration {
        self.every
    }
    async fn run_once(&self, stop: &Stop) -> Result<Option<String>> {
        let runs = self.registry.replicate(berth_meta::now_ms(), stop).await?;
        let failed = runs.iter().filter(|r| !r.ok).count();
        Ok((!runs.is_empty())
            .then(|| format!("replication: {} rule runs, {failed} failed", runs.len())))
    }
}

/// Scans (see [`crate::scanning`]): every interval, or at once when a
/// push of this process requested one, scans the queued requests (each
/// claimed under a lease, so replicas never scan one manifest at once),
/// then requests rescans after a change of the vulnerability data.
pub struct Scans {
    /// The registry.
    pub registry: Arc<Registry>,
    /// Time between rounds (how soon another replica's request is seen).
    pub every: Duration,
}

#[async_trait]
impl Worker for Scans {
    fn name(&self) -> &'static str {
        "scans"
    }
    fn interval(&self) -> Duration {
        self.every
    }
    fn first_run(&self) -> Duration {
        Duration::ZERO
    }
    async fn run_once(&self, stop: &Stop) -> Result<Option<String>> {
        Ok(self.registry.run_scans(stop).await?.summary())
    }
    fn wake(&self) -> Option<&tokio::sync::Notify> {
        Some(self.registry.scan_wake())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counting {
        rounds: AtomicUsize,
        shut: AtomicUsize,
        saw_stop_inside: AtomicUsize,
    }

    #[async_trait]
    impl Worker for Arc<Counting> {
        fn name(&self) -> &'static str {
            "counting"
        }
        fn interval(&self) -> Duration {
            Duration::from_millis(5)
        }
        fn first_run(&self) -> Duration {
            Duration::ZERO
        }
        async fn run_once(&self, stop: &Stop) -> Result<Option<String>> {
            self.rounds.fetch_add(1, Ordering::SeqCst);
            // A long round: works in steps until told to stop.
            for _ in 0..200 {
                if stop.is_cancelled() {
                    self.saw_stop_inside.fetch_add(1, Ordering::SeqCst);
                    return Ok(None);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Ok(None)
        }
        async fn on_shutdown(&self) {
            self.shut.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn shutdown_lets_the_round_end_and_runs_the_last_step_once() {
        let c = Arc::new(Counting {
            rounds: AtomicUsize::new(0),
            shut: AtomicUsize::new(0),
            saw_stop_inside: AtomicUsize::new(0),
        });
        let mut runner = Runner::new(Stop::new());
        runner.spawn(Arc::new(c.clone()));
        tokio::time::sleep(Duration::from_millis(30)).await;
        let started = std::time::Instant::now();
        runner.shutdown().await;
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "stopped between steps"
        );
        assert_eq!(
            c.rounds.load(Ordering::SeqCst),
            1,
            "one long round was running"
        );
        assert_eq!(c.saw_stop_inside.load(Ordering::SeqCst), 1);
        assert_eq!(c.shut.load(Ordering::SeqCst), 1);
    }
}
