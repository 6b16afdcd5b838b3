//! A 2026-07-28-only stdio child (it refused `initialize`, its `server/discover` lists
//! 2026-07-28) behind session-era clients, the same in both modes (issue #13 part B; the
//! session-era side is `crate::bridge::modern_upstream`): the `initialize` answer the proxy
//! gives in the child's place, and one session request sent to the child as a 2026-07-28
//! request, its input rounds turned into server-to-client requests.
//!
//! Owns: reading a child's `server/discover` answer into an `initialize` result, and the
//! session call's shape on the child. Must not touch: admission (`gate.rs`, the shared mode's
//! caller enters it first) or which child a session has (the caller picks it).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;
use serde_json::{Map, Value, json};

use super::call::{call_stream, cancel, request};
use super::gate::Ticket;
use crate::bridge::modern_upstream::{self, hello_of_discover, initialize_answer};
pub(super) use crate::bridge::modern_upstream::{discover_probe, lists_modern};
use crate::error::Error;
use crate::jsonrpc::{self, Kind, Message};
use crate::session::{ClientCaps, LogLevel, Session};
use crate::upstream::stdio::attribution::Caller;
use crate::upstream::stdio::child::Child;
use crate::upstream::stdio::queue::CallReceiver;
use crate::upstream::{Call, Item, MessageStream, Poll, Reply};
use crate::util::lock;

/// The `initialize`-shaped result of a child that refused `initialize` (`refusal`, its answer)
/// with -32601 and whose `server/discover` lists 2026-07-28: its capabilities, `serverInfo`
/// and `instructions`, `protocolVersion` 2026-07-28 (the caller puts the negotiated
/// session-era version in). `None` for any other refusal or discover answer: a child that
/// failed its handshake.
pub(super) fn hello_of(child: &Child, refusal: &Value) -> Option<Map<String, Value>> {
    // Only "method not found" means the child does not have `initialize`.
    let code = refusal
        .get("error")
        .and_then(|e| e.get("code"))
        .and_then(Value::as_i64);
    if code != Some(-32601) {
        return None;
    }
    let reply = request(child, &discover_probe()).ok()?;
    let result = hello_of_discover(&reply)?;
    log::info!(
        "{}: speaks only 2026-07-28 (refused initialize)",
        child.name()
    );
    Some(result)
}

/// Session `s`'s request `call` (not one the proxy answers itself: see
/// [`modern_upstream::local`]) sent to its 2026-07-28-only `child` with the session's `meta`
/// and log level; the call's input rounds go to the client as server-to-client requests, the
/// client has `input_timeout` to answer each. `ticket` is the call's admission (shared mode).
pub(super) fn session_call(
    child: Arc<Child>,
    s: &Arc<Session>,
    meta: &Value,
    mut call: Call<'_>,
    caller: Caller,
    ticket: Option<Ticket>,
    input_timeout: Duration,
) -> Result<Reply, Error> {
    // A session that never set a level takes every log message (the session-era default: the
    // server decides; the session's own filter still applies).
    let level = s.log_level().unwrap_or(LogLevel::Debug);
    call.msg = modern_upstream::with_meta(&call.msg, meta, Some(level))?;
    let request = Message::parse(&call.msg.to_vec())?;
    let round = call.deadline.saturating_duration_since(Instant::now());
    let caps = caller.caps;
    let first = call_stream(child.clone(), call, caller, ticket)?;
    // Input rounds: the same child, the same session, a round's time each.
    let session = s.clone();
    let recall: modern_upstream::Recall = Box::new(move |msg| {
        let call = Call {
            msg,
            session: Some(&session),
            deadline: Instant::now() + round,
            headers: Vec::new(),
        };
        call_stream(child.clone(), call, Caller::session(&session, caps), None)
    });
    Ok(Reply::Stream(Box::new(modern_upstream::Rounds::new(
        first,
        recall,
        request,
        &s.id,
        input_timeout,
    ))))
}

/// The raw id of request `msg` (`null` if it has none).
pub(super) fn raw_id(msg: &Message) -> String {
    msg.id
        .as_deref()
        .map_or_else(|| "null".to_owned(), |i| i.get().to_owned())
}

/// The error body a refused `initialize` came back with, if `body` is one (`jsonrpc` error).
pub(super) fn refusal(body: &[u8]) -> Option<Value> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v.get("error").is_some().then_some(v)
}

/// Bytes of messages a child may send before its `initialize` answer that are kept for the
/// client (more are dropped: a handshake carries none in practice).
const BEFORE_ANSWER: usize = 64 * 1024;

/// A client's `initialize` (`call`) on its own child (per-session mode): forwarded verbatim,
/// unless the children are known to speak only 2026-07-28 (`hello` is set) or this one refuses
/// it as such a child does: then answered from the child's `server/discover` (`hello` set
/// for the next sessions), with the session-era version `version` negotiated. Returns the
/// session's per-request `_meta` in that case (`Binding::modern_meta`), and the answer.
pub(super) fn initialize_on(
    child: Arc<Child>,
    call: Call<'_>,
    hello: &OnceLock<Map<String, Value>>,
    version: &str,
) -> Result<(Option<Value>, Reply), Error> {
    let meta = modern_upstream::session_meta(&call.msg);
    let id = raw_id(&call.msg);
    if let Some(h) = hello.get() {
        let answer = initialize_answer(h, &id, version);
        return Ok((Some(meta), Reply::Message(answer)));
    }
    let deadline = call.deadline;
    // The child negotiated with the client itself, so it asks only for what the client can
    // take.
    let caller = Caller {
        caps: ClientCaps::ALL,
        ..Caller::default()
    };
    let reply = call_stream(child.clone(), call, caller, None)?;
    let Reply::Stream(mut stream) = reply else {
        return Ok((None, reply));
    };
    let (mut before, mut bytes) = (VecDeque::new(), 0);
    loop {
        match stream.poll_until(deadline)? {
            Poll::Item(Item::Final(b)) => {
                if let Some(refused) = refusal(&b)
                    && let Some(h) = hello_of(&child, &refused)
                {
                    let h = hello.get_or_init(|| h);
                    let answer = initialize_answer(h, &id, version);
                    return Ok((Some(meta), Reply::Message(answer)));
                }
                if before.is_empty() {
                    return Ok((None, Reply::Message(b)));
                }
                before.push_back(Item::Final(b));
                return Ok((None, Reply::Stream(Box::new(Queued(before)))));
            }
            Poll::Item(Item::Message(m)) => {
                bytes += m.len();
                if bytes <= BEFORE_ANSWER {
                    before.push_back(Item::Message(m));
                }
            }
            Poll::Idle => {}
            Poll::End => {
                return Err(Error::UpstreamProtocol(
                    "child ended initialize without answering".into(),
                ));
            }
        }
    }
}

/// Messages already read, then the end.
struct Queued(VecDeque<Item>);

impl MessageStream for Queued {
    fn poll_until(&mut self, _wake: Instant) -> Result<Poll, Error> {
        Ok(self.0.pop_front().map_or(Poll::End, Poll::Item))
    }
}

/// What per-session mode keeps for its 2026-07-28-only children.
pub(super) struct PerSession<'a> {
    /// The proxy's listen on each child.
    pub(super) listens: &'a Listens,
    /// `--max-subscriptions`, and the longest URI taken.
    pub(super) limits: (usize, usize),
    /// `--input-timeout`.
    pub(super) input_timeout: Duration,
}

/// Anything session `s` sends its own 2026-07-28-only `child` (per-session mode): requests
/// the proxy does not answer itself go with the session's `meta` ([`session_call`]);
/// `resources/(un)subscribe` makes the proxy's listen on the child follow the session's
/// URIs ([`subscribe`]); the client's answers to input rounds go to their rounds;
/// `notifications/initialized` stays here (the child has no session era).
pub(super) fn session_forward(
    child: Arc<Child>,
    s: &Arc<Session>,
    meta: &Value,
    call: Call<'_>,
    per: &PerSession<'_>,
) -> Result<Reply, Error> {
    match call.msg.kind()? {
        Kind::Request => {
            if matches!(
                call.msg.method(),
                "resources/subscribe" | "resources/unsubscribe"
            ) {
                let index = s.binding.child;
                return subscribe(per.listens, index, &child, s, &call.msg, per.limits);
            }
            if let Some(reply) = modern_upstream::local(&call.msg, s)? {
                return Ok(reply);
            }
            let caller = Caller::session(s, ClientCaps::ALL);
            session_call(child, s, meta, call, caller, None, per.input_timeout)
        }
        Kind::Notification => {
            match call.msg.method() {
                "notifications/initialized" => {}
                "notifications/cancelled" => cancel(&child, Some(s), &call.msg),
                _ => child.send_message_deadline(&call.msg, call.deadline)?,
            }
            Ok(Reply::Accepted)
        }
        Kind::Response => {
            if !modern_upstream::answer(&call.msg, s) {
                child.respond(call.msg, s, call.deadline)?;
            }
            Ok(Reply::Accepted)
        }
    }
}

/// The proxy's own `subscriptions/listen` on a 2026-07-28-only child: what session-era
/// clients get on their GET streams (list changes, and updates of the resources they
/// subscribed to with `resources/subscribe`), since such a child has no session era. Its
/// acknowledgement is its own; the notifications it carries concern the sessions
/// (`attribution.rs`, step 0), which the owner's event handler serves them to.
struct OwnListen {
    child: Weak<Child>,
    id: u64,
    uris: Vec<String>,
    /// The call's channel (it holds the acknowledgement; nothing else comes to it).
    _rx: CallReceiver,
}

/// The proxy's own listens, one per child (by the owner's index: slot or child).
#[derive(Default)]
pub(super) struct Listens(Mutex<HashMap<usize, OwnListen>>);

impl Listens {
    /// Makes child `index` (`child`) carry `uris` on the proxy's listen: a new listen is
    /// opened and acknowledged before the one it replaces is cancelled (so nothing is missed
    /// meanwhile). With `only_if_closed`, a listen already open on this child is kept as it is
    /// (cheap: what every GET calls).
    pub(super) fn follow(
        &self,
        index: usize,
        child: &Arc<Child>,
        uris: Vec<String>,
        only_if_closed: bool,
    ) -> Result<(), Error> {
        let mut all = lock(&self.0);
        let open = all
            .get(&index)
            .filter(|l| l.child.upgrade().is_some_and(|c| Arc::ptr_eq(&c, child)));
        if open.is_some_and(|l| only_if_closed || l.uris == uris) {
            return Ok(());
        }
        let new = open_listen(child, uris)?;
        if let Some(old) = all.insert(index, new)
            && let Some(c) = old.child.upgrade()
        {
            c.cancel(old.id, "replaced by another subscriptions/listen");
        }
        Ok(())
    }

    /// Ends the listen of child `index` (its sessions left).
    pub(super) fn close(&self, index: usize) {
        let gone = lock(&self.0).remove(&index);
        if let Some(old) = gone
            && let Some(c) = old.child.upgrade()
        {
            c.cancel(old.id, "no session listens any more");
        }
    }
}

/// Sends `subscriptions/listen` for every change and `uris`, and waits for its
/// acknowledgement (or refusal).
fn open_listen(child: &Arc<Child>, uris: Vec<String>) -> Result<OwnListen, Error> {
    let mut body = discover_probe();
    body["method"] = json!("subscriptions/listen");
    body["params"]["notifications"] = json!({"toolsListChanged": true,
        "promptsListChanged": true, "resourcesListChanged": true,
        "resourceSubscriptions": uris});
    let msg = Message::parse(body.to_string().as_bytes())?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let (id, rx) = child.call_deadline(msg, deadline, Caller::internal())?;
    loop {
        match rx.recv_deadline(deadline) {
            Ok(Item::Message(m)) => {
                if Message::parse(&m)
                    .is_ok_and(|m| m.method() == "notifications/subscriptions/acknowledged")
                {
                    let child = Arc::downgrade(child);
                    return Ok(OwnListen {
                        child,
                        id,
                        uris,
                        _rx: rx,
                    });
                }
            }
            Ok(Item::Final(b)) => {
                return Err(Error::UpstreamProtocol(format!(
                    "{} refused subscriptions/listen: {}",
                    child.name(),
                    String::from_utf8_lossy(&b[..b.len().min(200)])
                )));
            }
            Err(RecvTimeoutError::Timeout) => {
                child.cancel(id, "subscriptions/listen not acknowledged");
                return Err(Error::Timeout);
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(Error::ChildExited(child.name().to_owned()));
            }
        }
    }
}

/// A session's `resources/subscribe` or `resources/unsubscribe` (`msg`), per-session mode:
/// recorded on the session (at most `max` URIs of at most `max_uri` bytes), and the child's
/// listen made to follow the session's set. The answer: `{}`, or the refusal.
pub(super) fn subscribe(
    listens: &Listens,
    index: usize,
    child: &Arc<Child>,
    s: &Session,
    msg: &Message,
    (max, max_uri): (usize, usize),
) -> Result<Reply, Error> {
    let id = msg.id.clone().unwrap_or_else(jsonrpc::null);
    let uri = msg
        .params_value()
        .and_then(|p| p.get("uri")?.as_str().map(str::to_owned))
        .ok_or_else(|| Error::InvalidParams("uri must be a string".into()))?;
    let uris = {
        let mut mine = lock(&s.subscriptions);
        if msg.method() == "resources/subscribe" {
            if uri.len() > max_uri {
                return Err(Error::InvalidParams(format!(
                    "resource URI too long to subscribe to: {} bytes, at most {max_uri}",
                    uri.len()
                )));
            }
            if !mine.contains(&uri) && mine.len() >= max {
                return Err(Error::InvalidParams(format!(
                    "too many subscriptions: this session holds {}, at most {max} \
                     (--max-subscriptions); unsubscribe first",
                    mine.len()
                )));
            }
            mine.insert(uri);
        } else {
            mine.remove(&uri);
        }
        sorted(mine.iter().cloned())
    };
    listens.follow(index, child, uris, false)?;
    Ok(Reply::Message(jsonrpc::result_body(&id, "{}")))
}

/// `uris`, sorted (a listen's filter is compared as a sorted list).
pub(super) fn sorted(uris: impl Iterator<Item = String>) -> Vec<String> {
    let mut v: Vec<String> = uris.collect();
    v.sort();
    v
}
