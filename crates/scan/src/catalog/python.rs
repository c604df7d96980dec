//! Python distributions: the core metadata of an installed distribution
//! (`NAME-VERSION.dist-info/METADATA` from wheels, `*.egg-info/PKG-INFO` or
//! an `*.egg-info` file from setuptools): email-style headers, of which
//! `Name`, `Version` and `License` are read. The name is normalized as
//! PEP 503 says (lowercase, runs of `-`, `_` and `.` as one `-`), the form
//! PyPI, purls and advisories use.

use crate::catalog::{field, paragraphs};
use crate::{purl, Ecosystem, Package};

/// The distribution a metadata file describes.
pub fn parse(bytes: &[u8], path: &str, layer: &str) -> Option<Package> {
    let text = String::from_utf8_lossy(bytes);
    let headers = paragraphs(&text).into_iter().next()?;
    let name = normalize(field(&headers, "Name")?);
    let version = field(&headers, "Version")?;
    let license = field(&headers, "License-Expression")
        .or_else(|| field(&headers, "License"))
        .filter(|l| !l.eq_ignore_ascii_case("UNKNOWN") && !l.contains('\n'))
        .map(str::to_owned);
    Some(Package {
        ecosystem: Ecosystem::Pypi,
        namespace: None,
        purl: purl::pypi(&name, version),
        name,
        version: version.to_owned(),
        source: None,
        arch: None,
        license,
        layer: layer.to_owned(),
        path: path.to_owned(),
    })
}

/// The PEP 503 normalized form of a distribution name.
pub fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut separator = false;
    for c in name.trim().chars() {
        if matches!(c, '-' | '_' | '.') {
            separator = true;
            continue;
        }
        if separator && !out.is_empty() {
            out.push('-');
        }
        separator = false;
        out.push(c.to_ascii_lowercase());
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn metadata_headers() {
        let m = "Metadata-Version: 2.1\nName: Requests_Toolbelt\nVersion: 1.0.0\nLicense: Apache 2.0\n\nlong description\nName: not this\n";
        let p = super::parse(m.as_bytes(), "/x/METADATA", "l").unwrap();
        assert_eq!(p.name, "requests-toolbelt");
        assert_eq!(super::normalize("zope.interface__x"), "zope-interface-x");
        assert_eq!(p.purl, "pkg:pypi/requests-toolbelt@1.0.0");
        assert_eq!(p.license.as_deref(), Some("Apache 2.0"));
        assert!(super::parse(b"Name: x\n", "/x", "l").is_none());
    }
}
