//! A repository on a registry (reached over the network with
//! `berth-client`) as a copy source and destination. Named apart from the
//! server's core service type `berth_registry::Registry`.

use std::sync::Arc;

use async_trait::async_trait;
use berth_client::{Client, MountResult};
use berth_oci::reference::ImageRef;
use berth_oci::Descriptor;
use futures_util::TryStreamExt as _;

use super::{ByteStream, Destination, RawManifest, Source};
use crate::ToolError;

/// One repository on a registry.
#[derive(Debug, Clone)]
pub struct RemoteRepository {
    client: Arc<Client>,
    registry: String,
    repository: String,
    default_reference: String,
}

impl RemoteRepository {
    /// The repository named by `r`.
    pub fn new(client: Arc<Client>, r: &ImageRef) -> RemoteRepository {
        RemoteRepository {
            client,
            registry: r.registry.clone(),
            repository: r.repository.clone(),
            default_reference: r.manifest_reference(),
        }
    }

    fn repo(&self) -> berth_client::Repository<'_> {
        self.client.repository(&self.registry, &self.repository)
    }
}

#[async_trait]
impl Source for RemoteRepository {
    async fn manifest(&self, reference: Option<&str>) -> Result<RawManifest, ToolError> {
        let reference = reference.unwrap_or(&self.default_reference);
        let m = self.repo().get_manifest(reference).await?;
        Ok(RawManifest {
            bytes: m.bytes,
            media_type: m.media_type,
        })
    }

    async fn blob(&self, d: &Descriptor) -> Result<ByteStream, ToolError> {
        let s = self.repo().get_blob(&d.digest).await?;
        Ok(Box::pin(s.stream.map_err(ToolError::from)))
    }

    async fn tags(&self) -> Result<Vec<String>, ToolError> {
        Ok(self.repo().tags(1000).await?)
    }

    fn registry_repository(&self) -> Option<(String, String)> {
        Some((self.registry.clone(), self.repository.clone()))
    }
}

#[async_trait]
impl Destination for RemoteRepository {
    async fn has_blob(&self, d: &Descriptor) -> Result<bool, ToolError> {
        Ok(self.repo().head_blob(&d.digest).await?.is_some())
    }

    async fn mount(
        &self,
        d: &Descriptor,
        registry: &str,
        repository: &str,
    ) -> Result<bool, ToolError> {
        if registry != self.registry || repository == self.repository {
            return Ok(false);
        }
        Ok(self.repo().mount_blob(&d.digest, repository).await? == MountResult::Mounted)
    }

    async fn put_blob(&self, d: &Descriptor, data: ByteStream) -> Result<(), ToolError> {
        let body = reqwest::Body::wrap_stream(data);
        self.repo()
            .upload_blob(&d.digest, d.size.max(0) as u64, body)
            .await?;
        Ok(())
    }

    async fn put_manifest(
        &self,
        m: &RawManifest,
        tag: Option<&str>,
        _top: bool,
    ) -> Result<(), ToolError> {
        let digest = m.digest();
        let reference = tag.map_or_else(|| digest.to_string(), str::to_owned);
        self.repo()
            .put_manifest(&reference, m.bytes.clone(), &m.media_type)
            .await?;
        Ok(())
    }

    fn registry_repository(&self) -> Option<(String, String)> {
        Some((self.registry.clone(), self.repository.clone()))
    }
}
