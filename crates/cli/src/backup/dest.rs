//! Where backups live: a directory, or a prefix of an S3-compatible bucket
//! (`s3://BUCKET/PREFIX`, reached with the `--s3-*` flags and the standard
//! AWS credentials, as the registry's own storage is). Both hold the same
//! layout:
//!
//! ```text
//! DEST/  or  s3://BUCKET/PREFIX/
//!   blobs/<algorithm>/<2 hex>/<hex>   every blob of every backup (a blob store)
//!   backups/<id>/berth.db             the metadata snapshot
//!   backups/<id>/index.json           what the backup holds
//! ```
//!
//! Publication: in a directory a backup is written to `backups/<id>.partial`
//! and renamed once complete; in a bucket, where nothing renames, the index
//! is the last object written, so a backup cut short has no index and is
//! not listed.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use berth_oci::Digest;
use berth_store::object::{parse_url, Objects, S3Settings};
use berth_store::{BlobBody, BlobStore, BucketStore, FsStore};
use futures_util::StreamExt as _;

use super::{Index, FORMAT, INDEX_FILE};
use crate::storage::S3Flags;

/// A backup destination as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A directory.
    Dir(PathBuf),
    /// `s3://BUCKET[/PREFIX]`.
    Bucket(String),
}

impl FromStr for Location {
    type Err = String;

    fn from_str(s: &str) -> Result<Location, String> {
        if s.starts_with("s3://") {
            parse_url(s)
                .map(|_| Location::Bucket(s.trim_end_matches('/').to_owned()))
                .map_err(|_| {
                    format!("invalid backup location {s:?} (expected s3://BUCKET[/PREFIX])")
                })
        } else if s.contains("://") {
            Err(format!(
                "invalid backup location {s:?}: a directory or s3://BUCKET[/PREFIX]"
            ))
        } else {
            Ok(Location::Dir(PathBuf::from(s)))
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Dir(d) => write!(f, "{}", d.display()),
            Location::Bucket(url) => f.write_str(url),
        }
    }
}

enum Files {
    Dir(PathBuf),
    Bucket(Objects),
}

/// An opened backup destination: its blob store and its backups.
pub struct Dest {
    location: Location,
    blobs: Arc<dyn BlobStore>,
    files: Files,
}

/// A backup being written: its id and the local directory its files are
/// prepared in.
pub struct Pending {
    pub id: String,
    pub dir: PathBuf,
}

impl Dest {
    /// Opens `location`, creating it when `create` (a directory, or the
    /// prefix of an existing bucket, which is reached once here).
    pub async fn open(location: &Location, s3: &S3Flags, create: bool) -> anyhow::Result<Dest> {
        match location {
            Location::Dir(dir) => {
                let blobs: Arc<dyn BlobStore> =
                    if create {
                        std::fs::create_dir_all(dir.join("backups")).with_context(|| {
                            format!("creating the backup directory {}", dir.display())
                        })?;
                        Arc::new(FsStore::open(dir).with_context(|| {
                            format!("opening the blob store of {}", dir.display())
                        })?)
                    } else {
                        Arc::new(FsStore::attach(dir).map_err(|e| {
                            anyhow::anyhow!(
                                "{} holds no blob store ({e}): not a backup directory",
                                dir.display()
                            )
                        })?)
                    };
                Ok(Dest {
                    location: location.clone(),
                    blobs,
                    files: Files::Dir(dir.clone()),
                })
            }
            Location::Bucket(url) => {
                let o = s3.options();
                let settings = S3Settings {
                    url: url.clone(),
                    endpoint: o.endpoint,
                    region: o.region,
                    path_style: o.path_style,
                    ..S3Settings::default()
                };
                let store = BucketStore::connect(&settings)
                    .with_context(|| format!("configuring object storage {url}"))?;
                store
                    .check()
                    .await
                    .with_context(|| format!("reaching the backup bucket {url}"))?;
                let files = Files::Bucket(store.objects("backups"));
                Ok(Dest {
                    location: location.clone(),
                    blobs: Arc::new(store),
                    files,
                })
            }
        }
    }

    /// The blobs of every backup.
    pub fn blobs(&self) -> &dyn BlobStore {
        self.blobs.as_ref()
    }

    /// The ids of the complete backups, oldest first (ids sort by time).
    async fn ids(&self) -> anyhow::Result<Vec<String>> {
        let mut ids = Vec::new();
        match &self.files {
            Files::Dir(dest) => {
                let dir = dest.join("backups");
                let entries = std::fs::read_dir(&dir).with_context(|| {
                    format!(
                        "{} holds no backups (no {} directory)",
                        dest.display(),
                        dir.display()
                    )
                })?;
                for e in entries {
                    let e = e?;
                    let name = e.file_name().to_string_lossy().into_owned();
                    if !name.ends_with(".partial") && e.path().join(INDEX_FILE).is_file() {
                        ids.push(name);
                    }
                }
            }
            Files::Bucket(objects) => {
                for id in objects.dirs().await? {
                    if objects.get(&format!("{id}/{INDEX_FILE}")).await?.is_some() {
                        ids.push(id);
                    }
                }
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Every complete backup, oldest first.
    pub async fn list(&self) -> anyhow::Result<Vec<Index>> {
        let mut out = Vec::new();
        for id in self.ids().await? {
            out.push(self.index(&id).await?);
        }
        Ok(out)
    }

    /// The index of backup `id`.
    pub async fn index(&self, id: &str) -> anyhow::Result<Index> {
        let name = format!("{id}/{INDEX_FILE}");
        let (text, shown) = match &self.files {
            Files::Dir(dest) => {
                let path = dest.join("backups").join(&name);
                let text = std::fs::read(&path)
                    .with_context(|| format!("reading the index {}", path.display()))?;
                (text, path.display().to_string())
            }
            Files::Bucket(objects) => {
                let shown = format!("{}/backups/{name}", self.location);
                match objects.get(&name).await? {
                    Some(b) => (b.to_vec(), shown),
                    None => bail!("{} holds no backup {id} (no {shown})", self.location),
                }
            }
        };
        let index: Index = serde_json::from_slice(&text)
            .with_context(|| format!("the index {shown} is damaged"))?;
        if index.format != FORMAT {
            bail!(
                "the index {shown} has format {}, this berth reads format {FORMAT}: use a matching berth",
                index.format
            );
        }
        Ok(index)
    }

    /// Starts a backup: a fresh id (the UTC time, unique here) and where
    /// its files are prepared.
    pub async fn begin(&self) -> anyhow::Result<Pending> {
        let now = berth_oci::time::Timestamp::now();
        let base = format!("{}T{}Z", now.date(), now.time());
        let taken: Vec<String> = match &self.files {
            Files::Dir(_) => Vec::new(),
            Files::Bucket(objects) => objects.dirs().await?,
        };
        let free = |id: &str| match &self.files {
            Files::Dir(dest) => {
                let dir = dest.join("backups");
                !dir.join(id).exists() && !dir.join(format!("{id}.partial")).exists()
            }
            Files::Bucket(_) => !taken.iter().any(|t| t == id),
        };
        let mut id = base.clone();
        let mut n = 1;
        while !free(&id) {
            n += 1;
            id = format!("{base}-{n}");
        }
        let dir = match &self.files {
            Files::Dir(dest) => dest.join("backups").join(format!("{id}.partial")),
            Files::Bucket(_) => {
                std::env::temp_dir().join(format!("berth-backup-{}-{id}", std::process::id()))
            }
        };
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Pending { id, dir })
    }

    /// Publishes a backup whose files are in `pending.dir`: with its index
    /// written last, it becomes visible whole.
    pub async fn publish(&self, pending: &Pending, index: &Index) -> anyhow::Result<()> {
        let json = serde_json::to_vec_pretty(index)?;
        match &self.files {
            Files::Dir(dest) => {
                write_durably(&pending.dir.join(INDEX_FILE), &json)?;
                let dir = dest.join("backups");
                let done = dir.join(&pending.id);
                std::fs::rename(&pending.dir, &done)
                    .with_context(|| format!("publishing {}", done.display()))?;
                std::fs::File::open(&dir)?.sync_all()?;
            }
            Files::Bucket(objects) => {
                if let Some(md) = &index.metadata {
                    objects
                        .put_file(
                            &format!("{}/{}", pending.id, md.file),
                            &pending.dir.join(&md.file),
                        )
                        .await
                        .context("uploading the metadata snapshot")?;
                }
                objects
                    .put(&format!("{}/{INDEX_FILE}", pending.id), json.into())
                    .await
                    .context("uploading the backup's index")?;
                let _ = std::fs::remove_dir_all(&pending.dir);
            }
        }
        Ok(())
    }

    /// Drops what a backup that failed prepared locally (a directory
    /// destination keeps its `.partial` for inspection).
    pub fn abandon(&self, pending: &Pending) {
        if let Files::Bucket(_) = &self.files {
            let _ = std::fs::remove_dir_all(&pending.dir);
        }
    }

    /// A local file holding backup `id`'s snapshot `file`: the file itself
    /// in a directory, else a download to `scratch`.
    pub async fn snapshot(&self, id: &str, file: &str, scratch: &Path) -> anyhow::Result<PathBuf> {
        match &self.files {
            Files::Dir(dest) => Ok(dest.join("backups").join(id).join(file)),
            Files::Bucket(objects) => {
                let name = format!("{id}/{file}");
                if !objects.get_to_file(&name, scratch).await? {
                    bail!("{}/backups/{name} is missing", self.location);
                }
                Ok(scratch.to_path_buf())
            }
        }
    }
}

/// A blob of a backup, hashed as it is read: its digest and size, or
/// `None` when the backup does not hold it.
pub async fn hash_blob(
    store: &dyn BlobStore,
    digest: &Digest,
) -> anyhow::Result<Option<(Digest, u64)>> {
    let Some(read) = store.read(digest, None).await? else {
        return Ok(None);
    };
    let mut hasher = digest.algorithm().hasher();
    let mut size = 0u64;
    match read.body {
        BlobBody::Bytes(b) => {
            hasher.update(&b);
            size = b.len() as u64;
        }
        BlobBody::Stream(mut s) => {
            while let Some(chunk) = s.next().await {
                let chunk = chunk?;
                hasher.update(&chunk);
                size += chunk.len() as u64;
            }
        }
    }
    Ok(Some((hasher.finish(), size)))
}

/// Writes `bytes` to `path` and makes it durable.
pub fn write_durably(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut f =
        std::fs::File::create(path).with_context(|| format!("writing {}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Location;

    #[test]
    fn locations_parse() {
        assert_eq!(
            "/backups/berth".parse::<Location>(),
            Ok(Location::Dir("/backups/berth".into()))
        );
        assert_eq!(
            "s3://bucket/some/prefix/".parse::<Location>(),
            Ok(Location::Bucket("s3://bucket/some/prefix".to_owned()))
        );
        assert!("s3://".parse::<Location>().is_err());
        assert!("https://example.com/x".parse::<Location>().is_err());
    }
}
