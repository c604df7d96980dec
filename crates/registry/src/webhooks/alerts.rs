//! Quota alerts: a namespace's stored content reaching 80% of its quota
//! (`quota.warning`), and a push refused because it is full
//! (`quota.exceeded`).
//!
//! The quota gate of every upload and manifest push already knows the
//! namespace's usage; it tells [`Alerts::note`], which only compares with
//! the level in memory and, when the level rises, queues an event. The
//! delivery worker publishes what is queued on its next round (within a
//! second), so the push path never waits for a write. Each alert is sent
//! once per crossing: the level falls back, re-arming both, when usage
//! drops below 80%. A refusal has no transaction to ride in, and the level
//! lives in memory: a process killed within that second loses the alert,
//! and a restarted one may warn once more.

use std::collections::HashMap;
use std::sync::Mutex;

use berth_meta::events::{EventKind, NewEvent};
use berth_oci::Namespace;

/// Alert levels per namespace and the events waiting to be published.
#[derive(Debug, Default)]
pub struct Alerts {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// 0: below 80%; 1: warned; 2: refused.
    levels: HashMap<Namespace, u8>,
    queued: Vec<NewEvent>,
}

/// Most alerts held before the oldest are dropped (a worker that is not
/// running must not let them grow without bound).
const MAX_QUEUED: usize = 1024;

impl Alerts {
    /// Notes that namespace `ns` stores `used` of its `limit` bytes, and
    /// whether a push was just `refused`.
    pub fn note(&self, ns: &Namespace, used: u64, limit: u64, refused: bool) {
        let level: u8 = if refused {
            2
        } else if limit > 0 && used.saturating_mul(5) >= limit.saturating_mul(4) {
            1
        } else {
            0
        };
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let current = inner.levels.get(ns).copied().unwrap_or(0);
        if level == 0 {
            inner.levels.remove(ns);
            return;
        }
        if level <= current {
            return;
        }
        inner.levels.insert(ns.clone(), level);
        let kind = if level == 2 {
            EventKind::QuotaExceeded
        } else {
            EventKind::QuotaWarning
        };
        let mut event = NewEvent::new(kind, "system", berth_meta::now_ms());
        event.namespace = Some(ns.clone());
        event.data = serde_json::json!({
            "limit_bytes": limit,
            "used_bytes": used,
            "percent": used.saturating_mul(100).checked_div(limit).unwrap_or(100),
        });
        if inner.queued.len() >= MAX_QUEUED {
            inner.queued.remove(0);
        }
        inner.queued.push(event);
    }

    /// Takes the queued events.
    pub fn take(&self) -> Vec<NewEvent> {
        std::mem::take(&mut self.inner.lock().unwrap_or_else(|p| p.into_inner()).queued)
    }

    /// Puts events back that could not be published.
    pub fn restore(&self, events: Vec<NewEvent>) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut events = events;
        events.append(&mut inner.queued);
        events.truncate(MAX_QUEUED);
        inner.queued = events;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_level_is_announced_once_per_crossing() {
        let a = Alerts::default();
        let acme = Namespace::parse("acme").unwrap();
        a.note(&acme, 10, 100, false);
        assert!(a.take().is_empty());
        a.note(&acme, 80, 100, false);
        a.note(&acme, 85, 100, false);
        let got = a.take();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].kind, EventKind::QuotaWarning);
        assert_eq!(got[0].data["percent"], 80);
        a.note(&acme, 95, 100, true);
        a.note(&acme, 95, 100, true);
        a.note(&acme, 90, 100, false);
        let got = a.take();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].kind, EventKind::QuotaExceeded);
        // Below 80% re-arms.
        a.note(&acme, 10, 100, false);
        a.note(&acme, 99, 100, false);
        assert_eq!(a.take()[0].kind, EventKind::QuotaWarning);
    }
}
