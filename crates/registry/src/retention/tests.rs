//! Policy parsing and plan evaluation on hand-made inventories.

use berth_meta::{Inventory, ManifestInfo, ManifestRef, RefKind, TagInfo};
use berth_oci::{Namespace, RepositoryName, Tag};
use berth_testkit::digests::{digest, seed};

use super::plan::{plan_repository, ItemKind, PlanItem};
use super::plan_oracle;
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

/// The inventory as `Meta::inventory` returns it: tags by name, manifests
/// by digest, references by parent and child.
fn sorted(repo: &Repo) -> Repo {
    let mut inv = repo.0.clone();
    inv.tags
        .sort_by(|a, b| a.name.as_str().cmp(b.name.as_str()));
    inv.manifests
        .sort_by(|a, b| a.digest.as_str().cmp(b.digest.as_str()));
    inv.references.sort_by(|a, b| {
        (a.parent.as_str(), a.child.as_str()).cmp(&(b.parent.as_str(), b.child.as_str()))
    });
    Repo(inv)
}

/// A tag-schema referrer tag on the manifest `subject`.
fn schema_tag(subject: &str, suffix: &str) -> String {
    format!("sha256-{}.{suffix}", digest(subject).hex())
}

/// `(kind, tag or seed, rule, reason, bytes)` of each item, in order.
fn summary(items: &[PlanItem]) -> Vec<(ItemKind, String, String, String, u64)> {
    items
        .iter()
        .map(|i| {
            let what = match &i.tag {
                Some(t) => t.to_string(),
                None => seed(&i.digest),
            };
            (i.kind, what, i.rule.clone(), i.reason.clone(), i.bytes)
        })
        .collect()
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

#[test]
fn a_chain_goes_in_dependency_order_each_level_by_digest() {
    // index -> two images -> a referrer of one -> a referrer of that:
    // digest order (the seeds' order) is the reverse of dependency order.
    let repo = Repo::default()
        .manifest("z-index", INDEX, 90, None)
        .image("y-image", 90)
        .image("c-image", 90)
        .child("z-index", "y-image")
        .child("z-index", "c-image")
        .manifest("x-sig", IMAGE, 89, Some("y-image"))
        .manifest("w-sig2", IMAGE, 89, Some("x-sig"))
        .image("kept", 1)
        .tag("old", "z-index", 90)
        .tag("new", "kept", 1);
    let policy =
        "[[rule]]\nname = \"expire\"\ntags = [\"*\"]\nkeep = { pushed_within = \"30d\" }\n";
    let items = plan(policy, &repo, &[]);
    let d = |s: &str| digest(s).to_string();
    let expire = "expire".to_owned();
    assert_eq!(
        summary(&items),
        vec![
            (
                ItemKind::Tag,
                "old".into(),
                expire.clone(),
                "not kept by: pushed within 30d".into(),
                0
            ),
            (
                ItemKind::Manifest,
                "z-index".into(),
                expire.clone(),
                "its last tag was deleted".into(),
                100
            ),
            (
                ItemKind::Manifest,
                "c-image".into(),
                expire.clone(),
                format!("listed only in deleted {}", d("z-index")),
                1100
            ),
            (
                ItemKind::Manifest,
                "y-image".into(),
                expire.clone(),
                format!("listed only in deleted {}", d("z-index")),
                1100
            ),
            (
                ItemKind::Manifest,
                "x-sig".into(),
                expire.clone(),
                format!("referrer of deleted {}", d("y-image")),
                100
            ),
            (
                ItemKind::Manifest,
                "w-sig2".into(),
                expire,
                format!("referrer of deleted {}", d("x-sig")),
                100
            ),
        ]
    );
    assert_eq!(items[5].subject.as_ref().map(seed), Some("x-sig".into()));
    assert_eq!(items[2].subject, None);
    assert_eq!(
        format!("{items:?}"),
        format!("{:?}", plan(policy, &sorted(&repo), &[])),
        "the same plan from the inventory sorted"
    );
}

#[test]
fn blobs_count_once_and_never_when_a_kept_manifest_uses_them() {
    let repo = Repo::default()
        .image("a", 50)
        .image("b", 50)
        .image("c", 50)
        .image("keep", 1)
        .blob("a", "two-deleted", 5000)
        .blob("b", "two-deleted", 5000)
        .blob("c", "with-kept", 7000)
        .blob("keep", "with-kept", 7000)
        .blob("c", "unknown-size", 0)
        .tag("a", "a", 50)
        .tag("b", "b", 50)
        .tag("c", "c", 50)
        .tag("keep", "keep", 1);
    let mut repo = repo;
    for r in &mut repo.0.references {
        if seed(&r.child) == "unknown-size" {
            r.blob_size = None;
        }
    }
    let items = plan(
        "[[rule]]\ntags = [\"*\"]\nkeep = { pushed_within = \"7d\" }\n",
        &repo,
        &[],
    );
    let bytes: Vec<(String, u64)> = items
        .iter()
        .filter(|i| i.kind == ItemKind::Manifest)
        .map(|i| (seed(&i.digest), i.bytes))
        .collect();
    // `a` comes first in the plan and takes the blob it shares with `b`;
    // `c`'s blob shared with the kept image is not reclaimed.
    assert_eq!(
        bytes,
        vec![
            ("a".to_owned(), 1100 + 5000),
            ("b".to_owned(), 1100),
            ("c".to_owned(), 1100),
        ]
    );
}

#[test]
fn tag_schema_referrer_tags_go_with_their_manifest() {
    let sig = schema_tag("img", "sig");
    let att = schema_tag("img", "att");
    let repo = Repo::default()
        .image("img", 40)
        .manifest("signature", IMAGE, 40, None)
        .tag("v1", "img", 40)
        .tag(&sig, "signature", 40)
        .tag(&att, "signature", 40)
        // A tag-schema tag whose subject the repository does not hold is an
        // ordinary tag.
        .tag(&schema_tag("gone", "sig"), "img", 40);
    let policy = "[[rule]]\nname = \"all\"\ntags = [\"*\"]\nkeep = { last = 0 }\n";
    let items = plan(policy, &repo, &[]);
    let d = |s: &str| digest(s).to_string();
    assert_eq!(
        summary(&items),
        vec![
            (
                ItemKind::Tag,
                schema_tag("gone", "sig"),
                "all".into(),
                "not kept by: last 0".into(),
                0
            ),
            (
                ItemKind::Tag,
                "v1".into(),
                "all".into(),
                "not kept by: last 0".into(),
                0
            ),
            (
                ItemKind::Manifest,
                "img".into(),
                "all".into(),
                "its last tag was deleted".into(),
                1100
            ),
            (
                ItemKind::Manifest,
                "signature".into(),
                "all".into(),
                format!("referrer of deleted {}", d("img")),
                100
            ),
        ]
    );
    let s = &items[3];
    assert_eq!(
        s.tags,
        vec![Tag::parse(&sig).unwrap(), Tag::parse(&att).unwrap()]
    );
    assert_eq!(s.subject, Some(digest("img")));
    // A protected referrer tag keeps its manifest; the image still goes.
    let items = plan(policy, &repo, &[att.as_str()]);
    assert_eq!(deleted_manifests(&items), vec!["img"]);
}

#[test]
fn an_unsorted_inventory_plans_as_the_sorted_one() {
    // Pushed in this order: not sorted by digest nor by tag name.
    let repo = Repo::default()
        .image("web-3", 60)
        .image("web-1", 50)
        .manifest("idx", INDEX, 45, None)
        .image("arm", 45)
        .image("amd", 45)
        .child("idx", "arm")
        .child("idx", "amd")
        .manifest("sbom", IMAGE, 44, Some("amd"))
        .manifest("signature", IMAGE, 44, None)
        .blob("web-3", "base", 9000)
        .blob("web-1", "base", 9000)
        .blob("amd", "base", 9000)
        .image("untagged", 70)
        .image("web-2", 2)
        .tag("v3", "web-3", 60)
        .tag("latest", "web-2", 2)
        .tag("v1", "web-1", 50)
        .tag("multi", "idx", 45)
        .tag(&schema_tag("idx", "sig"), "signature", 44)
        .tag("v2", "web-2", 2)
        .pulled("v1", 3);
    assert_ne!(
        format!("{:?}", repo.0.manifests),
        format!("{:?}", sorted(&repo).0.manifests)
    );
    let policy = r#"
[[rule]]
name = "recent"
tags = ["*"]
keep = { any = [{ last = 1 }, { last_pulled = 1 }] }
[[rule]]
name = "loose"
untagged = true
delete = { older_than = "30d" }
"#;
    for protected in [&[][..], &["multi"][..]] {
        let items = plan(policy, &repo, protected);
        assert_eq!(
            format!("{items:?}"),
            format!("{:?}", plan(policy, &sorted(&repo), protected))
        );
        assert!(deleted_tags(&items).contains(&"v3"), "{items:#?}");
        assert!(deleted_manifests(&items).contains(&"untagged".to_owned()));
    }
    let m = deleted_manifests(&plan(policy, &repo, &[]));
    assert_eq!(
        m,
        vec![
            "idx",
            "untagged",
            "web-3",
            "amd",
            "arm",
            "signature",
            "sbom"
        ]
    );
}

/// splitmix64, for reproducible random inventories.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a>(&mut self, v: &'a [String]) -> &'a str {
        &v[self.below(v.len())]
    }
}

/// A repository of up to 24 manifests and 30 tags with indexes, referrers
/// (`subject` and tag-schema tags, some naming their own manifest or one
/// not there), shared blobs, dangling references, and sometimes a tag
/// name or digest listed twice; in push order.
fn random_repo(rng: &mut Rng) -> Repo {
    let n = 1 + rng.below(24);
    let seeds: Vec<String> = (0..n).map(|i| format!("m{i}")).collect();
    let missing: Vec<String> = (0..3).map(|i| format!("x{i}")).collect();
    // Mostly a graph without cycles: an index lists manifests pushed
    // before it, a referrer names one pushed before it.
    let some = |rng: &mut Rng, missing_percent, before: usize| {
        if rng.chance(missing_percent) {
            rng.pick(&missing).to_owned()
        } else if before > 0 && rng.chance(90) {
            rng.pick(&seeds[..before]).to_owned()
        } else {
            rng.pick(&seeds).to_owned()
        }
    };
    let twice = rng.chance(10);
    let mut repo = Repo::default();
    for (i, s) in seeds.iter().enumerate() {
        let media = if rng.chance(25) { INDEX } else { IMAGE };
        let subject = rng.chance(25).then(|| some(rng, 20, i));
        repo = repo.manifest(s, media, rng.below(100) as i64, subject.as_deref());
        let m = repo.0.manifests.last_mut().unwrap();
        m.size = rng.below(500) as i64;
        if rng.chance(20) {
            m.artifact_type = Some("application/vnd.dev.sigstore.bundle+json".into());
        }
        if rng.chance(30) {
            m.last_pulled_at = Some(NOW - rng.below(60) as i64 * DAY);
        }
        if twice && rng.chance(10) {
            let mut again = m.clone();
            again.pushed_at -= DAY;
            repo.0.manifests.push(again);
        }
        if media == INDEX {
            for _ in 0..1 + rng.below(3) {
                let child = some(rng, 10, i);
                repo = repo.child(s, &child);
            }
        }
        for _ in 0..rng.below(4) {
            let b = rng.below(10);
            repo = repo.blob(s, &format!("b{b}"), 1000 * (b as i64 + 1));
            if rng.chance(5) {
                repo.0.references.last_mut().unwrap().blob_size = None;
            }
        }
    }
    if rng.chance(10) {
        repo = repo.blob(rng.pick(&missing), "b0", 1000);
    }
    let names = [
        "latest", "main", "v1", "v1.1", "v2", "v3", "pr-1", "pr-2", "pr-3", "dev", "nightly",
        "rc-1",
    ];
    let mut used = std::collections::HashSet::new();
    for _ in 0..rng.below(30) {
        let name = if rng.chance(25) {
            let subject = some(rng, 10, n);
            schema_tag(&subject, ["sig", "att", "sbom"][rng.below(3)])
        } else {
            names[rng.below(names.len())].to_owned()
        };
        if !used.insert(name.clone()) && !twice {
            continue;
        }
        let target = some(rng, 3, n);
        repo = repo.tag(&name, &target, rng.below(100) as i64);
        if rng.chance(30) {
            repo = repo.pulled(&name, rng.below(60) as i64);
        }
    }
    repo
}

#[test]
fn plans_equal_the_oracle_on_random_inventories() {
    let policies = [
        "[[rule]]\ntags = [\"*\"]\nexclude_tags = [\"latest\"]\nkeep = { last = 3 }\n\
         [[rule]]\nuntagged = true\ndelete = { older_than = \"30d\" }\n",
        r#"
[[rule]]
name = "expire"
tags = ["*"]
keep = { pushed_within = "40d" }
[[rule]]
name = "releases"
tags = ["v*"]
keep = { always = true }
[[rule]]
untagged = true
keep = { last = 2 }
"#,
        r#"
[[rule]]
tags = ["pr-*", "v*"]
keep = { any = [{ last_pulled = 2 }, { all = [{ pulled_within = "20d" }, { not = { older_than = "50d" } }] }] }
[[rule]]
name = "old"
tags = ["*"]
delete = { older_than = "60d" }
[[rule]]
untagged = true
media_types = ["application/vnd.oci.image.index.v1+json"]
delete = { always = true }
"#,
        r#"
[[rule]]
repositories = ["acme/other"]
tags = ["*"]
delete = { always = true }
[[rule]]
repositories = ["acme/app"]
tags = ["*"]
keep = { last = 0 }
[[rule]]
untagged = true
delete = { not = { pulled_within = "10d" } }
"#,
        r#"
[[rule]]
untagged = true
artifact_types = ["application/vnd.dev.sigstore.*"]
delete = { always = true }
[[rule]]
tags = ["*"]
media_types = ["application/vnd.oci.image.manifest.v1+json"]
delete = { last = 4 }
[[rule]]
tags = ["*"]
keep = { last_pulled = 1 }
"#,
    ];
    let policies: Vec<Policy> = policies
        .iter()
        .map(|p| Policy::parse(p, &acme()).unwrap())
        .collect();
    let repo_name = RepositoryName::parse("acme/app").unwrap();
    let (mut items, mut manifests, mut referrers) = (0, 0, 0);
    for case in 0..600u64 {
        let mut rng = Rng(case);
        let repo = random_repo(&mut rng);
        for inv in [&repo.0, &sorted(&repo).0] {
            for protected in [&[][..], &["main", "v1"][..]] {
                let protected = |t: &Tag| protected.contains(&t.as_str());
                for (p, policy) in policies.iter().enumerate() {
                    let got = plan_repository(policy, &repo_name, inv, &protected, NOW);
                    let want =
                        plan_oracle::plan_repository(policy, &repo_name, inv, &protected, NOW);
                    assert_eq!(
                        format!("{got:#?}"),
                        format!("{want:#?}"),
                        "case {case}, policy {p}: {inv:#?}"
                    );
                    items += got.len();
                    manifests += got.iter().filter(|i| i.kind == ItemKind::Manifest).count();
                    referrers += got
                        .iter()
                        .filter(|i| i.reason.starts_with("referrer of"))
                        .count();
                }
            }
        }
    }
    // The cases plan something, down chains of referrers too.
    assert!(
        items > 10_000 && manifests > 5_000 && referrers > 500,
        "{items} {manifests} {referrers}"
    );
}
