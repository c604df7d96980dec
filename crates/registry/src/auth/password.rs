//! Password hashing with argon2id.
//!
//! Hashes are PHC strings (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`), so
//! parameters can be raised later without invalidating stored hashes. Both
//! functions cost tens of milliseconds of CPU by design: call them on a
//! blocking thread (`tokio::task::spawn_blocking`), never on the runtime.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

use crate::{Error, Result};

/// Shortest password accepted for a new or changed password.
pub const MIN_LENGTH: usize = 8;

/// Hashes `password` with argon2id (OWASP's parameters: 19 MiB, 2 passes,
/// 1 lane) and a random 16-byte salt.
pub fn hash(password: &str) -> Result<String> {
    let salt_bytes = super::secret::random_bytes(16)?;
    let salt = SaltString::encode_b64(&salt_bytes)
        .map_err(|e| Error::Internal(format!("password salt: {e}")))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Internal(format!("password hash: {e}")))
}

/// Whether `password` matches the PHC string `stored`. A malformed stored
/// hash matches nothing.
pub fn verify(password: &str, stored: &str) -> bool {
    match PasswordHash::new(stored) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Checks a new password against the (deliberately simple) policy.
pub fn check_policy(password: &str) -> Result<()> {
    if password.chars().count() < MIN_LENGTH {
        return Err(Error::InvalidParameter(format!(
            "a password needs at least {MIN_LENGTH} characters"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_differ_by_salt() {
        let a = hash("correct horse").unwrap();
        let b = hash("correct horse").unwrap();
        assert!(a.starts_with("$argon2id$"));
        assert_ne!(a, b, "salted");
        assert!(verify("correct horse", &a));
        assert!(verify("correct horse", &b));
        assert!(!verify("correct horsE", &a));
        assert!(!verify("correct horse", "not a hash"));
        assert!(check_policy("short").is_err());
        assert!(check_policy("long enough").is_ok());
    }
}
