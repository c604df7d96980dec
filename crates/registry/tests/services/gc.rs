//! Garbage collection over a real store and database, with an injected
//! clock (no sleeping): `now` is moved past the grace period instead.

use std::time::Duration;

use berth_oci::{Digest, Reference};
use berth_registry::{Caller, Error, Registry, Settings};
use bytes::Bytes;

use super::{body, n, registry};

const HOUR: i64 = 3_600_000;

fn now() -> i64 {
    berth_meta::now_ms()
}

/// Pushes a config and a layer, then an image manifest over them.
pub(crate) async fn push_image(
    reg: &Registry,
    repo: &str,
    tag: &str,
    seed: &str,
) -> (Digest, Vec<Digest>) {
    let config = format!("{{\"seed\":\"{seed}\"}}");
    let layer = format!("layer {seed}");
    let mut blobs = Vec::new();
    for data in [config.as_bytes(), layer.as_bytes()] {
        let d = Digest::sha256(data);
        reg.push_blob(&n(repo), &d, None, body(data)).await.unwrap();
        blobs.push(d);
    }
    let m = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":{}}}]}}"#,
        blobs[0],
        config.len(),
        blobs[1],
        layer.len()
    );
    let p = reg
        .put_manifest(
            &n(repo),
            &Reference::Tag(berth_oci::Tag::parse(tag).unwrap()),
            None,
            Bytes::from(m),
            &[],
            &Caller::default(),
        )
        .await
        .unwrap();
    (p.digest, blobs)
}

fn digests(items: &[berth_registry::GcItem]) -> Vec<String> {
    let mut v: Vec<String> = items.iter().map(|i| i.digest.to_string()).collect();
    v.sort();
    v
}

#[tokio::test]
async fn unreferenced_content_goes_only_after_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path(), Settings::default()).await;
    let admin = Caller::system("admin");
    let (manifest, kept) = push_image(&reg, "app", "v1", "a").await;
    let stray = Digest::sha256(b"stray");
    reg.push_blob(&n("app"), &stray, None, body(b"stray"))
        .await
        .unwrap();
    let up = reg.start_upload(&n("app")).await.unwrap();

    // Young: nothing goes.
    let r = reg.run_gc(now(), false, &admin).await.unwrap();
    assert!(
        r.links.is_empty() && r.blobs.is_empty() && r.uploads.is_empty(),
        "{r:?}"
    );
    assert_eq!(r.kept_recent, 0, "young but linked blobs have rows");

    // Past the grace period: the dry run says what would go, and deletes
    // nothing.
    let later = now() + 2 * HOUR;
    let dry = reg.run_gc(later, true, &admin).await.unwrap();
    assert_eq!(digests(&dry.links), vec![stray.to_string()]);
    assert_eq!(digests(&dry.blobs), vec![stray.to_string()]);
    assert_eq!(dry.reclaimed_bytes, 5);
    assert!(dry.uploads.is_empty(), "the upload TTL is 24h");
    assert_eq!(reg.blob_size(&n("app"), &stray).await.unwrap(), 5);

    let done = reg.run_gc(later, false, &admin).await.unwrap();
    assert_eq!(digests(&done.links), digests(&dry.links));
    assert_eq!(digests(&done.blobs), digests(&dry.blobs));
    assert_eq!(done.links[0].repository, Some(n("app")));
    assert!(matches!(
        reg.blob_size(&n("app"), &stray).await,
        Err(Error::BlobUnknown(_))
    ));
    assert_eq!(reg.store().stat(&stray).await.unwrap(), None);
    for d in &kept {
        assert!(
            reg.blob_size(&n("app"), d).await.is_ok(),
            "{d} is referenced"
        );
    }
    assert!(reg
        .get_manifest(&n("app"), &Reference::Digest(manifest.clone()))
        .await
        .is_ok());

    // Abandoned uploads go after the upload TTL.
    let r = reg.run_gc(now() + 25 * HOUR, false, &admin).await.unwrap();
    assert_eq!(r.uploads.len(), 1);
    assert_eq!(r.uploads[0].id, up.id);
    assert!(reg.upload(&n("app"), &up.id).await.is_err());

    // The run history and the audit log have the runs (dry runs are not
    // recorded).
    let runs = crate::meta_of(dir.path())
        .await
        .job_runs("gc", 10)
        .await
        .unwrap();
    assert_eq!(runs.len(), 3);
    assert!(runs.iter().all(|r| r.ok == Some(true)));
    assert_eq!(runs[1].summary.as_ref().unwrap()["blobs"], 1);
    let events = crate::meta_of(dir.path())
        .await
        .audit_events(&berth_meta::audit::AuditFilter {
            action: Some("gc".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 3);
    assert_eq!(events[1].event.actor, "admin");
    assert_eq!(
        events[1].event.detail.as_ref().unwrap()["reclaimed_bytes"],
        5
    );

    // Deleting the manifest lets the next run reclaim its blobs.
    reg.delete_manifest(&n("app"), &Reference::Digest(manifest), &admin)
        .await
        .unwrap();
    let r = reg.run_gc(now() + 2 * HOUR, false, &admin).await.unwrap();
    let mut want: Vec<String> = kept.iter().map(|d| d.to_string()).collect();
    want.sort();
    assert_eq!(digests(&r.blobs), want);
    for d in &kept {
        assert_eq!(reg.store().stat(d).await.unwrap(), None);
    }

    // A re-push of a collected blob heals.
    reg.push_blob(&n("app"), &stray, None, body(b"stray"))
        .await
        .unwrap();
    assert_eq!(reg.blob_size(&n("app"), &stray).await.unwrap(), 5);
}

#[tokio::test]
async fn shared_blobs_stay_while_any_repository_references_them() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path(), Settings::default()).await;
    let admin = Caller::system("admin");
    let (_, blobs) = push_image(&reg, "one", "v1", "shared").await;
    // The same blobs mounted into a second repository with no manifest.
    for d in &blobs {
        assert!(reg.mount_blob(&n("two"), d, Some(&n("one"))).await.unwrap());
    }
    let r = reg.run_gc(now() + 2 * HOUR, false, &admin).await.unwrap();
    assert_eq!(r.links.len(), 2);
    assert!(r.links.iter().all(|l| l.repository == Some(n("two"))));
    assert!(r.blobs.is_empty(), "still referenced from one");
    for d in &blobs {
        assert!(reg.blob_size(&n("one"), d).await.is_ok());
        assert!(reg.blob_size(&n("two"), d).await.is_err());
    }
}

#[tokio::test]
async fn files_without_metadata_are_collected_and_runs_are_exclusive() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(
        dir.path(),
        Settings {
            gc_grace_period: Duration::from_secs(60),
            ..Default::default()
        },
    )
    .await;
    let admin = Caller::system("admin");
    // A file with no row (a crash between publication and link).
    let orphan = Digest::sha256(b"orphan");
    reg.store()
        .put(&orphan, None, body(b"orphan"))
        .await
        .unwrap();
    let r = reg.run_gc(now(), false, &admin).await.unwrap();
    assert_eq!((r.blobs.len(), r.kept_recent), (0, 1));
    let r = reg.run_gc(now() + 61_000, false, &admin).await.unwrap();
    assert_eq!(digests(&r.blobs), vec![orphan.to_string()]);

    // Another replica holds the lease: a run is refused with a conflict.
    let until = now() + 60_000;
    assert!(crate::meta_of(dir.path())
        .await
        .acquire_lease("gc", "other-replica", now(), until)
        .await
        .unwrap());
    let err = reg.run_gc(now(), false, &admin).await.unwrap_err();
    assert!(
        matches!(&err, Error::Conflict(m) if m.contains("other-replica")),
        "{err}"
    );
    assert_eq!(err.kind(), berth_registry::Kind::Conflict);
    // A dry run needs no lease.
    assert!(reg.run_gc(now(), true, &admin).await.is_ok());
    crate::meta_of(dir.path())
        .await
        .release_lease("gc", "other-replica")
        .await
        .unwrap();
    assert!(reg.run_gc(now(), false, &admin).await.is_ok());
}

#[tokio::test]
async fn scheduled_runs_follow_the_interval() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(
        dir.path(),
        Settings {
            gc_interval: Some(Duration::from_secs(3600)),
            ..Default::default()
        },
    )
    .await;
    let t0 = now();
    let ran = |v: Vec<berth_registry::DueJob>| -> Vec<String> {
        v.into_iter()
            .map(|j| {
                assert!(j.outcome.is_ok(), "{:?}", j.outcome);
                j.job
            })
            .collect()
    };
    assert_eq!(ran(reg.run_due_jobs(t0).await.unwrap()), vec!["gc"]);
    assert!(ran(reg.run_due_jobs(t0 + 59 * 60_000).await.unwrap()).is_empty());
    assert_eq!(ran(reg.run_due_jobs(t0 + HOUR).await.unwrap()), vec!["gc"]);
    let off = registry(
        dir.path(),
        Settings {
            gc_interval: None,
            ..Default::default()
        },
    )
    .await;
    assert!(ran(off.run_due_jobs(t0 + 10 * HOUR).await.unwrap()).is_empty());
}
