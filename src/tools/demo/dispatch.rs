//! Reading the client: each line is a request, a notification (`notifications/cancelled`
//! stops a job) or a response to one of our requests. A request's era is decided here (from
//! `_meta` and the method), then it is routed to its handler; the lifecycle methods
//! (`initialize`, `ping`, `logging/setLevel`, `server/discover`) are answered here too.

use std::borrow::Cow;
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::util::lock;

use super::connection::{CACHEABLE, Empty, Era, Fail, Handled, RpcError, Session, Shared};
use super::prompts::{complete, get_prompt, prompts_list};
use super::request::{Req, ReqMeta};
use super::resources::{read_resource, resources_list, subscribe};
use super::tools::{call_tool, tools_list};
use super::{
    INTERNAL_ERROR, INVALID_REQUEST, LATEST_LEGACY, LEGACY_VERSIONS, LEVELS, METHOD_NOT_FOUND,
    MODERN_VERSION, PARSE_ERROR, SERVER_INFO, SUPPORTED_VERSIONS, TEMPLATE_URI,
    UNSUPPORTED_VERSION,
};

#[derive(Deserialize)]
struct Incoming<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    method: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
    #[serde(borrow, default)]
    result: Option<&'a RawValue>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct MetaOnly<'a> {
    #[serde(rename = "_meta", borrow, default)]
    meta: Option<ReqMeta<'a>>,
}

pub(super) fn handle_line(sh: &Arc<Shared>, raw: &[u8]) -> io::Result<()> {
    let text = raw.trim_ascii();
    if text.is_empty() {
        return Ok(());
    }
    if text[0] == b'[' {
        return sh.send_error(
            None,
            &RpcError::new(INVALID_REQUEST, "JSON-RPC batches are not supported"),
        );
    }
    let msg: Incoming = match serde_json::from_slice(text) {
        Ok(msg) => msg,
        Err(e) => {
            return sh.send_error(
                None,
                &RpcError::new(PARSE_ERROR, format!("Parse error: {e}")),
            );
        }
    };
    match (msg.method, msg.id) {
        (Some(method), Some(id)) => handle_request(sh, id, &method, msg.params),
        (Some(method), None) => {
            handle_notification(sh, &method, msg.params);
            Ok(())
        }
        (None, id) if msg.result.is_some() || msg.error.is_some() => {
            deliver(sh, id, msg.result, msg.error);
            Ok(())
        }
        (None, id) => sh.send_error(
            id,
            &RpcError::new(INVALID_REQUEST, "Invalid request: no method"),
        ),
    }
}

fn handle_notification(sh: &Shared, method: &str, params: Option<&RawValue>) {
    #[derive(Deserialize)]
    struct Cancelled<'a> {
        #[serde(rename = "requestId", borrow)]
        request_id: &'a RawValue,
    }
    match method {
        "notifications/cancelled" => {
            match params.map(|p| serde_json::from_str::<Cancelled>(p.get())) {
                Some(Ok(c)) => {
                    // Dropping the sender wakes the job, which then stops without responding.
                    if lock(&sh.inflight).remove(c.request_id.get()).is_some() {
                        log::debug!("demo-server: cancelled request {}", c.request_id.get());
                    }
                }
                _ => log::debug!("demo-server: ignoring malformed notifications/cancelled"),
            }
        }
        _ => log::debug!("demo-server: notification {method}"),
    }
}

/// Routes a client's response to the job waiting for it.
fn deliver(
    sh: &Shared,
    id: Option<&RawValue>,
    result: Option<&RawValue>,
    error: Option<&RawValue>,
) {
    let key = id.and_then(|id| serde_json::from_str::<String>(id.get()).ok());
    let Some(waiter) = key.and_then(|key| lock(&sh.pending).remove(&key)) else {
        log::debug!("demo-server: response for an unknown request {id:?}");
        return;
    };
    let parse = |raw: &RawValue| serde_json::from_str::<Value>(raw.get()).unwrap_or(Value::Null);
    let answer = match (result, error) {
        (_, Some(error)) => Err(parse(error)),
        (Some(result), None) => Ok(parse(result)),
        (None, None) => Ok(Value::Null),
    };
    // The job may have been cancelled meanwhile; then nobody listens and that is fine.
    let _ = waiter.send(answer);
}

fn handle_request(
    sh: &Arc<Shared>,
    id: &RawValue,
    method: &str,
    params: Option<&RawValue>,
) -> io::Result<()> {
    let requested = params
        .and_then(|p| serde_json::from_str::<MetaOnly>(p.get()).ok())
        .and_then(|m| m.meta)
        .and_then(|m| m.version);
    let era = match requested.as_deref() {
        _ if method == "server/discover" => Era::Modern { cacheable: true },
        None => Era::Legacy,
        Some(MODERN_VERSION) => Era::Modern {
            cacheable: CACHEABLE.contains(&method),
        },
        Some(v) if LEGACY_VERSIONS.contains(&v) => Era::Legacy,
        Some(v) => {
            let mut error = RpcError::new(
                UNSUPPORTED_VERSION,
                format!("Unsupported protocol version: {v}"),
            );
            error.data = Some(json!({"supported": SUPPORTED_VERSIONS, "requested": v}));
            return sh.send_error(Some(id), &error);
        }
    };
    let req = Req {
        sh,
        id,
        era,
        params,
    };
    let outcome = match method {
        "ping" | "logging/setLevel" | "resources/subscribe" | "resources/unsubscribe"
            if matches!(era, Era::Modern { .. }) =>
        {
            let msg = format!("{method} does not exist in protocol revision {MODERN_VERSION}");
            Err(RpcError::new(METHOD_NOT_FOUND, msg).into())
        }
        "initialize" => initialize(&req),
        "ping" => req.reply(&Empty {}),
        "server/discover" => req.reply(&json!({
            "supportedVersions": SUPPORTED_VERSIONS,
            "capabilities": capabilities(),
            "serverInfo": SERVER_INFO,
        })),
        "tools/list" => req.reply(tools_list()),
        "tools/call" => call_tool(&req),
        "resources/list" => req.reply(&resources_list()),
        "resources/templates/list" => req.reply(&json!({"resourceTemplates": [{
            "uriTemplate": TEMPLATE_URI, "name": "template", "title": "Resource Template",
            "description": "A resource template with parameter substitution",
            "mimeType": "application/json",
        }]})),
        "resources/read" => read_resource(&req),
        "resources/subscribe" => subscribe(&req, true),
        "resources/unsubscribe" => subscribe(&req, false),
        "prompts/list" => req.reply(&prompts_list()),
        "prompts/get" => get_prompt(&req),
        "completion/complete" => complete(&req),
        "logging/setLevel" => set_level(&req),
        _ => Err(RpcError::new(METHOD_NOT_FOUND, format!("Method not found: {method}")).into()),
    };
    match outcome {
        Ok(()) => Ok(()),
        Err(Fail::Rpc(e)) => sh.send_error(Some(id), &e),
        Err(Fail::Io(e)) => Err(e),
    }
}

pub(super) fn capabilities() -> Value {
    json!({
        "tools": {"listChanged": true},
        "resources": {"subscribe": true, "listChanged": true},
        "prompts": {"listChanged": true},
        "logging": {},
        "completions": {},
    })
}

fn initialize(req: &Req) -> Handled {
    #[derive(Deserialize)]
    struct Init {
        #[serde(rename = "protocolVersion")]
        protocol_version: String,
        #[serde(default)]
        capabilities: Value,
    }
    if req.sh.options.fail_initialize {
        let msg = "initialize refused: demo-server runs with --fail-initialize";
        return Err(RpcError::new(INTERNAL_ERROR, msg).into());
    }
    let init: Init = req.parse()?;
    let version = match LEGACY_VERSIONS
        .iter()
        .find(|v| **v == init.protocol_version)
    {
        Some(v) => v,
        None => LATEST_LEGACY,
    };
    *lock(&req.sh.session) = Session {
        version: Some(version.to_owned()),
        capabilities: init.capabilities,
    };
    req.reply(&json!({
        "protocolVersion": version, "capabilities": capabilities(), "serverInfo": SERVER_INFO,
    }))
}

fn set_level(req: &Req) -> Handled {
    #[derive(Deserialize)]
    struct SetLevel<'a> {
        #[serde(borrow)]
        level: Cow<'a, str>,
    }
    let set: SetLevel = req.parse()?;
    let Some(index) = LEVELS.iter().position(|l| *l == set.level) else {
        return Err(RpcError::params(format!("Unknown log level: {}", set.level)).into());
    };
    req.sh.min_level.store(index as u8, Ordering::Relaxed);
    req.reply(&Empty {})
}
