//! Pull rate limits: manifest GETs per account, or per client address for
//! anonymous clients, in a fixed window per key.
//!
//! A key's window opens at its first counted request and lasts `window`;
//! within it at most `limit` requests pass. The answer carries what the
//! `RateLimit-Limit` / `RateLimit-Remaining` headers (`100;w=21600`, as
//! Docker Hub sends them) and `Retry-After` need. State is in memory, per
//! process; clocks are passed in. At most [`MAX_KEYS`] keys are kept; a new
//! key evicts the least recently used one (never the whole table, which
//! would hand every limited client a fresh window).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use hashlink::LruCache;

/// Most keys remembered; past that, the least recently used is forgotten.
pub const MAX_KEYS: usize = 200_000;

/// A limit: `limit` requests per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests allowed per window.
    pub limit: u32,
    /// The window.
    pub window: Duration,
}

/// The state of one key after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateState {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// The limit per window.
    pub limit: u32,
    /// Requests left in the current window.
    pub remaining: u32,
    /// The window, in seconds (the `w=` of the headers).
    pub window_secs: u64,
    /// Seconds until the window resets (for `Retry-After`), at least 1.
    pub reset_secs: u64,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    count: u32,
}

/// Counts per key under one [`RateLimit`].
pub struct RateLimiter {
    limit: RateLimit,
    keys: Mutex<LruCache<String, Window>>,
}

impl RateLimiter {
    /// An empty limiter.
    pub fn new(limit: RateLimit) -> RateLimiter {
        RateLimiter::with_capacity(limit, MAX_KEYS)
    }

    /// An empty limiter remembering at most `capacity` keys.
    pub fn with_capacity(limit: RateLimit, capacity: usize) -> RateLimiter {
        RateLimiter {
            limit,
            keys: Mutex::new(LruCache::new(capacity.max(1))),
        }
    }

    /// Counts a request of `key` at `now` if `consume` (a GET; a HEAD only
    /// reads the state) and says whether it may proceed.
    pub fn hit(&self, key: &str, now: Instant, consume: bool) -> RateState {
        let RateLimit { limit, window } = self.limit;
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if !keys.contains_key(key) {
            keys.insert(
                key.to_owned(),
                Window {
                    start: now,
                    count: 0,
                },
            );
        }
        let Some(w) = keys.get_mut(key) else {
            return RateState {
                allowed: true,
                limit,
                remaining: limit,
                window_secs: window.as_secs(),
                reset_secs: window.as_secs().max(1),
            };
        };
        if now.saturating_duration_since(w.start) >= window {
            *w = Window {
                start: now,
                count: 0,
            };
        }
        let allowed = !consume || w.count < limit;
        if consume && allowed {
            w.count += 1;
        }
        let reset = (w.start + window).saturating_duration_since(now);
        RateState {
            allowed,
            limit,
            remaining: limit.saturating_sub(w.count),
            window_secs: window.as_secs(),
            reset_secs: reset.as_secs_f64().ceil().max(1.0) as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_within_a_window_and_resets_after() {
        let r = RateLimiter::new(RateLimit {
            limit: 3,
            window: Duration::from_secs(60),
        });
        let t0 = Instant::now();
        for left in [2, 1, 0] {
            let s = r.hit("alice", t0, true);
            assert!(s.allowed);
            assert_eq!(s.remaining, left);
        }
        let s = r.hit("alice", t0 + Duration::from_secs(10), true);
        assert!(!s.allowed);
        assert_eq!((s.remaining, s.reset_secs, s.window_secs), (0, 50, 60));
        // A HEAD reads without counting, and is not refused.
        assert!(r.hit("alice", t0 + Duration::from_secs(10), false).allowed);
        // Other keys have their own window.
        assert_eq!(r.hit("10.0.0.1", t0, true).remaining, 2);
        let s = r.hit("alice", t0 + Duration::from_secs(60), true);
        assert!(s.allowed);
        assert_eq!(s.remaining, 2);
    }

    #[test]
    fn a_flood_of_new_keys_does_not_reset_a_limited_one() {
        let r = RateLimiter::with_capacity(
            RateLimit {
                limit: 1,
                window: Duration::from_secs(60),
            },
            10,
        );
        let t0 = Instant::now();
        assert!(r.hit("busy", t0, true).allowed);
        for i in 0..100 {
            r.hit(&format!("10.0.0.{i}"), t0, true);
            if i % 5 == 0 {
                assert!(!r.hit("busy", t0, true).allowed, "still limited");
            }
        }
        assert!(!r.hit("busy", t0, true).allowed);
    }
}
