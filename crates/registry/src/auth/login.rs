//! Checking credentials: passwords, access tokens and registry tokens.
//!
//! Logins (a password or an access token checked against the database)
//! are recorded in the audit log: failures (at most a few a minute, see
//! `failures`), with the client address and the name tried (only if it is
//! an account's: anything else may be a password typed into the user
//! field, and is recorded as a keyed hash); successes when the caller says
//! it is a login (the token endpoint) or when a password was verified
//! rather than found in the login cache.
//!
//! Throttling (see `throttle`): a password attempt is reserved, when it
//! starts, against its client address and against its (account, address)
//! pair, then counted as a failure or cleared by a success. Credentials
//! verified recently (the login cache) and valid access tokens are never
//! throttled: a valid credential is not refused because others failed
//! under the same name. Names that cannot log in with a password (robots,
//! names no account can have) are not kept in the account table; failed
//! tokens count against their address only.

use std::net::IpAddr;
use std::time::Instant;

use berth_meta::accounts::{AccountKind, User};
use berth_meta::audit::{action, Actor};
use berth_meta::tokens::TokenKind;
use hmac::Mac as _;
use serde_json::json;
use sha2::Digest as _;

use super::argon::{self, Class};
use super::burst::Seen;
use super::cache::through;
use super::failures::Verdict;
use super::identity::{Credentials, Grants, Identity};
use super::permission::{Access, Account, TokenLimits};
use super::throttle::{Outcome, Throttle};
use super::{jwt, scope, secret, Authority};
use crate::{Error, Result};
use berth_metrics::AuthFailure;

const REFUSED: &str = "invalid username or password";

pub(super) fn account_of(user: &User) -> Account {
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

/// A password attempt reserved in the throttles; ends as a failure, a
/// success or (dropped unfinished) abandoned.
struct Attempt<'a> {
    /// Throttle, key, and whether a success clears the key.
    keys: Vec<(&'a Throttle, String, bool)>,
    done: bool,
}

impl Attempt<'_> {
    fn end(mut self, outcome: Outcome) {
        self.finish(outcome);
    }

    fn finish(&mut self, outcome: Outcome) {
        if self.done {
            return;
        }
        self.done = true;
        let now = Instant::now();
        for (throttle, key, cleared_by_success) in &self.keys {
            // A success clears the (account, address) pair, never the
            // address: one good account must not reset an address's count.
            let o = match outcome {
                Outcome::Succeeded if !cleared_by_success => Outcome::Abandoned,
                o => o,
            };
            throttle.end(key, o, now);
        }
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        self.finish(Outcome::Abandoned);
    }
}

/// Whether an account of this name could log in with a password (robots
/// are `org+name`, which no user name can be).
fn password_name(name: &str) -> bool {
    super::validate_name(name).is_ok()
}

/// Counts a failed authentication in `berth_auth_failures_total` (by what
/// was wrong) or `berth_login_throttled_total`.
pub(super) fn observe_failure(credentials: &Credentials, e: &Error) {
    let m = berth_metrics::get();
    let kind = match e {
        Error::TooManyRequests { .. } => return m.login_throttled(),
        Error::Unauthorized(msg) => match credentials {
            Credentials::Malformed => AuthFailure::Malformed,
            Credentials::Bearer(t) if !secret::looks_like_token(t) => {
                if msg.contains("expired") {
                    AuthFailure::ExpiredToken
                } else if msg.contains("disabled") || msg.contains("revoked") {
                    AuthFailure::Disabled
                } else {
                    AuthFailure::InvalidToken
                }
            }
            _ => AuthFailure::BadCredentials,
        },
        _ => return,
    };
    m.auth_failure(kind);
}

impl Authority {
    /// Who `credentials` prove the caller to be. `login` marks a login
    /// proper (the token endpoint), which is audited even when served from
    /// the login cache. Wrong credentials are `Unauthorized`; too many
    /// recent failures `TooManyRequests`; password verification at capacity
    /// `Busy`. In open mode everyone is anonymous.
    pub async fn authenticate(
        &self,
        credentials: &Credentials,
        ip: Option<IpAddr>,
        login: bool,
    ) -> Result<Identity> {
        if !self.enforced() {
            return Ok(Identity::anonymous());
        }
        let out = self.authenticate_enforced(credentials, ip, login).await;
        if let Err(e) = &out {
            observe_failure(credentials, e);
        }
        out
    }

    async fn authenticate_enforced(
        &self,
        credentials: &Credentials,
        ip: Option<IpAddr>,
        login: bool,
    ) -> Result<Identity> {
        match credentials {
            Credentials::None => Ok(Identity::anonymous()),
            Credentials::Malformed => Err(unauthorized("malformed Authorization header")),
            Credentials::Basic { username, password } if username == super::oidc::USERNAME => {
                self.oidc_login(password, ip).await
            }
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

    /// Reserves a password attempt on `username` from `ip`, or refuses it
    /// with the wait.
    fn begin_attempt(&self, username: &str, ip: Option<IpAddr>) -> Result<Attempt<'_>> {
        let now = Instant::now();
        let mut wanted: Vec<(&Throttle, String, bool)> = Vec::with_capacity(2);
        if let Some(ip) = ip {
            wanted.push((&self.ip_throttle, ip.to_string(), false));
        }
        if password_name(username) {
            let key = match ip {
                Some(ip) => format!("{username}\0{ip}"),
                None => username.to_owned(),
            };
            wanted.push((&self.login_throttle, key, true));
        }
        let mut attempt = Attempt {
            keys: Vec::with_capacity(wanted.len()),
            done: false,
        };
        let mut wait = std::time::Duration::ZERO;
        for (throttle, key, clear) in wanted {
            match throttle.begin(&key, now) {
                Ok(()) => attempt.keys.push((throttle, key, clear)),
                Err(w) => wait = wait.max(w),
            }
        }
        if wait.is_zero() {
            Ok(attempt)
        } else {
            // Dropping `attempt` releases what it reserved.
            Err(Error::TooManyRequests {
                retry_after: wait.as_secs_f64().ceil().max(1.0) as u64,
            })
        }
    }

    /// The name to record for a refused login: the account's if there is
    /// one of that name, else a keyed hash (the "name" may be a password
    /// typed into the user field).
    async fn recordable(&self, username: Option<&str>, known: Option<&str>) -> String {
        if let Some(k) = known {
            return k.to_owned();
        }
        let Some(u) = username else {
            return "anonymous".to_owned();
        };
        if password_name(u) || (u.contains('+') && u.len() <= 2 * super::manage::MAX_NAME + 1) {
            if let Ok(Some(user)) = self.account(u).await {
                return user.name;
            }
        }
        unknown_name(&self.key, u)
    }

    /// Counts nothing (the caller did); records the failure in the audit
    /// log and the log unless failures arrive too fast, and returns the
    /// 401 to answer.
    async fn failed(
        &self,
        ip: Option<IpAddr>,
        username: Option<&str>,
        known: Option<&str>,
        method: &str,
        why: &str,
    ) -> Error {
        let suppressed = match self.failure_log.admit(Instant::now()) {
            Verdict::Record { suppressed } => suppressed,
            Verdict::Suppress { first } => {
                if first {
                    tracing::warn!(
                        per_minute = super::failures::PER_MINUTE,
                        "failed logins arrive faster than the audit log records them; the \
                         rest of this minute's are counted, not recorded"
                    );
                }
                return unauthorized(REFUSED);
            }
        };
        let shown = self.recordable(username, known).await;
        let actor = Actor {
            name: shown.clone(),
            ip: ip.map(|i| i.to_string()),
            at: berth_meta::now_ms(),
        };
        let mut detail = json!({"method": method, "reason": why});
        if suppressed > 0 {
            detail["suppressed"] = json!(suppressed);
        }
        let event = actor.event(action::LOGIN_FAILED).detail(detail);
        if let Err(e) = self.meta.record_event(event).await {
            tracing::warn!(error = %e, "recording a failed login failed");
        }
        match ip {
            Some(ip) => {
                tracing::info!(user = %shown, %ip, method, suppressed, "login refused: {why}")
            }
            None => tracing::info!(user = %shown, method, suppressed, "login refused: {why}"),
        }
        unauthorized(REFUSED)
    }

    /// Records a successful login: the first of a burst by one client as
    /// an event, the rest as a count on it (see `burst`).
    pub(super) async fn succeeded(
        &self,
        name: &str,
        ip: Option<IpAddr>,
        detail: serde_json::Value,
    ) {
        let actor = Actor {
            name: name.to_owned(),
            ip: ip.map(|i| i.to_string()),
            at: berth_meta::now_ms(),
        };
        let key = format!(
            "{name}|{}|{detail}",
            actor.ip.as_deref().unwrap_or_default()
        );
        let recorded = match self.login_bursts.note(&key, Instant::now()) {
            Seen::First => self
                .meta
                .record_event_id(actor.event(action::LOGIN).detail(detail))
                .await
                .map(|id| self.login_bursts.recorded(&key, id)),
            Seen::Repeat { event_id, repeats } => {
                self.meta.count_repeats(event_id, repeats, actor.at).await
            }
            Seen::Pending => Ok(()),
        };
        if let Err(e) = recorded {
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
        let Some((name, hash)) = self.cache.logins.get(key, epoch) else {
            return Ok(None);
        };
        let Some(user) = self.account(&name).await? else {
            return Ok(None);
        };
        // Changed since (through another replica): verify again.
        if user.password_hash.as_deref() != Some(hash.as_str()) {
            return Ok(None);
        }
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
        let mut h = sha2::Sha256::new();
        h.update(username.as_bytes());
        h.update([0]);
        h.update(password.as_bytes());
        let key: [u8; 32] = h.finalize().into();
        let epoch = self.meta.accounts_epoch();
        // Verified recently: no argon2, no throttle (a cache hit needs the
        // right password).
        if let Some(id) = self.cached_login(&key, epoch, ip, login).await? {
            return Ok(id);
        }
        let shared_name = password_name(username).then_some(username);
        self.shared_wait(shared_name, ip).await?;
        let attempt = self.begin_attempt(username, ip)?;
        let user = if password_name(username) {
            self.account(username).await?
        } else {
            None
        };
        let stored = user
            .as_ref()
            .filter(|u| u.kind == AccountKind::User)
            .and_then(|u| u.password_hash.clone());
        let verified_hash = stored.clone();
        let class = if stored.is_some() {
            Class::Known
        } else {
            Class::Unknown
        };
        let pass = self.gate.enter(class).await?;
        // Concurrent logins with the same credentials (a CI fleet
        // starting) wait for a slot, and all but the first find the
        // verified login in the cache.
        if let Some(id) = self.cached_login(&key, epoch, ip, login).await? {
            return Ok(id);
        }
        let ok = match stored {
            Some(hash) => argon::verify(&pass, password.to_owned(), hash).await?,
            None => {
                // Same cost as a wrong password: no oracle for user names.
                let decoy = self.decoy_hash(&pass).await?;
                argon::verify(&pass, password.to_owned(), decoy).await?;
                false
            }
        };
        drop(pass);
        match user {
            Some(user) if ok => {
                attempt.end(Outcome::Succeeded);
                self.shared_outcome(shared_name, ip, Outcome::Succeeded)
                    .await;
                if let Some(hash) = verified_hash {
                    self.cache.logins.put(key, (user.name.clone(), hash), epoch);
                }
                self.succeeded(&user.name, ip, json!({"method": "password"}))
                    .await;
                Ok(Identity {
                    account: Some(account_of(&user)),
                    ..Identity::default()
                })
            }
            user => {
                attempt.end(Outcome::Failed);
                self.shared_outcome(shared_name, ip, Outcome::Failed).await;
                let known = user.as_ref().map(|u| u.name.as_str());
                Err(self
                    .failed(
                        ip,
                        Some(username),
                        known,
                        "password",
                        "wrong user name or password",
                    )
                    .await)
            }
        }
    }

    /// A failed token login: counted against the address only (a token
    /// login names no account worth throttling: guessing a token is
    /// hopeless, and the owner's other credentials must keep working).
    async fn token_failed(
        &self,
        ip: Option<IpAddr>,
        username: Option<&str>,
        owner: Option<&str>,
        why: &str,
    ) -> Error {
        if let Some(ip) = ip {
            self.ip_throttle.fail(&ip.to_string(), Instant::now());
        }
        self.shared_outcome(None, ip, Outcome::Failed).await;
        self.failed(ip, username, owner, "token", why).await
    }

    async fn token_login(
        &self,
        username: Option<&str>,
        token: &str,
        ip: Option<IpAddr>,
        login: bool,
    ) -> Result<Identity> {
        let Some((_, id, secret_part)) = secret::parse(token) else {
            return Err(self
                .token_failed(ip, username, None, "malformed token")
                .await);
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
            return Err(self.token_failed(ip, username, None, "unknown token").await);
        };
        if !record.usable(berth_meta::now_ms()) {
            let why = if record.revoked_at.is_some() {
                "revoked token"
            } else {
                "expired token"
            };
            return Err(self
                .token_failed(ip, username, Some(&record.owner), why)
                .await);
        }
        let Some(owner) = self.account(&record.owner).await? else {
            return Err(self
                .token_failed(ip, username, Some(&record.owner), "disabled account")
                .await);
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
            certificate: None,
            workload: None,
        })
    }

    /// Verifies a registry token (JWT) and rebuilds its identity. Its
    /// account and access token are looked up again (through the cache),
    /// so disabling an account or revoking a token also ends the registry
    /// tokens obtained with it.
    ///
    /// What verifying gave is cached (see [`super::cache::Caches`]): a hit
    /// is checked against the clock and still records the access token's
    /// use.
    pub(super) async fn verify_registry_token(&self, token: &str) -> Result<Identity> {
        let now_ms = berth_meta::now_ms();
        let epoch = self.meta.accounts_epoch();
        if let Some(v) = self.cache.registry_tokens.get(token, epoch) {
            if now_ms < v.until_ms {
                if let Some(t) = &v.identity.token {
                    self.record_token_use(&t.id);
                }
                return Ok(v.identity);
            }
        }
        let verified = self.verify_registry_token_now(token, now_ms).await?;
        let identity = verified.identity.clone();
        self.cache
            .registry_tokens
            .put(token.into(), verified, epoch);
        Ok(identity)
    }

    /// [`Self::verify_registry_token`] without its cache.
    async fn verify_registry_token_now(
        &self,
        token: &str,
        now_ms: i64,
    ) -> Result<super::cache::VerifiedToken> {
        let claims = jwt::verify(&self.key, token, &self.settings.service, now_ms / 1000)
            .map_err(|e| unauthorized(&e.to_string()))?;
        // `jwt::verify` accepts it through the second exp + leeway.
        let mut until_ms = (claims.exp + jwt::LEEWAY_SECS + 1) * 1000;
        if let Some(w) = &claims.wkl {
            let workload = super::oidc::workload_of(w, claims.exp);
            let grants = if w.ses {
                None
            } else {
                Some(grants_of(&claims))
            };
            return Ok(super::cache::VerifiedToken {
                identity: Identity {
                    grants,
                    workload: Some(workload),
                    ..Identity::default()
                },
                until_ms,
            });
        }
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
                .filter(|r| r.usable(now_ms))
                .ok_or_else(|| unauthorized("the access token behind this token was revoked"))?;
                self.record_token_use(&record.id);
                if let Some(e) = record.expires_at {
                    until_ms = until_ms.min(e);
                }
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
        Ok(super::cache::VerifiedToken {
            identity: Identity {
                account,
                token,
                grants: Some(grants_of(&claims)),
                certificate: None,
                workload: None,
            },
            until_ms,
        })
    }
}

/// What the `access` claim of a registry token grants.
fn grants_of(claims: &jwt::Claims) -> Grants {
    let mut grants = Grants {
        expires_at: Some(claims.exp),
        ..Grants::default()
    };
    for a in &claims.access {
        match a.kind.as_str() {
            // A token this registry signed names valid repositories; an
            // invalid name grants nothing.
            "repository" => {
                if let Ok(name) = berth_oci::RepositoryName::parse(a.name.as_str()) {
                    grants
                        .repositories
                        .push((name, scope::parse_actions(&a.actions.join(","))));
                }
            }
            "registry" if a.name == "catalog" => grants.catalog = true,
            _ => {}
        }
    }
    grants
}

/// How a name that is no account's is recorded: `unknown-` and the first
/// 12 hex digits of its HMAC-SHA256 under the server's key. Repeated tries
/// of one name can be told apart from others; the name itself (possibly a
/// password) cannot be recovered, not even by guessing, without the key.
fn unknown_name(key: &jwt::Key, name: &str) -> String {
    // HMAC pads a short key with zeros to the block size: the same MAC as
    // keying with `key` itself, without a fallible constructor.
    let mut block = [0u8; 64];
    block[..key.len()].copy_from_slice(key);
    let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::digest::KeyInit>::new(&block.into());
    mac.update(b"berth-unknown-login-name\0");
    mac.update(name.as_bytes());
    let digest = mac.finalize().into_bytes();
    format!("unknown-{}", &hex::encode(digest)[..12])
}

#[cfg(test)]
mod recordable_tests {
    use super::unknown_name;

    #[test]
    fn names_that_are_no_accounts_are_recorded_as_keyed_hashes() {
        let key = [7u8; 32];
        let a = unknown_name(&key, "hunter2-typed-in-the-user-field");
        assert!(a.starts_with("unknown-") && a.len() == 20, "{a}");
        assert!(!a.contains("hunter2"));
        assert_eq!(a, unknown_name(&key, "hunter2-typed-in-the-user-field"));
        assert_ne!(a, unknown_name(&key, "another"));
        assert_ne!(
            a,
            unknown_name(&[8u8; 32], "hunter2-typed-in-the-user-field")
        );
    }
}
