//! Slowing down failed logins, per client address and per (account,
//! address).
//!
//! Throttling, not lockout: after `free` failures a key must wait before
//! its next attempt is even checked, and the wait doubles with each further
//! failure up to `max_delay`. An attempt during the wait is answered 429
//! with `Retry-After`, without looking at the credentials. Failures are
//! forgotten `forget_after` after the last one.
//!
//! An attempt is counted when it **starts**: [`Throttle::begin`] reserves
//! it (an attempt in flight counts like a failure until it ends), and
//! [`Throttle::end`] turns the reservation into a failure, a success (which
//! clears the key) or nothing (an attempt abandoned before its credentials
//! were checked). So concurrent attempts cannot slip past the allowance
//! while earlier ones are still being verified: once the free failures are
//! used up (counting those in flight), at most one attempt per key is in
//! flight, and only after its wait.
//!
//! Keys are least-recently-used: a table holds at most [`MAX_KEYS`] keys
//! and a new key evicts the one touched longest ago, so a flood of new keys
//! (addresses, names) pushes out idle keys, never the ones under attack
//! (their refused attempts keep touching them).
//!
//! State is in memory, per process (each replica throttles what it sees).
//! Clocks are passed in, so tests need no sleeping.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use hashlink::LruCache;

/// Most keys remembered per table; past that, the least recently used key
/// is forgotten.
pub const MAX_KEYS: usize = 100_000;

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
    /// Per (account, client address): 5 free failures, then 1 s doubling
    /// to 15 min.
    pub const PER_ACCOUNT_IP: Policy = Policy {
        free: 5,
        base_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(15 * 60),
        forget_after: Duration::from_secs(15 * 60),
    };

    /// The wait imposed after `failures` failures.
    pub(crate) fn delay(&self, failures: u32) -> Duration {
        if failures < self.free {
            return Duration::ZERO;
        }
        let doublings = (failures - self.free).min(30);
        self.base_delay
            .saturating_mul(1u32 << doublings)
            .min(self.max_delay)
    }
}

/// How a reserved attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The credentials were wrong: counted.
    Failed,
    /// The credentials were right: the key is cleared.
    Succeeded,
    /// Never checked (refused for another reason, or the client left):
    /// the reservation is released without counting.
    Abandoned,
}

#[derive(Debug, Clone, Copy)]
struct State {
    count: u32,
    in_flight: u32,
    last: Instant,
}

/// Failure counts per key under one [`Policy`].
pub struct Throttle {
    policy: Policy,
    keys: Mutex<LruCache<String, State>>,
}

impl Throttle {
    /// An empty throttle.
    pub fn new(policy: Policy) -> Throttle {
        Throttle::with_capacity(policy, MAX_KEYS)
    }

    /// An empty throttle remembering at most `capacity` keys.
    pub fn with_capacity(policy: Policy, capacity: usize) -> Throttle {
        Throttle {
            policy,
            keys: Mutex::new(LruCache::new(capacity.max(1))),
        }
    }

    /// Reserves an attempt of `key`, or `Err(wait)` if it must wait first.
    /// Every `Ok` must be followed by one [`end`](Self::end).
    pub fn begin(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let Some(s) = keys.get_mut(key) else {
            keys.insert(
                key.to_owned(),
                State {
                    count: 0,
                    in_flight: 1,
                    last: now,
                },
            );
            return Ok(());
        };
        if s.in_flight == 0 && now.saturating_duration_since(s.last) >= self.policy.forget_after {
            s.count = 0;
        }
        let pending = s.count.saturating_add(s.in_flight);
        if pending < self.policy.free {
            s.in_flight += 1;
            return Ok(());
        }
        if s.in_flight > 0 {
            // The free attempts are used up and one is still being checked.
            return Err(self.policy.delay(pending).max(self.policy.base_delay));
        }
        let until = s.last + self.policy.delay(s.count);
        if now < until {
            return Err(until - now);
        }
        s.in_flight = 1;
        Ok(())
    }

    /// Ends an attempt reserved by [`begin`](Self::begin).
    pub fn end(&self, key: &str, outcome: Outcome, now: Instant) {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let Some(s) = keys.get_mut(key) else {
            // Evicted meanwhile: remember a failure all the same.
            if outcome == Outcome::Failed {
                keys.insert(
                    key.to_owned(),
                    State {
                        count: 1,
                        in_flight: 0,
                        last: now,
                    },
                );
            }
            return;
        };
        s.in_flight = s.in_flight.saturating_sub(1);
        match outcome {
            Outcome::Failed => {
                if now.saturating_duration_since(s.last) >= self.policy.forget_after {
                    s.count = 0;
                }
                s.count = s.count.saturating_add(1);
                s.last = now;
            }
            Outcome::Succeeded => {
                s.count = 0;
                if s.in_flight == 0 {
                    keys.remove(key);
                }
            }
            Outcome::Abandoned => {}
        }
    }

    /// `Err(wait)` if `key` must wait before its next attempt (without
    /// reserving one).
    pub fn check(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let Some(s) = keys.get(key) else {
            return Ok(());
        };
        if s.in_flight == 0 && now.saturating_duration_since(s.last) >= self.policy.forget_after {
            return Ok(());
        }
        let until = s.last + self.policy.delay(s.count.saturating_add(s.in_flight));
        if now < until {
            Err(until - now)
        } else {
            Ok(())
        }
    }

    /// Records a failed attempt of `key` that was not reserved.
    pub fn fail(&self, key: &str, now: Instant) {
        {
            let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(s) = keys.get_mut(key) {
                s.in_flight += 1;
            } else {
                keys.insert(
                    key.to_owned(),
                    State {
                        count: 0,
                        in_flight: 1,
                        last: now,
                    },
                );
            }
        }
        self.end(key, Outcome::Failed, now);
    }

    /// Keys remembered.
    pub fn len(&self) -> usize {
        self.keys.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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

    fn attempt(t: &Throttle, key: &str, now: Instant) -> Result<(), Duration> {
        t.begin(key, now)?;
        t.end(key, Outcome::Failed, now);
        Ok(())
    }

    #[test]
    fn delays_grow_after_the_free_failures() {
        let t = Throttle::new(P);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(attempt(&t, "ip", t0).is_ok());
        }
        assert_eq!(t.begin("ip", t0), Err(Duration::from_secs(1)));
        assert!(attempt(&t, "ip", t0 + Duration::from_secs(1)).is_ok());
        assert_eq!(
            t.begin("ip", t0 + Duration::from_secs(1)),
            Err(Duration::from_secs(2))
        );
        assert!(t.begin("other", t0).is_ok(), "keys are independent");
    }

    #[test]
    fn attempts_in_flight_count_against_the_allowance() {
        let t = Throttle::new(P);
        let t0 = Instant::now();
        // Three start at once: all free; the fourth must wait even though
        // none has failed yet.
        for _ in 0..3 {
            assert!(t.begin("k", t0).is_ok());
        }
        assert!(t.begin("k", t0).is_err());
        for _ in 0..3 {
            t.end("k", Outcome::Failed, t0);
        }
        // After the wait, one at a time.
        let later = t0 + Duration::from_secs(1);
        assert!(t.begin("k", later).is_ok());
        assert!(
            t.begin("k", later).is_err(),
            "one in flight past the allowance"
        );
        t.end("k", Outcome::Abandoned, later);
        assert!(
            t.begin("k", later).is_ok(),
            "abandoned attempts are not counted"
        );
        t.end("k", Outcome::Succeeded, later);
        assert!(t.begin("k", later).is_ok(), "success clears");
        t.end("k", Outcome::Abandoned, later);
    }

    #[test]
    fn delays_are_capped_so_nobody_is_locked_out_for_good() {
        let t = Throttle::new(P);
        let t0 = Instant::now();
        for i in 0..50 {
            t.fail("alice", t0 + Duration::from_millis(i));
        }
        let last = t0 + Duration::from_millis(49);
        assert_eq!(t.begin("alice", last), Err(Duration::from_secs(8)));
        assert_eq!(t.check("alice", last), Err(Duration::from_secs(8)));
        assert!(t.begin("alice", last + Duration::from_secs(8)).is_ok());
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
        assert!(attempt(&t, "k", t0 + Duration::from_secs(61)).is_ok());
        assert!(
            t.begin("k", t0 + Duration::from_secs(61)).is_ok(),
            "count restarted"
        );
        t.end("k", Outcome::Succeeded, t0 + Duration::from_secs(61));
        assert!(t.is_empty());
        assert_eq!(Policy::PER_ACCOUNT_IP.delay(100), Duration::from_secs(900));
        assert_eq!(Policy::PER_IP.delay(100), Duration::from_secs(900));
    }

    #[test]
    fn a_flood_of_new_keys_evicts_the_idle_ones_not_the_throttled() {
        let t = Throttle::with_capacity(P, 100);
        let t0 = Instant::now();
        for _ in 0..5 {
            t.fail("victim", t0);
        }
        for i in 0..1000 {
            t.fail(&format!("flood-{i}"), t0);
            if i % 50 == 0 {
                // The attacker keeps trying the throttled key.
                assert!(t.begin("victim", t0).is_err());
            }
        }
        assert_eq!(t.len(), 100);
        assert!(t.check("victim", t0).is_err(), "still throttled");
        assert!(t.check("flood-0", t0).is_ok(), "idle keys went first");
    }
}
