//! Pull statistics, counted in memory and flushed in batches.
//!
//! A manifest `GET` (not `HEAD`, like Docker Hub: HEADs are how clients
//! check for updates without pulling) counts one pull of the manifest and,
//! when it went through a tag, one of the tag. Counting must not slow the
//! pull path, so [`PullStats::record`] only bumps a counter in one of
//! [`SHARDS`] independently locked maps and never touches the database. The
//! shard is the calling thread's (assigned round-robin on first use), not
//! the key's: concurrent pulls of one hot tag then run on different locks,
//! and a key is merged across shards when read or flushed. The maps use a
//! small multiplicative hash (keys are names of stored tags and digests,
//! not arbitrary input), and a key seen since the last flush costs no
//! allocation. [`Registry::flush_pulls`]
//! (the background job's `run_once`) swaps the maps out and writes the
//! deltas in batched transactions; what fails to be written is put back
//! for the next flush. `berth serve` flushes on an interval and on
//! shutdown; a crash loses at most one interval of counts.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use berth_meta::{PullDelta, PullTarget};
use berth_oci::{Digest, Reference, RepositoryName, Tag};

use crate::{Registry, Result};

/// Number of independently locked maps.
pub const SHARDS: usize = 64;

/// Pulls of one manifest or tag since the last flush.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Count {
    /// How many.
    pub pulls: u64,
    /// When the latest happened (Unix ms).
    pub last_at: i64,
}

impl Count {
    fn add(&mut self, other: Count) {
        self.pulls += other.pulls;
        self.last_at = self.last_at.max(other.last_at);
    }
}

/// A fast non-cryptographic hash (the Fx multiply-rotate mix).
#[derive(Default, Clone, Copy)]
struct FxBuild;

struct Fx(u64);

impl BuildHasher for FxBuild {
    type Hasher = Fx;
    fn build_hasher(&self) -> Fx {
        Fx(0)
    }
}

impl Hasher for Fx {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word))
                .wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// `repository -> key (digest or tag) -> count`, looked up by the names'
/// text without allocating.
type Counts = HashMap<RepositoryName, HashMap<String, Count, FxBuild>, FxBuild>;

/// The next shard index handed to a thread.
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static THREAD_SHARD: usize = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
}

/// One shard, on cache lines of its own (no false sharing between the
/// locks of threads counting side by side).
#[derive(Default)]
#[repr(align(128))]
struct Shard {
    manifests: Counts,
    tags: Counts,
}

impl Shard {
    fn map(&mut self, target: PullTarget) -> &mut Counts {
        match target {
            PullTarget::Manifest => &mut self.manifests,
            PullTarget::Tag => &mut self.tags,
        }
    }
}

fn bump(map: &mut Counts, repo: &RepositoryName, key: &str, c: Count) {
    // The hot path (a key seen since the last flush) allocates nothing.
    if let Some(e) = map.get_mut(repo.as_str()).and_then(|m| m.get_mut(key)) {
        e.add(c);
        return;
    }
    map.entry(repo.clone())
        .or_default()
        .entry(key.to_owned())
        .or_default()
        .add(c);
}

/// The in-memory accumulator.
pub struct PullStats {
    shards: Box<[Mutex<Shard>]>,
}

impl Default for PullStats {
    fn default() -> Self {
        PullStats {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }
}

impl PullStats {
    /// This thread's shard.
    fn shard(&self) -> std::sync::MutexGuard<'_, Shard> {
        let i = THREAD_SHARD.with(|i| *i);
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts one pull of `digest` in `repo` at `now` (Unix ms), through
    /// `tag` if it was pulled by tag.
    pub fn record(&self, repo: &RepositoryName, tag: Option<&Tag>, digest: &Digest, now: i64) {
        let one = Count {
            pulls: 1,
            last_at: now,
        };
        let mut shard = self.shard();
        bump(&mut shard.manifests, repo, digest.as_str(), one);
        if let Some(t) = tag {
            bump(&mut shard.tags, repo, t.as_str(), one);
        }
    }

    /// Takes everything counted so far, merged across shards, as deltas to
    /// write.
    fn take(&self) -> Vec<(PullTarget, PullDelta)> {
        let mut merged = Shard::default();
        for shard in self.shards.iter() {
            let taken = std::mem::take(&mut *shard.lock().unwrap_or_else(|p| p.into_inner()));
            for (target, map) in [
                (PullTarget::Manifest, taken.manifests),
                (PullTarget::Tag, taken.tags),
            ] {
                for (repository, keys) in map {
                    for (key, c) in keys {
                        bump(merged.map(target), &repository, &key, c);
                    }
                }
            }
        }
        let mut out = Vec::new();
        for (target, map) in [
            (PullTarget::Manifest, merged.manifests),
            (PullTarget::Tag, merged.tags),
        ] {
            for (repository, keys) in map {
                for (key, c) in keys {
                    out.push((
                        target,
                        PullDelta {
                            repository: repository.clone(),
                            key,
                            pulls: c.pulls,
                            last_pulled_at: c.last_at,
                        },
                    ));
                }
            }
        }
        out
    }

    /// Puts back deltas that could not be written.
    fn restore(&self, deltas: Vec<(PullTarget, PullDelta)>) {
        let mut shard = self.shard();
        for (target, d) in deltas {
            let c = Count {
                pulls: d.pulls,
                last_at: d.last_pulled_at,
            };
            bump(shard.map(target), &d.repository, &d.key, c);
        }
    }

    /// What is counted for `repo` and not yet flushed: per manifest digest
    /// and per tag.
    pub fn pending(
        &self,
        repo: &RepositoryName,
    ) -> (HashMap<String, Count>, HashMap<String, Count>) {
        let (mut manifests, mut tags) = (HashMap::new(), HashMap::new());
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            for (src, dst) in [(&shard.manifests, &mut manifests), (&shard.tags, &mut tags)] {
                if let Some(keys) = src.get(repo.as_str()) {
                    for (k, c) in keys {
                        dst.entry(k.clone()).or_insert_with(Count::default).add(*c);
                    }
                }
            }
        }
        (manifests, tags)
    }
}

impl Registry {
    /// Counts a manifest GET (see the module documentation). The
    /// `berth_pulls_total` metric is counted by the caller, which knows the
    /// size ([`berth_metrics::Metrics::pulled`]).
    pub fn record_pull(&self, repo: &RepositoryName, reference: &Reference, digest: &Digest) {
        let tag = match reference {
            Reference::Tag(t) => Some(t),
            Reference::Digest(_) => None,
        };
        self.pulls.record(repo, tag, digest, berth_meta::now_ms());
    }

    /// Writes the pulls counted so far to the database (the flush job's
    /// `run_once`). Returns how many manifest and tag rows were updated.
    /// On failure the unwritten counts are kept for the next flush.
    pub async fn flush_pulls(&self) -> Result<usize> {
        let mut deltas = self.pulls.take();
        let n = deltas.len();
        if n == 0 {
            return Ok(0);
        }
        let events = if self.webhooks_want_pulls() {
            pull_events(&deltas)
        } else {
            Vec::new()
        };
        match self.meta.add_pulls(&mut deltas).await {
            Ok(()) => {
                if !events.is_empty() {
                    if let Err(e) = self.meta.publish_events(events).await {
                        tracing::warn!(error = %e, "publishing pull events failed");
                    }
                }
                Ok(n)
            }
            Err(e) => {
                tracing::warn!(error = %e, unwritten = deltas.len(), "flushing pull statistics failed; kept for the next flush");
                self.pulls.restore(deltas);
                Err(e.into())
            }
        }
    }

    /// The in-memory pull counter (pending counts for the API).
    pub fn pull_stats(&self) -> &PullStats {
        &self.pulls
    }
}

/// A repository's manifest and tag counts, latest pull time and total.
type RepoPulls = (Vec<serde_json::Value>, Vec<serde_json::Value>, i64, u64);

/// The `pulled` events of a flush: one per repository, with the counts of
/// each manifest and tag pulled since the last flush. Webhooks that want
/// pulls get them batched like this, never one request per pull.
fn pull_events(deltas: &[(PullTarget, PullDelta)]) -> Vec<berth_meta::events::NewEvent> {
    use berth_meta::events::{EventKind, NewEvent};
    let mut by_repo: std::collections::BTreeMap<&RepositoryName, RepoPulls> = Default::default();
    for (target, d) in deltas {
        let e = by_repo.entry(&d.repository).or_default();
        let (key, list) = match target {
            PullTarget::Manifest => ("digest", &mut e.0),
            PullTarget::Tag => ("tag", &mut e.1),
        };
        list.push(
            serde_json::json!({ key: d.key, "pulls": d.pulls, "last_pulled_at": d.last_pulled_at }),
        );
        e.2 = e.2.max(d.last_pulled_at);
        if *target == PullTarget::Manifest {
            e.3 += d.pulls;
        }
    }
    by_repo
        .into_iter()
        .map(|(repo, (manifests, tags, last, pulls))| {
            let mut event = NewEvent::new(EventKind::Pulled, "system", last);
            event.repository = Some(repo.clone());
            event.data =
                serde_json::json!({ "pulls": pulls, "manifests": manifests, "tags": tags });
            event
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_testkit::digests::digest;

    fn n(name: &str) -> RepositoryName {
        RepositoryName::parse(name).unwrap()
    }

    fn t(tag: &str) -> Tag {
        Tag::parse(tag).unwrap()
    }

    #[test]
    fn counts_merge_and_drain() {
        let s = PullStats::default();
        s.record(&n("a/b"), Some(&t("v1")), &digest("sha256:1"), 10);
        s.record(&n("a/b"), Some(&t("v1")), &digest("sha256:1"), 30);
        s.record(&n("a/b"), None, &digest("sha256:1"), 20);
        s.record(&n("a/c"), Some(&t("v1")), &digest("sha256:2"), 5);
        let (m, t) = s.pending(&n("a/b"));
        assert_eq!(
            m[digest("sha256:1").as_str()],
            Count {
                pulls: 3,
                last_at: 30
            }
        );
        assert_eq!(
            t["v1"],
            Count {
                pulls: 2,
                last_at: 30
            }
        );
        let mut taken = s.take();
        taken.sort_by(|a, b| (&a.1.repository, &a.1.key).cmp(&(&b.1.repository, &b.1.key)));
        assert_eq!(taken.len(), 4);
        assert_eq!(taken[0].1.pulls, 3, "one delta per key");
        assert!(s.pending(&n("a/b")).0.is_empty(), "take drains");
        s.restore(taken);
        s.record(&n("a/b"), None, &digest("sha256:1"), 1);
        assert_eq!(
            s.pending(&n("a/b")).0[digest("sha256:1").as_str()],
            Count {
                pulls: 4,
                last_at: 30
            }
        );
    }

    #[test]
    fn concurrent_records_are_all_counted() {
        let s = std::sync::Arc::new(PullStats::default());
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let s = s.clone();
                std::thread::spawn(move || {
                    let (repo, tag, d) = (n("r"), t("latest"), digest("sha256:x"));
                    for k in 0..1000 {
                        s.record(&repo, Some(&tag), &d, i * 1000 + k);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let (m, t) = s.pending(&n("r"));
        assert_eq!(m[digest("sha256:x").as_str()].pulls, 4000);
        assert_eq!(
            t["latest"],
            Count {
                pulls: 4000,
                last_at: 3999
            }
        );
    }
}
