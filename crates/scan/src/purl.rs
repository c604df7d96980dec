//! Package URLs (`pkg:type/namespace/name@version?qualifiers`), as the purl
//! specification writes them: each component percent-encoded (only
//! `A-Z a-z 0-9 . - _ ~` stay as they are, so `+` and `:` in versions
//! become `%2B` and `%3A`), namespace segments encoded one by one, qualifier
//! keys lowercase and sorted, empty qualifier values left out.

use std::fmt::Write as _;

/// Percent-encodes one purl component.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Builds a purl. `namespace` may have several `/`-separated segments (Go
/// module paths); `qualifiers` with an empty value are left out.
pub fn build(
    kind: &str,
    namespace: Option<&str>,
    name: &str,
    version: Option<&str>,
    qualifiers: &[(&str, &str)],
) -> String {
    let mut out = format!("pkg:{kind}/");
    if let Some(ns) = namespace.filter(|n| !n.is_empty()) {
        for seg in ns.split('/').filter(|s| !s.is_empty()) {
            out.push_str(&encode(seg));
            out.push('/');
        }
    }
    out.push_str(&encode(name));
    if let Some(v) = version.filter(|v| !v.is_empty()) {
        out.push('@');
        out.push_str(&encode(v));
    }
    let mut qs: Vec<(String, &str)> = qualifiers
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_ascii_lowercase(), *v))
        .collect();
    qs.sort();
    for (i, (k, v)) in qs.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(k);
        out.push('=');
        out.push_str(&encode(v));
    }
    out
}

/// A Go module path as purl namespace and name: `github.com/a/b` is
/// namespace `github.com/a`, name `b`.
pub fn golang(module: &str, version: &str) -> String {
    match module.rsplit_once('/') {
        Some((ns, name)) => build("golang", Some(ns), name, Some(version), &[]),
        None => build("golang", None, module, Some(version), &[]),
    }
}

/// The PyPI name as purl writes it: lowercase, `_` as `-`.
pub fn pypi(name: &str, version: &str) -> String {
    build(
        "pypi",
        None,
        &name.to_ascii_lowercase().replace('_', "-"),
        Some(version),
        &[],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_examples() {
        assert_eq!(
            build(
                "deb",
                Some("debian"),
                "curl",
                Some("7.50.3-1"),
                &[("arch", "i386"), ("distro", "jessie")]
            ),
            "pkg:deb/debian/curl@7.50.3-1?arch=i386&distro=jessie"
        );
        assert_eq!(
            build("npm", Some("@angular"), "animation", Some("12.3.1"), &[]),
            "pkg:npm/%40angular/animation@12.3.1"
        );
        assert_eq!(
            golang("github.com/gorilla/context", "234fd47e07d1004f0aed9c"),
            "pkg:golang/github.com/gorilla/context@234fd47e07d1004f0aed9c"
        );
        assert_eq!(
            build(
                "rpm",
                Some("fedora"),
                "curl",
                Some("7.50.3-1.fc25"),
                &[("distro", "fedora-25"), ("arch", "i386")]
            ),
            "pkg:rpm/fedora/curl@7.50.3-1.fc25?arch=i386&distro=fedora-25"
        );
        assert_eq!(pypi("Django_Rest", "1.11.1"), "pkg:pypi/django-rest@1.11.1");
    }

    #[test]
    fn versions_are_encoded_and_empty_qualifiers_dropped() {
        assert_eq!(
            build(
                "deb",
                Some("debian"),
                "libc6",
                Some("1:2.36-9+deb12u4"),
                &[("upstream", ""), ("arch", "amd64")]
            ),
            "pkg:deb/debian/libc6@1%3A2.36-9%2Bdeb12u4?arch=amd64"
        );
    }
}
