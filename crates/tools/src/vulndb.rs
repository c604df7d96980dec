//! The offline vulnerability database as one OCI artifact, for sites
//! without network access to OSV: `berth vulndb push` packs OSV inputs into
//! an artifact in any registry or OCI layout, `berth vulndb import` fetches
//! one back, verifies it, and imports its records.
//!
//! ```text
//! manifest   application/vnd.oci.image.manifest.v1+json
//!   artifactType  application/vnd.berth.vulndb.v1
//!   config        application/vnd.oci.empty.v1+json ({})
//!   layers        application/vnd.berth.vulndb.osv.v1+zip, one per input:
//!                 a zip of OSV records as OSV publishes them (all.zip),
//!                 annotated with its title, source, record count,
//!                 ecosystems and newest `modified`
//!   annotations   created, total records, ecosystems, newest `modified`
//! ```
//!
//! An input that already is a zip is carried byte for byte; a directory or
//! a record file is zipped first. Every layer is a file `berth vulndb
//! import` reads as it is, and `oras pull` writes each one under its title.
//!
//! Fetching writes every blob to a temporary OCI layout, checking its
//! digest and size while it streams ([`Layout`]'s `put_blob`), and checks
//! the manifest's digest when the reference pins one: nothing is handed to
//! the import until every layer has been verified.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_oci::time::Timestamp;
use berth_oci::{media, Descriptor, Digest, ManifestKind};
use berth_scan::vuln::osv::{Source as OsvSource, Summary};

use crate::copy::layout::Layout;
use crate::copy::progress::Progress;
use crate::copy::{
    copy_image, open_destination, open_source, CopyOptions, Destination as _, Location, RawManifest,
};
use crate::ToolError;

/// The artifact type of a vulnerability database.
pub const ARTIFACT_TYPE: &str = "application/vnd.berth.vulndb.v1";
/// The media type of its layers: a zip of OSV JSON records.
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.berth.vulndb.osv.v1+zip";
/// The file name of a layer (what `oras pull` writes it as).
pub const TITLE: &str = "org.opencontainers.image.title";
/// When the artifact was made (manifest).
pub const CREATED: &str = "org.opencontainers.image.created";
/// What a layer was made from (the input as given).
pub const SOURCE: &str = "io.berth.vulndb.source";
/// Records in a layer, or in the artifact (manifest).
pub const RECORDS: &str = "io.berth.vulndb.records";
/// Ecosystem families, comma-separated.
pub const ECOSYSTEMS: &str = "io.berth.vulndb.ecosystems";
/// The newest `modified` time of the records: the time of the data.
pub const MODIFIED: &str = "io.berth.vulndb.modified";

/// The bytes of the empty config (`{}`).
const EMPTY_CONFIG: &[u8] = b"{}";

/// One layer of an artifact.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LayerInfo {
    /// Its file name.
    pub title: String,
    /// What it was made from.
    pub source: String,
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: i64,
    /// Records it holds.
    pub records: u64,
    /// Ecosystem families.
    pub ecosystems: Vec<String>,
    /// Newest `modified`.
    pub modified: Option<String>,
}

impl LayerInfo {
    fn of(d: &Descriptor) -> LayerInfo {
        let ann = |k: &str| d.annotations.as_ref().and_then(|a| a.get(k)).cloned();
        LayerInfo {
            title: ann(TITLE).unwrap_or_else(|| d.digest.hex().to_owned()),
            source: ann(SOURCE).unwrap_or_default(),
            digest: d.digest.clone(),
            size: d.size,
            records: ann(RECORDS).and_then(|r| r.parse().ok()).unwrap_or(0),
            ecosystems: ann(ECOSYSTEMS)
                .map(|e| {
                    e.split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            modified: ann(MODIFIED),
        }
    }
}

/// An artifact staged in a temporary OCI layout.
#[derive(Debug)]
pub struct Staged {
    dir: tempfile::TempDir,
    layout: Layout,
    /// The manifest.
    pub manifest: RawManifest,
    /// Its layers.
    pub layers: Vec<LayerInfo>,
    /// When it was made (`org.opencontainers.image.created`).
    pub created: Option<String>,
}

impl Staged {
    /// The manifest's digest.
    pub fn digest(&self) -> Digest {
        self.manifest.digest()
    }

    /// Where a layer's zip is (verified).
    pub fn layer_path(&self, layer: &LayerInfo) -> PathBuf {
        self.layout.blob_path(&layer.digest)
    }

    /// The temporary directory (removed on drop).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Total records.
    pub fn records(&self) -> u64 {
        self.layers.iter().map(|l| l.records).sum()
    }
}

/// A name for an input's layer: its file name, `.zip` added to a directory
/// or record file, made unique among `taken`.
fn title_of(path: &Path, zipped: bool, taken: &[String]) -> String {
    let name = |p: &Path| {
        p.file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .filter(|f| !f.is_empty() && f != "." && f != "..")
    };
    let mut base = name(path).unwrap_or_else(|| "records".to_owned());
    // OSV publishes every ecosystem's records as ECOSYSTEM/all.zip.
    if base == "all.zip" {
        if let Some(parent) = path.parent().and_then(name) {
            base = format!("{parent}-all.zip");
        }
    }
    let base = if zipped {
        base
    } else {
        format!("{}.zip", base.strip_suffix(".json").unwrap_or(&base))
    };
    let mut title = base.clone();
    let mut n = 2;
    while taken.contains(&title) {
        title = format!("{n}-{base}");
        n += 1;
    }
    title
}

fn hash_file(path: &Path) -> std::io::Result<(Digest, i64)> {
    let mut f = std::fs::File::open(path)?;
    let mut h = berth_oci::Algorithm::Sha256.hasher();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0i64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        size += n as i64;
    }
    Ok((h.finish(), size))
}

fn join(set: &std::collections::BTreeSet<String>) -> String {
    set.iter().cloned().collect::<Vec<_>>().join(",")
}

/// One input of an artifact: OSV records and what the layer says they came
/// from.
#[derive(Debug, Clone)]
pub struct Input {
    /// An all.zip, a directory of records, or a record file.
    pub path: PathBuf,
    /// The layer's `io.berth.vulndb.source`.
    pub source: String,
}

impl From<PathBuf> for Input {
    /// A file or directory named on the command line: its own source.
    fn from(path: PathBuf) -> Input {
        Input {
            source: path.display().to_string(),
            path,
        }
    }
}

/// Packs OSV inputs (all.zip files, directories of records, record files)
/// into an artifact staged in a temporary layout. Blocking: reads and
/// writes files.
pub fn build(inputs: &[Input]) -> Result<Staged, ToolError> {
    if inputs.is_empty() {
        return Err(ToolError::Usage(
            "name the OSV inputs to pack: all.zip files, directories of records, or record files"
                .to_owned(),
        ));
    }
    let dir = tempfile::tempdir()?;
    let layout = Layout::create(&dir.path().join("layout"))?;
    let mut layers = Vec::new();
    let mut total = Summary::default();
    let mut titles = Vec::new();
    for (
        i,
        Input {
            path: input,
            source: label,
        },
    ) in inputs.iter().enumerate()
    {
        let source = OsvSource::of(input)
            .map_err(|e| ToolError::Usage(format!("cannot read {}: {e}", input.display())))?;
        let staged = dir.path().join(format!("layer-{i}.zip"));
        let (summary, zipped) = match &source {
            OsvSource::Zip(p) => {
                let s = source.summary().map_err(|e| {
                    ToolError::Image(format!("{}: not a readable zip: {e}", p.display()))
                })?;
                std::fs::copy(p, &staged)?;
                (s, true)
            }
            _ => {
                let f = std::fs::File::create(&staged)?;
                let s = source.write_zip(std::io::BufWriter::new(f))?;
                (s, false)
            }
        };
        if summary.records == 0 {
            return Err(ToolError::Usage(format!(
                "{}: no OSV records (*.json) in it",
                input.display()
            )));
        }
        let (digest, size) = hash_file(&staged)?;
        let blob = layout.blob_path(&digest);
        if blob.exists() {
            return Err(ToolError::Usage(format!(
                "{}: the same records are named twice",
                input.display()
            )));
        }
        std::fs::rename(&staged, &blob)?;
        let title = title_of(input, zipped, &titles);
        titles.push(title.clone());
        let mut ann = BTreeMap::new();
        ann.insert(TITLE.to_owned(), title);
        ann.insert(SOURCE.to_owned(), label.clone());
        ann.insert(RECORDS.to_owned(), summary.records.to_string());
        ann.insert(ECOSYSTEMS.to_owned(), join(&summary.ecosystems));
        if let Some(m) = &summary.newest_modified {
            ann.insert(MODIFIED.to_owned(), m.clone());
        }
        total.merge(&summary);
        layers.push(Descriptor {
            media_type: LAYER_MEDIA_TYPE.to_owned(),
            digest,
            size,
            urls: None,
            annotations: Some(ann),
            data: None,
            artifact_type: None,
            platform: None,
        });
    }
    let config = Digest::sha256(EMPTY_CONFIG);
    layout.put_bytes(&config, EMPTY_CONFIG)?;
    let created = Timestamp::now().to_string();
    let mut ann = BTreeMap::new();
    ann.insert(CREATED.to_owned(), created.clone());
    ann.insert(
        "org.opencontainers.image.description".to_owned(),
        "berth vulnerability database: OSV records (berth vulndb import)".to_owned(),
    );
    ann.insert(RECORDS.to_owned(), total.records.to_string());
    ann.insert(ECOSYSTEMS.to_owned(), join(&total.ecosystems));
    if let Some(m) = &total.newest_modified {
        ann.insert(MODIFIED.to_owned(), m.clone());
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "artifactType": ARTIFACT_TYPE,
        "config": {"mediaType": media::OCI_EMPTY, "digest": config, "size": EMPTY_CONFIG.len(), "data": "e30="},
        "layers": layers,
        "annotations": ann,
    });
    let manifest = RawManifest {
        bytes: serde_json::to_vec(&manifest)?.into(),
        media_type: media::OCI_MANIFEST.to_owned(),
    };
    layout.put_bytes(&manifest.digest(), &manifest.bytes)?;
    layout.add_to_index(manifest.descriptor(), None, &[])?;
    Ok(Staged {
        layers: layers.iter().map(LayerInfo::of).collect(),
        dir,
        layout,
        manifest,
        created: Some(created),
    })
}

/// What a push did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Pushed {
    /// Where to (the destination as given, with the tag written).
    pub destination: String,
    /// The tag written.
    pub tag: Option<String>,
    /// The manifest digest.
    pub digest: Digest,
    /// The artifact type.
    pub artifact_type: &'static str,
    /// When it was made.
    pub created: Option<String>,
    /// Total records.
    pub records: u64,
    /// The layers.
    pub layers: Vec<LayerInfo>,
    /// Bytes transferred (blobs the destination had are not sent again).
    pub bytes: u64,
}

/// Writes a staged artifact to `dst` (a registry: `REF`, `docker://REF`; or
/// `oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]`), tagged with the location's
/// tag (`latest` for a registry without one).
pub async fn push(
    staged: &Staged,
    dst: &Location,
    client: &Arc<berth_client::Client>,
    progress: &Arc<dyn Progress>,
) -> Result<Pushed, ToolError> {
    let tag = match dst {
        Location::Registry(r) if r.digest.is_some() => {
            return Err(ToolError::Usage(format!(
                "{dst}: push to a tag, not a digest (the digest is the artifact's own)"
            )))
        }
        Location::Registry(r) => Some(r.tag.clone().unwrap_or_else(|| "latest".to_owned())),
        Location::OciLayout { tag, .. } | Location::OciArchive { tag, .. } => tag.clone(),
        Location::DockerArchive { .. } => {
            return Err(ToolError::Usage(format!(
                "{dst}: a docker-archive holds images, not artifacts: push to a registry, \
                 oci:DIR or oci-archive:FILE"
            )))
        }
    };
    let out = open_destination(dst, client).await?;
    let digest = staged.digest();
    let report = copy_image(
        &staged.layout,
        Some(digest.as_str()),
        out.as_ref(),
        tag.as_deref(),
        &CopyOptions::default(),
        progress,
    )
    .await?;
    out.finish().await?;
    Ok(Pushed {
        destination: dst.to_string(),
        tag,
        digest,
        artifact_type: ARTIFACT_TYPE,
        created: staged.created.clone(),
        records: staged.records(),
        layers: staged.layers.clone(),
        bytes: report.bytes,
    })
}

/// Whether a command-line input names an artifact (`docker://REF`,
/// `oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]`) rather than a file.
pub fn artifact_location(input: &str) -> Option<Result<Location, ToolError>> {
    ["docker://", "oci:", "oci-archive:"]
        .iter()
        .any(|p| input.starts_with(p))
        .then(|| Location::parse(input))
}

/// The reference a fetched artifact is recorded under:
/// `docker://REGISTRY/REPO[:TAG]@DIGEST` or `oci:DIR[:TAG]@DIGEST`.
pub fn recorded_reference(src: &Location, digest: &Digest) -> String {
    match src {
        Location::Registry(r) => format!(
            "docker://{}/{}{}@{digest}",
            r.registry,
            r.repository,
            r.tag.as_ref().map(|t| format!(":{t}")).unwrap_or_default()
        ),
        other => format!("{other}@{digest}"),
    }
}

/// Fetches the artifact at `src`, verifying the manifest (against the
/// digest the reference pins) and every blob (against its descriptor)
/// into a temporary layout. Refuses anything that is not a berth
/// vulnerability database.
pub async fn fetch(
    src: &Location,
    client: &Arc<berth_client::Client>,
) -> Result<Staged, ToolError> {
    let damaged = |what: String| {
        ToolError::Image(format!(
            "{src}: the vulnerability database artifact is damaged: {what}; nothing was imported"
        ))
    };
    let reference = match src {
        Location::Registry(r) => Some(r.manifest_reference()),
        Location::OciLayout { tag, .. } | Location::OciArchive { tag, .. } => tag.clone(),
        Location::DockerArchive { .. } => {
            return Err(ToolError::Usage(format!(
                "{src}: a vulnerability database is read from a registry (docker://REF), \
                 oci:DIR[:TAG] or oci-archive:FILE[:TAG]"
            )))
        }
    };
    let input = open_source(src, client).await?;
    let manifest = input.manifest(reference.as_deref()).await?;
    let digest = manifest.digest();
    if let Some(Ok(pinned)) = reference.as_deref().map(Digest::parse) {
        if Digest::compute(pinned.algorithm(), &manifest.bytes) != pinned {
            return Err(damaged(format!("the manifest does not match {pinned}")));
        }
    }
    let parsed = manifest.parse()?;
    if parsed.kind != ManifestKind::Image || parsed.artifact_type.as_deref() != Some(ARTIFACT_TYPE)
    {
        return Err(ToolError::Image(format!(
            "{src} is not a berth vulnerability database (artifactType {}, expected {ARTIFACT_TYPE}): \
             make one with `berth vulndb push`",
            parsed
                .artifact_type
                .as_deref()
                .or(parsed.config.as_ref().map(|c| c.media_type.as_str()))
                .unwrap_or("none")
        )));
    }
    if let Some(other) = parsed
        .layers
        .iter()
        .find(|l| l.media_type != LAYER_MEDIA_TYPE)
    {
        return Err(ToolError::Image(format!(
            "{src}: layer {} has media type {}, expected {LAYER_MEDIA_TYPE}",
            other.digest, other.media_type
        )));
    }
    if parsed.layers.is_empty() {
        return Err(ToolError::Image(format!(
            "{src}: the artifact has no layers"
        )));
    }
    let dir = tempfile::tempdir()?;
    let layout = Layout::create(&dir.path().join("layout"))?;
    for d in parsed.config.iter().chain(parsed.layers.iter()) {
        let name = LayerInfo::of(d).title;
        let stream = input
            .blob(d)
            .await
            .map_err(|e| damaged(format!("{name} ({}) cannot be read: {e}", d.digest)))?;
        layout
            .put_blob(d, stream)
            .await
            .map_err(|e| damaged(format!("{name}: {e}")))?;
    }
    layout.put_bytes(&digest, &manifest.bytes)?;
    let created = parsed
        .annotations
        .as_ref()
        .and_then(|a| a.get(CREATED))
        .cloned();
    Ok(Staged {
        layers: parsed.layers.iter().map(LayerInfo::of).collect(),
        dir,
        layout,
        manifest,
        created,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_unique_file_names() {
        let taken = vec!["Debian-all.zip".to_owned()];
        assert_eq!(
            title_of(Path::new("/d/Debian/all.zip"), true, &[]),
            "Debian-all.zip"
        );
        assert_eq!(
            title_of(Path::new("/e/Debian/all.zip"), true, &taken),
            "2-Debian-all.zip"
        );
        assert_eq!(title_of(Path::new("/d/pypi"), false, &[]), "pypi.zip");
        assert_eq!(title_of(Path::new("GHSA-1.json"), false, &[]), "GHSA-1.zip");
        assert!(artifact_location("oci:/tmp/db:v1").is_some());
        assert!(artifact_location("docker://localhost:5000/db:v1").is_some());
        assert!(artifact_location("/tmp/all.zip").is_none());
    }
}
