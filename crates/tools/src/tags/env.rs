//! Reading the build context from CI environment variables.
//!
//! GitHub Actions: `GITHUB_EVENT_NAME`, `GITHUB_REF`, `GITHUB_SHA`,
//! `GITHUB_SERVER_URL`/`GITHUB_REPOSITORY` and the event payload at
//! `GITHUB_EVENT_PATH` (default branch, pull request number, licence).
//! GitLab CI: `CI_PIPELINE_SOURCE`, `CI_COMMIT_TAG`, `CI_COMMIT_BRANCH`,
//! `CI_MERGE_REQUEST_IID`, `CI_COMMIT_SHA`, `CI_DEFAULT_BRANCH`,
//! `CI_PROJECT_URL`, `CI_PROJECT_NAME`, `CI_COMMIT_TIMESTAMP`.
//! `SOURCE_DATE_EPOCH`, when set, fixes the time for reproducible builds.
//! Lookups go through a closure so tests pass a table instead of the process
//! environment.

use super::{BuildContext, Event, GitRef};
use crate::time::Timestamp;

/// Which CI system to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Ci {
    /// Detect from `GITHUB_ACTIONS` / `GITLAB_CI`.
    Auto,
    /// GitHub Actions.
    Github,
    /// GitLab CI.
    Gitlab,
    /// Ignore the environment (flags only).
    None,
}

/// Builds a context from environment lookups. `event_payload` is the parsed
/// GitHub event JSON, if any.
pub fn context(
    ci: Ci,
    get: &dyn Fn(&str) -> Option<String>,
    event_payload: Option<&serde_json::Value>,
    now: Timestamp,
) -> BuildContext {
    let get = |k: &str| get(k).filter(|v| !v.is_empty());
    let ci = match ci {
        Ci::Auto if get("GITHUB_ACTIONS").is_some() => Ci::Github,
        Ci::Auto if get("GITLAB_CI").is_some() => Ci::Gitlab,
        Ci::Auto => Ci::None,
        other => other,
    };
    let epoch = get("SOURCE_DATE_EPOCH").and_then(|s| Timestamp::parse(&s).ok());
    let mut ctx = BuildContext {
        event: None,
        git_ref: None,
        sha: None,
        default_branch: None,
        time: epoch.unwrap_or(now),
        source: None,
        title: None,
        licenses: None,
    };
    match ci {
        Ci::Github => github(&mut ctx, &get, event_payload),
        Ci::Gitlab => {
            gitlab(&mut ctx, &get);
            if epoch.is_none() {
                if let Some(t) = get("CI_COMMIT_TIMESTAMP").and_then(|s| Timestamp::parse(&s).ok())
                {
                    ctx.time = t;
                }
            }
        }
        Ci::Auto | Ci::None => {}
    }
    ctx
}

fn github(
    ctx: &mut BuildContext,
    get: &dyn Fn(&str) -> Option<String>,
    payload: Option<&serde_json::Value>,
) {
    let at = |path: &[&str]| -> Option<&serde_json::Value> {
        path.iter().try_fold(payload?, |v, k| v.get(k))
    };
    ctx.event = get("GITHUB_EVENT_NAME").and_then(|e| match e.as_str() {
        "push" => None, // branch or tag: derived from the ref
        "pull_request" | "pull_request_target" => Some(Event::PullRequest),
        "schedule" => Some(Event::Schedule),
        "workflow_dispatch" | "repository_dispatch" => Some(Event::Manual),
        "release" => Some(Event::Tag),
        _ => None,
    });
    ctx.git_ref = get("GITHUB_REF").and_then(|r| GitRef::from_full(&r));
    if ctx.event == Some(Event::PullRequest) {
        if let Some(n) = at(&["pull_request", "number"]).and_then(|v| v.as_u64()) {
            ctx.git_ref = Some(GitRef::PullRequest(n));
        }
    }
    ctx.sha = get("GITHUB_SHA");
    ctx.default_branch = at(&["repository", "default_branch"])
        .and_then(|v| v.as_str())
        .map(str::to_owned);
    if let Some(repo) = get("GITHUB_REPOSITORY") {
        let server = get("GITHUB_SERVER_URL").unwrap_or_else(|| "https://github.com".to_owned());
        ctx.source = Some(format!("{}/{repo}", server.trim_end_matches('/')));
        ctx.title = repo.rsplit('/').next().map(str::to_owned);
    }
    ctx.licenses = at(&["repository", "license", "spdx_id"])
        .and_then(|v| v.as_str())
        .filter(|s| *s != "NOASSERTION")
        .map(str::to_owned);
}

fn gitlab(ctx: &mut BuildContext, get: &dyn Fn(&str) -> Option<String>) {
    ctx.event = get("CI_PIPELINE_SOURCE").and_then(|e| match e.as_str() {
        "merge_request_event" => Some(Event::PullRequest),
        "schedule" => Some(Event::Schedule),
        "web" | "api" | "trigger" => Some(Event::Manual),
        _ => None,
    });
    ctx.git_ref = if let Some(t) = get("CI_COMMIT_TAG") {
        Some(GitRef::Tag(t))
    } else if let Some(n) = get("CI_MERGE_REQUEST_IID").and_then(|n| n.parse().ok()) {
        Some(GitRef::PullRequest(n))
    } else {
        get("CI_COMMIT_BRANCH")
            .or_else(|| get("CI_COMMIT_REF_NAME"))
            .map(GitRef::Branch)
    };
    ctx.sha = get("CI_COMMIT_SHA");
    ctx.default_branch = get("CI_DEFAULT_BRANCH");
    ctx.source = get("CI_PROJECT_URL");
    ctx.title = get("CI_PROJECT_NAME");
}
