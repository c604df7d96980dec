//! The registry's bearer tokens: compact JWTs signed with HS256.
//!
//! The claims follow the Docker registry token specification: `iss`,
//! `sub` (the account, empty for anonymous), `aud` (the service name),
//! `exp`/`nbf`/`iat` (seconds), `jti`, and `access`, a list of
//! `{"type":"repository","name":...,"actions":[...]}`. berth adds `tid`,
//! the public id of the access token the client logged in with, so that
//! the token's limits can be applied where the claims alone do not say
//! enough (the catalog), and `sct`, the creation time of the account
//! `sub`, so that a token dies with its account even if the name is
//! reused.
//!
//! The key is 32 random bytes persisted in the database on first start
//! (`server_keys`), so every replica sharing the database signs and
//! verifies with the same key. Verification accepts only `HS256`, checks
//! the signature in constant time, the audience and the validity window.
//!
//! Encoding, decoding and validation are the `jsonwebtoken` crate's. It
//! needs a crypto backend; rather than its RustCrypto or aws-lc backends
//! (RSA, elliptic curves, a C library: far more than berth uses), berth
//! gives it a provider of the one algorithm it signs with, HMAC-SHA256 from
//! the `hmac` and `sha2` crates already in the tree, plus verifiers of the
//! public-key algorithms OpenID Connect issuers sign with (RS256, PS256,
//! ES256, ...; see `oidc`) on `ring`, which rustls already brings. The
//! validity window is checked here against the caller's clock, so tests
//! can move time.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use jsonwebtoken::crypto::{CryptoProvider, JwkUtils, JwtSigner, JwtVerifier};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{
    Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind, EncodingKey, Header, Validation,
};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: i64 = 30;

/// One entry of the `access` claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceAccess {
    /// `repository` or `registry`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Repository name (or `catalog`).
    pub name: String,
    /// Granted actions (`pull`, `push`, `delete`, `admin`, or `*`).
    pub actions: Vec<String>,
}

/// The claims of a registry token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Account name; empty for anonymous.
    pub sub: String,
    /// The service (registry) the token is for.
    pub aud: String,
    /// Expiry (Unix seconds).
    pub exp: i64,
    /// Not before (Unix seconds).
    pub nbf: i64,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// Unique id.
    pub jti: String,
    /// Granted access.
    #[serde(default)]
    pub access: Vec<ResourceAccess>,
    /// Public id of the access token the client authenticated with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tid: Option<String>,
    /// Creation time (Unix ms) of the account `sub` when the token was
    /// issued: an account deleted and created again under the same name
    /// is someone else, and must not inherit its predecessor's tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sct: Option<i64>,
    /// A workload that exchanged an OpenID Connect token (keyless push):
    /// the token speaks for no account (`sub` is empty), only for this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wkl: Option<WorkloadClaim>,
}

/// The `wkl` claim: a workload and its grants (see `oidc`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadClaim {
    /// The OpenID Connect issuer.
    pub iss: String,
    /// The subject of the exchanged token.
    pub sub: String,
    /// The trust policies that matched.
    pub pol: Vec<String>,
    /// Repository scopes and their actions (`kind` is `scope`).
    pub grants: Vec<ResourceAccess>,
    /// A session token (the `refresh_token` of a keyless login): it
    /// carries the workload's whole grants, not an `access` list.
    #[serde(default)]
    pub ses: bool,
}

/// Why a token was refused (or could not be made).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Not three base64url parts of JSON.
    #[error("malformed token")]
    Malformed,
    /// An algorithm other than HS256 (`none` included).
    #[error("unsupported token algorithm")]
    Algorithm,
    /// The signature does not match.
    #[error("invalid token signature")]
    Signature,
    /// Issued for another service.
    #[error("token issued for another service")]
    Audience,
    /// Expired, or not valid yet.
    #[error("token expired")]
    Expired,
    /// Signing failed (the claims did not serialise).
    #[error("cannot sign the token: {0}")]
    Sign(String),
}

/// A signing key: 32 bytes.
pub type Key = [u8; 32];

/// HMAC-SHA256 for `jsonwebtoken`, signing and verifying alike.
struct Hs256(Hmac<Sha256>);

impl Hs256 {
    fn new(secret: &[u8]) -> jsonwebtoken::errors::Result<Hs256> {
        // HMAC pads keys shorter than the hash's 64-byte block with zeros.
        <Hmac<Sha256> as Mac>::new_from_slice(secret)
            .map(Hs256)
            .map_err(|_| ErrorKind::InvalidKeyFormat.into())
    }
}

impl signature::Signer<Vec<u8>> for Hs256 {
    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        let mut m = self.0.clone();
        m.update(msg);
        Ok(m.finalize().into_bytes().to_vec())
    }
}

impl signature::Verifier<Vec<u8>> for Hs256 {
    fn verify(&self, msg: &[u8], sig: &Vec<u8>) -> Result<(), signature::Error> {
        let mut m = self.0.clone();
        m.update(msg);
        // Constant-time comparison.
        m.verify_slice(sig).map_err(|_| signature::Error::new())
    }
}

impl JwtSigner for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

impl JwtVerifier for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

/// A public-key verifier backed by `ring` (already in the tree through
/// rustls): the algorithms OpenID Connect issuers sign ID tokens with.
/// berth never signs with them.
struct PublicKey {
    alg: Algorithm,
    key: DecodingKey,
}

impl PublicKey {
    fn new(alg: Algorithm, key: &DecodingKey) -> jsonwebtoken::errors::Result<PublicKey> {
        let family_ok = match alg {
            Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 | Algorithm::PS256 => {
                key.family() == AlgorithmFamily::Rsa
            }
            Algorithm::ES256 | Algorithm::ES384 => key.family() == AlgorithmFamily::Ec,
            _ => false,
        };
        if !family_ok {
            return Err(ErrorKind::InvalidKeyFormat.into());
        }
        Ok(PublicKey {
            alg,
            key: key.clone(),
        })
    }
}

impl signature::Verifier<Vec<u8>> for PublicKey {
    fn verify(&self, msg: &[u8], sig: &Vec<u8>) -> Result<(), signature::Error> {
        use ring::signature as rs;
        let bad = |_| signature::Error::new();
        match (self.alg, self.key.kind()) {
            (Algorithm::ES256 | Algorithm::ES384, DecodingKeyKind::SecretOrDer(point)) => {
                let alg = if self.alg == Algorithm::ES256 {
                    &rs::ECDSA_P256_SHA256_FIXED
                } else {
                    &rs::ECDSA_P384_SHA384_FIXED
                };
                rs::UnparsedPublicKey::new(alg, point)
                    .verify(msg, sig)
                    .map_err(bad)
            }
            (alg, DecodingKeyKind::RsaModulusExponent { n, e }) => {
                let params = match alg {
                    Algorithm::RS256 => &rs::RSA_PKCS1_2048_8192_SHA256,
                    Algorithm::RS384 => &rs::RSA_PKCS1_2048_8192_SHA384,
                    Algorithm::RS512 => &rs::RSA_PKCS1_2048_8192_SHA512,
                    Algorithm::PS256 => &rs::RSA_PSS_2048_8192_SHA256,
                    _ => return Err(signature::Error::new()),
                };
                rs::RsaPublicKeyComponents { n, e }
                    .verify(params, msg, sig)
                    .map_err(bad)
            }
            _ => Err(signature::Error::new()),
        }
    }
}

impl JwtVerifier for PublicKey {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

/// The provider: signs HS256 only (berth's own tokens); verifies HS256
/// and, for OpenID Connect ID tokens, RS256/384/512, PS256, ES256 and
/// ES384. Which algorithm a token may use is still decided per call by
/// its `Validation` (berth's own tokens: HS256 only).
static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: |alg, key| match alg {
        Algorithm::HS256 => Ok(Box::new(Hs256::new(key.try_get_hmac_secret()?)?)),
        _ => Err(ErrorKind::InvalidAlgorithm.into()),
    },
    verifier_factory: |alg, key| match alg {
        Algorithm::HS256 => Ok(Box::new(Hs256::new(key.try_get_hmac_secret()?)?)),
        alg => Ok(Box::new(PublicKey::new(*alg, key)?)),
    },
    jwk_utils: JwkUtils::new_unimplemented(),
};

/// Installs [`PROVIDER`] as `jsonwebtoken`'s (once per process; a provider
/// installed before is kept, and refuses what it does not know).
pub(crate) fn provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = PROVIDER.install_default();
    });
}

/// The key id advertised in the header: the first 8 hex digits of the
/// key's SHA-256 (it identifies, never reveals, the key).
pub fn key_id(key: &Key) -> String {
    use sha2::Digest as _;
    hex::encode(&Sha256::digest(key)[..4])
}

/// Signs `claims` with `key`.
pub fn sign(key: &Key, claims: &Claims) -> Result<String, JwtError> {
    provider();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(key_id(key));
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(key))
        .map_err(|e| JwtError::Sign(e.to_string()))
}

/// Whether the header of `token` names an algorithm other than HS256
/// (`jsonwebtoken` refuses names it does not know, such as `none`, as
/// malformed).
fn foreign_algorithm(token: &str) -> bool {
    #[derive(Deserialize)]
    struct Alg {
        alg: String,
    }
    token
        .split('.')
        .next()
        .and_then(|h| URL_SAFE_NO_PAD.decode(h).ok())
        .and_then(|b| serde_json::from_slice::<Alg>(&b).ok())
        .is_some_and(|h| h.alg != "HS256")
}

/// Verifies `token` with `key` for `service` at `now` (Unix seconds).
pub fn verify(key: &Key, token: &str, service: &str, now: i64) -> Result<Claims, JwtError> {
    provider();
    if token.split('.').count() != 3 {
        return Err(JwtError::Malformed);
    }
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_audience(&[service]);
    validation.set_required_spec_claims(&["aud"]);
    // The window is checked below, on the caller's clock.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    let data = jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(key), &validation)
        .map_err(|e| match e.kind() {
        ErrorKind::InvalidSignature => JwtError::Signature,
        ErrorKind::InvalidAlgorithm => JwtError::Algorithm,
        ErrorKind::InvalidAudience => JwtError::Audience,
        _ if foreign_algorithm(token) => JwtError::Algorithm,
        _ => JwtError::Malformed,
    })?;
    let claims = data.claims;
    if now > claims.exp + LEEWAY_SECS || now + LEEWAY_SECS < claims.nbf {
        return Err(JwtError::Expired);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(now: i64) -> Claims {
        Claims {
            iss: "berth".into(),
            sub: "alice".into(),
            aud: "registry.test".into(),
            exp: now + 300,
            nbf: now,
            iat: now,
            jti: "j1".into(),
            access: vec![ResourceAccess {
                kind: "repository".into(),
                name: "alice/app".into(),
                actions: vec!["pull".into()],
            }],
            tid: None,
            sct: None,
            wkl: None,
        }
    }

    const KEY: &Key = b"0123456789abcdef0123456789abcdef";

    /// A token signed by the hand-written signer berth used before
    /// (header `{"alg":"HS256","typ":"JWT","kid":...}`, HMAC-SHA256 over
    /// the key padded to 64 bytes) still verifies: tokens issued before an
    /// upgrade stay valid.
    #[test]
    fn tokens_of_the_former_signer_verify() {
        let h = URL_SAFE_NO_PAD.encode(format!(
            r#"{{"alg":"HS256","typ":"JWT","kid":"{}"}}"#,
            key_id(KEY)
        ));
        let p = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(1000)).unwrap());
        let mut block = [0u8; 64];
        block[..32].copy_from_slice(KEY);
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&block).unwrap();
        m.update(format!("{h}.{p}").as_bytes());
        let s = URL_SAFE_NO_PAD.encode(m.finalize().into_bytes());
        let token = format!("{h}.{p}.{s}");
        assert_eq!(verify(KEY, &token, "registry.test", 1100), Ok(claims(1000)));
    }

    #[test]
    fn signed_tokens_verify() {
        let t = sign(KEY, &claims(1000)).unwrap();
        assert_eq!(verify(KEY, &t, "registry.test", 1100), Ok(claims(1000)));
    }

    #[test]
    fn tampering_is_detected() {
        let t = sign(KEY, &claims(1000)).unwrap();
        // Widen the access in the payload, keep the signature.
        let mut wide = claims(1000);
        wide.access[0].actions = vec!["pull".into(), "push".into()];
        let p = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&wide).unwrap());
        let parts: Vec<&str> = t.split('.').collect();
        let forged = format!("{}.{p}.{}", parts[0], parts[2]);
        assert_eq!(
            verify(KEY, &forged, "registry.test", 1100),
            Err(JwtError::Signature)
        );
        // Signed with another key.
        let other = sign(b"another key, also 32 bytes long!", &wide).unwrap();
        assert_eq!(
            verify(KEY, &other, "registry.test", 1100),
            Err(JwtError::Signature)
        );
        // alg=none with no signature.
        let none = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let unsigned = format!("{none}.{p}.");
        assert_eq!(
            verify(KEY, &unsigned, "registry.test", 1100),
            Err(JwtError::Algorithm)
        );
        assert_eq!(
            verify(KEY, "a.b", "registry.test", 1100),
            Err(JwtError::Malformed)
        );
    }

    #[test]
    fn audience_and_time_are_checked() {
        let t = sign(KEY, &claims(1000)).unwrap();
        assert_eq!(
            verify(KEY, &t, "other.service", 1100),
            Err(JwtError::Audience)
        );
        assert_eq!(
            verify(KEY, &t, "registry.test", 1000 + 300 + LEEWAY_SECS + 1),
            Err(JwtError::Expired)
        );
        assert_eq!(
            verify(KEY, &t, "registry.test", 1000 - LEEWAY_SECS - 1),
            Err(JwtError::Expired)
        );
        assert!(verify(KEY, &t, "registry.test", 1000 + 300 + LEEWAY_SECS).is_ok());
        assert_eq!(key_id(KEY).len(), 8);
    }
}
