//! Replication beyond copying tags (docs/mirror.md, "Replication"):
//! deletions replicated by the rules that opt in, and never outside their
//! filters (a push rule to a second berth, following the events; a pull
//! rule from the reference registry, on its next pass); full passes that
//! copy the referrers (signatures, SBOMs) of the images they select, by
//! digest, both ways.

use serde_json::Value;

use super::replication::{digest_at, replication, wait_for};
use super::*;
use crate::tools_copy::push_referrer;

/// `DELETE /v2/{repo}/manifests/{reference}` at `base`; its status.
fn delete(base: &str, repo: &str, reference: &str) -> u16 {
    http(
        "DELETE",
        &format!("{base}/v2/{repo}/manifests/{reference}"),
        &[],
    )
    .status
}

/// The audit events of `action` at `b`, newest first.
fn audit(b: &Berth, action: &str) -> Vec<Value> {
    let r = http(
        "GET",
        &format!("{}/api/v1/audit?action={action}", b.url()),
        &[],
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()["events"].as_array().cloned().unwrap_or_default()
}

/// `skopeo copy --all` from one registry to another, digests kept.
fn copy(c: &Clients, from: &str, to: &str) {
    c.skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &format!("docker://{from}"),
        &format!("docker://{to}"),
    ]);
}

/// A push rule with `--replicate-deletions` deletes at the target the tag
/// deleted here, and the manifest deleted here unless a tag outside its
/// filter names it there, and on a full pass the tags it copied there
/// that are gone here; a rule without the flag and tags outside the
/// filter keep theirs. A pull rule with it deletes here, on its next pass,
/// the tags it made that are gone at the source, and nothing else. Every
/// deletion is audited and in the rule's history.
#[test]
fn deletions_are_replicated_within_the_rules_filters() {
    if !require("skopeo", "mirror::replication_passes::deletions") {
        return;
    }
    let source = Berth::start();
    let target = Berth::start();
    let dist = Distribution::start();
    let c = Clients::new();
    let (target_url, dist_url) = (target.url(), dist.url());
    let flags = ["--repositories", "acme", "--tags", "v*"];
    let mut args = vec!["add", "del", "--direction", "push", "--url", &target_url];
    args.extend_from_slice(&flags);
    args.push("--replicate-deletions");
    let rule = replication(&source, &args);
    assert_eq!(rule["replicate_deletions"], true, "{rule}");
    let mut args = vec!["add", "keep", "--direction", "push", "--url", &dist_url];
    args.extend_from_slice(&flags);
    replication(&source, &args);

    let mut index = Vec::new();
    for tag in ["v1", "v2", "v3"] {
        let (d, _) = push_multiarch(&c, &format!("docker://{}/acme/app:{tag}", source.addr), &[]);
        index.push(d);
    }
    wait_for(20, "v1..v3 at both targets", || {
        ["v1", "v2", "v3"].iter().all(|t| {
            digest_at(&target_url, "acme/app", t).is_some()
                && digest_at(&dist_url, "acme/app", t).is_some()
        })
    });
    // Tags the rule does not select, at the target only: `dev` on v1's
    // manifest, `pinned` on v2's.
    copy(
        &c,
        &format!("{}/acme/app:v1", target.addr),
        &format!("{}/acme/app:dev", target.addr),
    );
    copy(
        &c,
        &format!("{}/acme/app:v2", target.addr),
        &format!("{}/acme/app:pinned", target.addr),
    );
    let src = source.url();
    assert_eq!(delete(&src, "acme/app", "v1"), 202);
    assert_eq!(delete(&src, "acme/app", &index[1]), 202);
    assert_eq!(delete(&src, "acme/app", &index[2]), 202);
    wait_for(20, "v1 and v3's manifest deleted at the target", || {
        digest_at(&target_url, "acme/app", "v1").is_none()
            && digest_at(&target_url, "acme/app", &index[2]).is_none()
    });
    // Only the tag v1 went: its manifest stays, under `dev`.
    assert_eq!(
        digest_at(&target_url, "acme/app", "dev").as_deref(),
        Some(index[0].as_str())
    );
    assert!(digest_at(&target_url, "acme/app", &index[0]).is_some());
    assert_eq!(digest_at(&target_url, "acme/app", "v3"), None);
    // v2's manifest is kept: `pinned` names it, outside the filter.
    let history = replication(&source, &["history", "del"]);
    wait_for(10, "the run that kept v2's manifest", || {
        replication(&source, &["history", "del"])
            .to_string()
            .contains("pinned")
    });
    assert_eq!(
        digest_at(&target_url, "acme/app", "pinned").as_deref(),
        Some(index[1].as_str())
    );
    assert_eq!(
        digest_at(&target_url, "acme/app", "v2").as_deref(),
        Some(index[1].as_str())
    );
    let runs = replication(&source, &["history", "del"]);
    let deleted: Vec<&str> = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["summary"]["deleted_images"].as_array())
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    assert!(deleted.contains(&"acme/app:v1"), "{runs} {history}");
    assert!(
        deleted.contains(&format!("acme/app@{}", index[2]).as_str()),
        "{runs}"
    );
    assert_eq!(deleted.len(), 2, "{runs}");
    // The rule without --replicate-deletions keeps everything.
    std::thread::sleep(std::time::Duration::from_secs(2));
    for (t, d) in [("v1", &index[0]), ("v2", &index[1]), ("v3", &index[2])] {
        assert_eq!(
            digest_at(&dist_url, "acme/app", t).as_deref(),
            Some(d.as_str())
        );
    }
    let events = audit(&source, "replication.delete");
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(events.iter().all(|e| e["actor"] == "replication/del"));
    assert!(events.iter().any(|e| e["tag"] == "v1"));
    assert!(events.iter().any(|e| e["digest"] == index[2].as_str()));
    // A full pass (here on demand) deletes at the target the selected tags
    // the rule copied there that are gone here, while they name what it
    // put there: v2, whose manifest stayed there for `pinned` (the tag
    // went with the manifest here). `pinned` and `dev` are not the rule's.
    let run = replication(&source, &["run", "del"]);
    assert_eq!(run["ok"], true, "{run}");
    assert_eq!(
        run["summary"]["deleted_images"],
        serde_json::json!(["acme/app:v2"]),
        "{run}"
    );
    assert_eq!(digest_at(&target_url, "acme/app", "v2"), None);
    assert_eq!(
        digest_at(&target_url, "acme/app", "pinned").as_deref(),
        Some(index[1].as_str())
    );
    assert_eq!(
        digest_at(&target_url, "acme/app", "dev").as_deref(),
        Some(index[0].as_str())
    );
    let run = replication(&source, &["run", "del"]);
    assert!(run["summary"].get("deleted").is_none(), "{run}");

    // A pull rule: from the reference registry into `source`.
    let mut pulled = Vec::new();
    for tag in ["v1", "v2", "dev"] {
        let (d, _) = push_multiarch(&c, &format!("docker://{}/lib/app:{tag}", dist.addr), &[]);
        pulled.push(d);
    }
    replication(
        &source,
        &[
            "add",
            "pull-del",
            "--direction",
            "pull",
            "--url",
            &dist_url,
            "--repositories",
            "lib/app",
            "--tags",
            "v*",
            "--replicate-deletions",
        ],
    );
    let run = replication(&source, &["run", "pull-del"]);
    assert_eq!(run["summary"]["copied"], 2, "{run}");
    // A selected tag made here, not by the rule.
    push_multiarch(&c, &format!("docker://{}/lib/app:v9", source.addr), &[]);
    assert_eq!(delete(&dist_url, "lib/app", &pulled[1]), 202);
    assert_eq!(digest_at(&dist_url, "lib/app", "v2"), None);
    let run = replication(&source, &["run", "pull-del"]);
    assert_eq!(run["ok"], true, "{run}");
    assert_eq!(run["summary"]["deleted"], 1, "{run}");
    assert_eq!(
        run["summary"]["deleted_images"],
        serde_json::json!([format!("lib/app:v2@{}", pulled[1])]),
        "{run}"
    );
    assert_eq!(digest_at(&src, "lib/app", "v2"), None);
    assert_eq!(
        digest_at(&src, "lib/app", "v1").as_deref(),
        Some(pulled[0].as_str())
    );
    assert!(digest_at(&src, "lib/app", "v9").is_some());
    let tag_deletes: Vec<Value> = audit(&source, "tag.delete")
        .into_iter()
        .filter(|e| e["actor"] == "replication/pull-del")
        .collect();
    assert_eq!(tag_deletes.len(), 1, "{tag_deletes:?}");
    assert_eq!(tag_deletes[0]["tag"], "v2");
    // Nothing more to delete on the next pass.
    let run = replication(&source, &["run", "pull-del"]);
    assert!(run["summary"].get("deleted").is_none(), "{run}");
}

/// A full pass (here on demand) copies the referrers of the images it
/// selects, of the index and of its platform images, by digest, pushed
/// before the rule existed: to the reference registry (push), and from a
/// berth's referrers API to another berth (pull), where the referrers
/// API lists them.
#[test]
fn full_passes_copy_the_referrers_of_selected_images() {
    if !require("skopeo", "mirror::replication_passes::full_passes") {
        return;
    }
    let source = Berth::start();
    let local = Berth::start();
    let dist = Distribution::start();
    let c = Clients::new();
    let (index, children) =
        push_multiarch(&c, &format!("docker://{}/acme/app:v1", source.addr), &[]);
    let signature = push_referrer(
        &source.addr,
        "acme/app",
        &index,
        layout::INDEX,
        "signature of v1",
    );
    let sbom = push_referrer(
        &source.addr,
        "acme/app",
        &children[0],
        layout::MANIFEST,
        "sbom of v1's first platform",
    );
    let dist_url = dist.url();
    replication(
        &source,
        &[
            "add",
            "passes",
            "--direction",
            "push",
            "--url",
            &dist_url,
            "--no-on-push",
        ],
    );
    let run = replication(&source, &["run", "passes"]);
    assert_eq!(run["ok"], true, "{run}");
    assert_eq!(run["summary"]["copied"], 3, "{run}");
    for d in [&index, &signature, &sbom] {
        assert_eq!(
            digest_at(&dist_url, "acme/app", d).as_deref(),
            Some(d.as_str())
        );
    }
    let again = replication(&source, &["run", "passes"]);
    assert_eq!(again["summary"]["copied"], 0, "{again}");
    assert_eq!(again["summary"]["up_to_date"], 3, "{again}");

    let source_url = source.url();
    replication(
        &local,
        &[
            "add",
            "pull-passes",
            "--direction",
            "pull",
            "--url",
            &source_url,
            "--repositories",
            "acme/app",
        ],
    );
    let run = replication(&local, &["run", "pull-passes"]);
    assert_eq!(run["ok"], true, "{run}");
    assert_eq!(run["summary"]["copied"], 3, "{run}");
    for d in [&signature, &sbom] {
        assert_eq!(
            digest_at(&local.url(), "acme/app", d).as_deref(),
            Some(d.as_str())
        );
    }
    let listed = http(
        "GET",
        &format!("{}/v2/acme/app/referrers/{index}", local.url()),
        &[],
    );
    assert!(
        listed.json()["manifests"]
            .to_string()
            .contains(signature.as_str()),
        "{}",
        String::from_utf8_lossy(&listed.body)
    );
}
