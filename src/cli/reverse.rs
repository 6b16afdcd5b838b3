//! The `reverse` subcommand's flags: one argh struct, which is also the `--help` text and the
//! key list of the config file (`cli/file.rs` reads it through `ArgsInfo`).
//!
//! Owns: each flag's name, type, default and help line. Must not touch: what a value means or
//! whether it is valid; that is the part builders' (`cli/listen.rs`, `cli/proxy.rs`,
//! `cli/upstream.rs`, `cli/stdio.rs`, `cli/gate.rs`, `cli/ops.rs`, `cli/tapes.rs`), which
//! `cli/compose.rs` calls from [`ReverseArgs::into_config`]. Defaults that are strings here
//! (`"10s"`, `"4MiB"`) are parsed there, like a value given on the command line.

use std::net::SocketAddr;

use argh::FromArgs;

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
    /// https://mcp.example.com/mcp; https verifies the server's name and certificate); given
    /// again (up to 64): replicas of one server, with a circuit breaker each (--replica-*)
    #[argh(option)]
    pub upstream: Vec<String>,

    /// replicas: failures in a row (connect errors, 5xx, timeouts) that eject a replica for
    /// --replica-backoff (default 3)
    #[argh(option, default = "3")]
    pub replica_failures: u32,

    /// replicas: how long an ejected replica stays out before it is probed; doubled after each
    /// failed probe up to --replica-backoff-max (default 10s)
    #[argh(option, default = "String::from(\"10s\")")]
    pub replica_backoff: String,

    /// replicas: the longest an ejected replica stays out between probes (default 2m)
    #[argh(option, default = "String::from(\"2m\")")]
    pub replica_backoff_max: String,

    /// replicas: how often the prober probes ejected replicas whose backoff passed, and idle
    /// ones as a health check (default 2s)
    #[argh(option, default = "String::from(\"2s\")")]
    pub replica_probe_interval: String,

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
