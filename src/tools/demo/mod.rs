//! `shadowcat demo-server`: a small, fast MCP server, over stdio or (`--http`) Streamable HTTP.
//!
//! Owns: everything of the demo server: its flags, the protocol eras it speaks (`--era`), its
//! tools, resources, prompts and fault injection, and its HTTP front (`http.rs`,
//! `sessions.rs`). Must not touch: the proxy's internals. It is a peer on the other end of a
//! pipe or a socket (the proxy spawns or calls it like any upstream) and must keep working as
//! one; from the crate it uses only `crate::util` (`lock`, the duration syntax of
//! `--startup-delay`), the protocol version constants of `crate::jsonrpc`, `crate::error::Error`
//! and the public API of `crate::http` (the server, the responder, the Host/Origin checks).
//!
//! The proxy spawns it as its default upstream child; benchmarks use it as a fast child; and the
//! conformance suite (`@modelcontextprotocol/conformance@0.1.16`, server mode) runs against it
//! through the proxy. It speaks newline-delimited JSON-RPC on stdin/stdout, logs only to stderr
//! (through `log`), and returns on stdin EOF.
//!
//! **Eras (`--era`).** `dual` (the default, described next) serves both eras as a dual-era
//! server; `legacy` only the session era (nothing but `initialize`/`ping` before `initialize`,
//! -32600; `server/discover` and `subscriptions/listen` are -32601; `_meta` is ignored, as a
//! real 2025 server does; the MRTR fixtures below run as classic server→client requests);
//! `modern` only 2026-07-28 (`initialize` is -32601 naming the supported version; every request
//! needs `_meta` with the version and the client capabilities, else -32602; another version is
//! -32022; MRTR natively with an HMAC-sealed, expiring `requestState` (`state.rs`);
//! `subscriptions/listen` (`listen.rs`); logs only when the request's `_meta` has `logLevel`;
//! a needed capability the request did not declare is -32021). `legacy` and `modern` also list
//! the fixtures of the 2026-07-28 conformance scenarios (`mrtr.rs`: the
//! `test_input_required_result_*` tools and prompt, `test_missing_capability`,
//! `test_streaming_elicitation`; `test_logging_tool`, `test_trigger_tool_change`,
//! `test_trigger_prompt_change`). `dual` serves a 2026-07-28 request exactly as `modern` does
//! (the fixtures, MRTR, `subscriptions/listen`, logs only with `logLevel`, a needed capability
//! the request did not declare is -32021) and a session-era request exactly as before `--era`
//! existed (the old tool list, logs by `logging/setLevel`).
//!
//! What it implements (`--era dual`):
//! * **Both protocol eras.** Legacy (2024-11-05 … 2025-11-25): `initialize` negotiation,
//!   `notifications/initialized`, `ping`, `logging/setLevel`, `resources/subscribe`. Modern
//!   (2026-07-28): `server/discover`, and any request whose
//!   `_meta["io.modelcontextprotocol/protocolVersion"]` is `2026-07-28` is served without a
//!   handshake; its result gets `resultType: "complete"` and
//!   `_meta["io.modelcontextprotocol/serverInfo"]`. An unknown `_meta` version gets -32022.
//!   Modern requests that need the client's input (sampling, elicitation, roots) get an
//!   `InputRequiredResult` (MRTR), as with `--era modern`.
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
//!
//! # Layout
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | flags ([`DemoServerArgs`]), identity and error-code constants, [`run_with`], [`serve`], the read loop |
//! | `dispatch.rs` | each line read: era, routing, `initialize`, `ping`, `logging/setLevel`, `server/discover` |
//! | `connection.rs` | one connection's shared state and every message written |
//! | `request.rs` | one request as its handlers see it: params, `_meta`, the reply, plain tool results |
//! | `tools.rs` | `tools/list` and `tools/call` |
//! | `jobs.rs` | tool calls that wait, on their own thread, and their cancellation |
//! | `resources.rs` | resources, the template, subscriptions |
//! | `prompts.rs` | prompts and completion |
//! | `faults.rs` | the fault-injection tools and the closable raw stdout |
//! | `extra.rs` | the tools only `--era legacy|modern` list, and their calls |
//! | `mrtr.rs` | the tools and the prompt that need client input, as scripts run as MRTR (2026-07-28) or as server→client requests (legacy) |
//! | `state.rs` | the sealed `requestState` (HMAC-SHA256, per-process key, expiry, fixture name) |
//! | `listen.rs` | `Hub` (what all connections share), `subscriptions/listen`, change notifications |
//! | `http.rs` | `--http`: the server, the 2026-07-28 stateless front, header checks, status mapping, the relay to SSE |
//! | `sessions.rs` | `--http`, session era: `Mcp-Session-Id` sessions, the router of their output, GET and DELETE |
//! | `pipe.rs` | the byte-bounded line queue between a connection and its HTTP relay |
//!
//! The two eras are not separate code: a request's era (`connection::Era`) is decided
//! once per request and only changes how its result is decorated, which methods exist, and a
//! few error codes.

use std::io::{self, BufRead, Write};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::Serialize;

use crate::error::Error;
use crate::util::lock;

mod connection;
mod dispatch;
mod extra;
mod faults;
mod http;
mod hub;
mod jobs;
mod listen;
mod mrtr;
mod pipe;
mod prompts;
mod relay;
mod request;
mod resources;
mod sessions;
mod state;
#[cfg(test)]
mod tests;
mod tools;

use connection::Shared;
use dispatch::handle_line;
pub use faults::HUGE_LINE_DEFAULT;
use faults::StdoutFd;

/// run the built-in demo MCP server over stdio (newline-delimited JSON-RPC) or, with --http,
/// Streamable HTTP
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

    /// protocol eras served: dual (default: both, as a dual-era server), legacy (only the
    /// initialize/session era, 2024-11-05 … 2025-11-25) or modern (only 2026-07-28: stateless,
    /// MRTR, subscriptions/listen)
    #[argh(option, default = "ServerEra::Dual")]
    pub era: ServerEra,

    /// serve Streamable HTTP on this address (e.g. 127.0.0.1:0) instead of stdio; prints
    /// "demo-server listening on http://ADDR/mcp" first on stdout (default: stdio)
    #[argh(option)]
    pub http: Option<String>,
}

/// Which protocol eras the demo server speaks (`--era`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ServerEra {
    /// Both: a request's `_meta` version picks its era (the behaviour before `--era` existed).
    #[default]
    Dual,
    /// Only the session era: `initialize` first, server→client requests, no `server/discover`.
    Legacy,
    /// Only 2026-07-28: every request carries `_meta`; no `initialize`, no sessions.
    Modern,
}

impl argh::FromArgValue for ServerEra {
    fn from_arg_value(value: &str) -> Result<Self, String> {
        match value {
            "dual" => Ok(ServerEra::Dual),
            "legacy" => Ok(ServerEra::Legacy),
            "modern" => Ok(ServerEra::Modern),
            other => Err(format!(
                "unknown era {other:?}: expected dual, legacy or modern"
            )),
        }
    }
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
/// The `serverInfo` the demo server reports.
#[derive(Serialize, Clone, Copy)]
struct ServerInfo {
    name: &'static str,
    version: &'static str,
}

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
const MISSING_CAPABILITY: i64 = -32021;

/// How [`serve_with`] misbehaves on purpose (see the module docs). The default is a well-behaved
/// server.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Answer `initialize` with a JSON-RPC error (`--fail-initialize`).
    pub fail_initialize: bool,
    /// At stdin EOF, sleep forever instead of returning (`--ignore-eof`). Running jobs go on.
    pub ignore_eof: bool,
    /// The eras served (`--era`).
    pub era: ServerEra,
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
        era: args.era,
    };
    if let Some(addr) = &args.http {
        return http::serve_http(addr, options);
    }
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
    let shared = Arc::new(Shared::new(
        Box::new(output),
        options,
        Arc::new(hub::Hub::default()),
    ));
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
    shared.hub.drop_connection(&*shared);
    result
}

fn sleep_forever() -> ! {
    loop {
        std::thread::park();
    }
}
