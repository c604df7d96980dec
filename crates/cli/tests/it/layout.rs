//! Test images written as OCI image layouts (the `oci:DIR:TAG` transport of
//! skopeo, podman and umoci), so that no test pulls anything from the
//! network.
//!
//! Layers are real gzip-compressed tar archives holding one file of random
//! bytes (stored deflate blocks: random data does not compress anyway), the
//! config carries the matching `rootfs.diff_ids`, so clients that unpack
//! images (podman, umoci) accept them. Every call draws fresh random bytes,
//! so two images never share a digest by accident.
//!
//! ```text
//! DIR/oci-layout                 {"imageLayoutVersion":"1.0.0"}
//! DIR/index.json                 one entry per tag (org.opencontainers.image.ref.name)
//! DIR/blobs/sha256/<hex>         layers, configs, manifests, indexes
//! ```

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use berth_oci::digest::Digest;
use serde_json::{json, Value};

/// OCI image index media type.
pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image manifest media type.
pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image config media type.
pub const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI gzip layer media type.
pub const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The annotation naming a tag in `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// The platforms of [`write_multiarch`], in the order of its digests.
pub const MULTIARCH_PLATFORMS: [&str; 2] = ["linux/amd64", "linux/arm64"];

/// A content descriptor of something written into a layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desc {
    pub media_type: String,
    /// `sha256:<hex>`
    pub digest: String,
    pub size: u64,
}

impl Desc {
    /// The descriptor as OCI JSON.
    pub fn to_json(&self) -> Value {
        json!({"mediaType": self.media_type, "digest": self.digest, "size": self.size})
    }
}

/// Writes a single-platform image (`platform` like `linux/amd64` or
/// `linux/arm64/v8`) with one layer per entry of `layer_sizes` (bytes of
/// random file content; 0 is allowed), tags it `tag` in `dir`'s
/// `index.json` and returns the manifest digest.
pub fn write_image(dir: &Path, tag: &str, platform: &str, layer_sizes: &[usize]) -> String {
    let manifest = build_image(dir, platform, layer_sizes);
    add_ref(dir, &manifest, tag, Some(platform));
    manifest.digest
}

/// Writes a multi-arch image: one manifest per [`MULTIARCH_PLATFORMS`]
/// entry (two layers each, distinct content) under an OCI index tagged
/// `tag`. Returns the index digest and the manifest digests in platform
/// order.
pub fn write_multiarch(dir: &Path, tag: &str) -> (String, Vec<String>) {
    let children: Vec<(Desc, &str)> = MULTIARCH_PLATFORMS
        .iter()
        .map(|p| (build_image(dir, p, &[2048, 300]), *p))
        .collect();
    let manifests: Vec<Value> = children
        .iter()
        .map(|(d, p)| {
            let mut v = d.to_json();
            v["platform"] = platform_json(p);
            v
        })
        .collect();
    let index = json!({
        "schemaVersion": 2,
        "mediaType": INDEX,
        "manifests": manifests,
    });
    let index = write_blob(dir, INDEX, &to_bytes(&index));
    add_ref(dir, &index, tag, None);
    (
        index.digest,
        children.into_iter().map(|(d, _)| d.digest).collect(),
    )
}

/// Writes the blobs of one image (layers, config, manifest) without tagging
/// it, and returns the manifest's descriptor.
pub fn build_image(dir: &Path, platform: &str, layer_sizes: &[usize]) -> Desc {
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for (i, &size) in layer_sizes.iter().enumerate() {
        let tar = tar_one_file(&format!("berth-test/layer-{i}.bin"), &random_bytes(size));
        diff_ids.push(Digest::sha256(&tar).as_str().to_owned());
        layers.push(write_blob(dir, LAYER_GZIP, &gzip_stored(&tar)).to_json());
    }
    let (os, arch, variant) = split_platform(platform);
    let mut config = json!({
        "created": "2024-01-01T00:00:00Z",
        "architecture": arch,
        "os": os,
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/berth-test/layer-0.bin"],
            "Labels": {"org.opencontainers.image.title": "berth interop test image"},
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": layer_sizes.iter().map(|s| json!({"created_by": format!("berth test layer of {s} bytes")})).collect::<Vec<_>>(),
    });
    if let Some(v) = variant {
        config["variant"] = json!(v);
    }
    let config = write_blob(dir, CONFIG, &to_bytes(&config));
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": config.to_json(),
        "layers": layers,
        "annotations": {"org.opencontainers.image.description": format!("berth interop {platform}")},
    });
    write_blob(dir, MANIFEST, &to_bytes(&manifest))
}

/// Writes `data` as a blob of `dir` (creating the layout if needed).
pub fn write_blob(dir: &Path, media_type: &str, data: &[u8]) -> Desc {
    init(dir);
    let digest = Digest::sha256(data);
    std::fs::write(blob_path(dir, digest.as_str()), data).expect("write blob");
    Desc {
        media_type: media_type.to_owned(),
        digest: digest.as_str().to_owned(),
        size: data.len() as u64,
    }
}

/// Points `tag` in `dir`'s `index.json` at `desc` (replacing an older entry
/// of the same tag).
pub fn add_ref(dir: &Path, desc: &Desc, tag: &str, platform: Option<&str>) {
    init(dir);
    let path = dir.join("index.json");
    let mut index: Value = match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b).expect("index.json"),
        Err(_) => json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": []}),
    };
    let list = index["manifests"].as_array_mut().expect("manifests");
    list.retain(|m| m["annotations"][REF_NAME] != tag);
    let mut entry = desc.to_json();
    entry["annotations"] = json!({ REF_NAME: tag });
    if let Some(p) = platform {
        entry["platform"] = platform_json(p);
    }
    list.push(entry);
    std::fs::write(&path, to_bytes(&index)).expect("write index.json");
}

/// The path of blob `digest` in `dir`.
pub fn blob_path(dir: &Path, digest: &str) -> PathBuf {
    let (alg, hex) = digest.split_once(':').expect("algorithm:hex");
    dir.join("blobs").join(alg).join(hex)
}

/// The bytes of blob `digest` in `dir`.
pub fn read_blob(dir: &Path, digest: &str) -> Vec<u8> {
    std::fs::read(blob_path(dir, digest)).expect("read blob")
}

/// Blob `digest` of `dir` parsed as JSON (a manifest, index or config).
pub fn read_json(dir: &Path, digest: &str) -> Value {
    serde_json::from_slice(&read_blob(dir, digest)).expect("blob is JSON")
}

/// The descriptor `index.json` of `dir` gives for `tag`.
pub fn resolve(dir: &Path, tag: &str) -> Option<Desc> {
    let index: Value = serde_json::from_slice(&std::fs::read(dir.join("index.json")).ok()?).ok()?;
    index["manifests"]
        .as_array()?
        .iter()
        .find(|m| m["annotations"][REF_NAME] == tag)
        .map(|m| Desc {
            media_type: m["mediaType"].as_str().unwrap_or_default().to_owned(),
            digest: m["digest"].as_str().unwrap_or_default().to_owned(),
            size: m["size"].as_u64().unwrap_or_default(),
        })
}

/// `linux/arm64/v8` -> the OCI `platform` object.
pub fn platform_json(platform: &str) -> Value {
    let (os, arch, variant) = split_platform(platform);
    let mut v = json!({"architecture": arch, "os": os});
    if let Some(var) = variant {
        v["variant"] = json!(var);
    }
    v
}

/// The platform of the machine running the tests, as `os/arch` in OCI terms.
pub fn host_platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    format!("linux/{arch}")
}

fn split_platform(platform: &str) -> (&str, &str, Option<&str>) {
    let mut parts = platform.split('/');
    let os = parts.next().unwrap_or("linux");
    let arch = parts.next().expect("platform is os/arch[/variant]");
    (os, arch, parts.next())
}

fn init(dir: &Path) {
    std::fs::create_dir_all(dir.join("blobs").join("sha256")).expect("create layout");
    let marker = dir.join("oci-layout");
    if !marker.exists() {
        std::fs::write(marker, br#"{"imageLayoutVersion":"1.0.0"}"#).expect("oci-layout");
    }
}

fn to_bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("serialise JSON")
}

/// Random bytes from a xorshift generator seeded per call (time, pid and a
/// process-wide counter): unique content, no extra dependency.
pub fn random_bytes(len: usize) -> Vec<u8> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default();
    let mut x = nanos
        ^ (u64::from(std::process::id()) << 32)
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A ustar archive holding one regular file.
pub fn tar_one_file(name: &str, content: &[u8]) -> Vec<u8> {
    assert!(name.len() < 100, "tar name too long");
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    let octal = |h: &mut [u8; 512], at: usize, width: usize, v: u64| {
        let s = format!("{v:0w$o}\0", w = width - 1);
        h[at..at + width].copy_from_slice(s.as_bytes());
    };
    octal(&mut h, 100, 8, 0o755); // mode
    octal(&mut h, 108, 8, 0); // uid
    octal(&mut h, 116, 8, 0); // gid
    octal(&mut h, 124, 12, content.len() as u64); // size
    octal(&mut h, 136, 12, 1_704_067_200); // mtime
    h[156] = b'0'; // regular file
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let mut out = h.to_vec();
    out.extend_from_slice(content);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// `data` as a gzip member of stored (uncompressed) deflate blocks.
pub fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let mut chunks = data.chunks(65_535).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(chunk) = chunks.next() {
        out.push(u8::from(chunks.peek().is_none()));
        let len = chunk.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn layout_images_unpack_with_system_tools() {
    // The gzip and tar writers checked against gzip(1) and tar(1), and the
    // layout against umoci when it is installed.
    let tmp = tempfile::tempdir().expect("tempdir");
    let content = random_bytes(70_000);
    let tar = tar_one_file("berth-test/x.bin", &content);
    let gz = tmp.path().join("x.tar.gz");
    std::fs::write(&gz, gzip_stored(&tar)).expect("write");
    let out = std::process::Command::new("tar")
        .arg("-xzf")
        .arg(&gz)
        .arg("-C")
        .arg(tmp.path())
        .output()
        .expect("run tar");
    assert!(
        out.status.success(),
        "tar: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(tmp.path().join("berth-test/x.bin")).expect("unpacked"),
        content
    );

    let dir = tmp.path().join("layout");
    let (index, children) = write_multiarch(&dir, "multi");
    assert_eq!(resolve(&dir, "multi").expect("tag").digest, index);
    let idx = read_json(&dir, &index);
    assert_eq!(idx["manifests"].as_array().expect("list").len(), 2);
    for (i, child) in children.iter().enumerate() {
        assert_eq!(idx["manifests"][i]["digest"], child.as_str());
        let m = read_json(&dir, child);
        let cfg = read_json(&dir, m["config"]["digest"].as_str().expect("config"));
        assert_eq!(
            cfg["rootfs"]["diff_ids"]
                .as_array()
                .expect("diff_ids")
                .len(),
            2
        );
    }
    let single = write_image(&dir, "one", &host_platform(), &[0, 10]);
    assert_eq!(resolve(&dir, "one").expect("tag").digest, single);
    assert_eq!(resolve(&dir, "multi").expect("tag kept").digest, index);
    if crate::common::have("umoci") {
        let out = std::process::Command::new("umoci")
            .arg("unpack")
            .arg("--rootless")
            .arg("--image")
            .arg(format!("{}:one", dir.display()))
            .arg(tmp.path().join("bundle"))
            .output()
            .expect("run umoci");
        assert!(
            out.status.success(),
            "umoci: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let f = tmp.path().join("bundle/rootfs/berth-test/layer-1.bin");
        assert_eq!(std::fs::metadata(f).expect("unpacked layer").len(), 10);
    }
}
