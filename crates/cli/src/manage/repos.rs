//! `berth repo`: repository and namespace settings.

use reqwest::Method;
use serde_json::{json, Value};

use super::{print_json, segment, Api, Format, ManageArgs};

/// Repository and namespace settings.
#[derive(Debug, Clone, clap::Args)]
pub struct RepoArgs {
    #[command(subcommand)]
    pub command: RepoCommand,
    #[command(flatten)]
    pub manage: ManageArgs,
}

/// `berth repo` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum RepoCommand {
    /// Show or set who may pull: `public` (anyone) or `private` (members); for a repository also `inherit` (follow its namespace).
    Visibility {
        /// A repository (`acme/web`), or a namespace with --namespace (`acme`).
        name: String,
        /// The new visibility; omit to show the current one.
        #[arg(value_parser = ["public", "private", "inherit"])]
        value: Option<String>,
        /// NAME is a namespace (user or organisation): set the default of all its repositories.
        #[arg(long)]
        namespace: bool,
    },
}

/// Runs `berth repo`.
pub async fn run(args: &RepoArgs) -> anyhow::Result<()> {
    let api = Api::new(&args.manage).await?;
    match &args.command {
        RepoCommand::Visibility {
            name,
            value,
            namespace,
        } => {
            let path = if *namespace {
                format!("/namespaces/{}/visibility", segment(name))
            } else {
                // Repository names keep their slashes in the path.
                let parts: Vec<String> = name.split('/').map(segment).collect();
                format!("/repositories/{}/visibility", parts.join("/"))
            };
            anyhow::ensure!(
                !(*namespace && value.as_deref() == Some("inherit")),
                "a namespace is public or private; inherit applies to repositories"
            );
            let answer: Value = match value {
                Some(v) => {
                    api.call(Method::PUT, &path, &json!({ "visibility": v }))
                        .await?
                }
                None => api.get(&path, &[]).await?,
            };
            if api.format != Format::Table {
                return print_json(&answer);
            }
            match answer["source"].as_str() {
                Some(source) => println!(
                    "{name}: {} ({source})",
                    answer["visibility"].as_str().unwrap_or("?")
                ),
                None => println!("{name}: {}", answer["visibility"].as_str().unwrap_or("?")),
            }
        }
    }
    Ok(())
}
