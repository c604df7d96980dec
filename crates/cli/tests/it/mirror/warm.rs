//! `berth mirror warm`: an image named by its upstream host is fetched
//! into the cache (the selected platform only); with the upstream
//! stopped, what was warmed pulls from the cache and what was not does
//! not.

use super::*;
use crate::tools::{berth, berth_ok};

fn warm(b: &Berth, args: &[&str]) -> std::process::Output {
    let url = b.url();
    let mut all = vec!["mirror", "warm"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--registry", &url, "-o", "json"]);
    let dir = tempfile::tempdir().unwrap();
    berth(dir.path(), &all)
}

fn warmed(b: &Berth, args: &[&str]) -> Value {
    let out = warm(b, args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse(&out.stdout)
}

/// The config and layer digests of an image manifest.
fn blobs(manifest: &[u8]) -> Vec<String> {
    let v = parse(manifest);
    let mut out = vec![v["config"]["digest"].as_str().unwrap().to_owned()];
    for l in v["layers"].as_array().unwrap() {
        out.push(l["digest"].as_str().unwrap().to_owned());
    }
    out
}

#[test]
fn warm_fetches_the_selected_platform_into_the_cache() {
    if !require("skopeo", "mirror::warm::warm_fetches") {
        return;
    }
    let dist = Distribution::start();
    let c = Clients::new();
    let (index, children) = push_multiarch(
        &c,
        &format!("docker://{}/library/postgres:16", dist.addr),
        &[],
    );
    let berth_srv = Berth::start_with(
        &[],
        Some(&config("ref", &dist.url(), &["registry.test"], "")),
    );
    let w = warmed(
        &berth_srv,
        &[
            "registry.test/library/postgres:16",
            "--platform",
            "linux/amd64",
        ],
    );
    assert_eq!(w["repository"], "ref/library/postgres");
    assert_eq!(w["digest"], index.as_str());
    assert_eq!(w["platforms"], serde_json::json!(["linux/amd64"]));
    assert_eq!(w["manifests"], 2);
    assert_eq!(w["blobs_fetched"], 3, "{w}");
    // Again, by the namespace form: everything is cached already.
    let again = warmed(
        &berth_srv,
        &["ref/library/postgres:16", "--platform", "linux/amd64"],
    );
    assert_eq!(again["blobs_fetched"], 0, "{again}");
    assert_eq!(again["blobs_cached"], 3, "{again}");

    // The upstream is gone: the warmed platform pulls from the cache.
    drop(dist);
    let base = format!("{}/v2/ref/library/postgres", berth_srv.url());
    let amd64 = http(
        "GET",
        &format!("{base}/manifests/{}", children[0]),
        accept_all(),
    );
    assert_eq!(amd64.status, 200);
    for b in blobs(&amd64.body) {
        let r = http("GET", &format!("{base}/blobs/{b}"), &[]);
        assert_eq!(r.status, 200, "{b}");
        assert_eq!(sha256(&r.body), b);
    }
    let arm64 = http(
        "GET",
        &format!("{base}/manifests/{}", children[1]),
        accept_all(),
    );
    assert_eq!(arm64.status, 503, "never warmed, upstream down");

    // What no upstream mirrors is refused, saying how to name it.
    let out = warm(&berth_srv, &["quay.io/org/app:1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not mirrored here"));
    let dir = tempfile::tempdir().unwrap();
    let url = berth_srv.url();
    let status = berth_ok(dir.path(), &["mirror", "status", "--registry", &url]);
    assert!(status.contains("ref"), "{status}");
}
