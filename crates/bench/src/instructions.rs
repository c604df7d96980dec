//! `berth bench --instructions`: the instructions berth executes per
//! operation, counted by valgrind's callgrind.
//!
//! Wall-clock ratios move with whatever else the machine does; instruction
//! counts do not. For each scenario and each berth variant, berth runs
//! twice under callgrind, serving the same fixture: once for `short`
//! operations and once for `long`, each after the same warm-up, on one
//! connection, one operation at a time. Each process is stopped with
//! SIGTERM so callgrind writes its totals; the difference of the two totals
//! divided by the difference of the operation counts is the cost of one
//! operation, with start-up, migrations, the fixture, the warm-up and
//! shutdown cancelled out. With `--peer unobserved` the same berth with
//! metrics and the access log off is counted too, which prices
//! observability in instructions.
//!
//! The long run's profile is kept (in `--callgrind-out`, when given) for
//! `callgrind_annotate`, which names where the instructions go.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use serde::Serialize;

use crate::payload::Payloads;
use crate::scenario::{self, Scenario};
use crate::server::{BerthSpec, Kind, Observe, Server};
use crate::{AuthMode, Peer, Settings};

/// Operations in the short and the long run (after the warm-up).
const OPS: [u64; 2] = [200, 1200];
const QUICK_OPS: [u64; 2] = [20, 120];
/// Operations before either run is counted from.
const WARM_UP: u64 = 50;

/// One scenario's cost on one berth variant.
#[derive(Debug, Clone, Serialize)]
pub struct Count {
    /// Scenario name.
    pub scenario: String,
    /// Which berth (`berth`, `berth-unobserved`).
    pub server: &'static str,
    /// Instructions (callgrind `Ir`) per operation.
    pub instructions_per_op: f64,
    /// Totals of the short and the long run.
    pub totals: [u64; 2],
    /// Operations of the short and the long run.
    pub ops: [u64; 2],
}

/// What `--instructions` found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The berth binary counted.
    pub berth_bin: PathBuf,
    /// Authentication on every request (`--berth-auth`).
    pub berth_auth: Option<String>,
    /// Every count, scenario by scenario.
    pub counts: Vec<Count>,
}

impl Report {
    /// The counts as a markdown table.
    pub fn markdown(&self) -> String {
        let mut out = String::from("| scenario | server | instructions per operation | vs first |\n| --- | --- | --- | --- |\n");
        for (c, base) in self.with_base() {
            out.push_str(&format!(
                "| {} | {} | {:.0} | {:.3} |\n",
                c.scenario,
                c.server,
                c.instructions_per_op,
                c.instructions_per_op / base
            ));
        }
        out
    }

    /// Each count with the count of the first server of its scenario.
    fn with_base(&self) -> Vec<(&Count, f64)> {
        let mut first: Option<(&str, f64)> = None;
        self.counts
            .iter()
            .map(|c| {
                let base = match first {
                    Some((s, v)) if s == c.scenario => v,
                    _ => {
                        first = Some((&c.scenario, c.instructions_per_op));
                        c.instructions_per_op
                    }
                };
                (c, base)
            })
            .collect()
    }

    /// A plain-text table: instructions per operation, and with two
    /// variants the ratio to the first.
    pub fn table(&self) -> String {
        let mut out = format!(
            "instructions per operation (callgrind Ir), {}{}\n",
            self.berth_bin.display(),
            self.berth_auth
                .as_deref()
                .map(|a| format!(", auth {a}"))
                .unwrap_or_default()
        );
        out.push_str(&format!(
            "{:<16} {:<18} {:>14} {:>12}\n",
            "scenario", "server", "Ir/op", "vs first"
        ));
        for (c, base) in self.with_base() {
            out.push_str(&format!(
                "{:<16} {:<18} {:>14.0} {:>12.3}\n",
                c.scenario,
                c.server,
                c.instructions_per_op,
                c.instructions_per_op / base
            ));
        }
        out
    }
}

/// The scenarios counted when none are named: the hot paths of issue 21.
pub fn default_scenarios() -> Vec<Scenario> {
    vec![
        Scenario::ManifestGet,
        Scenario::ManifestHead,
        Scenario::PushMonolithic(1024),
        Scenario::PushChunked(1024),
        Scenario::Pull(1024),
    ]
}

/// Counts every scenario of `settings` on the berth variants its peer
/// asks for, with data under `work`.
pub async fn run(
    settings: &Settings,
    work: &Path,
    payloads: Arc<Payloads>,
    keep: Option<&Path>,
) -> anyhow::Result<Report> {
    which_valgrind()?;
    let kinds: &[Kind] = if settings.peer == Peer::Unobserved {
        &[Kind::Berth, Kind::BerthUnobserved]
    } else {
        &[Kind::Berth]
    };
    let ops = if settings.quick { QUICK_OPS } else { OPS };
    let mut counts = Vec::new();
    for &scenario in &settings.scenarios {
        for &kind in kinds {
            let mut totals = [0u64; 2];
            for (i, &n) in ops.iter().enumerate() {
                let label = format!("{}-{}-{n}", scenario.name(), kind.name());
                let t = Instant::now();
                let out = work.join(format!("callgrind.{label}.out"));
                totals[i] = count(settings, work, &payloads, scenario, kind, n, &label, &out)
                    .await
                    .with_context(|| format!("counting {label}"))?;
                progress(format_args!(
                    "{label}: {} instructions in {:.0}s",
                    totals[i],
                    t.elapsed().as_secs_f64()
                ));
                if let (Some(dir), 1) = (keep, i) {
                    std::fs::create_dir_all(dir)?;
                    let to = dir.join(format!("callgrind.{}-{}.out", scenario.name(), kind.name()));
                    std::fs::copy(&out, &to)
                        .with_context(|| format!("keeping the profile as {}", to.display()))?;
                }
                let _ = std::fs::remove_file(&out);
            }
            let per_op = totals[1].saturating_sub(totals[0]) as f64 / (ops[1] - ops[0]) as f64;
            if totals[1] <= totals[0] {
                bail!(
                    "{} on {}: the long run counted {} instructions, not more than the short run's {}; the counts are not usable",
                    scenario.name(),
                    kind.name(),
                    totals[1],
                    totals[0]
                );
            }
            counts.push(Count {
                scenario: scenario.name(),
                server: kind.name(),
                instructions_per_op: per_op,
                totals,
                ops,
            });
        }
    }
    Ok(Report {
        berth_bin: settings.berth_bin.clone(),
        berth_auth: settings.berth_auth.map(|a| format!("{a:?}").to_lowercase()),
        counts,
    })
}

fn progress(msg: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "bench: {msg}");
}

fn which_valgrind() -> anyhow::Result<()> {
    let ok = Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        bail!("--instructions runs berth under valgrind, which is not installed (Debian: apt install valgrind)");
    }
    Ok(())
}

/// One counted run: berth `kind` under callgrind (profile to `out`), the
/// scenario prepared, warmed up, then `n` operations; the total `Ir` of the
/// whole process.
#[allow(clippy::too_many_arguments)]
async fn count(
    settings: &Settings,
    work: &Path,
    payloads: &Arc<Payloads>,
    scenario: Scenario,
    kind: Kind,
    n: u64,
    label: &str,
    out: &Path,
) -> anyhow::Result<u64> {
    let data = work.join(label);
    let spec = BerthSpec {
        bin: &settings.berth_bin,
        kind,
        auth: settings.berth_auth.is_some(),
        tls: None,
        s3: None,
        observe: match kind {
            Kind::BerthUnobserved => Observe::Nothing,
            _ if settings.peer == Peer::Unobserved => Observe::Everything,
            _ => Observe::Defaults,
        },
        database_url: None,
        replicas: 1,
        callgrind: Some(out),
    };
    let mut server = Server::berth(spec, &data)?;
    if settings.berth_auth == Some(AuthMode::Bearer) {
        server.use_bearer_token().await?;
    }
    let mut conn = server.conn();
    let fixture = scenario::prepare(scenario, payloads.clone(), &mut conn, settings.tags).await?;
    conn.connect().await?;
    for seq in 0..WARM_UP + n {
        fixture.op(&mut conn, seq).await?;
    }
    drop(conn);
    server.terminate(std::time::Duration::from_secs(300))?;
    let _ = std::fs::remove_dir_all(&data);
    totals(out)
}

/// The `totals:` (or `summary:`) line of a callgrind profile.
fn totals(path: &Path) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading callgrind's profile {}", path.display()))?;
    text.lines()
        .rev()
        .find_map(|l| {
            l.strip_prefix("totals:")
                .or_else(|| l.strip_prefix("summary:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .with_context(|| format!("no totals in callgrind's profile {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::totals;

    #[test]
    fn totals_come_from_the_profile_footer() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("callgrind.out");
        std::fs::write(
            &p,
            "version: 1\nevents: Ir\nfn=main\n1 10\nsummary: 1234\ntotals: 1234\n",
        )
        .unwrap();
        assert_eq!(totals(&p).unwrap(), 1234);
        std::fs::write(&p, "events: Ir\n").unwrap();
        assert!(totals(&p).is_err());
    }
}
