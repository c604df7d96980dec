//! Repository names, namespaces, tags and manifest references as the
//! distribution spec constrains them, each validated once into its type
//! ([`RepositoryName`], [`Namespace`], [`Tag`], [`Reference`]) at the edge
//! and passed as such through the services and the metadata layer.
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

/// Longest name of a user or organisation (the namespaces accounts own),
/// in bytes. A [`Namespace`] itself may be as long as one repository name
/// component can be: repositories pushed in open mode need no owner.
pub const MAX_NAMESPACE_LEN: usize = 64;

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
    /// Namespace is not one repository name component.
    #[error("{0:?} is not a valid namespace: use lowercase letters and digits with single . _ - between them, and no '/'")]
    NamespaceFormat(String),
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

/// Implements the string-like traits of a validated name type.
macro_rules! name_type {
    ($t:ident) => {
        impl $t {
            /// The name as a string.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The name as an owned string.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $t {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $t {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $t {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl std::str::FromStr for $t {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                $t::parse(s)
            }
        }

        impl TryFrom<String> for $t {
            type Error = NameError;
            fn try_from(s: String) -> Result<Self, NameError> {
                $t::parse(s)
            }
        }

        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                $t::parse(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

/// A valid repository name (`acme/web`, `library/postgres`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepositoryName(String);

impl RepositoryName {
    /// Validates `name` (without copying it when it is a `String`).
    pub fn parse(name: impl AsRef<str> + Into<String>) -> Result<Self, NameError> {
        validate_repository(name.as_ref())?;
        Ok(RepositoryName(name.into()))
    }

    /// The namespace: the first path component (`acme` of `acme/web`),
    /// whose owner owns the repository.
    pub fn namespace(&self) -> Namespace {
        Namespace(self.namespace_str().to_owned())
    }

    /// The namespace as text, without allocating (for map lookups on hot
    /// paths; pass [`Self::namespace`] anywhere a name travels on).
    pub fn namespace_str(&self) -> &str {
        self.0.split('/').next().unwrap_or(&self.0)
    }
}

/// A namespace is the name of the repository that is its first component
/// alone (`acme`): namespace-wide permission checks and scopes use it.
impl From<Namespace> for RepositoryName {
    fn from(ns: Namespace) -> RepositoryName {
        RepositoryName(ns.0)
    }
}

name_type!(RepositoryName);

/// A valid namespace: the first component of repository names, which a
/// user or an organisation of that name owns. One repository path
/// component (account names are further held to [`MAX_NAMESPACE_LEN`]
/// bytes where accounts are created), so the namespace of every
/// [`RepositoryName`] is one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Namespace(String);

impl Namespace {
    /// Validates `name` (without copying it when it is a `String`).
    pub fn parse(name: impl AsRef<str> + Into<String>) -> Result<Self, NameError> {
        let s = name.as_ref();
        if s.contains('/') || validate_repository(s).is_err() {
            return Err(NameError::NamespaceFormat(s.chars().take(80).collect()));
        }
        Ok(Namespace(name.into()))
    }
}

name_type!(Namespace);

/// A valid tag (`latest`, `v1.2.3`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    /// Validates `tag` (without copying it when it is a `String`).
    pub fn parse(tag: impl AsRef<str> + Into<String>) -> Result<Self, NameError> {
        validate_tag(tag.as_ref())?;
        Ok(Tag(tag.into()))
    }
}

name_type!(Tag);

/// The `<reference>` of a manifest URL: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reference {
    /// A tag.
    Tag(Tag),
    /// A digest.
    Digest(Digest),
}

impl Reference {
    /// Parses a reference: anything containing `:` must be a digest.
    pub fn parse(s: &str) -> Result<Reference, NameError> {
        if s.contains(':') {
            Ok(Reference::Digest(Digest::parse(s)?))
        } else {
            Ok(Reference::Tag(Tag::parse(s)?))
        }
    }

    /// The reference as it appears in a URL.
    pub fn as_str(&self) -> &str {
        match self {
            Reference::Tag(t) => t.as_str(),
            Reference::Digest(d) => d.as_str(),
        }
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
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
        assert_eq!(Tag::parse("v1").unwrap().as_str(), "v1");
        assert!(Tag::parse("-v1").is_err());
    }

    #[test]
    fn typed_names() {
        let r = RepositoryName::parse("acme/web/api").unwrap();
        assert_eq!(r.namespace(), "acme");
        assert_eq!(r.namespace_str(), "acme");
        assert_eq!(r.to_string(), "acme/web/api");
        assert_eq!(RepositoryName::parse("app").unwrap().namespace(), "app");
        let ns = Namespace::parse("acme").unwrap();
        assert_eq!(RepositoryName::from(ns), "acme");
        assert!(RepositoryName::parse(String::from("A/b")).is_err());
        assert!(Namespace::parse("acme-corp.eu").is_ok());
        for bad in ["Alice", "a/b", "..", "", "a_-b"] {
            assert!(Namespace::parse(bad).is_err(), "{bad}");
        }
        // Every repository's first component is a namespace, however
        // long; a repository name is not.
        let long = RepositoryName::parse(format!("{}/x", "a".repeat(200))).unwrap();
        assert_eq!(long.namespace().as_str().len(), 200);
        assert!(Namespace::parse("a".repeat(MAX_NAME_LEN + 1)).is_err());
        let t: Tag = serde_json::from_str("\"v1\"").unwrap();
        assert_eq!(t, "v1");
        assert!(serde_json::from_str::<Tag>("\".x\"").is_err());
        assert!(matches!(
            Reference::parse("sha256:zz"),
            Err(NameError::Digest(_))
        ));
    }
}
