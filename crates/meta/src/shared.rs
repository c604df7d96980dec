//! State the replicas of a cluster share through the database: the bytes
//! open uploads hold against namespace quotas, pull rate limit windows and
//! failed-login counts. One process on SQLite keeps these in memory (see
//! the registry's `quota`, `auth::ratelimit` and `auth::throttle`); the
//! registry uses these methods when replicas share a PostgreSQL.
//!
//! Quota checks take the namespace's lock ([`lock_namespace`]) inside their
//! transaction, so two replicas cannot both see room that only one of them
//! may use.

use sqlx::{AnyConnection, Row};

use berth_oci::Namespace;

use crate::db::Dialect;
use crate::{Meta, Result};

/// Serialises quota decisions of namespace `ns` until the transaction
/// ends: a PostgreSQL advisory transaction lock (SQLite's single writer
/// serialises them already).
pub(crate) async fn lock_namespace(
    c: &mut AnyConnection,
    dialect: Dialect,
    ns: &Namespace,
) -> Result<()> {
    if dialect == Dialect::Postgres {
        sqlx::query("SELECT 1 AS locked FROM pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(format!("quota:{ns}"))
            .execute(&mut *c)
            .await?;
    }
    Ok(())
}

/// Bytes held by the open uploads of `ns` (other than `except`).
async fn held(c: &mut AnyConnection, ns: &Namespace, except: &str) -> Result<u64> {
    let row = sqlx::query(
        "SELECT CAST(COALESCE(SUM(bytes), 0) AS BIGINT) FROM upload_reservations
         WHERE namespace = $1 AND session <> $2",
    )
    .bind(ns.as_str())
    .bind(except)
    .fetch_one(&mut *c)
    .await?;
    Ok(row.try_get::<i64, _>(0)?.max(0) as u64)
}

impl Meta {
    /// Bytes the open uploads of namespace `ns` hold, those of session
    /// `except` excluded.
    pub async fn upload_reservations(&self, ns: &Namespace, except: Option<&str>) -> Result<u64> {
        let mut c = self.read.acquire().await?;
        held(&mut c, ns, except.unwrap_or("")).await
    }

    /// Reserves at least `need` and at most `want` more bytes for upload
    /// `session` of `ns`, as much as stored content plus every upload's
    /// bytes leave free under `limit`. Returns the bytes granted, `None`
    /// when not even `need` fits.
    pub async fn reserve_upload(
        &self,
        ns: &Namespace,
        session: &str,
        need: u64,
        want: u64,
        limit: u64,
    ) -> Result<Option<u64>> {
        let (ns, session, dialect) = (ns.clone(), session.to_owned(), self.dialect());
        self.transact(move |c| {
            Box::pin(async move {
                lock_namespace(c, dialect, &ns).await?;
                let used = crate::usage::usage(c, &ns).await?;
                let others = held(c, &ns, "").await?;
                let free = limit.saturating_sub(used).saturating_sub(others);
                if need > free {
                    return Ok(None);
                }
                let granted = want.max(need).min(free);
                sqlx::query(
                    "INSERT INTO upload_reservations (session, namespace, bytes, updated_at)
                     VALUES ($1, $2, $3, $4)
                     ON CONFLICT (session) DO UPDATE
                     SET bytes = upload_reservations.bytes + excluded.bytes,
                         updated_at = excluded.updated_at",
                )
                .bind(&session)
                .bind(ns.as_str())
                .bind(granted as i64)
                .bind(crate::now_ms())
                .execute(&mut *c)
                .await?;
                Ok(Some(granted))
            })
        })
        .await
    }

    /// Records that upload `session` of `ns` holds exactly `bytes`.
    pub async fn set_upload_reservation(
        &self,
        ns: &Namespace,
        session: &str,
        bytes: u64,
    ) -> Result<()> {
        let (ns, session) = (ns.clone(), session.to_owned());
        self.transact(move |c| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO upload_reservations (session, namespace, bytes, updated_at)
                     VALUES ($1, $2, $3, $4)
                     ON CONFLICT (session) DO UPDATE
                     SET bytes = excluded.bytes, updated_at = excluded.updated_at",
                )
                .bind(&session)
                .bind(ns.as_str())
                .bind(bytes as i64)
                .bind(crate::now_ms())
                .execute(&mut *c)
                .await?;
                Ok(())
            })
        })
        .await
    }

    /// Forgets upload `session` (completed, cancelled, purged).
    pub async fn release_upload(&self, session: &str) -> Result<()> {
        let session = session.to_owned();
        self.transact(move |c| {
            Box::pin(async move {
                sqlx::query("DELETE FROM upload_reservations WHERE session = $1")
                    .bind(&session)
                    .execute(&mut *c)
                    .await?;
                Ok(())
            })
        })
        .await
    }

    /// Counts a request of `key` in its fixed rate window (`window_ms`
    /// long, opened by the first request; `consume`: count it). Returns
    /// the window's start and its count, refused requests included.
    pub async fn hit_rate_window(
        &self,
        key: &str,
        now: i64,
        window_ms: i64,
        consume: bool,
    ) -> Result<(i64, u64)> {
        let key = key.to_owned();
        self.transact(move |c| {
            Box::pin(async move {
                let row = sqlx::query(
                    "INSERT INTO rate_windows (key, started_at, count) VALUES ($1, $2, $3)
                     ON CONFLICT (key) DO UPDATE SET
                       started_at = CASE WHEN rate_windows.started_at <= $4
                                         THEN excluded.started_at
                                         ELSE rate_windows.started_at END,
                       count = CASE WHEN rate_windows.started_at <= $4 THEN excluded.count
                                    ELSE rate_windows.count + excluded.count END
                     RETURNING started_at, count",
                )
                .bind(&key)
                .bind(now)
                .bind(i64::from(consume))
                .bind(now - window_ms)
                .fetch_one(&mut *c)
                .await?;
                Ok((
                    row.try_get::<i64, _>(0)?,
                    row.try_get::<i64, _>(1)?.max(0) as u64,
                ))
            })
        })
        .await
    }

    /// Failed logins recorded for `key`: their count and the time of the
    /// last one (Unix ms).
    pub async fn login_failures(&self, key: &str) -> Result<Option<(u32, i64)>> {
        let row = sqlx::query("SELECT count, last_at FROM login_failures WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.read)
            .await?;
        row.map(|r| {
            let count: i64 = r.try_get(0)?;
            Ok((count.clamp(0, i64::from(u32::MAX)) as u32, r.try_get(1)?))
        })
        .transpose()
    }

    /// Counts a failed login of `key` at `now`; failures older than
    /// `forget_ms` are forgotten first.
    pub async fn add_login_failure(&self, key: &str, now: i64, forget_ms: i64) -> Result<()> {
        let key = key.to_owned();
        self.transact(move |c| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO login_failures (key, count, last_at) VALUES ($1, 1, $2)
                     ON CONFLICT (key) DO UPDATE SET
                       count = CASE WHEN login_failures.last_at <= $3 THEN 1
                                    ELSE login_failures.count + 1 END,
                       last_at = excluded.last_at",
                )
                .bind(&key)
                .bind(now)
                .bind(now - forget_ms)
                .execute(&mut *c)
                .await?;
                Ok(())
            })
        })
        .await
    }

    /// Deletes the rate windows opened at or before `windows_before` and
    /// the failed-login counts last added to at or before
    /// `failures_before` (Unix ms): expired rows, which the next request of
    /// their key would start afresh anyway. Returns how many went.
    pub async fn prune_counters(&self, windows_before: i64, failures_before: i64) -> Result<u64> {
        self.transact(move |c| {
            Box::pin(async move {
                let windows = sqlx::query("DELETE FROM rate_windows WHERE started_at <= $1")
                    .bind(windows_before)
                    .execute(&mut *c)
                    .await?
                    .rows_affected();
                let failures = sqlx::query("DELETE FROM login_failures WHERE last_at <= $1")
                    .bind(failures_before)
                    .execute(&mut *c)
                    .await?
                    .rows_affected();
                Ok(windows + failures)
            })
        })
        .await
    }

    /// Forgets the failed logins of `key` (it logged in).
    pub async fn clear_login_failures(&self, key: &str) -> Result<()> {
        let key = key.to_owned();
        self.transact(move |c| {
            Box::pin(async move {
                sqlx::query("DELETE FROM login_failures WHERE key = $1")
                    .bind(&key)
                    .execute(&mut *c)
                    .await?;
                Ok(())
            })
        })
        .await
    }
}
