//! The integrity scrub on demand: `POST /api/v1/scrub` runs it (resuming
//! a pass cut short; `max_blobs` stops it early) and answers the report:
//! every missing or corrupt blob with the images and tags it breaks and
//! whether it was repaired. Site admins only.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use berth_registry::{Error, ScrubReport};
use serde::Deserialize;

use super::Principal;
use crate::error::ApiError;
use crate::App;

pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new().route("/scrub", post(handle_run))
}

/// Body of `POST /api/v1/scrub` (optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunRequest {
    #[serde(default)]
    max_blobs: Option<u64>,
}

async fn handle_run(
    State(app): State<Arc<App>>,
    principal: Principal,
    body: axum::body::Bytes,
) -> Result<Json<ScrubReport>, ApiError> {
    let caller = principal.require_site_admin(&app)?;
    let req: RunRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RunRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| Error::InvalidParameter(format!("request body: {e}")))?
    };
    // This request is the scrub's, not traffic it should yield to.
    let _own = app.registry.traffic().uncount_own();
    let report = app.registry.run_scrub(&caller, req.max_blobs).await?;
    Ok(Json(report))
}
