//! The audit log through the API and `berth audit`: pushes, tag moves and
//! deletes each leave one event with the actor's address, filters work, and
//! the JSON-lines export holds every event.

use serde_json::Value;

use crate::common::Berth;
use crate::oci::{client, push_image};
use crate::tools::berth_ok;

#[tokio::test]
async fn pushes_moves_and_deletes_are_audited() {
    let berth = Berth::start();
    let base = berth.url();
    let c = client();
    let (d1, _) = push_image(&c, &base, "acme/web", "v1", "one").await;
    let (d2, _) = push_image(&c, &base, "acme/web", "v1", "two").await; // moves v1
    push_image(&c, &base, "other/app", "latest", "three").await;
    let r = c
        .delete(format!("{base}/v2/acme/web/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);

    let events: Value = c
        .get(format!("{base}/api/v1/audit?repository=acme/&order=oldest"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let events = events["events"].as_array().unwrap().clone();
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["push", "tag.move", "push", "tag.delete"],
        "{events:#?}"
    );
    assert_eq!(events[0]["digest"], d1.as_str());
    assert_eq!(events[1]["detail"]["from"], d1.as_str());
    assert_eq!(events[1]["digest"], d2.as_str());
    assert_eq!(events[3]["tag"], "v1");
    assert!(events.iter().all(|e| e["client_ip"] == "127.0.0.1"));
    assert!(events.iter().all(|e| e["repository"] == "acme/web"));

    // Paging: newest first by default, a page of 2, then the older rest
    // before its last id; oldest first pages on with `after`.
    let page: Value = c
        .get(format!("{base}/api/v1/audit?limit=2"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids = |v: &Value| -> Vec<i64> {
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_i64().unwrap())
            .collect()
    };
    let first = ids(&page);
    assert_eq!(first.len(), 2);
    assert!(first[0] > first[1], "newest first: {first:?}");
    assert_eq!(page["events"][0]["action"], "tag.delete");
    let next = page["next"].as_i64().unwrap();
    let rest: Value = c
        .get(format!("{base}/api/v1/audit?before={next}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rest_ids = ids(&rest);
    assert_eq!(rest_ids.len(), 3);
    assert!(rest_ids.iter().all(|id| *id < first[1]));
    assert!(rest["next"].is_null());
    let oldest: Value = c
        .get(format!("{base}/api/v1/audit?limit=2&order=oldest"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let next = oldest["next"].as_i64().unwrap();
    let newer: Value = c
        .get(format!("{base}/api/v1/audit?order=oldest&after={next}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut all = ids(&oldest);
    all.extend(ids(&newer));
    let mut expected = first.clone();
    expected.extend(&rest_ids);
    expected.reverse();
    assert_eq!(all, expected);

    // Bad parameters are refused in the error shape.
    let r = c
        .get(format!("{base}/api/v1/audit?limit=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("limit"));

    // The CLI: filters, JSON, and the JSON-lines export of everything.
    let dir = tempfile::tempdir().unwrap();
    let reg = ["--registry", base.as_str()];
    let moved = berth_ok(
        dir.path(),
        &[
            &["audit", "--action", "tag.", "--format", "json"][..],
            &reg[..],
        ]
        .concat(),
    );
    let moved: Value = serde_json::from_str(&moved).unwrap();
    assert_eq!(moved["events"].as_array().unwrap().len(), 2);
    // The table pages newest first and says how to get the next page.
    let out = crate::tools::berth(
        dir.path(),
        &[&["audit", "--limit", "2"][..], &reg[..]].concat(),
    );
    let (top, err) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "{err}");
    assert!(top.lines().nth(1).unwrap().contains("tag.delete"), "{top}");
    let before = err
        .split("--before ")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .unwrap_or_else(|| panic!("no --before in {err:?}"))
        .to_owned();
    let older = berth_ok(
        dir.path(),
        &[&["audit", "--before", &before, "-o", "json"][..], &reg[..]].concat(),
    );
    let older: Value = serde_json::from_str(&older).unwrap();
    assert_eq!(older["events"].as_array().unwrap().len(), 3);
    let table = berth_ok(
        dir.path(),
        &[&["audit", "--actor", "anonymous"][..], &reg[..]].concat(),
    );
    assert!(table.starts_with("TIME"), "{table}");
    assert_eq!(table.lines().count(), 6, "{table}");
    assert!(table.contains("tag.move"));
    let export = berth_ok(dir.path(), &[&["audit", "--jsonl"][..], &reg[..]].concat());
    let lines: Vec<Value> = export
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    assert!(lines
        .windows(2)
        .all(|w| w[0]["id"].as_i64() < w[1]["id"].as_i64()));
    let future = berth_ok(
        dir.path(),
        &[
            &[
                "audit",
                "--since",
                "2100-01-01T00:00:00Z",
                "--format",
                "json",
            ][..],
            &reg[..],
        ]
        .concat(),
    );
    assert_eq!(
        serde_json::from_str::<Value>(&future).unwrap()["events"],
        serde_json::json!([])
    );
}

#[tokio::test]
async fn a_burst_of_token_fetches_is_one_login_event_with_a_count() {
    let berth = Berth::start_auth(&[], None);
    let base = berth.url();
    let c = client();
    for _ in 0..25 {
        let r = c
            .get(format!(
                "{base}/token?service=berth&scope=repository:admin/app:pull"
            ))
            .basic_auth("admin", Some(crate::common::ADMIN_PASSWORD))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let page: Value = c
        .get(format!("{base}/api/v1/audit?action=login"))
        .basic_auth("admin", Some(crate::common::ADMIN_PASSWORD))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let events = page["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{page:#}");
    assert_eq!(events[0]["actor"], "admin");
    assert_eq!(events[0]["detail"]["method"], "password");
    // 25 fetches and the audit read's own login: the first is the event.
    let repeats = events[0]["detail"]["repeats"].as_u64().unwrap();
    assert!((24..=25).contains(&repeats), "{page:#}");
    assert!(events[0]["detail"]["last_at"].as_i64().unwrap() >= events[0]["at"].as_i64().unwrap());
}
