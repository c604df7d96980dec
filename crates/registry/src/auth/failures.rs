//! How many failed logins reach the audit log and the log.
//!
//! Every failed login used to write an audit row and a log line, so a flood
//! of bad logins (100,000 in 36 seconds) wrote as many rows. Now at most
//! [`PER_MINUTE`] failures a minute are recorded; the rest are counted, and
//! the next recorded failure carries that count (`"suppressed": n` in its
//! detail), so the audit log still says how many there were. The first
//! suppression of each minute is logged at `warn`.
//!
//! Failures still count in the throttles whether recorded or not. Clocks
//! are passed in.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed logins recorded per minute (per process).
pub const PER_MINUTE: u32 = 60;

const WINDOW: Duration = Duration::from_secs(60);

/// What to do with one failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Record it, with the number of failures suppressed since the last
    /// recorded one.
    Record {
        /// Failures not recorded before this one.
        suppressed: u64,
    },
    /// Count it only; `first` for the first suppressed in this window.
    Suppress {
        /// Whether this is the first failure suppressed in the window.
        first: bool,
    },
}

struct State {
    window: Option<Instant>,
    recorded: u32,
    suppressed: u64,
    suppressed_in_window: bool,
}

/// The failure recorder's state.
pub struct FailureLog {
    per_minute: u32,
    state: Mutex<State>,
}

impl FailureLog {
    /// Records at most `per_minute` failures a minute.
    pub fn new(per_minute: u32) -> FailureLog {
        FailureLog {
            per_minute,
            state: Mutex::new(State {
                window: None,
                recorded: 0,
                suppressed: 0,
                suppressed_in_window: false,
            }),
        }
    }

    /// Decides about one failure at `now`.
    pub fn admit(&self, now: Instant) -> Verdict {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.window
            .is_none_or(|w| now.saturating_duration_since(w) >= WINDOW)
        {
            s.window = Some(now);
            s.recorded = 0;
            s.suppressed_in_window = false;
        }
        if s.recorded < self.per_minute {
            s.recorded += 1;
            let suppressed = std::mem::take(&mut s.suppressed);
            Verdict::Record { suppressed }
        } else {
            s.suppressed += 1;
            let first = !std::mem::replace(&mut s.suppressed_in_window, true);
            Verdict::Suppress { first }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_a_few_a_minute_and_counts_the_rest() {
        let log = FailureLog::new(2);
        let t0 = Instant::now();
        assert_eq!(log.admit(t0), Verdict::Record { suppressed: 0 });
        assert_eq!(log.admit(t0), Verdict::Record { suppressed: 0 });
        assert_eq!(log.admit(t0), Verdict::Suppress { first: true });
        for _ in 0..10 {
            assert_eq!(log.admit(t0), Verdict::Suppress { first: false });
        }
        let next = t0 + WINDOW;
        assert_eq!(log.admit(next), Verdict::Record { suppressed: 11 });
        assert_eq!(log.admit(next), Verdict::Record { suppressed: 0 });
        assert_eq!(log.admit(next), Verdict::Suppress { first: true });
    }
}
