//! Retention policies as stored, and retention's conditional deletions.

use berth_meta::audit::{action, AuditFilter};
use berth_meta::Meta;

use super::gc::{image, index};
use super::{actor, d, manifest, n};

/// Policies, the inventory, conditional deletions, time setters.
pub(super) async fn retention_cases(meta: &Meta) {
    use berth_meta::{Deletion, ManifestTarget, TagGuard};
    let open: TagGuard = std::sync::Arc::new(|_: &berth_oci::Tag| None);
    let target = |digest: &berth_oci::Digest,
                  tags: &[&str],
                  subject: Option<&berth_oci::Digest>| ManifestTarget {
        digest: digest.clone(),
        with_tags: tags.iter().map(|t| crate::t(t)).collect(),
        subject: subject.cloned(),
    };
    assert!(meta
        .retention_policy(&crate::ns("acme"))
        .await
        .unwrap()
        .is_none());
    assert!(!meta
        .set_retention_policy(&crate::ns("acme"), Some("a = 1"), &actor())
        .await
        .unwrap());
    assert!(meta
        .set_retention_policy(&crate::ns("acme"), Some("b = 2"), &actor())
        .await
        .unwrap());
    let p = meta
        .retention_policy(&crate::ns("acme"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (p.policy.as_str(), p.updated_by.as_deref()),
        ("b = 2", Some("tester"))
    );
    assert_eq!(meta.retention_policies().await.unwrap().len(), 1);
    assert!(meta
        .set_retention_policy(&crate::ns("acme"), None, &actor())
        .await
        .unwrap());
    assert!(meta
        .retention_policy(&crate::ns("acme"))
        .await
        .unwrap()
        .is_none());

    for r in [
        "acme",
        "acme/web",
        "acme/web/x",
        "acme-two/y",
        "acme0",
        "acmf",
    ] {
        meta.link_blob(&n(r), &d("sha256:layer"), 10, 1)
            .await
            .unwrap();
    }
    assert_eq!(
        meta.namespace_repositories(&crate::ns("acme"))
            .await
            .unwrap(),
        vec!["acme", "acme/web", "acme/web/x"]
    );

    // An index with two children, a referrer of the index, tags.
    let r = "acme/web";
    meta.link_blob(&n(r), &d("sha256:l1"), 100, 1)
        .await
        .unwrap();
    meta.link_blob(&n(r), &d("sha256:l2"), 200, 1)
        .await
        .unwrap();
    meta.put_manifest(
        &image(r, &d("sha256:c1"), &[&d("sha256:l1")], &[], 5),
        &actor(),
    )
    .await
    .unwrap();
    meta.put_manifest(
        &image(r, &d("sha256:c2"), &[&d("sha256:l2")], &[], 5),
        &actor(),
    )
    .await
    .unwrap();
    meta.put_manifest(
        &index(
            r,
            &d("sha256:ix"),
            &[&d("sha256:c1"), &d("sha256:c2")],
            &["v1", "latest"],
            6,
        ),
        &actor(),
    )
    .await
    .unwrap();
    meta.put_manifest(
        &manifest(
            r,
            &d("sha256:sig"),
            Some(&d("sha256:ix")),
            Some("application/sig"),
            &[],
        ),
        &actor(),
    )
    .await
    .unwrap();
    meta.set_manifest_times(&crate::n(r), &d("sha256:ix"), 1_000, Some(5_000))
        .await
        .unwrap();
    meta.set_tag_times(&crate::n(r), &crate::t("v1"), 2_000, Some(6_000))
        .await
        .unwrap();
    let inv = meta.inventory(&crate::n(r)).await.unwrap().unwrap();
    assert_eq!(inv.manifests.len(), 4);
    let ix = inv
        .manifests
        .iter()
        .find(|m| m.digest == d("sha256:ix"))
        .unwrap();
    assert_eq!((ix.pushed_at, ix.last_pulled_at), (1_000, Some(5_000)));
    assert!(ix.media_type.contains("index"));
    let sig = inv
        .manifests
        .iter()
        .find(|m| m.digest == d("sha256:sig"))
        .unwrap();
    assert_eq!(sig.subject, Some(d("sha256:ix")));
    assert_eq!(sig.artifact_type.as_deref(), Some("application/sig"));
    let v1 = inv.tags.iter().find(|t| t.name == "v1").unwrap();
    assert_eq!((v1.updated_at, v1.last_pulled_at), (2_000, Some(6_000)));
    assert_eq!(
        inv.children().collect::<Vec<_>>(),
        vec![
            (&d("sha256:ix"), &d("sha256:c1")),
            (&d("sha256:ix"), &d("sha256:c2"))
        ]
    );
    assert!(inv
        .blobs()
        .any(|b| b == (&d("sha256:c2"), &d("sha256:l2"), 200)));
    assert!(meta
        .inventory(&crate::n("acme/none"))
        .await
        .unwrap()
        .is_none());

    let detail = |v: &str| serde_json::json!({ "rule": v });
    assert!(matches!(
        meta.retention_delete_tag(
            &crate::n(r),
            &crate::t("v1"),
            &d("sha256:c1"),
            open.clone(),
            &actor(),
            detail("x")
        )
        .await
        .unwrap(),
        Deletion::Skipped(_)
    ));
    assert_eq!(
        meta.retention_delete_tag(
            &crate::n(r),
            &crate::t("v1"),
            &d("sha256:ix"),
            open.clone(),
            &actor(),
            detail("x")
        )
        .await
        .unwrap(),
        Deletion::Deleted
    );
    // Still tagged `latest`, listed children, present subject: kept.
    let skipped = |o: Deletion| match o {
        Deletion::Skipped(why) => why,
        Deletion::Deleted => panic!("deleted"),
    };
    assert!(skipped(
        meta.retention_delete_manifest(
            &crate::n(r),
            target(&d("sha256:ix"), &[], None),
            open.clone(),
            &actor(),
            detail("x")
        )
        .await
        .unwrap()
    )
    .contains("latest"));
    assert!(skipped(
        meta.retention_delete_manifest(
            &crate::n(r),
            target(&d("sha256:c1"), &[], None),
            open.clone(),
            &actor(),
            detail("x")
        )
        .await
        .unwrap()
    )
    .contains(d("sha256:ix").as_str()));
    assert!(skipped(
        meta.retention_delete_manifest(
            &crate::n(r),
            target(&d("sha256:sig"), &[], Some(&d("sha256:ix"))),
            open.clone(),
            &actor(),
            detail("x")
        )
        .await
        .unwrap()
    )
    .contains("subject"));
    let latest = ["latest"];
    // A protected tag refuses the deletion inside the transaction.
    let guard: TagGuard = std::sync::Arc::new(|t: &berth_oci::Tag| {
        (t.as_str() == "latest").then(|| "latest is protected".to_owned())
    });
    assert_eq!(
        skipped(
            meta.retention_delete_manifest(
                &crate::n(r),
                target(&d("sha256:ix"), &latest, None),
                guard.clone(),
                &actor(),
                detail("x")
            )
            .await
            .unwrap()
        ),
        "latest is protected"
    );
    assert_eq!(
        meta.retention_delete_manifest(
            &crate::n(r),
            target(&d("sha256:ix"), &latest, None),
            open.clone(),
            &actor(),
            detail("x")
        )
        .await
        .unwrap(),
        Deletion::Deleted
    );
    for m in [&d("sha256:c1"), &d("sha256:c2")] {
        assert_eq!(
            meta.retention_delete_manifest(
                &crate::n(r),
                target(m, &[], None),
                open.clone(),
                &actor(),
                detail("x")
            )
            .await
            .unwrap(),
            Deletion::Deleted
        );
    }
    assert_eq!(
        meta.retention_delete_manifest(
            &crate::n(r),
            target(&d("sha256:sig"), &[], Some(&d("sha256:ix"))),
            open.clone(),
            &actor(),
            detail("x")
        )
        .await
        .unwrap(),
        Deletion::Deleted
    );
    assert!(matches!(
        meta.retention_delete_manifest(
            &crate::n(r),
            target(&d("sha256:c1"), &[], None),
            open.clone(),
            &actor(),
            detail("x")
        )
        .await
        .unwrap(),
        Deletion::Skipped(_)
    ));
    assert!(meta
        .inventory(&crate::n(r))
        .await
        .unwrap()
        .is_none_or(|i| i.manifests.is_empty()));
    let events = meta
        .audit_events(&AuditFilter {
            action: Some(action::RETENTION_DELETE.into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 5, "one tag and four manifests");
    assert_eq!(
        events[1].event.detail.as_ref().unwrap()["tags"],
        serde_json::json!(["latest"])
    );
    let policy_events = meta
        .audit_events(&AuditFilter {
            action: Some(action::POLICY_CHANGE.into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(policy_events.len(), 3);
}
