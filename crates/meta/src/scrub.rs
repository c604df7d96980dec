//! What the integrity scrub reads and remembers: the blob rows in digest
//! order, its resumable progress, and which images and tags use a blob.

use berth_oci::{Digest, RepositoryName, Tag};
use sqlx::Row as _;

use crate::{digest_at, now_ms, repository_at, tag_at, Meta, Result};

/// Where a scrub pass is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScrubProgress {
    /// The last blob checked (the pass resumes after it); `None`: at the
    /// start.
    pub cursor: Option<Digest>,
    /// When the pass started (Unix ms).
    pub pass_started_at: i64,
    /// Blobs checked in this pass.
    pub checked: u64,
    /// Bytes read in this pass.
    pub bytes: u64,
}

/// An image that a blob belongs to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BlobUser {
    /// The repository.
    pub repository: RepositoryName,
    /// The manifest (an image, or an index above one) that needs the blob.
    pub manifest: Digest,
    /// The tags pointing at that manifest.
    pub tags: Vec<Tag>,
}

const ROW: &str = "scrub";

impl Meta {
    /// Up to `limit` blob rows (digest, size) after `after`, in digest order.
    pub async fn blobs_after(
        &self,
        after: Option<&Digest>,
        limit: i64,
    ) -> Result<Vec<(Digest, u64)>> {
        let rows = sqlx::query(
            "SELECT digest, size FROM blobs WHERE digest > $1 ORDER BY digest LIMIT $2",
        )
        .bind(after.map_or("", Digest::as_str).to_owned())
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| Ok((digest_at(r, 0)?, r.try_get::<i64, _>(1)?.max(0) as u64)))
            .collect()
    }

    /// The scrub's saved progress, if a pass is under way.
    pub async fn scrub_progress(&self) -> Result<Option<ScrubProgress>> {
        let row = sqlx::query(
            "SELECT cursor, pass_started_at, checked, bytes FROM scrub_progress WHERE name = $1",
        )
        .bind(ROW)
        .fetch_optional(&self.read)
        .await?;
        row.map(|r| {
            Ok(ScrubProgress {
                cursor: crate::optional_digest_at(&r, 0)?,
                pass_started_at: r.try_get(1)?,
                checked: r.try_get::<i64, _>(2)?.max(0) as u64,
                bytes: r.try_get::<i64, _>(3)?.max(0) as u64,
            })
        })
        .transpose()
    }

    /// Saves the scrub's progress (`None`: the pass is complete).
    pub async fn save_scrub_progress(&self, progress: Option<ScrubProgress>) -> Result<()> {
        self.transact(move |c| {
            Box::pin(async move {
                match progress {
                    None => {
                        sqlx::query("DELETE FROM scrub_progress WHERE name = $1")
                            .bind(ROW)
                            .execute(&mut *c)
                            .await?;
                    }
                    Some(p) => {
                        sqlx::query(
                            "INSERT INTO scrub_progress
                               (name, cursor, pass_started_at, checked, bytes, updated_at)
                             VALUES ($1, $2, $3, $4, $5, $6)
                             ON CONFLICT (name) DO UPDATE SET cursor = excluded.cursor,
                               pass_started_at = excluded.pass_started_at,
                               checked = excluded.checked, bytes = excluded.bytes,
                               updated_at = excluded.updated_at",
                        )
                        .bind(ROW)
                        .bind(p.cursor.as_ref().map(|d| d.as_str().to_owned()))
                        .bind(p.pass_started_at)
                        .bind(p.checked as i64)
                        .bind(p.bytes as i64)
                        .bind(now_ms())
                        .execute(&mut *c)
                        .await?;
                    }
                }
                Ok(())
            })
        })
        .await
    }

    /// The images that need `digest`: each manifest that lists it (as a
    /// config or layer) and each index above such a manifest, with their
    /// tags, in every repository.
    pub async fn blob_users(&self, digest: &Digest) -> Result<Vec<BlobUser>> {
        let rows = sqlx::query(
            "SELECT r.name, mr.parent, r.id FROM manifest_references mr
             JOIN repositories r ON r.id = mr.repository_id
             WHERE mr.child = $1 AND mr.kind = 'blob' ORDER BY r.name, mr.parent",
        )
        .bind(digest.as_str().to_owned())
        .fetch_all(&self.read)
        .await?;
        let mut out = Vec::new();
        for r in &rows {
            let repository = repository_at(r, 0)?;
            let manifest = digest_at(r, 1)?;
            let repo_id: i64 = r.try_get(2)?;
            let parents = sqlx::query(
                "SELECT parent FROM manifest_references
                 WHERE repository_id = $1 AND child = $2 AND kind = 'manifest' ORDER BY parent",
            )
            .bind(repo_id)
            .bind(manifest.as_str().to_owned())
            .fetch_all(&self.read)
            .await?;
            let mut manifests = vec![manifest];
            for p in &parents {
                manifests.push(digest_at(p, 0)?);
            }
            for m in manifests {
                let tags = sqlx::query(
                    "SELECT name FROM tags WHERE repository_id = $1 AND digest = $2 ORDER BY name",
                )
                .bind(repo_id)
                .bind(m.as_str().to_owned())
                .fetch_all(&self.read)
                .await?
                .iter()
                .map(|t| tag_at(t, 0))
                .collect::<Result<Vec<_>>>()?;
                out.push(BlobUser {
                    repository: repository.clone(),
                    manifest: m,
                    tags,
                });
            }
        }
        Ok(out)
    }

    /// The repositories that link `digest` (where a copy may be fetched
    /// from another registry).
    pub async fn blob_repositories(&self, digest: &Digest) -> Result<Vec<RepositoryName>> {
        let rows = sqlx::query(
            "SELECT r.name FROM repository_blobs rb JOIN repositories r ON r.id = rb.repository_id
             WHERE rb.digest = $1 ORDER BY r.name",
        )
        .bind(digest.as_str().to_owned())
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(|r| repository_at(r, 0)).collect()
    }
}
