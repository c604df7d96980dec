//! Image references (`[registry/]repository[:tag][@digest]`) parsed and
//! normalised the way the Docker ecosystem does.
//!
//! The rules are those of `distribution/reference`'s `ParseNormalizedNamed`:
//! the first path component is a registry host only if it contains a `.` or a
//! `:` or is `localhost`; otherwise the reference is on Docker Hub
//! (`docker.io`), and a single-component Docker Hub name lives under
//! `library/`. So `postgres:16` is `docker.io/library/postgres:16`,
//! `bitnami/redis` is `docker.io/bitnami/redis`, `localhost:5000/app` and
//! `ghcr.io/org/app@sha256:...` name their registry. `index.docker.io` is an
//! alias of `docker.io`. A reference may carry a tag, a digest, both, or
//! neither (which tools read as the implicit `latest`).
//!
//! [`ImageRef`] also remembers what the text left implicit (the registry, the
//! `library/` prefix), which is what a linter needs to report it.

use std::fmt;
use std::str::FromStr;

use crate::digest::{Digest, DigestError};
use crate::name::{validate_repository, validate_tag, NameError};

/// The registry Docker Hub names are resolved against.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that serves Docker Hub's registry API.
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";
/// The tag used when a reference has neither tag nor digest.
pub const DEFAULT_TAG: &str = "latest";

/// Why an image reference was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// Empty input.
    #[error("image reference is empty")]
    Empty,
    /// The registry part is not a valid host (with optional port).
    #[error("invalid registry host {0:?} in image reference")]
    Registry(String),
    /// The repository path contains upper-case letters.
    #[error("repository name {0:?} must be lower-case")]
    UpperCase(String),
    /// The repository or tag does not match the grammar.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The digest is malformed.
    #[error(transparent)]
    Digest(#[from] DigestError),
}

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    /// Registry host, with port if any (`docker.io`, `ghcr.io`, `localhost:5000`).
    pub registry: String,
    /// Repository path inside the registry (`library/postgres`).
    pub repository: String,
    /// Tag, if the reference names one.
    pub tag: Option<String>,
    /// Digest, if the reference pins one.
    pub digest: Option<Digest>,
    /// Whether the text named the registry (false: implicit Docker Hub).
    pub explicit_registry: bool,
}

impl ImageRef {
    /// Parses and normalises `s`.
    pub fn parse(s: &str) -> Result<ImageRef, ReferenceError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (r, Some(Digest::parse(d)?)),
            None => (s, None),
        };
        // A tag is after the last ':' that follows the last '/', so that a
        // registry port (`host:5000/app`) is not mistaken for a tag.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let tag = &rest[last_slash + i + 1..];
                validate_tag(tag)?;
                (&rest[..last_slash + i], Some(tag.to_owned()))
            }
            None => (rest, None),
        };
        let (registry, path, explicit_registry) = match name.split_once('/') {
            Some((first, remainder)) if looks_like_host(first) => (first, remainder, true),
            _ => (DOCKER_HUB, name, false),
        };
        let registry = if registry == "index.docker.io" {
            DOCKER_HUB
        } else {
            registry
        };
        if explicit_registry && !valid_host(registry) {
            return Err(ReferenceError::Registry(registry.to_owned()));
        }
        if path.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(ReferenceError::UpperCase(path.to_owned()));
        }
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_owned()
        };
        validate_repository(&repository)?;
        Ok(ImageRef {
            registry: registry.to_owned(),
            repository,
            tag,
            digest,
            explicit_registry,
        })
    }

    /// Whether the reference is on Docker Hub.
    pub fn is_docker_hub(&self) -> bool {
        self.registry == DOCKER_HUB
    }

    /// The tag, or `latest` when the reference has neither tag nor digest.
    pub fn tag_or_default(&self) -> Option<&str> {
        match (&self.tag, &self.digest) {
            (Some(t), _) => Some(t),
            (None, None) => Some(DEFAULT_TAG),
            (None, Some(_)) => None,
        }
    }

    /// What to ask a registry's manifest endpoint for: the digest when
    /// pinned (it wins over the tag), else the tag or `latest`.
    pub fn manifest_reference(&self) -> String {
        match &self.digest {
            Some(d) => d.to_string(),
            None => self.tag.clone().unwrap_or_else(|| DEFAULT_TAG.to_owned()),
        }
    }

    /// The host that serves the registry API (`registry-1.docker.io` for
    /// Docker Hub, the registry itself otherwise).
    pub fn api_host(&self) -> &str {
        if self.is_docker_hub() {
            DOCKER_HUB_API_HOST
        } else {
            &self.registry
        }
    }

    /// `registry/repository` without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The shortest form the Docker CLI would print (`postgres:16`,
    /// `bitnami/redis`, `ghcr.io/org/app`).
    pub fn familiar(&self) -> String {
        let name = if self.is_docker_hub() {
            self.repository
                .strip_prefix("library/")
                .filter(|r| !r.contains('/'))
                .unwrap_or(&self.repository)
                .to_owned()
        } else {
            self.name()
        };
        self.with_suffix(name)
    }

    /// A copy with a different tag (and no digest).
    pub fn with_tag(&self, tag: &str) -> ImageRef {
        ImageRef {
            tag: Some(tag.to_owned()),
            digest: None,
            ..self.clone()
        }
    }

    /// A copy pinned to `digest` (the tag is kept).
    pub fn with_digest(&self, digest: Digest) -> ImageRef {
        ImageRef {
            digest: Some(digest),
            ..self.clone()
        }
    }

    fn with_suffix(&self, mut s: String) -> String {
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d.as_str());
        }
        s
    }
}

impl fmt::Display for ImageRef {
    /// The fully qualified form (`docker.io/library/postgres:16`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.with_suffix(self.name()))
    }
}

impl FromStr for ImageRef {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ImageRef::parse(s)
    }
}

/// Whether the first path component names a registry host.
fn looks_like_host(first: &str) -> bool {
    first.contains('.') || first.contains(':') || first == "localhost"
}

/// `host[:port]`, where host is DNS labels, an IPv4 address, or `[ipv6]`.
fn valid_host(h: &str) -> bool {
    let (host, port) = if let Some(rest) = h.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        if v6.is_empty()
            || !v6
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return false;
        }
        match after {
            "" => return true,
            p => match p.strip_prefix(':') {
                Some(p) => ("v6", Some(p)),
                None => return false,
            },
        }
    } else {
        match h.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (h, None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn normalises_like_docker() {
        let cases = [
            ("postgres", "docker.io/library/postgres", false),
            ("postgres:16", "docker.io/library/postgres:16", false),
            ("bitnami/redis:7.2", "docker.io/bitnami/redis:7.2", false),
            (
                "docker.io/postgres:16",
                "docker.io/library/postgres:16",
                true,
            ),
            (
                "index.docker.io/library/nginx",
                "docker.io/library/nginx",
                true,
            ),
            ("docker.io/a/b/c", "docker.io/a/b/c", true),
            ("localhost/app", "localhost/app", true),
            ("localhost:5000/app:dev", "localhost:5000/app:dev", true),
            (
                "127.0.0.1:5000/team/app:1",
                "127.0.0.1:5000/team/app:1",
                true,
            ),
            ("ghcr.io/org/app:v1.2.3", "ghcr.io/org/app:v1.2.3", true),
            (
                "registry.example.com:8443/a/b",
                "registry.example.com:8443/a/b",
                true,
            ),
            ("[::1]:5000/app", "[::1]:5000/app", true),
            ("quay.io/x/y:1@", "", true),
        ];
        for (input, want, explicit) in cases {
            if want.is_empty() {
                assert!(ImageRef::parse(input).is_err(), "{input}");
                continue;
            }
            let r = ImageRef::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.to_string(), want, "{input}");
            assert_eq!(r.explicit_registry, explicit, "{input}");
        }
    }

    #[test]
    fn digests_and_tags() {
        let r = ImageRef::parse(&format!("postgres:16@{D}")).unwrap();
        assert_eq!(r.tag.as_deref(), Some("16"));
        assert_eq!(r.digest.as_ref().map(|d| d.as_str()), Some(D));
        assert_eq!(r.manifest_reference(), D);
        assert_eq!(r.familiar(), format!("postgres:16@{D}"));
        let r = ImageRef::parse(&format!("ghcr.io/o/a@{D}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.tag_or_default(), None);
        let r = ImageRef::parse("nginx").unwrap();
        assert_eq!(r.tag_or_default(), Some("latest"));
        assert_eq!(r.manifest_reference(), "latest");
        assert_eq!(r.api_host(), DOCKER_HUB_API_HOST);
        assert_eq!(r.familiar(), "nginx");
        assert_eq!(
            ImageRef::parse("bitnami/redis").unwrap().familiar(),
            "bitnami/redis"
        );
        assert_eq!(
            ImageRef::parse("localhost:5000/app")
                .unwrap()
                .with_tag("v2")
                .to_string(),
            "localhost:5000/app:v2"
        );
    }

    #[test]
    fn refuses_bad_references() {
        for bad in [
            "",
            "Postgres",
            "docker.io/Library/x",
            "app:",
            "app:-x",
            "app@sha256:123",
            "host:port/app",
            "a..b.com/x",
            "-bad.com/x",
            "reg.io/",
            "a//b",
            "app:tag:tag2",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad}");
        }
        // Upper-case in the first component means it is a host for Docker,
        // but hosts are case-insensitive and valid, while the path is checked.
        assert!(ImageRef::parse("Example.COM/app").is_ok());
    }
}
