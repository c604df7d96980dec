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
//! 5. **Orphaned multipart uploads** in an object store (started by a
//!    replica that died before recording them) older than the upload TTL
//!    are aborted, so their parts stop costing storage.
//!
//! A run takes the `gc` job lease, so one replica runs it at a time; a dry
//! run takes nothing and deletes nothing but reports the same lists.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_meta::audit::action;
use berth_meta::{LinkAge, Unreferenced};
use berth_oci::{Digest, RepositoryName};
use serde::Serialize;

use crate::{Caller, Registry, Result};

/// The job name of garbage collection (lease and run history).
pub const GC_JOB: &str = "gc";

/// Rows and files read per page: the most a run holds in memory at once.
const PAGE: i64 = 1000;

/// Items listed per kind in a report; the counts and bytes cover all.
const LISTED: usize = 1000;

/// A blob link or blob that a run removed (or would remove).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GcItem {
    /// The repository, for a link.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository: Option<RepositoryName>,
    /// The blob digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
}

/// Unreferenced content the grace period still keeps, and until when.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GcHeld {
    /// The repository of a blob link; `None` for a stored blob that no
    /// repository links.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository: Option<RepositoryName>,
    /// The blob digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// When it becomes collectable (Unix ms).
    pub until: i64,
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

/// How many items of each kind a run saw (the lists stop at 1000).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct GcCounts {
    /// Blob links removed.
    pub links: usize,
    /// Blobs deleted from storage.
    pub blobs: usize,
    /// Abandoned uploads removed.
    pub uploads: usize,
    /// Orphaned multipart uploads aborted in the object store.
    pub orphaned_multipart: usize,
    /// Unreferenced links and blobs the grace period holds.
    pub held: usize,
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
    /// The grace period (`1h`).
    pub grace_period: String,
    /// Blob links removed from repositories (the first 1000).
    pub links: Vec<GcItem>,
    /// Blobs deleted from storage (the first 1000).
    pub blobs: Vec<GcItem>,
    /// Abandoned uploads removed (the first 1000).
    pub uploads: Vec<GcUpload>,
    /// Unreferenced content younger than the grace period, kept for now
    /// (the first 1000).
    pub held: Vec<GcHeld>,
    /// How many of each there were.
    pub counts: GcCounts,
    /// Storage reclaimed: deleted blobs plus removed uploads.
    pub reclaimed_bytes: u64,
    /// Bytes of the blobs the grace period holds (a blob linked from two
    /// repositories counts twice).
    pub held_bytes: u64,
    /// When the last of the held content becomes collectable (Unix ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_until: Option<i64>,
    /// Unreferenced blobs kept because they are younger than the grace
    /// period (or were re-published during the run).
    pub kept_recent: usize,
    /// The server began shutting down: the run stopped after its current
    /// step and did the rest of its work only in part.
    pub interrupted: bool,
}

impl GcReport {
    /// Counts and bytes, for the run history and the audit log.
    pub fn summary(&self) -> serde_json::Value {
        serde_json::json!({
            "dry_run": self.dry_run,
            "links": self.counts.links,
            "blobs": self.counts.blobs,
            "uploads": self.counts.uploads,
            "orphaned_multipart": self.counts.orphaned_multipart,
            "reclaimed_bytes": self.reclaimed_bytes,
            "held": self.counts.held,
            "held_bytes": self.held_bytes,
            "kept_recent": self.kept_recent,
            "interrupted": self.interrupted,
        })
    }

    fn add_link(&mut self, u: Unreferenced) {
        self.counts.links += 1;
        if self.links.len() < LISTED {
            self.links.push(GcItem {
                repository: u.repository,
                digest: u.digest,
                size: u.size.max(0) as u64,
            });
        }
    }

    fn add_blob(&mut self, digest: &Digest, size: u64) {
        self.counts.blobs += 1;
        self.reclaimed_bytes += size;
        if self.blobs.len() < LISTED {
            self.blobs.push(GcItem {
                repository: None,
                digest: digest.clone(),
                size,
            });
        }
    }

    fn add_upload(&mut self, u: GcUpload) {
        self.counts.uploads += 1;
        self.reclaimed_bytes += u.size;
        if self.uploads.len() < LISTED {
            self.uploads.push(u);
        }
    }

    fn hold(&mut self, held: GcHeld) {
        self.counts.held += 1;
        self.held_bytes += held.size;
        self.held_until = Some(self.held_until.unwrap_or(held.until).max(held.until));
        if self.held.len() < LISTED {
            self.held.push(held);
        }
    }
}

fn system_time(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Registry {
    /// Runs garbage collection once with the clock at `now` (Unix ms).
    /// With `dry_run`, reports what would go and what the grace period
    /// holds, and changes nothing. Otherwise records the run (job history
    /// and a `gc` audit event). Fails with [`crate::Error::Conflict`] if a
    /// run is in progress. When the registry is stopping
    /// ([`Registry::stop`]), a run ends after its current step, records
    /// itself as interrupted and gives its lease up.
    pub async fn run_gc(&self, now: i64, dry_run: bool, caller: &Caller) -> Result<GcReport> {
        let grace = self.settings.gc_grace_period;
        let mut report = GcReport {
            dry_run,
            now,
            cutoff: now - grace.as_millis() as i64,
            grace_period: berth_oci::duration::format(grace),
            links: Vec::new(),
            blobs: Vec::new(),
            uploads: Vec::new(),
            held: Vec::new(),
            counts: GcCounts::default(),
            reclaimed_bytes: 0,
            held_bytes: 0,
            held_until: None,
            kept_recent: 0,
            interrupted: false,
        };
        if dry_run {
            self.gc_plan(&mut report).await?;
            return Ok(report);
        }
        let held = self.hold_job(GC_JOB).await?;
        // The history is on the run's clock, so that scheduling follows it.
        let started = std::time::Instant::now();
        let run = match self.meta.start_run(GC_JOB, now).await {
            Ok(run) => run,
            Err(e) => {
                held.release().await;
                return Err(e.into());
            }
        };
        let outcome = self.gc_sweep(&mut report, &held).await;
        let (ok, summary) = match &outcome {
            Ok(()) => (!report.interrupted, report.summary()),
            Err(e) => {
                let mut summary = report.summary();
                summary["error"] = e.to_string().into();
                (false, summary)
            }
        };
        let finished = now + started.elapsed().as_millis() as i64;
        berth_metrics::get().job_run(berth_metrics::JobRun {
            job: berth_metrics::Job::Gc,
            success: ok,
            elapsed: started.elapsed(),
            deleted: &[
                ("link", report.counts.links as u64),
                ("blob", report.counts.blobs as u64),
                ("upload", report.counts.uploads as u64),
            ],
            reclaimed_bytes: report.reclaimed_bytes,
            now_unix: crate::observe::unix_now(),
        });
        let recorded = self.meta.finish_run(run, finished, ok, &summary).await;
        held.release().await;
        outcome?;
        recorded?;
        let event = caller.actor().event(action::GC).detail(summary);
        self.meta.record_event(event).await?;
        tracing::info!(
            links = report.counts.links,
            blobs = report.counts.blobs,
            uploads = report.counts.uploads,
            orphaned_multipart = report.counts.orphaned_multipart,
            bytes = report.reclaimed_bytes,
            interrupted = report.interrupted,
            "garbage collection finished"
        );
        Ok(report)
    }

    /// Whether the run must end now (the registry is stopping); marks the
    /// report.
    fn gc_stopping(&self, report: &mut GcReport) -> bool {
        if self.stop.is_cancelled() {
            if !report.interrupted {
                tracing::info!("shutting down: garbage collection stops after its current step");
            }
            report.interrupted = true;
        }
        report.interrupted
    }

    /// Fills a dry-run report, one page at a time.
    async fn gc_plan(&self, report: &mut GcReport) -> Result<()> {
        let cutoff = report.cutoff;
        let grace = self.settings.gc_grace_period.as_millis() as i64;
        for age in [LinkAge::Old, LinkAge::Young] {
            let mut after: Option<(RepositoryName, Digest)> = None;
            loop {
                let page = self
                    .meta
                    .unreferenced_links(age, cutoff, after.as_ref().map(|(r, d)| (r, d)), PAGE)
                    .await?;
                let Some(last) = page.last() else { break };
                // Links always name their repository.
                let Some(repo) = last.repository.clone() else {
                    break;
                };
                after = Some((repo, last.digest.clone()));
                let full = page.len() as i64 == PAGE;
                for u in page {
                    match age {
                        LinkAge::Old => report.add_link(u),
                        LinkAge::Young => report.hold(GcHeld {
                            until: u.at + grace,
                            repository: u.repository,
                            digest: u.digest,
                            size: u.size.max(0) as u64,
                        }),
                    }
                }
                if !full {
                    break;
                }
            }
        }
        let old = system_time(cutoff);
        let mut after: Option<Digest> = None;
        loop {
            let page = self.store.list(after.as_ref(), PAGE as usize).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.digest.clone());
            let digests: Vec<Digest> = page.iter().map(|b| b.digest.clone()).collect();
            let rows = self.meta.blob_rows(&digests, cutoff).await?;
            for b in &page {
                if rows.get(&b.digest) == Some(&false) {
                    continue;
                }
                if b.modified < old {
                    report.add_blob(&b.digest, b.size);
                } else {
                    report.kept_recent += 1;
                    report.hold(GcHeld {
                        repository: None,
                        digest: b.digest.clone(),
                        size: b.size,
                        until: unix_ms(b.modified) + grace,
                    });
                }
            }
        }
        for u in self.abandoned_uploads(system_time(report.now)).await? {
            report.add_upload(u);
        }
        Ok(())
    }

    /// Performs a run, filling `report` as it goes. Every step is one page
    /// of rows or one file; between steps the run looks whether the
    /// registry is stopping and keeps its lease alive.
    async fn gc_sweep(&self, report: &mut GcReport, held: &crate::jobs::Held<'_>) -> Result<()> {
        let cutoff = report.cutoff;
        // 1. Links, one repository (and one lock) at a time.
        let mut after_repo: Option<RepositoryName> = None;
        loop {
            if self.gc_stopping(report) {
                return Ok(());
            }
            let repos = self
                .meta
                .repositories_with_unreferenced_links(cutoff, after_repo.as_ref(), PAGE)
                .await?;
            let Some(last) = repos.last() else { break };
            after_repo = Some(last.clone());
            for repo in &repos {
                loop {
                    if self.gc_stopping(report) {
                        return Ok(());
                    }
                    let gone = self.meta.sweep_links(repo, cutoff, PAGE).await?;
                    let full = gone.len() as i64 == PAGE;
                    for u in gone {
                        self.cache.invalidate_link(repo, &u.digest);
                        report.add_link(u);
                    }
                    held.keep().await?;
                    if !full {
                        break;
                    }
                }
            }
        }
        // 2. Rows of blobs no repository links any more.
        let mut after: Option<Digest> = None;
        loop {
            if self.gc_stopping(report) {
                return Ok(());
            }
            let page = self
                .meta
                .unreferenced_blobs(cutoff, after.as_ref(), PAGE)
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.digest.clone());
            let digests: Vec<Digest> = page.into_iter().map(|b| b.digest).collect();
            self.meta.sweep_blobs(&digests, cutoff).await?;
            held.keep().await?;
        }
        // 3. Files without a row.
        let grace = self.settings.gc_grace_period.as_millis() as i64;
        let old = system_time(cutoff);
        let mut after: Option<Digest> = None;
        loop {
            if self.gc_stopping(report) {
                return Ok(());
            }
            let page = self.store.list(after.as_ref(), PAGE as usize).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.digest.clone());
            let digests: Vec<Digest> = page.iter().map(|b| b.digest.clone()).collect();
            let rows = self.meta.blob_rows(&digests, cutoff).await?;
            for b in page {
                if rows.contains_key(&b.digest) {
                    continue;
                }
                if self.gc_stopping(report) {
                    return Ok(());
                }
                if b.modified >= old {
                    report.kept_recent += 1;
                    report.hold(GcHeld {
                        repository: None,
                        digest: b.digest.clone(),
                        size: b.size,
                        until: unix_ms(b.modified) + grace,
                    });
                    continue;
                }
                match self.collect_file(&b.digest, old).await? {
                    Some(size) => report.add_blob(&b.digest, size),
                    None => report.kept_recent += 1,
                }
            }
            held.keep().await?;
        }
        // 4. Abandoned uploads.
        for u in self.abandoned_uploads(system_time(report.now)).await? {
            if self.gc_stopping(report) {
                return Ok(());
            }
            let cancelled = self.store.upload_cancel(&u.id).await;
            self.ledger_release(&u.id).await;
            if cancelled? {
                tracing::info!(upload = %u.id, repo = %u.repository, "removed abandoned upload");
                report.add_upload(u);
            }
        }
        // 5. Orphaned multipart uploads.
        if self.gc_stopping(report) {
            return Ok(());
        }
        // A store that cannot list its multipart uploads does not fail the
        // run: what it could not sweep waits for the next one (or the
        // bucket's lifecycle rule).
        match self
            .store
            .sweep_orphaned_uploads(self.settings.upload_ttl)
            .await
        {
            Ok(n) => report.counts.orphaned_multipart = n,
            Err(e) => {
                tracing::warn!(error = %e, "sweeping orphaned multipart uploads failed");
            }
        }
        Ok(())
    }

    /// Deletes the file of `digest` if, once out of sight, it is still
    /// unrecorded and older than `old`. Returns its size if it went.
    pub(crate) async fn collect_file(
        &self,
        digest: &Digest,
        old: SystemTime,
    ) -> Result<Option<u64>> {
        let Some(q) = self.store.quarantine(digest).await? else {
            return Ok(None);
        };
        let recorded = match self.meta.blob_recorded(digest).await {
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
