//! The cache limit's worker: after the mirror stored something (and every
//! interval, for limits changed by a restart), it measures the cache and
//! evicts the least recently pulled images past a limit
//! (`Registry::evict_mirror_cache`; one replica at a time).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use berth_registry::worker::{Stop, Worker};
use berth_registry::Result;

use crate::Mirror;

/// Keeps the mirror's cache under its limits.
pub struct CacheEviction {
    /// The mirror (what it stores wakes the worker).
    pub mirror: Arc<Mirror>,
    /// Time between rounds when nothing wakes it.
    pub every: Duration,
}

#[async_trait]
impl Worker for CacheEviction {
    fn name(&self) -> &'static str {
        berth_registry::mirror_cache::EVICT_JOB
    }

    fn interval(&self) -> Duration {
        self.every
    }

    fn first_run(&self) -> Duration {
        Duration::ZERO
    }

    async fn run_once(&self, _stop: &Stop) -> Result<Option<String>> {
        let report = self
            .mirror
            .registry
            .evict_mirror_cache(berth_registry::now_ms())
            .await?;
        Ok(report.summary())
    }

    fn wake(&self) -> Option<&tokio::sync::Notify> {
        Some(&self.mirror.stored)
    }
}
