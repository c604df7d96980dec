//! A namespace's life on both engines: founded with its admin in one
//! transaction, deleted with every setting keyed by it, the filtered
//! catalog, guarded unlinks and the sessions a password change ends.

use super::{n, ns};
use std::sync::Arc;

use berth_meta::accounts::{NewUser, OrgDeletion, Visibility};
use berth_meta::audit::Actor;
use berth_meta::tokens::{NewToken, TokenKind};
use berth_meta::{Meta, NewManifest, RefKind, TagGuard, TagRuleKind};

fn actor() -> Actor {
    Actor {
        name: "admin".into(),
        ip: None,
        at: 7_000,
    }
}

fn image(
    repo: &str,
    digest: &berth_oci::Digest,
    refs: &[(&berth_oci::Digest, RefKind)],
    tags: &[&str],
) -> NewManifest {
    NewManifest {
        repository: super::n(repo),
        digest: digest.clone(),
        media_type: "application/vnd.oci.image.index.v1+json".into(),
        artifact_type: None,
        content: format!("{{\"d\":\"{digest}\"}}").into_bytes(),
        subject: None,
        annotations: None,
        references: refs.iter().map(|(d, k)| ((*d).clone(), *k)).collect(),
        attestations: Vec::new(),
        required_blobs: Vec::new(),
        sparse: false,
        tags: tags.iter().map(|t| super::t(t)).collect(),
        pushed_at: 1_000,
        scan_candidates: Vec::new(),
        total_size: None,
    }
}

pub async fn run(meta: &Meta) {
    let a = actor();
    assert!(meta
        .create_user(
            &NewUser {
                name: "tfounder".into(),
                password_hash: Some("$argon2id$x".into()),
                site_admin: false,
                visibility: Visibility::Private,
            },
            &a,
        )
        .await
        .unwrap());

    // An organisation and its founding admin are one write; a founder that
    // is not a user leaves no organisation behind.
    assert!(meta
        .create_org("tacme", Visibility::Private, Some("tfounder"), &a)
        .await
        .unwrap());
    let members = meta.members("tacme").await.unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].member, "tfounder");
    assert!(meta
        .create_org("tnobody", Visibility::Private, Some("ghost"), &a)
        .await
        .is_err());
    assert!(meta.namespace(&ns("tnobody")).await.unwrap().is_none());

    // Settings and content keyed by the namespace.
    assert!(!meta.namespace_remains(&ns("tacme")).await.unwrap());
    meta.link_blob(&super::n("tacme/app"), &super::d("sha256:tl"), 5, 1)
        .await
        .unwrap();
    meta.set_repository_visibility(&crate::n("tacme/app"), Some(Visibility::Public), &a)
        .await
        .unwrap();
    meta.add_tag_rule("tacme", "v*", TagRuleKind::Protected, &a)
        .await
        .unwrap();
    meta.add_tag_rule("tacme/app", "x", TagRuleKind::Immutable, &a)
        .await
        .unwrap();
    meta.add_tag_rule("tacmecorp", "v*", TagRuleKind::Protected, &a)
        .await
        .unwrap();
    meta.set_retention_policy(&crate::ns("tacme"), Some("keep = 1"), &a)
        .await
        .unwrap();
    meta.set_quota(&crate::ns("tacme"), 1000, &a).await.unwrap();
    assert!(meta.namespace_remains(&ns("tacme")).await.unwrap());

    // Repositories stop a deletion unless they go too.
    assert_eq!(
        meta.delete_org("tacme", false, &a).await.unwrap(),
        OrgDeletion::HoldsRepositories(vec![n("tacme/app")])
    );
    assert!(meta.namespace(&ns("tacme")).await.unwrap().is_some());
    assert_eq!(
        meta.delete_org("tacme", true, &a).await.unwrap(),
        OrgDeletion::Deleted(vec![n("tacme/app")])
    );
    assert!(
        !meta.namespace_remains(&ns("tacme")).await.unwrap(),
        "nothing of tacme remains"
    );
    assert_eq!(
        meta.repository_visibility(&n("tacme/app")).await.unwrap(),
        None
    );
    assert!(meta
        .retention_policy(&crate::ns("tacme"))
        .await
        .unwrap()
        .is_none());
    assert!(meta
        .quotas()
        .await
        .unwrap()
        .iter()
        .all(|q| q.namespace != "tacme"));
    let scopes: Vec<String> = meta
        .tag_rules()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.scope)
        .collect();
    assert!(!scopes.iter().any(|s| s == "tacme" || s == "tacme/app"));
    assert!(
        scopes.iter().any(|s| s == "tacmecorp"),
        "a neighbour's rules stay"
    );

    // A user's namespace settings go with the user; the repositories stay.
    meta.link_blob(&super::n("tfounder/app"), &super::d("sha256:tl"), 5, 1)
        .await
        .unwrap();
    meta.set_quota(&crate::ns("tfounder"), 10, &a)
        .await
        .unwrap();
    assert!(meta.delete_user("tfounder", &a).await.unwrap());
    assert!(meta
        .quotas()
        .await
        .unwrap()
        .iter()
        .all(|q| q.namespace != "tfounder"));
    assert!(
        meta.namespace_remains(&ns("tfounder")).await.unwrap(),
        "its repositories remain"
    );

    catalog(meta).await;
    guarded_unlink(meta).await;
    sessions_end_with_the_password(meta).await;
}

/// The filtered catalog: own and member namespaces, public namespaces
/// without private overrides, public overrides; never an unowned
/// namespace.
async fn catalog(meta: &Meta) {
    let a = actor();
    for (ns, v) in [("cpub", Visibility::Public), ("cpriv", Visibility::Private)] {
        assert!(meta.create_org(ns, v, None, &a).await.unwrap());
    }
    for repo in [
        "cpub",
        "cpub/a",
        "cpub/hidden",
        "cpriv/b",
        "cpriv/shown",
        "corphan/c",
        "cpubx/d",
    ] {
        meta.link_blob(&super::n(repo), &super::d("sha256:tl"), 5, 1)
            .await
            .unwrap();
    }
    meta.set_repository_visibility(&crate::n("cpub/hidden"), Some(Visibility::Private), &a)
        .await
        .unwrap();
    meta.set_repository_visibility(&crate::n("cpriv/shown"), Some(Visibility::Public), &a)
        .await
        .unwrap();
    let list = |ns: Vec<String>, last: Option<&'static str>, n: i64| {
        let meta = meta.clone();
        async move {
            meta.readable_repositories(&ns, last, n)
                .await
                .unwrap()
                .into_iter()
                .filter(|r| r.as_str().starts_with('c'))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        list(Vec::new(), None, 100).await,
        ["cpriv/shown", "cpub", "cpub/a"]
    );
    assert_eq!(
        list(vec!["cpriv".into()], None, 100).await,
        ["cpriv/b", "cpriv/shown", "cpub", "cpub/a"]
    );
    assert_eq!(
        list(vec!["cpub".into()], Some("cpub"), 100).await,
        ["cpub/a", "cpub/hidden"]
    );
    assert_eq!(
        list(vec!["corphan".into()], None, 1).await.len(),
        1,
        "the limit applies"
    );
}

/// An image under a protected tag keeps its children and blobs.
async fn guarded_unlink(meta: &Meta) {
    let a = actor();
    for d in [&super::d("sha256:gl"), &super::d("sha256:gc")] {
        meta.link_blob(&super::n("g/app"), d, 5, 1).await.unwrap();
    }
    meta.put_manifest(
        &image(
            "g/app",
            &super::d("sha256:child"),
            &[
                (&super::d("sha256:gl"), RefKind::Blob),
                (&super::d("sha256:gc"), RefKind::Blob),
            ],
            &[],
        ),
        &a,
    )
    .await
    .unwrap();
    meta.put_manifest(
        &image(
            "g/app",
            &super::d("sha256:index"),
            &[(&super::d("sha256:child"), RefKind::Manifest)],
            &["v1"],
        ),
        &a,
    )
    .await
    .unwrap();
    let guard: TagGuard =
        Arc::new(|t: &berth_oci::Tag| (t.as_str() == "v1").then(|| "v1 is protected".to_owned()));
    let err = meta
        .unlink_blob_guarded(
            &crate::n("g/app"),
            &super::d("sha256:gl"),
            guard.clone(),
            &a,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("\"v1\""), "{err}");
    let err = meta
        .delete_manifest_guarded(
            &super::n("g/app"),
            &super::d("sha256:child"),
            guard.clone(),
            &a,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("v1 is protected"), "{err}");
    assert!(meta
        .manifest(&super::n("g/app"), &super::d("sha256:child"))
        .await
        .unwrap()
        .is_some());
    // An unprotected tag does not hold anything.
    let open: TagGuard = Arc::new(|_: &berth_oci::Tag| None);
    assert!(meta
        .unlink_blob_guarded(&crate::n("g/app"), &super::d("sha256:gl"), open, &a)
        .await
        .unwrap());
}

/// A password change ends the account's refresh tokens, not its others.
async fn sessions_end_with_the_password(meta: &Meta) {
    let a = actor();
    assert!(meta
        .create_user(
            &NewUser {
                name: "tsess".into(),
                password_hash: Some("$argon2id$x".into()),
                site_admin: false,
                visibility: Visibility::Private,
            },
            &a,
        )
        .await
        .unwrap());
    for (id, kind) in [("tsr", TokenKind::Refresh), ("tsp", TokenKind::Pat)] {
        let t = NewToken {
            id: id.into(),
            owner: "tsess".into(),
            name: "t".into(),
            kind,
            secret_hash: "h".into(),
            scopes: vec!["admin".into()],
            patterns: Vec::new(),
            expires_at: None,
        };
        assert!(meta.create_token(&t, &a).await.unwrap());
    }
    assert!(meta.set_password("tsess", "$argon2id$y", &a).await.unwrap());
    assert!(meta
        .token("tsr")
        .await
        .unwrap()
        .unwrap()
        .revoked_at
        .is_some());
    assert!(meta
        .token("tsp")
        .await
        .unwrap()
        .unwrap()
        .revoked_at
        .is_none());
    assert_eq!(meta.revoke_sessions("tsess", &a).await.unwrap(), Some(0));
    assert_eq!(meta.revoke_sessions("nobody", &a).await.unwrap(), None);
}
