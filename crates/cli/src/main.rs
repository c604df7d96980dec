//! The `berth` binary: clap subcommands, configuration loading and wiring.
//!
//! Business rules live in the library crates; this crate only turns raw
//! arguments into validated settings and connects the layers.

use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};

mod backup;
mod config;
mod healthcheck;
mod log_format;
mod log_writer;
mod manage;
mod migrate;
mod progress;
mod scrub;
mod serve;
mod shell;
mod storage;
mod tls;

/// berth: a self-hosted OCI container registry with image lifecycle management.
#[derive(Debug, Parser)]
#[command(name = "berth", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the registry (OCI Distribution API on /v2/).
    Serve(Box<config::ServeArgs>),
    /// Benchmark berth against the reference registry, side by side.
    Bench(berth_bench::BenchArgs),
    /// Manage user accounts of a running registry.
    User(Box<manage::accounts::UserArgs>),
    /// Manage organisations, members and robot accounts.
    Org(Box<manage::accounts::OrgArgs>),
    /// Create, list and revoke access tokens.
    Token(Box<manage::tokens::TokenArgs>),
    /// Repository and namespace settings (visibility).
    Repo(Box<manage::repos::RepoArgs>),
    /// Read or export the audit log of a running registry.
    Audit(Box<manage::audit::Args>),
    /// Protected and immutable tag rules of a namespace (management API).
    TagRule(manage::tag_rule::Args),
    /// Storage used by a namespace or repository (shared layers counted once).
    Usage(manage::usage::UsageArgs),
    /// Show, set or remove a namespace's storage quota.
    Quota(manage::usage::QuotaArgs),
    /// Remove unreferenced blobs and abandoned uploads from a running registry.
    Gc(Box<manage::gc::Args>),
    /// Retention policies of a namespace: set, get, plan, apply.
    Retention(Box<manage::retention::Args>),
    /// Webhooks of a namespace or of the site, and their deliveries.
    Webhook(Box<manage::webhook::Args>),
    /// Keyless push from CI: OIDC trust policies (site admins).
    Oidc(Box<manage::oidc::Args>),
    /// Signatures: the keys a namespace trusts, its pull policy (enforce,
    /// warn), a manifest's verdict.
    Trust(Box<manage::trust::Args>),
    /// The pull-through mirror: its upstreams and their rate limits.
    Mirror(Box<manage::mirror::Args>),
    /// The offline vulnerability database: import OSV data, show what is loaded.
    Vulndb(Box<manage::vulndb::Args>),
    /// Scan an image for known vulnerabilities, on the registry that holds it, against its
    /// vulnerability database (-o table|json|sarif; --fail-on SEVERITY for CI).
    Scan(Box<manage::scan::Args>),
    /// Replication rules: copy images to or from another registry, on push,
    /// on a schedule or on demand (site admins).
    Replication(Box<manage::replication::Args>),
    /// Move a stopped single-node registry (SQLite + files) to PostgreSQL
    /// and other blob storage, for replicas (resumable).
    Migrate(Box<migrate::Args>),
    /// TLS helpers: a private CA and server certificate for HTTPS.
    Tls(tls::TlsArgs),
    /// Back up a registry while it runs (metadata snapshot and blobs,
    /// incremental), or check backups with `berth backup verify DEST`.
    Backup(Box<backup::Args>),
    /// Restore a backup into a new, empty data directory.
    Restore(Box<backup::RestoreArgs>),
    /// Check every blob's digest and size on a running registry, repairing
    /// what `scrub_repair_from` holds.
    Scrub(Box<scrub::Args>),
    /// Ask the `berth serve` of this machine whether it is alive (/livez)
    /// or ready (/readyz): exit 0 or 1 (container health checks).
    Healthcheck(Box<healthcheck::Args>),
    #[command(flatten)]
    Tools(berth_tools::Command),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(shell::CompletionsArgs),
    /// Print the man page, or write a page per command with --dir.
    Man(shell::ManArgs),
}

fn main() -> ExitCode {
    // The matches say which settings were given (flag or environment) and
    // which are defaults, for `berth serve`'s configuration file.
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let generated = match &cli.command {
        Command::Completions(args) => Some(shell::completions(args, Cli::command())),
        Command::Man(args) => Some(shell::man(args, Cli::command())),
        _ => None,
    };
    if let Some(result) = generated {
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("berth: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berth: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => {
                let empty = clap::ArgMatches::default();
                let serve = matches.subcommand_matches("serve").unwrap_or(&empty);
                serve::run(*args, serve).await.map(|()| ExitCode::SUCCESS)
            }
            Command::Bench(args) => berth_bench::run(args).await.map(|()| ExitCode::SUCCESS),
            Command::User(args) => manage::accounts::run_user(&args)
                .await
                .map(|()| ExitCode::SUCCESS),
            Command::Org(args) => manage::accounts::run_org(&args)
                .await
                .map(|()| ExitCode::SUCCESS),
            Command::Token(args) => manage::tokens::run(&args).await.map(|()| ExitCode::SUCCESS),
            Command::Repo(args) => manage::repos::run(&args).await.map(|()| ExitCode::SUCCESS),
            Command::Audit(args) => manage::audit::run(&args).await.map(|()| ExitCode::SUCCESS),
            Command::TagRule(args) => manage::tag_rule::run(args)
                .await
                .map(|()| ExitCode::SUCCESS),
            Command::Usage(args) => manage::usage::run_usage(args)
                .await
                .map(|()| ExitCode::SUCCESS),
            Command::Quota(args) => manage::usage::run_quota(args)
                .await
                .map(|()| ExitCode::SUCCESS),
            Command::Gc(args) => manage::gc::run(&args).await.map(|()| ExitCode::SUCCESS),
            Command::Retention(args) => manage::retention::run(&args)
                .await
                .map(|()| ExitCode::SUCCESS),
            Command::Webhook(args) => manage::webhook::run(*args)
                .await
                .map(|()| ExitCode::SUCCESS),
            Command::Oidc(args) => manage::oidc::run(*args).await.map(|()| ExitCode::SUCCESS),
            Command::Trust(args) => manage::trust::run(*args).await.map(|()| ExitCode::SUCCESS),
            Command::Mirror(args) => manage::mirror::run(&args).await.map(|()| ExitCode::SUCCESS),
            Command::Vulndb(args) => manage::vulndb::run(&args).await.map(|()| ExitCode::SUCCESS),
            Command::Scan(args) => manage::scan::run(&args).await,
            Command::Replication(args) => manage::replication::run(*args)
                .await
                .map(|()| ExitCode::SUCCESS),
            Command::Migrate(args) => migrate::run(&args).await.map(|()| ExitCode::SUCCESS),
            Command::Tls(args) => tls::run(&args).map(|()| ExitCode::SUCCESS),
            Command::Backup(args) => backup::run(*args).await.map(|()| ExitCode::SUCCESS),
            Command::Restore(args) => backup::run_restore(&args).await.map(|()| ExitCode::SUCCESS),
            Command::Scrub(args) => scrub::run(&args).await.map(|()| ExitCode::SUCCESS),
            Command::Healthcheck(args) => {
                let empty = clap::ArgMatches::default();
                let given = matches.subcommand_matches("healthcheck").unwrap_or(&empty);
                healthcheck::run(*args, given)
                    .await
                    .map(|()| ExitCode::SUCCESS)
            }
            Command::Tools(cmd) => berth_tools::run(cmd).await.map_err(anyhow::Error::from),
            Command::Completions(_) | Command::Man(_) => Ok(ExitCode::SUCCESS),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("berth: {e:#}");
            ExitCode::FAILURE
        }
    }
}
