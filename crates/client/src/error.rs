//! The client's error type.

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The connection failed or the response could not be read.
    #[error("{context}: {}", hint.map_or_else(|| source.to_string(), str::to_owned))]
    Http {
        /// What was being done.
        context: String,
        /// What the transport error most likely means, when it is a known
        /// one ([`transport_hint`]).
        hint: Option<&'static str>,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The registry answered with an error status.
    #[error("{method} {url}: {status}{}", fmt_code(code, message))]
    Status {
        /// HTTP method.
        method: String,
        /// URL (never with credentials).
        url: String,
        /// HTTP status code.
        status: u16,
        /// First OCI error code from the body, if any.
        code: Option<String>,
        /// Its message.
        message: String,
    },
    /// The registry refused the request (403): what it needs and what the
    /// credentials sent were granted.
    #[error("{method} {url}: denied{}; it needs {needed}, and {granted}", if message.is_empty() { String::new() } else { format!(": {message}") })]
    Denied {
        /// HTTP method.
        method: String,
        /// URL (never with credentials).
        url: String,
        /// The registry's message, if any (a HEAD has none).
        message: String,
        /// The access asked for (`pull,push on acme/app`).
        needed: String,
        /// What the credentials were granted.
        granted: String,
    },
    /// Credentials are missing or were refused.
    #[error("unauthorized at {registry}: {detail}")]
    Unauthorized {
        /// The registry.
        registry: String,
        /// What happened.
        detail: String,
    },
    /// Content does not match its digest.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What was fetched.
        what: String,
        /// The digest asked for.
        expected: String,
        /// The digest of the bytes received.
        actual: String,
    },
    /// The registry broke the protocol (missing header, bad JSON, ...).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A certificate file (`--cert-dir`, `--ca-cert`) could not be used.
    #[error("TLS: {0}")]
    Tls(String),
    /// The docker config file could not be read.
    #[error("credentials: {0}")]
    Credentials(String),
    /// A local read failed (blob upload source).
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

fn fmt_code(code: &Option<String>, message: &str) -> String {
    match code {
        Some(c) if message.is_empty() => format!(" {c}"),
        Some(c) => format!(" {c}: {message}"),
        None if message.is_empty() => String::new(),
        None => format!(": {message}"),
    }
}

impl Error {
    /// The HTTP status, for [`Error::Status`].
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Status { status, .. } => Some(*status),
            Error::Denied { .. } => Some(403),
            _ => None,
        }
    }

    /// Whether this is a 404.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    pub(crate) fn http(context: impl Into<String>, source: reqwest::Error) -> Error {
        Error::Http {
            context: context.into(),
            hint: transport_hint(&source),
            source,
        }
    }

    /// Builds an [`Error::Status`] from an error response, reading the OCI
    /// error body (`{"errors":[{"code":..,"message":..}]}`) when present.
    pub(crate) async fn from_response(method: &str, resp: reqwest::Response) -> Error {
        let status = resp.status().as_u16();
        let url = redact(resp.url());
        let body = resp.bytes().await.unwrap_or_default();
        let parsed: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
        let first = parsed
            .as_ref()
            .and_then(|v| v.get("errors"))
            .and_then(|e| e.get(0));
        let code = first
            .and_then(|e| e.get("code"))
            .and_then(|c| c.as_str())
            .map(str::to_owned);
        let message = first
            .and_then(|e| e.get("message"))
            .and_then(|m| m.as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| {
                String::from_utf8_lossy(&body[..body.len().min(200)])
                    .trim()
                    .to_owned()
            });
        Error::Status {
            method: method.to_owned(),
            url,
            status,
            code,
            message,
        }
    }
}

/// A URL without query string (which may carry upload state or signatures).
pub(crate) fn redact(url: &reqwest::Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    let _ = u.set_password(None);
    let _ = u.set_username("");
    u.to_string()
}

/// What a transport error most likely means, for the errors people meet
/// (`None` for the rest, which are shown as they are): an HTTPS request
/// answered in plain HTTP, an untrusted certificate, nothing listening.
pub fn transport_hint(error: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    let mut chain = String::new();
    let mut e: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cur) = e {
        chain.push_str(&format!("{cur} | {cur:?} | "));
        e = cur.source();
    }
    if chain.contains("InvalidContentType") || chain.contains("corrupt message") {
        Some("the server speaks plain HTTP, not HTTPS: use an http:// URL (or --plain-http HOST)")
    } else if chain.contains("UnknownIssuer")
        || chain.contains("invalid peer certificate")
        || chain.contains("certificate verify failed")
    {
        Some("the server's TLS certificate is not trusted (self-signed?): install its CA, or pass --insecure for a test registry")
    } else if chain.contains("Connection refused") || chain.contains("ConnectionRefused") {
        Some("connection refused: nothing listens there; is the registry running, and is the address right?")
    } else {
        None
    }
}
