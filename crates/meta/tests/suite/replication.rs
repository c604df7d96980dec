//! Replication rules and their progress, on both engines.

use berth_meta::audit::Actor;
use berth_meta::replication::{NewRule, Progress, Secret};
use berth_meta::Meta;
use berth_oci::{Digest, RepositoryName, Tag};

fn admin() -> Actor {
    Actor {
        name: "admin".into(),
        ip: None,
        at: 9_000,
    }
}

fn rule(name: &str) -> NewRule {
    NewRule {
        name: name.into(),
        direction: "push".into(),
        url: "https://backup.example.com".into(),
        username: Some("robot".into()),
        secret: Some(Secret("s3cret-token".into())),
        repositories: "acme".into(),
        tags: "v*".into(),
        on_push: true,
        schedule: Some("0 3 * * *".into()),
        description: None,
        replicate_deletions: true,
    }
}

pub async fn run(meta: &Meta) {
    let newest = meta
        .events_after(0, 10_000)
        .await
        .unwrap()
        .last()
        .map_or(0, |e| e.id);
    let made = meta
        .add_replication_rule(&rule("backup"), &admin())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        made.event_cursor, newest,
        "a new rule starts at the newest event"
    );
    assert_eq!(made.secret, Some(Secret("s3cret-token".into())));
    assert!(!serde_json::to_string(&made).unwrap().contains("s3cret"));
    assert!(meta
        .add_replication_rule(&rule("backup"), &admin())
        .await
        .unwrap()
        .is_none());
    let asked = meta
        .request_replication_run("backup", 10_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(asked.run_requested_at, Some(10_000));
    // A failed attempt keeps the request; a full pass started after it
    // answers it.
    let failed = Progress {
        event_cursor: newest,
        failures: 1,
        next_attempt_at: 12_000,
        last_error: Some("down".into()),
        synced_at: None,
    };
    meta.save_replication_progress(made.id, &failed)
        .await
        .unwrap();
    let r = meta.replication_rule("backup").await.unwrap().unwrap();
    assert_eq!((r.failures, r.run_requested_at), (1, Some(10_000)));
    let done = Progress {
        event_cursor: newest + 5,
        failures: 0,
        next_attempt_at: 0,
        last_error: None,
        synced_at: Some(11_000),
    };
    meta.save_replication_progress(made.id, &done)
        .await
        .unwrap();
    let r = meta.replication_rule("backup").await.unwrap().unwrap();
    assert_eq!(r.run_requested_at, None);
    assert_eq!(r.last_sync_at, Some(11_000));
    assert_eq!(r.event_cursor, newest + 5);
    meta.advance_replication_cursor(made.id, newest + 2)
        .await
        .unwrap();
    let r = meta.replication_rule("backup").await.unwrap().unwrap();
    assert_eq!(r.event_cursor, newest + 5, "the cursor never moves back");
    assert_eq!(meta.replication_rules().await.unwrap().len(), 1);
    assert!(r.replicate_deletions);
    // The tags a pull rule made: recorded, moved, forgotten; gone with
    // the rule.
    let (repo, v1, v2) = (
        RepositoryName::parse("lib/app").unwrap(),
        Tag::parse("v1").unwrap(),
        Tag::parse("v2").unwrap(),
    );
    let (d1, d2) = (Digest::sha256(b"one"), Digest::sha256(b"two"));
    for (tag, d) in [(&v1, &d1), (&v2, &d1), (&v2, &d2)] {
        meta.record_replicated_tag(made.id, &repo, tag, d, 11_000)
            .await
            .unwrap();
    }
    let made_tags = meta.replicated_tags(made.id).await.unwrap();
    let seen: Vec<(&str, &Digest)> = made_tags
        .iter()
        .map(|t| (t.tag.as_str(), &t.digest))
        .collect();
    assert_eq!(seen, [("v1", &d1), ("v2", &d2)]);
    meta.forget_replicated_tag(made.id, &repo, &v1)
        .await
        .unwrap();
    assert_eq!(meta.replicated_tags(made.id).await.unwrap().len(), 1);
    let removed = meta
        .remove_replication_rule("backup", &admin())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(removed.name, "backup");
    assert!(meta.replication_rule("backup").await.unwrap().is_none());
    assert!(meta.replicated_tags(made.id).await.unwrap().is_empty());

    // When the mirror last confirmed a cached tag upstream.
    assert_eq!(meta.mirror_tag_checked(&repo, &v1).await.unwrap(), None);
    for at in [20_000, 30_000, 25_000] {
        meta.record_mirror_tag_check(&repo, &v1, at).await.unwrap();
    }
    assert_eq!(
        meta.mirror_tag_checked(&repo, &v1).await.unwrap(),
        Some(30_000),
        "an older check never replaces a newer one"
    );
    assert_eq!(meta.mirror_tag_checked(&repo, &v2).await.unwrap(), None);
    mirror_check_cases(meta).await;
}

/// The checks of tags that are gone are counted and forgotten; those of
/// tags still here are kept. The eviction pass runs this query on both
/// engines.
async fn mirror_check_cases(meta: &Meta) {
    use super::{actor, d, manifest, n, t};

    // The cases above leave checks of tags that were never made: gone.
    let before = meta.stale_mirror_tag_checks().await.unwrap();

    meta.put_manifest(
        &manifest(
            "hub/library/app",
            &d("sha256:mc1"),
            None,
            None,
            &["v1", "v2"],
        ),
        &actor(),
    )
    .await
    .unwrap();
    meta.put_manifest(
        &manifest("hub/library/db", &d("sha256:mc2"), None, None, &["v1"]),
        &actor(),
    )
    .await
    .unwrap();
    let checks = [
        ("hub/library/app", "v1"),
        ("hub/library/app", "v2"),
        ("hub/library/db", "v1"),
        // Never cached, or a tag of another repository's name.
        ("hub/library/app", "never-cached"),
        ("hub/library/none", "v1"),
    ];
    for (r, tag) in checks {
        meta.record_mirror_tag_check(&n(r), &t(tag), 40_000)
            .await
            .unwrap();
    }
    assert_eq!(meta.stale_mirror_tag_checks().await.unwrap(), before + 2);
    assert_eq!(
        meta.forget_stale_mirror_tag_checks().await.unwrap(),
        before + 2
    );
    assert_eq!(meta.stale_mirror_tag_checks().await.unwrap(), 0);
    assert_eq!(
        meta.mirror_tag_checked(&n("hub/library/app"), &t("never-cached"))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        meta.mirror_tag_checked(&n("hub/library/none"), &t("v1"))
            .await
            .unwrap(),
        None
    );

    // A tag deleted, and a manifest deleted with its only tag.
    assert!(meta
        .delete_tag(&n("hub/library/app"), &t("v2"), &actor())
        .await
        .unwrap());
    assert!(meta
        .delete_manifest(&n("hub/library/db"), &d("sha256:mc2"), &actor())
        .await
        .unwrap()
        .is_some());
    assert_eq!(meta.stale_mirror_tag_checks().await.unwrap(), 2);
    assert_eq!(meta.forget_stale_mirror_tag_checks().await.unwrap(), 2);
    for (r, tag, left) in [
        ("hub/library/app", "v1", Some(40_000)),
        ("hub/library/app", "v2", None),
        ("hub/library/db", "v1", None),
    ] {
        assert_eq!(
            meta.mirror_tag_checked(&n(r), &t(tag)).await.unwrap(),
            left,
            "{r}:{tag}"
        );
    }
    assert_eq!(meta.forget_stale_mirror_tag_checks().await.unwrap(), 0);
}
