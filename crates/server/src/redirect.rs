//! The plain-HTTP redirect listener of a server that serves TLS.
//!
//! Every request gets `308 Permanent Redirect` to the same path and query
//! over HTTPS: at the external URL when one is configured, else at the
//! request's host with the HTTPS port. The registry API itself is never
//! served here, except, when explicitly allowed, to clients on the
//! loopback interface (a health check or a local tool on the same host).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower_service::Service as _;

/// Where redirects point.
#[derive(Debug, Clone)]
pub struct Target {
    /// The HTTPS listener's port (used with the request's host).
    pub https_port: u16,
    /// The external URL (`https://registry.example.com`), which wins.
    pub external_url: Option<String>,
}

impl Target {
    /// The HTTPS URL for a request to `host` (its `Host` header, if any)
    /// for `path_and_query`.
    pub fn url(&self, host: Option<&str>, path_and_query: &str) -> String {
        if let Some(base) = &self.external_url {
            if let Some(rest) = base.strip_prefix("https://") {
                return format!("https://{}{path_and_query}", rest.trim_end_matches('/'));
            }
        }
        let host = host
            .filter(|h| !h.is_empty() && !h.contains(['/', '"', '\\', ' ', '@']))
            .unwrap_or("localhost");
        // Drop the port of the plain listener: `[::1]:80`, `name:80`.
        let name = match host.rfind(':') {
            Some(i) if !host[i..].contains(']') => &host[..i],
            _ => host,
        };
        match self.https_port {
            443 => format!("https://{name}{path_and_query}"),
            port => format!("https://{name}:{port}{path_and_query}"),
        }
    }
}

/// The redirect router; with `loopback_api`, loopback clients get that
/// router (the registry) instead of a redirect.
pub fn router(target: Target, loopback_api: Option<Router>) -> Router {
    Router::new().fallback(move |req: Request| {
        let target = target.clone();
        let api = loopback_api.clone();
        async move {
            let loopback = req
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .is_some_and(|c| c.0.ip().is_loopback());
            if let (true, Some(mut api)) = (loopback, api) {
                return match api.call(req).await {
                    Ok(r) => r,
                    Err(never) => match never {},
                };
            }
            redirect(&target, &req)
        }
    })
}

fn redirect(target: &Target, req: &Request) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let url = target.url(host, pq);
    match HeaderValue::from_str(&url) {
        Ok(location) => {
            let body = axum::Json(serde_json::json!({"errors": [{
                "code": "UNSUPPORTED",
                "message": format!("this registry is served over HTTPS only: use {url}"),
            }]}));
            let mut r = (StatusCode::PERMANENT_REDIRECT, body).into_response();
            r.headers_mut().insert(header::LOCATION, location);
            r
        }
        Err(_) => crate::error::ApiError::from(berth_registry::Error::InvalidParameter(
            "this registry is served over HTTPS only; the request's Host cannot be redirected"
                .into(),
        ))
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_keep_host_path_and_query_and_use_the_https_port() {
        let t = Target {
            https_port: 5443,
            external_url: None,
        };
        assert_eq!(
            t.url(Some("registry.lan:8080"), "/v2/?n=1"),
            "https://registry.lan:5443/v2/?n=1"
        );
        assert_eq!(t.url(Some("[::1]:80"), "/ui/"), "https://[::1]:5443/ui/");
        assert_eq!(t.url(Some("[::1]"), "/"), "https://[::1]:5443/");
        assert_eq!(t.url(None, "/"), "https://localhost:5443/");
        assert_eq!(
            t.url(Some("evil/x"), "/"),
            "https://localhost:5443/",
            "a Host that is no host"
        );
        let t = Target {
            https_port: 443,
            external_url: Some("https://registry.example.com/".into()),
        };
        assert_eq!(
            t.url(Some("10.0.0.1"), "/v2/a/tags/list"),
            "https://registry.example.com/v2/a/tags/list"
        );
        let t = Target {
            https_port: 443,
            external_url: None,
        };
        assert_eq!(t.url(Some("registry.lan"), "/"), "https://registry.lan/");
    }
}
