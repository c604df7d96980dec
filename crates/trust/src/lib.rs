//! Signature verification: which keys a namespace trusts, and whether a
//! manifest carries a valid signature by one of them.
//!
//! Pure functions over bytes: no HTTP, no SQL, no registry. The registry
//! services (`berth_registry::trust`) store the trust material, fetch a
//! signature manifest and its payload blobs, and hand them over here; what
//! comes back is a [`Verdict`] they cache and enforce.
//!
//! - [`key`]: public keys as `cosign.pub` holds them (PEM, SubjectPublicKeyInfo):
//!   ECDSA P-256 and P-384, RSA (2048 to 8192 bits), Ed25519; verified
//!   with `ring`.
//! - [`cosign`]: cosign's tag form of signatures: the `sha256-<hex>.sig`
//!   tag holds an image manifest whose layers are simple-signing payloads,
//!   each with its base64 signature in the layer annotation
//!   `dev.cosignproject.cosign/signature`.
//! - [`Verdict`]: verified by which key, or why not.
//!
//! Must not import: the server, the registry services, the metadata layer.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod cosign;
pub mod key;
#[cfg(test)]
mod tests;

pub use key::{KeyError, PublicKey, TrustedKey};

use serde::Serialize;

/// Why a manifest is not verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The namespace trusts no key: nothing can be verified.
    NoTrust,
    /// No signature was pushed for the manifest.
    NoSignature,
    /// Signatures exist, but no trusted key verifies any of them (signed
    /// with another key, or the payload was changed after signing).
    BadSignature,
    /// A trusted key verifies a signature whose payload names another
    /// manifest: a signature of something else, copied to this one.
    DigestMismatch,
    /// The signature manifest or its payload is not what cosign writes.
    Malformed,
}

impl Reason {
    /// The stable name (`bad_signature`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NoTrust => "no_trust",
            Reason::NoSignature => "no_signature",
            Reason::BadSignature => "bad_signature",
            Reason::DigestMismatch => "digest_mismatch",
            Reason::Malformed => "malformed",
        }
    }

    /// Parses [`Reason::as_str`].
    pub fn parse(s: &str) -> Option<Reason> {
        [
            Reason::NoTrust,
            Reason::NoSignature,
            Reason::BadSignature,
            Reason::DigestMismatch,
            Reason::Malformed,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }

    /// Precedence when several signatures fail differently: the most
    /// telling reason is reported.
    fn rank(self) -> u8 {
        match self {
            Reason::NoTrust => 0,
            Reason::NoSignature => 1,
            Reason::Malformed => 2,
            Reason::BadSignature => 3,
            Reason::DigestMismatch => 4,
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of verifying one manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Verdict {
    /// A trusted key verifies a signature of this manifest.
    Verified {
        /// The trusted key's name.
        key: String,
        /// Its algorithm (`ecdsa-p256`, ...).
        algorithm: String,
    },
    /// No valid signature by trusted material.
    Unverified {
        /// Why.
        reason: Reason,
        /// A sentence for people.
        detail: String,
    },
}

impl Verdict {
    /// Whether a trusted key verified the manifest.
    pub fn is_verified(&self) -> bool {
        matches!(self, Verdict::Verified { .. })
    }

    /// An unverified verdict.
    pub fn unverified(reason: Reason, detail: impl Into<String>) -> Verdict {
        Verdict::Unverified {
            reason,
            detail: detail.into(),
        }
    }

    /// A sentence for people (`verified by key "release" (ecdsa-p256)`).
    pub fn describe(&self) -> String {
        match self {
            Verdict::Verified { key, algorithm } => {
                format!("verified by key {key:?} ({algorithm})")
            }
            Verdict::Unverified { reason, detail } => format!("not verified ({reason}): {detail}"),
        }
    }
}
