//! Manifest, tag, referrer and catalog endpoints against a real `berth serve`.

use serde_json::{json, Value};

use crate::common::Berth;
use crate::oci::*;

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

#[tokio::test]
async fn push_pull_head_by_tag_and_digest() {
    let b = Berth::start();
    let (c, u) = (client(), b.url());
    let (d, m) = push_image(&c, &u, "lib/app", "v1", "a").await;

    for reference in ["v1", d.as_str()] {
        let r = c
            .get(format!("{u}/v2/lib/app/manifests/{reference}"))
            .header("accept", OCI_MANIFEST)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "content-type").as_deref(), Some(OCI_MANIFEST));
        assert_eq!(
            header(&r, "docker-content-digest").as_deref(),
            Some(d.as_str())
        );
        assert_eq!(
            r.bytes().await.unwrap().as_ref(),
            &m[..],
            "stored byte for byte"
        );
        assert_eq!(
            head_manifest(&c, &u, "lib/app", reference, OCI_MANIFEST).await,
            (d.clone(), m.len())
        );
    }
    // Conditional GET.
    let r = c
        .get(format!("{u}/v2/lib/app/manifests/v1"))
        .header("if-none-match", format!("\"{d}\""))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    // Accept negotiation: a client that only takes Docker types does not get an OCI manifest.
    let r = c
        .get(format!("{u}/v2/lib/app/manifests/v1"))
        .header("accept", DOCKER_MANIFEST)
        .send()
        .await
        .unwrap();
    expect_error(r, 404, "MANIFEST_UNKNOWN").await;
    let r = c
        .get(format!("{u}/v2/lib/app/manifests/v1"))
        .header("accept", format!("{DOCKER_MANIFEST}, {OCI_MANIFEST}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Unknown tag / digest / repository.
    let r = c
        .get(format!("{u}/v2/lib/app/manifests/nope"))
        .send()
        .await
        .unwrap();
    expect_error(r, 404, "MANIFEST_UNKNOWN").await;
    let r = c
        .get(format!("{u}/v2/lib/app/manifests/{}", sha256(b"x")))
        .send()
        .await
        .unwrap();
    expect_error(r, 404, "MANIFEST_UNKNOWN").await;
    let r = c
        .head(format!("{u}/v2/other/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // Re-tag to another manifest: tag moves atomically.
    let (d2, _) = push_image(&c, &u, "lib/app", "v1", "b").await;
    let r = c
        .head(format!("{u}/v2/lib/app/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "docker-content-digest"), Some(d2));
    // The old manifest stays reachable by digest.
    assert_eq!(
        c.head(format!("{u}/v2/lib/app/manifests/{d}"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn refuses_invalid_manifests() {
    let b = Berth::start_with(&[], Some("max_manifest_size = \"64KiB\"\n"));
    let (c, u) = (client(), b.url());
    let config = b"{}".to_vec();
    push_blob(&c, &u, "r", &config).await;

    // Layer never pushed.
    let m = image_manifest(&config, &[b"missing layer"]);
    let msg = expect_error(
        put_manifest(&c, &u, "r", "t", OCI_MANIFEST, &m).await,
        400,
        "MANIFEST_BLOB_UNKNOWN",
    )
    .await;
    assert!(msg.contains(&sha256(b"missing layer")), "{msg}");
    // The blob exists, but in another repository only.
    push_blob(&c, &u, "elsewhere", b"layer elsewhere").await;
    let m = image_manifest(&config, &[b"layer elsewhere"]);
    expect_error(
        put_manifest(&c, &u, "r", "t", OCI_MANIFEST, &m).await,
        400,
        "MANIFEST_BLOB_UNKNOWN",
    )
    .await;

    // Malformed.
    for body in [&b"not json"[..], b"{}", b"[]", br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"x/y","digest":"sha256:1","size":1},"layers":[]}"#] {
        expect_error(put_manifest(&c, &u, "r", "t", OCI_MANIFEST, body).await, 400, "MANIFEST_INVALID").await;
    }
    // Negative size.
    let bad = serde_json::to_vec(&json!({"schemaVersion":2,"mediaType":OCI_MANIFEST,
        "config":{"mediaType":OCI_CONFIG,"digest":sha256(&config),"size":-1},"layers":[]}))
    .unwrap();
    expect_error(
        put_manifest(&c, &u, "r", "t", OCI_MANIFEST, &bad).await,
        400,
        "MANIFEST_INVALID",
    )
    .await;
    // Content-Type disagrees with mediaType.
    let ok = image_manifest(&config, &[]);
    expect_error(
        put_manifest(&c, &u, "r", "t", OCI_INDEX, &ok).await,
        400,
        "MANIFEST_INVALID",
    )
    .await;
    // Docker schema1.
    let s1 = br#"{"schemaVersion":1,"name":"r","tag":"t","architecture":"amd64","fsLayers":[],"history":[]}"#;
    let msg = expect_error(
        put_manifest(
            &c,
            &u,
            "r",
            "t",
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
            s1,
        )
        .await,
        400,
        "MANIFEST_INVALID",
    )
    .await;
    assert!(msg.contains("schema1"), "{msg}");
    expect_error(
        put_manifest(&c, &u, "r", "t", "application/json", s1).await,
        400,
        "MANIFEST_INVALID",
    )
    .await;
    // Too large.
    let mut huge = image_manifest(&config, &[]);
    huge.truncate(huge.len() - 1);
    huge.extend_from_slice(
        format!(",\"annotations\":{{\"pad\":\"{}\"}}}}", "x".repeat(70_000)).as_bytes(),
    );
    let r = put_manifest(&c, &u, "r", "t", OCI_MANIFEST, &huge).await;
    let msg = expect_error(r, 413, "MANIFEST_INVALID").await;
    assert!(msg.contains("limit"), "{msg}");
    // Digest reference that does not match the body.
    expect_error(
        put_manifest(&c, &u, "r", &sha256(b"other"), OCI_MANIFEST, &ok).await,
        400,
        "DIGEST_INVALID",
    )
    .await;
    // Invalid tags: a push is refused as TAG_INVALID, a read finds nothing.
    for bad in [".bad", "-x", "a%2Fb"] {
        let r = c
            .get(format!("{u}/v2/r/manifests/{bad}"))
            .send()
            .await
            .unwrap();
        expect_error(r, 404, "MANIFEST_UNKNOWN").await;
        let r = c
            .head(format!("{u}/v2/r/manifests/{bad}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "HEAD {bad}");
    }
    let long = "t".repeat(129);
    let r = c
        .get(format!("{u}/v2/r/manifests/{long}"))
        .send()
        .await
        .unwrap();
    expect_error(r, 404, "MANIFEST_UNKNOWN").await;
    expect_error(
        put_manifest(&c, &u, "r", ".bad", OCI_MANIFEST, &ok).await,
        400,
        "TAG_INVALID",
    )
    .await;
    expect_error(
        put_manifest(&c, &u, "r", &"t".repeat(129), OCI_MANIFEST, &ok).await,
        400,
        "TAG_INVALID",
    )
    .await;
    // Nothing was stored by any of these.
    let r = c.get(format!("{u}/v2/r/tags/list")).send().await.unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["tags"], json!([]));
    // And the valid one goes through.
    assert_eq!(
        put_manifest(&c, &u, "r", "t", OCI_MANIFEST, &ok)
            .await
            .status(),
        201
    );
}

#[tokio::test]
async fn push_by_digest_with_tag_parameters_and_deletes() {
    let b = Berth::start();
    let (c, u) = (client(), b.url());
    let config = b"{\"x\":1}".to_vec();
    push_blob(&c, &u, "r", &config).await;
    let m = image_manifest(&config, &[]);
    let d = sha256(&m);
    let r = c
        .put(format!("{u}/v2/r/manifests/{d}?tag=v1&tag=latest&tag=v1"))
        .header("content-type", OCI_MANIFEST)
        .body(m.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(header(&r, "location"), Some(format!("/v2/r/manifests/{d}")));
    // One OCI-Tag header per tag applied, each once.
    let applied: Vec<&str> = r
        .headers()
        .get_all("oci-tag")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(applied, ["v1", "latest"]);
    let tags: Value = c
        .get(format!("{u}/v2/r/tags/list"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tags, json!({"name": "r", "tags": ["latest", "v1"]}));
    let r = c
        .put(format!("{u}/v2/r/manifests/{d}?tag=-bad"))
        .header("content-type", OCI_MANIFEST)
        .body(m.clone())
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "TAG_INVALID").await;

    // sha512 manifest reference.
    let d512 = sha512(&m);
    let r = put_manifest(&c, &u, "r", &d512, OCI_MANIFEST, &m).await;
    assert_eq!(r.status(), 201);
    assert_eq!(header(&r, "docker-content-digest"), Some(d512.clone()));
    assert_eq!(
        c.get(format!("{u}/v2/r/manifests/{d512}"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .as_ref(),
        &m[..]
    );

    // Delete a tag: only the tag goes.
    let r = c
        .delete(format!("{u}/v2/r/manifests/latest"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    expect_error(
        c.get(format!("{u}/v2/r/manifests/latest"))
            .send()
            .await
            .unwrap(),
        404,
        "MANIFEST_UNKNOWN",
    )
    .await;
    assert_eq!(
        c.get(format!("{u}/v2/r/manifests/{d}"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // Delete by digest: manifest and remaining tags go.
    let r = c
        .delete(format!("{u}/v2/r/manifests/{d}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    expect_error(
        c.get(format!("{u}/v2/r/manifests/{d}"))
            .send()
            .await
            .unwrap(),
        404,
        "MANIFEST_UNKNOWN",
    )
    .await;
    expect_error(
        c.get(format!("{u}/v2/r/manifests/v1"))
            .send()
            .await
            .unwrap(),
        404,
        "MANIFEST_UNKNOWN",
    )
    .await;
    expect_error(
        c.delete(format!("{u}/v2/r/manifests/{d}"))
            .send()
            .await
            .unwrap(),
        404,
        "MANIFEST_UNKNOWN",
    )
    .await;
}

#[tokio::test]
async fn indexes_docker_types_foreign_layers_and_embedded_data() {
    let b = Berth::start();
    let (c, u) = (client(), b.url());
    let (amd, amd_m) = push_image(&c, &u, "multi", "amd64-only", "amd").await;
    let (arm, arm_m) = push_image(&c, &u, "multi", "arm64-only", "arm").await;
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": amd, "size": amd_m.len(), "platform": {"architecture": "amd64", "os": "linux"}},
            {"mediaType": OCI_MANIFEST, "digest": arm, "size": arm_m.len(), "platform": {"architecture": "arm64", "os": "linux"}},
        ]})).unwrap();
    assert_eq!(
        put_manifest(&c, &u, "multi", "latest", OCI_INDEX, &index)
            .await
            .status(),
        201
    );
    // Nested index.
    let nested = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_INDEX, "digest": sha256(&index), "size": index.len()}]}))
    .unwrap();
    assert_eq!(
        put_manifest(&c, &u, "multi", "nested", OCI_INDEX, &nested)
            .await
            .status(),
        201
    );
    // An index whose child is missing.
    let broken = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": sha256(b"ghost"), "size": 5}]}))
    .unwrap();
    expect_error(
        put_manifest(&c, &u, "multi", "broken", OCI_INDEX, &broken).await,
        400,
        "MANIFEST_BLOB_UNKNOWN",
    )
    .await;
    let r = c
        .get(format!("{u}/v2/multi/manifests/latest"))
        .header("accept", OCI_INDEX)
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "content-type").as_deref(), Some(OCI_INDEX));

    // Docker schema2 + manifest list.
    let cfg = b"{\"architecture\":\"amd64\",\"os\":\"linux\",\"docker\":true}".to_vec();
    let layer = b"docker layer".to_vec();
    push_blob(&c, &u, "dock", &cfg).await;
    push_blob(&c, &u, "dock", &layer).await;
    let dm = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": descriptor(DOCKER_CONFIG, &cfg), "layers": [descriptor(DOCKER_LAYER, &layer)]}))
    .unwrap();
    assert_eq!(
        put_manifest(&c, &u, "dock", "v1", DOCKER_MANIFEST, &dm)
            .await
            .status(),
        201
    );
    let list = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": DOCKER_LIST,
        "manifests": [{"mediaType": DOCKER_MANIFEST, "digest": sha256(&dm), "size": dm.len(), "platform": {"architecture": "amd64", "os": "linux"}}]})).unwrap();
    assert_eq!(
        put_manifest(&c, &u, "dock", "list", DOCKER_LIST, &list)
            .await
            .status(),
        201
    );
    let r = c
        .get(format!("{u}/v2/dock/manifests/list"))
        .header("accept", DOCKER_LIST)
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "content-type").as_deref(), Some(DOCKER_LIST));

    // A foreign (non-distributable) layer that is never pushed is accepted.
    let foreign = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": descriptor(DOCKER_CONFIG, &cfg),
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                    "digest": sha256(b"windows base"), "size": 12, "urls": ["https://example.invalid/layer"]},
                   descriptor(DOCKER_LAYER, &layer)]})).unwrap();
    assert_eq!(
        put_manifest(&c, &u, "dock", "foreign", DOCKER_MANIFEST, &foreign)
            .await
            .status(),
        201
    );

    // An artifact whose empty config is embedded with `data`, no layers,
    // a custom field, and no blob pushed at all.
    let artifact = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.thing",
        "config": {"mediaType": OCI_EMPTY, "digest": sha256(b"{}"), "size": 2, "data": "e30="},
        "layers": [], "x-custom": {"kept": true}}))
    .unwrap();
    let r = put_manifest(&c, &u, "art", "v1", OCI_MANIFEST, &artifact).await;
    assert_eq!(r.status(), 201);
    let got = c
        .get(format!("{u}/v2/art/manifests/v1"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got.as_ref(), &artifact[..]);
}

#[tokio::test]
async fn referrers_api() {
    let b = Berth::start();
    let (c, u) = (client(), b.url());
    let (subject, subject_m) = push_image(&c, &u, "sig", "v1", "s").await;
    let empty = push_blob(&c, &u, "sig", b"{}").await;
    let mut referrers = Vec::new();
    for (i, at) in [
        "application/vnd.dev.sigstore.bundle+json",
        "application/spdx+json",
        "application/spdx+json",
    ]
    .iter()
    .enumerate()
    {
        let payload = format!("payload {i}").into_bytes();
        push_blob(&c, &u, "sig", &payload).await;
        let m = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": at,
            "config": {"mediaType": OCI_EMPTY, "digest": empty, "size": 2},
            "layers": [descriptor("application/octet-stream", &payload)],
            "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": subject_m.len()},
            "annotations": {"org.opencontainers.image.created": format!("2026-01-0{}T00:00:00Z", i + 1)}})).unwrap();
        let d = sha256(&m);
        let r = put_manifest(&c, &u, "sig", &d, OCI_MANIFEST, &m).await;
        assert_eq!(r.status(), 201);
        assert_eq!(header(&r, "oci-subject"), Some(subject.clone()));
        referrers.push((d, at.to_string(), m.len()));
    }
    let r = c
        .get(format!("{u}/v2/sig/referrers/{subject}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type").as_deref(), Some(OCI_INDEX));
    assert!(header(&r, "oci-filters-applied").is_none());
    let idx: Value = r.json().await.unwrap();
    assert_eq!(idx["schemaVersion"], 2);
    assert_eq!(idx["mediaType"], OCI_INDEX);
    let ms = idx["manifests"].as_array().unwrap();
    assert_eq!(ms.len(), 3);
    for (d, at, size) in &referrers {
        let e = ms
            .iter()
            .find(|m| m["digest"] == d.as_str())
            .expect("referrer listed");
        assert_eq!(e["artifactType"], at.as_str());
        assert_eq!(e["size"], *size);
        assert_eq!(e["mediaType"], OCI_MANIFEST);
        assert!(e["annotations"]["org.opencontainers.image.created"].is_string());
    }
    let r = c
        .get(format!(
            "{u}/v2/sig/referrers/{subject}?artifactType=application/spdx%2Bjson"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&r, "oci-filters-applied").as_deref(),
        Some("artifactType")
    );
    let idx: Value = r.json().await.unwrap();
    assert_eq!(idx["manifests"].as_array().unwrap().len(), 2);

    // A subject that was never pushed: empty index, and referrers pushed
    // before their subject are accepted.
    let ghost = sha256(b"ghost subject");
    let idx: Value = c
        .get(format!("{u}/v2/sig/referrers/{ghost}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(idx["manifests"], json!([]));
    let idx: Value = c
        .get(format!("{u}/v2/unknown-repo/referrers/{ghost}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(idx["manifests"], json!([]));
    expect_error(
        c.get(format!("{u}/v2/sig/referrers/sha256:nothex"))
            .send()
            .await
            .unwrap(),
        400,
        "DIGEST_INVALID",
    )
    .await;

    // Deleting a referrer removes it from the list.
    let (d0, _, _) = &referrers[0];
    assert_eq!(
        c.delete(format!("{u}/v2/sig/manifests/{d0}"))
            .send()
            .await
            .unwrap()
            .status(),
        202
    );
    let idx: Value = c
        .get(format!("{u}/v2/sig/referrers/{subject}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(idx["manifests"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn tags_and_catalog_pagination() {
    let b = Berth::start();
    let (c, u) = (client(), b.url());
    let config = b"{}".to_vec();
    push_blob(&c, &u, "pag", &config).await;
    let m = image_manifest(&config, &[]);
    let d = sha256(&m);
    let names = ["b", "a", "C", "c10", "c2", "_u", "v1.0"];
    let q: String = names.iter().map(|t| format!("tag={t}&")).collect();
    let r = c
        .put(format!("{u}/v2/pag/manifests/{d}?{q}"))
        .header("content-type", OCI_MANIFEST)
        .body(m)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let mut sorted: Vec<&str> = names.to_vec();
    sorted.sort();
    let all: Value = c
        .get(format!("{u}/v2/pag/tags/list"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(all["tags"], json!(sorted));

    // Walk pages of 3 following Link headers.
    let mut got = Vec::new();
    let mut next = Some("/v2/pag/tags/list?n=3".to_owned());
    let mut pages = 0;
    while let Some(path) = next {
        let r = c.get(format!("{u}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        next = header(&r, "link").map(|l| {
            assert!(l.ends_with("; rel=\"next\""), "{l}");
            l[1..l.find('>').unwrap()].to_owned()
        });
        let v: Value = r.json().await.unwrap();
        let page: Vec<String> = serde_json::from_value(v["tags"].clone()).unwrap();
        assert!(page.len() <= 3);
        got.extend(page);
        pages += 1;
        assert!(pages < 10);
    }
    assert_eq!(got, sorted);
    let v: Value = c
        .get(format!("{u}/v2/pag/tags/list?n=0"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["tags"], json!([]));
    let v: Value = c
        .get(format!("{u}/v2/pag/tags/list?last=c2"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["tags"], json!(["v1.0"]));
    expect_error(
        c.get(format!("{u}/v2/pag/tags/list?n=-1"))
            .send()
            .await
            .unwrap(),
        400,
        "UNSUPPORTED",
    )
    .await;
    expect_error(
        c.get(format!("{u}/v2/nope/tags/list"))
            .send()
            .await
            .unwrap(),
        404,
        "NAME_UNKNOWN",
    )
    .await;

    for repo in ["z/one", "a/two", "m"] {
        push_blob(&c, &u, repo, b"x").await;
    }
    let v: Value = c
        .get(format!("{u}/v2/_catalog"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["repositories"], json!(["a/two", "m", "pag", "z/one"]));
    let r = c.get(format!("{u}/v2/_catalog?n=2")).send().await.unwrap();
    assert_eq!(
        header(&r, "link").as_deref(),
        Some("</v2/_catalog?n=2&last=m>; rel=\"next\"")
    );
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["repositories"], json!(["a/two", "m"]));
    let v: Value = c
        .get(format!("{u}/v2/_catalog?n=2&last=m"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["repositories"], json!(["pag", "z/one"]));
}

#[tokio::test]
async fn hostile_names_and_paths() {
    let b = Berth::start();
    let (c, u) = (client(), b.url());
    for name in ["UPPER", "a//b", "a/-b", "a_-_b"] {
        let r = c
            .get(format!("{u}/v2/{name}/tags/list"))
            .send()
            .await
            .unwrap();
        expect_error(r, 400, "NAME_INVALID").await;
    }
    let long = vec!["abcdefghij"; 30].join("/");
    expect_error(
        c.get(format!("{u}/v2/{long}/manifests/latest"))
            .send()
            .await
            .unwrap(),
        400,
        "NAME_INVALID",
    )
    .await;
    for path in [
        "/v2/../../etc/passwd/blobs/uploads/",
        "/v2/a/%2e%2e/b/manifests/x",
        "/v2/a/blobs/uploads/..%2f..%2fx",
    ] {
        let resp = raw(
            &b.addr,
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        )
        .await;
        let status: u16 = resp[9..12].parse().unwrap();
        assert!(status == 400 || status == 404, "{path}: {resp}");
        assert!(resp.contains("\"errors\""), "{resp}");
    }
    // A garbage request line or huge header never crashes the server.
    let _ = raw(&b.addr, "GARBAGE\r\n\r\n").await;
    let resp = raw(
        &b.addr,
        &format!(
            "GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
            "a".repeat(200_000)
        ),
    )
    .await;
    let status = resp.get(9..12).unwrap_or("");
    assert!(
        ["200", "400", "431", ""].contains(&status),
        "{}",
        &resp[..resp.len().min(200)]
    );
    assert_eq!(
        c.get(format!("{u}/v2/")).send().await.unwrap().status(),
        200
    );
}

#[tokio::test]
async fn concurrent_pushes_of_one_tag() {
    let b = Berth::start();
    let (c, u) = (client(), b.url());
    let config = b"{}".to_vec();
    push_blob(&c, &u, "race", &config).await;
    let mut tasks = Vec::new();
    let mut digests = Vec::new();
    for i in 0..16 {
        let layer = format!("layer {i}").into_bytes();
        push_blob(&c, &u, "race", &layer).await;
        let m = image_manifest(&config, &[&layer]);
        digests.push(sha256(&m));
        let (c, u) = (c.clone(), u.clone());
        tasks.push(tokio::spawn(async move {
            put_manifest(&c, &u, "race", "latest", OCI_MANIFEST, &m)
                .await
                .status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 201);
    }
    let r = c
        .get(format!("{u}/v2/race/manifests/latest"))
        .send()
        .await
        .unwrap();
    let d = header(&r, "docker-content-digest").unwrap();
    let body = r.bytes().await.unwrap();
    assert!(digests.contains(&d));
    assert_eq!(sha256(&body), d, "tag and body agree");
    // Every manifest is still there by digest.
    for d in &digests {
        assert_eq!(
            c.head(format!("{u}/v2/race/manifests/{d}"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
}
