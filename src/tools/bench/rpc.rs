//! The JSON-RPC side of the load: the requests sent (built once, or per request with
//! `--progress`), and how an answer is judged: [`check`] decides whether a message is the
//! response to a request and what it says ([`Verdict`]); a failed request is a [`Fail`] of one
//! kind.

use std::borrow::Cow;
use std::io::Write as _;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use super::BenchOptions;

/// Why one request failed; [`Fail::kind`] is its key in the error counts.
#[derive(Debug)]
pub(super) enum Fail {
    /// A status other than 2xx, with an excerpt of the body.
    Http(u16, String),
    /// A JSON-RPC error response, with its message.
    JsonRpc(String),
    /// The request's deadline passed.
    Timeout,
    /// No TCP connection could be made.
    Connect(String),
    /// The connection failed or closed mid-exchange.
    Io(String),
    /// An answer that is not valid HTTP or not the expected JSON-RPC response.
    Bad(String),
}

impl Fail {
    pub(super) fn kind(&self) -> Cow<'static, str> {
        match self {
            Fail::Http(s, _) => format!("http_{s}").into(),
            Fail::JsonRpc(_) => "jsonrpc_error".into(),
            Fail::Timeout => "timeout".into(),
            Fail::Connect(_) => "connect".into(),
            Fail::Io(_) => "io".into(),
            Fail::Bad(_) => "bad_response".into(),
        }
    }

    pub(super) fn describe(&self) -> String {
        match self {
            Fail::Timeout => "timeout".into(),
            Fail::Http(_, d) | Fail::JsonRpc(d) | Fail::Connect(d) | Fail::Io(d) | Fail::Bad(d) => {
                format!("{}: {d}", self.kind())
            }
        }
    }
}

pub(super) fn bad(why: impl Into<String>) -> Fail {
    Fail::Bad(why.into())
}

/// The JSON-RPC side of an answer.
pub(super) enum Verdict {
    /// Not looked at (a notification, DELETE, or a non-2xx status).
    Unchecked,
    /// A result with the right id (and `protocolVersion` if asked for).
    Result(Option<String>),
    /// An error response with the right id, with its message.
    Error(String),
}

/// What [`check`] found.
pub(super) enum Check {
    /// The response to the request, and what it says.
    Mine(Verdict),
    /// Some other message: a notification, a server request, another id.
    NotMine,
    /// Not a JSON-RPC message, or a response with both or neither of result and error.
    Invalid(String),
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    method: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    result: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    error: Option<&'a RawValue>,
}

/// Keeps a present field, even `null`, as `Some`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&'de RawValue>::deserialize(d).map(Some)
}

/// Is `bytes` the JSON-RPC response to request `want`?
pub(super) fn check(bytes: &[u8], want: u64, want_version: bool) -> Check {
    let env: Envelope<'_> = match serde_json::from_slice(bytes) {
        Ok(e) => e,
        Err(e) => return Check::Invalid(format!("not a JSON-RPC message ({e})")),
    };
    if env.method.is_some() {
        return Check::NotMine;
    }
    if env.id.and_then(crate::jsonrpc::id_u64) != Some(want) {
        return Check::NotMine;
    }
    match (env.result, env.error) {
        (Some(r), None) => {
            let version = if want_version {
                #[derive(Deserialize)]
                struct Init {
                    #[serde(rename = "protocolVersion")]
                    protocol_version: Option<String>,
                }
                serde_json::from_str::<Init>(r.get())
                    .ok()
                    .and_then(|i| i.protocol_version)
            } else {
                None
            };
            Check::Mine(Verdict::Result(version))
        }
        (None, Some(e)) => {
            let msg = serde_json::from_str::<Value>(e.get())
                .ok()
                .map(|v| {
                    let code = v.get("code").and_then(Value::as_i64).unwrap_or(0);
                    let m = v.get("message").and_then(Value::as_str).unwrap_or("");
                    format!("{code} {m}")
                })
                .unwrap_or_else(|| e.get().to_string());
            Check::Mine(Verdict::Error(msg))
        }
        _ => Check::Invalid("response needs exactly one of result and error".into()),
    }
}

/// The id of a line if it is a JSON-RPC response with an integer id.
pub(super) fn response_id(line: &[u8]) -> Option<u64> {
    let env: Envelope<'_> = serde_json::from_slice(line).ok()?;
    if env.method.is_some() {
        return None;
    }
    crate::jsonrpc::id_u64(env.id?)
}

/// The method as JSON, and the constant request tail after the id (`None` with `--progress`).
pub(super) fn request_parts(opts: &BenchOptions) -> (String, Option<Vec<u8>>) {
    let method_json = serde_json::to_string(&opts.method).unwrap_or_default();
    let tail = (!opts.progress).then(|| {
        let mut t = format!("\"method\":{method_json}");
        if let Some(p) = &opts.params {
            t.push_str(",\"params\":");
            t.push_str(&p.to_string());
        }
        t.push('}');
        t.into_bytes()
    });
    (method_json, tail)
}

/// `{"jsonrpc":"2.0","id":<id>,"method":…,"params":…}` into `json` (cleared first); with
/// `--progress` (no `tail`) the params get a `_meta.progressToken` unique to `index` and `id`.
pub(super) fn build_request(
    json: &mut Vec<u8>,
    opts: &BenchOptions,
    tail: Option<&[u8]>,
    method_json: &str,
    index: usize,
    id: u64,
) {
    json.clear();
    let _ = write!(json, r#"{{"jsonrpc":"2.0","id":{id},"#);
    if let Some(tail) = tail {
        json.extend_from_slice(tail);
        return;
    }
    let mut params = match &opts.params {
        Some(Value::Object(m)) => m.clone(),
        _ => Map::new(),
    };
    let meta = params
        .entry("_meta")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(m) = meta.as_object_mut() {
        m.insert(
            "progressToken".into(),
            Value::String(format!("bench-{index}-{id}")),
        );
    }
    let _ = write!(
        json,
        r#""method":{method_json},"params":{}}}"#,
        Value::Object(params)
    );
}

/// The `initialize` request (id 0) asking for `version`.
pub(super) fn initialize_request(version: &str) -> String {
    let params = json!({
        "protocolVersion": version,
        "capabilities": {},
        "clientInfo": {"name": "shadowcat-bench", "version": env!("CARGO_PKG_VERSION")},
    });
    format!(r#"{{"jsonrpc":"2.0","id":0,"method":"initialize","params":{params}}}"#)
}
