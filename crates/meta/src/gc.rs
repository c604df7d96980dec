//! What garbage collection reads and deletes.
//!
//! The mark is the `manifest_references` table: a blob is wanted by a
//! repository while some manifest of that repository references it. The
//! sweep never trusts an earlier read: every delete repeats the whole
//! condition (unreferenced, older than the cutoff) inside its own
//! transaction, so whatever committed in between (a push that linked the
//! blob again, a manifest that now references it) wins.
//!
//! - Blob links are deleted per repository after locking the repository
//!   row. `put_manifest` and `link_blob` lock the same row first (their
//!   `ensure_repository` upsert), and `put_manifest` re-checks its links
//!   after that, so on PostgreSQL a push and a sweep of one repository are
//!   serialised; on SQLite all writes are anyway.
//! - A `blobs` row goes only when no link is left. On PostgreSQL a link
//!   inserted concurrently makes the delete fail on the foreign key; the
//!   blob is then simply kept.

use std::collections::HashMap;

use sqlx::{AnyConnection, Row};

use crate::{Meta, Result};

/// A blob link or a blob that garbage collection may remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreferenced {
    /// The repository of a link; `None` for a blob.
    pub repository: Option<String>,
    /// The blob.
    pub digest: String,
    /// Its size in bytes.
    pub size: i64,
}

/// Links nobody references, linked before `cutoff`.
const LINKS: &str = "rb.linked_at < $1 AND NOT EXISTS (
        SELECT 1 FROM manifest_references mr
        WHERE mr.repository_id = rb.repository_id AND mr.child = rb.digest AND mr.kind = 'blob')";

/// Most blob rows deleted in one transaction.
const BLOB_BATCH: usize = 256;

impl Meta {
    /// Blob links not referenced by any manifest of their repository and
    /// created before `cutoff` (Unix ms), sorted by repository and digest.
    pub async fn unreferenced_links(&self, cutoff: i64) -> Result<Vec<Unreferenced>> {
        let sql = format!(
            "SELECT r.name, rb.digest, b.size FROM repository_blobs rb
             JOIN repositories r ON r.id = rb.repository_id
             JOIN blobs b ON b.digest = rb.digest
             WHERE {LINKS} ORDER BY r.name, rb.digest"
        );
        let rows = sqlx::query(&sql).bind(cutoff).fetch_all(&self.read).await?;
        rows.iter()
            .map(|r| {
                Ok(Unreferenced {
                    repository: Some(r.try_get(0)?),
                    digest: r.try_get(1)?,
                    size: r.try_get(2)?,
                })
            })
            .collect()
    }

    /// Blobs created before `cutoff` with no link that would survive a sweep
    /// of the links at `cutoff` (none at all, or only unreferenced old ones).
    pub async fn unreferenced_blobs(&self, cutoff: i64) -> Result<Vec<Unreferenced>> {
        let sql = format!(
            "SELECT b.digest, b.size FROM blobs b
             WHERE b.created_at < $1 AND NOT EXISTS (
                 SELECT 1 FROM repository_blobs rb
                 WHERE rb.digest = b.digest AND NOT ({LINKS}))
             ORDER BY b.digest"
        );
        let rows = sqlx::query(&sql).bind(cutoff).fetch_all(&self.read).await?;
        rows.iter()
            .map(|r| {
                Ok(Unreferenced {
                    repository: None,
                    digest: r.try_get(0)?,
                    size: r.try_get(1)?,
                })
            })
            .collect()
    }

    /// Every digest in the `blobs` table with its size.
    pub async fn blob_sizes(&self) -> Result<HashMap<String, i64>> {
        let rows = sqlx::query("SELECT digest, size FROM blobs")
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// Deletes the unreferenced links of `repository` created before
    /// `cutoff`, re-checking both conditions under the repository lock.
    /// Returns the digests unlinked.
    pub async fn sweep_links(&self, repository: &str, cutoff: i64) -> Result<Vec<String>> {
        let repository = repository.to_owned();
        self.transact(move |c| Box::pin(async move { sweep_links(c, &repository, cutoff).await }))
            .await
    }

    /// Deletes the `blobs` rows of `digests` that still have no link and
    /// were created before `cutoff`. Returns those deleted; a blob linked
    /// meanwhile is kept.
    pub async fn sweep_blobs(&self, digests: &[String], cutoff: i64) -> Result<Vec<String>> {
        let mut gone = Vec::new();
        for batch in digests.chunks(BLOB_BATCH) {
            let owned = batch.to_vec();
            let outcome = self
                .transact(move |c| Box::pin(async move { sweep_blobs(c, &owned, cutoff).await }))
                .await;
            match outcome {
                Ok(deleted) => gone.extend(deleted),
                Err(e) => {
                    // Most likely a link committed between the check and the
                    // delete (PostgreSQL's foreign key refused it): retry one
                    // by one so only that blob is kept.
                    tracing::debug!(error = %e, "blob sweep batch failed; retrying one by one");
                    for d in batch {
                        let one = vec![d.clone()];
                        match self
                            .transact(move |c| {
                                Box::pin(async move { sweep_blobs(c, &one, cutoff).await })
                            })
                            .await
                        {
                            Ok(deleted) => gone.extend(deleted),
                            Err(e) => {
                                tracing::info!(digest = %d, error = %e, "blob kept: changed during the sweep")
                            }
                        }
                    }
                }
            }
        }
        Ok(gone)
    }

    /// Whether the `blobs` table has a row for `digest` (the last check
    /// before a quarantined file is deleted).
    pub async fn blob_recorded(&self, digest: &str) -> Result<bool> {
        Ok(self.blob(digest).await?.is_some())
    }
}

/// Locks a repository row for the rest of the transaction (PostgreSQL; a
/// no-op write on SQLite, whose writes are serial anyway). Returns its id.
pub(crate) async fn lock_repository(conn: &mut AnyConnection, name: &str) -> Result<Option<i64>> {
    let row = sqlx::query("UPDATE repositories SET name = name WHERE name = $1 RETURNING id")
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.map(|r| r.try_get::<i64, _>(0)).transpose()?)
}

async fn sweep_links(
    conn: &mut AnyConnection,
    repository: &str,
    cutoff: i64,
) -> Result<Vec<String>> {
    let Some(repo) = lock_repository(conn, repository).await? else {
        return Ok(Vec::new());
    };
    let sql = format!(
        "DELETE FROM repository_blobs AS rb WHERE rb.repository_id = $2 AND {LINKS}
         RETURNING digest"
    );
    let rows = sqlx::query(&sql)
        .bind(cutoff)
        .bind(repo)
        .fetch_all(&mut *conn)
        .await?;
    rows.iter()
        .map(|r| Ok(r.try_get::<String, _>(0)?))
        .collect()
}

async fn sweep_blobs(
    conn: &mut AnyConnection,
    digests: &[String],
    cutoff: i64,
) -> Result<Vec<String>> {
    let mut gone = Vec::new();
    for d in digests {
        let done = sqlx::query(
            "DELETE FROM blobs WHERE digest = $1 AND created_at < $2
             AND NOT EXISTS (SELECT 1 FROM repository_blobs rb WHERE rb.digest = $1)",
        )
        .bind(d)
        .bind(cutoff)
        .execute(&mut *conn)
        .await?;
        if done.rows_affected() > 0 {
            gone.push(d.clone());
        }
    }
    Ok(gone)
}
