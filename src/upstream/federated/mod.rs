//! Federation: one endpoint in front of several named upstreams (`[upstream.NAME]` tables).
//!
//! Owns: [`Federated`], an [`Upstream`] over named members, each itself an upstream of
//! another kind (stdio shared, stdio per-session, HTTP); the per-client-session member
//! sessions (`members.rs`); merged lists, namespaced names and their cursors, routing
//! (`lists.rs`); members that go down and come back (`health.rs`); tool and prompt policy
//! (`policy.rs`); ids of server-to-client requests made during calls (`s2c.rs`); each
//! session's cache of the members' list pages (`cache.rs`).
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
//! Stateless (2026-07-28) requests are refused as session-era only, so the era bridge serves
//! them over a federated session of its own.

mod cache;
mod health;
mod lists;
mod members;
mod messages;
mod policy;
mod s2c;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{Call, ChildInfo, Operate, Reply, Upstream};
use crate::config::MemberConfig;
use crate::error::Error;
use crate::jsonrpc::{self, Kind, Message};
use crate::session::{Binding, Session};
use crate::util::lock;
use members::{Fed, Slot};
use messages::{collect, copy, member_call, result_of};

/// JSON-RPC code of "the member that would answer is unavailable".
const UNAVAILABLE: i64 = -32603;

/// One named upstream.
struct Member {
    name: String,
    prefix: String,
    up: Arc<dyn Upstream>,
    /// Which of its tools and prompts who may see and call (`policy.rs`).
    policy: crate::config::PolicyConfig,
}

/// Several upstreams behind one endpoint: a handle on their [`State`], which the prober
/// (`health.rs`) shares.
pub struct Federated(Arc<State>);

/// Everything a federation holds.
pub struct State {
    sep: String,
    members: Vec<Member>,
    /// Client sessions' member sessions, by [`Binding::federation`]; an entry lives from the
    /// client's `initialize` to [`Upstream::close`].
    sessions: std::sync::Mutex<HashMap<u64, Arc<Fed>>>,
    next: AtomicU64,
    /// Per member: found down (`health.rs`), until the prober sees it answer again.
    down: Vec<std::sync::atomic::AtomicBool>,
    /// Shut down: the prober stops.
    stopped: std::sync::atomic::AtomicBool,
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
        let state = Arc::new(State {
            sep,
            down: members
                .iter()
                .map(|_| std::sync::atomic::AtomicBool::new(false))
                .collect(),
            members: members
                .into_iter()
                .map(|(cfg, up)| Member {
                    name: cfg.name,
                    prefix: cfg.prefix,
                    up,
                    policy: cfg.policy,
                })
                .collect(),
            sessions: std::sync::Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
            stopped: std::sync::atomic::AtomicBool::new(false),
        });
        health::start_prober(&state);
        Federated(state)
    }
}

impl State {
    fn fed(&self, session: &Session) -> Option<Arc<Fed>> {
        lock(&self.sessions)
            .get(&session.binding.federation)
            .cloned()
    }

    /// Runs `f` for each of `idxs` (members), in parallel when there are several; results in
    /// the order of `idxs`.
    fn each<T: Send>(&self, idxs: &[usize], f: impl Fn(usize) -> T + Sync) -> Vec<T> {
        if idxs.len() < 2 {
            return idxs.iter().map(|&i| f(i)).collect();
        }
        std::thread::scope(|scope| {
            let handles: Vec<_> = idxs
                .iter()
                .map(|&i| {
                    let f = &f;
                    scope.spawn(move || f(i))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        })
    }

    /// Sends `msg` to member `i` within `fed`'s session, re-opening the member's session first
    /// when it is out of it (`health.rs`), and once more when the member lost it. Any failure
    /// becomes a JSON-RPC error naming the member; the client session itself stays.
    fn send(&self, fed: &Fed, i: usize, msg: Message, call: &Call<'_>) -> Reply {
        let id = msg.id.clone();
        let m = &self.members[i];
        let refuse =
            |text: String| Reply::Message(jsonrpc::error_body(id.as_deref(), UNAVAILABLE, &text));
        if self.is_down(i) {
            return refuse(format!("upstream {} is down", m.name));
        }
        let mut msg = Some(msg);
        for attempt in 0..2 {
            let child = match fed.live(i) {
                Ok(c) => c,
                Err(why) if !self.revive(fed, i, call.deadline) => {
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
                    return Reply::Stream(Box::new(s2c::Tagged { inner, member: i }));
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
                        self.went_down(i, &e.to_string());
                    }
                    log::debug!("upstream {}: {e}", m.name);
                    return refuse(format!("upstream {} failed: {e}", m.name));
                }
            }
        }
        refuse(format!("upstream {} is unavailable", m.name))
    }

    /// Sends a notification or a response to every live member of the session.
    fn broadcast(&self, fed: &Fed, msg: &Message, call: &Call<'_>) {
        let idxs: Vec<usize> = (0..self.members.len())
            .filter(|&i| fed.live(i).is_ok())
            .collect();
        self.each(&idxs, |i| {
            if let Ok(child) = fed.live(i)
                && let Err(e) = self.members[i]
                    .up
                    .forward(member_call(copy(msg), &child, call))
            {
                log::debug!("upstream {}: {e}", self.members[i].name);
            }
        });
    }
}

impl Upstream for Federated {
    fn initialize(&self, call: Call<'_>) -> Result<(Binding, Reply), Error> {
        let all: Vec<usize> = (0..self.members.len()).collect();
        let opened = self.each(&all, |i| {
            let m = &self.members[i];
            if self.is_down(i) {
                return Err(Error::Unavailable("down".into()));
            }
            let c = Call {
                msg: copy(&call.msg),
                session: None,
                deadline: call.deadline,
                headers: call.headers.clone(),
            };
            let (binding, reply) = m.up.initialize(c)?;
            let result = collect(reply, call.deadline).map(|b| result_of(&b));
            Ok::<_, Error>((binding, result))
        });
        let mut slots = Vec::with_capacity(opened.len());
        let mut results = Vec::new();
        for (i, o) in opened.into_iter().enumerate() {
            let name = &self.members[i].name;
            let slot = match o {
                Ok((binding, Ok(Ok(result)))) => {
                    results.push((i, result.clone()));
                    Slot::Pending(binding, result)
                }
                Ok((binding, Ok(Err(why)))) => Slot::Failed(binding, why),
                Ok((binding, Err(e))) => Slot::Failed(binding, e.to_string()),
                Err(e) => {
                    if health::means_down(&e) {
                        self.went_down(i, &e.to_string());
                    }
                    Slot::Down(e.to_string())
                }
            };
            if let Slot::Failed(_, why) | Slot::Down(why) = &slot {
                log::warn!("upstream {name}: initialize failed: {why}");
            }
            slots.push(slot);
        }
        if results.is_empty() {
            let why: Vec<String> = slots
                .iter()
                .zip(&self.members)
                .map(|(s, m)| format!("{}: {}", m.name, s.why()))
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
        let result = lists::merged_initialize(&self.members, &self.sep, &results);
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
            if let (Ok(child), Some(m)) = (fed.live(i), self.members.get(i)) {
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
        lists::request(self, &fed, &call)
    }

    fn close(&self, session: &Session) {
        let Some(fed) = lock(&self.sessions).remove(&session.binding.federation) else {
            return;
        };
        for (i, m) in self.members.iter().enumerate() {
            match fed.take(i) {
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
        for (i, m) in self.members.iter().enumerate() {
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
        for (i, m) in self.members.iter().enumerate() {
            if let Ok(child) = fed.live(i)
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
    fn release(&self, slots: Vec<Slot>) {
        for (i, slot) in slots.into_iter().enumerate() {
            if let Slot::Pending(b, _) | Slot::Failed(b, _) = slot {
                self.release_binding(i, b);
            }
        }
    }

    /// Releases member `i`'s side of a session that has no client session.
    fn release_binding(&self, i: usize, binding: Binding) {
        let Some(m) = self.members.get(i) else {
            return;
        };
        let cfg = crate::config::SessionConfig {
            max: 1,
            max_per_client: 1,
            idle: Duration::from_secs(1),
            replay: Default::default(),
        };
        // A table only to build a session that names the member side to release.
        let throwaway = crate::session::Sessions::new(&cfg);
        if let Ok(s) = throwaway.build(String::new(), binding, None, String::new()) {
            m.up.close(&s);
        }
    }
}

impl Operate for Federated {
    fn name(&self) -> &str {
        "federation"
    }

    fn kind(&self) -> &'static str {
        "federated"
    }

    fn mode(&self) -> &'static str {
        "federated"
    }

    /// Ready while any member is: the others' tools are then absent, not the whole endpoint.
    fn ready(&self) -> Result<(), String> {
        let mut down = Vec::new();
        for m in &self.members {
            match m.up.ready() {
                Ok(()) => return Ok(()),
                Err(e) => down.push(format!("{}: {e}", m.name)),
            }
        }
        Err(down.join("; "))
    }

    fn shutdown(&self, grace: Duration) {
        self.stopped.store(true, Ordering::Relaxed);
        for m in &self.members {
            m.up.shutdown(grace);
        }
    }

    fn members(&self) -> Vec<super::MemberView<'_>> {
        self.members
            .iter()
            .enumerate()
            .map(|(i, m)| super::MemberView {
                name: &m.name,
                down: self.is_down(i),
                upstream: m.up.as_ref(),
            })
            .collect()
    }

    fn children(&self) -> Vec<ChildInfo> {
        self.members.iter().flat_map(|m| m.up.children()).collect()
    }

    fn restart(&self, grace: Duration) -> Result<String, Error> {
        let done: Vec<String> = self
            .members
            .iter()
            .filter_map(|m| {
                m.up.restart(grace)
                    .ok()
                    .map(|what| format!("{}: {what}", m.name))
            })
            .collect();
        if done.is_empty() {
            return Err(Error::NotSupported("no upstream has children to restart"));
        }
        Ok(done.join("; "))
    }
}
