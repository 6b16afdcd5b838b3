//! The per-client quota of open streams (`--max-streams-per-client`): one client (its
//! principal, or its IP) cannot hold every stream permit (`--max-streams`), so a GET or a
//! streamed answer of another client still finds one.
//!
//! A stream is counted from the moment the pipeline decides to stream until its answer ends
//! ([`StreamSlot`] is dropped). A GET that takes over a stream the client is already following
//! (the same log: a reconnect after a silent drop) needs no second slot, so a client at its
//! quota is never locked out of its own streams. Over the quota: 429 with a `Retry-After` of
//! the time until one of its streams ends by itself at the latest (a request's deadline, or
//! the idle expiry of the session a GET follows).
//!
//! With `--limits-store` the quota holds across instances (issue #17): a stream counted here
//! also holds a lease in the client's set of stream holds in Redis ([`StreamHolds`]), named
//! by a random per-process nonce and the stream (no client data); a client at its quota
//! across the cluster gets the same 429. The hold is given back when the stream's last slot
//! here is, and renewed from housekeeping ([`StreamQuota::cluster_holds`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::gate::StreamHolds;
use crate::session::Session;
use crate::util::lock;

/// When an open stream ends at the latest if its client does nothing.
pub(super) enum Ends {
    /// A request's stream: by its deadline.
    By(Instant),
    /// A GET following a session's log: when the session expires unused.
    WithSession(Weak<Session>),
}

/// Which stream a slot is for: GETs following the same log share one.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum StreamId {
    /// A request's own stream (each is distinct).
    Request(u64),
    /// A GET following the log at this address (standalone stream or resumption).
    Follow(usize),
}

struct Hold {
    slot: u64,
    stream: StreamId,
    ends: Ends,
}

/// Open streams per client key.
pub(super) struct StreamQuota {
    max: usize,
    idle: Duration,
    open: Mutex<HashMap<String, Vec<Hold>>>,
    next: AtomicU64,
    /// `--limits-store`: the cluster-wide holds, and this process's nonce naming them.
    cluster: Option<(StreamHolds, u64)>,
}

/// One counted stream; given back on drop.
pub(super) struct StreamSlot {
    quota: Arc<StreamQuota>,
    client: String,
    slot: u64,
    stream: StreamId,
}

impl StreamQuota {
    /// At most `max` streams per client; sessions expire after `idle` unused.
    pub(super) fn new(
        max: usize,
        idle: Duration,
        cluster: Option<StreamHolds>,
    ) -> Arc<StreamQuota> {
        // Names this process's holds apart from other instances' (not a secret).
        let nonce = {
            use std::hash::BuildHasher;
            std::collections::hash_map::RandomState::new().hash_one(std::process::id())
        };
        Arc::new(StreamQuota {
            max,
            idle,
            open: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
            cluster: cluster.map(|c| (c, nonce)),
        })
    }

    /// The name of `stream`'s hold in the cluster.
    fn hold_name(nonce: u64, stream: StreamId) -> String {
        match stream {
            StreamId::Request(n) => format!("{nonce:016x}:r{n}"),
            StreamId::Follow(a) => format!("{nonce:016x}:f{a:x}"),
        }
    }

    /// `(client, hold)` of every stream open here, for renewing their leases.
    pub(super) fn cluster_holds(&self) -> Vec<(String, String)> {
        let Some((_, nonce)) = &self.cluster else {
            return Vec::new();
        };
        let open = lock(&self.open);
        let mut out = Vec::new();
        for (client, holds) in open.iter() {
            let mut seen: Vec<StreamId> = Vec::new();
            for h in holds {
                if !seen.contains(&h.stream) {
                    seen.push(h.stream);
                    out.push((client.clone(), Self::hold_name(*nonce, h.stream)));
                }
            }
        }
        out
    }

    /// A fresh id for a request's stream.
    pub(super) fn request_stream(&self) -> StreamId {
        StreamId::Request(self.next.fetch_add(1, Ordering::Relaxed))
    }

    /// Counts `stream` against `client`, or refuses it (429) when the client already has its
    /// quota of other streams open.
    pub(super) fn take(
        self: &Arc<Self>,
        client: &str,
        stream: StreamId,
        ends: Ends,
    ) -> Result<StreamSlot, Error> {
        let mut open = lock(&self.open);
        let holds = open.entry(client.to_owned()).or_default();
        let mut others: Vec<StreamId> = Vec::with_capacity(holds.len());
        for h in holds.iter().filter(|h| h.stream != stream) {
            if !others.contains(&h.stream) {
                others.push(h.stream);
            }
        }
        if others.len() >= self.max {
            let retry_after = self.wait(holds);
            return Err(Error::StreamQuota {
                limit: self.max,
                retry_after,
            });
        }
        let already = holds.iter().any(|h| h.stream == stream);
        let slot = self.next.fetch_add(1, Ordering::Relaxed);
        holds.push(Hold { slot, stream, ends });
        drop(open);
        let taken = StreamSlot {
            quota: self.clone(),
            client: client.to_owned(),
            slot,
            stream,
        };
        if let (Some((cluster, nonce)), false) = (&self.cluster, already) {
            // A refusal drops `taken`, which gives the local slot back.
            cluster.claim(client, &Self::hold_name(*nonce, stream), self.max)?;
        }
        Ok(taken)
    }

    /// Whole seconds (rounded up, at least 1, at most the session idle time or the furthest
    /// deadline) until the first of `holds` ends by itself.
    fn wait(&self, holds: &[Hold]) -> u64 {
        let now = Instant::now();
        let soonest = holds
            .iter()
            .map(|h| match &h.ends {
                Ends::By(t) => t.saturating_duration_since(now),
                Ends::WithSession(s) => s
                    .upgrade()
                    .map(|s| s.expires_in(self.idle))
                    .unwrap_or(Duration::ZERO),
            })
            .min()
            .unwrap_or(Duration::ZERO);
        (soonest.as_secs() + u64::from(soonest.subsec_nanos() > 0)).max(1)
    }

    #[cfg(test)]
    fn count(&self, client: &str) -> usize {
        lock(&self.open).get(client).map_or(0, Vec::len)
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = lock(&self.quota.open);
        let mut last = true;
        if let Some(holds) = open.get_mut(&self.client) {
            holds.retain(|h| h.slot != self.slot);
            last = !holds.iter().any(|h| h.stream == self.stream);
            if holds.is_empty() {
                open.remove(&self.client);
            }
        }
        drop(open);
        if let (Some((cluster, nonce)), true) = (&self.quota.cluster, last) {
            cluster.release(&self.client, &StreamQuota::hold_name(*nonce, self.stream));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_per_client_and_shared_follows() {
        let q = StreamQuota::new(2, Duration::from_secs(60), None);
        let soon = || Ends::By(Instant::now() + Duration::from_millis(2500));
        let a1 = q.take("a", q.request_stream(), soon()).unwrap();
        let a2 = q.take("a", StreamId::Follow(7), soon()).unwrap();
        // A third stream is refused, with the wait until the first ends (2.5 s → 3).
        match q.take("a", q.request_stream(), soon()) {
            Err(Error::StreamQuota {
                limit: 2,
                retry_after: 3,
            }) => {}
            Err(e) => panic!("{e:?}"),
            Ok(_) => panic!("over quota"),
        }
        // Taking over the followed log again needs no new slot; another client is apart.
        let again = q.take("a", StreamId::Follow(7), soon()).unwrap();
        let b = q.take("b", q.request_stream(), soon()).unwrap();
        drop(a2);
        drop(again);
        let a3 = q.take("a", q.request_stream(), soon()).unwrap();
        assert_eq!(q.count("a"), 2);
        drop((a1, a3, b));
        assert_eq!(q.count("a"), 0);
        assert!(lock(&q.open).is_empty(), "no empty entries left");
    }
}
