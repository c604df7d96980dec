//! Checking credentials: passwords, access tokens and registry tokens.
//!
//! Logins (a password or an access token checked against the database)
//! are recorded in the audit log: failures always, with the name tried and
//! the client address; successes when the caller says it is a login (the
//! token endpoint) or when a password was verified rather than found in
//! the login cache. Failed attempts feed the throttles; a throttled
//! attempt is refused before its credentials are looked at.

use std::net::IpAddr;
use std::time::Instant;

use berth_meta::accounts::{AccountKind, User};
use berth_meta::audit::{action, Actor};
use berth_meta::tokens::TokenKind;
use serde_json::json;
use sha2::Digest as _;

use super::cache::through;
use super::identity::{Credentials, Grants, Identity};
use super::permission::{Access, Account, TokenLimits};
use super::{argon2_slot, jwt, scope, secret, verify_in_slot, Authority};
use crate::{Error, Result};

const REFUSED: &str = "invalid username or password";

fn account_of(user: &User) -> Account {
    Account {
        name: user.name.clone(),
        kind: user.kind,
        org: user.org.clone(),
        site_admin: user.site_admin,
    }
}

fn unauthorized(msg: &str) -> Error {
    Error::Unauthorized(msg.to_owned())
}

impl Authority {
    /// Who `credentials` prove the caller to be. `login` marks a login
    /// proper (the token endpoint), which is audited even when served from
    /// the login cache. Wrong credentials are `Unauthorized`; too many
    /// recent failures `TooManyRequests`. In open mode everyone is
    /// anonymous.
    pub async fn authenticate(
        &self,
        credentials: &Credentials,
        ip: Option<IpAddr>,
        login: bool,
    ) -> Result<Identity> {
        if !self.enforced() {
            return Ok(Identity::anonymous());
        }
        match credentials {
            Credentials::None => Ok(Identity::anonymous()),
            Credentials::Malformed => Err(unauthorized("malformed Authorization header")),
            Credentials::Basic { username, password } if secret::looks_like_token(password) => {
                self.token_login(Some(username), password, ip, login).await
            }
            Credentials::Basic { username, password } => {
                self.password_login(username, password, ip, login).await
            }
            Credentials::Bearer(t) if secret::looks_like_token(t) => {
                self.token_login(None, t, ip, login).await
            }
            Credentials::Bearer(t) => self.verify_registry_token(t).await,
        }
    }

    /// The enabled account `name`, through the cache.
    pub(crate) async fn account(&self, name: &str) -> Result<Option<User>> {
        let user = through(
            &self.meta,
            &self.cache.users,
            name.to_owned(),
            self.meta.user(name),
        )
        .await?;
        Ok(user.filter(|u| u.disabled_at.is_none()))
    }

    fn throttled(&self, ip: Option<IpAddr>, username: Option<&str>) -> Result<()> {
        let now = Instant::now();
        let mut wait = std::time::Duration::ZERO;
        if let Some(ip) = ip {
            if let Err(w) = self.ip_throttle.check(&ip.to_string(), now) {
                wait = wait.max(w);
            }
        }
        if let Some(u) = username {
            if let Err(w) = self.account_throttle.check(u, now) {
                wait = wait.max(w);
            }
        }
        if wait.is_zero() {
            Ok(())
        } else {
            Err(Error::TooManyRequests {
                retry_after: wait.as_secs_f64().ceil().max(1.0) as u64,
            })
        }
    }

    async fn failed(
        &self,
        ip: Option<IpAddr>,
        username: Option<&str>,
        method: &str,
        why: &str,
    ) -> Error {
        let now = Instant::now();
        if let Some(ip) = ip {
            self.ip_throttle.fail(&ip.to_string(), now);
        }
        if let Some(u) = username {
            self.account_throttle.fail(u, now);
        }
        let shown = recordable(username);
        let actor = Actor {
            name: shown.to_owned(),
            ip: ip.map(|i| i.to_string()),
            at: berth_meta::now_ms(),
        };
        let event = actor
            .event(action::LOGIN_FAILED)
            .detail(json!({"method": method, "reason": why}));
        if let Err(e) = self.meta.record_event(event).await {
            tracing::warn!(error = %e, "recording a failed login failed");
        }
        tracing::info!(user = shown, ip = ?ip, method, "login refused: {why}");
        unauthorized(REFUSED)
    }

    async fn succeeded(&self, name: &str, ip: Option<IpAddr>, detail: serde_json::Value) {
        self.account_throttle.succeed(name);
        let actor = Actor {
            name: name.to_owned(),
            ip: ip.map(|i| i.to_string()),
            at: berth_meta::now_ms(),
        };
        if let Err(e) = self
            .meta
            .record_event(actor.event(action::LOGIN).detail(detail))
            .await
        {
            tracing::warn!(error = %e, "recording a login failed");
        }
    }

    /// The identity of credentials verified recently (by their key), if
    /// the account still exists.
    async fn cached_login(
        &self,
        key: &[u8; 32],
        epoch: u64,
        ip: Option<IpAddr>,
        login: bool,
    ) -> Result<Option<Identity>> {
        let Some(name) = self.cache.logins.get(key, epoch) else {
            return Ok(None);
        };
        let Some(user) = self.account(&name).await? else {
            return Ok(None);
        };
        if login {
            self.succeeded(&name, ip, json!({"method": "password"}))
                .await;
        }
        Ok(Some(Identity {
            account: Some(account_of(&user)),
            ..Identity::default()
        }))
    }

    async fn password_login(
        &self,
        username: &str,
        password: &str,
        ip: Option<IpAddr>,
        login: bool,
    ) -> Result<Identity> {
        self.throttled(ip, Some(username))?;
        let mut h = sha2::Sha256::new();
        h.update(username.as_bytes());
        h.update([0]);
        h.update(password.as_bytes());
        let key: [u8; 32] = h.finalize().into();
        let epoch = self.meta.accounts_epoch();
        if let Some(id) = self.cached_login(&key, epoch, ip, login).await? {
            return Ok(id);
        }
        // Concurrent logins with the same credentials (a CI fleet
        // starting) wait for one slot, and all but the first find the
        // verified login in the cache.
        let _slot = argon2_slot().await?;
        if let Some(id) = self.cached_login(&key, epoch, ip, login).await? {
            return Ok(id);
        }
        let user = self.account(username).await?;
        let stored = user
            .as_ref()
            .filter(|u| u.kind == AccountKind::User)
            .and_then(|u| u.password_hash.clone());
        let ok = match stored {
            Some(hash) => verify_in_slot(password.to_owned(), hash).await?,
            None => {
                // Same cost as a wrong password: no oracle for user names.
                let decoy = self.decoy_hash().await?;
                verify_in_slot(password.to_owned(), decoy).await?;
                false
            }
        };
        match user {
            Some(user) if ok => {
                self.cache.logins.put(key, user.name.clone(), epoch);
                self.succeeded(&user.name, ip, json!({"method": "password"}))
                    .await;
                Ok(Identity {
                    account: Some(account_of(&user)),
                    ..Identity::default()
                })
            }
            _ => Err(self
                .failed(
                    ip,
                    Some(username),
                    "password",
                    "wrong user name or password",
                )
                .await),
        }
    }

    async fn token_login(
        &self,
        username: Option<&str>,
        token: &str,
        ip: Option<IpAddr>,
        login: bool,
    ) -> Result<Identity> {
        self.throttled(ip, username)?;
        let Some((_, id, secret_part)) = secret::parse(token) else {
            return Err(self.failed(ip, username, "token", "malformed token").await);
        };
        let record = through(
            &self.meta,
            &self.cache.tokens,
            id.to_owned(),
            self.meta.token(id),
        )
        .await?;
        let Some(record) = record.filter(|r| secret::verify_secret(secret_part, &r.secret_hash))
        else {
            return Err(self.failed(ip, username, "token", "unknown token").await);
        };
        if !record.usable(berth_meta::now_ms()) {
            let why = if record.revoked_at.is_some() {
                "revoked token"
            } else {
                "expired token"
            };
            return Err(self.failed(ip, username, "token", why).await);
        }
        let Some(owner) = self.account(&record.owner).await? else {
            return Err(self.failed(ip, username, "token", "disabled account").await);
        };
        self.record_token_use(&record.id);
        if login {
            let detail = json!({"method": "token", "token": record.id, "kind": record.kind});
            self.succeeded(&owner.name, ip, detail).await;
        }
        let limits = match record.kind {
            // A refresh token stands for the password it was issued for.
            TokenKind::Refresh => TokenLimits {
                id: record.id.clone(),
                scopes: Access::ALL,
                patterns: Vec::new(),
                session: true,
            },
            TokenKind::Pat | TokenKind::Robot => TokenLimits {
                id: record.id.clone(),
                scopes: Access::of_scopes(&record.scopes),
                patterns: record.patterns.clone(),
                session: false,
            },
        };
        Ok(Identity {
            account: Some(account_of(&owner)),
            token: Some(limits),
            grants: None,
        })
    }

    /// Verifies a registry token (JWT) and rebuilds its identity. Its
    /// account and access token are looked up again (through the cache),
    /// so disabling an account or revoking a token also ends the registry
    /// tokens obtained with it.
    async fn verify_registry_token(&self, token: &str) -> Result<Identity> {
        let now = berth_meta::now_ms() / 1000;
        let claims = jwt::verify(&self.key, token, &self.settings.service, now)
            .map_err(|e| unauthorized(&e.to_string()))?;
        let account = if claims.sub.is_empty() {
            None
        } else {
            let user = self
                .account(&claims.sub)
                .await?
                // Same name, another account: deleted and created again.
                .filter(|u| claims.sct.is_none_or(|at| at == u.created_at))
                .ok_or_else(|| unauthorized("the token's account is disabled or gone"))?;
            Some(account_of(&user))
        };
        let token = match &claims.tid {
            None => None,
            Some(tid) => {
                let record = through(
                    &self.meta,
                    &self.cache.tokens,
                    tid.clone(),
                    self.meta.token(tid),
                )
                .await?
                .filter(|r| r.usable(berth_meta::now_ms()))
                .ok_or_else(|| unauthorized("the access token behind this token was revoked"))?;
                self.record_token_use(&record.id);
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
        let mut grants = Grants {
            expires_at: Some(claims.exp),
            ..Grants::default()
        };
        for a in &claims.access {
            match a.kind.as_str() {
                "repository" => grants
                    .repositories
                    .push((a.name.clone(), scope::parse_actions(&a.actions.join(",")))),
                "registry" if a.name == "catalog" => grants.catalog = true,
                _ => {}
            }
        }
        Ok(Identity {
            account,
            token,
            grants: Some(grants),
        })
    }
}

/// A refused user name as it may be written to the audit log and the log:
/// something that looks like a secret (a token pasted into the user field,
/// or longer than any account name) is never recorded.
fn recordable(username: Option<&str>) -> &str {
    match username {
        None => "anonymous",
        Some(u)
            if super::secret::looks_like_token(u) || u.len() > 2 * super::manage::MAX_NAME + 1 =>
        {
            "(redacted)"
        }
        Some(u) => u,
    }
}

#[cfg(test)]
mod recordable_tests {
    use super::recordable;

    #[test]
    fn secrets_in_the_user_field_are_not_recorded() {
        assert_eq!(recordable(None), "anonymous");
        assert_eq!(recordable(Some("alice")), "alice");
        assert_eq!(recordable(Some("acme+ci")), "acme+ci");
        assert_eq!(recordable(Some("berth_pat_abc_def")), "(redacted)");
        assert_eq!(recordable(Some(&"x".repeat(200))), "(redacted)");
    }
}
