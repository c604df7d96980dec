//! `berth mirror status`: the pull-through mirror's upstreams, their
//! limits and what they last said about their own rate limits, through
//! the management API (`GET /api/v1/mirror/upstreams`, site admins).

use serde_json::Value;

use super::{cell, table, Api, ManageArgs};

/// The pull-through mirror of a running registry.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Cmd,
    #[command(flatten)]
    manage: ManageArgs,
}

#[derive(Debug, clap::Subcommand)]
enum Cmd {
    /// The upstreams: URL, hosts, limits, the last `RateLimit-*` they sent,
    /// a `Retry-After` in force, the last failure.
    Status,
}

/// Runs `berth mirror`.
pub async fn run(args: &Args) -> anyhow::Result<()> {
    let api = Api::new(&args.manage).await?;
    match args.command {
        Cmd::Status => {
            let v: Value = api.get("/mirror/upstreams", &[]).await?;
            args.manage.print(&v, || render(&v));
        }
    }
    Ok(())
}

fn render(v: &Value) -> String {
    let empty = Vec::new();
    let ups = v["upstreams"].as_array().unwrap_or(&empty);
    if ups.is_empty() {
        return "no mirror upstreams are configured (mirror_upstreams)\n".to_owned();
    }
    let rows: Vec<Vec<String>> = ups
        .iter()
        .map(|u| {
            let hosts: Vec<String> = u["hosts"]
                .as_array()
                .map(|h| h.iter().map(cell).collect())
                .unwrap_or_default();
            let mut name = cell(&u["name"]);
            if u["docker_hub_default"].as_bool() == Some(true) {
                name.push_str(" (hostless default)");
            }
            vec![
                name,
                cell(&u["url"]),
                if hosts.is_empty() {
                    "-".into()
                } else {
                    hosts.join(",")
                },
                format!("{}s", cell(&u["tag_ttl_secs"])),
                cell(&u["requests"]),
                format!(
                    "{} / {}",
                    cell(&u["ratelimit_remaining"]),
                    cell(&u["ratelimit_limit"])
                ),
                cell(&u["retry_after_until"]),
                cell(&u["last_error"]),
            ]
        })
        .collect();
    format!(
        "pull access: {}\n{}",
        cell(&v["pull_access"]),
        table(
            &[
                "UPSTREAM",
                "URL",
                "HOSTS",
                "TAG TTL",
                "REQUESTS",
                "RATELIMIT REMAINING / LIMIT",
                "WAIT UNTIL",
                "LAST ERROR",
            ],
            &rows,
        )
    )
}
