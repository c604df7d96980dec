//! The run itself: disk rate, idle memory, then every scenario on fresh
//! servers at every concurrency, alternating the servers.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;

use crate::load::{self, Limits, Sample};
use crate::payload::Payloads;
use crate::report::{Cell, Report};
use crate::scenario::{self, Scenario, StaticFile};
use crate::scrub;
use crate::server::{data_dirs, BerthSpec, Kind, Observe, Server};
use crate::{disk, AuthMode, Peer, Settings};

fn progress(msg: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr().lock(), "bench: {msg}");
}

/// Starts server `kind` on `data` for scenario `label`; nginx serves
/// `file`.
fn start(
    settings: &Settings,
    kind: Kind,
    data: &Path,
    label: &str,
    file: Option<&StaticFile>,
) -> anyhow::Result<Server> {
    // Replicas (and the one replica compared with them) keep their
    // metadata in a fresh PostgreSQL database of their own.
    let database_url = settings
        .database
        .as_ref()
        .filter(|_| !matches!(kind, Kind::Distribution | Kind::Nginx))
        .map(|db| db.create(&format!("{}_{label}", kind.name()).replace('-', "_")));
    let spec = BerthSpec {
        bin: &settings.berth_bin,
        kind,
        auth: settings.berth_auth.is_some(),
        tls: settings.tls.as_ref(),
        s3: settings.s3.as_ref(),
        observe: Observe::Defaults,
        database_url: database_url.as_deref(),
        replicas: 1,
        callgrind: None,
    };
    match kind {
        Kind::Berth => Server::berth(
            BerthSpec {
                observe: if settings.peer == Peer::Unobserved {
                    Observe::Everything
                } else {
                    Observe::Defaults
                },
                replicas: settings.replicas,
                ..spec
            },
            data,
        ),
        Kind::BerthUnobserved => Server::berth(
            BerthSpec {
                observe: Observe::Nothing,
                ..spec
            },
            data,
        ),
        Kind::BerthOneReplica | Kind::BerthUnscrubbed => Server::berth(spec, data),
        Kind::Distribution => Server::distribution(
            &settings.distribution_bin,
            data,
            settings.tls.as_ref(),
            settings.s3.as_ref(),
        ),
        Kind::Nginx => Server::nginx(&settings.nginx_bin, data, file),
    }
}

/// Starts berth and its peer on fresh directories of `label` (nginx
/// serving `file`).
fn start_pair(
    settings: &Settings,
    work: &Path,
    label: &str,
    file: Option<&StaticFile>,
) -> anyhow::Result<[Server; 2]> {
    let peer = settings.peer.kind();
    let (b, d) = data_dirs(work, peer, label);
    Ok([
        start(settings, Kind::Berth, &b, label, None)?,
        start(settings, peer, &d, label, file)?,
    ])
}

fn remove_pair(settings: &Settings, work: &Path, label: &str) {
    let (b, d) = data_dirs(work, settings.peer.kind(), label);
    for dir in [b, d] {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// RSS of each server after start and one `GET /v2/`, and berth's
/// anonymous part of it.
async fn idle_rss(settings: &Settings, work: &Path) -> anyhow::Result<([u64; 2], u64)> {
    let servers = start_pair(settings, work, "idle", None)?;
    for s in &servers {
        let mut c = s.conn();
        let resp = c
            .send(http::Method::GET, "/v2/", &[], Default::default())
            .await?;
        crate::client::drain(resp).await?;
    }
    tokio::time::sleep(settings.idle_settle).await;
    let rss = [servers[0].memory()?.0, servers[1].memory()?.0];
    let anonymous = servers[0].anonymous_rss()?;
    drop(servers);
    remove_pair(settings, work, "idle");
    Ok((rss, anonymous))
}

fn limits(settings: &Settings, scenario: Scenario) -> Limits {
    let max_ops = match scenario {
        Scenario::Pull(_) if scenario.is_large() => settings.large_pull_ops,
        _ if scenario.is_large() => settings.large_push_ops,
        _ => u64::MAX,
    };
    Limits {
        duration: settings.duration,
        max_ops,
    }
}

async fn run_scenario(
    settings: &Settings,
    work: &Path,
    payloads: &Arc<Payloads>,
    scenario: Scenario,
    cells: &mut Vec<Cell>,
) -> anyhow::Result<()> {
    let label = scenario.name();
    // A static peer serves the fixture's manifest from a file instead of
    // being prepared through the API.
    let prepared_static = (settings.peer == Peer::Nginx)
        .then(|| scenario::prepare_static(scenario, payloads.clone()))
        .transpose()?;
    let (static_fixture, file) = prepared_static.unzip();
    let mut servers = start_pair(settings, work, &label, file.as_ref())?;
    if settings.berth_auth == Some(AuthMode::Bearer) {
        for s in &mut servers {
            if s.kind != Kind::Distribution && s.kind != Kind::Nginx {
                s.use_bearer_token().await?;
            }
        }
    }
    let t = Instant::now();
    let mut fixtures = Vec::new();
    for s in &servers {
        if let (Kind::Nginx, Some(f)) = (s.kind, &static_fixture) {
            fixtures.push(f.clone());
            continue;
        }
        let mut conn = s.conn();
        let f = scenario::prepare(scenario, payloads.clone(), &mut conn, settings.tags)
            .await
            .with_context(|| format!("preparing {label} on {}", s.kind.name()))?;
        fixtures.push(f);
    }
    if settings.peer == Peer::Unscrubbed {
        for s in &servers {
            scrub::push_ballast(s, payloads, scrub::ballast_blobs(settings.quick)).await?;
        }
    }
    progress(format_args!(
        "{label}: prepared in {:.1}s",
        t.elapsed().as_secs_f64()
    ));
    let limits = limits(settings, scenario);
    let access_log = (settings.peer == Peer::Unobserved).then(|| {
        data_dirs(work, settings.peer.kind(), &label)
            .0
            .with_extension("log")
    });
    if access_log.is_some() {
        check_observability(&servers).await?;
    }
    for &c in &settings.concurrency {
        let logged_before = access_log.as_deref().map(count_lines);
        let mut samples = [Sample::default(), Sample::default()];
        let mut scrubbed = scrub::Tally::default();
        for round in 0..settings.rounds {
            let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            for i in order {
                let before = settings.s3.as_ref().and_then(|s| s.requests());
                // Only berth scrubs, and only while it is measured: the
                // scrub's last request ends before the peer's run starts.
                let scrubbing = (settings.peer == Peer::Unscrubbed && i == 0)
                    .then(|| scrub::Scrubbing::start(&servers[0]));
                let mut s = load::run(&servers[i], &fixtures[i], c, limits).await?;
                if let Some(scrubbing) = scrubbing {
                    scrubbed.merge(scrubbing.stop().await?);
                }
                let after = settings.s3.as_ref().and_then(|s| s.requests());
                if let (Some(a), Some(b)) = (before, after) {
                    s.store_requests = Some(b.saturating_sub(a));
                }
                samples[i].merge(s);
            }
        }
        let [b, d] = samples;
        let target = match settings.peer {
            Peer::Reference => scenario.target(settings.s3.is_some()),
            Peer::Unobserved => crate::report::OBSERVABILITY_TARGET,
            Peer::OneReplica => crate::report::REPLICAS_TARGET,
            Peer::Nginx if settings.berth_auth.is_some() => crate::report::NGINX_TARGET_AUTH,
            Peer::Nginx => crate::report::NGINX_TARGET,
            Peer::Unscrubbed => crate::report::SCRUB_TARGET,
        };
        let measured = b.elapsed;
        let mut cell = Cell::new(scenario, c, b, d, target);
        if settings.peer == Peer::Unscrubbed {
            anyhow::ensure!(
                scrubbed.bytes > 0,
                "{label} c={c}: berth's scrub read nothing while berth was measured, so the comparison would not be about it"
            );
            cell.berth_scrub = Some(crate::report::ScrubFigures::new(scrubbed, measured));
        }
        if let (Some(log), Some(before)) = (access_log.as_deref(), logged_before) {
            cell.berth_access_log_lines = Some(count_lines(log).saturating_sub(before));
        }
        progress(format_args!(
            "{label} c={c}: berth {:.0}/s, {} {:.0}/s, ratio {:.2}",
            cell.berth.ops_per_s,
            servers[1].kind.name(),
            cell.peer.ops_per_s,
            cell.ratio
        ));
        cells.push(cell);
    }
    drop(servers);
    remove_pair(settings, work, &label);
    Ok(())
}

/// With `--peer unobserved`: berth serves `/metrics` and its peer does not
/// (so the two really differ in what the comparison is about).
async fn check_observability(servers: &[Server; 2]) -> anyhow::Result<()> {
    for (s, want) in servers.iter().zip([200u16, 404]) {
        let mut c = s.conn();
        let resp = c
            .send(http::Method::GET, "/metrics", &[], Default::default())
            .await?;
        let status = resp.status().as_u16();
        crate::client::drain(resp).await?;
        anyhow::ensure!(
            status == want,
            "{} answered GET /metrics with {status}, expected {want}: metrics are not {} as the comparison needs",
            s.kind.name(),
            if want == 200 { "on" } else { "off" }
        );
    }
    Ok(())
}

/// Lines in berth's access log file so far (0 if it cannot be read).
fn count_lines(path: &Path) -> u64 {
    std::fs::read(path).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count() as u64)
}

/// Runs everything `settings` asks for, with data under `work`.
pub async fn run(
    settings: &Settings,
    work: &Path,
    payloads: Arc<Payloads>,
) -> anyhow::Result<Report> {
    let began = Instant::now();
    let disk_mb_s =
        disk::write_rate(work, settings.disk_test_mib).context("measuring the disk write rate")?;
    progress(format_args!("disk write+fdatasync: {disk_mb_s:.0} MB/s"));
    let (idle, idle_anonymous) = idle_rss(settings, work)
        .await
        .context("measuring idle RSS")?;
    let mut cells = Vec::new();
    for &scenario in &settings.scenarios {
        run_scenario(settings, work, &payloads, scenario, &mut cells).await?;
    }
    Ok(Report::new(
        settings,
        work,
        disk_mb_s,
        (idle, idle_anonymous),
        cells,
        began.elapsed(),
    ))
}
