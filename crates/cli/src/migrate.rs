//! `berth migrate`: moves a single-node registry (SQLite + filesystem
//! data directory, registry stopped) to PostgreSQL and, optionally, other
//! blob storage, for scale-out.
//!
//! Steps, each resumable by running the command again:
//!
//! 1. The target database is migrated to this binary's schema and checked:
//!    it must be empty, or hold the marker of a migration from the same
//!    source (a resumption). The marker records the source and the tables
//!    done so far.
//! 2. Every table is copied (generic over the schema, see
//!    `berth_meta::transfer`); rows already there are skipped.
//! 3. With `--to-storage`, every blob is copied through the `BlobStore`
//!    trait: the target verifies each digest while the bytes stream in,
//!    and blobs already there with the right size are skipped.
//!
//! Progress: a bar on a terminal, one line per step otherwise.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use berth_meta::transfer::Table;
use berth_meta::Meta;
use berth_store::{BlobBody, BlobStore, FsStore};
use futures_util::StreamExt as _;

use crate::config::DatabaseUrl;
use crate::progress::Progress;
use crate::storage::{self, S3Flags, Storage};

/// Arguments of `berth migrate`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The data directory of the registry to move (stopped): its
    /// `berth.db` and `blobs/` are read, never changed.
    #[arg(
        long,
        env = "BERTH_DATA_DIR",
        default_value = "berth-data",
        value_name = "DIR"
    )]
    pub data_dir: PathBuf,
    /// The PostgreSQL database to fill: `postgres://USER:PASSWORD@HOST/DB`.
    /// It must be empty, or hold an interrupted migration from the same
    /// data directory (which is then resumed).
    #[arg(
        long,
        env = "BERTH_TO_DATABASE_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub to_database_url: DatabaseUrl,
    /// Where the replicas keep blobs: `s3://BUCKET[/PREFIX]` (with the
    /// `--s3-*` options and the standard AWS credentials) or a directory
    /// (copied into its `blobs/`). Without it only the metadata moves and
    /// the blobs stay in DATA_DIR, which the replicas then share.
    #[arg(long, env = "BERTH_TO_STORAGE", value_name = "STORAGE")]
    pub to_storage: Option<String>,
    /// The object store of `--to-storage s3://...`.
    #[command(flatten)]
    pub s3: S3Flags,
}

/// What the marker on the target says.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Marker {
    /// The source data directory (canonical path).
    source: String,
    /// Tables copied completely.
    tables: Vec<String>,
    /// Whether the blobs were copied completely.
    blobs: bool,
    /// Whether everything was.
    complete: bool,
}

/// The target blob store named by `--to-storage`: a bucket (reached with
/// one request, so wrong settings fail before any copying) or a directory.
async fn target_store(spec: &str, args: &Args) -> anyhow::Result<Arc<dyn BlobStore>> {
    if spec.starts_with("s3://") {
        let storage: Storage = spec.parse().map_err(anyhow::Error::msg)?;
        return storage::open(&storage, &args.s3.options(), &args.data_dir, false).await;
    }
    if spec.contains("://") {
        bail!("unsupported --to-storage {spec:?} (give s3://BUCKET[/PREFIX] or a directory)");
    }
    let store = FsStore::open(spec).with_context(|| format!("opening blob storage in {spec}"))?;
    Ok(Arc::new(store))
}

/// Runs `berth migrate`.
pub async fn run(args: &Args) -> anyhow::Result<()> {
    let url = &args.to_database_url;
    if !url.is_postgres() {
        bail!("--to-database-url must name a PostgreSQL database (postgres://...), not {url}");
    }
    let db = args.data_dir.join("berth.db");
    if !db.is_file() {
        bail!(
            "no registry database at {} (give the registry's --data-dir)",
            db.display()
        );
    }
    let source_id = std::fs::canonicalize(&args.data_dir)
        .with_context(|| format!("reading {}", args.data_dir.display()))?
        .display()
        .to_string();
    let from = Meta::open_sqlite(&db)
        .await
        .with_context(|| format!("opening {}", db.display()))?;
    let to = Meta::connect(url.expose())
        .await
        .with_context(|| format!("connecting to the target database {url}"))?;
    let tables = from.tables().await?;

    let mut marker = match to.migration_marker().await? {
        Some(text) => {
            let m: Marker = serde_json::from_str(&text)
                .context("the target database's migration marker is unreadable")?;
            if m.source != source_id {
                bail!(
                    "the target database {url} holds a migration from {}, not from {source_id}: \
                     give an empty database",
                    m.source
                );
            }
            eprintln!("berth migrate: resuming the migration from {source_id}");
            m
        }
        None => {
            if to.holds_data(&tables).await? {
                bail!(
                    "the target database {url} is not empty: berth migrate fills an empty \
                     database (or resumes its own interrupted migration)"
                );
            }
            let m = Marker {
                source: source_id.clone(),
                ..Marker::default()
            };
            to.set_migration_marker(&serde_json::to_string(&m)?).await?;
            m
        }
    };

    let progress = Progress::new("berth migrate");
    copy_tables(&from, &to, &tables, &mut marker, &progress).await?;
    to.sync_identities(&tables).await?;
    if let Some(spec) = &args.to_storage {
        if !marker.blobs {
            let source = FsStore::open(&args.data_dir)
                .with_context(|| format!("opening blob storage in {}", args.data_dir.display()))?;
            let target = target_store(spec, args).await?;
            copy_blobs(&source, target.as_ref(), &progress).await?;
            marker.blobs = true;
            to.set_migration_marker(&serde_json::to_string(&marker)?)
                .await?;
        }
    }
    marker.complete = true;
    to.set_migration_marker(&serde_json::to_string(&marker)?)
        .await?;
    progress.finish();
    from.close().await;
    to.close().await;
    eprintln!(
        "berth migrate: done: {} tables{}; start the replicas with --database-url {url}{}",
        tables.len(),
        if args.to_storage.is_some() {
            " and every blob"
        } else {
            ""
        },
        match &args.to_storage {
            Some(_) => " and that storage",
            None => " and the same data directory (shared by the replicas)",
        }
    );
    Ok(())
}

async fn copy_tables(
    from: &Meta,
    to: &Meta,
    tables: &[Table],
    marker: &mut Marker,
    progress: &Progress,
) -> anyhow::Result<()> {
    for t in tables {
        if marker.tables.contains(&t.name) {
            continue;
        }
        let total = from.count_rows(&t.name).await?;
        let what = format!("table {}", t.name);
        progress.start(&what, total);
        let mut at = |n: u64| progress.at(n);
        let copied = from
            .copy_table(t, to, &mut at)
            .await
            .with_context(|| format!("copying table {}", t.name))?;
        progress.done(&what, copied, 0);
        marker.tables.push(t.name.clone());
        to.set_migration_marker(&serde_json::to_string(marker)?)
            .await?;
    }
    Ok(())
}

/// Copies every blob of `source` missing from `target`.
async fn copy_blobs(
    source: &dyn BlobStore,
    target: &dyn BlobStore,
    progress: &Progress,
) -> anyhow::Result<()> {
    // Count first, for the bar.
    let mut total = 0u64;
    let mut after = None;
    loop {
        let page = source.list(after.as_ref(), 1000).await?;
        let Some(last) = page.last() else { break };
        total += page.len() as u64;
        after = Some(last.digest.clone());
    }
    progress.start("blobs", total);
    let (mut copied, mut skipped, mut seen) = (0u64, 0u64, 0u64);
    let mut after = None;
    loop {
        let page = source.list(after.as_ref(), 1000).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.digest.clone());
        for blob in page {
            seen += 1;
            let copied_now = copy_blob(source, target, &blob)
                .await
                .with_context(|| format!("copying blob {}", blob.digest))?;
            if copied_now {
                copied += 1;
            } else {
                skipped += 1;
            }
            progress.at(seen);
            if !progress.is_bar() && seen % 1000 == 0 {
                eprintln!("berth migrate: blobs: {seen}/{total}");
            }
        }
    }
    progress.done("blobs", copied, skipped);
    Ok(())
}

/// Copies one blob unless `target` has it with the right size; returns
/// whether it copied. The target verifies the digest as the bytes stream.
async fn copy_blob(
    source: &dyn BlobStore,
    target: &dyn BlobStore,
    blob: &berth_store::StoredBlob,
) -> anyhow::Result<bool> {
    if target.stat(&blob.digest).await? == Some(blob.size) {
        return Ok(false);
    }
    let Some(read) = source.read(&blob.digest, None).await? else {
        // Gone from the source since it was listed.
        return Ok(false);
    };
    let body: berth_store::ByteStream = match read.body {
        BlobBody::Stream(s) => s,
        BlobBody::Bytes(b) => futures_util::stream::once(async move { Ok(b) }).boxed(),
    };
    target.put(&blob.digest, Some(read.len), body).await?;
    Ok(true)
}
