//! Retention policies on a schedule, with an injected clock.

use berth_registry::retention::cron::Schedule;
use berth_registry::{Caller, Registry, Settings};

use super::gc::push_image;
use super::{n, registry};

const DAY: i64 = 86_400_000;

fn jobs(v: Vec<berth_registry::DueJob>) -> Vec<String> {
    v.into_iter()
        .map(|j| {
            assert!(j.outcome.is_ok(), "{:?}", j.outcome);
            j.job
        })
        .collect()
}

async fn no_gc(dir: &std::path::Path) -> Registry {
    registry(
        dir,
        Settings {
            gc_interval: None,
            ..Default::default()
        },
    )
    .await
}

#[tokio::test]
async fn policies_run_when_their_schedule_fires() {
    let dir = tempfile::tempdir().unwrap();
    let reg = no_gc(dir.path()).await;
    let admin = Caller::system("admin");
    let now = berth_meta::now_ms();
    let (d, _) = push_image(&reg, "acme/web", "pr-1", "a").await;
    crate::meta_of(dir.path())
        .await
        .set_tag_times(
            &super::n("acme/web"),
            &berth_oci::Tag::parse("pr-1").unwrap(),
            now - 10 * DAY,
            None,
        )
        .await
        .unwrap();
    crate::meta_of(dir.path())
        .await
        .set_manifest_times(&super::n("acme/web"), &d, now - 10 * DAY, None)
        .await
        .unwrap();
    let policy = "schedule = \"0 3 * * *\"\n[[rule]]\ntags = [\"pr-*\"]\nkeep = { pushed_within = \"7d\" }\n";
    let parsed = reg
        .set_retention_policy(&super::ns("acme"), policy, &admin)
        .await
        .unwrap();
    assert_eq!(parsed.rules.len(), 1);
    // A policy without a schedule in another namespace never runs by itself.
    reg.set_retention_policy(
        &super::ns("other"),
        "[[rule]]\nuntagged = true\ndelete = { older_than = \"1d\" }\n",
        &admin,
    )
    .await
    .unwrap();

    let fire = Schedule::parse("0 3 * * *")
        .unwrap()
        .next_after(now)
        .unwrap();
    assert!(jobs(reg.run_due_jobs(fire - 1).await.unwrap()).is_empty());
    assert_eq!(
        reg.tags(&n("acme/web"), None, None)
            .await
            .unwrap()
            .items()
            .len(),
        1
    );
    assert_eq!(
        jobs(reg.run_due_jobs(fire).await.unwrap()),
        vec!["retention:acme"]
    );
    assert!(reg
        .tags(&n("acme/web"), None, None)
        .await
        .unwrap()
        .items()
        .is_empty());
    // Once per fire time.
    assert!(jobs(reg.run_due_jobs(fire + 3_600_000).await.unwrap()).is_empty());
    assert_eq!(
        jobs(reg.run_due_jobs(fire + DAY).await.unwrap()),
        vec!["retention:acme"]
    );
    let runs = crate::meta_of(dir.path())
        .await
        .job_runs("retention:acme", 10)
        .await
        .unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[1].summary.as_ref().unwrap()["tags"], 1);
    assert_eq!(runs[0].summary.as_ref().unwrap()["tags"], 0);
    // The deletions are audited as the scheduler's.
    let events = crate::meta_of(dir.path())
        .await
        .audit_events(&berth_meta::audit::AuditFilter {
            action: Some("retention.delete".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 2, "the tag and its manifest");
    assert!(events.iter().all(|e| e.event.actor == "scheduler"));
}

#[tokio::test]
async fn invalid_policies_are_refused_and_a_missing_one_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let reg = no_gc(dir.path()).await;
    let admin = Caller::system("admin");
    let err = reg
        .set_retention_policy(
            &super::ns("acme"),
            "[[rule]]\ntags = [\"*\"]\nkeep = { last = \"ten\" }\n",
            &admin,
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), berth_registry::Kind::InvalidArgument);
    assert!(
        err.to_string()
            .contains("line 3, column 8: last takes a count"),
        "{err}"
    );
    assert!(reg
        .retention_policy(&super::ns("acme"))
        .await
        .unwrap()
        .is_none());
    let err = reg
        .retention_plan(&super::ns("acme"), 0, None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), berth_registry::Kind::NotFound);
    assert_eq!(
        reg.delete_retention_policy(&super::ns("acme"), &admin)
            .await
            .unwrap_err()
            .kind(),
        berth_registry::Kind::NotFound
    );
}
