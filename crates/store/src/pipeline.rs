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
    fn new(file: File, hasher: Option<Hasher>) -> Sink {
        Sink {
            out: file,
            hasher,
            bytes: 0,
            writeback: Writeback::default(),
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

    /// Waits for background writeback; `result` is the outcome of the pushes.
    fn finish(
        self,
        result: io::Result<()>,
    ) -> (io::Result<File>, Option<Hasher>, u64, io::Result<()>) {
        let background = self.writeback.finish();
        (
            Ok(self.out),
            self.hasher,
            self.bytes,
            result.and(background),
        )
    }
}

/// Streams `body` into `file` (positioned at its end), feeding `hasher` when
/// given. With `len`, exactly that many bytes must arrive. On error, the bytes
/// received before it stay in the file; the hasher is then dropped, since it
/// may not match the file any more.
pub(crate) async fn write_stream(
    file: File,
    hasher: Option<Hasher>,
    len: Option<u64>,
    mut body: ByteStream,
) -> Result<Written> {
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
    let (file, hasher, bytes, io_result) = if ended || failure.is_some() {
        tokio::task::spawn_blocking(move || {
            let mut sink = Sink::new(file, hasher);
            let result = head.iter().try_for_each(|c| sink.push(c));
            sink.finish(result)
        })
        .await
    } else {
        stream_rest(file, hasher, len, head, body, &mut received, &mut failure).await
    }
    .map_err(|e| Error::Io(io::Error::other(e.to_string())))?;
    let file = file?;
    io_result?;
    if let Some(e) = failure {
        return Err(e);
    }
    if let Some(limit) = len {
        if bytes != limit {
            return Err(Error::SizeMismatch {
                expected: limit,
                actual: bytes,
            });
        }
    }
    Ok(Written {
        file,
        hasher,
        bytes,
    })
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

type SinkResult = (io::Result<File>, Option<Hasher>, u64, io::Result<()>);

/// Writes `head` and the rest of `body` through a writer thread.
async fn stream_rest(
    file: File,
    hasher: Option<Hasher>,
    len: Option<u64>,
    head: Vec<Bytes>,
    mut body: ByteStream,
    received: &mut u64,
    failure: &mut Option<Error>,
) -> std::result::Result<SinkResult, tokio::task::JoinError> {
    let (tx, mut rx) = mpsc::channel::<Bytes>(CHANNEL_DEPTH);
    let writer = tokio::task::spawn_blocking(move || {
        let mut sink = Sink::new(file, hasher);
        let mut result = head.iter().try_for_each(|c| sink.push(c));
        if result.is_ok() {
            while let Some(chunk) = rx.blocking_recv() {
                if let Err(e) = sink.push(&chunk) {
                    result = Err(e);
                    break;
                }
            }
        }
        sink.finish(result)
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
