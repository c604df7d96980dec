//! What BuildKit and docker buildx push, against a real `berth serve`:
//! the registry cache export (`cache-to: type=registry`), whose OCI index
//! lists layer blobs and a cache config instead of manifests, in its OCI,
//! Docker and `image-manifest=true` forms, pushed by raw HTTP as BuildKit
//! pushes it and pulled back entry by entry, then kept by a retention run
//! and a GC run with no grace period; and buildx attestation manifests
//! (provenance, SBOM) inside a two-platform index, recognised, kept, and
//! copied by `berth copy` with every digest unchanged.

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

use crate::common::{Berth, Distribution};
use crate::oci::{client, expect_error, sha256, OCI_INDEX, OCI_MANIFEST};
use crate::tools::{berth, berth_ok};

/// A server whose GC collects at once and runs only when asked.
const NO_GRACE: &str = "gc_grace_period = \"0s\"\ngc_interval = \"0\"\n";
const CACHE_CONFIG: &str = "application/vnd.buildkit.cacheconfig.v0";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// The Accept header containerd's resolver (BuildKit's) sends for manifests.
const ACCEPT: &str = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, */*";

/// Pushes a blob as containerd's pusher does: HEAD (absent), POST for a
/// session, PUT of the whole body with `?digest=`.
pub(crate) async fn push_like_buildkit(c: &Client, base: &str, repo: &str, data: &[u8]) -> String {
    let d = sha256(data);
    let r = c
        .head(format!("{base}/v2/{repo}/blobs/{d}"))
        .send()
        .await
        .unwrap();
    if r.status() == StatusCode::OK {
        return d;
    }
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = c
        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    let url = if loc.starts_with('/') {
        format!("{base}{loc}")
    } else {
        loc
    };
    let sep = if url.contains('?') { '&' } else { '?' };
    let r = c
        .put(format!("{url}{sep}digest={d}"))
        .header("content-type", "application/octet-stream")
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
    d
}

/// A BuildKit registry cache of two layers: (layer bytes, cache config
/// bytes), distinct per `seed`.
fn cache_content(seed: &str) -> (Vec<Vec<u8>>, Vec<u8>) {
    let layers: Vec<Vec<u8>> = (0..2)
        .map(|i| {
            let mut gz = vec![0x1f, 0x8b, 0x08];
            gz.extend(format!(" layer {i} of {seed} ").repeat(40).into_bytes());
            gz
        })
        .collect();
    // `CacheConfig` as BuildKit marshals it (Go omits `parent` when 0).
    let config = format!(
        concat!(
            r#"{{"layers":[{{"blob":"{}","parent":-1}},{{"blob":"{}"}}],"#,
            r#""records":[{{"digest":"{}"}},"#,
            r#"{{"layers":[{{"layer":0,"createdAt":"2026-11-29T21:00:00.123456789Z"}}],"digest":"{}","inputs":[[{{"selector":"","link":0}}]]}},"#,
            r#"{{"layers":[{{"layer":1,"createdAt":"2026-11-29T21:00:01.5Z"}}],"digest":"{}","inputs":[[{{"link":1}}]]}}]}}"#
        ),
        sha256(&layers[0]),
        sha256(&layers[1]),
        sha256(format!("source {seed}").as_bytes()),
        sha256(format!("run 1 {seed}").as_bytes()),
        sha256(format!("run 2 {seed}").as_bytes()),
    );
    (layers, config.into_bytes())
}

/// A layer's descriptor with BuildKit's annotations, as Go marshals it.
fn layer_descriptor(media_type: &str, data: &[u8], i: usize) -> String {
    format!(
        r#"{{"mediaType":"{media_type}","digest":"{}","size":{},"annotations":{{"buildkit/createdat":"2026-11-29T21:00:0{i}.123456789Z","containerd.io/uncompressed":"{}"}}}}"#,
        sha256(data),
        data.len(),
        sha256(format!("uncompressed {i} {}", sha256(data)).as_bytes()),
    )
}

/// The cache's index (`oci-mediatypes=true`, the default) or Docker
/// manifest list (`oci-mediatypes=false`), exactly as BuildKit writes it:
/// layer entries, then the cache config.
fn cache_index(docker: bool, layers: &[Vec<u8>], config: &[u8]) -> Vec<u8> {
    let (media_type, layer_type) = if docker {
        (DOCKER_LIST, DOCKER_LAYER)
    } else {
        (OCI_INDEX, OCI_LAYER)
    };
    let mut entries: Vec<String> = layers
        .iter()
        .enumerate()
        .map(|(i, l)| layer_descriptor(layer_type, l, i))
        .collect();
    entries.push(format!(
        r#"{{"mediaType":"{CACHE_CONFIG}","digest":"{}","size":{}}}"#,
        sha256(config),
        config.len()
    ));
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{media_type}","manifests":[{}]}}"#,
        entries.join(",")
    )
    .into_bytes()
}

/// The `image-manifest=true` form: an image manifest whose config is the
/// cache config.
fn cache_image_manifest(layers: &[Vec<u8>], config: &[u8]) -> Vec<u8> {
    let entries: Vec<String> = layers
        .iter()
        .enumerate()
        .map(|(i, l)| layer_descriptor(OCI_LAYER, l, i))
        .collect();
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{CACHE_CONFIG}","digest":"{}","size":{}}},"layers":[{}]}}"#,
        sha256(config),
        config.len(),
        entries.join(",")
    )
    .into_bytes()
}

/// PUTs a manifest; returns the response.
async fn put(
    c: &Client,
    base: &str,
    repo: &str,
    reference: &str,
    media_type: &str,
    body: &[u8],
) -> reqwest::Response {
    c.put(format!("{base}/v2/{repo}/manifests/{reference}"))
        .header("content-type", media_type)
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
}

/// Pulls `reference` as BuildKit's cache import does and then every entry
/// of it (index entries and image config and layers) as a blob, checking
/// bytes and digests; returns the manifest bytes.
async fn pull_back(c: &Client, base: &str, repo: &str, reference: &str) -> Vec<u8> {
    let r = c
        .get(format!("{base}/v2/{repo}/manifests/{reference}"))
        .header("accept", ACCEPT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{repo}:{reference}");
    let digest = r.headers()["docker-content-digest"]
        .to_str()
        .unwrap()
        .to_owned();
    let body = r.bytes().await.unwrap().to_vec();
    assert_eq!(sha256(&body), digest);
    let m: Value = serde_json::from_slice(&body).unwrap();
    let entries: Vec<&Value> = m["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(m.get("config"))
        .chain(m["layers"].as_array().into_iter().flatten())
        .collect();
    assert!(!entries.is_empty());
    for e in entries {
        let d = e["digest"].as_str().unwrap();
        let r = c
            .get(format!("{base}/v2/{repo}/blobs/{d}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "blob {d} of {repo}:{reference}");
        let data = r.bytes().await.unwrap();
        assert_eq!(sha256(&data), d, "blob {d} reads whole");
        assert_eq!(data.len() as u64, e["size"].as_u64().unwrap());
    }
    body
}

async fn api(c: &Client, base: &str, method: reqwest::Method, path: &str, body: &str) -> Value {
    let r = c
        .request(method, format!("{base}/api/v1{path}"))
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{path}");
    r.json().await.unwrap()
}

async fn blob_status(c: &Client, base: &str, repo: &str, d: &str) -> StatusCode {
    c.get(format!("{base}/v2/{repo}/blobs/{d}"))
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn buildkit_registry_cache_is_accepted_pulled_back_and_kept_by_retention_and_gc() {
    let b = Berth::start_with(&[], Some(NO_GRACE));
    let (c, u) = (client(), b.url());
    let repo = "acme/app-cache";

    // The three forms BuildKit exports, each with content of its own.
    let mut kept: Vec<(String, Vec<String>)> = Vec::new();
    for (tag, form) in [
        ("buildcache", "oci"),
        ("buildcache-docker", "docker"),
        ("buildcache-image", "image-manifest"),
    ] {
        let (layers, config) = cache_content(tag);
        let mut blobs = Vec::new();
        for l in &layers {
            blobs.push(push_like_buildkit(&c, &u, repo, l).await);
        }
        blobs.push(push_like_buildkit(&c, &u, repo, &config).await);
        let (media_type, body) = match form {
            "oci" => (OCI_INDEX, cache_index(false, &layers, &config)),
            "docker" => (DOCKER_LIST, cache_index(true, &layers, &config)),
            _ => (OCI_MANIFEST, cache_image_manifest(&layers, &config)),
        };
        let r = put(&c, &u, repo, tag, media_type, &body).await;
        assert_eq!(
            r.status(),
            StatusCode::CREATED,
            "{form}: {:?}",
            r.text().await
        );
        // Pulled back byte for byte, every entry whole.
        assert_eq!(pull_back(&c, &u, repo, tag).await, body, "{form}");
        assert_eq!(pull_back(&c, &u, repo, &sha256(&body)).await, body);
        kept.push((sha256(&body), blobs));
    }

    // An index listing a blob that was never pushed is refused, naming it.
    let (layers, refused_config) = cache_content("never pushed");
    push_like_buildkit(&c, &u, repo, &refused_config).await;
    let body = cache_index(false, &layers, &refused_config);
    let r = put(&c, &u, repo, "broken", OCI_INDEX, &body).await;
    let msg = expect_error(r, 400, "MANIFEST_BLOB_UNKNOWN").await;
    assert!(
        msg.contains(&sha256(&layers[0]))
            && msg.contains("listed in the index")
            && msg.contains(repo),
        "{msg}"
    );

    // The management API counts the cache's blobs in the index's size.
    let oci = &kept[0];
    let manifests = api(
        &c,
        &u,
        reqwest::Method::GET,
        &format!("/repositories/{repo}/manifests"),
        "",
    )
    .await;
    let view = manifests["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["digest"] == oci.0.as_str())
        .unwrap();
    let (layers, config) = cache_content("buildcache");
    let index_bytes = cache_index(false, &layers, &config).len() as u64;
    let blob_bytes: u64 = layers.iter().map(|l| l.len() as u64).sum::<u64>() + config.len() as u64;
    assert_eq!(view["total_size"], index_bytes + blob_bytes, "{view}");

    // A stale untagged image and a stray upload: retention deletes the one,
    // GC reclaims both, and nothing of the caches.
    let stale_config = b"{\"architecture\":\"amd64\",\"os\":\"linux\",\"stale\":true}".to_vec();
    let stale_layer = b"stale layer".to_vec();
    push_like_buildkit(&c, &u, repo, &stale_config).await;
    push_like_buildkit(&c, &u, repo, &stale_layer).await;
    let stale = crate::oci::image_manifest(&stale_config, &[&stale_layer]);
    let r = put(&c, &u, repo, &sha256(&stale), OCI_MANIFEST, &stale).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let stray = push_like_buildkit(&c, &u, repo, b"a stray upload").await;
    // The stray upload and the config of the refused index are stored,
    // counted toward the namespace apart, and used by no repository.
    let usage = api(&c, &u, reqwest::Method::GET, "/namespaces/acme/usage", "").await;
    let unreferenced = (b"a stray upload".len() + refused_config.len()) as u64;
    assert_eq!(usage["unreferenced_bytes"], unreferenced, "{usage:#}");
    assert_eq!(usage["repositories"][0]["unreferenced_bytes"], unreferenced);
    assert_eq!(
        usage["total_bytes"].as_u64().unwrap(),
        usage["repositories"][0]["total_bytes"].as_u64().unwrap() + unreferenced,
        "{usage:#}"
    );

    let r = c
        .put(format!("{u}/api/v1/namespaces/acme/retention"))
        .body("[[rule]]\nname = \"untagged\"\nuntagged = true\ndelete = { older_than = \"0d\" }\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let applied = api(
        &c,
        &u,
        reqwest::Method::POST,
        "/namespaces/acme/retention/apply?now=9999999999999",
        "",
    )
    .await;
    let deleted: Vec<&str> = applied["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["digest"].as_str().unwrap())
        .collect();
    assert_eq!(deleted, [sha256(&stale).as_str()], "{applied:#}");
    let gc = api(&c, &u, reqwest::Method::POST, "/gc", "").await;
    assert!(gc["reclaimed_bytes"].as_u64().unwrap() > 0, "{gc:#}");
    assert_eq!(
        blob_status(&c, &u, repo, &stray).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        blob_status(&c, &u, repo, &sha256(&stale_layer)).await,
        StatusCode::NOT_FOUND
    );
    for (tag, (digest, blobs)) in ["buildcache", "buildcache-docker", "buildcache-image"]
        .iter()
        .zip(&kept)
    {
        pull_back(&c, &u, repo, tag).await;
        pull_back(&c, &u, repo, digest).await;
        for d in blobs {
            assert_eq!(
                blob_status(&c, &u, repo, d).await,
                StatusCode::OK,
                "{tag}: {d}"
            );
        }
    }
    let usage = api(&c, &u, reqwest::Method::GET, "/namespaces/acme/usage", "").await;
    assert_eq!(usage["unreferenced_bytes"], 0, "{usage}");

    // Deleting the cache index is what lets GC take its blobs.
    let r = c
        .delete(format!("{u}/v2/{repo}/manifests/{}", oci.0))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    api(&c, &u, reqwest::Method::POST, "/gc", "").await;
    for d in &oci.1 {
        assert_eq!(
            blob_status(&c, &u, repo, d).await,
            StatusCode::NOT_FOUND,
            "{d}"
        );
    }
    pull_back(&c, &u, repo, "buildcache-docker").await;
    pull_back(&c, &u, repo, "buildcache-image").await;

    // `berth inspect` shows the cache's entries as blobs, not platforms;
    // `berth copy` copies the index and every entry, digests unchanged.
    let dir = tempfile::tempdir().unwrap();
    let src = format!("{}/{repo}:buildcache-docker", b.addr);
    let info: Value =
        serde_json::from_str(&berth_ok(dir.path(), &["inspect", "-o", "json", &src])).unwrap();
    assert_eq!(info["platforms"], json!([]), "{info:#}");
    let media: Vec<&str> = info["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["media_type"].as_str().unwrap())
        .collect();
    assert_eq!(media, [DOCKER_LAYER, DOCKER_LAYER, CACHE_CONFIG]);
    let text = berth_ok(dir.path(), &["inspect", &src]);
    assert!(
        text.contains("Platforms:  none") && text.contains("3 listed in the index"),
        "{text}"
    );
    let dst = format!("{}/mirror/app-cache:buildcache-docker", b.addr);
    let r: Value =
        serde_json::from_str(&berth_ok(dir.path(), &["copy", "--json", "-q", &src, &dst])).unwrap();
    assert_eq!(r[0]["report"]["digest"], kept[1].0.as_str());
    let moved = ["blobs_copied", "blobs_mounted"]
        .iter()
        .map(|k| r[0]["report"][k].as_u64().unwrap())
        .sum::<u64>();
    assert_eq!(moved, 3, "{r:#}");
    assert_eq!(
        pull_back(&c, &u, "mirror/app-cache", "buildcache-docker").await,
        pull_back(&c, &u, repo, "buildcache-docker").await
    );
}

/// An in-toto statement about `subject` (a manifest digest).
fn statement(predicate_type: &str, subject: &str, platform: &str) -> Vec<u8> {
    format!(
        r#"{{"_type":"https://in-toto.io/Statement/v0.1","predicateType":"{predicate_type}","subject":[{{"name":"pkg:docker/acme/multi@v1?platform={}","digest":{{"sha256":"{}"}}}}],"predicate":{{"note":"generated by the test"}}}}"#,
        platform.replace('/', "%2F"),
        subject.trim_start_matches("sha256:")
    )
    .into_bytes()
}

const SPDX: &str = "https://spdx.dev/Document";
const SLSA: &str = "https://slsa.dev/provenance/v0.2";

/// Pushes a two-platform image with buildx's SBOM and provenance
/// attestations to `repo:v1`; returns (index, [amd64, arm64], [their
/// attestations]) digests.
async fn push_attested(c: &Client, base: &str, repo: &str) -> (String, Vec<String>, Vec<String>) {
    let mut images = Vec::new();
    let mut entries = Vec::new();
    for (os, arch) in [("linux", "amd64"), ("linux", "arm64")] {
        let config = format!(r#"{{"architecture":"{arch}","os":"{os}","rootfs":{{"type":"layers","diff_ids":["{}"]}}}}"#, sha256(arch.as_bytes())).into_bytes();
        let layer = format!("layer of {arch}").repeat(50).into_bytes();
        push_like_buildkit(c, base, repo, &config).await;
        push_like_buildkit(c, base, repo, &layer).await;
        let m = crate::oci::image_manifest(&config, &[&layer]);
        let r = put(c, base, repo, &sha256(&m), OCI_MANIFEST, &m).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        entries.push(format!(
            r#"{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":{},"platform":{{"architecture":"{arch}","os":"{os}"}}}}"#,
            sha256(&m),
            m.len()
        ));
        images.push((sha256(&m), format!("{os}/{arch}")));
    }
    let mut attestations = Vec::new();
    for (image, platform) in &images {
        let sbom = statement(SPDX, image, platform);
        let provenance = statement(SLSA, image, platform);
        let config = format!(
            r#"{{"architecture":"unknown","os":"unknown","config":{{}},"rootfs":{{"type":"layers","diff_ids":["{}","{}"]}}}}"#,
            sha256(&sbom),
            sha256(&provenance)
        )
        .into_bytes();
        for blob in [&config, &sbom, &provenance] {
            push_like_buildkit(c, base, repo, blob).await;
        }
        let layer = |data: &[u8], t: &str| {
            format!(
                r#"{{"mediaType":"application/vnd.in-toto+json","digest":"{}","size":{},"annotations":{{"in-toto.io/predicate-type":"{t}"}}}}"#,
                sha256(data),
                data.len()
            )
        };
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{},{}]}}"#,
            sha256(&config),
            config.len(),
            layer(&sbom, SPDX),
            layer(&provenance, SLSA)
        )
        .into_bytes();
        let r = put(c, base, repo, &sha256(&m), OCI_MANIFEST, &m).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        entries.push(format!(
            r#"{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":{},"annotations":{{"vnd.docker.reference.digest":"{image}","vnd.docker.reference.type":"attestation-manifest"}},"platform":{{"architecture":"unknown","os":"unknown"}}}}"#,
            sha256(&m),
            m.len()
        ));
        attestations.push(sha256(&m));
    }
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{}]}}"#,
        entries.join(",")
    )
    .into_bytes();
    let r = put(c, base, repo, "v1", OCI_INDEX, &index).await;
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
    (
        sha256(&index),
        images.into_iter().map(|(d, _)| d).collect(),
        attestations,
    )
}

/// The bytes of `repo@digest`.
async fn manifest_bytes(c: &Client, base: &str, repo: &str, digest: &str) -> Vec<u8> {
    let r = c
        .get(format!("{base}/v2/{repo}/manifests/{digest}"))
        .header("accept", ACCEPT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{repo}@{digest}");
    r.bytes().await.unwrap().to_vec()
}

#[tokio::test]
async fn buildx_attestations_are_kept_recognised_and_copied_with_their_digests() {
    let b = Berth::start_with(&[], Some(NO_GRACE));
    let dist = Distribution::start();
    let (c, u) = (client(), b.url());
    let repo = "acme/multi";
    let (index, images, attestations) = push_attested(&c, &u, repo).await;

    // Recognised: the management API says what each attestation describes.
    let manifests = api(
        &c,
        &u,
        reqwest::Method::GET,
        &format!("/repositories/{repo}/manifests"),
        "",
    )
    .await;
    let view = |d: &str| {
        manifests["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["digest"] == d)
            .cloned()
            .unwrap()
    };
    for (image, att) in images.iter().zip(&attestations) {
        assert_eq!(
            view(att)["attestation"],
            json!({"describes": [image], "indexes": [index]})
        );
        assert!(view(image).get("attestation").is_none());
    }

    // Not platforms: `berth inspect` lists two platforms and two attestations.
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path();
    let src = format!("{}/{repo}:v1", b.addr);
    let info: Value = serde_json::from_str(&berth_ok(w, &["inspect", "-o", "json", &src])).unwrap();
    let platforms: Vec<&str> = info["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["platform"].as_str().unwrap())
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
    let atts = info["attestations"].as_array().unwrap();
    assert_eq!(atts.len(), 2);
    assert_eq!(atts[1]["platform"], "linux/arm64");
    assert_eq!(atts[1]["describes"], images[1].as_str());
    assert_eq!(atts[1]["predicate_types"], json!([SPDX, SLSA]));
    let text = berth_ok(w, &["inspect", &src]);
    assert!(
        text.contains("Platforms:  linux/amd64, linux/arm64\n"),
        "{text}"
    );
    assert!(text.contains("Attestations: 2"), "{text}");

    // Kept: a retention run deleting untagged manifests and a GC run leave
    // the index, its images, its attestations and all their blobs.
    let r = c
        .put(format!("{u}/api/v1/namespaces/acme/retention"))
        .body("[[rule]]\nname = \"untagged\"\nuntagged = true\ndelete = { older_than = \"0d\" }\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let applied = api(
        &c,
        &u,
        reqwest::Method::POST,
        "/namespaces/acme/retention/apply?now=9999999999999",
        "",
    )
    .await;
    assert_eq!(applied["items"], json!([]), "{applied:#}");
    api(&c, &u, reqwest::Method::POST, "/gc", "").await;
    for d in images.iter().chain(&attestations) {
        pull_back(&c, &u, repo, d).await;
    }

    // Copied: every platform, to berth and to the reference registry, with
    // the index and every child unchanged.
    for dst in [
        format!("{}/copy/multi:v1", b.addr),
        format!("{}/multi:v1", dist.addr),
    ] {
        let r: Value =
            serde_json::from_str(&berth_ok(w, &["copy", "--json", "-q", &src, &dst])).unwrap();
        assert_eq!(r[0]["report"]["digest"], index.as_str(), "{dst}");
        assert_eq!(r[0]["report"]["rewritten"], false);
        let (base, repo2) = if dst.starts_with(&b.addr) {
            (u.clone(), "copy/multi")
        } else {
            (dist.url(), "multi")
        };
        for d in std::iter::once(&index).chain(&images).chain(&attestations) {
            assert_eq!(
                manifest_bytes(&c, &base, repo2, d).await,
                manifest_bytes(&c, &u, repo, d).await,
                "{dst}: {d}"
            );
        }
    }
    // Both platforms selected: the same index, attestations included.
    let r: Value = serde_json::from_str(&berth_ok(
        w,
        &[
            "copy",
            "--json",
            "-q",
            "--platform",
            "linux/amd64,linux/arm64",
            &src,
            &format!("{}/both/multi:v1", b.addr),
        ],
    ))
    .unwrap();
    assert_eq!(r[0]["report"]["digest"], index.as_str());
    assert_eq!(r[0]["report"]["rewritten"], false);
    // One platform: its image manifest, unchanged.
    let r: Value = serde_json::from_str(&berth_ok(
        w,
        &[
            "copy",
            "--json",
            "-q",
            "--platform",
            "linux/arm64",
            &src,
            &format!("{}/arm/multi:v1", b.addr),
        ],
    ))
    .unwrap();
    assert_eq!(r[0]["report"]["digest"], images[1].as_str());
    assert_eq!(
        manifest_bytes(&c, &u, "arm/multi", "v1").await,
        manifest_bytes(&c, &u, repo, &images[1]).await
    );
    // An attestation is no platform to choose.
    let out = berth(
        w,
        &[
            "copy",
            "-q",
            "--platform",
            "unknown/unknown",
            &src,
            &format!("{}/none/multi:v1", b.addr),
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the image has: linux/amd64, linux/arm64"),
        "{err}"
    );
}
