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

use super::connection::{CACHEABLE, Empty, Era, Fail, Handled, LogGate, RpcError, Session, Shared};
use super::extra::{strict_tool, tools_list_all};
use super::listen::listen;
use super::prompts::{complete, get_prompt, prompts_list, prompts_list_all};
use super::request::{Req, ReqMeta};
use super::resources::{read_resource, resources_list, subscribe};
use super::tools::{StrictTools, call_tool, tools_list};
use super::{
    INTERNAL_ERROR, INVALID_REQUEST, LATEST_LEGACY, LEGACY_VERSIONS, LEVELS, METHOD_NOT_FOUND,
    MODERN_VERSION, PARSE_ERROR, SERVER_INFO, SUPPORTED_VERSIONS, ServerEra, TEMPLATE_URI,
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
                    if lock(&sh.inflight).remove(c.request_id.get()).is_some()
                        || sh.hub.cancel(sh, c.request_id.get())
                    {
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
    let meta = params
        .and_then(|p| serde_json::from_str::<MetaOnly>(p.get()).ok())
        .and_then(|m| m.meta)
        .unwrap_or_default();
    let decided = match sh.options.era {
        ServerEra::Dual => dual_era(method, meta.version.as_deref()),
        ServerEra::Legacy => legacy_only(sh, method),
        ServerEra::Modern => modern_only(method, &meta),
    };
    let era = match decided {
        Ok(era) => era,
        Err(error) => return sh.send_error(Some(id), &error),
    };
    let modern = matches!(era, Era::Modern { .. });
    // A 2026-07-28 request is served as `--era modern` serves it whatever the era (a dual-era
    // server speaks each era fully); only `--era dual`'s legacy requests keep the old ways.
    let strict = sh.options.era != ServerEra::Dual || modern;
    let log = match (modern, meta.log_level.as_deref()) {
        (false, _) => LogGate::Session,
        (true, None) => LogGate::Request(None),
        (true, Some(level)) => match LEVELS.iter().position(|l| *l == level) {
            Some(index) => LogGate::Request(Some(index as u8)),
            None => {
                let error = RpcError::params(format!("Unknown log level: {level}"));
                return sh.send_error(Some(id), &error);
            }
        },
    };
    let req = Req {
        sh,
        id,
        era,
        params,
        caps: modern.then(|| meta.capabilities.unwrap_or_else(|| json!({}))),
        log,
    };
    let outcome = match method {
        "ping" | "logging/setLevel" | "resources/subscribe" | "resources/unsubscribe" if modern => {
            let msg = format!("{method} does not exist in protocol revision {MODERN_VERSION}");
            Err(RpcError::new(METHOD_NOT_FOUND, msg).into())
        }
        "subscriptions/listen" if modern => listen(&req),
        "initialize" => initialize(&req),
        "ping" => req.reply(&Empty {}),
        "server/discover" => req.reply(&json!({
            "supportedVersions": supported_versions(sh.options.era),
            "capabilities": capabilities(),
            "serverInfo": SERVER_INFO,
        })),
        "tools/list" if strict => req.reply(tools_list_all()),
        "tools/list" => req.reply(tools_list()),
        "tools/call" => call_tool(&req, strict.then_some(strict_tool as StrictTools)),
        "resources/list" => req.reply(&resources_list()),
        "resources/templates/list" => req.reply(&json!({"resourceTemplates": [{
            "uriTemplate": TEMPLATE_URI, "name": "template", "title": "Resource Template",
            "description": "A resource template with parameter substitution",
            "mimeType": "application/json",
        }]})),
        "resources/read" => read_resource(&req),
        "resources/subscribe" => subscribe(&req, true),
        "resources/unsubscribe" => subscribe(&req, false),
        "prompts/list" if strict => req.reply(&prompts_list_all()),
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

/// The versions `server/discover` and -32022 errors name.
fn supported_versions(era: ServerEra) -> &'static [&'static str] {
    match era {
        ServerEra::Modern => &[MODERN_VERSION],
        _ => &SUPPORTED_VERSIONS,
    }
}

fn unsupported(version: &str, era: ServerEra) -> RpcError {
    let mut error = RpcError::new(
        UNSUPPORTED_VERSION,
        format!("Unsupported protocol version: {version}"),
    );
    let supported = supported_versions(era);
    error.data = Some(json!({"supported": supported, "requested": version}));
    error
}

/// `--era dual` (the default): the `_meta` version picks the era, no `_meta` is legacy.
fn dual_era(method: &str, requested: Option<&str>) -> Result<Era, RpcError> {
    Ok(match requested {
        _ if method == "server/discover" => Era::Modern { cacheable: true },
        None => Era::Legacy,
        Some(MODERN_VERSION) => Era::Modern {
            cacheable: CACHEABLE.contains(&method),
        },
        Some(v) if LEGACY_VERSIONS.contains(&v) => Era::Legacy,
        Some(v) => return Err(unsupported(v, ServerEra::Dual)),
    })
}

/// `--era legacy`: what a session-era server does. `_meta` is ignored; `server/discover` does
/// not exist; nothing but `initialize` and `ping` is served before `initialize`.
fn legacy_only(sh: &Shared, method: &str) -> Result<Era, RpcError> {
    match method {
        "initialize" | "ping" => Ok(Era::Legacy),
        "server/discover" | "subscriptions/listen" => Err(RpcError::new(
            METHOD_NOT_FOUND,
            format!("Method not found: {method}"),
        )),
        _ if lock(&sh.session).version.is_none() => Err(RpcError::new(
            INVALID_REQUEST,
            "Server not initialized: send initialize first",
        )),
        _ => Ok(Era::Legacy),
    }
}

/// `--era modern`: only 2026-07-28. `initialize` is an unknown method (its error names the
/// supported version); every request needs `_meta` with the version and the client's
/// capabilities (-32602), and a version other than 2026-07-28 is -32022.
fn modern_only(method: &str, meta: &ReqMeta) -> Result<Era, RpcError> {
    if method == "initialize" {
        let msg = format!(
            "Method not found: initialize (this server speaks only protocol revision \
             {MODERN_VERSION}, which has no initialize: send server/discover)"
        );
        let mut error = RpcError::new(METHOD_NOT_FOUND, msg);
        error.data = Some(json!({"supported": [MODERN_VERSION]}));
        return Err(error);
    }
    match meta.version.as_deref() {
        None => Err(RpcError::params(
            "Invalid params: _meta[\"io.modelcontextprotocol/protocolVersion\"] is required",
        )),
        Some(MODERN_VERSION) if !meta.capabilities.as_ref().is_some_and(Value::is_object) => {
            Err(RpcError::params(
                "Invalid params: _meta[\"io.modelcontextprotocol/clientCapabilities\"] is \
                 required (an object)",
            ))
        }
        Some(MODERN_VERSION) => Ok(Era::Modern {
            cacheable: CACHEABLE.contains(&method),
        }),
        Some(v) => Err(unsupported(v, ServerEra::Modern)),
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
