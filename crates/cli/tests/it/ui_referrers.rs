//! The image page's referrers against a real `berth serve --auth token`:
//! an SBOM's package list (1,500 packages, collapsed), a sigstore bundle
//! signature with the key that verified it, a second one that was not
//! needed, an attestation's predicate type, and a signature by an
//! untrusted key saying why it does not verify. Signatures and
//! attestations are made as cosign makes them ([`crate::trust`],
//! [`crate::trust_bundles`]); `ui_browser` attaches an SBOM with
//! `berth sbom --attach` and reads it in Chromium.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::auth::{req, Cred, Fixture};
use crate::oci::{sha256, OCI_EMPTY, OCI_MANIFEST};
use crate::trust::Signer;
use crate::trust_bundles::{dsse_bundle, message_bundle, BUNDLE_V03};
use crate::ui::Browser;

/// A client that opens a connection per request: the pushes below come
/// after seconds of key generation, when a pooled connection may be
/// closing on the server's side.
fn fresh() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client")
}

/// Pushes `document` as a referrer of `subject` (its digest and manifest
/// bytes) the way oras and cosign do: the empty config, the document as
/// the one layer, `artifact_type`, `annotations`. Returns its digest.
pub async fn push_referrer(
    f: &Fixture,
    cred: &Cred,
    repo: &str,
    subject: (&str, &[u8]),
    artifact_type: &str,
    document: &[u8],
    annotations: Value,
) -> String {
    for blob in [&b"{}"[..], document] {
        let r = req(
            &fresh(),
            Method::POST,
            &format!(
                "{}/v2/{repo}/blobs/uploads/?digest={}",
                f.url(),
                sha256(blob)
            ),
            cred,
        )
        .body(blob.to_vec())
        .send()
        .await
        .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
    }
    let m = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": {"mediaType": OCI_EMPTY, "digest": sha256(b"{}"), "size": 2},
        "layers": [{"mediaType": artifact_type, "digest": sha256(document), "size": document.len()}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject.0, "size": subject.1.len()},
        "annotations": annotations,
    }))
    .unwrap();
    let digest = sha256(&m);
    let r = req(
        &fresh(),
        Method::PUT,
        &format!("{}/v2/{repo}/manifests/{digest}", f.url()),
        cred,
    )
    .header("content-type", OCI_MANIFEST)
    .body(m)
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
    digest
}

/// The manifest bytes of `repo:reference` as `cred` reads them.
pub async fn manifest_bytes(f: &Fixture, cred: &Cred, repo: &str, reference: &str) -> Vec<u8> {
    let r = req(
        &fresh(),
        Method::GET,
        &format!("{}/v2/{repo}/manifests/{reference}", f.url()),
        cred,
    )
    .header("accept", OCI_MANIFEST)
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.bytes().await.unwrap().to_vec()
}

/// Trusts `signer`'s public key as `name` in `ns`, through the API.
pub async fn trust_key(f: &Fixture, cred: &Cred, ns: &str, signer: &Signer, name: &str) {
    let pem = std::fs::read_to_string(&signer.public).unwrap();
    let r = req(
        &fresh(),
        Method::POST,
        &format!("{}/api/v1/namespaces/{ns}/trust/keys", f.url()),
        cred,
    )
    .json(&json!({ "cosign_key": pem, "name": name }))
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
}

/// A sigstore bundle signing `manifest`, pushed as cosign pushes it.
pub async fn push_signature(
    f: &Fixture,
    cred: &Cred,
    repo: &str,
    subject: (&str, &[u8]),
    signer: &Signer,
) -> String {
    push_referrer(
        f,
        cred,
        repo,
        subject,
        BUNDLE_V03,
        &message_bundle(signer, subject.1),
        json!({
            "dev.sigstore.bundle.content": "message-signature",
            "dev.sigstore.bundle.predicateType": "https://sigstore.dev/cosign/sign/v1",
            "org.opencontainers.image.created": "2026-01-01T00:00:00Z",
        }),
    )
    .await
}

/// An SPDX 2.3 document listing `n` packages `pkg-NNNN`.
fn spdx(n: usize) -> Vec<u8> {
    berth_testkit::spdx_document(n, "pkg")
}

#[tokio::test]
async fn the_image_page_reads_sboms_signatures_and_attestations() {
    let f = Fixture::start("").await;
    let alice = f.user("alice").await;
    let bob = f.user("bob").await;
    let (s, one) = f.push(&alice, "alice/app", "v1", "one").await;
    assert_eq!(s, StatusCode::CREATED);
    let m1 = manifest_bytes(&f, &alice, "alice/app", "v1").await;
    assert_eq!(sha256(&m1), one);

    let release = Signer::new("p256");
    trust_key(&f, &alice, "alice", &release, "release").await;
    let sbom = push_referrer(
        &f,
        &alice,
        "alice/app",
        (&one, &m1),
        "application/spdx+json",
        &spdx(1500),
        json!({"org.opencontainers.image.created": "2026-01-02T00:00:00Z"}),
    )
    .await;
    let signed = push_signature(&f, &alice, "alice/app", (&one, &m1), &release).await;
    let provenance = serde_json::to_vec(&json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "alice/app", "digest": {"sha256": one.trim_start_matches("sha256:")}}],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {"buildDefinition": {"buildType": "https://example.com/build"}},
    }))
    .unwrap();
    // Its predicate type is in the document only (no annotation).
    push_referrer(
        &f,
        &alice,
        "alice/app",
        (&one, &m1),
        BUNDLE_V03,
        &dsse_bundle(&release, BUNDLE_V03, &provenance),
        json!({"dev.sigstore.bundle.content": "dsse-envelope"}),
    )
    .await;

    let mut a = Browser::new(&f.url());
    a.sign_in("alice", &crate::ui::password(&alice)).await;
    let page = a.get("/ui/repo/alice/app:v1").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let body = &page.body;
    // The SBOM: 1,500 packages, collapsed, each with version and purl.
    assert!(
        body.contains("1500 packages"),
        "{}",
        &body[body.find("ref-h").unwrap()..][..3000]
    );
    assert!(body.contains("<details class=\"packages\">"), "collapsed");
    assert!(body.contains("<td>pkg-0000</td>") && body.contains("<td>pkg-1499</td>"));
    assert!(body.contains("pkg:generic/pkg-1499@1.1499.0"));
    assert!(body.contains("SPDX-2.3"));
    assert!(body.contains(&format!("/ui/repo/alice/app@{sbom}")));
    // The signature, verified by the trusted key.
    let at = body.find(&format!("/ui/repo/alice/app@{signed}")).unwrap();
    let item = &body[at..at + body[at..].find("</li>").unwrap()];
    assert!(item.contains("sigstore bundle: "), "{item}");
    assert!(
        item.contains(
            r#"verified</span> by key <strong class="key">release</strong> (ecdsa-p256)"#
        ),
        "{item}"
    );
    // The attestation's predicate type, read from its DSSE envelope.
    assert!(
        body.contains(
            r#"Predicate type: <code class="predicate">https://slsa.dev/provenance/v1</code>"#
        ),
        "{}",
        &body[body.find("ref-h").unwrap()..][..3000]
    );

    // A second image signed only by a key nobody trusts: why not.
    let (_, two) = f.push(&alice, "alice/app", "v2", "two").await;
    let m2 = manifest_bytes(&f, &alice, "alice/app", "v2").await;
    let stranger = Signer::new("p256");
    push_signature(&f, &alice, "alice/app", (&two, &m2), &stranger).await;
    let page = a.get("/ui/repo/alice/app:v2").await;
    assert_eq!(page.status, StatusCode::OK);
    let refs = &page.body[page.body.find("ref-h").unwrap()..];
    assert!(refs.contains("not verified</span>"), "{refs}");
    assert!(refs.contains("no trusted key"), "{refs}");

    // A small SBOM is open at once; bob sees none of it.
    let small = push_referrer(
        &f,
        &alice,
        "alice/app",
        (&two, &m2),
        "application/spdx+json",
        &spdx(3),
        json!({}),
    )
    .await;
    let page = a.get("/ui/repo/alice/app:v2").await;
    let refs = &page.body[page.body.find("ref-h").unwrap()..];
    assert!(refs.contains("<details class=\"packages\" open>"), "{refs}");
    assert!(page.body.contains(&small));
    let mut b = Browser::new(&f.url());
    b.sign_in("bob", &crate::ui::password(&bob)).await;
    let r = b.get("/ui/repo/alice/app:v1").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(!r.body.contains("pkg-0000"));
}
