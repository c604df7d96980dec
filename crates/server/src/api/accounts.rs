//! Users, organisations, members and robots under `/api/v1/`.
//!
//! | route | who |
//! | --- | --- |
//! | `GET/POST /users`, `PATCH/DELETE /users/{name}` | site admins |
//! | `GET /users/{name}`, `PUT /users/{name}/password` | the user, site admins |
//! | `GET /orgs` | site admins: all; others: their organisations |
//! | `POST /orgs` | any signed-in user, who becomes its admin |
//! | `DELETE /orgs/{org}`, members and robots | the organisation's admins |
//! | `GET /orgs/{org}/members` | its members |
//!
//! Passwords and generated secrets are shown once, in the answer that
//! creates them; the audit log records every change without them.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::{Json, Router};
use berth_registry::auth::secret;
use berth_registry::meta::accounts::{NamespaceKind, Role, User, Visibility};
use berth_registry::{Caller, Error};
use serde::Deserialize;
use serde_json::{json, Value};

use super::body::JsonBody;
use super::extract::Path;
use super::{Need, Principal};
use crate::error::ApiError;
use crate::App;

pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/users", get(handle_list_users).post(handle_create_user))
        .route(
            "/users/{name}",
            get(handle_get_user)
                .patch(handle_patch_user)
                .delete(handle_delete_user),
        )
        .route("/users/{name}/password", put(handle_set_password))
        .route("/orgs", get(handle_list_orgs).post(handle_create_org))
        .route("/orgs/{org}", get(handle_get_org).delete(handle_delete_org))
        .route("/orgs/{org}/members", get(handle_list_members))
        .route(
            "/orgs/{org}/members/{member}",
            put(handle_set_member).delete(handle_remove_member),
        )
        .route(
            "/orgs/{org}/robots",
            get(handle_list_robots).post(handle_create_robot),
        )
}

type Answer = Result<Json<Value>, ApiError>;

/// A user as the API shows it (never the password hash).
pub(crate) fn user_json(u: &User) -> Value {
    json!({
        "name": u.name,
        "kind": u.kind,
        "org": u.org,
        "site_admin": u.site_admin,
        "disabled_at": u.disabled_at,
        "created_at": u.created_at,
    })
}

fn parse_visibility(v: Option<&str>) -> Result<Option<Visibility>, ApiError> {
    v.map(|s| {
        Visibility::parse(s).ok_or_else(|| {
            Error::InvalidParameter(format!("visibility {s:?}: use public or private")).into()
        })
    })
    .transpose()
}

fn parse_role(s: &str) -> Result<Role, ApiError> {
    Role::parse(s).ok_or_else(|| {
        Error::InvalidParameter(format!("role {s:?}: use read, write or admin")).into()
    })
}

/// A password for an account created or reset without one.
fn generated_password() -> Result<String, ApiError> {
    Ok(secret::random_string(24)?)
}

/// Only the user themselves (with their password, not a token of any kind)
/// or a site admin.
async fn require_self_or_site_admin(
    app: &App,
    principal: &Principal,
    name: &str,
) -> Result<Caller, ApiError> {
    if principal.account() == Some(name) && principal.identity.by_password() {
        return Ok(principal.caller.clone());
    }
    principal.require(app, "", Need::SiteAdmin).await
}

async fn handle_list_users(State(app): State<Arc<App>>, principal: Principal) -> Answer {
    principal.require(&app, "", Need::SiteAdmin).await?;
    let users = app.auth.meta().users().await.map_err(Error::from)?;
    Ok(Json(Value::Array(users.iter().map(user_json).collect())))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUserBody {
    name: String,
    password: Option<String>,
    #[serde(default)]
    site_admin: bool,
    visibility: Option<String>,
}

async fn handle_create_user(
    State(app): State<Arc<App>>,
    principal: Principal,
    JsonBody(body): JsonBody<NewUserBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let caller = principal.require(&app, "", Need::SiteAdmin).await?;
    let visibility = parse_visibility(body.visibility.as_deref())?;
    let generated = match &body.password {
        Some(_) => None,
        None => Some(generated_password()?),
    };
    let password = body.password.as_deref().or(generated.as_deref());
    let created = app
        .auth
        .create_user(&body.name, password, body.site_admin, visibility, &caller)
        .await?;
    if !created {
        return Err(Error::Conflict(format!(
            "the name {:?} is taken by a user or organisation",
            body.name
        ))
        .into());
    }
    let mut answer = json!({ "name": body.name, "site_admin": body.site_admin });
    if let Some(p) = generated {
        answer["password"] = p.into();
    }
    Ok((StatusCode::CREATED, Json(answer)))
}

async fn find_user(app: &App, name: &str) -> Result<User, ApiError> {
    app.auth
        .meta()
        .user(name)
        .await
        .map_err(Error::from)?
        .ok_or_else(|| Error::NotFound(format!("no account named {name:?}")).into())
}

async fn handle_get_user(
    State(app): State<Arc<App>>,
    principal: Principal,
    Path(name): Path<String>,
) -> Answer {
    require_self_or_site_admin(&app, &principal, &name).await?;
    let user = find_user(&app, &name).await?;
    let memberships = app
        .auth
        .meta()
        .memberships(&name)
        .await
        .map_err(Error::from)?;
    let mut v = user_json(&user);
    v["memberships"] = json!(memberships);
    Ok(Json(v))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchUserBody {
    site_admin: Option<bool>,
    disabled: Option<bool>,
}

async fn handle_patch_user(
    State(app): State<Arc<App>>,
    principal: Principal,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<PatchUserBody>,
) -> Answer {
    let caller = principal.require(&app, "", Need::SiteAdmin).await?;
    let meta = app.auth.meta();
    let actor = caller.actor();
    let missing = || ApiError::from(Error::NotFound(format!("no account named {name:?}")));
    if let Some(a) = body.site_admin {
        if !a && principal.account() == Some(name.as_str()) {
            return Err(
                Error::Denied("you cannot withdraw your own site admin role".into()).into(),
            );
        }
        if !meta
            .set_site_admin(&name, a, &actor)
            .await
            .map_err(Error::from)?
        {
            return Err(missing());
        }
    }
    if let Some(d) = body.disabled {
        if d && principal.account() == Some(name.as_str()) {
            return Err(Error::Denied("you cannot disable your own account".into()).into());
        }
        if !meta
            .set_disabled(&name, d, &actor)
            .await
            .map_err(Error::from)?
        {
            return Err(missing());
        }
    }
    Ok(Json(user_json(&find_user(&app, &name).await?)))
}

async fn handle_delete_user(
    State(app): State<Arc<App>>,
    principal: Principal,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let caller = principal.require(&app, "", Need::SiteAdmin).await?;
    if principal.account() == Some(name.as_str()) {
        return Err(Error::Denied("you cannot delete your own account".into()).into());
    }
    if !app
        .auth
        .meta()
        .delete_user(&name, &caller.actor())
        .await
        .map_err(Error::from)?
    {
        return Err(Error::NotFound(format!("no account named {name:?}")).into());
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordBody {
    password: Option<String>,
}

async fn handle_set_password(
    State(app): State<Arc<App>>,
    principal: Principal,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<PasswordBody>,
) -> Answer {
    let caller = require_self_or_site_admin(&app, &principal, &name).await?;
    let generated = match &body.password {
        Some(_) => None,
        None => Some(generated_password()?),
    };
    let password = body
        .password
        .as_deref()
        .or(generated.as_deref())
        .unwrap_or_default();
    if !app.auth.set_password(&name, password, &caller).await? {
        return Err(Error::NotFound(format!("no user named {name:?}")).into());
    }
    Ok(Json(match generated {
        Some(p) => json!({ "name": name, "password": p }),
        None => json!({ "name": name }),
    }))
}

async fn handle_list_orgs(State(app): State<Arc<App>>, principal: Principal) -> Answer {
    let meta = app.auth.meta();
    let orgs = meta.orgs().await.map_err(Error::from)?;
    if principal.require(&app, "", Need::SiteAdmin).await.is_ok() {
        return Ok(Json(json!(orgs)));
    }
    let Some(me) = principal.account() else {
        return Err(Error::Unauthorized("authentication required".into()).into());
    };
    let mine: Vec<String> = meta
        .memberships(me)
        .await
        .map_err(Error::from)?
        .into_iter()
        .map(|m| m.org)
        .collect();
    let visible: Vec<_> = orgs
        .into_iter()
        .filter(|o| mine.contains(&o.name))
        .collect();
    Ok(Json(json!(visible)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewOrgBody {
    name: String,
    visibility: Option<String>,
}

async fn handle_create_org(
    State(app): State<Arc<App>>,
    principal: Principal,
    JsonBody(body): JsonBody<NewOrgBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let visibility = parse_visibility(body.visibility.as_deref())?;
    let caller = if app.auth.enforced() {
        // Any signed-in person may found an organisation (not a robot, not
        // a limited token).
        let me = principal
            .account()
            .ok_or_else(|| Error::Unauthorized("authentication required".into()))?;
        let user = find_user(&app, me).await?;
        if user.org.is_some() || !principal.identity.by_password() {
            return Err(Error::Denied(
                "organisations are created by users signed in with their password".into(),
            )
            .into());
        }
        // Administering the name already (a site admin, for a namespace
        // nobody owns) is what allows claiming a namespace with content.
        match principal.require(&app, &body.name, Need::Admin).await {
            Ok(caller) => caller,
            Err(_) => principal.caller.clone(),
        }
    } else {
        principal.caller.clone()
    };
    if !app.auth.create_org(&body.name, visibility, &caller).await? {
        return Err(Error::Conflict(format!(
            "the name {:?} is taken by a user or organisation",
            body.name
        ))
        .into());
    }
    if let Some(me) = caller.account.as_deref() {
        app.auth
            .meta()
            .set_member(&body.name, me, Role::Admin, &caller.actor())
            .await
            .map_err(Error::from)?;
    }
    let org = app
        .auth
        .meta()
        .namespace(&body.name)
        .await
        .map_err(Error::from)?;
    Ok((StatusCode::CREATED, Json(json!(org))))
}

async fn find_org(app: &App, org: &str) -> Result<Value, ApiError> {
    match app.auth.meta().namespace(org).await.map_err(Error::from)? {
        Some(ns) if ns.kind == NamespaceKind::Org => Ok(json!(ns)),
        _ => Err(Error::NotFound(format!("no organisation named {org:?}")).into()),
    }
}

async fn handle_get_org(
    State(app): State<Arc<App>>,
    principal: Principal,
    Path(org): Path<String>,
) -> Answer {
    principal.require(&app, &org, Need::Member).await?;
    Ok(Json(find_org(&app, &org).await?))
}

async fn handle_delete_org(
    State(app): State<Arc<App>>,
    principal: Principal,
    Path(org): Path<String>,
) -> Result<StatusCode, ApiError> {
    let caller = principal.require(&app, &org, Need::Admin).await?;
    find_org(&app, &org).await?;
    app.auth
        .meta()
        .delete_org(&org, &caller.actor())
        .await
        .map_err(Error::from)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn handle_list_members(
    State(app): State<Arc<App>>,
    principal: Principal,
    Path(org): Path<String>,
) -> Answer {
    principal.require(&app, &org, Need::Member).await?;
    find_org(&app, &org).await?;
    let members = app.auth.meta().members(&org).await.map_err(Error::from)?;
    Ok(Json(json!(members)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleBody {
    role: String,
}

async fn handle_set_member(
    State(app): State<Arc<App>>,
    principal: Principal,
    Path((org, member)): Path<(String, String)>,
    JsonBody(body): JsonBody<RoleBody>,
) -> Answer {
    let caller = principal.require(&app, &org, Need::Admin).await?;
    let role = parse_role(&body.role)?;
    find_org(&app, &org).await?;
    let account = find_user(&app, &member).await?;
    if account.org.as_deref().is_some_and(|o| o != org) {
        return Err(Error::Denied(format!("{member} is a robot of another organisation")).into());
    }
    app.auth
        .meta()
        .set_member(&org, &member, role, &caller.actor())
        .await
        .map_err(Error::from)?;
    Ok(Json(json!({ "org": org, "member": member, "role": role })))
}

async fn handle_remove_member(
    State(app): State<Arc<App>>,
    principal: Principal,
    Path((org, member)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let caller = principal.require(&app, &org, Need::Admin).await?;
    if !app
        .auth
        .meta()
        .remove_member(&org, &member, &caller.actor())
        .await
        .map_err(Error::from)?
    {
        return Err(Error::NotFound(format!("{member} is not a member of {org}")).into());
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn handle_list_robots(
    State(app): State<Arc<App>>,
    principal: Principal,
    Path(org): Path<String>,
) -> Answer {
    principal.require(&app, &org, Need::Admin).await?;
    find_org(&app, &org).await?;
    let meta = app.auth.meta();
    let robots = meta.robots(&org).await.map_err(Error::from)?;
    let members = meta.members(&org).await.map_err(Error::from)?;
    let list: Vec<Value> = robots
        .iter()
        .map(|r| {
            let mut v = user_json(r);
            v["role"] = json!(members.iter().find(|m| m.member == r.name).map(|m| m.role));
            v
        })
        .collect();
    Ok(Json(Value::Array(list)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRobotBody {
    name: String,
    #[serde(default = "default_robot_role")]
    role: String,
}

fn default_robot_role() -> String {
    "write".to_owned()
}

async fn handle_create_robot(
    State(app): State<Arc<App>>,
    principal: Principal,
    Path(org): Path<String>,
    JsonBody(body): JsonBody<NewRobotBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let caller = principal.require(&app, &org, Need::Admin).await?;
    let role = parse_role(&body.role)?;
    find_org(&app, &org).await?;
    let name = app
        .auth
        .create_robot(&org, &body.name, role, &caller)
        .await?
        .ok_or_else(|| Error::Conflict(format!("robot {org}+{} exists", body.name)))?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "name": name, "org": org, "role": role })),
    ))
}
