//! A child's stdout: each line read (bounded), routed to the call it answers or provably
//! belongs to, or to the owner's event handler (see `child.rs` and `attribution.rs`); the end
//! of stdout fails every call in flight.

use super::*;

pub(super) fn reader(
    stdout: std::process::ChildStdout,
    max: usize,
    shared: &Shared,
    index: usize,
    generation: u64,
    events: &EventSink,
) {
    let mut r = BufReader::with_capacity(64 * 1024, stdout);
    let mut buf = Vec::with_capacity(8 * 1024);
    loop {
        buf.clear();
        match read_line_bounded(&mut r, &mut buf, max) {
            Ok(0) => break,
            Ok(_) => route(&buf, shared, index, generation, events),
            Err(e) => {
                log::warn!("{}: stdout: {e}; treating the child as broken", shared.name);
                break;
            }
        }
    }
    stdout_ended(shared, index, generation, events);
}

/// The child's stdout ended (or broke): it is gone. Fails every call in flight at once.
pub(super) fn stdout_ended(shared: &Shared, index: usize, generation: u64, events: &EventSink) {
    shared.alive.store(false, Ordering::Release);
    // Dropping every pending sender wakes every waiter with "disconnected" at once.
    lock(&shared.pending).clear();
    lock(&shared.asks).clear();
    events(index, generation, Event::Exited);
}

pub(super) fn route(
    line: &[u8],
    shared: &Shared,
    index: usize,
    generation: u64,
    events: &EventSink,
) {
    let line = trim_line(line);
    if line.is_empty() {
        return;
    }
    let mut msg = match Message::parse(line) {
        Ok(m) => m,
        Err(e) => {
            // A flooding child must not flood the log: warn at powers of two only.
            let n = shared.skipped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                let e = e.to_string();
                log::warn!(
                    "{}: skipping non-JSON-RPC stdout line ({n} so far): {}",
                    shared.name,
                    Escaped(&e)
                );
            } else {
                let e = e.to_string();
                log::debug!(
                    "{}: skipping non-JSON-RPC stdout line: {}",
                    shared.name,
                    Escaped(&e)
                );
            }
            return;
        }
    };
    match msg.kind() {
        Ok(Kind::Response) => {
            let id = msg.id.as_deref().and_then(jsonrpc::id_u64);
            let (pending, left) = match id {
                Some(id) => {
                    let mut all = lock(&shared.pending);
                    (all.remove(&id), all.len())
                }
                None => (None, 0),
            };
            match (pending, id) {
                (Some(mut p), Some(id)) => {
                    let observed = p.learn.take().filter(|_| {
                        p.alone
                            && left == 0
                            && p.heard != Heard::Unsure
                            && shared.next_id.load(Ordering::Acquire) == id + 1
                    });
                    // Learned before the caller sees the answer, so its next call is
                    // dispatched by what this one showed.
                    if let Some(params) = observed {
                        let logged = p.heard == Heard::Logged;
                        events(index, generation, Event::Observed { params, logged });
                    }
                    msg.id = Some(p.client_id);
                    let _ = p.reply.send(Item::Final(msg.to_vec()));
                }
                _ => log::debug!("{}: response for unknown id dropped", shared.name),
            }
        }
        Ok(Kind::Notification | Kind::Request) => deliver(msg, shared, index, generation, events),
        Err(_) => {}
    }
}

/// Takes a child's request or notification where [`attribute`] says it goes. Never blocks: a
/// call's queue drops what its client leaves unread, the `ping` answer is dropped if the
/// child's stdin queue is full, and everything else goes to the event handler.
fn deliver(mut msg: Message, shared: &Shared, index: usize, generation: u64, events: &EventSink) {
    let mut pending = lock(&shared.pending);
    let settling = shared.settling();
    if pending.len() == 1
        && by_calls_in_flight(&msg)
        && let Some(p) = pending.values_mut().next()
    {
        // What the one call in flight hears (learning, `exclusive.rs`).
        p.heard = match (p.heard, settling) {
            (Heard::Unsure, _) | (_, true) => Heard::Unsure,
            _ => Heard::Logged,
        };
    }
    let calls: Vec<InFlight<'_>> = pending
        .iter()
        .map(|(&id, p)| InFlight {
            id,
            caller: &p.caller,
            has_token: p.client_token.is_some(),
            listen: p.listen,
        })
        .collect();
    let verdict = attribute(&msg, &calls, settling);
    drop(calls);
    match verdict {
        Verdict::Call(id) => {
            let Some(p) = pending.get(&id) else { return };
            match msg.kind() {
                Ok(Kind::Request) => {
                    let owner = p
                        .caller
                        .owner
                        .as_ref()
                        .map(|s| s.id.clone())
                        .unwrap_or_default();
                    let msg = adopt(shared, index, msg, owner);
                    let _ = p.reply.send(Item::Message(msg.to_vec()));
                }
                _ if !wanted(p.caller.owner.as_deref(), &msg) => {
                    drop(pending);
                    events(index, generation, Event::Dropped(DropReason::BelowLogLevel));
                }
                _ => {
                    if msg.method() == "notifications/progress"
                        && let Some(token) = &p.client_token
                        && progress_token_id(&msg) == Some(id)
                    {
                        restore_progress_token(&mut msg, token);
                    }
                    if p.listen && subscription_id(&msg) == Some(id) {
                        restore_subscription_id(&mut msg, &p.client_id);
                    }
                    let _ = p.reply.send(Item::Message(msg.to_vec()));
                }
            }
        }
        Verdict::Ping => {
            drop(pending);
            let id = msg.id.unwrap_or_else(jsonrpc::null);
            let mut bytes = jsonrpc::result_body(&id, "{}");
            bytes.push(b'\n');
            let _ = shared.stdin.try_send(bytes);
        }
        Verdict::Refuse { code, why, reason } => {
            drop(pending);
            events(
                index,
                generation,
                Event::Request {
                    msg,
                    code,
                    why,
                    reason,
                },
            );
        }
        Verdict::SessionWide | Verdict::Drop(_) => {
            // The proxy's own listen's tag means nothing to the sessions it goes to.
            let own = subscription_id(&msg)
                .and_then(|id| pending.get(&id))
                .is_some_and(|p| p.listen && p.caller.internal);
            drop(pending);
            if own {
                strip_subscription_id(&mut msg);
            }
            events(index, generation, Event::Notification(msg));
        }
    }
}

/// Params up to this size are kept as they are for learning (moved, not copied); of larger
/// ones only the name is, so that a call's arguments are not held for its whole life.
pub(super) const KEEP_PARAMS: usize = 4 * 1024;

/// What a call that is learned from keeps of its `params` ([`KEEP_PARAMS`]).
pub(super) fn learnable(params: Box<RawValue>) -> Option<Box<RawValue>> {
    if params.get().len() <= KEEP_PARAMS {
        return Some(params);
    }
    let [Some(name)] = jsonrpc::pick(params.get(), ["name"])? else {
        return None;
    };
    Some(jsonrpc::raw(format!(r#"{{"name":{}}}"#, name.get())))
}

/// Gives a child's request to a client a proxy id (`shadowcat-<child>-<n>`) that the client's
/// response is matched by, remembering the child's own id and the owning session.
pub(super) fn adopt(shared: &Shared, index: usize, mut msg: Message, owner: String) -> Message {
    let n = shared.next_ask.fetch_add(1, Ordering::Relaxed);
    let ask = format!("shadowcat-{index}-{n}");
    let child_id = msg
        .id
        .replace(jsonrpc::raw(format!("\"{ask}\"")))
        .unwrap_or_else(jsonrpc::null);
    lock(&shared.asks).insert(ask, Ask { child_id, owner });
    msg
}

/// False for a `notifications/message` below the level session `owner` asked for.
fn wanted(owner: Option<&Session>, msg: &Message) -> bool {
    #[derive(serde::Deserialize)]
    struct Params<'a> {
        #[serde(borrow)]
        level: Option<std::borrow::Cow<'a, str>>,
    }
    let Some(owner) = owner.filter(|s| s.log_level().is_some()) else {
        return true;
    };
    if msg.method() != "notifications/message" {
        return true;
    }
    let level = msg
        .params
        .as_ref()
        .and_then(|p| serde_json::from_str::<Params>(p.get()).ok())
        .and_then(|p| p.level);
    owner.wants_log(level.as_deref())
}
