//! Who may pull: `GET/PUT /api/v1/namespaces/{ns}/visibility` and
//! `GET/PUT /api/v1/repositories/{name}/visibility` (routed from
//! [`super::repositories`]).
//!
//! A namespace is `public` (anonymous pull) or `private` (members only);
//! a repository follows its namespace unless it overrides it; a namespace
//! nobody owns is private (`"source": "unowned"`). Reading needs pull
//! access, changing needs the namespace's admin role.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use berth_oci::RepositoryName;
use berth_registry::{Error, Visibility};
use serde::Deserialize;
use serde_json::{json, Value};

use super::body::JsonBody;
use super::{NamespacePath, Need, Principal};
use crate::error::ApiError;
use crate::App;

pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new().route(
        "/namespaces/{ns}/visibility",
        get(handle_get_namespace).put(handle_put_namespace),
    )
}

/// The body of a visibility change.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VisibilityBody {
    /// `public`, `private`, or for a repository `inherit`.
    pub visibility: String,
}

async fn handle_get_namespace(
    State(app): State<Arc<App>>,
    principal: Principal,
    NamespacePath(ns): NamespacePath,
) -> Result<Json<Value>, ApiError> {
    principal.require(&app, &ns, Need::Read).await?;
    let (visibility, source) = app.auth.namespace_visibility(&ns).await?;
    Ok(Json(
        json!({ "namespace": ns, "visibility": visibility, "source": source }),
    ))
}

async fn handle_put_namespace(
    State(app): State<Arc<App>>,
    principal: Principal,
    NamespacePath(ns): NamespacePath,
    JsonBody(body): JsonBody<VisibilityBody>,
) -> Result<Json<Value>, ApiError> {
    let caller = principal.require(&app, &ns, Need::Admin).await?;
    let v = Visibility::parse(&body.visibility).ok_or_else(|| {
        Error::InvalidParameter(format!(
            "visibility {:?}: a namespace is public or private",
            body.visibility
        ))
    })?;
    app.auth.set_namespace_visibility(&ns, v, &caller).await?;
    Ok(Json(
        json!({ "namespace": ns, "visibility": v, "source": "namespace" }),
    ))
}

/// `GET /repositories/{name}/visibility`.
pub(crate) async fn get_repository(
    app: &App,
    principal: &Principal,
    name: &RepositoryName,
) -> Result<Value, ApiError> {
    principal.require(app, name, Need::Read).await?;
    let (visibility, source) = app.auth.repository_visibility(name).await?;
    Ok(json!({ "repository": name, "visibility": visibility, "source": source }))
}

/// `PUT /repositories/{name}/visibility`.
pub(crate) async fn put_repository(
    app: &App,
    principal: &Principal,
    name: &RepositoryName,
    body: VisibilityBody,
) -> Result<Value, ApiError> {
    let caller = principal
        .require(app, &name.namespace(), Need::Admin)
        .await?;
    let v = match body.visibility.as_str() {
        "inherit" => None,
        s => Some(Visibility::parse(s).ok_or_else(|| {
            Error::InvalidParameter(format!("visibility {s:?}: use public, private or inherit"))
        })?),
    };
    app.auth.set_repository_visibility(name, v, &caller).await?;
    get_repository(app, principal, name).await
}
