//! `berth audit`: read or export the audit log.

use anyhow::Context;
use serde::Deserialize;

use super::{pairs, print_json, print_table, time, Api, Format, ManageArgs};

/// Read the audit log (pushes, tag moves, deletes, logins, tokens, permissions, policies).
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Only events by this account.
    #[arg(long)]
    pub actor: Option<String>,
    /// Only this action (`push`, `tag.move`, ...), or a family ending in `.` (`tag.`).
    #[arg(long)]
    pub action: Option<String>,
    /// Only this repository, or a namespace ending in `/` (`acme/`).
    #[arg(long)]
    pub repository: Option<String>,
    /// Only events at or after this time: RFC 3339, Unix seconds, or an age (`90m`, `24h`, `7d`).
    #[arg(long)]
    pub since: Option<String>,
    /// Only events before this time (same forms as --since).
    #[arg(long)]
    pub until: Option<String>,
    /// At most this many events per page (newest first unless --oldest-first).
    #[arg(long, default_value_t = 100)]
    pub limit: i64,
    /// Only events older than this id: the next page, as the previous page's footer says.
    #[arg(long, value_name = "ID")]
    pub before: Option<i64>,
    /// Only events newer than this id.
    #[arg(long, value_name = "ID")]
    pub after: Option<i64>,
    /// Oldest events first (then page on with --after).
    #[arg(long)]
    pub oldest_first: bool,
    /// Export every matching event as JSON lines on stdout.
    #[arg(long)]
    pub jsonl: bool,
    #[command(flatten)]
    pub manage: ManageArgs,
}

#[derive(Debug, Deserialize, serde::Serialize)]
struct Page {
    events: Vec<serde_json::Value>,
    next: Option<i64>,
}

/// Parses `--since`/`--until` into Unix milliseconds.
pub fn parse_time(s: &str, now_secs: i64) -> anyhow::Result<i64> {
    let s = s.trim();
    let unit = s.chars().last().unwrap_or(' ');
    let factor = match unit {
        's' => Some(1),
        'm' => Some(60),
        'h' => Some(3600),
        'd' => Some(86_400),
        'w' => Some(7 * 86_400),
        _ => None,
    };
    if let (Some(f), Ok(n)) = (factor, s[..s.len() - 1].parse::<i64>()) {
        return Ok((now_secs - n * f) * 1000);
    }
    let t = berth_tools::time::Timestamp::parse(s)
        .with_context(|| format!("{s:?}: expected RFC 3339, Unix seconds, or an age like 24h"))?;
    Ok(t.0 * 1000)
}

/// Runs `berth audit`.
pub async fn run(args: &Args) -> anyhow::Result<()> {
    let api = Api::new(&args.manage).await?;
    let now = berth_tools::time::Timestamp::now().0;
    let mut query: Vec<(&str, String)> = Vec::new();
    for (k, v) in [
        ("actor", &args.actor),
        ("action", &args.action),
        ("repository", &args.repository),
    ] {
        if let Some(v) = v {
            query.push((k, v.clone()));
        }
    }
    for (k, v) in [("since", &args.since), ("until", &args.until)] {
        if let Some(v) = v {
            query.push((k, parse_time(v, now)?.to_string()));
        }
    }
    for (k, v) in [("before", args.before), ("after", args.after)] {
        if let Some(v) = v {
            query.push((k, v.to_string()));
        }
    }
    if args.jsonl {
        query.push(("format", "jsonl".into()));
        print!("{}", api.get_text("/audit", &query).await?);
        return Ok(());
    }
    query.push(("limit", args.limit.to_string()));
    query.push((
        "order",
        if args.oldest_first {
            "oldest"
        } else {
            "newest"
        }
        .into(),
    ));
    let page: Page = api.get("/audit", &query).await?;
    if api.format == Format::Json {
        return print_json(&page);
    }
    let rows: Vec<Vec<String>> = page
        .events
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or("-").to_owned();
            let detail = pairs(&e["detail"]);
            vec![
                time(e["at"].as_i64()),
                s("actor"),
                s("client_ip"),
                s("action"),
                s("repository"),
                s("tag"),
                short(&s("digest")),
                detail,
            ]
        })
        .collect();
    print_table(
        &[
            "TIME",
            "ACTOR",
            "IP",
            "ACTION",
            "REPOSITORY",
            "TAG",
            "DIGEST",
            "DETAIL",
        ],
        &rows,
    );
    if let Some(next) = page.next {
        let (flag, which) = if args.oldest_first {
            ("--after", "newer")
        } else {
            ("--before", "older")
        };
        eprintln!("(more {which} events: add {flag} {next}, or export every event with --jsonl)");
    }
    Ok(())
}

/// `sha256:0123456789ab` (algorithm plus 12 hex digits).
fn short(digest: &str) -> String {
    match digest.split_once(':') {
        Some((a, h)) if h.len() > 12 => format!("{a}:{}", &h[..12]),
        _ => digest.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_time;

    #[test]
    fn times() {
        assert_eq!(
            parse_time("24h", 100_000).unwrap(),
            (100_000 - 86_400) * 1000
        );
        assert_eq!(parse_time("90m", 10_000).unwrap(), (10_000 - 5400) * 1000);
        assert_eq!(parse_time("1700000000", 0).unwrap(), 1_700_000_000_000);
        assert_eq!(
            parse_time("2024-05-01T00:00:00Z", 0).unwrap(),
            1_714_521_600_000
        );
        assert!(parse_time("yesterday", 0).is_err());
    }
}
