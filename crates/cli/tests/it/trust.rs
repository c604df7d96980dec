//! Signature verification and enforcement end to end: keys made and
//! payloads signed in the test with Python's `cryptography`, formatted
//! exactly as cosign does (simple-signing payload as a layer of a manifest
//! tagged `sha256-<hex>.sig`, the base64 signature in the layer annotation
//! `dev.cosignproject.cosign/signature`), pushed with reqwest, then
//! verified by berth (`berth trust verify`, the management API) and
//! enforced on pulls. Refused, each in its own test: the wrong key, a
//! tampered payload, a signature of another manifest.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use reqwest::Client;
use serde_json::{json, Value};

use crate::common::Berth;
use crate::oci::{client, expect_error, push_blob, push_image, put_manifest, sha256, OCI_MANIFEST};
use crate::tools::{berth, berth_ok};

const SIGNER: &str = r#"
import base64, sys
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

cmd, kind, key_path = sys.argv[1:4]
if cmd == "gen":
    if kind.startswith("p256"):
        k = ec.generate_private_key(ec.SECP256R1())
    elif kind.startswith("p384"):
        k = ec.generate_private_key(ec.SECP384R1())
    elif kind.startswith("rsa"):
        k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        k = ed25519.Ed25519PrivateKey.generate()
    with open(key_path, "wb") as f:
        f.write(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()))
    sys.stdout.write(k.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode())
else:
    with open(key_path, "rb") as f:
        k = serialization.load_pem_private_key(f.read(), None)
    data = sys.stdin.buffer.read()
    if kind == "p256":
        sig = k.sign(data, ec.ECDSA(hashes.SHA256()))
    elif kind == "p384":
        sig = k.sign(data, ec.ECDSA(hashes.SHA384()))
    elif kind == "p384-sha256":
        sig = k.sign(data, ec.ECDSA(hashes.SHA256()))
    elif kind == "rsa":
        sig = k.sign(data, padding.PKCS1v15(), hashes.SHA256())
    elif kind == "rsa-pss":
        sig = k.sign(data, padding.PSS(mgf=padding.MGF1(hashes.SHA256()),
                                       salt_length=padding.PSS.DIGEST_LENGTH), hashes.SHA256())
    else:
        sig = k.sign(data)
    sys.stdout.write(base64.b64encode(sig).decode())
"#;

/// A private key made by Python's `cryptography`, and its public half as
/// `cosign.pub` holds it.
pub struct Signer {
    kind: &'static str,
    key: PathBuf,
    /// The public key's PEM file.
    pub public: PathBuf,
    _dir: tempfile::TempDir,
}

impl Signer {
    /// A new key of `kind`: `p256`, `p384`, `p384-sha256` (P-384 signing
    /// SHA-256, cosign's default digest), `rsa` (PKCS#1 v1.5), `rsa-pss`,
    /// `ed25519`.
    pub fn new(kind: &'static str) -> Signer {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("cosign.key");
        let public = dir.path().join("cosign.pub");
        let out = Command::new("python3")
            .args(["-c", SIGNER, "gen", kind])
            .arg(&key)
            .output()
            .expect("python3 (scripts/install-test-deps.sh installs it with cryptography)");
        assert!(
            out.status.success(),
            "key generation failed (is python3-cryptography installed?): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(&public, &out.stdout).unwrap();
        Signer {
            kind,
            key,
            public,
            _dir: dir,
        }
    }

    /// The base64 signature of `payload`, as cosign puts it in the
    /// annotation.
    pub fn sign(&self, payload: &[u8]) -> String {
        use std::io::Write as _;
        let mut child = Command::new("python3")
            .args(["-c", SIGNER, "sign", self.kind])
            .arg(&self.key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(payload).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

/// cosign's simple-signing payload for `digest` of `image` (Go's
/// `json.Marshal` of its struct: no spaces, this field order).
pub fn payload(image: &str, digest: &str) -> Vec<u8> {
    format!(
        r#"{{"critical":{{"identity":{{"docker-reference":"{image}"}},"image":{{"docker-manifest-digest":"{digest}"}},"type":"cosign container image signature"}},"optional":null}}"#
    )
    .into_bytes()
}

/// The tag cosign pushes the signatures of `digest` under.
pub fn sig_tag(digest: &str) -> String {
    format!("{}.sig", digest.replace(':', "-"))
}

/// Pushes a signature manifest as cosign does: one simple-signing layer
/// per `(payload, signature)`, under the tag `tag`. Returns its digest.
pub async fn push_signatures(
    c: &Client,
    base: &str,
    repo: &str,
    tag: &str,
    signatures: &[(Vec<u8>, String)],
) -> String {
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for (payload, sig) in signatures {
        let d = push_blob(c, base, repo, payload).await;
        diff_ids.push(d.clone());
        layers.push(json!({
            "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
            "size": payload.len(),
            "digest": d,
            "annotations": {"dev.cosignproject.cosign/signature": sig},
        }));
    }
    let config = serde_json::to_vec(&json!({
        "architecture": "", "created": "0001-01-01T00:00:00Z",
        "history": [{"created": "0001-01-01T00:00:00Z"}], "os": "",
        "rootfs": {"type": "layers", "diff_ids": diff_ids}, "config": {},
    }))
    .unwrap();
    let config_digest = push_blob(c, base, repo, &config).await;
    let m = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "size": config.len(), "digest": config_digest},
        "layers": layers,
    }))
    .unwrap();
    let r = put_manifest(c, base, repo, tag, OCI_MANIFEST, &m).await;
    assert_eq!(r.status(), 201, "signature push: {:?}", r.text().await);
    sha256(&m)
}

/// Signs `digest` of `repo` with `signer` and pushes the signature.
pub async fn sign(c: &Client, b: &Berth, repo: &str, digest: &str, signer: &Signer) -> String {
    let p = payload(&format!("{}/{repo}", b.addr), digest);
    let s = signer.sign(&p);
    push_signatures(c, &b.url(), repo, &sig_tag(digest), &[(p, s)]).await
}

/// `berth trust ARGS --registry B`, asserting success.
pub fn trust(b: &Berth, dir: &Path, args: &[&str]) -> String {
    let mut all = vec!["trust"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--registry", &b.addr]);
    berth_ok(dir, &all)
}

/// The verdict of `reference` in `repo` from the management API.
async fn verdict(c: &Client, b: &Berth, repo: &str, reference: &str) -> Value {
    let r = c
        .get(format!(
            "{}/api/v1/repositories/{repo}/signature?reference={reference}",
            b.url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

async fn pull(c: &Client, b: &Berth, repo: &str, reference: &str) -> reqwest::Response {
    c.get(format!("{}/v2/{repo}/manifests/{reference}", b.url()))
        .header("accept", OCI_MANIFEST)
        .header("accept", "application/vnd.oci.image.index.v1+json")
        .send()
        .await
        .unwrap()
}

/// A namespace trusting `signer` under `name`, with `policy`.
fn trusting(b: &Berth, dir: &Path, ns: &str, signer: &Signer, name: &str, policy: &str) {
    let public = signer.public.display().to_string();
    trust(
        b,
        dir,
        &["add", ns, "--cosign-key", &public, "--name", name],
    );
    trust(b, dir, &["policy", ns, policy]);
}

#[tokio::test]
async fn trust_every_key_kind_verifies_cosign_signatures() {
    let b = Berth::start();
    let c = client();
    let dir = tempfile::tempdir().unwrap();
    let kinds = [
        ("p256", "ecdsa-p256"),
        ("p384", "ecdsa-p384"),
        ("p384-sha256", "ecdsa-p384"),
        ("rsa", "rsa"),
        ("rsa-pss", "rsa"),
        ("ed25519", "ed25519"),
    ];
    for (i, (kind, algorithm)) in kinds.iter().enumerate() {
        let ns = format!("k{i}");
        let repo = format!("{ns}/web");
        let signer = Signer::new(kind);
        let public = signer.public.display().to_string();
        let added = trust(
            &b,
            dir.path(),
            &[
                "add",
                &ns,
                "--cosign-key",
                &public,
                "--name",
                "release",
                "-o",
                "json",
            ],
        );
        let added: Value = serde_json::from_str(&added).unwrap();
        assert_eq!(added["algorithm"], *algorithm, "{kind}");
        let (digest, _) = push_image(&c, &b.url(), &repo, "v1", kind).await;

        // Before any signature: not verified, and `verify` exits 1.
        let out = berth(
            dir.path(),
            &[
                "trust",
                "verify",
                &format!("{repo}:v1"),
                "--registry",
                &b.addr,
            ],
        );
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("no_signature"),
            "{out:?}"
        );

        let sig = sign(&c, &b, &repo, &digest, &signer).await;
        let v = verdict(&c, &b, &repo, "v1").await;
        assert_eq!(v["state"], "verified", "{kind}: {v}");
        assert_eq!(v["key"], "release");
        assert_eq!(v["algorithm"], *algorithm);
        assert_eq!(v["digest"], digest.as_str());
        assert_eq!(v["signatures"], sig.as_str());
        let text = trust(&b, dir.path(), &["verify", &format!("{repo}@{digest}")]);
        assert!(text.contains("verified by key \"release\""), "{text}");
        if i == 0 {
            let shown = berth_ok(dir.path(), &["inspect", &format!("{}/{repo}:v1", b.addr)]);
            assert!(
                shown.contains("Signature:  verified by key \"release\" (ecdsa-p256); policy off"),
                "{shown}"
            );
        }
    }
    let list = trust(&b, dir.path(), &["list", "k3"]);
    assert!(list.contains("release") && list.contains("rsa"), "{list}");
    let all: Value = serde_json::from_str(&trust(&b, dir.path(), &["list", "-o", "json"])).unwrap();
    assert_eq!(all["namespaces"].as_array().unwrap().len(), kinds.len());
}

#[tokio::test]
async fn trust_refuses_a_signature_by_the_wrong_key() {
    let b = Berth::start();
    let c = client();
    let dir = tempfile::tempdir().unwrap();
    let trusted = Signer::new("p256");
    let other = Signer::new("p256");
    trusting(&b, dir.path(), "acme", &trusted, "release", "enforce");
    let (digest, _) = push_image(&c, &b.url(), "acme/web", "v1", "wrong-key").await;
    sign(&c, &b, "acme/web", &digest, &other).await;

    let v = verdict(&c, &b, "acme/web", "v1").await;
    assert_eq!(v["state"], "unverified");
    assert_eq!(v["reason"], "bad_signature", "{v}");
    let msg = expect_error(pull(&c, &b, "acme/web", "v1").await, 403, "DENIED").await;
    assert!(
        msg.contains("signature policy of namespace acme (enforce)"),
        "{msg}"
    );
    assert!(msg.contains("bad_signature"), "{msg}");
    assert!(msg.contains("cosign sign"), "{msg}");
}

#[tokio::test]
async fn trust_refuses_a_tampered_payload() {
    let b = Berth::start();
    let c = client();
    let dir = tempfile::tempdir().unwrap();
    let signer = Signer::new("ed25519");
    trusting(&b, dir.path(), "acme", &signer, "release", "enforce");
    let (good, _) = push_image(&c, &b.url(), "acme/web", "good", "good").await;
    let (evil, _) = push_image(&c, &b.url(), "acme/web", "evil", "evil").await;
    // A valid signature of `good`, its payload edited to name `evil`.
    let p = payload(&format!("{}/acme/web", b.addr), &good);
    let s = signer.sign(&p);
    let tampered = String::from_utf8(p)
        .unwrap()
        .replace(&good, &evil)
        .into_bytes();
    push_signatures(&c, &b.url(), "acme/web", &sig_tag(&evil), &[(tampered, s)]).await;

    let v = verdict(&c, &b, "acme/web", "evil").await;
    assert_eq!(v["reason"], "bad_signature", "{v}");
    expect_error(pull(&c, &b, "acme/web", "evil").await, 403, "DENIED").await;
    expect_error(pull(&c, &b, "acme/web", &evil).await, 403, "DENIED").await;
}

#[tokio::test]
async fn trust_refuses_a_signature_of_another_digest() {
    let b = Berth::start();
    let c = client();
    let dir = tempfile::tempdir().unwrap();
    let signer = Signer::new("rsa");
    trusting(&b, dir.path(), "acme", &signer, "release", "enforce");
    let (signed, _) = push_image(&c, &b.url(), "acme/web", "signed", "signed").await;
    let (other, _) = push_image(&c, &b.url(), "acme/web", "other", "other").await;
    // The untouched signature of `signed`, pushed as `other`'s.
    let p = payload(&format!("{}/acme/web", b.addr), &signed);
    let s = signer.sign(&p);
    push_signatures(
        &c,
        &b.url(),
        "acme/web",
        &sig_tag(&signed),
        &[(p.clone(), s.clone())],
    )
    .await;
    push_signatures(&c, &b.url(), "acme/web", &sig_tag(&other), &[(p, s)]).await;

    let v = verdict(&c, &b, "acme/web", "other").await;
    assert_eq!(v["reason"], "digest_mismatch", "{v}");
    assert!(v["detail"].as_str().unwrap().contains(&signed), "{v}");
    let msg = expect_error(pull(&c, &b, "acme/web", "other").await, 403, "DENIED").await;
    assert!(msg.contains("digest_mismatch"), "{msg}");
    assert_eq!(pull(&c, &b, "acme/web", "signed").await.status(), 200);
}

/// Pushes an index over `children` (manifest digests of `repo`, with
/// their sizes) under `reference`; returns its digest.
async fn push_index(
    c: &Client,
    b: &Berth,
    repo: &str,
    reference: &str,
    children: &[(String, usize)],
) -> String {
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": children.iter().enumerate().map(|(i, (d, size))| json!({
            "mediaType": OCI_MANIFEST, "digest": d, "size": size,
            "platform": {"os": "linux", "architecture": if i == 0 { "amd64" } else { "arm64" }},
        })).collect::<Vec<_>>(),
    }))
    .unwrap();
    let r = put_manifest(
        c,
        &b.url(),
        repo,
        reference,
        "application/vnd.oci.image.index.v1+json",
        &index,
    )
    .await;
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    sha256(&index)
}

async fn status(c: &Client, method: reqwest::Method, url: String) -> u16 {
    c.request(method, url)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn trust_enforce_refuses_unsigned_pulls_and_keeps_the_signing_flow_open() {
    let b = Berth::start();
    let c = client();
    let base = b.url();
    let dir = tempfile::tempdir().unwrap();
    let signer = Signer::new("p384");
    trusting(&b, dir.path(), "acme", &signer, "release", "enforce");

    // Unsigned: refused by tag and by digest; HEAD, blobs, tag lists and
    // referrers stay open.
    let (unsigned, m) = push_image(&c, &base, "acme/web", "unsigned", "unsigned").await;
    let msg = expect_error(pull(&c, &b, "acme/web", "unsigned").await, 403, "DENIED").await;
    assert!(msg.contains(&format!("acme/web@{unsigned}")), "{msg}");
    assert!(msg.contains("no_signature"), "{msg}");
    expect_error(pull(&c, &b, "acme/web", &unsigned).await, 403, "DENIED").await;
    let url = |p: &str| format!("{base}/v2/acme/web/{p}");
    assert_eq!(
        status(&c, reqwest::Method::HEAD, url("manifests/unsigned")).await,
        200
    );
    let config: Value = serde_json::from_slice(&m).unwrap();
    let config = config["config"]["digest"].as_str().unwrap().to_owned();
    assert_eq!(
        status(&c, reqwest::Method::GET, url(&format!("blobs/{config}"))).await,
        200
    );
    assert_eq!(
        status(&c, reqwest::Method::GET, url("tags/list")).await,
        200
    );
    assert_eq!(
        status(
            &c,
            reqwest::Method::GET,
            url(&format!("referrers/{unsigned}"))
        )
        .await,
        200
    );

    // An artifact whose subject is the unsigned image (an SBOM) is read.
    let empty = push_blob(&c, &base, "acme/web", b"{}").await;
    let sbom = push_blob(&c, &base, "acme/web", b"{\"spdxVersion\":\"SPDX-2.3\"}").await;
    let artifact = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "artifactType": "application/spdx+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [{"mediaType": "application/spdx+json", "digest": sbom, "size": 26}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": unsigned, "size": m.len()},
    }))
    .unwrap();
    let artifact_digest = sha256(&artifact);
    let r = put_manifest(
        &c,
        &base,
        "acme/web",
        &artifact_digest,
        OCI_MANIFEST,
        &artifact,
    )
    .await;
    assert_eq!(r.status(), 201);
    assert_eq!(
        pull(&c, &b, "acme/web", &artifact_digest).await.status(),
        200
    );

    // Signing it: the signature push, its tag and its manifest by digest
    // are never refused; then the image is pulled.
    let sig = sign(&c, &b, "acme/web", &unsigned, &signer).await;
    assert_eq!(
        pull(&c, &b, "acme/web", &sig_tag(&unsigned)).await.status(),
        200
    );
    assert_eq!(pull(&c, &b, "acme/web", &sig).await.status(), 200);
    let r = pull(&c, &b, "acme/web", "unsigned").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), m.as_slice());

    // An index signed as a whole: it and its platform images are pulled;
    // an unsigned index is refused.
    let (a, a_m) = push_image(&c, &base, "acme/multi", "amd64", "amd64").await;
    let (r2, r_m) = push_image(&c, &base, "acme/multi", "arm64", "arm64").await;
    let children = [(a.clone(), a_m.len()), (r2.clone(), r_m.len())];
    let index = push_index(&c, &b, "acme/multi", "v1", &children).await;
    expect_error(pull(&c, &b, "acme/multi", "v1").await, 403, "DENIED").await;
    expect_error(pull(&c, &b, "acme/multi", &a).await, 403, "DENIED").await;
    sign(&c, &b, "acme/multi", &index, &signer).await;
    assert_eq!(pull(&c, &b, "acme/multi", "v1").await.status(), 200);
    assert_eq!(pull(&c, &b, "acme/multi", &a).await.status(), 200);
    assert_eq!(pull(&c, &b, "acme/multi", &r2).await.status(), 200);

    // A trust change applies on the next pull: without the key nothing
    // verifies; with it back, the signed image is pulled again.
    trust(&b, dir.path(), &["remove", "acme", "release"]);
    let msg = expect_error(pull(&c, &b, "acme/web", "unsigned").await, 403, "DENIED").await;
    assert!(msg.contains("no_trust"), "{msg}");
    let public = signer.public.display().to_string();
    trust(
        &b,
        dir.path(),
        &["add", "acme", "--cosign-key", &public, "--name", "again"],
    );
    assert_eq!(pull(&c, &b, "acme/web", "unsigned").await.status(), 200);
    assert_eq!(
        verdict(&c, &b, "acme/web", "unsigned").await["key"],
        "again"
    );

    // Another namespace has no policy: nothing is checked there.
    push_image(&c, &base, "other/web", "v1", "other").await;
    assert_eq!(pull(&c, &b, "other/web", "v1").await.status(), 200);

    // warn: allowed, logged and counted.
    push_image(&c, &base, "acme/web", "later", "later").await;
    trust(&b, dir.path(), &["policy", "acme", "warn"]);
    assert_eq!(pull(&c, &b, "acme/web", "later").await.status(), 200);
    let metrics = c
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            r#"berth_signature_pull_checks_total{policy="warn",outcome="allowed_unverified"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics
            .contains(r#"berth_signature_pull_checks_total{policy="enforce",outcome="refused"}"#),
        "{metrics}"
    );
    // The log is written by a thread of its own, in batches.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !b.log().contains("warn signature policy of namespace acme") {
        assert!(std::time::Instant::now() < deadline, "{}", b.log());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    trust(&b, dir.path(), &["policy", "acme", "off"]);
    let shown: Value =
        serde_json::from_str(&trust(&b, dir.path(), &["list", "acme", "-o", "json"])).unwrap();
    assert_eq!(shown["policy"], Value::Null);
    assert_eq!(shown["keys"][0]["name"], "again");
}

/// A webhook receiver on a loopback port: answers 204, keeps the bodies.
pub async fn receiver() -> (String, std::sync::Arc<std::sync::Mutex<Vec<Value>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let shared = got.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let shared = shared.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                loop {
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |v| v.trim().parse().unwrap());
                    while buf.len() < end + 4 + len {
                        match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let body: Vec<u8> = buf.drain(..end + 4 + len).skip(end + 4).collect();
                    shared
                        .lock()
                        .unwrap()
                        .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
                    let _ = conn
                        .write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                        .await;
                }
            });
        }
    });
    (url, got)
}

#[tokio::test]
async fn trust_signature_events_reach_webhooks() {
    let b = Berth::start_with(&["--webhook-allow-networks", "127.0.0.0/8"], None);
    let c = client();
    let base = b.url();
    let dir = tempfile::tempdir().unwrap();
    let (url, got) = receiver().await;
    let r = c
        .post(format!("{base}/api/v1/namespaces/acme/webhooks"))
        .json(&json!({"url": url, "secret": "a-secret-of-some-length",
                      "events": ["signature.verified", "signature.failed"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    let trusted = Signer::new("p256");
    let other = Signer::new("ed25519");
    let public = trusted.public.display().to_string();
    trust(
        &b,
        dir.path(),
        &["add", "acme", "--cosign-key", &public, "--name", "ci"],
    );

    let (good, _) = push_image(&c, &base, "acme/web", "good", "good").await;
    let (bad, _) = push_image(&c, &base, "acme/web", "bad", "bad").await;
    sign(&c, &b, "acme/web", &good, &trusted).await;
    sign(&c, &b, "acme/web", &bad, &other).await;

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let events = loop {
        let events = got.lock().unwrap().clone();
        if events.len() >= 2 {
            break events;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "events so far: {events:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let find = |kind: &str| {
        events
            .iter()
            .find(|e| e["type"] == format!("io.berth.{kind}"))
            .unwrap_or_else(|| panic!("no {kind} in {events:?}"))
            .clone()
    };
    let ok = find("signature.verified");
    assert_eq!(ok["data"]["digest"], good.as_str());
    assert_eq!(ok["data"]["verdict"]["key"], "ci");
    assert_eq!(ok["data"]["tag"], sig_tag(&good));
    let failed = find("signature.failed");
    assert_eq!(failed["data"]["digest"], bad.as_str());
    assert_eq!(failed["data"]["verdict"]["reason"], "bad_signature");
    assert_eq!(failed["subject"], format!("acme/web@{bad}"));
}
