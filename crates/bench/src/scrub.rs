//! `--peer unscrubbed`: what the integrity scrub costs the reads it must
//! never starve. Both servers hold the same ballast of blobs besides the
//! scenario's fixture; while berth is measured, its scrub reads them back
//! to back through `POST /api/v1/scrub` at the server's own `--scrub-rate`
//! (the default, as operators run it), and the peer (the same binary on
//! the same data) is measured with no scrub running.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use http::{header, Method, StatusCode};
use serde::Deserialize;

use crate::client::{collect, expect, Payload};
use crate::payload::Payloads;
use crate::server::Server;

/// The repository holding the ballast.
const BALLAST_REPO: &str = "bench/ballast";
/// Size of each ballast blob (one of [`crate::scenario::SIZES`], so its
/// digest comes from a prepared prefix state).
const BALLAST_BLOB: usize = crate::scenario::MIB;
/// Blobs the scrub checks per request: each request lasts a fraction of a
/// second at the default rate (the rate it reads at once the measurement
/// stops and berth is idle), so stopping after a measurement waits little
/// and the scrub never runs into the peer's measurement.
const BLOBS_PER_REQUEST: u64 = 16;

/// Blobs in the ballast: a pass over them at the default 50 MiB/s lasts
/// about five seconds (one second in a quick run), so passes do not
/// restart every few milliseconds on a small fixture.
pub fn ballast_blobs(quick: bool) -> u64 {
    if quick {
        48
    } else {
        256
    }
}

/// Pushes the ballast to the server behind `server` (the same blobs on
/// both servers).
pub async fn push_ballast(server: &Server, payloads: &Payloads, blobs: u64) -> anyhow::Result<()> {
    let mut conn = server.conn();
    for id in 0..blobs {
        let blob = payloads.blob(BALLAST_BLOB, 5_000_000 + id);
        crate::ops::push_monolithic(&mut conn, BALLAST_REPO, &blob)
            .await
            .with_context(|| format!("pushing ballast blob {id} to {}", server.kind.name()))?;
    }
    Ok(())
}

/// What the scrub did during the measured runs.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    /// Bytes read and hashed.
    pub bytes: u64,
    /// Blobs checked.
    pub blobs: u64,
    /// Passes completed (every blob read).
    pub passes: u64,
    /// Bytes read while the server was serving requests (the scrub reads
    /// at a tenth of its rate then).
    pub busy_bytes: u64,
}

impl Tally {
    pub fn merge(&mut self, other: Tally) {
        self.bytes += other.bytes;
        self.blobs += other.blobs;
        self.passes += other.passes;
        self.busy_bytes += other.busy_bytes;
    }
}

/// The fields of the scrub's report the bench reads.
#[derive(Deserialize)]
struct Report {
    checked: u64,
    bytes: u64,
    complete: bool,
    missing: u64,
    corrupt: u64,
    #[serde(default)]
    bytes_busy: u64,
}

/// The scrub running on one server until [`Scrubbing::stop`].
pub struct Scrubbing {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<anyhow::Result<Tally>>,
}

impl Scrubbing {
    /// Starts scrubbing `server` on a connection of its own.
    pub fn start(server: &Server) -> Scrubbing {
        let mut conn = server.conn();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let mut tally = Tally::default();
            let body = Bytes::from(format!(r#"{{"max_blobs":{BLOBS_PER_REQUEST}}}"#));
            while !stopped.load(Ordering::Acquire) {
                let ct = [(header::CONTENT_TYPE, "application/json")];
                let resp = conn
                    .send(
                        Method::POST,
                        "/api/v1/scrub",
                        &ct,
                        Payload::new(vec![body.clone()]),
                    )
                    .await?;
                let resp = expect(resp, StatusCode::OK, "POST /api/v1/scrub").await?;
                let report: Report = serde_json::from_slice(&collect(resp).await?)
                    .context("reading the scrub's report")?;
                anyhow::ensure!(
                    report.missing == 0 && report.corrupt == 0,
                    "the scrub found {} missing and {} corrupt blobs in the bench's own data",
                    report.missing,
                    report.corrupt
                );
                tally.bytes += report.bytes;
                tally.blobs += report.checked;
                tally.passes += u64::from(report.complete);
                tally.busy_bytes += report.bytes_busy;
            }
            Ok(tally)
        });
        Scrubbing { stop, task }
    }

    /// Stops after the request in flight and returns what the scrub did.
    pub async fn stop(self) -> anyhow::Result<Tally> {
        self.stop.store(true, Ordering::Release);
        self.task.await.context("the scrub task")?
    }
}
