//! A [`BlobStore`] that times every operation of the store it wraps into
//! `berth_storage_operation_duration_seconds{backend, operation}` and
//! counts failures into `berth_storage_errors_total` (see `berth-metrics`).
//!
//! Reads are timed until the blob is opened, not until its last byte was
//! streamed (that is the client's pace); writes (`put`, `upload_append`)
//! until the body was stored.

use std::future::Future;
use std::time::Instant;

use async_trait::async_trait;
use berth_oci::{Algorithm, Digest};

use crate::{BlobRead, BlobStore, ByteStream, Result, Staged, StoredBlob, UploadInfo};

/// Wraps a store and records its latency and errors under `backend`
/// (`filesystem`, `s3`).
pub struct Metered<S> {
    inner: S,
    backend: &'static str,
}

impl<S: BlobStore> Metered<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, backend: &'static str) -> Metered<S> {
        Metered { inner, backend }
    }

    async fn timed<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let started = Instant::now();
        let out = call.await;
        berth_metrics::get().storage_operation(
            self.backend,
            operation,
            started.elapsed(),
            out.is_ok(),
        );
        out
    }
}

#[async_trait]
impl<S: BlobStore> BlobStore for Metered<S> {
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        self.timed("stat", self.inner.stat(digest)).await
    }

    async fn read(&self, digest: &Digest, range: Option<(u64, u64)>) -> Result<Option<BlobRead>> {
        self.timed("read", self.inner.read(digest, range)).await
    }

    async fn delete(&self, digest: &Digest) -> Result<bool> {
        self.timed("delete", self.inner.delete(digest)).await
    }

    async fn list(&self, after: Option<&Digest>, limit: usize) -> Result<Vec<StoredBlob>> {
        self.timed("list", self.inner.list(after, limit)).await
    }

    async fn set_aside(&self, digest: &Digest) -> Result<Option<String>> {
        self.timed("set_aside", self.inner.set_aside(digest)).await
    }

    async fn quarantine(&self, digest: &Digest) -> Result<Option<StoredBlob>> {
        self.timed("quarantine", self.inner.quarantine(digest))
            .await
    }

    async fn release(&self, digest: &Digest, delete: bool) -> Result<()> {
        self.timed("release", self.inner.release(digest, delete))
            .await
    }

    async fn put(&self, expected: &Digest, len: Option<u64>, body: ByteStream) -> Result<u64> {
        self.timed("put", self.inner.put(expected, len, body)).await
    }

    fn stage(&self, algorithm: Algorithm) -> Result<Option<Staged>> {
        self.inner.stage(algorithm)
    }

    async fn publish_staged(&self, staged: Staged, expected: &Digest) -> Result<u64> {
        self.timed(
            "publish_staged",
            self.inner.publish_staged(staged, expected),
        )
        .await
    }

    async fn upload_create(&self, label: &str) -> Result<UploadInfo> {
        self.timed("upload_create", self.inner.upload_create(label))
            .await
    }

    async fn upload_info(&self, id: &str) -> Result<Option<UploadInfo>> {
        self.timed("upload_info", self.inner.upload_info(id)).await
    }

    async fn upload_append(
        &self,
        id: &str,
        start: Option<u64>,
        len: Option<u64>,
        body: ByteStream,
    ) -> Result<u64> {
        self.timed(
            "upload_append",
            self.inner.upload_append(id, start, len, body),
        )
        .await
    }

    async fn upload_commit(&self, id: &str, expected: &Digest) -> Result<u64> {
        self.timed("upload_commit", self.inner.upload_commit(id, expected))
            .await
    }

    async fn upload_cancel(&self, id: &str) -> Result<bool> {
        self.timed("upload_cancel", self.inner.upload_cancel(id))
            .await
    }

    async fn upload_list(&self) -> Result<Vec<UploadInfo>> {
        self.timed("upload_list", self.inner.upload_list()).await
    }

    async fn sweep_orphaned_uploads(&self, older_than: std::time::Duration) -> Result<usize> {
        self.timed(
            "sweep_orphaned_uploads",
            self.inner.sweep_orphaned_uploads(older_than),
        )
        .await
    }

    fn redirects(&self) -> bool {
        self.inner.redirects()
    }

    async fn redirect_url(&self, digest: &Digest) -> Result<Option<String>> {
        self.timed("redirect_url", self.inner.redirect_url(digest))
            .await
    }

    async fn probe(&self) -> Result<()> {
        self.timed("probe", self.inner.probe()).await
    }
}
