//! OIDC trust policies and the ids of exchanged tokens, on both engines.

use berth_meta::audit::{action, Actor, AuditFilter};
use berth_meta::oidc::OidcPolicy;
use berth_meta::Meta;

fn admin() -> Actor {
    Actor {
        name: "admin".into(),
        ip: None,
        at: 7_000,
    }
}

fn policy(name: &str, issuer: &str) -> OidcPolicy {
    OidcPolicy {
        name: name.into(),
        issuer: issuer.into(),
        audience: "registry.example.com".into(),
        claims: [
            ("repository".to_owned(), "acme/app".to_owned()),
            ("ref".to_owned(), "refs/heads/*".to_owned()),
        ]
        .into(),
        repositories: "acme".into(),
        scopes: vec!["pull".into(), "push".into()],
        created_at: 7_000,
        created_by: Some("admin".into()),
    }
}

pub async fn run(meta: &Meta) {
    let gh = "https://token.actions.githubusercontent.com";
    assert!(meta
        .add_oidc_policy(&policy("b-app", gh), &admin())
        .await
        .unwrap());
    assert!(meta
        .add_oidc_policy(&policy("a-lab", "https://gitlab.com"), &admin())
        .await
        .unwrap());
    assert!(!meta
        .add_oidc_policy(&policy("b-app", gh), &admin())
        .await
        .unwrap());
    let all = meta.oidc_policies().await.unwrap();
    assert_eq!(
        all.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        ["a-lab", "b-app"]
    );
    assert_eq!(all[1], policy("b-app", gh));
    assert_eq!(
        meta.oidc_policies_of(gh).await.unwrap(),
        vec![policy("b-app", gh)]
    );
    assert!(meta
        .oidc_policies_of("https://other")
        .await
        .unwrap()
        .is_empty());
    assert!(meta.remove_oidc_policy("a-lab", &admin()).await.unwrap());
    assert!(!meta.remove_oidc_policy("a-lab", &admin()).await.unwrap());
    let changes = meta
        .audit_events(&AuditFilter {
            action: Some(action::POLICY_CHANGE.into()),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    let kinds: Vec<String> = changes
        .iter()
        .filter_map(|e| e.event.detail.as_ref())
        .map(|d| d["change"].as_str().unwrap_or_default().to_owned())
        .filter(|c| c.starts_with("oidc."))
        .collect();
    assert_eq!(
        kinds,
        ["oidc.policy.add", "oidc.policy.add", "oidc.policy.remove"]
    );

    // A token id is claimed once per issuer until it expires.
    assert!(meta
        .claim_oidc_token(gh, "j1", 10_000, 1_000)
        .await
        .unwrap());
    assert!(!meta
        .claim_oidc_token(gh, "j1", 10_000, 2_000)
        .await
        .unwrap());
    assert!(meta
        .claim_oidc_token("https://gitlab.com", "j1", 10_000, 2_000)
        .await
        .unwrap());
    // Expired ids are forgotten (the token itself is refused as expired).
    assert!(meta
        .claim_oidc_token(gh, "j1", 20_000, 10_001)
        .await
        .unwrap());
}
