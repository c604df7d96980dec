//! `berth scan IMAGE`: the registry scans the image against its offline
//! vulnerability database (`POST /api/v1/scans`) and this prints the
//! findings as a table, as JSON, or as SARIF 2.1.0 for GitHub code
//! scanning; `--fail-on SEVERITY` makes findings at or above it fail the
//! command (exit status 1), as a CI gate.
//!
//! The scan runs on the server because the vulnerability data lives in its
//! metadata database (imported with `berth vulndb import`), and because
//! the same scan runs there on push.
//!
//! `berth scan policy NAMESPACE [--on-push on|off] [--block-severity
//! SEVERITY] [--unscanned allow|deny]` shows or sets whether pushes to a
//! namespace are scanned (in the background, by the registry's scan
//! worker) and which pulls its policy refuses; `berth scan allow
//! NAMESPACE [ADVISORY --reason TEXT [--expires DATE] | ADVISORY
//! --remove]` lists, grants or removes the advisories that do not count
//! against it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, Context as _};
use berth_registry::scanning::{ImageScan, ScanReport};
use berth_scan::vuln::Severity;
use reqwest::Method;
use serde_json::{json, Value};

use super::{time, Api, Format, ManageArgs};

/// Scan an image for known vulnerabilities, on the registry and against its vulnerability
/// database (`-o table|json|sarif`).
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// The image: HOST[:PORT]/REPOSITORY[:TAG|@DIGEST] (the registry that holds it scans it).
    #[arg(value_name = "IMAGE")]
    pub image: Option<String>,
    /// Only this platform of a multi-platform image (os/arch[/variant]).
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,
    /// Fail (exit status 1) when a finding is at or above this severity (low, medium, high,
    /// critical).
    #[arg(long, value_name = "SEVERITY", value_parser = parse_severity)]
    pub fail_on: Option<Severity>,
    /// Show the result the registry stored (from a scan on push, or an
    /// earlier `berth scan`) instead of scanning now: needs only pull
    /// permission, where scanning needs push permission.
    #[arg(long)]
    pub stored: bool,
    /// Write the report to this file instead of standard output.
    #[arg(long, value_name = "PATH")]
    pub output_file: Option<PathBuf>,
    #[command(flatten)]
    pub manage: ManageArgs,
}

#[derive(Debug, clap::Subcommand)]
enum Cmd {
    /// Show or set a namespace's scan policy: whether pushes of images and
    /// indexes are scanned in the background (namespace admins set it).
    Policy {
        /// Namespace.
        namespace: String,
        /// Scan every image and index pushed to the namespace.
        #[arg(long, value_name = "on|off", value_parser = ["on", "off"])]
        on_push: Option<String>,
        /// Refuse pulls (403 DENIED) of images with findings at or above this severity
        /// (`none`: never).
        #[arg(long, value_name = "SEVERITY",
              value_parser = ["critical", "high", "medium", "low", "none"])]
        block_severity: Option<String>,
        /// Whether images without a stored scan may be pulled.
        #[arg(long, value_name = "allow|deny", value_parser = ["allow", "deny"])]
        unscanned: Option<String>,
    },
    /// List a namespace's allowances (advisories that do not count against its pull policy),
    /// grant one (ADVISORY --reason TEXT [--expires DATE]) or remove one (ADVISORY --remove).
    Allow {
        /// Namespace.
        namespace: String,
        /// The advisory id (CVE-2024-1234, GHSA-..., DSA-...): a finding's id or any of its
        /// aliases.
        advisory: Option<String>,
        /// Why the finding is acceptable (required to grant).
        #[arg(long, value_name = "TEXT", conflicts_with = "remove")]
        reason: Option<String>,
        /// When the allowance stops: a date (2027-01-31, through that day UTC) or an RFC 3339
        /// time; without it, until removed.
        #[arg(long, value_name = "DATE", conflicts_with = "remove")]
        expires: Option<String>,
        /// Remove the allowance of ADVISORY.
        #[arg(long, requires = "advisory")]
        remove: bool,
    },
}

fn parse_severity(s: &str) -> Result<Severity, String> {
    match s.parse::<Severity>()? {
        Severity::Unknown => Err("--fail-on takes low, medium, high or critical".into()),
        s => Ok(s),
    }
}

/// Runs `berth scan`.
pub async fn run(args: &Args) -> anyhow::Result<ExitCode> {
    match &args.command {
        Some(Cmd::Policy {
            namespace,
            on_push,
            block_severity,
            unscanned,
        }) => {
            let change = PolicyArgs {
                on_push: on_push.as_deref(),
                block_severity: block_severity.as_deref(),
                unscanned: unscanned.as_deref(),
            };
            policy(&args.manage, namespace, change).await?;
            return Ok(ExitCode::SUCCESS);
        }
        Some(Cmd::Allow {
            namespace,
            advisory,
            reason,
            expires,
            remove,
        }) => {
            allow(
                &args.manage,
                namespace,
                advisory.as_deref(),
                reason.as_deref(),
                expires.as_deref(),
                *remove,
            )
            .await?;
            return Ok(ExitCode::SUCCESS);
        }
        None => {}
    }
    let Some(image_arg) = &args.image else {
        return Err(anyhow!(
            "name the image to scan (HOST[:PORT]/REPOSITORY:TAG), or `berth scan policy NAMESPACE`"
        ));
    };
    let image = berth_oci::reference::ImageRef::parse(image_arg)
        .map_err(|e| anyhow!("{image_arg}: {e}"))?;
    if !image.explicit_registry {
        return Err(anyhow!(
            "{image_arg}: name the registry that holds the image (HOST[:PORT]/REPOSITORY:TAG); it scans it"
        ));
    }
    let reference = match (&image.digest, &image.tag) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.clone(),
        (None, None) => "latest".to_owned(),
    };
    let mut manage = args.manage.clone();
    manage.registry = image.registry.clone();
    let format = manage.format;
    if format == Format::Dockerconfigjson {
        return Err(anyhow!("berth scan writes -o table, json or sarif"));
    }
    manage.format = Format::Json;
    let api = Api::connect(&manage).await?;
    let report: ScanReport = if args.stored {
        let path = format!(
            "/repositories/{}/manifests/{}/scan",
            image.repository,
            super::segment(&reference)
        );
        let mut report: ScanReport = api
            .get(&path, &[])
            .await
            .with_context(|| format!("reading the stored scan of {}", image_arg))?;
        if let Some(p) = &args.platform {
            report
                .images
                .retain(|i| i.platform.as_deref() == Some(p.as_str()));
            if report.images.is_empty() {
                return Err(anyhow!(
                    "{} has no scanned image for platform {p}",
                    image_arg
                ));
            }
            report.counts = report.images.iter().fold(
                Default::default(),
                |c: berth_registry::scanning::SeverityCounts, i| c.plus(i.counts),
            );
        }
        report
    } else {
        let body = json!({
            "repository": image.repository,
            "reference": reference,
            "platform": args.platform,
        });
        api.call(Method::POST, "/scans", &body)
            .await
            .with_context(|| format!("scanning {}", image_arg))?
    };
    let text = match format {
        Format::Table => table(&report),
        Format::Sarif => serde_json::to_string_pretty(&sarif(image_arg, &report))? + "\n",
        _ => serde_json::to_string_pretty(&report)? + "\n",
    };
    match &args.output_file {
        Some(p) => std::fs::write(p, text).with_context(|| format!("writing {}", p.display()))?,
        None => print!("{text}"),
    }
    for img in &report.images {
        for note in &img.notes {
            eprintln!(
                "note: {}: {note}",
                img.platform.as_deref().unwrap_or(&img.digest)
            );
        }
        if let Some(e) = &img.error {
            eprintln!(
                "error: {} could not be scanned: {e}",
                img.platform.as_deref().unwrap_or(&img.digest)
            );
        }
        if img.vulndb_at.is_none() {
            eprintln!("warning: the registry has no vulnerability data: run `berth vulndb import`");
        }
    }
    if let Some(level) = args.fail_on {
        let n = report.counts.at_least(level);
        if n > 0 {
            eprintln!(
                "berth scan: {n} finding{} at or above {level} in {}",
                if n == 1 { "" } else { "s" },
                image_arg
            );
            return Ok(ExitCode::from(1));
        }
    }
    if report.images.iter().any(|i| i.error.is_some()) {
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}

/// What `berth scan policy` sets (`None`: kept).
struct PolicyArgs<'a> {
    on_push: Option<&'a str>,
    block_severity: Option<&'a str>,
    unscanned: Option<&'a str>,
}

/// `berth scan policy`: shows the policy, after setting it when asked.
async fn policy(
    manage: &ManageArgs,
    namespace: &str,
    change: PolicyArgs<'_>,
) -> anyhow::Result<()> {
    let api = Api::connect(manage).await?;
    let path = format!("/namespaces/{}/scan-policy", super::segment(namespace));
    let mut body = serde_json::Map::new();
    if let Some(v) = change.on_push {
        body.insert("scan_on_push".into(), json!(v == "on"));
    }
    if let Some(v) = change.block_severity {
        body.insert("block_severity".into(), json!(v));
    }
    if let Some(v) = change.unscanned {
        body.insert("unscanned".into(), json!(v));
    }
    let view: Value = match body.is_empty() {
        false => api
            .call(Method::PUT, &path, &Value::Object(body))
            .await
            .with_context(|| format!("setting the scan policy of {namespace}"))?,
        true => api
            .get(&path, &[])
            .await
            .with_context(|| format!("reading the scan policy of {namespace}"))?,
    };
    manage.print(&view, || {
        let on = if view["scan_on_push"] == true {
            "on"
        } else {
            "off"
        };
        let by = match (view["updated_by"].as_str(), view["updated_at"].as_i64()) {
            (Some(who), at) => format!(" (set by {who} at {})", time(at)),
            _ => String::new(),
        };
        let block = view["block_severity"].as_str().unwrap_or("none");
        let unscanned = view["unscanned"].as_str().unwrap_or("allow");
        format!(
            "{namespace}: scan on push {on}{by}\n  block pulls with findings at or above: {block}\n  \
             pulls of images not scanned yet: {unscanned}\n"
        )
    });
    Ok(())
}

/// `berth scan allow`: lists, grants or removes allowances.
async fn allow(
    manage: &ManageArgs,
    namespace: &str,
    advisory: Option<&str>,
    reason: Option<&str>,
    expires: Option<&str>,
    remove: bool,
) -> anyhow::Result<()> {
    let api = Api::connect(manage).await?;
    let base = format!("/namespaces/{}/scan-allowances", super::segment(namespace));
    let Some(advisory) = advisory else {
        if reason.is_some() || expires.is_some() {
            return Err(anyhow!(
                "name the advisory to allow: berth scan allow {namespace} CVE-... --reason ..."
            ));
        }
        let list: Value = api
            .get(&base, &[])
            .await
            .with_context(|| format!("reading the allowances of {namespace}"))?;
        manage.print(&list, || {
            let rows: Vec<Vec<String>> = list["allowances"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|a| {
                    let expires = match a["expires_at"].as_i64() {
                        Some(t) if a["expired"] == true => format!("{} (expired)", time(Some(t))),
                        Some(t) => time(Some(t)),
                        None => "never".to_owned(),
                    };
                    vec![
                        a["advisory"].as_str().unwrap_or_default().to_owned(),
                        expires,
                        a["created_by"].as_str().unwrap_or("-").to_owned(),
                        a["reason"].as_str().unwrap_or_default().to_owned(),
                    ]
                })
                .collect();
            if rows.is_empty() {
                return format!("{namespace}: no allowances\n");
            }
            super::table(&["ADVISORY", "EXPIRES", "BY", "REASON"], &rows)
        });
        return Ok(());
    };
    let path = format!("{base}/{}", super::segment(advisory));
    if remove {
        api.delete(&path)
            .await
            .with_context(|| format!("removing the allowance of {advisory} in {namespace}"))?;
        eprintln!("removed the allowance of {advisory} in {namespace}");
        return Ok(());
    }
    let Some(reason) = reason else {
        return Err(anyhow!(
            "say why {advisory} is acceptable in {namespace}: --reason \"...\" (recorded with the \
             allowance and in the audit log)"
        ));
    };
    let view: Value = api
        .call(
            Method::PUT,
            &path,
            &json!({ "reason": reason, "expires": expires }),
        )
        .await
        .with_context(|| format!("allowing {advisory} in {namespace}"))?;
    manage.print(&view, || {
        let until = match view["expires_at"].as_i64() {
            Some(t) => format!("until {}", time(Some(t))),
            None => "until removed".to_owned(),
        };
        let expired = if view["expired"] == true {
            " (already expired: it allows nothing)"
        } else {
            ""
        };
        format!("{namespace}: {advisory} allowed {until}{expired}\n")
    });
    Ok(())
}

fn heading(img: &ImageScan) -> String {
    let c = img.counts;
    format!(
        "{}{} ({}, {} packages, scanned {}): {} critical, {} high, {} medium, {} low, {} unknown\n",
        img.platform
            .as_ref()
            .map(|p| format!("{p} "))
            .unwrap_or_default(),
        img.digest,
        img.distro.as_deref().unwrap_or("no distribution"),
        img.packages,
        time(Some(img.scanned_at)),
        c.critical,
        c.high,
        c.medium,
        c.low,
        c.unknown
    )
}

fn table(report: &ScanReport) -> String {
    let mut out = String::new();
    for img in &report.images {
        out.push_str(&heading(img));
        if img.findings.is_empty() {
            out.push('\n');
            continue;
        }
        let rows: Vec<Vec<String>> = img
            .findings
            .iter()
            .map(|f| {
                vec![
                    f.severity.as_str().to_uppercase(),
                    f.id.clone(),
                    f.package.clone(),
                    f.version.clone(),
                    if f.fixed.is_empty() {
                        "-".to_owned()
                    } else {
                        f.fixed.join(", ")
                    },
                    f.summary
                        .as_deref()
                        .map(|s| s.chars().take(60).collect())
                        .unwrap_or_else(|| "-".to_owned()),
                ]
            })
            .collect();
        out.push_str(&super::table(
            &[
                "SEVERITY",
                "VULNERABILITY",
                "PACKAGE",
                "VERSION",
                "FIXED IN",
                "SUMMARY",
            ],
            &rows,
        ));
        out.push('\n');
    }
    out
}

/// Percent-encodes a path for a URI, keeping `/` separators.
fn encode_path(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    for b in p.trim_start_matches('/').bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn level(s: Severity) -> &'static str {
    match s {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low | Severity::Unknown => "note",
    }
}

/// The `security-severity` GitHub reads (a CVSS-like score).
fn security_severity(s: Severity, cvss: Option<f64>) -> String {
    let score = cvss.unwrap_or(match s {
        Severity::Critical => 9.5,
        Severity::High => 8.0,
        Severity::Medium => 5.5,
        Severity::Low => 2.0,
        Severity::Unknown => 0.0,
    });
    format!("{score:.1}")
}

/// The SARIF 2.1.0 log of a scan: a rule per vulnerability, a result per
/// vulnerable package of each image, located at the file that declares the
/// package in the image's filesystem (`ROOTFS`).
pub fn sarif(image: &str, report: &ScanReport) -> Value {
    let mut rules: Vec<Value> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = Default::default();
    let mut results = Vec::new();
    for img in &report.images {
        for f in &img.findings {
            let i = *index.entry(f.id.clone()).or_insert_with(|| {
                let text = f.summary.clone().unwrap_or_else(|| f.id.clone());
                let mut ids = vec![f.id.clone()];
                ids.extend(f.aliases.iter().cloned());
                let mut rule = json!({
                    "id": f.id,
                    "name": f.id.replace(['-', '.'], ""),
                    "shortDescription": {"text": text},
                    "fullDescription": {"text": format!("{text} ({})", ids.join(", "))},
                    "defaultConfiguration": {"level": level(f.severity)},
                    "help": {"text": format!("{} is known as {}. Update the package to a fixed version.", f.id, ids.join(", "))},
                    "properties": {
                        "security-severity": security_severity(f.severity, f.cvss.as_ref().map(|c| c.score)),
                        "tags": ["security", "vulnerability", f.severity.as_str()],
                        "precision": "very-high"
                    }
                });
                if let Some(u) = f.url.as_ref().filter(|u| u.starts_with("https://") || u.starts_with("http://")) {
                    rule["helpUri"] = json!(u);
                }
                rules.push(rule);
                rules.len() - 1
            });
            let fixed = if f.fixed.is_empty() {
                "no fixed version is known".to_owned()
            } else {
                format!("fixed in {}", f.fixed.join(", "))
            };
            let place = img.platform.as_deref().unwrap_or(&img.digest);
            results.push(json!({
                "ruleId": f.id,
                "ruleIndex": i,
                "level": level(f.severity),
                "message": {"text": format!(
                    "{} {} ({}) in {image} ({place}) is affected by {} ({}); {fixed}.",
                    f.package, f.version, f.ecosystem.as_str(), f.id, f.severity
                )},
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": {"uri": encode_path(&f.path), "uriBaseId": "ROOTFS"},
                        "region": {"startLine": 1}
                    },
                    "message": {"text": format!("{place}, layer {}", f.layer)}
                }],
                "partialFingerprints": {"vulnerability/v1": format!("{}:{}", f.id, f.purl)},
                "properties": {"purl": f.purl, "image": image, "manifest": img.digest, "layer": f.layer}
            }));
        }
    }
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "berth-scan",
                "fullName": "berth scan: known vulnerabilities of container image packages (OSV)",
                "informationUri": "https://osv.dev/",
                "version": env!("CARGO_PKG_VERSION"),
                "semanticVersion": env!("CARGO_PKG_VERSION"),
                "rules": rules
            }},
            "originalUriBaseIds": {"ROOTFS": {"uri": "file:///"}},
            "results": results
        }]
    })
}
