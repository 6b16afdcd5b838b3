//! The HTTP upstream: a Streamable HTTP server reached through an r2d2 pool of ureq slots.
//!
//! * One slot = one ureq `Agent` holding at most one keep-alive connection, so `--upstream-pool`
//!   is exactly the number of upstream TCP connections. A checkout waits at most 2 s, then the
//!   client gets 503 with `Retry-After`.
//! * **Poison first, clear on success:** a slot is marked broken before the request is sent
//!   and cleared only after the upstream body was read to its end. An early return, a panic, a
//!   timeout or a client that walks away mid-stream leaves it poisoned; r2d2 then drops it and
//!   connects a fresh one, so a connection in an unknown state is never reused.
//! * JSON answers are returned whole; `text/event-stream` answers are relayed event by event
//!   as they arrive, the slot travelling with the stream until its end.
//! * The upstream's `Mcp-Session-Id` lives in our session's [`Binding`]; the client only sees
//!   ours. An upstream 404 (or the 400 "session not found" real servers send) on a session
//!   ends our session too, and the client gets 404.
//!
//! * `https://` upstreams: TLS by ureq's rustls, verified against the built-in Mozilla roots or
//!   `--upstream-ca`, with an optional client certificate (`tls.rs`). A TLS failure is a 502
//!   whose message says what rustls refused and what to check.
//!
//! * A 2026-07-28-only upstream (it refuses `initialize` with -32601) gets session-era clients
//!   bridged: `modern.rs` (issue #13 part B).
//!
//! Owns: the upstream (this file), its pool slots (`slot.rs`), its event streams (`sse.rs`),
//! its TLS settings (`tls.rs`, which `--jwks-url` uses too) and its session-era front for a
//! 2026-07-28-only server (`modern.rs`). Must not touch: the client side; what the client sees is the pipeline's.

use std::io::{BufReader, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use r2d2::{Pool, PooledConnection};

use crate::config::{HttpUpstreamConfig, Secret};
use crate::error::Error;
use crate::session::{Binding, Session};
use crate::upstream::{Call, Operate, PoolInfo, Reply, Upstream};
use crate::util::lock;

mod modern;
mod slot;
mod sse;
pub(crate) mod tls;

pub use tls::ClientTlsConfig;

use slot::SlotManager;
#[cfg(feature = "fuzzing")]
pub(crate) use sse::{RawEvent, read_sse_event};
use sse::{SeenIds, SseStream, relay};

const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a client's GET waits for a standalone-stream slot before it gets 503.
const STREAM_SLOT_WAIT: Duration = Duration::from_millis(100);
/// Largest JSON body or SSE line accepted from the upstream.
const MAX_UPSTREAM_MESSAGE: usize = 16 * 1024 * 1024;

/// A Streamable HTTP upstream.
pub struct HttpUpstream {
    inner: Arc<HttpInner>,
    /// Threads relaying upstream GET streams into sessions' standalone logs.
    relays: Mutex<Vec<JoinHandle<()>>>,
}

struct HttpInner {
    name: String,
    url: String,
    /// Slots for requests (POST, DELETE, resumption GETs of a request's stream).
    pool: Pool<SlotManager>,
    /// Slots for long-lived standalone GET streams, so they never starve requests.
    streams: Pool<SlotManager>,
    reconnect_max: Duration,
    /// `--request-timeout`: the longest wait for a request's response headers (sooner when
    /// the request's deadline is: a federation member's own `request-timeout`).
    request_timeout: Duration,
    /// `--upstream-header`s, sent on every request.
    headers: Vec<(String, Secret)>,
    /// `--upstream-ca` and `--upstream-client-*`, to explain TLS failures.
    tls: ClientTlsConfig,
    /// Milliseconds since `born` of the last request that reached the upstream (0: none).
    last_ok_ms: AtomicU64,
    born: Instant,
    /// `/readyz`'s connect probe: one at a time (it runs without a worker permit), its result
    /// reused for [`PROBE_REUSE`], so a flood of `/readyz` makes at most one connect a second.
    probe: Probe,
    /// Set once the upstream refused `initialize` as a 2026-07-28-only server does: the
    /// `initialize` result made from its `server/discover` (`modern.rs`).
    modern_hello: OnceLock<serde_json::Map<String, serde_json::Value>>,
    /// `--input-timeout`, for those sessions' input rounds.
    input_timeout: Duration,
}

/// How long one connect probe's result answers `/readyz`.
const PROBE_REUSE: Duration = Duration::from_secs(1);

/// The last connect probe of an upstream not reached lately, and the right to make the next.
#[derive(Default)]
struct Probe {
    running: Mutex<()>,
    last: Mutex<Option<(Instant, Result<(), String>)>>,
}

impl Probe {
    /// The last result if it is fresh, or while another probe runs; else probes with `connect`.
    fn check(&self, connect: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
        let last = || lock(&self.last).clone();
        if let Some((at, r)) = last()
            && at.elapsed() < PROBE_REUSE
        {
            return r;
        }
        let Ok(_running) = self.running.try_lock() else {
            return last().map_or_else(|| Err("upstream probe in progress".into()), |(_, r)| r);
        };
        let r = connect();
        *lock(&self.last) = Some((Instant::now(), r.clone()));
        r
    }
}

/// A pool of `size` slots; `metrics`, if any, hears about its checkouts.
fn build_pool(
    cfg: &HttpUpstreamConfig,
    tls: &ureq::tls::TlsConfig,
    metrics: Option<&Arc<crate::metrics::Metrics>>,
    size: u32,
) -> Pool<SlotManager> {
    let mut b = Pool::builder();
    if let Some(m) = metrics {
        b = b.event_handler(Box::new(crate::metrics::PoolEvents(m.clone())));
    }
    b.max_size(size.max(1))
        .min_idle(Some(0))
        .test_on_check_out(true)
        .idle_timeout(None)
        .max_lifetime(None)
        .connection_timeout(CHECKOUT_TIMEOUT)
        .build_unchecked(SlotManager {
            connect_timeout: cfg.connect_timeout,
            request_timeout: cfg.request_timeout,
            stream_idle: cfg.stream_idle,
            tls: tls.clone(),
        })
}

impl HttpUpstream {
    /// Builds the pools; connects nothing yet, so a down upstream does not stop start-up (TLS
    /// files are read now: one that does not load does). `metrics`, if any, hears about
    /// request-pool checkouts.
    pub fn new(
        cfg: &HttpUpstreamConfig,
        metrics: Option<Arc<crate::metrics::Metrics>>,
    ) -> Result<Self, Error> {
        let url = &cfg.url;
        let name = crate::config::url_authority(url).to_owned();
        let tls = tls::tls_config(&cfg.tls)?;
        Ok(HttpUpstream {
            inner: Arc::new(HttpInner {
                name,
                url: url.to_owned(),
                pool: build_pool(cfg, &tls, metrics.as_ref(), cfg.pool),
                streams: build_pool(cfg, &tls, None, cfg.stream_slots),
                reconnect_max: cfg.reconnect_max,
                request_timeout: cfg.request_timeout,
                headers: cfg.headers.clone(),
                tls: cfg.tls.clone(),
                last_ok_ms: AtomicU64::new(0),
                born: Instant::now(),
                probe: Probe::default(),
                modern_hello: OnceLock::new(),
                input_timeout: cfg.input_timeout,
            }),
            relays: Mutex::new(Vec::new()),
        })
    }
}

impl HttpUpstream {
    /// A replica's health probe (`crate::upstream::replicas`): a JSON-RPC `ping` POSTed without
    /// a session on a pool slot, finished within `timeout`. Any answer below 500 means the
    /// server is up (a session-era server refuses a ping without a session with 400, one that
    /// wants a token with 401); a 5xx, no connection or no answer in time is the error.
    pub fn probe(&self, timeout: Duration) -> Result<(), Error> {
        let inner = &self.inner;
        let mut slot = inner.checkout(&inner.pool)?;
        slot.poisoned = true;
        let mut req = slot
            .agent
            .post(&inner.url)
            .config()
            .timeout_global(Some(timeout))
            .build()
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        for (k, v) in &inner.headers {
            req = req.header(k.as_str(), v.expose());
        }
        let ping = br#"{"jsonrpc":"2.0","id":"shadowcat-probe","method":"ping"}"#;
        let resp = req.send(&ping[..]).map_err(|e| inner.map_err(e))?;
        let status = resp.status().as_u16();
        // An SSE answer is not read to its end: the slot stays poisoned and is dropped.
        let drained = resp
            .into_body()
            .into_with_config()
            .limit(64 * 1024)
            .read_to_vec();
        slot.poisoned = drained.is_err();
        if status >= 500 {
            return Err(Error::UpstreamStatus {
                status,
                message: format!("{} answered a probe with {status}", inner.name),
            });
        }
        inner.reached();
        Ok(())
    }
}

impl HttpInner {
    fn checkout(&self, pool: &Pool<SlotManager>) -> Result<PooledConnection<SlotManager>, Error> {
        pool.get_timeout(CHECKOUT_TIMEOUT)
            .map_err(|_| Error::UpstreamBusy)
    }

    /// A TLS failure as a 502 that says what was refused, if `e` is one.
    fn tls_failure(&self, e: &(dyn std::error::Error + 'static)) -> Option<Error> {
        let why = tls::describe_failure(e, &self.tls)?;
        Some(Error::UpstreamUnreachable {
            upstream: self.name.clone(),
            source: Box::new(tls::TlsFailure(why)),
        })
    }

    fn map_err(&self, e: ureq::Error) -> Error {
        if let Some(tls) = self.tls_failure(&e) {
            return tls;
        }
        match e {
            ureq::Error::Timeout(_) => Error::Timeout,
            ureq::Error::Io(ref io) if io.kind() == std::io::ErrorKind::TimedOut => Error::Timeout,
            e => Error::UpstreamUnreachable {
                upstream: self.name.clone(),
                source: Box::new(e),
            },
        }
    }

    fn io_err(&self, e: std::io::Error) -> Error {
        if let Some(tls) = self.tls_failure(&e) {
            return tls;
        }
        match e.kind() {
            std::io::ErrorKind::TimedOut => Error::Timeout,
            std::io::ErrorKind::InvalidData => {
                Error::UpstreamProtocol(format!("{}: {e}", self.name))
            }
            _ => Error::UpstreamUnreachable {
                upstream: self.name.clone(),
                source: Box::new(e),
            },
        }
    }

    fn reached(&self) {
        let ms = self.born.elapsed().as_millis() as u64 + 1;
        self.last_ok_ms.store(ms, Ordering::Relaxed);
    }

    /// POSTs one message and interprets the answer.
    fn post(self: &Arc<Self>, call: &Call<'_>, session_id: Option<&str>) -> Result<Posted, Error> {
        let left = call.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::Timeout);
        }
        let mut slot = self.checkout(&self.pool)?;
        slot.poisoned = true;
        let mut req = slot
            .agent
            .post(&self.url)
            .config()
            .timeout_recv_response(Some(left.min(self.request_timeout)))
            .build()
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        for (k, v) in &call.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        for (k, v) in &self.headers {
            req = req.header(k.as_str(), v.expose());
        }
        if let Some(sid) = session_id {
            req = req.header("mcp-session-id", sid);
        }
        let body = call.msg.to_vec();
        let resp = req.send(&body[..]).map_err(|e| self.map_err(e))?;
        self.reached();
        let status = resp.status().as_u16();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let content_type = header("content-type").unwrap_or_default();
        let session = header("mcp-session-id");
        if (200..300).contains(&status) && is_sse(&content_type) {
            let version = call
                .headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("mcp-protocol-version"))
                .map(|(_, v)| v.clone());
            let stream = SseStream {
                slot: Some(slot),
                reader: BufReader::new(resp.into_body().into_reader()),
                buf: Vec::new(),
                inner: self.clone(),
                session: session.clone().or_else(|| session_id.map(str::to_owned)),
                version,
                last_id: None,
                seen: SeenIds::default(),
                expect_final: true,
                done: false,
            };
            return Ok(Posted {
                reply: Reply::Stream(Box::new(stream)),
                session,
                status,
            });
        }
        let body =
            read_body(resp.into_body().into_reader(), call.deadline).map_err(|e| self.io_err(e))?;
        slot.poisoned = false;
        let reply = match status {
            202 => Reply::Accepted,
            200..=299 if body.iter().all(u8::is_ascii_whitespace) => Reply::Accepted,
            200..=299 => Reply::Message(body),
            _ => Reply::Relay {
                status,
                content_type,
                body,
            },
        };
        Ok(Posted {
            reply,
            session,
            status,
        })
    }

    /// GETs the endpoint for an SSE stream (`Last-Event-ID` when resuming). `Ok(None)` when
    /// the upstream offers no stream (405, or another 4xx).
    fn get_stream(
        self: &Arc<Self>,
        slot: Option<PooledConnection<SlotManager>>,
        session: Option<&str>,
        version: Option<&str>,
        last_id: Option<&str>,
    ) -> Result<Option<OpenStream>, Error> {
        let mut slot = match slot {
            Some(s) => s,
            None => self.checkout(&self.pool)?,
        };
        slot.poisoned = true;
        let mut req = slot
            .agent
            .get(&self.url)
            .header("accept", "text/event-stream");
        for (k, v) in &self.headers {
            req = req.header(k.as_str(), v.expose());
        }
        if let Some(s) = session {
            req = req.header("mcp-session-id", s);
        }
        if let Some(v) = version {
            req = req.header("mcp-protocol-version", v);
        }
        if let Some(id) = last_id {
            req = req.header("last-event-id", id);
        }
        let resp = req.call().map_err(|e| self.map_err(e))?;
        self.reached();
        let status = resp.status().as_u16();
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        if (200..300).contains(&status) && is_sse(&ct) {
            return Ok(Some((slot, resp)));
        }
        if status >= 500 {
            return Err(Error::UpstreamProtocol(format!(
                "{} answered GET with {status}",
                self.name
            )));
        }
        Ok(None)
    }
}

/// A slot and the response whose body is an open SSE stream on it.
type OpenStream = (
    PooledConnection<SlotManager>,
    ureq::http::Response<ureq::Body>,
);

fn is_sse(content_type: &str) -> bool {
    content_type
        .get(..17)
        .is_some_and(|p| p.eq_ignore_ascii_case("text/event-stream"))
}

/// Reads a whole (non-stream) body: at most [`MAX_UPSTREAM_MESSAGE`] bytes, finished by
/// `deadline` (each read is also bounded by the per-read timeout).
fn read_body(mut r: impl Read, deadline: Instant) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        if Instant::now() >= deadline {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "upstream body not finished by the request deadline",
            ));
        }
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(body),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if body.len() + n > MAX_UPSTREAM_MESSAGE {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "upstream body too large",
            ));
        }
        body.extend_from_slice(&buf[..n]);
    }
}

struct Posted {
    reply: Reply,
    session: Option<String>,
    status: u16,
}

/// True when an upstream answer means it no longer knows the session we sent.
fn session_lost(p: &Posted) -> bool {
    match (&p.reply, p.status) {
        (_, 404) => true,
        (Reply::Relay { body, .. }, 400) => {
            let text = String::from_utf8_lossy(body).to_ascii_lowercase();
            text.contains("session")
                && (text.contains("not found")
                    || text.contains("invalid")
                    || text.contains("no valid")
                    || text.contains("not initialized"))
        }
        _ => false,
    }
}

impl Upstream for HttpUpstream {
    fn initialize(&self, call: Call<'_>) -> Result<(Binding, Reply), Error> {
        let requested = call
            .msg
            .params_value()
            .and_then(|p| p.get("protocolVersion")?.as_str().map(str::to_owned))
            .unwrap_or_default();
        let newest = crate::jsonrpc::LEGACY_VERSIONS[crate::jsonrpc::LEGACY_VERSIONS.len() - 1];
        let version = crate::upstream::stdio::shared::negotiate(&requested, newest);
        if let Some(h) = self.inner.modern_hello.get() {
            return Ok(modern::initialize(h, &call.msg, version));
        }
        let posted = self.inner.post(&call, None)?;
        // A 2026-07-28-only server: the session era is the proxy's (`modern.rs`).
        if posted.session.is_none()
            && modern::refused(&posted.reply)
            && let Some(h) = modern::hello(&self.inner, call.deadline)
        {
            log::info!(
                "{}: speaks only 2026-07-28 (refused initialize)",
                self.inner.name
            );
            let h = self.inner.modern_hello.get_or_init(|| h);
            return Ok(modern::initialize(h, &call.msg, version));
        }
        let binding = Binding {
            upstream_id: Mutex::new(posted.session),
            ..Binding::default()
        };
        Ok((binding, posted.reply))
    }

    fn forward(&self, call: Call<'_>) -> Result<Reply, Error> {
        if let Some(s) = call.session
            && let Some(meta) = &s.binding.modern_meta
        {
            return modern::forward(&self.inner, s, meta, call, self.inner.input_timeout);
        }
        let sid = call
            .session
            .and_then(|s| lock(&s.binding.upstream_id).clone());
        let posted = self.inner.post(&call, sid.as_deref())?;
        if sid.is_some() && session_lost(&posted) {
            return Err(Error::UpstreamSessionLost);
        }
        Ok(posted.reply)
    }

    /// Opens the upstream's GET stream for the session (once) on a relay thread that copies
    /// its events into the session's standalone log until either side ends.
    fn listen(&self, session: &Arc<Session>) -> Result<(), Error> {
        if session.binding.listening.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        // A slot now, or the client learns within 100 ms (503) that no stream can be relayed.
        let slot = match self.inner.streams.get_timeout(STREAM_SLOT_WAIT) {
            Ok(s) => s,
            Err(_) => {
                session.binding.listening.store(false, Ordering::Release);
                return Err(Error::TooManyStreams);
            }
        };
        let inner = self.inner.clone();
        let weak = Arc::downgrade(session);
        let sid = lock(&session.binding.upstream_id).clone();
        let version = Some(session.protocol_version.clone()).filter(|v| !v.is_empty());
        let relay = std::thread::Builder::new()
            .name("shadowcat-relay".into())
            .spawn(move || relay(&inner, slot, &weak, sid, version))
            .map_err(Error::Io)?;
        let mut relays = lock(&self.relays);
        relays.retain(|h| !h.is_finished());
        relays.push(relay);
        Ok(())
    }

    fn close(&self, session: &Session) {
        let Some(sid) = lock(&session.binding.upstream_id).take() else {
            return;
        };
        let Ok(mut slot) = self.inner.checkout(&self.inner.pool) else {
            log::debug!("no slot free to end upstream session");
            return;
        };
        slot.poisoned = true;
        let mut req = slot
            .agent
            .delete(&self.inner.url)
            .header("mcp-session-id", sid.as_str());
        for (k, v) in &self.inner.headers {
            req = req.header(k.as_str(), v.expose());
        }
        let res = req.call();
        match res {
            Ok(resp) => {
                let drained = resp
                    .into_body()
                    .into_with_config()
                    .limit(64 * 1024)
                    .read_to_vec();
                slot.poisoned = drained.is_err();
            }
            Err(e) => log::debug!(
                "upstream DELETE failed: {}",
                crate::util::Escaped(&e.to_string())
            ),
        }
    }
}

impl Operate for HttpUpstream {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn kind(&self) -> &'static str {
        "http"
    }

    fn mode(&self) -> &'static str {
        "pooled"
    }

    fn pool(&self) -> Option<PoolInfo> {
        let s = self.inner.pool.state();
        Some(PoolInfo {
            connections: s.connections,
            idle: s.idle_connections,
            max: self.inner.pool.max_size(),
        })
    }

    /// Ready when a request reached the upstream in the last 30 s, or a TCP connect to it
    /// succeeds now (1 s timeout).
    fn ready(&self) -> Result<(), String> {
        let inner = &self.inner;
        let last = inner.last_ok_ms.load(Ordering::Relaxed);
        if last > 0 && inner.born.elapsed().as_millis() as u64 <= last + 30_000 {
            return Ok(());
        }
        inner.probe.check(|| {
            let host = &inner.name;
            let addr = std::net::ToSocketAddrs::to_socket_addrs(host)
                .ok()
                .and_then(|mut a| a.next())
                .or_else(|| format!("{host}:80").parse().ok());
            match addr.map(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(1))) {
                Some(Ok(_)) => Ok(()),
                Some(Err(e)) => Err(format!("upstream {host} unreachable: {e}")),
                None => Err(format!("upstream {host}: cannot resolve")),
            }
        })
    }

    fn shutdown(&self, grace: Duration) {
        // Relays end when their sessions' upstream streams end (sessions were closed first);
        // wait a little, then leave stragglers to their read timeout.
        let until = Instant::now() + grace.min(Duration::from_secs(2));
        let relays = std::mem::take(&mut *lock(&self.relays));
        for h in relays {
            while !h.is_finished() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(10));
            }
            if h.is_finished() {
                let _ = h.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn readiness_probes_run_one_at_a_time_and_their_result_is_reused() {
        let probe = std::sync::Arc::new(Probe::default());
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let count = || {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Err::<(), String>("down".into())
        };
        assert_eq!(probe.check(count), Err("down".into()));
        assert_eq!(probe.check(count), Err("down".into()), "reused");
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
        // While a probe runs, others answer at once without probing.
        let p2 = probe.clone();
        let guard = p2.running.lock().expect("lock");
        *lock(&probe.last) = None;
        assert_eq!(
            probe.check(|| panic!("a second probe ran")),
            Err("upstream probe in progress".into())
        );
        drop(guard);
        assert_eq!(probe.check(|| Ok(())), Ok(()));
    }

    use super::*;

    #[test]
    fn session_lost_detection() {
        let p = |status, body: &str| Posted {
            reply: Reply::Relay {
                status,
                content_type: "application/json".into(),
                body: body.as_bytes().to_vec(),
            },
            session: None,
            status,
        };
        assert!(session_lost(&p(404, "")));
        assert!(session_lost(&p(
            400,
            r#"{"error":{"message":"Bad Request: No valid session ID provided"}}"#
        )));
        assert!(session_lost(&p(400, "Session not found")));
        assert!(!session_lost(&p(400, "bad json")));
    }
}
