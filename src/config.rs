//! The validated configuration of `shadowcat reverse`, one part per component.
//!
//! `cli/` turns the flags into a [`Config`] once at start-up and fails with one clear
//! line; nothing re-checks later. Each part is then handed to the one component it configures:
//!
//! | part | consumed by |
//! |---|---|
//! | [`ListenConfig`] | the main HTTP server ([`ListenConfig::server_config`]) |
//! | [`ProxyConfig`] | the request pipeline (`Proxy::new`) |
//! | [`SessionConfig`] | the session table (`Sessions::new`) |
//! | [`UpstreamConfig`] | the upstream: [`HttpUpstreamConfig`] (`HttpUpstream::new`) or [`StdioUpstreamConfig`] (`StdioUpstream::start`, `DedicatedUpstream::start`) |
//! | [`GateConfig`] | the gatekeeper (`Gatekeeper::new`) |
//! | [`AdminConfig`] | the admin listener ([`AdminConfig::server_config`]) |
//! | [`TapeConfig`] | the tape recorder and the audit log (`Recorder::start`, `Auditor::start`) |
//! | [`FaultConfig`] | the fault and mock rules (`Faults::start`, applied in the pipeline) |
//!
//! `GET /admin/config` is this struct serialized: every part is flattened into one JSON object
//! with camelCase keys; durations are fractional seconds (keys ending in `Seconds`), sizes bytes
//! (`…Bytes`), secrets `"<redacted>"`, URLs shown without their user info, certificate and key
//! files by path (never their contents). The upstream is
//! summarised under `upstream` (`kind` and what it runs or reaches); the settings of the other
//! upstream kind are absent.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::{Serialize, Serializer};

use crate::fault::FaultConfig;
use crate::gate::auth::AuthConfig;
use crate::gate::ratelimit::{Cidr, Limits};
use crate::http::{ServerConfig, TlsFiles};
pub use crate::instance::InstanceConfig;
use crate::stream::ReplayLimits;
pub use crate::upstream::http::tls::ClientTlsConfig;

/// The validated configuration of `shadowcat reverse`.
#[derive(Clone, Debug, Serialize)]
pub struct Config {
    /// The main listener and its limits.
    #[serde(flatten)]
    pub listen: ListenConfig,
    /// The request pipeline.
    #[serde(flatten)]
    pub proxy: ProxyConfig,
    /// The session table.
    #[serde(flatten)]
    pub sessions: SessionConfig,
    /// Where requests go. Default: the built-in demo server over stdio, 2 shared children.
    #[serde(flatten)]
    pub upstream: UpstreamConfig,
    /// Authentication, rate limits and the `/metrics` token. Default: all off.
    #[serde(flatten)]
    pub gate: GateConfig,
    /// `--admin-bind`: the admin API. Default: none (off).
    #[serde(flatten)]
    pub admin: Option<AdminConfig>,
    /// `--instance-id`: this instance's name behind a load balancer (issue #17).
    #[serde(flatten)]
    pub instance: InstanceConfig,
    /// `--shutdown-grace`: how long in-flight requests may take to finish on shutdown.
    /// Default 10 s.
    #[serde(rename = "shutdownGraceSeconds", serialize_with = "seconds")]
    pub shutdown_grace: Duration,
    /// `--drain-time`: on SIGTERM/SIGINT, how long `/readyz` says 503 (and new sessions are
    /// refused) while everything else is still served, before the listener closes and
    /// `--shutdown-grace` begins. Default 0 (none).
    #[serde(rename = "drainTimeSeconds", serialize_with = "seconds")]
    pub drain_time: Duration,
    /// `--record*`, `--redact`, `--audit-*`: tapes and the audit log. Default: both off.
    #[serde(flatten)]
    pub tapes: TapeConfig,
    /// The config file's `[[fault]]` rules and `--fault-seed` (issue #18). Default: none.
    /// Shown as `faults` (each rule's name, match, action and probability) and `faultSeed`.
    #[serde(flatten)]
    pub faults: FaultConfig,
}

/// Tapes (`--record`) and the audit log (`--audit-log`), and the redaction both apply.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TapeConfig {
    /// `--record DIR`: write tapes there. Default none (off).
    pub record: Option<std::path::PathBuf>,
    /// `--record-max-bytes`: a tape part over this continues in the next part. Default
    /// 64 MiB.
    #[serde(rename = "recordMaxBytes")]
    pub max_bytes: u64,
    /// `--record-keep`: tapes last written longer ago are deleted. Default 7 days.
    #[serde(rename = "recordKeepSeconds", serialize_with = "seconds")]
    pub keep: Duration,
    /// `--audit-log FILE|-`: one JSON line per MCP request. Default none (off).
    pub audit_log: Option<String>,
    /// `--audit-arguments`: audit lines carry the (redacted) arguments. Default false.
    pub audit_arguments: bool,
    /// `--redact`: rules on top of the default key set.
    #[serde(flatten)]
    pub redact: RedactRules,
    /// Bytes of messages waiting for the tape writer before more are dropped
    /// (`tape::DEFAULT_QUEUE_BYTES`, 32 MiB). Not a flag.
    #[serde(skip)]
    pub queue_bytes: usize,
    /// Bytes of audit lines waiting for their writer (`tape::audit::DEFAULT_QUEUE_BYTES`,
    /// 32 MiB). Not a flag.
    #[serde(skip)]
    pub audit_queue_bytes: usize,
}

/// `--redact key=NAME,...` and `--redact pointer=/json/pointer`, added to the default key
/// set (see `tape::redact`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RedactRules {
    /// Key names whose values are redacted wherever they appear (exact, ignoring ASCII case).
    #[serde(rename = "redactKeys")]
    pub keys: Vec<String>,
    /// JSON pointers (RFC 6901) from a message's root whose values are redacted.
    #[serde(rename = "redactPointers")]
    pub pointers: Vec<String>,
}

/// The main listener: where it listens and what it admits.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenConfig {
    /// `--bind`: the listen address. Default 127.0.0.1:8080.
    pub bind: SocketAddr,
    /// `--workers`: requests handled at once. Default 64.
    pub workers: usize,
    /// `--max-connections`: open client connections. Default 1,024.
    pub max_connections: usize,
    /// `--max-streams`: open streaming responses. Default 1,024.
    pub max_streams: usize,
    /// `--max-body`: request body limit in bytes. Default 4 MiB.
    #[serde(rename = "maxBodyBytes")]
    pub max_body: usize,
    /// `--client-idle-timeout`: keep-alive idle timeout of client connections. Default 60 s.
    #[serde(rename = "clientIdleTimeoutSeconds", serialize_with = "seconds")]
    pub client_idle_timeout: Duration,
    /// `--client-write-timeout`: a client that acknowledges nothing while writes to it wait
    /// this long in all is disconnected. Default 10 s.
    #[serde(rename = "clientWriteTimeoutSeconds", serialize_with = "seconds")]
    pub client_write_timeout: Duration,
    /// Longest wait for a worker permit, then 503 with `Retry-After`: `--request-timeout`
    /// (a request that waited that long would time out anyway). Not shown (that flag is).
    #[serde(skip)]
    pub worker_wait: Duration,
    /// `--tls-cert`, `--tls-key`, `--tls-client-ca`, `--tls-client-crl`: HTTPS on the
    /// listener, client certificates required with a client CA, checked against CRLs when
    /// given. Default none (plain HTTP). Shown as `tlsCert`, `tlsKey`, `tlsClientCa`,
    /// `tlsClientCrl` (paths).
    #[serde(flatten, serialize_with = "listen_tls")]
    pub tls: Option<TlsFiles>,
}

impl ListenConfig {
    /// The main server's limits; the timeouts no flag sets keep [`ServerConfig::default`]. TLS
    /// is loaded from `tls` and set by the caller (loading can fail).
    pub fn server_config(&self) -> ServerConfig {
        ServerConfig {
            workers: self.workers,
            max_connections: self.max_connections,
            max_streams: self.max_streams,
            max_body: self.max_body,
            idle_timeout: self.client_idle_timeout,
            write_timeout: self.client_write_timeout,
            worker_wait: self.worker_wait,
            ..ServerConfig::default()
        }
    }
}

/// The request pipeline: the MCP endpoint, its checks, deadlines and access log.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyConfig {
    /// `--path`: the MCP endpoint path. Default `/mcp`.
    pub path: String,
    /// `--allowed-origin`: extra allowed origins, normalised to lowercase without a trailing
    /// slash. Default none (loopback origins are always allowed).
    pub allowed_origins: Vec<String>,
    /// `--cors-max-age`: how long a browser may cache a CORS preflight answer
    /// (`Access-Control-Max-Age`, whole seconds). Default 2 h.
    #[serde(rename = "corsMaxAgeSeconds", serialize_with = "seconds")]
    pub cors_max_age: Duration,
    /// `--request-timeout`: deadline of one upstream request. Default 60 s.
    #[serde(rename = "requestTimeoutSeconds", serialize_with = "seconds")]
    pub request_timeout: Duration,
    /// `--sse-keepalive`: comment keep-alive interval on open SSE streams. Default 15 s.
    #[serde(rename = "sseKeepaliveSeconds", serialize_with = "seconds")]
    pub sse_keepalive: Duration,
    /// `--log-format json`: access lines as JSON objects. Default false (text).
    #[serde(rename = "logFormat", serialize_with = "log_format")]
    pub log_json: bool,
    /// The listener is on a loopback address (`--bind`): then `Host` must name a loopback host
    /// too (DNS rebinding). Not shown (`bind` is).
    #[serde(skip)]
    pub loopback: bool,
    /// `--max-streams-per-client`: streams one client (principal, or IP) may have open.
    /// Default 32, but at most half of `--max-streams`.
    pub max_streams_per_client: usize,
    /// The era bridge: 2026-07-28 requests in front of a legacy upstream (`crate::bridge`).
    pub bridge: BridgeConfig,
}

/// The era bridge (`crate::bridge`): how 2026-07-28 requests are served by a session-era
/// upstream.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BridgeConfig {
    /// `--cache-ttl`: the `ttlMs` of bridged list and read results. Default 0 ms.
    #[serde(rename = "cacheTtlSeconds", serialize_with = "seconds")]
    pub cache_ttl: Duration,
    /// `--input-timeout`: how long a call waiting for its client's `inputResponses` is kept
    /// (and its `requestState` valid); then it is cancelled upstream. Default 5 min.
    #[serde(rename = "inputTimeoutSeconds", serialize_with = "seconds")]
    pub input_timeout: Duration,
    /// The instance name a `requestState` carries, readable before its first `.` so a load
    /// balancer can route the retry (`--instance-id`); another instance's state is refused.
    /// Default (without flags): a random id per process.
    pub instance: String,
    /// Calls waiting for input at once (a retry frees its place). Default 256.
    pub max_pending: usize,
    /// Bytes of input requests held for waiting calls, in all. Default 16 MiB.
    pub max_pending_bytes: usize,
    /// `--input-max-per-client`: calls one client (its principal, or its IP) may have
    /// waiting for input at once. Default 16.
    #[serde(rename = "inputMaxPerClient")]
    pub max_per_client: usize,
}

impl BridgeConfig {
    /// The defaults, with a fresh random instance name.
    pub fn new(cache_ttl: Duration, input_timeout: Duration) -> BridgeConfig {
        BridgeConfig {
            cache_ttl,
            input_timeout,
            instance: random_instance(),
            max_pending: 256,
            max_pending_bytes: 16 << 20,
            max_per_client: 16,
        }
    }
}

impl Default for BridgeConfig {
    fn default() -> BridgeConfig {
        BridgeConfig::new(Duration::ZERO, Duration::from_secs(300))
    }
}

/// A random per-process instance name (16 hex digits).
fn random_instance() -> String {
    use std::io::Read;
    let mut b = [0u8; 8];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b));
    if read.is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        b = ((t as u64) ^ u64::from(std::process::id()).rotate_left(32)).to_le_bytes();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The session table: its cap, idle expiry and the replay logs of its streams.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct SessionConfig {
    /// `--max-sessions`: sessions kept at once. Default 10,000.
    #[serde(rename = "maxSessions")]
    pub max: usize,
    /// `--max-sessions-per-client`: sessions one client (principal, or IP) may hold. Default
    /// 64, but at most half of the session room (`--max-sessions`, and `--stdio-children` in
    /// per-session mode).
    #[serde(rename = "maxSessionsPerClient")]
    pub max_per_client: usize,
    /// `--session-idle`: a session unused this long is ended. Default 30 min.
    #[serde(rename = "sessionIdleSeconds", serialize_with = "seconds")]
    pub idle: Duration,
    /// `--replay-events` (default 256), `--replay-ttl` (default 5 min) and
    /// `stream::MAX_REPLAY_BYTES` (4 MiB) per stream; `--replay-budget` (default 256 MiB) for
    /// all streams of all sessions together.
    #[serde(flatten, serialize_with = "replay_limits")]
    pub replay: ReplayLimits,
}

impl SessionConfig {
    /// How often the reaper looks for idle sessions: a quarter of the idle time, within
    /// 50 ms..=10 s.
    pub fn sweep_interval(&self) -> Duration {
        (self.idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(10))
    }
}

/// Where requests go, with everything that kind of upstream needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpstreamConfig {
    /// `--upstream URL`: a Streamable HTTP server.
    Http(HttpUpstreamConfig),
    /// `--stdio CMD` or neither flag: persistent stdio children.
    Stdio(StdioUpstreamConfig),
    /// `[upstream.NAME]` tables in the config file: one endpoint in front of several named
    /// upstreams (`crate::upstream::federated`).
    Federated(FederationConfig),
}

/// Several named upstreams behind one endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FederationConfig {
    /// `--name-separator`: between a member's prefix and its tool and prompt names. Default
    /// `__`.
    #[serde(rename = "nameSeparator")]
    pub separator: String,
    /// The members, in the file's order (the order of merged lists, and who wins a resource
    /// URI two members list).
    pub members: Vec<MemberConfig>,
}

/// One `[upstream.NAME]` table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MemberConfig {
    /// `NAME`: in logs, errors and the combined instructions.
    pub name: String,
    /// `prefix`: before its tool and prompt names (with the separator), default `NAME`;
    /// empty: names pass unchanged.
    pub prefix: String,
    /// Its upstream (never itself federated).
    #[serde(flatten)]
    pub upstream: UpstreamConfig,
    /// `allow`, `deny` and `[upstream.NAME.principal."..."]`: which of its tools and prompts
    /// who may see and call. Default: all, for everyone.
    #[serde(flatten)]
    pub policy: PolicyConfig,
    /// `request-timeout`: a request to this member (a call, a read, a completion, a list
    /// page) is answered within it, or as `--request-timeout` answers a request that took
    /// too long. At most the file's `request-timeout` (checked at load); the request's own
    /// deadline still applies when it is sooner. `None`: the request's deadline alone. Not
    /// part of what the member runs: a reload that changes it updates the member in place.
    #[serde(
        rename = "requestTimeoutSeconds",
        skip_serializing_if = "Option::is_none",
        serialize_with = "seconds_opt"
    )]
    pub request_timeout: Option<Duration>,
    /// `record`: its own tapes, its conversations as it saw them
    /// (`crate::upstream::recorded`). Default none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<MemberRecord>,
}

/// A member's `record = "DIR"` with its table's `record-max-bytes` and `record-keep`; those
/// it does not set are the top-level ones in force (`--record-max-bytes`, `--record-keep`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MemberRecord {
    /// `record`: the directory of its tapes.
    pub dir: std::path::PathBuf,
    /// `record-max-bytes` of the table.
    #[serde(rename = "recordMaxBytes", skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    /// `record-keep` of the table, in seconds.
    #[serde(
        rename = "recordKeepSeconds",
        skip_serializing_if = "Option::is_none",
        serialize_with = "seconds_opt"
    )]
    pub keep: Option<Duration>,
}

/// A member's tool and prompt policy (`crate::upstream::federated` `policy.rs`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PolicyConfig {
    /// For everyone.
    #[serde(flatten)]
    pub rules: RulesConfig,
    /// Per principal (`token:NAME`, `jwt:SUB`, `cert:CN`), replacing `rules` list by list.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub principals: Vec<(String, RulesConfig)>,
    /// `[upstream.NAME.tools.TOOL]`: how single tools are shown and called.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ToolOverride>,
    /// `[upstream.NAME.prompts.PROMPT]`: how single prompts are shown and fetched (no fixed
    /// arguments).
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        serialize_with = "prompt_overrides"
    )]
    pub prompts: Vec<ToolOverride>,
}

/// One `[upstream.NAME.tools.TOOL]` table, or one `[upstream.NAME.prompts.PROMPT]` table (a
/// prompt's has no `arguments`: its `fixed` stays empty).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ToolOverride {
    /// The tool (or prompt), as the member knows it.
    pub tool: String,
    /// `name`: the name shown instead (then prefixed); the old one is unknown to clients.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rename: Option<String>,
    /// `description`: shown instead of the member's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `arguments`: values always sent, left out of the schema clients see (shown as names
    /// only: they may be secrets).
    #[serde(
        rename = "fixedArguments",
        serialize_with = "value_names",
        skip_serializing_if = "serde_json::Map::is_empty"
    )]
    pub fixed: serde_json::Map<String, serde_json::Value>,
}

fn value_names<S: Serializer>(
    m: &serde_json::Map<String, serde_json::Value>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_seq(m.keys())
}

/// Name patterns (`*`, `?`) of tools and prompts as the member knows them, and URI patterns of
/// its resources.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RulesConfig {
    /// Only these; `None`: all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow: Option<Vec<String>>,
    /// Never these (wins over `allow`); `None`: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deny: Option<Vec<String>>,
    /// `allow-resources`: only resources whose URI (templates: whose URI template) matches
    /// one of these; `None`: all.
    #[serde(rename = "allowResources", skip_serializing_if = "Option::is_none")]
    pub allow_resources: Option<Vec<String>>,
    /// `deny-resources`: never these resources and templates (wins); `None`: none.
    #[serde(rename = "denyResources", skip_serializing_if = "Option::is_none")]
    pub deny_resources: Option<Vec<String>>,
    /// A principal's `[upstream.NAME.principal."P".tools.TOOL]` tables: each replaces the
    /// member's override of that tool for this principal (empty in the member's own rules,
    /// whose overrides are [`PolicyConfig::tools`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ToolOverride>,
    /// A principal's `[upstream.NAME.principal."P".prompts.PROMPT]` tables, likewise for
    /// prompts.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        serialize_with = "prompt_overrides"
    )]
    pub prompts: Vec<ToolOverride>,
}

/// Prompt overrides as `check-config` shows them: `prompt` (not `tool`), `rename`,
/// `description`.
fn prompt_overrides<S: Serializer>(list: &[ToolOverride], s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Shown<'a> {
        prompt: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        rename: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        description: Option<&'a str>,
    }
    s.collect_seq(list.iter().map(|o| Shown {
        prompt: &o.tool,
        rename: o.rename.as_deref(),
        description: o.description.as_deref(),
    }))
}

/// An HTTP upstream: its URL, connection pool, timeouts and headers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HttpUpstreamConfig {
    /// `--upstream`: the endpoint, used verbatim (`http://` only). Shown in `upstream`.
    #[serde(skip)]
    pub url: String,
    /// `--upstream` given again (`url = [...]` in a file): the other replicas of the same
    /// server, after `url` (`crate::upstream::replicas`). Empty: one server. Shown in
    /// `upstream` as `replicas`.
    #[serde(skip)]
    pub replicas: Vec<String>,
    /// `--replica-*`: the replicas' circuit breakers and prober (used with replicas only).
    #[serde(flatten)]
    pub breaker: ReplicaConfig,
    /// `--upstream-pool`: connection slots for requests. Default 32.
    #[serde(rename = "upstreamPool")]
    pub pool: u32,
    /// Slots for standalone GET streams, one per client stream: `--max-streams` (shown as
    /// `maxStreams`). Default 1,024.
    #[serde(skip)]
    pub stream_slots: u32,
    /// `--upstream-connect-timeout`: TCP connect timeout. Default 5 s.
    #[serde(rename = "upstreamConnectTimeoutSeconds", serialize_with = "seconds")]
    pub connect_timeout: Duration,
    /// Until the response headers, and for a whole JSON body: `--request-timeout` (shown as
    /// `requestTimeoutSeconds`). Default 60 s.
    #[serde(skip)]
    pub request_timeout: Duration,
    /// `--sse-idle-timeout`: longest silence between two reads of a body. Default 5 min.
    #[serde(rename = "sseIdleTimeoutSeconds", serialize_with = "seconds")]
    pub stream_idle: Duration,
    /// `--upstream-reconnect-max`: how long to keep resuming a broken stream. Default 60 s.
    #[serde(rename = "upstreamReconnectMaxSeconds", serialize_with = "seconds")]
    pub reconnect_max: Duration,
    /// `--upstream-header`: headers sent on every request, names lowercase, `${VAR}` already
    /// expanded. Default none. Shown as names only.
    #[serde(rename = "upstreamHeaders", serialize_with = "secret_map")]
    pub headers: Vec<(String, Secret)>,
    /// `--upstream-ca`, `--upstream-client-cert`, `--upstream-client-key`: how an `https://`
    /// upstream is verified and what we show it. Shown as `upstreamTls`.
    #[serde(rename = "upstreamTls")]
    pub tls: ClientTlsConfig,
    /// `--input-timeout` (shown with the bridge): a session-era client's time to answer an
    /// input round of a 2026-07-28-only upstream.
    #[serde(skip)]
    pub input_timeout: Duration,
}

/// The circuit breaker and prober of an upstream's replicas (`crate::upstream::replicas`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReplicaConfig {
    /// `--replica-failures`: failures in a row (connect errors, 5xx, timeouts) that eject a
    /// replica. Default 3.
    #[serde(rename = "replicaFailures")]
    pub failures: u32,
    /// `--replica-backoff`: how long an ejected replica stays out before it is probed; doubled
    /// after each failed probe. Default 10 s.
    #[serde(rename = "replicaBackoffSeconds", serialize_with = "seconds")]
    pub backoff: Duration,
    /// `--replica-backoff-max`: the longest backoff. Default 2 min.
    #[serde(rename = "replicaBackoffMaxSeconds", serialize_with = "seconds")]
    pub backoff_max: Duration,
    /// `--replica-probe-interval`: how often the prober looks at the replicas (ejected ones
    /// whose backoff passed, and health checks of idle ones). Default 2 s.
    #[serde(rename = "replicaProbeIntervalSeconds", serialize_with = "seconds")]
    pub probe_interval: Duration,
}

impl Default for ReplicaConfig {
    fn default() -> ReplicaConfig {
        ReplicaConfig {
            failures: 3,
            backoff: Duration::from_secs(10),
            backoff_max: Duration::from_secs(120),
            probe_interval: Duration::from_secs(2),
        }
    }
}

/// A stdio upstream: what its children run, how many, how sessions use them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StdioUpstreamConfig {
    /// `--stdio`: program and arguments, no shell. Default: this binary's `demo-server`.
    /// Shown in `upstream`.
    #[serde(skip)]
    pub argv: Vec<String>,
    /// `--stdio-children`: how many children (shared, default 2, at most 256) or at most how
    /// many (per-session, default 16, at most 4,096). Shown in `upstream`.
    #[serde(skip)]
    pub children: usize,
    /// `--stdio-mode` and `--stdio-spares`. Default shared. Shown in `upstream`.
    #[serde(skip)]
    pub mode: StdioMode,
    /// `--stdio-env`, `--stdio-clear-env`: the children's environment. Default: the proxy's.
    #[serde(flatten)]
    pub env: ChildEnv,
    /// `--max-message`: largest line a child may print, bytes. Default 16 MiB.
    #[serde(rename = "maxMessageBytes")]
    pub max_message: usize,
    /// `--max-call-buffer`: bytes of a call's messages queued for a client that does not
    /// read, before further ones (never the response) are dropped. Default 8 MiB.
    #[serde(rename = "maxCallBufferBytes")]
    pub max_call_buffer: usize,
    /// `--max-subscriptions`: `resources/subscribe` URIs one session may hold (shared mode,
    /// where the proxy keeps them). Default 64.
    #[serde(rename = "maxSubscriptions")]
    pub max_subscriptions: usize,
    /// `--session-evict-idle`: per-session mode, all children taken: a session unused this
    /// long, with no call in flight, is ended to make room for a new one. Default 60 s.
    #[serde(rename = "sessionEvictIdleSeconds", serialize_with = "seconds")]
    pub evict_idle: Duration,
    /// `--stdio-queue`: calls that may wait at once for one shared child to be free for them
    /// (an exclusive call waits for other sessions' calls to end, and they for it). Default 32.
    #[serde(rename = "stdioQueue")]
    pub queue: usize,
    /// `--stdio-exclusive-tools`: shared mode, tools whose calls run alone on their child
    /// whoever calls them (so their logs reach plain clients). Default none.
    #[serde(rename = "stdioExclusiveTools")]
    pub exclusive_tools: Vec<String>,
    /// `--stdio-learn-exclusive`: shared mode, tools seen logging during calls alone on their
    /// child become exclusive too (`exclusive.rs`). Default on.
    #[serde(rename = "stdioLearnExclusive")]
    pub learn_exclusive: bool,
    /// `--input-timeout` (shown with the bridge): how long a session-era client has to answer
    /// the requests a 2026-07-28-only child's input round became (`bridge::modern_upstream`).
    #[serde(skip)]
    pub input_timeout: Duration,
}

/// How sessions use stdio children.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StdioMode {
    /// A fixed set of persistent children shared by all sessions.
    Shared,
    /// One dedicated child per session, from a warm pool.
    PerSession {
        /// `--stdio-spares`: warm spares kept ready. Default 2.
        spares: usize,
    },
}

impl StdioMode {
    /// Warm spares kept ready; none when shared.
    pub fn spares(&self) -> Option<usize> {
        match *self {
            StdioMode::Shared => None,
            StdioMode::PerSession { spares } => Some(spares),
        }
    }
}

/// The environment stdio children start with.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ChildEnv {
    /// Variables set (after expansion); values are secrets, shown as names only.
    #[serde(rename = "stdioEnv", serialize_with = "secret_map")]
    pub vars: Vec<(String, Secret)>,
    /// Start from an empty environment instead of the proxy's.
    #[serde(rename = "stdioClearEnv")]
    pub clear: bool,
}

/// The gate in front of the MCP endpoint: who may call, how often, and who may read
/// `/metrics`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GateConfig {
    /// `--auth-*`, `--jwt-*`, `--jwks-*`, `--required-scope`, `--resource-url`,
    /// `--authorization-server`: inbound authentication. Default off. Its `resource` is the
    /// effective resource URL once [`GateConfig::resolve_resource`] ran.
    #[serde(serialize_with = "auth")]
    pub auth: AuthConfig,
    /// `--rate-limit`, `--global-rate-limit`, `--tool-limit`, `--rate-limit-keys`. Default:
    /// no limit, 10,000 keys.
    #[serde(flatten, serialize_with = "limits")]
    pub limits: Limits,
    /// `--trusted-proxy`: peers whose `X-Forwarded-For` is believed. Default none.
    #[serde(serialize_with = "displayed")]
    pub trusted_proxies: Vec<Cidr>,
    /// `--limits-store` and `--limits-store-fail`: the rate-limit buckets in Redis, shared by
    /// every instance (issue #17). Default none: in-process buckets.
    #[serde(serialize_with = "limits_store")]
    pub limits_store: Option<crate::gate::ratelimit::StoreConfig>,
    /// `--metrics-token` or `SHADOWCAT_METRICS_TOKEN`: bearer token `/metrics` requires.
    /// Default none (open).
    pub metrics_token: Option<Secret>,
}

impl GateConfig {
    /// The resource URL (the JWT audience): `--resource-url`, else `default()` (the bound
    /// address and path, known once the listener is bound). With authentication on it is
    /// recorded in `auth`, so `/admin/config` shows the URL in force.
    pub fn resolve_resource(&mut self, default: impl FnOnce() -> String) -> String {
        let resource = self.auth.resource_url.clone().unwrap_or_else(default);
        if self.auth.enabled() {
            self.auth.resource_url = Some(resource.clone());
        }
        resource
    }
}

/// The admin API listener.
#[derive(Clone, Debug, Serialize)]
pub struct AdminConfig {
    /// `--admin-bind`: where it listens; loopback unless a token is set.
    #[serde(rename = "adminBind")]
    pub bind: SocketAddr,
    /// `--admin-token` or `SHADOWCAT_ADMIN_TOKEN`: bearer token every admin request needs.
    /// Default none: then only loopback clients are served.
    #[serde(rename = "adminToken")]
    pub token: Option<Secret>,
    /// `--admin-tls-cert`, `--admin-tls-key`: HTTPS on the admin listener (its own pair; give
    /// the main one's files to share it). Default none (plain HTTP). Shown as `adminTlsCert`,
    /// `adminTlsKey` (paths).
    #[serde(flatten, serialize_with = "admin_tls")]
    pub tls: Option<TlsFiles>,
}

impl AdminConfig {
    /// Admin requests handled at once.
    pub const WORKERS: usize = 4;
    /// Open admin connections.
    pub const MAX_CONNECTIONS: usize = 64;
    /// Streaming responses (the admin API sends none).
    pub const MAX_STREAMS: usize = 1;
    /// Largest admin request body, bytes.
    pub const MAX_BODY: usize = 64 * 1024;

    /// The admin server's limits, small and fixed; the rest keep [`ServerConfig::default`].
    pub fn server_config(&self) -> ServerConfig {
        ServerConfig {
            workers: Self::WORKERS,
            max_connections: Self::MAX_CONNECTIONS,
            max_streams: Self::MAX_STREAMS,
            max_body: Self::MAX_BODY,
            ..ServerConfig::default()
        }
    }
}

/// A configured secret: `Debug` prints `<redacted>` and it serializes as `"<redacted>"`, so a
/// config dump cannot leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(s: String) -> Secret {
        Secret(s)
    }

    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

impl UpstreamConfig {
    /// The upstream's short name, as logs and metrics show it: `host:port` of an HTTP
    /// upstream (`host:port+N` with N more replicas), the program's file name of a stdio one.
    pub fn name(&self) -> String {
        match self {
            UpstreamConfig::Http(h) if h.replicas.is_empty() => url_authority(&h.url).to_owned(),
            UpstreamConfig::Http(h) => format!("{}+{}", url_authority(&h.url), h.replicas.len()),
            UpstreamConfig::Stdio(s) => program_name(&s.argv).to_owned(),
            UpstreamConfig::Federated(_) => "federation".to_owned(),
        }
    }
}

/// `upstream` (the kind and what it reaches or runs) beside the kind's own settings.
impl Serialize for UpstreamConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(tag = "kind", rename_all = "lowercase")]
        enum Target<'a> {
            Http {
                url: String,
                #[serde(skip_serializing_if = "Vec::is_empty")]
                replicas: Vec<String>,
            },
            Stdio {
                argv: &'a [String],
                children: usize,
                mode: &'static str,
                spares: Option<usize>,
            },
        }
        #[derive(Serialize)]
        struct Shown<'a, T> {
            upstream: Target<'a>,
            #[serde(flatten)]
            settings: &'a T,
        }
        match self {
            UpstreamConfig::Http(h) => Shown {
                upstream: Target::Http {
                    url: redact_url(&h.url),
                    replicas: h.replicas.iter().map(|u| redact_url(u)).collect(),
                },
                settings: h,
            }
            .serialize(s),
            UpstreamConfig::Stdio(c) => Shown {
                upstream: Target::Stdio {
                    argv: &c.argv,
                    children: c.children,
                    mode: match c.mode {
                        StdioMode::Shared => "shared",
                        StdioMode::PerSession { .. } => "per-session",
                    },
                    spares: c.mode.spares(),
                },
                settings: c,
            }
            .serialize(s),
            UpstreamConfig::Federated(f) => {
                #[derive(Serialize)]
                struct Fed<'a> {
                    kind: &'static str,
                    #[serde(flatten)]
                    federation: &'a FederationConfig,
                }
                #[derive(Serialize)]
                struct Shown<'a> {
                    upstream: Fed<'a>,
                }
                Shown {
                    upstream: Fed {
                        kind: "federated",
                        federation: f,
                    },
                }
                .serialize(s)
            }
        }
    }
}

/// `host:port` of an `http://` or `https://` URL, without any user info.
pub fn url_authority(url: &str) -> &str {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .unwrap_or(url);
    let auth = rest.split('/').next().unwrap_or(rest);
    auth.rsplit('@').next().unwrap_or(auth)
}

/// The file name of a command's program (`node` for `/usr/bin/node x.js`).
pub fn program_name(argv: &[String]) -> &str {
    let p = argv.first().map(String::as_str).unwrap_or("stdio");
    p.rsplit('/').next().unwrap_or(p)
}

/// `http://user:secret@host/…` → `http://<redacted>@host/…`.
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let host_end = rest.find('/').unwrap_or(rest.len());
    match rest[..host_end].rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://<redacted>@{host}{}", &rest[host_end..]),
        None => url.to_string(),
    }
}

// How the parts look in `/admin/config` where serde's own form is not it (foreign types,
// durations as seconds).

/// A duration as fractional seconds.
fn seconds<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

fn seconds_opt<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_f64(d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

/// `tlsCert`, `tlsKey`, `tlsClientCa`, `tlsClientCrl`: the listener's TLS files by path (null
/// without TLS).
fn listen_tls<S: Serializer>(t: &Option<TlsFiles>, s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Shown {
        tls_cert: Option<String>,
        tls_key: Option<String>,
        tls_client_ca: Option<String>,
        tls_client_crl: Option<String>,
    }
    let shown = |p: &Path| Some(p.display().to_string());
    Shown {
        tls_cert: t.as_ref().and_then(|t| shown(&t.cert)),
        tls_key: t.as_ref().and_then(|t| shown(&t.key)),
        tls_client_ca: t
            .as_ref()
            .and_then(|t| t.client_ca.as_deref())
            .and_then(shown),
        tls_client_crl: t
            .as_ref()
            .and_then(|t| t.client_crl.as_deref())
            .and_then(shown),
    }
    .serialize(s)
}

/// `adminTlsCert`, `adminTlsKey`: the admin listener's TLS files by path.
fn admin_tls<S: Serializer>(t: &Option<TlsFiles>, s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Shown {
        admin_tls_cert: Option<String>,
        admin_tls_key: Option<String>,
    }
    Shown {
        admin_tls_cert: t.as_ref().map(|t| t.cert.display().to_string()),
        admin_tls_key: t.as_ref().map(|t| t.key.display().to_string()),
    }
    .serialize(s)
}

/// Named secrets as an object of names to `"<redacted>"`.
fn secret_map<S: Serializer>(v: &[(String, Secret)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(v.iter().map(|(k, v)| (k, v)))
}

/// `text` or `json`, as `--log-format` takes it.
fn log_format<S: Serializer>(json: &bool, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(if *json { "json" } else { "text" })
}

/// Values as their flag syntax.
fn displayed<S: Serializer>(v: &[Cidr], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(|c| c.to_string()))
}

/// `replayEvents`, `replayBytes`, `replayTtlSeconds`, `replayBudgetBytes`.
fn replay_limits<S: Serializer>(r: &ReplayLimits, s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Shown {
        replay_events: usize,
        replay_bytes: usize,
        #[serde(rename = "replayTtlSeconds", serialize_with = "seconds")]
        replay_ttl: Duration,
        #[serde(rename = "replayBudgetBytes")]
        replay_budget: usize,
    }
    Shown {
        replay_events: r.events,
        replay_bytes: r.bytes,
        replay_ttl: r.ttl,
        replay_budget: r.budget,
    }
    .serialize(s)
}

/// `rateLimit`, `globalRateLimit`, `toolLimits` and `rateLimitKeys`, in flag syntax.
fn limits<S: Serializer>(l: &Limits, s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Shown {
        rate_limit: Option<String>,
        global_rate_limit: Option<String>,
        tool_limits: Vec<String>,
        rate_limit_keys: usize,
    }
    Shown {
        rate_limit: l.per_client.map(|r| r.to_string()),
        global_rate_limit: l.global.map(|r| r.to_string()),
        tool_limits: l.tools.iter().map(|t| t.to_string()).collect(),
        rate_limit_keys: l.max_keys,
    }
    .serialize(s)
}

/// The `auth` object: files by path, the JWKS URL without user info, algorithms by name.
fn auth<S: Serializer>(a: &AuthConfig, s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Shown<'a> {
        tokens_file: Option<String>,
        jwt: bool,
        jwt_secret_file: Option<String>,
        jwks_file: Option<String>,
        jwks_url: Option<String>,
        algorithms: Vec<String>,
        issuer: &'a Option<String>,
        #[serde(rename = "leewaySeconds", serialize_with = "seconds")]
        leeway: Duration,
        required_scopes: &'a [String],
        resource: &'a Option<String>,
        authorization_servers: &'a [String],
        jwks_tls: &'a ClientTlsConfig,
    }
    let path = |p: &Option<std::path::PathBuf>| p.as_ref().map(|p| p.display().to_string());
    Shown {
        tokens_file: path(&a.tokens_file),
        jwt: a.jwt,
        jwt_secret_file: path(&a.jwt_secret_file),
        jwks_file: path(&a.jwks_file),
        jwks_url: a.jwks_url.as_deref().map(redact_url),
        algorithms: a.algorithms.iter().map(|a| format!("{a:?}")).collect(),
        issuer: &a.issuer,
        leeway: a.leeway,
        required_scopes: &a.required_scopes,
        resource: &a.resource_url,
        authorization_servers: &a.authorization_servers,
        jwks_tls: &a.jwks_tls,
    }
    .serialize(s)
}

/// `limitsStore`: the URL without user information and the fail mode, or null.
fn limits_store<S: Serializer>(
    v: &Option<crate::gate::ratelimit::StoreConfig>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(c) => {
            let fail = match c.fail {
                crate::gate::ratelimit::FailMode::Open => "open",
                crate::gate::ratelimit::FailMode::Closed => "closed",
            };
            let lease = format!("{}ms", c.lease.as_millis());
            serde_json::json!({"url": c.shown(), "fail": fail, "lease": lease}).serialize(s)
        }
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_userinfo() {
        assert_eq!(
            redact_url("http://a:b@h:1/mcp"),
            "http://<redacted>@h:1/mcp"
        );
        assert_eq!(redact_url("http://h:1/mcp"), "http://h:1/mcp");
    }
}
