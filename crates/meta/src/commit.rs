//! Writes, and group commit on SQLite.
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

use sqlx::{AnyConnection, AnyPool, Connection as _};
use tokio::sync::{mpsc, oneshot};

use crate::queries::NewManifest;
use crate::writes::{apply, Outcome, WriteOp};
use crate::{Error, Meta, Result};

/// Most writes committed together.
const MAX_BATCH: usize = 256;

/// Where writes go.
#[derive(Clone)]
pub(crate) enum Writer {
    /// To the group-commit task (SQLite).
    Batched(mpsc::Sender<Job>),
    /// Straight to a pool, one transaction each (PostgreSQL).
    Pool(AnyPool),
}

pub(crate) struct Job {
    op: WriteOp,
    reply: oneshot::Sender<Result<Outcome>>,
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
        match commit_batch(&mut conn, &batch).await {
            Ok(outcomes) => {
                for (job, outcome) in batch.drain(..).zip(outcomes) {
                    let _ = job.reply.send(outcome);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, writes = batch.len(), "metadata commit failed");
                let msg = e.to_string();
                for job in batch.drain(..) {
                    let _ = job.reply.send(Err(Error::Commit(msg.clone())));
                }
            }
        }
    }
    let _ = conn.close().await;
}

/// Runs `batch` in one transaction. The outer error means nothing was
/// committed; inner errors belong to single writes that were rolled back to
/// their savepoint.
async fn commit_batch(conn: &mut AnyConnection, batch: &[Job]) -> Result<Vec<Result<Outcome>>> {
    let mut tx = conn.begin().await?;
    if let [job] = batch {
        let outcome = apply(&mut tx, &job.op).await;
        if outcome.is_ok() {
            tx.commit().await?;
        } else {
            tx.rollback().await?;
        }
        return Ok(vec![outcome]);
    }
    let mut out = Vec::with_capacity(batch.len());
    for job in batch {
        sqlx::query("SAVEPOINT berth_write")
            .execute(&mut *tx)
            .await?;
        let outcome = apply(&mut tx, &job.op).await;
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

fn unexpected(op: &str) -> Error {
    Error::Corrupt(format!("unexpected outcome of {op}"))
}

impl Meta {
    async fn write(&self, op: WriteOp) -> Result<Outcome> {
        match &self.writer {
            Writer::Batched(tx) => {
                let (reply, answer) = oneshot::channel();
                let stopped = || Error::Commit("the metadata writer has stopped".into());
                tx.send(Job { op, reply }).await.map_err(|_| stopped())?;
                answer.await.map_err(|_| stopped())?
            }
            Writer::Pool(pool) => {
                let mut tx = pool.begin().await?;
                let outcome = apply(&mut tx, &op).await?;
                tx.commit().await?;
                Ok(outcome)
            }
        }
    }

    /// Records that `digest` (of `size` bytes) is stored and readable from
    /// `repository`, creating the repository if needed.
    pub async fn link_blob(
        &self,
        repository: &str,
        digest: &str,
        size: u64,
        now: i64,
    ) -> Result<()> {
        let op = WriteOp::LinkBlob {
            repository: repository.to_owned(),
            digest: digest.to_owned(),
            size,
            now,
        };
        match self.write(op).await? {
            Outcome::Done => Ok(()),
            _ => Err(unexpected("link_blob")),
        }
    }

    /// Removes the link between `repository` and `digest`. Returns whether
    /// it existed. The bytes stay until garbage collection.
    pub async fn unlink_blob(&self, repository: &str, digest: &str) -> Result<bool> {
        let op = WriteOp::UnlinkBlob {
            repository: repository.to_owned(),
            digest: digest.to_owned(),
        };
        match self.write(op).await? {
            Outcome::Existed(e) => Ok(e),
            _ => Err(unexpected("unlink_blob")),
        }
    }

    /// Stores a manifest, its references and its tags in one transaction.
    pub async fn put_manifest(&self, m: &NewManifest) -> Result<()> {
        match self
            .write(WriteOp::PutManifest(Box::new(m.clone())))
            .await?
        {
            Outcome::Done => Ok(()),
            _ => Err(unexpected("put_manifest")),
        }
    }

    /// Deletes a manifest and every tag pointing to it. Returns the deleted
    /// tags, or `None` if the manifest did not exist.
    pub async fn delete_manifest(
        &self,
        repository: &str,
        digest: &str,
    ) -> Result<Option<Vec<String>>> {
        let op = WriteOp::DeleteManifest {
            repository: repository.to_owned(),
            digest: digest.to_owned(),
        };
        match self.write(op).await? {
            Outcome::DeletedTags(t) => Ok(t),
            _ => Err(unexpected("delete_manifest")),
        }
    }

    /// Deletes a tag. Returns whether it existed.
    pub async fn delete_tag(&self, repository: &str, tag: &str) -> Result<bool> {
        let op = WriteOp::DeleteTag {
            repository: repository.to_owned(),
            tag: tag.to_owned(),
        };
        match self.write(op).await? {
            Outcome::Existed(e) => Ok(e),
            _ => Err(unexpected("delete_tag")),
        }
    }
}
