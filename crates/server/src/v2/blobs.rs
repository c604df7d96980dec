//! `GET`/`HEAD`/`DELETE /v2/<name>/blobs/<digest>`.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use berth_oci::RepositoryName;
use berth_registry::{BlobBody, ByteRange, Caller};

use super::{parse_digest, Result};
use crate::App;

/// Parses `Range: bytes=a-b | a- | -n`. Several ranges, other units or a
/// malformed value return `None`: the whole blob is served, as HTTP
/// allows. A range that can't be satisfied (past the end, or whose first
/// byte is after its last, `bytes=500-0`) is returned as it is and refused
/// with 416 by the service.
fn parse_range(headers: &HeaderMap) -> Option<ByteRange> {
    let v = headers.get(header::RANGE)?.to_str().ok()?.trim();
    let spec = v.strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        return Some(ByteRange::Suffix(b.parse().ok()?));
    }
    let start = a.parse().ok()?;
    let end = if b.is_empty() {
        None
    } else {
        Some(b.parse().ok()?)
    };
    Some(ByteRange::From(start, end))
}

pub(super) async fn handle_get(
    app: &App,
    name: &RepositoryName,
    digest: &str,
    req: Request,
    head: bool,
) -> Result<Response> {
    let digest = parse_digest(digest)?;
    let reg = &app.registry;
    let base = Response::builder()
        .header("docker-content-digest", digest.as_str())
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, format!("\"{digest}\""))
        .header(header::CACHE_CONTROL, "max-age=31536000");
    if head {
        let size = reg.blob_size(name, &digest).await?;
        return Ok(base
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(header::CONTENT_LENGTH, size)
            .body(Body::empty())?);
    }
    if let Some(url) = reg.blob_redirect(name, &digest).await? {
        return Ok(Response::builder()
            .status(StatusCode::TEMPORARY_REDIRECT)
            .header("docker-content-digest", digest.as_str())
            .header(header::LOCATION, url)
            .header(header::CONTENT_LENGTH, 0)
            .body(Body::empty())?);
    }
    let range = parse_range(req.headers());
    let (size, served, read) = reg.read_blob(name, &digest, range).await?;
    let body = match read.body {
        BlobBody::Bytes(b) => Body::from(b),
        BlobBody::Stream(s) => Body::from_stream(s),
    };
    let mut b = base
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, read.len);
    if let Some((offset, len)) = served {
        b = b.status(StatusCode::PARTIAL_CONTENT).header(
            header::CONTENT_RANGE,
            format!("bytes {}-{}/{}", offset, offset + len - 1, size),
        );
    }
    Ok(b.body(body)?)
}

pub(super) async fn handle_delete(
    app: &App,
    name: &RepositoryName,
    digest: &str,
    caller: &Caller,
) -> Result<Response> {
    let digest = parse_digest(digest)?;
    app.registry.delete_blob(name, &digest, caller).await?;
    Ok(Response::builder()
        .status(StatusCode::ACCEPTED)
        .header(header::CONTENT_LENGTH, 0)
        .body(Body::empty())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(v: &str) -> Option<ByteRange> {
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, v.parse().unwrap());
        parse_range(&h)
    }

    #[test]
    fn ranges() {
        assert_eq!(r("bytes=0-9"), Some(ByteRange::From(0, Some(9))));
        assert_eq!(r("bytes=5-"), Some(ByteRange::From(5, None)));
        assert_eq!(r("bytes=-5"), Some(ByteRange::Suffix(5)));
        assert_eq!(r("bytes=0-1,3-4"), None);
        assert_eq!(r("items=0-1"), None);
        assert_eq!(r("bytes=9-1"), Some(ByteRange::From(9, Some(1))));
        assert_eq!(r("bytes=x-1"), None);
    }
}
