//! Change notifications on PostgreSQL: sent by the database from inside
//! the transaction of each change, delivered to every listening handle on
//! commit only, naming what changed.

use std::sync::Arc;
use std::time::Duration;

use berth_meta::changes::{Change, Subscriber};
use berth_meta::scans::StoredScan;
use berth_meta::{Error, Meta};
use berth_testkit::Postgres;
use tokio::sync::mpsc;

use super::{actor, d, manifest, n, ns, t};

struct Recorder(mpsc::UnboundedSender<Change>);

impl Subscriber for Recorder {
    fn changed(&self, change: &Change) {
        let _ = self.0.send(change.clone());
    }
    fn reset(&self) {}
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Change>) -> Change {
    tokio::time::timeout(Duration::from_secs(15), rx.recv())
        .await
        .expect("a notification within 15 s")
        .unwrap()
}

#[tokio::test]
async fn changes_are_heard_on_commit_only() {
    let pg = Postgres::start();
    let url = pg.create_database("changes");
    let writer = Meta::connect(&url).await.unwrap();
    let listener = Meta::connect(&url).await.unwrap();
    assert!(!listener.listening(), "not before start_listening");
    listener.start_listening();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let recorder = Arc::new(Recorder(tx));
    listener.subscribe(Arc::downgrade(&recorder) as std::sync::Weak<dyn Subscriber>);
    until_listening(&listener).await;

    writer
        .link_blob(&n("a/b"), &d("sha256:layer"), 10, 1)
        .await
        .unwrap();
    writer
        .link_blob(&n("a/b"), &d("sha256:config"), 2, 1)
        .await
        .unwrap();
    writer
        .put_manifest(
            &manifest("a/b", &d("sha256:m1"), None, None, &["v1"]),
            &actor(),
        )
        .await
        .unwrap();
    assert_eq!(next(&mut rx).await, Change::Tag(n("a/b"), t("v1")));
    // A scan result stored (migration 18).
    assert!(writer
        .put_scan(StoredScan {
            repository: n("a/b"),
            digest: d("sha256:m1"),
            platform: None,
            scanned_at: 1,
            vulndb_at: None,
            packages: 0,
            counts: [0; 5],
            report: "{}".into(),
            error: None,
        })
        .await
        .unwrap());
    assert_eq!(next(&mut rx).await, Change::Scan(n("a/b"), d("sha256:m1")));

    // A change rolled back sends nothing: the next notification heard is
    // the one committed after it.
    let rolled_back = writer
        .transact(move |c| {
            Box::pin(async move {
                sqlx::query("DELETE FROM tags WHERE name = 'v1'")
                    .execute(&mut *c)
                    .await?;
                Err::<(), _>(Error::Refused("changed my mind".into()))
            })
        })
        .await;
    assert!(matches!(rolled_back, Err(Error::Refused(_))));
    writer.set_quota(&ns("a"), 1000, &actor()).await.unwrap();
    assert_eq!(next(&mut rx).await, Change::Table("quotas".into()));

    // A tag deleted, a manifest deleted (its tags with it), a blob
    // unlinked, a repository's accounts facts: each named.
    assert!(writer
        .delete_manifest(&n("a/b"), &d("sha256:m1"), &actor())
        .await
        .unwrap()
        .is_some());
    let mut heard = vec![
        next(&mut rx).await,
        next(&mut rx).await,
        next(&mut rx).await,
    ];
    heard.sort_by_key(|c| format!("{c:?}"));
    assert_eq!(
        heard,
        vec![
            Change::Manifest(n("a/b"), d("sha256:m1")),
            Change::Scan(n("a/b"), d("sha256:m1")),
            Change::Tag(n("a/b"), t("v1")),
        ]
    );
    assert!(writer
        .unlink_blob(&n("a/b"), &d("sha256:layer"), &actor())
        .await
        .unwrap());
    assert_eq!(
        next(&mut rx).await,
        Change::Link(n("a/b"), d("sha256:layer"))
    );
    let epoch = listener.accounts_epoch();
    writer
        .set_repository_visibility(
            &n("a/b"),
            Some(berth_meta::accounts::Visibility::Public),
            &actor(),
        )
        .await
        .unwrap();
    assert_eq!(next(&mut rx).await, Change::Accounts);
    assert!(
        listener.accounts_epoch() > epoch,
        "permission caches of the listening handle learn of it"
    );
    listener.close().await;
    writer.close().await;
}

/// Records each change after a pause, like a replica whose listener lags.
/// Half the fence's limit: the write's answer has a second to come back
/// before the change is recorded (on a loaded machine 300 ms was not
/// always enough), and the fence a second to return before its limit.
struct Slow(Arc<std::sync::Mutex<Vec<Change>>>);

impl Subscriber for Slow {
    fn changed(&self, change: &Change) {
        std::thread::sleep(berth_meta::changes::FENCE_WAIT / 2);
        self.0.lock().unwrap().push(change.clone());
    }
    fn reset(&self) {}
}

async fn until_listening(meta: &Meta) {
    let started = std::time::Instant::now();
    while !meta.listening() {
        assert!(started.elapsed() < Duration::from_secs(15), "listening");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fence_returns_once_every_listener_has_handed_the_change_on() {
    let pg = Postgres::start();
    let url = pg.create_database("fences");
    let writer = Meta::connect(&url).await.unwrap();
    let lagging = Meta::connect(&url).await.unwrap();
    writer.start_listening();
    lagging.start_listening();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let slow = Arc::new(Slow(seen.clone()));
    lagging.subscribe(Arc::downgrade(&slow) as std::sync::Weak<dyn Subscriber>);
    until_listening(&writer).await;
    until_listening(&lagging).await;

    writer
        .link_blob(&n("a/b"), &d("sha256:layer"), 10, 1)
        .await
        .unwrap();
    writer
        .link_blob(&n("a/b"), &d("sha256:config"), 2, 1)
        .await
        .unwrap();
    writer
        .put_manifest(
            &manifest("a/b", &d("sha256:m1"), None, None, &["v1"]),
            &actor(),
        )
        .await
        .unwrap();
    assert!(
        seen.lock().unwrap().is_empty(),
        "the lagging listener has not handed the change on yet"
    );
    let started = std::time::Instant::now();
    writer.fence().await;
    assert_eq!(
        *seen.lock().unwrap(),
        vec![Change::Tag(n("a/b"), t("v1"))],
        "heard everywhere once the fence returns"
    );
    assert!(
        started.elapsed() < berth_meta::changes::FENCE_WAIT,
        "answered, not timed out: {:?}",
        started.elapsed()
    );

    // A listener that is gone does not hold a fence up to its limit.
    lagging.close().await;
    let started = std::time::Instant::now();
    writer.fence().await;
    assert!(
        started.elapsed() < berth_meta::changes::FENCE_WAIT,
        "{:?}",
        started.elapsed()
    );
    writer.close().await;
}
