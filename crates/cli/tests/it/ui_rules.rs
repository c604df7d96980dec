//! The web UI's namespace rules page (`/ui/ns/NS/settings`) and storage
//! overview (`/ui/admin/usage`) against a real `berth serve --auth token`,
//! held to the API's rules: members read, namespace admins change the
//! retention policy and the tag rules, site admins the quota; every form
//! carries the session's CSRF secret; what the page saves, the API reads.

use reqwest::StatusCode;

use crate::auth::{admin, req, Fixture};
use crate::common::ADMIN_PASSWORD;
use crate::ui::{password, Browser};

/// `GET path` of the management API as the site admin, as JSON.
async fn api_json(f: &Fixture, path: &str) -> serde_json::Value {
    req(
        &f.c,
        reqwest::Method::GET,
        &format!("{}{path}", f.url()),
        &admin(),
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap()
}

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
    let api: serde_json::Value = api_json(&f, "/api/v1/namespaces/admin/retention").await;
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
    let rules: serde_json::Value = api_json(&f, "/api/v1/namespaces/admin/tag-rules").await;
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
    let q: serde_json::Value = api_json(&f, "/api/v1/namespaces/admin/quota").await;
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

#[tokio::test]
async fn a_long_plan_is_shown_a_page_at_a_time() {
    let f = Fixture::start("").await;
    // 27 images under 27 tags: keeping the newest deletes 26 tags and 26
    // images, 52 deletions, two pages of 50.
    for i in 0..27 {
        let (s, _) = f
            .push(
                &admin(),
                "admin/many",
                &format!("t{i:02}"),
                &format!("s{i}"),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED);
    }
    let mut a = Browser::new(&f.url());
    a.sign_in("admin", ADMIN_PASSWORD).await;
    let page = a.get("/ui/ns/admin/settings").await;
    let csrf = page.field("csrf");
    let rows = |body: &str| body.matches("<td class=\"mono\">").count();
    let r = a
        .post(
            "/ui/ns/admin/retention",
            &[("csrf", &csrf), ("policy", KEEP_ONE), ("action", "preview")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("26 tags and 26 images"), "{}", r.body);
    assert!(
        r.body.contains("Deletions 1–50 of 52 (page 1 of 2)"),
        "{}",
        r.body
    );
    assert_eq!(rows(&r.body), 50);
    assert!(r
        .body
        .contains(r#"form="retention-form" name="plan_page" value="2""#));
    assert!(!r.body.contains("← Previous"));
    // "Next" posts the editor's form with the page: the same plan, its
    // last two deletions (images, after the tags).
    for path in ["/ui/ns/admin/retention", "/ui/ns/admin/retention/preview"] {
        let r = a
            .post(
                path,
                &[("csrf", &csrf), ("policy", KEEP_ONE), ("plan_page", "2")],
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
        assert!(r.body.contains("26 tags and 26 images"), "{}", r.body);
        assert!(
            r.body.contains("Deletions 51–52 of 52 (page 2 of 2)"),
            "{}",
            r.body
        );
        assert_eq!(rows(&r.body), 2, "{}", r.body);
        assert_eq!(r.body.matches("<td class=\"mono\">image ").count(), 2);
        assert!(r.body.contains(r#"name="plan_page" value="1""#));
        assert!(!r.body.contains("Next →"));
    }
    // Nothing was saved.
    let page = a.get("/ui/ns/admin/settings").await;
    assert!(page.body.contains("No policy"), "{}", page.body);
}

/// The members of `org` as the API lists them: (member, role).
async fn api_members(f: &Fixture, org: &str) -> Vec<(String, String)> {
    let v: serde_json::Value = api_json(f, &format!("/api/v1/orgs/{org}/members")).await;
    v.as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["member"].as_str().unwrap().to_owned(),
                m["role"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn organisations_and_robots_are_managed_as_the_api_allows() {
    let f = Fixture::start("").await;
    let bob = f.user("bob").await;
    let carol = f.user("carol").await;
    let r = req(
        &f.c,
        reqwest::Method::POST,
        &format!("{}/api/v1/orgs", f.url()),
        &admin(),
    )
    .json(&serde_json::json!({ "name": "acme" }))
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = req(
        &f.c,
        reqwest::Method::PUT,
        &format!("{}/api/v1/orgs/acme/members/bob", f.url()),
        &admin(),
    )
    .json(&serde_json::json!({ "role": "read" }))
    .send()
    .await
    .unwrap();
    assert!(r.status().is_success(), "{}", r.status());

    // A reader sees the members, manages nothing, sees no robots.
    let mut b = Browser::new(&f.url());
    b.sign_in("bob", &password(&bob)).await;
    let page = b.get("/ui/org/acme").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("bob") && !page.body.contains("Robots"));
    assert!(page.body.contains("Only the organisation's admins"));
    let csrf = page.field("csrf");
    let r = b
        .post(
            "/ui/org/acme",
            &[
                ("csrf", &csrf),
                ("action", "member"),
                ("member", "bob"),
                ("role", "admin"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(r.body.contains("ask one of its admins"), "{}", r.body);
    assert_eq!(
        api_members(&f, "acme").await,
        [
            ("admin".into(), "admin".into()),
            ("bob".into(), "read".into())
        ],
        "the founder and bob"
    );
    // No member: 403; a user's namespace is no organisation: 404.
    let mut c = Browser::new(&f.url());
    c.sign_in("carol", &password(&carol)).await;
    assert_eq!(c.get("/ui/org/acme").await.status, StatusCode::FORBIDDEN);
    assert_eq!(c.get("/ui/org/carol").await.status, StatusCode::NOT_FOUND);

    // The site admin: roles, members, a robot and its token, which pushes.
    let mut a = Browser::new(&f.url());
    a.sign_in("admin", ADMIN_PASSWORD).await;
    let page = a.get("/ui/org/acme").await;
    assert!(page.body.contains("No robots yet."), "{}", page.body);
    let csrf = page.field("csrf");
    let post = |fields: Vec<(&'static str, &'static str)>| {
        let mut v = vec![("csrf", csrf.as_str())];
        v.extend(fields);
        v
    };
    let r = a
        .post(
            "/ui/org/acme",
            &post(vec![
                ("action", "member"),
                ("member", "bob"),
                ("role", "write"),
            ]),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let r = a
        .post(
            "/ui/org/acme",
            &post(vec![
                ("action", "member"),
                ("member", "carol"),
                ("role", "read"),
            ]),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(
        api_members(&f, "acme").await,
        [
            ("admin".into(), "admin".into()),
            ("bob".into(), "write".into()),
            ("carol".into(), "read".into())
        ]
    );
    let r = a
        .post(
            "/ui/org/acme",
            &post(vec![
                ("action", "member"),
                ("member", "nobody"),
                ("role", "read"),
            ]),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    let r = a
        .post(
            "/ui/org/acme",
            &post(vec![("action", "remove"), ("member", "carol")]),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(
        api_members(&f, "acme").await,
        [
            ("admin".into(), "admin".into()),
            ("bob".into(), "write".into())
        ]
    );

    let r = a
        .post(
            "/ui/org/acme",
            &post(vec![("action", "robot"), ("name", "ci"), ("role", "write")]),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let page = a.get("/ui/org/acme").await;
    assert!(page.body.contains("acme+ci"), "{}", page.body);
    let r = a
        .post(
            "/ui/org/acme",
            &post(vec![("action", "token"), ("robot", "acme+ci")]),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let start = r.body.find("id=\"new-token\">").unwrap() + "id=\"new-token\">".len();
    let token = &r.body[start..start + r.body[start..].find('<').unwrap()];
    assert!(token.starts_with("berth_"), "{token}");
    let robot = crate::auth::basic("acme+ci", token);
    assert_eq!(
        f.push(&robot, "acme/app", "v1", "r").await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        f.push(&robot, "bob/app", "v1", "r").await.0,
        StatusCode::FORBIDDEN,
        "held to its organisation"
    );
    // A forged form: nothing done.
    let r = a
        .post("/ui/org/acme", &[("action", "remove"), ("member", "bob")])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(
        api_members(&f, "acme")
            .await
            .contains(&("bob".into(), "write".into())),
        "bob is still a member"
    );
}

/// With authentication off (`--auth none`) nobody signs in, yet the forms
/// work: each carries the browser's form secret (the `berth_form` cookie,
/// set on its first page), and a form posted without it, as another site
/// would make a browser post it, is refused.
#[tokio::test]
async fn an_open_registry_s_forms_carry_the_browser_s_form_secret() {
    let b = crate::common::Berth::start();
    let c = crate::oci::client();
    for (tag, seed) in [("v1", "a"), ("v2", "b")] {
        crate::oci::push_image(&c, &b.url(), "acme/app", tag, seed).await;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let mut browser = Browser::new(&b.url());
    let page = browser.get("/ui/ns/acme/settings").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let cookie = page
        .set_cookie("berth_form")
        .expect("the first page gives the browser a form secret");
    for part in ["HttpOnly", "SameSite=Lax", "Path=/ui"] {
        assert!(cookie.contains(part), "{cookie}");
    }
    let secret = page.field("csrf");
    assert!(secret.len() >= 32, "{secret:?}");
    assert!(
        cookie.starts_with(&format!("berth_form={secret};")),
        "the forms carry the cookie's value: {cookie}"
    );
    let again = browser.get("/ui/ns/acme/settings").await;
    assert!(again.set_cookie("berth_form").is_none(), "given once");
    assert_eq!(again.field("csrf"), secret);

    // The preview, then saving: what the API then reads.
    let r = browser
        .post(
            "/ui/ns/acme/retention/preview",
            &[("csrf", &secret), ("policy", KEEP_ONE)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(
        r.body.contains("tag v1") && !r.body.contains("tag v2"),
        "{}",
        r.body
    );
    let r = browser
        .post(
            "/ui/ns/acme/retention",
            &[("csrf", &secret), ("policy", KEEP_ONE), ("action", "save")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let stored: serde_json::Value = c
        .get(format!("{}/api/v1/namespaces/acme/retention", b.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stored["policy"], KEEP_ONE, "{stored}");

    // Forged: the right field without the cookie (another site's form),
    // a wrong field with it, no field: refused, nothing done.
    let mut other_site = Browser::new(&b.url());
    let remove = [("csrf", secret.as_str()), ("action", "remove")];
    let r = other_site.post("/ui/ns/acme/retention", &remove).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(r.body.contains("Form refused"), "{}", r.body);
    let wrong = "x".repeat(secret.len());
    for fields in [
        vec![("csrf", wrong.as_str()), ("action", "remove")],
        vec![("action", "remove")],
    ] {
        let r = browser.post("/ui/ns/acme/retention", &fields).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}: {}", fields, r.body);
    }
    let kept = c
        .get(format!("{}/api/v1/namespaces/acme/retention", b.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(kept.status(), StatusCode::OK, "the policy is still there");
}
