//! A cached copy of a small table (tag rules, quotas), loaded whole.
//!
//! Writers through this registry invalidate it after their change; a
//! reader fills it only if no invalidation happened since it started
//! reading (a generation checked under the lock), so a slow reader never
//! puts back a stale copy. With other writers (replicas sharing a
//! PostgreSQL) there is no copy: every read loads the table, so a rule or
//! quota changed through any replica applies on the next request.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// The cached copy of one table.
pub(crate) struct Snapshot<T> {
    state: RwLock<Option<Arc<T>>>,
    generation: AtomicU64,
    off: bool,
}

impl<T> Snapshot<T> {
    /// An empty copy; never filled when `shared` (other writers).
    pub(crate) fn new(shared: bool) -> Snapshot<T> {
        Snapshot {
            state: RwLock::new(None),
            generation: AtomicU64::new(0),
            off: shared,
        }
    }

    fn get(&self) -> Option<Arc<T>> {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        state.clone()
    }

    /// The cached copy, or a fresh one from `load`.
    pub(crate) async fn get_or_load<E, F>(&self, load: impl FnOnce() -> F) -> Result<Arc<T>, E>
    where
        F: Future<Output = Result<T, E>>,
    {
        if let Some(v) = self.get() {
            return Ok(v);
        }
        let generation = self.generation.load(Ordering::Acquire);
        let value = Arc::new(load().await?);
        if self.off {
            return Ok(value);
        }
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        if self.generation.load(Ordering::Acquire) == generation {
            *state = Some(value.clone());
        }
        Ok(value)
    }

    /// Drops the copy; the next read loads the table again.
    pub(crate) fn invalidate(&self) {
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        *state = None;
    }
}
