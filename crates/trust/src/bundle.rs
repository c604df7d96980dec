//! Sigstore bundles pushed as OCI 1.1 referrers.
//!
//! `cosign sign --new-bundle-format` (and `cosign attest`, other sigstore
//! clients) push, in the image's repository, a manifest whose
//! `artifactType` is the bundle's media type
//! (`application/vnd.dev.sigstore.bundle.v0.3+json`, or
//! `application/vnd.dev.sigstore.bundle+json;version=0.2`), whose single
//! layer is the bundle JSON and whose `subject` is the image. The bundle
//! holds the verification material and one of:
//!
//! - `messageSignature`: a signature over the artifact itself, here the
//!   subject manifest's bytes, with `messageDigest` its digest (which must
//!   be the subject's);
//! - `dsseEnvelope`: a DSSE envelope whose signatures are over
//!   `PAE(payloadType, payload)` (`"DSSEv1" SP len(type) SP type SP
//!   len(body) SP body`), the payload an in-toto statement whose `subject`
//!   must list the image's digest.
//!
//! Signatures are verified with the namespace's public keys (those of
//! `cosign.pub`, as for the tag form). A bundle whose verification
//! material is a certificate (keyless signing with Fulcio) is reported as
//! [`Reason::Unsupported`]: the certificate's identity and the
//! transparency log are not checked yet. Transparency-log entries of
//! key-based bundles are not checked either: the trusted key is the
//! authority.

use berth_oci::Digest;
use serde_json::Value;
use sha2::Digest as _;

use crate::encoding::any_base64;
use crate::{key_names, Fail, Pass, Reason, Subject, TrustedKey, Worst};

/// The media type prefix of every sigstore bundle version.
pub const MEDIA_TYPE_PREFIX: &str = "application/vnd.dev.sigstore.bundle";
/// Largest bundle read (key-based ones are a few KB; with a certificate
/// chain and log entries some tens).
pub const MAX_BUNDLE: i64 = 1024 * 1024;
/// The DSSE payload type of an in-toto statement.
pub const IN_TOTO: &str = "application/vnd.in-toto+json";

/// Whether an artifact type (or layer media type) is a sigstore bundle's.
pub fn is_bundle(media_type: &str) -> bool {
    media_type.starts_with(MEDIA_TYPE_PREFIX)
}

/// DSSE's pre-authentication encoding of `payload` of `payload_type`.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// Checks the bundle `bytes` (the layer of referrer `manifest`) of
/// `subject` against the trusted `keys`.
pub(crate) fn check(
    subject: Subject<'_>,
    manifest: &Digest,
    bytes: &[u8],
    keys: &[TrustedKey],
) -> Result<Pass, Fail> {
    let malformed = |why: String| Fail::new(Reason::Malformed, format!("bundle {manifest}: {why}"));
    let b: Value =
        serde_json::from_slice(bytes).map_err(|e| malformed(format!("not JSON: {e}")))?;
    match b["mediaType"].as_str() {
        Some(t) if is_bundle(t) => {}
        other => {
            return Err(malformed(format!(
                "mediaType {other:?} is no sigstore bundle's"
            )))
        }
    }
    let material = &b["verificationMaterial"];
    if !material["certificate"].is_null() || !material["x509CertificateChain"].is_null() {
        return Err(Fail::new(
            Reason::Unsupported,
            format!(
                "bundle {manifest} is a keyless signature (its verification material is a certificate): \
                 keyless signatures are not verified yet: add the signer's key \
                 (berth trust add NAMESPACE --cosign-key cosign.pub) and sign with it"
            ),
        ));
    }
    if keys.is_empty() {
        return Err(Fail::new(
            Reason::BadSignature,
            "the namespace trusts no public key for sigstore bundles (it trusts notation roots only); add one with `berth trust add --cosign-key`",
        ));
    }
    let bad = || {
        Fail::new(
            Reason::BadSignature,
            format!(
                "no trusted key ({}) verifies the signature of bundle {manifest}",
                key_names(keys)
            ),
        )
    };
    if let Some(ms) = b.get("messageSignature").filter(|v| !v.is_null()) {
        let md = &ms["messageDigest"];
        let named = any_base64(md["digest"].as_str().unwrap_or(""))
            .ok_or_else(|| malformed("messageDigest.digest is not base64".into()))?;
        let actual = match md["algorithm"].as_str() {
            Some("SHA2_256") => sha2::Sha256::digest(subject.content).to_vec(),
            Some("SHA2_384") => sha2::Sha384::digest(subject.content).to_vec(),
            Some("SHA2_512") => sha2::Sha512::digest(subject.content).to_vec(),
            other => {
                return Err(malformed(format!(
                    "messageDigest.algorithm {other:?} is not SHA2_256, SHA2_384 or SHA2_512"
                )))
            }
        };
        if named != actual {
            return Err(Fail::new(
                Reason::DigestMismatch,
                format!(
                    "bundle {manifest} signs the message with digest {}, not {} (its subject)",
                    hex::encode(&named),
                    subject.digest
                ),
            ));
        }
        let sig = any_base64(ms["signature"].as_str().unwrap_or(""))
            .ok_or_else(|| malformed("messageSignature.signature is not base64".into()))?;
        let k = keys
            .iter()
            .find(|k| k.key.verifies(subject.content, &sig))
            .ok_or_else(bad)?;
        return Ok(pass(k));
    }
    let env = b
        .get("dsseEnvelope")
        .filter(|v| !v.is_null())
        .ok_or_else(|| malformed("neither messageSignature nor dsseEnvelope".into()))?;
    let payload_type = env["payloadType"].as_str().unwrap_or("");
    let payload = any_base64(env["payload"].as_str().unwrap_or(""))
        .ok_or_else(|| malformed("dsseEnvelope.payload is not base64".into()))?;
    let signed = pae(payload_type, &payload);
    let sigs = env["signatures"].as_array().cloned().unwrap_or_default();
    let mut worst = Worst::default();
    let verified_by = sigs.iter().find_map(|s| {
        let Some(raw) = any_base64(s["sig"].as_str().unwrap_or("")) else {
            worst.note(malformed("a DSSE signature is not base64".into()));
            return None;
        };
        keys.iter().find(|k| k.key.verifies(&signed, &raw))
    });
    let Some(k) = verified_by else {
        worst.note(bad());
        return Err(worst.into_fail(bad));
    };
    if payload_type != IN_TOTO {
        return Err(malformed(format!(
            "the DSSE payload type is {payload_type:?}, not {IN_TOTO:?}"
        )));
    }
    let statement: Value = serde_json::from_slice(&payload)
        .map_err(|e| malformed(format!("the in-toto statement is not JSON: {e}")))?;
    let subjects = statement["subject"].as_array().cloned().unwrap_or_default();
    let algorithm = subject.digest.algorithm().as_str();
    let names: Vec<String> = subjects
        .iter()
        .filter_map(|s| s["digest"][algorithm].as_str())
        .map(|hex| format!("{algorithm}:{hex}"))
        .collect();
    if names.iter().any(|n| n == subject.digest.as_str()) {
        return Ok(pass(k));
    }
    Err(Fail::new(
        Reason::DigestMismatch,
        format!(
            "key {:?} signed an in-toto statement about {}, not {}",
            k.name,
            if names.is_empty() {
                "no sha256 digest".to_owned()
            } else {
                names.join(", ")
            },
            subject.digest
        ),
    ))
}

fn pass(k: &TrustedKey) -> Pass {
    Pass {
        key: k.name.clone(),
        algorithm: k.key.algorithm().as_str().to_owned(),
        until: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_is_the_dsse_encoding() {
        // The example of the DSSE specification (protocol.md).
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }

    #[test]
    fn keyless_bundles_are_named_as_such() {
        let d = Digest::sha256(b"m");
        let subject = Subject {
            digest: &d,
            media_type: "application/vnd.oci.image.manifest.v1+json",
            content: b"m",
        };
        let b = br#"{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json",
            "verificationMaterial":{"certificate":{"rawBytes":"AAAA"}},
            "messageSignature":{"messageDigest":{"algorithm":"SHA2_256","digest":"AA=="},"signature":"AA=="}}"#;
        let f = check(subject, &d, b, &[]).unwrap_err();
        assert_eq!(f.reason, Reason::Unsupported);
        assert!(f
            .detail
            .contains("keyless signatures are not verified yet: add the signer's key"));
        let f = check(subject, &d, b"{}", &[]).unwrap_err();
        assert_eq!(f.reason, Reason::Malformed);
    }
}
