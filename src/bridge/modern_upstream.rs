//! A session-era client in front of a 2026-07-28-only upstream (issue #13 part B), for the
//! shared stdio upstream: the proxy answers `initialize` from the child's `server/discover`
//! (the handshake in `crate::upstream::stdio` keeps it as an `initialize`-shaped result), keeps
//! the session, and turns each session request into a 2026-07-28 one by adding the per-request
//! `_meta` (protocol version, the session's client capabilities and `clientInfo`, the level of
//! its last `logging/setLevel`). `ping` and `logging/setLevel` are answered here.
//!
//! Not bridged (yet): an `InputRequiredResult` from the upstream reaches the client as it is
//! (no server-to-client requests are made from it), and `resources/subscribe` is refused with
//! -32601 (no `subscriptions/listen` behind it).
//!
//! Owns: the `_meta` a session's requests gain, and the answers the proxy gives in the
//! upstream's place. Must not touch: how the child is called (the caller forwards).

use serde_json::{Map, Value, json};

use crate::error::Error;
use crate::jsonrpc::{self, META_CAPABILITIES, META_VERSION, MODERN_VERSION, Message};
use crate::session::{LogLevel, Session};
use crate::upstream::Reply;

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

/// The answer the proxy gives itself for a session request, if it is one of those: `ping`
/// (empty result), `logging/setLevel` (recorded on the session, sent with each later
/// request), `resources/(un)subscribe` (-32601: not bridged).
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
        "resources/subscribe" | "resources/unsubscribe" => {
            Ok(Some(Reply::Message(jsonrpc::error_body(
                Some(&id),
                -32601,
                "shadowcat: resource subscriptions are not bridged to a 2026-07-28-only server",
            ))))
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
