//! `berth sbom`: inventories of images assembled from real package
//! databases and artifacts, pushed to a real `berth serve`, checked against
//! syft as an oracle; SPDX validated by `pyspdxtools`, CycloneDX by
//! `cyclonedx-python-lib`; SBOMs attached as referrers and recognised.
//!
//! The fixtures are built by the test from this machine: its own dpkg
//! status file and os-release, the `*.dist-info` of the Python packages pip
//! installed, the `package.json` of the npm-installed global packages, a Go
//! binary built by `go build` (with a local dependency replaced by
//! `=>`), this repository's `Cargo.lock`, an `rpmdb.sqlite` made by
//! Debian's `rpm` from packages `rpmbuild` built, an Alpine installed
//! database written in apk's documented format, and a jar carrying Maven's
//! `pom.properties`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use crate::common::Berth;
use crate::interop::{require, run};
use crate::layout::{self, Desc};
use crate::tools::{berth, berth_ok};

fn sh(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub(crate) fn write(path: &Path, data: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

/// The dpkg/os-release layer: this machine's own files.
pub(crate) fn debian_layer(root: &Path) {
    write(
        &root.join("var/lib/dpkg/status"),
        &std::fs::read("/var/lib/dpkg/status").unwrap(),
    );
    write(
        &root.join("usr/lib/os-release"),
        &std::fs::read("/etc/os-release").unwrap(),
    );
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::os::unix::fs::symlink("../usr/lib/os-release", root.join("etc/os-release")).unwrap();
}

/// The pip-installed distributions' metadata; returns their directory names.
fn python_packages(root: &Path) -> Vec<String> {
    let purelib = sh(Command::new("python3").args([
        "-c",
        "import sysconfig; print(sysconfig.get_paths()['purelib'])",
    ]));
    let mut names = Vec::new();
    for e in std::fs::read_dir(purelib.trim()).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        let metadata = e.path().join("METADATA");
        if name.ends_with(".dist-info") && metadata.is_file() {
            write(
                &root
                    .join("usr/lib/python3/site-packages")
                    .join(&name)
                    .join("METADATA"),
                &std::fs::read(metadata).unwrap(),
            );
            names.push(name);
        }
    }
    assert!(names.len() > 5, "pip-installed packages: {names:?}");
    names.sort();
    names
}

/// The root `package.json` of every package npm installed globally.
fn node_packages(root: &Path) {
    let global = PathBuf::from(sh(Command::new("npm").args(["root", "-g"])).trim());
    let mut stack = vec![global.clone()];
    let mut copied = 0;
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_symlink() || !p.is_dir() {
                continue;
            }
            let rel = p
                .strip_prefix(&global)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let full = format!("usr/lib/node_modules/{rel}");
            let parent = full.rsplit_once('/').unwrap().0;
            let is_root = match parent.rsplit('/').next() {
                Some("node_modules") => !rel.rsplit('/').next().unwrap().starts_with(['@', '.']),
                Some(scope) => {
                    scope.starts_with('@') && parent.ends_with(&format!("node_modules/{scope}"))
                }
                None => false,
            };
            if is_root && p.join("package.json").is_file() {
                write(
                    &root.join(&full).join("package.json"),
                    &std::fs::read(p.join("package.json")).unwrap(),
                );
                copied += 1;
            }
            stack.push(p);
        }
    }
    assert!(copied > 10, "npm-installed packages: {copied}");
}

/// A Go binary built by `go build`, with a local dependency and a
/// replacement.
fn go_binary(work: &Path, out: &Path) {
    let src = work.join("gosrc");
    write(
        &src.join("greet/go.mod"),
        b"module example.com/greet\n\ngo 1.19\n",
    );
    write(
        &src.join("greet/greet.go"),
        b"package greet\n\nfunc Hello() string { return \"hello\" }\n",
    );
    write(
        &src.join("app/go.mod"),
        b"module example.com/app\n\ngo 1.19\n\nrequire example.com/greet v0.3.1\n\nreplace example.com/greet v0.3.1 => ../greet\n",
    );
    write(
        &src.join("app/main.go"),
        b"package main\n\nimport (\n\t\"fmt\"\n\t\"example.com/greet\"\n)\n\nfunc main() { fmt.Println(greet.Hello()) }\n",
    );
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    sh(Command::new("go")
        .args(["build", "-o"])
        .arg(out)
        .arg(".")
        .current_dir(src.join("app"))
        .env("GOFLAGS", "-mod=mod")
        .env("GOPROXY", "off")
        .env("GOTOOLCHAIN", "local")
        .env("CGO_ENABLED", "0")
        .env("GOCACHE", work.join("gocache"))
        .env("GOPATH", work.join("gopath")));
}

/// A jar as Maven builds them: `pom.properties` under META-INF/maven.
fn jar(out: &Path) {
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    sh(Command::new("python3").arg("-c").arg(format!(
        "import zipfile\nz = zipfile.ZipFile({:?}, 'w', zipfile.ZIP_DEFLATED)\n\
         z.writestr('META-INF/MANIFEST.MF', 'Manifest-Version: 1.0\\nCreated-By: Maven\\n')\n\
         z.writestr('META-INF/maven/org.example/demo-lib/pom.properties', '#Generated by Maven\\ngroupId=org.example\\nartifactId=demo-lib\\nversion=2.4.1\\n')\n\
         z.writestr('org/example/Demo.class', b'\\xca\\xfe\\xba\\xbe')\n\
         z.close()\n",
        out.to_str().unwrap()
    )));
}

/// An `rpmdb.sqlite` made by Debian's `rpm` from packages built here.
fn rpm_database(work: &Path, root: &Path) {
    let top = work.join("rpmbuild");
    for (name, epoch, version, release) in [
        ("berth-demo", Some(2), "1.2.3", "4.fc40"),
        ("berth-tools", None, "0.9", "1.fc40"),
    ] {
        let spec = work.join(format!("{name}.spec"));
        let epoch = epoch.map(|e| format!("Epoch: {e}\n")).unwrap_or_default();
        write(
            &spec,
            format!(
                "Name: {name}\nVersion: {version}\nRelease: {release}\n{epoch}Summary: test\nLicense: MIT\nBuildArch: noarch\n%description\ntest\n%files\n"
            )
            .as_bytes(),
        );
        sh(Command::new("rpmbuild")
            .arg("--define")
            .arg(format!("_topdir {}", top.display()))
            .args(["--define", "_build_id_links none", "-bb"])
            .arg(&spec));
    }
    let db = work.join("rpmdb");
    let rpm = |args: &[&str]| {
        let mut c = Command::new("rpm");
        c.arg("--dbpath")
            .arg(&db)
            .args(["--define", "_db_backend sqlite"])
            .args(args);
        c
    };
    sh(&mut rpm(&["--initdb"]));
    let mut install = rpm(&[
        "-i",
        "--justdb",
        "--nodeps",
        "--ignoreos",
        "--ignorearch",
        "--nosignature",
    ]);
    for e in std::fs::read_dir(top.join("RPMS/noarch")).unwrap() {
        install.arg(e.unwrap().path());
    }
    sh(&mut install);
    let listed = sh(&mut rpm(&["-qa"]));
    assert_eq!(listed.lines().count(), 2, "{listed}");
    write(
        &root.join("var/lib/rpm/rpmdb.sqlite"),
        &std::fs::read(db.join("rpmdb.sqlite")).unwrap(),
    );
    write(
        &root.join("etc/os-release"),
        b"NAME=\"Fedora Linux\"\nVERSION=\"40 (Container Image)\"\nID=fedora\nVERSION_ID=40\nPRETTY_NAME=\"Fedora Linux 40 (Container Image)\"\n",
    );
}

/// An Alpine installed database in the format apk documents.
pub(crate) fn apk_database(root: &Path) {
    let pkgs = [
        ("musl", "1.2.5-r0", "musl", "MIT"),
        ("busybox", "1.36.1-r29", "busybox", "GPL-2.0-only"),
        ("libcrypto3", "3.3.2-r0", "openssl", "Apache-2.0"),
        ("libssl3", "3.3.2-r0", "openssl", "Apache-2.0"),
        ("zlib", "1.3.1-r1", "zlib", "Zlib"),
    ];
    let mut db = String::new();
    for (i, (name, version, origin, license)) in pkgs.iter().enumerate() {
        db.push_str(&format!(
            "C:Q1{i:027}=\nP:{name}\nV:{version}\nA:x86_64\nS:100000\nI:200000\nT:{name} package\nU:https://alpinelinux.org\nL:{license}\no:{origin}\nm:Natanael Copa <ncopa@alpinelinux.org>\nt:1725000000\nc:0123456789abcdef0123456789abcdef01234567\nF:usr/lib\nR:lib{name}.so.1\na:0:0:755\nZ:Q1{i:027}=\n\n"
        ));
    }
    write(&root.join("lib/apk/db/installed"), db.as_bytes());
    write(
        &root.join("etc/os-release"),
        b"NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.20.3\nPRETTY_NAME=\"Alpine Linux v3.20\"\n",
    );
}

#[derive(Clone, Copy)]
pub(crate) enum Compression {
    Gzip,
    Zstd,
    None,
}

fn tar_dir(dir: &Path) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    b.append_dir_all(".", dir).unwrap();
    b.into_inner().unwrap()
}

/// Writes the layers (directories, each with its compression) and a config
/// into `layout`; returns the manifest's descriptor.
pub(crate) fn image(layout_dir: &Path, platform: &str, layers: &[(&Path, Compression)]) -> Desc {
    use std::io::Write as _;
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for (dir, c) in layers {
        let tar = tar_dir(dir);
        diff_ids.push(crate::oci::sha256(&tar));
        let (media_type, blob) = match c {
            Compression::Gzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(&tar).unwrap();
                (
                    "application/vnd.oci.image.layer.v1.tar+gzip",
                    e.finish().unwrap(),
                )
            }
            Compression::Zstd => (
                "application/vnd.oci.image.layer.v1.tar+zstd",
                zstd::stream::encode_all(&tar[..], 3).unwrap(),
            ),
            Compression::None => ("application/vnd.oci.image.layer.v1.tar", tar),
        };
        descs.push(layout::write_blob(layout_dir, media_type, &blob).to_json());
    }
    let (os, arch) = platform.split_once('/').unwrap();
    let config = json!({
        "architecture": arch,
        "os": os,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "config": {},
    });
    let config = layout::write_blob(
        layout_dir,
        layout::CONFIG,
        &serde_json::to_vec(&config).unwrap(),
    );
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": layout::MANIFEST,
        "config": config.to_json(),
        "layers": descs,
    });
    layout::write_blob(
        layout_dir,
        layout::MANIFEST,
        &serde_json::to_vec(&manifest).unwrap(),
    )
}

struct Fixture {
    _tmp: tempfile::TempDir,
    layout: PathBuf,
    /// The Python distribution deleted by a whiteout in the top layer.
    whited_out: String,
}

/// Builds the three-platform image `v1` in an OCI layout.
fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    // linux/amd64: Debian with language packages over three layers.
    let (l1, l2, l3) = (t.join("l1"), t.join("l2"), t.join("l3"));
    debian_layer(&l1);
    let python = python_packages(&l2);
    node_packages(&l2);
    go_binary(t, &l2.join("usr/local/bin/hello"));
    write(
        &l2.join("srv/rust/Cargo.lock"),
        &std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.lock")).unwrap(),
    );
    jar(&l3.join("opt/app/demo-lib-2.4.1.jar"));
    let whited_out = python[0].clone();
    write(
        &l3.join("usr/lib/python3/site-packages")
            .join(format!(".wh.{whited_out}")),
        b"",
    );
    let layout_dir = t.join("layout");
    let amd64 = image(
        &layout_dir,
        "linux/amd64",
        &[
            (&l1, Compression::Gzip),
            (&l2, Compression::Zstd),
            (&l3, Compression::None),
        ],
    );
    // linux/arm64: Alpine.
    let alpine = t.join("alpine");
    apk_database(&alpine);
    let arm64 = image(&layout_dir, "linux/arm64", &[(&alpine, Compression::Gzip)]);
    // linux/s390x: an RPM distribution.
    let fedora = t.join("fedora");
    rpm_database(t, &fedora);
    let s390x = image(&layout_dir, "linux/s390x", &[(&fedora, Compression::Gzip)]);
    let manifests: Vec<Value> = [
        (amd64, "linux/amd64"),
        (arm64, "linux/arm64"),
        (s390x, "linux/s390x"),
    ]
    .iter()
    .map(|(d, p)| {
        let mut v = d.to_json();
        v["platform"] = layout::platform_json(p);
        v
    })
    .collect();
    let index = json!({"schemaVersion": 2, "mediaType": layout::INDEX, "manifests": manifests});
    let index = layout::write_blob(
        &layout_dir,
        layout::INDEX,
        &serde_json::to_vec(&index).unwrap(),
    );
    layout::add_ref(&layout_dir, &index, "v1", None);
    Fixture {
        _tmp: tmp,
        layout: layout_dir,
        whited_out,
    }
}

fn have_all(test: &str) -> bool {
    ["go", "rpm", "rpmbuild", "npm", "syft", "pyspdxtools"]
        .iter()
        .all(|t| require(t, test))
}

/// `(ecosystem, name, version)` of berth's inventory of one platform.
fn berth_packages(inventory: &Value) -> BTreeSet<(String, String, String)> {
    inventory["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let name = match p["namespace"].as_str() {
                Some(ns) if p["ecosystem"] == "npm" => {
                    format!("{ns}/{}", p["name"].as_str().unwrap())
                }
                _ => p["name"].as_str().unwrap().to_owned(),
            };
            (
                p["ecosystem"].as_str().unwrap().to_owned(),
                name,
                p["version"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The same from syft's JSON, for the ecosystems berth catalogs.
fn syft_packages(doc: &Value) -> BTreeSet<(String, String, String)> {
    doc["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| {
            let eco = match a["type"].as_str()? {
                "deb" => "deb",
                "apk" => "apk",
                "rpm" => "rpm",
                "python" => "pypi",
                "npm" => "npm",
                "go-module" => "golang",
                "rust-crate" => "cargo",
                "java-archive" => "maven",
                _ => return None,
            };
            Some((
                eco.to_owned(),
                a["name"].as_str()?.to_owned(),
                a["version"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

#[test]
fn inventory_of_real_package_databases_matches_syft() {
    if !have_all("inventory_of_real_package_databases_matches_syft") {
        return;
    }
    let f = fixture();
    let b = Berth::start();
    let work = tempfile::tempdir().unwrap();
    let image = format!("{}/scan/app:v1", b.addr);
    berth_ok(
        work.path(),
        &[
            "copy",
            "-q",
            &format!("oci:{}:v1", f.layout.display()),
            &image,
        ],
    );
    let inv: Value = serde_json::from_str(&berth_ok(
        work.path(),
        &["sbom", &image, "--format", "inventory"],
    ))
    .unwrap();
    let platforms = inv.as_array().unwrap();
    assert_eq!(platforms.len(), 3);
    for p in platforms {
        let platform = p["platform"].as_str().unwrap();
        let ours = berth_packages(&p["inventory"]);
        let syft: Value = serde_json::from_str(&sh(Command::new("syft")
            .arg(format!("registry:{image}"))
            .args(["--platform", platform, "-o", "json", "-q"])
            // Lock files are not among syft's image catalogers by default.
            .args(["--select-catalogers", "+rust-cargo-lock-cataloger"])
            .env("SYFT_REGISTRY_INSECURE_USE_HTTP", "true")
            .env("SYFT_CHECK_FOR_APP_UPDATE", "false")
            .current_dir(work.path())))
        .unwrap();
        let theirs = syft_packages(&syft);
        let only_ours: Vec<_> = ours.difference(&theirs).collect();
        let only_theirs: Vec<_> = theirs.difference(&ours).collect();
        assert!(
            only_ours.is_empty() && only_theirs.is_empty(),
            "{platform}: only berth: {only_ours:#?}\nonly syft: {only_theirs:#?}"
        );
        let ecosystems: BTreeSet<&str> = p["inventory"]["packages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["ecosystem"].as_str().unwrap())
            .collect();
        let expected: &[&str] = match platform {
            "linux/amd64" => &["cargo", "deb", "golang", "maven", "npm", "pypi"],
            "linux/arm64" => &["apk"],
            _ => &["rpm"],
        };
        assert_eq!(
            ecosystems.into_iter().collect::<Vec<_>>(),
            expected,
            "{platform}"
        );
    }
    let amd64 = &platforms[0]["inventory"];
    assert_eq!(amd64["distro"]["id"], "debian");
    let packages = amd64["packages"].as_array().unwrap();
    let whited = f.whited_out.trim_end_matches(".dist-info");
    assert!(
        !packages
            .iter()
            .any(|p| p["path"].as_str().unwrap().contains(&f.whited_out)),
        "{whited} was deleted by a whiteout"
    );
    let go: Vec<(&str, &str)> = packages
        .iter()
        .filter(|p| p["ecosystem"] == "golang")
        .map(|p| (p["name"].as_str().unwrap(), p["version"].as_str().unwrap()))
        .collect();
    assert!(go.contains(&("example.com/app", "(devel)")), "{go:?}");
    // The dependency replaced by a directory is reported as the directory,
    // as Go's build info (and syft) say.
    assert!(go.contains(&("../greet", "(devel)")), "{go:?}");
    assert!(!go.iter().any(|(m, _)| *m == "example.com/greet"), "{go:?}");
    let alpine = &platforms[1]["inventory"]["packages"];
    let ssl = alpine
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "libssl3")
        .unwrap();
    assert_eq!(ssl["source"]["name"], "openssl");
    assert_eq!(
        ssl["purl"],
        "pkg:apk/alpine/libssl3@3.3.2-r0?arch=x86_64&distro=alpine-3.20.3&upstream=openssl"
    );
    let rpm = &platforms[2]["inventory"]["packages"][0];
    assert_eq!(rpm["version"], "2:1.2.3-4.fc40");
    assert_eq!(rpm["source"]["name"], "berth-demo");
}

#[test]
fn sbom_documents_validate_attach_and_are_recognised() {
    if !have_all("sbom_documents_validate_attach_and_are_recognised") {
        return;
    }
    let f = fixture();
    let b = Berth::start();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let image = format!("{}/scan/app:v1", b.addr);
    berth_ok(
        w,
        &[
            "copy",
            "-q",
            &format!("oci:{}:v1", f.layout.display()),
            &image,
        ],
    );

    let spdx = w.join("sbom.spdx.json");
    berth_ok(
        w,
        &[
            "sbom",
            &image,
            "--format",
            "spdx",
            "--output-file",
            spdx.to_str().unwrap(),
        ],
    );
    // The validator takes minutes on a busy machine: no client timeout.
    let out = Command::new("pyspdxtools")
        .arg("-i")
        .arg(&spdx)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pyspdxtools: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&std::fs::read(&spdx).unwrap()).unwrap();
    let purls: Vec<&str> = doc["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["externalRefs"][0]["referenceLocator"].as_str())
        .collect();
    assert!(
        purls.iter().any(|p| p.starts_with("pkg:deb/debian/")),
        "{purls:?}"
    );
    assert!(purls.contains(&"pkg:maven/org.example/demo-lib@2.4.1"));

    let cdx = w.join("sbom.cdx.json");
    berth_ok(
        w,
        &[
            "sbom",
            &image,
            "--format",
            "cyclonedx",
            "--output-file",
            cdx.to_str().unwrap(),
        ],
    );
    let check = sh(Command::new("python3").arg("-c").arg(format!(
        "from cyclonedx.validation.json import JsonStrictValidator\n\
         from cyclonedx.schema import SchemaVersion\n\
         e = JsonStrictValidator(SchemaVersion.V1_6).validate_str(open({:?}).read())\n\
         print('invalid' if e else 'valid', e)\n",
        cdx.to_str().unwrap()
    )));
    assert!(check.starts_with("valid"), "{check}");

    // Attached as a referrer of the index, then recognised, not generated again.
    let out = berth(w, &["sbom", &image, "--attach", "--format", "cyclonedx"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let index_digest = layout::resolve(&f.layout, "v1").unwrap().digest;
    let referrers: Value = reqwest::blocking::get(format!(
        "http://{}/v2/scan/app/referrers/{index_digest}",
        b.addr
    ))
    .unwrap()
    .json()
    .unwrap();
    let listed = referrers["manifests"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{referrers}");
    assert_eq!(listed[0]["artifactType"], "application/vnd.cyclonedx+json");
    let again = berth_ok(w, &["sbom", &image]);
    let found: Value = serde_json::from_str(&again).unwrap();
    assert_eq!(
        found[0]["kind"], "application/vnd.cyclonedx+json",
        "{again}"
    );
    assert_eq!(found[0]["attached_as"], "referrer");
    assert_eq!(found[0]["subject"], index_digest.as_str());
}

#[test]
fn buildx_attestations_in_an_index_are_recognised() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("layout");
    let img = layout::build_image(&dir, "linux/amd64", &[64]);
    let statement = layout::write_blob(
        &dir,
        "application/vnd.in-toto+json",
        br#"{"_type":"https://in-toto.io/Statement/v0.1","predicateType":"https://spdx.dev/Document","predicate":{}}"#,
    );
    let empty = layout::write_blob(&dir, layout::CONFIG, b"{}");
    let mut layer = statement.to_json();
    layer["annotations"] = json!({"in-toto.io/predicate-type": "https://spdx.dev/Document"});
    let att = json!({
        "schemaVersion": 2, "mediaType": layout::MANIFEST,
        "config": empty.to_json(), "layers": [layer],
    });
    let att = layout::write_blob(&dir, layout::MANIFEST, &serde_json::to_vec(&att).unwrap());
    let mut img_entry = img.to_json();
    img_entry["platform"] = layout::platform_json("linux/amd64");
    let mut att_entry = att.to_json();
    att_entry["platform"] = json!({"architecture": "unknown", "os": "unknown"});
    att_entry["annotations"] = json!({
        "vnd.docker.reference.type": "attestation-manifest",
        "vnd.docker.reference.digest": img.digest,
    });
    let index = json!({"schemaVersion": 2, "mediaType": layout::INDEX, "manifests": [img_entry, att_entry]});
    let index = layout::write_blob(&dir, layout::INDEX, &serde_json::to_vec(&index).unwrap());
    layout::add_ref(&dir, &index, "v1", None);
    let out = berth_ok(tmp.path(), &["sbom", &format!("oci:{}:v1", dir.display())]);
    let found: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(found[0]["kind"], "https://spdx.dev/Document", "{out}");
    assert_eq!(found[0]["attached_as"], "buildx attestation");
    assert_eq!(found[0]["subject"], img.digest.as_str());
    assert_eq!(found[0]["digest"], att.digest.as_str());
}
