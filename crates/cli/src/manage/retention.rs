//! `berth retention set|get|delete|plan|apply|runs`: a namespace's
//! retention policy, through the management API.

use std::io::Read;

use anyhow::Context;
use reqwest::Method;
use serde_json::Value;

use super::{cell, print_json, print_table, segment, time, Api, Format, ManageArgs};
use berth_tools::copy::progress::human;

/// Manage retention policies: which tags and images a namespace keeps.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Cmd,
    #[command(flatten)]
    manage: ManageArgs,
}

#[derive(Debug, clap::Subcommand)]
enum Cmd {
    /// Set the policy of NAMESPACE from a TOML file (`-`: standard input).
    Set {
        /// Namespace.
        namespace: String,
        /// The policy file (format: docs/retention.md).
        file: String,
    },
    /// Print the policy of NAMESPACE.
    Get {
        /// Namespace.
        namespace: String,
    },
    /// Remove the policy of NAMESPACE.
    Delete {
        /// Namespace.
        namespace: String,
    },
    /// Show what the policy would delete, and why (nothing is deleted).
    Plan {
        /// Namespace.
        namespace: String,
        /// Try this policy file instead of the stored one.
        #[arg(long)]
        file: Option<String>,
        #[command(flatten)]
        at: At,
    },
    /// Apply the stored policy now: delete what `plan` shows.
    Apply {
        /// Namespace.
        namespace: String,
        #[command(flatten)]
        at: At,
    },
    /// The last runs of the policy.
    Runs {
        /// Namespace.
        namespace: String,
    },
}

#[derive(Debug, clap::Args)]
struct At {
    /// Evaluate at another time: RFC 3339, Unix seconds, an age in the
    /// past (`24h`) or an offset into the future (`+30d`).
    #[arg(long)]
    now: Option<String>,
}

impl At {
    /// The `?now=` query suffix.
    fn query(&self) -> anyhow::Result<String> {
        let Some(s) = &self.now else {
            return Ok(String::new());
        };
        let now = berth_tools::time::Timestamp::now().0;
        let ms = match s.strip_prefix('+') {
            Some(ahead) => 2 * now * 1000 - super::audit::parse_time(ahead, now)?,
            None => super::audit::parse_time(s, now)?,
        };
        Ok(format!("?now={ms}"))
    }
}

fn read_policy(file: &str) -> anyhow::Result<String> {
    if file == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        return Ok(s);
    }
    std::fs::read_to_string(file).with_context(|| format!("reading {file}"))
}

/// `31d`, `5h`, `12m`, `40s`.
fn age(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        s if s >= 86_400 => format!("{}d", s / 86_400),
        s if s >= 3600 => format!("{}h", s / 3600),
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// `sha256:0123456789ab`.
fn short(digest: &str) -> String {
    match digest.split_once(':') {
        Some((a, h)) if h.len() > 12 => format!("{a}:{}", &h[..12]),
        _ => digest.to_owned(),
    }
}

/// Prints a plan (or an applied plan) as a table and a summary line.
fn print_plan(plan: &Value, applied: bool) {
    let items = plan["items"].as_array().cloned().unwrap_or_default();
    let skipped: Vec<&Value> = plan["skipped"].as_array().into_iter().flatten().collect();
    if items.is_empty() {
        println!("nothing to delete in {}", cell(&plan["namespace"]));
        return;
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|i| {
            let what = match i["tag"].as_str() {
                Some(t) => t.to_owned(),
                None => i["tags"]
                    .as_array()
                    .filter(|t| !t.is_empty())
                    .map(|t| t.iter().map(cell).collect::<Vec<_>>().join(","))
                    .unwrap_or_else(|| "-".into()),
            };
            vec![
                cell(&i["repository"]),
                cell(&i["kind"]),
                what,
                short(i["digest"].as_str().unwrap_or("")),
                cell(&i["rule"]),
                age(i["age_ms"].as_i64().unwrap_or(0)),
                time(i["last_pulled_at"].as_i64()),
                human(i["bytes"].as_u64().unwrap_or(0)),
                cell(&i["reason"]),
            ]
        })
        .collect();
    print_table(
        &[
            "REPOSITORY",
            "KIND",
            "TAG",
            "DIGEST",
            "RULE",
            "AGE",
            "LAST PULL",
            "BYTES",
            "REASON",
        ],
        &rows,
    );
    let verb = if applied {
        "deleted"
    } else {
        "would be deleted"
    };
    println!(
        "\n{} tags and {} manifests {verb}; {} no longer referenced (reclaimed by the next GC)",
        plan["tags"],
        plan["manifests"],
        human(plan["bytes"].as_u64().unwrap_or(0)),
    );
    for s in &skipped {
        println!(
            "skipped {} {} {}: {}",
            cell(&s["kind"]),
            cell(&s["repository"]),
            s["tag"]
                .as_str()
                .unwrap_or(&short(s["digest"].as_str().unwrap_or(""))),
            cell(&s["skipped"])
        );
    }
}

/// Runs `berth retention`.
pub async fn run(args: &Args) -> anyhow::Result<()> {
    let api = Api::new(&args.manage).await?;
    let path = |ns: &str| format!("/namespaces/{}/retention", segment(ns));
    match &args.command {
        Cmd::Set { namespace, file } => {
            let text = read_policy(file)?;
            let v: Value = api
                .call_text(Method::PUT, &path(namespace), text, "application/toml")
                .await?;
            if api.format == Format::Json {
                return print_json(&v);
            }
            println!("retention policy of {namespace} set: {} rules", v["rules"]);
            match v["schedule"].as_str() {
                Some(s) => println!(
                    "runs on schedule {s:?} (UTC), next at {}",
                    time(v["next_run"].as_i64())
                ),
                None => println!("no schedule: runs with `berth retention apply {namespace}`"),
            }
        }
        Cmd::Get { namespace } => {
            let v: Value = api.get(&path(namespace), &[]).await?;
            if api.format == Format::Json {
                return print_json(&v);
            }
            print!("{}", v["policy"].as_str().unwrap_or_default());
            eprintln!(
                "# set {} by {}; next run {}",
                time(v["updated_at"].as_i64()),
                cell(&v["updated_by"]),
                time(v["next_run"].as_i64())
            );
        }
        Cmd::Delete { namespace } => {
            api.delete(&path(namespace)).await?;
            println!("retention policy of {namespace} removed");
        }
        Cmd::Plan {
            namespace,
            file,
            at,
        } => {
            let url = format!("{}/plan{}", path(namespace), at.query()?);
            let plan: Value = match file {
                Some(f) => {
                    api.call_text(Method::POST, &url, read_policy(f)?, "application/toml")
                        .await?
                }
                None => api.get(&url, &[]).await?,
            };
            if api.format == Format::Json {
                return print_json(&plan);
            }
            print_plan(&plan, false);
        }
        Cmd::Apply { namespace, at } => {
            let url = format!("{}/apply{}", path(namespace), at.query()?);
            let applied: Value = api.call(Method::POST, &url, &Value::Null).await?;
            if api.format == Format::Json {
                return print_json(&applied);
            }
            print_plan(&applied, true);
        }
        Cmd::Runs { namespace } => {
            let v: Value = api.get(&format!("{}/runs", path(namespace)), &[]).await?;
            if api.format == Format::Json {
                return print_json(&v);
            }
            let rows: Vec<Vec<String>> = v["runs"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| {
                    let s = &r["summary"];
                    let status = match r["ok"].as_bool() {
                        Some(true) => "ok",
                        Some(false) => "failed",
                        None if r["finished_at"].is_null() => "running",
                        None => "-",
                    };
                    vec![
                        time(r["started_at"].as_i64()),
                        status.to_owned(),
                        cell(&s["tags"]),
                        cell(&s["manifests"]),
                        super::usage::bytes(&s["bytes"]),
                        cell(&s["skipped"]),
                        s["error"].as_str().unwrap_or_default().to_owned(),
                    ]
                })
                .collect();
            print_table(
                &[
                    "STARTED",
                    "STATUS",
                    "TAGS",
                    "MANIFESTS",
                    "FREED",
                    "SKIPPED",
                    "ERROR",
                ],
                &rows,
            );
        }
    }
    Ok(())
}
