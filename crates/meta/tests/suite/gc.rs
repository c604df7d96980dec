//! Garbage collection's reads and conditional sweeps (including races with
//! pushes, which PostgreSQL runs truly concurrently), job leases and runs.

use berth_meta::{AttestationRef, LinkAge, Meta, NewManifest, RefKind, Unreferenced};

use berth_oci::{Digest, RepositoryName};
use berth_testkit::digests::seed;

use super::{actor, d, manifest, n, t};

pub(super) fn image(
    repo: &str,
    digest: &Digest,
    blobs: &[&Digest],
    tags: &[&str],
    at: i64,
) -> NewManifest {
    NewManifest {
        references: blobs
            .iter()
            .map(|b| ((*b).clone(), RefKind::Blob))
            .collect(),
        attestations: Vec::new(),
        required_blobs: blobs.iter().map(|b| (*b).clone()).collect(),
        sparse: false,
        pushed_at: at,
        scan_candidates: Vec::new(),
        total_size: None,
        ..manifest(repo, digest, None, None, tags)
    }
}

pub(super) fn index(
    repo: &str,
    digest: &Digest,
    children: &[&Digest],
    tags: &[&str],
    at: i64,
) -> NewManifest {
    NewManifest {
        media_type: "application/vnd.oci.image.index.v1+json".into(),
        references: children
            .iter()
            .map(|c| ((*c).clone(), RefKind::Manifest))
            .collect(),
        attestations: Vec::new(),
        required_blobs: Vec::new(),
        sparse: false,
        pushed_at: at,
        scan_candidates: Vec::new(),
        total_size: None,
        ..manifest(repo, digest, None, None, tags)
    }
}

fn digests(v: Vec<Unreferenced>) -> Vec<Digest> {
    v.into_iter().map(|u| u.digest).collect()
}

/// Garbage collection's reads and conditional deletes.
pub(super) async fn gc_cases(meta: &Meta) {
    let ours = |v: Vec<berth_meta::Unreferenced>| -> Vec<(Option<RepositoryName>, Digest)> {
        v.into_iter()
            .filter(|u| seed(&u.digest).starts_with("sha256:g"))
            .map(|u| (u.repository, u.digest))
            .collect()
    };
    meta.link_blob(&n("gc/a"), &d("sha256:g1"), 5, 10_000)
        .await
        .unwrap();
    meta.link_blob(&n("gc/a"), &d("sha256:g2"), 7, 10_000)
        .await
        .unwrap();
    meta.link_blob(&n("gc/b"), &d("sha256:g2"), 7, 10_500)
        .await
        .unwrap();
    meta.put_manifest(
        &image("gc/a", &d("sha256:gm"), &[&d("sha256:g1")], &["t"], 10_000),
        &actor(),
    )
    .await
    .unwrap();
    // Only old, unreferenced links count.
    assert!(ours(
        meta.unreferenced_links(LinkAge::Old, 10_000, None, 1000)
            .await
            .unwrap()
    )
    .is_empty());
    assert_eq!(
        ours(
            meta.unreferenced_links(LinkAge::Old, 10_200, None, 1000)
                .await
                .unwrap()
        ),
        vec![(Some(n("gc/a")), d("sha256:g2"))]
    );
    // g2 is still linked (young) in gc/b: not a blob candidate until that
    // link is old too.
    assert!(ours(meta.unreferenced_blobs(10_200, None, 1000).await.unwrap()).is_empty());
    assert_eq!(
        ours(meta.unreferenced_blobs(11_000, None, 1000).await.unwrap()),
        vec![(None, d("sha256:g2"))]
    );
    assert_eq!(
        digests(
            meta.sweep_links(&crate::n("gc/a"), 10_200, 1000)
                .await
                .unwrap()
        ),
        vec![d("sha256:g2")]
    );
    assert_eq!(
        digests(
            meta.sweep_links(&crate::n("gc/a"), 10_200, 1000)
                .await
                .unwrap()
        ),
        Vec::<Digest>::new()
    );
    // The row stays while gc/b links it.
    let candidates = vec![d("sha256:g1"), d("sha256:g2")];
    assert!(meta
        .sweep_blobs(&candidates, 11_000)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        digests(
            meta.sweep_links(&crate::n("gc/b"), 11_000, 1000)
                .await
                .unwrap()
        ),
        vec![d("sha256:g2")]
    );
    assert_eq!(
        meta.sweep_blobs(&candidates, 11_000).await.unwrap(),
        vec![d("sha256:g2")]
    );
    assert!(!meta.blob_recorded(&d("sha256:g2")).await.unwrap());
    assert!(meta.blob_recorded(&d("sha256:g1")).await.unwrap());
    let rows = meta
        .blob_rows(&[d("sha256:g1"), d("sha256:g2")], 11_000)
        .await
        .unwrap();
    assert_eq!(rows.get(&d("sha256:g1")), Some(&false), "referenced: kept");
    assert!(!rows.contains_key(&d("sha256:g2")));

    // Paging: a repository's links are swept a page at a time, and the
    // pages of unreferenced links continue after the last one seen.
    for i in 0..5 {
        meta.link_blob(&n("gc/paged"), &d(&format!("sha256:gp{i}")), 1, 0)
            .await
            .unwrap();
    }
    // The least digest: paging from the start of a repository.
    let lowest = d(&format!("sha256:{}", "0".repeat(64)));
    let first = meta
        .unreferenced_links(LinkAge::Old, 1, Some((&n("gc/paged"), &lowest)), 2)
        .await
        .unwrap();
    let next = meta
        .unreferenced_links(
            LinkAge::Old,
            1,
            Some((&crate::n("gc/paged"), &first[1].digest)),
            2,
        )
        .await
        .unwrap();
    assert_eq!(
        digests(first.into_iter().chain(next).collect()),
        [
            d("sha256:gp0"),
            d("sha256:gp1"),
            d("sha256:gp2"),
            d("sha256:gp3")
        ]
    );
    assert!(meta
        .unreferenced_links(LinkAge::Young, 1, Some((&n("gc/paged"), &lowest)), 10)
        .await
        .unwrap()
        .iter()
        .all(|u| u.repository != Some(n("gc/paged"))));
    assert_eq!(
        meta.sweep_links(&crate::n("gc/paged"), 1, 2)
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        meta.sweep_links(&crate::n("gc/paged"), 1, 2)
            .await
            .unwrap()
            .len(),
        2
    );
    let last = meta.sweep_links(&crate::n("gc/paged"), 1, 2).await.unwrap();
    assert_eq!(digests(last.clone()), [d("sha256:gp4")]);
    assert_eq!((last[0].size, last[0].at), (1, 0));

    // A manifest put after the sweep sees the link gone and fails, with
    // nothing stored.
    let err = meta
        .put_manifest(
            &image(
                "gc/a",
                &d("sha256:gm2"),
                &[&d("sha256:g1"), &d("sha256:g2")],
                &["u"],
                12_000,
            ),
            &actor(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, berth_meta::Error::MissingReference { kind: "blob", digest, .. } if digest == &d("sha256:g2")),
        "{err}"
    );
    assert!(meta
        .manifest(&n("gc/a"), &d("sha256:gm2"))
        .await
        .unwrap()
        .is_none());
    assert!(meta
        .manifest_by_tag(&n("gc/a"), &t("u"))
        .await
        .unwrap()
        .is_none());
    let err = meta
        .put_manifest(
            &index(
                "gc/a",
                &d("sha256:gi"),
                &[&d("sha256:gm"), &d("sha256:nope")],
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
        &index("gc/a", &d("sha256:gi"), &[&d("sha256:gm")], &[], 12_000),
        &actor(),
    )
    .await
    .unwrap();

    // Uploading a blob again refreshes its link's grace period.
    meta.link_blob(&n("gc/again"), &d("sha256:gagain"), 1, 0)
        .await
        .unwrap();
    meta.link_blob(&n("gc/again"), &d("sha256:gagain"), 1, 20_000)
        .await
        .unwrap();
    assert!(!ours(
        meta.unreferenced_links(LinkAge::Old, 10_000, None, 1000)
            .await
            .unwrap()
    )
    .iter()
    .any(|(_, x)| *x == d("sha256:gagain")));

    // Pushes racing with sweeps: whichever commits first wins, and a stored
    // manifest always keeps its links.
    for i in 0..40 {
        let blob = d(&format!("sha256:gr{i}"));
        meta.link_blob(&n("gc/race"), &blob, 1, 0).await.unwrap();
        let m = image("gc/race", &d(&format!("sha256:grm{i}")), &[&blob], &[], 1);
        let (pusher, sweeper) = (meta.clone(), meta.clone());
        let push = tokio::spawn(async move { pusher.put_manifest(&m, &actor()).await });
        let sweep = tokio::spawn(async move {
            sweeper
                .sweep_links(&crate::n("gc/race"), i64::MAX, 1000)
                .await
        });
        let pushed = push.await.unwrap();
        let swept = sweep.await.unwrap().unwrap();
        let stored = meta
            .manifest(&n("gc/race"), &d(&format!("sha256:grm{i}")))
            .await
            .unwrap()
            .is_some();
        let linked = meta
            .repository_blob(&n("gc/race"), &blob)
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
        let blob = d(&format!("sha256:gb{i}"));
        meta.link_blob(&n("gc/b-race"), &blob, 1, 0).await.unwrap();
        meta.sweep_links(&crate::n("gc/b-race"), i64::MAX, 1000)
            .await
            .unwrap();
        let (linker, sweeper, b) = (meta.clone(), meta.clone(), blob.clone());
        let link = tokio::spawn(async move {
            linker
                .link_blob(&n("gc/b-race2"), &b, 1, i64::MAX - 1)
                .await
        });
        let digests = vec![blob.clone()];
        let sweep = tokio::spawn(async move { sweeper.sweep_blobs(&digests, i64::MAX - 1).await });
        link.await.unwrap().unwrap();
        sweep.await.unwrap().unwrap();
        assert!(meta
            .repository_blob(&n("gc/b-race2"), &blob)
            .await
            .unwrap()
            .is_some());
    }
}

/// Leases and run history.
pub(super) async fn job_cases(meta: &Meta) {
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

/// An index whose entries are blobs (BuildKit's registry cache: layers and
/// its cache config) and attestation manifests (docker buildx): the blob
/// entries are references that keep their links from garbage collection
/// while the index is kept, a missing one fails the push, and the
/// attestations are recorded with the image each describes.
pub(super) async fn index_reference_cases(meta: &Meta) {
    let repo = "cache/app";
    for (d, size) in [
        ("sha256:ck1", 100),
        ("sha256:ck2", 200),
        ("sha256:ckc", 30),
        ("sha256:cil", 40),
        ("sha256:cal", 50),
    ] {
        meta.link_blob(&n(repo), &crate::d(d), size, 20_000)
            .await
            .unwrap();
    }
    meta.put_manifest(
        &image(repo, &d("sha256:cimg"), &[&d("sha256:cil")], &[], 20_000),
        &actor(),
    )
    .await
    .unwrap();
    meta.put_manifest(
        &image(repo, &d("sha256:catt"), &[&d("sha256:cal")], &[], 20_000),
        &actor(),
    )
    .await
    .unwrap();
    let cache_entries = vec![d("sha256:ck1"), d("sha256:ck2"), d("sha256:ckc")];
    let mut idx = index(
        repo,
        &d("sha256:cidx"),
        &[&d("sha256:cimg"), &d("sha256:catt")],
        &["buildcache"],
        20_000,
    );
    idx.references
        .extend(cache_entries.iter().map(|b| (b.clone(), RefKind::Blob)));
    idx.required_blobs = cache_entries.clone();
    idx.attestations = vec![AttestationRef {
        manifest: d("sha256:catt"),
        describes: Some(d("sha256:cimg")),
    }];
    // A blob entry that is not linked fails the push, as a layer would.
    let mut broken = idx.clone();
    broken.digest = d("sha256:cbroken");
    broken.tags = Vec::new();
    broken.required_blobs.push(d("sha256:cmissing"));
    let err = meta.put_manifest(&broken, &actor()).await.unwrap_err();
    assert!(
        matches!(&err, berth_meta::Error::MissingReference { kind: "blob", digest, .. } if digest == &d("sha256:cmissing")),
        "{err}"
    );
    meta.put_manifest(&idx, &actor()).await.unwrap();

    let in_repo = |v: Vec<Unreferenced>| -> Vec<Digest> {
        v.into_iter()
            .filter(|u| u.repository.as_ref().is_some_and(|r| r == repo))
            .map(|u| u.digest)
            .collect()
    };
    // Long past every grace period, nothing of the index is collectable.
    assert!(in_repo(
        meta.unreferenced_links(LinkAge::Old, 90_000, None, 1000)
            .await
            .unwrap()
    )
    .is_empty());
    assert!(meta
        .sweep_links(&crate::n(repo), 90_000, 1000)
        .await
        .unwrap()
        .is_empty());

    let inv = meta.inventory(&crate::n(repo)).await.unwrap().unwrap();
    let atts: Vec<_> = inv.attestations().collect();
    assert_eq!(
        atts,
        vec![(
            &d("sha256:cidx"),
            &d("sha256:catt"),
            Some(&d("sha256:cimg"))
        )]
    );
    let mut blobs: Vec<_> = inv
        .blobs()
        .filter(|(p, _, _)| *p == &d("sha256:cidx"))
        .map(|(_, b, size)| (b, size))
        .collect();
    blobs.sort();
    assert_eq!(
        blobs,
        vec![
            (&d("sha256:ck1"), 100),
            (&d("sha256:ck2"), 200),
            (&d("sha256:ckc"), 30)
        ]
    );
    let children: Vec<_> = inv
        .children()
        .filter(|(p, _)| *p == &d("sha256:cidx"))
        .map(|(_, c)| c)
        .collect();
    assert_eq!(children, vec![&d("sha256:catt"), &d("sha256:cimg")]);

    // Deleting the index releases its blob entries (the children remain
    // manifests of their own, with their blobs).
    meta.delete_manifest(&n(repo), &d("sha256:cidx"), &actor())
        .await
        .unwrap()
        .unwrap();
    let mut gone = in_repo(
        meta.unreferenced_links(LinkAge::Old, 90_000, None, 1000)
            .await
            .unwrap(),
    );
    gone.sort();
    assert_eq!(gone, cache_entries);
    assert!(meta
        .inventory(&crate::n(repo))
        .await
        .unwrap()
        .unwrap()
        .attestations()
        .next()
        .is_none());
}
