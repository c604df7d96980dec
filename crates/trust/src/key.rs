//! Public keys as cosign writes them (`cosign.pub`: a PEM `PUBLIC KEY`,
//! that is a DER SubjectPublicKeyInfo), and signature checks with `ring`.
//!
//! What cosign signs with each kind of key, and so what is accepted:
//!
//! | key | signature |
//! | --- | --- |
//! | ECDSA P-256 | ASN.1 DER over SHA-256 of the payload (SHA-384 accepted too) |
//! | ECDSA P-384 | ASN.1 DER over SHA-384, or SHA-256 (cosign's default digest for every key) |
//! | RSA 2048-8192 | PKCS#1 v1.5 (cosign's default) or PSS, over SHA-256, -384 or -512 |
//! | Ed25519 | pure Ed25519 over the payload itself |
//!
//! A PEM `RSA PUBLIC KEY` (PKCS#1) is accepted as well.

use ring::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use sha2::{Digest as _, Sha256};
use spki::der::asn1::UintRef;
use spki::der::{Decode, Reader, SliceReader};
use spki::{ObjectIdentifier, SubjectPublicKeyInfoRef};

const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// Why a key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not PEM at all.
    #[error(
        "not a PEM public key ({0}); give the cosign.pub file `cosign generate-key-pair` wrote"
    )]
    Pem(String),
    /// A PEM block of another kind (a private key, a certificate).
    #[error("the PEM block is {0:?}, not \"PUBLIC KEY\"; give the public key (cosign.pub), never the private one")]
    Tag(String),
    /// DER that does not parse.
    #[error("the public key does not parse: {0}")]
    Der(String),
    /// A key kind cosign does not sign with.
    #[error(
        "unsupported key: {0} (supported: ECDSA P-256 and P-384, RSA 2048 to 8192 bits, Ed25519)"
    )]
    Unsupported(String),
}

/// The kind of a key, as named in listings (`ecdsa-p256`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// ECDSA on NIST P-256.
    EcdsaP256,
    /// ECDSA on NIST P-384.
    EcdsaP384,
    /// RSA (PKCS#1 v1.5 or PSS).
    Rsa,
    /// Ed25519.
    Ed25519,
}

impl Algorithm {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::EcdsaP256 => "ecdsa-p256",
            Algorithm::EcdsaP384 => "ecdsa-p384",
            Algorithm::Rsa => "rsa",
            Algorithm::Ed25519 => "ed25519",
        }
    }

    /// The signature schemes tried for a key of this kind.
    fn schemes(self) -> &'static [&'static dyn VerificationAlgorithm] {
        match self {
            Algorithm::EcdsaP256 => &P256_SCHEMES,
            Algorithm::EcdsaP384 => &P384_SCHEMES,
            Algorithm::Rsa => &RSA_SCHEMES,
            Algorithm::Ed25519 => &ED25519_SCHEMES,
        }
    }
}

static P256_SCHEMES: [&dyn VerificationAlgorithm; 2] = [
    &signature::ECDSA_P256_SHA256_ASN1,
    &signature::ECDSA_P256_SHA384_ASN1,
];
static P384_SCHEMES: [&dyn VerificationAlgorithm; 2] = [
    &signature::ECDSA_P384_SHA384_ASN1,
    &signature::ECDSA_P384_SHA256_ASN1,
];
static RSA_SCHEMES: [&dyn VerificationAlgorithm; 6] = [
    &signature::RSA_PKCS1_2048_8192_SHA256,
    &signature::RSA_PSS_2048_8192_SHA256,
    &signature::RSA_PKCS1_2048_8192_SHA384,
    &signature::RSA_PSS_2048_8192_SHA384,
    &signature::RSA_PKCS1_2048_8192_SHA512,
    &signature::RSA_PSS_2048_8192_SHA512,
];
static ED25519_SCHEMES: [&dyn VerificationAlgorithm; 1] = [&signature::ED25519];

/// A public key that verifies signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    algorithm: Algorithm,
    /// What `ring` takes: the uncompressed point (ECDSA), the PKCS#1
    /// `RSAPublicKey` (RSA), the 32 bytes (Ed25519).
    raw: Vec<u8>,
    /// SHA-256 of the DER SubjectPublicKeyInfo (of the PKCS#1 key for an
    /// `RSA PUBLIC KEY`), hex.
    fingerprint: String,
}

impl PublicKey {
    /// Parses a PEM public key (`PUBLIC KEY` or `RSA PUBLIC KEY`).
    pub fn from_pem(text: &str) -> Result<PublicKey, KeyError> {
        let block = pem::parse(text.trim()).map_err(|e| KeyError::Pem(e.to_string()))?;
        let der = block.contents();
        let fingerprint = hex::encode(Sha256::digest(der));
        match block.tag() {
            "PUBLIC KEY" => Self::from_spki(der, fingerprint),
            "RSA PUBLIC KEY" => Ok(PublicKey {
                algorithm: Algorithm::Rsa,
                raw: rsa_checked(der)?,
                fingerprint,
            }),
            other => Err(KeyError::Tag(other.to_owned())),
        }
    }

    /// Parses a DER SubjectPublicKeyInfo (a certificate's key).
    pub fn from_spki_der(der: &[u8]) -> Result<PublicKey, KeyError> {
        Self::from_spki(der, hex::encode(Sha256::digest(der)))
    }

    fn from_spki(der: &[u8], fingerprint: String) -> Result<PublicKey, KeyError> {
        let info =
            SubjectPublicKeyInfoRef::from_der(der).map_err(|e| KeyError::Der(e.to_string()))?;
        let bits = info
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| KeyError::Der("the key's bit string has unused bits".into()))?;
        let oid = info.algorithm.oid;
        let (algorithm, raw) = if oid == EC_PUBLIC_KEY {
            let curve = info
                .algorithm
                .parameters_oid()
                .map_err(|e| KeyError::Der(format!("EC key without a named curve: {e}")))?;
            let (algorithm, len) = if curve == P256 {
                (Algorithm::EcdsaP256, 65)
            } else if curve == P384 {
                (Algorithm::EcdsaP384, 97)
            } else {
                return Err(KeyError::Unsupported(format!("EC curve {curve}")));
            };
            if bits.len() != len || bits[0] != 4 {
                return Err(KeyError::Der(format!(
                    "{} point is not an uncompressed point of {len} bytes",
                    algorithm.as_str()
                )));
            }
            (algorithm, bits.to_vec())
        } else if oid == RSA {
            (Algorithm::Rsa, rsa_checked(bits)?)
        } else if oid == ED25519 {
            if bits.len() != 32 {
                return Err(KeyError::Der("an Ed25519 key is 32 bytes".into()));
            }
            (Algorithm::Ed25519, bits.to_vec())
        } else {
            return Err(KeyError::Unsupported(format!("algorithm {oid}")));
        };
        Ok(PublicKey {
            algorithm,
            raw,
            fingerprint,
        })
    }

    /// The kind of key.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// SHA-256 of the key's DER, hex.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Whether `signature` is this key's signature of `message`, in any
    /// scheme cosign signs with for this kind of key.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        self.algorithm.schemes().iter().any(|alg| {
            UnparsedPublicKey::new(*alg, &self.raw)
                .verify(message, signature)
                .is_ok()
        })
    }
}

impl PublicKey {
    /// Whether `signature` is this key's JWS signature (`alg` ES256, ES384,
    /// PS256, PS384 or PS512: ECDSA signatures are `r || s`, not DER) of
    /// `message`; an error when `alg` does not fit the key.
    pub fn verifies_jws(
        &self,
        alg: &str,
        message: &[u8],
        signature: &[u8],
    ) -> Result<bool, String> {
        let scheme: &dyn VerificationAlgorithm = match (alg, self.algorithm) {
            ("ES256", Algorithm::EcdsaP256) => &signature::ECDSA_P256_SHA256_FIXED,
            ("ES384", Algorithm::EcdsaP384) => &signature::ECDSA_P384_SHA384_FIXED,
            ("PS256", Algorithm::Rsa) => &signature::RSA_PSS_2048_8192_SHA256,
            ("PS384", Algorithm::Rsa) => &signature::RSA_PSS_2048_8192_SHA384,
            ("PS512", Algorithm::Rsa) => &signature::RSA_PSS_2048_8192_SHA512,
            _ => {
                return Err(format!(
                    "alg {alg} does not fit the signing certificate's {} key",
                    self.algorithm.as_str()
                ))
            }
        };
        Ok(UnparsedPublicKey::new(scheme, &self.raw)
            .verify(message, signature)
            .is_ok())
    }
}

/// Checks a PKCS#1 `RSAPublicKey` (modulus of 2048 to 8192 bits) and
/// returns it.
fn rsa_checked(der: &[u8]) -> Result<Vec<u8>, KeyError> {
    let bad = |e: spki::der::Error| KeyError::Der(format!("RSA key: {e}"));
    let mut reader = SliceReader::new(der).map_err(bad)?;
    let modulus_bytes = reader
        .sequence(|seq| {
            let n = UintRef::decode(seq)?;
            let _e = UintRef::decode(seq)?;
            Ok(n.as_bytes().len())
        })
        .map_err(bad)?;
    let bits = modulus_bytes * 8;
    if !(2041..=8192).contains(&bits) {
        return Err(KeyError::Unsupported(format!(
            "RSA key of about {bits} bits"
        )));
    }
    Ok(der.to_vec())
}

/// A key a namespace trusts, under its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKey {
    /// The name it was added under (`release`).
    pub name: String,
    /// The key.
    pub key: PublicKey,
}
