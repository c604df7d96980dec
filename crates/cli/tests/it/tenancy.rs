//! Namespaces, tokens and quotas under attack on a real `berth serve --auth
//! token`: a deleted namespace's settings must not pass to its next owner,
//! registry and refresh tokens must not outlive what they came from,
//! limited tokens must not manage their siblings, protected images must
//! keep their parts, upload sessions must not bypass a quota, and the
//! answers must not tell what exists.

use std::time::{Duration, Instant};

use berth_meta::accounts::{Role, Visibility};
use berth_registry::Caller;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::auth::{admin, basic, challenge, claims, req, Cred, Fixture};
use crate::common::Berth;
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

/// Checks that `r` is a JSON refusal with `status`; returns its message.
/// (Only the status: the management API's code table is being reshaped.)
async fn refused(r: reqwest::Response, status: u16) -> String {
    let got = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    assert_eq!(got, status, "{body}");
    body["errors"][0]["message"].as_str().unwrap().to_owned()
}

/// `POST /token` with a form.
async fn token_form(f: &Fixture, form: &[(&str, &str)]) -> reqwest::Response {
    f.c.post(format!("{}/token", f.url()))
        .form(form)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_refounded_namespace_starts_clean() {
    let f = Fixture::start("").await;
    let alice = f.user("alice").await;
    let bob = f.user("bob").await;
    let anon = Cred::Anon;
    // Alice's organisation publishes one repository, protects its tags,
    // plants a retention policy; the site admin gives it a quota.
    let r = api(
        &f,
        Method::POST,
        "/orgs",
        &alice,
        Some(json!({"name": "acme"})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        f.push(&alice, "acme/app", "v1", "a").await.0,
        StatusCode::CREATED
    );
    let r = api(
        &f,
        Method::PUT,
        "/repositories/acme/app/visibility",
        &alice,
        Some(json!({"visibility": "public"})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = api(
        &f,
        Method::POST,
        "/namespaces/acme/tag-rules",
        &alice,
        Some(json!({"pattern": "v*", "kind": "immutable"})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let policy = "[[rule]]\ntags = [\"*\"]\nkeep = { last = 1 }\n";
    let r = req(
        &f.c,
        Method::PUT,
        &format!("{}/api/v1/namespaces/acme/retention", f.url()),
        &alice,
    )
    .body(policy)
    .send()
    .await
    .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let r = api(
        &f,
        Method::PUT,
        "/namespaces/acme/quota",
        &admin(),
        Some(json!({"limit_bytes": 1_000_000})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let path = "/v2/acme/app/manifests/v1";
    assert_eq!(f.status(Method::GET, path, &anon).await, StatusCode::OK);

    // An organisation holding repositories goes only with them.
    let r = api(&f, Method::DELETE, "/orgs/acme", &alice, None).await;
    let msg = refused(r, 409).await;
    assert!(
        msg.contains("acme/app") && msg.contains("delete_repositories"),
        "{msg}"
    );
    let r = api(
        &f,
        Method::DELETE,
        "/orgs/acme?delete_repositories=true",
        &alice,
        None,
    )
    .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        f.status(Method::GET, path, &admin()).await,
        StatusCode::NOT_FOUND
    );

    // Bob founds the name again: nothing of Alice's reaches him.
    let r = api(
        &f,
        Method::POST,
        "/orgs",
        &bob,
        Some(json!({"name": "acme"})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        f.push(&bob, "acme/app", "v1", "b").await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        f.status(Method::GET, path, &anon).await,
        StatusCode::UNAUTHORIZED,
        "bob's private image is not served anonymously"
    );
    // The immutable rule is gone: bob may move his tag.
    assert_eq!(
        f.push(&bob, "acme/app", "v1", "c").await.0,
        StatusCode::CREATED
    );
    let r = api(&f, Method::GET, "/namespaces/acme/retention", &bob, None).await;
    refused(r, 404).await;
    let r = api(&f, Method::GET, "/namespaces/acme/quota", &bob, None).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = api(&f, Method::GET, "/namespaces/acme/tag-rules", &bob, None).await;
    let rules: Value = r.json().await.unwrap();
    assert_eq!(rules["rules"], json!([]), "{rules}");
    // Bob's audit view of acme starts when he founded it.
    let r = api(&f, Method::GET, "/audit?repository=acme/", &bob, None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let events: Value = r.json().await.unwrap();
    let events = events["events"].as_array().unwrap().clone();
    assert!(!events.is_empty());
    assert!(
        events.iter().all(|e| e["actor"] != "alice"),
        "alice's events are not bob's to read: {events:?}"
    );
}

#[tokio::test]
async fn founding_a_name_answers_the_same_whatever_holds_it() {
    let f = Fixture::start("").await;
    let mallory = f.user("mallory").await;
    f.user("alice").await;
    f.org("acme", Visibility::Private).await;
    // Content under a namespace nobody owns, and a setting alone under
    // another.
    assert_eq!(
        f.push(&admin(), "ghost/app", "v1", "g").await.0,
        StatusCode::CREATED
    );
    let r = api(
        &f,
        Method::PUT,
        "/namespaces/quiet/quota",
        &admin(),
        Some(json!({"limit_bytes": 1000})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);

    let mut answers = Vec::new();
    for name in ["alice", "acme", "ghost", "quiet"] {
        let r = api(
            &f,
            Method::POST,
            "/orgs",
            &mallory,
            Some(json!({"name": name})),
        )
        .await;
        let status = r.status();
        let body = r.text().await.unwrap().replace(name, "NAME");
        answers.push((status, body));
    }
    assert_eq!(answers[0].0, StatusCode::CONFLICT, "{:?}", answers[0]);
    assert!(
        answers.iter().all(|a| *a == answers[0]),
        "the answers tell the names apart: {answers:#?}"
    );
    // The site admin may still claim a namespace with content, knowingly.
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
async fn with_a_public_default_a_namespace_nobody_owns_is_private() {
    let f = Fixture::start("default_visibility = \"public\"").await;
    // Created through the API, so that the server's default applies.
    let r = api(
        &f,
        Method::POST,
        "/users",
        &admin(),
        Some(json!({"name": "alice", "password": "alice-password"})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let alice = basic("alice", "alice-password");
    let anon = Cred::Anon;
    assert_eq!(
        f.push(&alice, "alice/app", "v1", "a").await.0,
        StatusCode::CREATED
    );
    let path = "/v2/alice/app/manifests/v1";
    assert_eq!(f.status(Method::GET, path, &anon).await, StatusCode::OK);
    let r = api(&f, Method::DELETE, "/users/alice", &admin(), None).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        f.status(Method::GET, path, &anon).await,
        StatusCode::UNAUTHORIZED,
        "an orphaned repository is not published by the default"
    );
    let r = req(
        &f.c,
        Method::GET,
        &format!("{}/v2/_catalog", f.url()),
        &anon,
    )
    .send()
    .await
    .unwrap();
    let catalog: Value = r.json().await.unwrap();
    assert_eq!(catalog["repositories"], json!([]), "{catalog}");
    let r = api(
        &f,
        Method::GET,
        "/namespaces/alice/visibility",
        &admin(),
        None,
    )
    .await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["visibility"].as_str(), v["source"].as_str()),
        (Some("private"), Some("unowned"))
    );
}

#[tokio::test]
async fn a_registry_token_never_outlives_itself() {
    let f = Fixture::start("").await;
    let alice = f.user("alice").await;
    let first = f.token_for(&alice, &["repository:alice/app:pull"]).await;
    let jwt = first["token"].as_str().unwrap().to_owned();
    // A second later, the token asks for a successor.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let next = f
        .token_for(&Cred::Bearer(jwt.clone()), &["repository:alice/app:pull"])
        .await;
    let (a, b) = (claims(&jwt), claims(next["token"].as_str().unwrap()));
    assert!(
        b["exp"].as_i64() <= a["exp"].as_i64(),
        "renewed: {} > {}",
        b["exp"],
        a["exp"]
    );
    assert!(next["expires_in"].as_u64().unwrap() < first["expires_in"].as_u64().unwrap());
}

#[tokio::test]
async fn refresh_tokens_end_with_the_password_and_manage_nothing() {
    let f = Fixture::start("").await;
    f.user("alice").await;
    let login = |user: &'static str, password: &'static str| {
        let f = &f;
        async move {
            let r = token_form(
                f,
                &[
                    ("grant_type", "password"),
                    ("username", user),
                    ("password", password),
                    ("service", "berth"),
                    ("access_type", "offline"),
                ],
            )
            .await;
            assert_eq!(r.status(), StatusCode::OK);
            let t: Value = r.json().await.unwrap();
            t["refresh_token"].as_str().unwrap().to_owned()
        }
    };
    let refresh = login("alice", "alice-password").await;
    let session = Cred::Bearer(refresh.clone());
    // A docker login session pulls and pushes, but mints nothing.
    let r = api(
        &f,
        Method::POST,
        "/tokens",
        &session,
        Some(json!({"name": "forever", "scopes": ["admin"]})),
    )
    .await;
    refused(r, 403).await;
    let admin_session = Cred::Bearer(login("admin", crate::common::ADMIN_PASSWORD).await);
    let r = api(&f, Method::GET, "/users", &admin_session, None).await;
    refused(r, 403).await;

    // A password change ends the sessions.
    let r = api(
        &f,
        Method::PUT,
        "/users/alice/password",
        &basic("alice", "alice-password"),
        Some(json!({"password": "alice-new-password"})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let grant = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh.as_str()),
        ("service", "berth"),
    ];
    assert_eq!(
        token_form(&f, &grant).await.status(),
        StatusCode::UNAUTHORIZED
    );

    // So does an admin's "revoke sessions".
    let refresh = login("alice", "alice-new-password").await;
    let r = api(&f, Method::DELETE, "/users/alice/sessions", &admin(), None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let ended: Value = r.json().await.unwrap();
    assert_eq!(ended["sessions_ended"], 1);
    let grant = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh.as_str()),
        ("service", "berth"),
    ];
    assert_eq!(
        token_form(&f, &grant).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_limited_token_revokes_only_itself() {
    let f = Fixture::start("").await;
    f.org("acme", Visibility::Private).await;
    let ci = f
        .auth
        .create_robot("acme", "ci", Role::Write, &Caller::system("test"))
        .await
        .unwrap()
        .unwrap();
    let (pull_id, pull) = f.token(&ci, &["pull"], &[]).await;
    let (push_id, push) = f.token(&ci, &["push"], &[]).await;
    let secret = basic(&ci, &pull);
    let r = api(
        &f,
        Method::GET,
        &format!("/tokens?owner={ci}"),
        &secret,
        None,
    )
    .await;
    refused(r, 403).await;
    let r = api(
        &f,
        Method::DELETE,
        &format!("/tokens/{push_id}"),
        &secret,
        None,
    )
    .await;
    refused(r, 404).await;
    assert_eq!(
        f.status(Method::GET, "/v2/", &basic(&ci, &push)).await,
        StatusCode::OK,
        "the push token still works"
    );
    let r = api(
        &f,
        Method::DELETE,
        &format!("/tokens/{pull_id}"),
        &secret,
        None,
    )
    .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        f.status(Method::GET, "/v2/", &secret).await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn refusals_do_not_tell_what_exists() {
    let f = Fixture::start("").await;
    f.user("eve").await;
    let boss = f.user("boss").await;
    f.org("acme", Visibility::Private).await;
    f.org("other", Visibility::Private).await;
    f.member("acme", "boss", Role::Admin).await;
    f.auth
        .create_robot("other", "ci", Role::Write, &Caller::system("test"))
        .await
        .unwrap()
        .unwrap();
    let (id, _) = f.token("eve", &["pull"], &[]).await;

    // Anonymous revocations: authentication comes before any lookup.
    for path in [
        format!("/tokens/{id}"),
        "/tokens/berth_pat_nosuch".to_owned(),
    ] {
        let r = api(&f, Method::DELETE, &path, &Cred::Anon, None).await;
        refused(r, 401).await;
    }
    // A robot of another organisation and an unknown name look alike.
    let mut answers = Vec::new();
    for member in ["nobody", "other+ci"] {
        let r = api(
            &f,
            Method::PUT,
            &format!("/orgs/acme/members/{member}"),
            &boss,
            Some(json!({"role": "read"})),
        )
        .await;
        let status = r.status();
        answers.push((status, r.text().await.unwrap().replace(member, "NAME")));
    }
    assert_eq!(answers[0].0, StatusCode::NOT_FOUND, "{answers:?}");
    assert_eq!(answers[0], answers[1]);
}

#[tokio::test]
async fn every_namespace_path_parameter_is_validated() {
    let f = Fixture::start("").await;
    let eve = f.user("eve").await;
    let r = api(
        &f,
        Method::POST,
        "/orgs",
        &eve,
        Some(json!({"name": "eve-org"})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    for (method, path) in [
        (Method::GET, "/orgs/eve-org%2F..%2Facme"),
        (Method::GET, "/orgs/eve-org%2F..%2Facme/members"),
        (Method::DELETE, "/orgs/eve-org%2F..%2Facme"),
        (Method::GET, "/orgs/..%2Facme/robots"),
        (Method::PUT, "/orgs/a%2Fb/members/eve"),
        (Method::DELETE, "/orgs/a%2Fb/members/eve"),
        (Method::DELETE, "/namespaces/a%2Fb/tag-rules/1"),
    ] {
        let r = api(
            &f,
            method.clone(),
            path,
            &eve,
            Some(json!({"role": "read"})),
        )
        .await;
        let status = r.status();
        let body = r.text().await.unwrap();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {path}: {body}");
    }
}

#[tokio::test]
async fn protected_images_keep_their_children_and_layers() {
    let f = Fixture::start("").await;
    f.org("acme", Visibility::Private).await;
    let boss = f.user("boss").await;
    f.member("acme", "boss", Role::Admin).await;
    let (_, token) = f.token("boss", &["pull", "push", "delete"], &[]).await;
    let scoped = basic("boss", &token);
    // A child image pushed under a build tag, and an index protected by
    // a release tag.
    let (s, child) = f.push(&boss, "acme/app", "build-1", "a").await;
    assert_eq!(s, StatusCode::CREATED);
    let child_bytes = image_manifest(b"{\"seed\":\"a\"}", &[b"layer-a"]);
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": child, "size": child_bytes.len()}],
    }))
    .unwrap();
    let r = req(
        &f.c,
        Method::PUT,
        &format!("{}/v2/acme/app/manifests/v1.0", f.url()),
        &boss,
    )
    .header("content-type", OCI_INDEX)
    .body(index)
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = api(
        &f,
        Method::POST,
        "/namespaces/acme/tag-rules",
        &boss,
        Some(json!({"pattern": "v*", "kind": "protected"})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);

    // A delete-only token neither unlinks the layer nor deletes the child.
    let layer = sha256(b"layer-a");
    for path in [
        format!("/v2/acme/app/blobs/{layer}"),
        format!("/v2/acme/app/manifests/{child}"),
    ] {
        let r = req(&f.c, Method::DELETE, &format!("{}{path}", f.url()), &scoped)
            .send()
            .await
            .unwrap();
        let msg = refused(r, 403).await;
        assert!(
            msg.contains("v1.0") && msg.contains("only a namespace admin"),
            "{path}: {msg}"
        );
    }
    assert_eq!(
        f.status(Method::GET, &format!("/v2/acme/app/blobs/{layer}"), &boss)
            .await,
        StatusCode::OK
    );
    // The namespace admin may.
    let r = req(
        &f.c,
        Method::DELETE,
        &format!("{}/v2/acme/app/manifests/{child}", f.url()),
        &boss,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn open_upload_sessions_count_against_the_quota() {
    let b = Berth::start();
    let (c, u) = (client(), b.url());
    let r = c
        .put(format!("{u}/api/v1/namespaces/acme/quota"))
        .json(&json!({"limit_bytes": 2_000_000}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Six sessions, each sent 1 MB at once over its own connection.
    let mut sessions = Vec::new();
    for _ in 0..6 {
        let r = c
            .post(format!("{u}/v2/acme/app/blobs/uploads/"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        sessions.push(header(&r, "location").unwrap());
    }
    let mut tasks = Vec::new();
    for loc in sessions {
        let url = if loc.starts_with('/') {
            format!("{u}{loc}")
        } else {
            loc
        };
        tasks.push(tokio::spawn(async move {
            let r = client()
                .patch(&url)
                .header("content-type", "application/octet-stream")
                .body(vec![7u8; 1_000_000])
                .send()
                .await
                .unwrap();
            (r.status(), url)
        }));
    }
    let mut accepted = Vec::new();
    for t in tasks {
        let (status, url) = t.await.unwrap();
        assert!(
            status == StatusCode::ACCEPTED || status == StatusCode::FORBIDDEN,
            "{status}"
        );
        if status == StatusCode::ACCEPTED {
            accepted.push(url);
        }
    }
    assert!(
        accepted.len() <= 2,
        "{} sessions of 1 MB held under a 2 MB quota",
        accepted.len()
    );
    let held: u64 = files_under(&b.data_dir.join("uploads"))
        .iter()
        .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum();
    assert!(held <= 2_000_000 + 64 * 1024, "{held} bytes on disk");
    // While they are open there is no room; once cancelled, it is back.
    let start = format!("{u}/v2/acme/app/blobs/uploads/");
    if accepted.len() == 2 {
        let r = c.post(&start).send().await.unwrap();
        let msg = refused(r, 403).await;
        assert!(msg.contains("held by open uploads"), "{msg}");
    }
    for url in accepted {
        let r = c.delete(&url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
    }
    let r = c.post(&start).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn registry_tokens_list_the_catalog_only_with_its_scope() {
    let f = Fixture::start("").await;
    let alice = f.user("alice").await;
    for repo in ["alice/a", "alice/b"] {
        assert_eq!(
            f.push(&alice, repo, "v1", repo).await.0,
            StatusCode::CREATED
        );
    }
    let catalog = format!("{}/v2/_catalog", f.url());
    let t = f.token_for(&alice, &["repository:alice/a:pull"]).await;
    let narrow = Cred::Bearer(t["token"].as_str().unwrap().to_owned());
    let r = req(&f.c, Method::GET, &catalog, &narrow)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let ch = challenge(&r);
    assert!(
        ch.contains("scope=\"registry:catalog:*\"") && ch.contains("insufficient_scope"),
        "{ch}"
    );
    let t = f.token_for(&alice, &["registry:catalog:*"]).await;
    let wide = Cred::Bearer(t["token"].as_str().unwrap().to_owned());
    let r = req(&f.c, Method::GET, &catalog, &wide)
        .send()
        .await
        .unwrap();
    let list: Value = r.json().await.unwrap();
    assert_eq!(list["repositories"], json!(["alice/a", "alice/b"]));
}

#[tokio::test]
async fn the_anonymous_catalog_does_not_scan_private_repositories() {
    let f = Fixture::start("").await;
    f.org("pub", Visibility::Public).await;
    let alice = f.user("alice").await;
    assert_eq!(
        f.push(&alice, "alice/own", "v1", "o").await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        f.push(&admin(), "pub/app", "v1", "p").await.0,
        StatusCode::CREATED
    );
    // 33,000 private repositories, written straight to the database
    // (concurrent writes are committed in groups).
    let started = Instant::now();
    let mut batch = Vec::new();
    for i in 0..33_000 {
        let meta = f.meta.clone();
        batch.push(tokio::spawn(async move {
            let repo = format!("private-{:02}/repo-{i}", i % 50);
            meta.link_blob(
                &berth_oci::RepositoryName::parse(repo.as_str()).unwrap(),
                &berth_testkit::digests::digest("x"),
                1,
                1,
            )
            .await
        }));
        if batch.len() == 1000 {
            for t in std::mem::take(&mut batch) {
                t.await.unwrap().unwrap();
            }
        }
    }
    eprintln!("33,000 repositories written in {:?}", started.elapsed());
    let catalog = format!("{}/v2/_catalog", f.url());
    let time = |cred: Cred| {
        let (c, catalog) = (f.c.clone(), catalog.clone());
        async move {
            let t = Instant::now();
            let r = req(&c, Method::GET, &catalog, &cred).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            let list: Value = r.json().await.unwrap();
            (t.elapsed(), list["repositories"].clone())
        }
    };
    time(Cred::Anon).await;
    let (took, list) = time(Cred::Anon).await;
    assert_eq!(list, json!(["pub/app"]));
    eprintln!("anonymous catalog: {took:?}");
    assert!(took < Duration::from_millis(500), "{took:?}");
    let (took, list) = time(alice.clone()).await;
    assert_eq!(list, json!(["alice/own", "pub/app"]));
    eprintln!("alice's catalog: {took:?}");
    let t = Instant::now();
    let tasks: Vec<_> = (0..8).map(|_| tokio::spawn(time(Cred::Anon))).collect();
    for task in tasks {
        let (took, list) = task.await.unwrap();
        assert_eq!(list, json!(["pub/app"]));
        assert!(took < Duration::from_secs(2), "{took:?}");
    }
    eprintln!("8 anonymous catalogs at once: {:?}", t.elapsed());
}
