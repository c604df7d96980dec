//! Reading, checking and deleting blobs of a repository.

use berth_oci::{Digest, RepositoryName};
use berth_store::BlobRead;

use crate::Caller;
use crate::{Error, Registry, Result};

/// A byte range as an HTTP `Range: bytes=` header can express it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `start-` or `start-end` (inclusive).
    From(u64, Option<u64>),
    /// `-n`: the last n bytes.
    Suffix(u64),
}

impl ByteRange {
    /// Resolves against a blob of `size` bytes to `(offset, len)`.
    pub fn resolve(self, size: u64) -> Option<(u64, u64)> {
        match self {
            ByteRange::From(start, end) => {
                if start >= size {
                    return None;
                }
                let end = end.unwrap_or(size - 1).min(size - 1);
                (end >= start).then(|| (start, end - start + 1))
            }
            ByteRange::Suffix(n) => {
                if n == 0 || size == 0 {
                    return None;
                }
                let n = n.min(size);
                Some((size - n, n))
            }
        }
    }
}

impl Registry {
    /// Size of `digest` if it is readable from `repo`.
    pub async fn blob_size(&self, repo: &RepositoryName, digest: &Digest) -> Result<u64> {
        if let Some(size) = self.cache.link(repo, digest) {
            return Ok(size);
        }
        let epoch = self.cache.epoch();
        let size = self
            .meta
            .repository_blob(repo, digest)
            .await?
            .ok_or_else(|| Error::BlobUnknown(digest.to_string()))?;
        // Before a link is cached, check the bytes are really there: a HEAD
        // that says "present" makes clients skip the upload, so it must not
        // trust metadata alone (a file lost to an operator or a disk fault).
        if self.store.stat(digest).await?.is_none() {
            tracing::warn!(%digest, %repo, "blob linked in metadata is missing from storage");
            return Err(Error::BlobUnknown(digest.to_string()));
        }
        self.cache.fill_link(repo, digest, size, &epoch);
        Ok(size)
    }

    /// Opens a blob of `repo`, whole or a range of it. Returns the blob's
    /// total size, the served `(offset, len)` when a range was asked, and
    /// the body.
    ///
    /// One storage request: a link not cached is read from the database
    /// and the open itself proves the bytes are there (no separate `stat`,
    /// which on object storage is a request of its own); the link is
    /// cached once it did.
    pub async fn read_blob(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> Result<(u64, Option<(u64, u64)>, BlobRead)> {
        let (size, unverified) = match self.cache.link(repo, digest) {
            Some(size) => (size, None),
            None => {
                let epoch = self.cache.epoch();
                let size = self
                    .meta
                    .repository_blob(repo, digest)
                    .await?
                    .ok_or_else(|| Error::BlobUnknown(digest.to_string()))?;
                (size, Some(epoch))
            }
        };
        let resolved = match range {
            Some(r) => Some(r.resolve(size).ok_or(Error::RangeNotSatisfiable { size })?),
            None => None,
        };
        let read = self.store.read(digest, resolved).await?.ok_or_else(|| {
            // Linked in metadata but gone from storage: report it as unknown
            // rather than failing, and let GC reconcile.
            tracing::warn!(%digest, %repo, "blob linked in metadata is missing from storage");
            Error::BlobUnknown(digest.to_string())
        })?;
        if let Some(epoch) = unverified {
            self.cache.fill_link(repo, digest, size, &epoch);
        }
        berth_metrics::get().pulled(repo.as_str(), berth_metrics::ArtifactKind::Blob, read.len);
        Ok((size, resolved, read))
    }

    /// Where the caller may fetch `digest` of `repo` directly (a presigned
    /// object-store URL), when the store redirects reads; `None` to serve
    /// it. The caller's right to read `repo` was checked by the caller of
    /// this method; the blob must be linked to `repo` and stored.
    pub async fn blob_redirect(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<String>> {
        if !self.store.redirects() {
            return Ok(None);
        }
        let size = self.blob_size(repo, digest).await?;
        let url = self.store.redirect_url(digest).await?;
        if url.is_some() {
            berth_metrics::get().pulled(repo.as_str(), berth_metrics::ArtifactKind::Blob, size);
        }
        Ok(url)
    }

    /// Unlinks a blob from `repo` (the bytes go at the next garbage
    /// collection if nothing else references them). A blob used by an
    /// image under a protected or immutable tag is unlinked only by a
    /// namespace admin, decided in the unlink's transaction.
    pub async fn delete_blob(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
        caller: &Caller,
    ) -> Result<()> {
        let rules = std::sync::Arc::new(self.tag_rules(repo).await?);
        let existed = if rules.is_empty() || caller.namespace_admin {
            self.meta.unlink_blob(repo, digest, &caller.actor()).await?
        } else {
            self.meta
                .unlink_blob_guarded(repo, digest, rules.delete_guard(caller), &caller.actor())
                .await?
        };
        self.cache.invalidate_link(repo, digest);
        if existed {
            Ok(())
        } else {
            Err(Error::BlobUnknown(digest.to_string()))
        }
    }

    /// Makes `digest` readable from `repo` after it was stored.
    pub(crate) async fn link(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
        size: u64,
    ) -> Result<()> {
        let epoch = self.cache.epoch();
        self.meta
            .link_blob(repo, digest, size, berth_meta::now_ms())
            .await?;
        self.cache.fill_link(repo, digest, size, &epoch);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::ByteRange;

    #[test]
    fn ranges() {
        assert_eq!(ByteRange::From(0, Some(9)).resolve(100), Some((0, 10)));
        assert_eq!(ByteRange::From(90, None).resolve(100), Some((90, 10)));
        assert_eq!(ByteRange::From(90, Some(500)).resolve(100), Some((90, 10)));
        assert_eq!(ByteRange::From(100, None).resolve(100), None);
        assert_eq!(ByteRange::From(5, Some(4)).resolve(100), None);
        assert_eq!(ByteRange::Suffix(10).resolve(100), Some((90, 10)));
        assert_eq!(ByteRange::Suffix(1000).resolve(100), Some((0, 100)));
        assert_eq!(ByteRange::Suffix(0).resolve(100), None);
        assert_eq!(ByteRange::From(0, None).resolve(0), None);
    }
}
