//! Path and query extractors of the management API whose rejections are
//! errors in the API's JSON shape (axum's own answer in plain text).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use berth_registry::Error;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Path parameters deserialised into `T`; a malformed one is a 400 naming
/// the problem.
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(t)| Path(t))
            .map_err(|e| Error::InvalidParameter(format!("invalid path: {}", e.body_text())).into())
    }
}

/// The query string deserialised into `T`; a malformed one is a 400
/// naming the problem.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(t)| Query(t))
            .map_err(|e| {
                Error::InvalidParameter(format!("invalid query string: {}", e.body_text())).into()
            })
    }
}
