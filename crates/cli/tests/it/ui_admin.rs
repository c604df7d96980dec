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
