//! The stdio upstream in shared mode: a fixed set of persistent children.
//!
//! * `--stdio-children` children are spawned at start, without a shell. The proxy performs
//!   `initialize` + `notifications/initialized` with each child once, caches the result, and
//!   probes `server/discover` to learn whether the child also speaks 2026-07-28.
//! * A client's `initialize` is answered from that cache. **Version rule:** the answer carries
//!   the client's requested version when the proxy knows it (2024-11-05 … 2025-11-25) and it is
//!   not newer than what the child negotiated with the proxy; otherwise the child's version.
//!   So a client is never moved off a version it offered that the child supports.
//! * Each session is pinned to the child with the fewest sessions. Requests are rewritten by
//!   [`Child`] (ids, progress tokens) and answered on the caller's own channel.
//! * A child that dies fails its calls at once (in [`Child`]); the supervisor thread restarts
//!   it with exponential backoff (100 ms doubling to 30 s, reset after 60 s healthy). Sessions
//!   pinned to the dead child get 404 on their next request, so their clients re-initialize.
//! * Modern requests (no session) go to the least busy live child that speaks 2026-07-28; if
//!   none does, the client gets a legacy-only 400 that makes dual-era clients fall back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, unbounded};
use serde_json::{Value, json};

use crate::config::StdioUpstreamConfig;
use crate::error::Error;
use crate::jsonrpc::{self, Kind, Message};
use crate::session::{Binding, Session};
use crate::upstream::stdio::child::{Child, Event, EventSink, Program, stop_in_background};
use crate::upstream::{Call, ChildInfo, Item, MessageStream, Poll, Reply, Upstream};
use crate::util::lock;

pub use crate::jsonrpc::LEGACY_VERSIONS;
/// The version the proxy asks children for.
const PROXY_VERSION: &str = "2025-11-25";
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
const HEALTHY_RESET: Duration = Duration::from_secs(60);

/// What the proxy learned from a child's handshake.
struct Handshake {
    /// The child's `initialize` result.
    result: serde_json::Map<String, Value>,
    /// The version it negotiated with the proxy.
    version: String,
    /// Whether `server/discover` listed 2026-07-28.
    modern: bool,
}

#[derive(Default)]
struct Slot {
    child: RwLock<Option<Arc<Child>>>,
    handshake: RwLock<Option<Arc<Handshake>>>,
    generation: AtomicU64,
    /// Bumped when the child crashes (not on a rolling restart): sessions pinned under an
    /// older epoch lost their state and get 404.
    epoch: AtomicU64,
    /// Crash restarts so far.
    restarts: AtomicU64,
    /// Why the child last went down.
    last_error: Mutex<Option<String>>,
    sessions: AtomicUsize,
    /// Sessions pinned here, for notifications that concern all or some of them.
    members: Mutex<Vec<Weak<Session>>>,
    /// Resource URI to the number of pinned sessions subscribed to it; the child itself is
    /// subscribed once, while the count is above zero.
    subscriptions: Mutex<HashMap<String, usize>>,
}

enum Control {
    Died(usize, u64),
    /// Rolling restart: replace each child after its calls drain (at most the grace).
    Roll(Duration, Sender<String>),
    ChildRequest(usize, u64, Message),
    Stop,
}

struct Inner {
    name: String,
    program: Program,
    max_message: usize,
    slots: Vec<Slot>,
    control: Sender<Control>,
    stopping: AtomicBool,
}

/// Persistent stdio children shared by all sessions.
pub struct StdioUpstream {
    inner: Arc<Inner>,
    supervisor: Mutex<Option<JoinHandle<()>>>,
}

impl StdioUpstream {
    /// Spawns and initializes `cfg.children` copies of `cfg.argv`. Fails if none comes up.
    ///
    /// Children are spawned by the supervisor thread, which lives as long as the upstream:
    /// the parent-death signal (see [`Child::spawn`]) is tied to the spawning thread.
    pub fn start(cfg: &StdioUpstreamConfig) -> Result<Self, Error> {
        let (program, children, max_message) = (Program::new(cfg), cfg.children, cfg.max_message);
        let (control, rx) = unbounded();
        let inner = Arc::new(Inner {
            name: program.name().to_owned(),
            program,
            max_message,
            slots: (0..children).map(|_| Slot::default()).collect(),
            control,
            stopping: AtomicBool::new(false),
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
        })
    }
}

impl Inner {
    /// Spawns the next generation of each slot in `slots` (on the calling thread, which must
    /// be the supervisor), then performs the handshakes in parallel and installs the children
    /// that succeeded.
    fn launch(self: &Arc<Self>, slots: &[usize]) -> Vec<Result<(), Error>> {
        let spawned: Vec<Result<Arc<Child>, Error>> = slots
            .iter()
            .map(|&i| {
                if self.stopping.load(Ordering::Acquire) {
                    return Err(Error::Unavailable("shutting down".into()));
                }
                let generation = self.slots[i].generation.load(Ordering::Acquire) + 1;
                Child::spawn(&self.program, i, generation, self.max_message, self.sink())
                    .map(Arc::new)
            })
            .collect();
        std::thread::scope(|s| {
            let handles: Vec<_> = spawned
                .into_iter()
                .map(|c| s.spawn(move || c.and_then(|c| self.install(c, false).map(drop))))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(Error::Internal("handshake panicked".into())))
                })
                .collect()
        })
    }

    /// Where a child's events go: requests nobody can own to the supervisor (which refuses
    /// them), notifications to the sessions they concern.
    fn sink(self: &Arc<Self>) -> EventSink {
        let control = self.control.clone();
        let inner = Arc::downgrade(self);
        Arc::new(move |index, generation, ev| {
            let msg = match ev {
                Event::Exited => Control::Died(index, generation),
                Event::Request(m) => Control::ChildRequest(index, generation, m),
                Event::Notification(m) => {
                    if let Some(inner) = inner.upgrade() {
                        inner.notify_sessions(index, &m);
                    }
                    return;
                }
            };
            let _ = control.send(msg);
        })
    }

    /// Routes a notification that no call in flight could take: list changes to every
    /// session on the child, resource updates to the sessions subscribed to that URI,
    /// anything else to the child's only session if it has just one. Each goes to the
    /// session's standalone (GET) stream, if the client opened one.
    fn notify_sessions(&self, index: usize, msg: &Message) {
        let Some(slot) = self.slots.get(index) else {
            return;
        };
        let members: Vec<Arc<Session>> = lock(&slot.members)
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        let method = msg.method();
        let targets: Vec<&Arc<Session>> = if method.ends_with("/list_changed") {
            members.iter().collect()
        } else if method == "notifications/resources/updated" {
            let uri = msg
                .params_value()
                .and_then(|p| p.get("uri")?.as_str().map(str::to_owned))
                .unwrap_or_default();
            members
                .iter()
                .filter(|s| lock(&s.subscriptions).contains(&uri))
                .collect()
        } else if members.len() == 1 {
            members.iter().collect()
        } else {
            log::debug!(
                "{}#{index}: {method} concerns no single session; dropped",
                self.name
            );
            Vec::new()
        };
        let bytes = msg.to_vec();
        for s in targets {
            if let Some(log) = s.streams.standalone_if_open() {
                log.push(&bytes);
            }
        }
    }

    /// Performs the handshake (stopping the child if it fails), re-subscribes the slot's
    /// resource URIs if asked, and makes the child its slot's current one. Returns the child
    /// it replaced.
    fn install(&self, child: Arc<Child>, resubscribe: bool) -> Result<Option<Arc<Child>>, Error> {
        let hs = match handshake(&child) {
            Ok(hs) => hs,
            Err(e) => {
                child.stop(Duration::from_millis(500));
                return Err(e);
            }
        };
        let slot = &self.slots[child.index];
        if resubscribe {
            let uris: Vec<String> = lock(&slot.subscriptions).keys().cloned().collect();
            for uri in uris {
                let v = json!({"jsonrpc":"2.0","id":0,"method":"resources/subscribe","params":{"uri":uri}});
                let _ = request(&child, &v);
            }
        }
        *write(&slot.handshake) = Some(Arc::new(hs));
        slot.generation.store(child.generation, Ordering::Release);
        Ok(write(&slot.child).replace(child))
    }

    fn stop_children(&self, patience: Duration) {
        std::thread::scope(|s| {
            for slot in &self.slots {
                let child = write(&slot.child).take();
                if let Some(c) = child {
                    s.spawn(move || c.stop(patience));
                }
            }
        });
    }

    fn live(&self, i: usize) -> Option<Arc<Child>> {
        read(&self.slots.get(i)?.child)
            .clone()
            .filter(|c| c.is_alive())
    }
}

/// `initialize`, `notifications/initialized`, then a `server/discover` probe.
fn handshake(child: &Child) -> Result<Handshake, Error> {
    let init = json!({
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {
            "protocolVersion": PROXY_VERSION,
            // Server-to-client requests are routed to the session that owns them.
            "capabilities": {"sampling": {}, "elicitation": {}},
            "clientInfo": {"name": "shadowcat", "version": env!("CARGO_PKG_VERSION")}
        }
    });
    let reply = request(child, &init)?;
    let result = match reply.get("result").and_then(Value::as_object) {
        Some(r) => r.clone(),
        None => {
            return Err(Error::UpstreamProtocol(format!(
                "{} refused initialize: {}",
                child.name(),
                reply.get("error").unwrap_or(&Value::Null)
            )));
        }
    };
    let version = result
        .get("protocolVersion")
        .and_then(Value::as_str)
        .unwrap_or(PROXY_VERSION)
        .to_owned();
    let note = Message::parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)?;
    child.send_message_deadline(&note, Instant::now() + HANDSHAKE_TIMEOUT)?;
    let discover = json!({
        "jsonrpc": "2.0", "id": 0, "method": "server/discover",
        "params": {"_meta": {
            jsonrpc::META_VERSION: "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "shadowcat", "version": env!("CARGO_PKG_VERSION")}
        }}
    });
    let modern = request(child, &discover)
        .ok()
        .and_then(|r| {
            r.get("result")?
                .get("supportedVersions")?
                .as_array()
                .cloned()
        })
        .is_some_and(|v| v.iter().any(|x| x == "2026-07-28"));
    log::info!(
        "{}: initialized, protocol {version}{}",
        child.name(),
        if modern { ", also 2026-07-28" } else { "" }
    );
    Ok(Handshake {
        result,
        version,
        modern,
    })
}

/// One proxy-originated request to a child, waiting for its response.
pub(crate) fn request(child: &Child, v: &Value) -> Result<Value, Error> {
    let msg = Message::parse(v.to_string().as_bytes())?;
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    let (id, rx) = child.call_deadline(msg, deadline, None)?;
    loop {
        match rx.recv_deadline(deadline) {
            Ok(Item::Final(bytes)) => {
                return serde_json::from_slice(&bytes).map_err(Error::Parse);
            }
            Ok(Item::Message(_)) => continue,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                child.cancel(id, "handshake timed out");
                return Err(Error::Timeout);
            }
            Err(_) => return Err(Error::ChildExited(child.name().to_owned())),
        }
    }
}

/// Starts the children, then restarts dead ones with backoff and answers server-to-client
/// requests, until told to stop.
fn supervise(inner: &Arc<Inner>, rx: Receiver<Control>, ready: Sender<Result<(), Error>>) {
    let n = inner.slots.len();
    let all: Vec<usize> = (0..n).collect();
    let mut backoff = vec![BACKOFF_MIN; n];
    let mut due: Vec<Option<Instant>> = vec![None; n];
    let mut started: Vec<Instant> = vec![Instant::now(); n];
    let mut first_error = None;
    for (i, r) in inner.launch(&all).into_iter().enumerate() {
        if let Err(e) = r {
            log::warn!("stdio upstream {}#{i} did not start: {e}", inner.name);
            due[i] = Some(Instant::now() + backoff[i]);
            first_error.get_or_insert(e);
        }
    }
    if due.iter().all(Option::is_some) {
        inner.stop_children(Duration::from_millis(200));
        let e = first_error.unwrap_or_else(|| Error::Unavailable("no child".into()));
        let _ = ready.send(Err(e));
        return;
    }
    let _ = ready.send(Ok(()));
    let mut reapers: Vec<JoinHandle<()>> = Vec::new();
    loop {
        let next = due.iter().flatten().min().copied();
        let wait = next
            .map(|t| t.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_secs(3600));
        match rx.recv_timeout(wait) {
            Ok(Control::Stop) | Err(RecvTimeoutError::Disconnected) => break,
            Ok(Control::Died(i, generation)) => {
                let slot = &inner.slots[i];
                if slot.generation.load(Ordering::Acquire) != generation {
                    continue;
                }
                slot.epoch.fetch_add(1, Ordering::AcqRel);
                slot.restarts.fetch_add(1, Ordering::Relaxed);
                let dead = write(&slot.child).take();
                if let Some(c) = dead {
                    *lock(&slot.last_error) =
                        Some(format!("exited after {}s", c.started.elapsed().as_secs()));
                    log::warn!("stdio upstream {} exited; restarting", c.name());
                    reapers.extend(stop_in_background(c));
                }
                if started[i].elapsed() >= HEALTHY_RESET {
                    backoff[i] = BACKOFF_MIN;
                }
                due[i] = Some(Instant::now() + backoff[i]);
            }
            Ok(Control::Roll(grace, reply)) => {
                let _ = reply.send(roll(inner, grace, &mut reapers));
            }
            Ok(Control::ChildRequest(i, generation, msg)) => {
                if inner.slots[i].generation.load(Ordering::Acquire) == generation {
                    refuse_child_request(inner, i, &msg);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
        }
        reapers.retain(|h| !h.is_finished());
        if inner.stopping.load(Ordering::Acquire) {
            break;
        }
        let now = Instant::now();
        let ready_now: Vec<usize> = (0..n)
            .filter(|&i| due[i].is_some_and(|t| t <= now))
            .collect();
        if ready_now.is_empty() {
            continue;
        }
        for (&i, r) in ready_now.iter().zip(inner.launch(&ready_now)) {
            match r {
                Ok(()) => {
                    due[i] = None;
                    started[i] = Instant::now();
                }
                Err(e) => {
                    log::warn!("restarting {}#{i} failed: {e}", inner.name);
                    due[i] = Some(Instant::now() + backoff[i]);
                }
            }
            backoff[i] = (backoff[i] * 2).min(BACKOFF_MAX);
        }
    }
    for r in reapers {
        let _ = r.join();
    }
}

/// Replaces each live child in turn (supervisor thread): spawn and initialize the new one,
/// re-subscribe what sessions subscribed to, swap it in for new calls, then stop the old one
/// once its calls in flight are done (at most `grace`). Sessions stay pinned: the epoch is
/// not bumped, because no session state was lost.
fn roll(inner: &Arc<Inner>, grace: Duration, reapers: &mut Vec<JoinHandle<()>>) -> String {
    let mut report = Vec::new();
    for i in 0..inner.slots.len() {
        let slot = &inner.slots[i];
        let Some(old) = read(&slot.child).clone() else {
            report.push(format!("#{i}: down, left to the restart backoff"));
            continue;
        };
        let generation = slot.generation.load(Ordering::Acquire) + 1;
        let fresh = Child::spawn(
            &inner.program,
            i,
            generation,
            inner.max_message,
            inner.sink(),
        )
        .map(Arc::new)
        .and_then(|c| {
            let pid = c.pid;
            inner.install(c, true).map(|_| pid)
        });
        let new_pid = match fresh {
            Ok(pid) => pid,
            Err(e) => {
                report.push(format!(
                    "#{i}: kept pid {} (replacement failed: {e})",
                    old.pid
                ));
                continue;
            }
        };
        // Calls that picked the old child just before the swap get there a moment later.
        std::thread::sleep(Duration::from_millis(20));
        let until = Instant::now() + grace;
        while old.inflight() > 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        report.push(format!("#{i}: pid {} -> {new_pid}", old.pid));
        reapers.extend(stop_in_background(old));
    }
    report.join("; ")
}

/// A server-to-client request no single session can own (calls from several sessions, or
/// none, in flight on the child): answer the child with an error at once rather than guess or
/// leave it waiting.
fn refuse_child_request(inner: &Inner, i: usize, msg: &Message) {
    let Some(child) = inner.live(i) else { return };
    log::warn!(
        "{}: server-to-client request {} refused: no single session has calls in flight",
        child.name(),
        msg.method()
    );
    child.refuse(
        msg.id.as_deref(),
        "shadowcat: cannot tell which client this request is for (shared child, \
         no single session with calls in flight)",
    );
}

impl Upstream for StdioUpstream {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn initialize(&self, call: Call<'_>) -> Result<(Binding, Reply), Error> {
        let inner = &self.inner;
        let pick = (0..inner.slots.len())
            .filter(|&i| inner.live(i).is_some())
            .min_by_key(|&i| inner.slots[i].sessions.load(Ordering::Relaxed))
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
        let version = negotiate(&requested, &hs.version);
        let mut result = hs.result.clone();
        result.insert("protocolVersion".into(), Value::String(version.to_owned()));
        let id = call.msg.id.as_deref().map(|i| i.get()).unwrap_or("null");
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"result":{}}}"#,
            Value::Object(result)
        );
        slot.sessions.fetch_add(1, Ordering::Relaxed);
        let binding = Binding {
            child: pick,
            generation: slot.epoch.load(Ordering::Acquire),
            ..Binding::default()
        };
        Ok((binding, Reply::Message(body.into_bytes())))
    }

    fn forward(&self, call: Call<'_>) -> Result<Reply, Error> {
        let inner = &self.inner;
        let child = match call.session {
            Some(s) => {
                let slot = inner
                    .slots
                    .get(s.binding.child)
                    .ok_or(Error::UnknownSession)?;
                if slot.epoch.load(Ordering::Acquire) != s.binding.generation {
                    return Err(Error::UnknownSession);
                }
                // A dead child took the session's state with it: the client must re-initialize.
                inner.live(s.binding.child).ok_or(Error::UnknownSession)?
            }
            None => {
                let modern = (0..inner.slots.len())
                    .filter(|&i| {
                        read(&inner.slots[i].handshake)
                            .as_ref()
                            .is_some_and(|h| h.modern)
                    })
                    .filter_map(|i| inner.live(i))
                    .min_by_key(|c| c.inflight());
                match modern {
                    Some(c) => c,
                    None if (0..inner.slots.len()).any(|i| inner.live(i).is_some()) => {
                        return Err(Error::LegacyOnly);
                    }
                    None => {
                        return Err(Error::Unavailable(format!("no live {} child", inner.name)));
                    }
                }
            }
        };
        let kind = call.msg.kind()?;
        if let (Kind::Request, Some(s)) = (kind, call.session) {
            let method = call.msg.method();
            if (method == "resources/subscribe" || method == "resources/unsubscribe")
                && let Some(local) = self.subscription(s, &call.msg)
            {
                return Ok(local);
            }
        }
        match kind {
            Kind::Request => call_stream(child, call),
            Kind::Notification => {
                match call.msg.method() {
                    // The proxy already initialized the child.
                    "notifications/initialized" => {}
                    "notifications/cancelled" => cancel(&child, call.session, &call.msg),
                    _ => child.send_message_deadline(&call.msg, call.deadline)?,
                }
                Ok(Reply::Accepted)
            }
            Kind::Response => {
                if let Some(s) = call.session {
                    child.respond(call.msg, s, call.deadline)?;
                }
                Ok(Reply::Accepted)
            }
        }
    }

    fn attach(&self, session: &Arc<Session>) {
        if let Some(slot) = self.inner.slots.get(session.binding.child) {
            let mut m = lock(&slot.members);
            m.retain(|w| w.strong_count() > 0);
            m.push(Arc::downgrade(session));
        }
    }

    fn close(&self, session: &Session) {
        let Some(slot) = self.inner.slots.get(session.binding.child) else {
            return;
        };
        let _ = slot
            .sessions
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        lock(&slot.members).retain(|w| w.upgrade().is_some_and(|s| s.id != session.id));
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

impl StdioUpstream {
    /// Tracks `resources/subscribe` and `unsubscribe` per session and subscribes the child
    /// once per URI. Returns the answer when the child need not be asked.
    fn subscription(&self, s: &Arc<Session>, msg: &Message) -> Option<Reply> {
        let slot = self.inner.slots.get(s.binding.child)?;
        let uri = msg
            .params_value()
            .and_then(|p| p.get("uri")?.as_str().map(str::to_owned))?;
        let id = msg.id.as_deref()?;
        let ask_child = if msg.method() == "resources/subscribe" {
            if !lock(&s.subscriptions).insert(uri.clone()) {
                false
            } else {
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

impl Inner {
    /// Tells child `i` nobody wants updates about `uri` any more (answer ignored).
    fn unsubscribe_child(&self, i: usize, uri: &str) {
        let Some(child) = self.live(i) else { return };
        let v =
            json!({"jsonrpc":"2.0","id":0,"method":"resources/unsubscribe","params":{"uri":uri}});
        if let Ok(msg) = Message::parse(v.to_string().as_bytes()) {
            let deadline = Instant::now() + Duration::from_secs(1);
            let _ = child.call_deadline(msg, deadline, None);
        }
    }
}

/// Drops one subscriber of `uri`; true when it was the last.
fn release(subs: &Mutex<HashMap<String, usize>>, uri: &str) -> bool {
    let mut subs = lock(subs);
    match subs.get_mut(uri) {
        Some(n) if *n > 1 => {
            *n -= 1;
            false
        }
        Some(_) => {
            subs.remove(uri);
            true
        }
        None => false,
    }
}

/// Sends request `call` to `child` and returns the stream of its messages.
pub(crate) fn call_stream(child: Arc<Child>, call: Call<'_>) -> Result<Reply, Error> {
    let client_id = call.msg.id.as_deref().map(|i| i.get().to_owned());
    let (id, rx) = child.call_deadline(call.msg, call.deadline, call.session.cloned())?;
    if let (Some(s), Some(cid)) = (call.session, &client_id) {
        s.begin_call(cid, id);
    }
    Ok(Reply::Stream(Box::new(ChildStream {
        rx,
        child,
        id,
        deadline: call.deadline,
        done: false,
        session: call.session.cloned(),
        client_id,
    })))
}

/// Translates a client's `notifications/cancelled` to the rewritten id and cancels the call.
pub(crate) fn cancel(child: &Child, session: Option<&Arc<Session>>, msg: &Message) {
    let (Some(s), Some(p)) = (session, msg.params_value()) else {
        return;
    };
    let Some(rid) = p.get("requestId") else {
        return;
    };
    if let Some(id) = s.upstream_call_id(&rid.to_string()) {
        let reason = p
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or("cancelled by client");
        child.cancel(id, reason);
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

/// The messages of one call on a child.
struct ChildStream {
    rx: Receiver<Item>,
    child: Arc<Child>,
    id: u64,
    deadline: Instant,
    done: bool,
    session: Option<Arc<Session>>,
    client_id: Option<String>,
}

impl MessageStream for ChildStream {
    fn poll_until(&mut self, wake: Instant) -> Result<Poll, Error> {
        if self.done {
            return Ok(Poll::End);
        }
        match self.rx.recv_deadline(wake.min(self.deadline)) {
            Ok(Item::Final(b)) => {
                self.done = true;
                Ok(Poll::Item(Item::Final(b)))
            }
            Ok(item) => Ok(Poll::Item(item)),
            Err(RecvTimeoutError::Timeout) if Instant::now() < self.deadline => Ok(Poll::Idle),
            Err(RecvTimeoutError::Timeout) => {
                self.done = true;
                self.child.cancel(self.id, "request timed out");
                Err(Error::Timeout)
            }
            Err(RecvTimeoutError::Disconnected) => {
                self.done = true;
                Err(Error::ChildExited(self.child.name().to_owned()))
            }
        }
    }
}

impl Drop for ChildStream {
    fn drop(&mut self) {
        if !self.done {
            // Abandoned mid-call (a stateless client left, or shutdown): nobody reads the
            // answer, so the child's pending entry must not outlive this stream.
            self.child.forget(self.id);
        }
        if let (Some(s), Some(cid)) = (&self.session, &self.client_id) {
            s.end_call(cid);
        }
    }
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
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
