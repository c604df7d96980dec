//! `berth replication add|list|remove|run|history`: replication rules of a
//! running registry (push to or pull from another registry), through the
//! management API (`/api/v1/replication/rules`, site admins; see
//! docs/mirror.md).

use std::time::{Duration, Instant};

use anyhow::bail;
use reqwest::Method;
use serde_json::{json, Value};

use super::{cell, segment, table, time, ManageArgs};

/// Replication rules: copy images to another registry as they are pushed
/// (a backup or HA mirror), or from one, on a schedule or on demand.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Cmd,
    #[command(flatten)]
    manage: ManageArgs,
}

#[derive(Debug, clap::Subcommand)]
enum Cmd {
    /// Make a rule.
    Add {
        /// Its name (lowercase letters, digits, . _ -).
        name: String,
        /// push: copy from this registry to URL; pull: from URL to this
        /// registry.
        #[arg(long, value_parser = ["push", "pull"])]
        direction: String,
        /// The other registry's root URL (`https://backup.example.com`).
        #[arg(long)]
        url: String,
        /// The user name at the other registry.
        #[arg(long)]
        remote_user: Option<String>,
        /// Its password or token (stored; never shown again).
        #[arg(long, env = "BERTH_REPLICATION_PASSWORD", hide_env_values = true)]
        remote_password: Option<String>,
        /// Repositories copied: a glob (`acme/*`, `**`) or a namespace
        /// (`acme`: everything below it).
        #[arg(long, default_value = "**")]
        repositories: String,
        /// Tags copied: a glob (`v*`).
        #[arg(long, default_value = "*")]
        tags: String,
        /// A push rule copies each matching push as it happens unless this
        /// is given (then only its schedule and runs on demand copy).
        #[arg(long)]
        no_on_push: bool,
        /// A 5-field cron schedule (UTC) of full passes (`0 * * * *`).
        #[arg(long)]
        schedule: Option<String>,
        /// A note for people.
        #[arg(long)]
        description: Option<String>,
        /// Replicate deletions too: a push rule deletes at URL the tags and
        /// manifests deleted here (only those its filters select); a pull
        /// rule deletes here the tags it made that are gone at URL.
        #[arg(long)]
        replicate_deletions: bool,
    },
    /// List the rules with their last run.
    List,
    /// Remove a rule (its history stays in the job runs).
    Remove {
        /// The rule's name.
        name: String,
    },
    /// Run a full pass of a rule now, and wait for its outcome.
    Run {
        /// The rule's name.
        name: String,
        /// Return once the run is asked for, without waiting.
        #[arg(long)]
        no_wait: bool,
        /// Longest wait for the outcome, in seconds.
        #[arg(long, default_value = "600")]
        timeout: u64,
    },
    /// A rule's runs, newest first.
    History {
        /// The rule's name.
        name: String,
        /// At most this many.
        #[arg(long, default_value = "20")]
        limit: i64,
    },
}

fn outcome(run: &Value) -> String {
    match run["ok"].as_bool() {
        None => "running".into(),
        Some(true) => "ok".into(),
        Some(false) => "failed".into(),
    }
}

fn rules(list: &[Value]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|r| {
            let mut when = Vec::new();
            if r["on_push"].as_bool() == Some(true) {
                when.push("on push".to_owned());
            }
            if let Some(s) = r["schedule"].as_str() {
                when.push(format!("cron {s}"));
            }
            if when.is_empty() {
                when.push("on demand".into());
            }
            let last = &r["last_run"];
            let state = if last.is_null() {
                "-".to_owned()
            } else {
                format!("{} {}", outcome(last), time(last["started_at"].as_i64()))
            };
            vec![
                cell(&r["name"]),
                cell(&r["direction"]),
                cell(&r["url"]),
                cell(&r["repositories"]),
                cell(&r["tags"]),
                when.join(", "),
                state,
                cell(&r["failures"]),
                cell(&r["last_error"]),
            ]
        })
        .collect();
    table(
        &[
            "NAME",
            "DIRECTION",
            "URL",
            "REPOSITORIES",
            "TAGS",
            "WHEN",
            "LAST RUN",
            "FAILURES",
            "LAST ERROR",
        ],
        &rows,
    )
}

fn runs(list: &[Value]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|r| {
            let s = &r["summary"];
            vec![
                cell(&r["id"]),
                time(r["started_at"].as_i64()),
                cell(&s["trigger"]),
                outcome(r),
                cell(&s["copied"]),
                cell(&s["up_to_date"]),
                cell(&s["failed"]),
                cell(&s["error"]),
            ]
        })
        .collect();
    table(
        &[
            "RUN",
            "STARTED",
            "TRIGGER",
            "OUTCOME",
            "COPIED",
            "UP TO DATE",
            "FAILED",
            "ERROR",
        ],
        &rows,
    )
}

/// Runs `berth replication`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let m = &args.manage;
    let api = m.api().await?;
    match args.command {
        Cmd::Add {
            name,
            direction,
            url,
            remote_user,
            remote_password,
            repositories,
            tags,
            no_on_push,
            schedule,
            description,
            replicate_deletions,
        } => {
            let mut body = json!({
                "name": name, "direction": direction, "url": url,
                "repositories": repositories, "tags": tags,
                "replicate_deletions": replicate_deletions,
            });
            if direction == "push" {
                body["on_push"] = json!(!no_on_push);
            }
            for (k, v) in [
                ("username", remote_user),
                ("password", remote_password),
                ("schedule", schedule),
                ("description", description),
            ] {
                if let Some(v) = v {
                    body[k] = json!(v);
                }
            }
            let created: Value = api.call(Method::POST, "/replication/rules", &body).await?;
            m.print(&created, || rules(std::slice::from_ref(&created)));
        }
        Cmd::List => {
            let out: Value = api.get("/replication/rules", &[]).await?;
            let list = out["rules"].as_array().cloned().unwrap_or_default();
            m.print(&out, || {
                if list.is_empty() {
                    "no replication rules (berth replication add)\n".to_owned()
                } else {
                    rules(&list)
                }
            });
        }
        Cmd::Remove { name } => {
            let out = api
                .delete(&format!("/replication/rules/{}", segment(&name)))
                .await?;
            m.print(&out, || rules(std::slice::from_ref(&out["removed"])));
        }
        Cmd::History { name, limit } => {
            let out: Value = api
                .get(
                    &format!("/replication/rules/{}/history", segment(&name)),
                    &[("limit", limit.to_string())],
                )
                .await?;
            let list = out["runs"].as_array().cloned().unwrap_or_default();
            m.print(&out, || runs(&list));
        }
        Cmd::Run {
            name,
            no_wait,
            timeout,
        } => {
            let path = format!("/replication/rules/{}", segment(&name));
            let asked: Value = api
                .call(Method::POST, &format!("{path}/run"), &json!({}))
                .await?;
            if no_wait {
                m.print(&asked, || {
                    format!(
                        "asked for a run of {name}; `berth replication history {name}` shows it\n"
                    )
                });
                return Ok(());
            }
            let since = asked["run_requested_at"].as_i64().unwrap_or(0);
            let deadline = Instant::now() + Duration::from_secs(timeout);
            let run = loop {
                let out: Value = api
                    .get(&format!("{path}/history"), &[("limit", "5".to_owned())])
                    .await?;
                let done = out["runs"].as_array().and_then(|list| {
                    list.iter()
                        .find(|r| {
                            r["started_at"].as_i64().unwrap_or(0) >= since
                                && r["finished_at"].is_i64()
                                && r["summary"]["trigger"]
                                    .as_str()
                                    .is_some_and(|t| t.contains("on-demand"))
                        })
                        .cloned()
                });
                if let Some(run) = done {
                    break run;
                }
                if Instant::now() >= deadline {
                    bail!(
                        "the run of {name} did not finish within {timeout} s; \
                         `berth replication history {name}` shows it when it does"
                    );
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            };
            m.print(&run, || runs(std::slice::from_ref(&run)));
            if run["ok"].as_bool() != Some(true) {
                bail!(
                    "replication run of {name} failed: {}",
                    cell(&run["summary"]["error"])
                );
            }
        }
    }
    Ok(())
}
