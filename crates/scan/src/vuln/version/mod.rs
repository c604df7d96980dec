//! Version comparison per ecosystem.
//!
//! | scheme | ecosystems | how |
//! | --- | --- | --- |
//! | [`Scheme::Dpkg`] | Debian, Ubuntu | the `debversion` crate (Debian policy 5.6.12) |
//! | [`Scheme::Rpm`] | Rocky Linux, AlmaLinux, Red Hat, SUSE, openSUSE, ... | [`rpm`]: epoch, then `rpmvercmp` |
//! | [`Scheme::Apk`] | Alpine | [`apk`]: apk-tools' token rules |
//! | [`Scheme::Pep440`] | PyPI | the `pep440_rs` crate |
//! | [`Scheme::Semver`] | npm, crates.io, OSV `SEMVER` ranges | the `semver` crate (precedence: build metadata ignored) |
//! | [`Scheme::Go`] | Go | semver with the `v` prefix; pseudo-versions are pre-releases; `+incompatible` ignored |
//! | [`Scheme::Maven`] | Maven | [`maven`]: `ComparableVersion`'s rules |
//!
//! A version a scheme cannot read compares as `None`: the caller decides
//! (a range it cannot evaluate does not match).

pub mod apk;
pub mod maven;
pub mod rpm;

use std::cmp::Ordering;
use std::str::FromStr as _;

/// How versions of an ecosystem compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Debian packages.
    Dpkg,
    /// RPM packages.
    Rpm,
    /// Alpine packages.
    Apk,
    /// Python packages.
    Pep440,
    /// Semantic versions (npm, crates.io).
    Semver,
    /// Go modules.
    Go,
    /// Maven artifacts.
    Maven,
}

impl Scheme {
    /// The scheme of an OSV ecosystem family (`Debian`, `PyPI`, ...);
    /// `None` for one berth does not compare.
    pub fn of_family(family: &str) -> Option<Scheme> {
        Some(match family {
            "Debian" | "Ubuntu" => Scheme::Dpkg,
            "Alpine" | "Wolfi" | "Chainguard" => Scheme::Apk,
            "Rocky Linux" | "AlmaLinux" | "Red Hat" | "SUSE" | "openSUSE" | "Mageia"
            | "openEuler" => Scheme::Rpm,
            "PyPI" => Scheme::Pep440,
            "npm" | "crates.io" => Scheme::Semver,
            "Go" => Scheme::Go,
            "Maven" => Scheme::Maven,
            _ => return None,
        })
    }

    /// Compares `a` with `b`; `None` if either is not a version of this
    /// scheme.
    pub fn compare(self, a: &str, b: &str) -> Option<Ordering> {
        match self {
            Scheme::Dpkg => {
                let x = debversion::Version::from_str(a.trim()).ok()?;
                let y = debversion::Version::from_str(b.trim()).ok()?;
                Some(x.cmp(&y))
            }
            Scheme::Rpm => Some(rpm::compare(a.trim(), b.trim())),
            Scheme::Apk => Some(apk::compare(a.trim(), b.trim())),
            Scheme::Pep440 => {
                let x = pep440_rs::Version::from_str(a.trim()).ok()?;
                let y = pep440_rs::Version::from_str(b.trim()).ok()?;
                Some(x.cmp(&y))
            }
            Scheme::Semver => Some(semver(a)?.cmp_precedence(&semver(b)?)),
            Scheme::Go => Some(go(a)?.cmp_precedence(&go(b)?)),
            Scheme::Maven => Some(maven::compare(a.trim(), b.trim())),
        }
    }
}

/// A semantic version, leniently: a leading `v` or `=` is dropped and a
/// missing minor or patch number is zero (`1.2` = `1.2.0`).
fn semver(v: &str) -> Option<semver::Version> {
    let v = v.trim().trim_start_matches(['v', '=']);
    if let Ok(parsed) = semver::Version::parse(v) {
        return Some(parsed);
    }
    let split = v.find(['-', '+']).unwrap_or(v.len());
    let (core, rest) = v.split_at(split);
    let dots = core.matches('.').count();
    let padded = match dots {
        0 => format!("{core}.0.0{rest}"),
        1 => format!("{core}.0{rest}"),
        _ => return None,
    };
    semver::Version::parse(&padded).ok()
}

/// A Go module version (`v1.2.3`, `v0.0.0-20240101000000-abcdef123456`,
/// `v2.0.0+incompatible`) or a Go release (`go1.22.1`, as the standard
/// library's version).
fn go(v: &str) -> Option<semver::Version> {
    let v = v.trim();
    let v = v.strip_prefix("go").unwrap_or(v);
    semver(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    fn check(s: Scheme, cases: &[(&str, &str, Ordering)]) {
        for (a, b, want) in cases {
            assert_eq!(s.compare(a, b), Some(*want), "{s:?}: {a} vs {b}");
            assert_eq!(s.compare(b, a), Some(want.reverse()), "{s:?}: {b} vs {a}");
        }
    }

    /// Cases from dpkg's own tests (`t/dpkg_version.t`) and Debian policy
    /// 5.6.12.
    #[test]
    fn dpkg() {
        check(
            Scheme::Dpkg,
            &[
                ("1.0", "1.0", Equal),
                ("1.0-1", "1.0-2", Less),
                ("1:0.1", "2.0", Greater),
                ("0:1.0", "1.0", Equal),
                ("1.0~rc1", "1.0", Less),
                ("1.0~~", "1.0~", Less),
                ("1.0~", "1.0", Less),
                ("1.0", "1.0+b1", Less),
                ("1.0a", "1.0", Greater),
                ("1.0.1", "1.0a", Greater),
                ("2.36-9+deb12u4", "2.36-9+deb12u7", Less),
                ("2.36-9+deb12u10", "2.36-9+deb12u7", Greater),
                ("3.0.11-1~deb12u2", "3.0.11-1", Less),
                ("1.2.3-1ubuntu0.1", "1.2.3-1", Greater),
                ("0.9", "0.10", Less),
                ("1.0-0.1", "1.0-1", Less),
            ],
        );
        assert_eq!(Scheme::Dpkg.compare("not a version!", "1.0"), None);
    }

    #[test]
    fn pep440() {
        check(
            Scheme::Pep440,
            &[
                ("1.0.dev1", "1.0a1", Less),
                ("1.0a1", "1.0b1", Less),
                ("1.0b1", "1.0rc1", Less),
                ("1.0rc1", "1.0", Less),
                ("1.0", "1.0.post1", Less),
                ("1!0.1", "2.0", Greater),
                ("1.0-RC1", "1.0rc1", Equal),
                ("2.31.0", "2.32.0", Less),
                ("1.0", "1.0.0", Equal),
                ("1.0+local.1", "1.0", Greater),
            ],
        );
        assert_eq!(Scheme::Pep440.compare("banana", "1.0"), None);
    }

    #[test]
    fn semver_for_npm_and_cargo() {
        check(
            Scheme::Semver,
            &[
                ("1.2.3", "1.2.4", Less),
                ("1.2.3-alpha", "1.2.3", Less),
                ("1.2.3-alpha.2", "1.2.3-alpha.10", Less),
                ("1.2.3+build.1", "1.2.3", Equal),
                ("v1.2.3", "1.2.3", Equal),
                ("1.2", "1.2.0", Equal),
                ("4.17.21", "4.17.20", Greater),
            ],
        );
        assert_eq!(Scheme::Semver.compare("1.2.3.4", "1.0.0"), None);
    }

    #[test]
    fn go_modules_and_releases() {
        check(
            Scheme::Go,
            &[
                ("v0.0.0-20230101000000-abcdefabcdef", "v0.1.0", Less),
                (
                    "v0.0.0-20230101000000-abcdefabcdef",
                    "v0.0.0-20240101000000-abcdefabcdef",
                    Less,
                ),
                ("v1.2.4-0.20230101000000-abcdefabcdef", "v1.2.3", Greater),
                ("v1.2.4-0.20230101000000-abcdefabcdef", "v1.2.4", Less),
                ("v2.0.0+incompatible", "2.0.0", Equal),
                ("go1.21.5", "1.21.6", Less),
                ("go1.22", "1.21.9", Greater),
            ],
        );
    }

    #[test]
    fn families() {
        assert_eq!(Scheme::of_family("Debian"), Some(Scheme::Dpkg));
        assert_eq!(Scheme::of_family("crates.io"), Some(Scheme::Semver));
        assert_eq!(Scheme::of_family("Hackage"), None);
    }
}
