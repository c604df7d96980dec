//! Garbage collection on demand: `POST /api/v1/gc` runs it (or, with
//! `dry_run`, reports what it would remove and what the grace period
//! holds) and answers the report; `GET /api/v1/gc` is the schedule (the
//! interval, the last run and when the next is due); `GET /api/v1/gc/runs`
//! is the history of runs. Site admins only.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use berth_registry::{Error, GcReport, GcSchedule, GC_JOB};
use serde::Deserialize;

use super::extract::Query;
use super::Principal;
use crate::error::ApiError;
use crate::App;

pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/gc", post(handle_run).get(handle_schedule))
        .route("/gc/runs", get(handle_runs))
}

/// Body of `POST /api/v1/gc` (optional; the default is a real run).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunRequest {
    #[serde(default)]
    dry_run: bool,
}

async fn handle_run(
    State(app): State<Arc<App>>,
    principal: Principal,
    body: axum::body::Bytes,
) -> Result<Json<GcReport>, ApiError> {
    let caller = principal.require_site_admin(&app)?;
    let req: RunRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RunRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| Error::InvalidParameter(format!("request body: {e}")))?
    };
    let report = app
        .registry
        .run_gc(berth_registry::now_ms(), req.dry_run, &caller)
        .await?;
    Ok(Json(report))
}

async fn handle_schedule(
    State(app): State<Arc<App>>,
    principal: Principal,
) -> Result<Json<GcSchedule>, ApiError> {
    principal.require_site_admin(&app)?;
    let schedule = app.registry.gc_schedule(berth_registry::now_ms()).await?;
    Ok(Json(schedule))
}

#[derive(Debug, Deserialize)]
struct RunsQuery {
    limit: Option<i64>,
}

async fn handle_runs(
    State(app): State<Arc<App>>,
    principal: Principal,
    Query(q): Query<RunsQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    principal.require_site_admin(&app)?;
    let runs = app.registry.job_runs(GC_JOB, q.limit.unwrap_or(20)).await?;
    Ok(Json(serde_json::json!({ "runs": runs })))
}
