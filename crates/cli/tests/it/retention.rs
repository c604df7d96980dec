//! Retention policies against a real `berth serve`: the five ready-made
//! policies of docs/retention.md (taken from the document itself), on
//! images pushed for real whose push times are then moved into the past
//! through the metadata layer (no sleeping), checking the plan and what
//! is left after `apply`; multi-arch and referrer safety with GC. The
//! `berth retention` command is in `retention_cli`.

use std::collections::BTreeSet;

use berth_meta::Meta;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

use crate::common::Berth;
use crate::oci::{
    client, descriptor, files_under, image_manifest, push_blob, push_image, put_manifest, sha256,
    OCI_EMPTY, OCI_INDEX, OCI_MANIFEST,
};

const DAY: i64 = 86_400_000;
const DOC: &str = include_str!("../../../../docs/retention.md");

/// The TOML block of docs/retention.md marked `# example: NAME`.
pub(crate) fn example(name: &str) -> String {
    let marker = format!("# example: {name}\n");
    let start = DOC
        .find(&marker)
        .unwrap_or_else(|| panic!("no example {name}"));
    let rest = &DOC[start..];
    rest[..rest.find("```").unwrap()].to_owned()
}

/// A server, a client, and the server's database for moving times.
pub(crate) struct Lab {
    pub(crate) berth: Berth,
    c: Client,
    base: String,
    meta: Meta,
    now: i64,
}

impl Lab {
    pub(crate) async fn start() -> Lab {
        let berth = Berth::start_with(&[], Some("gc_grace_period = \"0s\"\ngc_interval = \"0\"\n"));
        let meta = Meta::open_sqlite(&berth.data_dir.join("berth.db"))
            .await
            .unwrap();
        Lab {
            base: berth.url(),
            c: client(),
            berth,
            meta,
            now: berth_meta::now_ms(),
        }
    }

    /// Pushes an image tagged `tag`, pushed `days` ago.
    pub(crate) async fn image(&self, repo: &str, tag: &str, days: i64) -> String {
        let (d, _) = push_image(&self.c, &self.base, repo, tag, &format!("{repo}:{tag}")).await;
        self.age(repo, tag, &d, days).await;
        d
    }

    /// Moves the push time of `tag` and its manifest `days` into the past.
    async fn age(&self, repo: &str, tag: &str, digest: &str, days: i64) {
        let at = self.now - days * DAY;
        let (repo, tag, digest) = (
            berth_oci::RepositoryName::parse(repo).unwrap(),
            berth_oci::Tag::parse(tag).unwrap(),
            berth_oci::Digest::parse(digest).unwrap(),
        );
        self.meta
            .set_tag_times(&repo, &tag, at, None)
            .await
            .unwrap();
        self.meta
            .set_manifest_times(&repo, &digest, at, None)
            .await
            .unwrap();
    }

    /// Pushes an untagged image, pushed `days` ago; returns (digest, bytes).
    async fn untagged(&self, repo: &str, seed: &str, days: i64) -> (String, Vec<u8>) {
        let config = format!("{{\"architecture\":\"{seed}\",\"os\":\"linux\"}}").into_bytes();
        let layer = format!("layer of {seed}").into_bytes();
        push_blob(&self.c, &self.base, repo, &config).await;
        push_blob(&self.c, &self.base, repo, &layer).await;
        let m = image_manifest(&config, &[&layer]);
        let d = sha256(&m);
        let r = put_manifest(&self.c, &self.base, repo, &d, OCI_MANIFEST, &m).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        self.meta
            .set_manifest_times(
                &berth_oci::RepositoryName::parse(repo).unwrap(),
                &berth_oci::Digest::parse(&d).unwrap(),
                self.now - days * DAY,
                None,
            )
            .await
            .unwrap();
        (d, m)
    }

    async fn set_policy(&self, ns: &str, text: &str) {
        let r = self
            .c
            .put(format!("{}/api/v1/namespaces/{ns}/retention", self.base))
            .body(text.to_owned())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{:?}", r.text().await);
    }

    async fn post(&self, ns: &str, what: &str, now: Option<i64>) -> Value {
        let q = now.map(|n| format!("?now={n}")).unwrap_or_default();
        let r = self
            .c
            .request(
                if what == "plan" {
                    reqwest::Method::GET
                } else {
                    reqwest::Method::POST
                },
                format!("{}/api/v1/namespaces/{ns}/retention/{what}{q}", self.base),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.json().await.unwrap()
    }

    async fn plan(&self, ns: &str) -> Value {
        self.post(ns, "plan", None).await
    }

    async fn apply(&self, ns: &str) -> Value {
        let applied = self.post(ns, "apply", None).await;
        assert_eq!(applied["skipped"], json!([]), "{applied:#}");
        applied
    }

    pub(crate) async fn tags(&self, repo: &str) -> BTreeSet<String> {
        let v: Value = self
            .c
            .get(format!("{}/v2/{repo}/tags/list", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["tags"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| t.as_str().unwrap().to_owned())
            .collect()
    }

    async fn has_manifest(&self, repo: &str, digest: &str) -> bool {
        let r = self
            .c
            .head(format!("{}/v2/{repo}/manifests/{digest}", self.base))
            .header("accept", format!("{OCI_MANIFEST}, {OCI_INDEX}"))
            .send()
            .await
            .unwrap();
        r.status() == StatusCode::OK
    }
}

/// `(repository, tag or digest)` pairs.
type Pairs = BTreeSet<(String, String)>;

/// `(repository, tag)` of the plan's tag items and `(repository, digest)`
/// of its manifest items.
fn items(plan: &Value) -> (Pairs, Pairs) {
    let (mut tags, mut manifests) = (BTreeSet::new(), BTreeSet::new());
    for i in plan["items"].as_array().unwrap() {
        let repo = i["repository"].as_str().unwrap().to_owned();
        match i["kind"].as_str().unwrap() {
            "tag" => tags.insert((repo, i["tag"].as_str().unwrap().to_owned())),
            _ => manifests.insert((repo, i["digest"].as_str().unwrap().to_owned())),
        };
    }
    (tags, manifests)
}

fn set<const N: usize>(v: [(&str, &str); N]) -> BTreeSet<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

pub(crate) fn strings(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn keeps_the_last_10_versions_per_package_and_never_latest_main_develop() {
    let lab = Lab::start().await;
    let mut versions = Vec::new();
    for n in 1..=14 {
        // 1.1 is the oldest, 1.14 the newest.
        versions.push(lab.image("acme/app", &format!("1.{n}"), 30 - n).await);
    }
    for (tag, v) in [("latest", 0), ("main", 1), ("develop", 2)] {
        put_manifest(
            &lab.c,
            &lab.base,
            "acme/app",
            tag,
            OCI_MANIFEST,
            &image_manifest_of(&lab, "acme/app", &versions[v]).await,
        )
        .await;
    }
    for n in 1..=3 {
        lab.image("acme/lib", &format!("0.{n}"), 100 + n).await;
    }
    lab.set_policy("acme", &example("last-10-versions")).await;
    let plan = lab.post("acme", "plan", Some(lab.now)).await;
    let (tags, manifests) = items(&plan);
    assert_eq!(
        tags,
        set([
            ("acme/app", "1.1"),
            ("acme/app", "1.2"),
            ("acme/app", "1.3"),
            ("acme/app", "1.4")
        ]),
        "{plan:#}"
    );
    // 1.1-1.3 keep latest/main/develop; only 1.4's image goes.
    assert_eq!(manifests, set([("acme/app", versions[3].as_str())]));
    let item = plan["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["tag"] == "1.1")
        .unwrap();
    assert_eq!(item["rule"], "last-10-versions");
    assert_eq!(item["reason"], "not kept by: last 10");
    assert_eq!(item["age_ms"], 29 * DAY);
    assert!(plan["bytes"].as_u64().unwrap() > 0);

    lab.apply("acme").await;
    let mut want: Vec<String> = (5..=14).map(|n| format!("1.{n}")).collect();
    want.extend(["latest", "main", "develop"].map(String::from));
    assert_eq!(lab.tags("acme/app").await, want.into_iter().collect());
    assert_eq!(
        lab.tags("acme/lib").await,
        strings(&["0.1", "0.2", "0.3"]),
        "counted per package"
    );
    assert!(lab.has_manifest("acme/app", &versions[0]).await);
    assert!(!lab.has_manifest("acme/app", &versions[3]).await);
    let events: Value = lab
        .c
        .get(format!("{}/api/v1/audit?action=retention.delete", lab.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let events = events["events"].as_array().unwrap();
    assert_eq!(events.len(), 5, "four tags and one manifest");
    assert!(events
        .iter()
        .all(|e| e["detail"]["rule"] == "last-10-versions"));
    // A second plan is empty.
    assert_eq!(lab.plan("acme").await["items"], json!([]));
}

/// The stored bytes of manifest `digest`.
async fn image_manifest_of(lab: &Lab, repo: &str, digest: &str) -> Vec<u8> {
    lab.c
        .get(format!("{}/v2/{repo}/manifests/{digest}", lab.base))
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec()
}

const ARCHES: [&str; 3] = ["amd64", "arm64", "s390x"];

/// Pushes an index over `children` (digest, bytes) under `tag`.
async fn push_index(lab: &Lab, repo: &str, tag: &str, children: &[(String, Vec<u8>)]) -> String {
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": children.iter().enumerate().map(|(i, (d, m))| json!({
            "mediaType": OCI_MANIFEST, "digest": d, "size": m.len(),
            "platform": {"architecture": ARCHES[i % 3], "os": "linux"}})).collect::<Vec<_>>(),
    }))
    .unwrap();
    let r = put_manifest(&lab.c, &lab.base, repo, tag, OCI_INDEX, &index).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    sha256(&index)
}

#[tokio::test]
async fn deletes_untagged_after_30_days_but_not_the_children_of_a_tagged_index() {
    let lab = Lab::start().await;
    let (old, _) = lab.untagged("acme/svc", "old", 40).await;
    let (young, _) = lab.untagged("acme/svc", "young", 10).await;
    let kept = lab.image("acme/svc", "stable", 40).await;
    let amd = lab.untagged("acme/svc", "amd64", 60).await;
    let arm = lab.untagged("acme/svc", "arm64", 60).await;
    let index = push_index(&lab, "acme/svc", "multi", &[amd.clone(), arm.clone()]).await;
    lab.age("acme/svc", "multi", &index, 60).await;
    lab.set_policy("acme", &example("untagged-30d")).await;

    let (tags, manifests) = items(&lab.plan("acme").await);
    assert!(tags.is_empty());
    assert_eq!(manifests, set([("acme/svc", old.as_str())]));
    // Evaluated 25 days later (explicit clock), the young one goes too.
    let later = lab.post("acme", "plan", Some(lab.now + 25 * DAY)).await;
    assert_eq!(
        items(&later).1,
        set([("acme/svc", old.as_str()), ("acme/svc", young.as_str())])
    );
    assert_eq!(later["items"][0]["reason"], "untagged: older than 30d");

    lab.apply("acme").await;
    assert!(!lab.has_manifest("acme/svc", &old).await);
    for d in [&young, &kept, &amd.0, &arm.0, &index] {
        assert!(lab.has_manifest("acme/svc", d).await, "{d} stays");
    }
    // GC keeps everything the index still reaches; the platform images pull.
    let gc: Value = lab
        .c
        .post(format!("{}/api/v1/gc", lab.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        gc["blobs"].as_array().unwrap().len(),
        2,
        "only the deleted image's config and layer: {gc:#}"
    );
    for (d, m) in [&amd, &arm] {
        let body = image_manifest_of(&lab, "acme/svc", d).await;
        assert_eq!(&body, m);
        let v: Value = serde_json::from_slice(&body).unwrap();
        for b in [&v["config"], &v["layers"][0]] {
            let r = lab
                .c
                .get(format!(
                    "{}/v2/acme/svc/blobs/{}",
                    lab.base,
                    b["digest"].as_str().unwrap()
                ))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
        }
    }
}

#[tokio::test]
async fn expires_pr_builds_after_7_days_and_main_builds_after_90() {
    let lab = Lab::start().await;
    for (tag, days) in [
        ("pr-1", 10),
        ("pr-2", 3),
        ("main-abc", 100),
        ("main-def", 30),
        ("v1", 200),
        ("latest", 200),
    ] {
        lab.image("acme/web", tag, days).await;
    }
    lab.set_policy("acme", &example("expire-builds")).await;
    let plan = lab.plan("acme").await;
    let (tags, manifests) = items(&plan);
    assert_eq!(tags, set([("acme/web", "main-abc"), ("acme/web", "pr-1")]));
    assert_eq!(manifests.len(), 2, "each had one tag");
    let rules: BTreeSet<&str> = plan["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["rule"].as_str().unwrap())
        .collect();
    assert_eq!(rules, ["main-builds", "pr-builds"].into_iter().collect());
    lab.apply("acme").await;
    assert_eq!(
        lab.tags("acme/web").await,
        strings(&["latest", "main-def", "pr-2", "v1"])
    );
}

#[tokio::test]
async fn keeps_release_tags_forever_and_protected_tags_always() {
    let lab = Lab::start().await;
    for (tag, days) in [
        ("v1.0", 400),
        ("v2.0", 100),
        ("nightly", 60),
        ("stable", 60),
        ("edge", 1),
    ] {
        lab.image("acme/tool", tag, days).await;
    }
    let r = lab
        .c
        .post(format!("{}/api/v1/namespaces/acme/tag-rules", lab.base))
        .json(&json!({"pattern": "stable", "kind": "protected"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    lab.set_policy("acme", &example("releases-forever")).await;
    let (tags, _) = items(&lab.plan("acme").await);
    assert_eq!(tags, set([("acme/tool", "nightly")]));
    lab.apply("acme").await;
    assert_eq!(
        lab.tags("acme/tool").await,
        strings(&["edge", "stable", "v1.0", "v2.0"])
    );
}

#[tokio::test]
async fn keeps_the_last_50_sha_tags() {
    let lab = Lab::start().await;
    for n in 0..55 {
        // sha-00 is the oldest.
        lab.image("acme/ci", &format!("sha-{n:02}"), 100 - n).await;
    }
    lab.image("acme/ci", "latest", 200).await;
    lab.set_policy("acme", &example("last-50-sha")).await;
    let (tags, manifests) = items(&lab.plan("acme").await);
    let want: BTreeSet<(String, String)> = (0..5)
        .map(|n| ("acme/ci".to_owned(), format!("sha-{n:02}")))
        .collect();
    assert_eq!(tags, want);
    assert_eq!(manifests.len(), 5);
    lab.apply("acme").await;
    let left = lab.tags("acme/ci").await;
    assert_eq!(left.len(), 51);
    assert!(left.contains("latest") && left.contains("sha-05") && !left.contains("sha-04"));
}

#[tokio::test]
async fn deleting_an_index_takes_its_children_and_referrers_and_gc_reclaims_them() {
    let lab = Lab::start().await;
    let amd = lab.untagged("acme/multi", "amd64", 5).await;
    let arm = lab.untagged("acme/multi", "arm64", 5).await;
    let index = push_index(&lab, "acme/multi", "1.0", &[amd.clone(), arm.clone()]).await;
    let keep = lab.image("acme/multi", "2.0", 1).await;
    // An SBOM through the referrers API and a cosign-style signature tag.
    let empty = push_blob(&lab.c, &lab.base, "acme/multi", b"{}").await;
    let payload = b"sbom of the index".to_vec();
    push_blob(&lab.c, &lab.base, "acme/multi", &payload).await;
    let sbom = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "artifactType": "application/spdx+json",
        "config": {"mediaType": OCI_EMPTY, "digest": empty, "size": 2},
        "layers": [descriptor("application/octet-stream", &payload)],
        "subject": {"mediaType": OCI_INDEX, "digest": index, "size": 1}}))
    .unwrap();
    assert_eq!(
        put_manifest(
            &lab.c,
            &lab.base,
            "acme/multi",
            &sha256(&sbom),
            OCI_MANIFEST,
            &sbom
        )
        .await
        .status(),
        201
    );
    let sig_tag = format!("{}.sig", index.replace(':', "-"));
    let (sig, _) = push_image(&lab.c, &lab.base, "acme/multi", &sig_tag, "signature").await;

    // Untagged cleanup: children and referrers of a kept index stay.
    let policy = format!(
        "{}\n{}",
        example("untagged-30d"),
        "[[rule]]\nname = \"only-2.x\"\ntags = [\"1.*\"]\nkeep = { always = true }\n"
    );
    lab.set_policy("acme", &policy.replace("30d", "0d")).await;
    assert_eq!(lab.plan("acme").await["items"], json!([]));

    // A rule that drops 1.0: the index goes, and with it both platform
    // images, the SBOM and the signature (with its tag), index first.
    lab.set_policy(
        "acme",
        "[[rule]]\nname = \"drop-1\"\ntags = [\"1.*\"]\nkeep = { last = 0 }\n",
    )
    .await;
    let plan = lab.plan("acme").await;
    let (tags, manifests) = items(&plan);
    assert_eq!(tags, set([("acme/multi", "1.0")]));
    let want: BTreeSet<(String, String)> = [&index, &amd.0, &arm.0, &sha256(&sbom), &sig]
        .iter()
        .map(|d| ("acme/multi".to_owned(), d.to_string()))
        .collect();
    assert_eq!(manifests, want);
    let order: Vec<&str> = plan["items"]
        .as_array()
        .unwrap()
        .iter()
        .skip(1)
        .map(|i| i["digest"].as_str().unwrap())
        .collect();
    assert_eq!(order[0], index, "the index before what it holds");
    assert!(plan["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["rule"] == "drop-1"));

    lab.apply("acme").await;
    assert_eq!(lab.tags("acme/multi").await, strings(&["2.0"]));
    let referrers: Value = lab
        .c
        .get(format!("{}/v2/acme/multi/referrers/{index}", lab.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(referrers["manifests"], json!([]));
    for d in [&index, &amd.0, &arm.0, &sig] {
        assert!(!lab.has_manifest("acme/multi", d).await);
    }
    // GC reclaims every blob only the deleted manifests used.
    let before = files_under(&lab.berth.data_dir.join("blobs")).len();
    let gc: Value = lab
        .c
        .post(format!("{}/api/v1/gc", lab.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let after = files_under(&lab.berth.data_dir.join("blobs")).len();
    assert_eq!(before - after, gc["blobs"].as_array().unwrap().len());
    // amd64 and arm64 (config + layer each), the SBOM's `{}` config and
    // payload, the signature's config and layer.
    assert_eq!(gc["blobs"].as_array().unwrap().len(), 8, "{gc:#}");
    assert!(lab.has_manifest("acme/multi", &keep).await);
}
