//! Pull policies across replicas on one PostgreSQL: each replica caches a
//! verdict per manifest (a scan result written behind its back is not
//! seen: no query per pull), and drops it when another replica stores a
//! scan result of the repository (`scan_results` notifies, migration 18)
//! or changes the namespace's policy (`scan_policies` notifies).

use berth_meta::changes::Change;
use berth_oci::Digest;
use berth_registry::scanning::{PolicyChange, Unscanned};
use berth_registry::{Caller, Error, Reader, Registry};
use berth_testkit::Postgres;
use bytes::Bytes;

use super::invalidation::{replica, tag};
use super::{body, n, ns};

/// Pushes a container image whose one layer is an empty tar (a scan of it
/// finds nothing) as `t`; `note` makes it distinct.
async fn push_image(r: &Registry, t: &str, note: &str) -> Digest {
    let app = n("acme/app");
    let config = b"{}";
    let layer = vec![0u8; 1024];
    let root = Caller::system("root");
    for blob in [&config[..], &layer[..]] {
        r.push_blob(&app, &Digest::sha256(blob), None, body(blob))
            .await
            .unwrap();
    }
    let m = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":1024}}],"annotations":{{"n":"{note}"}}}}"#,
        Digest::sha256(config),
        Digest::sha256(&layer)
    );
    r.put_manifest(&app, &tag(t), None, Bytes::from(m), &[], &root)
        .await
        .unwrap()
        .digest
}

/// What `r` answers a pull of `t` by an ordinary reader.
async fn pull(r: &Registry, t: &str) -> Result<(), Error> {
    let app = n("acme/app");
    let reader = Caller {
        account: Some("reader".into()),
        ip: None,
        namespace_admin: false,
    };
    let m = r.get_manifest(&app, &tag(t)).await.unwrap();
    r.may_serve(
        &app,
        &tag(t),
        &m,
        Reader {
            caller: &reader,
            site_admin: false,
        },
    )
    .await
}

fn refused(r: Result<(), Error>, why: &str) {
    match r {
        Err(Error::Denied(m)) => assert!(m.contains(why), "{m}"),
        other => panic!("expected a refusal ({why}), got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_agree_on_pull_policies() {
    let pg = Postgres::start();
    let url = pg.create_database("gates");
    let dir = tempfile::tempdir().unwrap();
    let a = replica(&url, dir.path()).await;
    let mut b = replica(&url, dir.path()).await;
    let root = Caller::system("root");
    let app = n("acme/app");
    let one = push_image(&a.registry, "v1", "1").await;

    // No policy: served. A policy set through A is heard by B.
    pull(&b.registry, "v1").await.unwrap();
    b.forget();
    let deny = PolicyChange {
        unscanned: Some(Unscanned::Deny),
        ..Default::default()
    };
    a.registry
        .set_scan_policy(&ns("acme"), deny, &root)
        .await
        .unwrap();
    b.hears(Change::Table("scan_policies".into())).await;
    refused(pull(&b.registry, "v1").await, "has not been scanned yet");

    // B cached that verdict: a result written behind its back (triggers
    // off, as if the notification were lost) is not seen.
    pg.psql(
        "gates",
        &format!(
            "SET session_replication_role = replica;
             INSERT INTO scan_results (repository_id, digest, platform, scanned_at, vulndb_at,
               packages, critical, high, medium, low, unknown, report, error)
             SELECT id, '{one}', NULL, 1, NULL, 0, 0, 0, 0, 0, 0, '{{}}', NULL
             FROM repositories WHERE name = 'acme/app'"
        ),
    );
    refused(pull(&b.registry, "v1").await, "has not been scanned yet");

    // A scan through A is heard by B, which serves it now.
    b.forget();
    let report = a.registry.scan_manifest(&app, &one, None).await.unwrap();
    assert!(report.images[0].error.is_none(), "{report:?}");
    b.hears(Change::Scan(app.clone(), one.clone())).await;
    pull(&b.registry, "v1").await.unwrap();

    // Another image, not scanned: refused by B until A allows unscanned
    // images again.
    push_image(&a.registry, "v2", "2").await;
    refused(pull(&b.registry, "v2").await, "has not been scanned yet");
    b.forget();
    let allow = PolicyChange {
        unscanned: Some(Unscanned::Allow),
        ..Default::default()
    };
    a.registry
        .set_scan_policy(&ns("acme"), allow, &root)
        .await
        .unwrap();
    b.hears(Change::Table("scan_policies".into())).await;
    pull(&b.registry, "v2").await.unwrap();
}
