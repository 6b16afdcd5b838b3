//! Prometheus metrics: lock-free counters and histograms, rendered for `GET /metrics` in the
//! Prometheus text exposition format 0.0.4 (serve it with [`CONTENT_TYPE`]).
//!
//! * **One [`Metrics`] per proxy**, created once and shared as `Arc<Metrics>`. Everything it
//!   stores is a fixed-size array of atomics: recording an event is one to three relaxed atomic
//!   adds, with no lock and no allocation. [`Metrics::request`] (the per-request call) costs
//!   three adds: the `{class,status}` counter, one histogram bucket and the histogram sum.
//! * **Events are pushed, levels are pulled.** Counters and histograms are fed by one call per
//!   event ([`Metrics::request`], [`Metrics::upstream_error`], [`Metrics::rejected`],
//!   [`Metrics::bytes_in`], [`Metrics::bytes_out`] and the r2d2 handler [`PoolEvents`]). Point-in-time levels (sessions, open streams, children, pool
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
//! `shadowcat_pool_*` families only when [`Gauges::pool`] is `Some` (HTTP upstream). Every other
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

use std::fmt::{self, Write as _};
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
    /// A JSON-RPC request with any other method.
    Other,
    /// A request rejected before it could be classified: bad JSON, wrong content type, body
    /// too large, wrong HTTP method or path, and the like.
    Invalid,
}

impl MethodClass {
    /// Every class, in label order.
    pub const ALL: [MethodClass; 18] = [
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
}

impl Rejection {
    /// Every reason, in label order.
    pub const ALL: [Rejection; 6] = [
        Rejection::Body,
        Rejection::Sessions,
        Rejection::Streams,
        Rejection::Rate,
        Rejection::Auth,
        Rejection::Connections,
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
        }
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
    /// One entry per stdio child slot (empty for an HTTP upstream: no child families).
    pub children: Vec<ChildInfo>,
    /// The HTTP upstream's r2d2 pool (`None` for a stdio upstream: no pool families).
    pub pool: Option<PoolInfo>,
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

/// All of shadowcat's counters and histograms. Create once, share as `Arc<Metrics>`.
pub struct Metrics {
    /// The upstream's name, already escaped as a label value.
    upstream: String,
    requests: [[AtomicU64; N_STATUS]; MethodClass::ALL.len()],
    durations: [Histogram; MethodClass::ALL.len()],
    upstream_errors: [AtomicU64; UpstreamErrorKind::ALL.len()],
    rejected: [AtomicU64; Rejection::ALL.len()],
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    pool_checkout_wait: Histogram,
    pool_checkout_timeouts: AtomicU64,
    pool_opened: AtomicU64,
    pool_closed: AtomicU64,
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
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            pool_checkout_wait: Histogram::new(),
            pool_checkout_timeouts: AtomicU64::new(0),
            pool_opened: AtomicU64::new(0),
            pool_closed: AtomicU64::new(0),
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

    /// Renders every family in the Prometheus text format 0.0.4, with the point-in-time
    /// gauges `g`. Allocates; meant for the scrape, not the request path.
    pub fn render(&self, g: &Gauges) -> String {
        let mut out = String::with_capacity(16 * 1024);
        let w = &mut out;

        family(
            w,
            "shadowcat_build_info",
            "gauge",
            "Build information; the value is always 1.",
        );
        line(
            w,
            format_args!(
                "shadowcat_build_info{{version=\"{}\"}} 1",
                escape_label(env!("CARGO_PKG_VERSION"))
            ),
        );

        family(
            w,
            "shadowcat_requests_total",
            "counter",
            "Finished client requests by MCP method class and HTTP status code \
             (status \"other\" for codes outside the fixed table). Only non-zero series are shown.",
        );
        for class in MethodClass::ALL {
            for (s, status) in STATUS_LABELS.iter().enumerate() {
                let n = self.requests[class as usize][s].load(Relaxed);
                if n > 0 {
                    line(
                        w,
                        format_args!(
                            "shadowcat_requests_total{{class=\"{}\",status=\"{status}\"}} {n}",
                            class.label()
                        ),
                    );
                }
            }
        }

        family(
            w,
            "shadowcat_request_duration_seconds",
            "histogram",
            "Time in seconds from a request's head being read to its response being complete \
             (SSE: the end of the stream), by upstream and MCP method class. \
             Only classes seen at least once are shown.",
        );
        for class in MethodClass::ALL {
            let h = &self.durations[class as usize];
            let labels = format!("upstream=\"{}\",class=\"{}\"", self.upstream, class.label());
            histogram(w, "shadowcat_request_duration_seconds", &labels, h, true);
        }

        family(
            w,
            "shadowcat_upstream_errors_total",
            "counter",
            "Failed upstream exchanges by kind: timeout (request timeout passed), connect \
             (HTTP upstream refused, reset or unreachable), child_exit (stdio child exited with \
             the request in flight), protocol (invalid answer), unavailable (no live child or \
             no pool slot).",
        );
        for kind in UpstreamErrorKind::ALL {
            let n = self.upstream_errors[kind as usize].load(Relaxed);
            line(
                w,
                format_args!(
                    "shadowcat_upstream_errors_total{{kind=\"{}\"}} {n}",
                    kind.label()
                ),
            );
        }

        family(
            w,
            "shadowcat_rejected_total",
            "counter",
            "Requests or connections turned away by a limit: body (--max-body), sessions \
             (--max-sessions), streams (--max-streams), rate (rate limit), connections \
             (--max-connections).",
        );
        for why in Rejection::ALL {
            let n = self.rejected[why as usize].load(Relaxed);
            line(
                w,
                format_args!("shadowcat_rejected_total{{reason=\"{}\"}} {n}", why.label()),
            );
        }

        gauge(
            w,
            "shadowcat_sessions",
            "Live MCP sessions.",
            g.sessions as u64,
        );
        gauge(
            w,
            "shadowcat_streams_open",
            "SSE responses open now.",
            g.streams as u64,
        );
        gauge(
            w,
            "shadowcat_connections_open",
            "Client TCP connections open now.",
            g.connections as u64,
        );
        gauge(
            w,
            "shadowcat_replay_buffer_bytes",
            "Bytes held in SSE replay buffers for stream resumption.",
            g.replay_bytes as u64,
        );
        gauge(
            w,
            "shadowcat_rate_limit_keys",
            "Clients (principals or IPs) the rate limiter tracks; at most --rate-limit-keys.",
            g.rate_limit_keys as u64,
        );

        counter(
            w,
            "shadowcat_bytes_received_total",
            "Bytes read from clients (request heads and bodies).",
            self.bytes_in.load(Relaxed),
        );
        counter(
            w,
            "shadowcat_bytes_sent_total",
            "Bytes written to clients (response heads, bodies and stream events).",
            self.bytes_out.load(Relaxed),
        );

        if !g.children.is_empty() {
            self.render_children(w, &g.children);
        }
        if let Some(pool) = &g.pool {
            self.render_pool(w, pool);
        }
        out
    }

    fn render_children(&self, w: &mut String, children: &[ChildInfo]) {
        let mut kids: Vec<&ChildInfo> =
            children.iter().filter(|c| c.index < MAX_CHILDREN).collect();
        kids.sort_by_key(|c| c.index);
        kids.dedup_by_key(|c| c.index);

        family(
            w,
            "shadowcat_child_up",
            "gauge",
            "1 if a live process serves the stdio child slot, else 0.",
        );
        for c in &kids {
            let up = u8::from(c.up);
            line(
                w,
                format_args!("shadowcat_child_up{{child=\"{}\"}} {up}", c.index),
            );
        }
        family(
            w,
            "shadowcat_child_restarts_total",
            "counter",
            "Restarts of the stdio child slot since the proxy started.",
        );
        for c in &kids {
            let n = c.restarts;
            line(
                w,
                format_args!(
                    "shadowcat_child_restarts_total{{child=\"{}\"}} {n}",
                    c.index
                ),
            );
        }
        family(
            w,
            "shadowcat_child_inflight",
            "gauge",
            "Requests forwarded to the stdio child slot and not yet answered.",
        );
        for c in &kids {
            line(
                w,
                format_args!(
                    "shadowcat_child_inflight{{child=\"{}\"}} {}",
                    c.index, c.inflight
                ),
            );
        }
        family(
            w,
            "shadowcat_child_sessions",
            "gauge",
            "Sessions pinned to the stdio child slot.",
        );
        for c in &kids {
            line(
                w,
                format_args!(
                    "shadowcat_child_sessions{{child=\"{}\"}} {}",
                    c.index, c.sessions
                ),
            );
        }
    }

    fn render_pool(&self, w: &mut String, pool: &PoolInfo) {
        gauge(
            w,
            "shadowcat_pool_connections",
            "Upstream pool connections (slots) that exist, idle or checked out.",
            u64::from(pool.connections),
        );
        gauge(
            w,
            "shadowcat_pool_idle_connections",
            "Upstream pool connections (slots) idle in the pool.",
            u64::from(pool.idle),
        );
        gauge(
            w,
            "shadowcat_pool_max_connections",
            "Maximum upstream pool connections (--upstream-pool).",
            u64::from(pool.max),
        );
        family(
            w,
            "shadowcat_pool_checkout_wait_seconds",
            "histogram",
            "Time in seconds a successful upstream pool checkout waited for a connection.",
        );
        histogram(
            w,
            "shadowcat_pool_checkout_wait_seconds",
            "",
            &self.pool_checkout_wait,
            false,
        );
        counter(
            w,
            "shadowcat_pool_checkout_timeouts_total",
            "Upstream pool checkouts that gave up waiting for a connection (client got 503).",
            self.pool_checkout_timeouts.load(Relaxed),
        );
        counter(
            w,
            "shadowcat_pool_connections_opened_total",
            "Upstream pool connections (slots) created.",
            self.pool_opened.load(Relaxed),
        );
        counter(
            w,
            "shadowcat_pool_connections_closed_total",
            "Upstream pool connections (slots) dropped (broken, poisoned, or the pool closed).",
            self.pool_closed.load(Relaxed),
        );
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

/// Escapes a label value: backslash, double quote and line feed.
pub fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for ch in v.chars() {
        match ch {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// Escapes HELP text: backslash and line feed.
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

fn line(w: &mut String, args: fmt::Arguments<'_>) {
    // Writing into a String cannot fail.
    let _ = w.write_fmt(args);
    w.push('\n');
}

fn family(w: &mut String, name: &str, kind: &str, help: &str) {
    line(w, format_args!("# HELP {name} {}", escape_help(help)));
    line(w, format_args!("# TYPE {name} {kind}"));
}

fn gauge(w: &mut String, name: &str, help: &str, v: u64) {
    family(w, name, "gauge", help);
    line(w, format_args!("{name} {v}"));
}

fn counter(w: &mut String, name: &str, help: &str, v: u64) {
    family(w, name, "counter", help);
    line(w, format_args!("{name} {v}"));
}

/// The sample lines of one histogram series; `labels` without braces, possibly empty. With
/// `skip_empty`, a series that never observed anything is left out.
fn histogram(w: &mut String, name: &str, labels: &str, h: &Histogram, skip_empty: bool) {
    let (cumulative, sum_ns) = h.snapshot();
    let count = cumulative[N_BUCKETS - 1];
    if skip_empty && count == 0 {
        return;
    }
    let sep = if labels.is_empty() { "" } else { "," };
    for (le, n) in BOUND_LABELS.iter().zip(cumulative) {
        line(
            w,
            format_args!("{name}_bucket{{{labels}{sep}le=\"{le}\"}} {n}"),
        );
    }
    let braced = if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    };
    line(w, format_args!("{name}_sum{braced} {}", Seconds(sum_ns)));
    line(w, format_args!("{name}_count{braced} {count}"));
}

/// Nanoseconds displayed as exact decimal seconds (`1.5`, `0.002`, `0`).
struct Seconds(u64);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (secs, nanos) = (self.0 / 1_000_000_000, self.0 % 1_000_000_000);
        if nanos == 0 {
            return write!(f, "{secs}");
        }
        let frac = format!("{nanos:09}");
        write!(f, "{secs}.{}", frac.trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn lines(text: &str) -> Vec<&str> {
        text.lines().collect()
    }

    fn has(text: &str, want: &str) {
        assert!(
            text.lines().any(|l| l == want),
            "missing line {want:?} in:\n{text}"
        );
    }

    fn has_not(text: &str, prefix: &str) {
        assert!(
            !text.lines().any(|l| l.starts_with(prefix)),
            "unexpected {prefix:?} in:\n{text}"
        );
    }

    /// Known traffic with every kind of event, for the exact and structural tests.
    fn sample() -> (Metrics, Gauges) {
        let m = Metrics::new("demo \"server\"");
        m.request(MethodClass::ToolsCall, 200, Duration::from_micros(300)); // ≤ 0.0005
        m.request(MethodClass::ToolsCall, 200, ms(3)); // ≤ 0.005
        m.request(MethodClass::ToolsCall, 504, ms(60_000)); // ≤ 60 (bound inclusive)
        m.request(MethodClass::ToolsCall, 502, ms(61_000)); // +Inf
        m.request(MethodClass::Initialize, 200, ms(1)); // ≤ 0.001 exactly
        m.request(MethodClass::Invalid, 418, ms(2)); // status "other"
        m.request(MethodClass::Notification, 202, Duration::ZERO);
        m.upstream_error(UpstreamErrorKind::Timeout);
        m.upstream_error(UpstreamErrorKind::ChildExit);
        m.upstream_error(UpstreamErrorKind::ChildExit);
        m.rejected(Rejection::Body);
        m.rejected(Rejection::Rate);
        m.bytes_in(1000);
        m.bytes_in(24);
        m.bytes_out(4096);
        let g = Gauges {
            sessions: 3,
            streams: 2,
            connections: 5,
            replay_bytes: 12345,
            rate_limit_keys: 7,
            children: vec![
                ChildInfo {
                    index: 1,
                    up: false,
                    inflight: 0,
                    sessions: 1,
                    restarts: 2,
                    ..ChildInfo::default()
                },
                ChildInfo {
                    index: 0,
                    up: true,
                    inflight: 4,
                    sessions: 2,
                    restarts: 3,
                    ..ChildInfo::default()
                },
                ChildInfo {
                    index: MAX_CHILDREN,
                    ..ChildInfo::default()
                },
            ],
            pool: Some(PoolInfo {
                connections: 3,
                idle: 1,
                max: 32,
            }),
        };
        (m, g)
    }

    #[test]
    fn exact_lines_after_known_traffic() {
        let (m, g) = sample();
        let text = m.render(&g);
        let version = env!("CARGO_PKG_VERSION");
        has(
            &text,
            &format!("shadowcat_build_info{{version=\"{version}\"}} 1"),
        );
        has(
            &text,
            "shadowcat_requests_total{class=\"tools/call\",status=\"200\"} 2",
        );
        has(
            &text,
            "shadowcat_requests_total{class=\"tools/call\",status=\"504\"} 1",
        );
        has(
            &text,
            "shadowcat_requests_total{class=\"tools/call\",status=\"502\"} 1",
        );
        has(
            &text,
            "shadowcat_requests_total{class=\"invalid\",status=\"other\"} 1",
        );
        has(
            &text,
            "shadowcat_requests_total{class=\"notification\",status=\"202\"} 1",
        );
        has_not(&text, "shadowcat_requests_total{class=\"ping\"");

        // tools/call: 0.3 ms, 3 ms, 60 s, 61 s — cumulative buckets.
        let l = "upstream=\"demo \\\"server\\\"\",class=\"tools/call\"";
        let want = [
            ("0.0005", 1),
            ("0.001", 1),
            ("0.0025", 1),
            ("0.005", 2),
            ("0.01", 2),
            ("0.025", 2),
            ("0.05", 2),
            ("0.1", 2),
            ("0.25", 2),
            ("0.5", 2),
            ("1", 2),
            ("2.5", 2),
            ("5", 2),
            ("10", 2),
            ("30", 2),
            ("60", 3),
            ("+Inf", 4),
        ];
        let got: Vec<&str> = lines(&text)
            .into_iter()
            .filter(|x| x.starts_with(&format!("shadowcat_request_duration_seconds_bucket{{{l},")))
            .collect();
        let expect: Vec<String> = want
            .iter()
            .map(|(le, n)| {
                format!("shadowcat_request_duration_seconds_bucket{{{l},le=\"{le}\"}} {n}")
            })
            .collect();
        assert_eq!(got, expect);
        has(
            &text,
            &format!("shadowcat_request_duration_seconds_sum{{{l}}} 121.0033"),
        );
        has(
            &text,
            &format!("shadowcat_request_duration_seconds_count{{{l}}} 4"),
        );
        // The bound is inclusive: exactly 1 ms is in le="0.001".
        let i = "upstream=\"demo \\\"server\\\"\",class=\"initialize\"";
        has(
            &text,
            &format!("shadowcat_request_duration_seconds_bucket{{{i},le=\"0.0005\"}} 0"),
        );
        has(
            &text,
            &format!("shadowcat_request_duration_seconds_bucket{{{i},le=\"0.001\"}} 1"),
        );
        has(
            &text,
            &format!("shadowcat_request_duration_seconds_sum{{{i}}} 0.001"),
        );
        let n = "upstream=\"demo \\\"server\\\"\",class=\"notification\"";
        has(
            &text,
            &format!("shadowcat_request_duration_seconds_sum{{{n}}} 0"),
        );
        has_not(
            &text,
            "shadowcat_request_duration_seconds_bucket{upstream=\"demo \\\"server\\\"\",class=\"ping\"",
        );

        has(&text, "shadowcat_upstream_errors_total{kind=\"timeout\"} 1");
        has(&text, "shadowcat_upstream_errors_total{kind=\"connect\"} 0");
        has(
            &text,
            "shadowcat_upstream_errors_total{kind=\"child_exit\"} 2",
        );
        has(
            &text,
            "shadowcat_upstream_errors_total{kind=\"protocol\"} 0",
        );
        has(&text, "shadowcat_rejected_total{reason=\"body\"} 1");
        has(&text, "shadowcat_rejected_total{reason=\"rate\"} 1");
        has(&text, "shadowcat_rejected_total{reason=\"sessions\"} 0");
        has(&text, "shadowcat_sessions 3");
        has(&text, "shadowcat_streams_open 2");
        has(&text, "shadowcat_connections_open 5");
        has(&text, "shadowcat_replay_buffer_bytes 12345");
        has(&text, "shadowcat_rate_limit_keys 7");
        has(&text, "shadowcat_bytes_received_total 1024");
        has(&text, "shadowcat_bytes_sent_total 4096");

        // Children sorted by index; restarts = max(events, gauge); index 256 dropped.
        let kids: Vec<&str> = lines(&text)
            .into_iter()
            .filter(|x| x.starts_with("shadowcat_child_"))
            .collect();
        assert_eq!(
            kids,
            [
                "shadowcat_child_up{child=\"0\"} 1",
                "shadowcat_child_up{child=\"1\"} 0",
                "shadowcat_child_restarts_total{child=\"0\"} 3",
                "shadowcat_child_restarts_total{child=\"1\"} 2",
                "shadowcat_child_inflight{child=\"0\"} 4",
                "shadowcat_child_inflight{child=\"1\"} 0",
                "shadowcat_child_sessions{child=\"0\"} 2",
                "shadowcat_child_sessions{child=\"1\"} 1",
            ]
        );

        has(&text, "shadowcat_pool_connections 3");
        has(&text, "shadowcat_pool_idle_connections 1");
        has(&text, "shadowcat_pool_max_connections 32");
        has(
            &text,
            "shadowcat_pool_checkout_wait_seconds_bucket{le=\"+Inf\"} 0",
        );
        has(&text, "shadowcat_pool_checkout_wait_seconds_sum 0");
        has(&text, "shadowcat_pool_checkout_wait_seconds_count 0");
        has(&text, "shadowcat_pool_checkout_timeouts_total 0");
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn help_and_type_lines() {
        let (m, g) = sample();
        let text = m.render(&g);
        has(&text, "# TYPE shadowcat_request_duration_seconds histogram");
        has(&text, "# TYPE shadowcat_requests_total counter");
        has(&text, "# TYPE shadowcat_sessions gauge");
        has(
            &text,
            "# TYPE shadowcat_pool_checkout_wait_seconds histogram",
        );
        has(&text, "# HELP shadowcat_sessions Live MCP sessions.");
        // Units are spelled out in the HELP of every time and size family.
        for l in text.lines().filter(|l| l.starts_with("# HELP ")) {
            let name = l.split(' ').nth(2).unwrap();
            if name.ends_with("_seconds") {
                assert!(l.contains("seconds"), "{l}");
            }
            if name.contains("bytes") {
                assert!(l.contains("Bytes"), "{l}");
            }
        }
    }

    #[test]
    fn pool_events_feed_the_pool_families() {
        let m = Arc::new(Metrics::new("up"));
        let ev = PoolEvents(m.clone());
        assert!(format!("{ev:?}").contains("PoolEvents"));
        // r2d2's event types have private fields: drive a real pool to get them.
        #[derive(Debug)]
        struct Nothing;
        impl r2d2::ManageConnection for Nothing {
            type Connection = ();
            type Error = std::io::Error;
            fn connect(&self) -> Result<(), std::io::Error> {
                Ok(())
            }
            fn is_valid(&self, _: &mut ()) -> Result<(), std::io::Error> {
                Ok(())
            }
            fn has_broken(&self, _: &mut ()) -> bool {
                false
            }
        }
        let pool = r2d2::Pool::builder()
            .max_size(1)
            .min_idle(Some(0))
            .connection_timeout(ms(50))
            .event_handler(Box::new(ev.clone()))
            .build_unchecked(Nothing);
        let held = pool.get().unwrap();
        assert!(pool.get_timeout(ms(20)).is_err());
        drop(held);
        let _again = pool.get().unwrap();
        let state = pool.state();
        let text = m.render(&Gauges {
            pool: Some(PoolInfo {
                connections: state.connections,
                idle: state.idle_connections,
                max: pool.max_size(),
            }),
            ..Gauges::default()
        });
        has(&text, "shadowcat_pool_checkout_wait_seconds_count 2");
        has(&text, "shadowcat_pool_checkout_timeouts_total 1");
        has(&text, "shadowcat_pool_connections_opened_total 1");
        has(&text, "shadowcat_pool_connections 1");
        has(&text, "shadowcat_pool_idle_connections 0");
        has(&text, "shadowcat_pool_max_connections 1");
    }

    #[test]
    fn upstream_kind_specific_families_are_omitted() {
        let m = Metrics::new("x");
        let text = m.render(&Gauges::default());
        has_not(&text, "# HELP shadowcat_child_");
        has_not(&text, "# HELP shadowcat_pool_");
        has(&text, "# TYPE shadowcat_requests_total counter");
        has(&text, "# TYPE shadowcat_request_duration_seconds histogram");
        has_not(&text, "shadowcat_request_duration_seconds_bucket");
        has(&text, "shadowcat_sessions 0");
        strict_parse(&text);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape_label("line\nbreak"), "line\\nbreak");
        assert_eq!(escape_label("plain/ü"), "plain/ü");
        assert_eq!(escape_help("a\\b\nc \"q\""), "a\\\\b\\nc \"q\"");
        let m = Metrics::new("we\\ird\"\nname");
        m.request(MethodClass::Ping, 200, ms(1));
        let text = m.render(&Gauges::default());
        has(
            &text,
            "shadowcat_request_duration_seconds_count{upstream=\"we\\\\ird\\\"\\nname\",class=\"ping\"} 1",
        );
        let parsed = strict_parse(&text);
        let count = parsed
            .samples
            .iter()
            .find(|s| s.name == "shadowcat_request_duration_seconds_count")
            .unwrap();
        assert_eq!(
            count.labels[0],
            ("upstream".into(), "we\\ird\"\nname".into())
        );
    }

    #[test]
    fn method_class_mapping() {
        let cases = [
            ("initialize", MethodClass::Initialize),
            ("tools/call", MethodClass::ToolsCall),
            ("tools/list", MethodClass::ToolsList),
            ("resources/read", MethodClass::ResourcesRead),
            ("resources/list", MethodClass::ResourcesList),
            ("resources/templates/list", MethodClass::ResourcesList),
            ("resources/subscribe", MethodClass::ResourcesSubscribe),
            ("resources/unsubscribe", MethodClass::ResourcesSubscribe),
            ("prompts/get", MethodClass::PromptsGet),
            ("prompts/list", MethodClass::PromptsList),
            ("completion/complete", MethodClass::Completion),
            ("logging/setLevel", MethodClass::Logging),
            ("ping", MethodClass::Ping),
            ("server/discover", MethodClass::Discover),
            ("", MethodClass::Invalid),
            ("tools/evil\"name", MethodClass::Other),
            ("notifications/initialized", MethodClass::Other), // with an id: a request
            ("Initialize", MethodClass::Other),
        ];
        for (method, want) in cases {
            assert_eq!(MethodClass::of(method, false, false), want, "{method:?}");
        }
        assert_eq!(
            MethodClass::of("notifications/initialized", true, false),
            MethodClass::Notification
        );
        assert_eq!(
            MethodClass::of("tools/call", true, false),
            MethodClass::Notification
        );
        assert_eq!(MethodClass::of("", false, true), MethodClass::Response);
        assert_eq!(
            MethodClass::of("whatever", true, true),
            MethodClass::Response
        );
        // Labels are distinct, and ALL is in discriminant order (used as array index).
        let labels: HashSet<&str> = MethodClass::ALL.iter().map(|c| c.label()).collect();
        assert_eq!(labels.len(), MethodClass::ALL.len());
        for (i, c) in MethodClass::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i);
        }
        for (i, k) in UpstreamErrorKind::ALL.iter().enumerate() {
            assert_eq!(*k as usize, i);
        }
        for (i, r) in Rejection::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
    }

    #[test]
    fn tables_agree() {
        for (s, l) in STATUSES.iter().zip(STATUS_LABELS) {
            assert_eq!(s.to_string(), l);
        }
        assert_eq!(STATUS_LABELS[STATUSES.len()], "other");
        for (ns, l) in BOUNDS_NS.iter().zip(BOUND_LABELS) {
            assert_eq!(Seconds(*ns).to_string(), l);
        }
        assert!(BOUNDS_NS.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(Seconds(0).to_string(), "0");
        assert_eq!(Seconds(1_500_000_000).to_string(), "1.5");
        assert_eq!(Seconds(1).to_string(), "0.000000001");
        assert_eq!(Seconds(u64::MAX).to_string(), "18446744073.709551615");
    }

    #[test]
    fn concurrent_updates_add_up() {
        let m = Arc::new(Metrics::new("x"));
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for i in 0..1000u64 {
                        m.request(MethodClass::ToolsCall, 200, Duration::from_micros(i * t));
                        m.bytes_in(1);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let text = m.render(&Gauges::default());
        has(
            &text,
            "shadowcat_requests_total{class=\"tools/call\",status=\"200\"} 8000",
        );
        has(
            &text,
            "shadowcat_request_duration_seconds_bucket{upstream=\"x\",class=\"tools/call\",le=\"+Inf\"} 8000",
        );
        has(&text, "shadowcat_bytes_received_total 8000");
        strict_parse(&text);
    }

    #[test]
    fn rendered_text_passes_the_strict_parser() {
        let (m, g) = sample();
        let parsed = strict_parse(&m.render(&g));
        let want_types = [
            ("shadowcat_build_info", "gauge"),
            ("shadowcat_requests_total", "counter"),
            ("shadowcat_request_duration_seconds", "histogram"),
            ("shadowcat_upstream_errors_total", "counter"),
            ("shadowcat_rejected_total", "counter"),
            ("shadowcat_sessions", "gauge"),
            ("shadowcat_streams_open", "gauge"),
            ("shadowcat_connections_open", "gauge"),
            ("shadowcat_replay_buffer_bytes", "gauge"),
            ("shadowcat_rate_limit_keys", "gauge"),
            ("shadowcat_bytes_received_total", "counter"),
            ("shadowcat_bytes_sent_total", "counter"),
            ("shadowcat_child_up", "gauge"),
            ("shadowcat_child_restarts_total", "counter"),
            ("shadowcat_child_inflight", "gauge"),
            ("shadowcat_child_sessions", "gauge"),
            ("shadowcat_pool_connections", "gauge"),
            ("shadowcat_pool_idle_connections", "gauge"),
            ("shadowcat_pool_max_connections", "gauge"),
            ("shadowcat_pool_checkout_wait_seconds", "histogram"),
            ("shadowcat_pool_checkout_timeouts_total", "counter"),
            ("shadowcat_pool_connections_opened_total", "counter"),
            ("shadowcat_pool_connections_closed_total", "counter"),
        ];
        let got: Vec<(&str, &str)> = parsed
            .families
            .iter()
            .map(|(n, t)| (n.as_str(), t.as_str()))
            .collect();
        assert_eq!(got, want_types);
    }

    /// Writes a rendered sample for checking with the real Python parser:
    /// `SHADOWCAT_METRICS_SAMPLE=/tmp/sample.txt cargo test --lib metrics::tests::dump_sample
    /// -- --ignored`, then `python -c "from prometheus_client.parser import ..."`.
    #[test]
    #[ignore]
    fn dump_sample() {
        let (m, g) = sample();
        let path = std::env::var("SHADOWCAT_METRICS_SAMPLE")
            .unwrap_or_else(|_| "target/metrics-sample.txt".into());
        std::fs::write(&path, m.render(&g)).unwrap();
        println!("wrote {path}");
    }

    // ---- A strict little parser for the text format 0.0.4 ----

    #[derive(Debug)]
    struct Sample {
        name: String,
        labels: Vec<(String, String)>,
        value: f64,
    }

    #[derive(Debug, Default)]
    struct Parsed {
        /// (name, type) in order of appearance.
        families: Vec<(String, String)>,
        samples: Vec<Sample>,
    }

    fn is_name(s: &str, colon: bool) -> bool {
        let mut chars = s.chars();
        let ok_first = |c: char| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':');
        matches!(chars.next(), Some(c) if ok_first(c))
            && chars.all(|c| ok_first(c) || c.is_ascii_digit())
    }

    /// Parses `name{k="v",…} value` exactly (no timestamp, single spaces).
    fn parse_sample(l: &str) -> Sample {
        let (series, value) = l
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {l}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {l}")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series, Vec::new()),
            Some((name, rest)) => {
                let body = rest
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("unclosed labels: {l}"));
                (name, parse_labels(body, l))
            }
        };
        assert!(is_name(name, true), "bad metric name in {l}");
        Sample {
            name: name.to_owned(),
            labels,
            value,
        }
    }

    fn parse_labels(body: &str, l: &str) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        let mut rest = body;
        while !rest.is_empty() {
            let (key, after) = rest
                .split_once("=\"")
                .unwrap_or_else(|| panic!("bad label in {l}"));
            assert!(is_name(key, false), "bad label name {key:?} in {l}");
            assert!(!key.starts_with("__"), "reserved label in {l}");
            assert!(out.iter().all(|(k, _)| k != key), "duplicate label in {l}");
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, '\\')) => value.push('\\'),
                        Some((_, '"')) => value.push('"'),
                        Some((_, 'n')) => value.push('\n'),
                        _ => panic!("bad escape in {l}"),
                    },
                    Some((i, '"')) => break i,
                    Some((_, '\n')) => panic!("raw newline in {l}"),
                    Some((_, c)) => value.push(c),
                    None => panic!("unterminated label value in {l}"),
                }
            };
            out.push((key.to_owned(), value));
            rest = &after[end + 1..];
            if let Some(r) = rest.strip_prefix(',') {
                rest = r;
                assert!(!rest.is_empty(), "trailing comma in {l}");
            } else {
                assert!(rest.is_empty(), "junk after label in {l}");
            }
        }
        out
    }

    /// Checks the whole exposition and returns it parsed: every line is HELP, TYPE or a
    /// sample; each family has exactly one HELP then one TYPE before its samples; families are
    /// not interleaved; no series repeats; counters and gauges are finite and counters ≥ 0;
    /// histogram series have increasing `le` ending in `+Inf`, non-decreasing counts,
    /// `+Inf` == `_count`, and a `_sum`.
    fn strict_parse(text: &str) -> Parsed {
        assert!(text.ends_with('\n'), "no final newline");
        let mut p = Parsed::default();
        let mut seen_families: HashSet<String> = HashSet::new();
        let mut series: HashSet<String> = HashSet::new();
        let mut current: Option<(String, String)> = None; // (name, type) once TYPE seen
        let mut pending_help: Option<String> = None;
        for l in text.lines() {
            assert!(!l.is_empty(), "blank line");
            assert_eq!(l, l.trim(), "stray whitespace: {l:?}");
            if let Some(rest) = l.strip_prefix("# HELP ") {
                let (name, _help) = rest.split_once(' ').expect("HELP without text");
                assert!(is_name(name, true), "{l}");
                assert!(pending_help.is_none(), "two HELP lines: {l}");
                assert!(seen_families.insert(name.to_owned()), "family again: {l}");
                pending_help = Some(name.to_owned());
                current = None;
            } else if let Some(rest) = l.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE without type");
                assert_eq!(
                    pending_help.take().as_deref(),
                    Some(name),
                    "TYPE w/o HELP: {l}"
                );
                assert!(
                    ["counter", "gauge", "histogram"].contains(&kind),
                    "unexpected type: {l}"
                );
                current = Some((name.to_owned(), kind.to_owned()));
                p.families.push((name.to_owned(), kind.to_owned()));
            } else {
                assert!(!l.starts_with('#'), "unknown comment: {l}");
                let (fam, kind) = current.as_ref().unwrap_or_else(|| panic!("orphan: {l}"));
                let s = parse_sample(l);
                let ok = match kind.as_str() {
                    "histogram" => [
                        format!("{fam}_bucket"),
                        format!("{fam}_sum"),
                        format!("{fam}_count"),
                    ]
                    .contains(&s.name),
                    _ => &s.name == fam,
                };
                assert!(ok, "sample {l} outside its family {fam}");
                if kind != "histogram" {
                    assert!(s.value.is_finite(), "{l}");
                }
                if kind == "counter" {
                    assert!(s.value >= 0.0, "{l}");
                }
                let key = format!("{}{:?}", s.name, s.labels);
                assert!(series.insert(key), "series repeated: {l}");
                p.samples.push(s);
            }
        }
        assert!(pending_help.is_none(), "HELP without TYPE at the end");
        check_histograms(&p);
        p
    }

    fn check_histograms(p: &Parsed) {
        for (fam, _) in p.families.iter().filter(|(_, t)| t == "histogram") {
            type Key = Vec<(String, String)>;
            let mut buckets: HashMap<Key, Vec<(f64, f64)>> = HashMap::new();
            let mut sums: HashMap<Key, f64> = HashMap::new();
            let mut counts: HashMap<Key, f64> = HashMap::new();
            for s in &p.samples {
                if s.name == format!("{fam}_bucket") {
                    let mut key = s.labels.clone();
                    let le_at = key.iter().position(|(k, _)| k == "le").expect("no le");
                    let (_, le) = key.remove(le_at);
                    let le: f64 = if le == "+Inf" {
                        f64::INFINITY
                    } else {
                        le.parse().expect("bad le")
                    };
                    buckets.entry(key).or_default().push((le, s.value));
                } else if s.name == format!("{fam}_sum") {
                    sums.insert(s.labels.clone(), s.value);
                } else if s.name == format!("{fam}_count") {
                    counts.insert(s.labels.clone(), s.value);
                }
            }
            assert_eq!(buckets.len(), counts.len(), "{fam}: series without _count");
            for (key, bs) in &buckets {
                assert!(bs.windows(2).all(|w| w[0].0 < w[1].0), "{fam}: le order");
                assert!(
                    bs.windows(2).all(|w| w[0].1 <= w[1].1),
                    "{fam}: not cumulative"
                );
                let last = bs.last().unwrap();
                assert_eq!(last.0, f64::INFINITY, "{fam}: no +Inf bucket");
                assert_eq!(Some(&last.1), counts.get(key), "{fam}: +Inf != _count");
                let sum = sums.get(key).unwrap_or_else(|| panic!("{fam}: no _sum"));
                assert!(sum.is_finite() && *sum >= 0.0, "{fam}: bad _sum");
            }
        }
    }

    #[test]
    fn strict_parser_rejects_bad_text() {
        let bad = [
            "x 1\n",                                                              // no HELP/TYPE
            "# HELP x h\n# TYPE x gauge\nx 1\n# HELP x h\n# TYPE x gauge\nx 2\n", // twice
            "# HELP x h\n# TYPE x gauge\ny 1\n",                                  // wrong family
            "# HELP x h\n# TYPE x gauge\nx{a=\"b} 1\n",                           // unterminated
            "# HELP x h\n# TYPE x gauge\nx{a=\"\\t\"} 1\n",                       // bad escape
            "# HELP h h\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
            "# HELP h h\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n",
        ];
        for text in bad {
            let r = std::panic::catch_unwind(|| strict_parse(text));
            assert!(r.is_err(), "accepted:\n{text}");
        }
    }
}
