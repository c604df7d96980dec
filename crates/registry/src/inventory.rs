//! A repository's tags and manifests as the management API shows them:
//! sizes, push times and pull statistics (the database's numbers plus what
//! this process counted and has not flushed yet, so an API read right after
//! a pull sees it).

use std::collections::{HashMap, HashSet};

use berth_meta::{Inventory, RefKind};
use berth_oci::{Digest, RepositoryName, Tag};
use serde::Serialize;

use crate::pulls::Count;
use crate::{Error, Registry, Result};

/// A tag, for the management API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TagView {
    /// Tag name.
    pub name: Tag,
    /// Manifest it points to.
    pub digest: Digest,
    /// That manifest's media type.
    pub media_type: String,
    /// When that manifest was pushed (Unix ms).
    pub pushed_at: i64,
    /// When the tag was last set (Unix ms).
    pub updated_at: i64,
    /// Bytes of the image: the manifest, its blobs and, for an index, its
    /// children and theirs, each counted once.
    pub size: u64,
    /// GETs through this tag.
    pub pull_count: i64,
    /// Last GET through this tag (Unix ms).
    pub last_pulled_at: Option<i64>,
}

/// A manifest, for the management API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ManifestView {
    /// Digest.
    pub digest: Digest,
    /// Media type.
    pub media_type: String,
    /// Artifact type, if any.
    pub artifact_type: Option<String>,
    /// Subject, for referrers.
    pub subject: Option<Digest>,
    /// Bytes of the manifest itself.
    pub size: u64,
    /// Bytes of the whole image (see [`TagView::size`]).
    pub total_size: u64,
    /// Push time (Unix ms).
    pub pushed_at: i64,
    /// GETs of the manifest, by tag or digest.
    pub pull_count: i64,
    /// Last GET (Unix ms).
    pub last_pulled_at: Option<i64>,
    /// Tags pointing to it.
    pub tags: Vec<Tag>,
    /// Set when an index lists this manifest as a docker buildx
    /// attestation (provenance, SBOM): it is kept with that index and is
    /// not a platform of it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attestation: Option<AttestationView>,
    /// Its vulnerability scan in short (an index: over its platform
    /// images); absent for artifacts, signatures and attestations, which
    /// are not scanned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scan: Option<crate::scanning::ScanSummary>,
}

/// What an attestation manifest is about.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AttestationView {
    /// The images it describes (the index entry's
    /// `vnd.docker.reference.digest`), by digest.
    pub describes: Vec<Digest>,
    /// The indexes that list it.
    pub indexes: Vec<Digest>,
}

/// The attestation manifests of `inv`, with what each describes.
fn attestations(inv: &Inventory) -> HashMap<&str, AttestationView> {
    let mut out: HashMap<&str, AttestationView> = HashMap::new();
    for (index, child, describes) in inv.attestations() {
        let v = out.entry(child.as_str()).or_default();
        v.indexes.push(index.clone());
        if let Some(d) = describes {
            if !v.describes.contains(d) {
                v.describes.push(d.clone());
            }
        }
    }
    out
}

/// Total bytes of each manifest: itself plus everything reachable from it.
fn total_sizes(inv: &Inventory) -> HashMap<&str, u64> {
    let own: HashMap<&str, u64> = inv
        .manifests
        .iter()
        .map(|m| (m.digest.as_str(), m.size.max(0) as u64))
        .collect();
    let mut children: HashMap<&str, Vec<&berth_meta::ManifestRef>> = HashMap::new();
    for r in &inv.references {
        children.entry(r.parent.as_str()).or_default().push(r);
    }
    let mut out = HashMap::new();
    for m in &inv.manifests {
        let mut seen: HashSet<&str> = HashSet::new();
        let mut stack = vec![m.digest.as_str()];
        let mut total = 0u64;
        while let Some(d) = stack.pop() {
            if !seen.insert(d) {
                continue;
            }
            total += own.get(d).copied().unwrap_or(0);
            for r in children.get(d).into_iter().flatten() {
                match r.kind {
                    RefKind::Manifest => stack.push(r.child.as_str()),
                    RefKind::Blob => {
                        if seen.insert(r.child.as_str()) {
                            total += r.blob_size.unwrap_or(0).max(0) as u64;
                        }
                    }
                }
            }
        }
        out.insert(m.digest.as_str(), total);
    }
    out
}

pub(crate) fn merged(count: i64, last: Option<i64>, pending: Option<&Count>) -> (i64, Option<i64>) {
    match pending {
        Some(p) => (
            count + p.pulls as i64,
            Some(last.unwrap_or(0).max(p.last_at)),
        ),
        None => (count, last),
    }
}

impl Registry {
    async fn inventory(&self, repo: &RepositoryName) -> Result<std::sync::Arc<Inventory>> {
        self.meta
            .inventory(repo)
            .await?
            .ok_or_else(|| Error::NameUnknown(repo.to_string()))
    }

    /// The tags of `repo` with sizes and pull statistics, by name.
    pub async fn repository_tags(&self, repo: &RepositoryName) -> Result<Vec<TagView>> {
        let inv = self.inventory(repo).await?;
        let totals = total_sizes(&inv);
        let manifests: HashMap<&str, &berth_meta::ManifestInfo> = inv
            .manifests
            .iter()
            .map(|m| (m.digest.as_str(), m))
            .collect();
        let (_, pending) = self.pulls.pending(repo);
        Ok(inv
            .tags
            .iter()
            .map(|t| {
                let m = manifests.get(t.digest.as_str());
                let (pull_count, last_pulled_at) =
                    merged(t.pull_count, t.last_pulled_at, pending.get(t.name.as_str()));
                TagView {
                    name: t.name.clone(),
                    digest: t.digest.clone(),
                    media_type: m.map(|m| m.media_type.clone()).unwrap_or_default(),
                    pushed_at: m.map_or(0, |m| m.pushed_at),
                    updated_at: t.updated_at,
                    size: totals.get(t.digest.as_str()).copied().unwrap_or(0),
                    pull_count,
                    last_pulled_at,
                }
            })
            .collect())
    }

    /// The attestation manifests of `repo` that describe the image
    /// `digest` (docker buildx provenance and SBOMs listed beside it in an
    /// index), by digest.
    pub async fn attestations_of(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<Vec<Digest>> {
        let inv = self.inventory(repo).await?;
        let mut out: Vec<Digest> = inv
            .attestations()
            .filter(|(_, _, d)| *d == Some(digest))
            .map(|(_, child, _)| child.clone())
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// The manifests of `repo` with sizes, tags and pull statistics, by
    /// digest.
    pub async fn repository_manifests(&self, repo: &RepositoryName) -> Result<Vec<ManifestView>> {
        let inv = self.inventory(repo).await?;
        let totals = total_sizes(&inv);
        let mut tags: HashMap<&str, Vec<Tag>> = HashMap::new();
        for t in &inv.tags {
            tags.entry(t.digest.as_str())
                .or_default()
                .push(t.name.clone());
        }
        let (pending, _) = self.pulls.pending(repo);
        let mut attestations = attestations(&inv);
        let scans = self.meta.scan_rows(repo).await?;
        let scans: HashMap<&str, &berth_meta::scans::ScanRow> =
            scans.iter().map(|r| (r.digest.as_str(), r)).collect();
        let mut platforms: HashMap<&str, Vec<&Digest>> = HashMap::new();
        for r in &inv.references {
            if r.kind == RefKind::Manifest && !r.attestation {
                platforms
                    .entry(r.parent.as_str())
                    .or_default()
                    .push(&r.child);
            }
        }
        let scan = |m: &berth_meta::ManifestInfo, attestation: bool| {
            let image = m.artifact_type.as_deref().is_some_and(|t| {
                t == berth_oci::media::OCI_CONFIG
                    || t == "application/vnd.docker.container.image.v1+json"
            });
            if m.subject.is_some() || attestation {
                None
            } else if berth_oci::media::is_index(&m.media_type) {
                let children = platforms.get(m.digest.as_str())?;
                Some(crate::scanning::ScanSummary::of(
                    children.iter().copied(),
                    &scans,
                ))
            } else if image {
                Some(crate::scanning::ScanSummary::of([&m.digest], &scans))
            } else {
                None
            }
        };
        Ok(inv
            .manifests
            .iter()
            .map(|m| {
                let (pull_count, last_pulled_at) = merged(
                    m.pull_count,
                    m.last_pulled_at,
                    pending.get(m.digest.as_str()),
                );
                ManifestView {
                    digest: m.digest.clone(),
                    media_type: m.media_type.clone(),
                    artifact_type: m.artifact_type.clone(),
                    subject: m.subject.clone(),
                    size: m.size.max(0) as u64,
                    total_size: totals.get(m.digest.as_str()).copied().unwrap_or(0),
                    pushed_at: m.pushed_at,
                    pull_count,
                    last_pulled_at,
                    tags: tags.remove(m.digest.as_str()).unwrap_or_default(),
                    scan: scan(m, attestations.contains_key(m.digest.as_str())),
                    attestation: attestations.remove(m.digest.as_str()),
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_meta::{ManifestInfo, ManifestRef};
    use berth_testkit::digests::digest;

    fn m(d: &str, size: i64) -> ManifestInfo {
        ManifestInfo {
            digest: digest(d),
            media_type: String::new(),
            artifact_type: None,
            subject: None,
            size,
            pushed_at: 0,
            pull_count: 0,
            last_pulled_at: None,
        }
    }

    fn r(p: &str, c: &str, kind: RefKind, size: Option<i64>) -> ManifestRef {
        ManifestRef {
            parent: digest(p),
            child: digest(c),
            kind,
            blob_size: size,
            attestation: false,
            describes: None,
        }
    }

    #[test]
    fn totals_count_shared_content_once() {
        let inv = Inventory {
            tags: vec![],
            manifests: vec![m("idx", 100), m("amd", 10), m("arm", 20)],
            references: vec![
                r("idx", "amd", RefKind::Manifest, None),
                r("idx", "arm", RefKind::Manifest, None),
                r("amd", "cfg", RefKind::Blob, Some(1)),
                r("amd", "base", RefKind::Blob, Some(1000)),
                r("arm", "cfg2", RefKind::Blob, Some(2)),
                r("arm", "base", RefKind::Blob, Some(1000)),
            ],
        };
        let t = total_sizes(&inv);
        assert_eq!(t[digest("amd").as_str()], 10 + 1 + 1000);
        assert_eq!(t[digest("arm").as_str()], 20 + 2 + 1000);
        assert_eq!(t[digest("idx").as_str()], 100 + 10 + 20 + 1 + 2 + 1000);
    }
}
