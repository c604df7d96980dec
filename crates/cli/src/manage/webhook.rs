//! `berth webhook add|list|remove|enable|disable|test|deliveries|redeliver`:
//! webhooks of a namespace or of the site, through the management API
//! (see docs/webhooks.md).

use reqwest::Method;
use serde_json::{json, Value};

use super::{cell, segment as encode, table, time, ManageArgs};

/// Manage webhooks: events of a namespace (or of the whole registry) POSTed
/// to a URL.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Cmd,
    #[command(flatten)]
    manage: ManageArgs,
}

/// Whose webhooks: a namespace's, or the site's.
#[derive(Debug, Clone, clap::Args)]
#[group(required = true, multiple = false)]
struct Scope {
    /// The namespace whose events the webhook hears (its admins manage it).
    #[arg(long)]
    namespace: Option<String>,
    /// A site-wide webhook: every event (site admins only).
    #[arg(long)]
    site: bool,
}

impl Scope {
    fn path(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("/namespaces/{}/webhooks", encode(ns)),
            None => "/webhooks".to_owned(),
        }
    }
}

#[derive(Debug, clap::Subcommand)]
enum Cmd {
    /// Create a webhook; prints its signing secret, this once.
    Add {
        /// Where to POST events (`https://ci.example.com/hooks/berth`).
        url: String,
        #[command(flatten)]
        scope: Scope,
        /// Event kinds, comma-separated (manifest.pushed, tag.moved,
        /// tag.deleted, manifest.deleted, pulled, quota.warning,
        /// quota.exceeded, retention.finished, gc.finished, or all)
        /// [default: all but pulled].
        #[arg(long, value_delimiter = ',')]
        events: Option<Vec<String>>,
        /// Payload format: cloudevents, or distribution (the reference
        /// registry's notification envelope).
        #[arg(long, default_value = "cloudevents", value_parser = ["cloudevents", "distribution"])]
        payload: String,
        /// The signing secret (16 to 256 characters) [default: generated].
        #[arg(long, env = "BERTH_WEBHOOK_SECRET", hide_env_values = true)]
        secret: Option<String>,
        /// A note for people.
        #[arg(long)]
        description: Option<String>,
    },
    /// List the webhooks of a namespace or of the site.
    List {
        #[command(flatten)]
        scope: Scope,
    },
    /// Remove a webhook and its delivery log.
    Remove {
        /// The webhook's id.
        id: i64,
    },
    /// Enable a webhook (its pending deliveries resume).
    Enable {
        /// The webhook's id.
        id: i64,
    },
    /// Disable a webhook (nothing is delivered or queued for it meanwhile).
    Disable {
        /// The webhook's id.
        id: i64,
    },
    /// Send a `ping` event to a webhook now.
    Test {
        /// The webhook's id.
        id: i64,
    },
    /// The delivery log of a webhook, newest first.
    Deliveries {
        /// The webhook's id.
        id: i64,
        /// At most this many.
        #[arg(long, default_value = "50")]
        limit: i64,
    },
    /// Queue a delivery's event once more.
    Redeliver {
        /// The webhook's id.
        id: i64,
        /// The delivery's id (from `deliveries`).
        delivery: i64,
    },
}

fn hooks(list: &[Value]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|w| {
            let events: Vec<String> = w["events"]
                .as_array()
                .map(|a| a.iter().map(cell).collect())
                .unwrap_or_default();
            let state = match w["disabled_at"].as_i64() {
                Some(_) => format!("disabled ({})", cell(&w["disabled_reason"])),
                None => "enabled".to_owned(),
            };
            vec![
                cell(&w["id"]),
                w["namespace"].as_str().unwrap_or("(site)").to_owned(),
                cell(&w["url"]),
                cell(&w["format"]),
                events.join(","),
                state,
            ]
        })
        .collect();
    table(
        &["ID", "NAMESPACE", "URL", "FORMAT", "EVENTS", "STATE"],
        &rows,
    )
}

fn deliveries(list: &[Value]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|d| {
            vec![
                cell(&d["id"]),
                cell(&d["event"]),
                cell(&d["repository"]),
                cell(&d["state"]),
                cell(&d["attempts"]),
                cell(&d["status_code"]),
                d["latency_ms"]
                    .as_i64()
                    .map_or("-".into(), |l| format!("{l}ms")),
                time(d["last_attempt_at"].as_i64()),
                cell(&d["error"]),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "EVENT",
            "REPOSITORY",
            "STATE",
            "ATTEMPTS",
            "STATUS",
            "LATENCY",
            "LAST",
            "ERROR",
        ],
        &rows,
    )
}

/// Runs the subcommand.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let m = &args.manage;
    let api = m.api().await?;
    match args.command {
        Cmd::Add {
            url,
            scope,
            events,
            payload,
            secret,
            description,
        } => {
            let mut body = json!({ "url": url, "format": payload });
            if let Some(e) = events {
                body["events"] = json!(e);
            }
            if let Some(s) = secret {
                body["secret"] = json!(s);
            }
            if let Some(d) = description {
                body["description"] = json!(d);
            }
            let created: Value = api.call(Method::POST, &scope.path(), &body).await?;
            m.print(&created, || {
                format!(
                    "{}\nsigning secret (shown only now; receivers verify the Berth-Signature \
                     header with it):\n{}\n",
                    hooks(std::slice::from_ref(&created)).trim_end(),
                    cell(&created["secret"])
                )
            });
        }
        Cmd::List { scope } => {
            let out: Value = api.get(&scope.path(), &[]).await?;
            let list = out["webhooks"].as_array().cloned().unwrap_or_default();
            m.print(&out, || hooks(&list));
        }
        Cmd::Remove { id } => {
            let out = api.delete(&format!("/webhooks/{id}")).await?;
            m.print(&out, || hooks(std::slice::from_ref(&out["removed"])));
        }
        Cmd::Enable { id } => {
            let out: Value = api
                .call(
                    Method::PATCH,
                    &format!("/webhooks/{id}"),
                    &json!({ "enabled": true }),
                )
                .await?;
            m.print(&out, || hooks(std::slice::from_ref(&out)));
        }
        Cmd::Disable { id } => {
            let out: Value = api
                .call(
                    Method::PATCH,
                    &format!("/webhooks/{id}"),
                    &json!({ "enabled": false }),
                )
                .await?;
            m.print(&out, || hooks(std::slice::from_ref(&out)));
        }
        Cmd::Test { id } => {
            let out: Value = api
                .call(Method::POST, &format!("/webhooks/{id}/test"), &json!({}))
                .await?;
            m.print(&out, || {
                format!(
                    "queued ping delivery {} ({}); see `berth webhook deliveries {id}`\n",
                    cell(&out["id"]),
                    cell(&out["uid"])
                )
            });
        }
        Cmd::Deliveries { id, limit } => {
            let out: Value = api
                .get(
                    &format!("/webhooks/{id}/deliveries"),
                    &[("limit", limit.to_string())],
                )
                .await?;
            let list = out["deliveries"].as_array().cloned().unwrap_or_default();
            m.print(&out, || deliveries(&list));
        }
        Cmd::Redeliver { id, delivery } => {
            let path = format!("/webhooks/{id}/deliveries/{delivery}/redeliver");
            let out: Value = api.call(Method::POST, &path, &json!({})).await?;
            m.print(&out, || {
                format!(
                    "queued delivery {} of event {}\n",
                    cell(&out["id"]),
                    cell(&out["event"])
                )
            });
        }
    }
    Ok(())
}
