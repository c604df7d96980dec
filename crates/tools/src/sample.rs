//! Small, deterministic sample images written to an OCI layout, for tests,
//! demos and smoke-testing a registry without network access.
//!
//! Each platform gets a shared base layer (identical bytes across
//! platforms, so it is a shared layer) and a platform-specific layer, a
//! config with `history` (including a metadata-only step), labels and
//! `rootfs.diff_ids`; several platforms are tied together by an OCI index.

use std::io::Write as _;
use std::path::Path;

use berth_oci::{media, Digest};
use serde_json::json;

use crate::copy::layout::Layout;
use crate::ToolError;

/// OCI gzip layer media type.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// A gzip-compressed tar holding `files`, with its uncompressed digest.
pub fn layer(files: &[(&str, Vec<u8>)]) -> Result<(Vec<u8>, Digest), ToolError> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_mtime(0);
        builder.append_data(&mut h, name, data.as_slice())?;
    }
    let tar = builder.into_inner()?;
    let diff_id = Digest::sha256(&tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar)?;
    Ok((gz.finish()?, diff_id))
}

fn put(layout: &Layout, bytes: &[u8]) -> Result<Digest, ToolError> {
    let d = Digest::sha256(bytes);
    layout.put_bytes(&d, bytes)?;
    Ok(d)
}

/// Writes a sample image for `platforms` (`linux/amd64`, ...) tagged `tag`
/// into the layout at `dir`; `seed` varies the content. Returns the digest
/// of the top manifest (an index when several platforms are given).
pub fn write(dir: &Path, tag: &str, platforms: &[&str], seed: &str) -> Result<Digest, ToolError> {
    let layout = Layout::create(dir)?;
    let (base, base_diff) = layer(&[(
        "etc/os-release",
        format!("NAME=berth-sample\nSEED={seed}\n").into_bytes(),
    )])?;
    let base_digest = put(&layout, &base)?;
    let mut children = Vec::new();
    for p in platforms {
        let plat = crate::copy::Platform::parse(p)?;
        let payload: Vec<u8> = format!("{seed} {p}\n").repeat(2000).into_bytes();
        let (app, app_diff) = layer(&[
            ("app/bin", payload),
            ("app/platform", p.as_bytes().to_vec()),
        ])?;
        let app_digest = put(&layout, &app)?;
        let mut config = json!({
            "created": "2024-05-01T12:00:00Z",
            "architecture": plat.architecture,
            "os": plat.os,
            "config": {
                "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"],
                "Cmd": ["/app/bin"],
                "Labels": {"org.opencontainers.image.title": "sample", "org.opencontainers.image.version": seed}
            },
            "rootfs": {"type": "layers", "diff_ids": [base_diff, app_diff]},
            "history": [
                {"created": "2024-05-01T12:00:00Z", "created_by": "ADD os-release /etc/os-release # buildkit"},
                {"created": "2024-05-01T12:00:00Z", "created_by": "ENV PATH=/usr/local/bin:/usr/bin:/bin", "empty_layer": true},
                {"created": "2024-05-01T12:00:00Z", "created_by": "COPY app /app # buildkit"},
                {"created": "2024-05-01T12:00:00Z", "created_by": "CMD [\"/app/bin\"]", "empty_layer": true}
            ]
        });
        if let Some(v) = &plat.variant {
            config["variant"] = json!(v);
        }
        let config_bytes = serde_json::to_vec(&config)?;
        let config_digest = put(&layout, &config_bytes)?;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_MANIFEST,
            "config": {"mediaType": media::OCI_CONFIG, "digest": config_digest, "size": config_bytes.len()},
            "layers": [
                {"mediaType": OCI_LAYER_GZIP, "digest": base_digest, "size": base.len()},
                {"mediaType": OCI_LAYER_GZIP, "digest": app_digest, "size": app.len()}
            ],
            "annotations": {"org.opencontainers.image.created": "2024-05-01T12:00:00Z"}
        });
        let bytes = serde_json::to_vec(&manifest)?;
        let digest = put(&layout, &bytes)?;
        let mut platform = json!({"architecture": plat.architecture, "os": plat.os});
        if let Some(v) = &plat.variant {
            platform["variant"] = json!(v);
        }
        children.push((json!({"mediaType": media::OCI_MANIFEST, "digest": digest, "size": bytes.len(), "platform": platform}), bytes));
    }
    let (desc, top) = if children.len() == 1 {
        let (d, b) = children.remove(0);
        (d, b)
    } else {
        let index = json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_INDEX,
            "manifests": children.iter().map(|(d, _)| d.clone()).collect::<Vec<_>>()
        });
        let bytes = serde_json::to_vec(&index)?;
        let digest = put(&layout, &bytes)?;
        (
            json!({"mediaType": media::OCI_INDEX, "digest": digest, "size": bytes.len()}),
            bytes,
        )
    };
    let mut descriptor: berth_oci::Descriptor = serde_json::from_value(desc)?;
    descriptor.platform = None;
    layout.add_to_index(descriptor, Some(tag), &[])?;
    Ok(Digest::sha256(&top))
}
