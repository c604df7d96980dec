//! Web UI sign-in sessions (`ui_sessions`).
//!
//! A session is found by the SHA-256 of its random id (the cookie value
//! never reaches the database, so a leaked table does not sign anyone
//! in). It names the account it speaks for and, when it was opened with
//! an access token rather than a password, that token: the session is
//! then held to the token's limits and ends with it. Rows live in the
//! shared database, so every replica of a scale-out deployment serves
//! every session. Expiry rules are the registry layer's; this module
//! stores times and deletes what it is told.

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{Meta, Result};

/// A session to store.
#[derive(Debug, Clone)]
pub struct NewUiSession {
    /// Hex SHA-256 of the session id.
    pub id_hash: String,
    /// The account it speaks for.
    pub account: String,
    /// The access token it was opened with, if not a password.
    pub token_id: Option<String>,
    /// The per-session secret forms carry (CSRF).
    pub csrf_secret: String,
    /// Opening time (Unix ms).
    pub created_at: i64,
    /// When it ends whatever its use (Unix ms).
    pub expires_at: i64,
}

/// A stored session.
#[derive(Clone, PartialEq, Eq)]
pub struct UiSession {
    /// Hex SHA-256 of the session id.
    pub id_hash: String,
    /// The account it speaks for.
    pub account: String,
    /// The access token it was opened with, if not a password.
    pub token_id: Option<String>,
    /// The per-session secret forms carry (CSRF).
    pub csrf_secret: String,
    /// Opening time (Unix ms).
    pub created_at: i64,
    /// Last request seen (Unix ms), written at most once a minute.
    pub last_seen_at: i64,
    /// When it ends whatever its use (Unix ms).
    pub expires_at: i64,
}

impl std::fmt::Debug for UiSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UiSession")
            .field("account", &self.account)
            .field("token_id", &self.token_id)
            .field("created_at", &self.created_at)
            .field("last_seen_at", &self.last_seen_at)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

fn session_row(r: &AnyRow) -> Result<UiSession> {
    Ok(UiSession {
        id_hash: r.try_get("id_hash")?,
        account: r.try_get("account")?,
        token_id: r.try_get("token_id")?,
        csrf_secret: r.try_get("csrf_secret")?,
        created_at: r.try_get("created_at")?,
        last_seen_at: r.try_get("last_seen_at")?,
        expires_at: r.try_get("expires_at")?,
    })
}

impl Meta {
    /// Stores a new session; `false` when its account does not exist.
    pub async fn create_ui_session(&self, s: &NewUiSession) -> Result<bool> {
        let s = s.clone();
        self.transact(move |c| {
            Box::pin(async move {
                let done = sqlx::query(
                    "INSERT INTO ui_sessions (id_hash, account, token_id, csrf_secret,
                                              created_at, last_seen_at, expires_at)
                     SELECT $1, name, $3, $4, $5, $5, $6 FROM users WHERE name = $2",
                )
                .bind(&s.id_hash)
                .bind(&s.account)
                .bind(&s.token_id)
                .bind(&s.csrf_secret)
                .bind(s.created_at)
                .bind(s.expires_at)
                .execute(&mut *c)
                .await?;
                Ok(done.rows_affected() == 1)
            })
        })
        .await
    }

    /// The session whose id hashes to `id_hash`, expired or not.
    pub async fn ui_session(&self, id_hash: &str) -> Result<Option<UiSession>> {
        let row = sqlx::query(
            "SELECT id_hash, account, token_id, csrf_secret, created_at, last_seen_at, expires_at
             FROM ui_sessions WHERE id_hash = $1",
        )
        .bind(id_hash)
        .fetch_optional(&self.read)
        .await?;
        row.map(|r| session_row(&r)).transpose()
    }

    /// Records a request of the session at `at` (never moving it back).
    pub async fn touch_ui_session(&self, id_hash: &str, at: i64) -> Result<()> {
        let id_hash = id_hash.to_owned();
        self.transact(move |c| {
            Box::pin(async move {
                sqlx::query(
                    "UPDATE ui_sessions SET last_seen_at = $2
                     WHERE id_hash = $1 AND last_seen_at < $2",
                )
                .bind(&id_hash)
                .bind(at)
                .execute(&mut *c)
                .await?;
                Ok(())
            })
        })
        .await
    }

    /// Deletes a session (sign-out); `false` if there was none.
    pub async fn delete_ui_session(&self, id_hash: &str) -> Result<bool> {
        let id_hash = id_hash.to_owned();
        self.transact(move |c| {
            Box::pin(async move {
                let done = sqlx::query("DELETE FROM ui_sessions WHERE id_hash = $1")
                    .bind(&id_hash)
                    .execute(&mut *c)
                    .await?;
                Ok(done.rows_affected() > 0)
            })
        })
        .await
    }

    /// Deletes the sessions that ended: past their absolute expiry, or
    /// last seen before `idle_before`. Returns how many.
    pub async fn prune_ui_sessions(&self, now: i64, idle_before: i64) -> Result<u64> {
        self.transact(move |c| {
            Box::pin(async move {
                let done = sqlx::query(
                    "DELETE FROM ui_sessions WHERE expires_at <= $1 OR last_seen_at < $2",
                )
                .bind(now)
                .bind(idle_before)
                .execute(&mut *c)
                .await?;
                Ok(done.rows_affected())
            })
        })
        .await
    }
}
