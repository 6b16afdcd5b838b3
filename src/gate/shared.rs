//! The gate's side of `--limits-store` (issue #17): charging the shared buckets, the
//! cluster-wide holds of the per-client session and stream quotas, and what happens when the
//! store cannot decide (fail open: this instance decides alone; closed: 503), counted and
//! warned about at most every 10 s.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::error::Error;
use crate::gate::ratelimit::{
    Charge, CounterStore, Denied, FailMode, HOLD_LEASE, RedisStore, StoreConfig, StoreDown,
};

/// The shared limits store, its fail mode and the fallbacks it caused.
pub(crate) struct Shared {
    store: Box<dyn CounterStore>,
    fail: FailMode,
    /// Requests decided without the store (`shadowcat_limits_store_fallbacks_total`).
    fallbacks: AtomicU64,
    /// Milliseconds since `born` of the last warning.
    warned_ms: AtomicU64,
    /// Milliseconds since `born` of the last renewal of the holds (0: renew at the next
    /// sweep).
    refreshed_ms: AtomicU64,
    born: Instant,
}

/// The token a session is held by in the store: 16 hex digits of the SHA-256 of its id, so
/// the store never sees a session id (a bearer capability).
pub(crate) fn hold_of(session_id: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(session_id.as_bytes())[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The set of a client's session holds.
pub(crate) fn sessions_set(client: &str) -> String {
    format!("s:{client}")
}

/// The set of a client's stream holds.
pub(crate) fn streams_set(client: &str) -> String {
    format!("st:{client}")
}

impl Shared {
    pub(crate) fn new(cfg: &StoreConfig) -> Result<Shared, Error> {
        Ok(Shared {
            store: Box::new(RedisStore::new(&cfg.url, cfg.lease).map_err(Error::Config)?),
            fail: cfg.fail,
            fallbacks: AtomicU64::new(0),
            warned_ms: AtomicU64::new(0),
            refreshed_ms: AtomicU64::new(0),
            born: Instant::now(),
        })
    }

    /// Charges the buckets: `Some` with the store's decision, `None` when it cannot decide
    /// and the in-process buckets decide instead (fail open); failing closed,
    /// [`Error::LimitsStoreDown`].
    pub(crate) fn take(&self, charges: &[Charge<'_>]) -> Result<Option<Result<(), Denied>>, Error> {
        match self.store.take(charges) {
            Ok(None) => Ok(Some(Ok(()))),
            Ok(Some(denied)) => Ok(Some(Err(denied))),
            Err(down) => self.down(&down).map(|()| None),
        }
    }

    /// Holds one of at most `max` members of `set` as `hold`; over it, `over(secs)`.
    pub(crate) fn claim(
        &self,
        set: &str,
        hold: &str,
        max: usize,
        over: impl FnOnce(u64) -> Error,
    ) -> Result<(), Error> {
        match self.store.claim(set, hold, max) {
            Ok(None) => Ok(()),
            Ok(Some(secs)) => Err(over(secs)),
            Err(down) => self.down(&down),
        }
    }

    /// Gives a hold back (best effort: its lease ends it otherwise).
    pub(crate) fn release(&self, set: &str, hold: &str) {
        self.store.release(set, hold);
    }

    /// Renews the `(set, hold)` pairs `holds()` lists, at most every quarter lease (15 s).
    pub(crate) fn refresh(&self, holds: impl FnOnce() -> Vec<(String, String)>) {
        let now = self.born.elapsed().as_millis() as u64 + 1;
        let every = HOLD_LEASE.as_millis() as u64 / 4;
        let last = self.refreshed_ms.load(Ordering::Relaxed);
        if last != 0 && now < last + every {
            return;
        }
        self.refreshed_ms.store(now, Ordering::Relaxed);
        if let Err(down) = self.store.refresh(&holds()) {
            log::debug!("limits store: holds not renewed: {}", down.0);
            self.refreshed_ms.store(0, Ordering::Relaxed);
        }
    }

    /// Requests decided without the store so far.
    pub(crate) fn fallbacks(&self) -> u64 {
        self.fallbacks.load(Ordering::Relaxed)
    }

    /// The store could not decide: counted, warned about (every 10 s at most); `Ok` when this
    /// instance decides alone (fail open), [`Error::LimitsStoreDown`] when failing closed.
    fn down(&self, down: &StoreDown) -> Result<(), Error> {
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
        let now = self.born.elapsed().as_millis() as u64 + 10_000;
        let last = self.warned_ms.load(Ordering::Relaxed);
        if now >= last + 10_000
            && self
                .warned_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let then = match self.fail {
                FailMode::Open => "deciding with this instance's own limits",
                FailMode::Closed => "refusing requests (503)",
            };
            log::warn!("limits store unreachable ({}): {then}", down.0);
        }
        match self.fail {
            FailMode::Open => Ok(()),
            FailMode::Closed => Err(Error::LimitsStoreDown),
        }
    }
}

/// The cluster-wide side of `--max-streams-per-client`, for the pipeline's stream quota:
/// each open stream holds a lease in the client's set of stream holds.
#[derive(Clone)]
pub struct StreamHolds(pub(crate) std::sync::Arc<Shared>);

impl StreamHolds {
    /// Holds one of `client`'s at most `max` streams as `hold` (opaque, unique in the
    /// cluster); over it, [`Error::StreamQuota`]. Store unreachable: as configured.
    pub fn claim(&self, client: &str, hold: &str, max: usize) -> Result<(), Error> {
        self.0
            .claim(&streams_set(client), hold, max, |secs| Error::StreamQuota {
                limit: max,
                retry_after: secs,
            })
    }

    /// Gives a stream's hold back.
    pub fn release(&self, client: &str, hold: &str) {
        self.0.release(&streams_set(client), hold);
    }
}
