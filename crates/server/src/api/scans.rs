//! Vulnerability scans through the management API:
//!
//! - `POST /api/v1/scans` `{"repository", "reference", "platform"?}` scans
//!   the manifest now against the vulnerability database (each platform
//!   image of an index, or the one `platform` names), stores the results
//!   with the manifest and answers them;
//! - `GET /api/v1/repositories/{name}/manifests/{digest}/scan` answers the
//!   stored results (404 when the manifest was never scanned).
//!
//! - `GET /api/v1/namespaces/{ns}/scan-policy` (members) and `PUT` (its
//!   admins; `{"scan_on_push": true, "block_severity": "high",
//!   "unscanned": "deny"}`, each field optional) read and set whether
//!   pushes to the namespace are scanned and which pulls its policy
//!   refuses; `GET /api/v1/scan-policies` (site admins) lists the
//!   namespaces that set one.
//! - `GET /api/v1/namespaces/{ns}/scan-allowances` (members) lists the
//!   advisory ids that do not count against the policy; `PUT
//!   .../scan-allowances/{advisory}` (its admins; `{"reason": "...",
//!   "expires": "2027-01-31"}`) grants or replaces one, `DELETE` removes
//!   it.
//!
//! Who may do what: a scan costs the server work, so requesting one needs
//! push permission on the repository (its writers, the namespace's admins,
//! site admins; never an anonymous caller when authentication is on);
//! reading a stored result needs pull permission, as pulling the image
//! does. Refusals name the repository and say what to do instead.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use berth_oci::{Digest, Reference, RepositoryName};
use berth_registry::scanning::gate::parse_block_severity;
use berth_registry::scanning::{
    parse_expiry, AllowanceView, PolicyChange, PolicyView, ScanReport, Unscanned,
};
use berth_registry::Error;
use serde::Deserialize;

use super::body::JsonBody;
use super::{NamespacePath, Need, PathParams, Principal};
use crate::error::ApiError;
use crate::App;

pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/scans", post(handle_scan))
        .route("/scan-policies", get(handle_policies))
        .route(
            "/namespaces/{ns}/scan-policy",
            get(handle_policy).put(handle_set_policy),
        )
        .route("/namespaces/{ns}/scan-allowances", get(handle_allowances))
        .route(
            "/namespaces/{ns}/scan-allowances/{advisory}",
            put(handle_allow).delete(handle_disallow),
        )
}

async fn handle_policies(
    State(app): State<Arc<App>>,
    principal: Principal,
) -> Result<Json<serde_json::Value>, ApiError> {
    principal.require_site_admin(&app)?;
    Ok(Json(
        serde_json::json!({ "policies": app.registry.scan_policies().await? }),
    ))
}

async fn handle_policy(
    State(app): State<Arc<App>>,
    NamespacePath(ns): NamespacePath,
    principal: Principal,
) -> Result<Json<PolicyView>, ApiError> {
    principal.require(&app, &ns, Need::Member).await?;
    Ok(Json(app.registry.scan_policy(&ns).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyBody {
    #[serde(default)]
    scan_on_push: Option<bool>,
    /// `critical`, `high`, `medium`, `low`, or `none`.
    #[serde(default)]
    block_severity: Option<String>,
    /// `allow` or `deny`.
    #[serde(default)]
    unscanned: Option<String>,
}

async fn handle_set_policy(
    State(app): State<Arc<App>>,
    NamespacePath(ns): NamespacePath,
    principal: Principal,
    JsonBody(b): JsonBody<PolicyBody>,
) -> Result<Json<PolicyView>, ApiError> {
    let caller = principal.require(&app, &ns, Need::Admin).await?;
    let change = PolicyChange {
        scan_on_push: b.scan_on_push,
        block_severity: b
            .block_severity
            .as_deref()
            .map(parse_block_severity)
            .transpose()?,
        unscanned: b.unscanned.as_deref().map(Unscanned::parse).transpose()?,
    };
    Ok(Json(
        app.registry.set_scan_policy(&ns, change, &caller).await?,
    ))
}

async fn handle_allowances(
    State(app): State<Arc<App>>,
    NamespacePath(ns): NamespacePath,
    principal: Principal,
) -> Result<Json<serde_json::Value>, ApiError> {
    principal.require(&app, &ns, Need::Member).await?;
    Ok(Json(
        serde_json::json!({ "allowances": app.registry.scan_allowances(&ns).await? }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AllowanceBody {
    reason: String,
    /// A date (`2027-01-31`: through that day, UTC) or an RFC 3339 time.
    #[serde(default)]
    expires: Option<String>,
}

async fn handle_allow(
    State(app): State<Arc<App>>,
    NamespacePath(ns): NamespacePath,
    params: PathParams,
    principal: Principal,
    JsonBody(b): JsonBody<AllowanceBody>,
) -> Result<Json<AllowanceView>, ApiError> {
    let caller = principal.require(&app, &ns, Need::Admin).await?;
    let expires_at = b.expires.as_deref().map(parse_expiry).transpose()?;
    Ok(Json(
        app.registry
            .set_scan_allowance(&ns, params.get("advisory")?, &b.reason, expires_at, &caller)
            .await?,
    ))
}

async fn handle_disallow(
    State(app): State<Arc<App>>,
    NamespacePath(ns): NamespacePath,
    params: PathParams,
    principal: Principal,
) -> Result<StatusCode, ApiError> {
    let caller = principal.require(&app, &ns, Need::Admin).await?;
    app.registry
        .remove_scan_allowance(&ns, params.get("advisory")?, &caller)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScanRequest {
    repository: String,
    reference: String,
    #[serde(default)]
    platform: Option<String>,
}

/// Checks that `principal` may have `repo` scanned now (push permission).
async fn may_scan(app: &App, principal: &Principal, repo: &RepositoryName) -> Result<(), ApiError> {
    match principal.require(app, repo, Need::Write).await {
        Ok(_) => Ok(()),
        Err(e) => Err(match e.error() {
            Error::Unauthorized(_) => Error::Unauthorized(format!(
                "scanning {repo} needs push permission on it: sign in (berth login) as an \
                 account that may push to {repo}, an admin of its namespace or a site admin"
            ))
            .into(),
            Error::Denied(_) => Error::Denied(format!(
                "scanning {repo} needs push permission on it (its writers, the namespace's \
                 admins, site admins); with pull permission, read the stored result instead: \
                 GET /api/v1/repositories/{repo}/manifests/REFERENCE/scan (berth scan --stored)"
            ))
            .into(),
            _ => e,
        }),
    }
}

/// Checks that `principal` may read `repo`'s stored scans (pull permission).
async fn may_read(app: &App, principal: &Principal, repo: &RepositoryName) -> Result<(), ApiError> {
    match principal.require(app, repo, Need::Read).await {
        Ok(_) => Ok(()),
        Err(e) => Err(match e.error() {
            Error::Unauthorized(_) => Error::Unauthorized(format!(
                "reading the scans of {repo} needs pull permission on it: sign in (berth login)"
            ))
            .into(),
            Error::Denied(_) => Error::Denied(format!(
                "reading the scans of {repo} needs pull permission on it"
            ))
            .into(),
            _ => e,
        }),
    }
}

async fn handle_scan(
    State(app): State<Arc<App>>,
    principal: Principal,
    JsonBody(req): JsonBody<ScanRequest>,
) -> Result<Json<ScanReport>, ApiError> {
    let repo =
        RepositoryName::parse(&req.repository).map_err(|e| Error::NameInvalid(e.to_string()))?;
    may_scan(&app, &principal, &repo).await?;
    let reference = Reference::parse(&req.reference)
        .map_err(|e| Error::InvalidParameter(format!("reference {:?}: {e}", req.reference)))?;
    let digest = app.registry.resolve_reference(&repo, &reference).await?;
    let report = app
        .registry
        .scan_manifest(&repo, &digest, req.platform.as_deref())
        .await?;
    Ok(Json(report))
}

/// `GET /api/v1/repositories/{name}/manifests/{reference}/scan` (a digest
/// or a tag), reached through the repositories router (repository names
/// contain slashes).
pub(crate) async fn handle_stored(
    app: &App,
    principal: &Principal,
    repo: &RepositoryName,
    reference: &str,
) -> Result<Json<serde_json::Value>, ApiError> {
    may_read(app, principal, repo).await?;
    let digest = match Digest::parse(reference) {
        Ok(d) => d,
        Err(_) => {
            let r = Reference::parse(reference)
                .map_err(|e| Error::InvalidParameter(format!("reference {reference:?}: {e}")))?;
            app.registry.resolve_reference(repo, &r).await?
        }
    };
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
