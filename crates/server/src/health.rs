//! `/livez`, `/readyz` and `/metrics`.
//!
//! - `/livez`: the process answers requests (200 `{"status":"alive"}`).
//! - `/readyz`: the registry can serve: the metadata database and the blob
//!   storage answer, and the server is not shutting down (200
//!   `{"status":"ready"}`, else 503 in the usual error shape saying what
//!   is wrong). See [`berth_registry::Registry::readiness`].
//! - `/metrics`: every metric family in the OpenMetrics text format
//!   (Prometheus reads it), after the scrape-time gauges were refreshed;
//!   behind a bearer token when one is configured. Served on the main
//!   listener, or only on its own (`metrics_listen`, [`metrics_router`]).
//!
//! None of them needs registry credentials; none is logged at more than
//! debug on success (probes come every few seconds).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use berth_registry::Error;

use crate::error::{error_body, ApiError};
use crate::App;

fn json(status: StatusCode, body: Vec<u8>) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// `GET /livez`.
pub(crate) async fn handle_livez() -> Response {
    json(StatusCode::OK, br#"{"status":"alive"}"#.to_vec())
}

/// `GET /readyz`.
pub(crate) async fn handle_readyz(State(app): State<Arc<App>>) -> Response {
    match app.registry.readiness().await {
        Ok(()) => json(StatusCode::OK, br#"{"status":"ready"}"#.to_vec()),
        Err(why) => {
            tracing::debug!(reason = %why, "not ready");
            let message = format!("not ready: {why}");
            json(
                StatusCode::SERVICE_UNAVAILABLE,
                error_body("UNAVAILABLE", &message, None),
            )
        }
    }
}

/// Whether `headers` carry `Authorization: Bearer <token>` (compared in
/// constant time).
fn bearer_matches(headers: &HeaderMap, token: &str) -> bool {
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    let (a, b) = (given.trim().as_bytes(), token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `GET /metrics`.
pub(crate) async fn handle_metrics(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Some(token) = &app.settings.observe.metrics_token {
        if !bearer_matches(&headers, token) {
            return ApiError::challenge(
                "/metrics needs the bearer token of metrics_token: send \
                 `Authorization: Bearer <token>` (Prometheus: `authorization: {credentials: ...}`)",
                HeaderValue::from_static("Bearer realm=\"metrics\""),
            )
            .into_response();
        }
    }
    if let Err(e) = app.registry.refresh_gauges().await {
        tracing::warn!(
            error = %crate::error::chain(&e),
            "reading the storage gauges for /metrics failed; serving the previous values"
        );
    }
    let mut text = String::with_capacity(32 * 1024);
    if let Err(e) = berth_metrics::get().encode(&mut text) {
        return ApiError::from(Error::Internal(format!("encoding the metrics: {e}")))
            .into_response();
    }
    let mut r = Response::new(Body::from(text));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(berth_metrics::CONTENT_TYPE),
    );
    r
}

/// The health routes every router serves.
pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/livez", get(handle_livez))
        .route("/readyz", get(handle_readyz))
}

/// The router of the metrics listener (`metrics_listen`): `/metrics` and
/// the health endpoints, nothing else.
pub fn metrics_router(app: Arc<App>) -> Router {
    routes()
        .route("/metrics", get(handle_metrics))
        .fallback(crate::handle_not_found)
        .with_state(app)
}
