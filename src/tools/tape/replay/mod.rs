//! `shadowcat replay TAPE`: serves a tape as an MCP server in the tape's era, over Streamable
//! HTTP (`http.rs`) or newline-delimited stdio (`stdio.rs`).
//!
//! Each request is matched to a recorded one (`matching.rs` has the rule) and answered with
//! that [`Plan`]: first the server messages the tape has between that request and its response
//! (attributed as `tools/tape/exchange.rs` says), then the recorded response with the client's
//! id. On the way:
//! * `notifications/progress` carry the client's new `progressToken`, and are left out when the
//!   client sent none;
//! * a server-to-client request (sampling, elicitation, roots) is sent with a fresh id
//!   (`replay-1`, `replay-2`, …), and the rest waits for the client's answer (at most
//!   `--answer-timeout`; then it goes on without);
//! * `initialize` is answered from the tape, or, when the tape has none, from its header (era,
//!   server info and capabilities).
//!
//! Nothing is paced: recorded delays are not reproduced. Server messages sent while no request
//! was in flight are not replayed. Client notifications are accepted and ignored.
//!
//! A directory of tapes replays as one ([`Script::pooled`]): every tape's exchanges, one tape
//! after the other, so each replayed session answers a request from the first tape that
//! recorded it. `mock.rs` answers single requests from a tape for the proxy's `mock_from`
//! fault rules.

use std::collections::HashMap;
use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use serde_json::{Value, json};

use super::exchange::{self, EventKind, Exchange, id_key};
use super::read::{Tape, read_tape};
use crate::error::Error;
use crate::util::{Escaped, lock};

pub mod http;
pub mod matching;
pub mod mock;
pub mod stdio;

use matching::{Found, Matcher};

/// A tape made ready for replay: its exchanges and how to replay them.
pub struct Script {
    /// The tape (header and lines).
    pub tape: Tape,
    /// Its exchanges.
    pub exchanges: Vec<Exchange>,
    /// `--strict`.
    pub strict: bool,
    /// How long a server-to-client request waits for the client's answer.
    pub answer_timeout: Duration,
}

/// Most tapes a directory replay reads.
pub const MAX_TAPES: usize = 4096;

impl Script {
    /// Prepares `tape` for replay.
    pub fn new(tape: Tape, strict: bool, answer_timeout: Duration) -> Script {
        let exchanges = exchange::build(&tape.lines).exchanges;
        Script {
            tape,
            exchanges,
            strict,
            answer_timeout,
        }
    }

    /// Prepares the tape at `path` for replay, or, when `path` is a directory, every tape in
    /// it as one ([`Script::pooled`]).
    pub fn load(path: &Path, strict: bool, answer_timeout: Duration) -> Result<Script, Error> {
        if !path.is_dir() {
            return Ok(Script::new(read_tape(path)?, strict, answer_timeout));
        }
        let names = super::read::tape_files(path)?;
        if names.is_empty() {
            return Err(Error::Config(format!(
                "{}: no tapes (*.jsonl)",
                path.display()
            )));
        }
        if names.len() > MAX_TAPES {
            return Err(Error::Config(format!(
                "{}: {} tapes, more than the {MAX_TAPES} a replay reads",
                path.display(),
                names.len()
            )));
        }
        let tapes = names
            .iter()
            .map(|n| read_tape(&path.join(n)))
            .collect::<Result<Vec<_>, _>>()?;
        Script::pooled(path, tapes, strict, answer_timeout)
    }

    /// Many tapes (of one era kind: all stateless or all sessions) replayed as one: their
    /// exchanges one after the other, in the order given, numbered on. The first tape's header
    /// answers for all (era, server info). A replayed session then answers each request from
    /// whichever tape recorded it first (and unused by that session): a directory of the
    /// sessions of a test suite serves that suite again, each session taking what it needs.
    pub fn pooled(
        path: &Path,
        tapes: Vec<Tape>,
        strict: bool,
        answer_timeout: Duration,
    ) -> Result<Script, Error> {
        let mut tapes = tapes.into_iter();
        let Some(first) = tapes.next() else {
            return Err(Error::Config(format!("{}: no tapes", path.display())));
        };
        let stateless = first.header.stateless();
        let mut exchanges = exchange::build(&first.lines).exchanges;
        let mut files = first.files;
        for t in tapes {
            if t.header.stateless() != stateless {
                return Err(Error::Config(format!(
                    "{}: stateless (2026-07-28) and session tapes cannot be replayed together",
                    t.path.display()
                )));
            }
            files += t.files;
            let base = exchanges.len();
            exchanges.extend(
                exchange::build(&t.lines)
                    .exchanges
                    .into_iter()
                    .map(|mut x| {
                        x.number += base;
                        x
                    }),
            );
        }
        let tape = Tape {
            path: path.to_owned(),
            files,
            lines: Vec::new(),
            ..first
        };
        Ok(Script {
            tape,
            exchanges,
            strict,
            answer_timeout,
        })
    }

    /// The initialize result the header implies, for tapes without `initialize`.
    fn header_initialize(&self) -> Value {
        let h = &self.tape.header;
        let side = |k: &str| h.raw.get("server").and_then(|s| s.get(k)).cloned();
        json!({
            "protocolVersion": h.era,
            "capabilities": side("capabilities").unwrap_or_else(|| json!({})),
            "serverInfo": side("info").unwrap_or_else(
                || json!({"name": "shadowcat-replay", "version": env!("CARGO_PKG_VERSION")})),
        })
    }
}

/// One step of an answer before its response.
#[derive(Debug, PartialEq)]
pub enum Step {
    /// Send this message.
    Send(Value),
    /// Send this server-to-client request (id `id`) and wait for the client's answer.
    Ask {
        /// The request's id, as [`id_key`] spells it.
        id: String,
        /// The request.
        msg: Value,
    },
}

/// Everything one request gets, in order.
#[derive(Debug, PartialEq)]
pub struct Plan {
    /// Messages before the response.
    pub steps: Vec<Step>,
    /// The response.
    pub response: Value,
}

/// Where a plan's messages go: an SSE stream, stdout.
pub trait Sink {
    /// Sends one message.
    fn send(&mut self, msg: &Value) -> io::Result<()>;
}

/// One client's replay of the tape: what it has used, and its server-to-client requests
/// waiting for answers.
pub struct Session {
    script: Arc<Script>,
    matcher: Mutex<Matcher>,
    waiting: Mutex<HashMap<String, Sender<Value>>>,
    asked: AtomicU64,
}

impl Session {
    /// A fresh replay of `script`.
    pub fn new(script: Arc<Script>) -> Session {
        let matcher = Matcher::new(script.exchanges.len(), script.strict);
        Session {
            script,
            matcher: Mutex::new(matcher),
            waiting: Mutex::new(HashMap::new()),
            asked: AtomicU64::new(0),
        }
    }

    /// What answers `request` (a JSON-RPC request object).
    pub fn plan(&self, request: &Value) -> Plan {
        let id = request.get("id").cloned().unwrap_or(Value::Null);
        let method = request.get("method").and_then(Value::as_str).unwrap_or("");
        let xs = &self.script.exchanges;
        let found = lock(&self.matcher).find(xs, method, request.get("params"));
        let x = match found {
            Found::Exchange(i) => match xs.get(i) {
                Some(x) => x,
                None => return result_plan(id, json!({})),
            },
            Found::Ping => return result_plan(id, json!({})),
            Found::Miss(_) if method == "initialize" => {
                return result_plan(id, self.script.header_initialize());
            }
            Found::Miss(miss) => {
                log::warn!("replay: unmatched request: {}", Escaped(&miss.message));
                let error = json!({"code": miss.code, "message": miss.message, "data": miss.data});
                return Plan {
                    steps: Vec::new(),
                    response: json!({"jsonrpc": "2.0", "id": id, "error": error}),
                };
            }
        };
        log::debug!(
            "replay: {} answered by recorded request #{}",
            Escaped(method),
            x.number
        );
        let token = exchange::progress_token(request);
        let mut steps = Vec::new();
        for e in &x.events {
            match e.kind {
                EventKind::Notification => {
                    let mut msg = e.msg.clone();
                    if msg.get("method").and_then(Value::as_str) == Some("notifications/progress") {
                        let Some(token) = token else { continue };
                        if let Some(p) = msg.get_mut("params").and_then(Value::as_object_mut) {
                            p.insert("progressToken".into(), token.clone());
                        }
                    }
                    steps.push(Step::Send(msg));
                }
                EventKind::ServerRequest => {
                    let n = self.asked.fetch_add(1, Ordering::Relaxed) + 1;
                    let new_id = Value::String(format!("replay-{n}"));
                    let mut msg = e.msg.clone();
                    if let Some(m) = msg.as_object_mut() {
                        m.insert("id".into(), new_id.clone());
                    }
                    steps.push(Step::Ask {
                        id: id_key(&new_id),
                        msg,
                    });
                }
                EventKind::ClientAnswer => {}
            }
        }
        let mut response = x
            .response
            .clone()
            .unwrap_or_else(|| json!({"jsonrpc": "2.0"}));
        if let Some(m) = response.as_object_mut() {
            m.insert("id".into(), id);
        }
        Plan { steps, response }
    }

    /// Sends `plan` through `sink`, waiting for the client's answer after each
    /// server-to-client request.
    pub fn play(&self, plan: Plan, sink: &mut dyn Sink) -> io::Result<()> {
        for step in plan.steps {
            match step {
                Step::Send(msg) => sink.send(&msg)?,
                Step::Ask { id, msg } => {
                    let answer = self.expect(&id);
                    let sent = sink.send(&msg);
                    let got = sent
                        .as_ref()
                        .ok()
                        .map(|()| answer.recv_timeout(self.script.answer_timeout));
                    lock(&self.waiting).remove(&id);
                    sent?;
                    if !matches!(got, Some(Ok(_))) {
                        let method = msg.get("method").and_then(Value::as_str).unwrap_or("?");
                        log::warn!(
                            "replay: no answer to {} within {:?}; going on",
                            Escaped(method),
                            self.script.answer_timeout
                        );
                    }
                }
            }
        }
        sink.send(&plan.response)
    }

    fn expect(&self, id: &str) -> Receiver<Value> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        lock(&self.waiting).insert(id.to_owned(), tx);
        rx
    }

    /// Routes a client's response to the server-to-client request waiting for it; false when
    /// none is.
    pub fn answer(&self, msg: &Value) -> bool {
        let Some(id) = msg.get("id").map(id_key) else {
            return false;
        };
        match lock(&self.waiting).remove(&id) {
            Some(tx) => tx.try_send(msg.clone()).is_ok(),
            None => {
                log::debug!(
                    "replay: an answer for {}, which nothing waits for",
                    Escaped(&id)
                );
                false
            }
        }
    }
}

fn result_plan(id: Value, result: Value) -> Plan {
    Plan {
        steps: Vec::new(),
        response: json!({"jsonrpc": "2.0", "id": id, "result": result}),
    }
}

/// 128 random bits from `/dev/urandom` as 32 hex digits.
pub fn random_hex() -> io::Result<String> {
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::tape::read::parse;
    use std::path::Path;

    pub(crate) const TAPE: &str =
        include_str!("../../../../tests/fixtures/tapes/demo-session.jsonl");

    fn script() -> Arc<Script> {
        let f = parse(Path::new("demo-session.jsonl"), TAPE.as_bytes()).expect("fixture");
        let tape = Tape {
            path: "demo-session.jsonl".into(),
            header: f.header,
            lines: f.lines,
            files: 1,
            incomplete: 0,
        };
        Arc::new(Script::new(tape, false, Duration::from_secs(1)))
    }

    struct Collect(Vec<Value>);
    impl Sink for Collect {
        fn send(&mut self, msg: &Value) -> io::Result<()> {
            self.0.push(msg.clone());
            Ok(())
        }
    }

    #[test]
    fn progress_gets_the_new_token_and_the_new_id() {
        let s = Session::new(script());
        let req = json!({"jsonrpc": "2.0", "id": "abc", "method": "tools/call", "params":
            {"name": "stream_events", "arguments": {"count": 3, "intervalMs": 10},
             "_meta": {"progressToken": "tok"}}});
        let plan = s.plan(&req);
        let progress: Vec<&Value> = plan
            .steps
            .iter()
            .filter_map(|s| match s {
                Step::Send(m) if m["method"] == "notifications/progress" => Some(m),
                _ => None,
            })
            .collect();
        assert_eq!(progress.len(), 3);
        assert!(
            progress
                .iter()
                .all(|m| m["params"]["progressToken"] == "tok")
        );
        assert_eq!(plan.response["id"], "abc");
        assert_eq!(
            plan.response["result"]["content"][0]["text"],
            "streamed 3 events"
        );
        // Without a token of its own the client gets no progress, but the log messages.
        let s = Session::new(script());
        let mut req = req;
        req["params"]["_meta"] = json!({});
        let plan = s.plan(&req);
        assert_eq!(plan.steps.len(), 3);
    }

    #[test]
    fn a_server_request_waits_for_the_answer() {
        let s = Arc::new(Session::new(script()));
        let req = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params":
            {"name": "test_sampling", "arguments": {"prompt": "hi"}}});
        let plan = s.plan(&req);
        let [Step::Ask { id, msg }] = &plan.steps[..] else {
            panic!("one sampling request: {plan:?}");
        };
        assert_eq!(msg["method"], "sampling/createMessage");
        assert_eq!(msg["id"], "replay-1");
        assert_eq!(id, "\"replay-1\"");
        struct Answering(Arc<Session>, Vec<Value>);
        impl Sink for Answering {
            fn send(&mut self, msg: &Value) -> io::Result<()> {
                self.1.push(msg.clone());
                if msg.get("method").is_some() {
                    let s = Arc::clone(&self.0);
                    let id = msg["id"].clone();
                    std::thread::spawn(move || {
                        assert!(s.answer(&json!({"jsonrpc": "2.0", "id": id, "result": {}})));
                    });
                }
                Ok(())
            }
        }
        let mut sink = Answering(Arc::clone(&s), Vec::new());
        let started = std::time::Instant::now();
        s.play(plan, &mut sink).expect("play");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "answered, not timed out"
        );
        assert_eq!(sink.1.len(), 2);
        assert_eq!(sink.1[1]["id"], 9);
        assert!(!s.answer(&json!({"jsonrpc": "2.0", "id": "replay-1", "result": {}})));
    }

    #[test]
    fn unmatched_and_ping_and_initialize() {
        let s = Session::new(script());
        let plan = s.plan(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"message": "bye"}}}));
        assert_eq!(plan.response["error"]["code"], -32602);
        let text = plan.response["error"]["message"]
            .as_str()
            .unwrap_or_default();
        assert!(text.contains("#3 tools/call"), "{text}");
        let plan = s.plan(&json!({"jsonrpc": "2.0", "id": 2, "method": "ping"}));
        assert_eq!(
            plan.response,
            json!({"jsonrpc": "2.0", "id": 2, "result": {}})
        );
        let plan = s.plan(&json!({"jsonrpc": "2.0", "id": 3, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18"}}));
        assert_eq!(plan.response["result"]["protocolVersion"], "2025-11-25");
        assert_eq!(plan.response["id"], 3);
        let mut c = Collect(Vec::new());
        s.play(plan, &mut c).expect("play");
        assert_eq!(c.0.len(), 1);
    }
}
