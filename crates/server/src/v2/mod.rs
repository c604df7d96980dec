//! The `/v2/` API: dispatch from the parsed endpoint to its handler.

use std::io;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_registry::{ByteStream, Caller, Error};
use futures_util::{FutureExt, TryStreamExt};

use crate::error::ApiError;
use crate::route::{self, Endpoint, RouteError};
use crate::{App, API_VERSION};

mod blobs;
mod listing;
mod manifests;
mod uploads;

type Result<T, E = ApiError> = std::result::Result<T, E>;

/// Entry point of every `/v2/` request.
pub(crate) async fn handle(State(app): State<Arc<App>>, req: Request) -> Response {
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let uri = req.uri().clone();
    let path = uri.path();
    let rest = path.strip_prefix("/v2").unwrap_or(path);
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    let mut resp = match route::parse(rest) {
        Ok(endpoint) => {
            // A bug must never take the connection down without an answer:
            // a panic becomes a 500 in the spec's error shape.
            match std::panic::AssertUnwindSafe(dispatch(&app, endpoint, req))
                .catch_unwind()
                .await
            {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => e.into_response(),
                Err(_) => {
                    tracing::error!("request handler panicked");
                    ApiError::from(Error::Internal("handler panicked".into())).into_response()
                }
            }
        }
        Err(RouteError::BadName(msg)) => ApiError::from(Error::NameInvalid(msg)).into_response(),
        Err(RouteError::NotFound) => {
            let body = crate::error::error_body("UNSUPPORTED", "no such endpoint", None);
            (
                StatusCode::NOT_FOUND,
                [(header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response()
        }
    };
    resp.headers_mut()
        .insert(API_VERSION.0, HeaderValue::from_static(API_VERSION.1));
    tracing::debug!(
        %method,
        path,
        status = resp.status().as_u16(),
        elapsed_us = started.elapsed().as_micros() as u64,
        "request"
    );
    resp
}

async fn dispatch(app: &App, endpoint: Endpoint, req: Request) -> Result<Response> {
    let method = req.method().clone();
    let caller = Caller {
        account: None,
        ip: client_ip(&req),
        namespace_admin: true,
    };
    match (endpoint, method) {
        (Endpoint::Base, Method::GET | Method::HEAD) => {
            Ok(([(header::CONTENT_TYPE, "application/json")], "{}").into_response())
        }
        (Endpoint::Catalog, Method::GET) => listing::handle_catalog(app, req).await,
        (Endpoint::Tags(name), Method::GET) => listing::handle_tags(app, &name, req).await,
        (Endpoint::Referrers(name, d), Method::GET) => {
            listing::handle_referrers(app, &name, &d, req).await
        }
        (Endpoint::Manifest(name, r), Method::GET) => {
            manifests::handle_get(app, &name, &r, req, false).await
        }
        (Endpoint::Manifest(name, r), Method::HEAD) => {
            manifests::handle_get(app, &name, &r, req, true).await
        }
        (Endpoint::Manifest(name, r), Method::PUT) => {
            manifests::handle_put(app, &name, &r, req, &caller).await
        }
        (Endpoint::Manifest(name, r), Method::DELETE) => {
            manifests::handle_delete(app, &name, &r, &caller).await
        }
        (Endpoint::Blob(name, d), Method::GET) => {
            blobs::handle_get(app, &name, &d, req, false).await
        }
        (Endpoint::Blob(name, d), Method::HEAD) => {
            blobs::handle_get(app, &name, &d, req, true).await
        }
        (Endpoint::Blob(name, d), Method::DELETE) => {
            blobs::handle_delete(app, &name, &d, &caller).await
        }
        (Endpoint::UploadStart(name), Method::POST) => uploads::handle_start(app, &name, req).await,
        (Endpoint::Upload(name, id), Method::GET) => uploads::handle_status(app, &name, &id).await,
        (Endpoint::Upload(name, id), Method::PATCH) => {
            uploads::handle_patch(app, &name, &id, req).await
        }
        (Endpoint::Upload(name, id), Method::PUT) => {
            uploads::handle_put(app, &name, &id, req).await
        }
        (Endpoint::Upload(name, id), Method::DELETE) => {
            uploads::handle_cancel(app, &name, &id).await
        }
        (_, method) => Err(Error::Unsupported(format!(
            "method {method} is not allowed on this endpoint"
        ))
        .into()),
    }
}

/// The query string's pairs, percent-decoded.
pub(crate) fn query(req: &Request) -> Vec<(String, String)> {
    req.uri()
        .query()
        .map(|q| {
            form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// The first value of query parameter `key`.
pub(crate) fn query_value<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The request's `Content-Length`, if present and valid.
pub(crate) fn content_length(headers: &HeaderMap) -> Result<Option<u64>> {
    match headers.get(header::CONTENT_LENGTH) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Some)
            .ok_or_else(|| Error::SizeInvalid("Content-Length is not a number".into()).into()),
    }
}

/// The request body as a byte stream for the store.
pub(crate) fn body_stream(body: Body) -> ByteStream {
    Box::pin(body.into_data_stream().map_err(io::Error::other))
}

/// A header value from a string we built (always valid ASCII).
pub(crate) fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Parses a digest from a path or query, as DIGEST_INVALID on failure.
pub(crate) fn parse_digest(s: &str) -> Result<berth_oci::Digest> {
    berth_oci::Digest::parse(s).map_err(|e| Error::DigestInvalid(e.to_string()).into())
}

/// The client's address, as seen on the connection.
pub(crate) fn client_ip(req: &Request) -> Option<std::net::IpAddr> {
    req.extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
}
