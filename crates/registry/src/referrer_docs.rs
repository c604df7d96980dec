//! What an image's referrers are, read for people (the web UI's image
//! page): an SBOM's package list, a signature's form, an attestation's
//! predicate type (and its SBOM, when the predicate is one).
//!
//! Signatures are not verified here: the verdict ([`crate::trust`]) says
//! which one verified the image and with which key. Documents are read
//! from their blobs (at most [`MAX_DOCUMENT`] bytes) with
//! [`berth_scan::sbom::read`], which deserialises only the fields shown.

use berth_oci::{Digest, Manifest, Reference, RepositoryName};
use berth_scan::sbom::read::{self, Listing};
use berth_store::BlobBody;
use futures_util::TryStreamExt as _;
use serde_json::Value;

use crate::{Error, Registry, Result};

/// The largest SBOM or attestation document read.
pub const MAX_DOCUMENT: u64 = 32 * 1024 * 1024;

/// The predicate type cosign gives the statement it signs for a plain
/// signature (not an attestation).
const COSIGN_SIGN_PREDICATE: &str = "https://sigstore.dev/cosign/sign/v1";

/// What a referrer is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReferrerKind {
    /// An SPDX or CycloneDX document: its packages, or why they could not
    /// be read.
    Sbom(std::result::Result<Listing, String>),
    /// A signature, in this form (`sigstore bundle`, `notation`,
    /// `cosign`).
    Signature(&'static str),
    /// An in-toto attestation: its predicate type (when known) and, for
    /// an SBOM predicate, its packages.
    Attestation {
        /// `https://slsa.dev/provenance/v1`, `https://spdx.dev/Document`.
        predicate_type: Option<String>,
        /// The packages, when the predicate is an SBOM.
        listing: Option<Listing>,
    },
    /// Anything else.
    Other,
}

/// A referrer with what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferrerDetail {
    /// The referrer manifest.
    pub digest: Digest,
    /// Its artifact type.
    pub artifact_type: Option<String>,
    /// Bytes of the referrer manifest.
    pub size: u64,
    /// When it was made, from `org.opencontainers.image.created`.
    pub created: Option<String>,
    /// What it is.
    pub kind: ReferrerKind,
}

fn annotation<'a>(d: &'a Value, key: &str) -> Option<&'a str> {
    d.get("annotations")?.get(key)?.as_str()
}

/// Whether `t` is an SBOM document's media or artifact type.
fn is_sbom_type(t: &str) -> bool {
    let t = t.to_ascii_lowercase();
    t.contains("spdx") || t.contains("cyclonedx")
}

impl Registry {
    /// The referrers of `subject` in `repo`, each read for what it is.
    pub async fn referrer_details(
        &self,
        repo: &RepositoryName,
        subject: &Digest,
    ) -> Result<Vec<ReferrerDetail>> {
        let listed = self.referrers(repo, subject, None).await?.manifests;
        let mut out = Vec::with_capacity(listed.len());
        for d in &listed {
            let Some(digest) = d
                .get("digest")
                .and_then(Value::as_str)
                .and_then(|s| Digest::parse(s).ok())
            else {
                continue;
            };
            let artifact_type = d
                .get("artifactType")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let t = artifact_type.as_deref().unwrap_or("");
            let predicate = annotation(d, "dev.sigstore.bundle.predicateType")
                .or_else(|| annotation(d, "in-toto.io/predicate-type"));
            let kind = if is_sbom_type(t) {
                ReferrerKind::Sbom(self.read_document(repo, &digest).await?.and_then(|r| {
                    r.listing
                        .ok_or_else(|| "the document lists no packages".to_owned())
                }))
            } else if t.starts_with("application/vnd.cncf.notary.signature") {
                ReferrerKind::Signature("notation")
            } else if t.starts_with("application/vnd.dev.cosign.artifact.sig") {
                ReferrerKind::Signature("cosign")
            } else if t.starts_with("application/vnd.dev.sigstore.bundle") {
                // A bundle signs the image, or attests something about it:
                // its predicate type says which (from its annotation, or
                // from the statement in its envelope).
                let read = match predicate {
                    Some(_) => None,
                    None if annotation(d, "dev.sigstore.bundle.content")
                        == Some("message-signature") =>
                    {
                        None
                    }
                    None => self.read_document(repo, &digest).await?.ok(),
                };
                let predicate_type = predicate
                    .map(str::to_owned)
                    .or_else(|| read.as_ref().and_then(|r| r.predicate_type.clone()));
                match predicate_type {
                    Some(p) if p != COSIGN_SIGN_PREDICATE => ReferrerKind::Attestation {
                        listing: match read {
                            Some(r) => r.listing,
                            None => self
                                .read_document(repo, &digest)
                                .await?
                                .ok()
                                .and_then(|r| r.listing),
                        },
                        predicate_type: Some(p),
                    },
                    _ => ReferrerKind::Signature("sigstore bundle"),
                }
            } else if t.starts_with("application/vnd.in-toto") || predicate.is_some() {
                let read = self.read_document(repo, &digest).await?.ok();
                ReferrerKind::Attestation {
                    predicate_type: predicate
                        .map(str::to_owned)
                        .or_else(|| read.as_ref().and_then(|r| r.predicate_type.clone())),
                    listing: read.and_then(|r| r.listing),
                }
            } else {
                ReferrerKind::Other
            };
            out.push(ReferrerDetail {
                digest,
                artifact_type,
                size: d.get("size").and_then(Value::as_u64).unwrap_or(0),
                created: annotation(d, "org.opencontainers.image.created").map(str::to_owned),
                kind,
            });
        }
        Ok(out)
    }

    /// The document a referrer manifest holds (its first layer that is
    /// not empty), read; the inner `Err` says why it could not be.
    async fn read_document(
        &self,
        repo: &RepositoryName,
        manifest: &Digest,
    ) -> Result<std::result::Result<read::Read, String>> {
        let entry = self
            .get_manifest(repo, &Reference::Digest(manifest.clone()))
            .await?;
        let Ok(m) = Manifest::parse(&entry.content, Some(&entry.media_type)) else {
            return Ok(Err("its manifest does not parse".into()));
        };
        let Some(layer) = m.layers.iter().find(|l| l.size > 2) else {
            return Ok(Err("it holds no document".into()));
        };
        if layer.size as u64 > MAX_DOCUMENT {
            return Ok(Err(format!(
                "its document is larger than {} MB",
                MAX_DOCUMENT / 1_000_000
            )));
        }
        let (_, _, blob) = match self.read_blob(repo, &layer.digest, None).await {
            Ok(r) => r,
            Err(Error::BlobUnknown(_)) => return Ok(Err("its document is not stored".into())),
            Err(e) => return Err(e),
        };
        let bytes = match blob.body {
            BlobBody::Bytes(b) => b.to_vec(),
            BlobBody::Stream(mut s) => {
                let mut out = Vec::with_capacity(layer.size as usize);
                while let Some(chunk) = s.try_next().await.map_err(|e| {
                    Error::Internal(format!("reading document {}: {e}", layer.digest))
                })? {
                    out.extend_from_slice(&chunk);
                    if out.len() as u64 > MAX_DOCUMENT {
                        return Ok(Err("its document is too large".into()));
                    }
                }
                out
            }
        };
        Ok(read::read(&bytes))
    }
}
