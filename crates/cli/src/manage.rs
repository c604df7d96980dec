//! What the management subcommands (`berth tag-rule`, `berth usage`,
//! `berth quota`, ...) share: how to reach the registry's `/api/v1`, and
//! how to print answers (an aligned table or the JSON as received).

use berth_client::api::ApiClient;

/// How to reach a berth registry's management API.
#[derive(Debug, Clone, clap::Args)]
pub struct ManageArgs {
    /// The registry: a URL or HOST[:PORT] (plain HTTP for loopback).
    #[arg(
        long,
        global = true,
        env = "BERTH_REGISTRY",
        default_value = "127.0.0.1:5000"
    )]
    pub registry: String,
    /// Bearer token for the management API.
    #[arg(long, global = true, env = "BERTH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Output: an aligned table or JSON.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// How answers are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Aligned columns.
    Table,
    /// The API's JSON, pretty-printed.
    Json,
}

impl ManageArgs {
    /// The API client.
    pub fn api(&self) -> anyhow::Result<ApiClient> {
        Ok(ApiClient::new(&self.registry, self.token.clone())?)
    }

    /// Prints `json` as is, or the table `render` makes of it.
    pub fn print(&self, json: &serde_json::Value, render: impl FnOnce() -> String) {
        let text = match self.output {
            Output::Json => {
                serde_json::to_string_pretty(json).unwrap_or_else(|_| json.to_string()) + "\n"
            }
            Output::Table => render(),
        };
        print!("{text}");
    }
}

/// Aligned columns under a header line.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.zip(&widths).enumerate() {
            if i + 1 == widths.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.trim_end().to_owned() + "\n"
    };
    let mut out = line(&mut headers.iter().copied());
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

/// A JSON field as display text (`-` when absent or null).
pub fn cell(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "-".to_owned(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A Unix-millisecond time as RFC 3339 UTC (`-` for null).
pub fn time(v: &serde_json::Value) -> String {
    v.as_i64().map_or_else(
        || "-".to_owned(),
        |ms| berth_tools::time::Timestamp(ms.div_euclid(1000)).to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting() {
        assert_eq!(time(&serde_json::json!(0)), "1970-01-01T00:00:00Z");
        assert_eq!(
            time(&serde_json::json!(1_700_000_000_000i64)),
            "2023-11-14T22:13:20Z"
        );
        assert_eq!(time(&serde_json::Value::Null), "-");
        assert_eq!(
            table(&["a", "bb"], &[vec!["xyz".into(), "1".into()]]),
            "a    bb\nxyz  1\n"
        );
    }
}
