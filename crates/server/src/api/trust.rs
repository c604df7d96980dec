//! Signature trust of a namespace (see `docs/signing.md`):
//!
//! | route | who | what |
//! | --- | --- | --- |
//! | `GET /trust` | site admins | every namespace with keys or a policy |
//! | `GET /namespaces/{ns}/trust` | members | its policy and trusted keys |
//! | `POST /namespaces/{ns}/trust/keys` `{"cosign_key": PEM, "name"?}`, `{"notation_root": PEM, "name"?}` or `{"fulcio_root": PEM, "certificate_identity"` or `"certificate_identity_regexp", "certificate_oidc_issuer", "rekor_key": PEM, "name"?}` | namespace admins | trust a cosign public key, a root certificate for notation signatures, or keyless signatures by an identity (201) |
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
use berth_registry::trust::{FulcioConfig, Material, Mode};
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
    fulcio_root: Option<String>,
    certificate_identity: Option<String>,
    certificate_identity_regexp: Option<String>,
    certificate_oidc_issuer: Option<String>,
    rekor_key: Option<String>,
    name: Option<String>,
}

async fn handle_add(
    State(app): State<Arc<App>>,
    NamespacePath(ns): NamespacePath,
    principal: Principal,
    JsonBody(mut b): JsonBody<AddBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let caller = principal.require(&app, &ns, Need::Admin).await?;
    let keyless = b.fulcio_root.take().map(|roots| FulcioConfig {
        fulcio_roots: roots,
        certificate_identity: b.certificate_identity.take(),
        certificate_identity_regexp: b.certificate_identity_regexp.take(),
        certificate_oidc_issuer: b.certificate_oidc_issuer.take().unwrap_or_default(),
        rekor_keys: b.rekor_key.take().unwrap_or_default(),
    });
    let keyless_only = b.certificate_identity.is_some()
        || b.certificate_identity_regexp.is_some()
        || b.certificate_oidc_issuer.is_some()
        || b.rekor_key.is_some();
    let material = match (&b.cosign_key, &b.notation_root, &keyless) {
        (Some(pem), None, None) if !keyless_only => Material::CosignKey(pem),
        (None, Some(pem), None) if !keyless_only => Material::NotationRoot(pem),
        (None, None, Some(config)) => Material::Fulcio(config),
        _ => {
            return Err(berth_registry::Error::InvalidParameter(
                "give exactly one of cosign_key (a cosign public key, PEM), notation_root (a root CA certificate, PEM) \
                 and fulcio_root (Fulcio root certificates, PEM, with certificate_identity or certificate_identity_regexp, \
                 certificate_oidc_issuer and rekor_key)".into(),
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
