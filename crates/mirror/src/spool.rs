//! Blobs fetched from an upstream, streamed to every client asking while
//! they arrive.
//!
//! The first miss of a blob starts one download (a task of its own, so a
//! client hanging up does not end it for the others). Its bytes are
//! gathered into pieces of about [`BATCH`] (a piece is handed on as soon
//! as the upstream has nothing more ready, so a slow upstream's bytes are
//! not held back) and written by one blocking writer thread, which hashes
//! them on the way, into a [`Staged`] file: in the blob store's own
//! temporary area when the store has one (the filesystem store's `tmp/`),
//! else in `spool_dir`. Each client waiting for the blob is sent the bytes
//! written so far: from the last few pieces, kept in memory, while it
//! keeps up; read back from the file when it falls behind (or joined
//! late). None is given the last byte before the digest is verified: a
//! client cannot receive a whole blob whose digest is wrong, and a
//! mismatch is never stored. Once verified, the file is published under
//! its digest (`Registry::store_staged`: on the filesystem store one
//! `fdatasync`, a rename and a directory `fsync`, nothing read back or
//! copied; on object storage streamed through the store's `put`) and
//! linked into the mirrored repository; requests from then on read the
//! stored blob.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_oci::Digest;
use berth_registry::{ByteStream, Registry, Staged};
use bytes::{Bytes, BytesMut};
use futures_util::{FutureExt as _, StreamExt as _};
use tokio::sync::watch;

use crate::flight::Fetch;
use crate::MirrorRepo;

/// How a blob of a mirrored repository is served.
pub enum BlobAnswer {
    /// It is stored: read it through the registry.
    Local,
    /// It is arriving from the upstream.
    Streaming {
        /// Its size, when the upstream said.
        size: Option<u64>,
        /// The bytes.
        body: ByteStream,
    },
}

impl std::fmt::Debug for BlobAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BlobAnswer::Local => f.write_str("Local"),
            BlobAnswer::Streaming { size, .. } => write!(f, "Streaming({size:?})"),
        }
    }
}

/// How far a download is.
#[derive(Debug, Clone, Default)]
struct Progress {
    /// The upstream answered: the size is known (if it sent one).
    started: bool,
    size: Option<u64>,
    /// Bytes in the spool file.
    written: u64,
    /// The digest was checked and matches.
    verified: bool,
    /// The blob is stored: read it from the registry.
    stored: bool,
    failed: Option<Fetch>,
}

struct Flight {
    path: PathBuf,
    progress: watch::Receiver<Progress>,
    recent: Recent,
}

/// The last pieces written to a spool file, with their offsets: a client
/// keeping up with the download is sent these very bytes, without
/// reading the file back; one that fell behind reads the file.
type Recent = Arc<Mutex<VecDeque<(u64, Bytes)>>>;

type Running = Arc<Mutex<HashMap<String, Flight>>>;

/// Downloads in flight.
pub(crate) struct Spools {
    dir: PathBuf,
    running: Running,
    /// Told whenever a blob was stored (the cache limit's worker).
    stored: Arc<tokio::sync::Notify>,
}

/// How long a finished download keeps answering "stored" to requests that
/// checked the store just before it was (so they do not fetch it again).
const LINGER: Duration = Duration::from_secs(30);

/// Largest read from a spool file.
const READ_SIZE: usize = 1 << 20;

/// A piece of a download is written once it holds this much.
const BATCH: usize = 1 << 20;

/// Room in a piece's buffer past [`BATCH`].
const SLACK: usize = 256 << 10;

/// Pieces waiting for the writer thread (the upstream is read ahead of
/// the disk by at most this many).
const WRITE_DEPTH: usize = 4;

/// Pieces kept in memory for the clients keeping up ([`Recent`]).
const KEEP: usize = 4;

fn spool_error(e: std::io::Error) -> Fetch {
    Fetch::Unavailable {
        detail: format!("writing the mirror's spool file: {e}"),
        retry_after: None,
    }
}

impl Spools {
    pub(crate) fn new(dir: PathBuf, stored: Arc<tokio::sync::Notify>) -> Spools {
        Spools {
            dir,
            running: Arc::default(),
            stored,
        }
    }

    /// Joins the download of `digest` for `repo`, or starts it.
    pub(crate) async fn fetch(
        &self,
        registry: &Arc<Registry>,
        repo: &MirrorRepo,
        digest: &Digest,
    ) -> Result<BlobAnswer, Fetch> {
        let key = format!("{}@{}", repo.local, digest);
        // A download that finished lingers, answering "stored"; if the
        // blob is gone again since (the cache limit evicted it), that
        // answer is stale: forget the download and start another.
        let stored_path = {
            let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            running
                .get(&key)
                .filter(|f| f.progress.borrow().stored)
                .map(|f| f.path.clone())
        };
        if let Some(path) = stored_path {
            if registry.blob_size(&repo.local, digest).await.is_ok() {
                return Ok(BlobAnswer::Local);
            }
            let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            if running.get(&key).is_some_and(|f| f.path == path) {
                running.remove(&key);
            }
        }
        let joined = {
            let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            match running.get(&key) {
                Some(f) if f.progress.borrow().stored => return Ok(BlobAnswer::Local),
                Some(f) => match std::fs::File::open(&f.path) {
                    Ok(file) => Ok((file, f.progress.clone(), f.recent.clone())),
                    // Published (renamed away) a moment ago: it reads as
                    // stored as soon as it is linked.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(f.progress.clone()),
                    Err(e) => return Err(spool_error(e)),
                },
                None => {
                    let staged = match registry.store().stage(digest.algorithm()) {
                        Ok(Some(s)) => s,
                        Ok(None) => {
                            Staged::create(&self.dir, digest.algorithm()).map_err(spool_error)?
                        }
                        Err(e) => {
                            return Err(Fetch::Unavailable {
                                detail: format!("opening a file for the blob in the store: {e}"),
                                retry_after: None,
                            })
                        }
                    };
                    let path = staged.path().to_owned();
                    let file = std::fs::File::open(&path).map_err(spool_error)?;
                    let (tx, rx) = watch::channel(Progress::default());
                    let recent = Recent::default();
                    running.insert(
                        key.clone(),
                        Flight {
                            path: path.clone(),
                            progress: rx.clone(),
                            recent: recent.clone(),
                        },
                    );
                    let job = Download {
                        registry: registry.clone(),
                        repo: repo.clone(),
                        digest: digest.clone(),
                        path,
                        key,
                        running: self.running.clone(),
                        stored: self.stored.clone(),
                    };
                    tokio::spawn(job.run(staged, Arc::new(tx), recent.clone()));
                    Ok((file, rx, recent))
                }
            }
        };
        let (file, mut rx, recent) = match joined {
            Ok(j) => j,
            Err(published) => return settled(published).await,
        };
        let size = loop {
            {
                let p = rx.borrow_and_update();
                if let Some(e) = &p.failed {
                    return Err(e.clone());
                }
                if p.started {
                    break p.size;
                }
            }
            if rx.changed().await.is_err() {
                return Err(Fetch::Invalid("the download ended unexpectedly".into()));
            }
        };
        let reader = Reader {
            file: Arc::new(file),
            recent,
            pos: 0,
            progress: rx,
            done: false,
        };
        let body = futures_util::stream::unfold(reader, |mut r| async move {
            r.next().await.map(|item| (item, r))
        });
        Ok(BlobAnswer::Streaming {
            size,
            body: Box::pin(body),
        })
    }
}

/// Waits until a download whose file was published ends: the blob is
/// then stored (read it through the registry), or it failed.
async fn settled(mut rx: watch::Receiver<Progress>) -> Result<BlobAnswer, Fetch> {
    loop {
        {
            let p = rx.borrow_and_update();
            if p.stored {
                return Ok(BlobAnswer::Local);
            }
            if let Some(e) = &p.failed {
                return Err(e.clone());
            }
        }
        if rx.changed().await.is_err() {
            return Err(Fetch::Invalid("the download ended unexpectedly".into()));
        }
    }
}

/// One client's view of a download.
struct Reader {
    file: Arc<std::fs::File>,
    recent: Recent,
    pos: u64,
    progress: watch::Receiver<Progress>,
    done: bool,
}

impl Reader {
    async fn next(&mut self) -> Option<std::io::Result<Bytes>> {
        if self.done {
            return None;
        }
        loop {
            let (limit, verified, failed) = {
                let p = self.progress.borrow_and_update();
                let limit = if p.verified {
                    p.written
                } else {
                    p.written.saturating_sub(1)
                };
                (limit, p.verified, p.failed.clone())
            };
            if let Some(e) = failed.filter(|_| !verified) {
                self.done = true;
                return Some(Err(std::io::Error::other(format!(
                    "the upstream download failed: {e}"
                ))));
            }
            if self.pos < limit {
                // Still in memory: those bytes, as they are.
                if let Some(piece) = in_memory(&self.recent, self.pos, limit) {
                    self.pos += piece.len() as u64;
                    return Some(Ok(piece));
                }
                let want = ((limit - self.pos) as usize).min(READ_SIZE);
                // One positioned read into a fresh buffer, handed to the
                // response as is.
                let (file, pos) = (self.file.clone(), self.pos);
                let read = tokio::task::spawn_blocking(move || {
                    let mut buf = vec![0u8; want];
                    read_exact_at(&file, &mut buf, pos).map(|()| Bytes::from(buf))
                })
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))
                .and_then(|r| r);
                return match read {
                    Ok(chunk) => {
                        self.pos += chunk.len() as u64;
                        Some(Ok(chunk))
                    }
                    Err(e) => {
                        self.done = true;
                        Some(Err(e))
                    }
                };
            }
            if verified {
                self.done = true;
                return None;
            }
            if self.progress.changed().await.is_err() {
                // The download's task is gone; whatever it reached last
                // is in the channel.
                let p = self.progress.borrow().clone();
                if !(p.verified && self.pos < p.written) {
                    self.done = true;
                    return Some(Err(std::io::Error::other("the upstream download ended")));
                }
            }
        }
    }
}

/// The bytes from `pos` (before `limit`) of the recent piece holding
/// `pos`, if one still does.
fn in_memory(recent: &Recent, pos: u64, limit: u64) -> Option<Bytes> {
    let recent = recent.lock().unwrap_or_else(|p| p.into_inner());
    let (at, piece) = recent
        .iter()
        .find(|(at, p)| *at <= pos && pos < at + p.len() as u64)?;
    let start = (pos - at) as usize;
    let end = (limit.min(at + piece.len() as u64) - at) as usize;
    Some(piece.slice(start..end))
}

#[cfg(unix)]
fn read_exact_at(file: &std::fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(not(unix))]
fn read_exact_at(file: &std::fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    use std::io::{Read as _, Seek as _};
    let mut f = file;
    f.seek(std::io::SeekFrom::Start(offset))?;
    f.read_exact(buf)
}

/// The download of one blob.
struct Download {
    registry: Arc<Registry>,
    repo: MirrorRepo,
    digest: Digest,
    path: PathBuf,
    key: String,
    running: Running,
    stored: Arc<tokio::sync::Notify>,
}

impl Download {
    async fn run(self, staged: Staged, tx: Arc<watch::Sender<Progress>>, recent: Recent) {
        let result = self.fetch(staged, &tx, recent.clone()).await;
        // Stored (read it from the store) or failed: the bytes in memory
        // are of no more use.
        recent.lock().unwrap_or_else(|p| p.into_inner()).clear();
        match result {
            Ok(()) => {
                tx.send_modify(|p| p.stored = true);
                self.stored.notify_one();
                tracing::info!(
                    upstream = %self.repo.upstream.config.name,
                    repository = %self.repo.local,
                    digest = %self.digest,
                    "mirrored a blob"
                );
                // Keep answering "stored" a little while, then retire.
                tokio::time::sleep(LINGER).await;
            }
            Err(e) => {
                tracing::warn!(
                    upstream = %self.repo.upstream.config.name,
                    repository = %self.repo.local,
                    digest = %self.digest,
                    error = %e,
                    "fetching a blob from the upstream failed"
                );
                tx.send_modify(|p| p.failed = Some(e));
            }
        }
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if running.get(&self.key).is_some_and(|f| f.path == self.path) {
            running.remove(&self.key);
        }
    }

    /// Downloads into `staged` (removed, unless published, when it goes),
    /// verifies and stores.
    async fn fetch(
        &self,
        staged: Staged,
        tx: &Arc<watch::Sender<Progress>>,
        recent: Recent,
    ) -> Result<(), Fetch> {
        let (mut blob, permit) = self
            .repo
            .upstream
            .get_blob(&self.repo.remote, &self.digest)
            .await?;
        tx.send_modify(|p| {
            p.started = true;
            p.size = blob.size;
        });
        // The writer thread: hashes and writes each piece, keeps it for
        // the readers keeping up, then tells them how far the file is.
        let (pieces, mut rx) = tokio::sync::mpsc::channel::<Bytes>(WRITE_DEPTH);
        let progress = tx.clone();
        let writer = tokio::task::spawn_blocking(move || {
            let mut staged = staged;
            while let Some(piece) = rx.blocking_recv() {
                let at = staged.bytes();
                if let Err(e) = staged.write(std::slice::from_ref(&piece)) {
                    return (staged, Err(e));
                }
                {
                    let mut recent = recent.lock().unwrap_or_else(|p| p.into_inner());
                    if recent.len() == KEEP {
                        recent.pop_front();
                    }
                    recent.push_back((at, piece));
                }
                let written = staged.bytes();
                progress.send_modify(|p| p.written = written);
            }
            (staged, Ok(()))
        });
        let mut failure = None;
        let mut ended = false;
        while !ended {
            // Wait for the next bytes, then gather what else is ready into
            // one piece (one write, one buffer the readers are sent).
            let mut piece = BytesMut::new();
            let mut next = blob.stream.next().await;
            loop {
                match next {
                    None => {
                        ended = true;
                        break;
                    }
                    Some(Err(e)) => {
                        failure = Some(Fetch::Unavailable {
                            detail: format!("reading the blob from the upstream: {e}"),
                            retry_after: None,
                        });
                        ended = true;
                        break;
                    }
                    Some(Ok(chunk)) => {
                        if piece.is_empty() {
                            // Room for the upstream's usual chunks past
                            // a piece's size: no reallocation.
                            piece.reserve((BATCH + SLACK).max(chunk.len()));
                        }
                        piece.extend_from_slice(&chunk);
                    }
                }
                if piece.len() >= BATCH {
                    break;
                }
                match blob.stream.next().now_or_never() {
                    Some(item) => next = item,
                    None => break,
                }
            }
            if !piece.is_empty() && pieces.send(piece.freeze()).await.is_err() {
                // The writer stopped on an error: it says which.
                break;
            }
        }
        drop(pieces);
        drop(permit);
        let (staged, written) = writer.await.map_err(|e| Fetch::Unavailable {
            detail: format!("the mirror's spool writer failed: {e}"),
            retry_after: None,
        })?;
        written.map_err(spool_error)?;
        if let Some(e) = failure {
            return Err(e);
        }
        let written = staged.bytes();
        if let Some(size) = blob.size.filter(|s| *s != written) {
            return Err(Fetch::Invalid(format!(
                "the upstream announced {size} bytes and sent {written}; nothing was stored"
            )));
        }
        let actual = staged.digest();
        if actual != self.digest {
            return Err(Fetch::Invalid(format!(
                "the upstream sent content with digest {actual} for {}; nothing was stored",
                self.digest
            )));
        }
        tx.send_modify(|p| p.verified = true);
        self.registry
            .store_staged(&self.repo.local, &self.digest, staged)
            .await
            .map_err(|e| Fetch::Unavailable {
                detail: format!("storing the blob: {e}"),
                retry_after: None,
            })?;
        Ok(())
    }
}
