//! Running background jobs one at a time: within this process (a set of
//! running job names) and across replicas (a lease in the database, renewed
//! while the job runs). Leases use the wall clock even when a job runs with
//! an injected `now`, so tests that shift time cannot strand a lease.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::{Error, Registry, Result};

/// How long a lease lasts without renewal. A replica that dies mid-job
/// blocks the job for at most this long.
pub(crate) const LEASE: Duration = Duration::from_secs(300);

/// The job state of one [`Registry`].
pub(crate) struct Jobs {
    /// This process's lease holder id.
    holder: String,
    running: Mutex<HashSet<String>>,
}

impl Jobs {
    pub(crate) fn new() -> Jobs {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "berth".into());
        Jobs {
            holder: format!(
                "{host}/{}/{}",
                std::process::id(),
                uuid::Uuid::new_v4().simple()
            ),
            running: Mutex::new(HashSet::new()),
        }
    }
}

/// How often a running job renews its lease (well within [`LEASE`]).
const RENEW_EVERY: Duration = Duration::from_secs(30);

/// A held job: renews and finally releases its lease.
pub(crate) struct Held<'a> {
    registry: &'a Registry,
    name: String,
    renewed: Mutex<Instant>,
}

impl Held<'_> {
    /// Renews the lease if the last renewal is older than a few seconds
    /// (cheap to call after every step).
    pub(crate) async fn keep(&self) -> Result<()> {
        let due = {
            let last = self.renewed.lock().unwrap_or_else(|p| p.into_inner());
            last.elapsed() >= RENEW_EVERY
        };
        if due {
            self.renew().await?;
            *self.renewed.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        }
        Ok(())
    }

    /// Extends the lease; fails if another replica took it over (this run
    /// was too slow to renew), so that the run stops.
    pub(crate) async fn renew(&self) -> Result<()> {
        let now = berth_meta::now_ms();
        let ok = self
            .registry
            .meta
            .acquire_lease(
                &self.name,
                &self.registry.jobs.holder,
                now,
                now + LEASE.as_millis() as i64,
            )
            .await?;
        if ok {
            Ok(())
        } else {
            Err(Error::Conflict(format!(
                "job {} lost its lease to another replica",
                self.name
            )))
        }
    }

    /// Releases the lease (also done, best effort, on drop).
    pub(crate) async fn release(self) {
        let r = &self.registry;
        if let Err(e) = r.meta.release_lease(&self.name, &r.jobs.holder).await {
            tracing::warn!(job = %self.name, error = %e, "releasing a job lease failed");
        }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let mut running = self
            .registry
            .jobs
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        running.remove(&self.name);
    }
}

impl Registry {
    /// Takes job `name` for this process and replica, or says who has it.
    pub(crate) async fn hold_job(&self, name: &str) -> Result<Held<'_>> {
        {
            let mut running = self.jobs.running.lock().unwrap_or_else(|p| p.into_inner());
            if !running.insert(name.to_owned()) {
                return Err(Error::Conflict(format!(
                    "{name} is already running in this process"
                )));
            }
        }
        // From here on, dropping `held` frees the in-process slot.
        let held = Held {
            registry: self,
            name: name.to_owned(),
            renewed: Mutex::new(Instant::now()),
        };
        let now = berth_meta::now_ms();
        let until = now + LEASE.as_millis() as i64;
        if self
            .meta
            .acquire_lease(name, &self.jobs.holder, now, until)
            .await?
        {
            return Ok(held);
        }
        let who = match self.meta.lease(name).await? {
            Some(l) => format!(
                " (held by {} for {} s more)",
                l.holder,
                (l.until - now) / 1000
            ),
            None => String::new(),
        };
        Err(Error::Conflict(format!(
            "{name} is already running on another replica{who}"
        )))
    }

    /// The lease holder id of this process.
    pub fn job_holder(&self) -> &str {
        &self.jobs.holder
    }
}

/// What a scheduler tick started.
#[derive(Debug)]
pub struct DueJob {
    /// The job name.
    pub job: String,
    /// Its outcome (a conflict means another replica or run has it).
    pub outcome: Result<serde_json::Value>,
}

/// When garbage collection runs on its own.
#[derive(Debug, Clone, Serialize)]
pub struct GcSchedule {
    /// Time between runs (`24h`); `None`: only on demand.
    pub interval: Option<String>,
    /// The grace period (`1h`).
    pub grace_period: String,
    /// The last run, if any.
    pub last_run: Option<berth_meta::JobRun>,
    /// When the next run is due (Unix ms): the last run's start plus the
    /// interval, or the first scheduler tick when there was none. The
    /// scheduler looks every minute, so a run starts within a minute of it.
    pub next_run_at: Option<i64>,
    /// Who holds the GC lease now (a run in progress), if anyone.
    pub running_on: Option<String>,
}

impl Registry {
    /// Runs garbage collection if `gc_interval` has passed since the last
    /// run started (or there was none). `None`: not due.
    pub async fn due_gc(
        &self,
        now: i64,
        caller: &crate::Caller,
    ) -> Result<Option<crate::GcReport>> {
        let Some(every) = self.settings.gc_interval else {
            return Ok(None);
        };
        let last = self.meta.last_run(crate::GC_JOB).await?;
        let due = last.is_none_or(|r| r.started_at + every.as_millis() as i64 <= now);
        if !due {
            return Ok(None);
        }
        self.run_gc(now, false, caller).await.map(Some)
    }

    /// The GC schedule at `now` (Unix ms): interval, last run, next run.
    pub async fn gc_schedule(&self, now: i64) -> Result<GcSchedule> {
        let last = self.meta.last_run(crate::GC_JOB).await?;
        let every = self.settings.gc_interval;
        let next_run_at = every.map(|e| match &last {
            Some(r) => r.started_at + e.as_millis() as i64,
            None => now + crate::worker::SCHEDULER_TICK.as_millis() as i64,
        });
        let running_on = self
            .meta
            .lease(crate::GC_JOB)
            .await?
            .filter(|l| l.until > berth_meta::now_ms())
            .map(|l| l.holder);
        Ok(GcSchedule {
            interval: every.map(berth_oci::duration::format),
            grace_period: berth_oci::duration::format(self.settings.gc_grace_period),
            last_run: last,
            next_run_at,
            running_on,
        })
    }

    /// Runs every job that is due at `now` (Unix ms): each retention policy
    /// whose schedule fired since its last run, then garbage collection
    /// when `gc_interval` has passed since its last run. The scheduled
    /// workers ([`crate::worker::Gc`], [`crate::worker::Retention`]) do the
    /// same every minute; tests call this with any clock.
    pub async fn run_due_jobs(&self, now: i64) -> Result<Vec<DueJob>> {
        let scheduler = crate::Caller::system("scheduler");
        let mut ran = self.due_retention(now, &self.stop).await?;
        let outcome = self.due_gc(now, &scheduler).await;
        match outcome {
            Ok(None) => {}
            Ok(Some(report)) => ran.push(DueJob {
                job: crate::GC_JOB.to_owned(),
                outcome: Ok(report.summary()),
            }),
            Err(e) => ran.push(DueJob {
                job: crate::GC_JOB.to_owned(),
                outcome: Err(e),
            }),
        }
        Ok(ran)
    }
}
