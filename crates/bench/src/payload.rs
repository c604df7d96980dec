//! Unique blob payloads without per-request hashing cost.
//!
//! Every blob of a given size shares the same pseudo-random prefix and ends
//! with a 16-byte unique suffix (an operation id and a per-run nonce), so no
//! two pushes deduplicate. The SHA-256 state after the prefix is computed
//! once per size; a blob's digest then costs one clone and 16 bytes of
//! hashing, and its body is two zero-copy slices.

use std::collections::HashMap;

use bytes::Bytes;
use sha2::{Digest as _, Sha256};

/// Length of the unique suffix.
const SUFFIX: usize = 16;

/// One blob to push: its bytes as slices, its length and digest.
#[derive(Clone)]
pub struct Blob {
    parts: [Bytes; 2],
    /// Total length.
    pub len: u64,
    /// `sha256:<hex>`.
    pub digest: String,
}

impl Blob {
    /// The bytes in `start..start+len` as zero-copy slices.
    pub fn slice(&self, start: u64, len: u64) -> Vec<Bytes> {
        let mut out = Vec::with_capacity(2);
        let (mut pos, end) = (start as usize, (start + len) as usize);
        let mut offset = 0usize;
        for part in &self.parts {
            let (a, b) = (offset, offset + part.len());
            if pos < b && pos < end {
                let to = end.min(b);
                out.push(part.slice(pos - a..to - a));
                pos = to;
            }
            offset = b;
        }
        out
    }

    /// A blob of exactly `bytes` (hashed here).
    pub fn from_bytes(bytes: Bytes) -> Blob {
        Blob {
            len: bytes.len() as u64,
            digest: digest_of(&bytes),
            parts: [bytes, Bytes::new()],
        }
    }

    /// All bytes, as slices.
    pub fn all(&self) -> Vec<Bytes> {
        self.slice(0, self.len)
    }
}

/// Generator of unique blobs up to a maximum size.
pub struct Payloads {
    base: Bytes,
    nonce: u64,
    prefix_states: HashMap<usize, Sha256>,
}

impl Payloads {
    /// Prepares payloads of the given sizes (each at least 16 bytes).
    pub fn new(sizes: &[usize]) -> Payloads {
        let max = sizes.iter().copied().max().unwrap_or(SUFFIX).max(SUFFIX);
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut base = Vec::with_capacity(max);
        while base.len() < max {
            // xorshift64: incompressible, fast to generate.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            base.extend_from_slice(&x.to_le_bytes());
        }
        base.truncate(max);
        let prefix_states = sizes
            .iter()
            .map(|&s| {
                let s = s.max(SUFFIX);
                let mut h = Sha256::new();
                h.update(&base[..s - SUFFIX]);
                (s, h)
            })
            .collect();
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Payloads {
            base: Bytes::from(base),
            nonce,
            prefix_states,
        }
    }

    /// The blob number `id` of `size` bytes (`size` must be one given to
    /// [`Payloads::new`]; other sizes are hashed in full).
    pub fn blob(&self, size: usize, id: u64) -> Blob {
        let size = size.max(SUFFIX);
        let mut suffix = [0u8; SUFFIX];
        suffix[..8].copy_from_slice(&id.to_le_bytes());
        suffix[8..].copy_from_slice(&self.nonce.to_le_bytes());
        let mut h = match self.prefix_states.get(&size) {
            Some(h) => h.clone(),
            None => {
                let mut h = Sha256::new();
                h.update(&self.base[..size - SUFFIX]);
                h
            }
        };
        h.update(suffix);
        Blob {
            parts: [
                self.base.slice(..size - SUFFIX),
                Bytes::copy_from_slice(&suffix),
            ],
            len: size as u64,
            digest: format!("sha256:{}", hex::encode(h.finalize())),
        }
    }
}

/// SHA-256 digest string of `bytes`.
pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_are_unique_and_digests_match() {
        let p = Payloads::new(&[1024, 100]);
        let a = p.blob(1024, 1);
        let b = p.blob(1024, 2);
        assert_ne!(a.digest, b.digest);
        let bytes: Vec<u8> = a.all().iter().flat_map(|b| b.to_vec()).collect();
        assert_eq!(bytes.len(), 1024);
        assert_eq!(digest_of(&bytes), a.digest);
        let parts: Vec<u8> = [a.slice(0, 1000), a.slice(1000, 24)]
            .concat()
            .iter()
            .flat_map(|b| b.to_vec())
            .collect();
        assert_eq!(parts, bytes);
        let odd = p.blob(300, 7);
        let bytes: Vec<u8> = odd.all().iter().flat_map(|b| b.to_vec()).collect();
        assert_eq!(digest_of(&bytes), odd.digest);
    }
}
