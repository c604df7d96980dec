//! SARIF 2.1.0 output, as GitHub code scanning and other CI systems ingest it.
//!
//! Relative paths are reported against the `SRCROOT` base (the directory the
//! linter ran in), absolute ones as `file://` URIs. Mechanical fixes (an
//! explicit registry prefix) are included as SARIF `fixes`.

use std::path::Path;

use serde_json::{json, Value};

use super::{Finding, Rule};

/// The SARIF schema URI written into the log.
pub const SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";

/// Percent-encodes a path for a URI, keeping `/` separators.
fn encode_path(p: &Path) -> String {
    let s = p.to_string_lossy().replace('\\', "/");
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn artifact_location(path: &Path) -> Value {
    if path.is_absolute() {
        json!({"uri": format!("file://{}", encode_path(path))})
    } else {
        let rel = path.strip_prefix("./").unwrap_or(path);
        json!({"uri": encode_path(rel), "uriBaseId": "SRCROOT"})
    }
}

fn pascal(id: &str) -> String {
    id.split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// Builds the SARIF log for `findings`; `root` is the directory relative
/// paths are relative to.
pub fn log(findings: &[Finding], root: &Path) -> Value {
    let rules: Vec<Value> = Rule::ALL
        .iter()
        .map(|r| {
            json!({
                "id": r.id(),
                "name": pascal(r.id()),
                "shortDescription": {"text": r.description()},
                "fullDescription": {"text": r.description()},
                "defaultConfiguration": {"level": r.default_level().as_str()},
                "help": {"text": r.description()},
                "properties": {"tags": ["containers", "supply-chain"]}
            })
        })
        .collect();
    let results: Vec<Value> = findings
        .iter()
        .map(|f| {
            let index = Rule::ALL.iter().position(|r| *r == f.rule).unwrap_or(0);
            let location = artifact_location(&f.path);
            let end = f.column + f.reference.len();
            let mut region = json!({"startLine": f.line, "startColumn": f.column});
            if f.verbatim {
                region["endColumn"] = json!(end);
            }
            let mut result = json!({
                "ruleId": f.rule.id(),
                "ruleIndex": index,
                "level": f.level.as_str(),
                "message": {"text": format!("{}. Fix: {}.", f.message, f.suggestion)},
                "locations": [{"physicalLocation": {"artifactLocation": location, "region": region}}],
                "partialFingerprints": {
                    "imageReference/v1": format!("{}:{}:{}", f.rule.id(), f.path.display(), f.reference)
                }
            });
            if let Some(rep) = &f.replacement {
                result["fixes"] = json!([{
                    "description": {"text": f.suggestion},
                    "artifactChanges": [{
                        "artifactLocation": artifact_location(&f.path),
                        "replacements": [{
                            "deletedRegion": {"startLine": f.line, "startColumn": f.column, "endColumn": end},
                            "insertedContent": {"text": rep}
                        }]
                    }]
                }]);
            }
            result
        })
        .collect();
    let root_uri = format!("file://{}/", encode_path(root).trim_end_matches('/'));
    json!({
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "berth-lint",
                "fullName": "berth lint: image reference best practices",
                "version": env!("CARGO_PKG_VERSION"),
                "semanticVersion": env!("CARGO_PKG_VERSION"),
                "rules": rules
            }},
            "originalUriBaseIds": {"SRCROOT": {"uri": root_uri}},
            "columnKind": "utf16CodeUnits",
            "results": results
        }]
    })
}
