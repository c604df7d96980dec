//! Notary Project (notation) signatures end to end: a root CA, an
//! intermediate and a code-signing leaf made in the test by Python's
//! `cryptography`, a JWS envelope signed with the leaf exactly as the
//! Notary Project specification writes it (protected header with `alg`,
//! `cty`, `crit`, the `notary.x509` signing scheme, signing time and
//! expiry; `x5c` chain in the unprotected header; payload naming the
//! target artifact), pushed as notation pushes it (a referrer with
//! artifact type `application/vnd.cncf.notary.signature`), verified by
//! berth against the namespace's `--notation-root`, and enforced on
//! pulls. Refused, each in its own test: an untrusted root, an expired
//! signature, a signature of another manifest; a COSE envelope is named
//! unsupported.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use reqwest::Client;
use serde_json::{json, Value};

use crate::common::Berth;
use crate::oci::{
    client, expect_error, push_blob, push_image, put_manifest, sha256, OCI_EMPTY, OCI_MANIFEST,
};
use crate::trust::trust;
use crate::trust_bundles::{pull, verdict};

const PKI: &str = r#"
import base64, datetime, json, os, sys
from cryptography import x509
from cryptography.x509.oid import NameOID, ExtendedKeyUsageOID
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa, padding, utils

cmd, d = sys.argv[1:3]
now = datetime.datetime.now(datetime.timezone.utc)

def name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

def new_key(kind):
    return ec.generate_private_key(ec.SECP256R1()) if kind == "ec" else rsa.generate_private_key(65537, 2048)

def cert(cn, key, issuer_cn, issuer_key, ca):
    usage = dict(digital_signature=not ca, content_commitment=False, key_encipherment=False,
                 data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                 encipher_only=False, decipher_only=False)
    b = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(name(issuer_cn))
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(days=1))
         .not_valid_after(now + datetime.timedelta(days=30))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
         .add_extension(x509.KeyUsage(**usage), critical=True))
    if not ca:
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
    return b.sign(issuer_key, hashes.SHA256())

def der64(c):
    return base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode()

def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

if cmd == "pki":
    kind = sys.argv[3]
    root_key = new_key(kind)
    root = cert(kind + " root", root_key, kind + " root", root_key, True)
    chain_keys = [(root, root_key)]
    issuer, issuer_key, issuer_cn = root, root_key, kind + " root"
    certs = []
    if kind == "rsa":
        ik = new_key(kind)
        inter = cert("rsa intermediate", ik, issuer_cn, issuer_key, True)
        certs.append(inter)
        issuer_key, issuer_cn = ik, "rsa intermediate"
    leaf_key = new_key(kind)
    leaf = cert(kind + " signer", leaf_key, issuer_cn, issuer_key, False)
    with open(os.path.join(d, "ca.pem"), "wb") as f:
        f.write(root.public_bytes(serialization.Encoding.PEM))
    with open(os.path.join(d, "leaf.key"), "wb") as f:
        f.write(leaf_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    with open(os.path.join(d, "chain.json"), "w") as f:
        json.dump([der64(leaf)] + [der64(c) for c in certs] + [der64(root)], f)
else:
    alg, signed_ago, expires_in = sys.argv[3:6]
    with open(os.path.join(d, "leaf.key"), "rb") as f:
        key = serialization.load_pem_private_key(f.read(), None)
    with open(os.path.join(d, "chain.json")) as f:
        chain = json.load(f)
    east = datetime.timezone(datetime.timedelta(hours=2))
    at = lambda secs: (now + datetime.timedelta(seconds=secs)).astimezone(east).isoformat(timespec="seconds")
    header = {"alg": alg, "crit": ["io.cncf.notary.signingScheme"],
              "cty": "application/vnd.cncf.notary.payload.v1+json",
              "io.cncf.notary.signingScheme": "notary.x509",
              "io.cncf.notary.signingTime": at(-int(signed_ago))}
    if expires_in != "-":
        header["crit"].append("io.cncf.notary.expiry")
        header["io.cncf.notary.expiry"] = at(int(expires_in))
    protected = b64url(json.dumps(header).encode())
    payload = b64url(sys.stdin.buffer.read())
    data = (protected + "." + payload).encode()
    if alg == "ES256":
        r, s = utils.decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    else:
        sig = key.sign(data, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
                       hashes.SHA256())
    sys.stdout.write(json.dumps({"payload": payload, "protected": protected,
                                 "header": {"x5c": chain, "io.cncf.notary.signingAgent": "notation-go/1.3.0"},
                                 "signature": b64url(sig)}))
"#;

/// A root CA and a code-signing leaf (`ec`: P-256, root -> leaf; `rsa`:
/// RSA 2048, root -> intermediate -> leaf), made by Python's
/// `cryptography`.
pub struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    pub fn new(kind: &str) -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("python3")
            .args(["-c", PKI, "pki"])
            .arg(dir.path())
            .arg(kind)
            .output()
            .expect("python3 (scripts/install-test-deps.sh installs it with cryptography)");
        assert!(
            out.status.success(),
            "making the PKI failed (is python3-cryptography installed?): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Pki { dir }
    }

    /// The root certificate's PEM file.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The JWS envelope signing `payload` with `alg`, signed `signed_ago`
    /// seconds ago, expiring in `expires_in` seconds (`None`: never).
    fn sign(&self, payload: &[u8], alg: &str, signed_ago: i64, expires_in: Option<i64>) -> Vec<u8> {
        use std::io::Write as _;
        let expiry = expires_in.map_or("-".to_owned(), |e| e.to_string());
        let mut child = Command::new("python3")
            .args(["-c", PKI, "sign"])
            .arg(self.dir.path())
            .args([alg, &signed_ago.to_string(), &expiry])
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
        out.stdout
    }
}

/// notation's payload for the manifest `digest` of `size` bytes.
pub fn payload(digest: &str, size: usize) -> Vec<u8> {
    serde_json::to_vec(&json!({"targetArtifact": {
        "mediaType": OCI_MANIFEST, "digest": digest, "size": size,
    }}))
    .unwrap()
}

/// Pushes `envelope` (of `media_type`) as notation does: a referrer of
/// `subject` (digest, manifest bytes) with the notary artifact type.
pub async fn push_signature(
    c: &Client,
    base: &str,
    repo: &str,
    subject: (&str, usize),
    media_type: &str,
    envelope: &[u8],
) -> String {
    let empty = push_blob(c, base, repo, b"{}").await;
    let layer = push_blob(c, base, repo, envelope).await;
    let m = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.cncf.notary.signature",
        "config": {"mediaType": OCI_EMPTY, "digest": empty, "size": 2},
        "layers": [{"mediaType": media_type, "digest": layer, "size": envelope.len()}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject.0, "size": subject.1},
        "annotations": {
            "io.cncf.notary.x509chain.thumbprint#S256": "[]",
            "org.opencontainers.image.created": "2026-01-01T00:00:00Z",
        },
    }))
    .unwrap();
    let digest = sha256(&m);
    let r = put_manifest(c, base, repo, &digest, OCI_MANIFEST, &m).await;
    assert_eq!(r.status(), 201, "signature push: {:?}", r.text().await);
    digest
}

/// Signs the image `(digest, manifest)` with `pki` and pushes it.
pub async fn sign(
    c: &Client,
    b: &Berth,
    repo: &str,
    image: (&str, usize),
    pki: &Pki,
    alg: &str,
    expires_in: Option<i64>,
) -> String {
    let envelope = pki.sign(&payload(image.0, image.1), alg, 5, expires_in);
    push_signature(c, &b.url(), repo, image, "application/jose+json", &envelope).await
}

/// A server whose namespace `acme` trusts `pki`'s root (as `ca`) under
/// `enforce`.
fn enforcing(pki: &Pki) -> (Berth, tempfile::TempDir) {
    let b = Berth::start();
    let dir = tempfile::tempdir().unwrap();
    add_root(&b, dir.path(), pki, "ca");
    trust(&b, dir.path(), &["policy", "acme", "enforce"]);
    (b, dir)
}

fn add_root(b: &Berth, dir: &Path, pki: &Pki, name: &str) -> String {
    let root = pki.root().display().to_string();
    trust(
        b,
        dir,
        &[
            "add",
            "acme",
            "--notation-root",
            &root,
            "--name",
            name,
            "-o",
            "json",
        ],
    )
}

#[tokio::test]
async fn trust_notation_signatures_verify_and_pass_enforcement() {
    let ec = Pki::new("ec");
    let (b, dir) = enforcing(&ec);
    let c = client();
    let base = b.url();
    let rsa = Pki::new("rsa");
    let added: Value = serde_json::from_str(&add_root(&b, dir.path(), &rsa, "rsa-ca")).unwrap();
    assert_eq!(added["kind"], "notation-root");
    assert_eq!(added["algorithm"], "x509-rsa");
    let list = trust(&b, dir.path(), &["list", "acme"]);
    assert!(
        list.contains("x509-ecdsa-p256") && list.contains("rsa-ca"),
        "{list}"
    );

    // ES256, root -> leaf, no expiry.
    let (one, m1) = push_image(&c, &base, "acme/web", "one", "one").await;
    expect_error(pull(&c, &b, "acme/web", "one").await, 403, "DENIED").await;
    let sig = sign(&c, &b, "acme/web", (&one, m1.len()), &ec, "ES256", None).await;
    let v = verdict(&c, &b, "acme/web", "one").await;
    assert_eq!(v["state"], "verified", "{v}");
    assert_eq!(v["key"], "ca");
    assert_eq!(v["algorithm"], "ES256");
    assert_eq!(v["format"], "notation");
    assert_eq!(v["signature"], sig.as_str());
    // Valid until the first certificate of the chain ends (30 days).
    assert!(
        v["until"].as_i64().unwrap() > v["checked_at"].as_i64().unwrap() + 29 * 86_400_000,
        "{v}"
    );
    let r = pull(&c, &b, "acme/web", "one").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), m1.as_slice());
    assert_eq!(pull(&c, &b, "acme/web", &sig).await.status(), 200);
    let text = trust(&b, dir.path(), &["verify", "acme/web:one"]);
    assert!(
        text.contains("verified by notation root \"ca\" (ES256)"),
        "{text}"
    );

    // PS256, root -> intermediate -> leaf, expiring in an hour.
    let (two, m2) = push_image(&c, &base, "acme/web", "two", "two").await;
    sign(
        &c,
        &b,
        "acme/web",
        (&two, m2.len()),
        &rsa,
        "PS256",
        Some(3600),
    )
    .await;
    let v = verdict(&c, &b, "acme/web", "two").await;
    assert_eq!(v["state"], "verified", "{v}");
    assert_eq!(v["key"], "rsa-ca");
    assert_eq!(v["algorithm"], "PS256");
    let until = v["until"].as_i64().unwrap() - v["checked_at"].as_i64().unwrap();
    assert!((3_500_000..=3_600_000).contains(&until), "{v}");
    assert_eq!(pull(&c, &b, "acme/web", "two").await.status(), 200);

    // A root that is no certificate is refused at once.
    let key = dir.path().join("not-a-cert.pem");
    std::fs::write(&key, "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF\n-----END PRIVATE KEY-----\n").unwrap();
    let out = crate::tools::berth(
        dir.path(),
        &[
            "trust",
            "add",
            "acme",
            "--notation-root",
            key.to_str().unwrap(),
            "--registry",
            &b.addr,
        ],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not \"CERTIFICATE\""),
        "{out:?}"
    );

    // Without the root, the signature no longer counts.
    trust(&b, dir.path(), &["remove", "acme", "ca"]);
    let msg = expect_error(pull(&c, &b, "acme/web", "one").await, 403, "DENIED").await;
    assert!(
        msg.contains("bad_signature") && msg.contains("trusted root"),
        "{msg}"
    );
}

#[tokio::test]
async fn trust_notation_signature_by_an_untrusted_root_is_refused() {
    let trusted = Pki::new("ec");
    let (b, _dir) = enforcing(&trusted);
    let c = client();
    let stranger = Pki::new("ec");
    let (d, m) = push_image(&c, &b.url(), "acme/web", "v1", "stranger").await;
    sign(&c, &b, "acme/web", (&d, m.len()), &stranger, "ES256", None).await;
    let v = verdict(&c, &b, "acme/web", "v1").await;
    assert_eq!(v["reason"], "bad_signature", "{v}");
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("does not lead to a trusted root (ca)"),
        "{v}"
    );
    let msg = expect_error(pull(&c, &b, "acme/web", "v1").await, 403, "DENIED").await;
    assert!(
        msg.contains("signature policy of namespace acme (enforce)"),
        "{msg}"
    );
}

#[tokio::test]
async fn trust_expired_notation_signature_is_refused() {
    let pki = Pki::new("ec");
    let (b, _dir) = enforcing(&pki);
    let c = client();
    let (d, m) = push_image(&c, &b.url(), "acme/web", "v1", "expired").await;
    let envelope = pki.sign(&payload(&d, m.len()), "ES256", 7200, Some(-3600));
    push_signature(
        &c,
        &b.url(),
        "acme/web",
        (&d, m.len()),
        "application/jose+json",
        &envelope,
    )
    .await;
    let v = verdict(&c, &b, "acme/web", "v1").await;
    assert_eq!(v["reason"], "expired", "{v}");
    assert!(v["detail"].as_str().unwrap().contains("expired at"), "{v}");
    let msg = expect_error(pull(&c, &b, "acme/web", "v1").await, 403, "DENIED").await;
    assert!(msg.contains("expired"), "{msg}");
}

#[tokio::test]
async fn trust_notation_signature_of_another_manifest_is_refused() {
    let pki = Pki::new("rsa");
    let (b, _dir) = enforcing(&pki);
    let c = client();
    let base = b.url();
    let (signed, sm) = push_image(&c, &base, "acme/web", "signed", "signed").await;
    let (other, om) = push_image(&c, &base, "acme/web", "other", "other").await;
    // The envelope signing `signed`, pushed as a referrer of `other`.
    let envelope = pki.sign(&payload(&signed, sm.len()), "PS256", 5, None);
    push_signature(
        &c,
        &base,
        "acme/web",
        (&signed, sm.len()),
        "application/jose+json",
        &envelope,
    )
    .await;
    push_signature(
        &c,
        &base,
        "acme/web",
        (&other, om.len()),
        "application/jose+json",
        &envelope,
    )
    .await;
    let v = verdict(&c, &b, "acme/web", "other").await;
    assert_eq!(v["reason"], "digest_mismatch", "{v}");
    assert!(v["detail"].as_str().unwrap().contains(&signed), "{v}");
    expect_error(pull(&c, &b, "acme/web", "other").await, 403, "DENIED").await;
    assert_eq!(pull(&c, &b, "acme/web", "signed").await.status(), 200);
    // The right digest with another size is no signature of it either.
    let (third, tm) = push_image(&c, &base, "acme/web", "third", "third").await;
    let envelope = pki.sign(&payload(&third, tm.len() + 1), "PS256", 5, None);
    push_signature(
        &c,
        &base,
        "acme/web",
        (&third, tm.len()),
        "application/jose+json",
        &envelope,
    )
    .await;
    assert_eq!(
        verdict(&c, &b, "acme/web", "third").await["reason"],
        "digest_mismatch"
    );
}

#[tokio::test]
async fn trust_notation_cose_envelopes_are_reported_unsupported() {
    let pki = Pki::new("ec");
    let (b, _dir) = enforcing(&pki);
    let c = client();
    let (d, m) = push_image(&c, &b.url(), "acme/web", "v1", "cose").await;
    push_signature(
        &c,
        &b.url(),
        "acme/web",
        (&d, m.len()),
        "application/cose",
        b"\xd2\x84 a COSE_Sign1",
    )
    .await;
    let v = verdict(&c, &b, "acme/web", "v1").await;
    assert_eq!(v["reason"], "unsupported", "{v}");
    let msg = expect_error(pull(&c, &b, "acme/web", "v1").await, 403, "DENIED").await;
    assert!(msg.contains("COSE envelopes are not verified yet"), "{msg}");
}
