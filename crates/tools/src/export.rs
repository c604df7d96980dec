//! `berth export` and `berth import`: a namespace, or a whole registry, as
//! one OCI image layout (a directory or an `oci-archive` tarball), and back,
//! for moves into air-gapped networks and between registries.
//!
//! The export is one layout whose `index.json` names every image with its
//! repository, in the `org.opencontainers.image.ref.name` annotation, whose
//! grammar (OCI image layout, "Pre-defined annotation keys") admits `/`, `:`
//! and `@`: a tag as `acme/app:v1`, a referrer (signature, SBOM,
//! attestation pushed by digest) as `acme/app@sha256:…`. Any OCI tool can
//! read one image out of it (`skopeo copy oci:DIR:acme/app:v1 …`); blobs
//! shared by images are stored once. Both directions run on the engine of
//! `berth copy` (digests kept, every blob verified as it is written), and an
//! export into a directory that already holds one copies only new blobs.
//!
//! What is exported: every tag of every repository the credentials can
//! list, each with all its platforms, and the referrers of each tagged
//! manifest and of its platform manifests (and theirs, recursively).
//! Untagged manifests that nothing refers to are not.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::process::ExitCode;
use std::sync::Arc;

use berth_oci::reference::ImageRef;
use berth_oci::{Digest, EntryKind, ManifestKind};

use crate::copy::progress::{self, human, Progress};
use crate::copy::remote::RemoteRepository;
use crate::copy::{
    copy_image, open_destination, open_source, CopyOptions, CopyReport, Destination, Location,
    Source,
};
use crate::registry_args::RegistryArgs;
use crate::ToolError;

/// Export a namespace or a whole registry (every tag and its referrers) as one OCI layout or oci-archive.
#[derive(Debug, Clone, clap::Args)]
pub struct ExportArgs {
    /// What to export: REGISTRY (every repository the credentials can list), REGISTRY/NAMESPACE, or
    /// REGISTRY/REPOSITORY.
    pub source: String,
    /// Where: oci:DIR or oci-archive:FILE (a directory that holds an earlier export gets only new
    /// blobs).
    pub destination: String,
    /// Leave out the referrers (signatures, SBOMs, attestations pushed by digest).
    #[arg(long)]
    pub no_referrers: bool,
    /// Parallel blob transfers.
    #[arg(long, short = 'j', default_value_t = 4)]
    pub jobs: usize,
    /// No progress output.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Output: `table` (progress on stderr only) or `json` (a report on stdout).
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    pub output: crate::Output,
    /// Registry access.
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Import an export of `berth export` (oci:DIR or oci-archive:FILE) into a registry, digests kept.
#[derive(Debug, Clone, clap::Args)]
pub struct ImportArgs {
    /// The export: oci:DIR or oci-archive:FILE.
    pub source: String,
    /// The registry to push into (host[:port]).
    pub destination: String,
    /// Put every repository under this namespace instead of its own (`acme/app` becomes
    /// `NAMESPACE/app`).
    #[arg(long, value_name = "NAMESPACE")]
    pub to_namespace: Option<String>,
    /// Parallel blob transfers.
    #[arg(long, short = 'j', default_value_t = 4)]
    pub jobs: usize,
    /// No progress output.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Output: `table` (progress on stderr only) or `json` (a report on stdout).
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    pub output: crate::Output,
    /// Registry access.
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// One image of an export: where it belongs and how it is named there.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entry {
    /// The repository (`acme/app`).
    pub repository: String,
    /// Its tag, or the digest of a referrer pushed by digest.
    pub reference: EntryRef,
}

/// How an [`Entry`] is referred to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum EntryRef {
    /// A tag (`acme/app:v1`).
    Tag(String),
    /// A manifest pushed by digest (`acme/app@sha256:…`).
    Digest(Digest),
}

impl Entry {
    /// The layout's ref name for this entry.
    pub fn ref_name(&self) -> String {
        match &self.reference {
            EntryRef::Tag(t) => format!("{}:{t}", self.repository),
            EntryRef::Digest(d) => format!("{}@{d}", self.repository),
        }
    }

    /// Reads a ref name written by [`Entry::ref_name`]; `None` for a name
    /// that carries no repository (a layout written by `berth copy`).
    pub fn parse(name: &str) -> Option<Entry> {
        if let Some((repository, digest)) = name.split_once('@') {
            let digest = Digest::parse(digest).ok()?;
            return Some(Entry {
                repository: valid_repository(repository)?,
                reference: EntryRef::Digest(digest),
            });
        }
        // A tag holds no '/' or ':', so it is after the last ':'.
        let (repository, tag) = name.rsplit_once(':')?;
        berth_oci::Tag::parse(tag).ok()?;
        Some(Entry {
            repository: valid_repository(repository)?,
            reference: EntryRef::Tag(tag.to_owned()),
        })
    }
}

fn valid_repository(name: &str) -> Option<String> {
    berth_oci::RepositoryName::parse(name)
        .ok()
        .map(|r| r.as_str().to_owned())
}

/// `REGISTRY[/PATH]` of `berth export`: the registry and the repository
/// prefix (a namespace or one repository; empty for all).
fn split_source(s: &str) -> Result<(String, String), ToolError> {
    let s = s
        .strip_prefix("docker://")
        .unwrap_or(s)
        .trim_end_matches('/');
    let (registry, path) = s.split_once('/').unwrap_or((s, ""));
    let host_like = registry.contains('.') || registry.contains(':') || registry == "localhost";
    if !host_like {
        return Err(ToolError::Usage(format!(
            "{s}: name the registry first (host[:port], e.g. registry.example.com/acme or \
             localhost:5000)"
        )));
    }
    if !path.is_empty() && valid_repository(path).is_none() {
        return Err(ToolError::Usage(format!(
            "{path}: not a namespace or repository name"
        )));
    }
    Ok((registry.to_owned(), path.to_owned()))
}

fn layout_location(s: &str, what: &str) -> Result<Location, ToolError> {
    let loc = Location::parse(s)?;
    match &loc {
        Location::OciLayout { tag: None, .. } | Location::OciArchive { tag: None, .. } => Ok(loc),
        Location::OciLayout { .. } | Location::OciArchive { .. } => Err(ToolError::Usage(format!(
            "{s}: an export holds many images; name the {what} without a tag (oci:DIR or \
             oci-archive:FILE)"
        ))),
        _ => Err(ToolError::Usage(format!(
            "{s}: the {what} is an OCI layout: oci:DIR or oci-archive:FILE (use `berth copy` for \
             single images in other forms)"
        ))),
    }
}

/// What one image's copy did, for the report.
#[derive(Debug, serde::Serialize)]
struct Copied {
    repository: String,
    reference: String,
    #[serde(flatten)]
    report: CopyReport,
}

fn remote(
    client: &Arc<berth_client::Client>,
    registry: &str,
    repository: &str,
) -> Result<RemoteRepository, ToolError> {
    let r = ImageRef::parse(&format!("{registry}/{repository}"))
        .map_err(|e| ToolError::Usage(format!("{registry}/{repository}: {e}")))?;
    Ok(RemoteRepository::new(client.clone(), &r))
}

fn summary(progress: &Arc<dyn Progress>, verb: &str, copied: &[Copied]) {
    let referrers = copied
        .iter()
        .filter(|c| c.reference.starts_with("sha"))
        .count();
    let repositories: BTreeSet<&str> = copied.iter().map(|c| c.repository.as_str()).collect();
    let bytes: u64 = copied.iter().map(|c| c.report.bytes).sum();
    let blobs: usize = copied.iter().map(|c| c.report.blobs_copied).sum();
    let skipped: usize = copied.iter().map(|c| c.report.blobs_skipped).sum();
    progress.message(&format!(
        "{verb} {} image(s) and {referrers} referrer(s) of {} repositories: {blobs} blob(s) \
         copied ({}), {skipped} already there",
        copied.len() - referrers,
        repositories.len(),
        human(bytes)
    ));
}

/// Runs `berth export`.
pub async fn export(args: &ExportArgs) -> Result<ExitCode, ToolError> {
    let (registry, prefix) = split_source(&args.source)?;
    let dst_loc = layout_location(&args.destination, "destination")?;
    let client = args.registry.client(&[registry.as_str()])?;
    let progress = progress::for_stderr(args.quiet);
    let opts = CopyOptions {
        platforms: Vec::new(),
        jobs: args.jobs,
    };
    let repositories: Vec<String> = client
        .catalog(&registry, 1000)
        .await?
        .into_iter()
        .filter(|r| {
            prefix.is_empty()
                || *r == prefix
                || r.strip_prefix(&prefix).is_some_and(|s| s.starts_with('/'))
        })
        .collect();
    if repositories.is_empty() {
        return Err(ToolError::Usage(format!(
            "{}: no repositories{} that these credentials can list (the catalog needs a login \
             for private repositories)",
            registry,
            if prefix.is_empty() {
                String::new()
            } else {
                format!(" under {prefix}")
            }
        )));
    }
    let dst = open_destination(&dst_loc, &client).await?;
    let mut copied = Vec::new();
    for repository in &repositories {
        let src = remote(&client, &registry, repository)?;
        let tags = src.tags().await?;
        let mut tops = Vec::new();
        for tag in &tags {
            let entry = Entry {
                repository: repository.clone(),
                reference: EntryRef::Tag(tag.clone()),
            };
            let c = export_one(&src, tag, dst.as_ref(), &entry, &opts, &progress).await?;
            tops.extend(c.report.digest.clone());
            copied.push(c);
        }
        if !args.no_referrers {
            let repo = client.repository(&registry, repository);
            export_referrers(
                &src,
                &repo,
                tops,
                dst.as_ref(),
                repository,
                &opts,
                &progress,
                &mut copied,
            )
            .await?;
        }
    }
    dst.finish().await?;
    summary(&progress, "exported", &copied);
    if args.output == crate::Output::Json {
        println!("{}", serde_json::to_string_pretty(&copied)?);
    }
    Ok(ExitCode::SUCCESS)
}

async fn export_one(
    src: &dyn Source,
    reference: &str,
    dst: &dyn Destination,
    entry: &Entry,
    opts: &CopyOptions,
    progress: &Arc<dyn Progress>,
) -> Result<Copied, ToolError> {
    let name = entry.ref_name();
    let report = copy_image(src, Some(reference), dst, Some(&name), opts, progress)
        .await
        .map_err(|e| ToolError::Image(format!("{name}: {e}")))?;
    progress.message(&format!(
        "{name}: {} blob(s) copied ({}), {} already there",
        report.blobs_copied,
        human(report.bytes),
        report.blobs_skipped
    ));
    Ok(Copied {
        repository: entry.repository.clone(),
        reference: match &entry.reference {
            EntryRef::Tag(t) => t.clone(),
            EntryRef::Digest(d) => d.to_string(),
        },
        report,
    })
}

/// Exports the referrers of `tops`, of their platform manifests, and of
/// the referrers themselves (a signature of an SBOM), each once.
#[allow(clippy::too_many_arguments)]
async fn export_referrers(
    src: &RemoteRepository,
    repo: &berth_client::Repository<'_>,
    tops: Vec<Digest>,
    dst: &dyn Destination,
    repository: &str,
    opts: &CopyOptions,
    progress: &Arc<dyn Progress>,
    copied: &mut Vec<Copied>,
) -> Result<(), ToolError> {
    let mut seen: BTreeSet<Digest> = tops.iter().cloned().collect();
    let mut queue: VecDeque<Digest> = tops.into();
    // The platform manifests of the tagged indexes are subjects too.
    for top in seen.clone() {
        let m = src.manifest(Some(top.as_str())).await?.parse()?;
        if m.kind == ManifestKind::Index {
            for child in m
                .manifests
                .iter()
                .filter(|d| d.entry_kind() == EntryKind::Manifest)
            {
                if seen.insert(child.digest.clone()) {
                    queue.push_back(child.digest.clone());
                }
            }
        }
    }
    while let Some(subject) = queue.pop_front() {
        for r in repo.referrers(&subject, None).await? {
            if !seen.insert(r.digest.clone()) {
                continue;
            }
            let entry = Entry {
                repository: repository.to_owned(),
                reference: EntryRef::Digest(r.digest.clone()),
            };
            copied.push(export_one(src, r.digest.as_str(), dst, &entry, opts, progress).await?);
            queue.push_back(r.digest);
        }
    }
    Ok(())
}

/// Runs `berth import`.
pub async fn import(args: &ImportArgs) -> Result<ExitCode, ToolError> {
    let src_loc = layout_location(&args.source, "source")?;
    let registry = args
        .destination
        .strip_prefix("docker://")
        .unwrap_or(&args.destination);
    let registry = registry.trim_end_matches('/');
    if registry.contains('/') {
        return Err(ToolError::Usage(format!(
            "{registry}: name only the registry (host[:port]); --to-namespace moves the \
             repositories under another namespace"
        )));
    }
    let client = args.registry.client(&[registry])?;
    let src = open_source(&src_loc, &client).await?;
    let mut entries = Vec::new();
    for name in src.tags().await? {
        let entry = Entry::parse(&name).ok_or_else(|| {
            ToolError::Image(format!(
                "{}: the image named {name:?} names no repository: this layout was not written \
                 by `berth export` (copy its images one by one with `berth copy`)",
                args.source
            ))
        })?;
        entries.push((name, entry));
    }
    if entries.is_empty() {
        return Err(ToolError::Image(format!(
            "{}: holds no images",
            args.source
        )));
    }
    // Tags first, then the referrers (pushed by digest), each group by
    // repository; a referrer's subject is then already there.
    entries.sort_by(|a, b| {
        let key = |e: &Entry| {
            (
                matches!(e.reference, EntryRef::Digest(_)),
                e.repository.clone(),
            )
        };
        key(&a.1).cmp(&key(&b.1)).then_with(|| a.0.cmp(&b.0))
    });
    let progress = progress::for_stderr(args.quiet);
    let opts = CopyOptions {
        platforms: Vec::new(),
        jobs: args.jobs,
    };
    let mut destinations: BTreeMap<String, RemoteRepository> = BTreeMap::new();
    let mut copied = Vec::new();
    for (name, entry) in entries {
        let repository = match &args.to_namespace {
            Some(ns) => {
                let rest = entry
                    .repository
                    .split_once('/')
                    .map_or(entry.repository.as_str(), |(_, r)| r);
                valid_repository(&format!("{ns}/{rest}")).ok_or_else(|| {
                    ToolError::Usage(format!(
                        "--to-namespace {ns}: {ns}/{rest} is not a valid repository name"
                    ))
                })?
            }
            None => entry.repository.clone(),
        };
        if !destinations.contains_key(&repository) {
            destinations.insert(repository.clone(), remote(&client, registry, &repository)?);
        }
        let dst = &destinations[&repository];
        let tag = match &entry.reference {
            EntryRef::Tag(t) => Some(t.as_str()),
            EntryRef::Digest(_) => None,
        };
        let report = copy_image(src.as_ref(), Some(&name), dst, tag, &opts, &progress)
            .await
            .map_err(|e| ToolError::Image(format!("{name} -> {registry}/{repository}: {e}")))?;
        progress.message(&format!(
            "{registry}/{repository}{}: {} blob(s) copied ({}), {} already there",
            match &entry.reference {
                EntryRef::Tag(t) => format!(":{t}"),
                EntryRef::Digest(d) => format!("@{d}"),
            },
            report.blobs_copied,
            human(report.bytes),
            report.blobs_skipped
        ));
        copied.push(Copied {
            repository,
            reference: match entry.reference {
                EntryRef::Tag(t) => t,
                EntryRef::Digest(d) => d.to_string(),
            },
            report,
        });
    }
    for dst in destinations.values() {
        dst.finish().await?;
    }
    summary(&progress, "imported", &copied);
    if args.output == crate::Output::Json {
        println!("{}", serde_json::to_string_pretty(&copied)?);
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ref_names_carry_the_repository() {
        let d = Digest::sha256(b"x");
        for (e, name) in [
            (
                Entry {
                    repository: "acme/app".into(),
                    reference: EntryRef::Tag("v1.2".into()),
                },
                "acme/app:v1.2".to_owned(),
            ),
            (
                Entry {
                    repository: "acme/team/app".into(),
                    reference: EntryRef::Digest(d.clone()),
                },
                format!("acme/team/app@{d}"),
            ),
        ] {
            assert_eq!(e.ref_name(), name);
            assert_eq!(Entry::parse(&name), Some(e));
        }
        // What `berth copy` writes into a layout names no repository.
        assert_eq!(Entry::parse("v1"), None);
        assert_eq!(Entry::parse("acme/app@sha256:short"), None);
        assert_eq!(Entry::parse("Acme/App:v1"), None);
    }

    #[test]
    fn the_source_names_a_registry_first() {
        assert_eq!(
            split_source("localhost:5000/acme").unwrap(),
            ("localhost:5000".into(), "acme".into())
        );
        assert_eq!(
            split_source("docker://r.example.com/").unwrap(),
            ("r.example.com".into(), String::new())
        );
        let e = split_source("acme/app").unwrap_err().to_string();
        assert!(e.contains("name the registry first"), "{e}");
        assert!(layout_location("oci:/tmp/x:v1", "destination").is_err());
        assert!(layout_location("docker-archive:/tmp/x.tar", "destination").is_err());
        assert!(layout_location("oci-archive:/tmp/x.tar", "destination").is_ok());
    }
}
