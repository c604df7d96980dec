//! `berth oidc policy add|list|remove`: trust policies for keyless push
//! from CI (OpenID Connect), through the management API (site admins; see
//! docs/ci-oidc.md).

use std::collections::BTreeMap;

use anyhow::anyhow;
use reqwest::Method;
use serde_json::{json, Value};

use super::{cell, segment, table, time, ManageArgs};

/// Keyless push from CI: which OpenID Connect tokens may be exchanged for
/// registry access.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Cmd,
    #[command(flatten)]
    manage: ManageArgs,
}

#[derive(Debug, clap::Subcommand)]
enum Cmd {
    /// Trust policies: an issuer, audience and claims mapped to repositories and scopes.
    Policy {
        #[command(subcommand)]
        command: PolicyCmd,
    },
}

#[derive(Debug, clap::Subcommand)]
enum PolicyCmd {
    /// Add a trust policy.
    Add {
        /// The policy's name (letters, digits, '-', '_', '.').
        name: String,
        /// The issuer, as tokens name it in `iss`.
        #[arg(long, default_value = "https://token.actions.githubusercontent.com")]
        issuer: String,
        /// The audience (`aud`) the CI job requests its token for.
        #[arg(long)]
        audience: String,
        /// A claim condition CLAIM=GLOB, repeatable; all must match (e.g.
        /// repository=acme/app, repository_owner_id=123, ref=refs/heads/main,
        /// environment=production, workflow_ref='acme/app/.github/workflows/release.yml@*').
        #[arg(long = "claim", value_name = "CLAIM=GLOB", required = true)]
        claims: Vec<String>,
        /// The repositories granted: a namespace (acme) or a glob (acme/app-*).
        #[arg(long)]
        repositories: String,
        /// The actions granted, comma-separated: pull, push, delete.
        #[arg(long, value_delimiter = ',', default_value = "push")]
        scopes: Vec<String>,
    },
    /// List the trust policies.
    List,
    /// Remove a trust policy (sessions it granted end within 15 minutes).
    Remove {
        /// The policy's name.
        name: String,
    },
}

fn conditions(claims: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    claims
        .iter()
        .map(|c| {
            c.split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .ok_or_else(|| anyhow!("--claim {c:?}: write CLAIM=GLOB, e.g. repository=acme/app"))
        })
        .collect()
}

fn policies(list: &[Value]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|p| {
            let claims: Vec<String> = p["claims"]
                .as_object()
                .map(|o| o.iter().map(|(k, v)| format!("{k}={}", cell(v))).collect())
                .unwrap_or_default();
            let scopes: Vec<String> = p["scopes"]
                .as_array()
                .map(|a| a.iter().map(cell).collect())
                .unwrap_or_default();
            vec![
                cell(&p["name"]),
                cell(&p["issuer"]),
                cell(&p["audience"]),
                claims.join(" "),
                cell(&p["repositories"]),
                scopes.join(","),
                time(p["created_at"].as_i64()),
            ]
        })
        .collect();
    table(
        &[
            "NAME",
            "ISSUER",
            "AUDIENCE",
            "CLAIMS",
            "REPOSITORIES",
            "SCOPES",
            "CREATED",
        ],
        &rows,
    )
}

/// Runs the subcommand.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let m = &args.manage;
    let api = m.api().await?;
    let Cmd::Policy { command } = args.command;
    match command {
        PolicyCmd::Add {
            name,
            issuer,
            audience,
            claims,
            repositories,
            scopes,
        } => {
            let body = json!({
                "name": name, "issuer": issuer, "audience": audience,
                "claims": conditions(&claims)?, "repositories": repositories, "scopes": scopes,
            });
            let added: Value = api.call(Method::POST, "/oidc/policies", &body).await?;
            m.print(&added, || policies(std::slice::from_ref(&added)));
        }
        PolicyCmd::List => {
            let all: Vec<Value> = api.get("/oidc/policies", &[]).await?;
            m.print(&json!(all), || policies(&all));
        }
        PolicyCmd::Remove { name } => {
            api.delete(&format!("/oidc/policies/{}", segment(&name)))
                .await?;
            eprintln!("trust policy {name} removed");
        }
    }
    Ok(())
}
