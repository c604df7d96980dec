//! Signature trust of a namespace (see `docs/signing.md`):
//!
//! | route | who | what |
//! | --- | --- | --- |
//! | `GET /trust` | site admins | every namespace with keys or a policy |
//! | `GET /namespaces/{ns}/trust` | members | its policy and trusted keys |
//! | `POST /namespaces/{ns}/trust/keys` `{"cosign_key": PEM, "name"?}` or `{"notation_root": PEM, "name"?}` | namespace admins | trust a cosign public key, or a root certificate for notation signatures (201) |
//! | `DELETE /namespaces/{ns}/trust/keys/{name}` | namespace admins | stop trusting it (204) |
//! | `PUT /namespaces/{ns}/trust/policy` `{"mode": "enforce"\|"warn"\|"off"}` | namespace admins | set the pull policy |
//!
//! A manifest's verdict is a repository view:
//! `GET /repositories/{name}/signature?reference=TAG|DIGEST`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, put};
use axum::{Json, Router};
use berth_registry::trust::{Material, Mode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::body::JsonBody;
use super::{NamespacePath, Need, PathParams, Principal};
use crate::error::ApiError;
use crate::App;

pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/trust", get(handle_all))
        .route("/namespaces/{ns}/trust", get(handle_get))
        .route(
            "/namespaces/{ns}/trust/keys",
            axum::routing::post(handle_add),
        )
        .route("/namespaces/{ns}/trust/keys/{name}", delete(handle_remove))
        .route("/namespaces/{ns}/trust/policy", put(handle_policy))
}

async fn handle_all(
    State(app): State<Arc<App>>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    principal.require_site_admin(&app)?;
    Ok(Json(
        json!({ "namespaces": app.registry.all_trust(None).await? }),
    ))
}

async fn handle_get(
    State(app): State<Arc<App>>,
    NamespacePath(ns): NamespacePath,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    principal.require(&app, &ns, Need::Member).await?;
    Ok(Json(json!(app.registry.namespace_trust(&ns).await?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddBody {
    cosign_key: Option<String>,
    notation_root: Option<String>,
    name: Option<String>,
}

async fn handle_add(
    State(app): State<Arc<App>>,
    NamespacePath(ns): NamespacePath,
    principal: Principal,
    JsonBody(b): JsonBody<AddBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let caller = principal.require(&app, &ns, Need::Admin).await?;
    let material = match (&b.cosign_key, &b.notation_root) {
        (Some(pem), None) => Material::CosignKey(pem),
        (None, Some(pem)) => Material::NotationRoot(pem),
        _ => {
            return Err(berth_registry::Error::InvalidParameter(
                "give exactly one of cosign_key (a cosign public key, PEM) and notation_root (a root CA certificate, PEM)".into(),
            )
            .into())
        }
    };
    let key = app
        .registry
        .add_trust_key(&ns, b.name.as_deref(), material, &caller)
        .await?;
    Ok((StatusCode::CREATED, Json(json!(key))))
}

async fn handle_remove(
    State(app): State<Arc<App>>,
    NamespacePath(ns): NamespacePath,
    params: PathParams,
    principal: Principal,
) -> Result<StatusCode, ApiError> {
    let caller = principal.require(&app, &ns, Need::Admin).await?;
    app.registry
        .remove_trust_key(&ns, params.get("name")?, &caller)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyBody {
    mode: String,
}

async fn handle_policy(
    State(app): State<Arc<App>>,
    NamespacePath(ns): NamespacePath,
    principal: Principal,
    JsonBody(b): JsonBody<PolicyBody>,
) -> Result<Json<Value>, ApiError> {
    let caller = principal.require(&app, &ns, Need::Admin).await?;
    let mode = Mode::parse(&b.mode)?;
    app.registry
        .set_signature_policy(&ns, mode, &caller)
        .await?;
    Ok(Json(json!(app.registry.namespace_trust(&ns).await?)))
}
