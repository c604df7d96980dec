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
