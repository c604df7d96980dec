//! Stored vulnerability scans: the last scan of each image manifest,
//! removed with the manifest (its foreign key cascades); the queue of
//! scans waiting for a worker (`scan_requests`, claimed with a lease);
//! the namespaces' scan policies.

use berth_oci::{Digest, Namespace, RepositoryName};
use serde_json::json;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};

use crate::audit::{self, action, Actor};
use crate::events::{self, NewEvent};
use crate::{Error, Meta, Result};

/// One image manifest's last scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredScan {
    /// The repository.
    pub repository: RepositoryName,
    /// The image manifest.
    pub digest: Digest,
    /// Its platform in an index.
    pub platform: Option<String>,
    /// When it was scanned (Unix ms).
    pub scanned_at: i64,
    /// When the vulnerability data it used last changed (Unix ms).
    pub vulndb_at: Option<i64>,
    /// Packages found.
    pub packages: u64,
    /// Findings: critical, high, medium, low, unknown.
    pub counts: [u64; 5],
    /// The report (JSON).
    pub report: String,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

impl Meta {
    /// Stores `scan`, replacing the manifest's previous one. Nothing is
    /// stored when the manifest is gone (`false`).
    pub async fn put_scan(&self, scan: StoredScan) -> Result<bool> {
        self.transact(move |c| Box::pin(async move { put(c, &scan).await }))
            .await
    }

    /// The last scan of the image manifest `digest` of `repository`.
    pub async fn scan(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<StoredScan>> {
        let row = sqlx::query(
            "SELECT s.platform, s.scanned_at, s.vulndb_at, s.packages, s.critical, s.high,
               s.medium, s.low, s.unknown, s.report, s.error
             FROM scan_results s JOIN repositories r ON r.id = s.repository_id
             WHERE r.name = $1 AND s.digest = $2",
        )
        .bind(repository.as_str().to_owned())
        .bind(digest.as_str().to_owned())
        .fetch_optional(&self.read)
        .await?;
        row.map(|r| {
            let n = |i: usize| -> Result<u64> { Ok(r.try_get::<i64, _>(i)?.max(0) as u64) };
            Ok(StoredScan {
                repository: repository.clone(),
                digest: digest.clone(),
                platform: r.try_get(0)?,
                scanned_at: r.try_get(1)?,
                vulndb_at: r.try_get(2)?,
                packages: n(3)?,
                counts: [n(4)?, n(5)?, n(6)?, n(7)?, n(8)?],
                report: r.try_get(9)?,
                error: r.try_get(10)?,
            })
        })
        .transpose()
    }
}

/// A namespace's scan policy (a row of `scan_policies`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanPolicy {
    /// The namespace.
    pub namespace: Namespace,
    /// Whether a push of an image or index requests its scan.
    pub scan_on_push: bool,
    /// Pulls of images with findings at or above this severity
    /// (`critical`, `high`, `medium`, `low`) are refused; `None`: never.
    pub block_severity: Option<String>,
    /// What pulls of images without a stored result get: `allow` or
    /// `deny`.
    pub unscanned: String,
    /// When and by whom it was last set.
    pub updated_at: i64,
    /// Who set it.
    pub updated_by: Option<String>,
}

/// A scan waiting for (or claimed by) a scan worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanRequest {
    /// The repository.
    pub repository: RepositoryName,
    /// The image manifest to scan.
    pub digest: Digest,
    /// `push`, `vulndb` or `manual`.
    pub reason: String,
    /// When it was requested (Unix ms).
    pub requested_at: i64,
    /// Attempts so far, this one included once claimed.
    pub attempts: u64,
}

/// A finished scan to store, with what goes with it in one transaction.
#[derive(Debug, Clone)]
pub struct FinishedScan {
    /// The result.
    pub scan: StoredScan,
    /// The outbox event announcing it (`scan.completed`).
    pub event: Option<NewEvent>,
    /// The worker whose claim on the request ends (the request is deleted
    /// only if it still holds it).
    pub holder: Option<String>,
}

/// Where a manifest's result stands, for summaries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanRow {
    /// The image manifest.
    pub digest: Digest,
    /// When it was scanned.
    pub scanned_at: i64,
    /// The vulnerability data's time.
    pub vulndb_at: Option<i64>,
    /// critical, high, medium, low, unknown.
    pub counts: [u64; 5],
    /// Why it failed, if it did.
    pub error: Option<String>,
}

/// The push-time half of scan on push: inside the push's transaction,
/// requests the scan of `candidates` (the pushed image, or an index's
/// platform images not scanned yet) when the namespace of `repository`
/// scans on push. One statement per candidate; nothing when the namespace
/// has no such policy beyond the policy's lookup.
pub(crate) async fn request_on_push(
    conn: &mut AnyConnection,
    repository_id: i64,
    repository: &RepositoryName,
    candidates: &[Digest],
    now: i64,
) -> Result<()> {
    if candidates.is_empty() {
        return Ok(());
    }
    let on: Option<i64> =
        sqlx::query_scalar("SELECT scan_on_push FROM scan_policies WHERE namespace = $1")
            .bind(repository.namespace_str())
            .fetch_optional(&mut *conn)
            .await?;
    if on.unwrap_or(0) == 0 {
        return Ok(());
    }
    for d in candidates {
        sqlx::query(
            "INSERT INTO scan_requests (repository_id, digest, reason, requested_at, attempts)
             SELECT m.repository_id, m.digest, 'push', $3, 0 FROM manifests m
             WHERE m.repository_id = $1 AND m.digest = $2
               AND NOT EXISTS (SELECT 1 FROM scan_results s
                               WHERE s.repository_id = m.repository_id AND s.digest = m.digest)
             ON CONFLICT (repository_id, digest) DO NOTHING",
        )
        .bind(repository_id)
        .bind(d.as_str())
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

async fn set_policy(c: &mut AnyConnection, p: ScanPolicy, actor: Actor) -> Result<()> {
    sqlx::query(
        "INSERT INTO scan_policies (namespace, scan_on_push, block_severity, unscanned,
            updated_at, updated_by)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (namespace) DO UPDATE SET scan_on_push = excluded.scan_on_push,
            block_severity = excluded.block_severity, unscanned = excluded.unscanned,
            updated_at = excluded.updated_at, updated_by = excluded.updated_by",
    )
    .bind(p.namespace.as_str())
    .bind(i64::from(p.scan_on_push))
    .bind(p.block_severity.clone())
    .bind(p.unscanned.clone())
    .bind(actor.at)
    .bind(&actor.name)
    .execute(&mut *c)
    .await?;
    let event = actor.event(action::POLICY_CHANGE).detail(json!({
        "change": "scan.policy.set", "namespace": p.namespace, "scan_on_push": p.scan_on_push,
        "block_severity": p.block_severity, "unscanned": p.unscanned,
    }));
    audit::record(c, &event).await
}

async fn finish(c: &mut AnyConnection, f: FinishedScan) -> Result<bool> {
    let stored = put(c, &f.scan).await?;
    if stored {
        if let Some(e) = &f.event {
            events::publish(c, e).await?;
        }
    }
    if let Some(holder) = &f.holder {
        sqlx::query(
            "DELETE FROM scan_requests WHERE digest = $2 AND claimed_by = $3
               AND repository_id = (SELECT id FROM repositories WHERE name = $1)",
        )
        .bind(f.scan.repository.as_str())
        .bind(f.scan.digest.as_str())
        .bind(holder)
        .execute(&mut *c)
        .await?;
    }
    Ok(stored)
}

async fn put(c: &mut AnyConnection, scan: &StoredScan) -> Result<bool> {
    let [critical, high, medium, low, unknown] = scan.counts.map(|n| n as i64);
    let done = sqlx::query(
        "INSERT INTO scan_results (repository_id, digest, platform, scanned_at,
           vulndb_at, packages, critical, high, medium, low, unknown, report, error)
         SELECT m.repository_id, m.digest, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13
         FROM manifests m JOIN repositories r ON r.id = m.repository_id
         WHERE r.name = $1 AND m.digest = $2
         ON CONFLICT (repository_id, digest) DO UPDATE SET platform = excluded.platform,
           scanned_at = excluded.scanned_at, vulndb_at = excluded.vulndb_at,
           packages = excluded.packages, critical = excluded.critical,
           high = excluded.high, medium = excluded.medium, low = excluded.low,
           unknown = excluded.unknown, report = excluded.report, error = excluded.error",
    )
    .bind(scan.repository.as_str().to_owned())
    .bind(scan.digest.as_str().to_owned())
    .bind(scan.platform.clone())
    .bind(scan.scanned_at)
    .bind(scan.vulndb_at)
    .bind(scan.packages as i64)
    .bind(critical)
    .bind(high)
    .bind(medium)
    .bind(low)
    .bind(unknown)
    .bind(scan.report.clone())
    .bind(scan.error.clone())
    .execute(&mut *c)
    .await?
    .rows_affected()
        > 0;
    Ok(done)
}

fn policy_row(r: &AnyRow) -> Result<ScanPolicy> {
    let ns: String = r.try_get("namespace")?;
    Ok(ScanPolicy {
        namespace: Namespace::parse(&ns)
            .map_err(|e| Error::Corrupt(format!("scan policy namespace {ns:?}: {e}")))?,
        scan_on_push: r.try_get::<i64, _>("scan_on_push")? != 0,
        block_severity: r.try_get("block_severity")?,
        unscanned: r.try_get("unscanned")?,
        updated_at: r.try_get("updated_at")?,
        updated_by: r.try_get("updated_by")?,
    })
}

impl Meta {
    /// Every namespace's scan policy, by namespace.
    pub async fn scan_policies(&self) -> Result<Vec<ScanPolicy>> {
        let rows = sqlx::query(
            "SELECT namespace, scan_on_push, block_severity, unscanned, updated_at, updated_by
             FROM scan_policies ORDER BY namespace",
        )
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(policy_row).collect()
    }

    /// Sets the scan policy of `policy.namespace` (its `updated_*` come
    /// from `actor`), with a `policy.change` audit event.
    pub async fn set_scan_policy(&self, policy: &ScanPolicy, actor: &Actor) -> Result<()> {
        let (p, actor) = (policy.clone(), actor.clone());
        self.transact(move |c| Box::pin(set_policy(c, p, actor)))
            .await
    }

    /// Stores a finished scan, publishes its event and ends its request,
    /// in one transaction. `false`: the manifest is gone (nothing stored).
    pub async fn finish_scan(&self, finished: FinishedScan) -> Result<bool> {
        self.transact(move |c| Box::pin(finish(c, finished))).await
    }

    /// Requests a scan of the image manifest `digest` of `repository`
    /// (`false`: one is already waiting, or the manifest is gone).
    pub async fn request_scan(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        reason: &str,
        now: i64,
    ) -> Result<bool> {
        let (repo, digest, reason) = (repository.clone(), digest.clone(), reason.to_owned());
        self.transact(move |c| {
            Box::pin(async move {
                let n = sqlx::query(
                    "INSERT INTO scan_requests (repository_id, digest, reason, requested_at,
                                                attempts)
                     SELECT m.repository_id, m.digest, $3, $4, 0
                     FROM manifests m JOIN repositories r ON r.id = m.repository_id
                     WHERE r.name = $1 AND m.digest = $2
                     ON CONFLICT (repository_id, digest) DO NOTHING",
                )
                .bind(repo.as_str())
                .bind(digest.as_str())
                .bind(reason)
                .bind(now)
                .execute(&mut *c)
                .await?
                .rows_affected();
                Ok(n > 0)
            })
        })
        .await
    }

    /// Claims the oldest scan request that no worker holds (or whose
    /// holder's claim ran out, or whose retry is due) for `holder` until
    /// `until`, counting an attempt. Two workers never hold one request:
    /// the claim is a conditional update that only one of them can win.
    pub async fn claim_scan(
        &self,
        holder: &str,
        now: i64,
        until: i64,
    ) -> Result<Option<ScanRequest>> {
        let candidates = sqlx::query(
            "SELECT q.repository_id, r.name, q.digest, q.reason, q.requested_at, q.attempts
             FROM scan_requests q JOIN repositories r ON r.id = q.repository_id
             WHERE q.claimed_until IS NULL OR q.claimed_until <= $1
             ORDER BY q.requested_at, q.digest LIMIT 8",
        )
        .bind(now)
        .fetch_all(&self.read)
        .await?;
        for row in candidates {
            let repo_id: i64 = row.try_get("repository_id")?;
            let digest: String = row.try_get("digest")?;
            let holder = holder.to_owned();
            let d = digest.clone();
            let won = self
                .transact(move |c| {
                    Box::pin(async move {
                        let n = sqlx::query(
                            "UPDATE scan_requests SET claimed_by = $3, claimed_until = $4,
                                attempts = attempts + 1
                             WHERE repository_id = $1 AND digest = $2
                               AND (claimed_until IS NULL OR claimed_until <= $5)",
                        )
                        .bind(repo_id)
                        .bind(d)
                        .bind(holder)
                        .bind(until)
                        .bind(now)
                        .execute(&mut *c)
                        .await?
                        .rows_affected();
                        Ok(n > 0)
                    })
                })
                .await?;
            if !won {
                continue;
            }
            let name: String = row.try_get("name")?;
            return Ok(Some(ScanRequest {
                repository: RepositoryName::parse(&name)
                    .map_err(|e| Error::Corrupt(format!("repository name {name:?}: {e}")))?,
                digest: Digest::parse(&digest)
                    .map_err(|e| Error::Corrupt(format!("scan request digest: {e}")))?,
                reason: row.try_get("reason")?,
                requested_at: row.try_get("requested_at")?,
                attempts: row.try_get::<i64, _>("attempts")?.max(0) as u64 + 1,
            }));
        }
        Ok(None)
    }

    /// Gives a claimed request back after a failed attempt: no worker
    /// takes it again before `retry_at`; `error` says why it failed.
    pub async fn retry_scan(
        &self,
        request: &ScanRequest,
        holder: &str,
        retry_at: i64,
        error: &str,
    ) -> Result<()> {
        let (repo, digest) = (request.repository.clone(), request.digest.clone());
        let (holder, error) = (holder.to_owned(), error.to_owned());
        self.transact(move |c| {
            Box::pin(async move {
                sqlx::query(
                    "UPDATE scan_requests SET claimed_by = NULL, claimed_until = $4,
                        last_error = $5
                     WHERE digest = $2 AND claimed_by = $3
                       AND repository_id = (SELECT id FROM repositories WHERE name = $1)",
                )
                .bind(repo.as_str())
                .bind(digest.as_str())
                .bind(holder)
                .bind(retry_at)
                .bind(error)
                .execute(&mut *c)
                .await?;
                Ok(())
            })
        })
        .await
    }

    /// Scan requests waiting or running.
    pub async fn scan_queue_depth(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM scan_requests")
            .fetch_one(&self.read)
            .await?)
    }

    /// Requests rescans of at most `limit` stored results older than the
    /// vulnerability data (`vulndb_at` before `changed_at`, or none),
    /// oldest scans first, that have no request yet; failed scans (an
    /// image that cannot be read) are not retried. Returns how many.
    pub async fn request_rescans(&self, changed_at: i64, now: i64, limit: i64) -> Result<u64> {
        self.transact(move |c| {
            Box::pin(async move {
                let n = sqlx::query(
                    "INSERT INTO scan_requests (repository_id, digest, reason, requested_at,
                                                attempts)
                     SELECT s.repository_id, s.digest, 'vulndb', $2, 0 FROM scan_results s
                     WHERE (s.vulndb_at IS NULL OR s.vulndb_at < $1) AND s.error IS NULL
                       AND NOT EXISTS (SELECT 1 FROM scan_requests q
                           WHERE q.repository_id = s.repository_id AND q.digest = s.digest)
                     ORDER BY s.scanned_at LIMIT $3
                     ON CONFLICT (repository_id, digest) DO NOTHING",
                )
                .bind(changed_at)
                .bind(now)
                .bind(limit)
                .execute(&mut *c)
                .await?
                .rows_affected();
                Ok(n)
            })
        })
        .await
    }

    /// The stored results of the image manifests of `repository`.
    pub async fn scan_rows(&self, repository: &RepositoryName) -> Result<Vec<ScanRow>> {
        let rows = sqlx::query(
            "SELECT s.digest, s.scanned_at, s.vulndb_at, s.critical, s.high, s.medium, s.low,
                    s.unknown, s.error
             FROM scan_results s JOIN repositories r ON r.id = s.repository_id
             WHERE r.name = $1",
        )
        .bind(repository.as_str())
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(scan_row).collect()
    }

    /// The stored results of the image manifests `digests` of
    /// `repository` (those that have one), in one query.
    pub async fn scan_rows_of(
        &self,
        repository: &RepositoryName,
        digests: &[Digest],
    ) -> Result<Vec<ScanRow>> {
        if digests.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT s.digest, s.scanned_at, s.vulndb_at, s.critical, s.high, s.medium, s.low,
                    s.unknown, s.error
             FROM scan_results s JOIN repositories r ON r.id = s.repository_id
             WHERE r.name = $1 AND s.digest IN ({})",
            crate::gc::placeholders(2, digests.len())
        );
        let mut q = sqlx::query(&sql).bind(repository.as_str());
        for d in digests {
            q = q.bind(d.as_str());
        }
        let rows = q.fetch_all(&self.read).await?;
        rows.iter().map(scan_row).collect()
    }
}

fn scan_row(r: &sqlx::any::AnyRow) -> Result<ScanRow> {
    let n = |c: &str| -> Result<u64> { Ok(r.try_get::<i64, _>(c)?.max(0) as u64) };
    let digest: String = r.try_get("digest")?;
    Ok(ScanRow {
        digest: Digest::parse(&digest)
            .map_err(|e| Error::Corrupt(format!("scan result digest: {e}")))?,
        scanned_at: r.try_get("scanned_at")?,
        vulndb_at: r.try_get("vulndb_at")?,
        counts: [
            n("critical")?,
            n("high")?,
            n("medium")?,
            n("low")?,
            n("unknown")?,
        ],
        error: r.try_get("error")?,
    })
}
