//! The `berth copy` command line.

use std::process::ExitCode;

use super::progress::{self, human};
use super::{copy_image, open_destination, open_source, CopyOptions, Location, Platform};
use crate::registry_args::RegistryArgs;
use crate::ToolError;

/// Copy images between registries, OCI layouts, oci-archive and docker-archive tarballs, keeping digests.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Source: REF | docker://REF | oci:DIR[:TAG] | oci-archive:FILE[:TAG] | docker-archive:FILE[:NAME:TAG].
    pub source: String,
    /// Destination, same syntax; without a tag the source tag is used.
    pub destination: String,
    /// Copy these tags of the source repository (comma-separated).
    #[arg(long, value_delimiter = ',', conflicts_with = "all_tags")]
    pub tags: Vec<String>,
    /// Copy every tag of the source repository.
    #[arg(long)]
    pub all_tags: bool,
    /// Keep only these platforms (os/arch[/variant], comma-separated); default all.
    #[arg(long, value_delimiter = ',')]
    pub platform: Vec<String>,
    /// Parallel blob transfers.
    #[arg(long, short = 'j', default_value_t = 4)]
    pub jobs: usize,
    /// No progress output.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Output: `table` (progress on stderr only) or `json` (a report on stdout).
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    pub output: crate::Output,
    /// Same as `-o json` (kept for scripts written before `-o`).
    #[arg(long, hide = true)]
    pub json: bool,
    /// Registry access.
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// What to read from the source for a location's own reference.
fn source_reference(loc: &Location) -> Option<String> {
    match loc {
        Location::Registry(r) => Some(r.manifest_reference()),
        Location::OciLayout { tag, .. } | Location::OciArchive { tag, .. } => tag.clone(),
        Location::DockerArchive { name, .. } => name.as_ref().map(|n| n.familiar()),
    }
}

/// Runs `berth copy`.
pub async fn run(args: &Args) -> Result<ExitCode, ToolError> {
    let src_loc = Location::parse(&args.source)?;
    let dst_loc = Location::parse(&args.destination)?;
    let registries: Vec<&str> = [&src_loc, &dst_loc]
        .into_iter()
        .filter_map(|l| match l {
            Location::Registry(r) => Some(r.registry.as_str()),
            _ => None,
        })
        .collect();
    let client = args.registry.client(&registries)?;
    let opts = CopyOptions {
        platforms: args
            .platform
            .iter()
            .map(|p| Platform::parse(p))
            .collect::<Result<_, _>>()?,
        jobs: args.jobs,
    };
    let progress = progress::for_stderr(args.quiet);
    let src = open_source(&src_loc, &client).await?;
    let dst = open_destination(&dst_loc, &client).await?;
    // (source reference, destination tag) pairs.
    let pairs: Vec<(Option<String>, Option<String>)> = if args.all_tags || !args.tags.is_empty() {
        let tags = if args.all_tags {
            src.tags().await?
        } else {
            args.tags.clone()
        };
        if tags.is_empty() {
            return Err(ToolError::Usage(format!("{src_loc} has no tags")));
        }
        tags.into_iter()
            .map(|t| (Some(t.clone()), Some(t)))
            .collect()
    } else {
        let dst_tag =
            dst_loc
                .tag()
                .or(src_loc.tag())
                .map(str::to_owned)
                .or_else(|| match &src_loc {
                    Location::Registry(r) if r.digest.is_none() => Some("latest".to_owned()),
                    _ => None,
                });
        vec![(source_reference(&src_loc), dst_tag)]
    };
    let mut reports = Vec::new();
    for (src_ref, dst_tag) in pairs {
        progress.message(&format!(
            "copying {src_loc}{} -> {dst_loc}{}",
            src_ref
                .as_deref()
                .filter(|_| args.all_tags || !args.tags.is_empty())
                .map(|t| format!(" [{t}]"))
                .unwrap_or_default(),
            dst_tag
                .as_deref()
                .filter(|_| dst_loc.tag().is_none())
                .map(|t| format!(" [{t}]"))
                .unwrap_or_default(),
        ));
        let report = copy_image(
            src.as_ref(),
            src_ref.as_deref(),
            dst.as_ref(),
            dst_tag.as_deref(),
            &opts,
            &progress,
        )
        .await?;
        progress.message(&format!(
            "{} {}: {} blob(s) copied ({}), {} skipped, {} mounted",
            dst_tag.as_deref().unwrap_or("(untagged)"),
            report
                .digest
                .as_ref()
                .map(|d| d.to_string())
                .unwrap_or_default(),
            report.blobs_copied,
            human(report.bytes),
            report.blobs_skipped,
            report.blobs_mounted
        ));
        reports.push(serde_json::json!({"tag": dst_tag, "report": report}));
    }
    dst.finish().await?;
    if args.json || args.output == crate::Output::Json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    }
    Ok(ExitCode::SUCCESS)
}
