//! Running replication rules: one round of the replication worker.
//!
//! For each rule, a round first looks, reading only, whether it has work:
//! new outbox events (`manifest.pushed`, `tag.moved`) of repositories and
//! tags it selects (push rules with `on_push`), a run asked for on demand,
//! or its schedule fired since its last full pass; and whether a failed
//! attempt's backoff is over. Events it does not select just move its
//! cursor. With work, it takes the rule's lease (`replication:<id>`: one
//! replica runs a rule at a time; the others' rounds skip it), reads the
//! rule again (another replica may have done the work meanwhile), records
//! a run in the job history, copies each selected image through the
//! [`Transport`], and saves the outcome:
//!
//! - every copy succeeded: the cursor moves past the events handled, the
//!   failure count resets, a full pass is recorded (`last_sync_at`, which
//!   also answers a run on demand);
//! - some failed: the cursor stays before the first failed event, and the
//!   rule is tried again after a backoff (2 s, doubling, at most 5 min);
//!   after [`MAX_ATTEMPTS`] attempts the failed events are given up (the
//!   run says so; a full pass copies them later).
//!
//! Rules run concurrently within a round; the copies of one rule one after
//! the other, checking the stop signal between images.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use async_trait::async_trait;
use berth_meta::events::EventKind;
use berth_meta::replication::{Progress, ReplicationRule};
use berth_oci::{Digest, RepositoryName, Tag};
use serde::Serialize;
use serde_json::json;

use super::delete::{Deleted, Deletion};
use super::{job_name, selects_repository, selects_tag, Direction, Schedule};
use crate::worker::Stop;
use crate::{Error, Registry, Result};

/// What copies images between this registry and a rule's other registry.
#[async_trait]
pub trait Transport: Send + Sync {
    /// Copies `repository:tag` as the rule says (push: from here to there;
    /// pull: from there to here), every platform, digests preserved;
    /// nothing is transferred when the destination's tag already names
    /// the source's manifest. Errors are one line for the history.
    async fn copy(
        &self,
        rule: &ReplicationRule,
        repository: &RepositoryName,
        tag: &Tag,
    ) -> std::result::Result<Copied, String>;

    /// Copies manifest `digest` of `repository` from here to a push
    /// rule's registry, by digest, with what it references: a referrer
    /// (a signature, an SBOM) pushed without a tag after its image.
    /// Nothing is transferred when the destination has it.
    async fn copy_manifest(
        &self,
        rule: &ReplicationRule,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> std::result::Result<Copied, String> {
        let _ = (rule, repository);
        Err(format!(
            "{digest}: this replication transport does not copy manifests by digest"
        ))
    }

    /// The repositories of a pull rule's source (its catalog; or, when the
    /// rule names one repository exactly, that one).
    async fn remote_repositories(
        &self,
        rule: &ReplicationRule,
    ) -> std::result::Result<Vec<String>, String>;

    /// The tags of `repository` at a pull rule's source.
    async fn remote_tags(
        &self,
        rule: &ReplicationRule,
        repository: &RepositoryName,
    ) -> std::result::Result<Vec<String>, String>;

    /// Copies the referrers (signatures, SBOMs) of manifest `digest` of
    /// `repository`, and of its index children, from the rule's source to
    /// its destination, by digest; those the destination has are up to
    /// date. Returns each referrer with what was done.
    async fn copy_referrers(
        &self,
        rule: &ReplicationRule,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> std::result::Result<Vec<Copied>, String> {
        let _ = (rule, repository, digest);
        Ok(Vec::new())
    }

    /// Deletes at a push rule's registry what was deleted here
    /// ([`Deletion`]): a tag, or a manifest unless a tag the rule does not
    /// select names it there.
    async fn delete(
        &self,
        rule: &ReplicationRule,
        repository: &RepositoryName,
        deletion: &Deletion,
    ) -> std::result::Result<Deleted, String> {
        let _ = (rule, repository, deletion);
        Err("this replication transport does not delete".into())
    }
}

/// What one copy did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Copied {
    /// The image was copied; the digest of its top manifest.
    Copied(Digest),
    /// The destination already had it.
    UpToDate(Digest),
}

/// Attempts of the same events before they are given up.
pub const MAX_ATTEMPTS: i64 = 20;
/// The wait after the first failed attempt (doubling after each).
const RETRY_BASE: Duration = Duration::from_secs(2);
/// The longest wait between attempts.
const RETRY_MAX: Duration = Duration::from_secs(300);
/// Events read per round and rule.
const EVENT_BATCH: i64 = 1000;
/// Images listed by name in a run's summary, at most.
const LISTED: usize = 50;

/// The wait before attempt `failures + 1`.
fn backoff(failures: i64) -> Duration {
    let exp = u32::try_from(failures.clamp(1, 20) - 1).unwrap_or(0);
    RETRY_BASE
        .saturating_mul(2u32.saturating_pow(exp))
        .min(RETRY_MAX)
}

/// One image (a repository and tag) to copy or delete.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Item {
    pub(super) repository: String,
    pub(super) tag: String,
}

/// What a rule has to do now.
#[derive(Debug, Default)]
struct Work {
    /// Images from events, each with the id of the first event naming it.
    items: BTreeMap<Item, i64>,
    /// Referrers pushed by digest (`repository`, digest) of images the
    /// rule selects, each with the id of its event.
    referrers: BTreeMap<(String, String), i64>,
    /// Tags deleted here to delete at the target (push rules replicating
    /// deletions), each with the id of its event.
    tag_deletions: BTreeMap<Item, i64>,
    /// Manifests deleted here (`repository`, digest) to delete at the
    /// target, each with the id of its event.
    manifest_deletions: BTreeMap<(String, String), i64>,
    /// The newest event read.
    last_event: i64,
    /// A full pass is due (on demand or by schedule).
    full: bool,
    /// What started it: `on-demand`, `schedule`, `push`.
    triggers: Vec<&'static str>,
}

impl Work {
    fn is_empty(&self) -> bool {
        !self.full
            && self.items.is_empty()
            && self.referrers.is_empty()
            && self.tag_deletions.is_empty()
            && self.manifest_deletions.is_empty()
    }
}

/// What a round did with one rule.
#[derive(Debug, Clone, Serialize)]
pub struct RuleRun {
    /// The rule's name.
    pub rule: String,
    /// Whether every copy succeeded.
    pub ok: bool,
    /// The run's summary, as in the history.
    pub summary: serde_json::Value,
}

impl Registry {
    /// One round of replication at `now` (Unix ms): every rule with work
    /// runs (see the module's documentation). Returns the runs done; none
    /// when no transport is set.
    pub async fn replicate(&self, now: i64, stop: &Stop) -> Result<Vec<RuleRun>> {
        let Some(transport) = self.replication.get() else {
            return Ok(Vec::new());
        };
        let rules = self.meta.replication_rules().await?;
        let runs = futures_util::future::join_all(
            rules
                .into_iter()
                .map(|rule| self.replicate_rule(rule, now, transport.as_ref(), stop)),
        )
        .await;
        let mut out = Vec::new();
        for r in runs {
            match r {
                Ok(Some(run)) => out.push(run),
                Ok(None) | Err(Error::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// What `rule` has to do at `now`, reading only.
    async fn replication_work(&self, rule: &ReplicationRule, now: i64) -> Result<Work> {
        let mut work = Work {
            last_event: rule.event_cursor,
            ..Work::default()
        };
        if rule.run_requested_at.is_some() {
            work.full = true;
            work.triggers.push("on-demand");
        } else if let Some(s) = rule
            .schedule
            .as_deref()
            .and_then(|s| Schedule::parse(s).ok())
        {
            if s.due(rule.last_sync_at.unwrap_or(rule.created_at), now) {
                work.full = true;
                work.triggers.push("schedule");
            }
        }
        if rule.direction == Direction::Push.as_str() && rule.on_push {
            for e in self
                .meta
                .events_after(rule.event_cursor, EVENT_BATCH)
                .await?
            {
                work.last_event = e.id;
                if !matches!(
                    e.kind,
                    EventKind::ManifestPushed
                        | EventKind::TagMoved
                        | EventKind::TagDeleted
                        | EventKind::ManifestDeleted
                ) {
                    continue;
                }
                let Some(repository) = e.repository else {
                    continue;
                };
                let selected = RepositoryName::parse(repository.as_str())
                    .is_ok_and(|r| selects_repository(rule, &r));
                if !selected {
                    continue;
                }
                // A push names its tags in its data; a move, its tag; a
                // manifest deleted, the tags that went with it.
                let mut tags: Vec<String> = e
                    .data
                    .get("tags")
                    .and_then(|t| t.as_array())
                    .map(|a| {
                        a.iter()
                            .filter_map(|t| t.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                tags.extend(e.tag);
                if matches!(e.kind, EventKind::TagDeleted | EventKind::ManifestDeleted) {
                    work.note_deletion(rule, e.kind, repository, e.digest, tags, e.id);
                    continue;
                }
                if let Some(d) = &e.digest {
                    // Pushed again after a deletion: nothing to delete.
                    work.manifest_deletions
                        .remove(&(repository.clone(), d.clone()));
                }
                // No tag: a referrer (signature, SBOM) pushed by digest,
                // copied when a tag the rule selects reaches its subject.
                if tags.is_empty() && matches!(e.kind, EventKind::ManifestPushed) {
                    let digest = e.digest.as_deref().and_then(|d| Digest::parse(d).ok());
                    if let (Some(d), Ok(repo)) =
                        (digest, RepositoryName::parse(repository.as_str()))
                    {
                        if self.refers_to_selected_tag(rule, &repo, &d).await? {
                            work.referrers
                                .entry((repository.clone(), d.to_string()))
                                .or_insert(e.id);
                        }
                    }
                }
                for tag in tags {
                    if selects_tag(rule, &tag) {
                        let item = Item {
                            repository: repository.clone(),
                            tag,
                        };
                        work.tag_deletions.remove(&item);
                        work.items.entry(item).or_insert(e.id);
                    }
                }
            }
            if !work.items.is_empty() || !work.referrers.is_empty() {
                work.triggers.push("push");
            }
            if !work.tag_deletions.is_empty() || !work.manifest_deletions.is_empty() {
                work.triggers.push("deletion");
            }
        }
        Ok(work)
    }

    /// Whether manifest `digest` of `repo` has a subject that a tag the
    /// rule selects reaches (the tag names it, or an index listing it).
    async fn refers_to_selected_tag(
        &self,
        rule: &ReplicationRule,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<bool> {
        let Some(inv) = self.meta.inventory(repo).await? else {
            return Ok(false);
        };
        let Some(subject) = inv
            .manifests
            .iter()
            .find(|m| &m.digest == digest)
            .and_then(|m| m.subject.clone())
        else {
            return Ok(false);
        };
        let parents: Vec<&Digest> = inv
            .children()
            .filter(|(_, c)| **c == subject)
            .map(|(p, _)| p)
            .collect();
        Ok(inv.tags.iter().any(|t| {
            (t.digest == subject || parents.contains(&&t.digest))
                && selects_tag(rule, t.name.as_str())
        }))
    }

    async fn replicate_rule(
        &self,
        rule: ReplicationRule,
        now: i64,
        transport: &dyn Transport,
        stop: &Stop,
    ) -> Result<Option<RuleRun>> {
        if rule.run_requested_at.is_none() && rule.next_attempt_at > now {
            return Ok(None);
        }
        let work = self.replication_work(&rule, now).await?;
        if work.is_empty() {
            if work.last_event > rule.event_cursor {
                self.meta
                    .advance_replication_cursor(rule.id, work.last_event)
                    .await?;
            }
            return Ok(None);
        }
        let job = job_name(rule.id);
        let held = self.hold_job(&job).await?;
        // Another replica may have done it while this one looked.
        let rule = match self.meta.replication_rule(&rule.name).await? {
            Some(r) if r.id == rule.id => r,
            _ => return Ok(None),
        };
        let work = self.replication_work(&rule, now).await?;
        if work.is_empty() {
            return Ok(None);
        }
        let run = self.meta.start_run(&job, now).await?;
        let started = std::time::Instant::now();
        let outcome = self
            .replicate_work(&rule, &work, transport, stop, &held)
            .await;
        let finished = now + started.elapsed().as_millis() as i64;
        let (ok, summary, progress) = settle(&rule, &work, outcome, now, finished);
        let recorded = self.meta.finish_run(run, finished, ok, &summary).await;
        let saved = self
            .meta
            .save_replication_progress(rule.id, &progress)
            .await;
        held.release().await;
        recorded?;
        saved?;
        if ok {
            tracing::info!(rule = %rule.name, %summary, "replication run done");
        } else {
            tracing::warn!(rule = %rule.name, %summary, "replication run failed");
        }
        Ok(Some(RuleRun {
            rule: rule.name,
            ok,
            summary,
        }))
    }

    /// The images a full pass of `rule` copies.
    async fn full_pass_items(
        &self,
        rule: &ReplicationRule,
        transport: &dyn Transport,
    ) -> std::result::Result<Vec<Item>, String> {
        let mut items = Vec::new();
        let repositories: Vec<String> = match Direction::parse(&rule.direction) {
            Some(Direction::Pull) => transport.remote_repositories(rule).await?,
            _ => {
                let mut all = Vec::new();
                let mut last: Option<String> = None;
                loop {
                    let page = self
                        .repository_names(last.as_deref(), 1000)
                        .await
                        .map_err(|e| format!("listing the repositories here: {e}"))?;
                    let Some(end) = page.last().map(|r| r.to_string()) else {
                        break;
                    };
                    all.extend(page.into_iter().map(RepositoryName::into_string));
                    last = Some(end);
                }
                all
            }
        };
        for name in repositories {
            let Ok(repo) = RepositoryName::parse(name.as_str()) else {
                continue;
            };
            if !selects_repository(rule, &repo) {
                continue;
            }
            let tags = match Direction::parse(&rule.direction) {
                Some(Direction::Pull) => transport.remote_tags(rule, &repo).await?,
                _ => match self.tags(&repo, None, None).await {
                    Ok(page) => page.items().to_vec(),
                    Err(Error::NameUnknown(_)) => Vec::new(),
                    Err(e) => return Err(format!("listing the tags of {name} here: {e}")),
                },
            };
            for tag in tags {
                if selects_tag(rule, &tag) {
                    items.push(Item {
                        repository: name.clone(),
                        tag,
                    });
                }
            }
        }
        Ok(items)
    }

    async fn replicate_work(
        &self,
        rule: &ReplicationRule,
        work: &Work,
        transport: &dyn Transport,
        stop: &Stop,
        held: &crate::jobs::Held<'_>,
    ) -> Result<Outcome> {
        let mut out = Outcome::default();
        let mut items: BTreeMap<Item, Option<i64>> = work
            .items
            .iter()
            .map(|(i, e)| (i.clone(), Some(*e)))
            .collect();
        // What a full pass found at the source (its deletions need a
        // complete listing).
        let mut listed = None;
        if work.full {
            match self.full_pass_items(rule, transport).await {
                Ok(list) => {
                    for i in &list {
                        items.entry(i.clone()).or_insert(None);
                    }
                    listed = Some(list.into_iter().collect::<BTreeSet<Item>>());
                }
                Err(e) => out.pass_error = Some(e),
            }
        }
        let pull = Direction::parse(&rule.direction) == Some(Direction::Pull);
        for (item, event) in items {
            if stop.is_cancelled() {
                out.interrupted = true;
                out.note_failure(event, "interrupted: the server is stopping".into());
                continue;
            }
            held.keep().await?;
            let name = format!("{}:{}", item.repository, item.tag);
            let (repo, tag) = match (
                RepositoryName::parse(&item.repository),
                Tag::parse(&item.tag),
            ) {
                (Ok(r), Ok(t)) => (r, t),
                _ => {
                    out.skipped.push(name);
                    continue;
                }
            };
            let top = match transport.copy(rule, &repo, &tag).await {
                Ok(Copied::Copied(d)) => {
                    out.copied.push(format!("{name}@{d}"));
                    // What the rule put at its destination, for the
                    // deletions of its full passes.
                    if rule.replicate_deletions {
                        self.meta
                            .record_replicated_tag(rule.id, &repo, &tag, &d, crate::now_ms())
                            .await?;
                    }
                    d
                }
                Ok(Copied::UpToDate(d)) => {
                    out.up_to_date += 1;
                    d
                }
                Err(e) => {
                    out.note_failure(event, format!("{name}: {e}"));
                    continue;
                }
            };
            // Its signatures and SBOMs, by digest.
            match transport.copy_referrers(rule, &repo, &top).await {
                Ok(done) => {
                    for c in done {
                        match c {
                            Copied::Copied(d) => {
                                out.copied.push(format!("{}@{d}", item.repository))
                            }
                            Copied::UpToDate(_) => out.up_to_date += 1,
                        }
                    }
                }
                Err(e) => out.note_failure(event, format!("referrers of {name}: {e}")),
            }
        }
        // Referrers after the images they refer to.
        for ((repository, digest), event) in &work.referrers {
            let name = format!("{repository}@{digest}");
            if stop.is_cancelled() {
                out.interrupted = true;
                out.note_failure(Some(*event), "interrupted: the server is stopping".into());
                continue;
            }
            held.keep().await?;
            let (Ok(repo), Ok(d)) = (RepositoryName::parse(repository), Digest::parse(digest))
            else {
                out.skipped.push(name);
                continue;
            };
            match transport.copy_manifest(rule, &repo, &d).await {
                Ok(Copied::Copied(_)) => out.copied.push(name),
                Ok(Copied::UpToDate(_)) => out.up_to_date += 1,
                Err(e) => out.note_failure(Some(*event), format!("{name}: {e}")),
            }
        }
        let deletions = work
            .tag_deletions
            .iter()
            .filter_map(|(i, e)| {
                let tag = Tag::parse(&i.tag).ok()?;
                Some((i.repository.as_str(), Deletion::Tag(tag), *e))
            })
            .chain(work.manifest_deletions.iter().filter_map(|((r, d), e)| {
                Some((r.as_str(), Deletion::Manifest(Digest::parse(d).ok()?), *e))
            }));
        for (repository, deletion, event) in deletions {
            if stop.is_cancelled() {
                out.interrupted = true;
                out.note_failure(Some(event), "interrupted: the server is stopping".into());
                continue;
            }
            held.keep().await?;
            let Ok(repo) = RepositoryName::parse(repository) else {
                continue;
            };
            self.replicate_deletion(rule, transport, &repo, &deletion, Some(event), &mut out)
                .await?;
        }
        match (pull, rule.replicate_deletions, &listed) {
            (true, true, Some(listed)) => self.delete_gone_tags(rule, listed, &mut out).await?,
            (false, true, Some(listed)) => {
                self.delete_gone_at_target(rule, transport, listed, &mut out, held)
                    .await?
            }
            _ => {}
        }
        Ok(out)
    }
}

impl Work {
    /// Notes a deletion event (a tag, or a manifest with `tags`) of a
    /// repository the rule selects: what it deletes replaces an earlier
    /// copy of the same tag, and is replicated when the rule says so.
    fn note_deletion(
        &mut self,
        rule: &ReplicationRule,
        kind: EventKind,
        repository: String,
        digest: Option<String>,
        tags: Vec<String>,
        event: i64,
    ) {
        let selected: Vec<Item> = tags
            .iter()
            .filter(|t| selects_tag(rule, t))
            .map(|t| Item {
                repository: repository.clone(),
                tag: t.clone(),
            })
            .collect();
        for item in &selected {
            // Deleted after it was pushed: nothing left to copy.
            self.items.remove(item);
        }
        if !rule.replicate_deletions {
            return;
        }
        match (kind, digest) {
            (EventKind::TagDeleted, _) => {
                for item in selected {
                    self.tag_deletions.entry(item).or_insert(event);
                }
            }
            // A manifest with no tag, or with one the rule selects (one
            // with only other tags was never the rule's).
            (_, Some(d)) if tags.is_empty() || !selected.is_empty() => {
                self.manifest_deletions
                    .entry((repository, d))
                    .or_insert(event);
            }
            _ => {}
        }
    }
}

/// The run's outcome, summary and the rule's progress.
fn settle(
    rule: &ReplicationRule,
    work: &Work,
    outcome: Result<Outcome>,
    started: i64,
    finished: i64,
) -> (bool, serde_json::Value, Progress) {
    let out = match outcome {
        Ok(o) => o,
        Err(e) => Outcome {
            pass_error: Some(e.to_string()),
            failed_full_pass: true,
            ..Outcome::default()
        },
    };
    let failed = out.errors.len() + usize::from(out.pass_error.is_some());
    let attempt = rule.failures + 1;
    let mut summary = json!({
        "rule": rule.name,
        "direction": rule.direction,
        "trigger": work.triggers.join("+"),
        "copied": out.copied.len(),
        "up_to_date": out.up_to_date,
        "failed": failed,
        "images": out.copied.iter().take(LISTED).collect::<Vec<_>>(),
    });
    if let Some(o) = summary.as_object_mut() {
        if !out.skipped.is_empty() {
            o.insert("skipped".into(), json!(out.skipped));
        }
        if !out.deleted.is_empty() || !out.kept.is_empty() {
            o.insert("deleted".into(), json!(out.deleted.len()));
            o.insert(
                "deleted_images".into(),
                json!(out.deleted.iter().take(LISTED).collect::<Vec<_>>()),
            );
        }
        if !out.kept.is_empty() {
            o.insert(
                "kept".into(),
                json!(out.kept.iter().take(LISTED).collect::<Vec<_>>()),
            );
        }
    }
    if failed == 0 {
        return (
            true,
            summary,
            Progress {
                event_cursor: work.last_event,
                failures: 0,
                next_attempt_at: 0,
                last_error: None,
                synced_at: work.full.then_some(started),
            },
        );
    }
    let first_error = out
        .pass_error
        .clone()
        .or_else(|| out.errors.first().cloned())
        .unwrap_or_default();
    let give_up = attempt >= MAX_ATTEMPTS && !out.interrupted;
    let next = finished + backoff(attempt).as_millis() as i64;
    let obj = summary.as_object_mut();
    if let Some(o) = obj {
        o.insert("error".into(), json!(first_error));
        o.insert(
            "errors".into(),
            json!(out.errors.iter().take(LISTED).collect::<Vec<_>>()),
        );
        o.insert("attempt".into(), json!(attempt));
        if give_up {
            o.insert("given_up".into(), json!(true));
        } else {
            o.insert("next_attempt_at".into(), json!(next));
        }
    }
    let event_cursor = match (give_up, out.first_failed_event) {
        (false, Some(e)) => (e - 1).max(rule.event_cursor),
        _ => work.last_event,
    };
    let pass_failed = out.pass_error.is_some() || out.failed_full_pass || out.failed_without_event;
    (
        false,
        summary,
        Progress {
            event_cursor,
            failures: if give_up { 0 } else { attempt },
            next_attempt_at: if give_up { 0 } else { next },
            last_error: Some(first_error),
            synced_at: (work.full && (give_up || !pass_failed)).then_some(started),
        },
    )
}

/// What the copies of a run did.
#[derive(Debug, Default)]
pub(super) struct Outcome {
    copied: Vec<String>,
    pub(super) up_to_date: usize,
    skipped: Vec<String>,
    /// Deleted at the destination (`repo:tag`, `repo@digest`).
    pub(super) deleted: Vec<String>,
    /// Deletions not done, with why.
    pub(super) kept: Vec<String>,
    errors: Vec<String>,
    /// The oldest event whose image failed.
    first_failed_event: Option<i64>,
    /// An image of the full pass failed.
    failed_without_event: bool,
    failed_full_pass: bool,
    /// Listing what a full pass copies failed.
    pass_error: Option<String>,
    interrupted: bool,
}

impl Outcome {
    pub(super) fn note_failure(&mut self, event: Option<i64>, error: String) {
        match event {
            Some(e) => {
                self.first_failed_event = Some(self.first_failed_event.map_or(e, |f| f.min(e)))
            }
            None => self.failed_without_event = true,
        }
        self.errors.push(error);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        assert_eq!(backoff(1), Duration::from_secs(2));
        assert_eq!(backoff(2), Duration::from_secs(4));
        assert_eq!(backoff(5), Duration::from_secs(32));
        assert_eq!(backoff(12), RETRY_MAX);
        assert_eq!(backoff(1000), RETRY_MAX);
    }
}
