//! The scrub's repair source over the OCI client (`scrub_repair_from`),
//! and `berth scrub`, which runs the scrub of a running registry through
//! its management API.

use async_trait::async_trait;
use berth_client::{Client, ClientOptions};
use berth_oci::{Digest, RepositoryName};
use berth_registry::scrub::RepairSource;
use berth_registry::ByteStream;
use futures_util::StreamExt as _;
use reqwest::Method;
use serde::{Deserialize, Serialize};

use crate::manage::{print_json, print_table, Api, Format, ManageArgs};

/// Another registry the scrub fetches blobs from, anonymously.
pub struct Upstream {
    client: Client,
    url: String,
    host: String,
}

impl Upstream {
    /// A source at `url` (`http(s)://HOST[:PORT]`).
    pub fn new(url: &str) -> anyhow::Result<Upstream> {
        let (scheme, rest) = url
            .split_once("://")
            .filter(|(s, _)| *s == "http" || *s == "https")
            .ok_or_else(|| {
                anyhow::anyhow!("scrub_repair_from must be an http:// or https:// URL, not {url:?}")
            })?;
        let host = rest.trim_end_matches('/').to_owned();
        if host.is_empty() || host.contains('/') {
            anyhow::bail!(
                "scrub_repair_from must name a registry (http(s)://HOST[:PORT]), not {url:?}"
            );
        }
        let mut options = ClientOptions::default();
        if scheme == "http" {
            options.plain_http.push(host.clone());
        }
        Ok(Upstream {
            client: Client::new(options)?,
            url: url.trim_end_matches('/').to_owned(),
            host,
        })
    }
}

#[async_trait]
impl RepairSource for Upstream {
    fn describe(&self) -> String {
        self.url.clone()
    }

    async fn fetch(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<ByteStream>, String> {
        let repo = self.client.repository(&self.host, repository.as_str());
        match repo.get_blob(digest).await {
            Ok(blob) => Ok(Some(
                blob.stream
                    .map(|chunk| chunk.map_err(std::io::Error::other))
                    .boxed(),
            )),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Check every blob's digest and size now (resuming a pass cut short).
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Stop after this many blobs (the next run resumes there).
    #[arg(long, value_name = "N")]
    pub max_blobs: Option<u64>,
    #[command(flatten)]
    pub manage: ManageArgs,
}

#[derive(Debug, Deserialize, Serialize)]
struct User {
    repository: String,
    manifest: String,
    tags: Vec<String>,
}

#[derive(Debug, Deserialize, Serialize)]
struct Finding {
    digest: String,
    size: u64,
    problem: String,
    detail: String,
    set_aside: Option<String>,
    repaired_from: Option<String>,
    repair_error: Option<String>,
    breaks: Vec<User>,
}

#[derive(Debug, Deserialize, Serialize)]
struct Report {
    resumed_after: Option<String>,
    checked: u64,
    bytes: u64,
    complete: bool,
    findings: Vec<Finding>,
    missing: u64,
    corrupt: u64,
    repaired: u64,
    rate: u64,
    #[serde(default)]
    bytes_busy: u64,
}

/// Runs `berth scrub`.
pub async fn run(args: &Args) -> anyhow::Result<()> {
    let api = Api::new(&args.manage).await?;
    let body = serde_json::json!({ "max_blobs": args.max_blobs });
    let report: Report = api.call(Method::POST, "/scrub", &body).await?;
    if api.format == Format::Json {
        return print_json(&report);
    }
    let mut rows = Vec::new();
    for f in &report.findings {
        let breaks: Vec<String> = f
            .breaks
            .iter()
            .map(|u| {
                if u.tags.is_empty() {
                    format!("{}@{}", u.repository, u.manifest)
                } else {
                    u.tags
                        .iter()
                        .map(|t| format!("{}:{t}", u.repository))
                        .collect::<Vec<_>>()
                        .join(" ")
                }
            })
            .collect();
        let outcome = match (&f.repaired_from, &f.repair_error) {
            (Some(from), _) => format!("repaired from {from}"),
            (None, Some(e)) => format!("NOT repaired: {e}"),
            (None, None) => "NOT repaired (no scrub_repair_from)".to_owned(),
        };
        rows.push(vec![
            f.problem.clone(),
            f.digest.clone(),
            if breaks.is_empty() {
                "-".to_owned()
            } else {
                breaks.join(" ")
            },
            outcome,
        ]);
    }
    if !rows.is_empty() {
        print_table(&["PROBLEM", "DIGEST", "BREAKS", "OUTCOME"], &rows);
        println!();
    }
    println!(
        "{} blobs checked ({} bytes){}; {} missing, {} corrupt, {} repaired{}",
        report.checked,
        report.bytes,
        report
            .resumed_after
            .as_ref()
            .map(|d| format!(", resumed after {d}"))
            .unwrap_or_default(),
        report.missing,
        report.corrupt,
        report.repaired,
        if report.complete {
            "; the pass is complete"
        } else {
            "; the pass continues at the next run"
        }
    );
    Ok(())
}
