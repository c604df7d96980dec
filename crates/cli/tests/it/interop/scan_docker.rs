//! Vulnerability pull policy through the Docker daemon: in a namespace
//! that blocks high findings, `docker pull` of an image with one fails
//! with berth's refusal (the policy, the finding, what to do) in the
//! daemon's own output, and of a clean image succeeds; an allowance of the
//! finding lets the pull through.

use super::docker::Docker;
use crate::common::Berth;
use crate::interop::Clients;
use crate::scan_fixtures::{alpine_image, clean_image, import, openssl_advisory};
use crate::tools::berth_ok;

#[test]
fn scan_docker_pulls_are_refused_vulnerable_images() {
    let docker = Docker::new();
    let b = Berth::start();
    let c = Clients::new();
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    import(
        &b,
        t,
        "osv",
        &openssl_advisory("2024-07-01T00:00:00Z", serde_json::json!({})),
    );
    let layout_dir = t.join("layout");
    alpine_image(t, &layout_dir, "vuln", "linux/amd64");
    clean_image(t, &layout_dir, "clean", "linux/amd64");
    let remote = |tag: &str| format!("{}/dock/app:{tag}", b.addr);
    c.push_layout(
        &layout_dir,
        "vuln",
        &format!("docker://{}", remote("vuln")),
        false,
    );
    c.push_layout(
        &layout_dir,
        "clean",
        &format!("docker://{}", remote("clean")),
        false,
    );
    let scan = |args: &[&str]| {
        let mut all = vec!["scan"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--registry", &b.addr]);
        berth_ok(t, &all)
    };
    for tag in ["vuln", "clean"] {
        scan(&["-o", "json", &remote(tag)]);
    }
    scan(&["policy", "dock", "--block-severity", "high"]);

    let (out, _) = docker.fails(&["pull", &remote("vuln")]);
    for part in [
        "refused by the vulnerability policy of namespace dock (block high and above",
        "CVE-2099-0002 (high) in libcrypto3@3.3.2-r0 (source openssl), fixed in 3.3.2-r1",
        "berth scan allow dock CVE-2099-0002",
    ] {
        assert!(out.contains(part), "{part:?} not in {out}");
    }
    docker.ok(&["pull", &remote("clean")]);
    docker.ok(&["rmi", &remote("clean")]);

    scan(&[
        "allow",
        "dock",
        "CVE-2099-0002",
        "--reason",
        "accepted for the test",
    ]);
    docker.ok(&["pull", &remote("vuln")]);
    docker.ok(&["rmi", &remote("vuln")]);
}
