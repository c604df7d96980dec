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

/// When each cached tag (`local repo:tag`) was last confirmed upstream.
#[derive(Debug, Default)]
pub(crate) struct Checks {
    memory: Mutex<HashMap<String, Instant>>,
}

fn key(repo: &MirrorRepo, tag: &Tag) -> String {
    format!("{}:{}", repo.local, tag)
}

impl Checks {
    fn remembered(&self, key: &str) -> Option<Instant> {
        self.memory.lock().ok()?.get(key).copied()
    }

    fn remember(&self, key: String, at: Instant) {
        if let Ok(mut m) = self.memory.lock() {
            m.insert(key, at);
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
            self.remember(key, at);
        }
        true
    }

    /// Records that `repo:tag` was confirmed upstream now.
    pub(crate) async fn confirmed(&self, registry: &Registry, repo: &MirrorRepo, tag: &Tag) {
        let key = key(repo, tag);
        let just_written = self
            .remembered(&key)
            .is_some_and(|at| at.elapsed() < COALESCE);
        self.remember(key, Instant::now());
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
