//! The client's error type.

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The connection failed or the response could not be read.
    #[error("{context}: {source}")]
    Http {
        /// What was being done.
        context: String,
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
