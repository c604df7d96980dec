//! Scans as background jobs, end to end on a real `berth serve`: a
//! namespace set to scan on push (`berth scan policy NS --on-push on`,
//! audited), a two-platform image pushed with `berth copy` (its platform
//! images are scanned by the server's scan worker, never during the push),
//! the stored results with their platforms, the `scan.completed` webhook
//! events with their counts, the summary in the management API's manifest
//! view and in `berth inspect` ("not scanned yet" for an image of a
//! namespace without the policy), the metrics, and a change of the
//! vulnerability data that rescans the stored results.

use serde_json::{json, Value};

use crate::common::Berth;
use crate::scan_fixtures::{
    alpine_index, audit_events, events_until, get_json, import, openssl_advisory, stored_until,
};
use crate::tools::berth_ok;

#[tokio::test]
async fn pushes_are_scanned_in_the_background_and_rescanned_when_the_data_changes() {
    let b = Berth::start_with(&["--webhook-allow-networks", "127.0.0.0/8"], None);
    let c = crate::oci::client();
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    import(
        &b,
        t,
        "osv-1",
        &openssl_advisory("2024-07-01T00:00:00Z", json!({})),
    );
    let (hook, got) = crate::trust::receiver().await;
    let r = c
        .post(format!("{}/api/v1/namespaces/jobs/webhooks", b.url()))
        .json(&json!({"url": hook, "secret": "a-secret-of-some-length",
                      "events": ["scan.completed"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text().await);

    // The policy, through the CLI, and its audit event.
    let off = berth_ok(t, &["scan", "policy", "jobs", "--registry", &b.addr]);
    assert!(off.contains("jobs: scan on push off"), "{off}");
    let on = berth_ok(
        t,
        &[
            "scan",
            "policy",
            "jobs",
            "--on-push",
            "on",
            "--registry",
            &b.addr,
        ],
    );
    assert!(on.contains("jobs: scan on push on (set by"), "{on}");
    let view: Value = serde_json::from_str(&berth_ok(
        t,
        &[
            "scan",
            "policy",
            "jobs",
            "-o",
            "json",
            "--registry",
            &b.addr,
        ],
    ))
    .unwrap();
    assert_eq!(view["scan_on_push"], true, "{view}");
    let audit = audit_events(&c, &b, "action=policy.change").await;
    assert!(
        audit
            .iter()
            .any(|e| e["detail"]["change"] == "scan.policy.set"
                && e["detail"]["scan_on_push"] == true),
        "{audit:?}"
    );

    // A push: scanned in the background, per platform image.
    let layout_dir = alpine_index(t);
    let image_ref = format!("{}/jobs/app:v1", b.addr);
    berth_ok(
        t,
        &[
            "copy",
            "-q",
            &format!("oci:{}:v1", layout_dir.display()),
            &image_ref,
        ],
    );
    let report = stored_until(&c, &b, "jobs/app", "v1", |r| {
        r["images"].as_array().is_some_and(|i| i.len() == 2)
    })
    .await;
    let platforms: Vec<&str> = report["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["platform"].as_str().unwrap())
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"], "{report}");
    assert_eq!(report["counts"]["high"], 4, "libcrypto3 and libssl3, twice");
    let index_digest = report["digest"].as_str().unwrap().to_owned();

    // The webhook: one scan.completed per platform image, with counts.
    let events = events_until(&got, 2).await;
    for e in &events {
        assert_eq!(e["type"], "io.berth.scan.completed", "{e}");
        assert_eq!(e["data"]["repository"], "jobs/app", "{e}");
        assert_eq!(e["data"]["counts"]["high"], 2, "{e}");
        assert_eq!(e["data"]["reason"], "push", "{e}");
    }

    // The manifest view and berth inspect.
    let listing = get_json(
        &c,
        format!("{}/api/v1/repositories/jobs/app/manifests", b.url()),
    )
    .await;
    let index_view = listing["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["digest"] == index_digest.as_str())
        .unwrap();
    assert_eq!(index_view["scan"]["state"], "scanned", "{index_view}");
    assert_eq!(index_view["scan"]["high"], 4, "{index_view}");
    assert!(index_view["scan"]["vulndb_at"].is_i64(), "{index_view}");
    let inspect = berth_ok(t, &["inspect", &image_ref]);
    assert!(
        inspect.contains("Vulnerabilities: 0 critical, 4 high, 0 medium, 0 low (scanned "),
        "{inspect}"
    );

    // A namespace without the policy: pushes are not scanned.
    let plain = format!("{}/plain/app:v1", b.addr);
    berth_ok(
        t,
        &[
            "copy",
            "-q",
            &format!("oci:{}:v1", layout_dir.display()),
            &plain,
        ],
    );
    let inspect = berth_ok(t, &["inspect", &plain]);
    assert!(
        inspect.contains("Vulnerabilities: not scanned yet"),
        "{inspect}"
    );

    // The metrics.
    let metrics = c
        .get(format!("{}/metrics", b.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("berth_scans_total{outcome=\"vulnerable\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("berth_scan_queue_depth 0"), "{metrics}");

    // New vulnerability data: the stored results are scanned again.
    import(
        &b,
        t,
        "osv-2",
        &openssl_advisory(
            "2024-08-01T00:00:00Z",
            json!({"database_specific": {"severity": "CRITICAL"}}),
        ),
    );
    let rescanned = stored_until(&c, &b, "jobs/app", "v1", |r| r["counts"]["critical"] == 4).await;
    assert_eq!(rescanned["counts"]["high"], 0, "{rescanned}");
    let events = events_until(&got, 4).await;
    assert!(
        events[2..].iter().all(|e| e["data"]["reason"] == "vulndb"),
        "{events:?}"
    );
    assert!(
        !b.log().contains("scan failed"),
        "no scan attempt failed:\n{}",
        b.log()
    );
}
