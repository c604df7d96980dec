//! Evaluating a policy against one repository: a pure function from the
//! repository's inventory, its protected tags and the clock to the list of
//! deletions, each with its rule and reason.
//!
//! 1. Every rule gives each tag (or untagged manifest) it selects a
//!    verdict, keep or delete. A tag is deleted when at least one rule
//!    deletes it, no rule keeps it, and it is not protected.
//! 2. What stays is everything reachable from the *anchors* (manifests with
//!    a tag left, a protected tag, or untagged roots no rule deleted)
//!    through index children, referrers (`subject`) and tag-schema
//!    referrers (`sha256-<hex>.sig` tags); everything else is deleted, in
//!    an order where an index or subject goes before what depends on it.
//!
//! The work is on integer positions: a manifest is its position in
//! `inv.manifests` (one digest -> position map is built first), a tag its
//! position in `inv.tags`; the graph is flat adjacency lists, verdicts,
//! ranks and marks are vectors indexed by position, and a verdict holds
//! the rule's index (its texts are formatted once). Keyed by 71-byte
//! digest strings, a plan deleting 9,990 of 10,000 tags spent most of its
//! time hashing, comparing and copying them (issue 18).

use berth_meta::{Inventory, ManifestInfo};
use berth_oci::{Digest, RepositoryName, Tag};
use serde::Serialize;

use super::policy::{Condition, Policy, Rule, Selector};
use crate::glob;

// The digest -> position maps: FxHash, not SipHash, which was a tenth of
// a plan of 10,000 tags (docs/benchmarks.md, "Web UI: server time per
// page").
type HashMap<K, V> = rustc_hash::FxHashMap<K, V>;

/// No position: no rule, no manifest, no rank.
const NONE: u32 = u32::MAX;

/// A tag or a manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemKind {
    /// A tag (the manifest may stay).
    Tag,
    /// A manifest, with the tags listed in [`PlanItem::tags`].
    Manifest,
}

/// One deletion of a plan.
#[derive(Debug, Clone, Serialize)]
pub struct PlanItem {
    /// Repository.
    pub repository: RepositoryName,
    /// Tag or manifest.
    pub kind: ItemKind,
    /// The tag, for a tag.
    pub tag: Option<Tag>,
    /// The manifest (the one the tag points to, for a tag).
    pub digest: Digest,
    /// The rule responsible.
    pub rule: String,
    /// Why.
    pub reason: String,
    /// When the tag was set / the manifest pushed (Unix ms).
    pub pushed_at: i64,
    /// Age at the plan's time (ms).
    pub age_ms: i64,
    /// Last pull (Unix ms).
    pub last_pulled_at: Option<i64>,
    /// Bytes no kept manifest of the repository references any more (the
    /// manifest itself and its blobs, each blob counted once per plan).
    pub bytes: u64,
    /// For a manifest: tags removed with it (tag-schema referrer tags).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
    /// For a referrer: its subject, which must be gone first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<Digest>,
}

/// The subject a tag-schema referrer tag names: `sha256-<hex>[.suffix]`
/// -> `sha256:<hex>`, written into `buf`.
fn tag_subject<'b>(tag: &Tag, buf: &'b mut String) -> Option<&'b str> {
    let (alg, rest) = tag.as_str().split_once('-')?;
    let hex = rest.split('.').next()?;
    let len = match alg {
        "sha256" => 64,
        "sha512" => 128,
        _ => return None,
    };
    if hex.len() != len || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    buf.clear();
    buf.push_str(alg);
    buf.push(':');
    buf.push_str(hex);
    Some(buf)
}

/// `u32` position -> `usize` index.
fn ix(n: u32) -> usize {
    n as usize
}

/// Flat adjacency lists (compressed sparse rows): the entries of node `n`
/// are `entries[start[n]..start[n + 1]]`, in the order they were given.
struct Lists<T> {
    start: Vec<u32>,
    entries: Vec<T>,
}

impl<T: Copy + Default> Lists<T> {
    /// The lists of `nodes` nodes from `(node, entry)` pairs.
    fn new(nodes: usize, pairs: impl Iterator<Item = (u32, T)> + Clone) -> Self {
        let mut start = vec![0u32; nodes + 1];
        for (n, _) in pairs.clone() {
            start[ix(n) + 1] += 1;
        }
        for i in 0..nodes {
            start[i + 1] += start[i];
        }
        let mut next = start[..nodes].to_vec();
        let mut entries = vec![T::default(); ix(start[nodes])];
        for (n, e) in pairs {
            let at = &mut next[ix(n)];
            entries[ix(*at)] = e;
            *at += 1;
        }
        Self { start, entries }
    }

    fn of(&self, n: u32) -> &[T] {
        &self.entries[ix(self.start[ix(n)])..ix(self.start[ix(n) + 1])]
    }
}

/// The manifests, and the other digests the references name, as integer
/// nodes: a manifest is its position in `inv.manifests` (the last one of a
/// digest listed twice, as a map would have it), another digest (a child
/// manifest the repository does not hold) a number after them.
struct Nodes<'a> {
    index: HashMap<&'a str, u32>,
    manifests: &'a [ManifestInfo],
    others: Vec<&'a str>,
}

impl<'a> Nodes<'a> {
    fn len(&self) -> usize {
        self.manifests.len() + self.others.len()
    }

    /// The manifest `d`, if the repository holds it.
    fn manifest(&self, d: &str) -> Option<u32> {
        self.index
            .get(d)
            .copied()
            .filter(|&n| ix(n) < self.manifests.len())
    }

    /// The node of `d`, made if it is new.
    fn intern(&mut self, d: &'a str) -> u32 {
        let next = self.len() as u32;
        let n = *self.index.entry(d).or_insert(next);
        if n == next {
            self.others.push(d);
        }
        n
    }

    fn digest(&self, n: u32) -> &'a str {
        match self.manifests.get(ix(n)) {
            Some(m) => m.digest.as_str(),
            None => self.others[ix(n) - self.manifests.len()],
        }
    }
}

/// Something a rule may select: a tag (or [`NONE`] for an untagged
/// manifest) and the manifest.
struct Candidate {
    tag: u32,
    manifest: u32,
    pushed: i64,
    pulled: Option<i64>,
}

/// How a rule ranks the images it selects, by manifest position ([`NONE`]:
/// not ranked). The vectors are reused from rule to rule.
struct Ranks {
    /// Per manifest: the newest push and last pull of its candidates.
    latest: Vec<(i64, Option<i64>)>,
    push: Vec<u32>,
    pull: Vec<u32>,
    /// The manifests ranked, by push; then those pulled, by pull.
    by_push: Vec<u32>,
    by_pull: Vec<u32>,
}

impl Ranks {
    fn new(manifests: usize) -> Self {
        Ranks {
            latest: vec![(i64::MIN, None); manifests],
            push: vec![NONE; manifests],
            pull: vec![NONE; manifests],
            by_push: Vec::new(),
            by_pull: Vec::new(),
        }
    }

    /// Ranks `selected`; `order` is each manifest's rank by digest (both
    /// rankings sort by a total order, the digest last).
    fn rank(&mut self, selected: &[Candidate], order: &[u32]) {
        for c in selected {
            let m = ix(c.manifest);
            if self.push[m] == NONE {
                self.push[m] = 0;
                self.by_push.push(c.manifest);
            }
            let e = &mut self.latest[m];
            e.0 = e.0.max(c.pushed);
            e.1 = e.1.max(c.pulled);
        }
        let latest = &self.latest;
        let key = |m: &u32| (latest[ix(*m)], order[ix(*m)]);
        self.by_push.sort_unstable_by(|a, b| {
            let ((pa, _), da) = key(a);
            let ((pb, _), db) = key(b);
            pb.cmp(&pa).then(da.cmp(&db))
        });
        self.by_pull
            .extend(self.by_push.iter().filter(|m| latest[ix(**m)].1.is_some()));
        self.by_pull.sort_unstable_by(|a, b| {
            let ((pa, la), da) = key(a);
            let ((pb, lb), db) = key(b);
            lb.cmp(&la).then(pb.cmp(&pa)).then(da.cmp(&db))
        });
        for (i, &m) in self.by_push.iter().enumerate() {
            self.push[ix(m)] = i as u32;
        }
        for (i, &m) in self.by_pull.iter().enumerate() {
            self.pull[ix(m)] = i as u32;
        }
    }

    /// Back to no ranks, for the next rule.
    fn clear(&mut self) {
        for m in self.by_push.drain(..) {
            self.latest[ix(m)] = (i64::MIN, None);
            self.push[ix(m)] = NONE;
            self.pull[ix(m)] = NONE;
        }
        self.by_pull.clear();
    }
}

/// Whether `c` compares ranks (`last`, `last_pulled`).
fn ranked(c: &Condition) -> bool {
    match c {
        Condition::Last(_) | Condition::LastPulled(_) => true,
        Condition::All(v) | Condition::Any(v) => v.iter().any(ranked),
        Condition::Not(c) => ranked(c),
        _ => false,
    }
}

fn holds(c: &Condition, cand: &Candidate, r: &Ranks, now: i64) -> bool {
    let among = |rank: u32, n: usize| rank != NONE && ix(rank) < n;
    match c {
        Condition::Always => true,
        Condition::Last(n) => among(r.push[ix(cand.manifest)], *n),
        Condition::LastPulled(n) => among(r.pull[ix(cand.manifest)], *n),
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

/// Verdicts of all rules on a tag or an untagged manifest.
#[derive(Clone, Copy)]
struct Votes {
    kept: bool,
    /// The first rule deleting it ([`NONE`]: none).
    deleted_by: u32,
}

impl Votes {
    const NONE: Votes = Votes {
        kept: false,
        deleted_by: NONE,
    };

    /// The rule that deletes it, if one does and none keeps it.
    fn deleted(self) -> u32 {
        if self.kept {
            NONE
        } else {
            self.deleted_by
        }
    }
}

/// Positions `0..n` sorted by `key` (stable), unless they already are
/// (strictly: no key repeats).
fn order_by<'a>(n: usize, key: impl Fn(usize) -> &'a str) -> (Vec<u32>, bool) {
    let mut order: Vec<u32> = (0..n as u32).collect();
    let sorted = (1..n).all(|i| key(i - 1) < key(i));
    if !sorted {
        order.sort_by(|&a, &b| key(ix(a)).cmp(key(ix(b))));
    }
    (order, sorted)
}

/// Plans the deletions in `repo` at `now`.
///
/// [`berth_meta::Meta::inventory`] sorts tags by name and manifests by
/// digest; a hand-made inventory may come in push order: the items come in
/// the same order either way (sorting positions only when needed).
pub fn plan_repository(
    policy: &Policy,
    repo: &RepositoryName,
    inv: &Inventory,
    protected: &dyn Fn(&Tag) -> bool,
    now: i64,
) -> Vec<PlanItem> {
    let nm = inv.manifests.len();
    let nt = inv.tags.len();
    assert!(
        nm + nt + 2 * inv.references.len() < ix(NONE),
        "an inventory's positions fit in u32"
    );

    // 0. The graph, on positions.
    let mut nodes = Nodes {
        index: HashMap::with_capacity_and_hasher(nm, Default::default()),
        manifests: &inv.manifests,
        others: Vec::new(),
    };
    let mut repeated = false;
    for (i, m) in inv.manifests.iter().enumerate() {
        repeated |= nodes.index.insert(m.digest.as_str(), i as u32).is_some();
    }
    // The node of each position: itself, unless its digest comes again.
    let node_at: Vec<u32> = if repeated {
        inv.manifests
            .iter()
            .map(|m| nodes.index[m.digest.as_str()])
            .collect()
    } else {
        (0..nm as u32).collect()
    };
    // Each tag's manifest (NONE: the repository holds none).
    let mut tag_of = vec![NONE; nt];
    // Tag-schema referrer tags whose subject the repository holds.
    let mut attached = vec![false; nt];
    // Each manifest's subject (or the subject of a tag-schema tag on it).
    let mut subject_of = vec![NONE; nm];
    // (dependent, holder): index child -> index, referrer -> subject.
    let mut holds_pairs: Vec<(u32, u32)> = Vec::new();
    let mut buf = String::new();
    for (t, tag) in inv.tags.iter().enumerate() {
        let d = tag.digest.as_str();
        let m = nodes.manifest(d);
        tag_of[t] = m.unwrap_or(NONE);
        if let Some(s) = tag_subject(&tag.name, &mut buf).and_then(|s| nodes.manifest(s)) {
            attached[t] = true;
            let n = m.unwrap_or_else(|| nodes.intern(d));
            holds_pairs.push((n, s));
            if let Some(x) = subject_of.get_mut(ix(n)) {
                *x = s;
            }
        }
    }
    for (parent, child) in inv.children() {
        let p = nodes.intern(parent.as_str());
        let c = nodes.intern(child.as_str());
        holds_pairs.push((c, p));
    }
    for (i, m) in inv.manifests.iter().enumerate() {
        if let Some(s) = m.subject.as_ref().and_then(|s| nodes.manifest(s.as_str())) {
            holds_pairs.push((node_at[i], s));
            subject_of[ix(node_at[i])] = s;
        }
    }
    // Blobs, numbered in a map of their own; references come by parent
    // from the database, so consecutive ones share the parent's lookup.
    let mut blob_index: HashMap<&str, u32> = HashMap::default();
    let mut blob_refs: Vec<(u32, (u32, i64))> = Vec::with_capacity(inv.references.len());
    let mut last: Option<(&str, u32)> = None;
    for (parent, blob, size) in inv.blobs() {
        let p = match last {
            Some((d, n)) if d == parent.as_str() => n,
            _ => {
                let n = nodes.intern(parent.as_str());
                last = Some((parent.as_str(), n));
                n
            }
        };
        let next = blob_index.len() as u32;
        let b = *blob_index.entry(blob.as_str()).or_insert(next);
        blob_refs.push((p, (b, size)));
    }
    let n_nodes = nodes.len();
    let tags_of = Lists::new(
        nm,
        tag_of
            .iter()
            .enumerate()
            .filter(|(_, m)| **m != NONE)
            .map(|(t, &m)| (m, t as u32)),
    );
    holds_pairs.sort_unstable();
    holds_pairs.dedup();
    let holders = Lists::new(n_nodes, holds_pairs.iter().copied());
    let dependents = Lists::new(n_nodes, holds_pairs.iter().map(|&(d, h)| (h, d)));
    let blobs_of = Lists::new(n_nodes, blob_refs.iter().copied());
    // Manifest positions in digest order and each one's rank in it.
    let (by_digest, sorted) = order_by(nm, |i| inv.manifests[i].digest.as_str());
    let rank: Vec<u32> = if sorted {
        (0..nm as u32).collect()
    } else {
        let mut rank = vec![0; nm];
        for (r, &m) in by_digest.iter().enumerate() {
            rank[ix(m)] = r as u32;
        }
        rank
    };
    // Tag positions by name. A tag's verdicts are kept by the last tag of
    // its name (`canon`): names are unique in a stored inventory, a
    // hand-made one may repeat one.
    let (by_name, sorted) = order_by(nt, |i| inv.tags[i].name.as_str());
    let mut canon: Vec<u32> = (0..nt as u32).collect();
    if !sorted {
        for run in by_name.chunk_by(|&a, &b| inv.tags[ix(a)].name == inv.tags[ix(b)].name) {
            let last = run[run.len() - 1];
            for &t in run {
                canon[ix(t)] = last;
            }
        }
    }
    let prot: Vec<bool> = inv.tags.iter().map(|t| protected(&t.name)).collect();

    // 1. Verdicts. Each rule's two reasons, formatted once.
    let reasons: Vec<(String, String)> = policy
        .rules
        .iter()
        .map(|r| {
            let reason = if r.keeps {
                format!("not kept by: {}", r.condition)
            } else {
                r.condition.to_string()
            };
            let untagged = format!("untagged: {reason}");
            (reason, untagged)
        })
        .collect();
    let untagged_roots: Vec<usize> = (0..nm)
        .filter(|&i| tags_of.of(node_at[i]).is_empty() && holders.of(node_at[i]).is_empty())
        .collect();
    let mut tag_votes = vec![Votes::NONE; nt];
    let mut root_votes = vec![Votes::NONE; nm];
    let mut ranks = Ranks::new(nm);
    let mut selected: Vec<Candidate> = Vec::new();
    for (r, rule) in policy.rules.iter().enumerate().filter(|(_, r)| {
        r.repositories.is_empty() || r.repositories.iter().any(|s| glob::scope_covers(s, repo))
    }) {
        selected.clear();
        match &rule.select {
            Selector::Tags { include, exclude } => {
                selected.extend(inv.tags.iter().enumerate().filter_map(|(t, tag)| {
                    let name = tag.name.as_str();
                    let m = inv.manifests.get(ix(tag_of[t]))?;
                    (!attached[t]
                        && include.iter().any(|p| glob::matches(p, name))
                        && !exclude.iter().any(|p| glob::matches(p, name))
                        && types_match(rule, m))
                    .then_some(Candidate {
                        tag: t as u32,
                        manifest: tag_of[t],
                        pushed: tag.updated_at,
                        pulled: tag.last_pulled_at.max(m.last_pulled_at),
                    })
                }))
            }
            Selector::Untagged => selected.extend(
                untagged_roots
                    .iter()
                    .map(|&i| (i, &inv.manifests[i]))
                    .filter(|(_, m)| types_match(rule, m))
                    .map(|(i, m)| Candidate {
                        tag: NONE,
                        manifest: node_at[i],
                        pushed: m.pushed_at,
                        pulled: m.last_pulled_at,
                    }),
            ),
        }
        let ranked = ranked(&rule.condition);
        if ranked {
            ranks.rank(&selected, &rank);
        }
        for c in &selected {
            let keep = holds(&rule.condition, c, &ranks, now) == rule.keeps;
            let votes = match c.tag {
                NONE => &mut root_votes[ix(c.manifest)],
                t => &mut tag_votes[ix(canon[ix(t)])],
            };
            if keep {
                votes.kept = true;
            } else if votes.deleted_by == NONE {
                votes.deleted_by = r as u32;
            }
        }
        if ranked {
            ranks.clear();
        }
    }
    // The rule deleting each tag (by its canonical position) and each
    // untagged root, or NONE.
    let deleted_tag: Vec<u32> = tag_votes
        .iter()
        .zip(&prot)
        .map(|(v, &p)| if p { NONE } else { v.deleted() })
        .collect();
    let deleted_root: Vec<u32> = root_votes.iter().map(|v| v.deleted()).collect();
    let tag_deleted = |t: u32| deleted_tag[ix(canon[ix(t)])];

    // 2. What stays: everything reachable from the anchors.
    let mut kept = vec![false; n_nodes];
    let mut stack: Vec<u32> = Vec::new();
    for n in 0..nm as u32 {
        if node_at[ix(n)] != n {
            continue;
        }
        let tags = tags_of.of(n);
        let anchored = tags.iter().any(|&t| prot[ix(t)])
            || tags
                .iter()
                .any(|&t| !attached[ix(t)] && tag_deleted(t) == NONE)
            || (tags.is_empty() && holders.of(n).is_empty() && deleted_root[ix(n)] == NONE);
        if anchored {
            kept[ix(n)] = true;
            stack.push(n);
        }
    }
    while let Some(n) = stack.pop() {
        for &d in dependents.of(n) {
            if !kept[ix(d)] {
                kept[ix(d)] = true;
                stack.push(d);
            }
        }
    }

    // 3. The items: tags by name, then manifests level by level, holders
    // before dependents, each level in digest order.
    let rule_name = |r: u32| {
        policy
            .rules
            .get(ix(r))
            .map_or_else(String::new, |r| r.name.clone())
    };
    let mut items = Vec::new();
    for &t in &by_name {
        let r = deleted_tag[ix(t)];
        if r == NONE {
            continue;
        }
        let tag = &inv.tags[ix(t)];
        items.push(PlanItem {
            repository: repo.clone(),
            kind: ItemKind::Tag,
            tag: Some(tag.name.clone()),
            digest: tag.digest.clone(),
            rule: rule_name(r),
            reason: reasons[ix(r)].0.clone(),
            pushed_at: tag.updated_at,
            age_ms: now - tag.updated_at,
            last_pulled_at: tag.last_pulled_at,
            bytes: 0,
            tags: Vec::new(),
            subject: None,
        });
    }
    // Blobs: referenced by a kept manifest, or already counted.
    let mut blob_gone = vec![false; blob_index.len()];
    for &(m, (b, _)) in &blob_refs {
        if kept[ix(m)] {
            blob_gone[ix(b)] = true;
        }
    }
    // The rule behind each deleted manifest, for its dependents.
    let mut cause = vec![NONE; n_nodes];
    let mut emit = |n: u32| {
        let m = &inv.manifests[ix(n)];
        let tags = tags_of.of(n);
        let (rule, reason) =
            if let Some(r) = tags.iter().map(|&t| tag_deleted(t)).find(|&r| r != NONE) {
                (r, "its last tag was deleted".to_owned())
            } else if deleted_root[ix(n)] != NONE {
                let r = deleted_root[ix(n)];
                (r, reasons[ix(r)].1.clone())
            } else {
                // The first holder, by digest.
                let h = holders
                    .of(n)
                    .iter()
                    .copied()
                    .min_by_key(|&h| nodes.digest(h));
                let how = if subject_of[ix(n)] != NONE {
                    "referrer of"
                } else {
                    "listed only in"
                };
                (
                    h.map_or(NONE, |h| cause[ix(h)]),
                    format!("{how} deleted {}", h.map_or("", |h| nodes.digest(h))),
                )
            };
        cause[ix(n)] = rule;
        let mut bytes = m.size.max(0) as u64;
        for &(b, size) in blobs_of.of(n) {
            if !blob_gone[ix(b)] {
                blob_gone[ix(b)] = true;
                bytes += size.max(0) as u64;
            }
        }
        items.push(PlanItem {
            repository: repo.clone(),
            kind: ItemKind::Manifest,
            tag: None,
            digest: m.digest.clone(),
            rule: rule_name(rule),
            reason,
            pushed_at: m.pushed_at,
            age_ms: now - m.pushed_at,
            last_pulled_at: m.last_pulled_at,
            bytes,
            tags: tags
                .iter()
                .filter(|&&t| attached[ix(t)])
                .map(|&t| inv.tags[ix(t)].name.clone())
                .collect(),
            subject: inv
                .manifests
                .get(ix(subject_of[ix(n)]))
                .map(|s| s.digest.clone()),
        });
    };
    // Kahn's order, level by level: `waiting` counts a manifest's deleted
    // holders not yet emitted.
    let mut doomed = vec![false; n_nodes];
    for n in 0..nm as u32 {
        doomed[ix(n)] = node_at[ix(n)] == n && !kept[ix(n)];
    }
    let waiting_for = |n: u32| holders.of(n).iter().filter(|&&h| doomed[ix(h)]).count() as u32;
    let mut waiting: Vec<u32> = (0..nm as u32)
        .map(|n| if doomed[ix(n)] { waiting_for(n) } else { 0 })
        .collect();
    let mut level: Vec<u32> = by_digest
        .iter()
        .copied()
        .filter(|&n| doomed[ix(n)] && waiting[ix(n)] == 0)
        .collect();
    let mut next = Vec::new();
    while !level.is_empty() {
        for &n in &level {
            emit(n);
            doomed[ix(n)] = false;
            for &d in dependents.of(n) {
                if doomed[ix(d)] {
                    waiting[ix(d)] -= 1;
                    if waiting[ix(d)] == 0 {
                        next.push(d);
                    }
                }
            }
        }
        next.sort_unstable_by_key(|&n| rank[ix(n)]);
        std::mem::swap(&mut level, &mut next);
        next.clear();
    }
    // A cycle (impossible through content addresses, but a tag-schema tag
    // may name its own manifest) stalls the order: the rest, by digest.
    for &n in &by_digest {
        if doomed[ix(n)] {
            emit(n);
        }
    }
    items
}
