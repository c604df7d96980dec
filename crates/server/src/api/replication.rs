//! Replication rules (site admins): `/api/v1/replication/rules`.
//!
//! - `GET` lists the rules with their last run; `POST {"name",
//!   "direction": "push"|"pull", "url", "username"?, "password"?,
//!   "repositories"?, "tags"?, "on_push"?, "schedule"?, "description"?,
//!   "replicate_deletions"?}`
//!   makes one (201). The password is never answered (`has_password`);
//! - `GET|DELETE /replication/rules/{name}`: one rule;
//! - `POST /replication/rules/{name}/run`: asks for a full pass now (202;
//!   the replication worker starts it within seconds);
//! - `GET /replication/rules/{name}/history?limit=`: its runs, newest
//!   first (trigger, images copied, up to date, failures, the error).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use berth_registry::replication::RuleSpec;
use serde::Deserialize;
use serde_json::{json, Value};

use super::body::JsonBody;
use super::extract::Query;
use super::{PathParams, Principal};
use crate::error::ApiError;
use crate::App;

pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/replication/rules", get(handle_list).post(handle_add))
        .route(
            "/replication/rules/{name}",
            get(handle_get).delete(handle_remove),
        )
        .route("/replication/rules/{name}/run", post(handle_run))
        .route("/replication/rules/{name}/history", get(handle_history))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRule {
    name: String,
    direction: String,
    url: String,
    username: Option<String>,
    password: Option<String>,
    repositories: Option<String>,
    tags: Option<String>,
    on_push: Option<bool>,
    schedule: Option<String>,
    description: Option<String>,
    replicate_deletions: Option<bool>,
}

async fn handle_list(
    State(app): State<Arc<App>>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    principal.require_site_admin(&app)?;
    let rules = app.registry.replication_rules().await?;
    Ok(Json(json!({ "rules": rules })))
}

async fn handle_add(
    State(app): State<Arc<App>>,
    principal: Principal,
    JsonBody(body): JsonBody<NewRule>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let caller = principal.require_site_admin(&app)?;
    let spec = RuleSpec {
        name: body.name,
        direction: body.direction,
        url: body.url,
        username: body.username,
        password: body.password,
        repositories: body.repositories,
        tags: body.tags,
        on_push: body.on_push,
        schedule: body.schedule,
        description: body.description,
        replicate_deletions: body.replicate_deletions.unwrap_or(false),
    };
    let rule = app.registry.add_replication_rule(spec, &caller).await?;
    Ok((StatusCode::CREATED, Json(json!(rule))))
}

async fn handle_get(
    State(app): State<Arc<App>>,
    params: PathParams,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    principal.require_site_admin(&app)?;
    let rule = app.registry.replication_rule(params.get("name")?).await?;
    Ok(Json(json!(rule)))
}

async fn handle_remove(
    State(app): State<Arc<App>>,
    params: PathParams,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    let caller = principal.require_site_admin(&app)?;
    let rule = app
        .registry
        .remove_replication_rule(params.get("name")?, &caller)
        .await?;
    Ok(Json(json!({ "removed": rule })))
}

async fn handle_run(
    State(app): State<Arc<App>>,
    params: PathParams,
    principal: Principal,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    principal.require_site_admin(&app)?;
    let rule = app
        .registry
        .request_replication_run(params.get("name")?, berth_registry::now_ms())
        .await?;
    Ok((StatusCode::ACCEPTED, Json(json!(rule))))
}

#[derive(Deserialize)]
struct Page {
    limit: Option<i64>,
}

async fn handle_history(
    State(app): State<Arc<App>>,
    params: PathParams,
    Query(page): Query<Page>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    principal.require_site_admin(&app)?;
    let name = params.get("name")?;
    let runs = app
        .registry
        .replication_history(name, page.limit.unwrap_or(20))
        .await?;
    Ok(Json(json!({ "rule": name, "runs": runs })))
}
