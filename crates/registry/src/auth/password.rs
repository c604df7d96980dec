//! Password hashing with argon2id.
//!
//! Hashes are PHC strings (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`), so
//! parameters can be raised later without invalidating stored hashes. Both
//! functions cost tens of milliseconds of CPU by design: call them on a
//! blocking thread (`tokio::task::spawn_blocking`), never on the runtime.
//!
//! [`hash_in`] and [`verify_in`] do the same work in memory the caller
//! provides (argon2's 19 MiB of blocks), so a server can reuse that memory
//! across logins and give it back when idle (see `super::argon`), instead
//! of leaving it to the allocator, which keeps it.

use argon2::password_hash::{
    Output, PasswordHash, PasswordHasher, PasswordVerifier, Salt, SaltString,
};
use argon2::{Algorithm, Argon2, Block, Params, Version};

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

/// Argon2 blocks a hash with `stored`'s parameters needs (the default
/// parameters' for `None`).
pub fn blocks_needed(stored: Option<&str>) -> usize {
    stored
        .and_then(|s| PasswordHash::new(s).ok())
        .and_then(|h| Params::try_from(&h).ok())
        .unwrap_or_default()
        .block_count()
}

fn fit(memory: &mut Vec<Block>, blocks: usize) -> &mut [Block] {
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    &mut memory[..blocks]
}

/// Like [`hash`], with argon2's memory in `memory` (grown if needed).
pub fn hash_in(password: &str, memory: &mut Vec<Block>) -> Result<String> {
    let salt_bytes = super::secret::random_bytes(16)?;
    let salt = SaltString::encode_b64(&salt_bytes)
        .map_err(|e| Error::Internal(format!("password salt: {e}")))?;
    let params = Params::default();
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    let blocks = fit(memory, params.block_count());
    let output = Output::init_with(len, |out| {
        argon
            .hash_password_into_with_memory(password.as_bytes(), &salt_bytes, out, &mut *blocks)
            .map_err(|_| argon2::password_hash::Error::Crypto)
    })
    .map_err(|e| Error::Internal(format!("password hash: {e}")))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: (&params)
            .try_into()
            .map_err(|e| Error::Internal(format!("password hash: {e}")))?,
        salt: Some(Salt::from(&salt)),
        hash: Some(output),
    };
    Ok(phc.to_string())
}

/// Like [`verify`], with argon2's memory in `memory` (grown if needed).
pub fn verify_in(password: &str, stored: &str, memory: &mut Vec<Block>) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let (Ok(algorithm), Ok(params)) = (
        Algorithm::try_from(parsed.algorithm),
        Params::try_from(&parsed),
    ) else {
        return false;
    };
    let version = parsed
        .version
        .and_then(|v| Version::try_from(v).ok())
        .unwrap_or_default();
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let argon = Argon2::new(algorithm, version, params.clone());
    let blocks = fit(memory, params.block_count());
    let computed = Output::init_with(expected.len(), |out| {
        argon
            .hash_password_into_with_memory(password.as_bytes(), salt, out, &mut *blocks)
            .map_err(|_| argon2::password_hash::Error::Crypto)
    });
    // `Output` compares in constant time.
    computed.is_ok_and(|c| c == expected)
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

    #[test]
    fn hashing_in_provided_memory_agrees_with_the_library() {
        let mut memory = Vec::new();
        let a = hash_in("correct horse", &mut memory).unwrap();
        assert_eq!(memory.len(), blocks_needed(Some(&a)));
        assert_eq!(blocks_needed(None), blocks_needed(Some(&a)));
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert!(verify("correct horse", &a), "the library accepts ours");
        let b = hash("correct horse").unwrap();
        for stored in [&a, &b] {
            assert!(verify_in("correct horse", stored, &mut memory));
            assert!(!verify_in("correct horsE", stored, &mut memory));
        }
        assert!(!verify_in("correct horse", "not a hash", &mut memory));
        // Other parameters (a hash made with cheaper settings) still verify.
        let cheap = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(1024, 1, 1, None).unwrap(),
        )
        .hash_password(b"pw", &SaltString::encode_b64(b"0123456789abcdef").unwrap())
        .unwrap()
        .to_string();
        assert!(verify_in("pw", &cheap, &mut memory));
        assert!(!verify_in("px", &cheap, &mut memory));
    }
}
