//! Token secrets: generation, the recognisable format, hashing.
//!
//! A token reads `berth_<kind>_<id>_<secret>`: `kind` is `pat` (personal
//! access token), `robot` or `refresh`; `id` is 12 and `secret` 32
//! characters of `[0-9A-Za-z]` (190 bits of randomness). The id is public
//! (it names the token in listings and the audit log); only the SHA-256 of
//! the secret is stored. Secret scanners can match leaked tokens with
//! `berth_(pat|robot|refresh)_[0-9A-Za-z]{12}_[0-9A-Za-z]{32}`.

use berth_meta::tokens::TokenKind;
use sha2::Digest as _;

use crate::{Error, Result};

/// Length of the public id.
pub const ID_LEN: usize = 12;
/// Length of the secret part.
pub const SECRET_LEN: usize = 32;

const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A freshly generated token: the full string (shown once) and what is
/// stored.
#[derive(Clone)]
pub struct Generated {
    /// Public id.
    pub id: String,
    /// The whole token, to hand to its owner once.
    pub token: String,
    /// Hex SHA-256 of the secret part, to store.
    pub secret_hash: String,
}

impl std::fmt::Debug for Generated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Generated({}, ***)", self.id)
    }
}

/// `n` random characters of `[0-9A-Za-z]`, from the operating system's
/// generator (rejection sampling, so every character is equally likely).
pub fn random_string(n: usize) -> Result<String> {
    let mut out = String::with_capacity(n);
    let mut buf = [0u8; 64];
    while out.len() < n {
        getrandom::getrandom(&mut buf)
            .map_err(|e| Error::Internal(format!("random generator: {e}")))?;
        for b in buf {
            // 248 = 4 * 62: bytes above it would bias the first characters.
            if b < 248 && out.len() < n {
                out.push(ALPHABET[(b % 62) as usize] as char);
            }
        }
    }
    Ok(out)
}

/// `n` random bytes.
pub fn random_bytes(n: usize) -> Result<Vec<u8>> {
    let mut v = vec![0u8; n];
    getrandom::getrandom(&mut v).map_err(|e| Error::Internal(format!("random generator: {e}")))?;
    Ok(v)
}

fn prefix(kind: TokenKind) -> &'static str {
    match kind {
        TokenKind::Pat => "berth_pat_",
        TokenKind::Robot => "berth_robot_",
        TokenKind::Refresh => "berth_refresh_",
    }
}

/// Generates a token of `kind`.
pub fn generate(kind: TokenKind) -> Result<Generated> {
    let id = random_string(ID_LEN)?;
    let secret = random_string(SECRET_LEN)?;
    Ok(Generated {
        token: format!("{}{id}_{secret}", prefix(kind)),
        secret_hash: hash_secret(&secret),
        id,
    })
}

/// Whether `s` looks like a berth token (it may still be invalid).
pub fn looks_like_token(s: &str) -> bool {
    s.starts_with("berth_")
}

/// Splits a token string into its kind, id and secret; `None` if it is
/// not one.
pub fn parse(token: &str) -> Option<(TokenKind, &str, &str)> {
    let kind = [TokenKind::Pat, TokenKind::Robot, TokenKind::Refresh]
        .into_iter()
        .find(|k| token.starts_with(prefix(*k)))?;
    let rest = &token[prefix(kind).len()..];
    let (id, secret) = rest.split_once('_')?;
    let ok = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_alphanumeric());
    (ok(id, ID_LEN) && ok(secret, SECRET_LEN)).then_some((kind, id, secret))
}

/// Hex SHA-256 of a secret.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(sha2::Sha256::digest(secret.as_bytes()))
}

/// Whether `secret` hashes to `stored`, compared in constant time.
pub fn verify_secret(secret: &str, stored: &str) -> bool {
    constant_time_eq(hash_secret(secret).as_bytes(), stored.as_bytes())
}

/// Byte equality whose time does not depend on where the inputs differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_only_hashes_are_kept() {
        let g = generate(TokenKind::Pat).unwrap();
        assert!(g.token.starts_with("berth_pat_"));
        assert_eq!(g.token.len(), "berth_pat_".len() + ID_LEN + 1 + SECRET_LEN);
        let (kind, id, secret) = parse(&g.token).unwrap();
        assert_eq!((kind, id), (TokenKind::Pat, g.id.as_str()));
        assert!(verify_secret(secret, &g.secret_hash));
        assert!(!verify_secret("x", &g.secret_hash));
        assert!(!g.secret_hash.contains(secret));
        assert!(!format!("{g:?}").contains(secret));
        let r = generate(TokenKind::Robot).unwrap();
        assert_eq!(parse(&r.token).unwrap().0, TokenKind::Robot);
        assert_ne!(r.id, g.id);
    }

    #[test]
    fn malformed_tokens_are_refused() {
        assert!(parse("berth_pat_short_secret").is_none());
        assert!(parse("ghp_0123456789ab_0123456789abcdef0123456789abcdef").is_none());
        assert!(parse("berth_pat_0123456789ab_0123456789abcdef0123456789abcde!").is_none());
        assert!(parse("berth_pat_0123456789ab_0123456789abcdef0123456789abcdef").is_some());
        assert!(parse("berth_refresh_0123456789ab_0123456789abcdef0123456789abcdef").is_some());
    }

    #[test]
    fn random_strings_use_the_whole_alphabet() {
        let s = random_string(4000).unwrap();
        assert_eq!(s.len(), 4000);
        assert!(s.bytes().all(|b| b.is_ascii_alphanumeric()));
        let distinct: std::collections::HashSet<u8> = s.bytes().collect();
        assert_eq!(distinct.len(), 62);
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
