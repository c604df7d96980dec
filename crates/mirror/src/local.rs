//! A repository of this registry as a source and destination of the copy
//! engine of `berth copy` (`berth_tools::copy`), through the registry's
//! services: manifests are read and written as bytes (digests kept), blobs
//! streamed, and a blob already stored anywhere here is linked rather than
//! transferred again.

use std::sync::Arc;

use async_trait::async_trait;
use berth_oci::{Descriptor, Reference, RepositoryName};
use berth_registry::{BlobBody, Caller, Registry};
use berth_tools::copy::{ByteStream, Destination, RawManifest, Source};
use berth_tools::ToolError;
use futures_util::TryStreamExt as _;

/// One repository here.
pub(crate) struct LocalRepository {
    pub(crate) registry: Arc<Registry>,
    pub(crate) repo: RepositoryName,
    /// Who writes (the audit log's actor).
    pub(crate) caller: Caller,
}

fn failed(what: String, e: berth_registry::Error) -> ToolError {
    ToolError::Io(std::io::Error::other(format!("{what}: {e}")))
}

fn reference(r: &str) -> Result<Reference, ToolError> {
    Reference::parse(r).map_err(|e| ToolError::Usage(format!("reference {r:?}: {e}")))
}

#[async_trait]
impl Source for LocalRepository {
    async fn manifest(&self, r: Option<&str>) -> Result<RawManifest, ToolError> {
        let r = r.unwrap_or("latest");
        let m = self
            .registry
            .get_manifest(&self.repo, &reference(r)?)
            .await
            .map_err(|e| failed(format!("reading manifest {}:{r} here", self.repo), e))?;
        Ok(RawManifest {
            bytes: m.content.clone(),
            media_type: m.media_type.clone(),
        })
    }

    async fn blob(&self, d: &Descriptor) -> Result<ByteStream, ToolError> {
        let (_, _, read) = self
            .registry
            .read_blob(&self.repo, &d.digest, None)
            .await
            .map_err(|e| {
                failed(
                    format!("reading blob {} of {} here", d.digest, self.repo),
                    e,
                )
            })?;
        Ok(match read.body {
            BlobBody::Bytes(b) => Box::pin(futures_util::stream::once(async move { Ok(b) })),
            BlobBody::Stream(s) => Box::pin(s.map_err(ToolError::Io)),
        })
    }

    async fn tags(&self) -> Result<Vec<String>, ToolError> {
        let page = self
            .registry
            .tags(&self.repo, None, None)
            .await
            .map_err(|e| failed(format!("listing the tags of {} here", self.repo), e))?;
        Ok(page.items().to_vec())
    }
}

#[async_trait]
impl Destination for LocalRepository {
    async fn has_blob(&self, d: &Descriptor) -> Result<bool, ToolError> {
        match self.registry.blob_size(&self.repo, &d.digest).await {
            Ok(_) => return Ok(true),
            Err(berth_registry::Error::BlobUnknown(_)) => {}
            Err(e) => return Err(failed(format!("looking for blob {} here", d.digest), e)),
        }
        // Stored for another repository: linked, not transferred again.
        self.registry
            .mount_blob(&self.repo, &d.digest, None)
            .await
            .map_err(|e| failed(format!("linking blob {} into {}", d.digest, self.repo), e))
    }

    async fn put_blob(&self, d: &Descriptor, data: ByteStream) -> Result<(), ToolError> {
        let body: berth_registry::ByteStream =
            Box::pin(data.map_err(|e| std::io::Error::other(e.to_string())));
        self.registry
            .push_blob(&self.repo, &d.digest, u64::try_from(d.size).ok(), body)
            .await
            .map_err(|e| failed(format!("storing blob {} in {}", d.digest, self.repo), e))?;
        Ok(())
    }

    async fn put_manifest(
        &self,
        m: &RawManifest,
        tag: Option<&str>,
        _top_level: bool,
    ) -> Result<(), ToolError> {
        let r = match tag {
            Some(t) => reference(t)?,
            None => Reference::Digest(m.digest()),
        };
        self.registry
            .put_manifest(
                &self.repo,
                &r,
                Some(&m.media_type),
                m.bytes.clone(),
                &[],
                &self.caller,
            )
            .await
            .map_err(|e| {
                failed(
                    format!("storing manifest {} in {}", m.digest(), self.repo),
                    e,
                )
            })?;
        Ok(())
    }
}
