//! A namespace's scan policy (whether pushes are scanned) and the short
//! form of a manifest's stored scan that listings and `berth inspect`
//! show.

use std::collections::HashMap;

use berth_meta::scans::{ScanPolicy, ScanRow};
use berth_oci::{Digest, Namespace};
use serde::Serialize;

use super::SeverityCounts;
use crate::{Caller, Registry, Result};

/// A namespace's scan policy as the management API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyView {
    /// The namespace.
    pub namespace: Namespace,
    /// Whether a push of an image or index requests its scan.
    pub scan_on_push: bool,
    /// When it was last set (Unix ms; `None`: never, the defaults).
    pub updated_at: Option<i64>,
    /// Who set it.
    pub updated_by: Option<String>,
}

impl PolicyView {
    fn default_for(ns: &Namespace) -> PolicyView {
        PolicyView {
            namespace: ns.clone(),
            scan_on_push: false,
            updated_at: None,
            updated_by: None,
        }
    }
}

impl From<ScanPolicy> for PolicyView {
    fn from(p: ScanPolicy) -> PolicyView {
        PolicyView {
            namespace: p.namespace,
            scan_on_push: p.scan_on_push,
            updated_at: Some(p.updated_at),
            updated_by: p.updated_by,
        }
    }
}

/// The short form of a manifest's stored scan (an index: over its
/// platform images).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScanSummary {
    /// `scanned`, `not_scanned` (no result yet, or not for every platform
    /// image of an index) or `failed` (an image could not be read).
    pub state: &'static str,
    /// Findings per severity (zero when not scanned).
    #[serde(flatten)]
    pub counts: SeverityCounts,
    /// The oldest scan among the images (Unix ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scanned_at: Option<i64>,
    /// The time of the oldest vulnerability data used (Unix ms; the data's
    /// age is measured from it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vulndb_at: Option<i64>,
}

impl ScanSummary {
    /// No result yet.
    pub fn not_scanned() -> ScanSummary {
        ScanSummary {
            state: "not_scanned",
            counts: SeverityCounts::default(),
            scanned_at: None,
            vulndb_at: None,
        }
    }

    /// The summary of the results of `images` (all of them must have one).
    pub(crate) fn of<'a>(
        images: impl IntoIterator<Item = &'a Digest>,
        rows: &HashMap<&str, &ScanRow>,
    ) -> ScanSummary {
        let mut out = ScanSummary {
            state: "scanned",
            ..ScanSummary::not_scanned()
        };
        let mut any = false;
        for d in images {
            let Some(r) = rows.get(d.as_str()) else {
                return ScanSummary::not_scanned();
            };
            any = true;
            let [critical, high, medium, low, unknown] = r.counts;
            out.counts = out.counts.plus(SeverityCounts {
                critical,
                high,
                medium,
                low,
                unknown,
            });
            out.scanned_at = Some(out.scanned_at.map_or(r.scanned_at, |t| t.min(r.scanned_at)));
            out.vulndb_at = match (out.vulndb_at, r.vulndb_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            if r.error.is_some() {
                out.state = "failed";
            }
        }
        if any {
            out
        } else {
            ScanSummary::not_scanned()
        }
    }
}

impl Registry {
    /// The scan policy of `ns` (the defaults when none was set).
    pub async fn scan_policy(&self, ns: &Namespace) -> Result<PolicyView> {
        Ok(self
            .meta
            .scan_policies()
            .await?
            .into_iter()
            .find(|p| &p.namespace == ns)
            .map(PolicyView::from)
            .unwrap_or_else(|| PolicyView::default_for(ns)))
    }

    /// Every namespace's scan policy that was set, by namespace.
    pub async fn scan_policies(&self) -> Result<Vec<PolicyView>> {
        Ok(self
            .meta
            .scan_policies()
            .await?
            .into_iter()
            .map(PolicyView::from)
            .collect())
    }

    /// Sets whether pushes to `ns` are scanned (`None` keeps it), with a
    /// `policy.change` audit event; answers the policy now.
    pub async fn set_scan_policy(
        &self,
        ns: &Namespace,
        scan_on_push: Option<bool>,
        caller: &Caller,
    ) -> Result<PolicyView> {
        let now = self.scan_policy(ns).await?;
        let policy = ScanPolicy {
            namespace: ns.clone(),
            scan_on_push: scan_on_push.unwrap_or(now.scan_on_push),
            updated_at: 0,
            updated_by: None,
        };
        self.meta.set_scan_policy(&policy, &caller.actor()).await?;
        self.scan_policy(ns).await
    }
}

impl Registry {
    /// The summary of the stored scan of the manifest `reference` names in
    /// `repo` (an index: over its platform images).
    pub async fn scan_summary(
        &self,
        repo: &berth_oci::RepositoryName,
        reference: &berth_oci::Reference,
    ) -> Result<ScanSummary> {
        let digest = self.resolve_reference(repo, reference).await?;
        let top = self.manifest_bytes(repo, &digest).await?;
        let images: Vec<Digest> = match top.kind {
            berth_oci::ManifestKind::Index => top
                .child_manifests()
                .filter(|c| c.entry_kind() == berth_oci::EntryKind::Manifest)
                .map(|c| c.digest.clone())
                .collect(),
            _ => vec![digest],
        };
        let rows = self.meta.scan_rows(repo).await?;
        let rows: HashMap<&str, &ScanRow> = rows.iter().map(|r| (r.digest.as_str(), r)).collect();
        Ok(ScanSummary::of(images.iter(), &rows))
    }
}
