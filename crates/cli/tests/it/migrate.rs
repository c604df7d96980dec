//! `berth migrate`: a populated single-node registry (SQLite + files)
//! moved into PostgreSQL and another blob directory, interrupted and
//! resumed, then served by two replicas: every table copied (found
//! generically, so a new table cannot be forgotten), every blob identical,
//! every tag pulls with its digest, every account logs in.

use std::path::{Path, PathBuf};
use std::process::Command;

use berth_meta::Meta;
use berth_testkit::Postgres;
use reqwest::StatusCode;

use crate::cluster::{admin, manifest_digest, push_small};
use crate::common::{berth_bin, Berth, ADMIN_PASSWORD};

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

fn migrate(data: &Path, url: &str, to: &Path) -> std::process::Output {
    Command::new(berth_bin())
        .arg("migrate")
        .arg("--data-dir")
        .arg(data)
        .arg("--to-storage")
        .arg(to)
        .env("BERTH_TO_DATABASE_URL", url)
        .output()
        .unwrap()
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
    let target = work.path().join("shared");

    // Interrupted: a file where the target needs a blob directory makes
    // the blob copy fail half-way.
    let source_blobs = files(&data.join("blobs"));
    assert!(source_blobs.len() >= 8, "{}", source_blobs.len());
    let middle = &source_blobs[source_blobs.len() / 2].0;
    let prefix_dir = target.join("blobs").join(middle.parent().unwrap());
    std::fs::create_dir_all(prefix_dir.parent().unwrap()).unwrap();
    std::fs::write(&prefix_dir, b"in the way").unwrap();
    let out = migrate(&data, &url, &target);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("copying blob"), "{err}");
    let marker = pg.psql(
        "target",
        "SELECT value FROM server_keys WHERE name = 'berth-migrate'",
    );
    assert!(marker.contains("\"complete\":false"), "{marker}");

    // Resumed: complete.
    std::fs::remove_file(&prefix_dir).unwrap();
    let out = migrate(&data, &url, &target);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("resuming the migration"), "{err}");
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
    // Every blob, byte for byte.
    assert_eq!(files(&target.join("blobs")), source_blobs);

    // A non-empty target that is not this migration's is refused.
    let other = work.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    Meta::open_sqlite(&other.join("berth.db"))
        .await
        .unwrap()
        .close()
        .await;
    let out = migrate(&other, &url, &work.path().join("elsewhere"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("holds a migration from"),
        "{err}"
    );

    // Two replicas on the result: every tag with its digest, every
    // account and the token log in.
    tokio::task::spawn_blocking(move || {
        let replicas: Vec<Berth> = (0..2)
            .map(|i| {
                let dir = work.path().join(format!("r{i}"));
                std::fs::create_dir_all(&dir).unwrap();
                Berth::launch(
                    &target,
                    &["--auth", "token", "--database-url", url.as_str()],
                    None,
                    &dir,
                    &[],
                )
            })
            .collect();
        let http = reqwest::blocking::Client::new();
        for r in &replicas {
            for (repo, tag, digest) in &tags {
                assert_eq!(
                    manifest_digest(&r.url(), repo, tag),
                    (StatusCode::OK, Some(digest.clone())),
                    "{repo}:{tag} on {}",
                    r.url()
                );
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
    })
    .await
    .unwrap();
}
