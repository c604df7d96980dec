//! `/v2/` requests for a mirrored repository (see `berth_mirror`): reads
//! are answered from the mirror's cache or its upstream, writes are
//! refused (a mirror is read-only to clients), and who may pull through is
//! the mirror's `pull_access` setting.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::Response;
use berth_mirror::{BlobAnswer, Mirror, MirrorRepo, PullAccess};
use berth_registry::auth::Identity;
use berth_registry::Error;

use super::{blobs, listing, manifests, parse_digest, Result};
use crate::auth;
use crate::route::Endpoint;
use crate::App;

/// The header saying a tag was served from the cache without the
/// upstream confirming it.
pub(crate) const STALE_HEADER: &str = "berth-mirror-stale";

pub(super) async fn handle(
    app: &App,
    mirror: &Mirror,
    repo: MirrorRepo,
    endpoint: Endpoint,
    method: Method,
    req: Request,
    identity: &Identity,
) -> Result<Response> {
    let upstream = &repo.upstream.config;
    if !matches!(method, Method::GET | Method::HEAD) {
        return Err(Error::Denied(format!(
            "repository {} is a read-only mirror of {} at upstream {} ({}): {method} is refused; \
             push to a repository of your own namespace instead",
            repo.local, repo.remote, upstream.name, upstream.url
        ))
        .into());
    }
    if mirror.pull_access() == PullAccess::Authenticated
        && app.auth.enforced()
        && identity.account.is_none()
    {
        let scope = format!("repository:{}:pull", repo.local);
        return Err(auth::challenge(
            app,
            req.headers(),
            Some(&scope),
            false,
            &format!(
                "pulling through the mirror of upstream {} needs an account: log in first",
                upstream.name
            ),
        ));
    }
    let head = method == Method::HEAD;
    match endpoint {
        Endpoint::Manifest(_, r) => {
            let reference = manifests::parse_read_reference(&r)?;
            let served = mirror.manifest(&repo, &reference).await?;
            let mut resp =
                manifests::answer(app, &repo.local, &reference, &served.manifest, &req, head)?;
            if served.stale {
                resp.headers_mut()
                    .insert(STALE_HEADER, HeaderValue::from_static("true"));
            }
            Ok(resp)
        }
        Endpoint::Blob(_, d) => {
            let digest = parse_digest(&d)?;
            if head {
                let size = mirror.blob_size(&repo, &digest).await?;
                return Ok(Response::builder()
                    .header("docker-content-digest", digest.as_str())
                    .header(header::CONTENT_TYPE, "application/octet-stream")
                    .header(header::CONTENT_LENGTH, size)
                    .body(Body::empty())?);
            }
            match mirror.blob(&repo, &digest).await? {
                BlobAnswer::Local => blobs::handle_get(app, &repo.local, &d, req, false).await,
                BlobAnswer::Streaming { size, body } => {
                    // A Range is ignored while the blob arrives: the whole
                    // blob is served, as HTTP allows.
                    let mut b = Response::builder()
                        .status(StatusCode::OK)
                        .header("docker-content-digest", digest.as_str())
                        .header(header::CONTENT_TYPE, "application/octet-stream");
                    if let Some(size) = size {
                        b = b.header(header::CONTENT_LENGTH, size);
                    }
                    Ok(b.body(Body::from_stream(body))?)
                }
            }
        }
        Endpoint::Tags(_) => listing::handle_tags(app, &repo.local, req).await,
        Endpoint::Referrers(_, d) => listing::handle_referrers(app, &repo.local, &d, req).await,
        _ => Err(Error::Unsupported(format!(
            "{method} is not offered on the mirrored repository {}",
            repo.local
        ))
        .into()),
    }
}
