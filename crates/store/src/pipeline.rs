//! The streaming write path: request body -> hash -> file.
//!
//! The async side pulls body chunks and hands them over a small bounded
//! channel to one blocking thread that hashes and writes them, so network
//! reads, hashing and disk writes overlap and no blob is ever held whole in
//! memory.

use std::fs::File;
use std::io::{self, Write};

use berth_oci::Hasher;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use crate::{ByteStream, Error, Result};

/// Chunks buffered between the network and the disk writer.
const CHANNEL_DEPTH: usize = 16;
/// Write buffer of the disk writer.
const WRITE_BUFFER: usize = 1 << 20;

/// What [`write_stream`] leaves behind.
pub(crate) struct Written {
    pub file: File,
    pub hasher: Option<Hasher>,
    pub bytes: u64,
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
    let (tx, mut rx) = mpsc::channel::<Bytes>(CHANNEL_DEPTH);
    let writer = tokio::task::spawn_blocking(move || {
        let mut hasher = hasher;
        let mut out = io::BufWriter::with_capacity(WRITE_BUFFER, file);
        let mut bytes = 0u64;
        let mut result: io::Result<()> = Ok(());
        while let Some(chunk) = rx.blocking_recv() {
            if let Some(h) = hasher.as_mut() {
                h.update(&chunk);
            }
            if let Err(e) = out.write_all(&chunk) {
                result = Err(e);
                break;
            }
            bytes += chunk.len() as u64;
        }
        let flushed = out.flush();
        let file = out.into_inner().map_err(|e| e.into_error());
        (file, hasher, bytes, result.and(flushed))
    });

    let mut received = 0u64;
    let mut failure: Option<Error> = None;
    while let Some(item) = body.next().await {
        match item {
            Ok(chunk) => {
                received += chunk.len() as u64;
                if let Some(limit) = len {
                    if received > limit {
                        failure = Some(Error::SizeMismatch {
                            expected: limit,
                            actual: received,
                        });
                        break;
                    }
                }
                if chunk.is_empty() {
                    continue;
                }
                if tx.send(chunk).await.is_err() {
                    // The writer stopped: its error is reported below.
                    break;
                }
            }
            Err(e) => {
                failure = Some(Error::Body(e));
                break;
            }
        }
    }
    drop(tx);
    let (file, hasher, bytes, io_result) = writer
        .await
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
