//! The offline vulnerability database: `POST /api/v1/vulndb/imports`
//! stores one batch of OSV records of an import run (site admins; the
//! body is `{"import", "source", "records": [...]}`, at most
//! [`MAX_IMPORT_BODY`] bytes), `GET /api/v1/vulndb` says what is loaded
//! per ecosystem, how old it is, and the latest imports (any signed-in
//! account), `GET /api/v1/vulndb/records?after=ID&limit=N` pages through
//! the stored records as OSV JSON, withdrawn ones included (site admins;
//! `berth vulndb push` without PATHs packs them).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use berth_registry::vulndb::{ImportReport, ImportRequest, VulndbStatus};
use berth_registry::Error;

use super::extract::Query;
use super::Principal;
use crate::error::ApiError;
use crate::App;

/// Largest import batch body (OSV records are a few KiB each; the CLI
/// sends batches well below this).
pub const MAX_IMPORT_BODY: usize = 32 << 20;

pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/vulndb", get(handle_status))
        .route("/vulndb/imports", post(handle_import))
        .route("/vulndb/records", get(handle_records))
}

async fn handle_import(
    State(app): State<Arc<App>>,
    principal: Principal,
    request: Request,
) -> Result<Json<ImportReport>, ApiError> {
    let caller = principal.require_site_admin(&app)?;
    let bytes = axum::body::to_bytes(request.into_body(), MAX_IMPORT_BODY)
        .await
        .map_err(|_| {
            Error::InvalidParameter(format!(
                "request body is unreadable or over {MAX_IMPORT_BODY} bytes: send smaller batches"
            ))
        })?;
    let req: ImportRequest = serde_json::from_slice(&bytes)
        .map_err(|e| Error::InvalidParameter(format!("invalid import batch: {e}")))?;
    Ok(Json(app.registry.import_advisories(&caller, req).await?))
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordsParams {
    #[serde(default)]
    after: String,
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_limit() -> usize {
    1000
}

async fn handle_records(
    State(app): State<Arc<App>>,
    principal: Principal,
    Query(p): Query<RecordsParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    principal.require_site_admin(&app)?;
    let (records, next) = app.registry.export_advisories(&p.after, p.limit).await?;
    Ok(Json(
        serde_json::json!({ "records": records, "next": next }),
    ))
}

async fn handle_status(
    State(app): State<Arc<App>>,
    principal: Principal,
) -> Result<Json<VulndbStatus>, ApiError> {
    if app.auth.enforced() && principal.account().is_none() {
        return Err(Error::Unauthorized(
            "authentication required to read the vulnerability database status".into(),
        )
        .into());
    }
    Ok(Json(app.registry.vulndb_status().await?))
}
