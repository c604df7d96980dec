//! The report: per scenario and concurrency, berth and its peer (the
//! reference registry, or berth with observability off) side by side and
//! the ratio berth/peer, plus the checks against the targets.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::load::{quantile_ms, Sample};
use crate::scenario::Scenario;
use crate::Settings;

const MIB: f64 = 1024.0 * 1024.0;
/// Idle RSS target of berth.
const IDLE_RSS_TARGET_MIB: f64 = 30.0;
/// Target of every ratio with `--peer unobserved`: metrics and the access
/// log cost at most 3%.
pub(crate) const OBSERVABILITY_TARGET: f64 = 0.97;
/// Target of every ratio with `--peer one-replica`: replicas on one machine
/// cost at most 10% of one replica's throughput (on several machines they
/// add capacity; on one they share its cores).
pub(crate) const REPLICAS_TARGET: f64 = 0.9;
/// Target of manifest reads against nginx serving the same bytes from a
/// file: berth's own work (routing, lookup) costs at most 10% of the
/// machine's HTTP capacity.
pub(crate) const NGINX_TARGET: f64 = 0.9;
/// The same with a credential to check on every request.
pub(crate) const NGINX_TARGET_AUTH: f64 = 0.75;
/// Target of every ratio with `--peer unscrubbed`: the integrity scrub
/// running at its default rate costs reads at most 10% (issue 17).
pub(crate) const SCRUB_TARGET: f64 = 0.9;

/// With `--peer unscrubbed`: what berth's scrub did while berth was
/// measured in one cell.
#[derive(Debug, Serialize)]
pub struct ScrubFigures {
    /// Bytes the scrub read and hashed per second of measurement.
    pub mb_per_s: f64,
    /// Blobs it checked.
    pub blobs: u64,
    /// Passes it completed over every blob.
    pub passes: u64,
    /// Of those, the bytes read while berth served requests (at a tenth
    /// of its rate), per second of measurement: what the scrub read during
    /// the measurement itself, while `mb_per_s` also counts the end of its
    /// last request, read at the full rate once the measurement stopped.
    pub busy_mb_per_s: f64,
}

impl ScrubFigures {
    pub(crate) fn new(tally: crate::scrub::Tally, measured: std::time::Duration) -> ScrubFigures {
        let secs = measured.as_secs_f64();
        ScrubFigures {
            mb_per_s: if secs > 0.0 {
                tally.bytes as f64 / 1e6 / secs
            } else {
                0.0
            },
            blobs: tally.blobs,
            passes: tally.passes,
            busy_mb_per_s: if secs > 0.0 {
                tally.busy_bytes as f64 / 1e6 / secs
            } else {
                0.0
            },
        }
    }
}

/// One server's figures in one cell.
#[derive(Debug, Serialize)]
pub struct Side {
    /// Completed operations.
    pub ops: u64,
    /// Failed operations.
    pub errors: u64,
    /// The first failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    /// Operations per second (a push counts once for all its requests).
    pub ops_per_s: f64,
    /// Payload megabytes (10^6) per second.
    pub mb_per_s: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// Server CPU seconds (user + system) while loaded.
    pub cpu_s: f64,
    /// Server CPU microseconds per operation.
    pub cpu_us_per_op: f64,
    /// Server peak RSS, MiB.
    pub peak_rss_mib: f64,
    /// Object-store requests per operation (`--storage s3`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store_requests_per_op: Option<f64>,
}

impl Side {
    fn new(mut s: Sample) -> Side {
        s.latencies_us.sort_unstable();
        let secs = s.elapsed.as_secs_f64().max(1e-9);
        Side {
            ops: s.ops,
            errors: s.errors,
            first_error: s.first_error,
            ops_per_s: s.ops as f64 / secs,
            mb_per_s: s.bytes as f64 / secs / 1e6,
            p50_ms: quantile_ms(&s.latencies_us, 0.50),
            p99_ms: quantile_ms(&s.latencies_us, 0.99),
            cpu_s: s.cpu_s,
            cpu_us_per_op: if s.ops == 0 {
                0.0
            } else {
                s.cpu_s * 1e6 / s.ops as f64
            },
            peak_rss_mib: s.peak_rss as f64 / MIB,
            store_requests_per_op: s
                .store_requests
                .filter(|_| s.ops > 0)
                .map(|n| n as f64 / s.ops as f64),
        }
    }
}

/// One scenario at one concurrency.
#[derive(Debug, Serialize)]
pub struct Cell {
    /// Scenario name.
    pub scenario: String,
    /// Connections.
    pub concurrency: usize,
    /// berth's figures.
    pub berth: Side,
    /// The peer's figures (the reference registry, or berth unobserved).
    pub peer: Side,
    /// Throughput ratio berth/peer.
    pub ratio: f64,
    /// The issue's target for `ratio`.
    pub target: f64,
    /// Whether `ratio >= target` and neither server failed an operation.
    pub met: bool,
    /// With `--peer unobserved`: lines berth wrote to its access log during
    /// this cell (one per request).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub berth_access_log_lines: Option<u64>,
    /// With `--peer unscrubbed`: what berth's scrub did meanwhile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub berth_scrub: Option<ScrubFigures>,
}

impl Cell {
    /// Builds the cell from both servers' samples and the ratio's target.
    pub fn new(
        scenario: Scenario,
        concurrency: usize,
        berth: Sample,
        peer: Sample,
        target: f64,
    ) -> Cell {
        let (berth, peer) = (Side::new(berth), Side::new(peer));
        let ratio = if peer.ops_per_s > 0.0 {
            berth.ops_per_s / peer.ops_per_s
        } else {
            0.0
        };
        Cell {
            scenario: scenario.name(),
            concurrency,
            met: ratio >= target && berth.errors == 0,
            berth,
            peer,
            ratio,
            target,
            berth_access_log_lines: None,
            berth_scrub: None,
        }
    }
}

/// Where and how the run happened.
#[derive(Debug, Serialize)]
pub struct Machine {
    /// CPU model.
    pub cpu: String,
    /// Logical CPUs.
    pub cpus: usize,
    /// Memory, GiB.
    pub memory_gib: f64,
    /// Kernel release.
    pub kernel: String,
    /// Device and filesystem type holding both data directories.
    pub filesystem: String,
}

/// The whole result of a run.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The machine.
    pub machine: Machine,
    /// Whether this was a `--quick` smoke run.
    pub quick: bool,
    /// Whether berth ran with authentication on (`--berth-auth`).
    pub berth_auth: Option<crate::AuthMode>,
    /// What berth was measured against.
    pub peer: crate::Peer,
    /// berth replicas (peak RSS figures are then per replica).
    pub replicas: usize,
    /// Whether both servers served HTTPS (`--tls`).
    pub tls: bool,
    /// Where both servers kept blobs: `filesystem` or `s3`.
    pub storage: &'static str,
    /// Seconds per server per round.
    pub duration_s: f64,
    /// Rounds per cell.
    pub rounds: usize,
    /// Tags in the tags-list repository.
    pub tags: usize,
    /// Wall time of the whole run, seconds.
    pub wall_s: f64,
    /// The disk's sequential write + fdatasync rate, MB/s.
    pub disk_write_mb_s: f64,
    /// berth's RSS after start, MiB.
    pub berth_idle_rss_mib: f64,
    /// Of that, anonymous memory (`RssAnon`: heap and stacks); the rest
    /// is mapped from files, mostly the binary's own code.
    pub berth_idle_anonymous_mib: f64,
    /// The peer's RSS after start, MiB.
    pub peer_idle_rss_mib: f64,
    /// All cells.
    pub cells: Vec<Cell>,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn filesystem_of(dir: &Path) -> String {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let mounts = read("/proc/mounts");
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((*f.first()?, *f.get(1)?, *f.get(2)?))
        })
        .filter(|(_, mnt, _)| dir.starts_with(mnt))
        .max_by_key(|(_, mnt, _)| mnt.len())
        .map(|(dev, mnt, ty)| format!("{dev} on {mnt} ({ty})"))
        .unwrap_or_else(|| "unknown".into())
}

impl Machine {
    fn probe(work: &Path) -> Machine {
        let cpuinfo = read("/proc/cpuinfo");
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_default();
        let mem_kib: f64 = read("/proc/meminfo")
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0.0);
        Machine {
            cpu,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_gib: mem_kib / 1024.0 / 1024.0,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            filesystem: filesystem_of(work),
        }
    }
}

impl Report {
    /// Assembles the report.
    pub(crate) fn new(
        settings: &Settings,
        work: &Path,
        disk_mb_s: f64,
        (idle, idle_anonymous): ([u64; 2], u64),
        cells: Vec<Cell>,
        wall: Duration,
    ) -> Report {
        Report {
            machine: Machine::probe(work),
            quick: settings.quick,
            berth_auth: settings.berth_auth,
            peer: settings.peer,
            replicas: settings.replicas,
            tls: settings.tls.is_some(),
            storage: if settings.s3.is_some() {
                "s3"
            } else {
                "filesystem"
            },
            duration_s: settings.duration.as_secs_f64(),
            rounds: settings.rounds,
            tags: settings.tags,
            wall_s: wall.as_secs_f64(),
            disk_write_mb_s: disk_mb_s,
            berth_idle_rss_mib: idle[0] as f64 / MIB,
            berth_idle_anonymous_mib: idle_anonymous as f64 / MIB,
            peer_idle_rss_mib: idle[1] as f64 / MIB,
            cells,
        }
    }

    /// The peer's name in the report, and its short column label.
    fn peer_names(&self) -> (&'static str, &'static str) {
        match self.peer {
            crate::Peer::Reference => ("distribution", "dist"),
            crate::Peer::Unobserved => ("berth-unobserved", "off"),
            crate::Peer::OneReplica => ("berth-one-replica", "one"),
            crate::Peer::Nginx => ("nginx", "nginx"),
            crate::Peer::Unscrubbed => ("berth-unscrubbed", "idle"),
        }
    }

    fn header(&self) -> String {
        let m = &self.machine;
        let against = match self.peer {
            crate::Peer::Reference => "the reference registry (CNCF Distribution), as `dist`",
            crate::Peer::Unobserved => {
                "the same berth with --metrics false --access-log false, as `off`; berth itself with metrics on and the access log at info to a file"
            }
            crate::Peer::OneReplica => {
                "one berth replica on the same engines, as `one`"
            }
            crate::Peer::Nginx => {
                "nginx serving the same manifest bytes as a static file (worker per core, keep-alive, no access log), as `nginx`"
            }
            crate::Peer::Unscrubbed => {
                "the same berth on the same data with no scrub running, as `idle`; berth itself scrubbing back to back at its default --scrub-rate, both holding a ballast of 1 MiB blobs"
            }
        };
        let replicas = if self.replicas > 1 {
            format!(
                "; {} replicas on one PostgreSQL database (the bench's cluster, fsync off), connections spread over them in turn, peak RSS per replica",
                self.replicas
            )
        } else {
            String::new()
        };
        format!(
            "machine: {} x {} ({:.0} GiB RAM, Linux {}); data on {}\nrun: {} s x {} round(s) per server per cell, {} tags, {:.0} s wall{}\nagainst: {against}\nberth: {}\ntransport: {}\nstorage: {}\n",
            m.cpus, m.cpu, m.memory_gib, m.kernel, m.filesystem, self.duration_s, self.rounds, self.tags, self.wall_s,
            if self.quick { " (quick)" } else { "" },
            match (self.berth_auth, self.peer) {
                (Some(mode), peer) => format!(
                    "--auth token, {} on every request{}",
                    match mode {
                        crate::AuthMode::Basic => "Basic credentials of the site admin",
                        crate::AuthMode::Bearer => "a registry token from /token (Bearer)",
                    },
                    match peer {
                        crate::Peer::Reference => " (distribution: open)",
                        crate::Peer::Nginx => " (nginx: open)",
                        _ => ", for both",
                    }
                ),
                (None, crate::Peer::Reference) => "--auth none (like distribution)".to_owned(),
                (None, _) => "--auth none for both".to_owned(),
            } + &replicas,
            if self.tls {
                "HTTPS for both (one certificate from `berth tls self-signed`; client: rustls, HTTP/1.1 over TLS 1.3)"
            } else {
                "plain HTTP/1.1 for both"
            },
            match (self.storage, self.peer) {
                ("s3", crate::Peer::Reference) => "one SeaweedFS S3 server (weed mini, SigV4 checked) on loopback for both: berth --storage s3://, distribution's s3 driver",
                ("s3", _) => "one SeaweedFS S3 server (weed mini, SigV4 checked) on loopback for both",
                _ => "each server's data directory on the local disk",
            }
        )
    }

    /// The checks that are not a throughput ratio: memory and the disk.
    pub fn extra_checks(&self) -> Vec<(String, String, bool)> {
        let mut v = Vec::new();
        let (peer, _) = self.peer_names();
        v.push((
            format!("berth idle RSS < {IDLE_RSS_TARGET_MIB} MiB"),
            format!(
                "{:.1} MiB, of it {:.1} MiB anonymous ({peer} {:.1} MiB)",
                self.berth_idle_rss_mib, self.berth_idle_anonymous_mib, self.peer_idle_rss_mib
            ),
            self.berth_idle_rss_mib < IDLE_RSS_TARGET_MIB,
        ));
        // Memory against the reference registry; against itself berth is
        // compared on throughput only.
        let reference = self.peer == crate::Peer::Reference;
        for c in self
            .cells
            .iter()
            .filter(|c| reference && c.scenario == "pull-64m")
        {
            v.push((
                format!(
                    "pull-64m c={}: berth peak RSS <= 1/3 of distribution's",
                    c.concurrency
                ),
                format!(
                    "{:.1} MiB vs {:.1} MiB",
                    c.berth.peak_rss_mib, c.peer.peak_rss_mib
                ),
                c.berth.peak_rss_mib * 3.0 <= c.peer.peak_rss_mib,
            ));
        }
        for c in self.cells.iter().filter(|c| {
            reference
                && self.storage == "filesystem"
                && c.scenario.starts_with("push-")
                && c.scenario.ends_with("-64m")
        }) {
            let frac = c.berth.mb_per_s / self.disk_write_mb_s.max(1e-9);
            v.push((
                format!(
                    "{} c={}: berth >= 90% of disk write+fdatasync",
                    c.scenario, c.concurrency
                ),
                format!(
                    "{:.0} MB/s = {:.0}% of {:.0} MB/s",
                    c.berth.mb_per_s,
                    frac * 100.0,
                    self.disk_write_mb_s
                ),
                frac >= 0.9,
            ));
        }
        v
    }

    fn rows(&self) -> Vec<Vec<String>> {
        let (_, p) = self.peer_names();
        let x = &p[..1];
        let mut rows = vec![vec![
            "scenario".to_owned(),
            "c".to_owned(),
            "berth op/s".to_owned(),
            format!("{p} op/s"),
            "ratio".to_owned(),
            "target".to_owned(),
            "berth MB/s".to_owned(),
            format!("{p} MB/s"),
            format!("p50 ms b/{x}"),
            format!("p99 ms b/{x}"),
            format!("CPU s b/{x}"),
            format!("peak RSS MiB b/{x}"),
            format!("errors b/{x}"),
        ]];
        let s3 = self.storage == "s3";
        if s3 {
            rows[0].push(format!("S3 req/op b/{x}"));
        }
        let logged = self.peer == crate::Peer::Unobserved;
        if logged {
            rows[0].push("access log lines b".to_owned());
        }
        let scrubbing = self.peer == crate::Peer::Unscrubbed;
        if scrubbing {
            rows[0].push("scrub MB/s b".to_owned());
            rows[0].push("scrub passes b".to_owned());
            rows[0].push("scrub busy MB/s b".to_owned());
        }
        for c in &self.cells {
            let (b, d) = (&c.berth, &c.peer);
            rows.push(vec![
                c.scenario.clone(),
                c.concurrency.to_string(),
                format!("{:.0}", b.ops_per_s),
                format!("{:.0}", d.ops_per_s),
                format!("{:.2}{}", c.ratio, if c.met { "" } else { " ✗" }),
                format!("{}", c.target),
                format!("{:.1}", b.mb_per_s),
                format!("{:.1}", d.mb_per_s),
                format!("{:.2} / {:.2}", b.p50_ms, d.p50_ms),
                format!("{:.2} / {:.2}", b.p99_ms, d.p99_ms),
                format!("{:.2} / {:.2}", b.cpu_s, d.cpu_s),
                format!("{:.0} / {:.0}", b.peak_rss_mib, d.peak_rss_mib),
                format!("{} / {}", b.errors, d.errors),
            ]);
            if s3 {
                let per_op = |s: &Side| {
                    s.store_requests_per_op
                        .map_or_else(|| "-".to_owned(), |n| format!("{n:.1}"))
                };
                if let Some(row) = rows.last_mut() {
                    row.push(format!("{} / {}", per_op(b), per_op(d)));
                }
            }
            if logged {
                if let Some(row) = rows.last_mut() {
                    row.push(
                        c.berth_access_log_lines
                            .map_or_else(|| "-".to_owned(), |n| n.to_string()),
                    );
                }
            }
            if scrubbing {
                if let Some(row) = rows.last_mut() {
                    match &c.berth_scrub {
                        Some(f) => {
                            row.push(format!("{:.1}", f.mb_per_s));
                            row.push(f.passes.to_string());
                            row.push(format!("{:.1}", f.busy_mb_per_s));
                        }
                        None => row.extend(["-".to_owned(), "-".to_owned(), "-".to_owned()]),
                    }
                }
            }
        }
        rows
    }

    fn errors(&self) -> String {
        let mut out = String::new();
        let (peer, _) = self.peer_names();
        for c in &self.cells {
            for (who, s) in [("berth", &c.berth), (peer, &c.peer)] {
                if let Some(e) = &s.first_error {
                    let _ = writeln!(out, "error: {} c={} {who}: {e}", c.scenario, c.concurrency);
                }
            }
        }
        out
    }

    /// An aligned text table.
    pub fn table(&self) -> String {
        let rows = self.rows();
        let widths: Vec<usize> = (0..rows[0].len())
            .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
            .collect();
        let mut out = self.header();
        let _ = writeln!(
            out,
            "disk write+fdatasync: {:.0} MB/s\n",
            self.disk_write_mb_s
        );
        for r in &rows {
            let line: Vec<String> = r
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:>w$}", w = *w))
                .collect();
            let _ = writeln!(out, "{}", line.join("  "));
        }
        out.push('\n');
        for (what, value, ok) in self.extra_checks() {
            let _ = writeln!(out, "{} {what}: {value}", if ok { "met " } else { "MISS" });
        }
        out + &self.errors()
    }

    /// Markdown tables.
    pub fn markdown(&self) -> String {
        let rows = self.rows();
        let mut out = String::new();
        for line in self.header().lines() {
            let _ = writeln!(out, "- {line}");
        }
        let _ = writeln!(
            out,
            "- disk write+fdatasync: {:.0} MB/s\n",
            self.disk_write_mb_s
        );
        for (i, r) in rows.iter().enumerate() {
            let _ = writeln!(out, "| {} |", r.join(" | "));
            if i == 0 {
                let _ = writeln!(out, "|{}", " --- |".repeat(r.len()));
            }
        }
        out.push_str("\n| check | measured | met |\n| --- | --- | --- |\n");
        for (what, value, ok) in self.extra_checks() {
            let _ = writeln!(
                out,
                "| {what} | {value} | {} |",
                if ok { "yes" } else { "no" }
            );
        }
        let errors = self.errors();
        if !errors.is_empty() {
            let _ = write!(out, "\n```\n{errors}```\n");
        }
        out
    }
}
