//! Tag templates: `{{variable}}` placeholders filled from the build context.
//!
//! Variables: `branch`, `tag`, `version`, `major`, `minor`, `patch`, `pr`,
//! `sha`, `short_sha`, `date` (`YYYYMMDD`), `time` (`HHMMSS`), `event`,
//! `default_branch`. A template whose variables are not all known for this
//! build (say `pr-{{pr}}` on a branch push) yields no tag; an unknown
//! variable name is an error. The result is sanitised like a branch name.

use super::{sanitise, BuildContext, Event, GitRef, TagError, TagOptions};

const VARIABLES: &[&str] = &[
    "branch",
    "tag",
    "version",
    "major",
    "minor",
    "patch",
    "pr",
    "sha",
    "short_sha",
    "date",
    "time",
    "event",
    "default_branch",
];

fn value(name: &str, ctx: &BuildContext, opts: &TagOptions) -> Option<String> {
    let semver = ctx.semver();
    match name {
        "branch" => ctx.branch().map(|b| sanitise(b, 128)),
        "tag" => match &ctx.git_ref {
            Some(GitRef::Tag(t)) => Some(t.clone()),
            _ => None,
        },
        "version" => semver.map(|v| v.version()),
        "major" => semver.map(|v| v.major.to_string()),
        "minor" => semver.map(|v| v.minor.to_string()),
        "patch" => semver.map(|v| v.patch.to_string()),
        "pr" => match ctx.git_ref {
            Some(GitRef::PullRequest(n)) => Some(n.to_string()),
            _ => None,
        },
        "sha" => ctx.sha.clone(),
        "short_sha" => ctx.short_sha(opts.short_sha_len),
        "date" => Some(ctx.time.date()),
        "time" => Some(ctx.time.time()),
        "event" => ctx.effective_event().map(|e| {
            match e {
                Event::Push => "push",
                Event::Tag => "tag",
                Event::PullRequest => "pr",
                Event::Schedule => "schedule",
                Event::Manual => "manual",
            }
            .to_owned()
        }),
        "default_branch" => ctx.default_branch.as_deref().map(|b| sanitise(b, 128)),
        _ => None,
    }
}

/// Renders `template`; `Ok(None)` when a variable has no value for this build.
pub fn render(
    template: &str,
    ctx: &BuildContext,
    opts: &TagOptions,
) -> Result<Option<String>, TagError> {
    let err = |reason: String| TagError::Template {
        template: template.to_owned(),
        reason,
    };
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| err("unclosed {{".to_owned()))?;
        let name = after[..end].trim();
        if !VARIABLES.contains(&name) {
            return Err(err(format!(
                "unknown variable {name:?} (known: {})",
                VARIABLES.join(", ")
            )));
        }
        match value(name, ctx, opts) {
            Some(v) => out.push_str(&v),
            None => return Ok(None),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    let tag = sanitise(&out, 128);
    Ok((!tag.is_empty()).then_some(tag))
}
