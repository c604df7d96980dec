//! Blobs fetched from an upstream, streamed to every client asking while
//! they arrive.
//!
//! The first miss of a blob starts one download (a task of its own, so a
//! client hanging up does not end it for the others): the bytes go to a
//! spool file in `spool_dir` as they arrive, hashed on the way. Each
//! client waiting for the blob reads the spool file up to what has been
//! written so far, and is never given the last byte before the digest is
//! verified: a client cannot receive a whole blob whose digest is wrong,
//! and a mismatch is never stored. Once verified, the spool file is
//! stored through the registry (`push_blob`: the store verifies the digest
//! again and links the blob into the mirrored repository) and removed;
//! requests from then on read the stored blob.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_oci::Digest;
use berth_registry::{ByteStream, Registry};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
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
}

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
        let (file, mut rx) = {
            let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            match running.get(&key) {
                Some(f) if f.progress.borrow().stored => return Ok(BlobAnswer::Local),
                Some(f) => (
                    std::fs::File::open(&f.path).map_err(spool_error)?,
                    f.progress.clone(),
                ),
                None => {
                    let path = self.dir.join(format!("{}.part", uuid::Uuid::new_v4()));
                    let out = std::fs::File::create(&path).map_err(spool_error)?;
                    let file = std::fs::File::open(&path).map_err(spool_error)?;
                    let (tx, rx) = watch::channel(Progress::default());
                    running.insert(
                        key.clone(),
                        Flight {
                            path: path.clone(),
                            progress: rx.clone(),
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
                    tokio::spawn(job.run(out, tx));
                    (file, rx)
                }
            }
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
            file: tokio::fs::File::from_std(file),
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

/// One client's view of a download.
struct Reader {
    file: tokio::fs::File,
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
                let want = ((limit - self.pos) as usize).min(READ_SIZE);
                let mut buf = BytesMut::zeroed(want);
                return match self.file.read(&mut buf).await {
                    Ok(0) => {
                        self.done = true;
                        Some(Err(std::io::Error::other("the spool file ended early")))
                    }
                    Ok(n) => {
                        self.pos += n as u64;
                        buf.truncate(n);
                        Some(Ok(buf.freeze()))
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
    async fn run(self, out: std::fs::File, tx: watch::Sender<Progress>) {
        let result = self.fetch(out, &tx).await;
        let _ = tokio::fs::remove_file(&self.path).await;
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

    async fn fetch(&self, out: std::fs::File, tx: &watch::Sender<Progress>) -> Result<(), Fetch> {
        let (mut blob, permit) = self
            .repo
            .upstream
            .get_blob(&self.repo.remote, &self.digest)
            .await?;
        tx.send_modify(|p| {
            p.started = true;
            p.size = blob.size;
        });
        let mut out = tokio::fs::File::from_std(out);
        let mut hasher = self.digest.algorithm().hasher();
        let mut written = 0u64;
        while let Some(chunk) = blob.stream.next().await {
            let chunk = chunk.map_err(|e| Fetch::Unavailable {
                detail: format!("reading the blob from the upstream: {e}"),
                retry_after: None,
            })?;
            hasher.update(&chunk);
            out.write_all(&chunk).await.map_err(spool_error)?;
            out.flush().await.map_err(spool_error)?;
            written += chunk.len() as u64;
            tx.send_modify(|p| p.written = written);
        }
        drop(permit);
        if let Some(size) = blob.size.filter(|s| *s != written) {
            return Err(Fetch::Invalid(format!(
                "the upstream announced {size} bytes and sent {written}; nothing was stored"
            )));
        }
        let actual = hasher.finish();
        if actual != self.digest {
            return Err(Fetch::Invalid(format!(
                "the upstream sent content with digest {actual} for {}; nothing was stored",
                self.digest
            )));
        }
        tx.send_modify(|p| p.verified = true);
        let file = tokio::fs::File::open(&self.path)
            .await
            .map_err(spool_error)?;
        let body: ByteStream =
            Box::pin(tokio_util::io::ReaderStream::with_capacity(file, READ_SIZE));
        self.registry
            .push_blob(&self.repo.local, &self.digest, Some(written), body)
            .await
            .map_err(|e| Fetch::Unavailable {
                detail: format!("storing the blob: {e}"),
                retry_after: None,
            })?;
        Ok(())
    }
}
