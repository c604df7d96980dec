//! `berth lint`: image references in docker-compose files, Kubernetes
//! manifests, Helm values files and Dockerfiles, checked against the
//! practices registry operators ask for:
//!
//! | rule | default | finding |
//! | --- | --- | --- |
//! | `implicit-registry` | warning | no registry prefix: the image silently comes from Docker Hub |
//! | `missing-tag` | error | neither tag nor digest: the image floats on `latest` |
//! | `latest-tag` | error | the `latest` tag, which moves under you |
//! | `missing-digest` | note | not pinned by digest, so a re-pushed tag changes what runs |
//! | `invalid-reference` | error | not a valid image reference |
//!
//! References built from variables (`${TAG}`, `{{ .Values.x }}`) cannot be
//! judged statically and are skipped. Each finding carries a fix suggestion;
//! severities are configurable per rule.

pub mod cmd;
pub mod sarif;
pub mod scan;

use std::path::{Path, PathBuf};

use berth_oci::reference::ImageRef;

/// A lint rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// No registry prefix (implicit Docker Hub).
    ImplicitRegistry,
    /// Neither tag nor digest.
    MissingTag,
    /// The `latest` tag.
    LatestTag,
    /// No digest pin.
    MissingDigest,
    /// Unparseable reference.
    InvalidReference,
}

impl Rule {
    /// Every rule, in report order.
    pub const ALL: [Rule; 5] = [
        Rule::ImplicitRegistry,
        Rule::MissingTag,
        Rule::LatestTag,
        Rule::MissingDigest,
        Rule::InvalidReference,
    ];

    /// The rule's id (`implicit-registry`).
    pub fn id(self) -> &'static str {
        match self {
            Rule::ImplicitRegistry => "implicit-registry",
            Rule::MissingTag => "missing-tag",
            Rule::LatestTag => "latest-tag",
            Rule::MissingDigest => "missing-digest",
            Rule::InvalidReference => "invalid-reference",
        }
    }

    /// One sentence on what the rule checks.
    pub fn description(self) -> &'static str {
        match self {
            Rule::ImplicitRegistry => "Image references should name their registry explicitly instead of relying on the implicit Docker Hub default.",
            Rule::MissingTag => "Image references should name a version tag; without one they resolve to the moving 'latest' tag.",
            Rule::LatestTag => "Image references should not use the 'latest' tag, which changes whenever a new image is pushed.",
            Rule::MissingDigest => "Image references should be pinned by digest so that a re-pushed tag cannot change what runs.",
            Rule::InvalidReference => "Image references must be valid ([registry/]repository[:tag][@digest], lower-case repository).",
        }
    }

    /// The default severity.
    pub fn default_level(self) -> Level {
        match self {
            Rule::ImplicitRegistry => Level::Warning,
            Rule::MissingDigest => Level::Note,
            Rule::MissingTag | Rule::LatestTag | Rule::InvalidReference => Level::Error,
        }
    }

    /// Looks a rule up by id.
    pub fn from_id(id: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|r| r.id() == id)
    }
}

/// Severity of a finding (the SARIF levels, plus `off`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Disabled.
    Off,
    /// Informational.
    Note,
    /// Should be fixed.
    Warning,
    /// Must be fixed; fails the run.
    Error,
}

impl Level {
    /// The SARIF / display name.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Off => "none",
            Level::Note => "note",
            Level::Warning => "warning",
            Level::Error => "error",
        }
    }
}

/// Severity per rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    levels: Vec<(Rule, Level)>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            levels: Rule::ALL.iter().map(|r| (*r, r.default_level())).collect(),
        }
    }
}

impl Config {
    /// The severity of `rule`.
    pub fn level(&self, rule: Rule) -> Level {
        self.levels
            .iter()
            .find(|(r, _)| *r == rule)
            .map_or(rule.default_level(), |(_, l)| *l)
    }

    /// Overrides the severity of `rule`.
    pub fn set(&mut self, rule: Rule, level: Level) {
        self.levels.retain(|(r, _)| *r != rule);
        self.levels.push((rule, level));
    }
}

/// What kind of file a reference was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileKind {
    /// A Dockerfile / Containerfile.
    Dockerfile,
    /// A docker-compose file.
    Compose,
    /// A Kubernetes manifest.
    Kubernetes,
    /// A Helm values file.
    HelmValues,
    /// Any other YAML file (CI job images, ...).
    Yaml,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// The file.
    pub path: PathBuf,
    /// What kind of file it is.
    pub file_kind: FileKind,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// The rule.
    pub rule: Rule,
    /// The severity.
    pub level: Level,
    /// The reference as written.
    pub reference: String,
    /// What it resolves to, when valid.
    pub normalized: Option<String>,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub suggestion: String,
    /// A replacement for the reference text, when the fix is mechanical.
    pub replacement: Option<String>,
    /// Whether the reference text is verbatim at `line:column`.
    #[serde(skip)]
    pub verbatim: bool,
}

/// Classifies a file by name (and content for YAML); `None` if not lintable.
pub fn classify(path: &Path, text: Option<&str>) -> Option<FileKind> {
    let name = path.file_name()?.to_str()?.to_ascii_lowercase();
    if name == "dockerfile"
        || name == "containerfile"
        || name.starts_with("dockerfile.")
        || name.ends_with(".dockerfile")
        || name.ends_with(".containerfile")
    {
        return Some(FileKind::Dockerfile);
    }
    if !(name.ends_with(".yaml") || name.ends_with(".yml")) {
        return None;
    }
    let text = text.unwrap_or("");
    let has_top = |k: &str| text.lines().any(|l| l.starts_with(k));
    Some(if name.contains("compose") || has_top("services:") {
        FileKind::Compose
    } else if has_top("apiVersion:") && has_top("kind:") {
        FileKind::Kubernetes
    } else if name.starts_with("values") {
        FileKind::HelmValues
    } else {
        FileKind::Yaml
    })
}

/// Lints one file's text.
pub fn lint_text(path: &Path, kind: FileKind, text: &str, config: &Config) -> Vec<Finding> {
    let occurrences = match kind {
        FileKind::Dockerfile => scan::dockerfile(text),
        _ => scan::yaml(text),
    };
    let mut out = Vec::new();
    for occ in occurrences {
        if occ.text.contains('$') || occ.text.contains("{{") {
            continue;
        }
        let mut push = |rule: Rule,
                        normalized: Option<String>,
                        message: String,
                        suggestion: String,
                        replacement: Option<String>| {
            let level = config.level(rule);
            if level != Level::Off {
                out.push(Finding {
                    path: path.to_owned(),
                    file_kind: kind,
                    line: occ.line,
                    column: occ.column,
                    rule,
                    level,
                    reference: occ.text.clone(),
                    normalized,
                    message,
                    suggestion,
                    replacement: replacement.filter(|_| occ.verbatim),
                    verbatim: occ.verbatim,
                });
            }
        };
        let r = match ImageRef::parse(&occ.text) {
            Ok(r) => r,
            Err(e) => {
                push(
                    Rule::InvalidReference,
                    None,
                    format!("'{}' is not a valid image reference: {e}", occ.text),
                    "write [registry/]repository[:tag][@digest] with a lower-case repository"
                        .to_owned(),
                    None,
                );
                continue;
            }
        };
        let full = r.to_string();
        let n = Some(full.clone());
        if !r.explicit_registry {
            push(
                Rule::ImplicitRegistry,
                n.clone(),
                format!(
                    "'{}' has no registry prefix and silently resolves to Docker Hub ({full})",
                    occ.text
                ),
                format!("write the registry explicitly: {full}"),
                Some(full.clone()),
            );
        }
        if r.tag.is_none() && r.digest.is_none() && !occ.tag_from_chart {
            push(
                Rule::MissingTag,
                n.clone(),
                format!(
                    "'{}' has no tag and resolves to the moving 'latest' tag",
                    occ.text
                ),
                format!("pin a version: {}:<version>", r.name()),
                None,
            );
        }
        if r.tag.as_deref() == Some("latest") && r.digest.is_none() {
            push(
                Rule::LatestTag,
                n.clone(),
                format!(
                    "'{}' uses the 'latest' tag, which changes whenever a new image is pushed",
                    occ.text
                ),
                format!("pin a version: {}:<version>", r.name()),
                None,
            );
        }
        if r.digest.is_none() {
            let tag = r.tag_or_default().unwrap_or("latest");
            push(
                Rule::MissingDigest,
                n,
                format!("'{}' is not pinned by digest", occ.text),
                format!(
                    "pin the digest: {}:{tag}@sha256:<digest> (see `berth inspect {}:{tag}`)",
                    r.name(),
                    r.name()
                ),
                None,
            );
        }
    }
    out
}

/// Directories never descended into.
const SKIP_DIRS: &[&str] = &[".git", "node_modules", "target", "vendor", ".terraform"];

/// The lintable files under `paths` (files are taken as given), sorted.
pub fn collect_files(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            walk(p, &mut out)?;
        } else if p.exists() {
            out.push(p.clone());
        } else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{}: no such file or directory", p.display()),
            ));
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let ty = entry.file_type()?;
        if ty.is_dir() {
            let skip = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| SKIP_DIRS.contains(&n));
            if !skip {
                walk(&path, out)?;
            }
        } else if ty.is_file() && classify(&path, None).is_some() {
            out.push(path);
        }
    }
    Ok(())
}

/// Lints files and directories.
pub fn lint_paths(paths: &[PathBuf], config: &Config) -> std::io::Result<Vec<Finding>> {
    let mut findings = Vec::new();
    for file in collect_files(paths)? {
        let text = std::fs::read_to_string(&file)?;
        if let Some(kind) = classify(&file, Some(&text)) {
            findings.extend(lint_text(&file, kind, &text, config));
        }
    }
    Ok(findings)
}

#[cfg(test)]
mod tests;
