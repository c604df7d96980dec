//! RPM packages from `rpmdb.sqlite` (RPM 4.16 and later, Fedora 33+, RHEL 9,
//! Rocky, Alma, Amazon Linux 2023): the `Packages` table holds one header
//! blob per package, read here by the header format RPM documents (index
//! entries of tag, type, offset and count over a data store).
//!
//! The older BerkeleyDB (`Packages`) and NDB (`Packages.db`) databases are
//! recognised and reported as unsupported: an inventory never silently
//! lacks an RPM image's packages.

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions as _, Connection as _};

use crate::{purl, Distro, Ecosystem, Package, SourcePackage};

/// The kinds of RPM database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseKind {
    /// `rpmdb.sqlite`.
    Sqlite,
    /// BerkeleyDB `Packages` (RHEL 8 and older, CentOS 7/8, Amazon Linux 2).
    BerkeleyDb,
    /// NDB `Packages.db` (SUSE).
    Ndb,
}

impl DatabaseKind {
    /// Why the database was not read.
    pub fn unsupported(self) -> String {
        let what = match self {
            DatabaseKind::Sqlite => "SQLite",
            DatabaseKind::BerkeleyDb => "BerkeleyDB",
            DatabaseKind::Ndb => "NDB",
        };
        format!(
            "RPM {what} database: not supported, its packages are not in this inventory \
             (berth reads rpmdb.sqlite, RPM 4.16 and later)"
        )
    }
}

/// Whether `path` (no leading `/`) is an RPM database, and which kind.
pub fn database_kind(path: &str) -> Option<DatabaseKind> {
    let (dir, name) = path.rsplit_once('/')?;
    if dir != "var/lib/rpm" && dir != "usr/lib/sysimage/rpm" {
        return None;
    }
    match name {
        "rpmdb.sqlite" => Some(DatabaseKind::Sqlite),
        "Packages" => Some(DatabaseKind::BerkeleyDb),
        "Packages.db" => Some(DatabaseKind::Ndb),
        _ => None,
    }
}

/// Reads the packages of an `rpmdb.sqlite` file (through a temporary copy:
/// SQLite opens files). The error is the note to show.
pub async fn read_sqlite(
    bytes: &[u8],
    distro: Option<&Distro>,
    path: &str,
    layer: &str,
) -> Result<Vec<Package>, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
    let file = dir.path().join("rpmdb.sqlite");
    std::fs::write(&file, bytes).map_err(|e| format!("temporary copy: {e}"))?;
    let mut conn = SqliteConnectOptions::new()
        .filename(&file)
        .read_only(true)
        .immutable(true)
        .connect()
        .await
        .map_err(|e| format!("not a readable SQLite database: {e}"))?;
    let blobs: Vec<Vec<u8>> = sqlx::query_scalar("SELECT blob FROM Packages ORDER BY hnum")
        .fetch_all(&mut conn)
        .await
        .map_err(|e| format!("no Packages table of RPM headers: {e}"))?;
    let _ = conn.close().await;
    let mut out = Vec::new();
    for (i, blob) in blobs.iter().enumerate() {
        let h = Header::parse(blob).ok_or_else(|| format!("RPM header {} is malformed", i + 1))?;
        if let Some(p) = h.package(distro, path, layer) {
            out.push(p);
        }
    }
    Ok(out)
}

const TAG_NAME: i32 = 1000;
const TAG_VERSION: i32 = 1001;
const TAG_RELEASE: i32 = 1002;
const TAG_EPOCH: i32 = 1003;
const TAG_LICENSE: i32 = 1014;
const TAG_ARCH: i32 = 1022;
const TAG_SOURCERPM: i32 = 1044;

const TYPE_INT32: u32 = 4;
const TYPE_STRING: u32 = 6;
const TYPE_STRING_ARRAY: u32 = 8;
const TYPE_I18NSTRING: u32 = 9;

/// An RPM header: `(tag, type, offset, count)` entries over a data store.
pub struct Header<'a> {
    entries: Vec<(i32, u32, usize, u32)>,
    data: &'a [u8],
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

impl<'a> Header<'a> {
    /// Parses a header blob as RPM stores it (no leading magic: index
    /// count, data length, the index, the data).
    pub fn parse(blob: &'a [u8]) -> Option<Header<'a>> {
        let il = be32(blob, 0)? as usize;
        let dl = be32(blob, 4)? as usize;
        let index_end = 8usize.checked_add(il.checked_mul(16)?)?;
        let data = blob.get(index_end..index_end.checked_add(dl)?)?;
        let mut entries = Vec::with_capacity(il);
        for i in 0..il {
            let at = 8 + i * 16;
            entries.push((
                be32(blob, at)? as i32,
                be32(blob, at + 4)?,
                be32(blob, at + 8)? as usize,
                be32(blob, at + 12)?,
            ));
        }
        Some(Header { entries, data })
    }

    /// A string tag's value (the first of an array).
    pub fn string(&self, tag: i32) -> Option<&'a str> {
        let &(_, ty, off, _) = self.entries.iter().find(|e| e.0 == tag)?;
        if !matches!(ty, TYPE_STRING | TYPE_STRING_ARRAY | TYPE_I18NSTRING) {
            return None;
        }
        let rest = self.data.get(off..)?;
        let end = rest.iter().position(|&b| b == 0)?;
        std::str::from_utf8(&rest[..end]).ok()
    }

    /// An INT32 tag's first value.
    pub fn int(&self, tag: i32) -> Option<u32> {
        let &(_, ty, off, _) = self.entries.iter().find(|e| e.0 == tag)?;
        (ty == TYPE_INT32).then(|| be32(self.data, off))?
    }

    fn package(&self, distro: Option<&Distro>, path: &str, layer: &str) -> Option<Package> {
        let name = self.string(TAG_NAME)?;
        let version = self.string(TAG_VERSION)?;
        let release = self.string(TAG_RELEASE)?;
        // The keys `rpm --import` adds are no packages.
        if name == "gpg-pubkey" && self.string(TAG_ARCH).is_none() {
            return None;
        }
        let epoch = self.int(TAG_EPOCH);
        let arch = self.string(TAG_ARCH).map(str::to_owned);
        let vr = format!("{version}-{release}");
        let full = match epoch {
            Some(e) => format!("{e}:{vr}"),
            None => vr.clone(),
        };
        let srpm = self
            .string(TAG_SOURCERPM)
            .filter(|s| !s.is_empty() && *s != "(none)");
        let source = srpm.map(source_of);
        let namespace = distro.map_or("redhat", |d| d.id.as_str());
        let distro_q = distro.map(Distro::qualifier).unwrap_or_default();
        let epoch_s = epoch.map(|e| e.to_string()).unwrap_or_default();
        Some(Package {
            ecosystem: Ecosystem::Rpm,
            namespace: None,
            name: name.to_owned(),
            version: full,
            purl: purl::build(
                "rpm",
                Some(namespace),
                name,
                Some(&vr),
                &[
                    ("arch", arch.as_deref().unwrap_or("")),
                    ("epoch", &epoch_s),
                    ("distro", &distro_q),
                    ("upstream", srpm.unwrap_or("")),
                ],
            ),
            source,
            arch,
            license: self.string(TAG_LICENSE).map(str::to_owned),
            layer: layer.to_owned(),
            path: path.to_owned(),
        })
    }
}

/// `bash-5.2.15-5.fc39.src.rpm` is source `bash` at `5.2.15-5.fc39`.
fn source_of(srpm: &str) -> SourcePackage {
    let stem = srpm
        .strip_suffix(".rpm")
        .and_then(|s| s.rsplit_once('.').map(|(stem, _arch)| stem))
        .unwrap_or(srpm);
    let mut parts = stem.rsplitn(3, '-');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(release), Some(version), Some(name)) => SourcePackage {
            name: name.to_owned(),
            version: Some(format!("{version}-{release}")),
        },
        _ => SourcePackage {
            name: srpm.to_owned(),
            version: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_rpm_names() {
        assert_eq!(
            source_of("bash-5.2.15-5.fc39.src.rpm"),
            SourcePackage {
                name: "bash".into(),
                version: Some("5.2.15-5.fc39".into())
            }
        );
        assert_eq!(
            source_of("python3-pip-23.2.1-1.el9.src.rpm").name,
            "python3-pip"
        );
    }

    #[test]
    fn database_kinds() {
        assert_eq!(
            database_kind("var/lib/rpm/rpmdb.sqlite"),
            Some(DatabaseKind::Sqlite)
        );
        assert_eq!(
            database_kind("usr/lib/sysimage/rpm/Packages.db"),
            Some(DatabaseKind::Ndb)
        );
        assert_eq!(
            database_kind("var/lib/rpm/Packages"),
            Some(DatabaseKind::BerkeleyDb)
        );
        assert_eq!(database_kind("home/var/lib/rpm/Packages"), None);
    }

    #[test]
    fn a_header_blob() {
        // Two entries over "bash\0" and "5.2\0".
        let mut blob = Vec::new();
        blob.extend(2u32.to_be_bytes());
        blob.extend(9u32.to_be_bytes());
        for (tag, off) in [(TAG_NAME, 0u32), (TAG_VERSION, 5)] {
            blob.extend(tag.to_be_bytes());
            blob.extend(TYPE_STRING.to_be_bytes());
            blob.extend(off.to_be_bytes());
            blob.extend(1u32.to_be_bytes());
        }
        blob.extend(b"bash\x005.2\x00");
        let h = Header::parse(&blob).unwrap();
        assert_eq!(h.string(TAG_NAME), Some("bash"));
        assert_eq!(h.string(TAG_VERSION), Some("5.2"));
        assert_eq!(h.string(TAG_RELEASE), None);
        assert!(Header::parse(&blob[..20]).is_none());
    }
}
