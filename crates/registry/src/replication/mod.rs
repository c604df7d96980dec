//! Replication: rules that copy images to another registry (push: a backup
//! or HA mirror of what is pushed here) or from one (pull), managed by site
//! admins.
//!
//! A rule names the other registry (URL, credentials), which repositories
//! (a glob or namespace scope) and tags (a glob) it copies, and when: a
//! push rule copies every matching push as it happens (`on_push`, read
//! from the event outbox within seconds), and any rule may run full
//! passes on a cron schedule or on demand. Copies keep every platform and
//! every digest. A failed attempt is retried with exponential backoff;
//! each attempt is a run in the job history (`replication:<id>`); a lease
//! per rule lets one replica at a time run it ([`run`]).
//!
//! This module owns the rules and the orchestration; the copying itself
//! is a [`Transport`] set from above (the mirror crate, on the engine of
//! `berth copy`), so this layer knows no HTTP client.

use std::sync::Arc;

use berth_meta::replication::NewRule;
use berth_meta::JobRun;
use berth_oci::RepositoryName;
use serde::Serialize;

use crate::retention::cron::Schedule;
use crate::{Caller, Error, Registry, Result};

mod delete;
mod run;

pub use berth_meta::replication::{job_name, ReplicationRule, Secret};
pub use delete::{Deleted, Deletion};
pub use run::{Copied, RuleRun, Transport};

/// The two directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From here to the other registry.
    Push,
    /// From the other registry to here.
    Pull,
}

impl Direction {
    /// Parses `push` or `pull`.
    pub fn parse(s: &str) -> Option<Direction> {
        match s {
            "push" => Some(Direction::Push),
            "pull" => Some(Direction::Pull),
            _ => None,
        }
    }

    /// `push` or `pull`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Push => "push",
            Direction::Pull => "pull",
        }
    }
}

/// What making a rule needs (from the management API).
#[derive(Debug, Clone, Default)]
pub struct RuleSpec {
    /// Unique name: lowercase letters, digits, `.`, `_`, `-`.
    pub name: String,
    /// `push` or `pull`.
    pub direction: String,
    /// The other registry's root URL (`https://backup.example.com`).
    pub url: String,
    /// User name there.
    pub username: Option<String>,
    /// Password or token for `username`.
    pub password: Option<String>,
    /// Repository glob or namespace scope (default `**`: every one).
    pub repositories: Option<String>,
    /// Tag glob (default `*`).
    pub tags: Option<String>,
    /// Copy each matching push as it happens (push rules; default true).
    pub on_push: Option<bool>,
    /// Cron schedule (5 fields, UTC) of full passes.
    pub schedule: Option<String>,
    /// A note.
    pub description: Option<String>,
    /// Replicate deletions too (default false): a push rule deletes at
    /// the target what is deleted here; a pull rule deletes here the tags
    /// it made that are gone at the source.
    pub replicate_deletions: bool,
}

/// A rule as the API shows it: never its secret.
#[derive(Debug, Clone, Serialize)]
pub struct RuleView {
    /// The rule and its progress.
    #[serde(flatten)]
    pub rule: ReplicationRule,
    /// Whether a password is stored.
    pub has_password: bool,
    /// The last run, if any.
    pub last_run: Option<JobRun>,
    /// When the next full pass is due by its schedule (Unix ms).
    pub next_scheduled_at: Option<i64>,
}

/// Whether the rule's repository filter selects `repository`: a glob, or
/// a namespace scope covering it (`acme`: `acme/web`, `acme/x/y`).
pub fn selects_repository(rule: &ReplicationRule, repository: &RepositoryName) -> bool {
    rule.repositories == "**" || crate::glob::scope_covers(&rule.repositories, repository)
}

/// Whether the rule's tag filter selects `tag`.
pub fn selects_tag(rule: &ReplicationRule, tag: &str) -> bool {
    crate::glob::matches(&rule.tags, tag)
}

fn bad(why: String) -> Error {
    Error::InvalidParameter(why)
}

/// Checks a rule's URL: `http(s)://host[:port]`, no path, no credentials.
fn check_url(url: &str) -> Result<()> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| bad(format!("replication url {url:?}: {e}; give the registry's root, like https://backup.example.com")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad(format!(
            "replication url {url:?} must start with http:// or https://"
        )));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad(format!("replication url {url:?} has no host")));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(bad(format!(
            "replication url {url:?} must not contain credentials: give username and password"
        )));
    }
    if !matches!(parsed.path(), "" | "/") || parsed.query().is_some() {
        return Err(bad(format!(
            "replication url {url:?} must be the registry's root (no path): the repositories \
             keep their names there"
        )));
    }
    Ok(())
}

fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(bad(format!(
            "replication rule name {name:?}: use 1 to 64 lowercase letters, digits, '.', '_' \
             or '-', starting with a letter or digit"
        )))
    }
}

fn check_glob(what: &str, pattern: &str) -> Result<()> {
    if pattern.is_empty()
        || pattern.len() > 256
        || pattern.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(bad(format!(
            "replication {what} filter {pattern:?}: give a glob (* ** ?) or a name, without spaces"
        )));
    }
    Ok(())
}

impl RuleSpec {
    /// Checks the spec and turns it into what is stored.
    fn validate(self) -> Result<NewRule> {
        check_name(&self.name)?;
        let direction = Direction::parse(&self.direction).ok_or_else(|| {
            bad(format!(
                "replication direction {:?}: use push (copy from here to {}) or pull (from there to here)",
                self.direction, self.url
            ))
        })?;
        check_url(&self.url)?;
        let (username, secret) = match (self.username, self.password) {
            (Some(u), Some(p)) if !u.is_empty() && !p.is_empty() => (Some(u), Some(Secret(p))),
            (None, None) => (None, None),
            _ => {
                return Err(bad(
                    "give both username and password for the other registry, or neither".into(),
                ))
            }
        };
        let repositories = self.repositories.unwrap_or_else(|| "**".to_owned());
        check_glob("repository", &repositories)?;
        let tags = self.tags.unwrap_or_else(|| "*".to_owned());
        check_glob("tag", &tags)?;
        let on_push =
            match (direction, self.on_push) {
                (Direction::Pull, Some(true)) => return Err(bad(
                    "a pull rule cannot run on push events (they happen here, not at the source): \
                     give it a schedule, or run it on demand"
                        .into(),
                )),
                (Direction::Pull, _) => false,
                (Direction::Push, v) => v.unwrap_or(true),
            };
        let schedule = match self.schedule.filter(|s| !s.trim().is_empty()) {
            Some(s) => {
                Schedule::parse(&s).map_err(|e| bad(format!("replication {e}")))?;
                Some(s)
            }
            None => None,
        };
        Ok(NewRule {
            name: self.name,
            direction: direction.as_str().to_owned(),
            url: self.url.trim_end_matches('/').to_owned(),
            username,
            secret,
            repositories,
            tags,
            on_push,
            schedule,
            description: self.description,
            replicate_deletions: self.replicate_deletions,
        })
    }
}

/// When `rule`'s schedule is next due after its last full pass.
fn next_scheduled(rule: &ReplicationRule) -> Option<i64> {
    let schedule = Schedule::parse(rule.schedule.as_deref()?).ok()?;
    schedule.next_after(rule.last_sync_at.unwrap_or(rule.created_at))
}

impl Registry {
    /// Makes a replication rule (see [`RuleSpec`]).
    pub async fn add_replication_rule(&self, spec: RuleSpec, caller: &Caller) -> Result<RuleView> {
        let name = spec.name.clone();
        let new = spec.validate()?;
        let rule = self
            .meta
            .add_replication_rule(&new, &caller.actor())
            .await?
            .ok_or_else(|| {
                Error::Conflict(format!(
                    "replication rule {name:?} exists; remove it first or choose another name"
                ))
            })?;
        self.view(rule).await
    }

    async fn view(&self, rule: ReplicationRule) -> Result<RuleView> {
        let last_run = self.meta.last_run(&job_name(rule.id)).await?;
        Ok(RuleView {
            has_password: rule.has_secret(),
            next_scheduled_at: next_scheduled(&rule),
            last_run,
            rule,
        })
    }

    /// Every replication rule with its last run, by name.
    pub async fn replication_rules(&self) -> Result<Vec<RuleView>> {
        let mut out = Vec::new();
        for rule in self.meta.replication_rules().await? {
            out.push(self.view(rule).await?);
        }
        Ok(out)
    }

    async fn stored_rule(&self, name: &str) -> Result<ReplicationRule> {
        self.meta
            .replication_rule(name)
            .await?
            .ok_or_else(|| unknown_rule(name))
    }

    /// Replication rule `name` with its last run.
    pub async fn replication_rule(&self, name: &str) -> Result<RuleView> {
        let rule = self.stored_rule(name).await?;
        self.view(rule).await
    }

    /// Removes replication rule `name` (its history stays in the job runs).
    pub async fn remove_replication_rule(
        &self,
        name: &str,
        caller: &Caller,
    ) -> Result<ReplicationRule> {
        self.meta
            .remove_replication_rule(name, &caller.actor())
            .await?
            .ok_or_else(|| unknown_rule(name))
    }

    /// Asks for a full pass of rule `name`: the replication worker starts
    /// it within a second or two (on whichever replica holds the rule's
    /// lease), retry wait or not.
    pub async fn request_replication_run(&self, name: &str, now: i64) -> Result<RuleView> {
        let rule = self
            .meta
            .request_replication_run(name, now)
            .await?
            .ok_or_else(|| unknown_rule(name))?;
        self.view(rule).await
    }

    /// The latest runs of rule `name`, newest first.
    pub async fn replication_history(&self, name: &str, limit: i64) -> Result<Vec<JobRun>> {
        let rule = self.stored_rule(name).await?;
        Ok(self.meta.job_runs(&job_name(rule.id), limit).await?)
    }

    /// Sets what copies images for replication (once, at startup).
    pub fn set_replication_transport(&self, transport: Arc<dyn Transport>) {
        if self.replication.set(transport).is_err() {
            tracing::warn!("the replication transport was set twice; keeping the first");
        }
    }
}

fn unknown_rule(name: &str) -> Error {
    Error::NotFound(format!(
        "replication rule {name:?} does not exist (`berth replication list` shows the rules)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(direction: &str) -> RuleSpec {
        RuleSpec {
            name: "backup".into(),
            direction: direction.into(),
            url: "https://backup.example.com/".into(),
            ..RuleSpec::default()
        }
    }

    #[test]
    fn specs_are_checked_and_defaulted() {
        let r = spec("push").validate().unwrap();
        assert_eq!(r.url, "https://backup.example.com");
        assert_eq!((r.repositories.as_str(), r.tags.as_str()), ("**", "*"));
        assert!(r.on_push);
        let pull = spec("pull").validate().unwrap();
        assert!(!pull.on_push);
        let bad_specs = [
            RuleSpec {
                on_push: Some(true),
                ..spec("pull")
            },
            spec("sideways"),
            RuleSpec {
                url: "ftp://x".into(),
                ..spec("push")
            },
            RuleSpec {
                url: "https://u:p@x".into(),
                ..spec("push")
            },
            RuleSpec {
                url: "https://x/v2/acme".into(),
                ..spec("push")
            },
            RuleSpec {
                name: "Bad Name".into(),
                ..spec("push")
            },
            RuleSpec {
                username: Some("u".into()),
                ..spec("push")
            },
            RuleSpec {
                schedule: Some("0 3 * *".into()),
                ..spec("push")
            },
            RuleSpec {
                tags: Some("v 1".into()),
                ..spec("push")
            },
        ];
        for s in bad_specs {
            let shown = format!("{s:?}");
            assert!(
                matches!(s.validate(), Err(Error::InvalidParameter(_))),
                "{shown}"
            );
        }
    }

    #[test]
    fn secrets_are_never_shown() {
        let r = RuleSpec {
            username: Some("robot".into()),
            password: Some("hunter2-very-secret".into()),
            ..spec("push")
        }
        .validate()
        .unwrap();
        assert!(!format!("{r:?}").contains("hunter2"));
    }

    #[test]
    fn filters_take_globs_and_scopes() {
        let mut rule = ReplicationRule {
            id: 1,
            name: "r".into(),
            direction: "push".into(),
            url: "https://x".into(),
            username: None,
            secret: None,
            repositories: "acme".into(),
            tags: "v*".into(),
            on_push: true,
            schedule: None,
            description: None,
            replicate_deletions: false,
            event_cursor: 0,
            failures: 0,
            next_attempt_at: 0,
            last_error: None,
            run_requested_at: None,
            last_sync_at: None,
            created_at: 0,
            created_by: None,
        };
        assert!(selects_repository(
            &rule,
            &RepositoryName::parse("acme/web").unwrap()
        ));
        assert!(!selects_repository(
            &rule,
            &RepositoryName::parse("acmex/web").unwrap()
        ));
        assert!(selects_tag(&rule, "v1.2"));
        assert!(!selects_tag(&rule, "latest"));
        rule.repositories = "**".into();
        assert!(selects_repository(
            &rule,
            &RepositoryName::parse("a/b/c").unwrap()
        ));
        rule.repositories = "*/web".into();
        assert!(selects_repository(
            &rule,
            &RepositoryName::parse("acme/web").unwrap()
        ));
        assert!(!selects_repository(
            &rule,
            &RepositoryName::parse("acme/api").unwrap()
        ));
    }
}
