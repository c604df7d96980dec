//! Trust policies for keyless push from CI (OpenID Connect), for site
//! admins:
//!
//! | route | what |
//! | --- | --- |
//! | `GET /oidc/policies` | every policy |
//! | `POST /oidc/policies` `{"name","issuer","audience","claims","repositories","scopes"}` | add one (201) |
//! | `DELETE /oidc/policies/{name}` | remove one (204) |
//!
//! See `docs/ci-oidc.md`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use berth_registry::auth::oidc::OidcPolicy;
use serde::Deserialize;
use serde_json::{json, Value};

use super::body::JsonBody;
use super::{PathParams, Principal};
use crate::error::ApiError;
use crate::App;

pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/oidc/policies", get(handle_list).post(handle_add))
        .route("/oidc/policies/{name}", delete(handle_remove))
}

async fn handle_list(
    State(app): State<Arc<App>>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    principal.require_site_admin(&app)?;
    Ok(Json(json!(app.auth.oidc_policies().await?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddBody {
    name: String,
    issuer: String,
    audience: String,
    #[serde(default)]
    claims: BTreeMap<String, String>,
    repositories: String,
    scopes: Vec<String>,
}

async fn handle_add(
    State(app): State<Arc<App>>,
    principal: Principal,
    JsonBody(b): JsonBody<AddBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let caller = principal.require_site_admin(&app)?;
    let policy = OidcPolicy {
        name: b.name,
        issuer: b.issuer,
        audience: b.audience,
        claims: b.claims,
        repositories: b.repositories,
        scopes: b.scopes,
        created_at: 0,
        created_by: None,
    };
    let added = app.auth.add_oidc_policy(policy, &caller).await?;
    Ok((StatusCode::CREATED, Json(json!(added))))
}

async fn handle_remove(
    State(app): State<Arc<App>>,
    principal: Principal,
    params: PathParams,
) -> Result<StatusCode, ApiError> {
    let caller = principal.require_site_admin(&app)?;
    app.auth
        .remove_oidc_policy(params.get("name")?, &caller)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
