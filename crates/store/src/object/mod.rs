//! The object-storage [`BlobStore`]: blobs and upload sessions in an
//! S3-compatible bucket, through the `object_store` crate.
//!
//! Layout under the configured prefix:
//!
//! ```text
//! <prefix>/
//!   blobs/<algorithm>/<first two hex chars>/<hex>  published blobs
//!   uploads/<uuid>/state.json      session state: label, times, size, the
//!                                  multipart upload id with its parts'
//!                                  ETags and sizes, the SHA-256 state, the
//!                                  buffered segments
//!   uploads/<uuid>/seg-<uuid>      bytes received but not yet in a part
//!                                  (a part needs `part_size` bytes; the
//!                                  last part may be smaller)
//!   uploads/<uuid>/data            the completed multipart upload, copied
//!                                  to its digest key at commit
//!   gc/<algorithm>-<hex>.lock      a garbage collection is deciding this blob
//!   gc/<algorithm>-<hex>           the quarantined copy
//!   gc/<algorithm>-<hex>.held      the quarantine took the blob out of sight
//! ```
//!
//! **Sessions live in the bucket**, so any replica serves any request of an
//! upload and an upload survives the death of the replica that started it.
//! Every append reads `state.json`, streams the chunk (hashing it as it
//! comes: [`hash`]), uploads whole parts, stores what is left over as a
//! segment and writes `state.json` back only if it did not change meanwhile
//! (`If-Match` on its ETag). Of two concurrent appends one wins; the other
//! gets [`Error::RangeMismatch`] and its segment is removed. An append that
//! uploads parts first claims the session the same way, so two replicas
//! never upload the same part number.
//!
//! **Publication is atomic**: a blob appears under its digest key by a
//! single `PUT`, a completed multipart upload, or a server-side copy, each
//! only after the digest was verified from the hashing state; nothing is
//! read back to verify (except for a SHA-512 session, whose state is not
//! kept: its bytes are hashed once more at commit).
//!
//! **Garbage collection** (see [`gc`]) cannot rename on an object store, so
//! a quarantine is a lock object, a copy, a delete of the original and a
//! "held" marker; every publication checks the lock afterwards and puts its
//! blob back if a quarantine removed it. The registry's protocol (take the
//! blob out of sight, re-check the metadata, delete or put back) holds.
//!
//! **Failures** of the object store (unreachable, 5xx after retries,
//! refused credentials) are [`Error::Unavailable`]; the server answers 503.
//! A multipart upload created by a replica that died before recording it
//! in `state.json` (or completing it) is aborted by garbage collection once
//! it is older than the upload expiry ([`orphans`]).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use berth_oci::Digest;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::multipart::MultipartStore;
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};

use crate::{BlobBody, BlobRead, BlobStore, ByteStream, Error, Result, StoredBlob, UploadInfo};

mod connect;
mod files;
mod gc;
mod hash;
mod orphans;
mod profile;
mod put;
mod session;

pub use connect::{parse_url, S3Settings, SettingsError};
pub use files::Objects;

/// Blobs up to this size are read into memory in one request.
const SMALL_READ: u64 = 256 * 1024;
/// The default size of a multipart part (S3's minimum is 5 MiB).
pub const DEFAULT_PART_SIZE: usize = 8 << 20;
/// The largest object S3 copies in one request.
const MAX_COPY: u64 = 5 << 30;

/// What the object store must offer: objects, multipart uploads and
/// presigned URLs.
pub trait Backend: ObjectStore + MultipartStore + Signer {}
impl<T: ObjectStore + MultipartStore + Signer> Backend for T {}

/// Blob storage in an object-store bucket.
pub struct BucketStore {
    bucket: Arc<dyn Backend>,
    prefix: String,
    part_size: usize,
    /// Signs the URLs of redirected reads (a client-facing endpoint).
    redirect: Option<(Arc<dyn Backend>, Duration)>,
    /// Lists the bucket's multipart uploads, for the sweep of orphaned
    /// ones (S3 only).
    lister: Option<Arc<orphans::Lister>>,
}

impl BucketStore {
    /// A store over `bucket`, with every key under `prefix` (may be empty).
    pub fn new(bucket: Arc<dyn Backend>, prefix: &str) -> BucketStore {
        BucketStore {
            bucket,
            prefix: prefix.trim_matches('/').to_owned(),
            part_size: DEFAULT_PART_SIZE,
            redirect: None,
            lister: None,
        }
    }

    /// Sets the multipart part size (at least S3's 5 MiB minimum).
    pub fn with_part_size(mut self, bytes: usize) -> BucketStore {
        self.part_size = bytes.max(5 << 20);
        self
    }

    /// Answers blob reads with URLs signed by `signer` (whose endpoint is
    /// the one clients reach), valid for `ttl`.
    pub fn with_redirects(mut self, signer: Arc<dyn Backend>, ttl: Duration) -> BucketStore {
        self.redirect = Some((signer, ttl));
        self
    }

    fn key(&self, rest: &str) -> Path {
        if self.prefix.is_empty() {
            Path::from(rest)
        } else {
            Path::from(format!("{}/{rest}", self.prefix))
        }
    }

    /// Where a blob lives.
    fn blob_key(&self, digest: &Digest) -> Path {
        let hex = digest.hex();
        self.key(&format!(
            "blobs/{}/{}/{hex}",
            digest.algorithm().as_str(),
            &hex[..2]
        ))
    }

    /// The digest a blob key stands for.
    fn digest_of(&self, key: &Path) -> Option<Digest> {
        let mut parts = key.as_ref().rsplit('/');
        let hex = parts.next()?;
        let _fan = parts.next()?;
        let algorithm = parts.next()?;
        Digest::parse(&format!("{algorithm}:{hex}")).ok()
    }

    /// Part size for part number `index` (0-based): grows by the base
    /// size every 1000 parts, so the 10,000-part limit allows some 400 GiB.
    fn part_len(&self, index: usize) -> usize {
        self.part_size * (1 + index / 1000)
    }

    /// Copies an object server-side (streaming it through for objects
    /// over S3's single-copy limit).
    async fn copy_object(&self, from: &Path, to: &Path, size: u64) -> Result<()> {
        if size <= MAX_COPY {
            return self
                .bucket
                .copy(from, to)
                .await
                .map_err(unavailable("copy"));
        }
        let read = self
            .bucket
            .get(from)
            .await
            .map_err(unavailable("read for copy"))?;
        let body: ByteStream = Box::pin(
            read.into_stream()
                .map_err(|e| std::io::Error::other(e.to_string())),
        );
        put::stream_to(self, to, body, None).await.map(|_| ())
    }

    /// Size and modification time of an object, `None` if absent.
    async fn head(&self, key: &Path) -> Result<Option<(u64, SystemTime)>> {
        match self.bucket.head(key).await {
            Ok(meta) => Ok(Some((meta.size, to_system_time(meta.last_modified)))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(unavailable("stat")(e)),
        }
    }

    /// Deletes an object; absent is fine.
    async fn remove(&self, key: &Path) -> Result<()> {
        match self.bucket.delete(key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(unavailable("delete")(e)),
        }
    }
}

/// Modification times in whole seconds: what S3 reports in `HEAD` (its
/// listings may say more), so both agree.
fn to_system_time(t: chrono::DateTime<chrono::Utc>) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(t.timestamp().max(0) as u64)
}

/// Maps an object-store failure of `what` to [`Error::Unavailable`],
/// logging its details (which never include credentials).
fn unavailable(what: &'static str) -> impl Fn(object_store::Error) -> Error {
    move |e| {
        tracing::warn!(operation = what, error = %e, "object store request failed");
        Error::Unavailable {
            what,
            source: Box::new(e),
        }
    }
}

#[async_trait]
impl BlobStore for BucketStore {
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        Ok(self.head(&self.blob_key(digest)).await?.map(|(s, _)| s))
    }

    async fn read(&self, digest: &Digest, range: Option<(u64, u64)>) -> Result<Option<BlobRead>> {
        let key = self.blob_key(digest);
        let options = GetOptions {
            range: range.map(|(offset, len)| GetRange::Bounded(offset..offset + len)),
            ..GetOptions::default()
        };
        let got = match range {
            // An empty range of an object: nothing to fetch but its presence.
            Some((_, 0)) => {
                return Ok(self.head(&key).await?.map(|_| BlobRead {
                    len: 0,
                    body: BlobBody::Bytes(Bytes::new()),
                }))
            }
            _ => match self.bucket.get_opts(&key, options).await {
                Ok(got) => got,
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(unavailable("read")(e)),
            },
        };
        let len = got.range.end - got.range.start;
        if len <= SMALL_READ {
            let bytes = got.bytes().await.map_err(unavailable("read"))?;
            return Ok(Some(BlobRead {
                len,
                body: BlobBody::Bytes(bytes),
            }));
        }
        let stream = got
            .into_stream()
            .map_err(|e| std::io::Error::other(e.to_string()));
        Ok(Some(BlobRead {
            len,
            body: BlobBody::Stream(Box::pin(stream)),
        }))
    }

    async fn delete(&self, digest: &Digest) -> Result<bool> {
        let key = self.blob_key(digest);
        if self.head(&key).await?.is_none() {
            return Ok(false);
        }
        self.remove(&key).await?;
        Ok(true)
    }

    async fn list(&self, after: Option<&Digest>, limit: usize) -> Result<Vec<StoredBlob>> {
        let prefix = self.key("blobs");
        let mut listing = match after {
            Some(d) => self
                .bucket
                .list_with_offset(Some(&prefix), &self.blob_key(d)),
            None => self.bucket.list(Some(&prefix)),
        };
        let mut out = Vec::new();
        while out.len() < limit {
            let Some(item) = listing.next().await else {
                break;
            };
            let meta = item.map_err(unavailable("list"))?;
            // Keys that are not blobs (none are written there) are skipped.
            let Some(digest) = self.digest_of(&meta.location) else {
                continue;
            };
            if self.blob_key(&digest) != meta.location {
                continue;
            }
            out.push(StoredBlob {
                digest,
                size: meta.size,
                modified: to_system_time(meta.last_modified),
            });
        }
        Ok(out)
    }

    async fn quarantine(&self, digest: &Digest) -> Result<Option<StoredBlob>> {
        gc::quarantine(self, digest).await
    }

    async fn set_aside(&self, digest: &Digest) -> Result<Option<String>> {
        let key = self.blob_key(digest);
        let Some((size, _)) = self.head(&key).await? else {
            return Ok(None);
        };
        let aside = self.key(&format!(
            "corrupt/{}-{}-{}",
            digest.algorithm().as_str(),
            digest.hex(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0)
        ));
        self.copy_object(&key, &aside, size).await?;
        self.remove(&key).await?;
        Ok(Some(aside.to_string()))
    }

    async fn release(&self, digest: &Digest, delete: bool) -> Result<()> {
        gc::release(self, digest, delete).await
    }

    async fn put(&self, expected: &Digest, len: Option<u64>, body: ByteStream) -> Result<u64> {
        put::put(self, expected, len, body).await
    }

    async fn upload_create(&self, label: &str) -> Result<UploadInfo> {
        session::create(self, label).await
    }

    async fn upload_info(&self, id: &str) -> Result<Option<UploadInfo>> {
        session::info(self, id).await
    }

    async fn upload_append(
        &self,
        id: &str,
        start: Option<u64>,
        len: Option<u64>,
        body: ByteStream,
    ) -> Result<u64> {
        session::append(self, id, start, len, body).await
    }

    async fn upload_commit(&self, id: &str, expected: &Digest) -> Result<u64> {
        session::commit(self, id, expected).await
    }

    async fn upload_cancel(&self, id: &str) -> Result<bool> {
        session::cancel(self, id).await
    }

    async fn upload_list(&self) -> Result<Vec<UploadInfo>> {
        session::list(self).await
    }

    async fn sweep_orphaned_uploads(&self, older_than: Duration) -> Result<usize> {
        orphans::sweep(self, older_than).await
    }

    fn redirects(&self) -> bool {
        self.redirect.is_some()
    }

    async fn probe(&self) -> Result<()> {
        self.check().await
    }

    async fn redirect_url(&self, digest: &Digest) -> Result<Option<String>> {
        let Some((signer, ttl)) = &self.redirect else {
            return Ok(None);
        };
        let url = signer
            .signed_url(http::Method::GET, &self.blob_key(digest), *ttl)
            .await
            .map_err(unavailable("sign a download URL"))?;
        Ok(Some(url.to_string()))
    }
}
