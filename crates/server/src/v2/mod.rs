//! The `/v2/` API: authorisation (see `access`), then dispatch from the
//! parsed endpoint to its handler.

use std::io;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use berth_oci::RepositoryName;
use berth_registry::auth::{scope, Access, Action, Credentials, Decision, Identity};
use berth_registry::{ByteStream, Caller, Error, Reader};
use futures_util::TryStreamExt;

use crate::auth;
use crate::error::ApiError;
use crate::route::{self, Endpoint, RouteError};
use crate::{App, API_VERSION};

pub(crate) use access::rate_headers;
use access::Need;
use uploads::Mount;
pub(crate) use uploads::{range_value, upload_location};

mod access;
mod blobs;
mod listing;
mod manifests;
mod mirrored;
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
        // A bug must never take the connection down without an answer: a
        // panic becomes a 500 in the spec's error shape.
        Ok(endpoint) => {
            crate::error::answer_panics(async {
                dispatch(&app, endpoint, req)
                    .await
                    .unwrap_or_else(IntoResponse::into_response)
            })
            .await
        }
        Err(RouteError::BadName(msg)) => ApiError::from(Error::NameInvalid(msg)).into_response(),
        Err(RouteError::NotFound) => ApiError::no_endpoint().into_response(),
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
    let ip = auth::client_ip(app, req.headers(), req.extensions());
    let identity = auth::identify(app, req.headers(), req.extensions(), ip).await?;
    let method = req.method().clone();
    if let Some(mirror) = &app.mirror {
        if let Some(name) = endpoint.repository() {
            let q = query(&req);
            let ns = query_value(&q, "ns");
            // The names this server is reached by matter only to a `?ns=`.
            let own = if ns.is_some() {
                own_hosts(app, req.headers())
            } else {
                Vec::new()
            };
            let own: Vec<&str> = own.iter().map(String::as_str).collect();
            let write = !matches!(method, Method::GET | Method::HEAD);
            let target = mirror.resolve(name, ns, &own, write).await?;
            if let berth_mirror::Target::Mirrored(repo) = target {
                // Boxed: mirrored requests are rare beside local pulls, and
                // their future is large (see `route`).
                return Box::pin(mirrored::handle(
                    app, mirror, repo, endpoint, method, req, &identity,
                ))
                .await;
            }
        }
    }
    let caller = match access::need(&endpoint, &method) {
        Need::Credentials => {
            if app.auth.enforced()
                && identity.account.is_none()
                && auth::credentials(req.headers()) == Credentials::None
            {
                return Err(auth::challenge(
                    app,
                    req.headers(),
                    None,
                    false,
                    "authentication required",
                ));
            }
            identity.caller(ip, false)
        }
        Need::Listing => {
            // A registry token is held to what it grants: listing the
            // catalog needs `registry:catalog:*`, as with the reference
            // registry.
            if app.auth.enforced() && identity.grants.as_ref().is_some_and(|g| !g.catalog) {
                return Err(auth::challenge(
                    app,
                    req.headers(),
                    Some("registry:catalog:*"),
                    true,
                    "listing the catalog needs a token with the scope registry:catalog:*",
                ));
            }
            identity.caller(ip, false)
        }
        Need::Repository(name, need) => {
            let decision = app.auth.decide(&identity, name, need).await?;
            // A client that is not logged in is asked for pull and push on
            // reads too: the token endpoint grants only what is allowed,
            // and clients that keep one token per repository (oras-py)
            // then need no second token to push after their first HEAD.
            let ask = if decision == Decision::Login && !need.contains(Action::Delete) {
                need.with(Action::Push).with(Action::Pull)
            } else {
                need
            };
            let mut scope = scope::repository_scope(name, ask);
            // A mount asks for its source too, as the reference registry
            // does, so that one token request gets everything it needs.
            if let Some(from) = mount_from(&endpoint, &req) {
                scope = format!("{scope} {}", scope::repository_scope(&from, Access::PULL));
            }
            let wanted = auth::Wanted {
                repository: name,
                need,
                scope,
            };
            auth::enforce(app, req.headers(), decision, &identity, ip, &wanted)?
        }
    };
    let is_manifest_read =
        matches!(endpoint, Endpoint::Manifest(..)) && matches!(method, Method::GET | Method::HEAD);
    let rate = if is_manifest_read {
        app.auth
            .pull_rate(&identity, ip, method == Method::GET)
            .await?
    } else {
        None
    };
    if let Some(r) = rate.filter(|r| !r.allowed) {
        return Err(Error::PullRateLimited(r).into());
    }
    let mut resp = route(app, endpoint, method, req, &identity, &caller).await?;
    if let Some(r) = rate {
        access::rate_headers(resp.headers_mut(), &r);
    }
    Ok(resp)
}

/// Runs the endpoint's handler.
///
/// Pulls (manifest and blob `GET`/`HEAD`) are awaited in place; every other
/// handler's future is boxed. A request future is laid out for its largest
/// arm and moved by value through every layer above it, so keeping the cold
/// arms (manifest `PUT` alone is several KiB) out of it makes each pull's
/// future, and every copy of it, a fraction of the size. An upload or push
/// pays one allocation, which its I/O dwarfs.
async fn route(
    app: &App,
    endpoint: Endpoint,
    method: Method,
    req: Request,
    identity: &Identity,
    caller: &Caller,
) -> Result<Response> {
    match (endpoint, method) {
        (Endpoint::Manifest(name, r), Method::GET) => {
            let reader = Reader {
                caller,
                site_admin: identity.is_site_admin_account(),
            };
            manifests::handle_get(app, &name, &r, req, Some(reader)).await
        }
        (Endpoint::Manifest(name, r), Method::HEAD) => {
            manifests::handle_get(app, &name, &r, req, None).await
        }
        (Endpoint::Blob(name, d), Method::GET) => {
            blobs::handle_get(app, &name, &d, req, false).await
        }
        (Endpoint::Blob(name, d), Method::HEAD) => {
            blobs::handle_get(app, &name, &d, req, true).await
        }
        (endpoint, method) => {
            Box::pin(route_cold(app, endpoint, method, req, identity, caller)).await
        }
    }
}

/// Every endpoint but the pulls: see [`route`].
async fn route_cold(
    app: &App,
    endpoint: Endpoint,
    method: Method,
    req: Request,
    identity: &Identity,
    caller: &Caller,
) -> Result<Response> {
    match (endpoint, method) {
        (Endpoint::Base, Method::GET | Method::HEAD) => {
            Ok(([(header::CONTENT_TYPE, "application/json")], "{}").into_response())
        }
        (Endpoint::Catalog, Method::GET) => listing::handle_catalog(app, req, identity).await,
        (Endpoint::Tags(name), Method::GET) => listing::handle_tags(app, &name, req).await,
        (Endpoint::Referrers(name, d), Method::GET) => {
            listing::handle_referrers(app, &name, &d, req).await
        }
        (Endpoint::Manifest(name, r), Method::PUT) => {
            manifests::handle_put(app, &name, &r, req, caller).await
        }
        (Endpoint::Manifest(name, r), Method::DELETE) => {
            manifests::handle_delete(app, &name, &r, caller).await
        }
        (Endpoint::Blob(name, d), Method::DELETE) => {
            blobs::handle_delete(app, &name, &d, caller).await
        }
        (Endpoint::UploadStart(name), Method::POST) => {
            let q = query(&req);
            let mount = mount_source(app, &name, &q, req.headers(), identity).await?;
            uploads::handle_start(app, &name, req, mount).await
        }
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

/// The `from` of a mount request (`POST .../blobs/uploads/?mount=D&from=R`)
/// when it is a valid repository name.
fn mount_from(endpoint: &Endpoint, req: &Request) -> Option<RepositoryName> {
    if !matches!(endpoint, Endpoint::UploadStart(_)) {
        return None;
    }
    let q = query(req);
    query_value(&q, "mount")?;
    query_value(&q, "from").and_then(|f| RepositoryName::parse(f).ok())
}

/// Whether and from where a cross-repository mount into `target` may be
/// attempted: from `from` if the caller may pull from it; without `from`,
/// from a repository holding the blob that the caller may pull from (with
/// auth off: wherever the blob is stored). A registry token that lacks
/// only the source's pull scope gets a 401 challenge for the target's and
/// the source's scopes; any other refusal falls back to a plain upload
/// (202), which tells the caller nothing about the source.
async fn mount_source(
    app: &App,
    target: &RepositoryName,
    q: &[(String, String)],
    headers: &HeaderMap,
    identity: &Identity,
) -> Result<Mount> {
    let Some(digest) = query_value(q, "mount") else {
        return Ok(Mount::Refused);
    };
    let from = match query_value(q, "from").map(RepositoryName::parse) {
        // An invalid name cannot be a readable source.
        Some(Err(_)) => return Ok(Mount::Refused),
        Some(Ok(from)) => Some(from),
        None => None,
    };
    if !app.auth.enforced() {
        return Ok(Mount::From(from));
    }
    let Some(from) = from else {
        // An invalid digest is refused by the upload handler.
        return Ok(match berth_oci::Digest::parse(digest) {
            Ok(d) => match app.auth.readable_holder(identity, &d).await? {
                Some(repo) => Mount::From(Some(repo)),
                None => Mount::Refused,
            },
            Err(_) => Mount::Refused,
        });
    };
    match app.auth.decide(identity, &from, Access::PULL).await? {
        Decision::Allow(_) => Ok(Mount::From(Some(from))),
        Decision::Scope => Err(auth::challenge(
            app,
            headers,
            Some(&format!(
                "{} {}",
                scope::repository_scope(target, Access::of(&[Action::Pull, Action::Push])),
                scope::repository_scope(&from, Access::PULL)
            )),
            true,
            &format!(
                "the registry token does not grant pull access to repository {from}, \
                 the mount's source; request one with the scope in the challenge"
            ),
        )),
        Decision::Login | Decision::Deny => Ok(Mount::Refused),
    }
}

/// The names clients reach this server by: its `Host` header and its
/// external URL's host (a containerd `?ns=` naming one of them is local).
fn own_hosts(app: &App, headers: &HeaderMap) -> Vec<String> {
    let mut hosts: Vec<String> = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .into_iter()
        .collect();
    if let Some(url) = &app.settings.external_url {
        let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
        hosts.push(rest.split('/').next().unwrap_or(rest).to_owned());
    }
    hosts
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

/// Parses a digest from a path or query, as DIGEST_INVALID on failure.
pub(crate) fn parse_digest(s: &str) -> Result<berth_oci::Digest> {
    berth_oci::Digest::parse(s).map_err(|e| Error::DigestInvalid(e.to_string()).into())
}

#[cfg(test)]
mod future_sizes {
    use super::*;
    use std::future::Future;
    use std::mem::size_of;

    fn of_route<'a, F: Future + 'a>(
        _: impl FnOnce(&'a App, Endpoint, Method, Request, &'a Identity, &'a Caller) -> F,
    ) -> usize {
        size_of::<F>()
    }

    fn of_handle<F: Future>(_: impl FnOnce(State<Arc<App>>, Request) -> F) -> usize {
        size_of::<F>()
    }

    /// Every layer above the handler (axum's boxing, the observing
    /// middleware, hyper's service) moves the request's future by value,
    /// and each move copies all of it: a manifest pull spent nearly half of
    /// its instructions in those copies when the future was 23 KiB
    /// (`berth bench --instructions`). The budget keeps cold handlers boxed
    /// (see `route`).
    #[test]
    fn the_request_future_stays_small() {
        let (route, handle) = (of_route(route), of_handle(handle));
        eprintln!("route future: {route} bytes; /v2 request future: {handle} bytes");
        // The pulls' own futures (a manifest GET with its signature check)
        // are most of `route`'s: 4.2 KiB with the signature formats of
        // issue 16. A cold handler inlined again would add several KiB.
        assert!(route <= 5 * 1024, "route's future is {route} bytes");
        assert!(
            handle <= 8 * 1024,
            "the /v2 request future is {handle} bytes"
        );
    }
}
