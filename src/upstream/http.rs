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

use std::io::{BufReader, Read};
use std::time::{Duration, Instant};

use r2d2::{ManageConnection, Pool, PooledConnection};

use crate::child::read_line_bounded;
use crate::error::Error;
use crate::jsonrpc::Message;
use crate::session::{Binding, Session, lock};
use crate::upstream::{Call, Item, MessageStream, Poll, Reply, Upstream};

const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(2);
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
    name: String,
    url: String,
    pool: Pool<SlotManager>,
}

impl HttpUpstream {
    /// Builds the pool; connects nothing yet, so a down upstream does not stop start-up.
    ///
    /// Timeouts: `connect_timeout` for TCP connect, `request_timeout` until the response
    /// headers and for a whole JSON body, `stream_idle` between two reads of a body (an SSE
    /// stream has no whole-body limit, only this).
    pub fn new(
        url: &str,
        slots: u32,
        connect_timeout: Duration,
        request_timeout: Duration,
        stream_idle: Duration,
    ) -> Result<Self, Error> {
        let pool = Pool::builder()
            .max_size(slots)
            .min_idle(Some(0))
            .test_on_check_out(true)
            .idle_timeout(None)
            .max_lifetime(None)
            .connection_timeout(CHECKOUT_TIMEOUT)
            .build_unchecked(SlotManager {
                connect_timeout,
                request_timeout,
                stream_idle,
            });
        let name = url
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or(url)
            .to_owned();
        Ok(HttpUpstream {
            name,
            url: url.to_owned(),
            pool,
        })
    }

    fn checkout(&self) -> Result<PooledConnection<SlotManager>, Error> {
        self.pool
            .get_timeout(CHECKOUT_TIMEOUT)
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

    /// POSTs one message and interprets the answer.
    fn post(&self, call: &Call<'_>, session_id: Option<&str>) -> Result<Posted, Error> {
        let mut slot = self.checkout()?;
        slot.poisoned = true;
        let mut req = slot
            .agent
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        for (k, v) in &call.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        if let Some(sid) = session_id {
            req = req.header("mcp-session-id", sid);
        }
        let body = call.msg.to_vec();
        let resp = req.send(&body[..]).map_err(|e| self.map_err(e))?;
        let status = resp.status().as_u16();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let content_type = header("content-type").unwrap_or_default();
        let session = header("mcp-session-id");
        let is_sse = content_type
            .to_ascii_lowercase()
            .starts_with("text/event-stream");
        if (200..300).contains(&status) && is_sse {
            let reader = BufReader::new(resp.into_body().into_reader());
            let stream = SseStream {
                slot: Some(slot),
                reader,
                buf: Vec::new(),
                name: self.name.clone(),
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
        &self.name
    }

    fn initialize(&self, call: Call<'_>) -> Result<(Binding, Reply), Error> {
        let posted = self.post(&call, None)?;
        let binding = Binding {
            upstream_id: std::sync::Mutex::new(posted.session),
            ..Binding::default()
        };
        Ok((binding, posted.reply))
    }

    fn forward(&self, call: Call<'_>) -> Result<Reply, Error> {
        let sid = call
            .session
            .and_then(|s| lock(&s.binding.upstream_id).clone());
        let posted = self.post(&call, sid.as_deref())?;
        if sid.is_some() && session_lost(&posted) {
            return Err(Error::UpstreamSessionLost);
        }
        Ok(posted.reply)
    }

    fn close(&self, session: &Session) {
        let Some(sid) = lock(&session.binding.upstream_id).take() else {
            return;
        };
        let Ok(mut slot) = self.checkout() else {
            log::debug!("no slot free to end upstream session");
            return;
        };
        slot.poisoned = true;
        let res = slot
            .agent
            .delete(&self.url)
            .header("mcp-session-id", sid.as_str())
            .call();
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

    fn pool_state(&self) -> Option<(u32, u32)> {
        let s = self.pool.state();
        Some((s.connections, s.idle_connections))
    }

    fn ready(&self) -> Result<(), String> {
        Ok(())
    }

    fn shutdown(&self, _grace: Duration) {}
}

/// An upstream `text/event-stream` body, read event by event.
struct SseStream {
    /// Held until the body is read to its end; then cleared and returned to the pool.
    slot: Option<PooledConnection<SlotManager>>,
    reader: BufReader<ureq::BodyReader<'static>>,
    buf: Vec<u8>,
    name: String,
}

impl MessageStream for SseStream {
    /// Blocks in the upstream read (bounded by the per-read idle timeout), not until `wake`.
    fn poll_until(&mut self, _wake: Instant) -> Result<Poll, Error> {
        let mut data: Vec<u8> = Vec::new();
        loop {
            self.buf.clear();
            let n = read_line_bounded(&mut self.reader, &mut self.buf, MAX_UPSTREAM_MESSAGE)
                .map_err(|e| {
                    if e.kind() == std::io::ErrorKind::TimedOut {
                        Error::Timeout
                    } else {
                        Error::UpstreamProtocol(format!("{} stream: {e}", self.name))
                    }
                })?;
            if n == 0 {
                // Clean end of body: the connection is reusable.
                if let Some(mut slot) = self.slot.take() {
                    slot.poisoned = false;
                }
                return Ok(if data.is_empty() {
                    Poll::End
                } else {
                    Poll::Item(Item::Message(data))
                });
            }
            let line = trim(&self.buf);
            if line.is_empty() {
                if data.is_empty() {
                    continue; // priming event or comment-only block
                }
                return Ok(Poll::Item(classify(data)));
            }
            if let Some(rest) = line.strip_prefix(b"data:") {
                let rest = rest.strip_prefix(b" ").unwrap_or(rest);
                if !data.is_empty() {
                    data.push(b'\n');
                }
                data.extend_from_slice(rest);
            }
            // `id:`, `event:`, `retry:` and comments are the upstream's; the proxy owns the
            // client stream's framing.
        }
    }

    fn must_stream(&self) -> bool {
        true
    }
}

impl Drop for SseStream {
    fn drop(&mut self) {
        // Anything left unread: drain a little so a finished stream can be reused, else the
        // slot stays poisoned and is replaced.
        if self.slot.is_some() {
            let mut sink = [0u8; 4096];
            let _ = self.reader.get_mut().read(&mut sink);
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

fn trim(l: &[u8]) -> &[u8] {
    let mut l = l;
    while let [rest @ .., b'\n' | b'\r'] = l {
        l = rest;
    }
    l
}

#[cfg(test)]
mod tests {
    use super::*;

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
