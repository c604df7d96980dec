//! Real clients against `berth serve` over HTTPS, trusting the CA made by
//! `berth tls self-signed` through their own configuration (no "insecure"
//! switch anywhere): skopeo and podman with `--cert-dir`, containerd's
//! `ctr` with `--hosts-dir`, the Docker daemon with `certs.d`. Each logs
//! in through the token flow, pushes and pulls; skopeo also pushes with a
//! client certificate mapped to an account, without a password.
//!
//! The Docker daemon treats every loopback registry as insecure (it then
//! skips verification and never reads certs.d), so it reaches berth by a
//! name that does not resolve, `registry.test:PORT`, through the CONNECT
//! proxy it was started with ([`super::daemon`]), and reads the CA from
//! `/etc/docker/certs.d/registry.test:PORT/ca.crt`, which the test writes
//! for its own random port and removes afterwards.

use std::path::Path;

use super::daemon::{daemon, need};
use super::docker::{docker_archive, layer};
use super::*;
use crate::auth::Fixture;
use crate::tls::{berth_tls, self_signed};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A server with auth over TLS (certificates in the returned directory,
/// for `registry.test` and loopback), `alice` with a password, and extra
/// TOML settings.
fn tls_fixture(rt: &tokio::runtime::Runtime, extra: &str) -> (Fixture, tempfile::TempDir, String) {
    let certs = tempfile::tempdir().expect("tempdir");
    self_signed(certs.path(), "registry.test", 5000);
    let toml = format!(
        "tls_cert = {:?}\ntls_key = {:?}\n{extra}",
        certs.path().join("server.crt"),
        certs.path().join("server.key"),
    );
    let f = rt.block_on(async {
        let mut f = Fixture::start(&toml).await;
        f.c = crate::tls::client(certs.path(), false, None);
        f.user("alice").await;
        f
    });
    let addr = f.berth.addr.clone();
    (f, certs, addr)
}

/// A certs.d directory for the containers tools: `ca.crt`, and a client
/// certificate and key when `client` names a directory of `berth tls
/// client`.
fn cert_dir(certs: &Path, client: Option<&Path>) -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("tempdir");
    std::fs::copy(certs.join("ca.crt"), d.path().join("ca.crt")).expect("ca.crt");
    if let Some(c) = client {
        std::fs::copy(c.join("client.cert"), d.path().join("client.cert")).expect("cert");
        std::fs::copy(c.join("client.key"), d.path().join("client.key")).expect("key");
    }
    d
}

fn fails_with(out: &Output, what: &str) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{what} must fail: {text}");
    text
}

#[test]
fn skopeo_over_tls_with_cert_dir_login_push_and_pull() {
    let test = "interop::tls::skopeo_over_tls_with_cert_dir_login_push_and_pull";
    if !require("skopeo", test) {
        return;
    }
    let rt = runtime();
    let (f, certs, addr) = tls_fixture(&rt, "");
    let cl = Clients::new();
    let dir = cl.dir("layout");
    let digest = layout::write_image(&dir, "v1", "linux/amd64", &[3000, 2000]);
    let trust = cert_dir(certs.path(), None);
    let trust = trust.path().to_str().unwrap();
    let src = format!("oci:{}:v1", dir.display());
    let dest = format!("docker://{addr}/alice/app:v1");

    // Without the CA, verification fails: nothing is insecure here.
    let out = run(&mut cl.skopeo_cmd(&["copy", &src, &dest]));
    let text = fails_with(&out, "a copy without the CA");
    assert!(
        text.contains("certificate") || text.contains("x509"),
        "{text}"
    );
    // Login through the token flow, then push and pull with the CA.
    cl.skopeo(&[
        "login",
        "--cert-dir",
        trust,
        "--username",
        "alice",
        "--password",
        "alice-password",
        &addr,
    ]);
    cl.skopeo(&[
        "copy",
        "--preserve-digests",
        "--dest-cert-dir",
        trust,
        &src,
        &dest,
    ]);
    let inspected = parse(&cl.skopeo(&["inspect", "--raw", "--cert-dir", trust, &dest]));
    assert_eq!(inspected["schemaVersion"], 2, "{inspected}");
    let back = cl.dir("back");
    cl.skopeo(&[
        "copy",
        "--src-cert-dir",
        trust,
        &dest,
        &format!("oci:{}:v1", back.display()),
    ]);
    assert_eq!(
        layout::resolve(&back, "v1").expect("pulled").digest,
        digest,
        "pulled back byte for byte"
    );
    drop(f);
}

#[test]
fn skopeo_pushes_with_a_mapped_client_certificate_and_no_password() {
    let test = "interop::tls::skopeo_pushes_with_a_mapped_client_certificate_and_no_password";
    if !require("skopeo", test) {
        return;
    }
    let rt = runtime();
    let certs = tempfile::tempdir().expect("tempdir");
    self_signed(certs.path(), "registry.test", 5000);
    for name in ["ci-bot", "stranger"] {
        berth_tls(&[
            "client",
            "--ca-dir",
            certs.path().to_str().unwrap(),
            "--name",
            name,
            "--out",
            certs.path().join(name).to_str().unwrap(),
        ]);
    }
    let p = |f: &str| certs.path().join(f);
    let toml = format!(
        "tls_cert = {:?}\ntls_key = {:?}\ntls_client_ca = {:?}\n",
        p("server.crt"),
        p("server.key"),
        p("ca.crt"),
    );
    let f = rt.block_on(async {
        let f = Fixture::start(&toml).await;
        f.user("ci").await;
        assert!(f
            .meta
            .map_certificate("CN=ci-bot", "ci", &berth_meta::audit::Actor::default())
            .await
            .unwrap());
        f
    });
    let addr = f.berth.addr.clone();
    let cl = Clients::new();
    let dir = cl.dir("layout");
    layout::write_image(&dir, "v1", "linux/amd64", &[1000]);
    let src = format!("oci:{}:v1", dir.display());
    let dest = format!("docker://{addr}/ci/app:v1");

    // Without a client certificate: refused in the handshake.
    let only_ca = cert_dir(certs.path(), None);
    let out = run(&mut cl.skopeo_cmd(&[
        "copy",
        "--dest-cert-dir",
        only_ca.path().to_str().unwrap(),
        &src,
        &dest,
    ]));
    fails_with(&out, "a push without a client certificate");
    // An unmapped certificate: the normal challenge, and no credentials.
    let stranger = cert_dir(certs.path(), Some(&p("stranger")));
    let out = run(&mut cl.skopeo_cmd(&[
        "copy",
        "--dest-cert-dir",
        stranger.path().to_str().unwrap(),
        &src,
        &dest,
    ]));
    let text = fails_with(&out, "a push with an unmapped certificate");
    assert!(
        text.contains("401") || text.contains("authentication required"),
        "{text}"
    );
    // The mapped certificate: pushed, no login, no password.
    let bot = cert_dir(certs.path(), Some(&p("ci-bot")));
    let bot = bot.path().to_str().unwrap();
    cl.skopeo(&["copy", "--dest-cert-dir", bot, &src, &dest]);
    let repo = format!("docker://{addr}/ci/app");
    let tags = parse(&cl.skopeo(&["list-tags", "--cert-dir", bot, &repo]));
    assert_eq!(tags["Tags"], serde_json::json!(["v1"]));
    let log = f.berth.log();
    assert!(!log.contains("login refused"), "{log}");
}

#[test]
fn podman_over_tls_with_cert_dir() {
    let test = "interop::tls::podman_over_tls_with_cert_dir";
    if !require("podman", test) || !require("skopeo", test) {
        return;
    }
    let cl = Clients::new();
    if let Err(why) = cl.usable("podman") {
        eprintln!("SKIPPED {test}: {why}");
        return;
    }
    let rt = runtime();
    let (_f, certs, addr) = tls_fixture(&rt, "");
    let trust = cert_dir(certs.path(), None);
    let trust = trust.path().to_str().unwrap();
    let dir = cl.dir("layout");
    layout::write_image(&dir, "v1", &layout::host_platform(), &[2000]);
    let image = format!("{addr}/alice/pod:v1");
    let podman = |store: &str, args: &[&str]| ok(&mut cl.containers_cmd("podman", store, args));
    podman(
        "a",
        &[
            "login",
            "--cert-dir",
            trust,
            "--username",
            "alice",
            "--password",
            "alice-password",
            &addr,
        ],
    );
    podman("a", &["pull", &format!("oci:{}:v1", dir.display())]);
    let loaded = text(podman("a", &["images", "--format", "{{.ID}}"]));
    let id = loaded.lines().next().expect("an image").trim().to_owned();
    podman("a", &["tag", &id, &image]);
    podman("a", &["push", "--cert-dir", trust, &image]);
    // A fresh storage pulls it back with the same login.
    podman("b", &["pull", "--cert-dir", trust, &image]);
    let listed = text(podman(
        "b",
        &["images", "--format", "{{.Repository}}:{{.Tag}}"],
    ));
    assert!(listed.contains(&image), "{listed}");
    // Without the CA, podman refuses the server.
    let out = run(&mut cl.containers_cmd("podman", "c", &["pull", &image]));
    fails_with(&out, "a pull without the CA");
}

#[test]
fn ctr_over_tls_with_hosts_dir() {
    need("ctr");
    let d = daemon();
    let rt = runtime();
    let (f, certs, addr) = tls_fixture(&rt, "");
    // hosts.toml as `berth tls self-signed` prints it, in a private dir.
    let hosts = tempfile::tempdir().expect("tempdir");
    let host_dir = hosts.path().join(&addr);
    std::fs::create_dir_all(&host_dir).expect("mkdir");
    std::fs::copy(certs.path().join("ca.crt"), host_dir.join("ca.crt")).expect("ca");
    std::fs::write(
        host_dir.join("hosts.toml"),
        format!(
            "server = \"https://{addr}\"\n\n[host.\"https://{addr}\"]\n  ca = \"{}\"\n",
            host_dir.join("ca.crt").display()
        ),
    )
    .expect("hosts.toml");
    let hosts_dir = hosts.path().to_str().unwrap().to_owned();
    let ns: String = layout::random_bytes(4)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let ns = format!("berth-tls-{ns}");
    let ctr = |args: &[&str]| run(&mut d.ctr(&ns, args));
    let ok = |args: &[&str]| {
        let out = ctr(args);
        assert!(
            out.status.success(),
            "ctr {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let archive = tmp.path().join("image.tar");
    let image = format!("{addr}/alice/ctr:v1");
    docker_archive(&archive, &image, &[&layer("file-0", 4000)]);
    ok(&["images", "import", &archive.display().to_string()]);
    let user = "alice:alice-password";
    // Without the hosts directory the CA is unknown: refused.
    let out = ctr(&["images", "push", "--user", user, &image]);
    fails_with(&out, "a push without the CA");
    ok(&[
        "images",
        "push",
        "--hosts-dir",
        &hosts_dir,
        "--user",
        user,
        &image,
    ]);
    ok(&["images", "rm", &image]);
    ok(&[
        "images",
        "pull",
        "--hosts-dir",
        &hosts_dir,
        "--user",
        user,
        &image,
    ]);
    ok(&["images", "rm", &image]);
    let r = rt.block_on(async {
        f.c.get(format!("{}/v2/alice/ctr/tags/list", f.url()))
            .basic_auth("alice", Some("alice-password"))
            .send()
            .await
            .unwrap()
    });
    assert_eq!(r.status().as_u16(), 200);
}

/// `/etc/docker/certs.d/HOST/ca.crt` for one test, removed when dropped.
struct CertsD(PathBuf);

impl CertsD {
    fn install(host: &str, ca: &Path) -> CertsD {
        let dir = PathBuf::from("/etc/docker/certs.d").join(host);
        std::fs::create_dir_all(&dir).expect("create /etc/docker/certs.d/HOST (run as root)");
        std::fs::copy(ca, dir.join("ca.crt")).expect("ca.crt");
        CertsD(dir)
    }
}

impl Drop for CertsD {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn docker_daemon_over_tls_with_certs_d() {
    let rt = runtime();
    let (f, certs, addr) = tls_fixture(&rt, "");
    let port = addr.rsplit(':').next().unwrap();
    let host = format!("registry.test:{port}");
    let docker = super::docker::Docker::new();
    let image = format!("{host}/alice/app:v1");
    let local = format!("berth-tls-local-{port}:v1");
    docker.load(&local, &[&layer("file-0", 5000)]);
    docker.ok(&["tag", &local, &image]);
    // No CA in certs.d yet: the daemon refuses the server's certificate.
    let (text, _) = docker.fails(&["login", "-u", "alice", "-p", "alice-password", &host]);
    assert!(
        text.contains("certificate") || text.contains("x509"),
        "{text}"
    );
    let _trust = CertsD::install(&host, &certs.path().join("ca.crt"));
    docker.login(&host, "alice", "alice-password");
    let out = docker.ok(&["push", &image]);
    assert!(out.contains("digest: sha256:"), "{out}");
    docker.ok(&["rmi", &image]);
    let out = docker.ok(&["pull", &image]);
    assert!(
        out.contains("Downloaded newer image") || out.contains("Status"),
        "{out}"
    );
    docker.ok(&["rmi", &image, &local]);
    // The pushes went through the token flow: a login event for alice.
    assert!(f.berth.log().contains("scheme=\"https\""));
}
