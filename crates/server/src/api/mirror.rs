//! The pull-through mirror's status: `GET /api/v1/mirror/upstreams` lists
//! the configured upstreams with their limits, the last `RateLimit-*`
//! values they sent, any `Retry-After` in force, the last failure, and
//! what each one's cache holds against its limit.
//! `POST /api/v1/mirror/warm {"image", "platforms"?}` fetches an image
//! (`docker.io/library/postgres:16`, or `hub/library/postgres:16`) into
//! the cache through the pull-through path and says what it fetched.
//! Site admins only.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use berth_mirror::UpstreamStatus;
use serde::{Deserialize, Serialize};

use super::body::JsonBody;
use super::Principal;
use crate::error::ApiError;
use crate::App;

pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/mirror/upstreams", get(handle_upstreams))
        .route("/mirror/warm", post(handle_warm))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Warm {
    image: String,
    #[serde(default)]
    platforms: Vec<String>,
}

async fn handle_warm(
    State(app): State<Arc<App>>,
    principal: Principal,
    JsonBody(body): JsonBody<Warm>,
) -> Result<Json<berth_mirror::Warmed>, ApiError> {
    principal.require_site_admin(&app)?;
    let mirror = app
        .mirror
        .as_ref()
        .filter(|m| m.is_enabled())
        .ok_or_else(|| {
            berth_registry::Error::InvalidParameter(
                "no mirror upstreams are configured (mirror_upstreams): there is nothing to warm"
                    .into(),
            )
        })?;
    Ok(Json(mirror.warm(&body.image, &body.platforms).await?))
}

/// An upstream with its cache.
#[derive(Debug, Serialize)]
struct Listed {
    #[serde(flatten)]
    status: UpstreamStatus,
    /// Bytes its cache holds (mirrored, not pushed: no quota counts them).
    cached_bytes: u64,
    /// Its own cache limit, if it has one.
    cache_max_bytes: Option<u64>,
}

/// All caches together.
#[derive(Debug, Serialize)]
struct Cache {
    cached_bytes: u64,
    max_bytes: Option<u64>,
}

#[derive(Debug, Serialize)]
struct Upstreams {
    upstreams: Vec<Listed>,
    pull_access: &'static str,
    cache: Cache,
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
    let usage = app.registry.mirror_cache_usage().await?;
    let upstreams: Vec<Listed> = upstreams
        .into_iter()
        .map(|status| {
            let cache = usage.iter().find(|u| u.namespace == status.name);
            Listed {
                cached_bytes: cache.map_or(0, |c| c.cached_bytes),
                cache_max_bytes: cache.and_then(|c| c.max_bytes),
                status,
            }
        })
        .collect();
    Ok(Json(Upstreams {
        cache: Cache {
            cached_bytes: usage.iter().map(|u| u.cached_bytes).sum(),
            max_bytes: app.registry.mirror_cache_max(),
        },
        upstreams,
        pull_access,
    }))
}
