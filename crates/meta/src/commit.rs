//! Writes, and group commit on SQLite.
//!
//! Every write is a closure over one connection ([`Meta::transact`]), so the
//! same code runs in its own transaction (PostgreSQL) or inside a batched
//! group commit (SQLite). Domain modules (`writes`, `auth`, `audit`,
//! `lifecycle`, ...) expose plain `async fn`s over a connection and wrap them
//! in `transact`; a change and the audit event that records it are then one
//! transaction by construction.
//!
//! SQLite has one writer at a time, and a durable commit costs an fsync of
//! the WAL. Rather than queueing transactions that each pay that fsync, one
//! writer task owns the write connection and commits whatever writes are
//! waiting together: each write runs inside its own savepoint (so one
//! failing write does not undo its neighbours), then one `COMMIT` makes the
//! whole batch durable, and only then is every caller answered. Under
//! concurrent pushes this turns N fsyncs into one; a lone write pays nothing
//! extra. On PostgreSQL, which has concurrent writers, each write is simply
//! its own transaction.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;

use berth_metrics::DbOperation;
use sqlx::{AnyConnection, AnyPool, Connection as _};
use tokio::sync::{mpsc, oneshot};

use crate::audit::Actor;
use crate::queries::NewManifest;
use crate::writes;
use berth_oci::{Digest, RepositoryName, Tag};

use crate::{Error, Meta, Result};

/// Most writes committed together.
const MAX_BATCH: usize = 256;

/// A boxed future borrowing the connection it runs on.
pub type BoxFuture<'c, T> = Pin<Box<dyn Future<Output = T> + Send + 'c>>;

type Value = Box<dyn Any + Send>;
type WriteFn =
    Box<dyn for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, Result<Value>> + Send>;

/// Where writes go.
#[derive(Clone)]
pub(crate) enum Writer {
    /// To the group-commit task (SQLite).
    Batched(mpsc::Sender<Job>),
    /// Straight to a pool, one transaction each (PostgreSQL).
    Pool(AnyPool),
}

pub(crate) struct Job {
    write: WriteFn,
    reply: oneshot::Sender<Result<Value>>,
}

/// Starts the group-commit task on `conn`; it ends when every sender is gone.
pub(crate) fn spawn_batcher(conn: AnyConnection) -> mpsc::Sender<Job> {
    let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
    tokio::spawn(run(conn, rx));
    tx
}

async fn run(mut conn: AnyConnection, mut rx: mpsc::Receiver<Job>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let (writes, replies): (Vec<_>, Vec<_>) =
            batch.drain(..).map(|j| (j.write, j.reply)).unzip();
        match commit_batch(&mut conn, writes).await {
            Ok(outcomes) => {
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(outcome);
                }
            }
            Err(e) => {
                // Each write's caller gets the batch's error as its source
                // (and logs it, once, where it is answered).
                let e = std::sync::Arc::new(e);
                for reply in replies {
                    let _ = reply.send(Err(Error::Commit(e.clone())));
                }
            }
        }
    }
    let _ = conn.close().await;
}

/// Runs `writes` in one transaction. The outer error means nothing was
/// committed; inner errors belong to single writes that were rolled back to
/// their savepoint.
async fn commit_batch(
    conn: &mut AnyConnection,
    writes: Vec<WriteFn>,
) -> Result<Vec<Result<Value>>> {
    // IMMEDIATE takes the write lock up front, waiting on `busy_timeout`
    // when another process holds it. A deferred transaction that reads
    // first and writes later fails at once with "database is locked"
    // (SQLITE_BUSY_SNAPSHOT) if another process (a CLI command on the same
    // data directory, a second server during a restart) committed in
    // between: SQLite cannot wait its way out of a stale snapshot.
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    if writes.len() == 1 {
        let mut out = Vec::with_capacity(1);
        if let Some(write) = writes.into_iter().next() {
            let outcome = write(&mut tx).await;
            if outcome.is_ok() {
                tx.commit().await?;
            } else {
                tx.rollback().await?;
            }
            out.push(outcome);
        }
        return Ok(out);
    }
    let mut out = Vec::with_capacity(writes.len());
    for write in writes {
        sqlx::query("SAVEPOINT berth_write")
            .execute(&mut *tx)
            .await?;
        let outcome = write(&mut tx).await;
        if outcome.is_err() {
            sqlx::query("ROLLBACK TO SAVEPOINT berth_write")
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("RELEASE SAVEPOINT berth_write")
            .execute(&mut *tx)
            .await?;
        out.push(outcome);
    }
    tx.commit().await?;
    Ok(out)
}

impl Meta {
    /// Runs `write` in a transaction of its own (or, on SQLite, in a
    /// savepoint of a group commit) and returns its value once it is
    /// durable. An error rolls back everything `write` did.
    ///
    /// ```ignore
    /// meta.transact(move |conn| Box::pin(async move {
    ///     writes::delete_tag(conn, &repo, &tag).await
    /// })).await
    /// ```
    pub async fn transact<T, F>(&self, write: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, Result<T>> + Send + 'static,
    {
        let started = std::time::Instant::now();
        let boxed: WriteFn = Box::new(move |conn| {
            Box::pin(async move { write(conn).await.map(|v| Box::new(v) as Value) })
        });
        let value = match &self.writer {
            Writer::Batched(tx) => {
                let (reply, answer) = oneshot::channel();
                let stopped = || Error::WriterStopped;
                tx.send(Job {
                    write: boxed,
                    reply,
                })
                .await
                .map_err(|_| stopped())?;
                answer.await.map_err(|_| stopped())?
            }
            Writer::Pool(pool) => {
                let written = async {
                    let mut tx = pool.begin().await?;
                    let value = boxed(&mut tx).await?;
                    tx.commit().await?;
                    Ok(value)
                };
                written.await
            }
        };
        // Refusals and missing references are answers, not failures.
        let failed = matches!(
            &value,
            Err(Error::Db(_) | Error::Commit(_) | Error::WriterStopped)
        );
        berth_metrics::get().db_operation(DbOperation::Write, started.elapsed(), !failed);
        value?
            .downcast::<T>()
            .map(|v| *v)
            .map_err(|_| Error::Corrupt("a write returned a value of the wrong type".into()))
    }

    /// Runs a write of `repository`'s contents (its tags, manifests or
    /// references, or the times of tags and manifests; see [`Meta::transact`])
    /// and, once it is committed (or failed), drops the repository's kept
    /// inventory (the `inventory_cache` module). Every such write goes
    /// through here.
    pub(crate) async fn repository_write<T, F>(
        &self,
        repository: &RepositoryName,
        write: F,
    ) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, Result<T>> + Send + 'static,
    {
        let out = self.transact(write).await;
        self.inventories.changed(repository.as_str());
        out
    }

    /// Records that `digest` (of `size` bytes) is stored and readable from
    /// `repository`, creating the repository if needed.
    pub async fn link_blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        size: u64,
        now: i64,
    ) -> Result<()> {
        // No kept inventory changes: one keeps no reference to a blob of
        // unknown size (see `inventory_cache`), and a size, once known, is
        // the blob's for good.
        let (repository, digest) = (repository.clone(), digest.clone());
        self.transact(move |c| {
            Box::pin(async move { writes::link_blob(c, &repository, &digest, size, now).await })
        })
        .await
    }

    /// Removes the link between `repository` and `digest`. Returns whether
    /// it existed. The bytes stay until garbage collection.
    pub async fn unlink_blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        actor: &Actor,
    ) -> Result<bool> {
        let (repository, digest, actor) = (repository.clone(), digest.clone(), actor.clone());
        self.transact(move |c| {
            Box::pin(async move { writes::unlink_blob(c, &repository, &digest, &actor).await })
        })
        .await
    }

    /// Stores a manifest, its references and its tags in one transaction,
    /// with the audit events of the push and of every tag it moved.
    pub async fn put_manifest(&self, m: &NewManifest, actor: &Actor) -> Result<()> {
        let repository = m.repository.clone();
        let (m, actor) = (m.clone(), actor.clone());
        self.repository_write(&repository, move |c| {
            Box::pin(async move { writes::put_manifest(c, &m, &actor).await })
        })
        .await
    }

    /// Deletes a manifest and every tag pointing to it. Returns the deleted
    /// tags, or `None` if the manifest did not exist.
    pub async fn delete_manifest(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        actor: &Actor,
    ) -> Result<Option<Vec<Tag>>> {
        let (repo, digest, actor) = (repository.clone(), digest.clone(), actor.clone());
        self.repository_write(repository, move |c| {
            Box::pin(async move { writes::delete_manifest(c, &repo, &digest, &actor).await })
        })
        .await
    }

    /// Deletes a tag. Returns whether it existed.
    pub async fn delete_tag(
        &self,
        repository: &RepositoryName,
        tag: &Tag,
        actor: &Actor,
    ) -> Result<bool> {
        let (repo, tag, actor) = (repository.clone(), tag.clone(), actor.clone());
        self.repository_write(repository, move |c| {
            Box::pin(async move { writes::delete_tag(c, &repo, &tag, &actor).await })
        })
        .await
    }
}
