//! One page of tags: filtered, sorted and cut in the database, with the
//! sizes of its images (shared content counted once), on both engines.

use std::time::{Duration, Instant};

use berth_meta::tag_page::{TagOrder, TagPageQuery};
use berth_meta::{Meta, NewManifest, PullDelta, PullTarget, RefKind};
use berth_testkit::Postgres;

use super::{actor, d, n, t};

const REPO: &str = "tp/app";

fn image(seed: &str, blobs: &[&str], pushed_at: i64, tags: &[&str]) -> NewManifest {
    NewManifest {
        repository: n(REPO),
        digest: d(seed),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        artifact_type: None,
        // 10 bytes of manifest each.
        content: b"0123456789".to_vec(),
        subject: None,
        annotations: None,
        references: blobs.iter().map(|b| (d(b), RefKind::Blob)).collect(),
        attestations: Vec::new(),
        required_blobs: Vec::new(),
        sparse: false,
        tags: tags.iter().map(|x| t(x)).collect(),
        pushed_at,
        scan_candidates: Vec::new(),
        total_size: None,
    }
}

fn names(page: &berth_meta::tag_page::TagPage) -> Vec<&str> {
    page.tags.iter().map(|t| t.name.as_str()).collect()
}

fn q(contains: &str, order: TagOrder, descending: bool, limit: u32, offset: u64) -> TagPageQuery {
    TagPageQuery {
        contains: contains.into(),
        order,
        descending,
        limit,
        offset,
    }
}

async fn run(meta: Meta) {
    let repo = n(REPO);
    for (b, size) in [
        ("sha256:base", 1000),
        ("sha256:top", 100),
        ("sha256:big", 5000),
    ] {
        meta.link_blob(&repo, &d(b), size, 1).await.unwrap();
    }
    // amd: 10 + 1000 + 100; arm: 10 + 1000 + 5000; old: 10 + 100.
    let pushes = [
        image(
            "sha256:amd",
            &["sha256:base", "sha256:top"],
            3_000,
            &["v2-amd"],
        ),
        image(
            "sha256:arm",
            &["sha256:base", "sha256:big"],
            2_000,
            &["v2-arm"],
        ),
        image("sha256:old", &["sha256:top"], 1_000, &["v1", "v1.0"]),
    ];
    for m in &pushes {
        meta.put_manifest(m, &actor()).await.unwrap();
    }
    // An index over amd and arm: 10 + both images, base counted once.
    let mut index = image("sha256:idx", &[], 4_000, &["v2", "latest"]);
    index.media_type = "application/vnd.oci.image.index.v1+json".into();
    index.references = vec![
        (d("sha256:amd"), RefKind::Manifest),
        (d("sha256:arm"), RefKind::Manifest),
    ];
    meta.put_manifest(&index, &actor()).await.unwrap();

    let all = meta
        .tag_page(&repo, &q("", TagOrder::Name, false, 50, 0))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(all.total, 6);
    assert_eq!(
        names(&all),
        vec!["latest", "v1", "v1.0", "v2", "v2-amd", "v2-arm"]
    );
    let size = |name: &str| {
        all.tags
            .iter()
            .find(|t| t.name.as_str() == name)
            .unwrap()
            .size
    };
    assert_eq!(size("v2-amd"), 1110);
    assert_eq!(size("v2-arm"), 6010);
    assert_eq!(size("v1"), 110);
    assert_eq!(
        size("v2"),
        10 + 10 + 10 + 1000 + 100 + 5000,
        "shared base once"
    );
    assert_eq!(size("latest"), size("v2"));
    let latest = &all.tags[0];
    assert_eq!(latest.digest, d("sha256:idx"));
    assert_eq!(latest.pushed_at, 4_000);
    assert_eq!(latest.media_type, "application/vnd.oci.image.index.v1+json");
    assert_eq!(
        all.featured,
        Some((t("latest"), d("sha256:idx"))),
        "latest is featured"
    );

    // Pages.
    let p2 = meta
        .tag_page(&repo, &q("", TagOrder::Name, false, 2, 2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((p2.total, names(&p2)), (6, vec!["v1.0", "v2"]));
    assert_eq!(p2.tags[1].size, size("v2"), "sizes on any page");
    let past = meta
        .tag_page(&repo, &q("", TagOrder::Name, false, 2, 60))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((past.total, past.tags.len()), (6, 0));
    let desc = meta
        .tag_page(&repo, &q("", TagOrder::Name, true, 2, 0))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(names(&desc), vec!["v2-arm", "v2-amd"]);

    // Filter: a substring, case-sensitive, counted over every page.
    let f = meta
        .tag_page(&repo, &q("v2-", TagOrder::Name, false, 1, 0))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((f.total, names(&f)), (2, vec!["v2-amd"]));
    let f = meta
        .tag_page(&repo, &q("V2", TagOrder::Name, false, 10, 0))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(f.total, 0);
    let f = meta
        .tag_page(&repo, &q("%", TagOrder::Name, false, 10, 0))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(f.total, 0, "no LIKE wildcards");

    // Push time, newest first; ties by name.
    let p = meta
        .tag_page(&repo, &q("", TagOrder::Pushed, true, 50, 0))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        names(&p),
        vec!["v2", "latest", "v2-amd", "v2-arm", "v1.0", "v1"]
    );

    // Size, largest first, and a page of it.
    let s = meta
        .tag_page(&repo, &q("", TagOrder::Size, true, 50, 0))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        names(&s),
        vec!["v2", "latest", "v2-arm", "v2-amd", "v1.0", "v1"]
    );
    let s = meta
        .tag_page(&repo, &q("v1", TagOrder::Size, false, 1, 1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((s.total, names(&s)), (2, vec!["v1.0"]));
    assert_eq!(s.tags[0].size, 110);

    // Pulls (as flushed).
    let mut deltas = vec![
        (
            PullTarget::Tag,
            PullDelta {
                repository: repo.clone(),
                key: "v1".into(),
                pulls: 5,
                last_pulled_at: 9_000,
            },
        ),
        (
            PullTarget::Tag,
            PullDelta {
                repository: repo.clone(),
                key: "v2-arm".into(),
                pulls: 2,
                last_pulled_at: 8_000,
            },
        ),
    ];
    meta.add_pulls(&mut deltas).await.unwrap();
    let p = meta
        .tag_page(&repo, &q("", TagOrder::Pulls, true, 3, 0))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(names(&p), vec!["v1", "v2-arm", "v2-amd"]);
    assert_eq!(
        (p.tags[0].pull_count, p.tags[0].last_pulled_at),
        (5, Some(9_000))
    );

    // Without `latest`, the newest push is featured.
    meta.delete_tag(&repo, &t("latest"), &actor())
        .await
        .unwrap();
    let p = meta
        .tag_page(&repo, &q("nothing", TagOrder::Name, false, 50, 0))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((p.total, p.tags.len()), (0, 0));
    assert_eq!(p.featured, Some((t("v2"), d("sha256:idx"))));

    sparse_sizes_follow_the_content(&meta).await;

    assert!(meta
        .tag_page(&n("tp/none"), &TagPageQuery::default())
        .await
        .unwrap()
        .is_none());
    meta.close().await;
}

/// Mirrored (sparse) content stores no total: an index whose platforms
/// are not all here is sized from what is, on every read, in every order.
async fn sparse_sizes_follow_the_content(meta: &Meta) {
    let repo = n("tp/mirror");
    meta.link_blob(&repo, &d("sha256:m-layer"), 700, 1)
        .await
        .unwrap();
    let mut index = image("sha256:m-idx", &[], 5_000, &["m"]);
    index.repository = repo.clone();
    index.sparse = true;
    index.media_type = "application/vnd.oci.image.index.v1+json".into();
    index.references = vec![
        (d("sha256:m-amd"), RefKind::Manifest),
        (d("sha256:m-arm"), RefKind::Manifest),
    ];
    meta.put_manifest(&index, &actor()).await.unwrap();
    let size = |page: berth_meta::tag_page::TagPage| page.tags[0].size;
    for order in [TagOrder::Name, TagOrder::Size] {
        let p = meta
            .tag_page(&repo, &q("m", order, true, 5, 0))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(size(p), 10, "only the index is here ({order:?})");
    }
    let mut amd = image("sha256:m-amd", &["sha256:m-layer"], 5_001, &[]);
    amd.repository = repo.clone();
    amd.sparse = true;
    meta.put_manifest(&amd, &actor()).await.unwrap();
    for order in [TagOrder::Name, TagOrder::Size] {
        let p = meta
            .tag_page(&repo, &q("m", order, true, 5, 0))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(size(p), 10 + 10 + 700, "a platform arrived ({order:?})");
    }
}

/// Reads `manifests.total_size` of `seed` in `tp/app` straight from the
/// SQLite file.
async fn stored_total(url: &str, seed: &str) -> Option<i64> {
    use sqlx::Connection as _;
    let mut c = sqlx::AnyConnection::connect(url).await.unwrap();
    sqlx::query_scalar::<_, Option<i64>>(
        "SELECT m.total_size FROM manifests m JOIN repositories r ON r.id = m.repository_id
         WHERE r.name = 'tp/app' AND m.digest = $1",
    )
    .bind(d(seed).as_str())
    .fetch_one(&mut c)
    .await
    .unwrap()
}

/// Each manifest's total is stored when it is written (images as the
/// caller gives it, indexes summed in the write), the pages read it, and
/// migration 20 fills it for manifests stored before it.
#[tokio::test]
async fn sqlite_totals_are_stored_and_backfilled() {
    use sqlx::Connection as _;
    sqlx::any::install_default_drivers();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("berth.db");
    let url = format!("sqlite://{}", path.display());
    let meta = Meta::open_sqlite(&path).await.unwrap();
    run(meta).await;
    assert_eq!(stored_total(&url, "sha256:amd").await, Some(1110));
    assert_eq!(
        stored_total(&url, "sha256:idx").await,
        Some(10 + 10 + 10 + 1000 + 100 + 5000)
    );
    // What the caller knew is what is stored and shown.
    let meta = Meta::open_sqlite(&path).await.unwrap();
    let mut known = image("sha256:known", &["sha256:top"], 6_000, &["known"]);
    known.total_size = Some(123_456);
    meta.put_manifest(&known, &actor()).await.unwrap();
    let p = meta
        .tag_page(&n(REPO), &q("known", TagOrder::Name, false, 5, 0))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p.tags[0].size, 123_456);
    meta.close().await;

    // A database from before migration 20: the column goes, then comes
    // back filled.
    let mut c = sqlx::AnyConnection::connect(&url).await.unwrap();
    for s in [
        "DROP INDEX manifests_total_size",
        "ALTER TABLE manifests DROP COLUMN total_size",
        "DELETE FROM schema_migrations WHERE version = 20",
    ] {
        sqlx::query(s).execute(&mut c).await.unwrap();
    }
    c.close().await.unwrap();
    let meta = Meta::open_sqlite(&path).await.unwrap();
    meta.close().await;
    assert_eq!(stored_total(&url, "sha256:amd").await, Some(1110));
    assert_eq!(stored_total(&url, "sha256:old").await, Some(110));
    assert_eq!(
        stored_total(&url, "sha256:idx").await,
        Some(10 + 10 + 10 + 1000 + 100 + 5000),
        "an index: its images' content, shared layers once"
    );
    assert_eq!(
        stored_total(&url, "sha256:known").await,
        Some(110),
        "recomputed from the stored sizes"
    );
}

#[tokio::test]
async fn sqlite_tag_pages() {
    let dir = tempfile::tempdir().unwrap();
    let meta = Meta::open_sqlite(&dir.path().join("berth.db"))
        .await
        .unwrap();
    run(meta).await;
}

#[tokio::test]
async fn postgres_tag_pages() {
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
    run(meta).await;
}
