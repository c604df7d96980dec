//! Turning core-service errors into OCI error responses.

use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_registry::Error;

/// An error response: the service error plus headers some errors carry
/// (the upload's `Location` and `Range` on a 416, for instance).
pub struct ApiError {
    error: Error,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    /// Adds a header to the response.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// The underlying service error.
    pub fn error(&self) -> &Error {
        &self.error
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        ApiError {
            error,
            headers: Vec::new(),
        }
    }
}

/// Builds the spec's error body.
pub fn error_body(code: &str, message: &str, detail: Option<serde_json::Value>) -> Vec<u8> {
    let mut e = serde_json::json!({"code": code, "message": message});
    if let Some(d) = detail {
        e["detail"] = d;
    }
    serde_json::to_vec(&serde_json::json!({ "errors": [e] })).unwrap_or_default()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let code = self.error.code();
        if status.is_server_error() && !matches!(self.error, Error::Busy { .. }) {
            tracing::warn!(error = ?self.error, "request failed");
        } else {
            tracing::debug!(error = %self.error, code = code.as_str(), "request refused");
        }
        let detail = match &self.error {
            Error::ChunkOutOfOrder { size, .. } | Error::RangeNotSatisfiable { size } => {
                Some(serde_json::json!({ "size": size }))
            }
            Error::ManifestTooLarge { limit, .. } => Some(serde_json::json!({ "limit": limit })),
            _ => None,
        };
        let body = error_body(code.as_str(), &self.error.to_string(), detail);
        let mut resp = (
            status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
        if let Error::TooManyRequests { retry_after } | Error::Busy { retry_after } = &self.error {
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                HeaderValue::from(*retry_after),
            );
        }
        for (k, v) in self.headers {
            resp.headers_mut().insert(k, v);
        }
        resp
    }
}
