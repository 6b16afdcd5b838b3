//! A tape as exchanges: each request the client sent, its response, and the server's
//! messages that belong to it. `show`, `stats`, `diff` and `replay` all read tapes this way.
//!
//! Which server message belongs to which request (the attribution rule, in `build`):
//! * a response belongs to the in-flight request with its id;
//! * `notifications/progress` belongs to the in-flight request whose
//!   `params._meta.progressToken` equals its `progressToken`;
//! * any other server notification, and every server-to-client request (sampling,
//!   elicitation, roots), belongs to the request sent last among those in flight (no request
//!   in flight: it belongs to none, and replay does not send it);
//! * the client's answer to a server-to-client request belongs where that request does.
//!
//! Client notifications (`notifications/initialized`, `notifications/cancelled`, …) belong to
//! no exchange.

use std::collections::HashMap;

use serde_json::Value;

use super::read::{Dir, Kind, Line, kind};
use crate::tape::redact::canonical;

/// What a server message or client answer inside an exchange is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A server notification (progress, log message, list changed, …).
    Notification,
    /// A server-to-client request (sampling, elicitation, roots).
    ServerRequest,
    /// The client's answer to a server-to-client request.
    ClientAnswer,
}

/// One message inside an exchange, between its request and its response.
#[derive(Clone, Debug)]
pub struct Event {
    /// What it is.
    pub kind: EventKind,
    /// When (ms, the tape's clock).
    pub t: f64,
    /// The message.
    pub msg: Value,
}

/// How a response ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A result.
    Ok,
    /// A result with `isError: true`.
    ToolError,
    /// A JSON-RPC error with this code (0 when it has none).
    Error(i64),
    /// No response on the tape.
    Unanswered,
}

impl Outcome {
    /// `ok`, `tool_error`, `error:<code>` or `unanswered`.
    pub fn label(self) -> String {
        match self {
            Outcome::Ok => "ok".into(),
            Outcome::ToolError => "tool_error".into(),
            Outcome::Error(code) => format!("error:{code}"),
            Outcome::Unanswered => "unanswered".into(),
        }
    }
}

/// One request of the client and what came back for it.
#[derive(Clone, Debug)]
pub struct Exchange {
    /// 1-based, in the order the client sent its requests.
    pub number: usize,
    /// The request's method.
    pub method: String,
    /// The request as sent.
    pub request: Value,
    /// When it was sent.
    pub t_request: f64,
    /// The response, if the tape has it.
    pub response: Option<Value>,
    /// When the response came.
    pub t_response: Option<f64>,
    /// What came between, in tape order.
    pub events: Vec<Event>,
}

impl Exchange {
    /// The request's `params` (null when absent).
    pub fn params(&self) -> &Value {
        self.request.get("params").unwrap_or(&Value::Null)
    }

    /// The request's `params._meta.progressToken`, if any.
    pub fn progress_token(&self) -> Option<&Value> {
        progress_token(&self.request)
    }

    /// Milliseconds from request to response.
    pub fn latency_ms(&self) -> Option<f64> {
        self.t_response.map(|t| t - self.t_request)
    }

    /// How it ended.
    pub fn outcome(&self) -> Outcome {
        self.response.as_ref().map_or(Outcome::Unanswered, outcome)
    }

    /// What names the request's target, for display: the tool or prompt name, the URI.
    pub fn target(&self) -> Option<&str> {
        target(&self.request)
    }
}

/// `params._meta.progressToken` of a request.
pub fn progress_token(request: &Value) -> Option<&Value> {
    request
        .get("params")?
        .get("_meta")?
        .get("progressToken")
        .filter(|t| !t.is_null())
}

/// The tool or prompt `name`, or the resource `uri`, of a request.
pub fn target(request: &Value) -> Option<&str> {
    let params = request.get("params")?;
    params
        .get("name")
        .or_else(|| params.get("uri"))
        .or_else(|| {
            params
                .get("ref")
                .and_then(|r| r.get("name").or_else(|| r.get("uri")))
        })
        .and_then(Value::as_str)
}

/// How a response ended.
pub fn outcome(response: &Value) -> Outcome {
    if let Some(e) = response.get("error") {
        return Outcome::Error(e.get("code").and_then(Value::as_i64).unwrap_or(0));
    }
    let is_error = response
        .get("result")
        .and_then(|r| r.get("isError"))
        .and_then(Value::as_bool);
    if is_error == Some(true) {
        Outcome::ToolError
    } else {
        Outcome::Ok
    }
}

/// A tape's exchanges, and for each line the exchange it belongs to.
#[derive(Clone, Debug, Default)]
pub struct Timeline {
    /// In the order the client sent the requests.
    pub exchanges: Vec<Exchange>,
    /// For each line (same index as the tape's lines): the index in `exchanges` of the
    /// exchange it belongs to, if any.
    pub owner: Vec<Option<usize>>,
}

/// The canonical text of an id, for comparing ids.
pub fn id_key(id: &Value) -> String {
    canonical(id)
}

/// Splits `lines` into exchanges (the rule is in the module docs).
pub fn build(lines: &[Line]) -> Timeline {
    let mut exchanges: Vec<Exchange> = Vec::new();
    let mut owner = Vec::with_capacity(lines.len());
    // Requests without their response yet, oldest first (indices into `exchanges`).
    let mut inflight: Vec<usize> = Vec::new();
    // Server-to-client requests waiting for the client's answer: id → exchange.
    let mut asked: HashMap<String, usize> = HashMap::new();
    for line in lines {
        let msg = &line.msg;
        let id = msg.get("id").map(id_key);
        let found = match (line.dir, kind(msg)) {
            (Dir::C2s, Kind::Request) => {
                exchanges.push(Exchange {
                    number: exchanges.len() + 1,
                    method: line.method().unwrap_or_default().to_owned(),
                    request: msg.clone(),
                    t_request: line.t,
                    response: None,
                    t_response: None,
                    events: Vec::new(),
                });
                inflight.push(exchanges.len() - 1);
                Some(exchanges.len() - 1)
            }
            (Dir::C2s, Kind::Response) => {
                let at = id.and_then(|id| asked.remove(&id));
                if let Some(x) = at {
                    exchanges[x]
                        .events
                        .push(event(EventKind::ClientAnswer, line));
                }
                at
            }
            (Dir::S2c, Kind::Response) => {
                let pos = id.and_then(|id| {
                    inflight.iter().position(|&x| {
                        exchanges[x].request.get("id").map(id_key) == Some(id.clone())
                    })
                });
                pos.map(|pos| {
                    let x = inflight.remove(pos);
                    exchanges[x].response = Some(msg.clone());
                    exchanges[x].t_response = Some(line.t);
                    x
                })
            }
            (Dir::S2c, Kind::Request) => {
                let at = inflight.last().copied();
                if let Some(x) = at {
                    exchanges[x]
                        .events
                        .push(event(EventKind::ServerRequest, line));
                    if let Some(id) = id {
                        asked.insert(id, x);
                    }
                }
                at
            }
            (Dir::S2c, Kind::Notification) => {
                let token = (line.method() == Some("notifications/progress"))
                    .then(|| msg.get("params").and_then(|p| p.get("progressToken")))
                    .flatten();
                let at = match token {
                    Some(token) => inflight
                        .iter()
                        .copied()
                        .find(|&x| exchanges[x].progress_token() == Some(token)),
                    None => inflight.last().copied(),
                };
                if let Some(x) = at {
                    exchanges[x]
                        .events
                        .push(event(EventKind::Notification, line));
                }
                at
            }
            (Dir::C2s, _) | (Dir::S2c, Kind::Other) => None,
        };
        owner.push(found);
    }
    Timeline { exchanges, owner }
}

fn event(kind: EventKind, line: &Line) -> Event {
    Event {
        kind,
        t: line.t,
        msg: line.msg.clone(),
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use serde_json::json;

    pub fn line(t: f64, dir: Dir, msg: Value) -> Line {
        Line {
            t,
            dir,
            id: msg.get("id").cloned().unwrap_or(Value::Null),
            upstream_id: Value::Null,
            msg,
            synthetic: false,
            fault: None,
            part: 0,
            line: 0,
        }
    }

    #[test]
    fn attribution() {
        use Dir::{C2s, S2c};
        let lines = vec![
            line(
                0.0,
                C2s,
                json!({"jsonrpc":"2.0","id":1,"method":"tools/call",
                "params":{"name":"slow","_meta":{"progressToken":"p1"}}}),
            ),
            line(
                1.0,
                C2s,
                json!({"jsonrpc":"2.0","id":2,"method":"tools/call",
                "params":{"name":"ask"}}),
            ),
            line(
                2.0,
                S2c,
                json!({"jsonrpc":"2.0","method":"notifications/progress",
                "params":{"progressToken":"p1","progress":1}}),
            ),
            line(
                3.0,
                S2c,
                json!({"jsonrpc":"2.0","id":"s1","method":"sampling/createMessage",
                "params":{}}),
            ),
            line(
                4.0,
                S2c,
                json!({"jsonrpc":"2.0","method":"notifications/message",
                "params":{"data":"x"}}),
            ),
            line(
                5.0,
                C2s,
                json!({"jsonrpc":"2.0","id":"s1","result":{"model":"m"}}),
            ),
            line(
                6.0,
                S2c,
                json!({"jsonrpc":"2.0","id":2,"result":{"isError":true}}),
            ),
            line(
                7.0,
                C2s,
                json!({"jsonrpc":"2.0","method":"notifications/cancelled"}),
            ),
            line(
                9.0,
                S2c,
                json!({"jsonrpc":"2.0","id":1,"error":{"code":-32603}}),
            ),
            line(
                10.0,
                S2c,
                json!({"jsonrpc":"2.0","method":"notifications/tools/list_changed"}),
            ),
        ];
        let tl = build(&lines);
        assert_eq!(tl.exchanges.len(), 2);
        let (a, b) = (&tl.exchanges[0], &tl.exchanges[1]);
        assert_eq!(a.events.len(), 1, "progress goes by its token");
        assert_eq!(a.outcome(), Outcome::Error(-32603));
        assert_eq!(a.latency_ms(), Some(9.0));
        let kinds: Vec<EventKind> = b.events.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [
                EventKind::ServerRequest,
                EventKind::Notification,
                EventKind::ClientAnswer
            ]
        );
        assert_eq!(b.outcome(), Outcome::ToolError);
        assert_eq!(
            tl.owner,
            [
                Some(0),
                Some(1),
                Some(0),
                Some(1),
                Some(1),
                Some(1),
                Some(1),
                None,
                Some(0),
                None
            ]
        );
    }
}
