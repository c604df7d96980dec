//! Vulnerability scan fixtures shared by the scan tests (`scan_jobs`,
//! `scan_policy`, the Docker daemon's `interop::scan_docker`): an OSV
//! advisory against the openssl of [`crate::scan::apk_database`], its
//! import through `berth vulndb import`, a two-platform Alpine image in an
//! OCI layout, a clean image without packages, waiting for a stored scan
//! and for webhook events; reading the audit log and the metrics.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::Berth;
use crate::layout;
use crate::scan::{apk_database, image, write, Compression};
use crate::tools::berth_ok;

/// An OSV record of an Alpine 3.20 advisory against openssl.
pub(crate) fn openssl_advisory(modified: &str, extra: Value) -> Value {
    let mut r = json!({
        "id": "ALPINE-CVE-2099-0002",
        "modified": modified,
        "aliases": ["CVE-2099-0002"],
        "affected": [{"package": {"ecosystem": "Alpine:v3.20", "name": "openssl"},
                      "ranges": [{"type": "ECOSYSTEM",
                                  "events": [{"introduced": "0"}, {"fixed": "3.3.2-r1"}]}]}],
        "severity": [{"type": "CVSS_V3",
                      "score": "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:N/I:H/A:H"}],
    });
    for (k, v) in extra.as_object().unwrap() {
        r[k] = v.clone();
    }
    r
}

pub(crate) fn import(b: &Berth, dir: &Path, name: &str, record: &Value) {
    let osv = dir.join(name);
    std::fs::create_dir_all(&osv).unwrap();
    std::fs::write(osv.join("record.json"), record.to_string()).unwrap();
    berth_ok(
        dir,
        &[
            "vulndb",
            "import",
            osv.to_str().unwrap(),
            "--registry",
            b.addr.as_str(),
        ],
    );
}

/// A two-platform Alpine 3.20 image (both with openssl 3.3.2-r0) tagged
/// `v1` in an OCI layout under `dir`.
pub(crate) fn alpine_index(dir: &Path) -> std::path::PathBuf {
    let root = dir.join("alpine");
    apk_database(&root);
    let other = dir.join("alpine-other");
    apk_database(&other);
    write(&other.join("etc/motd"), b"the other platform\n");
    let layout_dir = dir.join("layout");
    let arm64 = image(&layout_dir, "linux/arm64", &[(&root, Compression::Gzip)]);
    let amd64 = image(&layout_dir, "linux/amd64", &[(&other, Compression::Zstd)]);
    let manifests: Vec<Value> = [(&amd64, "linux/amd64"), (&arm64, "linux/arm64")]
        .iter()
        .map(|(d, p)| {
            let mut v = d.to_json();
            v["platform"] = layout::platform_json(p);
            v
        })
        .collect();
    let index = json!({"schemaVersion": 2, "mediaType": layout::INDEX, "manifests": manifests});
    let index = layout::write_blob(
        &layout_dir,
        layout::INDEX,
        &serde_json::to_vec(&index).unwrap(),
    );
    layout::add_ref(&layout_dir, &index, "v1", None);
    layout_dir
}

/// Waits until `check` holds for the stored scan of `reference` in `repo`.
pub(crate) async fn stored_until(
    c: &reqwest::Client,
    b: &Berth,
    repo: &str,
    reference: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let r = c
            .get(format!(
                "{}/api/v1/repositories/{repo}/manifests/{reference}/scan",
                b.url()
            ))
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        if status == 200 && check(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "no such scan of {repo}:{reference} yet: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// An image without any package (one file), tagged `tag` in the OCI
/// layout `layout_dir` for `platform`: a scan of it finds nothing.
pub(crate) fn clean_image(dir: &Path, layout_dir: &Path, tag: &str, platform: &str) -> String {
    let root = dir.join(format!("clean-{tag}"));
    write(
        &root.join("etc/motd"),
        format!("clean image {tag}\n").as_bytes(),
    );
    let desc = image(layout_dir, platform, &[(&root, Compression::Gzip)]);
    layout::add_ref(layout_dir, &desc, tag, None);
    desc.digest.clone()
}

/// A one-platform Alpine 3.20 image (openssl 3.3.2-r0), gzip layers only
/// (what every client unpacks), tagged `tag` in the OCI layout
/// `layout_dir` for `platform`.
pub(crate) fn alpine_image(dir: &Path, layout_dir: &Path, tag: &str, platform: &str) -> String {
    let root = dir.join(format!("alpine-{tag}"));
    apk_database(&root);
    let desc = image(layout_dir, platform, &[(&root, Compression::Gzip)]);
    layout::add_ref(layout_dir, &desc, tag, None);
    desc.digest.clone()
}

/// Waits until the webhook receiver `got` (`crate::trust::receiver`) has
/// at least `n` events, and returns them.
pub(crate) async fn events_until(
    got: &std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
    n: usize,
) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let events = got.lock().unwrap().clone();
        if events.len() >= n {
            return events;
        }
        assert!(Instant::now() < deadline, "events so far: {events:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `GET url`, as JSON.
pub(crate) async fn get_json(c: &reqwest::Client, url: String) -> Value {
    c.get(url).send().await.unwrap().json().await.unwrap()
}

/// The audit events `query` selects (`action=pull.blocked&...`).
pub(crate) async fn audit_events(c: &reqwest::Client, b: &Berth, query: &str) -> Vec<Value> {
    let audit = get_json(c, format!("{}/api/v1/audit?{query}", b.url())).await;
    audit["events"].as_array().expect("events").clone()
}

/// The `/metrics` text.
pub(crate) async fn metrics(c: &reqwest::Client, b: &Berth) -> String {
    let r = c.get(format!("{}/metrics", b.url())).send().await.unwrap();
    r.text().await.unwrap()
}
