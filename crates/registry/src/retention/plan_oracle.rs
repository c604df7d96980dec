//! The retention plan in its plainest form: the plan as it was before it
//! worked on integer positions (commit 412dfdf, keyed by digest strings),
//! compiled for the tests only, as the oracle the plan's output must equal
//! on any inventory (`tests::plans_equal_the_oracle_on_random_inventories`).
//!
//! It is the readable statement of what a plan is. To change what plans
//! do, change this first, then `plan.rs` until the random inventories
//! agree again.

use std::collections::BTreeSet;

use berth_meta::{Inventory, ManifestInfo, TagInfo};
use berth_oci::{Digest, RepositoryName, Tag};

use super::plan::{ItemKind, PlanItem};
use super::policy::{Condition, Policy, Rule, Selector};
use crate::glob;

type HashMap<K, V> = rustc_hash::FxHashMap<K, V>;
type HashSet<K> = rustc_hash::FxHashSet<K>;

/// The subject a tag-schema referrer tag names: `sha256-<hex>[.suffix]`
/// -> `sha256:<hex>`.
fn tag_subject(tag: &Tag) -> Option<String> {
    let (alg, rest) = tag.as_str().split_once('-')?;
    let hex = rest.split('.').next()?;
    let len = match alg {
        "sha256" => 64,
        "sha512" => 128,
        _ => return None,
    };
    (hex.len() == len && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| format!("{alg}:{hex}"))
}

/// Something a rule may select.
struct Candidate<'a> {
    tag: Option<&'a Tag>,
    digest: &'a str,
    pushed: i64,
    pulled: Option<i64>,
}

/// How each rule ranks the images it selects (by digest).
struct Ranks<'a> {
    push: HashMap<&'a str, usize>,
    pull: HashMap<&'a str, usize>,
}

fn ranks<'a>(selected: &[Candidate<'a>]) -> Ranks<'a> {
    // Unordered: both rankings sort by a total order (the digest last).
    let mut images: HashMap<&str, (i64, Option<i64>)> = HashMap::default();
    for c in selected {
        let e = images.entry(c.digest).or_insert((i64::MIN, None));
        e.0 = e.0.max(c.pushed);
        e.1 = e.1.max(c.pulled);
    }
    let mut by_push: Vec<(&str, i64, Option<i64>)> =
        images.iter().map(|(d, (p, l))| (*d, *p, *l)).collect();
    by_push.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let mut by_pull: Vec<_> = by_push.iter().filter(|i| i.2.is_some()).cloned().collect();
    by_pull.sort_by(|a, b| b.2.cmp(&a.2).then(b.1.cmp(&a.1)).then(a.0.cmp(b.0)));
    Ranks {
        push: by_push.iter().enumerate().map(|(i, x)| (x.0, i)).collect(),
        pull: by_pull.iter().enumerate().map(|(i, x)| (x.0, i)).collect(),
    }
}

fn holds(c: &Condition, cand: &Candidate<'_>, r: &Ranks<'_>, now: i64) -> bool {
    match c {
        Condition::Always => true,
        Condition::Last(n) => r.push.get(cand.digest).is_some_and(|i| i < n),
        Condition::LastPulled(n) => r.pull.get(cand.digest).is_some_and(|i| i < n),
        Condition::PushedWithin(d) => now - cand.pushed <= *d,
        Condition::PulledWithin(d) => cand.pulled.is_some_and(|p| now - p <= *d),
        Condition::OlderThan(d) => now - cand.pushed > *d,
        Condition::All(v) => v.iter().all(|c| holds(c, cand, r, now)),
        Condition::Any(v) => v.iter().any(|c| holds(c, cand, r, now)),
        Condition::Not(c) => !holds(c, cand, r, now),
    }
}

fn types_match(rule: &Rule, m: &ManifestInfo) -> bool {
    let media = rule.media_types.is_empty()
        || rule
            .media_types
            .iter()
            .any(|p| glob::matches(p, &m.media_type));
    let artifact = rule.artifact_types.is_empty()
        || m.artifact_type
            .as_deref()
            .is_some_and(|a| rule.artifact_types.iter().any(|p| glob::matches(p, a)));
    media && artifact
}

/// Verdicts of all rules on one key (a tag or a manifest digest).
#[derive(Default)]
struct Votes {
    kept: bool,
    deleted_by: Option<(String, String)>,
}

/// Plans the deletions in `repo` at `now`.
pub fn plan_repository(
    policy: &Policy,
    repo: &RepositoryName,
    inv: &Inventory,
    protected: &dyn Fn(&Tag) -> bool,
    now: i64,
) -> Vec<PlanItem> {
    let manifests: HashMap<&str, &ManifestInfo> = inv
        .manifests
        .iter()
        .map(|m| (m.digest.as_str(), m))
        .collect();
    let mut tags_of: HashMap<&str, Vec<&Tag>> = HashMap::default();
    let mut holders: HashMap<&str, BTreeSet<&str>> = HashMap::default();
    let mut dependents: HashMap<&str, Vec<&str>> = HashMap::default();
    let mut attached: HashSet<&str> = HashSet::default();
    let mut subject_of: HashMap<&str, &Digest> = HashMap::default();
    for t in &inv.tags {
        tags_of.entry(t.digest.as_str()).or_default().push(&t.name);
        if let Some(s) = tag_subject(&t.name) {
            if let Some(subject) = manifests.get(s.as_str()) {
                let s = subject.digest.as_str();
                attached.insert(t.name.as_str());
                holders.entry(t.digest.as_str()).or_default().insert(s);
                dependents.entry(s).or_default().push(t.digest.as_str());
                subject_of.insert(t.digest.as_str(), &subject.digest);
            }
        }
    }
    for (parent, child) in inv.children() {
        holders
            .entry(child.as_str())
            .or_default()
            .insert(parent.as_str());
        dependents
            .entry(parent.as_str())
            .or_default()
            .push(child.as_str());
    }
    for m in &inv.manifests {
        if let Some(subject) = m.subject.as_ref().and_then(|s| manifests.get(s.as_str())) {
            let s = subject.digest.as_str();
            holders.entry(m.digest.as_str()).or_default().insert(s);
            dependents.entry(s).or_default().push(m.digest.as_str());
            subject_of.insert(m.digest.as_str(), &subject.digest);
        }
    }
    let untagged_roots: Vec<&ManifestInfo> = inv
        .manifests
        .iter()
        .filter(|m| {
            !tags_of.contains_key(m.digest.as_str()) && !holders.contains_key(m.digest.as_str())
        })
        .collect();

    // 1. Verdicts.
    let mut tag_votes: HashMap<&Tag, Votes> = HashMap::default();
    let mut root_votes: HashMap<&str, Votes> = HashMap::default();
    for rule in policy.rules.iter().filter(|r| {
        r.repositories.is_empty() || r.repositories.iter().any(|s| glob::scope_covers(s, repo))
    }) {
        let selected: Vec<Candidate<'_>> = match &rule.select {
            Selector::Tags { include, exclude } => inv
                .tags
                .iter()
                .filter(|t| !attached.contains(t.name.as_str()))
                .filter(|t| include.iter().any(|p| glob::matches(p, t.name.as_str())))
                .filter(|t| !exclude.iter().any(|p| glob::matches(p, t.name.as_str())))
                .filter_map(|t| {
                    let m = manifests.get(t.digest.as_str())?;
                    types_match(rule, m).then_some(Candidate {
                        tag: Some(&t.name),
                        digest: t.digest.as_str(),
                        pushed: t.updated_at,
                        pulled: t.last_pulled_at.max(m.last_pulled_at),
                    })
                })
                .collect(),
            Selector::Untagged => untagged_roots
                .iter()
                .filter(|m| types_match(rule, m))
                .map(|m| Candidate {
                    tag: None,
                    digest: m.digest.as_str(),
                    pushed: m.pushed_at,
                    pulled: m.last_pulled_at,
                })
                .collect(),
        };
        let r = ranks(&selected);
        for c in &selected {
            let keep = holds(&rule.condition, c, &r, now) == rule.keeps;
            let votes = match c.tag {
                Some(t) => tag_votes.entry(t).or_default(),
                None => root_votes.entry(c.digest).or_default(),
            };
            if keep {
                votes.kept = true;
            } else if votes.deleted_by.is_none() {
                let reason = if rule.keeps {
                    format!("not kept by: {}", rule.condition)
                } else {
                    format!("{}", rule.condition)
                };
                votes.deleted_by = Some((rule.name.clone(), reason));
            }
        }
    }
    let deleted_tags: HashMap<&Tag, (String, String)> = tag_votes
        .into_iter()
        .filter(|(t, v)| !v.kept && !protected(t))
        .filter_map(|(t, v)| v.deleted_by.map(|d| (t, d)))
        .collect();
    let deleted_roots: HashMap<&str, (String, String)> = root_votes
        .into_iter()
        .filter(|(_, v)| !v.kept)
        .filter_map(|(d, v)| v.deleted_by.map(|x| (d, x)))
        .collect();

    // 2. What stays: everything reachable from the anchors.
    let mut kept: HashSet<&str> = HashSet::default();
    let mut stack: Vec<&str> = Vec::new();
    for m in &inv.manifests {
        let d = m.digest.as_str();
        let tags = tags_of.get(d).map(Vec::as_slice).unwrap_or(&[]);
        let anchored = tags.iter().any(|t| protected(t))
            || tags
                .iter()
                .any(|t| !attached.contains(t.as_str()) && !deleted_tags.contains_key(*t))
            || (tags.is_empty() && !holders.contains_key(d) && !deleted_roots.contains_key(d));
        if anchored {
            stack.push(d);
        }
    }
    while let Some(d) = stack.pop() {
        if kept.insert(d) {
            stack.extend(dependents.get(d).into_iter().flatten().copied());
        }
    }

    // 3. The items: tags first, then manifests, holders before dependents.
    // Lookups by tag and by manifest, so that a plan deleting most of a
    // repository of 10,000 tags stays linear (searching the lists for each
    // deletion took seconds).
    let tag_info: HashMap<&str, &TagInfo> = inv.tags.iter().map(|t| (t.name.as_str(), t)).collect();
    let mut blobs_of: HashMap<&str, Vec<(&str, i64)>> = HashMap::default();
    for (m, b, size) in inv.blobs() {
        blobs_of
            .entry(m.as_str())
            .or_default()
            .push((b.as_str(), size));
    }
    let mut items = Vec::new();
    // Tags deleted, by name (the plan's order).
    let mut by_name: Vec<(&&Tag, &(String, String))> = deleted_tags.iter().collect();
    by_name.sort_unstable_by(|a, b| a.0.cmp(b.0));
    for (tag, (rule, reason)) in by_name {
        let Some(t) = tag_info.get(tag.as_str()) else {
            continue;
        };
        items.push(PlanItem {
            repository: repo.clone(),
            kind: ItemKind::Tag,
            tag: Some(t.name.clone()),
            digest: t.digest.clone(),
            rule: rule.clone(),
            reason: reason.clone(),
            pushed_at: t.updated_at,
            age_ms: now - t.updated_at,
            last_pulled_at: t.last_pulled_at,
            bytes: 0,
            tags: Vec::new(),
            subject: None,
        });
    }
    let kept_blobs: HashSet<&str> = inv
        .blobs()
        .filter(|(m, _, _)| kept.contains(m.as_str()))
        .map(|(_, b, _)| b.as_str())
        .collect();
    let mut counted: HashSet<&str> = HashSet::default();
    let mut doomed: BTreeSet<&str> = inv
        .manifests
        .iter()
        .map(|m| m.digest.as_str())
        .filter(|d| !kept.contains(d))
        .collect();
    let mut cause: HashMap<&str, String> = HashMap::default();
    while !doomed.is_empty() {
        let ready: Vec<&str> = doomed
            .iter()
            .copied()
            .filter(|d| {
                holders
                    .get(d)
                    .is_none_or(|h| h.iter().all(|h| !doomed.contains(h)))
            })
            .collect();
        // A cycle (impossible with content addressing) would stall: emit the rest.
        let batch = if ready.is_empty() {
            doomed.iter().copied().collect()
        } else {
            ready
        };
        for d in batch {
            doomed.remove(d);
            let Some(m) = manifests.get(d) else { continue };
            let tags = tags_of.get(d).map(Vec::as_slice).unwrap_or(&[]);
            let first_tag = tags.iter().filter_map(|t| deleted_tags.get(*t)).next();
            let (rule, reason) = if let Some((rule, _)) = first_tag {
                (rule.clone(), "its last tag was deleted".to_owned())
            } else if let Some((rule, reason)) = deleted_roots.get(d) {
                (rule.clone(), format!("untagged: {reason}"))
            } else {
                let h = holders
                    .get(d)
                    .and_then(|h| h.iter().next())
                    .copied()
                    .unwrap_or("");
                let how = if subject_of.contains_key(d) {
                    "referrer of"
                } else {
                    "listed only in"
                };
                (
                    cause.get(h).cloned().unwrap_or_default(),
                    format!("{how} deleted {h}"),
                )
            };
            cause.insert(d, rule.clone());
            let mut bytes = m.size.max(0) as u64;
            for &(b, size) in blobs_of.get(d).into_iter().flatten() {
                if !kept_blobs.contains(b) && counted.insert(b) {
                    bytes += size.max(0) as u64;
                }
            }
            items.push(PlanItem {
                repository: repo.clone(),
                kind: ItemKind::Manifest,
                tag: None,
                digest: m.digest.clone(),
                rule,
                reason,
                pushed_at: m.pushed_at,
                age_ms: now - m.pushed_at,
                last_pulled_at: m.last_pulled_at,
                bytes,
                tags: tags
                    .iter()
                    .filter(|t| attached.contains(t.as_str()))
                    .map(|t| (*t).clone())
                    .collect(),
                subject: subject_of.get(d).map(|s| (*s).clone()),
            });
        }
    }
    items
}
