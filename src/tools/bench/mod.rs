//! `shadowcat bench`: a closed-loop load generator for any Streamable HTTP MCP endpoint.
//!
//! Owns: its flags and options, its own HTTP/1.1 client and SSE reading, the load loop, the
//! `--pipe` driver, the statistics and the report, and its own error type, [`BenchError`]
//! (turned into a [`crate::Error`] only by [`run`], for the exit code). Must not touch: the
//! proxy's internals. It talks to a proxy (or, with `--pipe`, to a stdio server) over the wire
//! like any client; from the crate it uses only `crate::util` (line reading, flag syntax) and
//! `crate::jsonrpc::id_u64`, plus one pure check of header syntax, `crate::http::valid_header`,
//! for `--header`, and `crate::http::load_certs` to read `--ca`.
//!
//! ```text
//! shadowcat bench                                            # 1 session, echo, 10 s, loopback :8080
//! shadowcat bench --sessions 64 --duration 30s --json
//! shadowcat bench --requests 10000 --method tools/list
//! shadowcat bench --tool test_tool_with_progress --args '{}' --progress   # SSE replies
//! shadowcat bench --url https://127.0.0.1:8443/mcp --ca ca.pem --sessions 16      # over TLS
//! ```
//!
//! Each of `--sessions` threads owns one keep-alive TCP connection (`TCP_NODELAY`) and speaks a
//! minimal HTTP/1.1 (Content-Length and chunked bodies); for an `https://` URL over TLS
//! (rustls, TLS 1.2 or 1.3, ALPN `http/1.1`, the server's name verified against `--ca`, by
//! default the system's bundle), the handshake made once per connection. A session POSTs `initialize` (keeping
//! the `Mcp-Session-Id` it is given, if any, and the negotiated protocol version), POSTs
//! `notifications/initialized`, then sends one request after another with increasing integer
//! ids, each carrying `Mcp-Session-Id` and `MCP-Protocol-Version`; at the end it DELETEs the
//! session. JSON replies are read whole; `text/event-stream` replies are read event by event
//! and end with the event that holds the JSON-RPC response with the request's id.
//!
//! A request is **ok** when a response with a `result` and the right id arrives. Anything else is
//! an error of one kind: `http_<status>`, `jsonrpc_error`, `timeout`, `connect`, `io` or
//! `bad_response`. After a connection error the session reconnects (counted in `reconnects`);
//! after a 404 it initializes again (counted in `reinitialized`).
//!
//! Timing: all sessions initialize first; then `--warmup` (not recorded), then the measured
//! phase: `--duration`, or until `--requests` have been sent across all sessions, whichever comes
//! first. Latency is recorded for ok requests only, from just before the request is written to
//! the arrival of its response, in a [`Histogram`] (log-linear buckets, under 1 % error);
//! throughput is ok requests per second of the measured phase. With `--duration`, everything
//! stops by duration + `--timeout` at the latest; every request ends by its `--timeout`.
//!
//! Only loopback endpoints are driven unless `--allow-remote` is given.
//!
//! ## The direct pipe (`--pipe`)
//!
//! ```text
//! shadowcat bench --pipe "shadowcat demo-server" --sessions 16 --duration 5s --json
//! ```
//!
//! With `--pipe "CMD ARGS"` (split like `reverse --stdio`, no shell) there is no HTTP and no
//! proxy: the bench starts that stdio MCP server once, initializes it, and writes the same
//! requests straight to its stdin, one line each, reading the responses from its stdout. Each
//! of `--sessions` becomes a *caller* with at most one request in flight; the callers share the
//! one child. A single caller writes and reads the pipe itself (no other thread on the path); with
//! more, writes are serialised by a lock and one reader thread routes each response to its caller
//! by id. This is the ceiling the proxy's stdio path is measured against. Notifications and
//! anything else that is not a response are skipped; stderr is discarded. A watchdog kills the
//! child's process group when no response has arrived for `--timeout` (or at duration +
//! `--timeout`), so a silent child cannot hang the run; the child is stopped at the end (stdin
//! closed, 2 s, then SIGKILL to its group) and always reaped.
//!
//! ## Layout
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | flags ([`BenchArgs`]), options ([`BenchOptions`]) and their checks, [`run`], [`bench()`] |
//! | `error.rs` | [`BenchError`] |
//! | `load.rs` | the HTTP run: session threads, the start together |
//! | `plan.rs` | the plan of phases (warm-up, measured, hard stop), for both kinds of run |
//! | `session.rs` | one HTTP session: initialize, the closed loop, recovery, DELETE; what sessions share |
//! | `client.rs` | the minimal HTTP/1.1 client: target, connection, bodies, SSE events |
//! | `rpc.rs` | request bodies, the check of a response, failure kinds |
//! | `pipe.rs` | the direct pipe (`--pipe`) |
//! | `histogram.rs` | the latency [`Histogram`] |
//! | `stats.rs` | per-session counts, merged into the [`Report`] |
//! | `report.rs` | the [`Report`], its table and its JSON |

use std::time::Duration;

use argh::FromArgs;
use serde_json::{Value, json};

use crate::util::split_command;

mod client;
mod error;
mod histogram;
mod load;
mod pipe;
mod plan;
mod report;
mod rpc;
mod session;
mod sse;
mod stats;
mod target;
#[cfg(test)]
mod tests;

pub use error::BenchError;
pub use histogram::Histogram;
pub use report::Report;

/// Most sessions (threads) one run may use.
pub const MAX_SESSIONS: usize = 10_000;
/// Largest response body read, in bytes; larger is `bad_response`.
const MAX_BODY: usize = 64 * 1024 * 1024;
/// Read buffer per connection; also the longest response head.
const BUF: usize = 64 * 1024;
/// How often a blocked read wakes up to check its deadline.
const POLL: Duration = Duration::from_millis(100);
/// How long the rest of an SSE body may take after its response event before the connection is
/// dropped instead.
const DRAIN_GRACE: Duration = Duration::from_millis(250);
/// Deadline of the final DELETE of each session.
const DELETE_TIMEOUT: Duration = Duration::from_secs(1);

/// drive a Streamable HTTP MCP endpoint with concurrent sessions and report throughput, latency
/// percentiles and errors by kind
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "bench")]
pub struct BenchArgs {
    /// MCP endpoint, http:// or https:// (default http://127.0.0.1:8080/mcp)
    #[argh(option, default = "String::from(DEFAULT_URL)")]
    pub url: String,

    /// PEM CA certificates trusted for an https:// --url (default: the system's
    /// /etc/ssl/certs/ca-certificates.crt)
    #[argh(option)]
    pub ca: Option<String>,

    /// concurrent sessions, each with its own thread and keep-alive connection (default 1)
    #[argh(option, default = "1")]
    pub sessions: usize,

    /// how long to measure, e.g. 30s or 2m (default 10s when --requests is not given)
    #[argh(option)]
    pub duration: Option<String>,

    /// requests to send in total across all sessions (default: no limit, run for --duration);
    /// with --duration too, whichever ends first
    #[argh(option)]
    pub requests: Option<u64>,

    /// unrecorded warm-up before measuring (default 1s; 0 for none)
    #[argh(option, default = "String::from(\"1s\")")]
    pub warmup: String,

    /// tool to call with tools/call (default echo)
    #[argh(option)]
    pub tool: Option<String>,

    /// tool arguments as a JSON object (default {"message":"hello"})
    #[argh(option)]
    pub args: Option<String>,

    /// send this JSON-RPC method instead of the tools/call built from --tool and --args (e.g.
    /// ping, tools/list)
    #[argh(option)]
    pub method: Option<String>,

    /// params for --method as a JSON object or array (default none)
    #[argh(option)]
    pub params: Option<String>,

    /// add a unique _meta.progressToken to every request, so servers may stream progress over
    /// SSE (default off)
    #[argh(switch)]
    pub progress: bool,

    /// protocol version asked for in initialize (default 2025-11-25); the negotiated one is sent
    /// as MCP-Protocol-Version
    #[argh(option, default = "String::from(DEFAULT_VERSION)")]
    pub protocol_version: String,

    /// print one JSON object on stdout instead of the table (default off)
    #[argh(switch)]
    pub json: bool,

    /// allow a --url that is not a loopback address (refused by default)
    #[argh(switch)]
    pub allow_remote: bool,

    /// deadline of one request (default 30s)
    #[argh(option, default = "String::from(\"30s\")")]
    pub timeout: String,

    /// extra request header, 'Name: value' (e.g. 'Authorization: Bearer T'); repeatable
    #[argh(option)]
    pub header: Vec<String>,

    /// drive this stdio MCP server directly over its stdin/stdout instead of --url: no HTTP, no
    /// proxy (the direct-pipe ceiling); split like `reverse --stdio`; sessions become callers
    /// multiplexed on the one child (default: off, use --url)
    #[argh(option)]
    pub pipe: Option<String>,
}

const DEFAULT_URL: &str = "http://127.0.0.1:8080/mcp";
const DEFAULT_VERSION: &str = "2025-11-25";

/// What to run: the validated form of [`BenchArgs`], for programs and tests.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// The endpoint, `http(s)://host[:port]/path`.
    pub url: String,
    /// CA certificates (PEM) trusted for an `https://` endpoint; `None`: the system's bundle.
    pub ca: Option<std::path::PathBuf>,
    /// Concurrent sessions (threads, connections).
    pub sessions: usize,
    /// Length of the measured phase; `None` runs until `requests` are sent.
    pub duration: Option<Duration>,
    /// Requests to send in total across sessions; `None` runs for `duration`.
    pub requests: Option<u64>,
    /// Unrecorded time before measuring.
    pub warmup: Duration,
    /// JSON-RPC method of each request.
    pub method: String,
    /// Its params (an object or array), if any.
    pub params: Option<Value>,
    /// Add a unique `_meta.progressToken` to every request.
    pub progress: bool,
    /// Protocol version asked for in `initialize`.
    pub protocol_version: String,
    /// Drive non-loopback hosts too.
    pub allow_remote: bool,
    /// Deadline of one request.
    pub timeout: Duration,
    /// Drive this stdio server (program and arguments) over a pipe instead of `url`.
    pub pipe: Option<Vec<String>>,
    /// Extra headers on every HTTP request (`Authorization`, say).
    pub headers: Vec<(String, String)>,
}

impl Default for BenchOptions {
    /// The defaults of `shadowcat bench`: one session calling `echo` for 10 s after 1 s warm-up.
    fn default() -> BenchOptions {
        BenchOptions {
            url: DEFAULT_URL.into(),
            ca: None,
            sessions: 1,
            duration: Some(Duration::from_secs(10)),
            requests: None,
            warmup: Duration::from_secs(1),
            method: "tools/call".into(),
            params: Some(tool_params("echo", json!({"message": "hello"}))),
            progress: false,
            protocol_version: DEFAULT_VERSION.into(),
            allow_remote: false,
            timeout: Duration::from_secs(30),
            pipe: None,
            headers: Vec::new(),
        }
    }
}

impl BenchOptions {
    /// Makes every request a `tools/call` of `name` with `arguments`.
    pub fn call_tool(mut self, name: &str, arguments: Value) -> BenchOptions {
        self.method = "tools/call".into();
        self.params = Some(tool_params(name, arguments));
        self
    }

    /// Checks everything but the URL (see [`bench()`]).
    pub fn validate(&self) -> Result<(), BenchError> {
        if self.sessions == 0 || self.sessions > MAX_SESSIONS {
            return Err(cfg(format!("--sessions must be 1..={MAX_SESSIONS}")));
        }
        if self.duration.is_none() && self.requests.is_none() {
            return Err(cfg("give --duration or --requests"));
        }
        if self.duration.is_some_and(|d| d.is_zero()) {
            return Err(cfg("--duration must be more than zero"));
        }
        if self.requests == Some(0) {
            return Err(cfg("--requests must be at least 1"));
        }
        if self.timeout.is_zero() {
            return Err(cfg("--timeout must be more than zero"));
        }
        if self.method.is_empty() {
            return Err(cfg("--method must not be empty"));
        }
        if self.pipe.as_ref().is_some_and(|p| p.is_empty()) {
            return Err(cfg("--pipe: empty command"));
        }
        if !header_safe(&self.protocol_version) {
            return Err(cfg(format!(
                "--protocol-version {:?} is not a valid header value",
                self.protocol_version
            )));
        }
        match &self.params {
            None | Some(Value::Object(_)) => {}
            Some(Value::Array(_)) if !self.progress => {}
            Some(_) if self.progress => {
                return Err(cfg("--progress needs params that are a JSON object"));
            }
            Some(_) => return Err(cfg("--params must be a JSON object or array")),
        }
        if self.progress {
            let meta = self.params.as_ref().and_then(|p| p.get("_meta"));
            if meta.is_some_and(|m| !m.is_object()) {
                return Err(cfg("--progress: params._meta must be an object"));
            }
        }
        Ok(())
    }

    /// "tools/call echo" or the method, for the report.
    fn label(&self) -> String {
        let tool = self.params.as_ref().and_then(|p| p.get("name")?.as_str());
        match tool {
            Some(t) if self.method == "tools/call" => format!("tools/call {t}"),
            _ => self.method.clone(),
        }
    }
}

fn tool_params(name: &str, arguments: Value) -> Value {
    json!({"name": name, "arguments": arguments})
}

fn cfg(msg: impl Into<String>) -> BenchError {
    BenchError::Config(msg.into())
}

/// A duration flag (`crate::util::duration` syntax); its error is a configuration error.
fn parse_duration(flag: &str, s: &str) -> Result<Duration, BenchError> {
    crate::util::duration(flag, s).map_err(|e| cfg(e.to_string()))
}

/// Visible ASCII and spaces only: safe to put in a request header.
fn header_safe(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| (0x20..0x7f).contains(&b))
}

impl BenchArgs {
    /// Validates the flags into options.
    pub fn into_options(self) -> Result<BenchOptions, BenchError> {
        let duration = match (&self.duration, self.requests) {
            (Some(d), _) => Some(parse_duration("--duration", d)?),
            (None, Some(_)) => None,
            (None, None) => Some(Duration::from_secs(10)),
        };
        let warmup = if is_zero(&self.warmup) {
            Duration::ZERO
        } else {
            parse_duration("--warmup", &self.warmup)?
        };
        let timeout = parse_duration("--timeout", &self.timeout)?;
        let (method, params) = match self.method {
            Some(m) => {
                if self.tool.is_some() || self.args.is_some() {
                    return Err(cfg(
                        "give either --method (with --params) or --tool (with --args), not both",
                    ));
                }
                let params = self
                    .params
                    .as_deref()
                    .map(|p| parse_json("--params", p))
                    .transpose()?;
                (m, params)
            }
            None => {
                if self.params.is_some() {
                    return Err(cfg(
                        "--params goes with --method; for a tool use --tool and --args",
                    ));
                }
                let args = match self.args.as_deref() {
                    Some(a) => parse_json("--args", a)?,
                    None => json!({"message": "hello"}),
                };
                if !args.is_object() {
                    return Err(cfg("--args must be a JSON object"));
                }
                let tool = self.tool.unwrap_or_else(|| "echo".into());
                if tool.is_empty() {
                    return Err(cfg("--tool must not be empty"));
                }
                ("tools/call".to_string(), Some(tool_params(&tool, args)))
            }
        };
        let pipe = self
            .pipe
            .as_deref()
            .map(|p| split_command(p).map_err(|e| cfg(format!("--pipe: {e}"))))
            .transpose()?;
        let headers = self
            .header
            .iter()
            .map(|h| {
                let (n, v) = h
                    .split_once(':')
                    .ok_or_else(|| cfg("--header: expected 'Name: value'"))?;
                let (n, v) = (n.trim(), v.trim());
                if n.is_empty() || !crate::http::valid_header(n, v) {
                    return Err(cfg("--header: not a valid header name or value"));
                }
                Ok((n.to_owned(), v.to_owned()))
            })
            .collect::<Result<Vec<_>, BenchError>>()?;
        let opts = BenchOptions {
            headers,
            url: self.url,
            ca: self.ca.map(std::path::PathBuf::from),
            sessions: self.sessions,
            duration,
            requests: self.requests,
            warmup,
            method,
            params,
            progress: self.progress,
            protocol_version: self.protocol_version,
            allow_remote: self.allow_remote,
            timeout,
            pipe,
        };
        opts.validate()?;
        Ok(opts)
    }
}

fn is_zero(s: &str) -> bool {
    matches!(s.trim(), "0" | "0s" | "0ms" | "0m" | "0h")
}

fn parse_json(flag: &str, s: &str) -> Result<Value, BenchError> {
    serde_json::from_str(s).map_err(|e| cfg(format!("{flag}: not JSON ({e})")))
}

/// `shadowcat bench`: runs, prints the table (or `--json`), and fails when no request
/// succeeded. The one place a [`BenchError`] becomes a [`crate::Error`]: configuration errors
/// stay [`crate::Error::Config`] (exit 2), the rest become [`crate::Error::Io`] (exit 1).
pub fn run(args: BenchArgs) -> Result<(), crate::Error> {
    run_bench(args).map_err(crate::Error::from)
}

fn run_bench(args: BenchArgs) -> Result<(), BenchError> {
    let json_out = args.json;
    let opts = args.into_options()?;
    let report = bench(&opts)?;
    if json_out {
        println!("{}", report.to_json_line());
    } else {
        print!("{}", report.to_table());
    }
    if report.ok == 0 {
        return Err(BenchError::NoSuccess { url: report.url });
    }
    Ok(())
}

/// Runs a benchmark as `opts` describe and returns the report. Fails when the options are
/// invalid or the URL is refused ([`BenchError::Config`]), or when a session cannot initialize.
pub fn bench(opts: &BenchOptions) -> Result<Report, BenchError> {
    opts.validate()?;
    if let Some(argv) = &opts.pipe {
        return pipe::bench_pipe(opts, argv);
    }
    load::bench_http(opts)
}
