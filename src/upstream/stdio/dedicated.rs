//! The stdio upstream in per-session mode (`--stdio-mode per-session`): one dedicated child
//! per session, for stateful servers (browsers, filesystems) whose state must not be shared.
//!
//! * A keeper thread holds `--stdio-spares` (default 2) warm spares: spawned, and proven to be
//!   reading stdin by answering a `ping` (any answer counts). A client's `initialize` takes a
//!   spare, so it never waits for a spawn while one is left, and is forwarded to it
//!   **verbatim**: the child sees the real client's version and capabilities.
//! * At most `--stdio-children` children exist (spares included, default 16 in this mode).
//!   When all are taken by sessions, `initialize` **evicts** the session unused longest, if it
//!   was unused for at least `--session-evict-idle` (default 60 s) and has no call in flight:
//!   its child is stopped, its streams end, and its client's next request gets 404, so it
//!   re-initializes (as the spec allows a server to end a session). Clients that leave without
//!   a DELETE (many do) so hold a child for a minute, not for `--session-idle`. When no session
//!   qualifies, `initialize` gets 503 with `Retry-After`: the seconds until the first one would.
//!   Evictions are counted in `shadowcat_sessions_evicted_total`.
//! * The child is stopped when its session ends (DELETE, idle expiry) or the proxy stops;
//!   spares are replenished in the background. A child that dies takes its session with it:
//!   the next request gets 404 and the client re-initializes.
//! * Everything the child sends outside a call (server-to-client requests, notifications)
//!   belongs to its one session and goes to that session's standalone stream.
//! * The keeper spawns every child, because the parent-death signal is tied to the spawning
//!   thread (see [`Child::spawn`]).
//! * **Memory:** every child's pipes are served by one I/O thread (`reactor.rs`): no thread
//!   per child, so an idle session with its child costs the proxy 6–7 KiB (it cost
//!   59–61 KiB with three threads per child; `scripts/cost memory`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded, unbounded};
use serde_json::json;

use crate::config::StdioUpstreamConfig;
use crate::error::Error;
use crate::jsonrpc::{Kind, Message};
use crate::metrics::Metrics;
use crate::session::{Binding, ClientCaps, Session};
use crate::upstream::stdio::attribution::Caller;
use crate::upstream::stdio::call::{call_stream, cancel, request};
use crate::upstream::stdio::child::{Child, Event, EventSink, Io, Program, stop_in_background};
use crate::upstream::stdio::modern_child::{self, discover_probe, lists_modern};
use crate::upstream::stdio::queue::CONTROL_BACKLOG;
use crate::upstream::stdio::reactor::Reactor;
use crate::upstream::stdio::shared::{MAX_SUBSCRIPTION_URI, negotiate};
use crate::upstream::stdio::slots::PROXY_VERSION;
use crate::upstream::{Call, ChildInfo, Operate, Reply, Upstream};
use crate::util::lock;

const RETRY_SPAWN: Duration = Duration::from_millis(500);

enum Control {
    /// Spares may need replenishing.
    Replenish,
    /// A session needs a child now and no spare was left: spawn one and hand it over.
    Urgent(Sender<Result<Arc<Child>, Error>>),
    /// Stop this child (its session ended) and give its room back.
    Retire(Arc<Child>),
    /// Stop this child, whose room was given back already (its session was evicted).
    Reap(Arc<Child>),
    Died(usize),
    ChildRequest(usize, Message),
    Stop,
}

struct Inner {
    name: String,
    program: Program,
    max_message: usize,
    max_children: usize,
    spares_wanted: usize,
    spares: Mutex<Vec<Arc<Child>>>,
    /// Children given to sessions, by child index.
    assigned: Mutex<HashMap<usize, Assigned>>,
    /// Children being spawned or warmed right now.
    starting: AtomicUsize,
    /// Children that exist or are reserved (spares, assigned, starting): never above
    /// `max_children`, because a slot is reserved before every spawn.
    used: AtomicUsize,
    next_index: AtomicUsize,
    control: Sender<Control>,
    stopping: AtomicBool,
    /// `--session-evict-idle`.
    evict_idle: Duration,
    /// Where evictions are counted.
    metrics: Option<Arc<Metrics>>,
    /// The one thread doing every child's I/O (`reactor.rs`): an idle session costs no thread.
    reactor: Arc<Reactor>,
    /// What the children were found to speak for 2026-07-28 (stateless) requests.
    stateless: Mutex<Stateless>,
    /// Set once a child refused a session's `initialize` as a 2026-07-28-only child does: the
    /// `initialize` result made from its `server/discover`, which answers every later session
    /// (`modern_child`, issue #13 part B).
    modern_hello: OnceLock<serde_json::Map<String, serde_json::Value>>,
    /// `--input-timeout`: a session-era client's time to answer an input round of a
    /// 2026-07-28-only child.
    input_timeout: Duration,
    /// The proxy's own `subscriptions/listen` on each 2026-07-28-only child (by child index):
    /// its session's GET stream and resource subscriptions.
    listens: modern_child::Listens,
    /// `--max-subscriptions`.
    max_subscriptions: usize,
}

/// Whether the children speak 2026-07-28, learned from the first stateless request: a child
/// is taken and probed with `server/discover`.
#[derive(Clone, Copy)]
enum Stateless {
    /// Not probed yet.
    Unknown,
    /// Session era only: stateless requests get [`Error::LegacyOnly`] (the bridge opens
    /// sessions instead).
    Legacy,
    /// 2026-07-28: stateless requests share this child (index in `assigned`, bound to no
    /// session, never evicted); a new one is taken if it died.
    Modern(usize),
}

struct Assigned {
    child: Arc<Child>,
    session: Weak<Session>,
}

/// One child per session.
pub struct DedicatedUpstream {
    inner: Arc<Inner>,
    keeper: Mutex<Option<JoinHandle<()>>>,
}

impl DedicatedUpstream {
    /// Starts the keeper and waits until the first spare is warm (or fails to be). Evictions
    /// are counted in `metrics`.
    pub fn start(cfg: &StdioUpstreamConfig, metrics: Option<Arc<Metrics>>) -> Result<Self, Error> {
        let (program, max_children, max_message) =
            (Program::new(cfg), cfg.children, cfg.max_message);
        let spares = cfg.mode.spares().unwrap_or(0);
        // Unbounded so that a reader thread's `Died` never blocks, but bounded in practice:
        // one message per session start or end (sessions are capped), per child death and
        // per shutdown, and child requests only below `CONTROL_BACKLOG` (see `sink`).
        let (control, rx) = unbounded();
        let inner = Arc::new(Inner {
            name: program.name().to_owned(),
            program,
            max_message,
            max_children,
            spares_wanted: spares.min(max_children),
            spares: Mutex::new(Vec::new()),
            assigned: Mutex::new(HashMap::new()),
            starting: AtomicUsize::new(0),
            used: AtomicUsize::new(0),
            next_index: AtomicUsize::new(0),
            control,
            stopping: AtomicBool::new(false),
            evict_idle: cfg.evict_idle,
            metrics,
            reactor: Reactor::start()?,
            stateless: Mutex::new(Stateless::Unknown),
            modern_hello: OnceLock::new(),
            input_timeout: cfg.input_timeout,
            listens: modern_child::Listens::default(),
            max_subscriptions: cfg.max_subscriptions,
        });
        let (ready_tx, ready_rx) = bounded(1);
        let k = inner.clone();
        let keeper = std::thread::Builder::new()
            .name("shadowcat-keeper".into())
            .spawn(move || keep(&k, rx, ready_tx))
            .map_err(Error::Io)?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(DedicatedUpstream {
                inner,
                keeper: Mutex::new(Some(keeper)),
            }),
            Ok(Err(e)) => {
                let _ = keeper.join();
                Err(e)
            }
            Err(_) => {
                let _ = keeper.join();
                Err(Error::Internal("keeper died at start".into()))
            }
        }
    }
}

impl Inner {
    /// Spawns and warms one child (keeper thread only).
    fn spawn_warm(self: &Arc<Self>) -> Result<Arc<Child>, Error> {
        let index = self.next_index.fetch_add(1, Ordering::Relaxed);
        let child = Arc::new(Child::spawn_with(
            &self.program,
            index,
            0,
            self.max_message,
            self.sink(),
            Io::Reactor(&self.reactor),
        )?);
        let ping = json!({"jsonrpc": "2.0", "id": 0, "method": "ping"});
        // `request` gives up after the handshake timeout (30 s).
        if let Err(e) = request(&child, &ping) {
            child.stop(Duration::from_millis(500));
            return Err(e);
        }
        Ok(child)
    }

    fn sink(self: &Arc<Self>) -> EventSink {
        let control = self.control.clone();
        let inner = Arc::downgrade(self);
        Arc::new(move |index, _generation, ev| {
            let msg = match ev {
                Event::Exited => Control::Died(index),
                Event::Request { .. } if control.len() >= CONTROL_BACKLOG => {
                    log::debug!("child #{index}: request dropped, {CONTROL_BACKLOG} waiting");
                    return;
                }
                // No call in flight may take it, but the child has one session: its own.
                Event::Request { msg, .. } => Control::ChildRequest(index, msg),
                Event::Notification(m) => {
                    if let Some(s) = inner.upgrade().and_then(|i| i.session_of(index)) {
                        s.noted(m.method());
                        if let Some(log) = s.streams.standalone_if_open() {
                            log.push(&m.to_vec());
                        }
                    }
                    return;
                }
                // Sessions here never record a level (the child is theirs alone), so nothing
                // is dropped for one.
                Event::Dropped(_) => return,
                // Nothing to learn: a dedicated child's calls never share it.
                Event::Observed { .. } => return,
            };
            let _ = control.send(msg);
        })
    }

    fn session_of(&self, index: usize) -> Option<Arc<Session>> {
        lock(&self.assigned).get(&index)?.session.upgrade()
    }

    /// Reserves room for one more child; false at the cap.
    fn reserve(&self) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_children).then_some(n + 1)
            })
            .is_ok()
    }

    /// Gives back the room of a child that is gone (or was never spawned).
    fn release(&self) {
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    /// Makes room by ending the session unused longest, if it was unused for `--session-evict-idle`
    /// and has no call in flight: its child is stopped (its room given back at once), its
    /// streams end, and the session is marked evicted so that its client's next request gets
    /// 404. Otherwise `Err` with the whole seconds (at least 1) until some session would
    /// qualify if it stays unused.
    fn evict(&self) -> Result<(), u64> {
        let mut assigned = lock(&self.assigned);
        let idle: Vec<(usize, Arc<Session>)> = assigned
            .iter()
            .filter_map(|(&i, a)| a.session.upgrade().map(|s| (i, s)))
            .collect();
        let victim = idle
            .iter()
            .filter(|(_, s)| s.inflight() == 0 && s.idle_for() >= self.evict_idle)
            .max_by_key(|(_, s)| s.idle_for());
        let Some((index, session)) = victim else {
            // A session with a call in flight qualifies no sooner than one unused from now.
            let soonest = idle
                .iter()
                .map(|(_, s)| {
                    if s.inflight() > 0 {
                        self.evict_idle
                    } else {
                        self.evict_idle.saturating_sub(s.idle_for())
                    }
                })
                .min()
                .unwrap_or(self.evict_idle);
            let secs = soonest.as_secs() + u64::from(soonest.subsec_nanos() > 0);
            return Err(secs.max(1));
        };
        let Some(gone) = assigned.remove(index) else {
            return Err(1);
        };
        drop(assigned);
        session.evict();
        session.streams.end_all();
        log::info!(
            "per-session upstream {}: session {} evicted (unused {} s) to make room",
            self.name,
            session.short_id(),
            session.idle_for().as_secs()
        );
        if let Some(m) = &self.metrics {
            m.session_evicted();
        }
        self.release();
        let _ = self.control.send(Control::Reap(gone.child));
        Ok(())
    }

    /// A server-to-client request outside a call: it belongs to the child's session.
    fn route_request(&self, index: usize, msg: Message) {
        let target = {
            let a = lock(&self.assigned);
            a.get(&index)
                .map(|x| (x.child.clone(), x.session.upgrade()))
        };
        let Some((child, session)) = target else {
            return;
        };
        let log = session
            .as_ref()
            .and_then(|s| s.streams.standalone_if_open().map(|l| (s.clone(), l)));
        match log {
            Some((s, log)) => {
                let msg = child.adopt_request(msg, &s);
                log.push(&msg.to_vec());
            }
            None => {
                child.refuse(
                    msg.id.as_deref(),
                    -32603,
                    "shadowcat: the client has no open stream to take this request",
                );
            }
        }
    }
}

/// The keeper: keeps spares warm, spawns on demand, retires and reaps children.
fn keep(inner: &Arc<Inner>, rx: Receiver<Control>, ready: Sender<Result<(), Error>>) {
    let mut ready = Some(ready);
    let mut reapers: Vec<JoinHandle<()>> = Vec::new();
    let mut retry_at: Option<Instant> = Some(Instant::now());
    loop {
        // Top up the spares first.
        if retry_at.is_some_and(|t| t <= Instant::now()) {
            retry_at = None;
            while !inner.stopping.load(Ordering::Acquire)
                && lock(&inner.spares).len() < inner.spares_wanted
                && inner.reserve()
            {
                inner.starting.fetch_add(1, Ordering::AcqRel);
                let spawned = inner.spawn_warm();
                inner.starting.fetch_sub(1, Ordering::AcqRel);
                if spawned.is_err() {
                    inner.release();
                }
                match spawned {
                    Ok(c) => {
                        lock(&inner.spares).push(c);
                        if let Some(r) = ready.take() {
                            let _ = r.send(Ok(()));
                        }
                    }
                    Err(e) => {
                        log::warn!("per-session upstream {}: spare failed: {e}", inner.name);
                        if let Some(r) = ready.take() {
                            let _ = r.send(Err(e));
                            return;
                        }
                        retry_at = Some(Instant::now() + RETRY_SPAWN);
                        break;
                    }
                }
            }
            if let Some(r) = ready.take() {
                let _ = r.send(Ok(())); // spares: 0 wanted
            }
        }
        let wait = retry_at
            .map(|t| t.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_secs(3600));
        match rx.recv_timeout(wait) {
            Ok(Control::Stop) | Err(RecvTimeoutError::Disconnected) => break,
            Ok(Control::Replenish) => retry_at = Some(Instant::now()),
            Ok(Control::Urgent(reply)) => {
                // The room was reserved by the caller.
                let r = if inner.stopping.load(Ordering::Acquire) {
                    Err(Error::Unavailable("shutting down".into()))
                } else {
                    inner.spawn_warm()
                };
                if r.is_err() {
                    inner.release();
                }
                if let Err(r) = reply.send(r) {
                    // The session gave up waiting: keep the child as a spare.
                    if let Ok(c) = r.into_inner() {
                        lock(&inner.spares).push(c);
                    }
                }
            }
            Ok(Control::Retire(c)) => {
                inner.release();
                reapers.extend(stop_in_background(c));
            }
            Ok(Control::Reap(c)) => reapers.extend(stop_in_background(c)),
            Ok(Control::Died(index)) => {
                let dead = lock(&inner.assigned).remove(&index).map(|a| a.child);
                let dead = dead.or_else(|| {
                    let mut sp = lock(&inner.spares);
                    let at = sp.iter().position(|c| c.index == index)?;
                    Some(sp.remove(at))
                });
                if let Some(c) = dead {
                    log::warn!("per-session upstream {} exited", c.name());
                    inner.release();
                    reapers.extend(stop_in_background(c));
                }
                retry_at = Some(Instant::now());
            }
            Ok(Control::ChildRequest(index, msg)) => inner.route_request(index, msg),
            Err(RecvTimeoutError::Timeout) => {}
        }
        reapers.retain(|h| !h.is_finished());
    }
    for r in reapers {
        let _ = r.join();
    }
}

impl DedicatedUpstream {
    /// A child of its own for a new session (or for the stateless requests): a warm spare, a
    /// newly spawned one, or one made free by evicting an idle session.
    fn take_child(&self, deadline: Instant) -> Result<Arc<Child>, Error> {
        let inner = &self.inner;
        let mut evictions = 0;
        loop {
            let spare = lock(&inner.spares).pop();
            match spare {
                Some(c) if c.is_alive() => break Ok(c),
                Some(c) => {
                    // Died as a spare. Taken out of `spares`, the keeper's `Died` no longer
                    // finds it, so hand it back here: its slot is released and it is reaped.
                    let _ = inner.control.send(Control::Retire(c));
                    continue;
                }
                None => {}
            }
            if inner.starting.load(Ordering::Acquire) > 0 {
                // A spare is on its way: wait for it rather than refuse or over-spawn.
                if Instant::now() >= deadline {
                    return Err(Error::Timeout);
                }
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            if !inner.reserve() {
                // Every child is some session's: end one that is idle, or tell the real wait.
                // (At most a few tries: a concurrent initialize may take the room made.)
                if evictions == 3 {
                    return Err(Error::TooManySessions { retry_after: 1 });
                }
                evictions += 1;
                match inner.evict() {
                    Ok(()) => continue,
                    Err(wait) => {
                        log::debug!(
                            "all {} {} children are taken; none idle for {:?}",
                            inner.max_children,
                            inner.name,
                            inner.evict_idle
                        );
                        return Err(Error::TooManySessions { retry_after: wait });
                    }
                }
            }
            let (tx, rx) = bounded(1);
            let _ = inner.control.send(Control::Urgent(tx));
            break Ok(rx.recv_deadline(deadline).map_err(|_| Error::Timeout)??);
        }
    }

    /// The child for a stateless (2026-07-28) request; [`Error::LegacyOnly`] when the children
    /// speak only the session era. The first call probes a child with `server/discover`.
    fn stateless_child(&self, deadline: Instant) -> Result<Arc<Child>, Error> {
        let inner = &self.inner;
        let mut st = lock(&inner.stateless);
        match *st {
            Stateless::Legacy => return Err(Error::LegacyOnly),
            Stateless::Modern(i) => {
                let live = lock(&inner.assigned)
                    .get(&i)
                    .map(|a| a.child.clone())
                    .filter(|c| c.is_alive());
                if let Some(c) = live {
                    return Ok(c);
                }
            }
            Stateless::Unknown => {}
        }
        let child = self.take_child(deadline)?;
        let _ = inner.control.send(Control::Replenish);
        let modern = matches!(*st, Stateless::Modern(_))
            || request(&child, &discover_probe()).is_ok_and(|r| lists_modern(&r));
        if !modern {
            log::info!(
                "per-session upstream {}: speaks only the session era",
                inner.name
            );
            *st = Stateless::Legacy;
            let _ = inner.control.send(Control::Retire(child));
            return Err(Error::LegacyOnly);
        }
        lock(&inner.assigned).insert(
            child.index,
            Assigned {
                child: child.clone(),
                session: Weak::new(),
            },
        );
        *st = Stateless::Modern(child.index);
        Ok(child)
    }
}

impl Upstream for DedicatedUpstream {
    fn initialize(&self, call: Call<'_>) -> Result<(Binding, Reply), Error> {
        let inner = &self.inner;
        let child = self.take_child(call.deadline)?;
        let binding = Binding {
            child: child.index,
            ..Binding::default()
        };
        let index = child.index;
        lock(&inner.assigned).insert(
            index,
            Assigned {
                child: child.clone(),
                session: Weak::new(),
            },
        );
        let _ = inner.control.send(Control::Replenish);
        // The client's own initialize, verbatim (ids rewritten as always); a 2026-07-28-only
        // child's refusal is answered from its `server/discover` instead, and the session is
        // bridged (`modern_child`).
        let requested = call
            .msg
            .params_value()
            .and_then(|p| p.get("protocolVersion")?.as_str().map(str::to_owned))
            .unwrap_or_default();
        let version = negotiate(&requested, PROXY_VERSION);
        match modern_child::initialize_on(child, call, &inner.modern_hello, version) {
            Ok((modern_meta, reply)) => Ok((
                Binding {
                    modern_meta,
                    ..binding
                },
                reply,
            )),
            Err(e) => {
                if let Some(a) = lock(&inner.assigned).remove(&index) {
                    let _ = inner.control.send(Control::Retire(a.child));
                }
                Err(e)
            }
        }
    }

    fn attach(&self, session: &Arc<Session>) {
        if let Some(a) = lock(&self.inner.assigned).get_mut(&session.binding.child) {
            a.session = Arc::downgrade(session);
        }
    }

    fn forward(&self, call: Call<'_>) -> Result<Reply, Error> {
        let Some(s) = call.session else {
            // Stateless (2026-07-28) requests share one child, if the children speak it.
            let child = self.stateless_child(call.deadline)?;
            return match call.msg.kind()? {
                Kind::Request => {
                    let caps = ClientCaps::of_meta(&call.msg);
                    call_stream(child, call, Caller::stateless(caps), None)
                }
                Kind::Notification => {
                    if call.msg.method() == "notifications/cancelled" {
                        cancel(&child, None, &call.msg);
                    } else {
                        child.send_message_deadline(&call.msg, call.deadline)?;
                    }
                    Ok(Reply::Accepted)
                }
                Kind::Response => Ok(Reply::Accepted),
            };
        };
        let child = lock(&self.inner.assigned)
            .get(&s.binding.child)
            .map(|a| a.child.clone())
            .filter(|c| c.is_alive())
            .ok_or(Error::UnknownSession)?;
        if let Some(meta) = &s.binding.modern_meta {
            let per = modern_child::PerSession {
                listens: &self.inner.listens,
                limits: (self.inner.max_subscriptions, MAX_SUBSCRIPTION_URI),
                input_timeout: self.inner.input_timeout,
            };
            return modern_child::session_forward(child, s, meta, call, &per);
        }
        match call.msg.kind()? {
            Kind::Request => call_stream(child, call, Caller::session(s, ClientCaps::ALL), None),
            Kind::Notification => {
                if call.msg.method() == "notifications/cancelled" {
                    cancel(&child, call.session, &call.msg);
                } else {
                    child.send_message_deadline(&call.msg, call.deadline)?;
                }
                Ok(Reply::Accepted)
            }
            Kind::Response => {
                child.respond(call.msg, s, call.deadline)?;
                Ok(Reply::Accepted)
            }
        }
    }

    fn close(&self, session: &Session) {
        self.inner.listens.close(session.binding.child);
        let gone = lock(&self.inner.assigned).remove(&session.binding.child);
        if let Some(a) = gone {
            let _ = self.inner.control.send(Control::Retire(a.child));
            let _ = self.inner.control.send(Control::Replenish);
        }
    }

    /// A session of a 2026-07-28-only child opened its GET stream: the proxy's listen on its
    /// child carries the child's changes there (list changes at least, and the session's
    /// subscribed resources).
    fn listen(&self, session: &Arc<Session>) -> Result<(), Error> {
        if session.binding.modern_meta.is_none() {
            return Ok(());
        }
        let index = session.binding.child;
        let child = lock(&self.inner.assigned)
            .get(&index)
            .map(|a| a.child.clone())
            .filter(|c| c.is_alive())
            .ok_or(Error::UnknownSession)?;
        let uris = modern_child::sorted(lock(&session.subscriptions).iter().cloned());
        // A child without `subscriptions/listen` still gets its GET stream, with nothing on it.
        if let Err(e) = self.inner.listens.follow(index, &child, uris, true) {
            log::debug!("{}: no listen for the GET stream: {e}", self.inner.name);
        }
        Ok(())
    }
}

impl Operate for DedicatedUpstream {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn kind(&self) -> &'static str {
        "stdio"
    }

    fn mode(&self) -> &'static str {
        "per-session"
    }

    fn children(&self) -> Vec<ChildInfo> {
        let info = |c: &Arc<Child>, sessions: usize| ChildInfo {
            index: c.index,
            pid: Some(c.pid),
            up: c.is_alive(),
            age: c.started.elapsed(),
            restarts: 0,
            sessions,
            inflight: c.inflight(),
            last_error: None,
        };
        let mut out: Vec<ChildInfo> = lock(&self.inner.assigned)
            .values()
            .map(|a| info(&a.child, 1))
            .collect();
        out.extend(lock(&self.inner.spares).iter().map(|c| info(c, 0)));
        out.sort_by_key(|c| c.index);
        out
    }

    /// Per-session children hold their session's state and cannot be swapped under it; a
    /// restart replaces the warm spares (so new sessions get the new binary or config).
    fn restart(&self, _grace: Duration) -> Result<String, Error> {
        let old: Vec<Arc<Child>> = lock(&self.inner.spares).drain(..).collect();
        let n = old.len();
        for c in old {
            let _ = self.inner.control.send(Control::Retire(c));
        }
        let _ = self.inner.control.send(Control::Replenish);
        Ok(format!(
            "replaced {n} spare(s); children of live sessions are kept until their sessions end"
        ))
    }

    fn ready(&self) -> Result<(), String> {
        let inner = &self.inner;
        if lock(&inner.spares).is_empty()
            && inner.used.load(Ordering::Acquire) >= inner.max_children
        {
            return Err(format!(
                "all {} {} children are taken",
                inner.max_children, inner.name
            ));
        }
        Ok(())
    }

    fn shutdown(&self, grace: Duration) {
        let patience = grace.clamp(Duration::from_millis(100), Duration::from_secs(2));
        let inner = &self.inner;
        inner.stopping.store(true, Ordering::Release);
        let mut all: Vec<Arc<Child>> = lock(&inner.spares).drain(..).collect();
        all.extend(lock(&inner.assigned).drain().map(|(_, a)| a.child));
        std::thread::scope(|s| {
            for c in &all {
                s.spawn(move || c.stop(patience));
            }
        });
        let _ = inner.control.send(Control::Stop);
        if let Some(h) = lock(&self.keeper).take() {
            let _ = h.join();
        }
        // Anything spawned meanwhile.
        let late: Vec<Arc<Child>> = lock(&inner.spares).drain(..).collect();
        for c in late {
            c.stop(patience);
        }
        inner.reactor.stop();
    }
}

impl Drop for DedicatedUpstream {
    fn drop(&mut self) {
        self.shutdown(Duration::from_millis(500));
    }
}
