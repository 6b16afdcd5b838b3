//! A federation member on tapes of its own (`record = "DIR"` in its `[upstream.NAME]` table):
//! [`Recorded`] wraps the member's upstream and hands what crosses it, as the member saw it, to
//! a [`Recorder`] of its own writing to that directory. `shadowcat replay` of such a tape
//! serves as that member alone.
//!
//! Owns: the member's recorder (one writer thread per directory, queue bounded in bytes as
//! for `--record`, the same redaction rules), the link between a member's `initialize` (made
//! before its session exists) and the session's tape, and the stream wrapper that records a
//! call's items. Must not touch: what the member does (every call goes through unchanged, in
//! the same order), the tape writer (only the [`Recorder`] handle) or the client side (the
//! client's own tape is the pipeline's, `--record`).
//!
//! What a member tape holds: its `initialize` and the answer (so the header names both
//! sides), then every message the federation sent it within the member session (its own
//! tool and prompt names, policy-injected arguments included; the answers to its
//! server-to-client requests with its own ids) and every message it answered with: answers
//! and the items of a call's stream (progress, logs, server-to-client requests). Not
//! recorded: what the member sends on its standalone stream (it goes straight to the
//! client's, shared by every member, and is on the client's tape), calls that failed without
//! an answer, and headers. A member gets no stateless traffic today (the federation is
//! session-era only); a stateless call would go on an hourly tape like `--record`'s.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Call, ChildInfo, ExclusiveInfo, MemberView, Operate, PoolInfo, ReplicaInfo, Reply};
use super::{Item, MessageStream, Poll, Upstream};
use crate::config::{MemberConfig, TapeConfig};
use crate::error::Error;
use crate::jsonrpc::{self, Kind};
use crate::metrics::Metrics;
use crate::session::{Binding, Session};
use crate::tape::{self, Recorder, Redactor, Tap};
use crate::util::lock;

/// `initialize` exchanges waiting for their session (bytes of both messages): beyond this
/// the oldest are forgotten (their sessions were never made, or their tapes start later).
const OPENINGS_BYTES: usize = 4 * 1024 * 1024;

/// An `initialize` and its answer, until the session it opened is attached.
struct Opening {
    at: Instant,
    request: Vec<u8>,
    answer: Option<Vec<u8>>,
}

/// Openings by token (`Binding::tape`), oldest first, with their bytes.
#[derive(Default)]
struct Openings {
    by_token: BTreeMap<u64, Opening>,
    bytes: usize,
}

impl Openings {
    fn put(&mut self, token: u64, o: Opening) {
        self.bytes += o.request.len() + o.answer.as_ref().map_or(0, Vec::len);
        self.by_token.insert(token, o);
        while self.bytes > OPENINGS_BYTES {
            let Some((_, old)) = self.by_token.pop_first() else {
                break;
            };
            self.bytes -= old.request.len() + old.answer.as_ref().map_or(0, Vec::len);
        }
    }

    /// The first answer of an opening (a stream's final message; nothing after it counts).
    fn answer(&mut self, token: u64, answer: Vec<u8>) {
        if let Some(mut o) = self.take(token) {
            o.answer.get_or_insert(answer);
            self.put(token, o);
        }
    }

    fn take(&mut self, token: u64) -> Option<Opening> {
        let o = self.by_token.remove(&token)?;
        self.bytes -= o.request.len() + o.answer.as_ref().map_or(0, Vec::len);
        Some(o)
    }
}

/// A member whose conversations go on its own tapes.
pub struct Recorded {
    inner: Arc<dyn Upstream>,
    recorder: Recorder,
    openings: Arc<Mutex<Openings>>,
    next: AtomicU64,
}

impl Recorded {
    /// Records `inner`'s traffic with `recorder` (started for the member's directory).
    pub fn new(inner: Arc<dyn Upstream>, recorder: Recorder) -> Recorded {
        Recorded {
            inner,
            recorder,
            openings: Arc::default(),
            next: AtomicU64::new(1),
        }
    }

    /// The tap of `session`'s tape, or of the stateless tape for this hour.
    fn tap(&self, session: Option<&Arc<Session>>) -> Option<Tap> {
        match session {
            Some(s) => self.recorder.session(&s.id, &s.protocol_version),
            None => self
                .recorder
                .stateless(None, IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        }
    }

    /// Records `reply` on `tap` as the answer to a request (or, `opening`, keeps it for the
    /// tape of the session it opens).
    fn reply(&self, reply: Reply, sink: Sink) -> Reply {
        match reply {
            Reply::Message(b) => {
                sink.answer(&self.recorder, b.clone());
                Reply::Message(b)
            }
            Reply::Relay {
                status,
                content_type,
                body,
            } => {
                if body.first() == Some(&b'{') {
                    sink.answer(&self.recorder, body.clone());
                }
                Reply::Relay {
                    status,
                    content_type,
                    body,
                }
            }
            Reply::Stream(inner) => Reply::Stream(Box::new(Taped {
                inner,
                recorder: self.recorder.clone(),
                sink,
            })),
            Reply::Accepted => Reply::Accepted,
        }
    }
}

/// Where a reply's messages go.
enum Sink {
    /// A call's tape.
    Tape(Tap),
    /// An `initialize`'s answer, kept for its session's tape.
    Opening(u64, Arc<Mutex<Openings>>),
}

impl Sink {
    fn answer(&self, recorder: &Recorder, body: Vec<u8>) {
        match self {
            Sink::Tape(tap) => recorder.client_got(tap, body, true, false),
            Sink::Opening(token, openings) => lock(openings).answer(*token, body),
        }
    }

    fn related(&self, recorder: &Recorder, body: Vec<u8>) {
        if let Sink::Tape(tap) = self {
            recorder.client_got(tap, body, false, false);
        }
    }
}

/// A call's stream whose items are recorded as they are read.
struct Taped {
    inner: Box<dyn MessageStream>,
    recorder: Recorder,
    sink: Sink,
}

impl MessageStream for Taped {
    fn poll_until(&mut self, wake: Instant) -> Result<Poll, Error> {
        let got = self.inner.poll_until(wake)?;
        match &got {
            Poll::Item(Item::Message(b)) => self.sink.related(&self.recorder, b.clone()),
            Poll::Item(Item::Final(b)) => self.sink.answer(&self.recorder, b.clone()),
            Poll::Idle | Poll::End => {}
        }
        Ok(got)
    }

    fn must_stream(&self) -> bool {
        self.inner.must_stream()
    }

    fn dropped(&mut self) -> u64 {
        self.inner.dropped()
    }

    fn park(&mut self) {
        self.inner.park();
    }

    fn unpark(&mut self, deadline: Instant) -> Result<(), Error> {
        self.inner.unpark(deadline)
    }
}

impl Upstream for Recorded {
    fn initialize(&self, call: Call<'_>) -> Result<(Binding, Reply), Error> {
        let at = Instant::now();
        let request = call.msg.to_vec();
        let (mut binding, reply) = self.inner.initialize(call)?;
        let token = self.next.fetch_add(1, Ordering::Relaxed);
        binding.tape = token;
        let opening = Opening {
            at,
            request,
            answer: None,
        };
        lock(&self.openings).put(token, opening);
        let reply = self.reply(reply, Sink::Opening(token, self.openings.clone()));
        Ok((binding, reply))
    }

    fn forward(&self, call: Call<'_>) -> Result<Reply, Error> {
        let Some(tap) = self.tap(call.session) else {
            return self.inner.forward(call);
        };
        let session = call.session;
        let at = Instant::now();
        let body = call.msg.to_vec();
        if call.msg.kind().ok() != Some(Kind::Request) {
            // Before it goes: its effect shows on other threads (a sampling answer).
            self.recorder.client_sent(&tap, at, body);
            return self.inner.forward(call);
        }
        let key = call.msg.id.as_deref().and_then(jsonrpc::id_key);
        let reply = self.inner.forward(call)?;
        let upstream_id = match (session, key) {
            (Some(s), Some(k)) => s.upstream_call_id(&k),
            _ => None,
        };
        let tap = tap.with_upstream_id(upstream_id);
        self.recorder.client_sent(&tap, at, body);
        Ok(self.reply(reply, Sink::Tape(tap)))
    }

    fn close(&self, session: &Session) {
        self.inner.close(session);
        // Released before it was attached (a failed opening, a probe): it has no tape.
        let unopened =
            session.binding.tape != 0 && lock(&self.openings).take(session.binding.tape).is_some();
        if !unopened {
            self.recorder.close_session(&session.id);
        }
    }

    fn attach(&self, session: &Arc<Session>) {
        self.inner.attach(session);
        let Some(o) = lock(&self.openings).take(session.binding.tape) else {
            return;
        };
        let principal = session.principal.as_deref();
        let era = &session.protocol_version;
        let Some(tap) = self
            .recorder
            .open_session(&session.id, era, principal, o.at)
        else {
            return;
        };
        self.recorder.client_sent(&tap, o.at, o.request);
        if let Some(answer) = o.answer {
            self.recorder.client_got(&tap, answer, true, false);
        }
    }

    fn listen(&self, session: &Arc<Session>) -> Result<(), Error> {
        self.inner.listen(session)
    }
}

impl Operate for Recorded {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    fn mode(&self) -> &'static str {
        self.inner.mode()
    }
    fn ready(&self) -> Result<(), String> {
        self.inner.ready()
    }
    fn shutdown(&self, grace: Duration) {
        self.inner.shutdown(grace);
        // Its tapes closed, written out and fsync'd.
        self.recorder.shutdown();
    }
    fn children(&self) -> Vec<ChildInfo> {
        self.inner.children()
    }
    fn pool(&self) -> Option<PoolInfo> {
        self.inner.pool()
    }
    fn exclusive_tools(&self) -> Option<ExclusiveInfo> {
        self.inner.exclusive_tools()
    }
    fn members(&self) -> Vec<MemberView> {
        self.inner.members()
    }
    fn replicas(&self) -> Vec<ReplicaInfo> {
        self.inner.replicas()
    }
    fn restart(&self, grace: Duration) -> Result<String, Error> {
        self.inner.restart(grace)
    }
    fn traffic(&self) -> Option<(u64, u64)> {
        self.inner.traffic()
    }
}

/// `up`, member `m`'s started upstream, recorded when its table has `record` (tapes named
/// after the table, `top`'s redaction rules and, where the table sets none, its
/// `--record-max-bytes` and `--record-keep`); else `up` itself.
pub fn wrap(
    m: &MemberConfig,
    up: Arc<dyn Upstream>,
    top: &TapeConfig,
    metrics: &Arc<Metrics>,
) -> Result<Arc<dyn Upstream>, Error> {
    let Some(r) = &m.record else {
        return Ok(up);
    };
    let cfg = TapeConfig {
        record: Some(r.dir.clone()),
        max_bytes: r.max_bytes.unwrap_or(top.max_bytes),
        keep: r.keep.unwrap_or(top.keep),
        ..top.clone()
    };
    let named = |e: Error| Error::Config(format!("upstream {}: record: {e}", m.name));
    let salt = tape::directory_salt(&r.dir).map_err(named)?;
    let redactor = Arc::new(Redactor::new(tape::rules(&top.redact, salt)?));
    let info = tape::format::Upstream {
        name: m.name.clone(),
        kind: up.kind().to_owned(),
        mode: up.mode().to_owned(),
    };
    let recorder = Recorder::start(&cfg, redactor, info, metrics.clone())?;
    log::info!(
        "upstream {}: recording tapes to {}",
        m.name,
        r.dir.display()
    );
    Ok(Arc::new(Recorded::new(up, recorder)))
}

/// Refuses two tables recording to one directory, or one to `--record`'s: each directory has
/// one writer (its files, salt and retention).
pub fn check_dirs(members: &[MemberConfig], top: &TapeConfig) -> Result<(), Error> {
    let mut seen: Vec<(&std::path::Path, &str)> = Vec::new();
    if let Some(d) = &top.record {
        seen.push((d, "--record"));
    }
    for m in members {
        let Some(r) = &m.record else { continue };
        if let Some((_, other)) = seen.iter().find(|(d, _)| *d == r.dir) {
            return Err(Error::Config(format!(
                "upstream {}: record {}: also {other}'s; give each its own directory",
                m.name,
                r.dir.display()
            )));
        }
        seen.push((&r.dir, &m.name));
    }
    Ok(())
}

#[cfg(test)]
#[path = "recorded_tests.rs"]
mod tests;
