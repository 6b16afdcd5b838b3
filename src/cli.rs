//! The command line: the argh structs (they are the `--help` text) and the one function that
//! turns raw `reverse` flags into a validated [`Config`].
//!
//! [`ReverseArgs::into_config`] validates the flags once at start-up and fails with one clear
//! line; nothing re-checks later. The flag syntax lives here too: `${VAR}` expansion, tokens from
//! a flag or the environment, `Name: value` headers and `KEY=VALUE` variables.
//!
//! Durations accept `500ms`, `10s`, `5m`, `1h` or a bare number of seconds. Sizes accept a bare
//! number of bytes or a `KiB`/`MiB` suffix.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use argh::FromArgs;

mod faults;
mod file;
mod members;
mod overrides;
pub use file::expand as expand_config_file;

use crate::config::{
    AdminConfig, BridgeConfig, ChildEnv, ClientTlsConfig, Config, GateConfig, HttpUpstreamConfig,
    ListenConfig, ProxyConfig, RedactRules, Secret, SessionConfig, StdioMode, StdioUpstreamConfig,
    TapeConfig, UpstreamConfig,
};
use crate::error::Error;
use crate::gate::auth::AuthConfig;
use crate::gate::ratelimit::Limits;
use crate::http::TlsFiles;
use crate::http::origin::{normalize_origin, parse_authority};
use crate::stream::{MAX_REPLAY_BYTES, ReplayLimits};
use crate::util::{duration, size, split_command};

/// shadowcat: a small, fast reverse proxy for the Model Context Protocol.
#[derive(FromArgs, Debug)]
#[argh(note = "shadowcat --version prints the version and the git revision it was built from.")]
pub struct Cli {
    /// what to run
    #[argh(subcommand)]
    pub command: Command,
}

/// What to run.
#[derive(FromArgs, Debug)]
#[allow(clippy::large_enum_variant)] // parsed once at start-up
#[argh(subcommand)]
pub enum Command {
    /// Serve Streamable HTTP in front of an upstream MCP server.
    Reverse(ReverseArgs),
    /// Run the built-in demo MCP server on stdin/stdout.
    DemoServer(crate::tools::demo::DemoServerArgs),
    /// Load-test a Streamable HTTP MCP endpoint.
    Bench(crate::tools::bench::BenchArgs),
    /// Inspect, check, redact and compare tapes.
    Tape(crate::tools::tape::TapeArgs),
    /// Serve a tape as an MCP server.
    Replay(crate::tools::tape::ReplayArgs),
    /// Validate a config file without starting anything.
    CheckConfig(CheckConfigArgs),
}

/// read a config file as `shadowcat reverse --config FILE` would, validate every part, and
/// print the resulting configuration (secrets redacted) without starting anything
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "check-config")]
pub struct CheckConfigArgs {
    /// the TOML file (keys are the flags of `shadowcat reverse` without --)
    #[argh(positional)]
    pub file: String,
}

impl CheckConfigArgs {
    /// The configuration `file` gives, as `/admin/config` shows it; or why it is invalid.
    pub fn run(&self, self_exe: &str) -> Result<String, Error> {
        file::check(&self.file, self_exe)
    }
}

/// serve Streamable HTTP on --bind and forward to one upstream: --upstream URL (an HTTP MCP
/// server), --stdio "CMD ARGS" (persistent child processes), or neither (the built-in demo server)
#[derive(FromArgs, argh::ArgsInfo, Debug)]
#[argh(subcommand, name = "reverse")]
pub struct ReverseArgs {
    /// read flags from this TOML file: each key is a flag without its -- (`bind =
    /// "127.0.0.1:8080"`, `stdio = "..."`, lists for repeatable flags); a flag on the command
    /// line replaces the file's key; `shadowcat check-config FILE` validates one
    #[argh(option)]
    pub config: Option<String>,

    /// address to listen on (default 127.0.0.1:8080); use port 0 for any free port
    #[argh(option, default = "default_bind()")]
    pub bind: SocketAddr,

    /// path of the MCP endpoint (default /mcp)
    #[argh(option, default = "String::from(\"/mcp\")")]
    pub path: String,

    /// serve HTTPS with this PEM certificate chain, leaf first; needs --tls-key; re-read on
    /// SIGHUP (default: plain HTTP)
    #[argh(option)]
    pub tls_cert: Option<String>,

    /// PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1); re-read on SIGHUP
    #[argh(option)]
    pub tls_key: Option<String>,

    /// require a client certificate issued by one of these PEM CAs (mTLS); without token auth
    /// its subject (CN, else first SAN) is the caller's principal (default: none asked)
    #[argh(option)]
    pub tls_client_ca: Option<String>,

    /// refuse client certificates these PEM CRLs revoke (and any whose status they do not
    /// cover); needs --tls-client-ca; re-read on SIGHUP (default: no revocation check)
    #[argh(option)]
    pub tls_client_crl: Option<String>,

    /// upstream Streamable HTTP endpoint, used verbatim (e.g. http://127.0.0.1:3001/mcp or
    /// https://mcp.example.com/mcp; https verifies the server's name and certificate)
    #[argh(option)]
    pub upstream: Option<String>,

    /// upstream stdio server command, split into argv without a shell: whitespace separates
    /// words, 'single' and "double" quotes group them, backslash escapes the next character
    #[argh(option)]
    pub stdio: Option<String>,

    /// with [upstream.NAME] tables in --config: what joins an upstream's prefix and its tool
    /// and prompt names (default __: the spec's tool-name characters, and what model APIs take)
    #[argh(option, default = "String::from(\"__\")")]
    pub name_separator: String,

    /// how sessions use stdio children: shared (default; sessions pinned to a fixed set of
    /// persistent children, JSON-RPC ids rewritten) or per-session (each session gets its own
    /// child from a warm pool, killed when the session ends)
    #[argh(option, default = "String::from(\"shared\")")]
    pub stdio_mode: String,

    /// shared: number of persistent children (default 2); per-session: most children at
    /// once, spares included (default 16)
    #[argh(option)]
    pub stdio_children: Option<usize>,

    /// per-session: warm children kept ready for new sessions (default 2)
    #[argh(option, default = "2")]
    pub stdio_spares: usize,

    /// shared: calls that may wait at once for their child (default 32 per child); a call
    /// whose client can take server-to-client requests, or asked for logs, runs without other
    /// sessions' calls on its child, and they wait for it; beyond, 503
    #[argh(option, default = "32")]
    pub stdio_queue: usize,

    /// shared: tools whose calls run alone on their child whoever calls them, so that their
    /// logs reach clients that never called logging/setLevel; a name or a comma list,
    /// repeatable, at most 256 names of at most 128 bytes (default: none)
    #[argh(option)]
    pub stdio_exclusive_tools: Vec<String>,

    /// shared: on (default) or off; when on, a tool seen logging during 2 calls that were
    /// alone on their child, and during at least as many such calls as not, becomes exclusive
    /// (see --stdio-exclusive-tools); at most 256 tools
    #[argh(option, default = "String::from(\"on\")")]
    pub stdio_learn_exclusive: String,

    /// requests handled at once (default 64); more wait for a free worker
    #[argh(option, default = "64")]
    pub workers: usize,

    /// open client connections allowed (default 1024); beyond, a new connection gets 503
    #[argh(option, default = "1024")]
    pub max_connections: usize,

    /// streaming (SSE) responses open at once (default 1024); beyond, 503
    #[argh(option, default = "1024")]
    pub max_streams: usize,

    /// largest request body in bytes, or with KiB/MiB (default 4MiB); larger gets 413
    #[argh(option, default = "String::from(\"4MiB\")")]
    pub max_body: String,

    /// largest line a stdio child may print, bytes or KiB/MiB (default 16MiB)
    #[argh(option, default = "String::from(\"16MiB\")")]
    pub max_message: String,

    /// bytes of one stdio call's progress and logs queued for a client that does not read,
    /// bytes or KiB/MiB (default 8MiB); beyond, they are dropped (never the response)
    #[argh(option, default = "String::from(\"8MiB\")")]
    pub max_call_buffer: String,

    /// resources/subscribe URIs one session may hold with shared stdio children (default
    /// 64); beyond, that request gets a JSON-RPC error
    #[argh(option, default = "64")]
    pub max_subscriptions: usize,

    /// sessions kept at once (default 10000); when full, expired ones are dropped, else 503
    #[argh(option, default = "10_000")]
    pub max_sessions: usize,

    /// sessions one client (its principal, or its IP when unauthenticated) may hold; beyond,
    /// 429 (default 64, but at most half of --max-sessions, and in per-session mode of
    /// --stdio-children, so that one client never holds them all)
    #[argh(option)]
    pub max_sessions_per_client: Option<usize>,

    /// streams one client may have open; beyond, 429 (default 32, but at most half of
    /// --max-streams)
    #[argh(option)]
    pub max_streams_per_client: Option<usize>,

    /// a session unused this long is ended (default 30m)
    #[argh(option, default = "String::from(\"30m\")")]
    pub session_idle: String,

    /// per-session: when all children are taken, the session unused longest is ended to make
    /// room if it was unused this long and has no call in flight (default 60s); else 503
    #[argh(option, default = "String::from(\"60s\")")]
    pub session_evict_idle: String,

    /// an idle keep-alive client connection is closed after this (default 60s)
    #[argh(option, default = "String::from(\"60s\")")]
    pub client_idle_timeout: String,

    /// a client that acknowledges nothing written to it while writes wait this long in all
    /// is disconnected (default 10s); no worker is held while writing
    #[argh(option, default = "String::from(\"10s\")")]
    pub client_write_timeout: String,

    /// deadline for one upstream request, from arrival to the upstream's answer (default 60s)
    #[argh(option, default = "String::from(\"60s\")")]
    pub request_timeout: String,

    /// ttlMs of list and read results bridged from a session-era upstream to 2026-07-28
    /// clients (default 0s)
    #[argh(option, default = "String::from(\"0s\")")]
    pub cache_ttl: String,

    /// how long a bridged call waits for its 2026-07-28 client to retry with inputResponses
    /// before it is cancelled upstream (default 5m)
    #[argh(option, default = "String::from(\"5m\")")]
    pub input_timeout: String,

    /// bridged calls one client (its principal, or its IP) may have waiting for its
    /// inputResponses at once (default 16); beyond, the call is cancelled upstream and 429
    #[argh(option, default = "16")]
    pub input_max_per_client: usize,

    /// connection slots per HTTP upstream (default 32); a checkout waits at most 2s, then 503
    #[argh(option, default = "32")]
    pub upstream_pool: u32,

    /// TCP connect timeout to an HTTP upstream (default 5s)
    #[argh(option, default = "String::from(\"5s\")")]
    pub upstream_connect_timeout: String,

    /// trust only these PEM CA certificates for an https --upstream and --jwks-url (default:
    /// the Mozilla roots built in; pass /etc/ssl/certs/ca-certificates.crt for the system's)
    #[argh(option)]
    pub upstream_ca: Option<String>,

    /// PEM certificate chain shown to an https --upstream (and --jwks-url) that asks for one
    /// (mTLS); needs --upstream-client-key (default: none)
    #[argh(option)]
    pub upstream_client_cert: Option<String>,

    /// PEM private key of --upstream-client-cert
    #[argh(option)]
    pub upstream_client_key: Option<String>,

    /// comment keep-alive interval on open SSE streams (default 15s)
    #[argh(option, default = "String::from(\"15s\")")]
    pub sse_keepalive: String,

    /// events kept per SSE stream for resumption with Last-Event-ID (default 256)
    #[argh(option, default = "256")]
    pub replay_events: usize,

    /// how long an ended SSE stream stays resumable (default 5m)
    #[argh(option, default = "String::from(\"5m\")")]
    pub replay_ttl: String,

    /// bytes all SSE replay logs of all sessions may hold together, bytes or KiB/MiB
    /// (default 256MiB); beyond, the oldest ended streams are forgotten first
    #[argh(option, default = "String::from(\"256MiB\")")]
    pub replay_budget: String,

    /// how long to keep reconnecting a broken upstream SSE stream, with backoff (default 60s)
    #[argh(option, default = "String::from(\"60s\")")]
    pub upstream_reconnect_max: String,

    /// longest silence allowed between two reads of an upstream HTTP stream (default 5m)
    #[argh(option, default = "String::from(\"5m\")")]
    pub sse_idle_timeout: String,

    /// extra allowed Origin, exact (e.g. https://app.example.com); repeatable. Loopback origins
    /// (http/https on localhost, 127.0.0.1, [::1], any port) are always allowed; browsers on an
    /// allowed origin get CORS answers (preflight, Access-Control-Allow-Origin)
    #[argh(option)]
    pub allowed_origin: Vec<String>,

    /// how long a browser may cache a CORS preflight answer (default 2h, Chromium's cap;
    /// 0 for not at all)
    #[argh(option, default = "String::from(\"2h\")")]
    pub cors_max_age: String,

    /// admin API listener (off unless given); loopback only unless --admin-token is set
    #[argh(option)]
    pub admin_bind: Option<SocketAddr>,

    /// bearer token the admin API requires (then it may listen on any address); the
    /// environment variable SHADOWCAT_ADMIN_TOKEN works too and keeps it out of `ps`
    #[argh(option)]
    pub admin_token: Option<String>,

    /// serve the admin API over HTTPS with this PEM certificate chain (may be the --tls-cert
    /// file); needs --admin-tls-key; re-read on SIGHUP (default: plain HTTP)
    #[argh(option)]
    pub admin_tls_cert: Option<String>,

    /// PEM private key of --admin-tls-cert
    #[argh(option)]
    pub admin_tls_key: Option<String>,

    /// log line format: text (default) or json (one JSON object per line)
    #[argh(option, default = "String::from(\"text\")")]
    pub log_format: String,

    /// how long in-flight requests may take to finish on shutdown (default 10s)
    #[argh(option, default = "String::from(\"10s\")")]
    pub shutdown_grace: String,

    /// require a bearer token from this file on the MCP endpoint: one per line as
    /// a TOKEN and an optional NAME, # comments, tokens of 16+ characters (default: no
    /// inbound auth)
    #[argh(option)]
    pub auth_tokens: Option<String>,

    /// require JWT bearer tokens, verified with --jwt-secret-file (HS256) or --jwks-file /
    /// --jwks-url (RS256, ES256); aud must be --resource-url, exp and sub are required
    #[argh(switch)]
    pub auth_jwt: bool,

    /// HMAC secret for HS256 JWTs, read from this file (16+ bytes, one trailing newline
    /// ignored)
    #[argh(option)]
    pub jwt_secret_file: Option<String>,

    /// JWK set for RS256/ES256 JWTs, read from this file (re-read for an unknown kid)
    #[argh(option)]
    pub jwks_file: Option<String>,

    /// JWK set fetched from this http(s) URL at start-up, cached, refetched for an unknown
    /// kid (at most every 10s) and after 1h
    #[argh(option)]
    pub jwks_url: Option<String>,

    /// JWT algorithms accepted, comma-separated (default HS256 with a secret, RS256,ES256
    /// with a JWK set)
    #[argh(option)]
    pub jwt_algorithms: Option<String>,

    /// required JWT issuer (iss); default: not checked
    #[argh(option)]
    pub jwt_issuer: Option<String>,

    /// clock skew allowed on JWT exp and nbf (default 30s; 0 for none)
    #[argh(option, default = "String::from(\"30s\")")]
    pub jwt_leeway: String,

    /// scope every JWT must carry (in its scope or scp claim); repeatable; missing → 403
    #[argh(option)]
    pub required_scope: Vec<String>,

    /// this proxy's MCP URL as clients reach it: the JWT audience and the metadata's
    /// resource (default http://<bind address><path>, https with --tls-cert)
    #[argh(option)]
    pub resource_url: Option<String>,

    /// OAuth authorization server (issuer URL) listed in the protected resource metadata;
    /// repeatable
    #[argh(option)]
    pub authorization_server: Vec<String>,

    /// bearer token /metrics requires (default: open); SHADOWCAT_METRICS_TOKEN works too
    #[argh(option)]
    pub metrics_token: Option<String>,

    /// header sent on every request to an HTTP upstream, as 'Name: value'; ${VAR} in the
    /// value is taken from the environment at start-up; values never logged; repeatable
    #[argh(option)]
    pub upstream_header: Vec<String>,

    /// environment variable for stdio children, KEY=VALUE, with ${VAR} expansion;
    /// repeatable; values never logged
    #[argh(option)]
    pub stdio_env: Vec<String>,

    /// start stdio children with only the --stdio-env variables (pass 'PATH=${PATH}' if the
    /// command needs it)
    #[argh(switch)]
    pub stdio_clear_env: bool,

    /// per-client rate limit, RATE/BURST: requests per second and bucket size, e.g. 20/40;
    /// a client is its principal, or its IP when unauthenticated (default: none)
    #[argh(option)]
    pub rate_limit: Option<String>,

    /// limit on all clients together, RATE/BURST (default: none)
    #[argh(option)]
    pub global_rate_limit: Option<String>,

    /// per-client limit for one tool's tools/call, NAME=RATE/BURST; repeatable
    #[argh(option)]
    pub tool_limit: Vec<String>,

    /// proxy address or CIDR whose X-Forwarded-For is believed, e.g. 10.0.0.0/8;
    /// repeatable (default: none, the TCP peer is the client)
    #[argh(option)]
    pub trusted_proxy: Vec<String>,

    /// most rate-limit buckets kept; idle (full) ones are evicted first (default 10000)
    #[argh(option, default = "10_000")]
    pub rate_limit_keys: usize,

    /// record every message in both directions to tapes in this directory, one per session
    /// and one per stateless client per hour, redacted (JSON Lines, docs/tape-format.md;
    /// default: off)
    #[argh(option)]
    pub record: Option<String>,

    /// a tape larger than this continues in a new part, bytes or KiB/MiB (default 64MiB)
    #[argh(option, default = "String::from(\"64MiB\")")]
    pub record_max_bytes: String,

    /// tapes not written for this long are deleted (default 7d)
    #[argh(option, default = "String::from(\"7d\")")]
    pub record_keep: String,

    /// redaction rule for tapes and audited arguments, on top of the default keys (password,
    /// secret, token, api_key, apikey, authorization, cookie): key=NAME,... or
    /// pointer=/json/pointer; repeatable
    #[argh(option)]
    pub redact: Vec<String>,

    /// write one JSON line per MCP request (refusals included) to this file, or - for stdout
    /// (default: off)
    #[argh(option)]
    pub audit_log: Option<String>,

    /// audit lines include the request's arguments, redacted as in tapes (default: off)
    #[argh(switch)]
    pub audit_arguments: bool,

    /// this instance's name behind a load balancer, the first part of every session id:
    /// 1-32 of A-Z a-z 0-9 _ - (default: host name and listen port, e.g. web1-8080)
    #[argh(option)]
    pub instance_id: Option<String>,

    /// on SIGTERM, how long /readyz says 503 and new sessions are refused while other
    /// requests are still served, before the listener closes (default 0s; behind a load
    /// balancer: more than its health-check interval times its fall count)
    #[argh(option, default = "String::from(\"0s\")")]
    pub drain_time: String,

    /// keep the rate-limit buckets in Redis, shared by every instance:
    /// redis://host:port/db (default: in this process)
    #[argh(option)]
    pub limits_store: Option<String>,

    /// when --limits-store is unreachable: open (default; this instance's own buckets
    /// decide, with a warning and a metric) or closed (503)
    #[argh(option, default = "String::from(\"open\")")]
    pub limits_store_fail: String,

    /// with --limits-store: how much of a fast bucket's refill (1,000 tokens/s or more) one
    /// Redis round trip takes ahead of use, spent here without a round trip (default 2ms, at
    /// most 10ms; 0: every check is a round trip). Never admits more than a limit; wastes at
    /// most this much of a bucket's rate every 50 ms per instance
    #[argh(option, default = "String::from(\"2ms\")")]
    pub limits_store_lease: String,

    /// seed of the random draws of the config file's [[fault]] rules' probabilities, for
    /// repeatable runs (default: from the clock)
    #[argh(option)]
    pub fault_seed: Option<u64>,
}

fn default_bind() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

/// The upstream `--upstream` or `--stdio` chose, before the flags of its kind are read.
enum Chosen {
    Http(String),
    Stdio {
        argv: Vec<String>,
        children: usize,
        mode: StdioMode,
    },
}

impl ReverseArgs {
    /// Validates the flags. `self_exe` is the program to spawn for the built-in demo server.
    pub fn into_config(self, self_exe: &str) -> Result<Config, Error> {
        let federation = match &self.config {
            Some(path) => members::federation(path, &self.name_separator, self_exe)?,
            None => None,
        };
        if federation.is_some() && (self.upstream.is_some() || self.stdio.is_some()) {
            return Err(Error::Config(
                "--upstream and --stdio cannot be given with [upstream.NAME] tables".into(),
            ));
        }
        let mut auth = self.auth_config()?;
        let tapes = self.tape_config()?;
        let (listen_tls, admin_tls, client_tls) = self.tls_config()?;
        let chosen = match (self.upstream, self.stdio) {
            (Some(_), Some(_)) => {
                return Err(Error::Config(
                    "give either --upstream or --stdio, not both".into(),
                ));
            }
            (Some(url), None) => {
                if !url.starts_with("http://") && !url.starts_with("https://") {
                    return Err(Error::Config(format!(
                        "--upstream must be an http:// or https:// URL (got {url:?})"
                    )));
                }
                Chosen::Http(url)
            }
            (None, cmd) => {
                let argv = match cmd {
                    Some(cmd) => {
                        split_command(&cmd).map_err(|e| Error::Config(format!("--stdio: {e}")))?
                    }
                    None => vec![self_exe.to_string(), "demo-server".to_string()],
                };
                if argv.is_empty() {
                    return Err(Error::Config("--stdio: empty command".into()));
                }
                let (mode, default_children, cap) = match self.stdio_mode.as_str() {
                    "shared" => (StdioMode::Shared, 2, 256),
                    "per-session" => (
                        StdioMode::PerSession {
                            spares: self.stdio_spares,
                        },
                        16,
                        4096,
                    ),
                    other => {
                        return Err(Error::Config(format!(
                            "--stdio-mode {other:?}: use shared or per-session"
                        )));
                    }
                };
                let children = self.stdio_children.unwrap_or(default_children);
                if children == 0 || children > cap {
                    return Err(Error::Config(format!("--stdio-children must be 1..={cap}")));
                }
                Chosen::Stdio {
                    argv,
                    children,
                    mode,
                }
            }
        };
        if !self.path.starts_with('/') {
            return Err(Error::Config(format!(
                "--path must start with '/' (got {:?})",
                self.path
            )));
        }
        positive("--workers", self.workers)?;
        positive("--max-connections", self.max_connections)?;
        positive("--max-streams", self.max_streams)?;
        positive("--max-sessions", self.max_sessions)?;
        if let Some(n) = self.max_sessions_per_client {
            positive("--max-sessions-per-client", n)?;
        }
        if let Some(n) = self.max_streams_per_client {
            positive("--max-streams-per-client", n)?;
        }
        positive("--upstream-pool", self.upstream_pool as usize)?;
        positive("--replay-events", self.replay_events)?;
        positive("--max-subscriptions", self.max_subscriptions)?;
        positive("--stdio-queue", self.stdio_queue)?;
        let exclusive_tools =
            crate::upstream::stdio::exclusive::parse_names(&self.stdio_exclusive_tools)
                .map_err(|e| Error::Config(format!("--stdio-exclusive-tools: {e}")))?;
        let shared_stdio = matches!(
            chosen,
            Chosen::Stdio {
                mode: StdioMode::Shared,
                ..
            }
        );
        if !exclusive_tools.is_empty() && !shared_stdio {
            return Err(Error::Config(
                "--stdio-exclusive-tools needs shared stdio children (a per-session child or an \
                 HTTP upstream never mixes sessions' calls)"
                    .into(),
            ));
        }
        let learn_exclusive = match self.stdio_learn_exclusive.as_str() {
            "on" => true,
            "off" => false,
            other => {
                return Err(Error::Config(format!(
                    "--stdio-learn-exclusive {other:?}: use on or off"
                )));
            }
        };
        positive("--input-max-per-client", self.input_max_per_client)?;
        let log_json = match self.log_format.as_str() {
            "text" => false,
            "json" => true,
            other => {
                return Err(Error::Config(format!(
                    "--log-format {other:?}: use text or json"
                )));
            }
        };
        let admin_token = token("--admin-token", self.admin_token, "SHADOWCAT_ADMIN_TOKEN")?;
        let metrics_token = token(
            "--metrics-token",
            self.metrics_token.clone(),
            "SHADOWCAT_METRICS_TOKEN",
        )?;
        if let Some(a) = self.admin_bind
            && !a.ip().is_loopback()
            && admin_token.is_none()
        {
            return Err(Error::Config(format!(
                "--admin-bind {a} is not loopback: set --admin-token too"
            )));
        }
        let upstream_headers = self
            .upstream_header
            .iter()
            .map(|h| upstream_header(h))
            .collect::<Result<Vec<_>, _>>()?;
        if !upstream_headers.is_empty() && !matches!(chosen, Chosen::Http(_)) {
            return Err(Error::Config(
                "--upstream-header needs an HTTP --upstream".into(),
            ));
        }
        let stdio_env = ChildEnv {
            vars: self
                .stdio_env
                .iter()
                .map(|kv| child_var(kv))
                .collect::<Result<Vec<_>, _>>()?,
            clear: self.stdio_clear_env,
        };
        if (stdio_env.clear || !stdio_env.vars.is_empty())
            && !matches!(chosen, Chosen::Stdio { .. })
        {
            return Err(Error::Config(
                "--stdio-env and --stdio-clear-env need a stdio upstream".into(),
            ));
        }
        let rate = |flag: &str, v: &Option<String>| {
            v.as_deref()
                .map(|r| r.parse().map_err(|e| Error::Config(format!("{flag}: {e}"))))
                .transpose()
        };
        positive("--rate-limit-keys", self.rate_limit_keys)?;
        let limits = Limits {
            per_client: rate("--rate-limit", &self.rate_limit)?,
            global: rate("--global-rate-limit", &self.global_rate_limit)?,
            tools: self
                .tool_limit
                .iter()
                .map(|t| {
                    t.parse()
                        .map_err(|e| Error::Config(format!("--tool-limit: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?,
            max_keys: self.rate_limit_keys,
        };
        let trusted_proxies = self
            .trusted_proxy
            .iter()
            .map(|c| {
                c.parse()
                    .map_err(|e| Error::Config(format!("--trusted-proxy: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let allowed_origins = self
            .allowed_origin
            .iter()
            .map(|o| allowed_origin(o))
            .collect::<Result<Vec<_>, _>>()?;
        let cors_max_age = match self.cors_max_age.trim() {
            "0" => Duration::ZERO,
            other => duration("--cors-max-age", other)?,
        };
        // Parsed in this order, so that of several bad values the same one is reported.
        let max_body = size("--max-body", &self.max_body)?;
        let max_message = size("--max-message", &self.max_message)?;
        let max_call_buffer = size("--max-call-buffer", &self.max_call_buffer)?;
        positive("--max-call-buffer", max_call_buffer)?;
        let replay_budget = size("--replay-budget", &self.replay_budget)?;
        positive("--replay-budget", replay_budget)?;
        let session_idle = duration("--session-idle", &self.session_idle)?;
        let evict_idle = duration("--session-evict-idle", &self.session_evict_idle)?;
        let client_idle_timeout = duration("--client-idle-timeout", &self.client_idle_timeout)?;
        let client_write_timeout = duration("--client-write-timeout", &self.client_write_timeout)?;
        let request_timeout = duration("--request-timeout", &self.request_timeout)?;
        // 0 (the default) is a valid ttlMs: do not cache.
        let cache_ttl = match self.cache_ttl.trim().trim_end_matches(['m', 's']) {
            "0" => Duration::ZERO,
            _ => duration("--cache-ttl", &self.cache_ttl)?,
        };
        let input_timeout = duration("--input-timeout", &self.input_timeout)?;
        let connect_timeout =
            duration("--upstream-connect-timeout", &self.upstream_connect_timeout)?;
        let sse_keepalive = duration("--sse-keepalive", &self.sse_keepalive)?;
        let stream_idle = duration("--sse-idle-timeout", &self.sse_idle_timeout)?;
        let replay_ttl = duration("--replay-ttl", &self.replay_ttl)?;
        let reconnect_max = duration("--upstream-reconnect-max", &self.upstream_reconnect_max)?;
        let shutdown_grace = duration("--shutdown-grace", &self.shutdown_grace)?;
        let instance =
            crate::config::InstanceConfig::new(self.instance_id.as_deref(), self.bind.port())
                .map_err(Error::Config)?;
        // What one client may hold: by default 64 sessions and 32 streams, and never more than
        // half of what there is, so that another client always finds room. A value given
        // explicitly is the operator's.
        let session_room = match &chosen {
            Chosen::Stdio {
                children,
                mode: StdioMode::PerSession { .. },
                ..
            } => self.max_sessions.min(*children),
            _ => self.max_sessions,
        };
        let half = |n: usize| (n / 2).max(1);
        let max_sessions_per_client = self
            .max_sessions_per_client
            .unwrap_or_else(|| half(session_room).min(64));
        let max_streams_per_client = self
            .max_streams_per_client
            .unwrap_or_else(|| half(self.max_streams).min(32));
        let https_upstream = matches!(&chosen, Chosen::Http(u) if u.starts_with("https://"));
        let https_jwks = auth
            .jwks_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"));
        if client_tls != ClientTlsConfig::default() && !https_upstream && !https_jwks {
            return Err(Error::Config(
                "--upstream-ca and --upstream-client-* need an https:// --upstream or --jwks-url"
                    .into(),
            ));
        }
        auth.jwks_tls = client_tls.clone();
        let upstream = match chosen {
            Chosen::Http(url) => UpstreamConfig::Http(HttpUpstreamConfig {
                url,
                pool: self.upstream_pool,
                stream_slots: self.max_streams as u32,
                connect_timeout,
                request_timeout,
                stream_idle,
                reconnect_max,
                headers: upstream_headers,
                tls: client_tls,
                input_timeout,
            }),
            Chosen::Stdio {
                argv,
                children,
                mode,
            } => UpstreamConfig::Stdio(StdioUpstreamConfig {
                argv,
                children,
                mode,
                env: stdio_env,
                max_message,
                max_call_buffer,
                max_subscriptions: self.max_subscriptions,
                evict_idle,
                queue: self.stdio_queue,
                exclusive_tools,
                learn_exclusive,
                input_timeout,
            }),
        };
        let upstream = federation.map_or(upstream, UpstreamConfig::Federated);
        let faults = faults::read(self.config.as_deref(), &upstream.name(), self.fault_seed)?;
        Ok(Config {
            listen: ListenConfig {
                bind: self.bind,
                workers: self.workers,
                max_connections: self.max_connections,
                max_streams: self.max_streams,
                max_body,
                client_idle_timeout,
                client_write_timeout,
                worker_wait: request_timeout,
                tls: listen_tls,
            },
            proxy: ProxyConfig {
                path: self.path,
                allowed_origins,
                cors_max_age,
                request_timeout,
                sse_keepalive,
                log_json,
                loopback: self.bind.ip().is_loopback(),
                max_streams_per_client,
                bridge: BridgeConfig {
                    // A requestState names its instance, so a load balancer routes the retry.
                    instance: instance.id.clone(),
                    max_per_client: self.input_max_per_client,
                    ..BridgeConfig::new(cache_ttl, input_timeout)
                },
            },
            sessions: SessionConfig {
                max: self.max_sessions,
                max_per_client: max_sessions_per_client,
                idle: session_idle,
                replay: ReplayLimits {
                    events: self.replay_events,
                    bytes: MAX_REPLAY_BYTES,
                    ttl: replay_ttl,
                    budget: replay_budget,
                },
            },
            upstream,
            gate: GateConfig {
                auth,
                limits,
                trusted_proxies,
                metrics_token,
                limits_store: self
                    .limits_store
                    .as_deref()
                    .map(|u| {
                        crate::gate::ratelimit::StoreConfig::new(u, &self.limits_store_fail)?
                            .with_lease(&self.limits_store_lease)
                    })
                    .transpose()
                    .map_err(Error::Config)?,
            },
            admin: self.admin_bind.map(|bind| AdminConfig {
                bind,
                token: admin_token,
                tls: admin_tls,
            }),
            instance,
            shutdown_grace,
            tapes,
            faults,
            drain_time: match self.drain_time.trim() {
                "0" | "0s" | "0ms" => Duration::ZERO,
                d => duration("--drain-time", d)?,
            },
        })
    }

    /// The TLS files: the listener's (`--tls-*`), the admin listener's (`--admin-tls-*`) and
    /// ours as a client (`--upstream-ca`, `--upstream-client-*`). Pairs come whole; the files
    /// themselves are read at start-up, by the part that uses them.
    fn tls_config(&self) -> Result<(Option<TlsFiles>, Option<TlsFiles>, ClientTlsConfig), Error> {
        let path = |p: &Option<String>| p.as_ref().map(PathBuf::from);
        let pair = |cert: &Option<String>, key: &Option<String>, names: &str| match (
            path(cert),
            path(key),
        ) {
            (Some(cert), Some(key)) => Ok(Some((cert, key))),
            (None, None) => Ok(None),
            _ => Err(Error::Config(format!("give {names} together"))),
        };
        let listen = pair(&self.tls_cert, &self.tls_key, "--tls-cert and --tls-key")?;
        if listen.is_none() && self.tls_client_ca.is_some() {
            return Err(Error::Config(
                "--tls-client-ca needs --tls-cert and --tls-key".into(),
            ));
        }
        if self.tls_client_ca.is_none() && self.tls_client_crl.is_some() {
            return Err(Error::Config(
                "--tls-client-crl needs --tls-client-ca".into(),
            ));
        }
        let listen = listen.map(|(cert, key)| TlsFiles {
            cert,
            key,
            client_ca: path(&self.tls_client_ca),
            client_crl: path(&self.tls_client_crl),
        });
        let admin = pair(
            &self.admin_tls_cert,
            &self.admin_tls_key,
            "--admin-tls-cert and --admin-tls-key",
        )?;
        if admin.is_some() && self.admin_bind.is_none() {
            return Err(Error::Config("--admin-tls-* need --admin-bind".into()));
        }
        let admin = admin.map(|(cert, key)| TlsFiles {
            cert,
            key,
            client_ca: None,
            client_crl: None,
        });
        let client = pair(
            &self.upstream_client_cert,
            &self.upstream_client_key,
            "--upstream-client-cert and --upstream-client-key",
        )?;
        let (client_cert, client_key) = client.unzip();
        let client = ClientTlsConfig {
            ca: path(&self.upstream_ca),
            client_cert,
            client_key,
        };
        Ok((listen, admin, client))
    }

    /// `--record*`, `--redact` and `--audit-*`, checked together.
    fn tape_config(&self) -> Result<TapeConfig, Error> {
        let max_bytes = size("--record-max-bytes", &self.record_max_bytes)?;
        if max_bytes < 4096 {
            return Err(Error::Config(
                "--record-max-bytes must be at least 4KiB".into(),
            ));
        }
        let keep = duration("--record-keep", &self.record_keep)?;
        let mut redact = RedactRules::default();
        for rule in &self.redact {
            parse_redact(rule, &mut redact)?;
        }
        if self.audit_arguments && self.audit_log.is_none() {
            return Err(Error::Config("--audit-arguments needs --audit-log".into()));
        }
        if !self.redact.is_empty() && self.record.is_none() && !self.audit_arguments {
            return Err(Error::Config(
                "--redact applies to --record and --audit-arguments: give one of them".into(),
            ));
        }
        if let Some(r) = &self.record
            && r.is_empty()
        {
            return Err(Error::Config("--record: empty directory name".into()));
        }
        if let Some(a) = &self.audit_log
            && a.is_empty()
        {
            return Err(Error::Config("--audit-log: empty file name".into()));
        }
        Ok(TapeConfig {
            record: self.record.as_ref().map(std::path::PathBuf::from),
            max_bytes: max_bytes as u64,
            keep,
            audit_log: self.audit_log.clone(),
            audit_arguments: self.audit_arguments,
            redact,
            queue_bytes: crate::tape::DEFAULT_QUEUE_BYTES,
            audit_queue_bytes: crate::tape::audit::DEFAULT_QUEUE_BYTES,
        })
    }

    /// The `--auth-*`, `--jwt-*`, `--jwks-*` and resource flags, checked together.
    fn auth_config(&self) -> Result<AuthConfig, Error> {
        use crate::gate::auth::is_hmac;
        let path = |p: &Option<String>| p.as_ref().map(std::path::PathBuf::from);
        let jwt_flags = self.jwt_secret_file.is_some()
            || self.jwks_file.is_some()
            || self.jwks_url.is_some()
            || self.jwt_algorithms.is_some()
            || self.jwt_issuer.is_some()
            || !self.required_scope.is_empty();
        if jwt_flags && !self.auth_jwt {
            return Err(Error::Config(
                "--jwt-*, --jwks-* and --required-scope need --auth-jwt".into(),
            ));
        }
        let enabled = self.auth_jwt || self.auth_tokens.is_some();
        if !enabled && (self.resource_url.is_some() || !self.authorization_server.is_empty()) {
            return Err(Error::Config(
                "--resource-url and --authorization-server need --auth-tokens or --auth-jwt".into(),
            ));
        }
        if self.jwks_file.is_some() && self.jwks_url.is_some() {
            return Err(Error::Config(
                "give either --jwks-file or --jwks-url, not both".into(),
            ));
        }
        if let Some(u) = &self.jwks_url
            && !u.starts_with("http://")
            && !u.starts_with("https://")
        {
            return Err(Error::Config(format!(
                "--jwks-url must be an http:// or https:// URL (got {u:?})"
            )));
        }
        let has_secret = self.jwt_secret_file.is_some();
        let has_jwks = self.jwks_file.is_some() || self.jwks_url.is_some();
        if self.auth_jwt && !has_secret && !has_jwks {
            return Err(Error::Config(
                "--auth-jwt needs --jwt-secret-file, --jwks-file or --jwks-url".into(),
            ));
        }
        let algorithms = match &self.jwt_algorithms {
            Some(list) => crate::gate::auth::parse_algorithms(list)
                .map_err(|e| Error::Config(format!("--jwt-algorithms: {e}")))?,
            None => {
                let mut v = Vec::new();
                if has_secret {
                    v.push(jsonwebtoken::Algorithm::HS256);
                }
                if has_jwks {
                    v.extend([
                        jsonwebtoken::Algorithm::RS256,
                        jsonwebtoken::Algorithm::ES256,
                    ]);
                }
                v
            }
        };
        for a in &algorithms {
            if is_hmac(*a) && !has_secret {
                return Err(Error::Config(format!(
                    "--jwt-algorithms: {a:?} needs --jwt-secret-file"
                )));
            }
            if !is_hmac(*a) && !has_jwks {
                return Err(Error::Config(format!(
                    "--jwt-algorithms: {a:?} needs --jwks-file or --jwks-url"
                )));
            }
        }
        if let Some(r) = &self.resource_url
            && !r.starts_with("http://")
            && !r.starts_with("https://")
        {
            return Err(Error::Config(format!(
                "--resource-url must be an http:// or https:// URL (got {r:?})"
            )));
        }
        let leeway = match self.jwt_leeway.trim() {
            "0" | "0s" => Duration::ZERO,
            other => duration("--jwt-leeway", other)?,
        };
        Ok(AuthConfig {
            tokens_file: path(&self.auth_tokens),
            jwt: self.auth_jwt,
            jwt_secret_file: path(&self.jwt_secret_file),
            jwks_file: path(&self.jwks_file),
            jwks_url: self.jwks_url.clone(),
            algorithms,
            issuer: self.jwt_issuer.clone(),
            leeway,
            required_scopes: self.required_scope.clone(),
            resource_url: self.resource_url.clone(),
            authorization_servers: self.authorization_server.clone(),
            jwks_min_refresh: crate::gate::auth::JWKS_MIN_REFRESH,
            jwks_tls: ClientTlsConfig::default(),
        })
    }
}

/// A bearer token from its flag, else from the environment variable `env`; empty means none,
/// shorter than 16 characters is refused.
fn token(flag: &str, given: Option<String>, env: &str) -> Result<Option<Secret>, Error> {
    let t = given
        .or_else(|| std::env::var(env).ok())
        .filter(|t| !t.is_empty());
    if t.as_deref().is_some_and(|t| t.len() < 16) {
        return Err(Error::Config(format!(
            "{flag} must be at least 16 characters"
        )));
    }
    Ok(t.map(Secret::new))
}

/// Replaces each `${NAME}` with the environment variable NAME; an unset variable is an error.
/// A `$` not followed by `{` is kept as is.
pub fn expand_env(flag: &str, s: &str) -> Result<String, Error> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find("${") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| Error::Config(format!("{flag}: unterminated ${{ in value")))?;
        let name = &after[..end];
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(Error::Config(format!("{flag}: bad variable name {name:?}")));
        }
        let v = std::env::var(name).map_err(|_| {
            Error::Config(format!("{flag}: environment variable {name} is not set"))
        })?;
        out.push_str(&v);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Parses `--upstream-header 'Name: value'`. Names the proxy sets itself are refused.
fn upstream_header(h: &str) -> Result<(String, Secret), Error> {
    let (name, value) = h.split_once(':').ok_or_else(|| {
        Error::Config(format!(
            "--upstream-header {:?}: expected 'Name: value'",
            h.split(':').next().unwrap_or_default()
        ))
    })?;
    let name = name.trim().to_ascii_lowercase();
    let value = expand_env("--upstream-header", value.trim())?;
    const OURS: [&str; 10] = [
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "content-type",
        "accept",
        "mcp-session-id",
        "mcp-protocol-version",
        "last-event-id",
        "te",
    ];
    if OURS.contains(&name.as_str()) {
        return Err(Error::Config(format!(
            "--upstream-header: {name} is set by the proxy itself"
        )));
    }
    if name.is_empty() || !crate::http::valid_header(&name, &value) {
        return Err(Error::Config(format!(
            "--upstream-header {name:?}: not a valid header name or value"
        )));
    }
    Ok((name, Secret::new(value)))
}

/// Parses `--stdio-env KEY=VALUE`.
fn child_var(kv: &str) -> Result<(String, Secret), Error> {
    let (k, v) = kv
        .split_once('=')
        .ok_or_else(|| Error::Config("--stdio-env: expected KEY=VALUE".into()))?;
    if k.is_empty() || k.contains('\0') || v.contains('\0') {
        return Err(Error::Config(format!(
            "--stdio-env: bad variable name {k:?}"
        )));
    }
    Ok((k.to_owned(), Secret::new(expand_env("--stdio-env", v)?)))
}

/// Parses one `--allowed-origin`: `scheme://host[:port]` and nothing else, normalised as the
/// Origin check compares it. `null` (shared by every sandboxed frame and `file:` page, of any
/// site) and `*` are refused, as is anything with a path.
fn allowed_origin(o: &str) -> Result<String, Error> {
    let n = normalize_origin(o);
    let valid = n.split_once("://").is_some_and(|(scheme, authority)| {
        scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
            && authority.trim_matches([' ', '\t']) == authority
            && parse_authority(authority).is_some()
    });
    if !valid {
        return Err(Error::Config(format!(
            "--allowed-origin {o:?}: not an origin (scheme://host[:port], no path; null and * \
             are refused)"
        )));
    }
    Ok(n)
}

/// Parses one `--redact` rule into `rules`: `key=NAME,...` or `pointer=/json/pointer`.
fn parse_redact(rule: &str, rules: &mut RedactRules) -> Result<(), Error> {
    let bad = |why: &str| Error::Config(format!("--redact {rule:?}: {why}"));
    match rule.split_once('=') {
        Some(("key", names)) => {
            for name in names.split(',').map(str::trim) {
                if name.is_empty() {
                    return Err(bad("empty key name"));
                }
                rules.keys.push(name.to_owned());
            }
            Ok(())
        }
        Some(("pointer", p)) => {
            if !p.starts_with('/') {
                return Err(bad("a JSON pointer starts with '/'"));
            }
            // RFC 6901: `~` only as `~0` or `~1`.
            let mut chars = p.chars();
            while let Some(c) = chars.next() {
                if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
                    return Err(bad("'~' must be followed by 0 or 1"));
                }
            }
            rules.pointers.push(p.to_owned());
            Ok(())
        }
        _ => Err(bad("expected key=NAME,... or pointer=/json/pointer")),
    }
}

fn positive(flag: &str, v: usize) -> Result<(), Error> {
    if v == 0 {
        return Err(Error::Config(format!("{flag} must be at least 1")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, Error> {
        let cli = Cli::from_args(&["shadowcat"], args).map_err(|e| Error::Config(e.output))?;
        match cli.command {
            Command::Reverse(r) => r.into_config("/bin/shadowcat"),
            _ => unreachable!(),
        }
    }

    #[test]
    fn allowed_origins_are_origins_and_cors_max_age_parses() {
        let c = parse(&[
            "reverse",
            "--allowed-origin",
            "https://App.Example.com/",
            "--allowed-origin",
            "http://[::1]:3000",
            "--allowed-origin",
            "chrome-extension://abcdefghijklmnop",
            "--cors-max-age",
            "10m",
        ])
        .unwrap();
        assert_eq!(
            c.proxy.allowed_origins,
            [
                "https://app.example.com",
                "http://[::1]:3000",
                "chrome-extension://abcdefghijklmnop"
            ]
        );
        assert_eq!(c.proxy.cors_max_age, Duration::from_secs(600));
        let zero = parse(&["reverse", "--cors-max-age", "0"]).unwrap();
        assert_eq!(zero.proxy.cors_max_age, Duration::ZERO);
        for bad in [
            "null",
            "*",
            "https://app.example.com/path",
            "app.example.com",
            "https://",
            "https://a b",
            "https://user@app.example.com",
            "://app.example.com",
            "1http://app.example.com",
        ] {
            let e = parse(&["reverse", "--allowed-origin", bad]).unwrap_err();
            assert!(e.to_string().contains("not an origin"), "{bad}: {e}");
        }
        assert!(parse(&["reverse", "--cors-max-age", "soon"]).is_err());
    }

    #[test]
    fn defaults() {
        let c = parse(&["reverse"]).unwrap();
        assert_eq!(c.listen.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(c.proxy.path, "/mcp");
        assert_eq!(
            c.upstream,
            UpstreamConfig::Stdio(StdioUpstreamConfig {
                argv: vec!["/bin/shadowcat".into(), "demo-server".into()],
                children: 2,
                mode: StdioMode::Shared,
                env: ChildEnv::default(),
                max_message: 16 * 1024 * 1024,
                max_call_buffer: 8 * 1024 * 1024,
                max_subscriptions: 64,
                evict_idle: Duration::from_secs(60),
                queue: 32,
                exclusive_tools: Vec::new(),
                learn_exclusive: true,
                input_timeout: Duration::from_secs(300),
            })
        );
        assert_eq!(c.sessions.replay.budget, 256 * 1024 * 1024);
        assert_eq!(c.listen.workers, 64);
        assert_eq!(c.proxy.cors_max_age, Duration::from_secs(7200));
        assert_eq!(c.listen.max_body, 4 * 1024 * 1024);
        assert_eq!(c.sessions.idle, Duration::from_secs(1800));
        assert_eq!(c.proxy.request_timeout, Duration::from_secs(60));
        assert_eq!(c.listen.client_write_timeout, Duration::from_secs(10));
        assert_eq!(c.listen.worker_wait, c.proxy.request_timeout);
        let server = c.listen.server_config();
        assert_eq!(server.write_timeout, Duration::from_secs(10));
        assert_eq!(server.worker_wait, Duration::from_secs(60));
        assert_eq!(c.sessions.max_per_client, 64);
        assert_eq!(c.proxy.max_streams_per_client, 32);
        let c = parse(&["reverse", "--upstream", "http://127.0.0.1:1/mcp"]).unwrap();
        let UpstreamConfig::Http(h) = &c.upstream else {
            panic!("{:?}", c.upstream)
        };
        assert_eq!(h.pool, 32);
        assert_eq!(h.request_timeout, Duration::from_secs(60));
    }

    #[test]
    fn exclusive_tools_and_learning() {
        let stdio = |args: &[&str]| match parse(args).map(|c| c.upstream) {
            Ok(UpstreamConfig::Stdio(s)) => Ok((s.exclusive_tools, s.learn_exclusive)),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e.to_string()),
        };
        let args = [
            "reverse",
            "--stdio-exclusive-tools",
            "stream_events,slow_echo",
            "--stdio-exclusive-tools",
            "x",
            "--stdio-learn-exclusive",
            "off",
        ];
        assert_eq!(
            stdio(&args).unwrap(),
            (
                vec!["stream_events".into(), "slow_echo".into(), "x".into()],
                false
            )
        );
        let e = stdio(&["reverse", "--stdio-exclusive-tools", "a,,b"]).unwrap_err();
        assert!(e.contains("--stdio-exclusive-tools"), "{e}");
        let e = stdio(&["reverse", "--stdio-learn-exclusive", "maybe"]).unwrap_err();
        assert!(e.contains("use on or off"), "{e}");
        for other in [
            &["--stdio-mode", "per-session"][..],
            &["--upstream", "http://127.0.0.1:1/mcp"][..],
        ] {
            let mut args = vec!["reverse", "--stdio-exclusive-tools", "x"];
            args.extend_from_slice(other);
            let e = parse(&args).unwrap_err().to_string();
            assert!(e.contains("needs shared stdio children"), "{e}");
        }
    }

    #[test]
    fn client_quotas_leave_room_for_another_client() {
        let quotas = |args: &[&str]| {
            let c = parse(args).unwrap();
            (c.sessions.max_per_client, c.proxy.max_streams_per_client)
        };
        assert_eq!(quotas(&["reverse", "--max-sessions", "100"]), (50, 32));
        assert_eq!(quotas(&["reverse", "--max-streams", "10"]), (64, 5));
        assert_eq!(quotas(&["reverse", "--max-sessions", "1"]), (1, 32));
        assert_eq!(
            quotas(&["reverse", "--stdio-mode", "per-session"]),
            (8, 32),
            "16 children by default"
        );
        let c = [
            "reverse",
            "--max-sessions-per-client",
            "3",
            "--max-streams-per-client",
            "2",
        ];
        assert_eq!(quotas(&c), (3, 2));
        let c = [
            "reverse",
            "--max-sessions",
            "10",
            "--max-sessions-per-client",
            "10",
        ];
        assert_eq!(quotas(&c), (10, 32), "an explicit quota is the operator's");
        assert!(parse(&["reverse", "--max-sessions-per-client", "0"]).is_err());
        assert!(parse(&["reverse", "--max-streams-per-client", "0"]).is_err());
    }

    #[test]
    fn rejects_bad_values() {
        assert!(parse(&["reverse", "--upstream", "http://a/", "--stdio", "x"]).is_err());
        assert!(parse(&["reverse", "--upstream", "ftp://a/"]).is_err());
        assert!(parse(&["reverse", "--upstream", "https://a/mcp"]).is_ok());
        assert!(parse(&["reverse", "--workers", "0"]).is_err());
        assert!(parse(&["reverse", "--request-timeout", "0s"]).is_err());
        assert!(parse(&["reverse", "--client-write-timeout", "0s"]).is_err());
        let c = parse(&["reverse", "--client-write-timeout", "250ms"]).unwrap();
        assert_eq!(c.listen.client_write_timeout, Duration::from_millis(250));
        assert!(parse(&["reverse", "--max-body", "12XB"]).is_err());
        assert!(parse(&["reverse", "--path", "mcp"]).is_err());
        assert!(parse(&["reverse", "--stdio-mode", "per-request"]).is_err());
        assert!(parse(&["reverse", "--max-call-buffer", "0"]).is_err());
        assert!(parse(&["reverse", "--max-subscriptions", "0"]).is_err());
        assert!(parse(&["reverse", "--replay-budget", "0"]).is_err());
        assert!(parse(&["reverse", "--replay-budget", "lots"]).is_err());
    }

    #[test]
    fn tls_flags() {
        let err = |args: &[&str]| parse(args).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err(&["reverse", "--tls-cert", "c.pem"]).contains("together"));
        assert!(err(&["reverse", "--tls-client-ca", "ca.pem"]).contains("needs --tls-cert"));
        assert!(
            err(&[
                "reverse",
                "--tls-cert",
                "c",
                "--tls-key",
                "k",
                "--tls-client-crl",
                "r"
            ])
            .contains("--tls-client-crl needs --tls-client-ca")
        );
        assert!(
            err(&["reverse", "--admin-tls-cert", "c", "--admin-tls-key", "k"])
                .contains("need --admin-bind")
        );
        assert!(err(&["reverse", "--upstream-ca", "ca.pem"]).contains("need an https://"));
        assert!(
            err(&[
                "reverse",
                "--upstream",
                "http://127.0.0.1:1/mcp",
                "--upstream-ca",
                "ca.pem"
            ])
            .contains("need an https://")
        );
        assert!(
            err(&[
                "reverse",
                "--upstream",
                "https://h/mcp",
                "--upstream-client-cert",
                "c"
            ])
            .contains("together")
        );
        let c = parse(&[
            "reverse",
            "--tls-cert",
            "/etc/c.pem",
            "--tls-key",
            "/etc/k.pem",
            "--tls-client-ca",
            "/etc/ca.pem",
            "--tls-client-crl",
            "/etc/crl.pem",
            "--admin-bind",
            "127.0.0.1:0",
            "--admin-tls-cert",
            "/etc/c.pem",
            "--admin-tls-key",
            "/etc/k.pem",
            "--upstream",
            "https://mcp.example/mcp",
            "--upstream-ca",
            "/etc/up-ca.pem",
            "--upstream-client-cert",
            "/etc/me.pem",
            "--upstream-client-key",
            "/etc/me.key",
        ])
        .unwrap();
        let shown = serde_json::to_value(&c).unwrap();
        assert_eq!(shown["tlsCert"], "/etc/c.pem");
        assert_eq!(shown["tlsKey"], "/etc/k.pem");
        assert_eq!(shown["tlsClientCa"], "/etc/ca.pem");
        assert_eq!(shown["tlsClientCrl"], "/etc/crl.pem");
        assert_eq!(shown["adminTlsKey"], "/etc/k.pem");
        assert_eq!(shown["upstreamTls"]["ca"], "/etc/up-ca.pem");
        assert_eq!(shown["upstreamTls"]["clientKey"], "/etc/me.key");
        assert_eq!(c.upstream.name(), "mcp.example");
        let plain = serde_json::to_value(parse(&["reverse"]).unwrap()).unwrap();
        assert_eq!(plain["tlsCert"], serde_json::Value::Null);
        // A CA for an https JWKS URL alone is fine, and is what the JWKS fetch uses.
        let c = parse(&[
            "reverse",
            "--auth-jwt",
            "--jwks-url",
            "https://idp/jwks",
            "--upstream-ca",
            "/etc/idp-ca.pem",
        ])
        .unwrap();
        assert_eq!(
            c.gate.auth.jwks_tls.ca.as_deref(),
            Some(std::path::Path::new("/etc/idp-ca.pem"))
        );
    }

    #[test]
    fn tape_flags() {
        let err = |args: &[&str]| parse(args).err().map(|e| e.to_string()).unwrap_or_default();
        let c = parse(&["reverse"]).unwrap();
        assert_eq!(c.tapes.record, None);
        assert_eq!(c.tapes.max_bytes, 64 * 1024 * 1024);
        assert_eq!(c.tapes.keep, Duration::from_secs(7 * 86_400));
        assert_eq!(c.tapes.audit_log, None);
        let c = parse(&[
            "reverse",
            "--record",
            "/tmp/tapes",
            "--redact",
            "key=pin, otp",
            "--redact",
            "pointer=/params/arguments/a~1b",
            "--audit-log",
            "-",
            "--audit-arguments",
            "--record-keep",
            "2h",
        ])
        .unwrap();
        assert_eq!(c.tapes.redact.keys, ["pin", "otp"]);
        assert_eq!(c.tapes.redact.pointers, ["/params/arguments/a~1b"]);
        assert_eq!(c.tapes.keep, Duration::from_secs(7200));
        let shown = serde_json::to_value(&c).unwrap();
        assert_eq!(shown["record"], "/tmp/tapes");
        assert_eq!(shown["auditLog"], "-");
        assert_eq!(shown["redactKeys"][1], "otp");
        assert_eq!(shown["recordMaxBytes"], 64 * 1024 * 1024);
        assert!(err(&["reverse", "--audit-arguments"]).contains("needs --audit-log"));
        assert!(err(&["reverse", "--redact", "key=x"]).contains("give one of them"));
        let rec = ["reverse", "--record", "/tmp/t", "--redact"];
        assert!(err(&[&rec[..], &["pointer=a/b"]].concat()).contains("starts with '/'"));
        assert!(err(&[&rec[..], &["pointer=/a~2"]].concat()).contains("~"));
        assert!(err(&[&rec[..], &["key="]].concat()).contains("empty key"));
        assert!(err(&[&rec[..], &["keys=a"]].concat()).contains("expected key="));
        assert!(err(&["reverse", "--record-max-bytes", "100"]).contains("at least 4KiB"));
        assert!(err(&["reverse", "--record-keep", "0d"]).contains("more than zero"));
    }

    #[test]
    fn gatekeeping_flags() {
        let err = |args: &[&str]| parse(args).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err(&["reverse", "--jwks-file", "x"]).contains("need --auth-jwt"));
        assert!(err(&["reverse", "--auth-jwt"]).contains("needs --jwt-secret-file"));
        assert!(
            err(&[
                "reverse",
                "--auth-jwt",
                "--jwks-file",
                "a",
                "--jwks-url",
                "http://b/"
            ])
            .contains("not both")
        );
        assert!(
            err(&[
                "reverse",
                "--auth-jwt",
                "--jwks-file",
                "a",
                "--jwt-algorithms",
                "HS256"
            ])
            .contains("HS256 needs --jwt-secret-file")
        );
        assert!(err(&["reverse", "--resource-url", "http://x/mcp"]).contains("need --auth"));
        assert!(err(&["reverse", "--metrics-token", "short"]).contains("at least 16"));
        assert!(err(&["reverse", "--rate-limit", "fast"]).starts_with("--rate-limit: "));
        assert!(err(&["reverse", "--tool-limit", "echo"]).starts_with("--tool-limit: "));
        assert!(err(&["reverse", "--trusted-proxy", "10.0.0.0/33"]).starts_with("--trusted-proxy"));
        assert!(
            err(&["reverse", "--upstream-header", "X: 1"]).contains("needs an HTTP --upstream")
        );
        let up = [
            "reverse",
            "--upstream",
            "http://127.0.0.1:1/mcp",
            "--upstream-header",
        ];
        assert!(err(&[&up[..], &["Host: x"]].concat()).contains("set by the proxy"));
        assert!(err(&[&up[..], &["NoColon"]].concat()).contains("expected 'Name: value'"));
        assert!(
            err(&[&up[..], &["X-K: ${SHADOWCAT_SURELY_UNSET_VAR}"]].concat())
                .contains("SHADOWCAT_SURELY_UNSET_VAR is not set")
        );
        let c = parse(&[&up[..], &["X-K: a-${CARGO_PKG_NAME}-$x"]].concat()).unwrap();
        let UpstreamConfig::Http(h) = &c.upstream else {
            panic!("{:?}", c.upstream)
        };
        assert_eq!(h.headers[0].0, "x-k");
        assert_eq!(h.headers[0].1.expose(), "a-shadowcat-$x");
        assert_eq!(format!("{:?}", h.headers[0].1), "<redacted>");
        assert_eq!(
            serde_json::to_value(&c).unwrap()["upstreamHeaders"]["x-k"],
            "<redacted>"
        );
        let c = parse(&["reverse", "--auth-jwt", "--jwks-url", "https://idp/jwks"]).unwrap();
        assert_eq!(
            c.gate.auth.algorithms,
            [
                jsonwebtoken::Algorithm::RS256,
                jsonwebtoken::Algorithm::ES256
            ]
        );
        assert_eq!(c.gate.auth.leeway, Duration::from_secs(30));
        let c = parse(&["reverse", "--stdio-env", "A=1", "--rate-limit", "20/40"]).unwrap();
        let UpstreamConfig::Stdio(s) = &c.upstream else {
            panic!("{:?}", c.upstream)
        };
        assert_eq!(s.env.vars[0].0, "A");
        assert_eq!(c.gate.limits.per_client.map(|r| r.burst), Some(40));
        assert!(!parse(&["reverse"]).unwrap().gate.auth.enabled());
    }

    #[test]
    fn scale_out_flags_parse_and_validate() {
        let err = |args: &[&str]| parse(args).err().map(|e| e.to_string()).unwrap_or_default();
        let c = parse(&["reverse", "--bind", "127.0.0.1:9001"]).unwrap();
        assert!(c.instance.id.ends_with("-9001"), "{}", c.instance.id);
        assert_eq!(c.drain_time, Duration::ZERO);
        assert!(c.gate.limits_store.is_none());
        let c = parse(&[
            "reverse",
            "--instance-id",
            "web-1",
            "--drain-time",
            "3s",
            "--limits-store",
            "redis://u:secret@127.0.0.1:6379/1",
            "--limits-store-fail",
            "closed",
        ])
        .unwrap();
        assert_eq!(c.instance.id, "web-1");
        assert_eq!(c.drain_time, Duration::from_secs(3));
        let store = c.gate.limits_store.clone().unwrap();
        assert_eq!(store.fail, crate::gate::ratelimit::FailMode::Closed);
        // /admin/config shows the store without its password.
        let shown = serde_json::to_value(&c).unwrap();
        assert_eq!(shown["instanceId"], "web-1");
        assert_eq!(shown["drainTimeSeconds"], 3.0);
        assert_eq!(shown["limitsStore"]["url"], "redis://127.0.0.1:6379/1");
        assert!(!shown.to_string().contains("secret"));
        assert!(err(&["reverse", "--instance-id", "a.b"]).starts_with("--instance-id"));
        assert!(err(&["reverse", "--limits-store", "http://x/0"]).starts_with("--limits-store"));
        assert!(
            err(&[
                "reverse",
                "--limits-store",
                "redis://h:1/0",
                "--limits-store-fail",
                "x"
            ])
            .starts_with("--limits-store-fail")
        );
        assert!(err(&["reverse", "--drain-time", "soon"]).starts_with("--drain-time"));
    }
}
