//! When each cached tag of a mirrored repository was last confirmed at
//! its upstream (`mirror_tag_checks`), so that a restart, or another
//! replica, keeps serving it from the cache until its TTL is over rather
//! than asking the upstream again.

use berth_oci::{RepositoryName, Tag};
use sqlx::Row;

use crate::{Meta, Result};

/// A check whose tag is gone.
const STALE: &str = "NOT EXISTS (
    SELECT 1 FROM tags t JOIN repositories r ON r.id = t.repository_id
    WHERE r.name = mirror_tag_checks.repository AND t.name = mirror_tag_checks.tag)";

impl Meta {
    /// When (Unix ms) `repository:tag` was last confirmed upstream.
    pub async fn mirror_tag_checked(
        &self,
        repository: &RepositoryName,
        tag: &Tag,
    ) -> Result<Option<i64>> {
        let row = sqlx::query(
            "SELECT checked_at FROM mirror_tag_checks WHERE repository = $1 AND tag = $2",
        )
        .bind(repository.as_str())
        .bind(tag.as_str())
        .fetch_optional(&self.read)
        .await?;
        Ok(row.map(|r| r.try_get("checked_at")).transpose()?)
    }

    /// Records that `repository:tag` was confirmed upstream at `at` (Unix
    /// ms); an older time never replaces a newer one.
    pub async fn record_mirror_tag_check(
        &self,
        repository: &RepositoryName,
        tag: &Tag,
        at: i64,
    ) -> Result<()> {
        let (repository, tag) = (repository.clone(), tag.clone());
        self.transact(move |c| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO mirror_tag_checks (repository, tag, checked_at)
                     VALUES ($1, $2, $3)
                     ON CONFLICT (repository, tag) DO UPDATE SET checked_at = excluded.checked_at
                     WHERE mirror_tag_checks.checked_at < excluded.checked_at",
                )
                .bind(repository.as_str())
                .bind(tag.as_str())
                .bind(at)
                .execute(&mut *c)
                .await?;
                Ok(())
            })
        })
        .await
    }

    /// How many checks are of tags that are gone (a read, so that the
    /// usual sweep, with nothing to forget, writes nothing).
    pub async fn stale_mirror_tag_checks(&self) -> Result<u64> {
        let row = sqlx::query(&format!(
            "SELECT COUNT(*) FROM mirror_tag_checks WHERE {STALE}"
        ))
        .fetch_one(&self.read)
        .await?;
        let n: i64 = row.try_get(0)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Forgets the checks of tags that are gone (evicted from the cache,
    /// deleted, their repository deleted); returns how many. A tag fetched
    /// again is checked afresh.
    pub async fn forget_stale_mirror_tag_checks(&self) -> Result<u64> {
        self.transact(|c| {
            Box::pin(async move {
                let done = sqlx::query(&format!("DELETE FROM mirror_tag_checks WHERE {STALE}"))
                    .execute(&mut *c)
                    .await?;
                Ok(done.rows_affected())
            })
        })
        .await
    }
}
