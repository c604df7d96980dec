//! A cached copy of a small table (tag rules, quotas), loaded whole.
//!
//! Writers through this registry invalidate it after their change; a
//! reader fills it only if no invalidation happened since it started
//! reading (a generation checked under the lock), so a slow reader never
//! puts back a stale copy. With other writers (replicas sharing a
//! PostgreSQL) the database's notification of a write to one of its
//! tables drops the copy on every replica, and no copy is kept while this
//! process is not listening ([`Invalidation`]).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::invalidation::{Change, Invalidation, Subscriber};

/// The cached copy of one table.
pub(crate) struct Snapshot<T> {
    state: RwLock<Option<Arc<T>>>,
    generation: AtomicU64,
    gate: Invalidation,
    /// The tables the copy is made of.
    tables: &'static [&'static str],
}

impl<T> Snapshot<T> {
    /// An empty copy of `tables`, filled while `gate` is live; subscribed
    /// to it.
    pub(crate) fn new(gate: &Invalidation, tables: &'static [&'static str]) -> Arc<Snapshot<T>>
    where
        T: Send + Sync + 'static,
    {
        let snapshot = Arc::new(Snapshot {
            state: RwLock::new(None),
            generation: AtomicU64::new(0),
            gate: gate.clone(),
            tables,
        });
        gate.subscribe(&snapshot);
        snapshot
    }

    fn get(&self) -> Option<Arc<T>> {
        if !self.gate.live() {
            return None;
        }
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
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        if self.generation.load(Ordering::Acquire) == generation && self.gate.live() {
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

impl<T: Send + Sync> Subscriber for Snapshot<T> {
    fn changed(&self, change: &Change) {
        if let Change::Table(t) = change {
            if self.tables.contains(&t.as_str()) {
                self.invalidate();
            }
        }
    }

    fn reset(&self) {
        self.invalidate();
    }
}
