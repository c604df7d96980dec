//! Client certificate identities (mutual TLS) under `/api/v1/`, for site
//! admins:
//!
//! | route | what |
//! | --- | --- |
//! | `GET /certificates` | every mapping |
//! | `PUT /certificates` `{"subject","account"}` | map a subject to a user or robot |
//! | `DELETE /certificates?subject=...` | remove a mapping |
//!
//! The subject is the RFC 4514 distinguished name of the client
//! certificate (`CN=ci,O=acme`), as `openssl x509 -noout -subject -nameopt
//! RFC2253` prints it and as `berth user cert-map add --cert FILE`
//! computes it.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::Value;

use super::body::JsonBody;
use super::extract::Query;
use super::Principal;
use crate::error::ApiError;
use crate::App;

pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new().route(
        "/certificates",
        get(handle_list).put(handle_map).delete(handle_unmap),
    )
}

async fn handle_list(
    State(app): State<Arc<App>>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    principal.require_site_admin(&app)?;
    let all = app.auth.certificate_identities().await?;
    Ok(Json(serde_json::json!(all)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MapBody {
    subject: String,
    account: String,
}

async fn handle_map(
    State(app): State<Arc<App>>,
    principal: Principal,
    JsonBody(body): JsonBody<MapBody>,
) -> Result<Json<Value>, ApiError> {
    let caller = principal.require_site_admin(&app)?;
    let mapped = app
        .auth
        .map_certificate(&body.subject, &body.account, &caller)
        .await?;
    Ok(Json(serde_json::json!(mapped)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UnmapParams {
    subject: String,
}

async fn handle_unmap(
    State(app): State<Arc<App>>,
    principal: Principal,
    Query(p): Query<UnmapParams>,
) -> Result<StatusCode, ApiError> {
    let caller = principal.require_site_admin(&app)?;
    app.auth.unmap_certificate(&p.subject, &caller).await?;
    Ok(StatusCode::NO_CONTENT)
}
