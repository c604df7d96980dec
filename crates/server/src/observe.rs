//! Watching every request: the HTTP metrics and the access log, recorded
//! by the listener around the whole router ([`begin`], then
//! [`Start::answered`]; see [`crate::served`]).
//!
//! A request is labelled by its route *template*, never its raw path:
//! `/v2/` paths by the shape of their end ([`template`], no allocation),
//! management API paths by the route axum matched (interned once per
//! route). The request is measured until its response body has been sent
//! (or dropped), so a blob pull's time includes its transfer, and bytes
//! are counted as they pass: the request body's only when it has one (one
//! shared counter), the response's in the body wrapper that also records
//! the request when it ends.
//!
//! The access log is one `tracing` event per request at `info` on the
//! target `berth::access`: method, route template, repository, status,
//! bytes in and out, duration, client address and account; never the
//! query string, credentials or upload ids. Its JSON form comes from
//! `log_format = "json"`. When both metrics and the access log are off the
//! middleware is not installed at all.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use http_body::Frame;

use crate::App;

/// The `tracing` target of the access log's lines.
pub const ACCESS_TARGET: &str = "berth::access";

/// What the server records and serves about itself.
#[derive(Clone)]
pub struct Settings {
    /// Record the HTTP metrics (the other families record regardless of
    /// this, into the process's families, unless switched off there).
    pub metrics: bool,
    /// Serve `/metrics` on this router (off when it has a listener of its
    /// own, or when metrics are off).
    pub metrics_route: bool,
    /// A bearer token `/metrics` requires, if any.
    pub metrics_token: Option<String>,
    /// Write the access log.
    pub access_log: bool,
    /// Write access-log lines here rather than as `tracing` events (the
    /// binary's text log); the log level still decides whether there is
    /// an access log at all.
    pub access_sink: Option<Arc<dyn AccessSink>>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            metrics: true,
            metrics_route: true,
            metrics_token: None,
            access_log: true,
            access_sink: None,
        }
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("metrics", &self.metrics)
            .field("metrics_route", &self.metrics_route)
            .field(
                "metrics_token",
                &self.metrics_token.as_ref().map(|_| "(set)"),
            )
            .field("access_log", &self.access_log)
            .field("access_sink", &self.access_sink.is_some())
            .finish()
    }
}

impl Settings {
    /// Whether the middleware has anything to do.
    pub fn watching(&self) -> bool {
        self.metrics || self.access_log
    }
}

/// The account a request authenticated as, filled in by
/// [`crate::auth::identify`] when the access log wants it.
#[derive(Clone, Default)]
pub(crate) struct Account(Arc<OnceLock<String>>);

impl Account {
    /// Notes who the request is.
    pub(crate) fn set(&self, name: &str) {
        let _ = self.0.set(name.to_owned());
    }
}

/// The route template of a management API request, passed from the
/// matched route ([`api_route`]) back out to [`Start::answered`] on the response.
#[derive(Clone, Copy)]
struct ApiRoute(&'static str);

/// Interned management API templates (a fixed set: one per route).
fn intern(template: &str) -> &'static str {
    static SEEN: OnceLock<RwLock<HashSet<&'static str>>> = OnceLock::new();
    let seen = SEEN.get_or_init(Default::default);
    if let Some(t) = seen.read().unwrap_or_else(|p| p.into_inner()).get(template) {
        return t;
    }
    let mut w = seen.write().unwrap_or_else(|p| p.into_inner());
    if let Some(t) = w.get(template) {
        return t;
    }
    let leaked: &'static str = Box::leak(template.to_owned().into_boxed_str());
    w.insert(leaked);
    leaked
}

/// Route layer of the management API: tells [`Start::answered`] which route matched.
pub(crate) async fn api_route(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| intern(m.as_str()));
    let mut resp = next.run(req).await;
    if let Some(route) = route {
        resp.extensions_mut().insert(ApiRoute(route));
    }
    resp
}

/// The template of a path outside the management API, and the repository
/// it names (for `/v2/<name>/...`).
pub fn template(path: &str) -> (&'static str, Option<&str>) {
    let Some(rest) = path.strip_prefix("/v2") else {
        let t = match path {
            "/token" => "/token",
            "/metrics" => "/metrics",
            "/livez" => "/livez",
            "/readyz" => "/readyz",
            p if p.starts_with("/api/") => "/api/{unknown}",
            p if p == "/" || p.starts_with("/ui") => "/ui/{page}",
            _ => "{unknown}",
        };
        return (t, None);
    };
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    match rest {
        "" => return ("/v2/", None),
        "_catalog" => return ("/v2/_catalog", None),
        _ => {}
    }
    // The endpoint is the end of the path (see `route`): match it there,
    // with suffix compares and one split at the last `/` (no substring
    // search: this runs on every request).
    let ends: [(&str, &'static str); 3] = [
        ("/blobs/uploads/", "/v2/{name}/blobs/uploads/"),
        ("/blobs/uploads", "/v2/{name}/blobs/uploads/"),
        ("/tags/list", "/v2/{name}/tags/list"),
    ];
    for (end, t) in ends {
        if let Some(name) = rest.strip_suffix(end).filter(|n| !n.is_empty()) {
            return (t, Some(name));
        }
    }
    let Some((head, _)) = rest.rsplit_once('/').filter(|(_, last)| !last.is_empty()) else {
        return ("/v2/{unknown}", None);
    };
    let kinds: [(&str, &'static str); 4] = [
        ("/blobs/uploads", "/v2/{name}/blobs/uploads/{uuid}"),
        ("/manifests", "/v2/{name}/manifests/{reference}"),
        ("/blobs", "/v2/{name}/blobs/{digest}"),
        ("/referrers", "/v2/{name}/referrers/{digest}"),
    ];
    for (kind, t) in kinds {
        if let Some(name) = head.strip_suffix(kind).filter(|n| !n.is_empty()) {
            return (t, Some(name));
        }
    }
    ("/v2/{unknown}", None)
}

/// The method as a label (a fixed set; anything else is `OTHER`).
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// What is known of a request before its handler runs.
pub(crate) struct Start {
    started: Instant,
    method: &'static str,
    route: &'static str,
    received: Option<Arc<AtomicU64>>,
    /// Held across the handler: a request whose client went away before
    /// the answer leaves the gauge too.
    in_flight: Option<InFlight>,
    log: Option<AccessLog>,
}

/// Notes the request's route, client and start, and counts its body.
pub(crate) fn begin(app: &App, req: Request) -> (Request, Start) {
    let started = Instant::now();
    let settings = &app.settings.observe;
    let method = method_label(req.method());
    let (route, repository) = template(req.uri().path());
    // With the access log filtered out by the log level (the default
    // `info` keeps it), nothing of it is gathered.
    let logging =
        settings.access_log && tracing::enabled!(target: ACCESS_TARGET, tracing::Level::INFO);
    let log = logging.then(|| AccessLog {
        repository: repository.map(str::to_owned),
        client: crate::auth::client_ip(app, req.headers(), req.extensions()),
        account: Account::default(),
        sink: settings.access_sink.clone(),
    });
    let mut req = req;
    if let Some(log) = &log {
        req.extensions_mut().insert(log.account.clone());
    }
    let received = if http_body::Body::is_end_stream(req.body()) {
        None
    } else {
        let n = Arc::new(AtomicU64::new(0));
        let counted = n.clone();
        req = req.map(|inner| Body::new(Counted { inner, n: counted }));
        Some(n)
    };
    let start = Start {
        started,
        method,
        route,
        received,
        in_flight: settings.metrics.then(InFlight::new),
        log,
    };
    (req, start)
}

impl Start {
    /// Wraps the response's body, which records the request when it ends.
    pub(crate) fn answered(self, resp: Response) -> Response {
        let route = resp
            .extensions()
            .get::<ApiRoute>()
            .map_or(self.route, |r| r.0);
        let finish = Finish {
            started: self.started,
            route,
            method: self.method,
            status: resp.status().as_u16(),
            received: self.received,
            sent: 0,
            in_flight: self.in_flight,
            log: self.log,
        };
        resp.map(|inner| {
            Body::new(Observed {
                inner,
                finish: Some(finish),
            })
        })
    }
}

/// What the access log needs beyond the metrics.
struct AccessLog {
    repository: Option<String>,
    client: Option<std::net::IpAddr>,
    account: Account,
    sink: Option<Arc<dyn AccessSink>>,
}

/// One request's access-log line, as handed to an [`AccessSink`].
#[derive(Debug, Clone, Copy)]
pub struct AccessLine<'a> {
    /// The method ([`method_label`]: a fixed set).
    pub method: &'static str,
    /// The route template.
    pub route: &'static str,
    /// The repository the path names, if any.
    pub repository: Option<&'a str>,
    /// The response's status.
    pub status: u16,
    /// Request body bytes received.
    pub bytes_in: u64,
    /// Response body bytes sent.
    pub bytes_out: u64,
    /// From the request's arrival to its response's last byte.
    pub duration: std::time::Duration,
    /// The client's address (see `trusted_proxies`).
    pub client: Option<std::net::IpAddr>,
    /// The account the request authenticated as.
    pub account: Option<&'a str>,
}

/// Where access-log lines go instead of a `tracing` event: the binary's
/// text log writes them itself, without `tracing`'s dispatch and field
/// visitors. Its lines must read exactly as the `tracing` event would.
pub trait AccessSink: Send + Sync + 'static {
    /// Writes one request's line.
    fn write(&self, line: &AccessLine<'_>);
}

/// A request being answered, recorded when its response ends.
struct Finish {
    started: Instant,
    route: &'static str,
    method: &'static str,
    status: u16,
    received: Option<Arc<AtomicU64>>,
    sent: u64,
    /// Set when metrics are recorded.
    in_flight: Option<InFlight>,
    log: Option<AccessLog>,
}

/// One request in `berth_http_requests_in_flight`, until dropped.
struct InFlight;

impl InFlight {
    fn new() -> InFlight {
        berth_metrics::get().http.in_flight.inc();
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        berth_metrics::get().http.in_flight.dec();
    }
}

impl Finish {
    fn record(self) {
        let elapsed = self.started.elapsed();
        let received = self
            .received
            .as_ref()
            .map_or(0, |n| n.load(Ordering::Relaxed));
        if let Some(in_flight) = self.in_flight {
            drop(in_flight);
            let m = berth_metrics::get();
            m.http_request(
                self.route,
                self.method,
                self.status,
                elapsed,
                received,
                self.sent,
            );
        }
        if let Some(log) = self.log {
            if let Some(sink) = &log.sink {
                sink.write(&AccessLine {
                    method: self.method,
                    route: self.route,
                    repository: log.repository.as_deref(),
                    status: self.status,
                    bytes_in: received,
                    bytes_out: self.sent,
                    duration: elapsed,
                    client: log.client,
                    account: log.account.0.get().map(String::as_str),
                });
                return;
            }
            tracing::info!(
                target: ACCESS_TARGET,
                method = self.method,
                route = self.route,
                repository = log.repository.as_deref(),
                status = self.status,
                bytes_in = received,
                bytes_out = self.sent,
                duration_ms = elapsed.as_secs_f64() * 1000.0,
                client = log.client.map(tracing::field::display),
                account = log.account.0.get().map(String::as_str),
                "request"
            );
        }
    }
}

/// A request body counting its bytes.
struct Counted {
    inner: Body,
    n: Arc<AtomicU64>,
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &r {
            if let Some(data) = frame.data_ref() {
                self.n.fetch_add(data.len() as u64, Ordering::Relaxed);
            }
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that counts its bytes and records the request when it
/// ends or is dropped (the client went away).
struct Observed {
    inner: Body,
    finish: Option<Finish>,
}

impl http_body::Body for Observed {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        match &r {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(f)) = (frame.data_ref(), self.finish.as_mut()) {
                    f.sent += data.len() as u64;
                }
            }
            Poll::Ready(None) => {
                if let Some(f) = self.finish.take() {
                    f.record();
                }
            }
            _ => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        if let Some(f) = self.finish.take() {
            f.record();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::template;

    #[test]
    fn paths_become_templates_and_repositories() {
        let cases = [
            ("/v2", "/v2/", None),
            ("/v2/", "/v2/", None),
            ("/v2/_catalog", "/v2/_catalog", None),
            (
                "/v2/acme/app/manifests/latest",
                "/v2/{name}/manifests/{reference}",
                Some("acme/app"),
            ),
            (
                "/v2/a/blobs/sha256:00",
                "/v2/{name}/blobs/{digest}",
                Some("a"),
            ),
            (
                "/v2/a/b/blobs/uploads/",
                "/v2/{name}/blobs/uploads/",
                Some("a/b"),
            ),
            (
                "/v2/a/blobs/uploads",
                "/v2/{name}/blobs/uploads/",
                Some("a"),
            ),
            (
                "/v2/x/y/z/blobs/uploads/0b1c",
                "/v2/{name}/blobs/uploads/{uuid}",
                Some("x/y/z"),
            ),
            ("/v2/a/tags/list", "/v2/{name}/tags/list", Some("a")),
            (
                "/v2/a/referrers/sha256:1",
                "/v2/{name}/referrers/{digest}",
                Some("a"),
            ),
            // A repository named like an endpoint keyword.
            (
                "/v2/blobs/manifests/v1",
                "/v2/{name}/manifests/{reference}",
                Some("blobs"),
            ),
            ("/v2/a/unknown/x", "/v2/{unknown}", None),
            ("/v2/manifests/", "/v2/{unknown}", None),
            ("/token", "/token", None),
            ("/metrics", "/metrics", None),
            ("/favicon.ico", "{unknown}", None),
            ("/etc/passwd/../x", "{unknown}", None),
        ];
        for (path, t, repo) in cases {
            assert_eq!(template(path), (t, repo), "{path}");
        }
    }
}
