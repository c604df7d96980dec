//! The seam every in-memory cache of database state goes through: whether
//! it may serve and fill now, and how it hears that what it holds changed.
//!
//! - One process on its own database (SQLite): every change passes through
//!   this process, whose writers invalidate after they commit; caches are
//!   always on and nothing else is heard.
//! - Replicas sharing a PostgreSQL: every change, whichever replica made
//!   it, arrives as a [`Change`] notification (sent by the database on
//!   commit, see `berth_meta::changes`) and each subscribed cache drops
//!   the entries it names. Caches are on only while this process is
//!   listening ([`Meta::listening`]); when the listener's connection is
//!   lost they are reset and stay off until it listens again, so no
//!   answer can come from a copy that missed a notification.
//!
//! A cache implements [`Subscriber`] and registers with
//! [`Invalidation::subscribe`]; it checks [`Invalidation::live`] before
//! serving and, under its lock, before filling (a reset bumps its epoch,
//! so a fill that raced a reset is refused).

use std::sync::{Arc, Weak};

pub use berth_meta::changes::{Change, Subscriber};
use berth_meta::Meta;

/// How the caches of a [`crate::Registry`] or an
/// [`crate::auth::Authority`] stay correct.
#[derive(Clone)]
pub struct Invalidation {
    /// `Some` when other processes write the database too.
    shared: Option<Meta>,
}

impl Invalidation {
    /// The invalidation of caches over `meta`; `shared`: other processes
    /// (replicas) write it too.
    pub fn new(meta: &Meta, shared: bool) -> Invalidation {
        Invalidation {
            shared: shared.then(|| meta.clone()),
        }
    }

    /// Whether caches may serve and fill now.
    pub fn live(&self) -> bool {
        match &self.shared {
            None => true,
            Some(meta) => meta.listening(),
        }
    }

    /// Lets `cache` hear the changes of every replica (nothing is heard on
    /// one process alone, whose writers invalidate directly).
    pub fn subscribe<S: Subscriber + 'static>(&self, cache: &Arc<S>) {
        if let Some(meta) = &self.shared {
            let weak: Weak<S> = Arc::downgrade(cache);
            meta.subscribe(weak);
        }
    }
}
