//! cosign signatures in their tag form.
//!
//! `cosign sign --key cosign.key registry/acme/web@sha256:abc…` pushes, to
//! the same repository, an image manifest tagged `sha256-abc….sig`. Each of
//! its layers is one signature: the layer blob is a simple-signing payload
//!
//! ```json
//! {"critical":{"identity":{"docker-reference":"registry/acme/web"},
//!   "image":{"docker-manifest-digest":"sha256:abc…"},
//!   "type":"cosign container image signature"},"optional":null}
//! ```
//!
//! (media type [`SIMPLE_SIGNING`]) and the layer's annotation
//! [`SIGNATURE_ANNOTATION`] holds the base64 signature of those exact
//! bytes. A signature counts for a manifest when a trusted key verifies it
//! *and* the payload names that manifest's digest: a valid signature of
//! another image copied under this one's tag proves nothing about it.

use berth_oci::{Digest, Manifest};
use serde_json::Value;

use crate::encoding::any_base64;
use crate::{key_names, Fail, Pass, Reason, TrustedKey, Worst};

/// Media type of a simple-signing payload layer.
pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The layer annotation holding the base64 signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// `critical.type` of a cosign image signature.
pub const PAYLOAD_TYPE: &str = "cosign container image signature";
/// Largest payload read (cosign's are a few hundred bytes).
pub const MAX_PAYLOAD: i64 = 64 * 1024;

/// The tag cosign pushes the signatures of `subject` under
/// (`sha256-<hex>.sig`).
pub fn signature_tag(subject: &Digest) -> String {
    format!("{}-{}.sig", subject.algorithm().as_str(), subject.hex())
}

/// The manifest digest a cosign tag (`sha256-<hex>.sig`, `.att`, `.sbom`)
/// belongs to, if `tag` is one: what signing and attesting push, which
/// enforcement must never refuse.
pub fn tagged_subject(tag: &str) -> Option<Digest> {
    let (stem, suffix) = tag.rsplit_once('.')?;
    if !matches!(suffix, "sig" | "att" | "sbom") {
        return None;
    }
    let (algorithm, hex) = stem.split_once('-')?;
    Digest::parse(&format!("{algorithm}:{hex}")).ok()
}

/// One signature layer of a signature manifest: the payload blob to fetch
/// and the signature over it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureLayer {
    /// The payload blob.
    pub payload: Digest,
    /// Its size as the manifest says.
    pub size: i64,
    /// The base64 signature from the annotation.
    pub signature: String,
}

/// The signature layers of a signature manifest (layers of another media
/// type, or without the annotation, are not signatures and are skipped).
pub fn signature_layers(m: &Manifest) -> Vec<SignatureLayer> {
    m.layers
        .iter()
        .filter(|d| d.media_type == SIMPLE_SIGNING)
        .filter_map(|d| {
            Some(SignatureLayer {
                payload: d.digest.clone(),
                size: d.size,
                signature: d.annotation(SIGNATURE_ANNOTATION)?.to_owned(),
            })
        })
        .collect()
}

/// A signature with its payload bytes, ready to verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The simple-signing payload, byte for byte as signed.
    pub payload: Vec<u8>,
    /// The base64 signature.
    pub signature: String,
}

/// The manifest digest a simple-signing payload names, or why it is not
/// one.
pub fn payload_digest(payload: &[u8]) -> Result<String, String> {
    let v: Value =
        serde_json::from_slice(payload).map_err(|e| format!("the payload is not JSON: {e}"))?;
    let critical = &v["critical"];
    match critical["type"].as_str() {
        Some(PAYLOAD_TYPE) => {}
        other => {
            return Err(format!(
                "the payload's critical.type is {other:?}, not {PAYLOAD_TYPE:?}"
            ))
        }
    }
    critical["image"]["docker-manifest-digest"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| "the payload has no critical.image.docker-manifest-digest".to_owned())
}

/// Checks the signatures of one `.sig` manifest of `subject` against the
/// trusted `keys`: the first signature a key verifies whose payload names
/// `subject` passes; otherwise the most telling failure is reported (a
/// payload naming another digest, over a bad signature, over a malformed
/// one).
pub(crate) fn check(
    subject: &Digest,
    signatures: &[Signed],
    keys: &[TrustedKey],
) -> Result<Pass, Fail> {
    if keys.is_empty() {
        return Err(Fail::new(
            Reason::BadSignature,
            "the namespace trusts no public key for cosign signatures (it trusts notation roots only); add one with `berth trust add --cosign-key`",
        ));
    }
    let mut worst = Worst::default();
    for s in signatures {
        let Some(raw) = any_base64(&s.signature) else {
            worst.note(Fail::new(
                Reason::Malformed,
                "a cosign signature annotation is not base64",
            ));
            continue;
        };
        let Some(k) = keys.iter().find(|k| k.key.verifies(&s.payload, &raw)) else {
            worst.note(Fail::new(
                Reason::BadSignature,
                format!(
                    "no trusted key ({}) verifies the signature",
                    key_names(keys)
                ),
            ));
            continue;
        };
        match payload_digest(&s.payload) {
            Ok(d) if d == subject.as_str() => {
                return Ok(Pass {
                    key: k.name.clone(),
                    algorithm: k.key.algorithm().as_str().to_owned(),
                    until: None,
                })
            }
            Ok(d) => worst.note(Fail::new(
                Reason::DigestMismatch,
                format!("key {:?} signed {d}, not {subject}", k.name),
            )),
            Err(why) => worst.note(Fail::new(Reason::Malformed, why)),
        }
    }
    Err(worst.into_fail(|| Fail::new(Reason::Malformed, "the .sig manifest holds no signature")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags() {
        let d = Digest::sha256(b"x");
        let tag = signature_tag(&d);
        assert_eq!(tag, format!("sha256-{}.sig", d.hex()));
        assert_eq!(tagged_subject(&tag), Some(d.clone()));
        assert_eq!(
            tagged_subject(&format!("sha256-{}.att", d.hex())),
            Some(d.clone())
        );
        assert_eq!(tagged_subject("v1.sig"), None);
        assert_eq!(tagged_subject("sha256-abc.sig"), None);
        assert_eq!(tagged_subject(&format!("sha256-{}.txt", d.hex())), None);
    }

    #[test]
    fn payloads() {
        let ok = br#"{"critical":{"identity":{"docker-reference":"r/a"},"image":{"docker-manifest-digest":"sha256:ab"},"type":"cosign container image signature"},"optional":null}"#;
        assert_eq!(payload_digest(ok).unwrap(), "sha256:ab");
        assert!(payload_digest(b"{}").unwrap_err().contains("critical.type"));
        assert!(payload_digest(b"nope").unwrap_err().contains("not JSON"));
    }

    #[test]
    fn no_key_for_cosign() {
        let d = Digest::sha256(b"x");
        let f = check(&d, &[], &[]).unwrap_err();
        assert_eq!(f.reason, Reason::BadSignature);
    }
}
