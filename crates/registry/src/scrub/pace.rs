//! How fast the scrub reads: at `scrub_rate` while the server is idle, at
//! a tenth of it while requests are being served.
//!
//! The server counts its requests in a [`Traffic`] (the listener begins
//! one [`Counted`] per request and drops it with the response body: two
//! atomic additions, no lock, no clock). Before each read the scrub asks
//! its [`Pacer`] whether it may go on: reading earns it no right to read
//! more, time does, at the ceiling (`scrub_rate`) over time in which no
//! request started or was in flight, and at [`BUSY_SHARE`] of it over time
//! in which one did. So the scrub yields to requests without ever stopping:
//! a server that is never idle is still scrubbed, at a tenth of the rate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The share of `scrub_rate` the scrub reads at while requests are in
/// flight (one tenth): its guaranteed progress on a server that is never
/// idle.
pub const BUSY_SHARE: u64 = 10;

/// The longest the scrub waits before it looks at the traffic again: how
/// soon it speeds up once the requests stop.
const LOOK_AGAIN: Duration = Duration::from_millis(20);

/// How much unused time the scrub may save up, in seconds at the rate it
/// earned it: after a pause it reads at most this much at once.
const SAVED: f64 = 0.1;

/// Low 32 bits: requests in flight. High 32 bits: requests begun
/// (wrapping), so that a request begun and ended between two looks still
/// counts as traffic.
const ONE_BEGUN: u64 = 1 << 32;

/// The requests a server is serving, shared by its listener (which counts
/// them) and the scrub (which yields to them).
#[derive(Debug, Default)]
pub struct Traffic {
    state: AtomicU64,
}

/// One request counted in a [`Traffic`], until dropped.
#[derive(Debug)]
pub struct Counted(Arc<Traffic>);

/// A request that is not counted as traffic while this lives (the scrub's
/// own `POST /api/v1/scrub`, which would otherwise always find the
/// server busy).
#[derive(Debug)]
pub struct Uncounted<'a> {
    traffic: &'a Traffic,
    was_counted: bool,
}

/// What the scrub saw the last time it looked at the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Look(u64);

impl Traffic {
    /// Counts one request until the returned value is dropped.
    pub fn begin(self: &Arc<Self>) -> Counted {
        self.state.fetch_add(ONE_BEGUN + 1, Ordering::Relaxed);
        Counted(self.clone())
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> u64 {
        self.state.load(Ordering::Relaxed) & (ONE_BEGUN - 1)
    }

    /// Stops counting one request in flight (the caller's own) until the
    /// returned value is dropped. If none is counted (the caller was not
    /// reached through the listener) it changes nothing.
    pub fn uncount_own(&self) -> Uncounted<'_> {
        let was_counted = self
            .state
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
                (s & (ONE_BEGUN - 1) > 0).then(|| s - 1)
            })
            .is_ok();
        Uncounted {
            traffic: self,
            was_counted,
        }
    }

    pub(crate) fn look(&self) -> Look {
        Look(self.state.load(Ordering::Relaxed))
    }

    /// Whether requests were served between `before` and now: one is in
    /// flight now, or one began since.
    pub(crate) fn busy_since(&self, before: &mut Look) -> bool {
        let now = self.look();
        let began = (now.0 >> 32) != (before.0 >> 32);
        *before = now;
        began || now.0 & (ONE_BEGUN - 1) > 0
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.state.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Drop for Uncounted<'_> {
    fn drop(&mut self) {
        if self.was_counted {
            self.traffic.state.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The pacing decision: how long to wait before the next read.
#[derive(Debug)]
pub(crate) struct Pacer {
    /// Bytes per second while idle (0: no limit, and no yielding).
    ceiling: u64,
    /// Bytes the scrub may read now; negative: it read ahead and owes.
    credit: f64,
    /// When the credit was last brought up to date.
    last: Instant,
}

impl Pacer {
    pub(crate) fn new(ceiling: u64, now: Instant) -> Pacer {
        Pacer {
            ceiling,
            credit: 0.0,
            last: now,
        }
    }

    /// The rate the scrub reads at while busy (at least one byte a second).
    pub(crate) fn floor(&self) -> u64 {
        (self.ceiling / BUSY_SHARE).max(1)
    }

    /// Whether the scrub may read now, given whether requests were served
    /// since the last call (`busy`): `None` to go on, or how long to wait
    /// before asking again. Time since the last call earns credit at the
    /// ceiling when idle and at the floor when busy; a busy server also
    /// takes away whatever was saved up while it was idle.
    pub(crate) fn wait(&mut self, now: Instant, busy: bool) -> Option<Duration> {
        if self.ceiling == 0 {
            return None;
        }
        let rate = if busy { self.floor() } else { self.ceiling } as f64;
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        if busy {
            self.credit = self.credit.min(0.0);
        }
        self.credit = (self.credit + elapsed * rate).min(rate * SAVED);
        // Owing less than a byte is owing nothing.
        if self.credit > -1.0 {
            return None;
        }
        let due = Duration::from_secs_f64(-self.credit / rate);
        Some(due.min(LOOK_AGAIN))
    }

    /// Counts `n` bytes read.
    pub(crate) fn spent(&mut self, n: u64) {
        if self.ceiling != 0 {
            self.credit -= n as f64;
        }
    }
}

/// A [`Pacer`] on the clock, looking at a server's [`Traffic`].
pub(crate) struct Pace<'a> {
    pacer: Pacer,
    traffic: &'a Traffic,
    seen: Look,
    /// Whether requests were served when the scrub last looked.
    busy: bool,
    /// Bytes read after a look that found requests being served.
    pub(crate) busy_bytes: u64,
}

impl<'a> Pace<'a> {
    pub(crate) fn new(rate: u64, traffic: &'a Traffic) -> Pace<'a> {
        Pace {
            pacer: Pacer::new(rate, Instant::now()),
            seen: traffic.look(),
            traffic,
            busy: false,
            busy_bytes: 0,
        }
    }

    /// Returns once the next read may start.
    pub(crate) async fn ready(&mut self) {
        loop {
            self.busy = self.traffic.busy_since(&mut self.seen);
            match self.pacer.wait(Instant::now(), self.busy) {
                None => return,
                Some(d) => tokio::time::sleep(d).await,
            }
        }
    }

    /// Counts `n` bytes read.
    pub(crate) fn spent(&mut self, n: u64) {
        self.pacer.spent(n);
        if self.busy {
            self.busy_bytes += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;
    const CHUNK: u64 = 256 * 1024;

    /// Reads `CHUNK`s for `span` of simulated time, asking `busy` at each
    /// look; returns the bytes read and the longest single wait.
    fn simulate(rate: u64, span: Duration, busy: impl Fn(Duration) -> bool) -> (u64, Duration) {
        let start = Instant::now();
        let mut pacer = Pacer::new(rate, start);
        let mut now = start;
        let (mut read, mut longest) = (0, Duration::ZERO);
        while now - start < span {
            match pacer.wait(now, busy(now - start)) {
                None => {
                    pacer.spent(CHUNK);
                    read += CHUNK;
                }
                Some(d) => {
                    assert!(d > Duration::ZERO && d <= LOOK_AGAIN, "{d:?}");
                    longest = longest.max(d);
                    now += d;
                }
            }
        }
        (read, longest)
    }

    fn close(actual: u64, expected: u64) -> bool {
        let (a, e) = (actual as f64, expected as f64);
        (a - e).abs() <= e * 0.02 + CHUNK as f64
    }

    #[test]
    fn idle_reads_at_the_rate() {
        let (read, _) = simulate(50 * MIB, Duration::from_secs(10), |_| false);
        assert!(close(read, 500 * MIB), "{read}");
    }

    #[test]
    fn busy_slows_to_a_tenth_and_never_stops() {
        // Requests in flight for ten minutes on end: the scrub still
        // reads, at a tenth of the rate, and never waits longer than it
        // takes to look at the traffic again.
        let (read, longest) = simulate(50 * MIB, Duration::from_secs(600), |_| true);
        assert!(close(read, 600 * 5 * MIB), "{read}");
        assert!(longest <= LOOK_AGAIN, "{longest:?}");
    }

    #[test]
    fn pauses_as_requests_arrive_and_resumes_when_they_stop() {
        // Idle for 2 s, busy for 2 s, idle for 2 s.
        let busy = |t: Duration| (2..4).contains(&t.as_secs());
        let (read, _) = simulate(50 * MIB, Duration::from_secs(6), busy);
        assert!(close(read, 4 * 50 * MIB + 2 * 5 * MIB), "{read}");

        // What was saved while idle is not spent on a busy server: once
        // requests arrive after a long idle wait, one more read goes, and
        // the next waits.
        let start = Instant::now();
        let mut pacer = Pacer::new(50 * MIB, start);
        let later = start + Duration::from_secs(60);
        assert_eq!(pacer.wait(later, false), None);
        pacer.spent(CHUNK);
        assert_eq!(pacer.wait(later, true), None);
        pacer.spent(CHUNK);
        assert_eq!(pacer.wait(later, true), Some(LOOK_AGAIN));
    }

    #[test]
    fn a_pause_saves_up_little() {
        // A minute without reading does not buy a minute's worth of reads
        // at once: at most a tenth of a second's.
        let start = Instant::now();
        let mut pacer = Pacer::new(50 * MIB, start);
        let later = start + Duration::from_secs(60);
        let mut burst = 0;
        while pacer.wait(later, false).is_none() {
            pacer.spent(CHUNK);
            burst += CHUNK;
        }
        assert!(burst <= 5 * MIB + CHUNK, "{burst}");
        assert!(burst >= 5 * MIB, "{burst}");
    }

    #[test]
    fn no_rate_means_no_waiting() {
        let start = Instant::now();
        let mut pacer = Pacer::new(0, start);
        for _ in 0..100 {
            assert_eq!(pacer.wait(start, true), None);
            pacer.spent(CHUNK);
        }
    }

    #[test]
    fn traffic_counts_requests_begun_and_in_flight() {
        let t = Arc::new(Traffic::default());
        let mut seen = t.look();
        assert!(!t.busy_since(&mut seen), "nothing yet");
        let a = t.begin();
        assert_eq!(t.in_flight(), 1);
        assert!(t.busy_since(&mut seen), "one began");
        assert!(t.busy_since(&mut seen), "one still in flight");
        drop(a);
        assert!(!t.busy_since(&mut seen), "ended before the last look");
        // Begun and ended between two looks: still traffic.
        drop(t.begin());
        assert_eq!(t.in_flight(), 0);
        assert!(t.busy_since(&mut seen));
        assert!(!t.busy_since(&mut seen));

        // The scrub's own request does not count while it runs, and counts
        // again (to be ended by the listener) afterwards.
        let own = t.begin();
        seen = t.look();
        {
            let _uncounted = t.uncount_own();
            assert_eq!(t.in_flight(), 0);
            assert!(!t.busy_since(&mut seen));
            let other = t.begin();
            assert!(t.busy_since(&mut seen));
            drop(other);
        }
        assert_eq!(t.in_flight(), 1);
        drop(own);
        assert_eq!(t.in_flight(), 0);

        // Outside the listener (nothing counted) it changes nothing.
        drop(t.uncount_own());
        assert_eq!(t.in_flight(), 0);
        let _more = t.begin();
        assert_eq!(t.in_flight(), 1);
    }
}
