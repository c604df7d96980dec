//! Change notifications between replicas sharing a PostgreSQL.
//!
//! The layers above cache what any replica may change: tag resolutions,
//! manifests, blob links, permission facts (accounts, memberships,
//! visibility, tokens) and small settings tables (tag rules, quotas, trust
//! keys and policies). On PostgreSQL, triggers (migration 16) send a
//! notification on [`CHANNEL`] from inside the transaction of every such
//! change, naming what changed ([`Change`]); PostgreSQL delivers it to
//! every listening session when, and only if, that transaction commits (a
//! rolled-back change sends nothing). Triggers rather than calls in the
//! write paths: no write (retention, GC, an account deletion's cascade, a
//! later feature) can forget to tell.
//!
//! [`Meta::start_listening`] keeps one connection per process `LISTEN`ing
//! and hands each change to the [`Subscriber`]s. While that connection is
//! down, and until it is back and listening, [`Meta::listening`] is false
//! and every subscriber has been reset: caches serve nothing and fill
//! nothing, because a notification may have been missed meanwhile. On
//! reconnection they are reset once more (a change may have committed
//! between the loss and the new `LISTEN`), then turned back on.
//!
//! A connection dropped silently by the network would look idle forever,
//! so every listening process also sends a `ping` notification every
//! [`PING_EVERY`]; a listener that hears nothing for [`SILENCE`] (its own
//! pings included) counts its connection as dead and reconnects.
//!
//! SQLite has no other writer: its caches are invalidated by the writers
//! of this process and nothing here runs.

use std::str::FromStr as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use berth_oci::{Digest, RepositoryName, Tag};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};

/// The notification channel.
pub const CHANNEL: &str = "berth_cache";

/// The `application_name` of the listening connection (in
/// `pg_stat_activity`).
pub const LISTENER_NAME: &str = "berth-listener";

/// How often a listening process pings the channel.
pub const PING_EVERY: Duration = Duration::from_secs(10);

/// Silence after which a listening connection counts as dead.
pub const SILENCE: Duration = Duration::from_secs(30);

/// The longest wait between two attempts to listen again.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What a committed transaction changed, as its notification says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A tag was created, moved or deleted.
    Tag(RepositoryName, Tag),
    /// A manifest was deleted.
    Manifest(RepositoryName, Digest),
    /// A blob was unlinked from a repository.
    Link(RepositoryName, Digest),
    /// A repository was deleted, with everything in it.
    Repository(RepositoryName),
    /// A manifest's stored scan result was written or removed.
    Scan(RepositoryName, Digest),
    /// Accounts, organisations, memberships, visibility, tokens or
    /// certificate mappings: every permission fact may have changed.
    Accounts,
    /// A row of this settings table (`tag_rules`, `quotas`, `trust_keys`,
    /// ...) was written.
    Table(String),
}

impl Change {
    /// Decodes a notification's payload; `None` for a `ping` or anything
    /// this version does not know (a newer replica's kind).
    pub fn parse(payload: &str) -> Option<Change> {
        let mut parts = payload.split(' ');
        let kind = parts.next()?;
        let mut next = || parts.next();
        let change = match kind {
            "tag" => Change::Tag(
                RepositoryName::parse(next()?).ok()?,
                Tag::parse(next()?).ok()?,
            ),
            "manifest" => Change::Manifest(
                RepositoryName::parse(next()?).ok()?,
                Digest::parse(next()?).ok()?,
            ),
            "link" => Change::Link(
                RepositoryName::parse(next()?).ok()?,
                Digest::parse(next()?).ok()?,
            ),
            "scan" => Change::Scan(
                RepositoryName::parse(next()?).ok()?,
                Digest::parse(next()?).ok()?,
            ),
            "repository" => Change::Repository(RepositoryName::parse(next()?).ok()?),
            "accounts" => Change::Accounts,
            "table" => Change::Table(next()?.to_owned()),
            _ => return None,
        };
        Some(change)
    }
}

/// Something holding copies of the database that must drop what changed.
pub trait Subscriber: Send + Sync {
    /// `change` was committed (by any process, this one included).
    fn changed(&self, change: &Change);
    /// Anything may have changed: drop everything.
    fn reset(&self);
}

/// The listening state of one [`crate::Meta`] and its clones.
#[derive(Default)]
pub(crate) struct Feed {
    listening: AtomicBool,
    started: AtomicBool,
    stopped: AtomicBool,
    stop: tokio::sync::Notify,
    subscribers: Mutex<Vec<Weak<dyn Subscriber>>>,
    /// Notifications received (pings included).
    received: AtomicU64,
    /// Times the listener (re)connected.
    connects: AtomicU64,
}

impl Feed {
    fn each(&self, f: impl Fn(&dyn Subscriber)) {
        let live: Vec<Arc<dyn Subscriber>> = {
            let mut subs = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
            subs.retain(|s| s.strong_count() > 0);
            subs.iter().filter_map(Weak::upgrade).collect()
        };
        for s in live {
            f(s.as_ref());
        }
    }

    fn dispatch(&self, payload: &str, accounts_epoch: &AtomicU64) {
        self.received.fetch_add(1, Ordering::Relaxed);
        let Some(change) = Change::parse(payload) else {
            return;
        };
        if change == Change::Accounts {
            accounts_epoch.fetch_add(1, Ordering::AcqRel);
        }
        self.each(|s| s.changed(&change));
    }

    /// The connection is gone: nothing may be cached until it is back.
    fn lost(&self, accounts_epoch: &AtomicU64) {
        self.listening.store(false, Ordering::Release);
        accounts_epoch.fetch_add(1, Ordering::AcqRel);
        self.each(|s| s.reset());
    }

    /// Listening (again): drop what may have changed unseen, then cache.
    fn connected(&self, accounts_epoch: &AtomicU64) {
        accounts_epoch.fetch_add(1, Ordering::AcqRel);
        self.each(|s| s.reset());
        self.connects.fetch_add(1, Ordering::Relaxed);
        self.listening.store(true, Ordering::Release);
    }
}

impl crate::Meta {
    /// Whether this process currently hears every change other processes
    /// commit (PostgreSQL, after [`Meta::start_listening`], while its
    /// connection is up). Caches of what other replicas may change serve
    /// and fill only while this is true. Always false on SQLite, which
    /// has no other writers.
    ///
    /// [`Meta::start_listening`]: crate::Meta::start_listening
    pub fn listening(&self) -> bool {
        self.feed.listening.load(Ordering::Acquire)
    }

    /// Registers `subscriber` for the changes heard (held weakly: it stops
    /// hearing once dropped).
    pub fn subscribe(&self, subscriber: Weak<dyn Subscriber>) {
        let mut subs = self
            .feed
            .subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        subs.push(subscriber);
    }

    /// `(notifications received, times connected)` by the listener.
    pub fn listener_counts(&self) -> (u64, u64) {
        (
            self.feed.received.load(Ordering::Relaxed),
            self.feed.connects.load(Ordering::Relaxed),
        )
    }

    /// On PostgreSQL, starts listening for the changes of every process
    /// (see the module doc): a task holding one connection, reconnecting
    /// whenever it is lost, and a task pinging the channel. Once per
    /// handle; nothing on SQLite. Must run inside a tokio runtime.
    pub fn start_listening(&self) {
        let Some(url) = self.listen_url.clone() else {
            return;
        };
        if self.feed.started.swap(true, Ordering::AcqRel) {
            return;
        }
        tokio::spawn(listen(self.feed.clone(), url, self.accounts_epoch.clone()));
        tokio::spawn(ping(self.feed.clone(), self.read.clone()));
    }

    /// Stops listening (at shutdown).
    pub(crate) fn stop_listening(&self) {
        self.feed.stopped.store(true, Ordering::Release);
        self.feed.stop.notify_waiters();
    }
}

async fn connect(url: &str) -> Result<PgListener, sqlx::Error> {
    let options = PgConnectOptions::from_str(url)?.application_name(LISTENER_NAME);
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .max_lifetime(None)
        .idle_timeout(None)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await?;
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.ignore_pool_close_event(true);
    listener.eager_reconnect(false);
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

async fn listen(feed: Arc<Feed>, url: Arc<str>, accounts_epoch: Arc<AtomicU64>) {
    let mut backoff = Duration::from_millis(100);
    while !feed.stopped.load(Ordering::Acquire) {
        match connect(&url).await {
            Ok(mut listener) => {
                backoff = Duration::from_millis(100);
                feed.connected(&accounts_epoch);
                tracing::info!("listening for the changes of other replicas");
                let why = loop {
                    if feed.stopped.load(Ordering::Acquire) {
                        break None;
                    }
                    let next = tokio::time::timeout(SILENCE, listener.try_recv());
                    let got = tokio::select! {
                        _ = feed.stop.notified() => break None,
                        got = next => got,
                    };
                    match got {
                        Ok(Ok(Some(n))) => feed.dispatch(n.payload(), &accounts_epoch),
                        Ok(Ok(None)) => break Some("the connection was lost".to_owned()),
                        Ok(Err(e)) => break Some(e.to_string()),
                        Err(_) => break Some(format!("nothing heard for {SILENCE:?}")),
                    }
                };
                feed.lost(&accounts_epoch);
                let Some(why) = why else { return };
                tracing::warn!(
                    error = %why,
                    "stopped hearing the changes of other replicas: caches are off until \
                     listening again"
                );
            }
            Err(e) => {
                feed.lost(&accounts_epoch);
                tracing::warn!(
                    error = %e,
                    "cannot listen for the changes of other replicas: caches stay off; retrying"
                );
            }
        }
        tokio::select! {
            _ = feed.stop.notified() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn ping(feed: Arc<Feed>, pool: sqlx::AnyPool) {
    while !feed.stopped.load(Ordering::Acquire) {
        tokio::select! {
            _ = feed.stop.notified() => return,
            _ = tokio::time::sleep(PING_EVERY) => {}
        }
        // A failure means the database is down: the listener notices too.
        let _ = sqlx::query("NOTIFY berth_cache, 'ping'")
            .execute(&pool)
            .await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::Change;

    #[test]
    fn payloads() {
        let r = berth_oci::RepositoryName::parse("acme/app").unwrap();
        assert_eq!(
            Change::parse("tag acme/app v1"),
            Some(Change::Tag(r.clone(), berth_oci::Tag::parse("v1").unwrap()))
        );
        assert_eq!(
            Change::parse("repository acme/app"),
            Some(Change::Repository(r.clone()))
        );
        assert_eq!(
            Change::parse(&format!("scan acme/app sha256:{}", "a".repeat(64))),
            Some(Change::Scan(
                r.clone(),
                berth_oci::Digest::parse(&format!("sha256:{}", "a".repeat(64))).unwrap()
            ))
        );
        assert_eq!(Change::parse("accounts"), Some(Change::Accounts));
        assert_eq!(
            Change::parse("table quotas"),
            Some(Change::Table("quotas".into()))
        );
        assert_eq!(Change::parse("ping"), None);
        assert_eq!(Change::parse("tag acme/app"), None);
        assert_eq!(Change::parse("tag acme/app Bad:Tag"), None);
    }
}
