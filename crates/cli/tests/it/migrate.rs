//! `berth migrate`: a populated single-node registry (SQLite + files)
//! moved into PostgreSQL and an S3 bucket (SeaweedFS, signatures checked),
//! interrupted by a damaged blob (the target verifies every digest) and
//! resumed, then served by a cluster of two replicas: every table copied
//! (found generically, so a new table cannot be forgotten), every blob in
//! the bucket, every tag pulls with its digest, every account logs in.

use std::path::{Path, PathBuf};
use std::process::Command;

use berth_meta::Meta;
use berth_testkit::Postgres;
use reqwest::StatusCode;

use berth_store::object::S3Settings;
use berth_store::{BlobStore, BucketStore};

use crate::cluster::{admin, fresh_prefix, manifest_digest, push_small, verify_image, Cluster};
use crate::common::{berth_bin, Berth, ADMIN_PASSWORD};
use crate::s3::weed;
use crate::weed::{ACCESS_KEY, BUCKET, SECRET_KEY};

fn files(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((
                    p.strip_prefix(root).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

fn migrate(data: &Path, url: &str, to: &str) -> std::process::Output {
    let w = weed();
    Command::new(berth_bin())
        .arg("migrate")
        .arg("--data-dir")
        .arg(data)
        .args(["--to-storage", to, "--s3-endpoint", &w.endpoint])
        .arg("--s3-path-style")
        .env("BERTH_TO_DATABASE_URL", url)
        .envs(w.env())
        .output()
        .unwrap()
}

/// Every blob under `s3://BUCKET/prefix`, with its size.
async fn bucket_blobs(prefix: &str) -> Vec<(String, u64)> {
    let w = weed();
    let store = BucketStore::connect(&S3Settings {
        url: format!("s3://{BUCKET}/{prefix}"),
        endpoint: Some(w.endpoint.clone()),
        region: Some("us-east-1".to_owned()),
        path_style: true,
        credentials: Some((ACCESS_KEY.to_owned(), SECRET_KEY.to_owned())),
        ..S3Settings::default()
    })
    .unwrap();
    store
        .list(None, 100_000)
        .await
        .unwrap()
        .into_iter()
        .map(|b| (b.digest.to_string(), b.size))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_single_node_registry_moves_into_the_cluster_whole() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("single");
    let node_dir = work.path().join("node");
    std::fs::create_dir_all(&node_dir).unwrap();
    let base_dir = work.path().to_path_buf();

    // A populated single node: images, an account, a token, pulls.
    let (tags, token) = tokio::task::spawn_blocking({
        let data = data.clone();
        move || {
            let mut node = Berth::launch(
                &data,
                &["--auth", "token"],
                None,
                &node_dir,
                &[("BERTH_ADMIN_PASSWORD", ADMIN_PASSWORD)],
            );
            let base = node.url();
            let mut tags = Vec::new();
            for (i, tag) in ["v1", "v2", "latest"].iter().enumerate() {
                let img = base_dir.join(format!("img-{i}"));
                let d = push_small(&base, "team/app", &img, tag, &[3000 + i, 70_000]);
                tags.push(("team/app".to_owned(), tag.to_string(), d));
            }
            let d = push_small(&base, "other/tool", &base_dir.join("img-x"), "1.0", &[10]);
            tags.push(("other/tool".to_owned(), "1.0".to_owned(), d));
            let http = reqwest::blocking::Client::new();
            let r = admin(http.post(format!("{base}/api/v1/users")))
                .json(&serde_json::json!({"name": "alice", "password": "alice-password-long"}))
                .send()
                .unwrap();
            assert_eq!(r.status(), StatusCode::CREATED);
            let r = admin(http.post(format!("{base}/api/v1/tokens")))
                .json(&serde_json::json!({"name": "ci", "scopes": ["pull"], "patterns": []}))
                .send()
                .unwrap();
            assert_eq!(r.status(), StatusCode::CREATED);
            let token: serde_json::Value = r.json().unwrap();
            for (repo, tag, _) in &tags {
                manifest_digest(&base, repo, tag);
            }
            // A GC run: a job run (with a boolean column) and a lease.
            let r = admin(http.post(format!("{base}/api/v1/gc")))
                .json(&serde_json::json!({}))
                .send()
                .unwrap();
            assert!(r.status().is_success(), "{:?}", r.text());
            node.terminate();
            (tags, token["token"].as_str().unwrap().to_owned())
        }
    })
    .await
    .unwrap();

    let pg = Postgres::start();
    let url = pg.create_database("target");
    let prefix = fresh_prefix("migrate");
    let target = format!("s3://{BUCKET}/{prefix}");

    // Interrupted: a blob damaged on disk in the middle of the copy is
    // refused by the target (its digest is verified as it streams in).
    let source_blobs = files(&data.join("blobs"));
    assert!(source_blobs.len() >= 8, "{}", source_blobs.len());
    let (middle, original) = &source_blobs[source_blobs.len() / 2];
    let damaged = data.join("blobs").join(middle);
    std::fs::write(&damaged, b"not what the digest says").unwrap();
    let out = migrate(&data, &url, &target);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("copying blob"), "{err}");
    assert!(err.contains("digest"), "{err}");
    let marker = pg.psql(
        "target",
        "SELECT value FROM server_keys WHERE name = 'berth-migrate'",
    );
    assert!(marker.contains("\"complete\":false"), "{marker}");
    let partial = bucket_blobs(&prefix).await;
    assert!(
        !partial.is_empty() && partial.len() < source_blobs.len(),
        "{} of {} copied before the damaged one",
        partial.len(),
        source_blobs.len()
    );

    // Resumed: complete; the blobs already there are skipped.
    std::fs::write(&damaged, original).unwrap();
    let out = migrate(&data, &url, &target);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("resuming the migration"), "{err}");
    assert!(
        err.contains(&format!("({} already there)", partial.len())),
        "{err}"
    );
    // Run again: nothing left to do, nothing doubled.
    let out = migrate(&data, &url, &target);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Every table (as the source's catalogue lists them) has the same rows.
    let from = Meta::open_sqlite(&data.join("berth.db")).await.unwrap();
    let to = Meta::connect(&url).await.unwrap();
    let tables = from.tables().await.unwrap();
    assert!(tables.len() >= 20, "{}", tables.len());
    for t in &tables {
        let (a, b) = (
            from.count_rows(&t.name).await.unwrap(),
            to.count_rows(&t.name).await.unwrap(),
        );
        // The target's server_keys also hold the migration marker.
        let b = if t.name == "server_keys" { b - 1 } else { b };
        assert_eq!(a, b, "rows of table {}", t.name);
    }
    assert!(from.count_rows("audit_events").await.unwrap() > 5);
    assert!(from.count_rows("job_runs").await.unwrap() > 0);
    from.close().await;
    to.close().await;
    // Every blob is in the bucket with its size (the file names are the
    // digests' hex).
    let mut expected: Vec<(String, u64)> = source_blobs
        .iter()
        .map(|(p, bytes)| {
            let alg = p.components().next().unwrap().as_os_str().to_string_lossy();
            let hex = p.file_name().unwrap().to_string_lossy();
            (format!("{alg}:{hex}"), bytes.len() as u64)
        })
        .collect();
    expected.sort();
    let mut stored = bucket_blobs(&prefix).await;
    stored.sort();
    assert_eq!(stored, expected);

    // A non-empty target that is not this migration's is refused.
    let other = work.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    Meta::open_sqlite(&other.join("berth.db"))
        .await
        .unwrap()
        .close()
        .await;
    let out = migrate(&other, &url, &format!("s3://{BUCKET}/{prefix}-elsewhere"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("holds a migration from"),
        "{err}"
    );

    // A cluster of two replicas on the result: every tag with its digest
    // (and every blob verified), every account and the token log in.
    tokio::task::spawn_blocking(move || {
        let cluster = Cluster::on(pg, url, target, 2, None);
        let http = reqwest::blocking::Client::new();
        for r in &cluster.replicas {
            for (repo, tag, digest) in &tags {
                assert_eq!(
                    manifest_digest(&r.url(), repo, tag),
                    (StatusCode::OK, Some(digest.clone())),
                    "{repo}:{tag} on {}",
                    r.url()
                );
                verify_image(&r.url(), repo, tag);
            }
            for (user, password) in [
                ("admin", ADMIN_PASSWORD),
                ("alice", "alice-password-long"),
                ("admin", token.as_str()),
            ] {
                let s = http
                    .get(format!("{}/token?service=berth", r.url()))
                    .basic_auth(user, Some(password))
                    .send()
                    .unwrap()
                    .status();
                assert_eq!(s, StatusCode::OK, "{user} logs in on {}", r.url());
            }
        }
        drop(work);
    })
    .await
    .unwrap();
}
