//! `berth backup verify DEST`: re-hashes and checks backups in place.
//!
//! For each backup: the metadata snapshot's size and SHA-256 against the
//! index, SQLite's own check of the file, and its blob list against the
//! index; then every blob any of them needs is read whole and hashed
//! (once, however many backups share it).

use std::collections::BTreeMap;

use anyhow::bail;
use berth_oci::Digest;

use super::dest::{hash_blob, Dest, Location};
use super::{Index, Kind};
use crate::progress::Progress;
use crate::storage::S3Flags;

/// Arguments of `berth backup verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The backup directory or `s3://BUCKET[/PREFIX]`.
    #[arg(value_name = "DEST")]
    dest: Location,
    /// Check only this backup (an id from `DEST/backups/`) [default: all].
    #[arg(long, value_name = "ID")]
    backup: Option<String>,
    /// The object store of an `s3://` DEST.
    #[command(flatten)]
    s3: S3Flags,
}

/// Runs `berth backup verify`.
pub async fn run(args: &VerifyArgs) -> anyhow::Result<()> {
    let dest = Dest::open(&args.dest, &args.s3, false).await?;
    let indexes: Vec<Index> = match &args.backup {
        Some(id) => vec![dest.index(id).await?],
        None => dest.list().await?,
    };
    if indexes.is_empty() {
        bail!("{} holds no backups", args.dest);
    }
    let progress = Progress::new("berth backup verify");
    let mut problems: Vec<String> = Vec::new();
    // digest -> (size, the backups that need it)
    let mut needed: BTreeMap<Digest, (u64, Vec<String>)> = BTreeMap::new();
    for index in &indexes {
        for p in check_metadata(&dest, index).await {
            problems.push(format!("backup {}: {p}", index.id));
        }
        for b in &index.blobs {
            needed
                .entry(b.digest.clone())
                .or_insert_with(|| (b.size, Vec::new()))
                .1
                .push(index.id.clone());
        }
    }
    let store = dest.blobs();
    progress.start("blobs", needed.len() as u64);
    let mut bytes = 0u64;
    for (n, (digest, (size, ids))) in needed.iter().enumerate() {
        let found = match hash_blob(store, digest).await {
            Ok(found) => found,
            Err(e) => {
                problems.push(format!("blob {digest}: unreadable: {e:#}"));
                continue;
            }
        };
        let needed_by = ids.join(", ");
        match found {
            None => problems.push(format!("blob {digest} is missing (needed by {needed_by})")),
            Some((_, actual)) if actual != *size => problems.push(format!(
                "blob {digest} has {actual} bytes, the index says {size} (needed by {needed_by})"
            )),
            Some((actual, _)) if actual != *digest => problems.push(format!(
                "blob {digest} is corrupt: its content hashes to {actual} (needed by {needed_by})"
            )),
            Some(_) => bytes += size,
        }
        progress.at(n as u64 + 1);
    }
    progress.finish();
    for p in &problems {
        eprintln!("berth backup verify: {p}");
    }
    if !problems.is_empty() {
        bail!(
            "{} problems in {} (above); restore from a backup without problems, or take a new one",
            problems.len(),
            args.dest
        );
    }
    eprintln!(
        "berth backup verify: {} backups and {} blobs ({bytes} bytes) in {} are intact",
        indexes.len(),
        needed.len(),
        args.dest
    );
    Ok(())
}

/// The problems of a backup's metadata snapshot.
async fn check_metadata(dest: &Dest, index: &Index) -> Vec<String> {
    let Some(md) = &index.metadata else {
        return if index.kind == Kind::Full {
            vec!["the index of a full backup names no metadata snapshot".to_owned()]
        } else {
            Vec::new()
        };
    };
    let scratch = std::env::temp_dir().join(format!(
        "berth-verify-{}-{}.db",
        std::process::id(),
        index.id
    ));
    let problems = check_snapshot(dest, index, md, &scratch).await;
    let _ = std::fs::remove_file(&scratch);
    problems
}

/// The problems of the snapshot `md` of a backup, read (or downloaded to
/// `scratch`) whole.
async fn check_snapshot(
    dest: &Dest,
    index: &Index,
    md: &super::Metadata,
    scratch: &std::path::Path,
) -> Vec<String> {
    let file = match dest.snapshot(&index.id, &md.file, scratch).await {
        Ok(f) => f,
        Err(e) => return vec![format!("metadata snapshot: {e:#}")],
    };
    let (sha256, size) = match super::file_digest(&file).await {
        Ok(v) => v,
        Err(e) => return vec![format!("metadata snapshot: {e:#}")],
    };
    if size != md.size || sha256 != md.sha256 {
        return vec![format!(
            "metadata snapshot {} is corrupt: {size} bytes hashing to {sha256}, the index says \
             {} bytes and {}",
            file.display(),
            md.size,
            md.sha256
        )];
    }
    match berth_meta::backup::read_snapshot(&file).await {
        Err(e) => vec![format!("metadata snapshot {}: {e}", file.display())],
        Ok(s) => {
            let listed = index.blobs.len() + index.missing.len();
            if s.blobs.len() != listed {
                vec![format!(
                    "metadata snapshot names {} blobs, the index {listed}",
                    s.blobs.len()
                )]
            } else {
                Vec::new()
            }
        }
    }
}
