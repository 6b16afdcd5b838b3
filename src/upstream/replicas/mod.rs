//! Replicas: one HTTP upstream served by several identical servers (`--upstream` given more
//! than once, `url = [...]` in a config file), each behind a circuit breaker.
//!
//! Owns: [`ReplicaSet`], an [`Upstream`] over up to 64 [`HttpUpstream`]s (each with its own
//! r2d2 pool), the choice of replica (here), each replica's breaker (`breaker.rs`) and the one
//! prober thread of the set (`prober.rs`), what an exchange says about a replica
//! (`verdict.rs`). Must not touch: how a replica speaks HTTP (only
//! [`HttpUpstream`]'s [`Upstream`] methods and its `probe`) or the client side.
//!
//! * **Choice.** A stateless (2026-07-28) request goes to the closed replica with the fewest
//!   requests in flight; an `initialize` likewise (then the fewest sessions), and the session
//!   stays on that replica: its [`Binding::child`] is the replica's index and
//!   [`Binding::generation`] the replica's ejection count when it was bound. Ties go round
//!   the replicas in turn.
//! * **What counts as a failure:** no connection, a timeout, a 5xx. JSON-RPC errors and 4xx
//!   answers are answers: they end a run of failures. `--replica-failures` failures in a row
//!   eject the replica for `--replica-backoff` (doubling while probes fail, up to
//!   `--replica-backoff-max`).
//! * **A request that was never delivered** (connection refused) is tried on another replica
//!   when it is stateless or an `initialize`. A session whose replica refuses connections or
//!   has been ejected since the session began gets [`Error::UpstreamSessionLost`]: the
//!   client sees 404 and starts a new session, which lands on a live replica.
//! * **Probes** (`prober.rs`): an ejected replica takes no traffic until a probe (a JSON-RPC
//!   `ping` POSTed without a session: any answer below 500 passes) succeeds; closed replicas
//!   that saw no traffic for `--replica-probe-interval` are probed too, and a failed probe
//!   counts as a failure.
//! * **All replicas ejected:** [`Error::Unavailable`] naming the upstream (503, JSON-RPC
//!   -32603, `Retry-After`).

mod breaker;
mod prober;
mod verdict;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::{HttpUpstreamConfig, ReplicaConfig};
use crate::error::Error;
use crate::metrics::ReplicaInfo;
use crate::session::{Binding, Session};
use crate::upstream::http::HttpUpstream;
use crate::upstream::{Call, MessageStream, Operate, Poll, PoolInfo, Reply, Upstream};
use crate::util::lock;
use breaker::Breaker;
use verdict::{Verdict, undelivered, verdict};

/// At most this many replicas (`--upstream` given up to 64 times).
pub const MAX_REPLICAS: usize = 64;

/// Several servers of one upstream behind circuit breakers.
pub struct ReplicaSet {
    set: Arc<Set>,
    prober: prober::Handle,
}

/// What the set and its prober share.
struct Set {
    name: String,
    replicas: Vec<Replica>,
    cfg: ReplicaConfig,
    /// Where the round-robin tie-break starts next.
    turn: AtomicUsize,
    born: Instant,
}

/// One server.
struct Replica {
    /// Its URL without user info, as shown.
    url: String,
    up: HttpUpstream,
    breaker: Mutex<Breaker>,
    inflight: AtomicUsize,
    /// Upstream sessions open on it since its last ejection.
    sessions: AtomicUsize,
    /// Milliseconds since the set was made of its last answer or request sent (0: none).
    active_ms: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// A request timed out on it: the prober checks it at its next round, busy or not.
    suspect: std::sync::atomic::AtomicBool,
}

/// Holds one request in flight on a replica until dropped.
struct Busy {
    set: Arc<Set>,
    i: usize,
}

impl Drop for Busy {
    fn drop(&mut self) {
        if let Some(r) = self.set.replicas.get(self.i) {
            r.inflight.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// A replica's event stream, counted in flight until it ends.
struct Counted {
    inner: Box<dyn MessageStream>,
    _busy: Busy,
}

impl MessageStream for Counted {
    fn poll_until(&mut self, wake: Instant) -> Result<Poll, Error> {
        self.inner.poll_until(wake)
    }
    fn must_stream(&self) -> bool {
        self.inner.must_stream()
    }
    fn dropped(&mut self) -> u64 {
        self.inner.dropped()
    }
    fn park(&mut self) {
        self.inner.park()
    }
    fn unpark(&mut self, deadline: Instant) -> Result<(), Error> {
        self.inner.unpark(deadline)
    }
}

impl ReplicaSet {
    /// A set over `cfg.url` and `cfg.replicas` (each an [`HttpUpstream`] with the same
    /// settings); starts its prober. Connects nothing yet.
    pub fn new(
        cfg: &HttpUpstreamConfig,
        metrics: Option<Arc<crate::metrics::Metrics>>,
    ) -> Result<ReplicaSet, Error> {
        let urls: Vec<&String> = std::iter::once(&cfg.url).chain(&cfg.replicas).collect();
        if urls.len() > MAX_REPLICAS {
            return Err(Error::Config(format!("more than {MAX_REPLICAS} replicas")));
        }
        let mut replicas = Vec::with_capacity(urls.len());
        for url in urls {
            let one = HttpUpstreamConfig {
                url: url.clone(),
                replicas: Vec::new(),
                ..cfg.clone()
            };
            replicas.push(Replica {
                url: crate::config::redact_url(url),
                up: HttpUpstream::new(&one, metrics.clone())?,
                breaker: Mutex::new(Breaker::new(&cfg.breaker)),
                inflight: AtomicUsize::new(0),
                sessions: AtomicUsize::new(0),
                active_ms: AtomicU64::new(0),
                last_error: Mutex::new(None),
                suspect: std::sync::atomic::AtomicBool::new(false),
            });
        }
        let set = Arc::new(Set {
            name: format!(
                "{}+{}",
                crate::config::url_authority(&cfg.url),
                cfg.replicas.len()
            ),
            replicas,
            cfg: cfg.breaker.clone(),
            turn: AtomicUsize::new(0),
            born: Instant::now(),
        });
        let prober = prober::start(&set)?;
        Ok(ReplicaSet { set, prober })
    }
}

impl Set {
    /// The closed replica with the fewest requests in flight (then, for a new session, the
    /// fewest sessions), skipping those in `tried` (a bit per replica); ties in turn.
    fn choose(&self, tried: u64, for_session: bool) -> Option<usize> {
        let n = self.replicas.len();
        let start = self.turn.fetch_add(1, Ordering::Relaxed) % n.max(1);
        let mut best: Option<(usize, (usize, usize))> = None;
        for k in 0..n {
            let i = (start + k) % n;
            let r = &self.replicas[i];
            if tried & (1 << i) != 0 || !lock(&r.breaker).closed() {
                continue;
            }
            let sessions = if for_session {
                r.sessions.load(Ordering::Relaxed)
            } else {
                0
            };
            let key = (r.inflight.load(Ordering::Relaxed), sessions);
            if best.is_none_or(|(_, b)| key < b) {
                best = Some((i, key));
            }
        }
        best.map(|(i, _)| i)
    }

    fn busy(self: &Arc<Self>, i: usize) -> Busy {
        self.replicas[i].inflight.fetch_add(1, Ordering::Relaxed);
        self.mark_active(i);
        Busy {
            set: self.clone(),
            i,
        }
    }

    fn mark_active(&self, i: usize) {
        let ms = self.born.elapsed().as_millis() as u64 + 1;
        self.replicas[i].active_ms.store(ms, Ordering::Relaxed);
    }

    /// Tells replica `i`'s breaker how an exchange went.
    fn record(&self, i: usize, v: &Verdict) {
        let r = &self.replicas[i];
        match v {
            Verdict::Answered => {
                lock(&r.breaker).success();
                self.mark_active(i);
            }
            Verdict::Failed(why) => {
                *lock(&r.last_error) = Some(why.clone());
                let mut b = lock(&r.breaker);
                if b.failure(Instant::now()) {
                    // Its sessions are lost (their generation is behind now).
                    r.sessions.store(0, Ordering::Relaxed);
                    log::warn!(
                        "upstream {}: replica {} ejected after {} failures in a row ({why}); \
                         probed again in {:?}",
                        self.name,
                        r.url,
                        self.cfg.failures,
                        self.cfg.backoff
                    );
                }
            }
            Verdict::Suspect(why) => {
                *lock(&r.last_error) = Some(why.clone());
                r.suspect.store(true, Ordering::Relaxed);
            }
            Verdict::Neutral => {}
        }
    }

    /// The error when no replica takes traffic.
    fn none_left(&self) -> Error {
        Error::Unavailable(format!(
            "upstream {}: all {} replicas are ejected (circuit breakers open); retry later",
            self.name,
            self.replicas.len()
        ))
    }

    /// Sends `call` (stateless, or an `initialize`: `for_session`) to a chosen replica with
    /// `send`; a request never delivered goes to the next one, and so does an `initialize`
    /// answered with a 5xx (it opened nothing; the last such answer is returned when every
    /// replica gave one). Returns the replica that answered, what it answered (whose
    /// [`Reply`] is `reply_of` it) and its hold in flight.
    fn dispatch<T>(
        self: &Arc<Self>,
        call: Call<'_>,
        for_session: bool,
        send: impl Fn(&HttpUpstream, Call<'_>) -> Result<T, Error>,
        reply_of: impl Fn(&T) -> &Reply,
    ) -> Result<(usize, T, Busy), Error> {
        let mut tried = 0u64;
        let mut last = None;
        let mut refused_init = None;
        while let Some(i) = self.choose(tried, for_session) {
            tried |= 1 << i;
            let busy = self.busy(i);
            let attempt = Call {
                msg: call.msg.clone(),
                session: None,
                deadline: call.deadline,
                headers: call.headers.clone(),
            };
            let r = send(&self.replicas[i].up, attempt);
            let v = verdict(r.as_ref().map(&reply_of));
            let failed = matches!(v, Verdict::Failed(_));
            self.record(i, &v);
            match r {
                Ok(t) if failed && for_session => refused_init = Some((i, t, busy)),
                Ok(t) => return Ok((i, t, busy)),
                // Never sent: another replica may take it (no pool slot free here, or the
                // connection refused).
                Err(e) if undelivered(&e) || matches!(e, Error::UpstreamBusy) => {
                    log::debug!(
                        "upstream {}: replica {}: {e}",
                        self.name,
                        self.replicas[i].url
                    );
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        if let Some(answer) = refused_init {
            return Ok(answer);
        }
        Err(last.unwrap_or_else(|| self.none_left()))
    }
}

/// Keeps `reply`'s replica counted in flight while it streams.
fn hold(reply: Reply, busy: Busy) -> Reply {
    match reply {
        Reply::Stream(inner) => Reply::Stream(Box::new(Counted { inner, _busy: busy })),
        other => other,
    }
}

impl Upstream for ReplicaSet {
    fn initialize(&self, call: Call<'_>) -> Result<(Binding, Reply), Error> {
        let set = &self.set;
        let (i, (mut binding, reply), busy) =
            set.dispatch(call, true, |up, c| up.initialize(c), |(_, reply)| reply)?;
        let r = &set.replicas[i];
        binding.child = i;
        binding.generation = lock(&r.breaker).ejections();
        if lock(&binding.upstream_id).is_some() {
            r.sessions.fetch_add(1, Ordering::Relaxed);
        }
        Ok((binding, hold(reply, busy)))
    }

    fn forward(&self, call: Call<'_>) -> Result<Reply, Error> {
        let set = &self.set;
        let Some(session) = call.session else {
            let (_, reply, busy) = set.dispatch(call, false, |up, c| up.forward(c), |r| r)?;
            return Ok(hold(reply, busy));
        };
        let i = session.binding.child;
        let r = set.replicas.get(i).ok_or(Error::UnknownSession)?;
        {
            let b = lock(&r.breaker);
            if !b.closed() || b.ejections() != session.binding.generation {
                return Err(Error::UpstreamSessionLost);
            }
        }
        let busy = set.busy(i);
        let result = r.up.forward(call);
        set.record(i, &verdict(result.as_ref()));
        match result {
            Ok(reply) => Ok(hold(reply, busy)),
            Err(e) if undelivered(&e) || !lock(&r.breaker).closed() => {
                log::info!(
                    "upstream {}: replica {} is gone for session {}: {e}",
                    set.name,
                    r.url,
                    session.short_id()
                );
                Err(Error::UpstreamSessionLost)
            }
            Err(e) => Err(e),
        }
    }

    fn close(&self, session: &Session) {
        let Some(r) = self.set.replicas.get(session.binding.child) else {
            return;
        };
        if lock(&session.binding.upstream_id).is_none() {
            return;
        }
        let current = {
            let b = lock(&r.breaker);
            b.closed() && b.ejections() == session.binding.generation
        };
        if !current {
            // Lost with an ejection, which forgot it: the replica is not asked to end it
            // (it would only fail, slowly if it hangs).
            lock(&session.binding.upstream_id).take();
            return;
        }
        let _ = r
            .sessions
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        r.up.close(session);
    }

    fn attach(&self, session: &Arc<Session>) {
        if let Some(r) = self.set.replicas.get(session.binding.child) {
            r.up.attach(session);
        }
    }

    fn listen(&self, session: &Arc<Session>) -> Result<(), Error> {
        let r = self
            .set
            .replicas
            .get(session.binding.child)
            .ok_or(Error::UnknownSession)?;
        {
            let b = lock(&r.breaker);
            if !b.closed() || b.ejections() != session.binding.generation {
                return Err(Error::UpstreamSessionLost);
            }
        }
        r.up.listen(session)
    }
}

impl Operate for ReplicaSet {
    fn name(&self) -> &str {
        &self.set.name
    }

    fn kind(&self) -> &'static str {
        "http"
    }

    fn mode(&self) -> &'static str {
        "replicas"
    }

    /// Ready while any replica's breaker is closed.
    fn ready(&self) -> Result<(), String> {
        if self.set.replicas.iter().any(|r| lock(&r.breaker).closed()) {
            return Ok(());
        }
        Err(self.set.none_left().to_string())
    }

    fn shutdown(&self, grace: Duration) {
        self.prober.stop();
        for r in &self.set.replicas {
            r.up.shutdown(grace);
        }
    }

    /// The replicas' pools added up.
    fn pool(&self) -> Option<PoolInfo> {
        let mut sum = PoolInfo::default();
        for p in self.set.replicas.iter().filter_map(|r| r.up.pool()) {
            sum.connections += p.connections;
            sum.idle += p.idle;
            sum.max += p.max;
        }
        Some(sum)
    }

    fn replicas(&self) -> Vec<ReplicaInfo> {
        let now = Instant::now();
        self.set
            .replicas
            .iter()
            .map(|r| {
                let b = lock(&r.breaker);
                ReplicaInfo {
                    url: r.url.clone(),
                    state: b.state().label(),
                    failures: b.failures(),
                    inflight: r.inflight.load(Ordering::Relaxed),
                    sessions: r.sessions.load(Ordering::Relaxed),
                    ejections: b.ejections(),
                    probe_in: b.reopens_at().map(|t| t.saturating_duration_since(now)),
                    last_error: lock(&r.last_error).clone(),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
