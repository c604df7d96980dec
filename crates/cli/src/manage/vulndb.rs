//! `berth vulndb`: the registry's offline vulnerability database.
//!
//! `import PATH...` reads OSV records (an `all.zip` as OSV publishes one
//! per ecosystem, a directory of `*.json` records, or one record file) on
//! this machine and sends them to the registry in batches; each PATH is one
//! import, recorded with its source and time. Reading and sending overlap:
//! a blocking task reads the next batch while the last one is stored.
//! `status` shows what is loaded per ecosystem and how old it is.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use berth_scan::vuln::osv::Source;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{print_json, print_table, time, Api, Format, ManageArgs};

/// The offline vulnerability database: import OSV data, show what is loaded.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub manage: ManageArgs,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Import OSV records: per-ecosystem all.zip files, directories of *.json records, or
    /// record files (records whose `modified` did not change are skipped).
    Import(ImportArgs),
    /// What is loaded per ecosystem, how old it is, and the latest imports.
    Status,
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// OSV all.zip files, directories of records, or record files.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Records sent per request.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=5000))]
    pub batch: u64,
}

/// Bytes of records per request at most (the server takes 32 MiB).
const BATCH_BYTES: usize = 8 << 20;

#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize)]
struct Counts {
    new: u64,
    changed: u64,
    unchanged: u64,
    withdrawn: u64,
    invalid: u64,
}

#[derive(Debug, Deserialize)]
struct BatchReport {
    #[serde(flatten)]
    counts: Counts,
    #[serde(default)]
    invalid_records: Vec<Invalid>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Invalid {
    id: String,
    message: String,
}

#[derive(Debug, Serialize)]
struct ImportSummary {
    source: String,
    import: String,
    #[serde(flatten)]
    counts: Counts,
    invalid_records: Vec<Invalid>,
    seconds: f64,
}

/// Runs `berth vulndb`.
pub async fn run(args: &Args) -> anyhow::Result<()> {
    let api = args.manage.api().await?;
    match &args.command {
        Command::Import(i) => import(&api, i).await,
        Command::Status => status(&api).await,
    }
}

fn import_id() -> anyhow::Result<String> {
    let mut bytes = [0u8; 6];
    getrandom::getrandom(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("{}-{hex}", berth_registry::now_ms()))
}

enum Read {
    Batch(Vec<Value>, Vec<Invalid>),
    Failed(anyhow::Error),
}

async fn import(api: &Api, args: &ImportArgs) -> anyhow::Result<()> {
    let mut summaries = Vec::new();
    for path in &args.paths {
        let source = Source::of(path).with_context(|| format!("cannot read {}", path.display()))?;
        let name = path.display().to_string();
        let id = import_id()?;
        let started = Instant::now();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Read>(2);
        let per_batch = args.batch as usize;
        let reader = tokio::task::spawn_blocking(move || {
            let mut batch = Vec::new();
            let mut bad = Vec::new();
            let mut bytes_in_batch = 0usize;
            let sent = source.for_each(|file, bytes| -> anyhow::Result<()> {
                match serde_json::from_slice::<Value>(&bytes) {
                    Ok(v) => {
                        bytes_in_batch += bytes.len();
                        batch.push(v);
                    }
                    Err(e) => bad.push(Invalid {
                        id: file.to_owned(),
                        message: format!("not JSON: {e}"),
                    }),
                }
                if batch.len() >= per_batch || bytes_in_batch >= BATCH_BYTES {
                    bytes_in_batch = 0;
                    let full = Read::Batch(std::mem::take(&mut batch), std::mem::take(&mut bad));
                    tx.blocking_send(full)
                        .map_err(|_| anyhow::anyhow!("the import stopped"))?;
                }
                Ok(())
            });
            let last = match sent {
                Ok(()) => Read::Batch(batch, bad),
                Err(e) => Read::Failed(e),
            };
            let _ = tx.blocking_send(last);
        });
        let mut total = Counts::default();
        let mut invalid = Vec::new();
        let mut sent_any = false;
        while let Some(read) = rx.recv().await {
            let (records, bad) = match read {
                Read::Batch(r, b) => (r, b),
                Read::Failed(e) => {
                    return Err(e.context(format!("reading {name}")));
                }
            };
            total.invalid += bad.len() as u64;
            invalid.extend(bad);
            // An empty last batch is sent only when nothing was: the
            // import is recorded either way.
            if records.is_empty() && sent_any {
                continue;
            }
            sent_any = true;
            let body = serde_json::json!({ "import": id, "source": name, "records": records });
            let report: BatchReport = api
                .call(Method::POST, "/vulndb/imports", &body)
                .await
                .with_context(|| format!("importing {name}"))?;
            total.new += report.counts.new;
            total.changed += report.counts.changed;
            total.unchanged += report.counts.unchanged;
            total.withdrawn += report.counts.withdrawn;
            total.invalid += report.counts.invalid;
            invalid.extend(report.invalid_records);
            if api.format != Format::Json {
                eprint!(
                    "\r{name}: {} records",
                    total.new + total.changed + total.unchanged + total.invalid
                );
            }
        }
        reader.await.context("the reading task failed")?;
        let summary = ImportSummary {
            source: name,
            import: id,
            counts: total,
            invalid_records: invalid,
            seconds: started.elapsed().as_secs_f64(),
        };
        if api.format != Format::Json {
            eprintln!();
            for bad in summary.invalid_records.iter().take(20) {
                eprintln!("  refused {}: {}", bad.id, bad.message);
            }
            if summary.invalid_records.len() > 20 {
                eprintln!(
                    "  ... and {} more refused",
                    summary.invalid_records.len() - 20
                );
            }
            let c = summary.counts;
            let n = c.new + c.changed + c.unchanged + c.invalid;
            println!(
                "{}: {} new, {} changed, {} unchanged, {} withdrawn, {} invalid ({n} records in {:.1} s, {:.0} records/s)",
                summary.source,
                c.new,
                c.changed,
                c.unchanged,
                c.withdrawn,
                c.invalid,
                summary.seconds,
                n as f64 / summary.seconds.max(0.001)
            );
        }
        summaries.push(summary);
    }
    if api.format == Format::Json {
        print_json(&summaries)?;
    }
    Ok(())
}

fn age(seconds: Option<i64>) -> String {
    match seconds {
        None => "-".to_owned(),
        Some(s) => berth_oci::duration::format(std::time::Duration::from_secs(s.max(0) as u64)),
    }
}

async fn status(api: &Api) -> anyhow::Result<()> {
    let v: Value = api.get("/vulndb", &[]).await?;
    if api.format == Format::Json {
        return print_json(&v);
    }
    let empty = Vec::new();
    let ecosystems = v["ecosystems"].as_array().unwrap_or(&empty);
    if ecosystems.is_empty() {
        println!(
            "no vulnerability data loaded: run `berth vulndb import PATH` with OSV all.zip files"
        );
        return Ok(());
    }
    let rows: Vec<Vec<String>> = ecosystems
        .iter()
        .map(|e| {
            vec![
                e["ecosystem"].as_str().unwrap_or("-").to_owned(),
                e["records"].as_u64().unwrap_or(0).to_string(),
                time(e["newest_modified_at"].as_i64()),
                time(e["last_import_at"].as_i64()),
                age(e["age_seconds"].as_i64()),
                e["last_import_source"].as_str().unwrap_or("-").to_owned(),
            ]
        })
        .collect();
    print_table(
        &[
            "ECOSYSTEM",
            "RECORDS",
            "NEWEST MODIFIED",
            "LAST IMPORT",
            "AGE",
            "SOURCE",
        ],
        &rows,
    );
    let imports = v["imports"].as_array().unwrap_or(&empty);
    if !imports.is_empty() {
        println!();
        let rows: Vec<Vec<String>> = imports
            .iter()
            .map(|i| {
                let n = |k: &str| i[k].as_u64().unwrap_or(0).to_string();
                vec![
                    time(i["started_at"].as_i64()),
                    i["actor"].as_str().unwrap_or("-").to_owned(),
                    n("new"),
                    n("changed"),
                    n("unchanged"),
                    n("withdrawn"),
                    n("invalid"),
                    i["source"].as_str().unwrap_or("-").to_owned(),
                ]
            })
            .collect();
        print_table(
            &[
                "IMPORTED",
                "BY",
                "NEW",
                "CHANGED",
                "UNCHANGED",
                "WITHDRAWN",
                "INVALID",
                "SOURCE",
            ],
            &rows,
        );
    }
    Ok(())
}
