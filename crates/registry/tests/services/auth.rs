//! The authority over a real SQLite database: logins, tokens, decisions,
//! registry tokens, the filtered catalog.

use std::sync::Arc;

use berth_meta::accounts::{Role, Visibility};
use berth_meta::audit::{action, AuditFilter};
use berth_meta::Meta;
use berth_registry::auth::scope::{self, Scope};
use berth_registry::auth::{
    Access, Action, AuthSettings, Authority, Bootstrap, Credentials, Decision, RateLimit,
    TokenRequest,
};
use berth_registry::{Caller, Error, Registry, Settings};
use berth_store::FsStore;

fn basic(user: &str, password: &str) -> Credentials {
    Credentials::Basic {
        username: user.into(),
        password: password.into(),
    }
}

fn ip() -> Option<std::net::IpAddr> {
    Some("192.0.2.7".parse().unwrap())
}

async fn setup(dir: &std::path::Path, settings: AuthSettings) -> (Meta, Authority) {
    let meta = Meta::open_sqlite(&dir.join("berth.db")).await.unwrap();
    let auth = Authority::new(meta.clone(), settings).await.unwrap();
    (meta, auth)
}

fn pull_push() -> Access {
    Access::of(&[Action::Pull, Action::Push])
}

#[tokio::test]
async fn logins_tokens_and_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let (meta, auth) = setup(dir.path(), AuthSettings::default()).await;
    let root = Caller::system("root");

    // Bootstrap: a generated password, once.
    let Bootstrap::Generated(generated) = auth.bootstrap_admin(None).await.unwrap() else {
        panic!("a generated password")
    };
    assert_eq!(generated.len(), 24);
    assert_eq!(
        auth.bootstrap_admin(Some("ignored-now")).await.unwrap(),
        Bootstrap::Existed
    );
    let admin = auth
        .authenticate(&basic("admin", &generated), ip(), true)
        .await
        .unwrap();
    assert!(admin.is_site_admin());

    assert!(auth
        .create_user("alice", Some("alice-password"), false, None, &root)
        .await
        .unwrap());
    assert!(auth
        .create_user("bob", Some("bob-password"), false, None, &root)
        .await
        .unwrap());
    assert!(meta
        .create_org("acme", Visibility::Public, None, &root.actor())
        .await
        .unwrap());
    assert!(meta
        .set_member("acme", "bob", Role::Write, &root.actor())
        .await
        .unwrap());
    assert!(matches!(
        auth.create_user("Bad/Name", None, false, None, &root).await,
        Err(Error::InvalidParameter(_))
    ));

    // Passwords: right, wrong, unknown user; all failures audited.
    let alice = auth
        .authenticate(&basic("alice", "alice-password"), ip(), false)
        .await
        .unwrap();
    assert_eq!(alice.name(), Some("alice"));
    assert!(!alice.is_site_admin());
    for (u, p) in [("alice", "wrong-password"), ("nobody", "whatever-pw")] {
        let e = auth
            .authenticate(&basic(u, p), ip(), false)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Unauthorized(_)), "{e:?}");
    }
    let failed = meta
        .audit_events(&AuditFilter {
            action: Some(action::LOGIN_FAILED.into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(failed.len(), 2);
    assert_eq!(failed[0].event.client_ip.as_deref(), Some("192.0.2.7"));
    assert_eq!(failed[0].event.actor, "alice");
    // Not an account's name (it may be a password): a keyed hash.
    assert!(failed[1].event.actor.starts_with("unknown-"), "{failed:?}");
    assert!(!failed[0]
        .event
        .detail
        .as_ref()
        .unwrap()
        .to_string()
        .contains("wrong-password"));

    // Decisions.
    let anon = auth
        .authenticate(&Credentials::None, ip(), false)
        .await
        .unwrap();
    assert_eq!(
        auth.decide(&anon, &super::n("acme/web"), Access::PULL)
            .await
            .unwrap(),
        Decision::Allow(Access::PULL)
    );
    assert_eq!(
        auth.decide(&anon, &super::n("alice/app"), Access::PULL)
            .await
            .unwrap(),
        Decision::Login
    );
    assert_eq!(
        auth.decide(&alice, &super::n("alice/app"), pull_push())
            .await
            .unwrap(),
        Decision::Allow(Access::ALL)
    );
    assert_eq!(
        auth.decide(&alice, &super::n("bob/app"), Access::PULL)
            .await
            .unwrap(),
        Decision::Deny
    );
    assert_eq!(
        auth.decide(&alice, &super::n("acme/web"), pull_push())
            .await
            .unwrap(),
        Decision::Deny
    );
    let bob = auth
        .authenticate(&basic("bob", "bob-password"), ip(), false)
        .await
        .unwrap();
    assert!(matches!(
        auth.decide(&bob, &super::n("acme/web"), pull_push())
            .await
            .unwrap(),
        Decision::Allow(_)
    ));
    assert_eq!(
        auth.decide(&bob, &super::n("acme/web"), Access::of(&[Action::Delete]))
            .await
            .unwrap(),
        Decision::Deny
    );
    // A role change applies at once (the cache follows the epoch).
    meta.set_member("acme", "bob", Role::Admin, &root.actor())
        .await
        .unwrap();
    assert_eq!(
        auth.decide(&bob, &super::n("acme/web"), Access::of(&[Action::Delete]))
            .await
            .unwrap(),
        Decision::Allow(Access::ALL)
    );
    // Visibility: a repository override beats its namespace.
    meta.set_repository_visibility(
        &super::n("acme/secret"),
        Some(Visibility::Private),
        &root.actor(),
    )
    .await
    .unwrap();
    assert_eq!(
        auth.decide(&anon, &super::n("acme/secret"), Access::PULL)
            .await
            .unwrap(),
        Decision::Login
    );
    assert_eq!(
        auth.decide(&anon, &super::n("unowned/x"), Access::PULL)
            .await
            .unwrap(),
        Decision::Login
    );

    // Access tokens: limits, revocation, expiry.
    let req = TokenRequest {
        name: "ci".into(),
        scopes: vec!["push".into()],
        patterns: vec!["alice/web-*".into()],
        expires_at: None,
    };
    let created = auth
        .create_token("alice", &req, &root)
        .await
        .unwrap()
        .unwrap();
    assert!(created.token.starts_with("berth_pat_"));
    assert!(auth
        .create_token("ghost", &req, &root)
        .await
        .unwrap()
        .is_none());
    let bad = TokenRequest {
        scopes: vec!["root".into()],
        ..req.clone()
    };
    assert!(auth.create_token("alice", &bad, &root).await.is_err());
    let pat = auth
        .authenticate(&basic("alice", &created.token), ip(), true)
        .await
        .unwrap();
    assert_eq!(pat.name(), Some("alice"));
    assert!(matches!(
        auth.decide(&pat, &super::n("alice/web-api"), pull_push())
            .await
            .unwrap(),
        Decision::Allow(_)
    ));
    assert_eq!(
        auth.decide(&pat, &super::n("alice/db"), Access::PULL)
            .await
            .unwrap(),
        Decision::Deny
    );
    let bearer = auth
        .authenticate(&Credentials::Bearer(created.token.clone()), ip(), false)
        .await
        .unwrap();
    assert_eq!(bearer, pat);
    // Its registry token holds only what was asked and allowed.
    let scopes =
        scope::parse_all(["repository:alice/web-api:pull,push,delete repository:alice/db:pull"]);
    let issued = auth.issue(&pat, &scopes).await.unwrap();
    assert_eq!(issued.scope, "repository:alice/web-api:pull,push");
    let jwt_id = auth
        .authenticate(&Credentials::Bearer(issued.token.clone()), ip(), false)
        .await
        .unwrap();
    assert!(matches!(
        auth.decide(&jwt_id, &super::n("alice/web-api"), pull_push())
            .await
            .unwrap(),
        Decision::Allow(_)
    ));
    assert_eq!(
        auth.decide(&jwt_id, &super::n("alice/web-other"), Access::PULL)
            .await
            .unwrap(),
        Decision::Scope,
        "allowed, but not by this registry token"
    );
    // last_used is written in batches.
    assert!(auth.flush_token_uses().await.unwrap() >= 1);
    assert!(meta
        .token(&created.record.id)
        .await
        .unwrap()
        .unwrap()
        .last_used_at
        .is_some());
    // Revocation ends the token and the registry tokens obtained with it.
    assert!(auth.revoke_token(&created.record.id, &root).await.unwrap());
    for c in [
        basic("alice", &created.token),
        Credentials::Bearer(issued.token.clone()),
    ] {
        assert!(matches!(
            auth.authenticate(&c, ip(), false).await,
            Err(Error::Unauthorized(_))
        ));
    }
    let expired = auth
        .create_token(
            "alice",
            &TokenRequest {
                expires_at: Some(1),
                ..req.clone()
            },
            &root,
        )
        .await
        .unwrap()
        .unwrap();
    assert!(auth
        .authenticate(&basic("x", &expired.token), ip(), false)
        .await
        .is_err());
    // A registry token verified (and cached) while its access token was
    // valid is refused once that access token expires, though the
    // registry token itself has not.
    let brief = auth
        .create_token(
            "alice",
            &TokenRequest {
                expires_at: Some(berth_meta::now_ms() + 2_000),
                ..req.clone()
            },
            &root,
        )
        .await
        .unwrap()
        .unwrap();
    let brief_id = auth
        .authenticate(&basic("alice", &brief.token), ip(), false)
        .await
        .unwrap();
    let brief_jwt = Credentials::Bearer(auth.issue(&brief_id, &scopes).await.unwrap().token);
    assert!(auth.authenticate(&brief_jwt, ip(), false).await.is_ok());
    tokio::time::sleep(std::time::Duration::from_millis(2_100)).await;
    assert!(matches!(
        auth.authenticate(&brief_jwt, ip(), false).await,
        Err(Error::Unauthorized(_))
    ));

    // Refresh tokens: only for password logins, usable like the password.
    assert!(auth.refresh_token(&pat).await.unwrap().is_none());
    let refresh = auth.refresh_token(&alice).await.unwrap().unwrap();
    assert!(refresh.starts_with("berth_refresh_"));
    let again = auth
        .authenticate(&Credentials::Bearer(refresh), ip(), true)
        .await
        .unwrap();
    assert_eq!(
        auth.decide(&again, &super::n("alice/db"), Access::ALL)
            .await
            .unwrap(),
        Decision::Allow(Access::ALL)
    );

    // Disabling an account ends its logins.
    meta.set_disabled("bob", true, &root.actor()).await.unwrap();
    assert!(auth
        .authenticate(&basic("bob", "bob-password"), ip(), false)
        .await
        .is_err());
    meta.close().await;
}

#[tokio::test]
async fn registry_tokens_are_shared_by_replicas_and_bound_to_their_service() {
    let dir = tempfile::tempdir().unwrap();
    let (meta, one) = setup(dir.path(), AuthSettings::default()).await;
    let two = Authority::new(meta.clone(), AuthSettings::default())
        .await
        .unwrap();
    let other = Authority::new(
        meta.clone(),
        AuthSettings {
            service: "another-registry".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let root = Caller::system("root");
    one.create_user("alice", Some("alice-password"), false, None, &root)
        .await
        .unwrap();
    let alice = one
        .authenticate(&basic("alice", "alice-password"), None, false)
        .await
        .unwrap();
    let issued = one
        .issue(
            &alice,
            &[Scope::Repository {
                name: super::n("alice/app"),
                access: Access::PULL,
            }],
        )
        .await
        .unwrap();
    let t = Credentials::Bearer(issued.token.clone());
    assert_eq!(
        two.authenticate(&t, None, false).await.unwrap().name(),
        Some("alice")
    );
    let e = other.authenticate(&t, None, false).await.unwrap_err();
    assert!(e.to_string().contains("another service"), "{e}");
    // A forged signature.
    let mut forged = issued.token.clone();
    forged.pop();
    forged.push(if issued.token.ends_with('A') {
        'B'
    } else {
        'A'
    });
    assert!(one
        .authenticate(&Credentials::Bearer(forged), None, false)
        .await
        .is_err());
    meta.close().await;
}

#[tokio::test]
async fn throttles_failed_logins_and_limits_pulls() {
    let dir = tempfile::tempdir().unwrap();
    let settings = AuthSettings {
        pull_limit: Some(RateLimit {
            limit: 2,
            window: std::time::Duration::from_secs(3600),
        }),
        ..Default::default()
    };
    let (meta, auth) = setup(dir.path(), settings).await;
    let root = Caller::system("root");
    auth.create_user("carol", Some("carol-password"), false, None, &root)
        .await
        .unwrap();
    // Five free failures per account, then a wait: even the right password
    // is not checked during it.
    for _ in 0..5 {
        let e = auth
            .authenticate(&basic("carol", "nope-nope"), None, false)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Unauthorized(_)));
    }
    let e = auth
        .authenticate(&basic("carol", "carol-password"), None, false)
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::TooManyRequests { retry_after } if retry_after >= 1),
        "{e:?}"
    );
    // Another account from another address is not affected.
    let anon = auth
        .authenticate(&Credentials::None, None, false)
        .await
        .unwrap();
    let s = auth.pull_rate(&anon, ip(), true).await.unwrap().unwrap();
    assert!(s.allowed && s.remaining == 1 && s.limit == 2 && s.window_secs == 3600);
    assert!(
        auth.pull_rate(&anon, ip(), true)
            .await
            .unwrap()
            .unwrap()
            .allowed
    );
    let s = auth.pull_rate(&anon, ip(), true).await.unwrap().unwrap();
    assert!(!s.allowed && s.remaining == 0);
    assert!(
        auth.pull_rate(&anon, ip(), false)
            .await
            .unwrap()
            .unwrap()
            .allowed,
        "HEAD is not counted"
    );
    assert!(
        auth.pull_rate(&anon, Some("192.0.2.8".parse().unwrap()), true)
            .await
            .unwrap()
            .unwrap()
            .allowed
    );
    meta.close().await;
}

#[tokio::test]
async fn catalog_lists_what_the_caller_may_pull() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path().join("data")).unwrap();
    let (meta, auth) = setup(dir.path(), AuthSettings::default()).await;
    let reg = Arc::new(Registry::new(
        Arc::new(store),
        meta.clone(),
        Settings::default(),
    ));
    let root = Caller::system("root");
    auth.create_user("alice", Some("alice-password"), false, None, &root)
        .await
        .unwrap();
    meta.create_org("pub", Visibility::Public, None, &root.actor())
        .await
        .unwrap();
    for repo in ["alice/a", "alice/b", "bob/x", "pub/one", "pub/two", "zed/z"] {
        meta.link_blob(&super::n(repo), &super::dg("00"), 1, 1)
            .await
            .unwrap();
    }
    let anon = auth
        .authenticate(&Credentials::None, None, false)
        .await
        .unwrap();
    let page = auth.catalog(&reg, &anon, None, None).await.unwrap();
    assert_eq!(page.items(), ["pub/one", "pub/two"]);
    let alice = auth
        .authenticate(&basic("alice", "alice-password"), None, false)
        .await
        .unwrap();
    let page = auth.catalog(&reg, &alice, Some(2), None).await.unwrap();
    assert_eq!(page.items(), ["alice/a", "alice/b"]);
    assert!(page.more);
    let page = auth
        .catalog(&reg, &alice, Some(2), Some("alice/b"))
        .await
        .unwrap();
    assert_eq!(page.items(), ["pub/one", "pub/two"]);
    assert!(!page.more);
    meta.close().await;
}

#[tokio::test]
async fn a_mount_without_from_finds_a_holder_the_caller_may_read() {
    let dir = tempfile::tempdir().unwrap();
    let (meta, auth) = setup(dir.path(), AuthSettings::default()).await;
    let root = Caller::system("root");
    for user in ["alice", "bob"] {
        let password = format!("{user}-password");
        assert!(auth
            .create_user(user, Some(&password), false, None, &root)
            .await
            .unwrap());
    }
    assert!(meta
        .create_org("pub", Visibility::Public, None, &root.actor())
        .await
        .unwrap());
    let (private, public) = (
        super::dg(&format!("sha256:{}", "a".repeat(64))),
        super::dg(&format!("sha256:{}", "b".repeat(64))),
    );
    meta.link_blob(&super::n("alice/base"), &private, 10, 1)
        .await
        .unwrap();
    meta.link_blob(&super::n("pub/base"), &public, 10, 1)
        .await
        .unwrap();
    meta.link_blob(&super::n("alice/base"), &public, 10, 1)
        .await
        .unwrap();
    let alice = auth
        .authenticate(&basic("alice", "alice-password"), ip(), false)
        .await
        .unwrap();
    let bob = auth
        .authenticate(&basic("bob", "bob-password"), ip(), false)
        .await
        .unwrap();
    assert_eq!(
        auth.readable_holder(&alice, &private).await.unwrap(),
        Some(super::n("alice/base"))
    );
    assert_eq!(auth.readable_holder(&bob, &private).await.unwrap(), None);
    // The first holder by name that bob may read: not alice's.
    assert_eq!(
        auth.readable_holder(&bob, &public).await.unwrap(),
        Some(super::n("pub/base"))
    );
    // A registry token is held to its grants.
    let issued = auth
        .issue(
            &alice,
            &scope::parse_all(["repository:alice/app:pull,push"]),
        )
        .await
        .unwrap();
    let token = auth
        .authenticate(&Credentials::Bearer(issued.token), ip(), false)
        .await
        .unwrap();
    assert_eq!(auth.readable_holder(&token, &private).await.unwrap(), None);
    assert_eq!(
        auth.readable_holder(&alice, &super::dg(&format!("sha256:{}", "c".repeat(64))))
            .await
            .unwrap(),
        None
    );
}
