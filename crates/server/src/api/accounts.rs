//! Users, organisations, members and robots under `/api/v1/`.
//!
//! | route | who |
//! | --- | --- |
//! | `GET/POST /users`, `PATCH/DELETE /users/{name}` | site admins |
//! | `GET /users/{name}`, `PUT /users/{name}/password` | the user, site admins |
//! | `GET /orgs` | site admins: all; others: their organisations |
//! | `DELETE /users/{name}/sessions` | the user, site admins |
//! | `POST /orgs` | any signed-in user, who becomes its admin |
//! | `DELETE /orgs/{org}[?delete_repositories=true]`, members and robots | the organisation's admins |
//! | `GET /orgs/{org}/members` | its members |
//!
//! Handlers check who may call (the [`Principal`]) and call one account
//! service of the registry, where the rules of each operation live.
//! Passwords and generated secrets are shown once, in the answer that
//! creates them; the audit log records every change without them.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, put};
use axum::{Json, Router};
use berth_registry::auth::{secret, AccountChange};
use berth_registry::{Caller, Error, Role, User, Visibility};
use serde::Deserialize;
use serde_json::{json, Value};

use super::body::JsonBody;
use super::extract::{Path, Query};
use super::{NamespacePath, Need, PathParams, Principal};
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
        .route("/users/{name}/sessions", delete(handle_revoke_sessions))
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
    principal.require_site_admin(app)
}

async fn handle_list_users(State(app): State<Arc<App>>, principal: Principal) -> Answer {
    principal.require_site_admin(&app)?;
    let users = app.auth.users().await?;
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
    let caller = principal.require_site_admin(&app)?;
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

async fn handle_get_user(
    State(app): State<Arc<App>>,
    principal: Principal,
    Path(name): Path<String>,
) -> Answer {
    require_self_or_site_admin(&app, &principal, &name).await?;
    let user = app.auth.user(&name).await?;
    let memberships = app.auth.memberships(&name).await?;
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
    let caller = principal.require_site_admin(&app)?;
    let change = AccountChange {
        site_admin: body.site_admin,
        disabled: body.disabled,
    };
    let user = app.auth.change_account(&name, change, &caller).await?;
    Ok(Json(user_json(&user)))
}

async fn handle_delete_user(
    State(app): State<Arc<App>>,
    principal: Principal,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let caller = principal.require_site_admin(&app)?;
    app.auth.delete_user(&app.registry, &name, &caller).await?;
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
    app.auth.set_password(&name, password, &caller).await?;
    Ok(Json(match generated {
        Some(p) => json!({ "name": name, "password": p }),
        None => json!({ "name": name }),
    }))
}

async fn handle_revoke_sessions(
    State(app): State<Arc<App>>,
    principal: Principal,
    Path(name): Path<String>,
) -> Answer {
    let caller = require_self_or_site_admin(&app, &principal, &name).await?;
    let ended = app.auth.revoke_sessions(&name, &caller).await?;
    Ok(Json(json!({ "name": name, "sessions_ended": ended })))
}

async fn handle_list_orgs(State(app): State<Arc<App>>, principal: Principal) -> Answer {
    let orgs = app.auth.orgs_for(&principal.identity).await?;
    Ok(Json(json!(orgs)))
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
    let org = app
        .auth
        .found_org(
            &body.name,
            visibility,
            &principal.identity,
            &principal.caller,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(json!(org))))
}

async fn handle_get_org(
    State(app): State<Arc<App>>,
    principal: Principal,
    NamespacePath(org): NamespacePath,
) -> Answer {
    principal.require(&app, &org, Need::Member).await?;
    Ok(Json(json!(app.auth.org(org.as_str()).await?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteOrgParams {
    /// Delete the organisation's repositories too (otherwise an
    /// organisation holding repositories is not deleted).
    #[serde(default)]
    delete_repositories: bool,
}

async fn handle_delete_org(
    State(app): State<Arc<App>>,
    principal: Principal,
    NamespacePath(org): NamespacePath,
    Query(params): Query<DeleteOrgParams>,
) -> Result<StatusCode, ApiError> {
    let caller = principal.require(&app, &org, Need::Admin).await?;
    app.auth
        .delete_org(
            &app.registry,
            org.as_str(),
            params.delete_repositories,
            &caller,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn handle_list_members(
    State(app): State<Arc<App>>,
    principal: Principal,
    NamespacePath(org): NamespacePath,
) -> Answer {
    principal.require(&app, &org, Need::Member).await?;
    Ok(Json(json!(app.auth.members(org.as_str()).await?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleBody {
    role: String,
}

async fn handle_set_member(
    State(app): State<Arc<App>>,
    principal: Principal,
    NamespacePath(org): NamespacePath,
    params: PathParams,
    JsonBody(body): JsonBody<RoleBody>,
) -> Answer {
    let caller = principal.require(&app, &org, Need::Admin).await?;
    let role = parse_role(&body.role)?;
    let member = params.get("member")?;
    app.auth
        .set_member(org.as_str(), member, role, &caller)
        .await?;
    Ok(Json(json!({ "org": org, "member": member, "role": role })))
}

async fn handle_remove_member(
    State(app): State<Arc<App>>,
    principal: Principal,
    NamespacePath(org): NamespacePath,
    params: PathParams,
) -> Result<StatusCode, ApiError> {
    let caller = principal.require(&app, &org, Need::Admin).await?;
    app.auth
        .remove_member(org.as_str(), params.get("member")?, &caller)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn handle_list_robots(
    State(app): State<Arc<App>>,
    principal: Principal,
    NamespacePath(org): NamespacePath,
) -> Answer {
    principal.require(&app, &org, Need::Admin).await?;
    let list: Vec<Value> = app
        .auth
        .robots(org.as_str())
        .await?
        .iter()
        .map(|r| {
            let mut v = user_json(&r.account);
            v["role"] = json!(r.role);
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
    NamespacePath(org): NamespacePath,
    JsonBody(body): JsonBody<NewRobotBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let caller = principal.require(&app, &org, Need::Admin).await?;
    let role = parse_role(&body.role)?;
    app.auth.org(org.as_str()).await?;
    let name = app
        .auth
        .create_robot(org.as_str(), &body.name, role, &caller)
        .await?
        .ok_or_else(|| Error::Conflict(format!("robot {org}+{} exists", body.name)))?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "name": name, "org": org, "role": role })),
    ))
}
