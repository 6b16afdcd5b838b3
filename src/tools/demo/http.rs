//! `shadowcat demo-server --http ADDR`: the demo served over Streamable HTTP on our own HTTP
//! layer (`crate::http`, public API only), so HTTP upstreams of each era can be tested
//! without third-party servers. It prints `demo-server listening on http://ADDR/mcp` (the bound
//! address) as its first stdout line and serves until killed.
//!
//! * **2026-07-28, stateless** ([`HttpDemo::stateless`]; `--era modern`, and `--era dual` for a
//!   POST without `Mcp-Session-Id` that is not `initialize`): each POST is one connection of
//!   its own ([`Shared`] writing into a [`Pipe`]); notifications it sends (progress, logs, a
//!   listen stream's) go on that request's SSE stream, the response ends it. Validates the
//!   headers against the body (`MCP-Protocol-Version` vs `_meta`, `Mcp-Method`, `Mcp-Name`:
//!   400 with -32020) and maps errors to statuses (-32601 → 404; -32600, -32602, -32020,
//!   -32021, -32022, -32700 → 400). GET and DELETE are 405. Closing the stream cancels.
//!   Limit: in `--era dual` a session-less legacy-era call that asks the client (e.g.
//!   `test_sampling` without `_meta`) cannot get its answer (the answer's POST is another
//!   connection); it ends when its client leaves. Legacy clients initialize first.
//! * **Session era** (`sessions.rs`; `--era legacy`, and `--era dual` for `initialize` or
//!   a request with `Mcp-Session-Id`).
//! * Every request is checked for DNS rebinding: a non-loopback `Host` or `Origin` is 403.

use std::net::TcpListener;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

use crate::error::Error;
use crate::http::origin::{is_loopback_host, loopback_origin};
use crate::http::{Request, Responder, Response, Server, ServerConfig};
use crate::util::lock;

use super::connection::Shared;
use super::dispatch::handle_line;
use super::extra::tools_list_all;
use super::hub::Hub;
use super::pipe::{Pipe, PipeWriter};
use super::relay::{json_body, relay, rpc_error};
use super::sessions::{HttpDemo, Sessions};
use super::{MODERN_VERSION, Options, ServerEra};

/// The MCP endpoint.
pub(super) const PATH: &str = "/mcp";
const HEADER_MISMATCH: i64 = -32020;

/// Binds `addr`, prints the bound address, serves until the process is killed.
pub(super) fn serve_http(addr: &str, options: Options) -> Result<(), Error> {
    let listener = TcpListener::bind(addr).map_err(Error::Io)?;
    let demo = Arc::new(HttpDemo {
        options,
        hub: Arc::new(Hub::default()),
        sessions: Sessions::default(),
    });
    let handler = move |req: Request, res: &mut Responder<'_>| demo.handle(req, res);
    let server =
        Server::start(listener, ServerConfig::default(), Arc::new(handler)).map_err(Error::Io)?;
    println!(
        "demo-server listening on http://{}{PATH}",
        server.local_addr()
    );
    log::info!("demo-server: serving HTTP on {}", server.local_addr());
    loop {
        std::thread::park();
    }
}

fn header_trimmed<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.header(name).map(str::trim)
}

impl HttpDemo {
    fn handle(&self, req: Request, res: &mut Responder<'_>) {
        let host_ok = req.header("host").is_some_and(is_loopback_host);
        let origin_ok = req.header("origin").is_none_or(loopback_origin);
        if !host_ok || !origin_ok {
            let _ = res.send(
                Response::new(403).with_body("text/plain", b"non-loopback Host or Origin\n".into()),
            );
            return;
        }
        if req.path() != PATH {
            let _ = res.send(Response::new(404).with_body("text/plain", b"not found\n".into()));
            return;
        }
        let session = req.header("mcp-session-id").is_some();
        let stateless = match self.options.era {
            ServerEra::Modern => true,
            ServerEra::Legacy => false,
            ServerEra::Dual => !session && !is_initialize(&req),
        };
        if stateless {
            self.stateless(req, res);
        } else {
            self.sessions.handle(self, req, res);
        }
    }

    /// One 2026-07-28 (or session-less) request on a connection of its own.
    fn stateless(&self, req: Request, res: &mut Responder<'_>) {
        if req.method != "POST" {
            let resp = Response::new(405).with_header("Allow", "POST").with_body(
                "text/plain",
                b"POST only (2026-07-28 is stateless)\n".into(),
            );
            let _ = res.send(resp);
            return;
        }
        let Some(body) = json_body(&req.body, res) else {
            return;
        };
        let (Some(method), Some(id)) = (body["method"].as_str(), body.get("id")) else {
            // A notification or a response: nothing to answer over a stateless endpoint.
            let _ = res.send(Response::new(202));
            return;
        };
        let meta_version =
            body["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"].as_str();
        let header_version = header_trimmed(&req, "mcp-protocol-version");
        let modern = self.options.era == ServerEra::Modern
            || meta_version == Some(MODERN_VERSION)
            || header_version == Some(MODERN_VERSION);
        if modern && let Some(why) = header_mismatch(&req, &body, method, meta_version) {
            let _ = res.send(rpc_error(400, id, HEADER_MISMATCH, &why));
            return;
        }
        let pipe = Arc::new(Pipe::default());
        let sh = Arc::new(Shared::new(
            Box::new(PipeWriter::new(Arc::clone(&pipe))),
            self.options,
            Arc::clone(&self.hub),
        ));
        if let Err(e) = handle_line(&sh, &req.body) {
            log::warn!("demo-server: {e}");
        }
        let listen = method == "subscriptions/listen";
        relay(&*pipe, id, res, modern, listen, &[]);
        pipe.close();
        lock(&sh.inflight).clear();
        lock(&sh.pending).clear();
        self.hub.drop_connection(&*sh);
    }
}

fn is_initialize(req: &Request) -> bool {
    req.method == "POST"
        && serde_json::from_slice::<Value>(&req.body).is_ok_and(|b| b["method"] == "initialize")
}

/// Why the standard headers contradict the body (-32020), if they do.
fn header_mismatch(
    req: &Request,
    body: &Value,
    method: &str,
    meta: Option<&str>,
) -> Option<String> {
    let version = header_trimmed(req, "mcp-protocol-version");
    if let Some(meta) = meta
        && version != Some(meta)
    {
        return Some(format!(
            "Header mismatch: MCP-Protocol-Version {version:?} but _meta says {meta:?}"
        ));
    }
    let header_method = header_trimmed(req, "mcp-method");
    if header_method != Some(method) {
        return Some(format!(
            "Header mismatch: Mcp-Method {header_method:?} but the body's method is {method:?}"
        ));
    }
    let name = match method {
        "tools/call" | "prompts/get" => body["params"]["name"].as_str(),
        "resources/read" => body["params"]["uri"].as_str(),
        _ => return None,
    };
    let header_name = header_trimmed(req, "mcp-name");
    if header_name != name {
        return Some(format!(
            "Header mismatch: Mcp-Name {header_name:?} but the body names {name:?}"
        ));
    }
    match (method, name) {
        ("tools/call", Some(tool)) => param_mismatch(req, tool, &body["params"]["arguments"]),
        _ => None,
    }
}

/// The `Mcp-Param-{X}` headers of a tool whose `inputSchema` marks arguments `x-mcp-header`:
/// present whenever the argument is, and equal to it (`=?base64?…?=` decoded, strictly).
fn param_mismatch(req: &Request, tool: &str, arguments: &Value) -> Option<String> {
    let tools = tools_list_all()["tools"].as_array()?;
    let schema = &tools.iter().find(|t| t["name"] == tool)?["inputSchema"];
    for (param, spec) in schema["properties"].as_object()? {
        let Some(header) = spec["x-mcp-header"].as_str() else {
            continue;
        };
        let expected = match &arguments[param] {
            Value::Null => continue,
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let name = format!("mcp-param-{}", header.to_ascii_lowercase());
        let Some(raw) = header_trimmed(req, &name) else {
            return Some(format!(
                "Header mismatch: Mcp-Param-{header} missing for {param}"
            ));
        };
        let encoded = raw
            .strip_prefix("=?base64?")
            .and_then(|v| v.strip_suffix("?="));
        let value = match encoded {
            Some(encoded) => {
                let decoded = STANDARD.decode(encoded).ok();
                match decoded.and_then(|b| String::from_utf8(b).ok()) {
                    Some(decoded) => decoded,
                    None => {
                        return Some(format!(
                            "Header mismatch: Mcp-Param-{header} is not valid Base64"
                        ));
                    }
                }
            }
            None => raw.to_owned(),
        };
        if value != expected {
            return Some(format!(
                "Header mismatch: Mcp-Param-{header} {value:?} but the body's {param} is \
                 {expected:?}"
            ));
        }
    }
    None
}
