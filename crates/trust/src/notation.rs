//! Notary Project (notation) signatures, JWS envelopes.
//!
//! `notation sign` pushes, in the image's repository, a manifest with
//! `artifactType` [`ARTIFACT_TYPE`], `subject` the image, and one layer:
//! the signature envelope. Its JWS form ([`JWS`], JSON serialization):
//!
//! ```json
//! {"payload": "<base64url {\"targetArtifact\": {mediaType, digest, size}}>",
//!  "protected": "<base64url {\"alg\": \"ES256\", \"cty\": \"application/vnd.cncf.notary.payload.v1+json\",
//!                \"crit\": [\"io.cncf.notary.signingScheme\"], \"io.cncf.notary.signingScheme\": \"notary.x509\",
//!                \"io.cncf.notary.signingTime\": \"2024-05-01T12:00:00Z\", \"io.cncf.notary.expiry\"?: ...}>",
//!  "header": {"x5c": ["<base64 DER leaf>", "<intermediate>", ..., "<root>"], "io.cncf.notary.signingAgent": ...},
//!  "signature": "<base64url>"}
//! ```
//!
//! Verified, in this order: the header (`alg` PS256/384/512 or ES256/384,
//! `cty`, the `notary.x509` scheme, `crit` naming only what is understood);
//! the `x5c` chain up to a root the namespace trusts (`rustls-webpki`:
//! signatures, CA constraints, the code-signing extended key usage when
//! present), valid at the signing time and now; the JWS signature with the
//! leaf's key over `protected.payload`; the expiry; and the payload's
//! `targetArtifact`, whose digest, size and media type must be the
//! subject manifest's. The verification holds until the expiry or the end
//! of validity of a certificate of the chain, whichever comes first.
//!
//! COSE envelopes (`application/cose`) and the `notary.x509.signingAuthority`
//! scheme (which needs an RFC 3161 timestamp) are reported as
//! [`Reason::Unsupported`]; so is ES512 (ECDSA P-521, which `ring` lacks).

use std::time::Duration;

use berth_oci::time::Timestamp;
use berth_oci::Digest;
use rustls_pki_types::{CertificateDer, UnixTime};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::encoding::{any_base64, base64url};
use crate::{Fail, Pass, PublicKey, Reason, Subject};

/// `artifactType` of a notation signature manifest.
pub const ARTIFACT_TYPE: &str = "application/vnd.cncf.notary.signature";
/// Media type of a JWS envelope.
pub const JWS: &str = "application/jose+json";
/// Media type of a COSE envelope.
pub const COSE: &str = "application/cose";
/// `cty` of a notation payload.
pub const PAYLOAD_TYPE: &str = "application/vnd.cncf.notary.payload.v1+json";
/// Largest envelope read (a chain of a few certificates: some KB).
pub const MAX_ENVELOPE: i64 = 256 * 1024;

const SCHEME: &str = "io.cncf.notary.signingScheme";
const SIGNING_TIME: &str = "io.cncf.notary.signingTime";
const EXPIRY: &str = "io.cncf.notary.expiry";
const AUTHENTIC_SIGNING_TIME: &str = "io.cncf.notary.authenticSigningTime";
/// id-kp-codeSigning (1.3.6.1.5.5.7.3.3), the OID's value bytes.
const CODE_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];

/// Why a root certificate was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RootError {
    /// Not PEM.
    #[error("not a PEM certificate ({0}); give the root CA certificate (ca.pem) notation's trust store holds")]
    Pem(String),
    /// A PEM block of another kind.
    #[error("the PEM block is {0:?}, not \"CERTIFICATE\"; give the root CA certificate")]
    Tag(String),
    /// A certificate that does not parse or cannot anchor a chain.
    #[error("the certificate does not parse: {0}")]
    Certificate(String),
}

/// The root certificates of one trusted name (one PEM file: usually one
/// certificate, a bundle of several is accepted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootCerts {
    ders: Vec<Vec<u8>>,
    fingerprint: String,
    algorithm: String,
    subject: String,
}

impl RootCerts {
    /// Parses PEM `CERTIFICATE` blocks.
    pub fn from_pem(text: &str) -> Result<RootCerts, RootError> {
        let blocks = pem::parse_many(text.trim()).map_err(|e| RootError::Pem(e.to_string()))?;
        if blocks.is_empty() {
            return Err(RootError::Pem("no PEM block".into()));
        }
        let mut ders = Vec::new();
        let mut first: Option<(String, String)> = None;
        for b in &blocks {
            if b.tag() != "CERTIFICATE" {
                return Err(RootError::Tag(b.tag().to_owned()));
            }
            let der = b.contents().to_vec();
            let (_, cert) = x509_parser::parse_x509_certificate(&der)
                .map_err(|e| RootError::Certificate(e.to_string()))?;
            webpki::anchor_from_trusted_cert(&CertificateDer::from(der.as_slice()))
                .map_err(|e| RootError::Certificate(format!("{e:?}")))?;
            if first.is_none() {
                let algorithm = PublicKey::from_spki_der(cert.public_key().raw)
                    .map(|k| format!("x509-{}", k.algorithm().as_str()))
                    .unwrap_or_else(|_| "x509".to_owned());
                first = Some((algorithm, cert.subject().to_string()));
            }
            ders.push(der);
        }
        let (algorithm, subject) = first.unwrap_or_default();
        Ok(RootCerts {
            fingerprint: hex::encode(Sha256::digest(&ders[0])),
            ders,
            algorithm,
            subject,
        })
    }

    /// SHA-256 of the (first) certificate's DER, hex.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// `x509-` and the root key's kind (`x509-ecdsa-p256`, ...).
    pub fn algorithm(&self) -> &str {
        &self.algorithm
    }

    /// The (first) certificate's subject name.
    pub fn subject(&self) -> &str {
        &self.subject
    }
}

/// A root a namespace trusts for notation signatures, under its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedRoot {
    /// The name it was added under.
    pub name: String,
    /// Its certificates.
    pub certs: RootCerts,
}

fn seconds(t: i64) -> UnixTime {
    UnixTime::since_unix_epoch(Duration::from_secs(t.max(0) as u64))
}

fn time_text(t: i64) -> String {
    Timestamp(t).to_string()
}

/// Checks the envelope (the layer of referrer `manifest`, of
/// `media_type`) of `subject` against the trusted `roots` at `now_ms`.
pub(crate) fn check(
    subject: Subject<'_>,
    manifest: &Digest,
    media_type: &str,
    envelope: &[u8],
    roots: &[TrustedRoot],
    now_ms: i64,
) -> Result<Pass, Fail> {
    let malformed = |why: String| {
        Fail::new(
            Reason::Malformed,
            format!("notation signature {manifest}: {why}"),
        )
    };
    let unsupported = |why: String| {
        Fail::new(
            Reason::Unsupported,
            format!("notation signature {manifest}: {why}"),
        )
    };
    if media_type == COSE {
        return Err(unsupported(
            "COSE envelopes are not verified yet; sign with `notation sign --signature-format jws`"
                .into(),
        ));
    }
    if media_type != JWS {
        return Err(malformed(format!(
            "envelope media type {media_type:?} is neither {JWS} nor {COSE}"
        )));
    }
    let env: Value =
        serde_json::from_slice(envelope).map_err(|e| malformed(format!("not JSON: {e}")))?;
    let text = |k: &str| env[k].as_str().unwrap_or("");
    let (protected_b64, payload_b64) = (text("protected"), text("payload"));
    let header: Value = base64url(protected_b64)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| malformed("the protected header is not base64url JSON".into()))?;
    let signature = base64url(text("signature"))
        .ok_or_else(|| malformed("the signature is not base64url".into()))?;
    let alg = header["alg"].as_str().unwrap_or("");
    if !matches!(
        alg,
        "PS256" | "PS384" | "PS512" | "ES256" | "ES384" | "ES512"
    ) {
        return Err(malformed(format!(
            "alg {alg:?} is not one notation signs with"
        )));
    }
    if header["cty"].as_str() != Some(PAYLOAD_TYPE) {
        return Err(malformed(format!("cty is not {PAYLOAD_TYPE:?}")));
    }
    match header[SCHEME].as_str() {
        Some("notary.x509") => {}
        Some("notary.x509.signingAuthority") => {
            return Err(unsupported(
                "the notary.x509.signingAuthority scheme is not verified yet (use notary.x509)"
                    .into(),
            ))
        }
        other => return Err(malformed(format!("signing scheme {other:?}"))),
    }
    let crit: Vec<&str> = header["crit"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if let Some(unknown) = crit
        .iter()
        .find(|c| ![SCHEME, EXPIRY, AUTHENTIC_SIGNING_TIME].contains(c))
    {
        return Err(malformed(format!(
            "the critical header {unknown:?} is not understood"
        )));
    }
    if !crit.contains(&SCHEME) || (!header[EXPIRY].is_null() && !crit.contains(&EXPIRY)) {
        return Err(malformed(format!(
            "crit must list {SCHEME} (and {EXPIRY} when present)"
        )));
    }
    let signing_time = header[SIGNING_TIME]
        .as_str()
        .and_then(|s| Timestamp::parse(s).ok())
        .ok_or_else(|| malformed(format!("no valid {SIGNING_TIME}")))?
        .0;
    let expiry = match header[EXPIRY].as_str() {
        None => None,
        Some(s) => Some(
            Timestamp::parse(s)
                .map_err(|e| malformed(format!("{EXPIRY}: {e}")))?
                .0,
        ),
    };
    let chain: Vec<Vec<u8>> = env["header"]["x5c"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| c.as_str().and_then(any_base64))
                .collect::<Option<Vec<_>>>()
        })
        .unwrap_or_default()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| malformed("the unprotected header has no x5c certificate chain".into()))?;

    if roots.is_empty() {
        return Err(Fail::new(
            Reason::BadSignature,
            format!(
                "notation signature {manifest}: the namespace trusts no notation root; add the signer's root CA with `berth trust add NAMESPACE --notation-root ca.pem`"
            ),
        ));
    }
    let root = chain_root(&chain, roots, signing_time, now_ms / 1000).map_err(|f| {
        Fail::new(
            f.reason,
            format!("notation signature {manifest}: {}", f.detail),
        )
    })?;

    let (_, leaf) = x509_parser::parse_x509_certificate(&chain[0])
        .map_err(|e| malformed(format!("the signing certificate does not parse: {e}")))?;
    let key = PublicKey::from_spki_der(leaf.public_key().raw).map_err(|e| {
        if alg == "ES512" {
            unsupported(
                "ES512 (ECDSA P-521) is not supported; sign with ES256, ES384 or PS256-PS512"
                    .into(),
            )
        } else {
            malformed(format!("the signing certificate's key: {e}"))
        }
    })?;
    let input = format!("{protected_b64}.{payload_b64}");
    match key.verifies_jws(alg, input.as_bytes(), &signature) {
        Ok(true) => {}
        Ok(false) => {
            return Err(Fail::new(
                Reason::BadSignature,
                format!(
                    "notation signature {manifest}: the signature does not verify with its signing certificate ({})",
                    leaf.subject()
                ),
            ))
        }
        Err(why) => return Err(malformed(why)),
    }
    if let Some(e) = expiry {
        if e * 1000 <= now_ms {
            return Err(Fail::new(
                Reason::Expired,
                format!(
                    "notation signature {manifest} by root {:?} expired at {}",
                    root.name,
                    time_text(e)
                ),
            ));
        }
    }
    let payload: Value = base64url(payload_b64)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| malformed("the payload is not base64url JSON".into()))?;
    let target = &payload["targetArtifact"];
    let (digest, size, media) = (
        target["digest"].as_str().unwrap_or(""),
        target["size"].as_u64(),
        target["mediaType"].as_str().unwrap_or(""),
    );
    if digest != subject.digest.as_str()
        || size != Some(subject.content.len() as u64)
        || media != subject.media_type
    {
        return Err(Fail::new(
            Reason::DigestMismatch,
            format!(
                "root {:?} verifies notation signature {manifest} of {digest} ({media}, {} bytes), not of {} ({}, {} bytes)",
                root.name,
                size.map_or("?".into(), |s| s.to_string()),
                subject.digest,
                subject.media_type,
                subject.content.len()
            ),
        ));
    }
    let mut until = expiry.map(|e| e * 1000);
    for der in chain.iter().chain(root.certs.ders.iter()) {
        if let Ok((_, c)) = x509_parser::parse_x509_certificate(der) {
            let end = c.validity().not_after.timestamp() * 1000;
            until = Some(until.map_or(end, |u| u.min(end)));
        }
    }
    Ok(Pass {
        key: root.name.clone(),
        algorithm: alg.to_owned(),
        until,
    })
}

/// The trusted root `chain` (leaf first) leads to, valid at the signing
/// time and at `now` (seconds).
fn chain_root<'r>(
    chain: &[Vec<u8>],
    roots: &'r [TrustedRoot],
    signing_time: i64,
    now: i64,
) -> Result<&'r TrustedRoot, Fail> {
    let leaf = CertificateDer::from(chain[0].as_slice());
    let ee = webpki::EndEntityCert::try_from(&leaf).map_err(|e| {
        Fail::new(
            Reason::Malformed,
            format!("the signing certificate does not parse: {e:?}"),
        )
    })?;
    let intermediates: Vec<CertificateDer<'_>> = chain[1..]
        .iter()
        .map(|c| CertificateDer::from(c.as_slice()))
        .collect();
    let mut last = None;
    for root in roots {
        let ders: Vec<CertificateDer<'_>> = root
            .certs
            .ders
            .iter()
            .map(|c| CertificateDer::from(c.as_slice()))
            .collect();
        let anchors: Vec<_> = ders
            .iter()
            .filter_map(|d| webpki::anchor_from_trusted_cert(d).ok())
            .collect();
        let at = |t: i64| {
            ee.verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                &anchors,
                &intermediates,
                seconds(t),
                webpki::KeyUsage::required_if_present(CODE_SIGNING),
                None,
                None,
            )
            .map(drop)
        };
        match at(signing_time) {
            Ok(()) => {}
            Err(
                e @ (webpki::Error::CertExpired { .. } | webpki::Error::CertNotValidYet { .. }),
            ) => {
                return Err(Fail::new(
                    Reason::BadSignature,
                    format!(
                    "its signing time {} is outside the validity of its certificate chain ({e:?})",
                    time_text(signing_time)
                ),
                ))
            }
            Err(e) => {
                last = Some(e);
                continue;
            }
        }
        return match at(now) {
            Ok(()) => Ok(root),
            Err(e) => Err(Fail::new(
                Reason::Expired,
                format!(
                    "its certificate chain to root {:?} is no longer valid ({e:?})",
                    root.name
                ),
            )),
        };
    }
    let names: Vec<&str> = roots.iter().map(|r| r.name.as_str()).collect();
    Err(Fail::new(
        Reason::BadSignature,
        format!(
            "its certificate chain does not lead to a trusted root ({}): {}",
            names.join(", "),
            last.map_or_else(String::new, |e| format!("{e:?}"))
        ),
    ))
}
