//! The scenarios: what each one prepares on a server before it is measured,
//! and the one operation its workers repeat.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context};
use bytes::Bytes;

use crate::client::Conn;
use crate::ops;
use crate::payload::{Blob, Payloads};

const KIB: usize = 1024;
pub(crate) const MIB: usize = 1024 * 1024;

/// Blob sizes the payload generator prepares.
pub const SIZES: &[usize] = &[KIB, MIB, 64 * MIB];

/// One measured operation kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// `POST` + `PUT` of a new blob.
    PushMonolithic(usize),
    /// `POST` + `PATCH`... + `PUT` of a new blob.
    PushChunked(usize),
    /// `GET` of an existing blob.
    Pull(usize),
    /// `PUT` of a new manifest under a new tag.
    ManifestPut,
    /// `GET` of a manifest by tag.
    ManifestGet,
    /// `HEAD` of a manifest by tag.
    ManifestHead,
    /// `GET` of the tags of a large repository.
    TagsList,
    /// 80% manifest HEAD/GET and blob GET, 20% blob and manifest pushes.
    Mix,
}

fn size_name(size: usize) -> String {
    if size >= MIB {
        format!("{}m", size / MIB)
    } else {
        format!("{}k", size / KIB)
    }
}

impl Scenario {
    /// Every scenario, in report order.
    pub fn all() -> Vec<Scenario> {
        let mut v = Vec::new();
        for &s in SIZES {
            v.push(Scenario::PushMonolithic(s));
        }
        for &s in SIZES {
            v.push(Scenario::PushChunked(s));
        }
        for &s in SIZES {
            v.push(Scenario::Pull(s));
        }
        v.extend([
            Scenario::ManifestPut,
            Scenario::ManifestGet,
            Scenario::ManifestHead,
            Scenario::TagsList,
            Scenario::Mix,
        ]);
        v
    }

    /// The name used in reports and by `--scenarios`.
    pub fn name(self) -> String {
        match self {
            Scenario::PushMonolithic(s) => format!("push-mono-{}", size_name(s)),
            Scenario::PushChunked(s) => format!("push-chunked-{}", size_name(s)),
            Scenario::Pull(s) => format!("pull-{}", size_name(s)),
            Scenario::ManifestPut => "manifest-put".into(),
            Scenario::ManifestGet => "manifest-get".into(),
            Scenario::ManifestHead => "manifest-head".into(),
            Scenario::TagsList => "tags-list".into(),
            Scenario::Mix => "mix".into(),
        }
    }

    /// Whether one operation moves a large blob (runs are then bounded by
    /// an operation count as well as by time).
    pub fn is_large(self) -> bool {
        matches!(
            self,
            Scenario::PushMonolithic(s) | Scenario::PushChunked(s) | Scenario::Pull(s) if s >= 64 * MIB
        )
    }

    /// The issue's target for the ratio berth/distribution of throughput;
    /// on object storage (`s3`) the scale-out issue's targets: pushes 2x,
    /// pulls 1.5x, manifest GET 10x.
    pub fn target(self, s3: bool) -> f64 {
        match self {
            Scenario::PushMonolithic(_) | Scenario::PushChunked(_) if s3 => 2.0,
            Scenario::Pull(_) if s3 => 1.5,
            Scenario::PushMonolithic(s) | Scenario::PushChunked(s) => match s {
                s if s <= KIB => 5.0,
                s if s <= MIB => 3.0,
                _ => 1.2,
            },
            Scenario::Pull(s) => match s {
                s if s <= KIB => 10.0,
                s if s <= MIB => 2.5,
                _ => 1.0,
            },
            Scenario::ManifestPut => 3.0,
            Scenario::ManifestGet | Scenario::ManifestHead => 10.0,
            Scenario::TagsList => 5.0,
            Scenario::Mix => 4.0,
        }
    }
}

/// What a scenario prepared on one server, shared by its workers.
pub struct Fixture {
    scenario: Scenario,
    payloads: Arc<Payloads>,
    /// Next unique id for pushed blobs and manifests.
    next_id: AtomicU64,
    config: (String, u64),
    layer: (String, u64),
    pull_digest: String,
}

const REPO: &str = crate::ops::BENCH_REPOSITORIES[0];
const TAGS_REPO: &str = crate::ops::BENCH_REPOSITORIES[1];
/// Layer size in the mix (blob GETs and pushes).
const MIX_LAYER: usize = MIB;

/// Prepares `scenario` on the server behind `conn`. `tags` is the size of
/// the tags-list repository; `first_id` keeps ids unique across servers'
/// fixtures (same payloads, separate servers: uniqueness is per server, but
/// it costs nothing).
pub async fn prepare(
    scenario: Scenario,
    payloads: Arc<Payloads>,
    conn: &mut Conn,
    tags: usize,
) -> anyhow::Result<Arc<Fixture>> {
    let config = config_blob();
    let mut fixture = Fixture {
        scenario,
        payloads: payloads.clone(),
        next_id: AtomicU64::new(1_000_000),
        config: (config.digest.clone(), config.len),
        layer: (String::new(), 0),
        pull_digest: String::new(),
    };
    let needs_image = matches!(
        scenario,
        Scenario::ManifestPut
            | Scenario::ManifestGet
            | Scenario::ManifestHead
            | Scenario::TagsList
            | Scenario::Mix
    );
    if needs_image {
        let repo = if scenario == Scenario::TagsList {
            TAGS_REPO
        } else {
            REPO
        };
        let layer_size = if scenario == Scenario::Mix {
            MIX_LAYER
        } else {
            KIB
        };
        let layer = payloads.blob(layer_size, 1);
        ops::push_monolithic(conn, repo, &config)
            .await
            .context("pushing the config")?;
        ops::push_monolithic(conn, repo, &layer)
            .await
            .context("pushing a layer")?;
        fixture.layer = (layer.digest.clone(), layer.len);
        let m = fixture.manifest(0);
        ops::put_manifest(conn, repo, "latest", &m)
            .await
            .context("pushing a manifest")?;
    }
    if let Scenario::Pull(size) = scenario {
        let blob = payloads.blob(size, 2);
        ops::push_monolithic(conn, REPO, &blob)
            .await
            .context("pushing the blob to pull")?;
        fixture.pull_digest = blob.digest;
    }
    let fixture = Arc::new(fixture);
    if scenario == Scenario::TagsList {
        tag_many(&fixture, conn, tags).await?;
    }
    Ok(fixture)
}

/// The image config every fixture pushes.
fn config_blob() -> Blob {
    Blob::from_bytes(Bytes::from_static(
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#,
    ))
}

/// Whether a static file server can play the peer in `scenario` (reads of
/// one manifest by tag).
pub fn is_static(scenario: Scenario) -> bool {
    matches!(scenario, Scenario::ManifestGet | Scenario::ManifestHead)
}

/// The manifest a read scenario fetches (`GET /v2/bench/app/manifests/latest`,
/// the same bytes [`prepare`] pushes) with its digest, for a static file
/// server, and the fixture that reads it.
pub fn prepare_static(
    scenario: Scenario,
    payloads: Arc<Payloads>,
) -> anyhow::Result<(Arc<Fixture>, StaticFile)> {
    anyhow::ensure!(
        is_static(scenario),
        "{} is not a read a static file server can answer",
        scenario.name()
    );
    let config = config_blob();
    let layer = payloads.blob(KIB, 1);
    let fixture = Fixture {
        scenario,
        payloads: payloads.clone(),
        next_id: AtomicU64::new(1_000_000),
        config: (config.digest.clone(), config.len),
        layer: (layer.digest.clone(), layer.len),
        pull_digest: String::new(),
    };
    let body = fixture.manifest(0);
    let file = StaticFile {
        path: format!("/v2/{REPO}/manifests/latest"),
        digest: Blob::from_bytes(body.clone()).digest,
        body,
        media_type: crate::ops::OCI_MANIFEST,
    };
    Ok((Arc::new(fixture), file))
}

/// A file a static server serves for a read scenario.
pub struct StaticFile {
    /// URL path.
    pub path: String,
    /// Body.
    pub body: Bytes,
    /// `sha256:…` of the body (sent as `Docker-Content-Digest`).
    pub digest: String,
    /// `Content-Type`.
    pub media_type: &'static str,
}

/// Tags the fixture's manifest `count` times in [`TAGS_REPO`], from 16
/// connections.
async fn tag_many(fixture: &Arc<Fixture>, conn: &Conn, count: usize) -> anyhow::Result<()> {
    let m = fixture.manifest(0);
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (m, next, mut c) = (m.clone(), next.clone(), conn.fresh());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count as u64 {
                    return anyhow::Ok(());
                }
                ops::put_manifest(&mut c, TAGS_REPO, &format!("v{i:05}"), &m).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let mut c = conn.fresh();
    let body = ops::tags_list(&mut c, TAGS_REPO).await?;
    let listed: serde_json::Value = serde_json::from_slice(&body)?;
    let n = listed["tags"].as_array().map_or(0, Vec::len);
    if n < count {
        bail!("tags list returned {n} tags, expected at least {count}");
    }
    Ok(())
}

impl Fixture {
    fn manifest(&self, id: u64) -> Bytes {
        ops::manifest(
            (&self.config.0, self.config.1),
            (&self.layer.0, self.layer.1),
            id,
        )
    }

    fn id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Runs one operation; `seq` is the worker's operation counter (the mix
    /// uses it to pick the operation). Returns the payload bytes moved.
    pub async fn op(&self, conn: &mut Conn, seq: u64) -> anyhow::Result<u64> {
        match self.scenario {
            Scenario::PushMonolithic(size) => {
                let blob = self.payloads.blob(size, self.id());
                ops::push_monolithic(conn, REPO, &blob).await
            }
            Scenario::PushChunked(size) => {
                let blob = self.payloads.blob(size, self.id());
                // One chunk for small blobs, four of at most 8 MiB
                // otherwise (eight for 64 MiB, as the Docker daemon's
                // and containerd's large layers go).
                let chunk = if size <= KIB {
                    size
                } else {
                    (size / 4).min(8 * MIB)
                };
                ops::push_chunked(conn, REPO, &blob, chunk as u64).await
            }
            Scenario::Pull(_) => ops::get_blob(conn, REPO, &self.pull_digest).await,
            Scenario::ManifestPut => {
                let id = self.id();
                ops::put_manifest(conn, REPO, &format!("t{id}"), &self.manifest(id)).await
            }
            Scenario::ManifestGet => ops::get_manifest(conn, REPO, "latest", false).await,
            Scenario::ManifestHead => ops::get_manifest(conn, REPO, "latest", true).await,
            Scenario::TagsList => Ok(ops::tags_list(conn, TAGS_REPO).await?.len() as u64),
            Scenario::Mix => self.mix_op(conn, seq).await,
        }
    }

    async fn mix_op(&self, conn: &mut Conn, seq: u64) -> anyhow::Result<u64> {
        match seq % 10 {
            0..=2 => ops::get_manifest(conn, REPO, "latest", true).await,
            3 | 4 => ops::get_manifest(conn, REPO, "latest", false).await,
            5 => ops::get_blob(conn, REPO, &self.config.0).await,
            6 | 7 => ops::get_blob(conn, REPO, &self.layer.0).await,
            8 => {
                let blob = self.payloads.blob(MIX_LAYER, self.id());
                ops::push_monolithic(conn, REPO, &blob).await
            }
            _ => {
                let id = self.id();
                ops::put_manifest(conn, REPO, &format!("ci-{id}"), &self.manifest(id)).await
            }
        }
    }
}
