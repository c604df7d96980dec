//! The README's quick start, run as written: its commands are read from
//! `README.md` and run by bash against a real `berth serve` started as the
//! quick start starts it (secure by default, the admin password from its
//! `BERTH_ADMIN_PASSWORD=...`). Only the build is skipped (the binary under
//! test is used) and the port is a free one instead of 5000.
//!
//! What the reader brings is made here: the image `myimage` in Docker and
//! in podman, and its OCI layout in `./my-layout`.

use std::process::Child;
use std::time::Instant;

use super::daemon::{daemon, need};
use super::docker::{docker_archive, layer};
use super::*;

const README: &str = include_str!("../../../../../README.md");

/// The shell blocks of the README's quick start.
fn quick_start_blocks() -> Vec<String> {
    let start = README
        .find("\n## Quick start\n")
        .expect("a Quick start section");
    let section = &README[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    section
        .split("```sh\n")
        .skip(1)
        .map(|b| b[..b.find("\n```").expect("a closed block")].to_owned())
        .collect()
}

/// `berth serve` started in `dir` (data in `./berth-data`), killed on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_readme_quick_start_runs_as_written() {
    for tool in ["bash", "curl", "sha256sum", "skopeo", "podman", "python3"] {
        need(tool);
    }
    let blocks = quick_start_blocks();
    assert_eq!(
        blocks.len(),
        2,
        "the quick start has a server and a client block"
    );

    // The server block: build, then serve with the admin password.
    let serve = blocks[0]
        .lines()
        .find(|l| l.contains("berth serve"))
        .expect("a `berth serve` line");
    let password = serve
        .split_whitespace()
        .find_map(|w| w.strip_prefix("BERTH_ADMIN_PASSWORD="))
        .expect("BERTH_ADMIN_PASSWORD=... on the serve line");
    let c = Clients::new();
    let work = c.dir("quickstart");
    let addr_file = work.join("addr");
    let log = std::fs::File::create(c.tmp.path().join("berth.log")).expect("log");
    let _server = Server(
        Command::new(common::berth_bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--addr-file"])
            .arg(&addr_file)
            .current_dir(&work)
            .env_remove("BERTH_CONFIG")
            .env_remove("BERTH_AUTH")
            .env_remove("BERTH_DATA_DIR")
            .env_remove("BERTH_LISTEN")
            .env("BERTH_ADMIN_PASSWORD", password)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start berth"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let port = loop {
        if let Some(port) = std::fs::read_to_string(&addr_file)
            .ok()
            .and_then(|a| a.rsplit(':').next().map(str::to_owned))
            .filter(|p| !p.is_empty())
        {
            break port;
        }
        assert!(Instant::now() < deadline, "berth did not start");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(work.join("berth-data").is_dir(), "data in ./berth-data");

    // What the reader brings: myimage in docker and podman, ./my-layout.
    let d = daemon();
    let docker_config = c.dir("docker-config");
    let archive = c.tmp.path().join("myimage.tar");
    docker_archive(&archive, "myimage:latest", &[&layer("hello", 3000)]);
    ok(&mut d.docker(
        &docker_config,
        &["load", "--input", &archive.display().to_string()],
    ));
    layout::write_image(
        &work.join("my-layout"),
        "v1",
        &layout::host_platform(),
        &[2000, 500],
    );
    std::fs::write(
        c.tmp.path().join("containers.conf"),
        "[engine]\nevents_logger = \"none\"\ncgroup_manager = \"cgroupfs\"\n",
    )
    .expect("containers.conf");
    let podman = |args: &[&str]| {
        let mut cmd = Command::new("podman");
        c.env(&mut cmd);
        cmd.args(args).current_dir(&work);
        ok(&mut cmd)
    };
    let layout_ref = format!("oci:{}:v1", work.join("my-layout").display());
    let pulled = text(podman(&[
        "pull",
        "--signature-policy",
        &c.policy(),
        &layout_ref,
    ]));
    let id = pulled
        .lines()
        .last()
        .expect("podman pull prints the image id");
    podman(&["tag", id.trim(), "myimage"]);

    // The client block, as written but for the port.
    let script = format!(
        "set -euo pipefail\n{}\n",
        blocks[1].replace("localhost:5000", &format!("localhost:{port}"))
    );
    let mut cmd = Command::new("bash");
    c.env(&mut cmd);
    cmd.args(["-c", &script])
        .current_dir(&work)
        .env("DOCKER_HOST", d.host())
        .env("DOCKER_CONFIG", &docker_config);
    let out = text(ok(&mut cmd));

    // Every push landed, the SBOM is attached to v1, and the referrers
    // API (the script's last command) listed it.
    let base = format!("http://127.0.0.1:{port}");
    let tags = authed_json(&base, "/v2/team/app/tags/list", password);
    for tag in ["v1", "v2", "v3", "sbom"] {
        assert!(
            tags["tags"].as_array().unwrap().iter().any(|t| t == tag),
            "{tags}"
        );
    }
    let listed = out.lines().last().expect("the referrers answer");
    let referrers = parse(listed.as_bytes());
    assert_eq!(referrers["mediaType"], layout::INDEX, "{listed}");
    assert_eq!(
        referrers["manifests"].as_array().unwrap().len(),
        1,
        "{listed}"
    );
}

/// GET `path` as admin, as JSON.
fn authed_json(base: &str, path: &str, password: &str) -> Value {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let r = reqwest::Client::new()
            .get(format!("{base}{path}"))
            .basic_auth("admin", Some(password))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
        r.json().await.unwrap()
    })
}
