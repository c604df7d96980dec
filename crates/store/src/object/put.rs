//! Writing a stream to one key: a single `PUT` when it fits in a part, a
//! multipart upload otherwise, completed only after the bytes were
//! verified (so nothing partial or unverified ever appears at the key).

use berth_oci::{Digest, Hasher};
use bytes::Bytes;
use futures_util::StreamExt;
use object_store::multipart::PartId;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};

use super::{gc, unavailable, BucketStore};
use crate::{ByteStream, Error, Result};

/// Stores a whole blob under its digest key, verifying digest and length
/// while streaming; the multipart upload is created at the digest key
/// itself and completed (made visible) only once the digest matched, or
/// aborted.
pub(super) async fn put(
    store: &BucketStore,
    expected: &Digest,
    len: Option<u64>,
    body: ByteStream,
) -> Result<u64> {
    let key = store.blob_key(expected);
    let size = stream_to(store, &key, body, Some((expected, len))).await?;
    gc::after_publish(store, expected, None).await?;
    Ok(size)
}

/// Bytes gathered for the next part.
#[derive(Default)]
pub(super) struct Pending {
    chunks: Vec<Bytes>,
    len: usize,
}

impl Pending {
    pub(super) fn push(&mut self, chunk: Bytes) {
        self.len += chunk.len();
        self.chunks.push(chunk);
    }

    /// Puts older bytes in front.
    pub(super) fn prepend(&mut self, older: Vec<Bytes>) {
        self.len += older.iter().map(Bytes::len).sum::<usize>();
        let newer = std::mem::replace(&mut self.chunks, older);
        self.chunks.extend(newer);
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Takes the first `n` bytes (at most what is pending).
    pub(super) fn take(&mut self, n: usize) -> PutPayload {
        let mut out = Vec::new();
        let mut want = n.min(self.len);
        self.len -= want;
        let mut rest = std::mem::take(&mut self.chunks).into_iter();
        while want > 0 {
            let Some(mut chunk) = rest.next() else { break };
            if chunk.len() > want {
                let tail = chunk.split_off(want);
                self.chunks.push(tail);
            }
            want -= chunk.len();
            out.push(chunk);
        }
        self.chunks.extend(rest);
        out.into_iter().collect()
    }

    /// Everything pending.
    pub(super) fn take_all(&mut self) -> PutPayload {
        self.len = 0;
        std::mem::take(&mut self.chunks).into_iter().collect()
    }
}

/// A multipart upload in progress at one key.
struct Multipart {
    id: String,
    parts: Vec<PartId>,
}

/// Streams `body` to `key`. With `check` (digest and optional length) the
/// bytes are hashed as they pass and the object appears only if they
/// match. Returns the number of bytes.
pub(super) async fn stream_to(
    store: &BucketStore,
    key: &Path,
    body: ByteStream,
    check: Option<(&Digest, Option<u64>)>,
) -> Result<u64> {
    let mut upload: Option<Multipart> = None;
    let result = write(store, key, body, check, &mut upload).await;
    if result.is_err() {
        if let Some(m) = upload {
            if let Err(e) = store.bucket.abort_multipart(key, &m.id).await {
                tracing::warn!(error = %e, %key, "aborting a multipart upload failed");
            }
        }
    }
    result
}

async fn write(
    store: &BucketStore,
    key: &Path,
    mut body: ByteStream,
    check: Option<(&Digest, Option<u64>)>,
    upload: &mut Option<Multipart>,
) -> Result<u64> {
    let mut hasher: Option<Hasher> = check.map(|(d, _)| d.algorithm().hasher());
    let limit = check.and_then(|(_, l)| l);
    let mut pending = Pending::default();
    let mut received = 0u64;
    while let Some(item) = body.next().await {
        let chunk = item.map_err(Error::Body)?;
        received += chunk.len() as u64;
        if let Some(l) = limit {
            if received > l {
                return Err(Error::SizeMismatch {
                    expected: l,
                    actual: received,
                });
            }
        }
        if let Some(h) = hasher.as_mut() {
            h.update(&chunk);
        }
        pending.push(chunk);
        loop {
            let index = upload.as_ref().map_or(0, |m| m.parts.len());
            let part_len = store.part_len(index);
            if pending.len() < part_len {
                break;
            }
            if upload.is_none() {
                let id = store
                    .bucket
                    .create_multipart(key)
                    .await
                    .map_err(unavailable("start a multipart upload"))?;
                *upload = Some(Multipart {
                    id,
                    parts: Vec::new(),
                });
            }
            if let Some(m) = upload.as_mut() {
                let part = store
                    .bucket
                    .put_part(key, &m.id, index, pending.take(part_len))
                    .await
                    .map_err(unavailable("upload a part"))?;
                m.parts.push(part);
            }
        }
    }
    if let Some(l) = limit {
        if received != l {
            return Err(Error::SizeMismatch {
                expected: l,
                actual: received,
            });
        }
    }
    if let (Some(h), Some((expected, _))) = (hasher, check) {
        let actual = h.finish();
        if &actual != expected {
            return Err(Error::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
    }
    match upload.take() {
        None => {
            store
                .bucket
                .put(key, pending.take_all())
                .await
                .map_err(unavailable("store a blob"))?;
        }
        Some(mut m) => {
            if pending.len() > 0 {
                let index = m.parts.len();
                let part = store
                    .bucket
                    .put_part(key, &m.id, index, pending.take_all())
                    .await;
                match part {
                    Ok(p) => m.parts.push(p),
                    Err(e) => {
                        *upload = Some(m);
                        return Err(unavailable("upload a part")(e));
                    }
                }
            }
            let id = m.id.clone();
            if let Err(e) = store.bucket.complete_multipart(key, &id, m.parts).await {
                *upload = Some(Multipart {
                    id,
                    parts: Vec::new(),
                });
                return Err(unavailable("complete a multipart upload")(e));
            }
        }
    }
    Ok(received)
}
