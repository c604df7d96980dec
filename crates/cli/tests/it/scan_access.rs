//! Who may scan, on a real `berth serve --auth token`: requesting a scan
//! (`POST /api/v1/scans`, work for the server) needs push permission on
//! the repository (its writers, the namespace's admins, site admins);
//! reading the stored result needs pull permission; an anonymous caller
//! never triggers a scan. Each refusal is checked for its status, the
//! management API's JSON shape and a message naming the repository and
//! what to do.

use berth_meta::accounts::{Role, Visibility};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::auth::{admin, basic, req, Cred, Fixture};

async fn scan(f: &Fixture, cred: &Cred, repo: &str, reference: &str) -> (StatusCode, Value) {
    let r = req(
        &f.c,
        Method::POST,
        &format!("{}/api/v1/scans", f.url()),
        cred,
    )
    .json(&json!({"repository": repo, "reference": reference}))
    .send()
    .await
    .unwrap();
    (r.status(), r.json().await.unwrap())
}

async fn stored(f: &Fixture, cred: &Cred, repo: &str, reference: &str) -> (StatusCode, Value) {
    let url = format!(
        "{}/api/v1/repositories/{repo}/manifests/{reference}/scan",
        f.url()
    );
    let r = req(&f.c, Method::GET, &url, cred).send().await.unwrap();
    (r.status(), r.json().await.unwrap())
}

/// The one error of a management API answer: (code, message).
fn error(body: &Value) -> (String, String) {
    let errors = body["errors"].as_array().expect("an errors array");
    assert_eq!(errors.len(), 1, "{body}");
    (
        errors[0]["code"].as_str().unwrap().to_owned(),
        errors[0]["message"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn scans_need_push_and_stored_results_need_pull() {
    let f = Fixture::start("").await;
    f.org("acme", Visibility::Private).await;
    let reader = f.user("reader").await;
    let writer = f.user("writer").await;
    let boss = f.user("boss").await;
    let outsider = f.user("outsider").await;
    f.member("acme", "reader", Role::Read).await;
    f.member("acme", "writer", Role::Write).await;
    f.member("acme", "boss", Role::Admin).await;
    let (status, digest) = f.push(&writer, "acme/app", "v1", "a").await;
    assert_eq!(status, StatusCode::CREATED);

    // Anonymous: never triggers work.
    let (status, body) = scan(&f, &Cred::Anon, "acme/app", "v1").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (code, message) = error(&body);
    assert_eq!(code, "UNAUTHENTICATED");
    assert!(
        message.contains("acme/app") && message.contains("push permission"),
        "{message}"
    );

    // Pull permission reads, it does not scan.
    for who in [&reader, &outsider] {
        let (status, body) = scan(&f, who, "acme/app", "v1").await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        let (code, message) = error(&body);
        assert_eq!(code, "PERMISSION_DENIED");
        assert!(
            message.contains("scanning acme/app needs push permission")
                && message.contains("berth scan --stored"),
            "{message}"
        );
    }
    // A writer's token limited to pull is held to it.
    let (_, pull_token) = f.token("writer", &["pull"], &[]).await;
    let (status, _) = scan(&f, &basic("writer", &pull_token), "acme/app", "v1").await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Nothing stored yet: a reader is told so.
    let (status, body) = stored(&f, &reader, "acme/app", &digest).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(error(&body).1.contains("has not been scanned"), "{body}");

    // Writers, the namespace's admins and site admins scan.
    for who in [&writer, &boss, &admin()] {
        let (status, body) = scan(&f, who, "acme/app", "v1").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["repository"], "acme/app");
        assert_eq!(body["digest"], digest.as_str());
    }

    // The stored result: pull permission, by digest or tag.
    for reference in [digest.as_str(), "v1"] {
        let (status, body) = stored(&f, &reader, "acme/app", reference).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["digest"], digest.as_str());
    }
    let (status, body) = stored(&f, &Cred::Anon, "acme/app", "v1").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (code, message) = error(&body);
    assert_eq!(code, "UNAUTHENTICATED");
    assert!(message.contains("acme/app"), "{message}");
    let (status, body) = stored(&f, &outsider, "acme/app", "v1").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (code, message) = error(&body);
    assert_eq!(code, "PERMISSION_DENIED");
    assert!(
        message.contains("acme/app") && message.contains("pull permission"),
        "{message}"
    );
}
