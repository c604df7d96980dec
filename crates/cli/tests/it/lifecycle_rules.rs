//! Tag rules against a real `berth serve`: the management API, the CLI,
//! and their enforcement on `/v2/` pushes and deletes. In open mode
//! (`--auth none`) every caller is a namespace admin, so immutable tags
//! (which refuse everyone) are tested there and protected tags with
//! authentication on, against members and tokens without the admin role.

use serde_json::{json, Value};

use crate::common::{berth_bin, Berth};
use crate::oci::*;

async fn api(
    c: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = c.request(method, url);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn cli(b: &Berth, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(berth_bin())
        .args(args)
        .args(["--registry", &b.addr])
        .env_remove("BERTH_TOKEN")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn immutable_and_protected_tags_via_api_and_v2() {
    let b = Berth::start();
    let (c, u) = (client(), b.url());
    let rules = format!("{u}/api/v1/namespaces/acme/tag-rules");
    let (s, rule) = api(
        &c,
        reqwest::Method::POST,
        rules.clone(),
        Some(json!({"pattern": "v*", "kind": "immutable"})),
    )
    .await;
    assert_eq!(s, 201, "{rule}");
    assert_eq!(rule["scope"], "acme");
    assert_eq!(rule["kind"], "immutable");
    let (s, again) = api(
        &c,
        reqwest::Method::POST,
        rules.clone(),
        Some(json!({"pattern": "v*", "kind": "immutable"})),
    )
    .await;
    assert_eq!(
        (s, &again["id"]),
        (200, &rule["id"]),
        "the same rule twice is one rule"
    );
    let (s, _) = api(
        &c,
        reqwest::Method::POST,
        rules.clone(),
        Some(json!({"pattern": "latest", "kind": "protected", "scope": "acme/web-*"})),
    )
    .await;
    assert_eq!(s, 201);
    // Bad input is refused in the error shape.
    let (s, err) = api(
        &c,
        reqwest::Method::POST,
        rules.clone(),
        Some(json!({"pattern": "v*", "kind": "frozen"})),
    )
    .await;
    assert_eq!(s, 400);
    assert!(err["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("protected or immutable"));
    let (s, err) = api(
        &c,
        reqwest::Method::POST,
        rules.clone(),
        Some(json!({"pattern": "v*", "kind": "protected", "scope": "other/x"})),
    )
    .await;
    assert_eq!(s, 400, "{err}");
    let (s, list) = api(&c, reqwest::Method::GET, rules.clone(), None).await;
    assert_eq!(s, 200);
    assert_eq!(list["rules"].as_array().unwrap().len(), 2);

    // Immutable: the first push of v1.2.3 wins; moving it is DENIED (403)
    // with the rule named, even for an admin.
    let (d1, _) = push_image(&c, &u, "acme/web-api", "v1.2.3", "one").await;
    let (_, other) = push_image(&c, &u, "acme/web-api", "scratch", "two").await;
    let r = put_manifest(&c, &u, "acme/web-api", "v1.2.3", OCI_MANIFEST, &other).await;
    let msg = expect_error(r, 403, "DENIED").await;
    assert_eq!(
        msg,
        "tag \"v1.2.3\" is immutable (rule \"v*\" on acme): it cannot be overwritten"
    );
    // Also through ?tag= on a digest push.
    let r = c
        .put(format!(
            "{u}/v2/acme/web-api/manifests/{}?tag=v1.2.3",
            sha256(&other)
        ))
        .header("content-type", OCI_MANIFEST)
        .body(other.clone())
        .send()
        .await
        .unwrap();
    expect_error(r, 403, "DENIED").await;
    let r = c
        .get(format!("{u}/v2/acme/web-api/manifests/v1.2.3"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&r, "docker-content-digest").as_deref(),
        Some(d1.as_str())
    );
    // Pushing the same manifest to it again is not a move.
    let (same, _) = push_image(&c, &u, "acme/web-api", "v1.2.3", "one").await;
    assert_eq!(same, d1);
    // Other namespaces are not covered.
    push_image(&c, &u, "acmecorp/web-api", "v1.2.3", "one").await;
    push_image(&c, &u, "acmecorp/web-api", "v1.2.3", "two").await;

    // Protected tags: in open mode every caller is a namespace admin, who
    // may move and delete them.
    push_image(&c, &u, "acme/web-api", "latest", "one").await;
    push_image(&c, &u, "acme/web-api", "latest", "two").await;
    let r = c
        .delete(format!("{u}/v2/acme/web-api/manifests/latest"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);

    // Removing the rule lifts it.
    let id = rule["id"].as_i64().unwrap();
    let (s, removed) = api(&c, reqwest::Method::DELETE, format!("{rules}/{id}"), None).await;
    assert_eq!(s, 200);
    assert_eq!(removed["removed"][0]["pattern"], "v*");
    let (s, err) = api(&c, reqwest::Method::DELETE, format!("{rules}/{id}"), None).await;
    assert_eq!(s, 404, "{err}");
    assert_eq!(err["errors"][0]["code"], "NOT_FOUND");
    let r = put_manifest(&c, &u, "acme/web-api", "v1.2.3", OCI_MANIFEST, &other).await;
    assert_eq!(r.status(), 201);
}

#[tokio::test]
async fn concurrent_pushes_of_an_immutable_tag_have_exactly_one_winner() {
    let b = Berth::start();
    let (c, u) = (client(), b.url());
    let (s, _) = api(
        &c,
        reqwest::Method::POST,
        format!("{u}/api/v1/namespaces/race/tag-rules"),
        Some(json!({"pattern": "release-*", "kind": "immutable"})),
    )
    .await;
    assert_eq!(s, 201);
    // Distinct manifests over shared blobs, all pushed first by digest.
    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    push_blob(&c, &u, "race/app", &config).await;
    let mut manifests = Vec::new();
    for i in 0..12 {
        let layer = format!("layer-{i}").into_bytes();
        push_blob(&c, &u, "race/app", &layer).await;
        manifests.push(image_manifest(&config, &[&layer]));
    }
    let mut tasks = Vec::new();
    for m in manifests.clone() {
        let (c, u) = (c.clone(), u.clone());
        tasks.push(tokio::spawn(async move {
            let r = put_manifest(&c, &u, "race/app", "release-1", OCI_MANIFEST, &m).await;
            (r.status().as_u16(), sha256(&m))
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        let (status, digest) = t.await.unwrap();
        match status {
            201 => winners.push(digest),
            403 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one push wins");
    let r = c
        .get(format!("{u}/v2/race/app/manifests/release-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&r, "docker-content-digest"),
        Some(winners[0].clone())
    );
}

#[tokio::test]
async fn tag_rule_cli_adds_lists_and_removes() {
    let b = Berth::start();
    let (ok, out, err) = cli(
        &b,
        &["tag-rule", "add", "acme", "v*", "--kind", "immutable"],
    );
    assert!(ok, "{err}");
    assert!(out.starts_with("ID"), "{out}");
    assert!(out.contains("immutable") && out.contains("v*"), "{out}");
    let (ok, _, err) = cli(
        &b,
        &[
            "tag-rule",
            "add",
            "acme",
            "main",
            "--kind",
            "protected",
            "--scope",
            "acme/web-*",
        ],
    );
    assert!(ok, "{err}");
    let (ok, out, _) = cli(&b, &["tag-rule", "list", "acme", "-o", "json"]);
    assert!(ok);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["rules"].as_array().unwrap().len(), 2);
    assert_eq!(v["rules"][1]["scope"], "acme/web-*");
    let (ok, out, _) = cli(&b, &["tag-rule", "list", "acme"]);
    assert!(ok);
    assert_eq!(out.lines().count(), 3, "{out}");
    // Refused input: the server's message reaches the user.
    let (ok, _, err) = cli(
        &b,
        &["tag-rule", "add", "acme", "v/1", "--kind", "protected"],
    );
    assert!(!ok);
    assert!(err.contains("tag pattern"), "{err}");
    let (ok, _, err) = cli(&b, &["tag-rule", "remove", "acme", "main"]);
    assert!(!ok, "main is scoped to acme/web-*, not acme");
    assert!(err.contains("no tag rule"), "{err}");
    let (ok, out, err) = cli(
        &b,
        &[
            "tag-rule",
            "remove",
            "acme",
            "main",
            "--scope",
            "acme/web-*",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("protected"), "{out}");
    let (ok, _, _) = cli(&b, &["tag-rule", "remove", "acme", "--id", "1"]);
    assert!(ok);
    let (_, out, _) = cli(&b, &["tag-rule", "list", "acme", "-o", "json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert!(v["rules"].as_array().unwrap().is_empty());
}

/// With authentication on: a member with the write role may create a
/// protected tag but not move it; a token without the admin scope may
/// delete ordinary tags but not protected ones; the namespace admin may do
/// both.
#[tokio::test]
async fn protected_tags_refuse_callers_who_are_not_namespace_admins() {
    use berth_meta::accounts::{Role, Visibility};

    use crate::auth::{admin, basic, req, Fixture};

    let f = Fixture::start("").await;
    f.org("acme", Visibility::Private).await;
    let dev = f.user("dev").await;
    f.member("acme", "dev", Role::Write).await;
    let boss = f.user("boss").await;
    f.member("acme", "boss", Role::Admin).await;
    let (c, u) = (&f.c, f.url());
    let rules = format!("{u}/api/v1/namespaces/acme/tag-rules");
    let body = json!({"pattern": "latest", "kind": "protected"});
    // Only namespace admins set rules.
    let r = req(c, reqwest::Method::POST, &rules, &dev)
        .json(&body)
        .send()
        .await
        .unwrap();
    expect_error(r, 403, "PERMISSION_DENIED").await;
    let r = req(c, reqwest::Method::POST, &rules, &boss)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = req(c, reqwest::Method::GET, &rules, &dev)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "members read the rules");

    // A writer creates the protected tag but cannot move it.
    let (s, first) = f.push(&dev, "acme/app", "latest", "a").await;
    assert_eq!(s, 201);
    let (s, _) = f.push(&dev, "acme/app", "latest", "b").await;
    assert_eq!(s, 403);
    let config = b"{\"seed\":\"b\"}".to_vec();
    let m = image_manifest(&config, &[b"layer-b"]);
    let r = req(
        c,
        reqwest::Method::PUT,
        &format!("{u}/v2/acme/app/manifests/latest"),
        &dev,
    )
    .header("content-type", OCI_MANIFEST)
    .body(m)
    .send()
    .await
    .unwrap();
    let msg = expect_error(r, 403, "DENIED").await;
    assert_eq!(
        msg,
        "tag \"latest\" is protected (rule \"latest\" on acme): only a namespace admin may move it"
    );
    let r = req(
        c,
        reqwest::Method::GET,
        &format!("{u}/v2/acme/app/manifests/latest"),
        &dev,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(header(&r, "docker-content-digest"), Some(first.clone()));

    // The admin's token limited to pull, push and delete is no namespace
    // admin: it deletes an ordinary tag, not the protected one, nor the
    // manifest carrying it.
    let (_, token) = f.token("boss", &["pull", "push", "delete"], &[]).await;
    let scoped = basic("boss", &token);
    let (s, _) = f.push(&scoped, "acme/app", "feature", "c").await;
    assert_eq!(s, 201);
    let r = req(
        c,
        reqwest::Method::DELETE,
        &format!("{u}/v2/acme/app/manifests/feature"),
        &scoped,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 202);
    for reference in ["latest", first.as_str()] {
        let r = req(
            c,
            reqwest::Method::DELETE,
            &format!("{u}/v2/acme/app/manifests/{reference}"),
            &scoped,
        )
        .send()
        .await
        .unwrap();
        let msg = expect_error(r, 403, "DENIED").await;
        assert!(
            msg.contains("only a namespace admin may delete it"),
            "{msg}"
        );
    }

    // The namespace admin (and the site admin) may move and delete it.
    let (s, _) = f.push(&boss, "acme/app", "latest", "b").await;
    assert_eq!(s, 201);
    let r = req(
        c,
        reqwest::Method::DELETE,
        &format!("{u}/v2/acme/app/manifests/latest"),
        &admin(),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 202);
}
