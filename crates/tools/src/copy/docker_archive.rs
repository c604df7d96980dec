//! `docker save` / `docker load` tarballs (`docker-archive:`).
//!
//! The format is a `manifest.json` listing images as a config file, its
//! `RepoTags` and layer files. Docker 25 and later also put an OCI layout
//! (`oci-layout`, `index.json`, `blobs/`) in the same tarball, with
//! `manifest.json` pointing into `blobs/sha256/`. berth writes that combined
//! form: Docker and skopeo load it through `manifest.json`, and berth reads
//! the original manifest back from the layout, so a copy through a
//! docker-archive keeps its digest. (Layers are stored as pushed, typically
//! gzip-compressed, which `docker load` and skopeo decompress.)
//!
//! Archives without a usable layout (`docker save` before 25, skopeo) hold
//! no manifest: berth synthesises an OCI image manifest (as Docker 25 does
//! on save) from the config and the layer files as they are (`tar` or
//! `tar+gzip` by content), so the config digest and layer contents are
//! preserved and the manifest digest is new. A docker-archive holds
//! single-platform images only.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;
use berth_oci::reference::ImageRef;
use berth_oci::{media, Descriptor, Digest, ManifestKind};
use futures_util::TryStreamExt as _;

use super::layout::{self, Layout, CONTAINERD_NAME};
use super::{ByteStream, Destination, RawManifest, Source};
use crate::ToolError;

/// OCI uncompressed layer media type.
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// OCI gzip layer media type.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI zstd layer media type.
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// One entry of `manifest.json`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    /// Path of the config file.
    #[serde(rename = "Config")]
    pub config: String,
    /// `name:tag` strings.
    #[serde(rename = "RepoTags", default)]
    pub repo_tags: Option<Vec<String>>,
    /// Paths of the layer files, base layer first.
    #[serde(rename = "Layers")]
    pub layers: Vec<String>,
}

fn sha256_file(path: &Path) -> Result<(Digest, u64, [u8; 4]), ToolError> {
    use std::io::Read as _;
    let mut f = std::fs::File::open(path)
        .map_err(|e| ToolError::Image(format!("{}: {e}", path.display())))?;
    let mut h = berth_oci::Algorithm::Sha256.hasher();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    let mut magic = [0u8; 4];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        if size < 4 {
            for (i, b) in buf[..n].iter().enumerate().take(4 - size as usize) {
                magic[size as usize + i] = *b;
            }
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
    Ok((h.finish(), size, magic))
}

/// A docker-archive opened for reading.
#[derive(Debug)]
pub struct Reader {
    dir: tempfile::TempDir,
    entries: Vec<Entry>,
    oci: Option<Layout>,
    /// Files by digest, for synthesised manifests.
    files: Mutex<HashMap<Digest, PathBuf>>,
}

impl Reader {
    /// Unpacks `path`.
    pub fn open(path: &Path) -> Result<Reader, ToolError> {
        let dir = tempfile::tempdir()?;
        layout::unpack(path, dir.path())?;
        let manifest = std::fs::read(dir.path().join("manifest.json")).map_err(|_| {
            ToolError::Image(format!(
                "{}: not a docker archive (no manifest.json)",
                path.display()
            ))
        })?;
        let entries: Vec<Entry> = serde_json::from_slice(&manifest)
            .map_err(|e| ToolError::Image(format!("{}: manifest.json: {e}", path.display())))?;
        let oci = Layout::open(dir.path()).ok();
        Ok(Reader {
            dir,
            entries,
            oci,
            files: Mutex::new(HashMap::new()),
        })
    }

    fn entry(&self, reference: Option<&str>) -> Result<&Entry, ToolError> {
        let Some(r) = reference else {
            return self
                .entries
                .first()
                .ok_or_else(|| ToolError::Image("docker archive holds no image".to_owned()));
        };
        let wanted = ImageRef::parse(r).ok().map(|w| w.to_string());
        self.entries
            .iter()
            .find(|e| {
                e.repo_tags.iter().flatten().any(|t| {
                    t == r
                        || t.rsplit_once(':').is_some_and(|(_, tag)| tag == r)
                        || (wanted.is_some()
                            && ImageRef::parse(t).ok().map(|x| x.to_string()) == wanted)
                })
            })
            .ok_or_else(|| ToolError::Image(format!("docker archive has no image {r:?}")))
    }

    fn file(&self, rel: &str) -> Result<PathBuf, ToolError> {
        let p = self.dir.path().join(rel);
        if rel.contains("..") || !p.is_file() {
            return Err(ToolError::Image(format!(
                "docker archive: missing file {rel}"
            )));
        }
        Ok(p)
    }

    /// The manifest from the embedded OCI layout, when it matches the entry
    /// and all its blobs are present.
    async fn layout_manifest(&self, config: &Digest) -> Option<RawManifest> {
        let oci = self.oci.as_ref()?;
        let index = oci.index().ok()?;
        let complete = |m: &berth_oci::Manifest| {
            m.config.as_ref().is_some_and(|c| &c.digest == config)
                && m.descriptors().all(|d| oci.blob_path(&d.digest).is_file())
        };
        for d in index.manifests {
            let raw = oci.manifest(Some(d.digest.as_str())).await.ok()?;
            let parsed = raw.parse().ok()?;
            match parsed.kind {
                ManifestKind::Image if complete(&parsed) => return Some(raw),
                ManifestKind::Index => {
                    for child in parsed.manifests {
                        let Ok(c) = oci.manifest(Some(child.digest.as_str())).await else {
                            continue;
                        };
                        if c.parse().is_ok_and(|p| complete(&p)) {
                            return Some(RawManifest {
                                bytes: c.bytes,
                                media_type: child.media_type,
                            });
                        }
                    }
                }
                ManifestKind::Image => {}
            }
        }
        None
    }
}

#[async_trait]
impl Source for Reader {
    async fn manifest(&self, reference: Option<&str>) -> Result<RawManifest, ToolError> {
        let entry = self.entry(reference)?.clone();
        let config_path = self.file(&entry.config)?;
        let (config, config_size, _) = sha256_file(&config_path)?;
        if let Some(m) = self.layout_manifest(&config).await {
            return Ok(m);
        }
        let mut files = HashMap::new();
        files.insert(config.clone(), config_path);
        let mut layers = Vec::new();
        for l in &entry.layers {
            let p = self.file(l)?;
            let (d, size, magic) = sha256_file(&p)?;
            let media_type = match magic {
                [0x1f, 0x8b, ..] => OCI_LAYER_GZIP,
                [0x28, 0xb5, 0x2f, 0xfd] => OCI_LAYER_ZSTD,
                _ => OCI_LAYER_TAR,
            };
            layers.push(serde_json::json!({"mediaType": media_type, "size": size, "digest": d}));
            files.insert(d, p);
        }
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_MANIFEST,
            "config": {"mediaType": media::OCI_CONFIG, "size": config_size, "digest": config},
            "layers": layers,
        });
        if let Ok(mut f) = self.files.lock() {
            f.extend(files);
        }
        Ok(RawManifest {
            bytes: serde_json::to_vec_pretty(&manifest)?.into(),
            media_type: media::OCI_MANIFEST.to_owned(),
        })
    }

    async fn blob(&self, d: &Descriptor) -> Result<ByteStream, ToolError> {
        let known = self
            .files
            .lock()
            .ok()
            .and_then(|f| f.get(&d.digest).cloned());
        let path = match (known, &self.oci) {
            (Some(p), _) => p,
            (None, Some(oci)) => oci.blob_path(&d.digest),
            (None, None) => {
                return Err(ToolError::Image(format!(
                    "docker archive has no blob {}",
                    d.digest
                )))
            }
        };
        let f = tokio::fs::File::open(&path)
            .await
            .map_err(|e| ToolError::Image(format!("docker archive blob {}: {e}", d.digest)))?;
        Ok(Box::pin(
            tokio_util::io::ReaderStream::with_capacity(f, 256 * 1024).map_err(ToolError::from),
        ))
    }

    async fn tags(&self) -> Result<Vec<String>, ToolError> {
        Ok(self
            .entries
            .iter()
            .flat_map(|e| e.repo_tags.iter().flatten())
            .filter_map(|t| t.rsplit_once(':').map(|(_, tag)| tag.to_owned()))
            .collect())
    }
}

/// A docker-archive being written.
#[derive(Debug)]
pub struct Writer {
    layout: Layout,
    target: PathBuf,
    name: Option<ImageRef>,
    top: Mutex<Option<(RawManifest, Option<String>)>>,
    _dir: tempfile::TempDir,
}

impl Writer {
    /// Stages an archive for `path`; `name` gives the `RepoTags`.
    pub fn create(path: &Path, name: Option<ImageRef>) -> Result<Writer, ToolError> {
        let dir = tempfile::tempdir()?;
        Ok(Writer {
            layout: Layout::create(dir.path())?,
            target: path.to_owned(),
            name,
            top: Mutex::new(None),
            _dir: dir,
        })
    }
}

fn blob_rel(d: &Digest) -> String {
    format!("blobs/{}/{}", d.algorithm().as_str(), d.hex())
}

#[async_trait]
impl Destination for Writer {
    async fn has_blob(&self, d: &Descriptor) -> Result<bool, ToolError> {
        self.layout.has_blob(d).await
    }

    async fn put_blob(&self, d: &Descriptor, data: ByteStream) -> Result<(), ToolError> {
        self.layout.put_blob(d, data).await
    }

    fn check_image(&self, m: &RawManifest) -> Result<(), ToolError> {
        let parsed = m.parse()?;
        if parsed.kind != ManifestKind::Index {
            return Ok(());
        }
        let platforms: Vec<String> = parsed
            .manifests
            .iter()
            .filter_map(super::Platform::of)
            .map(|p| p.to_string())
            .collect();
        Err(ToolError::Usage(format!(
            "a docker-archive holds one single-platform image, and this is a multi-platform index ({}): \
             choose one with --platform, e.g. --platform {}",
            if platforms.is_empty() {
                "no platforms listed".to_owned()
            } else {
                platforms.join(", ")
            },
            platforms.first().map_or("linux/amd64", String::as_str)
        )))
    }

    async fn put_manifest(
        &self,
        m: &RawManifest,
        tag: Option<&str>,
        top: bool,
    ) -> Result<(), ToolError> {
        if !top {
            return Err(ToolError::Usage(
                "a docker-archive holds one single-platform image: choose a platform with --platform".to_owned(),
            ));
        }
        if m.parse()?.kind == ManifestKind::Index {
            return Err(ToolError::Usage(
                "a docker-archive cannot hold a multi-platform index: choose a platform with --platform".to_owned(),
            ));
        }
        let mut slot = self
            .top
            .lock()
            .map_err(|_| ToolError::Image("lock poisoned".to_owned()))?;
        if slot.is_some() {
            return Err(ToolError::Usage(
                "a docker-archive written by berth holds one image".to_owned(),
            ));
        }
        self.layout.put_bytes(&m.digest(), &m.bytes)?;
        *slot = Some((m.clone(), tag.map(str::to_owned)));
        Ok(())
    }

    async fn finish(&self) -> Result<(), ToolError> {
        let Some((m, tag)) = self.top.lock().ok().and_then(|t| t.clone()) else {
            return Err(ToolError::Image(
                "nothing was written to the docker archive".to_owned(),
            ));
        };
        let parsed = m.parse()?;
        let config = parsed
            .config
            .as_ref()
            .ok_or_else(|| ToolError::Image("image manifest without config".to_owned()))?;
        let name = self.name.as_ref().map(|n| {
            let tag = n
                .tag
                .clone()
                .or(tag.clone())
                .unwrap_or_else(|| "latest".to_owned());
            n.with_tag(&tag)
        });
        let entry = Entry {
            config: blob_rel(&config.digest),
            repo_tags: Some(name.iter().map(|n| n.familiar()).collect()),
            layers: parsed.layers.iter().map(|l| blob_rel(&l.digest)).collect(),
        };
        std::fs::write(
            self.layout.root().join("manifest.json"),
            serde_json::to_vec(&[entry])?,
        )?;
        let mut extra = Vec::new();
        if let Some(n) = &name {
            extra.push((CONTAINERD_NAME, n.to_string()));
        }
        let ref_tag = name.as_ref().and_then(|n| n.tag.clone());
        self.layout
            .add_to_index(m.descriptor(), ref_tag.as_deref(), &extra)?;
        layout::pack(self.layout.root(), &self.target)
    }
}
