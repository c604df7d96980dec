//! Sigstore bundles as OCI 1.1 referrers, end to end: bundles made in the
//! test exactly in the sigstore bundle JSON shape (v0.3, and v0.2), their
//! signatures made by Python's `cryptography` ([`crate::trust::Signer`]),
//! pushed as cosign pushes them (`cosign sign --new-bundle-format`: a
//! manifest whose artifact type and single layer are the bundle, subject
//! the image), then verified by berth and enforced on pulls. Refused, each
//! in its own test: the wrong key, a tampered signature, a bundle of
//! another image; a keyless bundle, in a namespace trusting no Fulcio
//! root, says what to add.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use reqwest::Client;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use crate::common::Berth;
use crate::oci::{
    client, expect_error, push_blob, push_image, put_manifest, sha256, OCI_EMPTY, OCI_MANIFEST,
};
use crate::trust::{receiver, trust, Signer};

/// The bundle media type (and artifact type) of sigstore bundles v0.3.
pub const BUNDLE_V03: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// ... and of v0.2.
pub const BUNDLE_V02: &str = "application/vnd.dev.sigstore.bundle+json;version=0.2";

/// A bundle whose `messageSignature` signs the manifest bytes `manifest`
/// (its digest in `messageDigest`), key-based (`publicKey.hint`).
pub fn message_bundle(signer: &Signer, manifest: &[u8]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "mediaType": BUNDLE_V03,
        "verificationMaterial": {
            "publicKey": {"hint": "release"},
            "tlogEntries": [],
            "timestampVerificationData": {"rfc3161Timestamps": []},
        },
        "messageSignature": {
            "messageDigest": {"algorithm": "SHA2_256", "digest": B64.encode(Sha256::digest(manifest))},
            "signature": signer.sign(manifest),
        },
    }))
    .unwrap()
}

/// DSSE's pre-authentication encoding.
fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// An in-toto statement about `digest` of `name` (cosign's signing
/// predicate).
pub fn statement(name: &str, digest: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": name, "digest": {"sha256": digest.trim_start_matches("sha256:")}}],
        "predicateType": "https://sigstore.dev/cosign/sign/v1",
        "predicate": {},
    }))
    .unwrap()
}

/// A bundle of media type `media_type` whose DSSE envelope signs
/// `payload` (an in-toto statement).
pub fn dsse_bundle(signer: &Signer, media_type: &str, payload: &[u8]) -> Vec<u8> {
    let payload_type = "application/vnd.in-toto+json";
    serde_json::to_vec(&json!({
        "mediaType": media_type,
        "verificationMaterial": {"publicKey": {"hint": ""}, "tlogEntries": []},
        "dsseEnvelope": {
            "payload": B64.encode(payload),
            "payloadType": payload_type,
            "signatures": [{"sig": signer.sign(&pae(payload_type, payload)), "keyid": ""}],
        },
    }))
    .unwrap()
}

/// Pushes `bundle` as cosign does: a manifest with the bundle's artifact
/// type, the empty config, the bundle as its one layer, `subject` the
/// image (its digest and manifest bytes). Returns its digest.
pub async fn push_bundle(
    c: &Client,
    base: &str,
    repo: &str,
    subject: (&str, usize),
    artifact_type: &str,
    bundle: &[u8],
) -> String {
    let empty = push_blob(c, base, repo, b"{}").await;
    let layer = push_blob(c, base, repo, bundle).await;
    let content = if bundle.windows(12).any(|w| w == b"dsseEnvelope") {
        "dsse-envelope"
    } else {
        "message-signature"
    };
    let m = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": {"mediaType": OCI_EMPTY, "digest": empty, "size": 2},
        "layers": [{"mediaType": artifact_type, "digest": layer, "size": bundle.len()}],
        "annotations": {
            "dev.sigstore.bundle.content": content,
            "dev.sigstore.bundle.predicateType": "https://sigstore.dev/cosign/sign/v1",
            "org.opencontainers.image.created": "2026-01-01T00:00:00Z",
        },
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject.0, "size": subject.1},
    }))
    .unwrap();
    let digest = sha256(&m);
    let r = put_manifest(c, base, repo, &digest, OCI_MANIFEST, &m).await;
    assert_eq!(r.status(), 201, "bundle push: {:?}", r.text().await);
    digest
}

/// The verdict of `reference` in `repo` from the management API.
pub async fn verdict(c: &Client, b: &Berth, repo: &str, reference: &str) -> Value {
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

/// A manifest GET as a client pulls.
pub async fn pull(c: &Client, b: &Berth, repo: &str, reference: &str) -> reqwest::Response {
    c.get(format!("{}/v2/{repo}/manifests/{reference}", b.url()))
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap()
}

/// A server whose namespace `acme` trusts `signer` (as `release`) under
/// `enforce`.
fn enforcing(signer: &Signer) -> (Berth, tempfile::TempDir) {
    let b = Berth::start();
    let dir = tempfile::tempdir().unwrap();
    let public = signer.public.display().to_string();
    trust(
        &b,
        dir.path(),
        &["add", "acme", "--cosign-key", &public, "--name", "release"],
    );
    trust(&b, dir.path(), &["policy", "acme", "enforce"]);
    (b, dir)
}

#[tokio::test]
async fn trust_bundle_signatures_verify_and_pass_enforcement() {
    let signer = Signer::new("p256");
    let (b, dir) = enforcing(&signer);
    let c = client();
    let base = b.url();
    let rsa = Signer::new("rsa");
    let public = rsa.public.display().to_string();
    trust(
        &b,
        dir.path(),
        &["add", "acme", "--cosign-key", &public, "--name", "build"],
    );

    // messageSignature (v0.3) over the image manifest.
    let (one, m1) = push_image(&c, &base, "acme/web", "one", "one").await;
    expect_error(pull(&c, &b, "acme/web", "one").await, 403, "DENIED").await;
    let bundle = push_bundle(
        &c,
        &base,
        "acme/web",
        (&one, m1.len()),
        BUNDLE_V03,
        &message_bundle(&signer, &m1),
    )
    .await;
    let v = verdict(&c, &b, "acme/web", "one").await;
    assert_eq!(v["state"], "verified", "{v}");
    assert_eq!(v["key"], "release");
    assert_eq!(v["algorithm"], "ecdsa-p256");
    assert_eq!(v["format"], "sigstore-bundle");
    assert_eq!(v["signature"], bundle.as_str());
    assert_eq!(v["referrers"], json!([bundle]));
    assert_eq!(v["signatures"], Value::Null);
    let r = pull(&c, &b, "acme/web", "one").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), m1.as_slice());
    // The bundle itself and the referrers query are never refused.
    assert_eq!(pull(&c, &b, "acme/web", &bundle).await.status(), 200);
    let referrers: Value = c
        .get(format!("{base}/v2/acme/web/referrers/{one}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(referrers["manifests"][0]["artifactType"], BUNDLE_V03);

    // A DSSE envelope (v0.2) of an in-toto statement, RSA.
    let (two, m2) = push_image(&c, &base, "acme/web", "two", "two").await;
    let s = statement(&format!("{}/acme/web", b.addr), &two);
    push_bundle(
        &c,
        &base,
        "acme/web",
        (&two, m2.len()),
        BUNDLE_V02,
        &dsse_bundle(&rsa, BUNDLE_V02, &s),
    )
    .await;
    let v = verdict(&c, &b, "acme/web", "two").await;
    assert_eq!(v["state"], "verified", "{v}");
    assert_eq!(v["key"], "build");
    assert_eq!(v["format"], "sigstore-bundle");
    assert_eq!(pull(&c, &b, "acme/web", &two).await.status(), 200);
    let text = trust(&b, dir.path(), &["verify", "acme/web:two"]);
    assert!(
        text.contains("verified by key \"build\" (rsa, sigstore bundle)"),
        "{text}"
    );
    let shown = crate::tools::berth_ok(
        dir.path(),
        &["inspect", &format!("{}/acme/web:one", b.addr)],
    );
    assert!(
        shown.contains(
            "Signature:  verified by key \"release\" (ecdsa-p256, sigstore bundle); policy enforce"
        ),
        "{shown}"
    );

    // Removing the bundle's key: the next pull is refused again.
    trust(&b, dir.path(), &["remove", "acme", "release"]);
    let msg = expect_error(pull(&c, &b, "acme/web", "one").await, 403, "DENIED").await;
    assert!(msg.contains("bad_signature"), "{msg}");
}

#[tokio::test]
async fn trust_bundle_by_the_wrong_key_is_refused() {
    let signer = Signer::new("p384");
    let (b, _dir) = enforcing(&signer);
    let c = client();
    let other = Signer::new("p384");
    let (d, m) = push_image(&c, &b.url(), "acme/web", "v1", "wrong").await;
    push_bundle(
        &c,
        &b.url(),
        "acme/web",
        (&d, m.len()),
        BUNDLE_V03,
        &message_bundle(&other, &m),
    )
    .await;
    let v = verdict(&c, &b, "acme/web", "v1").await;
    assert_eq!(v["reason"], "bad_signature", "{v}");
    assert!(v["detail"].as_str().unwrap().contains("release"), "{v}");
    let msg = expect_error(pull(&c, &b, "acme/web", "v1").await, 403, "DENIED").await;
    assert!(
        msg.contains("signature policy of namespace acme (enforce)"),
        "{msg}"
    );
}

#[tokio::test]
async fn trust_tampered_bundles_are_refused() {
    let signer = Signer::new("ed25519");
    let (b, _dir) = enforcing(&signer);
    let c = client();
    let base = b.url();
    // A messageSignature whose signature was made over other bytes.
    let (d, m) = push_image(&c, &base, "acme/web", "msg", "msg").await;
    let mut bundle: Value = serde_json::from_slice(&message_bundle(&signer, &m)).unwrap();
    bundle["messageSignature"]["signature"] = json!(signer.sign(b"something else"));
    push_bundle(
        &c,
        &base,
        "acme/web",
        (&d, m.len()),
        BUNDLE_V03,
        &serde_json::to_vec(&bundle).unwrap(),
    )
    .await;
    assert_eq!(
        verdict(&c, &b, "acme/web", "msg").await["reason"],
        "bad_signature"
    );
    expect_error(pull(&c, &b, "acme/web", "msg").await, 403, "DENIED").await;

    // A DSSE statement edited after signing to name this image.
    let (good, _) = push_image(&c, &base, "acme/web", "good", "good").await;
    let (evil, evil_m) = push_image(&c, &base, "acme/web", "evil", "evil").await;
    let signed = statement("acme/web", &good);
    let mut bundle: Value =
        serde_json::from_slice(&dsse_bundle(&signer, BUNDLE_V03, &signed)).unwrap();
    let edited = String::from_utf8(signed).unwrap().replace(
        good.trim_start_matches("sha256:"),
        evil.trim_start_matches("sha256:"),
    );
    bundle["dsseEnvelope"]["payload"] = json!(B64.encode(edited));
    push_bundle(
        &c,
        &base,
        "acme/web",
        (&evil, evil_m.len()),
        BUNDLE_V03,
        &serde_json::to_vec(&bundle).unwrap(),
    )
    .await;
    assert_eq!(
        verdict(&c, &b, "acme/web", "evil").await["reason"],
        "bad_signature"
    );
    expect_error(pull(&c, &b, "acme/web", &evil).await, 403, "DENIED").await;
}

#[tokio::test]
async fn trust_bundle_of_another_image_is_refused() {
    let signer = Signer::new("rsa-pss");
    let (b, _dir) = enforcing(&signer);
    let c = client();
    let base = b.url();
    let (signed, signed_m) = push_image(&c, &base, "acme/web", "signed", "signed").await;
    let (other, other_m) = push_image(&c, &base, "acme/web", "other", "other").await;
    // The untouched bundle of `signed`, pushed as a referrer of `other`.
    let bundle = message_bundle(&signer, &signed_m);
    push_bundle(
        &c,
        &base,
        "acme/web",
        (&signed, signed_m.len()),
        BUNDLE_V03,
        &bundle,
    )
    .await;
    push_bundle(
        &c,
        &base,
        "acme/web",
        (&other, other_m.len()),
        BUNDLE_V03,
        &bundle,
    )
    .await;
    let v = verdict(&c, &b, "acme/web", "other").await;
    assert_eq!(v["reason"], "digest_mismatch", "{v}");
    assert!(v["detail"].as_str().unwrap().contains(&other), "{v}");
    // A DSSE statement about `signed`, signed, pushed for `other`.
    let (third, third_m) = push_image(&c, &base, "acme/web", "third", "third").await;
    let s = statement("acme/web", &signed);
    push_bundle(
        &c,
        &base,
        "acme/web",
        (&third, third_m.len()),
        BUNDLE_V03,
        &dsse_bundle(&signer, BUNDLE_V03, &s),
    )
    .await;
    let v = verdict(&c, &b, "acme/web", "third").await;
    assert_eq!(v["reason"], "digest_mismatch", "{v}");
    assert!(v["detail"].as_str().unwrap().contains(&signed), "{v}");
    let msg = expect_error(pull(&c, &b, "acme/web", "other").await, 403, "DENIED").await;
    assert!(msg.contains("digest_mismatch"), "{msg}");
    assert_eq!(pull(&c, &b, "acme/web", "signed").await.status(), 200);
}

#[tokio::test]
async fn trust_keyless_bundles_without_fulcio_trust_say_what_to_add() {
    let signer = Signer::new("p256");
    let (b, _dir) = enforcing(&signer);
    let c = client();
    let (d, m) = push_image(&c, &b.url(), "acme/web", "v1", "keyless").await;
    let mut bundle: Value = serde_json::from_slice(&message_bundle(&signer, &m)).unwrap();
    bundle["verificationMaterial"] = json!({
        "certificate": {"rawBytes": B64.encode(b"a Fulcio certificate")},
        "tlogEntries": [],
    });
    push_bundle(
        &c,
        &b.url(),
        "acme/web",
        (&d, m.len()),
        BUNDLE_V03,
        &serde_json::to_vec(&bundle).unwrap(),
    )
    .await;
    let v = verdict(&c, &b, "acme/web", "v1").await;
    assert_eq!(v["reason"], "bad_signature", "{v}");
    let msg = expect_error(pull(&c, &b, "acme/web", "v1").await, 403, "DENIED").await;
    assert!(
        msg.contains("trusts no Fulcio root for keyless signatures; add one with `berth trust add NAMESPACE --fulcio-root"),
        "{msg}"
    );
}

#[tokio::test]
async fn trust_bundle_events_reach_webhooks() {
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
    let other = Signer::new("p256");
    let public = trusted.public.display().to_string();
    trust(
        &b,
        dir.path(),
        &["add", "acme", "--cosign-key", &public, "--name", "ci"],
    );
    let (good, gm) = push_image(&c, &base, "acme/web", "good", "good").await;
    let (bad, bm) = push_image(&c, &base, "acme/web", "bad", "bad").await;
    let ok = push_bundle(
        &c,
        &base,
        "acme/web",
        (&good, gm.len()),
        BUNDLE_V03,
        &message_bundle(&trusted, &gm),
    )
    .await;
    push_bundle(
        &c,
        &base,
        "acme/web",
        (&bad, bm.len()),
        BUNDLE_V03,
        &message_bundle(&other, &bm),
    )
    .await;

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
    let verified = find("signature.verified");
    assert_eq!(verified["data"]["digest"], good.as_str());
    assert_eq!(verified["data"]["verdict"]["format"], "sigstore-bundle");
    assert_eq!(verified["data"]["verdict"]["signature"], ok.as_str());
    let failed = find("signature.failed");
    assert_eq!(failed["data"]["digest"], bad.as_str());
    assert_eq!(failed["data"]["verdict"]["reason"], "bad_signature");
}
