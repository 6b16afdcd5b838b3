//! `shadowcat bench`: a closed-loop load generator for any Streamable HTTP MCP endpoint.
//!
//! ```text
//! shadowcat bench                                            # 1 session, echo, 10 s, loopback :8080
//! shadowcat bench --sessions 64 --duration 30s --json
//! shadowcat bench --requests 10000 --method tools/list
//! shadowcat bench --tool test_tool_with_progress --args '{}' --progress   # SSE replies
//! ```
//!
//! Each of `--sessions` threads owns one keep-alive TCP connection (`TCP_NODELAY`) and speaks a
//! minimal HTTP/1.1 (Content-Length and chunked bodies). A session POSTs `initialize` (keeping
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

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::process::CommandExt;
use std::process::{ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use argh::FromArgs;
use crossbeam_channel::{Receiver, Sender, bounded, unbounded};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use crate::error::Error;
use crate::util::{duration as parse_duration, split_command};
use crate::util::{read_line_bounded, trim_line};

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
    /// MCP endpoint, http:// only (default http://127.0.0.1:8080/mcp)
    #[argh(option, default = "String::from(DEFAULT_URL)")]
    pub url: String,

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
    /// The endpoint, `http://host[:port]/path`.
    pub url: String,
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

    /// Checks everything but the URL (see [`bench`]).
    pub fn validate(&self) -> Result<(), Error> {
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

fn cfg(msg: impl Into<String>) -> Error {
    Error::Config(msg.into())
}

/// Visible ASCII and spaces only: safe to put in a request header.
fn header_safe(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| (0x20..0x7f).contains(&b))
}

impl BenchArgs {
    /// Validates the flags into options.
    pub fn into_options(self) -> Result<BenchOptions, Error> {
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
            .collect::<Result<Vec<_>, Error>>()?;
        let opts = BenchOptions {
            headers,
            url: self.url,
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

fn parse_json(flag: &str, s: &str) -> Result<Value, Error> {
    serde_json::from_str(s).map_err(|e| cfg(format!("{flag}: not JSON ({e})")))
}

/// `shadowcat bench`: runs, prints the table (or `--json`), and fails when no request
/// succeeded.
pub fn run(args: BenchArgs) -> Result<(), Error> {
    let json_out = args.json;
    let opts = args.into_options()?;
    let report = bench(&opts)?;
    if json_out {
        println!("{}", report.to_json_line());
    } else {
        print!("{}", report.to_table());
    }
    if report.ok == 0 {
        return Err(Error::Unavailable(format!(
            "no request to {} succeeded",
            report.url
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Histogram
// ---------------------------------------------------------------------------------------------

/// Bits of linear sub-buckets per power of two: 128 sub-buckets, under 0.8 % relative error.
const SUB_BITS: u32 = 7;
const SUB: u64 = 1 << SUB_BITS;
/// Values below `SUB` are exact; then 128 buckets for each power of two up to 2^63.
const BUCKETS: usize = (64 - SUB_BITS as usize + 1) * SUB as usize;

/// An HDR-style histogram of `u64` values (nanoseconds here): exact below 128, then 128 linear
/// buckets per power of two, so any value is known to within 1/128 (0.8 %). Fixed size (about
/// 58 KiB once something is recorded), O(1) record, mergeable.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Histogram {
    counts: Vec<u64>,
    count: u64,
    min: u64,
    max: u64,
    sum: u128,
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Histogram {
        Histogram::default()
    }

    /// Records one value.
    pub fn record(&mut self, v: u64) {
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS];
        }
        self.counts[bucket(v)] += 1;
        if self.count == 0 || v < self.min {
            self.min = v;
        }
        self.max = self.max.max(v);
        self.count += 1;
        self.sum += u128::from(v);
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The smallest value recorded, exactly (0 when empty).
    pub fn min(&self) -> u64 {
        self.min
    }

    /// The largest value recorded, exactly (0 when empty).
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The exact mean (0 when empty).
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        self.sum as f64 / self.count as f64
    }

    /// The value at percentile `p` (0–100): the highest value of the bucket holding the
    /// ceil(p% × count)-th smallest value, clamped to [min, max]. 0 when empty.
    pub fn percentile(&self, p: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((p.clamp(0.0, 100.0) / 100.0) * self.count as f64).ceil() as u64;
        let rank = rank.clamp(1, self.count);
        let mut seen = 0;
        for (i, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return bucket_high(i).clamp(self.min, self.max);
            }
        }
        self.max
    }

    /// Adds everything `other` recorded.
    pub fn merge(&mut self, other: &Histogram) {
        if other.count == 0 {
            return;
        }
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS];
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        if self.count == 0 || other.min < self.min {
            self.min = other.min;
        }
        self.max = self.max.max(other.max);
        self.count += other.count;
        self.sum += other.sum;
    }
}

/// The bucket of `v`.
fn bucket(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let shift = (63 - v.leading_zeros()) - SUB_BITS;
    ((u64::from(shift) + 1) * SUB + ((v >> shift) - SUB)) as usize
}

/// The smallest value in bucket `i`.
fn bucket_low(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB {
        return i;
    }
    let shift = i / SUB - 1;
    (SUB + i % SUB) << shift
}

/// The largest value in bucket `i`.
fn bucket_high(i: usize) -> u64 {
    let i64_ = i as u64;
    if i64_ < SUB {
        return i64_;
    }
    let shift = i64_ / SUB - 1;
    bucket_low(i).saturating_add((1u64 << shift) - 1)
}

// ---------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------

/// The outcome of a run.
#[derive(Clone, Debug)]
pub struct Report {
    /// The endpoint.
    pub url: String,
    /// Concurrent sessions.
    pub sessions: usize,
    /// What was sent: "tools/call echo", or the method.
    pub label: String,
    /// The warm-up before measuring.
    pub warmup: Duration,
    /// The measured phase: from its start to the last measured response.
    pub elapsed: Duration,
    /// Requests sent in the measured phase (ok + errors).
    pub requests: u64,
    /// Requests answered with a result and the right id.
    pub ok: u64,
    /// Failed requests by kind (`http_<status>`, `jsonrpc_error`, `timeout`, `connect`, `io`,
    /// `bad_response`).
    pub errors: BTreeMap<String, u64>,
    /// Connections opened again in the measured phase (after errors, or the server closing).
    pub reconnects: u64,
    /// Sessions initialized again after a 404 in the measured phase.
    pub reinitialized: u64,
    /// Ok replies that came as `text/event-stream`.
    pub sse_replies: u64,
    /// Latency of ok requests in nanoseconds.
    pub latency: Histogram,
}

/// The percentiles printed and serialised.
const PERCENTILES: [(&str, f64); 4] = [("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p999", 99.9)];

#[derive(Serialize)]
struct JsonReport<'a> {
    url: &'a str,
    sessions: usize,
    duration_s: f64,
    requests: u64,
    ok: u64,
    errors: &'a BTreeMap<String, u64>,
    throughput_rps: f64,
    latency_us: JsonLatency,
    reconnects: u64,
    reinitialized: u64,
    sse_replies: u64,
}

#[derive(Serialize)]
struct JsonLatency {
    min: f64,
    p50: f64,
    p90: f64,
    p99: f64,
    p999: f64,
    max: f64,
    mean: f64,
}

impl Report {
    /// Ok requests per second of the measured phase.
    pub fn throughput(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 { self.ok as f64 / s } else { 0.0 }
    }

    /// All failed requests.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// The `--json` object.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self.json_report()).unwrap_or(Value::Null)
    }

    /// The `--json` object as one line, keys in the documented order.
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(&self.json_report()).unwrap_or_default()
    }

    fn json_report(&self) -> JsonReport<'_> {
        let h = &self.latency;
        let us = |ns: u64| round(ns as f64 / 1e3, 1);
        JsonReport {
            url: &self.url,
            sessions: self.sessions,
            duration_s: round(self.elapsed.as_secs_f64(), 3),
            requests: self.requests,
            ok: self.ok,
            errors: &self.errors,
            throughput_rps: round(self.throughput(), 1),
            latency_us: JsonLatency {
                min: us(h.min()),
                p50: us(h.percentile(50.0)),
                p90: us(h.percentile(90.0)),
                p99: us(h.percentile(99.0)),
                p999: us(h.percentile(99.9)),
                max: us(h.max()),
                mean: round(h.mean() / 1e3, 1),
            },
            reconnects: self.reconnects,
            reinitialized: self.reinitialized,
            sse_replies: self.sse_replies,
        }
    }

    /// The human-readable table.
    pub fn to_table(&self) -> String {
        let mut s = String::new();
        let h = &self.latency;
        let errors = if self.errors.is_empty() {
            "0".to_string()
        } else {
            let kinds: Vec<String> = self
                .errors
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            format!("{}  ({})", self.error_count(), kinds.join(", "))
        };
        let _ = writeln!(s, "shadowcat bench  {}", self.url);
        let _ = writeln!(
            s,
            "  sending        {}, {} session{}",
            self.label,
            self.sessions,
            if self.sessions == 1 { "" } else { "s" }
        );
        let _ = writeln!(
            s,
            "  measured       {:.2} s (after {:.1} s warm-up)",
            self.elapsed.as_secs_f64(),
            self.warmup.as_secs_f64()
        );
        let _ = writeln!(s, "  requests       {}", self.requests);
        let _ = writeln!(s, "  ok             {}", self.ok);
        let _ = writeln!(s, "  errors         {errors}");
        let _ = writeln!(s, "  reconnects     {}", self.reconnects);
        let _ = writeln!(s, "  reinitialized  {}", self.reinitialized);
        let _ = writeln!(s, "  sse replies    {}", self.sse_replies);
        let _ = writeln!(s, "  throughput     {:.1} req/s (ok)", self.throughput());
        let _ = writeln!(s, "  latency of ok requests:");
        let mut names = vec!["min".to_string()];
        let mut values = vec![fmt_ns(h.min() as f64)];
        for (name, p) in PERCENTILES {
            names.push(if name == "p999" {
                "p99.9".into()
            } else {
                name.into()
            });
            values.push(fmt_ns(h.percentile(p) as f64));
        }
        names.extend(["max".to_string(), "mean".to_string()]);
        values.extend([fmt_ns(h.max() as f64), fmt_ns(h.mean())]);
        let row = |cells: &[String]| cells.iter().map(|c| format!("{c:>10}")).collect::<String>();
        let _ = writeln!(s, "  {}", row(&names));
        let _ = writeln!(s, "  {}", row(&values));
        s
    }
}

fn round(v: f64, digits: i32) -> f64 {
    let m = 10f64.powi(digits);
    (v * m).round() / m
}

/// 812ns, 45.3µs, 812µs, 12.34ms, 1.234s.
fn fmt_ns(ns: f64) -> String {
    if ns < 1e3 {
        format!("{ns:.0}ns")
    } else if ns < 1e5 {
        format!("{:.1}µs", ns / 1e3)
    } else if ns < 1e6 {
        format!("{:.0}µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2}ms", ns / 1e6)
    } else {
        format!("{:.3}s", ns / 1e9)
    }
}

// ---------------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------------

/// Where requests go.
#[derive(Debug)]
struct Target {
    /// `host[:port]` as written, for the Host header.
    authority: String,
    /// Path and query.
    path: String,
    /// Resolved addresses, tried in order.
    addrs: Vec<SocketAddr>,
}

impl Target {
    /// Parses `http://host[:port][/path]`, resolves it, and refuses non-loopback addresses unless
    /// `allow_remote`.
    fn parse(url: &str, allow_remote: bool) -> Result<Target, Error> {
        let rest = url
            .get(..7)
            .filter(|s| s.eq_ignore_ascii_case("http://"))
            .map(|_| &url[7..])
            .ok_or_else(|| cfg(format!("--url must be an http:// URL (got {url:?})")))?;
        let rest = rest.split('#').next().unwrap_or("");
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_string()),
        };
        if authority.is_empty() || authority.contains('@') || !header_safe(authority) {
            return Err(cfg(format!("--url {url:?}: bad host")));
        }
        if !header_safe(&path) || path.contains(' ') {
            return Err(cfg(format!("--url {url:?}: bad path")));
        }
        let (host, port) = split_host_port(authority)
            .ok_or_else(|| cfg(format!("--url {url:?}: bad host or port")))?;
        let addrs: Vec<SocketAddr> = (host, port)
            .to_socket_addrs()
            .map_err(|e| cfg(format!("--url: cannot resolve {host}: {e}")))?
            .collect();
        if addrs.is_empty() {
            return Err(cfg(format!("--url: {host} resolves to no address")));
        }
        if !allow_remote && let Some(a) = addrs.iter().find(|a| !a.ip().is_loopback()) {
            let ip = a.ip().to_string();
            let resolved = if ip == host.trim_matches(['[', ']']) {
                String::new()
            } else {
                format!(" (resolves to {ip})")
            };
            return Err(cfg(format!(
                "--url {url}: {host} is not a loopback address{resolved}; \
                     pass --allow-remote to load a remote server"
            )));
        }
        Ok(Target {
            authority: authority.to_string(),
            path,
            addrs,
        })
    }
}

/// `host`, `host:port`, `[v6]`, `[v6]:port` (default port 80).
fn split_host_port(authority: &str) -> Option<(&str, u16)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        match after {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':')?)),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    let port = match port {
        Some(p) => p.parse().ok()?,
        None => 80,
    };
    Some((host, port))
}

/// What every session thread shares.
struct Shared {
    target: Target,
    opts: BenchOptions,
    /// `"method":…,"params":…}`, the request body after the id; `None` with `--progress`
    /// (built per request).
    tail: Option<Vec<u8>>,
    /// `"method":…` alone, for `--progress`.
    method_json: String,
    /// Tickets taken in the measured phase (with `--requests`).
    tickets: AtomicU64,
}

/// The phases, decided once every session is initialized.
#[derive(Clone, Copy, Debug)]
struct Plan {
    measure_start: Instant,
    measure_end: Option<Instant>,
    hard_stop: Option<Instant>,
}

/// What one session measured.
#[derive(Default)]
struct Stats {
    requests: u64,
    ok: u64,
    errors: BTreeMap<String, u64>,
    reconnects: u64,
    reinitialized: u64,
    sse_replies: u64,
    latency: Histogram,
    last_done: Option<Instant>,
}

/// Runs a benchmark as `opts` describe and returns the report. Fails when the options are
/// invalid or the URL is refused ([`Error::Config`]), or when a session cannot initialize.
pub fn bench(opts: &BenchOptions) -> Result<Report, Error> {
    opts.validate()?;
    if let Some(argv) = &opts.pipe {
        return bench_pipe(opts, argv);
    }
    let target = Target::parse(&opts.url, opts.allow_remote)?;
    let (method_json, tail) = request_parts(opts);
    let shared = Arc::new(Shared {
        target,
        opts: opts.clone(),
        tail,
        method_json,
        tickets: AtomicU64::new(0),
    });
    let n = opts.sessions;
    let (ready_tx, ready_rx) = unbounded::<Result<(), Fail>>();
    let (go_tx, go_rx) = bounded::<Plan>(n);
    let mut threads: Vec<JoinHandle<Stats>> = Vec::with_capacity(n);
    for index in 0..n {
        let (sh, ready, go) = (shared.clone(), ready_tx.clone(), go_rx.clone());
        let spawned = thread::Builder::new()
            .name(format!("bench-{index}"))
            .stack_size(256 * 1024)
            .spawn(move || session_thread(index, &sh, ready, go));
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => {
                drop(go_tx);
                join_all(threads);
                return Err(Error::Io(e));
            }
        }
    }
    drop(ready_tx);
    drop(go_rx);
    let mut failures = Vec::new();
    for _ in 0..n {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(f)) => failures.push(f),
            Err(_) => {
                failures.push(Fail::Io("a session thread died".into()));
                break;
            }
        }
    }
    if let Some(first) = failures.first() {
        drop(go_tx);
        join_all(threads);
        let msg = format!(
            "{} of {n} sessions could not initialize; first: {}",
            failures.len(),
            first.describe()
        );
        return Err(match first {
            Fail::Connect(_) => Error::UpstreamUnreachable {
                upstream: opts.url.clone(),
                source: msg.into(),
            },
            _ => Error::Unavailable(format!("{}: {msg}", opts.url)),
        });
    }
    let go = Instant::now();
    let measure_start = go + opts.warmup;
    let measure_end = opts.duration.map(|d| measure_start + d);
    let plan = Plan {
        measure_start,
        measure_end,
        hard_stop: measure_end.map(|e| e + opts.timeout),
    };
    for _ in 0..n {
        let _ = go_tx.send(plan);
    }
    drop(go_tx);
    let mut total = Stats::default();
    let mut panicked = false;
    for t in threads {
        match t.join() {
            Ok(s) => merge_stats(&mut total, s),
            Err(_) => panicked = true,
        }
    }
    if panicked {
        return Err(Error::Internal("a bench session thread panicked".into()));
    }
    let elapsed = total
        .last_done
        .map(|t| t.saturating_duration_since(measure_start))
        .unwrap_or_default();
    Ok(Report {
        url: opts.url.clone(),
        sessions: n,
        label: opts.label(),
        warmup: opts.warmup,
        elapsed,
        requests: total.requests,
        ok: total.ok,
        errors: total.errors,
        reconnects: total.reconnects,
        reinitialized: total.reinitialized,
        sse_replies: total.sse_replies,
        latency: total.latency,
    })
}

/// The method as JSON, and the constant request tail after the id (`None` with `--progress`).
fn request_parts(opts: &BenchOptions) -> (String, Option<Vec<u8>>) {
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
fn build_request(
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

fn join_all(threads: Vec<JoinHandle<Stats>>) {
    for t in threads {
        let _ = t.join();
    }
}

/// One session: initialize, report, wait for the plan, run it, DELETE.
fn session_thread(
    index: usize,
    sh: &Shared,
    ready: Sender<Result<(), Fail>>,
    go: Receiver<Plan>,
) -> Stats {
    let mut c = Client::new(index, sh);
    let init = c.initialize(Instant::now() + sh.opts.timeout);
    let ok = init.is_ok();
    let _ = ready.send(init);
    drop(ready);
    if ok && let Ok(plan) = go.recv() {
        c.run(&plan);
    }
    c.close();
    c.stats
}

/// Why one request failed; [`Fail::kind`] is its key in the error counts.
#[derive(Debug)]
enum Fail {
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
    fn kind(&self) -> Cow<'static, str> {
        match self {
            Fail::Http(s, _) => format!("http_{s}").into(),
            Fail::JsonRpc(_) => "jsonrpc_error".into(),
            Fail::Timeout => "timeout".into(),
            Fail::Connect(_) => "connect".into(),
            Fail::Io(_) => "io".into(),
            Fail::Bad(_) => "bad_response".into(),
        }
    }

    fn describe(&self) -> String {
        match self {
            Fail::Timeout => "timeout".into(),
            Fail::Http(_, d) | Fail::JsonRpc(d) | Fail::Connect(d) | Fail::Io(d) | Fail::Bad(d) => {
                format!("{}: {d}", self.kind())
            }
        }
    }
}

fn bad(why: impl Into<String>) -> Fail {
    Fail::Bad(why.into())
}

/// One session's client state.
struct Client<'a> {
    index: usize,
    sh: &'a Shared,
    conn: Option<Conn>,
    connected_once: bool,
    /// In the measured phase: reconnects and re-initializations are counted.
    measuring: bool,
    session_id: Option<String>,
    version: String,
    next_id: u64,
    /// The JSON-RPC body being sent.
    json: Vec<u8>,
    /// The whole HTTP request being sent.
    req: Vec<u8>,
    /// Response body scratch.
    body: Vec<u8>,
    stats: Stats,
}

/// What the response to one exchange said.
struct Answer {
    status: u16,
    session_id: Option<String>,
    verdict: Verdict,
    sse: bool,
    done_at: Instant,
    close: bool,
    excerpt: String,
}

/// The JSON-RPC side of an answer.
enum Verdict {
    /// Not looked at (a notification, DELETE, or a non-2xx status).
    Unchecked,
    /// A result with the right id (and `protocolVersion` if asked for).
    Result(Option<String>),
    /// An error response with the right id, with its message.
    Error(String),
}

impl<'a> Client<'a> {
    fn new(index: usize, sh: &'a Shared) -> Client<'a> {
        Client {
            index,
            sh,
            conn: None,
            connected_once: false,
            measuring: false,
            session_id: None,
            version: sh.opts.protocol_version.clone(),
            next_id: 1,
            json: Vec::with_capacity(1024),
            req: Vec::with_capacity(2048),
            body: Vec::with_capacity(4096),
            stats: Stats::default(),
        }
    }

    /// POST initialize, then notifications/initialized.
    fn initialize(&mut self, deadline: Instant) -> Result<(), Fail> {
        self.session_id = None;
        self.version = self.sh.opts.protocol_version.clone();
        let params = json!({
            "protocolVersion": self.sh.opts.protocol_version,
            "capabilities": {},
            "clientInfo": {"name": "shadowcat-bench", "version": env!("CARGO_PKG_VERSION")},
        });
        self.json.clear();
        let _ = write!(
            self.json,
            r#"{{"jsonrpc":"2.0","id":0,"method":"initialize","params":{params}}}"#
        );
        let a = self.exchange("POST", true, false, Some(0), true, deadline)?;
        let version = match a.verdict {
            Verdict::Result(v) => v,
            Verdict::Error(e) => return Err(Fail::JsonRpc(format!("initialize: {e}"))),
            Verdict::Unchecked => return Err(Fail::Http(a.status, a.excerpt)),
        };
        if let Some(sid) = &a.session_id
            && !header_safe(sid)
        {
            return Err(bad("mcp-session-id is not a valid header value"));
        }
        self.session_id = a.session_id;
        if let Some(v) = version.filter(|v| header_safe(v)) {
            self.version = v;
        }
        self.json.clear();
        self.json
            .extend_from_slice(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        let a = self.exchange("POST", true, true, None, false, deadline)?;
        if !(200..300).contains(&a.status) {
            return Err(Fail::Http(
                a.status,
                format!("notifications/initialized: {}", a.excerpt),
            ));
        }
        Ok(())
    }

    /// The closed loop.
    fn run(&mut self, plan: &Plan) {
        let timeout = self.sh.opts.timeout;
        loop {
            let now = Instant::now();
            if plan.measure_end.is_some_and(|e| now >= e) {
                break;
            }
            let measuring = now >= plan.measure_start;
            self.measuring = measuring;
            if measuring
                && let Some(n) = self.sh.opts.requests
                && self.sh.tickets.fetch_add(1, Ordering::Relaxed) >= n
            {
                break;
            }
            let mut deadline = now + timeout;
            if let Some(h) = plan.hard_stop {
                deadline = deadline.min(h);
            }
            let id = self.next_id;
            self.next_id += 1;
            self.build_call(id);
            let start = Instant::now();
            match self.call(id, deadline) {
                Ok(a) => {
                    if measuring {
                        self.stats.requests += 1;
                        self.stats.ok += 1;
                        self.stats.sse_replies += u64::from(a.sse);
                        let ns = a.done_at.saturating_duration_since(start).as_nanos();
                        self.stats
                            .latency
                            .record(ns.min(u128::from(u64::MAX)) as u64);
                        self.stats.last_done = Some(a.done_at);
                    }
                }
                Err(f) => {
                    if measuring {
                        self.stats.requests += 1;
                        *self.stats.errors.entry(f.kind().into_owned()).or_insert(0) += 1;
                        self.stats.last_done = Some(Instant::now());
                    }
                    log::debug!("bench session {}: {}", self.index, f.describe());
                    self.recover(&f, plan);
                }
            }
        }
    }

    /// After a failure: re-initialize on 404, back off briefly when the server is unreachable.
    fn recover(&mut self, f: &Fail, plan: &Plan) {
        let now = Instant::now();
        let mut deadline = now + self.sh.opts.timeout;
        if let Some(h) = plan.hard_stop {
            deadline = deadline.min(h);
        }
        match f {
            Fail::Http(404, _) if self.session_id.is_some() => {
                self.stats.reinitialized += u64::from(self.measuring);
                if let Err(e) = self.initialize(deadline) {
                    log::debug!(
                        "bench session {}: re-initialize failed: {}",
                        self.index,
                        e.describe()
                    );
                    pause(deadline);
                }
            }
            Fail::Connect(_) => pause(deadline),
            _ => {}
        }
    }

    /// `{"jsonrpc":"2.0","id":<id>,"method":…,"params":…}` into `self.json`.
    fn build_call(&mut self, id: u64) {
        let sh = self.sh;
        build_request(
            &mut self.json,
            &sh.opts,
            sh.tail.as_deref(),
            &sh.method_json,
            self.index,
            id,
        );
    }

    /// Sends the request in `self.json` and checks its response.
    fn call(&mut self, id: u64, deadline: Instant) -> Result<Answer, Fail> {
        let a = self.exchange("POST", true, true, Some(id), false, deadline)?;
        match a.verdict {
            Verdict::Result(_) => Ok(a),
            Verdict::Error(e) => Err(Fail::JsonRpc(e)),
            Verdict::Unchecked => Err(Fail::Http(a.status, a.excerpt)),
        }
    }

    /// DELETEs the session (best effort) and closes the connection.
    fn close(&mut self) {
        self.measuring = false;
        if self.session_id.is_some() {
            let deadline = Instant::now() + DELETE_TIMEOUT.min(self.sh.opts.timeout);
            if let Err(f) = self.exchange("DELETE", false, true, None, false, deadline) {
                log::debug!("bench session {}: DELETE: {}", self.index, f.describe());
            }
        }
        self.conn = None;
    }

    /// One HTTP exchange on the session's connection, connecting first if needed. The
    /// connection is dropped after any failure and when the server asks to close it.
    fn exchange(
        &mut self,
        method: &str,
        with_body: bool,
        with_session: bool,
        want: Option<u64>,
        want_version: bool,
        deadline: Instant,
    ) -> Result<Answer, Fail> {
        self.build_http(method, with_body, with_session);
        if self.conn.is_none() {
            let c = Conn::connect(&self.sh.target.addrs, deadline, self.sh.opts.timeout)?;
            if self.connected_once && self.measuring {
                self.stats.reconnects += 1;
            }
            self.connected_once = true;
            self.conn = Some(c);
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err(Fail::Io("not connected".into()));
        };
        let result = roundtrip(
            conn,
            &self.req,
            want,
            want_version,
            &mut self.body,
            deadline,
        );
        if !matches!(&result, Ok(a) if !a.close) {
            self.conn = None;
        }
        result
    }

    fn build_http(&mut self, method: &str, with_body: bool, with_session: bool) {
        let t = &self.sh.target;
        self.req.clear();
        let _ = write!(
            self.req,
            "{method} {} HTTP/1.1\r\nHost: {}\r\nAccept: application/json, text/event-stream\r\n\
             User-Agent: shadowcat-bench/{}\r\n",
            t.path,
            t.authority,
            env!("CARGO_PKG_VERSION")
        );
        for (n, v) in &self.sh.opts.headers {
            let _ = write!(self.req, "{n}: {v}\r\n");
        }
        if with_session {
            if let Some(sid) = &self.session_id {
                let _ = write!(self.req, "Mcp-Session-Id: {sid}\r\n");
            }
            let _ = write!(self.req, "MCP-Protocol-Version: {}\r\n", self.version);
        }
        if with_body {
            let _ = write!(
                self.req,
                "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                self.json.len()
            );
            self.req.extend_from_slice(&self.json);
        } else {
            self.req.extend_from_slice(b"\r\n");
        }
    }
}

/// Sleeps a little (at most 50 ms, never past `deadline`), so an unreachable server is not
/// hammered in a tight loop.
fn pause(deadline: Instant) {
    let left = deadline.saturating_duration_since(Instant::now());
    thread::sleep(left.min(Duration::from_millis(50)));
}

// ---------------------------------------------------------------------------------------------
// Minimal HTTP/1.1 client
// ---------------------------------------------------------------------------------------------

/// A keep-alive connection with its read buffer.
struct Conn {
    stream: TcpStream,
    buf: Box<[u8]>,
    pos: usize,
    len: usize,
}

/// A parsed response head.
#[derive(Debug, Default)]
struct Head {
    status: u16,
    content_length: Option<u64>,
    chunked: bool,
    json: bool,
    sse: bool,
    close: bool,
    session_id: Option<String>,
}

/// Where the body reader is.
#[derive(Clone, Copy, Debug)]
enum Body {
    Length(u64),
    Chunked(Chunk),
    ToClose,
    Done,
}

#[derive(Clone, Copy, Debug)]
enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailer,
}

impl Conn {
    fn connect(addrs: &[SocketAddr], deadline: Instant, timeout: Duration) -> Result<Conn, Fail> {
        let mut last = String::from("no address");
        for a in addrs {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Fail::Timeout);
            }
            match TcpStream::connect_timeout(a, left) {
                Ok(stream) => {
                    let setup = stream
                        .set_nodelay(true)
                        .and_then(|_| stream.set_read_timeout(Some(POLL.min(timeout))))
                        .and_then(|_| stream.set_write_timeout(Some(timeout)));
                    if let Err(e) = setup {
                        return Err(Fail::Connect(e.to_string()));
                    }
                    return Ok(Conn {
                        stream,
                        buf: vec![0; BUF].into_boxed_slice(),
                        pos: 0,
                        len: 0,
                    });
                }
                Err(e) => last = format!("{a}: {e}"),
            }
        }
        Err(Fail::Connect(last))
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), Fail> {
        self.stream.write_all(bytes).map_err(|e| match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Fail::Timeout,
            _ => Fail::Io(format!("write: {e}")),
        })
    }

    /// Reads more bytes into the buffer. False at EOF.
    fn fill_or_eof(&mut self, deadline: Instant) -> Result<bool, Fail> {
        if self.pos == self.len {
            self.pos = 0;
            self.len = 0;
        } else if self.len == self.buf.len() {
            if self.pos == 0 {
                return Err(bad("response head or line longer than 64 KiB"));
            }
            self.buf.copy_within(self.pos..self.len, 0);
            self.len -= self.pos;
            self.pos = 0;
        }
        loop {
            if Instant::now() >= deadline {
                return Err(Fail::Timeout);
            }
            match self.stream.read(&mut self.buf[self.len..]) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.len += n;
                    return Ok(true);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(Fail::Io(format!("read: {e}"))),
            }
        }
    }

    fn fill(&mut self, deadline: Instant) -> Result<(), Fail> {
        if self.fill_or_eof(deadline)? {
            Ok(())
        } else {
            Err(Fail::Io("connection closed by the server".into()))
        }
    }

    fn read_head(&mut self, deadline: Instant) -> Result<Head, Fail> {
        loop {
            let avail = &self.buf[self.pos..self.len];
            if let Some(end) = avail.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = parse_head(&avail[..end])?;
                self.pos += end + 4;
                return Ok(head);
            }
            self.fill(deadline)?;
        }
    }

    /// Reads one CRLF- (or LF-) terminated line and hands it to `f` without the terminator.
    fn read_line<T>(&mut self, deadline: Instant, f: impl FnOnce(&[u8]) -> T) -> Result<T, Fail> {
        loop {
            let avail = &self.buf[self.pos..self.len];
            if let Some(i) = avail.iter().position(|&b| b == b'\n') {
                let line = &avail[..i];
                let t = f(line.strip_suffix(b"\r").unwrap_or(line));
                self.pos += i + 1;
                return Ok(t);
            }
            self.fill(deadline)?;
        }
    }

    /// Moves up to `max` body bytes (at least one) into `out`.
    fn take(&mut self, max: u64, out: &mut Vec<u8>, deadline: Instant) -> Result<u64, Fail> {
        if self.pos == self.len {
            self.fill(deadline)?;
        }
        let n = (self.len - self.pos).min(usize::try_from(max).unwrap_or(usize::MAX));
        out.extend_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n as u64)
    }
}

fn parse_head(bytes: &[u8]) -> Result<Head, Fail> {
    let text = String::from_utf8_lossy(bytes);
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(bad(format!("not an HTTP/1.x status line: {status_line:?}")));
    }
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|s| (100..600).contains(s))
        .ok_or_else(|| bad(format!("bad status line: {status_line:?}")))?;
    let mut head = Head {
        status,
        close: version == "HTTP/1.0",
        ..Head::default()
    };
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| bad(format!("bad header line: {line:?}")))?;
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("content-length") {
            let n: u64 = value
                .parse()
                .map_err(|_| bad(format!("bad content-length: {value:?}")))?;
            if head.content_length.is_some_and(|m| m != n) {
                return Err(bad("conflicting content-length"));
            }
            head.content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            let last = value.rsplit(',').next().unwrap_or("").trim();
            if !last.eq_ignore_ascii_case("chunked") {
                return Err(bad(format!("unsupported transfer-encoding: {value:?}")));
            }
            head.chunked = true;
        } else if name.eq_ignore_ascii_case("content-type") {
            let media = value.split(';').next().unwrap_or("").trim();
            head.json = media.eq_ignore_ascii_case("application/json");
            head.sse = media.eq_ignore_ascii_case("text/event-stream");
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    head.close = true;
                } else if token.eq_ignore_ascii_case("keep-alive") && version == "HTTP/1.0" {
                    head.close = false;
                }
            }
        } else if name.eq_ignore_ascii_case("mcp-session-id") {
            head.session_id = Some(value.to_string());
        }
    }
    Ok(head)
}

impl Body {
    fn new(head: &Head) -> Body {
        if (100..200).contains(&head.status) || head.status == 204 || head.status == 304 {
            Body::Done
        } else if head.chunked {
            Body::Chunked(Chunk::Size)
        } else {
            match head.content_length {
                Some(0) => Body::Done,
                Some(n) => Body::Length(n),
                None => Body::ToClose,
            }
        }
    }

    /// Appends some body bytes to `out` (or reads framing). True once the body is complete.
    fn read_some(
        &mut self,
        conn: &mut Conn,
        out: &mut Vec<u8>,
        deadline: Instant,
    ) -> Result<bool, Fail> {
        loop {
            match *self {
                Body::Done => return Ok(true),
                Body::Length(left) => {
                    let n = conn.take(left, out, deadline)?;
                    *self = if n == left {
                        Body::Done
                    } else {
                        Body::Length(left - n)
                    };
                    return Ok(matches!(self, Body::Done));
                }
                Body::ToClose => {
                    if conn.pos == conn.len && !conn.fill_or_eof(deadline)? {
                        *self = Body::Done;
                        return Ok(true);
                    }
                    out.extend_from_slice(&conn.buf[conn.pos..conn.len]);
                    conn.pos = conn.len;
                    return Ok(false);
                }
                Body::Chunked(Chunk::Size) => {
                    let size = conn.read_line(deadline, |l| {
                        let hex = String::from_utf8_lossy(l);
                        let hex = hex.split(';').next().unwrap_or("").trim().to_string();
                        u64::from_str_radix(&hex, 16).ok()
                    })?;
                    *self = match size {
                        Some(0) => Body::Chunked(Chunk::Trailer),
                        Some(n) => Body::Chunked(Chunk::Data(n)),
                        None => return Err(bad("bad chunk size")),
                    };
                }
                Body::Chunked(Chunk::Data(left)) => {
                    let n = conn.take(left, out, deadline)?;
                    *self = Body::Chunked(if n == left {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(left - n)
                    });
                    return Ok(false);
                }
                Body::Chunked(Chunk::DataEnd) => {
                    if !conn.read_line(deadline, |l| l.is_empty())? {
                        return Err(bad("chunk data longer than its size"));
                    }
                    *self = Body::Chunked(Chunk::Size);
                }
                Body::Chunked(Chunk::Trailer) => {
                    if conn.read_line(deadline, |l| l.is_empty())? {
                        *self = Body::Done;
                        return Ok(true);
                    }
                }
            }
        }
    }

    /// Reads the rest of the body into `out`.
    fn read_all(
        &mut self,
        conn: &mut Conn,
        out: &mut Vec<u8>,
        deadline: Instant,
    ) -> Result<(), Fail> {
        while !self.read_some(conn, out, deadline)? {
            if out.len() > MAX_BODY {
                return Err(bad("response body over 64 MiB"));
            }
        }
        Ok(())
    }
}

/// Writes `req`, reads the response, and (with `want`) checks that it answers request `want`.
fn roundtrip(
    conn: &mut Conn,
    req: &[u8],
    want: Option<u64>,
    want_version: bool,
    body: &mut Vec<u8>,
    deadline: Instant,
) -> Result<Answer, Fail> {
    conn.send(req)?;
    let mut head = loop {
        let h = conn.read_head(deadline)?;
        if !(100..200).contains(&h.status) {
            break h;
        }
    };
    let mut state = Body::new(&head);
    body.clear();
    let mut answer = Answer {
        status: head.status,
        session_id: head.session_id.take(),
        verdict: Verdict::Unchecked,
        sse: head.sse,
        done_at: Instant::now(),
        close: head.close || matches!(state, Body::ToClose),
        excerpt: String::new(),
    };
    let ok_status = (200..300).contains(&head.status);
    let want = match want {
        Some(w) if ok_status => w,
        _ => {
            state.read_all(conn, body, deadline)?;
            answer.done_at = Instant::now();
            answer.excerpt = excerpt(body);
            return Ok(answer);
        }
    };
    if head.sse {
        let mut events = SseParser::default();
        loop {
            let finished = state.read_some(conn, body, deadline)?;
            if let Some(v) = events.feed(body, want, want_version) {
                answer.verdict = v;
                answer.done_at = Instant::now();
                if !finished {
                    // The server should end the stream now; if it does not, drop the connection.
                    let grace = deadline.min(answer.done_at + DRAIN_GRACE);
                    loop {
                        body.clear();
                        match state.read_some(conn, body, grace) {
                            Ok(true) => break,
                            Ok(false) => {}
                            Err(_) => {
                                answer.close = true;
                                break;
                            }
                        }
                    }
                }
                return Ok(answer);
            }
            if finished {
                return Err(bad(format!(
                    "event stream ended without the response to request {want}"
                )));
            }
            if body.len() > MAX_BODY {
                return Err(bad("event over 64 MiB"));
            }
        }
    }
    state.read_all(conn, body, deadline)?;
    answer.done_at = Instant::now();
    if !head.json {
        return Err(bad(format!(
            "status {} without a JSON or event-stream body: {}",
            head.status,
            excerpt(body)
        )));
    }
    match check(body, want, want_version) {
        Check::Mine(v) => {
            answer.verdict = v;
            Ok(answer)
        }
        Check::NotMine => Err(bad(format!(
            "reply is not the response to request {want}: {}",
            excerpt(body)
        ))),
        Check::Invalid(e) => Err(bad(format!("{e}: {}", excerpt(body)))),
    }
}

/// The first 200 characters of a body, for error messages.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    text.trim().replace(['\r', '\n'], " ")
}

/// Collects `data:` lines per event and checks each complete event.
#[derive(Default)]
struct SseParser {
    data: Vec<u8>,
    has_data: bool,
}

impl SseParser {
    /// Consumes the complete lines at the start of `body`; returns the verdict once an event
    /// holds the response to `want`. Other events (notifications, server requests, non-JSON)
    /// are skipped.
    fn feed(&mut self, body: &mut Vec<u8>, want: u64, want_version: bool) -> Option<Verdict> {
        let mut start = 0;
        let mut found = None;
        while let Some(i) = body[start..].iter().position(|&b| b == b'\n') {
            let raw = &body[start..start + i];
            let line = raw.strip_suffix(b"\r").unwrap_or(raw);
            start += i + 1;
            if line.is_empty() {
                if self.has_data {
                    let c = check(&self.data, want, want_version);
                    self.data.clear();
                    self.has_data = false;
                    if let Check::Mine(v) = c {
                        found = Some(v);
                        break;
                    }
                }
            } else if let Some(rest) = line.strip_prefix(b"data:") {
                let rest = rest.strip_prefix(b" ").unwrap_or(rest);
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(rest);
                self.has_data = true;
            }
        }
        body.drain(..start);
        found
    }
}

enum Check {
    Mine(Verdict),
    NotMine,
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
fn check(bytes: &[u8], want: u64, want_version: bool) -> Check {
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

// ---------------------------------------------------------------------------------------------
// The direct pipe (--pipe)
// ---------------------------------------------------------------------------------------------

/// How often the pipe watchdog looks at the run.
const WATCH: Duration = Duration::from_millis(20);
/// How long a `--pipe` child may take to exit after its stdin closes before it is killed.
const PIPE_EXIT_GRACE: Duration = Duration::from_secs(2);

/// What the callers of a `--pipe` run share.
struct PipeShared {
    opts: BenchOptions,
    tail: Option<Vec<u8>>,
    method_json: String,
    tickets: AtomicU64,
    /// The child's stdin; `None` once closed.
    stdin: Mutex<Option<ChildStdin>>,
    /// Responses received so far (the initialize one included): the watchdog's sign of life.
    answered: AtomicU64,
    /// Callers still running: while any is, the watchdog watches.
    running: AtomicU64,
    /// Set when the watchdog killed the child.
    killed: AtomicBool,
}

/// Where a caller's response lines come from.
enum Lines {
    /// The only caller reads stdout itself.
    Direct(BufReader<ChildStdout>, Vec<u8>),
    /// Lines routed by the reader thread.
    Routed(Receiver<Vec<u8>>),
}

impl Lines {
    /// The next line (without its newline), or why there is none.
    fn next(&mut self) -> Result<Cow<'_, [u8]>, Fail> {
        let gone = || Fail::Io("the child closed its stdout".into());
        match self {
            Lines::Direct(r, buf) => {
                buf.clear();
                match read_line_bounded(r, buf, MAX_BODY) {
                    Ok(0) => Err(gone()),
                    Ok(_) => Ok(Cow::Borrowed(trim_line(buf))),
                    Err(e) => Err(Fail::Io(format!("read: {e}"))),
                }
            }
            Lines::Routed(rx) => rx.recv().map(Cow::Owned).map_err(|_| gone()),
        }
    }
}

/// The id of a line if it is a JSON-RPC response with an integer id.
fn response_id(line: &[u8]) -> Option<u64> {
    let env: Envelope<'_> = serde_json::from_slice(line).ok()?;
    if env.method.is_some() {
        return None;
    }
    crate::jsonrpc::id_u64(env.id?)
}

/// A `--pipe` run: spawn, initialize, run the callers, stop the child.
fn bench_pipe(opts: &BenchOptions, argv: &[String]) -> Result<Report, Error> {
    let program = argv.first().ok_or_else(|| cfg("--pipe: empty command"))?;
    let label_url = format!("pipe:{}", argv.join(" "));
    let mut process = Command::new(program)
        .args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| cfg(format!("--pipe: cannot start {program:?}: {e}")))?;
    let pid = process.id() as libc::pid_t;
    let (Some(stdin), Some(stdout)) = (process.stdin.take(), process.stdout.take()) else {
        kill_group(pid);
        let _ = process.wait();
        return Err(Error::Internal("child pipes missing".into()));
    };
    let (method_json, tail) = request_parts(opts);
    let sh = Arc::new(PipeShared {
        opts: opts.clone(),
        tail,
        method_json,
        tickets: AtomicU64::new(0),
        stdin: Mutex::new(Some(stdin)),
        answered: AtomicU64::new(0),
        running: AtomicU64::new(1),
        killed: AtomicBool::new(false),
    });
    let (stop_tx, stop_rx) = bounded::<Option<Instant>>(1);
    let watchdog = {
        let sh = sh.clone();
        thread::Builder::new()
            .name("bench-watchdog".into())
            .spawn(move || pipe_watchdog(&sh, pid, &stop_rx))
    };
    let result = match watchdog {
        Ok(w) => {
            let r = pipe_run(&sh, stdout, &stop_tx, &label_url);
            drop(stop_tx);
            let _ = w.join();
            r
        }
        Err(e) => Err(Error::Io(e)),
    };
    // Stop the child: close stdin, give it a moment, then kill its group; always reap.
    drop(sh.stdin.lock().ok().and_then(|mut s| s.take()));
    let until = Instant::now() + PIPE_EXIT_GRACE;
    while !exited(pid) && Instant::now() < until {
        thread::sleep(Duration::from_millis(10));
    }
    kill_group(pid);
    let _ = process.wait();
    result
}

/// Initializes the child, then runs the callers; the reader thread (more than one caller) ends
/// when the child's stdout does.
fn pipe_run(
    sh: &Arc<PipeShared>,
    stdout: ChildStdout,
    stop: &Sender<Option<Instant>>,
    url: &str,
) -> Result<Report, Error> {
    let opts = &sh.opts;
    let n = opts.sessions;
    let mut lines = Lines::Direct(BufReader::with_capacity(BUF, stdout), Vec::new());
    if let Err(f) = pipe_initialize(sh, &mut lines) {
        let f = if sh.killed.load(Ordering::Acquire) {
            Fail::Timeout
        } else {
            f
        };
        return Err(Error::Unavailable(format!(
            "{url}: initialize failed: {}",
            f.describe()
        )));
    }
    // More than one caller: one reader thread routes responses by id (id % n is the caller).
    let mut reader = None;
    let mut sources: Vec<Lines> = Vec::with_capacity(n);
    if n == 1 {
        sources.push(lines);
    } else {
        let Lines::Direct(mut r, mut buf) = lines else {
            unreachable!("initialize reads directly")
        };
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..n).map(|_| unbounded::<Vec<u8>>()).unzip();
        sources.extend(rxs.into_iter().map(Lines::Routed));
        let spawned = thread::Builder::new()
            .name("bench-pipe-reader".into())
            .spawn(move || {
                loop {
                    buf.clear();
                    match read_line_bounded(&mut r, &mut buf, MAX_BODY) {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    let line = trim_line(&buf);
                    if let Some(id) = response_id(line) {
                        let _ = txs[(id % txs.len() as u64) as usize].send(line.to_vec());
                    }
                }
            });
        reader = Some(spawned.map_err(Error::Io)?);
    }
    let go = Instant::now();
    let measure_start = go + opts.warmup;
    let measure_end = opts.duration.map(|d| measure_start + d);
    let plan = Plan {
        measure_start,
        measure_end,
        hard_stop: measure_end.map(|e| e + opts.timeout),
    };
    let _ = stop.send(plan.hard_stop);
    sh.running.store(n as u64, Ordering::Release);
    let mut total = Stats::default();
    let mut panicked = false;
    if n == 1 {
        let src = sources.pop().expect("one source");
        total = pipe_caller(0, 1, sh, src, &plan);
    } else {
        let mut threads = Vec::with_capacity(n);
        for (index, src) in sources.into_iter().enumerate() {
            let mine = sh.clone();
            let spawned = thread::Builder::new()
                .name(format!("bench-{index}"))
                .stack_size(256 * 1024)
                .spawn(move || pipe_caller(index, n, &mine, src, &plan));
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => {
                    // The watchdog ends the others (hard stop, or no answers).
                    sh.running.fetch_sub((n - index) as u64, Ordering::AcqRel);
                    join_all(threads);
                    return Err(Error::Io(e));
                }
            }
        }
        for t in threads {
            match t.join() {
                Ok(s) => merge_stats(&mut total, s),
                Err(_) => panicked = true,
            }
        }
    }
    drop(sh.stdin.lock().ok().and_then(|mut s| s.take()));
    if let Some(r) = reader {
        // The child ends at stdin EOF, or is killed by bench_pipe; either ends its stdout. Do not
        // wait for that here: bench_pipe kills the group after the grace.
        drop(r);
    }
    if panicked {
        return Err(Error::Internal("a bench caller thread panicked".into()));
    }
    let elapsed = total
        .last_done
        .map(|t| t.saturating_duration_since(measure_start))
        .unwrap_or_default();
    Ok(Report {
        url: url.to_string(),
        sessions: n,
        label: opts.label(),
        warmup: opts.warmup,
        elapsed,
        requests: total.requests,
        ok: total.ok,
        errors: total.errors,
        reconnects: 0,
        reinitialized: 0,
        sse_replies: 0,
        latency: total.latency,
    })
}

fn merge_stats(total: &mut Stats, s: Stats) {
    total.requests += s.requests;
    total.ok += s.ok;
    for (k, v) in s.errors {
        *total.errors.entry(k).or_insert(0) += v;
    }
    total.reconnects += s.reconnects;
    total.reinitialized += s.reinitialized;
    total.sse_replies += s.sse_replies;
    total.latency.merge(&s.latency);
    total.last_done = total.last_done.max(s.last_done);
}

/// Writes one line to the child's stdin.
fn pipe_write(sh: &PipeShared, line: &[u8]) -> Result<(), Fail> {
    let mut stdin = sh
        .stdin
        .lock()
        .map_err(|_| Fail::Io("stdin lock poisoned".into()))?;
    let w = stdin
        .as_mut()
        .ok_or_else(|| Fail::Io("stdin closed".into()))?;
    w.write_all(line)
        .map_err(|e| Fail::Io(format!("write: {e}")))
}

/// Reads lines until the response to `want` arrives.
fn pipe_wait(lines: &mut Lines, want: u64, want_version: bool) -> Result<Verdict, Fail> {
    loop {
        let line = lines.next()?;
        match check(&line, want, want_version) {
            Check::Mine(v) => return Ok(v),
            Check::NotMine => {}
            Check::Invalid(e) => log::debug!("bench pipe: skipped a line: {e}"),
        }
    }
}

/// `initialize` (id 0) and `notifications/initialized`.
fn pipe_initialize(sh: &PipeShared, lines: &mut Lines) -> Result<(), Fail> {
    let params = json!({
        "protocolVersion": sh.opts.protocol_version,
        "capabilities": {},
        "clientInfo": {"name": "shadowcat-bench", "version": env!("CARGO_PKG_VERSION")},
    });
    let msg = format!(r#"{{"jsonrpc":"2.0","id":0,"method":"initialize","params":{params}}}"#);
    pipe_write(sh, format!("{msg}\n").as_bytes())?;
    match pipe_wait(lines, 0, true)? {
        Verdict::Result(_) => {}
        Verdict::Error(e) => return Err(Fail::JsonRpc(format!("initialize: {e}"))),
        Verdict::Unchecked => return Err(bad("initialize: no verdict")),
    }
    sh.answered.fetch_add(1, Ordering::AcqRel);
    pipe_write(
        sh,
        b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n",
    )
}

/// One caller's closed loop; its ids are `index + n * k`, k ≥ 1.
fn pipe_caller(index: usize, n: usize, sh: &PipeShared, mut lines: Lines, plan: &Plan) -> Stats {
    let mut stats = Stats::default();
    let mut json = Vec::with_capacity(1024);
    let mut k: u64 = 1;
    loop {
        let now = Instant::now();
        if plan.measure_end.is_some_and(|e| now >= e) {
            break;
        }
        let measuring = now >= plan.measure_start;
        if measuring
            && let Some(limit) = sh.opts.requests
            && sh.tickets.fetch_add(1, Ordering::Relaxed) >= limit
        {
            break;
        }
        let id = index as u64 + n as u64 * k;
        k += 1;
        build_request(
            &mut json,
            &sh.opts,
            sh.tail.as_deref(),
            &sh.method_json,
            index,
            id,
        );
        json.push(b'\n');
        let start = Instant::now();
        let outcome = pipe_write(sh, &json).and_then(|()| pipe_wait(&mut lines, id, false));
        let done_at = Instant::now();
        if outcome.is_ok() {
            sh.answered.fetch_add(1, Ordering::AcqRel);
        }
        let outcome = match outcome {
            Ok(Verdict::Result(_)) => Ok(()),
            Ok(Verdict::Error(e)) => Err(Fail::JsonRpc(e)),
            Ok(Verdict::Unchecked) => Err(bad("no verdict")),
            Err(_) if sh.killed.load(Ordering::Acquire) => Err(Fail::Timeout),
            Err(f) => Err(f),
        };
        let fatal = matches!(outcome, Err(Fail::Io(_) | Fail::Timeout));
        if measuring {
            stats.requests += 1;
            stats.last_done = Some(done_at);
            match outcome {
                Ok(()) => {
                    stats.ok += 1;
                    let ns = done_at.saturating_duration_since(start).as_nanos();
                    stats.latency.record(ns.min(u128::from(u64::MAX)) as u64);
                }
                Err(f) => *stats.errors.entry(f.kind().into_owned()).or_insert(0) += 1,
            }
        }
        if fatal {
            // The child is gone (or killed): nothing more to send.
            break;
        }
    }
    sh.running.fetch_sub(1, Ordering::AcqRel);
    stats
}

/// Kills the child's group when it has not answered for `--timeout` while callers wait, or at
/// the hard stop. Ends when `stop` disconnects.
fn pipe_watchdog(sh: &PipeShared, pid: libc::pid_t, stop: &Receiver<Option<Instant>>) {
    let timeout = sh.opts.timeout;
    let mut hard_stop: Option<Instant> = None;
    let mut seen = sh.answered.load(Ordering::Acquire);
    let mut since = Instant::now();
    loop {
        match stop.recv_timeout(WATCH) {
            Ok(h) => hard_stop = h,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
        }
        let now = Instant::now();
        let answered = sh.answered.load(Ordering::Acquire);
        if answered != seen || sh.running.load(Ordering::Acquire) == 0 {
            seen = answered;
            since = now;
        }
        let stalled = now.saturating_duration_since(since) >= timeout;
        if stalled || hard_stop.is_some_and(|h| now >= h) {
            sh.killed.store(true, Ordering::Release);
            kill_group(pid);
            return;
        }
    }
}

/// SIGKILL to the process group `pid` leads (which exists while the leader is unreaped).
fn kill_group(pid: libc::pid_t) {
    // SAFETY: plain syscall; the group id is our unreaped child's pid, so it cannot be reused.
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
    }
}

/// Has child `pid` exited? Does not reap it.
fn exited(pid: libc::pid_t) -> bool {
    // SAFETY: waitid fills the zeroed siginfo_t; WNOWAIT leaves the child waitable.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let r = libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        );
        r != 0 || info.si_pid() != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Cli, Command};
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;

    fn parse(args: &[&str]) -> Result<BenchOptions, Error> {
        let mut all = vec!["bench"];
        all.extend(args);
        let cli = Cli::from_args(&["shadowcat"], &all).map_err(|e| Error::Config(e.output))?;
        match cli.command {
            Command::Bench(b) => b.into_options(),
            _ => unreachable!(),
        }
    }

    #[test]
    fn histogram_small_values_are_exact() {
        let mut h = Histogram::new();
        for v in 0..128 {
            h.record(v);
        }
        assert_eq!(h.count(), 128);
        assert_eq!(h.min(), 0);
        assert_eq!(h.max(), 127);
        assert_eq!(h.percentile(50.0), 63);
        assert_eq!(h.percentile(100.0), 127);
        assert_eq!(h.percentile(0.0), 0);
        assert!((h.mean() - 63.5).abs() < 1e-9);
    }

    #[test]
    fn histogram_buckets_are_contiguous_and_tight() {
        let mut prev_high = None;
        for i in 0..BUCKETS {
            let (lo, hi) = (bucket_low(i), bucket_high(i));
            assert!(lo <= hi, "bucket {i}");
            if let Some(p) = prev_high {
                assert_eq!(lo, p + 1, "gap before bucket {i}");
            }
            assert_eq!(bucket(lo), i);
            assert_eq!(bucket(hi), i);
            assert!((hi - lo) as f64 <= lo as f64 / 128.0, "bucket {i} too wide");
            prev_high = Some(hi);
        }
        assert_eq!(prev_high, Some(u64::MAX));
        let mut h = Histogram::new();
        h.record(u64::MAX);
        assert_eq!(h.percentile(99.0), u64::MAX);
    }

    #[test]
    fn histogram_percentiles_within_one_percent() {
        // 1 µs .. 100 ms in 1 µs steps, shuffled order does not matter.
        let mut h = Histogram::new();
        let n = 100_000u64;
        for i in (1..=n).rev() {
            h.record(i * 1_000);
        }
        assert_eq!(h.count(), n);
        assert_eq!(h.min(), 1_000);
        assert_eq!(h.max(), n * 1_000);
        assert!((h.mean() - 50_000.5 * 1_000.0).abs() < 1e-3);
        for (p, exact) in [
            (50.0, 50_000_000.0),
            (90.0, 90_000_000.0),
            (99.0, 99_000_000.0),
            (99.9, 99_900_000.0),
            (100.0, 100_000_000.0),
        ] {
            let got = h.percentile(p) as f64;
            assert!(
                (got - exact).abs() / exact < 0.01,
                "p{p}: got {got}, want {exact}"
            );
            assert!(
                got >= exact,
                "p{p} reports the bucket's top: {got} < {exact}"
            );
        }
        // A skewed distribution: 990 fast, 10 slow.
        let mut h = Histogram::new();
        for _ in 0..990 {
            h.record(50_000);
        }
        for _ in 0..10 {
            h.record(5_000_000);
        }
        assert!((h.percentile(99.0) as f64 - 50_000.0).abs() / 50_000.0 < 0.01);
        assert_eq!(h.percentile(99.9), 5_000_000);
    }

    #[test]
    fn histogram_merge_equals_recording_everything() {
        let (mut a, mut b, mut all) = (Histogram::new(), Histogram::new(), Histogram::new());
        for i in 0..10_000u64 {
            let v = i * i % 7_919_993 + 17;
            if i % 3 == 0 { &mut a } else { &mut b }.record(v);
            all.record(v);
        }
        let mut merged = Histogram::new();
        merged.merge(&a);
        merged.merge(&Histogram::new());
        merged.merge(&b);
        assert_eq!(merged, all);
        assert_eq!(merged.percentile(99.9), all.percentile(99.9));
        let empty = Histogram::new();
        assert_eq!(empty.percentile(50.0), 0);
        assert_eq!(empty.mean(), 0.0);
    }

    #[test]
    fn flag_defaults() {
        let o = parse(&[]).unwrap();
        assert_eq!(o.url, "http://127.0.0.1:8080/mcp");
        assert_eq!(o.sessions, 1);
        assert_eq!(o.duration, Some(Duration::from_secs(10)));
        assert_eq!(o.requests, None);
        assert_eq!(o.warmup, Duration::from_secs(1));
        assert_eq!(o.timeout, Duration::from_secs(30));
        assert_eq!(o.method, "tools/call");
        assert_eq!(
            o.params,
            Some(json!({"name": "echo", "arguments": {"message": "hello"}}))
        );
        assert_eq!(o.protocol_version, "2025-11-25");
        assert!(!o.allow_remote && !o.progress);
        assert_eq!(o.label(), "tools/call echo");

        let o = parse(&["--requests", "500", "--warmup", "0"]).unwrap();
        assert_eq!((o.duration, o.requests), (None, Some(500)));
        assert_eq!(o.warmup, Duration::ZERO);
        let o = parse(&["--requests", "5", "--duration", "2s"]).unwrap();
        assert_eq!(
            (o.duration, o.requests),
            (Some(Duration::from_secs(2)), Some(5))
        );
        let o = parse(&["--method", "tools/list"]).unwrap();
        assert_eq!((o.method.as_str(), o.params), ("tools/list", None));
        let o = parse(&["--method", "ping", "--params", "{}", "--progress"]).unwrap();
        assert_eq!(o.params, Some(json!({})));
        let o = parse(&["--tool", "slow_echo", "--args", r#"{"delayMs":5}"#]).unwrap();
        assert_eq!(o.label(), "tools/call slow_echo");
    }

    #[test]
    fn flag_validation() {
        for bad in [
            &["--sessions", "0"][..],
            &["--sessions", "10001"],
            &["--requests", "0"],
            &["--duration", "0s"],
            &["--duration", "ten"],
            &["--timeout", "0"],
            &["--warmup", "-1"],
            &["--method", "ping", "--tool", "echo"],
            &["--method", "ping", "--args", "{}"],
            &["--params", "{}"],
            &["--args", "[1]"],
            &["--args", "{nope"],
            &["--method", "x", "--params", "3"],
            &["--method", "x", "--params", "[1]", "--progress"],
            &["--method", "x", "--params", r#"{"_meta":1}"#, "--progress"],
            &["--protocol-version", "a\r\nb"],
        ] {
            assert!(
                matches!(parse(bad), Err(Error::Config(_))),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn urls_and_loopback() {
        let t = Target::parse("http://127.0.0.1:9/mcp", false).unwrap();
        assert_eq!(
            (t.authority.as_str(), t.path.as_str()),
            ("127.0.0.1:9", "/mcp")
        );
        let t = Target::parse("HTTP://[::1]:8080", false).unwrap();
        assert_eq!((t.authority.as_str(), t.path.as_str()), ("[::1]:8080", "/"));
        let t = Target::parse("http://localhost?x=1", false).unwrap();
        assert_eq!(t.path, "/?x=1");
        assert!(
            t.addrs
                .iter()
                .all(|a| a.ip().is_loopback() && a.port() == 80)
        );
        let e = Target::parse("http://192.0.2.1:8080/mcp", false).unwrap_err();
        assert!(e.to_string().contains("--allow-remote"), "{e}");
        assert!(Target::parse("http://192.0.2.1:8080/mcp", true).is_ok());
        for bad in [
            "https://127.0.0.1/mcp",
            "127.0.0.1:8080/mcp",
            "http:///mcp",
            "http://u@127.0.0.1/",
            "http://127.0.0.1:x/",
            "http://127.0.0.1/a b",
        ] {
            assert!(
                matches!(Target::parse(bad, false), Err(Error::Config(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn sse_parser_finds_the_response_across_pieces() {
        let stream = concat!(
            ": comment\r\n",
            "event: message\r\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",",
            "\"params\":{\"progressToken\":1,\"progress\":1}}\r\n\r\n",
            "id: x\ndata: \n\n",
            "data: {\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"sampling/createMessage\"}\n\n",
            "data: {\"jsonrpc\":\"2.0\",\"id\":6,\"result\":{}}\n\n",
            "data: {\"jsonrpc\":\"2.0\",\n",
            "data: \"id\":7,\"result\":{\"protocolVersion\":\"v\"}}\n\n",
            "data: trailing"
        )
        .as_bytes();
        // Feed it in 5-byte pieces: lines and events straddle the pieces.
        let mut p = SseParser::default();
        let mut body = Vec::new();
        let mut found = None;
        for piece in stream.chunks(5) {
            body.extend_from_slice(piece);
            if let Some(v) = p.feed(&mut body, 7, true) {
                found = Some(v);
                break;
            }
        }
        assert!(matches!(found, Some(Verdict::Result(Some(ref v))) if v == "v"));
        let mut body =
            br#"data: {"jsonrpc":"2.0","id":7,"error":{"code":-32000,"message":"no"}}"#.to_vec();
        body.extend_from_slice(b"\n\n");
        assert!(matches!(
            SseParser::default().feed(&mut body, 7, false),
            Some(Verdict::Error(ref m)) if m == "-32000 no"
        ));
        assert!(body.is_empty());
    }

    /// A tiny keep-alive MCP server for the client side: no session id, JSON for even ids,
    /// chunked SSE split mid-line for odd ids, one 404 for id 3, a JSON-RPC error for id 4.
    fn fake_server() -> (SocketAddr, JoinHandle<Vec<String>>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let t = thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            let mut w = s.try_clone().unwrap();
            let mut r = BufReader::new(s);
            let mut seen = Vec::new();
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    return seen;
                }
                let method = line.split(' ').next().unwrap_or("").to_string();
                let mut len = 0;
                let mut headers = Vec::new();
                loop {
                    let mut h = String::new();
                    r.read_line(&mut h).unwrap();
                    let h = h.trim_end().to_string();
                    if h.is_empty() {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                    headers.push(h);
                }
                let mut body = vec![0; len];
                r.read_exact(&mut body).unwrap();
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let m = v["method"].as_str().unwrap_or("").to_string();
                seen.push(format!("{method} {m}"));
                if m != "initialize" {
                    assert!(
                        headers
                            .iter()
                            .any(|h| h == "MCP-Protocol-Version: 2025-06-18"),
                        "{headers:?}"
                    );
                    assert!(!headers.iter().any(|h| h.starts_with("Mcp-Session-Id")));
                }
                let id = v["id"].as_u64();
                let reply: Vec<u8> = match (m.as_str(), id) {
                    ("initialize", Some(0)) => json_reply(
                        r#"{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-06-18"}}"#,
                    ),
                    (_, None) => b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n".to_vec(),
                    (_, Some(3)) => {
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\ngone".to_vec()
                    }
                    (_, Some(4)) => json_reply(
                        r#"{"jsonrpc":"2.0","id":4,"error":{"code":-32602,"message":"bad"}}"#,
                    ),
                    (_, Some(n)) if n % 2 == 0 => {
                        json_reply(&format!(r#"{{"jsonrpc":"2.0","id":{n},"result":{{}}}}"#))
                    }
                    (_, Some(n)) => {
                        let events = format!(
                            "event: message\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{{}}}}\n\n\
                             data: {{\"jsonrpc\":\"2.0\",\"id\":{n},\"result\":{{}}}}\n\n"
                        );
                        let mut out = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
                                        Transfer-Encoding: chunked\r\n\r\n"
                            .to_vec();
                        for piece in events.as_bytes().chunks(7) {
                            out.extend_from_slice(
                                format!("{:x};ext=1\r\n", piece.len()).as_bytes(),
                            );
                            out.extend_from_slice(piece);
                            out.extend_from_slice(b"\r\n");
                        }
                        out.extend_from_slice(b"0\r\nx-trailer: 1\r\n\r\n");
                        out
                    }
                };
                w.write_all(&reply).unwrap();
            }
        });
        (addr, t)
    }

    fn json_reply(body: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    #[test]
    fn client_handles_json_sse_errors_and_no_session_id() {
        let (addr, server) = fake_server();
        let opts = BenchOptions {
            url: format!("http://{addr}/mcp"),
            duration: None,
            requests: Some(12),
            warmup: Duration::ZERO,
            timeout: Duration::from_secs(5),
            ..BenchOptions::default()
        };
        let r = bench(&opts).unwrap();
        assert_eq!(r.requests, 12);
        assert_eq!(r.ok, 10, "{:?}", r.errors);
        assert_eq!(r.errors.get("http_404"), Some(&1));
        assert_eq!(r.errors.get("jsonrpc_error"), Some(&1));
        // Without a session id a 404 cannot be cured by initializing again.
        assert_eq!(r.reinitialized, 0);
        assert_eq!(r.reconnects, 0);
        assert_eq!(r.sse_replies, 5);
        assert_eq!(r.latency.count(), 10);
        let seen = server.join().unwrap();
        assert_eq!(seen[0], "POST initialize");
        assert_eq!(seen[1], "POST notifications/initialized");
        assert_eq!(seen.len(), 14, "no DELETE without a session: {seen:?}");
        let j = r.to_json();
        let line = r.to_json_line();
        assert!(
            line.starts_with(r#"{"url":"#) && !line.contains('\n'),
            "{line}"
        );
        assert_eq!(serde_json::from_str::<Value>(&line).unwrap(), j);
        for key in ["url", "sessions", "duration_s", "requests", "ok", "errors"] {
            assert!(j.get(key).is_some(), "{key} missing in {j}");
        }
        assert_eq!(j["errors"]["http_404"], 1);
        for key in ["min", "p50", "p90", "p99", "p999", "max", "mean"] {
            assert!(j["latency_us"][key].as_f64().unwrap() > 0.0, "{key}: {j}");
        }
        let table = r.to_table();
        assert!(table.contains("http_404 1"), "{table}");
        assert!(table.contains("p99.9"), "{table}");
    }

    #[test]
    fn refuses_before_connecting() {
        let opts = BenchOptions {
            url: "http://192.0.2.1:9/mcp".into(),
            ..BenchOptions::default()
        };
        assert!(matches!(bench(&opts), Err(Error::Config(_))));
        // Nothing listens: initialize fails with a connect error, quickly.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let opts = BenchOptions {
            url: format!("http://127.0.0.1:{port}/mcp"),
            sessions: 3,
            timeout: Duration::from_secs(2),
            ..BenchOptions::default()
        };
        let e = bench(&opts).unwrap_err();
        assert!(matches!(e, Error::UpstreamUnreachable { .. }), "{e}");
        assert!(e.to_string().contains("3 of 3 sessions"), "{e}");
    }

    #[test]
    fn formats_durations() {
        assert_eq!(fmt_ns(812.0), "812ns");
        assert_eq!(fmt_ns(45_300.0), "45.3µs");
        assert_eq!(fmt_ns(812_000.0), "812µs");
        assert_eq!(fmt_ns(12_340_000.0), "12.34ms");
        assert_eq!(fmt_ns(1_234_000_000.0), "1.234s");
    }

    /// A fake stdio MCP server in Python: answers initialize; before every other answer prints a
    /// notification and a non-JSON line; ids ≡ 3 (mod 7) get a JSON-RPC error; after
    /// `stop_after` calls it stays silent (keeps reading).
    fn fake_child(stop_after: u64) -> Vec<String> {
        let script = format!(
            r#"
import json, sys
n = 0
for line in sys.stdin:
    m = json.loads(line)
    if "id" not in m:
        continue
    if m["method"] == "initialize":
        r = {{"protocolVersion": "2025-11-25", "capabilities": {{}},
              "serverInfo": {{"name": "fake", "version": "1"}}}}
        print(json.dumps({{"jsonrpc": "2.0", "id": m["id"], "result": r}}), flush=True)
        continue
    n += 1
    if n > {stop_after}:
        continue
    print('{{"jsonrpc":"2.0","method":"notifications/message","params":{{}}}}')
    print("not json")
    if m["id"] % 7 == 3:
        out = {{"jsonrpc": "2.0", "id": m["id"], "error": {{"code": -32000, "message": "no"}}}}
    else:
        out = {{"jsonrpc": "2.0", "id": m["id"], "result": m["params"]}}
    print(json.dumps(out), flush=True)
"#
        );
        vec!["python3".into(), "-c".into(), script]
    }

    fn pipe_options(argv: Vec<String>) -> BenchOptions {
        BenchOptions {
            pipe: Some(argv),
            duration: None,
            warmup: Duration::ZERO,
            timeout: Duration::from_secs(10),
            ..BenchOptions::default()
        }
    }

    #[test]
    fn pipe_single_caller_skips_other_lines_and_counts_errors() {
        let opts = BenchOptions {
            requests: Some(50),
            ..pipe_options(fake_child(u64::MAX))
        };
        let r = bench(&opts).expect("pipe bench runs");
        assert!(r.url.starts_with("pipe:python3 -c"), "{}", r.url);
        assert_eq!(r.requests, 50);
        // One caller sends ids 1..=50: 3, 10, 17, 24, 31, 38, 45 fail.
        assert_eq!(r.ok, 43, "{:?}", r.errors);
        assert_eq!(r.errors.get("jsonrpc_error"), Some(&7));
        assert_eq!(r.latency.count(), 43);
        assert_eq!((r.reconnects, r.reinitialized, r.sse_replies), (0, 0, 0));
    }

    #[test]
    fn pipe_multiplexed_callers_get_their_own_responses() {
        let opts = BenchOptions {
            sessions: 4,
            requests: Some(400),
            progress: true,
            ..pipe_options(fake_child(u64::MAX))
        };
        let r = bench(&opts).expect("pipe bench runs");
        assert_eq!(r.requests, 400);
        assert_eq!(
            r.ok + r.errors.get("jsonrpc_error").copied().unwrap_or(0),
            400
        );
        assert!(r.ok > 300, "{:?}", r.errors);
        assert_eq!(r.errors.len(), 1, "{:?}", r.errors);
        assert!(r.throughput() > 0.0);
    }

    #[test]
    fn pipe_silent_child_is_killed_and_bounded() {
        // Never answers initialize.
        let t = Instant::now();
        let opts = BenchOptions {
            timeout: Duration::from_millis(500),
            requests: Some(10),
            ..pipe_options(fake_child(0))
        };
        let opts = BenchOptions {
            pipe: Some(vec![
                "python3".into(),
                "-c".into(),
                "import sys\nfor l in sys.stdin: pass".into(),
            ]),
            ..opts
        };
        let e = bench(&opts).unwrap_err();
        assert!(e.to_string().contains("initialize failed: timeout"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());

        // Answers 5 calls, then goes silent mid-run: the watchdog ends the run.
        let t = Instant::now();
        let opts = BenchOptions {
            sessions: 2,
            duration: Some(Duration::from_secs(30)),
            timeout: Duration::from_secs(2),
            ..pipe_options(fake_child(5))
        };
        let r = bench(&opts).expect("the run itself completes");
        assert_eq!(r.requests, 7, "{r:?}");
        assert!(r.ok >= 4, "{r:?}");
        assert_eq!(r.errors.get("timeout"), Some(&2), "{:?}", r.errors);
        assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());

        // A program that does not exist.
        let opts = pipe_options(vec!["/nonexistent/shadowcat-bench-child".into()]);
        assert!(matches!(bench(&opts), Err(Error::Config(_))));
    }

    #[test]
    fn pipe_flag() {
        let o = parse(&["--pipe", r#"node "/a b/index.js" stdio"#]).unwrap();
        assert_eq!(
            o.pipe,
            Some(vec![
                "node".to_string(),
                "/a b/index.js".into(),
                "stdio".into()
            ])
        );
        assert_eq!(parse(&[]).unwrap().pipe, None);
        for bad in [&["--pipe", ""][..], &["--pipe", "'open"]] {
            assert!(
                matches!(parse(bad), Err(Error::Config(_))),
                "{bad:?} accepted"
            );
        }
    }
}
