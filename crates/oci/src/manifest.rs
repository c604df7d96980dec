//! Parsing and validating pushed manifests.
//!
//! Berth stores manifests byte for byte; this module only reads them to learn
//! what they reference (config, layers, child manifests, subject) and to refuse
//! malformed input with a message that says what is wrong. Unknown fields are
//! allowed everywhere, as the image spec requires.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::digest::{Digest, Hasher};
use crate::media;

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    /// Media type of the referenced content.
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// Digest of the referenced content.
    pub digest: Digest,
    /// Size in bytes of the referenced content.
    pub size: i64,
    /// Alternative download locations (foreign layers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Embedded content, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// Artifact type of the referenced manifest.
    #[serde(
        rename = "artifactType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub artifact_type: Option<String>,
    /// Platform of an index entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<serde_json::Value>,
}

/// The annotation docker buildx puts on an index entry to say what it is
/// (`attestation-manifest`).
pub const REFERENCE_TYPE: &str = "vnd.docker.reference.type";
/// The annotation naming the image an attestation manifest describes.
pub const REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";
/// [`REFERENCE_TYPE`]'s value for an attestation manifest.
pub const ATTESTATION_MANIFEST: &str = "attestation-manifest";

/// What an entry of an index's `manifests` array is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A manifest or an index (a platform's image, an artifact).
    Manifest,
    /// A docker buildx attestation manifest (provenance, SBOM): an image
    /// manifest of in-toto layers, listed with the platform
    /// `unknown/unknown` and the annotations [`REFERENCE_TYPE`]
    /// `attestation-manifest` and [`REFERENCE_DIGEST`]. Not a platform.
    Attestation,
    /// Any other media type: a blob reference (BuildKit's registry cache
    /// lists its layers and its cache config this way).
    Blob,
}

impl Descriptor {
    /// What this descriptor is as an entry of an index.
    pub fn entry_kind(&self) -> EntryKind {
        if !media::is_manifest(&self.media_type) {
            EntryKind::Blob
        } else if self.annotation(REFERENCE_TYPE) == Some(ATTESTATION_MANIFEST) {
            EntryKind::Attestation
        } else {
            EntryKind::Manifest
        }
    }

    /// For an attestation entry: the digest of the image it describes, if
    /// the index names one.
    pub fn attested(&self) -> Option<&str> {
        match self.entry_kind() {
            EntryKind::Attestation => self.annotation(REFERENCE_DIGEST),
            _ => None,
        }
    }

    /// The value of annotation `key`.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.as_ref()?.get(key).map(String::as_str)
    }
}

/// Whether a manifest is a single image/artifact or a list of manifests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    /// OCI image manifest or Docker schema2 manifest.
    Image,
    /// OCI index or Docker manifest list.
    Index,
}

/// What berth needs to know about a pushed manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The effective media type (from the body, the Content-Type, or inferred).
    pub media_type: String,
    /// Image or index.
    pub kind: ManifestKind,
    /// `artifactType` of the manifest itself.
    pub artifact_type: Option<String>,
    /// The config descriptor (images only).
    pub config: Option<Descriptor>,
    /// The layers (images only).
    pub layers: Vec<Descriptor>,
    /// The child manifests (indexes only).
    pub manifests: Vec<Descriptor>,
    /// The subject, for referrers.
    pub subject: Option<Descriptor>,
    /// Top-level annotations.
    pub annotations: Option<BTreeMap<String, String>>,
}

/// Why a manifest was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// A Docker schema1 manifest.
    #[error("Docker schema1 manifests are not supported (deprecated since 2017): push an OCI or Docker schema2 manifest instead")]
    Schema1,
    /// Anything else wrong with the manifest.
    #[error("{0}")]
    Invalid(String),
}

#[derive(Deserialize)]
struct Raw {
    #[serde(rename = "schemaVersion")]
    schema_version: Option<serde_json::Value>,
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    #[serde(rename = "artifactType")]
    artifact_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    annotations: Option<BTreeMap<String, String>>,
    #[serde(rename = "fsLayers")]
    fs_layers: Option<serde_json::Value>,
}

fn invalid(msg: impl Into<String>) -> ManifestError {
    ManifestError::Invalid(msg.into())
}

impl Manifest {
    /// Parses `bytes` pushed with `content_type` (may be empty).
    pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Manifest, ManifestError> {
        let content_type = content_type
            .map(|c| c.split(';').next().unwrap_or("").trim())
            .filter(|c| !c.is_empty());
        if matches!(
            content_type,
            Some(media::DOCKER_SCHEMA1) | Some(media::DOCKER_SCHEMA1_SIGNED)
        ) {
            return Err(ManifestError::Schema1);
        }
        let raw: Raw = serde_json::from_slice(bytes).map_err(|e| {
            invalid(format!(
                "manifest is not valid JSON of the expected shape: {e}"
            ))
        })?;
        match &raw.schema_version {
            Some(v) if v.as_i64() == Some(2) => {}
            Some(v) if v.as_i64() == Some(1) => return Err(ManifestError::Schema1),
            _ if raw.fs_layers.is_some() => return Err(ManifestError::Schema1),
            Some(v) => return Err(invalid(format!("schemaVersion must be 2, got {v}"))),
            None => return Err(invalid("schemaVersion is missing (must be 2)")),
        }
        let media_type = match (&raw.media_type, content_type) {
            (Some(body), Some(ct)) if body != ct && media::is_manifest(ct) => {
                return Err(invalid(format!(
                    "Content-Type {ct} does not match the manifest's mediaType {body}"
                )))
            }
            (Some(body), _) => body.clone(),
            (None, Some(ct)) if media::is_manifest(ct) => ct.to_owned(),
            (None, _) => {
                if raw.manifests.is_some() {
                    media::OCI_INDEX.to_owned()
                } else if raw.config.is_some() {
                    media::OCI_MANIFEST.to_owned()
                } else {
                    return Err(invalid(
                        "manifest has no mediaType and is neither an image manifest nor an index",
                    ));
                }
            }
        };
        if media_type == media::DOCKER_SCHEMA1 || media_type == media::DOCKER_SCHEMA1_SIGNED {
            return Err(ManifestError::Schema1);
        }
        if !media::is_manifest(&media_type) {
            return Err(invalid(format!(
                "unsupported manifest media type {media_type:?}"
            )));
        }
        if let Some(at) = &raw.artifact_type {
            if !media::is_valid(at) {
                return Err(invalid(format!(
                    "artifactType {at:?} is not a valid media type"
                )));
            }
        }
        let kind = if media::is_index(&media_type) {
            ManifestKind::Index
        } else {
            ManifestKind::Image
        };
        let manifest = match kind {
            ManifestKind::Image => {
                let config = raw
                    .config
                    .ok_or_else(|| invalid("image manifest has no config descriptor"))?;
                let layers = raw
                    .layers
                    .ok_or_else(|| invalid("image manifest has no layers array"))?;
                if raw.manifests.is_some() {
                    return Err(invalid("an image manifest cannot have a manifests array"));
                }
                Manifest {
                    media_type,
                    kind,
                    artifact_type: raw.artifact_type,
                    config: Some(config),
                    layers,
                    manifests: Vec::new(),
                    subject: raw.subject,
                    annotations: raw.annotations,
                }
            }
            ManifestKind::Index => {
                let manifests = raw
                    .manifests
                    .ok_or_else(|| invalid("index has no manifests array"))?;
                if raw.config.is_some() || raw.layers.is_some() {
                    return Err(invalid("an index cannot have config or layers"));
                }
                Manifest {
                    media_type,
                    kind,
                    artifact_type: raw.artifact_type,
                    config: None,
                    layers: Vec::new(),
                    manifests,
                    subject: raw.subject,
                    annotations: raw.annotations,
                }
            }
        };
        for d in manifest.descriptors() {
            validate_descriptor(d)?;
        }
        if let Some(s) = &manifest.subject {
            validate_descriptor(s)?;
        }
        Ok(manifest)
    }

    /// Config, layers and child manifests, in that order.
    pub fn descriptors(&self) -> impl Iterator<Item = &Descriptor> {
        self.config
            .iter()
            .chain(self.layers.iter())
            .chain(self.manifests.iter())
    }

    /// The index entries that are manifests (attestations included), in
    /// order.
    pub fn child_manifests(&self) -> impl Iterator<Item = &Descriptor> {
        self.manifests
            .iter()
            .filter(|d| d.entry_kind() != EntryKind::Blob)
    }

    /// The index entries that are blobs ([`EntryKind::Blob`]), in order.
    pub fn blob_entries(&self) -> impl Iterator<Item = &Descriptor> {
        self.manifests
            .iter()
            .filter(|d| d.entry_kind() == EntryKind::Blob)
    }

    /// The artifact type a referrers response reports for this manifest:
    /// `artifactType`, else the config's media type.
    pub fn effective_artifact_type(&self) -> Option<&str> {
        self.artifact_type
            .as_deref()
            .or_else(|| self.config.as_ref().map(|c| c.media_type.as_str()))
    }
}

/// Checks one descriptor: media type syntax, size, and embedded data.
pub fn validate_descriptor(d: &Descriptor) -> Result<(), ManifestError> {
    if !media::is_valid(&d.media_type) {
        return Err(invalid(format!(
            "descriptor {} has an invalid mediaType {:?}",
            d.digest, d.media_type
        )));
    }
    if d.size < 0 {
        return Err(invalid(format!(
            "descriptor {} has a negative size",
            d.digest
        )));
    }
    if let Some(data) = &d.data {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|_| {
                invalid(format!(
                    "descriptor {} has data that is not base64",
                    d.digest
                ))
            })?;
        if bytes.len() as i64 != d.size {
            return Err(invalid(format!(
                "descriptor {} has data of {} bytes but size {}",
                d.digest,
                bytes.len(),
                d.size
            )));
        }
        let mut h: Hasher = d.digest.algorithm().hasher();
        h.update(&bytes);
        if h.finish() != d.digest {
            return Err(invalid(format!(
                "descriptor {} has data that does not match its digest",
                d.digest
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(media: &str, data: &[u8]) -> serde_json::Value {
        serde_json::json!({"mediaType": media, "digest": Digest::sha256(data).as_str(), "size": data.len()})
    }

    #[test]
    fn parses_image_and_index() {
        let m = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_MANIFEST,
            "config": d(media::OCI_CONFIG, b"{}"),
            "layers": [d("application/vnd.oci.image.layer.v1.tar+gzip", b"x")],
            "subject": d(media::OCI_MANIFEST, b"s"),
            "custom": {"anything": true}
        });
        let p = Manifest::parse(&serde_json::to_vec(&m).unwrap(), None).unwrap();
        assert_eq!(p.kind, ManifestKind::Image);
        assert_eq!(p.layers.len(), 1);
        assert!(p.subject.is_some());
        assert_eq!(p.effective_artifact_type(), Some(media::OCI_CONFIG));

        let i =
            serde_json::json!({"schemaVersion": 2, "manifests": [d(media::OCI_MANIFEST, b"m")]});
        let p = Manifest::parse(&serde_json::to_vec(&i).unwrap(), Some(media::OCI_INDEX)).unwrap();
        assert_eq!(p.kind, ManifestKind::Index);
        assert_eq!(p.media_type, media::OCI_INDEX);
    }

    #[test]
    fn index_entries_are_manifests_attestations_or_blobs() {
        let image = Digest::sha256(b"image");
        let i = serde_json::json!({"schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": [
            d(media::OCI_MANIFEST, b"image"),
            {"mediaType": media::OCI_MANIFEST, "digest": Digest::sha256(b"att").as_str(), "size": 3,
             "platform": {"os": "unknown", "architecture": "unknown"},
             "annotations": {REFERENCE_TYPE: ATTESTATION_MANIFEST, REFERENCE_DIGEST: image.as_str()}},
            d("application/vnd.oci.image.layer.v1.tar+gzip", b"layer"),
            d(media::BUILDKIT_CACHE_CONFIG, b"cache config"),
        ]});
        let p = Manifest::parse(&serde_json::to_vec(&i).unwrap(), None).unwrap();
        let kinds: Vec<EntryKind> = p.manifests.iter().map(Descriptor::entry_kind).collect();
        assert_eq!(
            kinds,
            [
                EntryKind::Manifest,
                EntryKind::Attestation,
                EntryKind::Blob,
                EntryKind::Blob
            ]
        );
        assert_eq!(p.manifests[1].attested(), Some(image.as_str()));
        assert_eq!(p.manifests[0].attested(), None);
        assert_eq!(p.child_manifests().count(), 2);
        let blobs: Vec<&str> = p.blob_entries().map(|d| d.media_type.as_str()).collect();
        assert_eq!(
            blobs,
            [
                "application/vnd.oci.image.layer.v1.tar+gzip",
                media::BUILDKIT_CACHE_CONFIG
            ]
        );
    }

    #[test]
    fn refuses_bad_manifests() {
        assert_eq!(
            Manifest::parse(br#"{"schemaVersion":1,"fsLayers":[]}"#, None).unwrap_err(),
            ManifestError::Schema1
        );
        assert!(Manifest::parse(b"not json", None).is_err());
        assert!(Manifest::parse(br#"{"schemaVersion":2,"mediaType":"text/plain"}"#, None).is_err());
        let m = serde_json::json!({"schemaVersion": 2, "mediaType": media::OCI_MANIFEST,
            "config": d(media::OCI_CONFIG, b"{}"), "layers": []});
        let bytes = serde_json::to_vec(&m).unwrap();
        assert!(Manifest::parse(&bytes, Some(media::OCI_INDEX)).is_err());
        assert!(Manifest::parse(&bytes, Some(media::OCI_MANIFEST)).is_ok());
        let bad_data = serde_json::json!({"schemaVersion": 2, "mediaType": media::OCI_MANIFEST,
            "config": {"mediaType": media::OCI_EMPTY, "digest": Digest::sha256(b"{}").as_str(), "size": 2, "data": "e30K"},
            "layers": []});
        assert!(Manifest::parse(&serde_json::to_vec(&bad_data).unwrap(), None).is_err());
        let good_data = serde_json::json!({"schemaVersion": 2, "mediaType": media::OCI_MANIFEST,
            "config": {"mediaType": media::OCI_EMPTY, "digest": Digest::sha256(b"{}").as_str(), "size": 2, "data": "e30="},
            "layers": []});
        assert!(Manifest::parse(&serde_json::to_vec(&good_data).unwrap(), None).is_ok());
    }
}
