//! Content-addressed blob storage and upload sessions.
//!
//! The [`BlobStore`] trait is the only way the rest of berth touches blob
//! bytes. It knows digests and upload ids, never repositories, HTTP, SQL or
//! users: which repository may read a blob is the metadata layer's business.
//!
//! Invariant kept by every implementation: a blob becomes visible under its
//! digest only after the digest was verified over the exact bytes stored, and
//! it appears atomically (rename after fsync on a filesystem), so a crash
//! leaves either no blob or the whole blob.

use std::io;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use berth_oci::{Algorithm, Digest};
use bytes::Bytes;
use futures_util::Stream;

pub mod fs;
mod metered;
pub mod object;
mod pipeline;
mod staged;

pub use fs::FsStore;
pub use metered::Metered;
pub use object::BucketStore;
pub use staged::Staged;

/// A stream of request or response body bytes.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The upload session does not exist (never created, finished or cancelled).
    #[error("upload session unknown")]
    UploadUnknown,
    /// A chunk did not start where the upload currently ends.
    #[error("chunk starts at {start} but the upload holds {size} bytes")]
    RangeMismatch {
        /// Where the chunk claimed to start.
        start: u64,
        /// The bytes the upload already holds.
        size: u64,
    },
    /// The content's digest is not the one the client announced.
    #[error("content digest {actual} does not match the expected {expected}")]
    DigestMismatch {
        /// What the client said.
        expected: Digest,
        /// What the bytes hash to.
        actual: Digest,
    },
    /// The body was shorter or longer than announced.
    #[error("received {actual} bytes but {expected} were announced")]
    SizeMismatch {
        /// Announced length.
        expected: u64,
        /// Received length.
        actual: u64,
    },
    /// The storage device is full.
    #[error("storage is full")]
    StorageFull,
    /// Reading the client's body failed (client went away, timeout, ...).
    #[error("reading the request body failed: {0}")]
    Body(io::Error),
    /// Any other I/O failure.
    #[error("storage I/O error: {0}")]
    Io(io::Error),
    /// The object store could not be reached, or failed after retries
    /// (the server answers 503: nothing was stored, try again later).
    #[error("object storage is unavailable: {what} failed")]
    Unavailable {
        /// What berth was doing.
        what: &'static str,
        /// The object store's error (never contains credentials).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        if e.raw_os_error() == Some(28) {
            // ENOSPC
            Error::StorageFull
        } else {
            Error::Io(e)
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The body of a blob read.
pub enum BlobBody {
    /// The whole requested range, already in memory (small blobs).
    Bytes(Bytes),
    /// A stream of the requested range.
    Stream(ByteStream),
}

/// A blob (or a range of it) opened for reading.
pub struct BlobRead {
    /// Number of bytes `body` yields.
    pub len: u64,
    /// The bytes.
    pub body: BlobBody,
}

/// What is known about an upload session.
#[derive(Debug, Clone)]
pub struct UploadInfo {
    /// The session id (a UUID).
    pub id: String,
    /// Opaque label given at creation (berth uses the repository name).
    pub label: String,
    /// Bytes received so far.
    pub size: u64,
    /// When the session was created.
    pub started_at: SystemTime,
    /// When bytes were last received.
    pub updated_at: SystemTime,
}

/// A stored blob, as enumerated for garbage collection.
#[derive(Debug, Clone)]
pub struct StoredBlob {
    /// Its digest.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// When it was written.
    pub modified: SystemTime,
}

/// Content-addressed blob storage with resumable upload sessions.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Size of the blob, or `None` if it is not stored.
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>>;

    /// Opens `len` bytes of the blob starting at `offset` (the whole blob
    /// when `range` is `None`). `None` if the blob is not stored. The range
    /// must lie within the blob; callers resolve HTTP ranges against
    /// [`BlobStore::stat`] first.
    async fn read(&self, digest: &Digest, range: Option<(u64, u64)>) -> Result<Option<BlobRead>>;

    /// Removes a blob. Returns whether it existed.
    async fn delete(&self, digest: &Digest) -> Result<bool>;

    /// Up to `limit` stored blobs in digest order, starting after `after`
    /// (for garbage collection, which pages through the store and never
    /// holds all of it).
    async fn list(&self, after: Option<&Digest>, limit: usize) -> Result<Vec<StoredBlob>>;

    /// Takes a blob out of sight before garbage collection deletes it:
    /// afterwards it reads as absent, and a new publication of the same
    /// digest creates a fresh copy rather than refreshing this one. Returns
    /// what was quarantined (its `modified` time is the last time it was
    /// written or re-published), or `None` if the blob was not stored.
    ///
    /// Every quarantine must end with [`BlobStore::release`]; one left
    /// behind by a crash is put back when the store is opened again.
    async fn quarantine(&self, digest: &Digest) -> Result<Option<StoredBlob>>;

    /// Ends a quarantine: deletes the blob for good (`delete`), or puts it
    /// back, unless a new copy was published meanwhile (which is then kept).
    async fn release(&self, digest: &Digest, delete: bool) -> Result<()>;

    /// Moves a damaged blob out of sight, keeping its bytes for
    /// inspection (the integrity scrub's quarantine, unlike GC's, is never
    /// put back): afterwards the digest reads as absent and a new
    /// publication stores a fresh copy. Returns where the bytes went, or
    /// `None` if the blob was not stored.
    async fn set_aside(&self, digest: &Digest) -> Result<Option<String>>;

    /// Stores `body` under `expected` in one step, verifying the digest (and
    /// the length, when `len` is given) while streaming. Returns the size.
    ///
    /// Publishing a digest that is already stored keeps the stored copy and
    /// refreshes its modification time (as [`BlobStore::upload_commit`]
    /// does), so garbage collection sees it as recently written and leaves
    /// it alone for its grace period.
    async fn put(&self, expected: &Digest, len: Option<u64>, body: ByteStream) -> Result<u64>;

    /// Opens a [`Staged`] file in the store's own temporary area, for a
    /// producer that writes a blob itself (reading it back while it
    /// writes) and then publishes it with [`BlobStore::publish_staged`]
    /// without a copy. `None` when the store keeps no local files (object
    /// storage): the producer stages elsewhere ([`Staged::create`]).
    fn stage(&self, algorithm: Algorithm) -> Result<Option<Staged>> {
        let _ = algorithm;
        Ok(None)
    }

    /// Publishes `staged` under `expected`, which must be the digest of
    /// the bytes written to it ([`Error::DigestMismatch`] otherwise,
    /// nothing stored). Returns the size. A store that opened it publishes
    /// the file itself (a rename on a filesystem); by default, the file is
    /// streamed through [`BlobStore::put`] (verified again on its way) and
    /// removed.
    async fn publish_staged(&self, staged: Staged, expected: &Digest) -> Result<u64> {
        publish_staged_by_put(self, staged, expected).await
    }

    /// Starts an upload session labelled `label`.
    async fn upload_create(&self, label: &str) -> Result<UploadInfo>;

    /// State of an upload session; `None` if unknown.
    async fn upload_info(&self, id: &str) -> Result<Option<UploadInfo>>;

    /// Appends `body` to the session. With `start`, the chunk must begin
    /// exactly where the upload ends ([`Error::RangeMismatch`] otherwise);
    /// with `len`, the body must have exactly that many bytes. Returns the
    /// new size.
    async fn upload_append(
        &self,
        id: &str,
        start: Option<u64>,
        len: Option<u64>,
        body: ByteStream,
    ) -> Result<u64>;

    /// Verifies the session's content against `expected` and publishes it as
    /// a blob; the session ends. Returns the blob size. On a digest mismatch
    /// the session is left as it was.
    async fn upload_commit(&self, id: &str, expected: &Digest) -> Result<u64>;

    /// Cancels a session and frees its space. Returns whether it existed.
    async fn upload_cancel(&self, id: &str) -> Result<bool>;

    /// Every open upload session (for cleaning up abandoned ones).
    async fn upload_list(&self) -> Result<Vec<UploadInfo>>;

    /// Aborts the store's incomplete multipart uploads that are older than
    /// `older_than` and that no upload session owns (left by a process
    /// that died between starting one and recording or completing it);
    /// returns how many. Stores without multipart uploads have none.
    /// (No default: a wrapper that forgot to forward it would sweep
    /// nothing without a word.)
    async fn sweep_orphaned_uploads(&self, older_than: Duration) -> Result<usize>;

    /// Whether reads are answered by [`BlobStore::redirect_url`] (known at
    /// construction, so stores that never redirect cost nothing per read).
    fn redirects(&self) -> bool {
        false
    }

    /// A URL the client may fetch the blob from directly (a presigned
    /// object-store URL, when the deployment asks for redirects), or `None`
    /// to serve it through berth, the default. Called only after the
    /// caller was authorised to read the blob and it is known to exist.
    async fn redirect_url(&self, _digest: &Digest) -> Result<Option<String>> {
        Ok(None)
    }

    /// Checks that the storage answers (for the readiness endpoint); by
    /// default by listing one blob.
    async fn probe(&self) -> Result<()> {
        self.list(None, 1).await.map(drop)
    }
}

/// Hashes everything `data` yields with `algorithm` (used to re-derive the
/// digest of an upload whose in-memory hash state was lost, e.g. after a
/// restart).
pub fn hash_reader(algorithm: Algorithm, mut data: impl io::Read) -> io::Result<Digest> {
    let mut h = algorithm.hasher();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = data.read(&mut buf)?;
        if n == 0 {
            return Ok(h.finish());
        }
        h.update(&buf[..n]);
    }
}

/// [`BlobStore::publish_staged`] for a file the store does not own: checks
/// the digest the file was hashed to, then stores it through
/// [`BlobStore::put`].
pub(crate) async fn publish_staged_by_put<S: BlobStore + ?Sized>(
    store: &S,
    staged: Staged,
    expected: &Digest,
) -> Result<u64> {
    let actual = staged.digest();
    if &actual != expected {
        return Err(Error::DigestMismatch {
            expected: expected.clone(),
            actual,
        });
    }
    let len = staged.bytes();
    let file = tokio::fs::File::open(staged.path()).await?;
    let body: ByteStream = Box::pin(tokio_util::io::ReaderStream::with_capacity(file, 1 << 20));
    // `staged` removes the file when it goes, whatever `put` did.
    store.put(expected, Some(len), body).await
}
