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
//! - `messageSignature`: a signature over an artifact the bundle does not
//!   hold, `messageDigest` its digest: the subject manifest's bytes, or a
//!   cosign simple-signing payload naming the subject, which the bundle's
//!   manifest then carries as a further layer (media type
//!   [`cosign::SIMPLE_SIGNING`], the blob whose digest is the
//!   `messageDigest`);
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
use crate::{cosign, key_names, keyless, Fail, Pass, Reason, Subject, Trust, TrustedKey};

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

/// Checks the bundle `bytes` (the layer of referrer `manifest`, beside
/// the simple-signing `payloads` of its other layers) of `subject`
/// against what the namespace trusts: its public keys, or for a keyless
/// bundle its Fulcio trust.
pub(crate) fn check(
    subject: Subject<'_>,
    manifest: &Digest,
    bytes: &[u8],
    payloads: &[Vec<u8>],
    trust: &Trust,
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
    let chain = if material["certificate"].is_null() && material["x509CertificateChain"].is_null() {
        None
    } else {
        Some(keyless::certificates(material).ok_or_else(|| {
            malformed("its certificate (rawBytes) is missing or not base64".into())
        })?)
    };
    let tlog = material["tlogEntries"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    // Who may have signed: the namespace's public keys, or the signing
    // certificate's key once a Fulcio trust of the namespace accepts it.
    let signers = |logged: keyless::Logged<'_>| -> Result<Vec<TrustedKey>, Fail> {
        match &chain {
            Some(chain) => keyless::signer(chain, &tlog, &logged, &trust.fulcio)
                .map(|k| vec![k])
                .map_err(|f| {
                    Fail::new(
                        f.reason,
                        format!("keyless bundle {manifest}: {}", f.detail),
                    )
                }),
            None if trust.keys.is_empty() => Err(Fail::new(
                Reason::BadSignature,
                "the namespace trusts no public key for sigstore bundles; add one with `berth trust add --cosign-key`",
            )),
            None => Ok(trust.keys.clone()),
        }
    };
    let bad = |keys: &[TrustedKey]| {
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
        let algorithm = md["algorithm"].as_str().unwrap_or("");
        let hash = |data: &[u8]| -> Option<Vec<u8>> {
            match algorithm {
                "SHA2_256" => Some(sha2::Sha256::digest(data).to_vec()),
                "SHA2_384" => Some(sha2::Sha384::digest(data).to_vec()),
                "SHA2_512" => Some(sha2::Sha512::digest(data).to_vec()),
                _ => None,
            }
        };
        let actual = hash(subject.content).ok_or_else(|| {
            malformed(format!(
                "messageDigest.algorithm {algorithm:?} is not SHA2_256, SHA2_384 or SHA2_512"
            ))
        })?;
        let sig = any_base64(ms["signature"].as_str().unwrap_or(""))
            .ok_or_else(|| malformed("messageSignature.signature is not base64".into()))?;
        let keys = &signers(keyless::Logged::Message {
            digest: &named,
            signature: &sig,
        })?;
        // The message is the subject manifest itself, or a simple-signing
        // payload (a layer of the referrer) naming it.
        if named == actual {
            let k = keys
                .iter()
                .find(|k| k.key.verifies(subject.content, &sig))
                .ok_or_else(|| bad(keys))?;
            return Ok(pass(k));
        }
        let Some(payload) = payloads
            .iter()
            .find(|p| hash(p).is_some_and(|h| h == named))
        else {
            return Err(if payloads.is_empty() {
                Fail::new(
                    Reason::DigestMismatch,
                    format!(
                        "bundle {manifest} signs a message with digest {}: neither its subject {} \
                         nor a simple-signing payload of the bundle's manifest",
                        hex::encode(&named),
                        subject.digest
                    ),
                )
            } else {
                Fail::new(
                    Reason::BadSignature,
                    format!(
                        "bundle {manifest} signs a message with digest {}, which none of its \
                         simple-signing payloads has: a payload was changed after signing",
                        hex::encode(&named)
                    ),
                )
            });
        };
        let k = keys
            .iter()
            .find(|k| k.key.verifies(payload, &sig))
            .ok_or_else(|| bad(keys))?;
        return match cosign::payload_digest(payload) {
            Ok(d) if d == subject.digest.as_str() => Ok(pass(k)),
            Ok(d) => Err(Fail::new(
                Reason::DigestMismatch,
                format!(
                    "key {:?} signed (bundle {manifest}) a simple-signing payload naming {d}, not {}",
                    k.name, subject.digest
                ),
            )),
            Err(why) => Err(malformed(why)),
        };
    }
    let env = b
        .get("dsseEnvelope")
        .filter(|v| !v.is_null())
        .ok_or_else(|| malformed("neither messageSignature nor dsseEnvelope".into()))?;
    let payload_type = env["payloadType"].as_str().unwrap_or("");
    let payload = any_base64(env["payload"].as_str().unwrap_or(""))
        .ok_or_else(|| malformed("dsseEnvelope.payload is not base64".into()))?;
    let signed = pae(payload_type, &payload);
    let sigs = env["signatures"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| any_base64(s["sig"].as_str().unwrap_or("")))
                .collect::<Option<Vec<_>>>()
        })
        .unwrap_or_default()
        .ok_or_else(|| malformed("a DSSE signature is not base64".into()))?;
    let keys = &signers(keyless::Logged::Dsse {
        payload: &payload,
        signatures: &sigs,
    })?;
    let k = sigs
        .iter()
        .find_map(|raw| keys.iter().find(|k| k.key.verifies(&signed, raw)))
        .ok_or_else(|| bad(keys))?;
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
    fn keyless_bundles_without_fulcio_trust_say_what_to_add() {
        let d = Digest::sha256(b"m");
        let subject = Subject {
            digest: &d,
            media_type: "application/vnd.oci.image.manifest.v1+json",
            content: b"m",
        };
        let b = br#"{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json",
            "verificationMaterial":{"certificate":{"rawBytes":"AAAA"}},
            "messageSignature":{"messageDigest":{"algorithm":"SHA2_256","digest":"AA=="},"signature":"AA=="}}"#;
        let f = check(subject, &d, b, &[], &Trust::default()).unwrap_err();
        assert_eq!(f.reason, Reason::BadSignature);
        assert!(f.detail.contains("trusts no Fulcio root"), "{}", f.detail);
        assert!(f.detail.contains("--fulcio-root"), "{}", f.detail);
        let f = check(subject, &d, b"{}", &[], &Trust::default()).unwrap_err();
        assert_eq!(f.reason, Reason::Malformed);
    }
}
