//! # shadowcat
//!
//! A small, fast reverse proxy for the Model Context Protocol (MCP). Clients speak Streamable
//! HTTP to shadowcat; shadowcat forwards to one upstream MCP server, either an HTTP server
//! (through a pool of keep-alive connections) or a fixed set of **persistent stdio child
//! processes** that it starts once, keeps alive, restarts when they die and shares between
//! sessions by rewriting JSON-RPC ids.
//!
//! ```text
//! shadowcat reverse                                  # in front of the built-in demo server
//! shadowcat reverse --stdio "npx -y @modelcontextprotocol/server-everything"
//! shadowcat reverse --upstream http://127.0.0.1:3001/mcp
//! shadowcat reverse --tls-cert server.pem --tls-key server.key --upstream https://mcp.example/mcp
//! shadowcat reverse --config shadowcat.toml         # the same flags from a file
//! shadowcat check-config shadowcat.toml             # validate it, print it redacted
//! ```
//!
//! A config file's keys are the flags without `--` (`examples/shadowcat.toml`); the file and
//! the command line go through one parser, the command line replacing the file's keys.
//!
//! ## Architecture
//!
//! Folders are the architecture. Each folder's `mod.rs` (and each top-level file) opens with
//! what it owns and what it must not touch; imports only go down this list, never up, and
//! there are no import cycles.
//!
//! ```text
//! main.rs      parse flags, init logging, run, map the error to an exit code
//! app.rs       wiring: builds each part from its own config, starts, stops in order
//! reload.rs    SIGHUP and POST /admin/reload: the configuration in force, read the file
//!              again, apply what may change (federation members, TLS), report the rest
//! cli/         the flags (argh) and their validation into one Config, one file per part
//!              (cli/mod.rs lists them); cli/file.rs: a TOML file as those same flags;
//!              cli/reread.rs: which keys a reload may change
//! ops/         in front of the pipeline: /healthz, /readyz, /metrics (Front); the admin API
//! proxy/       the one pipeline: checks, the endpoint's methods, replies, SSE to the client
//! bridge/      2026-07-28 requests: validation, and serving them over a session-era upstream
//!              (proxy-owned sessions, MRTR with sealed requestState, result shaping)
//! gate/        who the caller is (auth/: tokens, JWT) and whether it may go on (ratelimit/)
//! upstream/    the Upstream (request path) and Operate (operator's view) traits;
//!              http/ (pooled slots, event streams), stdio/ (child, call, shared mode with
//!              its slots and supervisor, per-session mode)
//! session.rs   the session table; stream.rs: event ids and replay logs; jsonrpc.rs: envelopes
//! instance.rs  --instance-id and the `<instance>.<random>` form of session ids (balancers
//!              route on it; another instance's session is 404)
//! config.rs    Config, composed of one part per consumer (listen, proxy, sessions, upstream,
//!              gate, admin)
//! http/        our HTTP/1.1: request, parse, encode, server/, permits, responder, origin;
//!              transport (plain or TLS stream) and tls/ (rustls listener config, handshake)
//! metrics/     counters and histograms, their text format, the child and pool info types
//! error.rs     the one Error and its whole answer (status, JSON-RPC code, headers, metric)
//! util.rs      locks, bounded line reads, durations, sizes, command lines
//! version.rs   the protocol revisions (imports nothing)
//! tape/        what crossed the proxy, written off the request path: tapes (format, redaction
//!              shared with the tape tools, writer thread) and the audit log, behind two small
//!              handles (Recorder, Auditor)
//! fault/       the config file's fault and mock rules: which rule acts on a request, and
//!              what it answers (applied by proxy/fault.rs)
//! tools/       beside the proxy, never imported by it: bench/, demo/, tape/ (tape tools and
//!              replay), fuzzing (feature); only the wiring (app.rs) hands replay's tape
//!              matcher to fault/ for `mock_from` rules, behind fault's `Recorded` trait
//! ```
//!
//! A request's path through the folders (stdio upstream in shared mode):
//!
//! ```text
//! client ── TCP ──▶ http::Server: accept thread ─▶ connection thread (parse; worker permit)
//!   ─▶ ops::Front: GET /healthz, /readyz, /metrics answered here
//!   ─▶ proxy::Proxy::handle ─▶ checks (path, Origin/Host, method, media types); a CORS
//!      preflight from an allowed origin is answered here (cors.rs), before the gate
//!   ─▶ gate: identify (auth), charge (rate limits)
//!   ─▶ route: initialize / session lookup (session.rs) / 2026-07-28: bridge/ validates it,
//!      forwards it statelessly or serves it over a proxy-owned session (MRTR)
//!   ─▶ upstream::Upstream::forward ─▶ stdio gate (exclusive calls wait) ─▶ stdio::call
//!        ─▶ child writer thread ─▶ child process
//!        child stdout ─▶ child reader thread (ids restored, routed) ─▶ the call's channel
//!   ─▶ route: JSON answer, or sse: a stream (worker permit swapped for a stream permit,
//!      events logged in stream.rs for Last-Event-ID)
//!   ─▶ access log and metrics; any failure: Error::answer() (error.rs)
//! ```
//!
//! In shared mode a call whose client can be asked something (it declared `sampling`,
//! `elicitation` or `roots`) or asked for logs is *exclusive*: it runs only while no other
//! session's call is in flight on its child, and later calls wait for it (`upstream/stdio/gate.rs`;
//! other calls share the child with no lock). A child's message that is not a response goes
//! only where it provably belongs (`upstream/stdio/attribution.rs`): to the newest call of the
//! one session owning every call in flight, or to the one stateless call; a server-to-client
//! request only if that call's client declared the capability, else the child gets -32601.
//! List changes and resource updates go to the sessions they concern. Anything else is dropped
//! or refused and counted (`shadowcat_dropped_messages_total{reason}`), never delivered to a
//! guess. Log levels are per session: the child runs at the lowest level its sessions asked for
//! and the proxy drops each session's messages below its own (`upstream/stdio/child.rs`,
//! `slots.rs`, `shared.rs`).
//!
//! An HTTP upstream replaces the stdio steps with a slot checked out of an r2d2 pool
//! (`upstream/http/slot.rs`) and, for `text/event-stream` answers, `upstream/http/sse.rs`.
//!
//! ## Threads
//!
//! * **Connections:** 1 accept thread. Each client connection is served by one pooled
//!   connection thread (at most `--max-connections`), which reads and parses requests with
//!   timeouts. Handling a request takes one of `--workers` permits, so slow or idle clients
//!   never hold a worker, and 500 idle connections cost 500 parked threads, not the service.
//!   The permit is given back before the answer is written, so a client that does not read
//!   holds only its own connection thread; `/healthz` and `/readyz` need no permit at all.
//! * **Streams:** an SSE response gives its worker permit back and holds one of
//!   `--max-streams` stream permits on its connection thread instead: streams never occupy a
//!   request worker. The thread keeps draining the upstream into the replay log if the client
//!   leaves, until the request ends.
//! * **stdio:** shared mode: 3 threads per child (stdin writer, stdout reader, stderr
//!   logger); per-session mode: one I/O thread for all children (`poll(2)` on their stdout and
//!   stderr; callers write stdin themselves, what the pipe does not take at once is flushed by
//!   that thread), so an idle session costs no thread. One supervisor (shared mode) or keeper
//!   (per-session mode) per upstream spawns every child (the parent-death signal is tied to
//!   the spawning thread). No thread or process is
//!   created per request; each call gets a reply queue bounded in bytes (`--max-call-buffer`).
//! * **HTTP:** r2d2 keeps a small maintenance pool per slot pool (requests, standalone
//!   streams); one relay thread per session whose standalone GET stream is open.
//! * 1 session reaper; the admin API, when enabled, is a second small server (4 workers).
//! * `--record`: 1 tape writer thread; `--audit-log`: 1 audit writer thread. Request threads
//!   hand them messages through queues bounded in bytes and never wait for them: a writer that
//!   falls behind loses lines (counted), never time on a request.
//!
//! A stdio request crosses: connection thread → child writer thread → child → child reader
//! thread → connection thread (two channel hand-offs, no locks held across I/O).
//!
//! ## Timeouts
//!
//! | what | default | flag | on expiry |
//! |---|---|---|---|
//! | idle keep-alive connection | 60 s | `--client-idle-timeout` | connection closed |
//! | a TLS handshake, from the connection thread taking the connection | 10 s | — | closed |
//! | reading one request's head | 10 s | — | 408, closed |
//! | a client that acknowledges nothing we write | 10 s | `--client-write-timeout` | connection closed |
//! | waiting for a worker permit | 60 s | `--request-timeout` | 503 + `Retry-After` |
//! | one upstream request | 60 s | `--request-timeout` | 504 (JSON) or an error event (SSE); a stdio child gets `notifications/cancelled` |
//! | one request to a federation member | the request's | `request-timeout` in `[upstream.NAME]` (at most the file's) | as `--request-timeout`, naming the member |
//! | HTTP upstream connect | 5 s | `--upstream-connect-timeout` | 502 |
//! | HTTP upstream slot checkout | 2 s | — | 503 + `Retry-After` |
//! | silence on an upstream stream | 5 min | `--sse-idle-timeout` | stream resumed or ended with an error |
//! | resuming a broken upstream stream | 60 s | `--upstream-reconnect-max` | error event on the client stream |
//! | keep-alive comment on a quiet stream | 15 s | `--sse-keepalive` | `: keepalive` sent |
//! | idle session | 30 min | `--session-idle` | session ended, next use 404 |
//! | replay of an ended stream | 5 min | `--replay-ttl` | its ids become unknown (400) |
//! | child handshake / warm-up | 30 s | — | child replaced with backoff |
//! | drain before closing the listener (SIGTERM) | 0 s | `--drain-time` | listener closed, grace begins |
//! | shutdown grace | 10 s | `--shutdown-grace` | remaining connections closed |
//! | child stop | 2 s + 2 s | — | stdin closed, then SIGTERM, then SIGKILL to its group |
//!
//! ## Shutdown order
//!
//! SIGHUP re-reads the listeners' TLS certificates, keys and client CRLs (new connections get
//! them; a bad file keeps the old pair). On SIGINT or SIGTERM: drain first (`/readyz` answers 503 and `initialize` gets 503 with
//! `Retry-After: 1`, for `--drain-time` while every other request is still served, so a load
//! balancer moves away; a second signal ends it); stop accepting; let in-flight requests and streams finish up to the
//! grace (open streams end with their final chunk; a second signal ends the grace at once);
//! close remaining connections and join every server thread; end all sessions (upstream DELETE
//! for HTTP; each session's tape closes); write out what the tape and audit writers have
//! queued, fsync, join them; stop each child (close stdin, wait 2 s, SIGTERM its process group, wait 2 s,
//! SIGKILL, reap); join the supervisor. [`Shadowcat::shutdown`] does the same and is
//! idempotent; dropping a [`Shadowcat`] runs it with a short grace. If the proxy is killed
//! outright, the kernel kills its children (`PR_SET_PDEATHSIG`).
//!
//! ## Gatekeeping
//!
//! Off by default; each part is its own flag. In pipeline order, after the Origin/Host check:
//!
//! 1. **Authentication** (`gate/auth`): `--auth-tokens FILE` (static bearer tokens, constant-time
//!    compare) and/or `--auth-jwt` (HS256 with `--jwt-secret-file`, RS256/ES256 with
//!    `--jwks-file` or `--jwks-url`; `aud` must be `--resource-url`, `exp` and `sub` required,
//!    `iss` with `--jwt-issuer`, scopes with `--required-scope`). No or bad token: 401 with
//!    `WWW-Authenticate: Bearer resource_metadata="…"`; missing scope: 403
//!    `error="insufficient_scope"`. RFC 9728 metadata at `/.well-known/oauth-protected-resource`
//!    (and with the MCP path appended). A session belongs to the principal that created it;
//!    anyone else gets 404 for it. Without token authentication, a client certificate verified
//!    by the TLS handshake (`--tls-client-ca`, not revoked by `--tls-client-crl`) names the
//!    principal (`cert:CN`, else first SAN).
//! 2. **Rate limits** (`gate/ratelimit`): token buckets per client (its principal, or its IP;
//!    `X-Forwarded-For` only from `--trusted-proxy`), optionally global and per tool
//!    (`--rate-limit`, `--global-rate-limit`, `--tool-limit`). Every MCP request is charged once
//!    (a failed authentication to the IP's bucket; CORS preflights, which carry no credentials,
//!    are not charged); over the limit: 429 with `Retry-After` and a JSON-RPC error. At most `--rate-limit-keys` buckets; full ones are evicted first.
//!    With `--limits-store redis://…` the buckets (and the per-client quotas) are kept in
//!    Redis and shared by every instance (`gate/ratelimit/store.rs`); Redis unreachable: this
//!    instance's own buckets decide (`--limits-store-fail open`) or 503 (`closed`).
//! 3. **Upstream credentials**: the client's `Authorization` (and `Cookie`, `X-Api-Key`, …) never
//!    goes upstream. `--upstream-header 'Name: value'` adds configured headers to every HTTP
//!    upstream request; `--stdio-env KEY=VALUE` and `--stdio-clear-env` set the children's
//!    environment. `${VAR}` in those values is read from the environment at start-up, so secrets
//!    stay out of `ps`. Values are `Secret`s: never logged, `<redacted>` in
//!    `/admin/config`.
//!
//! `/healthz` and `/readyz` stay open; `/metrics` needs `--metrics-token` when one is set.
//! `docs/security.md` lists each threat, its defence and the test that proves it.
//!
//! ## Logging
//!
//! `RUST_LOG` (env_logger), default `info`; `--log-format json` for one JSON object per line.
//! One access line per request at info (target `shadowcat::access`): client address, HTTP
//! method, MCP method, status, duration, session id prefix, upstream, and the JSON-RPC outcome
//! (`rpc=ok`, `rpc=error:-32601`, `rpc=tool_error`, `rpc=-`). Values a client, child or
//! upstream controls are escaped in text lines (no forged lines, no terminal escapes). Client
//! disconnects are debug; an upstream that is down is warn (at most one line per second); stdio
//! children's stderr is info (target `shadowcat::child`). Refused tokens are debug (with the
//! reason, never the token); rate-limit refusals are debug. Tokens, header values and JSON-RPC
//! params or results are never logged.
//!
//! Apart from the log: `--audit-log` (one JSON line per MCP request, refusals included; argument
//! values only with `--audit-arguments`, redacted) and `--record` (tapes of every message,
//! redacted before they touch disk); both in `tape/`, format in `docs/tape-format.md`.

#![deny(missing_docs)]

mod app;
mod bridge;
mod cli;
mod config;
mod error;
mod fault;
mod gate;
pub mod http;
mod instance;
mod jsonrpc;
mod metrics;
mod ops;
mod proxy;
mod reload;
mod session;
mod stream;
mod tape;
pub mod tools;
mod upstream;
mod util;
mod version;

pub use crate::app::{Shadowcat, run, run_from};
pub use crate::cli::{Cli, Command, Source as ConfigSource, expand_config_file};
pub use crate::config::Config;
pub use crate::error::Error;
pub use crate::proxy::Proxy;
pub use crate::session::{Binding, Session};
pub use crate::upstream::{Call, Item, MessageStream, Operate, Poll, Reply, Upstream};

/// Internals the benchmarks and fuzz targets measure directly (and the JWT crypto provider the
/// integration tests sign tokens with). Not a stable API: nothing here is promised to stay.
#[doc(hidden)]
pub mod internals {
    pub use crate::gate::auth::{Auth, AuthConfig, install_jwt_crypto};
    pub use crate::gate::ratelimit::{Limiter, Limits};
    pub use crate::jsonrpc::Message;
    /// JSON-RPC id helpers the id-rewriting benchmarks call.
    pub mod jsonrpc {
        pub use crate::jsonrpc::{Message, id_u64, raw_u64};
    }
    pub use crate::config::SessionConfig;
    pub use crate::proxy::sse_event;
    pub use crate::session::Sessions;
    pub use crate::stream::ReplayLimits;
}
