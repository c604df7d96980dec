//! Keyless sigstore bundles: signatures by a short-lived Fulcio
//! certificate, verified offline against trust material a namespace holds.
//!
//! A keyless bundle's verification material is the signing certificate
//! (`certificate`, or the leaf of `x509CertificateChain`); its
//! `tlogEntries` record when the signature was logged. The certificate
//! lives for minutes, so what counts is that it was valid *when the
//! signature was made*, and that time must itself be vouched for. The
//! namespace trusts ([`FulcioTrust`], `berth trust add NS --fulcio-root
//! ... --certificate-identity ... --certificate-oidc-issuer ...
//! --rekor-key ...`):
//!
//! - a Fulcio root (and its intermediates): the certificate must chain to
//!   it (`rustls-webpki`, code-signing usage) at the signing time;
//! - the identities allowed: the certificate's subject alternative name
//!   (an e-mail or a URI, such as a GitHub workflow's) equal to
//!   `--certificate-identity`, or wholly matching
//!   `--certificate-identity-regexp`; and its OIDC issuer (the Fulcio
//!   extension 1.3.6.1.4.1.57264.1.8, or the legacy .1.1) equal to
//!   `--certificate-oidc-issuer`, as cosign spells them;
//! - Rekor's public key: a transparency-log entry's signed entry
//!   timestamp (its inclusion promise) must verify with it, and the entry
//!   must record this very signature and certificate (a `hashedrekord`
//!   entry for a message signature, a `dsse` entry for an envelope); its
//!   `integratedTime` is then the signing time.
//!
//! Inclusion proofs (checkpoints) and RFC 3161 timestamps are not checked:
//! a bundle needs a signed entry timestamp by a trusted Rekor key.

use berth_oci::time::Timestamp;
use rustls_pki_types::{CertificateDer, UnixTime};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::encoding::any_base64;
use crate::{Fail, PublicKey, Reason, TrustedKey};

/// id-kp-codeSigning (1.3.6.1.5.5.7.3.3), the OID's value bytes.
const CODE_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];
/// Fulcio's OIDC issuer extension (a DER UTF8String).
const ISSUER_V2: &str = "1.3.6.1.4.1.57264.1.8";
/// Fulcio's legacy OIDC issuer extension (the raw string).
const ISSUER_V1: &str = "1.3.6.1.4.1.57264.1.1";

/// Trust material for keyless signatures, as given and stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FulcioConfig {
    /// PEM certificates: the Fulcio root(s) (self-signed) and any
    /// intermediates.
    pub fulcio_roots: String,
    /// The exact identity (subject alternative name) allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_identity: Option<String>,
    /// A regular expression the whole identity must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_identity_regexp: Option<String>,
    /// The OIDC issuer the certificate must name.
    pub certificate_oidc_issuer: String,
    /// PEM public key(s) of the Rekor log(s) whose signed entry
    /// timestamps are trusted.
    pub rekor_keys: String,
}

/// Why keyless trust material was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeylessError(String);

/// Who may sign.
#[derive(Debug, Clone)]
enum Identity {
    Exact(String),
    Pattern(regex::Regex),
}

/// A namespace's trust for keyless signatures, parsed, under its name.
#[derive(Debug, Clone)]
pub struct FulcioTrust {
    /// The name it was added under.
    pub name: String,
    anchors: Vec<Vec<u8>>,
    intermediates: Vec<Vec<u8>>,
    identity: Identity,
    issuer: String,
    rekor: Vec<PublicKey>,
    fingerprint: String,
}

impl FulcioTrust {
    /// Parses `config`, refusing what could never verify anything.
    pub fn new(name: &str, config: &FulcioConfig) -> Result<FulcioTrust, KeylessError> {
        let bad = |s: String| KeylessError(s);
        let blocks = pem::parse_many(config.fulcio_roots.trim())
            .map_err(|e| bad(format!("--fulcio-root is not PEM: {e}")))?;
        let (mut anchors, mut intermediates) = (Vec::new(), Vec::new());
        for b in blocks {
            if b.tag() != "CERTIFICATE" {
                return Err(bad(format!(
                    "--fulcio-root holds a {:?} block; give the Fulcio root (and intermediate) certificates",
                    b.tag()
                )));
            }
            let der = b.contents().to_vec();
            let (_, cert) = x509_parser::parse_x509_certificate(&der)
                .map_err(|e| bad(format!("a --fulcio-root certificate does not parse: {e}")))?;
            if cert.subject().as_raw() == cert.issuer().as_raw() {
                webpki::anchor_from_trusted_cert(&CertificateDer::from(der.as_slice()))
                    .map_err(|e| bad(format!("the Fulcio root cannot anchor a chain: {e:?}")))?;
                anchors.push(der);
            } else {
                intermediates.push(der);
            }
        }
        if anchors.is_empty() {
            return Err(bad(
                "--fulcio-root holds no self-signed root certificate".into()
            ));
        }
        let identity =
            match (
                &config.certificate_identity,
                &config.certificate_identity_regexp,
            ) {
                (Some(exact), None) if !exact.is_empty() => Identity::Exact(exact.clone()),
                (None, Some(re)) if !re.is_empty() => Identity::Pattern(
                    regex::Regex::new(&format!("^(?:{re})$"))
                        .map_err(|e| bad(format!("--certificate-identity-regexp: {e}")))?,
                ),
                _ => return Err(bad(
                    "give exactly one of --certificate-identity and --certificate-identity-regexp"
                        .into(),
                )),
            };
        if config.certificate_oidc_issuer.is_empty() {
            return Err(bad(
                "give --certificate-oidc-issuer (https://token.actions.githubusercontent.com, ...)"
                    .into(),
            ));
        }
        let rekor = pem::parse_many(config.rekor_keys.trim())
            .map_err(|e| bad(format!("--rekor-key is not PEM: {e}")))?
            .iter()
            .map(|b| PublicKey::from_pem(&pem::encode(b)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(format!("--rekor-key: {e}")))?;
        if rekor.is_empty() {
            return Err(bad(
                "give --rekor-key (the Rekor log's public key, PEM)".into()
            ));
        }
        let canonical = serde_json::to_vec(config).map_err(|e| bad(e.to_string()))?;
        Ok(FulcioTrust {
            name: name.to_owned(),
            anchors,
            intermediates,
            identity,
            issuer: config.certificate_oidc_issuer.clone(),
            rekor,
            fingerprint: hex::encode(Sha256::digest(canonical)),
        })
    }

    /// SHA-256 over the configuration, hex.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    fn identity_text(&self) -> String {
        match &self.identity {
            Identity::Exact(s) => format!("identity {s:?}"),
            Identity::Pattern(r) => format!("identity matching {:?}", r.as_str()),
        }
    }
}

/// What a bundle's signature is, for matching its log entry.
pub(crate) enum Logged<'a> {
    /// A message signature over the artifact of this SHA-256 digest.
    Message {
        digest: &'a [u8],
        signature: &'a [u8],
    },
    /// A DSSE envelope with this payload and these signatures.
    Dsse {
        payload: &'a [u8],
        signatures: &'a [Vec<u8>],
    },
}

/// The signing certificate of a keyless bundle and the chain it carries.
pub(crate) fn certificates(material: &Value) -> Option<Vec<Vec<u8>>> {
    let raw = |v: &Value| v["rawBytes"].as_str().and_then(any_base64);
    if material["certificate"].is_object() {
        return Some(vec![raw(&material["certificate"])?]);
    }
    let chain = material["x509CertificateChain"]["certificates"].as_array()?;
    let out: Option<Vec<_>> = chain.iter().map(raw).collect();
    out.filter(|c| !c.is_empty())
}

fn when(t: i64) -> String {
    Timestamp(t).to_string()
}

/// The key of the signing certificate `chain[0]` when some trust of
/// `fulcio` accepts it: a log entry of `logged` signed by its Rekor key,
/// the chain valid to its root at that entry's time, the identity and
/// issuer allowed. Named after that trust.
pub(crate) fn signer(
    chain: &[Vec<u8>],
    tlog: &[Value],
    logged: &Logged<'_>,
    fulcio: &[FulcioTrust],
) -> Result<TrustedKey, Fail> {
    if fulcio.is_empty() {
        return Err(Fail::new(
            Reason::BadSignature,
            "the namespace trusts no Fulcio root for keyless signatures; add one with \
             `berth trust add NAMESPACE --fulcio-root fulcio.pem --certificate-identity ... \
             --certificate-oidc-issuer ... --rekor-key rekor.pub`",
        ));
    }
    let malformed = |why: String| Fail::new(Reason::Malformed, why);
    let (_, leaf) = x509_parser::parse_x509_certificate(&chain[0])
        .map_err(|e| malformed(format!("the signing certificate does not parse: {e}")))?;
    let key = PublicKey::from_spki_der(leaf.public_key().raw)
        .map_err(|e| malformed(format!("the signing certificate's key: {e}")))?;
    let names = subject_names(&leaf);
    let issuer = oidc_issuer(&leaf);
    let mut worst = crate::Worst::default();
    for f in fulcio {
        let at = match log_time(tlog, logged, &chain[0], f) {
            Ok(t) => t,
            Err(why) => {
                worst.note(Fail::new(Reason::BadSignature, why));
                continue;
            }
        };
        if let Err(why) = chains(chain, f, at) {
            worst.note(Fail::new(Reason::BadSignature, why));
            continue;
        }
        let allowed = |n: &String| match &f.identity {
            Identity::Exact(s) => n == s,
            Identity::Pattern(r) => r.is_match(n),
        };
        if !names.iter().any(allowed) {
            worst.note(Fail::new(
                Reason::BadSignature,
                format!(
                    "the signing certificate's identity {} is not the {} that {:?} allows",
                    if names.is_empty() {
                        "(none)".to_owned()
                    } else {
                        names.join(", ")
                    },
                    f.identity_text(),
                    f.name
                ),
            ));
            continue;
        }
        if issuer.as_deref() != Some(f.issuer.as_str()) {
            worst.note(Fail::new(
                Reason::BadSignature,
                format!(
                    "the signing certificate's OIDC issuer {} is not {:?}, the one {:?} allows",
                    issuer
                        .as_deref()
                        .map_or("(none)".to_owned(), |i| format!("{i:?}")),
                    f.issuer,
                    f.name
                ),
            ));
            continue;
        }
        return Ok(TrustedKey {
            name: f.name.clone(),
            key: key.clone(),
        });
    }
    Err(worst.into_fail(|| Fail::new(Reason::BadSignature, "no Fulcio trust")))
}

/// The identities of a certificate: its e-mail and URI alternative names.
fn subject_names(cert: &x509_parser::certificate::X509Certificate<'_>) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::RFC822Name(s) | GeneralName::URI(s) => Some((*s).to_owned()),
            _ => None,
        })
        .collect()
}

/// The OIDC issuer Fulcio recorded in the certificate.
fn oidc_issuer(cert: &x509_parser::certificate::X509Certificate<'_>) -> Option<String> {
    use spki::der::Decode as _;
    let ext = |oid: &str| {
        cert.extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == oid)
            .map(|e| e.value)
    };
    if let Some(v) = ext(ISSUER_V2) {
        return spki::der::asn1::Utf8StringRef::from_der(v)
            .ok()
            .map(|s| s.as_str().to_owned());
    }
    ext(ISSUER_V1).and_then(|v| String::from_utf8(v.to_vec()).ok())
}

/// Whether `chain` leads to a root of `f` at `at` (Unix seconds).
fn chains(chain: &[Vec<u8>], f: &FulcioTrust, at: i64) -> Result<(), String> {
    let leaf = CertificateDer::from(chain[0].as_slice());
    let ee = webpki::EndEntityCert::try_from(&leaf)
        .map_err(|e| format!("the signing certificate does not parse: {e:?}"))?;
    let intermediates: Vec<CertificateDer<'_>> = chain[1..]
        .iter()
        .chain(f.intermediates.iter())
        .map(|c| CertificateDer::from(c.as_slice()))
        .collect();
    let ders: Vec<CertificateDer<'_>> = f
        .anchors
        .iter()
        .map(|c| CertificateDer::from(c.as_slice()))
        .collect();
    let anchors: Vec<_> = ders
        .iter()
        .filter_map(|d| webpki::anchor_from_trusted_cert(d).ok())
        .collect();
    let time = UnixTime::since_unix_epoch(std::time::Duration::from_secs(at.max(0) as u64));
    match ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &anchors,
        &intermediates,
        time,
        webpki::KeyUsage::required_if_present(CODE_SIGNING),
        None,
        None,
    ) {
        Ok(_) => Ok(()),
        Err(e @ (webpki::Error::CertExpired { .. } | webpki::Error::CertNotValidYet { .. })) => {
            Err(format!(
                "the signing certificate was not valid at the signing time {} ({e:?})",
                when(at)
            ))
        }
        Err(e) => Err(format!(
            "the signing certificate does not chain to the Fulcio root of {:?} ({e:?})",
            f.name
        )),
    }
}

/// The signing time (Unix seconds) a log entry of `logged` by `leaf`
/// proves, its signed entry timestamp verified with a Rekor key of `f`.
fn log_time(
    tlog: &[Value],
    logged: &Logged<'_>,
    leaf: &[u8],
    f: &FulcioTrust,
) -> Result<i64, String> {
    if tlog.is_empty() {
        return Err("the bundle has no transparency-log entry, so no verified signing time".into());
    }
    let mut last = String::new();
    for e in tlog {
        match entry_time(e, logged, leaf, f) {
            Ok(t) => return Ok(t),
            Err(why) => last = why,
        }
    }
    Err(last)
}

fn int(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

fn entry_time(e: &Value, logged: &Logged<'_>, leaf: &[u8], f: &FulcioTrust) -> Result<i64, String> {
    let bad = |why: &str| format!("transparency-log entry: {why}");
    let body = e["canonicalizedBody"]
        .as_str()
        .and_then(any_base64)
        .ok_or_else(|| bad("no canonicalizedBody"))?;
    let time = int(&e["integratedTime"]).ok_or_else(|| bad("no integratedTime"))?;
    let index = int(&e["logIndex"]).ok_or_else(|| bad("no logIndex"))?;
    let log_id = e["logId"]["keyId"]
        .as_str()
        .and_then(any_base64)
        .ok_or_else(|| bad("no logId"))?;
    let set = e["inclusionPromise"]["signedEntryTimestamp"]
        .as_str()
        .and_then(any_base64)
        .ok_or_else(|| {
            bad("no signed entry timestamp (inclusion promise); berth verifies the signing time with one")
        })?;
    let rekor = f
        .rekor
        .iter()
        .find(|k| k.fingerprint() == hex::encode(&log_id))
        .ok_or_else(|| {
            format!(
                "the transparency-log entry is from log {}, not a Rekor key {:?} trusts",
                hex::encode(&log_id),
                f.name
            )
        })?;
    // What Rekor signs: the canonical JSON (RFC 8785; these keys sorted,
    // no spaces) of the entry's body, time, log id and index.
    use base64::Engine as _;
    let signed = serde_json::to_vec(&serde_json::json!({
        "body": base64::engine::general_purpose::STANDARD.encode(&body),
        "integratedTime": time,
        "logID": hex::encode(&log_id),
        "logIndex": index,
    }))
    .map_err(|e| bad(&e.to_string()))?;
    if !rekor.verifies(&signed, &set) {
        return Err(format!(
            "the signed entry timestamp of the transparency-log entry does not verify with the Rekor key of {:?} (forged or altered)",
            f.name
        ));
    }
    let body: Value = serde_json::from_slice(&body).map_err(|e| bad(&e.to_string()))?;
    records(&body, logged, leaf)
        .map_err(|why| format!("the transparency-log entry records another signature: {why}"))?;
    Ok(time)
}

/// Whether a log entry body records the signature `logged` by `leaf`.
fn records(body: &Value, logged: &Logged<'_>, leaf: &[u8]) -> Result<(), String> {
    let is_leaf = |v: &Value| {
        v.as_str()
            .and_then(any_base64)
            .and_then(|p| pem::parse(p).ok())
            .is_some_and(|p| p.contents() == leaf)
    };
    let spec = &body["spec"];
    match (body["kind"].as_str(), logged) {
        (Some("hashedrekord"), Logged::Message { digest, signature }) => {
            if spec["data"]["hash"]["value"].as_str() != Some(&hex::encode(digest)) {
                return Err("its hash is not the message's".into());
            }
            if spec["signature"]["content"].as_str().and_then(any_base64).as_deref()
                != Some(*signature)
            {
                return Err("its signature is not the bundle's".into());
            }
            if !is_leaf(&spec["signature"]["publicKey"]["content"]) {
                return Err("its certificate is not the bundle's".into());
            }
            Ok(())
        }
        (Some("dsse"), Logged::Dsse { payload, signatures }) => {
            if spec["payloadHash"]["value"].as_str() != Some(&hex::encode(Sha256::digest(payload)))
            {
                return Err("its payload hash is not the envelope's".into());
            }
            let listed = spec["signatures"].as_array().cloned().unwrap_or_default();
            let ok = listed.iter().any(|s| {
                is_leaf(&s["verifier"])
                    && s["signature"]
                        .as_str()
                        .and_then(any_base64)
                        .is_some_and(|sig| signatures.contains(&sig))
            });
            if !ok {
                return Err("its signature or certificate is not the envelope's".into());
            }
            Ok(())
        }
        (kind, _) => Err(format!(
            "an entry of kind {kind:?} (berth checks hashedrekord entries of message signatures and dsse entries of envelopes)"
        )),
    }
}
