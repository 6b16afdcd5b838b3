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

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use r2d2::{ManageConnection, Pool, PooledConnection};

use crate::config::{HttpUpstreamConfig, Secret};
use crate::error::Error;
use crate::jsonrpc::Message;
use crate::session::{Binding, Session};
use crate::upstream::{Call, Item, MessageStream, Poll, PoolInfo, Reply, Upstream};
use crate::util::lock;
use crate::util::{read_line_bounded, trim_line};

const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a client's GET waits for a standalone-stream slot before it gets 503.
const STREAM_SLOT_WAIT: Duration = Duration::from_millis(100);
/// Largest JSON body or SSE line accepted from the upstream.
const MAX_UPSTREAM_MESSAGE: usize = 16 * 1024 * 1024;
/// Makes pool slots.
pub struct SlotManager {
    connect_timeout: Duration,
    request_timeout: Duration,
    stream_idle: Duration,
}

/// One upstream connection slot.
pub struct Slot {
    agent: ureq::Agent,
    /// Set while the slot's connection is in an unknown state.
    poisoned: bool,
}

impl ManageConnection for SlotManager {
    type Connection = Slot;
    type Error = Error;

    /// Lazy: the TCP connection is made on first use.
    fn connect(&self) -> Result<Slot, Error> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .proxy(None)
            .http_status_as_error(false)
            .max_idle_connections(1)
            .max_idle_connections_per_host(1)
            .max_idle_age(Duration::from_secs(4))
            .max_redirects(0)
            .timeout_connect(Some(self.connect_timeout))
            .timeout_recv_response(Some(self.request_timeout))
            .timeout_per_read(Some(self.stream_idle))
            .user_agent(concat!("shadowcat/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Ok(Slot {
            agent,
            poisoned: false,
        })
    }

    fn is_valid(&self, slot: &mut Slot) -> Result<(), Error> {
        if slot.poisoned {
            return Err(Error::Internal("poisoned slot".into()));
        }
        Ok(())
    }

    fn has_broken(&self, slot: &mut Slot) -> bool {
        slot.poisoned
    }
}

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
    /// `--upstream-header`s, sent on every request.
    headers: Vec<(String, Secret)>,
    /// Milliseconds since `born` of the last request that reached the upstream (0: none).
    last_ok_ms: AtomicU64,
    born: Instant,
}

/// Timeouts and limits of an HTTP upstream.
#[derive(Clone, Debug)]
pub struct HttpOptions {
    /// Request slots.
    pub slots: u32,
    /// Standalone-stream slots: one per client GET stream relayed (`--max-streams`).
    pub stream_slots: u32,
    /// TCP connect.
    pub connect_timeout: Duration,
    /// Until the response headers, and for a whole JSON body.
    pub request_timeout: Duration,
    /// Between two reads of a body (an SSE stream has no whole-body limit, only this).
    pub stream_idle: Duration,
    /// How long to keep trying to resume a broken request stream.
    pub reconnect_max: Duration,
    /// Where the request pool reports checkouts (wait, timeouts).
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
    /// Headers sent on every request (`--upstream-header`), e.g. the upstream's credentials.
    pub headers: Vec<(String, Secret)>,
}

fn build_pool(o: &HttpOptions, report: bool, size: u32) -> Pool<SlotManager> {
    let mut b = Pool::builder();
    if let (true, Some(m)) = (report, &o.metrics) {
        b = b.event_handler(Box::new(crate::metrics::PoolEvents(m.clone())));
    }
    b.max_size(size.max(1))
        .min_idle(Some(0))
        .test_on_check_out(true)
        .idle_timeout(None)
        .max_lifetime(None)
        .connection_timeout(CHECKOUT_TIMEOUT)
        .build_unchecked(SlotManager {
            connect_timeout: o.connect_timeout,
            request_timeout: o.request_timeout,
            stream_idle: o.stream_idle,
        })
}

impl HttpUpstream {
    /// Builds the pools; connects nothing yet, so a down upstream does not stop start-up.
    /// `metrics`, if any, hears about request-pool checkouts.
    pub fn new(
        cfg: &HttpUpstreamConfig,
        metrics: Option<Arc<crate::metrics::Metrics>>,
    ) -> Result<Self, Error> {
        let url = &cfg.url;
        let o = HttpOptions {
            slots: cfg.pool,
            stream_slots: cfg.stream_slots,
            connect_timeout: cfg.connect_timeout,
            request_timeout: cfg.request_timeout,
            stream_idle: cfg.stream_idle,
            reconnect_max: cfg.reconnect_max,
            metrics,
            headers: cfg.headers.clone(),
        };
        let name = crate::config::url_authority(url).to_owned();
        Ok(HttpUpstream {
            inner: Arc::new(HttpInner {
                name,
                url: url.to_owned(),
                pool: build_pool(&o, true, o.slots),
                streams: build_pool(&o, false, o.stream_slots),
                reconnect_max: o.reconnect_max,
                headers: o.headers.clone(),
                last_ok_ms: AtomicU64::new(0),
                born: Instant::now(),
            }),
            relays: Mutex::new(Vec::new()),
        })
    }
}

impl HttpInner {
    fn checkout(&self, pool: &Pool<SlotManager>) -> Result<PooledConnection<SlotManager>, Error> {
        pool.get_timeout(CHECKOUT_TIMEOUT)
            .map_err(|_| Error::UpstreamBusy)
    }

    fn map_err(&self, e: ureq::Error) -> Error {
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
        let mut slot = self.checkout(&self.pool)?;
        slot.poisoned = true;
        let mut req = slot
            .agent
            .post(&self.url)
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
                seen: HashSet::new(),
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
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn initialize(&self, call: Call<'_>) -> Result<(Binding, Reply), Error> {
        let posted = self.inner.post(&call, None)?;
        let binding = Binding {
            upstream_id: Mutex::new(posted.session),
            ..Binding::default()
        };
        Ok((binding, posted.reply))
    }

    fn forward(&self, call: Call<'_>) -> Result<Reply, Error> {
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
            Err(e) => log::debug!("upstream DELETE failed: {e}"),
        }
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
        let host = inner.name.clone();
        let addr = std::net::ToSocketAddrs::to_socket_addrs(&host)
            .ok()
            .and_then(|mut a| a.next())
            .or_else(|| format!("{host}:80").parse().ok());
        match addr.map(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(1))) {
            Some(Ok(_)) => Ok(()),
            Some(Err(e)) => Err(format!("upstream {host} unreachable: {e}")),
            None => Err(format!("upstream {host}: cannot resolve")),
        }
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

/// Copies an upstream GET stream into a session's standalone log.
fn relay(
    inner: &Arc<HttpInner>,
    slot: PooledConnection<SlotManager>,
    session: &Weak<Session>,
    sid: Option<String>,
    version: Option<String>,
) {
    let opened = inner.get_stream(Some(slot), sid.as_deref(), version.as_deref(), None);
    let (slot, resp) = match opened {
        Ok(Some(x)) => x,
        Ok(None) => {
            log::debug!("{}: no standalone stream upstream", inner.name);
            return;
        }
        Err(e) => {
            log::debug!("{}: standalone stream not opened: {e}", inner.name);
            if let Some(s) = session.upgrade() {
                s.binding.listening.store(false, Ordering::Release);
            }
            return;
        }
    };
    let mut stream = SseStream {
        slot: Some(slot),
        reader: BufReader::new(resp.into_body().into_reader()),
        buf: Vec::new(),
        inner: inner.clone(),
        session: sid,
        version,
        last_id: None,
        seen: HashSet::new(),
        expect_final: false,
        done: false,
    };
    loop {
        let item = stream.poll_until(Instant::now());
        let Some(s) = session.upgrade() else { return };
        match item {
            Ok(Poll::Item(Item::Message(d) | Item::Final(d))) => {
                s.streams.standalone().push(&d);
            }
            Ok(Poll::Idle) => {}
            Ok(Poll::End) | Err(_) => {
                s.binding.listening.store(false, Ordering::Release);
                return;
            }
        }
    }
}

/// An upstream `text/event-stream` body, read event by event, resumed with `Last-Event-ID`
/// if it breaks before the response.
struct SseStream {
    /// Held until the body is read to its end; then cleared and returned to the pool.
    slot: Option<PooledConnection<SlotManager>>,
    reader: BufReader<ureq::BodyReader<'static>>,
    buf: Vec<u8>,
    inner: Arc<HttpInner>,
    /// Upstream session id and protocol version, for resumption GETs.
    session: Option<String>,
    version: Option<String>,
    /// The upstream's id of the last event seen, and every id seen (duplicates dropped).
    last_id: Option<String>,
    seen: HashSet<String>,
    /// A request stream must end with a response; a standalone stream may just end.
    expect_final: bool,
    done: bool,
}

/// One event read off an upstream stream: its id and data.
pub(crate) type RawEvent = (Option<String>, Vec<u8>);

/// Reads the next event's `id:` and `data:` fields off an SSE body, line by line (each line at
/// most `max` bytes, `line` is scratch space). Returns the event, `None` at a clean end of the
/// body, and whether the body was read to its end.
pub(crate) fn read_sse_event<R: BufRead>(
    reader: &mut R,
    line: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<(Option<RawEvent>, bool)> {
    let mut data: Vec<u8> = Vec::new();
    let mut id = None;
    let mut any = false;
    loop {
        line.clear();
        let n = read_line_bounded(reader, line, max)?;
        if n == 0 {
            return Ok((if any { Some((id, data)) } else { None }, true));
        }
        let line = trim_line(line);
        if line.is_empty() {
            if any {
                return Ok((Some((id, data)), false));
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix(b"data:") {
            let rest = rest.strip_prefix(b" ").unwrap_or(rest);
            // Each line is bounded by `max`; so is the whole event, or an upstream that never
            // ends an event could grow it without limit.
            if data.len() + 1 + rest.len() > max {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("SSE event larger than {max} bytes"),
                ));
            }
            if !data.is_empty() {
                data.push(b'\n');
            }
            data.extend_from_slice(rest);
            any = true;
        } else if let Some(rest) = line.strip_prefix(b"id:") {
            let rest = rest.strip_prefix(b" ").unwrap_or(rest);
            id = Some(String::from_utf8_lossy(rest).into_owned());
            any = true;
        } else if line.starts_with(b":") {
            // A comment (keep-alive) block comes back as an empty event, so a reader that
            // only hears keep-alives still gets control back between them.
            any = true;
        }
        // `event:` and `retry:`: the proxy owns the client stream's framing.
    }
}

impl SseStream {
    /// The next event, `Ok(None)` at a clean end of the body.
    fn read_event(&mut self) -> std::io::Result<Option<RawEvent>> {
        let (event, ended) = read_sse_event(&mut self.reader, &mut self.buf, MAX_UPSTREAM_MESSAGE)?;
        if ended && let Some(mut slot) = self.slot.take() {
            slot.poisoned = false; // read to the end: reusable
        }
        Ok(event)
    }

    /// Reconnects with GET + `Last-Event-ID`, backing off exponentially with full jitter
    /// (base 200 ms, cap 10 s) for at most `--upstream-reconnect-max`.
    fn resume(&mut self, why: &str) -> Result<(), Error> {
        let Some(last) = self.last_id.clone() else {
            return Err(Error::UpstreamProtocol(format!(
                "{} stream broke ({why}) before the response and cannot be resumed (no event ids)",
                self.inner.name
            )));
        };
        let give_up = Instant::now() + self.inner.reconnect_max;
        let mut attempt = 0u32;
        loop {
            let cap = Duration::from_millis(200)
                .saturating_mul(1 << attempt.min(16))
                .min(Duration::from_secs(10));
            let pause = cap.mul_f64(jitter());
            if Instant::now() + pause > give_up {
                return Err(Error::UpstreamProtocol(format!(
                    "{} stream broke ({why}); resuming failed for {:?}",
                    self.inner.name, self.inner.reconnect_max
                )));
            }
            std::thread::sleep(pause);
            attempt += 1;
            let opened = self.inner.get_stream(
                None,
                self.session.as_deref(),
                self.version.as_deref(),
                Some(&last),
            );
            match opened {
                Ok(Some((slot, resp))) => {
                    log::debug!("{}: stream resumed after {last}", self.inner.name);
                    self.slot = Some(slot);
                    self.reader = BufReader::new(resp.into_body().into_reader());
                    return Ok(());
                }
                Ok(None) => {
                    return Err(Error::UpstreamProtocol(format!(
                        "{} stream broke ({why}) and the upstream refused to resume it",
                        self.inner.name
                    )));
                }
                Err(e) => log::debug!("{}: resume attempt {attempt} failed: {e}", self.inner.name),
            }
        }
    }
}

/// A number in [0, 1) for backoff jitter; quality does not matter, only spread.
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

impl MessageStream for SseStream {
    /// Blocks in the upstream read (bounded by the per-read idle timeout), not until `wake`.
    fn poll_until(&mut self, _wake: Instant) -> Result<Poll, Error> {
        if self.done {
            return Ok(Poll::End);
        }
        loop {
            let why = match self.read_event() {
                Ok(Some((id, data))) => {
                    if let Some(id) = id {
                        if !self.seen.insert(id.clone()) {
                            continue; // already delivered before a resumption
                        }
                        self.last_id = Some(id);
                    }
                    if data.is_empty() {
                        // A priming event or a keep-alive. A standalone relay takes it as a
                        // moment to check that its session still exists.
                        if self.expect_final {
                            continue;
                        }
                        return Ok(Poll::Idle);
                    }
                    let item = classify(data);
                    if matches!(item, Item::Final(_)) && self.expect_final {
                        self.done = true;
                    }
                    return Ok(Poll::Item(item));
                }
                Ok(None) if !self.expect_final => {
                    self.done = true;
                    return Ok(Poll::End);
                }
                Ok(None) => "ended".to_string(),
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    self.done = true;
                    return Err(Error::UpstreamProtocol(format!("{}: {e}", self.inner.name)));
                }
                Err(e) => e.to_string(),
            };
            if !self.expect_final {
                self.done = true;
                return Ok(Poll::End);
            }
            // The connection is in an unknown state: drop it (poisoned) and resume.
            self.slot = None;
            if let Err(e) = self.resume(&why) {
                self.done = true;
                return Err(e);
            }
        }
    }

    fn must_stream(&self) -> bool {
        true
    }
}

impl Drop for SseStream {
    fn drop(&mut self) {
        // After the response a well-behaved server ends the stream at once (the chunked
        // terminator follows the last event): read up to that end so the connection goes back
        // to the pool. Anything else leaves the slot poisoned, and it is replaced.
        if self.slot.is_some() && self.done && self.expect_final {
            let mut sink = [0u8; 4096];
            let mut left: usize = 64 * 1024;
            while left > 0 {
                match self.reader.read(&mut sink) {
                    Ok(0) => {
                        if let Some(mut slot) = self.slot.take() {
                            slot.poisoned = false;
                        }
                        break;
                    }
                    Ok(n) => left = left.saturating_sub(n),
                    Err(_) => break,
                }
            }
        }
    }
}

/// A response message ends the request's stream; anything else is related traffic.
fn classify(data: Vec<u8>) -> Item {
    match Message::parse(&data).ok().and_then(|m| m.kind().ok()) {
        Some(crate::jsonrpc::Kind::Response) => Item::Final(data),
        _ => Item::Message(data),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 7: an upstream event that never ends is bounded as a whole, not only per line.
    #[test]
    fn sse_events_are_bounded_as_a_whole() {
        let mut line = Vec::new();
        let ok = b"id: 1\ndata: abc\ndata: def\n\n";
        let (ev, _) = read_sse_event(&mut &ok[..], &mut line, 16).unwrap();
        assert_eq!(ev, Some((Some("1".into()), b"abc\ndef".to_vec())));
        // Every line is short, but together they pass the limit.
        let flood = b"data: 0123456789\n".repeat(100);
        let e = read_sse_event(&mut &flood[..], &mut line, 64).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
    }

    #[test]
    fn slots_poison_and_break() {
        let m = SlotManager {
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
            stream_idle: Duration::from_secs(1),
        };
        let mut s = m.connect().unwrap();
        assert!(!m.has_broken(&mut s));
        s.poisoned = true;
        assert!(m.has_broken(&mut s));
        assert!(m.is_valid(&mut s).is_err());
    }

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
