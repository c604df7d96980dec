//! `berth mirror status|warm`: the pull-through mirror's upstreams, their
//! limits and what they last said about their own rate limits, and
//! pre-warming its cache, through the management API
//! (`/api/v1/mirror/upstreams`, `/api/v1/mirror/warm`, site admins).

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
    /// Fetch an image into the cache now, through the pull-through path,
    /// so that the first pull is served from it.
    Warm {
        /// The image, by its upstream host (`docker.io/library/postgres:16`)
        /// or by the mirror's namespace (`hub/library/postgres:16`).
        image: String,
        /// Only these platforms of a multi-platform image
        /// (`linux/amd64`; repeatable) [default: all].
        #[arg(long = "platform")]
        platforms: Vec<String>,
    },
}

/// Runs `berth mirror`.
pub async fn run(args: &Args) -> anyhow::Result<()> {
    let api = Api::new(&args.manage).await?;
    match &args.command {
        Cmd::Status => {
            let v: Value = api.get("/mirror/upstreams", &[]).await?;
            args.manage.print(&v, || render(&v));
        }
        Cmd::Warm { image, platforms } => {
            let v: Value = api
                .call(
                    reqwest::Method::POST,
                    "/mirror/warm",
                    &serde_json::json!({ "image": image, "platforms": platforms }),
                )
                .await?;
            args.manage.print(&v, || {
                format!(
                    "warmed {}:{} ({}){}: {} manifests, {} blobs fetched ({} bytes), {} already cached\n",
                    cell(&v["repository"]),
                    cell(&v["reference"]),
                    cell(&v["digest"]),
                    match v["platforms"].as_array() {
                        Some(p) if !p.is_empty() => format!(
                            " for {}",
                            p.iter().map(cell).collect::<Vec<_>>().join(", ")
                        ),
                        _ => String::new(),
                    },
                    cell(&v["manifests"]),
                    cell(&v["blobs_fetched"]),
                    cell(&v["bytes_fetched"]),
                    cell(&v["blobs_cached"]),
                )
            });
        }
    }
    Ok(())
}

/// `1.2 GiB / 50.0 GiB`, or `1.2 GiB / -` without a limit.
fn cached(bytes: &Value, max: &Value) -> String {
    format!(
        "{} / {}",
        super::usage::bytes(bytes),
        super::usage::bytes(max)
    )
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
                cached(&u["cached_bytes"], &u["cache_max_bytes"]),
                cell(&u["last_error"]),
            ]
        })
        .collect();
    format!(
        "pull access: {}\ncache: {} (mirrored content: no quota counts it)\n{}",
        cell(&v["pull_access"]),
        cached(&v["cache"]["cached_bytes"], &v["cache"]["max_bytes"]),
        table(
            &[
                "UPSTREAM",
                "URL",
                "HOSTS",
                "TAG TTL",
                "REQUESTS",
                "RATELIMIT REMAINING / LIMIT",
                "WAIT UNTIL",
                "CACHED / LIMIT",
                "LAST ERROR",
            ],
            &rows,
        )
    )
}
