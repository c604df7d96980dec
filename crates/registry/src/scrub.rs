//! The integrity scrub: reads every blob the metadata names and checks
//! its digest and size, while clients push and pull.
//!
//! - **Paced, yielding to requests**: reads are limited to `scrub_rate`
//!   bytes per second while the server is idle, and to a tenth of it
//!   while it serves requests ([`Traffic`], counted by the listener), so
//!   a scrub never takes the disk, the CPU or the network from pulls, and
//!   still ends on a server that is never idle (`scrub/pace.rs`).
//! - **Resumable**: the pass walks the `blobs` rows in digest order and
//!   saves its cursor after every page (and when it is stopped); the next
//!   run goes on from there, and a pass that reached the end starts over.
//! - **Findings**: a blob that storage does not hold is *missing*; one
//!   whose bytes hash to another digest or have another size is *corrupt*
//!   and is set aside (`BlobStore::set_aside`: kept for inspection, never
//!   served again). Each finding names the images and tags it breaks,
//!   is counted in `berth_scrub_findings_total` and leaves a
//!   `scrub.finding` audit event.
//! - **Repair**: with a [`RepairSource`] (another registry holding the
//!   same content: a replica, the mirror's upstream), the blob is fetched
//!   by digest from one of the repositories that link it and stored again;
//!   the store verifies the digest while the bytes stream in, so a bad
//!   copy is never published.
//!
//! - **In the background**: blobs are hashed on a thread of their own at
//!   the lowest CPU priority ([`idle`]), so on a saturated machine the
//!   scrub slows down, not the requests.
//!
//! A run takes the `scrub` job lease, so one replica scrubs at a time.

mod idle;
mod pace;

use pace::Pace;
pub use pace::{Counted, Traffic, Uncounted, BUSY_SHARE};

use async_trait::async_trait;
use berth_meta::audit::action;
use berth_meta::{BlobUser, ScrubProgress};
use berth_metrics::{ScrubAction, ScrubProblem};
use berth_oci::{Digest, RepositoryName};
use berth_store::{BlobBody, ByteStream};
use futures_util::StreamExt as _;
use serde::Serialize;

use crate::{Caller, Registry, Result};

/// The job name of the scrub (lease and run history).
pub const SCRUB_JOB: &str = "scrub";

/// Blob rows read per page (the cursor is saved after each).
const PAGE: i64 = 200;

/// Findings listed in a report (the counts cover all).
const LISTED: usize = 1000;

/// Where a damaged or missing blob can be fetched again: another registry
/// that holds the same content. The binary implements it over the OCI
/// client; tests use their own.
#[async_trait]
pub trait RepairSource: Send + Sync + 'static {
    /// What to call the source in reports (its URL).
    fn describe(&self) -> String;

    /// Streams `digest` from `repository` of the source, or `None` if the
    /// source does not have it there. The error is a message for the
    /// report.
    async fn fetch(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> std::result::Result<Option<ByteStream>, String>;
}

/// What was wrong with a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Problem {
    /// Storage does not hold it.
    Missing,
    /// Its bytes are not what its digest and size say.
    Corrupt,
}

/// One damaged or missing blob.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// The blob.
    pub digest: Digest,
    /// Its size according to the metadata.
    pub size: u64,
    /// What was wrong.
    pub problem: Problem,
    /// What was found instead (the digest or size the bytes have).
    pub detail: String,
    /// Where the damaged bytes were moved.
    pub set_aside: Option<String>,
    /// The source a good copy came from, if it was repaired.
    pub repaired_from: Option<String>,
    /// Why a repair failed, if one was tried.
    pub repair_error: Option<String>,
    /// The images (and their tags) that need the blob.
    pub breaks: Vec<BlobUser>,
}

/// What one scrub run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ScrubReport {
    /// Where the run started (`None`: at the start of a pass).
    pub resumed_after: Option<Digest>,
    /// Blobs checked by this run.
    pub checked: u64,
    /// Bytes read by this run.
    pub bytes: u64,
    /// Whether the pass reached the last blob (otherwise it was stopped
    /// and the next run resumes).
    pub complete: bool,
    /// Findings (the first 1000).
    pub findings: Vec<Finding>,
    /// Missing blobs found.
    pub missing: u64,
    /// Corrupt blobs found.
    pub corrupt: u64,
    /// Findings repaired.
    pub repaired: u64,
    /// Bytes per second the run was held to while the server was idle
    /// (0: not limited); it read at a tenth of it while requests were
    /// served.
    pub rate: u64,
    /// Bytes read while the server was serving requests (other than the
    /// one that started this run), at a tenth of `rate`.
    pub bytes_busy: u64,
}

impl ScrubReport {
    /// The one-line summary for the job history and the log.
    pub fn summary(&self) -> serde_json::Value {
        serde_json::json!({
            "checked": self.checked,
            "bytes": self.bytes,
            "complete": self.complete,
            "missing": self.missing,
            "corrupt": self.corrupt,
            "repaired": self.repaired,
            "bytes_busy": self.bytes_busy,
        })
    }
}

/// One blob being hashed: on the idle thread, or inline without one.
enum Hashing<'a> {
    Idle(&'a idle::IdleHasher, bool),
    Inline(Box<berth_oci::Hasher>),
}

impl<'a> Hashing<'a> {
    async fn new(algorithm: berth_oci::Algorithm, idle: Option<&'a idle::IdleHasher>) -> Self {
        match idle {
            Some(h) => {
                let ok = h.start(algorithm).await;
                Hashing::Idle(h, ok)
            }
            None => Hashing::Inline(Box::new(algorithm.hasher())),
        }
    }

    async fn update(&mut self, chunk: bytes::Bytes) {
        match self {
            Hashing::Idle(h, ok) => *ok = *ok && h.update(chunk).await,
            Hashing::Inline(h) => h.update(&chunk),
        }
    }

    /// The digest; `None` if the idle thread went away.
    async fn finish(self) -> Option<Digest> {
        match self {
            Hashing::Idle(h, true) => h.finish().await,
            Hashing::Idle(_, false) => None,
            Hashing::Inline(h) => Some((*h).finish()),
        }
    }
}

/// What reading one blob found.
enum Check {
    Good,
    Missing,
    Corrupt(String),
}

impl Registry {
    /// The requests this registry's server is serving: the listener
    /// counts them here, and the scrub slows down while there are any.
    pub fn traffic(&self) -> &std::sync::Arc<Traffic> {
        &self.traffic
    }

    /// Sets where the scrub fetches good copies of damaged blobs.
    pub fn set_repair_source(&self, source: std::sync::Arc<dyn RepairSource>) {
        let _ = self.repair.set(source);
    }

    /// Runs the scrub if it is due at `now` (Unix ms): a pass was cut
    /// short (it resumes), or `scrub_interval` has passed since the last
    /// run started. `None`: not due, or no schedule.
    pub async fn due_scrub(&self, now: i64) -> Result<Option<ScrubReport>> {
        let Some(every) = self.settings.scrub_interval else {
            return Ok(None);
        };
        let resuming = self.meta.scrub_progress().await?.is_some();
        let last = self.meta.last_run(SCRUB_JOB).await?;
        let due = resuming || last.is_none_or(|r| r.started_at + every.as_millis() as i64 <= now);
        if !due {
            return Ok(None);
        }
        self.run_scrub(&Caller::system("scheduler"), None)
            .await
            .map(Some)
    }

    /// Runs the scrub until the pass ends or `max_blobs` blobs were
    /// checked (`None`: no limit), resuming the saved pass if there is one.
    /// Stops early, saving its place, when the registry stops. Fails with
    /// [`crate::Error::Conflict`] if a scrub is running already.
    pub async fn run_scrub(&self, caller: &Caller, max_blobs: Option<u64>) -> Result<ScrubReport> {
        let held = self.hold_job(SCRUB_JOB).await?;
        let run = match self.meta.start_run(SCRUB_JOB, berth_meta::now_ms()).await {
            Ok(run) => run,
            Err(e) => {
                held.release().await;
                return Err(e.into());
            }
        };
        let mut report = ScrubReport {
            rate: self.settings.scrub_rate,
            ..ScrubReport::default()
        };
        let mut pace = Pace::new(self.settings.scrub_rate, &self.traffic);
        let outcome = self
            .scrub_pass(&mut report, caller, max_blobs, &held, &mut pace)
            .await;
        report.bytes_busy = pace.busy_bytes;
        let summary = match &outcome {
            Ok(()) => report.summary(),
            Err(e) => {
                let mut s = report.summary();
                s["error"] = e.to_string().into();
                s
            }
        };
        let recorded = self
            .meta
            .finish_run(run, berth_meta::now_ms(), outcome.is_ok(), &summary)
            .await;
        held.release().await;
        outcome?;
        recorded?;
        tracing::info!(
            checked = report.checked,
            bytes = report.bytes,
            complete = report.complete,
            missing = report.missing,
            corrupt = report.corrupt,
            repaired = report.repaired,
            "scrub finished"
        );
        Ok(report)
    }

    async fn scrub_pass(
        &self,
        report: &mut ScrubReport,
        caller: &Caller,
        max_blobs: Option<u64>,
        held: &crate::jobs::Held<'_>,
        pace: &mut Pace<'_>,
    ) -> Result<()> {
        let mut progress = match self.meta.scrub_progress().await? {
            Some(p) => p,
            None => ScrubProgress {
                pass_started_at: berth_meta::now_ms(),
                ..ScrubProgress::default()
            },
        };
        report.resumed_after = progress.cursor.clone();
        let hasher = idle::IdleHasher::spawn();
        loop {
            let page = self
                .meta
                .blobs_after(progress.cursor.as_ref(), PAGE)
                .await?;
            if page.is_empty() {
                report.complete = true;
                self.meta.save_scrub_progress(None).await?;
                return Ok(());
            }
            for (digest, size) in page {
                if self.stop.is_cancelled() || max_blobs.is_some_and(|m| report.checked >= m) {
                    self.meta.save_scrub_progress(Some(progress)).await?;
                    return Ok(());
                }
                held.keep().await?;
                let check = self
                    .check_blob(&digest, size, pace, hasher.as_ref())
                    .await?;
                report.checked += 1;
                progress.checked += 1;
                match check {
                    Check::Good => {
                        report.bytes += size;
                        progress.bytes += size;
                    }
                    Check::Missing => {
                        self.finding(
                            report,
                            caller,
                            digest.clone(),
                            size,
                            Problem::Missing,
                            String::new(),
                        )
                        .await?
                    }
                    Check::Corrupt(detail) => {
                        self.finding(
                            report,
                            caller,
                            digest.clone(),
                            size,
                            Problem::Corrupt,
                            detail,
                        )
                        .await?
                    }
                }
                progress.cursor = Some(digest);
            }
            self.meta
                .save_scrub_progress(Some(progress.clone()))
                .await?;
        }
    }

    /// Reads the whole blob, paced, and hashes it: on the idle hashing
    /// thread when there is one, else here.
    async fn check_blob(
        &self,
        digest: &Digest,
        size: u64,
        pace: &mut Pace<'_>,
        idle: Option<&idle::IdleHasher>,
    ) -> Result<Check> {
        pace.ready().await;
        let Some(read) = self.store.read(digest, None).await? else {
            return Ok(Check::Missing);
        };
        let mut hashing = Hashing::new(digest.algorithm(), idle).await;
        let mut n = 0u64;
        match read.body {
            BlobBody::Bytes(b) => {
                n = b.len() as u64;
                pace.spent(n);
                hashing.update(b).await;
            }
            BlobBody::Stream(mut s) => loop {
                if n > 0 {
                    pace.ready().await;
                }
                let Some(chunk) = s.next().await else {
                    break;
                };
                let chunk = match chunk {
                    Ok(c) => c,
                    // The next blob's start resets the hasher.
                    Err(e) => return Ok(Check::Corrupt(format!("unreadable: {e}"))),
                };
                n += chunk.len() as u64;
                pace.spent(chunk.len() as u64);
                hashing.update(chunk).await;
            },
        }
        berth_metrics::get().scrub_checked(n);
        let Some(actual) = hashing.finish().await else {
            return Err(crate::Error::Internal(
                "the scrub's hashing thread stopped".into(),
            ));
        };
        if n != size {
            return Ok(Check::Corrupt(format!("{n} bytes instead of {size}")));
        }
        if &actual != digest {
            return Ok(Check::Corrupt(format!("content hashes to {actual}")));
        }
        Ok(Check::Good)
    }

    /// Handles one finding: sets a corrupt blob aside, tries a repair,
    /// records the metric and the audit event, adds it to the report.
    async fn finding(
        &self,
        report: &mut ScrubReport,
        caller: &Caller,
        digest: Digest,
        size: u64,
        problem: Problem,
        detail: String,
    ) -> Result<()> {
        let repositories = self.meta.blob_repositories(&digest).await?;
        let set_aside = match problem {
            Problem::Corrupt => self.store.set_aside(&digest).await?,
            Problem::Missing => None,
        };
        for r in &repositories {
            self.cache.invalidate_link(r, &digest);
        }
        let (repaired_from, repair_error) = self.repair(&digest, size, &repositories).await;
        let breaks = self.meta.blob_users(&digest).await?;
        let finding = Finding {
            digest,
            size,
            problem,
            detail,
            set_aside,
            repaired_from,
            repair_error,
            breaks,
        };
        let repaired = finding.repaired_from.is_some();
        berth_metrics::get().scrub_finding(
            match problem {
                Problem::Missing => ScrubProblem::Missing,
                Problem::Corrupt => ScrubProblem::Corrupt,
            },
            if repaired {
                ScrubAction::Repaired
            } else {
                ScrubAction::Unrepaired
            },
        );
        tracing::warn!(
            digest = %finding.digest,
            problem = ?problem,
            detail = %finding.detail,
            repaired,
            images = finding.breaks.len(),
            "scrub found a damaged blob"
        );
        let mut event = caller
            .actor()
            .event(action::SCRUB_FINDING)
            .digest(finding.digest.as_str())
            .detail(serde_json::to_value(&finding).unwrap_or_default());
        if let Some(first) = finding.breaks.first() {
            event = event.repository(first.repository.as_str());
        }
        self.meta.record_event(event).await?;
        match problem {
            Problem::Missing => report.missing += 1,
            Problem::Corrupt => report.corrupt += 1,
        }
        if repaired {
            report.repaired += 1;
        }
        if report.findings.len() < LISTED {
            report.findings.push(finding);
        }
        Ok(())
    }

    /// Fetches a good copy from the repair source, trying each repository
    /// that links the blob; returns the source, or why it failed.
    async fn repair(
        &self,
        digest: &Digest,
        size: u64,
        repositories: &[RepositoryName],
    ) -> (Option<String>, Option<String>) {
        let Some(source) = self.repair.get() else {
            return (None, None);
        };
        let mut errors = Vec::new();
        for repo in repositories {
            match source.fetch(repo, digest).await {
                Ok(None) => errors.push(format!("{repo}: not there")),
                Err(e) => errors.push(format!("{repo}: {e}")),
                Ok(Some(body)) => match self.store.put(digest, Some(size), body).await {
                    Ok(_) => return (Some(source.describe()), None),
                    Err(e) => errors.push(format!("{repo}: {e}")),
                },
            }
        }
        if errors.is_empty() {
            errors.push("no repository links the blob".to_owned());
        }
        (
            None,
            Some(format!("{}: {}", source.describe(), errors.join("; "))),
        )
    }
}
