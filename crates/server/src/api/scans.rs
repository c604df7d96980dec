//! Vulnerability scans through the management API:
//!
//! - `POST /api/v1/scans` `{"repository", "reference", "platform"?}` scans
//!   the manifest now against the vulnerability database (each platform
//!   image of an index, or the one `platform` names), stores the results
//!   with the manifest and answers them;
//! - `GET /api/v1/repositories/{name}/manifests/{digest}/scan` answers the
//!   stored results (404 when the manifest was never scanned).
//!
//! Both need read access to the repository, from a signed-in account when
//! authentication is on (a scan costs the server work).

use std::sync::Arc;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use berth_oci::{Digest, Reference, RepositoryName};
use berth_registry::scanning::ScanReport;
use berth_registry::Error;
use serde::Deserialize;

use super::body::JsonBody;
use super::{Need, Principal};
use crate::error::ApiError;
use crate::App;

pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new().route("/scans", post(handle_scan))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScanRequest {
    repository: String,
    reference: String,
    #[serde(default)]
    platform: Option<String>,
}

async fn allowed(app: &App, principal: &Principal, repo: &RepositoryName) -> Result<(), ApiError> {
    if app.auth.enforced() && principal.account().is_none() {
        return Err(Error::Unauthorized("authentication required to scan".into()).into());
    }
    principal.require(app, repo, Need::Read).await?;
    Ok(())
}

async fn handle_scan(
    State(app): State<Arc<App>>,
    principal: Principal,
    JsonBody(req): JsonBody<ScanRequest>,
) -> Result<Json<ScanReport>, ApiError> {
    let repo =
        RepositoryName::parse(&req.repository).map_err(|e| Error::NameInvalid(e.to_string()))?;
    allowed(&app, &principal, &repo).await?;
    let reference = Reference::parse(&req.reference)
        .map_err(|e| Error::InvalidParameter(format!("reference {:?}: {e}", req.reference)))?;
    let digest = app.registry.resolve_reference(&repo, &reference).await?;
    let report = app
        .registry
        .scan_manifest(&repo, &digest, req.platform.as_deref())
        .await?;
    Ok(Json(report))
}

/// `GET /api/v1/repositories/{name}/manifests/{digest}/scan`, reached
/// through the repositories router (repository names contain slashes).
pub(crate) async fn handle_stored(
    app: &App,
    principal: &Principal,
    repo: &RepositoryName,
    digest: &str,
) -> Result<Json<serde_json::Value>, ApiError> {
    allowed(app, principal, repo).await?;
    let digest = Digest::parse(digest).map_err(|e| Error::DigestInvalid(e.to_string()))?;
    match app.registry.stored_scan(repo, &digest).await? {
        Some(report) => {
            Ok(Json(serde_json::to_value(report).map_err(|e| {
                Error::Internal(format!("encoding a scan: {e}"))
            })?))
        }
        None => Err(Error::NotFound(format!(
            "{repo}@{digest} has not been scanned: POST /api/v1/scans (berth scan) scans it"
        ))
        .into()),
    }
}
