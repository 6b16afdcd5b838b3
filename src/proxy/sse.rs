//! Answering as a stream: a request's messages pumped to the client (and into the session's
//! replay log), a GET following a log, and the refusal when no stream can be opened.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::error::Error;
use crate::http::{Responder, StreamError};
use crate::jsonrpc;
use crate::metrics::DropReason;
use crate::session::Session;
use crate::stream::EventLog;
use crate::upstream::{Item, MessageStream, Poll};

use super::{Access, Proxy, SHUTDOWN_POLL, cors, error_response};

impl Proxy {
    /// Pumps a request's messages to the client (on the stream thread) and into the
    /// session's replay log. A client that goes away does not stop the request: the rest is
    /// still logged, for a GET with `Last-Event-ID`. Returns the status sent.
    ///
    /// While a write to a client that does not read blocks this thread, nothing here takes
    /// from `stream`: a stdio call's queue then fills to `--max-call-buffer` and the child's
    /// reader drops the call's further messages (counted here once the stream is polled
    /// again), and an HTTP upstream's stream is simply not read (TCP pushes back on the
    /// upstream). Memory per stream stays bounded either way.
    pub(super) fn pump(
        &self,
        res: &mut Responder<'_>,
        mut stream: Box<dyn MessageStream>,
        first: Option<Item>,
        session: Option<Arc<Session>>,
        announce: bool,
        acc: &Access,
    ) -> u16 {
        let id = acc.id.as_deref();
        let mut headers = sse_headers();
        cors::decorate(&mut headers, acc.cors.as_deref());
        if let (true, Some(s)) = (announce, &session) {
            headers.push(("mcp-session-id".to_string(), s.id.clone()));
        }
        let log = session.as_ref().map(|s| s.streams.open());
        let err = match res.stream(200, &headers) {
            Ok(mut w) => {
                let keepalive = self.cfg.sse_keepalive;
                let mut next_keepalive = Instant::now() + keepalive;
                let mut attached = true;
                if let (Some(log), Some(s)) = (&log, &session)
                    && s.protocol_version.as_str() >= "2025-11-25"
                {
                    // Priming event: gives the client an id to resume from at once.
                    attached = w.write_chunk(&log.push(b"").frame).is_ok();
                }
                let mut next = first.map(Poll::Item);
                loop {
                    // A request's stream is a call in flight: on shutdown it goes on to its
                    // final answer within the grace (the server closes the socket when the
                    // grace ends), unless its client is gone already (issue #17).
                    if w.shutting_down() && !attached {
                        log::debug!("ending stream: shutting down");
                        break;
                    }
                    let wake = next_keepalive.min(Instant::now() + SHUTDOWN_POLL);
                    let polled = match next.take() {
                        Some(p) => Ok(p),
                        None => stream.poll_until(wake),
                    };
                    self.count_dropped(stream.dropped(), session.as_deref());
                    let (data, answer, synthetic) = match polled {
                        Ok(Poll::End) => break,
                        Ok(Poll::Idle) => {
                            if attached && Instant::now() >= next_keepalive {
                                attached = w.write_chunk(b": keepalive\n\n").is_ok();
                                next_keepalive = Instant::now() + keepalive;
                            }
                            continue;
                        }
                        Ok(Poll::Item(Item::Message(d))) => (d, false, false),
                        Ok(Poll::Item(Item::Final(d))) => {
                            next = Some(Poll::End);
                            (d, true, false)
                        }
                        Err(e) => {
                            let text = e.to_string();
                            log::debug!("stream ended early: {}", crate::util::Escaped(&text));
                            self.count_error(&e);
                            next = Some(Poll::End);
                            (jsonrpc::error_for(id, &e), true, true)
                        }
                    };
                    let chunk = match &log {
                        Some(log) => log.push(&data).frame,
                        None => Arc::new(sse_event(&data)),
                    };
                    self.record_streamed(acc, data, chunk.len(), answer, synthetic);
                    self.metrics.bytes_out(chunk.len() as u64);
                    if attached && w.write_chunk(&chunk).is_err() {
                        log::debug!("client went away mid-stream; the request goes on");
                        attached = false;
                    }
                    if !attached && log.is_none() {
                        break; // nothing to keep it for
                    }
                    next_keepalive = Instant::now() + keepalive;
                }
                self.count_dropped(stream.dropped(), session.as_deref());
                let delivered = attached && w.finish().is_ok();
                if let (Some(log), Some(s)) = (&log, &session) {
                    s.streams.close(log, delivered);
                }
                return 200;
            }
            Err(e) => e,
        };
        if let (Some(log), Some(s)) = (&log, &session) {
            s.streams.close(log, true);
            if announce {
                // The client never learns this session's id: do not keep it.
                self.end_session(s);
            }
        }
        self.stream_refused(res, err, acc)
    }

    /// Follows a stream's log for a GET: replays what came after `after`, then live events,
    /// until the stream ends, another GET takes it over, or the client leaves.
    pub(super) fn follow(
        &self,
        res: &mut Responder<'_>,
        log: Arc<EventLog>,
        after: u64,
        acc: &Access,
    ) -> u16 {
        let token = log.take_over();
        let mut headers = sse_headers();
        cors::decorate(&mut headers, acc.cors.as_deref());
        let err = match res.stream(200, &headers) {
            Ok(mut w) => {
                let keepalive = self.cfg.sse_keepalive;
                let mut next_keepalive = Instant::now() + keepalive;
                let mut cursor = after;
                loop {
                    if w.shutting_down() {
                        break;
                    }
                    let until = next_keepalive.min(Instant::now() + SHUTDOWN_POLL);
                    let got = log.wait(cursor, token, until);
                    for ev in &got.events {
                        self.metrics.bytes_out(ev.frame.len() as u64);
                        self.record_event(acc, &ev.frame);
                        if w.write_chunk(&ev.frame).is_err() {
                            log::debug!("client went away from its stream");
                            return 200;
                        }
                        cursor = ev.seq;
                        next_keepalive = Instant::now() + keepalive;
                    }
                    if got.replaced {
                        log::debug!("stream taken over by a newer GET");
                        break;
                    }
                    if got.ended {
                        break;
                    }
                    if Instant::now() >= next_keepalive {
                        if w.write_chunk(b": keepalive\n\n").is_err() {
                            log::debug!("client went away from its stream (keep-alive)");
                            return 200;
                        }
                        next_keepalive = Instant::now() + keepalive;
                    }
                }
                let _ = w.finish();
                return 200;
            }
            Err(e) => e,
        };
        self.stream_refused(res, err, acc)
    }

    /// Counts `n` messages a slow client's stream lost (see [`Proxy::pump`]); logs at debug
    /// at most once a second for the whole process, so a flood cannot flood the log.
    fn count_dropped(&self, n: u64, session: Option<&Session>) {
        if n == 0 {
            return;
        }
        self.metrics.dropped(DropReason::SlowClient, n);
        static LAST_LOGGED: AtomicU64 = AtomicU64::new(0);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if LAST_LOGGED.swap(now, Ordering::Relaxed) != now {
            log::debug!(
                "session {}: client not reading its stream; {n} messages dropped \
                 (--max-call-buffer full)",
                session.map(Session::short_id).unwrap_or("-"),
            );
        }
    }

    /// The answer when no stream could be opened. `acc.id` is the request's id (none for a
    /// GET).
    fn stream_refused(&self, res: &mut Responder<'_>, err: StreamError, acc: &Access) -> u16 {
        let e = match err {
            StreamError::Busy => Error::TooManyStreams,
            StreamError::Http10 => Error::StreamNeedsHttp11,
            StreamError::Io(_) => return 0,
        };
        let mut resp = error_response(&e, acc.id.as_deref());
        cors::decorate(&mut resp.headers, acc.cors.as_deref());
        let _ = res.send(resp);
        e.status()
    }
}

fn sse_headers() -> Vec<(String, String)> {
    vec![
        ("content-type".to_string(), "text/event-stream".to_string()),
        ("cache-control".to_string(), "no-cache".to_string()),
        ("x-accel-buffering".to_string(), "no".to_string()),
    ]
}

/// Frames one SSE event carrying a JSON message, without an id (streams outside a session,
/// which cannot be resumed).
pub fn sse_event(json: &[u8]) -> Vec<u8> {
    crate::stream::frame(None, json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_framing() {
        assert_eq!(
            sse_event(b"{\"a\":1}"),
            b"event: message\ndata: {\"a\":1}\n\n"
        );
        assert_eq!(sse_event(b"a\nb"), b"event: message\ndata: a\ndata: b\n\n");
    }
}
