//! One upstream registry: its client (token flow, Basic, through
//! `berth_client`), its limits, and what it last said about itself.
//!
//! Every request first takes a permit: none while a 429's `Retry-After`
//! runs (the upstream asked us to wait: nothing is sent, the cache
//! answers), at most `max_concurrent` at once, and no faster than
//! `rate_limit` per second. Every answer is observed: `RateLimit-Limit`
//! and `RateLimit-Remaining` are kept for the status, a 429 sets the wait.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use berth_client::{BlobStream, Client, ClientOptions, Credential, CredentialStore, Observer};
use berth_oci::Digest;
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::flight::Fetch;
use crate::ConfigError;

/// How an upstream is configured.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Its name: the namespace it is mirrored under (`hub`).
    pub name: String,
    /// Its base URL (`https://registry-1.docker.io`).
    pub url: String,
    /// User name, for upstreams that need credentials.
    pub username: Option<String>,
    /// Password or token.
    pub password: Option<String>,
    /// The registry hosts it answers for in containerd's `?ns=`
    /// (`docker.io`, `registry-1.docker.io`).
    pub hosts: Vec<String>,
    /// Requests to it in flight at once, at most.
    pub max_concurrent: usize,
    /// Requests per second, at most (0: no limit).
    pub rate_limit: f64,
    /// How long a cached tag is served before it is revalidated.
    pub tag_ttl: Duration,
    /// How long a request may take before the cache answers instead.
    pub timeout: Duration,
}

/// What the status shows of an upstream.
#[derive(Debug, Clone, Serialize)]
pub struct UpstreamStatus {
    /// Its name.
    pub name: String,
    /// Its URL.
    pub url: String,
    /// The hosts it answers for (`?ns=`).
    pub hosts: Vec<String>,
    /// Whether hostless requests (Docker daemon mirrors) go to it.
    pub docker_hub_default: bool,
    /// Whether credentials are configured (never the credentials).
    pub authenticated: bool,
    /// Concurrency limit.
    pub max_concurrent: usize,
    /// Request rate limit per second (0: none).
    pub rate_limit: f64,
    /// Tag TTL in seconds.
    pub tag_ttl_secs: u64,
    /// Requests sent so far.
    pub requests: u64,
    /// Its last `RateLimit-Limit` header.
    pub ratelimit_limit: Option<String>,
    /// Its last `RateLimit-Remaining` header.
    pub ratelimit_remaining: Option<String>,
    /// Until when (Unix seconds) nothing is sent to it after a 429.
    pub retry_after_until: Option<u64>,
    /// The last failure, if the last request failed.
    pub last_error: Option<String>,
}

#[derive(Debug, Default)]
struct Observed {
    ratelimit_limit: Option<String>,
    ratelimit_remaining: Option<String>,
    /// Nothing is sent before this instant (after a 429), and its Unix time.
    blocked_until: Option<(Instant, u64)>,
    last_error: Option<String>,
}

/// An upstream registry.
#[derive(Debug)]
pub struct Upstream {
    /// Its configuration.
    pub config: UpstreamConfig,
    /// `host[:port]` as the client addresses it.
    registry: String,
    client: Client,
    docker_hub: bool,
    permits: Arc<Semaphore>,
    next_slot: Mutex<Instant>,
    observed: Arc<Mutex<Observed>>,
    requests: AtomicU64,
}

/// Seconds to wait after a 429 that did not say.
const DEFAULT_RETRY_AFTER: u64 = 60;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn header(h: &reqwest::header::HeaderMap, name: &str) -> Option<String> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

impl Upstream {
    /// Checks the configuration and builds the upstream's client.
    pub fn new(config: UpstreamConfig) -> Result<Upstream, ConfigError> {
        let bad = |why: String| ConfigError(format!("mirror upstream {:?}: {why}", config.name));
        if berth_oci::RepositoryName::parse(format!("{}/x", config.name)).is_err()
            || config.name.contains('/')
        {
            return Err(bad(
                "the name must be one lowercase path component (letters, digits, . _ -)".into(),
            ));
        }
        let url = reqwest::Url::parse(&config.url).map_err(|e| bad(format!("url: {e}")))?;
        let host = url
            .host_str()
            .ok_or_else(|| bad("the url has no host".into()))?;
        if url.path() != "/" && !url.path().is_empty() {
            return Err(bad("the url must be the registry's root (no path)".into()));
        }
        let registry = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_owned(),
        };
        if config.max_concurrent == 0 {
            return Err(bad("max_concurrent must be at least 1".into()));
        }
        let mut credentials = CredentialStore::new();
        match (&config.username, &config.password) {
            (Some(u), Some(p)) => credentials.insert(
                &registry,
                Credential {
                    username: u.clone(),
                    password: p.clone(),
                },
            ),
            (None, None) => {}
            _ => return Err(bad("give both username and password, or neither".into())),
        }
        let observed: Arc<Mutex<Observed>> = Arc::default();
        let seen = observed.clone();
        let observer = Observer(Arc::new(move |status, headers| {
            let Ok(mut o) = seen.lock() else { return };
            if let Some(v) = header(headers, "ratelimit-limit") {
                o.ratelimit_limit = Some(v);
            }
            if let Some(v) = header(headers, "ratelimit-remaining") {
                o.ratelimit_remaining = Some(v);
            }
            if status == 429 {
                let secs = header(headers, "retry-after")
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(DEFAULT_RETRY_AFTER);
                o.blocked_until = Some((
                    Instant::now() + Duration::from_secs(secs),
                    unix_now() + secs,
                ));
            }
        }));
        let plain_http = if url.scheme() == "http" {
            vec![registry.clone()]
        } else {
            Vec::new()
        };
        let client = Client::new(ClientOptions {
            credentials,
            plain_http,
            user_agent: Some(format!("berth-mirror/{}", env!("CARGO_PKG_VERSION"))),
            observer: Some(observer),
            ..ClientOptions::default()
        })
        .map_err(|e| bad(e.to_string()))?;
        let docker_hub = config
            .hosts
            .iter()
            .any(|h| berth_client::auth::normalize_host(h) == "docker.io")
            || berth_client::auth::normalize_host(&registry) == "docker.io";
        Ok(Upstream {
            permits: Arc::new(Semaphore::new(config.max_concurrent)),
            next_slot: Mutex::new(Instant::now()),
            registry,
            client,
            docker_hub,
            config,
            observed,
            requests: AtomicU64::new(0),
        })
    }

    /// Whether it is Docker Hub (one-component names get `library/`).
    pub fn is_docker_hub(&self) -> bool {
        self.docker_hub
    }

    /// Whether it answers for registry host `host` (containerd's `?ns=`).
    pub fn serves_host(&self, host: &str) -> bool {
        let host = berth_client::auth::normalize_host(host);
        self.config
            .hosts
            .iter()
            .any(|h| berth_client::auth::normalize_host(h) == host)
    }

    /// The status of the upstream.
    pub fn status(&self, docker_hub_default: bool) -> UpstreamStatus {
        let o = self.observed.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        UpstreamStatus {
            name: self.config.name.clone(),
            url: self.config.url.clone(),
            hosts: self.config.hosts.clone(),
            docker_hub_default,
            authenticated: self.config.username.is_some(),
            max_concurrent: self.config.max_concurrent,
            rate_limit: self.config.rate_limit,
            tag_ttl_secs: self.config.tag_ttl.as_secs(),
            requests: self.requests.load(Ordering::Relaxed),
            ratelimit_limit: o.ratelimit_limit.clone(),
            ratelimit_remaining: o.ratelimit_remaining.clone(),
            retry_after_until: o
                .blocked_until
                .filter(|(at, _)| *at > now)
                .map(|(_, unix)| unix),
            last_error: o.last_error.clone(),
        }
    }

    /// A permit to send one request: refused while a `Retry-After` runs;
    /// waits for a free slot and for the request rate.
    async fn permit(&self) -> Result<OwnedSemaphorePermit, Fetch> {
        self.check_blocked()?;
        let permit =
            self.permits
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| Fetch::Unavailable {
                    detail: "the upstream is shutting down".into(),
                    retry_after: None,
                })?;
        if self.config.rate_limit > 0.0 {
            let interval = Duration::from_secs_f64(1.0 / self.config.rate_limit);
            let wait = {
                let mut next = self.next_slot.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                let at = (*next).max(now);
                *next = at + interval;
                at - now
            };
            if wait > self.config.timeout {
                return Err(Fetch::Unavailable {
                    detail: format!(
                        "over the configured rate of {} requests per second",
                        self.config.rate_limit
                    ),
                    retry_after: Some(wait.as_secs().max(1)),
                });
            }
            tokio::time::sleep(wait).await;
        }
        // A 429 may have arrived while this request waited.
        self.check_blocked()?;
        self.requests.fetch_add(1, Ordering::Relaxed);
        Ok(permit)
    }

    fn check_blocked(&self) -> Result<(), Fetch> {
        let o = self.observed.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((until, _)) = o.blocked_until {
            let now = Instant::now();
            if until > now {
                let left = (until - now).as_secs() + 1;
                return Err(Fetch::Unavailable {
                    detail: format!(
                        "it answered 429 Too Many Requests; berth sends nothing before its Retry-After ({left} s)"
                    ),
                    retry_after: Some(left),
                });
            }
        }
        Ok(())
    }

    /// Records how a request ended and turns a client error into a
    /// [`Fetch`].
    fn outcome<T>(
        &self,
        r: Result<Result<T, berth_client::Error>, tokio::time::error::Elapsed>,
    ) -> Result<T, Fetch> {
        let m = berth_metrics::get();
        let name = &self.config.name;
        let r = match r {
            Ok(Ok(v)) => {
                m.mirror_request(name, "ok");
                if let Ok(mut o) = self.observed.lock() {
                    o.last_error = None;
                }
                return Ok(v);
            }
            Ok(Err(e)) if e.is_not_found() => {
                m.mirror_request(name, "not_found");
                return Err(Fetch::NotFound);
            }
            Ok(Err(e)) if e.status() == Some(429) => {
                m.mirror_request(name, "rate_limited");
                let retry_after = self
                    .observed
                    .lock()
                    .ok()
                    .and_then(|o| o.blocked_until)
                    .map(|(at, _)| at.saturating_duration_since(Instant::now()).as_secs() + 1);
                Fetch::Unavailable {
                    detail: "it answered 429 Too Many Requests".into(),
                    retry_after,
                }
            }
            Ok(Err(berth_client::Error::DigestMismatch {
                expected, actual, ..
            })) => {
                m.mirror_request(name, "error");
                Fetch::Invalid(format!(
                    "it sent content with digest {actual} for {expected}; nothing was stored"
                ))
            }
            Ok(Err(e)) => {
                m.mirror_request(name, "error");
                Fetch::Unavailable {
                    detail: e.to_string(),
                    retry_after: None,
                }
            }
            Err(_) => {
                m.mirror_request(name, "timeout");
                Fetch::Unavailable {
                    detail: format!("no answer within {:?}", self.config.timeout),
                    retry_after: None,
                }
            }
        };
        if let Ok(mut o) = self.observed.lock() {
            o.last_error = Some(r.to_string());
        }
        Err(r)
    }

    /// `HEAD` of a manifest: its digest, `None` when the upstream has no
    /// such manifest.
    pub(crate) async fn head_manifest(
        &self,
        remote: &str,
        reference: &str,
    ) -> Result<Option<Digest>, Fetch> {
        let _permit = self.permit().await?;
        let repo = self.client.repository(&self.registry, remote);
        let r = tokio::time::timeout(self.config.timeout, repo.head_manifest(reference)).await;
        match self.outcome(r)? {
            None => Ok(None),
            Some((Some(d), _)) => Ok(Some(d)),
            // No digest header: a GET will tell.
            Some((None, _)) => Ok(Some(Digest::sha256(b""))),
        }
    }

    /// Fetches a manifest (a digest reference is verified).
    pub(crate) async fn get_manifest(
        &self,
        remote: &str,
        reference: &str,
    ) -> Result<berth_client::FetchedManifest, Fetch> {
        let _permit = self.permit().await?;
        let repo = self.client.repository(&self.registry, remote);
        let r = tokio::time::timeout(self.config.timeout, repo.get_manifest(reference)).await;
        self.outcome(r)
    }

    /// The size of a blob, `None` when the upstream does not have it.
    pub(crate) async fn head_blob(
        &self,
        remote: &str,
        digest: &Digest,
    ) -> Result<Option<u64>, Fetch> {
        let _permit = self.permit().await?;
        let repo = self.client.repository(&self.registry, remote);
        let r = tokio::time::timeout(self.config.timeout, repo.head_blob(digest)).await;
        self.outcome(r)
    }

    /// Starts downloading a blob; the permit is held while it streams.
    pub(crate) async fn get_blob(
        &self,
        remote: &str,
        digest: &Digest,
    ) -> Result<(BlobStream, OwnedSemaphorePermit), Fetch> {
        let permit = self.permit().await?;
        let repo = self.client.repository(&self.registry, remote);
        let r = tokio::time::timeout(self.config.timeout, repo.get_blob(digest)).await;
        Ok((self.outcome(r)?, permit))
    }
}
