//! The HTTP/1.1 server: accept loop, connection threads, worker and stream permits,
//! graceful shutdown. Wire format and framing rules live in [`crate::http`].
//!
//! # Threading model
//!
//! * **One accept thread** (`shadowcat-accept`) owns the listener. Each accepted socket
//!   gets `TCP_NODELAY` and read/write timeouts, and is registered (a `try_clone` of it is
//!   kept so shutdown can close it). Accept errors (EMFILE included) are logged and retried
//!   after 50 ms, never fatal. Beyond `max_connections` open connections the accept thread
//!   itself writes a 503 with `Connection: close` and closes the socket.
//! * **Connection threads** (`shadowcat-conn`, 1 MiB stacks) serve one connection each,
//!   1:1, from a pool: the accept thread hands a socket over a zero-capacity channel with
//!   `try_send`, which succeeds only if a pooled thread is blocked waiting for work (so a
//!   socket is never queued for a thread that is about to be taken); otherwise it spawns a
//!   thread. There are never more connection threads than `max_connections`. A pooled
//!   thread exits after 30 s without work.
//! * A connection thread reads and parses requests (keep-alive loop, pipelined requests in
//!   order) and calls the [`Handler`] itself. Before the call it takes one of `workers`
//!   **worker permits** and returns it afterwards (RAII), so at most `workers` requests are
//!   handled at once, while idle or slow clients hold only their own connection thread.
//!   [`Responder::stream`] swaps the worker permit for one of `max_streams` **stream
//!   permits**, so long-lived SSE streams do not starve ordinary requests.
//! * Every `handle` call runs under `catch_unwind`: a panic is answered with a 500 (if
//!   nothing was sent yet), the connection is closed, and the thread lives on.
//! * **Shutdown** sets a flag and wakes the accept thread by connecting to the listener's
//!   own address (the listener stays blocking, so new connections are not delayed by
//!   polling). Connections idle between requests are closed at once; busy ones finish the
//!   current request (answered with `Connection: close`) and streams can poll
//!   [`Responder::shutting_down`]. After `grace` every remaining socket is shut down, then
//!   all threads are joined (any thread still stuck in a handler 1 s later is detached and
//!   logged: Rust cannot kill a thread).

use crate::http::{self, ConnHeader, Framing, Limits, ReadError, Request, Response, Version, Wire};
use crate::util::lock;
use crossbeam_channel::{Receiver, SendTimeoutError, Sender, TrySendError};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Stack size of connection threads, which run the handler. Measured: parsing and
/// re-serialising a 127-deep JSON value (serde_json's nesting limit is 128) overflows a
/// 256 KiB stack in a debug build (needs ~300 KiB; release needs < 128 KiB), so 1 MiB
/// leaves a debug-build handler ~3x headroom. Pages are committed only when touched.
const CONN_STACK: usize = 1024 * 1024;
/// Stack size of the accept thread.
const ACCEPT_STACK: usize = 256 * 1024;
/// A pooled connection thread exits after this long without work.
const POOL_IDLE: Duration = Duration::from_secs(30);
/// Pause after a failed `accept()`.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);
/// After an error answer, unread input is drained for at most this long / this much, so
/// that closing does not reset the connection before the client has read the answer.
const LINGER_TIME: Duration = Duration::from_millis(500);
/// Most input drained while lingering.
const LINGER_BYTES: usize = 64 * 1024;
/// Extra time `shutdown` waits for threads after `grace`.
const JOIN_SLACK: Duration = Duration::from_secs(1);

/// Limits and timeouts of a [`Server`].
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Most requests handled concurrently (default 64).
    pub workers: usize,
    /// Most open client connections (default 1024); beyond: 503 and close.
    pub max_connections: usize,
    /// Most concurrent streaming responses (default 1024).
    pub max_streams: usize,
    /// Largest request body in bytes (default 4 MiB); larger → 413.
    pub max_body: usize,
    /// Keep-alive idle time before the first byte of a next request (default 60 s);
    /// also the socket write timeout.
    pub idle_timeout: Duration,
    /// Deadline for a whole request head once its first byte arrived (default 10 s) → 408.
    pub header_timeout: Duration,
    /// Timeout of each read while reading a body (default 30 s) → 408.
    pub body_timeout: Duration,
    /// Deadline for a whole body once the head is read (default 120 s) → 408, so a body
    /// trickled just inside `body_timeout` cannot hold a connection thread for long.
    pub body_deadline: Duration,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            workers: 64,
            max_connections: 1024,
            max_streams: 1024,
            max_body: 4 * 1024 * 1024,
            idle_timeout: Duration::from_secs(60),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            body_deadline: Duration::from_secs(120),
        }
    }
}

/// A snapshot of a server's load, for metrics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Client connections currently open.
    pub connections: usize,
    /// Requests currently being handled (worker permits in use).
    pub busy_workers: usize,
    /// Streaming responses currently open (stream permits in use).
    pub streams: usize,
    /// Live threads started by the server (accept thread and connection threads).
    pub threads: usize,
}

/// Application logic: answers each request through its [`Responder`].
pub trait Handler: Send + Sync + 'static {
    /// Handles one request. Must answer with [`Responder::send`] or
    /// [`Responder::stream`]; if it does not, the layer answers 500.
    fn handle(&self, req: Request, res: &mut Responder<'_>);

    /// Body for errors the HTTP layer itself answers (400, 408, 413, 417, 431, 503, 505,
    /// and 500 after a handler panic or an invalid response). The status of the returned
    /// response is forced to `status`. Default: `text/plain` with `message`.
    fn error_response(&self, status: u16, message: &str) -> Response {
        plain_error(status, message)
    }
}

/// Any `Fn(Request, &mut Responder)` closure is a handler.
impl<F> Handler for F
where
    F: Fn(Request, &mut Responder<'_>) + Send + Sync + 'static,
{
    fn handle(&self, req: Request, res: &mut Responder<'_>) {
        self(req, res)
    }
}

fn plain_error(status: u16, message: &str) -> Response {
    Response::new(status).with_body(
        "text/plain; charset=utf-8",
        format!("{message}\n").into_bytes(),
    )
}

/// Counting semaphore; `close` makes waiting and later `acquire` calls fail.
struct Semaphore {
    state: Mutex<(usize, bool)>,
    cv: Condvar,
    total: usize,
}

/// A taken semaphore permit, returned on drop. (Owns an `Arc` so that a
/// [`StreamWriter`] can release it without carrying a second lifetime.)
struct Permit(Arc<Semaphore>);

impl Semaphore {
    fn new(total: usize) -> Semaphore {
        Semaphore {
            state: Mutex::new((total, false)),
            cv: Condvar::new(),
            total,
        }
    }

    /// Blocks until a permit is free; `None` once the semaphore is closed.
    fn acquire(self: &Arc<Self>) -> Option<Permit> {
        let mut st = lock(&self.state);
        loop {
            if st.1 {
                return None;
            }
            if st.0 > 0 {
                st.0 -= 1;
                return Some(Permit(Arc::clone(self)));
            }
            st = self.cv.wait(st).unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn try_acquire(self: &Arc<Self>) -> Option<Permit> {
        let mut st = lock(&self.state);
        if st.1 || st.0 == 0 {
            return None;
        }
        st.0 -= 1;
        Some(Permit(Arc::clone(self)))
    }

    fn close(&self) {
        lock(&self.state).1 = true;
        self.cv.notify_all();
    }

    fn in_use(&self) -> usize {
        self.total - lock(&self.state).0
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        lock(&self.0.state).0 += 1;
        self.0.cv.notify_one();
    }
}

/// Decrements the live-thread count when a server thread ends (even by panic).
struct ThreadCount<'a>(&'a AtomicUsize);

impl Drop for ThreadCount<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An accepted, registered connection on its way to a connection thread.
struct Job {
    id: u64,
    stream: TcpStream,
    remote: SocketAddr,
}

struct Entry {
    stream: TcpStream,
    idle: bool,
}

#[derive(Default)]
struct Registry {
    next_id: u64,
    conns: HashMap<u64, Entry>,
}

/// State shared by the server handle and all its threads.
struct Shared {
    config: ServerConfig,
    handler: Arc<dyn Handler>,
    shutting_down: AtomicBool,
    /// Set by [`Server::hurry`]: the shutdown grace ends now.
    hurry: AtomicBool,
    registry: Mutex<Registry>,
    /// Notified whenever a connection is deregistered.
    drained: Condvar,
    workers: Arc<Semaphore>,
    streams: Arc<Semaphore>,
    threads: AtomicUsize,
    handles: Mutex<Vec<JoinHandle<()>>>,
    handoff: Receiver<Job>,
    /// Never receives; disconnects when shutdown starts, releasing idle pooled threads.
    stop: Receiver<()>,
}

impl Shared {
    fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Marks a connection idle (waiting for a next request) or busy. Going idle fails
    /// once shutdown has started; checked under the registry lock, so shutdown either
    /// sees the idle flag or the connection sees the shutdown flag.
    fn set_idle(&self, id: u64, idle: bool) -> bool {
        let mut reg = lock(&self.registry);
        if idle && self.is_shutting_down() {
            return false;
        }
        if let Some(e) = reg.conns.get_mut(&id) {
            e.idle = idle;
        }
        true
    }

    fn deregister(&self, id: u64) -> Option<Entry> {
        let e = lock(&self.registry).conns.remove(&id);
        self.drained.notify_all();
        e
    }

    /// The handler's error response with the status forced; survives a panicking handler.
    fn error_response(&self, status: u16, message: &str) -> Response {
        let made = catch_unwind(AssertUnwindSafe(|| {
            self.handler.error_response(status, message)
        }));
        let mut resp = made.unwrap_or_else(|_| {
            log::error!("Handler::error_response panicked");
            plain_error(status, message)
        });
        resp.status = status;
        resp
    }

    /// Encodes `resp`; an invalid one is replaced by a 500 and logged at error.
    fn encode(&self, resp: &Response, head_only: bool, conn: ConnHeader) -> Vec<u8> {
        http::encode_response(resp, head_only, conn).unwrap_or_else(|why| {
            log::error!("invalid response ({why}); answering 500 instead");
            let alt = self.error_response(500, "invalid response");
            http::encode_response(&alt, head_only, conn).unwrap_or_else(|_| {
                let conn = if conn == ConnHeader::Close {
                    "Connection: close\r\n"
                } else {
                    ""
                };
                format!("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n{conn}\r\n")
                    .into_bytes()
            })
        })
    }
}

/// A running server. Dropping it shuts it down with a 1 s grace period.
pub struct Server {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    accept: Mutex<Option<JoinHandle<()>>>,
    stop: Mutex<Option<Sender<()>>>,
    done: Mutex<bool>,
}

impl Server {
    /// Starts serving on an already bound listener: spawns the accept thread and returns at
    /// once. Zero `workers`/`max_connections` are raised to 1.
    pub fn start(
        listener: TcpListener,
        config: ServerConfig,
        handler: Arc<dyn Handler>,
    ) -> io::Result<Server> {
        listener.set_nonblocking(false)?;
        let local_addr = listener.local_addr()?;
        let mut config = config;
        config.workers = config.workers.max(1);
        config.max_connections = config.max_connections.max(1);
        let (handoff_tx, handoff_rx) = crossbeam_channel::bounded(0);
        let (stop_tx, stop_rx) = crossbeam_channel::bounded(0);
        let shared = Arc::new(Shared {
            workers: Arc::new(Semaphore::new(config.workers)),
            streams: Arc::new(Semaphore::new(config.max_streams)),
            config,
            handler,
            shutting_down: AtomicBool::new(false),
            hurry: AtomicBool::new(false),
            registry: Mutex::new(Registry::default()),
            drained: Condvar::new(),
            threads: AtomicUsize::new(1),
            handles: Mutex::new(Vec::new()),
            handoff: handoff_rx,
            stop: stop_rx,
        });
        let s = Arc::clone(&shared);
        let accept = thread::Builder::new()
            .name("shadowcat-accept".into())
            .stack_size(ACCEPT_STACK)
            .spawn(move || accept_loop(s, listener, handoff_tx))
            .inspect_err(|_| {
                shared.threads.fetch_sub(1, Ordering::SeqCst);
            })?;
        log::info!("listening on {local_addr}");
        Ok(Server {
            shared,
            local_addr,
            accept: Mutex::new(Some(accept)),
            stop: Mutex::new(Some(stop_tx)),
            done: Mutex::new(false),
        })
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Whether shutdown has started (handlers and streams may poll this to end early).
    pub fn is_shutting_down(&self) -> bool {
        self.shared.is_shutting_down()
    }

    /// Current load: open connections, busy workers, open streams, live threads.
    pub fn stats(&self) -> ServerStats {
        ServerStats {
            connections: lock(&self.shared.registry).conns.len(),
            busy_workers: self.shared.workers.in_use(),
            streams: self.shared.streams.in_use(),
            threads: self.shared.threads.load(Ordering::SeqCst),
        }
    }

    /// Stops accepting, closes idle connections at once, lets in-flight requests and
    /// streams finish for up to `grace`, then shuts down every remaining socket and joins
    /// every thread. Idempotent (a concurrent call waits for the first); returns within
    /// about `grace` + 1 s even if a handler never returns (its thread is then detached).
    pub fn shutdown(&self, grace: Duration) {
        let mut done = lock(&self.done);
        if *done {
            return;
        }
        let deadline = Instant::now() + grace;
        let shared = &self.shared;
        log::info!("shutting down {} (grace {grace:?})", self.local_addr);
        shared.shutting_down.store(true, Ordering::SeqCst);
        self.wake_accept();
        drop(lock(&self.stop).take());
        // Idle connections: close now. Busy ones: wait until they finish or grace ends.
        let mut reg = lock(&shared.registry);
        for e in reg.conns.values().filter(|e| e.idle) {
            let _ = e.stream.shutdown(Shutdown::Both);
        }
        while !reg.conns.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || shared.hurry.load(Ordering::SeqCst) {
                log::warn!(
                    "grace period over: closing {} connection(s)",
                    reg.conns.len()
                );
                break;
            }
            reg = shared
                .drained
                .wait_timeout(reg, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        for e in reg.conns.values() {
            let _ = e.stream.shutdown(Shutdown::Both);
        }
        drop(reg);
        shared.workers.close();
        shared.streams.close();
        let until = Instant::now().max(deadline) + JOIN_SLACK;
        let accept: Vec<_> = lock(&self.accept).take().into_iter().collect();
        let mut stuck = join_until(accept, until);
        let handles = std::mem::take(&mut *lock(&shared.handles));
        stuck += join_until(handles, until);
        if stuck > 0 {
            log::warn!("shutdown: {stuck} thread(s) still busy in a handler; detached");
        }
        *done = true;
    }

    /// Cuts a running (or later) [`Server::shutdown`]'s grace short: connections still busy
    /// are closed at once. Safe to call from any thread, any number of times.
    pub fn hurry(&self) {
        self.shared.hurry.store(true, Ordering::SeqCst);
        let _reg = lock(&self.shared.registry);
        self.shared.drained.notify_all();
    }

    /// Wakes the blocking `accept()` by connecting to the listener.
    fn wake_accept(&self) {
        let mut addr = self.local_addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr {
                SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
            });
        }
        if let Err(e) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            log::warn!("cannot wake the accept thread at {addr}: {e}");
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown(Duration::from_secs(1));
    }
}

/// Joins the threads that finish before `until`; returns how many did not (detached).
fn join_until(mut pending: Vec<JoinHandle<()>>, until: Instant) -> usize {
    loop {
        let (finished, rest): (Vec<_>, Vec<_>) = pending.into_iter().partition(|h| h.is_finished());
        for h in finished {
            if h.join().is_err() {
                log::error!("a server thread panicked");
            }
        }
        pending = rest;
        if pending.is_empty() || Instant::now() >= until {
            return pending.len();
        }
        thread::sleep(Duration::from_millis(5));
    }
}

fn accept_loop(shared: Arc<Shared>, listener: TcpListener, handoff: Sender<Job>) {
    let _count = ThreadCount(&shared.threads);
    loop {
        let accepted = listener.accept();
        if shared.is_shutting_down() {
            break;
        }
        match accepted {
            Ok((stream, remote)) => admit(&shared, &handoff, stream, remote),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {
                log::debug!("accept: {e}");
            }
            Err(e) => {
                log::warn!("accept failed (retrying in 50 ms): {e}");
                thread::sleep(ACCEPT_RETRY);
            }
        }
    }
    log::debug!("accept thread exits");
}

/// Configures, registers and dispatches one accepted socket (or rejects it with 503).
fn admit(shared: &Arc<Shared>, handoff: &Sender<Job>, stream: TcpStream, remote: SocketAddr) {
    let cfg = &shared.config;
    let timeout = Some(cfg.idle_timeout.max(Duration::from_millis(1)));
    let clone = stream
        .set_nodelay(true)
        .and_then(|()| stream.set_read_timeout(timeout))
        .and_then(|()| stream.set_write_timeout(timeout))
        .and_then(|()| stream.try_clone());
    let clone = match clone {
        Ok(c) => c,
        Err(e) => {
            log::warn!("{remote}: cannot set up accepted connection: {e}");
            return reject(shared, &stream, 503, "cannot accept connection");
        }
    };
    let id = {
        let mut reg = lock(&shared.registry);
        if reg.conns.len() >= cfg.max_connections {
            None
        } else {
            reg.next_id += 1;
            let id = reg.next_id;
            reg.conns.insert(
                id,
                Entry {
                    stream: clone,
                    idle: false,
                },
            );
            Some(id)
        }
    };
    let Some(id) = id else {
        log::warn!(
            "{remote}: connection limit ({}) reached; answering 503",
            cfg.max_connections
        );
        return reject(shared, &stream, 503, "too many connections");
    };
    let job = match handoff.try_send(Job { id, stream, remote }) {
        Ok(()) => return,
        Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => job,
    };
    // No pooled thread is waiting. The accept thread counts too, so `threads - 1` is the
    // number of connection threads; at the cap one of them must be about to become free.
    if shared.threads.load(Ordering::SeqCst) > cfg.max_connections {
        match handoff.send_timeout(job, Duration::from_secs(1)) {
            Ok(()) => {}
            Err(SendTimeoutError::Timeout(job) | SendTimeoutError::Disconnected(job)) => {
                shared.deregister(job.id);
                reject(shared, &job.stream, 503, "no connection thread available");
            }
        }
        return;
    }
    spawn_conn_thread(shared, job);
}

fn spawn_conn_thread(shared: &Arc<Shared>, job: Job) {
    let id = job.id;
    let s = Arc::clone(shared);
    shared.threads.fetch_add(1, Ordering::SeqCst);
    let spawned = thread::Builder::new()
        .name("shadowcat-conn".into())
        .stack_size(CONN_STACK)
        .spawn(move || conn_thread(s, job));
    match spawned {
        Ok(h) => {
            let mut handles = lock(&shared.handles);
            handles.retain(|h| !h.is_finished());
            handles.push(h);
        }
        Err(e) => {
            shared.threads.fetch_sub(1, Ordering::SeqCst);
            log::warn!("cannot spawn a connection thread: {e}");
            if let Some(entry) = shared.deregister(id) {
                reject(shared, &entry.stream, 503, "no connection thread available");
            }
        }
    }
}

/// Writes an error answer on the accept thread and closes, without taking a thread.
fn reject(shared: &Shared, stream: &TcpStream, status: u16, message: &str) {
    let bytes = shared.encode(
        &shared.error_response(status, message),
        false,
        ConnHeader::Close,
    );
    let mut w = stream;
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    if w.write_all(&bytes).is_ok() {
        let _ = stream.shutdown(Shutdown::Write);
        // Drain what already arrived, so that closing does not reset the connection.
        if stream.set_nonblocking(true).is_ok() {
            let mut buf = [0u8; 4096];
            for _ in 0..16 {
                if !matches!(w.read(&mut buf), Ok(n) if n > 0) {
                    break;
                }
            }
        }
    }
}

/// Body of a connection thread: serves its first connection, then waits in the pool.
fn conn_thread(shared: Arc<Shared>, first: Job) {
    let _count = ThreadCount(&shared.threads);
    let mut job = first;
    loop {
        serve(&shared, job);
        if shared.is_shutting_down() {
            return;
        }
        crossbeam_channel::select! {
            recv(shared.handoff) -> next => match next {
                Ok(next) => job = next,
                Err(_) => return,
            },
            recv(shared.stop) -> _ => return,
            default(POOL_IDLE) => return,
        }
    }
}

/// Deregisters a connection when its serving ends (also on panic).
struct Registered<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.shared.deregister(self.id);
    }
}

/// The keep-alive loop of one connection.
fn serve(shared: &Shared, job: Job) {
    let Job { id, stream, remote } = job;
    let _registered = Registered { shared, id };
    let cfg = &shared.config;
    let limits = Limits {
        max_body: cfg.max_body,
        header_timeout: cfg.header_timeout,
        body_timeout: cfg.body_timeout,
        body_deadline: cfg.body_deadline,
    };
    let mut wire = Wire::new(stream, remote);
    loop {
        if !wire.has_buffered() {
            if !shared.set_idle(id, true) {
                break;
            }
            let arrived = wire.wait_for_request(cfg.idle_timeout);
            shared.set_idle(id, false);
            if !arrived {
                break;
            }
        }
        match wire.read_request(&limits) {
            Ok(req) => {
                if !handle_one(shared, wire.stream(), req) {
                    break;
                }
            }
            Err(ReadError::Closed) => break,
            Err(ReadError::Reject(status, message)) => {
                log::debug!("{remote}: rejecting request: {status} {message}");
                let resp = shared.error_response(status, message);
                let mut w = wire.stream();
                match w.write_all(&shared.encode(&resp, false, ConnHeader::Close)) {
                    Ok(()) => linger(wire.stream()),
                    Err(e) => log::debug!("{remote}: client gone: {e}"),
                }
                break;
            }
        }
    }
    log::debug!("{remote}: connection closed");
}

/// Half-closes and drains input for a short while, so the client can read an error
/// answer before the connection is closed (closing with unread input sends a reset).
fn linger(stream: &TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    let deadline = Instant::now() + LINGER_TIME;
    let mut buf = [0u8; 4096];
    let mut total = 0;
    let mut r = stream;
    while total < LINGER_BYTES {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match r.read(&mut buf) {
            Ok(n) if n > 0 => total += n,
            _ => break,
        }
    }
}

/// Runs the handler for one request under a worker permit. Returns whether the
/// connection may be reused.
fn handle_one(shared: &Shared, stream: &TcpStream, req: Request) -> bool {
    let Some(permit) = shared.workers.acquire() else {
        return false;
    };
    let remote = req.remote;
    let mut res = Responder {
        stream,
        shared,
        version: req.version,
        head_only: req.method == "HEAD",
        keep_alive: req.wants_keep_alive(),
        sent: false,
        worker: Some(permit),
        stream_permit: None,
        stream_open: false,
    };
    let outcome = catch_unwind(AssertUnwindSafe(|| shared.handler.handle(req, &mut res)));
    if outcome.is_err() {
        log::error!("{remote}: handler panicked");
        res.keep_alive = false;
        if !res.sent {
            let _ = res.send(shared.error_response(500, "internal error"));
        }
        return false;
    }
    if !res.sent {
        log::error!("{remote}: handler returned without responding");
        let _ = res.send(shared.error_response(500, "no response"));
    }
    res.keep_alive && !res.stream_open
}

/// The way a handler answers one request: [`send`](Self::send) a whole response or
/// [`stream`](Self::stream) a chunked one. Owned by the connection loop.
pub struct Responder<'a> {
    stream: &'a TcpStream,
    shared: &'a Shared,
    version: Version,
    head_only: bool,
    keep_alive: bool,
    sent: bool,
    /// Held while the handler runs; released when a stream starts.
    worker: Option<Permit>,
    /// Held while a stream is open.
    stream_permit: Option<Permit>,
    /// A stream was started and not finished: the connection cannot be reused.
    stream_open: bool,
}

/// Why [`Responder::stream`] could not start a stream.
#[derive(Debug)]
pub enum StreamError {
    /// `max_streams` streams are open; nothing was written (answer 503 with `send`).
    Busy,
    /// The request is HTTP/1.0, which cannot take chunked responses; nothing was written.
    Http10,
    /// A response was already sent, the head was invalid (nothing written), or writing it
    /// failed (client gone).
    Io(io::Error),
}

impl std::fmt::Display for StreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StreamError::Busy => f.write_str("too many open streams"),
            StreamError::Http10 => f.write_str("HTTP/1.0 cannot take a streaming response"),
            StreamError::Io(e) => write!(f, "stream: {e}"),
        }
    }
}

impl std::error::Error for StreamError {}

impl From<io::Error> for StreamError {
    fn from(e: io::Error) -> StreamError {
        StreamError::Io(e)
    }
}

impl<'a> Responder<'a> {
    /// HTTP version of the request.
    pub fn version(&self) -> Version {
        self.version
    }

    /// Whether a response (or a stream head) was already written.
    pub fn is_sent(&self) -> bool {
        self.sent
    }

    /// Whether the server is shutting down (streams should finish soon).
    pub fn shutting_down(&self) -> bool {
        self.shared.is_shutting_down()
    }

    /// The `Connection` header of the response; decides keep-alive for good.
    fn conn_header(&mut self) -> ConnHeader {
        if self.shared.is_shutting_down() {
            self.keep_alive = false;
        }
        match (self.keep_alive, self.version) {
            (false, _) => ConnHeader::Close,
            (true, Version::Http10) => ConnHeader::KeepAlive,
            (true, Version::Http11) => ConnHeader::None,
        }
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut w = self.stream;
        w.write_all(bytes).inspect_err(|e| {
            self.keep_alive = false;
            log::debug!("client gone while writing a response: {e}");
        })
    }

    /// Writes a fixed-length response: `Content-Length` is set by the layer (handler copies
    /// of `Content-Length`, `Transfer-Encoding` and `Connection` are dropped), head and body
    /// go out in one write, and `Connection: close` is added when the connection will
    /// close. An invalid header or status is logged at error and a 500 is sent instead.
    /// Err: a response was already sent, or the client is gone.
    pub fn send(&mut self, resp: Response) -> io::Result<()> {
        if self.sent {
            return Err(io::Error::other("response already sent"));
        }
        self.sent = true;
        let conn = self.conn_header();
        let bytes = self.shared.encode(&resp, self.head_only, conn);
        self.write(&bytes)
    }

    /// Starts a chunked streaming response (for SSE): takes a stream permit in place of
    /// this request's worker permit, writes the head with `Transfer-Encoding: chunked` and
    /// flushes. Nothing is written on `Busy`, `Http10`, or an invalid head (`Io` with
    /// `InvalidInput`, logged at error).
    pub fn stream(
        &mut self,
        status: u16,
        headers: &[(String, String)],
    ) -> Result<StreamWriter<'_>, StreamError> {
        if self.sent {
            return Err(StreamError::Io(io::Error::other("response already sent")));
        }
        if self.version == Version::Http10 {
            return Err(StreamError::Http10);
        }
        let mut head = Vec::with_capacity(256);
        let conn = self.conn_header();
        let encoded = match status {
            204 | 304 => Err(format!("status {status} cannot have a body")),
            _ => http::encode_head(&mut head, status, headers, Framing::Chunked, conn),
        };
        if let Err(why) = encoded {
            log::error!("invalid stream head: {why}");
            return Err(StreamError::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                why,
            )));
        }
        let Some(permit) = self.shared.streams.try_acquire() else {
            return Err(StreamError::Busy);
        };
        self.worker = None;
        self.stream_permit = Some(permit);
        self.sent = true;
        self.stream_open = true;
        self.write(&head)?;
        Ok(StreamWriter {
            stream: self.stream,
            shared: self.shared,
            open: &mut self.stream_open,
            permit: &mut self.stream_permit,
            head_only: self.head_only,
            failed: false,
        })
    }
}

/// An open chunked response. Dropping it without [`finish`](Self::finish) closes the
/// connection after the handler returns (it is never reused); the stream permit is then
/// returned when the handler returns. (`StreamWriter` deliberately has no `Drop` impl, so
/// that `match res.stream(..) { Err(_) => res.send(..), .. }` borrow-checks.)
pub struct StreamWriter<'a> {
    stream: &'a TcpStream,
    shared: &'a Shared,
    open: &'a mut bool,
    permit: &'a mut Option<Permit>,
    head_only: bool,
    failed: bool,
}

impl StreamWriter<'_> {
    /// Whether the server is shutting down (the stream should finish soon).
    pub fn shutting_down(&self) -> bool {
        self.shared.is_shutting_down()
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "stream already failed",
            ));
        }
        let mut w = self.stream;
        w.write_all(bytes)
            .and_then(|()| w.flush())
            .inspect_err(|e| {
                self.failed = true;
                log::debug!("client gone during a stream: {e}");
            })
    }

    /// Writes `data` as one chunk (e.g. one whole SSE event) and flushes. Empty data is a
    /// no-op. Err: the client is gone (broken pipe, reset, write timeout); stop streaming.
    pub fn write_chunk(&mut self, data: &[u8]) -> io::Result<()> {
        if data.is_empty() || self.head_only {
            return self.write(&[]);
        }
        let mut buf = Vec::with_capacity(data.len() + 20);
        let _ = write!(buf, "{:x}\r\n", data.len()); // into a Vec: cannot fail
        buf.extend_from_slice(data);
        buf.extend_from_slice(b"\r\n");
        self.write(&buf)
    }

    /// Writes the terminating zero-length chunk and returns the stream permit; the
    /// connection may then be reused (keep-alive).
    pub fn finish(mut self) -> io::Result<()> {
        if !self.head_only {
            self.write(b"0\r\n\r\n")?;
        }
        *self.open = false;
        *self.permit = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;
    use std::io::BufReader;
    use std::sync::mpsc;

    const T: Duration = Duration::from_secs(5);

    fn start<F>(config: ServerConfig, f: F) -> Server
    where
        F: Fn(Request, &mut Responder<'_>) + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        Server::start(listener, config, Arc::new(f)).expect("start")
    }

    /// Echoes method, target and body.
    fn echo(req: Request, res: &mut Responder<'_>) {
        let mut body = format!("{} {} ", req.method, req.target).into_bytes();
        body.extend_from_slice(&req.body);
        let _ = res.send(Response::new(200).with_body("text/plain", body));
    }

    struct Resp {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Resp {
        fn header(&self, name: &str) -> Option<&str> {
            let mut it = self.headers.iter();
            it.find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.body).into_owned()
        }
    }

    struct Client(BufReader<TcpStream>);

    impl Client {
        fn new(server: &Server) -> Client {
            let s = TcpStream::connect(server.local_addr()).expect("connect");
            s.set_read_timeout(Some(T)).expect("timeout");
            Client(BufReader::new(s))
        }
        fn send(&mut self, bytes: &[u8]) {
            self.0.get_mut().write_all(bytes).expect("write");
        }
        fn line(&mut self) -> String {
            let mut l = String::new();
            self.0.read_line(&mut l).expect("read line");
            l.trim_end_matches(['\r', '\n']).to_string()
        }
        fn head(&mut self) -> Resp {
            let status_line = self.line();
            let status = status_line.split(' ').nth(1).and_then(|s| s.parse().ok());
            let status = status.unwrap_or_else(|| panic!("bad status line {status_line:?}"));
            let mut headers = Vec::new();
            loop {
                let l = self.line();
                if l.is_empty() {
                    break;
                }
                let (n, v) = l.split_once(':').expect("header line");
                headers.push((n.to_string(), v.trim().to_string()));
            }
            Resp {
                status,
                headers,
                body: Vec::new(),
            }
        }
        fn chunk(&mut self) -> Vec<u8> {
            let size = usize::from_str_radix(&self.line(), 16).expect("chunk size");
            let mut data = vec![0; size + 2];
            self.0.read_exact(&mut data).expect("chunk");
            data.truncate(size);
            data
        }
        fn resp(&mut self) -> Resp {
            let mut r = self.head();
            if let Some(n) = r.header("content-length") {
                r.body = vec![0; n.parse().expect("length")];
                self.0.read_exact(&mut r.body).expect("body");
            } else if r.header("transfer-encoding").is_some() {
                loop {
                    let c = self.chunk();
                    if c.is_empty() {
                        break;
                    }
                    r.body.extend(c);
                }
            }
            r
        }
        /// Whether the server closed the connection (EOF or reset) within the timeout.
        fn closed(&mut self) -> bool {
            let mut buf = [0; 64];
            match self.0.read(&mut buf) {
                Ok(0) => true,
                Err(e) => e.kind() == io::ErrorKind::ConnectionReset,
                Ok(_) => false,
            }
        }
    }

    /// Waits (bounded) for a condition that becomes true right after a response is sent.
    fn wait_until(cond: impl Fn() -> bool) {
        let t0 = Instant::now();
        while !cond() {
            assert!(t0.elapsed() < T, "condition not reached");
            thread::sleep(Duration::from_millis(2));
        }
    }

    fn expect_reject(server: &Server, request: &[u8], status: u16) {
        let mut c = Client::new(server);
        c.send(request);
        let r = c.resp();
        assert_eq!(r.status, status, "{}", String::from_utf8_lossy(request));
        assert_eq!(r.header("connection"), Some("close"));
        assert!(c.closed(), "connection stays open after {status}");
    }

    #[test]
    fn get_and_post_echo() {
        let s = start(ServerConfig::default(), echo);
        let mut c = Client::new(&s);
        c.send(b"GET /x?y=1 HTTP/1.1\r\nHost: a\r\n\r\n");
        let r = c.resp();
        assert_eq!((r.status, r.text().as_str()), (200, "GET /x?y=1 "));
        assert_eq!(r.header("connection"), None);
        c.send(b"POST /mcp HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello");
        assert_eq!(c.resp().text(), "POST /mcp hello");
        c.send(b"HEAD / HTTP/1.1\r\n\r\nGET /after HTTP/1.1\r\n\r\n");
        let head = c.head();
        assert_eq!(head.header("content-length"), Some("7"));
        assert_eq!(c.resp().text(), "GET /after ");
    }

    #[test]
    fn keep_alive_and_close() {
        let s = start(ServerConfig::default(), echo);
        let mut c = Client::new(&s);
        c.send(b"GET /1 HTTP/1.1\r\n\r\n");
        assert_eq!(c.resp().text(), "GET /1 ");
        c.send(b"GET /2 HTTP/1.1\r\nConnection: close\r\n\r\n");
        let r = c.resp();
        assert_eq!(
            (r.text().as_str(), r.header("connection")),
            ("GET /2 ", Some("close"))
        );
        assert!(c.closed());
        let mut c = Client::new(&s);
        c.send(b"GET /3 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert_eq!(c.resp().header("connection"), Some("keep-alive"));
        c.send(b"GET /4 HTTP/1.0\r\n\r\n");
        assert_eq!(c.resp().header("connection"), Some("close"));
        assert!(c.closed());
    }

    #[test]
    fn pipelined_requests_in_order() {
        let s = start(ServerConfig::default(), echo);
        let mut c = Client::new(&s);
        c.send(b"GET /a HTTP/1.1\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 2\r\n\r\nhiGET /c HTTP/1.1\r\n\r\n");
        let texts: Vec<_> = (0..3).map(|_| c.resp().text()).collect();
        assert_eq!(texts, ["GET /a ", "POST /b hi", "GET /c "]);
    }

    #[test]
    fn head_limits() {
        let s = start(ServerConfig::default(), echo);
        let long = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(9000));
        expect_reject(&s, long.as_bytes(), 431);
        let long_target = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(9000));
        expect_reject(&s, long_target.as_bytes(), 431);
        let many = format!("GET / HTTP/1.1\r\n{}\r\n", "X: y\r\n".repeat(65));
        expect_reject(&s, many.as_bytes(), 431);
        let big = format!(
            "GET / HTTP/1.1\r\n{}\r\n",
            format!("X: {}\r\n", "a".repeat(8000)).repeat(5)
        );
        expect_reject(&s, big.as_bytes(), 431);
        expect_reject(&s, b"GET / HTTP/2.0\r\n\r\n", 505);
        expect_reject(&s, b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", 400);
    }

    #[test]
    fn framing_rejections() {
        let s = start(ServerConfig::default(), echo);
        for headers in [
            "Content-Length: 3\r\nTransfer-Encoding: chunked",
            "Content-Length: abc",
            "Content-Length: +5",
            "Content-Length: 3\r\nContent-Length: 3",
            "Content-Length: 3, 3",
            "Transfer-Encoding: gzip, chunked",
            "Transfer-Encoding: identity",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
        ] {
            let req = format!("POST / HTTP/1.1\r\n{headers}\r\n\r\nabc\r\n0\r\n\r\n");
            expect_reject(&s, req.as_bytes(), 400);
        }
        expect_reject(
            &s,
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nx\r\n",
            400,
        );
        expect_reject(
            &s,
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd",
            400,
        );
        expect_reject(
            &s,
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n",
            400,
        );
    }

    #[test]
    fn chunked_bodies() {
        let s = start(ServerConfig::default(), echo);
        let mut c = Client::new(&s);
        c.send(
            b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
              5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\nGET /next HTTP/1.1\r\n\r\n",
        );
        assert_eq!(c.resp().text(), "POST /c hello world");
        assert_eq!(c.resp().text(), "GET /next ");
        c.send(b"POST /d HTTP/1.1\r\nTransfer-Encoding:  Chunked \r\n\r\n");
        c.send(b"A\r\n0123456789\r\n0\r\n\r\n");
        assert_eq!(c.resp().text(), "POST /d 0123456789");
        // Framing split across reads, including inside CRLFs.
        c.send(b"POST /e HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
        for part in [&b"3\r"[..], b"\nabc\r", b"\n", b"0\r\n", b"\r", b"\n"] {
            thread::sleep(Duration::from_millis(5));
            c.send(part);
        }
        assert_eq!(c.resp().text(), "POST /e abc");
    }

    #[test]
    fn bodies_over_max_body() {
        let config = ServerConfig {
            max_body: 16,
            ..ServerConfig::default()
        };
        let s = start(config, echo);
        expect_reject(
            &s,
            b"POST / HTTP/1.1\r\nContent-Length: 17\r\n\r\n0123456789",
            413,
        );
        expect_reject(
            &s,
            b"POST / HTTP/1.1\r\nContent-Length: 999999999999\r\n\r\n",
            413,
        );
        let chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
                        8\r\n01234567\r\n8\r\n01234567\r\n1\r\nx\r\n0\r\n\r\n";
        expect_reject(&s, chunked, 413);
        let mut c = Client::new(&s);
        c.send(b"POST / HTTP/1.1\r\nContent-Length: 16\r\n\r\n0123456789abcdef");
        assert_eq!(c.resp().status, 200);
    }

    #[test]
    fn expect_continue() {
        let config = ServerConfig {
            max_body: 16,
            ..ServerConfig::default()
        };
        let s = start(config, echo);
        let mut c = Client::new(&s);
        c.send(b"POST /e HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
        assert_eq!(c.head().status, 100);
        c.send(b"hello");
        assert_eq!(c.resp().text(), "POST /e hello");
        expect_reject(
            &s,
            b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 17\r\n\r\n",
            413,
        );
        expect_reject(
            &s,
            b"POST / HTTP/1.1\r\nExpect: magic\r\nContent-Length: 1\r\n\r\n",
            417,
        );
    }

    #[test]
    fn trickled_head_times_out() {
        let config = ServerConfig {
            header_timeout: Duration::from_millis(300),
            ..ServerConfig::default()
        };
        let s = start(config, echo);
        let mut c = Client::new(&s);
        let t0 = Instant::now();
        c.send(b"GET / HTTP/1.1\r\n");
        for _ in 0..4 {
            thread::sleep(Duration::from_millis(100));
            let _ = c.0.get_mut().write_all(b"X: y\r\n");
        }
        let r = c.resp();
        assert_eq!(r.status, 408);
        assert!(
            t0.elapsed() < Duration::from_millis(1500),
            "{:?}",
            t0.elapsed()
        );
    }

    #[test]
    fn idle_connection_closed() {
        let config = ServerConfig {
            idle_timeout: Duration::from_millis(200),
            ..ServerConfig::default()
        };
        let s = start(config, echo);
        let mut c = Client::new(&s);
        c.send(b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(c.resp().status, 200);
        let t0 = Instant::now();
        assert!(c.closed());
        let waited = t0.elapsed();
        assert!(
            waited >= Duration::from_millis(150) && waited < Duration::from_secs(2),
            "{waited:?}"
        );
    }

    #[test]
    fn connection_limit_answers_503() {
        let config = ServerConfig {
            max_connections: 2,
            ..ServerConfig::default()
        };
        let s = start(config, echo);
        let mut open = Vec::new();
        for _ in 0..2 {
            let mut c = Client::new(&s);
            c.send(b"GET / HTTP/1.1\r\n\r\n");
            assert_eq!(c.resp().status, 200);
            open.push(c);
        }
        let mut third = Client::new(&s);
        let r = third.resp();
        assert_eq!((r.status, r.header("connection")), (503, Some("close")));
        assert!(third.closed());
        assert_eq!(s.stats().connections, 2);
        drop(open);
        wait_until(|| s.stats().connections == 0);
        let mut c = Client::new(&s);
        c.send(b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(c.resp().status, 200);
    }

    #[test]
    fn handler_panic_answers_500_and_returns_permit() {
        let config = ServerConfig {
            workers: 1,
            ..ServerConfig::default()
        };
        let s = start(config, |req: Request, res: &mut Responder<'_>| {
            if req.path() == "/panic" {
                panic!("test panic");
            }
            echo(req, res);
        });
        let mut c = Client::new(&s);
        c.send(b"GET /panic HTTP/1.1\r\n\r\n");
        let r = c.resp();
        assert_eq!((r.status, r.header("connection")), (500, Some("close")));
        assert!(c.closed());
        let mut c = Client::new(&s);
        c.send(b"GET /ok HTTP/1.1\r\n\r\n");
        assert_eq!(c.resp().text(), "GET /ok ");
        wait_until(|| s.stats().busy_workers == 0);
    }

    #[test]
    fn invalid_response_header_becomes_500() {
        let s = start(
            ServerConfig::default(),
            |_req: Request, res: &mut Responder<'_>| {
                let _ = res.send(Response::new(200).with_header("X", "a\r\nX-Injected: 1"));
            },
        );
        let mut c = Client::new(&s);
        c.send(b"GET / HTTP/1.1\r\n\r\n");
        let r = c.resp();
        assert_eq!((r.status, r.header("x-injected")), (500, None));
    }

    /// `/sse` streams "a", waits for a signal, streams "b" and finishes; others echo.
    fn sse_server(config: ServerConfig) -> (Server, mpsc::SyncSender<()>) {
        let (tx, rx) = mpsc::sync_channel::<()>(8);
        let rx = Mutex::new(rx);
        let s = start(config, move |req: Request, res: &mut Responder<'_>| {
            if req.path() != "/sse" {
                return echo(req, res);
            }
            let headers = [("Content-Type".to_string(), "text/event-stream".to_string())];
            match res.stream(200, &headers) {
                Ok(mut w) => {
                    let _ = w.write_chunk(b"data: a\n\n");
                    let _ = lock(&rx).recv_timeout(T);
                    let _ = w.write_chunk(b"data: b\n\n");
                    let _ = w.finish();
                }
                Err(StreamError::Busy) => drop(res.send(Response::new(503))),
                Err(StreamError::Http10) => drop(res.send(Response::new(505))),
                Err(StreamError::Io(_)) => {}
            }
        });
        (s, tx)
    }

    #[test]
    fn streaming_chunks_arrive_before_finish() {
        let (s, release) = sse_server(ServerConfig::default());
        let mut c = Client::new(&s);
        c.send(b"GET /sse HTTP/1.1\r\n\r\n");
        let head = c.head();
        assert_eq!(head.header("transfer-encoding"), Some("chunked"));
        assert_eq!(c.chunk(), b"data: a\n\n");
        assert_eq!((s.stats().streams, s.stats().busy_workers), (1, 0));
        release.send(()).expect("release");
        assert_eq!(c.chunk(), b"data: b\n\n");
        assert_eq!(c.chunk(), b"");
        c.send(b"GET /after HTTP/1.1\r\n\r\n");
        assert_eq!(c.resp().text(), "GET /after ");
        wait_until(|| s.stats().streams == 0);
        let mut c = Client::new(&s);
        c.send(b"GET /sse HTTP/1.0\r\n\r\n");
        assert_eq!(c.resp().status, 505);
    }

    #[test]
    fn stream_limit_gives_busy() {
        let config = ServerConfig {
            max_streams: 1,
            ..ServerConfig::default()
        };
        let (s, release) = sse_server(config);
        let mut first = Client::new(&s);
        first.send(b"GET /sse HTTP/1.1\r\n\r\n");
        first.head();
        assert_eq!(first.chunk(), b"data: a\n\n");
        let mut second = Client::new(&s);
        second.send(b"GET /sse HTTP/1.1\r\n\r\n");
        assert_eq!(second.resp().status, 503);
        release.send(()).expect("release");
        assert_eq!(first.chunk(), b"data: b\n\n");
        assert_eq!(first.chunk(), b"");
        first.send(b"GET /sse HTTP/1.1\r\n\r\n");
        assert_eq!(
            first.head().status,
            200,
            "stream permit returned after finish"
        );
        release.send(()).expect("release");
    }

    #[test]
    fn stream_notices_client_gone() {
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let s = start(
            ServerConfig::default(),
            move |_req: Request, res: &mut Responder<'_>| {
                let Ok(mut w) = res.stream(200, &[]) else {
                    return;
                };
                let t0 = Instant::now();
                let result = loop {
                    if let Err(e) = w.write_chunk(b": ping\n\n") {
                        break Ok(e.kind());
                    }
                    if t0.elapsed() > T {
                        break Err("no error");
                    }
                    thread::sleep(Duration::from_millis(20));
                };
                let _ = lock(&tx).send(result);
            },
        );
        let mut c = Client::new(&s);
        c.send(b"GET /sse HTTP/1.1\r\n\r\n");
        c.head();
        assert_eq!(c.chunk(), b": ping\n\n");
        drop(c);
        let result = rx.recv_timeout(T + T).expect("handler result");
        assert!(result.is_ok(), "{result:?}");
    }

    #[test]
    fn shutdown_closes_idle_connections_quickly() {
        let s = start(ServerConfig::default(), echo);
        let mut c = Client::new(&s);
        c.send(b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(c.resp().status, 200);
        assert!(s.stats().threads >= 2);
        let t0 = Instant::now();
        s.shutdown(Duration::from_secs(5));
        assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
        assert!(c.closed());
        assert_eq!(s.stats(), ServerStats::default());
        s.shutdown(Duration::from_secs(5));
        assert!(
            TcpStream::connect(s.local_addr()).is_err(),
            "listener closed"
        );
    }

    #[test]
    fn shutdown_lets_inflight_request_finish() {
        let (started_tx, started) = mpsc::channel();
        let started_tx = Mutex::new(started_tx);
        let s = Arc::new(start(
            ServerConfig::default(),
            move |req: Request, res: &mut Responder<'_>| {
                let _ = lock(&started_tx).send(());
                thread::sleep(Duration::from_millis(300));
                echo(req, res);
            },
        ));
        let mut c = Client::new(&s);
        c.send(b"GET /slow HTTP/1.1\r\n\r\n");
        started.recv_timeout(T).expect("handler started");
        let t0 = Instant::now();
        s.shutdown(Duration::from_secs(3));
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_millis(200) && took < Duration::from_secs(2),
            "{took:?}"
        );
        let r = c.resp();
        assert_eq!((r.status, r.header("connection")), (200, Some("close")));
        assert_eq!(s.stats(), ServerStats::default());
    }

    #[test]
    fn shutdown_ends_streams() {
        // One stream polls shutting_down and finishes; one ignores it until its socket dies.
        let s = start(
            ServerConfig::default(),
            |req: Request, res: &mut Responder<'_>| {
                let Ok(mut w) = res.stream(200, &[]) else {
                    return;
                };
                let t0 = Instant::now();
                while t0.elapsed() < T + T {
                    if req.path() == "/polite" && w.shutting_down() {
                        let _ = w.finish();
                        return;
                    }
                    if w.write_chunk(b": ping\n\n").is_err() {
                        return;
                    }
                    thread::sleep(Duration::from_millis(10));
                }
            },
        );
        let mut polite = Client::new(&s);
        polite.send(b"GET /polite HTTP/1.1\r\n\r\n");
        polite.head();
        let mut rude = Client::new(&s);
        rude.send(b"GET /rude HTTP/1.1\r\n\r\n");
        rude.head();
        let t0 = Instant::now();
        s.shutdown(Duration::from_millis(300));
        let took = t0.elapsed();
        assert!(took < Duration::from_millis(1500), "{took:?}");
        assert_eq!(s.stats(), ServerStats::default());
        while !polite.chunk().is_empty() {}
        assert!(polite.closed());
    }

    #[test]
    fn pooled_thread_is_reused() {
        let s = start(ServerConfig::default(), echo);
        for i in 0..3 {
            let mut c = Client::new(&s);
            c.send(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
            assert_eq!(c.resp().status, 200);
            assert!(c.closed());
            wait_until(|| s.stats().connections == 0);
            // Wait until the thread is back in the pool (blocked in recv), then reconnect.
            thread::sleep(Duration::from_millis(20));
            assert_eq!(
                s.stats().threads,
                2,
                "round {i}: accept + one pooled thread"
            );
        }
    }

    /// Names of this process's threads started by a shadowcat server (comm is truncated).
    fn shadowcat_threads() -> usize {
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return 0;
        };
        tasks
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .filter(|name| name.starts_with("shadowcat-"))
            .count()
    }

    #[test]
    fn threads_are_joined_after_shutdown() {
        let s = start(ServerConfig::default(), echo);
        let clients: Vec<_> = (0..4)
            .map(|_| {
                let mut c = Client::new(&s);
                c.send(b"GET / HTTP/1.1\r\n\r\n");
                assert_eq!(c.resp().status, 200);
                c
            })
            .collect();
        assert_eq!(s.stats().threads, 5);
        assert!(shadowcat_threads() >= 5);
        s.shutdown(Duration::from_secs(1));
        assert_eq!(s.stats().threads, 0);
        drop(clients);
    }
}
