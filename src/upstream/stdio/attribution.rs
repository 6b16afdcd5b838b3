//! Whose is it: the one rule that decides where a message from a stdio child goes when it is not
//! the response to a call (the response is matched by its rewritten id).
//!
//! [`attribute`] takes the message and the calls in flight on the child and returns a
//! [`Verdict`]: the call it provably belongs to, an answer the proxy gives the child itself, the
//! sessions it concerns as a whole, or a drop with its reason. It never guesses. The shared
//! upstream's dispatch (`gate.rs`) is what makes the rule deliver: a call whose client could be
//! asked something runs alone on its child (with its own session's other calls), so whatever the
//! child says meanwhile is its. A bridged call parked while its client is asked for input
//! (`gate.rs`) stays in flight, and shared calls run beside it: what the child says then is
//! attributed by the same rule (several sessions: a request is refused, a log dropped).
//!
//! The rule, in order:
//!
//! 0. A notification whose `_meta["io.modelcontextprotocol/subscriptionId"]` names the
//!    rewritten id of a `subscriptions/listen` in flight (a 2026-07-28 child tags its listen
//!    streams so): that call, or, for the proxy's own listen, the sessions it concerns
//!    (list changes and resource updates, step 2).
//! 1. `notifications/progress` naming the rewritten token of a call in flight: that call;
//!    naming none: dropped and counted (its token means nothing to any other call).
//! 2. `notifications/*/list_changed` and `notifications/resources/updated`: the sessions on the
//!    child they concern ([`Verdict::SessionWide`]).
//! 3. A `ping` request: the proxy answers it (the child's client is the proxy, and it is alive).
//! 4. The calls that could have caused anything else are the calls in flight except the proxy's
//!    own and the `subscriptions/listen` calls (a listen stream's notifications are tagged,
//!    step 0). Within [`SETTLE`] of a call ending without its response (cancelled, timed out,
//!    abandoned) nothing is attributed: the child may still speak of that call. (So an
//!    exclusive call let in then waits the rest out before it is sent: `shared.rs`.)
//! 5. If they all belong to one session, the target is that session's newest call; if there is
//!    exactly one call and it is stateless (2026-07-28), that call. Otherwise there is no target.
//! 6. A request that needs a capability (`sampling/createMessage`: `sampling`;
//!    `elicitation/create`: `elicitation`, with `url` for URL mode; `roots/list`: `roots`):
//!    * to the target, if its client declared that capability;
//!    * refused with -32601 (method not found, as the spec has clients answer a request they
//!      do not support) if the target's client did not declare it, or if there is no target but
//!      no client with a call in flight declared it (then whoever asked lacks it);
//!    * refused with -32603 otherwise (a stateless call: no way to answer it before the
//!      era bridge; several sessions, one of them capable; nothing in flight), and counted.
//! 7. Any other request: to the target, else refused with -32603 and counted.
//! 8. Any other notification (a log): to the target, else dropped and counted as
//!    `unattributed`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde_json::value::RawValue;

use crate::jsonrpc::{self, Kind, Message, RawObject};
use crate::metrics::DropReason;
use crate::session::{ClientCaps, Session};

/// After a call ends without its response, how long the child's messages are not attributed.
pub const SETTLE: Duration = Duration::from_millis(250);

/// Who made a call on a child, as attribution and dispatch see it.
#[derive(Clone, Debug, Default)]
pub struct Caller {
    /// The session that sent it; `None` for a stateless (2026-07-28) call or the proxy's own.
    pub owner: Option<Arc<Session>>,
    /// What its client declared it can take.
    pub caps: ClientCaps,
    /// The proxy's own request (handshake, `logging/setLevel`, subscriptions): it never causes
    /// anything a client should see, so attribution leaves it out.
    pub internal: bool,
    /// A `tools/call` whose tool may be learned as exclusive (`exclusive.rs`): the child
    /// reports whether it logged if it was the only call on the child from start to end.
    pub learn: bool,
}

impl Caller {
    /// The proxy's own request.
    pub fn internal() -> Caller {
        Caller {
            internal: true,
            ..Caller::default()
        }
    }

    /// A request of `session`, whose client declared `caps`.
    pub fn session(session: &Arc<Session>, caps: ClientCaps) -> Caller {
        Caller {
            owner: Some(session.clone()),
            caps,
            ..Caller::default()
        }
    }

    /// A stateless request whose `_meta` declared `caps`.
    pub fn stateless(caps: ClientCaps) -> Caller {
        Caller {
            owner: None,
            caps,
            ..Caller::default()
        }
    }
}

/// One call in flight, as [`attribute`] sees it.
pub struct InFlight<'a> {
    /// Its rewritten id (higher is newer).
    pub id: u64,
    /// Who made it.
    pub caller: &'a Caller,
    /// It carried a progress token (so progress naming its id is its own).
    pub has_token: bool,
    /// It is a `subscriptions/listen` (so notifications naming its id as their subscription
    /// id are its own).
    pub listen: bool,
}

/// Where a child's message goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// To the call with this rewritten id (a request under a proxy id its session answers).
    Call(u64),
    /// A `ping`: the proxy answers it.
    Ping,
    /// A request answered with this JSON-RPC error; `counted` when it is also a message no one
    /// provably owns (`reason`).
    Refuse {
        /// -32601 or -32603.
        code: i64,
        /// The error message the child gets.
        why: String,
        /// Counted in `shadowcat_dropped_messages_total{reason}`.
        reason: DropReason,
    },
    /// To the sessions on the child it concerns (list changes, subscribed resources).
    SessionWide,
    /// Dropped and counted.
    Drop(DropReason),
}

/// Decides where child message `msg` (a request or notification) goes, given the calls in
/// flight on the child and whether a call ended without its response within [`SETTLE`].
pub fn attribute<'a>(msg: &Message, calls: &[InFlight<'a>], settling: bool) -> Verdict {
    let method = msg.method();
    let request = matches!(msg.kind(), Ok(Kind::Request));
    if !request
        && calls.iter().any(|c| c.listen)
        && let Some(id) = subscription_id(msg)
        && let Some(c) = calls.iter().find(|c| c.id == id && c.listen)
    {
        let concerns_sessions =
            method.ends_with("/list_changed") || method == "notifications/resources/updated";
        return match c.caller.internal {
            true if concerns_sessions => Verdict::SessionWide,
            _ => Verdict::Call(id),
        };
    }
    if !request {
        if method == "notifications/progress" {
            // Its token is a rewritten call id: to another call it would name another request
            // (or, by chance, one of that client's own).
            return match progress_token_id(msg) {
                Some(id) if calls.iter().any(|c| c.id == id && c.has_token) => Verdict::Call(id),
                _ => Verdict::Drop(DropReason::Unattributed),
            };
        }
        if method.ends_with("/list_changed") || method == "notifications/resources/updated" {
            return Verdict::SessionWide;
        }
    } else if method == "ping" {
        return Verdict::Ping;
    }
    // A listen call causes nothing but the notifications tagged with its id (step 0).
    let causes: Vec<&InFlight<'a>> = calls
        .iter()
        .filter(|c| !c.caller.internal && !c.listen)
        .collect();
    let target = if settling { None } else { target(&causes) };
    if !request {
        return match target {
            Some(c) => Verdict::Call(c.id),
            None => Verdict::Drop(DropReason::Unattributed),
        };
    }
    let refuse = |code, why: String, reason| Verdict::Refuse { code, why, reason };
    let ambiguous = || {
        let why = if settling {
            "shadowcat: cannot tell which client this request is for (a request on this \
             child just ended without its answer)"
        } else if causes.is_empty() {
            "shadowcat: no client request is in flight on this child that this request could \
             belong to"
        } else {
            "shadowcat: cannot tell which client this request is for"
        };
        refuse(-32603, why.to_owned(), DropReason::Unattributed)
    };
    let need = ClientCaps::needed(method, elicitation_mode(msg).as_deref());
    match (target, need) {
        (Some(c), _) if c.caller.owner.is_none() => refuse(
            -32603,
            "shadowcat: the request in flight is a stateless 2026-07-28 call, which cannot be \
             sent server-to-client requests"
                .to_owned(),
            DropReason::Unattributed,
        ),
        (Some(c), Some(k)) if !c.caller.caps.has(k) => refuse(
            -32601,
            format!(
                "shadowcat: the client of this call did not declare the {} capability",
                k.name()
            ),
            DropReason::MissingCapability,
        ),
        (Some(c), _) => Verdict::Call(c.id),
        (None, Some(k))
            if !settling && !causes.is_empty() && causes.iter().all(|c| !c.caller.caps.has(k)) =>
        {
            refuse(
                -32601,
                format!(
                    "shadowcat: no client with a call in flight on this child declared the {} \
                     capability",
                    k.name()
                ),
                DropReason::MissingCapability,
            )
        }
        (None, _) => ambiguous(),
    }
}

/// True for a message that [`attribute`] gives to a call only by who has calls in flight
/// (steps 4 to 8): anything but a response, progress, a list change, a resource update or a
/// `ping`. A log is one; so is a server-to-client request.
pub fn by_calls_in_flight(msg: &Message) -> bool {
    let method = msg.method();
    match msg.kind() {
        Ok(Kind::Request) => method != "ping",
        Ok(Kind::Notification) => {
            method != "notifications/progress"
                && !method.ends_with("/list_changed")
                && method != "notifications/resources/updated"
        }
        _ => false,
    }
}

/// The call a message provably belongs to (step 5 of the rule): the newest call of the one
/// session owning every call, or the one stateless call.
fn target<'c, 'a>(causes: &[&'c InFlight<'a>]) -> Option<&'c InFlight<'a>> {
    let first = causes.first()?;
    match &first.caller.owner {
        None if causes.len() == 1 => Some(first),
        None => None,
        Some(s) => {
            let same = causes
                .iter()
                .all(|c| c.caller.owner.as_ref().is_some_and(|o| Arc::ptr_eq(o, s)));
            if same {
                causes.iter().copied().max_by_key(|c| c.id)
            } else {
                None
            }
        }
    }
}

/// `params.mode` of an `elicitation/create` request.
fn elicitation_mode(msg: &Message) -> Option<String> {
    if msg.method() != "elicitation/create" {
        return None;
    }
    let params: RawObject = serde_json::from_str(msg.params.as_ref()?.get()).ok()?;
    serde_json::from_str(params.get("mode")?.get()).ok()
}

/// Lets one warning through per second, so a child that floods unattributable messages cannot
/// flood the log.
#[derive(Debug, Default)]
pub struct Throttle {
    /// Milliseconds after `born` of the last warning (plus one second, so 0 means never).
    last_ms: AtomicU64,
    /// Warnings held back since the last one let through.
    held: AtomicU64,
    born: OnceLock<Instant>,
}

impl Throttle {
    /// `Some(n)` when a warning may go out now, `n` being how many were held back before it.
    pub fn pass(&self) -> Option<u64> {
        let now = self.born.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1000;
        let last = self.last_ms.load(Ordering::Relaxed);
        if now >= last + 1000
            && self
                .last_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.held.swap(0, Ordering::Relaxed));
        }
        self.held.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// The `_meta` key of a 2026-07-28 listen stream's subscription id (the listen request's id).
pub const META_SUBSCRIPTION: &str = "io.modelcontextprotocol/subscriptionId";

/// The call id a child's notification names in `params._meta[subscriptionId]`, if any.
pub(crate) fn subscription_id(msg: &Message) -> Option<u64> {
    let params = msg.params.as_ref()?;
    if !params.get().contains(META_SUBSCRIPTION) {
        return None;
    }
    let params: RawObject = serde_json::from_str(params.get()).ok()?;
    let meta: RawObject = serde_json::from_str(params.get("_meta")?.get()).ok()?;
    jsonrpc::id_u64(meta.get(META_SUBSCRIPTION)?)
}

/// Puts the client's listen request id back as the subscription id of a child's notification
/// (the rest of `params` keeps its exact text).
pub(crate) fn restore_subscription_id(msg: &mut Message, client_id: &RawValue) {
    let Some(params) = msg.params.as_ref() else {
        return;
    };
    let Ok(mut v) = serde_json::from_str::<RawObject>(params.get()) else {
        return;
    };
    let Some(Ok(mut meta)) = v
        .get("_meta")
        .map(|m| serde_json::from_str::<RawObject>(m.get()))
    else {
        return;
    };
    meta.insert(META_SUBSCRIPTION.into(), client_id.to_owned());
    if let Ok(text) = serde_json::to_string(&meta) {
        v.insert("_meta".into(), jsonrpc::raw(text));
    }
    if let Ok(text) = serde_json::to_string(&v) {
        msg.params = Some(jsonrpc::raw(text));
    }
}

/// Takes the subscription id out of a child's notification (and `_meta` with it, if nothing
/// else is in it); the rest of `params` keeps its exact text.
pub(crate) fn strip_subscription_id(msg: &mut Message) {
    let Some(params) = msg.params.as_ref() else {
        return;
    };
    let Ok(mut v) = serde_json::from_str::<RawObject>(params.get()) else {
        return;
    };
    let Some(Ok(mut meta)) = v
        .get("_meta")
        .map(|m| serde_json::from_str::<RawObject>(m.get()))
    else {
        return;
    };
    meta.remove(META_SUBSCRIPTION);
    if meta.is_empty() {
        v.remove("_meta");
    } else if let Ok(text) = serde_json::to_string(&meta) {
        v.insert("_meta".into(), jsonrpc::raw(text));
    }
    if let Ok(text) = serde_json::to_string(&v) {
        msg.params = Some(jsonrpc::raw(text));
    }
}

/// The call id a child's progress notification names in `params.progressToken`, if any.
pub(crate) fn progress_token_id(msg: &Message) -> Option<u64> {
    let params: RawObject = serde_json::from_str(msg.params.as_ref()?.get()).ok()?;
    jsonrpc::id_u64(params.get("progressToken")?)
}
