//! Go modules compiled into a binary: the build info `go build` embeds
//! (Go 1.18 and later), read as Go's `debug/buildinfo` documents it.
//!
//! The blob starts with the 14-byte magic `\xff Go buildinf:` at a 16-byte
//! aligned offset (the start of `.go.buildinfo`); byte 14 is the pointer
//! size, byte 15 the flags. With flag bit 2 set the Go version and the
//! module info follow at offset 32 as two strings, each a uvarint length
//! then the bytes. The module info is framed by 16 sentinel bytes at each
//! end and holds tab-separated lines: `path` (the main package), `mod` (the
//! main module: path, version, sum), `dep` (a dependency), `=>` (the
//! replacement of the line before), `build` (settings).
//!
//! Binaries are read as they stream past (an ELF file is searched for the
//! magic chunk by chunk, never held whole). Binaries of Go before 1.18 keep
//! pointers into the data segment instead of inline strings; they are
//! reported, not read.

use std::io::{self, Read};

use crate::{purl, Ecosystem, Note, Package};

const MAGIC: &[u8; 14] = b"\xff Go buildinf:";
const CHUNK: usize = 64 * 1024;
/// Largest build info read (module lists are kilobytes).
const MAX_INFO: usize = 8 * 1024 * 1024;

/// The build info of a Go binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildInfo {
    /// `go1.22.3`.
    pub go_version: String,
    /// The main package path.
    pub path: Option<String>,
    /// The main module `(path, version)`.
    pub main: Option<(String, String)>,
    /// Dependencies `(path, version)`, replacements applied.
    pub deps: Vec<(String, String)>,
}

enum Parsed {
    Done(String, Vec<u8>),
    NeedMore,
    Old,
}

fn uvarint(b: &[u8]) -> Option<(u64, usize)> {
    let mut x = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        x |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            return Some((x, i + 1));
        }
    }
    None
}

/// `blob` starts at the magic.
fn parse_blob(blob: &[u8]) -> Parsed {
    if blob.len() < 32 {
        return Parsed::NeedMore;
    }
    if blob[15] & 2 == 0 {
        return Parsed::Old;
    }
    let mut at = 32;
    let mut strings = Vec::with_capacity(2);
    for _ in 0..2 {
        let Some((len, n)) = uvarint(&blob[at..]) else {
            return Parsed::NeedMore;
        };
        let Some(end) = (at + n).checked_add(len as usize) else {
            return Parsed::Old;
        };
        let Some(s) = blob.get(at + n..end) else {
            return Parsed::NeedMore;
        };
        strings.push(s.to_vec());
        at = end;
    }
    let modinfo = strings.pop().unwrap_or_default();
    let version = strings.pop().unwrap_or_default();
    Parsed::Done(String::from_utf8_lossy(&version).into_owned(), modinfo)
}

/// Parses the module info text (sentinels included or not).
pub fn parse_modinfo(go_version: &str, bytes: &[u8]) -> BuildInfo {
    let text = if bytes.len() >= 33 && bytes[bytes.len() - 17] == b'\n' {
        String::from_utf8_lossy(&bytes[16..bytes.len() - 16])
    } else {
        String::from_utf8_lossy(bytes)
    };
    let mut info = BuildInfo {
        go_version: go_version.to_owned(),
        path: None,
        main: None,
        deps: Vec::new(),
    };
    let mut last_was_dep = false;
    for line in text.lines() {
        let cols: Vec<&str> = line.split('\t').collect();
        match cols.as_slice() {
            ["path", p, ..] => info.path = Some((*p).to_owned()),
            ["mod", p, v, ..] => info.main = Some(((*p).to_owned(), (*v).to_owned())),
            ["dep", p, v, ..] => {
                info.deps.push(((*p).to_owned(), (*v).to_owned()));
                last_was_dep = true;
                continue;
            }
            ["=>", p, v, ..] if last_was_dep => {
                if let Some(d) = info.deps.last_mut() {
                    *d = ((*p).to_owned(), (*v).to_owned());
                }
            }
            _ => {}
        }
        last_was_dep = false;
    }
    info
}

/// Reads `r` (a regular file's bytes) as it streams and returns the build
/// info if it is a Go ELF binary. Non-ELF files are not read beyond their
/// first four bytes.
pub fn scan(r: &mut impl Read) -> io::Result<Result<Option<BuildInfo>, String>> {
    let mut buf = vec![0u8; 4];
    if read_full(r, &mut buf)? < 4 || &buf[..] != b"\x7fELF" {
        return Ok(Ok(None));
    }
    // `base`: file offset of buf[0]; `next`: next aligned offset to check.
    let mut base = 0usize;
    let mut next = 0usize;
    loop {
        while next + MAGIC.len() <= base + buf.len() {
            let i = next - base;
            if &buf[i..i + MAGIC.len()] == MAGIC {
                let mut blob = buf.split_off(i);
                loop {
                    match parse_blob(&blob) {
                        Parsed::Done(v, m) => return Ok(Ok(Some(parse_modinfo(&v, &m)))),
                        Parsed::Old => {
                            return Ok(Err(
                                "Go binary built before Go 1.18: its module list is not read"
                                    .to_owned(),
                            ))
                        }
                        Parsed::NeedMore if blob.len() < MAX_INFO => {
                            if append(r, &mut blob)? == 0 {
                                return Ok(Err("Go build info is truncated".to_owned()));
                            }
                        }
                        Parsed::NeedMore => {
                            return Ok(Err("Go build info is larger than 8 MiB".to_owned()))
                        }
                    }
                }
            }
            next += 16;
        }
        // Keep what the next check still needs.
        let keep_from = next - base;
        buf.drain(..keep_from.min(buf.len()));
        base = next.max(base);
        if append(r, &mut buf)? == 0 {
            return Ok(Ok(None));
        }
    }
}

fn append(r: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<usize> {
    let len = buf.len();
    buf.resize(len + CHUNK, 0);
    let n = read_full(r, &mut buf[len..])?;
    buf.truncate(len + n);
    Ok(n)
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The packages of a binary streaming past: the Go standard library (as
/// `stdlib` at the Go version), the main module and the dependencies.
pub fn read_stream(
    r: &mut impl Read,
    path: &str,
    layer: &str,
) -> io::Result<(Vec<Package>, Vec<Note>)> {
    let info = match scan(r)? {
        Ok(Some(info)) => info,
        Ok(None) => return Ok((Vec::new(), Vec::new())),
        Err(message) => {
            return Ok((
                Vec::new(),
                vec![Note {
                    path: path.to_owned(),
                    layer: layer.to_owned(),
                    message,
                }],
            ))
        }
    };
    let pkg = |name: &str, version: &str| Package {
        ecosystem: Ecosystem::Golang,
        namespace: None,
        name: name.to_owned(),
        version: version.to_owned(),
        source: None,
        arch: None,
        license: None,
        purl: purl::golang(name, version),
        layer: layer.to_owned(),
        path: path.to_owned(),
    };
    let mut out = vec![pkg("stdlib", &info.go_version)];
    if let Some((p, v)) = &info.main {
        out.push(pkg(p, v));
    }
    out.extend(info.deps.iter().map(|(p, v)| pkg(p, v)));
    Ok((out, Vec::new()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_binary(padding: usize, flags: u8) -> Vec<u8> {
        let mut b = b"\x7fELF".to_vec();
        b.resize(padding, 0);
        b.extend_from_slice(MAGIC);
        b.push(8);
        b.push(flags);
        b.resize(padding + 32, 0);
        let version = b"go1.22.3";
        let mut modinfo = vec![0u8; 16];
        modinfo.extend_from_slice(
            b"path\texample.com/app\nmod\texample.com/app\t(devel)\t\ndep\tgolang.org/x/text\tv0.14.0\th1:x=\ndep\texample.com/old\tv1.0.0\n=>\texample.com/new\tv1.2.0\th1:y=\n",
        );
        modinfo.extend_from_slice(&[0u8; 16]);
        b.push(version.len() as u8);
        b.extend_from_slice(version);
        // A two-byte uvarint length.
        b.push((modinfo.len() as u8 & 0x7f) | 0x80);
        b.push((modinfo.len() >> 7) as u8);
        b.extend_from_slice(&modinfo);
        b.resize(b.len() + 1000, 7);
        b
    }

    #[test]
    fn build_info_found_across_chunks() {
        // The magic straddles the first chunk boundary.
        let bin = fake_binary(CHUNK, 2);
        let (pkgs, notes) = read_stream(&mut &bin[..], "/app", "l").unwrap();
        assert!(notes.is_empty());
        let got: Vec<(&str, &str)> = pkgs
            .iter()
            .map(|p| (p.name.as_str(), p.version.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("stdlib", "go1.22.3"),
                ("example.com/app", "(devel)"),
                ("golang.org/x/text", "v0.14.0"),
                ("example.com/new", "v1.2.0"),
            ]
        );
        assert_eq!(pkgs[2].purl, "pkg:golang/golang.org/x/text@v0.14.0");
    }

    #[test]
    fn unaligned_magic_and_plain_files_are_not_go() {
        let bin = fake_binary(100, 2);
        assert_eq!(scan(&mut &bin[..]).unwrap(), Ok(None));
        assert_eq!(scan(&mut &b"#!/bin/sh\n"[..]).unwrap(), Ok(None));
    }

    #[test]
    fn old_binaries_are_reported() {
        let bin = fake_binary(4096, 0);
        let (pkgs, notes) = read_stream(&mut &bin[..], "/old", "l").unwrap();
        assert!(pkgs.is_empty());
        assert!(notes[0].message.contains("before Go 1.18"));
    }
}
