//! The hand-off from request threads to a writer thread: a channel bounded in bytes, where a
//! sender that finds it full gives up at once (the caller counts a drop) instead of waiting.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, unbounded};

/// What one queued item is charged besides its payload (the item itself, the channel slot).
pub const OVERHEAD: usize = 128;

/// The sending side; cheap to clone.
pub struct Queue<T> {
    tx: Sender<(T, usize)>,
    used: Arc<AtomicUsize>,
    cap: usize,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue {
            tx: self.tx.clone(),
            used: self.used.clone(),
            cap: self.cap,
        }
    }
}

/// The receiving side, on the writer thread.
pub struct Drain<T> {
    rx: Receiver<(T, usize)>,
    used: Arc<AtomicUsize>,
}

/// A queue holding at most `cap` bytes (payloads plus [`OVERHEAD`] each).
pub fn bounded<T>(cap: usize) -> (Queue<T>, Drain<T>) {
    let (tx, rx) = unbounded();
    let used = Arc::new(AtomicUsize::new(0));
    (
        Queue {
            tx,
            used: used.clone(),
            cap,
        },
        Drain { rx, used },
    )
}

impl<T> Queue<T> {
    /// Queues `item` of `bytes` payload bytes if that fits in the budget; gives it back if not
    /// (or if the writer is gone). Never blocks: one atomic add (and one subtract when full),
    /// then a lock-free channel send.
    pub fn try_send(&self, item: T, bytes: usize) -> Result<(), T> {
        self.send_within(item, bytes, self.cap)
    }

    /// Like [`Queue::try_send`] with `slack` bytes beyond the budget: for the few small
    /// control items (a tape opens or closes) that must not be lost to a burst of messages.
    pub fn try_send_slack(&self, item: T, bytes: usize, slack: usize) -> Result<(), T> {
        self.send_within(item, bytes, self.cap.saturating_add(slack))
    }

    fn send_within(&self, item: T, bytes: usize, limit: usize) -> Result<(), T> {
        let charge = bytes.saturating_add(OVERHEAD);
        let before = self.used.fetch_add(charge, Ordering::Relaxed);
        if before.saturating_add(charge) > limit {
            self.used.fetch_sub(charge, Ordering::Relaxed);
            return Err(item);
        }
        match self.tx.send((item, charge)) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.used.fetch_sub(charge, Ordering::Relaxed);
                Err(e.into_inner().0)
            }
        }
    }

    /// Bytes queued now.
    #[cfg(test)]
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
}

impl<T> Drain<T> {
    /// The next item, waiting until `until` at most; `Err(Timeout)` then, `Err(Disconnected)`
    /// once every sender is gone and the queue is empty.
    pub fn recv_until(&self, until: Instant) -> Result<T, RecvTimeoutError> {
        let (item, charge) = self.rx.recv_deadline(until)?;
        self.used.fetch_sub(charge, Ordering::Relaxed);
        Ok(item)
    }

    /// The next item if one is queued.
    pub fn try_recv(&self) -> Option<T> {
        let (item, charge) = self.rx.try_recv().ok()?;
        self.used.fetch_sub(charge, Ordering::Relaxed);
        Some(item)
    }

    /// The first item of a writer's next batch. A writer that found work last time (`busy`)
    /// sleeps [`BATCH_WAIT`] and takes what came meanwhile as one batch, so senders never have
    /// to wake it (a futex call and a context switch per message); only an idle writer blocks
    /// on the queue, until `until`. `Ok(None)`: nothing came; `Err`: every sender is gone.
    pub fn next_batch(&self, busy: bool, until: Instant) -> Result<Option<T>, Disconnected> {
        if busy {
            std::thread::sleep(BATCH_WAIT);
            return Ok(self.try_recv());
        }
        match self.recv_until(until) {
            Ok(item) => Ok(Some(item)),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(Disconnected),
        }
    }
}

/// How long a busy writer lets items gather before taking them as one batch.
pub const BATCH_WAIT: Duration = Duration::from_millis(5);

/// Every sender of a queue is gone.
#[derive(Debug)]
pub struct Disconnected;

/// How long shutdown waits for a writer to write out what was queued.
pub const STOP_WAIT: Duration = Duration::from_secs(5);

/// Joins `thread` if it ends within `wait`; else leaves it (a writer stuck on a hung disk or
/// a FIFO nobody reads must not hold the proxy's shutdown) and says so. True if it ended.
pub fn join_within(thread: JoinHandle<()>, wait: Duration, what: &str) -> bool {
    let until = Instant::now() + wait;
    while !thread.is_finished() {
        if Instant::now() >= until {
            log::warn!(
                "{what}: the writer did not finish within {wait:?}; lines still queued are lost"
            );
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = thread.join();
    true
}

/// The request threads' side of one writer thread (tapes, the audit log): its queue, its
/// thread, and whether it was stopped.
pub struct WriterHandle<T> {
    pub queue: Queue<T>,
    pub thread: Mutex<Option<JoinHandle<()>>>,
    pub stopped: AtomicBool,
}

impl<T> WriterHandle<T> {
    /// Sends the marker `sync(done)` past the byte bound and waits (at most `timeout`) until
    /// the writer has written everything before it and answers. False if it did not in time.
    pub fn sync(&self, sync: impl FnOnce(Sender<()>) -> T, timeout: Duration) -> bool {
        let (tx, rx) = crossbeam_channel::bounded(1);
        if self
            .queue
            .try_send_slack(sync(tx), 0, usize::MAX / 2)
            .is_err()
        {
            return false;
        }
        rx.recv_timeout(timeout).is_ok()
    }

    /// Sends `stop` past the byte bound once and joins the writer within [`STOP_WAIT`]
    /// (`what` names it in the warning if it does not end). Idempotent.
    pub fn shutdown(&self, stop: T, what: &str) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        let _ = self.queue.try_send_slack(stop, 0, usize::MAX / 2);
        if let Some(t) = crate::util::lock(&self.thread).take() {
            join_within(t, STOP_WAIT, what);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r18_a_stuck_writer_is_left_after_the_wait() {
        let (tx, rx) = crossbeam_channel::bounded::<()>(1);
        let stuck = std::thread::spawn(move || {
            let _ = rx.recv_timeout(Duration::from_secs(30));
        });
        let t = Instant::now();
        assert!(!join_within(stuck, Duration::from_millis(50), "test"));
        assert!(t.elapsed() < Duration::from_secs(10));
        drop(tx); // lets it end
        let done = std::thread::spawn(|| {});
        assert!(join_within(done, Duration::from_secs(10), "test"));
    }
}
