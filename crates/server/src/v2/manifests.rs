//! `GET`/`HEAD`/`PUT`/`DELETE /v2/<name>/manifests/<reference>`.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::response::Response;
use berth_oci::Reference;
use berth_registry::{accepts, Error};
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
    name: &str,
    reference: &str,
    req: Request,
    head: bool,
) -> Result<Response> {
    let reference = parse_reference(reference)?;
    let m = app.registry.get_manifest(name, &reference).await?;
    let accept = req.headers().get_all(header::ACCEPT);
    if !accepts(accept.iter().filter_map(|v| v.to_str().ok()), &m.media_type) {
        return Err(Error::ManifestNotAcceptable {
            reference: reference.to_string(),
            media_type: m.media_type.clone(),
        }
        .into());
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
        return Ok(b
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
            .unwrap_or_default());
    }
    let b = b.header(header::CONTENT_LENGTH, m.content.len());
    let body = if head {
        Body::empty()
    } else {
        Body::from(m.content.clone())
    };
    Ok(b.body(body).unwrap_or_default())
}

pub(super) async fn handle_put(
    app: &App,
    name: &str,
    reference: &str,
    req: Request,
) -> Result<Response> {
    let reference = parse_reference(reference)?;
    let limit = app.registry.settings().max_manifest_bytes;
    if let Some(len) = content_length(req.headers())? {
        if len > limit as u64 {
            return Err(Error::ManifestTooLarge { size: len, limit }.into());
        }
    }
    let q = query(&req);
    let extra_tags: Vec<String> = q
        .iter()
        .filter(|(k, _)| k == "tag")
        .map(|(_, v)| v.clone())
        .collect();
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = http_body_util::Limited::new(req.into_body(), limit + 1)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                Error::ManifestTooLarge {
                    size: limit as u64 + 1,
                    limit,
                }
            } else {
                Error::BodyRead
            }
        })?
        .to_bytes();
    let pushed = app
        .registry
        .put_manifest(name, &reference, content_type.as_deref(), body, &extra_tags)
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
    Ok(b.body(Body::empty()).unwrap_or_default())
}

pub(super) async fn handle_delete(app: &App, name: &str, reference: &str) -> Result<Response> {
    let reference = parse_reference(reference)?;
    app.registry.delete_manifest(name, &reference).await?;
    Ok(Response::builder()
        .status(StatusCode::ACCEPTED)
        .header(header::CONTENT_LENGTH, 0)
        .body(Body::empty())
        .unwrap_or_default())
}
