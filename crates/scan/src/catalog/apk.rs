//! Alpine packages: `/lib/apk/db/installed`, in the format apk documents
//! (one paragraph per package, `X:value` lines: `P` name, `V` version, `A`
//! architecture, `L` license, `o` origin, the source package advisories
//! name).

use crate::{purl, Distro, Ecosystem, Package, SourcePackage};

/// The packages of an installed database.
pub fn parse(bytes: &[u8], distro: Option<&Distro>, path: &str, layer: &str) -> Vec<Package> {
    let text = String::from_utf8_lossy(bytes);
    let mut out = Vec::new();
    let mut fields: Vec<(char, &str)> = Vec::new();
    let mut flush = |fields: &mut Vec<(char, &str)>| {
        let get = |k: char| fields.iter().find(|(c, _)| *c == k).map(|(_, v)| *v);
        if let (Some(name), Some(version)) = (get('P'), get('V')) {
            let arch = get('A').map(str::to_owned);
            let origin = get('o').filter(|o| !o.is_empty());
            let namespace = distro.map_or("alpine", |d| d.id.as_str());
            let distro_q = distro.map(Distro::qualifier).unwrap_or_default();
            out.push(Package {
                ecosystem: Ecosystem::Apk,
                namespace: None,
                name: name.to_owned(),
                version: version.to_owned(),
                source: origin.map(|o| SourcePackage {
                    name: o.to_owned(),
                    version: None,
                }),
                license: get('L').map(str::to_owned),
                purl: purl::build(
                    "apk",
                    Some(namespace),
                    name,
                    Some(version),
                    &[
                        ("arch", arch.as_deref().unwrap_or("")),
                        ("distro", &distro_q),
                        ("upstream", origin.unwrap_or("")),
                    ],
                ),
                arch,
                layer: layer.to_owned(),
                path: path.to_owned(),
            });
        }
        fields.clear();
    };
    for line in text.lines() {
        if line.trim().is_empty() {
            flush(&mut fields);
            continue;
        }
        let mut chars = line.chars();
        if let (Some(k), Some(':')) = (chars.next(), chars.next()) {
            fields.push((k, &line[2..]));
        }
    }
    flush(&mut fields);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn packages_with_their_origin() {
        let db = "C:Q1abc=\nP:musl\nV:1.2.5-r0\nA:x86_64\nS:383152\nI:622592\nT:the musl c library\nU:https://musl.libc.org/\nL:MIT\no:musl\nm:Maintainer\nt:1712000000\nc:abc\n\nC:Q1def=\nP:libcrypto3\nV:3.3.2-r0\nA:x86_64\nL:Apache-2.0\no:openssl\n";
        let pkgs = super::parse(db.as_bytes(), None, "/lib/apk/db/installed", "sha256:x");
        assert_eq!(pkgs.len(), 2);
        assert_eq!(pkgs[1].source.as_ref().unwrap().name, "openssl");
        assert_eq!(
            pkgs[1].purl,
            "pkg:apk/alpine/libcrypto3@3.3.2-r0?arch=x86_64&upstream=openssl"
        );
    }
}
