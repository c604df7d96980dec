//! The event outbox and webhook deliveries, on both engines: events are
//! written with the change they report (and not without it), fan out to
//! the webhooks in scope, wait for the earlier delivery of their
//! repository, and a run of failures disables a webhook with an audit
//! event.

use berth_meta::audit::{action, Actor, AuditFilter};
use berth_meta::events::{EventKind, NewEvent};
use berth_meta::webhooks::{Attempt, NewWebhook, Outcome, WebhookScope};
use berth_meta::Meta;

use berth_testkit::digests::digest;

use super::manifest;

fn at(t: i64) -> Actor {
    Actor {
        name: "hooker".into(),
        ip: Some("10.1.2.3".into()),
        at: t,
    }
}

fn hook(ns: Option<&str>, events: &[&str]) -> NewWebhook {
    NewWebhook {
        namespace: ns.map(super::ns),
        url: "https://hooks.example/in".into(),
        format: "cloudevents".into(),
        events: events.iter().map(|e| e.to_string()).collect(),
        secret: "s3cret-s3cret-s3cret".into(),
        description: None,
    }
}

fn attempt(d: i64, w: i64, t: i64, outcome: Outcome) -> Attempt {
    Attempt {
        delivery: d,
        webhook: w,
        at: t,
        outcome,
        status_code: Some(500),
        latency_ms: 3,
        error: Some("HTTP 500".into()),
    }
}

pub async fn run(meta: &Meta) {
    // Whatever earlier cases published goes nowhere (no webhook yet).
    while meta.dispatch_events(1, 1000).await.unwrap() > 0 {}
    let last = meta.events_after(0, 10_000).await.unwrap();
    let mark = last.last().map_or(0, |e| e.id);

    let site = meta
        .create_webhook(&hook(None, &["manifest.pushed", "gc.finished"]), &at(100))
        .await
        .unwrap();
    let ns = meta
        .create_webhook(
            &hook(Some("hooks"), &["manifest.pushed", "tag.deleted"]),
            &at(100),
        )
        .await
        .unwrap();
    assert_eq!(site.namespace, None);
    assert_eq!(ns.events, ["manifest.pushed", "tag.deleted"]);
    let listed = meta
        .webhooks(&WebhookScope::Namespace(super::ns("hooks")))
        .await
        .unwrap();
    assert_eq!(listed.iter().map(|w| w.id).collect::<Vec<_>>(), [ns.id]);
    assert_eq!(meta.webhooks(&WebhookScope::Site).await.unwrap().len(), 1);
    assert!(!meta.webhooks_want(EventKind::Pulled).await.unwrap());
    assert!(meta.webhooks_want(EventKind::TagDeleted).await.unwrap());

    // A push writes its event in its own transaction; a refused push
    // writes none.
    let mut m1 = manifest("hooks/app", &digest("h1"), None, None, &["v1"]);
    m1.pushed_at = 200;
    meta.put_manifest(&m1, &at(200)).await.unwrap();
    let mut bad = manifest("hooks/app", &digest("h-bad"), None, None, &["v2"]);
    bad.required_blobs = vec![digest("not-linked")];
    assert!(meta.put_manifest(&bad, &at(201)).await.is_err());
    let mut m2 = manifest("hooks/app", &digest("h2"), None, None, &["v2"]);
    m2.pushed_at = 202;
    meta.put_manifest(&m2, &at(202)).await.unwrap();
    let mut other = manifest("elsewhere/app", &digest("e1"), None, None, &[]);
    other.pushed_at = 203;
    meta.put_manifest(&other, &at(203)).await.unwrap();
    let events = meta.events_after(mark, 100).await.unwrap();
    let kinds: Vec<(EventKind, Option<&str>)> = events
        .iter()
        .map(|e| (e.kind, e.digest.as_deref()))
        .collect();
    assert_eq!(
        kinds,
        [
            (EventKind::ManifestPushed, Some(digest("h1").as_str())),
            (EventKind::ManifestPushed, Some(digest("h2").as_str())),
            (EventKind::ManifestPushed, Some(digest("e1").as_str())),
        ]
    );
    assert_eq!(events[0].namespace.as_deref(), Some("hooks"));
    assert_eq!(events[0].data["tags"], serde_json::json!(["v1"]));
    assert!(events[0].data["size"].as_u64().unwrap() > 0);
    assert_eq!(events[0].client_ip.as_deref(), Some("10.1.2.3"));
    assert_ne!(events[0].uid, events[1].uid);

    // Fan-out: the namespace's webhook hears its namespace, the site's
    // hears all.
    assert_eq!(meta.dispatch_events(300, 100).await.unwrap(), 3);
    assert_eq!(meta.dispatch_events(300, 100).await.unwrap(), 0);
    let backlog = meta.webhook_backlog().await.unwrap();
    assert_eq!(backlog.pending, 5);
    assert_eq!(backlog.oldest_at, Some(300));

    // Order per repository: only the oldest pending delivery of each
    // webhook and repository is due; a retry holds back the next.
    let due = meta.due_deliveries(300, 100).await.unwrap();
    let mut got: Vec<(i64, &str)> = due
        .iter()
        .map(|d| (d.webhook.id, d.event.digest.as_deref().unwrap()))
        .collect();
    got.sort();
    let (h1, e1) = (digest("h1"), digest("e1"));
    let mut want = vec![
        (site.id, h1.as_str()),
        (site.id, e1.as_str()),
        (ns.id, h1.as_str()),
    ];
    want.sort();
    assert_eq!(got, want);
    assert!(due
        .iter()
        .all(|d| d.webhook.secret == "s3cret-s3cret-s3cret"));
    let first = due.iter().find(|d| d.webhook.id == ns.id).unwrap().clone();
    assert!(!meta
        .record_attempt(&attempt(first.id, ns.id, 300, Outcome::Retry(1_000)), 3)
        .await
        .unwrap());
    let due: Vec<_> = meta
        .due_deliveries(400, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|d| d.webhook.id == ns.id)
        .collect();
    assert!(due.is_empty(), "h2 waits for h1's retry: {due:?}");
    let mut ok = attempt(first.id, ns.id, 1_000, Outcome::Delivered);
    ok.status_code = Some(204);
    ok.error = None;
    meta.record_attempt(&ok, 3).await.unwrap();
    let due: Vec<_> = meta
        .due_deliveries(1_000, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|d| d.webhook.id == ns.id)
        .collect();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].event.digest.as_deref(), Some(digest("h2").as_str()));
    assert_eq!(meta.webhook(ns.id).await.unwrap().unwrap().failures, 0);

    // The delivery log, newest first.
    let log = meta.deliveries(ns.id, None, 10).await.unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(log[1].state, "delivered");
    assert_eq!(
        (log[1].attempts, log[1].status_code, log[1].latency_ms),
        (2, Some(204), Some(3))
    );
    assert_eq!(log[0].state, "pending");
    assert_eq!(log[0].event, "manifest.pushed");

    // A run of failures disables the webhook, with an audit event.
    let h2 = due[0].id;
    assert!(!meta
        .record_attempt(&attempt(h2, ns.id, 1_100, Outcome::Retry(1_200)), 2)
        .await
        .unwrap());
    assert!(meta
        .record_attempt(&attempt(h2, ns.id, 1_200, Outcome::GiveUp), 2)
        .await
        .unwrap());
    let w = meta.webhook(ns.id).await.unwrap().unwrap();
    assert_eq!(w.disabled_at, Some(1_200));
    assert!(w
        .disabled_reason
        .unwrap()
        .contains("2 deliveries failed in a row"));
    let audit = meta
        .audit_events(&AuditFilter {
            action: Some(action::WEBHOOK_DISABLE.into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].event.detail.as_ref().unwrap()["webhook"], ns.id);
    // Disabled: nothing of it is due, nothing new fans out to it.
    let mut m3 = manifest("hooks/app", &digest("h3"), None, None, &[]);
    m3.pushed_at = 1_300;
    meta.put_manifest(&m3, &at(1_300)).await.unwrap();
    meta.dispatch_events(1_300, 100).await.unwrap();
    assert_eq!(meta.deliveries(ns.id, None, 10).await.unwrap().len(), 2);
    // Redelivery queues the event again; enabling resets the run.
    let again = meta.redeliver(ns.id, h2, 1_400).await.unwrap().unwrap();
    assert_eq!((again.state.as_str(), again.attempts), ("pending", 0));
    assert!(meta.redeliver(site.id, h2, 1_400).await.unwrap().is_none());
    let w = meta
        .set_webhook_enabled(ns.id, true, &at(1_500))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((w.disabled_at, w.failures), (None, 0));
    let due: Vec<_> = meta
        .due_deliveries(1_500, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|d| d.webhook.id == ns.id)
        .collect();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].id, again.id);

    // A ping has a chain of its own: due at once, behind nothing.
    let ping = meta
        .ping_webhook(site.id, &at(1_600))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ping.event, "ping");
    assert!(meta
        .due_deliveries(1_600, 100)
        .await
        .unwrap()
        .iter()
        .any(|d| d.id == ping.id && d.event.kind == EventKind::Ping));

    // A finished GC run publishes its event with the run's record.
    let run = meta.start_run("gc", 1_700).await.unwrap();
    meta.finish_run(run, 1_800, true, &serde_json::json!({"deleted": 0}))
        .await
        .unwrap();
    let gc = meta.events_after(mark, 100).await.unwrap();
    let gc = gc.iter().find(|e| e.kind == EventKind::GcFinished).unwrap();
    assert_eq!(gc.data["run"], run);
    assert_eq!(gc.data["ok"], true);
    assert_eq!(gc.data["started_at"], 1_700);

    // Events published alone (quota alerts).
    let mut quota = NewEvent::new(EventKind::QuotaWarning, "system", 1_900);
    quota.namespace = Some(super::ns("hooks"));
    meta.publish_event(quota).await.unwrap();

    // Pruning drops finished history, keeps what is pending.
    let pending_before = meta.webhook_backlog().await.unwrap().pending;
    assert!(meta.prune_webhook_history(i64::MAX).await.unwrap() > 0);
    let left = meta.deliveries(ns.id, None, 10).await.unwrap();
    assert!(left.iter().all(|d| d.state == "pending"), "{left:?}");
    assert_eq!(
        meta.webhook_backlog().await.unwrap().pending,
        pending_before
    );

    // Removing a webhook removes its deliveries.
    assert!(meta
        .remove_webhook(ns.id, &at(2_000))
        .await
        .unwrap()
        .is_some());
    assert!(meta.webhook(ns.id).await.unwrap().is_none());
    assert!(meta
        .remove_webhook(ns.id, &at(2_000))
        .await
        .unwrap()
        .is_none());
    assert!(meta
        .remove_webhook(site.id, &at(2_000))
        .await
        .unwrap()
        .is_some());
    let backlog = meta.webhook_backlog().await.unwrap();
    assert_eq!(
        backlog.pending, 2,
        "the GC and quota events, not fanned out yet"
    );
    while meta.dispatch_events(3_000, 1000).await.unwrap() > 0 {}
}
