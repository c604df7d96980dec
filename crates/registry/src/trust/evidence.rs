//! Gathering what a manifest's signatures are: its cosign `.sig` manifest
//! (by tag), its sigstore bundle and notation referrers (by subject), and
//! the payload blobs they hold, as [`Evidence`] for [`berth_trust::verify`].
//! Everything read is bounded: a few dozen signature manifests per
//! subject, payloads of at most the format's size limit.

use std::sync::Arc;

use berth_oci::{Digest, Manifest, Reference, RepositoryName, Tag};
use berth_store::BlobBody;
use berth_trust::cosign::{self, Signed};
use berth_trust::{bundle, notation, Evidence};
use futures_util::StreamExt as _;

use crate::manifests::ManifestEntry;
use crate::{Error, Registry, Result};

/// Signatures read per signature manifest, and signature referrers read
/// per subject, at most.
const MAX_SIGNATURES: usize = 32;

/// Whether an artifact type is a signature's that berth verifies (a
/// sigstore bundle, a notation signature).
pub(crate) fn is_signature_type(artifact_type: &str) -> bool {
    bundle::is_bundle(artifact_type) || artifact_type == notation::ARTIFACT_TYPE
}

impl Registry {
    /// The signature manifest of `digest` (its `sha256-<hex>.sig` tag).
    pub(super) async fn signature_manifest(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<Arc<ManifestEntry>>> {
        let tag = Tag::parse(cosign::signature_tag(digest))
            .map_err(|e| Error::Internal(format!("signature tag: {e}")))?;
        match self.get_manifest(repo, &Reference::Tag(tag)).await {
            Ok(m) => Ok(Some(m)),
            Err(Error::ManifestUnknown(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The referrers of `subject` in `repo` that are signatures (sorted by
    /// digest, [`MAX_SIGNATURES`] at most): one indexed query.
    pub(super) async fn signature_referrers(
        &self,
        repo: &RepositoryName,
        subject: &Digest,
    ) -> Result<Vec<Digest>> {
        Ok(self
            .meta
            .referrers(repo, subject, None)
            .await?
            .into_iter()
            .filter(|r| r.artifact_type.as_deref().is_some_and(is_signature_type))
            .map(|r| r.digest)
            .take(MAX_SIGNATURES)
            .collect())
    }

    /// The bytes of a small blob (a signature payload), if it is at most
    /// `limit` bytes.
    async fn small_blob(&self, digest: &Digest, limit: i64) -> Result<Option<Vec<u8>>> {
        let limit = limit.max(0) as u64;
        let Some(read) = self.store.read(digest, None).await? else {
            return Ok(None);
        };
        if read.len > limit {
            return Ok(None);
        }
        match read.body {
            BlobBody::Bytes(b) => Ok(Some(b.to_vec())),
            BlobBody::Stream(mut s) => {
                let mut out = Vec::with_capacity(read.len as usize);
                while let Some(chunk) = s.next().await {
                    out.extend_from_slice(&chunk.map_err(Error::Storage)?);
                    if out.len() as u64 > limit {
                        return Ok(None);
                    }
                }
                Ok(Some(out))
            }
        }
    }

    /// What the `.sig` manifest `sig` and the signature `referrers` hold.
    pub(super) async fn evidence(
        &self,
        repo: &RepositoryName,
        sig: Option<&ManifestEntry>,
        referrers: &[Digest],
    ) -> Result<Vec<Evidence>> {
        let mut out = Vec::new();
        if let Some(sig) = sig {
            out.push(self.cosign_evidence(sig).await?);
        }
        for d in referrers {
            let m = match self.get_manifest(repo, &Reference::Digest(d.clone())).await {
                Ok(m) => m,
                Err(Error::ManifestUnknown(_)) => continue,
                Err(e) => return Err(e),
            };
            out.push(self.referrer_evidence(&m).await?);
        }
        Ok(out)
    }

    async fn cosign_evidence(&self, sig: &ManifestEntry) -> Result<Evidence> {
        let manifest = sig.digest.clone();
        let m = match Manifest::parse(&sig.content, Some(&sig.media_type)) {
            Ok(m) => m,
            Err(e) => {
                return Ok(Evidence::Malformed {
                    why: format!("signature manifest {manifest} does not parse: {e}"),
                    manifest,
                })
            }
        };
        let mut signatures = Vec::new();
        for layer in cosign::signature_layers(&m)
            .into_iter()
            .take(MAX_SIGNATURES)
        {
            if let Some(payload) = self.small_blob(&layer.payload, cosign::MAX_PAYLOAD).await? {
                signatures.push(Signed {
                    payload,
                    signature: layer.signature,
                });
            }
        }
        if signatures.is_empty() {
            return Ok(Evidence::Malformed {
                why: format!(
                    "signature manifest {manifest} holds no cosign signature (layers of type {} with the annotation {}, payloads of at most {} bytes)",
                    cosign::SIMPLE_SIGNING,
                    cosign::SIGNATURE_ANNOTATION,
                    cosign::MAX_PAYLOAD
                ),
                manifest,
            });
        }
        Ok(Evidence::Cosign {
            manifest,
            signatures,
        })
    }

    /// A bundle or notation referrer: its one signature layer.
    async fn referrer_evidence(&self, m: &ManifestEntry) -> Result<Evidence> {
        let manifest = m.digest.clone();
        let malformed = |why: String| Evidence::Malformed {
            why: format!("signature manifest {manifest}: {why}"),
            manifest: manifest.clone(),
        };
        let parsed = match Manifest::parse(&m.content, Some(&m.media_type)) {
            Ok(p) => p,
            Err(e) => return Ok(malformed(format!("does not parse: {e}"))),
        };
        let notation = parsed.effective_artifact_type() == Some(notation::ARTIFACT_TYPE);
        let layer = parsed.layers.iter().find(|l| {
            if notation {
                l.media_type == notation::JWS || l.media_type == notation::COSE
            } else {
                bundle::is_bundle(&l.media_type)
            }
        });
        let Some(layer) = layer else {
            return Ok(malformed(if notation {
                format!(
                    "no layer holds a signature envelope ({} or {})",
                    notation::JWS,
                    notation::COSE
                )
            } else {
                format!("no layer holds a bundle ({}...)", bundle::MEDIA_TYPE_PREFIX)
            }));
        };
        let limit = if notation {
            notation::MAX_ENVELOPE
        } else {
            bundle::MAX_BUNDLE
        };
        let Some(bytes) = self.small_blob(&layer.digest, limit).await? else {
            return Ok(malformed(format!(
                "its signature layer {} is missing or larger than {limit} bytes",
                layer.digest
            )));
        };
        if notation {
            return Ok(Evidence::Notation {
                manifest,
                media_type: layer.media_type.clone(),
                envelope: bytes,
            });
        }
        // What a message signature may sign besides the manifest: the
        // simple-signing payloads beside the bundle.
        let mut payloads = Vec::new();
        for l in parsed
            .layers
            .iter()
            .filter(|l| l.media_type == cosign::SIMPLE_SIGNING)
            .take(MAX_SIGNATURES)
        {
            if let Some(p) = self.small_blob(&l.digest, cosign::MAX_PAYLOAD).await? {
                payloads.push(p);
            }
        }
        Ok(Evidence::Bundle {
            manifest,
            bundle: bytes,
            payloads,
        })
    }
}
