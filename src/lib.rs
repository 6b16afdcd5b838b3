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
//! ```
//!
//! ## Architecture
//!
//! | module | concept |
//! |---|---|
//! | [`server`], [`http`] | our own strict HTTP/1.1 layer on `httparse` and std sockets |
//! | [`proxy`] | the one request pipeline: validation, sessions, forwarding, streaming, error mapping, access log |
//! | [`gatekeeper`], [`auth`], [`ratelimit`] | who the caller is (static tokens, JWT) and whether it may go on now (token buckets) |
//! | [`session`] | session ids (128 bits from `/dev/urandom`), table, idle expiry, cap |
//! | [`stream`] | proxy-owned SSE event ids and bounded replay logs (`Last-Event-ID`) |
//! | [`jsonrpc`] | lazily parsed envelopes; ids and results stay raw text |
//! | [`upstream`] | the [`upstream::Upstream`] trait: [`upstream::http`], [`upstream::stdio`] (shared children), [`upstream::dedicated`] (a child per session) |
//! | [`child`] | one stdio child: writer, reader and stderr threads, id rewriting, routing, stop |
//! | [`admin`], [`metrics`] | `/healthz`, `/readyz`, `/metrics`, the admin API |
//! | [`demo`] | the built-in demo MCP server (`shadowcat demo-server`) |
//! | [`mod@bench`] | `shadowcat bench`, a load generator for any MCP endpoint |
//! | [`error`] | the one error enum and its mapping to HTTP status and JSON-RPC code |
//! | [`config`] | flags, defaults, validation |
//!
//! ## Threads
//!
//! * **Connections:** 1 accept thread. Each client connection is served by one pooled
//!   connection thread (at most `--max-connections`), which reads and parses requests with
//!   timeouts. Handling a request takes one of `--workers` permits, so slow or idle clients
//!   never hold a worker, and 500 idle connections cost 500 parked threads, not the service.
//! * **Streams:** an SSE response gives its worker permit back and holds one of
//!   `--max-streams` stream permits on its connection thread instead: streams never occupy a
//!   request worker. The thread keeps draining the upstream into the replay log if the client
//!   leaves, until the request ends.
//! * **stdio:** 3 threads per child (stdin writer, stdout reader, stderr logger) and one
//!   supervisor (shared mode) or keeper (per-session mode) per upstream, which spawns every
//!   child (the parent-death signal is tied to the spawning thread). No thread, process or
//!   channel is created per request.
//! * **HTTP:** r2d2 keeps a small maintenance pool per slot pool (requests, standalone
//!   streams); one relay thread per session whose standalone GET stream is open.
//! * 1 session reaper; the admin API, when enabled, is a second small server (4 workers).
//!
//! A stdio request crosses: connection thread → child writer thread → child → child reader
//! thread → connection thread (two channel hand-offs, no locks held across I/O).
//!
//! ## Timeouts
//!
//! | what | default | flag | on expiry |
//! |---|---|---|---|
//! | idle keep-alive connection | 60 s | `--client-idle-timeout` | connection closed |
//! | reading one request's head | 10 s | — | 408, closed |
//! | one upstream request | 60 s | `--request-timeout` | 504 (JSON) or an error event (SSE); a stdio child gets `notifications/cancelled` |
//! | HTTP upstream connect | 5 s | `--upstream-connect-timeout` | 502 |
//! | HTTP upstream slot checkout | 2 s | — | 503 + `Retry-After` |
//! | silence on an upstream stream | 5 min | `--sse-idle-timeout` | stream resumed or ended with an error |
//! | resuming a broken upstream stream | 60 s | `--upstream-reconnect-max` | error event on the client stream |
//! | keep-alive comment on a quiet stream | 15 s | `--sse-keepalive` | `: keepalive` sent |
//! | idle session | 30 min | `--session-idle` | session ended, next use 404 |
//! | replay of an ended stream | 5 min | `--replay-ttl` | its ids become unknown (400) |
//! | child handshake / warm-up | 30 s | — | child replaced with backoff |
//! | shutdown grace | 10 s | `--shutdown-grace` | remaining connections closed |
//! | child stop | 2 s + 2 s | — | stdin closed, then SIGTERM, then SIGKILL to its group |
//!
//! ## Shutdown order
//!
//! On SIGINT or SIGTERM: stop accepting; let in-flight requests and streams finish up to the
//! grace (open streams end with their final chunk; a second signal ends the grace at once);
//! close remaining connections and join every server thread; end all sessions (upstream DELETE
//! for HTTP); stop each child (close stdin, wait 2 s, SIGTERM its process group, wait 2 s,
//! SIGKILL, reap); join the supervisor. [`Shadowcat::shutdown`] does the same and is
//! idempotent; dropping a [`Shadowcat`] runs it with a short grace. If the proxy is killed
//! outright, the kernel kills its children (`PR_SET_PDEATHSIG`).
//!
//! ## Gatekeeping
//!
//! Off by default; each part is its own flag. In pipeline order, after the Origin/Host check:
//!
//! 1. **Authentication** ([`auth`]): `--auth-tokens FILE` (static bearer tokens, constant-time
//!    compare) and/or `--auth-jwt` (HS256 with `--jwt-secret-file`, RS256/ES256 with
//!    `--jwks-file` or `--jwks-url`; `aud` must be `--resource-url`, `exp` and `sub` required,
//!    `iss` with `--jwt-issuer`, scopes with `--required-scope`). No or bad token: 401 with
//!    `WWW-Authenticate: Bearer resource_metadata="…"`; missing scope: 403
//!    `error="insufficient_scope"`. RFC 9728 metadata at `/.well-known/oauth-protected-resource`
//!    (and with the MCP path appended). A session belongs to the principal that created it;
//!    anyone else gets 404 for it.
//! 2. **Rate limits** ([`ratelimit`]): token buckets per client (its principal, or its IP;
//!    `X-Forwarded-For` only from `--trusted-proxy`), optionally global and per tool
//!    (`--rate-limit`, `--global-rate-limit`, `--tool-limit`). Every MCP request is charged once
//!    (a failed authentication to the IP's bucket); over the limit: 429 with `Retry-After` and a
//!    JSON-RPC error. At most `--rate-limit-keys` buckets; full ones are evicted first.
//! 3. **Upstream credentials**: the client's `Authorization` (and `Cookie`, `X-Api-Key`, …) never
//!    goes upstream. `--upstream-header 'Name: value'` adds configured headers to every HTTP
//!    upstream request; `--stdio-env KEY=VALUE` and `--stdio-clear-env` set the children's
//!    environment. `${VAR}` in those values is read from the environment at start-up, so secrets
//!    stay out of `ps`. Values are [`config::Secret`]s: never logged, `<redacted>` in
//!    `/admin/config`.
//!
//! `/healthz` and `/readyz` stay open; `/metrics` needs `--metrics-token` when one is set.
//! `docs/security.md` lists each threat, its defence and the test that proves it.
//!
//! ## Logging
//!
//! `RUST_LOG` (env_logger), default `info`; `--log-format json` for one JSON object per line.
//! One access line per request at info (target `shadowcat::access`): client address, HTTP
//! method, MCP method, status, duration, session id prefix, upstream. Client disconnects are
//! debug; an upstream that is down is warn (at most one line per second); stdio children's
//! stderr is info (target `shadowcat::child`). Refused tokens are debug (with the reason, never
//! the token); rate-limit refusals are debug. Tokens, header values and JSON-RPC params or
//! results are never logged.

pub mod admin;
pub mod auth;
pub mod bench;
pub mod child;
pub mod config;
pub mod demo;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod gatekeeper;
pub mod http;
pub mod jsonrpc;
pub mod metrics;
pub mod proxy;
pub mod ratelimit;
pub mod server;
pub mod session;
pub mod stream;
pub mod upstream;

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Sender, bounded};

use crate::admin::Admin;
use crate::child::Program;
use crate::config::{Config, StdioMode, UpstreamConfig};
use crate::error::Error;
use crate::gatekeeper::Gatekeeper;
use crate::metrics::Metrics;
use crate::proxy::Proxy;
use crate::server::{Server, ServerConfig};
use crate::session::lock;
use crate::upstream::Upstream;
use crate::upstream::dedicated::DedicatedUpstream;
use crate::upstream::http::{HttpOptions, HttpUpstream};
use crate::upstream::stdio::StdioUpstream;

/// `127.0.0.1:port` (or `[::1]:port`) of a bound listener, for the default resource URL.
fn local_name(l: &TcpListener) -> String {
    l.local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// A running proxy: listener, pipeline, upstream and reaper.
pub struct Shadowcat {
    server: Arc<Server>,
    admin: Option<Server>,
    proxy: Arc<Proxy>,
    reaper: Mutex<Option<(Sender<()>, JoinHandle<()>)>>,
    stopped: AtomicBool,
    grace: Duration,
}

impl Shadowcat {
    /// Starts the upstream, binds `config.bind` and begins serving. Returns once ready.
    pub fn start(config: Config) -> Result<Shadowcat, Error> {
        let metrics = Arc::new(Metrics::new(&config.upstream_name()));
        let upstream: Arc<dyn Upstream> = match &config.upstream {
            UpstreamConfig::Http { url } => Arc::new(HttpUpstream::new(
                url,
                HttpOptions {
                    slots: config.upstream_pool,
                    stream_slots: config.max_streams as u32,
                    connect_timeout: config.upstream_connect_timeout,
                    request_timeout: config.request_timeout,
                    stream_idle: config.sse_idle_timeout,
                    reconnect_max: config.upstream_reconnect_max,
                    metrics: Some(metrics.clone()),
                    headers: config.upstream_headers.clone(),
                },
            )?),
            UpstreamConfig::Stdio {
                argv,
                children,
                mode: StdioMode::Shared,
            } => Arc::new(StdioUpstream::start(
                Program {
                    argv: argv.clone(),
                    env: config.stdio_env.clone(),
                },
                *children,
                config.max_message,
            )?),
            UpstreamConfig::Stdio {
                argv,
                children,
                mode: StdioMode::PerSession { spares },
            } => Arc::new(DedicatedUpstream::start(
                Program {
                    argv: argv.clone(),
                    env: config.stdio_env.clone(),
                },
                *children,
                *spares,
                config.max_message,
            )?),
        };
        Shadowcat::launch(config, upstream, metrics)
    }

    /// Like [`Shadowcat::start`], with an upstream built elsewhere (`config.upstream` is not
    /// used). Tests use it to put a faulty upstream behind the real pipeline.
    pub fn start_with(config: Config, upstream: Arc<dyn Upstream>) -> Result<Shadowcat, Error> {
        let metrics = Arc::new(Metrics::new(upstream.name()));
        Shadowcat::launch(config, upstream, metrics)
    }

    fn launch(
        config: Config,
        upstream: Arc<dyn Upstream>,
        metrics: Arc<Metrics>,
    ) -> Result<Shadowcat, Error> {
        let admin_listener =
            match config.admin_bind {
                Some(a) => Some(TcpListener::bind(a).map_err(|e| {
                    Error::Config(format!("cannot listen on --admin-bind {a}: {e}"))
                })?),
                None => None,
            };
        let admin_token = config.admin_token.clone();
        let listener = TcpListener::bind(config.bind)
            .map_err(|e| Error::Config(format!("cannot listen on {}: {e}", config.bind)))?;
        let server_config = ServerConfig {
            workers: config.workers,
            max_connections: config.max_connections,
            max_streams: config.max_streams,
            max_body: config.max_body,
            idle_timeout: config.client_idle_timeout,
            ..ServerConfig::default()
        };
        let grace = config.shutdown_grace;
        let sweep =
            (config.session_idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(10));
        let resource = config
            .auth
            .resource_url
            .clone()
            .unwrap_or_else(|| format!("http://{}{}", local_name(&listener), config.path));
        let gate = Gatekeeper::new(&config, resource)?;
        let proxy = Arc::new(Proxy::new(Arc::new(config), upstream, metrics, gate));
        let server = Arc::new(Server::start(listener, server_config, proxy.clone())?);
        proxy.set_server(Arc::downgrade(&server));
        let admin = match admin_listener {
            Some(l) => {
                let cfg = ServerConfig {
                    workers: 4,
                    max_connections: 64,
                    max_streams: 1,
                    max_body: 64 * 1024,
                    ..ServerConfig::default()
                };
                let handler = Arc::new(Admin::new(proxy.clone(), admin_token));
                let s = Server::start(l, cfg, handler)?;
                log::info!("admin API on http://{}/admin/", s.local_addr());
                Some(s)
            }
            None => None,
        };
        let (stop, stopped) = bounded::<()>(1);
        let p = proxy.clone();
        let reaper = std::thread::Builder::new()
            .name("shadowcat-reaper".into())
            .spawn(move || {
                while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(sweep)
                {
                    p.expire_sessions();
                }
            })?;
        Ok(Shadowcat {
            server,
            admin,
            proxy,
            reaper: Mutex::new(Some((stop, reaper))),
            stopped: AtomicBool::new(false),
            grace,
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The admin API's bound address, if `--admin-bind` was given.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|a| a.local_addr())
    }

    /// Process ids of the stdio children by slot (empty for an HTTP upstream).
    pub fn stdio_child_pids(&self) -> Vec<Option<u32>> {
        self.proxy
            .upstream()
            .children()
            .iter()
            .map(|c| c.pid)
            .collect()
    }

    /// The request pipeline (sessions, upstream), for tests and operators.
    pub fn proxy(&self) -> &Proxy {
        &self.proxy
    }

    /// Ends the grace of a running [`Shadowcat::shutdown`] now (the second signal).
    pub fn hurry(&self) {
        self.server.hurry();
    }

    /// Stops in the documented order, waiting at most about `grace` for requests in flight.
    /// A second call returns at once.
    pub fn shutdown(&self, grace: Duration) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        self.server.shutdown(grace);
        if let Some(a) = &self.admin {
            a.shutdown(Duration::from_millis(500));
        }
        if let Some((stop, handle)) = lock(&self.reaper).take() {
            drop(stop);
            let _ = handle.join();
        }
        self.proxy.close_all();
        self.proxy.upstream().shutdown(Duration::from_secs(2));
    }
}

impl Drop for Shadowcat {
    fn drop(&mut self) {
        self.shutdown(Duration::from_secs(1));
    }
}

/// The top-level entry point for `shadowcat reverse`: serves until SIGINT or SIGTERM, then
/// shuts down gracefully. A second signal during the shutdown skips what is left of the grace.
pub fn run(config: Config) -> Result<(), Error> {
    let signals = block_signals();
    let proxy = Arc::new(Shadowcat::start(config)?);
    log::info!(
        "shadowcat listening on http://{}{} (upstream {})",
        proxy.local_addr(),
        proxy.proxy.cfg_path(),
        proxy.proxy.upstream().name()
    );
    let sig = wait_signal(&signals, None).unwrap_or(0);
    log::info!("signal {sig}: shutting down (grace {:?})", proxy.grace);
    let p = proxy.clone();
    let stopper = std::thread::Builder::new()
        .name("shadowcat-stop".into())
        .spawn(move || p.shutdown(p.grace))?;
    while !stopper.is_finished() {
        if let Some(sig) = wait_signal(&signals, Some(Duration::from_millis(100))) {
            log::warn!("signal {sig} again: skipping the rest of the grace");
            proxy.hurry();
        }
    }
    let _ = stopper.join();
    log::info!("stopped");
    Ok(())
}

/// Blocks SIGINT and SIGTERM in this thread (and so in every thread it starts later), so they
/// can be taken synchronously with `sigwait`.
fn block_signals() -> libc::sigset_t {
    // SAFETY: plain libc calls on a zeroed, initialised sigset owned by this frame.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Waits for one of the blocked signals, at most `timeout` if given.
fn wait_signal(set: &libc::sigset_t, timeout: Option<Duration>) -> Option<i32> {
    match timeout {
        None => {
            let mut sig: libc::c_int = 0;
            // SAFETY: `set` is initialised; sigwait writes the signal number into `sig`.
            let rc = unsafe { libc::sigwait(set, &mut sig) };
            (rc == 0).then_some(sig)
        }
        Some(t) => {
            let ts = libc::timespec {
                tv_sec: t.as_secs() as libc::time_t,
                tv_nsec: t.subsec_nanos() as libc::c_long,
            };
            // SAFETY: `set` and `ts` are initialised; a null siginfo pointer is allowed.
            let sig = unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &ts) };
            (sig > 0).then_some(sig)
        }
    }
}
