//! Storage usage and namespace quotas against a real `berth serve`: usage
//! matches the bytes on disk with shared layers counted once, and a push
//! over quota is refused (403 DENIED) on every upload path, leaving nothing
//! behind in the data directory.

use serde_json::Value;

use crate::common::{berth_bin, Berth};
use crate::oci::*;

fn cli(b: &Berth, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(berth_bin())
        .args(args)
        .args(["--registry", &b.addr])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json_of(b: &Berth, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let (ok, out, err) = cli(b, &all);
    assert!(ok, "{args:?}: {err}");
    serde_json::from_str(&out).unwrap()
}

/// Every file under the data directory with its size, sorted.
fn snapshot(b: &Berth) -> Vec<(String, u64)> {
    let mut files: Vec<_> = files_under(&b.data_dir)
        .into_iter()
        .filter(|p| !p.to_string_lossy().contains("berth.db"))
        .map(|p| {
            let size = std::fs::metadata(&p).unwrap().len();
            (p.to_string_lossy().into_owned(), size)
        })
        .collect();
    files.sort();
    files
}

fn blob_bytes_on_disk(b: &Berth) -> u64 {
    files_under(&b.data_dir.join("blobs"))
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum()
}

#[tokio::test]
async fn usage_counts_shared_layers_once_and_matches_the_disk() {
    let b = Berth::start();
    let (c, u) = (client(), b.url());
    let base = vec![7u8; 50_000];
    let mut manifest_bytes = 0;
    for (repo, seed) in [("acme/web", "w"), ("acme/api", "a")] {
        let config = format!("{{\"seed\":\"{seed}\"}}").into_bytes();
        let own = format!("own-{seed}").into_bytes();
        push_blob(&c, &u, repo, &config).await;
        push_blob(&c, &u, repo, &base).await;
        push_blob(&c, &u, repo, &own).await;
        let m = image_manifest(&config, &[&base, &own]);
        let r = put_manifest(&c, &u, repo, "v1", OCI_MANIFEST, &m).await;
        assert_eq!(r.status(), 201);
        manifest_bytes += m.len() as u64;
    }
    push_image(&c, &u, "other/x", "v1", "o").await;

    let usage = json_of(&b, &["usage", "acme"]);
    let on_disk = blob_bytes_on_disk(&b);
    let other = json_of(&b, &["usage", "other"]);
    assert_eq!(
        usage["blob_bytes"].as_u64().unwrap() + other["blob_bytes"].as_u64().unwrap(),
        on_disk,
        "blob bytes are the bytes on disk: {usage}"
    );
    assert_eq!(usage["manifest_bytes"], manifest_bytes);
    assert_eq!(
        usage["total_bytes"].as_u64().unwrap(),
        usage["blob_bytes"].as_u64().unwrap() + manifest_bytes
    );
    assert_eq!(usage["blobs"], 5, "the shared base layer once");
    let web = json_of(&b, &["usage", "acme/web"]);
    assert_eq!(web["shared_bytes"], 50_000);
    assert_eq!(
        web["total_bytes"].as_u64().unwrap(),
        web["unique_bytes"].as_u64().unwrap() + 50_000
    );
    let repos = usage["repositories"].as_array().unwrap();
    assert_eq!(repos.len(), 2);
    let sum_unique: u64 = repos
        .iter()
        .map(|r| r["unique_bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(sum_unique + 50_000, usage["total_bytes"].as_u64().unwrap());
    // The table.
    let (ok, out, _) = cli(&b, &["usage", "acme"]);
    assert!(ok);
    assert!(out.starts_with("namespace acme: "), "{out}");
    assert!(
        out.contains("REPOSITORY") && out.contains("acme/web"),
        "{out}"
    );
    assert!(usage["quota"].is_null());
    // An unknown namespace is an error, as an unknown repository is, not
    // an empty 0 B.
    let (ok, out, err) = cli(&b, &["usage", "nosuch"]);
    assert!(!ok, "{out}");
    assert!(err.contains("(404)"), "{err}");
    assert!(err.contains("namespace nosuch is not known"), "{err}");
    let (ok, _, err) = cli(&b, &["usage", "nosuch/app"]);
    assert!(!ok);
    assert!(err.contains("(404)"), "{err}");
}

#[tokio::test]
async fn a_push_over_quota_is_refused_and_leaves_nothing_behind() {
    let b = Berth::start();
    let (c, u) = (client(), b.url());
    let (_, _) = push_image(&c, &u, "acme/app", "v1", "a").await;
    let used = json_of(&b, &["usage", "acme"])["total_bytes"]
        .as_u64()
        .unwrap();
    let limit = used + 1000;
    let (ok, out, err) = cli(&b, &["quota", "set", "acme", &limit.to_string()]);
    assert!(ok, "{err}");
    assert!(out.contains("free"), "{out}");
    let q = json_of(&b, &["quota", "get", "acme"]);
    assert_eq!(
        (q["limit_bytes"].as_u64(), q["available_bytes"].as_u64()),
        (Some(limit), Some(1000))
    );
    let before = snapshot(&b);

    let layer = vec![9u8; 5000];
    let d = sha256(&layer);
    // Monolithic POST with digest and Content-Length.
    let r = c
        .post(format!("{u}/v2/acme/app/blobs/uploads/?digest={d}"))
        .body(layer.clone())
        .send()
        .await
        .unwrap();
    let msg = expect_error(r, 403, "DENIED").await;
    assert!(
        msg.starts_with("storage quota of namespace acme exceeded: blob sha256:")
            && msg.contains(" quota is free "),
        "{msg}"
    );
    // POST + PATCH with Content-Range.
    let r = c
        .post(format!("{u}/v2/acme/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let loc = header(&r, "location").unwrap();
    let r = c
        .patch(format!("{u}{loc}"))
        .header("content-range", format!("0-{}", layer.len() - 1))
        .header("content-type", "application/octet-stream")
        .body(layer.clone())
        .send()
        .await
        .unwrap();
    expect_error(r, 403, "DENIED").await;
    let r = c.get(format!("{u}{loc}")).send().await.unwrap();
    expect_error(r, 404, "BLOB_UPLOAD_UNKNOWN").await;
    // POST + PUT with the whole body.
    let r = c
        .post(format!("{u}/v2/acme/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let loc = header(&r, "location").unwrap();
    let r = c
        .put(format!("{u}{loc}?digest={d}"))
        .body(layer.clone())
        .send()
        .await
        .unwrap();
    expect_error(r, 403, "DENIED").await;
    // A streamed PATCH (chunked transfer encoding, no length): cut off.
    let r = c
        .post(format!("{u}/v2/acme/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let loc = header(&r, "location").unwrap();
    let mut req = format!(
        "PATCH {loc} HTTP/1.1\r\nHost: {}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        b.addr
    );
    for part in layer.chunks(1000) {
        req.push_str(&format!(
            "{:x}\r\n{}\r\n",
            part.len(),
            "\u{9}".repeat(part.len())
        ));
    }
    req.push_str("0\r\n\r\n");
    let answer = raw(&b.addr, &req).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(answer.contains("\"DENIED\""), "{answer}");
    // A manifest that does not fit.
    let big_annotation = "x".repeat(2000);
    let config = b"{\"architecture\":\"amd64\",\"os\":\"linux\",\"seed\":\"a\"}".to_vec();
    push_blob(&c, &u, "acme/app", &config).await; // already held: free
    let m = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, &config), "layers": [],
        "annotations": {"pad": big_annotation},
    }))
    .unwrap();
    let r = put_manifest(&c, &u, "acme/app", "v2", OCI_MANIFEST, &m).await;
    expect_error(r, 403, "DENIED").await;

    // Nothing was left behind: same files, same usage.
    assert_eq!(
        snapshot(&b),
        before,
        "no blob, upload or temporary file remains"
    );
    assert_eq!(
        json_of(&b, &["usage", "acme"])["total_bytes"].as_u64(),
        Some(used)
    );
    // Other namespaces are not limited; content already held is free.
    push_blob(&c, &u, "else/app", &layer).await;
    let r = c
        .post(format!(
            "{u}/v2/acme/app/blobs/uploads/?mount={d}&from=else/app"
        ))
        .send()
        .await
        .unwrap();
    expect_error(r, 403, "DENIED").await;
    let small = vec![1u8; 500];
    push_blob(&c, &u, "acme/app", &small).await;

    // Lifting the quota lets the push through.
    let (ok, _, err) = cli(&b, &["quota", "remove", "acme"]);
    assert!(ok, "{err}");
    let (ok, _, err) = cli(&b, &["quota", "get", "acme"]);
    assert!(!ok && err.contains("no quota"), "{err}");
    push_blob(&c, &u, "acme/app", &layer).await;
    let r = put_manifest(&c, &u, "acme/app", "v2", OCI_MANIFEST, &m).await;
    assert_eq!(r.status(), 201);
    let (ok, _, err) = cli(&b, &["quota", "set", "acme", "1XB"]);
    assert!(!ok && err.contains("invalid quota"), "{err}");
}

/// With authentication on: members read usage and quotas, only site
/// administrators set them (a namespace admin must not raise their own).
#[tokio::test]
async fn quotas_are_set_by_site_admins_only() {
    use berth_meta::accounts::{Role, Visibility};
    use reqwest::Method;

    use crate::auth::{admin, req, Cred, Fixture};

    let f = Fixture::start("").await;
    f.org("acme", Visibility::Private).await;
    let boss = f.user("boss").await;
    f.member("acme", "boss", Role::Admin).await;
    let (c, u) = (&f.c, f.url());
    let quota = format!("{u}/api/v1/namespaces/acme/quota");
    let body = serde_json::json!({"limit_bytes": 1_000_000});
    let r = req(c, Method::PUT, &quota, &boss)
        .json(&body)
        .send()
        .await
        .unwrap();
    expect_error(r, 403, "PERMISSION_DENIED").await;
    let r = req(c, Method::PUT, &quota, &admin())
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = req(c, Method::GET, &quota, &boss).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let q: Value = r.json().await.unwrap();
    assert_eq!(q["limit_bytes"], 1_000_000);
    let r = req(
        c,
        Method::GET,
        &format!("{u}/api/v1/namespaces/acme/usage"),
        &boss,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let r = req(
        c,
        Method::GET,
        &format!("{u}/api/v1/namespaces/acme/usage"),
        &Cred::Anon,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 401);
    let r = req(c, Method::DELETE, &quota, &boss).send().await.unwrap();
    expect_error(r, 403, "PERMISSION_DENIED").await;
}

#[tokio::test]
async fn a_deleted_repository_uses_nothing_and_its_bytes_await_gc() {
    let b = Berth::start_with(&[], Some("gc_grace_period = \"0s\"\ngc_interval = \"0\"\n"));
    let (c, u) = (client(), b.url());
    let base = vec![3u8; 20_000];
    let mut digests = Vec::new();
    for repo in ["acme/gone", "acme/live"] {
        let config = format!("{{\"repo\":\"{repo}\"}}").into_bytes();
        let own = format!("own layer of {repo}").into_bytes();
        for blob in [&config, &base, &own] {
            push_blob(&c, &u, repo, blob).await;
        }
        let m = image_manifest(&config, &[&base, &own]);
        let r = put_manifest(&c, &u, repo, "v1", OCI_MANIFEST, &m).await;
        assert_eq!(r.status(), 201);
        digests.push((sha256(&m), (config.len() + own.len()) as u64));
    }
    let r = c
        .delete(format!("{u}/v2/acme/gone/manifests/{}", digests[0].0))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);

    let usage = json_of(&b, &["usage", "acme"]);
    let repos = usage["repositories"].as_array().unwrap();
    let gone = &repos[0];
    assert_eq!(gone["name"], "acme/gone");
    assert_eq!(
        (&gone["total_bytes"], &gone["blobs"], &gone["manifests"]),
        (&Value::from(0), &Value::from(0), &Value::from(0)),
        "a deleted repository uses nothing: {usage:#}"
    );
    assert_eq!(gone["unreferenced_bytes"], 20_000 + digests[0].1);
    assert_eq!(gone["unreferenced_blobs"], 3);
    let live = &repos[1];
    assert_eq!(live["shared_bytes"], 0, "the base is no longer shared");
    assert_eq!(live["unreferenced_bytes"], 0);
    // The namespace still stores the leftovers, and its quota counts them.
    assert_eq!(
        usage["unreferenced_bytes"], digests[0].1,
        "the base is used by acme/live"
    );
    assert_eq!(
        usage["total_bytes"].as_u64().unwrap(),
        live["total_bytes"].as_u64().unwrap() + digests[0].1
    );
    let (ok, _, err) = cli(&b, &["quota", "set", "acme", "1GiB"]);
    assert!(ok, "{err}");
    let q = json_of(&b, &["quota", "get", "acme"]);
    assert_eq!(q["used_bytes"], usage["total_bytes"]);
    let (ok, out, _) = cli(&b, &["usage", "acme"]);
    assert!(ok);
    assert!(out.contains("AWAITING GC"), "{out}");
    assert!(out.contains("no manifest uses"), "{out}");
    assert_eq!(json_of(&b, &["usage", "acme/gone"])["total_bytes"], 0);

    // GC removes the leftovers: nothing awaits it any more.
    let r = client()
        .post(format!("{}/api/v1/gc", b.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let usage = json_of(&b, &["usage", "acme"]);
    assert_eq!(usage["unreferenced_bytes"], 0, "{usage:#}");
    assert_eq!(
        json_of(&b, &["usage", "acme/gone"])["unreferenced_bytes"],
        0
    );
    assert_eq!(
        json_of(&b, &["quota", "get", "acme"])["used_bytes"],
        usage["total_bytes"]
    );
}
