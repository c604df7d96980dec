//! The `berth tags` command line: flags, environment, output formats.

use std::io::Write as _;

use super::env::{self, Ci};
use super::{compute, labels, BuildContext, Event, GitRef, Kind, LatestPolicy, TagOptions};
use crate::time::Timestamp;
use crate::ToolError;

/// The default branch when neither the CI nor `--default-branch` names one.
pub const DEFAULT_BRANCH: &str = "main";

/// Output format of `berth tags`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One tag (or image reference) per line.
    #[value(alias = "table")]
    Lines,
    /// A JSON object: tags (as -o lines prints them), images (the --image names), version,
    /// labels and annotations.
    Json,
    /// GitHub Actions step outputs (`tags`, `labels`, `json`, `version`),
    /// appended to `$GITHUB_OUTPUT` when set.
    Github,
}

/// Compute the tags (and OCI labels) of a build from CI context or flags.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Image names to qualify the tags with, e.g. `ghcr.io/org/app` (repeatable).
    #[arg(long = "image", short = 'i')]
    pub images: Vec<String>,
    /// Which CI environment to read.
    #[arg(long, value_enum, default_value = "auto")]
    pub ci: Ci,
    /// What triggered the build (derived from the ref when omitted).
    #[arg(long, value_enum)]
    pub event: Option<Event>,
    /// Full git ref: refs/heads/main, refs/tags/v1.2.3, refs/pull/7/merge.
    #[arg(long = "ref", conflicts_with_all = ["branch", "git_tag", "pr"])]
    pub git_ref: Option<String>,
    /// Branch being built.
    #[arg(long, conflicts_with_all = ["git_tag", "pr"])]
    pub branch: Option<String>,
    /// Git tag being built.
    #[arg(long = "git-tag", conflicts_with = "pr")]
    pub git_tag: Option<String>,
    /// Pull (merge) request number.
    #[arg(long)]
    pub pr: Option<u64>,
    /// Commit sha.
    #[arg(long)]
    pub sha: Option<String>,
    /// The repository's default branch, where `latest` is published [default: the CI's
    /// default branch, else main].
    #[arg(long)]
    pub default_branch: Option<String>,
    /// Build time, RFC 3339 or Unix seconds (default: SOURCE_DATE_EPOCH or now).
    #[arg(long)]
    pub time: Option<String>,
    /// Source repository URL for the labels.
    #[arg(long)]
    pub source: Option<String>,
    /// Image title for the labels.
    #[arg(long)]
    pub title: Option<String>,
    /// SPDX licence expression for the labels.
    #[arg(long)]
    pub licenses: Option<String>,
    /// Tag kinds to compute, replacing the defaults (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub kinds: Vec<Kind>,
    /// Tag kinds to add to the defaults, e.g. `--with date,datetime`.
    #[arg(long = "with", value_enum, value_delimiter = ',')]
    pub with: Vec<Kind>,
    /// When to tag `latest`.
    #[arg(long, value_enum, default_value = "auto")]
    pub latest: LatestPolicy,
    /// Extra tag templates, e.g. `{{branch}}-{{date}}` (repeatable).
    #[arg(long = "template", short = 't')]
    pub templates: Vec<String>,
    /// Length of the short sha.
    #[arg(long, default_value_t = 7)]
    pub short_sha_length: usize,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "lines")]
    pub output: Format,
}

impl Args {
    /// The context: the CI environment, overridden by flags.
    pub fn context(&self) -> Result<BuildContext, ToolError> {
        let payload = std::env::var("GITHUB_EVENT_PATH")
            .ok()
            .filter(|_| self.ci != Ci::None)
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|b| serde_json::from_slice(&b).ok());
        let getenv = |k: &str| std::env::var(k).ok();
        let mut ctx = env::context(self.ci, &getenv, payload.as_ref(), Timestamp::now());
        if let Some(r) = &self.git_ref {
            ctx.git_ref = Some(GitRef::from_full(r).unwrap_or_else(|| GitRef::Branch(r.clone())));
        }
        if let Some(b) = &self.branch {
            ctx.git_ref = Some(GitRef::Branch(b.clone()));
        }
        if let Some(t) = &self.git_tag {
            ctx.git_ref = Some(GitRef::Tag(t.clone()));
        }
        if let Some(n) = self.pr {
            ctx.git_ref = Some(GitRef::PullRequest(n));
        }
        let set = |dst: &mut Option<String>, src: &Option<String>| {
            if src.is_some() {
                dst.clone_from(src);
            }
        };
        set(&mut ctx.sha, &self.sha);
        set(&mut ctx.default_branch, &self.default_branch);
        set(&mut ctx.source, &self.source);
        set(&mut ctx.title, &self.title);
        set(&mut ctx.licenses, &self.licenses);
        if self.event.is_some() {
            ctx.event = self.event;
        }
        if let Some(t) = &self.time {
            ctx.time = Timestamp::parse(t).map_err(|e| ToolError::Usage(e.to_string()))?;
        }
        if ctx.default_branch.is_none() {
            ctx.default_branch = Some(DEFAULT_BRANCH.to_owned());
        }
        Ok(ctx)
    }

    /// Why no tag came out: the parts of the context that are missing.
    fn missing_context(&self, ctx: &BuildContext) -> String {
        let mut missing = Vec::new();
        if ctx.git_ref.is_none() {
            missing.push("no git ref (--ref, --branch, --git-tag or --pr)");
        }
        if ctx.sha.is_none() {
            missing.push("no commit (--sha)");
        }
        let ci = match self.ci {
            Ci::Auto => "no CI environment was detected (neither GITHUB_ACTIONS nor GITLAB_CI is set)",
            Ci::None => "--ci none reads no environment",
            Ci::Github => "the GitHub Actions variables (GITHUB_REF, GITHUB_SHA) are not set",
            Ci::Gitlab => "the GitLab CI variables (CI_COMMIT_BRANCH, CI_COMMIT_TAG, CI_COMMIT_SHA) are not set",
        };
        format!(
            "no tags to print: the build context has {}, and {ci}; run inside GitHub Actions or GitLab CI, or pass the context as flags",
            if missing.is_empty() {
                "nothing the chosen --kinds use".to_owned()
            } else {
                missing.join(" and ")
            }
        )
    }

    /// The options from the flags.
    pub fn options(&self) -> TagOptions {
        let mut kinds = if self.kinds.is_empty() {
            super::DEFAULT_KINDS.to_vec()
        } else {
            self.kinds.clone()
        };
        kinds.extend(self.with.iter().copied());
        TagOptions {
            kinds,
            latest: self.latest,
            templates: self.templates.clone(),
            short_sha_len: self.short_sha_length.clamp(4, 40),
        }
    }
}

/// Runs `berth tags`, writing to stdout (and `$GITHUB_OUTPUT`).
pub fn run(args: &Args) -> Result<(), ToolError> {
    let ctx = args.context()?;
    let tags = compute(&ctx, &args.options()).map_err(|e| ToolError::Usage(e.to_string()))?;
    if tags.is_empty() {
        // `for tag in $(berth tags)` must not silently push nothing.
        return Err(ToolError::Usage(args.missing_context(&ctx)));
    }
    let labels = labels(&ctx, &tags);
    let mut images = Vec::new();
    for name in &args.images {
        let base = berth_oci::reference::ImageRef::parse(name)
            .map_err(|e| ToolError::Usage(format!("--image {name}: {e}")))?;
        images.extend(tags.iter().map(|t| base.with_tag(t).to_string()));
    }
    let refs = if images.is_empty() { &tags } else { &images };
    let json = serde_json::json!({
        "tags": refs,
        "images": args.images,
        "version": super::version(&ctx, &tags),
        "labels": labels,
        "annotations": labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
    });
    let mut out = std::io::stdout().lock();
    match args.output {
        Format::Lines => {
            for r in refs {
                writeln!(out, "{r}")?;
            }
        }
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&json)?)?,
        Format::Github => {
            let text = github_outputs(refs, &labels, &json);
            match std::env::var_os("GITHUB_OUTPUT") {
                Some(path) => {
                    let mut f = std::fs::OpenOptions::new()
                        .append(true)
                        .create(true)
                        .open(path)?;
                    f.write_all(text.as_bytes())?;
                }
                None => out.write_all(text.as_bytes())?,
            }
        }
    }
    Ok(())
}

/// The GitHub Actions output file syntax, with heredoc delimiters for
/// multi-line values.
pub fn github_outputs(
    refs: &[String],
    labels: &std::collections::BTreeMap<String, String>,
    json: &serde_json::Value,
) -> String {
    let delim = format!(
        "berth_{}",
        &berth_oci::Digest::sha256(json.to_string().as_bytes()).hex()[..16]
    );
    let label_lines: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut s = String::new();
    s.push_str(&format!("tags<<{delim}\n{}\n{delim}\n", refs.join("\n")));
    s.push_str(&format!(
        "labels<<{delim}\n{}\n{delim}\n",
        label_lines.join("\n")
    ));
    s.push_str(&format!(
        "annotations<<{delim}\n{}\n{delim}\n",
        label_lines.join("\n")
    ));
    s.push_str(&format!("json={json}\n"));
    if let Some(v) = json.get("version").and_then(|v| v.as_str()) {
        s.push_str(&format!("version={v}\n"));
    }
    s
}
