//! Refused pulls, recorded without flooding: a client retrying a blocked
//! pull in a loop (a crash-looping pod, a CI job) would otherwise write an
//! audit row, an outbox event and a log line per retry.
//!
//! The refusals of one manifest to one caller (account and address) for
//! one reason are merged per [`WINDOW`]: the first is recorded at once as
//! a `pull.blocked` audit event with its `pull.blocked` outbox event (so
//! webhooks hear of it without delay) and one log line; the rest of the
//! window only count in memory. The pull-statistics flush
//! ([`Registry::flush_refusals`], every `pull_stats_flush_interval` and at
//! shutdown) writes the count onto the window's event as `detail.repeats`
//! (refusals after the first) and `detail.last_at`, as bursts of logins
//! are counted. So a burst of refusals costs one row per window, and one
//! update per flush while it lasts. The `berth_pulls_blocked_total`
//! metric counts every refusal. The state is per process (each replica
//! records its own first refusals); at most [`MAX_TRACKED`] windows are
//! kept, and a crash loses at most one flush interval of counts.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use berth_meta::audit::{action, Actor};
use berth_oci::{Digest, Reference, RepositoryName};

use super::NamespaceGate;
use crate::Registry;

/// The refusals one audit event stands for at most: those of one key in
/// this span.
pub(crate) const WINDOW: Duration = Duration::from_secs(60);
/// Windows remembered at once (past that, ended ones are dropped, their
/// counts kept for the next flush).
const MAX_TRACKED: usize = 10_000;

/// What to do with a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen {
    /// The first of its window: record it (and tell
    /// [`Refusals::recorded`] the event's id).
    First,
    /// A repeat, counted for the next flush.
    Repeat,
}

/// One key's refusals in the current window.
#[derive(Debug)]
struct Window {
    started: Instant,
    /// The first refusal's audit event, once written.
    event_id: Option<i64>,
    /// Refusals after the first.
    repeats: u64,
    /// `repeats` as last written to the event.
    written: u64,
    /// When the latest refusal happened (Unix ms).
    last_at: i64,
}

/// A count to write: event `id` stands for `repeats` more refusals, the
/// latest at `last_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pending {
    pub(crate) id: i64,
    pub(crate) repeats: u64,
    pub(crate) last_at: i64,
}

#[derive(Default)]
struct State {
    windows: HashMap<String, Window>,
    /// Counts of ended windows not written yet.
    ended: Vec<Pending>,
}

/// The refusal windows of this process.
#[derive(Default)]
pub(crate) struct Refusals {
    state: Mutex<State>,
}

impl Window {
    fn unwritten(&self) -> Option<Pending> {
        let id = self.event_id?;
        (self.repeats > self.written).then_some(Pending {
            id,
            repeats: self.repeats,
            last_at: self.last_at,
        })
    }
}

impl Refusals {
    /// Notes a refusal with `key` at `now` (`at`: the same in Unix ms).
    pub(crate) fn note(&self, key: &str, now: Instant, at: i64) -> Seen {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let State { windows, ended } = &mut *s;
        if let Some(w) = windows.get_mut(key) {
            if now.duration_since(w.started) < WINDOW {
                w.repeats += 1;
                w.last_at = at;
                return Seen::Repeat;
            }
        }
        if let Some(w) = windows.remove(key) {
            ended.extend(w.unwritten());
        }
        if windows.len() >= MAX_TRACKED {
            windows.retain(|_, w| {
                let live = now.duration_since(w.started) < WINDOW;
                if !live {
                    ended.extend(w.unwritten());
                }
                live
            });
        }
        // Bounded even while the database refuses every flush.
        ended.truncate(MAX_TRACKED);
        windows.insert(
            key.to_owned(),
            Window {
                started: now,
                event_id: None,
                repeats: 0,
                written: 0,
                last_at: at,
            },
        );
        Seen::First
    }

    /// The first refusal of window `key` was recorded as `event_id`.
    pub(crate) fn recorded(&self, key: &str, event_id: i64) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = s.windows.get_mut(key) {
            w.event_id.get_or_insert(event_id);
        }
    }

    /// Recording the first refusal of window `key` failed: the next
    /// refusal starts the window again (and tries again).
    pub(crate) fn failed(&self, key: &str) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.windows.get(key).is_some_and(|w| w.event_id.is_none()) {
            s.windows.remove(key);
        }
    }

    /// The counts to write now (ended windows first, so a window's latest
    /// count is written last), marked written.
    pub(crate) fn take(&self) -> Vec<Pending> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = std::mem::take(&mut s.ended);
        for w in s.windows.values_mut() {
            if let Some(p) = w.unwritten() {
                w.written = w.repeats;
                out.push(p);
            }
        }
        out
    }

    /// Puts back counts a flush could not write.
    pub(crate) fn restore(&self, unwritten: Vec<Pending>) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let newer = std::mem::take(&mut s.ended);
        s.ended = unwritten;
        s.ended.extend(newer);
        s.ended.truncate(MAX_TRACKED);
    }
}

/// Why a pull was refused, for the audit event and the metric.
pub(crate) struct Refusal<'a> {
    pub(crate) repo: &'a RepositoryName,
    pub(crate) reference: &'a Reference,
    pub(crate) digest: &'a Digest,
    pub(crate) gate: &'a NamespaceGate,
    /// `vulnerable` or `unscanned`.
    pub(crate) reason: &'static str,
    pub(crate) message: &'a str,
}

impl Registry {
    /// Counts a refused pull and, when it is the first of its window,
    /// records it (audit event, outbox event, log line). Returns whether
    /// it was the first.
    pub(crate) async fn record_refusal(&self, r: Refusal<'_>, actor: Actor) -> bool {
        let Refusal {
            repo,
            reference,
            digest,
            gate,
            reason,
            message,
        } = r;
        berth_metrics::get().pull_blocked(repo.namespace_str(), reason);
        let key = format!(
            "{repo}@{digest}|{reason}|{}|{}",
            actor.name,
            actor.ip.as_deref().unwrap_or_default()
        );
        if self.refusals.note(&key, Instant::now(), actor.at) == Seen::Repeat {
            return false;
        }
        let mut event = actor
            .event(action::PULL_BLOCKED)
            .repository(repo.as_str())
            .digest(digest.as_str())
            .detail(serde_json::json!({
                "reason": reason,
                "policy": gate.describe(),
                "message": message,
            }));
        if let Reference::Tag(t) = reference {
            event = event.tag(t.as_str());
        }
        match self.meta.record_event_id(event).await {
            Ok(id) => self.refusals.recorded(&key, id),
            Err(e) => {
                self.refusals.failed(&key);
                tracing::warn!(repository = %repo, %digest, error = %e, "recording a blocked pull failed");
            }
        }
        tracing::info!(
            repository = %repo,
            %digest,
            reason,
            "pull refused by the vulnerability policy (repeats within a minute are counted on its \
             audit event)"
        );
        true
    }

    /// Writes the counts of repeated refusals onto their audit events (the
    /// pull-statistics flush's work, also at shutdown). Returns how many
    /// events were updated; what fails is kept for the next flush.
    pub async fn flush_refusals(&self) -> crate::Result<usize> {
        let pending = self.refusals.take();
        let mut done = 0;
        for p in &pending {
            if let Err(e) = self.meta.count_repeats(p.id, p.repeats, p.last_at).await {
                self.refusals.restore(pending[done..].to_vec());
                return Err(e.into());
            }
            done += 1;
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_is_recorded_once_and_its_repeats_flushed_as_one_count() {
        let r = Refusals::default();
        let t0 = Instant::now();
        assert_eq!(r.note("k", t0, 1), Seen::First);
        // Repeats before the first is recorded are counted all the same.
        assert_eq!(r.note("k", t0, 2), Seen::Repeat);
        assert!(r.take().is_empty(), "nothing to write before the event id");
        r.recorded("k", 7);
        for i in 0..198 {
            assert_eq!(
                r.note("k", t0 + Duration::from_millis(i), 3 + i as i64),
                Seen::Repeat
            );
        }
        assert_eq!(
            r.take(),
            [Pending {
                id: 7,
                repeats: 199,
                last_at: 200
            }]
        );
        assert!(r.take().is_empty(), "written once");
        // Another caller or reason is its own window.
        assert_eq!(r.note("k2", t0, 5), Seen::First);
        // The next window: its own event; the ended one's count is kept.
        assert_eq!(r.note("k", t0 + Duration::from_secs(1), 300), Seen::Repeat);
        assert_eq!(r.note("k", t0 + WINDOW, 400), Seen::First);
        r.recorded("k", 8);
        r.note("k", t0 + WINDOW, 401);
        assert_eq!(
            r.take(),
            [
                Pending {
                    id: 7,
                    repeats: 200,
                    last_at: 300
                },
                Pending {
                    id: 8,
                    repeats: 1,
                    last_at: 401
                }
            ]
        );
    }

    #[test]
    fn unwritten_counts_are_kept_and_a_failed_record_is_retried() {
        let r = Refusals::default();
        let t0 = Instant::now();
        r.note("k", t0, 1);
        r.recorded("k", 1);
        r.note("k", t0, 2);
        let taken = r.take();
        r.restore(taken.clone());
        assert_eq!(r.take(), taken, "a failed flush is written by the next");
        assert_eq!(r.note("lost", t0, 1), Seen::First);
        r.failed("lost");
        assert_eq!(r.note("lost", t0, 2), Seen::First, "recorded again");
    }

    #[test]
    fn windows_are_bounded() {
        let r = Refusals::default();
        let t0 = Instant::now();
        for i in 0..MAX_TRACKED {
            r.note(&format!("k{i}"), t0, 0);
        }
        r.note("late", t0 + WINDOW, 0);
        let s = r.state.lock().unwrap();
        assert_eq!(s.windows.len(), 1, "ended windows were dropped");
    }
}
