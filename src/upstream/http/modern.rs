//! A session-era client in front of a 2026-07-28-only HTTP upstream (issue #13 part B; the
//! session-era side is `crate::bridge::modern_upstream`): an `initialize` the upstream refuses
//! as such a server does (-32601) is answered from its `server/discover`, and the session's
//! requests are sent statelessly with the per-request `_meta` and the headers 2026-07-28
//! requires (`MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`); their input rounds become
//! server-to-client requests on the call's own stream. `ping` and `logging/setLevel` are
//! answered by the proxy. Not bridged over HTTP: `resources/(un)subscribe` (-32601) and the GET
//! stream (it carries nothing from the upstream).
//!
//! Owns: the session-era view of a 2026-07-28-only HTTP upstream. Must not touch: the pool and
//! the streams (`mod.rs`, `sse.rs`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::HttpInner;
use crate::bridge::legacy::final_body;
use crate::bridge::modern_upstream::{self, discover_probe, hello_of_discover, initialize_answer};
use crate::error::Error;
use crate::jsonrpc::{self, Kind, MODERN_VERSION, Message};
use crate::session::{Binding, Session};
use crate::upstream::{Call, Reply};

/// True when an upstream's answer to `initialize` is a "method not found" (-32601), as a
/// 2026-07-28-only server gives (HTTP 404 or 400, or 200).
pub(super) fn refused(reply: &Reply) -> bool {
    match reply {
        Reply::Relay { body, .. } | Reply::Message(body) => crate::bridge::not_found(body),
        _ => false,
    }
}

/// The upstream's `server/discover` as an `initialize` result, if it lists 2026-07-28.
pub(super) fn hello(
    inner: &Arc<HttpInner>,
    deadline: Instant,
) -> Option<serde_json::Map<String, Value>> {
    let msg = Message::parse(discover_probe().to_string().as_bytes()).ok()?;
    let call = Call {
        msg,
        session: None,
        deadline,
        headers: headers("server/discover", None),
    };
    let reply = inner.post(&call, None).ok()?.reply;
    let body = match reply {
        Reply::Relay { body, .. } => body,
        other => final_body(other, deadline).ok()?,
    };
    let v: Value = serde_json::from_slice(&body).ok()?;
    hello_of_discover(&v)
}

/// The 2026-07-28 headers of a request for `method` (`name`: its `Mcp-Name`).
fn headers(method: &str, name: Option<String>) -> Vec<(String, String)> {
    let mut h = vec![
        ("MCP-Protocol-Version".to_owned(), MODERN_VERSION.to_owned()),
        ("Mcp-Method".to_owned(), method.to_owned()),
    ];
    if let Some(name) = name {
        h.push(("Mcp-Name".to_owned(), name));
    }
    h
}

/// The session's binding and the `initialize` answer made from `hello`.
pub(super) fn initialize(
    hello: &serde_json::Map<String, Value>,
    init: &Message,
    version: &str,
) -> (Binding, Reply) {
    let binding = Binding {
        upstream_id: Mutex::new(None),
        modern_meta: Some(modern_upstream::session_meta(init)),
        ..Binding::default()
    };
    let id = init
        .id
        .as_deref()
        .map_or_else(|| "null".to_owned(), |i| i.get().to_owned());
    (
        binding,
        Reply::Message(initialize_answer(hello, &id, version)),
    )
}

/// Anything session `s` sends a 2026-07-28-only upstream.
pub(super) fn forward(
    inner: &Arc<HttpInner>,
    s: &Arc<Session>,
    meta: &Value,
    call: Call<'_>,
    input_timeout: Duration,
) -> Result<Reply, Error> {
    match call.msg.kind()? {
        Kind::Request => {}
        // The client's answer to an input round goes to its round; nothing else has a
        // 2026-07-28 meaning (cancellation is closing a request's stream).
        Kind::Response => {
            modern_upstream::answer(&call.msg, s);
            return Ok(Reply::Accepted);
        }
        Kind::Notification => return Ok(Reply::Accepted),
    }
    let id = call.msg.id.clone().unwrap_or_else(jsonrpc::null);
    if matches!(
        call.msg.method(),
        "resources/subscribe" | "resources/unsubscribe"
    ) {
        let text = "shadowcat: resource subscriptions are not bridged to a 2026-07-28-only HTTP \
                    server";
        return Ok(Reply::Message(jsonrpc::error_body(Some(&id), -32601, text)));
    }
    if let Some(reply) = modern_upstream::local(&call.msg, s)? {
        return Ok(reply);
    }
    let level = s.log_level().unwrap_or(crate::session::LogLevel::Debug);
    let msg = modern_upstream::with_meta(&call.msg, meta, Some(level))?;
    let method = msg.method().to_owned();
    let name = matches!(
        method.as_str(),
        "tools/call" | "prompts/get" | "resources/read"
    )
    .then(|| msg.target_name())
    .flatten();
    let h = headers(&method, name);
    let request = Message::parse(&msg.to_vec())?;
    let round = call.deadline.saturating_duration_since(Instant::now());
    let first = inner
        .post(
            &Call {
                msg,
                session: None,
                deadline: call.deadline,
                headers: h.clone(),
            },
            None,
        )?
        .reply;
    let up = inner.clone();
    let recall: modern_upstream::Recall = Box::new(move |msg| {
        let call = Call {
            msg,
            session: None,
            deadline: Instant::now() + round,
            headers: h.clone(),
        };
        Ok(up.post(&call, None)?.reply)
    });
    Ok(Reply::Stream(Box::new(modern_upstream::Rounds::new(
        first,
        recall,
        request,
        &s.id,
        input_timeout,
    ))))
}
