//! The filesystem [`BlobStore`].
//!
//! On-disk layout under the root directory:
//!
//! ```text
//! <root>/
//!   blobs/<algorithm>/<first two hex chars>/<hex>   published blobs, read-only
//!   uploads/<uuid>/data                             bytes received so far
//!   uploads/<uuid>/info.json                        {"label": ..., "started_at_ms": ...}
//!   tmp/<uuid>                                      single-request uploads in flight
//!   tmp/<uuid>.part                                 blobs staged by their producer (`stage`)
//!   gc/<algorithm>-<hex>                            blobs quarantined by a GC run
//!   corrupt/<algorithm>-<hex>-<ms>                  damaged blobs set aside by the scrub
//! ```
//!
//! A blob is published by `fsync(file)`, `rename(file, blobs/...)` and
//! `fsync(directory)`: readers never see a partial blob and an acknowledged
//! blob survives a power cut. The hash state of an upload lives in memory; if
//! it is lost (restart), the digest is recomputed from `data` at commit time,
//! so sessions survive restarts.
//!
//! Creating a session is not fsynced: it survives a restart of the process
//! (the page cache does), and after a power cut a session that vanished or
//! whose `info.json` was torn reads as unknown, so the client starts the
//! upload again (the next purge removes what is left). Only what is acknowledged as stored (a published blob) is
//! made durable before the answer.
//!
//! A store one process serves keeps a session in memory until its first
//! byte ([`FsStore::fresh_sessions_in_memory`]): the `POST` + `PUT` of most
//! pushes then creates and removes no session directory at all.
//!
//! Garbage collection deletes a blob in two steps so that a concurrent
//! re-push of the same digest can never lose it: the blob is first renamed
//! into `gc/` ([`BlobStore::quarantine`]), the collector re-checks that
//! nothing wants it, then deletes it or renames it back
//! ([`BlobStore::release`]). Publishing a digest that already exists
//! refreshes the file's modification time instead of replacing it; if the
//! file is in quarantine at that moment the publication finds no file and
//! renames its own copy into place. Quarantined files left by a crash are
//! put back by [`FsStore::open`].

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use berth_oci::{Algorithm, Digest};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::task::spawn_blocking;

use crate::pipeline::{append_stream, hash_of, hash_ready, write_stream, HashLink, Writeback};
use crate::{
    hash_reader, BlobBody, BlobRead, BlobStore, ByteStream, Error, Result, Staged, StoredBlob,
    UploadInfo,
};

/// Blobs up to this size are read into memory in one call instead of streamed.
const SMALL_READ: u64 = 256 * 1024;
/// Read size when streaming a blob.
const STREAM_CHUNK: usize = 256 * 1024;

/// A file in `tmp/` not written to for this long is a leftover, also where
/// replicas share the directory (an upload in flight writes all along, and
/// a stalled one is closed by the listener long before).
pub const SHARED_TMP_LEFTOVER: Duration = Duration::from_secs(3600);

/// Removes the files of `dir` (those last modified before `cutoff`, if
/// given); returns how many.
fn remove_tmp_files(dir: &Path, cutoff: Option<SystemTime>) -> Result<usize> {
    let mut removed = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(cutoff) = cutoff {
            match entry.metadata().and_then(|m| m.modified()) {
                Ok(modified) if modified < cutoff => {}
                _ => continue,
            }
        }
        if fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
}

/// Sessions kept in memory at most (see [`FsStore::fresh_sessions_in_memory`]);
/// past it, new sessions are created on disk at once.
const FRESH_SESSIONS_MAX: usize = 65_536;

/// Blob storage in a local directory.
pub struct FsStore {
    root: PathBuf,
    hash_states: Mutex<HashMap<String, Arc<tokio::sync::Mutex<HashState>>>>,
    /// Upload sessions that hold no byte yet, in memory only; `None` when
    /// every session is created on disk at once.
    fresh: Option<Mutex<HashMap<String, InfoFile>>>,
}

#[derive(Default)]
struct HashState {
    /// SHA-256 state over the first `hashed` bytes of the upload, perhaps
    /// still being computed behind the last chunk's writes.
    hash: Option<HashLink>,
    hashed: u64,
    /// Writeback of the session's data, started by its chunks and still
    /// running: the commit waits for it (and reports its errors).
    writeback: Writeback,
}

#[derive(Clone, Serialize, Deserialize)]
struct InfoFile {
    label: String,
    started_at_ms: u64,
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    spawn_blocking(f)
        .await
        .map_err(|e| Error::Io(io::Error::other(e.to_string())))?
}

fn valid_upload_id(id: &str) -> bool {
    id.len() == 36 && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn not_found_is_none<T>(r: io::Result<T>) -> Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

impl FsStore {
    /// Opens (creating if needed) a store rooted at `root`, and removes
    /// leftovers of single-request uploads interrupted by a crash: every
    /// file in `tmp/` (no other process writes there), or with `shared`
    /// (replicas on one data directory) only those not written to for
    /// [`SHARED_TMP_LEFTOVER`], since the others are another replica's
    /// uploads in flight.
    pub fn open_with(root: impl Into<PathBuf>, shared: bool) -> Result<FsStore> {
        let root = root.into();
        for d in ["blobs", "uploads", "tmp", "gc"] {
            fs::create_dir_all(root.join(d))?;
        }
        let cutoff = shared.then(|| SystemTime::now() - SHARED_TMP_LEFTOVER);
        remove_tmp_files(&root.join("tmp"), cutoff)?;
        let store = FsStore {
            root,
            hash_states: Mutex::new(HashMap::new()),
            fresh: None,
        };
        // A GC run interrupted between quarantine and release: put the
        // blobs back (the next run decides again).
        for entry in fs::read_dir(store.root.join("gc"))? {
            let entry = entry?;
            let name = entry.file_name();
            let digest = name
                .to_str()
                .and_then(|n| n.split_once('-'))
                .and_then(|(a, h)| Digest::parse(&format!("{a}:{h}")).ok());
            match digest {
                Some(d) => restore(&entry.path(), &store.blob_path(&d))?,
                None => fs::remove_file(entry.path())?,
            }
        }
        Ok(store)
    }

    /// [`FsStore::open_with`] for a store no other process writes to.
    pub fn open(root: impl Into<PathBuf>) -> Result<FsStore> {
        FsStore::open_with(root, false)
    }

    /// Opens an existing store without touching anything in it: no
    /// leftover cleanup, no quarantine put back. For another process that
    /// reads a store a running server owns (`berth backup`, which must
    /// not remove that server's in-flight uploads).
    pub fn attach(root: impl Into<PathBuf>) -> Result<FsStore> {
        let root = root.into();
        if !root.join("blobs").is_dir() {
            return Err(Error::Io(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} holds no blobs/ directory", root.display()),
            )));
        }
        Ok(FsStore {
            root,
            hash_states: Mutex::new(HashMap::new()),
            fresh: None,
        })
    }

    /// Keeps an upload session in memory until its first byte: the `POST`
    /// of a push then writes nothing, and the `PUT` that carries the whole
    /// blob (what docker, containerd and most clients send) removes
    /// nothing. Only for a store one process serves: a session in memory is
    /// unknown to another replica sharing the directory, and a restart
    /// forgets it (the client's next request on it is answered
    /// `BLOB_UPLOAD_UNKNOWN`, and it starts again: it had sent nothing).
    pub fn fresh_sessions_in_memory(mut self) -> FsStore {
        self.fresh = Some(Mutex::new(HashMap::new()));
        self
    }

    fn fresh_session(&self, id: &str) -> Option<InfoFile> {
        let fresh = self.fresh.as_ref()?;
        let map = fresh.lock().unwrap_or_else(|p| p.into_inner());
        map.get(id).cloned()
    }

    fn forget_fresh_session(&self, id: &str) -> bool {
        let Some(fresh) = self.fresh.as_ref() else {
            return false;
        };
        let mut map = fresh.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(id).is_some()
    }

    /// Writes a session kept in memory to disk (before its first byte),
    /// then forgets it in memory: it is known all along. The caller holds
    /// the session's lock.
    async fn materialize(&self, id: &str) -> Result<()> {
        let Some(info) = self.fresh_session(id) else {
            return Ok(());
        };
        create_session(self.upload_dir(id), &info).await?;
        self.forget_fresh_session(id);
        Ok(())
    }

    /// Where [`BlobStore::set_aside`] moves damaged blobs.
    fn corrupt_dir(&self) -> PathBuf {
        self.root.join("corrupt")
    }

    /// Where a quarantined blob waits for its verdict.
    fn quarantine_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("gc")
            .join(format!("{}-{}", digest.algorithm().as_str(), digest.hex()))
    }

    /// Where a blob lives.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.root
            .join("blobs")
            .join(digest.algorithm().as_str())
            .join(&hex[..2])
            .join(hex)
    }

    fn upload_dir(&self, id: &str) -> PathBuf {
        self.root.join("uploads").join(id)
    }

    fn hash_state(&self, id: &str) -> Arc<tokio::sync::Mutex<HashState>> {
        let mut map = self.hash_states.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(id.to_owned()).or_default().clone()
    }

    fn forget_hash_state(&self, id: &str) {
        let mut map = self.hash_states.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(id);
    }
}

/// Makes `file` (at `from`) durable and moves it to `to` atomically.
fn publish(file: &File, from: &Path, to: &Path) -> Result<()> {
    // Same digest, same bytes: keep the published copy, but mark it as
    // freshly written so that garbage collection leaves it alone.
    if touch(to)? {
        fs::remove_file(from)?;
        return Ok(());
    }
    // Published now: garbage collection measures its grace period from
    // here, not from when the bytes were written.
    file.set_modified(SystemTime::now())?;
    file.sync_data()?;
    let parent = to
        .parent()
        .ok_or_else(|| Error::Io(io::Error::other("blob path has no parent")))?;
    if !parent.exists() {
        fs::create_dir_all(parent)?;
        if let Some(grand) = parent.parent() {
            sync_dir(grand)?;
        }
    }
    fs::rename(from, to)?;
    sync_dir(parent)?;
    Ok(())
}

/// Sets the modification time of `path` to now. Returns `false` if there is
/// no such file, or if it was moved away (quarantined by garbage
/// collection) before the new time was visible at `path`: the caller then
/// publishes its own copy.
fn touch(path: &Path) -> Result<bool> {
    let Some(file) = not_found_is_none(File::open(path))? else {
        return Ok(false);
    };
    file.set_modified(SystemTime::now())?;
    // Still there after the update: a quarantine from now on sees the new
    // time and puts the file back.
    let Some(here) = not_found_is_none(fs::metadata(path))? else {
        return Ok(false);
    };
    Ok(same_file(&file.metadata()?, &here))
}

#[cfg(unix)]
fn same_file(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    (a.dev(), a.ino()) == (b.dev(), b.ino())
}

#[cfg(not(unix))]
fn same_file(_: &fs::Metadata, _: &fs::Metadata) -> bool {
    true
}

/// Puts a quarantined blob back at `to`, unless a new copy was published
/// there meanwhile.
fn restore(from: &Path, to: &Path) -> Result<()> {
    if to.exists() {
        fs::remove_file(from)?;
        return Ok(());
    }
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent)?;
    }
    // A publication racing with us renames an identical file over the
    // same path: either order leaves one complete copy.
    fs::rename(from, to)?;
    Ok(())
}

/// Creates a session's directory, its empty `data` and its `info.json`.
async fn create_session(dir: PathBuf, info: &InfoFile) -> Result<()> {
    let json = serde_json::to_vec(info).map_err(|e| Error::Io(io::Error::other(e)))?;
    // No fsync: see the module documentation.
    blocking(move || {
        fs::create_dir(&dir)?;
        File::create(dir.join("data"))?;
        fs::write(dir.join("info.json"), &json)?;
        Ok(())
    })
    .await
}

impl InfoFile {
    fn started_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.started_at_ms)
    }

    /// What a session that holds no byte yet is.
    fn empty_session(&self, id: &str) -> UploadInfo {
        UploadInfo {
            id: id.to_owned(),
            label: self.label.clone(),
            size: 0,
            started_at: self.started_at(),
            updated_at: self.started_at(),
        }
    }
}

fn read_info(dir: &Path, id: &str) -> Result<Option<UploadInfo>> {
    let Some(raw) = not_found_is_none(fs::read(dir.join("info.json")))? else {
        return Ok(None);
    };
    // A torn file (power cut right after creation) belongs to no repository
    // and dates from the epoch: clients see an unknown session, and the next
    // purge removes it.
    let info = serde_json::from_slice::<InfoFile>(&raw).unwrap_or(InfoFile {
        label: String::new(),
        started_at_ms: 0,
    });
    let Some(meta) = not_found_is_none(fs::metadata(dir.join("data")))? else {
        return Ok(None);
    };
    Ok(Some(UploadInfo {
        id: id.to_owned(),
        label: info.label,
        size: meta.len(),
        started_at: UNIX_EPOCH + Duration::from_millis(info.started_at_ms),
        updated_at: meta.modified()?,
    }))
}

#[async_trait]
impl BlobStore for FsStore {
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        let path = self.blob_path(digest);
        Ok(not_found_is_none(tokio::fs::metadata(path).await)?.map(|m| m.len()))
    }

    async fn read(&self, digest: &Digest, range: Option<(u64, u64)>) -> Result<Option<BlobRead>> {
        let path = self.blob_path(digest);
        blocking(move || {
            let Some(mut file) = not_found_is_none(File::open(&path))? else {
                return Ok(None);
            };
            let size = file.metadata()?.len();
            let (offset, len) = range.unwrap_or((0, size));
            if offset.saturating_add(len) > size {
                return Err(Error::Io(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "range beyond the end of the blob",
                )));
            }
            if len <= SMALL_READ {
                let mut buf = vec![0u8; len as usize];
                file.seek(SeekFrom::Start(offset))?;
                file.read_exact(&mut buf)?;
                return Ok(Some(BlobRead {
                    len,
                    body: BlobBody::Bytes(Bytes::from(buf)),
                }));
            }
            let stream = chunk_stream(file, offset, len);
            Ok(Some(BlobRead {
                len,
                body: BlobBody::Stream(stream),
            }))
        })
        .await
    }

    async fn delete(&self, digest: &Digest) -> Result<bool> {
        let path = self.blob_path(digest);
        Ok(not_found_is_none(tokio::fs::remove_file(path).await)?.is_some())
    }

    async fn list(&self, after: Option<&Digest>, limit: usize) -> Result<Vec<StoredBlob>> {
        let root = self.root.join("blobs");
        let after = after.map(|d| d.as_str().to_owned()).unwrap_or_default();
        blocking(move || {
            let mut out = Vec::new();
            // Digest order: algorithm, then the two-character prefix
            // directory, then the name; one directory is read at a time.
            for algo in [Algorithm::Sha256, Algorithm::Sha512] {
                let a = algo.as_str();
                if after.as_str() > format!("{a};").as_str() {
                    continue;
                }
                let Some(dirs) = not_found_is_none(fs::read_dir(root.join(a)))? else {
                    continue;
                };
                let mut prefixes: Vec<String> = dirs
                    .filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .collect();
                prefixes.sort();
                for prefix in prefixes {
                    // Every digest in this directory sorts before `after`
                    // when `after` starts with a greater prefix. (Comparing
                    // with a sentinel such as "ab;" would be wrong: ';'
                    // sorts between the digits and the letters.)
                    let dir = format!("{a}:{prefix}");
                    if after.get(..dir.len()).is_some_and(|p| p > dir.as_str()) {
                        continue;
                    }
                    let mut names: Vec<String> = fs::read_dir(root.join(a).join(&prefix))?
                        .filter_map(|e| e.ok()?.file_name().into_string().ok())
                        .map(|n| format!("{a}:{n}"))
                        .filter(|d| *d > after)
                        .collect();
                    names.sort();
                    for name in names {
                        if out.len() >= limit {
                            return Ok(out);
                        }
                        let Ok(digest) = Digest::parse(&name) else {
                            continue;
                        };
                        let Some(meta) = not_found_is_none(fs::metadata(
                            root.join(a).join(&prefix).join(digest.hex()),
                        ))?
                        else {
                            continue;
                        };
                        out.push(StoredBlob {
                            digest,
                            size: meta.len(),
                            modified: meta.modified()?,
                        });
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    async fn set_aside(&self, digest: &Digest) -> Result<Option<String>> {
        let from = self.blob_path(digest);
        let dir = self.corrupt_dir();
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let to = dir.join(format!(
            "{}-{}-{stamp}",
            digest.algorithm().as_str(),
            digest.hex()
        ));
        blocking(move || {
            fs::create_dir_all(&dir)?;
            match fs::rename(&from, &to) {
                Ok(()) => {
                    if let Some(parent) = from.parent() {
                        sync_dir(parent)?;
                    }
                    sync_dir(&dir)?;
                    Ok(Some(to.display().to_string()))
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    async fn quarantine(&self, digest: &Digest) -> Result<Option<StoredBlob>> {
        let (from, to) = (self.blob_path(digest), self.quarantine_path(digest));
        let digest = digest.clone();
        blocking(move || {
            if not_found_is_none(fs::rename(&from, &to))?.is_none() {
                return Ok(None);
            }
            let meta = fs::metadata(&to)?;
            Ok(Some(StoredBlob {
                digest,
                size: meta.len(),
                modified: meta.modified()?,
            }))
        })
        .await
    }

    async fn release(&self, digest: &Digest, delete: bool) -> Result<()> {
        let (from, to) = (self.quarantine_path(digest), self.blob_path(digest));
        blocking(move || {
            if delete {
                not_found_is_none(fs::remove_file(&from))?;
                Ok(())
            } else {
                restore(&from, &to)
            }
        })
        .await
    }

    async fn put(&self, expected: &Digest, len: Option<u64>, body: ByteStream) -> Result<u64> {
        let tmp = self.root.join("tmp").join(uuid::Uuid::new_v4().to_string());
        let file = File::create(&tmp)?;
        let result = async {
            let written =
                write_stream(file, Some(expected.algorithm().hasher()), len, body).await?;
            let actual = written
                .hasher
                .ok_or_else(|| Error::Io(io::Error::other("hash state lost")))?
                .finish();
            if &actual != expected {
                return Err(Error::DigestMismatch {
                    expected: expected.clone(),
                    actual,
                });
            }
            let to = self.blob_path(expected);
            let (file, from) = (written.file, tmp.clone());
            blocking(move || publish(&file, &from, &to)).await?;
            Ok(written.bytes)
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result
    }

    /// A file in `tmp/`, on the blobs' filesystem (removed at the next
    /// start if a crash leaves it).
    fn stage(&self, algorithm: Algorithm) -> Result<Option<Staged>> {
        let dir = self.root.join("tmp");
        Ok(Some(Staged::create_in(&dir, algorithm, Some(dir.clone()))?))
    }

    /// Renamed into place when this store opened it: its data synced
    /// (one `fdatasync`, most of it written back while it was written),
    /// renamed, the directory synced. Nothing is read back: the digest is
    /// the one [`Staged`] computed over every byte it wrote.
    async fn publish_staged(&self, mut staged: Staged, expected: &Digest) -> Result<u64> {
        if staged.home.as_deref() != Some(self.root.join("tmp").as_path()) {
            return crate::publish_staged_by_put(self, staged, expected).await;
        }
        let actual = staged.digest();
        if &actual != expected {
            return Err(Error::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        let to = self.blob_path(expected);
        let size = staged.bytes();
        blocking(move || {
            let (file, from) = staged.finish()?;
            publish(file, &from, &to)?;
            staged.keep();
            Ok(size)
        })
        .await
    }

    async fn upload_create(&self, label: &str) -> Result<UploadInfo> {
        let id = uuid::Uuid::new_v4().to_string();
        let info = InfoFile {
            label: label.to_owned(),
            started_at_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
        };
        if let Some(fresh) = &self.fresh {
            let mut map = fresh.lock().unwrap_or_else(|p| p.into_inner());
            if map.len() < FRESH_SESSIONS_MAX {
                map.insert(id.clone(), info.clone());
                return Ok(info.empty_session(&id));
            }
        }
        create_session(self.upload_dir(&id), &info).await?;
        Ok(info.empty_session(&id))
    }

    async fn upload_info(&self, id: &str) -> Result<Option<UploadInfo>> {
        if !valid_upload_id(id) {
            return Ok(None);
        }
        if let Some(info) = self.fresh_session(id) {
            return Ok(Some(info.empty_session(id)));
        }
        let dir = self.upload_dir(id);
        let id = id.to_owned();
        blocking(move || read_info(&dir, &id)).await
    }

    async fn upload_append(
        &self,
        id: &str,
        start: Option<u64>,
        len: Option<u64>,
        body: ByteStream,
    ) -> Result<u64> {
        if !valid_upload_id(id) {
            return Err(Error::UploadUnknown);
        }
        let state = self.hash_state(id);
        let mut state = state.lock().await;
        self.materialize(id).await?;
        let path = self.upload_dir(id).join("data");
        let file = match OpenOptions::new().append(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                drop(state);
                self.forget_hash_state(id);
                return Err(Error::UploadUnknown);
            }
            Err(e) => return Err(e.into()),
        };
        let size = file.metadata()?.len();
        if let Some(start) = start {
            if start != size {
                return Err(Error::RangeMismatch { start, size });
            }
        }
        let hash = match state.hash.take() {
            Some(link) if state.hashed == size => link,
            _ => hash_ready((size == 0).then(|| Algorithm::Sha256.hasher())),
        };
        let writeback = std::mem::take(&mut state.writeback);
        let (written, hash, writeback) = append_stream(file, hash, writeback, len, body).await;
        state.writeback = writeback;
        match written {
            Ok(written) => {
                state.hash = Some(hash);
                state.hashed = size + written.bytes;
                Ok(size + written.bytes)
            }
            Err(e) => {
                // What was written is in the file, but not known to be in
                // the hash: the commit hashes the file.
                state.hash = None;
                state.hashed = 0;
                Err(e)
            }
        }
    }

    async fn upload_commit(&self, id: &str, expected: &Digest) -> Result<u64> {
        if !valid_upload_id(id) {
            return Err(Error::UploadUnknown);
        }
        let state_arc = self.hash_state(id);
        let mut state = state_arc.lock().await;
        self.materialize(id).await?;
        let dir = self.upload_dir(id);
        let data = dir.join("data");
        let Some(meta) = not_found_is_none(fs::metadata(&data))? else {
            drop(state);
            self.forget_hash_state(id);
            return Err(Error::UploadUnknown);
        };
        let size = meta.len();
        let hasher = match state.hash.take() {
            Some(link) if state.hashed == size => hash_of(link).await,
            _ => None,
        };
        // Kept as it is for a commit with another digest, if this one fails.
        state.hash = Some(hash_ready(hasher.clone()));
        let cached = match hasher {
            Some(h) if h.algorithm() == expected.algorithm() => Some(h.finish()),
            _ => None,
        };
        let algorithm = expected.algorithm();
        let path = data.clone();
        let actual = match cached {
            Some(d) => d,
            None => blocking(move || Ok(hash_reader(algorithm, File::open(&path)?)?)).await?,
        };
        if &actual != expected {
            return Err(Error::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        let to = self.blob_path(expected);
        let writeback = std::mem::take(&mut state.writeback);
        blocking(move || {
            // The chunks' writeback first: an error it saw is this blob's.
            writeback.finish()?;
            let file = File::open(&data)?;
            publish(&file, &data, &to)?;
            fs::remove_dir_all(&dir)?;
            Ok(())
        })
        .await?;
        state.hash = None;
        drop(state);
        self.forget_hash_state(id);
        Ok(size)
    }

    async fn upload_cancel(&self, id: &str) -> Result<bool> {
        if !valid_upload_id(id) {
            return Ok(false);
        }
        let state_arc = self.hash_state(id);
        let held = state_arc.lock().await;
        // Under the session's lock: a chunk writing it to disk is done first.
        if self.forget_fresh_session(id) {
            drop(held);
            self.forget_hash_state(id);
            return Ok(true);
        }
        let dir = self.upload_dir(id);
        let existed = not_found_is_none(tokio::fs::remove_dir_all(dir).await)?.is_some();
        self.forget_hash_state(id);
        Ok(existed)
    }

    /// The store's directories are there and are directories (a blob
    /// listing would walk them).
    async fn probe(&self) -> Result<()> {
        let root = self.root.clone();
        blocking(move || {
            for d in ["blobs", "uploads", "tmp"] {
                let path = root.join(d);
                if !fs::metadata(&path)?.is_dir() {
                    return Err(
                        io::Error::other(format!("{} is not a directory", path.display())).into(),
                    );
                }
            }
            Ok(())
        })
        .await
    }

    /// A directory has no multipart uploads (an abandoned session is a
    /// directory under `uploads/`, which the upload purge removes); what a
    /// process that died mid-push leaves is a file in `tmp/`. Those not
    /// written to for `older_than` are removed (where replicas share the
    /// directory, a replica's restart leaves the younger ones to this).
    async fn sweep_orphaned_uploads(&self, older_than: std::time::Duration) -> Result<usize> {
        let dir = self.root.join("tmp");
        let cutoff = SystemTime::now() - older_than.max(SHARED_TMP_LEFTOVER);
        blocking(move || remove_tmp_files(&dir, Some(cutoff))).await
    }

    async fn upload_list(&self) -> Result<Vec<UploadInfo>> {
        let root = self.root.join("uploads");
        // Read before the directory: a session is in memory until it is on
        // disk, so one written to disk meanwhile is listed once or twice
        // (never not at all), and the twice is removed below.
        let fresh: Vec<UploadInfo> = match &self.fresh {
            Some(fresh) => {
                let map = fresh.lock().unwrap_or_else(|p| p.into_inner());
                map.iter()
                    .map(|(id, info)| info.empty_session(id))
                    .collect()
            }
            None => Vec::new(),
        };
        let mut on_disk = blocking(move || {
            let mut out = Vec::new();
            for entry in fs::read_dir(&root)? {
                let entry = entry?;
                let Some(id) = entry.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                if !valid_upload_id(&id) {
                    continue;
                }
                if let Some(info) = read_info(&entry.path(), &id)? {
                    out.push(info);
                }
            }
            Ok(out)
        })
        .await?;
        let listed: std::collections::HashSet<String> =
            on_disk.iter().map(|u| u.id.clone()).collect();
        on_disk.extend(fresh.into_iter().filter(|u| !listed.contains(&u.id)));
        Ok(on_disk)
    }
}

/// Streams `len` bytes of `file` from `offset` in [`STREAM_CHUNK`] pieces,
/// each read by one positioned read on the blocking pool into a fresh
/// buffer that is handed to the response as is. Only the chunk being sent
/// is in memory, whatever the blob's size (no intermediate copy buffer).
fn chunk_stream(file: File, offset: u64, len: u64) -> ByteStream {
    let state = Some((Arc::new(file), offset, offset + len));
    Box::pin(futures_util::stream::unfold(state, |state| async move {
        let (file, pos, end) = state?;
        if pos >= end {
            return None;
        }
        let want = (end - pos).min(STREAM_CHUNK as u64) as usize;
        let reader = file.clone();
        // Allocated here, on a runtime worker, rather than on the blocking
        // thread: buffers then come from the few worker-thread arenas of the
        // allocator instead of one arena per blocking thread, which keeps
        // the peak RSS of many concurrent pulls down.
        let mut buf = vec![0u8; want];
        let read = spawn_blocking(move || {
            read_exact_at(&reader, &mut buf, pos).map(|()| Bytes::from(buf))
        })
        .await
        .map_err(|e| io::Error::other(e.to_string()))
        .and_then(|r| r);
        match read {
            Ok(chunk) => Some((Ok(chunk), Some((file, pos + want as u64, end)))),
            Err(e) => Some((Err(e), None)),
        }
    }))
}

#[cfg(unix)]
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(not(unix))]
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    let mut f = file;
    f.seek(SeekFrom::Start(offset))?;
    f.read_exact(buf)
}
