//! Managing accounts and tokens where the registry layer has something to
//! add to the plain metadata writes: validated names, hashed passwords,
//! generated token secrets.
//!
//! Everything else (listing users, organisations, members; setting roles
//! and visibility; deleting) is a direct call on [`berth_meta::Meta`]
//! (`authority.meta()`), whose writes are audited in the same transaction.

use berth_meta::accounts::{AccountKind, NewUser, Role, Visibility};
use berth_meta::tokens::{NewToken, TokenKind, TokenRecord};
use berth_oci::validate_repository;

use super::permission::Action;
use super::{password, secret, Authority};
use crate::{Caller, Error, Result};

/// Longest account or organisation name.
pub const MAX_NAME: usize = 64;

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

/// Checks a user or organisation name: one repository path component
/// (lowercase letters, digits, `.`, `_`, `-` between them), at most
/// [`MAX_NAME`] characters.
pub fn validate_name(name: &str) -> Result<()> {
    if name.len() > MAX_NAME || name.contains('/') || validate_repository(name).is_err() {
        return Err(Error::InvalidParameter(format!(
            "{name:?} is not a valid name: use at most {MAX_NAME} lowercase letters, digits and \
             single . _ - between them"
        )));
    }
    Ok(())
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

    /// Sets a user's password. `Ok(false)` if there is no such user.
    pub async fn set_password(&self, name: &str, password: &str, caller: &Caller) -> Result<bool> {
        password::check_policy(password)?;
        let hash = self.hash_password(password.to_owned()).await?;
        Ok(self.meta.set_password(name, &hash, &caller.actor()).await?)
    }

    /// Creates an organisation. `Ok(false)` if the name is taken.
    ///
    /// A namespace nobody owns may still hold repositories (pushed in open
    /// mode, or left behind by a deleted user or organisation); founding an
    /// organisation of that name hands them to its founder, so only a
    /// caller who already administers the namespace (`namespace_admin`:
    /// a site admin) may do it; anyone else is `Denied`.
    pub async fn create_org(
        &self,
        name: &str,
        visibility: Option<Visibility>,
        caller: &Caller,
    ) -> Result<bool> {
        validate_name(name)?;
        if !caller.namespace_admin && !self.meta.namespace_repositories(name).await?.is_empty() {
            return Err(Error::Denied(format!(
                "the namespace {name:?} already holds repositories; only a site administrator \
                 may give it an owner"
            )));
        }
        let v = visibility.unwrap_or(self.settings.default_visibility);
        Ok(self.meta.create_org(name, v, &caller.actor()).await?)
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
    fn names() {
        assert!(validate_name("alice").is_ok());
        assert!(validate_name("acme-corp.eu").is_ok());
        assert!(validate_name("Alice").is_err());
        assert!(validate_name("a/b").is_err());
        assert!(validate_name("..").is_err());
        assert!(validate_name("").is_err());
        assert!(validate_name(&"a".repeat(MAX_NAME + 1)).is_err());
    }
}
