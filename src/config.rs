//! The validated configuration of `shadowcat reverse`, one part per component.
//!
//! `cli.rs` turns the flags into a [`Config`] once at start-up and fails with one clear
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

use std::net::SocketAddr;
use std::time::Duration;

use crate::gate::auth::AuthConfig;
use crate::gate::ratelimit::{Cidr, Limits};
use crate::http::ServerConfig;
use crate::stream::ReplayLimits;

/// The validated configuration of `shadowcat reverse`.
#[derive(Clone, Debug)]
pub struct Config {
    /// The main listener and its limits.
    pub listen: ListenConfig,
    /// The request pipeline.
    pub proxy: ProxyConfig,
    /// The session table.
    pub sessions: SessionConfig,
    /// Where requests go. Default: the built-in demo server over stdio, 2 shared children.
    pub upstream: UpstreamConfig,
    /// Authentication, rate limits and the `/metrics` token. Default: all off.
    pub gate: GateConfig,
    /// `--admin-bind`: the admin API. Default: none (off).
    pub admin: Option<AdminConfig>,
    /// `--shutdown-grace`: how long in-flight requests may take to finish on shutdown.
    /// Default 10 s.
    pub shutdown_grace: Duration,
}

/// The main listener: where it listens and what it admits.
#[derive(Clone, Debug)]
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
    pub max_body: usize,
    /// `--client-idle-timeout`: keep-alive idle timeout of client connections. Default 60 s.
    pub client_idle_timeout: Duration,
}

impl ListenConfig {
    /// The main server's limits; the timeouts no flag sets keep [`ServerConfig::default`].
    pub fn server_config(&self) -> ServerConfig {
        ServerConfig {
            workers: self.workers,
            max_connections: self.max_connections,
            max_streams: self.max_streams,
            max_body: self.max_body,
            idle_timeout: self.client_idle_timeout,
            ..ServerConfig::default()
        }
    }
}

/// The request pipeline: the MCP endpoint, its checks, deadlines and access log.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// `--path`: the MCP endpoint path. Default `/mcp`.
    pub path: String,
    /// `--allowed-origin`: extra allowed origins, normalised to lowercase without a trailing
    /// slash. Default none (loopback origins are always allowed).
    pub allowed_origins: Vec<String>,
    /// `--request-timeout`: deadline of one upstream request. Default 60 s.
    pub request_timeout: Duration,
    /// `--sse-keepalive`: comment keep-alive interval on open SSE streams. Default 15 s.
    pub sse_keepalive: Duration,
    /// `--log-format json`: access lines as JSON objects. Default false (text).
    pub log_json: bool,
    /// The listener is on a loopback address (`--bind`): then `Host` must name a loopback host
    /// too (DNS rebinding). Not shown (`bind` is).
    pub loopback: bool,
}

/// The session table: its cap, idle expiry and the replay logs of its streams.
#[derive(Clone, Copy, Debug)]
pub struct SessionConfig {
    /// `--max-sessions`: sessions kept at once. Default 10,000.
    pub max: usize,
    /// `--session-idle`: a session unused this long is ended. Default 30 min.
    pub idle: Duration,
    /// `--replay-events` (default 256), `--replay-ttl` (default 5 min) and
    /// `stream::MAX_REPLAY_BYTES` (4 MiB) per stream.
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
}

/// An HTTP upstream: its URL, connection pool, timeouts and headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpUpstreamConfig {
    /// `--upstream`: the endpoint, used verbatim (`http://` only). Shown in `upstream`.
    pub url: String,
    /// `--upstream-pool`: connection slots for requests. Default 32.
    pub pool: u32,
    /// Slots for standalone GET streams, one per client stream: `--max-streams` (shown as
    /// `maxStreams`). Default 1,024.
    pub stream_slots: u32,
    /// `--upstream-connect-timeout`: TCP connect timeout. Default 5 s.
    pub connect_timeout: Duration,
    /// Until the response headers, and for a whole JSON body: `--request-timeout` (shown as
    /// `requestTimeoutSeconds`). Default 60 s.
    pub request_timeout: Duration,
    /// `--sse-idle-timeout`: longest silence between two reads of a body. Default 5 min.
    pub stream_idle: Duration,
    /// `--upstream-reconnect-max`: how long to keep resuming a broken stream. Default 60 s.
    pub reconnect_max: Duration,
    /// `--upstream-header`: headers sent on every request, names lowercase, `${VAR}` already
    /// expanded. Default none. Shown as names only.
    pub headers: Vec<(String, Secret)>,
}

/// A stdio upstream: what its children run, how many, how sessions use them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StdioUpstreamConfig {
    /// `--stdio`: program and arguments, no shell. Default: this binary's `demo-server`.
    /// Shown in `upstream`.
    pub argv: Vec<String>,
    /// `--stdio-children`: how many children (shared, default 2, at most 256) or at most how
    /// many (per-session, default 16, at most 4,096). Shown in `upstream`.
    pub children: usize,
    /// `--stdio-mode` and `--stdio-spares`. Default shared. Shown in `upstream`.
    pub mode: StdioMode,
    /// `--stdio-env`, `--stdio-clear-env`: the children's environment. Default: the proxy's.
    pub env: ChildEnv,
    /// `--max-message`: largest line a child may print, bytes. Default 16 MiB.
    pub max_message: usize,
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
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChildEnv {
    /// Variables set (after expansion); values are secrets, shown as names only.
    pub vars: Vec<(String, Secret)>,
    /// Start from an empty environment instead of the proxy's.
    pub clear: bool,
}

/// The gate in front of the MCP endpoint: who may call, how often, and who may read
/// `/metrics`.
#[derive(Clone, Debug)]
pub struct GateConfig {
    /// `--auth-*`, `--jwt-*`, `--jwks-*`, `--required-scope`, `--resource-url`,
    /// `--authorization-server`: inbound authentication. Default off. Its `resource` is the
    /// effective resource URL once [`GateConfig::resolve_resource`] ran.
    pub auth: AuthConfig,
    /// `--rate-limit`, `--global-rate-limit`, `--tool-limit`, `--rate-limit-keys`. Default:
    /// no limit, 10,000 keys.
    pub limits: Limits,
    /// `--trusted-proxy`: peers whose `X-Forwarded-For` is believed. Default none.
    pub trusted_proxies: Vec<Cidr>,
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
#[derive(Clone, Debug)]
pub struct AdminConfig {
    /// `--admin-bind`: where it listens; loopback unless a token is set.
    pub bind: SocketAddr,
    /// `--admin-token` or `SHADOWCAT_ADMIN_TOKEN`: bearer token every admin request needs.
    /// Default none: then only loopback clients are served.
    pub token: Option<Secret>,
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

/// A configured secret: `Debug` prints `<redacted>`, so a config dump cannot leak it.
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

impl UpstreamConfig {
    /// The upstream's short name, as logs and metrics show it: `host:port` of an HTTP
    /// upstream, the program's file name of a stdio one.
    pub fn name(&self) -> String {
        match self {
            UpstreamConfig::Http(h) => url_authority(&h.url).to_owned(),
            UpstreamConfig::Stdio(s) => program_name(&s.argv).to_owned(),
        }
    }
}

/// `host:port` of an `http://` URL, without any user info.
pub fn url_authority(url: &str) -> &str {
    let rest = url.trim_start_matches("http://");
    let auth = rest.split('/').next().unwrap_or(rest);
    auth.rsplit('@').next().unwrap_or(auth)
}

/// The file name of a command's program (`node` for `/usr/bin/node x.js`).
pub fn program_name(argv: &[String]) -> &str {
    let p = argv.first().map(String::as_str).unwrap_or("stdio");
    p.rsplit('/').next().unwrap_or(p)
}
