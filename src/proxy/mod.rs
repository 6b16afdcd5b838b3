//! The request pipeline: the one place where every request is validated, tied to its session,
//! forwarded, logged and, when it fails, mapped to an answer.
//!
//! Order of checks on the MCP endpoint (each failure answers at once):
//!
//! 1. path (404), then `Origin` allow-list and, on a loopback listener, `Host` (403);
//! 2. method: POST, GET, DELETE, anything else 405 with `Allow`;
//! 3. POST: `Content-Type` (415), `Accept` (406), body size (413, in the HTTP layer), JSON
//!    (400 -32700), JSON-RPC shape (400 -32600), `MCP-Protocol-Version` (400);
//! 4. era: a request carrying `_meta["io.modelcontextprotocol/protocolVersion"]` or
//!    `MCP-Protocol-Version: 2026-07-28` is forwarded statelessly; `initialize` creates a
//!    session; anything else needs a live session (400 without, 404 unknown or expired);
//! 5. the upstream's reply goes back as JSON when it is one immediate message, else as SSE.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::value::RawValue;

use crate::config::ProxyConfig;
use crate::error::{Count, Error};
use crate::gate::{Caller, Gatekeeper};
use crate::http::origin::{is_loopback_host, loopback_origin, normalize_origin};
use crate::http::{Handler, Responder, StreamError};
use crate::http::{Request, Response};
use crate::jsonrpc::LEGACY_VERSIONS;
use crate::jsonrpc::{self, Kind, Message};
use crate::metrics::{MethodClass, Metrics};
use crate::session::{Session, Sessions};
use crate::stream::EventLog;
use crate::upstream::{Call, Item, MessageStream, Poll, Reply, Upstream};

/// How long a request may take and still be answered as plain JSON.
const IMMEDIATE: Duration = Duration::from_millis(200);
/// How often a waiting stream checks for shutdown.
const SHUTDOWN_POLL: Duration = Duration::from_millis(250);

use crate::jsonrpc::MODERN_VERSION;

/// Headers a client may send that go upstream. Everything else (notably `Authorization`,
/// `Cookie`, `X-Api-Key`, `X-Forwarded-*`) stays here.
/// (`Last-Event-ID` goes upstream only on the proxy's own resumption GETs.)
fn forwardable(name: &str) -> bool {
    ["mcp-protocol-version", "mcp-method", "mcp-name"]
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h))
        || name
            .get(..10)
            .is_some_and(|p| p.eq_ignore_ascii_case("mcp-param-"))
}

/// The MCP endpoint handler.
pub struct Proxy {
    cfg: ProxyConfig,
    sessions: Sessions,
    upstream: Arc<dyn Upstream>,
    loopback: bool,
    warn_throttle: Throttle,
    metrics: Arc<Metrics>,
    server: std::sync::OnceLock<std::sync::Weak<crate::http::Server>>,
    gate: Gatekeeper,
}

/// Lets one event through per second: upstream-down warnings are rate-limited.
#[derive(Default)]
struct Throttle {
    last_ms: std::sync::atomic::AtomicU64,
    born: std::sync::OnceLock<Instant>,
}

impl Throttle {
    fn open(&self) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let now = self.born.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1000;
        let last = self.last_ms.load(Relaxed);
        now >= last + 1000
            && self
                .last_ms
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_ok()
    }
}

/// What the pipeline decided to send.
enum Outcome {
    /// A complete response.
    Response(Response),
    /// A request's SSE stream, pumped from the upstream (and logged for resumption when the
    /// request belongs to a session).
    Stream {
        stream: Box<dyn MessageStream>,
        first: Option<Item>,
        session: Option<Arc<Session>>,
        announce: bool,
        id: Option<Box<RawValue>>,
    },
    /// A GET: follow a stream's log from `after` (standalone stream or resumption).
    Follow { log: Arc<EventLog>, after: u64 },
}

/// Fields of the access log line.
#[derive(Default)]
struct Access {
    mcp_method: String,
    session: String,
    id: Option<Box<RawValue>>,
    kind: Option<Kind>,
}

impl Proxy {
    /// A pipeline in front of `upstream`, keeping its sessions in `sessions`, counting into
    /// `metrics`, behind `gate`.
    pub fn new(
        cfg: &ProxyConfig,
        sessions: Sessions,
        upstream: Arc<dyn Upstream>,
        metrics: Arc<Metrics>,
        gate: Gatekeeper,
    ) -> Proxy {
        Proxy {
            metrics,
            gate,
            server: std::sync::OnceLock::new(),
            sessions,
            loopback: cfg.loopback,
            warn_throttle: Throttle::default(),
            cfg: cfg.clone(),
            upstream,
        }
    }

    /// The session table.
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// The MCP endpoint path.
    pub fn cfg_path(&self) -> &str {
        &self.cfg.path
    }

    /// The upstream.
    pub fn upstream(&self) -> &Arc<dyn Upstream> {
        &self.upstream
    }

    /// The authentication and rate-limit gate.
    pub fn gate(&self) -> &Gatekeeper {
        &self.gate
    }

    /// Ends idle sessions, forgets replay logs past their TTL and drops idle rate-limit
    /// buckets; called periodically.
    pub fn expire_sessions(&self) {
        self.gate.sweep();
        for s in self.sessions.list() {
            s.streams.sweep();
        }
        for s in self.sessions.expire() {
            log::debug!("session {} expired", s.short_id());
            self.retire(&s);
        }
    }

    /// Ends every session (shutdown).
    pub fn close_all(&self) {
        for s in self.sessions.drain() {
            self.retire(&s);
        }
    }

    fn end_session(&self, s: &Session) {
        if self.sessions.remove(&s.id).is_some() {
            self.retire(s);
        }
    }

    /// Counts an error in the metrics, as its answer says.
    fn count_error(&self, e: &Error) {
        match e.answer().count {
            Some(Count::Upstream(kind)) => self.metrics.upstream_error(kind),
            Some(Count::Rejected(why)) => self.metrics.rejected(why),
            None => {}
        }
    }

    /// One line per request at info: client, HTTP method, MCP method, status, duration,
    /// session prefix, upstream. Never params, results or header values.
    fn access_log(&self, req: &Request, acc: &Access, status: u16, elapsed: Duration) {
        if !log::log_enabled!(target: "shadowcat::access", log::Level::Info) {
            return;
        }
        let mcp = if acc.mcp_method.is_empty() {
            "-"
        } else {
            &acc.mcp_method
        };
        let session = if acc.session.is_empty() {
            "-"
        } else {
            &acc.session
        };
        let micros = elapsed.as_micros();
        if self.cfg.log_json {
            let line = serde_json::json!({
                "remote": req.remote.to_string(),
                "method": req.method,
                "mcp_method": mcp,
                "status": status,
                "duration_ms": micros as f64 / 1000.0,
                "session": session,
                "upstream": self.upstream.name(),
            });
            log::info!(target: "shadowcat::access", "{line}");
        } else {
            log::info!(
                target: "shadowcat::access",
                "{} {} {mcp} {status} {:.3}ms session={session} upstream={}",
                req.remote,
                req.method,
                micros as f64 / 1000.0,
                self.upstream.name(),
            );
        }
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Ends a session as if its client had sent DELETE; false if there was none.
    pub fn kill_session(&self, id: &str) -> bool {
        match self.sessions.remove(id) {
            Some(s) => {
                self.retire(&s);
                true
            }
            None => false,
        }
    }

    /// Client connections open on the main listener, for metrics.
    pub fn connections(&self) -> usize {
        self.server_stats().connections
    }

    fn server_stats(&self) -> crate::http::ServerStats {
        self.server
            .get()
            .and_then(std::sync::Weak::upgrade)
            .map(|s| s.stats())
            .unwrap_or_default()
    }

    /// Tells the pipeline which server runs it (for connection counts).
    pub fn set_server(&self, server: std::sync::Weak<crate::http::Server>) {
        let _ = self.server.set(server);
    }

    /// Streams currently open (request and standalone): the server's stream permits in use.
    pub fn open_streams(&self) -> usize {
        self.server_stats().streams
    }

    /// Sends a response built outside the pipeline (the operations endpoints), counted and
    /// logged as any other answer, though not as an MCP request.
    pub fn answer(&self, req: &Request, res: &mut Responder<'_>, resp: Response) {
        let started = Instant::now();
        self.metrics.bytes_in(req.body.len() as u64);
        let status = resp.status;
        self.metrics.bytes_out(resp.body.len() as u64);
        let _ = res.send(resp);
        self.access_log(req, &Access::default(), status, started.elapsed());
    }

    /// The one place a session that left the table is wound down: its streams end (open
    /// GETs finish) and the upstream releases its side.
    fn retire(&self, s: &Session) {
        s.streams.end_all();
        self.upstream.close(s);
    }

    fn route(&self, req: &Request, acc: &mut Access) -> Result<Outcome, Error> {
        let path = req.path();
        if req.method == "GET"
            && let Some(doc) = self.gate.metadata(path, &self.cfg.path)
        {
            return Ok(Outcome::Response(doc));
        }
        if path != self.cfg.path {
            return Err(Error::NotFound);
        }
        self.check_origin(req)?;
        let caller = self.gate.identify(req)?;
        match req.method.as_str() {
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
        }
    }

    fn check_origin(&self, req: &Request) -> Result<(), Error> {
        if self.loopback
            && let Some(host) = req.header("host")
            && !is_loopback_host(host)
        {
            return Err(Error::Forbidden("host is not a loopback name"));
        }
        if let Some(origin) = req.header("origin") {
            let o = normalize_origin(origin);
            let ok = loopback_origin(&o) || self.cfg.allowed_origins.contains(&o);
            if !ok {
                return Err(Error::Forbidden("origin not allowed"));
            }
        }
        Ok(())
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
        let header_version = req.header("mcp-protocol-version").map(str::trim);
        if let Some(v) = header_version
            && v != MODERN_VERSION
            && !LEGACY_VERSIONS.contains(&v)
        {
            return Err(Error::UnsupportedVersion(v.to_owned()));
        }
        let headers: Vec<(String, String)> = req
            .headers
            .iter()
            .filter(|(k, _)| forwardable(k))
            .cloned()
            .collect();
        let modern = header_version == Some(MODERN_VERSION) || msg.modern_version().is_some();
        if modern && msg.method() != "initialize" {
            let call = Call {
                msg,
                session: None,
                deadline,
                headers,
            };
            let reply = self.upstream.forward(call)?;
            return self.outcome(reply, kind, deadline, None, false, acc);
        }
        if msg.method() == "initialize" {
            if kind != Kind::Request {
                return Err(Error::InvalidMessage("initialize must be a request"));
            }
            return self.initialize(msg, deadline, headers, caller, acc);
        }
        let sid = req.header("mcp-session-id").ok_or(Error::MissingSession)?;
        let session = self.session(sid, caller)?;
        acc.session = session.short_id().to_owned();
        let call = Call {
            msg,
            session: Some(&session),
            deadline,
            headers,
        };
        match self.upstream.forward(call) {
            Ok(reply) => self.outcome(reply, kind, deadline, Some(&session), false, acc),
            Err(e @ (Error::UnknownSession | Error::UpstreamSessionLost)) => {
                log::info!("session {} ended: {e}", session.short_id());
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
        acc: &mut Access,
    ) -> Result<Outcome, Error> {
        for s in self.sessions.check_room()? {
            self.retire(&s);
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
        let (binding, reply) = self.upstream.initialize(call)?;
        if !matches!(reply, Reply::Message(_) | Reply::Stream(_)) {
            return self.outcome(reply, Kind::Request, deadline, None, false, acc);
        }
        let session = self
            .sessions
            .build(requested, binding, caller.principal.clone())?;
        if let Err(e) = self.sessions.insert(&session) {
            // Filled up since `check_room`: the upstream side was set up, so wind it down.
            self.upstream.close(&session);
            return Err(e);
        }
        self.upstream.attach(&session);
        acc.session = session.short_id().to_owned();
        log::debug!("session {} created", session.short_id());
        self.outcome(reply, Kind::Request, deadline, Some(&session), true, acc)
    }

    /// The live session `sid` names, if `caller` owns it: another principal's session is
    /// not found, exactly as an unknown id.
    fn session(&self, sid: &str, caller: &Caller) -> Result<Arc<Session>, Error> {
        self.sessions
            .get_as(sid.trim(), caller.principal.as_deref())
            .ok_or(Error::UnknownSession)
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
        if session
            .streams
            .standalone_if_open()
            .is_some_and(|s| Arc::ptr_eq(&s, &log))
        {
            self.upstream.listen(&session)?;
        }
        Ok(Outcome::Follow { log, after })
    }

    fn delete(&self, req: &Request, caller: &Caller, acc: &mut Access) -> Result<Outcome, Error> {
        let sid = req.header("mcp-session-id").ok_or(Error::MissingSession)?;
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
        acc: &Access,
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
                    id: acc.id.clone(),
                })
            }
        }
    }

    /// Pumps a request's messages to the client (on the stream thread) and into the
    /// session's replay log. A client that goes away does not stop the request: the rest is
    /// still logged, for a GET with `Last-Event-ID`. Returns the status sent.
    fn pump(
        &self,
        res: &mut Responder<'_>,
        mut stream: Box<dyn MessageStream>,
        first: Option<Item>,
        session: Option<Arc<Session>>,
        announce: bool,
        id: Option<Box<RawValue>>,
    ) -> u16 {
        let mut headers = sse_headers();
        if let (true, Some(s)) = (announce, &session) {
            headers.push(("mcp-session-id".to_string(), s.id.clone()));
        }
        let log = session.as_ref().map(|s| s.streams.open());
        let err = match res.stream(200, &headers) {
            Ok(mut w) => {
                let keepalive = self.cfg.sse_keepalive;
                let mut next_keepalive = Instant::now() + keepalive;
                let mut attached = true;
                if let (Some(log), Some(s)) = (&log, &session)
                    && s.protocol_version.as_str() >= "2025-11-25"
                {
                    // Priming event: gives the client an id to resume from at once.
                    attached = w.write_chunk(&log.push(b"").frame).is_ok();
                }
                let mut next = first.map(Poll::Item);
                loop {
                    if w.shutting_down() {
                        log::debug!("ending stream: shutting down");
                        break;
                    }
                    let wake = next_keepalive.min(Instant::now() + SHUTDOWN_POLL);
                    let polled = match next.take() {
                        Some(p) => Ok(p),
                        None => stream.poll_until(wake),
                    };
                    let data = match polled {
                        Ok(Poll::End) => break,
                        Ok(Poll::Idle) => {
                            if attached && Instant::now() >= next_keepalive {
                                attached = w.write_chunk(b": keepalive\n\n").is_ok();
                                next_keepalive = Instant::now() + keepalive;
                            }
                            continue;
                        }
                        Ok(Poll::Item(Item::Message(d))) => d,
                        Ok(Poll::Item(Item::Final(d))) => {
                            next = Some(Poll::End);
                            d
                        }
                        Err(e) => {
                            log::debug!("stream ended early: {e}");
                            self.count_error(&e);
                            next = Some(Poll::End);
                            jsonrpc::error_for(id.as_deref(), &e)
                        }
                    };
                    let chunk = match &log {
                        Some(log) => log.push(&data).frame,
                        None => Arc::new(sse_event(&data)),
                    };
                    self.metrics.bytes_out(chunk.len() as u64);
                    if attached && w.write_chunk(&chunk).is_err() {
                        log::debug!("client went away mid-stream; the request goes on");
                        attached = false;
                    }
                    if !attached && log.is_none() {
                        break; // nothing to keep it for
                    }
                    next_keepalive = Instant::now() + keepalive;
                }
                let delivered = attached && w.finish().is_ok();
                if let (Some(log), Some(s)) = (&log, &session) {
                    s.streams.close(log, delivered);
                }
                return 200;
            }
            Err(e) => e,
        };
        if let (Some(log), Some(s)) = (&log, &session) {
            s.streams.close(log, true);
            if announce {
                // The client never learns this session's id: do not keep it.
                self.end_session(s);
            }
        }
        self.stream_refused(res, err, id.as_deref())
    }

    /// Follows a stream's log for a GET: replays what came after `after`, then live events,
    /// until the stream ends, another GET takes it over, or the client leaves.
    fn follow(&self, res: &mut Responder<'_>, log: Arc<EventLog>, after: u64) -> u16 {
        let token = log.take_over();
        let err = match res.stream(200, &sse_headers()) {
            Ok(mut w) => {
                let keepalive = self.cfg.sse_keepalive;
                let mut next_keepalive = Instant::now() + keepalive;
                let mut cursor = after;
                loop {
                    if w.shutting_down() {
                        break;
                    }
                    let until = next_keepalive.min(Instant::now() + SHUTDOWN_POLL);
                    let got = log.wait(cursor, token, until);
                    for ev in &got.events {
                        self.metrics.bytes_out(ev.frame.len() as u64);
                        if w.write_chunk(&ev.frame).is_err() {
                            log::debug!("client went away from its stream");
                            return 200;
                        }
                        cursor = ev.seq;
                        next_keepalive = Instant::now() + keepalive;
                    }
                    if got.replaced {
                        log::debug!("stream taken over by a newer GET");
                        break;
                    }
                    if got.ended {
                        break;
                    }
                    if Instant::now() >= next_keepalive {
                        if w.write_chunk(b": keepalive\n\n").is_err() {
                            log::debug!("client went away from its stream (keep-alive)");
                            return 200;
                        }
                        next_keepalive = Instant::now() + keepalive;
                    }
                }
                let _ = w.finish();
                return 200;
            }
            Err(e) => e,
        };
        self.stream_refused(res, err, None)
    }

    fn stream_refused(
        &self,
        res: &mut Responder<'_>,
        err: StreamError,
        id: Option<&RawValue>,
    ) -> u16 {
        let e = match err {
            StreamError::Busy => Error::TooManyStreams,
            StreamError::Http10 => Error::StreamNeedsHttp11,
            StreamError::Io(_) => return 0,
        };
        let _ = res.send(error_response(&e, id));
        e.status()
    }
}

fn sse_headers() -> Vec<(String, String)> {
    vec![
        ("content-type".to_string(), "text/event-stream".to_string()),
        ("cache-control".to_string(), "no-cache".to_string()),
        ("x-accel-buffering".to_string(), "no".to_string()),
    ]
}

/// Frames one SSE event carrying a JSON message, without an id (streams outside a session,
/// which cannot be resumed).
pub fn sse_event(json: &[u8]) -> Vec<u8> {
    crate::stream::frame(None, json)
}

/// The HTTP answer for an error: [`Error::answer`] with a JSON-RPC error body.
pub fn error_response(e: &Error, id: Option<&RawValue>) -> Response {
    let answer = e.answer();
    let mut r =
        Response::new(answer.status).with_body("application/json", jsonrpc::error_for(id, e));
    for (name, value) in &answer.headers {
        r = r.with_header(name, value);
    }
    r
}

impl Handler for Proxy {
    fn handle(&self, req: Request, res: &mut Responder<'_>) {
        let started = Instant::now();
        let mut acc = Access::default();
        self.metrics.bytes_in(req.body.len() as u64);
        let status = match self.route(&req, &mut acc) {
            Ok(Outcome::Response(r)) => {
                let s = r.status;
                self.metrics.bytes_out(r.body.len() as u64);
                let _ = res.send(r);
                s
            }
            Ok(Outcome::Stream {
                stream,
                first,
                session,
                announce,
                id,
            }) => self.pump(res, stream, first, session, announce, id),
            Ok(Outcome::Follow { log, after }) => self.follow(res, log, after),
            Err(e) => {
                if e.status() >= 500 {
                    if self.warn_throttle.open() {
                        log::warn!("{} {}: {e}", req.method, acc.mcp_method);
                    } else {
                        log::debug!("{} {}: {e}", req.method, acc.mcp_method);
                    }
                }
                self.count_error(&e);
                let resp = error_response(&e, acc.id.as_deref());
                self.metrics.bytes_out(resp.body.len() as u64);
                let _ = res.send(resp);
                e.status()
            }
        };
        let elapsed = started.elapsed();
        let class = match (req.method.as_str(), acc.kind) {
            ("GET", _) => MethodClass::Get,
            ("DELETE", _) => MethodClass::Delete,
            (_, None) => MethodClass::Invalid,
            (_, Some(k)) => MethodClass::of(
                &acc.mcp_method,
                k == Kind::Notification,
                k == Kind::Response,
            ),
        };
        if !matches!(req.path(), "/metrics" | "/healthz" | "/readyz") {
            self.metrics.request(class, status, elapsed);
        }
        self.access_log(&req, &acc, status, elapsed);
    }

    fn error_response(&self, status: u16, message: &str) -> Response {
        let e = Error::Http {
            status,
            message: message.to_owned(),
        };
        self.count_error(&e);
        error_response(&e, None)
    }
}

/// True when a `Content-Type` value is `want` (parameters ignored).
pub(crate) fn media_is(value: &str, want: &str) -> bool {
    value
        .split(';')
        .next()
        .is_some_and(|m| m.trim().eq_ignore_ascii_case(want))
}

/// True when the request's `Accept` headers list `want` explicitly (a bare `*/*` is not
/// enough, as the MCP transport requires clients to name both types).
pub(crate) fn accepts(req: &Request, want: &str) -> bool {
    req.header_all("accept").any(|v| lists(v, want))
}

/// True when one `Accept` value lists `want`.
fn lists(accept: &str, want: &str) -> bool {
    accept.split(',').any(|part| media_is(part, want))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types() {
        assert!(media_is(
            "application/json; charset=utf-8",
            "application/json"
        ));
        assert!(!media_is("text/plain", "application/json"));
        assert!(lists(
            "application/json, text/event-stream",
            "text/event-stream"
        ));
        assert!(!lists("*/*", "application/json"));
    }

    #[test]
    fn header_allow_list() {
        for ok in [
            "MCP-Protocol-Version",
            "mcp-method",
            "Mcp-Name",
            "Mcp-Param-Region",
        ] {
            assert!(forwardable(ok), "{ok}");
        }
        for no in [
            "Authorization",
            "Cookie",
            "X-Api-Key",
            "X-Forwarded-For",
            "Proxy-Authorization",
        ] {
            assert!(!forwardable(no), "{no}");
        }
    }

    #[test]
    fn sse_framing() {
        assert_eq!(
            sse_event(b"{\"a\":1}"),
            b"event: message\ndata: {\"a\":1}\n\n"
        );
        assert_eq!(sse_event(b"a\nb"), b"event: message\ndata: a\ndata: b\n\n");
    }
}
