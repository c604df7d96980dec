//! A counting HTTP proxy in front of an upstream registry: it logs every
//! request line, adds `RateLimit-*` headers to the upstream's answers, and
//! when told to, answers `429 Too Many Requests` with a `Retry-After`
//! itself. One request per connection (`Connection: close` both ways), so
//! a request line is all it needs to read.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A running proxy.
pub struct Proxy {
    /// `127.0.0.1:PORT`
    pub addr: String,
    log: Arc<Mutex<Vec<String>>>,
    limited: Arc<AtomicBool>,
    _rt: tokio::runtime::Runtime,
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
        let (l, lim, up) = (log.clone(), limited.clone(), upstream.to_owned());
        rt.spawn(async move {
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    return;
                };
                let (l, lim, up) = (l.clone(), lim.clone(), up.clone());
                tokio::spawn(async move {
                    let _ = serve(conn, &up, &l, &lim).await;
                });
            }
        });
        Proxy {
            addr,
            log,
            limited,
            _rt: rt,
        }
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
    log.lock().unwrap().push(line);
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
    // The status line, then the rate limit headers, then the rest as is.
    let mut first = Vec::new();
    let mut byte = [0u8; 1];
    while !first.ends_with(b"\r\n") {
        if up.read(&mut byte).await? == 0 {
            return Ok(());
        }
        first.push(byte[0]);
    }
    client.write_all(&first).await?;
    client
        .write_all(b"RateLimit-Limit: 100;w=21600\r\nRateLimit-Remaining: 99;w=21600\r\n")
        .await?;
    tokio::io::copy(&mut up, &mut client).await?;
    client.shutdown().await
}
