//! Where argon2 runs: a bounded queue in front of a few slots, and the
//! memory the slots hash in.
//!
//! **The queue.** Each hash costs ~25 ms of a core and 19 MiB. At most
//! `slots` (the cores, 1 to 8) run at once; a few more attempts may wait
//! for a slot, and past that an attempt is refused at once with
//! [`Error::Busy`] (503 and `Retry-After`), so a flood of logins costs
//! neither unbounded memory nor unbounded latency. Capacity is kept for
//! names that exist: attempts on accounts that can log in with a password
//! ([`Class::Known`]) may use every slot and have a longer queue; the rest
//! (unknown names, decoy verifications) may use at most half the slots
//! (at least one) and a short queue; and a freed slot goes to a waiting
//! known attempt first. So a flood of made-up names leaves slots (and
//! cores) free for real users.
//!
//! **The memory.** The slots hash in buffers kept here for reuse, so a
//! burst of logins allocates nothing after its first hashes; once no hash
//! ran for [`RELEASE_AFTER`], the buffers are freed. Each buffer is
//! allocated larger than glibc's largest dynamic mmap threshold (32 MiB),
//! so the allocator serves it with its own mapping and returns it to the
//! system when freed (only the 19 MiB argon2 uses are ever touched). Left to
//! argon2's own allocation, every blocking thread's arena kept its last
//! 19 MiB: 150-190 MiB after a few hundred logins, never returned.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use argon2::Block;
use tokio::sync::oneshot;

use super::password;
use crate::{Error, Result};

/// Idle time after which the hashing buffers are freed.
pub const RELEASE_AFTER: Duration = Duration::from_secs(2);

/// Blocks allocated per buffer: above glibc's `DEFAULT_MMAP_THRESHOLD_MAX`
/// (32 MiB), so each buffer is a mapping of its own.
const BUFFER_BLOCKS: usize = 33 * 1024;

/// Who is waiting for a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// A password login on an account that has a password, or an
    /// administrator's hashing (creating a user, changing a password).
    Known,
    /// Anything else: unknown names, names that cannot log in with a
    /// password (their decoy verification).
    Unknown,
}

/// The bounded queue in front of the argon2 slots.
pub struct Gate {
    slots: usize,
    unknown_slots: usize,
    known_queue: usize,
    unknown_queue: usize,
    state: Mutex<GateState>,
}

#[derive(Default)]
struct GateState {
    running: usize,
    running_unknown: usize,
    known: VecDeque<oneshot::Sender<Pass>>,
    unknown: VecDeque<oneshot::Sender<Pass>>,
}

/// A slot, held while hashing; dropping it hands it to the next waiter.
pub struct Pass {
    gate: Arc<Gate>,
    class: Class,
    armed: bool,
}

impl Gate {
    /// A gate with `slots` slots and queues of `known_queue` and
    /// `unknown_queue` waiting attempts.
    pub fn new(slots: usize, known_queue: usize, unknown_queue: usize) -> Arc<Gate> {
        let slots = slots.max(1);
        Arc::new(Gate {
            slots,
            unknown_slots: (slots / 2).max(1),
            known_queue,
            unknown_queue,
            state: Mutex::new(GateState::default()),
        })
    }

    /// The process's gate: a slot per core (1 to 8), 8 waiting known
    /// attempts per slot, 2 unknown ones per slot.
    pub fn shared() -> Arc<Gate> {
        static GATE: OnceLock<Arc<Gate>> = OnceLock::new();
        GATE.get_or_init(|| {
            let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
            let slots = cores.clamp(1, 8);
            Gate::new(slots, 8 * slots, 2 * slots)
        })
        .clone()
    }

    /// Waits for a slot, or refuses at once when `class`'s queue is full.
    pub async fn enter(self: &Arc<Gate>, class: Class) -> Result<Pass> {
        let rx = {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let room = match class {
                Class::Known => s.running < self.slots,
                Class::Unknown => s.running < self.slots && s.running_unknown < self.unknown_slots,
            };
            if room {
                s.running += 1;
                if class == Class::Unknown {
                    s.running_unknown += 1;
                }
                return Ok(Pass {
                    gate: self.clone(),
                    class,
                    armed: true,
                });
            }
            // Waiters that gave up still hold a place until a slot skips
            // them; drop them now so they do not fill the queue.
            s.known.retain(|tx| !tx.is_closed());
            s.unknown.retain(|tx| !tx.is_closed());
            let (queue, cap) = match class {
                Class::Known => (&mut s.known, self.known_queue),
                Class::Unknown => (&mut s.unknown, self.unknown_queue),
            };
            if queue.len() >= cap {
                return Err(Error::Busy { retry_after: 1 });
            }
            let (tx, rx) = oneshot::channel();
            queue.push_back(tx);
            rx
        };
        rx.await
            .map_err(|_| Error::Internal("password hashing is shut down".into()))
    }

    /// Attempts running and waiting.
    pub fn load(&self) -> (usize, usize) {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        (s.running, s.known.len() + s.unknown.len())
    }

    /// Hands a finished slot to the next waiter (known first; unknown
    /// ones while they are under their share), or frees it.
    fn release(self: &Arc<Gate>, class: Class) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.running = s.running.saturating_sub(1);
        if class == Class::Unknown {
            s.running_unknown = s.running_unknown.saturating_sub(1);
        }
        while s.running < self.slots {
            let (tx, class) = if let Some(tx) = s.known.pop_front() {
                (tx, Class::Known)
            } else if s.running_unknown < self.unknown_slots {
                match s.unknown.pop_front() {
                    Some(tx) => (tx, Class::Unknown),
                    None => return,
                }
            } else {
                return;
            };
            s.running += 1;
            if class == Class::Unknown {
                s.running_unknown += 1;
            }
            let pass = Pass {
                gate: self.clone(),
                class,
                armed: true,
            };
            if let Err(mut unused) = tx.send(pass) {
                // That waiter left: undo, without re-entering the lock.
                unused.armed = false;
                s.running -= 1;
                if class == Class::Unknown {
                    s.running_unknown -= 1;
                }
            } else {
                return;
            }
        }
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        if self.armed {
            self.armed = false;
            self.gate.release(self.class);
        }
    }
}

/// Reusable argon2 memory, freed when idle.
struct Memory {
    free: Mutex<Vec<Vec<Block>>>,
    generation: AtomicU64,
}

fn memory() -> &'static Memory {
    static MEMORY: OnceLock<Memory> = OnceLock::new();
    MEMORY.get_or_init(|| Memory {
        free: Mutex::new(Vec::new()),
        generation: AtomicU64::new(0),
    })
}

impl Memory {
    fn take(&self, blocks: usize) -> Vec<Block> {
        self.generation.fetch_add(1, Ordering::SeqCst);
        let reused = self.free.lock().unwrap_or_else(|p| p.into_inner()).pop();
        reused.unwrap_or_else(|| Vec::with_capacity(blocks.max(BUFFER_BLOCKS)))
    }

    /// Keeps `buffer` for the next hash, and frees all kept buffers once
    /// none was taken for [`RELEASE_AFTER`].
    fn give(&'static self, buffer: Vec<Block>) {
        self.free
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(buffer);
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                tokio::time::sleep(RELEASE_AFTER).await;
                if self.generation.load(Ordering::SeqCst) == generation {
                    let freed =
                        std::mem::take(&mut *self.free.lock().unwrap_or_else(|p| p.into_inner()));
                    drop(freed);
                }
            });
        }
    }

    /// Buffers kept.
    fn kept(&self) -> usize {
        self.free.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// Runs `work` with an argon2 buffer of `blocks` on a blocking thread. The
/// caller holds a [`Pass`].
async fn with_memory<T: Send + 'static>(
    blocks: usize,
    work: impl FnOnce(&mut Vec<Block>) -> T + Send + 'static,
) -> Result<T> {
    let mem = memory();
    let mut buffer = mem.take(blocks);
    let (out, buffer) = tokio::task::spawn_blocking(move || {
        let out = work(&mut buffer);
        (out, buffer)
    })
    .await
    .map_err(|e| Error::Internal(format!("hashing task: {e}")))?;
    mem.give(buffer);
    Ok(out)
}

/// Verifies `password` against `stored` within a slot the caller holds.
pub async fn verify(_pass: &Pass, password: String, stored: String) -> Result<bool> {
    let blocks = password::blocks_needed(Some(&stored));
    with_memory(blocks, move |m| password::verify_in(&password, &stored, m)).await
}

/// Hashes `password` within a slot the caller holds.
pub async fn hash(_pass: &Pass, password: String) -> Result<String> {
    let blocks = password::blocks_needed(None);
    with_memory(blocks, move |m| password::hash_in(&password, m)).await?
}

/// Hashing buffers currently kept for reuse.
pub fn buffers_kept() -> usize {
    memory().kept()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_queue_is_bounded_and_known_names_go_first() {
        let gate = Gate::new(1, 2, 1);
        let running = gate.enter(Class::Unknown).await.unwrap();
        // One unknown may wait; the next is refused at once.
        let g = gate.clone();
        let unknown = tokio::spawn(async move { g.enter(Class::Unknown).await.map(|_| "unknown") });
        tokio::task::yield_now().await;
        while gate.load().1 < 1 {
            tokio::task::yield_now().await;
        }
        assert!(matches!(
            gate.enter(Class::Unknown).await,
            Err(Error::Busy { retry_after: 1 })
        ));
        // Known attempts have their own, longer queue, and go first.
        let g = gate.clone();
        let known = tokio::spawn(async move { g.enter(Class::Known).await.map(|_| "known") });
        while gate.load().1 < 2 {
            tokio::task::yield_now().await;
        }
        let order = Arc::new(Mutex::new(Vec::new()));
        let (o1, o2) = (order.clone(), order.clone());
        let a = tokio::spawn(async move {
            let r = known.await.unwrap().unwrap();
            o1.lock().unwrap().push(r);
        });
        let b = tokio::spawn(async move {
            let r = unknown.await.unwrap().unwrap();
            o2.lock().unwrap().push(r);
        });
        drop(running);
        a.await.unwrap();
        b.await.unwrap();
        assert_eq!(order.lock().unwrap()[0], "known");
        assert_eq!(gate.load(), (0, 0), "every slot came back");
    }

    #[tokio::test]
    async fn unknown_names_get_at_most_half_the_slots() {
        let gate = Gate::new(2, 1, 1);
        let _u = gate.enter(Class::Unknown).await.unwrap();
        let g = gate.clone();
        let waiting = tokio::spawn(async move { g.enter(Class::Unknown).await.map(|_| ()) });
        while gate.load().1 < 1 {
            tokio::task::yield_now().await;
        }
        assert_eq!(gate.load(), (1, 1), "the second unknown waits");
        let known = gate.enter(Class::Known).await.unwrap();
        assert_eq!(
            gate.load(),
            (2, 1),
            "a known name gets the free slot at once"
        );
        drop(known);
        assert_eq!(
            gate.load(),
            (1, 1),
            "the freed slot is not the unknown's share"
        );
        waiting.abort();
    }

    #[tokio::test]
    async fn a_waiter_that_leaves_does_not_keep_its_slot() {
        let gate = Gate::new(1, 4, 4);
        let running = gate.enter(Class::Known).await.unwrap();
        let g = gate.clone();
        let waiting = tokio::spawn(async move { g.enter(Class::Known).await.map(|_| ()) });
        while gate.load().1 < 1 {
            tokio::task::yield_now().await;
        }
        waiting.abort();
        let _ = waiting.await;
        drop(running);
        assert_eq!(gate.load(), (0, 0));
        let _again = gate.enter(Class::Unknown).await.unwrap();
        assert_eq!(gate.load(), (1, 0));
    }

    #[tokio::test]
    async fn buffers_are_reused_then_freed_when_idle() {
        let gate = Gate::new(1, 1, 1);
        let pass = gate.enter(Class::Known).await.unwrap();
        let h = hash(&pass, "a password".into()).await.unwrap();
        assert!(verify(&pass, "a password".into(), h.clone()).await.unwrap());
        assert!(!verify(&pass, "another".into(), h).await.unwrap());
        assert!(buffers_kept() >= 1);
        tokio::time::sleep(RELEASE_AFTER + Duration::from_millis(300)).await;
        assert_eq!(buffers_kept(), 0, "freed when idle");
    }
}
