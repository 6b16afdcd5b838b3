//! Members that go down and come back.
//!
//! A member is **down** once a call or an `initialize` to it failed the way a dead upstream
//! fails (unreachable, its child exited, nothing can take the request): from then on every
//! client session leaves it out (its names are absent from lists, a call to it is refused at
//! once, naming it), and every client session with a standalone stream is told its lists
//! changed. The prober asks each down member to `initialize` every [`PROBE_EVERY`]; once one
//! answers, it is up again and the client sessions are told again.
//!
//! Within one client session, a member that is out of it (down when the client initialized,
//! or its session was lost) is re-opened on first use, at most once per [`REVIVE_EVERY`]:
//! `initialize` with the client's own `initialize`, then `notifications/initialized`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::members::{Fed, Slot};
use super::messages::{collect, result_of};
use super::{Member, State};
use crate::error::Error;
use crate::jsonrpc::Message;
use crate::session::Binding;
use crate::upstream::Call;

/// How often the prober asks a down member.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);
/// How often one client session tries to re-open one member.
pub const REVIVE_EVERY: Duration = Duration::from_secs(1);
/// How long a probe or a re-opening may take.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);

/// The `initialize` the prober sends.
const PROBE: &[u8] = br#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"shadowcat-probe","version":"1"}}}"#;

/// True for the failures of an upstream that is not there (as opposed to one that answered
/// badly or slowly).
pub fn means_down(e: &Error) -> bool {
    matches!(
        e,
        Error::UpstreamUnreachable { .. }
            | Error::ChildExited(_)
            | Error::Unavailable(_)
            | Error::Spawn(_)
    )
}

/// Starts the thread that probes down members, for as long as the federation lives.
pub fn start_prober(state: &Arc<State>) {
    let weak = Arc::downgrade(state);
    let started = std::thread::Builder::new()
        .name("federation-probe".into())
        .spawn(move || {
            loop {
                std::thread::sleep(PROBE_EVERY);
                let Some(s) = weak.upgrade() else { return };
                if s.stopped.load(Ordering::Relaxed) {
                    return;
                }
                for m in &s.table().members {
                    if m.is_down() && s.probe(m) {
                        s.came_back(m);
                    }
                }
            }
        });
    if let Err(e) = started {
        log::warn!("federation: cannot start the prober: {e}");
    }
}

impl State {
    /// True while member `id` is down.
    #[cfg(test)]
    pub fn is_down(&self, id: usize) -> bool {
        self.member(id).is_some_and(|m| m.is_down())
    }

    /// Notes that member `m` failed as a dead upstream does.
    pub fn went_down(&self, m: &Member, why: &str) {
        if !m.run.down.swap(true, Ordering::Relaxed) {
            log::warn!("upstream {} is down: {why}", m.name);
            self.tell_every_session(m.id);
        }
    }

    fn came_back(&self, m: &Member) {
        if m.run.down.swap(false, Ordering::Relaxed) {
            log::info!("upstream {} is back", m.name);
            self.tell_every_session(m.id);
        }
    }

    /// Member `i` went down or came back: every client session forgets its lists and is
    /// told they changed.
    fn tell_every_session(&self, i: usize) {
        for fed in self.feds() {
            fed.lists.invalidate_member(i);
            fed.lists_changed();
        }
    }

    /// True when member `m` answers an `initialize` (its session is released at once).
    fn probe(&self, m: &Member) -> bool {
        let Ok(msg) = Message::parse(PROBE) else {
            return false;
        };
        let deadline = Instant::now() + OPEN_TIMEOUT;
        let call = Call {
            msg,
            session: None,
            deadline,
            headers: Vec::new(),
        };
        match m.up.initialize(call) {
            Ok((binding, reply)) => {
                let ok = collect(reply, deadline).is_ok_and(|b| result_of(&b).is_ok());
                release_binding(m, binding);
                ok
            }
            Err(e) => {
                log::debug!("upstream {}: probe: {e}", m.name);
                false
            }
        }
    }

    /// Opens member `m` within `fed`'s client session when it is out of it (or was never
    /// in it: added by a reload), not down, and was not tried within [`REVIVE_EVERY`]. Calls
    /// of the session that need it meanwhile wait for the opening. True when it serves the
    /// session now.
    pub fn revive(&self, fed: &Fed, m: &Member, deadline: Instant) -> bool {
        let i = m.id;
        let _one = crate::util::lock(&fed.opening);
        if fed.live(i).is_ok() {
            return true;
        }
        if m.is_down() || !fed.may_revive(i, REVIVE_EVERY) {
            return false;
        }
        let (Some(parent), Ok(msg)) = (fed.parent(), Message::parse(&fed.init)) else {
            return false;
        };
        let deadline = deadline.min(Instant::now() + OPEN_TIMEOUT);
        let call = Call {
            msg,
            session: None,
            deadline,
            headers: Vec::new(),
        };
        let (binding, reply) = match m.up.initialize(call) {
            Ok(opened) => opened,
            Err(e) => {
                if means_down(&e) {
                    self.went_down(m, &e.to_string());
                }
                log::debug!("upstream {}: re-opening: {e}", m.name);
                return false;
            }
        };
        let result = match collect(reply, deadline)
            .map_err(|e| e.to_string())
            .and_then(|b| result_of(&b))
        {
            Ok(r) => r,
            Err(why) => {
                log::debug!("upstream {}: re-opening: {why}", m.name);
                release_binding(m, binding);
                return false;
            }
        };
        let child = parent.member(i, binding);
        fed.lists.invalidate_member(i);
        fed.watch(i, &child);
        m.up.attach(&child);
        if let Ok(note) =
            Message::parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
        {
            let call = Call {
                msg: note,
                session: Some(&child),
                deadline,
                headers: Vec::new(),
            };
            if let Err(e) = m.up.forward(call) {
                log::debug!("upstream {}: notifications/initialized: {e}", m.name);
            }
        }
        if parent.streams.standalone_if_open().is_some()
            && let Err(e) = m.up.listen(&child)
        {
            log::debug!("upstream {}: standalone stream: {e}", m.name);
        }
        if m.run.retired.load(Ordering::SeqCst) {
            // A reload retired it meanwhile: its drain may have passed this session already.
            m.up.close(&child);
            return false;
        }
        log::debug!("upstream {}: session opened", m.name);
        fed.put(i, Slot::Live(child, result));
        true
    }
}

/// Releases member `m`'s side of a session that has no client session.
pub fn release_binding(m: &Member, binding: Binding) {
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
