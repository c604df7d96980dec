//! Policy parsing and plan evaluation on hand-made inventories.

use berth_meta::{Inventory, ManifestInfo, ManifestRef, RefKind, TagInfo};
use berth_oci::{Namespace, RepositoryName, Tag};
use berth_testkit::digests::{digest, seed};

use super::plan::{plan_repository, ItemKind, PlanItem};
use super::policy::{Condition, Policy};

fn acme() -> Namespace {
    Namespace::parse("acme").unwrap()
}

const DAY: i64 = 86_400_000;
const NOW: i64 = 1_000 * DAY;
const IMAGE: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";

#[derive(Default)]
struct Repo(Inventory);

impl Repo {
    fn manifest(mut self, d: &str, media: &str, days_ago: i64, subject: Option<&str>) -> Self {
        self.0.manifests.push(ManifestInfo {
            digest: digest(d),
            media_type: media.into(),
            artifact_type: None,
            subject: subject.map(digest),
            size: 100,
            pushed_at: NOW - days_ago * DAY,
            pull_count: 0,
            last_pulled_at: None,
        });
        self
    }
    fn image(self, d: &str, days_ago: i64) -> Self {
        self.manifest(d, IMAGE, days_ago, None)
            .blob(d, &format!("layer-{d}"), 1000)
    }
    fn tag(mut self, name: &str, d: &str, days_ago: i64) -> Self {
        self.0.tags.push(TagInfo {
            name: Tag::parse(name).unwrap(),
            digest: digest(d),
            updated_at: NOW - days_ago * DAY,
            pull_count: 0,
            last_pulled_at: None,
        });
        self
    }
    fn pulled(mut self, tag: &str, days_ago: i64) -> Self {
        for t in &mut self.0.tags {
            if t.name == tag {
                t.last_pulled_at = Some(NOW - days_ago * DAY);
            }
        }
        self
    }
    fn child(mut self, parent: &str, child: &str) -> Self {
        self.0.references.push(ManifestRef {
            parent: digest(parent),
            child: digest(child),
            kind: RefKind::Manifest,
            blob_size: None,
            attestation: false,
            describes: None,
        });
        self
    }
    fn blob(mut self, m: &str, b: &str, size: i64) -> Self {
        self.0.references.push(ManifestRef {
            parent: digest(m),
            child: digest(b),
            kind: RefKind::Blob,
            blob_size: Some(size),
            attestation: false,
            describes: None,
        });
        self
    }
}

fn plan(policy: &str, repo: &Repo, protected: &[&str]) -> Vec<PlanItem> {
    let p = Policy::parse(policy, &acme()).unwrap();
    plan_repository(
        &p,
        &RepositoryName::parse("acme/app").unwrap(),
        &repo.0,
        &|t| protected.contains(&t.as_str()),
        NOW,
    )
}

fn deleted_tags(items: &[PlanItem]) -> Vec<&str> {
    items
        .iter()
        .filter_map(|i| i.tag.as_ref().map(Tag::as_str))
        .collect()
}

/// The seeds of the deleted manifests (see `berth_testkit::digests`).
fn deleted_manifests(items: &[PlanItem]) -> Vec<String> {
    items
        .iter()
        .filter(|i| i.kind == ItemKind::Manifest)
        .map(|i| seed(&i.digest))
        .collect()
}

#[test]
fn policies_parse_with_every_condition() {
    let p = Policy::parse(
        r#"
schedule = "0 3 * * *"
[[rule]]
name = "mixed"
repositories = ["acme/web-*", "acme"]
tags = ["*"]
exclude_tags = ["latest"]
media_types = ["application/vnd.oci.*"]
keep = { any = [{ last = 10 }, { all = [{ pulled_within = "30d" }, { not = { older_than = "1w" } }] }] }
[[rule]]
untagged = true
artifact_types = ["application/vnd.cncf.helm.*"]
delete = { older_than = "12h" }
[[rule]]
tags = ["v*"]
keep = { always = true }
[[rule]]
tags = ["x"]
keep = { last_pulled = 3 }
"#,
        &acme(),
    )
    .unwrap();
    assert_eq!(p.schedule.unwrap().to_string(), "0 3 * * *");
    assert_eq!(p.rules.len(), 4);
    assert_eq!(
        p.rules[0].condition.to_string(),
        "any(last 10, all(pulled within 30d, not(older than 7d)))"
    );
    assert_eq!(p.rules[1].name, "rule-2");
    assert!(!p.rules[1].keeps);
    assert_eq!(p.rules[1].condition, Condition::OlderThan(DAY / 2));
    assert_eq!(p.rules[2].condition, Condition::Always);
    assert_eq!(p.rules[3].condition, Condition::LastPulled(3));
}

#[test]
fn bad_policies_name_line_and_column() {
    for (text, want) in [
        (
            "[[rule]]\ntags = [\"*\"]\nkeep = { last = 10, pushed_within = \"7d\" }\n",
            "line 3, column 8: a condition has exactly one key",
        ),
        (
            "[[rule]]\ntags = [\"*\"]\nkeep = { last = -1 }\n",
            "line 3, column 8: last takes a count",
        ),
        (
            "[[rule]]\ntags = [\"*\"]\nkeep = { pushed_within = \"7 days\" }\n",
            "invalid duration \"7 days\"",
        ),
        (
            "[[rule]]\ntags = [\"*\"]\nkeep = { newest = 3 }\n",
            "unknown condition \"newest\"",
        ),
        (
            "[[rule]]\ntags = [\"*\"]\n",
            "line 1, column 1: rule \"rule-1\" needs exactly one of keep",
        ),
        ("[[rule]]\nkeep = { last = 1 }\n", "selects nothing"),
        (
            "[[rule]]\ntags = [\"*\"]\nuntagged = true\nkeep = { last = 1 }\n",
            "both tags and untagged",
        ),
        (
            "[[rule]]\nuntagged = true\nexclude_tags = [\"x\"]\nkeep = { last = 1 }\n",
            "exclude_tags needs tags",
        ),
        (
            "[[rule]]\nrepositories = [\"other/app\"]\ntags = [\"*\"]\nkeep = { last = 1 }\n",
            "line 2, column 17: repository pattern \"other/app\" is outside namespace",
        ),
        (
            "schedule = \"0 3 * *\"\n",
            "line 1, column 12: schedule \"0 3 * *\" must have 5 fields",
        ),
        (
            "[[rule]]\ntag = [\"*\"]\n",
            "line 2, column 1: unknown field `tag`",
        ),
        ("[[rule]\n", "line 1"),
        (
            "[[rule]]\ntags = [\"*\"]\nkeep = { any = [] }\n",
            "any = [] has no conditions",
        ),
    ] {
        let e = Policy::parse(text, &acme()).unwrap_err().0;
        assert!(e.contains(want), "{text:?}: {e}");
    }
}

#[test]
fn last_n_counts_images_and_excluded_tags_are_untouched() {
    // Five images a..e pushed 5..1 days ago; `b` carries two tags.
    let repo = Repo::default()
        .image("a", 5)
        .image("b", 4)
        .image("c", 3)
        .image("d", 2)
        .image("e", 1)
        .tag("1.0", "a", 5)
        .tag("1.1", "b", 4)
        .tag("1.1.0", "b", 4)
        .tag("1.2", "c", 3)
        .tag("latest", "a", 0)
        .tag("1.3", "d", 2)
        .tag("1.4", "e", 1);
    let items = plan(
        "[[rule]]\ntags = [\"*\"]\nexclude_tags = [\"latest\"]\nkeep = { last = 3 }\n",
        &repo,
        &[],
    );
    // Kept: e, d, c (3 images); `b`'s two tags go, `a` keeps `latest`.
    assert_eq!(deleted_tags(&items), vec!["1.0", "1.1", "1.1.0"]);
    assert_eq!(deleted_manifests(&items), vec!["b"]);
    let b = items
        .iter()
        .find(|i| seed(&i.digest) == "b" && i.kind == ItemKind::Manifest)
        .unwrap();
    assert_eq!(b.reason, "its last tag was deleted");
    assert_eq!(b.bytes, 1100, "the manifest and its own layer");
    assert_eq!(b.age_ms, 4 * DAY);
    let t = items
        .iter()
        .find(|i| i.tag.as_ref().is_some_and(|t| t == "1.0"))
        .unwrap();
    assert_eq!(
        (t.rule.as_str(), t.reason.as_str()),
        ("rule-1", "not kept by: last 3")
    );
    assert_eq!(t.bytes, 0);
}

#[test]
fn any_rule_keeping_wins_and_protected_tags_stay() {
    let repo = Repo::default()
        .image("a", 40)
        .image("b", 20)
        .tag("v1.0", "a", 40)
        .tag("pr-1", "b", 20)
        .tag("main", "b", 20);
    let policy = r#"
[[rule]]
name = "expire"
tags = ["*"]
keep = { pushed_within = "7d" }
[[rule]]
name = "releases"
tags = ["v*"]
keep = { always = true }
"#;
    let items = plan(policy, &repo, &["main"]);
    assert_eq!(deleted_tags(&items), vec!["pr-1"]);
    assert!(
        deleted_manifests(&items).is_empty(),
        "b keeps its protected tag"
    );
    // Without protection `main` goes too, and with it `b`.
    let items = plan(policy, &repo, &[]);
    assert_eq!(deleted_tags(&items), vec!["main", "pr-1"]);
    assert_eq!(deleted_manifests(&items), vec!["b"]);
}

#[test]
fn multi_arch_children_and_referrers_follow_their_index() {
    let sig = "sha256:".to_owned() + &"1".repeat(64);
    let idx = "sha256:".to_owned() + &"2".repeat(64);
    let cosign_tag = format!("sha256-{}.sig", "2".repeat(64));
    let repo = Repo::default()
        .manifest(&idx, INDEX, 60, None)
        .image("amd64", 60)
        .image("arm64", 60)
        .child(&idx, "amd64")
        .child(&idx, "arm64")
        .manifest("sbom", IMAGE, 59, Some(&idx))
        .manifest(&sig, IMAGE, 59, None)
        .tag(&cosign_tag, &sig, 59)
        .tag("old", &idx, 60)
        .manifest("orphan-ref", IMAGE, 60, Some("sha256:gone"))
        .image("loose", 60);
    let untagged = "[[rule]]\nuntagged = true\ndelete = { older_than = \"30d\" }\n";
    // The index is tagged: its untagged children and referrers are not
    // candidates; only the true roots go.
    let items = plan(untagged, &repo, &[]);
    assert_eq!(deleted_manifests(&items), vec!["loose", "orphan-ref"]);
    assert!(
        items.iter().all(|i| i.reason == "untagged: older than 30d"),
        "{items:#?}"
    );
    // A rule no tag-schema referrer tag can be selected by.
    let all_tags = format!("{untagged}[[rule]]\ntags = [\"*\"]\nkeep = {{ last = 0 }}\n");
    let items = plan(&all_tags, &repo, &[]);
    assert_eq!(deleted_tags(&items), vec!["old"]);
    // Deleting the index takes its children and referrers, index first.
    let m = deleted_manifests(&items);
    let pos = |d: &str| m.iter().position(|x| *x == d).unwrap();
    for follower in ["amd64", "arm64", "sbom", sig.as_str()] {
        assert!(pos(&idx) < pos(follower), "{m:?}");
    }
    let s = items.iter().find(|i| i.digest.as_str() == sig).unwrap();
    assert_eq!(s.tags, vec![Tag::parse(cosign_tag).unwrap()]);
    assert_eq!(s.subject.as_ref().map(|d| d.as_str()), Some(idx.as_str()));
    assert_eq!(s.rule, "rule-2");
    assert!(s.reason.starts_with("referrer of deleted"), "{}", s.reason);
    let c = items.iter().find(|i| seed(&i.digest) == "amd64").unwrap();
    assert!(
        c.reason.starts_with("listed only in deleted"),
        "{}",
        c.reason
    );
    // A child another kept index lists stays.
    let repo = repo
        .manifest("idx2", INDEX, 1, None)
        .child("idx2", "amd64")
        .tag("new", "idx2", 1);
    let items = plan(
        &all_tags.replace("last = 0", "pushed_within = \"7d\""),
        &repo,
        &[],
    );
    let m = deleted_manifests(&items);
    assert!(
        m.iter().any(|x| x == "arm64") && !m.iter().any(|x| x == "amd64"),
        "{m:?}"
    );
}

#[test]
fn pull_conditions_and_shared_blob_bytes() {
    let repo = Repo::default()
        .image("a", 50)
        .image("b", 50)
        .image("c", 50)
        .blob("a", "shared", 5000)
        .blob("b", "shared", 5000)
        .tag("a", "a", 50)
        .tag("b", "b", 50)
        .tag("c", "c", 50)
        .pulled("a", 1)
        .pulled("b", 10);
    let items = plan(
        "[[rule]]\ntags = [\"*\"]\nkeep = { pulled_within = \"7d\" }\n",
        &repo,
        &[],
    );
    assert_eq!(deleted_tags(&items), vec!["b", "c"]);
    // `shared` is still used by the kept `a`.
    let b = items
        .iter()
        .find(|i| seed(&i.digest) == "b" && i.kind == ItemKind::Manifest)
        .unwrap();
    assert_eq!(b.bytes, 1100);
    let items = plan(
        "[[rule]]\ntags = [\"*\"]\nkeep = { last_pulled = 1 }\n",
        &repo,
        &[],
    );
    assert_eq!(
        deleted_tags(&items),
        vec!["b", "c"],
        "never pulled ranks nowhere"
    );
    let items = plan(
        "[[rule]]\ntags = [\"*\"]\nkeep = { last_pulled = 2 }\n",
        &repo,
        &[],
    );
    assert_eq!(deleted_tags(&items), vec!["c"]);
    // Everything goes: the shared blob is counted once.
    let items = plan(
        "[[rule]]\ntags = [\"*\"]\nkeep = { last = 0 }\n",
        &repo,
        &[],
    );
    assert_eq!(items.iter().map(|i| i.bytes).sum::<u64>(), 3 * 1100 + 5000);
}
