//! Retention policies: the TOML format (documented in `docs/retention.md`)
//! and its validation into a [`Policy`].
//!
//! Every mistake is reported with its line and column in the text, so
//! `berth retention set` can point at it.

use std::fmt;
use std::ops::Range;

use berth_oci::Namespace;
use serde::Deserialize;
use toml::Spanned;

use super::cron::Schedule;
use crate::glob;

/// A validated retention policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// When it runs on its own (UTC); `None`: only on demand.
    pub schedule: Option<Schedule>,
    /// Its rules, in order (the order only names them; see `docs/retention.md`).
    pub rules: Vec<Rule>,
}

/// What a rule selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// Tags matching one of `include` and none of `exclude`.
    Tags {
        /// Tag globs.
        include: Vec<String>,
        /// Tag globs never selected.
        exclude: Vec<String>,
    },
    /// Manifests without any tag that no index lists and whose subject (if
    /// any) is gone.
    Untagged,
}

/// One rule: which repositories, what it selects, and whether it keeps or
/// deletes.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Its name (given, or `rule-N`).
    pub name: String,
    /// Repository scopes (a namespace or a repository glob); empty: the
    /// whole namespace.
    pub repositories: Vec<String>,
    /// What it selects.
    pub select: Selector,
    /// Media type globs the manifest must match (empty: any).
    pub media_types: Vec<String>,
    /// Artifact type globs the manifest must match (empty: any).
    pub artifact_types: Vec<String>,
    /// `true`: selected items for which `condition` holds are kept and the
    /// others deleted (`keep = ...`); `false`: they are deleted and the
    /// others kept (`delete = ...`).
    pub keeps: bool,
    /// The condition.
    pub condition: Condition,
}

/// A condition over a selected tag or manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// Always true (`always = true`).
    Always,
    /// Among the N most recently pushed images the rule selects in the
    /// repository (`last = N`).
    Last(usize),
    /// Among the N most recently pulled (`last_pulled = N`); never-pulled
    /// images are not among them.
    LastPulled(usize),
    /// Pushed within the duration (ms) before now (`pushed_within = "7d"`).
    PushedWithin(i64),
    /// Pulled within the duration (`pulled_within = "30d"`).
    PulledWithin(i64),
    /// Pushed more than the duration ago (`older_than = "30d"`).
    OlderThan(i64),
    /// Every one holds (`all = [...]`).
    All(Vec<Condition>),
    /// At least one holds (`any = [...]`).
    Any(Vec<Condition>),
    /// The inner one does not hold (`not = {...}`).
    Not(Box<Condition>),
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |f: &mut fmt::Formatter<'_>, name: &str, v: &[Condition]| {
            write!(f, "{name}(")?;
            for (i, c) in v.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{c}")?;
            }
            f.write_str(")")
        };
        match self {
            Condition::Always => f.write_str("always"),
            Condition::Last(n) => write!(f, "last {n}"),
            Condition::LastPulled(n) => write!(f, "last pulled {n}"),
            Condition::PushedWithin(d) => write!(f, "pushed within {}", duration(*d)),
            Condition::PulledWithin(d) => write!(f, "pulled within {}", duration(*d)),
            Condition::OlderThan(d) => write!(f, "older than {}", duration(*d)),
            Condition::All(v) => list(f, "all", v),
            Condition::Any(v) => list(f, "any", v),
            Condition::Not(c) => write!(f, "not({c})"),
        }
    }
}

/// Formats milliseconds in the largest whole unit (`7d`, `36h`, `90m`).
fn duration(ms: i64) -> String {
    berth_oci::duration::format(std::time::Duration::from_millis(ms.max(0) as u64))
}

/// A policy that does not parse or validate: the message names the line
/// and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError(pub String);

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    schedule: Option<Spanned<String>>,
    #[serde(default)]
    rule: Vec<Spanned<RuleFile>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    name: Option<String>,
    #[serde(default)]
    repositories: Vec<Spanned<String>>,
    tags: Option<Vec<String>>,
    #[serde(default)]
    exclude_tags: Vec<String>,
    untagged: Option<bool>,
    #[serde(default)]
    media_types: Vec<String>,
    #[serde(default)]
    artifact_types: Vec<String>,
    keep: Option<Spanned<toml::Value>>,
    delete: Option<Spanned<toml::Value>>,
}

/// Line and column (1-based) of byte `offset` in `text`.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn at(text: &str, span: Range<usize>, msg: impl fmt::Display) -> PolicyError {
    let (line, col) = position(text, span.start);
    PolicyError(format!("line {line}, column {col}: {msg}"))
}

impl Policy {
    /// Parses and validates the TOML `text` of a policy for `namespace`.
    pub fn parse(text: &str, namespace: &Namespace) -> Result<Policy, PolicyError> {
        let file: PolicyFile = toml::from_str(text).map_err(|e| {
            let msg = e.message().trim().to_owned();
            match e.span() {
                Some(span) => at(text, span, msg),
                None => PolicyError(msg),
            }
        })?;
        let schedule = match &file.schedule {
            Some(s) => Some(Schedule::parse(s.get_ref()).map_err(|m| at(text, s.span(), m))?),
            None => None,
        };
        let mut rules = Vec::new();
        for (i, r) in file.rule.iter().enumerate() {
            rules.push(rule(text, namespace, i, r)?);
        }
        Ok(Policy { schedule, rules })
    }
}

fn rule(
    text: &str,
    ns: &Namespace,
    i: usize,
    spanned: &Spanned<RuleFile>,
) -> Result<Rule, PolicyError> {
    let r = spanned.get_ref();
    let here = |m: String| at(text, spanned.span(), m);
    let name = r.name.clone().unwrap_or_else(|| format!("rule-{}", i + 1));
    for scope in &r.repositories {
        let s = scope.get_ref();
        let first = s.split('/').next().unwrap_or("");
        if first != ns.as_str() && !glob::is_glob(first) {
            return Err(at(
                text,
                scope.span(),
                format!(
                    "repository pattern {s:?} is outside namespace {ns:?} (write \"{ns}/...\")"
                ),
            ));
        }
    }
    let select = match (&r.tags, r.untagged.unwrap_or(false)) {
        (Some(_), true) => {
            return Err(here(format!(
                "rule {name:?} selects both tags and untagged manifests; use two rules"
            )))
        }
        (Some(include), false) => {
            if include.is_empty() {
                return Err(here(format!("rule {name:?}: tags = [] selects nothing")));
            }
            Selector::Tags {
                include: include.clone(),
                exclude: r.exclude_tags.clone(),
            }
        }
        (None, true) => {
            if !r.exclude_tags.is_empty() {
                return Err(here(format!(
                    "rule {name:?}: exclude_tags needs tags = [...]; untagged manifests have no tags"
                )));
            }
            Selector::Untagged
        }
        (None, false) => {
            return Err(here(format!(
                "rule {name:?} selects nothing: give tags = [\"pattern\", ...] or untagged = true"
            )))
        }
    };
    let (keeps, cond) = match (&r.keep, &r.delete) {
        (Some(k), None) => (true, k),
        (None, Some(d)) => (false, d),
        _ => {
            return Err(here(format!(
                "rule {name:?} needs exactly one of keep = {{...}} or delete = {{...}}"
            )))
        }
    };
    let condition = condition(text, cond.span(), cond.get_ref())?;
    Ok(Rule {
        name,
        repositories: r.repositories.iter().map(|s| s.get_ref().clone()).collect(),
        select,
        media_types: r.media_types.clone(),
        artifact_types: r.artifact_types.clone(),
        keeps,
        condition,
    })
}

/// A TOML value as a policy author wrote it, for messages.
fn show(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => format!("{s:?}"),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Datetime(d) => d.to_string(),
        toml::Value::Array(_) => "a list".into(),
        toml::Value::Table(_) => "a table".into(),
    }
}

/// Parses one condition: a table with exactly one key.
fn condition(text: &str, span: Range<usize>, v: &toml::Value) -> Result<Condition, PolicyError> {
    let err = |m: String| at(text, span.clone(), m);
    let table = v.as_table().ok_or_else(|| {
        err(format!(
            "a condition is a table with one key, such as {{ last = 10 }}, not {}",
            show(v)
        ))
    })?;
    let mut keys = table.iter();
    let (Some((key, value)), None) = (keys.next(), keys.next()) else {
        let names: Vec<&str> = table.keys().map(String::as_str).collect();
        return Err(err(format!(
            "a condition has exactly one key, found {names:?}; combine conditions with \
             all = [...] (AND) or any = [...] (OR)"
        )));
    };
    let count = |v: &toml::Value| -> Result<usize, PolicyError> {
        match v.as_integer() {
            Some(n) if n >= 0 => Ok(n as usize),
            _ => Err(err(format!(
                "{key} takes a count (a whole number >= 0), not {}",
                show(v)
            ))),
        }
    };
    let span_of = |v: &toml::Value| -> Result<i64, PolicyError> {
        let s = v.as_str().ok_or_else(|| {
            err(format!(
                "{key} takes a duration such as \"30d\", not {}",
                show(v)
            ))
        })?;
        berth_oci::duration::parse(s)
            .map(|d| d.as_millis() as i64)
            .map_err(|m| err(format!("{key}: {m}")))
    };
    let list = |v: &toml::Value| -> Result<Vec<Condition>, PolicyError> {
        let items = v.as_array().ok_or_else(|| {
            err(format!(
                "{key} takes a list of conditions: {key} = [{{...}}, ...]"
            ))
        })?;
        if items.is_empty() {
            return Err(err(format!("{key} = [] has no conditions")));
        }
        items
            .iter()
            .map(|c| condition(text, span.clone(), c))
            .collect()
    };
    Ok(match key.as_str() {
        "always" => match value.as_bool() {
            Some(true) => Condition::Always,
            _ => return Err(err("always takes only the value true".into())),
        },
        "last" => Condition::Last(count(value)?),
        "last_pulled" => Condition::LastPulled(count(value)?),
        "pushed_within" => Condition::PushedWithin(span_of(value)?),
        "pulled_within" => Condition::PulledWithin(span_of(value)?),
        "older_than" => Condition::OlderThan(span_of(value)?),
        "all" => Condition::All(list(value)?),
        "any" => Condition::Any(list(value)?),
        "not" => Condition::Not(Box::new(condition(text, span.clone(), value)?)),
        other => {
            return Err(err(format!(
                "unknown condition {other:?} (use last, last_pulled, pushed_within, \
                 pulled_within, older_than, always, all, any or not)"
            )))
        }
    })
}
