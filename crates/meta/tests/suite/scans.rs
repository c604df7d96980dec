//! Scans as background jobs: namespace policies (audited), the requests a
//! push makes inside its own transaction, claims that two workers cannot
//! both win, retries, finished scans with their event, and rescans after
//! the vulnerability data changed; on both engines.

use berth_meta::allowances::ScanAllowance;
use berth_meta::audit::{action, Actor, AuditFilter};
use berth_meta::events::{EventKind, NewEvent};
use berth_meta::scans::{FinishedScan, ScanPolicy, StoredScan};
use berth_meta::Meta;

use super::{d, manifest, n, ns};

fn admin() -> Actor {
    Actor {
        name: "admin".into(),
        ip: None,
        at: 9_000,
    }
}

fn result(repo: &str, digest: &str, vulndb_at: Option<i64>, scanned_at: i64) -> StoredScan {
    StoredScan {
        repository: n(repo),
        digest: d(digest),
        platform: None,
        scanned_at,
        vulndb_at,
        packages: 3,
        counts: [1, 0, 0, 0, 0],
        report: "{}".into(),
        error: None,
    }
}

pub async fn run(meta: &Meta) {
    // Without a policy a push requests nothing.
    let mut m = manifest("sq/app", &d("sha256:sq-one"), None, None, &["v1"]);
    m.scan_candidates = vec![d("sha256:sq-one")];
    meta.link_blob(&n("sq/app"), &d("sha256:layer"), 10, 1)
        .await
        .unwrap();
    meta.link_blob(&n("sq/app"), &d("sha256:config"), 10, 1)
        .await
        .unwrap();
    meta.put_manifest(&m, &admin()).await.unwrap();
    assert_eq!(meta.scan_queue_depth().await.unwrap(), 0);

    // The policy, audited.
    let on = ScanPolicy {
        namespace: ns("sq"),
        scan_on_push: true,
        block_severity: None,
        unscanned: "allow".into(),
        updated_at: 0,
        updated_by: None,
    };
    meta.set_scan_policy(&on, &admin()).await.unwrap();
    let policies = meta.scan_policies().await.unwrap();
    assert_eq!(policies.len(), 1);
    assert!(policies[0].scan_on_push);
    assert_eq!(policies[0].updated_by.as_deref(), Some("admin"));
    let audit = meta
        .audit_events(&AuditFilter {
            action: Some(action::POLICY_CHANGE.into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(audit
        .iter()
        .any(|e| e.event.detail.as_ref().unwrap()["change"] == "scan.policy.set"));

    // Now a push requests its scan, in its transaction; a push of a
    // manifest that is stored already requests nothing new.
    let mut two = manifest("sq/app", &d("sha256:sq-two"), None, None, &["v2"]);
    two.scan_candidates = vec![d("sha256:sq-two")];
    meta.put_manifest(&two, &admin()).await.unwrap();
    meta.put_manifest(&two, &admin()).await.unwrap();
    assert_eq!(meta.scan_queue_depth().await.unwrap(), 1);
    // And on request (the first manifest, later).
    assert!(meta
        .request_scan(&n("sq/app"), &d("sha256:sq-one"), "manual", 9_500)
        .await
        .unwrap());
    assert!(!meta
        .request_scan(&n("sq/app"), &d("sha256:sq-one"), "manual", 9_600)
        .await
        .unwrap());

    // Claims: the oldest first, never one request by two workers.
    let now = berth_meta::now_ms();
    let a = meta
        .claim_scan("worker-a", now, now + 60_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.digest, d("sha256:sq-two"));
    assert_eq!((a.reason.as_str(), a.attempts), ("push", 1));
    let b = meta
        .claim_scan("worker-b", now, now + 60_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(b.digest, d("sha256:sq-one"));
    assert!(meta
        .claim_scan("worker-c", now, now + 60_000)
        .await
        .unwrap()
        .is_none());
    // Claims race: of two concurrent claims on one free request, one wins.
    meta.retry_scan(&b, "worker-b", now, "store unreachable")
        .await
        .unwrap();
    let (x, y) = tokio::join!(
        meta.claim_scan("worker-x", now + 1, now + 60_000),
        meta.claim_scan("worker-y", now + 1, now + 60_000)
    );
    let (x, y) = (x.unwrap(), y.unwrap());
    assert!(x.is_some() != y.is_some(), "{x:?} {y:?}");
    let holder_one = if x.is_some() { "worker-x" } else { "worker-y" };
    let one = x.or(y).unwrap();
    assert_eq!((one.digest.clone(), one.attempts), (d("sha256:sq-one"), 2));
    // A claim whose holder vanished is taken over once it runs out.
    let late = meta
        .claim_scan("worker-z", now + 61_000, now + 120_000)
        .await
        .unwrap();
    assert!(late.is_some());

    // Finished: stored with its event, the request gone.
    let mut event = NewEvent::new(EventKind::ScanCompleted, "scanner", now);
    event.repository = Some(n("sq/app"));
    event.digest = Some(d("sha256:sq-two").to_string());
    let before = meta.events_after(0, 10_000).await.unwrap().len();
    assert!(meta
        .finish_scan(FinishedScan {
            scan: result("sq/app", "sha256:sq-two", Some(5_000), 10_000),
            event: Some(event),
            holder: Some("worker-z".into()),
        })
        .await
        .unwrap());
    let events = meta.events_after(0, 10_000).await.unwrap();
    assert_eq!(events.len(), before + 1);
    assert_eq!(events.last().unwrap().kind, EventKind::ScanCompleted);
    // worker-z held sq-two (taken over); sq-one is still claimed.
    assert_eq!(meta.scan_queue_depth().await.unwrap(), 1);
    let rows = meta.scan_rows(&n("sq/app")).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].counts[0], 1);

    // Rescans: results older than the data, oldest first, bounded.
    meta.finish_scan(FinishedScan {
        scan: result("sq/app", "sha256:sq-one", None, 8_000),
        event: None,
        holder: Some(holder_one.into()),
    })
    .await
    .unwrap();
    assert_eq!(meta.scan_queue_depth().await.unwrap(), 0);
    assert_eq!(meta.request_rescans(6_000, 11_000, 1).await.unwrap(), 1);
    let first = meta
        .claim_scan("w", now + 200_000, now + 300_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.digest, d("sha256:sq-one"), "the oldest scan first");
    assert_eq!(first.reason, "vulndb");
    assert_eq!(meta.request_rescans(6_000, 11_000, 10).await.unwrap(), 1);
    assert_eq!(meta.request_rescans(6_000, 11_000, 10).await.unwrap(), 0);
    assert_eq!(meta.request_rescans(4_000, 11_000, 10).await.unwrap(), 0);

    // The pull policy's settings and allowances, audited.
    let gate = ScanPolicy {
        namespace: ns("sq"),
        scan_on_push: true,
        block_severity: Some("high".into()),
        unscanned: "deny".into(),
        updated_at: 0,
        updated_by: None,
    };
    meta.set_scan_policy(&gate, &admin()).await.unwrap();
    let p = &meta.scan_policies().await.unwrap()[0];
    assert_eq!(
        (p.block_severity.as_deref(), p.unscanned.as_str()),
        (Some("high"), "deny")
    );
    let allowance = |advisory: &str, expires_at: Option<i64>| ScanAllowance {
        namespace: ns("sq"),
        advisory: advisory.into(),
        reason: "not reachable".into(),
        expires_at,
        created_at: 0,
        created_by: None,
    };
    meta.set_scan_allowance(&allowance("CVE-2", Some(20_000)), &admin())
        .await
        .unwrap();
    meta.set_scan_allowance(&allowance("CVE-1", None), &admin())
        .await
        .unwrap();
    // Granting again replaces.
    meta.set_scan_allowance(&allowance("CVE-2", Some(30_000)), &admin())
        .await
        .unwrap();
    let all = meta.scan_allowances(Some(&ns("sq"))).await.unwrap();
    let ids: Vec<(&str, Option<i64>)> = all
        .iter()
        .map(|a| (a.advisory.as_str(), a.expires_at))
        .collect();
    assert_eq!(ids, [("CVE-1", None), ("CVE-2", Some(30_000))]);
    assert_eq!(all[0].created_by.as_deref(), Some("admin"));
    assert!(meta
        .scan_allowances(Some(&ns("other")))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(meta.scan_allowances(None).await.unwrap().len(), 2);
    assert!(meta
        .remove_scan_allowance(&ns("sq"), "CVE-1", &admin())
        .await
        .unwrap());
    assert!(!meta
        .remove_scan_allowance(&ns("sq"), "CVE-1", &admin())
        .await
        .unwrap());
    let changes: Vec<String> = meta
        .audit_events(&AuditFilter {
            action: Some(action::POLICY_CHANGE.into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .iter()
        .filter_map(|e| {
            e.event.detail.as_ref()?["change"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(
        changes
            .iter()
            .filter(|c| c.starts_with("scan.allowance."))
            .count(),
        4,
        "{changes:?}"
    );
}
