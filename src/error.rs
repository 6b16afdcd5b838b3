//! The one error type of the proxy, and the one place that maps it to HTTP and JSON-RPC.
//!
//! Every failure a request can meet is a variant of [`Error`]. [`Error::status`] gives the HTTP
//! status the client sees and [`Error::rpc_code`] the JSON-RPC error code in the body; nothing
//! else in the crate decides either.

use std::fmt;
use std::io;

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
    /// without a required scope (403). The answer carries `WWW-Authenticate`.
    Auth(Denial),
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
    /// A GET's `Last-Event-ID` names no stream of the session, or events after it were
    /// already dropped from the replay buffer.
    UnknownEventId(String),
    /// The HTTP method is not one the endpoint serves.
    MethodNotAllowed,
    /// The path is not the MCP endpoint.
    NotFound,
    /// A modern (2026-07-28) request reached an upstream that only speaks the legacy protocol.
    LegacyOnly,
    /// `--max-sessions` sessions exist and none has expired.
    TooManySessions,
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
    /// The stdio child serving the request exited (or closed stdout) before it answered.
    ChildExited(String),
    /// No live upstream can take the request (every child is down or restarting).
    Unavailable(String),
    /// The request did not finish within `--request-timeout`.
    Timeout,
    /// A bug: a handler panicked or an invariant broke.
    Internal(String),
    /// Invalid configuration, found at start-up.
    Config(String),
    /// An I/O error at start-up (bind, spawn).
    Io(io::Error),
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
    /// The HTTP status the client gets for this error.
    pub fn status(&self) -> u16 {
        match self {
            Error::Parse(_) | Error::InvalidMessage(_) => 400,
            Error::UnsupportedMediaType => 415,
            Error::NotAcceptable => 406,
            Error::Forbidden(_) => 403,
            Error::Auth(Denial::Scope(_)) => 403,
            Error::Auth(_) => 401,
            Error::RateLimited { .. } => 429,
            Error::MissingSession
            | Error::UnsupportedVersion(_)
            | Error::LegacyOnly
            | Error::UnknownEventId(_) => 400,
            Error::UnknownSession | Error::UpstreamSessionLost | Error::NotFound => 404,
            Error::MethodNotAllowed => 405,
            Error::TooManySessions | Error::TooManyStreams | Error::UpstreamBusy => 503,
            Error::Unavailable(_) => 503,
            Error::UpstreamUnreachable { .. } | Error::UpstreamProtocol(_) => 502,
            Error::ChildExited(_) => 502,
            Error::Timeout => 504,
            Error::Internal(_) | Error::Config(_) | Error::Io(_) => 500,
        }
    }

    /// The JSON-RPC error code in the body.
    ///
    /// -32700 parse error, -32600 invalid request (transport-level refusals too: 401, 403,
    /// 429 included), -32601 for an
    /// unknown path or method, -32001 session not found (as the TypeScript SDK uses it), -32603
    /// for everything the upstream or the proxy itself failed at.
    pub fn rpc_code(&self) -> i64 {
        match self {
            Error::Parse(_) => -32700,
            Error::InvalidMessage(_)
            | Error::UnsupportedMediaType
            | Error::NotAcceptable
            | Error::Forbidden(_)
            | Error::Auth(_)
            | Error::RateLimited { .. }
            | Error::MissingSession
            | Error::UnsupportedVersion(_)
            | Error::UnknownEventId(_)
            | Error::LegacyOnly => -32600,
            Error::NotFound | Error::MethodNotAllowed => -32601,
            Error::UnknownSession | Error::UpstreamSessionLost => -32001,
            _ => -32603,
        }
    }

    /// Seconds a client should wait before retrying, for the overload answers.
    pub fn retry_after(&self) -> Option<u32> {
        match self {
            Error::TooManySessions | Error::TooManyStreams | Error::UpstreamBusy => Some(1),
            Error::Unavailable(_) => Some(2),
            Error::RateLimited { retry_after, .. } => {
                Some(u32::try_from(*retry_after).unwrap_or(u32::MAX))
            }
            _ => None,
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
            Error::Auth(Denial::Missing) => {
                write!(f, "unauthorized: bearer token required")
            }
            Error::Auth(Denial::Invalid(why)) => {
                write!(f, "unauthorized: invalid token ({why})")
            }
            Error::Auth(Denial::Scope(scopes)) => {
                write!(f, "forbidden: insufficient scope (needs {scopes})")
            }
            Error::RateLimited { scope, retry_after } => {
                write!(f, "rate limited ({scope} limit): retry in {retry_after}s")
            }
            Error::MissingSession => write!(f, "bad request: missing mcp-session-id"),
            Error::UnknownSession => write!(f, "session not found"),
            Error::UnsupportedVersion(v) => write!(f, "unsupported protocol version: {v}"),
            Error::UnknownEventId(id) => {
                write!(
                    f,
                    "unknown or expired last-event-id {id:?}: nothing to resume"
                )
            }
            Error::MethodNotAllowed => write!(f, "method not allowed"),
            Error::NotFound => write!(f, "not found"),
            Error::LegacyOnly => write!(
                f,
                "upstream speaks only the session-based protocol: send initialize"
            ),
            Error::TooManySessions => write!(f, "too many sessions"),
            Error::TooManyStreams => write!(f, "too many open streams"),
            Error::UpstreamBusy => write!(f, "upstream busy: no connection free"),
            Error::UpstreamUnreachable { upstream, source } => {
                write!(f, "upstream {upstream} unreachable: {source}")
            }
            Error::UpstreamProtocol(why) => write!(f, "upstream protocol error: {why}"),
            Error::UpstreamSessionLost => write!(f, "session not found (upstream ended it)"),
            Error::ChildExited(name) => write!(f, "upstream process {name} exited"),
            Error::Unavailable(what) => write!(f, "upstream unavailable: {what}"),
            Error::Timeout => write!(f, "request timed out"),
            Error::Internal(why) => write!(f, "internal error: {why}"),
            Error::Config(why) => write!(f, "{why}"),
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
        let denied = |d| Error::Auth(d);
        assert_eq!(denied(Denial::Missing).status(), 401);
        assert_eq!(denied(Denial::Invalid("x".into())).status(), 401);
        assert_eq!(denied(Denial::Scope("a".into())).status(), 403);
        let limited = Error::RateLimited {
            scope: "client",
            retry_after: 3,
        };
        assert_eq!((limited.status(), limited.retry_after()), (429, Some(3)));
        assert_eq!(
            Error::ChildExited("demo#0".into()).to_string(),
            "upstream process demo#0 exited"
        );
    }
}
