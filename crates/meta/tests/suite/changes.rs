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
    let started = std::time::Instant::now();
    while !listener.listening() {
        assert!(started.elapsed() < Duration::from_secs(15), "listening");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

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
