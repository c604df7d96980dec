//! Which requests are mirrored, and from where.
//!
//! Three ways in, tried in this order:
//!
//! 1. containerd's `?ns=<host>` (a `hosts.toml` mirror): the upstream that
//!    answers for that host, the path being the repository there; a host
//!    no upstream answers for is refused (never answered with local
//!    content of the same name), unless it is berth's own.
//! 2. a namespace per upstream: `/v2/<upstream>/<repository>/...`.
//! 3. hostless (the Docker daemon's `registry-mirrors`, which sends
//!    `/v2/library/postgres/...`): reads of a repository berth does not
//!    hold go to the Docker Hub default upstream, when one is set.
//!
//! Docker Hub's one-component names are `library/<name>` there.

use std::sync::Arc;

use berth_oci::RepositoryName;
use berth_registry::{Error, Registry};

use crate::{Mirror, MirrorRepo, Upstream};

/// Where a request's repository lives.
#[derive(Debug, Clone)]
pub enum Target {
    /// A local repository.
    Local,
    /// A mirrored one.
    Mirrored(MirrorRepo),
}

impl Mirror {
    fn repo(upstream: &Arc<Upstream>, remote: &str) -> Result<MirrorRepo, Error> {
        let remote = if upstream.is_docker_hub() && !remote.contains('/') {
            format!("library/{remote}")
        } else {
            remote.to_owned()
        };
        let local = RepositoryName::parse(format!("{}/{remote}", upstream.config.name))
            .map_err(|e| Error::NameInvalid(e.to_string()))?;
        Ok(MirrorRepo {
            upstream: upstream.clone(),
            remote,
            local,
        })
    }

    /// Resolves the repository of a request. `ns` is the `?ns=` query
    /// parameter, `own_hosts` the names this server is reached by (its
    /// `Host` header, its external URL's host), `write` whether the
    /// request would change something (writes are never routed hostless).
    pub async fn resolve(
        &self,
        name: &RepositoryName,
        ns: Option<&str>,
        own_hosts: &[&str],
        write: bool,
    ) -> Result<Target, Error> {
        if let Some(ns) = ns.filter(|n| !n.is_empty()) {
            let host = berth_client::auth::normalize_host(ns);
            if own_hosts
                .iter()
                .any(|h| berth_client::auth::normalize_host(h) == host)
            {
                return Ok(Target::Local);
            }
            return match self.upstreams.iter().find(|u| u.serves_host(&host)) {
                Some(u) => Ok(Target::Mirrored(Mirror::repo(u, name.as_str())?)),
                None => Err(Error::NameUnknown(format!(
                    "{name} at {ns}: this registry does not mirror {ns} (the ?ns= of the request); \
                     configure an upstream answering for that host, or pull from {ns} directly"
                ))),
            };
        }
        if let Some((first, rest)) = name.as_str().split_once('/') {
            if let Some(u) = self.upstreams.iter().find(|u| u.config.name == first) {
                return Ok(Target::Mirrored(Mirror::repo(u, rest)?));
            }
        }
        if let (Some(hub), false) = (&self.docker_hub_default, write) {
            if !local_exists(&self.registry, name).await? {
                return Ok(Target::Mirrored(Mirror::repo(hub, name.as_str())?));
            }
        }
        Ok(Target::Local)
    }
}

async fn local_exists(registry: &Registry, name: &RepositoryName) -> Result<bool, Error> {
    match registry.tags(name, Some(0), None).await {
        Ok(_) => Ok(true),
        Err(Error::NameUnknown(_)) => Ok(false),
        Err(e) => Err(e),
    }
}
