//! `berth tag-rule add|list|remove`: protected and immutable tags of a
//! namespace, through the management API.

use anyhow::bail;
use reqwest::Method;
use serde_json::{json, Value};

use super::{cell, segment as encode, table, time, ManageArgs};

/// Manage protected and immutable tag rules of a namespace.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Cmd,
    #[command(flatten)]
    manage: ManageArgs,
}

#[derive(Debug, clap::Subcommand)]
enum Cmd {
    /// Add a rule: tags matching PATTERN in NAMESPACE (or --scope) become
    /// protected or immutable.
    Add {
        /// Namespace (first path component of repository names).
        namespace: String,
        /// Tag glob (`*` and `?`), e.g. `v*`, `latest`.
        pattern: String,
        /// protected (moved or deleted only by namespace admins) or
        /// immutable (never moved once pushed).
        #[arg(long, value_parser = ["protected", "immutable"])]
        kind: String,
        /// Repositories covered: the namespace (default) or a glob below
        /// it such as `acme/web-*`.
        #[arg(long)]
        scope: Option<String>,
    },
    /// List the rules of a namespace.
    List {
        /// Namespace.
        namespace: String,
    },
    /// Remove rules: by --id, or every rule with this PATTERN (and --kind,
    /// --scope if given).
    Remove {
        /// Namespace.
        namespace: String,
        /// Tag glob of the rules to remove.
        #[arg(required_unless_present = "id")]
        pattern: Option<String>,
        /// The rule's id (from `list`).
        #[arg(long, conflicts_with = "pattern")]
        id: Option<i64>,
        /// Only rules of this kind.
        #[arg(long, value_parser = ["protected", "immutable"])]
        kind: Option<String>,
        /// Only rules with this scope (default: the namespace).
        #[arg(long)]
        scope: Option<String>,
    },
}

fn rows(rules: &[Value]) -> String {
    let rows: Vec<Vec<String>> = rules
        .iter()
        .map(|r| {
            vec![
                cell(&r["id"]),
                cell(&r["kind"]),
                cell(&r["scope"]),
                cell(&r["pattern"]),
                time(r["created_at"].as_i64()),
                cell(&r["created_by"]),
            ]
        })
        .collect();
    table(&["ID", "KIND", "SCOPE", "PATTERN", "CREATED", "BY"], &rows)
}

/// Runs the subcommand.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let m = &args.manage;
    let api = m.api().await?;
    match args.command {
        Cmd::Add {
            namespace,
            pattern,
            kind,
            scope,
        } => {
            let mut body = json!({ "pattern": pattern, "kind": kind });
            if let Some(s) = scope {
                body["scope"] = Value::String(s);
            }
            let path = format!("/namespaces/{}/tag-rules", encode(&namespace));
            let rule: Value = api.call(Method::POST, &path, &body).await?;
            m.print(&rule, || rows(std::slice::from_ref(&rule)));
        }
        Cmd::List { namespace } => {
            let path = format!("/namespaces/{}/tag-rules", encode(&namespace));
            let out: Value = api.get(&path, &[]).await?;
            let list = out["rules"].as_array().cloned().unwrap_or_default();
            m.print(&out, || rows(&list));
        }
        Cmd::Remove {
            namespace,
            pattern,
            id,
            kind,
            scope,
        } => {
            let base = format!("/namespaces/{}/tag-rules", encode(&namespace));
            let path = match (id, pattern) {
                (Some(id), _) => format!("{base}/{id}"),
                (None, Some(p)) => {
                    let mut q = format!("{base}?pattern={}", encode(&p));
                    if let Some(k) = kind {
                        q.push_str(&format!("&kind={}", encode(&k)));
                    }
                    if let Some(s) = scope {
                        q.push_str(&format!("&scope={}", encode(&s)));
                    }
                    q
                }
                (None, None) => bail!("give a PATTERN or --id"),
            };
            let out = api.delete(&path).await?;
            let list = out["removed"].as_array().cloned().unwrap_or_default();
            m.print(&out, || rows(&list));
        }
    }
    Ok(())
}
