//! One connection's shared state ([`Shared`]: the output, the session, running jobs, pending
//! server→client requests, subscriptions) and everything written to the client: results
//! (decorated for the 2026-07-28 era), errors, notifications, progress and log messages, each
//! as one flushed line.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_channel::Sender;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::util::lock;

use super::hub::{Hub, Subscriber};
use super::{INVALID_PARAMS, LEVELS, Options, SERVER_INFO, SERVER_NAME, ServerInfo};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Era {
    Legacy,
    /// 2026-07-28; `cacheable` results (lists, reads, discover) carry `ttlMs`/`cacheScope`.
    Modern {
        cacheable: bool,
    },
}

/// Which log messages a request's handlers may send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum LogGate {
    /// The session's `logging/setLevel` (legacy era).
    Session,
    /// 2026-07-28: only with `_meta["io.modelcontextprotocol/logLevel"]`, from that level up.
    Request(Option<u8>),
}

/// Methods whose 2026-07-28 results must carry `ttlMs` and `cacheScope`.
pub(super) const CACHEABLE: [&str; 6] = [
    "prompts/list",
    "resources/list",
    "resources/read",
    "resources/templates/list",
    "server/discover",
    "tools/list",
];

#[derive(Default)]
pub(super) struct Session {
    /// The negotiated legacy version; `None` until `initialize`.
    pub(super) version: Option<String>,
    /// The client's declared capabilities (`null` until `initialize`).
    pub(super) capabilities: Value,
}

pub(super) type ClientAnswer = Result<Value, Value>;

/// State of one connection, shared by the reader thread and the job threads.
pub(super) struct Shared {
    out: Mutex<Box<dyn Write + Send>>,
    pub(super) min_level: AtomicU8,
    pub(super) session: Mutex<Session>,
    /// Running jobs by raw request id: (serial, cancel sender). Dropping the sender cancels.
    pub(super) inflight: Mutex<HashMap<String, (u64, Sender<()>)>>,
    /// Our server→client requests waiting for an answer, by id.
    pub(super) pending: Mutex<HashMap<String, Sender<ClientAnswer>>>,
    pub(super) serial: AtomicU64,
    pub(super) subscriptions: Mutex<HashSet<String>>,
    /// What every connection of this server shares: the watched resource, the listeners.
    pub(super) hub: Arc<Hub>,
    pub(super) options: Options,
    /// Set by the `stop_reading` tool; the reader thread then sleeps forever.
    pub(super) stop_reading: AtomicBool,
}

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

#[derive(Serialize)]
struct Response<'a, T> {
    jsonrpc: &'static str,
    id: &'a RawValue,
    result: T,
}

#[derive(Serialize)]
struct ErrorResponse<'a> {
    jsonrpc: &'static str,
    id: Option<&'a RawValue>,
    error: &'a RpcError,
}

#[derive(Serialize)]
pub(super) struct Message<'a, I: Serialize, P: Serialize> {
    pub(super) jsonrpc: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) id: Option<I>,
    pub(super) method: &'a str,
    pub(super) params: P,
}

/// A result decorated for the 2026-07-28 era.
#[derive(Serialize)]
struct Modern<'a, T> {
    #[serde(flatten)]
    inner: &'a T,
    #[serde(rename = "resultType")]
    result_type: &'static str,
    #[serde(rename = "ttlMs", skip_serializing_if = "Option::is_none")]
    ttl_ms: Option<u64>,
    #[serde(rename = "cacheScope", skip_serializing_if = "Option::is_none")]
    cache_scope: Option<&'static str>,
    #[serde(rename = "_meta")]
    meta: ModernMeta,
}

#[derive(Serialize)]
struct ModernMeta {
    #[serde(rename = "io.modelcontextprotocol/serverInfo")]
    server_info: ServerInfo,
}

#[derive(Serialize)]
pub(super) struct Empty {}

impl Shared {
    pub(super) fn new(out: Box<dyn Write + Send>, options: Options, hub: Arc<Hub>) -> Self {
        Shared {
            out: Mutex::new(out),
            min_level: AtomicU8::new(0),
            session: Mutex::new(Session::default()),
            inflight: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            serial: AtomicU64::new(1),
            subscriptions: Mutex::new(HashSet::new()),
            hub,
            options,
            stop_reading: AtomicBool::new(false),
        }
    }

    /// Writes raw bytes (not necessarily JSON) through `fill` under the output lock, then
    /// flushes, so nothing else interleaves.
    pub(super) fn write_raw(
        &self,
        fill: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut out = lock(&self.out);
        fill(&mut **out)?;
        out.flush()
    }

    /// Drops the output writer (closing its fd, if it owns one); later writes are discarded.
    pub(super) fn close_output(&self) {
        let old = std::mem::replace(&mut *lock(&self.out), Box::new(io::sink()));
        drop(old);
    }

    /// Writes one message as a single flushed line.
    pub(super) fn write<T: Serialize>(&self, msg: &T) -> io::Result<()> {
        SCRATCH.with(|cell| {
            let mut buf = cell.borrow_mut();
            buf.clear();
            serde_json::to_writer(&mut *buf, msg).map_err(io::Error::other)?;
            buf.push(b'\n');
            let written = {
                let mut out = lock(&self.out);
                out.write_all(&buf).and_then(|()| out.flush())
            };
            if buf.capacity() > 1 << 20 {
                *buf = Vec::new();
            }
            written
        })
    }

    pub(super) fn send_result<T: Serialize>(
        &self,
        id: &RawValue,
        era: Era,
        result: &T,
    ) -> io::Result<()> {
        self.send_typed(id, era, result, "complete")
    }

    /// A 2026-07-28 `InputRequiredResult` (MRTR): `result` holds `inputRequests` and
    /// `requestState`.
    pub(super) fn send_input_required<T: Serialize>(
        &self,
        id: &RawValue,
        result: &T,
    ) -> io::Result<()> {
        self.send_typed(
            id,
            Era::Modern { cacheable: false },
            result,
            "input_required",
        )
    }

    fn send_typed<T: Serialize>(
        &self,
        id: &RawValue,
        era: Era,
        result: &T,
        result_type: &'static str,
    ) -> io::Result<()> {
        match era {
            Era::Legacy => self.write(&Response {
                jsonrpc: "2.0",
                id,
                result,
            }),
            Era::Modern { cacheable } => {
                let meta = ModernMeta {
                    server_info: SERVER_INFO,
                };
                let result = Modern {
                    inner: result,
                    result_type,
                    ttl_ms: cacheable.then_some(0),
                    cache_scope: cacheable.then_some("private"),
                    meta,
                };
                self.write(&Response {
                    jsonrpc: "2.0",
                    id,
                    result,
                })
            }
        }
    }

    pub(super) fn send_error(&self, id: Option<&RawValue>, error: &RpcError) -> io::Result<()> {
        self.write(&ErrorResponse {
            jsonrpc: "2.0",
            id,
            error,
        })
    }

    pub(super) fn notify<P: Serialize>(&self, method: &str, params: P) {
        let msg = Message {
            jsonrpc: "2.0",
            id: None::<()>,
            method,
            params,
        };
        if let Err(e) = self.write(&msg) {
            log::warn!("demo-server: cannot write {method}: {e}");
        }
    }

    /// Sends `notifications/message` if `level` passes the client's `logging/setLevel`
    /// ([`LogGate::Session`]) or the request's own `_meta` log level.
    pub(super) fn log(&self, gate: LogGate, level: u8, data: &str) {
        let min = match gate {
            LogGate::Session => Some(self.min_level.load(Ordering::Relaxed)),
            LogGate::Request(min) => min,
        };
        if min.is_some_and(|min| level >= min) {
            let level = LEVELS[usize::from(level).min(LEVELS.len() - 1)];
            self.notify(
                "notifications/message",
                json!({"level": level, "logger": SERVER_NAME, "data": data}),
            );
        }
    }

    pub(super) fn progress(&self, token: &RawValue, progress: u64, total: u64, message: &str) {
        let params = json!({
            "progressToken": token, "progress": progress, "total": total, "message": message,
        });
        self.notify("notifications/progress", params);
    }
}

/// A JSON-RPC error object.
impl Subscriber for Shared {
    fn notify_value(&self, method: &str, params: Value) {
        self.notify(method, params);
    }
}

#[derive(Serialize, Debug)]
pub(super) struct RpcError {
    code: i64,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) data: Option<Value>,
}

impl RpcError {
    pub(super) fn new(code: i64, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
            data: None,
        }
    }
    pub(super) fn params(message: impl Into<String>) -> Self {
        RpcError::new(INVALID_PARAMS, message)
    }
}

/// Why a request got no result: a JSON-RPC error to send, or a broken output.
pub(super) enum Fail {
    Rpc(RpcError),
    Io(io::Error),
}

impl From<RpcError> for Fail {
    fn from(e: RpcError) -> Self {
        Fail::Rpc(e)
    }
}

impl From<io::Error> for Fail {
    fn from(e: io::Error) -> Self {
        Fail::Io(e)
    }
}

pub(super) type Handled = Result<(), Fail>;
