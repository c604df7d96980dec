//! `berth vulndb` against a real `berth serve`: an OSV `all.zip` (made by
//! the test in the layout OSV publishes: one `ID.json` per record) and a
//! directory of records are imported through the management API; a second
//! import of the same data skips what did not change and counts what did
//! (changed, withdrawn); the status per ecosystem, the audit log and
//! `berth_vulndb_age_seconds` say what was loaded and when. Only site
//! admins import.
//!
//! `BERTH_VULNDB_RECORDS` sets the size of the Debian archive (default
//! 3,000); the import's time and rate are printed, so the same test
//! measures a large import (`BERTH_VULNDB_RECORDS=120000`).

use std::io::Write as _;
use std::path::Path;

use serde_json::{json, Value};

use crate::common::{Berth, ADMIN_PASSWORD};
use crate::tools::{berth, berth_ok};

fn debian_record(i: usize, modified: &str, withdrawn: bool) -> Value {
    let mut r = json!({
        "schema_version": "1.6.0",
        "id": format!("DSA-{i}-1"),
        "modified": modified,
        "published": "2024-01-01T00:00:00Z",
        "upstream": [format!("CVE-2024-{i}")],
        "summary": format!("pkg{} - security update", i % 997),
        "affected": [{
            "package": {"ecosystem": "Debian:12", "name": format!("pkg{}", i % 997),
                        "purl": format!("pkg:deb/debian/pkg{}?arch=source", i % 997)},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": format!("1.{i}-1+deb12u1")}]}],
            "versions": ["1.0-1", "1.0-2"],
            "ecosystem_specific": {"urgency": "medium"}
        }],
        "references": [{"type": "ADVISORY", "url": format!("https://www.debian.org/security/dsa-{i}")}]
    });
    if withdrawn {
        r["withdrawn"] = json!("2024-06-01T00:00:00Z");
    }
    r
}

fn write_zip(path: &Path, records: &[Value]) {
    let f = std::fs::File::create(path).unwrap();
    let mut z = zip::ZipWriter::new(f);
    let opts = zip::write::SimpleFileOptions::default();
    for r in records {
        z.start_file(format!("{}.json", r["id"].as_str().unwrap()), opts)
            .unwrap();
        z.write_all(&serde_json::to_vec(r).unwrap()).unwrap();
    }
    z.finish().unwrap();
}

fn admin(berth: &Berth) -> Vec<String> {
    [
        "--registry",
        berth.addr.as_str(),
        "--user",
        "admin",
        "--password",
        ADMIN_PASSWORD,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn run(dir: &Path, args: &[String], extra: &[&str]) -> String {
    let all: Vec<&str> = extra
        .iter()
        .copied()
        .chain(args.iter().map(String::as_str))
        .collect();
    berth_ok(dir, &all)
}

#[tokio::test(flavor = "multi_thread")]
async fn osv_archives_and_directories_import_incrementally() {
    let n: usize = std::env::var("BERTH_VULNDB_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3_000);
    let b = Berth::start_auth(&[], None);
    let dir = tempfile::tempdir().unwrap();
    let creds = admin(&b);

    let records: Vec<Value> = (0..n)
        .map(|i| debian_record(i, "2024-02-01T00:00:00Z", false))
        .collect();
    let zip_path = dir.path().join("Debian-all.zip");
    write_zip(&zip_path, &records);
    let pypi = dir.path().join("pypi");
    std::fs::create_dir_all(pypi.join("requests")).unwrap();
    std::fs::write(
        pypi.join("requests/GHSA-9wx4-h78v-vm56.json"),
        json!({"id": "GHSA-9wx4-h78v-vm56", "modified": "2024-06-10T00:00:00Z",
               "aliases": ["CVE-2024-35195"],
               "database_specific": {"severity": "MODERATE"},
               "affected": [{"package": {"ecosystem": "PyPI", "name": "requests"},
                             "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.32.0"}]}]}]})
        .to_string(),
    )
    .unwrap();
    std::fs::write(pypi.join("broken.json"), "{ not json").unwrap();
    std::fs::write(
        pypi.join("bad-time.json"),
        r#"{"id": "PYSEC-0", "modified": "last tuesday"}"#,
    )
    .unwrap();

    // Only site admins import.
    let refused = berth(
        dir.path(),
        &[
            "vulndb",
            "import",
            zip_path.to_str().unwrap(),
            "--registry",
            b.addr.as_str(),
        ],
    );
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("401") || stderr.contains("authentication"),
        "{stderr}"
    );

    let started = std::time::Instant::now();
    let out = run(
        dir.path(),
        &creds,
        &[
            "vulndb",
            "import",
            zip_path.to_str().unwrap(),
            pypi.to_str().unwrap(),
            "-o",
            "json",
        ],
    );
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "imported {n} OSV records in {secs:.1} s ({:.0} records/s)",
        n as f64 / secs
    );
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report[0]["new"], n as u64, "{report}");
    assert_eq!(report[0]["invalid"], 0);
    assert_eq!(report[1]["new"], 1, "{report}");
    assert_eq!(report[1]["invalid"], 2, "{report}");
    let refused: Vec<&str> = report[1]["invalid_records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert!(refused.contains(&"PYSEC-0"), "{refused:?}");
    assert!(
        refused.iter().any(|r| r.ends_with("broken.json")),
        "{refused:?}"
    );

    // Again: one record changed, one withdrawn, the rest unchanged.
    let mut again = records.clone();
    again[0] = debian_record(0, "2024-03-01T00:00:00Z", false);
    again[1] = debian_record(1, "2024-06-01T00:00:00Z", true);
    write_zip(&zip_path, &again);
    let out = run(
        dir.path(),
        &creds,
        &["vulndb", "import", zip_path.to_str().unwrap()],
    );
    assert!(
        out.contains(&format!(
            "0 new, 2 changed, {} unchanged, 1 withdrawn, 0 invalid",
            n - 2
        )),
        "{out}"
    );

    let status: Value = serde_json::from_str(&run(
        dir.path(),
        &creds,
        &["vulndb", "status", "-o", "json"],
    ))
    .unwrap();
    let eco = |name: &str| {
        status["ecosystems"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["ecosystem"] == name)
            .unwrap_or_else(|| panic!("no {name} in {status}"))
            .clone()
    };
    let debian = eco("Debian");
    assert_eq!(
        debian["records"],
        (n - 1) as u64,
        "the withdrawn record is not counted"
    );
    assert_eq!(debian["last_import_source"], zip_path.to_str().unwrap());
    assert_eq!(
        debian["newest_modified_at"], 1_709_251_200_000i64,
        "2024-03-01: the withdrawn record's 2024-06-01 does not count"
    );
    assert!(debian["age_seconds"].as_i64().unwrap() < 600);
    assert_eq!(eco("PyPI")["records"], 1);
    let imports = status["imports"].as_array().unwrap();
    assert_eq!(imports.len(), 3, "{status}");
    assert_eq!(imports[0]["actor"], "admin");
    assert_eq!(imports[0]["changed"], 2);

    let table = run(dir.path(), &creds, &["vulndb", "status"]);
    assert!(
        table.contains("ECOSYSTEM") && table.contains("Debian"),
        "{table}"
    );

    let c = reqwest::Client::new();
    let events: Value = c
        .get(format!("{}/api/v1/audit?action=vulndb.import", b.url()))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(events["events"].as_array().unwrap().len(), 3, "{events}");
    let metrics = c
        .get(format!("{}/metrics", b.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("berth_vulndb_age_seconds{ecosystem=\"Debian\"}"),
        "{metrics}"
    );
}
