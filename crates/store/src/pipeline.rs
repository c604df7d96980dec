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
//! acknowledged only has the tail left to flush. An upload session's chunk
//! does not wait for its writeback at all ([`append_stream`]): the helper
//! goes on with the session, and the commit waits for it and reports its
//! errors, so the client's next chunk overlaps the disk's work on this one.

use std::fs::File;
use std::io::{self, Write};
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;

use berth_oci::Hasher;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use crate::{ByteStream, Error, Result};

/// Chunks buffered between the network and the disk writer.
const CHANNEL_DEPTH: usize = 4;
/// Bodies up to this size are written by a single blocking call.
const SMALL_BODY: u64 = 512 * 1024;
/// Background writeback is started each time this much more was written.
pub(crate) const WRITEBACK_STEP: u64 = 8 << 20;

/// What [`write_stream`] leaves behind.
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
    hasher: Option<Hasher>,
    bytes: u64,
    writeback: Writeback,
}

impl Sink {
    fn new(file: File, hasher: Option<Hasher>, mut writeback: Writeback) -> Sink {
        // `kicked_at` counts the bytes of this sink.
        writeback.kicked_at = 0;
        Sink {
            out: file,
            hasher,
            bytes: 0,
            writeback,
        }
    }

    fn push(&mut self, chunk: &[u8]) -> io::Result<()> {
        if let Some(h) = self.hasher.as_mut() {
            h.update(chunk);
        }
        self.out.write_all(chunk)?;
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
        SinkResult {
            file: self.out,
            hasher: self.hasher,
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

/// [`write_stream`] for a chunk of an upload session: `writeback` is the
/// session's, and it is handed back still running, whatever the outcome, so
/// the chunk's answer does not wait for the disk. Whoever makes the
/// session's data durable must [`Writeback::finish`] it first (its errors
/// are the data's).
pub(crate) async fn append_stream(
    file: File,
    hasher: Option<Hasher>,
    writeback: Writeback,
    len: Option<u64>,
    body: ByteStream,
) -> (Result<Written>, Writeback) {
    stream(file, hasher, writeback, true, len, body).await
}

async fn stream(
    file: File,
    hasher: Option<Hasher>,
    writeback: Writeback,
    keep: bool,
    len: Option<u64>,
    mut body: ByteStream,
) -> (Result<Written>, Writeback) {
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
    let sunk = if ended || failure.is_some() {
        tokio::task::spawn_blocking(move || {
            let mut sink = Sink::new(file, hasher, writeback);
            let result = head.iter().try_for_each(|c| sink.push(c));
            sink.finish(result, keep)
        })
        .await
    } else {
        let sink = Sink::new(file, hasher, writeback);
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
    (checked, writeback)
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
    async fn a_session_chunk_hands_its_writeback_on_and_the_whole_blob_stays_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        let first = chunks(WRITEBACK_STEP as usize + (1 << 20));
        let second = chunks(2 << 20);
        let file = File::create(&path).unwrap();
        let (written, writeback) = append_stream(
            file,
            Some(Algorithm::Sha256.hasher()),
            Writeback::default(),
            None,
            body(first.clone()),
        )
        .await;
        let written = written.unwrap();
        assert!(
            writeback.helper.is_some(),
            "a chunk past one writeback step leaves its writeback running for the session"
        );
        // The next chunk carries the same writeback on.
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        let (again, writeback) =
            append_stream(file, written.hasher, writeback, None, body(second.clone())).await;
        let again = again.unwrap();
        writeback.finish().unwrap();
        let all: Vec<u8> = first
            .iter()
            .chain(second.iter())
            .flat_map(|c| c.iter().copied())
            .collect();
        assert_eq!(again.hasher.unwrap().finish(), Digest::sha256(&all));
        assert_eq!(std::fs::read(&path).unwrap(), all);
    }

    #[tokio::test]
    async fn a_refused_chunk_still_hands_the_writeback_back() {
        let dir = tempfile::tempdir().unwrap();
        let file = File::create(dir.path().join("data")).unwrap();
        let data = chunks(WRITEBACK_STEP as usize + (1 << 20));
        // One byte announced short: refused after every byte was written.
        let announced = data.iter().map(|c| c.len() as u64).sum::<u64>() - 1;
        let (written, writeback) = append_stream(
            file,
            None,
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
