//! Client certificate identities (mutual TLS), on both engines.

use berth_meta::accounts::{NewUser, Visibility};
use berth_meta::audit::{action, Actor, AuditFilter};
use berth_meta::Meta;

pub async fn run(meta: &Meta) {
    let a = Actor {
        name: "admin".into(),
        ip: None,
        at: 7_000,
    };
    for name in ["certy", "certz"] {
        assert!(meta
            .create_user(
                &NewUser {
                    name: name.into(),
                    password_hash: None,
                    site_admin: false,
                    visibility: Visibility::Private,
                },
                &a,
            )
            .await
            .unwrap());
    }
    let subject = "CN=ci-bot,O=acme\\, inc";
    let epoch = meta.accounts_epoch();
    assert!(meta.map_certificate(subject, "certy", &a).await.unwrap());
    assert!(meta.accounts_epoch() > epoch, "caches learn of the change");
    assert!(!meta.map_certificate("CN=x", "ghost", &a).await.unwrap());
    let m = meta.certificate_identity(subject).await.unwrap().unwrap();
    assert_eq!(
        (m.account.as_str(), m.created_at, m.created_by.as_deref()),
        ("certy", 7_000, Some("admin"))
    );
    // A subject maps to one account: mapping again moves it.
    assert!(meta.map_certificate(subject, "certz", &a).await.unwrap());
    assert!(meta.map_certificate("CN=other", "certy", &a).await.unwrap());
    let all: Vec<(String, String)> = meta
        .certificate_identities()
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.subject, m.account))
        .collect();
    assert_eq!(
        all,
        vec![
            ("CN=ci-bot,O=acme\\, inc".to_owned(), "certz".to_owned()),
            ("CN=other".to_owned(), "certy".to_owned()),
        ]
    );
    assert!(meta.unmap_certificate(subject, &a).await.unwrap());
    assert!(!meta.unmap_certificate(subject, &a).await.unwrap());
    assert!(meta.certificate_identity(subject).await.unwrap().is_none());
    // Deleting the account removes its mappings.
    assert!(meta.delete_user("certy", &a).await.unwrap());
    assert!(meta
        .certificate_identity("CN=other")
        .await
        .unwrap()
        .is_none());
    // Every change is in the audit log.
    let events = meta
        .audit_events(&AuditFilter {
            action: Some(action::PERMISSION_CHANGE.into()),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    let changes: Vec<String> = events
        .iter()
        .filter_map(|e| {
            e.event
                .detail
                .as_ref()?
                .get("change")?
                .as_str()
                .map(String::from)
        })
        .filter(|c| c.starts_with("certificate."))
        .collect();
    assert_eq!(changes.len(), 4, "{changes:?}");
}
