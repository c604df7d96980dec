//! Vulnerability data and matching: OSV advisories (as the OSV schema
//! writes them) held against an image's [`Inventory`].
//!
//! - [`osv`]: OSV records (JSON) read into [`Advisory`] values, and the
//!   records of an OSV `all.zip`, a directory or a file.
//! - [`version`]: version comparison per ecosystem (dpkg, RPM, apk, PEP 440,
//!   semver for npm and crates.io, Go modules, Maven).
//! - [`matcher`]: which advisories hit which packages: the OSV ecosystem and
//!   distribution release of each package, OSV `ranges` and `versions`,
//!   withdrawn records ignored, aliases merged into one finding per
//!   vulnerability.
//! - [`severity`]: CVSS v3.x and v4.0 base scores and the ecosystems' own
//!   ratings.
//!
//! Pure functions: the caller fetches the advisories of the packages
//! [`matcher::lookup_keys`] names from wherever it keeps them.

pub mod matcher;
pub mod osv;
pub mod severity;
pub mod version;

use serde::{Deserialize, Serialize};

pub use matcher::{lookup_keys, match_inventory, Finding, LookupKey};
pub use severity::Severity;

/// One OSV record, reduced to what matching and reports use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Advisory {
    /// The record's id (`DSA-5678-1`, `GHSA-xxxx-xxxx-xxxx`, `CVE-...`).
    pub id: String,
    /// When the record last changed, as it says (RFC 3339).
    pub modified: String,
    /// When it was published (RFC 3339), if it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<String>,
    /// When it was withdrawn (RFC 3339): a withdrawn record matches nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withdrawn: Option<String>,
    /// Other ids of the same vulnerability (CVE, GHSA, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Related, not identical, vulnerabilities (`related`, `upstream`): a
    /// Debian advisory names the CVEs it fixes here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub related: Vec<String>,
    /// One-line summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Severity scores of the record (CVSS vectors, or an ecosystem's own
    /// rating such as Ubuntu's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub severity: Vec<Score>,
    /// The database's own rating (`database_specific.severity`: GitHub's
    /// `LOW`, `MODERATE`, `HIGH`, `CRITICAL`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rating: Option<String>,
    /// A page about it (the first advisory or web reference).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The packages it affects.
    pub affected: Vec<Affected>,
}

/// The versions of one package an advisory affects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Affected {
    /// The OSV ecosystem, with its release (`Debian:12`, `Alpine:v3.19`,
    /// `PyPI`).
    pub ecosystem: String,
    /// The package name in that ecosystem (for Debian and Alpine: the
    /// source package).
    pub name: String,
    /// Version ranges (`ECOSYSTEM` and `SEMVER`; `GIT` ranges are dropped
    /// on reading: an image holds no commits).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ranges: Vec<Range>,
    /// Versions listed one by one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<String>,
    /// Severity scores given for this package only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub severity: Vec<Score>,
    /// The ecosystem's rating for this package (`ecosystem_specific` or
    /// `database_specific` `severity` or `urgency`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rating: Option<String>,
}

impl Affected {
    /// The ecosystem without its release (`Debian` of `Debian:12`).
    pub fn family(&self) -> &str {
        family(&self.ecosystem)
    }
}

/// The ecosystem family of an OSV ecosystem string (`Debian` of
/// `Debian:12`, `Ubuntu` of `Ubuntu:22.04:LTS`).
pub fn family(ecosystem: &str) -> &str {
    ecosystem.split(':').next().unwrap_or(ecosystem)
}

/// A range of affected versions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Range {
    /// How its versions compare.
    pub kind: RangeKind,
    /// Its events, as the record lists them.
    pub events: Vec<Event>,
}

/// The OSV range types berth evaluates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RangeKind {
    /// Versions of the package's ecosystem.
    Ecosystem,
    /// Semantic versions.
    Semver,
}

/// One event of a range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// Versions from this one on are affected (`0`: from the first).
    Introduced(String),
    /// Versions from this one on are not.
    Fixed(String),
    /// Versions after this one are not.
    LastAffected(String),
    /// Versions from this one on are outside the range.
    Limit(String),
}

/// A severity score as a record gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Score {
    /// `CVSS_V3`, `CVSS_V4`, `CVSS_V2`, or an ecosystem's own (`Ubuntu`).
    #[serde(rename = "type")]
    pub kind: String,
    /// The vector, or the rating.
    pub score: String,
}
