//! Replay over Streamable HTTP, on the crate's own HTTP server (`crate::http`).
//!
//! One endpoint (`--path`, default `/mcp`):
//! * **POST** a request: its plan is answered as `application/json` when it is the response
//!   alone, else as `text/event-stream` (one `message` event per message, the response
//!   last). A notification gets 202; a response (the client's answer to a sampling,
//!   elicitation or roots request) gets 202 and is routed to the stream waiting for it.
//! * **GET** 405 (no standalone stream: replay sends nothing unasked), **DELETE** ends the
//!   session.
//!
//! Session-era tapes: each `initialize` starts a session (`Mcp-Session-Id`, 128 random bits)
//! that replays the whole tape from the start, independently of the others; at most
//! [`MAX_SESSIONS`] live at once (the oldest is dropped). Other requests need the header: none
//! is 400, an unknown one 404. Stateless (2026-07-28) tapes: no sessions; the whole server is
//! one replay of the tape, shared by every request.

use std::collections::VecDeque;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::{Script, Session, Sink, random_hex};
use crate::error::Error;
use crate::http::{Handler, Request, Responder, Response, Server, ServerConfig, StreamWriter};
use crate::tools::tape::read::{Kind, kind};
use crate::util::lock;

/// Most sessions kept at once.
pub const MAX_SESSIONS: usize = 256;

/// The HTTP handler of a replay.
pub struct Replay {
    script: Arc<Script>,
    path: String,
    /// Session-era: live sessions, oldest first.
    sessions: Mutex<VecDeque<(String, Arc<Session>)>>,
    /// Stateless tapes: the one replay.
    stateless: Option<Arc<Session>>,
}

/// Serves `script` on `bind` at `path` until the process ends; returns the server (already
/// accepting) so the caller can report its address.
pub fn start(script: Arc<Script>, bind: SocketAddr, path: &str) -> Result<Server, Error> {
    let listener = TcpListener::bind(bind)
        .map_err(|e| Error::Config(format!("--http {bind}: cannot listen: {e}")))?;
    let handler = Replay::new(script, path);
    Server::start(listener, ServerConfig::default(), Arc::new(handler)).map_err(Error::Io)
}

impl Replay {
    /// A handler replaying `script` at `path`.
    pub fn new(script: Arc<Script>, path: &str) -> Replay {
        let stateless = script
            .tape
            .header
            .stateless()
            .then(|| Arc::new(Session::new(Arc::clone(&script))));
        Replay {
            script,
            path: path.to_owned(),
            sessions: Mutex::new(VecDeque::new()),
            stateless,
        }
    }

    fn session(&self, req: &Request) -> Result<Arc<Session>, Response> {
        if let Some(s) = &self.stateless {
            return Ok(Arc::clone(s));
        }
        let Some(id) = req.header("mcp-session-id") else {
            return Err(rpc_error(
                400,
                -32600,
                "Mcp-Session-Id required (initialize first)",
            ));
        };
        lock(&self.sessions)
            .iter()
            .find(|(k, _)| k == id)
            .map(|(_, s)| Arc::clone(s))
            .ok_or_else(|| rpc_error(404, -32600, "unknown session"))
    }

    fn new_session(&self) -> Result<(String, Arc<Session>), Response> {
        let id =
            random_hex().map_err(|e| rpc_error(500, -32603, &format!("no session id: {e}")))?;
        let s = Arc::new(Session::new(Arc::clone(&self.script)));
        let mut all = lock(&self.sessions);
        while all.len() >= MAX_SESSIONS {
            all.pop_front();
        }
        all.push_back((id.clone(), Arc::clone(&s)));
        Ok((id, s))
    }

    fn post(&self, req: &Request, res: &mut Responder<'_>) {
        let msg: Value = match serde_json::from_slice(&req.body) {
            Ok(v) => v,
            Err(e) => return send(res, rpc_error(400, -32700, &format!("parse error: {e}"))),
        };
        if !msg.is_object() {
            return send(res, rpc_error(400, -32600, "not one JSON-RPC message"));
        }
        let method = msg.get("method").and_then(Value::as_str);
        let (session, new_id) = match kind(&msg) {
            Kind::Request if method == Some("initialize") && self.stateless.is_none() => {
                match self.new_session() {
                    Ok((id, s)) => (s, Some(id)),
                    Err(r) => return send(res, r),
                }
            }
            Kind::Request => match self.session(req) {
                Ok(s) => (s, None),
                Err(r) => return send(res, r),
            },
            Kind::Response => {
                if let Ok(s) = self.session(req) {
                    s.answer(&msg);
                }
                return send(res, Response::new(202));
            }
            Kind::Notification => return send(res, Response::new(202)),
            Kind::Other => return send(res, rpc_error(400, -32600, "not a JSON-RPC message")),
        };
        let plan = session.plan(&msg);
        if plan.steps.is_empty() {
            let mut r = Response::new(200)
                .with_body("application/json", plan.response.to_string().into_bytes());
            if let Some(id) = &new_id {
                r = r.with_header("Mcp-Session-Id", id);
            }
            return send(res, r);
        }
        let mut headers = vec![
            ("Content-Type".to_owned(), "text/event-stream".to_owned()),
            ("Cache-Control".to_owned(), "no-cache".to_owned()),
        ];
        if let Some(id) = new_id {
            headers.push(("Mcp-Session-Id".to_owned(), id));
        }
        match res.stream(200, &headers) {
            Ok(writer) => {
                let mut sink = Sse(Some(writer));
                if let Err(e) = session.play(plan, &mut sink) {
                    log::debug!("replay: client gone during a stream: {e}");
                    return;
                }
                if let Some(w) = sink.0.take() {
                    let _ = w.finish();
                }
            }
            Err(e) => {
                log::warn!("replay: cannot stream: {e}");
                if !res.is_sent() {
                    send(res, rpc_error(503, -32603, &format!("cannot stream: {e}")));
                }
            }
        }
    }
}

struct Sse<'a>(Option<StreamWriter<'a>>);

impl Sink for Sse<'_> {
    fn send(&mut self, msg: &Value) -> std::io::Result<()> {
        let Some(w) = self.0.as_mut() else {
            return Err(std::io::Error::other("stream finished"));
        };
        w.write_chunk(format!("event: message\ndata: {msg}\n\n").as_bytes())
    }
}

fn send(res: &mut Responder<'_>, r: Response) {
    if let Err(e) = res.send(r) {
        log::debug!("replay: client gone: {e}");
    }
}

fn rpc_error(status: u16, code: i64, message: &str) -> Response {
    let body = json!({"jsonrpc": "2.0", "id": null, "error": {"code": code, "message": message}});
    Response::new(status).with_body("application/json", body.to_string().into_bytes())
}

impl Handler for Replay {
    fn handle(&self, req: Request, res: &mut Responder<'_>) {
        if req.path() != self.path {
            return send(
                res,
                Response::new(404).with_body("text/plain", b"not found\n".to_vec()),
            );
        }
        match req.method.as_str() {
            "POST" => self.post(&req, res),
            "DELETE" if self.stateless.is_none() => {
                let id = req.header("mcp-session-id").unwrap_or_default();
                let mut all = lock(&self.sessions);
                let before = all.len();
                all.retain(|(k, _)| k != id);
                let status = if all.len() < before { 200 } else { 404 };
                drop(all);
                send(res, Response::new(status));
            }
            _ => send(
                res,
                Response::new(405).with_header(
                    "Allow",
                    if self.stateless.is_some() {
                        "POST"
                    } else {
                        "POST, DELETE"
                    },
                ),
            ),
        }
    }
}
