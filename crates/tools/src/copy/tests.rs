//! Copy-engine tests between local locations (layouts and archives); the
//! registry legs are exercised by the binary's integration tests.

use std::sync::Arc;

use super::progress::Silent;
use super::*;

fn silent() -> Arc<dyn progress::Progress> {
    Arc::new(Silent)
}

#[test]
fn platforms() {
    let f = Platform::parse("linux/arm64").unwrap();
    let v8 = Platform::parse("linux/arm64/v8").unwrap();
    assert!(f.matches(&v8));
    assert!(!v8.matches(&Platform::parse("linux/arm64/v7").unwrap()));
    assert!(!f.matches(&Platform::parse("linux/amd64").unwrap()));
    assert_eq!(v8.to_string(), "linux/arm64/v8");
    assert!(Platform::parse("linux").is_err());
}

#[tokio::test]
async fn layout_to_archives_and_back_keeps_digests() {
    let tmp = tempfile::tempdir().unwrap();
    let src_dir = tmp.path().join("src");
    let digest =
        crate::sample::write(&src_dir, "v1", &["linux/amd64", "linux/arm64"], "t").unwrap();
    // Deterministic: the same input gives the same image.
    assert_eq!(
        crate::sample::write(
            &tmp.path().join("again"),
            "v1",
            &["linux/amd64", "linux/arm64"],
            "t"
        )
        .unwrap(),
        digest
    );
    let src = layout::Layout::open(&src_dir).unwrap();
    let opts = CopyOptions::default();

    // Layout -> oci-archive -> layout.
    let tar = tmp.path().join("img.tar");
    let dst = layout::Archive::create(&tar).unwrap();
    let r = copy_image(&src, Some("v1"), &dst, Some("v1"), &opts, &silent())
        .await
        .unwrap();
    dst.finish().await.unwrap();
    assert_eq!((r.digest.as_ref(), r.blobs_copied), (Some(&digest), 5));
    let back = layout::Archive::open(&tar).unwrap();
    let out = layout::Layout::create(&tmp.path().join("out")).unwrap();
    let r = copy_image(&back, Some("v1"), &out, Some("v2"), &opts, &silent())
        .await
        .unwrap();
    assert_eq!(r.digest.as_ref(), Some(&digest));
    assert_eq!(Source::tags(&out).await.unwrap(), ["v2"]);
    // Copying again skips every blob.
    let r = copy_image(&back, Some("v1"), &out, Some("v2"), &opts, &silent())
        .await
        .unwrap();
    assert_eq!((r.blobs_copied, r.blobs_skipped), (0, 5));

    // One platform through a docker-archive: the platform manifest's digest survives.
    let one = CopyOptions {
        platforms: vec![Platform::parse("linux/arm64").unwrap()],
        jobs: 2,
    };
    let da = tmp.path().join("docker.tar");
    let name = berth_oci::reference::ImageRef::parse("team/app").unwrap();
    let w = docker_archive::Writer::create(&da, Some(name)).unwrap();
    let r = copy_image(&src, Some("v1"), &w, Some("v1"), &one, &silent())
        .await
        .unwrap();
    w.finish().await.unwrap();
    let arm = r.digest.unwrap();
    assert_ne!(arm, digest);
    let reader = docker_archive::Reader::open(&da).unwrap();
    assert_eq!(reader.tags().await.unwrap(), ["v1"]);
    assert_eq!(
        reader.manifest(Some("team/app:v1")).await.unwrap().digest(),
        arm
    );
    assert_eq!(
        reader
            .manifest(Some("docker.io/team/app:v1"))
            .await
            .unwrap()
            .digest(),
        arm
    );
    assert!(reader.manifest(Some("other:v1")).await.is_err());

    // The whole index cannot go into a docker-archive.
    let w = docker_archive::Writer::create(&tmp.path().join("no.tar"), None).unwrap();
    let err = copy_image(&src, Some("v1"), &w, Some("v1"), &opts, &silent())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("--platform"), "{err}");

    // A platform the image lacks.
    let none = CopyOptions {
        platforms: vec![Platform::parse("windows/amd64").unwrap()],
        jobs: 1,
    };
    let err = copy_image(&src, Some("v1"), &out, None, &none, &silent())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("linux/amd64, linux/arm64"),
        "{err}"
    );
}

#[tokio::test]
async fn corrupt_blobs_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let src_dir = tmp.path().join("src");
    crate::sample::write(&src_dir, "v1", &["linux/amd64"], "c").unwrap();
    let src = layout::Layout::open(&src_dir).unwrap();
    let m = src.manifest(Some("v1")).await.unwrap().parse().unwrap();
    let layer = &m.layers[1];
    std::fs::write(src.blob_path(&layer.digest), vec![0u8; layer.size as usize]).unwrap();
    let out = layout::Layout::create(&tmp.path().join("out")).unwrap();
    let err = copy_image(
        &src,
        Some("v1"),
        &out,
        Some("v1"),
        &CopyOptions::default(),
        &silent(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("arrived as"), "{err}");
    assert!(
        !out.blob_path(&layer.digest).exists(),
        "no blob under a wrong digest"
    );
}
