//! One call on one child, the same in both modes: a request sent and its messages read back
//! as a [`MessageStream`], a cancellation, and the proxy's own requests to a child.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;
use serde_json::Value;

use crate::error::Error;
use crate::jsonrpc::{self, Message};
use crate::session::Session;
use crate::upstream::stdio::attribution::Caller;
use crate::upstream::stdio::child::Child;
use crate::upstream::stdio::gate::Ticket;
use crate::upstream::stdio::queue::CallReceiver;
use crate::upstream::{Call, Item, MessageStream, Poll, Reply};

/// How long the proxy waits for a child to answer one of its own requests.
pub(super) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// One proxy-originated request to a child, waiting for its response.
pub(crate) fn request(child: &Child, v: &Value) -> Result<Value, Error> {
    let msg = Message::parse(v.to_string().as_bytes())?;
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    let (id, rx) = child.call_deadline(msg, deadline, Caller::internal())?;
    loop {
        match rx.recv_deadline(deadline) {
            Ok(Item::Final(bytes)) => {
                return serde_json::from_slice(&bytes).map_err(Error::Parse);
            }
            Ok(Item::Message(_)) => continue,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                child.cancel(id, "handshake timed out");
                return Err(Error::Timeout);
            }
            Err(_) => return Err(Error::ChildExited(child.name().to_owned())),
        }
    }
}

/// Sends request `call`, made by `caller`, to `child` and returns the stream of its messages.
/// `ticket` (shared mode) is the call's admission to the child, given back when its answer
/// arrives or it ends otherwise.
pub(crate) fn call_stream(
    child: Arc<Child>,
    call: Call<'_>,
    caller: Caller,
    ticket: Option<Ticket>,
) -> Result<Reply, Error> {
    // Keyed by the id's canonical form, as `cancel` looks it up: the same id spelled
    // differently (`"\u0061bc"`, `1e2`) is the same call.
    let client_id = call.msg.id.as_deref().and_then(jsonrpc::id_key);
    let (id, rx) = child.call_deadline(call.msg, call.deadline, caller)?;
    if let (Some(s), Some(cid)) = (call.session, &client_id) {
        s.begin_call(cid, id);
    }
    Ok(Reply::Stream(Box::new(ChildStream {
        rx,
        child,
        id,
        deadline: call.deadline,
        done: false,
        session: call.session.cloned(),
        client_id,
        ticket,
    })))
}

/// Translates a client's `notifications/cancelled` to the rewritten id and cancels the call.
/// The request id is matched by its canonical form ([`jsonrpc::id_key`]); only `requestId`
/// and `reason` are read out of the params.
pub(crate) fn cancel(child: &Child, session: Option<&Arc<Session>>, msg: &Message) {
    let (Some(s), Some(params)) = (session, msg.params.as_deref()) else {
        return;
    };
    let Some([Some(rid), reason]) = jsonrpc::pick(params.get(), ["requestId", "reason"]) else {
        return;
    };
    let Some(key) = jsonrpc::id_key(rid) else {
        return;
    };
    if let Some(id) = s.upstream_call_id(&key) {
        let reason = reason
            .and_then(|r| serde_json::from_str::<String>(r.get()).ok())
            .unwrap_or_else(|| "cancelled by client".to_owned());
        child.cancel(id, &reason);
    }
}

/// The messages of one call on a child.
struct ChildStream {
    /// Bounded in bytes (`--max-call-buffer`): what this stream's reader leaves unread while
    /// it is full is dropped by the child's reader thread, and counted in [`Self::dropped`].
    rx: CallReceiver,
    child: Arc<Child>,
    id: u64,
    deadline: Instant,
    done: bool,
    session: Option<Arc<Session>>,
    client_id: Option<String>,
    /// The call's admission to a shared child, given back as soon as the call is over.
    ticket: Option<Ticket>,
}

impl MessageStream for ChildStream {
    fn poll_until(&mut self, wake: Instant) -> Result<Poll, Error> {
        if self.done {
            return Ok(Poll::End);
        }
        let polled = match self.rx.recv_deadline(wake.min(self.deadline)) {
            Ok(Item::Final(b)) => {
                self.done = true;
                Ok(Poll::Item(Item::Final(b)))
            }
            Ok(item) => Ok(Poll::Item(item)),
            Err(RecvTimeoutError::Timeout) if Instant::now() < self.deadline => Ok(Poll::Idle),
            Err(RecvTimeoutError::Timeout) => {
                self.done = true;
                self.child.cancel(self.id, "request timed out");
                Err(Error::Timeout)
            }
            Err(RecvTimeoutError::Disconnected) => {
                self.done = true;
                Err(Error::ChildExited(self.child.name().to_owned()))
            }
        };
        if self.done {
            // The child is done with it (its answer was routed, or it was cancelled): let the
            // next call in at once, not when the client has read everything.
            self.ticket = None;
        }
        polled
    }

    fn dropped(&mut self) -> u64 {
        self.rx.take_dropped()
    }

    fn park(&mut self) {
        if let Some(t) = self.ticket.as_mut() {
            t.park();
        }
    }

    fn unpark(&mut self, deadline: Instant) -> Result<(), Error> {
        let Some(t) = self.ticket.as_mut() else {
            return Ok(());
        };
        t.unpark(deadline)?;
        // A shared call that ran beside it may have ended without its answer just now: what
        // the child says within SETTLE is not attributed, so the answers wait that out.
        let left = self
            .child
            .settle_left()
            .min(deadline.saturating_duration_since(Instant::now()));
        if !left.is_zero() {
            std::thread::sleep(left);
        }
        Ok(())
    }
}

impl Drop for ChildStream {
    fn drop(&mut self) {
        if !self.done {
            // Abandoned mid-call (a client left, or shutdown): nobody reads the answer, so the
            // child's pending entry must not outlive this stream. A 2026-07-28 client cancels
            // a request by closing its stream (spec basic/patterns/cancellation), so the child
            // is told (a `subscriptions/listen` it serves ends there too); a session-era
            // client's leaving is no cancellation, as that era's spec has it.
            if self.session.is_none() {
                self.child
                    .cancel(self.id, "the client closed the request's stream");
            } else {
                self.child.forget(self.id);
            }
        }
        self.ticket = None;
        if let (Some(s), Some(cid)) = (&self.session, &self.client_id) {
            s.end_call(cid, self.id);
        }
    }
}
