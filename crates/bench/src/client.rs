//! A lean HTTP/1.1 load client: one keep-alive connection per worker (hyper's
//! connection-level client, no pool), request bodies made of zero-copy
//! slices, response bodies drained without buffering.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use anyhow::{anyhow, bail, Context as _};
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

/// A request body of already-prepared byte slices with an exact length.
#[derive(Default)]
pub struct Payload {
    parts: VecDeque<Bytes>,
    remaining: u64,
}

impl Payload {
    /// A body yielding `parts` in order.
    pub fn new(parts: Vec<Bytes>) -> Payload {
        let remaining = parts.iter().map(|b| b.len() as u64).sum();
        Payload {
            parts: parts.into(),
            remaining,
        }
    }

    /// The body length.
    pub fn len(&self) -> u64 {
        self.remaining
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.remaining == 0
    }
}

impl Body for Payload {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.parts.pop_front() {
            Some(b) => {
                self.remaining -= b.len() as u64;
                Poll::Ready(Some(Ok(Frame::data(b))))
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.parts.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// One worker's keep-alive connection to a server; reconnects when the
/// server closed it.
pub struct Conn {
    addr: SocketAddr,
    host: String,
    /// `Authorization` value sent with every request, if any.
    authorization: Option<String>,
    /// TLS client configuration when the server speaks HTTPS.
    tls: Option<tokio_rustls::TlsConnector>,
    sender: Option<SendRequest<Payload>>,
}

impl Conn {
    /// A connection to `addr` (opened on first use or by [`Conn::connect`]).
    pub fn new(addr: SocketAddr) -> Conn {
        Conn {
            addr,
            host: addr.to_string(),
            authorization: None,
            tls: None,
            sender: None,
        }
    }

    /// Speaks HTTPS through `tls` (when given).
    pub fn with_tls(mut self, tls: Option<tokio_rustls::TlsConnector>) -> Conn {
        self.tls = tls;
        self
    }

    /// Sends `value` as the `Authorization` header of every request.
    pub fn with_authorization(mut self, value: Option<String>) -> Conn {
        self.authorization = value;
        self
    }

    /// Another (not yet opened) connection to the same server, with the
    /// same credentials.
    pub fn fresh(&self) -> Conn {
        Conn::new(self.addr)
            .with_authorization(self.authorization.clone())
            .with_tls(self.tls.clone())
    }

    /// Opens the connection now (so connecting is not measured).
    pub async fn connect(&mut self) -> anyhow::Result<()> {
        let stream = tokio::net::TcpStream::connect(self.addr)
            .await
            .with_context(|| format!("connecting to {}", self.addr))?;
        stream.set_nodelay(true)?;
        let sender = match &self.tls {
            Some(tls) => {
                let name = rustls::pki_types::ServerName::from(self.addr.ip());
                let stream = tls
                    .connect(name, stream)
                    .await
                    .with_context(|| format!("TLS handshake with {}", self.addr))?;
                http1(stream).await?
            }
            None => http1(stream).await?,
        };
        self.sender = Some(sender);
        Ok(())
    }

    /// Sends one request (`path` is origin-form: `/v2/...?...`).
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(header::HeaderName, &str)],
        body: Payload,
    ) -> anyhow::Result<Response<Incoming>> {
        let closed = self.sender.as_ref().is_none_or(|s| s.is_closed());
        if closed {
            self.connect().await?;
        }
        let sender = self
            .sender
            .as_mut()
            .ok_or_else(|| anyhow!("no connection"))?;
        sender.ready().await?;
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, &self.host);
        if let Some(a) = &self.authorization {
            req = req.header(header::AUTHORIZATION, a.as_str());
        }
        for (k, v) in headers {
            req = req.header(k, *v);
        }
        if !body.is_empty()
            || matches!(
                req.method_ref(),
                Some(&Method::PUT | &Method::PATCH | &Method::POST)
            )
        {
            req = req.header(header::CONTENT_LENGTH, body.len());
        }
        Ok(sender.send_request(req.body(body)?).await?)
    }
}

/// An HTTP/1.1 client connection over `io`, driven by its own task.
async fn http1<IO>(io: IO) -> anyhow::Result<SendRequest<Payload>>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// Drains a response body, returning its length.
pub async fn drain(resp: Response<Incoming>) -> anyhow::Result<u64> {
    let mut body = resp.into_body();
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            n += data.len() as u64;
        }
    }
    Ok(n)
}

/// Collects a (small) response body.
pub async fn collect(resp: Response<Incoming>) -> anyhow::Result<Bytes> {
    Ok(resp.into_body().collect().await?.to_bytes())
}

/// Fails unless `resp` has status `want`, draining the body either way.
pub async fn expect(
    resp: Response<Incoming>,
    want: StatusCode,
    what: &str,
) -> anyhow::Result<Response<Incoming>> {
    if resp.status() == want {
        return Ok(resp);
    }
    let status = resp.status();
    let body = collect(resp).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
    bail!("{what}: expected {want}, got {status}: {text}")
}

/// The origin-form part of a `Location` header (the reference registry
/// answers with absolute URLs, berth with paths).
pub fn location(resp: &Response<Incoming>) -> anyhow::Result<String> {
    let loc = resp
        .headers()
        .get(header::LOCATION)
        .ok_or_else(|| anyhow!("response without Location"))?
        .to_str()?;
    if let Some(rest) = loc
        .strip_prefix("http://")
        .or_else(|| loc.strip_prefix("https://"))
    {
        let i = rest.find('/').unwrap_or(rest.len());
        return Ok(rest[i..].to_owned());
    }
    Ok(loc.to_owned())
}

/// `path` with `key=value` appended to its query.
pub fn with_query(path: &str, key: &str, value: &str) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}{key}={value}")
}
