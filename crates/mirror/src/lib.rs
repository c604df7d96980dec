//! berth's pull-through mirror.
//!
//! A mirror fronts upstream registries (Docker Hub, GHCR, Quay, the
//! reference registry, another berth): a pull that berth cannot answer
//! from what it holds is fetched from the upstream, stored and served at
//! once, and what was stored keeps being served when the upstream fails.
//!
//! - [`Upstream`] is one configured upstream: its URL, credentials, the
//!   hosts it answers for, its limits (concurrent requests, request rate,
//!   `Retry-After` after a 429) and what it last said about its own rate
//!   limit. Requests go through `berth_client` (the token flow, Basic).
//! - [`Mirror::resolve`] says whether a repository name of a request is
//!   mirrored ([`route`]): by namespace (`hub/library/postgres`), by
//!   containerd's `?ns=docker.io`, or, for the Docker daemon's
//!   `registry-mirrors`, hostless (`library/postgres`) to the Docker Hub
//!   default.
//! - [`Mirror::manifest`] and [`Mirror::blob`] are the pull path: cached
//!   content first (tags revalidated with a `HEAD` once their TTL is past,
//!   digests never), misses fetched once however many clients ask
//!   ([`flight`]), blobs streamed to clients while they are stored
//!   ([`spool`]).
//!
//! - [`Replicator`] is replication's transport (the rules and their
//!   scheduling live in `berth_registry::replication`): it copies images
//!   to or from another registry with the engine of `berth copy`, this
//!   registry's side read and written through its services.
//!
//! Mirrored content is stored as ordinary repositories named
//! `<upstream>/<upstream repository>` through the registry's services
//! (`put_mirrored_manifest`, `push_blob`), so garbage collection,
//! retention and usage see it, in a namespace of its own. This crate sits
//! beside `registry` and uses only its services, never `meta`.

use std::sync::Arc;
use std::time::Duration;

use berth_oci::{Digest, Reference, RepositoryName};
use berth_registry::{Caller, Error, ManifestEntry, Registry};

mod evict;
mod flight;
mod fresh;
mod local;
mod replicate;
mod route;
mod spool;
mod upstream;
mod warm;

pub use evict::CacheEviction;
pub use replicate::Replicator;
pub use route::Target;
pub use spool::BlobAnswer;
pub use upstream::{Upstream, UpstreamConfig, UpstreamStatus};
pub use warm::Warmed;

use flight::{Fetch, Flights};

/// Who may pull through the mirror.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullAccess {
    /// Anyone, without credentials.
    #[default]
    Anonymous,
    /// Any authenticated account.
    Authenticated,
}

/// The mirror's settings.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// The upstreams.
    pub upstreams: Vec<UpstreamConfig>,
    /// The upstream that hostless requests (`/v2/library/postgres/...`,
    /// the Docker daemon's `registry-mirrors`) go to when the repository
    /// is not a local one.
    pub docker_hub_default: Option<String>,
    /// Who may pull through.
    pub pull_access: PullAccess,
    /// Where blobs being fetched are spooled (they are readable by every
    /// client waiting for them while they arrive).
    pub spool_dir: std::path::PathBuf,
}

/// A mirrored repository: where a request's content comes from and where
/// it is kept.
#[derive(Debug, Clone)]
pub struct MirrorRepo {
    /// The upstream.
    pub upstream: Arc<Upstream>,
    /// The repository's name at the upstream (`library/postgres`).
    pub remote: String,
    /// The local repository holding the cached content
    /// (`hub/library/postgres`).
    pub local: RepositoryName,
}

/// A manifest as the mirror serves it.
#[derive(Debug)]
pub struct Served {
    /// The manifest.
    pub manifest: Arc<ManifestEntry>,
    /// Served from the cache although the upstream could not confirm it
    /// (down, slow, rate limited): the `Berth-Mirror-Stale` header.
    pub stale: bool,
}

/// The pull-through mirror.
pub struct Mirror {
    registry: Arc<Registry>,
    upstreams: Vec<Arc<Upstream>>,
    docker_hub_default: Option<Arc<Upstream>>,
    pull_access: PullAccess,
    /// When each cached tag was last confirmed upstream.
    checks: fresh::Checks,
    manifests: Flights<Result<Arc<ManifestEntry>, Fetch>>,
    blobs: spool::Spools,
    /// Told whenever content was stored in the cache: the cache limit's
    /// worker ([`CacheEviction`]) measures it then.
    stored: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for Mirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mirror")
            .field("upstreams", &self.upstreams.len())
            .finish()
    }
}

/// An upstream setting that cannot be used.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Mirror {
    /// Builds the mirror over the registry's services.
    pub fn new(registry: Arc<Registry>, settings: Settings) -> Result<Mirror, ConfigError> {
        let mut upstreams: Vec<Arc<Upstream>> = Vec::new();
        for c in settings.upstreams {
            if upstreams.iter().any(|u| u.config.name == c.name) {
                return Err(ConfigError(format!(
                    "mirror upstream {:?} is configured twice",
                    c.name
                )));
            }
            upstreams.push(Arc::new(Upstream::new(c)?));
        }
        let docker_hub_default = match &settings.docker_hub_default {
            None => None,
            Some(name) => Some(
                upstreams
                    .iter()
                    .find(|u| &u.config.name == name)
                    .cloned()
                    .ok_or_else(|| {
                        ConfigError(format!(
                            "mirror_docker_hub_default names {name:?}, which is not a configured upstream"
                        ))
                    })?,
            ),
        };
        if !upstreams.is_empty() {
            // Spool files of downloads a previous run did not finish are
            // worthless: start empty.
            let _ = std::fs::remove_dir_all(&settings.spool_dir);
            std::fs::create_dir_all(&settings.spool_dir).map_err(|e| {
                ConfigError(format!(
                    "creating the mirror's spool directory {}: {e}",
                    settings.spool_dir.display()
                ))
            })?;
        }
        let stored = Arc::new(tokio::sync::Notify::new());
        Ok(Mirror {
            registry,
            upstreams,
            docker_hub_default,
            pull_access: settings.pull_access,
            checks: fresh::Checks::default(),
            manifests: Flights::default(),
            blobs: spool::Spools::new(settings.spool_dir, stored.clone()),
            stored,
        })
    }

    /// Whether any upstream is configured.
    pub fn is_enabled(&self) -> bool {
        !self.upstreams.is_empty()
    }

    /// Who may pull through.
    pub fn pull_access(&self) -> PullAccess {
        self.pull_access
    }

    /// The upstreams and what they last said.
    pub fn status(&self) -> Vec<UpstreamStatus> {
        self.upstreams
            .iter()
            .map(|u| {
                u.status(
                    self.docker_hub_default
                        .as_ref()
                        .is_some_and(|d| Arc::ptr_eq(d, u)),
                )
            })
            .collect()
    }

    fn caller() -> Caller {
        Caller::system("mirror")
    }

    /// A manifest of a mirrored repository: from the cache when it has it
    /// (a tag past its TTL is revalidated with a `HEAD` first, and served
    /// stale when the upstream cannot answer), else fetched, stored and
    /// served. Concurrent misses of one manifest go upstream once.
    pub async fn manifest(
        &self,
        repo: &MirrorRepo,
        reference: &Reference,
    ) -> Result<Served, Error> {
        let cached = match self.registry.get_manifest(&repo.local, reference).await {
            Ok(m) => Some(m),
            Err(Error::ManifestUnknown(_)) => None,
            Err(e) => return Err(e),
        };
        let tag = match reference {
            Reference::Digest(_) => {
                if let Some(m) = cached {
                    return Ok(Served {
                        manifest: m,
                        stale: false,
                    });
                }
                None
            }
            Reference::Tag(t) => Some(t),
        };
        if let (Some(tag), Some(m)) = (tag, &cached) {
            if self.checks.is_fresh(&self.registry, repo, tag).await {
                return Ok(Served {
                    manifest: m.clone(),
                    stale: false,
                });
            }
        }
        let key = format!("{}@{}", repo.local, reference);
        let fetched = {
            let (registry, repo2, reference2) =
                (self.registry.clone(), repo.clone(), reference.clone());
            let known = cached.as_ref().map(|m| m.digest.clone());
            self.manifests
                .run(key, async move {
                    fetch_manifest(&registry, &repo2, &reference2, known).await
                })
                .await
                .unwrap_or_else(|| Err(Fetch::Invalid("the fetch failed unexpectedly".into())))
        };
        match (fetched, cached) {
            (Ok(m), cached) => {
                if let Some(tag) = tag {
                    self.checks.confirmed(&self.registry, repo, tag).await;
                }
                if cached.is_none_or(|c| c.digest != m.digest) {
                    self.stored.notify_one();
                }
                Ok(Served {
                    manifest: m,
                    stale: false,
                })
            }
            (Err(Fetch::NotFound), None) => Err(Error::ManifestUnknown(format!(
                "{reference} (not found at upstream {} either)",
                repo.upstream.config.name
            ))),
            (Err(e), None) => Err(e.into_error(&repo.upstream, format!("manifest {reference}"))),
            (Err(e), Some(m)) => {
                tracing::warn!(
                    upstream = %repo.upstream.config.name,
                    repository = %repo.local,
                    %reference,
                    error = %e,
                    "upstream could not revalidate a cached tag: serving it stale"
                );
                berth_metrics::get().mirror_stale(&repo.upstream.config.name);
                Ok(Served {
                    manifest: m,
                    stale: true,
                })
            }
        }
    }

    /// The size of a blob of a mirrored repository: the cached one's, else
    /// the upstream's (nothing is fetched for a `HEAD`).
    pub async fn blob_size(&self, repo: &MirrorRepo, digest: &Digest) -> Result<u64, Error> {
        match self.registry.blob_size(&repo.local, digest).await {
            Ok(size) => return Ok(size),
            Err(Error::BlobUnknown(_)) => {}
            Err(e) => return Err(e),
        }
        match repo.upstream.head_blob(&repo.remote, digest).await {
            Ok(Some(size)) => Ok(size),
            Ok(None) | Err(Fetch::NotFound) => Err(Error::BlobUnknown(digest.to_string())),
            Err(e) => Err(e.into_error(&repo.upstream, format!("blob {digest}"))),
        }
    }

    /// A blob of a mirrored repository: [`BlobAnswer::Local`] when it is
    /// stored (read it through the registry as any blob), else a stream
    /// of it as it arrives from the upstream, shared by every client
    /// asking while it does and stored once its digest is verified.
    pub async fn blob(&self, repo: &MirrorRepo, digest: &Digest) -> Result<BlobAnswer, Error> {
        match self.registry.blob_size(&repo.local, digest).await {
            Ok(_) => return Ok(BlobAnswer::Local),
            Err(Error::BlobUnknown(_)) => {}
            Err(e) => return Err(e),
        }
        self.blobs
            .fetch(&self.registry, repo, digest)
            .await
            .map_err(|e| match e {
                Fetch::NotFound => Error::BlobUnknown(digest.to_string()),
                e => e.into_error(&repo.upstream, format!("blob {digest}")),
            })
    }
}

/// Fetches a manifest from the upstream and stores it. For a tag whose
/// cached digest is `known`, a `HEAD` first: an unchanged tag costs no
/// `GET` (a `HEAD` does not count against Docker Hub's pull limit).
async fn fetch_manifest(
    registry: &Registry,
    repo: &MirrorRepo,
    reference: &Reference,
    known: Option<Digest>,
) -> Result<Arc<ManifestEntry>, Fetch> {
    let up = &repo.upstream;
    if let (Reference::Tag(_), Some(known)) = (reference, &known) {
        match up
            .head_manifest(&repo.remote, &reference.to_string())
            .await?
        {
            Some(d) if &d == known => {
                return registry
                    .get_manifest(&repo.local, reference)
                    .await
                    .map_err(|e| Fetch::Unavailable {
                        detail: format!("reading the cached manifest: {e}"),
                        retry_after: None,
                    });
            }
            Some(_) => {}
            None => return Err(Fetch::NotFound),
        }
    }
    let got = up
        .get_manifest(&repo.remote, &reference.to_string())
        .await?;
    let pushed = registry
        .put_mirrored_manifest(
            &repo.local,
            reference,
            Some(&got.media_type),
            got.bytes.clone(),
            &Mirror::caller(),
        )
        .await
        .map_err(|e| Fetch::Invalid(format!("storing the manifest: {e}")))?;
    Ok(Arc::new(ManifestEntry {
        digest: pushed.digest,
        media_type: got.media_type,
        content: got.bytes,
    }))
}

/// How long a request to an upstream may take before berth gives up on it
/// (and serves what it has).
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(20);
