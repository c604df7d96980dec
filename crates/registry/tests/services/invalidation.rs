//! Caches across replicas: two replicas (`Registry` + `Authority` pairs,
//! each with its own database handle and change listener) on one
//! PostgreSQL. Each caches what it read; a change committed through the
//! other arrives as a notification and evicts it; a replica whose listener
//! lost its connection answers from the database, never from a copy that
//! may have missed a change; and a blob read costs one storage request.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use berth_meta::changes::{Change, Subscriber};
use berth_meta::Meta;
use berth_oci::{Digest, Reference, Tag};
use berth_registry::auth::{AuthSettings, Authority, Credentials, TokenRequest};
use berth_registry::{Caller, Error, Registry, Settings};
use berth_store::{BlobRead, BlobStore, ByteStream, FsStore, StoredBlob, UploadInfo};
use berth_testkit::Postgres;
use bytes::Bytes;
use tokio::sync::mpsc;

use super::{body, n};

/// A store counting the requests a read costs (`stat`, `read`).
struct Counting {
    inner: FsStore,
    stats: AtomicUsize,
    reads: AtomicUsize,
}

#[async_trait]
impl BlobStore for Counting {
    async fn stat(&self, digest: &Digest) -> berth_store::Result<Option<u64>> {
        self.stats.fetch_add(1, Ordering::SeqCst);
        self.inner.stat(digest).await
    }
    async fn read(
        &self,
        digest: &Digest,
        range: Option<(u64, u64)>,
    ) -> berth_store::Result<Option<BlobRead>> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.read(digest, range).await
    }
    async fn delete(&self, digest: &Digest) -> berth_store::Result<bool> {
        self.inner.delete(digest).await
    }
    async fn list(
        &self,
        after: Option<&Digest>,
        limit: usize,
    ) -> berth_store::Result<Vec<StoredBlob>> {
        self.inner.list(after, limit).await
    }
    async fn quarantine(&self, digest: &Digest) -> berth_store::Result<Option<StoredBlob>> {
        self.inner.quarantine(digest).await
    }
    async fn release(&self, digest: &Digest, delete: bool) -> berth_store::Result<()> {
        self.inner.release(digest, delete).await
    }
    async fn set_aside(&self, digest: &Digest) -> berth_store::Result<Option<String>> {
        self.inner.set_aside(digest).await
    }
    async fn put(
        &self,
        expected: &Digest,
        len: Option<u64>,
        body: ByteStream,
    ) -> berth_store::Result<u64> {
        self.inner.put(expected, len, body).await
    }
    async fn upload_create(&self, label: &str) -> berth_store::Result<UploadInfo> {
        self.inner.upload_create(label).await
    }
    async fn upload_info(&self, id: &str) -> berth_store::Result<Option<UploadInfo>> {
        self.inner.upload_info(id).await
    }
    async fn upload_append(
        &self,
        id: &str,
        start: Option<u64>,
        len: Option<u64>,
        body: ByteStream,
    ) -> berth_store::Result<u64> {
        self.inner.upload_append(id, start, len, body).await
    }
    async fn upload_commit(&self, id: &str, expected: &Digest) -> berth_store::Result<u64> {
        self.inner.upload_commit(id, expected).await
    }
    async fn upload_cancel(&self, id: &str) -> berth_store::Result<bool> {
        self.inner.upload_cancel(id).await
    }
    async fn upload_list(&self) -> berth_store::Result<Vec<UploadInfo>> {
        self.inner.upload_list().await
    }
    async fn sweep_orphaned_uploads(&self, older_than: Duration) -> berth_store::Result<usize> {
        self.inner.sweep_orphaned_uploads(older_than).await
    }
}

pub(crate) struct Replica {
    meta: Meta,
    pub(crate) registry: Registry,
    auth: Authority,
    store: Arc<Counting>,
    heard: mpsc::UnboundedReceiver<Change>,
    _recorder: Arc<Recorder>,
}

/// Records the changes a replica hears.
struct Recorder(mpsc::UnboundedSender<Change>);

impl Subscriber for Recorder {
    fn changed(&self, change: &Change) {
        let _ = self.0.send(change.clone());
    }
    fn reset(&self) {}
}

pub(crate) async fn replica(url: &str, blobs: &std::path::Path) -> Replica {
    let meta = Meta::connect(url).await.unwrap();
    meta.start_listening();
    let store = Arc::new(Counting {
        inner: FsStore::open(blobs).unwrap(),
        stats: AtomicUsize::new(0),
        reads: AtomicUsize::new(0),
    });
    let registry = Registry::new(
        store.clone(),
        meta.clone(),
        Settings {
            shared_database: true,
            ..Default::default()
        },
    );
    let auth = Authority::new(
        meta.clone(),
        AuthSettings {
            shared_database: true,
            cache_ttl: Duration::from_secs(3600),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let (tx, heard) = mpsc::unbounded_channel();
    let recorder = Arc::new(Recorder(tx));
    meta.subscribe(Arc::downgrade(&recorder) as std::sync::Weak<dyn Subscriber>);
    until("listening", || meta.listening()).await;
    Replica {
        meta,
        registry,
        auth,
        store,
        heard,
        _recorder: recorder,
    }
}

async fn until(what: &str, ok: impl Fn() -> bool) {
    let started = Instant::now();
    while !ok() {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "waited for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Replica {
    /// Forgets what this replica heard so far.
    pub(crate) fn forget(&mut self) {
        while self.heard.try_recv().is_ok() {}
    }

    /// Waits until this replica has heard `change`.
    pub(crate) async fn hears(&mut self, change: Change) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let got = tokio::time::timeout_at(deadline, self.heard.recv())
                .await
                .unwrap_or_else(|_| panic!("never heard {change:?}"))
                .unwrap();
            if got == change {
                return;
            }
        }
    }

    async fn tag_digest(&self, t: &str) -> Digest {
        self.registry
            .get_manifest(&n("acme/app"), &tag(t))
            .await
            .unwrap()
            .digest
            .clone()
    }
}

pub(crate) fn tag(t: &str) -> Reference {
    Reference::Tag(Tag::parse(t).unwrap())
}

fn manifest(config: &Digest, note: &str) -> Bytes {
    Bytes::from(format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":2}},"layers":[],"annotations":{{"n":"{note}"}}}}"#
    ))
}

/// Points tag `t` of `acme/app` at `digest` behind the replicas' backs:
/// with triggers off, as if its notification had been lost.
fn sneak_tag(pg: &Postgres, t: &str, digest: &Digest) {
    pg.psql(
        "caches",
        &format!(
            "SET session_replication_role = replica;
             UPDATE tags SET digest = '{digest}' WHERE name = '{t}'
               AND repository_id = (SELECT id FROM repositories WHERE name = 'acme/app')"
        ),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_cache_and_evict_what_another_changed() {
    let pg = Postgres::start();
    let url = pg.create_database("caches");
    let dir = tempfile::tempdir().unwrap();
    let a = replica(&url, dir.path()).await;
    let mut b = replica(&url, dir.path()).await;
    let root = Caller::system("root");
    let app = n("acme/app");

    let config = Digest::sha256(b"{}");
    a.registry
        .push_blob(&app, &config, None, body(b"{}"))
        .await
        .unwrap();
    let put = |note: &'static str, t: &'static str| {
        let reg = &a.registry;
        let (app, root, config) = (app.clone(), root.clone(), config.clone());
        async move {
            reg.put_manifest(&app, &tag(t), None, manifest(&config, note), &[], &root)
                .await
                .unwrap()
                .digest
        }
    };
    let one = put("1", "v1").await;
    let two = put("2", "other").await;
    // Notifications arrive in commit order: once B heard the second push,
    // the first one's can no longer evict what B is about to cache.
    b.hears(Change::Tag(app.clone(), Tag::parse("other").unwrap()))
        .await;

    // B caches the tag: a change it cannot hear is not seen.
    assert_eq!(b.tag_digest("v1").await, one);
    sneak_tag(&pg, "v1", &two);
    assert_eq!(b.tag_digest("v1").await, one, "served from B's cache");
    sneak_tag(&pg, "v1", &one);

    // A tag moved through A is heard by B, which drops its copy.
    b.forget();
    let three = put("3", "v1").await;
    b.hears(Change::Tag(app.clone(), Tag::parse("v1").unwrap()))
        .await;
    assert_eq!(b.tag_digest("v1").await, three);

    // A manifest deleted through A: B, which cached it by digest, forgets
    // it.
    let by_digest = Reference::Digest(two.clone());
    b.registry.get_manifest(&app, &by_digest).await.unwrap();
    b.forget();
    a.registry
        .delete_manifest(&app, &by_digest, &root)
        .await
        .unwrap();
    b.hears(Change::Manifest(app.clone(), two.clone())).await;
    assert!(matches!(
        b.registry.get_manifest(&app, &by_digest).await,
        Err(Error::ManifestUnknown(_))
    ));

    // A blob read on a cold replica costs one storage request, and none
    // for its size once its link is cached; a blob deleted through A is
    // unknown to B.
    let (stats, reads) = (&b.store.stats, &b.store.reads);
    let (s0, r0) = (stats.load(Ordering::SeqCst), reads.load(Ordering::SeqCst));
    b.registry.read_blob(&app, &config, None).await.unwrap();
    b.registry.read_blob(&app, &config, None).await.unwrap();
    assert_eq!(
        (
            stats.load(Ordering::SeqCst) - s0,
            reads.load(Ordering::SeqCst) - r0
        ),
        (0, 2),
        "one storage request per blob read, no stat"
    );
    b.registry.blob_size(&app, &config).await.unwrap();
    let caller = Caller::system("root");
    b.forget();
    a.registry
        .delete_blob(&app, &config, &caller)
        .await
        .unwrap();
    b.hears(Change::Link(app.clone(), config.clone())).await;
    assert!(matches!(
        b.registry.blob_size(&app, &config).await,
        Err(Error::BlobUnknown(_))
    ));

    // A token revoked through A is refused by B, which had cached it.
    a.auth
        .create_user("alice", Some("alice-password-long"), false, None, &root)
        .await
        .unwrap();
    let req = TokenRequest {
        name: "ci".into(),
        scopes: vec!["pull".into()],
        patterns: Vec::new(),
        expires_at: None,
    };
    let token = a
        .auth
        .create_token("alice", &req, &root)
        .await
        .unwrap()
        .unwrap();
    let creds = Credentials::Basic {
        username: "alice".into(),
        password: token.token.clone(),
    };
    for _ in 0..2 {
        assert!(b.auth.authenticate(&creds, None, true).await.is_ok());
    }
    b.forget();
    assert!(a.auth.revoke_token(&token.record.id, &root).await.unwrap());
    b.hears(Change::Accounts).await;
    assert!(matches!(
        b.auth.authenticate(&creds, None, true).await,
        Err(Error::Unauthorized(_))
    ));

    // Its listener's connection killed, B drops everything it holds: a
    // change it could not hear meanwhile is seen, not a stale copy.
    assert_eq!(b.tag_digest("v1").await, three);
    let (_, connects) = b.meta.listener_counts();
    pg.psql(
        "caches",
        &format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE application_name = '{}'",
            berth_meta::changes::LISTENER_NAME
        ),
    );
    sneak_tag(&pg, "v1", &one);
    until("B listening again", || {
        b.meta.listening() && b.meta.listener_counts().1 > connects
    })
    .await;
    assert_eq!(b.tag_digest("v1").await, one, "no stale answer");
    // Listening again, B caches again.
    sneak_tag(&pg, "v1", &three);
    assert_eq!(b.tag_digest("v1").await, one, "cached again");
}
