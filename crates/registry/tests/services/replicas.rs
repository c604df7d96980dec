//! Two replicas (two `Registry` + `Authority` pairs) on one PostgreSQL and
//! one blob directory: a change through one is seen by the other on its
//! very next call, and quotas, pull rate limits and login throttling hold
//! across both.

use std::sync::Arc;
use std::time::Duration;

use berth_meta::{Meta, TagRuleKind};
use berth_oci::{Digest, Reference, Tag};
use berth_registry::auth::{AuthSettings, Authority, Credentials, RateLimit, TokenRequest};
use berth_registry::{Caller, Error, Registry, Settings};
use berth_store::FsStore;
use berth_testkit::Postgres;
use bytes::Bytes;

use super::{body, n};

struct Replica {
    registry: Registry,
    auth: Authority,
}

async fn replica(url: &str, blobs: &std::path::Path) -> Replica {
    let meta = Meta::connect(url).await.unwrap();
    let store = FsStore::open(blobs).unwrap();
    let registry = Registry::new(
        Arc::new(store),
        meta.clone(),
        Settings {
            shared_database: true,
            ..Default::default()
        },
    );
    let auth = Authority::new(
        meta,
        AuthSettings {
            shared_database: true,
            // Long enough that only the absence of caching explains the
            // changes being seen at once.
            cache_ttl: Duration::from_secs(3600),
            pull_limit: Some(RateLimit {
                limit: 3,
                window: Duration::from_secs(3600),
            }),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    Replica { registry, auth }
}

fn manifest(config: &Digest, note: &str) -> Bytes {
    Bytes::from(format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":2}},"layers":[],"annotations":{{"n":"{note}"}}}}"#
    ))
}

fn tag(t: &str) -> Reference {
    Reference::Tag(Tag::parse(t).unwrap())
}

#[tokio::test]
async fn two_replicas_on_one_postgres_agree_on_the_next_call() {
    let pg = Postgres::start();
    let url = pg.create_database("replicas");
    let dir = tempfile::tempdir().unwrap();
    let a = replica(&url, dir.path()).await;
    let b = replica(&url, dir.path()).await;
    let root = Caller::system("root");

    // A tag pushed and moved through A is served by B on the next call,
    // B having served (and, on SQLite, cached) the old one.
    let config = Digest::sha256(b"{}");
    a.registry
        .push_blob(&n("acme/app"), &config, None, body(b"{}"))
        .await
        .unwrap();
    let m1 = a
        .registry
        .put_manifest(
            &n("acme/app"),
            &tag("v1"),
            None,
            manifest(&config, "1"),
            &[],
            &root,
        )
        .await
        .unwrap();
    for _ in 0..2 {
        assert_eq!(
            b.registry
                .get_manifest(&n("acme/app"), &tag("v1"))
                .await
                .unwrap()
                .digest,
            m1.digest
        );
    }
    let m2 = a
        .registry
        .put_manifest(
            &n("acme/app"),
            &tag("v1"),
            None,
            manifest(&config, "2"),
            &[],
            &root,
        )
        .await
        .unwrap();
    assert_eq!(
        b.registry
            .get_manifest(&n("acme/app"), &tag("v1"))
            .await
            .unwrap()
            .digest,
        m2.digest,
        "the moved tag, at once"
    );
    // A manifest deleted through B is gone for A, by digest too.
    let by_digest = Reference::Digest(m1.digest.clone());
    a.registry
        .get_manifest(&n("acme/app"), &by_digest)
        .await
        .unwrap();
    b.registry
        .delete_manifest(&n("acme/app"), &by_digest, &root)
        .await
        .unwrap();
    assert!(matches!(
        a.registry.get_manifest(&n("acme/app"), &by_digest).await,
        Err(Error::ManifestUnknown(_))
    ));

    // A tag rule added through A applies on B at once.
    b.registry.tag_rules(&super::n("acme/app")).await.unwrap();
    a.registry
        .add_tag_rule(
            &super::ns("acme"),
            "acme",
            "v*",
            TagRuleKind::Immutable,
            &root,
        )
        .await
        .unwrap();
    assert!(matches!(
        b.registry
            .put_manifest(
                &n("acme/app"),
                &tag("v1"),
                None,
                manifest(&config, "3"),
                &[],
                &root
            )
            .await,
        Err(Error::Denied(_))
    ));

    // A token revoked through A is refused by B, which had just accepted it.
    a.auth
        .create_user("alice", Some("alice-password-long"), false, None, &root)
        .await
        .unwrap();
    let req = TokenRequest {
        name: "ci".into(),
        scopes: vec!["pull".into()],
        patterns: Vec::new(),
        expires_at: None,
    };
    let token = a
        .auth
        .create_token("alice", &req, &root)
        .await
        .unwrap()
        .unwrap();
    let creds = Credentials::Basic {
        username: "alice".into(),
        password: token.token.clone(),
    };
    assert!(b.auth.authenticate(&creds, None, true).await.is_ok());
    assert!(a.auth.revoke_token(&token.record.id, &root).await.unwrap());
    assert!(matches!(
        b.auth.authenticate(&creds, None, true).await,
        Err(Error::Unauthorized(_))
    ));
    // A password changed through A ends B's cached login at once.
    let pw = Credentials::Basic {
        username: "alice".into(),
        password: "alice-password-long".into(),
    };
    b.auth.authenticate(&pw, None, true).await.unwrap();
    a.auth
        .set_password("alice", "another-password-long", &root)
        .await
        .unwrap();
    assert!(matches!(
        b.auth.authenticate(&pw, None, true).await,
        Err(Error::Unauthorized(_))
    ));
}

#[tokio::test]
async fn quotas_rate_limits_and_login_throttling_hold_across_replicas() {
    let pg = Postgres::start();
    let url = pg.create_database("limits");
    let dir = tempfile::tempdir().unwrap();
    let a = replica(&url, dir.path()).await;
    let b = replica(&url, dir.path()).await;
    let root = Caller::system("root");

    // A 1 MiB quota set through A; sessions on both replicas share it.
    a.registry
        .set_quota(&super::ns("q"), 1 << 20, &root)
        .await
        .unwrap();
    let repo = n("q/app");
    let on_a = a.registry.start_upload(&repo).await.unwrap();
    let on_b = b.registry.start_upload(&repo).await.unwrap();
    let chunk = vec![7u8; 700 << 10];
    a.registry
        .append_upload(&repo, &on_a.id, None, None, body(&chunk))
        .await
        .unwrap();
    assert!(
        matches!(
            b.registry
                .append_upload(&repo, &on_b.id, None, None, body(&chunk))
                .await,
            Err(Error::Denied(m)) if m.contains("held by open uploads")
        ),
        "the other replica's session holds 700 KiB of the 1 MiB"
    );
    // Finished through B (the session moved replicas), the bytes are
    // stored and the reservation released.
    let digest = Digest::sha256(&chunk);
    b.registry
        .finish_upload(&repo, &on_a.id, &digest, None)
        .await
        .unwrap();
    let meta = Meta::connect(&url).await.unwrap();
    assert_eq!(
        meta.upload_reservations(&super::ns("q"), None)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        meta.namespace_usage(&super::ns("q")).await.unwrap(),
        700 << 10
    );

    // Pull rate limit 3 per window: two pulls on A, one on B, refused on A.
    let anon = a
        .auth
        .authenticate(&Credentials::None, None, false)
        .await
        .unwrap();
    let ip = Some("198.51.100.1".parse().unwrap());
    for r in [&a, &a, &b] {
        assert!(
            r.auth
                .pull_rate(&anon, ip, true)
                .await
                .unwrap()
                .unwrap()
                .allowed
        );
    }
    let s = a.auth.pull_rate(&anon, ip, true).await.unwrap().unwrap();
    assert!(!s.allowed && s.remaining == 0, "{s:?}");
    assert!(
        b.auth
            .pull_rate(&anon, ip, false)
            .await
            .unwrap()
            .unwrap()
            .allowed
    );

    // Failed logins counted on A throttle the account on B.
    a.auth
        .create_user("bob", Some("bob-password-long"), false, None, &root)
        .await
        .unwrap();
    let wrong = Credentials::Basic {
        username: "bob".into(),
        password: "wrong-password".into(),
    };
    for _ in 0..5 {
        assert!(matches!(
            a.auth.authenticate(&wrong, ip, true).await,
            Err(Error::Unauthorized(_))
        ));
    }
    let right = Credentials::Basic {
        username: "bob".into(),
        password: "bob-password-long".into(),
    };
    assert!(matches!(
        b.auth.authenticate(&right, ip, true).await,
        Err(Error::TooManyRequests { .. })
    ));
}

/// The counter-prune worker deletes the shared rate windows and
/// failed-login counts that expired, under its lease, and keeps live ones.
#[tokio::test]
async fn the_counter_prune_worker_deletes_expired_shared_counters() {
    use berth_registry::worker::{CounterPrune, Stop, Worker};

    let pg = Postgres::start();
    let url = pg.create_database("prune");
    let dir = tempfile::tempdir().unwrap();
    let a = replica(&url, dir.path()).await;
    let meta = Meta::connect(&url).await.unwrap();
    let now = berth_meta::now_ms();
    let hour = 3_600_000;
    // The replica's pull window is an hour; logins are forgotten after
    // at most 30 minutes.
    meta.hit_rate_window("ip|10.0.0.1", now - 2 * hour, hour, true)
        .await
        .unwrap();
    meta.hit_rate_window("ip|10.0.0.2", now - 1000, hour, true)
        .await
        .unwrap();
    meta.add_login_failure("ip|10.0.0.1", now - hour, hour)
        .await
        .unwrap();
    meta.add_login_failure("ip|10.0.0.2", now - 1000, hour)
        .await
        .unwrap();
    let worker = CounterPrune {
        registry: Arc::new(a.registry),
        auth: Arc::new(a.auth),
        every: Duration::from_secs(600),
    };
    let summary = worker.run_once(&Stop::new()).await.unwrap();
    assert_eq!(
        summary.as_deref(),
        Some("deleted 2 expired rate-limit and login-failure rows")
    );
    assert_eq!(meta.login_failures("ip|10.0.0.1").await.unwrap(), None);
    assert!(meta.login_failures("ip|10.0.0.2").await.unwrap().is_some());
    // The live window kept its count.
    assert_eq!(
        meta.hit_rate_window("ip|10.0.0.2", now, hour, false)
            .await
            .unwrap(),
        (now - 1000, 1)
    );
    assert_eq!(worker.run_once(&Stop::new()).await.unwrap(), None);
}
