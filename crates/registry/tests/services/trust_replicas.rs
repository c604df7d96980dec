//! Signature verdicts across replicas: two replicas on one PostgreSQL,
//! a namespace under `enforce`. A replica keeps the verdict of what it
//! pulled in memory, so a verified pull costs it no query; a trust change
//! made through the other replica is heard and makes it recompute; a lost
//! listener clears what it held.

use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use berth_meta::changes::{Change, Subscriber};
use berth_meta::Meta;
use berth_oci::{Digest, Reference, Tag};
use berth_registry::trust::{Material, Mode};
use berth_registry::{Caller, Error, Registry, Settings};
use berth_store::FsStore;
use berth_testkit::Postgres;
use bytes::Bytes;
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use std::sync::Arc;
use tokio::sync::mpsc;

use super::{body, n, ns};

struct Replica {
    meta: Meta,
    registry: Registry,
    heard: mpsc::UnboundedReceiver<Change>,
    _recorder: Arc<Recorder>,
}

struct Recorder(mpsc::UnboundedSender<Change>);

impl Subscriber for Recorder {
    fn changed(&self, change: &Change) {
        let _ = self.0.send(change.clone());
    }
    fn reset(&self) {}
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

async fn replica(url: &str, blobs: &std::path::Path) -> Replica {
    let meta = Meta::connect(url).await.unwrap();
    meta.start_listening();
    let registry = Registry::new(
        Arc::new(FsStore::open(blobs).unwrap()),
        meta.clone(),
        Settings {
            shared_database: true,
            ..Default::default()
        },
    );
    let (tx, heard) = mpsc::unbounded_channel();
    let recorder = Arc::new(Recorder(tx));
    meta.subscribe(Arc::downgrade(&recorder) as std::sync::Weak<dyn Subscriber>);
    until("listening", || meta.listening()).await;
    Replica {
        meta,
        registry,
        heard,
        _recorder: recorder,
    }
}

impl Replica {
    fn forget(&mut self) {
        while self.heard.try_recv().is_ok() {}
    }

    async fn hears(&mut self, change: Change) {
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

    /// A pull of `acme/app:v1` as the manifest GET checks it.
    async fn pull(&self) -> Result<(), Error> {
        let app = n("acme/app");
        let r = Reference::Tag(Tag::parse("v1").unwrap());
        let m = self.registry.get_manifest(&app, &r).await.unwrap();
        self.registry.check_pull(&app, &r, &m).await
    }
}

/// Rewrites the stored verdict of `acme/app`'s manifests behind the
/// replicas' backs: unverified, its inputs unchanged.
fn sneak_unverified(pg: &Postgres) {
    pg.psql(
        "verdicts",
        "UPDATE signature_verdicts SET state = 'unverified', reason = 'bad_signature',
            detail = 'sneaked', key_name = NULL, algorithm = NULL, format = NULL,
            signature = NULL",
    );
}

/// The PEM `cosign.pub` of an Ed25519 key.
fn public_pem(key: &Ed25519KeyPair) -> String {
    let mut der = vec![
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    der.extend_from_slice(key.public_key().as_ref());
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        B64.encode(der)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_keep_verdicts_and_hear_trust_changes() {
    let pg = Postgres::start();
    let url = pg.create_database("verdicts");
    let dir = tempfile::tempdir().unwrap();
    let a = replica(&url, dir.path()).await;
    let mut b = replica(&url, dir.path()).await;
    let root = Caller::system("root");
    let app = n("acme/app");
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let key = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let pem = public_pem(&key);

    // Through A: an image, its cosign signature, the key, enforce.
    let push = |data: &'static [u8]| {
        let (reg, app) = (&a.registry, app.clone());
        async move {
            let d = Digest::sha256(data);
            reg.push_blob(&app, &d, None, body(data)).await.unwrap();
            d
        }
    };
    let config = push(b"{}").await;
    let image = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":2}},"layers":[]}}"#
    );
    let v1 = Reference::Tag(Tag::parse("v1").unwrap());
    let digest = a
        .registry
        .put_manifest(&app, &v1, None, Bytes::from(image), &[], &root)
        .await
        .unwrap()
        .digest;
    let payload: &'static [u8] = format!(
        r#"{{"critical":{{"identity":{{"docker-reference":"r/acme/app"}},"image":{{"docker-manifest-digest":"{digest}"}},"type":"cosign container image signature"}},"optional":null}}"#
    )
    .into_bytes()
    .leak();
    let layer = push(payload).await;
    let signature = B64.encode(key.sign(payload).as_ref());
    let sig = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":2}},"layers":[{{"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json","digest":"{layer}","size":{},"annotations":{{"dev.cosignproject.cosign/signature":"{signature}"}}}}]}}"#,
        payload.len()
    );
    let sig_tag = Tag::parse(format!("sha256-{}.sig", digest.hex())).unwrap();
    a.registry
        .put_manifest(
            &app,
            &Reference::Tag(sig_tag.clone()),
            None,
            Bytes::from(sig),
            &[],
            &root,
        )
        .await
        .unwrap();
    let acme = ns("acme");
    a.registry
        .add_trust_key(&acme, Some("release"), Material::CosignKey(&pem), &root)
        .await
        .unwrap();
    a.registry
        .set_signature_policy(&acme, Some(Mode::Enforce), &root)
        .await
        .unwrap();
    b.hears(Change::Table("trust_policies".into())).await;

    // B verifies and keeps the verdict: a verified pull is answered from
    // its memory, not from the stored row (rewritten here unheard).
    b.pull().await.unwrap();
    sneak_unverified(&pg);
    b.pull().await.expect("served from B's memory");

    // The key removed through A: B hears it and recomputes.
    b.forget();
    a.registry
        .remove_trust_key(&acme, "release", &root)
        .await
        .unwrap();
    b.hears(Change::Table("trust_keys".into())).await;
    assert!(matches!(b.pull().await, Err(Error::Denied(_))));
    b.forget();
    a.registry
        .add_trust_key(&acme, Some("release"), Material::CosignKey(&pem), &root)
        .await
        .unwrap();
    b.hears(Change::Table("trust_keys".into())).await;
    b.pull().await.expect("verified again");

    // Its listener's connection killed, B drops the verdicts it held: the
    // stored row is read again, not a copy that may have missed a change.
    sneak_unverified(&pg);
    b.pull().await.expect("still from memory");
    let (_, connects) = b.meta.listener_counts();
    pg.psql(
        "verdicts",
        &format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE application_name = '{}'",
            berth_meta::changes::LISTENER_NAME
        ),
    );
    until("B listening again", || {
        b.meta.listening() && b.meta.listener_counts().1 > connects
    })
    .await;
    let refused = b.pull().await;
    assert!(
        matches!(&refused, Err(Error::Denied(m)) if m.contains("sneaked")),
        "no stale answer: {refused:?}"
    );
}
