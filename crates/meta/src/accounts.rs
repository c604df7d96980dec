//! Accounts: users, robots, organisations, memberships and visibility.
//!
//! A *namespace* is the first path component of a repository name; it
//! belongs to a user (their own name) or to an organisation, never both
//! (`namespaces.name` is unique across kinds). Robots are accounts owned by
//! an organisation; their names contain `+` (`acme+ci`), which no
//! repository name can, so they never own a namespace.
//!
//! Every write here runs in one [`Meta::transact`] together with its
//! [`action::PERMISSION_CHANGE`] audit event, and bumps the accounts epoch
//! ([`Meta::accounts_epoch`]) once committed so that in-process caches of
//! permission facts drop what they hold. Writes return `false` instead of
//! an error when the name is taken or the target does not exist, so the
//! API layer can answer 409 or 404 without parsing database errors.
//!
//! Password hashes are opaque strings here (argon2id PHC strings made by
//! the registry layer); this module never sees a password.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::audit::{self, action, Actor};
use crate::{Error, Meta, Result};

mod kinds;
pub use kinds::{AccountKind, NamespaceKind, Role, Visibility};

/// A user or robot account.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    /// Login name.
    pub name: String,
    /// User or robot.
    pub kind: AccountKind,
    /// The owning organisation of a robot.
    pub org: Option<String>,
    /// argon2id PHC string; `None` for robots and users without a password.
    pub password_hash: Option<String>,
    /// Administers the whole registry.
    pub site_admin: bool,
    /// When the account was disabled (`None`: enabled).
    pub disabled_at: Option<i64>,
    /// Creation time (Unix ms).
    pub created_at: i64,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("org", &self.org)
            .field("site_admin", &self.site_admin)
            .field("disabled_at", &self.disabled_at)
            .finish_non_exhaustive()
    }
}

/// An account to create.
#[derive(Clone)]
pub struct NewUser {
    /// Login name (for a user, also its namespace).
    pub name: String,
    /// argon2id PHC string, if the user has a password.
    pub password_hash: Option<String>,
    /// Administers the whole registry.
    pub site_admin: bool,
    /// Visibility of the user's namespace.
    pub visibility: Visibility,
}

/// A namespace: a user's own or an organisation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Namespace {
    /// Its name.
    pub name: String,
    /// Whose it is.
    pub kind: NamespaceKind,
    /// Visibility of its repositories (unless a repository overrides it).
    pub visibility: Visibility,
    /// Creation time (Unix ms).
    pub created_at: i64,
}

/// A member of an organisation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Member {
    /// The organisation.
    pub org: String,
    /// The member account (user or robot).
    pub member: String,
    /// Its role.
    pub role: Role,
    /// When it became a member, or the role last changed (Unix ms).
    pub added_at: i64,
}

/// What deleting an organisation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrgDeletion {
    /// Deleted, with these repositories (empty unless asked for).
    Deleted(Vec<berth_oci::RepositoryName>),
    /// No such organisation.
    NotFound,
    /// Not deleted: it still holds these repositories and deleting them
    /// was not asked for.
    HoldsRepositories(Vec<berth_oci::RepositoryName>),
}

fn user_row(r: &AnyRow) -> Result<User> {
    let kind: String = r.try_get(1)?;
    let site_admin: i64 = r.try_get(4)?;
    Ok(User {
        name: r.try_get(0)?,
        kind: AccountKind::parse(&kind).ok_or_else(|| corrupt("users.kind", &kind))?,
        org: r.try_get(2)?,
        password_hash: r.try_get(3)?,
        site_admin: site_admin != 0,
        disabled_at: r.try_get(5)?,
        created_at: r.try_get(6)?,
    })
}

const USER_COLUMNS: &str = "name, kind, org, password_hash, site_admin, disabled_at, created_at";

fn namespace_row(r: &AnyRow) -> Result<Namespace> {
    let kind: String = r.try_get(1)?;
    let vis: String = r.try_get(2)?;
    Ok(Namespace {
        name: r.try_get(0)?,
        kind: NamespaceKind::parse(&kind).ok_or_else(|| corrupt("namespaces.kind", &kind))?,
        visibility: Visibility::parse(&vis).ok_or_else(|| corrupt("visibility", &vis))?,
        created_at: r.try_get(3)?,
    })
}

fn member_row(r: &AnyRow) -> Result<Member> {
    let role: String = r.try_get(2)?;
    Ok(Member {
        org: r.try_get(0)?,
        member: r.try_get(1)?,
        role: Role::parse(&role).ok_or_else(|| corrupt("org_members.role", &role))?,
        added_at: r.try_get(3)?,
    })
}

pub(crate) fn corrupt(what: &str, value: &str) -> Error {
    Error::Corrupt(format!("{what} = {value:?}"))
}

async fn record(conn: &mut AnyConnection, actor: &Actor, detail: serde_json::Value) -> Result<()> {
    audit::record(conn, &actor.event(action::PERMISSION_CHANGE).detail(detail)).await
}

mod writes;

impl Meta {
    /// Runs an accounts write (see [`Meta::transact`]) and, once it is
    /// committed, bumps the accounts epoch.
    pub(crate) async fn accounts_write<T, F>(&self, write: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut AnyConnection) -> crate::BoxFuture<'c, Result<T>>
            + Send
            + 'static,
    {
        let out = self.transact(write).await;
        self.bump_accounts_epoch();
        out
    }

    /// Creates a user and its namespace. `false` if the name is taken (by
    /// a user, robot or organisation).
    pub async fn create_user(&self, user: &NewUser, actor: &Actor) -> Result<bool> {
        let (user, actor) = (user.clone(), actor.clone());
        self.accounts_write(move |c| Box::pin(writes::create_user(c, user, actor)))
            .await
    }

    /// Creates an organisation (a namespace without a login) and, with a
    /// `founder`, makes that user its admin in the same transaction.
    /// `false` if the name is taken; [`Error::Refused`] if the founder is
    /// not a user.
    pub async fn create_org(
        &self,
        name: &str,
        visibility: Visibility,
        founder: Option<&str>,
        actor: &Actor,
    ) -> Result<bool> {
        let (name, actor) = (name.to_owned(), actor.clone());
        let founder = founder.map(str::to_owned);
        self.accounts_write(move |c| {
            Box::pin(writes::create_org(c, name, visibility, founder, actor))
        })
        .await
    }

    /// Whether anything of namespace `ns` remains: a repository, or a
    /// setting keyed by it (visibility override, tag rule, retention
    /// policy, quota).
    pub async fn namespace_remains(&self, ns: &berth_oci::Namespace) -> Result<bool> {
        let mut c = self.read.acquire().await?;
        writes::namespace_remains(&mut c, ns.as_str()).await
    }

    /// Creates the robot account `name` (conventionally `<org>+<short>`)
    /// owned by `org`, as a member of `org` with `role`. `false` if the name
    /// is taken or the organisation does not exist.
    pub async fn create_robot(
        &self,
        org: &str,
        name: &str,
        role: Role,
        actor: &Actor,
    ) -> Result<bool> {
        let (org, name, actor) = (org.to_owned(), name.to_owned(), actor.clone());
        self.accounts_write(move |c| Box::pin(writes::create_robot(c, org, name, role, actor)))
            .await
    }

    /// Deletes a user or robot with its tokens and memberships. A user's
    /// namespace goes too, with every setting keyed by it (visibility
    /// overrides, tag rules, retention policy and runs, quota); its
    /// repositories stay, private, readable by site admins. `false` if
    /// there is no such account.
    pub async fn delete_user(&self, name: &str, actor: &Actor) -> Result<bool> {
        let (name, actor) = (name.to_owned(), actor.clone());
        self.accounts_write(move |c| Box::pin(writes::delete_user(c, name, actor)))
            .await
    }

    /// Deletes an organisation with its memberships, robots and their
    /// tokens, and every setting keyed by its namespace. An organisation
    /// that still holds repositories is deleted only `with_repositories`
    /// (their metadata goes in the same transaction; the blobs are left to
    /// garbage collection).
    pub async fn delete_org(
        &self,
        name: &str,
        with_repositories: bool,
        actor: &Actor,
    ) -> Result<OrgDeletion> {
        let (name, actor) = (name.to_owned(), actor.clone());
        let out = self
            .accounts_write(move |c| {
                Box::pin(writes::delete_org(c, name, with_repositories, actor))
            })
            .await;
        // Its repositories may be gone, with their contents.
        self.inventories.changed_all();
        out
    }

    /// Ends the login sessions (refresh tokens) of account `name`; how
    /// many were open, `None` if there is no such account.
    pub async fn revoke_sessions(&self, name: &str, actor: &Actor) -> Result<Option<u64>> {
        let (name, actor) = (name.to_owned(), actor.clone());
        self.accounts_write(move |c| Box::pin(writes::revoke_sessions(c, name, actor)))
            .await
    }

    /// Replaces a user's password hash and ends the user's login sessions
    /// (refresh tokens). `false` if there is no such user.
    pub async fn set_password(
        &self,
        name: &str,
        password_hash: &str,
        actor: &Actor,
    ) -> Result<bool> {
        let (name, hash, actor) = (name.to_owned(), password_hash.to_owned(), actor.clone());
        self.accounts_write(move |c| Box::pin(writes::set_password(c, name, hash, actor)))
            .await
    }

    /// Grants or removes site administration. `false` if there is no such
    /// user (robots cannot be site admins).
    pub async fn set_site_admin(&self, name: &str, admin: bool, actor: &Actor) -> Result<bool> {
        let (name, actor) = (name.to_owned(), actor.clone());
        self.accounts_write(move |c| Box::pin(writes::set_site_admin(c, name, admin, actor)))
            .await
    }

    /// Disables (refuses every login and token) or re-enables an account.
    /// `false` if there is no such account.
    pub async fn set_disabled(&self, name: &str, disabled: bool, actor: &Actor) -> Result<bool> {
        let (name, actor) = (name.to_owned(), actor.clone());
        self.accounts_write(move |c| Box::pin(writes::set_disabled(c, name, disabled, actor)))
            .await
    }

    /// Adds `member` (a user, or a robot of this organisation) to `org`
    /// with `role`, or changes its role. `false` if either does not exist,
    /// or the robot belongs to another organisation.
    pub async fn set_member(
        &self,
        org: &str,
        member: &str,
        role: Role,
        actor: &Actor,
    ) -> Result<bool> {
        let (org, member, actor) = (org.to_owned(), member.to_owned(), actor.clone());
        self.accounts_write(move |c| Box::pin(writes::set_member(c, org, member, role, actor)))
            .await
    }

    /// Removes `member` from `org`. `false` if it was not a member.
    pub async fn remove_member(&self, org: &str, member: &str, actor: &Actor) -> Result<bool> {
        let (org, member, actor) = (org.to_owned(), member.to_owned(), actor.clone());
        self.accounts_write(move |c| Box::pin(writes::remove_member(c, org, member, actor)))
            .await
    }

    /// Sets the visibility of a namespace. `false` if there is no such
    /// namespace.
    pub async fn set_namespace_visibility(
        &self,
        namespace: &berth_oci::Namespace,
        visibility: Visibility,
        actor: &Actor,
    ) -> Result<bool> {
        let (ns, actor) = (namespace.to_string(), actor.clone());
        self.accounts_write(move |c| {
            Box::pin(writes::set_namespace_visibility(c, ns, visibility, actor))
        })
        .await
    }

    /// Overrides the visibility of one repository (`None`: inherit the
    /// namespace's again). The repository need not exist yet.
    pub async fn set_repository_visibility(
        &self,
        repository: &berth_oci::RepositoryName,
        visibility: Option<Visibility>,
        actor: &Actor,
    ) -> Result<()> {
        let (repo, actor) = (repository.to_string(), actor.clone());
        self.accounts_write(move |c| {
            Box::pin(writes::set_repository_visibility(
                c, repo, visibility, actor,
            ))
        })
        .await
    }

    /// The account `name`.
    pub async fn user(&self, name: &str) -> Result<Option<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE name = $1");
        let row = sqlx::query(&sql)
            .bind(name)
            .fetch_optional(&self.read)
            .await?;
        row.map(|r| user_row(&r)).transpose()
    }

    /// All accounts (users and robots), by name.
    pub async fn users(&self) -> Result<Vec<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY name");
        let rows = sqlx::query(&sql).fetch_all(&self.read).await?;
        rows.iter().map(user_row).collect()
    }

    /// The robots of `org`, by name.
    pub async fn robots(&self, org: &str) -> Result<Vec<User>> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users WHERE kind = 'robot' AND org = $1 ORDER BY name"
        );
        let rows = sqlx::query(&sql).bind(org).fetch_all(&self.read).await?;
        rows.iter().map(user_row).collect()
    }

    /// The namespace `name`, if a user or organisation owns it.
    pub async fn namespace(&self, name: &berth_oci::Namespace) -> Result<Option<Namespace>> {
        let row = sqlx::query(
            "SELECT name, kind, visibility, created_at FROM namespaces WHERE name = $1",
        )
        .bind(name.as_str())
        .fetch_optional(&self.read)
        .await?;
        row.map(|r| namespace_row(&r)).transpose()
    }

    /// All organisations, by name.
    pub async fn orgs(&self) -> Result<Vec<Namespace>> {
        let rows = sqlx::query(
            "SELECT name, kind, visibility, created_at FROM namespaces
             WHERE kind = 'org' ORDER BY name",
        )
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(namespace_row).collect()
    }

    /// The members of `org`, by name.
    pub async fn members(&self, org: &str) -> Result<Vec<Member>> {
        let rows = sqlx::query(
            "SELECT org, member, role, added_at FROM org_members WHERE org = $1 ORDER BY member",
        )
        .bind(org)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(member_row).collect()
    }

    /// How many members each organisation has (users and robots), by
    /// organisation name; organisations without members are absent.
    pub async fn member_counts(&self) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query("SELECT org, COUNT(*) FROM org_members GROUP BY org ORDER BY org")
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// The organisations `member` belongs to, by organisation name.
    pub async fn memberships(&self, member: &str) -> Result<Vec<Member>> {
        let rows = sqlx::query(
            "SELECT org, member, role, added_at FROM org_members WHERE member = $1 ORDER BY org",
        )
        .bind(member)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(member_row).collect()
    }

    /// The role of `member` in `org`, if it is a member.
    pub async fn role(&self, org: &str, member: &str) -> Result<Option<Role>> {
        let row = sqlx::query("SELECT role FROM org_members WHERE org = $1 AND member = $2")
            .bind(org)
            .bind(member)
            .fetch_optional(&self.read)
            .await?;
        match row {
            None => Ok(None),
            Some(r) => {
                let role: String = r.try_get(0)?;
                Ok(Some(
                    Role::parse(&role).ok_or_else(|| corrupt("org_members.role", &role))?,
                ))
            }
        }
    }

    /// The visibility override of `repository`, if one is set.
    pub async fn repository_visibility(
        &self,
        repository: &berth_oci::RepositoryName,
    ) -> Result<Option<Visibility>> {
        let row = sqlx::query("SELECT visibility FROM repository_visibility WHERE repository = $1")
            .bind(repository.as_str())
            .fetch_optional(&self.read)
            .await?;
        match row {
            None => Ok(None),
            Some(r) => {
                let v: String = r.try_get(0)?;
                Ok(Some(
                    Visibility::parse(&v).ok_or_else(|| corrupt("visibility", &v))?,
                ))
            }
        }
    }

    /// The shared value `name` (the token signing key, for instance): the
    /// stored one, or `candidate` stored now if there was none. Replicas
    /// racing on first start all get the value of the first.
    pub async fn server_key(&self, name: &str, candidate: &str) -> Result<String> {
        let (name, candidate) = (name.to_owned(), candidate.to_owned());
        self.transact(move |c| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO server_keys (name, value, created_at) VALUES ($1, $2, $3)
                     ON CONFLICT (name) DO NOTHING",
                )
                .bind(&name)
                .bind(&candidate)
                .bind(crate::now_ms())
                .execute(&mut *c)
                .await?;
                let row = sqlx::query("SELECT value FROM server_keys WHERE name = $1")
                    .bind(&name)
                    .fetch_one(&mut *c)
                    .await?;
                Ok(row.try_get::<String, _>(0)?)
            })
        })
        .await
    }
}
