//! `berth backup verify DEST`: re-hashes and checks backups in place.
//!
//! For each backup: the metadata snapshot's size and SHA-256 against the
//! index, SQLite's own check of the file, and its blob list against the
//! index; then every blob any of them needs is read whole and hashed
//! (once, however many backups share it).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::bail;
use berth_oci::Digest;
use berth_store::FsStore;

use super::{Index, Kind};
use crate::progress::Progress;

/// Arguments of `berth backup verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The backup directory.
    #[arg(value_name = "DEST")]
    dest: PathBuf,
    /// Check only this backup (an id from `DEST/backups/`) [default: all].
    #[arg(long, value_name = "ID")]
    backup: Option<String>,
}

/// Runs `berth backup verify`.
pub async fn run(args: &VerifyArgs) -> anyhow::Result<()> {
    let dest = &args.dest;
    let indexes: Vec<Index> = match &args.backup {
        Some(id) => vec![super::read_index(dest, id)?],
        None => super::list(dest)?,
    };
    if indexes.is_empty() {
        bail!("{} holds no backups", dest.display());
    }
    let progress = Progress::new("berth backup verify");
    let mut problems: Vec<String> = Vec::new();
    // digest -> (size, the backups that need it)
    let mut needed: BTreeMap<Digest, (u64, Vec<String>)> = BTreeMap::new();
    for index in &indexes {
        for p in check_metadata(dest, index).await {
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
    let store = FsStore::attach(dest).map_err(|e| {
        anyhow::anyhow!(
            "{} holds no blob store ({e}): not a backup directory",
            dest.display()
        )
    })?;
    progress.start("blobs", needed.len() as u64);
    let mut bytes = 0u64;
    for (n, (digest, (size, ids))) in needed.iter().enumerate() {
        let path = store.blob_path(digest);
        let found = match super::file_digest(&path).await {
            Ok(found) => Some(found),
            Err(_) if !path.exists() => None,
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
            dest.display()
        );
    }
    eprintln!(
        "berth backup verify: {} backups and {} blobs ({bytes} bytes) in {} are intact",
        indexes.len(),
        needed.len(),
        dest.display()
    );
    Ok(())
}

/// The problems of a backup's metadata snapshot.
async fn check_metadata(dest: &std::path::Path, index: &Index) -> Vec<String> {
    let Some(md) = &index.metadata else {
        return if index.kind == Kind::Full {
            vec!["the index of a full backup names no metadata snapshot".to_owned()]
        } else {
            Vec::new()
        };
    };
    let file = super::backups_dir(dest).join(&index.id).join(&md.file);
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
