//! Web UI sessions: a sign-in turned into a server-side session.
//!
//! The UI signs in with the same credentials the API takes (a password, or
//! an access token), checked by [`Authority::authenticate`] with its
//! throttling and audit. The session then stands for that identity: an
//! account signed in with its password may do what the password may; one
//! signed in with an access token stays held to the token's scopes and
//! patterns, and ends when the token is revoked or expires. Disabling the
//! account, deleting it, changing its password or revoking its sessions
//! ends the session too.
//!
//! The session id (256 random bits, the cookie's value) is stored only as
//! its SHA-256; each session has its own CSRF secret that every form of
//! the UI carries back. A session ends after `absolute` whatever its use,
//! or after `idle` without a request; ended sessions are deleted when
//! next presented and by [`Authority::prune_ui_sessions`].

use berth_meta::sessions::{NewUiSession, UiSession};
use berth_meta::tokens::TokenKind;
use sha2::Digest as _;

use super::identity::Identity;
use super::login::account_of;
use super::permission::{Access, TokenLimits};
use super::{secret, Authority};
use crate::{Error, Result};

/// How often a session's last request is written (at most).
const TOUCH_EVERY_MS: i64 = 60_000;

/// A session just opened: the id for the cookie and the form secret.
#[derive(Clone)]
pub struct OpenedSession {
    /// The session id: the cookie's value, never stored.
    pub id: String,
    /// The CSRF secret forms carry.
    pub csrf: String,
}

impl std::fmt::Debug for OpenedSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OpenedSession(***)")
    }
}

/// A live session and the identity it stands for.
#[derive(Clone)]
pub struct LiveSession {
    /// Who the session speaks for.
    pub identity: Identity,
    /// The CSRF secret forms must carry.
    pub csrf: String,
    /// When it ends whatever its use (Unix ms).
    pub expires_at: i64,
}

impl std::fmt::Debug for LiveSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveSession")
            .field("identity", &self.identity)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// The stored key of a session id.
fn id_hash(id: &str) -> String {
    hex::encode(sha2::Sha256::digest(id.as_bytes()))
}

/// Whether a session is over at `now`.
fn ended(s: &UiSession, now: i64, idle_ms: i64) -> bool {
    now >= s.expires_at || now.saturating_sub(s.last_seen_at) >= idle_ms
}

impl Authority {
    /// Opens a session for `identity`, which signed in with a password or
    /// an access token, for at most `absolute_ms`. Registry tokens, client
    /// certificates and keyless workloads open no sessions (they are not
    /// credentials a person types).
    pub async fn open_ui_session(
        &self,
        identity: &Identity,
        absolute_ms: i64,
    ) -> Result<OpenedSession> {
        let account = identity
            .account
            .as_ref()
            .filter(|_| identity.grants.is_none() && identity.certificate.is_none())
            .ok_or_else(|| {
                Error::Unauthorized("sign in with an account's password or access token".into())
            })?;
        let id = secret::random_string(43)?;
        let csrf = secret::random_string(43)?;
        let now = berth_meta::now_ms();
        let stored = self
            .meta
            .create_ui_session(&NewUiSession {
                id_hash: id_hash(&id),
                account: account.name.clone(),
                token_id: identity.token.as_ref().map(|t| t.id.clone()),
                csrf_secret: csrf.clone(),
                created_at: now,
                expires_at: now.saturating_add(absolute_ms.max(1)),
            })
            .await?;
        if !stored {
            return Err(Error::Unauthorized(format!(
                "account {} is gone",
                account.name
            )));
        }
        Ok(OpenedSession { id, csrf })
    }

    /// The live session of the cookie value `id`, or `None` when there is
    /// none or it ended (idle for `idle_ms`, past its absolute expiry, its
    /// account disabled or gone, its token revoked or expired): an ended
    /// session is deleted.
    pub async fn ui_session(&self, id: &str, idle_ms: i64) -> Result<Option<LiveSession>> {
        if id.is_empty() || id.len() > 128 {
            return Ok(None);
        }
        let key = id_hash(id);
        let Some(stored) = self.meta.ui_session(&key).await? else {
            return Ok(None);
        };
        let now = berth_meta::now_ms();
        let identity = if ended(&stored, now, idle_ms) {
            None
        } else {
            self.session_identity(&stored, now).await?
        };
        let Some(identity) = identity else {
            self.meta.delete_ui_session(&key).await?;
            return Ok(None);
        };
        if now - stored.last_seen_at >= TOUCH_EVERY_MS {
            self.meta.touch_ui_session(&key, now).await?;
        }
        Ok(Some(LiveSession {
            identity,
            csrf: stored.csrf_secret,
            expires_at: stored.expires_at,
        }))
    }

    /// The identity a stored session stands for, if its account and token
    /// are still usable.
    async fn session_identity(&self, s: &UiSession, now: i64) -> Result<Option<Identity>> {
        let Some(user) = self.account(&s.account).await? else {
            return Ok(None);
        };
        let token = match &s.token_id {
            None => None,
            Some(id) => {
                let record = self.meta.token(id).await?;
                let Some(record) = record.filter(|r| r.usable(now) && r.owner == user.name) else {
                    return Ok(None);
                };
                Some(TokenLimits {
                    id: record.id.clone(),
                    scopes: match record.kind {
                        TokenKind::Refresh => Access::ALL,
                        _ => Access::of_scopes(&record.scopes),
                    },
                    patterns: record.patterns,
                    session: record.kind == TokenKind::Refresh,
                })
            }
        };
        Ok(Some(Identity {
            account: Some(account_of(&user)),
            token,
            ..Identity::default()
        }))
    }

    /// Ends the session of the cookie value `id` (sign-out); `false` when
    /// there was none.
    pub async fn close_ui_session(&self, id: &str) -> Result<bool> {
        Ok(self.meta.delete_ui_session(&id_hash(id)).await?)
    }

    /// Deletes every session that ended by time; returns how many.
    pub async fn prune_ui_sessions(&self, idle_ms: i64) -> Result<u64> {
        let now = berth_meta::now_ms();
        Ok(self
            .meta
            .prune_ui_sessions(now, now.saturating_sub(idle_ms))
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(last_seen_at: i64, expires_at: i64) -> UiSession {
        UiSession {
            id_hash: id_hash("x"),
            account: "alice".into(),
            token_id: None,
            csrf_secret: "c".into(),
            created_at: 0,
            last_seen_at,
            expires_at,
        }
    }

    #[test]
    fn sessions_end_when_idle_or_past_their_expiry() {
        let s = session(1_000, 10_000);
        assert!(!ended(&s, 1_500, 1_000));
        assert!(ended(&s, 2_000, 1_000), "idle for the whole idle time");
        assert!(ended(&s, 10_000, 100_000), "absolute expiry");
        assert!(!ended(&s, 9_999, 100_000));
    }

    #[test]
    fn ids_are_stored_as_their_hash() {
        let h = id_hash("abc");
        assert_eq!(h.len(), 64);
        assert_ne!(h, "abc");
        assert_eq!(h, id_hash("abc"));
    }
}
