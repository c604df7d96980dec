//! From an error to a response, in one place.
//!
//! Every refusal and failure of every route is an [`ApiError`]: a core
//! service [`Error`] (which carries what its answer needs: the size behind
//! a `Content-Range`, the upload behind a `Location`, the `Retry-After` of
//! a rate limit), plus, for a 401, the challenge that says where to log in.
//! [`ApiError::into_response`] derives the status from the error's
//! [`Kind`], writes every header the error implies and the JSON body
//! `{"errors":[{"code","message","detail"?}]}`, and logs server-side
//! failures once, with their source chain. Handlers add no headers to an
//! error.
//!
//! Two code tables share that shape: `/v2/` and `/token` speak the OCI
//! Distribution codes ([`berth_oci::ErrorCode`]); the management API
//! (`/api/v1/`) speaks its own ([`management_code`], documented in
//! `docs/api.md`). The body is first written with the OCI code; the
//! management router's layer ([`management_errors`]) rewrites it with the
//! management code, so handlers of both APIs just use `?`.

use std::fmt::Write as _;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use berth_registry::{Error, Kind};
use futures_util::FutureExt;

/// An error answer: the service error and, for a 401, its challenge.
#[derive(Debug)]
pub struct ApiError {
    error: Error,
    challenge: Option<HeaderValue>,
}

impl ApiError {
    /// A 401 with the `WWW-Authenticate` challenge `challenge`.
    pub fn challenge(message: impl Into<String>, challenge: HeaderValue) -> Self {
        ApiError {
            error: Error::Unauthorized(message.into()),
            challenge: Some(challenge),
        }
    }

    /// The underlying service error.
    pub fn error(&self) -> &Error {
        &self.error
    }

    /// A request the routes have no endpoint for (404).
    pub fn no_endpoint() -> Self {
        Error::NotFound("no such endpoint".into()).into()
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        ApiError {
            error,
            challenge: None,
        }
    }
}

/// A response that could not be built (a header value that is not valid):
/// a bug, answered as a 500 rather than as an empty 200.
impl From<axum::http::Error> for ApiError {
    fn from(e: axum::http::Error) -> Self {
        Error::Internal(format!("building the response: {e}")).into()
    }
}

/// The HTTP status of an error kind.
pub fn status(kind: Kind) -> StatusCode {
    match kind {
        Kind::InvalidArgument => StatusCode::BAD_REQUEST,
        Kind::Unauthenticated => StatusCode::UNAUTHORIZED,
        Kind::PermissionDenied => StatusCode::FORBIDDEN,
        Kind::NotFound => StatusCode::NOT_FOUND,
        Kind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        Kind::Conflict => StatusCode::CONFLICT,
        Kind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        Kind::RangeNotSatisfiable => StatusCode::RANGE_NOT_SATISFIABLE,
        Kind::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
        Kind::StorageFull => StatusCode::INSUFFICIENT_STORAGE,
        Kind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Kind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The management API's code (`/api/v1/`) of an error kind, in the same JSON
/// shape as the OCI codes: one string per [`Kind`], whose status the kind
/// already gives (documented in `docs/api.md`).
pub fn management_code(kind: Kind) -> &'static str {
    match kind {
        Kind::InvalidArgument => "INVALID_ARGUMENT",
        Kind::Unauthenticated => "UNAUTHENTICATED",
        Kind::PermissionDenied => "PERMISSION_DENIED",
        Kind::NotFound => "NOT_FOUND",
        Kind::MethodNotAllowed => "METHOD_NOT_ALLOWED",
        Kind::Conflict => "CONFLICT",
        Kind::TooLarge => "TOO_LARGE",
        Kind::RangeNotSatisfiable => "RANGE_NOT_SATISFIABLE",
        Kind::TooManyRequests => "TOO_MANY_REQUESTS",
        Kind::StorageFull => "STORAGE_FULL",
        Kind::Unavailable => "UNAVAILABLE",
        Kind::Internal => "INTERNAL",
    }
}

/// Builds the error body `{"errors":[{"code","message","detail"?}]}`.
pub fn error_body(code: &str, message: &str, detail: Option<&serde_json::Value>) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct Item<'a> {
        code: &'a str,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        detail: Option<&'a serde_json::Value>,
    }
    #[derive(serde::Serialize)]
    struct Body<'a> {
        errors: [Item<'a>; 1],
    }
    let body = Body {
        errors: [Item {
            code,
            message,
            detail,
        }],
    };
    // Serialising strings and a JSON value into a Vec cannot fail.
    serde_json::to_vec(&body).unwrap_or_else(|_| br#"{"errors":[]}"#.to_vec())
}

/// The error and its sources, joined: `a: b: c` (a source whose text the
/// error's own already ends with is not repeated).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.ends_with(&text) {
            let _ = write!(out, ": {text}");
        }
        source = s.source();
    }
    out
}

/// What the management layer needs to rewrite an error body: the error's
/// kind, message and detail (kept in the response's extensions).
#[derive(Debug, Clone)]
struct Written {
    kind: Kind,
    message: String,
    detail: Option<serde_json::Value>,
}

fn header_value(s: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(s).ok()
}

/// The headers an error implies.
fn error_headers(e: &Error, headers: &mut HeaderMap) {
    if let Some(secs) = e.retry_after() {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    match e {
        Error::RangeNotSatisfiable { size } => {
            if let Some(v) = header_value(&format!("bytes */{size}")) {
                headers.insert(header::CONTENT_RANGE, v);
            }
        }
        Error::ChunkOutOfOrder {
            size,
            upload: Some(u),
            ..
        } => {
            let location = crate::v2::upload_location(u.repository.as_str(), &u.id);
            if let Some(v) = header_value(&location) {
                headers.insert(header::LOCATION, v);
            }
            if let Some(v) = header_value(&crate::v2::range_value(*size)) {
                headers.insert(header::RANGE, v);
            }
        }
        Error::PullRateLimited(state) => crate::v2::rate_headers(headers, state),
        _ => {}
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let error = self.error;
        let kind = error.kind();
        let status = status(kind);
        let code = error.code();
        // A busy server is expected under load, not a failure to look into;
        // an unreachable database is.
        let outage = matches!(error, Error::DatabaseUnavailable(_));
        if status.is_server_error() && (kind != Kind::Unavailable || outage) {
            tracing::warn!(error = %chain(&error), code = code.as_str(), "request failed");
        } else {
            tracing::debug!(error = %error, code = code.as_str(), "request refused");
        }
        let message = error.public_message();
        let detail = error.detail();
        let body = error_body(code.as_str(), &message, detail.as_ref());
        let mut resp = Response::new(Body::from(body));
        *resp.status_mut() = status;
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        error_headers(&error, headers);
        if let Some(challenge) = self.challenge {
            headers.insert(header::WWW_AUTHENTICATE, challenge);
        }
        resp.extensions_mut().insert(Written {
            kind,
            message,
            detail,
        });
        resp
    }
}

/// The management API's error layer: rewrites error bodies with the
/// management codes, answers a 401 without a challenge with the Basic one
/// (the API takes a password or an access token; HTTP requires a
/// challenge on every 401).
pub async fn management_errors(mut resp: Response) -> Response {
    if let Some(w) = resp.extensions_mut().remove::<Written>() {
        let code = management_code(w.kind);
        let body = error_body(code, &w.message, w.detail.as_ref());
        resp.headers_mut().remove(header::CONTENT_LENGTH);
        *resp.body_mut() = Body::from(body);
    } else if (resp.status().is_client_error() || resp.status().is_server_error())
        && resp
            .headers()
            .get(header::CONTENT_TYPE)
            .is_none_or(|t| t != "application/json")
    {
        resp = rejection_as_json(resp).await;
    }
    if resp.status() == StatusCode::UNAUTHORIZED
        && !resp.headers().contains_key(header::WWW_AUTHENTICATE)
    {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"berth\""),
        );
    }
    resp
}

/// An error answer that did not come from an [`ApiError`] (an extractor's
/// rejection, such as axum's body limit, written as plain text): the same
/// status, in the JSON shape, its text as the message.
async fn rejection_as_json(resp: Response) -> Response {
    let (mut parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let message = if text.is_empty() {
        parts
            .status
            .canonical_reason()
            .unwrap_or("request refused")
            .to_owned()
    } else {
        text
    };
    let kind = match parts.status {
        StatusCode::UNAUTHORIZED => Kind::Unauthenticated,
        StatusCode::FORBIDDEN => Kind::PermissionDenied,
        StatusCode::NOT_FOUND => Kind::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => Kind::MethodNotAllowed,
        StatusCode::CONFLICT => Kind::Conflict,
        StatusCode::PAYLOAD_TOO_LARGE => Kind::TooLarge,
        StatusCode::TOO_MANY_REQUESTS => Kind::TooManyRequests,
        StatusCode::SERVICE_UNAVAILABLE => Kind::Unavailable,
        s if s.is_server_error() => Kind::Internal,
        _ => Kind::InvalidArgument,
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let body = error_body(management_code(kind), &message, None);
    Response::from_parts(parts, Body::from(body))
}

/// Runs a handler's future; a panic becomes a 500 in the JSON error shape
/// instead of a connection closed without an answer.
///
/// A plain function returning the combinator, not an `async fn`: an async
/// function would hold the handler's future twice (its argument and the
/// `catch_unwind` it awaits), and request futures are large.
pub fn answer_panics<F>(handler: F) -> impl std::future::Future<Output = Response>
where
    F: std::future::Future<Output = Response>,
{
    std::panic::AssertUnwindSafe(handler)
        .catch_unwind()
        .map(|outcome| outcome.unwrap_or_else(panic_response))
}

fn panic_response(panic: Box<dyn std::any::Any + Send>) -> Response {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    ApiError::from(Error::Internal(format!("request handler panicked: {what}"))).into_response()
}

/// [`answer_panics`] as a middleware, for routers whose handlers are not
/// wrapped one by one.
pub async fn catch_panics(req: Request, next: Next) -> Response {
    answer_panics(next.run(req)).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    async fn body_json(resp: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn errors_carry_their_headers() {
        let r = ApiError::from(Error::RangeNotSatisfiable { size: 100 }).into_response();
        assert_eq!(r.status(), 416);
        assert_eq!(r.headers()[header::CONTENT_RANGE], "bytes */100");
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        let v = body_json(r).await;
        assert_eq!(v["errors"][0]["code"], "BLOB_UPLOAD_INVALID");
        assert_eq!(v["errors"][0]["detail"]["size"], 100);

        let r = ApiError::from(Error::ChunkOutOfOrder {
            start: 5,
            size: 10,
            upload: Some(berth_registry::UploadRef {
                repository: berth_oci::RepositoryName::parse("a/b").unwrap(),
                id: "u1".into(),
            }),
        })
        .into_response();
        assert_eq!(r.status(), 416);
        assert_eq!(r.headers()[header::LOCATION], "/v2/a/b/blobs/uploads/u1");
        assert_eq!(r.headers()[header::RANGE], "0-9");

        let r = ApiError::from(Error::TooManyRequests { retry_after: 7 }).into_response();
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()[header::RETRY_AFTER], "7");

        let r = ApiError::from(Error::PullRateLimited(berth_registry::auth::RateState {
            allowed: false,
            limit: 100,
            remaining: 0,
            window_secs: 21600,
            reset_secs: 60,
        }))
        .into_response();
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()[header::RETRY_AFTER], "60");
        assert_eq!(r.headers()["ratelimit-limit"], "100;w=21600");
        assert_eq!(r.headers()["ratelimit-remaining"], "0;w=21600");

        let r = ApiError::challenge("log in", HeaderValue::from_static("Bearer realm=\"x\""))
            .into_response();
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers()[header::WWW_AUTHENTICATE], "Bearer realm=\"x\"");
    }

    #[tokio::test]
    async fn management_codes_replace_oci_codes() {
        for (error, status, code) in [
            (Error::NotFound("no policy".into()), 404, "NOT_FOUND"),
            (Error::NameUnknown("a/b".into()), 404, "NOT_FOUND"),
            (Error::Conflict("taken".into()), 409, "CONFLICT"),
            (
                Error::InvalidParameter("bad".into()),
                400,
                "INVALID_ARGUMENT",
            ),
            (Error::Denied("no".into()), 403, "PERMISSION_DENIED"),
            (Error::Unauthorized("who".into()), 401, "UNAUTHENTICATED"),
            (Error::Internal("bug".into()), 500, "INTERNAL"),
        ] {
            let message = error.public_message();
            let r = management_errors(ApiError::from(error).into_response()).await;
            assert_eq!(r.status(), status);
            if status == 401 {
                assert_eq!(
                    r.headers()[header::WWW_AUTHENTICATE],
                    "Basic realm=\"berth\""
                );
            }
            let v = body_json(r).await;
            assert_eq!(v["errors"][0]["code"], code);
            assert_eq!(v["errors"][0]["message"], message.as_str());
        }
    }

    #[tokio::test]
    async fn plain_text_rejections_become_json() {
        let plain = (StatusCode::PAYLOAD_TOO_LARGE, "length limit exceeded").into_response();
        let r = management_errors(plain).await;
        assert_eq!(r.status(), 413);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        let v = body_json(r).await;
        assert_eq!(v["errors"][0]["code"], "TOO_LARGE");
        assert_eq!(v["errors"][0]["message"], "length limit exceeded");
        let empty = StatusCode::METHOD_NOT_ALLOWED.into_response();
        let v = body_json(management_errors(empty).await).await;
        assert_eq!(v["errors"][0]["code"], "METHOD_NOT_ALLOWED");
    }

    #[tokio::test]
    async fn internal_errors_hide_their_source() {
        let io = std::io::Error::other("disk on fire at /var/lib/berth");
        let e = Error::Storage(io);
        assert_eq!(chain(&e), "storage failed: disk on fire at /var/lib/berth");
        let v = body_json(ApiError::from(e).into_response()).await;
        assert_eq!(v["errors"][0]["code"], "UNKNOWN");
        assert_eq!(v["errors"][0]["message"], "internal error");
    }

    #[tokio::test]
    async fn panics_become_500_json() {
        let r = answer_panics(async {
            if std::hint::black_box(true) {
                panic!("boom");
            }
            Response::new(Body::empty())
        })
        .await;
        assert_eq!(r.status(), 500);
        let v = body_json(r).await;
        assert_eq!(v["errors"][0]["code"], "UNKNOWN");
    }
}
