//! A namespace's scan policy (whether pushes are scanned, which findings
//! block pulls, whether unscanned images may be pulled), its allowances,
//! and the short form of a manifest's stored scan that listings and
//! `berth inspect` show.

use std::collections::HashMap;

use berth_meta::allowances::ScanAllowance;
use berth_meta::scans::{ScanPolicy, ScanRow};
use berth_oci::{Digest, Namespace};
use berth_scan::vuln::Severity;
use serde::Serialize;

use super::gate::{parse_block_severity, Unscanned};
use super::SeverityCounts;
use crate::{Caller, Error, Registry, Result};

/// A namespace's scan policy as the management API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyView {
    /// The namespace.
    pub namespace: Namespace,
    /// Whether a push of an image or index requests its scan.
    pub scan_on_push: bool,
    /// Pulls of images with findings at or above this severity are
    /// refused (`None`: never).
    pub block_severity: Option<&'static str>,
    /// Whether images without a stored result may be pulled.
    pub unscanned: Unscanned,
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
            block_severity: None,
            unscanned: Unscanned::Allow,
            updated_at: None,
            updated_by: None,
        }
    }
}

impl TryFrom<ScanPolicy> for PolicyView {
    type Error = Error;

    fn try_from(p: ScanPolicy) -> Result<PolicyView> {
        let block = match p.block_severity.as_deref() {
            Some(s) => parse_block_severity(s)?,
            None => None,
        };
        Ok(PolicyView {
            namespace: p.namespace,
            scan_on_push: p.scan_on_push,
            block_severity: block.map(Severity::as_str),
            unscanned: Unscanned::parse(&p.unscanned)?,
            updated_at: Some(p.updated_at),
            updated_by: p.updated_by,
        })
    }
}

/// A change of a namespace's scan policy: each `None` keeps the setting.
#[derive(Debug, Clone, Copy, Default)]
pub struct PolicyChange {
    /// Scan pushes.
    pub scan_on_push: Option<bool>,
    /// Block pulls at or above this severity (`Some(None)`: never).
    pub block_severity: Option<Option<Severity>>,
    /// What pulls of unscanned images get.
    pub unscanned: Option<Unscanned>,
}

/// An allowance as the management API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AllowanceView {
    /// The namespace.
    pub namespace: Namespace,
    /// The advisory id it allows (a finding's id, alias or record id).
    pub advisory: String,
    /// Why.
    pub reason: String,
    /// When it stops allowing (Unix ms; `None`: never).
    pub expires_at: Option<i64>,
    /// Whether it has expired.
    pub expired: bool,
    /// When it was granted (Unix ms).
    pub created_at: i64,
    /// Who granted it.
    pub created_by: Option<String>,
}

impl AllowanceView {
    fn at(a: ScanAllowance, now: i64) -> AllowanceView {
        AllowanceView {
            expired: a.expires_at.is_some_and(|t| t <= now),
            namespace: a.namespace,
            advisory: a.advisory,
            reason: a.reason,
            expires_at: a.expires_at,
            created_at: a.created_at,
            created_by: a.created_by,
        }
    }
}

/// Advisory ids an allowance may name: what OSV, CVE, GHSA and the
/// distributions' trackers use, and what a URL path segment carries.
fn validate_advisory(id: &str) -> Result<()> {
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':');
    if id.is_empty() || id.len() > 128 || !id.chars().all(ok) {
        return Err(Error::InvalidParameter(format!(
            "advisory id {id:?} must be 1 to 128 characters of A-Z, a-z, 0-9, '-', '_', '.' and ':' \
             (CVE-2024-1234, GHSA-xxxx-xxxx-xxxx, DSA-5678-1)"
        )));
    }
    Ok(())
}

/// Reads an allowance's expiry: a date (`2027-01-31`: the allowance holds
/// through that day, UTC) or an RFC 3339 time; Unix ms.
pub fn parse_expiry(s: &str) -> Result<i64> {
    let s = s.trim();
    let is_date = s.len() == 10
        && s.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    let t = if is_date {
        berth_oci::time::Timestamp::parse(&format!("{s}T23:59:59Z")).map(|t| t.0 * 1000 + 999)
    } else {
        berth_oci::time::Timestamp::parse(s).map(|t| t.0 * 1000)
    };
    t.map_err(|_| {
        Error::InvalidParameter(format!(
            "expiry {s:?} must be a date (2027-01-31) or an RFC 3339 time (2027-01-31T12:00:00Z)"
        ))
    })
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
            .map(PolicyView::try_from)
            .transpose()?
            .unwrap_or_else(|| PolicyView::default_for(ns)))
    }

    /// Every namespace's scan policy that was set, by namespace.
    pub async fn scan_policies(&self) -> Result<Vec<PolicyView>> {
        self.meta
            .scan_policies()
            .await?
            .into_iter()
            .map(PolicyView::try_from)
            .collect()
    }

    /// Changes the scan policy of `ns` (what `change` leaves `None` is
    /// kept), with a `policy.change` audit event; answers the policy now.
    pub async fn set_scan_policy(
        &self,
        ns: &Namespace,
        change: PolicyChange,
        caller: &Caller,
    ) -> Result<PolicyView> {
        let now = self.scan_policy(ns).await?;
        let block = match change.block_severity {
            Some(b) => b.map(Severity::as_str),
            None => now.block_severity,
        };
        let policy = ScanPolicy {
            namespace: ns.clone(),
            scan_on_push: change.scan_on_push.unwrap_or(now.scan_on_push),
            block_severity: block.map(str::to_owned),
            unscanned: change
                .unscanned
                .unwrap_or(now.unscanned)
                .as_str()
                .to_owned(),
            updated_at: 0,
            updated_by: None,
        };
        let out = self.meta.set_scan_policy(&policy, &caller.actor()).await;
        self.pull_gates.invalidate();
        out?;
        self.scan_policy(ns).await
    }

    /// The allowances of `ns`, by advisory (expired ones included, marked).
    pub async fn scan_allowances(&self, ns: &Namespace) -> Result<Vec<AllowanceView>> {
        let now = crate::now_ms();
        Ok(self
            .meta
            .scan_allowances(Some(ns))
            .await?
            .into_iter()
            .map(|a| AllowanceView::at(a, now))
            .collect())
    }

    /// Allows `advisory` in `ns` (replacing an allowance of it) for
    /// `reason` until `expires_at` (Unix ms; `None`: until removed), with
    /// a `policy.change` audit event.
    pub async fn set_scan_allowance(
        &self,
        ns: &Namespace,
        advisory: &str,
        reason: &str,
        expires_at: Option<i64>,
        caller: &Caller,
    ) -> Result<AllowanceView> {
        validate_advisory(advisory)?;
        let reason = reason.trim();
        if reason.is_empty() || reason.len() > 1024 {
            return Err(Error::InvalidParameter(format!(
                "an allowance of {advisory} needs a reason (1 to 1024 characters): why the \
                 finding is acceptable in namespace {ns}"
            )));
        }
        let actor = caller.actor();
        let a = ScanAllowance {
            namespace: ns.clone(),
            advisory: advisory.to_owned(),
            reason: reason.to_owned(),
            expires_at,
            created_at: actor.at,
            created_by: Some(actor.name.clone()),
        };
        let out = self.meta.set_scan_allowance(&a, &actor).await;
        self.pull_gates.invalidate();
        out?;
        Ok(AllowanceView::at(a, crate::now_ms()))
    }

    /// Removes the allowance of `advisory` in `ns`, with a
    /// `policy.change` audit event.
    pub async fn remove_scan_allowance(
        &self,
        ns: &Namespace,
        advisory: &str,
        caller: &Caller,
    ) -> Result<()> {
        let out = self
            .meta
            .remove_scan_allowance(ns, advisory, &caller.actor())
            .await;
        self.pull_gates.invalidate();
        if !out? {
            return Err(Error::NotFound(format!(
                "namespace {ns} has no allowance of {advisory} (`berth scan allow {ns}` lists them)"
            )));
        }
        Ok(())
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
