//! The pull-through mirror's cache limit: what the mirror stored from
//! its upstreams (each upstream's content lives in a namespace of its
//! own, named after it) may take at most `mirror_cache_max` bytes in all,
//! and each upstream at most its own `cache_max`. Past a limit, the least
//! recently pulled mirrored images are evicted until the cache is under
//! it again.
//!
//! - **Usage** is the namespaces' usage as the quota counts it (every
//!   distinct blob and manifest of the namespace once). Mirrored content
//!   never counts against a push quota: the quota gate lets the mirror's
//!   writes through ([`Settings::is_mirrored`]), and usage views say the
//!   namespace is a mirror's cache.
//! - **What goes first**: the unit of eviction is an image as pulled, a
//!   root manifest of a mirrored repository (one no index of the
//!   repository lists) with its index children and its referrers. Its
//!   last use is its latest pull, through a tag or by digest, of any of
//!   those manifests, or, never pulled, when it was fetched. Images are
//!   evicted oldest use first, across the namespaces over their limit,
//!   until the estimated bytes they free bring usage under it; usage is
//!   then measured again (shared blobs free less than estimated) and the
//!   round repeats, a few times at most.
//! - **How**: each manifest is deleted as retention deletes one (under the
//!   repository lock, re-checking that no other tag, index or subject
//!   holds it, and that no tag rule protects its tags), with a
//!   `mirror.evict` audit event. Then the repository's blob links that no
//!   manifest of it references any more go (only the mirror writes there;
//!   its fetches link a blob after the manifest that references it), then
//!   the `blobs` rows no repository links any more (re-checked in the
//!   deleting transaction: a blob that pushed content links, or that a
//!   push links meanwhile, stays), then their files, through garbage
//!   collection's quarantine (a file is deleted only when, out of sight,
//!   it still has no row and was not re-published in the last
//!   [`FILE_MARGIN`]; the rest waits for garbage collection).
//!
//! One replica evicts at a time (the `mirror-evict` lease).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, UNIX_EPOCH};

use berth_meta::{Deletion, Inventory, ManifestTarget, TagGuard};
use berth_oci::{Digest, Namespace, RepositoryName, Tag};
use serde::Serialize;

use crate::{Caller, Registry, Result};

/// The job name (lease) of an eviction round.
pub const EVICT_JOB: &str = "mirror-evict";

/// A file re-published this recently may belong to a push between its
/// upload and its link: it is left to garbage collection.
pub const FILE_MARGIN: Duration = Duration::from_secs(60);

/// Rounds of evict-then-measure in one run.
const ROUNDS: usize = 4;

/// Links swept per transaction.
const PAGE: i64 = 1000;

/// One upstream's cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cached {
    /// The namespace its content is stored under (the upstream's name).
    pub namespace: Namespace,
    /// The most it may hold, in bytes (`None`: only the total limit).
    pub max_bytes: Option<u64>,
}

/// The mirror's caches and their limits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// One entry per upstream.
    pub namespaces: Vec<Cached>,
    /// The most all of them together may hold (`None`: no limit).
    pub max_bytes: Option<u64>,
}

impl Settings {
    /// Whether `namespace` holds a mirror's cache.
    pub fn is_mirrored(&self, namespace: &str) -> bool {
        self.namespaces
            .iter()
            .any(|c| c.namespace.as_str() == namespace)
    }

    fn limited(&self) -> bool {
        self.max_bytes.is_some() || self.namespaces.iter().any(|c| c.max_bytes.is_some())
    }
}

/// One upstream's cache, as the status shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CacheUsage {
    /// The namespace (the upstream's name).
    pub namespace: String,
    /// Bytes cached.
    pub cached_bytes: u64,
    /// Its own limit, if it has one.
    pub max_bytes: Option<u64>,
}

/// What one namespace lost in an eviction run.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Evicted {
    /// The namespace (the upstream's name).
    pub namespace: String,
    /// Manifests deleted.
    pub manifests: u64,
    /// Blobs no repository links any more (their rows deleted).
    pub blobs: u64,
    /// By how much the namespace's usage went down.
    pub bytes: u64,
}

/// What an eviction run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Eviction {
    /// Per namespace that lost content.
    pub namespaces: Vec<Evicted>,
    /// Mirrored usage before, in bytes (all namespaces).
    pub before_bytes: u64,
    /// And after.
    pub after_bytes: u64,
    /// Files deleted from storage (the rest waits for garbage collection).
    pub files: u64,
    /// Planned deletions that did not happen (a tag moved, a rule
    /// protects it, ...).
    pub skipped: u64,
    /// Records of when a cached tag was last checked upstream that were
    /// forgotten because the tag is gone (evicted, deleted, its
    /// repository deleted).
    pub tag_checks_forgotten: u64,
}

impl Eviction {
    /// Manifests evicted in all.
    pub fn manifests(&self) -> u64 {
        self.namespaces.iter().map(|n| n.manifests).sum()
    }

    /// A one-line summary, if anything was evicted.
    pub fn summary(&self) -> Option<String> {
        (self.manifests() > 0).then(|| {
            format!(
                "evicted {} manifests and {} blobs ({} bytes) from the mirror's cache: {} -> {} bytes",
                self.manifests(),
                self.namespaces.iter().map(|n| n.blobs).sum::<u64>(),
                self.before_bytes.saturating_sub(self.after_bytes),
                self.before_bytes,
                self.after_bytes
            )
        })
    }

    fn entry(&mut self, ns: &str) -> &mut Evicted {
        let i = match self.namespaces.iter().position(|e| e.namespace == ns) {
            Some(i) => i,
            None => {
                self.namespaces.push(Evicted {
                    namespace: ns.to_owned(),
                    ..Evicted::default()
                });
                self.namespaces.len() - 1
            }
        };
        &mut self.namespaces[i]
    }
}

/// An image that may be evicted: a root manifest with what hangs on it.
#[derive(Debug, Clone)]
struct Unit {
    repository: RepositoryName,
    /// Parents before children, subjects before referrers.
    manifests: Vec<(Digest, Option<Digest>, Vec<Tag>)>,
    last_used: i64,
    /// Bytes that go with it: its manifests and the blobs no other image
    /// of the repository references.
    bytes: u64,
}

/// The images of one repository, each with its last use and own bytes.
fn units(repository: &RepositoryName, inv: &Inventory) -> Vec<Unit> {
    let children: HashMap<&Digest, Vec<&Digest>> =
        inv.children().fold(HashMap::new(), |mut m, (p, c)| {
            m.entry(p).or_default().push(c);
            m
        });
    let listed: HashSet<&Digest> = inv.children().map(|(_, c)| c).collect();
    let present: HashSet<&Digest> = inv.manifests.iter().map(|m| &m.digest).collect();
    let mut referrers: HashMap<&Digest, Vec<&Digest>> = HashMap::new();
    for m in &inv.manifests {
        if let Some(s) = m.subject.as_ref().filter(|s| present.contains(s)) {
            referrers.entry(s).or_default().push(&m.digest);
        }
    }
    let info: HashMap<&Digest, &berth_meta::ManifestInfo> =
        inv.manifests.iter().map(|m| (&m.digest, m)).collect();
    let mut tags: HashMap<&Digest, Vec<&berth_meta::TagInfo>> = HashMap::new();
    for t in &inv.tags {
        tags.entry(&t.digest).or_default().push(t);
    }
    let mut blobs: HashMap<&Digest, Vec<(&Digest, i64)>> = HashMap::new();
    for (m, b, size) in inv.blobs() {
        blobs.entry(m).or_default().push((b, size));
    }
    // Roots: neither listed by an index nor hanging on a present subject.
    let mut out: Vec<(Unit, HashSet<Digest>)> = Vec::new();
    let mut taken: HashSet<&Digest> = HashSet::new();
    for m in &inv.manifests {
        let hangs = m.subject.as_ref().is_some_and(|s| present.contains(s));
        if listed.contains(&m.digest) || hangs {
            continue;
        }
        let mut order: Vec<&Digest> = vec![&m.digest];
        let mut i = 0;
        while i < order.len() {
            let d = order[i];
            for next in children
                .get(d)
                .into_iter()
                .chain(referrers.get(d))
                .flatten()
            {
                if present.contains(next) && !order.contains(next) && !taken.contains(next) {
                    order.push(next);
                }
            }
            i += 1;
        }
        taken.extend(order.iter().copied());
        let mut last_used = 0;
        let mut bytes = 0u64;
        let mut own: HashSet<Digest> = HashSet::new();
        let mut manifests = Vec::new();
        for d in &order {
            let Some(mi) = info.get(d) else { continue };
            last_used = last_used
                .max(mi.pushed_at)
                .max(mi.last_pulled_at.unwrap_or(0));
            let mut with_tags = Vec::new();
            for t in tags.get(d).into_iter().flatten() {
                last_used = last_used.max(t.last_pulled_at.unwrap_or(0));
                with_tags.push(t.name.clone());
            }
            bytes += mi.size.max(0) as u64;
            for (b, _) in blobs.get(d).into_iter().flatten() {
                own.insert((*b).clone());
            }
            manifests.push(((*d).clone(), mi.subject.clone(), with_tags));
        }
        out.push((
            Unit {
                repository: repository.clone(),
                manifests,
                last_used,
                bytes,
            },
            own,
        ));
    }
    // A blob's bytes go with an image only if no other image uses it.
    let mut users: HashMap<&Digest, usize> = HashMap::new();
    for (_, own) in &out {
        for b in own {
            *users.entry(b).or_default() += 1;
        }
    }
    let sizes: HashMap<&Digest, i64> = inv.blobs().map(|(_, b, s)| (b, s)).collect();
    let extra: Vec<u64> = out
        .iter()
        .map(|(_, own)| {
            own.iter()
                .filter(|b| users.get(b) == Some(&1))
                .map(|b| sizes.get(b).copied().unwrap_or(0).max(0) as u64)
                .sum()
        })
        .collect();
    out.into_iter()
        .zip(extra)
        .map(|((mut u, _), e)| {
            u.bytes += e;
            u
        })
        .collect()
}

/// The images to evict, oldest use first, until their estimated bytes
/// bring `used` to `max` or below.
fn choose(mut candidates: Vec<Unit>, used: u64, max: u64) -> Vec<Unit> {
    candidates.sort_by(|a, b| {
        a.last_used
            .cmp(&b.last_used)
            .then_with(|| a.repository.cmp(&b.repository))
    });
    let mut left = used;
    let mut out = Vec::new();
    for u in candidates {
        if left <= max {
            break;
        }
        left = left.saturating_sub(u.bytes.max(1));
        out.push(u);
    }
    out
}

impl Registry {
    /// Whether namespace `ns` holds a mirror's cache.
    pub fn is_mirror_cache(&self, ns: &str) -> bool {
        self.settings.mirror_cache.is_mirrored(ns)
    }

    /// The limit of all mirror caches together, if there is one.
    pub fn mirror_cache_max(&self) -> Option<u64> {
        self.settings.mirror_cache.max_bytes
    }

    /// Each upstream's cache: its bytes and limit.
    pub async fn mirror_cache_usage(&self) -> Result<Vec<CacheUsage>> {
        let mut out = Vec::new();
        for c in &self.settings.mirror_cache.namespaces {
            out.push(CacheUsage {
                namespace: c.namespace.to_string(),
                cached_bytes: self.meta.namespace_usage(&c.namespace).await?,
                max_bytes: c.max_bytes,
            });
        }
        Ok(out)
    }

    /// Evicts the least recently pulled mirrored images until every
    /// mirror cache is under its limit and all together under the total
    /// (see the module's doc). `now` (Unix ms) is the run's clock.
    ///
    /// Every run, limited or not, also forgets when the tags that are gone
    /// (evicted now or earlier, deleted, their repository deleted) were
    /// last checked upstream.
    pub async fn evict_mirror_cache(&self, now: i64) -> Result<Eviction> {
        let mut report = self.evict_over_limits(now).await?;
        report.tag_checks_forgotten = self.forget_stale_mirror_tag_checks().await?;
        Ok(report)
    }

    async fn evict_over_limits(&self, now: i64) -> Result<Eviction> {
        let settings = &self.settings.mirror_cache;
        let mut report = Eviction::default();
        if !settings.limited() {
            return Ok(report);
        }
        let usage = self.mirror_cache_usage().await?;
        report.before_bytes = usage.iter().map(|u| u.cached_bytes).sum();
        report.after_bytes = report.before_bytes;
        if !over(settings, &usage) {
            return Ok(report);
        }
        let held = self.hold_job(EVICT_JOB).await?;
        let outcome = self.evict_rounds(now, &mut report, &held).await;
        held.release().await;
        outcome?;
        if let Some(summary) = report.summary() {
            tracing::info!(%summary, "mirror cache over its limit: evicted");
        }
        Ok(report)
    }

    async fn evict_rounds(
        &self,
        now: i64,
        report: &mut Eviction,
        held: &crate::jobs::Held<'_>,
    ) -> Result<()> {
        let settings = &self.settings.mirror_cache;
        // The latest pulls count (a failed flush keeps its counts; evict
        // with what is recorded).
        let _ = self.flush_pulls().await;
        for _ in 0..ROUNDS {
            let usage = self.mirror_cache_usage().await?;
            report.after_bytes = usage.iter().map(|u| u.cached_bytes).sum();
            // Each namespace over its own limit, then the total.
            let mut plan: Vec<Unit> = Vec::new();
            for (c, u) in settings.namespaces.iter().zip(&usage) {
                if let Some(max) = c.max_bytes.filter(|m| u.cached_bytes > *m) {
                    let units = self.cached_units(&c.namespace).await?;
                    plan.extend(choose(units, u.cached_bytes, max));
                }
            }
            if plan.is_empty() {
                if let Some(max) = settings.max_bytes.filter(|m| report.after_bytes > *m) {
                    let mut all = Vec::new();
                    for c in &settings.namespaces {
                        all.extend(self.cached_units(&c.namespace).await?);
                    }
                    plan = choose(all, report.after_bytes, max);
                }
            }
            if plan.is_empty() {
                return Ok(());
            }
            self.evict_units(&plan, now, report).await?;
            held.keep().await?;
            if self.stop.is_cancelled() {
                return Ok(());
            }
        }
        let usage = self.mirror_cache_usage().await?;
        report.after_bytes = usage.iter().map(|u| u.cached_bytes).sum();
        Ok(())
    }

    async fn cached_units(&self, ns: &Namespace) -> Result<Vec<Unit>> {
        let mut out = Vec::new();
        for repo in self.meta.namespace_repositories(ns).await? {
            if let Some(inv) = self.meta.inventory(&repo).await? {
                out.extend(units(&repo, &inv));
            }
        }
        Ok(out)
    }

    /// Deletes the images of `plan`, then what only they used; adds what
    /// went to `report` and the metrics.
    async fn evict_units(&self, plan: &[Unit], now: i64, report: &mut Eviction) -> Result<()> {
        let actor = Caller::system("mirror-cache").actor();
        let mut round = Eviction::default();
        let mut touched: Vec<RepositoryName> = Vec::new();
        let mut before: Vec<(Namespace, u64)> = Vec::new();
        for unit in plan {
            let ns = unit.repository.namespace();
            if !before.iter().any(|(n, _)| *n == ns) {
                before.push((ns.clone(), self.meta.namespace_usage(&ns).await?));
            }
            let rules = self.tag_rules(&unit.repository).await?;
            let guard: TagGuard = std::sync::Arc::new(move |t: &Tag| {
                rules
                    .is_protected(t)
                    .then(|| format!("tag {t} is protected"))
            });
            for (digest, subject, tags) in &unit.manifests {
                let detail = serde_json::json!({
                    "last_used_at": unit.last_used,
                    "image_bytes": unit.bytes,
                    "reason": "the mirror's cache is over its limit: least recently pulled first",
                });
                let target = ManifestTarget {
                    digest: digest.clone(),
                    with_tags: tags.clone(),
                    subject: subject.clone(),
                };
                let outcome = self
                    .meta
                    .evict_manifest(&unit.repository, target, guard.clone(), &actor, detail)
                    .await?;
                self.cache.invalidate_manifest(&unit.repository, digest);
                for t in tags {
                    self.cache.invalidate_tag(&unit.repository, t);
                }
                match outcome {
                    Deletion::Deleted => round.entry(ns.as_str()).manifests += 1,
                    Deletion::Skipped(why) => {
                        tracing::debug!(repository = %unit.repository, %digest, %why, "not evicted");
                        round.skipped += 1;
                    }
                }
            }
            if !touched.contains(&unit.repository) {
                touched.push(unit.repository.clone());
            }
        }
        // What only the evicted images used: links, rows, files.
        let cutoff = now + 1;
        let mut unlinked: HashMap<Digest, Namespace> = HashMap::new();
        for repo in &touched {
            loop {
                let gone = self.meta.sweep_links(repo, cutoff, PAGE).await?;
                let full = gone.len() as i64 == PAGE;
                for u in gone {
                    self.cache.invalidate_link(repo, &u.digest);
                    unlinked.entry(u.digest).or_insert_with(|| repo.namespace());
                }
                if !full {
                    break;
                }
            }
        }
        let mut digests: Vec<Digest> = unlinked.keys().cloned().collect();
        digests.sort();
        let mut rows_gone: Vec<Digest> = Vec::new();
        for chunk in digests.chunks(PAGE as usize) {
            rows_gone.extend(self.meta.sweep_blobs(chunk, cutoff).await?);
        }
        let old = UNIX_EPOCH + Duration::from_millis(now.max(0) as u64).saturating_sub(FILE_MARGIN);
        for d in &rows_gone {
            if let Some(ns) = unlinked.get(d) {
                round.entry(ns.as_str()).blobs += 1;
            }
            if self.collect_file(d, old).await?.is_some() {
                round.files += 1;
            }
        }
        for (ns, was) in before {
            let used = self.meta.namespace_usage(&ns).await?;
            round.entry(ns.as_str()).bytes += was.saturating_sub(used);
        }
        for e in &round.namespaces {
            berth_metrics::get().mirror_evicted(&e.namespace, e.manifests, e.blobs, e.bytes);
            let total = report.entry(&e.namespace);
            total.manifests += e.manifests;
            total.blobs += e.blobs;
            total.bytes += e.bytes;
        }
        report.files += round.files;
        report.skipped += round.skipped;
        Ok(())
    }
}

fn over(settings: &Settings, usage: &[CacheUsage]) -> bool {
    let total: u64 = usage.iter().map(|u| u.cached_bytes).sum();
    settings.max_bytes.is_some_and(|m| total > m)
        || usage
            .iter()
            .any(|u| u.max_bytes.is_some_and(|m| u.cached_bytes > m))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use berth_meta::{ManifestInfo, ManifestRef, RefKind, TagInfo};
    use berth_testkit::digests::digest;

    use super::*;

    fn manifest(
        d: &str,
        pushed_at: i64,
        pulled: Option<i64>,
        subject: Option<&str>,
    ) -> ManifestInfo {
        ManifestInfo {
            digest: digest(d),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            artifact_type: None,
            subject: subject.map(digest),
            size: 10,
            pushed_at,
            pull_count: 0,
            last_pulled_at: pulled,
        }
    }

    fn reference(parent: &str, child: &str, kind: RefKind, size: Option<i64>) -> ManifestRef {
        ManifestRef {
            parent: digest(parent),
            child: digest(child),
            kind,
            blob_size: size,
            attestation: false,
            describes: None,
        }
    }

    fn repo() -> RepositoryName {
        RepositoryName::parse("hub/library/app").unwrap()
    }

    /// An index with two platforms and a signature on it, tagged; an older
    /// image sharing a layer with one platform.
    fn inventory() -> Inventory {
        Inventory {
            tags: vec![TagInfo {
                name: Tag::parse("v1").unwrap(),
                digest: digest("index"),
                updated_at: 100,
                pull_count: 1,
                last_pulled_at: Some(900),
            }],
            manifests: vec![
                manifest("index", 100, None, None),
                manifest("amd64", 100, Some(500), None),
                manifest("arm64", 100, None, None),
                manifest("sig", 300, None, Some("index")),
                manifest("old", 50, Some(60), None),
            ],
            references: vec![
                reference("index", "amd64", RefKind::Manifest, None),
                reference("index", "arm64", RefKind::Manifest, None),
                reference("amd64", "layer-a", RefKind::Blob, Some(1000)),
                reference("arm64", "layer-b", RefKind::Blob, Some(2000)),
                reference("old", "layer-a", RefKind::Blob, Some(1000)),
                reference("old", "layer-o", RefKind::Blob, Some(400)),
            ],
        }
    }

    #[test]
    fn an_image_is_its_root_with_children_and_referrers() {
        let units = units(&repo(), &inventory());
        assert_eq!(units.len(), 2);
        let index = units
            .iter()
            .find(|u| u.manifests[0].0 == digest("index"))
            .unwrap();
        let order: Vec<Digest> = index.manifests.iter().map(|m| m.0.clone()).collect();
        assert_eq!(order[0], digest("index"), "parents first");
        assert!(order.contains(&digest("amd64")) && order.contains(&digest("sig")));
        assert_eq!(order.len(), 4);
        assert_eq!(index.manifests[0].2, vec![Tag::parse("v1").unwrap()]);
        // The tag's pull is the latest use.
        assert_eq!(index.last_used, 900);
        // Its manifests and the layer only it uses (layer-a is shared).
        assert_eq!(index.bytes, 40 + 2000);
        let old = units
            .iter()
            .find(|u| u.manifests[0].0 == digest("old"))
            .unwrap();
        assert_eq!(old.last_used, 60);
        assert_eq!(old.bytes, 10 + 400);
    }

    #[test]
    fn the_least_recently_used_go_until_the_estimate_fits() {
        let units = units(&repo(), &inventory());
        // 3000 used, 2800 allowed: the old image (410 bytes) is enough.
        let chosen = choose(units.clone(), 3000, 2800);
        assert_eq!(chosen.len(), 1);
        assert_eq!(chosen[0].manifests[0].0, digest("old"));
        // 100 allowed: both, oldest first.
        let chosen = choose(units.clone(), 3000, 100);
        assert_eq!(chosen.len(), 2);
        assert_eq!(chosen[0].manifests[0].0, digest("old"));
        // Under the limit: nothing.
        assert!(choose(units, 3000, 3000).is_empty());
    }

    #[test]
    fn only_limited_settings_evict_and_mirror_namespaces_are_known() {
        let ns = Namespace::parse("hub").unwrap();
        let mut s = Settings {
            namespaces: vec![Cached {
                namespace: ns.clone(),
                max_bytes: None,
            }],
            max_bytes: None,
        };
        assert!(s.is_mirrored("hub") && !s.is_mirrored("acme"));
        assert!(!s.limited());
        let usage = [CacheUsage {
            namespace: "hub".into(),
            cached_bytes: 500,
            max_bytes: Some(400),
        }];
        assert!(over(&s, &usage));
        s.max_bytes = Some(600);
        assert!(s.limited());
        let under = [CacheUsage {
            max_bytes: None,
            ..usage[0].clone()
        }];
        assert!(!over(&s, &under));
    }
}
