//! The session era of `demo-server --http` (`--era legacy`, and `--era dual` for `initialize`
//! or a request carrying `Mcp-Session-Id`): Streamable HTTP as in 2025-11-25. `initialize`
//! opens a session (`Mcp-Session-Id` on its response); each session is one demo connection
//! ([`Shared`] writing into a [`Pipe`]) whose output a router thread sorts: a response goes to
//! the POST that asked; progress, logs and the demo's server→client requests to the newest
//! POST still open on that session, else to the session's GET stream; list changes and
//! resource updates to the GET stream, else to the newest POST; else nowhere.
//! The client's answers to server requests and its notifications are POSTed (202). DELETE ends
//! a session; an unknown session is 404, a missing one 400. At most [`MAX_SESSIONS`] at once:
//! when full, the session unused longest with no stream open is ended to make room (503 if
//! every one has a stream open).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded};
use serde_json::Value;

use crate::http::{Request, Responder, Response};
use crate::util::lock;

use super::Options;
use super::connection::Shared;
use super::dispatch::handle_line;
use super::hub::Hub;
use super::pipe::{Pipe, PipeWriter};
use super::relay::{Source, json_body, relay, rpc_error};

/// Sessions kept at once; beyond, `initialize` is 503.
pub(super) const MAX_SESSIONS: usize = 256;
/// Lines queued for one POST or GET stream (the session's pipe holds the byte bound).
const STREAM_QUEUE: usize = 256;

#[derive(Default)]
pub(super) struct Sessions {
    map: Mutex<HashMap<String, Arc<Session>>>,
    serial: AtomicU64,
}

/// The demo served over HTTP: its options, the listen hub and the session table.
pub(super) struct HttpDemo {
    pub(super) options: Options,
    pub(super) hub: Arc<Hub>,
    pub(super) sessions: Sessions,
}

struct Session {
    sh: Arc<Shared>,
    pipe: Arc<Pipe>,
    routes: Mutex<Routes>,
    last_used: Mutex<Instant>,
}

#[derive(Default)]
struct Routes {
    /// Open POSTs by raw request id, oldest first.
    posts: Vec<(String, Sender<Vec<u8>>)>,
    get: Option<Sender<Vec<u8>>>,
}

impl Source for Receiver<Vec<u8>> {
    fn next_line(&self, deadline: Instant) -> Option<Vec<u8>> {
        self.recv_deadline(deadline).ok()
    }
}

fn new_session_id(serial: u64) -> String {
    let mut bytes = [0u8; 16];
    let random = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes));
    if random.is_err() {
        bytes[..8].copy_from_slice(&serial.to_le_bytes());
        bytes[8..].copy_from_slice(&u64::from(std::process::id()).to_le_bytes());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Session {
    /// The router thread: sorts the session's output until the session ends.
    fn route(self: Arc<Self>) {
        loop {
            let Some(line) = self.pipe.pop(Instant::now() + Duration::from_secs(1)) else {
                if Arc::strong_count(&self) == 1 {
                    return; // the session was deleted
                }
                continue;
            };
            let parsed: Value = serde_json::from_slice(&line).unwrap_or(Value::Null);
            let target = {
                let mut routes = lock(&self.routes);
                if parsed.get("method").is_none() {
                    let key = parsed.get("id").map(Value::to_string).unwrap_or_default();
                    let at = routes.posts.iter().position(|(id, _)| *id == key);
                    at.map(|at| routes.posts.remove(at).1)
                } else {
                    let newest = routes.posts.last().map(|(_, tx)| tx.clone());
                    if about_a_request(&parsed) {
                        newest.or_else(|| routes.get.clone())
                    } else {
                        routes.get.clone().or(newest)
                    }
                }
            };
            // A stream whose client left is simply not listening any more.
            if let Some(tx) = target {
                let _ = tx.send_timeout(line, Duration::from_secs(10));
            }
        }
    }
}

/// Whether a message belongs with the request being served (progress, logs, the demo's own
/// requests) rather than with the session (list changes, resource updates).
fn about_a_request(message: &Value) -> bool {
    message.get("id").is_some()
        || matches!(
            message["method"].as_str(),
            Some("notifications/progress" | "notifications/message" | "notifications/cancelled")
        )
}

impl Sessions {
    pub(super) fn handle(&self, demo: &HttpDemo, req: Request, res: &mut Responder<'_>) {
        let id = req.header("mcp-session-id").map(str::to_owned);
        let session = match &id {
            Some(id) => match lock(&self.map).get(id) {
                Some(session) => {
                    *lock(&session.last_used) = Instant::now();
                    Some(Arc::clone(session))
                }
                None => {
                    let _ = res.send(rpc_error(404, &Value::Null, -32600, "Session not found"));
                    return;
                }
            },
            None => None,
        };
        match (req.method.as_str(), session) {
            ("POST", session) => self.post(demo, req, res, session),
            ("GET", Some(session)) => get_stream(&session, res),
            ("DELETE", Some(session)) => {
                if let Some(id) = id {
                    lock(&self.map).remove(&id);
                }
                end(&session, demo);
                let _ = res.send(Response::new(200));
            }
            ("GET" | "DELETE", None) => {
                let _ = res.send(rpc_error(
                    400,
                    &Value::Null,
                    -32600,
                    "Mcp-Session-Id required",
                ));
            }
            _ => {
                let resp = Response::new(405).with_header("Allow", "GET, POST, DELETE");
                let _ = res.send(resp);
            }
        }
    }

    fn post(
        &self,
        demo: &HttpDemo,
        req: Request,
        res: &mut Responder<'_>,
        session: Option<Arc<Session>>,
    ) {
        let Some(body) = json_body(&req.body, res) else {
            return;
        };
        let mut extra = Vec::new();
        let session = match session {
            Some(session) => session,
            None if body["method"] == "initialize" => {
                let Some((id, session)) = self.open(demo) else {
                    let _ = res.send(rpc_error(503, &body["id"], -32603, "too many sessions"));
                    return;
                };
                extra.push(("Mcp-Session-Id".to_string(), id));
                session
            }
            None => {
                let msg = "Bad Request: Mcp-Session-Id required (send initialize first)";
                let _ = res.send(rpc_error(400, &body["id"], -32600, msg));
                return;
            }
        };
        let (Some(_), Some(id)) = (body["method"].as_str(), body.get("id")) else {
            // A notification, or the client's answer to one of the demo's requests.
            if let Err(e) = handle_line(&session.sh, &req.body) {
                log::warn!("demo-server: {e}");
            }
            let _ = res.send(Response::new(202));
            return;
        };
        let key = id.to_string();
        let (tx, rx) = bounded(STREAM_QUEUE);
        lock(&session.routes).posts.push((key.clone(), tx));
        if let Err(e) = handle_line(&session.sh, &req.body) {
            log::warn!("demo-server: {e}");
        }
        relay(&rx, id, res, false, false, &extra);
        lock(&session.routes).posts.retain(|(k, _)| *k != key);
    }

    fn open(&self, demo: &HttpDemo) -> Option<(String, Arc<Session>)> {
        let mut map = lock(&self.map);
        if map.len() >= MAX_SESSIONS {
            // Full: the session unused longest that has no stream open makes room.
            let idle = map
                .iter()
                .filter(|(_, s)| {
                    let routes = lock(&s.routes);
                    routes.posts.is_empty() && routes.get.is_none()
                })
                .min_by_key(|(_, s)| *lock(&s.last_used))
                .map(|(id, _)| id.clone())?;
            if let Some(old) = map.remove(&idle) {
                end(&old, demo);
                log::info!("demo-server: session {idle} ended to make room");
            }
        }
        let id = new_session_id(self.serial.fetch_add(1, Ordering::Relaxed));
        let pipe = Arc::new(Pipe::default());
        let sh = Arc::new(Shared::new(
            Box::new(PipeWriter::new(Arc::clone(&pipe))),
            demo.options,
            Arc::clone(&demo.hub),
        ));
        let session = Arc::new(Session {
            sh,
            pipe,
            routes: Mutex::new(Routes::default()),
            last_used: Mutex::new(Instant::now()),
        });
        let router = Arc::clone(&session);
        std::thread::Builder::new()
            .name("demo-session".into())
            .spawn(move || router.route())
            .ok()?;
        map.insert(id.clone(), Arc::clone(&session));
        Some((id, session))
    }
}

/// The session's GET stream: notifications no POST is open for, until the client leaves.
fn get_stream(session: &Session, res: &mut Responder<'_>) {
    let (tx, rx) = bounded(STREAM_QUEUE);
    {
        let mut routes = lock(&session.routes);
        if routes.get.is_some() {
            drop(routes);
            let _ = res.send(rpc_error(
                409,
                &Value::Null,
                -32600,
                "a GET stream is already open",
            ));
            return;
        }
        routes.get = Some(tx);
    }
    // No id ever ends it: `relay` streams until the client leaves.
    relay(&rx, &Value::Null, res, false, true, &[]);
    lock(&session.routes).get = None;
}

fn end(session: &Session, demo: &HttpDemo) {
    session.pipe.close();
    lock(&session.sh.inflight).clear();
    lock(&session.sh.pending).clear();
    demo.hub.drop_connection(&*session.sh);
}
