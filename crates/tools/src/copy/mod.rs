//! `berth copy`: digest-preserving image copies between registries, OCI
//! layouts, oci-archive and docker-archive tarballs.
//!
//! An image is copied bottom-up: blobs first (in parallel, skipping those the
//! destination already has, mounting across repositories of the same
//! registry), then each platform manifest by digest, then the top manifest
//! under its tag. Manifests are moved as bytes, never re-serialised, so the
//! copy has the same digest as the original. The exceptions are stated:
//! a `--platform` filter that keeps some but not all platforms of an index
//! writes a new, smaller index (with the attestation manifests of the
//! platforms it keeps); a legacy `docker save` archive (which holds
//! no manifest) gets a Docker schema2 manifest synthesised from its config
//! and layers.
//!
//! An index's entries that are not manifests (BuildKit's registry cache
//! lists its layers and cache config so) are copied as blobs; docker buildx
//! attestation manifests are copied with their index and are never a
//! platform: a `--platform` filter selects platform images, and keeps the
//! attestations of those it keeps when it writes an index.
//!
//! Sources and destinations implement [`Source`] and [`Destination`]
//! ([`registry`], [`layout`], [`docker_archive`]).

pub mod cmd;
pub mod docker_archive;
mod engine;
pub mod layout;
pub mod location;
pub mod progress;
pub mod remote;

use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use berth_oci::{Descriptor, Digest, EntryKind};
use bytes::Bytes;
use futures_util::Stream;

pub use engine::{copy_image, CopyOptions, CopyReport};
pub use location::Location;

use crate::ToolError;

/// A stream of blob bytes.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, ToolError>> + Send>>;

/// A manifest's exact bytes and media type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawManifest {
    /// The bytes, digested as they are.
    pub bytes: Bytes,
    /// The media type.
    pub media_type: String,
}

impl RawManifest {
    /// The manifest's sha256 digest.
    pub fn digest(&self) -> Digest {
        Digest::sha256(&self.bytes)
    }

    /// The parsed manifest.
    pub fn parse(&self) -> Result<berth_oci::Manifest, ToolError> {
        berth_oci::Manifest::parse(&self.bytes, Some(&self.media_type))
            .map_err(|e| ToolError::Image(format!("manifest {}: {e}", self.digest())))
    }

    /// A descriptor of this manifest.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor {
            media_type: self.media_type.clone(),
            digest: self.digest(),
            size: self.bytes.len() as i64,
            urls: None,
            annotations: None,
            data: None,
            artifact_type: None,
            platform: None,
        }
    }
}

/// Where images are read from.
#[async_trait]
pub trait Source: Send + Sync {
    /// A manifest by tag or digest (`None`: the only/default image).
    async fn manifest(&self, reference: Option<&str>) -> Result<RawManifest, ToolError>;
    /// A blob's bytes.
    async fn blob(&self, descriptor: &Descriptor) -> Result<ByteStream, ToolError>;
    /// The tags this source holds.
    async fn tags(&self) -> Result<Vec<String>, ToolError>;
    /// `(registry, repository)` when the source is a registry (for mounts).
    fn registry_repository(&self) -> Option<(String, String)> {
        None
    }
}

/// Where images are written to.
#[async_trait]
pub trait Destination: Send + Sync {
    /// Whether the blob is already there.
    async fn has_blob(&self, descriptor: &Descriptor) -> Result<bool, ToolError>;
    /// Mounts a blob from another repository of the same registry; false
    /// when not possible.
    async fn mount(
        &self,
        _descriptor: &Descriptor,
        _registry: &str,
        _repository: &str,
    ) -> Result<bool, ToolError> {
        Ok(false)
    }
    /// Refuses, before anything is transferred, an image this destination
    /// cannot hold; `manifest` is the top manifest to be written (after
    /// the `--platform` filter).
    fn check_image(&self, _manifest: &RawManifest) -> Result<(), ToolError> {
        Ok(())
    }
    /// Writes a blob, verifying its digest.
    async fn put_blob(&self, descriptor: &Descriptor, data: ByteStream) -> Result<(), ToolError>;
    /// Writes a manifest: `tag` for the top-level manifest of an image
    /// (`None` and `top_level` for an untagged image), neither for children.
    async fn put_manifest(
        &self,
        manifest: &RawManifest,
        tag: Option<&str>,
        top_level: bool,
    ) -> Result<(), ToolError>;
    /// Completes the destination (writes archive files).
    async fn finish(&self) -> Result<(), ToolError> {
        Ok(())
    }
    /// `(registry, repository)` when the destination is a registry.
    fn registry_repository(&self) -> Option<(String, String)> {
        None
    }
}

/// A platform filter (`linux/amd64`, `linux/arm64/v8`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// Operating system.
    pub os: String,
    /// CPU architecture.
    pub architecture: String,
    /// Variant (`v8`), if given.
    pub variant: Option<String>,
}

impl Platform {
    /// Parses `os/arch[/variant]`.
    pub fn parse(s: &str) -> Result<Platform, ToolError> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, arch] | [os, arch, _] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
                os: (*os).to_owned(),
                architecture: (*arch).to_owned(),
                variant: parts.get(2).map(|v| (*v).to_owned()),
            }),
            _ => Err(ToolError::Usage(format!(
                "platform {s:?}: expected os/arch[/variant]"
            ))),
        }
    }

    /// The platform of an index entry; `None` for entries that are no
    /// platform's image: blobs (BuildKit's cache), docker buildx
    /// attestation manifests, and anything listed as `unknown/unknown`.
    pub fn of(d: &Descriptor) -> Option<Platform> {
        if d.entry_kind() != EntryKind::Manifest {
            return None;
        }
        let p = d.platform.as_ref()?;
        if p.get("os")?.as_str()? == "unknown" && p.get("architecture")?.as_str()? == "unknown" {
            return None;
        }
        Some(Platform {
            os: p.get("os")?.as_str()?.to_owned(),
            architecture: p.get("architecture")?.as_str()?.to_owned(),
            variant: p.get("variant").and_then(|v| v.as_str()).map(str::to_owned),
        })
    }

    /// Whether `other` is matched by this filter (a filter without variant
    /// matches every variant).
    pub fn matches(&self, other: &Platform) -> bool {
        self.os == other.os
            && self.architecture == other.architecture
            && (self.variant.is_none() || self.variant == other.variant)
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Opens a location for reading.
pub async fn open_source(
    loc: &Location,
    client: &Arc<berth_client::Client>,
) -> Result<Box<dyn Source>, ToolError> {
    Ok(match loc {
        Location::Registry(r) => Box::new(remote::RemoteRepository::new(client.clone(), r)),
        Location::OciLayout { path, .. } => Box::new(layout::Layout::open(path)?),
        Location::OciArchive { path, .. } => Box::new(layout::Archive::open(path)?),
        Location::DockerArchive { path, .. } => Box::new(docker_archive::Reader::open(path)?),
    })
}

/// Opens a location for writing.
pub async fn open_destination(
    loc: &Location,
    client: &Arc<berth_client::Client>,
) -> Result<Box<dyn Destination>, ToolError> {
    Ok(match loc {
        Location::Registry(r) => Box::new(remote::RemoteRepository::new(client.clone(), r)),
        Location::OciLayout { path, .. } => Box::new(layout::Layout::create(path)?),
        Location::OciArchive { path, .. } => Box::new(layout::Archive::create(path)?),
        Location::DockerArchive { path, name } => {
            Box::new(docker_archive::Writer::create(path, name.clone())?)
        }
    })
}

#[cfg(test)]
mod tests;
