//! The catalogers: from the kept files of a [`FileView`] to an [`Inventory`].
//!
//! Each cataloger owns one kind of package database or metadata file and is
//! a function of bytes (plus the distribution, for OS package purls):
//!
//! | module | reads | ecosystem |
//! | --- | --- | --- |
//! | [`osrelease`] | `/etc/os-release`, else `/usr/lib/os-release` | the distribution |
//! | [`dpkg`] | `/var/lib/dpkg/status`, `/var/lib/dpkg/status.d/*` | deb |
//! | [`apk`] | `/lib/apk/db/installed` | apk |
//! | [`rpm`] | `rpmdb.sqlite` (BerkeleyDB and NDB databases: a note) | rpm |
//! | [`python`] | `*.dist-info/METADATA`, `*.egg-info/PKG-INFO`, `*.egg-info` | pypi |
//! | [`node`] | `node_modules/[@scope/]NAME/package.json` | npm |
//! | [`gobin`] | ELF executables' Go build info (while streaming) | golang |
//! | [`cargo`] | `Cargo.lock` | cargo |
//! | [`java`] | `META-INF/maven/**/pom.properties` in jars, wars, ears (while streaming) | maven |

pub mod apk;
pub mod cargo;
pub mod dpkg;
pub mod gobin;
pub mod java;
pub mod node;
pub mod osrelease;
pub mod python;
pub mod rpm;

use crate::layers::{Content, FileView};
use crate::{Error, Inventory, Note};

/// Builds the inventory of the files in `view`.
pub async fn catalog(view: &FileView) -> Result<Inventory, Error> {
    let mut inv = Inventory {
        distro: osrelease::find(view),
        ..Inventory::default()
    };
    let distro = inv.distro.clone();
    for (path, entry) in view.files() {
        let abs = format!("/{path}");
        let layer = entry.layer.as_str();
        let bytes = match &entry.content {
            Content::Bytes(b) => b.as_slice(),
            Content::Found { packages, notes } => {
                inv.packages.extend(packages.iter().cloned());
                inv.notes.extend(notes.iter().cloned());
                continue;
            }
            Content::Symlink(_) => continue,
        };
        let name = path.rsplit('/').next().unwrap_or(path);
        let note = |message: String| Note {
            path: abs.clone(),
            layer: layer.to_owned(),
            message,
        };
        if path == "var/lib/dpkg/status" || path.starts_with("var/lib/dpkg/status.d/") {
            let in_status_d = path != "var/lib/dpkg/status";
            inv.packages.extend(dpkg::parse(
                bytes,
                in_status_d,
                distro.as_ref(),
                &abs,
                layer,
            ));
        } else if path == "lib/apk/db/installed" {
            inv.packages
                .extend(apk::parse(bytes, distro.as_ref(), &abs, layer));
        } else if let Some(kind) = rpm::database_kind(path) {
            match kind {
                rpm::DatabaseKind::Sqlite => {
                    match rpm::read_sqlite(bytes, distro.as_ref(), &abs, layer).await {
                        Ok(pkgs) => inv.packages.extend(pkgs),
                        Err(message) => inv.notes.push(note(message)),
                    }
                }
                other => inv.notes.push(note(other.unsupported())),
            }
        } else if name == "METADATA" || name == "PKG-INFO" || name.ends_with(".egg-info") {
            inv.packages.extend(python::parse(bytes, &abs, layer));
        } else if name == "package.json" {
            inv.packages.extend(node::parse(bytes, &abs, layer));
        } else if name == "Cargo.lock" {
            match cargo::parse(bytes, &abs, layer) {
                Ok(pkgs) => inv.packages.extend(pkgs),
                Err(message) => inv.notes.push(note(message)),
            }
        }
    }
    inv.packages.sort_by(|a, b| {
        (a.ecosystem, &a.name, &a.version, &a.path).cmp(&(
            b.ecosystem,
            &b.name,
            &b.version,
            &b.path,
        ))
    });
    Ok(inv)
}

/// Splits `Key: value` paragraphs (dpkg status, email-style headers) into
/// fields; continuation lines (starting with a space or a tab) are appended
/// to the previous field after a newline. Paragraphs end at a blank line.
pub(crate) fn paragraphs(text: &str) -> Vec<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut current: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
            continue;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            if let Some((_, v)) = current.last_mut() {
                v.push('\n');
                v.push_str(line.trim());
            }
            continue;
        }
        if let Some((k, v)) = line.split_once(':') {
            current.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// The first value of `key` (case-insensitive) in a paragraph.
pub(crate) fn field<'a>(p: &'a [(String, String)], key: &str) -> Option<&'a str> {
    p.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}
