//! The client configurations of docs/mirror.md, as written there (only the
//! host names changed: `docker.io` becomes `upstream.test`, a name that
//! does not resolve, so only the mirror can answer; `berth.example:5000`
//! becomes the test's berth): containerd's `hosts.toml` through `ctr
//! --hosts-dir` (the `?ns=` way), and `registries.conf` through skopeo and
//! podman (the namespace way).

use super::*;
use crate::interop::daemon::{daemon, need};
use crate::interop::{ok, run};

/// The fenced block after `<!-- test: NAME -->` in docs/mirror.md, with
/// the test's host names.
fn documented(name: &str, berth: &str) -> String {
    let doc = include_str!("../../../../../docs/mirror.md");
    let marker = format!("<!-- test: {name} -->");
    let after = doc
        .split(&marker)
        .nth(1)
        .unwrap_or_else(|| panic!("docs/mirror.md has no {marker}"));
    let block = after
        .split("```")
        .nth(1)
        .expect("a fenced block after the marker");
    let body = block.split_once('\n').map_or(block, |(_, b)| b);
    body.replace("docker.io", "upstream.test")
        .replace("berth.example:5000", berth)
}

/// An upstream (the reference registry) with a multi-arch image, and a
/// berth mirroring it as `hub` for the host `upstream.test`.
fn setup(c: &Clients) -> (Distribution, Berth, String, Vec<String>) {
    let dist = Distribution::start();
    let (index, children) = push_multiarch(c, &format!("docker://{}/team/app:v1", dist.addr), &[]);
    let berth = Berth::start_with(
        &[],
        Some(&config("hub", &dist.url(), &["upstream.test"], "")),
    );
    (dist, berth, index, children)
}

#[test]
fn containerd_hosts_toml_as_documented() {
    need("ctr");
    if !skopeo_ready("mirror::clients::containerd_hosts_toml_as_documented") {
        return;
    }
    let c = Clients::new();
    let (_dist, berth, index, _) = setup(&c);
    let hosts = c.dir("certs.d/upstream.test");
    std::fs::write(
        hosts.join("hosts.toml"),
        documented("containerd", &berth.addr),
    )
    .unwrap();
    let d = daemon();
    let ns = format!(
        "berth-mirror-{}",
        sha256(berth.addr.as_bytes())[7..17].to_owned()
    );
    let image = "upstream.test/team/app:v1";
    let hosts_dir = c.dir("certs.d").display().to_string();
    let out = run(&mut d.ctr(&ns, &["images", "pull", "--hosts-dir", &hosts_dir, image]));
    assert!(
        out.status.success(),
        "ctr pull through the mirror failed: {}{}\nberth log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        berth.log()
    );
    let listed = String::from_utf8_lossy(&ok(&mut d.ctr(&ns, &["images", "ls"]))).to_string();
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(image) && l.contains(&index)),
        "{listed}"
    );
    // It came through ?ns= and is cached under the upstream's namespace.
    let r = http(
        "GET",
        &format!("{}/v2/hub/team/app/manifests/{index}", berth.url()),
        accept_all(),
    );
    assert_eq!(r.status, 200);
    let _ = run(&mut d.ctr(&ns, &["images", "rm", image]));
}

#[test]
fn registries_conf_mirror_as_documented() {
    let test = "mirror::clients::registries_conf_mirror_as_documented";
    if !skopeo_ready(test) {
        return;
    }
    let c = Clients::new();
    let (_dist, berth, index, children) = setup(&c);
    // The clients' registries.conf (podman reads it through
    // CONTAINERS_REGISTRIES_CONF; skopeo is given it by flag).
    let conf = c.dir("").join("registries.conf");
    std::fs::write(&conf, documented("registries.conf", &berth.addr)).unwrap();
    let conf = conf.display().to_string();
    // skopeo: upstream.test does not resolve; the mirror answers.
    let image = "docker://upstream.test/team/app:v1";
    let raw = c.skopeo(&["--registries-conf", &conf, "inspect", "--raw", image]);
    assert_eq!(sha256(&raw), index);
    let dir = c.dir("sk");
    c.skopeo(&[
        "--registries-conf",
        &conf,
        "copy",
        "--all",
        "--preserve-digests",
        image,
        &format!("oci:{}:pulled", dir.display()),
    ]);
    assert_eq!(layout::resolve(&dir, "pulled").unwrap().digest, index);

    if !require("podman", test) {
        return;
    }
    if let Err(why) = c.usable("podman") {
        eprintln!("SKIPPED the podman part of {test}: podman cannot run here: {why}");
        return;
    }
    let policy = c.policy();
    let platform = layout::host_platform();
    ok(&mut c.containers_cmd(
        "podman",
        "m",
        &[
            "pull",
            "--signature-policy",
            &policy,
            "--platform",
            &platform,
            "upstream.test/team/app:v1",
        ],
    ));
    let v = parse(&ok(&mut c.containers_cmd(
        "podman",
        "m",
        &["image", "inspect", "upstream.test/team/app:v1"],
    )));
    let digest = v[0]["Digest"].as_str().unwrap_or("").to_owned();
    assert!(
        digest == index || children.contains(&digest),
        "{digest} is neither {index} nor one of {children:?}"
    );
}

/// A Docker daemon of its own whose `daemon.json` has the documented
/// `registry-mirrors`: `docker pull app:v1` (Docker Hub, hostless at the
/// mirror) is answered by the upstream marked as the Docker Hub default;
/// Docker Hub itself is unreachable here, so only the mirror can answer.
#[test]
fn docker_daemon_registry_mirrors_as_documented() {
    need("docker");
    if !skopeo_ready("mirror::clients::docker_daemon_registry_mirrors_as_documented") {
        return;
    }
    let c = Clients::new();
    let dist = Distribution::start();
    let (index, _) = push_multiarch(&c, &format!("docker://{}/library/app:v1", dist.addr), &[]);
    let berth = Berth::start_with(
        &[],
        Some(&format!(
            "mirror_docker_hub_default = \"hub\"\n{}",
            config("hub", &dist.url(), &["docker.io"], "")
        )),
    );
    let doc = include_str!("../../../../../docs/mirror.md");
    let block = doc
        .split("<!-- test: docker -->")
        .nth(1)
        .and_then(|a| a.split("```").nth(1))
        .expect("docs/mirror.md has the daemon.json block");
    let json = block.split_once('\n').map_or(block, |(_, b)| b);
    let json: Value =
        serde_json::from_str(&json.replace("berth.example:5000", &berth.addr)).expect("JSON");
    let d = crate::interop::daemon::Daemon::start_with(json);
    let cfg = c.dir("docker-config");
    let out = run(&mut d.docker(&cfg, &["pull", "app:v1"]));
    assert!(
        out.status.success(),
        "docker pull through the mirror failed: {}{}\nberth log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        berth.log()
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains(&index), "{text}");
    // Cached under the upstream's namespace; a local repository of the
    // same hostless name would still be answered locally.
    let r = http(
        "GET",
        &format!("{}/v2/hub/library/app/manifests/v1", berth.url()),
        accept_all(),
    );
    assert_eq!(r.header("docker-content-digest"), Some(index));
}
