//! Interoperability with real clients: skopeo, oras (oras-py), podman and
//! buildah talk to a real `berth serve` on a loopback port.
//!
//! Test images come from [`crate::layout`] (OCI layouts written by the
//! tests), so nothing is pulled from the internet. The clients get a
//! private configuration (policy, registries.conf, auth file, storage under
//! a temp dir, the vfs driver) through flags and environment variables;
//! nothing under /etc is read or written on purpose.
//!
//! A missing client fails the test when `CI` is set and skips it, loudly,
//! otherwise (`scripts/install-test-deps.sh` installs all of them). Podman
//! and buildah additionally skip, with the reason, when they are installed
//! but cannot run in the sandbox at hand.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use berth_oci::digest::Digest;
use serde_json::Value;

use crate::common::{self, Berth};
use crate::layout;

/// Upper bound for one client invocation.
const TOOL_TIMEOUT: Duration = Duration::from_secs(40);

/// Accept header of a client that understands every manifest kind.
const ACCEPT_ALL: &[&str] = &[
    layout::MANIFEST,
    layout::INDEX,
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

// ---------------------------------------------------------------- harness

fn in_ci() -> bool {
    std::env::var("CI")
        .map(|v| !v.is_empty() && v != "0" && v != "false")
        .unwrap_or(false)
}

/// Whether `tool` is available; in CI a missing tool is a failure.
fn require(tool: &str, test: &str) -> bool {
    if common::have(tool) {
        return true;
    }
    let msg =
        format!("{test}: `{tool}` is not installed (scripts/install-test-deps.sh installs it)");
    assert!(!in_ci(), "{msg}; CI=true requires every interop client");
    eprintln!("SKIPPED {msg}");
    false
}

/// Whether the oras Python SDK is importable; in CI a missing one fails.
fn require_oras(test: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import oras.provider, oras.oci"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if ok {
        return true;
    }
    let msg = format!("{test}: the `oras` Python package is not importable (pip install oras)");
    assert!(!in_ci(), "{msg}; CI=true requires every interop client");
    eprintln!("SKIPPED {msg}");
    false
}

/// Runs `cmd` to completion within [`TOOL_TIMEOUT`], capturing its output.
fn run(cmd: &mut Command) -> Output {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let mut so = child.stdout.take().expect("stdout");
    let mut se = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + TOOL_TIMEOUT;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = err.join().unwrap_or_default();
            panic!(
                "{what} did not finish within {TOOL_TIMEOUT:?}; stderr: {}",
                String::from_utf8_lossy(&stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// Runs `cmd`, asserting success; returns stdout.
fn ok(cmd: &mut Command) -> Vec<u8> {
    let what = format!("{cmd:?}");
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).expect("UTF-8 output")
}

fn parse(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(bytes)))
}

/// A private configuration for the containers/image tools (skopeo, podman,
/// buildah): signature policy, registries.conf, auth file and scratch
/// directories, all in one temp dir.
struct Clients {
    tmp: tempfile::TempDir,
}

impl Clients {
    fn new() -> Clients {
        // Short and lowercase: podman names an image loaded from `oci:DIR`
        // after DIR (names must be lowercase) and refuses a runroot longer
        // than 50 characters.
        let id: String = layout::random_bytes(6)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let tmp = tempfile::Builder::new()
            .prefix(&format!("bi-{id}"))
            .rand_bytes(0)
            .tempdir()
            .expect("tempdir");
        let p = tmp.path();
        std::fs::write(
            p.join("policy.json"),
            r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
        )
        .expect("policy");
        std::fs::write(
            p.join("registries.conf"),
            "unqualified-search-registries = []\n",
        )
        .expect("registries.conf");
        std::fs::write(p.join("auth.json"), "{}").expect("auth.json");
        std::fs::write(p.join("containers.conf"), "").expect("containers.conf");
        // Defaults only: every invocation passes its own --root/--runroot.
        std::fs::write(
            p.join("storage.conf"),
            format!(
                "[storage]\ndriver = \"vfs\"\nrunroot = \"{}\"\ngraphroot = \"{}\"\n",
                p.join("default-run").display(),
                p.join("default-root").display()
            ),
        )
        .expect("storage.conf");
        std::fs::create_dir_all(p.join("tmp")).expect("tmp");
        Clients { tmp }
    }

    /// A fresh directory under the temp dir.
    fn dir(&self, name: &str) -> PathBuf {
        let d = self.tmp.path().join(name);
        std::fs::create_dir_all(&d).expect("mkdir");
        d
    }

    fn env(&self, cmd: &mut Command) {
        let p = self.tmp.path();
        cmd.env("CONTAINERS_REGISTRIES_CONF", p.join("registries.conf"))
            .env("REGISTRY_AUTH_FILE", p.join("auth.json"))
            .env("CONTAINERS_CONF", p.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", p.join("storage.conf"))
            .env("TMPDIR", p.join("tmp"));
    }

    fn skopeo_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("skopeo");
        self.env(&mut cmd);
        cmd.arg("--policy")
            .arg(self.tmp.path().join("policy.json"))
            .args(args);
        cmd
    }

    /// Runs skopeo, asserting success; returns stdout.
    fn skopeo(&self, args: &[&str]) -> Vec<u8> {
        ok(&mut self.skopeo_cmd(args))
    }

    /// podman (or buildah: same global storage flags) on the storage
    /// `store` (a name; each gets its own root) with the vfs driver.
    fn containers_cmd(&self, tool: &str, store: &str, args: &[&str]) -> Command {
        let root = self.dir(&format!("{tool}-{store}/root"));
        let runroot = self.dir(&format!("{}-{store}/r", &tool[..1]));
        let mut cmd = Command::new(tool);
        self.env(&mut cmd);
        cmd.arg("--root")
            .arg(root)
            .arg("--runroot")
            .arg(runroot)
            .arg("--storage-driver")
            .arg("vfs");
        if tool == "podman" {
            cmd.arg("--events-backend")
                .arg("none")
                .arg("--cgroup-manager")
                .arg("cgroupfs")
                .arg("--tmpdir")
                .arg(self.dir(&format!("{tool}-{store}/tmp")));
        }
        cmd.args(args);
        cmd
    }

    fn policy(&self) -> String {
        self.tmp.path().join("policy.json").display().to_string()
    }

    /// Pushes the layout image `dir:tag` to `dest` (a `docker://` reference)
    /// with skopeo, keeping digests.
    fn push_layout(&self, dir: &Path, tag: &str, dest: &str, all: bool) {
        let src = format!("oci:{}:{tag}", dir.display());
        let mut args = vec!["copy", "--preserve-digests", "--dest-tls-verify=false"];
        if all {
            args.push("--all");
        }
        args.push(&src);
        args.push(dest);
        self.skopeo(&args);
    }

    /// Checks that `tool` can work with vfs storage here; `Err` says why not.
    fn usable(&self, tool: &str) -> Result<(), String> {
        let args: &[&str] = if tool == "podman" {
            &["info", "--format", "{{.Store.GraphDriverName}}"]
        } else {
            &["images"]
        };
        let out = run(&mut self.containers_cmd(tool, "probe", args));
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "`{tool} --storage-driver vfs {}` failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }
}

/// An HTTP response, fully read.
struct Resp {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    fn json(&self) -> Value {
        parse(&self.body)
    }
}

/// One HTTP request with reqwest on a private runtime (the tests are plain
/// `#[test]`s that mostly wait for client processes).
fn http(method: &str, url: &str, accept: &[&str]) -> Resp {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = reqwest::Client::new()
            .request(method, url)
            .timeout(Duration::from_secs(20));
        if !accept.is_empty() {
            req = req.header(reqwest::header::ACCEPT, accept.join(", "));
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.expect("body").to_vec();
        Resp {
            status,
            headers,
            body,
        }
    })
}

fn sha256(data: &[u8]) -> String {
    Digest::sha256(data).as_str().to_owned()
}

/// The config and layer digests of a manifest.
fn blobs_of(manifest: &Value) -> Vec<String> {
    let mut v = vec![manifest["config"]["digest"]
        .as_str()
        .expect("config digest")
        .to_owned()];
    v.extend(layer_digests(manifest));
    v
}

fn layer_digests(manifest: &Value) -> Vec<String> {
    manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["digest"].as_str().expect("layer digest").to_owned())
        .collect()
}

/// Asserts that `repo` on `base` serves every blob of `manifest` with the
/// size the manifest gives.
fn assert_blobs_present(base: &str, repo: &str, manifest: &Value) {
    let mut descs = vec![manifest["config"].clone()];
    descs.extend(
        manifest["layers"]
            .as_array()
            .expect("layers")
            .iter()
            .cloned(),
    );
    for d in descs {
        let digest = d["digest"].as_str().expect("digest");
        let r = http("HEAD", &format!("{base}/v2/{repo}/blobs/{digest}"), &[]);
        assert_eq!(r.status, 200, "blob {digest} missing from {repo}");
        assert_eq!(
            r.header("content-length"),
            Some(d["size"].to_string()),
            "size of {digest}"
        );
        assert_eq!(r.header("docker-content-digest").as_deref(), Some(digest));
    }
}

// ---------------------------------------------------------------- skopeo

#[test]
fn skopeo_push_from_layout_inspect_and_pull_back() {
    if !require("skopeo", "skopeo_push_from_layout_inspect_and_pull_back") {
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
fn skopeo_copy_all_multiarch_index() {
    if !require("skopeo", "skopeo_copy_all_multiarch_index") {
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
            "HEAD",
            &format!("{}/v2/interop/multi-copy/manifests/{child}", berth.url()),
            ACCEPT_ALL,
        );
        assert_eq!(r.status, 200, "child {child} missing after registry copy");
    }
}

#[test]
fn skopeo_copy_all_to_and_from_reference_registry() {
    if !require("skopeo", "skopeo_copy_all_to_and_from_reference_registry")
        || !require(
            common::DISTRIBUTION_BIN,
            "skopeo_copy_all_to_and_from_reference_registry",
        )
    {
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
fn skopeo_list_tags() {
    if !require("skopeo", "skopeo_list_tags") {
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
fn skopeo_delete_then_404() {
    if !require("skopeo", "skopeo_delete_then_404") {
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

// ---------------------------------------------------------------- oras

/// Drives oras-py against the registry: an artifact typed by its config
/// (pushed with `push(..., subject=...)`), a second with an explicit
/// `artifactType` and the empty config, the referrers API unfiltered and
/// filtered, and a pull of the first artifact. Writes `result.json`.
const ORAS_SCRIPT: &str = r#"
import hashlib, json, os, sys
import oras.oci, oras.provider

host, repo, subject_digest, subject_size, work = sys.argv[1:6]
os.chdir(work)
reg = oras.provider.Registry(hostname=host, insecure=True)
out = {}

def resp(r):
    return {"status": r.status_code,
            "headers": {k.lower(): v for k, v in r.headers.items()},
            "body": r.text}

subject = oras.oci.Subject(mediaType="application/vnd.oci.image.manifest.v1+json",
                           digest=subject_digest, size=int(subject_size))

with open("sbom.spdx.json", "w") as f:
    json.dump({"spdxVersion": "SPDX-2.3", "name": "berth-interop"}, f)
with open("config.json", "w") as f:
    json.dump({"tool": "berth-interop"}, f)
r = reg.push(target=f"{host}/{repo}:sbom",
             files=["sbom.spdx.json:application/spdx+json"],
             manifest_config="config.json:application/vnd.berth.test.sbom.config.v1+json",
             subject=subject, quiet=True)
out["sbom_push"] = resp(r)

container = reg.get_container(f"{host}/{repo}:sig")
payload = b"not-really-a-signature"
with open("sig.bin", "wb") as f:
    f.write(payload)
with open("empty.json", "wb") as f:
    f.write(b"{}")
sig = {"mediaType": "application/vnd.berth.test.signature.v1",
       "digest": "sha256:" + hashlib.sha256(payload).hexdigest(), "size": len(payload)}
empty = {"mediaType": "application/vnd.oci.empty.v1+json",
         "digest": "sha256:" + hashlib.sha256(b"{}").hexdigest(), "size": 2}
reg._check_200_response(reg.upload_blob("sig.bin", container, sig))
reg._check_200_response(reg.upload_blob("empty.json", container, empty))
manifest = {"schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "artifactType": "application/vnd.berth.test.signature.v1",
            "config": empty, "layers": [sig],
            "subject": {"mediaType": subject.mediaType, "digest": subject.digest,
                        "size": subject.size}}
out["sig_push"] = resp(reg.upload_manifest(manifest, container))

base = f"http://{host}/v2/{repo}/referrers/{subject_digest}"
accept = {"Accept": "application/vnd.oci.image.index.v1+json"}
out["referrers"] = resp(reg.do_request(base, "GET", headers=accept))
out["filtered"] = resp(reg.do_request(
    base + "?artifactType=application/vnd.berth.test.signature.v1", "GET", headers=accept))

files = reg.pull(target=f"{host}/{repo}:sbom", outdir=os.path.join(work, "pulled"))
out["pulled"] = [os.path.relpath(p, work) for p in files]
with open(os.path.join(work, "result.json"), "w") as f:
    json.dump(out, f)
"#;

const SBOM_CONFIG_TYPE: &str = "application/vnd.berth.test.sbom.config.v1+json";
const SIG_TYPE: &str = "application/vnd.berth.test.signature.v1";

#[test]
fn oras_artifacts_with_subject_and_referrers() {
    let test = "oras_artifacts_with_subject_and_referrers";
    if !require("python3", test) || !require_oras(test) {
        return;
    }
    let berth = Berth::start();
    let base = berth.url();
    let c = Clients::new();

    // The subject: an image pushed with plain HTTP (no other client needed).
    let src = c.dir("src");
    let subject = layout::build_image(&src, "linux/amd64", &[64]);
    push_image_http(&base, "interop/app", &src, &subject.digest, "v1");

    let work = c.dir("oras");
    std::fs::write(work.join("push.py"), ORAS_SCRIPT).expect("script");
    ok(Command::new("python3")
        .arg(work.join("push.py"))
        .arg(&berth.addr)
        .arg("interop/app")
        .arg(&subject.digest)
        .arg(subject.size.to_string())
        .arg(&work));
    let result = parse(&std::fs::read(work.join("result.json")).expect("result.json"));

    // Both pushes were accepted and the registry acknowledged the subject.
    let mut pushed = Vec::new();
    for key in ["sbom_push", "sig_push"] {
        let r = &result[key];
        assert_eq!(r["status"], 201, "{key}: {}", r["body"]);
        assert_eq!(
            r["headers"]["oci-subject"],
            subject.digest.as_str(),
            "{key}: OCI-Subject header"
        );
        let digest = r["headers"]["docker-content-digest"]
            .as_str()
            .unwrap_or_else(|| panic!("{key}: no Docker-Content-Digest"))
            .to_owned();
        let m = http(
            "GET",
            &format!("{base}/v2/interop/app/manifests/{digest}"),
            ACCEPT_ALL,
        );
        assert_eq!(m.status, 200);
        assert_eq!(sha256(&m.body), digest);
        pushed.push((digest, m.body.len() as u64));
    }
    let (sbom, sbom_size) = pushed[0].clone();
    let (sig, sig_size) = pushed[1].clone();

    // The referrers index lists both, typed.
    let r = &result["referrers"];
    assert_eq!(r["status"], 200, "referrers: {}", r["body"]);
    assert!(
        r["headers"]["content-type"]
            .as_str()
            .unwrap_or_default()
            .starts_with(layout::INDEX),
        "referrers content type: {}",
        r["headers"]["content-type"]
    );
    let idx: Value = serde_json::from_str(r["body"].as_str().expect("body")).expect("index");
    assert_eq!(idx["schemaVersion"], 2);
    assert_eq!(idx["mediaType"], layout::INDEX);
    let list = idx["manifests"].as_array().expect("manifests");
    assert_eq!(list.len(), 2, "referrers: {idx}");
    let find = |d: &str| {
        list.iter()
            .find(|m| m["digest"] == d)
            .unwrap_or_else(|| panic!("{d} not among referrers: {idx}"))
    };
    let s = find(&sbom);
    assert_eq!(
        s["artifactType"], SBOM_CONFIG_TYPE,
        "artifactType from config"
    );
    assert_eq!(s["mediaType"], layout::MANIFEST);
    assert_eq!(s["size"], sbom_size);
    let g = find(&sig);
    assert_eq!(g["artifactType"], SIG_TYPE);
    assert_eq!(g["size"], sig_size);

    // Filtered by artifactType.
    let f = &result["filtered"];
    assert_eq!(f["status"], 200, "filtered: {}", f["body"]);
    assert_eq!(f["headers"]["oci-filters-applied"], "artifactType");
    let fidx: Value = serde_json::from_str(f["body"].as_str().expect("body")).expect("index");
    let flist = fidx["manifests"].as_array().expect("manifests");
    assert_eq!(flist.len(), 1, "filtered referrers: {fidx}");
    assert_eq!(flist[0]["digest"], sig.as_str());
    assert_eq!(flist[0]["artifactType"], SIG_TYPE);

    // oras pulled the artifact's file back intact.
    assert_eq!(
        result["pulled"],
        serde_json::json!(["pulled/sbom.spdx.json"])
    );
    assert_eq!(
        std::fs::read(work.join("pulled/sbom.spdx.json")).expect("pulled"),
        std::fs::read(work.join("sbom.spdx.json")).expect("original")
    );

    // Deleting a referrer removes it from the index.
    let d = http(
        "DELETE",
        &format!("{base}/v2/interop/app/manifests/{sig}"),
        &[],
    );
    assert_eq!(d.status, 202);
    let r = http(
        "GET",
        &format!("{base}/v2/interop/app/referrers/{}", subject.digest),
        &[],
    );
    assert_eq!(r.status, 200);
    let after: Vec<Value> = r.json()["manifests"].as_array().expect("manifests").clone();
    assert_eq!(after.len(), 1, "after delete: {after:?}");
    assert_eq!(after[0]["digest"], sbom.as_str());
}

/// Pushes the image `manifest` of layout `dir` to `repo:tag` with plain
/// HTTP (monolithic blob uploads), for tests that need a subject without
/// depending on a second client.
fn push_image_http(base: &str, repo: &str, dir: &Path, manifest: &str, tag: &str) {
    let m = layout::read_json(dir, manifest);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let client = reqwest::Client::new();
        for d in blobs_of(&m) {
            let r = client
                .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={d}"))
                .header("content-type", "application/octet-stream")
                .body(layout::read_blob(dir, &d))
                .send()
                .await
                .expect("blob push");
            assert_eq!(r.status().as_u16(), 201, "blob {d}");
        }
        let r = client
            .put(format!("{base}/v2/{repo}/manifests/{tag}"))
            .header("content-type", layout::MANIFEST)
            .body(layout::read_blob(dir, manifest))
            .send()
            .await
            .expect("manifest push");
        assert_eq!(r.status().as_u16(), 201, "manifest");
    });
}

// ---------------------------------------------------------------- podman / buildah

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
fn podman_push_and_pull_with_vfs() {
    let test = "podman_push_and_pull_with_vfs";
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
fn buildah_build_from_scratch_and_push() {
    let test = "buildah_build_from_scratch_and_push";
    if !require("buildah", test) {
        return;
    }
    let c = Clients::new();
    if let Err(why) = c.usable("buildah") {
        eprintln!("SKIPPED {test}: buildah cannot run in this environment: {why}");
        return;
    }
    let berth = Berth::start();
    let policy = c.policy();
    let payload = layout::random_bytes(5000);
    let file = c.dir("ctx").join("payload.bin");
    std::fs::write(&file, &payload).expect("payload");

    let b = |args: &[&str]| text(ok(&mut c.containers_cmd("buildah", "s", args)));
    let ctr = b(&["from", "--signature-policy", &policy, "scratch"]);
    let ctr = ctr.trim();
    b(&["copy", ctr, &file.display().to_string(), "/payload.bin"]);
    b(&[
        "config",
        "--cmd",
        "/payload.bin",
        "--label",
        "berth.test=buildah",
        ctr,
    ]);
    b(&[
        "commit",
        "--format",
        "oci",
        "--signature-policy",
        &policy,
        ctr,
        "localhost/built:v1",
    ]);

    let digestfile = c.tmp.path().join("pushed.digest");
    b(&[
        "push",
        "--tls-verify=false",
        "--signature-policy",
        &policy,
        "--digestfile",
        &digestfile.display().to_string(),
        "localhost/built:v1",
        &format!("docker://{}/interop/built:v1", berth.addr),
    ]);
    let pushed = std::fs::read_to_string(&digestfile).expect("digestfile");
    let m = http(
        "GET",
        &format!("{}/v2/interop/built/manifests/v1", berth.url()),
        ACCEPT_ALL,
    );
    assert_eq!(m.status, 200);
    assert_eq!(
        m.header("docker-content-digest").as_deref(),
        Some(pushed.trim())
    );
    let manifest = m.json();
    assert_eq!(manifest["mediaType"], layout::MANIFEST);
    assert_blobs_present(&berth.url(), "interop/built", &manifest);
    let config = http(
        "GET",
        &format!(
            "{}/v2/interop/built/blobs/{}",
            berth.url(),
            manifest["config"]["digest"].as_str().expect("config")
        ),
        &[],
    );
    assert_eq!(config.json()["config"]["Labels"]["berth.test"], "buildah");

    // The single layer, fetched from berth, unpacks to the file we copied.
    let layers = layer_digests(&manifest);
    assert_eq!(layers.len(), 1);
    let blob = http(
        "GET",
        &format!("{}/v2/interop/built/blobs/{}", berth.url(), layers[0]),
        &[],
    );
    assert_eq!(blob.status, 200);
    assert_eq!(sha256(&blob.body), layers[0]);
    let out = c.dir("unpacked");
    let tgz = c.tmp.path().join("layer.tar.gz");
    std::fs::write(&tgz, &blob.body).expect("layer");
    ok(Command::new("tar")
        .arg("-xzf")
        .arg(&tgz)
        .arg("-C")
        .arg(&out));
    assert_eq!(
        std::fs::read(out.join("payload.bin")).expect("payload in layer"),
        payload
    );
}
