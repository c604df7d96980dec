//! `berth restore SRC --data-dir DIR`: a backup into a new data directory.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use berth_store::{BlobBody, BlobStore as _, FsStore};
use futures_util::StreamExt as _;

use super::dest::{Dest, Location};
use super::{Index, Kind};
use crate::progress::Progress;
use crate::storage::S3Flags;

/// Arguments of `berth restore`.
#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The backup directory or `s3://BUCKET[/PREFIX]` (written by `berth
    /// backup`).
    #[arg(value_name = "SRC")]
    src: Location,
    /// The data directory to restore into: it must not exist or be empty
    /// (a restore never mixes with a registry's data).
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    /// The backup to restore (an id from `SRC/backups/`) [default: the
    /// newest].
    #[arg(long, value_name = "ID")]
    backup: Option<String>,
    /// The object store of an `s3://` SRC.
    #[command(flatten)]
    s3: S3Flags,
}

/// Refuses a data directory that exists and holds anything.
fn check_empty(dir: &Path) -> anyhow::Result<()> {
    match std::fs::read_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("reading {}", dir.display())),
        Ok(mut entries) => match entries.next() {
            None => Ok(()),
            Some(first) => {
                let first = first?.file_name();
                bail!(
                    "refusing to restore into {}: it is not empty (it holds {:?}, ...); \
                     restore into a new or empty directory, then point berth serve at it",
                    dir.display(),
                    first
                )
            }
        },
    }
}

/// Runs `berth restore`.
pub async fn run(args: &RestoreArgs) -> anyhow::Result<()> {
    check_empty(&args.data_dir)?;
    let src = Dest::open(&args.src, &args.s3, false).await?;
    let index: Index = match &args.backup {
        Some(id) => src.index(id).await?,
        None => match src.list().await?.pop() {
            Some(i) => i,
            None => bail!("{} holds no backups", args.src),
        },
    };
    let progress = Progress::new("berth restore");
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;

    if let Some(md) = &index.metadata {
        let tmp = args.data_dir.join("berth.db.restoring");
        let from = src.snapshot(&index.id, &md.file, &tmp).await?;
        let (sha256, size) = super::file_digest(&from).await?;
        if sha256 != md.sha256 || size != md.size {
            bail!(
                "the metadata snapshot of backup {} is corrupt ({size} bytes hashing to {sha256}, \
                 the index says {} and {}): restore another backup (`berth backup verify {}`)",
                index.id,
                md.size,
                md.sha256,
                args.src
            );
        }
        if from != tmp {
            std::fs::copy(&from, &tmp).with_context(|| format!("copying {}", from.display()))?;
            std::fs::File::open(&tmp)?.sync_all()?;
        }
        berth_meta::backup::clear_leases(&tmp)
            .await
            .context("clearing the job leases of the restored database")?;
        let db = args.data_dir.join("berth.db");
        std::fs::rename(&tmp, &db)?;
        progress.line(&format!(
            "metadata: {} repositories, {} manifests, {} tags",
            md.repositories, md.manifests, md.tags
        ));
    }

    let source = src.blobs();
    let target = FsStore::open(&args.data_dir)
        .with_context(|| format!("opening blob storage in {}", args.data_dir.display()))?;
    progress.start("blobs", index.blobs.len() as u64);
    for (n, blob) in index.blobs.iter().enumerate() {
        let Some(read) = source.read(&blob.digest, None).await? else {
            bail!(
                "blob {} of backup {} is missing from {} (`berth backup verify` shows what else is)",
                blob.digest,
                index.id,
                args.src
            );
        };
        let body: berth_store::ByteStream = match read.body {
            BlobBody::Stream(s) => s,
            BlobBody::Bytes(b) => futures_util::stream::once(async move { Ok(b) }).boxed(),
        };
        // The data directory's store verifies the digest as it writes.
        target
            .put(&blob.digest, Some(blob.size), body)
            .await
            .with_context(|| {
                format!(
                    "restoring blob {} (the backup's copy is damaged: `berth backup verify`)",
                    blob.digest
                )
            })?;
        progress.at(n as u64 + 1);
    }
    progress.done("blobs", index.blobs.len() as u64, 0);
    progress.finish();
    let next = match index.kind {
        Kind::Full => format!(
            "start it with: berth serve --data-dir {}",
            args.data_dir.display()
        ),
        Kind::BlobsOnly => "restore the metadata with pg_restore (docs/operations.md), then start \
                            the registry"
            .to_owned(),
    };
    eprintln!(
        "berth restore: backup {} restored into {} ({} blobs, {} bytes); {next}",
        index.id,
        args.data_dir.display(),
        index.blobs.len(),
        index.blob_bytes
    );
    Ok(())
}
