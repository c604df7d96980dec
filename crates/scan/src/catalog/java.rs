//! Java artifacts: the `META-INF/maven/GROUP/ARTIFACT/pom.properties` files
//! Maven writes into the jars it builds (one per artifact: a shaded jar
//! holds several), in jars, wars and ears, and in the jars nested one level
//! inside them (Spring Boot's `BOOT-INF/lib/`, a war's `WEB-INF/lib/`).
//!
//! A zip's directory is at its end, so an archive is spooled while it streams
//! past: in memory up to [`MAX_IN_MEMORY_ARCHIVE`], else through a temporary
//! file. Only the Maven coordinates found are kept.

use std::io::{self, Read, Seek};

use crate::layers::MAX_IN_MEMORY_ARCHIVE;
use crate::{purl, Ecosystem, Note, Package};

/// Nested archives larger than this are not opened.
const MAX_NESTED: u64 = 64 * 1024 * 1024;

/// Maven coordinates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coordinates {
    /// `groupId`.
    pub group: String,
    /// `artifactId`.
    pub artifact: String,
    /// `version`.
    pub version: String,
}

/// Parses a `pom.properties` file.
pub fn parse_properties(text: &str) -> Option<Coordinates> {
    let mut group = None;
    let mut artifact = None;
    let mut version = None;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let Some((k, v)) = line.split_once(['=', ':']) else {
            continue;
        };
        let v = v.trim().to_owned();
        match k.trim() {
            "groupId" => group = Some(v),
            "artifactId" => artifact = Some(v),
            "version" => version = Some(v),
            _ => {}
        }
    }
    Some(Coordinates {
        group: group.filter(|g| !g.is_empty())?,
        artifact: artifact.filter(|a| !a.is_empty())?,
        version: version.filter(|v| !v.is_empty())?,
    })
}

fn is_pom_properties(name: &str) -> bool {
    name.starts_with("META-INF/maven/")
        && name.ends_with("/pom.properties")
        && name.split('/').count() == 5
}

fn is_archive(name: &str) -> bool {
    name.ends_with(".jar") || name.ends_with(".war") || name.ends_with(".ear")
}

/// The Maven coordinates inside an archive (and one level of nested ones).
fn read_archive(
    archive: impl Read + Seek,
    path: &str,
    layer: &str,
    depth: usize,
    out: &mut Vec<Package>,
    notes: &mut Vec<Note>,
) {
    let note = |message: String| Note {
        path: path.to_owned(),
        layer: layer.to_owned(),
        message,
    };
    let mut zip = match zip::ZipArchive::new(archive) {
        Ok(z) => z,
        Err(e) => {
            notes.push(note(format!("not a readable zip archive: {e}")));
            return;
        }
    };
    for i in 0..zip.len() {
        let Ok(mut file) = zip.by_index(i) else {
            notes.push(note(format!("zip entry {i} is unreadable")));
            continue;
        };
        let name = file.name().to_owned();
        if is_pom_properties(&name) {
            let mut text = String::new();
            if file.read_to_string(&mut text).is_err() {
                notes.push(note(format!("{name} is unreadable")));
                continue;
            }
            if let Some(c) = parse_properties(&text) {
                out.push(Package {
                    ecosystem: Ecosystem::Maven,
                    purl: purl::build("maven", Some(&c.group), &c.artifact, Some(&c.version), &[]),
                    namespace: Some(c.group),
                    name: c.artifact,
                    version: c.version,
                    source: None,
                    arch: None,
                    license: None,
                    layer: layer.to_owned(),
                    path: path.to_owned(),
                });
            }
        } else if depth == 0 && is_archive(&name) && file.size() <= MAX_NESTED {
            let mut inner = Vec::with_capacity(file.size() as usize);
            if file.read_to_end(&mut inner).is_ok() {
                let inner_path = format!("{path}:{name}");
                read_archive(io::Cursor::new(inner), &inner_path, layer, 1, out, notes);
            }
        }
    }
}

/// Reads an archive as it streams past (`size` from the tar header).
pub fn read_stream(
    r: &mut impl Read,
    size: u64,
    path: &str,
    layer: &str,
) -> io::Result<(Vec<Package>, Vec<Note>)> {
    let mut out = Vec::new();
    let mut notes = Vec::new();
    if size <= MAX_IN_MEMORY_ARCHIVE {
        let mut bytes = Vec::with_capacity(size as usize);
        r.read_to_end(&mut bytes)?;
        read_archive(io::Cursor::new(bytes), path, layer, 0, &mut out, &mut notes);
    } else {
        let mut file = tempfile::tempfile()?;
        io::copy(r, &mut file)?;
        file.rewind()?;
        read_archive(
            io::BufReader::new(file),
            path,
            layer,
            0,
            &mut out,
            &mut notes,
        );
    }
    Ok((out, notes))
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn jar(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        for (name, data) in entries {
            w.start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn pom_properties_in_jars_and_nested_jars() {
        let inner = jar(&[(
            "META-INF/maven/org.slf4j/slf4j-api/pom.properties",
            b"#Generated by Maven\nversion=2.0.9\ngroupId=org.slf4j\nartifactId=slf4j-api\n",
        )]);
        let outer = jar(&[
            ("META-INF/MANIFEST.MF", b"Manifest-Version: 1.0\n"),
            (
                "META-INF/maven/com.example/app/pom.properties",
                b"groupId=com.example\nartifactId=app\nversion=1.0.0\n",
            ),
            ("BOOT-INF/lib/slf4j-api-2.0.9.jar", &inner),
        ]);
        let size = outer.len() as u64;
        let (pkgs, notes) = read_stream(&mut &outer[..], size, "/app.jar", "l").unwrap();
        assert!(notes.is_empty());
        assert_eq!(pkgs.len(), 2);
        assert_eq!(pkgs[0].purl, "pkg:maven/com.example/app@1.0.0");
        assert_eq!(pkgs[1].path, "/app.jar:BOOT-INF/lib/slf4j-api-2.0.9.jar");
        let (_, notes) = read_stream(&mut &b"not a zip"[..], 9, "/bad.jar", "l").unwrap();
        assert!(notes[0].message.contains("not a readable zip"));
    }
}
