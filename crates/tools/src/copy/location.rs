//! Where images are copied from and to, in skopeo's transport syntax.
//!
//! | syntax | meaning |
//! | --- | --- |
//! | `REF`, `docker://REF` | a registry (`postgres:16`, `localhost:5000/app:v1`) |
//! | `oci:DIR[:TAG]` | an OCI image layout directory |
//! | `oci-archive:FILE[:TAG]` | a tarball of an OCI image layout |
//! | `docker-archive:FILE[:NAME:TAG]` | a `docker save` / `docker load` tarball |
//!
//! The path ends at the first `:` after the transport, as in skopeo.

use std::path::PathBuf;

use berth_oci::reference::ImageRef;

use crate::ToolError;

/// A parsed copy source or destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A repository on a registry.
    Registry(ImageRef),
    /// An OCI image layout directory.
    OciLayout {
        /// The directory.
        path: PathBuf,
        /// The `org.opencontainers.image.ref.name` to read or write.
        tag: Option<String>,
    },
    /// A tarball of an OCI image layout.
    OciArchive {
        /// The file.
        path: PathBuf,
        /// The ref name inside.
        tag: Option<String>,
    },
    /// A Docker `save`/`load` tarball.
    DockerArchive {
        /// The file.
        path: PathBuf,
        /// The image name inside (`RepoTags`), e.g. `app:v1`.
        name: Option<ImageRef>,
    },
}

impl Location {
    /// Parses the transport syntax.
    pub fn parse(s: &str) -> Result<Location, ToolError> {
        let bad = |e: String| ToolError::Usage(format!("{s}: {e}"));
        let split = |rest: &str| -> (PathBuf, Option<String>) {
            match rest.split_once(':') {
                Some((p, r)) if !r.is_empty() => (PathBuf::from(p), Some(r.to_owned())),
                Some((p, _)) => (PathBuf::from(p), None),
                None => (PathBuf::from(rest), None),
            }
        };
        if let Some(rest) = s.strip_prefix("oci:") {
            let (path, tag) = split(rest);
            return Ok(Location::OciLayout { path, tag });
        }
        if let Some(rest) = s.strip_prefix("oci-archive:") {
            let (path, tag) = split(rest);
            return Ok(Location::OciArchive { path, tag });
        }
        if let Some(rest) = s.strip_prefix("docker-archive:") {
            let (path, name) = split(rest);
            let name = name
                .map(|n| ImageRef::parse(&n).map_err(|e| bad(e.to_string())))
                .transpose()?;
            return Ok(Location::DockerArchive { path, name });
        }
        let r = s.strip_prefix("docker://").unwrap_or(s);
        ImageRef::parse(r)
            .map(Location::Registry)
            .map_err(|e| bad(e.to_string()))
    }

    /// The tag named by the location, if any.
    pub fn tag(&self) -> Option<&str> {
        match self {
            Location::Registry(r) => r.tag.as_deref(),
            Location::OciLayout { tag, .. } | Location::OciArchive { tag, .. } => tag.as_deref(),
            Location::DockerArchive { name, .. } => name.as_ref().and_then(|n| n.tag.as_deref()),
        }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let suffix = |t: &Option<String>| t.as_ref().map(|t| format!(":{t}")).unwrap_or_default();
        match self {
            Location::Registry(r) => write!(f, "{r}"),
            Location::OciLayout { path, tag } => write!(f, "oci:{}{}", path.display(), suffix(tag)),
            Location::OciArchive { path, tag } => {
                write!(f, "oci-archive:{}{}", path.display(), suffix(tag))
            }
            Location::DockerArchive { path, name } => write!(
                f,
                "docker-archive:{}{}",
                path.display(),
                name.as_ref()
                    .map(|n| format!(":{}", n.familiar()))
                    .unwrap_or_default()
            ),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_transports() {
        assert!(
            matches!(Location::parse("postgres:16").unwrap(), Location::Registry(r) if r.to_string() == "docker.io/library/postgres:16")
        );
        assert!(
            matches!(Location::parse("docker://localhost:5000/a:b").unwrap(), Location::Registry(r) if r.registry == "localhost:5000")
        );
        assert_eq!(
            Location::parse("oci:/tmp/lay:v1").unwrap(),
            Location::OciLayout {
                path: "/tmp/lay".into(),
                tag: Some("v1".into())
            }
        );
        assert_eq!(
            Location::parse("oci-archive:img.tar").unwrap(),
            Location::OciArchive {
                path: "img.tar".into(),
                tag: None
            }
        );
        let d = Location::parse("docker-archive:x.tar:app:v2").unwrap();
        assert_eq!(d.tag(), Some("v2"));
        assert_eq!(d.to_string(), "docker-archive:x.tar:app:v2");
        assert!(Location::parse("Bad/Name").is_err());
    }
}
