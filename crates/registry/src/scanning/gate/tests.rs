//! The verdict: severity order, allowances and their expiry, index
//! children, unscanned images.

use super::*;
use berth_scan::Ecosystem;

fn d(n: u8) -> Digest {
    Digest::parse(&format!("sha256:{}", format!("{n:02x}").repeat(32))).unwrap()
}

fn finding(id: &str, severity: Severity, package: &str) -> Finding {
    Finding {
        id: id.to_owned(),
        aliases: vec![format!("GHSA-{id}")],
        advisories: vec![format!("DSA-{id}")],
        related: Vec::new(),
        severity,
        cvss: None,
        summary: None,
        url: None,
        fixed: vec!["9.9".to_owned()],
        ecosystem: Ecosystem::Deb,
        package: package.to_owned(),
        version: "1.0".to_owned(),
        source: None,
        purl: format!("pkg:deb/debian/{package}@1.0"),
        layer: "sha256:00".to_owned(),
        path: "/var/lib/dpkg/status".to_owned(),
    }
}

fn image(n: u8, findings: Vec<Finding>) -> ImageResult {
    ImageResult {
        digest: d(n),
        platform: Some(format!("linux/p{n}")),
        result: Some(ScanOutcome::Findings(findings)),
    }
}

fn unscanned(n: u8) -> ImageResult {
    ImageResult {
        digest: d(n),
        platform: None,
        result: None,
    }
}

fn gate(block: Option<Severity>, unscanned: Unscanned) -> NamespaceGate {
    NamespaceGate {
        block,
        unscanned,
        scan_on_push: false,
        allowances: Vec::new(),
    }
}

fn ids(o: &Outcome) -> Vec<&str> {
    match o {
        Outcome::Vulnerable { worst, .. } => worst.iter().map(|h| h.id.as_str()).collect(),
        _ => Vec::new(),
    }
}

#[test]
fn severities_at_or_above_the_policy_block_worst_first() {
    let img = image(
        1,
        vec![
            finding("CVE-1", Severity::Medium, "zlib"),
            finding("CVE-2", Severity::High, "openssl"),
            finding("CVE-3", Severity::Critical, "glibc"),
            finding("CVE-4", Severity::Unknown, "tar"),
        ],
    );
    let high = decide(
        &gate(Some(Severity::High), Unscanned::Allow),
        std::slice::from_ref(&img),
        0,
    );
    assert_eq!(ids(&high.outcome), ["CVE-3", "CVE-2"]);
    let critical = decide(
        &gate(Some(Severity::Critical), Unscanned::Allow),
        std::slice::from_ref(&img),
        0,
    );
    assert_eq!(ids(&critical.outcome), ["CVE-3"]);
    // Unrated findings never block; `low` takes everything rated.
    let low = decide(
        &gate(Some(Severity::Low), Unscanned::Allow),
        std::slice::from_ref(&img),
        0,
    );
    assert_eq!(ids(&low.outcome), ["CVE-3", "CVE-2", "CVE-1"]);
    // No severity: nothing blocks.
    let none = decide(&gate(None, Unscanned::Deny), &[img], 0);
    assert_eq!(none.outcome, Outcome::Clear);
}

#[test]
fn at_most_a_few_findings_are_named_with_the_total() {
    let many: Vec<Finding> = (0..7)
        .map(|i| finding(&format!("CVE-{i}"), Severity::High, &format!("p{i}")))
        .collect();
    let out = decide(
        &gate(Some(Severity::High), Unscanned::Allow),
        &[image(1, many)],
        0,
    );
    match out.outcome {
        Outcome::Vulnerable { worst, total } => {
            assert_eq!(worst.len(), MAX_NAMED);
            assert_eq!(total, 7);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn allowances_by_id_alias_or_record_until_they_expire() {
    let img = image(1, vec![finding("CVE-9", Severity::Critical, "glibc")]);
    for advisory in ["CVE-9", "GHSA-CVE-9", "DSA-CVE-9"] {
        let mut g = gate(Some(Severity::High), Unscanned::Allow);
        g.allowances.push(Allowed {
            advisory: advisory.to_owned(),
            expires_at: Some(1_000),
        });
        let before = decide(&g, std::slice::from_ref(&img), 999);
        assert_eq!(before.outcome, Outcome::Clear, "{advisory}");
        // The verdict holds only until the allowance expires.
        assert_eq!(before.until, Some(1_000));
        let after = decide(&g, std::slice::from_ref(&img), 1_000);
        assert_eq!(ids(&after.outcome), ["CVE-9"], "{advisory}");
    }
    let mut g = gate(Some(Severity::High), Unscanned::Allow);
    g.allowances.push(Allowed {
        advisory: "CVE-other".to_owned(),
        expires_at: None,
    });
    assert_eq!(ids(&decide(&g, &[img], 0).outcome), ["CVE-9"]);
}

#[test]
fn an_index_is_refused_when_any_image_would_be() {
    let g = gate(Some(Severity::High), Unscanned::Allow);
    let clean = image(1, vec![finding("CVE-1", Severity::Low, "zlib")]);
    let bad = image(2, vec![finding("CVE-2", Severity::High, "openssl")]);
    let out = decide(&g, &[clean.clone(), bad], 0);
    match &out.outcome {
        Outcome::Vulnerable { worst, .. } => {
            assert_eq!(worst[0].platform.as_deref(), Some("linux/p2"));
            assert_eq!(worst[0].fixed.as_deref(), Some("9.9"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(decide(&g, &[clean], 0).outcome, Outcome::Clear);
    // An index without images (artifacts only) is not gated.
    assert_eq!(decide(&g, &[], 0).outcome, Outcome::Exempt);
}

#[test]
fn unscanned_images_follow_the_setting_and_findings_come_first() {
    let clean = image(1, vec![]);
    let allow = gate(Some(Severity::High), Unscanned::Allow);
    let deny = gate(Some(Severity::High), Unscanned::Deny);
    assert_eq!(
        decide(&allow, &[clean.clone(), unscanned(2)], 0).outcome,
        Outcome::Clear
    );
    assert_eq!(
        decide(&deny, &[clean, unscanned(2)], 0).outcome,
        Outcome::Unscanned {
            images: vec![(d(2), None)]
        }
    );
    // A failed scan is no result.
    let failed = ImageResult {
        digest: d(3),
        platform: None,
        result: Some(ScanOutcome::Failed("layer missing".into())),
    };
    assert!(matches!(
        decide(&deny, &[failed], 0).outcome,
        Outcome::Unscanned { .. }
    ));
    // Known findings are the better reason to give.
    let bad = image(4, vec![finding("CVE-4", Severity::Critical, "glibc")]);
    assert_eq!(
        ids(&decide(&deny, &[bad, unscanned(5)], 0).outcome),
        ["CVE-4"]
    );
}

#[test]
fn refusals_name_the_policy_findings_and_what_to_do() {
    let repo = RepositoryName::parse("acme/shop").unwrap();
    let g = gate(Some(Severity::High), Unscanned::Deny);
    let out = decide(
        &g,
        &[image(
            1,
            vec![finding("CVE-7", Severity::Critical, "glibc")],
        )],
        0,
    );
    let msg = refusal("acme/shop:v1", &repo, &d(1), &g, &out.outcome, false).unwrap();
    for part in [
        "pull of acme/shop:v1 refused by the vulnerability policy of namespace acme",
        "block high and above",
        "CVE-7 (critical) in glibc@1.0, fixed in 9.9",
        "berth scan allow acme CVE-7",
        "Update the base image",
    ] {
        assert!(msg.contains(part), "{part:?} not in {msg}");
    }
    let msg = refusal(
        "acme/shop:v2",
        &repo,
        &d(2),
        &g,
        &Outcome::Unscanned {
            images: vec![(d(2), None)],
        },
        true,
    )
    .unwrap();
    assert!(msg.contains("has not been scanned yet"), "{msg}");
    assert!(msg.contains("a scan is queued"), "{msg}");
    assert!(refusal("x", &repo, &d(1), &g, &Outcome::Clear, false).is_none());
}

#[test]
fn only_namespaces_whose_policy_blocks_something_are_gated() {
    let ns = |n: &str| berth_oci::Namespace::parse(n).unwrap();
    let policy = |n: &str, block: Option<&str>, unscanned: &str| ScanPolicy {
        namespace: ns(n),
        scan_on_push: true,
        block_severity: block.map(str::to_owned),
        unscanned: unscanned.to_owned(),
        updated_at: 0,
        updated_by: None,
    };
    let allowance = berth_meta::allowances::ScanAllowance {
        namespace: ns("a"),
        advisory: "CVE-1".into(),
        reason: "r".into(),
        expires_at: None,
        created_at: 0,
        created_by: None,
    };
    let config = build(
        vec![
            policy("a", Some("high"), "allow"),
            policy("b", None, "deny"),
            policy("c", None, "allow"),
        ],
        vec![allowance],
    )
    .unwrap();
    assert_eq!(config.len(), 2);
    assert_eq!(config["a"].block, Some(Severity::High));
    assert_eq!(config["a"].allowances.len(), 1);
    assert_eq!(config["b"].unscanned, Unscanned::Deny);
    assert!(!config.contains_key("c"));
    assert!(parse_block_severity("urgent").is_err());
    assert!(Unscanned::parse("maybe").is_err());
}
