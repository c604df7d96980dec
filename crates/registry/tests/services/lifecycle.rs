//! Tag rules, pull statistics and quotas in the core services, over a real
//! filesystem store and SQLite (non-admin callers included, which the
//! HTTP tests reach only with authentication on).

use std::sync::Arc;

use berth_oci::{Digest, Reference};
use berth_registry::{Caller, Error, Registry, Settings};
use bytes::Bytes;

use super::{body, n, registry};

/// Pushes an image manifest (over the empty config) whose content differs by
/// `seed`; returns its digest.
async fn push_tagged(
    reg: &Registry,
    repo: &str,
    tag: &str,
    seed: &str,
    caller: &Caller,
) -> Result<Digest, Error> {
    let config = Digest::sha256(b"{}");
    if reg.blob_size(&n(repo), &config).await.is_err() {
        reg.push_blob(&n(repo), &config, None, body(b"{}")).await?;
    }
    let m = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":2}},"layers":[],"annotations":{{"seed":"{seed}"}}}}"#
    );
    reg.put_manifest(
        &n(repo),
        &Reference::Tag(berth_oci::Tag::parse(tag).unwrap()),
        None,
        Bytes::from(m),
        &[],
        caller,
    )
    .await
    .map(|p| p.digest)
}

#[tokio::test]
async fn tag_rules_refuse_moves_and_deletes_naming_the_rule() {
    use berth_registry::TagRuleKind::{Immutable, Protected};
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path(), Settings::default()).await;
    let admin = Caller::system("admin");
    let dev = Caller {
        account: Some("dev".into()),
        ip: None,
        namespace_admin: false,
    };
    reg.add_tag_rule(&super::ns("acme"), "acme", "v*", Immutable, &admin)
        .await
        .unwrap();
    let (latest_rule, _) = reg
        .add_tag_rule(
            &super::ns("acme"),
            "acme/web-*",
            "latest",
            Protected,
            &admin,
        )
        .await
        .unwrap();
    assert!(matches!(
        reg.add_tag_rule(&super::ns("acme"), "other/x", "v*", Immutable, &admin)
            .await,
        Err(Error::InvalidParameter(_))
    ));
    let rules = reg.tag_rules(&super::n("acme/web-api")).await.unwrap();
    assert!(rules.is_protected(&super::t("latest")) && rules.is_immutable(&super::t("v1")));
    assert!(!reg
        .tag_rules(&super::n("acme/db"))
        .await
        .unwrap()
        .is_protected(&super::t("latest")));

    // Immutable: the first push wins, a move is refused even for admins,
    // the same manifest again is fine.
    let v1 = push_tagged(&reg, "acme/web-api", "v1.2.3", "a", &dev)
        .await
        .unwrap();
    for who in [&dev, &admin] {
        let err = push_tagged(&reg, "acme/web-api", "v1.2.3", "b", who)
            .await
            .unwrap_err();
        match err {
            Error::Denied(m) => assert_eq!(
                m,
                "tag \"v1.2.3\" is immutable (rule \"v*\" on acme): it cannot be overwritten"
            ),
            other => panic!("expected DENIED, got {other:?}"),
        }
    }
    assert_eq!(
        push_tagged(&reg, "acme/web-api", "v1.2.3", "a", &dev)
            .await
            .unwrap(),
        v1
    );
    assert_eq!(
        reg.get_manifest(
            &n("acme/web-api"),
            &Reference::Tag(berth_oci::Tag::parse("v1.2.3").unwrap())
        )
        .await
        .unwrap()
        .digest,
        v1
    );

    // Protected: created by anyone, moved only by a namespace admin.
    push_tagged(&reg, "acme/web-api", "latest", "a", &dev)
        .await
        .unwrap();
    let err = push_tagged(&reg, "acme/web-api", "latest", "c", &dev)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Denied(m) if m.contains("is protected (rule \"latest\" on acme/web-*)")),
        "{err:?}"
    );
    assert_eq!(err.kind(), berth_registry::Kind::PermissionDenied);
    let moved = push_tagged(&reg, "acme/web-api", "latest", "c", &admin)
        .await
        .unwrap();

    // Deletes: tag by name, or the manifest carrying it, only by admins.
    let latest = Reference::Tag(berth_oci::Tag::parse("latest").unwrap());
    assert!(matches!(
        reg.delete_manifest(&n("acme/web-api"), &latest, &dev).await,
        Err(Error::Denied(_))
    ));
    assert!(matches!(
        reg.delete_manifest(&n("acme/web-api"), &Reference::Digest(moved.clone()), &dev)
            .await,
        Err(Error::Denied(_))
    ));
    assert!(matches!(
        reg.delete_manifest(&n("acme/web-api"), &Reference::Tag(berth_oci::Tag::parse("v1.2.3").unwrap()), &dev).await,
        Err(Error::Denied(m)) if m.contains("immutable")
    ));
    assert_eq!(
        reg.get_manifest(&n("acme/web-api"), &latest)
            .await
            .unwrap()
            .digest,
        moved,
        "a refused delete leaves the tag and the cache intact"
    );
    // Untagged manifests and unprotected tags are the developer's to delete.
    push_tagged(&reg, "acme/web-api", "feature", "d", &dev)
        .await
        .unwrap();
    reg.delete_manifest(
        &n("acme/web-api"),
        &Reference::Tag(berth_oci::Tag::parse("feature").unwrap()),
        &dev,
    )
    .await
    .unwrap();
    reg.delete_manifest(&n("acme/web-api"), &latest, &admin)
        .await
        .unwrap();

    // Removing the rule lifts it at once (the cache is invalidated).
    reg.remove_tag_rule(&super::ns("acme"), latest_rule.id, &admin)
        .await
        .unwrap();
    assert!(!reg
        .tag_rules(&super::n("acme/web-api"))
        .await
        .unwrap()
        .is_protected(&super::t("latest")));
    assert!(matches!(
        reg.remove_tag_rule(&super::ns("acme"), latest_rule.id, &admin)
            .await,
        Err(Error::NotFound(_))
    ));
}

#[tokio::test]
async fn concurrent_pushes_of_an_immutable_tag_have_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Arc::new(registry(dir.path(), Settings::default()).await);
    reg.add_tag_rule(
        &super::ns("acme"),
        "acme",
        "v*",
        berth_registry::TagRuleKind::Immutable,
        &Caller::system("a"),
    )
    .await
    .unwrap();
    push_tagged(&reg, "acme/app", "seed", "0", &Caller::default())
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let reg = reg.clone();
        tasks.push(tokio::spawn(async move {
            push_tagged(&reg, "acme/app", "v2", &i.to_string(), &Caller::default()).await
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(d) => winners.push(d),
            Err(Error::Denied(_)) => {}
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(winners.len(), 1);
    assert_eq!(
        reg.get_manifest(
            &n("acme/app"),
            &Reference::Tag(berth_oci::Tag::parse("v2").unwrap())
        )
        .await
        .unwrap()
        .digest,
        winners[0]
    );
}

#[tokio::test]
async fn pulls_are_counted_in_memory_and_flushed_in_batches() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path(), Settings::default()).await;
    let d = push_tagged(&reg, "p/app", "v1", "a", &Caller::default())
        .await
        .unwrap();
    let by_tag = Reference::Tag(berth_oci::Tag::parse("v1").unwrap());
    for _ in 0..5 {
        reg.record_pull(&n("p/app"), &by_tag, &d);
    }
    reg.record_pull(&n("p/app"), &Reference::Digest(d.clone()), &d);
    // The API view merges what is not flushed yet.
    let tags = reg.repository_tags(&super::n("p/app")).await.unwrap();
    assert_eq!(tags[0].pull_count, 5);
    assert!(tags[0].last_pulled_at.is_some());
    let manifests = reg.repository_manifests(&super::n("p/app")).await.unwrap();
    assert_eq!(manifests[0].pull_count, 6);
    assert_eq!(
        manifests[0].tags,
        vec![berth_oci::Tag::parse("v1").unwrap()]
    );
    assert_eq!(
        manifests[0].total_size,
        manifests[0].size + 2,
        "manifest plus config"
    );
    assert_eq!(tags[0].size, manifests[0].total_size);
    // Nothing is in the database until the flush.
    let inv = crate::meta_of(dir.path())
        .await
        .inventory(&super::n("p/app"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(inv.manifests[0].pull_count, 0);
    assert_eq!(
        reg.flush_pulls().await.unwrap(),
        2,
        "one manifest row, one tag row"
    );
    assert_eq!(reg.flush_pulls().await.unwrap(), 0);
    let inv = crate::meta_of(dir.path())
        .await
        .inventory(&super::n("p/app"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (inv.manifests[0].pull_count, inv.tags[0].pull_count),
        (6, 5)
    );
    // After the flush the view shows the same figures, from the database.
    assert_eq!(reg.repository_tags(&super::n("p/app")).await.unwrap(), tags);
    assert!(matches!(
        reg.repository_tags(&super::n("p/none")).await,
        Err(Error::NameUnknown(_))
    ));
}

fn owned(data: Vec<u8>) -> berth_store::ByteStream {
    // Two chunks, so a cut-off can happen mid-stream.
    let half = data.len() / 2;
    let (a, b) = (data[..half].to_vec(), data[half..].to_vec());
    Box::pin(futures_util::stream::iter([
        Ok::<_, std::io::Error>(Bytes::from(a)),
        Ok(Bytes::from(b)),
    ]))
}

fn denied(r: Result<impl std::fmt::Debug, Error>) -> String {
    match r {
        Err(Error::Denied(m)) => m,
        other => panic!("expected DENIED, got {other:?}"),
    }
}

#[tokio::test]
async fn quota_refuses_every_upload_path_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path(), Settings::default()).await;
    let admin = Caller::system("admin");
    let fits = vec![1u8; 600];
    let d_fits = Digest::sha256(&fits);
    reg.push_blob(&n("q/a"), &d_fits, Some(600), owned(fits.clone()))
        .await
        .unwrap();
    let q = reg.set_quota(&super::ns("q"), 1000, &admin).await.unwrap();
    assert_eq!((q.used_bytes, q.available_bytes), (600, 400));

    let big = vec![2u8; 500];
    let d_big = Digest::sha256(&big);
    // Monolithic with a length: refused before writing.
    let m = denied(
        reg.push_blob(&n("q/a"), &d_big, Some(500), owned(big.clone()))
            .await,
    );
    assert!(
        m.starts_with("storage quota of namespace q exceeded: blob sha256:")
            && m.contains("needs 500 B, but only 400 B of its 1000 B quota is free"),
        "{m}"
    );
    // Streamed without a length: cut off.
    let m = denied(
        reg.push_blob(&n("q/a"), &d_big, None, owned(big.clone()))
            .await,
    );
    assert!(m.contains("needs more than 400 B"), "{m}");
    // Chunked: a PATCH with a length, a streamed PATCH, a final PUT.
    let up = reg.start_upload(&n("q/b")).await.unwrap();
    denied(
        reg.append_upload(&n("q/b"), &up.id, Some(0), Some(500), owned(big.clone()))
            .await,
    );
    assert!(
        matches!(
            reg.upload(&n("q/b"), &up.id).await,
            Err(Error::UploadUnknown)
        ),
        "a refused session is cancelled"
    );
    let up = reg.start_upload(&n("q/b")).await.unwrap();
    reg.append_upload(
        &n("q/b"),
        &up.id,
        None,
        Some(300),
        owned(big[..300].to_vec()),
    )
    .await
    .unwrap();
    denied(
        reg.append_upload(&n("q/b"), &up.id, None, None, owned(big[300..].to_vec()))
            .await,
    );
    assert!(matches!(
        reg.upload(&n("q/b"), &up.id).await,
        Err(Error::UploadUnknown)
    ));
    let up = reg.start_upload(&n("q/b")).await.unwrap();
    reg.append_upload(
        &n("q/b"),
        &up.id,
        None,
        Some(300),
        owned(big[..300].to_vec()),
    )
    .await
    .unwrap();
    denied(
        reg.finish_upload(
            &n("q/b"),
            &up.id,
            &d_big,
            Some((None, Some(200), owned(big[300..].to_vec()))),
        )
        .await,
    );
    assert!(
        reg.store().upload_list().await.unwrap().is_empty(),
        "no session left"
    );
    assert_eq!(
        reg.store().stat(&d_big).await.unwrap(),
        None,
        "no blob written"
    );
    assert_eq!(
        reg.quota(&super::ns("q"))
            .await
            .unwrap()
            .unwrap()
            .used_bytes,
        600
    );

    // Two sessions that each fit, but not together: open sessions count,
    // so the second is refused as it is sent, and removed. What fits goes
    // through every path; content the namespace holds is free.
    let small = vec![3u8; 300];
    let d_small = Digest::sha256(&small);
    let other = vec![4u8; 300];
    let up = reg.start_upload(&n("q/b")).await.unwrap();
    let up2 = reg.start_upload(&n("q/b")).await.unwrap();
    reg.append_upload(&n("q/b"), &up.id, None, None, owned(small.clone()))
        .await
        .unwrap();
    let m = denied(
        reg.append_upload(&n("q/b"), &up2.id, None, None, owned(other.clone()))
            .await,
    );
    assert!(
        m.contains("the upload to q/b needs more than 100 B")
            && m.contains("(600 B stored, 300 B held by open uploads)"),
        "{m}"
    );
    reg.finish_upload(&n("q/b"), &up.id, &d_small, None)
        .await
        .unwrap();
    assert!(reg.store().upload_list().await.unwrap().is_empty());
    assert_eq!(
        reg.store().stat(&Digest::sha256(&other)).await.unwrap(),
        None
    );
    assert_eq!(
        reg.quota(&super::ns("q"))
            .await
            .unwrap()
            .unwrap()
            .available_bytes,
        100
    );
    reg.push_blob(&n("q/c"), &d_fits, None, owned(fits.clone()))
        .await
        .unwrap();
    assert!(reg
        .mount_blob(&n("q/d"), &d_fits, Some(&n("q/a")))
        .await
        .unwrap());
    assert_eq!(
        reg.quota(&super::ns("q"))
            .await
            .unwrap()
            .unwrap()
            .used_bytes,
        900
    );

    // Mounting from another namespace counts, and is refused over quota.
    reg.push_blob(&n("elsewhere/x"), &d_big, Some(500), owned(big.clone()))
        .await
        .unwrap();
    denied(
        reg.mount_blob(&n("q/a"), &d_big, Some(&n("elsewhere/x")))
            .await,
    );
    // A manifest is content too: 100 bytes are free.
    let config = Digest::sha256(b"{}");
    reg.push_blob(&n("q/a"), &config, None, body(b"{}"))
        .await
        .unwrap();
    let m = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":2}},"layers":[]}}"#
    );
    assert!(m.len() > 98);
    denied(
        reg.put_manifest(
            &n("q/a"),
            &Reference::Tag(berth_oci::Tag::parse("v1").unwrap()),
            None,
            Bytes::from(m.clone()),
            &[],
            &admin,
        )
        .await,
    );
    // Full: even starting an upload is refused.
    reg.set_quota(&super::ns("q"), 902, &admin).await.unwrap();
    denied(reg.start_upload(&n("q/a")).await);

    // Usage: every blob is stored once per namespace and counts toward the
    // quota, but no manifest references these, so no repository uses them:
    // they await garbage collection.
    let u = reg.namespace_usage(&super::ns("q")).await.unwrap();
    assert_eq!(u.total_bytes, 902);
    assert_eq!(u.unreferenced_bytes, 902);
    assert_eq!(u.quota.as_ref().unwrap().available_bytes, 0);
    let a = u.repositories.iter().find(|r| r.name == "q/a").unwrap();
    assert_eq!((a.total_bytes, a.unreferenced_bytes), (0, 602));
    let b = reg.repository_usage(&super::n("q/b")).await.unwrap();
    assert_eq!(
        (b.total_bytes, b.unreferenced_bytes, b.unreferenced_blobs),
        (0, 300, 1)
    );
    assert!(matches!(
        reg.repository_usage(&super::n("q/none")).await,
        Err(Error::NotFound(_) | Error::NameUnknown(_))
    ));

    // Without a quota everything goes again.
    reg.remove_quota(&super::ns("q"), &admin).await.unwrap();
    assert!(matches!(
        reg.remove_quota(&super::ns("q"), &admin).await,
        Err(Error::NotFound(_))
    ));
    reg.put_manifest(
        &n("q/a"),
        &Reference::Tag(berth_oci::Tag::parse("v1").unwrap()),
        None,
        Bytes::from(m),
        &[],
        &admin,
    )
    .await
    .unwrap();
}
