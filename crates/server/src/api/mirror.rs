//! The pull-through mirror's status: `GET /api/v1/mirror/upstreams` lists
//! the configured upstreams with their limits, the last `RateLimit-*`
//! values they sent, any `Retry-After` in force and the last failure.
//! Site admins only.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use berth_mirror::UpstreamStatus;
use serde::Serialize;

use super::Principal;
use crate::error::ApiError;
use crate::App;

pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new().route("/mirror/upstreams", get(handle_upstreams))
}

#[derive(Debug, Serialize)]
struct Upstreams {
    upstreams: Vec<UpstreamStatus>,
    pull_access: &'static str,
}

async fn handle_upstreams(
    State(app): State<Arc<App>>,
    principal: Principal,
) -> Result<Json<Upstreams>, ApiError> {
    principal.require_site_admin(&app)?;
    let (upstreams, pull_access) = match &app.mirror {
        Some(m) => (
            m.status(),
            match m.pull_access() {
                berth_mirror::PullAccess::Anonymous => "anonymous",
                berth_mirror::PullAccess::Authenticated => "authenticated",
            },
        ),
        None => (Vec::new(), "anonymous"),
    };
    Ok(Json(Upstreams {
        upstreams,
        pull_access,
    }))
}
