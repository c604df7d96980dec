//! The rules of the account and token services, over a real SQLite
//! database: who founds an organisation, what nobody does to their own
//! account, member and token rules, and what deleting a namespace takes.

use std::sync::Arc;

use berth_meta::accounts::{Role, Visibility};
use berth_meta::Meta;
use berth_registry::auth::{
    AccountChange, AuthSettings, Authority, Credentials, Identity, Lifetime, TokenRequest,
};
use berth_registry::{Caller, Error, Registry, Settings};
use berth_store::FsStore;

struct World {
    auth: Authority,
    registry: Registry,
    meta: Meta,
    _dir: tempfile::TempDir,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let meta = Meta::open_sqlite(&dir.path().join("berth.db"))
        .await
        .unwrap();
    let auth = Authority::new(meta.clone(), AuthSettings::default())
        .await
        .unwrap();
    let store = FsStore::open(dir.path()).unwrap();
    let registry = Registry::new(Arc::new(store), meta.clone(), Settings::default());
    auth.bootstrap_admin(Some("admin-password-1"))
        .await
        .unwrap();
    let root = Caller::system("root");
    for name in ["alice", "bob"] {
        let password = format!("{name}-password");
        assert!(auth
            .create_user(name, Some(&password), false, None, &root)
            .await
            .unwrap());
    }
    World {
        auth,
        registry,
        meta,
        _dir: dir,
    }
}

async fn login(w: &World, user: &str, password: &str) -> Identity {
    let creds = Credentials::Basic {
        username: user.into(),
        password: password.into(),
    };
    w.auth.authenticate(&creds, None, false).await.unwrap()
}

fn caller(identity: &Identity) -> Caller {
    identity.caller(None, false)
}

fn request(scopes: &[&str]) -> TokenRequest {
    TokenRequest {
        name: "t".into(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        patterns: Vec::new(),
        expires_at: None,
    }
}

#[tokio::test]
async fn founding_an_organisation() {
    let w = world().await;
    let alice = login(&w, "alice", "alice-password").await;
    // The founder is its admin, in the same write.
    let org = w
        .auth
        .found_org("acme", None, &alice, &caller(&alice))
        .await
        .unwrap();
    assert_eq!(
        (org.name.as_str(), org.visibility),
        ("acme", Visibility::Private)
    );
    assert_eq!(
        w.meta.role("acme", "alice").await.unwrap(),
        Some(Role::Admin)
    );
    // A token (even an unrestricted one) does not found organisations.
    let t = w
        .auth
        .create_token("alice", &request(&["admin"]), &Caller::system("t"))
        .await
        .unwrap()
        .unwrap();
    let by_token = w
        .auth
        .authenticate(&Credentials::Bearer(t.token), None, false)
        .await
        .unwrap();
    assert!(matches!(
        w.auth
            .found_org("other", None, &by_token, &caller(&by_token))
            .await,
        Err(Error::Denied(_))
    ));
    assert!(matches!(
        w.auth
            .found_org("other", None, &Identity::anonymous(), &Caller::default())
            .await,
        Err(Error::Unauthorized(_))
    ));
    // Taken names and names with remains get one answer.
    w.meta
        .link_blob(&super::n("ghost/app"), &super::dg("00"), 1, 1)
        .await
        .unwrap();
    let mut answers = Vec::new();
    for name in ["acme", "bob", "ghost"] {
        match w.auth.found_org(name, None, &alice, &caller(&alice)).await {
            Err(Error::Conflict(m)) => answers.push(m.replace(name, "NAME")),
            other => panic!("{name}: {other:?}"),
        }
    }
    assert!(answers.iter().all(|a| *a == answers[0]), "{answers:?}");
    // A site admin may claim remains.
    let admin = login(&w, "admin", "admin-password-1").await;
    assert!(w
        .auth
        .found_org("ghost", None, &admin, &caller(&admin))
        .await
        .is_ok());
}

#[tokio::test]
async fn nobody_demotes_disables_or_deletes_themselves() {
    let w = world().await;
    let admin = Caller::system("admin");
    for change in [
        AccountChange {
            site_admin: Some(false),
            disabled: None,
        },
        AccountChange {
            site_admin: None,
            disabled: Some(true),
        },
    ] {
        assert!(matches!(
            w.auth.change_account("admin", change, &admin).await,
            Err(Error::Denied(_))
        ));
    }
    assert!(matches!(
        w.auth.delete_user(&w.registry, "admin", &admin).await,
        Err(Error::Denied(_))
    ));
    // Granting oneself what one has is no demotion; others may be changed.
    let u = w
        .auth
        .change_account(
            "bob",
            AccountChange {
                site_admin: Some(true),
                disabled: Some(true),
            },
            &admin,
        )
        .await
        .unwrap();
    assert!(u.site_admin && u.disabled_at.is_some());
    assert!(matches!(
        w.auth
            .change_account("nobody", AccountChange::default(), &admin)
            .await,
        Err(Error::NotFound(_))
    ));
    w.auth
        .delete_user(&w.registry, "bob", &admin)
        .await
        .unwrap();
    assert!(matches!(
        w.auth.delete_user(&w.registry, "bob", &admin).await,
        Err(Error::NotFound(_))
    ));
}

#[tokio::test]
async fn members_robots_and_deletion() {
    let w = world().await;
    let root = Caller::system("root");
    let alice = login(&w, "alice", "alice-password").await;
    w.auth
        .found_org("acme", None, &alice, &caller(&alice))
        .await
        .unwrap();
    w.auth
        .found_org("other", None, &alice, &caller(&alice))
        .await
        .unwrap();
    let robot = w
        .auth
        .create_robot("other", "ci", Role::Write, &root)
        .await
        .unwrap()
        .unwrap();
    // An unknown name and another organisation's robot look alike.
    let mut answers = Vec::new();
    for member in ["nobody", robot.as_str()] {
        match w.auth.set_member("acme", member, Role::Read, &root).await {
            Err(Error::NotFound(m)) => answers.push(m.replace(member, "NAME")),
            other => panic!("{member}: {other:?}"),
        }
    }
    assert_eq!(answers[0], answers[1]);
    w.auth
        .set_member("acme", "bob", Role::Read, &root)
        .await
        .unwrap();
    // An organisation with repositories goes only with them.
    w.meta
        .link_blob(&super::n("acme/app"), &super::dg("00"), 1, 1)
        .await
        .unwrap();
    assert!(matches!(
        w.auth.delete_org(&w.registry, "acme", false, &root).await,
        Err(Error::Conflict(m)) if m.contains("acme/app")
    ));
    assert_eq!(
        w.auth
            .delete_org(&w.registry, "acme", true, &root)
            .await
            .unwrap(),
        vec![super::n("acme/app")]
    );
    assert!(matches!(w.auth.org("acme").await, Err(Error::NotFound(_))));
}

#[tokio::test]
async fn token_rules() {
    let w = world().await;
    let alice = login(&w, "alice", "alice-password").await;
    let c = caller(&alice);
    // Lifetimes are bounded.
    assert!(matches!(
        w.auth
            .issue_token(&alice, "alice", &request(&["pull"]), Lifetime::For(0), &c)
            .await,
        Err(Error::InvalidParameter(_))
    ));
    let pull = w
        .auth
        .issue_token(
            &alice,
            "alice",
            &request(&["pull"]),
            Lifetime::For(60_000),
            &c,
        )
        .await
        .unwrap();
    let push = w
        .auth
        .issue_token(&alice, "alice", &request(&["push"]), Lifetime::Forever, &c)
        .await
        .unwrap();
    // A limited token mints nothing, lists nothing, revokes only itself.
    let limited = w
        .auth
        .authenticate(&Credentials::Bearer(pull.token.clone()), None, false)
        .await
        .unwrap();
    assert!(matches!(
        w.auth
            .issue_token(
                &limited,
                "alice",
                &request(&["admin"]),
                Lifetime::Forever,
                &c
            )
            .await,
        Err(Error::Denied(_))
    ));
    assert!(matches!(
        w.auth.tokens_of(&limited, "alice").await,
        Err(Error::Denied(_))
    ));
    assert!(matches!(
        w.auth.revoke_token_as(&limited, &push.record.id, &c).await,
        Err(Error::NotFound(_))
    ));
    w.auth
        .revoke_token_as(&limited, &pull.record.id, &c)
        .await
        .unwrap();
    // Another user's tokens are not alice's to see.
    assert!(matches!(
        w.auth.tokens_of(&alice, "bob").await,
        Err(Error::Denied(_))
    ));
    assert!(matches!(
        w.auth
            .revoke_token_as(&Identity::anonymous(), &push.record.id, &Caller::default())
            .await,
        Err(Error::Unauthorized(_))
    ));
    assert_eq!(w.auth.tokens_of(&alice, "alice").await.unwrap().len(), 2);
}
