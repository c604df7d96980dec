//! Creating accounts and managing access tokens: validated names, hashed
//! passwords, generated token secrets, and the rules of tokens:
//!
//! - a token is created, listed or revoked for another account only by
//!   who manages that account (itself, the admins of a robot's
//!   organisation, site admins), and only with an *unrestricted*
//!   credential ([`Identity::unrestricted`]: a password, or an `admin`
//!   token without patterns): a limited token never mints a wider one,
//!   and a pull-only secret never lists or revokes its siblings;
//! - any token may revoke itself;
//! - a token lives at most [`MAX_LIFETIME_MS`] (ten years) and expires in
//!   the future, or never.

use berth_meta::accounts::{AccountKind, NewUser, Role, Visibility};
use berth_meta::tokens::{NewToken, TokenKind, TokenRecord};
use berth_oci::Namespace;

use super::identity::Identity;
use super::permission::Action;
use super::{password, secret, Authority};
use crate::{Caller, Error, Result};

/// Longest account or organisation name.
pub const MAX_NAME: usize = berth_oci::name::MAX_NAMESPACE_LEN;

/// Longest lifetime a token may be given at creation (10 years).
pub const MAX_LIFETIME_MS: i64 = 10 * 366 * 86_400_000;

/// When a token being created expires, as asked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Lifetime {
    /// Never.
    #[default]
    Forever,
    /// This long from now (ms).
    For(i64),
    /// At this time (Unix ms).
    Until(i64),
}

impl Lifetime {
    /// The expiry time for a token created at `now`, if the lifetime is
    /// within bounds (in the future, at most [`MAX_LIFETIME_MS`]).
    pub fn expiry(self, now: i64) -> Result<Option<i64>> {
        let at = match self {
            Lifetime::Forever => return Ok(None),
            Lifetime::For(ms) => now.saturating_add(ms),
            Lifetime::Until(at) => at,
        };
        if at <= now || at - now > MAX_LIFETIME_MS {
            return Err(Error::InvalidParameter(
                "the expiry must be in the future and within 10 years".into(),
            ));
        }
        Ok(Some(at))
    }
}

/// A token to create.
#[derive(Debug, Clone, Default)]
pub struct TokenRequest {
    /// A label (`ci`, `laptop`); required.
    pub name: String,
    /// Actions: `pull`, `push`, `delete`, `admin`.
    pub scopes: Vec<String>,
    /// Repository scopes (namespaces or globs) it is limited to; empty:
    /// everything its owner may do.
    pub patterns: Vec<String>,
    /// Expiry (Unix ms); `None`: never.
    pub expires_at: Option<i64>,
}

/// A token just created: its secret is in `token`, shown this once.
#[derive(Clone)]
pub struct CreatedToken {
    /// The whole token string (`berth_pat_...`), to hand to its owner.
    pub token: String,
    /// What is stored.
    pub record: TokenRecord,
}

impl std::fmt::Debug for CreatedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CreatedToken({}, ***)", self.record.id)
    }
}

/// Checks a user or organisation name: a valid [`Namespace`] (one
/// repository path component) of at most [`MAX_NAME`] characters, which
/// it returns.
pub fn validate_name(name: &str) -> Result<Namespace> {
    if name == super::oidc::USERNAME {
        return Err(Error::InvalidParameter(format!(
            "the name {name} is reserved for keyless logins from CI (OIDC)"
        )));
    }
    if name.len() > MAX_NAME {
        return Err(Error::InvalidParameter(format!(
            "a name of {} characters is too long: user and organisation names have at most \
             {MAX_NAME}",
            name.len()
        )));
    }
    Namespace::parse(name).map_err(|e| Error::InvalidParameter(e.to_string()))
}

impl Authority {
    /// Creates a user (and its namespace, private unless `visibility` or
    /// the configured default says otherwise). `Ok(false)` if the name is
    /// taken.
    pub async fn create_user(
        &self,
        name: &str,
        password: Option<&str>,
        site_admin: bool,
        visibility: Option<Visibility>,
        caller: &Caller,
    ) -> Result<bool> {
        validate_name(name)?;
        let password_hash = match password {
            Some(p) => {
                password::check_policy(p)?;
                Some(self.hash_password(p.to_owned()).await?)
            }
            None => None,
        };
        let user = NewUser {
            name: name.to_owned(),
            password_hash,
            site_admin,
            visibility: visibility.unwrap_or(self.settings.default_visibility),
        };
        Ok(self.meta.create_user(&user, &caller.actor()).await?)
    }

    /// Sets a user's password and ends the user's login sessions (refresh
    /// tokens). `NotFound` if there is no such user.
    pub async fn set_password(&self, name: &str, password: &str, caller: &Caller) -> Result<()> {
        password::check_policy(password)?;
        let hash = self.hash_password(password.to_owned()).await?;
        if self.meta.set_password(name, &hash, &caller.actor()).await? {
            Ok(())
        } else {
            Err(Error::NotFound(format!("no user named {name:?}")))
        }
    }

    /// Creates the robot `<org>+<short>` with `role` in `org`; returns its
    /// name, or `None` if it exists or the organisation does not.
    pub async fn create_robot(
        &self,
        org: &str,
        short: &str,
        role: Role,
        caller: &Caller,
    ) -> Result<Option<String>> {
        validate_name(short)?;
        let name = format!("{org}+{short}");
        let created = self
            .meta
            .create_robot(org, &name, role, &caller.actor())
            .await?;
        Ok(created.then_some(name))
    }

    /// Creates an access token for `owner` (a personal access token for a
    /// user, a robot token for a robot). `Ok(None)` if there is no such
    /// account.
    pub async fn create_token(
        &self,
        owner: &str,
        request: &TokenRequest,
        caller: &Caller,
    ) -> Result<Option<CreatedToken>> {
        if request.name.trim().is_empty() || request.name.len() > 100 {
            return Err(Error::InvalidParameter(
                "a token needs a name of at most 100 characters".into(),
            ));
        }
        if request.scopes.is_empty() {
            return Err(Error::InvalidParameter(
                "a token needs at least one scope (pull, push, delete, admin)".into(),
            ));
        }
        if let Some(bad) = request.scopes.iter().find(|s| Action::parse(s).is_none()) {
            return Err(Error::InvalidParameter(format!(
                "unknown scope {bad:?} (use pull, push, delete, admin)"
            )));
        }
        for p in &request.patterns {
            let valid = !p.is_empty()
                && p.len() <= 255
                && p.bytes().all(|b| {
                    b.is_ascii_lowercase()
                        || b.is_ascii_digit()
                        || matches!(b, b'.' | b'_' | b'-' | b'/' | b'*' | b'?')
                });
            if !valid {
                return Err(Error::InvalidParameter(format!(
                    "{p:?} is not a repository pattern (a namespace such as acme, or a glob \
                     such as acme/web-*)"
                )));
            }
        }
        let Some(account) = self.meta.user(owner).await? else {
            return Ok(None);
        };
        let kind = match account.kind {
            AccountKind::User => TokenKind::Pat,
            AccountKind::Robot => TokenKind::Robot,
        };
        let g = secret::generate(kind)?;
        let new = NewToken {
            id: g.id.clone(),
            owner: owner.to_owned(),
            name: request.name.trim().to_owned(),
            kind,
            secret_hash: g.secret_hash.clone(),
            scopes: request.scopes.clone(),
            patterns: request.patterns.clone(),
            expires_at: request.expires_at,
        };
        if !self.meta.create_token(&new, &caller.actor()).await? {
            return Ok(None);
        }
        let record = self
            .meta
            .token(&g.id)
            .await?
            .ok_or_else(|| Error::Internal("a created token vanished".into()))?;
        Ok(Some(CreatedToken {
            token: g.token,
            record,
        }))
    }

    /// Checks that `identity` may list and manage the tokens of `owner`:
    /// with an unrestricted credential, as the owner, an admin of a
    /// robot's organisation, or a site admin.
    pub async fn may_manage_tokens(&self, identity: &Identity, owner: &str) -> Result<()> {
        if !self.enforced() {
            return Ok(());
        }
        if identity.account.is_none() {
            return Err(Error::Unauthorized("authentication required".into()));
        }
        if !identity.unrestricted() {
            return Err(Error::Denied(
                "managing tokens needs a password sign-in or an unrestricted token (admin scope, \
                 no patterns); a limited token may only revoke itself"
                    .into(),
            ));
        }
        if identity.name() == Some(owner) || identity.is_site_admin() {
            return Ok(());
        }
        // A robot's organisation, named before its `+`.
        let org = owner.split_once('+').map(|(org, _)| Namespace::parse(org));
        if let Some(Ok(org)) = org {
            if self
                .namespace_access(identity, &org)
                .await?
                .contains(Action::Admin)
            {
                return Ok(());
            }
        }
        Err(Error::Denied(format!(
            "you do not manage the tokens of {owner:?}"
        )))
    }

    /// The tokens of `owner` (its docker login sessions included), for a
    /// caller who manages them.
    pub async fn tokens_of(&self, identity: &Identity, owner: &str) -> Result<Vec<TokenRecord>> {
        self.may_manage_tokens(identity, owner).await?;
        Ok(self.meta.tokens(owner).await?)
    }

    /// Creates a token for `owner` on behalf of `identity` (see the
    /// module's rules). `NotFound` if there is no such account.
    pub async fn issue_token(
        &self,
        identity: &Identity,
        owner: &str,
        request: &TokenRequest,
        lifetime: Lifetime,
        caller: &Caller,
    ) -> Result<CreatedToken> {
        self.may_manage_tokens(identity, owner).await?;
        let request = TokenRequest {
            expires_at: lifetime.expiry(berth_meta::now_ms())?,
            ..request.clone()
        };
        self.create_token(owner, &request, caller)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no account named {owner:?}")))
    }

    /// Revokes token `id` on behalf of `identity`: a token may revoke
    /// itself; anything else needs [`Self::may_manage_tokens`] on its
    /// owner. Credentials are checked before anything is looked up, and a
    /// token the caller may not manage is `NotFound`, like a missing one.
    pub async fn revoke_token_as(
        &self,
        identity: &Identity,
        id: &str,
        caller: &Caller,
    ) -> Result<()> {
        if self.enforced() && identity.account.is_none() {
            return Err(Error::Unauthorized("authentication required".into()));
        }
        let unknown = || Error::NotFound(format!("no token with id {id:?}"));
        let token = self.meta.token(id).await?.ok_or_else(unknown)?;
        let itself = identity.token.as_ref().is_some_and(|t| t.id == id);
        if !itself {
            match self.may_manage_tokens(identity, &token.owner).await {
                Ok(()) => {}
                Err(Error::Denied(_)) => return Err(unknown()),
                Err(e) => return Err(e),
            }
        }
        if !self.revoke_token(id, caller).await? && token.revoked_at.is_none() {
            return Err(unknown());
        }
        Ok(())
    }

    /// Revokes a token. `Ok(false)` if there is no such token or it was
    /// already revoked.
    pub async fn revoke_token(&self, id: &str, caller: &Caller) -> Result<bool> {
        Ok(self.meta.revoke_token(id, &caller.actor()).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_lifetimes_are_bounded() {
        let now = 1_000_000;
        assert_eq!(Lifetime::Forever.expiry(now).unwrap(), None);
        assert_eq!(Lifetime::For(5).expiry(now).unwrap(), Some(now + 5));
        assert_eq!(Lifetime::Until(now + 7).expiry(now).unwrap(), Some(now + 7));
        for bad in [
            Lifetime::For(0),
            Lifetime::For(-1),
            Lifetime::For(MAX_LIFETIME_MS + 1),
            Lifetime::Until(now),
            Lifetime::Until(now + MAX_LIFETIME_MS + 1),
            Lifetime::For(i64::MAX),
        ] {
            assert!(
                matches!(bad.expiry(now), Err(Error::InvalidParameter(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn names() {
        assert!(validate_name("alice").is_ok());
        assert!(validate_name("acme-corp.eu").is_ok());
        assert!(validate_name("Alice").is_err());
        assert!(validate_name("a/b").is_err());
        assert!(validate_name("..").is_err());
        assert!(validate_name("").is_err());
        assert!(validate_name("oidc").is_err());
        assert!(validate_name(&"a".repeat(MAX_NAME + 1)).is_err());
    }
}
