//! A session-era client in front of a 2026-07-28-only upstream (issue #13 part B), for stdio
//! children (both modes) and HTTP upstreams: the proxy answers `initialize` from the child's `server/discover`
//! (the handshake in `crate::upstream::stdio` keeps it as an `initialize`-shaped result), keeps
//! the session, and turns each session request into a 2026-07-28 one by adding the per-request
//! `_meta` (protocol version, the session's client capabilities and `clientInfo`, the level of
//! its last `logging/setLevel`). `ping` and `logging/setLevel` are answered here.
//!
//! An `InputRequiredResult` from the upstream becomes classic server-to-client requests on the
//! call's own response stream ([`Rounds`]); the client's answers (POSTed responses, taken by
//! [`answer`]) go back as `inputResponses` with the upstream's `requestState`, round after
//! round, until the result is complete.
//!
//! `resources/(un)subscribe` and the GET stream are served by the stdio upstream from its own
//! `subscriptions/listen` on the child (`crate::upstream::stdio`, `modern_child.rs`).
//!
//! Owns: the `_meta` a session's requests gain, and the answers the proxy gives in the
//! upstream's place. Must not touch: how the child is called (the caller forwards).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};
use serde_json::{Map, Value, json};

use crate::error::Error;
use crate::jsonrpc::{self, META_CAPABILITIES, META_VERSION, MODERN_VERSION, Message};
use crate::session::{LogLevel, Session};
use crate::upstream::{Item, MessageStream, Poll, Reply};
use crate::util::lock;

use super::validate::META_LOG_LEVEL;

/// `_meta` key of the client's `clientInfo`.
const META_CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";

/// The per-request `_meta` a session's requests gain, from its client's `initialize`: the
/// protocol version, its capabilities and its `clientInfo`.
pub fn session_meta(init: &Message) -> Value {
    let params = init.params_value().unwrap_or(Value::Null);
    let caps = params
        .get("capabilities")
        .filter(|c| c.is_object())
        .cloned()
        .unwrap_or_else(|| json!({}));
    let mut meta = Map::new();
    meta.insert(META_VERSION.into(), json!(MODERN_VERSION));
    meta.insert(META_CAPABILITIES.into(), caps);
    if let Some(info) = params.get("clientInfo").filter(|i| i.is_object()) {
        meta.insert(META_CLIENT_INFO.into(), info.clone());
    }
    Value::Object(meta)
}

/// The `server/discover` probe the proxy sends an upstream.
pub fn discover_probe() -> Value {
    json!({
        "jsonrpc": "2.0", "id": 0, "method": "server/discover",
        "params": {"_meta": {
            jsonrpc::META_VERSION: "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "shadowcat", "version": env!("CARGO_PKG_VERSION")}
        }}
    })
}

/// True when a `server/discover` answer lists 2026-07-28.
pub fn lists_modern(reply: &Value) -> bool {
    reply
        .get("result")
        .and_then(|r| r.get("supportedVersions"))
        .and_then(Value::as_array)
        .is_some_and(|v| v.iter().any(|x| x == "2026-07-28"))
}

/// An `initialize`-shaped result from an upstream's `server/discover` answer `reply`, if it
/// lists 2026-07-28: its capabilities, `serverInfo` and `instructions`, `protocolVersion`
/// 2026-07-28 (the caller puts the negotiated session-era version in).
pub fn hello_of_discover(reply: &Value) -> Option<Map<String, Value>> {
    if !lists_modern(reply) {
        return None;
    }
    let discover = reply.get("result").cloned().unwrap_or(Value::Null);
    let mut result = Map::new();
    for key in ["capabilities", "serverInfo", "instructions"] {
        if let Some(v) = discover.get(key) {
            result.insert(key.to_owned(), v.clone());
        }
    }
    result.insert("protocolVersion".into(), json!("2026-07-28"));
    Some(result)
}

/// The answer to a session-era client's `initialize` (request id `id`, raw JSON) from `hello`,
/// with `version` negotiated.
pub fn initialize_answer(hello: &Map<String, Value>, id: &str, version: &str) -> Vec<u8> {
    let mut result = hello.clone();
    result.insert("protocolVersion".into(), Value::String(version.to_owned()));
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"result":{}}}"#,
        Value::Object(result)
    )
    .into_bytes()
}

/// The answer the proxy gives itself for a session request, if it is one of those: `ping`
/// (empty result), `logging/setLevel` (recorded on the session, sent with each later
/// request).
pub fn local(msg: &Message, session: &Session) -> Result<Option<Reply>, Error> {
    let id = msg.id.clone().unwrap_or_else(jsonrpc::null);
    match msg.method() {
        "ping" => Ok(Some(Reply::Message(jsonrpc::result_body(&id, "{}")))),
        "logging/setLevel" => {
            let level = msg
                .params_value()
                .and_then(|p| p.get("level")?.as_str().and_then(LogLevel::parse));
            let Some(level) = level else {
                return Err(Error::InvalidParams(
                    "logging/setLevel: level must be one of debug, info, notice, warning, \
                     error, critical, alert, emergency"
                        .into(),
                ));
            };
            session.set_log_level(level);
            Ok(Some(Reply::Message(jsonrpc::result_body(&id, "{}"))))
        }
        _ => Ok(None),
    }
}

/// `msg` (a session request) as a 2026-07-28 request: `meta` and the session's log level
/// merged into its `params._meta` (its own members, e.g. `progressToken`, kept).
pub fn with_meta(msg: &Message, meta: &Value, level: Option<LogLevel>) -> Result<Message, Error> {
    let mut params = match msg.params_value() {
        Some(Value::Object(p)) => p,
        None => Map::new(),
        Some(_) => return Err(Error::InvalidParams("params must be an object".into())),
    };
    let mut own = match params.remove("_meta") {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    if let Value::Object(m) = meta {
        for (k, v) in m {
            own.insert(k.clone(), v.clone());
        }
    }
    if let Some(level) = level {
        own.insert(META_LOG_LEVEL.into(), json!(level.name()));
    }
    params.insert("_meta".into(), Value::Object(own));
    let id = msg.id.as_deref().map(|i| i.get()).unwrap_or("null");
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":{},"params":{}}}"#,
        serde_json::to_string(msg.method()).map_err(|e| Error::Internal(e.to_string()))?,
        Value::Object(params)
    );
    Message::parse(body.as_bytes())
}

/// Rounds one call may take.
const MAX_ROUNDS: u32 = 8;
/// Server-to-client requests waiting for their answer, process-wide (beyond: the call fails).
const MAX_WAITING: usize = 1024;

/// Where a client's answer goes: its `inputRequests` key, and the waiting call.
type Answer = (String, Sender<(String, Value)>);

/// Requests sent to clients, by `<session id> <request id>`.
static WAITING: LazyLock<Mutex<HashMap<String, Answer>>> = LazyLock::new(Mutex::default);
static NEXT: AtomicU64 = AtomicU64::new(1);

/// A client's response (POSTed in its session) to a request a [`Rounds`] made: handed over,
/// true. False when it answers nothing of ours (it goes to the child as usual).
pub fn answer(msg: &Message, session: &Session) -> bool {
    let Some(id) = msg.id.as_deref() else {
        return false;
    };
    let key = format!("{} {}", session.id, id.get());
    let Some((input, tx)) = lock(&WAITING).remove(&key) else {
        return false;
    };
    let value: Value = serde_json::from_slice(&msg.to_vec()).unwrap_or(Value::Null);
    let _ = tx.try_send((input, value));
    true
}

/// Calls the upstream again with a round's `inputResponses` (the caller's closure: the same
/// child, the same session).
pub type Recall = Box<dyn FnMut(Message) -> Result<Reply, Error> + Send>;

/// One call's answer stream, with its input rounds turned into server-to-client requests.
pub struct Rounds {
    current: Box<dyn MessageStream>,
    recall: Recall,
    /// The request as sent upstream (with `_meta`).
    request: Message,
    session: String,
    outbox: VecDeque<Item>,
    waiting: Option<Waiting>,
    rounds: u32,
    /// `--input-timeout`: how long the client has to answer a round's requests.
    input_timeout: Duration,
}

/// A round in progress: the client's answers being collected.
struct Waiting {
    rx: Receiver<(String, Value)>,
    keys: Vec<String>,
    ids: Vec<String>,
    answers: Map<String, Value>,
    state: Option<Value>,
    until: Instant,
}

impl Rounds {
    /// Wraps the first answer of `request` (sent upstream in session `session`); the client
    /// has `input_timeout` to answer each round (`--input-timeout`).
    pub fn new(
        first: Reply,
        recall: Recall,
        request: Message,
        session: &str,
        input_timeout: Duration,
    ) -> Rounds {
        Rounds {
            input_timeout,
            current: stream_of(first),
            recall,
            request,
            session: session.to_owned(),
            outbox: VecDeque::new(),
            waiting: None,
            rounds: 0,
        }
    }

    /// Starts a round from an `InputRequiredResult`'s `result`: one request per input.
    fn start(&mut self, result: &Map<String, Value>) -> Result<(), Error> {
        self.rounds += 1;
        if self.rounds > MAX_ROUNDS {
            return Err(Error::UpstreamProtocol(format!(
                "more than {MAX_ROUNDS} input rounds"
            )));
        }
        let Some(Value::Object(inputs)) = result.get("inputRequests") else {
            return Err(Error::UpstreamProtocol(
                "InputRequiredResult without inputRequests".into(),
            ));
        };
        let (tx, rx) = bounded(inputs.len().max(1));
        let mut w = Waiting {
            rx,
            keys: Vec::new(),
            ids: Vec::new(),
            answers: Map::new(),
            state: result.get("requestState").cloned(),
            until: Instant::now() + self.input_timeout,
        };
        let mut table = lock(&WAITING);
        for (key, input) in inputs {
            if table.len() >= MAX_WAITING {
                drop(table);
                self.forget(&w.ids);
                return Err(Error::Unavailable(
                    "too many input requests waiting for clients".into(),
                ));
            }
            let method = input.get("method").and_then(Value::as_str).unwrap_or("");
            let id = format!("\"shadowcat-i{}\"", NEXT.fetch_add(1, Ordering::Relaxed));
            let params = input.get("params").cloned().unwrap_or_else(|| json!({}));
            let body = format!(
                r#"{{"jsonrpc":"2.0","id":{id},"method":{},"params":{params}}}"#,
                Value::String(method.to_owned())
            );
            table.insert(format!("{} {id}", self.session), (key.clone(), tx.clone()));
            self.outbox.push_back(Item::Message(body.into_bytes()));
            w.keys.push(key.clone());
            w.ids.push(id);
        }
        drop(table);
        self.waiting = Some(w);
        Ok(())
    }

    fn forget(&self, ids: &[String]) {
        let mut table = lock(&WAITING);
        for id in ids {
            table.remove(&format!("{} {id}", self.session));
        }
    }

    /// The request again, with `inputResponses` and `requestState`.
    fn retry(&self, w: &Waiting) -> Result<Message, Error> {
        let mut params = match self.request.params_value() {
            Some(Value::Object(p)) => p,
            _ => Map::new(),
        };
        params.insert("inputResponses".into(), Value::Object(w.answers.clone()));
        match &w.state {
            Some(state) => params.insert("requestState".into(), state.clone()),
            None => params.remove("requestState"),
        };
        let id = self
            .request
            .id
            .as_deref()
            .map(|i| i.get())
            .unwrap_or("null");
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":{},"params":{}}}"#,
            serde_json::to_string(self.request.method())
                .map_err(|e| Error::Internal(e.to_string()))?,
            Value::Object(params)
        );
        Message::parse(body.as_bytes())
    }
}

/// The `result` of an `InputRequiredResult` response body, if it is one.
fn input_required(body: &[u8]) -> Option<Map<String, Value>> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let result = v.get("result")?.as_object()?;
    (result.get("resultType")? == "input_required").then(|| result.clone())
}

/// A reply as a stream.
fn stream_of(reply: Reply) -> Box<dyn MessageStream> {
    match reply {
        Reply::Stream(s) => s,
        Reply::Message(b) => Box::new(Once(Some(b))),
        Reply::Relay { body, .. } => Box::new(Once(Some(body))),
        Reply::Accepted => Box::new(Once(None)),
    }
}

/// A stream of one final message.
struct Once(Option<Vec<u8>>);

impl MessageStream for Once {
    fn poll_until(&mut self, _wake: Instant) -> Result<Poll, Error> {
        Ok(match self.0.take() {
            Some(b) => Poll::Item(Item::Final(b)),
            None => Poll::End,
        })
    }
}

impl MessageStream for Rounds {
    fn poll_until(&mut self, wake: Instant) -> Result<Poll, Error> {
        loop {
            if let Some(item) = self.outbox.pop_front() {
                return Ok(Poll::Item(item));
            }
            if let Some(w) = &mut self.waiting {
                if w.answers.len() < w.keys.len() {
                    match w.rx.recv_deadline(wake.min(w.until)) {
                        Ok((key, response)) => {
                            match response.get("result") {
                                Some(r @ Value::Object(_)) => {
                                    w.answers.insert(key, r.clone());
                                }
                                _ => {
                                    return Err(Error::UpstreamProtocol(format!(
                                        "the client refused the input request {key}: {}",
                                        response.get("error").unwrap_or(&Value::Null)
                                    )));
                                }
                            }
                            continue;
                        }
                        Err(RecvTimeoutError::Timeout) if Instant::now() < w.until => {
                            return Ok(Poll::Idle);
                        }
                        Err(_) => return Err(Error::Timeout),
                    }
                }
                let Some(w) = self.waiting.take() else {
                    continue;
                };
                let msg = self.retry(&w)?;
                self.current = stream_of((self.recall)(msg)?);
                continue;
            }
            match self.current.poll_until(wake)? {
                Poll::Item(Item::Final(b)) => match input_required(&b) {
                    Some(result) => self.start(&result)?,
                    None => return Ok(Poll::Item(Item::Final(b))),
                },
                other => return Ok(other),
            }
        }
    }

    fn must_stream(&self) -> bool {
        true
    }

    fn dropped(&mut self) -> u64 {
        self.current.dropped()
    }
}

impl Drop for Rounds {
    fn drop(&mut self) {
        if let Some(w) = self.waiting.take() {
            self.forget(&w.ids);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_request_gains_the_meta_and_keeps_its_own() {
        let init = Message::parse(
            br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{"sampling":{}},"clientInfo":{"name":"c","version":"1"}}}"#,
        )
        .unwrap();
        let meta = session_meta(&init);
        let call = Message::parse(
            br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","_meta":{"progressToken":3}}}"#,
        )
        .unwrap();
        let out = with_meta(&call, &meta, Some(LogLevel::parse("info").unwrap())).unwrap();
        let p = out.params_value().unwrap();
        assert_eq!(p["name"], "echo");
        assert_eq!(p["_meta"]["progressToken"], 3);
        assert_eq!(p["_meta"][META_VERSION], MODERN_VERSION);
        assert_eq!(p["_meta"][META_CAPABILITIES]["sampling"], json!({}));
        assert_eq!(p["_meta"][META_CLIENT_INFO]["name"], "c");
        assert_eq!(p["_meta"][META_LOG_LEVEL], "info");
        assert_eq!(out.id.as_deref().map(|i| i.get()), Some("7"));
        let bad = Message::parse(br#"{"jsonrpc":"2.0","id":1,"method":"x","params":[1]}"#).unwrap();
        assert!(with_meta(&bad, &meta, None).is_err());
    }
}
