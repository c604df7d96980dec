//! Authentication and authorisation: who is calling, and what they may do.
//!
//! - [`permission`]: the permission model as pure functions (who may
//!   pull, push, delete or administer which repository).
//! - [`password`]: argon2id password hashes.
//! - [`secret`]: access-token strings (`berth_pat_...`), their generation
//!   and hashing.
//! - [`jwt`] and [`scope`]: the registry tokens of the Docker token flow.
//! - [`throttle`] and [`ratelimit`]: failed-login slow-down and pull rate
//!   limits; `failures`: how many failed logins reach the audit log.
//! - `sessions`: web UI sign-in sessions (server-side, by the hash of
//!   their id).
//! - [`argon`]: the bounded queue and the reused memory argon2 runs in.
//! - `certificates`: client certificate subjects (mutual TLS) mapped to
//!   accounts, a credential without a password.
//! - [`Authority`]: the service tying them to the database, with caches so
//!   that the `/v2/` hot path costs microseconds (see `cache`).
//!
//! This layer decides; the HTTP layer parses credentials
//! ([`Credentials::from_header`]), calls [`Authority::authenticate`] and
//! [`Authority::decide`], and maps the answer to a response.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use berth_meta::accounts::{NewUser, Visibility};
use berth_meta::audit::Actor;
use berth_meta::Meta;

use crate::{Error, Result};

mod accounts;
pub mod argon;
mod burst;
mod cache;
mod certificates;
mod decide;
mod failures;
mod identity;
pub mod jwt;
mod login;
mod manage;
pub mod oidc;
pub mod password;
pub mod permission;
pub mod ratelimit;
pub mod scope;
pub mod secret;
mod sessions;
mod shared;
pub mod throttle;

pub use accounts::{AccountChange, Robot, VisibilitySource};
pub use certificates::MAX_SUBJECT;
pub use decide::{Decision, Issued};
pub use identity::{Credentials, Grants, Identity, Workload};
pub use manage::{validate_name, CreatedToken, Lifetime, TokenRequest, MAX_LIFETIME_MS};
pub use permission::{allowed, Access, Account, Action, Facts, TokenLimits};
pub use ratelimit::{RateLimit, RateState};
pub use sessions::{LiveSession, OpenedSession};

/// The name of the bootstrapped site administrator.
pub const ADMIN: &str = "admin";

/// The `server_keys` entry holding the token signing key.
const SIGNING_KEY: &str = "registry-token-hs256";

/// Whether the registry checks credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Credentials and permissions are enforced (the default).
    Token,
    /// Everything is open to everyone (local development only).
    None,
}

/// What [`Authority::bootstrap_admin`] did.
#[derive(PartialEq, Eq)]
pub enum Bootstrap {
    /// `admin` existed already (its password was not touched).
    Existed,
    /// `admin` was created with the given password.
    Created,
    /// `admin` was created with this generated password.
    Generated(String),
}

impl std::fmt::Debug for Bootstrap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Bootstrap::Existed => "Existed",
            Bootstrap::Created => "Created",
            Bootstrap::Generated(_) => "Generated(***)",
        })
    }
}

/// Settings of the [`Authority`].
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// Enforce or not.
    pub mode: AuthMode,
    /// The service name: the `aud` of issued tokens and the `service` of
    /// challenges. Replicas must agree on it.
    pub service: String,
    /// Lifetime of registry tokens (JWTs).
    pub token_ttl: Duration,
    /// Lifetime of refresh tokens (`docker login`'s identity token).
    pub refresh_token_ttl: Duration,
    /// Visibility of namespaces created without one. Repositories under
    /// namespaces nobody owns are private whatever this says.
    pub default_visibility: Visibility,
    /// Manifest GETs per account or anonymous address, if limited.
    pub pull_limit: Option<RateLimit>,
    /// How long permission facts and verified logins are served from
    /// memory (changes made through this process apply at once).
    pub cache_ttl: Duration,
    /// Whether replicas share the database: then permission facts are
    /// cached only while the database's change notifications are heard
    /// (`Meta::start_listening`), and pull rate limits and failed-login
    /// counts are kept in the database, so every replica enforces the
    /// same ones.
    pub shared_database: bool,
    /// The shortest time between two fetches of an OIDC issuer's keys
    /// caused by tokens naming a key id berth does not know.
    pub oidc_key_refetch: Duration,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            mode: AuthMode::Token,
            service: "berth".into(),
            token_ttl: Duration::from_secs(300),
            refresh_token_ttl: Duration::from_secs(30 * 86400),
            default_visibility: Visibility::Private,
            pull_limit: None,
            cache_ttl: Duration::from_secs(10),
            shared_database: false,
            oidc_key_refetch: Duration::from_secs(60),
        }
    }
}

/// Authentication, authorisation, registry tokens and limits.
pub struct Authority {
    meta: Meta,
    settings: AuthSettings,
    key: jwt::Key,
    cache: cache::Caches,
    ip_throttle: throttle::Throttle,
    /// Keyed by `account NUL address`: failures of one account from one
    /// address (names that cannot log in with a password are not kept).
    login_throttle: throttle::Throttle,
    /// The argon2 queue (shared by the process).
    gate: std::sync::Arc<argon::Gate>,
    /// How many failed logins reach the audit log.
    failure_log: failures::FailureLog,
    pulls: Option<ratelimit::RateLimiter>,
    token_uses: Mutex<HashMap<String, i64>>,
    /// Logins in progress per client, so a burst is one audit event.
    login_bursts: burst::Bursts,
    /// A hash verified against unknown user names, so that they take as
    /// long to refuse as wrong passwords (made on first need: hashing costs
    /// memory a registry that never sees a bad login should not hold).
    decoy_hash: tokio::sync::OnceCell<String>,
    /// The keys of trusted OIDC issuers (keyless push).
    issuers: oidc::issuer::Issuers,
}

impl Authority {
    /// Builds the authority: loads the signing key shared through the
    /// database, creating it on first start.
    pub async fn new(meta: Meta, settings: AuthSettings) -> Result<Authority> {
        let candidate = hex::encode(secret::random_bytes(32)?);
        let stored = meta.server_key(SIGNING_KEY, &candidate).await?;
        let key: jwt::Key = hex::decode(stored.trim())
            .ok()
            .and_then(|k| k.try_into().ok())
            .ok_or_else(|| Error::Internal("the stored token signing key is corrupt".into()))?;
        Ok(Authority {
            cache: cache::Caches::new(
                settings.cache_ttl,
                &crate::invalidation::Invalidation::new(&meta, settings.shared_database),
            ),
            pulls: settings.pull_limit.map(ratelimit::RateLimiter::new),
            meta,
            key,
            ip_throttle: throttle::Throttle::new(throttle::Policy::PER_IP),
            login_throttle: throttle::Throttle::new(throttle::Policy::PER_ACCOUNT_IP),
            gate: argon::Gate::shared(),
            failure_log: failures::FailureLog::new(failures::PER_MINUTE),
            token_uses: Mutex::new(HashMap::new()),
            login_bursts: burst::Bursts::default(),
            decoy_hash: tokio::sync::OnceCell::new(),
            issuers: oidc::issuer::Issuers::new(settings.oidc_key_refetch),
            settings,
        })
    }

    /// The settings in force.
    pub fn settings(&self) -> &AuthSettings {
        &self.settings
    }

    /// Whether credentials are enforced.
    pub fn enforced(&self) -> bool {
        self.settings.mode == AuthMode::Token
    }

    /// Creates the site administrator `admin` if it does not exist yet,
    /// with `password` or, without one, a generated password that is
    /// returned (to be handed to the operator once). An existing `admin`
    /// is left alone, its password unchanged.
    pub async fn bootstrap_admin(&self, password: Option<&str>) -> Result<Bootstrap> {
        if self.meta.user(ADMIN).await?.is_some() {
            return Ok(Bootstrap::Existed);
        }
        let (password, generated) = match password {
            Some(p) => {
                password::check_policy(p)?;
                (p.to_owned(), false)
            }
            None => (secret::random_string(24)?, true),
        };
        let hash = self.hash_password(password.clone()).await?;
        let actor = Actor {
            name: "berth".into(),
            ip: None,
            at: berth_meta::now_ms(),
        };
        let created = self
            .meta
            .create_user(
                &NewUser {
                    name: ADMIN.into(),
                    password_hash: Some(hash),
                    site_admin: true,
                    visibility: self.settings.default_visibility,
                },
                &actor,
            )
            .await?;
        if !created {
            // Another replica, or an organisation named admin, won.
            return Ok(Bootstrap::Existed);
        }
        Ok(if generated {
            Bootstrap::Generated(password)
        } else {
            Bootstrap::Created
        })
    }

    /// Writes the batched last-use times of access tokens. Called
    /// periodically and at shutdown; returns how many were written.
    pub async fn flush_token_uses(&self) -> Result<usize> {
        let uses: Vec<(String, i64)> = {
            let mut map = self.token_uses.lock().unwrap_or_else(|p| p.into_inner());
            map.drain().collect()
        };
        self.meta.touch_tokens(&uses).await?;
        Ok(uses.len())
    }

    /// The decoy hash (see the field), made within `pass`.
    pub(crate) async fn decoy_hash(&self, pass: &argon::Pass) -> Result<String> {
        self.decoy_hash
            .get_or_try_init(|| argon::hash(pass, "berth-decoy-password-never-matches".into()))
            .await
            .cloned()
    }

    /// Hashes a new password (an administrator's or a user's own change)
    /// in an argon2 slot.
    pub(crate) async fn hash_password(&self, password: String) -> Result<String> {
        let pass = self.gate.enter(argon::Class::Known).await?;
        argon::hash(&pass, password).await
    }

    fn record_token_use(&self, id: &str) {
        let mut map = self.token_uses.lock().unwrap_or_else(|p| p.into_inner());
        map.insert(id.to_owned(), berth_meta::now_ms());
    }
}
