//! The MCP endpoint's methods: POST (initialize, requests within a session, stateless
//! 2026-07-28 requests, notifications and responses), GET (the standalone stream or a
//! resumption) and DELETE, and how an upstream's reply becomes what the client gets.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use serde::Deserialize;

use crate::bridge;
use crate::error::Error;
use crate::gate::Caller;
use crate::http::{Request, Response};
use crate::jsonrpc::{self, Answered, Kind, LEGACY_VERSIONS, Message};
use crate::session::Session;
use crate::upstream::{Call, Item, MessageStream, Poll, Reply};

use super::checks::{accepts, media_is, single_headers, upstream_headers};
use super::cors;
use super::quota::{Ends, StreamId};
use super::{Access, IMMEDIATE, Outcome, Proxy, error_response};

impl Proxy {
    pub(super) fn route(&self, req: &Request, acc: &mut Access) -> Result<Outcome, Error> {
        let path = req.path();
        if req.method == "GET"
            && let Some(doc) = self.gate.metadata(path, &self.cfg.path)
        {
            return Ok(Outcome::Response(doc));
        }
        if path != self.cfg.path {
            return Err(Error::NotFound);
        }
        single_headers(req)?;
        self.check_origin(req)?;
        acc.cors = cors::origin(req);
        if cors::is_preflight(req) {
            // Before authentication and uncharged: see cors.rs.
            let max_age = self.cfg.cors_max_age.as_secs();
            return cors::preflight(req, max_age).map(Outcome::Response);
        }
        let caller = self.gate.identify(req)?;
        if self.audit.is_on() {
            acc.principal = caller.principal.clone();
        }
        let out = match req.method.as_str() {
            "POST" => self.post(req, &caller, acc),
            "GET" => {
                self.gate.charge(&caller, None)?;
                self.get(req, &caller, acc)
            }
            "DELETE" => {
                self.gate.charge(&caller, None)?;
                self.delete(req, &caller, acc)
            }
            _ => Err(Error::MethodNotAllowed),
        }?;
        self.count_stream(req, &caller, out)
    }

    /// Counts a request's stream against its client's `--max-streams-per-client`; over it, the
    /// answer is refused (429) at the same point `--max-streams` refuses it (503): the request
    /// was forwarded, and only answers that come at once, as JSON, need no stream.
    fn count_stream(&self, req: &Request, caller: &Caller, out: Outcome) -> Result<Outcome, Error> {
        let Outcome::Stream {
            stream,
            first,
            session,
            announce,
            slot: None,
        } = out
        else {
            return Ok(out);
        };
        let client = self.gate.client_key(req, caller);
        let ends = Ends::By(Instant::now() + self.cfg.request_timeout);
        match self
            .stream_quota
            .take(&client, self.stream_quota.request_stream(), ends)
        {
            Ok(slot) => Ok(Outcome::Stream {
                stream,
                first,
                session,
                announce,
                slot: Some(slot),
            }),
            Err(e) => {
                if let (true, Some(s)) = (announce, &session) {
                    // The client never learns this session's id: do not keep it.
                    self.end_session(s);
                }
                Err(e)
            }
        }
    }

    fn post(&self, req: &Request, caller: &Caller, acc: &mut Access) -> Result<Outcome, Error> {
        let deadline = Instant::now() + self.cfg.request_timeout;
        // Parsed before the header checks so that the charge knows the tool; every POST is
        // charged once, malformed ones included.
        let parsed = Message::parse(&req.body);
        let tool = match &parsed {
            Ok(m) if self.gate.limits_tools() && m.method() == "tools/call" => m.target_name(),
            _ => None,
        };
        if let Ok(m) = &parsed {
            acc.id = m.id.clone();
        }
        self.gate.charge(caller, tool.as_deref())?;
        let ct = req.header("content-type").unwrap_or("");
        if !media_is(ct, "application/json") {
            return Err(Error::UnsupportedMediaType);
        }
        if !accepts(req, "application/json") || !accepts(req, "text/event-stream") {
            return Err(Error::NotAcceptable);
        }
        let msg = parsed?;
        let kind = msg.kind()?;
        acc.kind = Some(kind);
        acc.mcp_method = msg.method().to_owned();
        self.note_target(&msg, kind, tool, acc);
        let header_version = req.header("mcp-protocol-version").map(str::trim);
        // `params` members are picked out raw: the rest of params is never built into a tree.
        let head = msg.head();
        let modern = bridge::is_modern(header_version, head.meta);
        let declared = match (modern, kind) {
            (true, Kind::Request) => bridge::validate(&msg, |n| req.header(n))?,
            _ => bridge::Declared::default(),
        };
        if let Some(v) = header_version
            && !modern
            && !LEGACY_VERSIONS.contains(&v)
        {
            return Err(Error::UnsupportedVersion(v.to_owned()));
        }
        let meta_version = head.modern_version();
        if let (Some(h), Some(m)) = (header_version, meta_version.as_deref())
            && h != m
        {
            return Err(Error::HeaderMismatch(
                "MCP-Protocol-Version does not match _meta's protocol version".into(),
            ));
        }
        let version = header_version.or(meta_version.as_deref());
        let headers = upstream_headers(req, &msg, &head, version)?;
        if modern {
            self.tap_stateless(req, caller, acc);
            let reply = match self.fault(&msg, kind, deadline, acc) {
                Some(reply) => reply,
                None => {
                    let m = bridge::Modern {
                        msg,
                        body: &req.body,
                        declared,
                        headers,
                        deadline,
                        principal: caller.principal.as_deref(),
                        client: self.gate.client_key(req, caller),
                    };
                    self.bridge.serve(&self.upstream, &self.sessions, m)?
                }
            };
            let out = self.outcome(reply, kind, deadline, None, false, acc)?;
            return Ok(match out {
                // 2026-07-28: an unknown method is HTTP 404, whoever answered -32601.
                Outcome::Response(mut r) if r.status == 200 && bridge::not_found(&r.body) => {
                    r.status = 404;
                    Outcome::Response(r)
                }
                // A missing client capability is HTTP 400, whoever answered -32021.
                Outcome::Response(mut r)
                    if r.status == 200 && bridge::missing_capability(&r.body) =>
                {
                    r.status = 400;
                    Outcome::Response(r)
                }
                out => out,
            });
        }
        if msg.method() == "initialize" {
            if kind != Kind::Request {
                return Err(Error::InvalidMessage("initialize must be a request"));
            }
            let client = self.gate.client_key(req, caller);
            return self.initialize(msg, deadline, headers, caller, client, acc);
        }
        let sid = req.header("mcp-session-id").ok_or(Error::MissingSession)?;
        let session = self.session(sid, caller)?;
        acc.session = session.short_id().to_owned();
        let tapped = self.tap_before_forward(req, &session, &msg, acc);
        let forwarded = match self.fault(&msg, kind, deadline, acc) {
            Some(reply) => Ok(reply),
            None => self.upstream.forward(Call {
                msg,
                session: Some(&session),
                deadline,
                headers,
            }),
        };
        self.tap_after_forward(&session, tapped, acc);
        match forwarded {
            Ok(reply) => self.outcome(reply, kind, deadline, Some(&session), false, acc),
            Err(e @ (Error::UnknownSession | Error::UpstreamSessionLost)) => {
                log::info!("session {} ended: {e}", session.short_id());
                // The request and its answer go on the tape before the session's end closes it.
                self.record_lost_session(req, acc);
                self.end_session(&session);
                Err(Error::UnknownSession)
            }
            Err(e) => Err(e),
        }
    }

    fn initialize(
        &self,
        msg: Message,
        deadline: Instant,
        headers: Vec<(String, String)>,
        caller: &Caller,
        client: String,
        acc: &mut Access,
    ) -> Result<Outcome, Error> {
        if self.is_draining() {
            return Err(Error::Draining);
        }
        // Before the upstream is asked: a refused client takes no child (per-session mode).
        let (expired, room) = self.sessions.check_room(&client);
        for s in expired {
            self.retire(&s);
        }
        room?;
        // A rule naming initialize: its error or drop answers without a session.
        if let Some(reply) = self.fault(&msg, Kind::Request, deadline, acc) {
            return self.outcome(reply, Kind::Request, deadline, None, false, acc);
        }
        let requested = msg
            .params_value()
            .and_then(|p| p.get("protocolVersion")?.as_str().map(str::to_owned))
            .unwrap_or_default();
        let call = Call {
            msg,
            session: None,
            deadline,
            headers,
        };
        let (binding, reply) = match self.upstream.initialize(call) {
            // The upstream ran out of room for sessions (every per-session child is taken):
            // they free up as sessions end, or sooner when the upstream says when it can
            // evict one (0: it cannot tell).
            Err(Error::TooManySessions { retry_after }) => {
                let expiry = self.sessions.retry_after();
                return Err(Error::TooManySessions {
                    retry_after: if retry_after > 0 {
                        retry_after.min(expiry)
                    } else {
                        expiry
                    },
                });
            }
            r => r?,
        };
        if !matches!(reply, Reply::Message(_) | Reply::Stream(_)) {
            return self.outcome(reply, Kind::Request, deadline, None, false, acc);
        }
        // Never the client's text (it may be megabytes): a version the proxy knows.
        let version = session_version(&reply, &requested);
        let session = self.sessions.build(
            version.to_owned(),
            binding,
            caller.principal.clone(),
            client,
        )?;
        session.set_scopes(caller.scopes.clone());
        // With --limits-store, the client's quota across every instance (issue #17).
        let claimed =
            self.gate
                .claim_session(&session.client, &session.id, self.sessions.max_per_client());
        if let Err(e) = claimed.and_then(|()| self.sessions.insert(&session)) {
            // Filled up since `check_room`: the upstream side was set up, so wind it down.
            self.gate.release_session(&session.client, &session.id);
            self.upstream.close(&session);
            return Err(e);
        }
        self.upstream.attach(&session);
        acc.session = session.short_id().to_owned();
        self.tap_new_session(&session, acc);
        log::debug!("session {} created", session.short_id());
        self.outcome(reply, Kind::Request, deadline, Some(&session), true, acc)
    }

    /// The live session `sid` names, if `caller` owns it (the same principal, with the same
    /// JWT scopes): another's session is not found, exactly as an unknown id.
    fn session(&self, sid: &str, caller: &Caller) -> Result<Arc<Session>, Error> {
        self.not_foreign(sid.trim())?;
        let session = self
            .sessions
            .get_as(sid.trim(), caller.principal.as_deref())
            .ok_or(Error::UnknownSession)?;
        // Policy may name JWT scopes (federation): a token whose scopes differ from those the
        // session began with is another caller, who starts a session of its own.
        let (had, has) = (session.scopes(), &caller.scopes[..]);
        if had.len() != has.len() || !has.iter().all(|s| had.contains(s)) {
            return Err(Error::UnknownSession);
        }
        Ok(session)
    }

    /// A session id of another instance (a balancer sent it here, e.g. after its instance
    /// went away) is not found, like an unknown one, and counted.
    fn not_foreign(&self, sid: &str) -> Result<(), Error> {
        if self.sessions.is_foreign(sid) {
            self.metrics.foreign_session();
            return Err(Error::UnknownSession);
        }
        Ok(())
    }

    fn get(&self, req: &Request, caller: &Caller, acc: &mut Access) -> Result<Outcome, Error> {
        if !accepts(req, "text/event-stream") {
            return Err(Error::NotAcceptable);
        }
        let sid = req.header("mcp-session-id").ok_or(Error::MissingSession)?;
        let session = self.session(sid, caller)?;
        acc.session = session.short_id().to_owned();
        let (log, after) = match req.header("last-event-id") {
            Some(last) => session
                .streams
                .resume(last)
                .map_err(|_| Error::UnknownEventId(last.chars().take(64).collect()))?,
            None => {
                let log = session.streams.standalone();
                let after = log.last_seq();
                (log, after)
            }
        };
        // A GET that takes over the log it already follows (a reconnect) keeps its one slot.
        let slot = self.stream_quota.take(
            &self.gate.client_key(req, caller),
            StreamId::Follow(Arc::as_ptr(&log) as usize),
            Ends::WithSession(Arc::downgrade(&session)),
        )?;
        if session
            .streams
            .standalone_if_open()
            .is_some_and(|s| Arc::ptr_eq(&s, &log))
        {
            self.upstream.listen(&session)?;
            // The standalone stream's events reach the tape as they are delivered (a request
            // stream's were recorded as they were pumped).
            acc.tap = self.tapes.session(&session.id, &session.protocol_version);
        }
        Ok(Outcome::Follow { log, after, slot })
    }

    fn delete(&self, req: &Request, caller: &Caller, acc: &mut Access) -> Result<Outcome, Error> {
        let sid = req.header("mcp-session-id").ok_or(Error::MissingSession)?;
        self.not_foreign(sid.trim())?;
        let session = self
            .sessions
            .remove_as(sid.trim(), caller.principal.as_deref())
            .ok_or(Error::UnknownSession)?;
        acc.session = session.short_id().to_owned();
        self.retire(&session);
        log::debug!("session {} deleted", session.short_id());
        Ok(Outcome::Response(Response::new(200)))
    }

    /// Turns an upstream reply into what the client gets. `announce` adds the session's id
    /// header (the answer to `initialize`).
    fn outcome(
        &self,
        reply: Reply,
        kind: Kind,
        deadline: Instant,
        session: Option<&Arc<Session>>,
        announce: bool,
        acc: &mut Access,
    ) -> Result<Outcome, Error> {
        let with_session = |mut r: Response| {
            if let (true, Some(s)) = (announce, session) {
                r = r.with_header("mcp-session-id", &s.id);
            }
            r
        };
        match reply {
            Reply::Accepted if kind != Kind::Request => Ok(Outcome::Response(Response::new(202))),
            Reply::Accepted => Err(Error::UpstreamProtocol(
                "upstream accepted a request without answering it".into(),
            )),
            Reply::Message(body) if kind == Kind::Request => Ok(Outcome::Response(with_session(
                Response::new(200).with_body("application/json", body),
            ))),
            Reply::Message(_) => Ok(Outcome::Response(Response::new(202))),
            Reply::Relay {
                status,
                content_type,
                body,
            } => {
                // A JSON error body (e.g. a 2026-07-28 404 -32601) goes back as it is, so
                // dual-era clients can read it; anything else becomes a JSON-RPC error.
                let json = media_is(&content_type, "application/json")
                    && serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_ok();
                if json && status < 500 {
                    return Ok(Outcome::Response(
                        Response::new(status).with_body("application/json", body),
                    ));
                }
                acc.synthetic = true;
                let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
                let e = Error::UpstreamStatus {
                    status,
                    message: format!(
                        "upstream {} answered HTTP {status}: {text}",
                        self.upstream.name()
                    ),
                };
                Ok(Outcome::Response(error_response(&e, acc.id.as_deref())))
            }
            Reply::Stream(mut stream) => {
                if acc.wants_answer() {
                    let seen = Arc::new(std::sync::OnceLock::new());
                    acc.streamed = Some(seen.clone());
                    stream = Box::new(Noted {
                        inner: stream,
                        seen,
                        tools_call: acc.mcp_method == "tools/call",
                    });
                }
                let mut first = None;
                if !stream.must_stream() {
                    // An answer that comes at once goes back as plain JSON; anything slower
                    // becomes a stream, which frees the worker and can carry progress.
                    let until = deadline.min(Instant::now() + IMMEDIATE);
                    match stream.poll_until(until)? {
                        Poll::Item(Item::Final(body)) => {
                            return Ok(Outcome::Response(with_session(
                                Response::new(200).with_body("application/json", body),
                            )));
                        }
                        Poll::Item(item) => first = Some(item),
                        Poll::Idle => {}
                        Poll::End => {
                            return Err(Error::UpstreamProtocol(
                                "upstream ended the request without answering".into(),
                            ));
                        }
                    }
                }
                Ok(Outcome::Stream {
                    stream,
                    first,
                    session: session.cloned(),
                    announce,
                    slot: None,
                })
            }
        }
    }
}

/// The newest session-era version the proxy knows.
const NEWEST_LEGACY: &str = LEGACY_VERSIONS[LEGACY_VERSIONS.len() - 1];

/// The protocol version a new session keeps, always one of the proxy's own constants: the one
/// the upstream's answer to `initialize` names, when the proxy knows it; else the client's
/// requested one, when the proxy knows it (an answer that came as a stream is not read here);
/// else the newest session-era version. An unknown version a client asks for is negotiated by
/// the upstream and never stored.
fn session_version(reply: &Reply, requested: &str) -> &'static str {
    let answered = match reply {
        Reply::Message(body) => answered_version(body),
        _ => None,
    };
    answered
        .or_else(|| known_version(requested))
        .unwrap_or(NEWEST_LEGACY)
}

/// `version` as the proxy's own constant, if it is a session-era version the proxy knows.
fn known_version(version: &str) -> Option<&'static str> {
    LEGACY_VERSIONS.iter().copied().find(|v| *v == version)
}

/// The known version in an `initialize` answer's `result.protocolVersion`, if any.
fn answered_version(body: &[u8]) -> Option<&'static str> {
    #[derive(Deserialize)]
    struct Answer<'a> {
        #[serde(borrow)]
        result: Option<Negotiated<'a>>,
    }
    #[derive(Deserialize)]
    struct Negotiated<'a> {
        #[serde(rename = "protocolVersion", borrow)]
        protocol_version: Option<Cow<'a, str>>,
    }
    let answer: Answer<'_> = serde_json::from_slice(body).ok()?;
    known_version(&answer.result?.protocol_version?)
}

/// Passes a stream on unchanged and notes, for the access log, how its final message (or
/// its failure) answered the request.
struct Noted {
    inner: Box<dyn MessageStream>,
    seen: Arc<std::sync::OnceLock<Answered>>,
    tools_call: bool,
}

impl MessageStream for Noted {
    fn poll_until(&mut self, wake: Instant) -> Result<Poll, Error> {
        let polled = self.inner.poll_until(wake);
        let answer = match &polled {
            Ok(Poll::Item(Item::Final(body))) => jsonrpc::answered(body, self.tools_call),
            Err(e) => Some(Answered::Error(Some(e.rpc_code()))),
            Ok(_) => None,
        };
        if let Some(a) = answer {
            let _ = self.seen.set(a);
        }
        polled
    }

    fn must_stream(&self) -> bool {
        self.inner.must_stream()
    }

    fn dropped(&mut self) -> u64 {
        self.inner.dropped()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_store_a_known_version_never_the_clients_text() {
        let answer = |v: &str| {
            Reply::Message(
                format!(r#"{{"jsonrpc":"2.0","id":0,"result":{{"protocolVersion":"{v}"}}}}"#)
                    .into_bytes(),
            )
        };
        let huge = "x".repeat(1 << 20);
        // The upstream's answer wins when known.
        assert_eq!(session_version(&answer("2025-03-26"), &huge), "2025-03-26");
        assert_eq!(
            session_version(&answer("2025-06-18"), "2025-11-25"),
            "2025-06-18"
        );
        // An unknown answer or none: the client's version if known, else the newest.
        assert_eq!(session_version(&answer(&huge), "2025-06-18"), "2025-06-18");
        assert_eq!(session_version(&Reply::Accepted, &huge), NEWEST_LEGACY);
        assert_eq!(session_version(&answer("2099-01-01"), &huge), "2025-11-25");
        let garbage = Reply::Message(b"not json".to_vec());
        assert_eq!(session_version(&garbage, "2024-11-05"), "2024-11-05");
    }
}
