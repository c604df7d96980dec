//! Online garbage collection: mark from metadata, sweep past a grace
//! period, while clients push and pull.
//!
//! The mark is the metadata itself: a blob is referenced by a repository
//! while a manifest of that repository lists it (`manifest_references`;
//! index children are manifests and reference their own blobs). Untagged
//! manifests are not garbage here; retention decides about them, and GC
//! then reclaims what they referenced. One run:
//!
//! 1. **Links**: a repository's blob links that no manifest of the
//!    repository references and that are older than the grace period are
//!    deleted. A link younger than that may belong to a push in flight (its
//!    blobs are uploaded before the manifest that references them). The
//!    delete re-checks both conditions under the repository's lock, and a
//!    manifest put re-checks its links under the same lock, so a push
//!    racing with the sweep either keeps its links or fails cleanly with
//!    `MANIFEST_BLOB_UNKNOWN` (the client pushes the blob again).
//! 2. **Blob rows**: a `blobs` row with no link left, older than the grace
//!    period, is deleted (re-checked in the deleting transaction; a
//!    concurrent link keeps it).
//! 3. **Files**: a stored blob with no `blobs` row whose file is older than
//!    the grace period is quarantined (moved out of sight), checked again
//!    (no row appeared, and the file was not re-published meanwhile, which
//!    refreshes its time), then deleted or put back. An upload finishing
//!    during the run either refreshed the file before the quarantine (the
//!    check sees it) or finds no file and publishes its own copy.
//! 4. **Uploads** idle for longer than the upload TTL are removed.
//!
//! A run takes the `gc` job lease, so one replica runs it at a time; a dry
//! run takes nothing and deletes nothing but reports the same lists.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_meta::audit::action;
use berth_oci::Digest;
use serde::Serialize;

use crate::{Caller, Registry, Result};

/// The job name of garbage collection (lease and run history).
pub const GC_JOB: &str = "gc";

/// A blob link or blob that a run removed (or would remove).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GcItem {
    /// The repository, for a link.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// The blob digest.
    pub digest: String,
    /// Its size in bytes.
    pub size: u64,
}

/// An abandoned upload session that a run removed (or would remove).
#[derive(Debug, Clone, Serialize)]
pub struct GcUpload {
    /// Session id.
    pub id: String,
    /// Its repository.
    pub repository: String,
    /// Bytes received.
    pub size: u64,
}

/// What a garbage collection run did, or would do in a dry run.
#[derive(Debug, Clone, Serialize)]
pub struct GcReport {
    /// Nothing was deleted.
    pub dry_run: bool,
    /// The run's clock (Unix ms).
    pub now: i64,
    /// Only content older than this was eligible (Unix ms).
    pub cutoff: i64,
    /// Blob links removed from repositories.
    pub links: Vec<GcItem>,
    /// Blobs deleted from storage.
    pub blobs: Vec<GcItem>,
    /// Abandoned uploads removed.
    pub uploads: Vec<GcUpload>,
    /// Storage reclaimed: deleted blobs plus removed uploads.
    pub reclaimed_bytes: u64,
    /// Unreferenced blobs kept because they are younger than the grace
    /// period (or were re-published during the run).
    pub kept_recent: usize,
}

impl GcReport {
    /// Counts and bytes, for the run history and the audit log.
    pub fn summary(&self) -> serde_json::Value {
        serde_json::json!({
            "dry_run": self.dry_run,
            "links": self.links.len(),
            "blobs": self.blobs.len(),
            "uploads": self.uploads.len(),
            "reclaimed_bytes": self.reclaimed_bytes,
            "kept_recent": self.kept_recent,
        })
    }
}

fn system_time(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

impl Registry {
    /// Runs garbage collection once with the clock at `now` (Unix ms).
    /// With `dry_run`, reports what would go and changes nothing.
    /// Otherwise records the run (job history and a `gc` audit event).
    /// Fails with [`crate::Error::Conflict`] if a run is in progress.
    pub async fn run_gc(&self, now: i64, dry_run: bool, caller: &Caller) -> Result<GcReport> {
        let grace = self.settings.gc_grace_period.as_millis() as i64;
        let mut report = GcReport {
            dry_run,
            now,
            cutoff: now - grace,
            links: Vec::new(),
            blobs: Vec::new(),
            uploads: Vec::new(),
            reclaimed_bytes: 0,
            kept_recent: 0,
        };
        if dry_run {
            self.gc_plan(&mut report).await?;
            return Ok(report);
        }
        let held = self.hold_job(GC_JOB).await?;
        // The history is on the run's clock, so that scheduling follows it.
        let started = std::time::Instant::now();
        let run = self.meta.start_run(GC_JOB, now).await?;
        let outcome = self.gc_sweep(&mut report, &held).await;
        let (ok, summary) = match &outcome {
            Ok(()) => (true, report.summary()),
            Err(e) => (false, serde_json::json!({ "error": e.to_string() })),
        };
        let finished = now + started.elapsed().as_millis() as i64;
        let recorded = self.meta.finish_run(run, finished, ok, &summary).await;
        held.release().await;
        outcome?;
        recorded?;
        let event = caller.actor().event(action::GC).detail(summary);
        self.meta.record_event(event).await?;
        tracing::info!(
            links = report.links.len(),
            blobs = report.blobs.len(),
            uploads = report.uploads.len(),
            bytes = report.reclaimed_bytes,
            "garbage collection finished"
        );
        Ok(report)
    }

    /// Fills a dry-run report.
    async fn gc_plan(&self, report: &mut GcReport) -> Result<()> {
        let cutoff = report.cutoff;
        report.links = self
            .meta
            .unreferenced_links(cutoff)
            .await?
            .into_iter()
            .map(item)
            .collect();
        let doomed: HashSet<String> = self
            .meta
            .unreferenced_blobs(cutoff)
            .await?
            .into_iter()
            .map(|b| b.digest)
            .collect();
        let rows = self.meta.blob_sizes().await?;
        for b in self.store.list().await? {
            let d = b.digest.to_string();
            if rows.contains_key(&d) && !doomed.contains(&d) {
                continue;
            }
            if b.modified < system_time(cutoff) {
                report.blobs.push(GcItem {
                    repository: None,
                    digest: d,
                    size: b.size,
                });
            } else {
                report.kept_recent += 1;
            }
        }
        report.uploads = self.abandoned_uploads(system_time(report.now)).await?;
        report.finish();
        Ok(())
    }

    /// Performs a run, filling `report` as it goes.
    async fn gc_sweep(&self, report: &mut GcReport, held: &crate::jobs::Held<'_>) -> Result<()> {
        let cutoff = report.cutoff;
        // 1. Links, one repository (and one lock) at a time.
        let mut by_repo: BTreeMap<String, Vec<berth_meta::Unreferenced>> = BTreeMap::new();
        for l in self.meta.unreferenced_links(cutoff).await? {
            by_repo
                .entry(l.repository.clone().unwrap_or_default())
                .or_default()
                .push(l);
        }
        for (n, (repo, seen)) in by_repo.into_iter().enumerate() {
            if n % 100 == 99 {
                held.renew().await?;
            }
            for d in self.meta.sweep_links(&repo, cutoff).await? {
                self.cache.invalidate_link(&repo, &d);
                let size = match seen.iter().find(|l| l.digest == d) {
                    Some(l) => l.size,
                    None => self.meta.blob(&d).await?.unwrap_or(0) as i64,
                };
                report.links.push(GcItem {
                    repository: Some(repo.clone()),
                    digest: d,
                    size: size.max(0) as u64,
                });
            }
        }
        held.renew().await?;
        // 2. Rows of blobs no repository links any more.
        let unlinked: Vec<String> = self
            .meta
            .unreferenced_blobs(cutoff)
            .await?
            .into_iter()
            .map(|b| b.digest)
            .collect();
        self.meta.sweep_blobs(&unlinked, cutoff).await?;
        held.renew().await?;
        // 3. Files without a row.
        let rows = self.meta.blob_sizes().await?;
        let old = system_time(cutoff);
        for (n, b) in self.store.list().await?.into_iter().enumerate() {
            if rows.contains_key(b.digest.as_str()) {
                continue;
            }
            if b.modified >= old {
                report.kept_recent += 1;
                continue;
            }
            if let Some(size) = self.collect_file(&b.digest, old).await? {
                report.blobs.push(GcItem {
                    repository: None,
                    digest: b.digest.to_string(),
                    size,
                });
            } else {
                report.kept_recent += 1;
            }
            if n % 1000 == 999 {
                held.renew().await?;
            }
        }
        // 4. Abandoned uploads.
        for u in self.abandoned_uploads(system_time(report.now)).await? {
            let cancelled = self.store.upload_cancel(&u.id).await;
            self.sessions
                .release(crate::glob::namespace(&u.repository), &u.id);
            if cancelled? {
                tracing::info!(upload = %u.id, repo = %u.repository, "removed abandoned upload");
                report.uploads.push(u);
            }
        }
        report.finish();
        Ok(())
    }

    /// Deletes the file of `digest` if, once out of sight, it is still
    /// unrecorded and older than `old`. Returns its size if it went.
    async fn collect_file(&self, digest: &Digest, old: SystemTime) -> Result<Option<u64>> {
        let Some(q) = self.store.quarantine(digest).await? else {
            return Ok(None);
        };
        let recorded = match self.meta.blob_recorded(digest.as_str()).await {
            Ok(r) => r,
            Err(e) => {
                self.store.release(digest, false).await?;
                return Err(e.into());
            }
        };
        let delete = !recorded && q.modified < old;
        self.store.release(digest, delete).await?;
        Ok(delete.then_some(q.size))
    }

    /// Upload sessions idle for longer than the upload TTL at `now`.
    pub(crate) async fn abandoned_uploads(&self, now: SystemTime) -> Result<Vec<GcUpload>> {
        Ok(self
            .store
            .upload_list()
            .await?
            .into_iter()
            .filter(|u| {
                now.duration_since(u.updated_at).unwrap_or_default() > self.settings.upload_ttl
            })
            .map(|u| GcUpload {
                id: u.id,
                repository: u.label,
                size: u.size,
            })
            .collect())
    }
}

impl GcReport {
    fn finish(&mut self) {
        self.reclaimed_bytes = self.blobs.iter().map(|b| b.size).sum::<u64>()
            + self.uploads.iter().map(|u| u.size).sum::<u64>();
    }
}

fn item(u: berth_meta::Unreferenced) -> GcItem {
    GcItem {
        repository: u.repository,
        digest: u.digest,
        size: u.size.max(0) as u64,
    }
}
