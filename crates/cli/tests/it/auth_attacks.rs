//! Attacks on a server with auth on: reading private blobs through public
//! repositories, mounting from private repositories, revoked and expired
//! tokens, forged and foreign registry tokens, odd names; and the limits:
//! pull rate limits and failed-login throttling.

use base64::Engine as _;
use berth_meta::accounts::Visibility;
use berth_registry::auth::{AuthSettings, Authority, TokenRequest};
use berth_registry::Caller;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::auth::{admin, basic, challenge, req, Cred, Fixture};
use crate::oci::*;

#[tokio::test]
async fn private_content_never_leaks_through_public_repositories() {
    let f = Fixture::start("").await;
    let u = f.url();
    let alice = f.user("alice").await;
    let mallory = f.user("mallory").await;
    f.org("pub", Visibility::Public).await;
    let secret = b"alice's private layer".to_vec();
    let d = sha256(&secret);
    let up = |cred: &Cred, repo: &str, data: &[u8]| {
        req(
            &f.c,
            Method::POST,
            &format!("{u}/v2/{repo}/blobs/uploads/?digest={}", sha256(data)),
            cred,
        )
        .body(data.to_vec())
        .send()
    };
    assert_eq!(
        up(&alice, "alice/private", &secret).await.unwrap().status(),
        StatusCode::CREATED
    );
    assert_eq!(
        f.push(&admin(), "pub/app", "v1", "public").await.0,
        StatusCode::CREATED
    );

    // By digest through a public repository: unknown there.
    for cred in [Cred::Anon, mallory.clone()] {
        let r = req(
            &f.c,
            Method::GET,
            &format!("{u}/v2/pub/app/blobs/{d}"),
            &cred,
        )
        .send()
        .await
        .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["errors"][0]["code"], "BLOB_UNKNOWN");
    }

    // Mounting from the private repository into one's own: a plain upload
    // session (202), the blob is not linked, nothing is revealed.
    let mount = |cred: &Cred, from: Option<&str>| {
        let from = from.map(|f| format!("&from={f}")).unwrap_or_default();
        req(
            &f.c,
            Method::POST,
            &format!("{u}/v2/mallory/loot/blobs/uploads/?mount={d}{from}"),
            cred,
        )
        .send()
    };
    for from in [Some("alice/private"), None, Some("../alice/private")] {
        let r = mount(&mallory, from).await.unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED, "mount from {from:?}");
        assert!(r.headers()["location"]
            .to_str()
            .unwrap()
            .contains("/blobs/uploads/"));
    }
    assert_eq!(
        f.status(
            Method::HEAD,
            &format!("/v2/mallory/loot/blobs/{d}"),
            &mallory
        )
        .await,
        StatusCode::NOT_FOUND
    );
    // The owner mounts between her own repositories.
    let r = req(
        &f.c,
        Method::POST,
        &format!("{u}/v2/alice/copy/blobs/uploads/?mount={d}&from=alice/private"),
        &alice,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    // And mallory cannot even start an upload into alice's namespace.
    assert_eq!(
        up(&mallory, "alice/private", b"x").await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn revoked_expired_forged_and_foreign_tokens_are_refused() {
    let f = Fixture::start("").await;
    let u = f.url();
    f.user("alice").await;
    let (id, pat) = f.token("alice", &["pull", "push"], &[]).await;
    let cred = basic("alice", &pat);
    assert_eq!(
        f.push(&cred, "alice/app", "v1", "a").await.0,
        StatusCode::CREATED
    );
    let jwt = f.token_for(&cred, &["repository:alice/app:pull"]).await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let bearer = Cred::Bearer(jwt.clone());
    assert_eq!(
        f.status(Method::GET, "/v2/alice/app/manifests/v1", &bearer)
            .await,
        StatusCode::OK
    );

    // A registry token whose access was widened keeps a bad signature.
    let parts: Vec<&str> = jwt.split('.').collect();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    claims["access"][0]["actions"] = serde_json::json!(["pull", "push", "delete"]);
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(claims.to_string()),
        parts[2]
    );
    let r = req(
        &f.c,
        Method::GET,
        &format!("{u}/v2/alice/app/manifests/v1"),
        &Cred::Bearer(forged),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(challenge(&r).starts_with("Bearer realm="));
    let none = format!(
        "{}.{}.",
        b64.encode(r#"{"alg":"none"}"#),
        b64.encode(claims.to_string())
    );
    assert_eq!(
        f.status(
            Method::GET,
            "/v2/alice/app/manifests/v1",
            &Cred::Bearer(none)
        )
        .await,
        StatusCode::UNAUTHORIZED
    );

    // A validly signed token for another service (same key, other
    // audience) is refused; so is asking /token for another service.
    let other = Authority::new(
        f.meta.clone(),
        AuthSettings {
            service: "elsewhere".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let id_other = other
        .authenticate(
            &berth_registry::auth::Credentials::Basic {
                username: "alice".into(),
                password: pat.clone(),
            },
            None,
            false,
        )
        .await
        .unwrap();
    let foreign = other
        .issue(
            &id_other,
            &berth_registry::auth::scope::parse_all(["repository:alice/app:pull"]),
        )
        .await
        .unwrap();
    assert_eq!(
        f.status(
            Method::GET,
            "/v2/alice/app/manifests/v1",
            &Cred::Bearer(foreign.token)
        )
        .await,
        StatusCode::UNAUTHORIZED
    );
    let r = req(
        &f.c,
        Method::GET,
        &format!("{u}/token?service=elsewhere"),
        &cred,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // Revoked: the token and the registry tokens obtained with it.
    assert!(f
        .auth
        .revoke_token(&id, &Caller::system("test"))
        .await
        .unwrap());
    assert_eq!(
        f.status(Method::GET, "/v2/alice/app/manifests/v1", &cred)
            .await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        f.status(Method::GET, "/v2/alice/app/manifests/v1", &bearer)
            .await,
        StatusCode::UNAUTHORIZED
    );
    let r = req(&f.c, Method::GET, &format!("{u}/token"), &cred)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Expired.
    let expired = f
        .auth
        .create_token(
            "alice",
            &TokenRequest {
                name: "old".into(),
                scopes: vec!["pull".into()],
                patterns: vec![],
                expires_at: Some(berth_meta::now_ms() - 1000),
            },
            &Caller::system("test"),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        f.status(
            Method::GET,
            "/v2/alice/app/manifests/v1",
            &basic("alice", &expired.token)
        )
        .await,
        StatusCode::UNAUTHORIZED
    );
    // A token string with a valid shape but a wrong secret.
    let mut guessed = pat.clone();
    guessed.pop();
    guessed.push(if pat.ends_with('a') { 'b' } else { 'a' });
    assert_eq!(
        f.status(
            Method::GET,
            "/v2/alice/app/manifests/v1",
            &Cred::Bearer(guessed)
        )
        .await,
        StatusCode::UNAUTHORIZED
    );
    let failures = f
        .meta
        .audit_events(&berth_meta::audit::AuditFilter {
            action: Some("login.failed".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let reasons: Vec<String> = failures
        .iter()
        .map(|e| e.event.detail.as_ref().unwrap()["reason"].to_string())
        .collect();
    assert!(reasons.iter().any(|r| r.contains("revoked")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("expired")), "{reasons:?}");
}

#[tokio::test]
async fn another_users_namespace_and_odd_names() {
    let f = Fixture::start("").await;
    let u = f.url();
    let bob = f.user("bob").await;
    f.user("alice").await;
    // Asking /token for push on alice's namespace grants nothing, and the
    // token cannot be used to push there (401 insufficient_scope, as the
    // reference registry answers a token without the access).
    let t = f.token_for(&bob, &["repository:alice/app:pull,push"]).await;
    let jwt = t["token"].as_str().unwrap().to_owned();
    assert_eq!(crate::auth::claims(&jwt)["access"], serde_json::json!([]));
    assert_eq!(
        f.push(&Cred::Bearer(jwt), "alice/app", "v1", "b").await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        f.push(&bob, "alice/app", "v1", "b").await.0,
        StatusCode::FORBIDDEN
    );
    // A name that only starts like bob's namespace is not his.
    assert_eq!(
        f.push(&bob, "bobby/app", "v1", "b").await.0,
        StatusCode::FORBIDDEN
    );

    // Path traversal and overlong names: refused as invalid names, with
    // or without credentials, never a 5xx.
    let long = format!("bob/{}", "a".repeat(300));
    for path in [
        "/v2/bob/.../manifests/v1".to_owned(),
        "/v2/bob/..%2falice/app/manifests/v1".to_owned(),
        format!("/v2/{long}/manifests/v1"),
        format!("/v2/{long}/blobs/uploads/"),
    ] {
        for cred in [Cred::Anon, bob.clone()] {
            let r = req(&f.c, Method::GET, &format!("{u}{path}"), &cred)
                .send()
                .await
                .unwrap();
            assert!(
                r.status() == StatusCode::BAD_REQUEST || r.status() == StatusCode::NOT_FOUND,
                "{path}: {}",
                r.status()
            );
            let body: Value = r.json().await.unwrap();
            let code = body["errors"][0]["code"].as_str().unwrap().to_owned();
            assert!(
                code == "NAME_INVALID" || code == "UNSUPPORTED",
                "{path}: {code}"
            );
        }
    }
    let scope = format!("repository:{long}:pull");
    let t = f
        .token_for(&bob, &[&scope, "repository:../alice/app:pull"])
        .await;
    assert_eq!(
        crate::auth::claims(t["token"].as_str().unwrap())["access"],
        serde_json::json!([])
    );
}

#[tokio::test]
async fn pull_rate_limits_with_headers_and_429() {
    let f = Fixture::start("pull_rate_limit = 3\npull_rate_window = \"1h\"\n").await;
    let u = f.url();
    f.org("pub", Visibility::Public).await;
    assert_eq!(
        f.push(&admin(), "pub/app", "v1", "p").await.0,
        StatusCode::CREATED
    );
    let get = |method: Method, cred: Cred| {
        req(&f.c, method, &format!("{u}/v2/pub/app/manifests/v1"), &cred)
            .header("accept", OCI_MANIFEST)
            .send()
    };
    // HEAD reports without counting.
    let r = get(Method::HEAD, Cred::Anon).await.unwrap();
    assert_eq!(r.headers()["ratelimit-limit"], "3;w=3600");
    assert_eq!(r.headers()["ratelimit-remaining"], "3;w=3600");
    for left in [2, 1, 0] {
        let r = get(Method::GET, Cred::Anon).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers()["ratelimit-remaining"],
            format!("{left};w=3600").as_str()
        );
    }
    let r = get(Method::GET, Cred::Anon).await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 3500 && retry <= 3600, "{retry}");
    assert_eq!(r.headers()["ratelimit-remaining"], "0;w=3600");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "TOOMANYREQUESTS");
    // HEAD is never refused; an authenticated account has its own budget.
    assert_eq!(
        get(Method::HEAD, Cred::Anon).await.unwrap().status(),
        StatusCode::OK
    );
    let r = get(Method::GET, admin()).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["ratelimit-remaining"], "2;w=3600");
}

#[tokio::test]
async fn failed_logins_are_slowed_down() {
    let f = Fixture::start("").await;
    let u = f.url();
    let dave = f.user("dave").await;
    let wrong = basic("dave", "wrong-password");
    for _ in 0..5 {
        assert_eq!(
            f.status(Method::GET, "/v2/", &wrong).await,
            StatusCode::UNAUTHORIZED
        );
    }
    // Now even the right password waits; the answer says how long.
    for path in ["/v2/", "/token"] {
        let r = req(&f.c, Method::GET, &format!("{u}{path}"), &dave)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "{path}");
        let retry: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=30).contains(&retry), "{retry}");
    }
    // Other accounts are not affected.
    assert_eq!(
        f.status(Method::GET, "/v2/", &admin()).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn forwarded_addresses_count_only_behind_a_trusted_proxy() {
    let limit = "pull_rate_limit = 1\n";
    for trusted in [false, true] {
        let f = Fixture::start(&format!("{limit}trust_forwarded_for = {trusted}\n")).await;
        f.org("pub", Visibility::Public).await;
        assert_eq!(
            f.push(&admin(), "pub/app", "v1", "p").await.0,
            StatusCode::CREATED
        );
        let mut statuses = Vec::new();
        for client in ["203.0.113.1", "203.0.113.2"] {
            let r =
                f.c.get(format!("{}/v2/pub/app/manifests/v1", f.url()))
                    .header("accept", OCI_MANIFEST)
                    // A client-supplied first entry is never trusted.
                    .header("x-forwarded-for", format!("10.9.9.9, {client}"))
                    .send()
                    .await
                    .unwrap();
            statuses.push(r.status());
        }
        let second = if trusted {
            StatusCode::OK
        } else {
            StatusCode::TOO_MANY_REQUESTS
        };
        assert_eq!(statuses, vec![StatusCode::OK, second], "trusted: {trusted}");
    }
}
