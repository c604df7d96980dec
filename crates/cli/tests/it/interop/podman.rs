//! podman on the vfs driver: load an OCI layout, push to berth, pull into a
//! fresh storage, pick a platform from a multi-arch index.

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
