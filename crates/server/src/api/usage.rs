//! Storage usage and quotas of a namespace:
//!
//! - `GET /api/v1/namespaces/{ns}/usage`: totals, each repository's unique
//!   and shared bytes, and the quota (its members: public visibility does
//!   not open a namespace's views);
//! - `GET /api/v1/namespaces/{ns}/quota`: the quota and its use (404 when
//!   none is set);
//! - `PUT /api/v1/namespaces/{ns}/quota` with `{"limit_bytes": N}` and
//!   `DELETE` (site admin: a namespace admin must not raise their own).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use berth_registry::{Error, NamespaceUsage, QuotaView};
use serde::Deserialize;

use super::body::JsonBody;
use super::{NamespacePath, Need, Principal};
use crate::error::ApiError;
use crate::App;

pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/namespaces/{ns}/usage", get(handle_usage))
        .route(
            "/namespaces/{ns}/quota",
            get(handle_get_quota)
                .put(handle_set_quota)
                .delete(handle_remove_quota),
        )
}

async fn handle_usage(
    State(app): State<Arc<App>>,
    NamespacePath(ns): NamespacePath,
    principal: Principal,
) -> Result<Json<NamespaceUsage>, ApiError> {
    principal.require(&app, &ns, Need::Member).await?;
    Ok(Json(app.registry.namespace_usage(&ns).await?))
}

async fn handle_get_quota(
    State(app): State<Arc<App>>,
    NamespacePath(ns): NamespacePath,
    principal: Principal,
) -> Result<Json<QuotaView>, ApiError> {
    principal.require(&app, &ns, Need::Member).await?;
    let quota = app.registry.quota(&ns).await?;
    Ok(Json(quota.ok_or_else(|| {
        Error::NotFound(format!("namespace {ns} has no quota"))
    })?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetQuota {
    limit_bytes: u64,
}

async fn handle_set_quota(
    State(app): State<Arc<App>>,
    NamespacePath(ns): NamespacePath,
    principal: Principal,
    JsonBody(body): JsonBody<SetQuota>,
) -> Result<Json<QuotaView>, ApiError> {
    let caller = principal.require_site_admin(&app)?;
    Ok(Json(
        app.registry
            .set_quota(&ns, body.limit_bytes, &caller)
            .await?,
    ))
}

async fn handle_remove_quota(
    State(app): State<Arc<App>>,
    NamespacePath(ns): NamespacePath,
    principal: Principal,
) -> Result<StatusCode, ApiError> {
    let caller = principal.require_site_admin(&app)?;
    app.registry.remove_quota(&ns, &caller).await?;
    Ok(StatusCode::NO_CONTENT)
}
