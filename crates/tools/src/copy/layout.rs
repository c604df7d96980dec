//! OCI image layouts (`oci:`) and their tarballs (`oci-archive:`).
//!
//! ```text
//! DIR/
//!   oci-layout            {"imageLayoutVersion": "1.0.0"}
//!   index.json            the tagged images: descriptors with an
//!                         org.opencontainers.image.ref.name annotation
//!   blobs/sha256/<hex>    manifests, configs and layers
//! ```
//!
//! Blobs are written to a temporary name, digest-checked while streaming and
//! renamed into place, so a layout never holds a blob under a wrong digest.
//! An `oci-archive` is the same tree in a tar file: it is unpacked to a
//! temporary directory to read, and built in one to write.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;
use berth_oci::{media, Descriptor, Digest};
use futures_util::{StreamExt as _, TryStreamExt as _};
use tokio::io::AsyncWriteExt as _;

use super::{ByteStream, Destination, RawManifest, Source};
use crate::ToolError;

/// The annotation naming a tag in `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The annotation containerd and Docker use for the full image name.
pub const CONTAINERD_NAME: &str = "io.containerd.image.name";

/// An OCI image layout directory.
#[derive(Debug)]
pub struct Layout {
    root: PathBuf,
    index_lock: Mutex<()>,
}

/// `index.json`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Index {
    /// Always 2.
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    /// The OCI index media type.
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The images.
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

fn ref_name(d: &Descriptor) -> Option<&str> {
    d.annotations.as_ref()?.get(REF_NAME).map(String::as_str)
}

impl Layout {
    /// Opens an existing layout.
    pub fn open(root: &Path) -> Result<Layout, ToolError> {
        if !root.join("index.json").is_file() {
            return Err(ToolError::Image(format!(
                "{}: not an OCI image layout (no index.json)",
                root.display()
            )));
        }
        Ok(Layout {
            root: root.to_owned(),
            index_lock: Mutex::new(()),
        })
    }

    /// Opens a layout for writing, creating it if needed.
    pub fn create(root: &Path) -> Result<Layout, ToolError> {
        std::fs::create_dir_all(root.join("blobs/sha256"))?;
        if !root.join("oci-layout").exists() {
            std::fs::write(
                root.join("oci-layout"),
                br#"{"imageLayoutVersion":"1.0.0"}"#,
            )?;
        }
        if !root.join("index.json").exists() {
            let index = Index {
                schema_version: 2,
                media_type: Some(media::OCI_INDEX.to_owned()),
                manifests: Vec::new(),
            };
            std::fs::write(root.join("index.json"), serde_json::to_vec(&index)?)?;
        }
        Layout::open(root)
    }

    /// The layout's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a blob lives.
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(d.algorithm().as_str())
            .join(d.hex())
    }

    /// Reads `index.json`.
    pub fn index(&self) -> Result<Index, ToolError> {
        let bytes = std::fs::read(self.root.join("index.json"))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| ToolError::Image(format!("{}/index.json: {e}", self.root.display())))
    }

    fn write_index(&self, index: &Index) -> Result<(), ToolError> {
        let tmp = self.root.join(".index.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(index)?)?;
        std::fs::rename(tmp, self.root.join("index.json"))?;
        Ok(())
    }

    /// Writes a small blob from memory (verified like any other).
    pub fn put_bytes(&self, d: &Digest, bytes: &[u8]) -> Result<(), ToolError> {
        let actual = Digest::compute(d.algorithm(), bytes);
        if &actual != d {
            return Err(ToolError::Image(format!(
                "digest mismatch: expected {d}, got {actual}"
            )));
        }
        let path = self.blob_path(d);
        if !path.exists() {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, bytes)?;
            std::fs::rename(tmp, path)?;
        }
        Ok(())
    }

    /// Adds (or retags) a top-level manifest in `index.json`.
    pub fn add_to_index(
        &self,
        mut d: Descriptor,
        tag: Option<&str>,
        extra: &[(&str, String)],
    ) -> Result<(), ToolError> {
        let _guard = self
            .index_lock
            .lock()
            .map_err(|_| ToolError::Image("index lock poisoned".to_owned()))?;
        let mut index = self.index()?;
        let mut ann = std::collections::BTreeMap::new();
        if let Some(t) = tag {
            ann.insert(REF_NAME.to_owned(), t.to_owned());
            index.manifests.retain(|m| ref_name(m) != Some(t));
        } else if index
            .manifests
            .iter()
            .any(|m| m.digest == d.digest && ref_name(m).is_none())
        {
            return Ok(());
        }
        for (k, v) in extra {
            ann.insert((*k).to_owned(), v.clone());
        }
        d.annotations = (!ann.is_empty()).then_some(ann);
        index.manifests.push(d);
        self.write_index(&index)
    }

    /// The descriptor in `index.json` for `reference` (a tag or digest), or
    /// the only one when `None`.
    pub fn find(&self, reference: Option<&str>) -> Result<Descriptor, ToolError> {
        let index = self.index()?;
        let found = match reference {
            // A ref name may hold a ':' itself (`acme/app:v1`, as `berth
            // export` writes them): only a whole digest is looked up as one.
            Some(r) if Digest::parse(r).is_ok() => {
                index.manifests.iter().find(|m| m.digest.as_str() == r)
            }
            Some(r) => index.manifests.iter().find(|m| ref_name(m) == Some(r)),
            None if index.manifests.len() == 1 => index.manifests.first(),
            None => {
                let names: Vec<&str> = index.manifests.iter().filter_map(ref_name).collect();
                return Err(ToolError::Image(format!(
                    "{} holds {} images: name one of [{}]",
                    self.root.display(),
                    index.manifests.len(),
                    names.join(", ")
                )));
            }
        };
        found.cloned().ok_or_else(|| {
            ToolError::Image(format!(
                "{}: no image {:?} in index.json",
                self.root.display(),
                reference.unwrap_or("")
            ))
        })
    }
}

#[async_trait]
impl Source for Layout {
    async fn manifest(&self, reference: Option<&str>) -> Result<RawManifest, ToolError> {
        let (digest, media_type) = match reference.map(Digest::parse) {
            Some(Ok(d)) => match self.find(Some(d.as_str())) {
                Ok(desc) => (desc.digest, Some(desc.media_type)),
                Err(_) => (d, None),
            },
            _ => {
                let desc = self.find(reference)?;
                (desc.digest, Some(desc.media_type))
            }
        };
        let bytes = bytes::Bytes::from(tokio::fs::read(self.blob_path(&digest)).await?);
        if Digest::compute(digest.algorithm(), &bytes) != digest {
            return Err(ToolError::Image(format!(
                "{}: manifest blob {digest} is corrupt",
                self.root.display()
            )));
        }
        let media_type = match media_type {
            Some(m) => m,
            None => serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| {
                    v.get("mediaType")
                        .and_then(|m| m.as_str())
                        .map(str::to_owned)
                })
                .unwrap_or_else(|| media::OCI_MANIFEST.to_owned()),
        };
        Ok(RawManifest { bytes, media_type })
    }

    async fn blob(&self, d: &Descriptor) -> Result<ByteStream, ToolError> {
        let f = tokio::fs::File::open(self.blob_path(&d.digest))
            .await
            .map_err(|e| {
                ToolError::Image(format!("{}: blob {}: {e}", self.root.display(), d.digest))
            })?;
        Ok(Box::pin(
            tokio_util::io::ReaderStream::with_capacity(f, 256 * 1024).map_err(ToolError::from),
        ))
    }

    async fn tags(&self) -> Result<Vec<String>, ToolError> {
        Ok(self
            .index()?
            .manifests
            .iter()
            .filter_map(ref_name)
            .map(str::to_owned)
            .collect())
    }
}

#[async_trait]
impl Destination for Layout {
    async fn has_blob(&self, d: &Descriptor) -> Result<bool, ToolError> {
        Ok(tokio::fs::metadata(self.blob_path(&d.digest))
            .await
            .is_ok_and(|m| m.len() as i64 == d.size))
    }

    async fn put_blob(&self, d: &Descriptor, mut data: ByteStream) -> Result<(), ToolError> {
        let path = self.blob_path(&d.digest);
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let mut file = tokio::fs::File::create(&tmp).await?;
        let mut hasher = d.digest.algorithm().hasher();
        let mut size: i64 = 0;
        let result = async {
            while let Some(chunk) = data.next().await {
                let chunk = chunk?;
                hasher.update(&chunk);
                size += chunk.len() as i64;
                file.write_all(&chunk).await?;
            }
            file.flush().await?;
            Ok::<(), ToolError>(())
        }
        .await;
        drop(file);
        let actual = hasher.finish();
        if let Err(e) = result {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
        if actual != d.digest || size != d.size {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(ToolError::Image(format!(
                "blob {} arrived as {actual} ({size} bytes, expected {})",
                d.digest, d.size
            )));
        }
        tokio::fs::rename(&tmp, &path).await?;
        Ok(())
    }

    async fn put_manifest(
        &self,
        m: &RawManifest,
        tag: Option<&str>,
        top_level: bool,
    ) -> Result<(), ToolError> {
        let d = m.descriptor();
        self.put_bytes(&d.digest, &m.bytes)?;
        if top_level {
            self.add_to_index(d, tag, &[])?;
        }
        Ok(())
    }
}

/// An `oci-archive` tarball, unpacked or staged in a temporary directory.
#[derive(Debug)]
pub struct Archive {
    layout: Layout,
    target: Option<PathBuf>,
    _dir: tempfile::TempDir,
}

impl Archive {
    /// Unpacks an archive for reading.
    pub fn open(path: &Path) -> Result<Archive, ToolError> {
        let dir = tempfile::tempdir()?;
        unpack(path, dir.path())?;
        Ok(Archive {
            layout: Layout::open(dir.path())?,
            target: None,
            _dir: dir,
        })
    }

    /// Stages a new archive, written to `path` by [`Destination::finish`].
    pub fn create(path: &Path) -> Result<Archive, ToolError> {
        let dir = tempfile::tempdir()?;
        Ok(Archive {
            layout: Layout::create(dir.path())?,
            target: Some(path.to_owned()),
            _dir: dir,
        })
    }
}

/// Unpacks a tar file into `dir` (entries escaping `dir` are refused by the
/// `tar` crate).
pub fn unpack(path: &Path, dir: &Path) -> Result<(), ToolError> {
    let file = std::fs::File::open(path)
        .map_err(|e| ToolError::Image(format!("{}: {e}", path.display())))?;
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    archive.set_preserve_permissions(false);
    archive.unpack(dir).map_err(|e| {
        ToolError::Image(format!(
            "{}: not a readable tar archive: {e}",
            path.display()
        ))
    })
}

/// Writes the files under `dir` into a tar at `path`, sorted, with fixed
/// owners and times so that the same content gives the same tarball.
pub fn pack(dir: &Path, path: &Path) -> Result<(), ToolError> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
        for e in std::fs::read_dir(dir)? {
            let p = e?.path();
            if p.is_dir() {
                walk(base, &p, out)?;
            } else if let Ok(rel) = p.strip_prefix(base) {
                out.push(rel.to_owned());
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(dir, dir, &mut files)?;
    files.sort();
    let tmp = path.with_extension("partial");
    let out = std::fs::File::create(&tmp)?;
    let mut builder = tar::Builder::new(std::io::BufWriter::new(out));
    let mut dirs_done = std::collections::BTreeSet::new();
    for rel in files {
        for anc in rel
            .ancestors()
            .skip(1)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            if anc.as_os_str().is_empty() || !dirs_done.insert(anc.to_owned()) {
                continue;
            }
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
            h.set_mtime(0);
            builder.append_data(&mut h, anc, std::io::empty())?;
        }
        let f = std::fs::File::open(dir.join(&rel))?;
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(f.metadata()?.len());
        h.set_mtime(0);
        builder.append_data(&mut h, &rel, f)?;
    }
    builder
        .into_inner()?
        .into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()?;
    std::fs::rename(tmp, path)?;
    Ok(())
}

#[async_trait]
impl Source for Archive {
    async fn manifest(&self, reference: Option<&str>) -> Result<RawManifest, ToolError> {
        self.layout.manifest(reference).await
    }
    async fn blob(&self, d: &Descriptor) -> Result<ByteStream, ToolError> {
        Source::blob(&self.layout, d).await
    }
    async fn tags(&self) -> Result<Vec<String>, ToolError> {
        self.layout.tags().await
    }
}

#[async_trait]
impl Destination for Archive {
    async fn has_blob(&self, d: &Descriptor) -> Result<bool, ToolError> {
        self.layout.has_blob(d).await
    }
    async fn put_blob(&self, d: &Descriptor, data: ByteStream) -> Result<(), ToolError> {
        self.layout.put_blob(d, data).await
    }
    async fn put_manifest(
        &self,
        m: &RawManifest,
        tag: Option<&str>,
        top: bool,
    ) -> Result<(), ToolError> {
        self.layout.put_manifest(m, tag, top).await
    }
    async fn finish(&self) -> Result<(), ToolError> {
        match &self.target {
            Some(t) => pack(self.layout.root(), t),
            None => Ok(()),
        }
    }
}
