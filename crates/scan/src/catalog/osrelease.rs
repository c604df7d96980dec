//! The distribution from `os-release` (`/etc/os-release`, usually a link to
//! `/usr/lib/os-release`, which is read when the first is missing).

use crate::layers::{Content, FileView};
use crate::Distro;

/// The distribution of the image, if it says.
pub fn find(view: &FileView) -> Option<Distro> {
    ["etc/os-release", "usr/lib/os-release"]
        .iter()
        .find_map(|p| match view.resolve(p) {
            Some((_, e)) => match &e.content {
                Content::Bytes(b) => parse(&String::from_utf8_lossy(b)),
                _ => None,
            },
            None => None,
        })
}

/// Parses `KEY=value` lines (values optionally quoted, shell-style escapes).
pub fn parse(text: &str) -> Option<Distro> {
    let mut d = Distro::default();
    for line in text.lines() {
        let Some((k, v)) = line.trim().split_once('=') else {
            continue;
        };
        let v = unquote(v.trim());
        if v.is_empty() {
            continue;
        }
        match k.trim() {
            "ID" => d.id = v,
            "VERSION_ID" => d.version_id = Some(v),
            "VERSION_CODENAME" => d.codename = Some(v),
            "PRETTY_NAME" => d.pretty_name = Some(v),
            _ => {}
        }
    }
    (!d.id.is_empty()).then_some(d)
}

fn unquote(v: &str) -> String {
    let inner = v
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .or_else(|| v.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')))
        .unwrap_or(v);
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn debian_and_alpine() {
        let d = super::parse(
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\nID=debian\n",
        )
        .unwrap();
        assert_eq!(d.id, "debian");
        assert_eq!(d.version_id.as_deref(), Some("12"));
        assert_eq!(d.codename.as_deref(), Some("bookworm"));
        assert_eq!(d.qualifier(), "debian-12");
        let a = super::parse("NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.20.3\n").unwrap();
        assert_eq!(a.qualifier(), "alpine-3.20.3");
        assert!(super::parse("NAME=nothing\n").is_none());
    }
}
