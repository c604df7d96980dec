//! berth's tools for CI and operators, independent of the server internals.
//!
//! - [`tags`]: the tag set and OCI labels of a build (`berth tags`).
//! - [`lint`]: image references in compose files, Kubernetes manifests, Helm
//!   values and Dockerfiles, checked against best practice (`berth lint`).
//! - [`copy`]: digest-preserving copies between registries, OCI layouts,
//!   oci-archive and docker-archive tarballs (`berth copy`).
//! - [`export`]: a namespace or a whole registry as one OCI layout, and back
//!   (`berth export`, `berth import`).
//! - [`inspect`]: platforms, layers, history and sizes of an image
//!   (`berth inspect`).
//! - [`sbom`]: the SBOM of an image from its layers, printed or attached as
//!   a referrer (`berth sbom`).
//! - [`vulndb`]: the offline vulnerability database as one OCI artifact
//!   (`berth vulndb push`, `berth vulndb import docker://REF | oci:DIR`).
//!
//! Everything that speaks to a registry goes through `berth-client` (the OCI
//! Distribution API), so these tools work against any registry, not only
//! berth. Library functions return [`ToolError`]; the `cmd` modules are the
//! command-line edge and the only place that writes to stdout/stderr.

#![cfg_attr(test, allow(clippy::unwrap_used))]

/// The registry client the tools are built on.
pub use berth_client as client;

pub mod copy;
pub mod export;
pub mod inspect;
pub mod lint;
pub mod registry_args;
pub mod sample;
pub mod sbom;
pub mod tags;
pub mod vulndb;
pub use berth_oci::time;

use std::process::ExitCode;

/// Errors of the tools.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// Bad arguments or input.
    #[error("{0}")]
    Usage(String),
    /// A file or terminal could not be read or written.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// JSON could not be produced or parsed.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// An image, layout or archive is malformed or incomplete.
    #[error("{0}")]
    Image(String),
    /// A registry request failed.
    #[error(transparent)]
    Registry(#[from] berth_client::Error),
    /// An image's layers could not be read into an inventory.
    #[error(transparent)]
    Scan(#[from] berth_scan::Error),
}

/// The `-o/--output` values of the tools without formats of their own
/// (`inspect`, `copy`), as in the management commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// For people (tables; progress lines on stderr).
    #[value(alias = "text")]
    Table,
    /// JSON on stdout.
    Json,
}

/// The tool subcommands, flattened into the `berth` command line.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Compute the tags and OCI labels of a build from CI context.
    Tags(Box<tags::cmd::Args>),
    /// Find image references in compose, Kubernetes, Helm and Dockerfiles and report bad practice.
    Lint(Box<lint::cmd::Args>),
    /// Copy images between registries, OCI layouts and archives, keeping digests.
    Copy(Box<copy::cmd::Args>),
    /// Export a namespace or a whole registry (every tag and its referrers) as one OCI layout.
    Export(Box<export::ExportArgs>),
    /// Import an export of `berth export` into a registry, digests kept.
    Import(Box<export::ImportArgs>),
    /// Show an image's platforms, layers, history, labels and sizes.
    Inspect(Box<inspect::Args>),
    /// Compute an image's SBOM (SPDX or CycloneDX) from its layers; print it or attach it.
    Sbom(Box<sbom::Args>),
}

/// Runs a tool subcommand; the exit code says whether it found problems.
pub async fn run(cmd: Command) -> Result<ExitCode, ToolError> {
    match cmd {
        Command::Tags(args) => tags::cmd::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Lint(args) => Ok(lint::cmd::run(&args)),
        Command::Copy(args) => copy::cmd::run(&args).await,
        Command::Export(args) => export::export(&args).await,
        Command::Import(args) => export::import(&args).await,
        Command::Inspect(args) => inspect::run(&args).await,
        Command::Sbom(args) => sbom::run(&args).await,
    }
}
