//! Messages to and from members: copies, rewritten params, a call in a member's session,
//! and the final answer of a reply.

use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;

use crate::error::Error;
use crate::jsonrpc::{self, Message};
use crate::session::Session;
use crate::upstream::{Call, Item, Poll, Reply};

/// `call` as member session `child` gets it, carrying `msg`. `Mcp-Name` is left out: a name
/// the federation rewrote would no longer match it.
pub fn member_call<'a>(msg: Message, child: &'a Arc<Session>, call: &Call<'_>) -> Call<'a> {
    Call {
        msg,
        session: Some(child),
        deadline: call.deadline,
        headers: call
            .headers
            .iter()
            .filter(|(n, _)| !n.eq_ignore_ascii_case("mcp-name"))
            .cloned()
            .collect(),
    }
}

/// The final answer of `reply` (progress and other messages before it are dropped).
pub fn collect(reply: Reply, deadline: Instant) -> Result<Vec<u8>, Error> {
    match reply {
        Reply::Message(b) => Ok(b),
        Reply::Accepted => Err(Error::UpstreamProtocol(
            "accepted a request without answering it".into(),
        )),
        Reply::Relay { status, body, .. } => Err(Error::UpstreamStatus {
            status,
            message: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
        }),
        Reply::Stream(mut s) => loop {
            match s.poll_until(deadline)? {
                Poll::Item(Item::Final(b)) => return Ok(b),
                Poll::Item(Item::Message(_)) => {}
                Poll::Idle if Instant::now() >= deadline => return Err(Error::Timeout),
                Poll::Idle => {}
                Poll::End => {
                    return Err(Error::UpstreamProtocol(
                        "the stream ended without an answer".into(),
                    ));
                }
            }
        },
    }
}

/// A JSON-RPC answer's `result`, or its error's message.
pub fn result_of(body: &[u8]) -> Result<Value, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    if let Some(e) = v.get("error") {
        let msg = e.get("message").and_then(Value::as_str).unwrap_or("error");
        return Err(msg.to_owned());
    }
    v.get("result")
        .cloned()
        .ok_or_else(|| "an answer without a result".to_owned())
}

/// A copy of `msg`.
pub fn copy(msg: &Message) -> Message {
    Message {
        jsonrpc: msg.jsonrpc.clone(),
        id: msg.id.clone(),
        method: msg.method.clone(),
        params: msg.params.clone(),
        result: msg.result.clone(),
        error: msg.error.clone(),
    }
}

/// `msg` with its `params` replaced.
pub fn with_params(msg: &Message, params: &Value) -> Message {
    Message {
        jsonrpc: msg.jsonrpc.clone(),
        id: msg.id.clone(),
        method: msg.method.clone(),
        params: Some(jsonrpc::raw(params.to_string())),
        result: None,
        error: None,
    }
}
