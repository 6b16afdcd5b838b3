//! The bench's own minimal HTTP/1.1 client: one keep-alive [`Conn`] per session
//! (`TCP_NODELAY`, deadlines polled every [`POLL`]) to the `Target` (`target.rs`), over TLS for
//! an `https://` URL (rustls, the handshake made when connecting, within the request's
//! deadline), Content-Length, chunked and read-to-close bodies, and `text/event-stream` bodies
//! read event by event (`sse.rs`) until the response to the request arrives ([`roundtrip`]).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;

use super::rpc::{Check, Fail, Verdict, bad, check};
use super::sse::SseParser;

use super::{BUF, DRAIN_GRACE, MAX_BODY, POLL};

/// What the response to one exchange said.
pub(super) struct Answer {
    pub(super) status: u16,
    pub(super) session_id: Option<String>,
    pub(super) verdict: Verdict,
    pub(super) sse: bool,
    pub(super) done_at: Instant,
    pub(super) close: bool,
    pub(super) excerpt: String,
}

/// A connection's stream: plain, or a TLS session over it.
enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// TLS for a connection: the client configuration and the server's name.
pub(super) type TlsTo<'a> = (&'a Arc<rustls::ClientConfig>, &'a ServerName<'static>);

/// Completes a client handshake by `deadline` (the socket's read timeout is [`POLL`], so a
/// silent server is noticed).
fn handshake(
    conn: rustls::ClientConnection,
    mut sock: TcpStream,
    deadline: Instant,
) -> Result<Stream, Fail> {
    let mut conn = conn;
    while conn.is_handshaking() {
        if Instant::now() >= deadline {
            return Err(Fail::Timeout);
        }
        match conn.complete_io(&mut sock) {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(Fail::Connect(format!("TLS handshake: {e}"))),
        }
    }
    Ok(Stream::Tls(Box::new(rustls::StreamOwned::new(conn, sock))))
}

/// A keep-alive connection with its read buffer.
pub(super) struct Conn {
    stream: Stream,
    buf: Box<[u8]>,
    pos: usize,
    len: usize,
}

/// A parsed response head.
#[derive(Debug, Default)]
struct Head {
    status: u16,
    content_length: Option<u64>,
    chunked: bool,
    json: bool,
    sse: bool,
    close: bool,
    session_id: Option<String>,
}

/// Where the body reader is.
#[derive(Clone, Copy, Debug)]
enum Body {
    Length(u64),
    Chunked(Chunk),
    ToClose,
    Done,
}

#[derive(Clone, Copy, Debug)]
enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailer,
}

impl Conn {
    /// Connects to the first of `addrs` that answers, with TLS when `tls` is given.
    pub(super) fn connect(
        addrs: &[SocketAddr],
        tls: Option<TlsTo<'_>>,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Conn, Fail> {
        let mut last = String::from("no address");
        for a in addrs {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Fail::Timeout);
            }
            match TcpStream::connect_timeout(a, left) {
                Ok(stream) => {
                    let setup = stream
                        .set_nodelay(true)
                        .and_then(|_| stream.set_read_timeout(Some(POLL.min(timeout))))
                        .and_then(|_| stream.set_write_timeout(Some(timeout)));
                    if let Err(e) = setup {
                        return Err(Fail::Connect(e.to_string()));
                    }
                    let stream = match tls {
                        None => Stream::Plain(stream),
                        Some((config, name)) => {
                            let conn = rustls::ClientConnection::new(config.clone(), name.clone())
                                .map_err(|e| Fail::Connect(format!("TLS: {e}")))?;
                            handshake(conn, stream, deadline)?
                        }
                    };
                    return Ok(Conn {
                        stream,
                        buf: vec![0; BUF].into_boxed_slice(),
                        pos: 0,
                        len: 0,
                    });
                }
                Err(e) => last = format!("{a}: {e}"),
            }
        }
        Err(Fail::Connect(last))
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), Fail> {
        let sent = self
            .stream
            .write_all(bytes)
            .and_then(|()| self.stream.flush());
        sent.map_err(|e| match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Fail::Timeout,
            _ => Fail::Io(format!("write: {e}")),
        })
    }

    /// Reads more bytes into the buffer. False at EOF.
    fn fill_or_eof(&mut self, deadline: Instant) -> Result<bool, Fail> {
        if self.pos == self.len {
            self.pos = 0;
            self.len = 0;
        } else if self.len == self.buf.len() {
            if self.pos == 0 {
                return Err(bad("response head or line longer than 64 KiB"));
            }
            self.buf.copy_within(self.pos..self.len, 0);
            self.len -= self.pos;
            self.pos = 0;
        }
        loop {
            if Instant::now() >= deadline {
                return Err(Fail::Timeout);
            }
            match self.stream.read(&mut self.buf[self.len..]) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.len += n;
                    return Ok(true);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(Fail::Io(format!("read: {e}"))),
            }
        }
    }

    fn fill(&mut self, deadline: Instant) -> Result<(), Fail> {
        if self.fill_or_eof(deadline)? {
            Ok(())
        } else {
            Err(Fail::Io("connection closed by the server".into()))
        }
    }

    fn read_head(&mut self, deadline: Instant) -> Result<Head, Fail> {
        loop {
            let avail = &self.buf[self.pos..self.len];
            if let Some(end) = avail.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = parse_head(&avail[..end])?;
                self.pos += end + 4;
                return Ok(head);
            }
            self.fill(deadline)?;
        }
    }

    /// Reads one CRLF- (or LF-) terminated line and hands it to `f` without the terminator.
    fn read_line<T>(&mut self, deadline: Instant, f: impl FnOnce(&[u8]) -> T) -> Result<T, Fail> {
        loop {
            let avail = &self.buf[self.pos..self.len];
            if let Some(i) = avail.iter().position(|&b| b == b'\n') {
                let line = &avail[..i];
                let t = f(line.strip_suffix(b"\r").unwrap_or(line));
                self.pos += i + 1;
                return Ok(t);
            }
            self.fill(deadline)?;
        }
    }

    /// Moves up to `max` body bytes (at least one) into `out`.
    fn take(&mut self, max: u64, out: &mut Vec<u8>, deadline: Instant) -> Result<u64, Fail> {
        if self.pos == self.len {
            self.fill(deadline)?;
        }
        let n = (self.len - self.pos).min(usize::try_from(max).unwrap_or(usize::MAX));
        out.extend_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n as u64)
    }
}

fn parse_head(bytes: &[u8]) -> Result<Head, Fail> {
    let text = String::from_utf8_lossy(bytes);
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(bad(format!("not an HTTP/1.x status line: {status_line:?}")));
    }
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|s| (100..600).contains(s))
        .ok_or_else(|| bad(format!("bad status line: {status_line:?}")))?;
    let mut head = Head {
        status,
        close: version == "HTTP/1.0",
        ..Head::default()
    };
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| bad(format!("bad header line: {line:?}")))?;
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("content-length") {
            let n: u64 = value
                .parse()
                .map_err(|_| bad(format!("bad content-length: {value:?}")))?;
            if head.content_length.is_some_and(|m| m != n) {
                return Err(bad("conflicting content-length"));
            }
            head.content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            let last = value.rsplit(',').next().unwrap_or("").trim();
            if !last.eq_ignore_ascii_case("chunked") {
                return Err(bad(format!("unsupported transfer-encoding: {value:?}")));
            }
            head.chunked = true;
        } else if name.eq_ignore_ascii_case("content-type") {
            let media = value.split(';').next().unwrap_or("").trim();
            head.json = media.eq_ignore_ascii_case("application/json");
            head.sse = media.eq_ignore_ascii_case("text/event-stream");
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    head.close = true;
                } else if token.eq_ignore_ascii_case("keep-alive") && version == "HTTP/1.0" {
                    head.close = false;
                }
            }
        } else if name.eq_ignore_ascii_case("mcp-session-id") {
            head.session_id = Some(value.to_string());
        }
    }
    Ok(head)
}

impl Body {
    fn new(head: &Head) -> Body {
        if (100..200).contains(&head.status) || head.status == 204 || head.status == 304 {
            Body::Done
        } else if head.chunked {
            Body::Chunked(Chunk::Size)
        } else {
            match head.content_length {
                Some(0) => Body::Done,
                Some(n) => Body::Length(n),
                None => Body::ToClose,
            }
        }
    }

    /// Appends some body bytes to `out` (or reads framing). True once the body is complete.
    fn read_some(
        &mut self,
        conn: &mut Conn,
        out: &mut Vec<u8>,
        deadline: Instant,
    ) -> Result<bool, Fail> {
        loop {
            match *self {
                Body::Done => return Ok(true),
                Body::Length(left) => {
                    let n = conn.take(left, out, deadline)?;
                    *self = if n == left {
                        Body::Done
                    } else {
                        Body::Length(left - n)
                    };
                    return Ok(matches!(self, Body::Done));
                }
                Body::ToClose => {
                    if conn.pos == conn.len && !conn.fill_or_eof(deadline)? {
                        *self = Body::Done;
                        return Ok(true);
                    }
                    out.extend_from_slice(&conn.buf[conn.pos..conn.len]);
                    conn.pos = conn.len;
                    return Ok(false);
                }
                Body::Chunked(Chunk::Size) => {
                    let size = conn.read_line(deadline, |l| {
                        let hex = String::from_utf8_lossy(l);
                        let hex = hex.split(';').next().unwrap_or("").trim().to_string();
                        u64::from_str_radix(&hex, 16).ok()
                    })?;
                    *self = match size {
                        Some(0) => Body::Chunked(Chunk::Trailer),
                        Some(n) => Body::Chunked(Chunk::Data(n)),
                        None => return Err(bad("bad chunk size")),
                    };
                }
                Body::Chunked(Chunk::Data(left)) => {
                    let n = conn.take(left, out, deadline)?;
                    *self = Body::Chunked(if n == left {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(left - n)
                    });
                    return Ok(false);
                }
                Body::Chunked(Chunk::DataEnd) => {
                    if !conn.read_line(deadline, |l| l.is_empty())? {
                        return Err(bad("chunk data longer than its size"));
                    }
                    *self = Body::Chunked(Chunk::Size);
                }
                Body::Chunked(Chunk::Trailer) => {
                    if conn.read_line(deadline, |l| l.is_empty())? {
                        *self = Body::Done;
                        return Ok(true);
                    }
                }
            }
        }
    }

    /// Reads the rest of the body into `out`.
    fn read_all(
        &mut self,
        conn: &mut Conn,
        out: &mut Vec<u8>,
        deadline: Instant,
    ) -> Result<(), Fail> {
        while !self.read_some(conn, out, deadline)? {
            if out.len() > MAX_BODY {
                return Err(bad("response body over 64 MiB"));
            }
        }
        Ok(())
    }
}

/// Writes `req`, reads the response, and (with `want`) checks that it answers request `want`.
pub(super) fn roundtrip(
    conn: &mut Conn,
    req: &[u8],
    want: Option<u64>,
    want_version: bool,
    body: &mut Vec<u8>,
    deadline: Instant,
) -> Result<Answer, Fail> {
    conn.send(req)?;
    let mut head = loop {
        let h = conn.read_head(deadline)?;
        if !(100..200).contains(&h.status) {
            break h;
        }
    };
    let mut state = Body::new(&head);
    body.clear();
    let mut answer = Answer {
        status: head.status,
        session_id: head.session_id.take(),
        verdict: Verdict::Unchecked,
        sse: head.sse,
        done_at: Instant::now(),
        close: head.close || matches!(state, Body::ToClose),
        excerpt: String::new(),
    };
    let ok_status = (200..300).contains(&head.status);
    let want = match want {
        Some(w) if ok_status => w,
        _ => {
            state.read_all(conn, body, deadline)?;
            answer.done_at = Instant::now();
            answer.excerpt = excerpt(body);
            return Ok(answer);
        }
    };
    if head.sse {
        let mut events = SseParser::default();
        loop {
            let finished = state.read_some(conn, body, deadline)?;
            if let Some(v) = events.feed(body, want, want_version) {
                answer.verdict = v;
                answer.done_at = Instant::now();
                if !finished {
                    // The server should end the stream now; if it does not, drop the connection.
                    let grace = deadline.min(answer.done_at + DRAIN_GRACE);
                    loop {
                        body.clear();
                        match state.read_some(conn, body, grace) {
                            Ok(true) => break,
                            Ok(false) => {}
                            Err(_) => {
                                answer.close = true;
                                break;
                            }
                        }
                    }
                }
                return Ok(answer);
            }
            if finished {
                return Err(bad(format!(
                    "event stream ended without the response to request {want}"
                )));
            }
            if body.len() > MAX_BODY {
                return Err(bad("event over 64 MiB"));
            }
        }
    }
    state.read_all(conn, body, deadline)?;
    answer.done_at = Instant::now();
    if !head.json {
        return Err(bad(format!(
            "status {} without a JSON or event-stream body: {}",
            head.status,
            excerpt(body)
        )));
    }
    match check(body, want, want_version) {
        Check::Mine(v) => {
            answer.verdict = v;
            Ok(answer)
        }
        Check::NotMine => Err(bad(format!(
            "reply is not the response to request {want}: {}",
            excerpt(body)
        ))),
        Check::Invalid(e) => Err(bad(format!("{e}: {}", excerpt(body)))),
    }
}

/// The first 200 characters of a body, for error messages.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    text.trim().replace(['\r', '\n'], " ")
}
