//! JSON request bodies of the management API, refused in the API's error
//! shape (axum's own `Json` extractor answers malformed bodies in plain
//! text).

use axum::extract::{FromRequest, Request};
use berth_registry::Error;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Largest management request body.
const MAX_BODY: usize = 1 << 20;

/// A JSON body deserialised into `T`; malformed input is a 400 naming the
/// problem.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        let bytes = axum::body::to_bytes(req.into_body(), MAX_BODY)
            .await
            .map_err(|_| {
                Error::InvalidParameter(format!(
                    "request body is unreadable or over {MAX_BODY} bytes"
                ))
            })?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| Error::InvalidParameter(format!("invalid JSON body: {e}")).into())
    }
}
