//! Interoperability with real clients: skopeo, oras (oras-py), podman,
//! buildah, the Docker daemon, containerd's `ctr` and Helm 4 talk to a real
//! `berth serve` on a loopback port.
//!
//! Test images come from [`crate::layout`] (OCI layouts written by the
//! tests), so nothing is pulled from the internet. The clients get a
//! private configuration (policy, registries.conf, auth file, storage under
//! a temp dir, the vfs driver) through flags and environment variables;
//! nothing under /etc is read or written on purpose.
//!
//! A missing docker, dockerd, ctr or Helm SDK always fails its test; another
//! missing client fails the test when `CI` is set and skips it, loudly,
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

mod auth;
mod buildah;
mod ctr;
pub(crate) mod daemon;
pub(crate) mod docker;
mod helm;
mod oidc_docker;
mod oras;
mod podman;
mod quickstart;
mod s3;
mod scan_docker;
mod skopeo;
mod tls;
mod trust_docker;

/// Upper bound for one client invocation.
const TOOL_TIMEOUT: Duration = Duration::from_secs(40);

/// Accept header of a client that understands every manifest kind.
const ACCEPT_ALL: &[&str] = &[
    layout::MANIFEST,
    layout::INDEX,
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

fn in_ci() -> bool {
    std::env::var("CI")
        .map(|v| !v.is_empty() && v != "0" && v != "false")
        .unwrap_or(false)
}

/// Whether `tool` is available; in CI a missing tool is a failure.
pub(crate) fn require(tool: &str, test: &str) -> bool {
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
pub(crate) fn run(cmd: &mut Command) -> Output {
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
pub(crate) fn ok(cmd: &mut Command) -> Vec<u8> {
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

pub(crate) fn parse(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(bytes)))
}

/// A private configuration for the containers/image tools (skopeo, podman,
/// buildah): signature policy, registries.conf, auth file and scratch
/// directories, all in one temp dir.
pub(crate) struct Clients {
    tmp: tempfile::TempDir,
}

impl Clients {
    pub(crate) fn new() -> Clients {
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
            .tempdir_in(short_tmp())
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
    pub(crate) fn dir(&self, name: &str) -> PathBuf {
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

    pub(crate) fn skopeo_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("skopeo");
        self.env(&mut cmd);
        cmd.arg("--policy")
            .arg(self.tmp.path().join("policy.json"))
            .args(args);
        cmd
    }

    /// skopeo copies `source` (`docker://...`, TLS unverified) into the
    /// OCI layout `layout` under `tag`: `Ok`, or skopeo's stderr (a pull
    /// policy's refusal).
    pub(crate) fn skopeo_pull(&self, source: &str, layout: &Path, tag: &str) -> Result<(), String> {
        let out = run(&mut self.skopeo_cmd(&[
            "copy",
            "--src-tls-verify=false",
            source,
            &format!("oci:{}:{tag}", layout.display()),
        ]));
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Runs skopeo, asserting success; returns stdout.
    pub(crate) fn skopeo(&self, args: &[&str]) -> Vec<u8> {
        ok(&mut self.skopeo_cmd(args))
    }

    /// podman (or buildah: same global storage flags) on the storage
    /// `store` (a name; each gets its own root) with the vfs driver.
    pub(crate) fn containers_cmd(&self, tool: &str, store: &str, args: &[&str]) -> Command {
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

    pub(crate) fn policy(&self) -> String {
        self.tmp.path().join("policy.json").display().to_string()
    }

    /// Pushes the layout image `dir:tag` to `dest` (a `docker://` reference)
    /// with skopeo, keeping digests.
    pub(crate) fn push_layout(&self, dir: &Path, tag: &str, dest: &str, all: bool) {
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
    pub(crate) fn usable(&self, tool: &str) -> Result<(), String> {
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

/// `/tmp` rather than a possibly long `$TMPDIR` (podman's runroot limit).
fn short_tmp() -> PathBuf {
    let tmp = Path::new("/tmp");
    if tmp.is_dir() {
        tmp.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// An HTTP response, fully read.
pub(crate) struct Resp {
    pub(crate) status: u16,
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) body: Vec<u8>,
}

impl Resp {
    pub(crate) fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    pub(crate) fn json(&self) -> Value {
        parse(&self.body)
    }
}

/// One HTTP request with reqwest on a private runtime (the tests are plain
/// `#[test]`s that mostly wait for client processes).
pub(crate) fn http(method: &str, url: &str, accept: &[&str]) -> Resp {
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

pub(crate) fn sha256(data: &[u8]) -> String {
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

/// Pushes the image `manifest` of layout `dir` to `repo` under `tags` with plain
/// HTTP (monolithic blob uploads), for tests that need a subject without
/// depending on a second client.
fn push_image_http(base: &str, repo: &str, dir: &Path, manifest: &str, tags: &[&str]) {
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
        let body = layout::read_blob(dir, manifest);
        for tag in tags {
            let r = client
                .put(format!("{base}/v2/{repo}/manifests/{tag}"))
                .header("content-type", layout::MANIFEST)
                .body(body.clone())
                .send()
                .await
                .expect("manifest push");
            assert_eq!(r.status().as_u16(), 201, "manifest as {tag}");
        }
    });
}
