//! Inventories kept between reads ([`Meta::inventory`]), until this
//! process changes the repository.
//!
//! A repository's inventory is what the retention plan, the web UI's
//! rules page and its live plan preview, the tag listing of the management
//! API, the mirror's cache limit and replication read, often several times
//! a second for the same repository (the preview follows the policy as it
//! is typed). For 10,000 tags it is some 40,000 rows, most of a plan's
//! time (docs/benchmarks.md, "Web UI: server time per page").
//!
//! Only on SQLite, where this process is the database's only writer:
//! every write of a repository's tags, manifests or references goes
//! through a [`Meta`] method, which reports it here once it is committed
//! ([`InventoryCache::changed`]), and that drops the repository's copy; a flush of pull statistics counts its
//! pulls into the copy instead ([`InventoryCache::pulled`]), so that a
//! repository pulled all the time stays kept. The sizes of referenced
//! blobs come from the `blobs` table, which any repository's push fills:
//! an inventory listing a blob of unknown size (a manifest whose blob is
//! not stored yet) is not kept, and a blob row deleted by garbage
//! collection drops every copy ([`InventoryCache::changed_all`]), so a
//! blob push itself changes nothing kept. On PostgreSQL other replicas write too,
//! and the change notifications between them (`changes`) do not cover
//! manifest inserts or pull statistics, so nothing is kept there.
//!
//! A reader takes a ticket before it reads the database and offers what
//! it read with it; a copy is refused if its repository changed after the
//! ticket was taken, so a read that raced a write can never put back what
//! the write replaced (the same protocol as the registry's caches).
//!
//! [`Meta`]: crate::Meta
//! [`Meta::inventory`]: crate::Meta::inventory

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::Inventory;

/// Most rows (tags, manifests and references) kept over all repositories,
/// some 200 bytes each: past it, everything kept is dropped.
const MAX_ROWS: usize = 200_000;

/// Most repositories whose last change is remembered: past it, every
/// ticket taken before is refused (as if everything had changed).
const MAX_CHANGED: usize = 10_000;

/// See the module documentation.
pub(crate) struct InventoryCache {
    /// False on PostgreSQL: nothing is kept.
    on: bool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Bumped by every change.
    seq: u64,
    /// The `seq` of each repository's last change.
    changed: HashMap<String, u64>,
    /// The `seq` of the last change of every repository at once.
    all: u64,
    /// Kept inventories, by repository.
    kept: HashMap<String, Arc<Inventory>>,
    /// Rows in `kept`.
    rows: usize,
}

impl State {
    /// Records that `repo` changed now.
    fn note(&mut self, repo: &str) {
        self.seq += 1;
        let seq = self.seq;
        if self.changed.len() >= MAX_CHANGED && !self.changed.contains_key(repo) {
            self.changed.clear();
            self.all = seq;
        }
        self.changed.insert(repo.to_owned(), seq);
    }
}

fn rows(inv: &Inventory) -> usize {
    inv.tags.len() + inv.manifests.len() + inv.references.len() + 1
}

impl InventoryCache {
    /// A cache keeping inventories if `on`.
    pub(crate) fn new(on: bool) -> InventoryCache {
        InventoryCache {
            on,
            state: Mutex::default(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The kept inventory of `repo`.
    pub(crate) fn get(&self, repo: &str) -> Option<Arc<Inventory>> {
        if !self.on {
            return None;
        }
        self.state().kept.get(repo).cloned()
    }

    /// The ticket to pass to [`InventoryCache::fill`] for an inventory
    /// about to be read from the database.
    pub(crate) fn ticket(&self) -> u64 {
        self.state().seq
    }

    /// Keeps `inv`, read after `ticket` was taken, unless `repo` changed
    /// since.
    pub(crate) fn fill(&self, repo: &str, ticket: u64, inv: &Arc<Inventory>) {
        if !self.on {
            return;
        }
        let unknown_size = inv
            .references
            .iter()
            .any(|r| r.kind == crate::RefKind::Blob && r.blob_size.is_none());
        if unknown_size {
            return;
        }
        let mut s = self.state();
        if s.all > ticket || s.changed.get(repo).is_some_and(|&at| at > ticket) {
            return;
        }
        let n = rows(inv);
        if n > MAX_ROWS {
            return;
        }
        if s.rows + n > MAX_ROWS {
            s.kept.clear();
            s.rows = 0;
        }
        if let Some(old) = s.kept.insert(repo.to_owned(), inv.clone()) {
            s.rows -= rows(&old);
        }
        s.rows += n;
    }

    /// `repo`'s tags, manifests or references changed (called once the
    /// change is committed, or failed).
    pub(crate) fn changed(&self, repo: &str) {
        if !self.on {
            return;
        }
        let mut s = self.state();
        s.note(repo);
        if let Some(old) = s.kept.remove(repo) {
            s.rows -= rows(&old);
        }
    }

    /// `repo`'s pull statistics changed as `count` changes them (called
    /// once the change is committed): the kept inventory is counted in
    /// place (copied first if a reader holds it), so that a repository
    /// pulled all the time stays kept; reads that started before are
    /// refused as after any change.
    pub(crate) fn pulled(&self, repo: &str, count: impl FnOnce(&mut Inventory)) {
        if !self.on {
            return;
        }
        let mut s = self.state();
        s.note(repo);
        if let Some(inv) = s.kept.get_mut(repo) {
            count(Arc::make_mut(inv));
        }
    }

    /// Repositories were deleted (with their namespace), or blob rows.
    pub(crate) fn changed_all(&self) {
        if !self.on {
            return;
        }
        let mut s = self.state();
        s.seq += 1;
        s.all = s.seq;
        s.changed.clear();
        s.kept.clear();
        s.rows = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inv(tags: usize) -> Arc<Inventory> {
        let mut inv = Inventory::default();
        for i in 0..tags {
            inv.tags.push(crate::TagInfo {
                name: berth_oci::Tag::parse(format!("t{i}")).unwrap(),
                digest: berth_testkit::digests::digest("a"),
                updated_at: 0,
                pull_count: 0,
                last_pulled_at: None,
            });
        }
        Arc::new(inv)
    }

    #[test]
    fn a_read_that_raced_a_change_is_not_kept() {
        let c = InventoryCache::new(true);
        let before = c.ticket();
        c.changed("a/b");
        c.fill("a/b", before, &inv(1));
        assert!(c.get("a/b").is_none(), "read before the change");
        let after = c.ticket();
        c.fill("a/b", after, &inv(1));
        assert!(c.get("a/b").is_some(), "read after the change");
        // Another repository's change does not refuse it.
        let t = c.ticket();
        c.changed("x/y");
        c.fill("a/c", t, &inv(1));
        assert!(c.get("a/c").is_some());
    }

    #[test]
    fn a_change_drops_the_repository_and_a_deletion_everything() {
        let c = InventoryCache::new(true);
        let t = c.ticket();
        c.fill("a/b", t, &inv(1));
        c.fill("a/c", t, &inv(1));
        c.changed("a/b");
        assert!(c.get("a/b").is_none());
        assert!(c.get("a/c").is_some());
        let t = c.ticket();
        c.changed_all();
        assert!(c.get("a/c").is_none());
        c.fill("a/c", t, &inv(1));
        assert!(c.get("a/c").is_none(), "read before the deletion");
    }

    #[test]
    fn the_budget_and_the_change_log_are_bounded() {
        let c = InventoryCache::new(true);
        let t = c.ticket();
        c.fill("a/big", t, &inv(MAX_ROWS));
        assert!(c.get("a/big").is_none(), "larger than the budget");
        c.fill("a/half", t, &inv(MAX_ROWS / 2));
        c.fill("a/other", t, &inv(MAX_ROWS / 2));
        assert!(c.get("a/half").is_none(), "cleared to make room");
        assert!(c.get("a/other").is_some());
        assert_eq!(c.state().rows, MAX_ROWS / 2 + 1);

        let t = c.ticket();
        for i in 0..=MAX_CHANGED {
            c.changed(&format!("n/r{i}"));
        }
        assert!(c.state().changed.len() <= MAX_CHANGED);
        c.fill("n/untouched", t, &inv(1));
        assert!(
            c.get("n/untouched").is_none(),
            "a forgotten change log refuses every older ticket"
        );
    }

    #[test]
    fn pulls_are_counted_in_place_and_refuse_older_reads() {
        let c = InventoryCache::new(true);
        let t = c.ticket();
        let kept = inv(2);
        c.fill("a/b", t, &kept);
        // A reader holds the copy: it is copied, the reader's unchanged.
        c.pulled("a/b", |inv| inv.tags[0].pull_count += 3);
        assert_eq!(kept.tags[0].pull_count, 0);
        assert_eq!(c.get("a/b").unwrap().tags[0].pull_count, 3);
        assert_eq!(c.state().rows, 3, "the same rows");
        // A read that started before the pulls is not kept.
        c.fill("a/b", t, &inv(5));
        assert_eq!(c.get("a/b").unwrap().tags.len(), 2);
    }

    #[test]
    fn off_keeps_nothing() {
        let c = InventoryCache::new(false);
        let t = c.ticket();
        c.fill("a/b", t, &inv(1));
        assert!(c.get("a/b").is_none());
    }
}
