//! Relaying one request's lines to its HTTP client, for `--http` (both eras): the response
//! alone as JSON, or an SSE stream of what comes first and then the response; a listen or GET
//! stream until the client leaves.
//!
//! Owns: [`relay`], the [`Source`] it reads, and the JSON-RPC error answers both eras send.
//! Must not touch: sessions (`sessions.rs`) or request validation (`http.rs`), which call it.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::http::{Responder, Response, StreamWriter};

use super::pipe::Pipe;

/// A request whose handler has written nothing for this long gets a keep-alive comment (and
/// a gone client is noticed).
const KEEPALIVE: Duration = Duration::from_secs(5);
/// A request with no answer after this long is given up (listen streams excepted).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// A JSON response with `status`.
pub(super) fn json_response(status: u16, body: &Value) -> Response {
    Response::new(status).with_body("application/json", body.to_string().into_bytes())
}

/// The request body as JSON, or `None` once the client has its 400 -32700 answer (both eras).
pub(super) fn json_body(body: &[u8], res: &mut Responder<'_>) -> Option<Value> {
    match serde_json::from_slice(body) {
        Ok(v) => Some(v),
        Err(e) => {
            let _ = res.send(rpc_error(
                400,
                &Value::Null,
                -32700,
                &format!("Parse error: {e}"),
            ));
            None
        }
    }
}

/// A JSON-RPC error response (HTTP `status`).
pub(super) fn rpc_error(status: u16, id: &Value, code: i64, message: &str) -> Response {
    let body = json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}});
    json_response(status, &body)
}

/// The HTTP status of a 2026-07-28 error response.
fn modern_status(line: &Value) -> u16 {
    match line["error"]["code"].as_i64() {
        Some(-32601) => 404,
        Some(-32700 | -32600 | -32602 | -32020 | -32021 | -32022) => 400,
        _ => 200,
    }
}

/// Where a relay reads the lines meant for one request.
pub(super) trait Source {
    /// The next line, waiting until `deadline`; `None` at the deadline or when closed.
    fn next_line(&self, deadline: Instant) -> Option<Vec<u8>>;
}

impl Source for Pipe {
    fn next_line(&self, deadline: Instant) -> Option<Vec<u8>> {
        self.pop(deadline)
    }
}

fn sse_event(stream: &mut StreamWriter<'_>, line: &[u8]) -> std::io::Result<()> {
    let mut chunk = Vec::with_capacity(line.len() + 24);
    chunk.extend_from_slice(b"event: message\ndata: ");
    chunk.extend_from_slice(line);
    chunk.extend_from_slice(b"\n\n");
    stream.write_chunk(&chunk)
}

/// Relays the lines `source` yields for request `id` to the client: the response alone as
/// JSON, or, once something else comes first, an SSE stream ending with the response. A
/// listen stream lasts until the client leaves. `extra` headers go on either.
pub(super) fn relay(
    source: &dyn Source,
    id: &Value,
    res: &mut Responder<'_>,
    modern: bool,
    listen: bool,
    extra: &[(String, String)],
) {
    let is_final = |line: &Value| line.get("method").is_none() && line.get("id") == Some(id);
    let started = Instant::now();
    // A listen (or GET) stream opens at once; a request waits for its first line, which is
    // the whole answer when it is the response.
    let first = if listen {
        None
    } else {
        let first = loop {
            if let Some(line) = source.next_line(Instant::now() + KEEPALIVE) {
                break line;
            }
            if started.elapsed() > REQUEST_TIMEOUT || res.shutting_down() {
                let _ = res.send(rpc_error(
                    504,
                    id,
                    -32603,
                    "the demo server did not answer in time",
                ));
                return;
            }
        };
        let parsed: Value = serde_json::from_slice(&first).unwrap_or(Value::Null);
        if is_final(&parsed) {
            let status = if modern { modern_status(&parsed) } else { 200 };
            let mut resp = Response::new(status).with_body("application/json", first);
            for (name, value) in extra {
                resp = resp.with_header(name, value);
            }
            let _ = res.send(resp);
            return;
        }
        Some(first)
    };
    let mut headers = vec![
        ("Content-Type".to_string(), "text/event-stream".to_string()),
        ("Cache-Control".to_string(), "no-cache".to_string()),
        ("X-Accel-Buffering".to_string(), "no".to_string()),
    ];
    headers.extend_from_slice(extra);
    let mut stream = match res.stream(200, &headers) {
        Ok(stream) => stream,
        Err(e) => {
            log::debug!("demo-server: cannot stream: {e}");
            return;
        }
    };
    if let Some(first) = first
        && sse_event(&mut stream, &first).is_err()
    {
        return;
    }
    let mut quiet_since = Instant::now();
    loop {
        match source.next_line(Instant::now() + KEEPALIVE) {
            Some(line) => {
                quiet_since = Instant::now();
                let done = serde_json::from_slice::<Value>(&line).is_ok_and(|l| is_final(&l));
                if sse_event(&mut stream, &line).is_err() || done {
                    break;
                }
            }
            None => {
                if !listen && started.elapsed() > REQUEST_TIMEOUT {
                    break;
                }
                if quiet_since.elapsed() >= KEEPALIVE {
                    quiet_since = Instant::now();
                    if stream.write_chunk(b": keep-alive\n\n").is_err() {
                        break; // the client left: the caller cancels the request's jobs
                    }
                }
            }
        }
    }
    let _ = stream.finish();
}
