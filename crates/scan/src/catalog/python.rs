//! Python distributions: the core metadata of an installed distribution
//! (`NAME-VERSION.dist-info/METADATA` from wheels, `*.egg-info/PKG-INFO` or
//! an `*.egg-info` file from setuptools): email-style headers, of which
//! `Name`, `Version` and `License` are read.

use crate::catalog::{field, paragraphs};
use crate::{purl, Ecosystem, Package};

/// The distribution a metadata file describes.
pub fn parse(bytes: &[u8], path: &str, layer: &str) -> Option<Package> {
    let text = String::from_utf8_lossy(bytes);
    let headers = paragraphs(&text).into_iter().next()?;
    let name = field(&headers, "Name")?;
    let version = field(&headers, "Version")?;
    let license = field(&headers, "License-Expression")
        .or_else(|| field(&headers, "License"))
        .filter(|l| !l.eq_ignore_ascii_case("UNKNOWN") && !l.contains('\n'))
        .map(str::to_owned);
    Some(Package {
        ecosystem: Ecosystem::Pypi,
        namespace: None,
        name: name.to_owned(),
        version: version.to_owned(),
        source: None,
        arch: None,
        license,
        purl: purl::pypi(name, version),
        layer: layer.to_owned(),
        path: path.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn metadata_headers() {
        let m = "Metadata-Version: 2.1\nName: Requests_Toolbelt\nVersion: 1.0.0\nLicense: Apache 2.0\n\nlong description\nName: not this\n";
        let p = super::parse(m.as_bytes(), "/x/METADATA", "l").unwrap();
        assert_eq!(p.name, "Requests_Toolbelt");
        assert_eq!(p.purl, "pkg:pypi/requests-toolbelt@1.0.0");
        assert_eq!(p.license.as_deref(), Some("Apache 2.0"));
        assert!(super::parse(b"Name: x\n", "/x", "l").is_none());
    }
}
