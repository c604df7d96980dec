//! `berth vulndb` against a real `berth serve`: an OSV `all.zip` (made by
//! the test in the layout OSV publishes: one `ID.json` per record) and a
//! directory of records are imported through the management API; a second
//! import of the same data skips what did not change and counts what did
//! (changed, withdrawn); the status per ecosystem, the audit log and
//! `berth_vulndb_age_seconds` say what was loaded and when. Only site
//! admins import.
//!
//! The database also travels as one OCI artifact (`berth vulndb push`,
//! `berth vulndb import docker://REF | oci:DIR`): pushed to `berth serve`,
//! the reference registry and a layout, imported into a fresh registry,
//! pulled by oras; a damaged copy is refused whole.
//!
//! `BERTH_VULNDB_RECORDS` sets the size of the Debian archive (default
//! 3,000); the import's time and rate are printed, so the same test
//! measures a large import (`BERTH_VULNDB_RECORDS=120000`).

use std::io::Write as _;
use std::path::Path;

use base64::Engine as _;
use serde_json::{json, Value};
use sha2::Digest as _;

use crate::common::{Berth, Distribution, ADMIN_PASSWORD};
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

/// `berth EXTRA ARGS`, insisting on failure; returns stderr.
fn refused(dir: &Path, args: &[String], extra: &[&str]) -> String {
    let all: Vec<&str> = extra
        .iter()
        .copied()
        .chain(args.iter().map(String::as_str))
        .collect();
    let out = berth(dir, &all);
    assert!(!out.status.success(), "berth {all:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
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
    let stderr = refused(
        dir.path(),
        &[],
        &[
            "vulndb",
            "import",
            zip_path.to_str().unwrap(),
            "--registry",
            b.addr.as_str(),
        ],
    );
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

/// An OSV `all.zip` of `n` Debian records and a directory of two PyPI
/// records (one of them withdrawn), in `dir`.
fn osv_inputs(dir: &Path, n: usize) -> (std::path::PathBuf, std::path::PathBuf) {
    let debian = dir.join("Debian");
    std::fs::create_dir_all(&debian).unwrap();
    let zip_path = debian.join("all.zip");
    let records: Vec<Value> = (0..n)
        .map(|i| debian_record(i, "2024-02-01T00:00:00Z", false))
        .collect();
    write_zip(&zip_path, &records);
    let pypi = dir.join("pypi");
    std::fs::create_dir_all(pypi.join("requests")).unwrap();
    for (id, modified, withdrawn) in [
        ("GHSA-9wx4-h78v-vm56", "2024-06-10T00:00:00Z", None),
        (
            "GHSA-j8r2-6x86-q33q",
            "2024-05-01T00:00:00Z",
            Some("2024-05-02T00:00:00Z"),
        ),
    ] {
        let mut r = json!({"id": id, "modified": modified,
               "affected": [{"package": {"ecosystem": "PyPI", "name": "requests"},
                             "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.32.0"}]}]}]});
        if let Some(w) = withdrawn {
            r["withdrawn"] = json!(w);
        }
        std::fs::write(pypi.join(format!("requests/{id}.json")), r.to_string()).unwrap();
    }
    (zip_path, pypi)
}

fn status_of(dir: &Path, creds: &[String]) -> Value {
    serde_json::from_str(&run(dir, creds, &["vulndb", "status", "-o", "json"])).unwrap()
}

fn ecosystem(status: &Value, name: &str) -> Value {
    status["ecosystems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["ecosystem"] == name)
        .unwrap_or_else(|| panic!("no {name} in {status}"))
        .clone()
}

/// The database as one OCI artifact: `berth vulndb push` to a real `berth
/// serve` (with credentials), to the reference registry, to an OCI layout
/// and an oci-archive; `berth vulndb import docker://REF` into a fresh registry loads
/// the same counts and records the reference and digest as the source;
/// importing the other copies changes nothing (incremental: the layers are
/// the same bytes); what that registry has loaded is packed and imported
/// into a third with the same result; oras pulls the layers back as the
/// files they were.
#[tokio::test(flavor = "multi_thread")]
async fn the_database_travels_as_one_oci_artifact() {
    let n = 400;
    let dir = tempfile::tempdir().unwrap();
    let (zip_path, pypi) = osv_inputs(dir.path(), n);
    let source = Berth::start_auth(&[], None);
    let reference = Distribution::start();
    let creds = format!("admin:{ADMIN_PASSWORD}");

    let on_berth = format!("docker://{}/security/vulndb:2024-06", source.addr);
    let pushed: Value = serde_json::from_str(&berth_ok(
        dir.path(),
        &[
            "vulndb",
            "push",
            &on_berth,
            zip_path.to_str().unwrap(),
            pypi.to_str().unwrap(),
            "--creds",
            &creds,
            "-o",
            "json",
        ],
    ))
    .unwrap();
    assert_eq!(pushed["records"], (n + 2) as u64, "{pushed}");
    assert_eq!(pushed["artifact_type"], "application/vnd.berth.vulndb.v1");
    let digest = pushed["digest"].as_str().unwrap().to_owned();
    let layers = pushed["layers"].as_array().unwrap();
    assert_eq!(layers[0]["title"], "Debian-all.zip");
    assert_eq!(layers[0]["records"], n as u64);
    assert_eq!(layers[1]["title"], "pypi.zip");
    assert_eq!(layers[1]["ecosystems"], json!(["PyPI"]));
    assert_eq!(layers[1]["modified"], "2024-06-10T00:00:00Z");

    let table = berth_ok(
        dir.path(),
        &[
            "vulndb",
            "push",
            &format!("{}/vulndb/osv", reference.addr),
            zip_path.to_str().unwrap(),
            pypi.to_str().unwrap(),
        ],
    );
    assert!(
        table.contains("Debian-all.zip") && table.contains("[latest]"),
        "{table}"
    );
    let on_reference = table
        .split(" @ ")
        .nth(1)
        .map(|rest| rest[..71].to_owned())
        .unwrap_or_else(|| panic!("no digest in {table}"));
    let layout = dir.path().join("carried");
    let on_disk = format!("oci:{}:2024-06", layout.display());
    let archive = format!(
        "oci-archive:{}:2024-06",
        dir.path().join("db.tar").display()
    );
    // (copy, its manifest digest); each push packs anew (its own
    // `created`), the layers are the same bytes every time.
    let mut copies = vec![(
        format!("docker://{}/vulndb/osv:latest", reference.addr),
        on_reference,
    )];
    for dest in [&on_disk, &archive] {
        let again: Value = serde_json::from_str(&berth_ok(
            dir.path(),
            &[
                "vulndb",
                "push",
                dest,
                zip_path.to_str().unwrap(),
                pypi.to_str().unwrap(),
                "-o",
                "json",
            ],
        ))
        .unwrap();
        let digests = |v: &Value| -> Vec<Value> {
            v["layers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["digest"].clone())
                .collect()
        };
        assert_eq!(digests(&again), digests(&pushed), "the same layers");
        copies.push((dest.clone(), again["digest"].as_str().unwrap().to_owned()));
    }

    // The reference registry holds the artifact as pushed: its type, the
    // layers' media types and annotations.
    let c = reqwest::Client::new();
    let manifest: Value = c
        .get(format!(
            "{}/v2/vulndb/osv/manifests/latest",
            reference.url()
        ))
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(manifest["artifactType"], "application/vnd.berth.vulndb.v1");
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.empty.v1+json"
    );
    assert_eq!(
        manifest["annotations"]["io.berth.vulndb.records"],
        (n + 2).to_string()
    );
    assert_eq!(
        manifest["annotations"]["io.berth.vulndb.ecosystems"],
        "Debian,PyPI"
    );
    assert_eq!(
        manifest["annotations"]["io.berth.vulndb.modified"],
        "2024-06-10T00:00:00Z"
    );
    assert!(manifest["annotations"]["org.opencontainers.image.created"].is_string());
    let zip_digest = format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(std::fs::read(&zip_path).unwrap()))
    );
    let l0 = &manifest["layers"][0];
    assert_eq!(l0["mediaType"], "application/vnd.berth.vulndb.osv.v1+zip");
    assert_eq!(
        l0["digest"],
        zip_digest.as_str(),
        "an all.zip is carried byte for byte"
    );
    assert_eq!(l0["annotations"]["io.berth.vulndb.records"], n.to_string());
    assert_eq!(
        l0["annotations"]["io.berth.vulndb.source"],
        zip_path.to_str().unwrap()
    );

    // A fresh registry imports it from the berth registry.
    let fresh = Berth::start_auth(&[], None);
    let admin_creds = admin(&fresh);
    let out = run(
        dir.path(),
        &admin_creds,
        &["vulndb", "import", &on_berth, "--creds", &creds],
    );
    assert!(out.contains(&format!("{n} new, 0 changed")), "{out}");
    assert!(out.contains(" pypi.zip: "), "{out}");
    let status = status_of(dir.path(), &admin_creds);
    let debian = ecosystem(&status, "Debian");
    assert_eq!(debian["records"], n as u64);
    let recorded = format!(
        "docker://{}/security/vulndb:2024-06@{digest} Debian-all.zip",
        source.addr
    );
    assert_eq!(debian["last_import_source"], recorded.as_str());
    assert_eq!(ecosystem(&status, "PyPI")["records"], 1);
    assert_eq!(
        status["imports"][0]["source"],
        format!(
            "docker://{}/security/vulndb:2024-06@{digest} pypi.zip",
            source.addr
        )
    );

    // The copies in the reference registry, the layout and the archive hold
    // the same layers: importing them changes nothing, and each import
    // records its own reference and digest.
    for (copy, copy_digest) in &copies {
        let out: Value = serde_json::from_str(&run(
            dir.path(),
            &admin_creds,
            &["vulndb", "import", copy, "-o", "json"],
        ))
        .unwrap();
        assert_eq!(out[0]["unchanged"], n as u64, "{out}");
        assert_eq!(out[0]["new"], 0);
        assert_eq!(out[1]["unchanged"], 2, "{out}");
        assert_eq!(
            out[0]["source"],
            format!("{copy}@{copy_digest} Debian-all.zip")
        );
    }
    let again = status_of(dir.path(), &admin_creds);
    assert_eq!(ecosystem(&again, "Debian")["records"], n as u64);
    assert_eq!(again["imports"].as_array().unwrap().len(), 8, "{again}");

    // What a registry has loaded travels too: packed from `fresh` (one
    // layer per ecosystem, withdrawn records included; site admins only),
    // imported into a third registry, which then holds the same.
    let loaded = format!("docker://{}/vulndb/loaded:v1", reference.addr);
    let stderr = refused(
        dir.path(),
        &[],
        &["vulndb", "push", &loaded, "--registry", &fresh.addr],
    );
    assert!(
        stderr.contains("401") || stderr.contains("authentication"),
        "{stderr}"
    );
    let pushed: Value = serde_json::from_str(&run(
        dir.path(),
        &admin_creds,
        &["vulndb", "push", &loaded, "-o", "json"],
    ))
    .unwrap();
    let titles: Vec<&str> = pushed["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["Debian.zip", "PyPI.zip"], "{pushed}");
    assert_eq!(
        pushed["records"],
        (n + 2) as u64,
        "withdrawn records are packed: {pushed}"
    );
    assert!(
        pushed["layers"][0]["source"]
            .as_str()
            .unwrap()
            .contains(&fresh.addr),
        "{pushed}"
    );
    let third = Berth::start_auth(&[], None);
    let third_creds = admin(&third);
    let out: Value = serde_json::from_str(&run(
        dir.path(),
        &third_creds,
        &["vulndb", "import", &loaded, "-o", "json"],
    ))
    .unwrap();
    assert_eq!(out[0]["new"], n as u64, "{out}");
    assert_eq!(out[1]["new"], 2, "{out}");
    assert_eq!(out[1]["withdrawn"], 1, "{out}");
    let copied = status_of(dir.path(), &third_creds);
    for family in ["Debian", "PyPI"] {
        let (a, b) = (ecosystem(&again, family), ecosystem(&copied, family));
        assert_eq!(a["records"], b["records"], "{family}");
        assert_eq!(a["newest_modified_at"], b["newest_modified_at"], "{family}");
    }

    // oras pulls the layers back as the files that went in.
    let pulled = dir.path().join("pulled");
    let script = "import sys, oras.provider\n\
        host, target, out = sys.argv[1:4]\n\
        reg = oras.provider.Registry(hostname=host, insecure=True)\n\
        print('\\n'.join(sorted(reg.pull(target=target, outdir=out))))\n";
    let oras = std::process::Command::new("python3")
        .args([
            "-c",
            script,
            &reference.addr,
            &format!("{}/vulndb/osv:latest", reference.addr),
            pulled.to_str().unwrap(),
        ])
        .output()
        .expect("python3 (the oras package: scripts/install-test-deps.sh)");
    assert!(
        oras.status.success(),
        "oras pull: {}",
        String::from_utf8_lossy(&oras.stderr)
    );
    assert_eq!(
        std::fs::read(pulled.join("Debian-all.zip")).unwrap(),
        std::fs::read(&zip_path).unwrap()
    );
    let from_oras = pulled.join("pypi.zip");
    let out: Value = serde_json::from_str(&run(
        dir.path(),
        &admin_creds,
        &[
            "vulndb",
            "import",
            from_oras.to_str().unwrap(),
            "-o",
            "json",
        ],
    ))
    .unwrap();
    assert_eq!(
        out[0]["unchanged"], 2,
        "oras's file is a plain OSV zip: {out}"
    );
}

/// Nothing of a damaged artifact is imported: a layer changed in an OCI
/// layout, a blob changed in the registry's storage, an artifact of
/// another type.
#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_artifact_is_refused_and_nothing_imported() {
    let dir = tempfile::tempdir().unwrap();
    let (zip_path, pypi) = osv_inputs(dir.path(), 50);
    let b = Berth::start_auth(&[], None);
    let creds = admin(&b);
    let layout = dir.path().join("carried");
    let on_disk = format!("oci:{}", layout.display());
    let pushed: Value = serde_json::from_str(&berth_ok(
        dir.path(),
        &[
            "vulndb",
            "push",
            &on_disk,
            zip_path.to_str().unwrap(),
            pypi.to_str().unwrap(),
            "-o",
            "json",
        ],
    ))
    .unwrap();
    // The second layer is damaged: the first, intact, is not imported
    // either.
    let layer = pushed["layers"][1]["digest"].as_str().unwrap();
    let blob = layout.join("blobs/sha256").join(&layer["sha256:".len()..]);
    let mut bytes = std::fs::read(&blob).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&blob, &bytes).unwrap();
    let stderr = refused(dir.path(), &creds, &["vulndb", "import", &on_disk]);
    assert!(
        stderr.contains("damaged")
            && stderr.contains("pypi.zip")
            && stderr.contains(layer)
            && stderr.contains("nothing was imported"),
        "{stderr}"
    );
    let status = status_of(dir.path(), &creds);
    assert_eq!(status["ecosystems"], json!([]), "{status}");
    assert_eq!(status["imports"], json!([]), "{status}");

    // A blob changed in the registry's storage. The credentials come from
    // an auth file, as `berth copy`, podman and skopeo read them.
    let on_berth = format!("docker://{}/security/vulndb:v1", b.addr);
    let auth_file = dir.path().join("auth.json");
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("admin:{ADMIN_PASSWORD}"));
    std::fs::write(
        &auth_file,
        json!({"auths": {b.addr.as_str(): {"auth": basic}}}).to_string(),
    )
    .unwrap();
    let auth_file = auth_file.to_str().unwrap();
    let pushed: Value = serde_json::from_str(&berth_ok(
        dir.path(),
        &[
            "vulndb",
            "push",
            &on_berth,
            zip_path.to_str().unwrap(),
            "--authfile",
            auth_file,
            "-o",
            "json",
        ],
    ))
    .unwrap();
    let layer = pushed["layers"][0]["digest"].as_str().unwrap();
    let hex = &layer["sha256:".len()..];
    let stored = b.data_dir.join("blobs/sha256").join(&hex[..2]).join(hex);
    let mut bytes = std::fs::read(&stored).unwrap();
    bytes[40] ^= 0xff;
    std::fs::write(&stored, &bytes).unwrap();
    let stderr = refused(
        dir.path(),
        &creds,
        &["vulndb", "import", &on_berth, "--authfile", auth_file],
    );
    assert!(
        stderr.contains("Debian-all.zip") && stderr.contains("nothing was imported"),
        "{stderr}"
    );
    assert_eq!(status_of(dir.path(), &creds)["imports"], json!([]));

    // Something else is not a vulnerability database.
    let image = dir.path().join("image");
    std::fs::create_dir_all(image.join("blobs/sha256")).unwrap();
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let config_hex = hex::encode(sha2::Sha256::digest(config));
    std::fs::write(image.join("blobs/sha256").join(&config_hex), config).unwrap();
    let manifest =
        json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": format!("sha256:{config_hex}"), "size": config.len()},
        "layers": []})
        .to_string();
    let manifest_hex = hex::encode(sha2::Sha256::digest(manifest.as_bytes()));
    std::fs::write(image.join("blobs/sha256").join(&manifest_hex), &manifest).unwrap();
    std::fs::write(
        image.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    std::fs::write(
        image.join("index.json"),
        json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{manifest_hex}"), "size": manifest.len()}]})
        .to_string(),
    )
    .unwrap();
    let stderr = refused(
        dir.path(),
        &creds,
        &["vulndb", "import", &format!("oci:{}", image.display())],
    );
    assert!(
        stderr.contains("is not a berth vulnerability database"),
        "{stderr}"
    );
}
