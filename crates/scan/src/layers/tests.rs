use std::io::Write as _;

use super::*;
use crate::catalog::catalog;
use crate::Ecosystem;

enum Item<'a> {
    File(&'a str, &'a [u8], u32),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
}

fn tar_of(items: &[Item<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for item in items {
        let mut h = tar::Header::new_gnu();
        match item {
            Item::File(path, data, mode) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(data.len() as u64);
                h.set_mode(*mode);
                b.append_data(&mut h, path, *data).unwrap();
            }
            Item::Dir(path) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                h.set_mode(0o755);
                b.append_data(&mut h, path, &[][..]).unwrap();
            }
            Item::Symlink(path, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                b.append_link(&mut h, path, target).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn apply(view: &mut FileView, blob: &[u8]) {
    view.apply_layer(&Digest::sha256(blob), blob).unwrap();
}

const DPKG: &[u8] = b"Package: bash\nStatus: install ok installed\nVersion: 5.2.15-2+b2\nArchitecture: amd64\n\nPackage: curl\nStatus: install ok installed\nSource: curl\nVersion: 7.88.1-10+deb12u5\nArchitecture: amd64\n";
const OS_RELEASE: &[u8] = b"ID=debian\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\n";

#[tokio::test]
async fn gzip_zstd_and_plain_layers_apply_in_order_with_whiteouts() {
    let base = tar_of(&[
        Item::Dir("etc/"),
        Item::File("usr/lib/os-release", OS_RELEASE, 0o644),
        Item::Symlink("etc/os-release", "../usr/lib/os-release"),
        Item::File("var/lib/dpkg/status", DPKG, 0o644),
        Item::File(
            "app/lib/python3.11/site-packages/six-1.16.0.dist-info/METADATA",
            b"Name: six\nVersion: 1.16.0\n",
            0o644,
        ),
        Item::File(
            "app/node_modules/left-pad/package.json",
            br#"{"name":"left-pad","version":"1.3.0"}"#,
            0o644,
        ),
        Item::File(
            "app/node_modules/left-pad/test/package.json",
            br#"{"name":"fixture","version":"0.0.0"}"#,
            0o644,
        ),
        Item::File(
            "srv/node_modules/@scope/x/package.json",
            br#"{"name":"@scope/x","version":"2.0.0"}"#,
            0o644,
        ),
        Item::File("usr/bin/script", b"#!/bin/sh\necho hi\n", 0o755),
    ]);
    // Layer 2 (zstd): the python package is deleted, /srv is made opaque
    // and gets a new package, a new Cargo.lock appears.
    let second = tar_of(&[
        Item::File(
            "app/lib/python3.11/site-packages/.wh.six-1.16.0.dist-info",
            b"",
            0o644,
        ),
        Item::File("srv/.wh..wh..opq", b"", 0o644),
        Item::File(
            "srv/node_modules/y/package.json",
            br#"{"name":"y","version":"3.0.0"}"#,
            0o644,
        ),
        Item::File(
            "build/Cargo.lock",
            b"version = 3\n[[package]]\nname = \"anyhow\"\nversion = \"1.0.86\"\n",
            0o644,
        ),
    ]);
    // Layer 3 (plain tar): left-pad is overwritten by a file the catalogers
    // do not keep (a directory replaced by a file).
    let third = tar_of(&[Item::File("app/node_modules/left-pad", b"gone", 0o644)]);

    let mut view = FileView::new();
    apply(&mut view, &gzip(&base));
    apply(
        &mut view,
        &zstd::stream::encode_all(&second[..], 3).unwrap(),
    );
    apply(&mut view, &third);
    assert_eq!(view.layers().len(), 3);

    let inv = catalog(&view).await.unwrap();
    assert_eq!(
        inv.distro.as_ref().unwrap().codename.as_deref(),
        Some("bookworm")
    );
    let got: Vec<(Ecosystem, &str, &str)> = inv
        .packages
        .iter()
        .map(|p| (p.ecosystem, p.name.as_str(), p.version.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (Ecosystem::Deb, "bash", "5.2.15-2+b2"),
            (Ecosystem::Deb, "curl", "7.88.1-10+deb12u5"),
            (Ecosystem::Npm, "y", "3.0.0"),
            (Ecosystem::Cargo, "anyhow", "1.0.86"),
        ]
    );
    let bash = &inv.packages[0];
    assert_eq!(bash.layer, view.layers()[0]);
    assert_eq!(bash.path, "/var/lib/dpkg/status");
    assert!(
        bash.purl.ends_with("?arch=amd64&distro=debian-12"),
        "{}",
        bash.purl
    );
    assert_eq!(inv.packages[3].layer, view.layers()[1]);
}

#[test]
fn a_whiteout_hides_only_lower_layers() {
    // A layer that deletes a file and adds it again keeps the new one.
    let base = tar_of(&[Item::File("lib/apk/db/installed", b"P:a\nV:1\n", 0o644)]);
    let again = tar_of(&[
        Item::File("lib/apk/db/.wh.installed", b"", 0o644),
        Item::File("lib/apk/db/installed", b"P:a\nV:2\n", 0o644),
    ]);
    let mut view = FileView::new();
    apply(&mut view, &base);
    apply(&mut view, &again);
    let e = &view.files()["lib/apk/db/installed"];
    assert!(matches!(&e.content, Content::Bytes(b) if b == b"P:a\nV:2\n"));
}

#[test]
fn a_layer_that_does_not_match_its_digest_is_refused() {
    let blob = gzip(&tar_of(&[Item::File("a", b"x", 0o644)]));
    let wrong = Digest::sha256(b"something else");
    let err = FileView::new().apply_layer(&wrong, &blob[..]).unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    let truncated = &blob[..blob.len() / 2];
    let err = FileView::new()
        .apply_layer(&Digest::sha256(truncated), truncated)
        .unwrap_err();
    assert!(matches!(err, Error::Layer { .. }), "{err}");
}

#[tokio::test]
async fn unsupported_rpm_databases_are_reported() {
    let layer = tar_of(&[Item::File("var/lib/rpm/Packages", b"\0\0\0\0bdb", 0o644)]);
    let mut view = FileView::new();
    apply(&mut view, &layer);
    let inv = catalog(&view).await.unwrap();
    assert!(inv.packages.is_empty());
    assert_eq!(inv.notes.len(), 1);
    assert!(
        inv.notes[0].message.contains("BerkeleyDB"),
        "{:?}",
        inv.notes
    );
}
