//! The metadata test suite, run against a real SQLite file and a real
//! PostgreSQL server (a throwaway cluster from `berth_testkit`, on a Unix
//! socket in a temporary directory: no TCP port, no race).

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use berth_testkit::Postgres;

use berth_meta::audit::{action, Actor, AuditFilter};
use berth_meta::{Dialect, Meta, NewManifest, RefKind};

#[path = "suite/accounts.rs"]
mod accounts;
#[path = "suite/certificates.rs"]
mod certificates;
#[path = "suite/changes.rs"]
mod changes;
#[path = "suite/gc.rs"]
mod gc;
#[path = "suite/inventory_cache.rs"]
mod inventory_cache;
#[path = "suite/lifecycle.rs"]
mod lifecycle;
#[path = "suite/observe.rs"]
mod observe;
#[path = "suite/oidc.rs"]
mod oidc;
#[path = "suite/replication.rs"]
mod replication;
#[path = "suite/retention.rs"]
mod retention;
#[path = "suite/scans.rs"]
mod scans;
#[path = "suite/schema.rs"]
mod schema;
#[path = "suite/sessions.rs"]
mod sessions;
#[path = "suite/tag_page.rs"]
mod tag_page;
#[path = "suite/tenancy.rs"]
mod tenancy;
#[path = "suite/trust.rs"]
mod trust;
#[path = "suite/vulndb.rs"]
mod vulndb;
#[path = "suite/webhooks.rs"]
mod webhooks;

/// A repository name, for the typed parameters.
fn n(name: &str) -> berth_oci::RepositoryName {
    berth_oci::RepositoryName::parse(name).unwrap()
}

/// A valid digest made from a readable seed (`"sha256:layer"`): see
/// `berth_testkit::digests`.
fn d(seed: &str) -> berth_oci::Digest {
    berth_testkit::digests::digest(seed)
}

/// A namespace, for the typed parameters.
fn ns(name: &str) -> berth_oci::Namespace {
    berth_oci::Namespace::parse(name).unwrap()
}

/// A tag, for the typed parameters.
fn t(tag: &str) -> berth_oci::Tag {
    berth_oci::Tag::parse(tag).unwrap()
}

fn manifest(
    repo: &str,
    digest: &berth_oci::Digest,
    subject: Option<&berth_oci::Digest>,
    artifact: Option<&str>,
    tags: &[&str],
) -> NewManifest {
    NewManifest {
        repository: n(repo),
        digest: digest.clone(),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        artifact_type: artifact.map(Into::into),
        content: format!("{{\"d\":\"{digest}\"}}").into_bytes(),
        subject: subject.cloned(),
        annotations: Some("{\"k\":\"v\"}".into()),
        references: vec![
            (d("sha256:layer"), RefKind::Blob),
            (d("sha256:config"), RefKind::Blob),
        ],
        attestations: Vec::new(),
        required_blobs: Vec::new(),
        sparse: false,
        tags: tags.iter().map(|x| t(x)).collect(),
        pushed_at: 1_000,
        scan_candidates: Vec::new(),
        total_size: None,
    }
}

async fn run_suite(meta: Meta) {
    // Blob links.
    meta.link_blob(&n("a/b"), &d("sha256:layer"), 10, 1)
        .await
        .unwrap();
    meta.link_blob(&n("a/b"), &d("sha256:layer"), 10, 2)
        .await
        .unwrap();
    meta.link_blob(&n("a/b"), &d("sha256:config"), 2, 1)
        .await
        .unwrap();
    assert_eq!(
        meta.repository_blob(&n("a/b"), &d("sha256:layer"))
            .await
            .unwrap(),
        Some(10)
    );
    assert_eq!(
        meta.repository_blob(&n("c"), &d("sha256:layer"))
            .await
            .unwrap(),
        None
    );
    assert_eq!(meta.blob(&d("sha256:layer")).await.unwrap(), Some(10));
    assert_eq!(
        meta.missing_blobs(&n("a/b"), &[d("sha256:layer"), d("sha256:nope")])
            .await
            .unwrap(),
        vec![d("sha256:nope")]
    );

    // Manifests, tags, byte-order sorting.
    meta.put_manifest(
        &manifest(
            "a/b",
            &d("sha256:m1"),
            None,
            None,
            &["v1", "V2", "latest", "_x"],
        ),
        &actor(),
    )
    .await
    .unwrap();
    // Pushing the same manifest again is idempotent.
    meta.put_manifest(
        &manifest("a/b", &d("sha256:m1"), None, None, &["v1"]),
        &actor(),
    )
    .await
    .unwrap();
    let rec = meta
        .manifest_by_tag(&n("a/b"), &t("latest"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.digest, d("sha256:m1"));
    assert_eq!(
        rec.content,
        format!("{{\"d\":\"{}\"}}", d("sha256:m1")).into_bytes()
    );
    assert!(meta
        .manifest(&n("a/b"), &d("sha256:m1"))
        .await
        .unwrap()
        .is_some());
    assert!(meta
        .manifest(&n("c"), &d("sha256:m1"))
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        meta.tags(&n("a/b"), None, 100).await.unwrap().unwrap(),
        vec!["V2", "_x", "latest", "v1"],
        "tags sort in byte order on every engine"
    );
    assert_eq!(
        meta.tags(&n("a/b"), Some("_x"), 1).await.unwrap().unwrap(),
        vec!["latest"]
    );
    assert_eq!(meta.tags(&n("nope"), None, 10).await.unwrap(), None);
    assert_eq!(
        meta.missing_manifests(&n("a/b"), &[d("sha256:m1"), d("sha256:m9")])
            .await
            .unwrap(),
        vec![d("sha256:m9")]
    );

    // Tag move.
    meta.put_manifest(
        &manifest("a/b", &d("sha256:m2"), None, None, &["latest"]),
        &actor(),
    )
    .await
    .unwrap();
    assert_eq!(
        meta.manifest_by_tag(&n("a/b"), &t("latest"))
            .await
            .unwrap()
            .unwrap()
            .digest,
        d("sha256:m2")
    );

    // Referrers with and without filter.
    meta.put_manifest(
        &manifest(
            "a/b",
            &d("sha256:sig"),
            Some(&d("sha256:m1")),
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
            &d("sha256:sbom"),
            Some(&d("sha256:m1")),
            Some("application/spdx+json"),
            &[],
        ),
        &actor(),
    )
    .await
    .unwrap();
    let all = meta
        .referrers(&n("a/b"), &d("sha256:m1"), None)
        .await
        .unwrap();
    assert_eq!(
        all.iter().map(|r| r.digest.clone()).collect::<Vec<_>>(),
        vec![d("sha256:sbom"), d("sha256:sig")]
    );
    assert_eq!(all[0].annotations.as_deref(), Some("{\"k\":\"v\"}"));
    let sboms = meta
        .referrers(&n("a/b"), &d("sha256:m1"), Some("application/spdx+json"))
        .await
        .unwrap();
    assert_eq!(sboms.len(), 1);
    assert_eq!(
        sboms[0].artifact_type.as_deref(),
        Some("application/spdx+json")
    );
    assert!(meta
        .referrers(&n("zzz"), &d("sha256:m1"), None)
        .await
        .unwrap()
        .is_empty());

    // Deletes.
    assert!(meta
        .delete_tag(&n("a/b"), &t("_x"), &actor())
        .await
        .unwrap());
    assert!(!meta
        .delete_tag(&n("a/b"), &t("_x"), &actor())
        .await
        .unwrap());
    let mut removed = meta
        .delete_manifest(&n("a/b"), &d("sha256:m1"), &actor())
        .await
        .unwrap()
        .unwrap();
    removed.sort();
    assert_eq!(removed, vec!["V2", "v1"]);
    assert!(meta
        .delete_manifest(&n("a/b"), &d("sha256:m1"), &actor())
        .await
        .unwrap()
        .is_none());
    assert!(meta
        .manifest_by_tag(&n("a/b"), &t("v1"))
        .await
        .unwrap()
        .is_none());
    assert!(meta
        .unlink_blob(&n("a/b"), &d("sha256:layer"), &actor())
        .await
        .unwrap());
    assert!(!meta
        .unlink_blob(&n("a/b"), &d("sha256:layer"), &actor())
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
    assert_eq!(
        moved[0].event.digest.as_deref(),
        Some(d("sha256:m2").as_str())
    );
    assert_eq!(
        moved[0].event.detail.as_ref().unwrap()["from"],
        d("sha256:m1").as_str()
    );
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
    // Newest first, paged backwards with before_id.
    let newest = meta
        .audit_events(&AuditFilter {
            newest_first: true,
            limit: Some(2),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        newest.iter().map(|e| e.id).collect::<Vec<_>>(),
        events
            .iter()
            .rev()
            .take(2)
            .map(|e| e.id)
            .collect::<Vec<_>>()
    );
    let older = meta
        .audit_events(&AuditFilter {
            newest_first: true,
            before_id: Some(newest[1].id),
            limit: Some(1),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(older[0].id, events[events.len() - 3].id);
    // A recorded event's repeats are counted on it.
    let id = meta
        .record_event_id(
            actor()
                .event(action::LOGIN)
                .detail(serde_json::json!({"method": "password"})),
        )
        .await
        .unwrap();
    meta.count_repeats(id, 41, 1234).await.unwrap();
    let login = meta
        .audit_events(&AuditFilter {
            after_id: Some(id - 1),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(login.len(), 1);
    assert_eq!(login[0].id, id);
    let detail = login[0].event.detail.clone().unwrap();
    assert_eq!(
        (
            detail["method"].as_str(),
            detail["repeats"].as_u64(),
            detail["last_at"].as_i64()
        ),
        (Some("password"), Some(41), Some(1234))
    );

    // Catalog.
    meta.link_blob(&n("z"), &d("sha256:layer"), 10, 1)
        .await
        .unwrap();
    // Byte order, not a locale's: '-' < '/' < '_' < letters.
    for name in ["a_a", "a-z"] {
        meta.link_blob(&n(name), &d("sha256:layer"), 10, 1)
            .await
            .unwrap();
    }
    let repos = meta.repositories(None, 10).await.unwrap();
    assert_eq!(repos, vec!["a-z", "a/b", "a_a", "z"]);
    assert_eq!(
        meta.repositories(Some("a/b"), 10).await.unwrap(),
        vec!["a_a", "z"]
    );

    // Concurrent writers: every tag write lands.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let meta = meta.clone();
        tasks.push(tokio::spawn(async move {
            meta.put_manifest(
                &manifest(
                    "conc",
                    &d(&format!("sha256:c{i}")),
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
        meta.tags(&n("conc"), None, 100)
            .await
            .unwrap()
            .unwrap()
            .len(),
        20
    );

    accounts::run(&meta).await;
    certificates::run(&meta).await;
    sessions::run(&meta).await;
    gc::gc_cases(&meta).await;
    gc::index_reference_cases(&meta).await;
    gc::job_cases(&meta).await;
    shared_counter_cases(&meta).await;
    retention::retention_cases(&meta).await;
    tenancy::run(&meta).await;
    observe::run(&meta).await;
    webhooks::run(&meta).await;
    oidc::run(&meta).await;
    trust::run(&meta).await;
    vulndb::run(&meta).await;
    scans::run(&meta).await;
    replication::run(&meta).await;
    meta.close().await;
}

/// Rate windows and failed-login counts shared by replicas: expired rows
/// are pruned, live ones kept.
async fn shared_counter_cases(meta: &Meta) {
    meta.hit_rate_window("old", 1_000, 60_000, true)
        .await
        .unwrap();
    meta.hit_rate_window("new", 100_000, 60_000, true)
        .await
        .unwrap();
    meta.add_login_failure("old", 1_000, 900_000).await.unwrap();
    meta.add_login_failure("new", 100_000, 900_000)
        .await
        .unwrap();
    assert_eq!(meta.prune_counters(50_000, 50_000).await.unwrap(), 2);
    assert_eq!(meta.login_failures("old").await.unwrap(), None);
    assert_eq!(
        meta.login_failures("new").await.unwrap(),
        Some((1, 100_000))
    );
    // The kept window goes on counting where it was.
    assert_eq!(
        meta.hit_rate_window("new", 100_001, 60_000, true)
            .await
            .unwrap(),
        (100_000, 2)
    );
    assert_eq!(meta.prune_counters(50_000, 50_000).await.unwrap(), 0);
    assert_eq!(meta.prune_counters(200_000, 200_000).await.unwrap(), 2);
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
        meta.repository_blob(&n("z"), &d("sha256:layer"))
            .await
            .unwrap(),
        Some(10)
    );
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
