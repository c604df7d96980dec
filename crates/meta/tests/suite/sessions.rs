//! Web UI sessions, on both engines: stored by the hash of their id,
//! touched, pruned by time, ended with their account's other sessions.

use berth_meta::accounts::{NewUser, Visibility};
use berth_meta::audit::Actor;
use berth_meta::sessions::NewUiSession;
use berth_meta::Meta;

pub async fn run(meta: &Meta) {
    let a = Actor {
        name: "admin".into(),
        ip: None,
        at: 1_000,
    };
    assert!(meta
        .create_user(
            &NewUser {
                name: "sessy".into(),
                password_hash: Some("x".into()),
                site_admin: false,
                visibility: Visibility::Private,
            },
            &a,
        )
        .await
        .unwrap());
    let new = |id: &str, created_at: i64, expires_at: i64| NewUiSession {
        id_hash: id.into(),
        account: "sessy".into(),
        token_id: None,
        csrf_secret: format!("csrf-{id}"),
        created_at,
        expires_at,
    };
    assert!(meta
        .create_ui_session(&new("h1", 1_000, 50_000))
        .await
        .unwrap());
    assert!(meta
        .create_ui_session(&new("h2", 1_000, 2_000))
        .await
        .unwrap());
    assert!(meta
        .create_ui_session(&new("h3", 1_000, 50_000))
        .await
        .unwrap());
    let mut ghost = new("h4", 1_000, 50_000);
    ghost.account = "nobody".into();
    assert!(
        !meta.create_ui_session(&ghost).await.unwrap(),
        "no such account"
    );

    let s = meta.ui_session("h1").await.unwrap().unwrap();
    assert_eq!(
        (s.account.as_str(), s.csrf_secret.as_str()),
        ("sessy", "csrf-h1")
    );
    assert_eq!(
        (s.created_at, s.last_seen_at, s.expires_at),
        (1_000, 1_000, 50_000)
    );
    meta.touch_ui_session("h1", 9_000).await.unwrap();
    meta.touch_ui_session("h1", 8_000).await.unwrap();
    assert_eq!(
        meta.ui_session("h1").await.unwrap().unwrap().last_seen_at,
        9_000
    );

    // At 5,000 with sessions idle since before 4,000 over: h2 by its
    // expiry, h3 by idleness; h1 was seen at 9,000.
    assert_eq!(meta.prune_ui_sessions(5_000, 4_000).await.unwrap(), 2);
    assert!(meta.ui_session("h2").await.unwrap().is_none());
    assert!(meta.ui_session("h3").await.unwrap().is_none());
    assert!(meta.delete_ui_session("h1").await.unwrap());
    assert!(!meta.delete_ui_session("h1").await.unwrap());

    // Ending an account's sessions (a password change) ends these too.
    assert!(meta
        .create_ui_session(&new("h5", 1_000, 50_000))
        .await
        .unwrap());
    assert_eq!(meta.revoke_sessions("sessy", &a).await.unwrap(), Some(1));
    assert!(meta.ui_session("h5").await.unwrap().is_none());
}
