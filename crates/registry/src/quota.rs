//! Storage usage per namespace and repository, and namespace quotas.
//!
//! Usage comes from the metadata every time (see `berth_meta`'s usage
//! module): a namespace's content is every blob linked to and every
//! manifest stored in one of its repositories, each distinct digest counted
//! once. A repository's bytes are *unique* when no other repository of the
//! namespace holds that digest, *shared* otherwise.
//!
//! A quota limits a namespace's usage. Uploads are refused (DENIED) before
//! their data is written when their size is known (`Content-Length`,
//! `Content-Range`), cut off as soon as a streamed body passes what is free,
//! and checked again, exactly, in the transaction that links the finished
//! blob; manifest pushes and mounts are checked too. Content the namespace
//! already holds costs nothing.
//!
//! The bound on concurrent uploads: the early checks see only committed
//! content, so N uploads running at once may each pass them. The final
//! check runs inside the link's transaction: on SQLite (one writer) it is
//! exact, the namespace never ends over its quota, and a refused upload's
//! bytes are removed (or, if published already, left unreferenced for
//! garbage collection). On PostgreSQL, concurrent links each see the
//! committed usage without the others, so a namespace can end over its
//! quota by at most the blobs whose links commit at the same moment.
//! Manifests (at most `max_manifest_size` each) are checked before their
//! transaction and may overshoot by the manifests pushed concurrently.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use berth_meta::{Content, ContentKind};
use berth_store::ByteStream;
use futures_util::StreamExt;
use serde::Serialize;

use crate::glob::namespace;
use crate::{Caller, Error, Registry, Result};

/// A repository's share of its namespace's storage.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RepositoryUsage {
    /// Repository name.
    pub name: String,
    /// Bytes it holds: `unique_bytes + shared_bytes`.
    pub total_bytes: u64,
    /// Bytes no other repository of the namespace holds.
    pub unique_bytes: u64,
    /// Bytes other repositories of the namespace hold too.
    pub shared_bytes: u64,
    /// Blobs linked to it.
    pub blobs: u64,
    /// Manifests stored in it.
    pub manifests: u64,
}

/// A namespace's quota and how much of it is used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuotaView {
    /// Namespace.
    pub namespace: String,
    /// The limit.
    pub limit_bytes: u64,
    /// Bytes used.
    pub used_bytes: u64,
    /// Bytes still free (0 when over).
    pub available_bytes: u64,
}

/// A namespace's storage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NamespaceUsage {
    /// Namespace.
    pub namespace: String,
    /// Bytes used, each distinct digest once.
    pub total_bytes: u64,
    /// Of which blobs (layers, configs, artifacts).
    pub blob_bytes: u64,
    /// Of which manifests.
    pub manifest_bytes: u64,
    /// Distinct blobs.
    pub blobs: u64,
    /// Distinct manifests.
    pub manifests: u64,
    /// The quota, if one is set.
    pub quota: Option<QuotaView>,
    /// Each repository, by name.
    pub repositories: Vec<RepositoryUsage>,
}

/// `1.5 GiB`.
pub(crate) fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let (mut v, mut unit) = (n as f64, 0);
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Splits `content` into the namespace's totals and each repository's.
fn summarise(ns: &str, content: &[Content]) -> NamespaceUsage {
    // digest -> (size, is a blob somewhere, repositories holding it)
    let mut digests: HashMap<&str, (u64, bool, Vec<&str>)> = HashMap::new();
    for c in content {
        let e = digests
            .entry(c.digest.as_str())
            .or_insert((c.size, false, Vec::new()));
        e.1 |= c.kind == ContentKind::Blob;
        if e.2.last() != Some(&c.repository.as_str()) {
            e.2.push(&c.repository);
        }
    }
    let mut repos: Vec<RepositoryUsage> = Vec::new();
    let mut counted: Option<(&str, &str)> = None;
    for c in content {
        if repos.last().is_none_or(|r| r.name != c.repository) {
            repos.push(RepositoryUsage {
                name: c.repository.clone(),
                ..Default::default()
            });
        }
        let Some(r) = repos.last_mut() else { continue };
        match c.kind {
            ContentKind::Blob => r.blobs += 1,
            ContentKind::Manifest => r.manifests += 1,
        }
        // The same digest as blob and manifest of one repository counts once
        // (content is sorted by repository, then digest).
        if counted == Some((c.repository.as_str(), c.digest.as_str())) {
            continue;
        }
        counted = Some((&c.repository, &c.digest));
        let holders = digests.get(c.digest.as_str()).map_or(1, |e| e.2.len());
        if holders > 1 {
            r.shared_bytes += c.size;
        } else {
            r.unique_bytes += c.size;
        }
        r.total_bytes += c.size;
    }
    let mut u = NamespaceUsage {
        namespace: ns.to_owned(),
        total_bytes: 0,
        blob_bytes: 0,
        manifest_bytes: 0,
        blobs: 0,
        manifests: 0,
        quota: None,
        repositories: repos,
    };
    for (size, blob, _) in digests.values() {
        u.total_bytes += size;
        if *blob {
            u.blob_bytes += size;
            u.blobs += 1;
        } else {
            u.manifest_bytes += size;
            u.manifests += 1;
        }
    }
    u
}

/// Bodies up to this size are read to the end after a refusal, so that a
/// client still sending gets the error instead of a connection reset.
pub(crate) const DRAIN_LIMIT: u64 = 16 * 1024 * 1024;

/// Reads and discards up to [`DRAIN_LIMIT`] bytes of `body`.
pub(crate) async fn drain(mut body: ByteStream) {
    let mut n = 0u64;
    while n <= DRAIN_LIMIT {
        match body.next().await {
            Some(Ok(chunk)) => n += chunk.len() as u64,
            _ => break,
        }
    }
}

/// Fails a body stream once it passes `max` bytes (after draining what the
/// client is still sending, see [`DRAIN_LIMIT`]), setting the returned
/// flag so the caller can tell a quota cut-off from a client failure.
pub(crate) fn capped(body: ByteStream, max: u64) -> (ByteStream, Arc<AtomicBool>) {
    let tripped = Arc::new(AtomicBool::new(false));
    let flag = tripped.clone();
    let stream = futures_util::stream::unfold(Some((body, 0u64)), move |state| {
        let flag = flag.clone();
        async move {
            let (mut body, seen) = state?;
            match body.next().await? {
                Err(e) => Some((Err(e), None)),
                Ok(chunk) => {
                    let seen = seen.saturating_add(chunk.len() as u64);
                    if seen <= max {
                        return Some((Ok(chunk), Some((body, seen))));
                    }
                    flag.store(true, Ordering::Release);
                    drain(body).await;
                    Some((Err(std::io::Error::other("over the namespace quota")), None))
                }
            }
        }
    });
    (Box::pin(stream), tripped)
}

/// A namespace's quota as the upload paths need it.
#[derive(Debug, Clone)]
pub(crate) struct Gate {
    pub(crate) namespace: String,
    pub(crate) limit: u64,
    pub(crate) used: u64,
}

impl Gate {
    pub(crate) fn available(&self) -> u64 {
        self.limit.saturating_sub(self.used)
    }

    /// The refusal for needing `more` bytes: `Some(n)` when known, `None`
    /// for a streamed body that passed what is free.
    pub(crate) fn refusal(&self, more: Option<u64>) -> Error {
        let need = match more {
            Some(n) => format!(
                "this needs {} more but only {}",
                human(n),
                human(self.available())
            ),
            None => format!("this upload is larger than the {}", human(self.available())),
        };
        Error::Denied(format!(
            "namespace {} is over its storage quota: {need} of its {} are free ({} used); delete images or ask for a larger quota",
            self.namespace,
            human(self.limit),
            human(self.used)
        ))
    }

    /// Refuses adding `more` bytes.
    pub(crate) fn check(&self, more: u64) -> Result<()> {
        if self.used.saturating_add(more) > self.limit {
            Err(self.refusal(Some(more)))
        } else {
            Ok(())
        }
    }
}

impl Registry {
    async fn quota_limits(&self) -> Result<Arc<HashMap<String, u64>>> {
        Ok(self
            .quotas
            .get_or_load(|| async {
                let all = self.meta.quotas().await?;
                Ok::<_, berth_meta::Error>(
                    all.into_iter()
                        .map(|q| (q.namespace, q.limit_bytes))
                        .collect(),
                )
            })
            .await?)
    }

    /// The quota of `repo`'s namespace with its current usage, if it has
    /// one and `digest` (when known) is not already held there.
    pub(crate) async fn quota_gate(
        &self,
        repo: &berth_oci::RepositoryName,
        digest: Option<&berth_oci::Digest>,
    ) -> Result<Option<Gate>> {
        let ns = repo.namespace();
        let Some(&limit) = self.quota_limits().await?.get(ns) else {
            return Ok(None);
        };
        if let Some(d) = digest {
            if self.meta.namespace_holds(ns, d.as_str()).await? {
                return Ok(None);
            }
        }
        Ok(Some(Gate {
            namespace: ns.to_owned(),
            limit,
            used: self.meta.namespace_usage(ns).await?,
        }))
    }

    /// Usage of namespace `ns`, per repository, with its quota. A
    /// namespace nobody owns, without repositories or a quota, is
    /// `NotFound`, as an unknown repository is.
    pub async fn namespace_usage(&self, ns: &str) -> Result<NamespaceUsage> {
        let content = self.meta.namespace_content(ns).await?;
        let mut usage = summarise(ns, &content);
        usage.quota = self.quota(ns).await?;
        if content.is_empty()
            && usage.quota.is_none()
            && self.meta.namespace(ns).await?.is_none()
            && self.meta.namespace_repositories(ns).await?.is_empty()
        {
            return Err(Error::NotFound(format!(
                "namespace {ns} is not known to this registry: no user or organisation owns it and it holds no repositories"
            )));
        }
        Ok(usage)
    }

    /// Usage of repository `repo` within its namespace.
    pub async fn repository_usage(&self, repo: &str) -> Result<RepositoryUsage> {
        let ns = namespace(repo);
        let content = self.meta.namespace_content(ns).await?;
        let usage = summarise(ns, &content);
        match usage.repositories.into_iter().find(|r| r.name == repo) {
            Some(r) => Ok(r),
            None if self.meta.inventory(repo).await?.is_some() => Ok(RepositoryUsage {
                name: repo.to_owned(),
                ..Default::default()
            }),
            None => Err(Error::NameUnknown(repo.to_owned())),
        }
    }

    /// The quota of `ns` and its use, if one is set.
    pub async fn quota(&self, ns: &str) -> Result<Option<QuotaView>> {
        let Some(&limit) = self.quota_limits().await?.get(ns) else {
            return Ok(None);
        };
        let used = self.meta.namespace_usage(ns).await?;
        Ok(Some(QuotaView {
            namespace: ns.to_owned(),
            limit_bytes: limit,
            used_bytes: used,
            available_bytes: limit.saturating_sub(used),
        }))
    }

    /// Sets the quota of namespace `ns`. A quota below the current usage
    /// is allowed: it refuses new content until enough is deleted.
    pub async fn set_quota(
        &self,
        ns: &str,
        limit_bytes: u64,
        caller: &Caller,
    ) -> Result<QuotaView> {
        berth_oci::Namespace::parse(ns).map_err(|e| Error::NameInvalid(e.to_string()))?;
        let out = self.meta.set_quota(ns, limit_bytes, &caller.actor()).await;
        self.quotas.invalidate();
        out?;
        self.quota(ns)
            .await?
            .ok_or_else(|| Error::Internal("quota vanished after being set".into()))
    }

    /// Removes the quota of namespace `ns`.
    pub async fn remove_quota(&self, ns: &str, caller: &Caller) -> Result<()> {
        let out = self.meta.delete_quota(ns, &caller.actor()).await;
        self.quotas.invalidate();
        if out? {
            Ok(())
        } else {
            Err(Error::NotFound(format!("namespace {ns} has no quota")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(repo: &str, digest: &str, size: u64, kind: ContentKind) -> Content {
        Content {
            repository: repo.into(),
            digest: digest.into(),
            size,
            kind,
        }
    }

    #[test]
    fn shared_content_counts_once_per_namespace() {
        use ContentKind::{Blob, Manifest};
        let content = vec![
            c("acme/a", "base", 1000, Blob),
            c("acme/a", "cfg-a", 10, Blob),
            c("acme/a", "m-a", 5, Manifest),
            c("acme/b", "base", 1000, Blob),
            c("acme/b", "m-a", 5, Manifest),
            c("acme/c", "solo", 7, Blob),
            c("acme/c", "solo", 7, Manifest),
        ];
        let u = summarise("acme", &content);
        assert_eq!(u.total_bytes, 1000 + 10 + 5 + 7);
        assert_eq!((u.blob_bytes, u.blobs), (1017, 3));
        assert_eq!((u.manifest_bytes, u.manifests), (5, 1));
        let a = &u.repositories[0];
        assert_eq!(
            (a.unique_bytes, a.shared_bytes, a.total_bytes),
            (10, 1005, 1015)
        );
        assert_eq!((a.blobs, a.manifests), (2, 1));
        let b = &u.repositories[1];
        assert_eq!((b.unique_bytes, b.shared_bytes), (0, 1005));
        let cc = &u.repositories[2];
        assert_eq!((cc.unique_bytes, cc.total_bytes), (7, 7));
    }

    #[test]
    fn gate_messages() {
        let g = Gate {
            namespace: "acme".into(),
            limit: 10 << 20,
            used: 9 << 20,
        };
        assert!(g.check(1 << 20).is_ok());
        let Err(Error::Denied(m)) = g.check((1 << 20) + 1) else {
            panic!("expected a refusal");
        };
        assert!(
            m.starts_with("namespace acme is over its storage quota"),
            "{m}"
        );
        assert!(m.contains("only 1.0 MiB of its 10.0 MiB are free"), "{m}");
        assert_eq!(human(512), "512 B");
    }
}
