//! Driving one server with N concurrent workers for a bounded time and
//! operation count, and collecting what happened.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Barrier;

use crate::scenario::Fixture;
use crate::server::Server;

/// Limits of one measured run.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Workers stop starting operations after this long.
    pub duration: Duration,
    /// And after this many operations in total.
    pub max_ops: u64,
}

/// What one or more measured runs of one server produced.
#[derive(Debug, Default, Clone)]
pub struct Sample {
    /// Completed operations.
    pub ops: u64,
    /// Failed operations.
    pub errors: u64,
    /// The first failure, for the report.
    pub first_error: Option<String>,
    /// Payload bytes moved.
    pub bytes: u64,
    /// Wall time from start until the last worker finished.
    pub elapsed: Duration,
    /// Latency of each completed operation, microseconds.
    pub latencies_us: Vec<u32>,
    /// Server CPU seconds (user + system) during the runs.
    pub cpu_s: f64,
    /// Largest server peak RSS seen, bytes.
    pub peak_rss: u64,
    /// Object-store requests during the runs (`--storage s3`).
    pub store_requests: Option<u64>,
}

impl Sample {
    /// Adds another run of the same server.
    pub fn merge(&mut self, other: Sample) {
        self.ops += other.ops;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.bytes += other.bytes;
        self.elapsed += other.elapsed;
        self.latencies_us.extend(other.latencies_us);
        self.cpu_s += other.cpu_s;
        self.peak_rss = self.peak_rss.max(other.peak_rss);
        self.store_requests = match (self.store_requests, other.store_requests) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
    }
}

struct Worker {
    ops: u64,
    errors: u64,
    first_error: Option<String>,
    bytes: u64,
    latencies_us: Vec<u32>,
}

/// Runs `fixture`'s operation against `server` from `concurrency`
/// connections within `limits`, measuring the server's CPU time and peak RSS.
pub async fn run(
    server: &Server,
    fixture: &Arc<Fixture>,
    concurrency: usize,
    limits: Limits,
) -> anyhow::Result<Sample> {
    let ready = Arc::new(Barrier::new(concurrency + 1));
    let go = Arc::new(Barrier::new(concurrency + 1));
    let claimed = Arc::new(AtomicU64::new(0));
    let start_at = Arc::new(std::sync::OnceLock::<Instant>::new());
    let mut tasks = Vec::with_capacity(concurrency);
    for w in 0..concurrency {
        let mut conn = server.conn();
        let (ready, go) = (ready.clone(), go.clone());
        let (claimed, fixture, start_at) = (claimed.clone(), fixture.clone(), start_at.clone());
        tasks.push(tokio::spawn(async move {
            let connected = conn.connect().await;
            ready.wait().await;
            go.wait().await;
            connected?;
            let start = *start_at
                .get()
                .ok_or_else(|| anyhow::anyhow!("run never started"))?;
            let deadline = start + limits.duration;
            let mut me = Worker {
                ops: 0,
                errors: 0,
                first_error: None,
                bytes: 0,
                latencies_us: Vec::with_capacity(1024),
            };
            let mut seq = w as u64 * 7;
            // Every worker does at least one operation: on a loaded
            // machine a worker may first run after a short (`--quick`)
            // window has closed, which would leave the cell empty.
            while (me.ops + me.errors == 0 || Instant::now() < deadline)
                && claimed.fetch_add(1, Ordering::Relaxed) < limits.max_ops
            {
                let t = Instant::now();
                match fixture.op(&mut conn, seq).await {
                    Ok(n) => {
                        me.latencies_us
                            .push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                        me.ops += 1;
                        me.bytes += n;
                    }
                    Err(e) => {
                        me.errors += 1;
                        me.first_error.get_or_insert_with(|| format!("{e:#}"));
                        // A failed exchange may leave the connection unusable.
                        conn = conn.fresh();
                    }
                }
                seq += 1;
            }
            anyhow::Ok(me)
        }));
    }
    // Connections are open before the clock starts.
    ready.wait().await;
    // Without clear_refs the peak is the process lifetime's (one scenario).
    server.reset_peak();
    let cpu0 = server.cpu_seconds()?;
    let start = Instant::now();
    let _ = start_at.set(start);
    go.wait().await;
    let mut sample = Sample::default();
    for t in tasks {
        let w = t.await??;
        sample.ops += w.ops;
        sample.errors += w.errors;
        if sample.first_error.is_none() {
            sample.first_error = w.first_error;
        }
        sample.bytes += w.bytes;
        sample.latencies_us.extend(w.latencies_us);
    }
    sample.elapsed = start.elapsed();
    sample.cpu_s = server.cpu_seconds()? - cpu0;
    sample.peak_rss = server.memory()?.1;
    Ok(sample)
}

/// The `q` quantile (0..=1) of sorted latencies, in milliseconds.
pub fn quantile_ms(sorted_us: &[u32], q: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let i = ((sorted_us.len() - 1) as f64 * q).round() as usize;
    f64::from(sorted_us[i]) / 1000.0
}
