//! `berth tags`: the tag set and OCI labels for one build.
//!
//! The conventions follow what teams hand-write in CI YAML (and what
//! `docker/metadata-action` popularised):
//!
//! | build | tags |
//! | --- | --- |
//! | push to the default branch `main` at `abc1234…` | `latest`, `main`, `main-abc1234`, `sha-abc1234`, full sha |
//! | push to `feature/Login` | `feature-Login`, `feature-Login-abc1234`, `sha-abc1234`, full sha |
//! | pull request 42 | `pr-42`, `sha-abc1234`, full sha |
//! | git tag `v1.2.3` | `latest`, `v1.2.3`, `1.2.3`, `1.2`, `1`, `sha-…`, full sha |
//! | git tag `v0.4.1` | `latest`, `v0.4.1`, `0.4.1`, `0.4`, `sha-…`, full sha (no `0`) |
//! | git tag `v2.0.0-rc.1` | `v2.0.0-rc.1`, `2.0.0-rc.1`, `sha-…`, full sha (no `latest`, `2.0`, `2`) |
//! | git tag `release/7` | `release-7`, `sha-…`, full sha |
//! | `--with date,datetime` (or a scheduled build) | `YYYYMMDD`, `YYYYMMDD-HHMMSS` |
//! | `--template 'nightly-{{date}}'` | `nightly-20240501` |
//!
//! The context comes from flags or from the environment of GitHub Actions
//! and GitLab CI ([`env`]); the computation itself ([`compute`]) is a pure
//! function, which is what the table-driven tests exercise.

pub mod cmd;
pub mod env;
mod semver;
mod template;

use std::collections::BTreeMap;

use berth_oci::validate_tag;

use crate::time::Timestamp;
pub use semver::Semver;

/// What triggered the build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// A push of a branch.
    Push,
    /// A push of a git tag.
    Tag,
    /// A pull (merge) request.
    PullRequest,
    /// A scheduled (nightly) build.
    Schedule,
    /// A manual run.
    Manual,
}

/// The git ref being built.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GitRef {
    /// A branch (short name, `feature/x`).
    Branch(String),
    /// A git tag (short name, `v1.2.3`).
    Tag(String),
    /// A pull request number.
    PullRequest(u64),
}

impl GitRef {
    /// Parses a full ref (`refs/heads/main`, `refs/tags/v1`,
    /// `refs/pull/7/merge`, `refs/merge-requests/7/head`).
    pub fn from_full(r: &str) -> Option<GitRef> {
        if let Some(b) = r.strip_prefix("refs/heads/") {
            return Some(GitRef::Branch(b.to_owned()));
        }
        if let Some(t) = r.strip_prefix("refs/tags/") {
            return Some(GitRef::Tag(t.to_owned()));
        }
        let pr = r
            .strip_prefix("refs/pull/")
            .or_else(|| r.strip_prefix("refs/merge-requests/"))?;
        pr.split('/').next()?.parse().ok().map(GitRef::PullRequest)
    }
}

/// Everything known about one build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildContext {
    /// What triggered the build (derived from the ref when not given).
    pub event: Option<Event>,
    /// The ref being built.
    pub git_ref: Option<GitRef>,
    /// The commit.
    pub sha: Option<String>,
    /// The repository's default branch.
    pub default_branch: Option<String>,
    /// Build (or commit) time.
    pub time: Timestamp,
    /// Source repository URL (`org.opencontainers.image.source`).
    pub source: Option<String>,
    /// Image title (`org.opencontainers.image.title`).
    pub title: Option<String>,
    /// SPDX licence expression (`org.opencontainers.image.licenses`).
    pub licenses: Option<String>,
}

/// A family of tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Kind {
    /// `latest`, as --latest allows.
    Latest,
    /// The sanitised branch name.
    Branch,
    /// `pr-<n>`.
    Pr,
    /// The git tag; for semver tags also `1.2.3`, `1.2`, `1`.
    Semver,
    /// `<branch>-<short sha>`.
    BranchSha,
    /// `sha-<short sha>`.
    Sha,
    /// The full commit sha.
    FullSha,
    /// `YYYYMMDD`.
    Date,
    /// `YYYYMMDD-HHMMSS`.
    Datetime,
}

/// The kinds computed when none are chosen.
pub const DEFAULT_KINDS: &[Kind] = &[
    Kind::Latest,
    Kind::Branch,
    Kind::Pr,
    Kind::Semver,
    Kind::BranchSha,
    Kind::Sha,
    Kind::FullSha,
];

/// When `latest` is emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LatestPolicy {
    /// On pushes to the default branch and on stable semver releases.
    #[default]
    Auto,
    /// Only on pushes to the default branch.
    Branch,
    /// Only on stable semver releases.
    Release,
    /// Never.
    Never,
}

/// How to compute tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagOptions {
    /// The tag families to compute.
    pub kinds: Vec<Kind>,
    /// When `latest` applies.
    pub latest: LatestPolicy,
    /// Extra tags from templates (`{{branch}}-{{date}}`).
    pub templates: Vec<String>,
    /// Length of the short sha.
    pub short_sha_len: usize,
}

impl Default for TagOptions {
    fn default() -> Self {
        TagOptions {
            kinds: DEFAULT_KINDS.to_vec(),
            latest: LatestPolicy::Auto,
            templates: Vec::new(),
            short_sha_len: 7,
        }
    }
}

/// Why tags could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagError {
    /// A template uses an unknown variable or is malformed.
    #[error("template {template:?}: {reason}")]
    Template {
        /// The template.
        template: String,
        /// What is wrong.
        reason: String,
    },
    /// A computed tag is not a valid OCI tag.
    #[error("computed tag {0:?} is not a valid tag")]
    Invalid(String),
    /// The sha is not hexadecimal.
    #[error("commit sha {0:?} is not hexadecimal")]
    Sha(String),
}

/// Turns a branch or git tag name into a valid tag: runs of characters other
/// than `[A-Za-z0-9._-]` become `-`, leading `.`/`-` are dropped, and the
/// result is cut to `max` bytes.
pub fn sanitise(name: &str, max: usize) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let trimmed = out.trim_start_matches(['.', '-']);
    let mut cut: String = trimmed.chars().take(max).collect();
    while cut.ends_with(['.', '-']) {
        cut.pop();
    }
    cut
}

impl BuildContext {
    /// The event, derived from the ref when not given.
    pub fn effective_event(&self) -> Option<Event> {
        self.event.or(match &self.git_ref {
            Some(GitRef::Branch(_)) => Some(Event::Push),
            Some(GitRef::Tag(_)) => Some(Event::Tag),
            Some(GitRef::PullRequest(_)) => Some(Event::PullRequest),
            None => None,
        })
    }

    fn branch(&self) -> Option<&str> {
        match &self.git_ref {
            Some(GitRef::Branch(b)) => Some(b),
            _ => None,
        }
    }

    fn on_default_branch(&self) -> bool {
        matches!((self.branch(), &self.default_branch), (Some(b), Some(d)) if b == d)
            && matches!(self.effective_event(), Some(Event::Push | Event::Manual))
    }

    fn semver(&self) -> Option<Semver> {
        match &self.git_ref {
            Some(GitRef::Tag(t)) => Semver::parse(t),
            _ => None,
        }
    }

    fn short_sha(&self, len: usize) -> Option<String> {
        self.sha.as_ref().map(|s| s.chars().take(len).collect())
    }
}

/// Computes the tags for `ctx`, in a stable order, without duplicates.
pub fn compute(ctx: &BuildContext, opts: &TagOptions) -> Result<Vec<String>, TagError> {
    if let Some(sha) = &ctx.sha {
        if sha.is_empty() || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(TagError::Sha(sha.clone()));
        }
    }
    let mut kinds = opts.kinds.clone();
    if ctx.effective_event() == Some(Event::Schedule) && !kinds.contains(&Kind::Date) {
        kinds.push(Kind::Date);
    }
    let short = ctx.short_sha(opts.short_sha_len);
    let semver = ctx.semver();
    let mut tags = Vec::new();
    for kind in [
        Kind::Latest,
        Kind::Semver,
        Kind::Branch,
        Kind::Pr,
        Kind::BranchSha,
        Kind::Sha,
        Kind::FullSha,
        Kind::Date,
        Kind::Datetime,
    ] {
        if !kinds.contains(&kind) {
            continue;
        }
        match kind {
            Kind::Latest => {
                let release = semver.as_ref().is_some_and(|v| v.pre.is_none());
                let want = match opts.latest {
                    LatestPolicy::Auto => ctx.on_default_branch() || release,
                    LatestPolicy::Branch => ctx.on_default_branch(),
                    LatestPolicy::Release => release,
                    LatestPolicy::Never => false,
                };
                if want {
                    tags.push("latest".to_owned());
                }
            }
            Kind::Semver => match (&ctx.git_ref, &semver) {
                (_, Some(v)) => tags.extend(v.tags()),
                (Some(GitRef::Tag(t)), None) => tags.push(sanitise(t, 128)),
                _ => {}
            },
            Kind::Branch => tags.extend(ctx.branch().map(|b| sanitise(b, 128))),
            Kind::Pr => {
                if let Some(GitRef::PullRequest(n)) = ctx.git_ref {
                    tags.push(format!("pr-{n}"));
                }
            }
            Kind::BranchSha => {
                if let (Some(b), Some(s)) = (ctx.branch(), &short) {
                    tags.push(format!("{}-{s}", sanitise(b, 127 - s.len())));
                }
            }
            Kind::Sha => tags.extend(short.as_ref().map(|s| format!("sha-{s}"))),
            Kind::FullSha => tags.extend(ctx.sha.clone()),
            Kind::Date => tags.push(ctx.time.date()),
            Kind::Datetime => tags.push(format!("{}-{}", ctx.time.date(), ctx.time.time())),
        }
    }
    for t in &opts.templates {
        if let Some(tag) = template::render(t, ctx, opts)? {
            tags.push(tag);
        }
    }
    let mut seen = std::collections::HashSet::new();
    tags.retain(|t| !t.is_empty() && seen.insert(t.clone()));
    for t in &tags {
        validate_tag(t).map_err(|_| TagError::Invalid(t.clone()))?;
    }
    Ok(tags)
}

/// The version a build publishes: the semver without `v`, else the first
/// tag that is not `latest`.
pub fn version(ctx: &BuildContext, tags: &[String]) -> Option<String> {
    ctx.semver()
        .map(|v| v.version())
        .or_else(|| tags.iter().find(|t| *t != "latest").cloned())
}

/// The OCI annotations (also usable as labels) for the build.
pub fn labels(ctx: &BuildContext, tags: &[String]) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let mut put = |k: &str, v: Option<String>| {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            m.insert(format!("org.opencontainers.image.{k}"), v);
        }
    };
    put("created", Some(ctx.time.to_string()));
    put("source", ctx.source.clone());
    put("url", ctx.source.clone());
    put("revision", ctx.sha.clone());
    put("version", version(ctx, tags));
    put("title", ctx.title.clone());
    put("licenses", ctx.licenses.clone());
    m
}

#[cfg(test)]
mod tests;
