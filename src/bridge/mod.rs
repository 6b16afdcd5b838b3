//! The era bridge: shadowcat as a conformant 2026-07-28 server, whatever era its upstream
//! speaks.
//!
//! Every 2026-07-28 ("modern") request is checked here first ([`validate`]): removed methods
//! (404 -32601), the required `_meta` members (400 -32602), the protocol version (400 -32022
//! with `{supported, requested}`), the mirrored headers (400 -32020). Then:
//! * an upstream that speaks 2026-07-28 gets the request statelessly, as it came;
//! * an upstream that speaks only the session era (it refused the stateless request: a stdio
//!   child without 2026-07-28, a per-session child, or an HTTP server's own 400) is
//!   **bridged**: the request travels over a proxy-owned session ([`legacy`]), its result
//!   gains `resultType`, `_meta[serverInfo]` and, for list and read results, `ttlMs` and
//!   `cacheScope` ([`shape`]); `server/discover` is synthesised from the upstream's
//!   `initialize` answer; a server-to-client request made during the call becomes an
//!   `InputRequiredResult` with a sealed `requestState` ([`state`], [`mrtr`]; the waiting
//!   calls, bounded and expiring, in [`waiting`]); `subscriptions/listen` is served by the
//!   proxy ([`listen`]).
//!
//! The other way round, a session-era client in front of a 2026-07-28-only upstream (a stdio
//! child in either mode, an HTTP server) is served by [`modern_upstream`]: the session's
//! `_meta` on each request, and `InputRequiredResult`s turned into classic server-to-client
//! requests (the upstreams call it: `crate::upstream::stdio`, `crate::upstream::http`).
//!
//! Owns: the era decision, the bridge sessions, the waiting calls and their states. Must not
//! touch: the client session table (bridge sessions are never in it), the HTTP exchange (the
//! pipeline in [`crate::proxy`] turns the [`Reply`] it gets into the client's answer), or how
//! an upstream works (only the [`Upstream`] trait).

pub mod legacy;
pub mod listen;
pub mod modern_upstream;
pub mod mrtr;
pub mod pump;
pub mod shape;
pub mod state;
pub mod validate;
pub mod waiting;

#[cfg(test)]
mod pool_tests;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::config::BridgeConfig;
use crate::error::Error;
use crate::jsonrpc::{Kind, Message};
use crate::session::Sessions;
use crate::upstream::{Call, Item, MessageStream, Poll, Reply, Upstream};
use crate::util::lock;

pub use validate::{Declared, is_modern, validate};

/// How long a refusal of a stateless request marks the upstream as session-era only.
const LEGACY_FOR: Duration = Duration::from_secs(60);
/// Input rounds a bridged call may take at full timeouts (its upstream deadline).
const MAX_ROUNDS: u32 = 4;
/// Capable bridge sessions open at once (each is a child in per-session stdio mode).
const MAX_CAPABLE: usize = 16;
/// The methods that may answer with an `InputRequiredResult`.
const MRTR_METHODS: &[&str] = &["tools/call", "prompts/get", "resources/read"];

/// One 2026-07-28 request, validated.
pub struct Modern<'a> {
    /// The request body as it came (forwarded as-is to a 2026-07-28 upstream).
    pub msg: Message,
    /// Its raw body, re-read when a session-era upstream refuses it.
    pub body: &'a [u8],
    /// What its `_meta` declared.
    pub declared: Declared,
    /// Headers for the upstream (`crate::proxy` built them).
    pub headers: Vec<(String, String)>,
    /// The request's deadline.
    pub deadline: Instant,
    /// The authenticated principal, if any.
    pub principal: Option<&'a str>,
    /// The client as quotas count it (`principal:…` or `ip:…`): `--input-max-per-client`.
    pub client: String,
}

/// Who asks, and by when: what a bridged request needs of its [`Modern`] beside the message.
struct Who<'a> {
    declared: Declared,
    deadline: Instant,
    principal: Option<&'a str>,
    client: String,
}

/// The bridge.
pub struct Bridge {
    ctx: Arc<mrtr::Ctx>,
    pool: Arc<legacy::Pool>,
    subs: Arc<listen::Subscriptions>,
    legacy_until: Mutex<Option<Instant>>,
    request_timeout: Duration,
}

impl Bridge {
    /// A bridge with `cfg`; upstream requests take at most `request_timeout` per round.
    pub fn new(cfg: &BridgeConfig, request_timeout: Duration) -> Bridge {
        Bridge {
            ctx: mrtr::Ctx::new(cfg),
            pool: legacy::Pool::new(MAX_CAPABLE),
            subs: Arc::default(),
            legacy_until: Mutex::new(None),
            request_timeout,
        }
    }

    /// Calls waiting for their client's input now (`shadowcat_bridge_waiting_calls`).
    pub fn waiting(&self) -> usize {
        self.ctx.parked()
    }

    /// Capable bridge sessions serving a running call or idle (`shadowcat_bridge_sessions`).
    pub fn sessions(&self) -> usize {
        let (open, parked) = self.pool.counts();
        open.saturating_sub(parked)
    }

    /// Ends the bridge sessions upstream (shutdown).
    pub fn close(&self, upstream: &dyn Upstream) {
        self.pool.close_all(upstream);
    }

    /// Serves a validated 2026-07-28 request.
    pub fn serve(
        &self,
        upstream: &Arc<dyn Upstream>,
        sessions: &Sessions,
        m: Modern<'_>,
    ) -> Result<Reply, Error> {
        let Modern {
            msg,
            body,
            declared,
            headers,
            deadline,
            principal,
            client,
        } = m;
        let who = Who {
            declared,
            deadline,
            principal,
            client,
        };
        let legacy = lock(&self.legacy_until).is_some_and(|t| Instant::now() < t);
        if !legacy {
            let call = Call {
                msg,
                session: None,
                deadline,
                headers,
            };
            let listen = call.msg.method() == "subscriptions/listen";
            match upstream.forward(call) {
                Err(Error::LegacyOnly) => {}
                Ok(Reply::Relay { status, body, .. }) if legacy_refusal(status, &body) => {}
                // An upstream that speaks 2026-07-28 but does not serve subscriptions/listen
                // (-32601): the proxy serves it over a bridge session.
                Ok(reply) if listen => match first_not_found(reply, deadline)? {
                    Some(reply) => return Ok(reply),
                    None => {
                        let msg = Message::parse(body)?;
                        return self.bridged(upstream, sessions, msg, &who);
                    }
                },
                other => return other,
            }
            *lock(&self.legacy_until) = Some(Instant::now() + LEGACY_FOR);
            let msg = Message::parse(body)?;
            return self.bridged(upstream, sessions, msg, &who);
        }
        self.bridged(upstream, sessions, msg, &who)
    }

    /// Serves a 2026-07-28 request over a session-era upstream.
    fn bridged(
        &self,
        upstream: &Arc<dyn Upstream>,
        sessions: &Sessions,
        msg: Message,
        who: &Who<'_>,
    ) -> Result<Reply, Error> {
        let (declared, deadline) = (who.declared, who.deadline);
        if msg.kind()? != Kind::Request {
            // Nothing to carry it to: a session-era notification has no 2026-07-28 meaning
            // outside a call (cancellation is closing the call's stream).
            return Ok(Reply::Accepted);
        }
        let id = msg.id.clone().unwrap_or_else(crate::jsonrpc::null);
        let method = msg.method().to_owned();
        let hello = self.pool.hello(upstream.as_ref(), sessions, deadline)?;
        let finish = shape::Finish {
            server_info: shape::server_info(&hello.result),
            ttl_ms: self.ctx.cfg.cache_ttl.as_millis() as u64,
        };
        if method == "server/discover" {
            let d = shape::discover(&hello.result, &finish, true);
            return Ok(Reply::Message(crate::jsonrpc::result_body(
                &id,
                &d.to_string(),
            )));
        }
        if method == "subscriptions/listen" {
            let filter = listen::Filter::of(msg.params_value().as_ref())?;
            let lease = self
                .pool
                .lease(upstream.as_ref(), sessions, false, deadline)?;
            let id: Value = serde_json::from_str(id.get()).unwrap_or(Value::Null);
            let stream = listen::Listen::start(
                upstream.clone(),
                lease.session.clone(),
                hello.version,
                self.subs.clone(),
                filter,
                id,
            )?;
            return Ok(Reply::Stream(Box::new(stream)));
        }
        if !validate::KNOWN.contains(&method.as_str()) {
            return Err(Error::UnknownMethod(format!(
                "{method} is not served for this upstream"
            )));
        }
        if let Some(cap) = shape::needs(&method)
            && !shape::declares(&hello.result, cap)
        {
            return Err(Error::UnknownMethod(format!(
                "the server does not declare {cap}"
            )));
        }
        let mut params = match msg.params_value() {
            Some(Value::Object(p)) => p,
            None => serde_json::Map::new(),
            Some(_) => return Err(Error::InvalidParams("params must be an object".into())),
        };
        let state = params.remove("requestState");
        let responses = params.remove("inputResponses");
        let target = msg.target_name().unwrap_or_default();
        let call = mrtr::CallInfo {
            client: who.client.clone(),
            method: method.clone(),
            principal: state::digest(&[who.principal.unwrap_or("")]),
            request: state::digest(&[&method, &target]),
            caps: declared.caps,
            log_level: declared.log_level,
            finish,
            asked: 0,
        };
        if let Some(state) = state {
            let Value::String(state) = state else {
                return Err(Error::InvalidParams("requestState must be a string".into()));
            };
            let stream = mrtr::resume(
                &self.ctx,
                &state,
                responses.as_ref(),
                call,
                id,
                self.request_timeout,
            )?;
            return Ok(Reply::Stream(Box::new(stream)));
        }
        // A call that may ask the client runs in a capable session whatever the client
        // declared: the upstream then asks, and a request for a capability the client did not
        // declare becomes -32021 (`mrtr::Bridged::asked`), as the spec has a server answer a
        // request it cannot serve without that capability; in the plain session the upstream
        // would be refused and answer its own error result, as if the call had run.
        let capable = MRTR_METHODS.contains(&method.as_str());
        let asks = capable && declared.caps.any();
        let upstream_id = format!("\"shadowcat-b{}\"", self.ctx.next());
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{upstream_id},"method":{},"params":{}}}"#,
            serde_json::to_string(&method).map_err(|e| Error::Internal(e.to_string()))?,
            Value::Object(params)
        );
        let inner_deadline = if asks {
            Instant::now() + (self.request_timeout + self.ctx.cfg.input_timeout) * MAX_ROUNDS
        } else {
            deadline
        };
        // A lost session is dropped and the call tried on the next: several idle sessions may
        // have been lost at once (an HTTP replica that died holds its share of them), so as
        // many tries as there were sessions, and one more (a fresh session). Never more: an
        // upstream that loses every session must not get a burst of them per request.
        let retries = self.pool.counts().0 + 1;
        let mut tries = 0;
        loop {
            tries += 1;
            let mut lease = match self
                .pool
                .lease(upstream.as_ref(), sessions, capable, deadline)
            {
                // Every capable session is busy: a client that can be asked nothing goes to
                // the plain one rather than waiting (its -32021 is then the upstream's error).
                Err(Error::Unavailable(_)) if !asks => {
                    self.pool
                        .lease(upstream.as_ref(), sessions, false, deadline)?
                }
                r => r?,
            };
            let version = lock_version(&self.pool, upstream.as_ref(), sessions, deadline)?;
            let forwarded = upstream.forward(Call {
                msg: Message::parse(body.as_bytes())?,
                session: Some(&lease.session),
                deadline: inner_deadline,
                headers: vec![("MCP-Protocol-Version".to_owned(), version.to_owned())],
            });
            let reply = match forwarded {
                Err(Error::UnknownSession | Error::UpstreamSessionLost) if tries <= retries => {
                    self.pool.lost(upstream.as_ref(), &mut lease);
                    continue;
                }
                r => r?,
            };
            return match reply {
                Reply::Message(b) => Ok(Reply::Message(call.finish.answer(&b, &id, &method)?)),
                Reply::Stream(mut stream) => {
                    if capable && stream.must_stream() {
                        // An HTTP upstream's body blocks in its read: a thread reads it, so
                        // that input requests made together are gathered into one round
                        // and an answer that comes at once is answered as such (`pump`).
                        stream = Box::new(pump::Pumped::start(stream)?);
                    }
                    let run = mrtr::Running {
                        stream,
                        lease,
                        upstream: upstream.clone(),
                        id: upstream_id,
                        version,
                        finished: false,
                    };
                    let round = Instant::now() + self.request_timeout;
                    Ok(Reply::Stream(Box::new(mrtr::Bridged::new(
                        self.ctx.clone(),
                        run,
                        call,
                        id,
                        Vec::new(),
                        round,
                    ))))
                }
                Reply::Accepted => Err(Error::UpstreamProtocol(
                    "upstream accepted a request without answering it".into(),
                )),
                Reply::Relay { status, body, .. } => Err(Error::UpstreamStatus {
                    status,
                    message: format!(
                        "upstream {} answered HTTP {status}: {}",
                        upstream.name(),
                        String::from_utf8_lossy(&body[..body.len().min(200)])
                    ),
                }),
            };
        }
    }
}

/// The protocol version of the bridge sessions.
fn lock_version(
    pool: &legacy::Pool,
    upstream: &dyn Upstream,
    sessions: &Sessions,
    deadline: Instant,
) -> Result<&'static str, Error> {
    Ok(pool.hello(upstream, sessions, deadline)?.version)
}

/// True when a JSON-RPC response body is a -32601 (method not found) error.
pub fn not_found(body: &[u8]) -> bool {
    error_code(body) == Some(-32601)
}

/// True when a JSON-RPC response body is a -32021 (missing client capability) error.
pub fn missing_capability(body: &[u8]) -> bool {
    error_code(body) == Some(-32021)
}

/// The `error.code` of a JSON-RPC response body, if it is an error.
fn error_code(body: &[u8]) -> Option<i64> {
    #[derive(serde::Deserialize)]
    struct Body {
        error: Option<Code>,
    }
    #[derive(serde::Deserialize)]
    struct Code {
        code: i64,
    }
    serde_json::from_slice::<Body>(body)
        .ok()?
        .error
        .map(|e| e.code)
}

/// `None` when `reply` answers at once with -32601; else the reply, unchanged (a stream's
/// first item, read to decide, is given back first).
fn first_not_found(reply: Reply, deadline: Instant) -> Result<Option<Reply>, Error> {
    match reply {
        Reply::Message(b) if not_found(&b) => Ok(None),
        Reply::Relay { ref body, .. } if not_found(body) => Ok(None),
        Reply::Stream(mut s) => {
            let until = deadline.min(Instant::now() + Duration::from_secs(2));
            match s.poll_until(until)? {
                Poll::Item(Item::Final(b)) if not_found(&b) => Ok(None),
                Poll::Item(item) => Ok(Some(Reply::Stream(Box::new(Prepend {
                    first: Some(item),
                    rest: s,
                })))),
                Poll::Idle => Ok(Some(Reply::Stream(s))),
                Poll::End => Ok(Some(Reply::Stream(Box::new(Prepend {
                    first: None,
                    rest: s,
                })))),
            }
        }
        other => Ok(Some(other)),
    }
}

/// A stream whose first item was already read.
struct Prepend {
    first: Option<Item>,
    rest: Box<dyn MessageStream>,
}

impl MessageStream for Prepend {
    fn poll_until(&mut self, wake: Instant) -> Result<Poll, Error> {
        match self.first.take() {
            Some(item) => Ok(Poll::Item(item)),
            None => self.rest.poll_until(wake),
        }
    }

    fn must_stream(&self) -> bool {
        self.rest.must_stream()
    }

    fn dropped(&mut self) -> u64 {
        self.rest.dropped()
    }
}

/// True when an upstream's refusal of a stateless request means it speaks only the session
/// era: a 400 that is not a 2026-07-28 error ("Server not initialized", "Bad Request: No
/// valid session ID"), or a 404/405 that is not a 2026-07-28 "method not found".
fn legacy_refusal(status: u16, body: &[u8]) -> bool {
    match status {
        400 => !modern_error(body),
        404 | 405 => !not_found(body),
        _ => false,
    }
}

/// True when an upstream's 400 body is a 2026-07-28 error (header mismatch, missing
/// capability, unsupported version, invalid params): the upstream speaks 2026-07-28 and the
/// refusal is the client's to see. Anything else (a session-era "Server not initialized")
/// means the upstream speaks only the session era.
fn modern_error(body: &[u8]) -> bool {
    matches!(error_code(body), Some(-32020 | -32021 | -32022 | -32602))
}

#[cfg(test)]
mod era_tests {
    use super::*;

    #[test]
    fn which_refusals_mean_session_era_only() {
        let err = |code: i64| {
            format!(r#"{{"jsonrpc":"2.0","id":null,"error":{{"code":{code},"message":"x"}}}}"#)
        };
        assert!(
            legacy_refusal(400, err(-32000).as_bytes()),
            "Server not initialized"
        );
        assert!(legacy_refusal(
            400,
            b"Bad Request: No valid session ID provided"
        ));
        assert!(!legacy_refusal(400, err(-32020).as_bytes()));
        assert!(!legacy_refusal(400, err(-32022).as_bytes()));
        assert!(
            !legacy_refusal(404, err(-32601).as_bytes()),
            "a modern unknown method"
        );
        assert!(legacy_refusal(404, b"session not found"));
        assert!(legacy_refusal(405, b""));
        assert!(!legacy_refusal(500, b""));
        assert!(!legacy_refusal(401, err(-32600).as_bytes()));
    }
}
