//! Upstreams: where requests go once the pipeline in [`crate::proxy`] has validated them.
//!
//! Owns: every kind of upstream behind the one small [`Upstream`] trait (start a session,
//! forward a message, end a session), with what operators see of it in [`Operate`]: the HTTP
//! upstream ([`http`]: pooled keep-alive connections), replicas of one HTTP server behind
//! circuit breakers ([`replicas`]), stdio children ([`stdio`]) and several named upstreams
//! behind one endpoint ([`federated`], each member's traffic counted by [`counted`] and, with
//! `record` in its table, on tapes of its own by [`recorded`]). Must not
//! touch: the client side. Validation, sessions, logging, error answers and streaming to the
//! client happen once, in the pipeline ([`crate::proxy`]).

pub mod counted;
pub mod federated;
pub mod http;
pub mod recorded;
pub mod replicas;
pub mod stdio;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::jsonrpc::Message;
pub use crate::metrics::{ChildInfo, ExclusiveInfo, PoolInfo, ReplicaInfo};
use crate::session::{Binding, Session};

/// One message on its way upstream.
pub struct Call<'a> {
    /// The validated message.
    pub msg: Message,
    /// The client's session; `None` for stateless (2026-07-28) requests.
    pub session: Option<&'a Arc<Session>>,
    /// When the upstream must have answered.
    pub deadline: Instant,
    /// MCP headers from the client that may go upstream (allow-listed by the pipeline):
    /// `MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`, `Mcp-Param-*`, `Last-Event-ID`.
    pub headers: Vec<(String, String)>,
}

/// What the upstream answered.
pub enum Reply {
    /// A notification or response was taken: HTTP 202, no body.
    Accepted,
    /// One JSON-RPC message: sent as `application/json`.
    Message(Vec<u8>),
    /// Messages that arrive over time, ending with the response.
    Stream(Box<dyn MessageStream>),
    /// The upstream's own non-2xx answer, relayed as it is (modern-era errors such as 404
    /// -32601 must reach dual-era clients unchanged).
    Relay {
        /// Upstream HTTP status.
        status: u16,
        /// Upstream content type.
        content_type: String,
        /// Upstream body.
        body: Vec<u8>,
    },
}

/// One item of a [`MessageStream`].
pub enum Item {
    /// A message related to the request (progress, log, server-to-client request) or, on an
    /// HTTP upstream stream, any event data.
    Message(Vec<u8>),
    /// The response to the request; the stream ends after it.
    Final(Vec<u8>),
}

/// What waiting on a [`MessageStream`] gave.
pub enum Poll {
    /// The next item.
    Item(Item),
    /// Nothing arrived before the wake-up time; the request is still running.
    Idle,
    /// The stream ended cleanly.
    End,
}

/// Messages of one request, in order. The stream enforces its own request deadline (given
/// when it was created) and fails with [`Error::Timeout`] once it passes.
pub trait MessageStream: Send {
    /// Waits for the next item, but not past `wake` (then [`Poll::Idle`]), so the caller can
    /// send keep-alives and notice shutdown. Streams that cannot wait with a timeout may block
    /// past `wake`.
    fn poll_until(&mut self, wake: Instant) -> Result<Poll, Error>;

    /// True when the client must get an SSE stream even if the first item is the final
    /// response (an HTTP upstream that answered with `text/event-stream`).
    fn must_stream(&self) -> bool {
        false
    }

    /// Messages of this request dropped since the last call because its reader did not keep
    /// up (a stdio call's queue was full: `--max-call-buffer`); the pipeline counts them in
    /// `shadowcat_dropped_messages_total{reason="slow_client"}`. Streams that never drop (an
    /// HTTP upstream's: it is read only when polled, so a slow client slows the upstream
    /// connection down instead) keep the default, 0.
    fn dropped(&mut self) -> u64 {
        0
    }

    /// The call waits for its client, and the upstream for the proxy's answer to a
    /// server-to-client request it made (a bridged call waiting for `inputResponses`): nothing
    /// is read until [`MessageStream::unpark`]. The upstream may meanwhile let other calls that
    /// cannot be confused with it use what the call held (a shared stdio child: `gate.rs`).
    fn park(&mut self) {}

    /// The parked call goes on: returns once it holds again what it held before parking, so
    /// that what the upstream says next is provably its (or [`crate::error::Error::Timeout`]
    /// at `deadline`). Call it before the answers go upstream.
    fn unpark(&mut self, _deadline: Instant) -> Result<(), Error> {
        Ok(())
    }
}

/// An upstream MCP server, as the pipeline sees it: the request path, and nothing else.
///
/// Three calls are required: answer `initialize`, forward a message, release a session. The
/// two session hooks are optional. What operators see and do is the separate [`Operate`]
/// trait, which every upstream also implements.
pub trait Upstream: Operate {
    /// Answers a client's `initialize` and decides the new session's [`Binding`].
    fn initialize(&self, call: Call<'_>) -> Result<(Binding, Reply), Error>;

    /// Forwards any other message, within `call.session` or statelessly.
    fn forward(&self, call: Call<'_>) -> Result<Reply, Error>;

    /// Releases the upstream side of a session that ended (DELETE, expiry, restart).
    fn close(&self, session: &Session);

    /// Called once the session `initialize` bound is in the table.
    fn attach(&self, _session: &Arc<Session>) {}

    /// The client opened its standalone (GET) stream: make sure what the upstream sends
    /// outside requests reaches `session.streams.standalone()`. Called on every GET; must be
    /// cheap when already listening.
    fn listen(&self, _session: &Arc<Session>) -> Result<(), Error> {
        Ok(())
    }
}

/// One upstream of a federation, as operators see it.
pub struct MemberView {
    /// Its `[upstream.NAME]`.
    pub name: String,
    /// Found down and not yet back (`federated` `health.rs`).
    pub down: bool,
    /// Removed or replaced by a config reload: finishing its calls in flight, then it stops.
    pub draining: bool,
    /// The upstream itself.
    pub upstream: Arc<dyn Upstream>,
}

/// What operators see of an upstream and do to it: the admin API, `/readyz`, `/metrics` and
/// shutdown. Never called on the request path except [`Operate::name`] (for logs).
pub trait Operate: Send + Sync {
    /// A short name for logs, metrics and error messages.
    fn name(&self) -> &str;

    /// `"stdio"` or `"http"`.
    fn kind(&self) -> &'static str;

    /// `"shared"`, `"per-session"` (stdio) or `"pooled"` (HTTP).
    fn mode(&self) -> &'static str;

    /// `Ok` when the upstream can take traffic, else what is wrong.
    fn ready(&self) -> Result<(), String>;

    /// Stops everything the upstream owns (children, pools), waiting at most `grace`.
    fn shutdown(&self, grace: Duration);

    /// The stdio children (empty for HTTP).
    fn children(&self) -> Vec<ChildInfo> {
        Vec::new()
    }

    /// The HTTP upstream's request slot pool; `None` for stdio.
    fn pool(&self) -> Option<PoolInfo> {
        None
    }

    /// Shared stdio children: the tools whose calls run alone on their child whoever calls
    /// them, configured and learned; `None` for other upstreams.
    fn exclusive_tools(&self) -> Option<ExclusiveInfo> {
        None
    }

    /// The named upstreams behind a federation ([`federated`]); empty for any other.
    fn members(&self) -> Vec<MemberView> {
        Vec::new()
    }

    /// The replicas of an HTTP upstream with several URLs ([`replicas`]); empty for any other.
    fn replicas(&self) -> Vec<ReplicaInfo> {
        Vec::new()
    }

    /// Messages forwarded and, of those, failed, for an upstream whose traffic is counted
    /// (a federation member: [`counted`]); `None` for any other.
    fn traffic(&self) -> Option<(u64, u64)> {
        None
    }

    /// The federation, when this upstream is one (a config reload changes its members).
    fn as_federated(&self) -> Option<&federated::Federated> {
        None
    }

    /// Rolling restart: replaces each child once its requests in flight have finished (or
    /// `grace` passed), so no request fails. Returns what was replaced.
    fn restart(&self, _grace: Duration) -> Result<String, Error> {
        Err(Error::NotSupported(
            "this upstream has no children to restart",
        ))
    }
}
