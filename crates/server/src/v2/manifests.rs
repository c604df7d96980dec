//! `GET`/`HEAD`/`PUT`/`DELETE /v2/<name>/manifests/<reference>`.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::response::Response;
use berth_oci::RepositoryName;
use berth_oci::{Reference, Tag};
use berth_registry::{accepts, Caller, Error, Reader};
use http_body_util::BodyExt;

use super::{content_length, query, Result};
use crate::App;

fn parse_reference(r: &str) -> Result<Reference> {
    Reference::parse(r).map_err(|e| {
        match e {
            berth_oci::NameError::Digest(d) => Error::DigestInvalid(d.to_string()),
            other => Error::TagInvalid(other.to_string()),
        }
        .into()
    })
}

pub(super) async fn handle_get(
    app: &App,
    name: &RepositoryName,
    reference: &str,
    req: Request,
    pull: Option<Reader<'_>>,
) -> Result<Response> {
    // No manifest can have a reference that is neither a tag nor a digest:
    // a read of one is a 404 like any unknown tag (a push, a 400).
    let reference = parse_read_reference(reference)?;
    let m = app.registry.get_manifest(name, &reference).await?;
    // A pull (`GET`, by `pull`'s reader) passes the namespace's policies
    // (signatures, vulnerabilities); HEAD requests (how clients, cosign
    // and scanners check a tag) stay allowed.
    if let Some(reader) = pull {
        app.registry.may_serve(name, &reference, &m, reader).await?;
    }
    answer(app, name, &reference, &m, &req, pull.is_none())
}

/// A reference being read: one that is neither a tag nor a digest is a
/// 404 (no manifest can have it).
pub(super) fn parse_read_reference(reference: &str) -> Result<Reference> {
    Reference::parse(reference)
        .map_err(|_| Error::ManifestUnknown(reference.chars().take(160).collect::<String>()).into())
}

/// The answer to a manifest read of `name` that found `m`.
pub(super) fn answer(
    app: &App,
    name: &RepositoryName,
    reference: &Reference,
    m: &berth_registry::ManifestEntry,
    req: &Request,
    head: bool,
) -> Result<Response> {
    let accept = req.headers().get_all(header::ACCEPT);
    if !accepts(accept.iter().filter_map(|v| v.to_str().ok()), &m.media_type) {
        return Err(Error::ManifestNotAcceptable {
            reference: reference.to_string(),
            media_type: m.media_type.clone(),
        }
        .into());
    }
    if !head {
        // A GET is a pull (also when answered 304: the client checked the
        // tag); a HEAD is not. Counted in memory, flushed in batches.
        app.registry.record_pull(name, reference, &m.digest);
        berth_metrics::get().pulled(
            name.as_str(),
            berth_metrics::ArtifactKind::Manifest,
            m.content.len() as u64,
        );
    }
    let etag = format!("\"{}\"", m.digest);
    let b = Response::builder()
        .header(header::CONTENT_TYPE, m.media_type.as_str())
        .header("docker-content-digest", m.digest.as_str())
        .header(header::ETAG, etag.as_str());
    if req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        return Ok(b.status(StatusCode::NOT_MODIFIED).body(Body::empty())?);
    }
    let b = b.header(header::CONTENT_LENGTH, m.content.len());
    let body = if head {
        Body::empty()
    } else {
        Body::from(m.content.clone())
    };
    Ok(b.body(body)?)
}

/// Bodies up to this size are read to the end even when refused, so the
/// client gets the error instead of a connection reset mid-upload.
const DRAIN_LIMIT: u64 = 16 * 1024 * 1024;

/// Reads a manifest body of at most `limit` bytes.
async fn read_limited(body: Body, announced: Option<u64>, limit: usize) -> Result<bytes::Bytes> {
    let too_large = |size: u64| Error::ManifestTooLarge { size, limit };
    if let Some(len) = announced {
        if len > limit as u64 {
            if len <= DRAIN_LIMIT {
                drain(body, DRAIN_LIMIT).await;
            }
            return Err(too_large(len).into());
        }
    }
    let mut body = body;
    let mut buf = bytes::BytesMut::with_capacity(announced.unwrap_or(4096) as usize);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| Error::BodyRead)?;
        if let Ok(data) = frame.into_data() {
            buf.extend_from_slice(&data);
            if buf.len() > limit {
                let seen = buf.len() as u64 + drain(body, DRAIN_LIMIT).await;
                return Err(too_large(seen).into());
            }
        }
    }
    Ok(buf.freeze())
}

/// Reads and discards up to `max` bytes; returns how many were read.
async fn drain(mut body: Body, max: u64) -> u64 {
    let mut n = 0u64;
    while n <= max {
        match body.frame().await {
            Some(Ok(frame)) => n += frame.data_ref().map_or(0, |d| d.len() as u64),
            _ => break,
        }
    }
    n
}

pub(super) async fn handle_put(
    app: &App,
    name: &RepositoryName,
    reference: &str,
    req: Request,
    caller: &Caller,
) -> Result<Response> {
    let reference = parse_reference(reference)?;
    let limit = app.registry.settings().max_manifest_bytes;
    let extra_tags = query(&req)
        .into_iter()
        .filter(|(k, _)| k == "tag")
        .map(|(_, v)| Tag::parse(v).map_err(|e| Error::TagInvalid(e.to_string())))
        .collect::<Result<Vec<Tag>, Error>>()?;
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let announced = content_length(req.headers())?;
    let body = read_limited(req.into_body(), announced, limit).await?;
    let pushed = app
        .registry
        .put_manifest(
            name,
            &reference,
            content_type.as_deref(),
            body,
            &extra_tags,
            caller,
        )
        .await?;
    let mut b = Response::builder()
        .status(StatusCode::CREATED)
        .header(
            header::LOCATION,
            format!("/v2/{name}/manifests/{}", pushed.digest),
        )
        .header("docker-content-digest", pushed.digest.as_str())
        .header(header::CONTENT_LENGTH, 0);
    if let Some(s) = &pushed.subject {
        b = b.header("oci-subject", s.as_str());
    }
    for t in &pushed.tags {
        b = b.header("oci-tag", t.as_str());
    }
    Ok(b.body(Body::empty())?)
}

pub(super) async fn handle_delete(
    app: &App,
    name: &RepositoryName,
    reference: &str,
    caller: &Caller,
) -> Result<Response> {
    let reference = parse_reference(reference)?;
    app.registry
        .delete_manifest(name, &reference, caller)
        .await?;
    Ok(Response::builder()
        .status(StatusCode::ACCEPTED)
        .header(header::CONTENT_LENGTH, 0)
        .body(Body::empty())?)
}
