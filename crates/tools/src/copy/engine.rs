//! The copy algorithm: blobs (in parallel), then child manifests, then the
//! tagged top-level manifest.

use std::collections::BTreeMap;
use std::sync::Arc;

use berth_oci::{media, Descriptor, Digest, EntryKind, ManifestKind};
use futures_util::{StreamExt as _, TryStreamExt as _};

use super::progress::Progress;
use super::{Destination, Platform, RawManifest, Source};
use crate::ToolError;

/// How to copy.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// Keep only these platforms of a multi-platform image (empty: all).
    pub platforms: Vec<Platform>,
    /// Parallel blob transfers.
    pub jobs: usize,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            platforms: Vec::new(),
            jobs: 4,
        }
    }
}

/// What a copy did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CopyReport {
    /// Digest of the manifest written under the tag.
    pub digest: Option<Digest>,
    /// Digest of the source's manifest (equal to `digest` unless rewritten).
    pub source_digest: Option<Digest>,
    /// Whether the top manifest was rewritten (a platform subset of an index).
    pub rewritten: bool,
    /// Blobs transferred.
    pub blobs_copied: usize,
    /// Blobs the destination already had.
    pub blobs_skipped: usize,
    /// Blobs mounted from another repository.
    pub blobs_mounted: usize,
    /// Bytes transferred.
    pub bytes: u64,
}

/// Copies one image from `src` (`src_ref`: tag or digest) to `dst` under
/// `dst_tag` (by digest when `None`). The caller calls `dst.finish()`.
pub async fn copy_image(
    src: &dyn Source,
    src_ref: Option<&str>,
    dst: &dyn Destination,
    dst_tag: Option<&str>,
    opts: &CopyOptions,
    progress: &Arc<dyn Progress>,
) -> Result<CopyReport, ToolError> {
    let mut report = CopyReport::default();
    let mut top = src.manifest(src_ref).await?;
    report.source_digest = Some(top.digest());
    let mut parsed = top.parse()?;
    if parsed.kind == ManifestKind::Index && !opts.platforms.is_empty() {
        let images: Vec<(Digest, Platform)> = parsed
            .manifests
            .iter()
            .filter_map(|d| Some((d.digest.clone(), Platform::of(d)?)))
            .collect();
        let selected: Vec<&Digest> = images
            .iter()
            .filter(|(_, p)| opts.platforms.iter().any(|f| f.matches(p)))
            .map(|(d, _)| d)
            .collect();
        if selected.is_empty() {
            let have: Vec<String> = images.iter().map(|(_, p)| p.to_string()).collect();
            return Err(ToolError::Usage(format!(
                "no manifest for the requested platform(s); the image has: {}",
                if have.is_empty() {
                    "no platform images".to_owned()
                } else {
                    have.join(", ")
                }
            )));
        }
        // The entries to keep: the selected images, their attestations, and
        // the entries that are no platform's (blobs), in the index's order.
        let kept: Vec<Descriptor> = parsed
            .manifests
            .iter()
            .filter(|d| match d.entry_kind() {
                EntryKind::Manifest => selected.contains(&&d.digest),
                EntryKind::Attestation => d
                    .attested()
                    .is_some_and(|a| selected.iter().any(|s| s.as_str() == a)),
                EntryKind::Blob => true,
            })
            .cloned()
            .collect();
        let attestations = kept
            .iter()
            .filter(|d| d.entry_kind() == EntryKind::Attestation)
            .count();
        if selected.len() == 1 {
            top = src.manifest(Some(selected[0].as_str())).await?;
            parsed = top.parse()?;
            progress.message(&format!("selected platform manifest {}", top.digest()));
            if attestations > 0 {
                progress.message(&format!(
                    "left out {attestations} attestation manifest(s) of the index: a single \
                     platform manifest cannot carry them (select no platform to keep them)"
                ));
            }
        } else if selected.len() < images.len() {
            let mut value: serde_json::Value = serde_json::from_slice(&top.bytes)?;
            value["manifests"] = serde_json::to_value(&kept)?;
            top = RawManifest {
                bytes: serde_json::to_vec(&value)?.into(),
                media_type: top.media_type.clone(),
            };
            parsed = top.parse()?;
            report.rewritten = true;
            progress.message(&format!(
                "kept {} of {} platforms: the index is rewritten and gets a new digest",
                selected.len(),
                images.len()
            ));
        }
    }
    dst.check_image(&top)?;
    // Walk the manifest tree: children (depth first) before parents.
    let mut children: Vec<RawManifest> = Vec::new();
    let mut blobs: BTreeMap<Digest, Descriptor> = BTreeMap::new();
    let mut stack: Vec<berth_oci::Manifest> = vec![parsed];
    while let Some(m) = stack.pop() {
        for b in m.config.iter().chain(m.layers.iter()) {
            if !media::is_non_distributable(&b.media_type) {
                blobs.entry(b.digest.clone()).or_insert_with(|| b.clone());
            }
        }
        for b in m.blob_entries() {
            if !media::is_non_distributable(&b.media_type) {
                blobs.entry(b.digest.clone()).or_insert_with(|| b.clone());
            }
        }
        for c in m.child_manifests() {
            let raw = src.manifest(Some(c.digest.as_str())).await?;
            let p = raw.parse()?;
            children.push(raw);
            stack.push(p);
        }
    }
    let src_loc = src.registry_repository();
    let dst_loc = dst.registry_repository();
    let results: Vec<(Outcome, u64)> = futures_util::stream::iter(blobs.into_values())
        .map(|d| transfer(src, dst, d, src_loc.clone(), dst_loc.clone(), progress))
        .buffer_unordered(opts.jobs.max(1))
        .try_collect()
        .await?;
    for (outcome, bytes) in results {
        match outcome {
            Outcome::Copied => report.blobs_copied += 1,
            Outcome::Skipped => report.blobs_skipped += 1,
            Outcome::Mounted => report.blobs_mounted += 1,
        }
        report.bytes += bytes;
    }
    // Children were pushed onto the list parents-first; write them in reverse.
    for c in children.iter().rev() {
        dst.put_manifest(c, None, false).await?;
    }
    dst.put_manifest(&top, dst_tag, true).await?;
    report.digest = Some(top.digest());
    Ok(report)
}

enum Outcome {
    Copied,
    Skipped,
    Mounted,
}

async fn transfer(
    src: &dyn Source,
    dst: &dyn Destination,
    d: Descriptor,
    src_loc: Option<(String, String)>,
    dst_loc: Option<(String, String)>,
    progress: &Arc<dyn Progress>,
) -> Result<(Outcome, u64), ToolError> {
    if dst.has_blob(&d).await? {
        progress.blob_skipped(&d, "exists");
        return Ok((Outcome::Skipped, 0));
    }
    if let (Some((sr, srepo)), Some((dr, _))) = (&src_loc, &dst_loc) {
        if sr == dr && dst.mount(&d, sr, srepo).await? {
            progress.blob_skipped(&d, "mounted");
            return Ok((Outcome::Mounted, 0));
        }
    }
    let bar = progress.blob_started(&d);
    let counter = bar.clone();
    let stream = src
        .blob(&d)
        .await?
        .inspect_ok(move |chunk| counter.advance(chunk.len() as u64));
    match dst.put_blob(&d, Box::pin(stream)).await {
        Ok(()) => {
            bar.done();
            Ok((Outcome::Copied, d.size.max(0) as u64))
        }
        Err(e) => {
            bar.failed();
            Err(e)
        }
    }
}
