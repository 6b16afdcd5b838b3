//! A new member set from a reloaded config file (`SIGHUP`, `POST /admin/reload`).
//!
//! Each `[upstream.NAME]` of the new file is compared with the member of the same name:
//! * **unchanged** (the same table): kept as it is; every client session's member session
//!   (the same child) goes on;
//! * **updated** in place: only its `prefix`, `allow`/`deny`, principals' rules, tool or
//!   prompt overrides or its own `request-timeout` changed (not what it runs or reaches: none
//!   of these is part of its [`crate::config::UpstreamConfig`]): the same upstream, the same
//!   children, the same member sessions; the new names, rules and deadline apply from the
//!   next request;
//! * **replaced**: what it runs or reaches changed (command, URL, environment, mode,
//!   children, timeouts, sizes, headers, `record`...): a new upstream is started; new calls go
//!   to it (each client session opens its member session on first use), the old one drains;
//! * **added**: started, opened in each client session on first use;
//! * **removed**: takes no new calls (a call by one of its names is told it was removed) and
//!   drains.
//!
//! Every new upstream is started before anything changes; if one fails to start, those
//! started are stopped and the reload is refused: the members in force stay. Then the table
//! is swapped at once. Draining: a removed or replaced member is retired (a call that had
//! already picked it goes to its replacement, or is refused), its calls in flight may finish
//! within the drain bound, then its member sessions are closed and it stops. Client sessions
//! are told their lists changed (`notifications/{tools,prompts,resources}/list_changed`) when
//! anything but unchanged members came out of the reload.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::health::release_binding;
use super::members::Slot;
use super::{Federated, InFlight, Member, State, Table};
use crate::config::{FederationConfig, MemberConfig};
use crate::error::Error;
use crate::upstream::Upstream;
use crate::util::{lock, write};

/// How long a stopped member's upstream may take to stop its children.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// What a reload did to the members, by name.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct Outcome {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Replaced by a new upstream (rolling: the old one drains).
    pub changed: Vec<String>,
    /// Updated in place (prefix, policy, tool and prompt overrides, request-timeout): the same
    /// children.
    pub updated: Vec<String>,
    pub unchanged: Vec<String>,
}

impl Outcome {
    /// True when clients see something new.
    fn visible(&self) -> bool {
        !(self.added.is_empty()
            && self.removed.is_empty()
            && self.changed.is_empty()
            && self.updated.is_empty())
    }
}

/// Starts the upstream of a new or changed member.
pub type Start<'a> = &'a dyn Fn(&MemberConfig) -> Result<Arc<dyn Upstream>, Error>;

impl Federated {
    /// Makes `new`'s members the ones in force (see the module docs); a removed or replaced
    /// member's calls in flight may take `drain` to finish. On an error nothing changed.
    pub fn reload(
        &self,
        new: &FederationConfig,
        start: Start<'_>,
        drain: Duration,
    ) -> Result<Outcome, Error> {
        let _one = lock(&self.reloading);
        let old = self.table();
        let mut out = Outcome::default();
        let mut started: Vec<Arc<dyn Upstream>> = Vec::new();
        let mut members = Vec::with_capacity(new.members.len());
        for cfg in &new.members {
            let name = cfg.name.clone();
            let before = old.by_name(&cfg.name);
            match before {
                Some(m) if m.cfg == *cfg => {
                    out.unchanged.push(name);
                    members.push(m.clone());
                }
                // A new `record` is a new recorder around the upstream: replaced.
                Some(m) if m.cfg.upstream == cfg.upstream && m.cfg.record == cfg.record => {
                    out.updated.push(name);
                    let up = m.up.clone();
                    members.push(Arc::new(Member::new(m.id, cfg.clone(), up, m.run.clone())));
                }
                _ => {
                    let up = match start(cfg) {
                        Ok(up) => up,
                        Err(e) => {
                            for up in &started {
                                up.shutdown(STOP_GRACE);
                            }
                            return Err(Error::Config(format!("upstream {name}: {e}")));
                        }
                    };
                    started.push(up.clone());
                    match before {
                        Some(_) => out.changed.push(name),
                        None => out.added.push(name),
                    }
                    let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                    members.push(Arc::new(Member::new(id, cfg.clone(), up, Arc::default())));
                }
            }
        }
        let retired: Vec<Arc<Member>> = old
            .members
            .iter()
            .filter(|m| members.iter().all(|n| n.id != m.id))
            .cloned()
            .collect();
        let gone: Vec<(String, String)> = retired
            .iter()
            .filter(|m| new.members.iter().all(|c| c.name != m.name))
            .map(|m| (m.name.clone(), m.prefix.clone()))
            .collect();
        out.removed = gone.iter().map(|(n, _)| n.clone()).collect();
        let sep_changed = old.sep != new.separator;
        let table = Arc::new(Table {
            sep: new.separator.clone(),
            members,
            gone,
        });
        lock(&self.draining).extend(retired.iter().cloned());
        for m in &retired {
            m.run.retired.store(true, Ordering::SeqCst);
        }
        *write(&self.table) = table;
        if out.visible() || sep_changed {
            for fed in self.feds() {
                for m in &retired {
                    fed.lists.invalidate_member(m.id);
                }
                fed.lists_changed();
            }
        }
        if !retired.is_empty() {
            let state = Arc::clone(&self.0);
            let drained = std::thread::Builder::new()
                .name("federation-drain".into())
                .spawn(move || state.drain(&retired, drain));
            if let Err(e) = drained {
                log::warn!("federation: cannot start the drain of retired upstreams: {e}");
            }
        }
        Ok(out)
    }
}

impl State {
    /// `m`, or what replaced it when a reload retired it, with the call counted in flight on
    /// it; or why there is none (a reload removed it).
    pub(super) fn enter(&self, m: &Arc<Member>) -> Result<(Arc<Member>, InFlight), String> {
        let mut m = m.clone();
        for _ in 0..4 {
            let counted = InFlight::enter(&m.run);
            // Counted before looking: a reload retires first, then waits for the count.
            if !m.run.retired.load(Ordering::SeqCst) {
                return Ok((m, counted));
            }
            drop(counted);
            match self.table().by_name(&m.name) {
                Some(next) if next.id != m.id => m = next.clone(),
                _ => break,
            }
        }
        Err(format!(
            "upstream {} was removed by a config reload",
            m.name
        ))
    }

    /// Stops each of `retired` once its calls in flight finished (at most `bound` after the
    /// reload): its member sessions are closed, then its upstream.
    fn drain(&self, retired: &[Arc<Member>], bound: Duration) {
        let until = Instant::now() + bound;
        let mut left: Vec<&Arc<Member>> = retired.iter().collect();
        while !left.is_empty() {
            let late = Instant::now() >= until || self.stopped.load(Ordering::Relaxed);
            let (idle, busy): (Vec<_>, Vec<_>) = left
                .into_iter()
                .partition(|m| late || m.run.inflight.load(Ordering::SeqCst) == 0);
            for m in idle {
                self.stop_retired(m, bound);
            }
            left = busy;
            if !left.is_empty() {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    fn stop_retired(&self, m: &Member, bound: Duration) {
        let left = m.run.inflight.load(Ordering::SeqCst);
        if left > 0 {
            log::warn!(
                "upstream {}: stopping with {left} calls still in flight after {bound:?}",
                m.name
            );
        }
        for fed in self.feds() {
            match fed.remove(m.id) {
                Some(Slot::Live(child, _)) => m.up.close(&child),
                Some(Slot::Pending(b, _) | Slot::Failed(b, _)) => release_binding(m, b),
                Some(Slot::Down(_)) | None => {}
            }
        }
        m.up.shutdown(STOP_GRACE);
        log::info!("upstream {}: drained and stopped (config reload)", m.name);
        lock(&self.draining).retain(|d| d.id != m.id);
    }
}
