//! The queue between a child's reader thread and one call's reader (the thread that streams the
//! call to its client): bounded in bytes, never blocking the sender.
//!
//! The child's reader thread serves every session on that child, so it must never wait for one
//! slow client. When a call's client does not keep up (its socket is full, so the stream thread
//! is stuck writing and stops taking items), the queue fills up to its byte bound
//! (`--max-call-buffer`, default 8 MiB) and further progress, logs and other related
//! messages of that call are **dropped** and counted ([`CallReceiver::take_dropped`]; the proxy
//! turns the count into `shadowcat_dropped_messages_total{reason="slow_client"}`). What was
//! already queued or written to the replay log stays resumable within the replay limits.
//!
//! The final response ([`Item::Final`]) is never dropped: there is one per call and it is
//! bounded by `--max-message`. A message arriving at an empty queue is always taken, however
//! large (it too is bounded by `--max-message`), so a message bigger than the bound is not
//! dropped merely for its size. The bytes held for one call are therefore at most
//! max(`--max-call-buffer`, `--max-message`) plus the final response.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, unbounded};

use crate::upstream::Item;

/// Server-to-client requests that no call could take and that may wait at once for the
/// supervisor (shared mode) or keeper (per-session mode) to refuse or route them. A child that
/// sends more while they wait (a flood, or a child that stopped reading the refusals) has the
/// excess dropped unanswered, so those control channels stay bounded without the child's
/// reader thread ever blocking on them.
pub const CONTROL_BACKLOG: usize = 1024;

/// What one queued item costs beyond its bytes (the `Vec` header, the channel slot and the
/// allocator's rounding), so that a flood of tiny messages is bounded too.
const ITEM_OVERHEAD: usize = 64;

struct State {
    /// Bytes queued now (each item counts its length plus [`ITEM_OVERHEAD`]).
    bytes: AtomicUsize,
    limit: usize,
    /// Messages dropped and not yet reported by [`CallReceiver::take_dropped`].
    dropped: AtomicU64,
}

/// The sending side, held by the child's routing (one per call in flight).
pub struct CallSender {
    tx: Sender<Item>,
    state: Arc<State>,
}

/// The receiving side, read by the call's stream.
pub struct CallReceiver {
    rx: Receiver<Item>,
    state: Arc<State>,
}

/// A queue for one call that holds at most `limit` bytes of non-final messages.
pub fn call_queue(limit: usize) -> (CallSender, CallReceiver) {
    // The channel itself is unbounded, but what goes in is bounded by `State::bytes`: items are
    // only added within the byte limit (or to an empty queue), plus one final response.
    let (tx, rx) = unbounded();
    let state = Arc::new(State {
        bytes: AtomicUsize::new(0),
        limit,
        dropped: AtomicU64::new(0),
    });
    (
        CallSender {
            tx,
            state: state.clone(),
        },
        CallReceiver { rx, state },
    )
}

fn cost(item: &Item) -> usize {
    match item {
        Item::Message(b) | Item::Final(b) => b.len() + ITEM_OVERHEAD,
    }
}

impl CallSender {
    /// Queues `item` without ever waiting. A non-final message that would take the queue past
    /// its byte bound is dropped (and counted) unless the queue is empty. Returns false when
    /// the item was not queued: dropped, or nobody reads the call any more.
    pub fn send(&self, item: Item) -> bool {
        let n = cost(&item);
        if matches!(item, Item::Message(_)) {
            let held = self.state.bytes.load(Ordering::Acquire);
            if held > 0 && held.saturating_add(n) > self.state.limit {
                self.state.dropped.fetch_add(1, Ordering::Relaxed);
                return false;
            }
        }
        self.state.bytes.fetch_add(n, Ordering::AcqRel);
        if let Err(e) = self.tx.send(item) {
            self.state.bytes.fetch_sub(cost(&e.0), Ordering::AcqRel);
            return false;
        }
        true
    }
}

impl CallReceiver {
    /// The next item, waiting at most until `deadline`.
    pub fn recv_deadline(&self, deadline: Instant) -> Result<Item, RecvTimeoutError> {
        let item = self.rx.recv_deadline(deadline)?;
        self.state.bytes.fetch_sub(cost(&item), Ordering::AcqRel);
        Ok(item)
    }

    /// Messages dropped since the last call (then reset to zero).
    pub fn take_dropped(&self) -> u64 {
        self.state.dropped.swap(0, Ordering::AcqRel)
    }

    /// Bytes queued now.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.state.bytes.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn msg(n: usize) -> Item {
        Item::Message(vec![b'x'; n])
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_millis(100)
    }

    #[test]
    fn messages_past_the_byte_bound_are_dropped_and_counted() {
        let (tx, rx) = call_queue(1000);
        // 100 + 64 bytes each: six fit (984), the seventh would not.
        for _ in 0..6 {
            assert!(tx.send(msg(100)));
        }
        assert_eq!(rx.bytes(), 6 * (100 + ITEM_OVERHEAD));
        assert!(!tx.send(msg(100)));
        assert!(!tx.send(msg(1)));
        assert_eq!(rx.take_dropped(), 2);
        assert_eq!(rx.take_dropped(), 0, "the count is reported once");
        // Reading makes room again, and the accounting returns to zero.
        assert!(matches!(rx.recv_deadline(soon()), Ok(Item::Message(_))));
        assert!(tx.send(msg(100)));
        for _ in 0..6 {
            assert!(rx.recv_deadline(soon()).is_ok());
        }
        assert_eq!(rx.bytes(), 0);
    }

    #[test]
    fn the_final_response_is_never_dropped() {
        let (tx, rx) = call_queue(200);
        assert!(tx.send(msg(100)));
        assert!(!tx.send(msg(100)));
        assert!(tx.send(Item::Final(vec![b'f'; 10_000])));
        assert!(matches!(rx.recv_deadline(soon()), Ok(Item::Message(_))));
        match rx.recv_deadline(soon()) {
            Ok(Item::Final(b)) => assert_eq!(b.len(), 10_000),
            _ => panic!("expected the final response"),
        }
        assert_eq!(rx.bytes(), 0);
        assert_eq!(rx.take_dropped(), 1);
    }

    #[test]
    fn an_empty_queue_takes_one_message_bigger_than_the_bound() {
        let (tx, rx) = call_queue(100);
        assert!(tx.send(msg(5000)), "one oversized message gets through");
        assert!(!tx.send(msg(1)), "but nothing queues behind it");
        assert!(rx.recv_deadline(soon()).is_ok());
        assert!(tx.send(msg(1)));
    }

    #[test]
    fn a_flood_without_a_reader_stays_bounded() {
        let (tx, rx) = call_queue(64 * 1024);
        let mut taken = 0u64;
        for _ in 0..100_000 {
            taken += u64::from(tx.send(msg(200)));
        }
        assert!(rx.bytes() <= 64 * 1024);
        assert_eq!(taken + rx.take_dropped(), 100_000);
        assert_eq!(taken as usize, 64 * 1024 / (200 + ITEM_OVERHEAD));
    }

    #[test]
    fn a_gone_reader_releases_the_bytes() {
        let (tx, rx) = call_queue(1000);
        drop(rx);
        assert!(!tx.send(msg(10)));
        assert!(!tx.send(Item::Final(vec![1])));
        assert_eq!(tx.state.bytes.load(Ordering::Acquire), 0);
    }
}
