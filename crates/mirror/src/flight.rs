//! One upstream request for many clients: concurrent misses of the same
//! manifest wait for the first one's answer ("singleflight"). The work
//! runs in a task of its own, so a client that hangs up does not cancel
//! it for the others.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

use berth_registry::{Error, UpstreamFailure};
use tokio::sync::watch;

use crate::upstream::Upstream;

/// Why fetching from an upstream failed (cloneable: every waiting client
/// gets it).
#[derive(Debug, Clone)]
pub enum Fetch {
    /// The upstream does not have it.
    NotFound,
    /// The upstream is down, slow, refused us, or asked us to wait.
    Unavailable {
        /// What happened.
        detail: String,
        /// Seconds to wait, if the upstream said (`Retry-After`).
        retry_after: Option<u64>,
    },
    /// The upstream sent something unusable (digest mismatch, invalid
    /// manifest); nothing was stored.
    Invalid(String),
}

impl std::fmt::Display for Fetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fetch::NotFound => f.write_str("not found upstream"),
            Fetch::Unavailable { detail, .. } => f.write_str(detail),
            Fetch::Invalid(d) => f.write_str(d),
        }
    }
}

impl Fetch {
    /// The registry error a client gets when nothing cached can stand in.
    pub(crate) fn into_error(self, upstream: &Upstream, what: String) -> Error {
        match self {
            Fetch::NotFound => Error::NameUnknown(what),
            Fetch::Unavailable {
                detail,
                retry_after,
            } => Error::UpstreamUnavailable(Box::new(UpstreamFailure {
                upstream: upstream.config.name.clone(),
                detail,
                what,
                retry_after,
            })),
            Fetch::Invalid(detail) => Error::UpstreamUnavailable(Box::new(UpstreamFailure {
                upstream: upstream.config.name.clone(),
                detail,
                what,
                retry_after: None,
            })),
        }
    }
}

/// Work in flight, by key.
pub(crate) struct Flights<T: Clone> {
    running: Mutex<HashMap<String, watch::Receiver<Option<T>>>>,
}

impl<T: Clone> Default for Flights<T> {
    fn default() -> Self {
        Flights {
            running: Mutex::default(),
        }
    }
}

impl<T: Clone + Send + Sync + 'static> Flights<T> {
    /// Runs `work` under `key`, or waits for the run already in flight;
    /// `None` if the work's task died without an answer (a panic).
    pub(crate) async fn run<F>(&self, key: String, work: F) -> Option<T>
    where
        F: Future<Output = T> + Send + 'static,
    {
        let mut rx = {
            let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            match running.get(&key) {
                Some(rx) => rx.clone(),
                None => {
                    let (tx, rx) = watch::channel(None);
                    running.insert(key.clone(), rx.clone());
                    tokio::spawn(async move {
                        let out = work.await;
                        let _ = tx.send(Some(out));
                    });
                    rx
                }
            }
        };
        let out = loop {
            if let Some(v) = rx.borrow_and_update().clone() {
                break Some(v);
            }
            if rx.changed().await.is_err() {
                break rx.borrow().clone();
            }
        };
        // The first waiter to see the answer retires the flight; a later
        // request starts afresh (and finds the stored content).
        {
            let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            if running.get(&key).is_some_and(|r| r.same_channel(&rx)) {
                running.remove(&key);
            }
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn concurrent_runs_share_one_execution() {
        let flights: Arc<Flights<u32>> = Arc::new(Flights::default());
        let count = Arc::new(AtomicUsize::new(0));
        let mut handles = Vec::new();
        for _ in 0..16 {
            let (f, c) = (flights.clone(), count.clone());
            handles.push(tokio::spawn(async move {
                f.run("k".into(), async move {
                    c.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    7
                })
                .await
            }));
        }
        for h in handles {
            assert_eq!(h.await.unwrap(), Some(7));
        }
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }
}
