//! Bursts of logins by one client: a CI job or a Docker daemon fetches a
//! registry token for every few requests, and each fetch is a login. The
//! first login of a burst is an audit event; the rest only count on it
//! (`detail.repeats`, `detail.last_at`), so the log keeps one line per
//! client session instead of hundreds.
//!
//! A burst is the logins with one key (account, address, method and token)
//! no more than [`GAP`] apart, for at most [`LONGEST`]: a client logging in
//! all day still leaves an event an hour. The state is per process (each
//! replica records its own first events).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The longest pause inside one burst.
pub const GAP: Duration = Duration::from_secs(5 * 60);
/// The longest burst one event stands for.
pub const LONGEST: Duration = Duration::from_secs(3600);
/// Bursts remembered before the ended ones are dropped.
const MAX_TRACKED: usize = 10_000;

/// What to do with a login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// The first of a burst: record an event (and tell [`Bursts::recorded`]
    /// its id).
    First,
    /// A repeat: event `event_id` now stands for `repeats` more logins.
    Repeat {
        /// The burst's event.
        event_id: i64,
        /// Logins after the first.
        repeats: u64,
    },
    /// A repeat while the first is still being recorded: counted, written
    /// with the next repeat.
    Pending,
}

struct Burst {
    event_id: Option<i64>,
    first: Instant,
    last: Instant,
    repeats: u64,
}

/// The bursts in progress, by key.
#[derive(Default)]
pub struct Bursts {
    map: Mutex<HashMap<String, Burst>>,
}

impl Bursts {
    /// Notes a login with `key` at `now`.
    pub fn note(&self, key: &str, now: Instant) -> Seen {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = map.get_mut(key) {
            if now.duration_since(b.last) <= GAP && now.duration_since(b.first) <= LONGEST {
                b.last = now;
                b.repeats += 1;
                return match b.event_id {
                    Some(event_id) => Seen::Repeat {
                        event_id,
                        repeats: b.repeats,
                    },
                    None => Seen::Pending,
                };
            }
        }
        if map.len() >= MAX_TRACKED {
            map.retain(|_, b| now.duration_since(b.last) <= GAP);
        }
        map.insert(
            key.to_owned(),
            Burst {
                event_id: None,
                first: now,
                last: now,
                repeats: 0,
            },
        );
        Seen::First
    }

    /// The first login of the burst `key` was recorded as `event_id`.
    pub fn recorded(&self, key: &str, event_id: i64) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = map.get_mut(key) {
            b.event_id.get_or_insert(event_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_login_of_a_burst_is_recorded_and_the_rest_counted() {
        let bursts = Bursts::default();
        let t0 = Instant::now();
        assert_eq!(bursts.note("alice|1.2.3.4", t0), Seen::First);
        // Before the event id is known: counted, not written.
        assert_eq!(bursts.note("alice|1.2.3.4", t0), Seen::Pending);
        bursts.recorded("alice|1.2.3.4", 7);
        let mut t = t0;
        for n in 2..=100 {
            t += Duration::from_secs(1);
            assert_eq!(
                bursts.note("alice|1.2.3.4", t),
                Seen::Repeat {
                    event_id: 7,
                    repeats: n
                }
            );
        }
        // Another client is its own burst.
        assert_eq!(bursts.note("alice|5.6.7.8", t), Seen::First);
        // A pause longer than GAP starts a new burst.
        assert_eq!(
            bursts.note("alice|1.2.3.4", t + GAP + Duration::from_secs(1)),
            Seen::First
        );
    }

    #[test]
    fn a_burst_lasts_at_most_an_hour() {
        let bursts = Bursts::default();
        let mut t = Instant::now();
        assert_eq!(bursts.note("k", t), Seen::First);
        bursts.recorded("k", 1);
        let mut firsts = 0;
        for _ in 0..130 {
            t += Duration::from_secs(60);
            if bursts.note("k", t) == Seen::First {
                firsts += 1;
                bursts.recorded("k", 2);
            }
        }
        assert_eq!(firsts, 2, "one new event per hour of steady logins");
    }
}
