//! Pull statistics, counted in memory and flushed in batches.
//!
//! A manifest `GET` (not `HEAD`, like Docker Hub: HEADs are how clients
//! check for updates without pulling) counts one pull of the manifest and,
//! when it went through a tag, one of the tag. Counting must not slow the
//! pull path, so [`PullStats::record`] only bumps a counter in one of
//! [`SHARDS`] independently locked maps (chosen by a hash of repository and
//! key, so concurrent pulls of one hot tag and of its manifest rarely meet
//! on a lock) and never touches the database. [`Registry::flush_pulls`]
//! (the background job's `run_once`) swaps the maps out and writes the
//! deltas in batched transactions; what fails to be written is put back
//! for the next flush. `berth serve` flushes on an interval and on
//! shutdown; a crash loses at most one interval of counts.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;

use berth_meta::{PullDelta, PullTarget};

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

/// `repository -> key -> count`, looked up without allocating.
type Counts = HashMap<String, HashMap<String, Count>>;

#[derive(Default)]
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

fn bump(map: &mut Counts, repo: &str, key: &str, c: Count) {
    // The hot path (a key seen since the last flush) allocates nothing.
    if let Some(e) = map.get_mut(repo).and_then(|m| m.get_mut(key)) {
        e.add(c);
        return;
    }
    map.entry(repo.to_owned())
        .or_default()
        .entry(key.to_owned())
        .or_default()
        .add(c);
}

/// The in-memory accumulator.
pub struct PullStats {
    shards: Box<[Mutex<Shard>]>,
    hasher: std::collections::hash_map::RandomState,
}

impl Default for PullStats {
    fn default() -> Self {
        PullStats {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: Default::default(),
        }
    }
}

impl PullStats {
    fn shard(&self, repo: &str, key: &str) -> std::sync::MutexGuard<'_, Shard> {
        let i = self.hasher.hash_one((repo, key)) as usize % SHARDS;
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    fn add(&self, target: PullTarget, repo: &str, key: &str, c: Count) {
        bump(self.shard(repo, key).map(target), repo, key, c);
    }

    /// Counts one pull of `digest` in `repo` at `now` (Unix ms), through
    /// `tag` if it was pulled by tag.
    pub fn record(&self, repo: &str, tag: Option<&str>, digest: &str, now: i64) {
        let one = Count {
            pulls: 1,
            last_at: now,
        };
        self.add(PullTarget::Manifest, repo, digest, one);
        if let Some(t) = tag {
            self.add(PullTarget::Tag, repo, t, one);
        }
    }

    /// Takes everything counted so far, as deltas to write.
    fn take(&self) -> Vec<(PullTarget, PullDelta)> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let taken = std::mem::take(&mut *shard.lock().unwrap_or_else(|p| p.into_inner()));
            for (target, map) in [
                (PullTarget::Manifest, taken.manifests),
                (PullTarget::Tag, taken.tags),
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
        }
        out
    }

    /// Puts back deltas that could not be written.
    fn restore(&self, deltas: Vec<(PullTarget, PullDelta)>) {
        for (target, d) in deltas {
            let c = Count {
                pulls: d.pulls,
                last_at: d.last_pulled_at,
            };
            self.add(target, &d.repository, &d.key, c);
        }
    }

    /// What is counted for `repo` and not yet flushed: per manifest digest
    /// and per tag.
    pub fn pending(&self, repo: &str) -> (HashMap<String, Count>, HashMap<String, Count>) {
        let (mut manifests, mut tags) = (HashMap::new(), HashMap::new());
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            for (src, dst) in [(&shard.manifests, &mut manifests), (&shard.tags, &mut tags)] {
                if let Some(keys) = src.get(repo) {
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
    /// Counts a manifest GET (see the module documentation).
    pub fn record_pull(&self, repo: &str, reference: &berth_oci::Reference, digest: &str) {
        let tag = match reference {
            berth_oci::Reference::Tag(t) => Some(t.as_str()),
            berth_oci::Reference::Digest(_) => None,
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
        match self.meta.add_pulls(&mut deltas).await {
            Ok(()) => Ok(n),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_merge_and_drain() {
        let s = PullStats::default();
        s.record("a/b", Some("v1"), "sha256:1", 10);
        s.record("a/b", Some("v1"), "sha256:1", 30);
        s.record("a/b", None, "sha256:1", 20);
        s.record("a/c", Some("v1"), "sha256:2", 5);
        let (m, t) = s.pending("a/b");
        assert_eq!(
            m["sha256:1"],
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
        assert!(s.pending("a/b").0.is_empty(), "take drains");
        s.restore(taken);
        s.record("a/b", None, "sha256:1", 1);
        assert_eq!(
            s.pending("a/b").0["sha256:1"],
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
                    for n in 0..1000 {
                        s.record("r", Some("latest"), "sha256:x", i * 1000 + n);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let (m, t) = s.pending("r");
        assert_eq!(m["sha256:x"].pulls, 4000);
        assert_eq!(
            t["latest"],
            Count {
                pulls: 4000,
                last_at: 3999
            }
        );
    }
}
