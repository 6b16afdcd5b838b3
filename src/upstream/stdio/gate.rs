//! Admission of calls to one shared child, so that what the child says outside a response is
//! provably someone's (see `attribution.rs`).
//!
//! Calls are **shared** (their clients take no server-to-client requests and asked for no log
//! messages, and they call no exclusive tool: `exclusive.rs`) or **exclusive** (keyed by their
//! session, or by the call itself when stateless).
//! Shared calls run together, as many as come. An exclusive call runs only while no call of
//! another key is in flight on the child: its own session's calls may join it, nobody else's.
//!
//! * **Free for shared calls:** while no exclusive call holds or waits for the child, a shared
//!   call enters with one compare-and-swap and leaves with one atomic subtraction; no lock.
//! * **Fair:** once anyone waits, newcomers queue behind, first come first served; consecutive
//!   shared calls at the head enter together. So neither kind starves the other.
//! * **Bounded:** at most `--stdio-queue` calls wait per child (beyond: 503 with
//!   `Retry-After: 2`), and none past its deadline (504, as any call that takes too long).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use crate::error::Error;
use crate::util::lock;

/// Set in [`Gate::fast`] while an exclusive call holds the child or anyone waits.
const CLOSED: u64 = 1 << 63;
/// Shared calls in flight, in the low bits of [`Gate::fast`].
const READERS: u64 = CLOSED - 1;

/// Who wants the child: `None` for a shared call, else the exclusive key.
type Want = Option<u64>;

/// One child's admission.
pub struct Gate {
    /// [`CLOSED`] and the number of shared calls in flight.
    fast: AtomicU64,
    state: Mutex<State>,
    /// `--stdio-queue`: calls that may wait at once.
    max_waiting: usize,
}

#[derive(Default)]
struct State {
    /// The exclusive key holding the child, and how many of its calls are in flight.
    holder: Option<(u64, usize)>,
    /// Waiting calls in arrival order: a ticket number, what it wants, and what it sleeps on
    /// (only the head is woken: no herd of waiters for one place).
    queue: VecDeque<(u64, Want, Arc<Condvar>)>,
    next_ticket: u64,
}

/// A call's place on the child; dropping it lets the next ones in.
pub struct Ticket {
    gate: Arc<Gate>,
    want: Want,
}

impl Gate {
    /// A gate letting at most `max_waiting` calls wait.
    pub fn new(max_waiting: usize) -> Arc<Gate> {
        Arc::new(Gate {
            fast: AtomicU64::new(0),
            state: Mutex::new(State::default()),
            max_waiting,
        })
    }

    /// Waits until the call may go to the child (`exclusive`: the key that may share the child
    /// with itself), at most until `deadline`. [`Error::Unavailable`] (503) when
    /// `--stdio-queue` calls wait already, [`Error::Timeout`] at the deadline.
    pub fn enter(
        self: &Arc<Self>,
        exclusive: Option<u64>,
        deadline: Instant,
    ) -> Result<Ticket, Error> {
        if exclusive.is_none() {
            let mut s = self.fast.load(Ordering::Acquire);
            while s & CLOSED == 0 {
                match self
                    .fast
                    .compare_exchange_weak(s, s + 1, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => return Ok(self.ticket(None)),
                    Err(now) => s = now,
                }
            }
        }
        let mut st = lock(&self.state);
        if exclusive.is_some() {
            // Closed before the shared calls are counted, so none slips in after the count.
            self.fast.fetch_or(CLOSED, Ordering::AcqRel);
        }
        if st.queue.is_empty() && self.admissible(&st, exclusive) {
            self.admit(&mut st, exclusive);
            return Ok(self.ticket(exclusive));
        }
        if st.queue.len() >= self.max_waiting {
            self.reopen(&st);
            return Err(Error::Unavailable(format!(
                "{} calls already wait for this stdio child (--stdio-queue)",
                self.max_waiting
            )));
        }
        let ticket = st.next_ticket;
        st.next_ticket += 1;
        let wake = Arc::new(Condvar::new());
        st.queue.push_back((ticket, exclusive, wake.clone()));
        self.fast.fetch_or(CLOSED, Ordering::AcqRel);
        loop {
            if st.queue.front().is_some_and(|(t, _, _)| *t == ticket)
                && self.admissible(&st, exclusive)
            {
                st.queue.pop_front();
                self.admit(&mut st, exclusive);
                self.reopen(&st);
                // The next in line may be admissible too (shared calls enter together).
                wake_head(&st);
                return Ok(self.ticket(exclusive));
            }
            let now = Instant::now();
            if now >= deadline {
                st.queue.retain(|(t, _, _)| *t != ticket);
                self.reopen(&st);
                wake_head(&st);
                return Err(Error::Timeout);
            }
            st = match wake.wait_timeout(st, deadline - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }

    /// True while an exclusive call holds the child or anyone waits for it.
    pub fn closed(&self) -> bool {
        self.fast.load(Ordering::Acquire) & CLOSED != 0
    }

    /// Calls waiting now.
    #[cfg(test)]
    pub fn waiting(&self) -> usize {
        lock(&self.state).queue.len()
    }

    fn ticket(self: &Arc<Self>, want: Want) -> Ticket {
        Ticket {
            gate: self.clone(),
            want,
        }
    }

    /// Whether a call wanting `want` may enter now (the queue aside).
    fn admissible(&self, st: &State, want: Want) -> bool {
        let readers = self.fast.load(Ordering::Acquire) & READERS;
        match (want, st.holder) {
            (None, None) => true,
            (None, Some(_)) => false,
            (Some(_), None) => readers == 0,
            (Some(k), Some((h, _))) => k == h,
        }
    }

    fn admit(&self, st: &mut State, want: Want) {
        match want {
            None => {
                self.fast.fetch_add(1, Ordering::AcqRel);
            }
            Some(k) => {
                let n = st.holder.map_or(0, |(_, n)| n);
                st.holder = Some((k, n + 1));
                self.fast.fetch_or(CLOSED, Ordering::AcqRel);
            }
        }
    }

    /// Opens the lock-free path again once nobody holds exclusively or waits.
    fn reopen(&self, st: &State) {
        if st.holder.is_none() && st.queue.is_empty() {
            self.fast.fetch_and(!CLOSED, Ordering::AcqRel);
        }
    }

    fn leave(&self, want: Want) {
        match want {
            None => {
                let before = self.fast.fetch_sub(1, Ordering::AcqRel);
                if before & CLOSED != 0 && before & READERS == 1 {
                    // The last shared call out: an exclusive one may be waiting for that.
                    wake_head(&lock(&self.state));
                }
            }
            Some(_) => {
                let mut st = lock(&self.state);
                st.holder = match st.holder {
                    Some((k, n)) if n > 1 => Some((k, n - 1)),
                    _ => None,
                };
                self.reopen(&st);
                wake_head(&st);
            }
        }
    }
}

/// Wakes the first waiting call (the only one that may enter next).
fn wake_head(st: &State) {
    if let Some((_, _, wake)) = st.queue.front() {
        wake.notify_one();
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.gate.leave(self.want);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn soon(ms: u64) -> Instant {
        Instant::now() + Duration::from_millis(ms)
    }

    #[test]
    fn shared_calls_share_and_exclusive_ones_wait_for_them() {
        let g = Gate::new(8);
        let a = g.enter(None, soon(10)).unwrap();
        let b = g.enter(None, soon(10)).unwrap();
        assert!(matches!(g.enter(Some(1), soon(30)), Err(Error::Timeout)));
        drop((a, b));
        let x = g.enter(Some(1), soon(10)).unwrap();
        // Its own session joins; anyone else waits.
        let x2 = g.enter(Some(1), soon(10)).unwrap();
        assert!(matches!(g.enter(None, soon(30)), Err(Error::Timeout)));
        assert!(matches!(g.enter(Some(2), soon(30)), Err(Error::Timeout)));
        drop(x);
        assert!(matches!(g.enter(None, soon(30)), Err(Error::Timeout)));
        drop(x2);
        let _c = g.enter(None, soon(10)).unwrap();
        assert_eq!(g.fast.load(Ordering::Acquire), 1, "lock-free again");
    }

    #[test]
    fn waiting_is_fair_and_bounded() {
        let g = Gate::new(2);
        let x = g.enter(Some(1), soon(10)).unwrap();
        let g2 = g.clone();
        let shared = std::thread::spawn(move || g2.enter(None, soon(2000)).map(|_| Instant::now()));
        std::thread::sleep(Duration::from_millis(50));
        let g3 = g.clone();
        let other =
            std::thread::spawn(move || g3.enter(Some(2), soon(2000)).map(|t| (t, Instant::now())));
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(g.waiting(), 2);
        assert!(matches!(
            g.enter(None, soon(10)),
            Err(Error::Unavailable(_))
        ));
        drop(x);
        let shared_at = shared.join().unwrap().unwrap();
        let (t, other_at) = other.join().unwrap().unwrap();
        assert!(shared_at <= other_at, "first come, first served");
        drop(t);
        assert_eq!(g.waiting(), 0);
        assert_eq!(g.fast.load(Ordering::Acquire), 0);
    }
}
