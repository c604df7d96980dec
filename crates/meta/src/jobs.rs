//! Background jobs: leases (one replica runs a job at a time) and the
//! history of runs.
//!
//! A lease is a row `(name, holder, lease_until)`. Taking it succeeds when
//! there is no row, when the row has expired, or when the caller already
//! holds it (renewal); the check and the write are one upsert, so two
//! replicas can never both succeed.

use serde::Serialize;
use sqlx::Row;

use crate::{Meta, Result};

/// One run of a job.
#[derive(Debug, Clone, Serialize)]
pub struct JobRun {
    /// Sequence number.
    pub id: i64,
    /// Job name (`gc`, `retention:acme`, ...).
    pub job: String,
    /// Start (Unix ms).
    pub started_at: i64,
    /// End (Unix ms); `None` while running or if the process died.
    pub finished_at: Option<i64>,
    /// Whether it succeeded; `None` while running.
    pub ok: Option<bool>,
    /// What it did (counts, bytes, or the error).
    pub summary: Option<serde_json::Value>,
}

/// Who holds a lease, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The holder's id.
    pub holder: String,
    /// Expiry (Unix ms).
    pub until: i64,
}

impl Meta {
    /// Takes or renews the lease `name` for `holder` until `until`, if it
    /// is free, expired at `now`, or already `holder`'s. Returns whether the
    /// caller holds it now.
    pub async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: i64,
        until: i64,
    ) -> Result<bool> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.transact(move |c| {
            Box::pin(async move {
                let done = sqlx::query(
                    "INSERT INTO job_leases (name, holder, lease_until) VALUES ($1, $2, $3)
                     ON CONFLICT (name) DO UPDATE
                     SET holder = excluded.holder, lease_until = excluded.lease_until
                     WHERE job_leases.lease_until < $4 OR job_leases.holder = excluded.holder",
                )
                .bind(&name)
                .bind(&holder)
                .bind(until)
                .bind(now)
                .execute(&mut *c)
                .await?;
                Ok(done.rows_affected() > 0)
            })
        })
        .await
    }

    /// Gives the lease `name` up if `holder` holds it.
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.transact(move |c| {
            Box::pin(async move {
                sqlx::query("DELETE FROM job_leases WHERE name = $1 AND holder = $2")
                    .bind(&name)
                    .bind(&holder)
                    .execute(&mut *c)
                    .await?;
                Ok(())
            })
        })
        .await
    }

    /// The current holder of lease `name`, if any (expired or not).
    pub async fn lease(&self, name: &str) -> Result<Option<Lease>> {
        let row = sqlx::query("SELECT holder, lease_until FROM job_leases WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.read)
            .await?;
        row.map(|r| {
            Ok(Lease {
                holder: r.try_get(0)?,
                until: r.try_get(1)?,
            })
        })
        .transpose()
    }

    /// Records the start of a run of `job`; returns its id.
    pub async fn start_run(&self, job: &str, now: i64) -> Result<i64> {
        let job = job.to_owned();
        self.transact(move |c| {
            Box::pin(async move {
                let row = sqlx::query(
                    "INSERT INTO job_runs (job, started_at) VALUES ($1, $2) RETURNING id",
                )
                .bind(&job)
                .bind(now)
                .fetch_one(&mut *c)
                .await?;
                Ok(row.try_get::<i64, _>(0)?)
            })
        })
        .await
    }

    /// Records the end of run `id`, and publishes its outbox event (a GC
    /// or retention run finished) in the same transaction.
    pub async fn finish_run(
        &self,
        id: i64,
        now: i64,
        ok: bool,
        summary: &serde_json::Value,
    ) -> Result<()> {
        let summary_value = summary.clone();
        let summary = summary.to_string();
        self.transact(move |c| {
            Box::pin(async move {
                sqlx::query(
                    "UPDATE job_runs SET finished_at = $2, ok = $3, summary = $4 WHERE id = $1",
                )
                .bind(id)
                .bind(now)
                .bind(ok)
                .bind(&summary)
                .execute(&mut *c)
                .await?;
                crate::events::record_run(c, id, now, ok, &summary_value).await
            })
        })
        .await
    }

    /// The most recent runs of `job` (or of every job whose name starts
    /// with `job` when it ends in `:`), newest first.
    pub async fn job_runs(&self, job: &str, limit: i64) -> Result<Vec<JobRun>> {
        let (clause, value) = match job.strip_suffix(':') {
            // Job names are ASCII; ';' sorts right after ':'.
            Some(prefix) => ("job >= $1 AND job < $2", Some(format!("{prefix};"))),
            None => ("job = $1 AND $2 IS NULL", None),
        };
        let sql = format!(
            "SELECT id, job, started_at, finished_at, CASE WHEN ok THEN 1 WHEN NOT ok THEN 0 END,
                    summary
             FROM job_runs WHERE {clause} ORDER BY started_at DESC, id DESC LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(job)
            .bind(value)
            .bind(limit.clamp(1, 1000))
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| {
                let ok: Option<i64> = r.try_get(4)?;
                let summary: Option<String> = r.try_get(5)?;
                Ok(JobRun {
                    id: r.try_get(0)?,
                    job: r.try_get(1)?,
                    started_at: r.try_get(2)?,
                    finished_at: r.try_get(3)?,
                    ok: ok.map(|v| v != 0),
                    summary: summary.and_then(|s| serde_json::from_str(&s).ok()),
                })
            })
            .collect()
    }

    /// The most recent run of `job`.
    pub async fn last_run(&self, job: &str) -> Result<Option<JobRun>> {
        Ok(self.job_runs(job, 1).await?.into_iter().next())
    }
}
