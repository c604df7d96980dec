//! Decisions: what an identity may do on a repository, registry tokens,
//! the filtered catalog and pull rate limits.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use berth_meta::accounts::Role;
use berth_meta::accounts::Visibility;
use berth_meta::tokens::{NewToken, TokenKind};
use berth_oci::{Digest, Namespace, RepositoryName};

use super::cache::through;
use super::identity::Identity;
use super::jwt::{self, Claims, ResourceAccess};
use super::permission::{allowed, Access, Account, Action, Facts};
use super::ratelimit::RateState;
use super::scope::{self, Scope};
use super::{secret, Authority};
use crate::listing::{page, MAX_PAGE};
use crate::{Error, Page, Registry, Result};

/// The answer to "may this identity do that here?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Yes; carries everything the identity may do on the repository
    /// (for `namespace_admin`).
    Allow(Access),
    /// No, and the caller is anonymous: ask it to log in (401).
    Login,
    /// Not with this registry token, but the account may: ask it to fetch
    /// one with the needed scope (401, `insufficient_scope`).
    Scope,
    /// No: the account is known and not allowed (403).
    Deny,
}

/// How many repositories holding a blob a mount without `from` considers
/// as its source.
pub const MOUNT_CANDIDATES: i64 = 100;

/// A registry token issued by the token endpoint.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The JWT.
    pub token: String,
    /// Its lifetime in seconds.
    pub expires_in: u64,
    /// Issue time (Unix seconds).
    pub issued_at: i64,
    /// The granted scopes, space-separated (OAuth2's `scope`).
    pub scope: String,
}

impl Authority {
    /// The facts the permission model needs about `repository` for
    /// `account`, through the cache.
    pub async fn facts(
        &self,
        account: Option<&Account>,
        repository: &RepositoryName,
    ) -> Result<Facts> {
        let visibility = through(
            &self.meta,
            &self.cache.visibility,
            repository.to_string(),
            async {
                if let Some(v) = self.meta.repository_visibility(repository).await? {
                    return Ok(v);
                }
                // A namespace nobody owns is private whatever the
                // default: its repositories were pushed in open mode or
                // left by a deleted owner, and nobody chose to publish
                // them.
                Ok(self
                    .meta
                    .namespace(&repository.namespace())
                    .await?
                    .map_or(Visibility::Private, |n| n.visibility))
            },
        )
        .await?;
        let role = self.role_in(account, repository.namespace_str()).await?;
        Ok(Facts { visibility, role })
    }

    /// The role of `account` in the organisation `ns` (an account name,
    /// the namespace of the repositories asked about), through the cache.
    async fn role_in(&self, account: Option<&Account>, ns: &str) -> Result<Option<Role>> {
        let Some(a) = account else {
            return Ok(None);
        };
        through(
            &self.meta,
            &self.cache.roles,
            format!("{ns}\0{}", a.name),
            self.meta.role(ns, &a.name),
        )
        .await
    }

    /// What `identity` may do on `repository` according to the database
    /// (its account, its access token's limits), whatever a registry token
    /// it presented grants. Everything in open mode.
    pub async fn live_access(
        &self,
        identity: &Identity,
        repository: &RepositoryName,
    ) -> Result<Access> {
        if !self.enforced() {
            return Ok(Access::ALL);
        }
        let account = identity.account.as_ref();
        let facts = self.facts(account, repository).await?;
        let own = allowed(account, repository, &facts, identity.token.as_ref());
        // A keyless workload has no account: public pulls, plus what its
        // trust policies grant.
        Ok(match &identity.workload {
            Some(w) => own.union(w.on(repository)),
            None => own,
        })
    }

    /// What `identity` may do in `namespace` as its owner, one of its
    /// members or a site admin, held to its access token and registry
    /// token: what [`Self::live_access`] gives without rule 1 (public
    /// pull). Namespace-wide views (members, usage, tag rules, retention
    /// plans) list every repository of the namespace, private overrides
    /// included, so public visibility must not open them. Everything in
    /// open mode.
    pub async fn namespace_access(
        &self,
        identity: &Identity,
        namespace: &Namespace,
    ) -> Result<Access> {
        if !self.enforced() {
            return Ok(Access::ALL);
        }
        let account = identity.account.as_ref();
        let facts = Facts {
            visibility: Visibility::Private,
            role: self.role_in(account, namespace.as_str()).await?,
        };
        // Held to token patterns and registry tokens as the repository
        // named like the namespace is.
        let as_repository = RepositoryName::from(namespace.clone());
        let live = allowed(account, &as_repository, &facts, identity.token.as_ref());
        Ok(match &identity.grants {
            Some(g) => live.intersect(g.on(&as_repository)),
            None => live,
        })
    }

    /// Whether `identity` may do everything in `need` on `repository`.
    pub async fn decide(
        &self,
        identity: &Identity,
        repository: &RepositoryName,
        need: Access,
    ) -> Result<Decision> {
        if !self.enforced() {
            return Ok(Decision::Allow(Access::ALL));
        }
        let live = self.live_access(identity, repository).await?;
        let granted = match &identity.grants {
            Some(g) => live.intersect(g.on(repository)),
            None => live,
        };
        Ok(if granted.covers(need) {
            Decision::Allow(live)
        } else if identity.account.is_none() && identity.workload.is_none() {
            Decision::Login
        } else if identity.grants.is_some() && live.covers(need) {
            Decision::Scope
        } else {
            Decision::Deny
        })
    }

    /// A repository holding blob `digest` that `identity` may pull from
    /// (with its registry token's grants): the source of a mount without
    /// `from`. Looks at the first [`MOUNT_CANDIDATES`] holders by name, so
    /// that a base layer shared by thousands of repositories costs a
    /// bounded amount of work; past them the client uploads the blob.
    pub async fn readable_holder(
        &self,
        identity: &Identity,
        digest: &Digest,
    ) -> Result<Option<RepositoryName>> {
        for repository in self
            .meta
            .repositories_with_blob(digest, MOUNT_CANDIDATES)
            .await?
        {
            if let Decision::Allow(_) = self.decide(identity, &repository, Access::PULL).await? {
                return Ok(Some(repository));
            }
        }
        Ok(None)
    }

    /// Issues a registry token for `identity` granting, per requested
    /// scope, what was asked and is allowed.
    pub async fn issue(&self, identity: &Identity, scopes: &[Scope]) -> Result<Issued> {
        let mut access = Vec::new();
        let mut granted_scopes = Vec::new();
        for s in scopes {
            match s {
                Scope::Repository {
                    name,
                    access: asked,
                } => {
                    let mut g = self.live_access(identity, name).await?.intersect(*asked);
                    if let Some(grants) = &identity.grants {
                        g = g.intersect(grants.on(name));
                    }
                    if g.is_empty() {
                        continue;
                    }
                    granted_scopes.push(scope::repository_scope(name, g));
                    access.push(ResourceAccess {
                        kind: "repository".into(),
                        name: name.to_string(),
                        actions: g.names().into_iter().map(str::to_owned).collect(),
                    });
                }
                Scope::Catalog => {
                    granted_scopes.push("registry:catalog:*".into());
                    access.push(ResourceAccess {
                        kind: "registry".into(),
                        name: "catalog".into(),
                        actions: vec!["*".into()],
                    });
                }
            }
        }
        let subject_created = match identity.name() {
            Some(name) => self.account(name).await?.map(|u| u.created_at),
            None => None,
        };
        let now = berth_meta::now_ms() / 1000;
        let mut exp = now + self.settings.token_ttl.as_secs().max(1) as i64;
        // A registry token exchanged for another never extends its own
        // life: otherwise a 5-minute token would renew itself forever.
        if let Some(limit) = identity.grants.as_ref().and_then(|g| g.expires_at) {
            exp = exp.min(limit);
        }
        // Nor one issued to a keyless workload its session.
        if let Some(w) = &identity.workload {
            exp = exp.min(w.expires_at);
        }
        let ttl = (exp - now).max(0) as u64;
        let claims = Claims {
            iss: "berth".into(),
            sub: identity.name().unwrap_or("").to_owned(),
            aud: self.settings.service.clone(),
            exp,
            nbf: now,
            iat: now,
            jti: secret::random_string(16)?,
            access,
            tid: identity.token.as_ref().map(|t| t.id.clone()),
            sct: subject_created,
            wkl: identity
                .workload
                .as_ref()
                .map(|w| super::oidc::workload_claim(w, false)),
        };
        Ok(Issued {
            token: jwt::sign(&self.key, &claims).map_err(|e| Error::Internal(e.to_string()))?,
            expires_in: ttl,
            issued_at: now,
            scope: granted_scopes.join(" "),
        })
    }

    /// Creates a refresh token for an identity that logged in with its
    /// password (OAuth2 `access_type=offline`, docker's identity token).
    /// `None` for other identities: a refresh token must never outgrow the
    /// credentials it was obtained with.
    pub async fn refresh_token(&self, identity: &Identity) -> Result<Option<String>> {
        // A keyless login gets a session token: its ID token is spent.
        if let (Some(w), None) = (&identity.workload, &identity.grants) {
            return self.session_token(w).map(Some);
        }
        let Some(account) = &identity.account else {
            return Ok(None);
        };
        if !identity.by_password() {
            return Ok(None);
        }
        let g = secret::generate(TokenKind::Refresh)?;
        let ttl = self.settings.refresh_token_ttl.as_millis() as i64;
        let created = self
            .meta
            .create_token(
                &NewToken {
                    id: g.id.clone(),
                    owner: account.name.clone(),
                    name: "login".into(),
                    kind: TokenKind::Refresh,
                    secret_hash: g.secret_hash.clone(),
                    scopes: vec![Action::Admin.as_str().into()],
                    patterns: Vec::new(),
                    expires_at: Some(berth_meta::now_ms() + ttl),
                },
                &identity.caller(None, false).actor(),
            )
            .await?;
        if !created {
            return Err(Error::Internal("could not store a refresh token".into()));
        }
        Ok(Some(g.token))
    }

    /// A page of the catalog holding only repositories `identity` may
    /// pull from. The database lists what the account may read (its own
    /// namespace, its organisations', public repositories; everything for
    /// a site admin), so private repositories of others are never scanned;
    /// an access token's patterns then narrow that list.
    pub async fn catalog(
        &self,
        registry: &Registry,
        identity: &Identity,
        n: Option<i64>,
        last: Option<&str>,
    ) -> Result<Page> {
        let n = n.unwrap_or(MAX_PAGE).clamp(0, MAX_PAGE) as usize;
        let namespaces = match &identity.account {
            None => Vec::new(),
            Some(a) => {
                let mut own: Vec<String> = self
                    .meta
                    .memberships(&a.name)
                    .await?
                    .into_iter()
                    .map(|m| m.org)
                    .collect();
                if a.kind == berth_meta::accounts::AccountKind::User {
                    own.push(a.name.clone());
                }
                own
            }
        };
        let site_admin = identity.account.as_ref().is_some_and(|a| a.site_admin);
        let mut items: Vec<String> = Vec::new();
        let mut cursor: Option<String> = last.map(str::to_owned);
        let batch = (n as i64 + 1).clamp(1, 500);
        loop {
            let page = if site_admin {
                registry.repository_names(cursor.as_deref(), batch).await?
            } else {
                self.meta
                    .readable_repositories(&namespaces, cursor.as_deref(), batch)
                    .await?
            };
            let exhausted = (page.len() as i64) < batch;
            for name in page {
                if items.len() > n {
                    break;
                }
                // Only a token's limits can take away what the query
                // found readable; without one, no second look.
                let keep = identity.token.is_none()
                    || self
                        .live_access(identity, &name)
                        .await?
                        .contains(Action::Pull);
                if keep {
                    items.push(name.to_string());
                }
                cursor = Some(name.into_string());
            }
            if exhausted || items.len() > n {
                break;
            }
        }
        Ok(page(items.into(), None, n as i64))
    }

    /// Counts a manifest request against the pull limit of `identity` (or
    /// of `ip` when anonymous); `consume` for GETs, not HEADs. `None` when
    /// pulls are not limited. On a shared database the window is the
    /// cluster's (see `shared`).
    pub async fn pull_rate(
        &self,
        identity: &Identity,
        ip: Option<IpAddr>,
        consume: bool,
    ) -> Result<Option<RateState>> {
        let Some(limiter) = self.pulls.as_ref() else {
            return Ok(None);
        };
        let key = match (identity.name(), ip) {
            (Some(name), _) => format!("account:{name}"),
            (None, Some(ip)) => format!("ip:{ip}"),
            (None, None) => "ip:unknown".to_owned(),
        };
        let state = if self.settings.shared_database {
            self.shared_pull_rate(&key, consume).await?
        } else {
            Some(limiter.hit(&key, Instant::now(), consume))
        };
        if state.as_ref().is_some_and(|s| !s.allowed) {
            berth_metrics::get().rate_limited();
        }
        Ok(state)
    }

    /// The lifetime of registry tokens.
    pub fn token_ttl(&self) -> Duration {
        self.settings.token_ttl
    }
}
