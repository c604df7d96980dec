//! An async client for the OCI Distribution API, usable against any
//! registry (berth, the reference registry, Docker Hub, GHCR, ...).
//!
//! [`Client`] owns the HTTP connection pool, the credentials
//! ([`auth::CredentialStore`]) and a cache of bearer tokens; a
//! [`Repository`] handle (from [`Client::repository`]) offers the API:
//! manifests (get/head/put with Accept negotiation), blobs (head, streaming
//! get, monolithic and chunked upload, cross-repository mount), tag lists
//! with `Link` pagination, and referrers (with the tag-schema fallback).
//!
//! Authentication is lazy, as registries expect: a request goes out with
//! whatever authorization is cached for its registry and scope; on a 401 the
//! `WWW-Authenticate` challenge is answered (Basic credentials, or a bearer
//! token fetched from the challenge's realm, anonymously or with
//! credentials) and the request is retried once. Requests with a streaming
//! body cannot be replayed, so they are always preceded by a replayable
//! request of the same scope (the upload's `POST`).
//!
//! Plain HTTP is used for loopback registries (`localhost`, `127.0.0.0/8`,
//! `[::1]`) and for hosts listed in [`ClientOptions::plain_http`]; everything
//! else is HTTPS (rustls with the system and webpki roots, plus the CA
//! certificates and client certificate of [`ClientOptions::tls`]). With a
//! [`TlsTrust`] configured, loopback registries are reached over HTTPS too
//! (unless listed in `plain_http`): a private CA is given for a registry
//! that speaks TLS.

pub mod auth;
mod blob;
mod error;
mod manifest;
mod tags;
mod tls;

use std::collections::HashMap;
use std::sync::Mutex;

use reqwest::header::{HeaderValue, AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::{RequestBuilder, Response, StatusCode};

pub use auth::{Credential, CredentialStore};
pub use blob::{BlobStream, MountResult};
/// The byte buffer type of the API (re-exported for callers).
pub use bytes::Bytes;
pub use error::{transport_hint, Error};
pub use manifest::FetchedManifest;
pub use tls::TlsTrust;

/// The manifest media types a client accepts, in preference order.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// How to build a [`Client`].
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// Credentials per registry.
    pub credentials: CredentialStore,
    /// Registries (host[:port]) reached over plain HTTP.
    pub plain_http: Vec<String>,
    /// Accept invalid TLS certificates (self-signed test registries).
    pub insecure_tls: bool,
    /// User agent; defaults to `berth/<version>`.
    pub user_agent: Option<String>,
    /// CA certificates to trust and a client certificate to present
    /// (`--cert-dir`, `--ca-cert`).
    pub tls: TlsTrust,
    /// Called with the status and headers of every registry response (not
    /// the token endpoint's): a pull-through mirror records `RateLimit-*`
    /// and `Retry-After` from it.
    pub observer: Option<Observer>,
}

/// What an [`Observer`] calls: the status and headers of a response.
pub type ObserveFn = dyn Fn(u16, &reqwest::header::HeaderMap) + Send + Sync;

/// A callback seeing the status and headers of every registry response.
#[derive(Clone)]
pub struct Observer(pub std::sync::Arc<ObserveFn>);

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Observer")
    }
}

/// An OCI Distribution API client.
#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    options: ClientOptions,
    /// Authorization header values by `registry|scope`.
    tokens: Mutex<HashMap<String, HeaderValue>>,
}

/// A repository on a registry.
#[derive(Debug, Clone, Copy)]
pub struct Repository<'a> {
    client: &'a Client,
    registry: &'a str,
    name: &'a str,
}

impl Client {
    /// Builds a client.
    pub fn new(options: ClientOptions) -> Result<Client, Error> {
        let ua = options
            .user_agent
            .clone()
            .unwrap_or_else(|| format!("berth/{}", env!("CARGO_PKG_VERSION")));
        let http = options
            .tls
            .apply(reqwest::Client::builder())
            .user_agent(ua)
            .danger_accept_invalid_certs(options.insecure_tls)
            .connect_timeout(std::time::Duration::from_secs(30))
            .pool_idle_timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(|e| Error::http("building the HTTP client", e))?;
        Ok(Client {
            http,
            options,
            tokens: Mutex::new(HashMap::new()),
        })
    }

    /// `location` (a `Location` or `Link` target) as an absolute URL on
    /// `registry`.
    pub(crate) fn absolute_url(&self, registry: &str, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_owned()
        } else {
            format!("{}{location}", self.base_url(registry))
        }
    }

    /// `scheme://host` for a registry (`registry-1.docker.io` for Docker Hub).
    pub fn base_url(&self, registry: &str) -> String {
        let host = match auth::normalize_host(registry).as_str() {
            "docker.io" => berth_oci::reference::DOCKER_HUB_API_HOST.to_owned(),
            _ => registry.to_owned(),
        };
        let hostname = host.rsplit_once(':').map_or(host.as_str(), |(h, p)| {
            if p.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                host.as_str()
            }
        });
        let loopback = hostname == "localhost"
            || hostname.starts_with("127.")
            || hostname == "[::1]"
            || hostname.ends_with(".localhost");
        let plain = (loopback && !self.options.tls.is_configured())
            || self.options.plain_http.iter().any(|p| p == registry);
        format!("{}://{host}", if plain { "http" } else { "https" })
    }

    /// A handle on `name` at `registry`.
    pub fn repository<'a>(&'a self, registry: &'a str, name: &'a str) -> Repository<'a> {
        Repository {
            client: self,
            registry,
            name,
        }
    }

    /// Checks that `registry` speaks the Distribution API (`GET /v2/`),
    /// authenticating if it asks to.
    pub async fn ping(&self, registry: &str) -> Result<(), Error> {
        let url = format!("{}/v2/", self.base_url(registry));
        let resp = self.send(registry, &[], &|| self.http.get(&url)).await?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(Error::from_response("GET", resp).await)
        }
    }

    fn cache_key(registry: &str, scopes: &[String]) -> String {
        format!("{registry}|{}", scopes.join(" "))
    }

    fn cached(&self, registry: &str, scopes: &[String]) -> Option<HeaderValue> {
        let tokens = self.tokens.lock().ok()?;
        tokens
            .get(&Client::cache_key(registry, scopes))
            .or_else(|| tokens.get(&format!("{registry}|basic")))
            .cloned()
    }

    /// Sends a replayable request, answering one authentication challenge.
    /// A 401 after the answer and any 403 become errors saying what was
    /// sent, what was needed and what the credentials were granted.
    pub(crate) async fn send(
        &self,
        registry: &str,
        scopes: &[String],
        build: &(dyn Fn() -> RequestBuilder + Sync),
    ) -> Result<Response, Error> {
        let first = self.send_once(registry, scopes, build()).await?;
        if first.status() != StatusCode::UNAUTHORIZED {
            return Ok(first);
        }
        let header = first
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|h| h.to_str().ok())
            .and_then(auth::Challenge::parse)
            .ok_or_else(|| Error::Unauthorized {
                registry: registry.to_owned(),
                detail: "401 without a WWW-Authenticate challenge".to_owned(),
            })?;
        let (value, found) = self.answer(registry, scopes, &header).await?;
        let key = if header.scheme == "basic" {
            format!("{registry}|basic")
        } else {
            Client::cache_key(registry, scopes)
        };
        if let Ok(mut t) = self.tokens.lock() {
            t.insert(key, value.clone());
        }
        let retry = self
            .execute(
                registry,
                scopes,
                build().header(AUTHORIZATION, value.clone()),
            )
            .await?;
        let insufficient = retry
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|h| h.to_str().ok())
            .and_then(auth::Challenge::parse)
            .is_some_and(|c| {
                c.params.get("error").map(String::as_str) == Some("insufficient_scope")
            });
        if retry.status() == StatusCode::UNAUTHORIZED && insufficient {
            // The credentials were accepted, but the token they got does
            // not grant what the request needs: a refusal, not a login
            // failure.
            let method = build()
                .build()
                .map(|r| r.method().to_string())
                .unwrap_or_default();
            let Error::Status { url, message, .. } = Error::from_response(&method, retry).await
            else {
                return Err(Error::Protocol("unexpected error shape".to_owned()));
            };
            return Err(Error::Denied {
                method,
                url,
                message,
                needed: auth::describe_scopes(scopes),
                granted: auth::describe_grant(value.to_str().ok()),
            });
        }
        if retry.status() == StatusCode::UNAUTHORIZED {
            let detail = match &found {
                Some(f) => format!(
                    "the registry refused the credentials of {:?} (from {})",
                    f.credential.username, f.source
                ),
                None => format!(
                    "the registry requires credentials and none were sent; {}",
                    self.login_hint(registry)
                ),
            };
            return Err(Error::Unauthorized {
                registry: registry.to_owned(),
                detail,
            });
        }
        Ok(retry)
    }

    /// Sends a request with the cached authorization, without retrying.
    pub(crate) async fn send_once(
        &self,
        registry: &str,
        scopes: &[String],
        req: RequestBuilder,
    ) -> Result<Response, Error> {
        let req = match self.cached(registry, scopes) {
            Some(v) => req.header(AUTHORIZATION, v),
            None => req,
        };
        self.execute(registry, scopes, req).await
    }

    /// Sends `req` as built; a 403 becomes [`Error::Denied`].
    async fn execute(
        &self,
        registry: &str,
        scopes: &[String],
        req: RequestBuilder,
    ) -> Result<Response, Error> {
        let request = req
            .build()
            .map_err(|e| Error::http(format!("request to {registry}"), e))?;
        let method = request.method().to_string();
        let sent = request
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let resp = self
            .http
            .execute(request)
            .await
            .map_err(|e| Error::http(format!("request to {registry}"), e))?;
        if let Some(o) = &self.options.observer {
            (o.0)(resp.status().as_u16(), resp.headers());
        }
        if resp.status() != StatusCode::FORBIDDEN {
            return Ok(resp);
        }
        let Error::Status { url, message, .. } = Error::from_response(&method, resp).await else {
            return Err(Error::Protocol("unexpected error shape".to_owned()));
        };
        Err(Error::Denied {
            method,
            url,
            message,
            needed: auth::describe_scopes(scopes),
            granted: auth::describe_grant(sent.as_deref()),
        })
    }

    /// How to give credentials for `registry`, and where none were found.
    fn login_hint(&self, registry: &str) -> String {
        let searched: Vec<String> = self
            .options
            .credentials
            .searched()
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let mut hint = format!(
            "log in with `docker login {registry}` (or podman/skopeo login), or pass --creds USER:PASSWORD"
        );
        if !searched.is_empty() {
            hint.push_str(&format!(" (looked in {})", searched.join(", ")));
        }
        hint
    }

    /// The Authorization value answering `challenge`, and the credential
    /// it was made from.
    async fn answer(
        &self,
        registry: &str,
        scopes: &[String],
        challenge: &auth::Challenge,
    ) -> Result<(HeaderValue, Option<auth::Found>), Error> {
        let found = self.options.credentials.find(registry).await?;
        let cred = found.as_ref().map(|f| &f.credential);
        let unauthorized = |detail: String| Error::Unauthorized {
            registry: registry.to_owned(),
            detail,
        };
        let value = match challenge.scheme.as_str() {
            "basic" => cred
                .ok_or_else(|| {
                    unauthorized(format!(
                        "the registry asks for a user name and password and none were found; {}",
                        self.login_hint(registry)
                    ))
                })?
                .basic_header(),
            "bearer" => {
                let realm = challenge
                    .params
                    .get("realm")
                    .ok_or_else(|| unauthorized("bearer challenge without realm".to_owned()))?;
                let mut query: Vec<(&str, String)> = Vec::new();
                if let Some(s) = challenge.params.get("service") {
                    query.push(("service", s.clone()));
                }
                let mut all: Vec<String> = scopes.to_vec();
                if let Some(s) = challenge.params.get("scope") {
                    all.extend(s.split(' ').map(str::to_owned));
                }
                all.sort();
                all.dedup();
                query.extend(all.into_iter().map(|s| ("scope", s)));
                if let Some(c) = cred {
                    query.push(("account", c.username.clone()));
                }
                let mut req = self.http.get(realm).query(&query);
                if let Some(c) = cred {
                    req = req.header(AUTHORIZATION, c.basic_header());
                }
                let resp = req
                    .send()
                    .await
                    .map_err(|e| Error::http(format!("token request to {realm}"), e))?;
                if !resp.status().is_success() {
                    let status = resp.status().as_u16();
                    let said = match Error::from_response("GET", resp).await {
                        Error::Status { message, .. } if !message.is_empty() => {
                            format!(": {message}")
                        }
                        _ => String::new(),
                    };
                    return Err(unauthorized(match &found {
                        Some(f) => format!(
                            "the token endpoint refused the credentials of {:?} (from {}) with {status}{said}",
                            f.credential.username, f.source
                        ),
                        None => format!(
                            "the token endpoint refused an anonymous request with {status}{said}; no credentials were sent: {}",
                            self.login_hint(registry)
                        ),
                    }));
                }
                let body: serde_json::Value = resp
                    .json()
                    .await
                    .map_err(|e| Error::http("reading the token response", e))?;
                let token = body
                    .get("token")
                    .or_else(|| body.get("access_token"))
                    .and_then(|t| t.as_str())
                    .ok_or_else(|| Error::Protocol("token response without token".to_owned()))?;
                format!("Bearer {token}")
            }
            other => return Err(unauthorized(format!("unsupported auth scheme {other:?}"))),
        };
        let value = HeaderValue::from_str(&value)
            .map_err(|_| Error::Protocol("token is not a valid header value".to_owned()))?;
        Ok((value, found))
    }
}

impl<'a> Repository<'a> {
    /// The registry host.
    pub fn registry(&self) -> &'a str {
        self.registry
    }

    /// The repository name.
    pub fn name(&self) -> &'a str {
        self.name
    }

    fn url(&self, path: &str) -> String {
        format!(
            "{}/v2/{}/{path}",
            self.client.base_url(self.registry),
            self.name
        )
    }

    /// berth's verdict on the signatures of manifest `digest` (its
    /// management API, `GET /api/v1/repositories/NAME/signature`), sent
    /// with the credentials of this repository's pulls. `None` when the
    /// registry is not berth or does not answer it: another registry has
    /// no such view.
    pub async fn berth_signature(&self, digest: &str) -> Option<serde_json::Value> {
        self.berth_view("signature", digest).await
    }

    /// berth's vulnerability scan summary of the manifest `digest`
    /// (`state` `scanned`, `not_scanned` or `failed`, the counts per
    /// severity, `scanned_at`, `vulndb_at`); `None` when the registry is
    /// not berth or does not say.
    pub async fn berth_scan_summary(&self, digest: &str) -> Option<serde_json::Value> {
        self.berth_view("scan-summary", digest).await
    }

    /// A view of berth's management API about manifest `digest` of this
    /// repository (`GET /api/v1/repositories/NAME/VIEW`), sent with the
    /// credentials of its pulls; `None` unless it answers with a `state`.
    async fn berth_view(&self, view: &str, digest: &str) -> Option<serde_json::Value> {
        let url = format!(
            "{}/api/v1/repositories/{}/{view}?reference={digest}",
            self.client.base_url(self.registry),
            self.name
        );
        let scopes = self.pull_scope();
        let resp = self
            .client
            .send(self.registry, &scopes, &|| self.client.http.get(&url))
            .await
            .ok()?;
        if !resp.status().is_success() {
            return None;
        }
        let v: serde_json::Value = resp.json().await.ok()?;
        v.get("state").is_some().then_some(v)
    }

    fn pull_scope(&self) -> Vec<String> {
        vec![format!("repository:{}:pull", self.name)]
    }

    fn push_scope(&self) -> Vec<String> {
        vec![format!("repository:{}:pull,push", self.name)]
    }

    /// Resolves a possibly relative `Location` against the registry.
    fn absolute(&self, location: &str) -> String {
        self.client.absolute_url(self.registry, location)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        let c = Client::new(ClientOptions {
            plain_http: vec!["reg.internal:5000".into()],
            ..ClientOptions::default()
        })
        .unwrap();
        assert_eq!(c.base_url("docker.io"), "https://registry-1.docker.io");
        assert_eq!(c.base_url("127.0.0.1:5000"), "http://127.0.0.1:5000");
        assert_eq!(c.base_url("localhost"), "http://localhost");
        assert_eq!(c.base_url("[::1]:8080"), "http://[::1]:8080");
        assert_eq!(c.base_url("reg.internal:5000"), "http://reg.internal:5000");
        assert_eq!(c.base_url("ghcr.io"), "https://ghcr.io");
    }
}

#[cfg(test)]
mod flow_tests;
