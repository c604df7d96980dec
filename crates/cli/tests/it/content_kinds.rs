//! Content real CI pipelines push besides images, against a real `berth
//! serve`: Helm charts, cosign signatures and attestations by tag, oras
//! artifacts with and without a subject, WASM modules, Singularity /
//! Apptainer images, Windows images with foreign (non-distributable)
//! layers, zstd layers. Each is accepted, survives a GC run with no grace
//! period whole, and `berth copy` copies it whole with its digest.

use reqwest::{Client, StatusCode};
use serde_json::Value;

use crate::buildkit::push_like_buildkit;
use crate::common::Berth;
use crate::oci::{client, sha256, OCI_EMPTY, OCI_MANIFEST};
use crate::tools::berth_ok;

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const FOREIGN: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
const NONDISTRIBUTABLE: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";

/// A descriptor's JSON.
fn desc(media_type: &str, data: &[u8], extra: &str) -> String {
    format!(
        r#"{{"mediaType":"{media_type}","digest":"{}","size":{}{extra}}}"#,
        sha256(data),
        data.len()
    )
}

/// An image manifest of `media_type` over a config and layers given as
/// descriptor JSON, with optional top-level fields (`,"k":v`).
fn manifest(media_type: &str, config: &str, layers: &[String], extra: &str) -> Vec<u8> {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{media_type}"{extra},"config":{config},"layers":[{}]}}"#,
        layers.join(",")
    )
    .into_bytes()
}

async fn put(c: &Client, base: &str, repo: &str, reference: &str, media_type: &str, body: &[u8]) {
    let r = c
        .put(format!("{base}/v2/{repo}/manifests/{reference}"))
        .header("content-type", media_type)
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{reference}: {:?}",
        r.text().await
    );
}

/// Pulls `repo@reference` and every blob it lists that was pushed (not
/// foreign layers unless `foreign_pushed`), checking bytes against digests;
/// returns the manifest digest.
async fn pull_whole(
    c: &Client,
    base: &str,
    repo: &str,
    reference: &str,
    foreign_pushed: bool,
) -> String {
    let r = c
        .get(format!("{base}/v2/{repo}/manifests/{reference}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{repo}:{reference}");
    let body = r.bytes().await.unwrap();
    let m: Value = serde_json::from_slice(&body).unwrap();
    for d in m
        .get("config")
        .into_iter()
        .chain(m["layers"].as_array().into_iter().flatten())
    {
        let media = d["mediaType"].as_str().unwrap();
        let foreign = media == FOREIGN || media.contains(".nondistributable.");
        let digest = d["digest"].as_str().unwrap();
        let r = c
            .get(format!("{base}/v2/{repo}/blobs/{digest}"))
            .send()
            .await
            .unwrap();
        if foreign && !foreign_pushed {
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{reference}: {digest}");
            continue;
        }
        assert_eq!(
            r.status(),
            StatusCode::OK,
            "{repo}:{reference}: {media} {digest}"
        );
        assert_eq!(sha256(&r.bytes().await.unwrap()), digest);
    }
    sha256(&body)
}

/// Pushes each kind of content to `repo`; returns (tag, digest, whether its
/// foreign layers were pushed) and the untagged referrer's (digest, subject).
async fn push_everything(
    c: &Client,
    u: &str,
    repo: &str,
) -> (Vec<(String, String, bool)>, (String, String)) {
    let mut tags = Vec::new();
    // A plain image: the subject of the signatures and the SBOM.
    let app_config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
            .to_vec();
    let app_layer = b"app layer".repeat(30);
    for b in [&app_config, &app_layer] {
        push_like_buildkit(c, u, repo, b).await;
    }
    let app = manifest(
        OCI_MANIFEST,
        &desc("application/vnd.oci.image.config.v1+json", &app_config, ""),
        &[desc(
            "application/vnd.oci.image.layer.v1.tar+gzip",
            &app_layer,
            "",
        )],
        "",
    );
    put(c, u, repo, "app-v1", OCI_MANIFEST, &app).await;
    let app_digest = sha256(&app);
    tags.push(("app-v1".to_owned(), app_digest.clone(), false));

    let simple = |tag: &str, body: Vec<u8>, blobs: Vec<Vec<u8>>| (tag.to_owned(), body, blobs);
    let tag_base = app_digest.replace(':', "-");
    let helm_config = br#"{"name":"mychart","version":"0.1.0","description":"A Helm chart","apiVersion":"v2","appVersion":"1.16.0","type":"application"}"#.to_vec();
    let helm_chart = b"\x1f\x8b\x08 helm chart tarball".repeat(20);
    let sig_config = format!(
        r#"{{"architecture":"","created":"0001-01-01T00:00:00Z","history":[{{"created":"0001-01-01T00:00:00Z"}}],"os":"","rootfs":{{"type":"layers","diff_ids":["{}"]}},"config":{{}}}}"#,
        sha256(b"simple signing payload")
    )
    .into_bytes();
    let sig_payload = format!(
        r#"{{"critical":{{"identity":{{"docker-reference":"{u}/{repo}"}},"image":{{"docker-manifest-digest":"{app_digest}"}},"type":"cosign container image signature"}},"optional":null}}"#
    )
    .into_bytes();
    let att_envelope = br#"{"payloadType":"application/vnd.in-toto+json","payload":"eyJfdHlwZSI6Imh0dHBzOi8vaW4tdG90by5pby9TdGF0ZW1lbnQvdjAuMSJ9","signatures":[{"keyid":"","sig":"MEUCIQ=="}]}"#.to_vec();
    let empty = b"{}".to_vec();
    let notes = b"release notes of artifact v1".to_vec();
    let sbom = br#"{"spdxVersion":"SPDX-2.3","name":"app"}"#.to_vec();
    let wasm_config = br#"{"created":"2026-11-29T21:00:00Z","architecture":"wasm","os":"wasip1","layerDigests":[],"component":{"exports":["wasi:http/incoming-handler@0.2.0"]}}"#.to_vec();
    let wasm = [b"\0asm\x01\0\0\0".to_vec(), b"code".repeat(50)].concat();
    let sif_config = br#"{"created":"2026-11-29T21:00:00Z","author":"apptainer"}"#.to_vec();
    let sif = [
        b"#!/usr/bin/env run-singularity\nSIF_MAGIC0".to_vec(),
        b"squashfs".repeat(40),
    ]
    .concat();
    let win_config = br#"{"architecture":"amd64","os":"windows","os.version":"10.0.20348.2113","rootfs":{"type":"layers","diff_ids":["sha256:aa","sha256:bb"]}}"#.to_vec();
    let win_base = b"windows servercore base layer, served by mcr.microsoft.com".repeat(10);
    let win_layer = b"windows app layer".repeat(20);
    let zstd_config =
        br#"{"architecture":"arm64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
            .to_vec();
    let zstd_layer = [vec![0x28, 0xb5, 0x2f, 0xfd], b"zstd frame".repeat(30)].concat();
    let urls = format!(
        r#","urls":["https://mcr.microsoft.com/v2/windows/servercore/blobs/{}"]"#,
        sha256(&win_base)
    );

    let items = vec![
        simple(
            "chart-0.1.0",
            manifest(
                OCI_MANIFEST,
                &desc("application/vnd.cncf.helm.config.v1+json", &helm_config, ""),
                &[desc(
                    "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
                    &helm_chart,
                    "",
                )],
                r#","annotations":{"org.opencontainers.image.title":"mychart","org.opencontainers.image.version":"0.1.0"}"#,
            ),
            vec![helm_config.clone(), helm_chart.clone()],
        ),
        simple(
            &format!("{tag_base}.sig"),
            manifest(
                OCI_MANIFEST,
                &desc("application/vnd.oci.image.config.v1+json", &sig_config, ""),
                &[desc(
                    "application/vnd.dev.cosign.simplesigning.v1+json",
                    &sig_payload,
                    r#","annotations":{"dev.cosignproject.cosign/signature":"MEUCIQDxv1","dev.sigstore.cosign/bundle":"{\"SignedEntryTimestamp\":\"MEQ=\"}"}"#,
                )],
                "",
            ),
            vec![sig_config.clone(), sig_payload.clone()],
        ),
        simple(
            &format!("{tag_base}.att"),
            manifest(
                OCI_MANIFEST,
                &desc("application/vnd.oci.image.config.v1+json", &sig_config, ""),
                &[desc(
                    "application/vnd.dsse.envelope.v1+json",
                    &att_envelope,
                    r#","annotations":{"dev.cosignproject.cosign/signature":"","predicateType":"https://slsa.dev/provenance/v0.2"}"#,
                )],
                "",
            ),
            vec![sig_config.clone(), att_envelope.clone()],
        ),
        simple(
            "artifact-v1",
            manifest(
                OCI_MANIFEST,
                &desc(OCI_EMPTY, &empty, ""),
                &[desc(
                    "text/plain",
                    &notes,
                    r#","annotations":{"org.opencontainers.image.title":"notes.txt"}"#,
                )],
                r#","artifactType":"application/vnd.acme.notes.v1""#,
            ),
            vec![empty.clone(), notes.clone()],
        ),
        simple(
            "wasm-1.0",
            manifest(
                OCI_MANIFEST,
                &desc("application/vnd.wasm.config.v0+json", &wasm_config, ""),
                &[desc("application/wasm", &wasm, "")],
                r#","artifactType":"application/wasm""#,
            ),
            vec![wasm_config.clone(), wasm.clone()],
        ),
        simple(
            "sif-1.0",
            manifest(
                OCI_MANIFEST,
                &desc("application/vnd.sylabs.sif.config.v1+json", &sif_config, ""),
                &[desc(
                    "application/vnd.sylabs.sif.layer.v1.sif",
                    &sif,
                    r#","annotations":{"org.opencontainers.image.title":"ubuntu_latest.sif"}"#,
                )],
                "",
            ),
            vec![sif_config.clone(), sif.clone()],
        ),
        simple(
            "windows-ltsc2022",
            manifest(
                DOCKER_MANIFEST,
                &desc(
                    "application/vnd.docker.container.image.v1+json",
                    &win_config,
                    "",
                ),
                &[
                    desc(FOREIGN, &win_base, &urls),
                    desc(
                        "application/vnd.docker.image.rootfs.diff.tar.gzip",
                        &win_layer,
                        "",
                    ),
                ],
                "",
            ),
            vec![win_config.clone(), win_layer.clone()],
        ),
        simple(
            "windows-oci",
            manifest(
                OCI_MANIFEST,
                &desc("application/vnd.oci.image.config.v1+json", &win_config, ""),
                &[
                    desc(NONDISTRIBUTABLE, &win_base, &urls),
                    desc(
                        "application/vnd.oci.image.layer.v1.tar+gzip",
                        &win_layer,
                        "",
                    ),
                ],
                "",
            ),
            vec![win_config.clone(), win_layer.clone()],
        ),
        simple(
            "zstd",
            manifest(
                OCI_MANIFEST,
                &desc("application/vnd.oci.image.config.v1+json", &zstd_config, ""),
                &[desc(
                    "application/vnd.oci.image.layer.v1.tar+zstd",
                    &zstd_layer,
                    "",
                )],
                "",
            ),
            vec![zstd_config.clone(), zstd_layer.clone()],
        ),
    ];
    for (tag, body, blobs) in items {
        for b in &blobs {
            push_like_buildkit(c, u, repo, b).await;
        }
        let media_type = if tag.starts_with("windows-ltsc") {
            DOCKER_MANIFEST
        } else {
            OCI_MANIFEST
        };
        put(c, u, repo, &tag, media_type, &body).await;
        tags.push((tag, sha256(&body), false));
    }
    // A Windows image whose foreign layer was pushed anyway (dockerd's
    // `allow-nondistributable-artifacts`): kept with the image.
    let pushed_base = b"windows nanoserver base layer, pushed anyway".repeat(10);
    push_like_buildkit(c, u, repo, &pushed_base).await;
    push_like_buildkit(c, u, repo, &win_config).await;
    let body = manifest(
        DOCKER_MANIFEST,
        &desc(
            "application/vnd.docker.container.image.v1+json",
            &win_config,
            "",
        ),
        &[desc(FOREIGN, &pushed_base, &urls)],
        "",
    );
    put(c, u, repo, "windows-pushed", DOCKER_MANIFEST, &body).await;
    tags.push(("windows-pushed".to_owned(), sha256(&body), true));

    // An oras SBOM attached to the image (a referrer, pushed by digest).
    push_like_buildkit(c, u, repo, &empty).await;
    push_like_buildkit(c, u, repo, &sbom).await;
    let referrer = manifest(
        OCI_MANIFEST,
        &desc(OCI_EMPTY, &empty, ""),
        &[desc(
            "application/spdx+json",
            &sbom,
            r#","annotations":{"org.opencontainers.image.title":"sbom.spdx.json"}"#,
        )],
        &format!(
            r#","artifactType":"application/spdx+json","subject":{},"annotations":{{"org.opencontainers.image.created":"2026-11-29T21:00:00Z"}}"#,
            desc(OCI_MANIFEST, &app, "")
        ),
    );
    put(c, u, repo, &sha256(&referrer), OCI_MANIFEST, &referrer).await;
    (tags, (sha256(&referrer), app_digest))
}

async fn referrers(c: &Client, base: &str, repo: &str, subject: &str) -> Vec<String> {
    let v: Value = c
        .get(format!("{base}/v2/{repo}/referrers/{subject}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn pipeline_content_is_accepted_kept_by_gc_and_copied_whole() {
    let b = Berth::start_with(&[], Some("gc_grace_period = \"0s\"\ngc_interval = \"0\"\n"));
    let (c, u) = (client(), b.url());
    let repo = "acme/things";
    let (tags, (sbom, app)) = push_everything(&c, &u, repo).await;
    assert_eq!(
        referrers(&c, &u, repo, &app).await,
        std::slice::from_ref(&sbom)
    );

    // A GC run with no grace period keeps everything whole.
    let r = c.post(format!("{u}/api/v1/gc")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    for (tag, digest, foreign_pushed) in &tags {
        assert_eq!(
            &pull_whole(&c, &u, repo, tag, *foreign_pushed).await,
            digest,
            "{tag}"
        );
    }
    assert_eq!(pull_whole(&c, &u, repo, &sbom, false).await, sbom);

    // `berth copy` copies every tag with its digest, and the referrer too.
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path();
    let r: Value = serde_json::from_str(&berth_ok(
        w,
        &[
            "copy",
            "--json",
            "-q",
            "--all-tags",
            &format!("{}/{repo}", b.addr),
            &format!("{}/mirror/things", b.addr),
        ],
    ))
    .unwrap();
    assert_eq!(r.as_array().unwrap().len(), tags.len(), "{r:#}");
    berth_ok(
        w,
        &[
            "copy",
            "-q",
            &format!("{}/{repo}@{sbom}", b.addr),
            &format!("{}/mirror/things", b.addr),
        ],
    );
    // Foreign layers are never copied (clients fetch them from their
    // `urls`), even when the source holds them.
    for (tag, digest, _) in &tags {
        assert_eq!(
            &pull_whole(&c, &u, "mirror/things", tag, false).await,
            digest,
            "copy of {tag}"
        );
    }
    assert_eq!(
        pull_whole(&c, &u, "mirror/things", &sbom, false).await,
        sbom
    );
    assert_eq!(referrers(&c, &u, "mirror/things", &app).await, [sbom]);
}
