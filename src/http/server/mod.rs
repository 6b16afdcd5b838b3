//! The HTTP/1.1 server: accept loop, connection threads, worker and stream permits,
//! graceful shutdown. The body of a connection thread (keep-alive loop, error answers) is in
//! `server/conn.rs`; request parsing lives in `parse.rs`, response encoding in `encode.rs`,
//! and what a handler sees ([`Handler`], [`Responder`](super::Responder)) in `responder.rs`.
//!
//! # Threading model
//!
//! * **One accept thread** (`shadowcat-accept`) owns the listener. Each accepted socket
//!   gets `TCP_NODELAY`, the idle read timeout and a quarter of `write_timeout` as its
//!   send timeout (writes fail once they have waited `write_timeout` in all without the
//!   client acknowledging anything; see `write.rs`), and is registered (a `try_clone` of it is
//!   kept so shutdown can close it). Accept errors (EMFILE included) are logged and retried
//!   after 50 ms, never fatal. Beyond `max_connections` open connections the accept thread
//!   itself writes a 503 with `Connection: close` and closes the socket.
//! * **Connection threads** (`shadowcat-conn`, 1 MiB stacks) serve one connection each,
//!   1:1, from a pool: the accept thread hands a socket over a zero-capacity channel with
//!   `try_send`, which succeeds only if a pooled thread is blocked waiting for work (so a
//!   socket is never queued for a thread that is about to be taken); otherwise it spawns a
//!   thread. There are never more connection threads than `max_connections`. A pooled
//!   thread exits after 30 s without work.
//! * **TLS** (`ServerConfig::tls`): the connection thread runs the handshake first, before
//!   reading any request and without a worker permit, within `header_timeout` (10 s by
//!   default); a client that stalls it holds only its own connection thread until then, and
//!   shutdown closes it at once like an idle connection. Beyond `max_connections` a TLS
//!   listener closes new sockets without an answer (a 503 would need a handshake on the accept
//!   thread).
//! * A connection thread reads and parses requests (keep-alive loop, pipelined requests in
//!   order) and calls the [`Handler`] itself. Before the call it takes one of `workers`
//!   **worker permits**, so at most `workers` requests are handled at once, while idle or
//!   slow clients hold only their own connection thread. The permit is returned as soon as
//!   the response is encoded, *before* it is written
//!   ([`Responder::send`](super::Responder::send)): a client that does not read holds its
//!   connection thread until `write_timeout` (plus a quarter), never a worker.
//!   [`Responder::stream`](super::Responder::stream) swaps the worker permit for one of
//!   `max_streams` **stream permits**, so long-lived SSE streams do not starve ordinary
//!   requests. The wait for a worker permit is bounded by `worker_wait`: past it the request
//!   gets 503 with `Retry-After: 1` (a warning at most once a second). A request for which
//!   [`Handler::needs_worker`] is false (health checks) is handled without a permit.
//! * **One request at a time per connection**: the next pipelined request is parsed only
//!   after this one's answer was written, so responses never queue in memory (at most one
//!   encoded response per connection, plus the kernel's socket buffers), and unread pipelined
//!   requests wait in the client's socket, not in ours (the read buffer grows only for one
//!   large head, to at most `MAX_HEAD` + 16 KiB).
//! * Every `handle` call runs under `catch_unwind`: a panic is answered with a 500 (if
//!   nothing was sent yet), the connection is closed, and the thread lives on.
//! * **Shutdown** sets a flag and wakes the accept thread by connecting to the listener's
//!   own address (the listener stays blocking, so new connections are not delayed by
//!   polling). Connections idle between requests are closed at once; busy ones finish the
//!   current request (answered with `Connection: close`) and streams can poll
//!   [`Responder::shutting_down`](super::Responder::shutting_down). After `grace` every
//!   remaining socket is shut down, then all threads are joined (any thread still stuck in a
//!   handler 1 s later is detached and logged: Rust cannot kill a thread).

use super::encode::{ConnHeader, Response, encode_response};
use super::permit::Permit;
use super::permit::Semaphore;
use super::request::Request;
use super::responder::{Handler, Link, plain_error};
use super::tls::Tls;
use super::write::call_timeout;
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

mod conn;
use conn::conn_thread;

/// Stack size of connection threads, which run the handler. Measured: parsing and
/// re-serialising a 127-deep JSON value (serde_json's nesting limit is 128) overflows a
/// 256 KiB stack in a debug build (needs ~300 KiB; release needs < 128 KiB), so 1 MiB
/// leaves a debug-build handler ~3x headroom. Pages are committed only when touched.
const CONN_STACK: usize = 1024 * 1024;
/// Stack size of the accept thread.
const ACCEPT_STACK: usize = 256 * 1024;
/// Pause after a failed `accept()`.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);
/// Extra time `shutdown` waits for threads after `grace`.
const JOIN_SLACK: Duration = Duration::from_secs(1);
/// At most one warning per this long that requests found every worker busy.
const BUSY_WARN_EVERY: Duration = Duration::from_secs(1);

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
    /// Keep-alive idle time before the first byte of a next request (default 60 s).
    pub idle_timeout: Duration,
    /// The write timeout (default 10 s): once writes to a client have waited this long in
    /// all without the client acknowledging a byte, the write fails and the connection is
    /// closed (`write.rs`). Applies to every write: whole responses, stream chunks, the
    /// layer's own error answers.
    pub write_timeout: Duration,
    /// Longest wait for a worker permit (default 60 s); then the request is answered 503
    /// with `Retry-After` and never reaches the handler.
    pub worker_wait: Duration,
    /// Deadline for a whole request head once its first byte arrived (default 10 s) → 408.
    pub header_timeout: Duration,
    /// Timeout of each read while reading a body (default 30 s) → 408.
    pub body_timeout: Duration,
    /// Deadline for a whole body once the head is read (default 120 s) → 408, so a body
    /// trickled just inside `body_timeout` cannot hold a connection thread for long.
    pub body_deadline: Duration,
    /// TLS on this listener (default none: plain HTTP). The handshake runs on the connection
    /// thread and must complete within `header_timeout` of the thread taking the connection.
    pub tls: Option<Arc<Tls>>,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            workers: 64,
            max_connections: 1024,
            max_streams: 1024,
            max_body: 4 * 1024 * 1024,
            idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(10),
            worker_wait: Duration::from_secs(60),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            body_deadline: Duration::from_secs(120),
            tls: None,
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
pub(super) struct Shared {
    config: ServerConfig,
    pub(super) handler: Arc<dyn Handler>,
    shutting_down: AtomicBool,
    /// Set by [`Server::hurry`]: the shutdown grace ends now.
    hurry: AtomicBool,
    registry: Mutex<Registry>,
    /// Notified whenever a connection is deregistered.
    drained: Condvar,
    pub(super) workers: Arc<Semaphore>,
    pub(super) streams: Arc<Semaphore>,
    threads: AtomicUsize,
    handles: Mutex<Vec<JoinHandle<()>>>,
    handoff: Receiver<Job>,
    /// Never receives; disconnects when shutdown starts, releasing idle pooled threads.
    stop: Receiver<()>,
    /// When a request last waited `worker_wait` in vain and that was logged at warn.
    busy_warned: Mutex<Option<Instant>>,
}

impl Shared {
    pub(super) fn is_shutting_down(&self) -> bool {
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

    /// A request waited `worker_wait` for a worker in vain (it gets 503): logged at warn at
    /// most once per [`BUSY_WARN_EVERY`], else at debug.
    pub(super) fn workers_busy(&self, remote: SocketAddr) {
        let now = Instant::now();
        let mut last = lock(&self.busy_warned);
        if last.is_none_or(|t| now.duration_since(t) >= BUSY_WARN_EVERY) {
            *last = Some(now);
            log::warn!(
                "{remote}: all {} workers busy for {:?}; answering 503",
                self.config.workers,
                self.config.worker_wait
            );
        } else {
            log::debug!("{remote}: all workers busy; answering 503");
        }
    }

    /// The handler's error response with the status forced; survives a panicking handler.
    pub(super) fn error_response(&self, status: u16, message: &str) -> Response {
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

    /// The handler's extra headers for an error answered after `head` was parsed (none if
    /// the handler panics).
    pub(super) fn error_headers(&self, head: &Request) -> Vec<(String, String)> {
        catch_unwind(AssertUnwindSafe(|| self.handler.error_headers(head))).unwrap_or_else(|_| {
            log::error!("Handler::error_headers panicked");
            Vec::new()
        })
    }

    /// Encodes `resp`; an invalid one is replaced by a 500 and logged at error.
    pub(super) fn encode(&self, resp: &Response, head_only: bool, conn: ConnHeader) -> Vec<u8> {
        encode_response(resp, head_only, conn).unwrap_or_else(|why| {
            log::error!("invalid response ({why}); answering 500 instead");
            let alt = self.error_response(500, "invalid response");
            encode_response(&alt, head_only, conn).unwrap_or_else(|_| {
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

impl Link for Shared {
    fn shutting_down(&self) -> bool {
        self.is_shutting_down()
    }

    fn encode(&self, resp: &Response, head_only: bool, conn: ConnHeader) -> Vec<u8> {
        Shared::encode(self, resp, head_only, conn)
    }

    fn stream_permit(&self) -> Option<Permit> {
        self.streams.try_acquire()
    }

    fn write_timeout(&self) -> Duration {
        self.config.write_timeout
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
            busy_warned: Mutex::new(None),
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
    let read_timeout = Some(cfg.idle_timeout.max(Duration::from_millis(1)));
    let write_timeout = Some(call_timeout(cfg.write_timeout));
    let clone = stream
        .set_nodelay(true)
        .and_then(|()| stream.set_read_timeout(read_timeout))
        .and_then(|()| stream.set_write_timeout(write_timeout))
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

/// Writes an error answer on the accept thread and closes, without taking a thread. On a TLS
/// listener it only closes: an answer would need a handshake, which the accept thread must not
/// wait for.
fn reject(shared: &Shared, stream: &TcpStream, status: u16, message: &str) {
    if shared.config.tls.is_some() {
        let _ = stream.shutdown(Shutdown::Both);
        return;
    }
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

#[cfg(test)]
mod tests;
