//! Accounts, memberships, visibility, tokens and server keys, on both
//! engines.

use super::n;
use berth_meta::accounts::{AccountKind, NamespaceKind, NewUser, OrgDeletion, Role, Visibility};
use berth_meta::audit::{action, Actor, AuditFilter};
use berth_meta::tokens::{NewToken, TokenKind};
use berth_meta::Meta;

fn admin() -> Actor {
    Actor {
        name: "admin".into(),
        ip: Some("10.0.0.1".into()),
        at: 5_000,
    }
}

fn user(name: &str) -> NewUser {
    NewUser {
        name: name.into(),
        password_hash: Some(format!("$argon2id$fake${name}")),
        site_admin: false,
        visibility: Visibility::Private,
    }
}

fn token(id: &str, owner: &str, kind: TokenKind) -> NewToken {
    NewToken {
        id: id.into(),
        owner: owner.into(),
        name: format!("{id}-label"),
        kind,
        secret_hash: format!("hash-of-{id}"),
        scopes: vec!["pull".into(), "push".into()],
        patterns: vec!["acme/web-*".into(), "alice".into()],
        expires_at: Some(9_000),
    }
}

pub async fn run(meta: &Meta) {
    let a = admin();
    let epoch = meta.accounts_epoch();

    // Users, organisations and robots share one namespace of names.
    assert!(meta.create_user(&user("alice"), &a).await.unwrap());
    assert!(meta.accounts_epoch() > epoch, "writes bump the epoch");
    assert!(!meta.create_user(&user("alice"), &a).await.unwrap());
    assert!(meta.create_user(&user("bob"), &a).await.unwrap());
    assert!(meta
        .create_org("acme", Visibility::Public, None, &a)
        .await
        .unwrap());
    assert!(!meta
        .create_org("alice", Visibility::Public, None, &a)
        .await
        .unwrap());
    assert!(!meta.create_user(&user("acme"), &a).await.unwrap());
    assert!(meta
        .create_robot("acme", "acme+ci", Role::Write, &a)
        .await
        .unwrap());
    assert!(!meta
        .create_robot("acme", "acme+ci", Role::Write, &a)
        .await
        .unwrap());
    assert!(!meta
        .create_robot("nope", "nope+ci", Role::Write, &a)
        .await
        .unwrap());
    assert!(!meta
        .create_org("acme+ci", Visibility::Public, None, &a)
        .await
        .unwrap());

    let alice = meta.user("alice").await.unwrap().unwrap();
    assert_eq!(alice.kind, AccountKind::User);
    assert_eq!(alice.password_hash.as_deref(), Some("$argon2id$fake$alice"));
    assert!(!alice.site_admin && alice.disabled_at.is_none());
    assert!(
        !format!("{alice:?}").contains("argon2"),
        "Debug hides the hash"
    );
    let robot = meta.user("acme+ci").await.unwrap().unwrap();
    assert_eq!(robot.kind, AccountKind::Robot);
    assert_eq!(robot.org.as_deref(), Some("acme"));
    assert!(robot.password_hash.is_none());
    assert_eq!(
        meta.users()
            .await
            .unwrap()
            .iter()
            .map(|u| u.name.as_str())
            .collect::<Vec<_>>(),
        vec!["acme+ci", "alice", "bob"]
    );
    assert_eq!(meta.robots("acme").await.unwrap().len(), 1);
    let ns = meta.namespace(&super::ns("acme")).await.unwrap().unwrap();
    assert_eq!(
        (ns.kind, ns.visibility),
        (NamespaceKind::Org, Visibility::Public)
    );
    assert_eq!(
        meta.namespace(&super::ns("alice"))
            .await
            .unwrap()
            .unwrap()
            .kind,
        NamespaceKind::User
    );
    // A robot owns no namespace: its name cannot even be asked about.
    assert!(berth_oci::Namespace::parse("acme+ci").is_err());
    assert_eq!(meta.orgs().await.unwrap().len(), 1);

    // Members and roles.
    assert_eq!(
        meta.role("acme", "acme+ci").await.unwrap(),
        Some(Role::Write)
    );
    assert!(meta
        .set_member("acme", "alice", Role::Read, &a)
        .await
        .unwrap());
    assert!(meta
        .set_member("acme", "alice", Role::Admin, &a)
        .await
        .unwrap());
    assert_eq!(meta.role("acme", "alice").await.unwrap(), Some(Role::Admin));
    assert!(!meta
        .set_member("acme", "nobody", Role::Read, &a)
        .await
        .unwrap());
    assert!(
        !meta
            .set_member("alice", "bob", Role::Read, &a)
            .await
            .unwrap(),
        "not an org"
    );
    assert!(meta
        .create_org("other", Visibility::Private, None, &a)
        .await
        .unwrap());
    assert!(
        !meta
            .set_member("other", "acme+ci", Role::Read, &a)
            .await
            .unwrap(),
        "a robot belongs to its own organisation only"
    );
    assert_eq!(
        meta.members("acme")
            .await
            .unwrap()
            .iter()
            .map(|m| (m.member.as_str(), m.role))
            .collect::<Vec<_>>(),
        vec![("acme+ci", Role::Write), ("alice", Role::Admin)]
    );
    assert_eq!(meta.memberships("alice").await.unwrap().len(), 1);
    assert!(meta.remove_member("acme", "alice", &a).await.unwrap());
    assert!(!meta.remove_member("acme", "alice", &a).await.unwrap());
    assert_eq!(meta.role("acme", "alice").await.unwrap(), None);

    // Flags.
    assert!(meta.set_site_admin("bob", true, &a).await.unwrap());
    assert!(meta.user("bob").await.unwrap().unwrap().site_admin);
    assert!(
        !meta.set_site_admin("acme+ci", true, &a).await.unwrap(),
        "robots are never site admins"
    );
    assert!(meta.set_disabled("bob", true, &a).await.unwrap());
    assert_eq!(
        meta.user("bob").await.unwrap().unwrap().disabled_at,
        Some(5_000)
    );
    assert!(meta.set_disabled("bob", false, &a).await.unwrap());
    assert!(meta
        .user("bob")
        .await
        .unwrap()
        .unwrap()
        .disabled_at
        .is_none());
    assert!(meta.set_password("bob", "$argon2id$new", &a).await.unwrap());
    assert!(!meta
        .set_password("acme+ci", "$argon2id$new", &a)
        .await
        .unwrap());
    assert!(!meta.set_password("ghost", "x", &a).await.unwrap());

    // Visibility of namespaces and repositories.
    assert!(meta
        .set_namespace_visibility(&crate::ns("alice"), Visibility::Public, &a)
        .await
        .unwrap());
    assert!(!meta
        .set_namespace_visibility(&crate::ns("ghost"), Visibility::Public, &a)
        .await
        .unwrap());
    assert_eq!(
        meta.namespace(&super::ns("alice"))
            .await
            .unwrap()
            .unwrap()
            .visibility,
        Visibility::Public
    );
    assert_eq!(
        meta.repository_visibility(&n("alice/app")).await.unwrap(),
        None
    );
    meta.set_repository_visibility(&crate::n("alice/app"), Some(Visibility::Private), &a)
        .await
        .unwrap();
    meta.set_repository_visibility(&crate::n("alice/app"), Some(Visibility::Public), &a)
        .await
        .unwrap();
    assert_eq!(
        meta.repository_visibility(&n("alice/app")).await.unwrap(),
        Some(Visibility::Public)
    );
    meta.set_repository_visibility(&crate::n("alice/app"), None, &a)
        .await
        .unwrap();
    assert_eq!(
        meta.repository_visibility(&n("alice/app")).await.unwrap(),
        None
    );

    // Tokens.
    assert!(meta
        .create_token(&token("t1", "alice", TokenKind::Pat), &a)
        .await
        .unwrap());
    assert!(!meta
        .create_token(&token("t1", "alice", TokenKind::Pat), &a)
        .await
        .unwrap());
    assert!(!meta
        .create_token(&token("t2", "ghost", TokenKind::Pat), &a)
        .await
        .unwrap());
    assert!(meta
        .create_token(&token("t3", "acme+ci", TokenKind::Robot), &a)
        .await
        .unwrap());
    assert!(meta
        .create_token(&token("t4", "alice", TokenKind::Refresh), &a)
        .await
        .unwrap());
    let t1 = meta.token("t1").await.unwrap().unwrap();
    assert_eq!(t1.owner, "alice");
    assert_eq!(t1.kind, TokenKind::Pat);
    assert_eq!(t1.secret_hash, "hash-of-t1");
    assert_eq!(t1.scopes, vec!["pull", "push"]);
    assert_eq!(t1.patterns, vec!["acme/web-*", "alice"]);
    assert_eq!(t1.created_by.as_deref(), Some("admin"));
    assert!(t1.usable(8_999) && !t1.usable(9_000));
    assert!(
        !serde_json::to_string(&t1).unwrap().contains("hash-of"),
        "the hash is never serialized"
    );
    meta.touch_tokens(&[("t1".into(), 7_000), ("t3".into(), 7_001)])
        .await
        .unwrap();
    meta.touch_tokens(&[("t1".into(), 6_000)]).await.unwrap();
    assert_eq!(
        meta.token("t1").await.unwrap().unwrap().last_used_at,
        Some(7_000)
    );
    assert!(meta.revoke_token("t1", &a).await.unwrap());
    assert!(!meta.revoke_token("t1", &a).await.unwrap());
    assert!(!meta.revoke_token("ghost", &a).await.unwrap());
    let t1 = meta.token("t1").await.unwrap().unwrap();
    assert_eq!(t1.revoked_at, Some(5_000));
    assert!(!t1.usable(0));
    let ids: Vec<String> = meta
        .tokens("alice")
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(ids, vec!["t1", "t4"]);

    // Deleting accounts takes their tokens and memberships along.
    assert!(meta.delete_user("alice", &a).await.unwrap());
    assert!(!meta.delete_user("alice", &a).await.unwrap());
    assert!(meta.namespace(&super::ns("alice")).await.unwrap().is_none());
    assert!(meta.token("t4").await.unwrap().is_none());
    assert_eq!(
        meta.delete_org("acme", false, &a).await.unwrap(),
        OrgDeletion::Deleted(Vec::new())
    );
    assert_eq!(
        meta.delete_org("acme", false, &a).await.unwrap(),
        OrgDeletion::NotFound
    );
    assert!(
        meta.user("acme+ci").await.unwrap().is_none(),
        "robots go with their org"
    );
    assert!(meta.token("t3").await.unwrap().is_none());
    assert!(meta.members("acme").await.unwrap().is_empty());
    assert_eq!(
        meta.delete_org("bob", true, &a).await.unwrap(),
        OrgDeletion::NotFound,
        "a user is not an org"
    );

    // Server keys: the first value stays.
    assert_eq!(meta.server_key("jwt", "first").await.unwrap(), "first");
    assert_eq!(meta.server_key("jwt", "second").await.unwrap(), "first");

    // Every change left its event, in the transaction that made it.
    let changes = meta
        .audit_events(&AuditFilter {
            action: Some(action::PERMISSION_CHANGE.into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let ops: Vec<String> = changes
        .iter()
        .map(|e| {
            e.event.detail.as_ref().unwrap()["op"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    for op in [
        "user.create",
        "org.create",
        "robot.create",
        "member.set",
        "member.remove",
        "user.site_admin",
        "user.disabled",
        "user.password",
        "namespace.visibility",
        "repository.visibility",
        "user.delete",
        "org.delete",
    ] {
        assert!(ops.iter().any(|o| o == op), "{op} missing from {ops:?}");
    }
    assert_eq!(
        ops.iter().filter(|o| *o == "user.create").count(),
        2,
        "refused writes leave no event"
    );
    assert!(changes
        .iter()
        .all(|e| e.event.actor == "admin" && e.event.client_ip.as_deref() == Some("10.0.0.1")));
    let vis = changes
        .iter()
        .find(|e| e.event.repository.as_deref() == Some("alice/app"));
    assert!(vis.is_some());
    let created = meta
        .audit_events(&AuditFilter {
            action: Some(action::TOKEN_CREATE.into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(created.len(), 3);
    assert_eq!(created[0].event.detail.as_ref().unwrap()["token"], "t1");
    assert!(!created[0]
        .event
        .detail
        .as_ref()
        .unwrap()
        .to_string()
        .contains("hash-of"));
    let revoked = meta
        .audit_events(&AuditFilter {
            action: Some(action::TOKEN_REVOKE.into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0].event.detail.as_ref().unwrap()["owner"], "alice");
}
