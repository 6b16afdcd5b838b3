//! How a handler answers: the [`Handler`] trait, and the [`Responder`] it is handed with each
//! request, which sends one fixed-length [`Response`] or opens a chunked [`StreamWriter`]
//! (SSE). Also the call itself (`handle_one`): under a worker permit (unless
//! [`Handler::needs_worker`] says otherwise; returned before the response is written), under
//! `catch_unwind` (in `server/conn.rs`), with a 500 when the handler panics or returns
//! without answering.

use std::io::{self, Write};
use std::time::Duration;

use super::encode::{ConnHeader, Framing, Response, encode_head};
use super::permit::Permit;
use super::request::{Request, Version};
use super::tls::Handshake;
use super::transport::Transport;
use super::write::Watch;

/// Application logic: answers each request through its [`Responder`].
pub trait Handler: Send + Sync + 'static {
    /// Handles one request. Must answer with [`Responder::send`] or
    /// [`Responder::stream`]; if it does not, the layer answers 500.
    fn handle(&self, req: Request, res: &mut Responder<'_>);

    /// Whether `req` needs one of the `workers` permits. Asked by the connection thread
    /// before it waits for one; `false` runs [`handle`](Self::handle) at once, without a
    /// permit, so the answer cannot be held up by busy workers (for cheap, bounded answers
    /// such as health checks). Default: every request needs one.
    fn needs_worker(&self, req: &Request) -> bool {
        let _ = req;
        true
    }

    /// Body for errors the HTTP layer itself answers (400, 408, 413, 417, 431, 503, 505,
    /// and 500 after a handler panic or an invalid response). The status of the returned
    /// response is forced to `status`. Default: `text/plain` with `message`.
    fn error_response(&self, status: u16, message: &str) -> Response {
        plain_error(status, message)
    }

    /// Headers added to an error the HTTP layer answers once it has parsed the request's
    /// head: the framing and body refusals (400, 408, 413, 417, 431 of a trailer) and 503
    /// when no worker was free. For headers that depend on the request, such as CORS for a
    /// browser page that must be able to read the status. Never asked before a head was
    /// parsed (431 head too large, 400 malformed head, 505, 503 at the connection cap).
    /// Default: none.
    fn error_headers(&self, head: &Request) -> Vec<(String, String)> {
        let _ = head;
        Vec::new()
    }

    /// Told once per TLS handshake on a TLS listener, when it ends: how, and how long it took
    /// from the connection thread taking the connection. For metrics. Default: nothing.
    fn tls_handshake(&self, outcome: Handshake, took: Duration) {
        let _ = (outcome, took);
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

pub(super) fn plain_error(status: u16, message: &str) -> Response {
    Response::new(status).with_body(
        "text/plain; charset=utf-8",
        format!("{message}\n").into_bytes(),
    )
}

/// What a [`Responder`] needs of the server it answers for (the server implements it): kept
/// this small so the responder knows nothing else of the server.
pub(super) trait Link: Sync {
    /// Shutdown has started.
    fn shutting_down(&self) -> bool;
    /// The bytes of `resp` (an invalid response becomes a 500).
    fn encode(&self, resp: &Response, head_only: bool, conn: ConnHeader) -> Vec<u8>;
    /// One of the `max_streams` stream permits, if one is free.
    fn stream_permit(&self) -> Option<Permit>;
    /// How long a write may go without the client acknowledging anything.
    fn write_timeout(&self) -> Duration;
}

/// The way a handler answers one request: [`send`](Self::send) a whole response or
/// [`stream`](Self::stream) a chunked one. Owned by the connection loop.
pub struct Responder<'a> {
    /// The connection (plain or TLS).
    pub(super) stream: &'a mut Transport,
    /// What the client acknowledged of this connection's writes (the write timeout).
    pub(super) watch: &'a mut Watch,
    pub(super) link: &'a dyn Link,
    pub(super) version: Version,
    pub(super) head_only: bool,
    pub(super) keep_alive: bool,
    pub(super) sent: bool,
    /// Held while the handler runs; released before a response is written (a slow reader
    /// must not hold a worker) and when a stream starts.
    pub(super) worker: Option<Permit>,
    /// Held while a stream is open.
    pub(super) stream_permit: Option<Permit>,
    /// A stream was started and not finished: the connection cannot be reused.
    pub(super) stream_open: bool,
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
        self.link.shutting_down()
    }

    /// The `Connection` header of the response; decides keep-alive for good.
    fn conn_header(&mut self) -> ConnHeader {
        if self.link.shutting_down() {
            self.keep_alive = false;
        }
        match (self.keep_alive, self.version) {
            (false, _) => ConnHeader::Close,
            (true, Version::Http10) => ConnHeader::KeepAlive,
            (true, Version::Http11) => ConnHeader::None,
        }
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        let timeout = self.link.write_timeout();
        self.watch
            .write_all(&mut *self.stream, bytes, timeout)
            .inspect_err(|e| {
                self.keep_alive = false;
                log::debug!("client gone while writing a response: {e}");
            })
    }

    /// Writes a fixed-length response: `Content-Length` is set by the layer (handler copies
    /// of `Content-Length`, `Transfer-Encoding` and `Connection` are dropped), head and body
    /// go out in one write, and `Connection: close` is added when the connection will
    /// close. An invalid header or status is logged at error and a 500 is sent instead.
    /// The response is encoded into one buffer and the worker permit is returned before the
    /// write, which has the server's write timeout: a client that does not read holds only
    /// its own connection thread. Err: a response was already sent, or the client is gone.
    pub fn send(&mut self, resp: Response) -> io::Result<()> {
        if self.sent {
            return Err(io::Error::other("response already sent"));
        }
        self.sent = true;
        let conn = self.conn_header();
        let bytes = self.link.encode(&resp, self.head_only, conn);
        drop(resp);
        self.worker = None;
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
            _ => encode_head(&mut head, status, headers, Framing::Chunked, conn),
        };
        if let Err(why) = encoded {
            log::error!("invalid stream head: {why}");
            return Err(StreamError::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                why,
            )));
        }
        let Some(permit) = self.link.stream_permit() else {
            return Err(StreamError::Busy);
        };
        self.worker = None;
        self.stream_permit = Some(permit);
        self.sent = true;
        self.stream_open = true;
        self.write(&head)?;
        Ok(StreamWriter {
            stream: &mut *self.stream,
            watch: &mut *self.watch,
            link: self.link,
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
    stream: &'a mut Transport,
    watch: &'a mut Watch,
    pub(super) link: &'a dyn Link,
    open: &'a mut bool,
    permit: &'a mut Option<Permit>,
    head_only: bool,
    failed: bool,
}

impl StreamWriter<'_> {
    /// Whether the server is shutting down (the stream should finish soon).
    pub fn shutting_down(&self) -> bool {
        self.link.shutting_down()
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "stream already failed",
            ));
        }
        let timeout = self.link.write_timeout();
        self.watch
            .write_all(&mut *self.stream, bytes, timeout)
            .inspect_err(|e| {
                self.failed = true;
                log::debug!("client gone during a stream: {e}");
            })
    }

    /// Writes `data` as one chunk (e.g. one whole SSE event) and flushes. Empty data is a
    /// no-op. Each write is under the server's write timeout (a client that acknowledges
    /// nothing while writes wait that long fails the stream). Err: the client is gone
    /// (broken pipe, reset, write timeout); stop streaming.
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
