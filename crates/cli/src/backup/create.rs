//! `berth backup DEST`: takes a backup while the registry runs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use berth_meta::Meta;
use berth_oci::Digest;
use berth_store::{BlobBody, BlobStore, FsStore};
use futures_util::StreamExt as _;

use super::dest::{Dest, Location};
use super::{Blob, Copied, Index, Kind, Metadata, FORMAT, SNAPSHOT_FILE};
use crate::config::DatabaseUrl;
use crate::progress::Progress;
use crate::storage::{self, S3Flags, Storage};

/// Arguments of `berth backup DEST`.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The backup directory (created if needed), or `s3://BUCKET[/PREFIX]`
    /// (an existing bucket, reached with the `--s3-*` options). Backups in
    /// it share their blobs: a later backup copies only the blobs it does
    /// not hold yet.
    #[arg(value_name = "DEST", required = true)]
    dest: Option<Location>,
    /// The data directory of the registry to back up (it may be running):
    /// its `berth.db` and, with `fs` storage, its `blobs/`.
    #[arg(
        long,
        env = "BERTH_DATA_DIR",
        default_value = "berth-data",
        value_name = "DIR"
    )]
    data_dir: PathBuf,
    /// Copy only the blobs (every blob in storage), not the metadata: for
    /// a PostgreSQL deployment, whose metadata `pg_dump` backs up (see
    /// docs/operations.md).
    #[arg(long)]
    blobs_only: bool,
    /// The registry's PostgreSQL database, with `--blobs-only`: the backup
    /// holds its garbage-collection lease while it copies.
    #[arg(
        long,
        env = "BERTH_DATABASE_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    database_url: Option<DatabaseUrl>,
    /// Where the registry keeps its blobs: `fs` (the data directory) or
    /// `s3://BUCKET[/PREFIX]` (with the `--s3-*` options).
    #[arg(
        long,
        env = "BERTH_STORAGE",
        default_value = "fs",
        value_name = "STORAGE"
    )]
    storage: Storage,
    /// The object store of `--storage s3://...` and of an `s3://` DEST.
    #[command(flatten)]
    s3: S3Flags,
}

/// The job lease garbage collection takes (`berth_registry::GC_JOB`).
const GC_LEASE: &str = berth_registry::GC_JOB;
/// How long the backup's hold on the lease lasts without renewal (as
/// long as a GC run's).
const LEASE: Duration = Duration::from_secs(300);
/// How often the backup renews it.
const RENEW_EVERY: Duration = Duration::from_secs(30);
/// How long the backup waits for a garbage collection in progress.
const WAIT_FOR_GC: Duration = Duration::from_secs(600);

/// The `gc` lease, held for the backup's duration.
struct GcHold {
    meta: Meta,
    holder: String,
    renewed: Instant,
}

impl GcHold {
    async fn take(meta: Meta, progress: &Progress) -> anyhow::Result<GcHold> {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "berth".into());
        let holder = format!("backup/{host}/{}", std::process::id());
        let started = Instant::now();
        let mut said = false;
        loop {
            let now = berth_meta::now_ms();
            if meta
                .acquire_lease(GC_LEASE, &holder, now, now + LEASE.as_millis() as i64)
                .await?
            {
                return Ok(GcHold {
                    meta,
                    holder,
                    renewed: Instant::now(),
                });
            }
            if started.elapsed() > WAIT_FOR_GC {
                let who = meta.lease(GC_LEASE).await?.map(|l| l.holder);
                bail!(
                    "garbage collection has been running for {} min (lease held by {}): \
                     run the backup again once it has finished",
                    WAIT_FOR_GC.as_secs() / 60,
                    who.as_deref().unwrap_or("another process")
                );
            }
            if !said {
                progress.line("waiting for the garbage collection in progress to finish");
                said = true;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    /// Renews the lease when due (cheap to call after every blob).
    async fn keep(&mut self) -> anyhow::Result<()> {
        if self.renewed.elapsed() < RENEW_EVERY {
            return Ok(());
        }
        let now = berth_meta::now_ms();
        let ok = self
            .meta
            .acquire_lease(GC_LEASE, &self.holder, now, now + LEASE.as_millis() as i64)
            .await?;
        if !ok {
            bail!("the backup lost the garbage-collection lease (it was taken over): run it again");
        }
        self.renewed = Instant::now();
        Ok(())
    }

    async fn release(self) {
        if let Err(e) = self.meta.release_lease(GC_LEASE, &self.holder).await {
            eprintln!("berth backup: releasing the garbage-collection lease failed: {e}");
        }
        self.meta.close().await;
    }
}

/// The store the registry's blobs are read from: its data directory,
/// attached without any cleanup (the server owns it), or its bucket.
async fn source_store(args: &CreateArgs) -> anyhow::Result<Arc<dyn BlobStore>> {
    match &args.storage {
        Storage::Fs => {
            let store = FsStore::attach(&args.data_dir)
                .with_context(|| format!("opening the blobs of {}", args.data_dir.display()))?;
            Ok(Arc::new(store))
        }
        s @ Storage::S3(_) => storage::open(s, &args.s3.options(), &args.data_dir, false).await,
    }
}

/// Runs `berth backup DEST`.
pub async fn run(args: &CreateArgs) -> anyhow::Result<()> {
    let Some(dest) = &args.dest else {
        bail!("give the backup directory: berth backup DEST");
    };
    let live_db = args.data_dir.join("berth.db");
    let lease_db = if args.blobs_only {
        match &args.database_url {
            Some(url) if url.is_postgres() => Some(url.expose().to_owned()),
            Some(url) => bail!("--database-url must name PostgreSQL with --blobs-only, not {url}"),
            None => live_db
                .is_file()
                .then(|| format!("sqlite://{}?mode=rw", live_db.display())),
        }
    } else {
        if args
            .database_url
            .as_ref()
            .is_some_and(DatabaseUrl::is_postgres)
        {
            bail!(
                "the metadata is in PostgreSQL: back it up with pg_dump and the blobs with \
                 `berth backup DEST --blobs-only --database-url URL` (docs/operations.md)"
            );
        }
        if !live_db.is_file() {
            bail!(
                "no registry database at {} (give the registry's --data-dir)",
                live_db.display()
            );
        }
        Some(format!("sqlite://{}?mode=rw", live_db.display()))
    };

    let progress = Progress::new("berth backup");
    let target = Dest::open(dest, &args.s3, true).await?;
    let source = source_store(args).await?;

    // The lease first, so that no GC run deletes a blob the snapshot names
    // before it is copied.
    let mut hold = match &lease_db {
        Some(url) => {
            let meta = Meta::attach(url)
                .await
                .context("opening the registry's database for its garbage-collection lease")?;
            Some(GcHold::take(meta, &progress).await?)
        }
        None => None,
    };
    let outcome = back_up(
        args,
        &target,
        &live_db,
        source.as_ref(),
        &mut hold,
        &progress,
    )
    .await;
    if let Some(h) = hold {
        h.release().await;
    }
    progress.finish();
    let index = outcome?;
    let md = match &index.metadata {
        Some(m) => format!(
            "; metadata {} ({} repositories, {} tags)",
            m.sha256, m.repositories, m.tags
        ),
        None => String::new(),
    };
    eprintln!(
        "berth backup: backup {} in {}: {} blobs ({} bytes), {} copied ({} bytes), {} already there{md}",
        index.id,
        dest,
        index.blobs.len(),
        index.blob_bytes,
        index.copied.blobs,
        index.copied.bytes,
        index.copied.skipped,
    );
    if !index.missing.is_empty() {
        bail!(
            "backup {} is incomplete: {} blobs named by the metadata are missing from the \
             registry's storage (first: {}); run `berth scrub` on the registry to see what they break",
            index.id,
            index.missing.len(),
            index.missing[0]
        );
    }
    Ok(())
}

async fn back_up(
    args: &CreateArgs,
    dest: &Dest,
    live_db: &Path,
    source: &dyn BlobStore,
    hold: &mut Option<GcHold>,
    progress: &Progress,
) -> anyhow::Result<Index> {
    let pending = dest.begin().await?;
    let outcome = write_backup(args, dest, &pending, live_db, source, hold, progress).await;
    if outcome.is_err() {
        dest.abandon(&pending);
    }
    outcome
}

async fn write_backup(
    args: &CreateArgs,
    dest: &Dest,
    pending: &super::dest::Pending,
    live_db: &Path,
    source: &dyn BlobStore,
    hold: &mut Option<GcHold>,
    progress: &Progress,
) -> anyhow::Result<Index> {
    let id = pending.id.clone();
    let partial = &pending.dir;
    let target = dest.blobs();
    let created_at = berth_oci::time::Timestamp::now().to_string();

    let (metadata, wanted) = if args.blobs_only {
        (None, list_store(source).await?)
    } else {
        let file = partial.join(SNAPSHOT_FILE);
        berth_meta::backup::snapshot_sqlite(live_db, &file)
            .await
            .with_context(|| format!("copying the metadata of {}", live_db.display()))?;
        let summary = berth_meta::backup::read_snapshot(&file)
            .await
            .context("reading the metadata snapshot")?;
        let (sha256, size) = super::file_digest(&file).await?;
        progress.line(&format!(
            "metadata: snapshot of {} repositories, {} manifests, {} tags, {} blobs",
            summary.repositories,
            summary.manifests,
            summary.tags,
            summary.blobs.len()
        ));
        let md = Metadata {
            file: SNAPSHOT_FILE.to_owned(),
            sha256,
            size,
            schema_version: summary.schema_version,
            repositories: summary.repositories,
            manifests: summary.manifests,
            tags: summary.tags,
        };
        (Some(md), summary.blobs)
    };

    progress.start("blobs", wanted.len() as u64);
    let mut copied = Copied::default();
    let mut blobs = Vec::with_capacity(wanted.len());
    let mut missing = Vec::new();
    for (n, (digest, size)) in wanted.into_iter().enumerate() {
        if let Some(h) = hold.as_mut() {
            h.keep().await?;
        }
        match copy_blob(source, target, &digest, size)
            .await
            .with_context(|| format!("copying blob {digest}"))?
        {
            Copy::Copied => {
                copied.blobs += 1;
                copied.bytes += size;
            }
            Copy::There => copied.skipped += 1,
            Copy::Missing => {
                missing.push(digest);
                continue;
            }
        }
        blobs.push(Blob { digest, size });
        progress.at(n as u64 + 1);
    }
    progress.done("blobs", copied.blobs, copied.skipped);

    let index = Index {
        format: FORMAT,
        id: id.clone(),
        berth_version: env!("CARGO_PKG_VERSION").to_owned(),
        created_at,
        kind: if args.blobs_only {
            Kind::BlobsOnly
        } else {
            Kind::Full
        },
        metadata,
        blob_bytes: blobs.iter().map(|b| b.size).sum(),
        blobs,
        copied,
        missing,
    };
    dest.publish(pending, &index).await?;
    Ok(index)
}

/// Every blob in `store` (a blobs-only backup copies them all).
async fn list_store(store: &dyn BlobStore) -> anyhow::Result<Vec<(Digest, u64)>> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = store.list(after.as_ref(), 1000).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.digest.clone());
        out.extend(page.into_iter().map(|b| (b.digest, b.size)));
    }
    Ok(out)
}

enum Copy {
    Copied,
    There,
    Missing,
}

/// Copies one blob unless the backup holds it already with its size. The
/// backup's store verifies the digest while the bytes stream in.
async fn copy_blob(
    source: &dyn BlobStore,
    target: &dyn BlobStore,
    digest: &Digest,
    size: u64,
) -> anyhow::Result<Copy> {
    if target.stat(digest).await? == Some(size) {
        return Ok(Copy::There);
    }
    let Some(read) = source.read(digest, None).await? else {
        return Ok(Copy::Missing);
    };
    let body: berth_store::ByteStream = match read.body {
        BlobBody::Stream(s) => s,
        BlobBody::Bytes(b) => futures_util::stream::once(async move { Ok(b) }).boxed(),
    };
    target.put(digest, Some(size), body).await?;
    Ok(Copy::Copied)
}
