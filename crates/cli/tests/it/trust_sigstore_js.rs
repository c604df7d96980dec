//! Sigstore bundles made by sigstore's own JavaScript signer, npm
//! `@sigstore/sign` (pinned in scripts/install-test-deps-tools.sh): its
//! `MessageSignatureBundleBuilder` and `DSSEBundleBuilder` with a custom
//! `Signer` backed by a key node makes in the test, no witnesses (no
//! Fulcio, no Rekor), serialized by `@sigstore/bundle`'s `bundleToJSON`.
//! What they make differs from a hand-written bundle where it matters:
//! a message signature is a `version=0.2` bundle, the key hint is omitted
//! when empty, `tlogEntries` is absent and `timestampVerificationData`
//! empty, a DSSE signature has no `keyid`.
//!
//! The bundles are pushed as cosign pushes bundles (OCI 1.1 referrers with
//! artifact type `application/vnd.dev.sigstore.bundle.v0.3+json`, the
//! bundle the first layer, `subject` the image). A message signature signs
//! a cosign simple-signing payload naming the image, which the bundle's
//! manifest carries as its second layer. berth verifies them and enforces
//! them on pulls; refused, each in its own assertion: the wrong key, a
//! tampered payload, a bundle for another digest, a statement whose
//! subject is a different manifest.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use reqwest::Client;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use crate::common::Berth;
use crate::oci::{
    client, expect_error, push_blob, push_image, put_manifest, sha256, OCI_EMPTY, OCI_MANIFEST,
};
use crate::trust::{payload, trust};
use crate::trust_bundles::{pull, statement, verdict, BUNDLE_V02, BUNDLE_V03};

/// The signer: `gen KIND DIR` makes `DIR/key.pem` and `DIR/cosign.pub`;
/// `message|dsse DIR HINT ARTIFACT` prints the bundle of the artifact file.
const SIGN_JS: &str = r#"
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const { MessageSignatureBundleBuilder, DSSEBundleBuilder } = require('@sigstore/sign');
const { bundleToJSON } = require(require.resolve('@sigstore/bundle', {
  paths: [path.dirname(require.resolve('@sigstore/sign'))],
}));

const [cmd, kind, dir, hint, artifact] = process.argv.slice(2);
if (cmd === 'gen') {
  const opts = { p256: ['ec', { namedCurve: 'P-256' }], p384: ['ec', { namedCurve: 'P-384' }],
                 rsa: ['rsa', { modulusLength: 2048 }], ed25519: ['ed25519', {}] }[kind];
  const { privateKey, publicKey } = crypto.generateKeyPairSync(opts[0], opts[1]);
  fs.writeFileSync(path.join(dir, 'key.pem'), privateKey.export({ type: 'pkcs8', format: 'pem' }));
  fs.writeFileSync(path.join(dir, 'cosign.pub'), publicKey.export({ type: 'spki', format: 'pem' }));
  process.exit(0);
}
const key = crypto.createPrivateKey(fs.readFileSync(path.join(dir, 'key.pem')));
const publicKey = fs.readFileSync(path.join(dir, 'cosign.pub'), 'utf8');
const hash = { p256: 'sha256', p384: 'sha384', rsa: 'sha256', ed25519: null }[kind];
const signer = {
  async sign(data) {
    return { signature: crypto.sign(hash, data, key),
             key: { $case: 'publicKey', publicKey, hint: hint || undefined } };
  },
};
const data = fs.readFileSync(artifact);
const made = cmd === 'dsse'
  ? new DSSEBundleBuilder({ signer, witnesses: [] })
      .create({ data, type: 'application/vnd.in-toto+json' })
  : new MessageSignatureBundleBuilder({ signer, witnesses: [] }).create({ data });
made.then((b) => process.stdout.write(JSON.stringify(bundleToJSON(b))))
  .catch((e) => { console.error(e); process.exit(1); });
"#;

/// The global npm root, asserting `@sigstore/sign` is installed there.
pub(crate) fn npm_root() -> String {
    let out = Command::new("npm")
        .args(["root", "-g"])
        .output()
        .expect("npm (scripts/install-test-deps-tools.sh installs node and npm)");
    let root = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(
        Path::new(&root).join("@sigstore/sign/package.json").is_file(),
        "@sigstore/sign is not installed in {root} (scripts/install-test-deps-tools.sh installs it)"
    );
    root
}

/// A key made by node, and bundles signed with it by `@sigstore/sign`.
struct JsSigner {
    kind: &'static str,
    dir: tempfile::TempDir,
    script: PathBuf,
    node_path: String,
}

impl JsSigner {
    /// A new key: `p256`, `p384`, `rsa` or `ed25519`.
    fn new(kind: &'static str) -> JsSigner {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("sign.js");
        std::fs::write(&script, SIGN_JS).unwrap();
        let s = JsSigner {
            kind,
            script,
            node_path: npm_root(),
            dir,
        };
        s.node(&["gen", kind, &s.dir.path().display().to_string()]);
        s
    }

    fn node(&self, args: &[&str]) -> Vec<u8> {
        let out = Command::new("node")
            .arg(&self.script)
            .args(args)
            .env("NODE_PATH", &self.node_path)
            .output()
            .expect("node (scripts/install-test-deps-tools.sh installs it)");
        assert!(
            out.status.success(),
            "@sigstore/sign failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// The public key file (`cosign.pub`).
    fn public(&self) -> String {
        self.dir.path().join("cosign.pub").display().to_string()
    }

    /// The bundle of `artifact`: `message` or `dsse` (an in-toto statement).
    fn bundle(&self, how: &str, hint: &str, artifact: &[u8]) -> Vec<u8> {
        let file = self.dir.path().join("artifact");
        std::fs::write(&file, artifact).unwrap();
        let dir = self.dir.path().display().to_string();
        self.node(&[how, self.kind, &dir, hint, &file.display().to_string()])
    }
}

/// Pushes `bundle` as a referrer of `subject` (digest, size) the way cosign
/// does, with the simple-signing `payload` a message signature signs as a
/// second layer when given. Returns the referrer's digest.
pub(crate) async fn push_referrer(
    c: &Client,
    base: &str,
    repo: &str,
    subject: (&str, usize),
    bundle: &[u8],
    payload: Option<&[u8]>,
) -> String {
    let parsed: Value = serde_json::from_slice(bundle).unwrap();
    let media_type = parsed["mediaType"].as_str().unwrap().to_owned();
    let empty = push_blob(c, base, repo, b"{}").await;
    let layer = push_blob(c, base, repo, bundle).await;
    let mut layers = vec![json!({
        "mediaType": media_type, "digest": layer, "size": bundle.len(),
        "annotations": {"org.opencontainers.image.title":
                        format!("{}.sigstore.json", layer.replace(':', "-"))},
    })];
    if let Some(p) = payload {
        let d = push_blob(c, base, repo, p).await;
        layers.push(
            json!({"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
                           "digest": d, "size": p.len()}),
        );
    }
    let content = if parsed["dsseEnvelope"].is_object() {
        "dsse-envelope"
    } else {
        "message-signature"
    };
    let m = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": BUNDLE_V03,
        "config": {"mediaType": OCI_EMPTY, "digest": empty, "size": 2},
        "layers": layers,
        "annotations": {"dev.sigstore.bundle.content": content,
                        "org.opencontainers.image.created": "2026-11-30T14:00:00Z"},
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject.0, "size": subject.1},
    }))
    .unwrap();
    let digest = sha256(&m);
    let r = put_manifest(c, base, repo, &digest, OCI_MANIFEST, &m).await;
    assert_eq!(r.status(), 201, "bundle push: {:?}", r.text().await);
    digest
}

/// A server whose namespace `acme` trusts `signer` (as `release`) under
/// `enforce`.
fn enforcing(signer: &JsSigner) -> (Berth, tempfile::TempDir) {
    let b = Berth::start();
    let dir = tempfile::tempdir().unwrap();
    let public = signer.public();
    trust(
        &b,
        dir.path(),
        &["add", "acme", "--cosign-key", &public, "--name", "release"],
    );
    trust(&b, dir.path(), &["policy", "acme", "enforce"]);
    (b, dir)
}

#[tokio::test]
async fn trust_sigstore_js_bundles_verify_and_pass_enforcement() {
    let p256 = JsSigner::new("p256");
    let (b, dir) = enforcing(&p256);
    let ed25519 = JsSigner::new("ed25519");
    let rsa = JsSigner::new("rsa");
    for (s, name) in [(&ed25519, "ed"), (&rsa, "build")] {
        let public = s.public();
        trust(
            &b,
            dir.path(),
            &["add", "acme", "--cosign-key", &public, "--name", name],
        );
    }
    let c = client();
    let base = b.url();
    let repo = format!("{}/acme/web", b.addr);

    // A message signature over a simple-signing payload naming the image.
    let (one, m1) = push_image(&c, &base, "acme/web", "one", "one").await;
    expect_error(pull(&c, &b, "acme/web", "one").await, 403, "DENIED").await;
    let p = payload(&repo, &one);
    let bundle = p256.bundle("message", "release", &p);
    let made: Value = serde_json::from_slice(&bundle).unwrap();
    assert_eq!(made["mediaType"], BUNDLE_V02, "{made}");
    assert_eq!(made["verificationMaterial"]["publicKey"]["hint"], "release");
    let sig = push_referrer(&c, &base, "acme/web", (&one, m1.len()), &bundle, Some(&p)).await;
    let v = verdict(&c, &b, "acme/web", "one").await;
    assert_eq!(v["state"], "verified", "{v}");
    assert_eq!(v["key"], "release");
    assert_eq!(v["format"], "sigstore-bundle");
    assert_eq!(v["signature"], sig.as_str());
    let r = pull(&c, &b, "acme/web", "one").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), m1.as_slice());

    // A message signature over the manifest itself, RSA.
    let (two, m2) = push_image(&c, &base, "acme/web", "two", "two").await;
    let bundle = rsa.bundle("message", "", &m2);
    let made: Value = serde_json::from_slice(&bundle).unwrap();
    assert_eq!(
        made["verificationMaterial"]["publicKey"],
        json!({}),
        "{made}"
    );
    push_referrer(&c, &base, "acme/web", (&two, m2.len()), &bundle, None).await;
    let v = verdict(&c, &b, "acme/web", "two").await;
    assert_eq!(v["state"], "verified", "{v}");
    assert_eq!(v["key"], "build");
    assert_eq!(pull(&c, &b, "acme/web", "two").await.status(), 200);

    // A DSSE envelope of an in-toto statement about the image, Ed25519.
    let (three, m3) = push_image(&c, &base, "acme/web", "three", "three").await;
    let bundle = ed25519.bundle("dsse", "", &statement(&repo, &three));
    let made: Value = serde_json::from_slice(&bundle).unwrap();
    assert_eq!(made["mediaType"], BUNDLE_V03, "{made}");
    assert!(
        made["dsseEnvelope"]["signatures"][0]["keyid"].is_null(),
        "{made}"
    );
    push_referrer(&c, &base, "acme/web", (&three, m3.len()), &bundle, None).await;
    let v = verdict(&c, &b, "acme/web", "three").await;
    assert_eq!(v["state"], "verified", "{v}");
    assert_eq!(v["key"], "ed");
    assert_eq!(v["algorithm"], "ed25519");
    assert_eq!(pull(&c, &b, "acme/web", &three).await.status(), 200);
    let text = trust(&b, dir.path(), &["verify", "acme/web:three"]);
    assert!(
        text.contains("verified by key \"ed\" (ed25519, sigstore bundle)"),
        "{text}"
    );
}

#[tokio::test]
async fn trust_sigstore_js_bundles_refused() {
    let signer = JsSigner::new("p384");
    let (b, _dir) = enforcing(&signer);
    let c = client();
    let base = b.url();
    let repo = format!("{}/acme/web", b.addr);
    let refused = |v: &Value, reason: &str| {
        assert_eq!(v["state"], "unverified", "{v}");
        assert_eq!(v["reason"], reason, "{v}");
    };

    // The wrong key: a bundle by a key acme does not trust.
    let other = JsSigner::new("p384");
    let (d, m) = push_image(&c, &base, "acme/web", "wrong-key", "wrong-key").await;
    let s = statement(&repo, &d);
    push_referrer(
        &c,
        &base,
        "acme/web",
        (&d, m.len()),
        &other.bundle("dsse", "", &s),
        None,
    )
    .await;
    refused(
        &verdict(&c, &b, "acme/web", "wrong-key").await,
        "bad_signature",
    );
    expect_error(pull(&c, &b, "acme/web", "wrong-key").await, 403, "DENIED").await;

    // A tampered payload: the simple-signing payload edited after signing
    // (its digest in the bundle updated to match), and a DSSE statement
    // edited after signing.
    let (d, m) = push_image(&c, &base, "acme/web", "tampered", "tampered").await;
    let signed = payload(&repo, &d);
    let mut bundle: Value = serde_json::from_slice(&signer.bundle("message", "", &signed)).unwrap();
    let edited = payload("evil.example/acme/web", &d);
    bundle["messageSignature"]["messageDigest"]["digest"] =
        json!(B64.encode(Sha256::digest(&edited)));
    let bundle = serde_json::to_vec(&bundle).unwrap();
    push_referrer(&c, &base, "acme/web", (&d, m.len()), &bundle, Some(&edited)).await;
    refused(
        &verdict(&c, &b, "acme/web", "tampered").await,
        "bad_signature",
    );
    let (d, m) = push_image(&c, &base, "acme/web", "tampered-dsse", "tampered-dsse").await;
    let (good, gm) = push_image(&c, &base, "acme/web", "good", "good").await;
    let mut bundle: Value =
        serde_json::from_slice(&signer.bundle("dsse", "", &statement(&repo, &good))).unwrap();
    bundle["dsseEnvelope"]["payload"] = json!(B64.encode(statement(&repo, &d)));
    let bundle = serde_json::to_vec(&bundle).unwrap();
    push_referrer(&c, &base, "acme/web", (&d, m.len()), &bundle, None).await;
    refused(
        &verdict(&c, &b, "acme/web", "tampered-dsse").await,
        "bad_signature",
    );
    expect_error(pull(&c, &b, "acme/web", "tampered").await, 403, "DENIED").await;

    // A bundle for another digest: a valid message signature of a payload
    // naming `good`, pushed as a referrer of this image.
    let (d, m) = push_image(&c, &base, "acme/web", "another", "another").await;
    let p = payload(&repo, &good);
    let bundle = signer.bundle("message", "", &p);
    push_referrer(&c, &base, "acme/web", (&d, m.len()), &bundle, Some(&p)).await;
    let v = verdict(&c, &b, "acme/web", "another").await;
    refused(&v, "digest_mismatch");
    assert!(v["detail"].as_str().unwrap().contains(&good), "{v}");
    let msg = expect_error(pull(&c, &b, "acme/web", "another").await, 403, "DENIED").await;
    assert!(msg.contains("digest_mismatch"), "{msg}");

    // A statement whose subject is a different manifest: the untouched
    // bundle of `good`, pushed as a referrer of this image; `good` itself,
    // given its own bundle, verifies.
    let (d, m) = push_image(&c, &base, "acme/web", "different", "different").await;
    let bundle = signer.bundle("dsse", "", &statement(&repo, &good));
    push_referrer(&c, &base, "acme/web", (&d, m.len()), &bundle, None).await;
    let v = verdict(&c, &b, "acme/web", "different").await;
    refused(&v, "digest_mismatch");
    assert!(v["detail"].as_str().unwrap().contains(&good), "{v}");
    expect_error(pull(&c, &b, "acme/web", "different").await, 403, "DENIED").await;
    push_referrer(&c, &base, "acme/web", (&good, gm.len()), &bundle, None).await;
    assert_eq!(
        verdict(&c, &b, "acme/web", "good").await["state"],
        "verified"
    );
    assert_eq!(pull(&c, &b, "acme/web", "good").await.status(), 200);
}
