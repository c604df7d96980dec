//! `deploy/compose.yml` and `deploy/compose-ha.yml`.
//!
//! Both are validated by Compose itself (`docker-compose config`, Debian's
//! docker-compose 1.29: the Compose file format it checks is the one
//! `docker compose` v2 reads), with what they must hold checked on its
//! resolved output. The one-node file is then run for real on the test's
//! Docker daemon with the image of the repository's Dockerfile
//! ([`super::image`]); an override file puts it on the host's network on a
//! free port (the test daemon has no bridge), as the image test does. The
//! HA file's images (PostgreSQL, SeaweedFS, nginx) cannot be pulled here:
//! its load balancer configuration is run instead by the host's nginx in
//! front of two berth replicas on PostgreSQL and S3 ([`crate::cluster`]),
//! and images pushed through it are read back from each replica.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::image::{berth_image, docker};
use crate::cluster::{push_small, verify_image, Cluster};
use crate::interop::daemon::{daemon, need};
use crate::interop::docker::{docker_archive, layer};
use crate::interop::{ok, run};
use crate::layout;

const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy");
const PASSWORD: &str = "compose-admin-password";

/// `docker-compose` against the test daemon, in project `project`.
fn compose(project: &str, files: &[&Path], env: &[(&str, &str)]) -> Command {
    let mut cmd = compose_offline(project, files, env);
    cmd.env("DOCKER_HOST", daemon().host());
    cmd
}

/// `docker-compose` for what needs no daemon (`config`).
fn compose_offline(project: &str, files: &[&Path], env: &[(&str, &str)]) -> Command {
    need("docker-compose");
    let mut cmd = Command::new("docker-compose");
    cmd.env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .env_remove("DOCKER_CONTEXT")
        .env_remove("BERTH_ADMIN_PASSWORD")
        .arg("--project-name")
        .arg(project);
    for f in files {
        cmd.arg("--file").arg(f);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    // Relative paths (the build context) as from deploy/.
    cmd.arg("--project-directory").arg(DEPLOY);
    cmd
}

#[test]
fn the_compose_files_are_valid_and_say_what_they_need() {
    let one = Path::new(DEPLOY).join("compose.yml");
    let ha = Path::new(DEPLOY).join("compose-ha.yml");

    // Without the admin password, Compose refuses, saying so.
    let out = run(compose_offline("berth-config", &[&one], &[]).arg("config"));
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("set BERTH_ADMIN_PASSWORD"), "{said}");

    let c = yaml_config(&one, &[("BERTH_ADMIN_PASSWORD", "pw")]);
    let berth = &c["services"]["berth"];
    assert_eq!(berth["image"], "berth");
    assert_eq!(berth["environment"]["BERTH_ADMIN_PASSWORD"], "pw");
    assert_eq!(berth["volumes"][0], "berth-data:/data:rw");
    assert_eq!(berth["read_only"], true);
    assert_eq!(berth["ports"][0]["target"], 5000);

    let env = [
        ("BERTH_ADMIN_PASSWORD", "pw"),
        ("POSTGRES_PASSWORD", "db-pw"),
        ("S3_ACCESS_KEY", "ak"),
        ("S3_SECRET_KEY", "sk"),
    ];
    for missing in 0..env.len() {
        let partial: Vec<(&str, &str)> = env
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != missing)
            .map(|(_, kv)| *kv)
            .collect();
        let out = run(compose_offline("berth-config", &[&ha], &partial).arg("config"));
        assert!(!out.status.success(), "{} unset", env[missing].0);
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(said.contains(&format!("set {}", env[missing].0)), "{said}");
    }
    let c = yaml_config(&ha, &env);
    let services = c["services"].as_object().unwrap();
    let replicas: Vec<&String> = services
        .keys()
        .filter(|k| k.starts_with("berth-"))
        .collect();
    assert_eq!(replicas, ["berth-1", "berth-2"]);
    let first = &services["berth-1"]["environment"];
    assert_eq!(
        first["BERTH_DATABASE_URL"],
        "postgres://berth:db-pw@postgres:5432/berth"
    );
    assert_eq!(first["BERTH_STORAGE"], "s3://berth/registry");
    assert_eq!(first["BERTH_S3_ENDPOINT"], "http://s3:8333");
    assert_eq!(first["AWS_SECRET_ACCESS_KEY"], "sk");
    for r in &replicas {
        // The same settings everywhere, a volume of its own.
        assert_eq!(&services[r.as_str()]["environment"], first, "{r}");
        assert_eq!(
            services[r.as_str()]["depends_on"]["postgres"]["condition"],
            "service_healthy"
        );
        assert_eq!(
            services["lb"]["depends_on"][r.as_str()]["condition"],
            "service_healthy"
        );
    }
    assert_eq!(
        services["postgres"]["environment"]["POSTGRES_PASSWORD"],
        "db-pw"
    );
    assert!(services["postgres"]["healthcheck"]["test"].is_array());
    assert!(services["s3"]["healthcheck"]["test"].is_array());
    // The S3 server creates the bucket berth names and the identity it
    // signs as (`$$` is Compose's escaped `$`, which `config` prints
    // escaped again: the shell gets `$S3_ACCESS_KEY`).
    let s3 = services["s3"]["command"][0].as_str().unwrap();
    assert!(s3.contains("-bucket=berth"), "{s3}");
    assert!(
        s3.contains("\"$$S3_ACCESS_KEY\" \"$$S3_SECRET_KEY\""),
        "{s3}"
    );
    // nginx sends to every replica.
    let nginx = std::fs::read_to_string(Path::new(DEPLOY).join("compose-ha/nginx.conf")).unwrap();
    for r in &replicas {
        assert!(nginx.contains(&format!("server {r}:5000")), "{r}");
    }
}

/// `docker-compose config`'s YAML, as JSON.
fn yaml_config(file: &Path, env: &[(&str, &str)]) -> Value {
    let yaml = ok(compose_offline("berth-config", &[file], env).arg("config"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yml");
    std::fs::write(&path, yaml).unwrap();
    let out = ok(Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        ])
        .arg(&path));
    serde_json::from_slice(&out).unwrap()
}

#[test]
fn compose_yml_runs_berth_and_keeps_its_images_across_down_and_up() {
    let image = berth_image();
    let id: String = layout::random_bytes(4)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let project = format!("berth-compose-{id}");
    let work = tempfile::tempdir().unwrap();
    let config_dir = work.path().join("config");
    let override_file = work.path().join("override.yml");
    std::fs::write(
        &override_file,
        "services:\n  berth:\n    network_mode: host\n    environment:\n      \
         BERTH_LISTEN: 127.0.0.1:0\n      BERTH_ADDR_FILE: /data/addr\n",
    )
    .unwrap();
    // compose.yml as written, less its published port: the test daemon has
    // no bridge, so the service runs on the host's network instead.
    let written = std::fs::read_to_string(Path::new(DEPLOY).join("compose.yml")).unwrap();
    let ports = "    ports:\n      - \"${BERTH_PORT:-5000}:5000\"\n";
    assert!(written.contains(ports), "{written}");
    let one = work.path().join("compose.yml");
    std::fs::write(&one, written.replace(ports, "")).unwrap();
    let files = [one.as_path(), override_file.as_path()];
    let env = [("BERTH_IMAGE", image), ("BERTH_ADMIN_PASSWORD", PASSWORD)];
    struct Down<'a>(&'a str, [&'a Path; 2], [(&'a str, &'a str); 2]);
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            let _ = run(compose(self.0, &self.1, &self.2).args(["down", "--volumes"]));
        }
    }
    let _down = Down(&project, files, env);

    let up = || {
        ok(compose(&project, &files, &env).args(["up", "-d", "--no-build"]));
        let container = String::from_utf8(ok(
            compose(&project, &files, &env).args(["ps", "-q", "berth"])
        ))
        .unwrap()
        .trim()
        .to_owned();
        assert!(!container.is_empty(), "no berth container");
        wait_healthy(&config_dir, &container);
        let archive = ok(&mut docker(
            &config_dir,
            &["cp", &format!("{container}:/data/addr"), "-"],
        ));
        let mut a = tar::Archive::new(archive.as_slice());
        let mut entry = a.entries().unwrap().next().unwrap().unwrap();
        let mut addr = String::new();
        std::io::Read::read_to_string(&mut entry, &mut addr).unwrap();
        ok(&mut docker(
            &config_dir,
            &["login", "-u", "admin", "-p", PASSWORD, &addr],
        ));
        addr
    };

    let addr = up();
    let local = format!("berth-test/compose-{id}:v1");
    let archive = work.path().join("image.tar");
    let image_id = docker_archive(&archive, &local, &[&layer("file-0", 50_000)]);
    ok(&mut docker(
        &config_dir,
        &["load", "--input", &archive.display().to_string()],
    ));
    let remote = format!("{addr}/team/compose:v1");
    ok(&mut docker(&config_dir, &["tag", &local, &remote]));
    ok(&mut docker(&config_dir, &["push", &remote]));
    ok(&mut docker(&config_dir, &["rmi", &remote, &local]));

    // `down` removes the container, not the volume: `up` again serves
    // what was pushed.
    ok(compose(&project, &files, &env).arg("down"));
    let addr = up();
    let remote = format!("{addr}/team/compose:v1");
    ok(&mut docker(&config_dir, &["pull", &remote]));
    let pulled = String::from_utf8(ok(&mut docker(
        &config_dir,
        &["image", "inspect", "--format", "{{.Id}}", &remote],
    )))
    .unwrap();
    assert_eq!(pulled.trim(), image_id);
    ok(&mut docker(&config_dir, &["rmi", &remote]));
}

fn wait_healthy(config: &Path, container: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let health = String::from_utf8(ok(&mut docker(
            config,
            &[
                "inspect",
                "--format",
                "{{if .State.Health}}{{.State.Health.Status}}{{end}}",
                container,
            ],
        )))
        .unwrap();
        if health.trim() == "healthy" {
            return;
        }
        if Instant::now() > deadline {
            let logs = run(&mut docker(config, &["logs", container]));
            panic!(
                "{container} is {health:?}: {}{}",
                String::from_utf8_lossy(&logs.stdout),
                String::from_utf8_lossy(&logs.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A free loopback port (nginx cannot listen on port 0; a port taken
/// meanwhile fails nginx's start, which is retried).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn the_ha_load_balancer_config_spreads_pushes_and_pulls_over_the_replicas() {
    if !crate::interop::require("/usr/sbin/nginx", "the_ha_load_balancer_config") {
        return;
    }
    let cluster = Cluster::start(2, None);
    let conf = std::fs::read_to_string(Path::new(DEPLOY).join("compose-ha/nginx.conf")).unwrap();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let mut nginx = None;
    for _attempt in 0..5 {
        let port = free_port();
        let mut c = conf.clone();
        for (i, r) in cluster.replicas.iter().enumerate() {
            c = c.replace(&format!("berth-{}:5000", i + 1), &r.addr);
        }
        // Its own files: the listener on loopback, temporary files and
        // logs under the test's directory.
        c = c
            .replace("listen 5000;", &format!("listen 127.0.0.1:{port};"))
            .replace(
                "http {",
                &format!(
                    "http {{\n    log_format upstream '$upstream_addr $request';\n    \
                     access_log {d}/access.log upstream;\n    client_body_temp_path {d}/body;\n    \
                     proxy_temp_path {d}/proxy;\n    fastcgi_temp_path {d}/fastcgi;\n    \
                     uwsgi_temp_path {d}/uwsgi;\n    scgi_temp_path {d}/scgi;",
                    d = dir.display()
                ),
            );
        assert!(c.contains(&format!("listen 127.0.0.1:{port};")));
        let file = dir.join("nginx.conf");
        std::fs::write(&file, &c).unwrap();
        let out = run(Command::new("/usr/sbin/nginx")
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&file)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-g")
            .arg(format!(
                "pid {}/nginx.pid; daemon on; user root;",
                dir.display()
            )));
        if out.status.success() {
            nginx = Some(port);
            break;
        }
        let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
        assert!(
            log.contains("Address already in use"),
            "nginx: {out:?}\n{log}"
        );
    }
    let port = nginx.expect("nginx started");
    struct Stop(std::path::PathBuf);
    impl Drop for Stop {
        fn drop(&mut self) {
            if let Ok(pid) = std::fs::read_to_string(self.0.join("nginx.pid")) {
                let _ = Command::new("kill").arg(pid.trim()).status();
            }
        }
    }
    let _stop = Stop(dir.to_owned());
    let lb = format!("http://127.0.0.1:{port}");

    // Pushes through the balancer (a layer above nginx's default body
    // limit of 1 MiB), then every image read back from each replica and
    // through the balancer.
    let images = work.path().join("images");
    for i in 0..4 {
        let layout_dir = images.join(format!("img-{i}"));
        push_small(
            &lb,
            "team/ha",
            &layout_dir,
            &format!("v{i}"),
            &[3 * 1024 * 1024 + i, 1000],
        );
    }
    for i in 0..4 {
        for base in [cluster.base(0), cluster.base(1), lb.clone()] {
            verify_image(&base, "team/ha", &format!("v{i}"));
        }
    }
    // Both replicas took requests from the balancer.
    let log = std::fs::read_to_string(dir.join("access.log")).unwrap();
    for r in &cluster.replicas {
        let served = log.lines().filter(|l| l.starts_with(&r.addr)).count();
        assert!(served > 0, "{} served nothing through nginx: {log}", r.addr);
    }
}
