//! The counting semaphore behind the server's worker and stream permits.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::util::lock;

/// Counting semaphore; `close` makes waiting and later `acquire` calls fail.
pub(super) struct Semaphore {
    state: Mutex<(usize, bool)>,
    cv: Condvar,
    total: usize,
}

/// A taken semaphore permit, returned on drop. (Owns an `Arc` so that a
/// [`StreamWriter`](super::StreamWriter) can release it without carrying a second lifetime.)
pub(super) struct Permit(Arc<Semaphore>);

/// Why [`Semaphore::acquire`] gave no permit.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum NoPermit {
    /// The semaphore is closed (shutdown).
    Closed,
    /// None became free within the wait.
    TimedOut,
}

impl Semaphore {
    pub(super) fn new(total: usize) -> Semaphore {
        Semaphore {
            state: Mutex::new((total, false)),
            cv: Condvar::new(),
            total,
        }
    }

    /// Waits at most `wait` for a free permit (a wait too long to represent is unbounded).
    pub(super) fn acquire(self: &Arc<Self>, wait: Duration) -> Result<Permit, NoPermit> {
        let until = Instant::now().checked_add(wait);
        let mut st = lock(&self.state);
        loop {
            if st.1 {
                return Err(NoPermit::Closed);
            }
            if st.0 > 0 {
                st.0 -= 1;
                return Ok(Permit(Arc::clone(self)));
            }
            st = match until {
                None => self.cv.wait(st).unwrap_or_else(PoisonError::into_inner),
                Some(until) => {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(NoPermit::TimedOut);
                    }
                    self.cv
                        .wait_timeout(st, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
    }

    pub(super) fn try_acquire(self: &Arc<Self>) -> Option<Permit> {
        let mut st = lock(&self.state);
        if st.1 || st.0 == 0 {
            return None;
        }
        st.0 -= 1;
        Some(Permit(Arc::clone(self)))
    }

    pub(super) fn close(&self) {
        lock(&self.state).1 = true;
        self.cv.notify_all();
    }

    pub(super) fn in_use(&self) -> usize {
        self.total - lock(&self.state).0
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        lock(&self.0.state).0 += 1;
        self.0.cv.notify_one();
    }
}
