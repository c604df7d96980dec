//! `berth gc`: run garbage collection on a registry, or preview it.

use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::{print_json, print_table, Api, Format, ManageArgs};
use berth_tools::copy::progress::human;

/// Remove unreferenced blobs and abandoned uploads (online; past the grace period).
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Report what would be removed, and remove nothing.
    #[arg(long)]
    pub dry_run: bool,
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
struct Report {
    dry_run: bool,
    now: i64,
    cutoff: i64,
    links: Vec<Item>,
    blobs: Vec<Item>,
    uploads: Vec<Upload>,
    reclaimed_bytes: u64,
    kept_recent: usize,
}

/// Runs `berth gc`.
pub async fn run(args: &Args) -> anyhow::Result<()> {
    let api = Api::new(&args.manage).await?;
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
        report.links.len(),
        report.blobs.len(),
        report.uploads.len(),
        human(report.reclaimed_bytes),
    );
    if report.kept_recent > 0 {
        println!(
            "{} unreferenced blobs are younger than the grace period and were kept",
            report.kept_recent
        );
    }
    Ok(())
}
