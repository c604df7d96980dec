//! The inventories kept between reads on SQLite: after every kind of write
//! of a repository, what `Meta::inventory` answers is what the database
//! holds (read by a second handle on the same file, which keeps nothing
//! yet), never the copy from before the write.

use std::path::Path;
use std::sync::Arc;

use berth_meta::accounts::{OrgDeletion, Visibility};
use berth_meta::{Deletion, ManifestTarget, Meta, PullDelta, PullTarget, RefKind, TagGuard};

use super::{actor, d, manifest, n, t};

const REPO: &str = "acme/app";

/// Reads the inventory through `meta` (kept or read) and through a fresh
/// handle, and checks they agree; returns it.
async fn agrees(meta: &Meta, path: &Path, step: &str) -> Option<Arc<berth_meta::Inventory>> {
    let kept = meta.inventory(&n(REPO)).await.unwrap();
    let fresh = Meta::open_sqlite(path).await.unwrap();
    let read = fresh.inventory(&n(REPO)).await.unwrap();
    fresh.close().await;
    assert_eq!(kept, read, "after {step}: the inventory is the database's");
    // Read twice: the second answer is the kept copy, the same value
    // (none is kept while a referenced blob's size is unknown).
    let again = meta.inventory(&n(REPO)).await.unwrap();
    if let (Some(a), Some(b)) = (&kept, &again) {
        let sizes_known = a
            .references
            .iter()
            .all(|r| r.kind == RefKind::Manifest || r.blob_size.is_some());
        assert_eq!(
            Arc::ptr_eq(a, b),
            sizes_known,
            "after {step}: the second read is kept if every size is known"
        );
    }
    kept
}

fn none() -> TagGuard {
    Arc::new(|_| None)
}

fn pull(target: PullTarget, key: &str, at: i64) -> (PullTarget, PullDelta) {
    let delta = PullDelta {
        repository: n(REPO),
        key: key.into(),
        pulls: 1,
        last_pulled_at: at,
    };
    (target, delta)
}

#[tokio::test]
async fn every_write_of_a_repository_drops_its_kept_inventory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("berth.db");
    let meta = Meta::open_sqlite(&path).await.unwrap();
    let a = actor();
    assert!(meta
        .create_org("acme", Visibility::Private, None, &a)
        .await
        .unwrap());
    assert!(agrees(&meta, &path, "nothing").await.is_none());
    for b in ["sha256:layer", "sha256:config"] {
        meta.link_blob(&n(REPO), &d(b), 10, 1).await.unwrap();
    }
    meta.put_manifest(&manifest(REPO, &d("sha256:m1"), None, None, &["v1"]), &a)
        .await
        .unwrap();
    let inv = agrees(&meta, &path, "a tagged push").await.unwrap();
    assert_eq!(inv.tags.len(), 1);

    // A push by digest moves no tag, and a referrer names a subject.
    meta.put_manifest(&manifest(REPO, &d("sha256:m2"), None, None, &[]), &a)
        .await
        .unwrap();
    let inv = agrees(&meta, &path, "a push by digest").await.unwrap();
    assert_eq!(inv.manifests.len(), 2);
    let sig = manifest(
        REPO,
        &d("sha256:sig"),
        Some(&d("sha256:m1")),
        Some("sig"),
        &[],
    );
    meta.put_manifest(&sig, &a).await.unwrap();
    agrees(&meta, &path, "a referrer").await;

    meta.put_manifest(&manifest(REPO, &d("sha256:m2"), None, None, &["v1"]), &a)
        .await
        .unwrap();
    let inv = agrees(&meta, &path, "a tag move").await.unwrap();
    assert_eq!(inv.tags[0].digest, d("sha256:m2"));

    meta.add_pulls(&mut vec![
        pull(PullTarget::Tag, "v1", 50),
        pull(PullTarget::Manifest, d("sha256:m2").as_str(), 50),
    ])
    .await
    .unwrap();
    let inv = agrees(&meta, &path, "a pull flush").await.unwrap();
    assert_eq!(inv.tags[0].pull_count, 1);
    // Counted into the kept copy: an older pull does not move the last
    // pull back, two deltas of one tag add up, a tag or manifest that is
    // not there is left out.
    meta.add_pulls(&mut vec![
        pull(PullTarget::Tag, "v1", 20),
        pull(PullTarget::Tag, "v1", 70),
        pull(PullTarget::Tag, "gone", 70),
        pull(PullTarget::Manifest, d("sha256:m1").as_str(), 30),
        pull(PullTarget::Manifest, d("sha256:nothing").as_str(), 30),
    ])
    .await
    .unwrap();
    let inv = agrees(&meta, &path, "a second pull flush").await.unwrap();
    assert_eq!(
        (inv.tags[0].pull_count, inv.tags[0].last_pulled_at),
        (3, Some(70))
    );

    meta.set_tag_times(&n(REPO), &t("v1"), 7, Some(8))
        .await
        .unwrap();
    meta.set_manifest_times(&n(REPO), &d("sha256:m2"), 7, None)
        .await
        .unwrap();
    let inv = agrees(&meta, &path, "new times").await.unwrap();
    assert_eq!(inv.tags[0].updated_at, 7);

    // A manifest listing a blob not stored yet: its size is unknown until
    // the blob is pushed (to any repository), which drops nothing.
    let mut early = manifest(REPO, &d("sha256:early"), None, None, &[]);
    early.references.push((d("sha256:late"), RefKind::Blob));
    meta.put_manifest(&early, &a).await.unwrap();
    let inv = agrees(&meta, &path, "a manifest of an unstored blob")
        .await
        .unwrap();
    let late = |inv: &berth_meta::Inventory| {
        inv.references
            .iter()
            .find(|r| r.child == d("sha256:late"))
            .map(|r| r.blob_size)
    };
    assert_eq!(late(&inv), Some(None));
    meta.link_blob(&n("other/repo"), &d("sha256:late"), 99, 1)
        .await
        .unwrap();
    let inv = agrees(&meta, &path, "the blob pushed elsewhere")
        .await
        .unwrap();
    assert_eq!(late(&inv), Some(Some(99)));
    assert!(meta
        .delete_manifest(&n(REPO), &d("sha256:early"), &a)
        .await
        .unwrap()
        .is_some());
    agrees(&meta, &path, "its deletion").await;
    // The blob's row deleted by garbage collection (no repository links
    // it any more) while a manifest here still lists it.
    let mut gc_ref = manifest(REPO, &d("sha256:gc-ref"), None, None, &[]);
    gc_ref.references.push((d("sha256:late"), RefKind::Blob));
    meta.put_manifest(&gc_ref, &a).await.unwrap();
    agrees(&meta, &path, "a manifest of a blob stored elsewhere").await;
    assert!(meta
        .unlink_blob(&n("other/repo"), &d("sha256:late"), &a)
        .await
        .unwrap());
    let swept = meta.sweep_blobs(&[d("sha256:late")], 2).await.unwrap();
    assert_eq!(swept, vec![d("sha256:late")]);
    let inv = agrees(&meta, &path, "its row swept").await.unwrap();
    assert_eq!(late(&inv), Some(None));
    assert!(meta
        .delete_manifest(&n(REPO), &d("sha256:gc-ref"), &a)
        .await
        .unwrap()
        .is_some());
    agrees(&meta, &path, "that manifest's deletion").await;

    // The guarded writes of the tag rules.
    meta.put_manifest_guarded(
        &manifest(REPO, &d("sha256:m3"), None, None, &["dev"]),
        none(),
        &a,
    )
    .await
    .unwrap();
    agrees(&meta, &path, "a guarded push").await;
    assert!(meta
        .delete_tag_guarded(&n(REPO), &t("dev"), none(), &a)
        .await
        .unwrap());
    agrees(&meta, &path, "a guarded tag deletion").await;
    assert!(meta
        .delete_manifest_guarded(&n(REPO), &d("sha256:m3"), none(), &a)
        .await
        .unwrap()
        .is_some());
    agrees(&meta, &path, "a guarded manifest deletion").await;

    // Retention's and the mirror's conditional deletions.
    let deleted = meta
        .retention_delete_tag(&n(REPO), &t("v1"), &d("sha256:m2"), none(), &a, "{}".into())
        .await
        .unwrap();
    assert_eq!(deleted, Deletion::Deleted);
    let inv = agrees(&meta, &path, "retention deleting a tag")
        .await
        .unwrap();
    assert!(inv.tags.is_empty());
    let target = |digest: &str, subject: Option<&str>| ManifestTarget {
        digest: d(digest),
        with_tags: Vec::new(),
        subject: subject.map(d),
    };
    let deleted = meta
        .evict_manifest(&n(REPO), target("sha256:m2", None), none(), &a, "{}".into())
        .await
        .unwrap();
    assert_eq!(deleted, Deletion::Deleted);
    agrees(&meta, &path, "the mirror evicting a manifest").await;
    assert!(meta
        .delete_manifest(&n(REPO), &d("sha256:m1"), &a)
        .await
        .unwrap()
        .is_some());
    agrees(&meta, &path, "a manifest deletion").await;
    let deleted = meta
        .retention_delete_manifest(
            &n(REPO),
            target("sha256:sig", None),
            none(),
            &a,
            "{}".into(),
        )
        .await
        .unwrap();
    assert_eq!(deleted, Deletion::Deleted);
    let inv = agrees(&meta, &path, "retention deleting a manifest")
        .await
        .unwrap();
    assert!(inv.manifests.is_empty());

    meta.put_manifest(&manifest(REPO, &d("sha256:m4"), None, None, &["v4"]), &a)
        .await
        .unwrap();
    assert!(meta.delete_tag(&n(REPO), &t("v4"), &a).await.unwrap());
    agrees(&meta, &path, "a tag deletion").await;

    // The namespace deleted with its repositories, and founded again.
    meta.put_manifest(&manifest(REPO, &d("sha256:m5"), None, None, &["v5"]), &a)
        .await
        .unwrap();
    agrees(&meta, &path, "a push before the deletion").await;
    let gone = meta.delete_org("acme", true, &a).await.unwrap();
    assert_eq!(gone, OrgDeletion::Deleted(vec![n(REPO)]));
    assert!(agrees(&meta, &path, "the namespace's deletion")
        .await
        .is_none());
    assert!(meta
        .create_org("acme", Visibility::Private, None, &a)
        .await
        .unwrap());
    for b in ["sha256:layer", "sha256:config"] {
        meta.link_blob(&n(REPO), &d(b), 10, 1).await.unwrap();
    }
    meta.put_manifest(&manifest(REPO, &d("sha256:m6"), None, None, &["v6"]), &a)
        .await
        .unwrap();
    let inv = agrees(&meta, &path, "the namespace founded again")
        .await
        .unwrap();
    assert_eq!(inv.tags.len(), 1);
    assert_eq!(inv.tags[0].name.as_str(), "v6");
    meta.close().await;
}
