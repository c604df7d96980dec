//! Retention policies: which tags and manifests to delete, per namespace,
//! previewed as a plan and applied on demand or on a schedule.
//!
//! A namespace has at most one policy, stored as its TOML text
//! ([`policy`]; format in `docs/retention.md`). [`Registry::retention_plan`]
//! evaluates it ([`plan`]) over every repository of the namespace;
//! [`Registry::apply_retention`] computes the plan afresh and carries it
//! out, each deletion re-checking under the repository lock that nothing
//! changed since (a tag moved, a new tag, an index now listing the
//! manifest, a rule now protecting the tag) and recording a
//! `retention.delete` audit event. Protected tags, children of kept
//! indexes and referrers of kept manifests are never deleted. Blobs are
//! reclaimed by the next garbage collection.

use serde::Serialize;

use berth_meta::{Deletion, ManifestTarget, StoredPolicy, TagGuard};
use berth_oci::{Namespace, RepositoryName, Tag};

use crate::{Caller, Error, Registry, Result};

pub mod cron;
pub mod plan;
#[cfg(test)]
mod plan_oracle;
pub mod policy;
#[cfg(test)]
mod tests;

pub use plan::{ItemKind, PlanItem};
pub use policy::Policy;

/// The job name of a namespace's retention runs (lease and history).
pub fn job_name(namespace: &Namespace) -> String {
    format!("retention:{namespace}")
}

/// What a policy deletes in a namespace at a given time.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// The namespace.
    pub namespace: String,
    /// The plan's clock (Unix ms).
    pub now: i64,
    /// Every deletion: tags first, then manifests, per repository.
    pub items: Vec<PlanItem>,
    /// Tags deleted (alone or with their manifest).
    pub tags: usize,
    /// Manifests deleted.
    pub manifests: usize,
    /// Bytes that no kept manifest references any more (reclaimed by the
    /// next garbage collection unless another repository still uses them).
    pub bytes: u64,
}

/// An item that was not deleted when the plan was applied, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    /// The planned deletion.
    #[serde(flatten)]
    pub item: PlanItem,
    /// What changed since the plan.
    pub skipped: String,
}

/// The outcome of applying a policy.
#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    /// The plan as computed.
    #[serde(flatten)]
    pub plan: Plan,
    /// Planned deletions that did not happen.
    pub skipped: Vec<Skipped>,
    /// The server began shutting down and the run stopped after the
    /// deletion in progress; the rest of the plan was not applied.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
}

impl Applied {
    /// Counts and bytes, for the run history.
    pub fn summary(&self) -> serde_json::Value {
        serde_json::json!({
            "tags": self.plan.tags,
            "manifests": self.plan.manifests,
            "bytes": self.plan.bytes,
            "skipped": self.skipped.len(),
            "interrupted": self.interrupted,
        })
    }
}

fn invalid(e: policy::PolicyError) -> Error {
    Error::InvalidParameter(format!("invalid retention policy: {e}"))
}

impl Registry {
    /// The stored policy of `namespace`.
    pub async fn retention_policy(&self, namespace: &Namespace) -> Result<Option<StoredPolicy>> {
        Ok(self.meta.retention_policy(namespace).await?)
    }

    /// Validates and stores the policy `text` of `namespace` (an invalid
    /// policy is refused with its line and column). Returns the parsed
    /// policy.
    pub async fn set_retention_policy(
        &self,
        namespace: &Namespace,
        text: &str,
        caller: &Caller,
    ) -> Result<Policy> {
        let policy = Policy::parse(text, namespace).map_err(invalid)?;
        self.meta
            .set_retention_policy(namespace, Some(text), &caller.actor())
            .await?;
        Ok(policy)
    }

    /// Removes the policy of `namespace`; `NotFound` if it had none.
    pub async fn delete_retention_policy(
        &self,
        namespace: &Namespace,
        caller: &Caller,
    ) -> Result<()> {
        if self
            .meta
            .set_retention_policy(namespace, None, &caller.actor())
            .await?
        {
            Ok(())
        } else {
            Err(Error::NotFound(format!(
                "namespace {namespace} has no retention policy"
            )))
        }
    }

    /// The plan of `namespace` at `now` under its stored policy, or under
    /// `text` (a policy being tried before it is set).
    pub async fn retention_plan(
        &self,
        namespace: &Namespace,
        now: i64,
        text: Option<&str>,
    ) -> Result<Plan> {
        let policy = match text {
            Some(t) => Policy::parse(t, namespace).map_err(invalid)?,
            None => self.stored_policy(namespace).await?,
        };
        self.plan_with(namespace, &policy, now).await
    }

    async fn stored_policy(&self, namespace: &Namespace) -> Result<Policy> {
        let stored = self
            .meta
            .retention_policy(namespace)
            .await?
            .ok_or_else(|| {
                Error::NotFound(format!("namespace {namespace} has no retention policy"))
            })?;
        Policy::parse(&stored.policy, namespace).map_err(invalid)
    }

    async fn plan_with(&self, namespace: &Namespace, policy: &Policy, now: i64) -> Result<Plan> {
        // This replica's latest pull counts, for the pull conditions (a
        // failed flush keeps its counts and is logged; plan with the rest).
        let _ = self.flush_pulls().await;
        let mut items = Vec::new();
        for repo in self.meta.namespace_repositories(namespace).await? {
            let Some(inv) = self.meta.inventory(&repo).await? else {
                continue;
            };
            let rules = self.tag_rules(&repo).await?;
            let protected = |t: &Tag| rules.is_protected(t);
            items.extend(plan::plan_repository(policy, &repo, &inv, &protected, now));
        }
        let manifests = items
            .iter()
            .filter(|i| i.kind == ItemKind::Manifest)
            .count();
        let tags = items.len() - manifests + items.iter().map(|i| i.tags.len()).sum::<usize>();
        Ok(Plan {
            namespace: namespace.to_string(),
            now,
            tags,
            manifests,
            bytes: items.iter().map(|i| i.bytes).sum(),
            items,
        })
    }

    /// Applies the stored policy of `namespace` at `now`: plans, then
    /// deletes, each deletion re-checked and audited. One run per namespace
    /// at a time (job lease); recorded in the run history.
    pub async fn apply_retention(
        &self,
        namespace: &Namespace,
        now: i64,
        caller: &Caller,
    ) -> Result<Applied> {
        let policy = self.stored_policy(namespace).await?;
        let job = job_name(namespace);
        let held = self.hold_job(&job).await?;
        let started = std::time::Instant::now();
        let run = self.meta.start_run(&job, now).await?;
        let outcome = self
            .apply_plan(namespace, &policy, now, caller, &held)
            .await;
        let (ok, summary) = match &outcome {
            Ok(a) => (!a.interrupted, a.summary()),
            Err(e) => (false, serde_json::json!({ "error": e.to_string() })),
        };
        let finished = now + started.elapsed().as_millis() as i64;
        berth_metrics::get().job_run(berth_metrics::JobRun {
            job: berth_metrics::Job::Retention,
            success: ok,
            elapsed: started.elapsed(),
            // Counted as they happen, in `apply_plan`.
            deleted: &[],
            reclaimed_bytes: 0,
            now_unix: crate::observe::unix_now(),
        });
        let recorded = self.meta.finish_run(run, finished, ok, &summary).await;
        held.release().await;
        let applied = outcome?;
        recorded?;
        tracing::info!(%namespace, %summary, "retention applied");
        Ok(applied)
    }

    async fn apply_plan(
        &self,
        namespace: &Namespace,
        policy: &Policy,
        now: i64,
        caller: &Caller,
        held: &crate::jobs::Held<'_>,
    ) -> Result<Applied> {
        let plan = self.plan_with(namespace, policy, now).await?;
        let actor = caller.actor();
        let mut skipped = Vec::new();
        let mut guards: Option<(RepositoryName, TagGuard)> = None;
        let mut interrupted = false;
        for item in plan.items.iter() {
            if self.stop.is_cancelled() {
                tracing::info!(
                    %namespace,
                    "shutting down: retention stops after its current deletion"
                );
                interrupted = true;
                break;
            }
            if guards.as_ref().is_none_or(|(r, _)| *r != item.repository) {
                let rules = self.tag_rules(&item.repository).await?;
                let guard: TagGuard = std::sync::Arc::new(move |t: &Tag| {
                    rules
                        .is_protected(t)
                        .then(|| format!("tag {t} is protected"))
                });
                guards = Some((item.repository.clone(), guard));
            }
            let Some((_, guard)) = &guards else { continue };
            let detail = serde_json::json!({
                "rule": item.rule, "reason": item.reason, "kind": item.kind, "bytes": item.bytes,
            });
            let repo = &item.repository;
            let outcome = match (&item.kind, &item.tag) {
                (ItemKind::Tag, Some(tag)) => {
                    let o = self
                        .meta
                        .retention_delete_tag(
                            repo,
                            tag,
                            &item.digest,
                            guard.clone(),
                            &actor,
                            detail,
                        )
                        .await?;
                    self.cache.invalidate_tag(repo, tag);
                    o
                }
                _ => {
                    let target = ManifestTarget {
                        digest: item.digest.clone(),
                        with_tags: item.tags.clone(),
                        subject: item.subject.clone(),
                    };
                    let o = self
                        .meta
                        .retention_delete_manifest(repo, target, guard.clone(), &actor, detail)
                        .await?;
                    self.cache.invalidate_manifest(repo, &item.digest);
                    self.pull_verdicts.forget(repo);
                    for t in &item.tags {
                        self.cache.invalidate_tag(repo, t);
                    }
                    o
                }
            };
            if let Deletion::Skipped(why) = outcome {
                skipped.push(Skipped {
                    item: item.clone(),
                    skipped: why,
                });
            } else {
                let kind = match item.kind {
                    ItemKind::Tag => "tag",
                    _ => "manifest",
                };
                berth_metrics::get().job_deleted(berth_metrics::Job::Retention, kind, 1);
            }
            held.keep().await?;
        }
        Ok(Applied {
            plan,
            skipped,
            interrupted,
        })
    }

    /// Applies every stored policy whose schedule fired since its last run
    /// (or since it was set) and at or before `now`.
    pub(crate) async fn due_retention(
        &self,
        now: i64,
        stop: &crate::worker::Stop,
    ) -> Result<Vec<crate::DueJob>> {
        let scheduler = Caller::system("scheduler");
        let mut ran = Vec::new();
        for stored in self.meta.retention_policies().await? {
            if stop.is_cancelled() {
                break;
            }
            let Ok(policy) = Policy::parse(&stored.policy, &stored.namespace) else {
                tracing::warn!(namespace = %stored.namespace, "stored retention policy does not parse");
                continue;
            };
            let Some(schedule) = policy.schedule else {
                continue;
            };
            let job = job_name(&stored.namespace);
            let since = match self.meta.last_run(&job).await? {
                Some(r) => r.started_at.max(stored.updated_at),
                None => stored.updated_at,
            };
            if schedule.due(since, now) {
                let outcome = self
                    .apply_retention(&stored.namespace, now, &scheduler)
                    .await
                    .map(|a| a.summary());
                ran.push(crate::DueJob { job, outcome });
            }
        }
        Ok(ran)
    }
}
