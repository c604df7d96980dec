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

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
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
}

/// Why a token was refused.
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
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kid: Option<String>,
}

/// A signing key: 32 bytes.
pub type Key = [u8; 32];

fn mac(key: &Key) -> Hmac<Sha256> {
    // HMAC pads keys shorter than the hash's 64-byte block with zeros;
    // doing that here gives the fixed-size key `KeyInit::new` takes.
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(key);
    <Hmac<Sha256> as hmac::digest::KeyInit>::new(&block.into())
}

/// The key id advertised in the header: the first 8 hex digits of the
/// key's SHA-256 (it identifies, never reveals, the key).
pub fn key_id(key: &Key) -> String {
    use sha2::Digest as _;
    hex::encode(&Sha256::digest(key)[..4])
}

/// Signs `claims` with `key`.
pub fn sign(key: &Key, claims: &Claims) -> String {
    let header = Header {
        alg: "HS256".into(),
        typ: Some("JWT".into()),
        kid: Some(key_id(key)),
    };
    let h = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap_or_default());
    let p = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
    let mut m = mac(key);
    m.update(h.as_bytes());
    m.update(b".");
    m.update(p.as_bytes());
    let s = URL_SAFE_NO_PAD.encode(m.finalize().into_bytes());
    format!("{h}.{p}.{s}")
}

/// Verifies `token` with `key` for `service` at `now` (Unix seconds).
pub fn verify(key: &Key, token: &str, service: &str, now: i64) -> Result<Claims, JwtError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    let header: Header = URL_SAFE_NO_PAD
        .decode(h)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(JwtError::Malformed)?;
    if header.alg != "HS256" {
        return Err(JwtError::Algorithm);
    }
    let sig = URL_SAFE_NO_PAD.decode(s).map_err(|_| JwtError::Malformed)?;
    let mut m = mac(key);
    m.update(h.as_bytes());
    m.update(b".");
    m.update(p.as_bytes());
    m.verify_slice(&sig).map_err(|_| JwtError::Signature)?;
    let claims: Claims = URL_SAFE_NO_PAD
        .decode(p)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(JwtError::Malformed)?;
    if claims.aud != service {
        return Err(JwtError::Audience);
    }
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
        }
    }

    const KEY: &Key = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn the_padded_key_is_standard_hmac() {
        let mut ours = mac(KEY);
        ours.update(b"data");
        let mut std = <Hmac<Sha256> as Mac>::new_from_slice(KEY).unwrap();
        std.update(b"data");
        assert_eq!(ours.finalize().into_bytes(), std.finalize().into_bytes());
    }

    #[test]
    fn signed_tokens_verify() {
        let t = sign(KEY, &claims(1000));
        assert_eq!(verify(KEY, &t, "registry.test", 1100), Ok(claims(1000)));
    }

    #[test]
    fn tampering_is_detected() {
        let t = sign(KEY, &claims(1000));
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
        let other = sign(b"another key, also 32 bytes long!", &wide);
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
        let t = sign(KEY, &claims(1000));
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
