//! Keyless push with the Docker daemon: `docker login -u oidc` with an ID
//! token from the loopback issuer of [`crate::oidc`], then `docker push`
//! to the repository the trust policy grants, refused elsewhere. The
//! daemon keeps the session token berth returns as its identity token and
//! refreshes with it: the ID token itself is spent by the login.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use super::docker::{layer, Docker};
use crate::auth::{admin, Fixture};
use crate::oidc::{add_policy, policy, Issuer, Key};

fn local_name(what: &str) -> String {
    let id: String = crate::layout::random_bytes(4)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("berth-test/oidc-{what}-{id}:v1")
}

#[test]
fn oidc_docker_login_pushes_the_allowed_repository_only() {
    let docker = Docker::new();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let issuer = Issuer::start(vec![("k1", Key::es256())]);
    let f = rt.block_on(async {
        let f = Fixture::start("").await;
        let r = add_policy(&f, policy("acme-app", &issuer.url, "acme/app", "acme/app")).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        f
    });
    let addr = f.berth.addr.clone();
    let local = local_name("push");
    docker.load(&local, &[&layer("file-0", 4000)]);

    let id_token = issuer.token("k1", "acme/app", json!({}));
    docker.login(&addr, "oidc", &id_token);
    let remote = format!("{addr}/acme/app:v1");
    docker.ok(&["tag", &local, &remote]);
    let out = docker.ok(&["push", &remote]);
    assert!(out.contains("digest: sha256:"), "{out}");
    let status = rt.block_on(async {
        crate::auth::req(
            &f.c,
            reqwest::Method::HEAD,
            &format!("{}/v2/acme/app/manifests/v1", f.url()),
            &admin(),
        )
        .header(
            "accept",
            "application/vnd.docker.distribution.manifest.v2+json",
        )
        .send()
        .await
        .unwrap()
        .status()
    });
    assert_eq!(status, StatusCode::OK);

    // Another repository: denied at once.
    let elsewhere = format!("{addr}/acme/other:v1");
    docker.ok(&["tag", &local, &elsewhere]);
    let (out, took) = docker.fails(&["push", &elsewhere]);
    assert!(out.contains("denied"), "{out}");
    assert!(took < Duration::from_secs(5), "took {took:?}: {out}");

    // The ID token was spent by the login: logging in with it again is a
    // replay.
    docker.ok(&["logout", &addr]);
    let (out, _) = docker.fails(&["login", "-u", "oidc", "-p", &id_token, &addr]);
    assert!(out.contains("replay"), "{out}");
    // Another repository's token is refused at login.
    let evil = issuer.token("k1", "acme/evil", json!({}));
    let (out, _) = docker.fails(&["login", "-u", "oidc", "-p", &evil, &addr]);
    assert!(out.contains("no trust policy matches"), "{out}");
    docker.ok(&["rmi", &remote, &elsewhere, &local]);
}

/// The GitHub Actions workflow of docs/ci-oidc.md.
fn workflow() -> String {
    let doc = include_str!("../../../../../docs/ci-oidc.md");
    let start = doc
        .find("```yaml\n")
        .expect("docs/ci-oidc.md has a workflow")
        + 8;
    let len = doc[start..].find("```").unwrap();
    doc[start..start + len].to_owned()
}

/// The `run: |` script of the step named `step` in `workflow`, dedented.
fn step_script(workflow: &str, step: &str) -> String {
    let at = workflow
        .find(&format!("- name: {step}"))
        .unwrap_or_else(|| panic!("no step {step:?}"));
    let rest = &workflow[at..];
    let run = rest.find("run: |\n").expect("a run: | script") + 7;
    let mut script = String::new();
    let mut indent = None;
    for line in rest[run..].lines() {
        let n = line.len() - line.trim_start().len();
        if !line.trim().is_empty() && indent.is_some_and(|i| n < i) {
            break;
        }
        indent.get_or_insert(n);
        script.push_str(line.get(indent.unwrap_or(0)..).unwrap_or(""));
        script.push('\n');
    }
    script
}

/// The workflow's login step, run verbatim by bash as the runner would,
/// against the test's issuer (standing in for GitHub's token request
/// endpoint) and the test's Docker daemon; then a push as the next step
/// does it (with a loaded image: building needs the network).
#[test]
fn oidc_the_documented_github_workflow_logs_in_and_pushes() {
    let wf = workflow();
    assert!(
        wf.contains("permissions:\n  contents: read\n  id-token: write"),
        "{wf}"
    );
    let login = step_script(&wf, "Log in to berth with the job's OIDC token");
    assert!(login.contains("-u oidc --password-stdin"), "{login}");

    let docker = Docker::new();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let issuer = Issuer::start(vec![("k1", Key::rs256())]);
    let f = rt.block_on(async {
        let f = Fixture::start("").await;
        let mut p = policy("acme-app", &issuer.url, "acme/app", "acme/app");
        // The registry's host name is the audience, as the docs advise.
        p["audience"] = json!(f.berth.addr);
        let r = add_policy(&f, p).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        f
    });
    let addr = f.berth.addr.clone();
    let config = tempfile::tempdir().unwrap();
    let out = docker
        .daemon_command("bash", config.path())
        .args(["-e", "-c", &login])
        .env("REGISTRY", &addr)
        .env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", crate::oidc::REQUEST_TOKEN)
        .env(
            "ACTIONS_ID_TOKEN_REQUEST_URL",
            format!("{}/token-request?api-version=2.0", issuer.url),
        )
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("Login Succeeded"), "{text}");

    let local = local_name("workflow");
    docker.load(&local, &[&layer("file-0", 3000)]);
    let remote = format!("{addr}/acme/app:sha");
    docker.ok(&["tag", &local, &remote]);
    let push = docker
        .daemon_command("docker", config.path())
        .args(["push", &remote])
        .output()
        .unwrap();
    assert!(
        push.status.success(),
        "{}",
        String::from_utf8_lossy(&push.stderr)
    );
    docker.ok(&["rmi", &remote, &local]);
}
