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
//! A notification is asynchronous: the replica that committed a change
//! may answer its client before another replica's listener has heard it,
//! and that client's next request, sent to the other replica, would meet
//! the old copy (a revoked token still accepted for a few milliseconds).
//! [`Meta::fence`] closes that window. The committing replica notifies
//! `fence PID N` after its change (PostgreSQL delivers notifications in
//! commit order, so every listener hears the change first); each listener,
//! once it has handed everything before to its subscribers, answers
//! `ack PID N ITS-PID`; the fence returns when every listening connection
//! of the database (`pg_stat_activity`, [`LISTENER_NAME`]) has answered,
//! or after [`FENCE_WAIT`] with a warning naming the silent ones. The
//! server fences every request that may have changed something before
//! answering it, so what a client was told is done is seen everywhere.
//!
//! SQLite has no other writer: its caches are invalidated by the writers
//! of this process and nothing here runs.

use std::collections::HashMap;
use std::str::FromStr as _;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

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

/// The longest a [`Meta::fence`] waits for every listener's answer.
///
/// [`Meta::fence`]: crate::Meta::fence
pub const FENCE_WAIT: Duration = Duration::from_secs(2);

/// How often a waiting fence looks again at which listeners exist (one
/// that died meanwhile will never answer).
const FENCE_RECHECK: Duration = Duration::from_millis(250);

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
    /// The backend pid of the listening connection, 0 while not listening:
    /// who this process is in fences and their answers.
    pid: AtomicI32,
    /// Fences sent by this process.
    fences: AtomicU64,
    /// Fence number -> the listeners (backend pids) that answered it, for
    /// the fences being waited for.
    acks: Mutex<HashMap<u64, Vec<i32>>>,
    /// Woken when an answer arrives.
    acked: tokio::sync::Notify,
}

/// A notification that is not a [`Change`]: part of a fence.
#[derive(Debug, PartialEq, Eq)]
enum Fence {
    /// `fence PID N`: the process listening as `PID` asks every listener
    /// to answer once it has handed on everything heard before.
    Ask { from: i32, n: u64 },
    /// `ack PID N BY`: listener `BY` answers fence `N` of `PID`.
    Answer { to: i32, n: u64, by: i32 },
}

impl Fence {
    fn parse(payload: &str) -> Option<Fence> {
        let mut parts = payload.split(' ');
        let kind = parts.next()?;
        let from = parts.next()?.parse().ok()?;
        let n = parts.next()?.parse().ok()?;
        match (kind, parts.next()) {
            ("fence", None) => Some(Fence::Ask { from, n }),
            ("ack", Some(by)) => Some(Fence::Answer {
                to: from,
                n,
                by: by.parse().ok()?,
            }),
            _ => None,
        }
    }
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

    /// An answer to a fence: remembered if it is one of ours being
    /// waited for.
    fn answered(&self, to: i32, n: u64, by: i32) {
        if to != self.pid.load(Ordering::Acquire) {
            return;
        }
        let mut acks = self.acks.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(from) = acks.get_mut(&n) {
            from.push(by);
            drop(acks);
            self.acked.notify_waiters();
        }
    }

    /// The connection is gone: nothing may be cached until it is back.
    fn lost(&self, accounts_epoch: &AtomicU64) {
        self.listening.store(false, Ordering::Release);
        self.pid.store(0, Ordering::Release);
        accounts_epoch.fetch_add(1, Ordering::AcqRel);
        self.each(|s| s.reset());
    }

    /// Listening (again) as backend `pid`: drop what may have changed
    /// unseen, then cache.
    fn connected(&self, accounts_epoch: &AtomicU64, pid: i32) {
        accounts_epoch.fetch_add(1, Ordering::AcqRel);
        self.each(|s| s.reset());
        self.connects.fetch_add(1, Ordering::Relaxed);
        self.pid.store(pid, Ordering::Release);
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

    /// Returns once every replica listening to this database has handed
    /// on to its caches every change this process committed before the
    /// call (see the module doc), or after [`FENCE_WAIT`] with a warning
    /// naming the replicas that did not answer. At once on SQLite, and
    /// while this process is not listening (it cannot hear the answers;
    /// its own caches are off then).
    pub async fn fence(&self) {
        let feed = &self.feed;
        let me = feed.pid.load(Ordering::Acquire);
        if self.listen_url.is_none() || me == 0 {
            return;
        }
        let n = feed.fences.fetch_add(1, Ordering::Relaxed) + 1;
        feed.acks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(n, Vec::new());
        let outcome = self.fence_wait(me, n).await;
        feed.acks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&n);
        match outcome {
            Ok(silent) if silent.is_empty() => {}
            Ok(silent) => tracing::warn!(
                listeners = ?silent,
                waited = ?FENCE_WAIT,
                "replicas did not confirm hearing a change within the wait; their caches \
                 may answer from before it until they hear it (see pg_stat_activity for \
                 these backend pids)"
            ),
            Err(e) => tracing::warn!(
                error = %e,
                "could not confirm that other replicas heard a change; their caches may \
                 answer from before it until they hear it"
            ),
        }
    }

    /// Sends fence `n` and waits for the answers; the listeners that did
    /// not answer in time.
    async fn fence_wait(&self, me: i32, n: u64) -> Result<Vec<i32>, sqlx::Error> {
        let feed = &self.feed;
        // Who must answer: the listeners connected when the fence is sent
        // (one that connects later reset its caches when it did).
        let mut expected = self.listeners().await?;
        sqlx::query("SELECT 1 FROM pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(format!("fence {me} {n}"))
            .execute(&self.read)
            .await?;
        let deadline = Instant::now() + FENCE_WAIT;
        let mut recheck = Instant::now() + FENCE_RECHECK;
        loop {
            let woken = feed.acked.notified();
            let silent: Vec<i32> = {
                let acks = feed.acks.lock().unwrap_or_else(|p| p.into_inner());
                let got = acks.get(&n).map(Vec::as_slice).unwrap_or_default();
                expected
                    .iter()
                    .copied()
                    .filter(|p| !got.contains(p))
                    .collect()
            };
            let now = Instant::now();
            if silent.is_empty() || now >= deadline {
                return Ok(silent);
            }
            if now >= recheck {
                // A listener that is gone will never answer.
                let live = self.listeners().await?;
                expected.retain(|p| live.contains(p));
                recheck = now + FENCE_RECHECK;
                continue;
            }
            let _ = tokio::time::timeout(recheck.min(deadline) - now, woken).await;
        }
    }

    /// The backend pids of the connections listening to this database.
    async fn listeners(&self) -> Result<Vec<i32>, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity \
             WHERE application_name = $1 AND datname = current_database()",
        )
        .bind(LISTENER_NAME)
        .fetch_all(&self.read)
        .await
    }

    /// Stops listening (at shutdown).
    pub(crate) fn stop_listening(&self) {
        self.feed.stopped.store(true, Ordering::Release);
        self.feed.stop.notify_waiters();
    }
}

/// A listening connection and its backend pid.
async fn connect(url: &str) -> Result<(PgListener, i32), sqlx::Error> {
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
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut listener)
        .await?;
    Ok((listener, pid))
}

/// Answers fence `n` of `to` as listener `me`, on the listening
/// connection (so after everything heard before it was handed on).
async fn answer(listener: &mut PgListener, to: i32, n: u64, me: i32) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT 1 FROM pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(format!("ack {to} {n} {me}"))
        .execute(listener)
        .await
        .map(drop)
}

async fn listen(feed: Arc<Feed>, url: Arc<str>, accounts_epoch: Arc<AtomicU64>) {
    let mut backoff = Duration::from_millis(100);
    while !feed.stopped.load(Ordering::Acquire) {
        match connect(&url).await {
            Ok((mut listener, me)) => {
                backoff = Duration::from_millis(100);
                feed.connected(&accounts_epoch, me);
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
                        Ok(Ok(Some(n))) => match Fence::parse(n.payload()) {
                            None => feed.dispatch(n.payload(), &accounts_epoch),
                            Some(Fence::Ask { from, n }) => {
                                feed.received.fetch_add(1, Ordering::Relaxed);
                                if let Err(e) = answer(&mut listener, from, n, me).await {
                                    break Some(e.to_string());
                                }
                            }
                            Some(Fence::Answer { to, n, by }) => {
                                feed.received.fetch_add(1, Ordering::Relaxed);
                                feed.answered(to, n, by);
                            }
                        },
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
