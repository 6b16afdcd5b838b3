//! The stdio upstream in shared mode: a fixed set of persistent children.
//!
//! * `--stdio-children` children are spawned at start, without a shell. The proxy performs
//!   `initialize` + `notifications/initialized` with each child once, caches the result, and
//!   probes `server/discover` to learn whether the child also speaks 2026-07-28.
//! * A client's `initialize` is answered from that cache. **Version rule:** the answer carries
//!   the client's requested version when the proxy knows it (2024-11-05 … 2025-11-25) and it is
//!   not newer than what the child negotiated with the proxy; otherwise the child's version.
//!   So a client is never moved off a version it offered that the child supports.
//! * Each session is pinned to a child for its life: a plain session to the child with the
//!   fewest sessions among those hosting no capable session (one whose client declared
//!   `sampling`, `elicitation` or `roots`), a capable one to the child hosting the fewest plain
//!   sessions (`place`), so that exclusive calls (below) rarely hold up plain ones. Requests
//!   are rewritten by [`Child`] (ids, progress tokens) and answered on the caller's own channel.
//! * **Dispatch.** The proxy tells every child it can take `sampling`, `elicitation` (form and
//!   URL) and `roots`; each client gets only what it declared (`attribution.rs`). A request of
//!   a session that declared one of them, or asked for logs, is exclusive: it enters its
//!   child's gate (`gate.rs`) only while no other session's call is in flight there, so what
//!   the child says meanwhile is provably its own. So is a `tools/call` of an exclusive tool
//!   (`--stdio-exclusive-tools`, or learned: `exclusive.rs`), whoever calls it. Other requests
//!   share the child freely. Stateless requests are exclusive when their `_meta` client
//!   capabilities declare one, or when they call an exclusive tool.
//!   A bridged 2026-07-28 call waiting for its client's input is *parked* (`gate.rs`): shared
//!   requests use its child meanwhile, exclusive ones of other sessions still wait.
//! * A child that dies fails its calls at once (in [`Child`]); the supervisor thread restarts
//!   it with exponential backoff (100 ms doubling to 30 s, reset after 60 s healthy). Sessions
//!   pinned to the dead child get 404 on their next request, so their clients re-initialize.
//! * Modern requests (no session) go to the least busy live child that speaks 2026-07-28; if
//!   none does, the client gets a legacy-only 400 that makes dual-era clients fall back.
//! * `resources/subscribe` is tracked here, per session, and the child subscribed once per
//!   URI. What a session may hold is bounded: at most `--max-subscriptions` URIs (default 64),
//!   each at most [`MAX_SUBSCRIPTION_URI`] bytes; beyond, that request gets a JSON-RPC error
//!   (-32602) and nothing is stored or sent to the child.
//! * **Log levels are per session.** A session's `logging/setLevel` is recorded on the
//!   session and goes to the child as the lowest level any session pinned there asked for
//!   (one that never asked counts as `debug`), recomputed when sessions come and go; each
//!   session's `notifications/message` below its own level are dropped here (see
//!   [`Child`](super::child)). So no session can silence another. A stateless
//!   `logging/setLevel` gets -32601: the method does not exist in 2026-07-28, and it would
//!   set every session's level.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::unbounded;
use serde_json::Value;

use crate::bridge::modern_upstream;
use crate::config::StdioUpstreamConfig;
use crate::error::Error;
use crate::jsonrpc::{self, Kind, Message, RawObject};
use crate::metrics::{ExclusiveCause, Metrics};
use crate::session::{Binding, ClientCaps, LogLevel, Session};
use crate::upstream::stdio::attribution::{Caller, Throttle};
use crate::upstream::stdio::child::{Child, Program};
use crate::upstream::stdio::exclusive::ExclusiveTools;
use crate::upstream::stdio::gate::Ticket;
use crate::upstream::{Call, ChildInfo, ExclusiveInfo, Operate, Reply, Upstream};
use crate::util::{lock, read};

use super::call::{call_stream, cancel};
use super::modern_child;
use super::slots::{Control, Inner, PROXY_VERSION, Slot, release};
use super::supervisor::supervise;

use crate::jsonrpc::LEGACY_VERSIONS;

/// Longest resource URI a session may subscribe to, in bytes (`file://` and a 4 KiB path fit).
pub const MAX_SUBSCRIPTION_URI: usize = 8 * 1024;

/// Persistent stdio children shared by all sessions.
pub struct StdioUpstream {
    inner: Arc<Inner>,
    supervisor: Mutex<Option<JoinHandle<()>>>,
    /// `--max-subscriptions`: URIs one session may be subscribed to.
    max_subscriptions: usize,
    /// Held while a new session is placed and counted.
    placing: Mutex<()>,
    /// `--input-timeout`: a session-era client's time to answer an input round of a
    /// 2026-07-28-only child (`bridge::modern_upstream`).
    input_timeout: Duration,
}

impl StdioUpstream {
    /// Spawns and initializes `cfg.children` copies of `cfg.argv`. Fails if none comes up.
    /// Messages dropped instead of delivered are counted in `metrics`.
    ///
    /// Children are spawned by the supervisor thread, which lives as long as the upstream:
    /// the parent-death signal (see [`Child::spawn`]) is tied to the spawning thread.
    pub fn start(cfg: &StdioUpstreamConfig, metrics: Option<Arc<Metrics>>) -> Result<Self, Error> {
        let (program, children, max_message) = (Program::new(cfg), cfg.children, cfg.max_message);
        // Unbounded, yet bounded by what may be sent on it: see `Control`.
        let (control, rx) = unbounded();
        let inner = Arc::new(Inner {
            name: program.name().to_owned(),
            program,
            max_message,
            slots: (0..children).map(|_| Slot::new(cfg.queue)).collect(),
            control,
            stopping: AtomicBool::new(false),
            metrics,
            unowned: Throttle::default(),
            tools: ExclusiveTools::new(&cfg.exclusive_tools, cfg.learn_exclusive),
            listens: modern_child::Listens::default(),
        });
        let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
        let sup_inner = inner.clone();
        let supervisor = std::thread::Builder::new()
            .name("shadowcat-super".into())
            .spawn(move || supervise(&sup_inner, rx, ready_tx))
            .map_err(Error::Io)?;
        let started = ready_rx
            .recv()
            .unwrap_or_else(|_| Err(Error::Internal("supervisor died at start".into())));
        if let Err(e) = started {
            let _ = supervisor.join();
            return Err(e);
        }
        Ok(StdioUpstream {
            inner,
            supervisor: Mutex::new(Some(supervisor)),
            max_subscriptions: cfg.max_subscriptions,
            placing: Mutex::new(()),
            input_timeout: cfg.input_timeout,
        })
    }
}

impl Upstream for StdioUpstream {
    fn initialize(&self, call: Call<'_>) -> Result<(Binding, Reply), Error> {
        let inner = &self.inner;
        let caps = ClientCaps::of_initialize(&call.msg);
        // Placement reads and counts under one lock, so that sessions arriving together do
        // not all see the same counts.
        let placing = lock(&self.placing);
        let pick = place(inner, caps.any())
            .ok_or_else(|| Error::Unavailable(format!("no live {} child", inner.name)))?;
        let slot = &inner.slots[pick];
        let hs = read(&slot.handshake)
            .clone()
            .ok_or_else(|| Error::Unavailable("child not initialized".into()))?;
        let requested = call
            .msg
            .params_value()
            .and_then(|p| p.get("protocolVersion")?.as_str().map(str::to_owned))
            .unwrap_or_default();
        // A 2026-07-28-only child: the session era is the proxy's (`bridge::modern_upstream`).
        let version = negotiate(
            &requested,
            if hs.modern_only {
                PROXY_VERSION
            } else {
                &hs.version
            },
        );
        let mut result = hs.result.clone();
        result.insert("protocolVersion".into(), Value::String(version.to_owned()));
        let id = call.msg.id.as_deref().map(|i| i.get()).unwrap_or("null");
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"result":{}}}"#,
            Value::Object(result)
        );
        slot.sessions.fetch_add(1, Ordering::Relaxed);
        if caps.any() {
            slot.capable.fetch_add(1, Ordering::Relaxed);
        }
        drop(placing);
        let binding = Binding {
            child: pick,
            generation: slot.epoch.load(Ordering::Acquire),
            caps,
            modern_meta: hs
                .modern_only
                .then(|| modern_upstream::session_meta(&call.msg)),
            ..Binding::default()
        };
        Ok((binding, Reply::Message(body.into_bytes())))
    }

    fn forward(&self, call: Call<'_>) -> Result<Reply, Error> {
        let inner = &self.inner;
        let index = match call.session {
            Some(s) => {
                self.session_child(s)?;
                s.binding.child
            }
            None => self.stateless_slot()?,
        };
        let kind = call.msg.kind()?;
        if kind != Kind::Request {
            let child = match call.session {
                Some(s) => self.session_child(s)?,
                None => self.stateless_child(index)?,
            };
            match kind {
                Kind::Notification => match call.msg.method() {
                    // The proxy already initialized the child.
                    "notifications/initialized" => {}
                    "notifications/cancelled" => cancel(&child, call.session, &call.msg),
                    _ => child.send_message_deadline(&call.msg, call.deadline)?,
                },
                _ => {
                    if let Some(s) = call.session
                        && !(s.binding.modern_meta.is_some()
                            && modern_upstream::answer(&call.msg, s))
                    {
                        child.respond(call.msg, s, call.deadline)?;
                    }
                }
            }
            return Ok(Reply::Accepted);
        }
        if let Some(s) = call.session
            && let Some(meta) = &s.binding.modern_meta
        {
            return self.modern_session_call(s, meta, call);
        }
        let method = call.msg.method();
        if method == "logging/setLevel" && call.session.is_none() {
            let id = call.msg.id.clone().unwrap_or_else(jsonrpc::null);
            let text = "logging/setLevel does not exist in protocol revision 2026-07-28 \
                        (it would set the level of every session on the server)";
            return Ok(Reply::Message(jsonrpc::error_body(Some(&id), -32601, text)));
        }
        if call.session.is_none() && method == "subscriptions/listen" && !self.modern_only(index) {
            // A child that also speaks the session era is shared by sessions: its change
            // notifications carry no request id, so they cannot be told apart from a listen
            // call's, and a listen call in flight for good would keep every exclusive call off
            // the child. -32601 makes the bridge serve the listen over a session of its own
            // (`bridge::listen`), from the child's session-era notifications.
            let id = call.msg.id.clone().unwrap_or_else(jsonrpc::null);
            let text = "subscriptions/listen is served by the proxy for a shared stdio child";
            return Ok(Reply::Message(jsonrpc::error_body(Some(&id), -32601, text)));
        }
        if let Some(s) = call.session
            && (method == "resources/subscribe" || method == "resources/unsubscribe")
            && let Some(local) = self.subscription(s, &call.msg)
        {
            return Ok(local);
        }
        // Dispatch (`gate.rs`): a call whose client could be asked something, or asked for
        // logs, or that calls an exclusive tool, waits until no other session's call is in
        // flight on the child.
        let tool = inner.tools.exclusive(&call.msg);
        let (mut caller, cause) = match call.session {
            Some(s) => (
                Caller::session(s, s.binding.caps),
                if s.exclusive() {
                    Some(ExclusiveCause::Client)
                } else {
                    tool.then_some(ExclusiveCause::Tool)
                },
            ),
            None => {
                let caps = ClientCaps::of_meta(&call.msg);
                // A 2026-07-28-only child asks its clients in-band (MRTR), never with a
                // server-to-client request: its calls need not run alone for that.
                let in_band = self.modern_only(index);
                let cause = if caps.any() && !in_band {
                    Some(ExclusiveCause::Client)
                } else {
                    tool.then_some(ExclusiveCause::Tool)
                };
                (Caller::stateless(caps), cause)
            }
        };
        caller.learn = !tool && method == "tools/call" && inner.tools.learning();
        let exclusive = cause.map(|c| {
            if let Some(m) = &inner.metrics {
                m.exclusive_call(c);
            }
            match call.session {
                Some(s) => Arc::as_ptr(s) as usize as u64,
                None => STATELESS_KEY | NEXT_KEY.fetch_add(1, Ordering::Relaxed),
            }
        });
        let slot = inner.slots.get(index).ok_or(Error::UnknownSession)?;
        let ticket = slot.gate.enter(exclusive, call.deadline)?;
        // The child may have died, or been rolled, while the call waited.
        let child = match call.session {
            Some(s) => self.session_child(s)?,
            None => self.stateless_child(index)?,
        };
        if exclusive.is_some() {
            // Within SETTLE of a call that ended without its answer (a parked call that timed
            // out, say) nothing the child says is attributed: an exclusive call's own requests
            // would be refused. It waits out the rest (250 ms at most), holding its place.
            let left = child
                .settle_left()
                .min(call.deadline.saturating_duration_since(Instant::now()));
            if !left.is_zero() {
                std::thread::sleep(left);
            }
        }
        if method == "logging/setLevel" {
            return self.set_level(child, call, caller, ticket);
        }
        call_stream(child, call, caller, Some(ticket))
    }

    fn attach(&self, session: &Arc<Session>) {
        if let Some(slot) = self.inner.slots.get(session.binding.child) {
            {
                let mut m = lock(&slot.members);
                m.retain(|w| w.strong_count() > 0);
                m.push(Arc::downgrade(session));
            }
            // A session that never asked takes every level: the child may have to go down.
            self.inner.apply_level(session.binding.child, true);
        }
    }

    fn close(&self, session: &Session) {
        let Some(slot) = self.inner.slots.get(session.binding.child) else {
            return;
        };
        let _ = slot
            .sessions
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        if session.binding.caps.any() {
            let _ = slot
                .capable
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        }
        lock(&slot.members).retain(|w| w.upgrade().is_some_and(|s| s.id != session.id));
        self.inner.apply_level(session.binding.child, false);
        if let Some(child) = self.inner.live(session.binding.child) {
            child.forget_asks(&session.id);
        }
        let uris: Vec<String> = lock(&session.subscriptions).drain().collect();
        let epoch = slot.epoch.load(Ordering::Acquire);
        for uri in uris {
            if release(&slot.subscriptions, &uri) && epoch == session.binding.generation {
                self.inner.unsubscribe_child(session.binding.child, &uri);
            }
        }
    }

    /// A session of a 2026-07-28-only child opened its GET stream: the proxy's listen on the
    /// child carries its changes there (`modern_child`).
    fn listen(&self, session: &Arc<Session>) -> Result<(), Error> {
        if session.binding.modern_meta.is_some()
            && let Err(e) = self.inner.follow(session.binding.child, true)
        {
            // A child without `subscriptions/listen` still gets its GET stream, with nothing on it.
            log::debug!("{}: no listen for the GET stream: {e}", self.inner.name);
        }
        Ok(())
    }
}

impl Operate for StdioUpstream {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn kind(&self) -> &'static str {
        "stdio"
    }

    fn mode(&self) -> &'static str {
        "shared"
    }

    fn children(&self) -> Vec<ChildInfo> {
        self.inner
            .slots
            .iter()
            .enumerate()
            .map(|(index, s)| {
                let child = read(&s.child).clone();
                ChildInfo {
                    index,
                    pid: child.as_ref().map(|c| c.pid),
                    up: child.as_ref().is_some_and(|c| c.is_alive()),
                    age: child
                        .as_ref()
                        .map(|c| c.started.elapsed())
                        .unwrap_or_default(),
                    restarts: s.restarts.load(Ordering::Relaxed),
                    sessions: s.sessions.load(Ordering::Relaxed),
                    inflight: child.as_ref().map(|c| c.inflight()).unwrap_or(0),
                    last_error: lock(&s.last_error).clone(),
                }
            })
            .collect()
    }

    fn exclusive_tools(&self) -> Option<ExclusiveInfo> {
        Some(self.inner.tools.info())
    }

    fn restart(&self, grace: Duration) -> Result<String, Error> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.inner
            .control
            .send(Control::Roll(grace, tx))
            .map_err(|_| Error::Unavailable("supervisor stopped".into()))?;
        rx.recv()
            .map_err(|_| Error::Unavailable("supervisor stopped".into()))
    }

    fn ready(&self) -> Result<(), String> {
        let live = (0..self.inner.slots.len())
            .filter(|&i| self.inner.live(i).is_some())
            .count();
        if live == 0 {
            return Err(format!("no live {} child", self.inner.name));
        }
        Ok(())
    }

    fn shutdown(&self, grace: Duration) {
        let patience = grace.clamp(Duration::from_millis(100), Duration::from_secs(2));
        // Children first, politely; the supervisor's exit would SIGKILL them otherwise.
        self.inner.stopping.store(true, Ordering::Release);
        self.inner.stop_children(patience);
        let _ = self.inner.control.send(Control::Stop);
        if let Some(h) = lock(&self.supervisor).take() {
            let _ = h.join();
        }
        self.inner.stop_children(patience);
    }
}

impl Drop for StdioUpstream {
    fn drop(&mut self) {
        self.shutdown(Duration::from_millis(500));
    }
}

/// Marks an exclusive key as a stateless call's own (session keys are addresses, far below).
const STATELESS_KEY: u64 = 1 << 62;
/// The next stateless call's exclusive key.
static NEXT_KEY: AtomicU64 = AtomicU64::new(0);

impl StdioUpstream {
    /// The live child session `s` is pinned to; [`Error::UnknownSession`] if it died since
    /// (it took the session's state with it: the client must re-initialize).
    fn session_child(&self, s: &Session) -> Result<Arc<Child>, Error> {
        let slot = self
            .inner
            .slots
            .get(s.binding.child)
            .ok_or(Error::UnknownSession)?;
        if slot.epoch.load(Ordering::Acquire) != s.binding.generation {
            return Err(Error::UnknownSession);
        }
        self.inner
            .live(s.binding.child)
            .ok_or(Error::UnknownSession)
    }

    /// Where a stateless (2026-07-28) request goes: the live child that speaks 2026-07-28 with
    /// the fewest calls in flight, preferring one no exclusive call holds. If none speaks it,
    /// the client gets the legacy-only 400 that makes dual-era clients fall back.
    fn stateless_slot(&self) -> Result<usize, Error> {
        let inner = &self.inner;
        let modern = (0..inner.slots.len())
            .filter(|&i| {
                read(&inner.slots[i].handshake)
                    .as_ref()
                    .is_some_and(|h| h.modern)
            })
            .filter_map(|i| inner.live(i).map(|c| (i, c)))
            .min_by_key(|(i, c)| (inner.slots[*i].gate.closed(), c.inflight()));
        match modern {
            Some((i, _)) => Ok(i),
            None if (0..inner.slots.len()).any(|i| inner.live(i).is_some()) => {
                Err(Error::LegacyOnly)
            }
            None => Err(Error::Unavailable(format!("no live {} child", inner.name))),
        }
    }

    /// A session request to a 2026-07-28-only child (`bridge::modern_upstream`): answered
    /// here, or sent with the session's `_meta`.
    fn modern_session_call(
        &self,
        s: &Arc<Session>,
        meta: &Value,
        call: Call<'_>,
    ) -> Result<Reply, Error> {
        if matches!(
            call.msg.method(),
            "resources/subscribe" | "resources/unsubscribe"
        ) {
            return self.modern_subscription(s, &call.msg);
        }
        if let Some(reply) = modern_upstream::local(&call.msg, s)? {
            return Ok(reply);
        }
        let slot = self
            .inner
            .slots
            .get(s.binding.child)
            .ok_or(Error::UnknownSession)?;
        // Inputs are in-band, so exclusive only for an exclusive tool. Logs carry no request
        // id on stdio, so one reaches the call only when attribution proves it is the call's
        // (no other session's call in flight on the child); otherwise it is dropped and
        // counted (`unattributed`).
        let tool = self.inner.tools.exclusive(&call.msg);
        let exclusive = tool.then(|| {
            if let Some(m) = &self.inner.metrics {
                m.exclusive_call(ExclusiveCause::Tool);
            }
            Arc::as_ptr(s) as usize as u64
        });
        let ticket = slot.gate.enter(exclusive, call.deadline)?;
        let child = self.session_child(s)?;
        let mut caller = Caller::session(s, s.binding.caps);
        caller.learn = !tool && call.msg.method() == "tools/call" && self.inner.tools.learning();
        modern_child::session_call(
            child,
            s,
            meta,
            call,
            caller,
            Some(ticket),
            self.input_timeout,
        )
    }

    /// `resources/(un)subscribe` of a session on a 2026-07-28-only child: recorded as for any
    /// child (`subscription`); when the child's set of URIs changed, the proxy's listen on it
    /// follows (`modern_child`), and its updates reach the sessions subscribed.
    fn modern_subscription(&self, s: &Arc<Session>, msg: &Message) -> Result<Reply, Error> {
        let id = msg.id.clone().unwrap_or_else(jsonrpc::null);
        let has_uri = msg
            .params_value()
            .is_some_and(|p| p.get("uri").is_some_and(Value::is_string));
        if !has_uri {
            return Err(Error::InvalidParams("uri must be a string".into()));
        }
        if let Some(answer) = self.subscription(s, msg) {
            return Ok(answer);
        }
        self.inner.follow(s.binding.child, false)?;
        Ok(Reply::Message(jsonrpc::result_body(&id, "{}")))
    }

    /// True when child `index` speaks only 2026-07-28 (it refused `initialize`).
    fn modern_only(&self, index: usize) -> bool {
        self.inner
            .slots
            .get(index)
            .is_some_and(|sl| read(&sl.handshake).as_ref().is_some_and(|h| h.modern_only))
    }

    fn stateless_child(&self, index: usize) -> Result<Arc<Child>, Error> {
        self.inner
            .live(index)
            .ok_or_else(|| Error::Unavailable(format!("no live {} child", self.inner.name)))
    }

    /// `logging/setLevel` within a session: recorded on the session, and forwarded (so the
    /// child's own answer, or error, goes back) with the lowest level the child's sessions
    /// asked for in its place.
    fn set_level(
        &self,
        child: Arc<Child>,
        mut call: Call<'_>,
        caller: Caller,
        ticket: Ticket,
    ) -> Result<Reply, Error> {
        let id = call.msg.id.clone().unwrap_or_else(jsonrpc::null);
        let Some(s) = call.session else {
            return Err(Error::Internal("setLevel without a session".into()));
        };
        let mut params: RawObject = call
            .msg
            .params
            .as_ref()
            .and_then(|p| serde_json::from_str(p.get()).ok())
            .unwrap_or_default();
        let asked = params
            .get("level")
            .and_then(|l| serde_json::from_str::<String>(l.get()).ok())
            .and_then(|l| LogLevel::parse(&l));
        let Some(asked) = asked else {
            let text = "logging/setLevel: level must be one of debug, info, notice, warning, \
                        error, critical, alert, emergency";
            return Ok(Reply::Message(jsonrpc::error_body(Some(&id), -32602, text)));
        };
        s.set_log_level(asked);
        let Some(slot) = self.inner.slots.get(s.binding.child) else {
            return Err(Error::UnknownSession);
        };
        let level = {
            let mut current = lock(&slot.log_level);
            let level = self
                .inner
                .child_level(s.binding.child, *current)
                .unwrap_or(asked);
            *current = Some(level);
            level
        };
        params.insert(
            "level".into(),
            jsonrpc::raw(format!("\"{}\"", level.name())),
        );
        let text = serde_json::to_string(&params).map_err(|e| Error::Internal(e.to_string()))?;
        call.msg.params = Some(jsonrpc::raw(text));
        call_stream(child, call, caller, Some(ticket))
    }

    /// Tracks `resources/subscribe` and `unsubscribe` per session and subscribes the child
    /// once per URI. Returns the answer when the child need not be asked: a local success, or
    /// the refusal of a URI over [`MAX_SUBSCRIPTION_URI`] or past `--max-subscriptions`.
    fn subscription(&self, s: &Arc<Session>, msg: &Message) -> Option<Reply> {
        let slot = self.inner.slots.get(s.binding.child)?;
        let uri = msg
            .params_value()
            .and_then(|p| p.get("uri")?.as_str().map(str::to_owned))?;
        let id = msg.id.as_deref()?;
        let refuse = |why: &str| Some(Reply::Message(jsonrpc::error_body(Some(id), -32602, why)));
        let ask_child = if msg.method() == "resources/subscribe" {
            if uri.len() > MAX_SUBSCRIPTION_URI {
                return refuse(&format!(
                    "resource URI too long to subscribe to: {} bytes, at most {MAX_SUBSCRIPTION_URI}",
                    uri.len()
                ));
            }
            let mut mine = lock(&s.subscriptions);
            if mine.contains(&uri) {
                false
            } else if mine.len() >= self.max_subscriptions {
                return refuse(&format!(
                    "too many subscriptions: this session holds {}, at most {} \
                     (--max-subscriptions); unsubscribe first",
                    mine.len(),
                    self.max_subscriptions
                ));
            } else {
                mine.insert(uri.clone());
                drop(mine);
                let mut subs = lock(&slot.subscriptions);
                let n = subs.entry(uri).or_insert(0);
                *n += 1;
                *n == 1
            }
        } else if lock(&s.subscriptions).remove(&uri) {
            release(&slot.subscriptions, &uri)
        } else {
            false
        };
        if ask_child {
            None
        } else {
            Some(Reply::Message(jsonrpc::result_body(id, "{}")))
        }
    }
}

/// The live child a new session is pinned to. Sessions whose clients can be asked something
/// (`capable`: their calls are exclusive) are kept apart from the others where the children
/// allow it, so that plain sessions rarely wait for exclusive calls: a plain session goes to
/// the child with the fewest sessions among those hosting no capable session (if any does),
/// a capable one to a child no exclusive call holds right now if there is one (a call parked
/// for its client's input may hold one for `--input-timeout`: the era bridge opens a new
/// capable session rather than wait behind it), then to the child hosting the fewest plain
/// sessions, then the fewest capable ones.
fn place(inner: &Inner, capable: bool) -> Option<usize> {
    let load = |i: usize| {
        let slot = &inner.slots[i];
        let (all, c) = (
            slot.sessions.load(Ordering::Relaxed),
            slot.capable.load(Ordering::Relaxed),
        );
        (all.saturating_sub(c), c)
    };
    let live = (0..inner.slots.len()).filter(|&i| inner.live(i).is_some());
    if capable {
        live.min_by_key(|&i| (inner.slots[i].gate.closed(), load(i)))
    } else {
        live.min_by_key(|&i| {
            let (plain, c) = load(i);
            (c > 0, plain + c)
        })
    }
}

/// The version rule described in the module docs.
pub fn negotiate<'a>(requested: &'a str, child: &'a str) -> &'a str {
    if LEGACY_VERSIONS.contains(&requested) && requested <= child {
        requested
    } else {
        child
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_rule() {
        assert_eq!(negotiate("2025-06-18", "2025-11-25"), "2025-06-18");
        assert_eq!(negotiate("2025-11-25", "2025-11-25"), "2025-11-25");
        assert_eq!(negotiate("2025-11-25", "2025-06-18"), "2025-06-18");
        assert_eq!(negotiate("2099-01-01", "2025-11-25"), "2025-11-25");
        assert_eq!(negotiate("", "2025-03-26"), "2025-03-26");
    }
}
