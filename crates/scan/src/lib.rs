//! What is inside an image: the package inventory of its layers and the SBOM
//! documents made from it.
//!
//! Pure functions over image content: no HTTP, no SQL of berth's own, no
//! registry. The caller (the `berth sbom` tool, later the scan worker) fetches
//! the blobs and hands their bytes over as readers.
//!
//! - [`layers`]: a layer (gzip, zstd or plain tar) is applied onto a
//!   [`layers::FileView`] in order, whiteouts (`.wh.NAME`) and opaque
//!   directories (`.wh..wh..opq`) included. The view keeps in memory only the
//!   files a cataloger reads (package databases, metadata files); executables
//!   and jars are examined while they stream past and leave only what was
//!   found in them; everything else streams through untouched.
//! - [`catalog`]: the catalogers turn the view into an [`Inventory`]: OS
//!   packages (dpkg, apk, RPM's `rpmdb.sqlite`), the distribution from
//!   `os-release`, and language packages (Python, Node, Go build info, Rust
//!   `Cargo.lock`, Maven `pom.properties` inside jars).
//! - [`purl`]: package URLs as the purl specification writes them.
//! - [`sbom`]: SPDX 2.3 and CycloneDX 1.6 JSON documents of an inventory.
//! - [`vuln`]: OSV advisories, version comparison per ecosystem, and the
//!   matching of advisories against an inventory (findings with their
//!   severity).
//!
//! Must not import: the server, the registry services, the metadata layer.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod catalog;
pub mod layers;
pub mod purl;
pub mod sbom;
pub mod vuln;

use serde::Serialize;

/// Errors of inventory building.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A layer could not be read (truncated stream, bad compression, bad tar).
    #[error("layer {layer}: {source}")]
    Layer {
        /// The layer's digest.
        layer: String,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// A layer's bytes do not match its digest.
    #[error("layer {layer} does not match its digest (read {actual})")]
    DigestMismatch {
        /// The expected digest.
        layer: String,
        /// The digest of what was read.
        actual: String,
    },
    /// A temporary file for a database could not be written.
    #[error("temporary file: {0}")]
    Temp(#[source] std::io::Error),
}

/// The package ecosystems berth knows.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Ecosystem {
    /// Debian and Ubuntu packages (dpkg).
    Deb,
    /// Alpine packages.
    Apk,
    /// RPM packages.
    Rpm,
    /// Python distributions.
    Pypi,
    /// Node packages.
    Npm,
    /// Go modules compiled into a binary.
    Golang,
    /// Rust crates.
    Cargo,
    /// Java artifacts.
    Maven,
}

impl Ecosystem {
    /// The purl type (`deb`, `pypi`, ...), which is also the serialized name.
    pub fn as_str(self) -> &'static str {
        match self {
            Ecosystem::Deb => "deb",
            Ecosystem::Apk => "apk",
            Ecosystem::Rpm => "rpm",
            Ecosystem::Pypi => "pypi",
            Ecosystem::Npm => "npm",
            Ecosystem::Golang => "golang",
            Ecosystem::Cargo => "cargo",
            Ecosystem::Maven => "maven",
        }
    }

    /// Whether packages of this ecosystem belong to the operating system.
    pub fn is_os(self) -> bool {
        matches!(self, Ecosystem::Deb | Ecosystem::Apk | Ecosystem::Rpm)
    }
}

/// The source package a binary package was built from (Debian and Alpine
/// advisories name source packages; RPM's is the source RPM's file name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourcePackage {
    /// Its name.
    pub name: String,
    /// Its version, when it differs from the binary package's or is known.
    pub version: Option<String>,
}

/// One package found in the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Package {
    /// Its ecosystem.
    pub ecosystem: Ecosystem,
    /// Namespace inside the ecosystem: the Maven group id, the npm scope
    /// (`@scope`); `None` elsewhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name (for Go: the module path).
    pub name: String,
    /// Version as the ecosystem writes it (dpkg `epoch:upstream-revision`,
    /// RPM `[epoch:]version-release`).
    pub version: String,
    /// The source package, for OS packages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<SourcePackage>,
    /// CPU architecture, for OS packages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    /// Declared license, as the package metadata says it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    /// Package URL.
    pub purl: String,
    /// Digest of the layer the file that declares it came from.
    pub layer: String,
    /// Path of that file in the image (`/` first; `jar!inner` inside archives).
    pub path: String,
}

/// The distribution, from `os-release`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Distro {
    /// `ID` (`debian`, `alpine`, `fedora`, ...).
    pub id: String,
    /// `VERSION_ID` (`12`, `3.20.3`), if given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// `VERSION_CODENAME` (`bookworm`), if given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub codename: Option<String>,
    /// `PRETTY_NAME`, if given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pretty_name: Option<String>,
}

impl Distro {
    /// `id-version_id` (`debian-12`), the purl `distro` qualifier.
    pub fn qualifier(&self) -> String {
        match &self.version_id {
            Some(v) => format!("{}-{v}", self.id),
            None => self.id.clone(),
        }
    }
}

/// Something the catalogers saw but could not read, said out loud rather
/// than left as a silently empty inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Note {
    /// The file.
    pub path: String,
    /// Its layer.
    pub layer: String,
    /// What is wrong.
    pub message: String,
}

/// Everything found in one image (one platform).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Inventory {
    /// The distribution, when `os-release` says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distro: Option<Distro>,
    /// The packages, sorted by ecosystem, name, version and path.
    pub packages: Vec<Package>,
    /// Databases and files that could not be read.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<Note>,
}
