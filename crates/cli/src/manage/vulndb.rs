//! `berth vulndb`: the registry's offline vulnerability database.
//!
//! `import PATH...` reads OSV records (an `all.zip` as OSV publishes one
//! per ecosystem, a directory of `*.json` records, or one record file) on
//! this machine and sends them to the registry in batches; each PATH is one
//! import, recorded with its source and time. Reading and sending overlap:
//! a blocking task reads the next batch while the last one is stored.
//! `status` shows what is loaded per ecosystem and how old it is.
//!
//! For air-gapped sites the database travels as one OCI artifact
//! ([`berth_tools::vulndb`]): `push DEST PATH...` packs OSV inputs into one
//! and writes it to a registry or an OCI layout; `import docker://REF` (or
//! `oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]`, the transports of `berth
//! copy`) fetches it, verifies every digest before anything is imported,
//! and imports each layer as the import of an `all.zip` does, recorded with
//! the artifact's reference and digest as its source.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use berth_scan::vuln::osv::Source;
use berth_tools::copy::Location;
use berth_tools::registry_args::RegistryArgs;
use berth_tools::vulndb::Input;
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
    /// Import OSV records: per-ecosystem all.zip files, directories of *.json records, record
    /// files, or a database artifact (docker://REF, oci:DIR[:TAG], oci-archive:FILE[:TAG]) made
    /// by `berth vulndb push` (records whose `modified` did not change are skipped).
    Import(ImportArgs),
    /// Pack OSV inputs (all.zip files, directories, record files) into one OCI artifact
    /// (artifactType application/vnd.berth.vulndb.v1) and push it to a registry or OCI layout.
    Push(PushArgs),
    /// What is loaded per ecosystem, how old it is, and the latest imports.
    Status,
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// OSV all.zip files, directories of records, record files, or a database artifact:
    /// docker://REF, oci:DIR[:TAG], oci-archive:FILE[:TAG].
    #[arg(required = true, value_name = "PATH|docker://REF|oci:DIR[:TAG]")]
    pub paths: Vec<String>,
    /// Records sent per request.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=5000))]
    pub batch: u64,
    /// Where an artifact is read from.
    #[command(flatten)]
    pub access: ArtifactAccess,
}

#[derive(Debug, clap::Args)]
pub struct PushArgs {
    /// Where to: REF | docker://REF | oci:DIR[:TAG] | oci-archive:FILE[:TAG] (a registry
    /// without a tag gets `latest`).
    #[arg(value_name = "DEST")]
    pub destination: String,
    /// OSV all.zip files, directories of records, or record files: one layer each. Without
    /// PATHs, what the registry (--registry; site admins) has loaded is packed, one layer per
    /// ecosystem.
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Where the artifact is written to.
    #[command(flatten)]
    pub access: ArtifactAccess,
}

/// How to reach the registry holding an artifact: the credential lookup of
/// `berth copy` (--authfile, the containers and Docker auth files,
/// --cert-dir and --ca-cert are shared with the management flags).
#[derive(Debug, Clone, clap::Args)]
pub struct ArtifactAccess {
    /// Credentials for the artifact's registry as `[REGISTRY=]USER:PASSWORD` (repeatable).
    #[arg(long = "creds", value_name = "[REGISTRY=]USER:PASSWORD")]
    pub creds: Vec<String>,
    /// Registries (host[:port]) to reach over plain HTTP (loopback always is).
    #[arg(long = "plain-http", value_name = "HOST")]
    pub plain_http: Vec<String>,
    /// Accept invalid TLS certificates of the artifact's registry.
    #[arg(long)]
    pub insecure: bool,
}

impl ArtifactAccess {
    fn client(
        &self,
        manage: &ManageArgs,
        location: &Location,
    ) -> anyhow::Result<Arc<berth_client::Client>> {
        let registries: Vec<&str> = match location {
            Location::Registry(r) => vec![r.registry.as_str()],
            _ => Vec::new(),
        };
        let args = RegistryArgs {
            authfile: manage.authfile.clone(),
            creds: self.creds.clone(),
            plain_http: self.plain_http.clone(),
            insecure: self.insecure,
            cert_dir: manage.cert_dir.clone(),
            ca_cert: manage.ca_cert.clone(),
        };
        Ok(args.client(&registries)?)
    }
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
    match &args.command {
        Command::Import(i) => import(&args.manage.api().await?, &args.manage, i).await,
        Command::Status => status(&args.manage.api().await?).await,
        Command::Push(p) => push(&args.manage, p).await,
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

async fn import(api: &Api, manage: &ManageArgs, args: &ImportArgs) -> anyhow::Result<()> {
    let mut summaries = Vec::new();
    for input in &args.paths {
        match berth_tools::vulndb::artifact_location(input) {
            None => {
                let path = PathBuf::from(input);
                let source =
                    Source::of(&path).with_context(|| format!("cannot read {}", path.display()))?;
                summaries.push(import_records(api, source, input.clone(), args.batch).await?);
            }
            Some(location) => {
                let location = location?;
                let client = args.access.client(manage, &location)?;
                let staged = berth_tools::vulndb::fetch(&location, &client).await?;
                let reference =
                    berth_tools::vulndb::recorded_reference(&location, &staged.digest());
                if api.format != Format::Json {
                    eprintln!(
                        "{reference}: {} layer(s), {} records, verified",
                        staged.layers.len(),
                        staged.records()
                    );
                }
                // Every layer was verified before the first is imported.
                for layer in &staged.layers {
                    let source = Source::Zip(staged.layer_path(layer));
                    let name = format!("{reference} {}", layer.title);
                    summaries.push(import_records(api, source, name, args.batch).await?);
                }
            }
        }
    }
    if api.format == Format::Json {
        print_json(&summaries)?;
    }
    Ok(())
}

/// Imports the records of one source as one import run named `name`.
async fn import_records(
    api: &Api,
    source: Source,
    name: String,
    batch: u64,
) -> anyhow::Result<ImportSummary> {
    let id = import_id()?;
    let started = Instant::now();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Read>(2);
    let per_batch = batch as usize;
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
    Ok(summary)
}

/// Writes what the registry has loaded (`GET /api/v1/vulndb/records`, page
/// by page) into `dir` as one OSV zip per ecosystem family (a record goes
/// with the family of its first affected package; `other.zip` holds those
/// without any).
async fn export_loaded(api: &Api, registry: &str, dir: &Path) -> anyhow::Result<Vec<Input>> {
    #[derive(Deserialize)]
    struct Page {
        records: Vec<Value>,
        next: Option<String>,
    }
    let mut zips: BTreeMap<String, zip::ZipWriter<std::io::BufWriter<std::fs::File>>> =
        BTreeMap::new();
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(zip::DateTime::default());
    let mut after = String::new();
    let mut total = 0u64;
    loop {
        let page: Page = api
            .get(
                "/vulndb/records",
                &[("after", after.clone()), ("limit", "1000".to_owned())],
            )
            .await
            .context("reading the loaded records")?;
        for r in &page.records {
            let family = r["affected"][0]["package"]["ecosystem"]
                .as_str()
                .map(|e| berth_scan::vuln::family(e).to_owned())
                .filter(|f| !f.is_empty() && !f.contains(['/', '\\', '.']))
                .unwrap_or_else(|| "other".to_owned());
            let zip = match zips.entry(family) {
                std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::btree_map::Entry::Vacant(v) => {
                    let file = std::fs::File::create(dir.join(format!("{}.zip", v.key())))?;
                    v.insert(zip::ZipWriter::new(std::io::BufWriter::new(file)))
                }
            };
            let id = r["id"]
                .as_str()
                .unwrap_or("record")
                .replace(['/', '\\'], "_");
            zip.start_file(format!("{id}.json"), opts)?;
            zip.write_all(&serde_json::to_vec(r)?)?;
            total += 1;
        }
        if api.format != Format::Json {
            eprint!("\r{registry}: {total} records read");
        }
        match page.next {
            Some(n) => after = n,
            None => break,
        }
    }
    if api.format != Format::Json {
        eprintln!();
    }
    if zips.is_empty() {
        anyhow::bail!(
            "{registry} has no vulnerability data loaded: name the OSV files to pack instead"
        );
    }
    let mut inputs = Vec::new();
    for (family, zip) in zips {
        zip.finish()?.into_inner().map_err(|e| e.into_error())?;
        inputs.push(Input {
            path: dir.join(format!("{family}.zip")),
            source: format!("{registry} (the loaded {family} records)"),
        });
    }
    Ok(inputs)
}

async fn push(manage: &ManageArgs, args: &PushArgs) -> anyhow::Result<()> {
    let location = Location::parse(&args.destination)?;
    let client = args.access.client(manage, &location)?;
    let export_dir = tempfile::tempdir()?;
    let inputs: Vec<Input> = if args.paths.is_empty() {
        export_loaded(&manage.api().await?, &manage.registry, export_dir.path()).await?
    } else {
        args.paths.iter().cloned().map(Input::from).collect()
    };
    let staged = tokio::task::spawn_blocking(move || berth_tools::vulndb::build(&inputs))
        .await
        .context("the packing task failed")??;
    let json = manage.format == Format::Json;
    let progress = berth_tools::copy::progress::for_stderr(json);
    let pushed = berth_tools::vulndb::push(&staged, &location, &client, &progress).await?;
    if json {
        return print_json(&pushed);
    }
    let rows: Vec<Vec<String>> = pushed
        .layers
        .iter()
        .map(|l| {
            vec![
                l.title.clone(),
                l.records.to_string(),
                l.ecosystems.join(","),
                l.modified.clone().unwrap_or_else(|| "-".to_owned()),
                l.digest.to_string(),
            ]
        })
        .collect();
    print_table(
        &[
            "LAYER",
            "RECORDS",
            "ECOSYSTEMS",
            "NEWEST MODIFIED",
            "DIGEST",
        ],
        &rows,
    );
    println!(
        "pushed {}{} @ {}: {} records in {} layer(s)",
        pushed.destination,
        match (&location, &pushed.tag) {
            (Location::Registry(r), Some(t)) if r.tag.is_none() => format!(" [{t}]"),
            _ => String::new(),
        },
        pushed.digest,
        pushed.records,
        pushed.layers.len()
    );
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
            "no vulnerability data loaded: run `berth vulndb import PATH` with OSV all.zip files, \
             or `berth vulndb import docker://REF` with a database artifact"
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
