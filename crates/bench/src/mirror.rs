//! `berth bench --scenarios mirror`: pulls through berth's pull-through
//! mirror against direct pulls from its upstream and against the reference
//! registry's proxy mode on the same upstream, side by side in one run.
//!
//! The upstream is the reference registry, holding one image: a config, a
//! large layer (64 MiB; 4 MiB with `--quick`) and four small ones. Each
//! round (`--rounds`, 3 by default, 1 with `--quick`) starts a fresh berth
//! fronting it (`--mirror-upstreams`, the image under `up/bench/base`) and
//! a fresh reference registry with `proxy.remoteurl` set to it, and times
//! one pull (the manifest by tag, then every blob, one after the other on
//! one keep-alive connection, every byte read and counted):
//!
//! - directly from the upstream;
//! - through berth, cold (nothing cached: fetched, stored, streamed) and
//!   warm (from its cache);
//! - through the reference registry's proxy, cold and warm.
//!
//! berth and the proxy go first in alternate rounds. The report gives each
//! path's median time and throughput and its ratio to the direct pull; the
//! target is a cold pull through berth within 10% of the direct one.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use serde::Serialize;

use crate::payload::{Blob, Payloads};
use crate::scenario::MIB;
use crate::server::{BerthSpec, Kind, Observe, Server};
use crate::{ops, BenchArgs, Output};

/// The scenario's name (`--scenarios mirror`).
pub const SCENARIO: &str = "mirror";
/// The image's repository at the upstream.
const REPO: &str = "bench/base";
/// Its tag.
const TAG: &str = "v1";
/// The upstream's name at berth (its namespace).
const UPSTREAM: &str = "up";
/// Small layers besides the large one.
const SMALL_LAYERS: u64 = 4;
/// The size of each small layer.
const SMALL_LAYER: usize = 16 * 1024;
/// The slowest a cold pull through berth may be against a direct one.
pub const COLD_TARGET: f64 = 1.10;

/// Whether `--scenarios` asks for the mirror scenario (which runs alone).
pub fn requested(args: &BenchArgs) -> bool {
    args.scenarios.iter().any(|s| s.starts_with(SCENARIO))
}

/// One way of pulling the image.
#[derive(Debug, Serialize)]
pub struct PathTime {
    /// What it is (`direct`, `berth cold`, ...).
    pub path: &'static str,
    /// Pulls timed.
    pub pulls: usize,
    /// Median time of a pull (ms).
    pub median_ms: f64,
    /// Bytes of a pull over the median time (MiB/s).
    pub mib_per_s: f64,
    /// Median time over the direct pull's.
    pub vs_direct: f64,
}

/// The mirror scenario's report.
#[derive(Debug, Serialize)]
pub struct Report {
    /// `mirror`.
    pub scenario: &'static str,
    /// Bytes of one pull (manifest and blobs).
    pub image_bytes: u64,
    /// Bytes of the large layer.
    pub large_layer_bytes: u64,
    /// One row per path.
    pub paths: Vec<PathTime>,
    /// A cold pull through berth over a direct one (target: at most
    /// [`COLD_TARGET`]).
    pub cold_overhead: f64,
    /// Whether the cold pull met its target.
    pub cold_target_met: bool,
}

/// The image at the upstream.
struct Image {
    manifest_len: u64,
    blobs: Vec<(String, u64)>,
}

impl Image {
    fn bytes(&self) -> u64 {
        self.manifest_len + self.blobs.iter().map(|b| b.1).sum::<u64>()
    }
}

/// Runs the mirror scenario as `args` say and prints its report.
pub async fn run(args: &BenchArgs) -> anyhow::Result<()> {
    if let Some(other) = args.scenarios.iter().find(|s| !s.starts_with(SCENARIO)) {
        bail!(
            "{other:?} is not the mirror scenario: it measures pulls through mirrors and runs on its own; run the others in a separate `berth bench`"
        );
    }
    let bin = match &args.berth_bin {
        Some(p) => p.clone(),
        None => std::env::current_exe().context("locating the berth executable")?,
    };
    let rounds = args.rounds.unwrap_or(if args.quick { 1 } else { 3 });
    anyhow::ensure!(
        (1..=100).contains(&rounds),
        "--rounds must be between 1 and 100"
    );
    let large = if args.quick { 4 * MIB } else { 64 * MIB };
    let parent = args.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    let work = tempfile::Builder::new()
        .prefix("berth-bench-")
        .tempdir_in(&parent)
        .with_context(|| format!("creating a work directory in {}", parent.display()))?;
    let report = measure(&bin, &args.distribution_bin, work.path(), large, rounds).await?;
    let text = match args.output {
        Output::Table => report.table(),
        Output::Markdown => report.markdown(),
        Output::Json => serde_json::to_string_pretty(&report)? + "\n",
    };
    std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes())?;
    Ok(())
}

/// Pushes the image to the upstream.
async fn populate(upstream: &Server, large: usize) -> anyhow::Result<Image> {
    let mut conn = upstream.conn();
    let payloads = Payloads::new(&[large]);
    let config = Blob::from_bytes(Bytes::from_static(
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"history":[{"created_by":"berth bench: mirror"}]}"#,
    ));
    let mut layers = vec![payloads.blob(large, 1)];
    for i in 0..SMALL_LAYERS {
        layers.push(payloads.blob(SMALL_LAYER, 100 + i));
    }
    ops::push_monolithic(&mut conn, REPO, &config).await?;
    for l in &layers {
        ops::push_monolithic(&mut conn, REPO, l).await?;
    }
    let descriptors: Vec<String> = layers
        .iter()
        .map(|l| {
            format!(
                r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":{}}}"#,
                l.digest, l.len
            )
        })
        .collect();
    let manifest = Bytes::from(format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{}]}}"#,
        ops::OCI_MANIFEST,
        config.digest,
        config.len,
        descriptors.join(",")
    ));
    ops::put_manifest(&mut conn, REPO, TAG, &manifest).await?;
    let mut blobs = vec![(config.digest.clone(), config.len)];
    blobs.extend(layers.iter().map(|l| (l.digest.clone(), l.len)));
    Ok(Image {
        manifest_len: manifest.len() as u64,
        blobs,
    })
}

/// One pull of the image from `server`'s `repo`: the manifest by tag,
/// then each blob; every byte read and counted.
async fn pull(server: &Server, repo: &str, image: &Image) -> anyhow::Result<Duration> {
    let mut conn = server.conn();
    let t = Instant::now();
    let n = ops::get_manifest(&mut conn, repo, TAG, false).await?;
    anyhow::ensure!(
        n == image.manifest_len,
        "{}: the manifest of {repo}:{TAG} has {n} bytes, not {}",
        server.kind.name(),
        image.manifest_len
    );
    for (digest, size) in &image.blobs {
        let n = ops::get_blob(&mut conn, repo, digest).await?;
        anyhow::ensure!(
            n == *size,
            "{}: blob {digest} of {repo} has {n} bytes, not {size}",
            server.kind.name()
        );
    }
    Ok(t.elapsed())
}

/// The pulls of one path, in ms.
#[derive(Default)]
struct Times(Vec<f64>);

impl Times {
    fn push(&mut self, d: Duration) {
        self.0.push(d.as_secs_f64() * 1000.0);
    }

    fn median(&self) -> f64 {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        match v.len() {
            0 => 0.0,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }
}

async fn measure(
    bin: &Path,
    distribution: &Path,
    work: &Path,
    large: usize,
    rounds: usize,
) -> anyhow::Result<Report> {
    let upstream = Server::distribution(distribution, &work.join("upstream"), None, None)?;
    let image = populate(&upstream, large)
        .await
        .context("pushing the image to the upstream")?;
    let upstream_url = format!(
        "http://{}",
        upstream.addr().context("the upstream has no address")?
    );
    let names = [
        "direct",
        "berth cold",
        "berth warm",
        "reference proxy cold",
        "reference proxy warm",
    ];
    let mut times: Vec<Times> = names.iter().map(|_| Times::default()).collect();
    let mirrored = format!("{UPSTREAM}/{REPO}");
    for round in 0..rounds {
        let berth = Server::berth_with(
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
            &work.join(format!("berth-{round}")),
            &[
                "--mirror-upstreams".to_owned(),
                format!("[{{ name = {UPSTREAM:?}, url = {upstream_url:?} }}]"),
            ],
        )?;
        let proxy = Server::distribution_with(
            distribution,
            &work.join(format!("proxy-{round}")),
            None,
            None,
            &format!("proxy:\n  remoteurl: {upstream_url}\n"),
        )?;
        times[0].push(pull(&upstream, REPO, &image).await?);
        let berth_first = round % 2 == 0;
        for turn in 0..2 {
            if (turn == 0) == berth_first {
                times[1].push(pull(&berth, &mirrored, &image).await?);
                times[2].push(pull(&berth, &mirrored, &image).await?);
            } else {
                times[3].push(pull(&proxy, REPO, &image).await?);
                times[4].push(pull(&proxy, REPO, &image).await?);
            }
        }
        drop(berth);
        drop(proxy);
        for dir in [format!("berth-{round}"), format!("proxy-{round}")] {
            let _ = std::fs::remove_dir_all(work.join(dir));
        }
        eprintln!(
            "bench: mirror: round {}: direct {:.0} ms, berth cold {:.0} ms, warm {:.0} ms, proxy cold {:.0} ms, warm {:.0} ms",
            round + 1,
            times[0].0[round],
            times[1].0[round],
            times[2].0[round],
            times[3].0[round],
            times[4].0[round]
        );
    }
    let bytes = image.bytes();
    let direct = times[0].median();
    let paths: Vec<PathTime> = names
        .iter()
        .zip(&times)
        .map(|(name, t)| {
            let median_ms = t.median();
            PathTime {
                path: name,
                pulls: t.0.len(),
                median_ms,
                mib_per_s: bytes as f64 / MIB as f64 / (median_ms / 1000.0).max(1e-9),
                vs_direct: median_ms / direct.max(1e-9),
            }
        })
        .collect();
    let cold_overhead = paths[1].vs_direct;
    Ok(Report {
        scenario: SCENARIO,
        image_bytes: bytes,
        large_layer_bytes: large as u64,
        paths,
        cold_overhead,
        cold_target_met: cold_overhead <= COLD_TARGET,
    })
}

impl Report {
    /// An aligned text table.
    pub fn table(&self) -> String {
        let mut out = format!(
            "mirror: one pull of a {:.1} MiB image (a {:.0} MiB layer and {SMALL_LAYERS} small ones), one blob after the other\n\n",
            self.image_bytes as f64 / MIB as f64,
            self.large_layer_bytes as f64 / MIB as f64
        );
        out.push_str(&format!(
            "{:<22} {:>6} {:>11} {:>9} {:>10}\n",
            "path", "pulls", "median ms", "MiB/s", "vs direct"
        ));
        for p in &self.paths {
            out.push_str(&format!(
                "{:<22} {:>6} {:>11.1} {:>9.1} {:>10.2}\n",
                p.path, p.pulls, p.median_ms, p.mib_per_s, p.vs_direct
            ));
        }
        out.push_str(&format!(
            "\nberth cold / direct: {:.2} (target <= {COLD_TARGET:.2}: {})\n",
            self.cold_overhead,
            if self.cold_target_met {
                "met"
            } else {
                "MISSED"
            }
        ));
        out
    }

    /// Markdown, as `docs/benchmarks.md` shows it.
    pub fn markdown(&self) -> String {
        let mut out = format!(
            "Pull-through mirror (`berth bench --scenarios mirror`): one pull of a {:.1} MiB image (a {:.0} MiB layer and {SMALL_LAYERS} small ones) from the reference registry as upstream, median of {} pulls per path.\n\n",
            self.image_bytes as f64 / MIB as f64,
            self.large_layer_bytes as f64 / MIB as f64,
            self.paths.first().map_or(0, |p| p.pulls)
        );
        out.push_str("| path | median | throughput | vs direct |\n");
        out.push_str("| --- | ---: | ---: | ---: |\n");
        for p in &self.paths {
            out.push_str(&format!(
                "| {} | {:.1} ms | {:.1} MiB/s | {:.2} |\n",
                p.path, p.median_ms, p.mib_per_s, p.vs_direct
            ));
        }
        out.push_str(&format!(
            "\nA cold pull through berth takes {:.2} times a direct one (target: at most {COLD_TARGET:.2}).\n",
            self.cold_overhead
        ));
        out
    }
}
