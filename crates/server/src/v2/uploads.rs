//! Blob uploads: `POST`, `PATCH`, `PUT`, `GET` and `DELETE` on
//! `/v2/<name>/blobs/uploads/...`.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use berth_oci::RepositoryName;
use berth_registry::{Error, UploadInfo};

use super::{body_stream, content_length, parse_digest, query, query_value, Result};
use crate::error::ApiError;
use crate::App;

/// The URL of an upload session.
pub(crate) fn upload_location(name: &str, id: &str) -> String {
    format!("/v2/{name}/blobs/uploads/{id}")
}

/// The `Range` header of an upload holding `size` bytes.
pub(crate) fn range_value(size: u64) -> String {
    // The spec's `Range: 0-<end>` is inclusive; an empty upload reports 0-0
    // as the reference registry does.
    format!("0-{}", size.saturating_sub(1))
}

fn accepted(app: &App, name: &RepositoryName, id: &str, size: u64) -> Result<Response> {
    let mut b = Response::builder()
        .status(StatusCode::ACCEPTED)
        .header(header::LOCATION, upload_location(name.as_str(), id))
        .header(header::RANGE, range_value(size))
        .header("docker-upload-uuid", id)
        .header(header::CONTENT_LENGTH, 0);
    if app.settings.chunk_min_length > 0 {
        b = b.header("oci-chunk-min-length", app.settings.chunk_min_length);
    }
    Ok(b.body(Body::empty())?)
}

fn created(name: &RepositoryName, digest: &berth_oci::Digest) -> Result<Response> {
    Ok(Response::builder()
        .status(StatusCode::CREATED)
        .header(header::LOCATION, format!("/v2/{name}/blobs/{digest}"))
        .header("docker-content-digest", digest.as_str())
        .header(header::CONTENT_LENGTH, 0)
        .body(Body::empty())?)
}

/// Parses `Content-Range: <start>-<end>` (also with a `bytes ` / `bytes=`
/// prefix and a `/<total>` suffix). Returns `(start, len)`.
fn content_range(headers: &HeaderMap) -> Result<Option<(u64, u64)>> {
    let Some(v) = headers.get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let bad = || {
        ApiError::from(Error::UploadInvalid(
            "malformed Content-Range header".into(),
        ))
    };
    let s = v.to_str().map_err(|_| bad())?.trim();
    let s = s
        .strip_prefix("bytes=")
        .or_else(|| s.strip_prefix("bytes "))
        .unwrap_or(s);
    let s = s.split('/').next().unwrap_or(s);
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let start: u64 = a.trim().parse().map_err(|_| bad())?;
    let end: u64 = b.trim().parse().map_err(|_| bad())?;
    if end < start {
        return Err(bad());
    }
    Ok(Some((start, end - start + 1)))
}

/// The start and length of a chunk request, checking Content-Range against
/// Content-Length.
fn chunk_bounds(headers: &HeaderMap) -> Result<(Option<u64>, Option<u64>)> {
    let len = content_length(headers)?;
    match content_range(headers)? {
        Some((start, range_len)) => {
            if let Some(l) = len {
                if l != range_len {
                    return Err(Error::UploadInvalid(format!(
                        "Content-Range covers {range_len} bytes but Content-Length is {l}"
                    ))
                    .into());
                }
            }
            Ok((Some(start), Some(range_len)))
        }
        None => Ok((None, len)),
    }
}

/// Whether a requested cross-repository mount may be attempted.
pub(super) enum Mount {
    /// Yes: from this repository, or (open mode, no `from`) from wherever
    /// the blob is stored.
    From(Option<RepositoryName>),
    /// No (the caller may not pull from the source, or gave none): fall
    /// back to a plain upload.
    Refused,
}

pub(super) async fn handle_start(
    app: &App,
    name: &RepositoryName,
    req: Request,
    mount: Mount,
) -> Result<Response> {
    let q = query(&req);
    let reg = &app.registry;
    if let Some(digest) = query_value(&q, "mount") {
        let digest = parse_digest(digest)?;
        // An invalid or unreadable `from` falls back to a plain upload, as
        // for any other failed mount.
        if let Mount::From(from) = mount {
            if reg.mount_blob(name, &digest, from.as_ref()).await? {
                return created(name, &digest);
            }
        }
    } else if let Some(d) = query_value(&q, "digest") {
        let digest = parse_digest(d)?;
        let len = content_length(req.headers())?;
        reg.push_blob(name, &digest, len, body_stream(req.into_body()))
            .await?;
        return created(name, &digest);
    }
    let info: UploadInfo = reg.start_upload(name).await?;
    accepted(app, name, &info.id, 0)
}

pub(super) async fn handle_status(app: &App, name: &RepositoryName, id: &str) -> Result<Response> {
    let info = app.registry.upload(name, id).await?;
    Ok(Response::builder()
        .status(StatusCode::NO_CONTENT)
        .header(header::LOCATION, upload_location(name.as_str(), id))
        .header(header::RANGE, range_value(info.size))
        .header("docker-upload-uuid", id)
        .header(header::CONTENT_LENGTH, 0)
        .body(Body::empty())?)
}

pub(super) async fn handle_patch(
    app: &App,
    name: &RepositoryName,
    id: &str,
    req: Request,
) -> Result<Response> {
    let (start, len) = chunk_bounds(req.headers())?;
    let size = app
        .registry
        .append_upload(name, id, start, len, body_stream(req.into_body()))
        .await?;
    accepted(app, name, id, size)
}

pub(super) async fn handle_put(
    app: &App,
    name: &RepositoryName,
    id: &str,
    req: Request,
) -> Result<Response> {
    let q = query(&req);
    let digest = query_value(&q, "digest").ok_or_else(|| {
        ApiError::from(Error::DigestInvalid(
            "the digest query parameter is required to complete an upload".into(),
        ))
    })?;
    let digest = parse_digest(digest)?;
    let (start, len) = chunk_bounds(req.headers())?;
    let has_body =
        len != Some(0) && (len.is_some() || req.headers().contains_key(header::TRANSFER_ENCODING));
    let chunk = has_body.then(|| (start, len, body_stream(req.into_body())));
    app.registry.finish_upload(name, id, &digest, chunk).await?;
    created(name, &digest)
}

pub(super) async fn handle_cancel(app: &App, name: &RepositoryName, id: &str) -> Result<Response> {
    app.registry.cancel_upload(name, id).await?;
    Ok(Response::builder()
        .status(StatusCode::NO_CONTENT)
        .header(header::CONTENT_LENGTH, 0)
        .body(Body::empty())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        m
    }

    #[test]
    fn chunk_headers() {
        assert_eq!(
            chunk_bounds(&h(&[("content-range", "0-9"), ("content-length", "10")])).ok(),
            Some((Some(0), Some(10)))
        );
        assert_eq!(
            chunk_bounds(&h(&[("content-range", "bytes=10-19")])).ok(),
            Some((Some(10), Some(10)))
        );
        assert_eq!(
            chunk_bounds(&h(&[("content-range", "bytes 10-19/*")])).ok(),
            Some((Some(10), Some(10)))
        );
        assert!(chunk_bounds(&h(&[("content-range", "0-9"), ("content-length", "5")])).is_err());
        assert!(chunk_bounds(&h(&[("content-range", "9-0")])).is_err());
        assert_eq!(
            chunk_bounds(&h(&[("content-length", "7")])).ok(),
            Some((None, Some(7)))
        );
    }
}
