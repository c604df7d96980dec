//! A client retrying a blocked pull in a loop does not flood the audit
//! log or the webhooks: a burst of refusals of one manifest to one caller
//! for one reason is one `pull.blocked` audit event (counting the rest as
//! `detail.repeats`, written by the pull-statistics flush) and one
//! `pull.blocked` webhook event, while the metric counts every refusal.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::Berth;
use crate::layout;
use crate::oci::{client, OCI_MANIFEST};
use crate::scan_fixtures::{
    alpine_index, audit_events, events_until, import, metrics, openssl_advisory,
};
use crate::tools::berth_ok;

#[tokio::test]
async fn a_burst_of_refused_pulls_is_one_audit_event_with_its_count() {
    let b = Berth::start_with(
        &[
            "--webhook-allow-networks",
            "127.0.0.0/8",
            "--pull-stats-flush-interval",
            "1s",
        ],
        None,
    );
    let http = client();
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    import(
        &b,
        t,
        "osv",
        &openssl_advisory("2024-07-01T00:00:00Z", json!({})),
    );
    let layout_dir = alpine_index(t);
    let image = format!("{}/flood/app:v1", b.addr);
    berth_ok(
        t,
        &[
            "copy",
            "-q",
            &format!("oci:{}:v1", layout_dir.display()),
            &image,
        ],
    );
    berth_ok(t, &["scan", "-o", "json", &image, "--registry", &b.addr]);
    berth_ok(
        t,
        &[
            "scan",
            "policy",
            "flood",
            "--block-severity",
            "high",
            "--registry",
            &b.addr,
        ],
    );
    let (hook, got) = crate::trust::receiver().await;
    let r = http
        .post(format!("{}/api/v1/namespaces/flood/webhooks", b.url()))
        .json(&json!({"url": hook, "secret": "a-secret-of-some-length",
                      "events": ["pull.blocked"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text().await);

    // 200 refusals of the index by tag, and 5 of one platform image by
    // digest (another manifest: its own event).
    let index_digest = layout::resolve(&layout_dir, "v1").unwrap().digest;
    let index = layout::read_json(&layout_dir, &index_digest);
    let child = index["manifests"][0]["digest"].as_str().unwrap().to_owned();
    let accept = format!("{}, {OCI_MANIFEST}", layout::INDEX);
    for (reference, n) in [("v1", 200), (child.as_str(), 5)] {
        for _ in 0..n {
            let r = http
                .get(format!("{}/v2/flood/app/manifests/{reference}", b.url()))
                .header("accept", &accept)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 403, "a vulnerable image was served");
        }
    }

    // Two audit events, whose counts add up to the 205 refusals once the
    // flush wrote them.
    let deadline = Instant::now() + Duration::from_secs(30);
    let events = loop {
        let events = audit_events(&http, &b, "action=pull.blocked&repository=flood/").await;
        let refusals: u64 = events
            .iter()
            .map(|e| 1 + e["detail"]["repeats"].as_u64().unwrap_or(0))
            .sum();
        if refusals == 205 {
            break events;
        }
        assert!(
            refusals < 205 && Instant::now() < deadline,
            "the audit log does not count 205 refusals: {events:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(events.len(), 2, "{events:?}");
    let by_tag = events.iter().find(|e| e["tag"] == "v1").expect("by tag");
    assert_eq!(by_tag["detail"]["repeats"], 199, "{by_tag}");
    assert_eq!(by_tag["detail"]["reason"], "vulnerable", "{by_tag}");
    assert!(by_tag["detail"]["last_at"].as_i64().unwrap() >= by_tag["at"].as_i64().unwrap());
    let by_digest = events.iter().find(|e| e["digest"] == child.as_str());
    assert_eq!(by_digest.expect("by digest")["detail"]["repeats"], 4);

    // The metric counts every refusal.
    let metrics = metrics(&http, &b).await;
    assert!(
        metrics.contains(r#"berth_pulls_blocked_total{namespace="flood",reason="vulnerable"} 205"#),
        "{metrics}"
    );

    // One webhook event per audit event.
    events_until(&got, 2).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let delivered = got.lock().unwrap().clone();
    assert_eq!(delivered.len(), 2, "{delivered:?}");
    for e in &delivered {
        assert_eq!(e["type"], "io.berth.pull.blocked", "{e}");
        assert_eq!(e["data"]["repository"], "flood/app", "{e}");
        assert_eq!(e["data"]["reason"], "vulnerable", "{e}");
        assert!(
            e["data"]["message"]
                .as_str()
                .unwrap()
                .contains("CVE-2099-0002 (high)"),
            "{e}"
        );
    }
}
