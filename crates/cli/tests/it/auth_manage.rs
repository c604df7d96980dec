//! The management API's permission boundaries under attack, on a real
//! `berth serve --auth token`: claiming namespaces nobody owns, registry
//! tokens (JWTs) used as account credentials, namespace views that public
//! visibility must not open, registry tokens of deleted accounts, and the
//! shape of refusals.

use berth_meta::accounts::{Role, Visibility};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::auth::{admin, basic, challenge, req, Cred, Fixture};
use crate::common::ADMIN_PASSWORD;
use crate::oci::*;

/// `method` on `/api/v1{path}` as `cred` with an optional JSON body.
async fn api(
    f: &Fixture,
    method: Method,
    path: &str,
    cred: &Cred,
    body: Option<Value>,
) -> reqwest::Response {
    let r = req(&f.c, method, &format!("{}/api/v1{path}", f.url()), cred);
    let r = match body {
        Some(b) => r.json(&b),
        None => r,
    };
    r.send().await.unwrap()
}

#[tokio::test]
async fn namespaces_with_content_are_claimed_only_by_site_admins() {
    let f = Fixture::start("").await;
    let mallory = f.user("mallory").await;
    // Content under a namespace nobody owns (pushed in open mode, or by
    // the site admin), and under a user who is then deleted.
    assert_eq!(
        f.push(&admin(), "ghost/app", "v1", "ghost").await.0,
        StatusCode::CREATED
    );
    let alice = f.user("alice").await;
    assert_eq!(
        f.push(&alice, "alice/app", "v1", "alice").await.0,
        StatusCode::CREATED
    );
    let r = api(&f, Method::DELETE, "/users/alice", &admin(), None).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);

    for ns in ["ghost", "alice"] {
        // Founding an organisation of that name would hand its private
        // content to whoever asks first; the answer is the one every
        // unavailable name gets.
        let r = api(
            &f,
            Method::POST,
            "/orgs",
            &mallory,
            Some(json!({"name": ns})),
        )
        .await;
        expect_error(r, 409, "CONFLICT").await;
        let path = format!("/v2/{ns}/app/manifests/v1");
        assert_eq!(
            f.status(Method::GET, &path, &mallory).await,
            StatusCode::FORBIDDEN
        );
    }
    // A namespace without content is anyone's to found.
    let r = api(
        &f,
        Method::POST,
        "/orgs",
        &mallory,
        Some(json!({"name": "fresh"})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    // The site admin may hand an orphaned namespace to someone, knowingly.
    let r = api(
        &f,
        Method::POST,
        "/orgs",
        &admin(),
        Some(json!({"name": "ghost"})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn registry_tokens_do_not_manage_accounts() {
    let f = Fixture::start("").await;
    let alice = f.user("alice").await;
    // A JWT limited to pulling one repository, obtained with the password.
    let t = f.token_for(&alice, &["repository:alice/app:pull"]).await;
    let jwt = Cred::Bearer(t["token"].as_str().unwrap().to_owned());

    let r = api(
        &f,
        Method::POST,
        "/tokens",
        &jwt,
        Some(json!({"name": "wide", "scopes": ["admin"]})),
    )
    .await;
    expect_error(r, 403, "PERMISSION_DENIED").await;
    let r = api(
        &f,
        Method::PUT,
        "/users/alice/password",
        &jwt,
        Some(json!({"password": "taken-over-password"})),
    )
    .await;
    expect_error(r, 403, "PERMISSION_DENIED").await;
    let r = api(
        &f,
        Method::POST,
        "/orgs",
        &jwt,
        Some(json!({"name": "jwtorg"})),
    )
    .await;
    expect_error(r, 403, "PERMISSION_DENIED").await;
    // The password still works, and still may do all of it.
    let r = api(
        &f,
        Method::POST,
        "/tokens",
        &alice,
        Some(json!({"name": "ok", "scopes": ["pull"]})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn namespace_views_are_for_members_not_the_public() {
    let f = Fixture::start("").await;
    let boss = f.user("boss").await;
    let mallory = f.user("mallory").await;
    f.org("acme", Visibility::Public).await;
    f.member("acme", "boss", Role::Admin).await;
    assert_eq!(
        f.push(&boss, "acme/secret", "v1", "s").await.0,
        StatusCode::CREATED
    );
    let r = api(
        &f,
        Method::PUT,
        "/repositories/acme/secret/visibility",
        &boss,
        Some(json!({"visibility": "private"})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = api(
        &f,
        Method::POST,
        "/namespaces/acme/tag-rules",
        &boss,
        Some(json!({"pattern": "v*", "kind": "immutable"})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let policy = "[[rule]]\ntags = [\"*\"]\nkeep = { last = 1 }\n";
    let r = req(
        &f.c,
        Method::PUT,
        &format!("{}/api/v1/namespaces/acme/retention", f.url()),
        &boss,
    )
    .body(policy)
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // The private repository stays private on /v2/.
    assert_eq!(
        f.status(Method::GET, "/v2/acme/secret/tags/list", &mallory)
            .await,
        StatusCode::FORBIDDEN
    );
    for view in [
        "/orgs/acme/members",
        "/orgs/acme/robots",
        "/namespaces/acme/usage",
        "/namespaces/acme/tag-rules",
        "/namespaces/acme/retention",
        "/namespaces/acme/retention/plan",
        "/namespaces/acme/retention/runs",
    ] {
        let r = api(&f, Method::GET, view, &Cred::Anon, None).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "anonymous {view}");
        let r = api(&f, Method::GET, view, &mallory, None).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "outsider {view}");
        let r = api(&f, Method::GET, view, &boss, None).await;
        assert_eq!(r.status(), StatusCode::OK, "member {view}");
    }
    // Trying a policy is a plan too: it lists the namespace's tags.
    let r = req(
        &f.c,
        Method::POST,
        &format!("{}/api/v1/namespaces/acme/retention/plan", f.url()),
        &mallory,
    )
    .body(policy)
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // The namespace's visibility itself is public knowledge.
    let r = api(
        &f,
        Method::GET,
        "/namespaces/acme/visibility",
        &Cred::Anon,
        None,
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn registry_tokens_die_with_their_account() {
    let f = Fixture::start("").await;
    let alice = f.user("alice").await;
    assert_eq!(
        f.push(&alice, "alice/app", "v1", "a").await.0,
        StatusCode::CREATED
    );
    let t = f.token_for(&alice, &["repository:alice/app:pull"]).await;
    let jwt = Cred::Bearer(t["token"].as_str().unwrap().to_owned());
    let tags = "/v2/alice/app/tags/list";
    assert_eq!(f.status(Method::GET, tags, &jwt).await, StatusCode::OK);

    // Disabled: refused, and fine again once re-enabled.
    let root = admin();
    let patch = |d: bool| {
        api(
            &f,
            Method::PATCH,
            "/users/alice",
            &root,
            Some(json!({"disabled": d})),
        )
    };
    assert_eq!(patch(true).await.status(), StatusCode::OK);
    assert_eq!(
        f.status(Method::GET, tags, &jwt).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(patch(false).await.status(), StatusCode::OK);
    assert_eq!(f.status(Method::GET, tags, &jwt).await, StatusCode::OK);

    // Deleted and created again under the same name: the new alice is
    // someone else, and the old alice's token is not hers.
    let r = api(&f, Method::DELETE, "/users/alice", &admin(), None).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        f.status(Method::GET, tags, &jwt).await,
        StatusCode::UNAUTHORIZED
    );
    let r = api(
        &f,
        Method::POST,
        "/users",
        &admin(),
        Some(json!({"name": "alice", "password": "new-alice-password"})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = req(&f.c, Method::GET, &format!("{}{tags}", f.url()), &jwt)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(challenge(&r).starts_with("Bearer "), "{}", challenge(&r));
    // The new alice's own login works.
    let new = basic("alice", "new-alice-password");
    assert_eq!(f.status(Method::GET, tags, &new).await, StatusCode::OK);
}

#[tokio::test]
async fn management_refusals_have_the_error_shape_and_a_challenge() {
    let f = Fixture::start("").await;
    let alice = f.user("alice").await;
    for (method, path) in [
        (Method::GET, "/users"),
        (Method::GET, "/tokens"),
        (Method::GET, "/orgs"),
        (Method::POST, "/gc"),
        (Method::GET, "/audit"),
    ] {
        let r = api(&f, method.clone(), path, &Cred::Anon, None).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
        assert!(!challenge(&r).is_empty(), "{method} {path}: no challenge");
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            body["errors"][0]["code"], "UNAUTHENTICATED",
            "{method} {path}"
        );
        let r = api(&f, method.clone(), path, &alice, None).await;
        if path != "/tokens" && path != "/orgs" {
            expect_error(r, 403, "PERMISSION_DENIED").await;
        }
    }
    // Namespace paths are one valid name: an encoded slash or a bad name is
    // a 400 before any permission or storage is involved.
    for path in [
        "/namespaces/alice%2Fx/retention",
        "/namespaces/Alice/usage",
        "/namespaces/..%2Fx/tag-rules",
    ] {
        let r = api(&f, Method::GET, path, &admin(), None).await;
        expect_error(r, 400, "INVALID_ARGUMENT").await;
    }
    // Wrong credentials: 401 with a challenge too.
    let wrong = basic("admin", &format!("{ADMIN_PASSWORD}-not"));
    let r = api(&f, Method::GET, "/users", &wrong, None).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(!challenge(&r).is_empty());
}
