//! The shared mode's state: a slot per child (its process, handshake, sessions and
//! subscriptions), the handshake itself, and what the supervisor is told. Both the upstream
//! (`shared.rs`) and its supervisor (`supervisor.rs`) build on it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use serde_json::{Value, json};

use super::call::{HANDSHAKE_TIMEOUT, request};
use super::modern_child::{Listens, discover_probe, hello_of, lists_modern, sorted};
use crate::error::Error;
use crate::jsonrpc::Message;
use crate::metrics::{DropReason, Metrics};
use crate::session::{LogLevel, Session};
use crate::upstream::stdio::attribution::{Caller, Throttle};
use crate::upstream::stdio::child::{Child, Event, EventSink, Program};
use crate::upstream::stdio::exclusive::ExclusiveTools;
use crate::upstream::stdio::gate::Gate;
use crate::upstream::stdio::queue::CONTROL_BACKLOG;
use crate::util::{lock, read, write};

/// The version the proxy asks children for.
pub(super) const PROXY_VERSION: &str = "2025-11-25";

/// What the proxy declares to shared children: every server-to-client request it routes
/// (`sampling`, `elicitation` in form and URL mode, `roots` with `listChanged`), so that a child
/// offers each client what it would offer it directly; each client is asked only for what it
/// declared (`attribution.rs`).
pub(super) fn child_capabilities() -> Value {
    json!({"sampling": {}, "elicitation": {"form": {}, "url": {}}, "roots": {"listChanged": true}})
}

/// What the proxy learned from a child's handshake.
pub(super) struct Handshake {
    /// The child's `initialize` result.
    pub(super) result: serde_json::Map<String, Value>,
    /// The version it negotiated with the proxy.
    pub(super) version: String,
    /// Whether `server/discover` listed 2026-07-28.
    pub(super) modern: bool,
    /// Whether the child speaks only 2026-07-28 (it refused `initialize`, and its
    /// `server/discover` lists 2026-07-28): `result` is then built from that discover answer,
    /// and the child gets no session-era traffic (no `initialized`, `logging/setLevel`,
    /// `resources/subscribe`).
    pub(super) modern_only: bool,
}

/// A child that refused `initialize` (`refusal`): a 2026-07-28-only child if its
/// `server/discover` lists 2026-07-28 (the handshake then carries an `initialize`-shaped result
/// made from that answer), else the refusal.
fn modern_only(child: &Child, refusal: &Value) -> Result<Handshake, Error> {
    let result = hello_of(child, refusal).ok_or_else(|| {
        Error::UpstreamProtocol(format!(
            "{} refused initialize: {}",
            child.name(),
            refusal.get("error").unwrap_or(&Value::Null)
        ))
    })?;
    Ok(Handshake {
        result,
        version: "2026-07-28".to_owned(),
        modern: true,
        modern_only: true,
    })
}

/// `initialize`, `notifications/initialized`, then a `server/discover` probe.
pub(super) fn handshake(child: &Child) -> Result<Handshake, Error> {
    let init = json!({
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {
            "protocolVersion": PROXY_VERSION,
            // Server-to-client requests go to the call they provably belong to, if its client
            // declared the capability (`attribution.rs`); so the child may ask for any of them.
            "capabilities": child_capabilities(),
            "clientInfo": {"name": "shadowcat", "version": env!("CARGO_PKG_VERSION")}
        }
    });
    let reply = request(child, &init)?;
    let result = match reply.get("result").and_then(Value::as_object) {
        Some(r) => r.clone(),
        None => return modern_only(child, &reply),
    };
    let version = result
        .get("protocolVersion")
        .and_then(Value::as_str)
        .unwrap_or(PROXY_VERSION)
        .to_owned();
    let note = Message::parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)?;
    child.send_message_deadline(&note, Instant::now() + HANDSHAKE_TIMEOUT)?;
    let modern = request(child, &discover_probe()).is_ok_and(|r| lists_modern(&r));
    log::info!(
        "{}: initialized, protocol {version}{}",
        child.name(),
        if modern { ", also 2026-07-28" } else { "" }
    );
    Ok(Handshake {
        result,
        version,
        modern,
        modern_only: false,
    })
}

pub(super) struct Slot {
    /// Admission of calls (`gate.rs`): exclusive calls run without other sessions' calls.
    pub(super) gate: Arc<Gate>,
    pub(super) child: RwLock<Option<Arc<Child>>>,
    pub(super) handshake: RwLock<Option<Arc<Handshake>>>,
    pub(super) generation: AtomicU64,
    /// Bumped when the child crashes (not on a rolling restart): sessions pinned under an
    /// older epoch lost their state and get 404.
    pub(super) epoch: AtomicU64,
    /// Crash restarts so far.
    pub(super) restarts: AtomicU64,
    /// Why the child last went down.
    pub(super) last_error: Mutex<Option<String>>,
    pub(super) sessions: AtomicUsize,
    /// Of those, sessions whose clients declared `sampling`, `elicitation` or `roots`.
    pub(super) capable: AtomicUsize,
    /// Sessions pinned here, for notifications that concern all or some of them.
    pub(super) members: Mutex<Vec<Weak<Session>>>,
    /// Resource URI to the number of pinned sessions subscribed to it; the child itself is
    /// subscribed once, while the count is above zero.
    pub(super) subscriptions: Mutex<HashMap<String, usize>>,
    /// The `logging/setLevel` level the proxy last gave the child (`None`: never, the child
    /// runs at its default): the lowest level any pinned session asked for (see
    /// [`Inner::child_level`]).
    pub(super) log_level: Mutex<Option<LogLevel>>,
}

/// What the supervisor is told, on an unbounded channel that is nevertheless bounded: `Died`
/// comes once per child generation, `Roll` once per admin call (which waits for its answer),
/// `Stop` once, and `ChildRequest` only while fewer than [`CONTROL_BACKLOG`] messages wait (see
/// [`Inner::sink`]). Clients cannot add to it directly: what they send goes to a child's stdin
/// (a bounded channel), never here. It is unbounded so that the reader thread's `Died` can
/// never block on it.
pub(super) enum Control {
    Died(usize, u64),
    /// Rolling restart: replace each child after its calls drain (at most the grace).
    Roll(Duration, Sender<String>),
    /// A child's request to refuse: slot, generation, the request, the error code and message,
    /// and how the refusal is counted.
    ChildRequest(usize, u64, Message, i64, String, DropReason),
    Stop,
}

impl Slot {
    /// An empty slot whose gate lets at most `max_waiting` calls wait.
    pub(super) fn new(max_waiting: usize) -> Slot {
        Slot {
            gate: Gate::new(max_waiting),
            child: RwLock::default(),
            handshake: RwLock::default(),
            generation: AtomicU64::default(),
            epoch: AtomicU64::default(),
            restarts: AtomicU64::default(),
            last_error: Mutex::default(),
            sessions: AtomicUsize::default(),
            capable: AtomicUsize::default(),
            members: Mutex::default(),
            subscriptions: Mutex::default(),
            log_level: Mutex::default(),
        }
    }
}

pub(super) struct Inner {
    pub(super) name: String,
    pub(super) program: Program,
    pub(super) max_message: usize,
    pub(super) slots: Vec<Slot>,
    pub(super) control: Sender<Control>,
    pub(super) stopping: AtomicBool,
    /// Where dropped messages are counted.
    pub(super) metrics: Option<Arc<Metrics>>,
    /// Warnings about messages nobody provably owns: at most one a second.
    pub(super) unowned: Throttle,
    /// Tools whose calls are exclusive whoever calls them, configured and learned.
    pub(super) tools: ExclusiveTools,
    /// The proxy's own `subscriptions/listen` on each 2026-07-28-only child (by slot): its
    /// sessions' GET streams and resource subscriptions (`modern_child`).
    pub(super) listens: Listens,
}

impl Inner {
    /// Spawns the next generation of each slot in `slots` (on the calling thread, which must
    /// be the supervisor), then performs the handshakes in parallel and installs the children
    /// that succeeded.
    pub(super) fn launch(self: &Arc<Self>, slots: &[usize]) -> Vec<Result<(), Error>> {
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
    /// them; past [`CONTROL_BACKLOG`] waiting they are dropped unanswered), notifications to
    /// the sessions they concern. Runs on the child's reader thread: never blocks.
    pub(super) fn sink(self: &Arc<Self>) -> EventSink {
        let control = self.control.clone();
        let inner = Arc::downgrade(self);
        Arc::new(move |index, generation, ev| {
            let msg = match ev {
                Event::Exited => Control::Died(index, generation),
                Event::Request { .. } if control.len() >= CONTROL_BACKLOG => {
                    log::debug!("child #{index}: request dropped, {CONTROL_BACKLOG} waiting");
                    return;
                }
                Event::Request {
                    msg,
                    code,
                    why,
                    reason,
                } => Control::ChildRequest(index, generation, msg, code, why, reason),
                Event::Notification(m) => {
                    if let Some(inner) = inner.upgrade() {
                        inner.notify_sessions(index, &m);
                    }
                    return;
                }
                Event::Dropped(why) => {
                    if let Some(inner) = inner.upgrade() {
                        inner.dropped(why);
                    }
                    return;
                }
                Event::Observed { params, logged } => {
                    if let Some(inner) = inner.upgrade() {
                        inner.tools.observe(&params, logged);
                    }
                    return;
                }
            };
            let _ = control.send(msg);
        })
    }

    /// Counts a message dropped instead of delivered.
    pub(super) fn dropped(&self, why: DropReason) {
        if let Some(m) = &self.metrics {
            m.dropped(why, 1);
        }
    }

    /// Routes a notification that no call in flight could take: list changes to every
    /// session on the child, resource updates to the sessions subscribed to that URI, each to
    /// the session's standalone (GET) stream if the client opened one. Anything else (logs,
    /// progress for no known call) belongs to no session provably, not even to the child's
    /// only one (a stateless call or an earlier one may have caused it): dropped and counted.
    pub(super) fn notify_sessions(&self, index: usize, msg: &Message) {
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
        } else {
            self.dropped(DropReason::Unattributed);
            if let Some(held) = self.unowned.pass() {
                log::warn!(
                    "{}#{index}: {} belongs to no request or session provably: dropped \
                     ({held} more since the last warning; see \
                     shadowcat_dropped_messages_total{{reason=\"unattributed\"}})",
                    self.name,
                    crate::util::Escaped(method)
                );
            }
            return;
        };
        let bytes = msg.to_vec();
        for s in targets {
            s.noted(method);
            if let Some(log) = s.streams.standalone_if_open() {
                log.push(&bytes);
            }
        }
    }

    /// Performs the handshake (stopping the child if it fails), re-subscribes the slot's
    /// resource URIs if asked, and makes the child its slot's current one. Returns the child
    /// it replaced.
    pub(super) fn install(
        &self,
        child: Arc<Child>,
        resubscribe: bool,
    ) -> Result<Option<Arc<Child>>, Error> {
        let hs = match handshake(&child) {
            Ok(hs) => hs,
            Err(e) => {
                child.stop(Duration::from_millis(500));
                return Err(e);
            }
        };
        let slot = &self.slots[child.index];
        let modern_only = hs.modern_only;
        if resubscribe && !modern_only {
            let uris: Vec<String> = lock(&slot.subscriptions).keys().cloned().collect();
            for uri in uris {
                let v = json!({"jsonrpc":"2.0","id":0,"method":"resources/subscribe","params":{"uri":uri}});
                let _ = request(&child, &v);
            }
        }
        if resubscribe {
            // Same sessions, new process: it starts at its default level.
            let level = *lock(&slot.log_level);
            if let Some(level) = level {
                let _ = request(&child, &set_level(level));
            }
        } else {
            // A crash ended the sessions that asked.
            *lock(&slot.log_level) = None;
        }
        *write(&slot.handshake) = Some(Arc::new(hs));
        slot.generation.store(child.generation, Ordering::Release);
        let index = child.index;
        let old = write(&slot.child).replace(child);
        if resubscribe && modern_only && !lock(&slot.subscriptions).is_empty() {
            // Same sessions, new process: the proxy's listen follows them there.
            if let Err(e) = self.follow(index, false) {
                log::warn!("{}: resource subscriptions not renewed: {e}", self.name);
            }
        }
        Ok(old)
    }

    /// Makes the proxy's listen on 2026-07-28-only child `i` carry the resource URIs its
    /// sessions subscribed to (`only_if_closed`: just make sure one is open, as a GET does).
    pub(super) fn follow(&self, i: usize, only_if_closed: bool) -> Result<(), Error> {
        let child = self
            .live(i)
            .ok_or_else(|| Error::Unavailable(format!("no live {} child", self.name)))?;
        let slot = self.slots.get(i).ok_or(Error::UnknownSession)?;
        let uris = sorted(lock(&slot.subscriptions).keys().cloned());
        self.listens.follow(i, &child, uris, only_if_closed)
    }

    pub(super) fn stop_children(&self, patience: Duration) {
        std::thread::scope(|s| {
            for slot in &self.slots {
                let child = write(&slot.child).take();
                if let Some(c) = child {
                    s.spawn(move || c.stop(patience));
                }
            }
        });
    }

    pub(super) fn live(&self, i: usize) -> Option<Arc<Child>> {
        read(&self.slots.get(i)?.child)
            .clone()
            .filter(|c| c.is_alive())
    }
}

impl Inner {
    /// Tells child `i` nobody wants updates about `uri` any more (answer ignored).
    pub(super) fn unsubscribe_child(&self, i: usize, uri: &str) {
        let modern_only = self
            .slots
            .get(i)
            .is_some_and(|sl| read(&sl.handshake).as_ref().is_some_and(|h| h.modern_only));
        if modern_only {
            // No session era on the child: its listen no longer carries the URI.
            if let Err(e) = self.follow(i, false) {
                log::debug!("{}: listen not narrowed: {e}", self.name);
            }
            return;
        }
        let Some(child) = self.live(i) else { return };
        let v =
            json!({"jsonrpc":"2.0","id":0,"method":"resources/unsubscribe","params":{"uri":uri}});
        if let Ok(msg) = Message::parse(v.to_string().as_bytes()) {
            let deadline = Instant::now() + Duration::from_secs(1);
            let _ = child.call_deadline(msg, deadline, Caller::internal());
        }
    }
}

impl Inner {
    /// The level child `i` should run at: the lowest any pinned session asked for, a session
    /// that never asked counting as `debug` (it takes whatever comes), since the proxy filters
    /// each session's messages by its own level. `current` is the level the child was last
    /// given: `None` (leave the child at its default) while no session ever asked.
    pub(super) fn child_level(&self, i: usize, current: Option<LogLevel>) -> Option<LogLevel> {
        let slot = self.slots.get(i)?;
        let levels: Vec<Option<LogLevel>> = lock(&slot.members)
            .iter()
            .filter_map(Weak::upgrade)
            .map(|s| s.log_level())
            .collect();
        if current.is_none() && levels.iter().all(Option::is_none) {
            return None;
        }
        Some(
            levels
                .into_iter()
                .map(|l| l.unwrap_or(LogLevel::Debug))
                .min()
                .unwrap_or(LogLevel::Debug),
        )
    }

    /// Recomputes child `i`'s level after its sessions changed (`joined`: a new session, which
    /// never asked yet), and tells the child when it moved (answer not awaited; waits at most
    /// 1 s to write). Costs one lock while no session ever asked for a level.
    pub(super) fn apply_level(&self, i: usize, joined: bool) {
        let Some(slot) = self.slots.get(i) else {
            return;
        };
        let want = {
            let mut current = lock(&slot.log_level);
            let want = match *current {
                // Nobody asked, or the child already sends everything a newcomer takes.
                None => return,
                Some(LogLevel::Debug) if joined => return,
                Some(_) if joined => Some(LogLevel::Debug),
                Some(_) => self.child_level(i, *current),
            };
            if want == *current {
                return;
            }
            *current = want;
            want
        };
        let (Some(level), Some(child)) = (want, self.live(i)) else {
            return;
        };
        if let Ok(msg) = Message::parse(set_level(level).to_string().as_bytes()) {
            let deadline = Instant::now() + Duration::from_secs(1);
            let _ = child.call_deadline(msg, deadline, Caller::internal());
        }
    }
}

/// The proxy's own `logging/setLevel` request.
fn set_level(level: LogLevel) -> Value {
    json!({"jsonrpc":"2.0","id":0,"method":"logging/setLevel","params":{"level":level.name()}})
}

/// Drops one subscriber of `uri`; true when it was the last.
pub(super) fn release(subs: &Mutex<HashMap<String, usize>>, uri: &str) -> bool {
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
