//! Garbage collection against a real `berth serve`: `berth gc --dry-run`
//! and `berth gc` output, and GC running over and over while clients push,
//! delete and pull.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, UNIX_EPOCH};

use reqwest::{Client, StatusCode};
use serde_json::Value;

use crate::common::Berth;
use crate::oci::{
    client, files_under, image_manifest, push_blob, put_manifest, sha256, OCI_MANIFEST,
};
use crate::tools::berth_ok;

/// Path of a blob's file in the data directory.
fn blob_file(berth: &Berth, digest: &str) -> std::path::PathBuf {
    let hex = digest.trim_start_matches("sha256:");
    berth
        .data_dir
        .join("blobs/sha256")
        .join(&hex[..2])
        .join(hex)
}

#[tokio::test]
async fn gc_dry_run_reports_and_gc_reclaims() {
    let berth = Berth::start_with(&[], Some("gc_grace_period = \"0s\"\ngc_interval = \"0\"\n"));
    let base = berth.url();
    let c = client();
    let (manifest, m) = crate::oci::push_image(&c, &base, "team/app", "v1", "kept").await;
    let stray = push_blob(&c, &base, "team/app", b"stray bytes").await;
    let dir = tempfile::tempdir().unwrap();
    let reg = ["--registry", berth.addr.as_str()];

    let out = berth_ok(dir.path(), &[&["gc", "--dry-run"][..], &reg].concat());
    assert!(out.contains("KIND"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("link") && l.contains("team/app") && l.contains(&stray)),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("blob") && l.contains(&stray)),
        "{out}"
    );
    assert!(
        out.contains(
            "1 links, 1 blobs, 0 uploads; 11 B would be reclaimed (dry run: nothing was deleted)"
        ),
        "{out}"
    );
    assert!(blob_file(&berth, &stray).exists());

    let json: Value = serde_json::from_str(&berth_ok(
        dir.path(),
        &[&["gc", "--dry-run", "--format", "json"][..], &reg].concat(),
    ))
    .unwrap();
    assert_eq!(json["dry_run"], true);
    assert_eq!(json["blobs"][0]["digest"], stray.as_str());
    assert_eq!(json["reclaimed_bytes"], 11);

    let out = berth_ok(dir.path(), &[&["gc"][..], &reg].concat());
    assert!(out.contains("11 B reclaimed"), "{out}");
    assert!(!blob_file(&berth, &stray).exists());
    let r = c
        .head(format!("{base}/v2/team/app/blobs/{stray}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let pulled = pull(&c, &base, "team/app", "v1").await.unwrap();
    assert_eq!(pulled, manifest);
    assert_eq!(sha256(&m), manifest);

    // Nothing left: a second run reclaims nothing; the history has both.
    let out = berth_ok(dir.path(), &[&["gc"][..], &reg].concat());
    assert!(
        out.contains("0 links, 0 blobs, 0 uploads; 0 B reclaimed"),
        "{out}"
    );
    let runs: Value = c
        .get(format!("{base}/api/v1/gc/runs"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let runs = runs["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[1]["summary"]["reclaimed_bytes"], 11);
    let audit: Value = c
        .get(format!("{base}/api/v1/audit?action=gc"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(audit["events"].as_array().unwrap().len(), 2);

    // A malformed body is refused with the OCI error shape.
    let r = c
        .post(format!("{base}/api/v1/gc"))
        .body("{\"dry\":1}")
        .send()
        .await
        .unwrap();
    crate::oci::expect_error(r, 400, "INVALID_ARGUMENT").await;
}

/// Pulls `repo:tag` completely, checking every digest; returns the
/// manifest digest.
async fn pull(c: &Client, base: &str, repo: &str, tag: &str) -> Result<String, String> {
    let r = c
        .get(format!("{base}/v2/{repo}/manifests/{tag}"))
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if r.status() != StatusCode::OK {
        return Err(format!("manifest {repo}:{tag}: {}", r.status()));
    }
    let header = r.headers()["docker-content-digest"]
        .to_str()
        .unwrap()
        .to_owned();
    let body = r.bytes().await.map_err(|e| e.to_string())?;
    if sha256(&body) != header {
        return Err(format!("manifest {repo}:{tag} digest mismatch"));
    }
    let m: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    let mut digests = vec![m["config"]["digest"].as_str().unwrap_or("").to_owned()];
    for l in m["layers"].as_array().into_iter().flatten() {
        digests.push(l["digest"].as_str().unwrap_or("").to_owned());
    }
    for d in digests {
        let r = c
            .get(format!("{base}/v2/{repo}/blobs/{d}"))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if r.status() != StatusCode::OK {
            return Err(format!("blob {d} of {repo}:{tag}: {}", r.status()));
        }
        let data = r.bytes().await.map_err(|e| e.to_string())?;
        if sha256(&data) != d {
            return Err(format!("blob {d} of {repo}:{tag}: content does not match"));
        }
    }
    Ok(header)
}

/// An image the workload pushed: where, and which blobs it references.
#[derive(Clone)]
struct Image {
    repo: String,
    tag: String,
    digest: String,
    blobs: Vec<String>,
}

/// Pushes an image whose layers are a shared base, a layer shared by a
/// family of images, and a unique one; every blob is uploaded (or
/// mounted), as a client that does not trust old links would.
async fn push_one(
    c: &Client,
    base: &str,
    repo: &str,
    tag: &str,
    n: usize,
) -> Result<Image, String> {
    let config = format!("{{\"architecture\":\"amd64\",\"os\":\"linux\",\"n\":{n}}}").into_bytes();
    let shared = b"base layer shared by every image".to_vec();
    let family = format!("family layer {}", n % 5).into_bytes();
    let unique = format!("unique layer {repo} {n} {}", "x".repeat(n % 300)).into_bytes();
    let mut blobs = Vec::new();
    for (i, data) in [&config, &shared, &family, &unique].into_iter().enumerate() {
        let d = sha256(data);
        let mounted = i == 1 && n.is_multiple_of(2) && {
            let r = c
                .post(format!(
                    "{base}/v2/{repo}/blobs/uploads/?mount={d}&from=stable/s0"
                ))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if r.status() == StatusCode::ACCEPTED {
                if let Some(loc) = r.headers().get("location") {
                    let loc = loc.to_str().unwrap_or_default().to_owned();
                    let url = if loc.starts_with('/') {
                        format!("{base}{loc}")
                    } else {
                        loc
                    };
                    let _ = c.delete(url).send().await;
                }
            }
            r.status() == StatusCode::CREATED
        };
        if !mounted {
            let r = c
                .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={d}"))
                .body(data.clone())
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if r.status() != StatusCode::CREATED {
                return Err(format!("blob push {repo} {d}: {}", r.status()));
            }
        }
        blobs.push(d);
    }
    let m = image_manifest(&config, &[&shared, &family, &unique]);
    let r = put_manifest(c, base, repo, tag, OCI_MANIFEST, &m).await;
    if r.status() != StatusCode::CREATED {
        return Err(format!(
            "manifest {repo}:{tag}: {} {:?}",
            r.status(),
            r.text().await
        ));
    }
    Ok(Image {
        repo: repo.to_owned(),
        tag: tag.to_owned(),
        digest: sha256(&m),
        blobs,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gc_runs_safely_while_clients_push_delete_and_pull() {
    let grace_ms = 3_000;
    let berth = Berth::start_with(&[], Some("gc_grace_period = \"3s\"\ngc_interval = \"0\"\n"));
    let base = berth.url();
    let c = client();
    // Images that stay for the whole test, pulled all along.
    let mut stable = Vec::new();
    for i in 0..3 {
        stable.push(
            push_one(&c, &base, &format!("stable/s{i}"), "stable", 1000 + i)
                .await
                .unwrap(),
        );
    }
    let live: Arc<Mutex<BTreeMap<(String, String), Image>>> = Arc::new(Mutex::new(
        stable
            .iter()
            .map(|i| ((i.repo.clone(), i.tag.clone()), i.clone()))
            .collect(),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let failures: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let (pushes, pulls, gcs, collected) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let mut tasks = Vec::new();

    // Pushers: push, sometimes delete what they pushed (its unique blobs
    // become garbage), sometimes leave a blob no manifest will reference.
    for w in 0..3 {
        let (c, base, live, stop, failures, pushes) = (
            c.clone(),
            base.clone(),
            live.clone(),
            stop.clone(),
            failures.clone(),
            pushes.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut n = w * 100_000;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let repo = format!("work/w{w}");
                let tag = format!("t{}", n % 40);
                match push_one(&c, &base, &repo, &tag, n).await {
                    Ok(img) => {
                        pushes.fetch_add(1, Ordering::Relaxed);
                        if n.is_multiple_of(3) {
                            let r = c
                                .delete(format!("{base}/v2/{repo}/manifests/{}", img.digest))
                                .send()
                                .await
                                .unwrap();
                            assert_eq!(r.status(), StatusCode::ACCEPTED);
                            live.lock().unwrap().remove(&(repo.clone(), tag.clone()));
                        } else {
                            live.lock()
                                .unwrap()
                                .insert((repo.clone(), tag.clone()), img);
                        }
                    }
                    Err(e) => failures.lock().unwrap().push(e),
                }
                if n.is_multiple_of(4) {
                    push_blob(&c, &base, &repo, format!("abandoned {n}").as_bytes()).await;
                }
            }
        }));
    }
    // Pullers: the stable images, all the time.
    for _ in 0..2 {
        let (c, base, stop, failures, pulls, stable) = (
            c.clone(),
            base.clone(),
            stop.clone(),
            failures.clone(),
            pulls.clone(),
            stable.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                for img in &stable {
                    match pull(&c, &base, &img.repo, &img.tag).await {
                        Ok(_) => pulls.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            failures.lock().unwrap().push(e);
                            0
                        }
                    };
                }
            }
        }));
    }
    // The collector, over and over.
    {
        let (c, base, stop, failures, gcs, collected) = (
            c.clone(),
            base.clone(),
            stop.clone(),
            failures.clone(),
            gcs.clone(),
            collected.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let r = c.post(format!("{base}/api/v1/gc")).send().await.unwrap();
                if r.status() != StatusCode::OK {
                    failures.lock().unwrap().push(format!("gc: {}", r.status()));
                    continue;
                }
                let report: Value = r.json().await.unwrap();
                collected.fetch_add(report["blobs"].as_array().unwrap().len(), Ordering::Relaxed);
                gcs.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
    }
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(12) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "{} failures: {failures:#?}",
        failures.len()
    );
    let (pushes, pulls, gcs, collected) = (
        pushes.load(Ordering::Relaxed),
        pulls.load(Ordering::Relaxed),
        gcs.load(Ordering::Relaxed),
        collected.load(Ordering::Relaxed),
    );
    eprintln!("{pushes} pushes, {pulls} pulls, {gcs} GC runs collecting {collected} blobs");
    assert!(
        pushes > 30 && pulls > 30 && gcs > 5,
        "{pushes} {pulls} {gcs}"
    );
    assert!(
        collected > 0,
        "garbage older than the grace period was collected"
    );

    // A final run; then every tagged image pulls whole, and nothing
    // unreferenced older than the grace period is left on disk.
    let report: Value = c
        .post(format!("{base}/api/v1/gc"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let cutoff = report["cutoff"].as_i64().unwrap();
    assert_eq!(report["now"].as_i64().unwrap() - cutoff, grace_ms);
    let live = live.lock().unwrap().clone();
    let mut referenced: HashSet<String> = HashSet::new();
    for img in live.values() {
        pull(&c, &base, &img.repo, &img.tag).await.unwrap();
        referenced.extend(img.blobs.iter().cloned());
    }
    // Manifests still stored but untagged (tags moved) reference blobs too:
    // count every blob of every manifest the registry still has.
    referenced.extend(stored_references(&c, &base).await);
    // The database says which links were still within the grace period
    // when the final run swept: their blobs stay even if the file is older
    // (a push writes the file, then commits the link a moment later, and
    // the cutoff may fall in between). Nothing old and unreferenced may be
    // left in the database either.
    let meta = berth_meta::Meta::open_sqlite(&berth.data_dir.join("berth.db"))
        .await
        .unwrap();
    assert_eq!(
        meta.unreferenced_links(berth_meta::LinkAge::Old, cutoff, None, 1000)
            .await
            .unwrap(),
        vec![]
    );
    assert_eq!(
        meta.unreferenced_blobs(cutoff, None, 1000).await.unwrap(),
        vec![]
    );
    let mut unreferenced_old = Vec::new();
    for f in files_under(&berth.data_dir.join("blobs")) {
        let digest = format!("sha256:{}", f.file_name().unwrap().to_str().unwrap());
        let typed = berth_oci::Digest::parse(&digest).unwrap();
        if referenced.contains(&digest) || meta.blob(&typed).await.unwrap().is_some() {
            continue;
        }
        let mtime = std::fs::metadata(&f).unwrap().modified().unwrap();
        let ms = mtime.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
        if ms < cutoff {
            unreferenced_old.push(digest);
        }
    }
    assert!(
        unreferenced_old.is_empty(),
        "left behind: {unreferenced_old:?}"
    );
    assert!(
        files_under(&berth.data_dir.join("gc")).is_empty(),
        "no quarantine left"
    );
}

/// Every blob referenced by a manifest the registry still stores, found
/// through the catalog, the tag lists and the audit log of pushes.
async fn stored_references(c: &Client, base: &str) -> HashSet<String> {
    let mut out = HashSet::new();
    let events: Value = c
        .get(format!("{base}/api/v1/audit?action=push&format=jsonl"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .map(|t| {
            Value::Array(
                t.lines()
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect(),
            )
        })
        .unwrap();
    for e in events.as_array().unwrap() {
        let (repo, digest) = (
            e["repository"].as_str().unwrap(),
            e["digest"].as_str().unwrap(),
        );
        let r = c
            .get(format!("{base}/v2/{repo}/manifests/{digest}"))
            .header("accept", OCI_MANIFEST)
            .send()
            .await
            .unwrap();
        if r.status() != StatusCode::OK {
            continue; // deleted
        }
        let m: Value = r.json().await.unwrap();
        out.insert(m["config"]["digest"].as_str().unwrap().to_owned());
        for l in m["layers"].as_array().unwrap() {
            out.insert(l["digest"].as_str().unwrap().to_owned());
        }
    }
    out
}
