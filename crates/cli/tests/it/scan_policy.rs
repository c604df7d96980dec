//! Pull policies on vulnerability scans, through real clients against a
//! real `berth serve`: skopeo and podman are refused a vulnerable image
//! with berth's message (the policy, the worst findings, what to do), get
//! a clean one, get the vulnerable one while an allowance covers its
//! finding and not once it expired; an image without a stored scan under
//! `unscanned = allow` and `deny` (and with scan on push, a refusal that
//! queues the scan so a retry succeeds); the reads signing and scanning
//! need stay open (HEAD, blobs, tag lists, referrers, a cosign-style
//! signature and an SBOM referrer of the blocked image). Refusals are
//! audited and counted. With authentication on: who may set the policy
//! and allowances, and site admins pull past it.

use std::time::{Duration, Instant};

use berth_meta::accounts::{Role, Visibility};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::auth::{admin, req, Fixture};
use crate::common::Berth;
use crate::interop::{require, run, Clients};
use crate::layout;
use crate::oci::{
    client, get_manifest, head_manifest, push_blob, put_manifest, sha256, OCI_MANIFEST,
};
use crate::scan_fixtures::{
    alpine_index, audit_events, clean_image, import, metrics, openssl_advisory,
};
use crate::tools::{berth, berth_ok};
use crate::trust::{sig_tag, sign, Signer};

/// `berth scan ARGS --registry B`, asserting success.
fn scan_cli(b: &Berth, dir: &std::path::Path, args: &[&str]) -> String {
    let mut all = vec!["scan"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--registry", &b.addr]);
    berth_ok(dir, &all)
}

/// skopeo copies `image` (`NS/REPO:TAG`) of `b` into an OCI layout: `Ok`
/// or skopeo's stderr.
fn skopeo_pull(c: &Clients, b: &Berth, image: &str) -> Result<(), String> {
    let tag = image.rsplit(':').next().unwrap();
    c.skopeo_pull(
        &format!("docker://{}/{image}", b.addr),
        &c.dir("pulled"),
        tag,
    )
}

#[tokio::test]
async fn vulnerable_pulls_refused_through_skopeo_and_podman() {
    let test = "scan_policy::vulnerable_pulls_refused_through_skopeo_and_podman";
    if !require("skopeo", test) {
        return;
    }
    let b = Berth::start();
    let c = Clients::new();
    let http = client();
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    import(
        &b,
        t,
        "osv",
        &openssl_advisory("2024-07-01T00:00:00Z", json!({})),
    );

    // A vulnerable two-platform image and a clean one, pushed and scanned.
    let layout_dir = alpine_index(t);
    clean_image(t, &layout_dir, "clean", "linux/amd64");
    let image = |tag: &str| format!("docker://{}/pol/app:{tag}", b.addr);
    c.push_layout(&layout_dir, "v1", &image("vuln"), true);
    c.push_layout(&layout_dir, "clean", &image("clean"), false);
    for tag in ["vuln", "clean"] {
        scan_cli(&b, t, &["-o", "json", &format!("{}/pol/app:{tag}", b.addr)]);
    }
    // Before a policy, everything is pulled.
    skopeo_pull(&c, &b, "pol/app:vuln").expect("no policy yet");

    let set = scan_cli(&b, t, &["policy", "pol", "--block-severity", "high"]);
    assert!(
        set.contains("block pulls with findings at or above: high"),
        "{set}"
    );

    // skopeo: the vulnerable index is refused with the worst finding and
    // what to do; the clean image is copied.
    let err = skopeo_pull(&c, &b, "pol/app:vuln").expect_err("pulled a vulnerable image");
    for part in [
        "refused by the vulnerability policy of namespace pol (block high and above",
        "CVE-2099-0002 (high) in libcrypto3@3.3.2-r0 (source openssl), fixed in 3.3.2-r1",
        "Update the base image",
        "berth scan allow pol CVE-2099-0002",
    ] {
        assert!(err.contains(part), "{part:?} not in {err}");
    }
    skopeo_pull(&c, &b, "pol/app:clean").expect("a clean image is pulled");

    // A platform image by digest is refused on its own.
    let r = get_manifest(&http, format!("{}/v2/pol/app/manifests/vuln", b.url())).await;
    assert_eq!(r.status(), 403, "the index was served");
    // HEAD stays allowed.
    let (index_digest, _) = head_manifest(&http, &b.url(), "pol/app", "vuln", layout::INDEX).await;
    let index_bytes = std::fs::read(layout::blob_path(&layout_dir, &index_digest)).unwrap();
    let index: Value = serde_json::from_slice(&index_bytes).unwrap();
    let child = index["manifests"][0]["digest"].as_str().unwrap().to_owned();
    let r = get_manifest(&http, format!("{}/v2/pol/app/manifests/{child}", b.url())).await;
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "DENIED", "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("pol/app@{child}")),
        "{body}"
    );

    // The reads signing and scanning need stay open: blobs, tag lists,
    // a cosign signature of the blocked image (its `.sig` tag) and an SBOM
    // referrer of it, the referrers API.
    let child_manifest = layout::read_json(&layout_dir, &child);
    let layer = child_manifest["layers"][0]["digest"].as_str().unwrap();
    let r = http
        .get(format!("{}/v2/pol/app/blobs/{layer}", b.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "blobs are not gated");
    let r = http
        .get(format!("{}/v2/pol/app/tags/list", b.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let signer = Signer::new("p256");
    sign(&http, &b, "pol/app", &index_digest, &signer).await;
    let r = get_manifest(
        &http,
        format!(
            "{}/v2/pol/app/manifests/{}",
            b.url(),
            sig_tag(&index_digest)
        ),
    )
    .await;
    assert_eq!(r.status(), 200, "the signature of a blocked image is read");
    let sbom = br#"{"spdxVersion":"SPDX-2.3"}"#;
    let empty = b"{}";
    push_blob(&http, &b.url(), "pol/app", sbom).await;
    push_blob(&http, &b.url(), "pol/app", empty).await;
    let referrer = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/spdx+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                   "digest": sha256(empty), "size": empty.len()},
        "layers": [{"mediaType": "application/spdx+json",
                    "digest": sha256(sbom), "size": sbom.len()}],
        "subject": {"mediaType": layout::INDEX, "digest": index_digest,
                    "size": index_bytes.len()},
    }))
    .unwrap();
    let referrer_digest = sha256(&referrer);
    let r = put_manifest(
        &http,
        &b.url(),
        "pol/app",
        &referrer_digest,
        OCI_MANIFEST,
        &referrer,
    )
    .await;
    assert_eq!(r.status(), 201);
    let r = get_manifest(
        &http,
        format!("{}/v2/pol/app/manifests/{referrer_digest}", b.url()),
    )
    .await;
    assert_eq!(r.status(), 200, "an SBOM of a blocked image is read");
    let r = http
        .get(format!("{}/v2/pol/app/referrers/{index_digest}", b.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains(&referrer_digest));

    // An allowance lets it through; an expired one does not.
    let granted = scan_cli(
        &b,
        t,
        &[
            "allow",
            "pol",
            "CVE-2099-0002",
            "--reason",
            "TLS is terminated in front of it",
            "--expires",
            "2099-01-31",
        ],
    );
    assert!(
        granted.contains("CVE-2099-0002 allowed until 2099-01-31T23:59:59Z"),
        "{granted}"
    );
    skopeo_pull(&c, &b, "pol/app:vuln").expect("allowed by the allowance");
    let expired = scan_cli(
        &b,
        t,
        &[
            "allow",
            "pol",
            "CVE-2099-0002",
            "--reason",
            "was fine last year",
            "--expires",
            "2020-01-31",
        ],
    );
    assert!(expired.contains("already expired"), "{expired}");
    let err = skopeo_pull(&c, &b, "pol/app:vuln").expect_err("an expired allowance allowed");
    assert!(err.contains("CVE-2099-0002 (high)"), "{err}");
    let list = scan_cli(&b, t, &["allow", "pol"]);
    assert!(
        list.contains("CVE-2099-0002") && list.contains("(expired)"),
        "{list}"
    );
    // An allowance of an alias (the Alpine record's id) works as well.
    scan_cli(
        &b,
        t,
        &[
            "allow",
            "pol",
            "ALPINE-CVE-2099-0002",
            "--reason",
            "same finding",
        ],
    );
    skopeo_pull(&c, &b, "pol/app:vuln").expect("allowed by its alias");
    for id in ["ALPINE-CVE-2099-0002", "CVE-2099-0002"] {
        scan_cli(&b, t, &["allow", "pol", id, "--remove"]);
    }
    let out = berth(
        t,
        &[
            "scan",
            "allow",
            "pol",
            "CVE-2099-0002",
            "--remove",
            "--registry",
            &b.addr,
        ],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("has no allowance of CVE-2099-0002"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    skopeo_pull(&c, &b, "pol/app:vuln").expect_err("the allowance was removed");

    // Not scanned yet: allowed under `unscanned = allow` (the default),
    // refused under `deny`, saying how to scan it.
    clean_image(t, &layout_dir, "new", "linux/amd64");
    c.push_layout(&layout_dir, "new", &image("new"), false);
    skopeo_pull(&c, &b, "pol/app:new").expect("unscanned = allow");
    scan_cli(&b, t, &["policy", "pol", "--unscanned", "deny"]);
    let err = skopeo_pull(&c, &b, "pol/app:new").expect_err("unscanned = deny");
    assert!(err.contains("it has not been scanned yet"), "{err}");
    assert!(err.contains("berth scan policy pol --on-push on"), "{err}");
    // With scan on push, the refusal queues the scan: a retry succeeds.
    scan_cli(&b, t, &["policy", "pol", "--on-push", "on"]);
    let err = skopeo_pull(&c, &b, "pol/app:new").expect_err("not scanned yet");
    assert!(err.contains("a scan is queued"), "{err}");
    let deadline = Instant::now() + Duration::from_secs(90);
    while get_manifest(&http, format!("{}/v2/pol/app/manifests/new", b.url()))
        .await
        .status()
        != 200
    {
        assert!(Instant::now() < deadline, "the queued scan never landed");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    skopeo_pull(&c, &b, "pol/app:new").expect("scanned now, and clean");

    // Refusals are audited (repeats of one manifest to one caller for one
    // reason within a minute merged into one event) and counted.
    let events = audit_events(&http, &b, "action=pull.blocked").await;
    let digests: std::collections::BTreeSet<&str> =
        events.iter().filter_map(|e| e["digest"].as_str()).collect();
    assert!(
        digests.len() >= 3,
        "the index, its child, the new image: {events:?}"
    );
    assert!(events
        .iter()
        .any(|e| e["repository"] == "pol/app" && e["detail"]["reason"] == "unscanned"));
    let metrics = metrics(&http, &b).await;
    assert!(
        metrics.contains(r#"berth_pulls_blocked_total{namespace="pol",reason="vulnerable"}"#),
        "{metrics}"
    );

    // podman, when it can run here: refused with the message, the clean
    // image pulled.
    if !require("podman", test) {
        return;
    }
    if let Err(why) = c.usable("podman") {
        eprintln!("SKIPPED the podman half of {test}: {why}");
        return;
    }
    let policy = c.policy();
    let pull = |tag: &str| {
        run(&mut c.containers_cmd(
            "podman",
            "p",
            &[
                "pull",
                "--tls-verify=false",
                "--signature-policy",
                &policy,
                &format!("{}/pol/app:{tag}", b.addr),
            ],
        ))
    };
    let refused = pull("vuln");
    assert!(
        !refused.status.success(),
        "podman pulled a vulnerable image"
    );
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("vulnerability policy of namespace pol")
            && err.contains("CVE-2099-0002 (high) in libcrypto3@3.3.2-r0 (source openssl)"),
        "{err}"
    );
    let ok = pull("clean");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

#[tokio::test]
async fn namespace_admins_set_the_policy_and_site_admins_pull_past_it() {
    let f = Fixture::start("").await;
    f.org("acme", Visibility::Private).await;
    let reader = f.user("reader").await;
    let writer = f.user("writer").await;
    let boss = f.user("boss").await;
    f.member("acme", "reader", Role::Read).await;
    f.member("acme", "writer", Role::Write).await;
    f.member("acme", "boss", Role::Admin).await;
    let (status, digest) = f.push(&writer, "acme/app", "v1", "a").await;
    assert_eq!(status, StatusCode::CREATED);
    let u = f.url();
    let policy = format!("{u}/api/v1/namespaces/acme/scan-policy");
    let allowance = format!("{u}/api/v1/namespaces/acme/scan-allowances/CVE-2099-1");

    // Writers may not set the policy or grant allowances; admins may.
    for (url, body) in [
        (&policy, json!({"unscanned": "deny"})),
        (&allowance, json!({"reason": "r"})),
    ] {
        let r = req(&f.c, Method::PUT, url, &writer)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{url}");
    }
    let r = req(&f.c, Method::PUT, &policy, &boss)
        .json(&json!({"unscanned": "deny", "block_severity": "urgent"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = req(&f.c, Method::PUT, &policy, &boss)
        .json(&json!({"unscanned": "deny", "block_severity": "critical"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let view: Value = r.json().await.unwrap();
    assert_eq!(view["block_severity"], "critical");
    assert_eq!(view["unscanned"], "deny");
    assert_eq!(view["scan_on_push"], false);
    let r = req(&f.c, Method::PUT, &allowance, &boss)
        .json(&json!({"reason": "  "}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "a reason is required");
    let r = req(&f.c, Method::PUT, &allowance, &boss)
        .json(&json!({"reason": "not reachable", "expires": "2099-01-31T00:00:00Z"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let list: Value = req(
        &f.c,
        Method::GET,
        &format!("{u}/api/v1/namespaces/acme/scan-allowances"),
        &reader,
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(list["allowances"][0]["advisory"], "CVE-2099-1", "{list}");
    assert_eq!(list["allowances"][0]["created_by"], "boss");

    // The image was never scanned: the reader is refused, the site admin
    // is not; HEAD stays open to both.
    let path = format!("/v2/acme/app/manifests/{digest}");
    let r = req(&f.c, Method::GET, &format!("{u}{path}"), &reader)
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let text = r.text().await.unwrap();
    assert!(text.contains("has not been scanned yet"), "{text}");
    assert_eq!(f.status(Method::HEAD, &path, &reader).await, StatusCode::OK);
    assert_eq!(f.status(Method::GET, &path, &admin()).await, StatusCode::OK);

    // Audited: the policy change, the allowance, the refusal.
    let audit: Value = req(
        &f.c,
        Method::GET,
        &format!("{u}/api/v1/audit?action=policy.change"),
        &admin(),
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let changes: Vec<&str> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["detail"]["change"].as_str())
        .collect();
    assert!(changes.contains(&"scan.policy.set"), "{audit}");
    assert!(changes.contains(&"scan.allowance.set"), "{audit}");
    let blocked: Value = req(
        &f.c,
        Method::GET,
        &format!("{u}/api/v1/audit?action=pull.blocked"),
        &admin(),
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(blocked["events"][0]["actor"], "reader", "{blocked}");
}
