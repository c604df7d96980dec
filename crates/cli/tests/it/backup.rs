//! `berth backup`, `berth backup verify` and `berth restore`: a backup
//! taken while four writers push, restored into a new data directory and
//! served, every tag acknowledged before the backup started pulling with
//! its digest; later backups copy only new blobs (counted); damage to a
//! blob or to the metadata snapshot is caught by `verify` (and by
//! `restore`); a non-empty data directory is refused.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::Value;

use crate::cluster::{manifest_digest, push_small, verify_image};
use crate::common::{berth_bin, Berth, ADMIN_PASSWORD};

fn berth(args: &[&str]) -> Output {
    Command::new(berth_bin())
        .args(args)
        .env_remove("BERTH_DATA_DIR")
        .env_remove("BERTH_DATABASE_URL")
        .env_remove("BERTH_STORAGE")
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn backup(dest: &Path, data: &Path) -> Output {
    berth(&["backup", p(dest), "--data-dir", p(data)])
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The indexes in `dest`, oldest first.
fn indexes(dest: &Path) -> Vec<Value> {
    let mut ids: Vec<PathBuf> = std::fs::read_dir(dest.join("backups"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    ids.sort();
    ids.iter()
        .map(|d| serde_json::from_slice(&std::fs::read(d.join("index.json")).unwrap()).unwrap())
        .collect()
}

fn blob_set(index: &Value) -> std::collections::BTreeSet<String> {
    index["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["digest"].as_str().unwrap().to_owned())
        .collect()
}

fn blob_file(dest: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").unwrap();
    dest.join("blobs/sha256").join(&hex[..2]).join(hex)
}

fn flip_byte(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = at.min(bytes.len() - 1);
    bytes[at] ^= 0x01;
    // Blob files are read-only.
    let mut perms = std::fs::metadata(path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(path, perms).unwrap();
    std::fs::write(path, bytes).unwrap();
}

type Acked = Arc<Mutex<Vec<(String, String, String, Instant)>>>;

#[test]
fn a_backup_taken_during_pushes_restores_every_acknowledged_tag() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let dest = work.path().join("backup");
    let node = Berth::launch(
        &data,
        &["--auth", "token"],
        None,
        work.path(),
        &[("BERTH_ADMIN_PASSWORD", ADMIN_PASSWORD)],
    );
    let base = node.url();

    // Content from before: acknowledged long before the backup.
    let acked: Acked = Arc::default();
    for i in 0..3 {
        let img = work.path().join(format!("before-{i}"));
        let tag = format!("v{i}");
        let d = push_small(&base, "team/app", &img, &tag, &[2000 + i, 40_000]);
        acked
            .lock()
            .unwrap()
            .push(("team/app".into(), tag, d, Instant::now()));
    }

    // Four writers push new images, one after the other each, until the
    // backup has finished.
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (base, stop, acked) = (base.clone(), stop.clone(), acked.clone());
            let dir = work.path().join(format!("writer-{w}"));
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) || n < 3 {
                    let tag = format!("w{w}-{n}");
                    let repo = format!("writers/w{w}");
                    let d = push_small(&base, &repo, &dir.join(&tag), &tag, &[1000 + n, 5000]);
                    acked.lock().unwrap().push((repo, tag, d, Instant::now()));
                    n += 1;
                }
            })
        })
        .collect();
    // Let every writer get going, then back up.
    while acked.lock().unwrap().len() < 3 + 4 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let backup_started = Instant::now();
    let out = backup(&dest, &data);
    let backup_ended = Instant::now();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    assert!(out.status.success(), "{}", stderr(&out));
    let acked = acked.lock().unwrap().clone();
    let during = acked
        .iter()
        .filter(|(.., at)| *at > backup_started && *at < backup_ended)
        .count();
    let before: Vec<_> = acked
        .iter()
        .filter(|(.., at)| *at < backup_started)
        .cloned()
        .collect();
    assert!(before.len() >= 7, "{}", before.len());
    eprintln!(
        "backup: {} tags acknowledged before it, {during} while it ran, {} in all",
        before.len(),
        acked.len()
    );
    let first = indexes(&dest).pop().unwrap();
    assert_eq!(first["kind"], "full");
    assert_eq!(
        first["copied"]["blobs"].as_u64().unwrap() as usize,
        blob_set(&first).len()
    );

    // Restored into a new data directory and served.
    let restored = work.path().join("restored");
    let out = berth(&["restore", p(&dest), "--data-dir", p(&restored)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rwork = work.path().join("restored-work");
    std::fs::create_dir_all(&rwork).unwrap();
    let copy = Berth::launch(
        &restored,
        &["--auth", "token"],
        None,
        &rwork,
        &[("BERTH_ADMIN_PASSWORD", ADMIN_PASSWORD)],
    );
    let rbase = copy.url();
    for (repo, tag, digest, _) in &before {
        let (status, d) = manifest_digest(&rbase, repo, tag);
        assert_eq!(status, 200, "{repo}:{tag} in the restored registry");
        assert_eq!(d.as_deref(), Some(digest.as_str()), "{repo}:{tag}");
        verify_image(&rbase, repo, tag);
    }
    // What was pushed while the backup ran is there whole or not at all.
    let mut later_present = 0;
    for (repo, tag, digest, _) in acked.iter().filter(|(.., at)| *at >= backup_started) {
        let (status, d) = manifest_digest(&rbase, repo, tag);
        if status == 200 {
            assert_eq!(d.as_deref(), Some(digest.as_str()));
            verify_image(&rbase, repo, tag);
            later_present += 1;
        }
    }
    eprintln!("restore: {later_present} of the tags pushed during the backup are in it");
    drop(copy);

    // A second backup copies only what the first does not hold (the
    // pushes that raced the first); a third, after one more image of
    // three new blobs, copies exactly those three.
    let out = backup(&dest, &data);
    assert!(out.status.success(), "{}", stderr(&out));
    let second = indexes(&dest).pop().unwrap();
    let (b1, b2) = (blob_set(&first), blob_set(&second));
    assert_eq!(
        second["copied"]["blobs"].as_u64().unwrap() as usize,
        b2.difference(&b1).count()
    );
    assert_eq!(
        second["copied"]["skipped"].as_u64().unwrap() as usize,
        b2.intersection(&b1).count()
    );
    push_small(
        &base,
        "team/app",
        &work.path().join("after"),
        "v9",
        &[3333, 4444],
    );
    let out = backup(&dest, &data);
    assert!(out.status.success(), "{}", stderr(&out));
    let third = indexes(&dest).pop().unwrap();
    assert_eq!(third["copied"]["blobs"], 3, "{third}");
    assert_eq!(
        third["copied"]["skipped"].as_u64().unwrap() as usize,
        b2.len()
    );
    assert!(stderr(&out).contains("3 copied"), "{}", stderr(&out));
    assert_eq!(indexes(&dest).len(), 3);

    let out = berth(&["backup", "verify", p(&dest)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("3 backups"), "{}", stderr(&out));

    // A restore never writes into a data directory in use.
    let out = berth(&["restore", p(&dest), "--data-dir", p(&data)]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not empty"), "{}", stderr(&out));
}

#[test]
fn verify_catches_a_flipped_byte_in_a_blob_and_in_the_metadata() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let dest = work.path().join("backup");
    let node = Berth::launch(
        &data,
        &["--auth", "token"],
        None,
        work.path(),
        &[("BERTH_ADMIN_PASSWORD", ADMIN_PASSWORD)],
    );
    push_small(
        &node.url(),
        "team/app",
        &work.path().join("img"),
        "v1",
        &[5000, 9000],
    );
    let out = backup(&dest, &data);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = berth(&["backup", "verify", p(&dest)]);
    assert!(out.status.success(), "{}", stderr(&out));

    // A flipped byte in a blob: verify names the blob; restore refuses.
    let index = indexes(&dest).pop().unwrap();
    let id = index["id"].as_str().unwrap().to_owned();
    let victim = index["blobs"][0]["digest"].as_str().unwrap().to_owned();
    let file = blob_file(&dest, &victim);
    let good = std::fs::read(&file).unwrap();
    flip_byte(&file, 100);
    let out = berth(&["backup", "verify", p(&dest)]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains(&format!("blob {victim} is corrupt")), "{err}");
    assert!(err.contains(&id), "{err}");
    let out = berth(&[
        "restore",
        p(&dest),
        "--data-dir",
        p(&work.path().join("r1")),
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains(&victim), "{}", stderr(&out));
    std::fs::write(&file, &good).unwrap();
    let out = berth(&["backup", "verify", p(&dest)]);
    assert!(out.status.success(), "{}", stderr(&out));

    // A flipped byte in the metadata snapshot.
    let db = dest.join("backups").join(&id).join("berth.db");
    let good_db = std::fs::read(&db).unwrap();
    flip_byte(&db, good_db.len() / 2);
    let out = berth(&["backup", "verify", p(&dest)]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("metadata snapshot") && err.contains("corrupt"),
        "{err}"
    );
    let out = berth(&[
        "restore",
        p(&dest),
        "--data-dir",
        p(&work.path().join("r2")),
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("corrupt"), "{}", stderr(&out));
    std::fs::write(&db, &good_db).unwrap();

    // A blob gone from the backup.
    std::fs::remove_file(&file).unwrap();
    let out = berth(&["backup", "verify", p(&dest), "--backup", &id]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains(&format!("blob {victim} is missing")), "{err}");
}

/// `berth` with the test S3 server's credentials.
fn berth_s3(args: &[&str]) -> Output {
    let w = crate::s3::weed();
    Command::new(berth_bin())
        .args(args)
        .args(["--s3-endpoint", &w.endpoint, "--s3-path-style"])
        .envs(w.env())
        .env_remove("BERTH_DATA_DIR")
        .env_remove("BERTH_DATABASE_URL")
        .env_remove("BERTH_STORAGE")
        .output()
        .unwrap()
}

/// `N blobs (..), C copied (..), S already there` of a backup's report.
fn copied_and_there(output: &str) -> (u64, u64) {
    let report = output
        .lines()
        .find(|l| l.starts_with("berth backup: backup "))
        .unwrap_or_else(|| panic!("no summary in {output}"));
    let number_before = |word: &str| -> u64 {
        let at = report
            .find(word)
            .unwrap_or_else(|| panic!("{word:?} in {report}"));
        report[..at]
            .split_whitespace()
            .last()
            .unwrap()
            .parse()
            .unwrap()
    };
    (number_before(" copied ("), number_before(" already there"))
}

#[test]
fn a_backup_to_an_object_store_prefix_is_incremental_verified_and_restored() {
    use crate::weed::{ACCESS_KEY, BUCKET, SECRET_KEY};
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let node = Berth::launch(
        &data,
        &["--auth", "token"],
        None,
        work.path(),
        &[("BERTH_ADMIN_PASSWORD", ADMIN_PASSWORD)],
    );
    let v1 = push_small(
        &node.url(),
        "team/app",
        &work.path().join("img1"),
        "v1",
        &[5000, 9000],
    );
    let prefix = crate::cluster::fresh_prefix("backup");
    let dest = format!("s3://{BUCKET}/{prefix}");
    let out = berth_s3(&["backup", &dest, "--data-dir", p(&data)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(copied_and_there(&stderr(&out)), (3, 0), "{}", stderr(&out));

    // The second backup copies only what was pushed in between.
    let v2 = push_small(
        &node.url(),
        "team/app",
        &work.path().join("img2"),
        "v2",
        &[7000],
    );
    let out = berth_s3(&["backup", &dest, "--data-dir", p(&data)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(copied_and_there(&stderr(&out)), (2, 3), "{}", stderr(&out));
    let out = berth_s3(&["backup", "verify", &dest]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("2 backups and 5 blobs"),
        "{}",
        stderr(&out)
    );

    // Restored from the bucket and served: both tags, same digests.
    let restored = work.path().join("restored");
    let out = berth_s3(&["restore", &dest, "--data-dir", p(&restored)]);
    assert!(out.status.success(), "{}", stderr(&out));
    drop(node);
    let again = Berth::launch(&restored, &["--auth", "token"], None, work.path(), &[]);
    for (tag, digest) in [("v1", &v1), ("v2", &v2)] {
        let (status, got) = manifest_digest(&again.url(), "team/app", tag);
        assert_eq!(status.as_u16(), 200, "{tag}");
        assert_eq!(got.as_deref(), Some(digest.as_str()), "{tag}");
        verify_image(&again.url(), "team/app", tag);
    }

    // A blob damaged in the bucket is named by verify.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let w = crate::s3::weed();
    let raw = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(&w.endpoint)
        .with_bucket_name(BUCKET)
        .with_region("us-east-1")
        .with_access_key_id(ACCESS_KEY)
        .with_secret_access_key(SECRET_KEY)
        .with_allow_http(true)
        .build()
        .unwrap();
    let manifest = crate::layout::read_json(&work.path().join("img2"), &v2);
    let victim = manifest["layers"][0]["digest"].as_str().unwrap().to_owned();
    let hex = victim.strip_prefix("sha256:").unwrap();
    let key = object_store::path::Path::from(format!("{prefix}/blobs/sha256/{}/{hex}", &hex[..2]));
    rt.block_on(async {
        use object_store::ObjectStoreExt as _;
        let mut bytes = raw.get(&key).await.unwrap().bytes().await.unwrap().to_vec();
        bytes[100] ^= 0x01;
        raw.put(&key, bytes.into()).await.unwrap();
    });
    let out = berth_s3(&["backup", "verify", &dest]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains(&format!("blob {victim} is corrupt")), "{err}");
}

/// The PostgreSQL procedure of docs/operations.md, as written: `pg_dump`
/// of the running registry's database, then `berth backup --blobs-only`;
/// restored with `createdb`, `pg_restore --no-owner` and `berth restore`,
/// and served: every tag pulls with its digest.
#[test]
fn a_postgres_deployment_is_backed_up_with_pg_dump_and_restored() {
    use berth_testkit::Postgres;
    let pg = Postgres::start();
    let url = pg.create_database("registry");
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let node = Berth::launch(
        &data,
        &["--auth", "token", "--database-url", &url],
        None,
        work.path(),
        &[("BERTH_ADMIN_PASSWORD", ADMIN_PASSWORD)],
    );
    let mut tags = Vec::new();
    for (i, tag) in ["v1", "v2"].iter().enumerate() {
        let img = work.path().join(format!("img-{i}"));
        let d = push_small(&node.url(), "team/app", &img, tag, &[4000 + i, 30_000]);
        tags.push((*tag, d));
    }

    // 1. the metadata, a consistent dump while berth runs; 2. the blobs.
    let dest = work.path().join("backup");
    std::fs::create_dir_all(&dest).unwrap();
    let dump = dest.join("metadata.pgdump");
    let out = Command::new(Postgres::tool("pg_dump"))
        .args(["--format=custom", "--file", p(&dump), &url])
        .output()
        .unwrap();
    assert!(out.status.success(), "pg_dump: {}", stderr(&out));
    let out = berth(&[
        "backup",
        p(&dest),
        "--blobs-only",
        "--database-url",
        &url,
        "--data-dir",
        p(&data),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = berth(&["backup", "verify", p(&dest)]);
    assert!(out.status.success(), "{}", stderr(&out));
    drop(node);

    // Restored into a new database and a new data directory, and served.
    let restored_url = pg.create_database("berth_restored");
    let out = Command::new(Postgres::tool("pg_restore"))
        .args(["--no-owner", "--dbname", &restored_url, p(&dump)])
        .output()
        .unwrap();
    assert!(out.status.success(), "pg_restore: {}", stderr(&out));
    let restored = work.path().join("restored");
    let out = berth(&["restore", p(&dest), "--data-dir", p(&restored)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let again = Berth::launch(
        &restored,
        &["--auth", "token", "--database-url", &restored_url],
        None,
        work.path(),
        &[],
    );
    for (tag, digest) in &tags {
        let (status, got) = manifest_digest(&again.url(), "team/app", tag);
        assert_eq!(status.as_u16(), 200, "{tag}");
        assert_eq!(got.as_deref(), Some(digest.as_str()), "{tag}");
        verify_image(&again.url(), "team/app", tag);
    }
}
