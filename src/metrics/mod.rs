//! Prometheus metrics: lock-free counters and histograms, rendered for `GET /metrics` in the
//! Prometheus text exposition format 0.0.4 (serve it with [`CONTENT_TYPE`]).
//!
//! Owns: the counters and histograms ([`Metrics`], here), the text format (`render.rs`), and
//! the operator's view of children and pools ([`ChildInfo`], [`PoolInfo`]) that both `/metrics`
//! and the admin API show. Must not touch: anything else of the crate; every other part may
//! record into it, so it imports nothing of theirs.
//!
//! * **One [`Metrics`] per proxy**, created once and shared as `Arc<Metrics>`. Everything it
//!   stores is a fixed-size array of atomics: recording an event is one to three relaxed atomic
//!   adds, with no lock and no allocation. [`Metrics::request`] (the per-request call) costs
//!   three adds: the `{class,status}` counter, one histogram bucket and the histogram sum.
//! * **Events are pushed, levels are pulled.** Counters and histograms are fed by one call per
//!   event ([`Metrics::request`], [`Metrics::upstream_error`], [`Metrics::rejected`],
//!   [`Metrics::dropped`], [`Metrics::bytes_in`], [`Metrics::bytes_out`] and the r2d2 handler
//!   [`PoolEvents`]). Point-in-time levels (sessions, open streams, children, pool
//!   state) already live elsewhere, so the caller reads them at scrape time into a [`Gauges`]
//!   and passes it to [`Metrics::render`].
//! * **Bounded label sets.** No label value comes from a client: the method class is the
//!   [`MethodClass`] enum (raw method and tool names never become labels), the status is one
//!   of [`STATUSES`] or `"other"`, child indexes are capped at [`MAX_CHILDREN`], and the
//!   upstream name is the operator's configuration, escaped.
//! * **Histograms have buckets**, cumulative in the output, with `_sum` (kept in nanoseconds,
//!   rendered in seconds) and `_count` (the total of the buckets, so `le="+Inf"` always equals
//!   `_count`, even in a scrape racing with updates).
//!
//! Families that do not apply to the upstream kind are left out: the `shadowcat_child_*`
//! families only appear when [`Gauges::children`] is not empty (stdio upstream), the
//! `shadowcat_pool_*` families only when [`Gauges::pool`] is `Some` (HTTP upstream), the
//! `shadowcat_upstream_replica_*` and `shadowcat_member_*` families (`replicas.rs`) only with
//! replicas or a federation, the
//! `shadowcat_tls_*` families (`tls.rs`) only once [`Metrics::serve_tls`] was called. Every other
//! family is always present (with `# HELP` and `# TYPE`, possibly without samples).
//!
//! ```ignore
//! use std::sync::Arc;
//! use std::time::Duration;
//! use crate::metrics::{Gauges, MethodClass, Metrics};
//!
//! let m = Arc::new(Metrics::new("demo"));
//! m.request(MethodClass::of("tools/call", false, false), 200, Duration::from_millis(3));
//! let text = m.render(&Gauges { sessions: 1, ..Gauges::default() });
//! assert!(text.contains("shadowcat_requests_total{class=\"tools/call\",status=\"200\"} 1\n"));
//! ```

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Child indexes at or above this are not recorded nor rendered (`--stdio-children` ≤ 256).
pub const MAX_CHILDREN: usize = 256;

/// The HTTP statuses counted under their own `status` label; any other is counted as `"other"`.
/// These are all the statuses the proxy answers with, plus a few it may in the future.
pub const STATUSES: [u16; 21] = [
    200, 202, 204, 400, 401, 403, 404, 405, 406, 408, 409, 413, 415, 422, 429, 431, 500, 501, 502,
    503, 504,
];
const STATUS_LABELS: [&str; STATUSES.len() + 1] = [
    "200", "202", "204", "400", "401", "403", "404", "405", "406", "408", "409", "413", "415",
    "422", "429", "431", "500", "501", "502", "503", "504", "other",
];
const N_STATUS: usize = STATUS_LABELS.len();

/// Upper bounds of the finite histogram buckets, in nanoseconds (a last `+Inf` bucket follows).
const BOUNDS_NS: [u64; 16] = [
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
    30_000_000_000,
    60_000_000_000,
];
/// The `le` label of each bucket, in seconds.
const BOUND_LABELS: [&str; BOUNDS_NS.len() + 1] = [
    "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1",
    "2.5", "5", "10", "30", "60", "+Inf",
];
const N_BUCKETS: usize = BOUND_LABELS.len();

/// What kind of MCP message (or bare HTTP request) a request was: the bounded `class` label.
///
/// Raw method names never become label values; unknown methods are [`MethodClass::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MethodClass {
    /// `initialize`.
    Initialize,
    /// `tools/call`.
    ToolsCall,
    /// `tools/list`.
    ToolsList,
    /// `resources/read`.
    ResourcesRead,
    /// `resources/list` and `resources/templates/list`.
    ResourcesList,
    /// `resources/subscribe` and `resources/unsubscribe`.
    ResourcesSubscribe,
    /// `prompts/get`.
    PromptsGet,
    /// `prompts/list`.
    PromptsList,
    /// `completion/complete`.
    Completion,
    /// `logging/setLevel`.
    Logging,
    /// `ping`.
    Ping,
    /// `server/discover` (2026-07-28).
    Discover,
    /// Any JSON-RPC notification POSTed by the client (`notifications/*`).
    Notification,
    /// A JSON-RPC response POSTed by the client (to a server-to-client request).
    Response,
    /// An HTTP `GET` on the MCP endpoint (stream open or resume).
    Get,
    /// An HTTP `DELETE` on the MCP endpoint (session end).
    Delete,
    /// A CORS preflight (`OPTIONS` from a browser) on the MCP endpoint, answered or refused.
    Options,
    /// A JSON-RPC request with any other method.
    Other,
    /// A request rejected before it could be classified: bad JSON, wrong content type, body
    /// too large, wrong HTTP method or path, and the like.
    Invalid,
}

impl MethodClass {
    /// Every class, in label order.
    pub const ALL: [MethodClass; 19] = [
        MethodClass::Initialize,
        MethodClass::ToolsCall,
        MethodClass::ToolsList,
        MethodClass::ResourcesRead,
        MethodClass::ResourcesList,
        MethodClass::ResourcesSubscribe,
        MethodClass::PromptsGet,
        MethodClass::PromptsList,
        MethodClass::Completion,
        MethodClass::Logging,
        MethodClass::Ping,
        MethodClass::Discover,
        MethodClass::Notification,
        MethodClass::Response,
        MethodClass::Get,
        MethodClass::Delete,
        MethodClass::Options,
        MethodClass::Other,
        MethodClass::Invalid,
    ];

    /// The class of one POSTed JSON-RPC message. A response (`is_response`) is
    /// [`MethodClass::Response`] and a notification (`is_notification`) is
    /// [`MethodClass::Notification`] whatever their method; a request is classed by its method,
    /// an empty method being [`MethodClass::Invalid`] and an unknown one [`MethodClass::Other`].
    /// HTTP `GET`/`DELETE` and unparseable requests are not JSON-RPC: use
    /// [`MethodClass::Get`], [`MethodClass::Delete`] and [`MethodClass::Invalid`] directly.
    pub fn of(method: &str, is_notification: bool, is_response: bool) -> MethodClass {
        if is_response {
            return MethodClass::Response;
        }
        if is_notification {
            return MethodClass::Notification;
        }
        match method {
            "initialize" => MethodClass::Initialize,
            "tools/call" => MethodClass::ToolsCall,
            "tools/list" => MethodClass::ToolsList,
            "resources/read" => MethodClass::ResourcesRead,
            "resources/list" | "resources/templates/list" => MethodClass::ResourcesList,
            "resources/subscribe" | "resources/unsubscribe" => MethodClass::ResourcesSubscribe,
            "prompts/get" => MethodClass::PromptsGet,
            "prompts/list" => MethodClass::PromptsList,
            "completion/complete" => MethodClass::Completion,
            "logging/setLevel" => MethodClass::Logging,
            "ping" => MethodClass::Ping,
            "server/discover" => MethodClass::Discover,
            "" => MethodClass::Invalid,
            _ => MethodClass::Other,
        }
    }

    /// The `class` label value.
    pub fn label(&self) -> &'static str {
        match self {
            MethodClass::Initialize => "initialize",
            MethodClass::ToolsCall => "tools/call",
            MethodClass::ToolsList => "tools/list",
            MethodClass::ResourcesRead => "resources/read",
            MethodClass::ResourcesList => "resources/list",
            MethodClass::ResourcesSubscribe => "resources/subscribe",
            MethodClass::PromptsGet => "prompts/get",
            MethodClass::PromptsList => "prompts/list",
            MethodClass::Completion => "completion",
            MethodClass::Logging => "logging",
            MethodClass::Ping => "ping",
            MethodClass::Discover => "server/discover",
            MethodClass::Notification => "notification",
            MethodClass::Response => "response",
            MethodClass::Get => "GET",
            MethodClass::Delete => "DELETE",
            MethodClass::Options => "OPTIONS",
            MethodClass::Other => "other",
            MethodClass::Invalid => "invalid",
        }
    }
}

/// Why an upstream exchange failed: the `kind` label of `shadowcat_upstream_errors_total`.
///
/// Suggested mapping from `crate::error::Error`: `Timeout` → [`Timeout`](Self::Timeout);
/// `UpstreamUnreachable` → [`Connect`](Self::Connect); `ChildExited` →
/// [`ChildExit`](Self::ChildExit); `UpstreamProtocol` → [`Protocol`](Self::Protocol);
/// `Unavailable`, `UpstreamBusy` → [`Unavailable`](Self::Unavailable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpstreamErrorKind {
    /// The upstream did not answer within `--request-timeout` (504).
    Timeout,
    /// The HTTP upstream refused, reset or could not be reached (502).
    Connect,
    /// A stdio child exited with the request in flight (502).
    ChildExit,
    /// The upstream answered something that is not valid MCP (502).
    Protocol,
    /// No upstream capacity: no live stdio child, or no HTTP pool slot in time (503).
    Unavailable,
}

impl UpstreamErrorKind {
    /// Every kind, in label order.
    pub const ALL: [UpstreamErrorKind; 5] = [
        UpstreamErrorKind::Timeout,
        UpstreamErrorKind::Connect,
        UpstreamErrorKind::ChildExit,
        UpstreamErrorKind::Protocol,
        UpstreamErrorKind::Unavailable,
    ];

    /// The `kind` label value.
    pub fn label(&self) -> &'static str {
        match self {
            UpstreamErrorKind::Timeout => "timeout",
            UpstreamErrorKind::Connect => "connect",
            UpstreamErrorKind::ChildExit => "child_exit",
            UpstreamErrorKind::Protocol => "protocol",
            UpstreamErrorKind::Unavailable => "unavailable",
        }
    }
}

/// Which limit turned a request or connection away: the `reason` label of
/// `shadowcat_rejected_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rejection {
    /// Body over `--max-body` (413).
    Body,
    /// `--max-sessions` live sessions, none expired (503).
    Sessions,
    /// `--max-streams` SSE responses open (503).
    Streams,
    /// A rate limit (429).
    Rate,
    /// Authentication refused: no or bad bearer token, or a missing scope (401/403).
    Auth,
    /// `--max-connections` client connections open (503 and close).
    Connections,
    /// `--max-sessions-per-client` sessions held by the client (429).
    SessionQuota,
    /// `--max-streams-per-client` streams open for the client (429).
    StreamQuota,
    /// `--input-max-per-client` bridged calls of the client wait for its input (429).
    InputQuota,
    /// The bridge keeps as many calls waiting for input as it may (503).
    InputPending,
    /// Every capable bridge session serves a running call (503).
    BridgeSessions,
}

impl Rejection {
    /// Every reason, in label order.
    pub const ALL: [Rejection; 11] = [
        Rejection::Body,
        Rejection::Sessions,
        Rejection::Streams,
        Rejection::Rate,
        Rejection::Auth,
        Rejection::Connections,
        Rejection::SessionQuota,
        Rejection::StreamQuota,
        Rejection::InputQuota,
        Rejection::InputPending,
        Rejection::BridgeSessions,
    ];

    /// The `reason` label value.
    pub fn label(&self) -> &'static str {
        match self {
            Rejection::Body => "body",
            Rejection::Sessions => "sessions",
            Rejection::Streams => "streams",
            Rejection::Rate => "rate",
            Rejection::Auth => "auth",
            Rejection::Connections => "connections",
            Rejection::SessionQuota => "session_quota",
            Rejection::StreamQuota => "stream_quota",
            Rejection::InputQuota => "input_quota",
            Rejection::InputPending => "input_pending",
            Rejection::BridgeSessions => "bridge_sessions",
        }
    }
}

/// Why a message on its way to a client was dropped: the `reason` label of
/// `shadowcat_dropped_messages_total`. A fixed enum, never client text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The client did not keep up: a call's queue of progress, logs and other messages already
    /// held `--max-call-buffer` bytes (the final response is never dropped).
    SlowClient,
    /// A shared stdio child's message that no request or session provably owns (several
    /// sessions' or stateless calls in flight, or none): never delivered to a guess.
    Unattributed,
    /// A `notifications/message` below the level its session asked for with
    /// `logging/setLevel` (the child runs at the lowest level any of its sessions asked for).
    BelowLogLevel,
    /// A shared stdio child's server-to-client request for a capability the client of the
    /// call it belongs to did not declare (or that no client with a call in flight declared):
    /// answered to the child with -32601, never routed to another client.
    MissingCapability,
}

impl DropReason {
    /// Every reason, in label order.
    pub const ALL: [DropReason; 4] = [
        DropReason::SlowClient,
        DropReason::Unattributed,
        DropReason::BelowLogLevel,
        DropReason::MissingCapability,
    ];

    /// The `reason` label value.
    pub fn label(&self) -> &'static str {
        match self {
            DropReason::SlowClient => "slow_client",
            DropReason::Unattributed => "unattributed",
            DropReason::BelowLogLevel => "below_log_level",
            DropReason::MissingCapability => "missing_capability",
        }
    }
}

/// Why a line meant for a tape or the audit log was not written: the `reason` label of
/// `shadowcat_tape_dropped_total` and `shadowcat_audit_dropped_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogDrop {
    /// The writer thread was behind: its queue held its byte budget (the request went on).
    Behind,
    /// Writing failed (disk full, file removed, …).
    Io,
    /// The message was not JSON, so it could not be redacted (tapes only).
    Invalid,
}

impl LogDrop {
    /// Every reason, in label order.
    pub const ALL: [LogDrop; 3] = [LogDrop::Behind, LogDrop::Io, LogDrop::Invalid];

    /// The `reason` label value.
    pub fn label(&self) -> &'static str {
        match self {
            LogDrop::Behind => "behind",
            LogDrop::Io => "io",
            LogDrop::Invalid => "invalid",
        }
    }
}

/// How a `tools/call` came out: the `outcome` label of `shadowcat_tool_calls_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ToolOutcome {
    /// A result.
    Ok,
    /// A result with `isError: true`.
    ToolError,
    /// A JSON-RPC error (the upstream's or the proxy's, refusals included).
    Error,
}

impl ToolOutcome {
    /// Every outcome, in label order.
    pub const ALL: [ToolOutcome; 3] = [ToolOutcome::Ok, ToolOutcome::ToolError, ToolOutcome::Error];

    /// The `outcome` label value.
    pub fn label(&self) -> &'static str {
        match self {
            ToolOutcome::Ok => "ok",
            ToolOutcome::ToolError => "tool_error",
            ToolOutcome::Error => "error",
        }
    }
}

/// Distinct tool names `shadowcat_tool_calls_total` labels; every other is `other`.
pub const MAX_TOOLS: usize = 64;
/// A tool name longer than this is counted as `other`.
pub const MAX_TOOL_NAME: usize = 128;

/// The `tool` label's table: the first [`MAX_TOOLS`] distinct names of tools that answered a
/// call with a result (a name only a client made up never gets a label of its own), each
/// with a counter per outcome; the last row is `other`.
struct ToolTable {
    names: std::sync::RwLock<std::collections::HashMap<Box<str>, usize>>,
    counts: [[AtomicU64; ToolOutcome::ALL.len()]; MAX_TOOLS + 1],
}

impl ToolTable {
    fn new() -> ToolTable {
        ToolTable {
            names: std::sync::RwLock::new(std::collections::HashMap::new()),
            counts: [const { [const { AtomicU64::new(0) }; ToolOutcome::ALL.len()] };
                MAX_TOOLS + 1],
        }
    }

    fn row(&self, tool: Option<&str>, outcome: ToolOutcome) -> usize {
        let Some(tool) = tool.filter(|t| t.len() <= MAX_TOOL_NAME) else {
            return MAX_TOOLS;
        };
        let known = self
            .names
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(tool)
            .copied();
        match known {
            Some(i) => i,
            None if outcome == ToolOutcome::Ok => {
                let mut names = self.names.write().unwrap_or_else(|p| p.into_inner());
                let next = names.len();
                if next >= MAX_TOOLS {
                    return MAX_TOOLS;
                }
                *names.entry(tool.into()).or_insert(next)
            }
            None => MAX_TOOLS,
        }
    }

    /// The named rows in the order they were added.
    fn named(&self) -> Vec<(String, usize)> {
        let names = self.names.read().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<(String, usize)> = names.iter().map(|(k, &i)| (k.to_string(), i)).collect();
        v.sort_by_key(|&(_, i)| i);
        v
    }
}

/// Point-in-time levels read by the caller at scrape time and passed to [`Metrics::render`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gauges {
    /// Live MCP sessions.
    pub sessions: usize,
    /// SSE responses open now.
    pub streams: usize,
    /// Client TCP connections open now.
    pub connections: usize,
    /// Bytes held in SSE replay (resumption) buffers.
    pub replay_bytes: usize,
    /// Clients (principals or IPs) the rate limiter tracks (0 with no limit configured).
    pub rate_limit_keys: usize,
    /// Bridged 2026-07-28 calls waiting for their client's `inputResponses`.
    pub bridge_waiting: usize,
    /// Capable bridge sessions serving a running call or idle (at most 16 but for retried
    /// calls; those of waiting calls not counted).
    pub bridge_sessions: usize,
    /// One entry per stdio child slot (empty for an HTTP upstream: no child families).
    pub children: Vec<ChildInfo>,
    /// The HTTP upstream's r2d2 pool (`None` for a stdio upstream: no pool families).
    pub pool: Option<PoolInfo>,
    /// `--limits-store` only: requests whose rate limits were decided without the store
    /// (unreachable Redis; `None`: no store, no family).
    pub limits_store_fallbacks: Option<u64>,
    /// Shared stdio children only: the tools whose calls are exclusive (`None`: no family).
    pub exclusive: Option<ExclusiveInfo>,
    /// Upstreams with replicas (the one upstream, or federation members): the
    /// `shadowcat_upstream_replica_*` families (`replicas.rs`; none when empty).
    pub replicas: Vec<ReplicaSetInfo>,
    /// A federation's members: the `shadowcat_member_*` families (none when empty).
    pub members: Vec<MemberInfo>,
}

/// The tools whose calls run alone on a shared stdio child whoever calls them: the admin API
/// lists them, `/metrics` counts them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExclusiveInfo {
    /// `--stdio-learn-exclusive`: whether more are learned.
    pub learning: bool,
    /// `--stdio-exclusive-tools`.
    pub configured: Vec<String>,
    /// Learned from the children, in the order learned.
    pub learned: Vec<String>,
    /// Tools seen logging during a call alone on its child, not (yet) learned.
    pub candidates: usize,
    /// Tools not learned or not watched because a bound was reached.
    pub full: u64,
}

/// Why a call ran alone on its shared stdio child: the `cause` label of
/// `shadowcat_stdio_exclusive_calls_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExclusiveCause {
    /// Its client declared `sampling`, `elicitation` or `roots`, or asked for logs.
    Client,
    /// It called a configured or learned exclusive tool.
    Tool,
}

impl ExclusiveCause {
    /// Every cause, in label order.
    pub const ALL: [ExclusiveCause; 2] = [ExclusiveCause::Client, ExclusiveCause::Tool];

    /// The `cause` label value.
    pub fn label(&self) -> &'static str {
        match self {
            ExclusiveCause::Client => "client",
            ExclusiveCause::Tool => "tool",
        }
    }
}

/// What an operator sees of one stdio child: the admin API lists it, `/metrics` renders it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChildInfo {
    /// Slot (shared) or child number (per-session): the `child` label, rendered only below
    /// [`MAX_CHILDREN`].
    pub index: usize,
    /// Process id; `None` while the slot waits for a restart.
    pub pid: Option<u32>,
    /// Alive and initialized.
    pub up: bool,
    /// Since spawn.
    pub age: Duration,
    /// Restarts of this slot after crashes.
    pub restarts: u64,
    /// Sessions pinned to it.
    pub sessions: usize,
    /// Requests forwarded to it and not yet answered.
    pub inflight: usize,
    /// Why it last went down, if it did.
    pub last_error: Option<String>,
}

/// What an operator sees of an HTTP upstream's slot pool (r2d2's `state()` and `max_size()`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolInfo {
    /// Slots that exist (each holds at most one TCP connection), idle or checked out.
    pub connections: u32,
    /// Slots not checked out.
    pub idle: u32,
    /// The pool's maximum size (`--upstream-pool`).
    pub max: u32,
}

/// A latency histogram: one atomic per bucket (not cumulative) and the sum in nanoseconds.
struct Histogram {
    buckets: [AtomicU64; N_BUCKETS],
    sum_ns: AtomicU64,
}

impl Histogram {
    const fn new() -> Histogram {
        Histogram {
            buckets: [const { AtomicU64::new(0) }; N_BUCKETS],
            sum_ns: AtomicU64::new(0),
        }
    }

    /// Two relaxed atomic adds.
    #[inline]
    fn observe(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let i = BOUNDS_NS.partition_point(|&b| b < ns);
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(ns, Relaxed);
    }

    /// Cumulative bucket counts (the last one is `_count`) and the sum in nanoseconds.
    fn snapshot(&self) -> ([u64; N_BUCKETS], u64) {
        let mut cumulative = [0u64; N_BUCKETS];
        let mut total = 0u64;
        for (c, b) in cumulative.iter_mut().zip(&self.buckets) {
            total = total.wrapping_add(b.load(Relaxed));
            *c = total;
        }
        (cumulative, self.sum_ns.load(Relaxed))
    }
}

/// One fault rule's series: its name (escaped), its action and its hits.
type FaultRow = (String, &'static str, AtomicU64);

/// All of shadowcat's counters and histograms. Create once, share as `Arc<Metrics>`.
pub struct Metrics {
    /// The upstream's name, already escaped as a label value.
    upstream: String,
    requests: [[AtomicU64; N_STATUS]; MethodClass::ALL.len()],
    durations: [Histogram; MethodClass::ALL.len()],
    upstream_errors: [AtomicU64; UpstreamErrorKind::ALL.len()],
    rejected: [AtomicU64; Rejection::ALL.len()],
    dropped: [AtomicU64; DropReason::ALL.len()],
    tape_dropped: [AtomicU64; LogDrop::ALL.len()],
    audit_dropped: [AtomicU64; LogDrop::ALL.len()],
    tool_calls: ToolTable,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    pool_checkout_wait: Histogram,
    pool_checkout_timeouts: AtomicU64,
    pool_opened: AtomicU64,
    pool_closed: AtomicU64,
    sessions_evicted: AtomicU64,
    exclusive_calls: [AtomicU64; ExclusiveCause::ALL.len()],
    /// Requests naming a session of another instance (issue #17).
    foreign_sessions: AtomicU64,
    /// `shadowcat_config_reloads_total{result="ok|refused"}`.
    config_reloads: [AtomicU64; 2],
    tls: tls::TlsHandshakes,
    /// `shadowcat_fault_hits_total`: each fault rule's name, action and hits (set once at
    /// start, only when rules are configured).
    fault_hits: std::sync::OnceLock<Box<[FaultRow]>>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("upstream", &self.upstream)
            .finish_non_exhaustive()
    }
}

impl Metrics {
    /// All counters at zero. `upstream` (the upstream's name, e.g. `127.0.0.1:3001` or the
    /// stdio command's name) is the constant `upstream` label of the request histogram.
    pub fn new(upstream: &str) -> Metrics {
        Metrics {
            upstream: escape_label(upstream),
            requests: [const { [const { AtomicU64::new(0) }; N_STATUS] }; MethodClass::ALL.len()],
            durations: [const { Histogram::new() }; MethodClass::ALL.len()],
            upstream_errors: [const { AtomicU64::new(0) }; UpstreamErrorKind::ALL.len()],
            rejected: [const { AtomicU64::new(0) }; Rejection::ALL.len()],
            dropped: [const { AtomicU64::new(0) }; DropReason::ALL.len()],
            tape_dropped: [const { AtomicU64::new(0) }; LogDrop::ALL.len()],
            audit_dropped: [const { AtomicU64::new(0) }; LogDrop::ALL.len()],
            tool_calls: ToolTable::new(),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            pool_checkout_wait: Histogram::new(),
            pool_checkout_timeouts: AtomicU64::new(0),
            pool_opened: AtomicU64::new(0),
            pool_closed: AtomicU64::new(0),
            sessions_evicted: AtomicU64::new(0),
            exclusive_calls: [const { AtomicU64::new(0) }; ExclusiveCause::ALL.len()],
            foreign_sessions: AtomicU64::new(0),
            config_reloads: [const { AtomicU64::new(0) }; 2],
            tls: tls::TlsHandshakes::new(),
            fault_hits: std::sync::OnceLock::new(),
        }
    }

    /// The fault rules, `(name, action)` in order: `shadowcat_fault_hits_total` gets one
    /// series each. Once; later calls change nothing.
    pub fn fault_rules(&self, rules: Vec<(String, &'static str)>) {
        let rows = rules
            .into_iter()
            .map(|(name, action)| (escape_label(&name), action, AtomicU64::new(0)))
            .collect();
        let _ = self.fault_hits.set(rows);
    }

    /// Fault rule `index` acted on a request.
    #[inline]
    pub fn fault_hit(&self, index: usize) {
        if let Some(row) = self.fault_hits.get().and_then(|r| r.get(index)) {
            row.2.fetch_add(1, Relaxed);
        }
    }

    /// One finished request: its class, the HTTP status the client got (a status outside
    /// [`STATUSES`] counts as `"other"`) and the time from the request head being read to the
    /// response being complete (for an SSE response: the end of the stream). Three relaxed
    /// atomic adds.
    #[inline]
    pub fn request(&self, class: MethodClass, status: u16, elapsed: Duration) {
        let s = STATUSES
            .iter()
            .position(|&x| x == status)
            .unwrap_or(STATUSES.len());
        self.requests[class as usize][s].fetch_add(1, Relaxed);
        self.durations[class as usize].observe(elapsed);
    }

    /// One failed upstream exchange.
    #[inline]
    pub fn upstream_error(&self, kind: UpstreamErrorKind) {
        self.upstream_errors[kind as usize].fetch_add(1, Relaxed);
    }

    /// One request or connection turned away by a limit.
    #[inline]
    pub fn rejected(&self, why: Rejection) {
        self.rejected[why as usize].fetch_add(1, Relaxed);
    }

    /// A per-session stdio child's idle session ended to make room for a new one.
    #[inline]
    pub fn session_evicted(&self) {
        self.sessions_evicted.fetch_add(1, Relaxed);
    }

    /// A call that runs alone on its shared stdio child, and why.
    #[inline]
    pub fn exclusive_call(&self, cause: ExclusiveCause) {
        self.exclusive_calls[cause as usize].fetch_add(1, Relaxed);
    }

    /// A request named a session of another instance (`--instance-id`): answered 404.
    #[inline]
    pub fn foreign_session(&self) {
        self.foreign_sessions.fetch_add(1, Relaxed);
    }

    /// A config reload (`SIGHUP`, `POST /admin/reload`) applied (`ok`) or refused.
    pub fn config_reload(&self, ok: bool) {
        self.config_reloads[usize::from(!ok)].fetch_add(1, Relaxed);
    }

    /// `n` messages dropped on their way to a client, for `why`.
    #[inline]
    pub fn dropped(&self, why: DropReason, n: u64) {
        self.dropped[why as usize].fetch_add(n, Relaxed);
    }

    /// `n` tape lines not written, for `why`.
    #[inline]
    pub fn tape_dropped(&self, why: LogDrop, n: u64) {
        self.tape_dropped[why as usize].fetch_add(n, Relaxed);
    }

    /// `n` audit lines not written, for `why`.
    #[inline]
    pub fn audit_dropped(&self, why: LogDrop, n: u64) {
        self.audit_dropped[why as usize].fetch_add(n, Relaxed);
    }

    /// Tape lines dropped so far, all reasons.
    pub fn tape_dropped_total(&self) -> u64 {
        self.tape_dropped.iter().map(|a| a.load(Relaxed)).sum()
    }

    /// One finished `tools/call` of `tool` (`None`: not named). A read lock and a lookup;
    /// a write lock the first time a tool answers with a result.
    pub fn tool_call(&self, tool: Option<&str>, outcome: ToolOutcome) {
        let row = self.tool_calls.row(tool, outcome);
        self.tool_calls.counts[row][outcome as usize].fetch_add(1, Relaxed);
    }

    /// `n` bytes read from a client (request heads and bodies).
    #[inline]
    pub fn bytes_in(&self, n: u64) {
        self.bytes_in.fetch_add(n, Relaxed);
    }

    /// `n` bytes written to a client (response heads, bodies and stream events).
    #[inline]
    pub fn bytes_out(&self, n: u64) {
        self.bytes_out.fetch_add(n, Relaxed);
    }
}

/// The r2d2 event handler feeding the pool families: install with
/// `Pool::builder().event_handler(Box::new(PoolEvents(metrics.clone())))`.
///
/// A checkout (`get`/`get_timeout`; r2d2's `try_get` reports no event) records its wait in
/// `shadowcat_pool_checkout_wait_seconds`, a timed-out one counts in
/// `shadowcat_pool_checkout_timeouts_total`; acquired and released connections count in
/// `shadowcat_pool_connections_{opened,closed}_total`.
#[derive(Debug, Clone)]
pub struct PoolEvents(pub Arc<Metrics>);

impl r2d2::HandleEvent for PoolEvents {
    fn handle_acquire(&self, _event: r2d2::event::AcquireEvent) {
        self.0.pool_opened.fetch_add(1, Relaxed);
    }

    fn handle_release(&self, _event: r2d2::event::ReleaseEvent) {
        self.0.pool_closed.fetch_add(1, Relaxed);
    }

    fn handle_checkout(&self, event: r2d2::event::CheckoutEvent) {
        self.0.pool_checkout_wait.observe(event.duration());
    }

    fn handle_timeout(&self, _event: r2d2::event::TimeoutEvent) {
        self.0.pool_checkout_timeouts.fetch_add(1, Relaxed);
    }
}

mod render;
mod replicas;
mod text;
mod tls;

pub use replicas::{MemberInfo, ReplicaInfo, ReplicaSetInfo};
pub use text::escape_label;
pub use tls::TlsOutcome;

#[cfg(test)]
mod tests;
