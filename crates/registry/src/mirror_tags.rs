//! When the pull-through mirror last confirmed each cached tag at its
//! upstream, kept in the database so that a restart (or another replica)
//! does not ask the upstream again about a tag still within its TTL. The
//! mirror keeps its own copy in memory and reads this one only when its
//! copy is missing or past the TTL.

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
}
