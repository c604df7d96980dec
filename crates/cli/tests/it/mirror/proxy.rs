//! A counting HTTP proxy in front of an upstream registry: it logs every
//! request line, adds `RateLimit-*` headers to the upstream's answers, and
//! when told to, answers `429 Too Many Requests` with a `Retry-After`
//! itself. One request per connection (`Connection: close` both ways), so
//! a request line is all it needs to read. It also records when each
//! request came and the most it had in flight at once (a request is in
//! flight until its answer was relayed whole), and can hold every request
//! a while before passing it on (so that concurrent ones overlap).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A running proxy.
pub struct Proxy {
    /// `127.0.0.1:PORT`
    pub addr: String,
    log: Arc<Mutex<Vec<String>>>,
    limited: Arc<AtomicBool>,
    flight: Arc<Flight>,
    _rt: tokio::runtime::Runtime,
}

/// Requests in flight, and when each arrived.
#[derive(Default)]
struct Flight {
    now: AtomicUsize,
    max: AtomicUsize,
    arrivals: Mutex<Vec<Instant>>,
    /// Milliseconds each request is held before it is passed on.
    delay_ms: AtomicU64,
}

/// One request in flight until dropped.
struct InFlight<'a>(&'a Flight);

impl<'a> InFlight<'a> {
    fn begin(f: &'a Flight) -> InFlight<'a> {
        f.arrivals.lock().unwrap().push(Instant::now());
        let n = f.now.fetch_add(1, Ordering::SeqCst) + 1;
        f.max.fetch_max(n, Ordering::SeqCst);
        InFlight(f)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What the proxy sends while limiting.
pub const RETRY_AFTER_SECS: u64 = 30;

impl Proxy {
    /// Starts a proxy to `upstream` (`127.0.0.1:PORT`).
    pub fn start(upstream: &str) -> Proxy {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let listener = rt
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind proxy");
        let addr = listener.local_addr().expect("addr").to_string();
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let limited = Arc::new(AtomicBool::new(false));
        let flight: Arc<Flight> = Arc::default();
        let (l, lim, up, fl) = (
            log.clone(),
            limited.clone(),
            upstream.to_owned(),
            flight.clone(),
        );
        rt.spawn(async move {
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    return;
                };
                let (l, lim, up, fl) = (l.clone(), lim.clone(), up.clone(), fl.clone());
                tokio::spawn(async move {
                    let _ = serve(conn, &up, &l, &lim, &fl).await;
                });
            }
        });
        Proxy {
            addr,
            log,
            limited,
            flight,
            _rt: rt,
        }
    }

    /// Hold every request this long before passing it on.
    pub fn delay(&self, d: Duration) {
        self.flight
            .delay_ms
            .store(d.as_millis() as u64, Ordering::SeqCst);
    }

    /// The most requests in flight at once so far.
    pub fn max_in_flight(&self) -> usize {
        self.flight.max.load(Ordering::SeqCst)
    }

    /// When each request arrived, in order.
    pub fn arrivals(&self) -> Vec<Instant> {
        let mut a = self.flight.arrivals.lock().unwrap().clone();
        a.sort();
        a
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answer 429 from now on (or stop doing so).
    pub fn limit(&self, on: bool) {
        self.limited.store(on, Ordering::SeqCst);
    }

    /// The request lines seen so far (`GET /v2/... HTTP/1.1`).
    pub fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// How many requests so far had `method` and a path containing `part`.
    pub fn count(&self, method: &str, part: &str) -> usize {
        self.requests()
            .iter()
            .filter(|l| l.starts_with(&format!("{method} ")) && l.contains(part))
            .count()
    }
}

async fn serve(
    mut client: TcpStream,
    upstream: &str,
    log: &Mutex<Vec<String>>,
    limited: &AtomicBool,
    flight: &Flight,
) -> std::io::Result<()> {
    // The request head (GET and HEAD requests have no body).
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = client.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head).to_string();
    let line = text.lines().next().unwrap_or("").to_owned();
    log.lock().unwrap().push(line.clone());
    let in_flight = InFlight::begin(flight);
    let delay = flight.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    if limited.load(Ordering::SeqCst) {
        let body =
            r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"rate limited by the test proxy"}]}"#;
        let resp = format!(
            "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nRetry-After: {RETRY_AFTER_SECS}\r\nRateLimit-Limit: 100;w=21600\r\nRateLimit-Remaining: 0;w=21600\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        client.write_all(resp.as_bytes()).await?;
        return client.shutdown().await;
    }
    let mut rewritten = String::new();
    for (i, l) in text.split("\r\n").enumerate() {
        if l.is_empty() {
            break;
        }
        if i > 0 && l.to_ascii_lowercase().starts_with("connection:") {
            continue;
        }
        rewritten.push_str(l);
        rewritten.push_str("\r\n");
    }
    rewritten.push_str("Connection: close\r\n\r\n");
    let mut up = TcpStream::connect(upstream).await?;
    up.write_all(rewritten.as_bytes()).await?;
    // The status line, then the rate limit headers, then the rest of the
    // head as is, then the body. A request is in flight until just before
    // the last byte its answer announced is passed on: the mirror cannot
    // start its next request before it has that byte, so two requests
    // one after the other are never counted as overlapping, however late
    // this task runs after writing.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if up.read(&mut byte).await? == 0 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let length = String::from_utf8_lossy(&head).lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<u64>().ok())?
    });
    let body = if line.starts_with("HEAD ") {
        Some(0)
    } else {
        length
    };
    let first = head.iter().position(|b| *b == b'\n').unwrap_or(0) + 1;
    client.write_all(&head[..first]).await?;
    client
        .write_all(b"RateLimit-Limit: 100;w=21600\r\nRateLimit-Remaining: 99;w=21600\r\n")
        .await?;
    match body {
        Some(0) => {
            client.write_all(&head[first..head.len() - 1]).await?;
            drop(in_flight);
            client.write_all(&head[head.len() - 1..]).await?;
        }
        Some(n) => {
            client.write_all(&head[first..]).await?;
            tokio::io::copy(&mut (&mut up).take(n - 1), &mut client).await?;
            drop(in_flight);
            tokio::io::copy(&mut (&mut up).take(1), &mut client).await?;
        }
        None => {
            client.write_all(&head[first..]).await?;
            tokio::io::copy(&mut up, &mut client).await?;
            drop(in_flight);
        }
    }
    client.shutdown().await
}
