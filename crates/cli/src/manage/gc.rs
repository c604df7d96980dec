//! `berth gc`: run garbage collection on a registry, or preview it.

use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::{print_json, print_table, time, Api, Format, ManageArgs};
use berth_tools::copy::progress::human;

/// Remove unreferenced blobs and abandoned uploads (online; past the grace period).
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Report what would be removed and what the grace period still holds
    /// (and until when), and remove nothing.
    #[arg(long, conflicts_with = "status")]
    pub dry_run: bool,
    /// Show the schedule instead: the interval, the last run and when the
    /// next one is due.
    #[arg(long)]
    pub status: bool,
    #[command(flatten)]
    pub manage: ManageArgs,
}

#[derive(Debug, Deserialize, Serialize)]
struct Item {
    repository: Option<String>,
    digest: String,
    size: u64,
}

#[derive(Debug, Deserialize, Serialize)]
struct Upload {
    id: String,
    repository: String,
    size: u64,
}

#[derive(Debug, Deserialize, Serialize)]
struct Held {
    repository: Option<String>,
    digest: String,
    size: u64,
    until: i64,
}

#[derive(Debug, Default, Deserialize, Serialize)]
struct Counts {
    links: usize,
    blobs: usize,
    uploads: usize,
    held: usize,
}

#[derive(Debug, Deserialize, Serialize)]
struct Report {
    dry_run: bool,
    now: i64,
    cutoff: i64,
    #[serde(default)]
    grace_period: String,
    links: Vec<Item>,
    blobs: Vec<Item>,
    uploads: Vec<Upload>,
    #[serde(default)]
    held: Vec<Held>,
    #[serde(default)]
    counts: Counts,
    reclaimed_bytes: u64,
    #[serde(default)]
    held_bytes: u64,
    held_until: Option<i64>,
    kept_recent: usize,
    #[serde(default)]
    interrupted: bool,
}

#[derive(Debug, Deserialize, Serialize)]
struct Run {
    started_at: i64,
    finished_at: Option<i64>,
    ok: Option<bool>,
    summary: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize, Serialize)]
struct Schedule {
    interval: Option<String>,
    grace_period: String,
    last_run: Option<Run>,
    next_run_at: Option<i64>,
    running_on: Option<String>,
}

/// Prints the schedule of garbage collection.
async fn status(api: &Api) -> anyhow::Result<()> {
    let s: Schedule = api.get("/gc", &[]).await?;
    if api.format == Format::Json {
        return print_json(&s);
    }
    match &s.interval {
        Some(every) => println!("schedule:      every {every} after the last run"),
        None => println!("schedule:      on demand only (gc_interval = 0)"),
    }
    println!("grace period:  {}", s.grace_period);
    match &s.last_run {
        Some(r) => {
            let outcome = match r.ok {
                Some(true) => "ok".to_owned(),
                Some(false) => format!(
                    "failed or interrupted: {}",
                    r.summary
                        .as_ref()
                        .map(|v| v.to_string())
                        .unwrap_or_default()
                ),
                None => "running (or ended without a record)".to_owned(),
            };
            println!("last run:      {} ({outcome})", time(Some(r.started_at)));
        }
        None => println!("last run:      never"),
    }
    if let Some(holder) = &s.running_on {
        println!("running now:   on {holder}");
    }
    match s.next_run_at {
        Some(at) => println!("next run:      {}", time(Some(at))),
        None => println!("next run:      none scheduled"),
    }
    Ok(())
}

/// Runs `berth gc`.
pub async fn run(args: &Args) -> anyhow::Result<()> {
    let api = Api::new(&args.manage).await?;
    if args.status {
        return status(&api).await;
    }
    let body = serde_json::json!({ "dry_run": args.dry_run });
    let report: Report = api.call(Method::POST, "/gc", &body).await?;
    if api.format == Format::Json {
        return print_json(&report);
    }
    let mut rows = Vec::new();
    for l in &report.links {
        let repo = l.repository.clone().unwrap_or_default();
        rows.push(vec!["link".into(), repo, l.digest.clone(), human(l.size)]);
    }
    for b in &report.blobs {
        rows.push(vec![
            "blob".into(),
            "-".into(),
            b.digest.clone(),
            human(b.size),
        ]);
    }
    for u in &report.uploads {
        let what = format!("upload {}", u.id);
        rows.push(vec![
            "upload".into(),
            u.repository.clone(),
            what,
            human(u.size),
        ]);
    }
    for h in &report.held {
        let repo = h.repository.clone().unwrap_or_else(|| "-".into());
        let what = format!("{} (held until {})", h.digest, time(Some(h.until)));
        rows.push(vec!["held".into(), repo, what, human(h.size)]);
    }
    if !rows.is_empty() {
        print_table(&["KIND", "REPOSITORY", "DIGEST", "SIZE"], &rows);
        println!();
    }
    let verb = if report.dry_run {
        "would be reclaimed (dry run: nothing was deleted)"
    } else {
        "reclaimed"
    };
    println!(
        "{} links, {} blobs, {} uploads; {} {verb}",
        report.counts.links,
        report.counts.blobs,
        report.counts.uploads,
        human(report.reclaimed_bytes),
    );
    if report.counts.held > 0 {
        println!(
            "{} unreferenced links and blobs ({}) are younger than the grace period ({}) and \
             are kept until {} at the latest; a run after that reclaims them",
            report.counts.held,
            human(report.held_bytes),
            report.grace_period,
            time(report.held_until),
        );
    }
    let listed = report.links.len() + report.blobs.len() + report.uploads.len() + report.held.len();
    let total =
        report.counts.links + report.counts.blobs + report.counts.uploads + report.counts.held;
    if listed < total {
        println!("(the table lists the first 1000 of each kind; -o json has the same lists)");
    }
    if report.interrupted {
        println!("the server began shutting down: the run stopped early; run it again later");
    }
    Ok(())
}
