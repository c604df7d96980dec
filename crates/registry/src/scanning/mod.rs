//! Vulnerability scans of stored images, against the vulnerability
//! database in the metadata (see [`crate::vulndb`]).
//!
//! A scan reads an image's layers from the store in order, streams each
//! through `berth_scan`'s layer view (on a blocking thread: decompression
//! and tar reading are CPU work), catalogs the packages, fetches the
//! advisories filed under the packages' keys and matches them
//! (`berth_scan::vuln`). An index is scanned per platform image (buildx
//! attestation manifests are not platforms). Each image's result is stored
//! with its manifest (`scan_results`, gone with the manifest) together with
//! the time of the vulnerability data it used, so a later change of that
//! data shows which results are stale.
//!
//! Scans run on request (`POST /api/v1/scans`) and as background jobs
//! (see `queue`): on push where the namespace's policy (`policy`) asks for
//! it, and again when the vulnerability data changed. Every finished scan
//! publishes a `scan.completed` event in the transaction that stores it.

use std::io;

use berth_meta::events::{EventKind, NewEvent};
use berth_meta::scans::{FinishedScan, StoredScan};
use berth_oci::{Digest, EntryKind, Manifest, ManifestKind, Reference, RepositoryName};
use berth_scan::layers::FileView;
use berth_scan::vuln::{self, Finding, Severity};
use berth_store::BlobBody;
use futures_util::TryStreamExt as _;
use serde::{Deserialize, Serialize};

use crate::{Error, Registry, Result};

pub mod gate;
mod policy;
mod queue;

pub use gate::Unscanned;
pub use policy::{parse_expiry, AllowanceView, PolicyChange, PolicyView, ScanSummary};
pub(crate) use queue::Queue;
pub use queue::{ScanRound, SCAN_LEASE};

/// Findings per severity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeverityCounts {
    /// Critical.
    pub critical: u64,
    /// High.
    pub high: u64,
    /// Medium.
    pub medium: u64,
    /// Low.
    pub low: u64,
    /// Not rated.
    pub unknown: u64,
}

impl SeverityCounts {
    /// The counts of `findings`.
    pub fn of(findings: &[Finding]) -> SeverityCounts {
        let mut c = SeverityCounts::default();
        for f in findings {
            c.add(f.severity, 1);
        }
        c
    }

    fn add(&mut self, s: Severity, n: u64) {
        match s {
            Severity::Critical => self.critical += n,
            Severity::High => self.high += n,
            Severity::Medium => self.medium += n,
            Severity::Low => self.low += n,
            Severity::Unknown => self.unknown += n,
        }
    }

    /// The sum of two counts.
    pub fn plus(self, o: SeverityCounts) -> SeverityCounts {
        SeverityCounts {
            critical: self.critical + o.critical,
            high: self.high + o.high,
            medium: self.medium + o.medium,
            low: self.low + o.low,
            unknown: self.unknown + o.unknown,
        }
    }

    /// Findings at or above `level`.
    pub fn at_least(&self, level: Severity) -> u64 {
        [
            (Severity::Critical, self.critical),
            (Severity::High, self.high),
            (Severity::Medium, self.medium),
            (Severity::Low, self.low),
            (Severity::Unknown, self.unknown),
        ]
        .iter()
        .filter(|(s, _)| *s >= level)
        .map(|(_, n)| n)
        .sum()
    }
}

/// The scan of one image manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageScan {
    /// The image manifest.
    pub digest: String,
    /// Its platform (`linux/amd64`) when it is part of an index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// When it was scanned (Unix ms).
    pub scanned_at: i64,
    /// When the vulnerability data it was matched against last changed
    /// (Unix ms; `None`: no data loaded).
    pub vulndb_at: Option<i64>,
    /// The distribution (`debian 12`), if `os-release` says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distro: Option<String>,
    /// Packages found.
    pub packages: u64,
    /// Findings per severity.
    pub counts: SeverityCounts,
    /// The findings, worst first.
    pub findings: Vec<Finding>,
    /// What could not be read or matched (an unsupported package database,
    /// a distribution without advisories).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Why the scan failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The scan of a manifest: one image, or each platform image of an index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanReport {
    /// The repository.
    pub repository: String,
    /// The manifest scanned (the index, for an index).
    pub digest: String,
    /// The images.
    pub images: Vec<ImageScan>,
    /// Findings per severity over all images.
    pub counts: SeverityCounts,
}

impl ScanReport {
    fn new(repository: &RepositoryName, digest: &Digest, images: Vec<ImageScan>) -> ScanReport {
        let counts = images
            .iter()
            .fold(SeverityCounts::default(), |c, i| c.plus(i.counts));
        ScanReport {
            repository: repository.to_string(),
            digest: digest.to_string(),
            images,
            counts,
        }
    }
}

/// What is stored as a scan's report (the rest are columns).
#[derive(Serialize, Deserialize)]
pub(crate) struct StoredReport {
    #[serde(default)]
    platform: Option<String>,
    #[serde(default)]
    distro: Option<String>,
    #[serde(default)]
    pub(crate) findings: Vec<Finding>,
    #[serde(default)]
    notes: Vec<String>,
}

/// Whether a pushed manifest is a container image a scan can read: no
/// subject (an artifact about another manifest), an image configuration,
/// and only layers (not an attestation's in-toto statements, not an
/// artifact's files).
pub(crate) fn is_container_image(m: &Manifest) -> bool {
    m.kind == ManifestKind::Image
        && m.subject.is_none()
        && m.config.as_ref().is_some_and(|c| {
            c.media_type == berth_oci::media::OCI_CONFIG
                || c.media_type == "application/vnd.docker.container.image.v1+json"
        })
        && !m.layers.is_empty()
        && m.layers.iter().all(|l| is_layer(&l.media_type))
}

fn is_layer(media_type: &str) -> bool {
    media_type.contains(".image.rootfs.") || media_type.contains(".image.layer.")
}

fn platform_label(p: Option<&serde_json::Value>) -> Option<String> {
    let p = p?;
    let os = p.get("os")?.as_str()?;
    let arch = p.get("architecture")?.as_str()?;
    Some(match p.get("variant").and_then(|v| v.as_str()) {
        Some(v) => format!("{os}/{arch}/{v}"),
        None => format!("{os}/{arch}"),
    })
}

impl Registry {
    async fn manifest_bytes(&self, repo: &RepositoryName, digest: &Digest) -> Result<Manifest> {
        let record = self
            .meta
            .manifest(repo, digest)
            .await?
            .ok_or_else(|| Error::ManifestUnknown(digest.to_string()))?;
        Manifest::parse(&record.content, Some(&record.media_type)).map_err(|e| {
            Error::Internal(format!(
                "stored manifest {repo}@{digest} does not parse: {e}"
            ))
        })
    }

    /// The digest `reference` names in `repo`.
    pub async fn resolve_reference(
        &self,
        repo: &RepositoryName,
        reference: &Reference,
    ) -> Result<Digest> {
        Ok(self.get_manifest(repo, reference).await?.digest.clone())
    }

    /// Scans the manifest `digest` of `repo` now (each platform image of an
    /// index; `platform` picks one), stores each image's result and
    /// returns them.
    pub async fn scan_manifest(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
        platform: Option<&str>,
    ) -> Result<ScanReport> {
        let top = self.manifest_bytes(repo, digest).await?;
        let mut targets = Vec::new();
        match top.kind {
            ManifestKind::Index => {
                for c in top.child_manifests() {
                    if c.entry_kind() != EntryKind::Manifest {
                        continue;
                    }
                    let label = platform_label(c.platform.as_ref());
                    if platform.is_some() && label.as_deref() != platform {
                        continue;
                    }
                    targets.push((c.digest.clone(), label));
                }
                if targets.is_empty() {
                    return Err(Error::InvalidParameter(match platform {
                        Some(p) => format!("{repo}@{digest} has no image for platform {p}"),
                        None => format!("{repo}@{digest} is an index without images"),
                    }));
                }
            }
            _ => targets.push((digest.clone(), None)),
        }
        let mut images = Vec::with_capacity(targets.len());
        for (child, label) in targets {
            let scan = self.scan_image(repo, &child, label).await?;
            self.store_scan(repo, &scan, "manual", None).await?;
            images.push(scan);
        }
        Ok(ScanReport::new(repo, digest, images))
    }

    /// Scans one image manifest (a failure to read the image is the
    /// scan's `error`; a failing database or store is this call's).
    pub(crate) async fn scan_image(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
        platform: Option<String>,
    ) -> Result<ImageScan> {
        let mut scan = self.scan_stub(digest).await?;
        scan.platform = platform;
        match self.image_inventory(repo, digest).await {
            Ok(inv) => {
                let keys = vuln::lookup_keys(&inv);
                let advisories = self.advisories_for(&keys).await?;
                let matched = vuln::match_inventory(&inv, &advisories);
                scan.distro = inv.distro.as_ref().map(|d| match &d.version_id {
                    Some(v) => format!("{} {v}", d.id),
                    None => d.id.clone(),
                });
                scan.packages = inv.packages.len() as u64;
                scan.counts = SeverityCounts::of(&matched.findings);
                scan.findings = matched.findings;
                scan.notes = inv
                    .notes
                    .iter()
                    .map(|n| format!("{} (layer {}): {}", n.path, n.layer, n.message))
                    .chain(matched.notes)
                    .collect();
            }
            // What is wrong with the image is its scan's result; a
            // failing database or store is the caller's error.
            Err(e @ (Error::InvalidParameter(_) | Error::BlobUnknown(_))) => {
                scan.error = Some(e.to_string())
            }
            Err(e) => return Err(e),
        }
        Ok(scan)
    }

    /// An empty scan of `digest`, now, against the current data.
    pub(crate) async fn scan_stub(&self, digest: &Digest) -> Result<ImageScan> {
        Ok(ImageScan {
            digest: digest.to_string(),
            platform: None,
            scanned_at: crate::now_ms(),
            vulndb_at: self.meta.vulndb_changed_at().await?,
            distro: None,
            packages: 0,
            counts: SeverityCounts::default(),
            findings: Vec::new(),
            notes: Vec::new(),
            error: None,
        })
    }

    /// Stores `scan` with its `scan.completed` event (`reason`: `push`,
    /// `vulndb`, `manual`) and, for a queued scan, ends the request
    /// `holder` claimed; all in one transaction. `false`: the manifest is
    /// gone.
    pub(crate) async fn store_scan(
        &self,
        repo: &RepositoryName,
        scan: &ImageScan,
        reason: &str,
        holder: Option<&str>,
    ) -> Result<bool> {
        let report = serde_json::to_string(&StoredReport {
            platform: scan.platform.clone(),
            distro: scan.distro.clone(),
            findings: scan.findings.clone(),
            notes: scan.notes.clone(),
        })
        .map_err(|e| Error::Internal(format!("encoding a scan: {e}")))?;
        let digest = Digest::parse(&scan.digest)
            .map_err(|e| Error::Internal(format!("scanned digest: {e}")))?;
        let c = scan.counts;
        let mut event = NewEvent::new(EventKind::ScanCompleted, "scanner", scan.scanned_at);
        event.repository = Some(repo.clone());
        event.digest = Some(scan.digest.clone());
        event.data = serde_json::json!({
            "reason": reason,
            "platform": scan.platform,
            "distro": scan.distro,
            "packages": scan.packages,
            "counts": c,
            "vulndb_at": scan.vulndb_at,
            "error": scan.error,
        });
        let stored = self
            .meta
            .finish_scan(FinishedScan {
                scan: StoredScan {
                    repository: repo.clone(),
                    digest,
                    platform: scan.platform.clone(),
                    scanned_at: scan.scanned_at,
                    vulndb_at: scan.vulndb_at,
                    packages: scan.packages,
                    counts: [c.critical, c.high, c.medium, c.low, c.unknown],
                    report,
                    error: scan.error.clone(),
                },
                event: Some(event),
                holder: holder.map(str::to_owned),
            })
            .await;
        // The pull gate's verdicts of the repository read its results.
        self.pull_verdicts.forget(repo);
        Ok(stored?)
    }

    /// The package inventory of one image manifest of `repo`.
    async fn image_inventory(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<berth_scan::Inventory> {
        let m = self.manifest_bytes(repo, digest).await?;
        if m.kind != ManifestKind::Image {
            return Err(Error::InvalidParameter(format!(
                "{repo}@{digest} is not an image manifest"
            )));
        }
        let mut view = FileView::new();
        for layer in &m.layers {
            if !is_layer(&layer.media_type) {
                return Err(Error::InvalidParameter(format!(
                    "{repo}@{digest} has a {} entry where layers are expected: not a container \
                     image, nothing to scan",
                    layer.media_type
                )));
            }
            let read = self
                .store
                .read(&layer.digest, None)
                .await?
                .ok_or_else(|| Error::BlobUnknown(layer.digest.to_string()))?;
            let digest = layer.digest.clone();
            view = match read.body {
                BlobBody::Bytes(bytes) => tokio::task::spawn_blocking(move || {
                    let mut view = view;
                    view.apply_layer(&digest, io::Cursor::new(bytes))
                        .map(|()| view)
                })
                .await
                .map_err(|e| Error::Internal(format!("layer task: {e}")))?,
                BlobBody::Stream(stream) => {
                    let reader = tokio_util::io::StreamReader::new(
                        stream.map_err(|e| io::Error::other(e.to_string())),
                    );
                    let bridge = tokio_util::io::SyncIoBridge::new(reader);
                    tokio::task::spawn_blocking(move || {
                        let mut view = view;
                        view.apply_layer(&digest, bridge).map(|()| view)
                    })
                    .await
                    .map_err(|e| Error::Internal(format!("layer task: {e}")))?
                }
            }
            .map_err(|e| Error::InvalidParameter(format!("{repo}: {e}")))?;
        }
        berth_scan::catalog::catalog(&view)
            .await
            .map_err(|e| Error::InvalidParameter(format!("{repo}@{digest}: {e}")))
    }

    /// The stored scan of the manifest `digest` of `repo` (an index: of its
    /// platform images); `None` when it (or, for an index, any of its
    /// images) was never scanned.
    pub async fn stored_scan(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<ScanReport>> {
        let top = self.manifest_bytes(repo, digest).await?;
        let wanted: Vec<(Digest, Option<String>)> = match top.kind {
            ManifestKind::Index => top
                .child_manifests()
                .filter(|c| c.entry_kind() == EntryKind::Manifest)
                .map(|c| (c.digest.clone(), platform_label(c.platform.as_ref())))
                .collect(),
            _ => vec![(digest.clone(), None)],
        };
        let mut images = Vec::with_capacity(wanted.len());
        for (d, label) in &wanted {
            let Some(row) = self.meta.scan(repo, d).await? else {
                return Ok(None);
            };
            let stored: StoredReport = serde_json::from_str(&row.report).map_err(|e| {
                Error::Metadata(berth_meta::Error::Corrupt(format!(
                    "stored scan of {repo}@{d}: {e}"
                )))
            })?;
            let [critical, high, medium, low, unknown] = row.counts;
            images.push(ImageScan {
                digest: d.to_string(),
                platform: row.platform.or(stored.platform).or_else(|| label.clone()),
                scanned_at: row.scanned_at,
                vulndb_at: row.vulndb_at,
                distro: stored.distro,
                packages: row.packages,
                counts: SeverityCounts {
                    critical,
                    high,
                    medium,
                    low,
                    unknown,
                },
                findings: stored.findings,
                notes: stored.notes,
                error: row.error,
            });
        }
        Ok(Some(ScanReport::new(repo, digest, images)))
    }
}
