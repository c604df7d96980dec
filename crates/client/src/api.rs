//! A client for berth's management API (`/api/v1/`, JSON).
//!
//! Unlike the Distribution API this is berth-specific: requests carry a
//! bearer token when one is given, bodies and answers are JSON, and an
//! error answer (`{"errors":[{"code","message"}]}`) becomes
//! [`Error::Status`] with the server's message.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::{Client, ClientOptions, Error};

/// A berth registry's management API.
#[derive(Debug)]
pub struct ApiClient {
    client: Client,
    base: String,
    token: Option<String>,
}

impl ApiClient {
    /// A client for the registry at `registry`: a URL
    /// (`https://reg.example.com`) or a `host[:port]` (plain HTTP for
    /// loopback, HTTPS otherwise). `token` is sent as a bearer token.
    pub fn new(registry: &str, token: Option<String>) -> Result<ApiClient, Error> {
        let client = Client::new(ClientOptions::default())?;
        let trimmed = registry.trim_end_matches('/');
        let base = if trimmed.starts_with("http://") || trimmed.starts_with("https://") {
            trimmed.to_owned()
        } else {
            client.base_url(trimmed)
        };
        Ok(ApiClient {
            client,
            base,
            token,
        })
    }

    /// The API root, `<base>/api/v1`.
    pub fn root(&self) -> String {
        format!("{}/api/v1", self.base)
    }

    /// Sends `method` to `path` (below `/api/v1`, starting with `/`), with
    /// an optional JSON body; returns the JSON answer (`null` for an empty
    /// one).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, Error> {
        let url = format!("{}{path}", self.root());
        let mut req = self.client.http.request(method.clone(), &url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b.to_string());
        }
        let resp = req
            .send()
            .await
            .map_err(|e| Error::http(format!("{method} {url}"), e))?;
        if !resp.status().is_success() {
            return Err(Error::from_response(method.as_str(), resp).await);
        }
        if resp.status() == StatusCode::NO_CONTENT {
            return Ok(Value::Null);
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| Error::http(format!("reading the answer of {method} {url}"), e))?;
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::Protocol(format!("{method} {url}: answer is not JSON: {e}")))
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Result<Value, Error> {
        self.call(Method::GET, path, None).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, Error> {
        self.call(Method::POST, path, Some(body)).await
    }

    /// `PUT path` with a JSON body.
    pub async fn put(&self, path: &str, body: &Value) -> Result<Value, Error> {
        self.call(Method::PUT, path, Some(body)).await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> Result<Value, Error> {
        self.call(Method::DELETE, path, None).await
    }
}

/// Percent-encodes one path segment or query value.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn encoding() {
        assert_eq!(super::encode("v*"), "v%2A");
        assert_eq!(super::encode("acme/web-*"), "acme%2Fweb-%2A");
    }
}
