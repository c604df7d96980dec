//! Signature trust: keys, policies and stored verdicts (with their outbox
//! events), on both engines.

use berth_meta::audit::{action, Actor, AuditFilter};
use berth_meta::events::{EventKind, NewEvent};
use berth_meta::trust::{StoredVerdict, TrustKey};
use berth_meta::{Meta, RefKind};

use super::{d, manifest, n, ns};

fn admin() -> Actor {
    Actor {
        name: "admin".into(),
        ip: None,
        at: 8_000,
    }
}

fn key(namespace: &str, name: &str) -> TrustKey {
    TrustKey {
        namespace: ns(namespace),
        name: name.into(),
        kind: "cosign-key".into(),
        algorithm: "ecdsa-p256".into(),
        fingerprint: "ab".repeat(32),
        material: "-----BEGIN PUBLIC KEY-----\n...\n-----END PUBLIC KEY-----\n".into(),
        created_at: 8_000,
        created_by: Some("admin".into()),
    }
}

pub async fn run(meta: &Meta) {
    assert!(meta.add_trust_key(&key("tr", "b"), &admin()).await.unwrap());
    assert!(meta.add_trust_key(&key("tr", "a"), &admin()).await.unwrap());
    assert!(!meta.add_trust_key(&key("tr", "a"), &admin()).await.unwrap());
    assert!(meta.add_trust_key(&key("tq", "a"), &admin()).await.unwrap());
    let keys = meta.trust_keys().await.unwrap();
    assert_eq!(
        keys.iter()
            .map(|k| format!("{}/{}", k.namespace, k.name))
            .collect::<Vec<_>>(),
        ["tq/a", "tr/a", "tr/b"]
    );
    assert_eq!(keys[1], key("tr", "a"));
    assert!(meta
        .remove_trust_key(&ns("tq"), "a", &admin())
        .await
        .unwrap());
    assert!(!meta
        .remove_trust_key(&ns("tq"), "a", &admin())
        .await
        .unwrap());

    meta.set_trust_policy(&ns("tr"), Some("warn"), &admin())
        .await
        .unwrap();
    meta.set_trust_policy(&ns("tr"), Some("enforce"), &admin())
        .await
        .unwrap();
    let policies = meta.trust_policies().await.unwrap();
    assert_eq!(policies.len(), 1);
    assert_eq!(policies[0].mode, "enforce");
    meta.set_trust_policy(&ns("tq"), None, &admin())
        .await
        .unwrap();
    assert_eq!(meta.trust_policies().await.unwrap().len(), 1);
    let changes = meta
        .audit_events(&AuditFilter {
            action: Some(action::POLICY_CHANGE.into()),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    let kinds: Vec<String> = changes
        .iter()
        .filter_map(|e| {
            e.event.detail.as_ref()?["change"]
                .as_str()
                .map(str::to_owned)
        })
        .filter(|c| c.starts_with("trust."))
        .collect();
    assert_eq!(kinds.len(), 7, "{kinds:?}");

    // Verdicts: stored per repository and digest, replaced, with their
    // event in the same transaction.
    let (image, index) = (d("sha256:tr-image"), d("sha256:tr-index"));
    meta.link_blob(&n("tr/app"), &d("sha256:layer"), 10, 1)
        .await
        .unwrap();
    meta.link_blob(&n("tr/app"), &d("sha256:config"), 10, 1)
        .await
        .unwrap();
    meta.put_manifest(&manifest("tr/app", &image, None, None, &[]), &admin())
        .await
        .unwrap();
    let mut idx = manifest("tr/app", &index, None, None, &["v1"]);
    idx.references = vec![(image.clone(), RefKind::Manifest)];
    meta.put_manifest(&idx, &admin()).await.unwrap();
    assert_eq!(
        meta.parent_indexes(&n("tr/app"), &image, 8).await.unwrap(),
        vec![index.clone()]
    );
    assert!(meta
        .parent_indexes(&n("tr/app"), &index, 8)
        .await
        .unwrap()
        .is_empty());

    assert_eq!(
        meta.signature_verdict(&n("tr/app"), &image).await.unwrap(),
        None
    );
    let mut v = StoredVerdict {
        signatures: None,
        referrers: Vec::new(),
        trust: "fp1".into(),
        verified: false,
        key: None,
        algorithm: None,
        format: None,
        signature: None,
        valid_until: None,
        reason: Some("no_signature".into()),
        detail: Some("none".into()),
        checked_at: 9_000,
    };
    meta.record_signature_verdict(&n("tr/app"), &image, &v, None)
        .await
        .unwrap();
    assert_eq!(
        meta.signature_verdict(&n("tr/app"), &image).await.unwrap(),
        Some(v.clone())
    );
    v = StoredVerdict {
        signatures: Some(d("sha256:tr-sig")),
        referrers: vec![d("sha256:tr-bundle"), d("sha256:tr-notation")],
        verified: true,
        key: Some("a".into()),
        algorithm: Some("ecdsa-p256".into()),
        format: Some("sigstore-bundle".into()),
        signature: Some(d("sha256:tr-bundle")),
        valid_until: Some(99_000),
        reason: None,
        detail: None,
        ..v
    };
    let mut e = NewEvent::new(EventKind::SignatureVerified, "admin", 9_001);
    e.repository = Some(n("tr/app"));
    e.digest = Some(image.to_string());
    let before = meta.events_after(0, 10_000).await.unwrap().len();
    meta.record_signature_verdict(&n("tr/app"), &image, &v, Some(e))
        .await
        .unwrap();
    assert_eq!(
        meta.signature_verdict(&n("tr/app"), &image).await.unwrap(),
        Some(v)
    );
    let events = meta.events_after(0, 10_000).await.unwrap();
    assert_eq!(events.len(), before + 1);
    let last = events.last().unwrap();
    assert_eq!(last.kind, EventKind::SignatureVerified);
    assert_eq!(last.namespace.as_deref(), Some("tr"));
}
