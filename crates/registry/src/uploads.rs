//! Blob uploads: sessions, chunks, monolithic pushes and mounts.
//!
//! Every path that adds a blob to a repository passes the namespace quota
//! (see the `quota` module): refused before writing when the size is
//! known, cut off when a streamed body passes what is free, and checked
//! exactly when the finished blob is linked. Open sessions count: every
//! byte is reserved in the namespace's session ledger before it is written
//! (see `quota::Sessions`). A refused upload session is cancelled, so its
//! bytes are gone.

use std::sync::atomic::Ordering;
use std::time::SystemTime;

use berth_metrics::ArtifactKind;
use berth_oci::{Digest, RepositoryName};
use berth_store::{ByteStream, Staged, UploadInfo};

use crate::quota::{capped, drain, Gate, Pushed};
use crate::{Error, Registry, Result};

/// The job name (lease) of the purge of abandoned uploads.
pub const UPLOAD_PURGE_JOB: &str = "upload-purge";

impl Registry {
    /// Opens an upload session for `repo` (refused when the namespace has
    /// no room left at all, its open sessions counted).
    pub async fn start_upload(&self, repo: &RepositoryName) -> Result<UploadInfo> {
        let gate = self.quota_gate(repo, None, None).await?;
        if let Some(g) = &gate {
            if g.available() == 0 {
                return Err(g.refusal(&Pushed::Session(repo), Some(1)));
            }
        }
        let info = self.store.upload_create(repo.as_str()).await?;
        if let Some(g) = &gate {
            self.ledger_set(&g.namespace, &info.id, 0).await?;
        }
        Ok(info)
    }

    /// The session `id`, if it belongs to `repo`.
    pub async fn upload(&self, repo: &RepositoryName, id: &str) -> Result<UploadInfo> {
        match self.store.upload_info(id).await? {
            Some(info) if info.label == repo.as_str() => Ok(info),
            _ => Err(Error::UploadUnknown),
        }
    }

    /// Appends a chunk. `start` is the chunk's first byte from
    /// `Content-Range` (it must be where the upload ends); `len` its
    /// announced length. Returns the new upload size.
    pub async fn append_upload(
        &self,
        repo: &RepositoryName,
        id: &str,
        start: Option<u64>,
        len: Option<u64>,
        body: ByteStream,
    ) -> Result<u64> {
        let info = self.upload(repo, id).await?;
        let gate = self.quota_gate(repo, None, Some(id)).await?;
        self.append_within(repo, id, info.size, start, len, body, gate.as_ref())
            .await
            .map_err(|e| e.at_upload(repo, id))
    }

    /// Appends to upload `id` of `repo` (holding `held` bytes) within
    /// `gate`'s room, every byte reserved in the namespace's session
    /// ledger before it is written; over it, the session is cancelled and
    /// the append refused.
    #[allow(clippy::too_many_arguments)]
    async fn append_within(
        &self,
        repo: &RepositoryName,
        id: &str,
        held: u64,
        start: Option<u64>,
        len: Option<u64>,
        body: ByteStream,
        gate: Option<&Gate>,
    ) -> Result<u64> {
        let Some(g) = gate else {
            return Ok(self.store.upload_append(id, start, len, body).await?);
        };
        let ns = &g.namespace;
        let what = Pushed::Upload(repo);
        // The session's own bytes, as the store knows them.
        self.ledger_set(ns, id, held).await?;
        let free = g.available().saturating_sub(held);
        if let Some(l) = len {
            if l > free {
                if l <= crate::quota::DRAIN_LIMIT {
                    drain(body).await;
                }
                self.cancel_session(id).await?;
                return Err(g.refusal(&what, Some(held + l)));
            }
        }
        let (body, tripped) = capped(body, self.admit(g, id));
        match self.store.upload_append(id, start, len, body).await {
            Ok(size) => {
                self.ledger_set(ns, id, size).await?;
                Ok(size)
            }
            Err(_) if tripped.load(Ordering::Acquire) => {
                self.cancel_session(id).await?;
                Err(g.refusal(&what, None))
            }
            Err(e) => {
                // The session keeps what the store kept.
                match self.store.upload_info(id).await {
                    Ok(Some(info)) => self.ledger_set(ns, id, info.size).await?,
                    _ => self.ledger_release(id).await,
                }
                Err(e.into())
            }
        }
    }

    /// Cancels session `id` and releases its bytes from its namespace's
    /// ledger.
    async fn cancel_session(&self, id: &str) -> Result<bool> {
        let cancelled = self.store.upload_cancel(id).await;
        self.ledger_release(id).await;
        Ok(cancelled?)
    }

    /// Completes an upload: appends the optional last chunk, verifies the
    /// digest, publishes the blob and links it to `repo`.
    pub async fn finish_upload(
        &self,
        repo: &RepositoryName,
        id: &str,
        digest: &Digest,
        last_chunk: Option<(Option<u64>, Option<u64>, ByteStream)>,
    ) -> Result<u64> {
        let info = self.upload(repo, id).await?;
        // The whole blob in the closing request of an empty session (the
        // POST-then-PUT push of docker, containerd and most clients): it is
        // stored straight under its digest, as a one-request push is, with
        // no session bytes to write, read back or copy, and the empty
        // session then ends.
        let last_chunk = match last_chunk {
            Some((None | Some(0), len, body)) if info.size == 0 => {
                let size = match self.push_blob(repo, digest, len, body).await {
                    Ok(size) => size,
                    Err(e @ Error::Denied(_)) => {
                        // Refused (the quota): the session ends with it,
                        // as when a chunk does not fit.
                        self.cancel_session(id).await?;
                        return Err(e);
                    }
                    Err(e) => return Err(e.at_upload(repo, id)),
                };
                if let Err(e) = self.cancel_session(id).await {
                    // The blob is stored and linked; the empty session
                    // expires with the upload purge.
                    tracing::warn!(upload = id, error = %e, "ending an upload session after its blob was stored");
                }
                return Ok(size);
            }
            other => other,
        };
        // No gate when the namespace holds this digest already: linking it
        // costs nothing.
        let gate = self.quota_gate(repo, Some(digest), Some(id)).await?;
        let mut held = info.size;
        if let Some((start, len, body)) = last_chunk {
            held = self
                .append_within(repo, id, info.size, start, len, body, gate.as_ref())
                .await
                .map_err(|e| e.at_upload(repo, id))?;
        }
        if let Some(g) = &gate {
            if let Err(e) = g.check(&Pushed::Blob(digest), held) {
                self.cancel_session(id).await?;
                return Err(e);
            }
        }
        let committed = self.store.upload_commit(id, digest).await;
        // Also without a gate now: the session may have reserved bytes
        // before its digest turned out to be held already.
        self.ledger_release(id).await;
        let size = committed?;
        self.link_within(repo, digest, size, gate.as_ref()).await?;
        berth_metrics::get().pushed(repo.as_str(), ArtifactKind::Blob, size);
        Ok(size)
    }

    /// Cancels an upload session of `repo`.
    pub async fn cancel_upload(&self, repo: &RepositoryName, id: &str) -> Result<()> {
        self.upload(repo, id).await?;
        if self.cancel_session(id).await? {
            Ok(())
        } else {
            Err(Error::UploadUnknown)
        }
    }

    /// Stores a whole blob sent in one request and links it to `repo`.
    /// While it streams, its bytes are held in the namespace's session
    /// ledger like an upload session's.
    pub async fn push_blob(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
        len: Option<u64>,
        body: ByteStream,
    ) -> Result<u64> {
        let gate = self.quota_gate(repo, Some(digest), None).await?;
        let what = Pushed::Blob(digest);
        let key = format!("put:{}", uuid::Uuid::new_v4());
        let (body, tripped) = match &gate {
            None => (body, None),
            Some(g) => {
                if let Some(l) = len {
                    if let Err(e) = g.check(&what, l) {
                        if l <= crate::quota::DRAIN_LIMIT {
                            drain(body).await;
                        }
                        return Err(e);
                    }
                }
                let (body, tripped) = capped(body, self.admit(g, &key));
                (body, Some(tripped))
            }
        };
        let stored = self.store.put(digest, len, body).await;
        if gate.is_some() {
            self.ledger_release(&key).await;
        }
        let size = match stored {
            Ok(size) => size,
            Err(e) => {
                return match (&gate, tripped) {
                    (Some(g), Some(t)) if t.load(Ordering::Acquire) => Err(g.refusal(&what, None)),
                    _ => Err(e.into()),
                }
            }
        };
        self.link_within(repo, digest, size, gate.as_ref()).await?;
        berth_metrics::get().pushed(repo.as_str(), ArtifactKind::Blob, size);
        Ok(size)
    }

    /// Stores a blob its producer wrote and hashed into `staged` (the
    /// mirror's downloads, see `berth_store::Staged`) and links it to
    /// `repo`: the namespace's quota checked with its known size, the file
    /// published by the store without a copy where it can (a rename on
    /// the filesystem store), the digest it was hashed to required to be
    /// `digest`.
    pub async fn store_staged(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
        staged: Staged,
    ) -> Result<u64> {
        let gate = self.quota_gate(repo, Some(digest), None).await?;
        if let Some(g) = &gate {
            g.check(&Pushed::Blob(digest), staged.bytes())?;
        }
        let size = self.store.publish_staged(staged, digest).await?;
        self.link_within(repo, digest, size, gate.as_ref()).await?;
        berth_metrics::get().pushed(repo.as_str(), ArtifactKind::Blob, size);
        Ok(size)
    }

    /// Cross-repository mount: links `digest` into `repo` if it is readable
    /// from `from` (or, without `from`, stored at all). Returns whether the
    /// mount happened; if not, the caller falls back to a normal upload. A
    /// mount into another namespace counts against its quota (DENIED when
    /// it does not fit).
    pub async fn mount_blob(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
        from: Option<&RepositoryName>,
    ) -> Result<bool> {
        let size = match from {
            Some(from) => self.meta.repository_blob(from, digest).await?,
            None => self.meta.blob(digest).await?,
        };
        let Some(size) = size else {
            return Ok(false);
        };
        if self.store.stat(digest).await?.is_none() {
            return Ok(false);
        }
        let gate = self.quota_gate(repo, Some(digest), None).await?;
        if let Some(g) = &gate {
            g.check(&Pushed::Blob(digest), size)?;
        }
        self.link_within(repo, digest, size, gate.as_ref()).await?;
        // Garbage collection may have taken the file between the check and
        // the link (it was unreferenced everywhere): then answer "not
        // mounted" and let the client upload it, which heals the link.
        if self.store.stat(digest).await?.is_none() {
            self.cache.invalidate_link(repo, digest);
            return Ok(false);
        }
        Ok(true)
    }

    /// Links a stored blob, re-checking `gate`'s quota in the link's own
    /// transaction. A refused blob stays stored but unreferenced: another
    /// upload of the same digest may be about to link it, so it is left
    /// for garbage collection rather than deleted here.
    async fn link_within(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
        size: u64,
        gate: Option<&Gate>,
    ) -> Result<()> {
        let Some(g) = gate else {
            return self.link(repo, digest, size).await;
        };
        let epoch = self.cache.epoch();
        let now = berth_meta::now_ms();
        if let Some(used) = self
            .meta
            .link_blob_within_quota(repo, digest, size, now, &g.namespace, g.limit)
            .await?
        {
            tracing::info!(%repo, %digest, size, used, "upload refused at link time: over quota");
            let g = Gate {
                used,
                held: 0,
                ..g.clone()
            };
            return Err(g.refusal(&Pushed::Blob(digest), Some(size)));
        }
        self.cache.fill_link(repo, digest, size, &epoch);
        Ok(())
    }

    /// Removes upload sessions that received nothing for longer than the
    /// configured TTL. Returns how many were removed. Takes the
    /// `upload-purge` job lease: with several replicas one of them purges
    /// at a time (the others get `Conflict` and skip their round).
    pub async fn purge_uploads(&self) -> Result<usize> {
        let held = self.hold_job(UPLOAD_PURGE_JOB).await?;
        let removed = self.purge_abandoned().await;
        held.release().await;
        removed
    }

    async fn purge_abandoned(&self) -> Result<usize> {
        let mut removed = 0;
        for u in self.abandoned_uploads(SystemTime::now()).await? {
            if self.cancel_session(&u.id).await? {
                tracing::info!(upload = %u.id, repo = %u.repository, "removed abandoned upload");
                removed += 1;
            }
        }
        Ok(removed)
    }
}
