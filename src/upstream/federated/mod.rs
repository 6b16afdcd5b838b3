//! Federation: one endpoint in front of several named upstreams (`[upstream.NAME]` tables).
//!
//! Owns: [`Federated`], an [`Upstream`] over named members, each itself an upstream of
//! another kind (stdio shared, stdio per-session, HTTP); the per-client-session member
//! sessions (`members.rs`); the merged `initialize` (`initialize.rs`); merged lists,
//! namespaced names and their cursors (`lists.rs`); calls by name (`calls.rs`) and the
//! routing and policy checks they share with lists (`route.rs`); members that go down and
//! come back (`health.rs`); tool, prompt and resource policy (`policy.rs`) and overrides
//! (renames, descriptions, fixed arguments: `overrides.rs`); ids of server-to-client requests
//! made during calls (`s2c.rs`); each session's cache of the members' list pages
//! (`cache.rs`); a new member set from a reloaded config file (`reload.rs`).
//! Must not touch: how a member works (only the [`Upstream`] trait) or the client side (the
//! pipeline sees one upstream and is unchanged).
//!
//! Sessions: a client's `initialize` opens a session with every member at once (eagerly, in
//! parallel), and answers with their merged capabilities and combined instructions. A member
//! that fails then stays out of that session until it is re-opened on use (`health.rs`): its
//! tools are absent from its lists and a call to it gets a JSON-RPC error naming it; the
//! others keep working. Members that are down are probed (`health.rs`). Each member session shares
//! the client session's streams, so what a member sends outside requests (`list_changed`,
//! log messages, server-to-client requests) reaches the client's standalone stream.
//! Members: each has a stable id (a number given once, when it joined), and the member
//! table is swapped whole by a reload (`reload.rs`); a request reads the table once. A call
//! counts as in flight on its member until its answer is done, so a member a reload removed
//! or replaced can drain before it stops.
//! Stateless (2026-07-28) requests are refused as session-era only, so the era bridge serves
//! them over a federated session of its own.
//! Deadlines: a request to a member has the request's deadline, or the member's own
//! `request-timeout` from when it is sent when that is sooner; past it, the member's answer
//! fails as a request past `--request-timeout` does ([`Error::MemberTimeout`], which names
//! the member), and the member's stream is dropped (a stdio child's call is cancelled). Its
//! part of a client's `initialize` has that deadline too: past it, the member stays out of
//! the session until it is re-opened on use. A stream that blocks past its wake-up time (an
//! HTTP member's SSE answer) is checked only when it returns.

mod cache;
mod calls;
mod health;
mod initialize;
mod lists;
mod members;
mod messages;
mod operate;
mod overrides;
mod policy;
mod reload;
mod route;
mod s2c;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use super::{Call, Reply, Upstream};
use crate::config::MemberConfig;
use crate::error::Error;
use crate::jsonrpc::{self, Kind, Message};
use crate::session::{Binding, Session};
use crate::util::lock;
use health::release_binding;
use members::{Fed, Slot};
use messages::{collect, copy, member_call, result_of};

/// JSON-RPC code of "the member that would answer is unavailable".
const UNAVAILABLE: i64 = -32603;

/// One named upstream.
pub struct Member {
    /// Stable for the member's life: names its slots in every client session.
    id: usize,
    name: String,
    prefix: String,
    up: Arc<dyn Upstream>,
    /// Which of its tools and prompts who may see and call (`policy.rs`).
    policy: crate::config::PolicyConfig,
    /// Its table, as the config file gave it (`reload.rs` compares it).
    cfg: MemberConfig,
    /// Shared by the member's versions that a reload updated in place.
    run: Arc<Running>,
}

/// What a member's versions share: it is down, it was retired by a reload, its calls in
/// flight.
#[derive(Default)]
struct Running {
    /// Found down (`health.rs`), until the prober sees it answer again.
    down: AtomicBool,
    /// Removed or replaced by a reload: no new calls; it stops once drained.
    retired: AtomicBool,
    /// Calls sent to it whose answers are not done yet.
    inflight: AtomicUsize,
}

/// One call in flight on a member (`Running::inflight`), until dropped.
struct InFlight(Arc<Running>);

impl InFlight {
    fn enter(run: &Arc<Running>) -> InFlight {
        run.inflight.fetch_add(1, Ordering::SeqCst);
        InFlight(run.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The members in force, in the file's order.
pub struct Table {
    sep: String,
    members: Vec<Arc<Member>>,
    /// The members the last reload removed, `(name, prefix)`: a call by one of their names
    /// is told so.
    gone: Vec<(String, String)>,
}

impl Table {
    fn get(&self, id: usize) -> Option<&Arc<Member>> {
        self.members.iter().find(|m| m.id == id)
    }

    fn by_name(&self, name: &str) -> Option<&Arc<Member>> {
        self.members.iter().find(|m| m.name == name)
    }
}

/// Several upstreams behind one endpoint: a handle on their [`State`], which the prober
/// (`health.rs`) shares.
pub struct Federated(Arc<State>);

/// Everything a federation holds.
pub struct State {
    table: RwLock<Arc<Table>>,
    /// Members a reload removed or replaced, until they drained and stopped (`reload.rs`).
    draining: Mutex<Vec<Arc<Member>>>,
    /// Client sessions' member sessions, by [`Binding::federation`]; an entry lives from the
    /// client's `initialize` to [`Upstream::close`].
    sessions: Mutex<HashMap<u64, Arc<Fed>>>,
    next: AtomicU64,
    /// The id of the next member a reload adds.
    next_id: AtomicUsize,
    /// Shut down: the prober stops.
    stopped: AtomicBool,
    /// One reload at a time.
    reloading: Mutex<()>,
}

impl std::ops::Deref for Federated {
    type Target = State;
    fn deref(&self) -> &State {
        &self.0
    }
}

impl Federated {
    /// A federation of `members` (started upstreams, in the file's order), names joined by
    /// `sep`; starts the prober of members that are down.
    pub fn new(sep: String, members: Vec<(MemberConfig, Arc<dyn Upstream>)>) -> Federated {
        let n = members.len();
        let members = members
            .into_iter()
            .enumerate()
            .map(|(id, (cfg, up))| Arc::new(Member::new(id, cfg, up, Arc::default())))
            .collect();
        let state = Arc::new(State {
            table: RwLock::new(Arc::new(Table {
                sep,
                members,
                gone: Vec::new(),
            })),
            draining: Mutex::new(Vec::new()),
            sessions: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
            next_id: AtomicUsize::new(n),
            stopped: AtomicBool::new(false),
            reloading: Mutex::new(()),
        });
        health::start_prober(&state);
        Federated(state)
    }
}

impl Member {
    fn new(id: usize, cfg: MemberConfig, up: Arc<dyn Upstream>, run: Arc<Running>) -> Member {
        Member {
            id,
            name: cfg.name.clone(),
            prefix: cfg.prefix.clone(),
            policy: cfg.policy.clone(),
            up,
            cfg,
            run,
        }
    }

    /// The member's own deadline for a request sent now (its `request-timeout`) and that
    /// timeout, when it is sooner than the request's `deadline`.
    fn own_deadline(&self, deadline: Instant) -> Option<(Instant, std::time::Duration)> {
        let after = self.cfg.request_timeout?;
        let until = Instant::now() + after;
        (until < deadline).then_some((until, after))
    }

    /// True while the member is down.
    fn is_down(&self) -> bool {
        self.run.down.load(Ordering::Relaxed)
    }
}

/// Runs `f` for each of `ms`, in parallel when there are several; results in their order.
fn each<T: Send>(ms: &[Arc<Member>], f: impl Fn(&Arc<Member>) -> T + Sync) -> Vec<T> {
    if ms.len() < 2 {
        return ms.iter().map(&f).collect();
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = ms
            .iter()
            .map(|m| {
                let f = &f;
                scope.spawn(move || f(m))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

impl State {
    /// The members in force (read once per request).
    pub fn table(&self) -> Arc<Table> {
        crate::util::read(&self.table).clone()
    }

    /// Member `id`, in force or draining.
    fn member(&self, id: usize) -> Option<Arc<Member>> {
        if let Some(m) = self.table().get(id) {
            return Some(m.clone());
        }
        lock(&self.draining).iter().find(|m| m.id == id).cloned()
    }

    fn fed(&self, session: &Session) -> Option<Arc<Fed>> {
        lock(&self.sessions)
            .get(&session.binding.federation)
            .cloned()
    }

    /// Every client session's members.
    fn feds(&self) -> Vec<Arc<Fed>> {
        lock(&self.sessions).values().cloned().collect()
    }

    /// Sends `msg` to member `m` within `fed`'s session, re-opening the member's session first
    /// when it is out of it (`health.rs`), and once more when the member lost it; by the
    /// member's deadline (the module docs). Any failure becomes a JSON-RPC error naming the
    /// member; the client session itself stays.
    fn send(&self, fed: &Fed, m: &Arc<Member>, msg: Message, call: &Call<'_>) -> Reply {
        let id = msg.id.clone();
        let refuse =
            |text: String| Reply::Message(jsonrpc::error_body(id.as_deref(), UNAVAILABLE, &text));
        let (m, counted) = match self.enter(m) {
            Ok(entered) => entered,
            Err(why) => return refuse(why),
        };
        let own = m.own_deadline(call.deadline);
        let shortened;
        let call = match own {
            Some((until, _)) => {
                shortened = Call {
                    msg: copy(&call.msg),
                    session: call.session,
                    deadline: until,
                    headers: call.headers.clone(),
                };
                &shortened
            }
            None => call,
        };
        let timed_out = |e: Error| match (e, own) {
            (Error::Timeout, Some((_, after))) => Error::MemberTimeout {
                member: m.name.clone(),
                after,
            },
            (e, _) => e,
        };
        let i = m.id;
        if m.is_down() {
            return refuse(format!("upstream {} is down", m.name));
        }
        let mut msg = Some(msg);
        for attempt in 0..2 {
            let child = match fed.live(i) {
                Ok(c) => c,
                Err(why) if !self.revive(fed, &m, call.deadline) => {
                    return refuse(format!("upstream {} is unavailable: {why}", m.name));
                }
                Err(_) => match fed.live(i) {
                    Ok(c) => c,
                    Err(why) => {
                        return refuse(format!("upstream {} is unavailable: {why}", m.name));
                    }
                },
            };
            child.touch();
            let Some(this) = msg.take() else { break };
            // Kept for a second try when the member lost its session.
            let again = (attempt == 0).then(|| copy(&this));
            match m.up.forward(member_call(this, &child, call)) {
                Ok(Reply::Stream(inner)) => {
                    return Reply::Stream(Box::new(s2c::Tagged {
                        inner,
                        member: i,
                        until: own.map(|(until, after)| s2c::Until {
                            until,
                            member: m.name.clone(),
                            after,
                        }),
                        _counted: counted,
                    }));
                }
                Ok(r) => return r,
                Err(e @ (Error::UnknownSession | Error::UpstreamSessionLost)) => {
                    fed.set_down(i, &format!("its session ended ({e})"));
                    msg = again;
                    if msg.is_none() {
                        return refuse(format!("upstream {} failed: {e}", m.name));
                    }
                }
                Err(e) => {
                    if health::means_down(&e) {
                        self.went_down(&m, &e.to_string());
                    }
                    log::debug!("upstream {}: {e}", m.name);
                    return refuse(match timed_out(e) {
                        e @ Error::MemberTimeout { .. } => e.to_string(),
                        e => format!("upstream {} failed: {e}", m.name),
                    });
                }
            }
        }
        refuse(format!("upstream {} is unavailable", m.name))
    }

    /// Sends a notification or a response to every live member of the session.
    fn broadcast(&self, fed: &Fed, msg: &Message, call: &Call<'_>) {
        let t = self.table();
        let live: Vec<Arc<Member>> = t
            .members
            .iter()
            .filter(|m| fed.live(m.id).is_ok())
            .cloned()
            .collect();
        each(&live, |m| {
            if let Ok(child) = fed.live(m.id)
                && let Err(e) = m.up.forward(member_call(copy(msg), &child, call))
            {
                log::debug!("upstream {}: {e}", m.name);
            }
        });
    }
}

impl Upstream for Federated {
    fn initialize(&self, call: Call<'_>) -> Result<(Binding, Reply), Error> {
        let t = self.table();
        let opened = each(&t.members, |m| {
            if m.is_down() {
                return Err(Error::Unavailable("down".into()));
            }
            let deadline = m
                .own_deadline(call.deadline)
                .map_or(call.deadline, |(d, _)| d);
            let c = Call {
                msg: copy(&call.msg),
                session: None,
                deadline,
                headers: call.headers.clone(),
            };
            let (binding, reply) = m.up.initialize(c)?;
            let result = collect(reply, deadline).map(|b| result_of(&b));
            Ok::<_, Error>((binding, result))
        });
        let mut slots = Vec::with_capacity(opened.len());
        let mut results = Vec::new();
        for (m, o) in t.members.iter().zip(opened) {
            let slot = match o {
                Ok((binding, Ok(Ok(result)))) => {
                    results.push((m.clone(), result.clone()));
                    Slot::Pending(binding, result)
                }
                Ok((binding, Ok(Err(why)))) => Slot::Failed(binding, why),
                Ok((binding, Err(e))) => Slot::Failed(binding, e.to_string()),
                Err(e) => {
                    if health::means_down(&e) {
                        self.went_down(m, &e.to_string());
                    }
                    Slot::Down(e.to_string())
                }
            };
            if let Slot::Failed(_, why) | Slot::Down(why) = &slot {
                log::warn!("upstream {}: initialize failed: {why}", m.name);
            }
            slots.push((m.id, slot));
        }
        if results.is_empty() {
            let why: Vec<String> = slots
                .iter()
                .zip(&t.members)
                .map(|((_, s), m)| format!("{}: {}", m.name, s.why()))
                .collect();
            self.release(slots);
            return Err(Error::Unavailable(format!(
                "no upstream answered initialize ({})",
                why.join("; ")
            )));
        }
        let key = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let fed = Fed::new(slots, call.msg.to_vec());
        lock(&self.sessions).insert(key, Arc::new(fed));
        let result = initialize::merged_initialize(&t.sep, &results);
        let id = call.msg.id.clone().unwrap_or_else(jsonrpc::null);
        let binding = Binding {
            federation: key,
            ..Binding::default()
        };
        Ok((
            binding,
            Reply::Message(jsonrpc::result_body(&id, &result.to_string())),
        ))
    }

    fn forward(&self, call: Call<'_>) -> Result<Reply, Error> {
        let kind = call.msg.kind()?;
        // A stateless (2026-07-28) request: the bridge serves it over a federated session of
        // its own (`crate::bridge`), as for any session-era upstream.
        let Some(session) = call.session else {
            return Err(Error::LegacyOnly);
        };
        let fed = self.fed(session).ok_or(Error::UnknownSession)?;
        // An answer to a request a member made on a call's stream goes to that member alone.
        if kind == Kind::Response
            && let Some((i, original)) = call.msg.id.as_deref().and_then(s2c::untag)
        {
            if let (Ok(child), Some(m)) = (fed.live(i), self.member(i)) {
                let mut msg = copy(&call.msg);
                msg.id = Some(original);
                if let Err(e) = m.up.forward(member_call(msg, &child, &call)) {
                    log::debug!("upstream {}: {e}", m.name);
                }
            }
            return Ok(Reply::Accepted);
        }
        if kind != Kind::Request {
            self.broadcast(&fed, &call.msg, &call);
            return Ok(Reply::Accepted);
        }
        lists::request(self, &self.table(), &fed, &call)
    }

    fn close(&self, session: &Session) {
        let Some(fed) = lock(&self.sessions).remove(&session.binding.federation) else {
            return;
        };
        for i in fed.ids() {
            let (Some(slot), Some(m)) = (fed.remove(i), self.member(i)) else {
                continue;
            };
            match slot {
                Slot::Live(child, _) => m.up.close(&child),
                Slot::Pending(b, _) | Slot::Failed(b, _) => m.up.close(&session.member(i, b)),
                Slot::Down(_) => {}
            }
        }
    }

    fn attach(&self, session: &Arc<Session>) {
        let Some(fed) = self.fed(session) else {
            return;
        };
        fed.set_parent(session);
        for i in fed.ids() {
            let Some(m) = self.member(i) else { continue };
            match fed.take(i) {
                Slot::Pending(b, caps) => {
                    let child = session.member(i, b);
                    fed.watch(i, &child);
                    m.up.attach(&child);
                    fed.put(i, Slot::Live(child, caps));
                }
                Slot::Failed(b, why) => {
                    m.up.close(&session.member(i, b));
                    fed.put(i, Slot::Down(why));
                }
                other => fed.put(i, other),
            }
        }
    }

    fn listen(&self, session: &Arc<Session>) -> Result<(), Error> {
        let Some(fed) = self.fed(session) else {
            return Err(Error::UnknownSession);
        };
        for m in &self.table().members {
            if let Ok(child) = fed.live(m.id)
                && let Err(e) = m.up.listen(&child)
            {
                log::debug!("upstream {}: standalone stream: {e}", m.name);
            }
        }
        Ok(())
    }
}

impl State {
    /// Releases the member sides of a client session that was never made.
    fn release(&self, slots: Vec<(usize, Slot)>) {
        for (i, slot) in slots {
            if let (Slot::Pending(b, _) | Slot::Failed(b, _), Some(m)) = (slot, self.member(i)) {
                release_binding(&m, b);
            }
        }
    }
}
