//! Parsing `/v2/...` paths into typed endpoints.
//!
//! Repository names contain slashes, so the path is matched from its end:
//! the last one to three segments say which endpoint it is, everything
//! before them is the name. This is done once here instead of by a router
//! pattern per name depth.

use berth_oci::RepositoryName;

/// A `/v2/` endpoint of the distribution API, in the reference registry's
/// vocabulary: a repository's manifests, tags, blobs and uploads. The
/// repository name is validated here; the reference, digest or upload id
/// is checked by the endpoint's handler (a malformed digest is a
/// `DIGEST_INVALID`, not a missing route).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v2/`
    Base,
    /// `/v2/_catalog`
    Catalog,
    /// `/v2/<name>/tags/list`
    Tags(RepositoryName),
    /// `/v2/<name>/manifests/<reference>`
    Manifest(RepositoryName, String),
    /// `/v2/<name>/blobs/<digest>`
    Blob(RepositoryName, String),
    /// `/v2/<name>/blobs/uploads/`
    UploadStart(RepositoryName),
    /// `/v2/<name>/blobs/uploads/<id>`
    Upload(RepositoryName, String),
    /// `/v2/<name>/referrers/<digest>`
    Referrers(RepositoryName, String),
}

impl Endpoint {
    /// The repository the endpoint is about (none for the base and the
    /// catalog).
    pub fn repository(&self) -> Option<&RepositoryName> {
        match self {
            Endpoint::Base | Endpoint::Catalog => None,
            Endpoint::Tags(n)
            | Endpoint::Manifest(n, _)
            | Endpoint::Blob(n, _)
            | Endpoint::UploadStart(n)
            | Endpoint::Upload(n, _)
            | Endpoint::Referrers(n, _) => Some(n),
        }
    }
}

/// Why a path is not an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// No endpoint has this shape.
    NotFound,
    /// The shape is right but the repository name is invalid.
    BadName(String),
}

fn name(segments: &[&str]) -> Result<RepositoryName, RouteError> {
    if segments.is_empty() {
        return Err(RouteError::NotFound);
    }
    RepositoryName::parse(segments.join("/")).map_err(|e| RouteError::BadName(e.to_string()))
}

/// Parses the path after `/v2/` (without the leading slash).
pub fn parse(rest: &str) -> Result<Endpoint, RouteError> {
    if rest.is_empty() {
        return Ok(Endpoint::Base);
    }
    if rest == "_catalog" {
        return Ok(Endpoint::Catalog);
    }
    let s: Vec<&str> = rest.split('/').collect();
    let n = s.len();
    if n >= 3 && s[n - 2] == "blobs" && s[n - 1] == "uploads" {
        return Ok(Endpoint::UploadStart(name(&s[..n - 2])?));
    }
    if n >= 4 && s[n - 3] == "blobs" && s[n - 2] == "uploads" {
        return Ok(if s[n - 1].is_empty() {
            Endpoint::UploadStart(name(&s[..n - 3])?)
        } else {
            Endpoint::Upload(name(&s[..n - 3])?, s[n - 1].to_owned())
        });
    }
    if n >= 3 && !s[n - 1].is_empty() {
        let last = s[n - 1].to_owned();
        match s[n - 2] {
            "tags" if last == "list" => return Ok(Endpoint::Tags(name(&s[..n - 2])?)),
            "manifests" => return Ok(Endpoint::Manifest(name(&s[..n - 2])?, last)),
            "blobs" => return Ok(Endpoint::Blob(name(&s[..n - 2])?, last)),
            "referrers" => return Ok(Endpoint::Referrers(name(&s[..n - 2])?, last)),
            _ => {}
        }
    }
    Err(RouteError::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> RepositoryName {
        RepositoryName::parse(s).unwrap()
    }

    #[test]
    fn endpoints() {
        assert_eq!(parse(""), Ok(Endpoint::Base));
        assert_eq!(parse("_catalog"), Ok(Endpoint::Catalog));
        assert_eq!(parse("a/b/tags/list"), Ok(Endpoint::Tags(n("a/b"))));
        assert_eq!(
            parse("a/manifests/latest"),
            Ok(Endpoint::Manifest(n("a"), "latest".into()))
        );
        assert_eq!(
            parse("org/app/blobs/sha256:00"),
            Ok(Endpoint::Blob(n("org/app"), "sha256:00".into()))
        );
        assert_eq!(parse("a/blobs/uploads/"), Ok(Endpoint::UploadStart(n("a"))));
        assert_eq!(parse("a/blobs/uploads"), Ok(Endpoint::UploadStart(n("a"))));
        assert_eq!(
            parse("x/y/z/blobs/uploads/abc"),
            Ok(Endpoint::Upload(n("x/y/z"), "abc".into()))
        );
        // A repository may itself be named like an endpoint keyword.
        assert_eq!(
            parse("blobs/manifests/v1"),
            Ok(Endpoint::Manifest(n("blobs"), "v1".into()))
        );
        assert_eq!(
            parse("a/referrers/sha256:1"),
            Ok(Endpoint::Referrers(n("a"), "sha256:1".into()))
        );
        assert_eq!(parse("a/manifests/"), Err(RouteError::NotFound));
        assert_eq!(parse("manifests/x"), Err(RouteError::NotFound));
        assert!(matches!(
            parse("../etc/manifests/x"),
            Err(RouteError::BadName(_))
        ));
        assert!(matches!(
            parse("A/manifests/x"),
            Err(RouteError::BadName(_))
        ));
        assert_eq!(parse("a/unknown/x"), Err(RouteError::NotFound));
    }
}
