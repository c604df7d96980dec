//! How `/v2/` refuses, with auth on, as the Docker daemon and the other
//! clients need it: registry tokens that lack a scope get
//! `error="insufficient_scope"` (anonymous ones too), every refusal names
//! the repository and the action (never just its code's default text,
//! which the daemon retries), and cross-repository mounts ask for their
//! source's scope and work without `from`.

use berth_meta::accounts::Visibility;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::auth::{admin, challenge, req, Cred, Fixture};
use crate::oci::*;

/// The default messages of the codes, which clients such as the Docker
/// daemon treat as "no detail" (and retry).
const DEFAULT_MESSAGES: [&str; 2] = [
    "authentication required",
    "requested access to the resource is denied",
];

/// The status, challenge and first error of a response.
async fn refusal(r: reqwest::Response) -> (StatusCode, String, Value) {
    let status = r.status();
    let ch = challenge(&r);
    let body: Value = r.json().await.unwrap();
    (status, ch, body["errors"][0].clone())
}

fn assert_names(error: &Value, repository: &str, action: &str) {
    let message = error["message"].as_str().unwrap();
    assert!(
        !DEFAULT_MESSAGES.contains(&message),
        "a bare default message: {error}"
    );
    assert!(
        message.contains(repository) && message.contains(action),
        "the refusal must name {repository} and {action}: {error}"
    );
}

#[tokio::test]
async fn registry_tokens_lacking_a_scope_get_insufficient_scope() {
    let f = Fixture::start("").await;
    let u = f.url();
    let alice = f.user("alice").await;
    f.user("bob").await;
    assert_eq!(
        f.push(&alice, "alice/app", "v1", "a").await.0,
        StatusCode::CREATED
    );
    let realm = format!("Bearer realm=\"{u}/token\",service=\"berth\"");

    // An anonymous registry token (what docker uses when not logged in)
    // asking to push: 401 insufficient_scope, naming the push.
    let anon = f
        .token_for(&Cred::Anon, &["repository:alice/app:pull,push"])
        .await;
    let anon = Cred::Bearer(anon["token"].as_str().unwrap().to_owned());
    let r = req(
        &f.c,
        Method::POST,
        &format!("{u}/v2/alice/app/blobs/uploads/"),
        &anon,
    )
    .send()
    .await
    .unwrap();
    let (status, ch, e) = refusal(r).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        ch,
        format!("{realm},scope=\"repository:alice/app:pull,push\",error=\"insufficient_scope\"")
    );
    assert_eq!(e["code"], "UNAUTHORIZED");
    assert_names(&e, "alice/app", "push");

    // Pulling a private repository with it (docker pull after logout).
    let r = req(
        &f.c,
        Method::GET,
        &format!("{u}/v2/alice/app/manifests/v1"),
        &anon,
    )
    .send()
    .await
    .unwrap();
    let (status, ch, e) = refusal(r).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(ch.ends_with(",error=\"insufficient_scope\""), "{ch}");
    assert_names(&e, "alice/app", "pull");

    // bob's registry token for alice's repository grants nothing: the
    // same 401 insufficient_scope (as the reference registry answers), not
    // a 403 the daemon would retry.
    let bob_pw = Cred::Basic("bob".into(), "bob-password".into());
    let t = f
        .token_for(&bob_pw, &["repository:alice/app:pull,push"])
        .await;
    let bob = Cred::Bearer(t["token"].as_str().unwrap().to_owned());
    let r = req(
        &f.c,
        Method::POST,
        &format!("{u}/v2/alice/app/blobs/uploads/"),
        &bob,
    )
    .send()
    .await
    .unwrap();
    let (status, ch, e) = refusal(r).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(ch.ends_with(",error=\"insufficient_scope\""), "{ch}");
    assert_names(&e, "alice/app", "push");
    assert!(e["message"].as_str().unwrap().contains("bob"), "{e}");

    // alice's pull-only registry token: allowed to pull, not to push.
    let t = f.token_for(&alice, &["repository:alice/app:pull"]).await;
    let pull_only = Cred::Bearer(t["token"].as_str().unwrap().to_owned());
    assert_eq!(
        f.status(Method::GET, "/v2/alice/app/manifests/v1", &pull_only)
            .await,
        StatusCode::OK
    );
    let r = req(
        &f.c,
        Method::POST,
        &format!("{u}/v2/alice/app/blobs/uploads/"),
        &pull_only,
    )
    .send()
    .await
    .unwrap();
    let (status, ch, e) = refusal(r).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        ch,
        format!("{realm},scope=\"repository:alice/app:pull,push\",error=\"insufficient_scope\"")
    );
    assert_names(&e, "alice/app", "push");

    // Without any credentials: a plain challenge (log in), still naming
    // what was refused.
    let r = req(
        &f.c,
        Method::DELETE,
        &format!("{u}/v2/alice/app/manifests/v1"),
        &Cred::Anon,
    )
    .send()
    .await
    .unwrap();
    let (status, ch, e) = refusal(r).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(ch, format!("{realm},scope=\"repository:alice/app:delete\""));
    assert_names(&e, "alice/app", "delete");

    // A password of an account that may not: 403, naming it all.
    let r = req(
        &f.c,
        Method::POST,
        &format!("{u}/v2/alice/app/blobs/uploads/"),
        &bob_pw,
    )
    .send()
    .await
    .unwrap();
    let (status, ch, e) = refusal(r).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(ch, "");
    assert_eq!(e["code"], "DENIED");
    assert_names(&e, "alice/app", "push");
}

/// Uploads `data` to `repo` as `cred` in one POST; returns its digest.
async fn upload(f: &Fixture, cred: &Cred, repo: &str, data: &[u8]) -> String {
    let d = sha256(data);
    let r = req(
        &f.c,
        Method::POST,
        &format!("{}/v2/{repo}/blobs/uploads/?digest={d}", f.url()),
        cred,
    )
    .body(data.to_vec())
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    d
}

async fn mount(
    f: &Fixture,
    cred: &Cred,
    target: &str,
    digest: &str,
    from: Option<&str>,
) -> reqwest::Response {
    let from = from.map(|f| format!("&from={f}")).unwrap_or_default();
    req(
        &f.c,
        Method::POST,
        &format!(
            "{}/v2/{target}/blobs/uploads/?mount={digest}{from}",
            f.url()
        ),
        cred,
    )
    .send()
    .await
    .unwrap()
}

#[tokio::test]
async fn a_mount_challenge_asks_for_the_source_and_the_new_token_mounts() {
    let f = Fixture::start("").await;
    let u = f.url();
    let alice = f.user("alice").await;
    let d = upload(&f, &alice, "alice/base", b"a shared base layer").await;

    // A token for the target alone: the mount asks for the source too.
    let t = f
        .token_for(&alice, &["repository:alice/app:pull,push"])
        .await;
    let target_only = Cred::Bearer(t["token"].as_str().unwrap().to_owned());
    let r = mount(&f, &target_only, "alice/app", &d, Some("alice/base")).await;
    let (status, ch, e) = refusal(r).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let scope = "repository:alice/app:pull,push repository:alice/base:pull";
    assert_eq!(
        ch,
        format!(
            "Bearer realm=\"{u}/token\",service=\"berth\",scope=\"{scope}\",error=\"insufficient_scope\""
        )
    );
    assert_names(&e, "alice/base", "pull");

    // The token the challenge asks for (one scope parameter holding both,
    // as a client copies it) lets the mount happen.
    let t = f.token_for(&alice, &[scope]).await;
    let both = Cred::Bearer(t["token"].as_str().unwrap().to_owned());
    let r = mount(&f, &both, "alice/app", &d, Some("alice/base")).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()["docker-content-digest"], d.as_str());
    assert_eq!(
        f.status(Method::HEAD, &format!("/v2/alice/app/blobs/{d}"), &both)
            .await,
        StatusCode::OK
    );

    // Not logged in: the challenge lists the source as well.
    let r = mount(&f, &Cred::Anon, "alice/app", &d, Some("alice/base")).await;
    let (status, ch, _) = refusal(r).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        ch,
        format!("Bearer realm=\"{u}/token\",service=\"berth\",scope=\"{scope}\"")
    );

    // A source the account may not read: no challenge that cannot help,
    // a plain upload (202) that reveals nothing.
    let bob = f.user("bob").await;
    let t = f
        .token_for(
            &bob,
            &["repository:bob/app:pull,push repository:alice/base:pull"],
        )
        .await;
    let bobs = Cred::Bearer(t["token"].as_str().unwrap().to_owned());
    let r = mount(&f, &bobs, "bob/app", &d, Some("alice/base")).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn a_mount_without_from_links_from_a_repository_the_caller_may_read() {
    let f = Fixture::start("").await;
    let alice = f.user("alice").await;
    let bob = f.user("bob").await;
    f.org("pub", Visibility::Public).await;
    let private = upload(&f, &alice, "alice/base", b"alice's private layer").await;
    let public = upload(&f, &admin(), "pub/base", b"a public layer").await;

    // The site admin mounts anything stored, without naming the source.
    let r = mount(&f, &admin(), "admin/copy", &private, None).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    // alice mounts her own blob into another of her repositories, and a
    // public one.
    for d in [&private, &public] {
        let r = mount(&f, &alice, "alice/app", d, None).await;
        assert_eq!(r.status(), StatusCode::CREATED, "{d}");
        assert_eq!(
            f.status(Method::HEAD, &format!("/v2/alice/app/blobs/{d}"), &alice)
                .await,
            StatusCode::OK
        );
    }
    // bob gets the public blob, but not alice's private one (202: a plain
    // upload; the blob is not linked).
    let r = mount(&f, &bob, "bob/app", &public, None).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = mount(&f, &bob, "bob/app", &private, None).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(
        f.status(Method::HEAD, &format!("/v2/bob/app/blobs/{private}"), &bob)
            .await,
        StatusCode::NOT_FOUND
    );
    // A registry token is held to its grants: one for the target alone
    // reads no other repository.
    let t = f
        .token_for(&alice, &["repository:alice/other:pull,push"])
        .await;
    let target_only = Cred::Bearer(t["token"].as_str().unwrap().to_owned());
    let r = mount(&f, &target_only, "alice/other", &private, None).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
}
