//! A histogram that records without a lock.
//!
//! `prometheus-client`'s own histogram takes a write lock for every
//! observation: on the request path of a busy server, every worker thread
//! then queues on the same lock of its route's series. Here an observation
//! is three relaxed atomic additions (its bucket, the count, the sum in
//! nanounits), and the encoder reads the atomics. A scrape that runs while
//! requests are recorded may see a count one ahead of its buckets, which
//! Prometheus tolerates (it is the same for any lock-free exporter).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// The sum is kept in these units of the observed value (nanoseconds for
/// seconds), so that it can be an integer addition.
const UNITS: f64 = 1e9;

/// A histogram over fixed buckets; clones share their counts.
#[derive(Debug, Clone)]
pub struct AtomicHistogram {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Upper bounds, ascending; the last bucket (`+Inf`) is implicit.
    bounds: &'static [f64],
    /// One count per bound, and one for `+Inf`.
    counts: Box<[AtomicU64]>,
    count: AtomicU64,
    /// Sum of the observations, in [`UNITS`].
    sum: AtomicU64,
}

impl AtomicHistogram {
    /// A histogram over `bounds` (ascending upper bounds) and `+Inf`.
    pub fn new(bounds: &'static [f64]) -> AtomicHistogram {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]));
        AtomicHistogram {
            inner: Arc::new(Inner {
                bounds,
                counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
                count: AtomicU64::new(0),
                sum: AtomicU64::new(0),
            }),
        }
    }

    /// Records one observation (negative or NaN values count as 0).
    pub fn observe(&self, v: f64) {
        let v = if v.is_nan() { 0.0 } else { v.max(0.0) };
        let i = self.inner.bounds.partition_point(|&b| b < v);
        self.inner.counts[i].fetch_add(1, Ordering::Relaxed);
        self.inner.count.fetch_add(1, Ordering::Relaxed);
        // `as` saturates: an absurd observation cannot wrap the sum.
        self.inner
            .sum
            .fetch_add((v * UNITS) as u64, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.inner.count.load(Ordering::Relaxed)
    }

    /// Sum of the observations so far.
    pub fn sum(&self) -> f64 {
        self.inner.sum.load(Ordering::Relaxed) as f64 / UNITS
    }
}

impl TypedMetric for AtomicHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for AtomicHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let i = &self.inner;
        // Per-bucket counts, as prometheus-client's encoder wants them (it
        // makes them cumulative); the last bound stands for +Inf.
        let buckets: Vec<(f64, u64)> = i
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::MAX))
            .zip(i.counts.iter().map(|c| c.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|b| b.1).sum();
        encoder.encode_histogram::<NoLabelSet>(self.sum(), count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::AtomicHistogram;
    use prometheus_client::encoding::text::encode;
    use prometheus_client::registry::Registry;

    static BOUNDS: [f64; 3] = [0.001, 0.01, 0.1];

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let h = AtomicHistogram::new(&BOUNDS);
        for v in [0.0005, 0.001, 0.002, 0.05, 0.5, 7.0] {
            h.observe(v);
        }
        let mut reg = Registry::default();
        reg.register("t", "test", h.clone());
        let mut text = String::new();
        encode(&mut text, &reg).unwrap();
        for line in [
            "t_bucket{le=\"0.001\"} 2",
            "t_bucket{le=\"0.01\"} 3",
            "t_bucket{le=\"0.1\"} 4",
            "t_bucket{le=\"+Inf\"} 6",
            "t_count 6",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        assert!((h.sum() - 7.5535).abs() < 1e-9, "sum {}", h.sum());
        assert_eq!(h.count(), 6);
    }

    #[test]
    fn threads_lose_no_observation() {
        let h = AtomicHistogram::new(&BOUNDS);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..10_000 {
                        h.observe(0.005);
                    }
                });
            }
        });
        assert_eq!(h.count(), 40_000);
        assert!((h.sum() - 200.0).abs() < 1e-6);
    }
}
