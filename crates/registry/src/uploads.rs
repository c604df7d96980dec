//! Blob uploads: sessions, chunks, monolithic pushes and mounts.

use std::time::SystemTime;

use berth_oci::Digest;
use berth_store::{ByteStream, UploadInfo};

use crate::{Error, Registry, Result};

impl Registry {
    /// Opens an upload session for `repo`.
    pub async fn start_upload(&self, repo: &str) -> Result<UploadInfo> {
        Ok(self.store.upload_create(repo).await?)
    }

    /// The session `id`, if it belongs to `repo`.
    pub async fn upload(&self, repo: &str, id: &str) -> Result<UploadInfo> {
        match self.store.upload_info(id).await? {
            Some(info) if info.label == repo => Ok(info),
            _ => Err(Error::UploadUnknown),
        }
    }

    /// Appends a chunk. `start` is the chunk's first byte from
    /// `Content-Range` (it must be where the upload ends); `len` its
    /// announced length. Returns the new upload size.
    pub async fn append_upload(
        &self,
        repo: &str,
        id: &str,
        start: Option<u64>,
        len: Option<u64>,
        body: ByteStream,
    ) -> Result<u64> {
        self.upload(repo, id).await?;
        Ok(self.store.upload_append(id, start, len, body).await?)
    }

    /// Completes an upload: appends the optional last chunk, verifies the
    /// digest, publishes the blob and links it to `repo`.
    pub async fn finish_upload(
        &self,
        repo: &str,
        id: &str,
        digest: &Digest,
        last_chunk: Option<(Option<u64>, Option<u64>, ByteStream)>,
    ) -> Result<u64> {
        self.upload(repo, id).await?;
        if let Some((start, len, body)) = last_chunk {
            self.store.upload_append(id, start, len, body).await?;
        }
        let size = self.store.upload_commit(id, digest).await?;
        self.link(repo, digest, size).await?;
        Ok(size)
    }

    /// Cancels an upload session of `repo`.
    pub async fn cancel_upload(&self, repo: &str, id: &str) -> Result<()> {
        self.upload(repo, id).await?;
        if self.store.upload_cancel(id).await? {
            Ok(())
        } else {
            Err(Error::UploadUnknown)
        }
    }

    /// Stores a whole blob sent in one request and links it to `repo`.
    pub async fn push_blob(
        &self,
        repo: &str,
        digest: &Digest,
        len: Option<u64>,
        body: ByteStream,
    ) -> Result<u64> {
        let size = self.store.put(digest, len, body).await?;
        self.link(repo, digest, size).await?;
        Ok(size)
    }

    /// Cross-repository mount: links `digest` into `repo` if it is readable
    /// from `from` (or, without `from`, stored at all). Returns whether the
    /// mount happened; if not, the caller falls back to a normal upload.
    pub async fn mount_blob(
        &self,
        repo: &str,
        digest: &Digest,
        from: Option<&str>,
    ) -> Result<bool> {
        let size = match from {
            Some(from) => self.meta.repository_blob(from, digest.as_str()).await?,
            None => self.meta.blob(digest.as_str()).await?,
        };
        let Some(size) = size else {
            return Ok(false);
        };
        if self.store.stat(digest).await?.is_none() {
            return Ok(false);
        }
        self.link(repo, digest, size).await?;
        // Garbage collection may have taken the file between the check and
        // the link (it was unreferenced everywhere): then answer "not
        // mounted" and let the client upload it, which heals the link.
        if self.store.stat(digest).await?.is_none() {
            self.cache.invalidate_link(repo, digest.as_str());
            return Ok(false);
        }
        Ok(true)
    }

    /// Removes upload sessions that received nothing for longer than the
    /// configured TTL. Returns how many were removed.
    pub async fn purge_uploads(&self) -> Result<usize> {
        let mut removed = 0;
        for u in self.abandoned_uploads(SystemTime::now()).await? {
            if self.store.upload_cancel(&u.id).await? {
                tracing::info!(upload = %u.id, repo = %u.repository, "removed abandoned upload");
                removed += 1;
            }
        }
        Ok(removed)
    }
}
