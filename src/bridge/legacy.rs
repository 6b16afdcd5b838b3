//! The proxy-owned session-era sessions that bridged 2026-07-28 calls travel over.
//!
//! Two kinds, both opened with an ordinary `initialize` through [`Upstream::initialize`] and
//! kept out of the client session table (no client can name them):
//! * one **plain** session declaring no client capability, shared by every call whose client
//!   can be asked nothing: the upstream cannot send it server-to-client requests;
//! * **capable** sessions declaring sampling, elicitation (form and URL) and roots, each leased
//!   to one call at a time, so a server-to-client request the upstream makes belongs to
//!   exactly that call. At most `max` serve calls that are not waiting for input (idle ones,
//!   kept for reuse, included); beyond, a new call is refused (503, `Retry-After`: the seconds
//!   until the first running call's round deadline, by which its session is free or parked).
//!   A call waiting for its client's input keeps its session (the upstream's pending request
//!   is tied to it) but is *parked* ([`Lease::park`]) and not counted: the waiting calls are
//!   bounded by `crate::bridge::waiting` instead. A retried call always gets its session back,
//!   so for a while more than `max` may run; surplus idle sessions are closed at the next
//!   lease. An idle session pinned to a stdio child no parked call holds is lent first: a
//!   capable call is exclusive on a shared child, so it would wait behind the parked one.
//!
//! A session the upstream forgot (child restarted, upstream 404) is dropped when a call meets
//! the loss, and the next call opens a new one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use crate::error::Error;
use crate::jsonrpc::{LEGACY_VERSIONS, Message};
use crate::session::{Session, Sessions};
use crate::upstream::{Call, Item, Poll, Reply, Upstream};
use crate::util::lock;

/// What the upstream said in its answer to the bridge's `initialize`, raw.
pub struct Hello {
    /// The negotiated version (one the proxy knows).
    pub version: &'static str,
    /// `result`, raw JSON text.
    pub result: String,
}

/// The pool of bridge sessions.
pub struct Pool {
    plain: Mutex<Option<Arc<Session>>>,
    idle: Mutex<Vec<Arc<Session>>>,
    /// Locked before `idle` when both are.
    counts: Mutex<Counts>,
    next: AtomicU64,
    max: usize,
    hello: Mutex<Option<Arc<Hello>>>,
    me: Weak<Pool>,
}

/// The capable sessions, counted.
#[derive(Default)]
struct Counts {
    /// Open: idle, leased to a running call, or to a parked one.
    open: usize,
    /// Leased to a parked call (not counted against `max`).
    parked: usize,
    /// The stdio children (`Binding::child`) the parked calls' sessions are pinned to, one
    /// entry per parked call: an idle session elsewhere is lent first, since a shared child
    /// makes a capable call wait while a parked one holds it.
    parked_on: Vec<usize>,
    /// The running calls' leases, and when each is free or parked at the latest.
    busy: Vec<(u64, Instant)>,
}

impl Counts {
    /// A parked call on `child` goes on or ends.
    fn unpark(&mut self, child: usize) {
        self.parked = self.parked.saturating_sub(1);
        if let Some(i) = self.parked_on.iter().position(|c| *c == child) {
            self.parked_on.swap_remove(i);
        }
    }
}

/// A session lent to one call; a capable one goes back to the pool when dropped.
pub struct Lease {
    /// The session.
    pub session: Arc<Session>,
    /// Lent exclusively (capable); `None` for the shared plain session.
    pool: Option<Weak<Pool>>,
    /// The upstream lost it: do not reuse.
    pub lost: bool,
    /// Its number in the pool's `busy` list.
    id: u64,
    /// Its call waits for input: not counted against the pool's `max`.
    parked: bool,
}

impl Lease {
    /// A lease of `session` outside any pool (tests).
    #[cfg(test)]
    pub fn detached(session: Arc<Session>) -> Lease {
        Lease::plain(session)
    }

    fn plain(session: Arc<Session>) -> Lease {
        Lease {
            session,
            pool: None,
            lost: false,
            id: 0,
            parked: false,
        }
    }

    /// Its call waits for its client's input: the session stays lent, but no longer counts
    /// against the pool's bound of running calls.
    pub fn park(&mut self) {
        let Some(pool) = self.pool.as_ref().and_then(Weak::upgrade) else {
            return;
        };
        if !self.parked {
            let mut c = lock(&pool.counts);
            c.parked += 1;
            c.parked_on.push(self.session.binding.child);
            c.busy.retain(|(id, _)| *id != self.id);
            self.parked = true;
        }
    }

    /// Its call goes on (a verified retry), free or parked again by `deadline` at the latest.
    pub fn unpark(&mut self, deadline: Instant) {
        let Some(pool) = self.pool.as_ref().and_then(Weak::upgrade) else {
            return;
        };
        if self.parked {
            let mut c = lock(&pool.counts);
            c.unpark(self.session.binding.child);
            c.busy.push((self.id, deadline));
            self.parked = false;
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(pool) = self.pool.as_ref().and_then(Weak::upgrade) else {
            return;
        };
        {
            let mut c = lock(&pool.counts);
            if self.parked {
                c.unpark(self.session.binding.child);
            } else {
                c.busy.retain(|(id, _)| *id != self.id);
            }
            if self.lost {
                c.open = c.open.saturating_sub(1);
                return;
            }
        }
        lock(&pool.idle).push(self.session.clone());
    }
}

impl Pool {
    /// An empty pool of at most `max` capable sessions.
    pub fn new(max: usize) -> Arc<Pool> {
        Arc::new_cyclic(|me| Pool {
            plain: Mutex::new(None),
            idle: Mutex::new(Vec::new()),
            counts: Mutex::default(),
            next: AtomicU64::new(1),
            max,
            hello: Mutex::new(None),
            me: me.clone(),
        })
    }

    /// The upstream's answer to the latest bridge `initialize`, opening the plain session if
    /// none was opened yet.
    pub fn hello(
        &self,
        upstream: &dyn Upstream,
        sessions: &Sessions,
        deadline: Instant,
    ) -> Result<Arc<Hello>, Error> {
        if let Some(h) = lock(&self.hello).clone() {
            return Ok(h);
        }
        drop(self.lease(upstream, sessions, false, deadline)?);
        lock(&self.hello)
            .clone()
            .ok_or_else(|| Error::Internal("bridge session opened without an answer".into()))
    }

    /// A session for one call: the shared plain one, or a capable one of its own.
    pub fn lease(
        &self,
        upstream: &dyn Upstream,
        sessions: &Sessions,
        capable: bool,
        deadline: Instant,
    ) -> Result<Lease, Error> {
        if !capable {
            if let Some(s) = lock(&self.plain).clone() {
                return Ok(Lease::plain(s));
            }
            let s = self.open(upstream, sessions, false, deadline)?;
            *lock(&self.plain) = Some(s.clone());
            return Ok(Lease::plain(s));
        }
        for s in self.surplus() {
            upstream.close(&s);
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let lease = |session| Lease {
            session,
            pool: Some(self.me.clone()),
            lost: false,
            id,
            parked: false,
        };
        let reused = {
            let mut c = lock(&self.counts);
            let reused = {
                let mut idle = lock(&self.idle);
                // One pinned to a child no parked call holds, if there is one; if every idle
                // one is, a new session while there is room (a stdio upstream places it on a
                // child no exclusive call holds, if it has one) rather than wait up to
                // `--input-timeout` behind the parked call.
                let free = idle
                    .iter()
                    .rposition(|s| !c.parked_on.contains(&s.binding.child));
                let room = c.open - c.parked.min(c.open) < self.max;
                match free {
                    Some(i) => Some(idle.swap_remove(i)),
                    None if room && !c.parked_on.is_empty() => None,
                    None => idle.pop(),
                }
            };
            if reused.is_none() {
                if c.open - c.parked.min(c.open) >= self.max {
                    let now = Instant::now();
                    let first = c.busy.iter().map(|(_, t)| *t).min().unwrap_or(now);
                    let wait = first.saturating_duration_since(now);
                    return Err(Error::BridgeSessions {
                        limit: self.max,
                        retry_after: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
                    });
                }
                c.open += 1;
            }
            c.busy.push((id, deadline));
            reused
        };
        if let Some(s) = reused {
            return Ok(lease(s));
        }
        match self.open(upstream, sessions, true, deadline) {
            Ok(s) => Ok(lease(s)),
            Err(e) => {
                let mut c = lock(&self.counts);
                c.open = c.open.saturating_sub(1);
                c.busy.retain(|(i, _)| *i != id);
                Err(e)
            }
        }
    }

    /// Idle capable sessions beyond `max` running or idle ones (retried calls took their
    /// parked sessions back meanwhile): taken out of the pool, for the caller to close.
    fn surplus(&self) -> Vec<Arc<Session>> {
        let mut c = lock(&self.counts);
        let mut idle = lock(&self.idle);
        let mut out = Vec::new();
        while c.open - c.parked.min(c.open) > self.max {
            let Some(s) = idle.pop() else { break };
            c.open -= 1;
            out.push(s);
        }
        out
    }

    /// Capable sessions: open, and of them leased to parked calls.
    pub fn counts(&self) -> (usize, usize) {
        let c = lock(&self.counts);
        (c.open, c.parked)
    }

    /// Forgets `lease`'s session: the upstream lost it.
    pub fn lost(&self, upstream: &dyn Upstream, lease: &mut Lease) {
        lease.lost = true;
        let mut plain = lock(&self.plain);
        if plain
            .as_ref()
            .is_some_and(|s| Arc::ptr_eq(s, &lease.session))
        {
            *plain = None;
        }
        drop(plain);
        upstream.close(&lease.session);
    }

    /// Ends every bridge session upstream (shutdown).
    pub fn close_all(&self, upstream: &dyn Upstream) {
        if let Some(s) = lock(&self.plain).take() {
            // Ends the `subscriptions/listen` streams that follow it.
            s.streams.end_all();
            upstream.close(&s);
        }
        for s in lock(&self.idle).drain(..) {
            upstream.close(&s);
        }
    }

    /// Opens a session: `initialize`, then `notifications/initialized`.
    fn open(
        &self,
        upstream: &dyn Upstream,
        sessions: &Sessions,
        capable: bool,
        deadline: Instant,
    ) -> Result<Arc<Session>, Error> {
        let caps = if capable {
            r#"{"sampling":{},"elicitation":{"form":{},"url":{}},"roots":{"listChanged":false}}"#
        } else {
            "{}"
        };
        let newest = LEGACY_VERSIONS[LEGACY_VERSIONS.len() - 1];
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":"shadowcat-bridge","method":"initialize","params":{{"protocolVersion":"{newest}","capabilities":{caps},"clientInfo":{{"name":"shadowcat-bridge","version":"{}"}}}}}}"#,
            env!("CARGO_PKG_VERSION")
        );
        let call = Call {
            msg: Message::parse(body.as_bytes())?,
            session: None,
            deadline,
            headers: Vec::new(),
        };
        let (binding, reply) = upstream.initialize(call)?;
        let answer = final_body(reply, deadline)?;
        let hello = parse_hello(&answer)?;
        let session =
            sessions.build(hello.version.to_owned(), binding, None, "bridge".to_owned())?;
        upstream.attach(&session);
        let note = br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
        upstream.forward(Call {
            msg: Message::parse(note)?,
            session: Some(&session),
            deadline,
            headers: vec![("MCP-Protocol-Version".to_owned(), hello.version.to_owned())],
        })?;
        log::debug!(
            "bridge session {} opened ({}, {})",
            session.short_id(),
            hello.version,
            if capable { "capable" } else { "plain" }
        );
        *lock(&self.hello) = Some(Arc::new(hello));
        Ok(session)
    }
}

/// The one response in `reply` (waiting on a stream until `deadline`).
pub fn final_body(reply: Reply, deadline: Instant) -> Result<Vec<u8>, Error> {
    match reply {
        Reply::Message(b) => Ok(b),
        Reply::Stream(mut s) => loop {
            match s.poll_until(deadline)? {
                Poll::Item(Item::Final(b)) => return Ok(b),
                Poll::Item(Item::Message(_)) => {}
                Poll::Idle if Instant::now() < deadline => {}
                Poll::Idle => return Err(Error::Timeout),
                Poll::End => {
                    return Err(Error::UpstreamProtocol(
                        "upstream ended initialize without answering".into(),
                    ));
                }
            }
        },
        Reply::Accepted => Err(Error::UpstreamProtocol(
            "upstream accepted initialize without answering".into(),
        )),
        Reply::Relay { status, body, .. } => Err(Error::UpstreamStatus {
            status,
            message: format!(
                "upstream refused the bridge's initialize: HTTP {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ),
        }),
    }
}

/// The version and result of an `initialize` answer.
fn parse_hello(body: &[u8]) -> Result<Hello, Error> {
    let msg = Message::parse(body)?;
    let Some(result) = msg.result else {
        return Err(Error::UpstreamProtocol(
            "upstream refused the bridge's initialize".into(),
        ));
    };
    let version = crate::jsonrpc::pick(result.get(), ["protocolVersion"])
        .and_then(|[v]| v)
        .and_then(|v| serde_json::from_str::<String>(v.get()).ok())
        .and_then(|v| LEGACY_VERSIONS.iter().copied().find(|k| *k == v))
        .unwrap_or(LEGACY_VERSIONS[LEGACY_VERSIONS.len() - 1]);
    Ok(Hello {
        version,
        result: result.get().to_owned(),
    })
}
