//! skopeo: push from an OCI layout, inspect, pull back, `copy --all` of a
//! multi-arch index (also through the reference registry), list-tags and
//! delete.

use super::*;

#[test]
fn push_from_layout_inspect_and_pull_back() {
    if !require(
        "skopeo",
        "interop::skopeo::push_from_layout_inspect_and_pull_back",
    ) {
        return;
    }
    let berth = Berth::start();
    let c = Clients::new();
    let src = c.dir("src");
    let digest = layout::write_image(&src, "v1", "linux/amd64", &[1024, 200_000, 0]);
    let original = layout::read_blob(&src, &digest);
    let manifest = parse(&original);
    let dest = format!("docker://{}/interop/single:v1", berth.addr);
    c.push_layout(&src, "v1", &dest, false);

    // The registry serves the manifest byte for byte.
    let raw = c.skopeo(&["inspect", "--raw", "--tls-verify=false", &dest]);
    assert_eq!(sha256(&raw), digest);
    assert_eq!(raw, original);
    let head = http(
        "HEAD",
        &format!("{}/v2/interop/single/manifests/v1", berth.url()),
        ACCEPT_ALL,
    );
    assert_eq!(head.status, 200);
    assert_eq!(head.header("docker-content-digest"), Some(digest.clone()));
    assert_eq!(
        head.header("content-type").as_deref(),
        Some(layout::MANIFEST)
    );
    assert_eq!(
        head.header("content-length"),
        Some(original.len().to_string())
    );
    assert_blobs_present(&berth.url(), "interop/single", &manifest);

    // skopeo's parsed view agrees with what was pushed.
    let info = parse(&c.skopeo(&["inspect", "--tls-verify=false", &dest]));
    assert_eq!(info["Digest"], digest.as_str());
    assert_eq!(info["Architecture"], "amd64");
    assert_eq!(info["Os"], "linux");
    assert_eq!(info["Layers"], serde_json::json!(layer_digests(&manifest)));
    assert_eq!(
        info["Labels"]["org.opencontainers.image.title"],
        "berth interop test image"
    );

    // Pull back by tag into a new layout: same manifest, same blob bytes.
    let back = c.dir("back");
    c.skopeo(&[
        "copy",
        "--preserve-digests",
        "--src-tls-verify=false",
        &dest,
        &format!("oci:{}:back", back.display()),
    ]);
    assert_eq!(
        layout::resolve(&back, "back").expect("pulled").digest,
        digest
    );
    for d in blobs_of(&manifest) {
        assert_eq!(
            layout::read_blob(&back, &d),
            layout::read_blob(&src, &d),
            "blob {d}"
        );
    }

    // And by digest into a `dir:` copy.
    let by_digest = c.dir("by-digest");
    c.skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{}/interop/single@{digest}", berth.addr),
        &format!("dir:{}", by_digest.display()),
    ]);
    assert_eq!(
        std::fs::read(by_digest.join("manifest.json")).expect("manifest.json"),
        original
    );
}

#[test]
fn copy_all_multiarch_index() {
    if !require("skopeo", "interop::skopeo::copy_all_multiarch_index") {
        return;
    }
    let berth = Berth::start();
    let c = Clients::new();
    let src = c.dir("src");
    let (index, children) = layout::write_multiarch(&src, "multi");
    let dest = format!("docker://{}/interop/multi:1.0", berth.addr);
    c.push_layout(&src, "multi", &dest, true);

    let raw = c.skopeo(&["inspect", "--raw", "--tls-verify=false", &dest]);
    assert_eq!(sha256(&raw), index, "index digest changed in transit");
    assert_eq!(raw, layout::read_blob(&src, &index));
    let idx = parse(&raw);
    let listed: Vec<&str> = idx["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .map(|m| m["digest"].as_str().expect("digest"))
        .collect();
    assert_eq!(
        listed,
        children.iter().map(String::as_str).collect::<Vec<_>>()
    );

    // Both children, with all their blobs, are in the repository.
    for (child, platform) in children.iter().zip(layout::MULTIARCH_PLATFORMS) {
        let r = http(
            "GET",
            &format!("{}/v2/interop/multi/manifests/{child}", berth.url()),
            ACCEPT_ALL,
        );
        assert_eq!(r.status, 200, "child {platform} missing");
        assert_eq!(
            r.header("docker-content-digest").as_deref(),
            Some(child.as_str())
        );
        assert_eq!(r.body, layout::read_blob(&src, child));
        assert_blobs_present(&berth.url(), "interop/multi", &r.json());
    }

    // skopeo resolves the index per platform.
    for (child, platform) in children.iter().zip(layout::MULTIARCH_PLATFORMS) {
        let arch = platform.rsplit('/').next().expect("arch");
        let info = parse(&c.skopeo(&[
            "--override-os",
            "linux",
            "--override-arch",
            arch,
            "inspect",
            "--tls-verify=false",
            &dest,
        ]));
        assert_eq!(info["Architecture"], arch);
        let m = layout::read_json(&src, child);
        assert_eq!(info["Layers"], serde_json::json!(layer_digests(&m)));
    }

    // Registry to registry inside berth (mounts or re-uploads), digests kept.
    let again = format!("docker://{}/interop/multi-copy:1.0", berth.addr);
    c.skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &dest,
        &again,
    ]);
    let raw2 = c.skopeo(&["inspect", "--raw", "--tls-verify=false", &again]);
    assert_eq!(sha256(&raw2), index);
    for child in &children {
        let r = http(
            "GET",
            &format!("{}/v2/interop/multi-copy/manifests/{child}", berth.url()),
            ACCEPT_ALL,
        );
        assert_eq!(r.status, 200, "child {child} missing after registry copy");
        assert_blobs_present(&berth.url(), "interop/multi-copy", &r.json());
    }
}

const DOCKER_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

#[test]
fn push_as_docker_schema2_and_pull_as_oci() {
    if !require(
        "skopeo",
        "interop::skopeo::push_as_docker_schema2_and_pull_as_oci",
    ) {
        return;
    }
    let berth = Berth::start();
    let c = Clients::new();
    let src = c.dir("src");
    let oci = layout::write_image(&src, "v1", "linux/amd64", &[3000, 10]);
    let layers = layer_digests(&layout::read_json(&src, &oci));
    let dest = format!("docker://{}/interop/docker:v1", berth.addr);
    c.skopeo(&[
        "copy",
        "--format",
        "v2s2",
        "--dest-tls-verify=false",
        &format!("oci:{}:v1", src.display()),
        &dest,
    ]);

    // A Docker schema2 manifest, served with its own media type.
    let raw = c.skopeo(&["inspect", "--raw", "--tls-verify=false", &dest]);
    let m = parse(&raw);
    assert_eq!(m["mediaType"], DOCKER_V2);
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.docker.container.image.v1+json"
    );
    assert_eq!(
        layer_digests(&m),
        layers,
        "conversion keeps the gzip layers"
    );
    let r = http(
        "GET",
        &format!("{}/v2/interop/docker/manifests/v1", berth.url()),
        ACCEPT_ALL,
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type").as_deref(), Some(DOCKER_V2));
    assert_eq!(r.header("docker-content-digest"), Some(sha256(&raw)));
    assert_eq!(r.body, raw);
    assert_blobs_present(&berth.url(), "interop/docker", &m);

    // Pulled back and converted to OCI: same layers.
    let back = c.dir("back");
    c.skopeo(&[
        "copy",
        "--format",
        "oci",
        "--src-tls-verify=false",
        &dest,
        &format!("oci:{}:back", back.display()),
    ]);
    let got = layout::resolve(&back, "back").expect("pulled");
    assert_eq!(got.media_type, layout::MANIFEST);
    assert_eq!(
        layer_digests(&layout::read_json(&back, &got.digest)),
        layers
    );

    // A multi-arch index converted to a Docker manifest list on the way.
    let (_, children) = layout::write_multiarch(&src, "multi");
    let list = format!("docker://{}/interop/docker:multi", berth.addr);
    c.skopeo(&[
        "copy",
        "--all",
        "--format",
        "v2s2",
        "--dest-tls-verify=false",
        &format!("oci:{}:multi", src.display()),
        &list,
    ]);
    let r = http(
        "GET",
        &format!("{}/v2/interop/docker/manifests/multi", berth.url()),
        ACCEPT_ALL,
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type").as_deref(), Some(DOCKER_LIST));
    let l = r.json();
    assert_eq!(l["mediaType"], DOCKER_LIST);
    let entries = l["manifests"].as_array().expect("manifests");
    assert_eq!(entries.len(), children.len());
    for (e, (child, platform)) in entries
        .iter()
        .zip(children.iter().zip(layout::MULTIARCH_PLATFORMS))
    {
        assert_eq!(e["mediaType"], DOCKER_V2);
        assert_eq!(e["platform"], layout::platform_json(platform));
        let d = e["digest"].as_str().expect("digest");
        let m = http(
            "GET",
            &format!("{}/v2/interop/docker/manifests/{d}", berth.url()),
            ACCEPT_ALL,
        );
        assert_eq!(m.status, 200, "{platform} child of the list");
        assert_eq!(sha256(&m.body), d);
        let want = layer_digests(&layout::read_json(&src, child));
        assert_eq!(layer_digests(&m.json()), want);
    }
}

#[test]
fn list_tags_follows_pagination() {
    if !require("skopeo", "interop::skopeo::list_tags_follows_pagination") {
        return;
    }
    let berth = Berth::start();
    let c = Clients::new();
    let src = c.dir("src");
    let image = layout::build_image(&src, "linux/amd64", &[10]);
    let tags: Vec<String> = (0..300).map(|i| format!("t{i:03}")).collect();
    let refs: Vec<&str> = tags.iter().map(String::as_str).collect();
    push_image_http(&berth.url(), "interop/many", &src, &image.digest, &refs);
    let out = parse(&c.skopeo(&[
        "list-tags",
        "--tls-verify=false",
        &format!("docker://{}/interop/many", berth.addr),
    ]));
    assert_eq!(out["Tags"], serde_json::json!(tags));
}

#[test]
fn copy_all_to_and_from_reference_registry() {
    if !require(
        "skopeo",
        "interop::skopeo::copy_all_to_and_from_reference_registry",
    ) || !require(
        common::DISTRIBUTION_BIN,
        "interop::skopeo::copy_all_to_and_from_reference_registry",
    ) {
        return;
    }
    let berth = Berth::start();
    let dist = common::Distribution::start();
    let c = Clients::new();
    let src = c.dir("src");
    let (index, children) = layout::write_multiarch(&src, "multi");
    let copy = |from: &str, to: &str| {
        c.skopeo(&[
            "copy",
            "--all",
            "--preserve-digests",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            from,
            to,
        ]);
    };
    let on_dist = format!("docker://{}/interop/ref:v1", dist.addr);
    let on_berth = format!("docker://{}/interop/from-ref:v1", berth.addr);
    c.push_layout(&src, "multi", &on_dist, true);
    copy(&on_dist, &on_berth);
    let raw = c.skopeo(&["inspect", "--raw", "--tls-verify=false", &on_berth]);
    assert_eq!(sha256(&raw), index);
    // Back to the reference registry under another name: still identical.
    let back = format!("docker://{}/interop/roundtrip:v1", dist.addr);
    copy(&on_berth, &back);
    let raw = c.skopeo(&["inspect", "--raw", "--tls-verify=false", &back]);
    assert_eq!(sha256(&raw), index);
    for child in &children {
        let r = http(
            "GET",
            &format!("{}/v2/interop/roundtrip/manifests/{child}", dist.url()),
            ACCEPT_ALL,
        );
        assert_eq!(r.status, 200);
        assert_eq!(r.body, layout::read_blob(&src, child));
    }
}

#[test]
fn list_tags() {
    if !require("skopeo", "interop::skopeo::list_tags") {
        return;
    }
    let berth = Berth::start();
    let c = Clients::new();
    let src = c.dir("src");
    layout::write_image(&src, "a", "linux/amd64", &[100]);
    layout::write_image(&src, "b", "linux/arm64", &[200]);
    let tags = [
        "1.0.0",
        "1.0",
        "1",
        "latest",
        "v2-rc.1",
        "main_2024",
        "A-upper",
    ];
    for (i, tag) in tags.iter().enumerate() {
        let from = if i % 2 == 0 { "a" } else { "b" };
        let dest = format!("docker://{}/interop/tags:{tag}", berth.addr);
        c.push_layout(&src, from, &dest, false);
    }
    let out = parse(&c.skopeo(&[
        "list-tags",
        "--tls-verify=false",
        &format!("docker://{}/interop/tags", berth.addr),
    ]));
    assert_eq!(
        out["Repository"],
        format!("{}/interop/tags", berth.addr).as_str()
    );
    let got: Vec<String> = out["Tags"]
        .as_array()
        .expect("Tags")
        .iter()
        .map(|t| t.as_str().expect("tag").to_owned())
        .collect();
    let mut want: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
    want.sort();
    assert_eq!(got, want, "tags, in lexical order");

    // A repository that does not exist is an error, not an empty list.
    let out = run(&mut c.skopeo_cmd(&[
        "list-tags",
        "--tls-verify=false",
        &format!("docker://{}/interop/nothing-here", berth.addr),
    ]));
    assert!(
        !out.status.success(),
        "list-tags of an unknown repository succeeded"
    );
}

#[test]
fn delete_then_404() {
    if !require("skopeo", "interop::skopeo::delete_then_404") {
        return;
    }
    let berth = Berth::start();
    let c = Clients::new();
    let src = c.dir("src");
    let keep = layout::write_image(&src, "keep", "linux/amd64", &[10]);
    let gone = layout::write_image(&src, "gone", "linux/amd64", &[20]);
    let at = |tag: &str| format!("docker://{}/interop/del:{tag}", berth.addr);
    c.push_layout(&src, "keep", &at("keep"), false);
    c.push_layout(&src, "gone", &at("gone"), false);
    let url = |r: &str| format!("{}/v2/interop/del/manifests/{r}", berth.url());
    assert_eq!(http("HEAD", &url(&gone), ACCEPT_ALL).status, 200);

    // skopeo resolves the tag and deletes the manifest by digest.
    c.skopeo(&["delete", "--tls-verify=false", &at("gone")]);

    let r = http("GET", &url(&gone), ACCEPT_ALL);
    assert_eq!(
        r.status, 404,
        "manifest still served by digest after delete"
    );
    assert_eq!(r.json()["errors"][0]["code"], "MANIFEST_UNKNOWN");
    assert_eq!(http("HEAD", &url(&gone), ACCEPT_ALL).status, 404);
    let r = http("GET", &url("gone"), ACCEPT_ALL);
    assert_eq!(
        r.status, 404,
        "tag still resolves after its manifest was deleted"
    );
    let out = run(&mut c.skopeo_cmd(&["inspect", "--raw", "--tls-verify=false", &at("gone")]));
    assert!(
        !out.status.success(),
        "skopeo still inspects a deleted image"
    );

    // The other image is untouched.
    let raw = c.skopeo(&["inspect", "--raw", "--tls-verify=false", &at("keep")]);
    assert_eq!(sha256(&raw), keep);
    let tags = parse(&c.skopeo(&[
        "list-tags",
        "--tls-verify=false",
        &format!("docker://{}/interop/del", berth.addr),
    ]));
    assert_eq!(tags["Tags"], serde_json::json!(["keep"]));

    // Deleting it again is an error.
    let out = run(&mut c.skopeo_cmd(&["delete", "--tls-verify=false", &at("gone")]));
    assert!(!out.status.success(), "second delete succeeded");
}

#[test]
fn concurrent_pushes_of_one_image() {
    if !require("skopeo", "interop::skopeo::concurrent_pushes_of_one_image") {
        return;
    }
    let berth = Berth::start();
    let c = Clients::new();
    let src = c.dir("src");
    // Six layers: skopeo uploads them in parallel, and four skopeo
    // processes push the same blobs at the same time, to one repository
    // and to another (as CI jobs of one pipeline do).
    let digest = layout::write_image(
        &src,
        "v1",
        "linux/amd64",
        &[1_000_000, 700_000, 300_000, 4096, 1, 200_000],
    );
    let dests = [
        "interop/race:a",
        "interop/race:b",
        "interop/race:c",
        "interop/race-other:a",
    ];
    std::thread::scope(|s| {
        for d in dests {
            let (c, src, berth) = (&c, &src, &berth);
            s.spawn(move || {
                c.push_layout(src, "v1", &format!("docker://{}/{d}", berth.addr), false)
            });
        }
    });
    let manifest = layout::read_json(&src, &digest);
    for d in dests {
        let (repo, tag) = d.split_once(':').expect("repo:tag");
        let r = http(
            "HEAD",
            &format!("{}/v2/{repo}/manifests/{tag}", berth.url()),
            ACCEPT_ALL,
        );
        assert_eq!(r.status, 200, "{d}");
        assert_eq!(r.header("docker-content-digest"), Some(digest.clone()));
        assert_blobs_present(&berth.url(), repo, &manifest);
    }
    for layer in layer_digests(&manifest) {
        let r = http(
            "GET",
            &format!("{}/v2/interop/race/blobs/{layer}", berth.url()),
            &[],
        );
        assert_eq!(
            sha256(&r.body),
            layer,
            "blob content after concurrent pushes"
        );
    }
}
