//! The streaming write path: request body -> hash -> file.
//!
//! A small body (the common case for configs, manifests' blobs and small
//! layers) is gathered in memory and hashed and written by one blocking
//! call. A larger one is handed over a small bounded channel to one
//! blocking thread that hashes and writes it, so network reads, hashing and
//! disk writes overlap and no blob is ever held whole in memory. While a
//! large blob is written, writeback of what is already written is started
//! in the background (an `fdatasync` on a helper thread every
//! [`WRITEBACK_STEP`]), so the final `fdatasync` before the blob is
//! acknowledged only has the tail left to flush.
//!
//! An upload session's chunk ([`append_stream`]) is answered once its bytes
//! are in the session's file, but it waits neither for their writeback nor
//! for their hash: its writer hands each piece, once written, to a hashing
//! thread that runs behind it (up to [`HASH_DEPTH`] pieces behind), and that
//! thread goes on after the answer. The next chunk's hasher continues the
//! same hash once this one is done ([`HashLink`]); the commit waits for the
//! last one, and for the writeback (whose errors are the data's). Hashing is
//! what bounds a large push on this path, and it no longer stops while the
//! client reads the answer and sends its next chunk.

use std::fs::File;
use std::io::{self, Write};
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;

use berth_oci::Hasher;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};

use crate::{ByteStream, Error, Result};

/// Chunks buffered between the network and the disk writer.
const CHANNEL_DEPTH: usize = 4;
/// Bodies up to this size are written by a single blocking call.
const SMALL_BODY: u64 = 512 * 1024;
/// Pieces of a chunk its hashing thread may run behind its writer (hyper
/// reads up to about 400 KiB at once, so at most a few MiB per session).
const HASH_DEPTH: usize = 16;
/// Background writeback is started each time this much more was written.
pub(crate) const WRITEBACK_STEP: u64 = 8 << 20;

/// What [`write_stream`] and [`append_stream`] leave behind.
pub(crate) struct Written {
    pub file: File,
    pub hasher: Option<Hasher>,
    pub bytes: u64,
}

/// Starts writeback of a file's dirty pages on a helper thread while the
/// writer goes on. Its errors are reported by [`Writeback::finish`]: an
/// `fdatasync` error is reported once per open file, so it must not be lost.
#[derive(Default)]
pub(crate) struct Writeback {
    kick: Option<std_mpsc::SyncSender<()>>,
    helper: Option<JoinHandle<io::Result<()>>>,
    kicked_at: u64,
}

impl std::fmt::Debug for Writeback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writeback")
            .field("running", &self.helper.is_some())
            .finish()
    }
}

impl Writeback {
    /// Asks for writeback of `file` if [`WRITEBACK_STEP`] more bytes were
    /// written since the last request (`written` counts them).
    pub(crate) fn maybe_kick(&mut self, file: &File, written: u64) -> io::Result<()> {
        if written < self.kicked_at + WRITEBACK_STEP {
            return Ok(());
        }
        self.kicked_at = written;
        if self.kick.is_none() {
            let clone = file.try_clone()?;
            let (tx, rx) = std_mpsc::sync_channel::<()>(1);
            self.helper = Some(std::thread::spawn(move || {
                while rx.recv().is_ok() {
                    clone.sync_data()?;
                }
                Ok(())
            }));
            self.kick = Some(tx);
        }
        if let Some(tx) = &self.kick {
            // Full: a writeback is pending already; a closed channel means
            // the helper failed, which `finish` reports.
            let _ = tx.try_send(());
        }
        Ok(())
    }

    /// Waits for the helper and returns its first error.
    pub(crate) fn finish(mut self) -> io::Result<()> {
        self.kick = None;
        match self.helper.take() {
            Some(h) => h
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("writeback thread panicked"))),
            None => Ok(()),
        }
    }
}

/// The blocking side: hashes and writes chunks.
///
/// Chunks are written as they come (hyper hands over large buffers), without
/// a userspace write buffer: no extra copy of every byte, and no per-upload
/// buffer allocated on a blocking thread (whose allocator arena would keep
/// that memory after the upload).
struct Sink {
    out: File,
    hashing: Hashing,
    bytes: u64,
    writeback: Writeback,
}

/// How a [`Sink`] hashes what it writes (one per sink, never copied
/// around: the hasher's size does not matter).
#[allow(clippy::large_enum_variant)]
enum Hashing {
    /// Not at all.
    Off,
    /// On the writer's thread, before writing.
    Inline(Hasher),
    /// On a thread of its own, behind the writer ([`hash_behind`]).
    Behind(std_mpsc::SyncSender<Bytes>),
}

impl Sink {
    fn hashing(file: File, hashing: Hashing, mut writeback: Writeback) -> Sink {
        // `kicked_at` counts the bytes of this sink.
        writeback.kicked_at = 0;
        Sink {
            out: file,
            hashing,
            bytes: 0,
            writeback,
        }
    }

    fn push(&mut self, chunk: &Bytes) -> io::Result<()> {
        if let Hashing::Inline(h) = &mut self.hashing {
            h.update(chunk);
        }
        self.out.write_all(chunk)?;
        if let Hashing::Behind(tx) = &self.hashing {
            // Only what is written is hashed; a hasher gone (it cannot fail)
            // leaves the hash unknown, which the commit recomputes.
            if tx.send(chunk.clone()).is_err() {
                self.hashing = Hashing::Off;
            }
        }
        self.bytes += chunk.len() as u64;
        if self.bytes >= self.writeback.kicked_at + WRITEBACK_STEP {
            self.writeback.maybe_kick(&self.out, self.bytes)?;
        }
        Ok(())
    }

    /// Waits for background writeback, unless `keep` asks for it to be
    /// handed back running (then only when the pushes failed); `result` is
    /// the outcome of the pushes.
    fn finish(self, result: io::Result<()>, keep: bool) -> SinkResult {
        let (background, writeback) = if keep && result.is_ok() {
            (Ok(()), self.writeback)
        } else {
            (self.writeback.finish(), Writeback::default())
        };
        let hasher = match self.hashing {
            Hashing::Inline(h) => Some(h),
            // Closing the channel lets the hashing thread finish.
            Hashing::Behind(_) | Hashing::Off => None,
        };
        SinkResult {
            file: self.out,
            hasher,
            bytes: self.bytes,
            result: result.and(background),
            writeback,
        }
    }
}

/// What the blocking side leaves.
struct SinkResult {
    file: File,
    hasher: Option<Hasher>,
    bytes: u64,
    result: io::Result<()>,
    writeback: Writeback,
}

/// Streams `body` into `file` (positioned at its end), feeding `hasher` when
/// given. With `len`, exactly that many bytes must arrive. On error, the bytes
/// received before it stay in the file; the hasher is then dropped, since it
/// may not match the file any more.
pub(crate) async fn write_stream(
    file: File,
    hasher: Option<Hasher>,
    len: Option<u64>,
    body: ByteStream,
) -> Result<Written> {
    stream(file, hasher, Writeback::default(), false, len, body)
        .await
        .0
}

/// The hash of an upload session's bytes, perhaps still being computed
/// behind their writes: what the hasher of its last chunk leaves (`None`
/// when the hash is not known, e.g. after a failed chunk).
pub(crate) type HashLink = oneshot::Receiver<Option<Hasher>>;

/// A hash link already resolved.
pub(crate) fn hash_ready(hasher: Option<Hasher>) -> HashLink {
    let (tx, rx) = oneshot::channel();
    let _ = tx.send(hasher);
    rx
}

/// Waits for the hash behind a session's writes.
pub(crate) async fn hash_of(link: HashLink) -> Option<Hasher> {
    link.await.ok().flatten()
}

/// Starts a thread that continues `previous` over the pieces sent to it,
/// once `previous` is done, and leaves the result in the returned link.
fn hash_behind(previous: HashLink) -> (std_mpsc::SyncSender<Bytes>, HashLink) {
    let (tx, rx) = std_mpsc::sync_channel::<Bytes>(HASH_DEPTH);
    let (done, link) = oneshot::channel();
    tokio::task::spawn_blocking(move || {
        let mut hasher = previous.blocking_recv().ok().flatten();
        // Drained also without a hasher, so that the writer never waits.
        while let Ok(piece) = rx.recv() {
            if let Some(h) = hasher.as_mut() {
                h.update(&piece);
            }
        }
        let _ = done.send(hasher);
    });
    (tx, link)
}

/// [`write_stream`] for a chunk of an upload session: answered once every
/// byte is in the file. `hash` (the hash of the session's bytes so far)
/// is continued behind the writes and handed back as a new link, still
/// being computed; `writeback` is the session's, handed back still
/// running, whatever the outcome. Whoever makes the session's data durable
/// must [`Writeback::finish`] it first (its errors are the data's). On an
/// error the returned link is meaningless (the caller drops it).
pub(crate) async fn append_stream(
    file: File,
    hash: HashLink,
    writeback: Writeback,
    len: Option<u64>,
    body: ByteStream,
) -> (Result<Written>, HashLink, Writeback) {
    let mut hash = hash;
    // A hash already known continues on the writer's thread for a small
    // chunk (one blocking call, no thread to start); a large chunk, or a
    // hash still being computed, is hashed behind the writes.
    let known = match hash.try_recv() {
        Ok(h) => Some(h),
        Err(oneshot::error::TryRecvError::Empty) => None,
        Err(oneshot::error::TryRecvError::Closed) => Some(None),
    };
    let start = match known {
        Some(None) => Start::Off,
        Some(Some(h)) => Start::Ready(h),
        None => Start::Pending(hash),
    };
    let (written, writeback, behind) =
        stream_hashing(file, start, writeback, true, len, body).await;
    let link = match (&written, behind) {
        (_, Some(link)) => link,
        (Ok(w), None) => hash_ready(w.hasher.clone()),
        (Err(_), None) => hash_ready(None),
    };
    (written, link, writeback)
}

/// The hash an appended chunk starts from (one per chunk).
#[allow(clippy::large_enum_variant)]
enum Start {
    Off,
    Ready(Hasher),
    Pending(HashLink),
}

async fn stream(
    file: File,
    hasher: Option<Hasher>,
    writeback: Writeback,
    keep: bool,
    len: Option<u64>,
    body: ByteStream,
) -> (Result<Written>, Writeback) {
    let start = hasher.map_or(Start::Off, Start::Ready);
    let (written, writeback, _) = stream_hashing(file, start, writeback, keep, len, body).await;
    (written, writeback)
}

/// [`stream`], hashing on the writer's thread from a known hash, or behind
/// the writes on a thread of its own (a hash still being computed, or a
/// large chunk of a session, `keep`), whose result is the returned link.
async fn stream_hashing(
    file: File,
    start: Start,
    writeback: Writeback,
    keep: bool,
    len: Option<u64>,
    mut body: ByteStream,
) -> (Result<Written>, Writeback, Option<HashLink>) {
    let mut received = 0u64;
    let mut failure: Option<Error> = None;
    // Gather the start of the body: if it ends soon, one blocking call does it all.
    let mut head: Vec<Bytes> = Vec::new();
    let mut ended = false;
    while received <= SMALL_BODY {
        match body.next().await {
            None => {
                ended = true;
                break;
            }
            Some(item) => match accept(item, &mut received, len) {
                Ok(chunk) if chunk.is_empty() => {}
                Ok(chunk) => head.push(chunk),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            },
        }
    }
    let small = ended || failure.is_some();
    let (hashing, behind) = match start {
        Start::Off => (Hashing::Off, None),
        Start::Ready(h) if small || !keep => (Hashing::Inline(h), None),
        Start::Ready(h) => {
            let (tx, link) = hash_behind(hash_ready(Some(h)));
            (Hashing::Behind(tx), Some(link))
        }
        Start::Pending(previous) => {
            let (tx, link) = hash_behind(previous);
            (Hashing::Behind(tx), Some(link))
        }
    };
    let sink = Sink::hashing(file, hashing, writeback);
    let sunk = if small {
        tokio::task::spawn_blocking(move || {
            let mut sink = sink;
            let result = head.iter().try_for_each(|c| sink.push(c));
            sink.finish(result, keep)
        })
        .await
    } else {
        stream_rest(sink, keep, len, head, body, &mut received, &mut failure).await
    };
    let SinkResult {
        file,
        hasher,
        bytes,
        result,
        writeback,
    } = match sunk {
        Ok(s) => s,
        Err(e) => {
            return (
                Err(Error::Io(io::Error::other(e.to_string()))),
                Writeback::default(),
                None,
            )
        }
    };
    let checked = match (result, failure) {
        (Err(e), _) => Err(e.into()),
        (Ok(()), Some(e)) => Err(e),
        (Ok(()), None) => match len {
            Some(limit) if bytes != limit => Err(Error::SizeMismatch {
                expected: limit,
                actual: bytes,
            }),
            _ => Ok(Written {
                file,
                hasher,
                bytes,
            }),
        },
    };
    (checked, writeback, behind)
}

/// Counts a body item against the announced length.
fn accept(item: io::Result<Bytes>, received: &mut u64, len: Option<u64>) -> Result<Bytes> {
    let chunk = item.map_err(Error::Body)?;
    *received += chunk.len() as u64;
    if let Some(limit) = len {
        if *received > limit {
            return Err(Error::SizeMismatch {
                expected: limit,
                actual: *received,
            });
        }
    }
    Ok(chunk)
}

/// Writes `head` and the rest of `body` through `sink` on a writer thread.
async fn stream_rest(
    mut sink: Sink,
    keep: bool,
    len: Option<u64>,
    head: Vec<Bytes>,
    mut body: ByteStream,
    received: &mut u64,
    failure: &mut Option<Error>,
) -> std::result::Result<SinkResult, tokio::task::JoinError> {
    let (tx, mut rx) = mpsc::channel::<Bytes>(CHANNEL_DEPTH);
    let writer = tokio::task::spawn_blocking(move || {
        let mut result = head.iter().try_for_each(|c| sink.push(c));
        if result.is_ok() {
            while let Some(chunk) = rx.blocking_recv() {
                if let Err(e) = sink.push(&chunk) {
                    result = Err(e);
                    break;
                }
            }
        }
        sink.finish(result, keep)
    });
    while let Some(item) = body.next().await {
        match accept(item, received, len) {
            Ok(chunk) if chunk.is_empty() => {}
            Ok(chunk) => {
                if tx.send(chunk).await.is_err() {
                    // The writer stopped: its error is reported by the caller.
                    break;
                }
            }
            Err(e) => {
                *failure = Some(e);
                break;
            }
        }
    }
    drop(tx);
    writer.await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use berth_oci::{Algorithm, Digest};

    fn body(chunks: Vec<Bytes>) -> ByteStream {
        Box::pin(futures_util::stream::iter(chunks.into_iter().map(Ok)))
    }

    fn chunks(total: usize) -> Vec<Bytes> {
        (0..total / (256 << 10))
            .map(|i| Bytes::from(vec![(i % 251) as u8; 256 << 10]))
            .collect()
    }

    #[tokio::test]
    async fn a_session_chunk_hands_its_writeback_and_its_hash_on_and_the_whole_blob_stays_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        let first = chunks(WRITEBACK_STEP as usize + (1 << 20));
        let second = chunks(2 << 20);
        let file = File::create(&path).unwrap();
        let (written, hash, writeback) = append_stream(
            file,
            hash_ready(Some(Algorithm::Sha256.hasher())),
            Writeback::default(),
            None,
            body(first.clone()),
        )
        .await;
        let written = written.unwrap();
        assert!(
            written.hasher.is_none(),
            "a large chunk is hashed behind its writes, not on the writer's thread"
        );
        assert!(
            writeback.helper.is_some(),
            "a chunk past one writeback step leaves its writeback running for the session"
        );
        // Every byte is in the file when the chunk is answered.
        let first_bytes: Vec<u8> = first.iter().flat_map(|c| c.iter().copied()).collect();
        assert_eq!(std::fs::read(&path).unwrap(), first_bytes);
        // The next chunk carries the same writeback and hash on, whether or
        // not the hash of the first is done yet.
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        let (again, hash, writeback) =
            append_stream(file, hash, writeback, None, body(second.clone())).await;
        again.unwrap();
        writeback.finish().unwrap();
        let all: Vec<u8> = first
            .iter()
            .chain(second.iter())
            .flat_map(|c| c.iter().copied())
            .collect();
        assert_eq!(hash_of(hash).await.unwrap().finish(), Digest::sha256(&all));
        assert_eq!(std::fs::read(&path).unwrap(), all);
    }

    #[tokio::test]
    async fn a_small_chunk_continues_a_known_hash_inline_and_a_pending_one_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        let piece = || vec![Bytes::from_static(b"0123456789")];
        let file = File::create(&path).unwrap();
        let (written, hash, _) = append_stream(
            file,
            hash_ready(Some(Algorithm::Sha256.hasher())),
            Writeback::default(),
            Some(10),
            body(piece()),
        )
        .await;
        assert!(written.unwrap().hasher.is_some(), "hashed inline");
        // A hash still being computed: the chunk is written and answered,
        // and its hash follows once the previous one is done.
        let (previous, pending) = oneshot::channel();
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        let (written, link, _) =
            append_stream(file, pending, Writeback::default(), Some(10), body(piece())).await;
        assert_eq!(written.unwrap().bytes, 10);
        assert_eq!(std::fs::read(&path).unwrap().len(), 20);
        let _ = previous.send(hash_of(hash).await);
        assert_eq!(
            hash_of(link).await.unwrap().finish(),
            Digest::sha256(b"01234567890123456789")
        );
    }

    #[tokio::test]
    async fn a_refused_chunk_still_hands_the_writeback_back() {
        let dir = tempfile::tempdir().unwrap();
        let file = File::create(dir.path().join("data")).unwrap();
        let data = chunks(WRITEBACK_STEP as usize + (1 << 20));
        // One byte announced short: refused after every byte was written.
        let announced = data.iter().map(|c| c.len() as u64).sum::<u64>() - 1;
        let (written, _, writeback) = append_stream(
            file,
            hash_ready(None),
            Writeback::default(),
            Some(announced),
            body(data),
        )
        .await;
        assert!(matches!(written, Err(Error::SizeMismatch { .. })));
        assert!(
            writeback.helper.is_some(),
            "the session keeps the writeback of what was written, for its commit"
        );
        writeback.finish().unwrap();
    }

    #[tokio::test]
    async fn a_whole_blob_waits_for_its_writeback() {
        let dir = tempfile::tempdir().unwrap();
        let file = File::create(dir.path().join("data")).unwrap();
        let data = chunks(WRITEBACK_STEP as usize + (1 << 20));
        let (written, writeback) =
            stream(file, None, Writeback::default(), false, None, body(data)).await;
        written.unwrap();
        assert!(writeback.helper.is_none(), "joined before the answer");
    }
}
