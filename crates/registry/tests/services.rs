//! Core services over a real filesystem store and a real SQLite file.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use berth_meta::Meta;
use berth_oci::{Digest, Reference};
use berth_registry::{Caller, Error, Registry, Settings};
use berth_store::FsStore;
use bytes::Bytes;

#[path = "services/auth.rs"]
mod auth;

async fn registry(dir: &std::path::Path, settings: Settings) -> Registry {
    let store = FsStore::open(dir.join("data")).unwrap();
    let meta = Meta::open_sqlite(&dir.join("berth.db")).await.unwrap();
    Registry::new(Arc::new(store), meta, settings)
}

fn body(data: &'static [u8]) -> berth_store::ByteStream {
    Box::pin(futures_util::stream::iter([Ok::<_, std::io::Error>(
        Bytes::from_static(data),
    )]))
}

#[tokio::test]
async fn purge_removes_only_idle_uploads() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(
        dir.path(),
        Settings {
            upload_ttl: Duration::from_secs(3600),
            ..Default::default()
        },
    )
    .await;
    let up = reg.start_upload("r").await.unwrap();
    assert_eq!(reg.purge_uploads().await.unwrap(), 0);
    assert!(reg.upload("r", &up.id).await.is_ok());

    let reg = registry(
        dir.path(),
        Settings {
            upload_ttl: Duration::ZERO,
            ..Default::default()
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(reg.purge_uploads().await.unwrap(), 1);
    assert!(matches!(
        reg.upload("r", &up.id).await,
        Err(Error::UploadUnknown)
    ));
    assert!(reg.store().upload_list().await.unwrap().is_empty());
}

#[tokio::test]
async fn manifest_and_tag_lifecycle_is_consistent_with_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path(), Settings::default()).await;
    let config = Digest::sha256(b"{}");
    reg.push_blob("r", &config, None, body(b"{}"))
        .await
        .unwrap();
    let m1 = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":2}},"layers":[]}}"#
    );
    let m2 = m1.replace(
        "\"layers\":[]",
        "\"layers\":[],\"annotations\":{\"v\":\"2\"}",
    );
    let tag = Reference::Tag("latest".into());
    let p1 = reg
        .put_manifest(
            "r",
            &tag,
            None,
            Bytes::from(m1.clone()),
            &[],
            &Caller::default(),
        )
        .await
        .unwrap();
    // Warm the cache, then move the tag and check the cache follows.
    assert_eq!(
        reg.get_manifest("r", &tag).await.unwrap().digest,
        p1.digest.as_str()
    );
    let p2 = reg
        .put_manifest("r", &tag, None, Bytes::from(m2), &[], &Caller::default())
        .await
        .unwrap();
    assert_eq!(
        reg.get_manifest("r", &tag).await.unwrap().digest,
        p2.digest.as_str()
    );
    reg.delete_manifest(
        "r",
        &Reference::Digest(p2.digest.clone()),
        &Caller::default(),
    )
    .await
    .unwrap();
    assert!(matches!(
        reg.get_manifest("r", &tag).await,
        Err(Error::ManifestUnknown(_))
    ));
    assert!(matches!(
        reg.get_manifest("r", &Reference::Digest(p2.digest)).await,
        Err(Error::ManifestUnknown(_))
    ));
    assert_eq!(
        reg.get_manifest("r", &Reference::Digest(p1.digest))
            .await
            .unwrap()
            .content,
        Bytes::from(m1.clone())
    );
    // The cached tag list follows tag writes and deletes.
    let list = |p: berth_registry::Page| p.items().to_vec();
    assert_eq!(
        list(reg.tags("r", None, None).await.unwrap()),
        Vec::<String>::new()
    );
    let t = |s: &str| Reference::Tag(s.to_owned());
    let m3 = m1.replace(
        "\"layers\":[]",
        "\"layers\":[],\"annotations\":{\"v\":\"3\"}",
    );
    reg.put_manifest(
        "r",
        &t("b"),
        None,
        Bytes::from(m3.clone()),
        &["a".to_owned()],
        &Caller::default(),
    )
    .await
    .unwrap();
    assert_eq!(list(reg.tags("r", None, None).await.unwrap()), ["a", "b"]);
    reg.put_manifest("r", &t("c"), None, Bytes::from(m3), &[], &Caller::default())
        .await
        .unwrap();
    assert_eq!(
        list(reg.tags("r", None, None).await.unwrap()),
        ["a", "b", "c"]
    );
    assert_eq!(
        list(reg.tags("r", Some(1), Some("a")).await.unwrap()),
        ["b"]
    );
    reg.delete_manifest("r", &t("b"), &Caller::default())
        .await
        .unwrap();
    assert_eq!(list(reg.tags("r", None, None).await.unwrap()), ["a", "c"]);
    assert!(matches!(
        reg.tags("nope", None, None).await,
        Err(Error::NameUnknown(_))
    ));

    // Unlinking a blob is visible at once despite the link cache.
    assert_eq!(reg.blob_size("r", &config).await.unwrap(), 2);
    reg.delete_blob("r", &config, &Caller::default())
        .await
        .unwrap();
    assert!(matches!(
        reg.blob_size("r", &config).await,
        Err(Error::BlobUnknown(_))
    ));
}

#[tokio::test]
async fn metadata_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let d = Digest::sha256(b"persist");
    {
        let reg = registry(dir.path(), Settings::default()).await;
        reg.push_blob("keep/me", &d, Some(7), body(b"persist"))
            .await
            .unwrap();
        reg.meta().close().await;
    }
    let reg = registry(dir.path(), Settings::default()).await;
    assert_eq!(reg.blob_size("keep/me", &d).await.unwrap(), 7);
    assert_eq!(
        reg.catalog(None, None).await.unwrap().items().to_vec(),
        vec!["keep/me".to_owned()]
    );
}

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
    if reg.blob_size(repo, &config).await.is_err() {
        reg.push_blob(repo, &config, None, body(b"{}")).await?;
    }
    let m = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":2}},"layers":[],"annotations":{{"seed":"{seed}"}}}}"#
    );
    reg.put_manifest(
        repo,
        &Reference::Tag(tag.into()),
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
    reg.add_tag_rule("acme", "acme", "v*", Immutable, &admin)
        .await
        .unwrap();
    let (latest_rule, _) = reg
        .add_tag_rule("acme", "acme/web-*", "latest", Protected, &admin)
        .await
        .unwrap();
    assert!(matches!(
        reg.add_tag_rule("acme", "other/x", "v*", Immutable, &admin)
            .await,
        Err(Error::InvalidParameter(_))
    ));
    let rules = reg.tag_rules("acme/web-api").await.unwrap();
    assert!(rules.is_protected("latest") && rules.is_immutable("v1"));
    assert!(!reg
        .tag_rules("acme/db")
        .await
        .unwrap()
        .is_protected("latest"));

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
        reg.get_manifest("acme/web-api", &Reference::Tag("v1.2.3".into()))
            .await
            .unwrap()
            .digest,
        v1.as_str()
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
    assert_eq!(err.status(), 403);
    let moved = push_tagged(&reg, "acme/web-api", "latest", "c", &admin)
        .await
        .unwrap();

    // Deletes: tag by name, or the manifest carrying it, only by admins.
    let latest = Reference::Tag("latest".into());
    assert!(matches!(
        reg.delete_manifest("acme/web-api", &latest, &dev).await,
        Err(Error::Denied(_))
    ));
    assert!(matches!(
        reg.delete_manifest("acme/web-api", &Reference::Digest(moved.clone()), &dev)
            .await,
        Err(Error::Denied(_))
    ));
    assert!(matches!(
        reg.delete_manifest("acme/web-api", &Reference::Tag("v1.2.3".into()), &dev).await,
        Err(Error::Denied(m)) if m.contains("immutable")
    ));
    assert_eq!(
        reg.get_manifest("acme/web-api", &latest)
            .await
            .unwrap()
            .digest,
        moved.as_str(),
        "a refused delete leaves the tag and the cache intact"
    );
    // Untagged manifests and unprotected tags are the developer's to delete.
    push_tagged(&reg, "acme/web-api", "feature", "d", &dev)
        .await
        .unwrap();
    reg.delete_manifest("acme/web-api", &Reference::Tag("feature".into()), &dev)
        .await
        .unwrap();
    reg.delete_manifest("acme/web-api", &latest, &admin)
        .await
        .unwrap();

    // Removing the rule lifts it at once (the cache is invalidated).
    reg.remove_tag_rule("acme", latest_rule.id, &admin)
        .await
        .unwrap();
    assert!(!reg
        .tag_rules("acme/web-api")
        .await
        .unwrap()
        .is_protected("latest"));
    assert!(matches!(
        reg.remove_tag_rule("acme", latest_rule.id, &admin).await,
        Err(Error::NotFound(_))
    ));
}

#[tokio::test]
async fn concurrent_pushes_of_an_immutable_tag_have_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Arc::new(registry(dir.path(), Settings::default()).await);
    reg.add_tag_rule(
        "acme",
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
        reg.get_manifest("acme/app", &Reference::Tag("v2".into()))
            .await
            .unwrap()
            .digest,
        winners[0].as_str()
    );
}

#[tokio::test]
async fn pulls_are_counted_in_memory_and_flushed_in_batches() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path(), Settings::default()).await;
    let d = push_tagged(&reg, "p/app", "v1", "a", &Caller::default())
        .await
        .unwrap();
    let by_tag = Reference::Tag("v1".into());
    for _ in 0..5 {
        reg.record_pull("p/app", &by_tag, d.as_str());
    }
    reg.record_pull("p/app", &Reference::Digest(d.clone()), d.as_str());
    // The API view merges what is not flushed yet.
    let tags = reg.repository_tags("p/app").await.unwrap();
    assert_eq!(tags[0].pull_count, 5);
    assert!(tags[0].last_pulled_at.is_some());
    let manifests = reg.repository_manifests("p/app").await.unwrap();
    assert_eq!(manifests[0].pull_count, 6);
    assert_eq!(manifests[0].tags, vec!["v1".to_owned()]);
    assert_eq!(
        manifests[0].total_size,
        manifests[0].size + 2,
        "manifest plus config"
    );
    assert_eq!(tags[0].size, manifests[0].total_size);
    // Nothing is in the database until the flush.
    let inv = reg.meta().inventory("p/app").await.unwrap().unwrap();
    assert_eq!(inv.manifests[0].pull_count, 0);
    assert_eq!(
        reg.flush_pulls().await.unwrap(),
        2,
        "one manifest row, one tag row"
    );
    assert_eq!(reg.flush_pulls().await.unwrap(), 0);
    let inv = reg.meta().inventory("p/app").await.unwrap().unwrap();
    assert_eq!(
        (inv.manifests[0].pull_count, inv.tags[0].pull_count),
        (6, 5)
    );
    // After the flush the view shows the same figures, from the database.
    assert_eq!(reg.repository_tags("p/app").await.unwrap(), tags);
    assert!(matches!(
        reg.repository_tags("p/none").await,
        Err(Error::NameUnknown(_))
    ));
}
