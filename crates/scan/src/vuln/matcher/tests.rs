use super::*;
use crate::vuln::osv;
use crate::{Distro, SourcePackage};

fn distro(id: &str, version: &str) -> Distro {
    Distro {
        id: id.into(),
        version_id: Some(version.into()),
        ..Distro::default()
    }
}

fn pkg(eco: Ecosystem, name: &str, version: &str, source: Option<(&str, Option<&str>)>) -> Package {
    Package {
        ecosystem: eco,
        namespace: None,
        name: name.into(),
        version: version.into(),
        source: source.map(|(n, v)| SourcePackage {
            name: n.into(),
            version: v.map(str::to_owned),
        }),
        arch: None,
        license: None,
        purl: format!("pkg:{}/{name}@{version}", eco.as_str()),
        layer: "sha256:l".into(),
        path: "/p".into(),
    }
}

fn record(json: &str) -> Advisory {
    osv::parse(json.as_bytes()).unwrap()
}

fn debian_record(id: &str, eco: &str, fixed: &str) -> Advisory {
    record(&format!(
        r#"{{"id":"{id}","modified":"2024-01-01T00:00:00Z","upstream":["CVE-2024-1"],
            "affected":[{{"package":{{"ecosystem":"{eco}","name":"glibc"}},
            "ranges":[{{"type":"ECOSYSTEM","events":[{{"introduced":"0"}},{{"fixed":"{fixed}"}}]}}],
            "ecosystem_specific":{{"urgency":"high"}}}}]}}"#
    ))
}

#[test]
fn debian_advisories_hit_the_source_package_of_their_release_only() {
    let inv = Inventory {
        distro: Some(distro("debian", "12")),
        packages: vec![
            pkg(
                Ecosystem::Deb,
                "libc6",
                "2.36-9+deb12u4",
                Some(("glibc", None)),
            ),
            pkg(
                Ecosystem::Deb,
                "libc-bin",
                "2.36-9+deb12u4",
                Some(("glibc", None)),
            ),
            pkg(
                Ecosystem::Deb,
                "zlib1g",
                "1:1.2.13.dfsg-1",
                Some(("zlib", None)),
            ),
        ],
        notes: vec![],
    };
    assert_eq!(
        lookup_keys(&inv),
        [
            LookupKey {
                family: "Debian".into(),
                name: "glibc".into()
            },
            LookupKey {
                family: "Debian".into(),
                name: "zlib".into()
            }
        ]
    );
    let advisories = [
        debian_record("DSA-1-1", "Debian:12", "2.36-9+deb12u7"),
        // Another release: not for this image.
        debian_record("DSA-2-1", "Debian:11", "2.31-13+deb11u9"),
        // Fixed at or below the installed version.
        debian_record("DSA-3-1", "Debian:12", "2.36-9+deb12u4"),
    ];
    let m = match_inventory(&inv, &advisories);
    let got: Vec<(&str, &str)> = m
        .findings
        .iter()
        .map(|f| (f.package.as_str(), f.id.as_str()))
        .collect();
    assert_eq!(got, [("libc-bin", "DSA-1-1"), ("libc6", "DSA-1-1")]);
    let f = &m.findings[0];
    assert_eq!(f.severity, Severity::High, "Debian's urgency");
    assert_eq!(f.fixed, ["2.36-9+deb12u7"]);
    assert_eq!(f.related, ["CVE-2024-1"]);
    assert_eq!(f.source.as_deref(), Some("glibc"));
    assert!(m.notes.is_empty());

    // The same image on bullseye gets the bullseye advisory.
    let old = Inventory {
        distro: Some(distro("debian", "11")),
        packages: vec![pkg(
            Ecosystem::Deb,
            "libc6",
            "2.31-13+deb11u5",
            Some(("glibc", None)),
        )],
        notes: vec![],
    };
    let m = match_inventory(&old, &advisories);
    assert_eq!(m.findings.len(), 1);
    assert_eq!(m.findings[0].id, "DSA-2-1");
}

#[test]
fn the_source_version_is_compared_when_it_differs() {
    // A binNMU: the binary is 1.0-1+b1, the source 1.0-1.
    let inv = Inventory {
        distro: Some(distro("debian", "12")),
        packages: vec![pkg(
            Ecosystem::Deb,
            "libfoo1",
            "1.0-1+b1",
            Some(("foo", Some("1.0-1"))),
        )],
        notes: vec![],
    };
    let a = record(
        r#"{"id":"DLA-9","modified":"2024-01-01T00:00:00Z","affected":[{"package":{"ecosystem":"Debian:12","name":"foo"},
            "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"last_affected":"1.0-1"}]}]}]}"#,
    );
    assert_eq!(match_inventory(&inv, &[a]).findings.len(), 1);
}

#[test]
fn aliases_make_one_finding_and_withdrawn_records_none() {
    let mut requests = pkg(Ecosystem::Pypi, "Requests", "2.31.0", None);
    requests.path = "/usr/lib/python3/dist-packages/requests-2.31.0.dist-info/METADATA".into();
    let inv = Inventory {
        distro: None,
        packages: vec![requests],
        notes: vec![],
    };
    let ghsa = record(
        r#"{"id":"GHSA-9wx4-h78v-vm56","modified":"2024-06-01T00:00:00Z","aliases":["CVE-2024-35195"],
            "summary":"Requests session verify=False persists",
            "severity":[{"type":"CVSS_V3","score":"CVSS:3.1/AV:L/AC:H/PR:H/UI:R/S:U/C:H/I:H/A:N"}],
            "database_specific":{"severity":"MODERATE"},
            "affected":[{"package":{"ecosystem":"PyPI","name":"requests"},
              "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"2.32.0"}]}]}]}"#,
    );
    let pysec = record(
        r#"{"id":"PYSEC-2024-1","modified":"2024-06-01T00:00:00Z","aliases":["CVE-2024-35195","GHSA-9wx4-h78v-vm56"],
            "affected":[{"package":{"ecosystem":"PyPI","name":"requests"},
              "versions":["2.30.0","2.31.0"]}]}"#,
    );
    let withdrawn = record(
        r#"{"id":"GHSA-xxxx-withdrawn","modified":"2024-06-01T00:00:00Z","withdrawn":"2024-06-02T00:00:00Z",
            "affected":[{"package":{"ecosystem":"PyPI","name":"requests"},
              "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"}]}]}]}"#,
    );
    assert_eq!(
        lookup_keys(&inv),
        [LookupKey {
            family: "PyPI".into(),
            name: "requests".into()
        }]
    );
    let m = match_inventory(&inv, &[ghsa, pysec, withdrawn]);
    assert_eq!(m.findings.len(), 1, "{:#?}", m.findings);
    let f = &m.findings[0];
    assert_eq!(f.id, "CVE-2024-35195");
    assert_eq!(f.aliases, ["GHSA-9wx4-h78v-vm56", "PYSEC-2024-1"]);
    assert_eq!(f.advisories, ["GHSA-9wx4-h78v-vm56", "PYSEC-2024-1"]);
    assert_eq!(f.severity, Severity::Medium, "GitHub's rating");
    assert!((f.cvss.as_ref().unwrap().score - 5.6).abs() < 0.05);
    assert_eq!(f.fixed, ["2.32.0"]);
}

#[test]
fn osv_range_events() {
    let r = |events: &str| Range {
        kind: RangeKind::Semver,
        events: serde_json::from_str(events).unwrap(),
    };
    let s = Scheme::Semver;
    let two =
        r(r#"[{"introduced":"1.0.0"},{"fixed":"1.2.0"},{"introduced":"2.0.0"},{"fixed":"2.0.3"}]"#);
    for (v, want) in [
        ("0.9.0", false),
        ("1.0.0", true),
        ("1.1.9", true),
        ("1.2.0", false),
        ("1.9.0", false),
        ("2.0.2", true),
        ("2.0.3", false),
    ] {
        assert_eq!(in_range(s, &two, v), Some(want), "{v}");
    }
    // Listed out of order: the events are sorted first.
    let shuffled =
        r(r#"[{"fixed":"2.0.3"},{"introduced":"2.0.0"},{"fixed":"1.2.0"},{"introduced":"1.0.0"}]"#);
    assert_eq!(in_range(s, &shuffled, "1.5.0"), Some(false));
    assert_eq!(in_range(s, &shuffled, "2.0.1"), Some(true));
    let last = r(r#"[{"introduced":"0"},{"last_affected":"1.4.0"}]"#);
    assert_eq!(in_range(s, &last, "1.4.0"), Some(true));
    assert_eq!(in_range(s, &last, "1.4.1"), Some(false));
    let limited = r(r#"[{"introduced":"1.0.0"},{"limit":"1.5.0"}]"#);
    assert_eq!(in_range(s, &limited, "1.4.0"), Some(true));
    assert_eq!(in_range(s, &limited, "1.5.0"), Some(false));
    assert_eq!(in_range(s, &two, "not.a.version"), None);
}

#[test]
fn alpine_by_origin_and_minor_release() {
    let inv = Inventory {
        distro: Some(distro("alpine", "3.19.1")),
        packages: vec![pkg(
            Ecosystem::Apk,
            "libcrypto3",
            "3.1.4-r1",
            Some(("openssl", None)),
        )],
        notes: vec![],
    };
    let a = record(
        r#"{"id":"ALPINE-CVE-2023-6129","modified":"2024-01-01T00:00:00Z","aliases":["CVE-2023-6129"],
            "severity":[{"type":"CVSS_V3","score":"CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:N/I:H/A:H"}],
            "affected":[{"package":{"ecosystem":"Alpine:v3.19","name":"openssl"},
              "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"3.1.4-r3"}]}]},
              {"package":{"ecosystem":"Alpine:v3.18","name":"openssl"},
              "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"3.1.4-r0"}]}]}]}"#,
    );
    let m = match_inventory(&inv, &[a]);
    assert_eq!(m.findings.len(), 1);
    let f = &m.findings[0];
    assert_eq!(f.id, "CVE-2023-6129");
    assert_eq!(
        f.severity,
        Severity::High,
        "CVSS 6.5 would be medium; 7.4 is high"
    );
    assert_eq!(f.fixed, ["3.1.4-r3"]);
}

#[test]
fn unknown_distributions_are_said() {
    let inv = Inventory {
        distro: Some(distro("gentoo", "2.14")),
        packages: vec![pkg(Ecosystem::Rpm, "bash", "5.1-1", None)],
        notes: vec![],
    };
    let m = match_inventory(&inv, &[]);
    assert!(m.findings.is_empty());
    assert_eq!(m.notes.len(), 1);
    assert!(m.notes[0].contains("gentoo"), "{:?}", m.notes);
    assert!(lookup_keys(&inv).is_empty());
}

#[test]
fn release_forms() {
    assert!(release_fits("Ubuntu:22.04:LTS", Some("22.04")));
    assert!(release_fits("Ubuntu:Pro:22.04:LTS", Some("22.04")));
    assert!(!release_fits("Ubuntu:20.04:LTS", Some("22.04")));
    assert!(release_fits("PyPI", None));
    assert!(!release_fits("Debian:12", None));
    assert_eq!(package_key("PyPI", "Zope.Interface__x"), "zope-interface-x");
}
