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

use berth_oci::{Digest, RepositoryName};
use sqlx::{AnyConnection, Row};

use crate::{digest_at, repository_at, Meta, Result};

/// A blob link or a blob that garbage collection may remove (or that the
/// grace period still holds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreferenced {
    /// The repository of a link; `None` for a blob.
    pub repository: Option<RepositoryName>,
    /// The blob.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: i64,
    /// When the link or the blob row was made (Unix ms).
    pub at: i64,
}

/// Which unreferenced links to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkAge {
    /// Linked before the cutoff: collectable.
    Old,
    /// Linked at or after the cutoff: held by the grace period.
    Young,
}

/// A link nobody references.
const UNREFERENCED: &str = "NOT EXISTS (
        SELECT 1 FROM manifest_references mr
        WHERE mr.repository_id = rb.repository_id AND mr.child = rb.digest AND mr.kind = 'blob')";

/// Links nobody references, linked before `$1`.
const LINKS: &str = "rb.linked_at < $1 AND NOT EXISTS (
        SELECT 1 FROM manifest_references mr
        WHERE mr.repository_id = rb.repository_id AND mr.child = rb.digest AND mr.kind = 'blob')";

/// Most blob rows deleted in one transaction.
const BLOB_BATCH: usize = 256;

fn unreferenced(r: &sqlx::any::AnyRow, repository: bool) -> Result<Unreferenced> {
    let off = usize::from(repository);
    Ok(Unreferenced {
        repository: if repository {
            Some(repository_at(r, 0)?)
        } else {
            None
        },
        digest: digest_at(r, off)?,
        size: r.try_get(off + 1)?,
        at: r.try_get(off + 2)?,
    })
}

/// `$first, $first+1, ...` for `n` values.
pub(crate) fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Meta {
    /// One page of the blob links that no manifest of their repository
    /// references, linked before `cutoff` (Unix ms) or, with
    /// [`LinkAge::Young`], at or after it; sorted by repository and digest,
    /// starting after `after` (a repository and a digest).
    pub async fn unreferenced_links(
        &self,
        age: LinkAge,
        cutoff: i64,
        after: Option<(&RepositoryName, &Digest)>,
        limit: i64,
    ) -> Result<Vec<Unreferenced>> {
        let when = match age {
            LinkAge::Old => "rb.linked_at < $1",
            LinkAge::Young => "rb.linked_at >= $1",
        };
        let sql = format!(
            "SELECT r.name, rb.digest, b.size, rb.linked_at FROM repository_blobs rb
             JOIN repositories r ON r.id = rb.repository_id
             JOIN blobs b ON b.digest = rb.digest
             WHERE {when} AND {UNREFERENCED}
               AND (r.name > $2 OR (r.name = $2 AND rb.digest > $3))
             ORDER BY r.name, rb.digest LIMIT $4"
        );
        let (repo, digest) = after.map_or(("", ""), |(r, d)| (r.as_str(), d.as_str()));
        let rows = sqlx::query(&sql)
            .bind(cutoff)
            .bind(repo)
            .bind(digest)
            .bind(limit)
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(|r| unreferenced(r, true)).collect()
    }

    /// One page of the names of repositories that have collectable links
    /// at `cutoff`, sorted, after `after` (from the first with `None`).
    pub async fn repositories_with_unreferenced_links(
        &self,
        cutoff: i64,
        after: Option<&RepositoryName>,
        limit: i64,
    ) -> Result<Vec<RepositoryName>> {
        let sql = format!(
            "SELECT r.name FROM repositories r WHERE r.name > $2 AND EXISTS (
                 SELECT 1 FROM repository_blobs rb WHERE rb.repository_id = r.id AND {LINKS})
             ORDER BY r.name LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(cutoff)
            .bind(after.map_or("", RepositoryName::as_str))
            .bind(limit)
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(|r| repository_at(r, 0)).collect()
    }

    /// One page of the blobs created before `cutoff` with no link that
    /// would survive a sweep of the links at `cutoff` (none at all, or only
    /// unreferenced old ones), sorted by digest, after `after` (from the
    /// first with `None`).
    pub async fn unreferenced_blobs(
        &self,
        cutoff: i64,
        after: Option<&Digest>,
        limit: i64,
    ) -> Result<Vec<Unreferenced>> {
        let sql = format!(
            "SELECT b.digest, b.size, b.created_at FROM blobs b
             WHERE b.created_at < $1 AND b.digest > $2 AND NOT EXISTS (
                 SELECT 1 FROM repository_blobs rb
                 WHERE rb.digest = b.digest AND NOT ({LINKS}))
             ORDER BY b.digest LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(cutoff)
            .bind(after.map_or("", Digest::as_str))
            .bind(limit)
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(|r| unreferenced(r, false)).collect()
    }

    /// Which of `digests` have a `blobs` row, each with whether a sweep at
    /// `cutoff` would delete that row (no link would survive the sweep of
    /// links, and the row is older than `cutoff`).
    pub async fn blob_rows(
        &self,
        digests: &[Digest],
        cutoff: i64,
    ) -> Result<HashMap<Digest, bool>> {
        let mut out = HashMap::with_capacity(digests.len());
        for batch in digests.chunks(BLOB_BATCH) {
            let sql = format!(
                "SELECT b.digest, CASE WHEN b.created_at < $1 AND NOT EXISTS (
                     SELECT 1 FROM repository_blobs rb
                     WHERE rb.digest = b.digest AND NOT ({LINKS})) THEN 1 ELSE 0 END
                 FROM blobs b WHERE b.digest IN ({})",
                placeholders(2, batch.len())
            );
            let mut q = sqlx::query(&sql).bind(cutoff);
            for d in batch {
                q = q.bind(d.as_str());
            }
            for r in q.fetch_all(&self.read).await? {
                let collectable: i32 = r.try_get(1)?;
                out.insert(digest_at(&r, 0)?, collectable != 0);
            }
        }
        Ok(out)
    }

    /// Deletes up to `limit` unreferenced links of `repository` created
    /// before `cutoff`, re-checking both conditions under the repository
    /// lock. Returns the links deleted, with their blob sizes; fewer than
    /// `limit` means none is left.
    pub async fn sweep_links(
        &self,
        repository: &RepositoryName,
        cutoff: i64,
        limit: i64,
    ) -> Result<Vec<Unreferenced>> {
        let repository = repository.clone();
        self.transact(move |c| {
            Box::pin(async move { sweep_links(c, &repository, cutoff, limit).await })
        })
        .await
    }

    /// Deletes the `blobs` rows of `digests` that still have no link and
    /// were created before `cutoff`. Returns those deleted; a blob linked
    /// meanwhile is kept.
    pub async fn sweep_blobs(&self, digests: &[Digest], cutoff: i64) -> Result<Vec<Digest>> {
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
        if !gone.is_empty() {
            // A kept inventory may show the size of a blob another
            // repository's manifest lists without holding it.
            self.inventories.changed_all();
        }
        Ok(gone)
    }

    /// Whether the `blobs` table has a row for `digest` (the last check
    /// before a quarantined file is deleted).
    pub async fn blob_recorded(&self, digest: &Digest) -> Result<bool> {
        Ok(self.blob(digest).await?.is_some())
    }
}

/// Locks a repository row for the rest of the transaction (PostgreSQL; a
/// no-op write on SQLite, whose writes are serial anyway). Returns its id.
pub(crate) async fn lock_repository(
    conn: &mut AnyConnection,
    name: &RepositoryName,
) -> Result<Option<i64>> {
    let row = sqlx::query("UPDATE repositories SET name = name WHERE name = $1 RETURNING id")
        .bind(name.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.map(|r| r.try_get::<i64, _>(0)).transpose()?)
}

async fn sweep_links(
    conn: &mut AnyConnection,
    repository: &RepositoryName,
    cutoff: i64,
    limit: i64,
) -> Result<Vec<Unreferenced>> {
    let Some(repo) = lock_repository(conn, repository).await? else {
        return Ok(Vec::new());
    };
    let sql = format!(
        "DELETE FROM repository_blobs AS rb WHERE rb.repository_id = $2 AND {LINKS}
           AND rb.digest IN (
             SELECT x.digest FROM repository_blobs x
             WHERE x.repository_id = $2 AND x.linked_at < $1 AND NOT EXISTS (
                 SELECT 1 FROM manifest_references mr
                 WHERE mr.repository_id = x.repository_id AND mr.child = x.digest
                   AND mr.kind = 'blob')
             ORDER BY x.digest LIMIT $3)
         RETURNING digest, linked_at"
    );
    let rows = sqlx::query(&sql)
        .bind(cutoff)
        .bind(repo)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?;
    let mut gone = Vec::with_capacity(rows.len());
    for r in &rows {
        gone.push(Unreferenced {
            repository: Some(repository.clone()),
            digest: digest_at(r, 0)?,
            size: 0,
            at: r.try_get(1)?,
        });
    }
    // The sizes, for the report (the rows stay: links only were deleted).
    for batch in gone.chunks_mut(BLOB_BATCH) {
        let sql = format!(
            "SELECT digest, size FROM blobs WHERE digest IN ({})",
            placeholders(1, batch.len())
        );
        let mut q = sqlx::query(&sql);
        for u in batch.iter() {
            q = q.bind(u.digest.as_str());
        }
        let sizes: HashMap<String, i64> = q
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_>>()?;
        for u in batch.iter_mut() {
            u.size = sizes.get(u.digest.as_str()).copied().unwrap_or(0);
        }
    }
    Ok(gone)
}

async fn sweep_blobs(
    conn: &mut AnyConnection,
    digests: &[Digest],
    cutoff: i64,
) -> Result<Vec<Digest>> {
    let mut gone = Vec::new();
    for d in digests {
        let done = sqlx::query(
            "DELETE FROM blobs WHERE digest = $1 AND created_at < $2
             AND NOT EXISTS (SELECT 1 FROM repository_blobs rb WHERE rb.digest = $1)",
        )
        .bind(d.as_str())
        .bind(cutoff)
        .execute(&mut *conn)
        .await?;
        if done.rows_affected() > 0 {
            gone.push(d.clone());
        }
    }
    Ok(gone)
}
