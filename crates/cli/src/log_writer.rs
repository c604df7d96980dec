//! The log's writer: lines are appended to a shared buffer where they are
//! formatted, and a thread of its own writes the buffer out in batches.
//!
//! With the access log on there is a line per request. Handing each line to
//! a writer thread through a channel (tracing-appender's non-blocking
//! writer) wakes that thread once per line: a futex wake, and a context
//! switch on a busy machine, for every request. Here a line costs a copy
//! under an uncontended lock; the writer thread wakes every
//! [`FLUSH_EVERY`], or at once when the buffer passes [`HIGH_WATER`], and
//! writes everything queued with one `write`. Only access-log lines
//! ([`ACCESS_TARGET`]) wait for the timer: any other line (start-up, a
//! warning, an error) wakes the writer at once, so it is on stderr as soon
//! as it happened; order is kept, since all lines share one buffer. Nothing is dropped: a logger
//! that finds [`LIMIT`] bytes queued waits until the writer catches up.
//! Dropping the [`Guard`] writes what is queued and stops the thread.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use berth_server::observe::ACCESS_TARGET;

/// How long a line may wait before it is written.
const FLUSH_EVERY: Duration = Duration::from_millis(20);
/// Queued bytes that wake the writer before its time.
const HIGH_WATER: usize = 256 * 1024;
/// Queued bytes at which loggers wait for the writer.
const LIMIT: usize = 8 * 1024 * 1024;

struct Queue {
    bytes: Vec<u8>,
    closed: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    /// Signalled when there is enough to write, or on close.
    wake_writer: Condvar,
    /// Signalled when the writer took the queue.
    drained: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The writer loggers format into (a `MakeWriter` for tracing-subscriber).
#[derive(Clone)]
pub struct BatchedWriter {
    shared: Arc<Shared>,
    /// Wake the writer thread after this write.
    urgent: bool,
}

/// Keeps the writer thread; dropping it writes what is queued.
pub struct Guard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// A writer to `out`, written by a thread named `name`.
pub fn batched(
    out: impl Write + Send + 'static,
    name: &str,
) -> std::io::Result<(BatchedWriter, Guard)> {
    let shared = Arc::new(Shared {
        queue: Mutex::new(Queue {
            bytes: Vec::with_capacity(64 * 1024),
            closed: false,
        }),
        wake_writer: Condvar::new(),
        drained: Condvar::new(),
    });
    let s = shared.clone();
    let thread = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || write_loop(&s, out))?;
    Ok((
        BatchedWriter {
            shared: shared.clone(),
            urgent: true,
        },
        Guard {
            shared,
            thread: Some(thread),
        },
    ))
}

fn write_loop(shared: &Shared, mut out: impl Write) {
    let mut spare = Vec::with_capacity(64 * 1024);
    loop {
        let closed = {
            let mut q = shared.lock();
            if q.bytes.len() < HIGH_WATER && !q.closed {
                q = shared
                    .wake_writer
                    .wait_timeout(q, FLUSH_EVERY)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            std::mem::swap(&mut q.bytes, &mut spare);
            q.closed
        };
        shared.drained.notify_all();
        if !spare.is_empty() {
            // A log that cannot be written has nowhere to report it.
            let _ = out.write_all(&spare).and_then(|()| out.flush());
            spare.clear();
            if spare.capacity() > LIMIT {
                spare.shrink_to(64 * 1024);
            }
        }
        if closed {
            return;
        }
    }
}

impl BatchedWriter {
    /// Queues `buf` (whole lines); `urgent` wakes the writer at once
    /// rather than at its next [`FLUSH_EVERY`].
    pub fn append(&self, buf: &[u8], urgent: bool) {
        let mut q = self.shared.lock();
        while q.bytes.len() >= LIMIT && !q.closed {
            self.shared.wake_writer.notify_one();
            q = self
                .shared
                .drained
                .wait(q)
                .unwrap_or_else(|p| p.into_inner());
        }
        q.bytes.extend_from_slice(buf);
        if urgent || q.bytes.len() >= HIGH_WATER {
            self.shared.wake_writer.notify_one();
        }
    }
}

impl Write for BatchedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.append(buf, self.urgent);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BatchedWriter {
    type Writer = BatchedWriter;

    fn make_writer(&'a self) -> BatchedWriter {
        self.clone()
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> BatchedWriter {
        BatchedWriter {
            shared: self.shared.clone(),
            urgent: meta.target() != ACCESS_TARGET,
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake_writer.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink the test can read while the writer thread owns it.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_arrives_in_order_from_many_threads() {
        let sink = Sink::default();
        let (w, guard) = batched(sink.clone(), "test-log").unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let mut w = w.clone();
                std::thread::spawn(move || {
                    for i in 0..20_000 {
                        w.write_all(format!("{t} {i:05}\n").as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(guard);
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 80_000);
        for t in 0..4 {
            let mine: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with(&format!("{t} ")))
                .collect();
            assert_eq!(mine.len(), 20_000);
            assert!(
                mine.windows(2).all(|w| w[0] < w[1]),
                "thread {t}'s lines out of order"
            );
        }
    }

    #[test]
    fn a_line_is_written_without_waiting_for_more() {
        let sink = Sink::default();
        let (mut w, _guard) = batched(sink.clone(), "test-log").unwrap();
        w.write_all(b"one line\n").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while sink.0.lock().unwrap().is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "the line was never written"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(&*sink.0.lock().unwrap(), b"one line\n");
    }

    #[test]
    fn a_full_queue_makes_loggers_wait_instead_of_dropping() {
        /// A sink slower than the loggers.
        #[derive(Clone, Default)]
        struct Slow(Arc<Mutex<usize>>);
        impl Write for Slow {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                std::thread::sleep(Duration::from_millis(2));
                *self.0.lock().unwrap() += buf.len();
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = Slow::default();
        let (mut w, guard) = batched(sink.clone(), "test-log").unwrap();
        let line = vec![b'x'; 1024];
        for _ in 0..(3 * LIMIT / 1024) {
            w.write_all(&line).unwrap();
            assert!(w.shared.lock().bytes.len() <= LIMIT + 1024);
        }
        drop(guard);
        assert_eq!(*sink.0.lock().unwrap(), 3 * LIMIT);
    }
}
