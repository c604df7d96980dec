//! Account services: users, organisations, members, robots and visibility,
//! with the rules that govern them.
//!
//! The management API checks *who may call* an operation (its permission
//! on the namespace, through [`Authority::decide`]); these services hold the
//! rules of the operation itself, whoever calls it:
//!
//! - an organisation is founded by a user signed in with their password
//!   (not a robot, not a token), who becomes its admin in the same
//!   transaction; a name whose namespace still holds anything (repositories
//!   or settings) is founded only by a site admin; every unavailable name
//!   gets the same answer, so the answer does not tell an account from a
//!   namespace with content;
//! - nobody withdraws their own site admin role, disables or deletes their
//!   own account;
//! - only users and robots of the organisation itself become members; an
//!   unknown name and a robot of another organisation get the same answer;
//! - an organisation that holds repositories is deleted only when asked to
//!   delete them too; deleting a namespace removes every setting keyed by
//!   it (see [`berth_meta::Meta::delete_org`]).

use berth_meta::accounts::{
    AccountKind, Member, Namespace, NamespaceKind, OrgDeletion, Role, User, Visibility,
};
use berth_meta::audit::AuditFilter;

use super::identity::Identity;
use super::manage::validate_name;
use super::Authority;
use crate::{Caller, Error, Registry, Result};

/// A change to an account (`PATCH /users/{name}`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AccountChange {
    /// Grant (`true`) or withdraw (`false`) site administration.
    pub site_admin: Option<bool>,
    /// Disable (`true`) or enable (`false`) the account.
    pub disabled: Option<bool>,
}

/// Where a visibility comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VisibilitySource {
    /// The repository's own override.
    Repository,
    /// Its namespace's setting.
    Namespace,
    /// Nobody owns the namespace: private, whatever the default.
    Unowned,
}

/// A robot with its role in its organisation.
#[derive(Debug, Clone)]
pub struct Robot {
    /// The account.
    pub account: User,
    /// Its role (`None` if its membership was removed).
    pub role: Option<Role>,
}

fn no_account(name: &str) -> Error {
    Error::NotFound(format!("no account named {name:?}"))
}

fn no_org(name: &str) -> Error {
    Error::NotFound(format!("no organisation named {name:?}"))
}

/// The one answer for a name that cannot be founded, whatever the reason
/// (an account, an organisation, a namespace that still holds content).
fn unavailable(name: &str) -> Error {
    Error::Conflict(format!(
        "the name {name:?} is not available for a new organisation: choose another name, or \
         ask a site administrator"
    ))
}

/// Refuses an operation `caller` would do on their own account.
fn not_on_yourself(caller: &Caller, name: &str, what: &str) -> Result<()> {
    if caller.account.as_deref() == Some(name) {
        return Err(Error::Denied(format!(
            "you cannot {what} your own account; ask another site administrator"
        )));
    }
    Ok(())
}

impl Authority {
    /// Every account (users and robots), by name.
    pub async fn users(&self) -> Result<Vec<User>> {
        Ok(self.meta.users().await?)
    }

    /// The account `name` (`NotFound` if there is none).
    pub async fn user(&self, name: &str) -> Result<User> {
        self.meta.user(name).await?.ok_or_else(|| no_account(name))
    }

    /// The organisations `name` belongs to.
    pub async fn memberships(&self, name: &str) -> Result<Vec<Member>> {
        Ok(self.meta.memberships(name).await?)
    }

    /// Changes an account's site administration or disabled state; nobody
    /// withdraws their own site admin role or disables themselves.
    pub async fn change_account(
        &self,
        name: &str,
        change: AccountChange,
        caller: &Caller,
    ) -> Result<User> {
        if change.site_admin == Some(false) {
            not_on_yourself(caller, name, "withdraw the site admin role of")?;
        }
        if change.disabled == Some(true) {
            not_on_yourself(caller, name, "disable")?;
        }
        let actor = caller.actor();
        if let Some(a) = change.site_admin {
            if !self.meta.set_site_admin(name, a, &actor).await? {
                return Err(no_account(name));
            }
        }
        if let Some(d) = change.disabled {
            if !self.meta.set_disabled(name, d, &actor).await? {
                return Err(no_account(name));
            }
        }
        self.user(name).await
    }

    /// Deletes an account (not one's own). A user's namespace goes with
    /// every setting keyed by it; its repositories stay, private.
    pub async fn delete_user(
        &self,
        registry: &Registry,
        name: &str,
        caller: &Caller,
    ) -> Result<()> {
        not_on_yourself(caller, name, "delete")?;
        if self.meta.delete_user(name, &caller.actor()).await? {
            registry.forget_namespace(&[]);
            Ok(())
        } else {
            Err(no_account(name))
        }
    }

    /// Ends the login sessions (refresh tokens) of `name`; returns how
    /// many were open.
    pub async fn revoke_sessions(&self, name: &str, caller: &Caller) -> Result<u64> {
        self.meta
            .revoke_sessions(name, &caller.actor())
            .await?
            .ok_or_else(|| no_account(name))
    }

    /// The organisations `identity` may see: all for a site admin, its own
    /// for anyone else.
    pub async fn orgs_for(&self, identity: &Identity) -> Result<Vec<Namespace>> {
        let orgs = self.meta.orgs().await?;
        if !self.enforced() || identity.is_site_admin() {
            return Ok(orgs);
        }
        let Some(me) = identity.name() else {
            return Err(Error::Unauthorized("authentication required".into()));
        };
        let mine: Vec<String> = self
            .meta
            .memberships(me)
            .await?
            .into_iter()
            .map(|m| m.org)
            .collect();
        Ok(orgs
            .into_iter()
            .filter(|o| mine.contains(&o.name))
            .collect())
    }

    /// Every organisation with its number of members (users and robots),
    /// by name: what the site administrators' overview lists.
    pub async fn orgs_with_member_counts(&self) -> Result<Vec<(Namespace, u64)>> {
        let orgs = self.meta.orgs().await?;
        let counts: std::collections::HashMap<String, i64> =
            self.meta.member_counts().await?.into_iter().collect();
        Ok(orgs
            .into_iter()
            .map(|o| {
                let n = counts.get(&o.name).copied().unwrap_or(0).max(0) as u64;
                (o, n)
            })
            .collect())
    }

    /// The organisation `name` (`NotFound` if there is none).
    pub async fn org(&self, name: &str) -> Result<Namespace> {
        // An account name that is no namespace names no organisation.
        let Ok(ns) = berth_oci::Namespace::parse(name) else {
            return Err(no_org(name));
        };
        match self.meta.namespace(&ns).await? {
            Some(ns) if ns.kind == NamespaceKind::Org => Ok(ns),
            _ => Err(no_org(name)),
        }
    }

    /// Founds the organisation `name` with `identity` as its admin (see the
    /// module's rules); in open mode, without an admin.
    pub async fn found_org(
        &self,
        name: &str,
        visibility: Option<Visibility>,
        identity: &Identity,
        caller: &Caller,
    ) -> Result<Namespace> {
        let founder = if self.enforced() {
            let account = identity
                .account
                .as_ref()
                .ok_or_else(|| Error::Unauthorized("authentication required".into()))?;
            if account.kind != AccountKind::User || !identity.by_password() {
                return Err(Error::Denied(
                    "organisations are founded by users signed in with their password (not a \
                     robot, not a token)"
                        .into(),
                ));
            }
            Some(account.name.as_str())
        } else {
            None
        };
        let ns = validate_name(name)?;
        // Whatever remains of a namespace (repositories, settings) would be
        // handed to whoever founds it first: only a site admin may.
        let claims_remains = !self.enforced() || identity.is_site_admin();
        if !claims_remains && self.meta.namespace_remains(&ns).await? {
            return Err(unavailable(name));
        }
        let v = visibility.unwrap_or(self.settings.default_visibility);
        let created = match self
            .meta
            .create_org(name, v, founder, &caller.actor())
            .await
        {
            Ok(created) => created,
            Err(berth_meta::Error::Refused(why)) => return Err(Error::Denied(why)),
            Err(e) => return Err(e.into()),
        };
        if !created {
            return Err(unavailable(name));
        }
        self.org(name).await
    }

    /// Deletes the organisation `name` with its robots, memberships and
    /// settings. One that holds repositories is refused (`Conflict`)
    /// unless `with_repositories`, when they are deleted too (their blobs
    /// are left to garbage collection). Returns the repositories deleted.
    pub async fn delete_org(
        &self,
        registry: &Registry,
        name: &str,
        with_repositories: bool,
        caller: &Caller,
    ) -> Result<Vec<berth_oci::RepositoryName>> {
        match self
            .meta
            .delete_org(name, with_repositories, &caller.actor())
            .await?
        {
            OrgDeletion::Deleted(repositories) => {
                registry.forget_namespace(&repositories);
                Ok(repositories)
            }
            OrgDeletion::NotFound => Err(no_org(name)),
            OrgDeletion::HoldsRepositories(r) => Err(Error::Conflict(format!(
                "organisation {name} still holds {} repositories ({}{}); delete them first, or \
                 delete the organisation with its repositories (delete_repositories=true, \
                 berth org delete --delete-repositories)",
                r.len(),
                r.iter()
                    .take(3)
                    .map(berth_oci::RepositoryName::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
                if r.len() > 3 { ", ..." } else { "" }
            ))),
        }
    }

    /// The members of organisation `org`.
    pub async fn members(&self, org: &str) -> Result<Vec<Member>> {
        self.org(org).await?;
        Ok(self.meta.members(org).await?)
    }

    /// Adds `member` to `org` with `role`, or changes its role. Only users
    /// and the organisation's own robots may be members; anything else
    /// (no such account, a robot of another organisation) gets the same
    /// `NotFound`.
    pub async fn set_member(
        &self,
        org: &str,
        member: &str,
        role: Role,
        caller: &Caller,
    ) -> Result<()> {
        self.org(org).await?;
        if self
            .meta
            .set_member(org, member, role, &caller.actor())
            .await?
        {
            Ok(())
        } else {
            Err(Error::NotFound(format!(
                "no user or robot of {org} named {member:?}"
            )))
        }
    }

    /// Removes `member` from `org`.
    pub async fn remove_member(&self, org: &str, member: &str, caller: &Caller) -> Result<()> {
        if self
            .meta
            .remove_member(org, member, &caller.actor())
            .await?
        {
            Ok(())
        } else {
            Err(Error::NotFound(format!(
                "{member} is not a member of {org}"
            )))
        }
    }

    /// The robots of organisation `org`, with their roles.
    pub async fn robots(&self, org: &str) -> Result<Vec<Robot>> {
        self.org(org).await?;
        let robots = self.meta.robots(org).await?;
        let members = self.meta.members(org).await?;
        Ok(robots
            .into_iter()
            .map(|account| Robot {
                role: members
                    .iter()
                    .find(|m| m.member == account.name)
                    .map(|m| m.role),
                account,
            })
            .collect())
    }

    /// The visibility of namespace `ns` and where it comes from.
    pub async fn namespace_visibility(
        &self,
        ns: &berth_oci::Namespace,
    ) -> Result<(Visibility, VisibilitySource)> {
        self.visibility_of_namespace(ns).await
    }

    /// The visibility of a namespace (which may be longer than an account
    /// name can be: then nobody owns it).
    async fn visibility_of_namespace(
        &self,
        ns: &berth_oci::Namespace,
    ) -> Result<(Visibility, VisibilitySource)> {
        Ok(match self.meta.namespace(ns).await? {
            Some(n) => (n.visibility, VisibilitySource::Namespace),
            None => (Visibility::Private, VisibilitySource::Unowned),
        })
    }

    /// Sets the visibility of namespace `ns` (`NotFound` if nobody owns
    /// it).
    pub async fn set_namespace_visibility(
        &self,
        ns: &berth_oci::Namespace,
        visibility: Visibility,
        caller: &Caller,
    ) -> Result<()> {
        if self
            .meta
            .set_namespace_visibility(ns, visibility, &caller.actor())
            .await?
        {
            Ok(())
        } else {
            Err(Error::NotFound(format!(
                "no user or organisation owns the namespace {ns:?}"
            )))
        }
    }

    /// The visibility of `repository` and where it comes from.
    pub async fn repository_visibility(
        &self,
        repository: &berth_oci::RepositoryName,
    ) -> Result<(Visibility, VisibilitySource)> {
        match self.meta.repository_visibility(repository).await? {
            Some(v) => Ok((v, VisibilitySource::Repository)),
            None => self.visibility_of_namespace(&repository.namespace()).await,
        }
    }

    /// Overrides the visibility of `repository` (`None`: inherit).
    pub async fn set_repository_visibility(
        &self,
        repository: &berth_oci::RepositoryName,
        visibility: Option<Visibility>,
        caller: &Caller,
    ) -> Result<()> {
        Ok(self
            .meta
            .set_repository_visibility(repository, visibility, &caller.actor())
            .await?)
    }

    /// Holds an audit read of namespace `ns` to what `identity` may see: a
    /// site admin everything; a namespace admin only the events since the
    /// namespace was created (not those of a previous owner of the name).
    pub async fn scope_audit(
        &self,
        identity: &Identity,
        ns: &berth_oci::Namespace,
        mut filter: AuditFilter,
    ) -> Result<AuditFilter> {
        if !self.enforced() || identity.is_site_admin() {
            return Ok(filter);
        }
        let created = match self.meta.namespace(ns).await? {
            Some(n) => n.created_at,
            None => {
                return Err(Error::Denied(format!(
                    "nobody owns the namespace {ns}: its audit log is for site administrators"
                )))
            }
        };
        filter.since = Some(filter.since.map_or(created, |s| s.max(created)));
        Ok(filter)
    }
}
