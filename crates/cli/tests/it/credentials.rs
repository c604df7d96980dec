//! Where management commands and the tools find credentials, and what they
//! say when they find none: `docker login localhost:PORT` serves
//! `127.0.0.1:PORT`; what `skopeo login` and `podman login` write is read
//! in the containers tools' order; `--authfile` picks one file; a missing,
//! refused or plain-HTTP answer is told apart.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine as _;

use crate::common::{berth_bin, have, Berth, ADMIN_PASSWORD};

/// A home directory with nothing in it, and the environment pointing there.
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Home {
        Home {
            dir: tempfile::Builder::new()
                .prefix("bc")
                .tempdir_in("/tmp")
                .unwrap(),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn env(&self, cmd: &mut Command) {
        let p = self.dir.path();
        for d in ["run", "tmp", "home"] {
            std::fs::create_dir_all(p.join(d)).unwrap();
        }
        std::fs::write(p.join("containers.conf"), "").unwrap();
        std::fs::write(
            p.join("registries.conf"),
            "unqualified-search-registries = []\n",
        )
        .unwrap();
        std::fs::write(
            p.join("storage.conf"),
            format!(
                "[storage]\ndriver = \"vfs\"\nrunroot = \"{}\"\ngraphroot = \"{}\"\n",
                p.join("s-run").display(),
                p.join("s-root").display()
            ),
        )
        .unwrap();
        cmd.env("HOME", p.join("home"))
            .env("XDG_RUNTIME_DIR", p.join("run"))
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("DOCKER_CONFIG")
            .env_remove("REGISTRY_AUTH_FILE")
            .env_remove("BERTH_AUTHFILE")
            .env_remove("BERTH_TOKEN")
            .env_remove("BERTH_USER")
            .env_remove("BERTH_PASSWORD")
            .env_remove("BERTH_REGISTRY")
            .env("CONTAINERS_CONF", p.join("containers.conf"))
            .env("CONTAINERS_REGISTRIES_CONF", p.join("registries.conf"))
            .env("CONTAINERS_STORAGE_CONF", p.join("storage.conf"))
            .env("TMPDIR", p.join("tmp"));
    }

    fn berth(&self, args: &[&str], extra_env: &[(&str, &Path)]) -> Output {
        let mut cmd = Command::new(berth_bin());
        self.env(&mut cmd);
        cmd.args(args);
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }

    fn tool(&self, tool: &str, args: &[&str], extra_env: &[(&str, &Path)]) {
        let mut cmd = Command::new(tool);
        self.env(&mut cmd);
        if tool == "podman" {
            let p = self.dir.path();
            cmd.arg("--root")
                .arg(p.join("p-root"))
                .arg("--runroot")
                .arg(p.join("p-run"))
                .args(["--storage-driver", "vfs", "--events-backend", "none"])
                .args(["--cgroup-manager", "cgroupfs", "--tmpdir"])
                .arg(p.join("tmp"));
        }
        cmd.args(args);
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn docker_config(path: &Path, key: &str, user: &str, password: &str) {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(
        path,
        format!(r#"{{"auths": {{"{key}": {{"auth": "{auth}"}}}}}}"#),
    )
    .unwrap();
}

fn succeeded(out: &Output) -> String {
    assert!(
        out.status.success(),
        "berth failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn failed(out: &Output) -> String {
    assert!(!out.status.success(), "expected a failure");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn docker_login_localhost_serves_127_0_0_1_and_missing_credentials_say_how() {
    let b = Berth::start_auth(&[], None);
    let port = b.addr.rsplit(':').next().unwrap().to_owned();
    let home = Home::new();
    let reg = format!("127.0.0.1:{port}");
    let list = ["user", "list", "--registry", reg.as_str()];

    // Nothing anywhere: the refusal says nothing was sent and how to send.
    let err = failed(&home.berth(&list, &[]));
    assert!(err.contains("(401)"), "{err}");
    assert!(err.contains("no credentials were sent"), "{err}");
    for hint in ["--user", "BERTH_TOKEN", &format!("docker login {reg}")] {
        assert!(err.contains(hint), "{hint} missing: {err}");
    }
    assert!(
        err.contains("containers/auth.json"),
        "searched files named: {err}"
    );

    // `docker login localhost:PORT`, as the README shows, serves the
    // default 127.0.0.1 (and [::1]) address.
    docker_config(
        &home.path("home/.docker/config.json"),
        &format!("localhost:{port}"),
        "admin",
        ADMIN_PASSWORD,
    );
    assert!(succeeded(&home.berth(&list, &[])).contains("admin"));
    // Wrong credentials: refused, naming where they came from.
    docker_config(
        &home.path("home/.docker/config.json"),
        &format!("localhost:{port}"),
        "admin",
        "wrong-password",
    );
    let err = failed(&home.berth(&list, &[]));
    assert!(err.contains("were refused"), "{err}");
    assert!(err.contains(".docker/config.json"), "{err}");
    assert!(!err.contains("no credentials were sent"), "{err}");

    // An https:// URL against the plain-HTTP server says so.
    let https = format!("https://{reg}");
    let err = failed(&home.berth(&["user", "list", "--registry", &https], &[]));
    assert!(err.contains("plain HTTP"), "{err}");
}

#[test]
fn skopeo_and_podman_logins_are_read_in_the_containers_order() {
    assert!(
        have("skopeo") && have("podman"),
        "skopeo and podman are needed (scripts/install-test-deps.sh)"
    );
    let b = Berth::start_auth(&[], None);
    let port = b.addr.rsplit(':').next().unwrap().to_owned();
    let home = Home::new();
    let host = format!("localhost:{port}");
    let reg = format!("127.0.0.1:{port}");
    let list = ["user", "list", "--registry", reg.as_str()];
    // A wrong Docker login that must lose against the containers file.
    docker_config(
        &home.path("home/.docker/config.json"),
        &host,
        "admin",
        "wrong-password",
    );

    // skopeo login writes $XDG_RUNTIME_DIR/containers/auth.json, which is
    // read before the Docker config.
    home.tool(
        "skopeo",
        &[
            "login",
            "--tls-verify=false",
            "-u",
            "admin",
            "-p",
            ADMIN_PASSWORD,
            &host,
        ],
        &[],
    );
    assert!(home.path("run/containers/auth.json").exists());
    assert!(succeeded(&home.berth(&list, &[])).contains("admin"));
    // The tools read it too.
    let out = home.berth(&["inspect", &format!("{reg}/admin/none:v1")], &[]);
    let err = failed(&out);
    assert!(
        err.contains("404") || err.contains("MANIFEST_UNKNOWN") || err.contains("NAME_UNKNOWN"),
        "logged in, then not found: {err}"
    );
    std::fs::remove_file(home.path("run/containers/auth.json")).unwrap();
    assert!(failed(&home.berth(&list, &[])).contains("were refused"));

    // podman login with REGISTRY_AUTH_FILE: that file alone is read, by
    // both podman's variable and berth's --authfile.
    let file = home.path("podman-auth.json");
    home.tool(
        "podman",
        &[
            "login",
            "--tls-verify=false",
            "-u",
            "admin",
            "-p",
            ADMIN_PASSWORD,
            &host,
        ],
        &[("REGISTRY_AUTH_FILE", &file)],
    );
    assert!(file.exists());
    assert!(succeeded(&home.berth(&list, &[("REGISTRY_AUTH_FILE", &file)])).contains("admin"));
    let with_flag = [&list[..], &["--authfile", file.to_str().unwrap()]].concat();
    assert!(succeeded(&home.berth(&with_flag, &[])).contains("admin"));
    // --authfile alone: the Docker config's wrong login is not consulted.
    let empty = home.path("empty.json");
    std::fs::write(&empty, "{}").unwrap();
    let only_empty = [&list[..], &["--authfile", empty.to_str().unwrap()]].concat();
    assert!(failed(&home.berth(&only_empty, &[])).contains("no credentials were sent"));
}

#[tokio::test]
async fn a_copy_with_a_pull_only_token_names_the_missing_push_and_the_token_scope() {
    let f = crate::auth::Fixture::start("").await;
    let (_, token) = f.token("admin", &["pull"], &[]).await;
    let home = Home::new();
    let layout = home.path("layout");
    berth_tools::sample::write(&layout, "v1", &["linux/amd64"], "pull-only").unwrap();
    let host = f.berth.addr.clone();
    let out = home.berth(
        &[
            "copy",
            "-q",
            "--creds",
            &format!("{host}=admin:{token}"),
            &format!("oci:{}:v1", layout.display()),
            &format!("{host}/admin/app:v1"),
        ],
        &[],
    );
    let err = failed(&out);
    assert!(err.contains("it needs pull,push on admin/app"), "{err}");
    assert!(
        err.contains(r#"the registry token of "admin" grants only pull on admin/app"#),
        "{err}"
    );
    assert!(!err.contains("refused the credentials"), "{err}");
}
