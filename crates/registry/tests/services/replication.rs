//! Replication rules run by the worker's round, with an injected clock and
//! a fake transport: pushes a rule selects are copied and nothing else,
//! failures are retried after a backoff and recorded in the history, a
//! schedule fires a full pass, a run on demand starts at once.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use berth_oci::{RepositoryName, Tag};
use berth_registry::replication::{
    Copied, Deleted, Deletion, ReplicationRule, RuleSpec, Transport,
};
use berth_registry::worker::Stop;
use berth_registry::{Caller, Error, Settings};

use super::gc::push_image;
use super::registry;

#[derive(Default)]
struct Fake {
    copies: Mutex<Vec<String>>,
    fail: Mutex<bool>,
    remote: Vec<(String, Vec<String>)>,
}

#[async_trait]
impl Transport for Fake {
    async fn copy(
        &self,
        rule: &ReplicationRule,
        repository: &RepositoryName,
        tag: &Tag,
    ) -> Result<Copied, String> {
        if *self.fail.lock().unwrap() {
            return Err(format!("{} refused the connection", rule.url));
        }
        self.copies
            .lock()
            .unwrap()
            .push(format!("{}:{repository}:{tag}", rule.name));
        Ok(Copied::Copied(super::dg("copied")))
    }

    async fn remote_repositories(&self, _: &ReplicationRule) -> Result<Vec<String>, String> {
        Ok(self.remote.iter().map(|(r, _)| r.clone()).collect())
    }

    async fn remote_tags(
        &self,
        _: &ReplicationRule,
        repository: &RepositoryName,
    ) -> Result<Vec<String>, String> {
        Ok(self
            .remote
            .iter()
            .find(|(r, _)| r == repository.as_str())
            .map(|(_, t)| t.clone())
            .unwrap_or_default())
    }
}

fn taken(fake: &Fake) -> Vec<String> {
    std::mem::take(&mut *fake.copies.lock().unwrap())
}

fn push_rule(name: &str, repositories: &str, tags: &str) -> RuleSpec {
    RuleSpec {
        name: name.into(),
        direction: "push".into(),
        url: "http://backup.example:5000".into(),
        repositories: Some(repositories.into()),
        tags: Some(tags.into()),
        ..RuleSpec::default()
    }
}

#[tokio::test]
async fn pushes_are_replicated_by_filter_and_failures_retried_with_backoff() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path(), Settings::default()).await;
    let fake = Arc::new(Fake::default());
    reg.set_replication_transport(fake.clone());
    let admin = Caller::system("admin");
    let stop = Stop::new();
    // Pushed before the rule exists: not replayed.
    push_image(&reg, "acme/web", "v0", "old").await;
    reg.add_replication_rule(push_rule("backup", "acme", "v*"), &admin)
        .await
        .unwrap();
    let dup = reg
        .add_replication_rule(push_rule("backup", "acme", "v*"), &admin)
        .await;
    assert!(matches!(dup, Err(Error::Conflict(_))), "{dup:?}");
    let now = berth_meta::now_ms();
    assert!(reg.replicate(now, &stop).await.unwrap().is_empty());

    push_image(&reg, "acme/web", "v1", "a").await;
    push_image(&reg, "acme/web", "dev", "b").await;
    push_image(&reg, "other/web", "v1", "c").await;
    let runs = reg.replicate(now, &stop).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert!(runs[0].ok);
    assert_eq!(runs[0].summary["trigger"], "push");
    assert_eq!(taken(&fake), ["backup:acme/web:v1"]);
    // Handled: the next round has nothing to do.
    assert!(reg.replicate(now, &stop).await.unwrap().is_empty());

    // The target fails: retried after 2 s, then 4 s; the history says so.
    *fake.fail.lock().unwrap() = true;
    push_image(&reg, "acme/web", "v2", "d").await;
    let runs = reg.replicate(now, &stop).await.unwrap();
    assert!(!runs[0].ok);
    assert!(runs[0].summary["error"]
        .as_str()
        .unwrap()
        .contains("refused the connection"));
    let rule = reg.replication_rule("backup").await.unwrap();
    assert_eq!(rule.rule.failures, 1);
    assert!(rule.rule.last_error.is_some());
    assert!(reg.replicate(now + 1_000, &stop).await.unwrap().is_empty());
    let runs = reg.replicate(now + 30_000, &stop).await.unwrap();
    assert_eq!(runs[0].summary["attempt"], 2);
    *fake.fail.lock().unwrap() = false;
    assert!(reg.replicate(now + 32_000, &stop).await.unwrap().is_empty());
    let runs = reg.replicate(now + 60_000, &stop).await.unwrap();
    assert!(runs[0].ok, "{:?}", runs[0].summary);
    assert_eq!(taken(&fake), ["backup:acme/web:v2"]);
    let history = reg.replication_history("backup", 10).await.unwrap();
    let outcomes: Vec<Option<bool>> = history.iter().map(|r| r.ok).collect();
    assert_eq!(outcomes, [Some(true), Some(false), Some(false), Some(true)]);
    let view = reg.replication_rule("backup").await.unwrap();
    assert_eq!(view.rule.failures, 0);
    assert_eq!(view.last_run.unwrap().ok, Some(true));
}

#[tokio::test]
async fn schedules_and_runs_on_demand_make_full_passes() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path(), Settings::default()).await;
    let fake = Arc::new(Fake {
        remote: vec![
            (
                "lib/app".into(),
                vec!["v1".into(), "v2".into(), "dev".into()],
            ),
            ("lib/other".into(), vec!["v1".into()]),
        ],
        ..Fake::default()
    });
    reg.set_replication_transport(fake.clone());
    let admin = Caller::system("admin");
    let stop = Stop::new();
    push_image(&reg, "acme/web", "v1", "a").await;
    push_image(&reg, "acme/web", "latest", "b").await;
    let hourly = RuleSpec {
        on_push: Some(false),
        schedule: Some("0 * * * *".into()),
        ..push_rule("hourly", "acme/*", "v*")
    };
    reg.add_replication_rule(hourly, &admin).await.unwrap();
    let pull = RuleSpec {
        direction: "pull".into(),
        ..push_rule("pull-lib", "lib/app", "v*")
    };
    reg.add_replication_rule(pull, &admin).await.unwrap();
    let now = berth_meta::now_ms();
    // Not on push; nothing due yet.
    assert!(reg.replicate(now, &stop).await.unwrap().is_empty());
    let fire = berth_registry::retention::cron::Schedule::parse("0 * * * *")
        .unwrap()
        .next_after(now)
        .unwrap();
    let runs = reg.replicate(fire, &stop).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].summary["trigger"], "schedule");
    assert_eq!(taken(&fake), ["hourly:acme/web:v1"]);
    assert!(reg.replicate(fire + 1000, &stop).await.unwrap().is_empty());

    // On demand: the pull rule copies the selected tags of the selected
    // repository, nothing else.
    let asked = reg.request_replication_run("pull-lib", fire).await.unwrap();
    assert!(asked.rule.run_requested_at.is_some());
    let runs = reg.replicate(fire + 1000, &stop).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].summary["trigger"], "on-demand");
    assert_eq!(runs[0].summary["copied"], 2);
    assert_eq!(taken(&fake), ["pull-lib:lib/app:v1", "pull-lib:lib/app:v2"]);
    let view = reg.replication_rule("pull-lib").await.unwrap();
    assert!(view.rule.run_requested_at.is_none());
    assert!(reg.replicate(fire + 2000, &stop).await.unwrap().is_empty());
    assert!(matches!(
        reg.request_replication_run("nope", fire).await,
        Err(Error::NotFound(_))
    ));
    let removed = reg
        .remove_replication_rule("pull-lib", &admin)
        .await
        .unwrap();
    assert_eq!(removed.name, "pull-lib");
    assert_eq!(reg.replication_rules().await.unwrap().len(), 1);
}

/// A pull rule on a schedule (issue 14: "a scheduled pull replication
/// mirrors the selected tags and nothing else"): nothing before it is
/// due; when it fires, the tags its glob selects of the repositories its
/// glob selects are copied, and nothing else; not again before the next
/// time. (The copy itself, real registries and digests, is
/// `mirror::replication::a_pull_rule_mirrors_the_selected_tags_and_nothing_else`.)
#[tokio::test]
async fn a_scheduled_pull_rule_copies_the_selected_tags_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path(), Settings::default()).await;
    let fake = Arc::new(Fake {
        remote: vec![
            (
                "lib/app".into(),
                vec!["v1".into(), "v2".into(), "dev".into()],
            ),
            ("lib/db".into(), vec!["v3".into(), "latest".into()]),
            ("other/app".into(), vec!["v1".into()]),
        ],
        ..Fake::default()
    });
    reg.set_replication_transport(fake.clone());
    let admin = Caller::system("admin");
    let stop = Stop::new();
    let nightly = RuleSpec {
        direction: "pull".into(),
        on_push: Some(false),
        schedule: Some("0 3 * * *".into()),
        ..push_rule("nightly", "lib/*", "v*")
    };
    reg.add_replication_rule(nightly, &admin).await.unwrap();
    let now = berth_meta::now_ms();
    assert!(reg.replicate(now, &stop).await.unwrap().is_empty());
    assert!(taken(&fake).is_empty());
    let schedule = berth_registry::retention::cron::Schedule::parse("0 3 * * *").unwrap();
    let fire = schedule.next_after(now).unwrap();
    assert!(reg.replicate(fire - 1000, &stop).await.unwrap().is_empty());
    let runs = reg.replicate(fire, &stop).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].summary["trigger"], "schedule");
    assert_eq!(runs[0].summary["copied"], 3, "{}", runs[0].summary);
    let mut copied = taken(&fake);
    copied.sort();
    assert_eq!(
        copied,
        [
            "nightly:lib/app:v1",
            "nightly:lib/app:v2",
            "nightly:lib/db:v3"
        ]
    );
    // Not again before its next time; then again.
    assert!(reg
        .replicate(fire + 60_000, &stop)
        .await
        .unwrap()
        .is_empty());
    let next = schedule.next_after(fire).unwrap();
    let runs = reg.replicate(next, &stop).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].summary["trigger"], "schedule");
}

/// A target registry held in memory: what a push rule copied there, and
/// the deletions asked of it.
#[derive(Default)]
struct Target {
    tags: Mutex<std::collections::BTreeMap<(String, String), berth_oci::Digest>>,
    deletions: Mutex<Vec<String>>,
}

#[async_trait]
impl Transport for Target {
    async fn copy(
        &self,
        _: &ReplicationRule,
        repository: &RepositoryName,
        tag: &Tag,
    ) -> Result<Copied, String> {
        let d = super::dg(&format!("{repository}:{tag}"));
        self.tags
            .lock()
            .unwrap()
            .insert((repository.to_string(), tag.to_string()), d.clone());
        Ok(Copied::Copied(d))
    }

    async fn remote_repositories(&self, _: &ReplicationRule) -> Result<Vec<String>, String> {
        Ok(Vec::new())
    }

    async fn remote_tags(
        &self,
        _: &ReplicationRule,
        _: &RepositoryName,
    ) -> Result<Vec<String>, String> {
        Ok(Vec::new())
    }

    async fn delete(
        &self,
        _: &ReplicationRule,
        repository: &RepositoryName,
        deletion: &Deletion,
    ) -> Result<Deleted, String> {
        let Deletion::TagNaming(tag, put) = deletion else {
            return Err(format!("unexpected {deletion:?}"));
        };
        self.deletions
            .lock()
            .unwrap()
            .push(format!("{repository}:{tag}"));
        let mut tags = self.tags.lock().unwrap();
        let key = (repository.to_string(), tag.to_string());
        match tags.get(&key) {
            None => Ok(Deleted::Absent),
            Some(d) if d != put => Ok(Deleted::Kept(format!("it names {d} there"))),
            Some(_) => {
                tags.remove(&key);
                Ok(Deleted::Deleted)
            }
        }
    }
}

#[tokio::test]
async fn full_passes_of_push_rules_delete_at_the_target_what_is_gone_here() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path(), Settings::default()).await;
    let target = Arc::new(Target::default());
    reg.set_replication_transport(target.clone());
    let admin = Caller::system("admin");
    let stop = Stop::new();
    // Scheduled only: no event is followed, the full passes do it all.
    let rule = RuleSpec {
        on_push: Some(false),
        schedule: Some("0 * * * *".into()),
        replicate_deletions: true,
        ..push_rule("backup", "acme/*", "v*")
    };
    reg.add_replication_rule(rule, &admin).await.unwrap();
    for (tag, seed) in [("v1", "a"), ("v2", "b"), ("v3", "c"), ("dev", "d")] {
        push_image(&reg, "acme/web", tag, seed).await;
    }
    // Someone else's tag at the target: never the rule's to delete.
    target
        .tags
        .lock()
        .unwrap()
        .insert(("acme/web".into(), "v9".into()), super::dg("someone else"));
    let schedule = berth_registry::retention::cron::Schedule::parse("0 * * * *").unwrap();
    let first = schedule.next_after(berth_meta::now_ms()).unwrap();
    let runs = reg.replicate(first, &stop).await.unwrap();
    assert!(runs[0].ok, "{:?}", runs[0].summary);
    let at_target = |t: &Target| -> Vec<String> {
        t.tags
            .lock()
            .unwrap()
            .keys()
            .map(|(r, t)| format!("{r}:{t}"))
            .collect()
    };
    assert_eq!(
        at_target(&target),
        ["acme/web:v1", "acme/web:v2", "acme/web:v3", "acme/web:v9"]
    );
    assert!(target.deletions.lock().unwrap().is_empty());

    // Deleted here: v1 and v3 (and dev, which the rule does not select);
    // v3 was moved at the target meanwhile.
    for tag in ["v1", "v3", "dev"] {
        reg.delete_manifest(
            &super::n("acme/web"),
            &berth_oci::Reference::Tag(super::t(tag)),
            &admin,
        )
        .await
        .unwrap();
    }
    target
        .tags
        .lock()
        .unwrap()
        .insert(("acme/web".into(), "v3".into()), super::dg("moved there"));
    let second = schedule.next_after(first).unwrap();
    let runs = reg.replicate(second, &stop).await.unwrap();
    assert!(runs[0].ok, "{:?}", runs[0].summary);
    assert_eq!(runs[0].summary["deleted"], 1, "{:?}", runs[0].summary);
    let kept = runs[0].summary["kept"].to_string();
    assert!(kept.contains("acme/web:v3"), "{kept}");
    assert_eq!(
        at_target(&target),
        ["acme/web:v2", "acme/web:v3", "acme/web:v9"]
    );
    assert_eq!(
        std::mem::take(&mut *target.deletions.lock().unwrap()),
        ["acme/web:v1", "acme/web:v3"]
    );
    // Each record was settled: the next pass asks nothing more.
    let third = schedule.next_after(second).unwrap();
    let runs = reg.replicate(third, &stop).await.unwrap();
    assert!(runs[0].ok, "{:?}", runs[0].summary);
    assert!(target.deletions.lock().unwrap().is_empty());
    assert_eq!(
        at_target(&target),
        ["acme/web:v2", "acme/web:v3", "acme/web:v9"]
    );
}
