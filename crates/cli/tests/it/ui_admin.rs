//! The web UI's admin pages against a real `berth serve --auth token`,
//! held to the API's rules: the audit log with its filters, for site
//! admins, and for a namespace's admins the events of their namespace
//! only.

use reqwest::StatusCode;

use crate::auth::{admin, Fixture};
use crate::common::ADMIN_PASSWORD;
use crate::ui::Browser;

#[tokio::test]
async fn the_audit_log_filters_and_keeps_to_the_apis_rules() {
    let f = Fixture::start("").await;
    let bob = f.user("bob").await;
    let (s, _) = f.push(&admin(), "admin/app", "v1", "a").await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = f.push(&bob, "bob/tool", "v1", "b").await;
    assert_eq!(s, StatusCode::CREATED);

    // Signed out: the sign-in page.
    let r = Browser::new(&f.url()).get("/ui/admin/audit").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location(), "/ui/login");

    let mut a = Browser::new(&f.url());
    a.sign_in("admin", ADMIN_PASSWORD).await;
    let r = a.get("/ui/admin/audit").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("<code>push</code>"), "{}", r.body);
    assert!(r.body.contains("admin/app") && r.body.contains("bob/tool"));
    assert!(r.body.contains("<code>login</code>"), "the sign-in itself");
    assert!(r.body.contains(r#"href="/ui/admin/audit""#), "in the menu");
    // Filters: actor, action, repository prefix, day.
    let r = a.get("/ui/admin/audit?actor=bob&action=push").await;
    assert!(r.body.contains("bob/tool"), "{}", r.body);
    assert!(!r.body.contains("admin/app"), "{}", r.body);
    let r = a.get("/ui/admin/audit?repository=admin%2F").await;
    assert!(r.body.contains("admin/app") && !r.body.contains("bob/tool"));
    let r = a.get("/ui/admin/audit?since=2999-01-01").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("No events match."), "{}", r.body);
    let r = a.get("/ui/admin/audit?since=tomorrow").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("YYYY-MM-DD"), "{}", r.body);

    // Bob: not a site admin; his own namespace only, as in the API.
    let mut b = Browser::new(&f.url());
    b.sign_in("bob", &crate::ui::password(&bob)).await;
    let r = b.get("/ui/admin/audit").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(!r.body.contains("admin/app"));
    assert!(
        !r.body.contains(r#"href="/ui/admin/audit""#),
        "not in his menu"
    );
    let r = b.get("/ui/admin/audit?repository=admin%2F").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(!r.body.contains("admin/app"));
    let r = b.get("/ui/admin/audit?repository=bob%2F").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("bob/tool") && !r.body.contains("admin/app"));
    let api =
        f.c.get(format!("{}/api/v1/audit?repository=admin/", f.url()))
            .basic_auth("bob", Some(crate::ui::password(&bob)))
            .send()
            .await
            .unwrap();
    assert_eq!(api.status(), StatusCode::FORBIDDEN, "the API agrees");
}

/// The audit events of `action` as the API lists them, as text.
async fn audit_text(f: &Fixture, action: &str) -> String {
    let r =
        f.c.get(format!("{}/api/v1/audit?action={action}", f.url()))
            .basic_auth("admin", Some(ADMIN_PASSWORD))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.text().await.unwrap()
}

/// Whether `user` signs in to the API with `password`.
async fn api_sign_in(f: &Fixture, user: &str, password: &str) -> StatusCode {
    f.c.get(format!("{}/api/v1/users/{user}", f.url()))
        .basic_auth(user, Some(password))
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn the_users_page_manages_accounts_with_the_apis_rules() {
    let f = Fixture::start("").await;
    let bob = f.user("bob").await;
    let mut a = Browser::new(&f.url());
    a.sign_in("admin", ADMIN_PASSWORD).await;
    let page = a.get("/ui/admin/users").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("Create the user"), "{}", page.body);
    let csrf = page.field("csrf");

    // Created with a password and the site admin flag; signs in.
    let r = a
        .post(
            "/ui/admin/users",
            &[
                ("csrf", &csrf),
                ("action", "create"),
                ("name", "carol"),
                ("password", "carol-secret-1"),
                ("site_admin", "yes"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("User carol created"), "{}", r.body);
    assert_eq!(
        api_sign_in(&f, "carol", "carol-secret-1").await,
        StatusCode::OK
    );
    let carol = f.auth.user("carol").await.unwrap();
    assert!(carol.site_admin);
    assert!(audit_text(&f, "permission.change").await.contains("carol"));

    // The same name again: refused in place, saying what to do.
    let r = a
        .post(
            "/ui/admin/users",
            &[
                ("csrf", &csrf),
                ("action", "create"),
                ("name", "carol"),
                ("password", "another-secret"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert!(
        r.body
            .contains("is taken by a user or organisation: choose another name"),
        "{}",
        r.body
    );
    assert!(r.body.contains(r#"role="alert""#));
    assert_eq!(
        api_sign_in(&f, "carol", "carol-secret-1").await,
        StatusCode::OK,
        "the first carol is untouched"
    );
    // An invalid name and a short password: 400 with the API's reasons.
    let r = a
        .post(
            "/ui/admin/users",
            &[
                ("csrf", &csrf),
                ("action", "create"),
                ("name", "Not A Name"),
                ("password", "long-enough-1"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    let r = a
        .post(
            "/ui/admin/users",
            &[
                ("csrf", &csrf),
                ("action", "create"),
                ("name", "dave"),
                ("password", "short"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.body.contains("at least 8 characters"), "{}", r.body);
    assert!(f.auth.user("dave").await.is_err(), "nothing half-made");

    // No password given: one is generated and shown once; it works.
    let r = a
        .post(
            "/ui/admin/users",
            &[
                ("csrf", &csrf),
                ("action", "create"),
                ("name", "dave"),
                ("password", ""),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let start = r.body.find(r#"id="new-password">"#).expect("shown") + 18;
    let generated = &r.body[start..start + r.body[start..].find('<').unwrap()];
    assert_eq!(api_sign_in(&f, "dave", generated).await, StatusCode::OK);
    assert!(!a.get("/ui/admin/users").await.body.contains(generated));

    // Disabled: signs in no more; enabled again: does.
    let r = a
        .post(
            "/ui/admin/users",
            &[("csrf", &csrf), ("action", "disable"), ("name", "bob")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("bob is disabled"), "{}", r.body);
    let bob_password = crate::ui::password(&bob);
    assert_eq!(
        api_sign_in(&f, "bob", &bob_password).await,
        StatusCode::UNAUTHORIZED
    );
    a.post(
        "/ui/admin/users",
        &[("csrf", &csrf), ("action", "enable"), ("name", "bob")],
    )
    .await;
    assert_eq!(api_sign_in(&f, "bob", &bob_password).await, StatusCode::OK);

    // A new password for dave: the old one stops working.
    let r = a
        .post(
            "/ui/admin/users",
            &[("csrf", &csrf), ("action", "password"), ("name", "dave")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        api_sign_in(&f, "dave", generated).await,
        StatusCode::UNAUTHORIZED
    );

    // Nobody disables or deletes themselves (not offered, and refused).
    assert!(page
        .body
        .contains("Another site administrator changes your own account."));
    let r = a
        .post(
            "/ui/admin/users",
            &[("csrf", &csrf), ("action", "disable"), ("name", "admin")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(
        r.body.contains("ask another site administrator"),
        "{}",
        r.body
    );
    // Deleted: gone.
    let r = a
        .post(
            "/ui/admin/users",
            &[("csrf", &csrf), ("action", "delete"), ("name", "dave")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(f.auth.user("dave").await.is_err());

    // Without the session's CSRF secret: refused before anything is done.
    let r = a
        .post(
            "/ui/admin/users",
            &[
                ("action", "create"),
                ("name", "eve"),
                ("password", "eve-secret-12"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(r.body.contains("Form refused"), "{}", r.body);
    let r = a
        .post(
            "/ui/admin/users",
            &[
                ("csrf", "0123456789abcdef"),
                ("action", "disable"),
                ("name", "bob"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(f.auth.user("eve").await.is_err());
    assert!(f.auth.user("bob").await.unwrap().disabled_at.is_none());

    // Bob, not a site admin: the page and its form are refused, with his
    // own valid CSRF secret too.
    let mut b = Browser::new(&f.url());
    b.sign_in("bob", &bob_password).await;
    let r = b.get("/ui/admin/users").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(!r.body.contains("carol"));
    assert!(
        !r.body.contains(r#"href="/ui/admin/users""#),
        "not in his menu"
    );
    let his = b.csrf().await;
    let r = b
        .post(
            "/ui/admin/users",
            &[
                ("csrf", &his),
                ("action", "create"),
                ("name", "mallory"),
                ("password", "mallory-secret"),
                ("site_admin", "yes"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(r.body.contains("site administrator"), "{}", r.body);
    assert!(f.auth.user("mallory").await.is_err());
    let r = b
        .post(
            "/ui/admin/users",
            &[("csrf", &his), ("action", "grant-admin"), ("name", "bob")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(!f.auth.user("bob").await.unwrap().site_admin);
}

#[tokio::test]
async fn the_organisations_page_lists_and_founds_organisations() {
    let f = Fixture::start("").await;
    let bob = f.user("bob").await;
    let mut a = Browser::new(&f.url());
    a.sign_in("admin", ADMIN_PASSWORD).await;
    let page = a.get("/ui/admin/orgs").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("No organisations yet."), "{}", page.body);
    assert!(
        page.body.contains(r#"href="/ui/admin/orgs""#),
        "in the menu"
    );
    let csrf = page.field("csrf");

    let r = a
        .post(
            "/ui/admin/orgs",
            &[("csrf", &csrf), ("name", "acme"), ("visibility", "public")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.location(), "/ui/org/acme");
    let org = f.auth.org("acme").await.unwrap();
    assert_eq!(org.visibility.as_str(), "public");
    let members = f.auth.members("acme").await.unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].member, "admin", "the founder is its admin");
    assert!(audit_text(&f, "permission.change").await.contains("acme"));
    let (s, _) = f.push(&admin(), "acme/app", "v1", "a").await;
    assert_eq!(s, StatusCode::CREATED);

    let list = a.get("/ui/admin/orgs").await;
    assert!(
        list.body.contains(r#"href="/ui/org/acme""#),
        "{}",
        list.body
    );
    assert!(list.body.contains(r#"href="/ui/ns/acme""#), "{}", list.body);
    let row = &list.body[list.body.find(r#"href="/ui/org/acme""#).unwrap()..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(row.contains(r#"<td class="num">1</td>"#), "{row}");
    assert!(row.contains("public"), "{row}");
    assert!(
        !row.contains(r#"<td class="num">0 B</td>"#),
        "stored bytes: {row}"
    );

    // Taken names: a user's, an organisation's; refused in place.
    for taken in ["acme", "bob"] {
        let r = a
            .post("/ui/admin/orgs", &[("csrf", &csrf), ("name", taken)])
            .await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
        assert!(r.body.contains("choose another name"), "{}", r.body);
        assert!(r.body.contains(r#"role="alert""#));
    }
    let r = a
        .post("/ui/admin/orgs", &[("csrf", &csrf), ("name", "Bad Name")])
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    // Forged.
    let r = a.post("/ui/admin/orgs", &[("name", "forged")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(f.auth.org("forged").await.is_err());

    // Bob: refused the page and the form.
    let mut b = Browser::new(&f.url());
    b.sign_in("bob", &crate::ui::password(&bob)).await;
    let r = b.get("/ui/admin/orgs").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(!r.body.contains("acme"));
    let his = b.csrf().await;
    let r = b
        .post("/ui/admin/orgs", &[("csrf", &his), ("name", "bobs")])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(f.auth.org("bobs").await.is_err());
}
