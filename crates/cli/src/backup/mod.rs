//! `berth backup`, `berth backup verify` and `berth restore`: online,
//! incremental backups of a registry to a directory or an object-store
//! prefix ([`dest`]).
//!
//! A backup destination holds any number of backups that share one blob
//! store (blobs are immutable and content-addressed, so a later backup
//! copies only the blobs the directory does not hold yet):
//!
//! ```text
//! DEST/
//!   blobs/<algorithm>/<first two hex chars>/<hex>   every blob of every backup
//!   backups/<id>/berth.db                            the metadata snapshot
//!   backups/<id>/index.json                          what the backup holds
//! ```
//!
//! (`uploads/`, `tmp/` and `gc/` belong to the blob store's layout and
//! stay empty.) A backup is published once its blobs are copied: in a
//! directory by renaming `backups/<id>.partial` to `backups/<id>`, in a
//! bucket by writing its index last, so a backup cut short never looks
//! complete.
//!
//! Consistency while the registry runs: the backup takes the `gc` job
//! lease first (garbage collection takes the same lease, so no blob can be
//! deleted while the backup copies), then copies the metadata with
//! SQLite's `VACUUM INTO` (one read transaction: the database as of one
//! commit), then copies every blob that copy names. Pushes go on
//! meanwhile; what they add after the snapshot belongs to the next
//! backup.

use std::path::Path;

use anyhow::Context as _;
use berth_oci::Digest;
use serde::{Deserialize, Serialize};

mod create;
mod dest;
mod restore;
mod verify;

pub use restore::{run as run_restore, RestoreArgs};

/// Arguments of `berth backup`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    create: create::CreateArgs,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Re-hash and check every backup in DEST (or one) without restoring.
    Verify(verify::VerifyArgs),
}

/// Runs `berth backup` or `berth backup verify`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Some(Command::Verify(v)) => verify::run(&v).await,
        None => create::run(&args.create).await,
    }
}

/// The version of an index's format.
const FORMAT: u32 = 1;

/// What a backup holds (`backups/<id>/index.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Index {
    /// The index format (1).
    pub format: u32,
    /// The backup's id (its directory name).
    pub id: String,
    /// The berth version that wrote it.
    pub berth_version: String,
    /// When the metadata snapshot was taken (RFC 3339, UTC).
    pub created_at: String,
    /// `full` (metadata and blobs) or `blobs-only` (the metadata is
    /// backed up by other means, such as `pg_dump`).
    pub kind: Kind,
    /// The metadata snapshot, in a full backup.
    pub metadata: Option<Metadata>,
    /// Every blob the backup holds.
    pub blobs: Vec<Blob>,
    /// Their total size.
    pub blob_bytes: u64,
    /// What this run copied; the rest was in DEST already.
    pub copied: Copied,
    /// Blobs the metadata names that were not in storage when the backup
    /// ran (nothing could be copied; `berth scrub` finds what they break).
    #[serde(default)]
    pub missing: Vec<Digest>,
}

/// What a backup holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// The metadata snapshot and its blobs.
    Full,
    /// Blobs only.
    BlobsOnly,
}

/// The metadata snapshot of a backup.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Metadata {
    /// Its file name in the backup's directory.
    pub file: String,
    /// The SHA-256 of the file.
    pub sha256: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// The newest schema migration it has.
    pub schema_version: i64,
    /// Repositories in it.
    pub repositories: u64,
    /// Manifests in it.
    pub manifests: u64,
    /// Tags in it.
    pub tags: u64,
}

/// One blob of a backup.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Blob {
    /// Its digest.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
}

/// What one backup run copied.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Copied {
    /// Blobs copied.
    pub blobs: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Blobs already in DEST (from earlier backups).
    pub skipped: u64,
}

/// The metadata snapshot's file name in a backup.
const SNAPSHOT_FILE: &str = "berth.db";
/// The index's file name in a backup.
const INDEX_FILE: &str = "index.json";

/// The SHA-256 of the file at `path`, read in large blocks off the async
/// runtime.
async fn file_digest(path: &Path) -> anyhow::Result<(Digest, u64)> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || -> anyhow::Result<(Digest, u64)> {
        let file =
            std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        let size = file.metadata()?.len();
        let digest = berth_store::hash_reader(berth_oci::Algorithm::Sha256, file)
            .with_context(|| format!("reading {}", path.display()))?;
        Ok((digest, size))
    })
    .await?
}
