//! Slowing down failed logins, per client address and per account.
//!
//! Throttling, not lockout: after `free` failures a key (an IP address, or
//! an account name) must wait before its next attempt is even checked, and
//! the wait doubles with each further failure up to `max_delay`. An
//! attempt during the wait is answered 429 with `Retry-After`, without
//! looking at the credentials. Failures are forgotten `forget_after` after
//! the last one, and a success clears the key.
//!
//! The two keys have different caps on purpose. An address that keeps
//! failing waits up to 15 minutes between attempts. An account under
//! attack from many addresses waits at most 30 seconds: its real owner is
//! never locked out for longer than that, while guessing is held to about
//! two attempts a minute per account however many addresses try.
//!
//! State is in memory, per process (each replica throttles what it sees).
//! Clocks are passed in, so tests need no sleeping.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most keys remembered; past that, forgotten ones are purged, and if that
/// is not enough, everything (an attacker with that many addresses is not
/// stopped by this anyway).
const MAX_KEYS: usize = 100_000;

/// The parameters of one throttle.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Failures allowed before any delay.
    pub free: u32,
    /// Delay after the first failure past `free`; doubles after each.
    pub base_delay: Duration,
    /// The longest delay.
    pub max_delay: Duration,
    /// Failures are forgotten this long after the last one.
    pub forget_after: Duration,
}

impl Policy {
    /// Per client address: 10 free failures, then 1 s doubling to 15 min.
    pub const PER_IP: Policy = Policy {
        free: 10,
        base_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(15 * 60),
        forget_after: Duration::from_secs(30 * 60),
    };
    /// Per account: 5 free failures, then 1 s doubling to 30 s.
    pub const PER_ACCOUNT: Policy = Policy {
        free: 5,
        base_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(30),
        forget_after: Duration::from_secs(15 * 60),
    };

    fn delay(&self, failures: u32) -> Duration {
        if failures < self.free {
            return Duration::ZERO;
        }
        let doublings = (failures - self.free).min(30);
        self.base_delay
            .saturating_mul(1u32 << doublings)
            .min(self.max_delay)
    }
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

/// Failure counts per key under one [`Policy`].
pub struct Throttle {
    policy: Policy,
    keys: Mutex<HashMap<String, Failures>>,
}

impl Throttle {
    /// An empty throttle.
    pub fn new(policy: Policy) -> Throttle {
        Throttle {
            policy,
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(wait)` if `key` must wait before its next attempt.
    pub fn check(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let Some(f) = keys.get(key) else {
            return Ok(());
        };
        if now.saturating_duration_since(f.last) >= self.policy.forget_after {
            return Ok(());
        }
        let until = f.last + self.policy.delay(f.count);
        if now < until {
            Err(until - now)
        } else {
            Ok(())
        }
    }

    /// Records a failed attempt of `key`.
    pub fn fail(&self, key: &str, now: Instant) {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if keys.len() >= MAX_KEYS && !keys.contains_key(key) {
            let forget = self.policy.forget_after;
            keys.retain(|_, f| now.saturating_duration_since(f.last) < forget);
            if keys.len() >= MAX_KEYS {
                keys.clear();
            }
        }
        let f = keys.entry(key.to_owned()).or_insert(Failures {
            count: 0,
            last: now,
        });
        if now.saturating_duration_since(f.last) >= self.policy.forget_after {
            f.count = 0;
        }
        f.count = f.count.saturating_add(1);
        f.last = now;
    }

    /// Clears `key` after a successful attempt.
    pub fn succeed(&self, key: &str) {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        keys.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Policy = Policy {
        free: 3,
        base_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(8),
        forget_after: Duration::from_secs(60),
    };

    #[test]
    fn delays_grow_after_the_free_failures() {
        let t = Throttle::new(P);
        let t0 = Instant::now();
        for _ in 0..2 {
            t.fail("ip", t0);
            assert!(t.check("ip", t0).is_ok());
        }
        t.fail("ip", t0);
        assert_eq!(t.check("ip", t0), Err(Duration::from_secs(1)));
        assert!(t.check("ip", t0 + Duration::from_secs(1)).is_ok());
        t.fail("ip", t0 + Duration::from_secs(1));
        assert_eq!(
            t.check("ip", t0 + Duration::from_secs(1)),
            Err(Duration::from_secs(2))
        );
        assert!(t.check("other", t0).is_ok(), "keys are independent");
    }

    #[test]
    fn delays_are_capped_so_nobody_is_locked_out_for_good() {
        let t = Throttle::new(P);
        let t0 = Instant::now();
        for i in 0..50 {
            t.fail("alice", t0 + Duration::from_millis(i));
        }
        let last = t0 + Duration::from_millis(49);
        assert_eq!(t.check("alice", last), Err(Duration::from_secs(8)));
        assert!(t.check("alice", last + Duration::from_secs(8)).is_ok());
    }

    #[test]
    fn failures_are_forgotten_and_success_clears() {
        let t = Throttle::new(P);
        let t0 = Instant::now();
        for _ in 0..5 {
            t.fail("k", t0);
        }
        assert!(t.check("k", t0).is_err());
        assert!(t.check("k", t0 + Duration::from_secs(60)).is_ok());
        t.fail("k", t0 + Duration::from_secs(61));
        assert!(
            t.check("k", t0 + Duration::from_secs(61)).is_ok(),
            "count restarted"
        );
        for _ in 0..5 {
            t.fail("k", t0);
        }
        t.succeed("k");
        assert!(t.check("k", t0).is_ok());
        assert_eq!(Policy::PER_ACCOUNT.delay(100), Duration::from_secs(30));
        assert_eq!(Policy::PER_IP.delay(100), Duration::from_secs(900));
    }
}
