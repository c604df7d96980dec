//! OSV records (the Open Source Vulnerability schema, JSON) and where they
//! come from: the per-ecosystem `all.zip` files OSV publishes, a directory
//! of `*.json` records, or one record file.
//!
//! Reading keeps what matching and reports use ([`Advisory`]) and checks
//! what they rely on: an `id`, a `modified` time, events that are strings.
//! `GIT` ranges and entries without a package are dropped: an image holds
//! packages, not commits.

use std::io::{Read, Seek};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use super::{Advisory, Affected, Event, Range, RangeKind, Score};

/// Why a record was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("OSV record {id}: {message}")]
pub struct RecordError {
    /// The record's id, or `?` if it has none.
    pub id: String,
    /// What is wrong.
    pub message: String,
}

#[derive(Deserialize)]
struct RawRecord {
    id: String,
    modified: String,
    #[serde(default)]
    published: Option<String>,
    #[serde(default)]
    withdrawn: Option<String>,
    #[serde(default)]
    aliases: Option<Vec<String>>,
    #[serde(default)]
    related: Option<Vec<String>>,
    #[serde(default)]
    upstream: Option<Vec<String>>,
    #[serde(default)]
    summary: Option<String>,
    #[serde(default)]
    details: Option<String>,
    #[serde(default)]
    severity: Option<Vec<Score>>,
    #[serde(default)]
    affected: Option<Vec<RawAffected>>,
    #[serde(default)]
    references: Option<Vec<RawReference>>,
    #[serde(default)]
    database_specific: Option<Value>,
}

#[derive(Deserialize)]
struct RawAffected {
    #[serde(default)]
    package: Option<RawPackage>,
    #[serde(default)]
    ranges: Option<Vec<RawRange>>,
    #[serde(default)]
    versions: Option<Vec<String>>,
    #[serde(default)]
    severity: Option<Vec<Score>>,
    #[serde(default)]
    ecosystem_specific: Option<Value>,
    #[serde(default)]
    database_specific: Option<Value>,
}

#[derive(Deserialize)]
struct RawPackage {
    #[serde(default)]
    ecosystem: String,
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
struct RawRange {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    events: Vec<serde_json::Map<String, Value>>,
}

#[derive(Deserialize)]
struct RawReference {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    url: String,
}

/// A rating string (`severity`, `urgency`) in an ecosystem- or
/// database-specific object.
fn rating_in(v: Option<&Value>) -> Option<String> {
    let v = v?;
    ["severity", "urgency"]
        .iter()
        .find_map(|k| v.get(k).and_then(Value::as_str))
        .map(str::to_owned)
}

/// Reads one OSV record.
pub fn parse(bytes: &[u8]) -> Result<Advisory, RecordError> {
    let raw: RawRecord = serde_json::from_slice(bytes).map_err(|e| RecordError {
        id: id_of(bytes),
        message: format!("not an OSV record: {e}"),
    })?;
    from_raw(raw)
}

/// Reads one OSV record from a JSON value.
pub fn from_value(value: Value) -> Result<Advisory, RecordError> {
    let id = value
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_owned();
    let raw: RawRecord = serde_json::from_value(value).map_err(|e| RecordError {
        id,
        message: format!("not an OSV record: {e}"),
    })?;
    from_raw(raw)
}

fn id_of(bytes: &[u8]) -> String {
    serde_json::from_slice::<Value>(bytes)
        .ok()
        .and_then(|v| v.get("id").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

fn from_raw(raw: RawRecord) -> Result<Advisory, RecordError> {
    let err = |message: String| RecordError {
        id: raw.id.clone(),
        message,
    };
    if raw.id.trim().is_empty() {
        return Err(err("has an empty id".into()));
    }
    if berth_oci::time::Timestamp::parse(&raw.modified).is_err() {
        return Err(err(format!(
            "modified {:?} is not an RFC 3339 time",
            raw.modified
        )));
    }
    let mut affected = Vec::new();
    for a in raw.affected.unwrap_or_default() {
        let Some(pkg) = a
            .package
            .filter(|p| !p.ecosystem.is_empty() && !p.name.is_empty())
        else {
            continue;
        };
        let mut ranges = Vec::new();
        for r in a.ranges.unwrap_or_default() {
            let kind = match r.kind.as_str() {
                "ECOSYSTEM" => RangeKind::Ecosystem,
                "SEMVER" => RangeKind::Semver,
                _ => continue,
            };
            let mut events = Vec::new();
            for e in r.events {
                for (k, v) in e {
                    let Some(v) = v.as_str().map(str::to_owned) else {
                        return Err(err(format!("range event {k} is not a string")));
                    };
                    events.push(match k.as_str() {
                        "introduced" => Event::Introduced(v),
                        "fixed" => Event::Fixed(v),
                        "last_affected" => Event::LastAffected(v),
                        "limit" => Event::Limit(v),
                        _ => continue,
                    });
                }
            }
            ranges.push(Range { kind, events });
        }
        affected.push(Affected {
            ecosystem: pkg.ecosystem,
            name: pkg.name,
            ranges,
            versions: a.versions.unwrap_or_default(),
            severity: a.severity.unwrap_or_default(),
            rating: rating_in(a.ecosystem_specific.as_ref())
                .or_else(|| rating_in(a.database_specific.as_ref())),
        });
    }
    let refs = raw.references.unwrap_or_default();
    let url = ["ADVISORY", "WEB"]
        .iter()
        .find_map(|k| refs.iter().find(|r| r.kind == *k && !r.url.is_empty()))
        .or_else(|| refs.first())
        .map(|r| r.url.clone());
    let mut related = raw.related.unwrap_or_default();
    related.extend(raw.upstream.unwrap_or_default());
    related.sort();
    related.dedup();
    let summary = raw.summary.filter(|s| !s.trim().is_empty()).or_else(|| {
        raw.details
            .as_deref()
            .and_then(|d| d.lines().find(|l| !l.trim().is_empty()))
            .map(|l| l.trim().chars().take(200).collect())
    });
    Ok(Advisory {
        id: raw.id.trim().to_owned(),
        modified: raw.modified,
        published: raw.published,
        withdrawn: raw.withdrawn.filter(|w| !w.is_empty()),
        aliases: raw.aliases.unwrap_or_default(),
        related,
        summary,
        severity: raw.severity.unwrap_or_default(),
        rating: rating_in(raw.database_specific.as_ref()),
        url,
        affected,
    })
}

/// An advisory as an OSV record that [`parse`] reads back as the same
/// advisory: what berth keeps of a record (ids, times, aliases, related
/// ids, summary, severity, ratings, one reference, the affected packages),
/// for packing a loaded database into an artifact.
pub fn to_value(a: &Advisory) -> Value {
    use serde_json::json;
    let mut r = json!({"schema_version": "1.6.0", "id": a.id, "modified": a.modified});
    let mut put = |k: &str, v: Value| {
        r[k] = v;
    };
    if let Some(p) = &a.published {
        put("published", json!(p));
    }
    if let Some(w) = &a.withdrawn {
        put("withdrawn", json!(w));
    }
    if !a.aliases.is_empty() {
        put("aliases", json!(a.aliases));
    }
    if !a.related.is_empty() {
        put("related", json!(a.related));
    }
    if let Some(s) = &a.summary {
        put("summary", json!(s));
    }
    if !a.severity.is_empty() {
        put("severity", json!(a.severity));
    }
    if let Some(rating) = &a.rating {
        put("database_specific", json!({ "severity": rating }));
    }
    if let Some(url) = &a.url {
        put("references", json!([{ "type": "ADVISORY", "url": url }]));
    }
    let affected: Vec<Value> = a
        .affected
        .iter()
        .map(|f| {
            let mut e = json!({"package": {"ecosystem": f.ecosystem, "name": f.name}});
            if !f.ranges.is_empty() {
                e["ranges"] = f
                    .ranges
                    .iter()
                    .map(|range| {
                        let kind = match range.kind {
                            RangeKind::Ecosystem => "ECOSYSTEM",
                            RangeKind::Semver => "SEMVER",
                        };
                        let events: Vec<Value> = range
                            .events
                            .iter()
                            .map(|ev| match ev {
                                Event::Introduced(v) => json!({ "introduced": v }),
                                Event::Fixed(v) => json!({ "fixed": v }),
                                Event::LastAffected(v) => json!({ "last_affected": v }),
                                Event::Limit(v) => json!({ "limit": v }),
                            })
                            .collect();
                        json!({"type": kind, "events": events})
                    })
                    .collect();
            }
            if !f.versions.is_empty() {
                e["versions"] = json!(f.versions);
            }
            if !f.severity.is_empty() {
                e["severity"] = json!(f.severity);
            }
            if let Some(rating) = &f.rating {
                e["ecosystem_specific"] = json!({ "severity": rating });
            }
            e
        })
        .collect();
    r["affected"] = Value::Array(affected);
    r
}

/// Where records come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A zip of `*.json` records (OSV's per-ecosystem `all.zip`).
    Zip(PathBuf),
    /// A directory, searched recursively for `*.json` records.
    Directory(PathBuf),
    /// One record file.
    File(PathBuf),
}

impl Source {
    /// What `path` is: a directory, a zip (by its first bytes), or a file.
    pub fn of(path: &Path) -> std::io::Result<Source> {
        let meta = std::fs::metadata(path)?;
        if meta.is_dir() {
            return Ok(Source::Directory(path.to_owned()));
        }
        let mut magic = [0u8; 4];
        let mut f = std::fs::File::open(path)?;
        let n = f.read(&mut magic)?;
        Ok(if n == 4 && magic == *b"PK\x03\x04" {
            Source::Zip(path.to_owned())
        } else {
            Source::File(path.to_owned())
        })
    }

    /// Calls `each` with the name and bytes of every record file, in a
    /// stable order (zip order; sorted paths in a directory). Stops at the
    /// first error `each` returns.
    pub fn for_each<E: From<std::io::Error>>(
        &self,
        mut each: impl FnMut(&str, Vec<u8>) -> Result<(), E>,
    ) -> Result<(), E> {
        match self {
            Source::File(p) => each(&p.display().to_string(), std::fs::read(p)?),
            Source::Directory(dir) => {
                let mut files = Vec::new();
                walk(dir, &mut files)?;
                files.sort();
                for f in files {
                    let bytes = std::fs::read(&f)?;
                    each(&f.display().to_string(), bytes)?;
                }
                Ok(())
            }
            Source::Zip(p) => for_each_in_zip(std::fs::File::open(p)?, &mut each),
        }
    }
}

/// What a set of OSV records holds, as the annotations of a vulnerability
/// database artifact say it: how many records, their ecosystem families,
/// and the newest `modified` time among them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Record files seen.
    pub records: u64,
    /// Ecosystem families of the affected packages (`Debian`, `PyPI`).
    pub ecosystems: std::collections::BTreeSet<String>,
    /// The newest `modified` (RFC 3339) among the records that have one.
    pub newest_modified: Option<String>,
    newest_at: i64,
}

#[derive(Deserialize)]
struct Glance {
    #[serde(default)]
    modified: Option<String>,
    #[serde(default)]
    affected: Option<Vec<GlanceAffected>>,
}

#[derive(Deserialize)]
struct GlanceAffected {
    #[serde(default)]
    package: Option<RawPackage>,
}

impl Summary {
    /// Counts one record file (one that is not an OSV record still counts:
    /// the import reports it as invalid).
    pub fn add(&mut self, bytes: &[u8]) {
        self.records += 1;
        let Ok(g) = serde_json::from_slice::<Glance>(bytes) else {
            return;
        };
        for a in g.affected.unwrap_or_default() {
            if let Some(p) = a.package.filter(|p| !p.ecosystem.is_empty()) {
                let fam = super::family(&p.ecosystem);
                if !self.ecosystems.contains(fam) {
                    self.ecosystems.insert(fam.to_owned());
                }
            }
        }
        if let Some(m) = g.modified {
            if let Ok(t) = berth_oci::time::Timestamp::parse(&m) {
                if self.newest_modified.is_none() || t.0 > self.newest_at {
                    self.newest_at = t.0;
                    self.newest_modified = Some(m);
                }
            }
        }
    }

    /// Adds what `other` holds.
    pub fn merge(&mut self, other: &Summary) {
        self.records += other.records;
        self.ecosystems.extend(other.ecosystems.iter().cloned());
        if other.newest_modified.is_some()
            && (self.newest_modified.is_none() || other.newest_at > self.newest_at)
        {
            self.newest_at = other.newest_at;
            self.newest_modified.clone_from(&other.newest_modified);
        }
    }
}

impl Source {
    /// Summarises the records.
    pub fn summary(&self) -> std::io::Result<Summary> {
        let mut s = Summary::default();
        self.for_each(|_, bytes| -> std::io::Result<()> {
            s.add(&bytes);
            Ok(())
        })?;
        Ok(s)
    }

    /// Writes the records to `out` as a zip in the layout OSV publishes
    /// (`all.zip`: one `*.json` per record; the names are the paths below a
    /// directory, or the file's name), and summarises them.
    pub fn write_zip<W: std::io::Write + Seek>(&self, out: W) -> std::io::Result<Summary> {
        let mut zip = zip::ZipWriter::new(out);
        // A fixed time: the same records give the same bytes.
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .last_modified_time(zip::DateTime::default());
        let mut summary = Summary::default();
        let base = match self {
            Source::Directory(d) => Some(d.clone()),
            _ => None,
        };
        self.for_each(|name, bytes| -> std::io::Result<()> {
            let path = Path::new(name);
            let entry = match &base {
                Some(b) => path
                    .strip_prefix(b)
                    .unwrap_or(path)
                    .to_string_lossy()
                    .into_owned(),
                None => path
                    .file_name()
                    .map_or_else(|| name.to_owned(), |f| f.to_string_lossy().into_owned()),
            };
            zip.start_file(entry.replace('\\', "/"), opts)
                .map_err(std::io::Error::other)?;
            std::io::Write::write_all(&mut zip, &bytes)?;
            summary.add(&bytes);
            Ok(())
        })?;
        zip.finish().map_err(std::io::Error::other)?;
        Ok(summary)
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk(&path, out)?;
        } else if kind.is_file() && path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
    Ok(())
}

fn for_each_in_zip<R: Read + Seek, E: From<std::io::Error>>(
    reader: R,
    each: &mut impl FnMut(&str, Vec<u8>) -> Result<(), E>,
) -> Result<(), E> {
    let mut zip = zip::ZipArchive::new(reader).map_err(std::io::Error::other)?;
    for i in 0..zip.len() {
        let mut file = zip.by_index(i).map_err(std::io::Error::other)?;
        if !file.is_file() || !file.name().ends_with(".json") {
            continue;
        }
        let name = file.name().to_owned();
        let mut bytes = Vec::with_capacity(usize::try_from(file.size()).unwrap_or(0).min(1 << 24));
        file.read_to_end(&mut bytes)?;
        each(&name, bytes)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const DSA: &str = r#"{
      "id": "DSA-5678-1", "modified": "2024-05-01T10:00:00.123Z",
      "published": "2024-04-30T00:00:00Z",
      "upstream": ["CVE-2024-1111", "CVE-2024-2222"],
      "summary": "glibc - security update",
      "affected": [{
        "package": {"ecosystem": "Debian:12", "name": "glibc"},
        "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.36-9+deb12u7"}]},
                   {"type": "GIT", "repo": "x", "events": [{"introduced": "abc"}]}],
        "ecosystem_specific": {"urgency": "high"}
      }, {"ranges": [{"type": "GIT", "events": [{"introduced": "0"}]}]}],
      "references": [{"type": "WEB", "url": "https://example.org/w"}, {"type": "ADVISORY", "url": "https://example.org/a"}]
    }"#;

    #[test]
    fn a_debian_record() {
        let a = parse(DSA.as_bytes()).unwrap();
        assert_eq!(a.id, "DSA-5678-1");
        assert_eq!(a.related, ["CVE-2024-1111", "CVE-2024-2222"]);
        assert_eq!(a.url.as_deref(), Some("https://example.org/a"));
        assert_eq!(
            a.affected.len(),
            1,
            "the entry without a package is dropped"
        );
        let aff = &a.affected[0];
        assert_eq!(aff.family(), "Debian");
        assert_eq!(aff.ranges.len(), 1, "GIT ranges are dropped");
        assert_eq!(
            aff.ranges[0].events,
            [
                Event::Introduced("0".into()),
                Event::Fixed("2.36-9+deb12u7".into())
            ]
        );
        assert_eq!(aff.rating.as_deref(), Some("high"));
        // What is stored reads back the same.
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<Advisory>(&json).unwrap(), a);
    }

    #[test]
    fn refusals_name_the_record() {
        let e = parse(br#"{"id": "X-1", "modified": "yesterday"}"#).unwrap_err();
        assert_eq!(e.id, "X-1");
        assert!(e.message.contains("RFC 3339"), "{e}");
        let e = parse(br#"{"modified": "2024-01-01T00:00:00Z"}"#).unwrap_err();
        assert_eq!(e.id, "?");
        let e = parse(br#"{"id":"Y","modified":"2024-01-01T00:00:00Z","affected":[{"package":{"ecosystem":"npm","name":"a"},"ranges":[{"type":"SEMVER","events":[{"introduced":0}]}]}]}"#).unwrap_err();
        assert!(e.message.contains("not a string"), "{e}");
    }

    #[test]
    fn records_of_a_zip_and_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let zip_path = dir.path().join("all.zip");
        {
            let f = std::fs::File::create(&zip_path).unwrap();
            let mut w = zip::ZipWriter::new(f);
            let opts = zip::write::SimpleFileOptions::default();
            w.start_file("DSA-5678-1.json", opts).unwrap();
            std::io::Write::write_all(&mut w, DSA.as_bytes()).unwrap();
            w.start_file("README.txt", opts).unwrap();
            w.finish().unwrap();
        }
        let recs = dir.path().join("recs/sub");
        std::fs::create_dir_all(&recs).unwrap();
        std::fs::write(recs.join("a.json"), DSA).unwrap();
        std::fs::write(recs.join("b.txt"), "x").unwrap();
        for (path, want) in [(zip_path, "zip"), (dir.path().join("recs"), "dir")] {
            let source = Source::of(&path).unwrap();
            assert!(
                matches!(
                    (&source, want),
                    (Source::Zip(_), "zip") | (Source::Directory(_), "dir")
                ),
                "{source:?}"
            );
            let mut seen = Vec::new();
            source
                .for_each(|name, bytes| -> std::io::Result<()> {
                    seen.push((name.to_owned(), parse(&bytes).unwrap().id));
                    Ok(())
                })
                .unwrap();
            assert_eq!(seen.len(), 1, "{seen:?}");
            assert_eq!(seen[0].1, "DSA-5678-1");
        }
    }

    #[test]
    fn advisories_written_back_as_osv_read_the_same() {
        let a = parse(DSA.as_bytes()).unwrap();
        assert_eq!(from_value(to_value(&a)).unwrap(), a);
        let b = parse(
            br#"{"id":"GHSA-2","modified":"2024-05-01T10:00:00Z","withdrawn":"2024-05-02T00:00:00Z",
                 "aliases":["CVE-1"],"related":["X-1"],"summary":"s",
                 "severity":[{"type":"CVSS_V3","score":"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
                 "database_specific":{"severity":"HIGH"},
                 "references":[{"type":"WEB","url":"https://example.org/w"}],
                 "affected":[{"package":{"ecosystem":"npm","name":"a"},
                   "ranges":[{"type":"SEMVER","events":[{"introduced":"1.0.0"},{"last_affected":"1.2.0"},{"limit":"2.0.0"}]}],
                   "versions":["1.0.0"],"severity":[{"type":"Ubuntu","score":"low"}]}]}"#,
        )
        .unwrap();
        assert_eq!(from_value(to_value(&b)).unwrap(), b);
    }

    #[test]
    fn summaries_and_zips_of_records() {
        let dir = tempfile::tempdir().unwrap();
        let recs = dir.path().join("recs");
        std::fs::create_dir_all(recs.join("pypi")).unwrap();
        std::fs::write(recs.join("dsa.json"), DSA).unwrap();
        std::fs::write(
            recs.join("pypi/GHSA-1.json"),
            r#"{"id":"GHSA-1","modified":"2024-06-10T00:00:00Z","affected":[{"package":{"ecosystem":"PyPI","name":"a"}}]}"#,
        )
        .unwrap();
        std::fs::write(recs.join("broken.json"), "{ not").unwrap();
        let source = Source::of(&recs).unwrap();
        let s = source.summary().unwrap();
        assert_eq!(s.records, 3);
        assert_eq!(
            s.ecosystems.iter().map(String::as_str).collect::<Vec<_>>(),
            ["Debian", "PyPI"]
        );
        assert_eq!(s.newest_modified.as_deref(), Some("2024-06-10T00:00:00Z"));
        let zip_path = dir.path().join("out.zip");
        let written = source
            .write_zip(std::fs::File::create(&zip_path).unwrap())
            .unwrap();
        assert_eq!(written, s);
        let twice = dir.path().join("twice.zip");
        source
            .write_zip(std::fs::File::create(&twice).unwrap())
            .unwrap();
        assert_eq!(
            std::fs::read(&twice).unwrap(),
            std::fs::read(&zip_path).unwrap(),
            "the same records, the same bytes"
        );
        let again = Source::of(&zip_path).unwrap();
        assert!(matches!(again, Source::Zip(_)));
        assert_eq!(again.summary().unwrap(), s);
        let mut names = Vec::new();
        again
            .for_each(|n, _| -> std::io::Result<()> {
                names.push(n.to_owned());
                Ok(())
            })
            .unwrap();
        assert_eq!(names, ["broken.json", "dsa.json", "pypi/GHSA-1.json"]);
        let mut merged = Summary::default();
        merged.merge(&s);
        merged.merge(&Summary::default());
        assert_eq!(merged, s);
    }
}
