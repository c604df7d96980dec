//! podman on the vfs driver: load an OCI layout, push to berth, pull into a
//! fresh storage, pick a platform from a multi-arch index, assemble and push
//! a manifest list.

use super::*;

/// podman image inspect, first element.
fn podman_inspect(c: &Clients, store: &str, image: &str) -> Value {
    let v = parse(&ok(&mut c.containers_cmd(
        "podman",
        store,
        &["image", "inspect", image],
    )));
    v[0].clone()
}

#[test]
fn push_and_pull_with_vfs() {
    let test = "interop::podman::push_and_pull_with_vfs";
    if !require("podman", test) || !require("skopeo", test) {
        return;
    }
    let c = Clients::new();
    if let Err(why) = c.usable("podman") {
        eprintln!("SKIPPED {test}: podman cannot run in this environment: {why}");
        return;
    }
    let berth = Berth::start();
    let policy = c.policy();
    let src = c.dir("src");
    let host = layout::host_platform();
    let single = layout::write_image(&src, "single", &host, &[4096, 1000]);
    let config = layout::read_json(&src, &single)["config"]["digest"]
        .as_str()
        .expect("config")
        .to_owned();
    let config_hex = config.trim_start_matches("sha256:");

    // Load the layout into storage A; the image id is its config digest.
    ok(&mut c.containers_cmd(
        "podman",
        "a",
        &[
            "pull",
            "--signature-policy",
            &policy,
            &format!("oci:{}:single", src.display()),
        ],
    ));
    assert_eq!(podman_inspect(&c, "a", config_hex)["Id"], config_hex);

    // podman push to berth (podman writes its own manifest and layers).
    let digestfile = c.tmp.path().join("pushed.digest");
    let image = format!("{}/interop/podman:v1", berth.addr);
    ok(&mut c.containers_cmd(
        "podman",
        "a",
        &[
            "push",
            "--tls-verify=false",
            "--signature-policy",
            &policy,
            "--digestfile",
            &digestfile.display().to_string(),
            config_hex,
            &format!("docker://{image}"),
        ],
    ));
    let pushed = std::fs::read_to_string(&digestfile).expect("digestfile");
    let pushed = pushed.trim();
    let m = http(
        "GET",
        &format!("{}/v2/interop/podman/manifests/v1", berth.url()),
        ACCEPT_ALL,
    );
    assert_eq!(m.status, 200);
    assert_eq!(m.header("docker-content-digest").as_deref(), Some(pushed));
    assert_eq!(sha256(&m.body), pushed);
    let manifest = m.json();
    assert_eq!(manifest["config"]["digest"], config.as_str());
    assert_eq!(layer_digests(&manifest).len(), 2);
    assert_blobs_present(&berth.url(), "interop/podman", &manifest);

    // A fresh storage B pulls it back: same image id, same digest.
    ok(&mut c.containers_cmd(
        "podman",
        "b",
        &[
            "pull",
            "--tls-verify=false",
            "--signature-policy",
            &policy,
            &image,
        ],
    ));
    let info = podman_inspect(&c, "b", &image);
    assert_eq!(info["Id"], config_hex);
    assert_eq!(info["Digest"], pushed);

    // A multi-arch index on berth: podman picks the requested platform.
    let (_, children) = layout::write_multiarch(&src, "multi");
    let multi = format!("{}/interop/podman-multi:v1", berth.addr);
    c.push_layout(&src, "multi", &format!("docker://{multi}"), true);
    for (child, platform) in children.iter().zip(layout::MULTIARCH_PLATFORMS) {
        let arch = platform.rsplit('/').next().expect("arch");
        let want = layout::read_json(&src, child)["config"]["digest"]
            .as_str()
            .expect("config")
            .trim_start_matches("sha256:")
            .to_owned();
        let store = format!("multi-{arch}");
        ok(&mut c.containers_cmd(
            "podman",
            &store,
            &[
                "pull",
                "--tls-verify=false",
                "--signature-policy",
                &policy,
                "--arch",
                arch,
                &multi,
            ],
        ));
        let info = podman_inspect(&c, &store, &multi);
        assert_eq!(
            info["Id"],
            want.as_str(),
            "{platform} picked from the index"
        );
        assert_eq!(info["Architecture"], arch);
    }
}

#[test]
fn manifest_list_assembled_and_pushed() {
    let test = "interop::podman::manifest_list_assembled_and_pushed";
    if !require("podman", test) {
        return;
    }
    let c = Clients::new();
    if let Err(why) = c.usable("podman") {
        eprintln!("SKIPPED {test}: podman cannot run in this environment: {why}");
        return;
    }
    let berth = Berth::start();
    let src = c.dir("src");
    let mut parts = Vec::new();
    for platform in layout::MULTIARCH_PLATFORMS {
        let arch = platform.rsplit('/').next().expect("arch");
        let image = layout::build_image(&src, platform, &[500]);
        push_image_http(&berth.url(), "interop/parts", &src, &image.digest, &[arch]);
        parts.push((image.digest, platform, arch));
    }

    // podman assembles a list from images on berth and pushes it, with the
    // children, to another repository.
    let podman = |args: &[&str]| ok(&mut c.containers_cmd("podman", "m", args));
    podman(&["manifest", "create", "localhost/interop-list:v1"]);
    for (_, _, arch) in &parts {
        podman(&[
            "manifest",
            "add",
            "--tls-verify=false",
            "localhost/interop-list:v1",
            &format!("docker://{}/interop/parts:{arch}", berth.addr),
        ]);
    }
    let digestfile = c.tmp.path().join("list.digest");
    podman(&[
        "manifest",
        "push",
        "--all",
        "--format",
        "oci",
        "--tls-verify=false",
        "--digestfile",
        &digestfile.display().to_string(),
        "localhost/interop-list:v1",
        &format!("docker://{}/interop/list:v1", berth.addr),
    ]);
    let pushed = std::fs::read_to_string(&digestfile).expect("digestfile");
    let r = http(
        "GET",
        &format!("{}/v2/interop/list/manifests/v1", berth.url()),
        ACCEPT_ALL,
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type").as_deref(), Some(layout::INDEX));
    assert_eq!(
        r.header("docker-content-digest").as_deref(),
        Some(pushed.trim())
    );
    assert_eq!(sha256(&r.body), pushed.trim());
    let index = r.json();
    let entries = index["manifests"].as_array().expect("manifests");
    assert_eq!(entries.len(), parts.len(), "index: {index}");
    for (digest, platform, _) in &parts {
        let e = entries
            .iter()
            .find(|e| e["digest"] == digest.as_str())
            .unwrap_or_else(|| panic!("{platform} ({digest}) not in {index}"));
        assert_eq!(e["platform"], layout::platform_json(platform));
        let m = http(
            "GET",
            &format!("{}/v2/interop/list/manifests/{digest}", berth.url()),
            ACCEPT_ALL,
        );
        assert_eq!(m.status, 200, "{platform} child pushed with --all");
        assert_eq!(m.body, layout::read_blob(&src, digest));
        assert_blobs_present(&berth.url(), "interop/list", &m.json());
    }
}
