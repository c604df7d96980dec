//! The signing keys of OpenID Connect issuers: discovery, JWKS, a cache.
//!
//! An issuer's keys are found through its discovery document
//! (`{issuer}/.well-known/openid-configuration`, whose `issuer` must be the
//! issuer itself) and its `jwks_uri`, and kept in memory. They are fetched
//! again when they are older than [`MAX_AGE`], and when a token names a
//! key id the cache does not hold, at most once per refetch interval
//! (a minute by default): an issuer rotating its keys is picked up at once,
//! while tokens with made-up key ids cannot make berth hammer the issuer.
//! A refetch replaces the whole set, so a key the issuer dropped stops
//! verifying.
//!
//! Only issuers some trust policy names are ever contacted (the caller
//! checks), over HTTPS; plain HTTP only on loopback (tests, a local
//! issuer). Only RSA and elliptic-curve keys are taken from a JWKS:
//! a symmetric (`oct`) key there would let anyone who can read the JWKS
//! sign tokens.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

use crate::{Error, Result};

/// Keys older than this are fetched again before use.
pub const MAX_AGE: Duration = Duration::from_secs(3600);

/// Largest discovery document or JWKS read.
const MAX_BODY: usize = 1 << 20;

/// Checks that `url` can name an issuer: `https://...`, or `http://` on a
/// loopback host.
pub fn check_issuer_url(url: &str) -> Result<()> {
    let bad = |why: &str| Err(Error::InvalidParameter(format!("issuer {url:?}: {why}")));
    let Ok(u) = reqwest::Url::parse(url) else {
        return bad("not a URL (for GitHub Actions: https://token.actions.githubusercontent.com)");
    };
    if u.query().is_some() || u.fragment().is_some() || !u.username().is_empty() {
        return bad("an issuer URL has no query, fragment or user");
    }
    match u.scheme() {
        "https" => Ok(()),
        "http" if loopback(&u) => Ok(()),
        _ => bad("use https (plain http only on loopback)"),
    }
}

fn loopback(u: &reqwest::Url) -> bool {
    let host = u.host_str().unwrap_or_default();
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|a| a.is_loopback())
}

/// One verification key of an issuer.
#[derive(Clone)]
pub struct Key {
    /// The key.
    pub key: DecodingKey,
    /// The algorithm the JWKS pins it to, if it does.
    pub alg: Option<Algorithm>,
}

struct Keys {
    by_id: HashMap<String, Key>,
    /// Keys without a `kid` (usable only by tokens without one).
    anonymous: Vec<Key>,
    fetched: Instant,
}

/// The key cache of every trusted issuer.
pub struct Issuers {
    http: reqwest::Client,
    refetch_every: Duration,
    keys: tokio::sync::Mutex<HashMap<String, Keys>>,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

fn algorithm(a: KeyAlgorithm) -> Option<Algorithm> {
    Some(match a {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        _ => return None,
    })
}

impl Issuers {
    /// A cache that refetches on an unknown key id at most once per
    /// `refetch_every`.
    pub fn new(refetch_every: Duration) -> Issuers {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::limited(3))
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Issuers {
            http,
            refetch_every,
            keys: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T> {
        let unavailable = |why: String| {
            Error::Unauthorized(format!(
                "cannot verify the token: OIDC issuer document {url}: {why}"
            ))
        };
        let resp = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| unavailable(e.without_url().to_string()))?;
        if !resp.status().is_success() {
            return Err(unavailable(format!("answered {}", resp.status())));
        }
        if resp.content_length().is_some_and(|l| l > MAX_BODY as u64) {
            return Err(unavailable("the document is too large".into()));
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| unavailable(e.without_url().to_string()))?;
        if body.len() > MAX_BODY {
            return Err(unavailable("the document is too large".into()));
        }
        serde_json::from_slice(&body)
            .map_err(|e| unavailable(format!("not the JSON expected: {e}")))
    }

    async fn fetch(&self, issuer: &str) -> Result<Keys> {
        let base = issuer.trim_end_matches('/');
        let discovery: Discovery = self
            .get_json(&format!("{base}/.well-known/openid-configuration"))
            .await?;
        if discovery.issuer != issuer {
            return Err(Error::Unauthorized(format!(
                "cannot verify the token: the discovery document of OIDC issuer {issuer} names another issuer, {:?}",
                discovery.issuer
            )));
        }
        check_issuer_url(&discovery.jwks_uri)?;
        let set: JwkSet = self.get_json(&discovery.jwks_uri).await?;
        let mut keys = Keys {
            by_id: HashMap::new(),
            anonymous: Vec::new(),
            fetched: Instant::now(),
        };
        for jwk in &set.keys {
            if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
                continue;
            }
            if !matches!(
                jwk.algorithm,
                AlgorithmParameters::RSA(_) | AlgorithmParameters::EllipticCurve(_)
            ) {
                continue;
            }
            let Ok(key) = DecodingKey::from_jwk(jwk) else {
                continue;
            };
            let key = Key {
                key,
                alg: jwk.common.key_algorithm.and_then(algorithm),
            };
            match &jwk.common.key_id {
                Some(kid) => {
                    keys.by_id.insert(kid.clone(), key);
                }
                None => keys.anonymous.push(key),
            }
        }
        tracing::info!(
            issuer,
            keys = keys.by_id.len() + keys.anonymous.len(),
            "fetched the signing keys of an OIDC issuer"
        );
        Ok(keys)
    }

    /// The key of `issuer` with id `kid` (a token without `kid`: the
    /// issuer's only key). `Ok(None)` when the issuer has no such key,
    /// even after a refetch (or a refetch was done too recently).
    pub async fn key(&self, issuer: &str, kid: Option<&str>) -> Result<Option<Key>> {
        let mut cache = self.keys.lock().await;
        let stale = cache
            .get(issuer)
            .is_none_or(|k| k.fetched.elapsed() >= MAX_AGE);
        if stale {
            match self.fetch(issuer).await {
                Ok(keys) => {
                    cache.insert(issuer.to_owned(), keys);
                }
                // Keep serving the keys we have while the issuer is down.
                Err(e) if cache.contains_key(issuer) => {
                    tracing::warn!(issuer, error = %e, "refreshing OIDC keys failed; using the cached ones");
                }
                Err(e) => return Err(e),
            }
        }
        let find = |keys: &Keys| match kid {
            Some(id) => keys.by_id.get(id).cloned(),
            None if keys.anonymous.len() + keys.by_id.len() == 1 => keys
                .anonymous
                .first()
                .or_else(|| keys.by_id.values().next())
                .cloned(),
            None => None,
        };
        if let Some(k) = cache.get(issuer).and_then(find) {
            return Ok(Some(k));
        }
        let may_refetch = cache
            .get(issuer)
            .is_some_and(|k| k.fetched.elapsed() >= self.refetch_every);
        if stale || !may_refetch {
            return Ok(None);
        }
        let keys = self.fetch(issuer).await?;
        let found = find(&keys);
        cache.insert(issuer.to_owned(), keys);
        Ok(found)
    }
}
