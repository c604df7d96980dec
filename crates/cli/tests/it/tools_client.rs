//! `berth-client` against real registries: berth and the reference
//! registry. Chunked and monolithic uploads, blob and manifest reads,
//! tag pagination, cross-repository mounts and referrers.

#![allow(clippy::unwrap_used)]

use berth_oci::{media, Digest};
use berth_tools::client::{Bytes, Client, ClientOptions, MountResult};

use crate::common::{Berth, Distribution};

async fn exercise(registry: &str, referrers_api: bool) {
    let client = Client::new(ClientOptions::default()).unwrap();
    client.ping(registry).await.unwrap();
    let repo = client.repository(registry, "client/test");

    // A 100 KB layer in three PATCH chunks.
    let layer: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let layer_digest = Digest::sha256(&layer);
    assert_eq!(repo.head_blob(&layer_digest).await.unwrap(), None);
    repo.upload_blob_chunked(&layer_digest, &layer[..], 40_000)
        .await
        .unwrap();
    assert_eq!(repo.head_blob(&layer_digest).await.unwrap(), Some(100_000));
    assert_eq!(
        repo.get_blob_bytes(&layer_digest, 1 << 20).await.unwrap(),
        Bytes::from(layer.clone())
    );

    // A config in one monolithic PUT.
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let config_digest = Digest::sha256(config);
    repo.upload_blob(
        &config_digest,
        config.len() as u64,
        reqwest::Body::from(config.to_vec()),
    )
    .await
    .unwrap();

    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": {"mediaType": media::OCI_CONFIG, "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer.len()}]
    });
    let bytes = Bytes::from(serde_json::to_vec(&manifest).unwrap());
    let digest = repo
        .put_manifest("v1", bytes.clone(), media::OCI_MANIFEST)
        .await
        .unwrap();
    assert_eq!(digest, Digest::sha256(&bytes));
    let (head_digest, head_type) = repo.head_manifest("v1").await.unwrap().unwrap();
    assert_eq!(head_digest, Some(digest.clone()));
    assert!(head_type.starts_with(media::OCI_MANIFEST));
    let got = repo.get_manifest(digest.as_str()).await.unwrap();
    assert_eq!(got.bytes, bytes);
    assert!(repo.head_manifest("nope").await.unwrap().is_none());
    assert!(repo.get_manifest("nope").await.unwrap_err().is_not_found());

    // Tag pagination, two per page.
    for t in ["t1", "t2", "t3", "t4", "t5"] {
        repo.put_manifest(t, bytes.clone(), media::OCI_MANIFEST)
            .await
            .unwrap();
    }
    let mut tags = repo.tags(2).await.unwrap();
    tags.sort();
    assert_eq!(tags, ["t1", "t2", "t3", "t4", "t5", "v1"]);

    // Cross-repository mount.
    let other = client.repository(registry, "client/other");
    assert_eq!(
        other
            .mount_blob(&layer_digest, "client/test")
            .await
            .unwrap(),
        MountResult::Mounted
    );
    assert_eq!(other.head_blob(&layer_digest).await.unwrap(), Some(100_000));

    // Referrers: an artifact whose subject is the image.
    let empty = b"{}";
    repo.upload_blob(
        &Digest::sha256(empty),
        2,
        reqwest::Body::from(empty.to_vec()),
    )
    .await
    .unwrap();
    let artifact = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "artifactType": "application/vnd.example.sbom",
        "config": {"mediaType": media::OCI_EMPTY, "digest": Digest::sha256(empty), "size": 2},
        "layers": [{"mediaType": media::OCI_EMPTY, "digest": Digest::sha256(empty), "size": 2}],
        "subject": {"mediaType": media::OCI_MANIFEST, "digest": digest, "size": bytes.len()}
    });
    let abytes = Bytes::from(serde_json::to_vec(&artifact).unwrap());
    let adigest = Digest::sha256(&abytes);
    repo.put_manifest(adigest.as_str(), abytes, media::OCI_MANIFEST)
        .await
        .unwrap();
    let refs = repo.referrers(&digest, None).await.unwrap();
    if referrers_api {
        assert_eq!(refs.len(), 1, "{refs:?}");
        assert_eq!(refs[0].digest, adigest);
        assert_eq!(
            refs[0].artifact_type.as_deref(),
            Some("application/vnd.example.sbom")
        );
        assert_eq!(
            repo.referrers(&digest, Some("application/vnd.other"))
                .await
                .unwrap()
                .len(),
            0
        );
    }
}

#[tokio::test]
async fn client_against_berth() {
    let b = Berth::start();
    exercise(&b.addr, true).await;
}

#[tokio::test]
async fn client_against_distribution() {
    // Distribution 2.8 predates the referrers API: the client falls back to
    // the tag schema, which nobody wrote here, so the list is empty.
    let d = Distribution::start();
    exercise(&d.addr, false).await;
}
