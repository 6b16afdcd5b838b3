//! The prober of one replica set: a thread that wakes every `--replica-probe-interval` (or
//! when an ejected replica's backoff ends, if sooner) and probes, in parallel:
//!
//! * each **open** replica whose backoff has passed (half-open while probed): success closes
//!   its breaker, failure opens it again for a doubled backoff;
//! * each **closed** replica that has had no request in flight and no answer for an interval
//!   (a health check): failure counts as one failure, so an idle replica that died is ejected
//!   before a client finds out.
//!
//! The probe is [`HttpUpstream::probe`](crate::upstream::http::HttpUpstream::probe): a
//! `ping` POSTed without a session, within [`PROBE_TIMEOUT`]. The thread holds only a weak
//! reference to the set, and stops when told or when the set is gone.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{RecvTimeoutError, Sender, bounded};

use super::{Set, Verdict};
use crate::error::Error;
use crate::util::lock;

/// The longest one probe may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The running prober: [`Handle::stop`] ends it.
pub struct Handle {
    stop: Mutex<Option<(Sender<()>, JoinHandle<()>)>>,
}

impl Handle {
    /// Stops the thread and waits for it (at most one probe round).
    pub fn stop(&self) {
        if let Some((tx, thread)) = lock(&self.stop).take() {
            drop(tx);
            let _ = thread.join();
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts the prober of `set`.
pub fn start(set: &Arc<Set>) -> Result<Handle, Error> {
    let weak = Arc::downgrade(set);
    let (tx, rx) = bounded::<()>(1);
    let thread = std::thread::Builder::new()
        .name("replica-probe".into())
        .spawn(move || {
            loop {
                // A round that panicked must not end the probing of every replica.
                let wait = match Weak::upgrade(&weak) {
                    Some(set) => {
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| set.probe_round()))
                            .unwrap_or(Duration::from_secs(1))
                    }
                    None => return,
                };
                match rx.recv_timeout(wait) {
                    Err(RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
            }
        })?;
    Ok(Handle {
        stop: Mutex::new(Some((tx, thread))),
    })
}

/// Why a replica is probed.
#[derive(Clone, Copy)]
enum Why {
    /// Ejected, and its backoff passed.
    Reopen,
    /// Closed and idle.
    Health,
}

impl Set {
    /// Probes what is due; returns how long until the next round.
    fn probe_round(&self) -> Duration {
        let now = Instant::now();
        let interval = self.cfg.probe_interval;
        let idle_ms = interval.as_millis() as u64;
        let now_ms = self.born.elapsed().as_millis() as u64;
        let due: Vec<(usize, Why)> = self
            .replicas
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                let mut b = lock(&r.breaker);
                if b.begin_probe(now) {
                    return Some((i, Why::Reopen));
                }
                // A request timed out on it (a slow call or a hung server): checked now,
                // busy or not; else only when idle.
                let suspect = r.suspect.swap(false, Ordering::Relaxed);
                let idle = r.inflight.load(Ordering::Relaxed) == 0
                    && now_ms.saturating_sub(r.active_ms.load(Ordering::Relaxed)) >= idle_ms;
                (b.closed() && (idle || suspect)).then_some((i, Why::Health))
            })
            .collect();
        // A probe that could not be made (no thread) reports `UpstreamBusy`: not probed.
        let results: Vec<Result<(), Error>> = std::thread::scope(|scope| {
            let probes: Vec<_> = due
                .iter()
                .map(|&(i, _)| {
                    std::thread::Builder::new()
                        .name("replica-probe".into())
                        .spawn_scoped(scope, move || self.replicas[i].up.probe(PROBE_TIMEOUT))
                })
                .collect();
            probes
                .into_iter()
                .map(|h| match h {
                    Ok(h) => h
                        .join()
                        .unwrap_or_else(|_| Err(Error::Internal("probe panicked".into()))),
                    Err(_) => Err(Error::UpstreamBusy),
                })
                .collect()
        });
        for ((i, why), result) in due.into_iter().zip(results) {
            self.probed(i, why, result);
        }
        let now = Instant::now();
        self.replicas
            .iter()
            .filter_map(|r| lock(&r.breaker).reopens_at())
            .map(|t| t.saturating_duration_since(now))
            .fold(interval, Duration::min)
            .max(Duration::from_millis(10))
    }

    fn probed(&self, i: usize, why: Why, result: Result<(), Error>) {
        let r = &self.replicas[i];
        match (why, result) {
            // No pool slot free (its slots held by DELETEs to a hung replica, say) or no
            // thread: says nothing of the replica.
            (Why::Reopen, Err(Error::UpstreamBusy)) => {
                lock(&r.breaker).not_probed(Instant::now());
            }
            (Why::Health, Err(Error::UpstreamBusy)) => {}
            (Why::Reopen, Ok(())) => {
                lock(&r.breaker).probed(true, Instant::now());
                self.mark_active(i);
                log::info!(
                    "upstream {}: replica {} answered a probe: back in service",
                    self.name,
                    r.url
                );
            }
            (Why::Reopen, Err(e)) => {
                let mut b = lock(&r.breaker);
                b.probed(false, Instant::now());
                *lock(&r.last_error) = Some(format!("probe: {e}"));
                let next = b.reopens_at().map_or(Duration::ZERO, |t| {
                    t.saturating_duration_since(Instant::now())
                });
                log::debug!(
                    "upstream {}: replica {} still down ({e}); next probe in {next:?}",
                    self.name,
                    r.url
                );
            }
            (Why::Health, Ok(())) => self.record(i, &Verdict::Answered),
            (Why::Health, Err(e)) => self.record(i, &Verdict::Failed(format!("probe: {e}"))),
        }
    }
}
