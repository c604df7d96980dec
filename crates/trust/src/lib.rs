//! Signature verification: which keys and roots a namespace trusts, and
//! whether a manifest carries a valid signature by one of them.
//!
//! Pure functions over bytes: no HTTP, no SQL, no registry. The registry
//! services (`berth_registry::trust`) store the trust material, gather the
//! signatures of a manifest (its `sha256-<hex>.sig` tag, its referrers) and
//! hand them over here as [`Evidence`]; what comes back is a [`Verdict`]
//! they cache and enforce.
//!
//! - [`key`]: public keys as `cosign.pub` holds them (PEM, SubjectPublicKeyInfo):
//!   ECDSA P-256 and P-384, RSA (2048 to 8192 bits), Ed25519; verified
//!   with `ring`.
//! - [`cosign`]: cosign's tag form of signatures: the `sha256-<hex>.sig`
//!   tag holds an image manifest whose layers are simple-signing payloads,
//!   each with its base64 signature in the layer annotation
//!   `dev.cosignproject.cosign/signature`.
//! - [`bundle`]: sigstore bundles (v0.1 to v0.3) pushed as OCI 1.1
//!   referrers, a `messageSignature` over the manifest or a DSSE envelope
//!   of an in-toto statement naming it; verified with the same keys.
//! - [`keyless`]: keyless sigstore bundles (a Fulcio certificate): the
//!   certificate chained to a trusted Fulcio root at the signing time a
//!   trusted Rekor key vouches for, its identity and OIDC issuer allowed.
//! - [`notation`]: Notary Project signatures, JWS envelopes pushed as
//!   referrers, their X.509 chain verified to a trusted root
//!   (`rustls-webpki`) and the signature with the leaf's key.
//! - [`Verdict`]: verified by which key or root, in which signature, or
//!   why not.
//!
//! Must not import: the server, the registry services, the metadata layer.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod bundle;
pub mod cosign;
mod encoding;
pub mod key;
pub mod keyless;
pub mod notation;
#[cfg(test)]
mod tests;

pub use key::{KeyError, PublicKey, TrustedKey};
pub use keyless::{FulcioConfig, FulcioTrust, KeylessError};
pub use notation::{RootError, TrustedRoot};

use berth_oci::Digest;
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
    /// with another key, a certificate chain to no trusted root, or the
    /// payload was changed after signing).
    BadSignature,
    /// A trusted key verifies a signature whose payload names another
    /// manifest: a signature of something else, copied to this one.
    DigestMismatch,
    /// The signature manifest or its payload is not what the signing
    /// tool writes.
    Malformed,
    /// A signature of a kind berth does not verify (yet): notation COSE
    /// envelopes and signing-authority signatures.
    Unsupported,
    /// A trusted signature whose expiry, or whose certificate's, has passed.
    Expired,
}

impl Reason {
    const ALL: [Reason; 7] = [
        Reason::NoTrust,
        Reason::NoSignature,
        Reason::BadSignature,
        Reason::DigestMismatch,
        Reason::Malformed,
        Reason::Unsupported,
        Reason::Expired,
    ];

    /// The stable name (`bad_signature`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NoTrust => "no_trust",
            Reason::NoSignature => "no_signature",
            Reason::BadSignature => "bad_signature",
            Reason::DigestMismatch => "digest_mismatch",
            Reason::Malformed => "malformed",
            Reason::Unsupported => "unsupported",
            Reason::Expired => "expired",
        }
    }

    /// Parses [`Reason::as_str`].
    pub fn parse(s: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Precedence when several signatures fail differently: the most
    /// telling reason is reported.
    fn rank(self) -> u8 {
        match self {
            Reason::NoTrust => 0,
            Reason::NoSignature => 1,
            Reason::Malformed => 2,
            Reason::Unsupported => 3,
            Reason::BadSignature => 4,
            Reason::Expired => 5,
            Reason::DigestMismatch => 6,
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The form of the signature that verified a manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Format {
    /// cosign's `sha256-<hex>.sig` tag (simple-signing payloads).
    #[serde(rename = "cosign")]
    Cosign,
    /// A sigstore bundle pushed as a referrer.
    #[serde(rename = "sigstore-bundle")]
    SigstoreBundle,
    /// A Notary Project JWS envelope pushed as a referrer.
    #[serde(rename = "notation")]
    Notation,
}

impl Format {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Cosign => "cosign",
            Format::SigstoreBundle => "sigstore-bundle",
            Format::Notation => "notation",
        }
    }

    /// Parses [`Format::as_str`].
    pub fn parse(s: &str) -> Option<Format> {
        [Format::Cosign, Format::SigstoreBundle, Format::Notation]
            .into_iter()
            .find(|f| f.as_str() == s)
    }
}

/// The outcome of verifying one manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Verdict {
    /// A trusted key (or a chain to a trusted root) verifies a signature
    /// of this manifest.
    Verified {
        /// The trusted key's (or root's) name.
        key: String,
        /// Its algorithm (`ecdsa-p256`, ...; the JWS `alg` for notation).
        algorithm: String,
        /// The form of the signature.
        format: Format,
        /// The manifest holding the signature (the `.sig` manifest, the
        /// bundle or notation referrer).
        signature: Digest,
        /// When the verification stops holding (Unix ms): the signature's
        /// expiry or its certificates' end of validity; `None`: never.
        #[serde(skip_serializing_if = "Option::is_none")]
        until: Option<i64>,
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

    /// Whether the verdict still holds at `now` (Unix ms).
    pub fn holds_at(&self, now: i64) -> bool {
        match self {
            Verdict::Verified { until: Some(u), .. } => now < *u,
            _ => true,
        }
    }

    /// A sentence for people (`verified by key "release" (ecdsa-p256)`).
    pub fn describe(&self) -> String {
        match self {
            Verdict::Verified {
                key,
                algorithm,
                format: Format::Cosign,
                ..
            } => format!("verified by key {key:?} ({algorithm})"),
            Verdict::Verified {
                key,
                algorithm,
                format: Format::SigstoreBundle,
                ..
            } => format!("verified by key {key:?} ({algorithm}, sigstore bundle)"),
            Verdict::Verified {
                key,
                algorithm,
                format: Format::Notation,
                ..
            } => format!("verified by notation root {key:?} ({algorithm})"),
            Verdict::Unverified { reason, detail } => format!("not verified ({reason}): {detail}"),
        }
    }
}

/// What a namespace trusts.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    /// Public keys (cosign signatures, sigstore bundles).
    pub keys: Vec<TrustedKey>,
    /// X.509 roots (notation signatures).
    pub roots: Vec<TrustedRoot>,
    /// Fulcio roots, allowed identities and Rekor keys (keyless sigstore
    /// bundles).
    pub fulcio: Vec<FulcioTrust>,
}

impl Trust {
    /// Whether nothing is trusted.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.roots.is_empty() && self.fulcio.is_empty()
    }
}

/// The manifest whose signatures are checked.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// Its digest.
    pub digest: &'a Digest,
    /// Its media type.
    pub media_type: &'a str,
    /// Its bytes (what a bundle's `messageSignature` signs).
    pub content: &'a [u8],
}

/// One signature manifest of a subject, with what was read of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evidence {
    /// cosign's `.sig` manifest: its simple-signing signatures.
    Cosign {
        /// The `.sig` manifest.
        manifest: Digest,
        /// Its signatures.
        signatures: Vec<cosign::Signed>,
    },
    /// A sigstore bundle referrer.
    Bundle {
        /// The referrer manifest.
        manifest: Digest,
        /// The bundle JSON (its layer).
        bundle: Vec<u8>,
        /// The simple-signing payloads among its other layers: what a
        /// `messageSignature` may sign instead of the manifest itself.
        payloads: Vec<Vec<u8>>,
    },
    /// A notation signature referrer.
    Notation {
        /// The referrer manifest.
        manifest: Digest,
        /// The envelope's media type (`application/jose+json`, ...).
        media_type: String,
        /// The envelope (its layer).
        envelope: Vec<u8>,
    },
    /// A signature manifest whose signature could not be read.
    Malformed {
        /// The manifest.
        manifest: Digest,
        /// Why.
        why: String,
    },
}

/// A signature that verified: by what, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pass {
    pub(crate) key: String,
    pub(crate) algorithm: String,
    pub(crate) until: Option<i64>,
}

/// Why a signature did not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fail {
    pub(crate) reason: Reason,
    pub(crate) detail: String,
}

impl Fail {
    pub(crate) fn new(reason: Reason, detail: impl Into<String>) -> Fail {
        Fail {
            reason,
            detail: detail.into(),
        }
    }
}

/// The most telling of several failures.
#[derive(Default)]
pub(crate) struct Worst(Option<Fail>);

impl Worst {
    pub(crate) fn note(&mut self, f: Fail) {
        if self
            .0
            .as_ref()
            .is_none_or(|w| f.reason.rank() > w.reason.rank())
        {
            self.0 = Some(f);
        }
    }

    pub(crate) fn into_fail(self, otherwise: impl FnOnce() -> Fail) -> Fail {
        self.0.unwrap_or_else(otherwise)
    }
}

/// The sentence when no trusted key exists for a kind of signature.
pub(crate) fn key_names(keys: &[TrustedKey]) -> String {
    keys.iter()
        .map(|k| k.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Verifies the signatures of `subject` against `trust` at `now` (Unix
/// ms): the first signature that verifies, naming `subject`, makes it
/// verified; otherwise the most telling failure is reported (a signature
/// naming another digest, over an expired one, over a bad one, over one
/// of an unsupported kind, over a malformed one).
pub fn verify(subject: Subject<'_>, evidence: &[Evidence], trust: &Trust, now: i64) -> Verdict {
    if trust.is_empty() {
        return Verdict::unverified(
            Reason::NoTrust,
            "the namespace trusts no key; add one with `berth trust add`",
        );
    }
    if evidence.is_empty() {
        return Verdict::unverified(
            Reason::NoSignature,
            format!(
                "no signature for {} (no cosign tag {}, no sigstore bundle or notation signature among its referrers)",
                subject.digest,
                cosign::signature_tag(subject.digest)
            ),
        );
    }
    let mut worst = Worst::default();
    for e in evidence {
        let (manifest, format, outcome) = match e {
            Evidence::Cosign {
                manifest,
                signatures,
            } => (
                manifest,
                Format::Cosign,
                cosign::check(subject.digest, signatures, &trust.keys),
            ),
            Evidence::Bundle {
                manifest,
                bundle,
                payloads,
            } => (
                manifest,
                Format::SigstoreBundle,
                bundle::check(subject, manifest, bundle, payloads, trust),
            ),
            Evidence::Notation {
                manifest,
                media_type,
                envelope,
            } => (
                manifest,
                Format::Notation,
                notation::check(subject, manifest, media_type, envelope, &trust.roots, now),
            ),
            Evidence::Malformed { why, .. } => {
                worst.note(Fail::new(Reason::Malformed, why.clone()));
                continue;
            }
        };
        match outcome {
            Ok(p) => {
                return Verdict::Verified {
                    key: p.key,
                    algorithm: p.algorithm,
                    format,
                    signature: manifest.clone(),
                    until: p.until,
                }
            }
            Err(f) => worst.note(f),
        }
    }
    let f = worst.into_fail(|| Fail::new(Reason::NoSignature, ""));
    Verdict::unverified(f.reason, f.detail)
}
