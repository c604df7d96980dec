//! In-memory caches on the pull path.
//!
//! Tag resolution, manifest bodies and blob links are served from memory
//! once seen. Writers invalidate after their transaction commits; readers
//! fill the cache only if no invalidation happened since they started
//! reading the database (an epoch checked under the map's lock), so a slow
//! reader can never put back a value a writer just replaced. Each map is
//! bounded: past its budget it is simply cleared.
//!
//! When other processes write the same database (replicas sharing a
//! PostgreSQL), any replica may move a tag, delete a manifest or unlink a
//! blob: the database notifies every replica of each such change on commit
//! and these caches drop the entries it names; while this process is not
//! listening they serve and keep nothing ([`Invalidation`], and
//! `docs/scale-out.md`).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use berth_oci::{Digest, RepositoryName, Tag};

use crate::invalidation::{Change, Invalidation, Subscriber};
use crate::manifests::ManifestEntry;

const MAX_TAGS: usize = 200_000;
const MAX_LISTED_TAGS: usize = 2_000_000;
const MAX_LINKS: usize = 500_000;
const MAX_MANIFEST_BYTES: usize = 64 * 1024 * 1024;

/// A two-level map `repository -> key -> value`, looked up without
/// allocating. Keys are the names' text: the typed accessors of
/// [`Caches`] take validated names and borrow their strings.
struct Nested<V> {
    map: RwLock<HashMap<String, HashMap<String, V>>>,
    gate: Invalidation,
    max: usize,
    weight: fn(&V) -> usize,
    used: std::sync::atomic::AtomicUsize,
    epoch: std::sync::atomic::AtomicU64,
}

impl<V: Clone> Nested<V> {
    fn new(gate: &Invalidation, max: usize, weight: fn(&V) -> usize) -> Self {
        Nested {
            map: RwLock::new(HashMap::new()),
            gate: gate.clone(),
            max,
            weight,
            used: 0.into(),
            epoch: 0.into(),
        }
    }

    /// The epoch to pass to [`Nested::fill`] for a value about to be read
    /// from the database.
    fn epoch(&self) -> u64 {
        self.epoch.load(std::sync::atomic::Ordering::Acquire)
    }

    fn get(&self, repo: &str, key: &str) -> Option<V> {
        if !self.gate.live() {
            return None;
        }
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        map.get(repo)?.get(key).cloned()
    }

    /// Caches `value` unless an invalidation happened since `epoch`.
    fn fill(&self, repo: &str, key: &str, value: V, epoch: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let w = (self.weight)(&value);
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        // Checked under the lock a reset takes: a fill that started before
        // the listener was lost (or back) is refused by the epoch.
        if self.epoch.load(std::sync::atomic::Ordering::Acquire) != epoch || !self.gate.live() {
            return;
        }
        if self.used.load(Relaxed) + w > self.max {
            map.clear();
            self.used.store(0, Relaxed);
        }
        self.used.fetch_add(w, Relaxed);
        map.entry(repo.to_owned())
            .or_default()
            .insert(key.to_owned(), value);
    }

    fn invalidate_repository(&self, repo: &str) {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        self.epoch.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        map.remove(repo);
    }

    fn clear(&self) {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        self.epoch.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        map.clear();
        self.used.store(0, std::sync::atomic::Ordering::Relaxed);
    }

    fn invalidate(&self, repo: &str, key: &str) {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        self.epoch.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        if let Some(inner) = map.get_mut(repo) {
            inner.remove(key);
        }
    }
}

fn one<V>(_: &V) -> usize {
    1
}

/// The caches of one [`crate::Registry`].
pub(crate) struct Caches {
    /// Tag -> the digest it points to.
    tags: Nested<Arc<Digest>>,
    /// Each repository's whole sorted tag list, under the key "".
    tag_lists: Nested<Arc<[String]>>,
    manifests: Nested<Arc<ManifestEntry>>,
    links: Nested<u64>,
}

impl Caches {
    /// The caches, on while `gate` is live; subscribed to it.
    pub(crate) fn new(gate: &Invalidation) -> Arc<Caches> {
        let caches = Arc::new(Caches {
            tags: Nested::new(gate, MAX_TAGS, one),
            tag_lists: Nested::new(gate, MAX_LISTED_TAGS, |l: &Arc<[String]>| l.len() + 1),
            manifests: Nested::new(gate, MAX_MANIFEST_BYTES, |m: &Arc<ManifestEntry>| {
                m.content.len() + 256
            }),
            links: Nested::new(gate, MAX_LINKS, one),
        });
        gate.subscribe(&caches);
        caches
    }

    /// A snapshot to pass to the `fill_*` methods.
    pub(crate) fn epoch(&self) -> Epoch {
        Epoch {
            tags: self.tags.epoch(),
            tag_lists: self.tag_lists.epoch(),
            manifests: self.manifests.epoch(),
            links: self.links.epoch(),
        }
    }

    pub(crate) fn tag(&self, repo: &RepositoryName, tag: &Tag) -> Option<Arc<Digest>> {
        self.tags.get(repo.as_str(), tag.as_str())
    }

    pub(crate) fn fill_tag(
        &self,
        repo: &RepositoryName,
        tag: &Tag,
        digest: Arc<Digest>,
        e: &Epoch,
    ) {
        self.tags.fill(repo.as_str(), tag.as_str(), digest, e.tags)
    }

    pub(crate) fn invalidate_tag(&self, repo: &RepositoryName, tag: &Tag) {
        self.tags.invalidate(repo.as_str(), tag.as_str());
        self.tag_lists.invalidate(repo.as_str(), "");
    }

    pub(crate) fn tag_list(&self, repo: &RepositoryName) -> Option<Arc<[String]>> {
        self.tag_lists.get(repo.as_str(), "")
    }

    pub(crate) fn fill_tag_list(&self, repo: &RepositoryName, list: Arc<[String]>, e: &Epoch) {
        self.tag_lists.fill(repo.as_str(), "", list, e.tag_lists)
    }

    pub(crate) fn manifest(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Option<Arc<ManifestEntry>> {
        self.manifests.get(repo.as_str(), digest.as_str())
    }

    pub(crate) fn fill_manifest(
        &self,
        repo: &RepositoryName,
        entry: Arc<ManifestEntry>,
        e: &Epoch,
    ) {
        let key = entry.digest.clone();
        self.manifests
            .fill(repo.as_str(), key.as_str(), entry, e.manifests)
    }

    pub(crate) fn invalidate_manifest(&self, repo: &RepositoryName, digest: &Digest) {
        self.manifests.invalidate(repo.as_str(), digest.as_str())
    }

    pub(crate) fn link(&self, repo: &RepositoryName, digest: &Digest) -> Option<u64> {
        self.links.get(repo.as_str(), digest.as_str())
    }

    pub(crate) fn fill_link(&self, repo: &RepositoryName, digest: &Digest, size: u64, e: &Epoch) {
        self.links
            .fill(repo.as_str(), digest.as_str(), size, e.links)
    }

    pub(crate) fn invalidate_link(&self, repo: &RepositoryName, digest: &Digest) {
        self.links.invalidate(repo.as_str(), digest.as_str())
    }

    /// Drops everything cached about `repo` (it was deleted).
    pub(crate) fn invalidate_repository(&self, repo: &RepositoryName) {
        let repo = repo.as_str();
        self.tags.invalidate_repository(repo);
        self.tag_lists.invalidate_repository(repo);
        self.manifests.invalidate_repository(repo);
        self.links.invalidate_repository(repo);
    }
}

impl Subscriber for Caches {
    fn changed(&self, change: &Change) {
        match change {
            Change::Tag(repo, tag) => self.invalidate_tag(repo, tag),
            Change::Manifest(repo, digest) => self.invalidate_manifest(repo, digest),
            Change::Link(repo, digest) => self.invalidate_link(repo, digest),
            Change::Repository(repo) => self.invalidate_repository(repo),
            Change::Accounts | Change::Table(_) | Change::Scan(..) => {}
        }
    }

    fn reset(&self) {
        self.tags.clear();
        self.tag_lists.clear();
        self.manifests.clear();
        self.links.clear();
    }
}

/// Cache epochs taken before a database read.
pub(crate) struct Epoch {
    tags: u64,
    tag_lists: u64,
    manifests: u64,
    links: u64,
}
