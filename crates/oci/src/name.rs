//! Repository names, tags and manifest references as the distribution spec
//! constrains them.
//!
//! Names follow `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`,
//! at most [`MAX_NAME_LEN`] bytes; tags follow `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
//! The checks are hand-written (no regex engine) and reject anything that
//! could escape a path, such as `..`, `%2e` or a leading `/`.

use crate::digest::{Digest, DigestError};

/// Longest accepted repository name, in bytes (the limit Docker Hub and the
/// reference registry use).
pub const MAX_NAME_LEN: usize = 255;

/// Longest accepted tag, in bytes.
pub const MAX_TAG_LEN: usize = 128;

/// Why a name or tag was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Repository name empty or too long.
    #[error("repository name must be 1 to {MAX_NAME_LEN} characters")]
    NameLength,
    /// Repository name does not match the grammar.
    #[error("invalid repository name {0:?}: path components are lower-case letters and digits separated by '.', '_', '__' or '-'")]
    NameFormat(String),
    /// Tag does not match the grammar.
    #[error("invalid tag {0:?}: tags are up to 128 characters of [A-Za-z0-9_.-] and cannot start with '.' or '-'")]
    TagFormat(String),
    /// A reference that is neither a tag nor a valid digest.
    #[error(transparent)]
    Digest(#[from] DigestError),
}

/// Validates a repository name.
pub fn validate_repository(name: &str) -> Result<(), NameError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(NameError::NameLength);
    }
    let bad = || NameError::NameFormat(name.chars().take(160).collect());
    for component in name.split('/') {
        if !valid_component(component) {
            return Err(bad());
        }
    }
    Ok(())
}

fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() {
        return false;
    }
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or "-"+.
        let start = i;
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == start || i >= b.len() || !alnum(b[i]) {
            return false;
        }
    }
    true
}

/// Validates a tag.
pub fn validate_tag(tag: &str) -> Result<(), NameError> {
    let b = tag.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= MAX_TAG_LEN
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&x| x.is_ascii_alphanumeric() || x == b'_' || x == b'.' || x == b'-');
    if ok {
        Ok(())
    } else {
        Err(NameError::TagFormat(tag.chars().take(160).collect()))
    }
}

/// The `<reference>` of a manifest URL: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reference {
    /// A tag.
    Tag(String),
    /// A digest.
    Digest(Digest),
}

impl Reference {
    /// Parses a reference: anything containing `:` must be a digest.
    pub fn parse(s: &str) -> Result<Reference, NameError> {
        if s.contains(':') {
            Ok(Reference::Digest(Digest::parse(s)?))
        } else {
            validate_tag(s)?;
            Ok(Reference::Tag(s.to_owned()))
        }
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reference::Tag(t) => f.write_str(t),
            Reference::Digest(d) => f.write_str(d.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names() {
        for ok in [
            "a",
            "library/postgres",
            "my-org/my_app",
            "a__b",
            "a---b",
            "x.y/z0/9",
            "ghcr.io/owner/app",
        ] {
            assert!(validate_repository(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "A", "a/", "/a", "a//b", "a/../b", "..", "a___b", "a_-b", "-a", "a-", "a.",
            "a%2fb", "a b", "a:b",
        ] {
            assert!(validate_repository(bad).is_err(), "{bad}");
        }
        assert!(validate_repository(&"a".repeat(255)).is_ok());
        assert_eq!(
            validate_repository(&"a".repeat(256)),
            Err(NameError::NameLength)
        );
    }

    #[test]
    fn tags_and_references() {
        assert!(validate_tag("latest").is_ok());
        assert!(validate_tag("_x").is_ok());
        assert!(validate_tag("v1.2.3-rc.1").is_ok());
        assert!(validate_tag(&"a".repeat(128)).is_ok());
        assert!(validate_tag(&"a".repeat(129)).is_err());
        assert!(validate_tag(".hidden").is_err());
        assert!(validate_tag("-x").is_err());
        assert!(validate_tag("a/b").is_err());
        assert!(validate_tag("").is_err());
        assert!(matches!(Reference::parse("v1"), Ok(Reference::Tag(_))));
        assert!(matches!(
            Reference::parse("sha256:zz"),
            Err(NameError::Digest(_))
        ));
    }
}
