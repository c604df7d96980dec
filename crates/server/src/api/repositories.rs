//! Per-repository views: `/api/v1/repositories/{name}/tags` and
//! `/api/v1/repositories/{name}/manifests` (sizes, push times, pull
//! statistics), `/api/v1/repositories/{name}/usage` (unique and shared
//! bytes within the namespace), `/api/v1/repositories/{name}/manifests/{digest}/scan`
//! (the stored vulnerability scan, see `scans`). Repository names contain slashes, so the path after
//! `/repositories/` is parsed here: the last segment names the view.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use berth_oci::RepositoryName;
use berth_registry::Error;

use super::body::JsonBody;
use super::extract::{Path, Query};
use super::visibility::{self, VisibilityBody};
use super::{Need, Principal};
use crate::error::ApiError;
use crate::App;

pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new().route("/repositories/{*path}", get(handle_get).put(handle_put))
}

/// Splits `acme/web/tags` into (`acme/web`, `tags`), the name validated.
fn split(path: &str) -> Result<(RepositoryName, &str), ApiError> {
    let (name, view) = path
        .trim_end_matches('/')
        .rsplit_once('/')
        .ok_or_else(|| Error::NotFound(format!("no such endpoint: /repositories/{path}")))?;
    let name = RepositoryName::parse(name).map_err(|e| Error::NameInvalid(e.to_string()))?;
    Ok((name, view))
}

async fn handle_get(
    State(app): State<Arc<App>>,
    Path(path): Path<String>,
    Query(query): Query<std::collections::HashMap<String, String>>,
    principal: Principal,
) -> Result<Json<serde_json::Value>, ApiError> {
    if let Some((name, digest)) = path
        .strip_suffix("/scan")
        .and_then(|p| p.rsplit_once("/manifests/"))
    {
        let name = RepositoryName::parse(name).map_err(|e| Error::NameInvalid(e.to_string()))?;
        return super::scans::handle_stored(&app, &principal, &name, digest).await;
    }
    let (name, view) = split(&path)?;
    if view == "visibility" {
        return Ok(Json(
            visibility::get_repository(&app, &principal, &name).await?,
        ));
    }
    principal.require(&app, &name, Need::Read).await?;
    let reg = &app.registry;
    let body = match view {
        "tags" => {
            serde_json::json!({ "repository": name, "tags": reg.repository_tags(&name).await? })
        }
        "manifests" => serde_json::json!({
            "repository": name,
            "manifests": reg.repository_manifests(&name).await?,
        }),
        "usage" => serde_json::to_value(reg.repository_usage(&name).await?)
            .map_err(|e| Error::Internal(format!("encoding usage: {e}")))?,
        "signature" => {
            let reference = query.get("reference").ok_or_else(|| {
                Error::InvalidParameter("give the manifest as ?reference=TAG or DIGEST".into())
            })?;
            let reference = berth_oci::Reference::parse(reference)
                .map_err(|e| Error::InvalidParameter(format!("reference {reference:?}: {e}")))?;
            serde_json::to_value(reg.signature_verdict(&name, &reference).await?)
                .map_err(|e| Error::Internal(format!("encoding a verdict: {e}")))?
        }
        "scan-summary" => {
            let reference = query.get("reference").ok_or_else(|| {
                Error::InvalidParameter("give the manifest as ?reference=TAG or DIGEST".into())
            })?;
            let reference = berth_oci::Reference::parse(reference)
                .map_err(|e| Error::InvalidParameter(format!("reference {reference:?}: {e}")))?;
            serde_json::to_value(reg.scan_summary(&name, &reference).await?)
                .map_err(|e| Error::Internal(format!("encoding a scan summary: {e}")))?
        }
        other => {
            return Err(Error::NotFound(format!(
                "no view {other:?} of a repository (tags, manifests, usage, signature, \
                 scan-summary, visibility)"
            ))
            .into())
        }
    };
    Ok(Json(body))
}

async fn handle_put(
    State(app): State<Arc<App>>,
    Path(path): Path<String>,
    principal: Principal,
    JsonBody(body): JsonBody<VisibilityBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    match split(&path)? {
        (name, "visibility") => Ok(Json(
            visibility::put_repository(&app, &principal, &name, body).await?,
        )),
        (_, other) => Err(Error::NotFound(format!(
            "no settable view {other:?} of a repository (visibility)"
        ))
        .into()),
    }
}
