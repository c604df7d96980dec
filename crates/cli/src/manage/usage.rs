//! `berth usage` and `berth quota`: storage per namespace and repository,
//! and namespace quotas, through the management API.

use reqwest::Method;
use serde_json::{json, Value};

use super::{cell, segment as encode, table, ManageArgs};
use crate::config::parse_size;

/// Show the storage a namespace (or one repository) uses.
#[derive(Debug, clap::Args)]
pub struct UsageArgs {
    /// A namespace (`acme`) or a repository (`acme/web`).
    target: String,
    #[command(flatten)]
    manage: ManageArgs,
}

/// Show or set namespace quotas.
#[derive(Debug, clap::Args)]
pub struct QuotaArgs {
    #[command(subcommand)]
    command: QuotaCmd,
    #[command(flatten)]
    manage: ManageArgs,
}

#[derive(Debug, clap::Subcommand)]
enum QuotaCmd {
    /// Set a namespace's quota: bytes or a size such as `10GiB`, `500MB`.
    Set {
        /// Namespace.
        namespace: String,
        /// The limit.
        limit: String,
    },
    /// Show a namespace's quota and its use.
    Get {
        /// Namespace.
        namespace: String,
    },
    /// Remove a namespace's quota.
    Remove {
        /// Namespace.
        namespace: String,
    },
}

/// Bytes in binary units (`1.5 GiB`), `-` when absent.
pub fn bytes(v: &Value) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let Some(n) = v.as_u64() else {
        return cell(v);
    };
    let (mut f, mut unit) = (n as f64, 0);
    while f >= 1024.0 && unit + 1 < UNITS.len() {
        f /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{f:.1} {}", UNITS[unit])
    }
}

fn repo_rows(repos: &[Value]) -> Vec<Vec<String>> {
    repos
        .iter()
        .map(|r| {
            vec![
                cell(&r["name"]),
                bytes(&r["total_bytes"]),
                bytes(&r["unique_bytes"]),
                bytes(&r["shared_bytes"]),
                cell(&r["blobs"]),
                cell(&r["manifests"]),
                bytes(&r["unreferenced_bytes"]),
            ]
        })
        .collect()
}

const REPO_HEADERS: [&str; 7] = [
    "REPOSITORY",
    "TOTAL",
    "UNIQUE",
    "SHARED",
    "BLOBS",
    "MANIFESTS",
    "AWAITING GC",
];

fn quota_line(q: &Value) -> String {
    format!(
        "quota {}: {} of {} used, {} free\n",
        cell(&q["namespace"]),
        bytes(&q["used_bytes"]),
        bytes(&q["limit_bytes"]),
        bytes(&q["available_bytes"])
    )
}

/// Runs `berth usage`.
pub async fn run_usage(args: UsageArgs) -> anyhow::Result<()> {
    let m = &args.manage;
    let api = m.api().await?;
    if args.target.contains('/') {
        let r: Value = api
            .get(&format!("/repositories/{}/usage", args.target), &[])
            .await?;
        m.print(&r, || {
            table(&REPO_HEADERS, &repo_rows(std::slice::from_ref(&r)))
        });
        return Ok(());
    }
    let u: Value = api
        .get(&format!("/namespaces/{}/usage", encode(&args.target)), &[])
        .await?;
    m.print(&u, || {
        let repos = u["repositories"].as_array().cloned().unwrap_or_default();
        let mut out = format!(
            "namespace {}: {} ({} in {} blobs, {} in {} manifests; shared content counted once)\n",
            cell(&u["namespace"]),
            bytes(&u["total_bytes"]),
            bytes(&u["blob_bytes"]),
            cell(&u["blobs"]),
            bytes(&u["manifest_bytes"]),
            cell(&u["manifests"]),
        );
        if u["unreferenced_bytes"].as_u64().is_some_and(|n| n > 0) {
            out.push_str(&format!(
                "{} of it no manifest uses (deleted images, unused uploads): it counts toward \
                 the quota until garbage collection removes it after the grace period\n",
                bytes(&u["unreferenced_bytes"])
            ));
        }
        if u["mirrored"].as_bool() == Some(true) {
            out.push_str(
                "mirrored content (the pull-through mirror's cache of this upstream): limited by \
                 the mirror's cache limits (`berth mirror status`), never by a quota\n",
            );
        }
        if !u["quota"].is_null() {
            out.push_str(&quota_line(&u["quota"]));
        }
        out.push('\n');
        out.push_str(&table(&REPO_HEADERS, &repo_rows(&repos)));
        out
    });
    Ok(())
}

/// Runs `berth quota`.
pub async fn run_quota(args: QuotaArgs) -> anyhow::Result<()> {
    let m = &args.manage;
    let api = m.api().await?;
    let path = |ns: &str| format!("/namespaces/{}/quota", encode(ns));
    match args.command {
        QuotaCmd::Set { namespace, limit } => {
            let limit_bytes = parse_size(&limit)
                .map_err(|e| anyhow::anyhow!("invalid quota {limit:?}: {e:#}"))?;
            let q: Value = api
                .call(
                    Method::PUT,
                    &path(&namespace),
                    &json!({ "limit_bytes": limit_bytes }),
                )
                .await?;
            m.print(&q, || quota_line(&q));
        }
        QuotaCmd::Get { namespace } => {
            let q: Value = api.get(&path(&namespace), &[]).await?;
            m.print(&q, || quota_line(&q));
        }
        QuotaCmd::Remove { namespace } => {
            api.delete(&path(&namespace)).await?;
            m.print(&json!({ "namespace": namespace, "quota": null }), || {
                format!("quota of {namespace} removed\n")
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn byte_units() {
        assert_eq!(super::bytes(&serde_json::json!(512)), "512 B");
        assert_eq!(super::bytes(&serde_json::json!(3u64 << 29)), "1.5 GiB");
        assert_eq!(super::bytes(&serde_json::Value::Null), "-");
    }
}
