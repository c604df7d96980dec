//! Layers applied in order onto a view of the files the catalogers need.
//!
//! A layer is a tar stream, gzip- or zstd-compressed or not (told by its
//! first bytes, not its media type: registries hold images whose media type
//! says gzip for a plain tar). Each entry is classified by [`interest`]:
//!
//! - package databases and metadata files are kept in memory (each capped at
//!   [`MAX_KEPT_FILE`]);
//! - executables are looked at while they stream past: an ELF file whose
//!   writable segment starts with Go's build info leaves the modules found
//!   there, nothing else;
//! - jars are spooled (in memory below [`MAX_IN_MEMORY_ARCHIVE`], else to
//!   a temporary file), read as zip, and leave the Maven packages they hold;
//! - everything else streams through.
//!
//! Whiteouts follow the OCI image spec: `dir/.wh.NAME` deletes `dir/NAME`
//! and everything under it from the layers below; `dir/.wh..wh..opq` hides
//! everything the layers below have under `dir`. A file in a layer replaces
//! whatever the layers below had at its path (and below it). None of this
//! touches entries of the same layer, so a layer is collected first and
//! then laid over the view.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read};

use berth_oci::Digest;

use crate::catalog::{gobin, java};
use crate::{Error, Note, Package};

/// Largest metadata file kept in memory (package databases included).
pub const MAX_KEPT_FILE: u64 = 256 * 1024 * 1024;
/// Jars up to this size are read in memory, larger ones through a file.
pub const MAX_IN_MEMORY_ARCHIVE: u64 = 64 * 1024 * 1024;

/// What a kept path holds.
#[derive(Debug, Clone)]
pub enum Content {
    /// A metadata file's bytes.
    Bytes(Vec<u8>),
    /// A symbolic link's target (kept for `os-release`).
    Symlink(String),
    /// What a binary or an archive held, found while it streamed past.
    Found {
        /// The packages.
        packages: Vec<Package>,
        /// What could not be read in it.
        notes: Vec<Note>,
    },
}

/// One kept file of the image.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Digest of the layer it comes from.
    pub layer: String,
    /// Its content.
    pub content: Content,
}

/// The image's files that matter to the catalogers, by path (no leading
/// `/`), after the layers applied so far.
#[derive(Debug, Default)]
pub struct FileView {
    files: BTreeMap<String, Entry>,
    layers: Vec<String>,
}

/// What is done with a tar entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    /// Kept in memory for a cataloger.
    Keep,
    /// Examined for Go build info while it streams.
    Executable,
    /// Read as a zip archive for Maven metadata.
    Archive,
    /// Streamed past.
    Skip,
}

/// Classifies a regular file by its path (no leading `/`) and mode.
pub fn interest(path: &str, mode: u32) -> Interest {
    const EXACT: &[&str] = &[
        "var/lib/dpkg/status",
        "lib/apk/db/installed",
        "etc/os-release",
        "usr/lib/os-release",
    ];
    let name = path.rsplit('/').next().unwrap_or(path);
    let parent = path.rsplit_once('/').map_or("", |(p, _)| p);
    if EXACT.contains(&path)
        || (parent == "var/lib/dpkg/status.d" && !name.ends_with(".md5sums"))
        || crate::catalog::rpm::database_kind(path).is_some()
        || (name == "METADATA" && parent.ends_with(".dist-info"))
        || (name == "PKG-INFO" && parent.ends_with(".egg-info"))
        || (name.ends_with(".egg-info") && !parent.is_empty())
        || name == "Cargo.lock"
        || (name == "package.json" && crate::catalog::node::is_package_root(parent))
    {
        return Interest::Keep;
    }
    if name.ends_with(".jar") || name.ends_with(".war") || name.ends_with(".ear") {
        return Interest::Archive;
    }
    if mode & 0o111 != 0 {
        return Interest::Executable;
    }
    Interest::Skip
}

/// `./a/b/`, `/a/b` and `a//b` all become `a/b`.
pub fn normalize(path: &str) -> String {
    path.split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect::<Vec<_>>()
        .join("/")
}

/// The first bytes of a zstd frame and of a gzip member.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// A reader that hashes what passes through it.
struct Hashing<R> {
    inner: R,
    hasher: Option<berth_oci::digest::Hasher>,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(h) = self.hasher.as_mut() {
            h.update(&buf[..n]);
        }
        Ok(n)
    }
}

impl FileView {
    /// An empty view (no layer applied).
    pub fn new() -> FileView {
        FileView::default()
    }

    /// The kept files, by path.
    pub fn files(&self) -> &BTreeMap<String, Entry> {
        &self.files
    }

    /// The layers applied, in order.
    pub fn layers(&self) -> &[String] {
        &self.layers
    }

    /// The kept file at `path`, following symbolic links among kept files
    /// (up to a few hops).
    pub fn resolve(&self, path: &str) -> Option<(&str, &Entry)> {
        let mut current = normalize(path);
        for _ in 0..8 {
            let (key, entry) = self.files.get_key_value(&current)?;
            match &entry.content {
                Content::Symlink(target) => {
                    current = if target.starts_with('/') {
                        normalize(target)
                    } else {
                        let parent = key.rsplit_once('/').map_or("", |(p, _)| p);
                        resolve_relative(parent, target)
                    };
                }
                _ => return Some((key.as_str(), entry)),
            }
        }
        None
    }

    /// Applies one layer: `digest` is checked against the bytes read, the
    /// compression is told by the first bytes.
    pub fn apply_layer(&mut self, digest: &Digest, reader: impl Read) -> Result<(), Error> {
        let layer = digest.to_string();
        let io_err = |source| Error::Layer {
            layer: layer.clone(),
            source,
        };
        let mut hashing = Hashing {
            inner: reader,
            hasher: Some(digest.algorithm().hasher()),
        };
        let mut buffered = BufReader::with_capacity(256 * 1024, &mut hashing);
        let head = buffered.fill_buf().map_err(io_err)?;
        let changes = if head.starts_with(&ZSTD_MAGIC) {
            let decoder =
                zstd::stream::read::Decoder::with_buffer(&mut buffered).map_err(io_err)?;
            collect_layer(&layer, decoder, &self.files)
        } else if head.starts_with(&GZIP_MAGIC) {
            collect_layer(
                &layer,
                flate2::bufread::MultiGzDecoder::new(&mut buffered),
                &self.files,
            )
        } else {
            collect_layer(&layer, &mut buffered, &self.files)
        }
        .map_err(io_err)?;
        // What follows the tar's end (padding, the compression trailer) is
        // part of the blob and of its digest.
        io::copy(&mut buffered, &mut io::sink()).map_err(io_err)?;
        drop(buffered);
        let actual = hashing.hasher.take().map(berth_oci::digest::Hasher::finish);
        if actual.as_ref() != Some(digest) {
            return Err(Error::DigestMismatch {
                layer,
                actual: actual.map(|d| d.to_string()).unwrap_or_default(),
            });
        }
        self.lay_over(changes);
        self.layers.push(layer);
        Ok(())
    }

    fn remove_tree(&mut self, path: &str) {
        self.files.remove(path);
        if path.is_empty() {
            self.files.clear();
            return;
        }
        let prefix = format!("{path}/");
        let doomed: Vec<String> = self
            .files
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            self.files.remove(&k);
        }
    }

    fn lay_over(&mut self, changes: LayerChanges) {
        for dir in &changes.opaque {
            let kept_dir = self.files.remove(dir);
            self.remove_tree(dir);
            if let Some(e) = kept_dir {
                self.files.insert(dir.clone(), e);
            }
        }
        for p in changes.whiteouts.iter().chain(&changes.replaced) {
            self.remove_tree(p);
        }
        self.files.extend(changes.files);
    }
}

fn resolve_relative(parent: &str, target: &str) -> String {
    let mut parts: Vec<&str> = parent.split('/').filter(|s| !s.is_empty()).collect();
    for seg in target.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    parts.join("/")
}

/// What one layer changes, before it is laid over the view.
#[derive(Default)]
struct LayerChanges {
    files: BTreeMap<String, Entry>,
    whiteouts: Vec<String>,
    opaque: Vec<String>,
    /// Paths of the layers below that this layer overwrote with something
    /// the catalogers do not keep.
    replaced: Vec<String>,
}

fn below_has(lower: &BTreeMap<String, Entry>, path: &str) -> bool {
    if lower.contains_key(path) {
        return true;
    }
    let prefix = format!("{path}/");
    lower
        .range(prefix.clone()..)
        .next()
        .is_some_and(|(k, _)| k.starts_with(&prefix))
}

fn collect_layer(
    layer: &str,
    tar_stream: impl Read,
    lower: &BTreeMap<String, Entry>,
) -> io::Result<LayerChanges> {
    let mut archive = tar::Archive::new(tar_stream);
    let mut changes = LayerChanges::default();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let raw_path = entry.path()?.to_string_lossy().into_owned();
        let path = normalize(&raw_path);
        let (parent, name) = match path.rsplit_once('/') {
            Some((p, n)) => (p.to_owned(), n.to_owned()),
            None => (String::new(), path.clone()),
        };
        if name == ".wh..wh..opq" {
            changes.opaque.push(parent);
            continue;
        }
        if let Some(hidden) = name.strip_prefix(".wh.") {
            changes.whiteouts.push(if parent.is_empty() {
                hidden.to_owned()
            } else {
                format!("{parent}/{hidden}")
            });
            continue;
        }
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            // A directory over a kept file replaces it; over a directory it
            // merges.
            if lower.contains_key(&path) {
                changes.replaced.push(path);
            }
            continue;
        }
        if below_has(lower, &path) {
            changes.replaced.push(path.clone());
        }
        changes.files.remove(&path);
        let mode = entry.header().mode().unwrap_or(0);
        let found = if kind.is_symlink() {
            match entry.link_name()? {
                Some(target) if interest(&path, 0) == Interest::Keep => {
                    Some(Content::Symlink(target.to_string_lossy().into_owned()))
                }
                _ => None,
            }
        } else if kind.is_hard_link() {
            // A hard link to a kept file of this layer or below.
            entry.link_name()?.and_then(|target| {
                let target = normalize(&target.to_string_lossy());
                changes
                    .files
                    .get(&target)
                    .or_else(|| lower.get(&target))
                    .map(|e| e.content.clone())
            })
        } else if kind.is_file() {
            let size = entry.header().size().unwrap_or(0);
            match interest(&path, mode) {
                Interest::Keep if size <= MAX_KEPT_FILE => {
                    let mut bytes = Vec::with_capacity(size as usize);
                    entry.read_to_end(&mut bytes)?;
                    Some(Content::Bytes(bytes))
                }
                Interest::Keep => Some(Content::Found {
                    packages: Vec::new(),
                    notes: vec![Note {
                        path: format!("/{path}"),
                        layer: layer.to_owned(),
                        message: format!(
                            "{size} bytes: larger than the {MAX_KEPT_FILE} bytes read of a package database"
                        ),
                    }],
                }),
                Interest::Executable => {
                    let (packages, notes) =
                        gobin::read_stream(&mut entry, &format!("/{path}"), layer)?;
                    (!packages.is_empty() || !notes.is_empty())
                        .then_some(Content::Found { packages, notes })
                }
                Interest::Archive => {
                    let (packages, notes) =
                        java::read_stream(&mut entry, size, &format!("/{path}"), layer)?;
                    (!packages.is_empty() || !notes.is_empty())
                        .then_some(Content::Found { packages, notes })
                }
                Interest::Skip => None,
            }
        } else {
            None
        };
        if let Some(content) = found {
            changes.files.insert(
                path,
                Entry {
                    layer: layer.to_owned(),
                    content,
                },
            );
        }
    }
    Ok(changes)
}

#[cfg(test)]
mod tests;
