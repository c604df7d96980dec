//! When each cached tag of a mirrored repository was last confirmed at
//! its upstream (`mirror_tag_checks`), so that a restart, or another
//! replica, keeps serving it from the cache until its TTL is over rather
//! than asking the upstream again.

use berth_oci::{RepositoryName, Tag};
use sqlx::Row;

use crate::{Meta, Result};

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
}
