//! The validated configuration of `shadowcat reverse`.
//!
//! `cli.rs` turns the flags into a [`Config`] once at start-up and fails with one clear line;
//! nothing re-checks later.

use std::net::SocketAddr;
use std::time::Duration;

/// How sessions use stdio children.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StdioMode {
    /// A fixed set of persistent children shared by all sessions.
    Shared,
    /// One dedicated child per session, from a warm pool.
    PerSession {
        /// Warm spares kept ready.
        spares: usize,
    },
}

/// Where requests go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpstreamConfig {
    /// A Streamable HTTP server at this URL.
    Http {
        /// The endpoint, used verbatim.
        url: String,
    },
    /// Persistent stdio children running this argv.
    Stdio {
        /// Program and arguments; no shell involved.
        argv: Vec<String>,
        /// How many children (shared) or at most how many (per-session).
        children: usize,
        /// Shared or per-session.
        mode: StdioMode,
    },
}

/// The validated configuration of `shadowcat reverse`.
#[derive(Clone, Debug)]
pub struct Config {
    /// Listen address. Default 127.0.0.1:8080.
    pub bind: SocketAddr,
    /// MCP endpoint path. Default `/mcp`.
    pub path: String,
    /// The upstream. Default: the built-in demo server over stdio, 2 children.
    pub upstream: UpstreamConfig,
    /// Concurrent request handlers. Default 64.
    pub workers: usize,
    /// Open client connections. Default 1,024.
    pub max_connections: usize,
    /// Open streaming responses. Default 1,024.
    pub max_streams: usize,
    /// Request body limit in bytes. Default 4 MiB.
    pub max_body: usize,
    /// Child stdout line limit in bytes. Default 16 MiB.
    pub max_message: usize,
    /// Session cap. Default 10,000.
    pub max_sessions: usize,
    /// Session idle expiry. Default 30 min.
    pub session_idle: Duration,
    /// Keep-alive idle timeout for client connections. Default 60 s.
    pub client_idle_timeout: Duration,
    /// Per-request deadline. Default 60 s.
    pub request_timeout: Duration,
    /// r2d2 slots per HTTP upstream. Default 32.
    pub upstream_pool: u32,
    /// Upstream connect timeout. Default 5 s.
    pub upstream_connect_timeout: Duration,
    /// SSE keep-alive interval. Default 15 s.
    pub sse_keepalive: Duration,
    /// Replay buffers. Default 256 events, 4 MiB, 5 min after the stream ends.
    pub replay: crate::stream::ReplayLimits,
    /// Give up reconnecting a broken upstream stream after this. Default 60 s.
    pub upstream_reconnect_max: Duration,
    /// Upstream SSE per-read idle timeout. Default 5 min.
    pub sse_idle_timeout: Duration,
    /// Extra allowed origins, normalised to lowercase without a trailing slash.
    pub allowed_origins: Vec<String>,
    /// Admin API listener. Default: none.
    pub admin_bind: Option<SocketAddr>,
    /// Bearer token for the admin API. Default: none (then loopback only).
    pub admin_token: Option<Secret>,
    /// Log lines as JSON objects. Default false (text).
    pub log_json: bool,
    /// Shutdown grace. Default 10 s.
    pub shutdown_grace: Duration,
    /// Inbound authentication. Default off.
    pub auth: crate::gate::auth::AuthConfig,
    /// Bearer token `/metrics` requires. Default none (open).
    pub metrics_token: Option<Secret>,
    /// Headers added to every HTTP upstream request, environment already expanded.
    pub upstream_headers: Vec<(String, Secret)>,
    /// Environment of stdio children: extra variables, and whether to start from empty.
    pub stdio_env: ChildEnv,
    /// Rate limits. Default none.
    pub limits: crate::gate::ratelimit::Limits,
    /// Peers whose `X-Forwarded-For` is believed. Default none.
    pub trusted_proxies: Vec<crate::gate::ratelimit::Cidr>,
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

/// The environment stdio children start with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChildEnv {
    /// Variables set (after expansion); values are secrets.
    pub vars: Vec<(String, Secret)>,
    /// Start from an empty environment instead of the proxy's.
    pub clear: bool,
}

impl Config {
    /// The upstream's short name, as logs and metrics show it: `host:port` of an HTTP
    /// upstream, the program's file name of a stdio one.
    pub fn upstream_name(&self) -> String {
        match &self.upstream {
            UpstreamConfig::Http { url } => url_authority(url).to_owned(),
            UpstreamConfig::Stdio { argv, .. } => program_name(argv).to_owned(),
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
