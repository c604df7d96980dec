//! Small helpers to talk the distribution API in tests.

#![allow(dead_code)]

use reqwest::{Client, Response, StatusCode};
use serde_json::{json, Value};
use sha2::Digest as _;

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

pub fn sha512(data: &[u8]) -> String {
    format!("sha512:{}", hex::encode(sha2::Sha512::digest(data)))
}

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";

pub fn client() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// Pushes a blob with a single POST; returns its digest.
pub async fn push_blob(c: &Client, base: &str, repo: &str, data: &[u8]) -> String {
    let d = sha256(data);
    let r = c
        .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={d}"))
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "push blob: {:?}",
        r.text().await
    );
    d
}

pub fn descriptor(media_type: &str, data: &[u8]) -> Value {
    json!({"mediaType": media_type, "digest": sha256(data), "size": data.len()})
}

/// An image manifest over a config and layers (which it does not push).
pub fn image_manifest(config: &[u8], layers: &[&[u8]]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config),
        "layers": layers.iter().map(|l| descriptor(OCI_LAYER, l)).collect::<Vec<_>>(),
    }))
    .unwrap()
}

/// Pushes a config and layers of random content, then the manifest under
/// `reference`; returns (manifest digest, manifest bytes).
pub async fn push_image(
    c: &Client,
    base: &str,
    repo: &str,
    reference: &str,
    seed: &str,
) -> (String, Vec<u8>) {
    let config =
        format!("{{\"architecture\":\"amd64\",\"os\":\"linux\",\"seed\":\"{seed}\"}}").into_bytes();
    let layer = format!("layer-{seed}").into_bytes();
    push_blob(c, base, repo, &config).await;
    push_blob(c, base, repo, &layer).await;
    let m = image_manifest(&config, &[&layer]);
    let r = put_manifest(c, base, repo, reference, OCI_MANIFEST, &m).await;
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
    (sha256(&m), m)
}

pub async fn put_manifest(
    c: &Client,
    base: &str,
    repo: &str,
    reference: &str,
    media_type: &str,
    body: &[u8],
) -> Response {
    c.put(format!("{base}/v2/{repo}/manifests/{reference}"))
        .header("content-type", media_type)
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
}

/// Asserts an OCI error body with `code` and returns the message.
pub async fn expect_error(r: Response, status: u16, code: &str) -> String {
    assert_eq!(r.status().as_u16(), status, "status of {}", r.url());
    assert_eq!(
        r.headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .as_deref(),
        Some("application/json")
    );
    let body: Value = r.json().await.expect("JSON error body");
    let errors = body["errors"].as_array().expect("errors array");
    assert_eq!(errors[0]["code"], code, "body: {body}");
    let msg = errors[0]["message"].as_str().expect("message").to_owned();
    assert!(!msg.is_empty());
    msg
}

/// HEADs manifest `reference` of `repo` accepting `accept` (which a pull
/// policy never refuses); asserts 200 and returns its digest and size.
pub async fn head_manifest(
    c: &Client,
    base: &str,
    repo: &str,
    reference: &str,
    accept: &str,
) -> (String, usize) {
    let r = c
        .head(format!("{base}/v2/{repo}/manifests/{reference}"))
        .header("accept", accept)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "HEAD {repo}:{reference}");
    let digest = header(&r, "docker-content-digest").expect("docker-content-digest");
    let size = header(&r, "content-length")
        .and_then(|l| l.parse().ok())
        .expect("content-length");
    (digest, size)
}

/// GETs `url` (a manifest) accepting OCI image manifests and indexes.
pub async fn get_manifest(c: &Client, url: String) -> Response {
    c.get(url)
        .header("accept", format!("{OCI_MANIFEST}, {OCI_INDEX}"))
        .send()
        .await
        .unwrap()
}

pub fn header(r: &Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

/// Sends raw bytes over TCP and returns the response head and body (for
/// requests an HTTP client would normalise, such as `..` in paths).
pub async fn raw(addr: &str, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// Every file below `dir`, recursively (empty if it does not exist).
pub fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
