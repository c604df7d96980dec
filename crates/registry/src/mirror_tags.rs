//! When the pull-through mirror last confirmed each cached tag at its
//! upstream, kept in the database so that a restart (or another replica)
//! does not ask the upstream again about a tag still within its TTL. The
//! mirror keeps its own copy in memory and reads this one only when its
//! copy is missing or past the TTL. The record of a tag that is gone
//! (evicted, deleted, its repository deleted) is forgotten by the cache
//! limit's worker (`Registry::evict_mirror_cache`), limited or not.

use berth_oci::{RepositoryName, Tag};

use crate::{Registry, Result};

impl Registry {
    /// When (Unix ms) the mirrored `repo:tag` was last confirmed upstream.
    pub async fn mirror_tag_checked(
        &self,
        repo: &RepositoryName,
        tag: &Tag,
    ) -> Result<Option<i64>> {
        Ok(self.meta.mirror_tag_checked(repo, tag).await?)
    }

    /// Records that the mirrored `repo:tag` was confirmed upstream at `at`
    /// (Unix ms).
    pub async fn record_mirror_tag_check(
        &self,
        repo: &RepositoryName,
        tag: &Tag,
        at: i64,
    ) -> Result<()> {
        Ok(self.meta.record_mirror_tag_check(repo, tag, at).await?)
    }

    /// Forgets the records of tags that are gone; returns how many. Reads
    /// first, so the usual run (nothing to forget) writes nothing.
    pub async fn forget_stale_mirror_tag_checks(&self) -> Result<u64> {
        if self.meta.stale_mirror_tag_checks().await? == 0 {
            return Ok(0);
        }
        Ok(self.meta.forget_stale_mirror_tag_checks().await?)
    }
}
