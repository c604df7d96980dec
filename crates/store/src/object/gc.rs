//! Garbage collection's two-step deletion on an object store.
//!
//! An object store has no rename, so the filesystem's "move into `gc/`"
//! becomes four requests, and publications look after themselves:
//!
//! * **quarantine**: `PUT gc/D.lock`, `HEAD blobs/D` (its time is the
//!   verdict's), copy `blobs/D` to `gc/D`, delete `blobs/D`, `PUT gc/D.held`.
//!   From then on the blob reads as absent.
//! * **release**: to keep it, copy `gc/D` back unless `blobs/D` exists
//!   again (a new publication, kept); then delete `gc/D`, `gc/D.held` and
//!   the lock last.
//! * **every publication**, once its object is in place, checks the lock.
//!   Without one, a quarantine that starts later reads the fresh time and
//!   keeps the blob. With one, it waits until the quarantine has taken the
//!   blob out of sight (`gc/D.held`) or ended, then makes sure `blobs/D`
//!   exists, copying it back from the quarantined copy or its own source.
//!   Either way the publication's blob survives, whatever the verdict: a
//!   quarantine's delete can only remove a copy published before its lock,
//!   whose owner then sees the lock (or, if the whole quarantine passed
//!   between its write and its check, sees the blob missing).
//!
//! A quarantine left behind by a crash is put back by
//! [`BucketStore::recover_quarantines`] once its lock is old enough that no
//! live collector still holds it.

use std::time::{Duration, SystemTime};

use berth_oci::Digest;
use futures_util::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};

use super::{to_system_time, unavailable, BucketStore};
use crate::{Error, Result, StoredBlob};

/// How long a publication waits for a quarantine to take its blob out of
/// sight before it checks anyway (a quarantine takes a few requests).
const QUARANTINE_WAIT: Duration = Duration::from_secs(30);

/// The keys of one digest's quarantine.
struct Keys {
    blob: Path,
    lock: Path,
    copy: Path,
    held: Path,
}

impl Keys {
    fn new(store: &BucketStore, digest: &Digest) -> Keys {
        let name = format!("gc/{}-{}", digest.algorithm().as_str(), digest.hex());
        Keys {
            blob: store.blob_key(digest),
            lock: store.key(&format!("{name}.lock")),
            copy: store.key(&name),
            held: store.key(&format!("{name}.held")),
        }
    }
}

async fn mark(store: &BucketStore, key: &Path) -> Result<()> {
    store
        .bucket
        .put(key, PutPayload::default())
        .await
        .map(|_| ())
        .map_err(unavailable("write a garbage-collection marker"))
}

pub(super) async fn quarantine(store: &BucketStore, digest: &Digest) -> Result<Option<StoredBlob>> {
    let k = Keys::new(store, digest);
    mark(store, &k.lock).await?;
    let Some((size, modified)) = store.head(&k.blob).await? else {
        store.remove(&k.lock).await?;
        return Ok(None);
    };
    let hidden = async {
        store.copy_object(&k.blob, &k.copy, size).await?;
        store.remove(&k.blob).await?;
        mark(store, &k.held).await
    }
    .await;
    if let Err(e) = hidden {
        // Put back what is there to put back; the error is the answer.
        if let Err(again) = put_back(store, &k).await {
            tracing::warn!(%digest, error = %again, "undoing a failed quarantine failed");
        }
        return Err(e);
    }
    Ok(Some(StoredBlob {
        digest: digest.clone(),
        size,
        modified,
    }))
}

pub(super) async fn release(store: &BucketStore, digest: &Digest, delete: bool) -> Result<()> {
    let k = Keys::new(store, digest);
    if delete {
        store.remove(&k.copy).await?;
        store.remove(&k.held).await?;
        store.remove(&k.lock).await
    } else {
        put_back(store, &k).await
    }
}

/// Restores the quarantined copy unless the blob was published again, and
/// ends the quarantine.
async fn put_back(store: &BucketStore, k: &Keys) -> Result<()> {
    if store.head(&k.blob).await?.is_none() {
        if let Some((size, _)) = store.head(&k.copy).await? {
            store.copy_object(&k.copy, &k.blob, size).await?;
        }
    }
    store.remove(&k.copy).await?;
    store.remove(&k.held).await?;
    store.remove(&k.lock).await
}

/// Makes sure a blob just published under `digest` is still there when a
/// quarantine of the same digest ran meanwhile (see the module docs).
/// `source` is an object holding the same bytes (the session's content),
/// used when the quarantined copy is gone too.
pub(super) async fn after_publish(
    store: &BucketStore,
    digest: &Digest,
    source: Option<(&Path, u64)>,
) -> Result<()> {
    let k = Keys::new(store, digest);
    for _ in 0..3 {
        if store.head(&k.lock).await?.is_some() {
            wait_for_quarantine(store, &k).await?;
        }
        if store.head(&k.blob).await?.is_some() {
            return Ok(());
        }
        tracing::info!(%digest, "garbage collection took a blob while it was published: putting it back");
        let from = match store.head(&k.copy).await? {
            Some((size, _)) => (k.copy.clone(), size),
            None => match source {
                Some((key, size)) => (key.clone(), size),
                None => {
                    return Err(Error::Io(std::io::Error::other(
                        "garbage collection removed the blob while it was being published; \
                         push it again",
                    )))
                }
            },
        };
        match store.copy_object(&from.0, &k.blob, from.1).await {
            Ok(()) => {}
            // The quarantined copy went meanwhile: look again.
            Err(Error::Unavailable { .. }) if store.head(&from.0).await?.is_none() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Waits until the quarantine holding `k.lock` took the blob out of sight
/// or ended.
async fn wait_for_quarantine(store: &BucketStore, k: &Keys) -> Result<()> {
    let deadline = tokio::time::Instant::now() + QUARANTINE_WAIT;
    while tokio::time::Instant::now() < deadline {
        if store.head(&k.held).await?.is_some() || store.head(&k.lock).await?.is_none() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

impl BucketStore {
    /// Puts back the blobs of quarantines whose lock is older than
    /// `older_than` (left by a collector that died between quarantine and
    /// release). Returns how many were ended.
    pub async fn recover_quarantines(&self, older_than: Duration) -> Result<usize> {
        let prefix = self.key("gc");
        let mut listing = self.bucket.list(Some(&prefix));
        let mut stale = Vec::new();
        let now = SystemTime::now();
        while let Some(item) = listing.next().await {
            let meta = item.map_err(unavailable("list quarantines"))?;
            let Some(name) = meta.location.filename() else {
                continue;
            };
            let Some(stem) = name.strip_suffix(".lock") else {
                continue;
            };
            let age = now
                .duration_since(to_system_time(meta.last_modified))
                .unwrap_or_default();
            if age < older_than {
                continue;
            }
            if let Some(d) = stem
                .split_once('-')
                .and_then(|(a, h)| Digest::parse(&format!("{a}:{h}")).ok())
            {
                stale.push(d);
            }
        }
        for d in &stale {
            tracing::info!(digest = %d, "putting back a blob a garbage collection left in quarantine");
            put_back(self, &Keys::new(self, d)).await?;
        }
        Ok(stale.len())
    }
}
