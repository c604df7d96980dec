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
        .get(format!("{base}/api/v1/audit?repository=acme/"))
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

    // Paging: a page of 2, then the rest after its last id.
    let page: Value = c
        .get(format!("{base}/api/v1/audit?limit=2"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["events"].as_array().unwrap().len(), 2);
    let next = page["next"].as_i64().unwrap();
    let rest: Value = c
        .get(format!("{base}/api/v1/audit?after={next}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rest["events"].as_array().unwrap().len(), 3);
    assert!(rest["next"].is_null());

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
