//! The request pipeline: the one place where every request is validated, tied to its session,
//! forwarded, logged and, when it fails, mapped to an answer.
//!
//! Order of checks on the MCP endpoint (each failure answers at once):
//!
//! 1. path (404), then `Origin` allow-list and, on a loopback listener, `Host` (403);
//! 2. a CORS preflight from an allowed origin is answered (204, or 403 for a method or header
//!    the endpoint does not take) before authentication and rate limits (`cors.rs`); every
//!    answer to an allowed origin carries its CORS headers;
//! 3. method: POST, GET, DELETE, anything else 405 with `Allow`;
//! 4. POST: `Content-Type` (415), `Accept` (406), body size (413, in the HTTP layer), JSON
//!    (400 -32700), JSON-RPC shape (400 -32600), `MCP-Protocol-Version` (400);
//! 5. era: a request carrying `_meta["io.modelcontextprotocol/protocolVersion"]` or
//!    `MCP-Protocol-Version: 2026-07-28` is validated and served by [`crate::bridge`]
//!    (forwarded statelessly, or bridged over a proxy-owned session); `initialize` creates a
//!    session; anything else needs a live session (400 without, 404 unknown or expired);
//! 6. the upstream's reply goes back as JSON when it is one immediate message, else as SSE.
//!
//! Owns: [`Proxy`] and its [`Handler`] (this file: the access log, error answers, session
//! retirement), the checks (`checks.rs`), CORS (`cors.rs`), the endpoint's methods and reply
//! handling (`route.rs`), streaming to the client (`sse.rs`), the hand-off to tapes and the
//! audit log (`record.rs`) and applying fault and mock rules (`fault.rs`). Must not touch: how an upstream works (only the [`Upstream`]
//! trait), how bytes are framed on the wire (the HTTP layer), the operations endpoints
//! (answered in front of it by `ops::Front`), or how tapes and the audit log are written (it
//! hands messages and records to `tape`'s `Recorder` and `Auditor`, which never block).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::value::RawValue;

use crate::config::ProxyConfig;
use crate::error::{Count, Error};
use crate::gate::Gatekeeper;
use crate::http::{Handler, Responder};
use crate::http::{Request, Response};
use crate::jsonrpc::{self, Answered, Kind};
use crate::metrics::{MethodClass, Metrics};
use crate::session::{Session, Sessions};
use crate::stream::EventLog;
use crate::tape::{Auditor, Recorder, Tap};
use crate::upstream::{Item, MessageStream, Upstream};
use crate::util::Escaped;

/// How long a request may take and still be answered as plain JSON.
const IMMEDIATE: Duration = Duration::from_millis(200);
/// How often a waiting stream checks for shutdown.
const SHUTDOWN_POLL: Duration = Duration::from_millis(250);

mod checks;
mod cors;
mod fault;
mod quota;
mod record;
mod route;
mod sse;

#[cfg(feature = "fuzzing")]
pub(crate) use checks::{accepts, argument_values, decode_mirrored, encode_mirrored, media_is};
pub use sse::sse_event;

/// The MCP endpoint handler.
pub struct Proxy {
    cfg: ProxyConfig,
    sessions: Sessions,
    upstream: Arc<dyn Upstream>,
    warn_throttle: Throttle,
    metrics: Arc<Metrics>,
    server: std::sync::OnceLock<std::sync::Weak<crate::http::Server>>,
    gate: Gatekeeper,
    /// `--max-streams-per-client`.
    stream_quota: Arc<quota::StreamQuota>,
    /// `--record`: off unless set.
    tapes: Recorder,
    /// `--audit-log`: off unless set.
    audit: Auditor,
    /// Shutting down (issue #17): `/readyz` says 503 and no new session is taken.
    draining: std::sync::atomic::AtomicBool,
    /// 2026-07-28 requests: validation, and the bridge to a session-era upstream.
    bridge: crate::bridge::Bridge,
    /// The config file's `[[fault]]` rules: `None` (nothing to pay) unless configured.
    faults: Option<Arc<crate::fault::Faults>>,
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
        /// Its place in the client's stream quota (taken in `route`), held until it ends.
        slot: Option<quota::StreamSlot>,
    },
    /// A GET: follow a stream's log from `after` (standalone stream or resumption).
    Follow {
        log: Arc<EventLog>,
        after: u64,
        /// Its place in the client's stream quota, held until it ends.
        slot: quota::StreamSlot,
    },
}

/// Fields of the access log line.
#[derive(Default)]
struct Access {
    mcp_method: String,
    session: String,
    id: Option<Box<RawValue>>,
    kind: Option<Kind>,
    /// The access log is on: note how the answer came out.
    note_rpc: bool,
    /// How a JSON answer (or an error) came out.
    rpc: Option<Answered>,
    /// How a streamed answer's final message came out, noted as it passes.
    streamed: Option<Arc<std::sync::OnceLock<Answered>>>,
    /// The request's `Origin` once the Origin check allowed it: every answer then carries the
    /// CORS headers for it (`cors.rs`).
    cors: Option<String>,
    /// When the request arrived.
    at: Option<Instant>,
    /// The request's tape, once it is tied to a session or a stateless client (recording on).
    tap: Option<Tap>,
    /// The request itself is still to go on the tape: `handle` hands it its body once the
    /// pipeline is done with it (no copy), before anything it sends back.
    sent_unrecorded: bool,
    /// The JSON answer was made by the proxy (an upstream's non-JSON error turned into one,
    /// or a fault rule's answer).
    synthetic: bool,
    /// The fault rule that acted on the request (`fault.rs`), for its tape and audit lines.
    fault: Option<Arc<str>>,
    /// Tool, prompt or resource the request names (`tools/call` always; all with the audit).
    name: Option<String>,
    /// The request's `params.arguments` (`--audit-arguments`).
    arguments: Option<Box<RawValue>>,
    /// The caller's principal (audit).
    principal: Option<String>,
    /// Body and stream bytes sent (audit); a cell, as streams see `&Access`.
    bytes_out: std::cell::Cell<u64>,
}

impl Access {
    /// How the request was answered at the JSON-RPC level, if it was.
    fn answered(&self) -> Option<Answered> {
        self.rpc
            .or_else(|| self.streamed.as_ref().and_then(|s| s.get().copied()))
    }

    /// The answer's outcome is wanted: for the access log or the audit line (`note_rpc`),
    /// or for `shadowcat_tool_calls_total`.
    fn wants_answer(&self) -> bool {
        self.note_rpc || self.mcp_method == "tools/call"
    }
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
            stream_quota: quota::StreamQuota::new(
                cfg.max_streams_per_client,
                sessions.idle(),
                gate.stream_holds(),
            ),
            bridge: crate::bridge::Bridge::new(&cfg.bridge, cfg.request_timeout),
            metrics,
            gate,
            server: std::sync::OnceLock::new(),
            sessions,
            warn_throttle: Throttle::default(),
            cfg: cfg.clone(),
            upstream,
            tapes: Recorder::off(),
            audit: Auditor::off(),
            draining: std::sync::atomic::AtomicBool::new(false),
            faults: None,
        }
    }

    /// The same pipeline, applying fault and mock rules (`None`: none configured).
    pub fn with_faults(mut self, faults: Option<Arc<crate::fault::Faults>>) -> Proxy {
        if let Some(f) = &faults {
            self.metrics.fault_rules(f.labels());
        }
        self.faults = faults;
        self
    }

    /// The same pipeline, recording tapes through `tapes` and audit lines through `audit`.
    pub fn with_tapes(mut self, tapes: Recorder, audit: Auditor) -> Proxy {
        self.tapes = tapes;
        self.audit = audit;
        self
    }

    /// The tape recorder (off unless `--record`).
    pub fn recorder(&self) -> &Recorder {
        &self.tapes
    }

    /// The audit log (off unless `--audit-log`).
    pub fn auditor(&self) -> &Auditor {
        &self.audit
    }

    /// Begins a graceful scale-in: `/readyz` answers 503 from now on (a load balancer stops
    /// sending new work) and `initialize` is refused with 503 [`Error::Draining`]; requests
    /// of existing sessions and stateless requests are still served. Cannot be undone.
    pub fn drain(&self) {
        self.draining
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// True once [`Proxy::drain`] was called.
    pub fn is_draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::SeqCst)
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

    /// The era bridge (its gauges).
    pub fn bridge(&self) -> &crate::bridge::Bridge {
        &self.bridge
    }

    /// Ends idle sessions, forgets replay logs past their TTL and drops idle rate-limit
    /// buckets; called periodically.
    pub fn expire_sessions(&self) {
        self.gate.sweep();
        let live = self.sessions.list();
        self.gate.refresh_holds(
            live.iter().map(|s| (s.client.as_str(), s.id.as_str())),
            self.stream_quota.cluster_holds(),
        );
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
        self.bridge.close(self.upstream.as_ref());
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
    /// session prefix, upstream, and the JSON-RPC outcome (`ok`, `tool_error`, `error` with
    /// its code, `-` when there was no JSON-RPC answer). Never params, results or header
    /// values. In the text format every field a client or upstream controls is escaped
    /// ([`Escaped`]), so no value can forge a line or reach a terminal as an escape sequence;
    /// JSON escapes by itself.
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
        let answered = acc.answered();
        let rpc = answered.map_or("-", Answered::label);
        let code = answered.and_then(Answered::code);
        if self.cfg.log_json {
            let mut line = serde_json::json!({
                "remote": req.remote.to_string(),
                "method": req.method,
                "mcp_method": mcp,
                "status": status,
                "duration_ms": micros as f64 / 1000.0,
                "session": session,
                "upstream": self.upstream.name(),
                "rpc": rpc,
            });
            if let Some(c) = code {
                line["rpc_code"] = c.into();
            }
            log::info!(target: "shadowcat::access", "{line}");
        } else {
            let code = code.map(|c| format!(":{c}")).unwrap_or_default();
            log::info!(
                target: "shadowcat::access",
                "{} {} {} {status} {:.3}ms session={} upstream={} rpc={rpc}{code}",
                req.remote,
                Escaped(&req.method),
                Escaped(mcp),
                micros as f64 / 1000.0,
                Escaped(session),
                Escaped(self.upstream.name()),
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
        self.gate.release_session(&s.client, &s.id);
        s.streams.end_all();
        self.upstream.close(s);
        self.tapes.close_session(&s.id);
    }
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

/// The metrics class of a request, from its method and what routing learnt of its body.
fn class_of(req: &Request, acc: &Access) -> MethodClass {
    match (req.method.as_str(), acc.kind) {
        ("GET", _) => MethodClass::Get,
        ("DELETE", _) => MethodClass::Delete,
        ("OPTIONS", _) if cors::is_preflight(req) => MethodClass::Options,
        (_, None) => MethodClass::Invalid,
        (_, Some(k)) => MethodClass::of(
            &acc.mcp_method,
            k == Kind::Notification,
            k == Kind::Response,
        ),
    }
}

impl Handler for Proxy {
    fn handle(&self, mut req: Request, res: &mut Responder<'_>) {
        let started = Instant::now();
        let mut acc = Access {
            note_rpc: log::log_enabled!(target: "shadowcat::access", log::Level::Info)
                || self.audit.is_on(),
            at: Some(started),
            ..Access::default()
        };
        let bytes_in = req.body.len() as u64;
        self.metrics.bytes_in(bytes_in);
        let routed = self.route(&req, &mut acc);
        self.record_request(&mut req, &mut acc, started);
        // A single answer is counted before it is sent, so a client that has its answer and
        // then reads /metrics sees it; a stream is counted when it ends (its duration).
        let counted = !matches!(req.path(), "/metrics" | "/healthz" | "/readyz");
        let class = class_of(&req, &acc);
        let count = |status: u16, acc: &Access| {
            if counted {
                self.metrics.request(class, status, started.elapsed());
            }
            self.count_tool_call(acc);
        };
        let status = match routed {
            Ok(Outcome::Response(mut r)) => {
                if acc.wants_answer() && acc.kind == Some(Kind::Request) {
                    acc.rpc = jsonrpc::answered(&r.body, acc.mcp_method == "tools/call");
                }
                self.record_answer(&acc, &r.body, acc.synthetic);
                cors::decorate(&mut r.headers, acc.cors.as_deref());
                let s = r.status;
                self.metrics.bytes_out(r.body.len() as u64);
                count(s, &acc);
                let _ = res.send(r);
                s
            }
            Ok(Outcome::Stream {
                stream,
                first,
                session,
                announce,
                slot: _slot,
            }) => {
                let s = self.pump(res, stream, first, session, announce, &acc);
                count(s, &acc);
                s
            }
            Ok(Outcome::Follow {
                log,
                after,
                slot: _slot,
            }) => {
                let s = self.follow(res, log, after, &acc);
                count(s, &acc);
                s
            }
            Err(e) => {
                acc.rpc = Some(Answered::Error(Some(e.rpc_code())));
                if e.status() >= 500 {
                    // The error's text can carry an upstream's words (the start of its body).
                    let (method, text) = (Escaped(&acc.mcp_method), e.to_string());
                    if self.warn_throttle.open() {
                        log::warn!("{} {method}: {}", req.method, Escaped(&text));
                    } else {
                        log::debug!("{} {method}: {}", req.method, Escaped(&text));
                    }
                }
                self.count_error(&e);
                let mut resp = error_response(&e, acc.id.as_deref());
                self.record_answer(&acc, &resp.body, true);
                cors::decorate(&mut resp.headers, acc.cors.as_deref());
                self.metrics.bytes_out(resp.body.len() as u64);
                count(e.status(), &acc);
                let _ = res.send(resp);
                e.status()
            }
        };
        let elapsed = started.elapsed();
        self.access_log(&req, &acc, status, elapsed);
        self.audit_line(&req, acc, bytes_in, status, elapsed);
    }

    fn error_response(&self, status: u16, message: &str) -> Response {
        let e = Error::Http {
            status,
            message: message.to_owned(),
        };
        self.count_error(&e);
        error_response(&e, None)
    }

    /// The CORS headers a pipeline answer to this head would carry (`cors.rs`), so that a
    /// page from an allowed origin can read the HTTP layer's own refusals (413, 408, 400,
    /// 503 ...) instead of seeing a network error.
    fn error_headers(&self, head: &Request) -> Vec<(String, String)> {
        let mut headers = Vec::new();
        if head.path() == self.cfg.path
            && checks::single_headers(head).is_ok()
            && self.check_origin(head).is_ok()
        {
            cors::decorate(&mut headers, cors::origin(head).as_deref());
        }
        headers
    }
}
