//! The body of a connection thread: waiting in the pool for a connection, the TLS handshake on
//! a TLS listener, the keep-alive loop that reads requests and hands each to the handler, error
//! answers for requests that cannot be read, and lingering so that those answers reach the
//! client.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Job, Shared, ThreadCount};
use crate::http::encode::ConnHeader;
use crate::http::parse::{Limits, ReadError, Wire};
use crate::http::permit::NoPermit;
use crate::http::request::Request;
use crate::http::responder::Responder;
use crate::http::tls::Handshake;
use crate::http::transport::{Transport, drain};
use crate::http::write::{Watch, call_timeout};

/// A pooled connection thread exits after this long without work.
const POOL_IDLE: Duration = Duration::from_secs(30);

/// Body of a connection thread: serves its first connection, then waits in the pool.
pub(super) fn conn_thread(shared: Arc<Shared>, first: Job) {
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

/// The keep-alive loop of one connection, after its TLS handshake on a TLS listener.
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
    let (stream, client_cert) = match &cfg.tls {
        None => (Transport::plain(stream), None),
        Some(tls) => {
            // Idle while the handshake runs: shutdown closes it at once, as it closes a
            // connection waiting for its next request. No worker permit is held.
            if !shared.set_idle(id, true) {
                return;
            }
            let started = Instant::now();
            let deadline = started + cfg.header_timeout;
            let done = tls.accept(stream, deadline, call_timeout(cfg.write_timeout));
            shared.set_idle(id, false);
            let outcome = done.as_ref().map_or_else(|e| e.outcome, |_| Handshake::Ok);
            let took = started.elapsed();
            let told = catch_unwind(AssertUnwindSafe(|| {
                shared.handler.tls_handshake(outcome, took)
            }));
            if told.is_err() {
                log::error!("Handler::tls_handshake panicked");
            }
            match done {
                Ok(done) => done,
                Err(why) => {
                    log::debug!("{remote}: TLS handshake failed: {why}");
                    return;
                }
            }
        }
    };
    let mut wire = Wire::new(stream, remote, client_cert);
    // Kept across requests: a new response does not restart the write timeout.
    let mut watch = Watch::default();
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
                if !handle_one(shared, wire.stream(), &mut watch, req) {
                    break;
                }
            }
            Err(ReadError::Closed) => break,
            Err(ReadError::Reject(status, message)) => {
                log::debug!("{remote}: rejecting request: {status} {message}");
                let mut resp = shared.error_response(status, message);
                if let Some(head) = wire.take_refused_head() {
                    resp.headers.extend(shared.error_headers(&head));
                }
                let bytes = shared.encode(&resp, false, ConnHeader::Close);
                match watch.write_all(wire.stream(), &bytes, cfg.write_timeout) {
                    Ok(()) => linger(wire.stream()),
                    Err(e) => log::debug!("{remote}: client gone: {e}"),
                }
                break;
            }
        }
    }
    wire.stream().close_notify();
    log::debug!("{remote}: connection closed");
}

/// Half-closes (after a TLS `close_notify`) and drains input for a short while, so the client
/// can read an error answer before the connection is closed (closing with unread input sends
/// a reset). With TLS the drained bytes are records, never decrypted.
fn linger(transport: &mut Transport) {
    transport.close_write();
    drain(transport.socket());
}

/// Runs the handler for one request under a worker permit (unless the handler says the
/// request needs none), waiting at most `worker_wait` for it; past that the request is
/// answered 503 with `Retry-After` and never reaches the handler. Returns whether the
/// connection may be reused.
///
/// One request at a time per connection: the next pipelined request is read only after this
/// one's answer was written, so nothing queues answers (at most one encoded response per
/// connection is in memory, plus what the kernel buffers), and unread pipelined requests stay
/// in the client's socket, not in ours (the read buffer only grows for one large head).
fn handle_one(shared: &Shared, stream: &mut Transport, watch: &mut Watch, req: Request) -> bool {
    let remote = req.remote;
    let needs_worker =
        catch_unwind(AssertUnwindSafe(|| shared.handler.needs_worker(&req))).unwrap_or(true);
    let permit = if needs_worker {
        match shared.workers.acquire(shared.config.worker_wait) {
            Ok(p) => Some(p),
            Err(NoPermit::Closed) => return false,
            Err(NoPermit::TimedOut) => None,
        }
    } else {
        None
    };
    let busy = needs_worker && permit.is_none();
    let mut res = Responder {
        stream,
        watch,
        link: shared,
        version: req.version,
        head_only: req.method == "HEAD",
        keep_alive: req.wants_keep_alive(),
        sent: false,
        worker: permit,
        stream_permit: None,
        stream_open: false,
    };
    if busy {
        shared.workers_busy(remote);
        let mut resp = shared.error_response(503, "all workers are busy");
        resp.headers.extend(shared.error_headers(&req));
        if !resp
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("retry-after"))
        {
            resp.headers.push(("Retry-After".into(), "1".into()));
        }
        return res.send(resp).is_ok() && res.keep_alive;
    }
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
