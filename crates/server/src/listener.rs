//! Accepting connections, with the limits that keep one client from taking
//! the listener down.
//!
//! - **Caps.** At most `max_connections` connections in total and
//!   `max_connections_per_client` from one client address (the TCP peer);
//!   a connection over a cap gets a `503` with `Retry-After` and is closed
//!   at once, before it costs anything else.
//! - **Header read.** A request's head must arrive within
//!   `header_read_timeout` of the connection being ready for it (for
//!   HTTP/1.1 keep-alive connections this also bounds the wait for the next
//!   request).
//! - **Idle.** A connection with no request in flight that moves no byte
//!   for `idle_timeout` is closed.
//! - **Progress.** A request in flight is closed when its body makes no
//!   progress (the handler waits for bytes that do not come), or the client
//!   stops reading the response, for `body_timeout`. What is timed is
//!   progress, never the total: a large upload over a slow link may take
//!   hours as long as bytes keep arriving, and a handler that works for a
//!   long time without reading or writing (a garbage collection run) is
//!   not cut off.
//!
//! - **TLS.** With a [`Tls`] configuration, each connection's handshake
//!   runs in the connection's own task, never in the accept loop, and must
//!   finish within `header_read_timeout`; the caps count it from accept.
//!
//! The activity of a connection is tracked by wrapping its socket (bytes
//! read and written, writes blocked on the client), its request bodies
//! (waiting for the client's bytes) and its responses (a request is in
//! flight until its response body is dropped); a watchdog per connection
//! compares that with the limits.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::Served;
use axum::body::Body;
use axum::extract::ConnectInfo;
use berth_registry::scrub::Counted;
use bytes::Bytes;
use http_body::Frame;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tower_service::Service;

use crate::tls::{self, ClientCertificate, Tls};

/// The listener's limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Time allowed for a request's head to arrive.
    pub header_read_timeout: Duration,
    /// A connection without a request in flight is closed after this long
    /// without traffic.
    pub idle_timeout: Duration,
    /// A request whose body, or whose response, makes no progress for
    /// this long is closed.
    pub body_timeout: Duration,
    /// Connections open at once, in total.
    pub max_connections: usize,
    /// Connections open at once from one client address (0: no cap; set 0
    /// behind a reverse proxy, whose address every connection has).
    pub max_connections_per_client: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
            body_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            max_connections_per_client: 256,
        }
    }
}

/// What one connection is doing, shared by its socket, bodies and watchdog.
struct Activity {
    start: Instant,
    /// Milliseconds since `start` of the last byte read or written.
    last_io: AtomicU64,
    /// Requests whose response has not been dropped yet.
    in_flight: AtomicUsize,
    /// Since when (ms since `start`, plus one; 0: not) a request body waits
    /// for the client's bytes.
    body_waiting: AtomicU64,
    /// Since when (same encoding) a write waits for the client to read.
    write_blocked: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last_io: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            body_waiting: AtomicU64::new(0),
            write_blocked: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn touch(&self) {
        self.last_io.store(self.now(), Ordering::Relaxed);
    }

    fn mark(flag: &AtomicU64, now: u64) {
        let _ = flag.compare_exchange(0, now + 1, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Why the connection should be closed now, if it should.
    fn overdue(&self, limits: &ConnectionLimits) -> Option<&'static str> {
        let now = self.now();
        let since = |flag: &AtomicU64| match flag.load(Ordering::Relaxed) {
            0 => None,
            t => Some(now.saturating_sub(t - 1)),
        };
        let body = limits.body_timeout.as_millis() as u64;
        if since(&self.body_waiting).is_some_and(|w| w >= body) {
            return Some("the request body made no progress");
        }
        if since(&self.write_blocked).is_some_and(|w| w >= body) {
            return Some("the client stopped reading the response");
        }
        let idle = now.saturating_sub(self.last_io.load(Ordering::Relaxed));
        if self.in_flight.load(Ordering::Relaxed) == 0
            && idle >= limits.idle_timeout.as_millis() as u64
        {
            return Some("the connection was idle");
        }
        None
    }
}

/// The socket, recording its traffic.
struct Tracked {
    tcp: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.tcp).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.tcp).poll_write(cx, buf);
        self.written(&r);
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs);
        self.written(&r);
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

impl Tracked {
    fn written(&self, r: &Poll<std::io::Result<usize>>) {
        match r {
            Poll::Pending => Activity::mark(&self.activity.write_blocked, self.activity.now()),
            Poll::Ready(Ok(n)) if *n > 0 => {
                self.activity.write_blocked.store(0, Ordering::Relaxed);
                self.activity.touch();
            }
            Poll::Ready(_) => {}
        }
    }
}

/// A request body, recording when it waits for the client.
struct RequestBody {
    inner: Incoming,
    activity: Arc<Activity>,
}

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        match &r {
            Poll::Pending => Activity::mark(&self.activity.body_waiting, self.activity.now()),
            Poll::Ready(_) => self.activity.body_waiting.store(0, Ordering::Relaxed),
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

impl Drop for RequestBody {
    fn drop(&mut self) {
        self.activity.body_waiting.store(0, Ordering::Relaxed);
    }
}

/// A request in flight, until its response body is dropped.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn new(activity: Arc<Activity>) -> InFlight {
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// A response body carrying its request's [`InFlight`], and its place in
/// the registry's traffic.
struct ResponseBody {
    inner: Body,
    _in_flight: InFlight,
    _counted: Option<Counted>,
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Open connections per client address.
struct Table {
    total: usize,
    per_client: HashMap<IpAddr, usize>,
}

/// A connection's place in the [`Table`], given back when dropped.
struct Place {
    table: Arc<Mutex<Table>>,
    ip: IpAddr,
}

impl Place {
    fn take(table: &Arc<Mutex<Table>>, ip: IpAddr, limits: &ConnectionLimits) -> Option<Place> {
        let mut t = table.lock().unwrap_or_else(|p| p.into_inner());
        if t.total >= limits.max_connections {
            return None;
        }
        let mine = t.per_client.entry(ip).or_insert(0);
        if limits.max_connections_per_client > 0 && *mine >= limits.max_connections_per_client {
            return None;
        }
        *mine += 1;
        t.total += 1;
        Some(Place {
            table: table.clone(),
            ip,
        })
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        t.total = t.total.saturating_sub(1);
        if let Some(n) = t.per_client.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                t.per_client.remove(&self.ip);
            }
        }
    }
}

/// The answer to a connection over a cap (best effort: written if the
/// socket takes it at once).
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
retry-after: 1\r\nconnection: close\r\ncontent-length: 134\r\n\r\n\
{\"errors\":[{\"code\":\"UNAVAILABLE\",\"message\":\"too many connections from this client or in total; retry later, over fewer connections\"}]}";

/// The largest number of open files this process may have, if known.
fn open_files_limit() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Serves `router` on `listener` under `limits` until `shutdown`
/// resolves, then drains the connections in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: impl Into<Served>,
    limits: ConnectionLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_on(listener, router.into(), limits, None, shutdown).await
}

/// [`serve`], over TLS when `tls` is given: each connection's handshake
/// runs in its own task (never in the accept loop) and must complete
/// within the header-read timeout; the connection caps apply before it.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    router: Served,
    mut limits: ConnectionLimits,
    tls: Option<Arc<Tls>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Some(files) = open_files_limit() {
        // Leave descriptors for the database, blobs and uploads.
        let room = files.saturating_sub(256).max(64);
        if limits.max_connections > room {
            tracing::info!(
                max_connections = room,
                configured = limits.max_connections,
                open_files = files,
                "max_connections lowered to fit the open-files limit (raise it with ulimit -n)"
            );
            limits.max_connections = room;
        }
    }
    let limits = Arc::new(limits);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let table = Arc::new(Mutex::new(Table {
        total: 0,
        per_client: HashMap::new(),
    }));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors or memory, or a connection reset
                    // before it was accepted: wait a moment, go on.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Some(place) = Place::take(&table, peer.ip(), &limits) else {
            tracing::debug!(%peer, "connection refused: over the connection caps");
            let _ = tcp.try_write(REFUSAL);
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let activity = Arc::new(Activity::new());
        let tracked = Tracked {
            tcp,
            activity: activity.clone(),
        };
        let limits = limits.clone();
        let Some(tls) = &tls else {
            let service = service(&router, &activity, peer, false, None);
            let conn = builder
                .serve_connection_with_upgrades(TokioIo::new(tracked), service)
                .into_owned();
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                let _place = place;
                run(conn, &activity, &limits, peer).await;
            });
            continue;
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.config());
        let (router, builder, watcher) = (router.clone(), builder.clone(), graceful.watcher());
        tokio::spawn(async move {
            let _place = place;
            let handshake =
                tokio::time::timeout(limits.header_read_timeout, acceptor.accept(tracked));
            let stream = match handshake.await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let certificate = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|leaf| tls::subject_of(leaf))
                .map(|subject| ClientCertificate {
                    subject: subject.into(),
                });
            let service = service(&router, &activity, peer, true, certificate);
            let conn = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .into_owned();
            run(watcher.watch(conn), &activity, &limits, peer).await;
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// The service of one connection: `router`, with the client's address
/// (and certificate, if it presented one) on each request, its body and
/// response tracked. Over TLS (`tls`), an HTTP/2 request's authority
/// becomes its `Host` header, where handlers look for it.
fn service(
    served: &Served,
    activity: &Arc<Activity>,
    peer: SocketAddr,
    tls: bool,
    certificate: Option<ClientCertificate>,
) -> impl hyper::service::Service<
    hyper::Request<Incoming>,
    Response = hyper::Response<Body>,
    Error = std::convert::Infallible,
    Future = impl std::future::Future<
        Output = Result<hyper::Response<Body>, std::convert::Infallible>,
    > + Send
                 + 'static,
> + Clone
       + Send
       + 'static {
    let served = served.clone();
    let activity = activity.clone();
    hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let mut router = served.router.clone();
        let watch = served.watch.clone();
        let in_flight = InFlight::new(activity.clone());
        let counted = served.traffic.as_ref().map(|t| t.begin());
        let activity = activity.clone();
        let certificate = certificate.clone();
        async move {
            let mut req = req.map(|inner| Body::new(RequestBody { inner, activity }));
            req.extensions_mut().insert(ConnectInfo(peer));
            if tls {
                if let Some(c) = certificate {
                    req.extensions_mut().insert(c);
                }
                if !req.headers().contains_key(http::header::HOST) {
                    let host = req
                        .uri()
                        .authority()
                        .and_then(|a| http::HeaderValue::from_str(a.as_str()).ok());
                    if let Some(host) = host {
                        req.headers_mut().insert(http::header::HOST, host);
                    }
                }
            }
            let (req, observing) = match &watch {
                Some(app) => {
                    let (req, start) = crate::observe::begin(app, req);
                    (req, Some(start))
                }
                None => (req, None),
            };
            let mut resp = router.call(req).await?;
            if let Some(start) = observing {
                resp = start.answered(resp);
            }
            Ok::<_, std::convert::Infallible>(resp.map(|inner| {
                Body::new(ResponseBody {
                    inner,
                    _in_flight: in_flight,
                    _counted: counted,
                })
            }))
        }
    })
}

/// Drives a connection until it ends or its watchdog closes it.
async fn run<E: std::fmt::Display>(
    conn: impl std::future::Future<Output = Result<(), E>>,
    activity: &Activity,
    limits: &ConnectionLimits,
    peer: SocketAddr,
) {
    tokio::select! {
        done = conn => {
            if let Err(e) = done {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        }
        why = watchdog(activity, limits) => {
            tracing::debug!(%peer, "closing the connection: {why}");
        }
    }
}

/// Resolves with the reason once the connection breaks a limit.
async fn watchdog(activity: &Activity, limits: &ConnectionLimits) -> &'static str {
    let shortest = limits.idle_timeout.min(limits.body_timeout);
    let tick = (shortest / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    loop {
        tokio::time::sleep(tick).await;
        if let Some(why) = activity.overdue(limits) {
            return why;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_client_and_in_total() {
        let limits = ConnectionLimits {
            max_connections: 3,
            max_connections_per_client: 2,
            ..Default::default()
        };
        let table = Arc::new(Mutex::new(Table {
            total: 0,
            per_client: HashMap::new(),
        }));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let a1 = Place::take(&table, a, &limits).unwrap();
        let _a2 = Place::take(&table, a, &limits).unwrap();
        assert!(Place::take(&table, a, &limits).is_none(), "per client");
        let _b1 = Place::take(&table, b, &limits).unwrap();
        assert!(Place::take(&table, b, &limits).is_none(), "in total");
        drop(a1);
        assert!(Place::take(&table, b, &limits).is_some(), "given back");
        assert_eq!(
            REFUSAL.len() - REFUSAL.windows(4).position(|w| w == b"\r\n\r\n").unwrap() - 4,
            134
        );
    }

    #[test]
    fn progress_is_timed_not_the_total() {
        let limits = ConnectionLimits {
            idle_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(5),
            ..Default::default()
        };
        // A connection 60 s old whose last byte moved at its start.
        let a = Activity {
            start: Instant::now() - Duration::from_secs(60),
            ..Activity::new()
        };
        assert_eq!(a.overdue(&limits), Some("the connection was idle"));
        // A handler busy without I/O is not cut off, however long.
        a.in_flight.store(1, Ordering::Relaxed);
        assert_eq!(a.overdue(&limits), None);
        // A body waiting 2 s is fine; 10 s is not.
        a.body_waiting.store(58_001, Ordering::Relaxed);
        assert_eq!(a.overdue(&limits), None);
        a.body_waiting.store(50_001, Ordering::Relaxed);
        assert_eq!(
            a.overdue(&limits),
            Some("the request body made no progress")
        );
        a.body_waiting.store(0, Ordering::Relaxed);
        a.write_blocked.store(50_001, Ordering::Relaxed);
        assert_eq!(
            a.overdue(&limits),
            Some("the client stopped reading the response")
        );
    }
}
