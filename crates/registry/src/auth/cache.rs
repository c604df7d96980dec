//! Short-lived caches of permission facts and verified logins.
//!
//! Every request with credentials needs its account, maybe its token, the
//! repository's visibility and the account's role: a few small reads that
//! rarely change. They are served from memory here. An entry remembers the
//! accounts epoch of the database handle ([`Meta::accounts_epoch`]) it was
//! filled at, and is dropped once any account, membership, visibility or
//! token change committed through this process, and, when replicas share
//! the database ([`super::AuthSettings::shared_database`]), once the
//! database notifies any such change committed by any replica (the
//! accounts epoch moves then too, see `berth_meta::changes`): a token
//! revoked, a member removed or an account disabled through any replica is
//! refused by every replica on the next request (the replica that made the
//! change answers only once every replica heard it: `Registry::fence`).
//! While a replica is not listening to those notifications it caches
//! nothing ([`crate::invalidation`]). Entries also expire after `ttl`.
//!
//! The login cache maps a SHA-256 of `username NUL password` to the account
//! it verified and the password hash it was verified against, so a client
//! sending Basic credentials on every request pays argon2 once per `ttl`,
//! not on each request. A hit counts only while the account's current
//! hash is still that one (read through the facts), so a password changed
//! anywhere ends it at once. Failures are never cached.
//!
//! Registry tokens (the JWTs of `/token`) are cached verified, by the
//! token itself: the identity they stand for (signature, claims, account
//! and access token checked), under the same epoch and `ttl`, and only
//! until the token or its access token expires.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use berth_meta::accounts::{Role, User, Visibility};
use berth_meta::tokens::TokenRecord;
use berth_meta::Meta;

use crate::invalidation::Invalidation;

/// Entries per map before it is cleared.
const MAX_ENTRIES: usize = 100_000;
/// Entries of the verified registry tokens (each holds the token and an
/// identity, about 2 KiB) before the map is cleared.
const MAX_REGISTRY_TOKENS: usize = 10_000;

struct Entry<V> {
    value: V,
    epoch: u64,
    at: Instant,
}

/// One map of the cache.
pub(crate) struct Cached<K, V> {
    map: RwLock<HashMap<K, Entry<V>>>,
    ttl: Duration,
    gate: Option<Invalidation>,
    /// Entries before the map is cleared.
    max: usize,
}

impl<K: Eq + Hash, V: Clone> Cached<K, V> {
    fn new(ttl: Duration, gate: Option<&Invalidation>) -> Self {
        Cached {
            map: RwLock::new(HashMap::new()),
            ttl,
            gate: gate.cloned(),
            max: MAX_ENTRIES,
        }
    }

    fn bounded(mut self, max: usize) -> Self {
        self.max = max;
        self
    }

    fn live(&self) -> bool {
        self.gate.as_ref().is_none_or(Invalidation::live)
    }

    /// A map that never holds anything.
    #[cfg(test)]
    fn off() -> Self {
        Cached::new(Duration::ZERO, None)
    }

    /// The value for `key` if it was filled at `epoch` and is fresh.
    pub(crate) fn get<Q>(&self, key: &Q, epoch: u64) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        if !self.live() {
            return None;
        }
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        let e = map.get(key)?;
        (e.epoch == epoch && e.at.elapsed() < self.ttl).then(|| e.value.clone())
    }

    /// Remembers `value`, read from the database at `epoch`.
    pub(crate) fn put(&self, key: K, value: V, epoch: u64) {
        if self.ttl.is_zero() || !self.live() {
            return;
        }
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        if map.len() >= self.max {
            map.clear();
        }
        map.insert(
            key,
            Entry {
                value,
                epoch,
                at: Instant::now(),
            },
        );
    }
}

/// The caches of an [`super::Authority`].
pub(crate) struct Caches {
    pub(crate) users: Cached<String, Option<User>>,
    pub(crate) tokens: Cached<String, Option<TokenRecord>>,
    /// Repository -> effective visibility.
    pub(crate) visibility: Cached<String, Visibility>,
    /// `org NUL member` -> role.
    pub(crate) roles: Cached<String, Option<Role>>,
    /// SHA-256 of `username NUL password` -> the account it verified and
    /// the password hash it matched.
    pub(crate) logins: Cached<[u8; 32], (String, String)>,
    /// Client certificate subject -> the account it is mapped to.
    pub(crate) certificates: Cached<String, Option<String>>,
    /// Registry token (the JWT itself) -> what verifying it gave: a client
    /// sends the same token on every request until it expires, and its
    /// signature, claims, account and access token are checked once per
    /// `ttl` and accounts epoch instead of on each request.
    pub(crate) registry_tokens: Cached<Box<str>, VerifiedToken>,
}

/// A registry token verified.
#[derive(Clone)]
pub(crate) struct VerifiedToken {
    /// The identity it stands for.
    pub(crate) identity: super::Identity,
    /// When it stops being usable (Unix ms, exclusive): its expiry with
    /// the clock leeway, or its access token's if sooner.
    pub(crate) until_ms: i64,
}

impl Caches {
    /// The caches, entries living `ttl`; the facts cached only while
    /// `gate` is live. The accounts epoch invalidates them (the gate's
    /// notifications move it).
    pub(crate) fn new(ttl: Duration, gate: &Invalidation) -> Caches {
        let g = Some(gate);
        Caches {
            users: Cached::new(ttl, g),
            tokens: Cached::new(ttl, g),
            visibility: Cached::new(ttl, g),
            roles: Cached::new(ttl, g),
            logins: Cached::new(ttl, None),
            certificates: Cached::new(ttl, g),
            registry_tokens: Cached::new(ttl, g).bounded(MAX_REGISTRY_TOKENS),
        }
    }
}

/// Reads through a cache: the cached value, or `load()` remembered at the
/// epoch taken before it ran.
pub(crate) async fn through<K, V, F>(
    meta: &Meta,
    cache: &Cached<K, V>,
    key: K,
    load: F,
) -> crate::Result<V>
where
    K: Eq + Hash,
    V: Clone,
    F: std::future::Future<Output = berth_meta::Result<V>>,
{
    let epoch = meta.accounts_epoch();
    if let Some(v) = cache.get(&key, epoch) {
        return Ok(v);
    }
    let v = load.await?;
    cache.put(key, v.clone(), epoch);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_die_with_their_epoch_and_age() {
        let c: Cached<String, u32> = Cached::new(Duration::from_secs(60), None);
        c.put("a".into(), 1, 7);
        assert_eq!(c.get("a", 7), Some(1));
        assert_eq!(c.get("a", 8), None, "a later change invalidates");
        let short: Cached<String, u32> = Cached::new(Duration::from_nanos(1), None);
        short.put("a".into(), 1, 7);
        std::thread::sleep(Duration::from_millis(1));
        assert_eq!(short.get("a", 7), None, "expired");
        let off: Cached<String, u32> = Cached::off();
        off.put("a".into(), 1, 7);
        assert_eq!(off.get("a", 7), None, "a zero ttl caches nothing");
        assert!(off.map.read().unwrap().is_empty());
    }
}
