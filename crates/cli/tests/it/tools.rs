//! `berth tags`, `berth lint` and `berth inspect` through the real binary.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common;

/// Runs `berth ARGS` in `dir`.
pub fn berth(dir: &Path, args: &[&str]) -> Output {
    Command::new(common::berth_bin())
        .args(args)
        .current_dir(dir)
        .env_remove("GITHUB_ACTIONS")
        .env_remove("GITLAB_CI")
        .env_remove("GITHUB_OUTPUT")
        .env("DOCKER_CONFIG", dir.join(".no-docker-config"))
        .output()
        .expect("run berth")
}

/// Runs `berth ARGS` and insists on success; returns stdout.
pub fn berth_ok(dir: &Path, args: &[&str]) -> String {
    let out = berth(dir, args);
    assert!(
        out.status.success(),
        "berth {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/tests/fixtures")
}

/// The SARIF multitool installed by scripts/install-test-deps-tools.sh.
fn sarif_multitool() -> Command {
    let mut c = Command::new("npx");
    c.args(["--no-install", "@microsoft/sarif-multitool"]);
    c.env("DOTNET_SYSTEM_GLOBALIZATION_INVARIANT", "1");
    c
}

#[test]
fn lint_reports_fixtures_and_sarif_validates() {
    let tmp = tempfile::tempdir().unwrap();
    let sarif = tmp.path().join("lint.sarif");
    // Errors in the fixtures: exit status 1.
    let out = berth(
        &fixtures(),
        &[
            "lint",
            "-o",
            "sarif",
            "--output-file",
            sarif.to_str().unwrap(),
            ".",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log: serde_json::Value = serde_json::from_slice(&std::fs::read(&sarif).unwrap()).unwrap();
    let results = log["runs"][0]["results"].as_array().unwrap();
    assert_eq!(results.len(), 25);
    let uris: std::collections::BTreeSet<&str> = results
        .iter()
        .map(|r| {
            r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(
        uris.into_iter().collect::<Vec<_>>(),
        [
            "compose/docker-compose.yml",
            "docker/Dockerfile",
            "helm/chart/values.yaml",
            "k8s/deployment.yaml"
        ]
    );

    // An independent validator: Microsoft's SARIF multitool (schema + rules).
    assert!(
        common::have("npx"),
        "npx missing: run scripts/install-test-deps-tools.sh"
    );
    let v = sarif_multitool()
        .arg("validate")
        .arg(&sarif)
        .output()
        .expect("run sarif-multitool");
    let text = String::from_utf8_lossy(&v.stdout).to_string() + &String::from_utf8_lossy(&v.stderr);
    assert!(
        v.status.success(),
        "sarif-multitool failed (run scripts/install-test-deps-tools.sh):\n{text}"
    );
    assert!(text.contains("Analysis completed successfully"), "{text}");
    assert!(
        !text.contains(": error "),
        "SARIF validation errors:\n{text}"
    );
}

#[test]
fn lint_json_severity_and_fail_on() {
    let dir = fixtures();
    let json = berth(&dir, &["lint", "-o", "json", "compose"]);
    assert_eq!(json.status.code(), Some(1));
    let findings: Vec<serde_json::Value> = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(findings.len(), 7);
    assert_eq!(findings[0]["rule"], "implicit-registry");
    assert_eq!(findings[0]["line"], 6);
    assert_eq!(findings[0]["normalized"], "docker.io/library/postgres:16");
    // Downgrade the error rules: success.
    let ok = berth(
        &dir,
        &[
            "lint",
            "compose",
            "--severity",
            "missing-tag=warning",
            "--severity",
            "latest-tag=note",
        ],
    );
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    // Fail on warnings too.
    let strict = berth(
        &dir,
        &[
            "lint",
            "helm",
            "--fail-on",
            "warning",
            "--severity",
            "latest-tag=off",
        ],
    );
    assert_eq!(strict.status.code(), Some(1));
    let text = String::from_utf8_lossy(&strict.stdout);
    assert!(
        text.contains("helm/chart/values.yaml:12:3: warning[implicit-registry]"),
        "{text}"
    );
    assert!(!text.contains("latest-tag"), "{text}");
    // Bad flags and unreadable paths are errors (2), told apart from
    // findings (1).
    for args in [
        &["lint", "--severity", "nope=error"][..],
        &["lint", "--severity", "latest-tag=loud", "compose"],
        &["lint", "--fail-on", "loud", "compose"],
        &["lint", "nonexistent.yml"],
        &[
            "lint",
            "-o",
            "json",
            "--output-file",
            "/nonexistent-dir/x.json",
            "compose",
        ],
    ] {
        let out = berth(&dir, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(!err.trim().is_empty(), "{args:?}: no message");
    }
    let missing = berth(&dir, &["lint", "nonexistent.yml"]);
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("nonexistent.yml: no such file"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
}

#[test]
fn tags_for_github_actions() {
    let tmp = tempfile::tempdir().unwrap();
    let event = tmp.path().join("event.json");
    std::fs::write(
        &event,
        r#"{"repository":{"default_branch":"main","license":{"spdx_id":"MIT"}}}"#,
    )
    .unwrap();
    let output = tmp.path().join("github_output");
    let out = Command::new(common::berth_bin())
        .args([
            "tags",
            "-o",
            "github",
            "-i",
            "ghcr.io/acme/shop",
            "--template",
            "{{branch}}-{{date}}",
        ])
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_EVENT_NAME", "push")
        .env("GITHUB_REF", "refs/heads/main")
        .env("GITHUB_SHA", "0123456789abcdef0123456789abcdef01234567")
        .env("GITHUB_REPOSITORY", "acme/shop")
        .env("GITHUB_SERVER_URL", "https://github.com")
        .env("GITHUB_EVENT_PATH", &event)
        .env("GITHUB_OUTPUT", &output)
        .env("SOURCE_DATE_EPOCH", "1714566645")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&output).unwrap();
    let tags_block: Vec<&str> = text
        .lines()
        .skip(1)
        .take_while(|l| !l.starts_with("berth_"))
        .collect();
    assert_eq!(
        tags_block,
        [
            "ghcr.io/acme/shop:latest",
            "ghcr.io/acme/shop:main",
            "ghcr.io/acme/shop:main-0123456",
            "ghcr.io/acme/shop:sha-0123456",
            "ghcr.io/acme/shop:0123456789abcdef0123456789abcdef01234567",
            "ghcr.io/acme/shop:main-20240501",
        ]
    );
    assert!(text.contains("org.opencontainers.image.created=2024-05-01T12:30:45Z"));
    assert!(text.contains("org.opencontainers.image.source=https://github.com/acme/shop"));
    assert!(text.contains("org.opencontainers.image.licenses=MIT"));
    assert!(text.contains("\nversion=main\n"));

    // Flags only, JSON.
    let json = berth_ok(
        tmp.path(),
        &[
            "tags",
            "--ci",
            "none",
            "--git-tag",
            "v0.3.0-rc.2",
            "--sha",
            "abcdef1",
            "-o",
            "json",
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        v["tags"],
        serde_json::json!(["v0.3.0-rc.2", "0.3.0-rc.2", "sha-abcdef1", "abcdef1"])
    );
    assert_eq!(v["version"], "0.3.0-rc.2");
}

#[test]
fn tags_without_context_fail_and_default_branch_is_main() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // No CI environment and no flags: an error naming what is missing,
    // not an empty list a shell loop would silently skip.
    let out = berth(dir, &["tags"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no git ref (--ref, --branch, --git-tag or --pr)"),
        "{err}"
    );
    assert!(err.contains("no CI environment was detected"), "{err}");
    assert!(out.stdout.is_empty());
    // A branch push of `main` gets `latest` without --default-branch.
    let main = berth_ok(
        dir,
        &[
            "tags",
            "--ci",
            "none",
            "--branch",
            "main",
            "--sha",
            "abc1234def",
        ],
    );
    assert!(main.lines().any(|l| l == "latest"), "{main}");
    let dev = berth_ok(
        dir,
        &[
            "tags",
            "--ci",
            "none",
            "--branch",
            "main",
            "--default-branch",
            "develop",
        ],
    );
    assert!(!dev.lines().any(|l| l == "latest"), "{dev}");
    // The JSON has the `images` key its help promises.
    let json: serde_json::Value = serde_json::from_str(&berth_ok(
        dir,
        &[
            "tags",
            "--ci",
            "none",
            "--git-tag",
            "v1.2.3",
            "-i",
            "ghcr.io/acme/shop",
            "-o",
            "json",
        ],
    ))
    .unwrap();
    assert_eq!(json["images"], serde_json::json!(["ghcr.io/acme/shop"]));
    assert_eq!(json["tags"][0], "ghcr.io/acme/shop:latest");
    // No rustdoc link syntax in the help.
    let help = berth_ok(dir, &["tags", "--help"]);
    assert!(!help.contains("[`"), "{help}");
    assert!(help.contains("else main"), "{help}");
}
