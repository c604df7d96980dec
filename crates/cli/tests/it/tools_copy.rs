//! `berth copy` and `berth inspect` against real registries: berth itself
//! and the reference registry (CNCF Distribution), with skopeo as the
//! independent client that builds and checks images.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use crate::common::{self, Berth, Distribution};
use crate::tools::{berth, berth_ok};

const PLATFORMS: &[&str] = &["linux/amd64", "linux/arm64/v8"];

fn skopeo(args: &[&str]) -> String {
    assert!(
        common::have("skopeo"),
        "skopeo missing: run scripts/install-test-deps-tools.sh"
    );
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The digest of a manifest, as skopeo (an independent client) sees it.
fn skopeo_digest(image: &str) -> String {
    let out = skopeo(&["inspect", "--raw", "--tls-verify=false", image]);
    berth_oci::Digest::sha256(out.as_bytes()).to_string()
}

fn inspect_json(dir: &Path, image: &str) -> serde_json::Value {
    serde_json::from_str(&berth_ok(dir, &["inspect", "-o", "json", image])).unwrap()
}

fn copy(dir: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["copy", "--json", "-q"];
    all.extend_from_slice(args);
    serde_json::from_str(&berth_ok(dir, &all)).unwrap()
}

/// Builds a two-platform sample image in an OCI layout and pushes it with
/// skopeo into `registry`; returns the index digest.
fn push_sample(work: &Path, registry: &str, repo: &str, tag: &str, platforms: &[&str]) -> String {
    let layout = work.join(format!("sample-{tag}"));
    let digest = berth_tools::sample::write(&layout, tag, platforms, tag).unwrap();
    let src = format!("oci:{}:{tag}", layout.display());
    let dst = format!("docker://{registry}/{repo}:{tag}");
    skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--dest-tls-verify=false",
        &src,
        &dst,
    ]);
    assert_eq!(
        skopeo_digest(&dst),
        digest.to_string(),
        "skopeo push kept the digest"
    );
    digest.to_string()
}

#[test]
fn copy_chain_berth_distribution_layout_archive_berth() {
    let berth_srv = Berth::start();
    let dist = Distribution::start();
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path();
    let b = &berth_srv.addr;
    let d = &dist.addr;

    // A multi-arch image, pushed to berth by skopeo.
    let multi = push_sample(w, b, "team/app", "v1", PLATFORMS);

    // berth -> distribution: every platform, same index digest.
    let r = copy(
        w,
        &[&format!("{b}/team/app:v1"), &format!("{d}/mirror/app:v1")],
    );
    assert_eq!(r[0]["report"]["digest"], multi);
    assert_eq!(
        r[0]["report"]["blobs_copied"], 5,
        "shared base layer + 2 x (app layer, config)"
    );
    assert_eq!(skopeo_digest(&format!("docker://{d}/mirror/app:v1")), multi);

    // Again: everything is already there.
    let r = copy(
        w,
        &[&format!("{b}/team/app:v1"), &format!("{d}/mirror/app:v1")],
    );
    assert_eq!(
        (
            r[0]["report"]["blobs_copied"].as_u64(),
            r[0]["report"]["blobs_skipped"].as_u64()
        ),
        (Some(0), Some(5))
    );

    // Same registry, other repository: cross-repository mount.
    let r = copy(
        w,
        &[&format!("{d}/mirror/app:v1"), &format!("{d}/other/app:v1")],
    );
    assert_eq!(r[0]["report"]["blobs_mounted"], 5, "{r}");
    assert_eq!(skopeo_digest(&format!("docker://{d}/other/app:v1")), multi);

    // distribution -> OCI layout (all platforms), readable by skopeo.
    let layout = w.join("layout");
    let r = copy(
        w,
        &[
            &format!("{d}/mirror/app:v1"),
            &format!("oci:{}:v1", layout.display()),
        ],
    );
    assert_eq!(r[0]["report"]["digest"], multi);
    assert_eq!(
        skopeo_digest(&format!("oci:{}:v1", layout.display())),
        multi
    );
    skopeo(&[
        "copy",
        "--all",
        &format!("oci:{}:v1", layout.display()),
        &format!("oci:{}:check", w.join("skopeo-check").display()),
    ]);

    // OCI layout -> docker-archive. A docker-archive holds one image of one
    // platform, so this leg selects linux/arm64: the platform manifest keeps
    // its digest (the index cannot travel through docker-archive).
    let arm = inspect_json(w, &format!("oci:{}:v1", layout.display()))["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["platform"] == "linux/arm64/v8")
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let archive = w.join("app.tar");
    let out = berth(
        w,
        &[
            "copy",
            &format!("oci:{}:v1", layout.display()),
            &format!("docker-archive:{}:team/app:v1", archive.display()),
        ],
    );
    assert!(
        !out.status.success(),
        "an index cannot go into a docker-archive"
    );
    // Refused before any blob moves, naming the platforms to choose from.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("choose one with --platform"), "{err}");
    assert!(err.contains("linux/arm64/v8"), "{err}");
    assert!(!err.contains("blob"), "blobs were transferred first: {err}");
    let r = copy(
        w,
        &[
            "--platform",
            "linux/arm64",
            &format!("oci:{}:v1", layout.display()),
            &format!("docker-archive:{}:team/app:v1", archive.display()),
        ],
    );
    assert_eq!(r[0]["report"]["digest"], arm.as_str());

    // docker-archive -> berth: the platform manifest's digest survives.
    let r = copy(
        w,
        &[
            &format!("docker-archive:{}", archive.display()),
            &format!("{b}/restored/app:v1-arm64"),
        ],
    );
    assert_eq!(r[0]["report"]["digest"], arm.as_str());
    assert_eq!(
        skopeo_digest(&format!("docker://{b}/restored/app:v1-arm64")),
        arm
    );
    // And the layout -> berth leg brings the whole index back.
    let r = copy(
        w,
        &[
            &format!("oci:{}:v1", layout.display()),
            &format!("{b}/restored/app:v1"),
        ],
    );
    assert_eq!(r[0]["report"]["digest"], multi);
    assert_eq!(
        skopeo_digest(&format!("docker://{b}/restored/app:v1")),
        multi
    );
}

#[test]
fn copy_tags_all_tags_platform_filter_and_oci_archive() {
    let dist = Distribution::start();
    let berth_srv = Berth::start();
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path();
    let d = &dist.addr;
    let b = &berth_srv.addr;
    let v1 = push_sample(w, d, "src/app", "v1", PLATFORMS);
    let v2 = push_sample(w, d, "src/app", "v2", &["linux/amd64"]);
    let v3 = push_sample(
        w,
        d,
        "src/app",
        "v3",
        &["linux/amd64", "linux/arm64/v8", "linux/s390x"],
    );

    // --all-tags between registries (tags listed with pagination).
    let r = copy(
        w,
        &[
            "--all-tags",
            &format!("{d}/src/app"),
            &format!("{b}/dst/app"),
        ],
    );
    assert_eq!(r.as_array().unwrap().len(), 3);
    for (tag, digest) in [("v1", &v1), ("v2", &v2), ("v3", &v3)] {
        assert_eq!(
            skopeo_digest(&format!("docker://{b}/dst/app:{tag}")),
            *digest,
            "{tag}"
        );
    }
    // A list of tags into an oci-archive, then back out.
    let oa = w.join("app-oci.tar");
    copy(
        w,
        &[
            "--tags",
            "v1,v2",
            &format!("{d}/src/app"),
            &format!("oci-archive:{}", oa.display()),
        ],
    );
    assert_eq!(
        skopeo_digest(&format!("oci-archive:{}:v2", oa.display())),
        v2
    );
    let r = copy(
        w,
        &[
            &format!("oci-archive:{}:v1", oa.display()),
            &format!("{b}/fromarchive/app:v1"),
        ],
    );
    assert_eq!(r[0]["report"]["digest"], v1);

    // Two of three platforms: a rewritten index, said so in the report.
    let r = copy(
        w,
        &[
            "--platform",
            "linux/amd64,linux/arm64",
            &format!("{d}/src/app:v3"),
            &format!("{b}/subset/app:v3"),
        ],
    );
    assert_eq!(r[0]["report"]["rewritten"], true);
    let info = inspect_json(w, &format!("{b}/subset/app:v3"));
    assert_eq!(info["platforms"].as_array().unwrap().len(), 2);
    assert_ne!(info["digest"], v3);
}

#[test]
fn docker_archive_interoperates_with_skopeo() {
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path();
    let layout = w.join("single");
    let digest = berth_tools::sample::write(&layout, "v1", &["linux/amd64"], "single").unwrap();
    let layout_ref = format!("oci:{}:v1", layout.display());
    let original = inspect_json(w, &layout_ref);
    let config = original["platforms"][0]["config"]
        .as_str()
        .unwrap()
        .to_owned();

    // berth writes, skopeo reads (as `docker load` would).
    let ours = w.join("berth.tar");
    copy(
        w,
        &[
            &layout_ref,
            &format!("docker-archive:{}:example.com/team/app:v1", ours.display()),
        ],
    );
    let seen: serde_json::Value = serde_json::from_str(&skopeo(&[
        "inspect",
        &format!("docker-archive:{}", ours.display()),
    ]))
    .unwrap();
    assert_eq!(seen["Architecture"], "amd64");
    let loaded = w.join("loaded");
    skopeo(&[
        "copy",
        &format!("docker-archive:{}", ours.display()),
        &format!("oci:{}:v1", loaded.display()),
    ]);
    let loaded_config: serde_json::Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--config",
        &format!("oci:{}:v1", loaded.display()),
    ]))
    .unwrap();
    assert_eq!(
        loaded_config["rootfs"],
        serde_json::from_str::<serde_json::Value>(&skopeo(&["inspect", "--config", &layout_ref]))
            .unwrap()["rootfs"]
    );
    // berth reads its own archive back with the original digest.
    let back = inspect_json(w, &format!("docker-archive:{}", ours.display()));
    assert_eq!(back["digest"], digest.to_string());

    // skopeo writes (legacy docker save layout), berth reads.
    let theirs = w.join("skopeo.tar");
    skopeo(&[
        "copy",
        &layout_ref,
        &format!("docker-archive:{}:team/app:v1", theirs.display()),
    ]);
    let info = inspect_json(
        w,
        &format!("docker-archive:{}:team/app:v1", theirs.display()),
    );
    assert_eq!(
        info["platforms"][0]["config"],
        config.as_str(),
        "the config is carried byte for byte"
    );
    assert_eq!(
        info["platforms"][0]["labels"]["org.opencontainers.image.version"],
        "single"
    );
    let out = w.join("from-skopeo");
    copy(
        w,
        &[
            &format!("docker-archive:{}", theirs.display()),
            &format!("oci:{}:v1", out.display()),
        ],
    );
    let cfg: serde_json::Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--config",
        &format!("oci:{}:v1", out.display()),
    ]))
    .unwrap();
    assert_eq!(
        cfg["config"]["Labels"]["org.opencontainers.image.title"],
        "sample"
    );
}

#[test]
fn inspect_shows_platforms_layers_and_history() {
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path();
    berth_tools::sample::write(&w.join("img"), "v1", PLATFORMS, "seed").unwrap();
    let r = format!("oci:{}:v1", w.join("img").display());
    let info = inspect_json(w, &r);
    let plats = info["platforms"].as_array().unwrap();
    assert_eq!(plats.len(), 2);
    assert_eq!(plats[0]["platform"], "linux/amd64");
    assert_eq!(plats[1]["platform"], "linux/arm64/v8");
    assert_eq!(info["unique_layers"], 3);
    assert_eq!(info["shared_layers"], 1);
    let history = plats[0]["history"].as_array().unwrap();
    assert_eq!(history.len(), 4);
    assert!(history[0]["layer"]["size"].as_i64().unwrap() > 0);
    assert!(history[1]["layer"].is_null(), "ENV owns no layer");
    assert_eq!(history[2]["created_by"], "COPY app /app # buildkit");
    assert!(history[2]["layer"]["digest"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    assert_eq!(
        plats[0]["labels"]["org.opencontainers.image.title"],
        "sample"
    );
    let text = berth_ok(w, &["inspect", &r]);
    assert!(
        text.contains("Platforms:  linux/amd64, linux/arm64/v8"),
        "{text}"
    );
    assert!(text.contains("(metadata only)"), "{text}");
    assert!(text.contains("1 shared between platforms"), "{text}");
}

/// Pushes an artifact whose subject is `subject` (a referrer) into `repo`
/// with plain HTTP requests; returns its digest.
pub(crate) fn push_referrer(
    registry: &str,
    repo: &str,
    subject: &str,
    subject_type: &str,
    text: &str,
) -> String {
    let http = reqwest::blocking::Client::new();
    let base = format!("http://{registry}/v2/{repo}");
    let put_blob = |data: &[u8]| -> String {
        let digest = berth_oci::Digest::sha256(data).to_string();
        let r = http
            .post(format!("{base}/blobs/uploads/?digest={digest}"))
            .body(data.to_vec())
            .send()
            .unwrap();
        assert_eq!(r.status(), 201, "{:?}", r.text());
        digest
    };
    let config = put_blob(b"{}");
    let layer = put_blob(text.as_bytes());
    let subject_size = http
        .get(format!("{base}/manifests/{subject}"))
        .header("accept", subject_type)
        .send()
        .unwrap()
        .bytes()
        .unwrap()
        .len();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.example.note",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": config, "size": 2},
        "layers": [{"mediaType": "text/plain", "digest": layer, "size": text.len()}],
        "subject": {"mediaType": subject_type, "digest": subject, "size": subject_size},
    }))
    .unwrap();
    let digest = berth_oci::Digest::sha256(&manifest).to_string();
    let r = http
        .put(format!("{base}/manifests/{digest}"))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest)
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text());
    digest
}

/// The digests the referrers API lists for `subject`.
fn referrers(registry: &str, repo: &str, subject: &str) -> Vec<String> {
    let v: serde_json::Value =
        reqwest::blocking::get(format!("http://{registry}/v2/{repo}/referrers/{subject}"))
            .unwrap()
            .json()
            .unwrap();
    v["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap().to_owned())
        .collect()
}

/// `berth COMMAND -q -o json ARGS...`: the report.
fn export_json(dir: &Path, args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = vec![args[0], "-q", "-o", "json"];
    all.extend_from_slice(&args[1..]);
    serde_json::from_str::<serde_json::Value>(&berth_ok(dir, &all))
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn export_and_import_a_namespace_and_a_registry_with_their_referrers() {
    let src = Berth::start();
    let dst = Berth::start();
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path();
    let (a, b) = (&src.addr, &dst.addr);
    let app_v1 = push_sample(w, a, "acme/app", "v1", PLATFORMS);
    let app_v2 = push_sample(w, a, "acme/app", "v2", &["linux/amd64"]);
    let web_v1 = push_sample(w, a, "acme/web", "v1", &["linux/arm64/v8"]);
    let other = push_sample(w, a, "other/x", "v1", &["linux/amd64"]);
    // A note on the index, and a note on the note: referrers of referrers.
    let note = push_referrer(a, "acme/app", &app_v1, berth_oci::media::OCI_INDEX, "sbom");
    let note2 = push_referrer(
        a,
        "acme/app",
        &note,
        "application/vnd.oci.image.manifest.v1+json",
        "signature of the sbom",
    );

    // The namespace into a directory: its tags and referrers, nothing of
    // `other`.
    let dir = w.join("export");
    let layout = format!("oci:{}", dir.display());
    let r = export_json(w, &["export", &format!("{a}/acme"), &layout]);
    let mut names: Vec<String> = r
        .iter()
        .map(|c| {
            format!(
                "{}|{}",
                c["repository"].as_str().unwrap(),
                c["reference"].as_str().unwrap()
            )
        })
        .collect();
    names.sort();
    let mut want = vec![
        "acme/app|v1".to_owned(),
        "acme/app|v2".to_owned(),
        "acme/web|v1".to_owned(),
        format!("acme/app|{note}"),
        format!("acme/app|{note2}"),
    ];
    want.sort();
    assert_eq!(names, want);
    // Any OCI tool reads one image out of it (skopeo, independently).
    assert_eq!(skopeo_digest(&format!("{layout}:acme/app:v1")), app_v1);
    assert_eq!(skopeo_digest(&format!("{layout}:acme/web:v1")), web_v1);
    // Exported again into the same directory: nothing new to copy.
    let again = export_json(w, &["export", &format!("{a}/acme"), &layout]);
    assert_eq!(again.len(), 5);
    assert!(
        again.iter().all(|c| c["blobs_copied"] == 0),
        "a second export copies only new blobs: {again:?}"
    );

    // Imported into an empty registry: the same digests, the referrers
    // attached to the same subjects.
    let r = export_json(w, &["import", &layout, b]);
    assert_eq!(r.len(), 5);
    for (image, digest) in [
        ("acme/app:v1", &app_v1),
        ("acme/app:v2", &app_v2),
        ("acme/web:v1", &web_v1),
    ] {
        assert_eq!(
            skopeo_digest(&format!("docker://{b}/{image}")),
            *digest,
            "{image}"
        );
    }
    assert_eq!(referrers(b, "acme/app", &app_v1), vec![note.clone()]);
    assert_eq!(referrers(b, "acme/app", &note), vec![note2.clone()]);

    // The whole registry into an oci-archive, imported under another
    // namespace.
    let archive = format!("oci-archive:{}", w.join("all.tar").display());
    let r = export_json(w, &["export", a, &archive]);
    assert_eq!(r.len(), 6, "{r:?}");
    export_json(w, &["import", "--to-namespace", "moved", &archive, b]);
    assert_eq!(skopeo_digest(&format!("docker://{b}/moved/x:v1")), other);
    assert_eq!(skopeo_digest(&format!("docker://{b}/moved/app:v1")), app_v1);
    assert_eq!(referrers(b, "moved/app", &app_v1), vec![note]);

    // Refusals name what is wrong and the way out.
    let copied = w.join("copied");
    copy(
        w,
        &[
            &format!("{a}/other/x:v1"),
            &format!("oci:{}:v1", copied.display()),
        ],
    );
    let out = berth(w, &["import", &format!("oci:{}", copied.display()), b]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not written by `berth export`") && err.contains("berth copy"),
        "{err}"
    );
    let out = berth(w, &["export", &format!("{a}/nothing-here"), &layout]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no repositories under nothing-here"), "{err}");
}
