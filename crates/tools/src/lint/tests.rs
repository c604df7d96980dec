//! Lint tests on the fixtures under `tests/fixtures`.

use super::*;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// `(file, line, rule)` triples, for compact assertions.
fn summary(findings: &[Finding]) -> Vec<(String, usize, &'static str)> {
    let root = fixtures();
    findings
        .iter()
        .map(|f| {
            let p = f.path.strip_prefix(&root).unwrap_or(&f.path);
            (p.display().to_string(), f.line, f.rule.id())
        })
        .collect()
}

#[test]
fn compose_file() {
    let f = lint_paths(&[fixtures().join("compose")], &Config::default()).unwrap();
    assert_eq!(
        summary(&f),
        [
            ("compose/docker-compose.yml".into(), 6, "implicit-registry"),
            ("compose/docker-compose.yml".into(), 6, "missing-digest"),
            ("compose/docker-compose.yml".into(), 16, "implicit-registry"),
            ("compose/docker-compose.yml".into(), 16, "missing-tag"),
            ("compose/docker-compose.yml".into(), 16, "missing-digest"),
            ("compose/docker-compose.yml".into(), 26, "latest-tag"),
            ("compose/docker-compose.yml".into(), 26, "missing-digest"),
        ]
    );
    assert_eq!(f[0].file_kind, FileKind::Compose);
    assert_eq!(f[0].column, 12);
    assert_eq!(f[0].reference, "postgres:16");
    assert_eq!(
        f[0].replacement.as_deref(),
        Some("docker.io/library/postgres:16")
    );
    assert!(f[0].suggestion.contains("docker.io/library/postgres:16"));
    assert_eq!(f[0].level, Level::Warning);
    assert_eq!((f[2].reference.as_str(), f[2].column), ("redis", 13));
    assert_eq!(f[3].level, Level::Error);
    assert_eq!(f[1].level, Level::Note);
}

#[test]
fn kubernetes_manifest() {
    let f = lint_paths(
        &[fixtures().join("k8s/deployment.yaml")],
        &Config::default(),
    )
    .unwrap();
    assert_eq!(
        summary(&f),
        [
            ("k8s/deployment.yaml".into(), 19, "missing-digest"),
            ("k8s/deployment.yaml".into(), 23, "latest-tag"),
            ("k8s/deployment.yaml".into(), 23, "missing-digest"),
            ("k8s/deployment.yaml".into(), 30, "implicit-registry"),
            ("k8s/deployment.yaml".into(), 30, "missing-digest"),
            ("k8s/deployment.yaml".into(), 31, "implicit-registry"),
            ("k8s/deployment.yaml".into(), 31, "missing-tag"),
            ("k8s/deployment.yaml".into(), 31, "missing-digest"),
        ]
    );
    assert!(f.iter().all(|x| x.file_kind == FileKind::Kubernetes));
    assert_eq!(f[5].column, 18);
    assert!(f[3]
        .suggestion
        .contains("docker.io/envoyproxy/envoy:v1.30.1"));
}

#[test]
fn helm_values_and_dockerfile() {
    let f = lint_paths(
        &[fixtures().join("helm"), fixtures().join("docker")],
        &Config::default(),
    )
    .unwrap();
    assert_eq!(
        summary(&f),
        [
            ("docker/Dockerfile".into(), 4, "implicit-registry"),
            ("docker/Dockerfile".into(), 4, "missing-digest"),
            ("docker/Dockerfile".into(), 16, "implicit-registry"),
            ("docker/Dockerfile".into(), 16, "missing-tag"),
            ("docker/Dockerfile".into(), 16, "missing-digest"),
            ("helm/chart/values.yaml".into(), 4, "missing-digest"),
            ("helm/chart/values.yaml".into(), 12, "implicit-registry"),
            ("helm/chart/values.yaml".into(), 12, "latest-tag"),
            ("helm/chart/values.yaml".into(), 12, "missing-digest"),
            ("helm/chart/values.yaml".into(), 17, "missing-digest"),
        ]
    );
    // ARG defaults are substituted; the substituted text is not verbatim.
    assert_eq!(f[0].reference, "golang:1.22-bookworm");
    assert_eq!(f[0].replacement, None);
    assert_eq!(f[0].file_kind, FileKind::Dockerfile);
    assert_eq!(f[5].reference, "docker.io/bitnami/redis");
    assert_eq!(f[5].file_kind, FileKind::HelmValues);
}

#[test]
fn severities_are_configurable() {
    let mut c = Config::default();
    c.set(Rule::MissingDigest, Level::Off);
    c.set(Rule::ImplicitRegistry, Level::Error);
    let f = lint_text(
        Path::new("compose.yaml"),
        FileKind::Compose,
        "services:\n  a:\n    image: nginx:1.27\n",
        &c,
    );
    assert_eq!(f.len(), 1);
    assert_eq!(
        (f[0].rule, f[0].level),
        (Rule::ImplicitRegistry, Level::Error)
    );
    let clean = "services:\n  a:\n    image: ghcr.io/o/a:1@sha256:4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945\n";
    assert!(lint_text(
        Path::new("c.yaml"),
        FileKind::Compose,
        clean,
        &Config::default()
    )
    .is_empty());
    let bad = lint_text(
        Path::new("c.yaml"),
        FileKind::Yaml,
        "image: Nginx:1\n",
        &Config::default(),
    );
    assert_eq!(bad[0].rule, Rule::InvalidReference);
}

#[test]
fn classification() {
    assert_eq!(
        classify(Path::new("a/Dockerfile.prod"), None),
        Some(FileKind::Dockerfile)
    );
    assert_eq!(
        classify(Path::new("api.Containerfile"), None),
        Some(FileKind::Dockerfile)
    );
    assert_eq!(
        classify(Path::new("compose.yaml"), Some("")),
        Some(FileKind::Compose)
    );
    assert_eq!(
        classify(Path::new("x.yml"), Some("apiVersion: v1\nkind: Pod\n")),
        Some(FileKind::Kubernetes)
    );
    assert_eq!(
        classify(Path::new("values-prod.yaml"), Some("image: {}\n")),
        Some(FileKind::HelmValues)
    );
    assert_eq!(
        classify(Path::new(".gitlab-ci.yml"), Some("build:\n")),
        Some(FileKind::Yaml)
    );
    assert_eq!(classify(Path::new("README.md"), None), None);
}

#[test]
fn sarif_shape() {
    let f = lint_paths(&[fixtures().join("compose")], &Config::default()).unwrap();
    let rel: Vec<Finding> = f
        .into_iter()
        .map(|mut x| {
            x.path = x.path.strip_prefix(fixtures()).unwrap().to_owned();
            x
        })
        .collect();
    let log = sarif::log(&rel, &fixtures());
    let run = &log["runs"][0];
    assert_eq!(log["version"], "2.1.0");
    assert_eq!(
        run["tool"]["driver"]["rules"].as_array().unwrap().len(),
        Rule::ALL.len()
    );
    let r0 = &run["results"][0];
    assert_eq!(r0["ruleId"], "implicit-registry");
    assert_eq!(r0["level"], "warning");
    let loc = &r0["locations"][0]["physicalLocation"];
    assert_eq!(loc["artifactLocation"]["uri"], "compose/docker-compose.yml");
    assert_eq!(loc["artifactLocation"]["uriBaseId"], "SRCROOT");
    assert_eq!(loc["region"]["startLine"], 6);
    assert_eq!(
        r0["fixes"][0]["artifactChanges"][0]["replacements"][0]["insertedContent"]["text"],
        "docker.io/library/postgres:16"
    );
}
