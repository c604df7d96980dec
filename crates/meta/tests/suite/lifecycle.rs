//! Lifecycle metadata (tag rules, guarded tag writes, pull statistics,
//! usage and quotas) against both engines, each on a database of its own.

use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_meta::audit::{action, AuditFilter};
use berth_meta::{Dialect, Error, Meta, PullDelta, PullTarget, RefKind, TagGuard, TagRuleKind};

use super::{actor, d, manifest, n, t, Postgres};

/// Refuses every tag starting with `v`.
fn guard() -> TagGuard {
    Arc::new(|t: &berth_oci::Tag| {
        t.as_str()
            .starts_with('v')
            .then(|| format!("{t} is frozen"))
    })
}

async fn tag_rules(meta: &Meta) {
    let (r1, new) = meta
        .add_tag_rule("acme", "v*", TagRuleKind::Immutable, &actor())
        .await
        .unwrap();
    assert!(new);
    assert_eq!(r1.created_by.as_deref(), Some("tester"));
    let (again, new) = meta
        .add_tag_rule("acme", "v*", TagRuleKind::Immutable, &actor())
        .await
        .unwrap();
    assert!(!new);
    assert_eq!(again, r1);
    let (r2, _) = meta
        .add_tag_rule("acme/web-*", "latest", TagRuleKind::Protected, &actor())
        .await
        .unwrap();
    let (r3, _) = meta
        .add_tag_rule("acmecorp", "*", TagRuleKind::Protected, &actor())
        .await
        .unwrap();
    let all = meta.tag_rules().await.unwrap();
    assert_eq!(all, vec![r1.clone(), r2.clone(), r3.clone()]);
    assert_eq!(all[1].kind, TagRuleKind::Protected);

    // Deleting is scoped to the namespace: acmecorp's rule is not acme's.
    assert!(meta
        .delete_tag_rule(&crate::ns("acme"), r3.id, &actor())
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        meta.delete_tag_rule(&crate::ns("acme"), r2.id, &actor())
            .await
            .unwrap()
            .map(|r| r.id),
        Some(r2.id)
    );
    assert!(meta
        .delete_tag_rule(&crate::ns("acmecorp"), r3.id, &actor())
        .await
        .unwrap()
        .is_some());
    assert_eq!(meta.tag_rules().await.unwrap(), vec![r1]);
    let events = meta
        .audit_events(&AuditFilter {
            action: Some(action::POLICY_CHANGE.into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 5, "three adds and two removes: {events:?}");
    let detail = events[3].event.detail.as_ref().unwrap();
    assert_eq!(detail["tag_rule"], "remove");
    assert_eq!(detail["pattern"], "latest");
    assert_eq!(events[3].event.repository.as_deref(), Some("acme/web-*"));
}

async fn guarded_writes(meta: &Meta) {
    let repo = "g/app";
    meta.put_manifest_guarded(
        &manifest(repo, &d("sha256:g1"), None, None, &["v1", "dev"]),
        guard(),
        &actor(),
    )
    .await
    .unwrap();
    // The same manifest again is fine; a guarded tag cannot move.
    meta.put_manifest_guarded(
        &manifest(repo, &d("sha256:g1"), None, None, &["v1"]),
        guard(),
        &actor(),
    )
    .await
    .unwrap();
    let err = meta
        .put_manifest_guarded(
            &manifest(repo, &d("sha256:g2"), None, None, &["dev", "v1"]),
            guard(),
            &actor(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Refused(m) if m == "v1 is frozen"),
        "{err}"
    );
    // Nothing of the refused push was written: no manifest, no tag move.
    assert!(meta
        .manifest(&n(repo), &d("sha256:g2"))
        .await
        .unwrap()
        .is_none());
    let dev = meta
        .manifest_by_tag(&n(repo), &t("dev"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(dev.digest, d("sha256:g1"));
    // Unguarded tags move as usual.
    meta.put_manifest_guarded(
        &manifest(repo, &d("sha256:g2"), None, None, &["dev"]),
        guard(),
        &actor(),
    )
    .await
    .unwrap();

    // Deleting a manifest that carries a guarded tag is refused as a whole.
    let err = meta
        .delete_manifest_guarded(&n(repo), &d("sha256:g1"), guard(), &actor())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Refused(_)));
    assert!(meta
        .manifest_by_tag(&n(repo), &t("v1"))
        .await
        .unwrap()
        .is_some());
    let err = meta
        .delete_tag_guarded(&n(repo), &t("v1"), guard(), &actor())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Refused(_)));
    assert!(!meta
        .delete_tag_guarded(&n(repo), &t("v-none"), guard(), &actor())
        .await
        .unwrap());
    assert!(meta
        .delete_tag_guarded(&n(repo), &t("dev"), guard(), &actor())
        .await
        .unwrap());
    // Unguarded (an admin), it goes.
    assert_eq!(
        meta.delete_manifest(&n(repo), &d("sha256:g1"), &actor())
            .await
            .unwrap(),
        Some(vec![t("v1")])
    );

    // Concurrent pushes of one guarded tag: exactly one wins.
    let mut tasks = Vec::new();
    for i in 0..12 {
        let meta = meta.clone();
        tasks.push(tokio::spawn(async move {
            meta.put_manifest_guarded(
                &manifest("g/race", &d(&format!("sha256:r{i}")), None, None, &["v9"]),
                guard(),
                &actor(),
            )
            .await
        }));
    }
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => won += 1,
            Err(Error::Refused(_)) => {}
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert_eq!(
        won, 1,
        "exactly one concurrent push of an immutable tag wins"
    );
}

fn delta(
    target: PullTarget,
    repo: &str,
    key: &str,
    pulls: u64,
    at: i64,
) -> (PullTarget, PullDelta) {
    (
        target,
        PullDelta {
            repository: super::n(repo),
            key: key.into(),
            pulls,
            last_pulled_at: at,
        },
    )
}

async fn pull_statistics(meta: &Meta) {
    let repo = "s/app";
    meta.link_blob(&n(repo), &d("sha256:layer"), 1000, 1)
        .await
        .unwrap();
    meta.link_blob(&n(repo), &d("sha256:config"), 10, 1)
        .await
        .unwrap();
    meta.put_manifest(
        &manifest(repo, &d("sha256:s1"), None, None, &["v1", "latest"]),
        &actor(),
    )
    .await
    .unwrap();
    let mut deltas = vec![
        delta(PullTarget::Manifest, repo, d("sha256:s1").as_str(), 3, 500),
        delta(PullTarget::Tag, repo, "v1", 2, 500),
        delta(PullTarget::Tag, repo, "latest", 1, 400),
        // Gone or never there: dropped without error.
        delta(PullTarget::Manifest, repo, d("sha256:gone").as_str(), 5, 1),
        delta(PullTarget::Tag, "s/none", "v1", 5, 1),
    ];
    meta.add_pulls(&mut deltas).await.unwrap();
    assert!(deltas.is_empty(), "written deltas are removed");
    // A later batch adds; an older time never moves the last pull back.
    let mut more = vec![
        delta(PullTarget::Manifest, repo, d("sha256:s1").as_str(), 4, 300),
        delta(PullTarget::Tag, repo, "latest", 1, 900),
    ];
    meta.add_pulls(&mut more).await.unwrap();
    // Enough deltas for several transactions.
    let mut many: Vec<_> = (0..1200)
        .map(|_| delta(PullTarget::Tag, repo, "v1", 1, 600))
        .collect();
    meta.add_pulls(&mut many).await.unwrap();

    let inv = meta.inventory(&crate::n(repo)).await.unwrap().unwrap();
    let m = &inv.manifests[0];
    assert_eq!((m.pull_count, m.last_pulled_at), (7, Some(500)));
    assert_eq!(
        m.size,
        format!("{{\"d\":\"{}\"}}", d("sha256:s1")).len() as i64
    );
    assert_eq!(m.pushed_at, 1_000);
    let tags: Vec<_> = inv
        .tags
        .iter()
        .map(|t| (t.name.as_str(), t.pull_count, t.last_pulled_at))
        .collect();
    assert_eq!(
        tags,
        vec![("latest", 2, Some(900)), ("v1", 1202, Some(600))]
    );
    // A tag keeps its statistics when it moves.
    meta.put_manifest(
        &manifest(repo, &d("sha256:s2"), None, None, &["latest"]),
        &actor(),
    )
    .await
    .unwrap();
    let inv = meta.inventory(&crate::n(repo)).await.unwrap().unwrap();
    assert_eq!(inv.tags[0].digest, d("sha256:s2"));
    assert_eq!(inv.tags[0].pull_count, 2);
    assert_eq!(inv.manifests[1].pull_count, 0);
    // References carry the sizes of stored blobs.
    let refs: Vec<_> = inv
        .references
        .iter()
        .filter(|r| r.parent == d("sha256:s1"))
        .map(|r| (&r.child, r.kind, r.blob_size))
        .collect();
    assert_eq!(
        refs,
        vec![
            (&d("sha256:config"), RefKind::Blob, Some(10)),
            (&d("sha256:layer"), RefKind::Blob, Some(1000))
        ]
    );
    assert!(meta.inventory(&crate::n("s/none")).await.unwrap().is_none());
    // A repository without tags (PostgreSQL aggregates no rows to NULL,
    // SQLite to an empty array): an empty list, not an error.
    meta.put_manifest(
        &manifest("s/untagged", &d("sha256:u1"), None, None, &[]),
        &actor(),
    )
    .await
    .unwrap();
    let inv = meta
        .inventory(&crate::n("s/untagged"))
        .await
        .unwrap()
        .unwrap();
    assert!(inv.tags.is_empty());
    assert_eq!(inv.manifests.len(), 1);
    assert_eq!(inv.manifests[0].digest, d("sha256:u1"));
    assert_eq!(inv.references.len(), 2);
    // References come by parent, then child (the lists are sorted in the
    // server, the same on both databases).
    assert!(inv.references[0].child < inv.references[1].child);
}

async fn usage_and_quotas(meta: &Meta) {
    // Namespace "u": a layer shared by two repositories, one of them a
    // nested name; a namespace whose name is a prefix ("u2") and one that
    // sorts right after "u/" ("u0") must not count.
    meta.link_blob(&n("u/a"), &d("sha256:base"), 1000, 1)
        .await
        .unwrap();
    meta.link_blob(&n("u/a"), &d("sha256:cfg-a"), 10, 1)
        .await
        .unwrap();
    meta.link_blob(&n("u/b/c"), &d("sha256:base"), 1000, 1)
        .await
        .unwrap();
    meta.link_blob(&n("u"), &d("sha256:top"), 3, 1)
        .await
        .unwrap();
    meta.link_blob(&n("u2/x"), &d("sha256:other"), 50, 1)
        .await
        .unwrap();
    meta.link_blob(&n("u0"), &d("sha256:other0"), 70, 1)
        .await
        .unwrap();
    let mut m = manifest("u/a", &d("sha256:ma"), None, None, &["v1"]);
    m.references = vec![(d("sha256:base"), RefKind::Blob)];
    meta.put_manifest(&m, &actor()).await.unwrap();
    let msize = m.content.len() as u64;
    assert_eq!(
        meta.namespace_usage(&crate::ns("u")).await.unwrap(),
        1000 + 10 + 3 + msize
    );
    assert_eq!(meta.namespace_usage(&crate::ns("u2")).await.unwrap(), 50);
    assert_eq!(meta.namespace_usage(&crate::ns("nobody")).await.unwrap(), 0);
    assert!(meta
        .namespace_holds(&crate::ns("u"), &d("sha256:base"))
        .await
        .unwrap());
    assert!(meta
        .namespace_holds(&crate::ns("u"), &d("sha256:ma"))
        .await
        .unwrap());
    assert!(!meta
        .namespace_holds(&crate::ns("u"), &d("sha256:other"))
        .await
        .unwrap());
    let content = meta.namespace_content(&crate::ns("u")).await.unwrap();
    let listed: Vec<_> = content
        .iter()
        .map(|c| (c.repository.as_str(), &c.digest, c.size, c.in_use))
        .collect();
    // In use: manifests, and the blobs a manifest of the same repository
    // references; the other links wait for GC.
    assert_eq!(
        listed,
        vec![
            ("u", &d("sha256:top"), 3, false),
            ("u/a", &d("sha256:base"), 1000, true),
            ("u/a", &d("sha256:cfg-a"), 10, false),
            ("u/a", &d("sha256:ma"), msize, true),
            ("u/b/c", &d("sha256:base"), 1000, false),
        ]
    );
    // Unlinking (what GC and deletes do) shows at once: no counter drifts.
    meta.unlink_blob(&n("u/a"), &d("sha256:cfg-a"), &actor())
        .await
        .unwrap();
    assert_eq!(
        meta.namespace_usage(&crate::ns("u")).await.unwrap(),
        1000 + 3 + msize
    );

    // Quotas and the guarded link.
    let used = 1000 + 3 + msize;
    let q = meta
        .set_quota(&crate::ns("u"), used + 100, &actor())
        .await
        .unwrap();
    assert_eq!(q.limit_bytes, used + 100);
    assert_eq!(meta.quotas().await.unwrap(), vec![q.clone()]);
    assert_eq!(
        meta.link_blob_within_quota(
            &n("u/a"),
            &d("sha256:big"),
            101,
            2,
            &crate::ns("u"),
            used + 100
        )
        .await
        .unwrap(),
        Some(used),
        "refused, with the usage it saw"
    );
    assert!(!meta
        .namespace_holds(&crate::ns("u"), &d("sha256:big"))
        .await
        .unwrap());
    assert_eq!(
        meta.link_blob_within_quota(
            &n("u/a"),
            &d("sha256:fits"),
            100,
            2,
            &crate::ns("u"),
            used + 100
        )
        .await
        .unwrap(),
        None
    );
    // Already in the namespace: free, even when full.
    assert_eq!(
        meta.link_blob_within_quota(
            &n("u/new"),
            &d("sha256:base"),
            1000,
            2,
            &crate::ns("u"),
            used + 100
        )
        .await
        .unwrap(),
        None
    );
    assert_eq!(
        meta.repository_blob(&n("u/new"), &d("sha256:base"))
            .await
            .unwrap(),
        Some(1000)
    );
    meta.set_quota(&crate::ns("u"), 5, &actor()).await.unwrap();
    assert_eq!(meta.quotas().await.unwrap()[0].limit_bytes, 5);
    assert!(meta.delete_quota(&crate::ns("u"), &actor()).await.unwrap());
    assert!(!meta.delete_quota(&crate::ns("u"), &actor()).await.unwrap());
    assert!(meta.quotas().await.unwrap().is_empty());
    let events = meta
        .audit_events(&AuditFilter {
            action: Some(action::POLICY_CHANGE.into()),
            repository: Some("u".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 3, "two sets and a remove: {events:?}");
    assert_eq!(events[2].event.detail.as_ref().unwrap()["quota"], "remove");
}

/// Stores manifest `seed` of `content_len` bytes in `repo`, referencing
/// `blobs`.
async fn put_sized(meta: &Meta, repo: &str, seed: &str, content_len: usize, blobs: &[&str]) {
    let mut m = manifest(repo, &d(seed), None, None, &[]);
    m.content = vec![b'x'; content_len];
    m.references = blobs.iter().map(|b| (d(b), RefKind::Blob)).collect();
    meta.put_manifest(&m, &actor()).await.unwrap();
}

/// The namespace's sums ([`Meta::usage_summary`]): stored versus used,
/// shared content once per namespace.
async fn usage_sums(meta: &Meta) {
    // ua/gone: every image deleted, its blobs wait for GC; one of them
    // is used by ua/live too.
    for (repo, blob, size) in [
        ("ua/gone", "sha256:base", 1000),
        ("ua/gone", "sha256:own", 300),
        ("ua/live", "sha256:base", 1000),
        ("ua/live", "sha256:upload", 40),
    ] {
        meta.link_blob(&n(repo), &d(blob), size, 1).await.unwrap();
    }
    put_sized(meta, "ua/live", "sha256:m", 5, &["sha256:base"]).await;
    let u = meta.usage_summary(&super::ns("ua")).await.unwrap();
    assert_eq!(
        u.total_bytes,
        1000 + 300 + 5 + 40,
        "stored: what the quota counts"
    );
    assert_eq!(u.unreferenced_bytes, 340, "the base is used by ua/live");
    assert_eq!(
        u.total_bytes,
        meta.namespace_usage(&super::ns("ua")).await.unwrap()
    );
    let gone = &u.repositories[0];
    assert_eq!(gone.name, "ua/gone");
    assert_eq!(
        (gone.total_bytes, gone.blobs, gone.manifests),
        (0, 0, 0),
        "a deleted repository uses nothing"
    );
    assert_eq!(
        (gone.unreferenced_bytes, gone.unreferenced_blobs),
        (1300, 2)
    );
    let live = &u.repositories[1];
    assert_eq!(
        (live.total_bytes, live.unique_bytes, live.shared_bytes),
        (1005, 1005, 0),
        "the base is not shared with a repository that does not use it"
    );
    assert_eq!((live.unreferenced_bytes, live.unreferenced_blobs), (40, 1));

    // ub: a base shared by two repositories, one manifest in two, a
    // digest that is both a blob and a manifest of one repository.
    for (repo, blob, size) in [
        ("ub/a", "sha256:base", 1000),
        ("ub/a", "sha256:cfg-a", 10),
        ("ub/b", "sha256:base", 1000),
        ("ub/c", "sha256:solo", 7),
    ] {
        meta.link_blob(&n(repo), &d(blob), size, 1).await.unwrap();
    }
    put_sized(
        meta,
        "ub/a",
        "sha256:m-a",
        5,
        &["sha256:base", "sha256:cfg-a"],
    )
    .await;
    put_sized(meta, "ub/b", "sha256:m-a", 5, &["sha256:base"]).await;
    put_sized(meta, "ub/c", "sha256:solo", 7, &["sha256:solo"]).await;
    let u = meta.usage_summary(&super::ns("ub")).await.unwrap();
    assert_eq!(u.total_bytes, 1000 + 10 + 5 + 7);
    assert_eq!((u.blob_bytes, u.blobs), (1017, 3));
    assert_eq!((u.manifest_bytes, u.manifests), (5, 1));
    let names: Vec<&str> = u.repositories.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["ub/a", "ub/b", "ub/c"]);
    let a = &u.repositories[0];
    assert_eq!(
        (a.unique_bytes, a.shared_bytes, a.total_bytes),
        (10, 1005, 1015)
    );
    assert_eq!((a.blobs, a.manifests), (2, 1));
    let b = &u.repositories[1];
    assert_eq!((b.unique_bytes, b.shared_bytes), (0, 1005));
    let c = &u.repositories[2];
    assert_eq!((c.unique_bytes, c.total_bytes), (7, 7));
    assert_eq!(
        meta.usage_summary(&super::ns("nobody")).await.unwrap(),
        Default::default()
    );
}

async fn run(meta: Meta) {
    usage_sums(&meta).await;
    tag_rules(&meta).await;
    guarded_writes(&meta).await;
    pull_statistics(&meta).await;
    usage_and_quotas(&meta).await;
    meta.close().await;
}

#[tokio::test]
async fn sqlite_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let meta = Meta::open_sqlite(&dir.path().join("berth.db"))
        .await
        .unwrap();
    run(meta).await;
}

#[tokio::test]
async fn postgres_lifecycle() {
    let pg = Postgres::start();
    let deadline = Instant::now() + Duration::from_secs(30);
    let meta = loop {
        match Meta::connect(&pg.url()).await {
            Ok(m) => break m,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("cannot connect to PostgreSQL: {e}"),
        }
    };
    assert_eq!(meta.dialect(), Dialect::Postgres);
    run(meta).await;
}
