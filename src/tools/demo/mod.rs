//! `shadowcat demo-server`: a small, fast stdio MCP server.
//!
//! The proxy spawns it as its default upstream child; benchmarks use it as a fast child; and the
//! conformance suite (`@modelcontextprotocol/conformance@0.1.16`, server mode) runs against it
//! through the proxy. It speaks newline-delimited JSON-RPC on stdin/stdout, logs only to stderr
//! (through `log`), and returns on stdin EOF.
//!
//! What it implements:
//! * **Both protocol eras.** Legacy (2024-11-05 … 2025-11-25): `initialize` negotiation,
//!   `notifications/initialized`, `ping`, `logging/setLevel`, `resources/subscribe`. Modern
//!   (2026-07-28): `server/discover`, and any request whose
//!   `_meta["io.modelcontextprotocol/protocolVersion"]` is `2026-07-28` is served without a
//!   handshake; its result gets `resultType: "complete"` and
//!   `_meta["io.modelcontextprotocol/serverInfo"]`. An unknown `_meta` version gets -32022.
//!   Modern requests that would need a server→client request (sampling, elicitation) get -32601,
//!   because the demo does not implement MRTR (`input_required` results).
//! * **Benchmark tools:** `echo`, `slow_echo`, `stream_events` and `update_watched`.
//! * **Fault injection** for testing proxies and clients against a misbehaving stdio child (see
//!   below).
//! * **Every fixture the conformance server scenarios call:** `test_*` tools, `test://` resources
//!   and the resource template, the `test_*` prompts, `completion/complete` and logging.
//!
//! Requests are handled concurrently where they wait: quick ones inline on the reader thread,
//! anything that sleeps or waits for the client on its own thread. `notifications/cancelled`
//! stops such a job, and it then sends no response. Server→client requests use the ids
//! `"demo-1"`, `"demo-2"`, …, and the client's responses are matched by id. Request ids are
//! echoed byte for byte (kept as raw JSON). Until `logging/setLevel` arrives every log level is
//! sent. Requests that come before `initialize` are served anyway (a fast path for benchmarks),
//! and so are requests whose `_meta` names a legacy revision. After an `initialize` that lacks
//! the `sampling` / `elicitation` capability, the tools needing it answer an `isError` result
//! instead of asking the client. An unknown resource is -32002 (legacy) or -32602 (modern).
//!
//! # Fault injection
//!
//! These tools and `demo-server` flags make the real binary misbehave on purpose, so the failure
//! handling of a proxy or client can be tested without a hand-written fake child. Tools (all
//! listed in `tools/list`; integer arguments are optional):
//!
//! | tool | what it does |
//! |---|---|
//! | `crash` | exits at once with status 3, without answering |
//! | `exit` `{code: 0}` | answers `"exiting with status <code>"`, flushes, then exits with `code` |
//! | `hang` | never answers; `notifications/cancelled` ends it, and then nothing is sent |
//! | `garbage` `{lines: 3}` | writes `lines` lines `this is not json`, then `{"hello":1}` (JSON but not JSON-RPC), then answers `"garbage sent"` |
//! | `huge_line` `{bytes: 20971520}` | writes one line of exactly `bytes` bytes plus `\n` (a `notifications/message` whose `data` is `x`s; just `x`s if `bytes` is too small for that envelope), in 64 KiB pieces, then answers `"huge line sent (<bytes> bytes)"` |
//! | `close_stdout` | answers `"closing stdout"`, then closes stdout at the OS level (the reader sees EOF) and keeps running, discarding output, until stdin reaches EOF |
//! | `stop_reading` | answers `"no longer reading stdin"`, then never reads stdin again (the writer eventually blocks on a full pipe); only a signal ends the process |
//!
//! Flags (see `shadowcat demo-server --help`): `--startup-delay D` sleeps before serving (a slow
//! starter); `--exit-at-start CODE` exits with `CODE` before reading anything (after the startup
//! delay, if both are given); `--fail-initialize` answers `initialize` with a JSON-RPC error
//! (-32603); `--ignore-eof` keeps the process alive (sleeping, stdout still open) after stdin
//! EOF; `--ignore-sigterm` sets SIGTERM to `SIG_IGN`, so only SIGKILL stops it.
//!
//! Over the real stdout, "closing" means fd 1 is atomically re-pointed at `/dev/null` with
//! `dup2`: the pipe's write end is released (the parent reads EOF) while fd 1 can never be reused
//! by an unrelated file. [`serve`] itself only drops the writer it was given.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, Write};
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::error::Error;
use crate::util::lock;

/// run the built-in demo MCP server over stdio (newline-delimited JSON-RPC)
#[derive(argh::FromArgs, Debug)]
#[argh(subcommand, name = "demo-server")]
pub struct DemoServerArgs {
    /// fault injection: exit at once with this status, before reading stdin (default: serve)
    #[argh(option)]
    pub exit_at_start: Option<i32>,

    /// fault injection: sleep this long before serving, e.g. 500ms (default: no delay)
    #[argh(option)]
    pub startup_delay: Option<String>,

    /// fault injection: answer initialize with a JSON-RPC error (default off)
    #[argh(switch)]
    pub fail_initialize: bool,

    /// fault injection: at stdin EOF keep running, sleeping, instead of exiting (default off)
    #[argh(switch)]
    pub ignore_eof: bool,

    /// fault injection: ignore SIGTERM, so only SIGKILL stops the process (default off)
    #[argh(switch)]
    pub ignore_sigterm: bool,
}

/// The `serverInfo.name` the demo server reports.
pub const SERVER_NAME: &str = "shadowcat-demo";
pub use crate::jsonrpc::{LEGACY_VERSIONS, MODERN_VERSION};
const LATEST_LEGACY: &str = "2025-11-25";
const SUPPORTED_VERSIONS: [&str; 5] = [
    MODERN_VERSION,
    "2025-11-25",
    "2025-06-18",
    "2025-03-26",
    "2024-11-05",
];
const SERVER_INFO: ServerInfo = ServerInfo {
    name: SERVER_NAME,
    version: env!("CARGO_PKG_VERSION"),
};
const LEVELS: [&str; 8] = [
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];
const INFO: u8 = 1;
/// A valid 1×1 red RGBA PNG.
const PNG_1X1: &str = concat!(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJ",
    "RU5ErkJggg=="
);
/// A valid WAV file: 8 kHz, mono, 16-bit PCM, one silent sample.
const WAV_MIN: &str = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAIA+AAACABAAZGF0YQIAAAAAAA==";
const WATCHED_URI: &str = "test://watched-resource";
const TEMPLATE_URI: &str = "test://template/{id}/data";

const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;
const INTERNAL_ERROR: i64 = -32603;
const RESOURCE_NOT_FOUND: i64 = -32002;
const UNSUPPORTED_VERSION: i64 = -32022;

/// The default size of the `huge_line` tool's line: 20 MiB.
pub const HUGE_LINE_DEFAULT: u64 = 20 << 20;
const HUGE_LINE_PREFIX: &str = concat!(
    r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"debug","#,
    r#""logger":"shadowcat-demo","data":""#
);
const HUGE_LINE_SUFFIX: &str = r#""}}"#;
const HUGE_LINE_PIECE: usize = 64 << 10;

/// How [`serve_with`] misbehaves on purpose (see the module docs). The default is a well-behaved
/// server.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Answer `initialize` with a JSON-RPC error (`--fail-initialize`).
    pub fail_initialize: bool,
    /// At stdin EOF, sleep forever instead of returning (`--ignore-eof`). Running jobs go on.
    pub ignore_eof: bool,
}

/// `shadowcat demo-server ARGS`: applies the process-level fault flags (`--ignore-sigterm`,
/// `--startup-delay`, `--exit-at-start`), then serves stdin/stdout with the rest. A bad
/// `--startup-delay` is [`Error::Config`].
pub fn run_with(args: &DemoServerArgs) -> Result<(), Error> {
    let delay = args
        .startup_delay
        .as_deref()
        .map(|d| crate::util::duration("--startup-delay", d))
        .transpose()?;
    if args.ignore_sigterm {
        // SAFETY: installing SIG_IGN touches no Rust state; it is done before any thread starts.
        unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
    }
    if let Some(delay) = delay {
        std::thread::sleep(delay);
    }
    if let Some(code) = args.exit_at_start {
        log::warn!("demo-server: --exit-at-start, exiting with status {code}");
        std::process::exit(code);
    }
    let options = Options {
        fail_initialize: args.fail_initialize,
        ignore_eof: args.ignore_eof,
    };
    serve_with(io::stdin().lock(), StdoutFd::new(), options).map_err(Error::Io)
}

/// Serves one MCP connection: reads newline-delimited JSON-RPC from `input` and writes whole,
/// flushed lines to `output` (shared under a mutex with the job threads) until `input` reaches
/// EOF. Jobs still running then are cancelled and send nothing more.
pub fn serve<R: BufRead, W: Write + Send + 'static>(input: R, output: W) -> io::Result<()> {
    serve_with(input, output, Options::default())
}

/// [`serve`] with fault injection. The `close_stdout` tool drops `output` (so a writer that owns
/// a file descriptor closes it); `stop_reading` and, with [`Options::ignore_eof`], stdin EOF
/// make this never return.
pub fn serve_with<R: BufRead, W: Write + Send + 'static>(
    mut input: R,
    output: W,
    options: Options,
) -> io::Result<()> {
    let shared = Arc::new(Shared::new(Box::new(output), options));
    let mut line = Vec::with_capacity(4096);
    let result = loop {
        line.clear();
        match input.read_until(b'\n', &mut line) {
            Ok(0) if options.ignore_eof => {
                log::warn!("demo-server: stdin EOF ignored (--ignore-eof); sleeping forever");
                sleep_forever();
            }
            Ok(0) => break Ok(()),
            Ok(_) => {
                if let Err(e) = handle_line(&shared, &line) {
                    break Err(e);
                }
                if shared.stop_reading.load(Ordering::Relaxed) {
                    log::warn!("demo-server: stop_reading called; no longer reading stdin");
                    sleep_forever();
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    lock(&shared.inflight).clear();
    lock(&shared.pending).clear();
    result
}

fn sleep_forever() -> ! {
    loop {
        std::thread::park();
    }
}

/// This process's stdout as the raw fd 1, unbuffered (every message is one flushed write
/// anyway). Dropping it closes the pipe: fd 1 is atomically re-pointed at `/dev/null` with
/// `dup2`, so the reader sees EOF and no later `open` can land on fd 1. Only if `/dev/null`
/// cannot be opened is fd 1 simply closed.
struct StdoutFd(ManuallyDrop<File>);

impl StdoutFd {
    fn new() -> Self {
        // SAFETY: fd 1 is open for the life of the process and this `File` never closes it
        // (`ManuallyDrop`; `Drop` re-points it). The demo server writes nothing through std's
        // `Stdout`, so nothing else interleaves on the fd.
        StdoutFd(ManuallyDrop::new(unsafe { File::from_raw_fd(1) }))
    }
}

impl Write for StdoutFd {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl Drop for StdoutFd {
    fn drop(&mut self) {
        let null = OpenOptions::new().write(true).open("/dev/null");
        // SAFETY: plain fd syscalls on fd 1, which this value stands for; `null` stays open
        // across the call and is closed by its own drop afterwards.
        let rc = match &null {
            Ok(null) => unsafe { libc::dup2(null.as_raw_fd(), 1) },
            Err(_) => unsafe { libc::close(1) },
        };
        if rc < 0 {
            log::warn!(
                "demo-server: cannot close stdout: {}",
                io::Error::last_os_error()
            );
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Era {
    Legacy,
    /// 2026-07-28; `cacheable` results (lists, reads, discover) carry `ttlMs`/`cacheScope`.
    Modern {
        cacheable: bool,
    },
}

/// Methods whose 2026-07-28 results must carry `ttlMs` and `cacheScope`.
const CACHEABLE: [&str; 6] = [
    "prompts/list",
    "resources/list",
    "resources/read",
    "resources/templates/list",
    "server/discover",
    "tools/list",
];

#[derive(Serialize, Clone, Copy)]
struct ServerInfo {
    name: &'static str,
    version: &'static str,
}

#[derive(Default)]
struct Session {
    /// The negotiated legacy version; `None` until `initialize`.
    version: Option<String>,
    /// The client's declared capabilities (`null` until `initialize`).
    capabilities: Value,
}

type ClientAnswer = Result<Value, Value>;

/// State of one connection, shared by the reader thread and the job threads.
struct Shared {
    out: Mutex<Box<dyn Write + Send>>,
    min_level: AtomicU8,
    session: Mutex<Session>,
    /// Running jobs by raw request id: (serial, cancel sender). Dropping the sender cancels.
    inflight: Mutex<HashMap<String, (u64, Sender<()>)>>,
    /// Our server→client requests waiting for an answer, by id.
    pending: Mutex<HashMap<String, Sender<ClientAnswer>>>,
    serial: AtomicU64,
    subscriptions: Mutex<HashSet<String>>,
    watched: Mutex<String>,
    options: Options,
    /// Set by the `stop_reading` tool; the reader thread then sleeps forever.
    stop_reading: AtomicBool,
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
struct Message<'a, I: Serialize, P: Serialize> {
    jsonrpc: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<I>,
    method: &'a str,
    params: P,
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
struct Empty {}

impl Shared {
    fn new(out: Box<dyn Write + Send>, options: Options) -> Self {
        Shared {
            out: Mutex::new(out),
            min_level: AtomicU8::new(0),
            session: Mutex::new(Session::default()),
            inflight: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            serial: AtomicU64::new(1),
            subscriptions: Mutex::new(HashSet::new()),
            watched: Mutex::new("Watched resource content".to_owned()),
            options,
            stop_reading: AtomicBool::new(false),
        }
    }

    /// Writes raw bytes (not necessarily JSON) through `fill` under the output lock, then
    /// flushes, so nothing else interleaves.
    fn write_raw(&self, fill: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> io::Result<()> {
        let mut out = lock(&self.out);
        fill(&mut **out)?;
        out.flush()
    }

    /// Drops the output writer (closing its fd, if it owns one); later writes are discarded.
    fn close_output(&self) {
        let old = std::mem::replace(&mut *lock(&self.out), Box::new(io::sink()));
        drop(old);
    }

    /// Writes one message as a single flushed line.
    fn write<T: Serialize>(&self, msg: &T) -> io::Result<()> {
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

    fn send_result<T: Serialize>(&self, id: &RawValue, era: Era, result: &T) -> io::Result<()> {
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
                    result_type: "complete",
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

    fn send_error(&self, id: Option<&RawValue>, error: &RpcError) -> io::Result<()> {
        self.write(&ErrorResponse {
            jsonrpc: "2.0",
            id,
            error,
        })
    }

    fn notify<P: Serialize>(&self, method: &str, params: P) {
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

    /// Sends `notifications/message` if `level` passes the client's `logging/setLevel`.
    fn log(&self, level: u8, data: &str) {
        if level >= self.min_level.load(Ordering::Relaxed) {
            let level = LEVELS[usize::from(level).min(LEVELS.len() - 1)];
            self.notify(
                "notifications/message",
                json!({"level": level, "logger": SERVER_NAME, "data": data}),
            );
        }
    }

    fn progress(&self, token: &RawValue, progress: u64, total: u64, message: &str) {
        let params = json!({
            "progressToken": token, "progress": progress, "total": total, "message": message,
        });
        self.notify("notifications/progress", params);
    }
}

/// A JSON-RPC error object.
#[derive(Serialize, Debug)]
struct RpcError {
    code: i64,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Value>,
}

impl RpcError {
    fn new(code: i64, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
            data: None,
        }
    }
    fn params(message: impl Into<String>) -> Self {
        RpcError::new(INVALID_PARAMS, message)
    }
}

enum Fail {
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

type Handled = Result<(), Fail>;

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

#[derive(Deserialize, Default)]
struct ReqMeta<'a> {
    #[serde(rename = "progressToken", borrow, default)]
    progress_token: Option<&'a RawValue>,
    #[serde(rename = "io.modelcontextprotocol/protocolVersion", borrow, default)]
    version: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct MetaOnly<'a> {
    #[serde(rename = "_meta", borrow, default)]
    meta: Option<ReqMeta<'a>>,
}

fn handle_line(sh: &Arc<Shared>, raw: &[u8]) -> io::Result<()> {
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

/// One request being handled on the reader thread.
struct Req<'a> {
    sh: &'a Arc<Shared>,
    id: &'a RawValue,
    era: Era,
    params: Option<&'a RawValue>,
}

impl<'a> Req<'a> {
    fn reply<T: Serialize>(&self, result: &T) -> Handled {
        Ok(self.sh.send_result(self.id, self.era, result)?)
    }

    fn parse<T: Deserialize<'a>>(&self) -> Result<T, RpcError> {
        parse_args(self.params)
    }
}

fn parse_args<'a, T: Deserialize<'a>>(raw: Option<&'a RawValue>) -> Result<T, RpcError> {
    serde_json::from_str(raw.map_or("{}", RawValue::get))
        .map_err(|e| RpcError::params(format!("Invalid params: {e}")))
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

fn capabilities() -> Value {
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

/// Text content serialized as `prefix + body` without building the string.
struct Joined<'a>(&'static str, &'a str);

impl Serialize for Joined<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{}{}", self.0, self.1))
    }
}

#[derive(Serialize)]
struct TextContent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: Joined<'a>,
}

#[derive(Serialize)]
struct TextResult<'a> {
    content: [TextContent<'a>; 1],
}

fn text_result(text: impl Into<String>) -> Value {
    json!({"content": [{"type": "text", "text": text.into()}]})
}

fn error_result(text: impl Into<String>) -> Value {
    json!({"isError": true, "content": [{"type": "text", "text": text.into()}]})
}

fn tool(name: &str, description: &str, schema: Value) -> Value {
    json!({"name": name, "description": description, "inputSchema": schema})
}

fn no_args() -> Value {
    json!({"type": "object", "properties": {}})
}

fn string_arg(name: &str, description: &str) -> Value {
    json!({
        "type": "object",
        "properties": {name: {"type": "string", "description": description}},
        "required": [name],
    })
}

fn tools_list() -> &'static Value {
    static TOOLS: OnceLock<Value> = OnceLock::new();
    TOOLS.get_or_init(|| {
        let int = |default: u64, description: &str| {
            json!({"type": "integer", "minimum": 0, "default": default, "description": description})
        };
        let mut slow = string_arg("message", "Message to echo back");
        slow["properties"]["delayMs"] = int(1000, "Delay before answering, in milliseconds");
        let streams = json!({"type": "object", "properties": {
            "count": int(10, "Number of events"),
            "intervalMs": int(50, "Delay between events, in milliseconds"),
        }});
        let content = json!({"type": "object", "properties": {
            "content": {"type": "string", "description": "New content"},
        }});
        let json_2020_12 = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "$defs": {"address": {"type": "object", "properties": {
                "street": {"type": "string"}, "city": {"type": "string"},
            }}},
            "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"}},
            "additionalProperties": false,
        });
        let mut exit_code = int(0, "Exit status");
        exit_code["maximum"] = json!(255);
        let exit = json!({"type": "object", "properties": {"code": exit_code}});
        let garbage = json!({"type": "object", "properties": {
            "lines": int(3, "Number of non-JSON lines"),
        }});
        let huge = json!({"type": "object", "properties": {
            "bytes": int(HUGE_LINE_DEFAULT, "Length of the line in bytes, without the newline"),
        }});
        let plain = |name: &str, description: &str| tool(name, description, no_args());
        json!({"tools": [
            tool("echo", "Echoes the message back as \"Echo: <message>\"",
                string_arg("message", "Message to echo back")),
            tool("slow_echo", "Echoes after delayMs milliseconds; honours cancellation", slow),
            tool("stream_events", "Sends count progress notifications (if _meta.progressToken \
                is set) and log messages, intervalMs apart", streams),
            plain("crash", "Exits the demo server at once with status 3, without answering"),
            tool("exit", "Answers, flushes, then exits the demo server with status code",
                exit),
            plain("hang", "Never answers; notifications/cancelled ends it silently"),
            tool("garbage", "Writes lines non-JSON lines and one non-JSON-RPC JSON line to \
                stdout, then answers", garbage),
            tool("huge_line", "Writes one stdout line of exactly bytes bytes (a \
                notifications/message padded with x), then answers", huge),
            plain("close_stdout", "Answers, then closes stdout but keeps running until stdin \
                EOF"),
            plain("stop_reading", "Answers, then never reads stdin again (runs until killed)"),
            tool("update_watched", "Changes test://watched-resource and notifies subscribers",
                content),
            plain("test_simple_text", "Tests simple text content response"),
            plain("test_image_content", "Tests image content response"),
            plain("test_audio_content", "Tests audio content response"),
            plain("test_embedded_resource", "Tests embedded resource content response"),
            plain("test_multiple_content_types",
                "Tests response with multiple content types (text, image, resource)"),
            plain("test_tool_with_logging", "Tests tool that emits log messages during execution"),
            plain("test_tool_with_progress", "Tests tool that reports progress notifications"),
            plain("test_error_handling", "Tests error response handling"),
            tool("test_sampling", "Tests server-initiated sampling (LLM completion request)",
                string_arg("prompt", "The prompt to send to the LLM")),
            tool("test_elicitation", "Tests server-initiated elicitation (user input request)",
                string_arg("message", "The message to show the user")),
            plain("test_elicitation_sep1034_defaults",
                "Tests elicitation with default values per SEP-1034"),
            plain("test_elicitation_sep1330_enums",
                "Tests elicitation with enum schema improvements per SEP-1330"),
            tool("json_schema_2020_12_tool",
                "Tool with JSON Schema 2020-12 features for conformance testing (SEP-1613)",
                json_2020_12),
            plain("test_reconnection", "SEP-1699 fixture; over stdio there is no SSE stream to \
                close, so it just answers"),
        ]})
    })
}

/// The results of the fixture tools that answer at once with fixed content.
fn fixed_result(tool: &str) -> Option<Value> {
    let embedded = json!({"type": "resource", "resource": {
        "uri": "test://embedded-resource", "mimeType": "text/plain",
        "text": "This is an embedded resource content.",
    }});
    let image = json!({"type": "image", "data": PNG_1X1, "mimeType": "image/png"});
    Some(match tool {
        "test_simple_text" => text_result("This is a simple text response for testing."),
        "test_image_content" => json!({"content": [image]}),
        "test_audio_content" => {
            json!({"content": [{"type": "audio", "data": WAV_MIN, "mimeType": "audio/wav"}]})
        }
        "test_embedded_resource" => json!({"content": [embedded]}),
        "test_multiple_content_types" => json!({"content": [
            {"type": "text", "text": "Multiple content types test:"},
            image,
            {"type": "resource", "resource": {
                "uri": "test://mixed-content-resource", "mimeType": "application/json",
                "text": r#"{"test":"data","value":123}"#,
            }},
        ]}),
        "test_error_handling" => {
            error_result("This tool intentionally returns an error for testing")
        }
        "test_reconnection" => text_result(
            "Reconnection test completed successfully. If you received this, the client \
             properly reconnected after stream closure.",
        ),
        _ => return None,
    })
}

/// The `elicitation/create` message and schema of the elicitation fixture tools.
fn elicitation_form(tool: &str) -> Option<(&'static str, Value)> {
    let described =
        |kind: &str, description: &str| json!({"type": kind, "description": description});
    let titled = |kind: &str| {
        let names = ["First", "Second", "Third"];
        let option = |i: usize| {
            json!({
                "const": format!("value{}", i + 1),
                "title": format!("{} {kind}", names[i]),
            })
        };
        (0..3).map(option).collect::<Vec<_>>()
    };
    let (message, properties) = match tool {
        "test_elicitation_sep1034_defaults" => {
            let mut p = json!({
                "name": described("string", "User name"),
                "age": described("integer", "User age"),
                "score": described("number", "User score"),
                "status": described("string", "User status"),
                "verified": described("boolean", "Verification status"),
            });
            p["name"]["default"] = json!("John Doe");
            p["age"]["default"] = json!(30);
            p["score"]["default"] = json!(95.5);
            p["status"]["enum"] = json!(["active", "inactive", "pending"]);
            p["status"]["default"] = json!("active");
            p["verified"]["default"] = json!(true);
            ("Please review and update the form fields with defaults", p)
        }
        "test_elicitation_sep1330_enums" => {
            let mut p = json!({
                "untitledSingle": described("string", "Select one option"),
                "titledSingle": described("string", "Select one option with titles"),
                "legacyEnum": described("string", "Select one option (legacy)"),
                "untitledMulti": described("array", "Select multiple options"),
                "titledMulti": described("array", "Select multiple options with titles"),
            });
            p["untitledSingle"]["enum"] = json!(["option1", "option2", "option3"]);
            p["titledSingle"]["oneOf"] = json!(titled("Option"));
            p["legacyEnum"]["enum"] = json!(["opt1", "opt2", "opt3"]);
            p["legacyEnum"]["enumNames"] = json!(["Option One", "Option Two", "Option Three"]);
            for (field, items) in [
                (
                    "untitledMulti",
                    json!({"type": "string", "enum": ["option1", "option2", "option3"]}),
                ),
                ("titledMulti", json!({"anyOf": titled("Choice")})),
            ] {
                p[field]["minItems"] = json!(1);
                p[field]["maxItems"] = json!(3);
                p[field]["items"] = items;
            }
            ("Please select options from the enum fields", p)
        }
        _ => return None,
    };
    Some((
        message,
        json!({"type": "object", "properties": properties, "required": []}),
    ))
}

fn call_tool(req: &Req) -> Handled {
    #[derive(Deserialize)]
    struct Call<'a> {
        #[serde(borrow)]
        name: Cow<'a, str>,
        #[serde(borrow, default)]
        arguments: Option<&'a RawValue>,
        #[serde(rename = "_meta", borrow, default)]
        meta: Option<ReqMeta<'a>>,
    }
    #[derive(Deserialize)]
    struct Text<'a> {
        #[serde(borrow)]
        message: Cow<'a, str>,
    }
    #[derive(Deserialize)]
    struct ToolArgs {
        message: Option<String>,
        prompt: Option<String>,
        content: Option<String>,
        #[serde(rename = "delayMs")]
        delay_ms: Option<u64>,
        count: Option<u64>,
        #[serde(rename = "intervalMs")]
        interval_ms: Option<u64>,
        lines: Option<u64>,
        bytes: Option<u64>,
        code: Option<i32>,
    }
    let call: Call = req.parse()?;
    let name = &*call.name;
    if name == "echo" {
        // The hot path: borrowed input, no intermediate `Value`, no extra string.
        let a: Text = parse_args(call.arguments)?;
        let text = Joined("Echo: ", &a.message);
        return req.reply(&TextResult {
            content: [TextContent { kind: "text", text }],
        });
    }
    if let Some(result) = fixed_result(name) {
        return req.reply(&result);
    }
    if let Some((message, schema)) = elicitation_form(name) {
        return elicit(req, message, schema, "Elicitation completed");
    }
    let token = call
        .meta
        .unwrap_or_default()
        .progress_token
        .map(RawValue::to_owned);
    let a: ToolArgs = parse_args(call.arguments)?;
    let required = |value: Option<String>, field: &str| {
        value.ok_or_else(|| RpcError::params(format!("{name}: missing string argument {field}")))
    };
    match name {
        "slow_echo" => {
            let message = required(a.message, "message")?;
            spawn_job(req, move |job| {
                job.sleep(a.delay_ms.unwrap_or(1000))?;
                Some(Ok(text_result(format!("Echo: {message}"))))
            })
        }
        "stream_events" => {
            let (count, interval) = (a.count.unwrap_or(10), a.interval_ms.unwrap_or(50));
            spawn_job(req, move |job| {
                for i in 1..=count {
                    if i > 1 {
                        job.sleep(interval)?;
                    }
                    let message = format!("event {i}");
                    if let Some(token) = &token {
                        job.sh.progress(token, i, count, &message);
                    }
                    job.sh.log(INFO, &message);
                }
                Some(Ok(text_result(format!("streamed {count} events"))))
            })
        }
        "crash" => {
            log::warn!("demo-server: crash tool called, exiting with status 3");
            std::process::exit(3)
        }
        "exit" => {
            let code = a.code.unwrap_or(0);
            req.reply(&text_result(format!("exiting with status {code}")))?;
            log::warn!("demo-server: exit tool called, exiting with status {code}");
            std::process::exit(code)
        }
        "hang" => spawn_job(req, |job| {
            // Nothing is ever sent on the channel: this returns when the sender is dropped,
            // i.e. on notifications/cancelled or at stdin EOF.
            let _ = job.cancel.recv();
            None
        }),
        "garbage" => {
            let lines = a.lines.unwrap_or(3);
            req.sh.write_raw(|out| {
                for _ in 0..lines {
                    out.write_all(b"this is not json\n")?;
                }
                out.write_all(b"{\"hello\":1}\n")
            })?;
            req.reply(&text_result("garbage sent"))
        }
        "huge_line" => {
            let bytes = a.bytes.unwrap_or(HUGE_LINE_DEFAULT);
            req.sh.write_raw(|out| write_huge_line(out, bytes))?;
            req.reply(&text_result(format!("huge line sent ({bytes} bytes)")))
        }
        "close_stdout" => {
            req.reply(&text_result("closing stdout"))?;
            log::warn!("demo-server: close_stdout called; serving on until stdin EOF");
            req.sh.close_output();
            Ok(())
        }
        "stop_reading" => {
            req.reply(&text_result("no longer reading stdin"))?;
            req.sh.stop_reading.store(true, Ordering::Relaxed);
            Ok(())
        }
        "update_watched" => {
            let serial = req.sh.serial.fetch_add(1, Ordering::Relaxed);
            let content = a
                .content
                .unwrap_or_else(|| format!("Watched resource content ({serial})"));
            *lock(&req.sh.watched) = content;
            if lock(&req.sh.subscriptions).contains(WATCHED_URI) {
                req.sh.notify(
                    "notifications/resources/updated",
                    json!({"uri": WATCHED_URI}),
                );
            }
            req.reply(&text_result("test://watched-resource updated"))
        }
        "test_tool_with_logging" => spawn_job(req, |job| {
            job.sh.log(INFO, "Tool execution started");
            job.sleep(50)?;
            job.sh.log(INFO, "Tool processing data");
            job.sleep(50)?;
            job.sh.log(INFO, "Tool execution completed");
            Some(Ok(text_result("Tool with logging executed successfully")))
        }),
        "test_tool_with_progress" => spawn_job(req, move |job| {
            for step in [0, 50, 100] {
                if step > 0 {
                    job.sleep(50)?;
                }
                if let Some(token) = &token {
                    let message = format!("Completed step {step} of 100");
                    job.sh.progress(token, step, 100, &message);
                }
            }
            Some(Ok(text_result("Progress reporting completed")))
        }),
        "test_sampling" => {
            let prompt = required(a.prompt, "prompt")?;
            let params = json!({
                "messages": [{"role": "user", "content": {"type": "text", "text": prompt}}],
                "maxTokens": 100,
            });
            ask_client(
                req,
                "sampling",
                "sampling/createMessage",
                params,
                |answer| {
                    let text = match answer.get("content") {
                        Some(Value::Array(items)) => items.iter().find_map(|c| c.get("text")),
                        Some(content) => content.get("text"),
                        None => None,
                    };
                    let text = text.and_then(Value::as_str).unwrap_or("No response");
                    format!("LLM response: {text}")
                },
            )
        }
        "test_elicitation" => {
            let message = required(a.message, "message")?;
            let schema = json!({"type": "object", "properties": {
                "username": {"type": "string", "description": "User's response"},
                "email": {"type": "string", "description": "User's email address"},
            }, "required": ["username", "email"]});
            elicit(req, &message, schema, "User response")
        }
        "json_schema_2020_12_tool" => {
            let args: Value = parse_args(call.arguments)?;
            req.reply(&text_result(format!(
                "JSON Schema 2020-12 tool called with: {args}"
            )))
        }
        other => Err(RpcError::params(format!("Unknown tool: {other}")).into()),
    }
}

/// Writes one line of exactly `bytes` bytes plus `\n`, a piece at a time: a
/// `notifications/message` whose `data` is padding, or bare padding if `bytes` is too small for
/// the envelope.
fn write_huge_line(out: &mut dyn Write, bytes: u64) -> io::Result<()> {
    let envelope = (HUGE_LINE_PREFIX.len() + HUGE_LINE_SUFFIX.len()) as u64;
    let framed = bytes >= envelope;
    let mut padding = if framed { bytes - envelope } else { bytes };
    if framed {
        out.write_all(HUGE_LINE_PREFIX.as_bytes())?;
    }
    static PIECE: [u8; HUGE_LINE_PIECE] = [b'x'; HUGE_LINE_PIECE];
    while padding > 0 {
        let n = padding.min(HUGE_LINE_PIECE as u64) as usize;
        out.write_all(&PIECE[..n])?;
        padding -= n as u64;
    }
    if framed {
        out.write_all(HUGE_LINE_SUFFIX.as_bytes())?;
    }
    out.write_all(b"\n")
}

fn elicit(req: &Req, message: &str, schema: Value, label: &'static str) -> Handled {
    let mut params = json!({"message": message, "requestedSchema": schema});
    if lock(&req.sh.session)
        .version
        .as_deref()
        .is_none_or(|v| v == LATEST_LEGACY)
    {
        params["mode"] = json!("form");
    }
    ask_client(
        req,
        "elicitation",
        "elicitation/create",
        params,
        move |answer| {
            let action = answer
                .get("action")
                .and_then(Value::as_str)
                .unwrap_or("unknown");
            let content = answer.get("content").cloned().unwrap_or_else(|| json!({}));
            format!("{label}: action={action}, content={content}")
        },
    )
}

/// Runs a tool that sends `method` to the client and turns the answer into text.
fn ask_client(
    req: &Req,
    capability: &str,
    method: &'static str,
    params: Value,
    render: impl FnOnce(&Value) -> String + Send + 'static,
) -> Handled {
    if matches!(req.era, Era::Modern { .. }) {
        let msg = format!(
            "This tool needs a server-to-client {method} request; in protocol revision \
             {MODERN_VERSION} that requires MRTR (input_required results), which the demo \
             server does not implement"
        );
        return Err(RpcError::new(METHOD_NOT_FOUND, msg).into());
    }
    let declared = {
        let session = lock(&req.sh.session);
        session.version.is_none() || session.capabilities.get(capability).is_some()
    };
    if !declared {
        return req.reply(&error_result(format!(
            "The client did not declare the {capability} capability"
        )));
    }
    spawn_job(req, move |job| {
        Some(Ok(match job.ask(method, params)? {
            Ok(answer) => text_result(render(&answer)),
            Err(error) => {
                let detail = error
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown error");
                error_result(format!("{method} failed: {detail}"))
            }
        }))
    })
}

/// A tool call running on its own thread. `None` from its body means "cancelled: send nothing".
struct Job {
    sh: Arc<Shared>,
    id: Box<RawValue>,
    era: Era,
    key: String,
    serial: u64,
    cancel: Receiver<()>,
}

impl Job {
    /// Sleeps `ms` milliseconds; `None` if the request was cancelled meanwhile.
    fn sleep(&self, ms: u64) -> Option<()> {
        match self.cancel.recv_timeout(Duration::from_millis(ms)) {
            Err(RecvTimeoutError::Timeout) => Some(()),
            _ => None,
        }
    }

    /// Sends a request to the client and waits for its answer; `None` if cancelled or at EOF.
    fn ask(&self, method: &str, params: Value) -> Option<ClientAnswer> {
        let id = format!("demo-{}", self.sh.serial.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = crossbeam_channel::bounded(1);
        lock(&self.sh.pending).insert(id.clone(), tx);
        let msg = Message {
            jsonrpc: "2.0",
            id: Some(&id),
            method,
            params,
        };
        if let Err(e) = self.sh.write(&msg) {
            log::warn!("demo-server: cannot send {method}: {e}");
            lock(&self.sh.pending).remove(&id);
            return None;
        }
        let answer = crossbeam_channel::select! {
            recv(rx) -> answer => answer.ok(),
            recv(self.cancel) -> _ => None,
        };
        if answer.is_none() && lock(&self.sh.pending).remove(&id).is_some() {
            self.sh.notify(
                "notifications/cancelled",
                json!({"requestId": id, "reason": "tool call cancelled"}),
            );
        }
        answer
    }

    fn finish(self, outcome: Option<Result<Value, RpcError>>) {
        let mine = {
            let mut inflight = lock(&self.sh.inflight);
            let mine =
                matches!(inflight.get(&self.key), Some((serial, _)) if *serial == self.serial);
            if mine {
                inflight.remove(&self.key);
            }
            mine
        };
        // A cancellation removes the entry, so only a job still registered may answer.
        let written = match outcome {
            Some(Ok(result)) if mine => self.sh.send_result(&self.id, self.era, &result),
            Some(Err(error)) if mine => self.sh.send_error(Some(&self.id), &error),
            _ => Ok(()),
        };
        if let Err(e) = written {
            log::warn!("demo-server: cannot write a response: {e}");
        }
    }
}

fn spawn_job(
    req: &Req,
    body: impl FnOnce(&Job) -> Option<Result<Value, RpcError>> + Send + 'static,
) -> Handled {
    let sh = Arc::clone(req.sh);
    let key = req.id.get().to_owned();
    let serial = sh.serial.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = crossbeam_channel::bounded(0);
    lock(&sh.inflight).insert(key.clone(), (serial, tx));
    let job = Job {
        sh: Arc::clone(&sh),
        id: req.id.to_owned(),
        era: req.era,
        key: key.clone(),
        serial,
        cancel: rx,
    };
    let spawned = std::thread::Builder::new()
        .name("demo-job".into())
        .spawn(move || {
            let outcome = body(&job);
            job.finish(outcome);
        });
    if let Err(e) = spawned {
        lock(&sh.inflight).remove(&key);
        return Err(
            RpcError::new(INTERNAL_ERROR, format!("cannot start a worker thread: {e}")).into(),
        );
    }
    Ok(())
}

fn resources_list() -> Value {
    let entry = |name: &str, title: &str, description: &str, mime: &str| {
        let uri = format!("test://{name}");
        json!({
            "uri": uri, "name": name, "title": title, "description": description,
            "mimeType": mime,
        })
    };
    json!({"resources": [
        entry("static-text", "Static Text Resource", "A static text resource for testing",
            "text/plain"),
        entry("static-binary", "Static Binary Resource",
            "A static binary resource (image) for testing", "image/png"),
        entry("watched-resource", "Watched Resource",
            "Changes when the update_watched tool runs; supports subscriptions", "text/plain"),
        entry("embedded-resource", "Embedded Resource",
            "The resource test_embedded_resource embeds", "text/plain"),
        entry("example-resource", "Example Resource", "An example text resource", "text/plain"),
    ]})
}

fn read_resource(req: &Req) -> Handled {
    #[derive(Deserialize)]
    struct Read<'a> {
        #[serde(borrow)]
        uri: Cow<'a, str>,
    }
    let read: Read = req.parse()?;
    let uri = &*read.uri;
    let text = |mime: &str, text: &str| {
        json!({"contents": [{
            "uri": uri, "mimeType": mime, "text": text,
        }]})
    };
    let template_id = uri
        .strip_prefix("test://template/")
        .and_then(|rest| rest.strip_suffix("/data"))
        .filter(|id| !id.is_empty() && !id.contains('/'));
    let result = match uri {
        "test://static-text" => text(
            "text/plain",
            "This is the content of the static text resource.",
        ),
        "test://static-binary" => {
            json!({"contents": [{"uri": uri, "mimeType": "image/png", "blob": PNG_1X1}]})
        }
        WATCHED_URI => text("text/plain", &lock(&req.sh.watched)),
        "test://embedded-resource" => text("text/plain", "This is an embedded resource content."),
        "test://example-resource" => text("text/plain", "Embedded resource content for testing."),
        "test://mixed-content-resource" => {
            text("application/json", r#"{"test":"data","value":123}"#)
        }
        _ => match template_id {
            Some(id) => {
                let body =
                    json!({"id": id, "templateTest": true, "data": format!("Data for ID: {id}")});
                text("application/json", &body.to_string())
            }
            None => {
                let code = if matches!(req.era, Era::Modern { .. }) {
                    INVALID_PARAMS
                } else {
                    RESOURCE_NOT_FOUND
                };
                let mut error = RpcError::new(code, format!("Resource not found: {uri}"));
                error.data = Some(json!({"uri": uri}));
                return Err(error.into());
            }
        },
    };
    req.reply(&result)
}

fn subscribe(req: &Req, on: bool) -> Handled {
    #[derive(Deserialize)]
    struct Sub {
        uri: String,
    }
    let sub: Sub = req.parse()?;
    let mut subscriptions = lock(&req.sh.subscriptions);
    if on {
        subscriptions.insert(sub.uri);
    } else {
        subscriptions.remove(&sub.uri);
    }
    drop(subscriptions);
    req.reply(&Empty {})
}

fn prompts_list() -> Value {
    let arg = |name: &str, description: &str| {
        json!({
            "name": name, "description": description, "required": true,
        })
    };
    let prompt = |name: &str, title: &str, description: &str, arguments: Vec<Value>| {
        json!({
            "name": name, "title": title, "description": description, "arguments": arguments,
        })
    };
    json!({"prompts": [
        prompt("test_simple_prompt", "Simple Test Prompt", "A simple prompt without arguments",
            vec![]),
        prompt("test_prompt_with_arguments", "Prompt With Arguments",
            "A prompt with required arguments",
            vec![arg("arg1", "First test argument"), arg("arg2", "Second test argument")]),
        prompt("test_prompt_with_embedded_resource", "Prompt With Embedded Resource",
            "A prompt that includes an embedded resource",
            vec![arg("resourceUri", "URI of the resource to embed")]),
        prompt("test_prompt_with_image", "Prompt With Image",
            "A prompt that includes image content", vec![]),
    ]})
}

fn get_prompt(req: &Req) -> Handled {
    #[derive(Deserialize)]
    struct Get {
        name: String,
        #[serde(default)]
        arguments: HashMap<String, String>,
    }
    let get: Get = req.parse()?;
    let arg = |name: &str| {
        get.arguments
            .get(name)
            .ok_or_else(|| RpcError::params(format!("Missing required argument: {name}")))
    };
    let user = |content: Value| json!({"role": "user", "content": content});
    let text = |text: &str| user(json!({"type": "text", "text": text}));
    let messages = match get.name.as_str() {
        "test_simple_prompt" => vec![text("This is a simple prompt for testing.")],
        "test_prompt_with_arguments" => {
            vec![text(&format!(
                "Prompt with arguments: arg1='{}', arg2='{}'",
                arg("arg1")?,
                arg("arg2")?
            ))]
        }
        "test_prompt_with_embedded_resource" => vec![
            user(json!({"type": "resource", "resource": {
                "uri": arg("resourceUri")?, "mimeType": "text/plain",
                "text": "Embedded resource content for testing.",
            }})),
            text("Please process the embedded resource above."),
        ],
        "test_prompt_with_image" => vec![
            user(json!({"type": "image", "data": PNG_1X1, "mimeType": "image/png"})),
            text("Please analyze the image above."),
        ],
        other => return Err(RpcError::params(format!("Unknown prompt: {other}")).into()),
    };
    req.reply(&json!({"messages": messages}))
}

fn complete(req: &Req) -> Handled {
    #[derive(Deserialize)]
    struct Complete {
        #[serde(rename = "ref")]
        reference: Ref,
        argument: Argument,
    }
    #[derive(Deserialize)]
    struct Ref {
        #[serde(rename = "type")]
        kind: String,
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        uri: Option<String>,
    }
    #[derive(Deserialize)]
    struct Argument {
        name: String,
        #[serde(default)]
        value: String,
    }
    let c: Complete = req.parse()?;
    let target = c
        .reference
        .name
        .as_deref()
        .or(c.reference.uri.as_deref())
        .unwrap_or("");
    let candidates: &[&str] = match (c.reference.kind.as_str(), target, c.argument.name.as_str()) {
        ("ref/prompt", "test_prompt_with_arguments", "arg1") => {
            &["paris", "park", "party", "test1", "test2"]
        }
        ("ref/prompt", "test_prompt_with_arguments", "arg2") => &["alpha", "beta", "gamma"],
        ("ref/prompt", name, _)
            if !prompts_list()["prompts"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p["name"] == name)) =>
        {
            return Err(RpcError::params(format!("Unknown prompt: {name}")).into());
        }
        ("ref/resource", TEMPLATE_URI, "id") => &["1", "2", "3", "123"],
        _ => &[],
    };
    let values: Vec<&str> = candidates
        .iter()
        .copied()
        .filter(|v| v.starts_with(&c.argument.value))
        .collect();
    req.reply(&json!({"completion": {"values": values, "total": values.len(), "hasMore": false}}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::unbounded;
    use std::io::{BufReader, PipeWriter};
    use std::thread::JoinHandle;

    /// Collects whole output lines into a channel.
    struct LineSink {
        buf: Vec<u8>,
        tx: Sender<String>,
    }

    impl Write for LineSink {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            self.buf.extend_from_slice(data);
            while let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                let line = String::from_utf8(line).expect("utf-8");
                let _ = self.tx.send(line.trim_end().to_owned());
            }
            Ok(data.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A client driving `serve` over an in-memory pipe.
    struct Peer {
        input: Option<PipeWriter>,
        lines: Receiver<String>,
        server: Option<JoinHandle<io::Result<()>>>,
    }

    impl Peer {
        fn start() -> Peer {
            Peer::start_with(Options::default())
        }
        fn start_with(options: Options) -> Peer {
            let (reader, writer) = io::pipe().expect("pipe");
            let (tx, rx) = unbounded();
            let sink = LineSink {
                buf: Vec::new(),
                tx,
            };
            let server =
                std::thread::spawn(move || serve_with(BufReader::new(reader), sink, options));
            Peer {
                input: Some(writer),
                lines: rx,
                server: Some(server),
            }
        }
        fn send(&mut self, line: &str) {
            let input = self.input.as_mut().expect("open");
            writeln!(input, "{line}").expect("write");
        }
        fn raw(&self) -> String {
            let line = self.lines.recv_timeout(Duration::from_secs(2));
            line.expect("no output from the demo server")
        }
        fn recv(&self) -> Value {
            serde_json::from_str(&self.raw()).expect("json")
        }
        /// Sends a request built by [`request`] and returns the next line.
        fn call(&mut self, id: impl std::fmt::Display, method: &str, params: Value) -> Value {
            self.send(&request(id, method, params));
            self.recv()
        }
        fn tool(&mut self, id: u64, name: &str, arguments: Value) -> Value {
            self.call(
                id,
                "tools/call",
                json!({"name": name, "arguments": arguments}),
            )
        }
        fn silent_for(&self, ms: u64) -> bool {
            self.lines.recv_timeout(Duration::from_millis(ms)).is_err()
        }
        fn close(mut self) {
            self.input = None;
            let server = self.server.take().expect("server");
            server.join().expect("join").expect("serve result");
        }
    }

    /// A request line; `id` is written verbatim so tests can use any JSON.
    fn request(id: impl std::fmt::Display, method: &str, params: Value) -> String {
        format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{params}}}"#)
    }

    fn tool_call(id: impl std::fmt::Display, name: &str, arguments: Value) -> String {
        request(
            id,
            "tools/call",
            json!({"name": name, "arguments": arguments}),
        )
    }

    fn text(reply: &Value) -> &str {
        reply["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or("<no text>")
    }

    #[test]
    fn initialize_negotiates_versions() {
        let mut peer = Peer::start();
        for (asked, expected) in [
            ("2025-06-18", "2025-06-18"),
            ("2024-11-05", "2024-11-05"),
            ("1999-01-01", "2025-11-25"),
            ("2026-07-28", "2025-11-25"),
        ] {
            let params = json!({"protocolVersion": asked, "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"}});
            let result = &peer.call(1, "initialize", params)["result"];
            assert_eq!(result["protocolVersion"], expected);
            assert_eq!(result["serverInfo"]["name"], SERVER_NAME);
            assert_eq!(result["serverInfo"]["version"], env!("CARGO_PKG_VERSION"));
            assert_eq!(result["capabilities"]["resources"]["subscribe"], true);
            assert!(result["capabilities"]["completions"].is_object());
        }
        peer.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        assert_eq!(peer.call(2, "ping", json!({}))["result"], json!({}));
        let bad = peer.call(3, "initialize", json!({}));
        assert_eq!(bad["error"]["code"], INVALID_PARAMS);
        peer.close();
    }

    #[test]
    fn tools_list_has_every_tool() {
        let mut peer = Peer::start();
        let reply = peer.call(1, "tools/list", json!({}));
        let tools = reply["result"]["tools"].as_array().expect("tools");
        let names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
        for name in [
            "echo",
            "slow_echo",
            "stream_events",
            "crash",
            "exit",
            "hang",
            "garbage",
            "huge_line",
            "close_stdout",
            "stop_reading",
            "update_watched",
            "test_simple_text",
            "test_image_content",
            "test_audio_content",
            "test_embedded_resource",
            "test_multiple_content_types",
            "test_tool_with_logging",
            "test_tool_with_progress",
            "test_error_handling",
            "test_sampling",
            "test_elicitation",
            "test_elicitation_sep1034_defaults",
            "test_elicitation_sep1330_enums",
            "json_schema_2020_12_tool",
            "test_reconnection",
        ] {
            assert!(names.contains(&name), "{name} missing");
        }
        for tool in tools {
            assert!(tool["description"].is_string() && tool["inputSchema"]["type"] == "object");
        }
        let json_2020_12 = tools
            .iter()
            .find(|t| t["name"] == "json_schema_2020_12_tool");
        let schema = &json_2020_12.expect("tool")["inputSchema"];
        assert_eq!(
            schema["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
        assert_eq!(schema["additionalProperties"], false);
        assert!(schema["$defs"]["address"].is_object());
        peer.close();
    }

    #[test]
    fn echo_keeps_ids_exact() {
        let mut peer = Peer::start();
        peer.send(&tool_call(
            r#""abc""#,
            "echo",
            json!({"message": "hi \"there\""}),
        ));
        let raw = peer.raw();
        assert!(raw.contains(r#""id":"abc""#), "{raw}");
        let reply: Value = serde_json::from_str(&raw).expect("json");
        assert_eq!(text(&reply), "Echo: hi \"there\"");
        for big in [
            "123456789012345678901234567890",
            "9007199254740993",
            "-1.5e300",
        ] {
            peer.send(&tool_call(big, "echo", json!({"message": "x"})));
            assert!(peer.raw().contains(&format!(r#""id":{big},"#)), "{big}");
        }
        peer.close();
    }

    #[test]
    fn errors_have_standard_codes() {
        let mut peer = Peer::start();
        let code = |reply: Value| reply["error"]["code"].clone();
        assert_eq!(code(peer.call(1, "no/such", json!({}))), METHOD_NOT_FOUND);
        assert_eq!(code(peer.tool(2, "echo", json!({}))), INVALID_PARAMS);
        assert_eq!(code(peer.tool(3, "nope", json!({}))), INVALID_PARAMS);
        assert_eq!(
            code(peer.tool(4, "slow_echo", json!({"delayMs": -1}))),
            INVALID_PARAMS
        );
        peer.send("{not json");
        let bad = peer.recv();
        assert_eq!(code(bad.clone()), PARSE_ERROR);
        assert!(bad["id"].is_null());
        assert_eq!(
            peer.tool(5, "test_error_handling", json!({}))["result"]["isError"],
            true
        );
        peer.close();
    }

    #[test]
    fn progress_and_logs_in_order() {
        let mut peer = Peer::start();
        let meta = |token: Value| json!({"progressToken": token});
        let params = json!({"name": "test_tool_with_progress", "arguments": {},
            "_meta": meta(json!("tok-1"))});
        peer.send(&request(1, "tools/call", params));
        for expected in [0, 50, 100] {
            let note = peer.recv();
            assert_eq!(note["method"], "notifications/progress");
            assert_eq!(note["params"]["progressToken"], "tok-1");
            assert_eq!(note["params"]["progress"], expected);
            assert_eq!(note["params"]["total"], 100);
        }
        assert_eq!(peer.recv()["id"], 1);

        let params = json!({"name": "stream_events", "arguments": {"count": 2, "intervalMs": 1},
            "_meta": meta(json!(7))});
        peer.send(&request(2, "tools/call", params));
        let methods: Vec<Value> = (0..4).map(|_| peer.recv()["method"].clone()).collect();
        let (progress, message) = ("notifications/progress", "notifications/message");
        assert_eq!(methods, [progress, message, progress, message]);
        assert_eq!(text(&peer.recv()), "streamed 2 events");

        let set = peer.call(3, "logging/setLevel", json!({"level": "warning"}));
        assert_eq!(set["result"], json!({}));
        assert_eq!(
            peer.tool(4, "test_tool_with_logging", json!({}))["id"],
            4,
            "info is filtered"
        );
        peer.close();
    }

    #[test]
    fn sampling_and_elicitation_round_trip() {
        let mut peer = Peer::start();
        let caps = json!({"sampling": {}, "elicitation": {}});
        peer.call(
            1,
            "initialize",
            json!({"protocolVersion": "2025-11-25", "capabilities": caps}),
        );
        peer.send(&tool_call(2, "test_sampling", json!({"prompt": "Say hi"})));
        let ask = peer.recv();
        assert_eq!(ask["method"], "sampling/createMessage");
        assert_eq!(ask["params"]["messages"][0]["content"]["text"], "Say hi");
        let demo_id = ask["id"].as_str().expect("string id").to_owned();
        assert!(demo_id.starts_with("demo-"));
        // Quick requests are still answered while the tool waits.
        assert_eq!(peer.call(3, "ping", json!({}))["id"], 3);
        let answer = json!({"jsonrpc": "2.0", "id": demo_id, "result": {"role": "assistant",
            "content": {"type": "text", "text": "hi"}, "model": "m"}});
        peer.send(&answer.to_string());
        let reply = peer.recv();
        assert_eq!(reply["id"], 2);
        assert_eq!(text(&reply), "LLM response: hi");

        peer.send(&tool_call(
            4,
            "test_elicitation_sep1034_defaults",
            json!({}),
        ));
        let ask = peer.recv();
        assert_eq!(ask["method"], "elicitation/create");
        assert_eq!(
            ask["params"]["requestedSchema"]["properties"]["score"]["default"],
            95.5
        );
        assert_eq!(ask["params"]["mode"], "form");
        let answer = json!({"jsonrpc": "2.0", "id": ask["id"],
            "result": {"action": "accept", "content": {"age": 3}}});
        peer.send(&answer.to_string());
        let expected = r#"Elicitation completed: action=accept, content={"age":3}"#;
        assert_eq!(text(&peer.recv()), expected);
        peer.close();
    }

    #[test]
    fn cancellation_stops_slow_requests() {
        let mut peer = Peer::start();
        peer.send(&tool_call(
            5,
            "slow_echo",
            json!({"message": "late", "delayMs": 10000}),
        ));
        assert_eq!(peer.tool(6, "echo", json!({"message": "fast"}))["id"], 6);
        let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
            "params": {"requestId": 5, "reason": "test"}});
        peer.send(&cancel.to_string());
        assert!(
            peer.silent_for(100),
            "a cancelled request must not be answered"
        );
        let reply = peer.tool(7, "slow_echo", json!({"message": "soon", "delayMs": 10}));
        assert_eq!(text(&reply), "Echo: soon");
        peer.close();
    }

    #[test]
    fn hang_never_answers_until_cancelled() {
        let mut peer = Peer::start();
        peer.send(&tool_call(5, "hang", json!({})));
        assert_eq!(
            peer.call(6, "ping", json!({}))["id"],
            6,
            "others still served"
        );
        assert!(peer.silent_for(200), "hang must not answer");
        let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
            "params": {"requestId": 5, "reason": "test"}});
        peer.send(&cancel.to_string());
        assert!(peer.silent_for(100), "a cancelled hang sends nothing");
        // A second hang is still running at EOF; serve must return anyway.
        peer.send(&tool_call(7, "hang", json!({})));
        assert_eq!(peer.call(8, "ping", json!({}))["id"], 8);
        peer.close();
    }

    #[test]
    fn garbage_then_a_normal_answer() {
        let mut peer = Peer::start();
        peer.send(&tool_call(1, "garbage", json!({})));
        for _ in 0..3 {
            assert_eq!(peer.raw(), "this is not json");
        }
        assert_eq!(peer.raw(), r#"{"hello":1}"#);
        let reply = peer.recv();
        assert_eq!(
            (reply["id"].clone(), text(&reply)),
            (json!(1), "garbage sent")
        );
        peer.send(&tool_call(2, "garbage", json!({"lines": 0})));
        assert_eq!(peer.raw(), r#"{"hello":1}"#);
        assert_eq!(peer.recv()["id"], 2);
        peer.close();
    }

    #[test]
    fn huge_line_has_the_exact_length() {
        let mut peer = Peer::start();
        // Several 64 KiB pieces plus a ragged end.
        let bytes = 3 * HUGE_LINE_PIECE as u64 + 1234;
        peer.send(&tool_call(1, "huge_line", json!({"bytes": bytes})));
        let line = peer.raw();
        assert_eq!(line.len() as u64, bytes);
        let note: Value = serde_json::from_str(&line).expect("json");
        assert_eq!(note["method"], "notifications/message");
        let data = note["params"]["data"].as_str().expect("data");
        assert!(data.bytes().all(|b| b == b'x'));
        assert_eq!(
            text(&peer.recv()),
            format!("huge line sent ({bytes} bytes)")
        );
        // Too small for the envelope: bare padding of exactly that length.
        peer.send(&tool_call(2, "huge_line", json!({"bytes": 10})));
        assert_eq!(peer.raw(), "x".repeat(10));
        assert_eq!(peer.recv()["id"], 2);
        peer.close();

        let mut out = Vec::new();
        write_huge_line(&mut out, HUGE_LINE_DEFAULT).expect("write");
        assert_eq!(out.len() as u64, HUGE_LINE_DEFAULT + 1);
        assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 1);
        assert_eq!(out.last(), Some(&b'\n'));
    }

    #[test]
    fn close_stdout_drops_the_writer_and_serves_on_until_eof() {
        let mut peer = Peer::start();
        assert_eq!(
            text(&peer.tool(1, "close_stdout", json!({}))),
            "closing stdout"
        );
        // The writer (and with it the channel's only sender) is gone.
        let next = peer.lines.recv_timeout(Duration::from_secs(2));
        assert_eq!(next, Err(RecvTimeoutError::Disconnected));
        peer.send(&request(2, "ping", json!({})));
        peer.close();
    }

    #[test]
    fn stop_reading_and_ignore_eof_never_return() {
        let mut peer = Peer::start();
        let reply = peer.tool(1, "stop_reading", json!({}));
        assert_eq!(text(&reply), "no longer reading stdin");
        peer.send(&request(2, "ping", json!({})));
        assert!(peer.silent_for(200), "stdin is no longer read");
        let server = peer.server.take().expect("server");
        drop(peer); // EOF: still nothing, the reader thread sleeps (and leaks).
        std::thread::sleep(Duration::from_millis(50));
        assert!(!server.is_finished());

        let options = Options {
            ignore_eof: true,
            ..Options::default()
        };
        let mut peer = Peer::start_with(options);
        assert_eq!(peer.call(1, "ping", json!({}))["id"], 1);
        let server = peer.server.take().expect("server");
        peer.input = None;
        std::thread::sleep(Duration::from_millis(100));
        assert!(!server.is_finished(), "--ignore-eof must not return at EOF");
    }

    #[test]
    fn fail_initialize_refuses_the_handshake() {
        let options = Options {
            fail_initialize: true,
            ..Options::default()
        };
        let mut peer = Peer::start_with(options);
        let params = json!({"protocolVersion": "2025-11-25", "capabilities": {}});
        let reply = peer.call(1, "initialize", params);
        assert_eq!(reply["error"]["code"], INTERNAL_ERROR);
        assert!(reply.get("result").is_none());
        assert_eq!(
            peer.call(2, "ping", json!({}))["id"],
            2,
            "the rest still works"
        );
        peer.close();
    }

    #[test]
    fn modern_era_discover_and_meta() {
        let mut peer = Peer::start();
        let discover = &peer.call(1, "server/discover", json!({}))["result"];
        assert_eq!(discover["supportedVersions"][0], MODERN_VERSION);
        assert_eq!(discover["resultType"], "complete");
        assert_eq!(discover["serverInfo"]["name"], SERVER_NAME);

        let meta = json!({"io.modelcontextprotocol/protocolVersion": MODERN_VERSION});
        let params = json!({"name": "echo", "arguments": {"message": "m"}, "_meta": meta});
        let echo = peer.call(2, "tools/call", params);
        assert_eq!(text(&echo), "Echo: m");
        assert_eq!(echo["result"]["resultType"], "complete");
        let info = &echo["result"]["_meta"]["io.modelcontextprotocol/serverInfo"];
        assert_eq!(info["name"], SERVER_NAME);

        let params = json!({"name": "test_sampling", "arguments": {"prompt": "p"}, "_meta": meta});
        assert_eq!(
            peer.call(3, "tools/call", params)["error"]["code"],
            METHOD_NOT_FOUND
        );
        assert_eq!(
            peer.call(4, "ping", json!({"_meta": meta}))["error"]["code"],
            METHOD_NOT_FOUND
        );

        let wrong = json!({"io.modelcontextprotocol/protocolVersion": "2099-01-01"});
        let error = &peer.call(5, "tools/list", json!({"_meta": wrong}))["error"];
        assert_eq!(error["code"], UNSUPPORTED_VERSION);
        assert_eq!(error["data"]["requested"], "2099-01-01");
        assert_eq!(error["data"]["supported"][0], MODERN_VERSION);
        peer.close();
    }

    #[test]
    fn resources_prompts_and_completion() {
        let mut peer = Peer::start();
        let mut read = |uri: &str| peer.call(1, "resources/read", json!({"uri": uri}));
        let contents = |reply: &Value| reply["result"]["contents"][0].clone();
        assert_eq!(
            contents(&read("test://static-text"))["mimeType"],
            "text/plain"
        );
        assert_eq!(contents(&read("test://static-binary"))["blob"], PNG_1X1);
        let template = contents(&read("test://template/123/data"));
        assert!(
            template["text"]
                .as_str()
                .expect("text")
                .contains("Data for ID: 123")
        );
        assert_eq!(read("test://missing")["error"]["code"], RESOURCE_NOT_FOUND);

        let sub = peer.call(2, "resources/subscribe", json!({"uri": WATCHED_URI}));
        assert_eq!(sub["result"], json!({}));
        peer.send(&tool_call(3, "update_watched", json!({"content": "new"})));
        assert_eq!(peer.recv()["method"], "notifications/resources/updated");
        assert_eq!(peer.recv()["id"], 3);
        let watched = peer.call(4, "resources/read", json!({"uri": WATCHED_URI}));
        assert_eq!(contents(&watched)["text"], "new");

        let args = json!({"arg1": "testValue1", "arg2": "testValue2"});
        let params = json!({"name": "test_prompt_with_arguments", "arguments": args});
        let prompt = peer.call(5, "prompts/get", params);
        let expected = "Prompt with arguments: arg1='testValue1', arg2='testValue2'";
        assert_eq!(prompt["result"]["messages"][0]["content"]["text"], expected);
        let missing = peer.call(
            6,
            "prompts/get",
            json!({"name": "test_prompt_with_arguments"}),
        );
        assert_eq!(missing["error"]["code"], INVALID_PARAMS);

        let params = json!({"ref": {"type": "ref/prompt", "name": "test_prompt_with_arguments"},
            "argument": {"name": "arg1", "value": "par"}});
        let done = peer.call(7, "completion/complete", params);
        let expected = json!({"values": ["paris", "park", "party"], "total": 3, "hasMore": false});
        assert_eq!(done["result"]["completion"], expected);
        peer.close();
    }

    #[test]
    fn serves_a_cursor_and_exits_at_eof() {
        let input = io::Cursor::new(format!(
            "{}\n\n{}\n",
            request(1, "ping", json!({})),
            tool_call(2, "test_simple_text", json!({}))
        ));
        let (tx, rx) = unbounded();
        serve(
            input,
            LineSink {
                buf: Vec::new(),
                tx,
            },
        )
        .expect("serve");
        let lines: Vec<Value> = rx
            .try_iter()
            .map(|l| serde_json::from_str(&l).expect("json"))
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(
            text(&lines[1]),
            "This is a simple text response for testing."
        );
    }
}
