//! `berth sbom`: the SBOM of an image, computed from its layers
//! (`berth-scan`), printed, written to a file, or attached to the image as
//! an OCI referrer.
//!
//! SBOMs the image already has are recognised first and reported instead of
//! generating another (`--force` generates anyway): referrers whose artifact
//! type is SPDX, CycloneDX or in-toto (oras attach, cosign attest, `berth
//! sbom --attach`), and the attestation manifests docker buildx puts in an
//! index whose layers carry an SPDX or CycloneDX predicate.
//!
//! Layers stream from the source into the inventory (never held whole); an
//! index yields one image per platform (`--platform` picks one).

use std::io;
use std::process::ExitCode;
use std::sync::Arc;

use berth_oci::{media, Descriptor, Digest, EntryKind, ManifestKind};
use berth_scan::layers::FileView;
use berth_scan::sbom::{self, Format, Image, PlatformImage, Stamp};
use berth_scan::Inventory;
use bytes::Bytes;
use futures_util::TryStreamExt as _;

use crate::copy::{open_source, Location, Platform, RawManifest, Source};
use crate::registry_args::RegistryArgs;
use crate::ToolError;

/// The annotation docker buildx and cosign put on attestation layers.
const PREDICATE_TYPE: &str = "in-toto.io/predicate-type";

/// An SBOM or attestation the image already has.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Existing {
    /// Digest of the manifest that holds it.
    pub digest: Digest,
    /// Its artifact type, or the in-toto predicate type of a buildx
    /// attestation.
    pub kind: String,
    /// How it is attached: `referrer` or `buildx attestation`.
    pub attached_as: &'static str,
    /// The manifest it describes.
    pub subject: Digest,
}

fn is_sbom_type(t: &str) -> bool {
    let t = t.to_ascii_lowercase();
    t.contains("spdx") || t.contains("cyclonedx") || t == media::IN_TOTO
}

/// The SBOMs and attestations of `top` (and of its platform images).
/// `repo` is the image's repository when it is in a registry (referrers).
pub async fn existing(
    src: &dyn Source,
    top: &RawManifest,
    repo: Option<&berth_client::Repository<'_>>,
) -> Result<Vec<Existing>, ToolError> {
    let parsed = top.parse()?;
    let top_digest = top.digest();
    let mut found = Vec::new();
    let mut subjects = vec![top_digest.clone()];
    if parsed.kind == ManifestKind::Index {
        for c in &parsed.manifests {
            match c.entry_kind() {
                EntryKind::Attestation => {
                    let raw = src.manifest(Some(c.digest.as_str())).await?;
                    let subject = c
                        .attested()
                        .and_then(|d| Digest::parse(d).ok())
                        .unwrap_or_else(|| top_digest.clone());
                    for l in raw.parse()?.layers {
                        if let Some(p) = l.annotation(PREDICATE_TYPE).filter(|p| is_sbom_type(p)) {
                            found.push(Existing {
                                digest: c.digest.clone(),
                                kind: p.to_owned(),
                                attached_as: "buildx attestation",
                                subject: subject.clone(),
                            });
                        }
                    }
                }
                EntryKind::Manifest => subjects.push(c.digest.clone()),
                EntryKind::Blob => {}
            }
        }
    }
    if let Some(repo) = repo {
        for subject in subjects {
            for d in repo.referrers(&subject, None).await? {
                if let Some(t) = d.artifact_type.as_deref().filter(|t| is_sbom_type(t)) {
                    found.push(Existing {
                        digest: d.digest.clone(),
                        kind: t.to_owned(),
                        attached_as: "referrer",
                        subject: subject.clone(),
                    });
                }
            }
        }
    }
    Ok(found)
}

fn is_layer(d: &Descriptor) -> bool {
    d.media_type.contains(".image.rootfs.") || d.media_type.contains(".image.layer.")
}

/// The inventory of one image manifest, its layers streamed in order.
pub async fn inventory(src: &dyn Source, raw: &RawManifest) -> Result<Inventory, ToolError> {
    let m = raw.parse()?;
    if m.kind != ManifestKind::Image {
        return Err(ToolError::Image(format!(
            "{} is not an image manifest",
            raw.digest()
        )));
    }
    let mut view = FileView::new();
    for layer in &m.layers {
        if !is_layer(layer) {
            return Err(ToolError::Image(format!(
                "manifest {} has a {} entry where layers are expected: not a container image, \
                 no SBOM computed",
                raw.digest(),
                layer.media_type
            )));
        }
        let stream = src.blob(layer).await?;
        let reader = tokio_util::io::StreamReader::new(stream.map_err(io::Error::other));
        let bridge = tokio_util::io::SyncIoBridge::new(reader);
        let digest = layer.digest.clone();
        view = tokio::task::spawn_blocking(move || {
            let mut view = view;
            view.apply_layer(&digest, bridge).map(|()| view)
        })
        .await
        .map_err(|e| ToolError::Image(format!("layer task: {e}")))??;
    }
    Ok(berth_scan::catalog::catalog(&view).await?)
}

fn platform_of(d: &Descriptor) -> Option<String> {
    let p = d.platform.as_ref()?;
    let os = p.get("os")?.as_str()?;
    let arch = p.get("architecture")?.as_str()?;
    Some(match p.get("variant").and_then(|v| v.as_str()) {
        Some(v) => format!("{os}/{arch}/{v}"),
        None => format!("{os}/{arch}"),
    })
}

/// The image behind `reference` with the inventory of each platform
/// (`platform`: only that one, and it becomes the document's subject).
pub async fn image(
    src: &dyn Source,
    top: &RawManifest,
    name: &str,
    reference: &str,
    platform: Option<&Platform>,
) -> Result<(Image, RawManifest), ToolError> {
    let parsed = top.parse()?;
    let mut platforms = Vec::new();
    let mut subject = top.clone();
    match parsed.kind {
        ManifestKind::Index => {
            for c in parsed.child_manifests() {
                if c.entry_kind() != EntryKind::Manifest {
                    continue;
                }
                let label = platform_of(c);
                if let Some(want) = platform {
                    if label.as_deref() != Some(want.to_string().as_str()) {
                        continue;
                    }
                }
                let raw = src.manifest(Some(c.digest.as_str())).await?;
                if raw.parse()?.kind != ManifestKind::Image {
                    continue;
                }
                if platform.is_some() {
                    subject = raw.clone();
                }
                platforms.push(PlatformImage {
                    platform: label,
                    digest: c.digest.to_string(),
                    inventory: inventory(src, &raw).await?,
                });
            }
            if platforms.is_empty() {
                return Err(ToolError::Image(match platform {
                    Some(p) => format!("{name}:{reference} has no image for platform {p}"),
                    None => format!("{name}:{reference} is an index without images"),
                }));
            }
        }
        _ => platforms.push(PlatformImage {
            platform: None,
            digest: top.digest().to_string(),
            inventory: inventory(src, top).await?,
        }),
    }
    let digest = subject.digest().to_string();
    Ok((
        Image {
            name: name.to_owned(),
            reference: reference.to_owned(),
            digest,
            platforms,
        },
        subject,
    ))
}

/// Pushes `document` to `repo` as a referrer of `subject`; returns the
/// manifest digest.
pub async fn attach(
    repo: &berth_client::Repository<'_>,
    subject: &RawManifest,
    format: Format,
    document: Bytes,
) -> Result<Digest, ToolError> {
    let empty = Bytes::from_static(b"{}");
    let empty_digest = Digest::sha256(&empty);
    if repo.head_blob(&empty_digest).await?.is_none() {
        repo.upload_blob(&empty_digest, 2, empty.into()).await?;
    }
    let doc_digest = Digest::sha256(&document);
    let size = document.len();
    repo.upload_blob(&doc_digest, size as u64, document.into())
        .await?;
    let title = match format {
        Format::Spdx => "sbom.spdx.json",
        Format::CycloneDx => "sbom.cdx.json",
    };
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "artifactType": format.artifact_type(),
        "config": {"mediaType": media::OCI_EMPTY, "digest": empty_digest, "size": 2},
        "layers": [{
            "mediaType": format.artifact_type(),
            "digest": doc_digest,
            "size": size,
            "annotations": {"org.opencontainers.image.title": title},
        }],
        "subject": {
            "mediaType": subject.media_type,
            "digest": subject.digest(),
            "size": subject.bytes.len(),
        },
        "annotations": {
            "org.opencontainers.image.created": berth_oci::time::Timestamp::now().to_string(),
        },
    });
    let bytes = Bytes::from(serde_json::to_vec(&manifest)?);
    let digest = Digest::sha256(&bytes);
    repo.put_manifest(digest.as_str(), bytes, media::OCI_MANIFEST)
        .await?;
    Ok(digest)
}

/// The `--format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatArg {
    /// SPDX 2.3 JSON.
    Spdx,
    /// CycloneDX 1.6 JSON.
    Cyclonedx,
    /// The inventory itself (berth's JSON: packages, layers, paths, notes).
    Inventory,
}

/// `berth sbom` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The image: REF | oci:DIR[:TAG] | oci-archive:FILE[:TAG] | docker-archive:FILE[:NAME:TAG].
    pub image: String,
    /// Document format.
    #[arg(long, value_enum, default_value = "spdx")]
    pub format: FormatArg,
    /// Only this platform of an index (`os/arch[/variant]`); the SBOM then describes that
    /// platform's manifest.
    #[arg(long)]
    pub platform: Option<String>,
    /// Push the document to the registry as a referrer of the image (artifactType
    /// application/spdx+json or application/vnd.cyclonedx+json).
    #[arg(long)]
    pub attach: bool,
    /// Write the document to this file instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub output_file: Option<std::path::PathBuf>,
    /// Generate even when the image already has an SBOM (a referrer or a buildx attestation).
    #[arg(long)]
    pub force: bool,
    /// Registry access.
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Runs `berth sbom`.
pub async fn run(args: &Args) -> Result<ExitCode, ToolError> {
    let loc = Location::parse(&args.image)?;
    let registries: Vec<&str> = match &loc {
        Location::Registry(r) => vec![r.registry.as_str()],
        _ => Vec::new(),
    };
    let format = match args.format {
        FormatArg::Spdx => Some(Format::Spdx),
        FormatArg::Cyclonedx => Some(Format::CycloneDx),
        FormatArg::Inventory => None,
    };
    if args.attach && (format.is_none() || !matches!(loc, Location::Registry(_))) {
        return Err(ToolError::Usage(
            "--attach needs --format spdx or cyclonedx and an image in a registry".to_owned(),
        ));
    }
    let platform = args.platform.as_deref().map(Platform::parse).transpose()?;
    let client: Arc<berth_client::Client> = args.registry.client(&registries)?;
    let src = open_source(&loc, &client).await?;
    let (name, reference) = match &loc {
        Location::Registry(r) => (
            format!("{}/{}", r.registry, r.repository),
            r.manifest_reference(),
        ),
        Location::OciLayout { tag, .. } | Location::OciArchive { tag, .. } => {
            (loc.to_string(), tag.clone().unwrap_or_default())
        }
        Location::DockerArchive { name, .. } => (
            loc.to_string(),
            name.as_ref().map(|n| n.familiar()).unwrap_or_default(),
        ),
    };
    let top_ref = match &loc {
        Location::Registry(_) => Some(reference.clone()),
        _ => (!reference.is_empty()).then(|| reference.clone()),
    };
    let top = src.manifest(top_ref.as_deref()).await?;
    if !args.force && format.is_some() {
        let repo = match &loc {
            Location::Registry(r) => Some(client.repository(&r.registry, &r.repository)),
            _ => None,
        };
        let found = existing(src.as_ref(), &top, repo.as_ref()).await?;
        if !found.is_empty() {
            eprintln!("{name}:{reference} already has SBOMs or attestations (--force generates one anyway):");
            for e in &found {
                eprintln!(
                    "  {} {} of {} ({})",
                    e.digest, e.kind, e.subject, e.attached_as
                );
            }
            println!("{}", serde_json::to_string_pretty(&found)?);
            return Ok(ExitCode::SUCCESS);
        }
    }
    let (image, subject) = image(src.as_ref(), &top, &name, &reference, platform.as_ref()).await?;
    for p in &image.platforms {
        for n in &p.inventory.notes {
            eprintln!("note: {} (layer {}): {}", n.path, n.layer, n.message);
        }
    }
    let stamp = Stamp::now(&format!("berth-{}", env!("CARGO_PKG_VERSION")));
    let document = match format {
        Some(f) => sbom::document(f, &image, &stamp),
        None => serde_json::to_value(
            image
                .platforms
                .iter()
                .map(|p| {
                    serde_json::json!({
                        "platform": p.platform,
                        "digest": p.digest,
                        "inventory": p.inventory,
                    })
                })
                .collect::<Vec<_>>(),
        )?,
    };
    let bytes = Bytes::from(serde_json::to_vec_pretty(&document)?);
    match &args.output_file {
        Some(path) => std::fs::write(path, &bytes)?,
        None if !args.attach => println!("{}", String::from_utf8_lossy(&bytes)),
        None => {}
    }
    if let (true, Some(f), Location::Registry(r)) = (args.attach, format, &loc) {
        let repo = client.repository(&r.registry, &r.repository);
        let digest = attach(&repo, &subject, f, bytes).await?;
        eprintln!(
            "attached {} as {digest}, a referrer of {}",
            f.artifact_type(),
            subject.digest()
        );
    }
    Ok(ExitCode::SUCCESS)
}
