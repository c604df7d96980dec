//! Verification against signatures made with Python's `cryptography` as
//! cosign makes them (`src/testdata`: one key and one signature of
//! `payload.json` per kind; the payload names `Digest::sha256(b"foo")`).

use berth_oci::Digest;

use crate::cosign::Signed;
use crate::{Evidence, Format, PublicKey, Reason, Subject, Trust, TrustedKey, Verdict};

const PAYLOAD: &[u8] = include_bytes!("testdata/payload.json");

fn fixture(kind: &str) -> (TrustedKey, Signed) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/testdata");
    let pem = std::fs::read_to_string(format!("{dir}/{kind}.pub")).unwrap();
    let sig = std::fs::read_to_string(format!("{dir}/{kind}.sig")).unwrap();
    let key = TrustedKey {
        name: kind.to_owned(),
        key: PublicKey::from_pem(&pem).unwrap(),
    };
    (
        key,
        Signed {
            payload: PAYLOAD.to_vec(),
            signature: sig,
        },
    )
}

const KINDS: &[(&str, &str)] = &[
    ("p256", "ecdsa-p256"),
    ("p384", "ecdsa-p384"),
    ("p384-sha256", "ecdsa-p384"),
    ("rsa", "rsa"),
    ("rsa-pss", "rsa"),
    ("ed25519", "ed25519"),
];

fn subject() -> Digest {
    Digest::sha256(b"foo")
}

/// Verifies `signed` as the signatures of one `.sig` manifest of `digest`.
fn verify(digest: &Digest, signed: &[Signed], keys: &[TrustedKey]) -> Verdict {
    let subject = Subject {
        digest,
        media_type: "application/vnd.oci.image.manifest.v1+json",
        content: b"foo",
    };
    let evidence = [Evidence::Cosign {
        manifest: Digest::sha256(b"sig"),
        signatures: signed.to_vec(),
    }];
    let trust = Trust {
        keys: keys.to_vec(),
        ..Trust::default()
    };
    crate::verify(subject, &evidence, &trust, 0)
}

#[test]
fn nothing_trusted_or_nothing_signed() {
    let (key, _) = fixture("p256");
    let d = subject();
    let s = Subject {
        digest: &d,
        media_type: "",
        content: b"",
    };
    let v = crate::verify(s, &[], &Trust::default(), 0);
    assert!(
        matches!(
            v,
            Verdict::Unverified {
                reason: Reason::NoTrust,
                ..
            }
        ),
        "{v:?}"
    );
    let trust = Trust {
        keys: vec![key],
        ..Trust::default()
    };
    let v = crate::verify(s, &[], &trust, 0);
    assert!(
        matches!(
            v,
            Verdict::Unverified {
                reason: Reason::NoSignature,
                ..
            }
        ),
        "{v:?}"
    );
}

#[test]
fn every_kind_of_key_verifies_its_signature() {
    for (kind, algorithm) in KINDS {
        let (key, signed) = fixture(kind);
        assert_eq!(key.key.algorithm().as_str(), *algorithm, "{kind}");
        assert_eq!(key.key.fingerprint().len(), 64);
        let v = verify(&subject(), &[signed], &[key]);
        assert_eq!(
            v,
            Verdict::Verified {
                key: kind.to_string(),
                algorithm: algorithm.to_string(),
                format: Format::Cosign,
                signature: Digest::sha256(b"sig"),
                until: None,
            },
            "{kind}"
        );
    }
}

#[test]
fn another_key_does_not_verify() {
    for (i, (kind, _)) in KINDS.iter().enumerate() {
        let (_, signed) = fixture(kind);
        let (other, _) = fixture(KINDS[(i + 2) % KINDS.len()].0);
        let v = verify(&subject(), &[signed], &[other]);
        assert!(
            matches!(
                v,
                Verdict::Unverified {
                    reason: Reason::BadSignature,
                    ..
                }
            ),
            "{kind}: {v:?}"
        );
    }
}

#[test]
fn a_changed_payload_does_not_verify() {
    for (kind, _) in KINDS {
        let (key, mut signed) = fixture(kind);
        let text = String::from_utf8(signed.payload).unwrap();
        signed.payload = text.replace("acme/web", "acme/evil").into_bytes();
        let v = verify(&subject(), &[signed], &[key]);
        assert!(
            matches!(
                v,
                Verdict::Unverified {
                    reason: Reason::BadSignature,
                    ..
                }
            ),
            "{kind}: {v:?}"
        );
    }
}

#[test]
fn a_signature_of_another_manifest_is_a_digest_mismatch() {
    let (key, signed) = fixture("p256");
    let v = verify(&Digest::sha256(b"bar"), &[signed], &[key]);
    let Verdict::Unverified { reason, detail } = v else {
        panic!("verified")
    };
    assert_eq!(reason, Reason::DigestMismatch);
    assert!(detail.contains("signed sha256:2c26b46b"), "{detail}");
}

#[test]
fn one_good_signature_among_bad_ones_verifies() {
    let (key, good) = fixture("ed25519");
    let bad = Signed {
        payload: b"{}".to_vec(),
        signature: "not base64!".into(),
    };
    let (_, foreign) = fixture("rsa");
    let v = verify(&subject(), &[bad, foreign, good], &[key]);
    assert!(v.is_verified(), "{v:?}");
}

#[test]
fn keys_that_are_refused() {
    assert!(matches!(
        PublicKey::from_pem("hello"),
        Err(crate::KeyError::Pem(_))
    ));
    let private = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF\n-----END PRIVATE KEY-----\n";
    assert!(matches!(
        PublicKey::from_pem(private),
        Err(crate::KeyError::Tag(t)) if t == "PRIVATE KEY"
    ));
    // An X25519 key (OID 1.3.101.110) is no signing key.
    let x25519 = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VuAyEAhSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=\n-----END PUBLIC KEY-----\n";
    assert!(matches!(
        PublicKey::from_pem(x25519),
        Err(crate::KeyError::Unsupported(_))
    ));
}
