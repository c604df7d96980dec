//! Keyless sigstore bundles, verified offline: a Fulcio-like CA made by
//! the test (root, intermediate, short-lived leaf certificates with the
//! SAN and OIDC-issuer extensions Fulcio writes, made with Python's
//! `cryptography`), a Rekor key made by the test, and bundles made by
//! npm `@sigstore/sign`: its bundle builders with a custom signer holding
//! the leaf certificate, and its real `RekorWitness` talking to a
//! transparency log the node script serves on loopback (it answers as
//! Rekor does: the canonicalized entry, the integrated time, and the
//! signed entry timestamp by the test's Rekor key).
//!
//! The namespace trusts the root, one identity (exact, or a regular
//! expression) and issuer, and the Rekor key (`berth trust add acme
//! --fulcio-root ... --certificate-identity ... --certificate-oidc-issuer
//! ... --rekor-key ...`). Verified: a message signature over a
//! simple-signing payload (a `hashedrekord` entry, the v0.2 certificate
//! chain form) and a DSSE statement (a `dsse` entry, the v0.3 certificate
//! form). Refused, each in its own assertion: the wrong identity, the
//! wrong issuer, a certificate expired at the signing time, an untrusted
//! root, a forged signed entry timestamp.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::common::Berth;
use crate::oci::{client, expect_error, push_image};
use crate::trust::{payload, trust};
use crate::trust_bundles::{pull, statement, verdict};
use crate::trust_sigstore_js::{npm_root, push_referrer};

const CA_PY: &str = r#"import datetime, sys
from cryptography import x509
from cryptography.x509.oid import NameOID, ExtendedKeyUsageOID, ObjectIdentifier
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

def key():
    return ec.generate_private_key(ec.SECP256R1())

def save_key(k, path):
    with open(path, "wb") as f:
        f.write(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()))

def load_key(path):
    with open(path, "rb") as f:
        return serialization.load_pem_private_key(f.read(), None)

def load_cert(path):
    with open(path, "rb") as f:
        return x509.load_pem_x509_certificate(f.read())

def save_cert(c, path):
    with open(path, "wb") as f:
        f.write(c.public_bytes(serialization.Encoding.PEM))

def utf8(s):
    b = s.encode()
    assert len(b) < 128
    return bytes([0x0c, len(b)]) + b

cmd, d = sys.argv[1:3]
day = datetime.timedelta(days=1)
now = datetime.datetime.now(datetime.timezone.utc)
if cmd == "ca":
    rk = key()
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sigstore.test"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "sigstore")])
    root = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(rk.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - 365 * day).not_valid_after(now + 3650 * day)
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(rk, hashes.SHA384()))
    ik = key()
    iname = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sigstore.test"),
                       x509.NameAttribute(NameOID.COMMON_NAME, "sigstore-intermediate")])
    inter = (x509.CertificateBuilder().subject_name(iname).issuer_name(name)
             .public_key(ik.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - 365 * day).not_valid_after(now + 3650 * day)
             .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
             .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
             .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
             .sign(rk, hashes.SHA384()))
    save_key(ik, f"{d}/intermediate.key")
    save_cert(inter, f"{d}/intermediate.pem")
    with open(f"{d}/fulcio.pem", "wb") as f:
        f.write(root.public_bytes(serialization.Encoding.PEM) + inter.public_bytes(serialization.Encoding.PEM))
elif cmd == "leaf":
    # leaf DIR NAME IDENTITY ISSUER NOT_BEFORE NOT_AFTER (Unix seconds)
    name, identity, issuer, nb, na = sys.argv[3:8]
    ik = load_key(f"{d}/intermediate.key")
    inter = load_cert(f"{d}/intermediate.pem")
    lk = key()
    san = (x509.UniformResourceIdentifier(identity) if "://" in identity
           else x509.RFC822Name(identity))
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(inter.subject)
            .public_key(lk.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(datetime.datetime.fromtimestamp(int(nb), datetime.timezone.utc))
            .not_valid_after(datetime.datetime.fromtimestamp(int(na), datetime.timezone.utc))
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
            .add_extension(x509.SubjectAlternativeName([san]), critical=True)
            .add_extension(x509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.4.1.57264.1.1"), issuer.encode()), critical=False)
            .add_extension(x509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.4.1.57264.1.8"), utf8(issuer)), critical=False)
            .sign(ik, hashes.SHA256()))
    save_key(lk, f"{d}/{name}.key")
    save_cert(leaf, f"{d}/{name}.pem")
elif cmd == "rekor":
    k = key()
    save_key(k, f"{d}/rekor.key")
    with open(f"{d}/rekor.pub", "wb") as f:
        f.write(k.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo))
"#;

const KEYLESS_JS: &str = r#"const crypto = require('crypto');
const fs = require('fs');
const http = require('http');
const path = require('path');
const { MessageSignatureBundleBuilder, DSSEBundleBuilder, RekorWitness } = require('@sigstore/sign');
const { bundleToJSON } = require(require.resolve('@sigstore/bundle', {
  paths: [path.dirname(require.resolve('@sigstore/sign'))],
}));

// keyless message|dsse CERT KEY REKOR_KEY LOG_PUB TIME ARTIFACT
const [how, certPath, keyPath, rekorKeyPath, logPubPath, time, artifact] = process.argv.slice(2);
const certificate = fs.readFileSync(certPath, 'utf8');
const key = crypto.createPrivateKey(fs.readFileSync(keyPath));
const rekorKey = crypto.createPrivateKey(fs.readFileSync(rekorKeyPath));
const logPub = crypto.createPublicKey(fs.readFileSync(logPubPath));
const logID = crypto.createHash('sha256').update(logPub.export({ type: 'spki', format: 'der' })).digest('hex');

// RFC 8785 for what Rekor signs: sorted keys, no spaces.
function canonical(v) {
  if (Array.isArray(v)) return '[' + v.map(canonical).join(',') + ']';
  if (v && typeof v === 'object')
    return '{' + Object.keys(v).sort().map((k) => JSON.stringify(k) + ':' + canonical(v[k])).join(',') + '}';
  return JSON.stringify(v);
}
const sha256 = (b) => crypto.createHash('sha256').update(b).digest('hex');

// A transparency log on loopback, as Rekor answers POST /api/v1/log/entries.
const rekor = http.createServer((req, res) => {
  let text = '';
  req.on('data', (c) => (text += c));
  req.on('end', () => {
    const proposed = JSON.parse(text);
    let body = proposed;
    if (proposed.kind === 'dsse') {
      const { envelope, verifiers } = proposed.spec.proposedContent;
      const env = JSON.parse(envelope);
      body = { apiVersion: '0.0.1', kind: 'dsse', spec: {
        envelopeHash: { algorithm: 'sha256', value: sha256(envelope) },
        payloadHash: { algorithm: 'sha256', value: sha256(Buffer.from(env.payload, 'base64')) },
        signatures: env.signatures.map((s) => ({ signature: s.sig, verifier: verifiers[0] })),
      } };
    }
    const entry = { body: Buffer.from(canonical(body)).toString('base64'),
                    integratedTime: Number(time), logID, logIndex: 7 };
    const set = crypto.sign('sha256', Buffer.from(canonical(entry)), rekorKey).toString('base64');
    res.writeHead(201, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ ['24296fb24b8ad77a' + sha256(text)]: { ...entry, verification: { signedEntryTimestamp: set } } }));
  });
});
rekor.listen(0, '127.0.0.1', () => {
  const witness = new RekorWitness({ rekorBaseURL: `http://127.0.0.1:${rekor.address().port}`, entryType: 'dsse', retry: 0 });
  const signer = { async sign(data) {
    return { signature: crypto.sign('sha256', data, key), key: { $case: 'x509Certificate', certificate } };
  } };
  const data = fs.readFileSync(artifact);
  const made = how === 'dsse'
    ? new DSSEBundleBuilder({ signer, witnesses: [witness] }).create({ data, type: 'application/vnd.in-toto+json' })
    : new MessageSignatureBundleBuilder({ signer, witnesses: [witness] }).create({ data });
  made.then((b) => process.stdout.write(JSON.stringify(bundleToJSON(b))))
    .catch((e) => { console.error(e); process.exitCode = 1; })
    .finally(() => rekor.close());
});
"#;

/// The identity and issuer the namespace allows.
const WORKFLOW: &str = "https://github.com/acme/web/.github/workflows/release.yml@refs/heads/main";
const GITHUB: &str = "https://token.actions.githubusercontent.com";

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A CA as Fulcio's (root and intermediate) and a Rekor key, in a
/// directory of their own.
struct Ca {
    dir: tempfile::TempDir,
}

impl Ca {
    fn new() -> Ca {
        let dir = tempfile::tempdir().unwrap();
        for cmd in ["ca", "rekor"] {
            run(Command::new("python3")
                .args(["-c", CA_PY, cmd])
                .arg(dir.path()));
        }
        Ca { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A leaf certificate for `identity` from `issuer`, valid from
    /// `from` to `to` (Unix seconds), and its key.
    fn leaf(
        &self,
        name: &str,
        identity: &str,
        issuer: &str,
        from: i64,
        to: i64,
    ) -> (PathBuf, PathBuf) {
        run(Command::new("python3")
            .args(["-c", CA_PY, "leaf"])
            .arg(self.dir.path())
            .args([name, identity, issuer, &from.to_string(), &to.to_string()]));
        (
            self.path(&format!("{name}.pem")),
            self.path(&format!("{name}.key")),
        )
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A keyless bundle of `artifact` (`message` or `dsse`) by the leaf
/// `cert`/`key`, logged at `time` by a log whose entry timestamp is signed
/// with `rekor_key` under the log id of `log_pub`.
fn bundle(
    how: &str,
    (cert, key): &(PathBuf, PathBuf),
    rekor_key: &Path,
    log_pub: &Path,
    time: i64,
    artifact: &[u8],
) -> Vec<u8> {
    let work = tempfile::tempdir().unwrap();
    let script = work.path().join("keyless.js");
    std::fs::write(&script, KEYLESS_JS).unwrap();
    let file = work.path().join("artifact");
    std::fs::write(&file, artifact).unwrap();
    run(Command::new("node")
        .arg(&script)
        .arg(how)
        .args([cert, key])
        .args([rekor_key, log_pub])
        .arg(time.to_string())
        .arg(&file)
        .env("NODE_PATH", npm_root())
        .env("NO_PROXY", "127.0.0.1")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy"))
}

#[tokio::test]
async fn trust_keyless_bundles_verify_by_identity_and_refusals() {
    let ca = Ca::new();
    let b = Berth::start();
    let dir = tempfile::tempdir().unwrap();
    let fulcio = ca.path("fulcio.pem").display().to_string();
    let rekor = ca.path("rekor.pub").display().to_string();
    trust(
        &b,
        dir.path(),
        &[
            "add",
            "acme",
            "--name",
            "github",
            "--fulcio-root",
            &fulcio,
            "--certificate-identity",
            WORKFLOW,
            "--certificate-oidc-issuer",
            GITHUB,
            "--rekor-key",
            &rekor,
        ],
    );
    trust(
        &b,
        dir.path(),
        &[
            "add",
            "tools",
            "--name",
            "acme-workflows",
            "--fulcio-root",
            &fulcio,
            "--certificate-identity-regexp",
            r"https://github\.com/acme/[a-z]+/\.github/workflows/.*",
            "--certificate-oidc-issuer",
            GITHUB,
            "--rekor-key",
            &rekor,
        ],
    );
    for ns in ["acme", "tools"] {
        trust(&b, dir.path(), &["policy", ns, "enforce"]);
    }
    let listed = trust(&b, dir.path(), &["list", "acme"]);
    assert!(
        listed.contains("github") && listed.contains("keyless"),
        "{listed}"
    );
    let c = client();
    let base = b.url();
    let t = now();
    let leaf = ca.leaf("ci", WORKFLOW, GITHUB, t - 60, t + 540);
    let (rekor_key, rekor_pub) = (ca.path("rekor.key"), ca.path("rekor.pub"));
    let keyless = |how: &str, leaf: &(PathBuf, PathBuf), artifact: &[u8]| {
        bundle(how, leaf, &rekor_key, &rekor_pub, t, artifact)
    };

    // A message signature over a simple-signing payload.
    let (one, m1) = push_image(&c, &base, "acme/web", "one", "one").await;
    expect_error(pull(&c, &b, "acme/web", "one").await, 403, "DENIED").await;
    let p = payload(&format!("{}/acme/web", b.addr), &one);
    let made = keyless("message", &leaf, &p);
    let parsed: Value = serde_json::from_slice(&made).unwrap();
    assert!(
        parsed["verificationMaterial"]["x509CertificateChain"].is_object(),
        "{parsed}"
    );
    assert_eq!(
        parsed["verificationMaterial"]["tlogEntries"][0]["kindVersion"]["kind"],
        "hashedrekord"
    );
    let sig = push_referrer(&c, &base, "acme/web", (&one, m1.len()), &made, Some(&p)).await;
    let v = verdict(&c, &b, "acme/web", "one").await;
    assert_eq!(v["state"], "verified", "{v}");
    assert_eq!(v["key"], "github");
    assert_eq!(v["format"], "sigstore-bundle");
    assert_eq!(v["signature"], sig.as_str());
    assert_eq!(pull(&c, &b, "acme/web", "one").await.status(), 200);

    // A DSSE statement.
    let (two, m2) = push_image(&c, &base, "acme/web", "two", "two").await;
    let made = keyless("dsse", &leaf, &statement("acme/web", &two));
    let parsed: Value = serde_json::from_slice(&made).unwrap();
    assert!(
        parsed["verificationMaterial"]["certificate"].is_object(),
        "{parsed}"
    );
    assert_eq!(
        parsed["verificationMaterial"]["tlogEntries"][0]["kindVersion"]["kind"],
        "dsse"
    );
    push_referrer(&c, &base, "acme/web", (&two, m2.len()), &made, None).await;
    assert_eq!(
        verdict(&c, &b, "acme/web", "two").await["state"],
        "verified"
    );
    assert_eq!(pull(&c, &b, "acme/web", "two").await.status(), 200);

    // An identity matching the regular expression of namespace tools.
    let tools = ca.leaf(
        "tools",
        "https://github.com/acme/tools/.github/workflows/ci.yml@refs/tags/v1",
        GITHUB,
        t - 60,
        t + 540,
    );
    let (d, m) = push_image(&c, &base, "tools/cli", "v1", "tools").await;
    push_referrer(
        &c,
        &base,
        "tools/cli",
        (&d, m.len()),
        &keyless("dsse", &tools, &statement("tools/cli", &d)),
        None,
    )
    .await;
    let v = verdict(&c, &b, "tools/cli", "v1").await;
    assert_eq!(v["state"], "verified", "{v}");
    assert_eq!(v["key"], "acme-workflows");

    let refused = |v: &Value, words: &str| {
        assert_eq!(v["state"], "unverified", "{v}");
        assert_eq!(v["reason"], "bad_signature", "{v}");
        assert!(
            v["detail"].as_str().unwrap().contains(words),
            "{words}: {v}"
        );
    };
    let dsse_for = |tag: &'static str, leaf: (PathBuf, PathBuf), rekor_key: PathBuf| {
        let (c, base) = (c.clone(), base.clone());
        let rekor_pub = rekor_pub.clone();
        async move {
            let (d, m) = push_image(&c, &base, "acme/web", tag, tag).await;
            let made = bundle(
                "dsse",
                &leaf,
                &rekor_key,
                &rekor_pub,
                t,
                &statement("acme/web", &d),
            );
            push_referrer(&c, &base, "acme/web", (&d, m.len()), &made, None).await;
        }
    };

    // The wrong identity: another repository's workflow.
    let other = ca.leaf(
        "other",
        "https://github.com/evil/web/.github/workflows/release.yml@refs/heads/main",
        GITHUB,
        t - 60,
        t + 540,
    );
    dsse_for("identity", other, rekor_key.clone()).await;
    refused(
        &verdict(&c, &b, "acme/web", "identity").await,
        "is not the identity",
    );
    // The regular expression matches whole identities only.
    let longer = ca.leaf(
        "longer",
        "https://evil.example/?https://github.com/acme/x/.github/workflows/a",
        GITHUB,
        t - 60,
        t + 540,
    );
    let (d, m) = push_image(&c, &base, "tools/cli", "longer", "longer").await;
    push_referrer(
        &c,
        &base,
        "tools/cli",
        (&d, m.len()),
        &keyless("dsse", &longer, &statement("tools/cli", &d)),
        None,
    )
    .await;
    refused(
        &verdict(&c, &b, "tools/cli", "longer").await,
        "is not the identity matching",
    );

    // The wrong issuer.
    let gitlab = ca.leaf("gitlab", WORKFLOW, "https://gitlab.com", t - 60, t + 540);
    dsse_for("issuer", gitlab, rekor_key.clone()).await;
    refused(
        &verdict(&c, &b, "acme/web", "issuer").await,
        "OIDC issuer \"https://gitlab.com\"",
    );

    // A certificate expired at the signing time.
    let expired = ca.leaf("expired", WORKFLOW, GITHUB, t - 1200, t - 600);
    dsse_for("expired", expired, rekor_key.clone()).await;
    refused(
        &verdict(&c, &b, "acme/web", "expired").await,
        "was not valid at the signing time",
    );

    // An untrusted root: the same identity from another CA.
    let other_ca = Ca::new();
    let stranger = other_ca.leaf("stranger", WORKFLOW, GITHUB, t - 60, t + 540);
    dsse_for("untrusted", stranger, rekor_key.clone()).await;
    refused(
        &verdict(&c, &b, "acme/web", "untrusted").await,
        "does not chain to the Fulcio root",
    );

    // A forged signed entry timestamp: signed by another key under the
    // trusted log's id.
    dsse_for("forged", leaf.clone(), other_ca.path("rekor.key")).await;
    refused(
        &verdict(&c, &b, "acme/web", "forged").await,
        "signed entry timestamp",
    );
    let msg = expect_error(pull(&c, &b, "acme/web", "forged").await, 403, "DENIED").await;
    assert!(msg.contains("bad_signature"), "{msg}");
}
