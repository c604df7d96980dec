//! Core services over a real filesystem store and a real SQLite file (and,
//! for replicas, a throwaway PostgreSQL).

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use berth_meta::Meta;
use berth_oci::{Digest, Reference};
use berth_registry::{Caller, Error, Registry, Settings};
use berth_store::FsStore;
use bytes::Bytes;

#[path = "services/accounts.rs"]
mod accounts;
#[path = "services/auth.rs"]
mod auth;
#[path = "services/gc.rs"]
mod gc;
#[path = "services/invalidation.rs"]
mod invalidation;
#[path = "services/lifecycle.rs"]
mod lifecycle;
#[path = "services/mirror_checks.rs"]
mod mirror_checks;
#[path = "services/pull_gates.rs"]
mod pull_gates;
#[path = "services/replicas.rs"]
mod replicas;
#[path = "services/replication.rs"]
mod replication;
#[path = "services/retention.rs"]
mod retention;
#[path = "services/trust_replicas.rs"]
mod trust_replicas;

async fn registry(dir: &std::path::Path, settings: Settings) -> Registry {
    let store = FsStore::open(dir.join("data")).unwrap();
    let meta = Meta::open_sqlite(&dir.join("berth.db")).await.unwrap();
    Registry::new(Arc::new(store), meta, settings)
}

/// A repository name, for the services' typed parameters.
fn n(name: &str) -> berth_oci::RepositoryName {
    berth_oci::RepositoryName::parse(name).unwrap()
}

/// A tag, for the services' typed parameters.
fn t(tag: &str) -> berth_oci::Tag {
    berth_oci::Tag::parse(tag).unwrap()
}

/// A namespace, for the services' typed parameters.
fn ns(name: &str) -> berth_oci::Namespace {
    berth_oci::Namespace::parse(name).unwrap()
}

/// A valid digest made from a readable seed (see `berth_testkit::digests`).
fn dg(seed: &str) -> Digest {
    berth_testkit::digests::digest(seed)
}

/// A second handle on the registry's database, for what the services do
/// not expose (times, leases, raw audit reads).
async fn meta_of(dir: &std::path::Path) -> Meta {
    Meta::open_sqlite(&dir.join("berth.db")).await.unwrap()
}

fn body(data: &[u8]) -> berth_store::ByteStream {
    Box::pin(futures_util::stream::iter([Ok::<_, std::io::Error>(
        Bytes::copy_from_slice(data),
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
    let up = reg.start_upload(&n("r")).await.unwrap();
    assert_eq!(reg.purge_uploads().await.unwrap(), 0);
    assert!(reg.upload(&n("r"), &up.id).await.is_ok());

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
        reg.upload(&n("r"), &up.id).await,
        Err(Error::UploadUnknown)
    ));
    assert!(reg.store().upload_list().await.unwrap().is_empty());
}

#[tokio::test]
async fn manifest_and_tag_lifecycle_is_consistent_with_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path(), Settings::default()).await;
    let config = Digest::sha256(b"{}");
    reg.push_blob(&n("r"), &config, None, body(b"{}"))
        .await
        .unwrap();
    let m1 = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":2}},"layers":[]}}"#
    );
    let m2 = m1.replace(
        "\"layers\":[]",
        "\"layers\":[],\"annotations\":{\"v\":\"2\"}",
    );
    let tag = Reference::Tag(berth_oci::Tag::parse("latest").unwrap());
    let p1 = reg
        .put_manifest(
            &n("r"),
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
        reg.get_manifest(&n("r"), &tag).await.unwrap().digest,
        p1.digest
    );
    let p2 = reg
        .put_manifest(
            &n("r"),
            &tag,
            None,
            Bytes::from(m2),
            &[],
            &Caller::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        reg.get_manifest(&n("r"), &tag).await.unwrap().digest,
        p2.digest
    );
    reg.delete_manifest(
        &n("r"),
        &Reference::Digest(p2.digest.clone()),
        &Caller::default(),
    )
    .await
    .unwrap();
    assert!(matches!(
        reg.get_manifest(&n("r"), &tag).await,
        Err(Error::ManifestUnknown(_))
    ));
    assert!(matches!(
        reg.get_manifest(&n("r"), &Reference::Digest(p2.digest))
            .await,
        Err(Error::ManifestUnknown(_))
    ));
    assert_eq!(
        reg.get_manifest(&n("r"), &Reference::Digest(p1.digest))
            .await
            .unwrap()
            .content,
        Bytes::from(m1.clone())
    );
    // The cached tag list follows tag writes and deletes.
    let list = |p: berth_registry::Page| p.items().to_vec();
    assert_eq!(
        list(reg.tags(&n("r"), None, None).await.unwrap()),
        Vec::<String>::new()
    );
    let t = |s: &str| Reference::Tag(berth_oci::Tag::parse(s).unwrap());
    let m3 = m1.replace(
        "\"layers\":[]",
        "\"layers\":[],\"annotations\":{\"v\":\"3\"}",
    );
    reg.put_manifest(
        &n("r"),
        &t("b"),
        None,
        Bytes::from(m3.clone()),
        &[berth_oci::Tag::parse("a").unwrap()],
        &Caller::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        list(reg.tags(&n("r"), None, None).await.unwrap()),
        ["a", "b"]
    );
    reg.put_manifest(
        &n("r"),
        &t("c"),
        None,
        Bytes::from(m3),
        &[],
        &Caller::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        list(reg.tags(&n("r"), None, None).await.unwrap()),
        ["a", "b", "c"]
    );
    assert_eq!(
        list(reg.tags(&n("r"), Some(1), Some("a")).await.unwrap()),
        ["b"]
    );
    reg.delete_manifest(&n("r"), &t("b"), &Caller::default())
        .await
        .unwrap();
    assert_eq!(
        list(reg.tags(&n("r"), None, None).await.unwrap()),
        ["a", "c"]
    );
    assert!(matches!(
        reg.tags(&n("nope"), None, None).await,
        Err(Error::NameUnknown(_))
    ));

    // Unlinking a blob is visible at once despite the link cache.
    assert_eq!(reg.blob_size(&n("r"), &config).await.unwrap(), 2);
    reg.delete_blob(&n("r"), &config, &Caller::default())
        .await
        .unwrap();
    assert!(matches!(
        reg.blob_size(&n("r"), &config).await,
        Err(Error::BlobUnknown(_))
    ));
}

#[tokio::test]
async fn metadata_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let d = Digest::sha256(b"persist");
    {
        let reg = registry(dir.path(), Settings::default()).await;
        reg.push_blob(&n("keep/me"), &d, Some(7), body(b"persist"))
            .await
            .unwrap();
        reg.close().await;
    }
    let reg = registry(dir.path(), Settings::default()).await;
    assert_eq!(reg.blob_size(&n("keep/me"), &d).await.unwrap(), 7);
    assert_eq!(
        reg.catalog(None, None).await.unwrap().items().to_vec(),
        vec!["keep/me".to_owned()]
    );
}

/// An index's blob entries (a BuildKit cache) must be linked, and its
/// buildx attestation manifests are recorded as attestations of the image
/// each describes.
#[tokio::test]
async fn index_blob_entries_and_attestations() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path(), Settings::default()).await;
    let repo = n("acme/app");
    let put = |reference: &str, bytes: String| {
        let reg = &reg;
        let repo = repo.clone();
        let reference = Reference::parse(reference).unwrap();
        async move {
            reg.put_manifest(
                &repo,
                &reference,
                None,
                Bytes::from(bytes),
                &[],
                &Caller::default(),
            )
            .await
        }
    };
    let config = Digest::sha256(b"{}");
    reg.push_blob(&repo, &config, None, body(b"{}"))
        .await
        .unwrap();
    let image = |note: &str| {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":2}},"layers":[],"annotations":{{"n":"{note}"}}}}"#
        )
    };
    let (img, att) = (image("image"), image("attestation"));
    let (img_d, att_d) = (
        Digest::sha256(img.as_bytes()),
        Digest::sha256(att.as_bytes()),
    );
    put(img_d.as_str(), img).await.unwrap();
    put(att_d.as_str(), att).await.unwrap();
    let layer = Digest::sha256(b"cache layer");
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
            {{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{img_d}","size":1,"platform":{{"os":"linux","architecture":"amd64"}}}},
            {{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{att_d}","size":1,"platform":{{"os":"unknown","architecture":"unknown"}},
              "annotations":{{"vnd.docker.reference.type":"attestation-manifest","vnd.docker.reference.digest":"{img_d}"}}}},
            {{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{layer}","size":11}}]}}"#
    );
    // The layer entry is not in the repository yet.
    let err = put("v1", index.clone()).await.unwrap_err();
    assert!(
        matches!(&err, Error::ManifestBlobUnknown(m) if m.contains(layer.as_str()) && m.contains("listed in the index")),
        "{err}"
    );
    reg.push_blob(&repo, &layer, None, body(b"cache layer"))
        .await
        .unwrap();
    let pushed = put("v1", index).await.unwrap();

    assert_eq!(
        reg.attestations_of(&n("acme/app"), &img_d).await.unwrap(),
        vec![att_d.clone()]
    );
    assert!(reg
        .attestations_of(&n("acme/app"), &att_d)
        .await
        .unwrap()
        .is_empty());
    let views = reg.repository_manifests(&n("acme/app")).await.unwrap();
    let view = |d: &Digest| views.iter().find(|v| v.digest == *d).unwrap();
    let a = view(&att_d).attestation.clone().unwrap();
    assert_eq!(a.describes, vec![img_d.clone()]);
    assert_eq!(a.indexes, vec![pushed.digest.clone()]);
    assert!(view(&img_d).attestation.is_none());
    // The index's size includes its blob entry.
    let idx = view(&pushed.digest);
    assert_eq!(
        idx.total_size,
        idx.size + view(&img_d).size + view(&att_d).size + 2 + 11
    );
}
