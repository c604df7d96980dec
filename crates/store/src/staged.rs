//! Blobs written by their producer into a file, then published without
//! being copied ([`Staged`]).
//!
//! The pull-through mirror receives a blob from an upstream and streams it
//! to its clients while it arrives: it needs the bytes in a file it can
//! read back as they are written, and then the blob stored under its
//! digest. A [`Staged`] is that file. It hashes every byte written to it,
//! so what is published is verified over exactly the bytes in the file.
//! [`crate::BlobStore::stage`] opens one in the store's own temporary area
//! (a filesystem store: `tmp/`, on the same filesystem as `blobs/`), and
//! [`crate::BlobStore::publish_staged`] then publishes it by one
//! `fdatasync`, a rename and a `fsync` of the directory: no second read,
//! hash or copy. A store that keeps no local files (object storage) opens
//! none; the producer then stages in a directory of its own
//! ([`Staged::create`]) and the store publishes the file by streaming it
//! through [`crate::BlobStore::put`], which verifies it again on its way.

use std::fs::File;
use std::io::{self, IoSlice, Write};
use std::path::{Path, PathBuf};

use berth_oci::{Algorithm, Digest, Hasher};
use bytes::Bytes;

use crate::pipeline::Writeback;

/// A blob being written into a local file, hashed as it is written.
///
/// Writes are blocking: call [`Staged::write`] from a blocking thread.
/// The file is removed when the `Staged` is dropped unless it was
/// published (readers that opened it keep reading it).
pub struct Staged {
    file: File,
    path: PathBuf,
    hasher: Hasher,
    bytes: u64,
    writeback: Writeback,
    /// The store directory it lives in, when a store opened it (it can be
    /// published there by rename).
    pub(crate) home: Option<PathBuf>,
    /// Published: the file is not removed on drop.
    kept: bool,
}

impl std::fmt::Debug for Staged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Staged")
            .field("path", &self.path)
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl Staged {
    /// Creates an empty staging file in `dir` (outside any store) for a
    /// blob hashed with `algorithm`.
    pub fn create(dir: &Path, algorithm: Algorithm) -> io::Result<Staged> {
        Staged::create_in(dir, algorithm, None)
    }

    pub(crate) fn create_in(
        dir: &Path,
        algorithm: Algorithm,
        home: Option<PathBuf>,
    ) -> io::Result<Staged> {
        let path = dir.join(format!("{}.part", uuid::Uuid::new_v4()));
        let file = File::create(&path)?;
        Ok(Staged {
            file,
            path,
            hasher: algorithm.hasher(),
            bytes: 0,
            writeback: Writeback::default(),
            home,
            kept: false,
        })
    }

    /// Where the file is (readers open it to follow the bytes written).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The digest of the bytes written so far.
    pub fn digest(&self) -> Digest {
        self.hasher.clone().finish()
    }

    /// Hashes `chunks` and appends them to the file, in one vectored write
    /// where the system takes them all (blocking). On error the file may
    /// hold part of them: the `Staged` must not be published then.
    pub fn write(&mut self, chunks: &[Bytes]) -> io::Result<()> {
        for c in chunks {
            self.hasher.update(c);
        }
        write_all_vectored(&mut self.file, chunks)?;
        self.bytes += chunks.iter().map(|c| c.len() as u64).sum::<u64>();
        // In a store's area, starts writeback of what was written on a
        // helper thread every few MiB, so the fsync that publishes the
        // blob has only the tail to flush. (A file outside a store is
        // only read back: it needs no durability.)
        if self.home.is_some() {
            self.writeback.maybe_kick(&self.file, self.bytes)?;
        }
        Ok(())
    }

    /// The file is no longer the `Staged`'s to remove (published).
    pub(crate) fn keep(&mut self) {
        self.kept = true;
    }

    /// Waits for the background writeback; returns the file and its path,
    /// for the caller to publish (then [`Staged::keep`]).
    pub(crate) fn finish(&mut self) -> io::Result<(&File, PathBuf)> {
        std::mem::take(&mut self.writeback).finish()?;
        Ok((&self.file, self.path.clone()))
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.kept {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Writes every byte of `chunks`, as few `writev` calls as the system
/// allows (each takes up to `IOV_MAX` buffers).
fn write_all_vectored(file: &mut File, chunks: &[Bytes]) -> io::Result<()> {
    let mut first = 0;
    let mut offset = 0usize;
    loop {
        // Past what was written, and past empty chunks.
        while first < chunks.len() && chunks[first].len() == offset {
            first += 1;
            offset = 0;
        }
        if first == chunks.len() {
            return Ok(());
        }
        let slices: Vec<IoSlice<'_>> = std::iter::once(&chunks[first][offset..])
            .chain(chunks[first + 1..].iter().map(|c| &c[..]))
            .take(1024)
            .map(IoSlice::new)
            .collect();
        let mut n = match file.write_vectored(&slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        // Skip what was written.
        while first < chunks.len() && n > 0 {
            let left = chunks[first].len() - offset;
            if n >= left {
                n -= left;
                first += 1;
                offset = 0;
            } else {
                offset += n;
                n = 0;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_hashes_every_byte_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Staged::create(dir.path(), Algorithm::Sha256).unwrap();
        let chunks: Vec<Bytes> = (0..3000u32)
            .map(|i| Bytes::from(vec![(i % 251) as u8; (i as usize % 97) + 1]))
            .collect();
        // Empty chunks among them are fine.
        s.write(&[Bytes::new()]).unwrap();
        for batch in chunks.chunks(700) {
            s.write(batch).unwrap();
        }
        let all: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        assert_eq!(s.bytes(), all.len() as u64);
        assert_eq!(s.digest(), Digest::sha256(&all));
        assert_eq!(std::fs::read(s.path()).unwrap(), all);
        let path = s.path().to_owned();
        drop(s);
        assert!(!path.exists(), "an unpublished staging file is removed");
    }
}
