//! Debian packages: `/var/lib/dpkg/status` (only entries whose status is
//! `install ok installed`: removed packages leave `deinstall ok
//! config-files` entries behind) and distroless images' `status.d/` (one
//! file per package, without a `Status` field).
//!
//! The source package is the `Source:` field, which is `name` or
//! `name (version)`; without it, the source is the binary package itself.

use crate::catalog::{field, paragraphs};
use crate::{purl, Distro, Ecosystem, Package, SourcePackage};

/// The packages of one status file.
pub fn parse(
    bytes: &[u8],
    in_status_d: bool,
    distro: Option<&Distro>,
    path: &str,
    layer: &str,
) -> Vec<Package> {
    let text = String::from_utf8_lossy(bytes);
    let mut out = Vec::new();
    for p in paragraphs(&text) {
        let (Some(name), Some(version)) = (field(&p, "Package"), field(&p, "Version")) else {
            continue;
        };
        match field(&p, "Status") {
            Some(s) if !s.ends_with(" installed") => continue,
            None if !in_status_d => continue,
            _ => {}
        }
        let arch = field(&p, "Architecture").map(str::to_owned);
        let source = field(&p, "Source").map(|s| match s.split_once('(') {
            Some((n, v)) => SourcePackage {
                name: n.trim().to_owned(),
                version: Some(v.trim_end_matches(')').trim().to_owned()),
            },
            None => SourcePackage {
                name: s.trim().to_owned(),
                version: None,
            },
        });
        let namespace = distro.map_or("debian", |d| d.id.as_str());
        let distro_q = distro.map(Distro::qualifier).unwrap_or_default();
        let upstream = match &source {
            Some(SourcePackage {
                name,
                version: Some(v),
            }) => format!("{name}@{v}"),
            Some(SourcePackage {
                name,
                version: None,
            }) => name.clone(),
            None => String::new(),
        };
        let purl = purl::build(
            "deb",
            Some(namespace),
            name,
            Some(version),
            &[
                ("arch", arch.as_deref().unwrap_or("")),
                ("distro", &distro_q),
                ("upstream", &upstream),
            ],
        );
        out.push(Package {
            ecosystem: Ecosystem::Deb,
            namespace: None,
            name: name.to_owned(),
            version: version.to_owned(),
            source,
            arch,
            license: None,
            purl,
            layer: layer.to_owned(),
            path: path.to_owned(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Package: libc6\nStatus: install ok installed\nArchitecture: amd64\nSource: glibc\nVersion: 2.36-9+deb12u4\nDescription: GNU C Library\n continued line\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1.0\n\nPackage: libpython3.11-minimal\nStatus: install ok installed\nArchitecture: amd64\nSource: python3.11 (3.11.2-6+deb12u1)\nVersion: 3.11.2-6+deb12u2\n";

    #[test]
    fn installed_packages_with_their_source() {
        let d = Distro {
            id: "debian".into(),
            version_id: Some("12".into()),
            ..Distro::default()
        };
        let pkgs = parse(
            STATUS.as_bytes(),
            false,
            Some(&d),
            "/var/lib/dpkg/status",
            "sha256:x",
        );
        assert_eq!(pkgs.len(), 2);
        assert_eq!(pkgs[0].name, "libc6");
        assert_eq!(pkgs[0].source.as_ref().unwrap().name, "glibc");
        assert_eq!(
            pkgs[0].purl,
            "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12&upstream=glibc"
        );
        let py = &pkgs[1];
        assert_eq!(
            py.source,
            Some(SourcePackage {
                name: "python3.11".into(),
                version: Some("3.11.2-6+deb12u1".into())
            })
        );
    }

    #[test]
    fn status_d_files_have_no_status_field() {
        let pkgs = parse(
            b"Package: tzdata\nVersion: 2024a-0+deb12u1\nArchitecture: all\n",
            true,
            None,
            "/var/lib/dpkg/status.d/tzdata",
            "sha256:x",
        );
        assert_eq!(pkgs.len(), 1);
        assert!(parse(b"Package: tzdata\nVersion: 1\n", false, None, "/s", "l").is_empty());
    }
}
