//! Retention policies of a namespace: `/api/v1/namespaces/{ns}/retention`.
//!
//! - `GET` the stored policy (its TOML text, schedule, next run);
//! - `PUT` a policy (the request body is the TOML text; an invalid policy
//!   is a 400 naming the line and column) and `DELETE` it (namespace
//!   admin);
//! - `GET .../retention/plan` what the stored policy would delete now, or
//!   `POST .../retention/plan` with a TOML body to try a policy before
//!   setting it;
//! - `POST .../retention/apply` runs it (namespace admin);
//! - `GET .../retention/runs` the history of runs.
//!
//! `plan` and `apply` take `?now=<Unix ms>` to evaluate at another time
//! (previews, tests); the default is the current time.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use berth_registry::retention::{job_name, Applied, Plan};
use berth_registry::Error;
use serde::Deserialize;

use super::extract::Query;
use super::{NamespacePath, Need, Principal};
use crate::error::ApiError;
use crate::App;

pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route(
            "/namespaces/{ns}/retention",
            get(handle_get).put(handle_set).delete(handle_delete),
        )
        .route(
            "/namespaces/{ns}/retention/plan",
            get(handle_plan).post(handle_try),
        )
        .route("/namespaces/{ns}/retention/apply", post(handle_apply))
        .route("/namespaces/{ns}/retention/runs", get(handle_runs))
}

#[derive(Debug, Deserialize)]
struct At {
    now: Option<i64>,
    limit: Option<i64>,
}

impl At {
    fn now(&self) -> i64 {
        self.now.unwrap_or_else(berth_registry::now_ms)
    }
}

fn text(body: &Bytes) -> Result<&str, ApiError> {
    std::str::from_utf8(body)
        .map_err(|_| Error::InvalidParameter("the policy must be UTF-8 TOML text".into()).into())
}

/// The schedule of a policy and its next run after `now`.
fn schedule(policy: &berth_registry::retention::Policy, now: i64) -> serde_json::Value {
    match &policy.schedule {
        Some(s) => serde_json::json!({ "schedule": s.to_string(), "next_run": s.next_after(now) }),
        None => serde_json::json!({ "schedule": null, "next_run": null }),
    }
}

async fn handle_get(
    State(app): State<Arc<App>>,
    NamespacePath(ns): NamespacePath,
    principal: Principal,
) -> Result<Json<serde_json::Value>, ApiError> {
    principal.require(&app, &ns, Need::Member).await?;
    let stored = app
        .registry
        .retention_policy(&ns)
        .await?
        .ok_or_else(|| Error::NotFound(format!("namespace {ns} has no retention policy")))?;
    let mut out = serde_json::to_value(&stored).map_err(|e| Error::Internal(e.to_string()))?;
    if let Ok(p) = berth_registry::retention::Policy::parse(&stored.policy, &ns) {
        if let (Some(o), serde_json::Value::Object(s)) =
            (out.as_object_mut(), schedule(&p, berth_registry::now_ms()))
        {
            o.extend(s);
        }
    }
    Ok(Json(out))
}

async fn handle_set(
    State(app): State<Arc<App>>,
    NamespacePath(ns): NamespacePath,
    principal: Principal,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let caller = principal.require(&app, &ns, Need::Admin).await?;
    let policy = app
        .registry
        .set_retention_policy(&ns, text(&body)?, &caller)
        .await?;
    let mut out = serde_json::json!({ "namespace": ns, "rules": policy.rules.len() });
    if let (Some(o), serde_json::Value::Object(s)) = (
        out.as_object_mut(),
        schedule(&policy, berth_registry::now_ms()),
    ) {
        o.extend(s);
    }
    Ok(Json(out))
}

async fn handle_delete(
    State(app): State<Arc<App>>,
    NamespacePath(ns): NamespacePath,
    principal: Principal,
) -> Result<Response, ApiError> {
    let caller = principal.require(&app, &ns, Need::Admin).await?;
    app.registry.delete_retention_policy(&ns, &caller).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn handle_plan(
    State(app): State<Arc<App>>,
    NamespacePath(ns): NamespacePath,
    principal: Principal,
    Query(at): Query<At>,
) -> Result<Json<Plan>, ApiError> {
    principal.require(&app, &ns, Need::Member).await?;
    Ok(Json(
        app.registry.retention_plan(&ns, at.now(), None).await?,
    ))
}

async fn handle_try(
    State(app): State<Arc<App>>,
    NamespacePath(ns): NamespacePath,
    principal: Principal,
    Query(at): Query<At>,
    body: Bytes,
) -> Result<Json<Plan>, ApiError> {
    principal.require(&app, &ns, Need::Member).await?;
    let plan = app
        .registry
        .retention_plan(&ns, at.now(), Some(text(&body)?))
        .await?;
    Ok(Json(plan))
}

async fn handle_apply(
    State(app): State<Arc<App>>,
    NamespacePath(ns): NamespacePath,
    principal: Principal,
    Query(at): Query<At>,
) -> Result<Json<Applied>, ApiError> {
    let caller = principal.require(&app, &ns, Need::Admin).await?;
    Ok(Json(
        app.registry.apply_retention(&ns, at.now(), &caller).await?,
    ))
}

async fn handle_runs(
    State(app): State<Arc<App>>,
    NamespacePath(ns): NamespacePath,
    principal: Principal,
    Query(at): Query<At>,
) -> Result<Json<serde_json::Value>, ApiError> {
    principal.require(&app, &ns, Need::Member).await?;
    let runs = app
        .registry
        .job_runs(&job_name(&ns), at.limit.unwrap_or(20))
        .await?;
    Ok(Json(serde_json::json!({ "namespace": ns, "runs": runs })))
}
