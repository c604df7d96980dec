//! `berth inspect`: what an image is made of.
//!
//! For each platform: the layers with their compressed sizes, the config's
//! `history` aligned with them (entries marked `empty_layer` own no layer,
//! as `docker history` shows), labels, and totals; across platforms, the
//! unique size and how many layers are shared. An index's docker buildx
//! attestation manifests are listed apart (they are no platform), and so are
//! entries that are blobs (a BuildKit registry cache). Works on any copy source
//! (registry, OCI layout, archives).

use std::collections::{BTreeMap, HashMap};
use std::process::ExitCode;
use std::sync::Arc;

use berth_oci::{Descriptor, Digest, EntryKind, ManifestKind};
use futures_util::StreamExt as _;

use crate::copy::progress::human;
use crate::copy::{open_source, Location, Platform, RawManifest, Source};
use crate::registry_args::RegistryArgs;
use crate::ToolError;

/// A layer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Layer {
    /// Digest.
    pub digest: Digest,
    /// Compressed size.
    pub size: i64,
    /// Media type.
    pub media_type: String,
}

/// One `history` entry with the layer it produced.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Step {
    /// The build step.
    pub created_by: Option<String>,
    /// When it ran.
    pub created: Option<String>,
    /// Its comment.
    pub comment: Option<String>,
    /// The layer, unless the step changed only metadata.
    pub layer: Option<Layer>,
}

/// One platform's image.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PlatformImage {
    /// `os/arch[/variant]`, when known.
    pub platform: Option<String>,
    /// Manifest digest.
    pub digest: Digest,
    /// Manifest media type.
    pub media_type: String,
    /// Config digest.
    pub config: Option<Digest>,
    /// Config `created`.
    pub created: Option<String>,
    /// Config labels.
    pub labels: BTreeMap<String, String>,
    /// Layers plus config, compressed.
    pub size: i64,
    /// Build steps aligned with layers.
    pub history: Vec<Step>,
}

/// A docker buildx attestation manifest listed in the index (provenance,
/// SBOM): not a platform.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Attestation {
    /// Its manifest digest.
    pub digest: Digest,
    /// The image it describes (`vnd.docker.reference.digest`).
    pub describes: Option<String>,
    /// That image's platform, when the index lists it.
    pub platform: Option<String>,
    /// The in-toto predicate types of its layers (`in-toto.io/predicate-type`).
    pub predicate_types: Vec<String>,
    /// Its layers plus config, compressed.
    pub size: i64,
}

/// The whole image.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ImageInfo {
    /// What was inspected.
    pub reference: String,
    /// Top manifest digest.
    pub digest: Digest,
    /// Top manifest media type.
    pub media_type: String,
    /// The platforms.
    pub platforms: Vec<PlatformImage>,
    /// Size of all unique blobs.
    pub total_size: i64,
    /// Distinct layers.
    pub unique_layers: usize,
    /// Layers used by more than one platform.
    pub shared_layers: usize,
    /// The index's attestation manifests.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attestations: Vec<Attestation>,
    /// The index's entries that are blobs, not manifests (BuildKit's
    /// registry cache lists its layers and its cache config so).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub blobs: Vec<Layer>,
    /// berth's signature verdict on the top manifest (`state`, `key` or
    /// `reason`, ...), when the registry is berth (see docs/signing.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<serde_json::Value>,
    /// berth's vulnerability scan summary of the top manifest (`state`,
    /// counts per severity, `scanned_at`, `vulndb_at`), when the registry
    /// is berth (see docs/scanning.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vulnerabilities: Option<serde_json::Value>,
}

/// The in-toto predicate type annotation of an attestation layer.
const PREDICATE_TYPE: &str = "in-toto.io/predicate-type";

async fn small_blob(src: &dyn Source, d: &Descriptor) -> Result<Vec<u8>, ToolError> {
    const LIMIT: usize = 16 * 1024 * 1024;
    let mut s = src.blob(d).await?;
    let mut buf = Vec::new();
    while let Some(chunk) = s.next().await {
        buf.extend_from_slice(&chunk?);
        if buf.len() > LIMIT {
            return Err(ToolError::Image(format!(
                "config {} is larger than 16 MiB",
                d.digest
            )));
        }
    }
    if Digest::compute(d.digest.algorithm(), &buf) != d.digest {
        return Err(ToolError::Image(format!(
            "config {} does not match its digest",
            d.digest
        )));
    }
    Ok(buf)
}

/// Aligns config history with layers.
pub fn align(history: &[serde_json::Value], layers: &[Descriptor]) -> Vec<Step> {
    let mut layers = layers.iter();
    let mut steps = Vec::new();
    let s = |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
    let to_layer = |d: &Descriptor| Layer {
        digest: d.digest.clone(),
        size: d.size,
        media_type: d.media_type.clone(),
    };
    for h in history {
        let empty = h
            .get("empty_layer")
            .and_then(|e| e.as_bool())
            .unwrap_or(false);
        steps.push(Step {
            created_by: s(h, "created_by"),
            created: s(h, "created"),
            comment: s(h, "comment"),
            layer: if empty {
                None
            } else {
                layers.next().map(to_layer)
            },
        });
    }
    for l in layers {
        steps.push(Step {
            created_by: None,
            created: None,
            comment: None,
            layer: Some(to_layer(l)),
        });
    }
    steps
}

async fn platform_image(
    src: &dyn Source,
    raw: &RawManifest,
    platform: Option<String>,
) -> Result<PlatformImage, ToolError> {
    let m = raw.parse()?;
    let config: serde_json::Value = match &m.config {
        Some(c) if c.size > 2 => {
            serde_json::from_slice(&small_blob(src, c).await?).unwrap_or_default()
        }
        _ => serde_json::Value::Null,
    };
    let platform = platform.or_else(|| {
        let os = config.get("os")?.as_str()?;
        let arch = config.get("architecture")?.as_str()?;
        Some(match config.get("variant").and_then(|v| v.as_str()) {
            Some(v) => format!("{os}/{arch}/{v}"),
            None => format!("{os}/{arch}"),
        })
    });
    let history = config
        .get("history")
        .and_then(|h| h.as_array())
        .cloned()
        .unwrap_or_default();
    let labels = config
        .get("config")
        .and_then(|c| c.get("Labels"))
        .and_then(|l| l.as_object())
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    Ok(PlatformImage {
        platform,
        digest: raw.digest(),
        media_type: raw.media_type.clone(),
        config: m.config.as_ref().map(|c| c.digest.clone()),
        created: config
            .get("created")
            .and_then(|c| c.as_str())
            .map(str::to_owned),
        labels,
        size: m.layers.iter().chain(m.config.iter()).map(|d| d.size).sum(),
        history: align(&history, &m.layers),
    })
}

/// Inspects `reference` in `src`.
pub async fn inspect(
    src: &dyn Source,
    reference: Option<&str>,
    display: &str,
) -> Result<ImageInfo, ToolError> {
    let top = src.manifest(reference).await?;
    let parsed = top.parse()?;
    let mut platforms = Vec::new();
    let mut blob_sizes: HashMap<Digest, i64> = HashMap::new();
    let mut layer_users: HashMap<Digest, usize> = HashMap::new();
    let mut manifests = Vec::new();
    let mut attestations = Vec::new();
    let mut blobs = Vec::new();
    match parsed.kind {
        ManifestKind::Index => {
            for c in &parsed.manifests {
                match c.entry_kind() {
                    EntryKind::Blob => {
                        blob_sizes.insert(c.digest.clone(), c.size);
                        blobs.push(Layer {
                            digest: c.digest.clone(),
                            size: c.size,
                            media_type: c.media_type.clone(),
                        });
                    }
                    EntryKind::Attestation => {
                        let raw = src.manifest(Some(c.digest.as_str())).await?;
                        let m = raw.parse()?;
                        for d in m.config.iter().chain(m.layers.iter()) {
                            blob_sizes.insert(d.digest.clone(), d.size);
                        }
                        let describes = c.attested().map(str::to_owned);
                        let platform = parsed
                            .manifests
                            .iter()
                            .find(|d| Some(d.digest.as_str()) == describes.as_deref())
                            .and_then(Platform::of)
                            .map(|p| p.to_string());
                        attestations.push(Attestation {
                            digest: c.digest.clone(),
                            describes,
                            platform,
                            predicate_types: m
                                .layers
                                .iter()
                                .filter_map(|l| l.annotation(PREDICATE_TYPE).map(str::to_owned))
                                .collect(),
                            size: m.layers.iter().chain(m.config.iter()).map(|d| d.size).sum(),
                        });
                    }
                    EntryKind::Manifest => {
                        let raw = src.manifest(Some(c.digest.as_str())).await?;
                        if raw.parse()?.kind == ManifestKind::Image {
                            manifests.push((raw, Platform::of(c).map(|p| p.to_string())));
                        }
                    }
                }
            }
        }
        ManifestKind::Image => manifests.push((top.clone(), None)),
    }
    for (raw, platform) in manifests {
        let m = raw.parse()?;
        for d in m.config.iter().chain(m.layers.iter()) {
            blob_sizes.insert(d.digest.clone(), d.size);
        }
        for l in &m.layers {
            *layer_users.entry(l.digest.clone()).or_default() += 1;
        }
        platforms.push(platform_image(src, &raw, platform).await?);
    }
    Ok(ImageInfo {
        reference: display.to_owned(),
        digest: top.digest(),
        media_type: top.media_type.clone(),
        total_size: blob_sizes.values().sum(),
        unique_layers: layer_users.len(),
        shared_layers: layer_users.values().filter(|n| **n > 1).count(),
        platforms,
        attestations,
        blobs,
        signature: None,
        vulnerabilities: None,
    })
}

/// Renders the text report.
pub fn text(info: &ImageInfo) -> String {
    let mut s = String::new();
    let plats: Vec<&str> = info
        .platforms
        .iter()
        .map(|p| p.platform.as_deref().unwrap_or("unknown"))
        .collect();
    s.push_str(&format!(
        "Image:      {}\nDigest:     {}\nMedia type: {}\n",
        info.reference, info.digest, info.media_type
    ));
    s.push_str(&format!(
        "Platforms:  {}\n",
        if plats.is_empty() {
            "none".to_owned()
        } else {
            plats.join(", ")
        }
    ));
    s.push_str(&format!(
        "Total size: {} in {} unique layer(s), {} shared between platforms\n",
        human(info.total_size.max(0) as u64),
        info.unique_layers,
        info.shared_layers
    ));
    if let Some(v) = &info.signature {
        s.push_str(&format!("Signature:  {}\n", signature_line(v)));
    }
    if let Some(v) = &info.vulnerabilities {
        s.push_str(&format!("Vulnerabilities: {}\n", scan_line(v, now_ms())));
    }
    if !info.attestations.is_empty() {
        s.push_str(&format!(
            "Attestations: {} (docker buildx provenance/SBOM; not platforms)\n",
            info.attestations.len()
        ));
        for a in &info.attestations {
            let what = if a.predicate_types.is_empty() {
                "no predicate type".to_owned()
            } else {
                a.predicate_types.join(", ")
            };
            s.push_str(&format!(
                "  {}  {}  for {}: {}\n",
                a.digest,
                human(a.size.max(0) as u64),
                a.platform
                    .as_deref()
                    .or(a.describes.as_deref())
                    .unwrap_or("an image the index does not name"),
                what
            ));
        }
    }
    if !info.blobs.is_empty() {
        s.push_str(&format!(
            "Blobs:      {} listed in the index, not manifests (e.g. a BuildKit registry cache)\n",
            info.blobs.len()
        ));
        for b in &info.blobs {
            s.push_str(&format!(
                "  {:>10}  {}  {}\n",
                human(b.size.max(0) as u64),
                b.digest,
                b.media_type
            ));
        }
    }
    for p in &info.platforms {
        s.push_str(&format!(
            "\n{}  {}  {}\n",
            p.platform.as_deref().unwrap_or("unknown"),
            p.digest,
            human(p.size.max(0) as u64)
        ));
        if let Some(c) = &p.created {
            s.push_str(&format!("  created: {c}\n"));
        }
        for (k, v) in &p.labels {
            s.push_str(&format!("  label {k}={v}\n"));
        }
        s.push_str(&format!(
            "  {:>10}  {:<19}  {}\n",
            "SIZE", "LAYER", "CREATED BY"
        ));
        for step in &p.history {
            let (size, layer) = match &step.layer {
                Some(l) => (
                    human(l.size.max(0) as u64),
                    format!("{}…", &l.digest.as_str()[..18]),
                ),
                None => ("0 B".to_owned(), "(metadata only)".to_owned()),
            };
            let by: String = step
                .created_by
                .as_deref()
                .unwrap_or("")
                .replace('\n', " ")
                .chars()
                .take(100)
                .collect();
            s.push_str(&format!("  {size:>10}  {layer:<19}  {by}\n"));
        }
    }
    s
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `2 critical, 1 high, 0 medium, 0 low (scanned 3h ago, vulnerability
/// data 2d old)`, or `not scanned yet`.
fn scan_line(v: &serde_json::Value, now: i64) -> String {
    let n = |k: &str| v[k].as_u64().unwrap_or(0);
    let ago = |k: &str| {
        v[k].as_i64().map(|t| {
            berth_oci::duration::format(std::time::Duration::from_millis((now - t).max(0) as u64))
        })
    };
    match v["state"].as_str() {
        Some("scanned") | Some("failed") => {
            let mut s = format!(
                "{} critical, {} high, {} medium, {} low",
                n("critical"),
                n("high"),
                n("medium"),
                n("low")
            );
            if n("unknown") > 0 {
                s.push_str(&format!(", {} unrated", n("unknown")));
            }
            let scanned = ago("scanned_at").map_or(String::new(), |a| format!("scanned {a} ago"));
            let data = ago("vulndb_at").map_or_else(
                || "no vulnerability data".to_owned(),
                |a| format!("vulnerability data {a} old"),
            );
            s.push_str(&format!(" ({scanned}, {data})"));
            if v["state"] == "failed" {
                s.push_str("; an image could not be read");
            }
            s
        }
        _ => "not scanned yet".to_owned(),
    }
}

/// `verified by key "release" (ecdsa-p256)`, or `not verified (reason): detail`.
fn signature_line(v: &serde_json::Value) -> String {
    let s = |k: &str| v[k].as_str().unwrap_or("").to_owned();
    let policy = v["policy"].as_str().unwrap_or("off");
    if let Some(summary) = v["summary"].as_str() {
        format!("{summary}; policy {policy}")
    } else if v["state"] == "verified" {
        format!(
            "verified by key {:?} ({}); policy {policy}",
            s("key"),
            s("algorithm")
        )
    } else {
        format!(
            "not verified ({}): {}; policy {policy}",
            s("reason"),
            s("detail")
        )
    }
}

/// Show an image's platforms, layers, history, labels and sizes.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The image: REF | oci:DIR[:TAG] | oci-archive:FILE[:TAG] | docker-archive:FILE[:NAME:TAG].
    pub image: String,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    pub output: crate::Output,
    /// Registry access.
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Runs `berth inspect`.
pub async fn run(args: &Args) -> Result<ExitCode, ToolError> {
    let loc = Location::parse(&args.image)?;
    let registries: Vec<&str> = match &loc {
        Location::Registry(r) => vec![r.registry.as_str()],
        _ => Vec::new(),
    };
    let client: Arc<berth_client::Client> = args.registry.client(&registries)?;
    let src = open_source(&loc, &client).await?;
    let reference = match &loc {
        Location::Registry(r) => Some(r.manifest_reference()),
        Location::OciLayout { tag, .. } | Location::OciArchive { tag, .. } => tag.clone(),
        Location::DockerArchive { name, .. } => name.as_ref().map(|n| n.familiar()),
    };
    let mut info = inspect(src.as_ref(), reference.as_deref(), &loc.to_string()).await?;
    if let Location::Registry(r) = &loc {
        info.signature = client
            .repository(&r.registry, &r.repository)
            .berth_signature(info.digest.as_str())
            .await;
        info.vulnerabilities = client
            .repository(&r.registry, &r.repository)
            .berth_scan_summary(info.digest.as_str())
            .await;
    }
    match args.output {
        crate::Output::Table => print!("{}", text(&info)),
        crate::Output::Json => println!("{}", serde_json::to_string_pretty(&info)?),
    }
    Ok(ExitCode::SUCCESS)
}
