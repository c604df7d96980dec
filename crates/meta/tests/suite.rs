//! The metadata test suite, run against a real SQLite file and a real
//! PostgreSQL server (a throwaway cluster started by the test on a Unix
//! socket in a temporary directory: no TCP port, no race).

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_meta::audit::{action, Actor, AuditFilter};
use berth_meta::{Dialect, Meta, NewManifest, RefKind};

#[path = "suite/accounts.rs"]
mod accounts;
#[path = "suite/lifecycle.rs"]
mod lifecycle;

fn manifest(
    repo: &str,
    digest: &str,
    subject: Option<&str>,
    artifact: Option<&str>,
    tags: &[&str],
) -> NewManifest {
    NewManifest {
        repository: repo.into(),
        digest: digest.into(),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        artifact_type: artifact.map(Into::into),
        content: format!("{{\"d\":\"{digest}\"}}").into_bytes(),
        subject: subject.map(Into::into),
        annotations: Some("{\"k\":\"v\"}".into()),
        references: vec![
            ("sha256:layer".into(), RefKind::Blob),
            ("sha256:config".into(), RefKind::Blob),
        ],
        required_blobs: Vec::new(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        pushed_at: 1_000,
    }
}

async fn run_suite(meta: Meta) {
    // Blob links.
    meta.link_blob("a/b", "sha256:layer", 10, 1).await.unwrap();
    meta.link_blob("a/b", "sha256:layer", 10, 2).await.unwrap();
    meta.link_blob("a/b", "sha256:config", 2, 1).await.unwrap();
    assert_eq!(
        meta.repository_blob("a/b", "sha256:layer").await.unwrap(),
        Some(10)
    );
    assert_eq!(
        meta.repository_blob("c", "sha256:layer").await.unwrap(),
        None
    );
    assert_eq!(meta.blob("sha256:layer").await.unwrap(), Some(10));
    assert_eq!(
        meta.missing_blobs("a/b", &["sha256:layer".into(), "sha256:nope".into()])
            .await
            .unwrap(),
        vec!["sha256:nope".to_owned()]
    );

    // Manifests, tags, byte-order sorting.
    meta.put_manifest(
        &manifest(
            "a/b",
            "sha256:m1",
            None,
            None,
            &["v1", "V2", "latest", "_x"],
        ),
        &actor(),
    )
    .await
    .unwrap();
    // Pushing the same manifest again is idempotent.
    meta.put_manifest(&manifest("a/b", "sha256:m1", None, None, &["v1"]), &actor())
        .await
        .unwrap();
    let rec = meta
        .manifest_by_tag("a/b", "latest")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.digest, "sha256:m1");
    assert_eq!(rec.content, b"{\"d\":\"sha256:m1\"}");
    assert!(meta.manifest("a/b", "sha256:m1").await.unwrap().is_some());
    assert!(meta.manifest("c", "sha256:m1").await.unwrap().is_none());
    assert_eq!(
        meta.tags("a/b", None, 100).await.unwrap().unwrap(),
        vec!["V2", "_x", "latest", "v1"],
        "tags sort in byte order on every engine"
    );
    assert_eq!(
        meta.tags("a/b", Some("_x"), 1).await.unwrap().unwrap(),
        vec!["latest"]
    );
    assert_eq!(meta.tags("nope", None, 10).await.unwrap(), None);
    assert_eq!(
        meta.missing_manifests("a/b", &["sha256:m1".into(), "sha256:m9".into()])
            .await
            .unwrap(),
        vec!["sha256:m9".to_owned()]
    );

    // Tag move.
    meta.put_manifest(
        &manifest("a/b", "sha256:m2", None, None, &["latest"]),
        &actor(),
    )
    .await
    .unwrap();
    assert_eq!(
        meta.manifest_by_tag("a/b", "latest")
            .await
            .unwrap()
            .unwrap()
            .digest,
        "sha256:m2"
    );

    // Referrers with and without filter.
    meta.put_manifest(
        &manifest(
            "a/b",
            "sha256:sig",
            Some("sha256:m1"),
            Some("application/sig"),
            &[],
        ),
        &actor(),
    )
    .await
    .unwrap();
    meta.put_manifest(
        &manifest(
            "a/b",
            "sha256:sbom",
            Some("sha256:m1"),
            Some("application/spdx+json"),
            &[],
        ),
        &actor(),
    )
    .await
    .unwrap();
    let all = meta.referrers("a/b", "sha256:m1", None).await.unwrap();
    assert_eq!(
        all.iter().map(|r| r.digest.as_str()).collect::<Vec<_>>(),
        vec!["sha256:sbom", "sha256:sig"]
    );
    assert_eq!(all[0].annotations.as_deref(), Some("{\"k\":\"v\"}"));
    let sboms = meta
        .referrers("a/b", "sha256:m1", Some("application/spdx+json"))
        .await
        .unwrap();
    assert_eq!(sboms.len(), 1);
    assert_eq!(
        sboms[0].artifact_type.as_deref(),
        Some("application/spdx+json")
    );
    assert!(meta
        .referrers("zzz", "sha256:m1", None)
        .await
        .unwrap()
        .is_empty());

    // Deletes.
    assert!(meta.delete_tag("a/b", "_x", &actor()).await.unwrap());
    assert!(!meta.delete_tag("a/b", "_x", &actor()).await.unwrap());
    let mut removed = meta
        .delete_manifest("a/b", "sha256:m1", &actor())
        .await
        .unwrap()
        .unwrap();
    removed.sort();
    assert_eq!(removed, vec!["V2", "v1"]);
    assert!(meta
        .delete_manifest("a/b", "sha256:m1", &actor())
        .await
        .unwrap()
        .is_none());
    assert!(meta.manifest_by_tag("a/b", "v1").await.unwrap().is_none());
    assert!(meta
        .unlink_blob("a/b", "sha256:layer", &actor())
        .await
        .unwrap());
    assert!(!meta
        .unlink_blob("a/b", "sha256:layer", &actor())
        .await
        .unwrap());

    // Every change above left its audit event, in order, and only those
    // that changed something.
    let events = meta.audit_events(&AuditFilter::default()).await.unwrap();
    let actions: Vec<&str> = events.iter().map(|e| e.event.action.as_str()).collect();
    assert_eq!(
        actions.iter().filter(|a| **a == action::TAG_DELETE).count(),
        1,
        "{actions:?}"
    );
    assert_eq!(
        actions
            .iter()
            .filter(|a| **a == action::MANIFEST_DELETE)
            .count(),
        1
    );
    assert_eq!(
        actions
            .iter()
            .filter(|a| **a == action::BLOB_DELETE)
            .count(),
        1
    );
    assert!(events.windows(2).all(|w| w[0].id < w[1].id));
    let moved = meta
        .audit_events(&AuditFilter {
            action: Some(action::TAG_MOVE.into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert_eq!(moved[0].event.tag.as_deref(), Some("latest"));
    assert_eq!(moved[0].event.digest.as_deref(), Some("sha256:m2"));
    assert_eq!(moved[0].event.detail.as_ref().unwrap()["from"], "sha256:m1");
    assert_eq!(moved[0].event.actor, "tester");
    let tag_events = meta
        .audit_events(&AuditFilter {
            action: Some("tag.".into()),
            repository: Some("a/".into()),
            after_id: Some(moved[0].id - 1),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(tag_events.len(), 2, "{tag_events:?}");
    assert!(meta
        .audit_events(&AuditFilter {
            repository: Some("a_".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .is_empty());

    // Catalog.
    meta.link_blob("z", "sha256:layer", 10, 1).await.unwrap();
    meta.link_blob(
        "A-upper-is-never-valid-but-sorts-first",
        "sha256:layer",
        10,
        1,
    )
    .await
    .unwrap();
    let repos = meta.repositories(None, 10).await.unwrap();
    assert_eq!(
        repos,
        vec!["A-upper-is-never-valid-but-sorts-first", "a/b", "z"]
    );
    assert_eq!(meta.repositories(Some("a/b"), 10).await.unwrap(), vec!["z"]);

    // Concurrent writers: every tag write lands.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let meta = meta.clone();
        tasks.push(tokio::spawn(async move {
            meta.put_manifest(
                &manifest(
                    "conc",
                    &format!("sha256:c{i}"),
                    None,
                    None,
                    &[&format!("t{i:02}")],
                ),
                &actor(),
            )
            .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(
        meta.tags("conc", None, 100).await.unwrap().unwrap().len(),
        20
    );

    accounts::run(&meta).await;
    gc_cases(&meta).await;
    job_cases(&meta).await;
    retention_cases(&meta).await;
    meta.close().await;
}

fn image(repo: &str, digest: &str, blobs: &[&str], tags: &[&str], at: i64) -> NewManifest {
    NewManifest {
        references: blobs
            .iter()
            .map(|b| (b.to_string(), RefKind::Blob))
            .collect(),
        required_blobs: blobs.iter().map(|b| b.to_string()).collect(),
        pushed_at: at,
        ..manifest(repo, digest, None, None, tags)
    }
}

fn index(repo: &str, digest: &str, children: &[&str], tags: &[&str], at: i64) -> NewManifest {
    NewManifest {
        media_type: "application/vnd.oci.image.index.v1+json".into(),
        references: children
            .iter()
            .map(|c| (c.to_string(), RefKind::Manifest))
            .collect(),
        required_blobs: Vec::new(),
        pushed_at: at,
        ..manifest(repo, digest, None, None, tags)
    }
}

/// Garbage collection's reads and conditional deletes.
async fn gc_cases(meta: &Meta) {
    let ours = |v: Vec<berth_meta::Unreferenced>| -> Vec<(Option<String>, String)> {
        v.into_iter()
            .filter(|u| u.digest.starts_with("sha256:g"))
            .map(|u| (u.repository, u.digest))
            .collect()
    };
    meta.link_blob("gc/a", "sha256:g1", 5, 10_000)
        .await
        .unwrap();
    meta.link_blob("gc/a", "sha256:g2", 7, 10_000)
        .await
        .unwrap();
    meta.link_blob("gc/b", "sha256:g2", 7, 10_500)
        .await
        .unwrap();
    meta.put_manifest(
        &image("gc/a", "sha256:gm", &["sha256:g1"], &["t"], 10_000),
        &actor(),
    )
    .await
    .unwrap();
    // Only old, unreferenced links count.
    assert!(ours(meta.unreferenced_links(10_000).await.unwrap()).is_empty());
    assert_eq!(
        ours(meta.unreferenced_links(10_200).await.unwrap()),
        vec![(Some("gc/a".into()), "sha256:g2".into())]
    );
    // g2 is still linked (young) in gc/b: not a blob candidate until that
    // link is old too.
    assert!(ours(meta.unreferenced_blobs(10_200).await.unwrap()).is_empty());
    assert_eq!(
        ours(meta.unreferenced_blobs(11_000).await.unwrap()),
        vec![(None, "sha256:g2".into())]
    );
    assert_eq!(
        meta.sweep_links("gc/a", 10_200).await.unwrap(),
        vec!["sha256:g2".to_owned()]
    );
    assert_eq!(
        meta.sweep_links("gc/a", 10_200).await.unwrap(),
        Vec::<String>::new()
    );
    // The row stays while gc/b links it.
    let candidates = vec!["sha256:g1".to_owned(), "sha256:g2".to_owned()];
    assert!(meta
        .sweep_blobs(&candidates, 11_000)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        meta.sweep_links("gc/b", 11_000).await.unwrap(),
        vec!["sha256:g2".to_owned()]
    );
    assert_eq!(
        meta.sweep_blobs(&candidates, 11_000).await.unwrap(),
        vec!["sha256:g2".to_owned()]
    );
    assert!(!meta.blob_recorded("sha256:g2").await.unwrap());
    assert!(meta.blob_recorded("sha256:g1").await.unwrap());
    assert!(meta.blob_sizes().await.unwrap().contains_key("sha256:g1"));

    // A manifest put after the sweep sees the link gone and fails, with
    // nothing stored.
    let err = meta
        .put_manifest(
            &image(
                "gc/a",
                "sha256:gm2",
                &["sha256:g1", "sha256:g2"],
                &["u"],
                12_000,
            ),
            &actor(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, berth_meta::Error::MissingReference { kind: "blob", digest, .. } if digest == "sha256:g2"),
        "{err}"
    );
    assert!(meta.manifest("gc/a", "sha256:gm2").await.unwrap().is_none());
    assert!(meta.manifest_by_tag("gc/a", "u").await.unwrap().is_none());
    let err = meta
        .put_manifest(
            &index(
                "gc/a",
                "sha256:gi",
                &["sha256:gm", "sha256:nope"],
                &[],
                12_000,
            ),
            &actor(),
        )
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        berth_meta::Error::MissingReference {
            kind: "manifest",
            ..
        }
    ));
    meta.put_manifest(
        &index("gc/a", "sha256:gi", &["sha256:gm"], &[], 12_000),
        &actor(),
    )
    .await
    .unwrap();

    // Pushes racing with sweeps: whichever commits first wins, and a stored
    // manifest always keeps its links.
    for i in 0..40 {
        let blob = format!("sha256:gr{i}");
        meta.link_blob("gc/race", &blob, 1, 0).await.unwrap();
        let m = image("gc/race", &format!("sha256:grm{i}"), &[&blob], &[], 1);
        let (pusher, sweeper) = (meta.clone(), meta.clone());
        let push = tokio::spawn(async move { pusher.put_manifest(&m, &actor()).await });
        let sweep = tokio::spawn(async move { sweeper.sweep_links("gc/race", i64::MAX).await });
        let pushed = push.await.unwrap();
        let swept = sweep.await.unwrap().unwrap();
        let stored = meta
            .manifest("gc/race", &format!("sha256:grm{i}"))
            .await
            .unwrap()
            .is_some();
        let linked = meta
            .repository_blob("gc/race", &blob)
            .await
            .unwrap()
            .is_some();
        assert_eq!(pushed.is_ok(), stored, "{pushed:?}");
        assert_eq!(
            stored, linked,
            "round {i}: stored {stored}, swept {swept:?}"
        );
    }

    // Links racing with blob sweeps: the link always succeeds, and a link
    // always has its blob row.
    for i in 0..40 {
        let blob = format!("sha256:gb{i}");
        meta.link_blob("gc/b-race", &blob, 1, 0).await.unwrap();
        meta.sweep_links("gc/b-race", i64::MAX).await.unwrap();
        let (linker, sweeper, b) = (meta.clone(), meta.clone(), blob.clone());
        let link =
            tokio::spawn(async move { linker.link_blob("gc/b-race2", &b, 1, i64::MAX - 1).await });
        let digests = vec![blob.clone()];
        let sweep = tokio::spawn(async move { sweeper.sweep_blobs(&digests, i64::MAX - 1).await });
        link.await.unwrap().unwrap();
        sweep.await.unwrap().unwrap();
        assert!(meta
            .repository_blob("gc/b-race2", &blob)
            .await
            .unwrap()
            .is_some());
    }
}

/// Leases and run history.
async fn job_cases(meta: &Meta) {
    assert!(meta.acquire_lease("gc", "a", 1_000, 2_000).await.unwrap());
    assert!(!meta.acquire_lease("gc", "b", 1_500, 2_500).await.unwrap());
    assert!(meta.acquire_lease("gc", "a", 1_500, 3_000).await.unwrap());
    assert!(meta.acquire_lease("gc", "b", 3_001, 4_000).await.unwrap());
    meta.release_lease("gc", "a").await.unwrap();
    assert_eq!(meta.lease("gc").await.unwrap().unwrap().holder, "b");
    meta.release_lease("gc", "b").await.unwrap();
    assert!(meta.lease("gc").await.unwrap().is_none());
    assert!(meta.acquire_lease("gc", "a", 3_002, 4_000).await.unwrap());

    let id = meta.start_run("gc", 10).await.unwrap();
    meta.finish_run(id, 20, true, &serde_json::json!({"x": 1}))
        .await
        .unwrap();
    let r = meta.start_run("retention:acme", 30).await.unwrap();
    meta.finish_run(r, 40, false, &serde_json::json!({"error": "boom"}))
        .await
        .unwrap();
    meta.start_run("retention:beta", 50).await.unwrap();
    let last = meta.last_run("gc").await.unwrap().unwrap();
    assert_eq!(
        (last.id, last.ok, last.finished_at),
        (id, Some(true), Some(20))
    );
    assert_eq!(last.summary.unwrap()["x"], 1);
    let runs = meta.job_runs("retention:", 10).await.unwrap();
    assert_eq!(
        runs.iter()
            .map(|r| (r.job.as_str(), r.ok))
            .collect::<Vec<_>>(),
        vec![("retention:beta", None), ("retention:acme", Some(false))]
    );
    assert!(meta.last_run("nothing").await.unwrap().is_none());
}

/// Policies, the inventory, conditional deletions, time setters.
async fn retention_cases(meta: &Meta) {
    use berth_meta::Deletion;
    assert!(meta.retention_policy("acme").await.unwrap().is_none());
    assert!(!meta
        .set_retention_policy("acme", Some("a = 1"), &actor())
        .await
        .unwrap());
    assert!(meta
        .set_retention_policy("acme", Some("b = 2"), &actor())
        .await
        .unwrap());
    let p = meta.retention_policy("acme").await.unwrap().unwrap();
    assert_eq!(
        (p.policy.as_str(), p.updated_by.as_deref()),
        ("b = 2", Some("tester"))
    );
    assert_eq!(meta.retention_policies().await.unwrap().len(), 1);
    assert!(meta
        .set_retention_policy("acme", None, &actor())
        .await
        .unwrap());
    assert!(meta.retention_policy("acme").await.unwrap().is_none());

    for r in [
        "acme",
        "acme/web",
        "acme/web/x",
        "acme-two/y",
        "acme0",
        "acmf",
    ] {
        meta.link_blob(r, "sha256:layer", 10, 1).await.unwrap();
    }
    assert_eq!(
        meta.namespace_repositories("acme").await.unwrap(),
        vec!["acme", "acme/web", "acme/web/x"]
    );

    // An index with two children, a referrer of the index, tags.
    let r = "acme/web";
    meta.link_blob(r, "sha256:l1", 100, 1).await.unwrap();
    meta.link_blob(r, "sha256:l2", 200, 1).await.unwrap();
    meta.put_manifest(&image(r, "sha256:c1", &["sha256:l1"], &[], 5), &actor())
        .await
        .unwrap();
    meta.put_manifest(&image(r, "sha256:c2", &["sha256:l2"], &[], 5), &actor())
        .await
        .unwrap();
    meta.put_manifest(
        &index(
            r,
            "sha256:ix",
            &["sha256:c1", "sha256:c2"],
            &["v1", "latest"],
            6,
        ),
        &actor(),
    )
    .await
    .unwrap();
    meta.put_manifest(
        &manifest(
            r,
            "sha256:sig",
            Some("sha256:ix"),
            Some("application/sig"),
            &[],
        ),
        &actor(),
    )
    .await
    .unwrap();
    meta.set_manifest_times(r, "sha256:ix", 1_000, Some(5_000))
        .await
        .unwrap();
    meta.set_tag_times(r, "v1", 2_000, Some(6_000))
        .await
        .unwrap();
    let inv = meta.inventory(r).await.unwrap().unwrap();
    assert_eq!(inv.manifests.len(), 4);
    let ix = inv
        .manifests
        .iter()
        .find(|m| m.digest == "sha256:ix")
        .unwrap();
    assert_eq!((ix.pushed_at, ix.last_pulled_at), (1_000, Some(5_000)));
    assert!(ix.media_type.contains("index"));
    let sig = inv
        .manifests
        .iter()
        .find(|m| m.digest == "sha256:sig")
        .unwrap();
    assert_eq!(sig.subject.as_deref(), Some("sha256:ix"));
    assert_eq!(sig.artifact_type.as_deref(), Some("application/sig"));
    let v1 = inv.tags.iter().find(|t| t.name == "v1").unwrap();
    assert_eq!((v1.updated_at, v1.last_pulled_at), (2_000, Some(6_000)));
    assert_eq!(
        inv.children().collect::<Vec<_>>(),
        vec![("sha256:ix", "sha256:c1"), ("sha256:ix", "sha256:c2")]
    );
    assert!(inv.blobs().any(|b| b == ("sha256:c2", "sha256:l2", 200)));
    assert!(meta.inventory("acme/none").await.unwrap().is_none());

    let d = |v: &str| serde_json::json!({ "rule": v });
    assert!(matches!(
        meta.retention_delete_tag(r, "v1", "sha256:c1", &actor(), d("x"))
            .await
            .unwrap(),
        Deletion::Skipped(_)
    ));
    assert_eq!(
        meta.retention_delete_tag(r, "v1", "sha256:ix", &actor(), d("x"))
            .await
            .unwrap(),
        Deletion::Deleted
    );
    // Still tagged `latest`, listed children, present subject: kept.
    let skipped = |o: Deletion| match o {
        Deletion::Skipped(why) => why,
        Deletion::Deleted => panic!("deleted"),
    };
    assert!(skipped(
        meta.retention_delete_manifest(r, "sha256:ix", &[], None, &actor(), d("x"))
            .await
            .unwrap()
    )
    .contains("latest"));
    assert!(skipped(
        meta.retention_delete_manifest(r, "sha256:c1", &[], None, &actor(), d("x"))
            .await
            .unwrap()
    )
    .contains("sha256:ix"));
    assert!(skipped(
        meta.retention_delete_manifest(r, "sha256:sig", &[], Some("sha256:ix"), &actor(), d("x"))
            .await
            .unwrap()
    )
    .contains("subject"));
    let latest = vec!["latest".to_owned()];
    assert_eq!(
        meta.retention_delete_manifest(r, "sha256:ix", &latest, None, &actor(), d("x"))
            .await
            .unwrap(),
        Deletion::Deleted
    );
    for m in ["sha256:c1", "sha256:c2"] {
        assert_eq!(
            meta.retention_delete_manifest(r, m, &[], None, &actor(), d("x"))
                .await
                .unwrap(),
            Deletion::Deleted
        );
    }
    assert_eq!(
        meta.retention_delete_manifest(r, "sha256:sig", &[], Some("sha256:ix"), &actor(), d("x"))
            .await
            .unwrap(),
        Deletion::Deleted
    );
    assert!(matches!(
        meta.retention_delete_manifest(r, "sha256:c1", &[], None, &actor(), d("x"))
            .await
            .unwrap(),
        Deletion::Skipped(_)
    ));
    assert!(meta
        .inventory(r)
        .await
        .unwrap()
        .is_none_or(|i| i.manifests.is_empty()));
    let events = meta
        .audit_events(&AuditFilter {
            action: Some(action::RETENTION_DELETE.into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 5, "one tag and four manifests");
    assert_eq!(
        events[1].event.detail.as_ref().unwrap()["tags"],
        serde_json::json!(["latest"])
    );
    let policy_events = meta
        .audit_events(&AuditFilter {
            action: Some(action::POLICY_CHANGE.into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(policy_events.len(), 3);
}

#[tokio::test]
async fn sqlite_passes_the_suite() {
    let dir = tempfile::tempdir().unwrap();
    let meta = Meta::open_sqlite(&dir.path().join("berth.db"))
        .await
        .unwrap();
    assert_eq!(meta.dialect(), Dialect::Sqlite);
    run_suite(meta).await;
    // Migrations are idempotent on reopen.
    let meta = Meta::open_sqlite(&dir.path().join("berth.db"))
        .await
        .unwrap();
    assert_eq!(
        meta.repository_blob("z", "sha256:layer").await.unwrap(),
        Some(10)
    );
}

/// A throwaway PostgreSQL cluster.
struct Postgres {
    child: Child,
    dir: tempfile::TempDir,
}

fn pg_bin(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin"))
        .collect();
    dirs.sort();
    dirs.into_iter()
        .rev()
        .map(|d| d.join(name))
        .find(|p| p.exists())
}

fn as_postgres_user(cmd: &Path) -> Command {
    // PostgreSQL refuses to run as root; CI runs as root.
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(cmd);
        c
    } else {
        Command::new(cmd)
    }
}

impl Postgres {
    fn start() -> Postgres {
        let initdb =
            pg_bin("initdb").expect("PostgreSQL server binaries (apt-get install postgresql)");
        let postgres = pg_bin("postgres").expect("postgres binary");
        let dir = tempfile::tempdir().unwrap();
        let _ = Command::new("chown")
            .args(["-R", "postgres"])
            .arg(dir.path())
            .status();
        let data = dir.path().join("pgdata");
        let out = as_postgres_user(&initdb)
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "berth", "--no-sync"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let child = as_postgres_user(&postgres)
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(dir.path())
            .args(["-c", "listen_addresses=", "-c", "fsync=off", "-p", "5432"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let sock = dir.path().join(".s.PGSQL.5432");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !sock.exists() {
            assert!(Instant::now() < deadline, "PostgreSQL did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Postgres { child, dir }
    }

    fn url(&self) -> String {
        format!(
            "postgres://berth@localhost/postgres?host={}&port=5432",
            self.dir.path().display()
        )
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn postgres_passes_the_suite() {
    let pg = Postgres::start();
    // The server accepts connections slightly after the socket appears.
    let deadline = Instant::now() + Duration::from_secs(30);
    let meta = loop {
        match Meta::connect(&pg.url()).await {
            Ok(m) => break m,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("cannot connect to PostgreSQL: {e}"),
        }
    };
    assert_eq!(meta.dialect(), Dialect::Postgres);
    run_suite(meta).await;
}

fn actor() -> Actor {
    Actor {
        name: "tester".into(),
        ip: Some("127.0.0.1".into()),
        at: 1,
    }
}
