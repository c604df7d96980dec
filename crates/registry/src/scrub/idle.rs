//! The scrub's hashing, on a thread of its own at the lowest CPU priority.
//!
//! Hashing is the only part of a scrub that costs CPU time worth counting
//! (the reads are paced by `scrub_rate`). On the runtime's worker threads
//! it would compete with requests as an equal, and stall the requests
//! queued behind a chunk being hashed. On an [`IdleHasher`] thread, at
//! nice 19, the kernel gives it only the CPU time that nothing else wants:
//! on a saturated machine the scrub slows down rather than the pulls.

use berth_oci::{Algorithm, Digest};
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

/// The nice value of the hashing thread (the lowest priority).
pub(crate) const NICE: i32 = 19;

enum Work {
    Start(Algorithm),
    Chunk(Bytes),
    Finish(oneshot::Sender<Option<Digest>>),
}

/// A thread that hashes one blob at a time; it ends when this is dropped.
pub(crate) struct IdleHasher {
    work: mpsc::Sender<Work>,
}

impl IdleHasher {
    /// Starts the thread. `None` if the system would not start one (the
    /// caller hashes on its own thread then).
    pub(crate) fn spawn() -> Option<IdleHasher> {
        // A few chunks in flight: reading the next one overlaps hashing
        // this one, and memory stays bounded by the store's chunk size.
        let (work, mut queue) = mpsc::channel::<Work>(4);
        let started = std::thread::Builder::new()
            .name("berth-scrub".to_owned())
            .spawn(move || {
                lower_priority();
                let mut hasher = None;
                while let Some(w) = queue.blocking_recv() {
                    match w {
                        Work::Start(algorithm) => hasher = Some(algorithm.hasher()),
                        Work::Chunk(chunk) => {
                            if let Some(h) = hasher.as_mut() {
                                h.update(&chunk);
                            }
                        }
                        Work::Finish(answer) => {
                            let _ = answer.send(hasher.take().map(|h| h.finish()));
                        }
                    }
                }
            });
        match started {
            Ok(_) => Some(IdleHasher { work }),
            Err(e) => {
                tracing::warn!(error = %e, "scrub: no hashing thread; hashing on the runtime");
                None
            }
        }
    }

    /// Begins a blob hashed with `algorithm`.
    pub(crate) async fn start(&self, algorithm: Algorithm) -> bool {
        self.work.send(Work::Start(algorithm)).await.is_ok()
    }

    /// Feeds the blob's next bytes.
    pub(crate) async fn update(&self, chunk: Bytes) -> bool {
        self.work.send(Work::Chunk(chunk)).await.is_ok()
    }

    /// The digest of the bytes fed since [`IdleHasher::start`]; `None` if
    /// the thread is gone.
    pub(crate) async fn finish(&self) -> Option<Digest> {
        let (answer, digest) = oneshot::channel();
        self.work.send(Work::Finish(answer)).await.ok()?;
        digest.await.ok().flatten()
    }
}

/// Sets the calling thread's nice value to [`NICE`]. On Linux a nice value
/// is per thread; elsewhere the thread keeps the process's priority.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        let tid = rustix::thread::gettid();
        if let Err(e) = rustix::process::setpriority_process(Some(tid), NICE) {
            tracing::debug!(error = %e, "scrub: could not lower the hashing thread's priority");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_blob_after_blob_at_the_lowest_priority() {
        let h = IdleHasher::spawn().expect("a thread");
        for (algorithm, parts) in [
            (Algorithm::Sha256, vec!["hello ", "world"]),
            (Algorithm::Sha512, vec!["", "x"]),
            (Algorithm::Sha256, vec![]),
        ] {
            assert!(h.start(algorithm).await);
            let mut direct = algorithm.hasher();
            for p in &parts {
                direct.update(p.as_bytes());
                assert!(h.update(Bytes::from(p.as_bytes().to_vec())).await);
            }
            assert_eq!(h.finish().await, Some(direct.finish()), "{parts:?}");
        }
        #[cfg(target_os = "linux")]
        {
            // The thread is found by its name among the process's threads,
            // and its nice value is the 19th field of its stat line.
            let mut nice = None;
            for task in std::fs::read_dir("/proc/self/task")
                .expect("tasks")
                .flatten()
            {
                let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
                if comm.trim() == "berth-scrub" {
                    let stat = std::fs::read_to_string(task.path().join("stat")).expect("stat");
                    let after = stat.rsplit_once(") ").expect("comm end").1;
                    nice = after.split(' ').nth(16).map(str::to_owned);
                }
            }
            assert_eq!(nice.as_deref(), Some("19"));
        }
    }

    #[tokio::test]
    async fn a_digest_without_a_start_is_none() {
        let h = IdleHasher::spawn().expect("a thread");
        assert_eq!(h.finish().await, None);
    }
}
