//! The vulnerability pull policy: whether a manifest's stored scan lets it
//! be pulled from its namespace.
//!
//! - **Policy** per namespace (`scan_policies`): `block_severity` refuses
//!   pulls of images with a finding at or above it; `unscanned = deny`
//!   refuses pulls of images without a stored result (a failed scan counts
//!   as none). An **allowance** (`scan_allowances`) takes an advisory id
//!   (the finding's id, an alias or an advisory record's id) out of the
//!   count until it expires.
//! - **What is gated**: manifest `GET`s of container images and of indexes
//!   (an index is refused when any platform image it lists would be).
//!   Artifacts with a subject (signatures, SBOMs, attestations), other
//!   artifacts, HEAD requests, blobs, tag lists and the referrers API are
//!   not; neither are site admins.
//! - **Cost**: every namespace's policy and allowances are one snapshot in
//!   memory (reloaded after a change, through the invalidation seam), so a
//!   namespace without a policy costs one map lookup per pull. A verdict
//!   per manifest is cached with the policy it was computed under (a
//!   policy or allowance change makes it stale by construction), until the
//!   first expiry of an allowance it used, and dropped when a scan result
//!   of its repository is written or a manifest deleted (this process's
//!   writers; `scan`/`manifest`/`repository` notifications of replicas
//!   sharing a PostgreSQL).
//! - **Refusals** are counted each, and recorded (audit and outbox event
//!   `pull.blocked`) once per manifest, caller and reason a minute, with
//!   the count of the rest (see `refusals`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use berth_meta::scans::ScanPolicy;
use berth_oci::{Digest, EntryKind, Manifest, ManifestKind, Reference, RepositoryName};
use berth_scan::vuln::{Finding, Severity};

use super::{is_container_image, platform_label, StoredReport};
use crate::invalidation::{Change, Invalidation, Subscriber};
use crate::manifests::ManifestEntry;
use crate::serving::Reader;
use crate::{Error, Registry, Result};

mod refusals;

use refusals::Refusal;
pub(crate) use refusals::Refusals;

/// Findings named in a refusal at most.
const MAX_NAMED: usize = 3;

/// Verdicts kept in memory at most (past that the map is cleared).
const MAX_CACHED: usize = 100_000;

/// What pulls of images without a stored result get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unscanned {
    /// They are served.
    #[default]
    Allow,
    /// They are refused until a scan is stored.
    Deny,
}

impl Unscanned {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Unscanned::Allow => "allow",
            Unscanned::Deny => "deny",
        }
    }

    /// `allow` or `deny`.
    pub fn parse(s: &str) -> Result<Unscanned> {
        match s {
            "allow" => Ok(Unscanned::Allow),
            "deny" => Ok(Unscanned::Deny),
            other => Err(Error::InvalidParameter(format!(
                "unscanned {other:?} must be allow or deny"
            ))),
        }
    }
}

/// Reads `block_severity`: `critical`, `high`, `medium`, `low`; `none`
/// (never block) is `Ok(None)`.
pub fn parse_block_severity(s: &str) -> Result<Option<Severity>> {
    match s {
        "none" | "off" => Ok(None),
        "critical" => Ok(Some(Severity::Critical)),
        "high" => Ok(Some(Severity::High)),
        "medium" => Ok(Some(Severity::Medium)),
        "low" => Ok(Some(Severity::Low)),
        other => Err(Error::InvalidParameter(format!(
            "block severity {other:?} must be critical, high, medium, low or none"
        ))),
    }
}

/// An advisory id a namespace allows, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Allowed {
    pub(crate) advisory: String,
    pub(crate) expires_at: Option<i64>,
}

/// One namespace's pull policy, as the gate applies it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct NamespaceGate {
    pub(crate) block: Option<Severity>,
    pub(crate) unscanned: Unscanned,
    pub(crate) scan_on_push: bool,
    pub(crate) allowances: Vec<Allowed>,
}

impl NamespaceGate {
    fn is_active(&self) -> bool {
        self.block.is_some() || self.unscanned == Unscanned::Deny
    }

    /// The allowance covering `f` at `now`, if any.
    fn allowance_for(&self, f: &Finding, now: i64) -> Option<&Allowed> {
        self.allowances.iter().find(|a| {
            a.expires_at.is_none_or(|t| t > now)
                && (a.advisory == f.id
                    || f.aliases.contains(&a.advisory)
                    || f.advisories.contains(&a.advisory))
        })
    }

    fn describe(&self) -> String {
        let block = match self.block {
            Some(s) => format!("block {} and above", s.as_str()),
            None => "no severity blocks".to_owned(),
        };
        format!("{block}, unscanned images: {}", self.unscanned.as_str())
    }
}

/// Every namespace with an active pull policy, by namespace name.
pub(crate) type GateConfig = HashMap<String, Arc<NamespaceGate>>;

/// Builds the gates of the namespaces whose policy blocks something.
pub(crate) fn build(
    policies: Vec<ScanPolicy>,
    allowances: Vec<berth_meta::allowances::ScanAllowance>,
) -> Result<GateConfig> {
    let mut gates: HashMap<String, NamespaceGate> = HashMap::new();
    for p in policies {
        let block = match p.block_severity.as_deref() {
            Some(s) => parse_block_severity(s)?,
            None => None,
        };
        gates.insert(
            p.namespace.as_str().to_owned(),
            NamespaceGate {
                block,
                unscanned: Unscanned::parse(&p.unscanned)?,
                scan_on_push: p.scan_on_push,
                allowances: Vec::new(),
            },
        );
    }
    for a in allowances {
        if let Some(g) = gates.get_mut(a.namespace.as_str()) {
            g.allowances.push(Allowed {
                advisory: a.advisory,
                expires_at: a.expires_at,
            });
        }
    }
    Ok(gates
        .into_iter()
        .filter(|(_, g)| g.is_active())
        .map(|(ns, g)| (ns, Arc::new(g)))
        .collect())
}

/// One platform image's stored result, as the gate reads it.
#[derive(Debug, Clone)]
pub(crate) struct ImageResult {
    pub(crate) digest: Digest,
    pub(crate) platform: Option<String>,
    /// `None`: never scanned.
    pub(crate) result: Option<ScanOutcome>,
}

/// What a stored scan found.
#[derive(Debug, Clone)]
pub(crate) enum ScanOutcome {
    /// Scanned: its findings.
    Findings(Vec<Finding>),
    /// The scan failed: why.
    Failed(String),
}

/// A finding named in a refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hit {
    pub(crate) id: String,
    pub(crate) severity: Severity,
    pub(crate) package: String,
    /// The source package (Debian, Alpine), when it has another name.
    pub(crate) source: Option<String>,
    pub(crate) version: String,
    pub(crate) fixed: Option<String>,
    pub(crate) platform: Option<String>,
}

/// The gate's answer for one manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Not gated: an artifact, a signature, an index without images.
    Exempt,
    /// Scanned, nothing at or above the policy's severity counts.
    Clear,
    /// Findings at or above the severity: the worst few, and how many.
    Vulnerable { worst: Vec<Hit>, total: usize },
    /// Images without a stored result (digests, with a failed scan's
    /// error) under `unscanned = deny`.
    Unscanned {
        images: Vec<(Digest, Option<String>)>,
    },
}

/// An outcome, and until when it holds (the first expiry of an allowance
/// it relied on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Decision {
    pub(crate) outcome: Outcome,
    pub(crate) until: Option<i64>,
}

/// Decides a pull of the manifest whose platform images have `images`
/// results, under `gate`, at `now` (pure).
pub(crate) fn decide(gate: &NamespaceGate, images: &[ImageResult], now: i64) -> Decision {
    if images.is_empty() {
        return Decision {
            outcome: Outcome::Exempt,
            until: None,
        };
    }
    let mut until: Option<i64> = None;
    let mut hits: Vec<Hit> = Vec::new();
    let mut missing = Vec::new();
    for img in images {
        let findings = match &img.result {
            Some(ScanOutcome::Findings(f)) => f,
            Some(ScanOutcome::Failed(e)) => {
                missing.push((img.digest.clone(), Some(e.clone())));
                continue;
            }
            None => {
                missing.push((img.digest.clone(), None));
                continue;
            }
        };
        let Some(block) = gate.block else { continue };
        for f in findings.iter().filter(|f| f.severity >= block) {
            if let Some(a) = gate.allowance_for(f, now) {
                if let Some(t) = a.expires_at {
                    until = Some(until.map_or(t, |u| u.min(t)));
                }
                continue;
            }
            let hit = Hit {
                id: f.id.clone(),
                severity: f.severity,
                package: f.package.clone(),
                source: f.source.clone().filter(|s| *s != f.package),
                version: f.version.clone(),
                fixed: f.fixed.first().cloned(),
                platform: img.platform.clone(),
            };
            // The binaries of one source package share its finding.
            let origin = |h: &Hit| h.source.clone().unwrap_or_else(|| h.package.clone());
            let same = |h: &Hit| h.id == hit.id && origin(h) == origin(&hit);
            if !hits.iter().any(same) {
                hits.push(hit);
            }
        }
    }
    let outcome = if !hits.is_empty() {
        hits.sort_by(|a, b| b.severity.cmp(&a.severity).then_with(|| a.id.cmp(&b.id)));
        let total = hits.len();
        hits.truncate(MAX_NAMED);
        Outcome::Vulnerable { worst: hits, total }
    } else if !missing.is_empty() && gate.unscanned == Unscanned::Deny {
        Outcome::Unscanned { images: missing }
    } else {
        Outcome::Clear
    };
    Decision { outcome, until }
}

/// The refusal of a pull of `what` (`repo:tag` or `repo@digest`) in
/// namespace `ns` for `outcome`, naming the policy and what to do next.
pub(crate) fn refusal(
    what: &str,
    repo: &RepositoryName,
    digest: &Digest,
    gate: &NamespaceGate,
    outcome: &Outcome,
    queued: bool,
) -> Option<String> {
    let ns = repo.namespace();
    let policy = format!(
        "pull of {what} refused by the vulnerability policy of namespace {ns} ({})",
        gate.describe()
    );
    match outcome {
        Outcome::Exempt | Outcome::Clear => None,
        Outcome::Vulnerable { worst, total } => {
            let named: Vec<String> = worst
                .iter()
                .map(|h| {
                    let mut s = format!(
                        "{} ({}) in {}@{}",
                        h.id,
                        h.severity.as_str(),
                        h.package,
                        h.version
                    );
                    if let Some(src) = &h.source {
                        s.push_str(&format!(" (source {src})"));
                    }
                    if let Some(f) = &h.fixed {
                        s.push_str(&format!(", fixed in {f}"));
                    }
                    if let Some(p) = &h.platform {
                        s.push_str(&format!(" [{p}]"));
                    }
                    s
                })
                .collect();
            let more = match total.saturating_sub(worst.len()) {
                0 => String::new(),
                n => format!(" and {n} more"),
            };
            let first = worst.first().map_or("ID", |h| h.id.as_str());
            Some(format!(
                "{policy}: {total} finding{} at or above {}: {}{more}. Update the base image or \
                 the packages named and push again (`berth scan --stored REGISTRY/{repo}@{digest}` \
                 lists every finding), or ask an admin of namespace {ns} for an allowance: \
                 berth scan allow {ns} {first} --reason \"...\" --expires YYYY-MM-DD",
                if *total == 1 { "" } else { "s" },
                gate.block.map_or("?", Severity::as_str),
                named.join("; "),
            ))
        }
        Outcome::Unscanned { images } => {
            let failed = images.iter().find_map(|(d, e)| e.as_ref().map(|e| (d, e)));
            let state = match failed {
                Some((d, e)) => format!("the scan of {d} failed ({e})"),
                None => "it has not been scanned yet".to_owned(),
            };
            let next = if queued {
                "a scan is queued (scan on push is on): retry in a minute, or scan it now"
                    .to_owned()
            } else {
                format!(
                    "scan it, or ask an admin of namespace {ns} to turn on scanning on push \
                     (berth scan policy {ns} --on-push on)"
                )
            };
            Some(format!(
                "{policy}: {state}; {next} with `berth scan REGISTRY/{repo}@{digest}` \
                 (needs push permission on {repo})"
            ))
        }
    }
}

/// A verdict with the policy it was computed under.
struct Cached {
    gate: Arc<NamespaceGate>,
    decision: Decision,
}

/// The cached verdicts, `repository -> digest -> verdict`.
pub(crate) struct Verdicts {
    map: RwLock<HashMap<String, HashMap<String, Arc<Cached>>>>,
    generation: AtomicU64,
    gate: Invalidation,
}

impl Verdicts {
    /// An empty cache, filled while `gate` is live; subscribed to it.
    pub(crate) fn new(gate: &Invalidation) -> Arc<Verdicts> {
        let v = Arc::new(Verdicts {
            map: RwLock::default(),
            generation: AtomicU64::new(0),
            gate: gate.clone(),
        });
        gate.subscribe(&v);
        v
    }

    fn get(&self, repo: &RepositoryName, digest: &Digest) -> Option<Arc<Cached>> {
        if !self.gate.live() {
            return None;
        }
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        map.get(repo.as_str())?.get(digest.as_str()).cloned()
    }

    fn fill(&self, repo: &RepositoryName, digest: &Digest, c: Arc<Cached>, generation: u64) {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        if self.generation.load(Ordering::Acquire) != generation || !self.gate.live() {
            return;
        }
        if map.values().map(HashMap::len).sum::<usize>() >= MAX_CACHED {
            map.clear();
        }
        map.entry(repo.as_str().to_owned())
            .or_default()
            .insert(digest.as_str().to_owned(), c);
    }

    /// Drops the verdicts of `repo` (a scan result written, a manifest
    /// deleted).
    pub(crate) fn forget(&self, repo: &RepositoryName) {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        map.remove(repo.as_str());
    }

    fn clear(&self) {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        map.clear();
    }
}

impl Subscriber for Verdicts {
    fn changed(&self, change: &Change) {
        match change {
            Change::Scan(repo, _) | Change::Manifest(repo, _) | Change::Repository(repo) => {
                self.forget(repo)
            }
            Change::Tag(..) | Change::Link(..) | Change::Accounts | Change::Table(_) => {}
        }
    }

    fn reset(&self) {
        self.clear();
    }
}

impl Registry {
    /// Every namespace's active pull policy (cached).
    pub(crate) async fn pull_gates(&self) -> Result<Arc<GateConfig>> {
        // Boxed: a load is rare, and its queries' futures would otherwise
        // be part of every manifest GET's.
        self.pull_gates
            .get_or_load(|| {
                Box::pin(async {
                    let policies = self.meta.scan_policies().await?;
                    let allowances = self.meta.scan_allowances(None).await?;
                    build(policies, allowances)
                })
            })
            .await
    }

    /// Checks a manifest pull (`GET`) of `m` through `reference` against
    /// the vulnerability policy of `repo`'s namespace: nothing to do
    /// without one (one lookup in memory); otherwise the cached verdict,
    /// or one computed from the stored results. A refusal is audited,
    /// counted and answered 403 DENIED.
    pub(crate) async fn check_vulnerabilities(
        &self,
        repo: &RepositoryName,
        reference: &Reference,
        m: &ManifestEntry,
        reader: Reader<'_>,
    ) -> Result<()> {
        let config = self.pull_gates().await?;
        let Some(gate) = config.get(repo.namespace_str()) else {
            return Ok(());
        };
        if reader.site_admin {
            return Ok(());
        }
        // Boxed: only pulls from namespaces with a policy carry this
        // future, not every manifest GET's.
        Box::pin(self.gated_pull(repo, reference, m, gate.clone(), reader)).await
    }

    async fn gated_pull(
        &self,
        repo: &RepositoryName,
        reference: &Reference,
        m: &ManifestEntry,
        gate: Arc<NamespaceGate>,
        reader: Reader<'_>,
    ) -> Result<()> {
        let now = crate::now_ms();
        let digest = &m.digest;
        let cached = self
            .pull_verdicts
            .get(repo, digest)
            .filter(|c| Arc::ptr_eq(&c.gate, &gate) && c.decision.until.is_none_or(|t| t > now));
        let decision = match cached {
            Some(c) => c.decision.clone(),
            None => {
                let generation = self.pull_verdicts.generation.load(Ordering::Acquire);
                let images = self.gated_images(repo, m).await?;
                let decision = decide(&gate, &images, now);
                self.pull_verdicts.fill(
                    repo,
                    digest,
                    Arc::new(Cached {
                        gate: gate.clone(),
                        decision: decision.clone(),
                    }),
                    generation,
                );
                decision
            }
        };
        let reason = match decision.outcome {
            Outcome::Exempt | Outcome::Clear => return Ok(()),
            Outcome::Unscanned { .. } => "unscanned",
            Outcome::Vulnerable { .. } => "vulnerable",
        };
        let what = match reference {
            Reference::Tag(t) => format!("{repo}:{t} ({digest})"),
            Reference::Digest(_) => format!("{repo}@{digest}"),
        };
        let queues = gate.scan_on_push && reason == "unscanned";
        let Some(message) = refusal(&what, repo, digest, &gate, &decision.outcome, queues) else {
            return Ok(());
        };
        let refused = Refusal {
            repo,
            reference,
            digest,
            gate: &gate,
            reason,
            message: &message,
        };
        // The first refusal of a window queues the scan; its repeats (a
        // client retrying) write nothing.
        if self.record_refusal(refused, reader.caller.actor()).await {
            if let Outcome::Unscanned { images } = &decision.outcome {
                if queues {
                    self.queue_unscanned(repo, images).await?;
                }
            }
        }
        Err(Error::Denied(message))
    }

    /// The platform images a pull of `m` would serve, with their stored
    /// results; none when `m` is not gated (an artifact, a signature).
    async fn gated_images(
        &self,
        repo: &RepositoryName,
        m: &ManifestEntry,
    ) -> Result<Vec<ImageResult>> {
        let Ok(parsed) = Manifest::parse(&m.content, Some(&m.media_type)) else {
            return Ok(Vec::new());
        };
        let mut targets = Vec::new();
        match parsed.kind {
            ManifestKind::Index if parsed.subject.is_none() => {
                for c in parsed.child_manifests() {
                    if c.entry_kind() != EntryKind::Manifest {
                        continue;
                    }
                    let child = match self
                        .get_manifest(repo, &Reference::Digest(c.digest.clone()))
                        .await
                    {
                        Ok(child) => child,
                        // A sparse index (a mirrored one): what is not
                        // here cannot be served from here.
                        Err(Error::ManifestUnknown(_)) => continue,
                        Err(e) => return Err(e),
                    };
                    let Ok(cm) = Manifest::parse(&child.content, Some(&child.media_type)) else {
                        continue;
                    };
                    if is_container_image(&cm) {
                        targets.push((c.digest.clone(), platform_label(c.platform.as_ref())));
                    }
                }
            }
            _ if is_container_image(&parsed) => targets.push((m.digest.clone(), None)),
            _ => {}
        }
        let mut out = Vec::with_capacity(targets.len());
        for (digest, platform) in targets {
            let result = match self.meta.scan(repo, &digest).await? {
                None => None,
                Some(row) => Some(match row.error {
                    Some(e) => ScanOutcome::Failed(e),
                    None => {
                        let stored: StoredReport =
                            serde_json::from_str(&row.report).map_err(|e| {
                                Error::Metadata(berth_meta::Error::Corrupt(format!(
                                    "stored scan of {repo}@{digest}: {e}"
                                )))
                            })?;
                        ScanOutcome::Findings(stored.findings)
                    }
                }),
            };
            out.push(ImageResult {
                digest,
                platform,
                result,
            });
        }
        Ok(out)
    }

    /// Under scan on push, makes sure the unscanned images of a refused
    /// pull have a scan queued (an image pushed before the policy, or
    /// whose scan failed), so a retry succeeds.
    async fn queue_unscanned(
        &self,
        repo: &RepositoryName,
        images: &[(Digest, Option<String>)],
    ) -> Result<()> {
        let mut any = false;
        for (d, failed) in images {
            if failed.is_none() {
                any |= self
                    .meta
                    .request_scan(repo, d, "pull", crate::now_ms())
                    .await?;
            }
        }
        if any {
            self.scan_wake().notify_one();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
