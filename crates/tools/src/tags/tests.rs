//! Table-driven tests: one row per tagging convention.

use std::collections::HashMap;

use super::env::{context, Ci};
use super::*;

const SHA: &str = "abc1234def5678900112233445566778899aabbc";
const T: &str = "2024-05-01T12:30:45Z";

fn ctx(git_ref: Option<GitRef>, event: Option<Event>) -> BuildContext {
    BuildContext {
        event,
        git_ref,
        sha: Some(SHA.to_owned()),
        default_branch: Some("main".to_owned()),
        time: Timestamp::parse(T).unwrap(),
        source: Some("https://github.com/acme/shop".to_owned()),
        title: Some("shop".to_owned()),
        licenses: Some("Apache-2.0".to_owned()),
    }
}

fn branch(b: &str) -> Option<GitRef> {
    Some(GitRef::Branch(b.to_owned()))
}
fn tag(t: &str) -> Option<GitRef> {
    Some(GitRef::Tag(t.to_owned()))
}

fn opts(kinds: &[Kind], latest: LatestPolicy, templates: &[&str]) -> TagOptions {
    TagOptions {
        kinds: if kinds.is_empty() {
            DEFAULT_KINDS.to_vec()
        } else {
            kinds.to_vec()
        },
        latest,
        templates: templates.iter().map(|s| s.to_string()).collect(),
        short_sha_len: 7,
    }
}

#[test]
fn tagging_conventions() {
    use Kind::*;
    use LatestPolicy as L;
    let rows: Vec<(&str, BuildContext, TagOptions, Vec<&str>)> = vec![
        (
            "default branch gets latest",
            ctx(branch("main"), None),
            opts(&[], L::Auto, &[]),
            vec!["latest", "main", "main-abc1234", "sha-abc1234", SHA],
        ),
        (
            "other branch: no latest",
            ctx(branch("develop"), None),
            opts(&[], L::Auto, &[]),
            vec!["develop", "develop-abc1234", "sha-abc1234", SHA],
        ),
        (
            "branch sanitised",
            ctx(branch("feature/Login page#2"), None),
            opts(&[Branch, BranchSha], L::Auto, &[]),
            vec!["feature-Login-page-2", "feature-Login-page-2-abc1234"],
        ),
        (
            "branch with leading dot/dash and unicode",
            ctx(branch("-.fix/ünïcode"), None),
            opts(&[Branch], L::Auto, &[]),
            vec!["fix-n-code"],
        ),
        (
            "scheduled default-branch build: date, no latest",
            ctx(branch("main"), Some(Event::Schedule)),
            opts(&[Latest, Date], L::Auto, &[]),
            vec!["20240501"],
        ),
        (
            "manual run on default branch gets latest",
            ctx(branch("main"), Some(Event::Manual)),
            opts(&[Latest], L::Auto, &[]),
            vec!["latest"],
        ),
        (
            "pull request",
            ctx(Some(GitRef::PullRequest(42)), None),
            opts(&[], L::Auto, &[]),
            vec!["pr-42", "sha-abc1234", SHA],
        ),
        (
            "semver release",
            ctx(tag("v1.2.3"), None),
            opts(&[], L::Auto, &[]),
            vec!["latest", "v1.2.3", "1.2.3", "1.2", "1", "sha-abc1234", SHA],
        ),
        (
            "semver without v",
            ctx(tag("2.10.0"), None),
            opts(&[Semver], L::Auto, &[]),
            vec!["2.10.0", "2.10", "2"],
        ),
        (
            "0.x has no major tag",
            ctx(tag("v0.4.1"), None),
            opts(&[Latest, Semver], L::Auto, &[]),
            vec!["latest", "v0.4.1", "0.4.1", "0.4"],
        ),
        (
            "pre-release: no latest, no short versions",
            ctx(tag("v2.0.0-rc.1"), None),
            opts(&[Latest, Semver], L::Auto, &[]),
            vec!["v2.0.0-rc.1", "2.0.0-rc.1"],
        ),
        (
            "build metadata: + becomes -",
            ctx(tag("v1.0.0+build.7"), None),
            opts(&[Semver], L::Never, &[]),
            vec!["v1.0.0-build.7", "1.0.0-build.7", "1.0", "1"],
        ),
        (
            "non-semver git tag",
            ctx(tag("release/2024"), None),
            opts(&[Latest, Semver], L::Auto, &[]),
            vec!["release-2024"],
        ),
        (
            "latest=branch skips releases",
            ctx(tag("v1.2.3"), None),
            opts(&[Latest], L::Branch, &[]),
            vec![],
        ),
        (
            "latest=release skips default branch",
            ctx(branch("main"), None),
            opts(&[Latest], L::Release, &[]),
            vec![],
        ),
        (
            "latest=never",
            ctx(branch("main"), None),
            opts(&[Latest], L::Never, &[]),
            vec![],
        ),
        (
            "branch-sha, sha and full sha",
            ctx(branch("dev"), None),
            opts(&[BranchSha, Sha, FullSha], L::Auto, &[]),
            vec!["dev-abc1234", "sha-abc1234", SHA],
        ),
        (
            "date and datetime",
            ctx(branch("dev"), None),
            opts(&[Date, Datetime], L::Auto, &[]),
            vec!["20240501", "20240501-123045"],
        ),
        (
            "templates",
            ctx(branch("main"), None),
            opts(
                &[Branch],
                L::Auto,
                &["{{branch}}-{{date}}", "build-{{ short_sha }}", "pr-{{pr}}"],
            ),
            vec!["main", "main-20240501", "build-abc1234"],
        ),
        (
            "semver templates",
            ctx(tag("v3.1.4"), None),
            opts(
                &[Kind::Latest],
                L::Never,
                &["{{major}}.{{minor}}-alpine", "v{{version}}"],
            ),
            vec!["3.1-alpine", "v3.1.4"],
        ),
        (
            "duplicates removed",
            ctx(branch("main"), None),
            opts(&[Branch], L::Auto, &["{{branch}}"]),
            vec!["main"],
        ),
    ];
    for (name, c, o, want) in rows {
        let got = compute(&c, &o).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn long_branches_fit_in_a_tag() {
    let long = "x".repeat(300);
    let got = compute(
        &ctx(branch(&long), None),
        &opts(&[Kind::Branch, Kind::BranchSha], LatestPolicy::Auto, &[]),
    )
    .unwrap();
    assert_eq!(got[0].len(), 128);
    assert_eq!(got[1].len(), 128);
    assert!(got[1].ends_with("-abc1234"));
}

#[test]
fn errors() {
    let c = ctx(branch("main"), None);
    assert!(matches!(
        compute(&c, &opts(&[], LatestPolicy::Auto, &["{{nope}}"])),
        Err(TagError::Template { .. })
    ));
    assert!(matches!(
        compute(&c, &opts(&[], LatestPolicy::Auto, &["{{branch"])),
        Err(TagError::Template { .. })
    ));
    let mut bad = c.clone();
    bad.sha = Some("not-a-sha".into());
    assert!(matches!(
        compute(&bad, &TagOptions::default()),
        Err(TagError::Sha(_))
    ));
}

#[test]
fn labels_carry_oci_annotations() {
    let c = ctx(tag("v1.2.3"), None);
    let tags = compute(&c, &TagOptions::default()).unwrap();
    let l = labels(&c, &tags);
    assert_eq!(l["org.opencontainers.image.created"], T);
    assert_eq!(
        l["org.opencontainers.image.source"],
        "https://github.com/acme/shop"
    );
    assert_eq!(l["org.opencontainers.image.revision"], SHA);
    assert_eq!(l["org.opencontainers.image.version"], "1.2.3");
    assert_eq!(l["org.opencontainers.image.title"], "shop");
    assert_eq!(l["org.opencontainers.image.licenses"], "Apache-2.0");
    let b = ctx(branch("feature/x"), None);
    let tags = compute(&b, &TagOptions::default()).unwrap();
    assert_eq!(
        labels(&b, &tags)["org.opencontainers.image.version"],
        "feature-x"
    );
}

/// Environment variables and the tags they must produce.
type EnvRow<'a> = (Vec<(&'a str, &'a str)>, Vec<&'a str>);

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let m: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k: &str| m.get(k).cloned()
}

#[test]
fn github_actions_environment() {
    let payload = serde_json::json!({
        "repository": {"default_branch": "main", "license": {"spdx_id": "MIT"}},
        "pull_request": {"number": 17}
    });
    let now = Timestamp(0);
    let base = [
        ("GITHUB_ACTIONS", "true"),
        ("GITHUB_SHA", SHA),
        ("GITHUB_REPOSITORY", "acme/shop"),
        ("GITHUB_SERVER_URL", "https://github.com"),
    ];
    let rows: Vec<EnvRow> = vec![
        (
            vec![
                ("GITHUB_EVENT_NAME", "push"),
                ("GITHUB_REF", "refs/heads/main"),
            ],
            vec!["latest", "main", "main-abc1234", "sha-abc1234", SHA],
        ),
        (
            vec![
                ("GITHUB_EVENT_NAME", "push"),
                ("GITHUB_REF", "refs/tags/v1.4.0"),
            ],
            vec!["latest", "v1.4.0", "1.4.0", "1.4", "1", "sha-abc1234", SHA],
        ),
        (
            vec![
                ("GITHUB_EVENT_NAME", "pull_request"),
                ("GITHUB_REF", "refs/pull/17/merge"),
            ],
            vec!["pr-17", "sha-abc1234", SHA],
        ),
        (
            vec![
                ("GITHUB_EVENT_NAME", "schedule"),
                ("GITHUB_REF", "refs/heads/main"),
                ("SOURCE_DATE_EPOCH", "1714566645"),
            ],
            vec!["main", "main-abc1234", "sha-abc1234", SHA, "20240501"],
        ),
    ];
    for (vars, want) in rows {
        let all: Vec<_> = base.iter().chain(vars.iter()).copied().collect();
        let c = context(Ci::Auto, &env(&all), Some(&payload), now);
        assert_eq!(
            compute(&c, &TagOptions::default()).unwrap(),
            want,
            "{vars:?}"
        );
        assert_eq!(c.source.as_deref(), Some("https://github.com/acme/shop"));
        assert_eq!(c.title.as_deref(), Some("shop"));
        assert_eq!(c.licenses.as_deref(), Some("MIT"));
    }
}

#[test]
fn gitlab_ci_environment() {
    let base = [
        ("GITLAB_CI", "true"),
        ("CI_COMMIT_SHA", SHA),
        ("CI_DEFAULT_BRANCH", "trunk"),
        ("CI_PROJECT_URL", "https://gitlab.example.com/acme/shop"),
        ("CI_PROJECT_NAME", "shop"),
        ("CI_COMMIT_TIMESTAMP", "2024-05-01T14:30:45+02:00"),
    ];
    let rows: Vec<EnvRow> = vec![
        (
            vec![
                ("CI_PIPELINE_SOURCE", "push"),
                ("CI_COMMIT_BRANCH", "trunk"),
                ("CI_COMMIT_REF_NAME", "trunk"),
            ],
            vec!["latest", "trunk", "trunk-abc1234", "sha-abc1234", SHA],
        ),
        (
            vec![
                ("CI_PIPELINE_SOURCE", "push"),
                ("CI_COMMIT_TAG", "v0.9.0"),
                ("CI_COMMIT_REF_NAME", "v0.9.0"),
            ],
            vec!["latest", "v0.9.0", "0.9.0", "0.9", "sha-abc1234", SHA],
        ),
        (
            vec![
                ("CI_PIPELINE_SOURCE", "merge_request_event"),
                ("CI_MERGE_REQUEST_IID", "5"),
                ("CI_COMMIT_REF_NAME", "feat/x"),
            ],
            vec!["pr-5", "sha-abc1234", SHA],
        ),
        (
            vec![
                ("CI_PIPELINE_SOURCE", "push"),
                ("CI_COMMIT_BRANCH", "feat/x"),
            ],
            vec!["feat-x", "feat-x-abc1234", "sha-abc1234", SHA],
        ),
    ];
    for (vars, want) in rows {
        let all: Vec<_> = base.iter().chain(vars.iter()).copied().collect();
        let c = context(Ci::Auto, &env(&all), None, Timestamp(0));
        assert_eq!(
            compute(&c, &TagOptions::default()).unwrap(),
            want,
            "{vars:?}"
        );
        assert_eq!(c.time.to_string(), T);
    }
    // Ci::None ignores the environment.
    let c = context(Ci::None, &env(&base), None, Timestamp(0));
    assert_eq!(c.sha, None);
}

#[test]
fn full_refs() {
    assert_eq!(GitRef::from_full("refs/heads/a/b"), branch("a/b"));
    assert_eq!(GitRef::from_full("refs/tags/v1"), tag("v1"));
    assert_eq!(
        GitRef::from_full("refs/pull/9/merge"),
        Some(GitRef::PullRequest(9))
    );
    assert_eq!(
        GitRef::from_full("refs/merge-requests/3/head"),
        Some(GitRef::PullRequest(3))
    );
    assert_eq!(GitRef::from_full("main"), None);
}
