//! The Docker daemon against `berth serve --auth token`: `docker login`
//! with a password, a personal access token and a robot token; pushes of
//! two tags and of an image sharing a layer with another repository (which
//! the daemon mounts); pulls by tag and by digest into an empty daemon; and
//! refusals that stop at once, with the daemon's own words for them.
//!
//! Images are made here, offline: a `docker save`-format archive of random
//! layers, `docker load`ed into the test's daemon ([`super::daemon`]).

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_meta::accounts::{Role, Visibility};
use berth_registry::Caller;

use super::daemon::{daemon, Daemon};
use super::*;
use crate::auth::Fixture;

/// An uncompressed layer: one file of `size` random bytes.
pub(crate) fn layer(name: &str, size: usize) -> Vec<u8> {
    layout::tar_one_file(name, &layout::random_bytes(size))
}

/// Writes a `docker save` archive of an image made of `layers` (bottom
/// first), tagged `repo_tag`, to `path`; returns the image id (the config
/// digest).
pub(crate) fn docker_archive(path: &Path, repo_tag: &str, layers: &[&[u8]]) -> String {
    let diff_ids: Vec<String> = layers.iter().map(|l| sha256(l)).collect();
    let host = layout::host_platform();
    let arch = host.trim_start_matches("linux/");
    let config = serde_json::json!({
        "architecture": arch,
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": { "Cmd": ["/file-0"] },
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
        "history": diff_ids.iter().map(|_| serde_json::json!({
            "created": "2024-01-01T00:00:00Z",
            "created_by": "berth interop test"
        })).collect::<Vec<_>>(),
    })
    .to_string()
    .into_bytes();
    let id = sha256(&config);
    let hex = |d: &str| d.trim_start_matches("sha256:").to_owned();
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_704_067_200);
        h.set_cksum();
        b.append_data(&mut h, name, data).expect("tar entry");
    };
    let mut names = Vec::new();
    for (l, d) in layers.iter().zip(&diff_ids) {
        let name = format!("{}/layer.tar", hex(d));
        add(&name, l);
        names.push(name);
    }
    let config_name = format!("{}.json", hex(&id));
    add(&config_name, &config);
    let manifest = serde_json::json!([{
        "Config": config_name,
        "RepoTags": [repo_tag],
        "Layers": names,
    }])
    .to_string();
    add("manifest.json", manifest.as_bytes());
    std::fs::write(path, b.into_inner().expect("tar")).expect("write archive");
    id
}

/// One test's view of the daemon: its own client configuration (logins)
/// and scratch directory.
pub(super) struct Docker {
    d: &'static Daemon,
    tmp: tempfile::TempDir,
}

impl Docker {
    pub(super) fn new() -> Docker {
        Docker {
            d: daemon(),
            tmp: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// `program` (a shell running docker, say) with this daemon's
    /// `DOCKER_HOST` and the client configuration `config`.
    pub(super) fn daemon_command(&self, program: &str, config: &Path) -> Command {
        let docker = self.d.docker(config, &[]);
        let mut other = Command::new(program);
        for (k, v) in docker.get_envs() {
            match v {
                Some(v) => other.env(k, v),
                None => other.env_remove(k),
            };
        }
        other
    }

    fn cmd(&self, args: &[&str]) -> Command {
        self.d.docker(&self.tmp.path().join("config"), args)
    }

    /// Runs docker, asserting success; returns stdout and stderr together.
    pub(super) fn ok(&self, args: &[&str]) -> String {
        let out = run(&mut self.cmd(args));
        let text = output_text(&out);
        assert!(
            out.status.success(),
            "docker {} failed ({}): {text}",
            args.join(" "),
            out.status
        );
        text
    }

    /// Runs docker, asserting failure; returns its output and how long it
    /// took.
    pub(super) fn fails(&self, args: &[&str]) -> (String, Duration) {
        let started = Instant::now();
        let out = run(&mut self.cmd(args));
        let took = started.elapsed();
        let text = output_text(&out);
        assert!(
            !out.status.success(),
            "docker {} must fail: {text}",
            args.join(" ")
        );
        (text, took)
    }

    /// Loads an image of `layers` as `name`; returns its id.
    pub(super) fn load(&self, name: &str, layers: &[&[u8]]) -> String {
        let path = self
            .tmp
            .path()
            .join(format!("{}.tar", name.replace(['/', ':'], "-")));
        let id = docker_archive(&path, name, layers);
        let out = self.ok(&["load", "--input", &path.display().to_string()]);
        assert!(out.contains(&format!("Loaded image: {name}")), "{out}");
        id
    }

    pub(super) fn login(&self, addr: &str, user: &str, secret: &str) {
        let out = self.ok(&["login", "--username", user, "--password", secret, addr]);
        assert!(out.contains("Login Succeeded"), "{out}");
    }

    /// The image id of a local image.
    fn image_id(&self, image: &str) -> String {
        self.ok(&["image", "inspect", "--format", "{{.Id}}", image])
            .trim()
            .to_owned()
    }
}

/// A TCP proxy in front of a server that records the request lines
/// (`POST /v2/... HTTP/1.1`) passing through it. Its threads end with the
/// test process.
struct Recorder {
    addr: String,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    fn start(upstream: &str) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (seen, upstream) = (requests.clone(), upstream.to_owned());
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let (Ok(mut to_client), Ok(mut from_server)) =
                    (client.try_clone(), server.try_clone())
                else {
                    continue;
                };
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from_server, &mut to_client);
                    let _ = to_client.shutdown(std::net::Shutdown::Both);
                });
                let seen = seen.clone();
                std::thread::spawn(move || forward(client, server, &seen));
            }
        });
        Recorder { addr, requests }
    }

    /// The request lines seen so far.
    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// Copies the client's bytes to the server, noting every request line.
fn forward(mut client: TcpStream, mut server: TcpStream, seen: &Mutex<Vec<String>>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = String::from_utf8_lossy(&buf[..n]);
        for method in ["GET ", "HEAD ", "POST ", "PUT ", "PATCH ", "DELETE "] {
            for (at, _) in chunk.match_indices(&format!("{method}/")) {
                if let Some(line) = chunk[at..].split("\r\n").next() {
                    if line.ends_with(" HTTP/1.1") {
                        seen.lock().unwrap().push(line.to_owned());
                    }
                }
            }
        }
        if server.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = server.shutdown(std::net::Shutdown::Write);
}

fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The digest `docker push` reports (`v1: digest: sha256:... size: N`).
pub(super) fn pushed_digest(output: &str) -> String {
    let at = output
        .find("digest: sha256:")
        .expect("push reports a digest")
        + "digest: ".len();
    output[at..at + 71].to_owned()
}

/// A unique local image name (the daemon is shared by parallel tests).
pub(super) fn local_name(what: &str) -> String {
    let id: String = layout::random_bytes(4)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("berth-test/{what}-{id}:v1")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

/// The digest `tag` of `repo` resolves to, read as `user:password`.
fn manifest_digest(f: &Fixture, repo: &str, tag: &str, user: &str, password: &str) -> String {
    let rt = runtime();
    rt.block_on(async {
        let r =
            f.c.head(format!("{}/v2/{repo}/manifests/{tag}", f.url()))
                .basic_auth(user, Some(password))
                .header(
                    "accept",
                    "application/vnd.docker.distribution.manifest.v2+json",
                )
                .send()
                .await
                .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{repo}:{tag}");
        r.headers()["docker-content-digest"]
            .to_str()
            .unwrap()
            .to_owned()
    })
}

#[test]
fn docker_login_with_a_password_a_personal_token_and_a_robot_token() {
    let docker = Docker::new();
    let rt = runtime();
    let (f, pat, robot) = rt.block_on(async {
        let f = Fixture::start("").await;
        f.user("alice").await;
        let (_, pat) = f.token("alice", &["pull", "push"], &["alice"]).await;
        f.org("acme", Visibility::Private).await;
        let created = f
            .auth
            .create_robot("acme", "ci", Role::Write, &Caller::system("test"))
            .await
            .unwrap();
        assert_eq!(created.as_deref(), Some("acme+ci"));
        let (_, robot) = f.token("acme+ci", &["pull", "push"], &["acme"]).await;
        (f, pat, robot)
    });
    let addr = f.berth.addr.clone();
    let local = local_name("login");
    docker.load(&local, &[&layer("file-0", 3000)]);

    // A wrong password is refused by the token endpoint.
    let (out, _) = docker.fails(&["login", "-u", "alice", "-p", "wrong-password", &addr]);
    assert!(out.contains("unauthorized"), "{out}");

    let logins = [
        ("alice", "alice-password", "alice/with-password"),
        ("alice", pat.as_str(), "alice/with-token"),
        ("acme+ci", robot.as_str(), "acme/with-robot"),
    ];
    for (user, secret, repo) in logins {
        docker.login(&addr, user, secret);
        let remote = format!("{addr}/{repo}:v1");
        docker.ok(&["tag", &local, &remote]);
        let out = docker.ok(&["push", &remote]);
        let digest = pushed_digest(&out);
        assert_eq!(
            manifest_digest(&f, repo, "v1", "admin", crate::common::ADMIN_PASSWORD),
            digest,
            "{repo}"
        );
        docker.ok(&["logout", &addr]);
        docker.ok(&["rmi", &remote]);
    }
    docker.ok(&["rmi", &local]);
}

#[test]
fn docker_pushes_tags_mounts_shared_layers_and_pulls_by_tag_and_digest() {
    let docker = Docker::new();
    let rt = runtime();
    let f = rt.block_on(async {
        let f = Fixture::start("").await;
        f.user("alice").await;
        f
    });
    // Docker talks to berth through a proxy that records the requests, so
    // that the test sees what the server was asked.
    let proxy = Recorder::start(&f.berth.addr);
    let addr = proxy.addr.clone();
    let base = layer("file-0", 200_000);
    let (a, b) = (local_name("a"), local_name("b"));
    let a_id = docker.load(&a, &[&base, &layer("file-1", 5000)]);
    docker.load(&b, &[&base, &layer("file-2", 7000)]);
    docker.login(&addr, "alice", "alice-password");

    // Two tags of one image.
    let (v1, v2) = (
        format!("{addr}/alice/app:v1"),
        format!("{addr}/alice/app:v2"),
    );
    docker.ok(&["tag", &a, &v1]);
    docker.ok(&["tag", &a, &v2]);
    let digest = pushed_digest(&docker.ok(&["push", &v1]));
    let out = docker.ok(&["push", &v2]);
    assert_eq!(pushed_digest(&out), digest);
    for tag in ["v1", "v2"] {
        assert_eq!(
            manifest_digest(&f, "alice/app", tag, "alice", "alice-password"),
            digest
        );
    }

    // An image sharing the base layer, pushed to another repository: the
    // daemon asks berth to mount the layer from alice/app, and berth does
    // (the daemon reports "Mounted from" only on a 201) instead of the
    // layer being uploaded again.
    let other = format!("{addr}/alice/other:v1");
    docker.ok(&["tag", &b, &other]);
    let out = docker.ok(&["push", &other]);
    assert!(out.contains("Mounted from alice/app"), "{out}");
    let mounts: Vec<String> = proxy
        .requests()
        .into_iter()
        .filter(|r| {
            r.starts_with("POST /v2/alice/other/blobs/uploads/?") && r.contains("mount=sha256")
        })
        .collect();
    assert_eq!(mounts.len(), 1, "{mounts:?}");
    assert!(
        mounts[0].contains("from=alice%2Fapp") || mounts[0].contains("from=alice/app"),
        "{mounts:?}"
    );
    let mounted = mounts[0]
        .split("mount=")
        .nth(1)
        .and_then(|m| m.split([' ', '&']).next())
        .expect("mounted digest")
        .to_owned();
    assert!(
        !proxy
            .requests()
            .iter()
            .any(|r| r.starts_with("PUT /v2/alice/other/blobs/uploads/") && r.contains(&mounted)),
        "the mounted layer {mounted} was uploaded again"
    );

    // Pull into a daemon without those images: by tag, then by digest.
    docker.ok(&["rmi", &v1, &v2, &other, &a, &b]);
    let out = docker.ok(&["pull", &v1]);
    assert!(out.contains(&digest), "{out}");
    assert_eq!(docker.image_id(&v1), a_id);
    docker.ok(&["rmi", &v1]);
    let by_digest = format!("{addr}/alice/app@{digest}");
    docker.ok(&["pull", &by_digest]);
    assert_eq!(docker.image_id(&by_digest), a_id);
    docker.ok(&["rmi", &by_digest]);
}

#[test]
fn docker_refusals_stop_at_once() {
    let docker = Docker::new();
    let rt = runtime();
    let (f, pull_only) = rt.block_on(async {
        let f = Fixture::start("").await;
        let alice = f.user("alice").await;
        let (status, _) = f.push(&alice, "alice/app", "v1", "refusals").await;
        assert_eq!(status.as_u16(), 201);
        let (_, pull_only) = f.token("alice", &["pull"], &[]).await;
        (f, pull_only)
    });
    let addr = f.berth.addr.clone();
    let local = local_name("refused");
    docker.load(&local, &[&layer("file-0", 2000)]);
    let remote = format!("{addr}/alice/app:new");
    docker.ok(&["tag", &local, &remote]);

    // Not logged in: the push is denied at once (the daemon retries for
    // about 50 seconds what it takes for a transient error).
    let (out, took) = docker.fails(&["push", &remote]);
    assert!(out.contains("denied"), "{out}");
    eprintln!("refused in {took:?}");
    assert!(took < Duration::from_secs(2), "took {took:?}: {out}");

    // Logged in with a pull-only token: the same.
    docker.login(&addr, "alice", &pull_only);
    let (out, took) = docker.fails(&["push", &remote]);
    assert!(out.contains("denied"), "{out}");
    eprintln!("refused in {took:?}");
    assert!(took < Duration::from_secs(2), "took {took:?}: {out}");

    // After logging out, a pull of the private repository says why.
    docker.ok(&["logout", &addr]);
    let (out, took) = docker.fails(&["pull", &format!("{addr}/alice/app:v1")]);
    assert!(
        out.contains(&format!("pull access denied for {addr}/alice/app")),
        "{out}"
    );
    eprintln!("refused in {took:?}");
    assert!(took < Duration::from_secs(2), "took {took:?}: {out}");
    docker.ok(&["rmi", &remote, &local]);
}
