//! When each cached tag was last confirmed at its upstream: a tag younger
//! than its upstream's `tag_ttl` is served from the cache without asking.
//!
//! The time is kept in memory and in the database (through the
//! registry's services): a restart, or another replica, reads it there
//! and keeps serving a tag within its TTL from the cache rather than
//! asking the upstream again. The database is read only when the memory
//! has no fresh time (once per tag and TTL), and written once per
//! confirmation (the clients waiting for the same fetch write it once).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use berth_oci::Tag;
use berth_registry::Registry;

use crate::MirrorRepo;

/// Confirmations closer together than this are written once.
const COALESCE: Duration = Duration::from_secs(1);

/// At most this many tags are remembered; past it the expired ones are
/// dropped, then the longest-confirmed ones down to three quarters of it.
/// A forgotten tag costs one database read on its next pull, never an
/// upstream request (the time is in the database too).
const CAP: usize = 16_384;

/// Expired tags are also dropped at least this often, so a mirror that
/// is pulled from rarely does not keep a burst's tags for ever.
const SWEEP_EVERY: Duration = Duration::from_secs(600);

/// When each cached tag (`local repo:tag`) was last confirmed upstream.
#[derive(Debug)]
pub(crate) struct Checks {
    memory: Mutex<Memory>,
}

impl Default for Checks {
    fn default() -> Self {
        Self::with_cap(CAP)
    }
}

/// The remembered confirmations, bounded by `cap`.
#[derive(Debug)]
struct Memory {
    /// Key to (when confirmed, how long that holds: the upstream's TTL).
    tags: HashMap<String, (Instant, Duration)>,
    cap: usize,
    swept: Instant,
}

impl Memory {
    fn insert(&mut self, key: String, at: Instant, ttl: Duration) {
        if (self.tags.len() >= self.cap && !self.tags.contains_key(&key))
            || self.swept.elapsed() >= SWEEP_EVERY
        {
            self.sweep();
        }
        self.tags.insert(key, (at, ttl));
    }

    /// Drops the expired tags and, if the rest still fill the memory, the
    /// longest-confirmed ones down to three quarters of it (so a full
    /// memory of fresh tags is swept once per quarter of its size, not on
    /// every insert).
    fn sweep(&mut self) {
        self.swept = Instant::now();
        // Also drops entries of COALESCE age when their TTL is shorter:
        // the coalescing only saves a write.
        self.tags.retain(|_, (at, ttl)| at.elapsed() < *ttl);
        if self.tags.len() >= self.cap {
            let keep = self.cap * 3 / 4;
            let mut by_age: Vec<(Instant, String)> = self
                .tags
                .iter()
                .map(|(k, (at, _))| (*at, k.clone()))
                .collect();
            by_age.sort_unstable();
            for (_, k) in by_age.drain(..by_age.len() - keep) {
                self.tags.remove(&k);
            }
        }
    }
}

fn key(repo: &MirrorRepo, tag: &Tag) -> String {
    format!("{}:{}", repo.local, tag)
}

impl Checks {
    fn with_cap(cap: usize) -> Self {
        Self {
            memory: Mutex::new(Memory {
                tags: HashMap::new(),
                cap: cap.max(1),
                swept: Instant::now(),
            }),
        }
    }

    fn remembered(&self, key: &str) -> Option<Instant> {
        Some(self.memory.lock().ok()?.tags.get(key)?.0)
    }

    fn remember(&self, key: String, at: Instant, ttl: Duration) {
        if let Ok(mut m) = self.memory.lock() {
            m.insert(key, at, ttl);
        }
    }

    /// Whether `repo:tag` was confirmed upstream within its TTL.
    pub(crate) async fn is_fresh(&self, registry: &Registry, repo: &MirrorRepo, tag: &Tag) -> bool {
        let ttl = repo.upstream.config.tag_ttl;
        if ttl.is_zero() {
            return false;
        }
        let key = key(repo, tag);
        if self.remembered(&key).is_some_and(|at| at.elapsed() < ttl) {
            return true;
        }
        // Before a restart, or on another replica.
        let checked = match registry.mirror_tag_checked(&repo.local, tag).await {
            Ok(Some(at)) => at,
            Ok(None) => return false,
            Err(e) => {
                tracing::warn!(repository = %repo.local, %tag, error = %e,
                    "reading when a mirrored tag was last checked upstream");
                return false;
            }
        };
        let age = Duration::from_millis(
            u64::try_from(berth_registry::now_ms().saturating_sub(checked)).unwrap_or(0),
        );
        if age >= ttl {
            return false;
        }
        if let Some(at) = Instant::now().checked_sub(age) {
            self.remember(key, at, ttl);
        }
        true
    }

    /// Records that `repo:tag` was confirmed upstream now.
    pub(crate) async fn confirmed(&self, registry: &Registry, repo: &MirrorRepo, tag: &Tag) {
        let ttl = repo.upstream.config.tag_ttl;
        let key = key(repo, tag);
        let just_written = self
            .remembered(&key)
            .is_some_and(|at| at.elapsed() < COALESCE);
        self.remember(key, Instant::now(), ttl);
        if just_written {
            return;
        }
        if let Err(e) = registry
            .record_mirror_tag_check(&repo.local, tag, berth_registry::now_ms())
            .await
        {
            tracing::warn!(repository = %repo.local, %tag, error = %e,
                "recording when a mirrored tag was checked upstream");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn len(c: &Checks) -> usize {
        c.memory.lock().unwrap().tags.len()
    }

    #[test]
    fn many_distinct_tags_stay_within_the_cap() {
        let checks = Checks::default();
        let now = Instant::now();
        for i in 0..CAP * 3 {
            checks.remember(format!("hub/library/app:{i}"), now, HOUR);
            assert!(len(&checks) <= CAP, "{} remembered after {i}", len(&checks));
        }
        // The newest are kept; the oldest went (all share one time here,
        // so only the count is certain).
        assert!(len(&checks) > CAP / 2);
    }

    #[test]
    fn a_full_memory_forgets_expired_tags_first_then_the_oldest() {
        let checks = Checks::with_cap(8);
        let long_ago = Instant::now().checked_sub(2 * HOUR).unwrap();
        for i in 0..4 {
            // Confirmed two hours ago with a one-hour TTL: expired.
            checks.remember(format!("expired:{i}"), long_ago, HOUR);
        }
        let base = Instant::now();
        for i in 0..4u64 {
            // Fresh, confirmed in order 0 (oldest) to 3.
            let at = base.checked_sub(Duration::from_secs(60 - i)).unwrap();
            checks.remember(format!("fresh:{i}"), at, HOUR);
        }
        assert_eq!(len(&checks), 8);

        // The ninth: the sweep drops only the four expired ones.
        checks.remember("new:0".into(), Instant::now(), HOUR);
        assert_eq!(len(&checks), 5);
        assert!((0..4).all(|i| checks.remembered(&format!("expired:{i}")).is_none()));
        assert!((0..4).all(|i| checks.remembered(&format!("fresh:{i}")).is_some()));

        // Full of fresh tags: the oldest go, down to three quarters (6).
        for i in 1..4 {
            checks.remember(format!("new:{i}"), Instant::now(), HOUR);
        }
        assert_eq!(len(&checks), 8);
        checks.remember("new:4".into(), Instant::now(), HOUR);
        assert_eq!(len(&checks), 7);
        assert!(checks.remembered("fresh:0").is_none());
        assert!(checks.remembered("fresh:1").is_none());
        assert!(checks.remembered("fresh:2").is_some());
        assert!(checks.remembered("new:4").is_some());

        // Re-confirming a remembered tag when full sweeps nothing.
        checks.remember("new:5".into(), Instant::now(), HOUR);
        assert_eq!(len(&checks), 8);
        checks.remember("fresh:2".into(), Instant::now(), HOUR);
        assert_eq!(len(&checks), 8);
    }

    #[test]
    fn expired_tags_are_swept_even_when_the_memory_is_not_full() {
        let checks = Checks::default();
        let long_ago = Instant::now().checked_sub(2 * HOUR).unwrap();
        for i in 0..100 {
            checks.remember(format!("old:{i}"), long_ago, HOUR);
        }
        // The last sweep was longer ago than SWEEP_EVERY.
        checks.memory.lock().unwrap().swept = Instant::now().checked_sub(SWEEP_EVERY).unwrap();
        checks.remember("new".into(), Instant::now(), HOUR);
        assert_eq!(len(&checks), 1);
        assert!(checks.remembered("new").is_some());
    }
}
