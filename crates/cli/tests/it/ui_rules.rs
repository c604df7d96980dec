//! The web UI's namespace rules page (`/ui/ns/NS/settings`) and storage
//! overview (`/ui/admin/usage`) against a real `berth serve --auth token`,
//! held to the API's rules: members read, namespace admins change the
//! retention policy and the tag rules, site admins the quota; every form
//! carries the session's CSRF secret; what the page saves, the API reads.

use reqwest::StatusCode;

use crate::auth::{admin, req, Fixture};
use crate::common::ADMIN_PASSWORD;
use crate::ui::{password, Browser};

const KEEP_ONE: &str = "[[rule]]\nname = \"newest-only\"\ntags = [\"*\"]\nkeep = { last = 1 }\n";

#[tokio::test]
async fn namespace_rules_are_edited_as_the_api_allows() {
    let f = Fixture::start("").await;
    let bob = f.user("bob").await;
    for (tag, seed) in [("v1", "a"), ("v2", "b"), ("v3", "c")] {
        let (s, _) = f.push(&admin(), "admin/app", tag, seed).await;
        assert_eq!(s, StatusCode::CREATED);
        // Distinct push times, so "the newest" is v3.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let (s, _) = f.push(&bob, "bob/tool", "v1", "d").await;
    assert_eq!(s, StatusCode::CREATED);

    // Signed out: sign in first.
    let r = Browser::new(&f.url()).get("/ui/ns/admin/settings").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location(), "/ui/login");

    // Bob is no member of `admin`: 403, saying who may; so does the API.
    let mut b = Browser::new(&f.url());
    b.sign_in("bob", &password(&bob)).await;
    let r = b.get("/ui/ns/admin/settings").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(r.body.contains("Only members of admin"), "{}", r.body);
    assert!(!r.body.contains("v1"), "nothing of the namespace shows");
    let api = req(
        &f.c,
        reqwest::Method::GET,
        &format!("{}/api/v1/namespaces/admin/tag-rules", f.url()),
        &bob,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(api.status(), StatusCode::FORBIDDEN, "the API agrees");

    let mut a = Browser::new(&f.url());
    a.sign_in("admin", ADMIN_PASSWORD).await;
    let page = a.get("/ui/ns/admin/settings").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("No policy"), "{}", page.body);
    assert!(
        page.body.contains("keep-last-10"),
        "an example to start from"
    );
    let csrf = page.field("csrf");
    let ns_page = a.get("/ui/ns/admin").await;
    assert!(ns_page.body.contains(r#"href="/ui/ns/admin/settings""#));

    // The preview: what the policy in the editor would delete, and why,
    // without saving it.
    let r = a
        .post(
            "/ui/ns/admin/retention",
            &[("csrf", &csrf), ("policy", KEEP_ONE), ("action", "preview")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(
        r.body.contains("tag v1") && r.body.contains("tag v2"),
        "{}",
        r.body
    );
    assert!(!r.body.contains("tag v3"), "the newest is kept: {}", r.body);
    assert!(r.body.contains("newest-only"), "the rule responsible");
    assert!(r.body.contains("No policy"), "not saved");
    // The script's fragment: the plan alone.
    let r = a
        .post(
            "/ui/ns/admin/retention/preview",
            &[("csrf", &csrf), ("policy", KEEP_ONE)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.starts_with("<h3"), "{}", r.body);
    assert!(r.body.contains("tag v2"));
    let r = a
        .post(
            "/ui/ns/admin/retention/preview",
            &[("csrf", &csrf), ("policy", "[[rule]]\nkeep = 3\n")],
        )
        .await;
    assert!(r.body.contains("Not a valid policy"), "{}", r.body);
    // Forged: no CSRF secret, nothing done.
    for (path, fields) in [
        (
            "/ui/ns/admin/retention",
            vec![("policy", KEEP_ONE), ("action", "save")],
        ),
        ("/ui/ns/admin/retention/preview", vec![("policy", KEEP_ONE)]),
        (
            "/ui/ns/admin/tag-rules",
            vec![("pattern", "v*"), ("kind", "protected")],
        ),
        ("/ui/ns/admin/quota", vec![("limit", "1"), ("unit", "GB")]),
    ] {
        let r = a.post(path, &fields).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}");
        assert!(r.body.contains("Form refused"), "{path}: {}", r.body);
    }

    // Saving: an invalid policy is refused where it is typed; a valid one
    // is what the API then reads.
    let r = a
        .post(
            "/ui/ns/admin/retention",
            &[
                ("csrf", &csrf),
                ("policy", "[[rule]]\nkeep = 3\n"),
                ("action", "save"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.body.contains("keep = 3"), "the text stays in the editor");
    let r = a
        .post(
            "/ui/ns/admin/retention",
            &[("csrf", &csrf), ("policy", KEEP_ONE), ("action", "save")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let api: serde_json::Value = req(
        &f.c,
        reqwest::Method::GET,
        &format!("{}/api/v1/namespaces/admin/retention", f.url()),
        &admin(),
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(api["policy"], KEEP_ONE);
    let page = a.get("/ui/ns/admin/settings").await;
    assert!(page.body.contains("newest-only") && page.body.contains("tag v1"));

    // A protected tag: added here, listed by the API, kept by the plan.
    let r = a
        .post(
            "/ui/ns/admin/tag-rules",
            &[
                ("csrf", &csrf),
                ("action", "add"),
                ("pattern", "v1"),
                ("kind", "protected"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let rules: serde_json::Value = req(
        &f.c,
        reqwest::Method::GET,
        &format!("{}/api/v1/namespaces/admin/tag-rules", f.url()),
        &admin(),
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(rules["rules"][0]["pattern"], "v1");
    assert_eq!(rules["rules"][0]["kind"], "protected");
    let page = a.get("/ui/ns/admin/settings").await;
    assert!(!page.body.contains("tag v1<"), "protected: {}", page.body);
    assert!(page.body.contains("tag v2"));
    let r = a
        .post(
            "/ui/ns/admin/tag-rules",
            &[
                ("csrf", &csrf),
                ("action", "add"),
                ("pattern", "v1"),
                ("kind", "sticky"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("protected or immutable"), "{}", r.body);
    let id = rules["rules"][0]["id"].to_string();
    let r = a
        .post(
            "/ui/ns/admin/tag-rules",
            &[("csrf", &csrf), ("action", "remove"), ("id", &id)],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let page = a.get("/ui/ns/admin/settings").await;
    assert!(page.body.contains("No tag rules."), "{}", page.body);

    // The quota: a site admin's, in decimal units.
    let r = a
        .post(
            "/ui/ns/admin/quota",
            &[
                ("csrf", &csrf),
                ("limit", "1.5"),
                ("unit", "GB"),
                ("action", "set"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let q: serde_json::Value = req(
        &f.c,
        reqwest::Method::GET,
        &format!("{}/api/v1/namespaces/admin/quota", f.url()),
        &admin(),
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(q["limit_bytes"], 1_500_000_000u64);
    let r = a
        .post(
            "/ui/ns/admin/quota",
            &[
                ("csrf", &csrf),
                ("limit", "lots"),
                ("unit", "GB"),
                ("action", "set"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("not a positive number"), "{}", r.body);

    // Bob in his own namespace: its admin, not a site admin.
    let page = b.get("/ui/ns/bob/settings").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("Save the policy"));
    assert!(page.body.contains("Only site admins set quotas."));
    let bcsrf = page.field("csrf");
    let r = b
        .post(
            "/ui/ns/bob/quota",
            &[
                ("csrf", &bcsrf),
                ("limit", "100"),
                ("unit", "TB"),
                ("action", "set"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(
        r.body.contains("Only a site admin sets quotas"),
        "{}",
        r.body
    );
    let r = b
        .post(
            "/ui/ns/admin/retention",
            &[("csrf", &bcsrf), ("policy", KEEP_ONE), ("action", "remove")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "not his namespace");

    // The storage overview: site admins only.
    let r = a.get("/ui/admin/usage").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains(r#"href="/ui/ns/admin""#) && r.body.contains(r#"href="/ui/ns/bob""#));
    assert!(r.body.contains("pushed"));
    assert!(r.body.contains("1.5 GB"), "the quota: {}", r.body);
    let r = b.get("/ui/admin/usage").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(!r.body.contains("/ui/ns/admin"), "{}", r.body);
}
