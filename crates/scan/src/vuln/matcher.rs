//! Which advisories hit which packages.
//!
//! Each package of an inventory is looked up under an OSV ecosystem family
//! and a name ([`LookupKey`]):
//!
//! | package | family | name | release that must match |
//! | --- | --- | --- | --- |
//! | deb on Debian / Ubuntu | `Debian` / `Ubuntu` | the **source** package | `Debian:12` (`VERSION_ID`), `Ubuntu:22.04[:LTS]` |
//! | apk on Alpine | `Alpine` | the origin (source) package | `Alpine:v3.19` (`VERSION_ID`'s major.minor) |
//! | rpm on Rocky Linux / AlmaLinux | `Rocky Linux` / `AlmaLinux` | the package or its source RPM | `Rocky Linux:9` |
//! | pypi | `PyPI` | the PEP 503 normalized name | |
//! | npm | `npm` | `@scope/name` | |
//! | golang | `Go` | the module path (`stdlib` for the Go release) | |
//! | cargo | `crates.io` | the crate | |
//! | maven | `Maven` | `group:artifact` | |
//!
//! An advisory's affected entry hits a package when its ecosystem's
//! release is the package's (an advisory for `Debian:11` does not hit a
//! Debian 12 image; an entry without a release hits every release) and the
//! version is listed in `versions` or falls in one of its `ranges`, as the
//! OSV schema evaluates them: events sorted by version, `introduced` opens,
//! `fixed` closes from that version on, `last_affected` closes after it,
//! and a range with `limit` events covers only versions below a limit.
//! Debian and Alpine versions compared are the source package's.
//! Withdrawn records match nothing. The advisories that hit one package
//! and share an id or alias (a GHSA and the CVE it aliases) are one
//! [`Finding`], listing every id.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use super::severity::{self, Cvss, Severity};
use super::version::Scheme;
use super::{Advisory, Affected, Event, Range, RangeKind};
use crate::{Distro, Ecosystem, Inventory, Package};

/// Where the advisories of a package are filed: an OSV ecosystem family
/// (`Debian`, `PyPI`) and a package name as [`package_key`] writes it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct LookupKey {
    /// The OSV ecosystem family.
    pub family: String,
    /// The package name, normalized.
    pub name: String,
}

/// The name under which advisories of `name` are filed in `family`: PyPI
/// names normalized as PEP 503 says (lowercase, runs of `-_.` as one `-`),
/// others as they are.
pub fn package_key(family: &str, name: &str) -> String {
    if family == "PyPI" {
        let mut out = String::with_capacity(name.len());
        let mut dash = false;
        for c in name.trim().chars() {
            if matches!(c, '-' | '_' | '.') {
                dash = true;
            } else {
                if dash && !out.is_empty() {
                    out.push('-');
                }
                dash = false;
                out.push(c.to_ascii_lowercase());
            }
        }
        out
    } else {
        name.to_owned()
    }
}

/// One vulnerability of one package.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// The vulnerability's id: its CVE when one of its ids is a CVE, else
    /// the first advisory id.
    pub id: String,
    /// Every other id it is known by (advisory ids and aliases), sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// The records that matched (OSV ids).
    pub advisories: Vec<String>,
    /// Related vulnerabilities the records name (a Debian advisory's
    /// CVEs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub related: Vec<String>,
    /// How bad it is.
    pub severity: Severity,
    /// The highest CVSS base score given, with its vector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cvss: Option<Cvss>,
    /// One-line summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// A page about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Versions that fix it (above the installed one), sorted as text.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fixed: Vec<String>,
    /// The package's ecosystem.
    pub ecosystem: Ecosystem,
    /// The package name (with its npm scope or Maven group).
    pub package: String,
    /// The installed version.
    pub version: String,
    /// The source package the advisory names, for OS packages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The package URL.
    pub purl: String,
    /// The layer its file came from.
    pub layer: String,
    /// The file that declares it.
    pub path: String,
}

/// The findings of an inventory, and what could not be looked at.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Matched {
    /// The findings, worst first.
    pub findings: Vec<Finding>,
    /// Packages that could not be matched, and why (a distribution berth
    /// has no advisories' ecosystem for).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// A package as advisories see it.
struct Target<'a> {
    pkg: &'a Package,
    key: LookupKey,
    /// A second name (an RPM's source package).
    alt: Option<String>,
    release: Option<String>,
    version: String,
    scheme: Scheme,
}

fn distro_family(
    distro: Option<&Distro>,
    eco: Ecosystem,
) -> Result<(&'static str, Option<String>), String> {
    let Some(d) = distro else {
        return Err(format!(
            "{} packages: the image has no os-release, so the distribution release is unknown",
            eco.as_str()
        ));
    };
    let v = d.version_id.as_deref();
    let major = v.map(|v| v.split('.').next().unwrap_or(v).to_owned());
    let family = match (eco, d.id.as_str()) {
        (Ecosystem::Deb, "debian") => ("Debian", major),
        (Ecosystem::Deb, "ubuntu") => ("Ubuntu", v.map(str::to_owned)),
        (Ecosystem::Apk, "alpine") => (
            "Alpine",
            v.map(|v| format!("v{}", v.split('.').take(2).collect::<Vec<_>>().join("."))),
        ),
        (Ecosystem::Apk, "wolfi") => ("Wolfi", None),
        (Ecosystem::Rpm, "rocky") => ("Rocky Linux", major),
        (Ecosystem::Rpm, "almalinux") => ("AlmaLinux", major),
        (_, id) => {
            return Err(format!(
                "{} packages of distribution {id:?}: no advisory ecosystem is known for it",
                eco.as_str()
            ))
        }
    };
    Ok(family)
}

fn target<'a>(pkg: &'a Package, distro: Option<&Distro>) -> Result<Option<Target<'a>>, String> {
    let (family, release) = match pkg.ecosystem {
        Ecosystem::Deb | Ecosystem::Apk | Ecosystem::Rpm => distro_family(distro, pkg.ecosystem)?,
        Ecosystem::Pypi => ("PyPI", None),
        Ecosystem::Npm => ("npm", None),
        Ecosystem::Golang => ("Go", None),
        Ecosystem::Cargo => ("crates.io", None),
        Ecosystem::Maven => ("Maven", None),
    };
    let Some(scheme) = Scheme::of_family(family) else {
        return Ok(None);
    };
    let full = match (&pkg.namespace, pkg.ecosystem) {
        (Some(ns), Ecosystem::Npm) => format!("{ns}/{}", pkg.name),
        (Some(ns), Ecosystem::Maven) => format!("{ns}:{}", pkg.name),
        _ => pkg.name.clone(),
    };
    let (name, alt, version) = match pkg.ecosystem {
        Ecosystem::Deb | Ecosystem::Apk => {
            let src = pkg.source.as_ref();
            (
                src.map_or(full, |s| s.name.clone()),
                None,
                src.and_then(|s| s.version.clone())
                    .unwrap_or_else(|| pkg.version.clone()),
            )
        }
        Ecosystem::Rpm => (
            full,
            pkg.source.as_ref().map(|s| s.name.clone()),
            pkg.version.clone(),
        ),
        _ => (full, None, pkg.version.clone()),
    };
    Ok(Some(Target {
        pkg,
        key: LookupKey {
            family: family.to_owned(),
            name: package_key(family, &name),
        },
        alt: alt.map(|a| package_key(family, &a)),
        release,
        version,
        scheme,
    }))
}

/// The keys under which the advisories of `inventory`'s packages are
/// filed, sorted and without repeats.
pub fn lookup_keys(inventory: &Inventory) -> Vec<LookupKey> {
    let mut keys = BTreeSet::new();
    for pkg in &inventory.packages {
        if let Ok(Some(t)) = target(pkg, inventory.distro.as_ref()) {
            if let Some(alt) = &t.alt {
                keys.insert(LookupKey {
                    family: t.key.family.clone(),
                    name: alt.clone(),
                });
            }
            keys.insert(t.key);
        }
    }
    keys.into_iter().collect()
}

/// Whether an entry's ecosystem release is the package's: `Debian:12` for
/// Debian 12, `Ubuntu:22.04:LTS` and `Ubuntu:Pro:22.04:LTS` for Ubuntu
/// 22.04, `Alpine:v3.19` for Alpine 3.19.x; an entry without a release
/// fits every release.
fn release_fits(ecosystem: &str, release: Option<&str>) -> bool {
    let mut parts = ecosystem.split(':');
    parts.next();
    let rest: Vec<&str> = parts.collect();
    if rest.is_empty() {
        return true;
    }
    match release {
        Some(r) => rest.contains(&r),
        None => false,
    }
}

fn bound(e: &Event) -> &str {
    match e {
        Event::Introduced(v) | Event::Fixed(v) | Event::LastAffected(v) | Event::Limit(v) => v,
    }
}

/// Whether `version` is in `range`; `None` if a version does not compare.
pub fn in_range(scheme: Scheme, range: &Range, version: &str) -> Option<bool> {
    let scheme = match (range.kind, scheme) {
        (RangeKind::Semver, Scheme::Go) => Scheme::Go,
        (RangeKind::Semver, _) => Scheme::Semver,
        (RangeKind::Ecosystem, s) => s,
    };
    scheme.compare(version, version)?;
    let is_zero = |e: &Event| matches!(e, Event::Introduced(v) if v == "0");
    let mut events: Vec<&Event> = Vec::with_capacity(range.events.len());
    for e in &range.events {
        if !is_zero(e) && !matches!(e, Event::Limit(v) if v == "*") {
            scheme.compare(bound(e), bound(e))?;
        }
        events.push(e);
    }
    events.sort_by(|a, b| match (is_zero(a), is_zero(b)) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        _ => scheme
            .compare(bound(a), bound(b))
            .unwrap_or(Ordering::Equal),
    });
    let mut affected = false;
    for e in &events {
        match e {
            Event::Introduced(v) => {
                if is_zero(e) || scheme.compare(version, v)? != Ordering::Less {
                    affected = true;
                }
            }
            Event::Fixed(v) => {
                if scheme.compare(version, v)? != Ordering::Less {
                    affected = false;
                }
            }
            Event::LastAffected(v) => {
                if scheme.compare(version, v)? == Ordering::Greater {
                    affected = false;
                }
            }
            Event::Limit(_) => {}
        }
    }
    let limits: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            Event::Limit(v) => Some(v.as_str()),
            _ => None,
        })
        .collect();
    if affected && !limits.is_empty() {
        let below = limits
            .iter()
            .any(|l| *l == "*" || scheme.compare(version, l) == Some(Ordering::Less));
        return Some(below);
    }
    Some(affected)
}

/// Whether `affected` names `version` (listed, or in a range), and the
/// fixed versions above it.
fn hits(scheme: Scheme, affected: &Affected, version: &str) -> Option<Vec<String>> {
    let listed = affected
        .versions
        .iter()
        .any(|v| v == version || scheme.compare(v, version) == Some(Ordering::Equal));
    let mut fixed = Vec::new();
    let mut in_any = false;
    for r in &affected.ranges {
        if in_range(scheme, r, version) == Some(true) {
            in_any = true;
            for e in &r.events {
                if let Event::Fixed(f) = e {
                    if scheme.compare(f, version) == Some(Ordering::Greater) {
                        fixed.push(f.clone());
                    }
                }
            }
        }
    }
    (listed || in_any).then_some(fixed)
}

/// One advisory's hit on one package, before aliases are merged.
struct Hit<'a> {
    advisory: &'a Advisory,
    affected: &'a Affected,
    fixed: Vec<String>,
}

/// Matches `advisories` (those filed under [`lookup_keys`] of the
/// inventory, or more) against the packages of `inventory`.
pub fn match_inventory(inventory: &Inventory, advisories: &[Advisory]) -> Matched {
    let mut index: HashMap<(&str, String), Vec<(&Advisory, &Affected)>> = HashMap::new();
    for a in advisories.iter().filter(|a| a.withdrawn.is_none()) {
        for aff in &a.affected {
            let family = aff.family();
            index
                .entry((family, package_key(family, &aff.name)))
                .or_default()
                .push((a, aff));
        }
    }
    let mut out = Matched::default();
    let mut notes = BTreeSet::new();
    for pkg in &inventory.packages {
        let t = match target(pkg, inventory.distro.as_ref()) {
            Ok(Some(t)) => t,
            Ok(None) => continue,
            Err(note) => {
                notes.insert(note);
                continue;
            }
        };
        let mut found = Vec::new();
        let names = std::iter::once(t.key.name.clone()).chain(t.alt.clone());
        let mut seen = BTreeSet::new();
        for name in names {
            let Some(candidates) = index.get(&(t.key.family.as_str(), name)) else {
                continue;
            };
            for (advisory, affected) in candidates {
                if !release_fits(&affected.ecosystem, t.release.as_deref()) {
                    continue;
                }
                if !seen.insert((advisory.id.as_str(), *affected as *const Affected)) {
                    continue;
                }
                if let Some(fixed) = hits(t.scheme, affected, &t.version) {
                    found.push(Hit {
                        advisory,
                        affected,
                        fixed,
                    });
                }
            }
        }
        out.findings.extend(merge(&t, found));
    }
    out.findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.package.cmp(&b.package))
            .then_with(|| a.version.cmp(&b.version))
            .then_with(|| a.id.cmp(&b.id))
            .then_with(|| a.path.cmp(&b.path))
    });
    out.notes = notes.into_iter().collect();
    out
}

/// One finding per vulnerability: hits whose ids or aliases meet are one.
fn merge(t: &Target<'_>, hits: Vec<Hit<'_>>) -> Vec<Finding> {
    // Union-find over the hits, joined by any shared id.
    let mut parent: Vec<usize> = (0..hits.len()).collect();
    fn root(p: &mut [usize], mut i: usize) -> usize {
        while p[i] != i {
            p[i] = p[p[i]];
            i = p[i];
        }
        i
    }
    let mut owner: HashMap<&str, usize> = HashMap::new();
    for (i, h) in hits.iter().enumerate() {
        for id in std::iter::once(&h.advisory.id).chain(&h.advisory.aliases) {
            match owner.get(id.as_str()) {
                Some(&j) => {
                    let (a, b) = (root(&mut parent, i), root(&mut parent, j));
                    parent[a] = b;
                }
                None => {
                    owner.insert(id, i);
                }
            }
        }
    }
    let mut groups: BTreeMap<usize, Vec<&Hit<'_>>> = BTreeMap::new();
    for (i, h) in hits.iter().enumerate() {
        groups.entry(root(&mut parent, i)).or_default().push(h);
    }
    groups
        .into_values()
        .map(|group| finding(t, &group))
        .collect()
}

fn finding(t: &Target<'_>, group: &[&Hit<'_>]) -> Finding {
    let mut ids = BTreeSet::new();
    let mut advisories = BTreeSet::new();
    let mut related = BTreeSet::new();
    let mut fixed = BTreeSet::new();
    let mut severity = Severity::Unknown;
    let mut cvss: Option<Cvss> = None;
    for h in group {
        let a = h.advisory;
        advisories.insert(a.id.clone());
        ids.insert(a.id.clone());
        ids.extend(a.aliases.iter().cloned());
        related.extend(a.related.iter().cloned());
        fixed.extend(h.fixed.iter().cloned());
        let best = severity::best_cvss(h.affected.severity.iter().chain(&a.severity));
        let rating = h
            .affected
            .rating
            .as_deref()
            .and_then(Severity::from_rating)
            .or_else(|| severity::rating_in(&h.affected.severity))
            .or_else(|| a.rating.as_deref().and_then(Severity::from_rating))
            .or_else(|| severity::rating_in(&a.severity));
        let level = rating
            .or_else(|| best.as_ref().map(|c| Severity::of_score(c.score)))
            .unwrap_or_default();
        severity = severity.max(level);
        if let Some(b) = best {
            if cvss.as_ref().is_none_or(|c| b.score > c.score) {
                cvss = Some(b);
            }
        }
    }
    let id = ids
        .iter()
        .find(|i| i.starts_with("CVE-"))
        .or_else(|| advisories.iter().next())
        .cloned()
        .unwrap_or_default();
    for i in &ids {
        related.remove(i);
    }
    let first = group.first().map(|h| h.advisory);
    Finding {
        aliases: ids.iter().filter(|i| **i != id).cloned().collect(),
        id,
        advisories: advisories.into_iter().collect(),
        related: related.into_iter().collect(),
        severity,
        cvss,
        summary: first.and_then(|a| a.summary.clone()),
        url: first.and_then(|a| a.url.clone()),
        fixed: fixed.into_iter().collect(),
        ecosystem: t.pkg.ecosystem,
        package: match (&t.pkg.namespace, t.pkg.ecosystem) {
            (Some(ns), Ecosystem::Npm) => format!("{ns}/{}", t.pkg.name),
            (Some(ns), Ecosystem::Maven) => format!("{ns}:{}", t.pkg.name),
            _ => t.pkg.name.clone(),
        },
        version: t.pkg.version.clone(),
        source: t.pkg.source.as_ref().map(|s| s.name.clone()),
        purl: t.pkg.purl.clone(),
        layer: t.pkg.layer.clone(),
        path: t.pkg.path.clone(),
    }
}

#[cfg(test)]
mod tests;
