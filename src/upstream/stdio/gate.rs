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
//! * **Parked** (issue #13): an exclusive call whose child is blocked waiting for the proxy's
//!   answer to a server-to-client request, while the proxy waits for a 2026-07-28 client's
//!   retry (`crate::bridge`), is *parked* ([`Ticket::park`]). While every call of the holding
//!   key is parked, shared calls enter again (past any queue: nobody queued could enter before
//!   the holder leaves anyway); exclusive calls of other keys still wait, since the child may
//!   still speak for the parked call and a request it makes could then belong to either (the
//!   attribution rule refuses it, so the other call's client would never be asked). Whatever the
//!   child says while parked and shared calls are in flight is attributed by the usual rule:
//!   several sessions' calls, so a request is refused (-32603) and a log dropped, both counted.
//!   [`Ticket::unpark`] takes the child back before the parked call's answers go to it: no new
//!   shared call enters, and it returns once the shared calls in flight have left.

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
    /// What a parked call taking its child back ([`Ticket::unpark`]) sleeps on until the
    /// shared calls that entered meanwhile have left.
    drained: Condvar,
}

#[derive(Default)]
struct State {
    /// The exclusive key holding the child, and how many of its calls are in flight.
    holder: Option<Holder>,
    /// Waiting calls in arrival order: a ticket number, what it wants, and what it sleeps on
    /// (only the head is woken: no herd of waiters for one place).
    queue: VecDeque<(u64, Want, Arc<Condvar>)>,
    next_ticket: u64,
}

/// The exclusive key holding a child.
#[derive(Clone, Copy, Debug)]
struct Holder {
    key: u64,
    /// Its calls in flight.
    calls: usize,
    /// Of them, parked ([`Ticket::park`]).
    parked: usize,
}

impl Holder {
    /// Every call of the holder is parked: shared calls may run beside it.
    fn asleep(&self) -> bool {
        self.parked == self.calls
    }
}

/// A call's place on the child; dropping it lets the next ones in.
pub struct Ticket {
    gate: Arc<Gate>,
    want: Want,
    /// Parked: its child waits for the proxy, shared calls may run.
    parked: bool,
}

impl Gate {
    /// A gate letting at most `max_waiting` calls wait.
    pub fn new(max_waiting: usize) -> Arc<Gate> {
        Arc::new(Gate {
            fast: AtomicU64::new(0),
            state: Mutex::new(State::default()),
            max_waiting,
            drained: Condvar::new(),
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
        let passes = st.queue.is_empty() || (exclusive.is_none() && asleep(&st));
        if passes && self.admissible(&st, exclusive) {
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
            let first = st.queue.front().is_some_and(|(t, _, _)| *t == ticket);
            if (first || (exclusive.is_none() && asleep(&st))) && self.admissible(&st, exclusive) {
                st.queue.retain(|(t, _, _)| *t != ticket);
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
            parked: false,
        }
    }

    /// Whether a call wanting `want` may enter now (the queue aside). While the holder is
    /// parked shared calls run, so its own key's new calls wait for them like anyone's.
    fn admissible(&self, st: &State, want: Want) -> bool {
        let readers = self.fast.load(Ordering::Acquire) & READERS;
        match (want, st.holder) {
            (None, None) => true,
            (None, Some(h)) => h.asleep(),
            (Some(_), None) => readers == 0,
            (Some(k), Some(h)) => k == h.key && readers == 0,
        }
    }

    fn admit(&self, st: &mut State, want: Want) {
        match want {
            None => {
                self.fast.fetch_add(1, Ordering::AcqRel);
            }
            Some(k) => {
                let (calls, parked) = st.holder.map_or((0, 0), |h| (h.calls, h.parked));
                st.holder = Some(Holder {
                    key: k,
                    calls: calls + 1,
                    parked,
                });
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

    fn leave(&self, want: Want, parked: bool) {
        match want {
            None => {
                let before = self.fast.fetch_sub(1, Ordering::AcqRel);
                if before & CLOSED != 0 && before & READERS == 1 {
                    // The last shared call out: an exclusive one may be waiting for that, or a
                    // parked one taking its child back.
                    let st = lock(&self.state);
                    wake_head(&st);
                    self.drained.notify_all();
                }
            }
            Some(_) => {
                let mut st = lock(&self.state);
                st.holder = match st.holder {
                    Some(h) if h.calls > 1 => Some(Holder {
                        calls: h.calls - 1,
                        parked: h.parked - usize::from(parked && h.parked > 0),
                        ..h
                    }),
                    _ => None,
                };
                if asleep(&st) {
                    // Its last running call left, the others are parked: shared calls go.
                    wake_shared(&st);
                }
                self.reopen(&st);
                wake_head(&st);
            }
        }
    }
}

/// True while an exclusive key holds the child with every call of it parked.
fn asleep(st: &State) -> bool {
    st.holder.is_some_and(|h| h.asleep())
}

/// Wakes the first waiting call (the only one that may enter next).
fn wake_head(st: &State) {
    if let Some((_, _, wake)) = st.queue.front() {
        wake.notify_one();
    }
}

/// Wakes every waiting shared call (the holder fell asleep: they may pass the queue).
fn wake_shared(st: &State) {
    for (_, want, wake) in &st.queue {
        if want.is_none() {
            wake.notify_one();
        }
    }
}

impl Ticket {
    /// The call waits for the proxy, its child for the call's client's input: shared calls may
    /// use the child meanwhile (see the module docs). Nothing for a shared call's ticket.
    pub fn park(&mut self) {
        if self.want.is_none() || self.parked {
            return;
        }
        let mut st = lock(&self.gate.state);
        if let Some(h) = st.holder.as_mut() {
            h.parked += 1;
            self.parked = true;
        }
        if asleep(&st) {
            wake_shared(&st);
        }
    }

    /// Takes the child back for a parked call: no shared call enters from now on, and this
    /// returns once those in flight have left ([`Error::Timeout`] at `deadline`, the call
    /// still parked).
    pub fn unpark(&mut self, deadline: Instant) -> Result<(), Error> {
        if !self.parked {
            return Ok(());
        }
        let gate = &self.gate;
        let mut st = lock(&gate.state);
        if let Some(h) = st.holder.as_mut() {
            h.parked -= 1;
        }
        self.parked = false;
        loop {
            if gate.fast.load(Ordering::Acquire) & READERS == 0 {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                if let Some(h) = st.holder.as_mut() {
                    h.parked += 1;
                    self.parked = true;
                }
                if asleep(&st) {
                    wake_shared(&st);
                }
                return Err(Error::Timeout);
            }
            st = match gate.drained.wait_timeout(st, deadline - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.gate.leave(self.want, self.parked);
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

    #[test]
    fn a_parked_call_lets_shared_calls_in_and_takes_its_child_back() {
        let g = Gate::new(8);
        let mut p = g.enter(Some(1), soon(10)).unwrap();
        // Queued behind it: a shared call, then another session's exclusive call.
        let g2 = g.clone();
        let early = std::thread::spawn(move || g2.enter(None, soon(2000)).map(drop));
        let g3 = g.clone();
        let other = std::thread::spawn(move || g3.enter(Some(2), soon(300)).map(drop));
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(g.waiting(), 2);
        p.park();
        // The queued shared call passes the waiting exclusive one; new ones enter at once.
        early.join().unwrap().unwrap();
        let a = g.enter(None, soon(10)).unwrap();
        // Another session's exclusive call still waits: the child may speak for the parked one.
        assert!(matches!(other.join().unwrap(), Err(Error::Timeout)));
        // Taking the child back waits for the shared call in flight, and lets no new one in.
        assert!(matches!(p.unpark(soon(30)), Err(Error::Timeout)));
        assert!(p.parked, "still parked after a failed unpark");
        let g4 = g.clone();
        let back = std::thread::spawn(move || {
            let r = p.unpark(soon(2000));
            (r, p)
        });
        std::thread::sleep(Duration::from_millis(50));
        assert!(matches!(g.enter(None, soon(30)), Err(Error::Timeout)));
        drop(a);
        let (r, p) = back.join().unwrap();
        r.unwrap();
        assert!(matches!(g4.enter(None, soon(30)), Err(Error::Timeout)));
        drop(p);
        let _c = g.enter(None, soon(10)).unwrap();
        assert_eq!(g.fast.load(Ordering::Acquire), 1, "lock-free again");
    }

    #[test]
    fn an_abandoned_parked_call_frees_the_child() {
        let g = Gate::new(8);
        let mut p = g.enter(Some(1), soon(10)).unwrap();
        p.park();
        let a = g.enter(None, soon(10)).unwrap();
        drop(p);
        // The next exclusive call waits only for the shared call in flight.
        let g2 = g.clone();
        let x = std::thread::spawn(move || g2.enter(Some(2), soon(2000)).map(drop));
        std::thread::sleep(Duration::from_millis(30));
        drop(a);
        x.join().unwrap().unwrap();
        assert_eq!(g.fast.load(Ordering::Acquire), 0);
        assert_eq!(g.waiting(), 0);
    }
}
