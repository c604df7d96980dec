//! The `berth lint` command line.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use super::{lint_paths, Config, Finding, Level, Rule};
use crate::ToolError;

/// Exit status when a finding reaches `--fail-on`.
pub const EXIT_FINDINGS: u8 = 1;
/// Exit status for bad arguments or a file that cannot be read or written
/// (clap's own usage errors exit with 2 as well).
pub const EXIT_ERROR: u8 = 2;

/// Output format of `berth lint`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `path:line:col: level[rule] message` with a fix line.
    #[value(alias = "text")]
    Table,
    /// A JSON array of findings.
    Json,
    /// SARIF 2.1.0.
    Sarif,
}

/// Find image references in compose, Kubernetes, Helm values and Dockerfiles and report bad practice.
///
/// Exit status: 0 when no finding reaches --fail-on, 1 when one does, 2 for
/// bad arguments or a file that cannot be read or written.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Files or directories to scan (default: the current directory).
    pub paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    pub output: Format,
    /// Severity of a rule, `RULE=LEVEL` with LEVEL one of off, note, warning, error
    /// (repeatable), e.g. `--severity missing-digest=error`.
    #[arg(long = "severity", value_name = "RULE=LEVEL")]
    pub severity: Vec<String>,
    /// Lowest severity that makes the command exit with status 1 (`off`: never).
    #[arg(long, value_enum, default_value = "error")]
    pub fail_on: Level,
    /// Write the report to this file instead of stdout.
    #[arg(long)]
    pub output_file: Option<PathBuf>,
}

impl Args {
    /// The rule severities from the flags.
    pub fn config(&self) -> Result<Config, ToolError> {
        let mut config = Config::default();
        for s in &self.severity {
            let (rule, level) = s
                .split_once('=')
                .ok_or_else(|| ToolError::Usage(format!("--severity {s}: expected RULE=LEVEL")))?;
            let rule = Rule::from_id(rule.trim()).ok_or_else(|| {
                let ids: Vec<_> = Rule::ALL.iter().map(|r| r.id()).collect();
                ToolError::Usage(format!("unknown rule {rule:?} (rules: {})", ids.join(", ")))
            })?;
            let level = <Level as clap::ValueEnum>::from_str(level.trim(), true).map_err(|_| {
                ToolError::Usage(format!(
                    "--severity {s}: level must be off, note, warning or error"
                ))
            })?;
            config.set(rule, level);
        }
        Ok(config)
    }
}

/// Renders findings as text.
pub fn text(findings: &[Finding]) -> String {
    let mut s = String::new();
    for f in findings {
        s.push_str(&format!(
            "{}:{}:{}: {}[{}] {}\n    fix: {}\n",
            f.path.display(),
            f.line,
            f.column,
            f.level.as_str(),
            f.rule.id(),
            f.message,
            f.suggestion
        ));
    }
    let count = |l: Level| findings.iter().filter(|f| f.level == l).count();
    s.push_str(&format!(
        "{} finding(s): {} error(s), {} warning(s), {} note(s)\n",
        findings.len(),
        count(Level::Error),
        count(Level::Warning),
        count(Level::Note)
    ));
    s
}

/// Runs `berth lint`: exit status 1 when a finding reaches `--fail-on`, 2
/// (with the error on stderr) when the arguments are wrong or a file
/// cannot be read or written, so CI can tell findings from a broken step.
pub fn run(args: &Args) -> ExitCode {
    match lint(args) {
        Ok(true) => ExitCode::from(EXIT_FINDINGS),
        Ok(false) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth lint: {e}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Lints and writes the report; whether a finding reached `--fail-on`.
fn lint(args: &Args) -> Result<bool, ToolError> {
    let config = args.config()?;
    let paths = if args.paths.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        args.paths.clone()
    };
    let findings = lint_paths(&paths, &config)?;
    let report = match args.output {
        Format::Table => text(&findings),
        Format::Json => serde_json::to_string_pretty(&findings)? + "\n",
        Format::Sarif => {
            let root = std::env::current_dir()?;
            serde_json::to_string_pretty(&super::sarif::log(&findings, &root))? + "\n"
        }
    };
    match &args.output_file {
        Some(p) => std::fs::write(p, report)?,
        None => std::io::stdout().lock().write_all(report.as_bytes())?,
    }
    Ok(args.fail_on != Level::Off && findings.iter().any(|f| f.level >= args.fail_on))
}
