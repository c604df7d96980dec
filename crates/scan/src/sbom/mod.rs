//! SBOM documents of an image's inventory: SPDX 2.3 JSON ([`spdx`]) and
//! CycloneDX 1.6 JSON ([`cyclonedx`]).
//!
//! Both describe the same tree: the image (the reference's manifest or
//! index) contains, for an index, one image per platform; each image
//! contains its distribution (as an operating-system package) and its
//! packages, each with its purl, the layer digest and the path it was found
//! in. Documents are functions of their input: the creation time and the
//! document's unique id are given by the caller.
//!
//! [`read`] reads any such document back (berth's, syft's, trivy's,
//! buildx's), bare or inside an in-toto attestation, as a package list.

pub mod cyclonedx;
pub mod read;
pub mod spdx;

use crate::Inventory;

/// The artifact type of an SPDX document attached to an image.
pub const SPDX_ARTIFACT_TYPE: &str = "application/spdx+json";
/// The artifact type of a CycloneDX document attached to an image.
pub const CYCLONEDX_ARTIFACT_TYPE: &str = "application/vnd.cyclonedx+json";

/// The SBOM formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// SPDX 2.3 JSON.
    Spdx,
    /// CycloneDX 1.6 JSON.
    CycloneDx,
}

impl Format {
    /// The OCI artifact type of this format's documents.
    pub fn artifact_type(self) -> &'static str {
        match self {
            Format::Spdx => SPDX_ARTIFACT_TYPE,
            Format::CycloneDx => CYCLONEDX_ARTIFACT_TYPE,
        }
    }
}

/// One platform's image and its inventory.
#[derive(Debug, Clone)]
pub struct PlatformImage {
    /// `os/arch[/variant]`, when known.
    pub platform: Option<String>,
    /// The manifest digest.
    pub digest: String,
    /// What was found.
    pub inventory: Inventory,
}

/// What a document describes.
#[derive(Debug, Clone)]
pub struct Image {
    /// The repository (`registry/namespace/name`).
    pub name: String,
    /// The reference as given (a tag or a digest), for the document name.
    pub reference: String,
    /// Digest of the top manifest (an image manifest or an index).
    pub digest: String,
    /// The platforms: one whose digest is the top digest for a single image.
    pub platforms: Vec<PlatformImage>,
}

impl Image {
    /// Whether the top manifest is an index over the platforms.
    pub fn is_index(&self) -> bool {
        !(self.platforms.len() == 1 && self.platforms[0].digest == self.digest)
    }

    /// The image's purl (`pkg:oci/NAME@DIGEST?repository_url=...`).
    pub fn purl(&self, digest: &str) -> String {
        let last = self.name.rsplit('/').next().unwrap_or(&self.name);
        let last = last.to_ascii_lowercase();
        crate::purl::build(
            "oci",
            None,
            &last,
            Some(digest),
            &[("repository_url", &self.name)],
        )
    }
}

/// How a document is stamped.
#[derive(Debug, Clone)]
pub struct Stamp {
    /// Creation time, RFC 3339 UTC (`2024-05-01T10:00:00Z`).
    pub created: String,
    /// A unique id (a UUID) for the document's namespace or serial number.
    pub id: String,
    /// The tool name and version (`berth-0.1.0`).
    pub tool_version: String,
}

impl Stamp {
    /// A stamp for now, with a random id.
    pub fn now(tool_version: &str) -> Stamp {
        Stamp {
            created: berth_oci::time::Timestamp::now().to_string(),
            id: uuid::Uuid::new_v4().to_string(),
            tool_version: tool_version.to_owned(),
        }
    }
}

/// The document for `image` in `format`.
pub fn document(format: Format, image: &Image, stamp: &Stamp) -> serde_json::Value {
    match format {
        Format::Spdx => spdx::document(image, stamp),
        Format::CycloneDx => cyclonedx::document(image, stamp),
    }
}

#[cfg(test)]
mod tests;
