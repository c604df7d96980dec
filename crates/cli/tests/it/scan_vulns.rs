//! `berth scan` against a real `berth serve`: a two-platform image built
//! from real package databases (this machine's Debian dpkg status and
//! os-release with a Python distribution; an Alpine installed database in
//! apk's documented format) is pushed, OSV records written by the test for
//! packages really in it are imported (`Debian:12` advisories keyed by the
//! source package, a `Debian:11` one that must not hit, one fixed at the
//! installed version, a withdrawn one, an `Alpine:v3.20` one, a PyPI one
//! and its alias), and the findings are checked in JSON, as a table, as
//! SARIF validated by Microsoft's SARIF multitool, against `--fail-on`, and
//! as stored with the manifest.
//!
//! `scan_trivy` compares findings like these with Trivy's on the same
//! advisories.

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::{json, Value};

use crate::common::{self, Berth};
use crate::layout;
use crate::scan::{apk_database, debian_layer, image, write, Compression};
use crate::tools::{berth, berth_ok};

/// A package of this machine's dpkg status: (name, version, source name).
pub(crate) fn installed() -> Vec<(String, String, String)> {
    let status = std::fs::read_to_string("/var/lib/dpkg/status").unwrap();
    let mut out = Vec::new();
    for para in status.split("\n\n") {
        let field = |k: &str| {
            para.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}: ")))
                .map(str::to_owned)
        };
        let (Some(name), Some(version), Some(st)) =
            (field("Package"), field("Version"), field("Status"))
        else {
            continue;
        };
        if !st.ends_with(" installed") {
            continue;
        }
        let source = field("Source")
            .map(|s| s.split(' ').next().unwrap_or(&s).to_owned())
            .unwrap_or_else(|| name.clone());
        let source_version = field("Source")
            .and_then(|s| {
                s.split_once('(')
                    .map(|(_, v)| v.trim_end_matches(')').trim().to_owned())
            })
            .unwrap_or_else(|| version.clone());
        out.push((name, source_version, source));
    }
    out
}

pub(crate) fn record(id: &str, eco: &str, name: &str, events: Value, extra: Value) -> Value {
    let mut r = json!({
        "id": id,
        "modified": "2024-07-01T00:00:00Z",
        "affected": [{"package": {"ecosystem": eco, "name": name},
                      "ranges": [{"type": "ECOSYSTEM", "events": events}]}]
    });
    if let (Some(r), Some(e)) = (r.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            r.insert(k.clone(), v.clone());
        }
    }
    r
}

#[test]
fn findings_for_real_package_databases() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let pkgs = installed();
    // glibc is in every Debian; its binaries carry `Source: glibc`.
    let (libc_name, libc_version, _) = pkgs
        .iter()
        .find(|(n, _, s)| n == "libc6" && s == "glibc")
        .expect("libc6 from glibc in /var/lib/dpkg/status")
        .clone();
    let glibc_binaries: Vec<&String> = pkgs
        .iter()
        .filter(|(_, v, s)| s == "glibc" && *v == libc_version)
        .map(|(n, _, _)| n)
        .collect();
    // A package that is its own source and the only binary of it.
    let (own, own_version, _) = pkgs
        .iter()
        .find(|(n, _, s)| n == s && n != "glibc" && pkgs.iter().filter(|p| p.2 == *s).count() == 1)
        .unwrap()
        .clone();

    // linux/amd64: this machine's Debian, and a Python distribution.
    let deb = t.join("deb");
    debian_layer(&deb);
    write(
        &deb.join("usr/lib/python3/dist-packages/Requests-2.31.0.dist-info/METADATA"),
        b"Metadata-Version: 2.1\nName: Requests\nVersion: 2.31.0\n",
    );
    // linux/arm64: Alpine 3.20 (openssl 3.3.2-r0 as libcrypto3 and libssl3).
    let alpine = t.join("alpine");
    apk_database(&alpine);
    let layout_dir = t.join("layout");
    let amd64 = image(&layout_dir, "linux/amd64", &[(&deb, Compression::Gzip)]);
    let arm64 = image(&layout_dir, "linux/arm64", &[(&alpine, Compression::Zstd)]);
    let manifests: Vec<Value> = [(&amd64, "linux/amd64"), (&arm64, "linux/arm64")]
        .iter()
        .map(|(d, p)| {
            let mut v = d.to_json();
            v["platform"] = layout::platform_json(p);
            v
        })
        .collect();
    let index = json!({"schemaVersion": 2, "mediaType": layout::INDEX, "manifests": manifests});
    let index = layout::write_blob(
        &layout_dir,
        layout::INDEX,
        &serde_json::to_vec(&index).unwrap(),
    );
    layout::add_ref(&layout_dir, &index, "v1", None);

    // The advisories.
    let osv = t.join("osv");
    std::fs::create_dir_all(&osv).unwrap();
    let fixed_later = format!("{libc_version}+fix1");
    let records = [
        record(
            "DSA-9001-1",
            "Debian:12",
            "glibc",
            json!([{"introduced": "0"}, {"fixed": fixed_later}]),
            json!({"aliases": ["CVE-2099-0001"], "summary": "glibc - buffer overflow",
                   "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}]}),
        ),
        record(
            "DLA-9001-1",
            "Debian:12",
            "glibc",
            json!([{"introduced": "0"}, {"fixed": fixed_later}]),
            json!({"aliases": ["CVE-2099-0001"]}),
        ),
        // Another release of Debian: not this image.
        record(
            "DSA-9002-1",
            "Debian:11",
            "glibc",
            json!([{"introduced": "0"}, {"fixed": fixed_later}]),
            json!({}),
        ),
        // Fixed at the installed version.
        record(
            "DSA-9003-1",
            "Debian:12",
            "glibc",
            json!([{"introduced": "0"}, {"fixed": libc_version}]),
            json!({}),
        ),
        // Keyed by a binary package name: Debian advisories name sources.
        record(
            "DSA-9004-1",
            "Debian:12",
            &libc_name,
            json!([{"introduced": "0"}]),
            json!({}),
        ),
        record(
            "DLA-9005-1",
            "Debian:12",
            &own,
            json!([{"introduced": "0"}, {"last_affected": own_version}]),
            json!({"affected": [{"package": {"ecosystem": "Debian:12", "name": own},
                     "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"last_affected": own_version}]}],
                     "ecosystem_specific": {"urgency": "low"}}]}),
        ),
        record(
            "DLA-9006-1",
            "Debian:12",
            &own,
            json!([{"introduced": "0"}]),
            json!({"withdrawn": "2024-07-02T00:00:00Z"}),
        ),
        record(
            "ALPINE-CVE-2099-0002",
            "Alpine:v3.20",
            "openssl",
            json!([{"introduced": "0"}, {"fixed": "3.3.2-r1"}]),
            json!({"aliases": ["CVE-2099-0002"], "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:N/I:H/A:H"}]}),
        ),
        record(
            "ALPINE-CVE-2099-0003",
            "Alpine:v3.19",
            "openssl",
            json!([{"introduced": "0"}, {"fixed": "3.3.2-r9"}]),
            json!({}),
        ),
        record(
            "GHSA-9wx4-h78v-vm56",
            "PyPI",
            "requests",
            json!([{"introduced": "0"}, {"fixed": "2.32.0"}]),
            json!({"aliases": ["CVE-2024-35195"], "database_specific": {"severity": "MODERATE"}}),
        ),
    ];
    for r in &records {
        std::fs::write(
            osv.join(format!("{}.json", r["id"].as_str().unwrap())),
            r.to_string(),
        )
        .unwrap();
    }

    let b = Berth::start();
    let image_ref = format!("{}/scan/vulns:v1", b.addr);
    berth_ok(
        t,
        &[
            "copy",
            "-q",
            &format!("oci:{}:v1", layout_dir.display()),
            &image_ref,
        ],
    );

    // Before any data: the scan runs and says so.
    let out = berth(t, &["scan", &image_ref, "-o", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no vulnerability data"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    berth_ok(
        t,
        &[
            "vulndb",
            "import",
            osv.to_str().unwrap(),
            "--registry",
            b.addr.as_str(),
        ],
    );
    let report: Value =
        serde_json::from_str(&berth_ok(t, &["scan", &image_ref, "-o", "json"])).unwrap();
    let images = report["images"].as_array().unwrap();
    assert_eq!(images.len(), 2, "{report}");
    let by_platform: BTreeMap<&str, &Value> = images
        .iter()
        .map(|i| (i["platform"].as_str().unwrap(), i))
        .collect();
    let amd = by_platform["linux/amd64"];
    assert_eq!(amd["distro"], "debian 12");
    assert!(
        amd["packages"].as_u64().unwrap() > 100,
        "{}",
        amd["packages"]
    );
    let found: BTreeMap<(String, String), &Value> = amd["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                (
                    f["package"].as_str().unwrap().to_owned(),
                    f["id"].as_str().unwrap().to_owned(),
                ),
                f,
            )
        })
        .collect();
    let keys: Vec<&(String, String)> = found.keys().collect();
    // Every binary of glibc has the merged CVE, once.
    for bin in &glibc_binaries {
        let f = found
            .get(&(bin.to_string(), "CVE-2099-0001".to_owned()))
            .unwrap_or_else(|| panic!("{bin}: {keys:?}"));
        assert_eq!(f["aliases"], json!(["DLA-9001-1", "DSA-9001-1"]));
        assert_eq!(f["severity"], "critical");
        assert_eq!(f["source"], "glibc");
        assert_eq!(f["fixed"], json!([fixed_later]));
    }
    let own_finding = found
        .get(&(own.clone(), "DLA-9005-1".to_owned()))
        .unwrap_or_else(|| panic!("{own}: {keys:?}"));
    assert_eq!(own_finding["severity"], "low", "Debian's urgency");
    let requests = found
        .get(&("requests".to_owned(), "CVE-2024-35195".to_owned()))
        .unwrap_or_else(|| panic!("{keys:?}"));
    assert_eq!(requests["severity"], "medium");
    assert_eq!(
        found.len(),
        glibc_binaries.len() + 2,
        "no Debian 11, fixed, binary-keyed or withdrawn advisory hits: {keys:?}"
    );
    let arm = by_platform["linux/arm64"];
    assert_eq!(arm["distro"], "alpine 3.20.3");
    let arm_found: Vec<(&str, &str, &str)> = arm["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["package"].as_str().unwrap(),
                f["id"].as_str().unwrap(),
                f["severity"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        arm_found,
        [
            ("libcrypto3", "CVE-2099-0002", "high"),
            ("libssl3", "CVE-2099-0002", "high")
        ]
    );
    assert_eq!(report["counts"]["critical"], glibc_binaries.len() as u64);

    // Stored with the manifest.
    let digest = report["digest"].as_str().unwrap();
    let stored: Value = reqwest::blocking::get(format!(
        "{}/api/v1/repositories/scan/vulns/manifests/{digest}/scan",
        b.url()
    ))
    .unwrap()
    .json()
    .unwrap();
    assert_eq!(stored["counts"], report["counts"]);
    assert_eq!(
        stored["images"][0]["findings"],
        report["images"][0]["findings"]
    );
    let again: Value = serde_json::from_str(&berth_ok(
        t,
        &["scan", "--stored", &image_ref, "-o", "json"],
    ))
    .unwrap();
    assert_eq!(again["counts"], report["counts"], "berth scan --stored");

    // A table for people.
    let table = berth_ok(t, &["scan", &image_ref, "--platform", "linux/arm64"]);
    assert!(
        table.contains("CVE-2099-0002") && table.contains("3.3.2-r1"),
        "{table}"
    );
    assert!(!table.contains("CVE-2099-0001"), "{table}");

    // The CI gate.
    let gate = berth(t, &["scan", &image_ref, "--fail-on", "critical"]);
    assert_eq!(
        gate.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&gate.stderr)
    );
    assert!(String::from_utf8_lossy(&gate.stderr).contains("at or above critical"));
    let pass = berth(
        t,
        &[
            "scan",
            &image_ref,
            "--platform",
            "linux/arm64",
            "--fail-on",
            "critical",
        ],
    );
    assert_eq!(
        pass.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&pass.stderr)
    );

    // SARIF, checked by an independent validator.
    let sarif = t.join("scan.sarif");
    berth_ok(
        t,
        &[
            "scan",
            &image_ref,
            "-o",
            "sarif",
            "--output-file",
            sarif.to_str().unwrap(),
        ],
    );
    let log: Value = serde_json::from_slice(&std::fs::read(&sarif).unwrap()).unwrap();
    let results = log["runs"][0]["results"].as_array().unwrap();
    assert_eq!(results.len(), glibc_binaries.len() + 4);
    assert!(results.iter().any(|r| r["ruleId"] == "CVE-2099-0001"
        && r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
            == "var/lib/dpkg/status"));
    assert!(
        common::have("npx"),
        "npx missing: run scripts/install-test-deps-tools.sh"
    );
    let v = Command::new("npx")
        .args(["--no-install", "@microsoft/sarif-multitool", "validate"])
        .arg(&sarif)
        .env("DOTNET_SYSTEM_GLOBALIZATION_INVARIANT", "1")
        .output()
        .expect("run sarif-multitool");
    let text = String::from_utf8_lossy(&v.stdout).to_string() + &String::from_utf8_lossy(&v.stderr);
    assert!(v.status.success(), "sarif-multitool failed:\n{text}");
    assert!(text.contains("Analysis completed successfully"), "{text}");
    assert!(
        !text.contains(": error "),
        "SARIF validation errors:\n{text}"
    );
}
