//! The one error type of the proxy, and the one place that turns an error into its answer.
//!
//! Every failure a request can meet is a variant of [`Error`], each used only for what its doc
//! says. [`Error::answer`] gives everything the client gets and the metrics count for it: the
//! HTTP status, the JSON-RPC error code of the body, extra headers (`Retry-After`, `Allow`,
//! `WWW-Authenticate`) and the metric it counts under; [`Error::source`] says whose fault it
//! was. Nothing else in the crate decides any of these.
//!
//! Owns: the error enum and its mapping. Must not touch: how the body is framed (that is
//! [`crate::jsonrpc::error_for`]) or how a response is written.

use std::fmt;
use std::io;

use crate::metrics::{Rejection, UpstreamErrorKind};

/// Whose fault an error is (after pingora's `ErrorSource`): logs and dashboards split on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The client sent something the proxy refuses (or is over a limit).
    Downstream,
    /// The upstream server (or a stdio child) failed, or is down or busy.
    Upstream,
    /// The proxy itself: a bug, its own capacity, or its configuration.
    Internal,
}

/// What one error adds to the metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Count {
    /// `shadowcat_upstream_errors_total{kind}`.
    Upstream(UpstreamErrorKind),
    /// `shadowcat_rejected_total{reason}`.
    Rejected(Rejection),
}

/// The whole answer for an error: built by [`Error::answer`], sent by the pipeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// JSON-RPC error code of the body.
    pub code: i64,
    /// Headers beside `Content-Type`.
    pub headers: Vec<(&'static str, String)>,
    /// What the metrics count, if anything.
    pub count: Option<Count>,
}

/// Everything that can go wrong while serving one request, or while starting up.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The request body is not valid JSON.
    Parse(serde_json::Error),
    /// The body is valid JSON but not one JSON-RPC 2.0 message (batches included).
    InvalidMessage(&'static str),
    /// `Content-Type` of a POST is not `application/json`.
    UnsupportedMediaType,
    /// `Accept` of a POST does not list both `application/json` and `text/event-stream`,
    /// or a GET does not accept `text/event-stream`.
    NotAcceptable,
    /// `Origin` is not allowed, or `Host` is not a loopback name on a loopback listener.
    Forbidden(&'static str),
    /// Authentication is on and the bearer token is missing or invalid (401), or valid but
    /// without a required scope (403).
    Auth {
        /// Why.
        denial: Denial,
        /// The `WWW-Authenticate` value the answer carries (it names the metadata URL).
        challenge: String,
    },
    /// A rate limit (`--rate-limit`, `--global-rate-limit`, `--tool-limit`) has no token left
    /// for this request.
    RateLimited {
        /// Which limit: `client`, `global` or `tool`.
        scope: &'static str,
        /// Whole seconds until a retry can pass (at least 1).
        retry_after: u64,
    },
    /// A legacy request other than `initialize`, or a GET/DELETE, arrived without `Mcp-Session-Id`.
    MissingSession,
    /// `Mcp-Session-Id` names no live session: unknown, deleted, expired or its child restarted.
    UnknownSession,
    /// `MCP-Protocol-Version` names a version the proxy does not speak.
    UnsupportedVersion(String),
    /// A header that may appear once appeared more than once (`Origin`, `Content-Type`,
    /// `Authorization`, `Mcp-Session-Id`, `Last-Event-ID`, `MCP-Protocol-Version`,
    /// `Mcp-Method`, `Mcp-Name`, one `Mcp-Param-*` name): readers that take the first and the
    /// last copy would disagree. Named in lower case.
    RepeatedHeader(String),
    /// A header that mirrors the body (`MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`,
    /// `Mcp-Param-*`) disagrees with it or is malformed: 400 with the 2026-07-28
    /// `HeaderMismatch` code, -32020.
    HeaderMismatch(String),
    /// A GET's `Last-Event-ID` names no stream of the session, or events after it were
    /// already dropped from the replay buffer.
    UnknownEventId(String),
    /// The HTTP method is not one the endpoint serves.
    MethodNotAllowed,
    /// A response has to stream (SSE) but the client speaks HTTP/1.0, which cannot carry it.
    StreamNeedsHttp11,
    /// The HTTP layer refused the request before the pipeline saw it: bad framing (400), a
    /// slow head (408), a body or head over its limit (413, 431), an HTTP version other than
    /// 1.0/1.1 (505), no connection slot (503), or a handler that panicked (500).
    Http {
        /// The status the HTTP layer chose.
        status: u16,
        /// What it said.
        message: String,
    },
    /// The path is not the MCP endpoint.
    NotFound,
    /// A modern (2026-07-28) request reached an upstream that only speaks the legacy protocol.
    LegacyOnly,
    /// A 2026-07-28 request's params are invalid for the proxy: `_meta` lacks the protocol
    /// version or the client capabilities, or a `requestState` is tampered with, foreign or
    /// expired (`crate::bridge`): 400 with -32602.
    InvalidParams(String),
    /// A 2026-07-28 request's `_meta` names a protocol version the proxy does not serve: 400
    /// with -32022 `UnsupportedProtocolVersion` and `data: {supported, requested}`.
    UnsupportedModernVersion(String),
    /// A 2026-07-28 request names a method that does not exist in that revision (removed,
    /// such as `initialize` or `ping`, or unknown): 404 with -32601.
    UnknownMethod(String),
    /// Serving a 2026-07-28 request needs a client capability (`sampling`, `elicitation`,
    /// `roots`) its `_meta` did not declare: 400 with -32021 and
    /// `data.requiredCapabilities`.
    MissingCapability(&'static str),
    /// `--max-sessions` sessions exist and none has expired (in per-session stdio mode also:
    /// every child is taken by a session).
    TooManySessions {
        /// Whole seconds until the session unused longest expires, if it stays unused (at least
        /// 1, at most `--session-idle`).
        retry_after: u64,
    },
    /// The client (its principal, or its IP without authentication) already holds
    /// `--max-sessions-per-client` live sessions.
    SessionQuota {
        /// The quota in force.
        limit: usize,
        /// Whole seconds until that client's session unused longest expires, if it stays
        /// unused (at least 1).
        retry_after: u64,
    },
    /// The client already has `--max-streams-per-client` streams open.
    StreamQuota {
        /// The quota in force.
        limit: usize,
        /// Whole seconds until one of its streams ends by itself at the latest: a request's
        /// deadline, or the idle expiry of the session a GET follows (at least 1).
        retry_after: u64,
    },
    /// The client (its principal, or its IP) already has `--input-max-per-client` bridged
    /// calls waiting for its `inputResponses` (`crate::bridge`): 429; the call that would have
    /// been one more is cancelled upstream.
    InputQuota {
        /// The quota in force.
        limit: usize,
        /// Whole seconds until the first of the client's waiting calls times out (at least 1).
        retry_after: u64,
    },
    /// The bridge holds as many calls waiting for input as it keeps (256, or 16 MiB of their
    /// input requests): 503; the call is cancelled upstream.
    InputPending {
        /// Whole seconds until the first waiting call times out (at least 1).
        retry_after: u64,
    },
    /// Every capable bridge session (`crate::bridge::legacy`) serves a running call: 503.
    BridgeSessions {
        /// How many there are.
        limit: usize,
        /// Whole seconds until the first running call's round deadline, by which its session
        /// is free or parked (at least 1).
        retry_after: u64,
    },
    /// `--max-streams` streams are open.
    TooManyStreams,
    /// No upstream connection slot became free within the checkout timeout.
    UpstreamBusy,
    /// The upstream could not be reached (connection refused, reset, DNS, TLS).
    UpstreamUnreachable {
        /// Which upstream.
        upstream: String,
        /// What the transport said.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The upstream answered something that is not valid MCP (bad status, garbage, truncated).
    UpstreamProtocol(String),
    /// The upstream forgot our session (it answered 404, or 400 "session not found").
    UpstreamSessionLost,
    /// The upstream answered a non-2xx status with a body that is not JSON (an error page):
    /// a 4xx is passed on as it is, a 5xx becomes 502.
    UpstreamStatus {
        /// The upstream's status.
        status: u16,
        /// Which upstream, its status and the start of its body.
        message: String,
    },
    /// The stdio child serving the request exited (or closed stdout) before it answered.
    ChildExited(String),
    /// No live upstream can take the request (every child is down or restarting).
    Unavailable(String),
    /// The request did not finish within `--request-timeout`.
    Timeout,
    /// A federation member did not answer within its own `request-timeout` (sooner than the
    /// request's deadline): answered as [`Error::Timeout`] is, naming the member.
    MemberTimeout {
        /// The member (`[upstream.NAME]`).
        member: String,
        /// Its `request-timeout`.
        after: std::time::Duration,
    },
    /// This instance is shutting down (SIGTERM, issue #17): it takes no new session; 503 with
    /// `Retry-After: 1`, so a load balancer or the client tries another instance.
    Draining,
    /// `--limits-store-fail closed` and the shared limits store (Redis) cannot be reached: the
    /// request is refused (503, `Retry-After: 1`) rather than let through unlimited.
    LimitsStoreDown,
    /// A bug: an invariant broke.
    Internal(String),
    /// A stdio child could not be started (the program is missing or not executable).
    Spawn(String),
    /// An operator asked an upstream for something it does not do (a rolling restart of an
    /// upstream without children).
    NotSupported(&'static str),
    /// Invalid configuration, found at start-up.
    Config(String),
    /// A tool shipped in the binary (the load generator) failed at run time; the text is the
    /// tool's own. Never an answer to a client.
    Tool(String),
    /// An I/O error at start-up (bind, spawn).
    Io(io::Error),
}

/// True for the headers a 2026-07-28 client mirrors from its body (lower-case name).
fn is_mirrored_header(name: &str) -> bool {
    matches!(name, "mcp-protocol-version" | "mcp-method" | "mcp-name")
        || name.starts_with("mcp-param-")
}

/// Why a request was refused (mapped by `error.rs`: 401 or 403).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// No `Authorization: Bearer` header.
    Missing,
    /// A token was sent but is not valid (unknown, bad signature, expired, wrong audience).
    Invalid(String),
    /// A valid token lacks required scopes (listed).
    Scope(String),
}

impl Error {
    /// Everything the client gets and the metrics count for this error.
    pub fn answer(&self) -> Answer {
        let mut headers = Vec::new();
        if let Some(secs) = self.retry_after() {
            headers.push(("retry-after", secs.to_string()));
        }
        match self {
            Error::MethodNotAllowed => headers.push(("allow", "GET, POST, DELETE".into())),
            Error::Auth { challenge, .. } => headers.push(("www-authenticate", challenge.clone())),
            _ => {}
        }
        Answer {
            status: self.status(),
            code: self.rpc_code(),
            headers,
            count: self.count(),
        }
    }

    /// Whose fault it is.
    pub fn source(&self) -> Source {
        match self {
            Error::Parse(_)
            | Error::InvalidMessage(_)
            | Error::UnsupportedMediaType
            | Error::NotAcceptable
            | Error::Forbidden(_)
            | Error::Auth { .. }
            | Error::RateLimited { .. }
            | Error::SessionQuota { .. }
            | Error::StreamQuota { .. }
            | Error::InputQuota { .. }
            | Error::MissingSession
            | Error::UnknownSession
            | Error::UnsupportedVersion(_)
            | Error::RepeatedHeader(_)
            | Error::HeaderMismatch(_)
            | Error::UnknownEventId(_)
            | Error::MethodNotAllowed
            | Error::NotFound
            | Error::StreamNeedsHttp11
            | Error::LegacyOnly
            | Error::InvalidParams(_)
            | Error::UnsupportedModernVersion(_)
            | Error::UnknownMethod(_)
            | Error::MissingCapability(_) => Source::Downstream,
            Error::Http { status, .. } if *status < 500 => Source::Downstream,
            Error::UpstreamBusy
            | Error::UpstreamUnreachable { .. }
            | Error::UpstreamProtocol(_)
            | Error::UpstreamSessionLost
            | Error::UpstreamStatus { .. }
            | Error::ChildExited(_)
            | Error::Unavailable(_)
            | Error::Spawn(_)
            | Error::Timeout
            | Error::MemberTimeout { .. } => Source::Upstream,
            Error::TooManySessions { .. }
            | Error::TooManyStreams
            | Error::InputPending { .. }
            | Error::BridgeSessions { .. }
            | Error::Draining
            | Error::LimitsStoreDown
            | Error::Http { .. }
            | Error::Internal(_)
            | Error::NotSupported(_)
            | Error::Config(_)
            | Error::Tool(_)
            | Error::Io(_) => Source::Internal,
        }
    }

    /// The HTTP status the client gets for this error.
    pub fn status(&self) -> u16 {
        match self {
            Error::Parse(_) | Error::InvalidMessage(_) | Error::StreamNeedsHttp11 => 400,
            Error::UnsupportedMediaType => 415,
            Error::NotAcceptable => 406,
            Error::Forbidden(_) => 403,
            Error::Auth {
                denial: Denial::Scope(_),
                ..
            } => 403,
            Error::Auth { .. } => 401,
            Error::RateLimited { .. }
            | Error::SessionQuota { .. }
            | Error::StreamQuota { .. }
            | Error::InputQuota { .. } => 429,
            Error::MissingSession
            | Error::UnsupportedVersion(_)
            | Error::RepeatedHeader(_)
            | Error::HeaderMismatch(_)
            | Error::LegacyOnly
            | Error::NotSupported(_)
            | Error::InvalidParams(_)
            | Error::UnsupportedModernVersion(_)
            | Error::MissingCapability(_)
            | Error::UnknownEventId(_) => 400,
            Error::UnknownSession
            | Error::UpstreamSessionLost
            | Error::NotFound
            | Error::UnknownMethod(_) => 404,
            Error::MethodNotAllowed => 405,
            Error::TooManySessions { .. } | Error::TooManyStreams | Error::UpstreamBusy => 503,
            Error::InputPending { .. } | Error::BridgeSessions { .. } => 503,
            Error::Unavailable(_) | Error::Draining | Error::LimitsStoreDown => 503,
            Error::UpstreamUnreachable { .. } | Error::UpstreamProtocol(_) => 502,
            Error::UpstreamStatus { status, .. } if *status >= 500 => 502,
            Error::UpstreamStatus { status, .. } | Error::Http { status, .. } => *status,
            Error::ChildExited(_) => 502,
            Error::Timeout | Error::MemberTimeout { .. } => 504,
            Error::Internal(_)
            | Error::Spawn(_)
            | Error::Config(_)
            | Error::Tool(_)
            | Error::Io(_) => 500,
        }
    }

    /// The JSON-RPC error code in the body.
    ///
    /// -32700 parse error, -32600 invalid request (transport-level refusals too: 401, 403,
    /// 429 included), -32601 for an unknown path or method, -32001 session not found (as the
    /// TypeScript SDK uses it), -32020 `HeaderMismatch` (2026-07-28) for a mirrored header
    /// that disagrees with the body or is repeated, -32603 for everything the upstream or the
    /// proxy itself failed at. An answer the HTTP layer or the upstream chose follows its
    /// status: -32603 from 500 on, else -32600.
    pub fn rpc_code(&self) -> i64 {
        match self {
            Error::Parse(_) => -32700,
            Error::HeaderMismatch(_) => -32020,
            Error::MissingCapability(_) => -32021,
            Error::UnsupportedModernVersion(_) => -32022,
            Error::InvalidParams(_) => -32602,
            Error::UnknownMethod(_) => -32601,
            Error::RepeatedHeader(name) if is_mirrored_header(name) => -32020,
            Error::InvalidMessage(_)
            | Error::UnsupportedMediaType
            | Error::NotAcceptable
            | Error::Forbidden(_)
            | Error::Auth { .. }
            | Error::RateLimited { .. }
            | Error::SessionQuota { .. }
            | Error::StreamQuota { .. }
            | Error::InputQuota { .. }
            | Error::MissingSession
            | Error::UnsupportedVersion(_)
            | Error::RepeatedHeader(_)
            | Error::UnknownEventId(_)
            | Error::StreamNeedsHttp11
            | Error::NotSupported(_)
            | Error::LegacyOnly => -32600,
            Error::NotFound | Error::MethodNotAllowed => -32601,
            Error::UnknownSession | Error::UpstreamSessionLost => -32001,
            Error::Http { status, .. } | Error::UpstreamStatus { status, .. } if *status < 500 => {
                -32600
            }
            _ => -32603,
        }
    }

    /// The JSON-RPC error's `data`, for the 2026-07-28 errors that carry one.
    pub fn data(&self) -> Option<serde_json::Value> {
        match self {
            Error::UnsupportedModernVersion(requested) => {
                // The versions a request's `_meta` may name through the proxy: only 2026-07-28
                // (a `_meta` naming a session-era version gets this same error; those versions
                // are negotiated by `initialize`). So the list is always within the
                // `supportedVersions` of any `server/discover` answer the proxy relays or
                // synthesises, as the 2026-07-28 conformance check
                // `sep-2575-server-unsupported-version-error` requires of a server.
                let supported = [crate::version::MODERN_VERSION];
                Some(serde_json::json!({"supported": supported, "requested": requested}))
            }
            Error::MissingCapability(name) => {
                Some(serde_json::json!({"requiredCapabilities": {*name: {}}}))
            }
            _ => None,
        }
    }

    /// Seconds a client should wait before retrying, for the overload answers.
    pub fn retry_after(&self) -> Option<u32> {
        match self {
            Error::TooManyStreams
            | Error::UpstreamBusy
            | Error::Draining
            | Error::LimitsStoreDown => Some(1),
            Error::Unavailable(_) => Some(2),
            Error::RateLimited { retry_after, .. }
            | Error::TooManySessions { retry_after }
            | Error::SessionQuota { retry_after, .. }
            | Error::StreamQuota { retry_after, .. }
            | Error::InputQuota { retry_after, .. }
            | Error::InputPending { retry_after }
            | Error::BridgeSessions { retry_after, .. } => {
                Some(u32::try_from(*retry_after).unwrap_or(u32::MAX).max(1))
            }
            _ => None,
        }
    }

    /// What the metrics count for it.
    fn count(&self) -> Option<Count> {
        use UpstreamErrorKind as K;
        Some(match self {
            Error::Timeout | Error::MemberTimeout { .. } => Count::Upstream(K::Timeout),
            Error::UpstreamUnreachable { .. } => Count::Upstream(K::Connect),
            Error::ChildExited(_) => Count::Upstream(K::ChildExit),
            Error::UpstreamProtocol(_) => Count::Upstream(K::Protocol),
            Error::Unavailable(_) | Error::UpstreamBusy => Count::Upstream(K::Unavailable),
            Error::TooManySessions { .. } => Count::Rejected(Rejection::Sessions),
            Error::SessionQuota { .. } => Count::Rejected(Rejection::SessionQuota),
            Error::StreamQuota { .. } => Count::Rejected(Rejection::StreamQuota),
            Error::InputQuota { .. } => Count::Rejected(Rejection::InputQuota),
            Error::InputPending { .. } => Count::Rejected(Rejection::InputPending),
            Error::BridgeSessions { .. } => Count::Rejected(Rejection::BridgeSessions),
            Error::TooManyStreams => Count::Rejected(Rejection::Streams),
            Error::Auth { .. } => Count::Rejected(Rejection::Auth),
            Error::RateLimited { .. } => Count::Rejected(Rejection::Rate),
            Error::Http { status: 413, .. } => Count::Rejected(Rejection::Body),
            Error::Http { status: 503, .. } => Count::Rejected(Rejection::Connections),
            _ => return None,
        })
    }

    /// The process exit code when this error stops `shadowcat` before it serves: 2 for a
    /// configuration the operator must fix (including a stdio program that cannot be started),
    /// 1 for anything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_) | Error::Spawn(_) => 2,
            _ => 1,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Parse(e) => write!(f, "parse error: {e}"),
            Error::InvalidMessage(why) => write!(f, "invalid request: {why}"),
            Error::UnsupportedMediaType => write!(f, "content-type must be application/json"),
            Error::NotAcceptable => {
                write!(f, "accept must list application/json and text/event-stream")
            }
            Error::Forbidden(why) => write!(f, "forbidden: {why}"),
            Error::Auth { denial, .. } => match denial {
                Denial::Missing => write!(f, "unauthorized: bearer token required"),
                Denial::Invalid(why) => write!(f, "unauthorized: invalid token ({why})"),
                Denial::Scope(scopes) => {
                    write!(f, "forbidden: insufficient scope (needs {scopes})")
                }
            },
            Error::RateLimited { scope, retry_after } => {
                write!(f, "rate limited ({scope} limit): retry in {retry_after}s")
            }
            Error::MissingSession => write!(f, "bad request: missing mcp-session-id"),
            Error::UnknownSession => write!(f, "session not found"),
            Error::UnsupportedVersion(v) => write!(f, "unsupported protocol version: {v}"),
            Error::RepeatedHeader(name) => {
                write!(f, "bad request: header {name} appears more than once")
            }
            Error::HeaderMismatch(why) => write!(f, "header mismatch: {why}"),
            Error::UnknownEventId(id) => {
                write!(
                    f,
                    "unknown or expired last-event-id {id:?}: nothing to resume"
                )
            }
            Error::MethodNotAllowed => write!(f, "method not allowed"),
            Error::StreamNeedsHttp11 => write!(f, "invalid request: streaming needs HTTP/1.1"),
            Error::Http { message, .. } => write!(f, "{message}"),
            Error::NotFound => write!(f, "not found"),
            Error::LegacyOnly => write!(
                f,
                "upstream speaks only the session-based protocol: send initialize"
            ),
            Error::InvalidParams(why) => write!(f, "invalid params: {why}"),
            Error::UnsupportedModernVersion(_) => write!(f, "Unsupported protocol version"),
            Error::UnknownMethod(m) => write!(f, "method not found: {m}"),
            Error::MissingCapability(name) => {
                write!(f, "Server requires the {name} capability for this request")
            }
            Error::TooManySessions { retry_after } => {
                write!(f, "too many sessions: retry in {retry_after}s")
            }
            Error::SessionQuota { limit, retry_after } => write!(
                f,
                "too many sessions for this client: {limit} (--max-sessions-per-client); \
                 retry in {retry_after}s"
            ),
            Error::StreamQuota { limit, retry_after } => write!(
                f,
                "too many open streams for this client: {limit} (--max-streams-per-client); \
                 retry in {retry_after}s"
            ),
            Error::InputQuota { limit, retry_after } => write!(
                f,
                "too many calls of this client wait for its inputResponses: {limit} \
                 (--input-max-per-client); answer or abandon one, or retry in {retry_after}s"
            ),
            Error::InputPending { retry_after } => write!(
                f,
                "too many bridged calls wait for their clients' inputResponses; retry in \
                 {retry_after}s"
            ),
            Error::BridgeSessions { limit, retry_after } => write!(
                f,
                "all {limit} bridge sessions serve running calls; retry in {retry_after}s"
            ),
            Error::TooManyStreams => write!(f, "too many open streams"),
            Error::UpstreamBusy => write!(f, "upstream busy: no connection free"),
            Error::UpstreamUnreachable { upstream, source } => {
                write!(f, "upstream {upstream} unreachable: {source}")
            }
            Error::UpstreamProtocol(why) => write!(f, "upstream protocol error: {why}"),
            Error::UpstreamSessionLost => write!(f, "session not found (upstream ended it)"),
            Error::UpstreamStatus { message, .. } => write!(f, "{message}"),
            Error::ChildExited(name) => write!(f, "upstream process {name} exited"),
            Error::Unavailable(what) => write!(f, "upstream unavailable: {what}"),
            Error::Timeout => write!(f, "request timed out"),
            Error::MemberTimeout { member, after } => write!(
                f,
                "request timed out: upstream {member} did not answer within its \
                 request-timeout ({after:?})"
            ),
            Error::Draining => write!(f, "shutting down: no new sessions on this instance"),
            Error::LimitsStoreDown => {
                write!(f, "rate limits unavailable: limits store unreachable")
            }
            Error::Internal(why) => write!(f, "internal error: {why}"),
            Error::Spawn(why) => write!(f, "{why}"),
            Error::NotSupported(what) => write!(f, "invalid request: {what}"),
            Error::Config(why) | Error::Tool(why) => write!(f, "{why}"),
            Error::Io(e) => write!(f, "io: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Parse(e) => Some(e),
            Error::UpstreamUnreachable { source, .. } => Some(source.as_ref()),
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        Error::Io(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_codes() {
        let parse = serde_json::from_slice::<serde_json::Value>(b"{").unwrap_err();
        assert_eq!(Error::Parse(parse).status(), 400);
        assert_eq!(Error::UnknownSession.status(), 404);
        assert_eq!(Error::UnknownSession.rpc_code(), -32001);
        assert_eq!(Error::Timeout.status(), 504);
        assert_eq!(Error::UpstreamBusy.retry_after(), Some(1));
        assert_eq!(Error::ChildExited("x".into()).rpc_code(), -32603);
        let denied = |denial| Error::Auth {
            denial,
            challenge: "Bearer".into(),
        };
        assert_eq!(denied(Denial::Missing).status(), 401);
        assert_eq!(denied(Denial::Invalid("x".into())).status(), 401);
        assert_eq!(denied(Denial::Scope("a".into())).status(), 403);
        let limited = Error::RateLimited {
            scope: "client",
            retry_after: 3,
        };
        assert_eq!((limited.status(), limited.retry_after()), (429, Some(3)));
        // The bridge's bounds: per client like the other quotas, in all like the other rooms.
        let quota = Error::InputQuota {
            limit: 16,
            retry_after: 0,
        }
        .answer();
        assert_eq!((quota.status, quota.code), (429, -32600));
        assert_eq!(quota.headers, vec![("retry-after", "1".to_string())]);
        assert_eq!(quota.count, Some(Count::Rejected(Rejection::InputQuota)));
        let full = Error::InputPending { retry_after: 42 }.answer();
        assert_eq!((full.status, full.code), (503, -32603));
        assert_eq!(full.headers, vec![("retry-after", "42".to_string())]);
        let sessions = Error::BridgeSessions {
            limit: 16,
            retry_after: 9,
        };
        assert_eq!(
            sessions.answer().count,
            Some(Count::Rejected(Rejection::BridgeSessions))
        );
        assert_eq!(sessions.source(), Source::Internal);
        assert_eq!(
            Error::ChildExited("demo#0".into()).to_string(),
            "upstream process demo#0 exited"
        );
    }

    #[test]
    fn answers_carry_their_headers_and_counts() {
        let a = Error::MethodNotAllowed.answer();
        assert_eq!((a.status, a.code), (405, -32601));
        assert_eq!(a.headers, vec![("allow", "GET, POST, DELETE".to_string())]);
        let a = Error::TooManySessions { retry_after: 1742 }.answer();
        assert_eq!((a.status, a.code), (503, -32603));
        assert_eq!(a.headers, vec![("retry-after", "1742".to_string())]);
        assert_eq!(a.count, Some(Count::Rejected(Rejection::Sessions)));
        let a = Error::SessionQuota {
            limit: 64,
            retry_after: 0,
        }
        .answer();
        assert_eq!((a.status, a.code), (429, -32600));
        assert_eq!(a.headers, vec![("retry-after", "1".to_string())]);
        assert_eq!(a.count, Some(Count::Rejected(Rejection::SessionQuota)));
        let e = Error::StreamQuota {
            limit: 32,
            retry_after: 60,
        };
        assert!(e.to_string().contains("--max-streams-per-client"), "{e}");
        assert_eq!(e.answer().status, 429);
        assert_eq!(
            e.answer().count,
            Some(Count::Rejected(Rejection::StreamQuota))
        );
        let a = Error::Auth {
            denial: Denial::Missing,
            challenge: "Bearer x".into(),
        }
        .answer();
        assert_eq!(
            a.headers,
            vec![("www-authenticate", "Bearer x".to_string())]
        );
        let relay = |status| Error::UpstreamStatus {
            status,
            message: String::new(),
        };
        assert_eq!((relay(503).status(), relay(503).rpc_code()), (502, -32603));
        assert_eq!((relay(401).status(), relay(401).rpc_code()), (401, -32600));
        let http = |status| Error::Http {
            status,
            message: String::new(),
        };
        assert_eq!(
            http(413).answer().count,
            Some(Count::Rejected(Rejection::Body))
        );
        assert_eq!((http(431).status(), http(431).rpc_code()), (431, -32600));
        assert_eq!(http(500).rpc_code(), -32603);
        assert_eq!(Error::Timeout.source(), Source::Upstream);
        let member = Error::MemberTimeout {
            member: "slow".into(),
            after: std::time::Duration::from_secs(1),
        };
        assert_eq!(
            (member.status(), member.rpc_code(), member.source()),
            (504, -32603, Source::Upstream),
            "as a timeout"
        );
        assert!(
            member
                .to_string()
                .contains("upstream slow did not answer within its request-timeout (1s)")
        );
        assert_eq!(http(400).source(), Source::Downstream);
        assert_eq!(Error::Spawn(String::new()).exit_code(), 2);
    }

    #[test]
    fn header_refusals() {
        let a = Error::HeaderMismatch("x".into()).answer();
        assert_eq!((a.status, a.code, a.count), (400, -32020, None));
        let repeated = |n: &str| Error::RepeatedHeader(n.into()).answer();
        assert_eq!(
            (repeated("origin").status, repeated("origin").code),
            (400, -32600)
        );
        assert_eq!(repeated("authorization").code, -32600);
        for mirrored in [
            "mcp-method",
            "mcp-name",
            "mcp-protocol-version",
            "mcp-param-region",
        ] {
            assert_eq!(repeated(mirrored).code, -32020, "{mirrored}");
        }
        assert_eq!(
            Error::HeaderMismatch(String::new()).source(),
            Source::Downstream
        );
    }
}
