//! Pre-warming the cache (`berth mirror warm docker.io/library/postgres:16
//! --platform linux/amd64`): an image is fetched through the pull-through
//! path, exactly as a client's pull would fetch it (manifests stored,
//! blobs downloaded once, verified and stored), without sending the bytes
//! anywhere, so the first real pull is served from the cache.
//!
//! The image is named by its upstream host (`docker.io/library/postgres`,
//! `ghcr.io/org/app`: the upstream whose `hosts` list it) or by the
//! mirror's namespace form (`hub/library/postgres`). A platform filter
//! selects some platforms of an index; the index itself is cached whole,
//! sparse (its other platforms arrive when first asked for).

use std::sync::Arc;

use berth_oci::{media, Digest, EntryKind, ManifestKind, Reference, RepositoryName};
use berth_registry::{Error, ManifestEntry};
use berth_tools::copy::Platform;
use futures_util::StreamExt as _;
use serde::Serialize;

use crate::{BlobAnswer, Mirror, MirrorRepo, Target};

/// What warming an image did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Warmed {
    /// The mirrored repository (`hub/library/postgres`).
    pub repository: String,
    /// The tag or digest warmed.
    pub reference: String,
    /// The digest of its top manifest.
    pub digest: String,
    /// The platforms warmed (empty: the image has one manifest).
    pub platforms: Vec<String>,
    /// Manifests now cached (the top one and the selected platforms').
    pub manifests: usize,
    /// Blobs downloaded from the upstream now.
    pub blobs_fetched: usize,
    /// Blobs that were cached already.
    pub blobs_cached: usize,
    /// Bytes downloaded now.
    pub bytes_fetched: u64,
}

/// How long a downloaded blob may take to be stored.
const STORE_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

fn invalid(why: String) -> Error {
    Error::InvalidParameter(why)
}

fn parse(m: &ManifestEntry) -> Result<berth_oci::Manifest, Error> {
    berth_oci::Manifest::parse(&m.content, Some(&m.media_type))
        .map_err(|e| Error::ManifestInvalid(format!("manifest {}: {e}", m.digest)))
}

impl Mirror {
    /// Where `image` is mirrored, and its tag or digest.
    async fn warm_target(&self, image: &str) -> Result<(MirrorRepo, Reference), Error> {
        let image = image.trim();
        let (name, reference) = match image.split_once('@') {
            Some((n, d)) => (n, Some(d)),
            None => match image.rsplit_once(':') {
                Some((n, t)) if !t.contains('/') => (n, Some(t)),
                _ => (image, None),
            },
        };
        let reference = Reference::parse(reference.unwrap_or("latest"))
            .map_err(|e| invalid(format!("image {image:?}: {e}")))?;
        let (first, rest) = name.split_once('/').unwrap_or((name, ""));
        let by_namespace = self.upstreams.iter().any(|u| u.config.name == first);
        let upstream_host = first.contains(['.', ':']) || first == "localhost";
        let (repo, ns) = if by_namespace || !upstream_host {
            (name, None)
        } else {
            (rest, Some(first))
        };
        let repo =
            RepositoryName::parse(repo).map_err(|e| invalid(format!("image {image:?}: {e}")))?;
        match self.resolve(&repo, ns, &[], false).await {
            Ok(Target::Mirrored(m)) => Ok((m, reference)),
            Ok(Target::Local) | Err(Error::NameUnknown(_)) => Err(invalid(format!(
                "image {image:?} is not mirrored here: name it by an upstream's host \
                 (docker.io/library/postgres:16, for an upstream whose hosts list docker.io) \
                 or by its namespace (hub/library/postgres:16); `berth mirror status` lists \
                 the upstreams"
            ))),
            Err(e) => Err(e),
        }
    }

    /// Fetches `image` (and, of an index, the platforms `platforms` names,
    /// `os/arch[/variant]`; all when empty) into the cache through the
    /// pull-through path.
    pub async fn warm(&self, image: &str, platforms: &[String]) -> Result<Warmed, Error> {
        let filters = platforms
            .iter()
            .map(|p| Platform::parse(p).map_err(|e| invalid(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        let (repo, reference) = self.warm_target(image).await?;
        let top = self.manifest(&repo, &reference).await?.manifest;
        let mut out = Warmed {
            repository: repo.local.to_string(),
            reference: reference.to_string(),
            digest: top.digest.to_string(),
            manifests: 1,
            ..Warmed::default()
        };
        let parsed = parse(&top)?;
        let mut images: Vec<Arc<ManifestEntry>> = Vec::new();
        if parsed.kind == ManifestKind::Index {
            let mut available = Vec::new();
            for d in &parsed.manifests {
                if d.entry_kind() != EntryKind::Manifest {
                    continue;
                }
                let platform = Platform::of(d);
                if let Some(p) = &platform {
                    available.push(p.to_string());
                }
                let selected = filters.is_empty()
                    || platform
                        .as_ref()
                        .is_some_and(|p| filters.iter().any(|f| f.matches(p)));
                if !selected {
                    continue;
                }
                let child = self
                    .manifest(&repo, &Reference::Digest(d.digest.clone()))
                    .await?
                    .manifest;
                out.manifests += 1;
                if let Some(p) = platform {
                    out.platforms.push(p.to_string());
                }
                images.push(child);
            }
            if images.is_empty() {
                return Err(invalid(format!(
                    "{image} has no manifest for {}; it has: {}",
                    platforms.join(", "),
                    available.join(", ")
                )));
            }
        } else {
            images.push(top);
        }
        for m in &images {
            let parsed = parse(m)?;
            for b in parsed.config.iter().chain(parsed.layers.iter()) {
                if media::is_non_distributable(&b.media_type) {
                    continue;
                }
                self.warm_blob(&repo, &b.digest, &mut out).await?;
            }
        }
        Ok(out)
    }

    async fn warm_blob(
        &self,
        repo: &MirrorRepo,
        digest: &Digest,
        out: &mut Warmed,
    ) -> Result<(), Error> {
        match self.blob(repo, digest).await? {
            BlobAnswer::Local => out.blobs_cached += 1,
            BlobAnswer::Streaming { mut body, .. } => {
                // Read to the end: the last byte comes once the digest is
                // verified, and the blob is stored then.
                while let Some(chunk) = body.next().await {
                    let chunk = chunk.map_err(|e| {
                        Error::Internal(format!("fetching blob {digest} from upstream: {e}"))
                    })?;
                    out.bytes_fetched += chunk.len() as u64;
                }
                out.blobs_fetched += 1;
                // Stored right after it is verified: wait for that, so
                // the next pull finds it.
                let deadline = std::time::Instant::now() + STORE_WAIT;
                loop {
                    match self.registry.blob_size(&repo.local, digest).await {
                        Ok(_) => break,
                        Err(Error::BlobUnknown(_)) if std::time::Instant::now() < deadline => {
                            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        }
                        Err(Error::BlobUnknown(_)) => {
                            return Err(Error::Internal(format!(
                                "blob {digest} was downloaded but not stored within {} s",
                                STORE_WAIT.as_secs()
                            )))
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Ok(())
    }
}
