//! The shared mode's supervisor thread: spawns every child (the parent-death signal follows
//! the spawning thread), restarts them with backoff after a crash, rolls them on request, and
//! refuses what children ask when nobody can answer.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::slots::{Control, Inner};
use crate::error::Error;
use crate::jsonrpc::Message;
use crate::metrics::DropReason;
use crate::upstream::stdio::child::{Child, stop_in_background};
use crate::util::{lock, read, write};

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
const HEALTHY_RESET: Duration = Duration::from_secs(60);

/// Starts the children, then restarts dead ones with backoff and answers server-to-client
/// requests, until told to stop.
pub(super) fn supervise(
    inner: &Arc<Inner>,
    rx: Receiver<Control>,
    ready: Sender<Result<(), Error>>,
) {
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
            Ok(Control::ChildRequest(i, generation, msg, code, why, reason)) => {
                if inner.slots[i].generation.load(Ordering::Acquire) == generation {
                    refuse_child_request(inner, i, &msg, code, &why, reason);
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

/// Answers a server-to-client request that no call in flight may take (see `attribution.rs`)
/// with the error decided there, at once rather than leave the child waiting, and counts it.
fn refuse_child_request(
    inner: &Inner,
    i: usize,
    msg: &Message,
    code: i64,
    why: &str,
    reason: DropReason,
) {
    let Some(child) = inner.live(i) else { return };
    inner.dropped(reason);
    if let Some(held) = inner.unowned.pass() {
        log::warn!(
            "{}: server-to-client request {} refused ({code}): {why} ({held} more since the \
             last warning)",
            child.name(),
            crate::util::Escaped(msg.method()),
        );
    }
    child.refuse(msg.id.as_deref(), code, why);
}
