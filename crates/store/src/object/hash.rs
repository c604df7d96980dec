//! A SHA-256 whose state survives between requests and replicas.
//!
//! An upload session on object storage receives its chunks through any
//! replica, so the digest's hashing state travels with the session state
//! (as hex in its JSON): sha2 0.11 serialises it (the 32-byte state words,
//! the buffered tail of an incomplete block and the processed length), so
//! each byte is hashed once, as it streams in, and never read back.

use berth_oci::{Algorithm, Digest};
use sha2_resumable::digest::common::hazmat::{SerializableState, SerializedState};
use sha2_resumable::digest::Digest as _;
use sha2_resumable::Sha256;

/// SHA-256 over the bytes of an upload, resumable from its serialised form.
#[derive(Clone, Default)]
pub(crate) struct ResumableSha256(Sha256);

impl ResumableSha256 {
    /// Feeds bytes.
    pub(crate) fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The digest of everything fed so far (the state is kept).
    pub(crate) fn digest(&self) -> Digest {
        let hex = hex::encode(self.0.clone().finalize());
        // 64 lowercase hex characters always parse.
        Digest::parse(&format!("sha256:{hex}"))
            .unwrap_or_else(|_| Digest::compute(Algorithm::Sha256, b""))
    }

    /// The state as hex, for the session's JSON.
    pub(crate) fn save(&self) -> String {
        hex::encode(self.0.serialize().as_slice())
    }

    /// Restores a state saved by [`ResumableSha256::save`]; `None` if it is
    /// not one.
    pub(crate) fn restore(saved: &str) -> Option<ResumableSha256> {
        let raw = hex::decode(saved).ok()?;
        let state = SerializedState::<Sha256>::try_from(raw.as_slice()).ok()?;
        Sha256::deserialize(&state).ok().map(ResumableSha256)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::ResumableSha256;
    use berth_oci::Digest;

    /// A small deterministic generator (no dependency for test data).
    fn next(seed: &mut u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    }

    #[test]
    fn resumed_hashing_matches_one_pass_on_random_splits() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for round in 0..200 {
            let len = (next(&mut seed) % 5000) as usize + round;
            let data: Vec<u8> = (0..len).map(|_| next(&mut seed) as u8).collect();
            let mut h = ResumableSha256::default();
            let mut at = 0;
            while at < len {
                let step = ((next(&mut seed) % 300) as usize).min(len - at);
                h.update(&data[at..at + step]);
                at += step;
                // Every step goes through the saved form, as between requests.
                h = ResumableSha256::restore(&h.save()).unwrap();
            }
            assert_eq!(h.digest(), Digest::sha256(&data), "length {len}");
            let reference = <sha2::Sha256 as sha2::Digest>::digest(&data);
            assert_eq!(h.digest().hex(), hex::encode(reference));
        }
    }

    #[test]
    fn garbage_is_not_a_state() {
        assert!(ResumableSha256::restore("zz").is_none());
        assert!(ResumableSha256::restore("00").is_none());
        assert!(ResumableSha256::restore(&ResumableSha256::default().save()).is_some());
    }
}
