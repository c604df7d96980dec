//! The repository's `Dockerfile`, built and run with the test binary's
//! Docker daemon ([`crate::interop::daemon`]), offline.
//!
//! The image is built as docs/operations.md says for a binary built on the
//! host: `docker build --build-arg BERTH_FROM=prebuilt -t berth .` in a
//! context holding the `Dockerfile`, the `.dockerignore` and the binary
//! under test (stripped) at `target/release/berth`. Nothing is pulled: the
//! runtime base, `gcr.io/distroless/cc-debian12:nonroot` in the Dockerfile,
//! is a stand-in imported into the test's own daemon under that name, made
//! of this host's Debian 12 files (the libraries `ldd` names, CA
//! certificates, a `nonroot` user 65532), which is what that image holds.
//! The `source` stage (the Rust image, crates.io) is never built: BuildKit
//! builds only the stages the image needs, which is what makes the
//! prebuilt build offline.
//!
//! BuildKit: `docker build` when the CLI has buildx (Docker 23+), else
//! Debian's 20.10 CLI with `DOCKER_BUILDKIT=1` (the daemon's built-in
//! BuildKit); the legacy builder would build every stage.
//!
//! The container runs with the host's network (the test daemon has no
//! bridge) on a free port it picks and writes to `addr_file` in its
//! volume, and the Docker daemon pushes to it and pulls from it.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::common::berth_bin;
use crate::interop::daemon::{daemon, need};
use crate::interop::docker::{docker_archive, layer};
use crate::interop::{ok, run};
use crate::layout;

const DOCKERFILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../Dockerfile");
const DOCKERIGNORE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.dockerignore");
/// The Dockerfile's default runtime base.
const RUNTIME_IMAGE: &str = "gcr.io/distroless/cc-debian12:nonroot";
/// The uid and gid of distroless's `nonroot`.
const NONROOT: u64 = 65532;
const PASSWORD: &str = "container-admin-password";

/// A docker command against the test daemon, with the client
/// configuration in `config`.
pub(crate) fn docker(config: &Path, args: &[&str]) -> Command {
    daemon().docker(config, args)
}

/// A docker CLI that builds with BuildKit: `docker` when it has buildx,
/// else Debian's 20.10 CLI (built-in BuildKit client).
fn buildkit_docker(config: &Path) -> Command {
    let has_buildx = Command::new("docker")
        .args(["buildx", "version"])
        .output()
        .is_ok_and(|o| o.status.success());
    let program = if has_buildx {
        "docker"
    } else {
        let debian = "/usr/bin/docker";
        let version = Command::new(debian)
            .args(["version", "--format", "{{.Client.Version}}"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        assert!(
            version.starts_with("20.") || version.starts_with("19."),
            "no docker CLI builds with BuildKit here: `docker buildx` is missing and \
             {debian} is {version:?} (Debian's docker.io 20.10 has BuildKit built in)"
        );
        debian
    };
    let mut cmd = Command::new(program);
    cmd.env("DOCKER_HOST", daemon().host())
        .env("DOCKER_CONFIG", config)
        .env("DOCKER_BUILDKIT", "1")
        .env_remove("DOCKER_CONTEXT");
    cmd
}

fn text(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&ok(cmd)).trim().to_owned()
}

/// Appends a directory entry.
fn tar_dir(b: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32, owner: u64) {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_size(0);
    h.set_mode(mode);
    h.set_uid(owner);
    h.set_gid(owner);
    h.set_mtime(1_704_067_200);
    h.set_cksum();
    b.append_data(&mut h, path, std::io::empty()).unwrap();
}

fn tar_file(b: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32, data: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(mode);
    h.set_mtime(1_704_067_200);
    h.set_cksum();
    b.append_data(&mut h, path, data).unwrap();
}

/// The shared libraries `binary` loads, as `ldd` names them.
fn shared_libraries(binary: &str) -> Vec<String> {
    let out = text(Command::new("ldd").arg(binary));
    out.lines()
        .filter_map(|l| {
            let l = l.trim();
            // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or
            // "/lib64/ld-linux-x86-64.so.2 (0x...)"
            let path = match l.split_once("=>") {
                Some((_, right)) => right.trim(),
                None => l,
            };
            let path = path.split_whitespace().next()?;
            path.starts_with('/').then(|| path.to_owned())
        })
        .collect()
}

/// Imports the stand-in runtime base into the daemon as [`RUNTIME_IMAGE`].
fn import_runtime_base(config: &Path, work: &Path) {
    let mut b = tar::Builder::new(Vec::new());
    let mut dirs: Vec<String> = ["etc", "etc/ssl", "etc/ssl/certs", "usr", "usr/local"]
        .iter()
        .map(|d| (*d).to_owned())
        .collect();
    let libs = shared_libraries(berth_bin());
    assert!(
        libs.iter().any(|l| l.contains("libc.so")),
        "ldd names no libc: {libs:?}"
    );
    for lib in &libs {
        let mut parent = Path::new(lib.trim_start_matches('/')).parent();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            dirs.push(p.display().to_string());
            parent = p.parent();
        }
    }
    dirs.sort();
    dirs.dedup();
    for d in &dirs {
        tar_dir(&mut b, d, 0o755, 0);
    }
    tar_dir(&mut b, "tmp", 0o1777, 0);
    tar_dir(&mut b, "home", 0o755, 0);
    tar_dir(&mut b, "home/nonroot", 0o700, NONROOT);
    for lib in &libs {
        let bytes = std::fs::read(lib).unwrap_or_else(|e| panic!("reading {lib}: {e}"));
        tar_file(&mut b, lib.trim_start_matches('/'), 0o755, &bytes);
    }
    tar_file(
        &mut b,
        "etc/passwd",
        0o644,
        b"root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n",
    );
    tar_file(
        &mut b,
        "etc/group",
        0o644,
        b"root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n",
    );
    if let Ok(certs) = std::fs::read("/etc/ssl/certs/ca-certificates.crt") {
        tar_file(&mut b, "etc/ssl/certs/ca-certificates.crt", 0o644, &certs);
    }
    let path = work.join("runtime-base.tar");
    std::fs::write(&path, b.into_inner().unwrap()).unwrap();
    ok(&mut docker(
        config,
        &["import", &path.display().to_string(), RUNTIME_IMAGE],
    ));
}

/// The image built from the repository's Dockerfile (once per test
/// binary), as docs/operations.md builds it from a host binary.
pub(crate) fn berth_image() -> &'static str {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(|| {
        need("ldd");
        let work = tempfile::tempdir().unwrap();
        let config = work.path().join("config");
        import_runtime_base(&config, work.path());
        // The build context: the Dockerfile, its ignore file and the
        // binary where `cargo build --release` puts it.
        let ctx = work.path().join("ctx");
        std::fs::create_dir_all(ctx.join("target/release")).unwrap();
        std::fs::copy(DOCKERFILE, ctx.join("Dockerfile")).unwrap();
        std::fs::copy(DOCKERIGNORE, ctx.join(".dockerignore")).unwrap();
        let binary = ctx.join("target/release/berth");
        std::fs::copy(berth_bin(), &binary).unwrap();
        // Debug info would be copied into every vfs layer; strip it.
        let _ = Command::new("strip").arg(&binary).status();
        let tag = "berth-test/berth:dockerfile";
        let out = run(buildkit_docker(&config).current_dir(&ctx).args([
            "build",
            "--build-arg",
            "BERTH_FROM=prebuilt",
            "-t",
            tag,
            ".",
        ]));
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "docker build failed: {said}");
        assert!(
            !said.contains("rust:1-bookworm"),
            "the source stage was built: {said}"
        );
        tag.to_owned()
    })
}

/// A running container, removed (with its volume) on drop.
struct Container {
    name: String,
    volume: String,
    config: tempfile::TempDir,
}

impl Drop for Container {
    fn drop(&mut self) {
        let c = self.config.path();
        let _ = run(&mut docker(c, &["rm", "-f", &self.name]));
        let _ = run(&mut docker(c, &["volume", "rm", "-f", &self.volume]));
    }
}

impl Container {
    fn docker(&self, args: &[&str]) -> String {
        text(&mut docker(self.config.path(), args))
    }

    /// The health status Docker reports.
    fn health(&self) -> String {
        self.docker(&[
            "inspect",
            "--format",
            "{{if .State.Health}}{{.State.Health.Status}}{{end}}",
            &self.name,
        ])
    }

    /// Waits until Docker calls the container healthy.
    fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let health = self.health();
            if health == "healthy" {
                return;
            }
            if Instant::now() > deadline {
                let logs = run(&mut docker(self.config.path(), &["logs", &self.name]));
                panic!(
                    "{} is {health:?} after 60s: {}\nlogs: {}{}",
                    self.name,
                    self.docker(&["inspect", "--format", "{{json .State}}", &self.name]),
                    String::from_utf8_lossy(&logs.stdout),
                    String::from_utf8_lossy(&logs.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// A file of the container's file system: (its bytes, its owner).
    fn file(&self, path: &str) -> (Vec<u8>, u64) {
        let archive = ok(&mut docker(
            self.config.path(),
            &["cp", &format!("{}:{path}", self.name), "-"],
        ));
        let mut a = tar::Archive::new(archive.as_slice());
        let mut entry = a.entries().unwrap().next().unwrap().unwrap();
        let owner = entry.header().uid().unwrap();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
        (bytes, owner)
    }

    /// The address berth listens on (its `addr_file`), waiting for it.
    fn addr(&self) -> String {
        self.wait_healthy();
        String::from_utf8(self.file("/data/addr").0).unwrap()
    }
}

#[test]
fn the_dockerfile_builds_offline_and_runs_berth_healthy_non_root_with_data_in_a_volume() {
    let image = berth_image();
    let config = tempfile::tempdir().unwrap();
    let c = config.path();

    // The image as the Dockerfile describes it.
    let cfg: serde_json::Value = serde_json::from_str(&text(&mut docker(
        c,
        &["image", "inspect", "--format", "{{json .Config}}", image],
    )))
    .unwrap();
    assert_eq!(cfg["User"], "65532:65532", "{cfg}");
    assert_eq!(
        cfg["Entrypoint"],
        serde_json::json!(["/usr/local/bin/berth"])
    );
    assert_eq!(cfg["Cmd"], serde_json::json!(["serve"]));
    assert!(cfg["Volumes"]["/data"].is_object(), "{cfg}");
    assert!(cfg["ExposedPorts"]["5000/tcp"].is_object(), "{cfg}");
    assert_eq!(
        cfg["Healthcheck"]["Test"],
        serde_json::json!(["CMD", "/usr/local/bin/berth", "healthcheck"]),
        "{cfg}"
    );
    let env: Vec<&str> = cfg["Env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(env.contains(&"BERTH_LISTEN=0.0.0.0:5000"), "{env:?}");
    assert!(env.contains(&"BERTH_DATA_DIR=/data"), "{env:?}");

    // Run it with a named volume, on a free port of the host's network
    // (the documented run publishes 5000 instead), checked every second.
    let id: String = layout::random_bytes(4)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let container = Container {
        name: format!("berth-image-{id}"),
        volume: format!("berth-data-{id}"),
        config,
    };
    let c = container.config.path();
    ok(&mut docker(c, &["volume", "create", &container.volume]));
    ok(&mut docker(
        c,
        &[
            "run",
            "-d",
            "--name",
            &container.name,
            "--network",
            "host",
            "--health-interval",
            "1s",
            "-v",
            &format!("{}:/data", container.volume),
            "-e",
            &format!("BERTH_ADMIN_PASSWORD={PASSWORD}"),
            "-e",
            "BERTH_LISTEN=127.0.0.1:0",
            "-e",
            "BERTH_ADDR_FILE=/data/addr",
            image,
        ],
    ));
    let addr = container.addr();
    assert_eq!(container.health(), "healthy");

    // berth runs as the image's user and its data is that user's.
    let (_, owner) = container.file("/data/berth.db");
    assert_eq!(owner, NONROOT, "berth.db belongs to uid {owner}");
    assert_eq!(
        container.docker(&["inspect", "--format", "{{.Config.User}}", &container.name]),
        "65532:65532"
    );

    // The Docker daemon pushes to it and pulls from it.
    let local = format!("berth-test/image-{id}:v1");
    let archive = c.join("image.tar");
    let image_id = docker_archive(
        &archive,
        &local,
        &[&layer("file-0", 300_000), &layer("file-1", 4000)],
    );
    ok(&mut docker(
        c,
        &["load", "--input", &archive.display().to_string()],
    ));
    let login = run(&mut docker(
        c,
        &["login", "-u", "admin", "-p", PASSWORD, &addr],
    ));
    assert!(login.status.success(), "{login:?}");
    let remote = format!("{addr}/team/app:v1");
    ok(&mut docker(c, &["tag", &local, &remote]));
    let pushed = text(&mut docker(c, &["push", &remote]));
    assert!(pushed.contains("digest: sha256:"), "{pushed}");
    ok(&mut docker(c, &["rmi", &remote, &local]));
    ok(&mut docker(c, &["pull", &remote]));
    assert_eq!(
        container.docker(&["image", "inspect", "--format", "{{.Id}}", &remote]),
        image_id
    );
    ok(&mut docker(c, &["rmi", &remote]));

    // SIGTERM (`docker stop`) ends berth cleanly, as PID 1, well within
    // Docker's 10 seconds; started again on the same volume, it serves
    // the image it had.
    let stopping = Instant::now();
    ok(&mut docker(c, &["stop", &container.name]));
    let took = stopping.elapsed();
    assert!(took < Duration::from_secs(8), "docker stop took {took:?}");
    assert_eq!(
        container.docker(&[
            "inspect",
            "--format",
            "{{.State.ExitCode}}",
            &container.name
        ]),
        "0"
    );
    ok(&mut docker(c, &["start", &container.name]));
    let addr = container.addr();
    let remote = format!("{addr}/team/app:v1");
    let login = run(&mut docker(
        c,
        &["login", "-u", "admin", "-p", PASSWORD, &addr],
    ));
    assert!(login.status.success(), "{login:?}");
    ok(&mut docker(c, &["pull", &remote]));
    assert_eq!(
        container.docker(&["image", "inspect", "--format", "{{.Id}}", &remote]),
        image_id
    );
    ok(&mut docker(c, &["rmi", &remote]));

    // A backup as docs/operations.md takes one of a running container: the
    // same image sharing its volume, into a host directory its user may
    // write; the backup verifies on the host.
    let backups = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(backups.path(), Some(65532), Some(65532)).unwrap();
    let out = run(&mut docker(
        c,
        &[
            "run",
            "--rm",
            "--volumes-from",
            &container.name,
            "-v",
            &format!("{}:/backups", backups.path().display()),
            image,
            "backup",
            "/backups/berth",
            "--data-dir",
            "/data",
        ],
    ));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "backup in a container: {said}");
    assert!(said.contains("1 tags"), "{said}");
    let verify = run(Command::new(berth_bin())
        .args(["backup", "verify"])
        .arg(backups.path().join("berth")));
    assert!(verify.status.success(), "{verify:?}");
}
