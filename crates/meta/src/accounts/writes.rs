//! The accounts writes, each a function over one connection that records
//! its audit event in the same transaction.

use serde_json::json;
use sqlx::{AnyConnection, Row};

use super::{record, AccountKind, NewUser, OrgDeletion, Role, Visibility};
use crate::audit::Actor;
use crate::Result;
use berth_oci::RepositoryName;

async fn insert_namespace(
    c: &mut AnyConnection,
    name: &str,
    kind: &str,
    visibility: Visibility,
    now: i64,
) -> Result<bool> {
    // A robot of that name would make the name ambiguous in the audit log.
    let taken = sqlx::query("SELECT 1 FROM users WHERE name = $1")
        .bind(name)
        .fetch_optional(&mut *c)
        .await?
        .is_some();
    if taken {
        return Ok(false);
    }
    let done = sqlx::query(
        "INSERT INTO namespaces (name, kind, visibility, created_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .bind(kind)
    .bind(visibility.as_str())
    .bind(now)
    .execute(&mut *c)
    .await?;
    Ok(done.rows_affected() > 0)
}

pub(super) async fn create_user(c: &mut AnyConnection, u: NewUser, actor: Actor) -> Result<bool> {
    if !insert_namespace(c, &u.name, "user", u.visibility, actor.at).await? {
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO users (name, kind, org, password_hash, site_admin, disabled_at, created_at)
         VALUES ($1, 'user', NULL, $2, $3, NULL, $4)",
    )
    .bind(&u.name)
    .bind(u.password_hash.as_deref())
    .bind(i64::from(u.site_admin))
    .bind(actor.at)
    .execute(&mut *c)
    .await?;
    let detail = json!({"op": "user.create", "account": u.name, "site_admin": u.site_admin,
                        "visibility": u.visibility});
    record(c, &actor, detail).await?;
    Ok(true)
}

pub(super) async fn create_org(
    c: &mut AnyConnection,
    name: String,
    visibility: Visibility,
    founder: Option<String>,
    actor: Actor,
) -> Result<bool> {
    if !insert_namespace(c, &name, "org", visibility, actor.at).await? {
        return Ok(false);
    }
    if let Some(founder) = &founder {
        // The founder must be a user: a robot or a missing account would
        // leave an organisation nobody administers.
        let inserted = sqlx::query(
            "INSERT INTO org_members (org, member, role, added_at)
             SELECT $1, name, 'admin', $3 FROM users WHERE name = $2 AND kind = 'user'",
        )
        .bind(&name)
        .bind(founder)
        .bind(actor.at)
        .execute(&mut *c)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(crate::Error::Refused(format!(
                "the founder {founder:?} of an organisation must be a user"
            )));
        }
    }
    let detail = json!({"op": "org.create", "org": name, "visibility": visibility,
                        "admin": founder});
    record(c, &actor, detail).await?;
    Ok(true)
}

/// The bounds of the names under namespace `ns`: `ns/` inclusive to `ns0`
/// exclusive (`0` is the byte after `/`), a range scan instead of an
/// escaped `LIKE`.
fn below(ns: &str) -> (String, String) {
    (format!("{ns}/"), format!("{ns}0"))
}

/// Removes every setting keyed by namespace `ns` (repository visibility
/// overrides, tag rules scoped to it, its retention policy and runs, its
/// quota), so that whoever founds the name next starts clean.
async fn forget_namespace(c: &mut AnyConnection, ns: &str) -> Result<()> {
    let (lo, hi) = below(ns);
    sqlx::query(
        "DELETE FROM repository_visibility
         WHERE repository = $1 OR (repository >= $2 AND repository < $3)",
    )
    .bind(ns)
    .bind(&lo)
    .bind(&hi)
    .execute(&mut *c)
    .await?;
    sqlx::query("DELETE FROM tag_rules WHERE scope = $1 OR (scope >= $2 AND scope < $3)")
        .bind(ns)
        .bind(&lo)
        .bind(&hi)
        .execute(&mut *c)
        .await?;
    sqlx::query("DELETE FROM retention_policies WHERE namespace = $1")
        .bind(ns)
        .execute(&mut *c)
        .await?;
    sqlx::query("DELETE FROM quotas WHERE namespace = $1")
        .bind(ns)
        .execute(&mut *c)
        .await?;
    let job = format!("retention:{ns}");
    sqlx::query("DELETE FROM job_runs WHERE job = $1")
        .bind(&job)
        .execute(&mut *c)
        .await?;
    sqlx::query("DELETE FROM job_leases WHERE name = $1")
        .bind(&job)
        .execute(&mut *c)
        .await?;
    Ok(())
}

/// The repositories of namespace `ns`, sorted.
async fn repositories_of(c: &mut AnyConnection, ns: &str) -> Result<Vec<RepositoryName>> {
    let (lo, hi) = below(ns);
    let rows = sqlx::query(
        "SELECT name FROM repositories WHERE name = $1 OR (name >= $2 AND name < $3)
         ORDER BY name",
    )
    .bind(ns)
    .bind(&lo)
    .bind(&hi)
    .fetch_all(&mut *c)
    .await?;
    rows.iter().map(|r| crate::repository_at(r, 0)).collect()
}

/// Whether anything of namespace `ns` remains: a repository or a setting
/// keyed by it.
pub(super) async fn namespace_remains(c: &mut AnyConnection, ns: &str) -> Result<bool> {
    let (lo, hi) = below(ns);
    let row = sqlx::query(
        "SELECT 1 WHERE EXISTS (SELECT 1 FROM repositories
                                WHERE name = $1 OR (name >= $2 AND name < $3))
            OR EXISTS (SELECT 1 FROM repository_visibility
                       WHERE repository = $1 OR (repository >= $2 AND repository < $3))
            OR EXISTS (SELECT 1 FROM tag_rules WHERE scope = $1 OR (scope >= $2 AND scope < $3))
            OR EXISTS (SELECT 1 FROM retention_policies WHERE namespace = $1)
            OR EXISTS (SELECT 1 FROM quotas WHERE namespace = $1)",
    )
    .bind(ns)
    .bind(&lo)
    .bind(&hi)
    .fetch_optional(&mut *c)
    .await?;
    Ok(row.is_some())
}

pub(super) async fn create_robot(
    c: &mut AnyConnection,
    org: String,
    name: String,
    role: Role,
    actor: Actor,
) -> Result<bool> {
    let org_exists = sqlx::query("SELECT 1 FROM namespaces WHERE name = $1 AND kind = 'org'")
        .bind(&org)
        .fetch_optional(&mut *c)
        .await?
        .is_some();
    let name_taken = sqlx::query("SELECT 1 FROM namespaces WHERE name = $1")
        .bind(&name)
        .fetch_optional(&mut *c)
        .await?
        .is_some();
    if !org_exists || name_taken {
        return Ok(false);
    }
    let done = sqlx::query(
        "INSERT INTO users (name, kind, org, password_hash, site_admin, disabled_at, created_at)
         VALUES ($1, 'robot', $2, NULL, 0, NULL, $3)
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(&name)
    .bind(&org)
    .bind(actor.at)
    .execute(&mut *c)
    .await?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    sqlx::query("INSERT INTO org_members (org, member, role, added_at) VALUES ($1, $2, $3, $4)")
        .bind(&org)
        .bind(&name)
        .bind(role.as_str())
        .bind(actor.at)
        .execute(&mut *c)
        .await?;
    let detail = json!({"op": "robot.create", "account": name, "org": org, "role": role});
    record(c, &actor, detail).await?;
    Ok(true)
}

pub(super) async fn delete_user(c: &mut AnyConnection, name: String, actor: Actor) -> Result<bool> {
    let row = sqlx::query("DELETE FROM users WHERE name = $1 RETURNING kind")
        .bind(&name)
        .fetch_optional(&mut *c)
        .await?;
    let Some(row) = row else {
        return Ok(false);
    };
    let kind: String = row.try_get(0)?;
    if kind == AccountKind::User.as_str() {
        sqlx::query("DELETE FROM namespaces WHERE name = $1 AND kind = 'user'")
            .bind(&name)
            .execute(&mut *c)
            .await?;
        forget_namespace(c, &name).await?;
    }
    let detail = json!({"op": format!("{kind}.delete"), "account": name});
    record(c, &actor, detail).await?;
    Ok(true)
}

pub(super) async fn delete_org(
    c: &mut AnyConnection,
    name: String,
    with_repositories: bool,
    actor: Actor,
) -> Result<OrgDeletion> {
    let exists = sqlx::query("SELECT 1 FROM namespaces WHERE name = $1 AND kind = 'org'")
        .bind(&name)
        .fetch_optional(&mut *c)
        .await?
        .is_some();
    if !exists {
        return Ok(OrgDeletion::NotFound);
    }
    let repositories = repositories_of(c, &name).await?;
    if !repositories.is_empty() && !with_repositories {
        return Ok(OrgDeletion::HoldsRepositories(repositories));
    }
    // Manifests, tags, references and blob links go with their repository
    // (ON DELETE CASCADE); the blobs themselves are left to garbage
    // collection.
    let (lo, hi) = below(&name);
    sqlx::query("DELETE FROM repositories WHERE name = $1 OR (name >= $2 AND name < $3)")
        .bind(&name)
        .bind(&lo)
        .bind(&hi)
        .execute(&mut *c)
        .await?;
    // Robots go with their organisation (and their tokens with them).
    sqlx::query("DELETE FROM users WHERE kind = 'robot' AND org = $1")
        .bind(&name)
        .execute(&mut *c)
        .await?;
    sqlx::query("DELETE FROM namespaces WHERE name = $1 AND kind = 'org'")
        .bind(&name)
        .execute(&mut *c)
        .await?;
    forget_namespace(c, &name).await?;
    let detail = json!({"op": "org.delete", "org": name, "repositories": repositories});
    record(c, &actor, detail).await?;
    Ok(OrgDeletion::Deleted(repositories))
}

pub(super) async fn set_password(
    c: &mut AnyConnection,
    name: String,
    hash: String,
    actor: Actor,
) -> Result<bool> {
    let done = sqlx::query("UPDATE users SET password_hash = $2 WHERE name = $1 AND kind = 'user'")
        .bind(&name)
        .bind(&hash)
        .execute(&mut *c)
        .await?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    // The login sessions (refresh tokens) were opened with the old
    // password: they end with it.
    let ended = end_sessions(c, &name, actor.at).await?;
    let detail = json!({"op": "user.password", "account": name, "sessions_ended": ended});
    record(c, &actor, detail).await?;
    Ok(true)
}

/// Revokes the refresh tokens (login sessions) of `name`; returns how
/// many were still usable.
async fn end_sessions(c: &mut AnyConnection, name: &str, at: i64) -> Result<u64> {
    let done = sqlx::query(
        "UPDATE tokens SET revoked_at = $2
         WHERE owner = $1 AND kind = 'refresh' AND revoked_at IS NULL",
    )
    .bind(name)
    .bind(at)
    .execute(&mut *c)
    .await?;
    // Web UI sign-ins are sessions too.
    let ui = sqlx::query("DELETE FROM ui_sessions WHERE account = $1")
        .bind(name)
        .execute(&mut *c)
        .await?;
    Ok(done.rows_affected() + ui.rows_affected())
}

pub(super) async fn revoke_sessions(
    c: &mut AnyConnection,
    name: String,
    actor: Actor,
) -> Result<Option<u64>> {
    let exists = sqlx::query("SELECT 1 FROM users WHERE name = $1")
        .bind(&name)
        .fetch_optional(&mut *c)
        .await?
        .is_some();
    if !exists {
        return Ok(None);
    }
    let ended = end_sessions(c, &name, actor.at).await?;
    let detail = json!({"op": "user.sessions.revoke", "account": name, "sessions_ended": ended});
    record(c, &actor, detail).await?;
    Ok(Some(ended))
}

pub(super) async fn set_site_admin(
    c: &mut AnyConnection,
    name: String,
    admin: bool,
    actor: Actor,
) -> Result<bool> {
    let done = sqlx::query("UPDATE users SET site_admin = $2 WHERE name = $1 AND kind = 'user'")
        .bind(&name)
        .bind(i64::from(admin))
        .execute(&mut *c)
        .await?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    let detail = json!({"op": "user.site_admin", "account": name, "site_admin": admin});
    record(c, &actor, detail).await?;
    Ok(true)
}

pub(super) async fn set_disabled(
    c: &mut AnyConnection,
    name: String,
    disabled: bool,
    actor: Actor,
) -> Result<bool> {
    let done = sqlx::query("UPDATE users SET disabled_at = $2 WHERE name = $1")
        .bind(&name)
        .bind(disabled.then_some(actor.at))
        .execute(&mut *c)
        .await?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    let detail = json!({"op": "user.disabled", "account": name, "disabled": disabled});
    record(c, &actor, detail).await?;
    Ok(true)
}

pub(super) async fn set_member(
    c: &mut AnyConnection,
    org: String,
    member: String,
    role: Role,
    actor: Actor,
) -> Result<bool> {
    let org_exists = sqlx::query("SELECT 1 FROM namespaces WHERE name = $1 AND kind = 'org'")
        .bind(&org)
        .fetch_optional(&mut *c)
        .await?
        .is_some();
    let account = sqlx::query("SELECT kind, org FROM users WHERE name = $1")
        .bind(&member)
        .fetch_optional(&mut *c)
        .await?;
    let Some(account) = account else {
        return Ok(false);
    };
    let kind: String = account.try_get(0)?;
    let owner: Option<String> = account.try_get(1)?;
    if !org_exists || (kind == AccountKind::Robot.as_str() && owner.as_deref() != Some(&org)) {
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO org_members (org, member, role, added_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (org, member) DO UPDATE SET role = excluded.role, added_at = excluded.added_at",
    )
    .bind(&org)
    .bind(&member)
    .bind(role.as_str())
    .bind(actor.at)
    .execute(&mut *c)
    .await?;
    let detail = json!({"op": "member.set", "org": org, "account": member, "role": role});
    record(c, &actor, detail).await?;
    Ok(true)
}

pub(super) async fn remove_member(
    c: &mut AnyConnection,
    org: String,
    member: String,
    actor: Actor,
) -> Result<bool> {
    let done = sqlx::query("DELETE FROM org_members WHERE org = $1 AND member = $2")
        .bind(&org)
        .bind(&member)
        .execute(&mut *c)
        .await?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    let detail = json!({"op": "member.remove", "org": org, "account": member});
    record(c, &actor, detail).await?;
    Ok(true)
}

pub(super) async fn set_namespace_visibility(
    c: &mut AnyConnection,
    ns: String,
    visibility: Visibility,
    actor: Actor,
) -> Result<bool> {
    let done = sqlx::query("UPDATE namespaces SET visibility = $2 WHERE name = $1")
        .bind(&ns)
        .bind(visibility.as_str())
        .execute(&mut *c)
        .await?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    let detail = json!({"op": "namespace.visibility", "namespace": ns, "visibility": visibility});
    record(c, &actor, detail).await?;
    Ok(true)
}

pub(super) async fn set_repository_visibility(
    c: &mut AnyConnection,
    repo: String,
    visibility: Option<Visibility>,
    actor: Actor,
) -> Result<()> {
    match visibility {
        Some(v) => {
            sqlx::query(
                "INSERT INTO repository_visibility (repository, visibility, updated_at)
                 VALUES ($1, $2, $3)
                 ON CONFLICT (repository) DO UPDATE
                 SET visibility = excluded.visibility, updated_at = excluded.updated_at",
            )
            .bind(&repo)
            .bind(v.as_str())
            .bind(actor.at)
            .execute(&mut *c)
            .await?;
        }
        None => {
            sqlx::query("DELETE FROM repository_visibility WHERE repository = $1")
                .bind(&repo)
                .execute(&mut *c)
                .await?;
        }
    }
    let event = actor
        .event(crate::audit::action::PERMISSION_CHANGE)
        .repository(&repo)
        .detail(json!({"op": "repository.visibility", "visibility": visibility}));
    crate::audit::record(c, &event).await
}
