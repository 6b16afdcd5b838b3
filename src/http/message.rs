//! HTTP/1.1 wire types, strict request parsing and response encoding.
//!
//! This module knows nothing about threads: it turns bytes from one [`TcpStream`] into
//! [`Request`]s and [`Response`]s into bytes. The rules are deliberately strict, because a
//! proxy that frames a request differently from the hop in front of it can be smuggled
//! through (docs/crates.md §1.2.9–§1.2.10):
//!
//! * head: at most [`MAX_LINE`] bytes per line, [`MAX_HEADERS`] header fields and
//!   [`MAX_HEAD`] bytes in all (431), parsed by `httparse`; only HTTP/1.0 and 1.1 (505);
//! * `Content-Length`: ASCII digits only, at most 18 of them, exactly one field (400);
//! * `Transfer-Encoding`: exactly one field whose value is `chunked` (400), never together
//!   with `Content-Length` (400), never on HTTP/1.0 (400);
//! * bodies above `max_body` are refused (413) without reading more than `max_body + 1`
//!   payload bytes; `Expect: 100-continue` is honoured, other expectations get 417;
//! * response header names must be tokens and values free of CR, LF and NUL
//!   ([`valid_header`]); framing headers are always written by this layer.
//!
//! Request header values are decoded lossily: bytes that are not UTF-8 become U+FFFD.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Longest accepted line of a request head or chunked trailer, in bytes (CRLF excluded).
pub const MAX_LINE: usize = 8 * 1024;
/// Most header fields accepted in a request head (and in a chunked trailer).
pub const MAX_HEADERS: usize = 64;
/// Longest accepted request head (request line and all header lines), in bytes.
pub const MAX_HEAD: usize = 32 * 1024;

/// Size of one socket read into the connection buffer.
const READ_CHUNK: usize = 8 * 1024;

/// HTTP version of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// `HTTP/1.0`: no chunked responses, keep-alive only on request.
    Http10,
    /// `HTTP/1.1`.
    Http11,
}

/// A fully read request: head and body (the body is already decoded and complete).
#[derive(Clone, Debug)]
pub struct Request {
    /// Method as sent, e.g. `POST` (case-sensitive, a token).
    pub method: String,
    /// Raw request-target, e.g. `/mcp?x=1`.
    pub target: String,
    /// HTTP version of the request.
    pub version: Version,
    /// Header fields in arrival order, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body, decoded from `Content-Length` or chunked framing; at most `max_body` bytes.
    pub body: Vec<u8>,
    /// Address of the client.
    pub remote: SocketAddr,
}

impl Request {
    /// The request-target without its query string.
    pub fn path(&self) -> &str {
        match self.target.find('?') {
            Some(i) => &self.target[..i],
            None => &self.target,
        }
    }

    /// Value of the first header field called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Values of all header fields called `name` (case-insensitive), in arrival order.
    pub fn header_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the client wants the connection kept open after this request: HTTP/1.1
    /// unless `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`.
    pub fn wants_keep_alive(&self) -> bool {
        let has = |token: &str| {
            self.header_all("connection")
                .flat_map(|v| v.split(','))
                .any(|t| t.trim().eq_ignore_ascii_case(token))
        };
        match self.version {
            Version::Http11 => !has("close"),
            Version::Http10 => has("keep-alive") && !has("close"),
        }
    }
}

/// A fixed-length response, built by a handler and written by the server layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// Status code (200–999; 1xx cannot be sent as a final response).
    pub status: u16,
    /// Header fields; `Content-Length`, `Transfer-Encoding`, `Connection`, `Keep-Alive`,
    /// `Upgrade` and `Trailer` are dropped because the layer writes its own framing.
    pub headers: Vec<(String, String)>,
    /// The body (not sent for HEAD requests, 204 and 304).
    pub body: Vec<u8>,
}

impl Response {
    /// An empty response with this status.
    pub fn new(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header field. Validation happens when the response is written.
    pub fn with_header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Sets the body and replaces any `Content-Type` with `content_type` (none if empty).
    pub fn with_body(mut self, content_type: &str, body: Vec<u8>) -> Response {
        self.headers
            .retain(|(n, _)| !n.eq_ignore_ascii_case("content-type"));
        if !content_type.is_empty() {
            self.headers
                .push(("Content-Type".to_string(), content_type.to_string()));
        }
        self.body = body;
        self
    }
}

/// Reason phrase for a status code (empty for codes without a standard phrase).
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// Whether `b` may appear in an RFC 7230 token (header names, methods).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Whether a response header may be written: `name` is a non-empty RFC 7230 token and
/// `value` has no CR, LF or NUL (HTAB and obs-text bytes >= 0x80 are allowed).
pub fn valid_header(name: &str, value: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(is_tchar)
        && !value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0)
}

/// Whether a response with this status carries no body and no `Content-Length`.
fn bodyless(status: u16) -> bool {
    status < 200 || status == 204 || status == 304
}

/// Headers the layer owns; a handler's copies are dropped.
pub(crate) fn is_framing_header(name: &str) -> bool {
    [
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "trailer",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

/// What the `Connection` header of a response says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ConnHeader {
    /// No `Connection` header (HTTP/1.1 keep-alive).
    None,
    /// `Connection: close`.
    Close,
    /// `Connection: keep-alive` (HTTP/1.0 keep-alive).
    KeepAlive,
}

/// How the body of a response is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// `Content-Length: n` (omitted for 204, 304).
    Length(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// Appends a response head to `out`. Fails (writing nothing) with a description of the
/// first invalid header or an invalid status.
pub(crate) fn encode_head(
    out: &mut Vec<u8>,
    status: u16,
    headers: &[(String, String)],
    framing: Framing,
    conn: ConnHeader,
) -> Result<(), String> {
    if !(200..=999).contains(&status) {
        return Err(format!("invalid status {status}"));
    }
    if let Some((n, v)) = headers.iter().find(|(n, v)| !valid_header(n, v)) {
        return Err(format!("invalid header {n:?}: {v:?}"));
    }
    // Writing into a Vec cannot fail.
    let _ = write!(out, "HTTP/1.1 {status} {}\r\n", reason(status));
    for (n, v) in headers.iter().filter(|(n, _)| !is_framing_header(n)) {
        out.extend_from_slice(n.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match framing {
        Framing::Length(_) if bodyless(status) => {}
        Framing::Length(n) => {
            let _ = write!(out, "Content-Length: {n}\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
    }
    match conn {
        ConnHeader::None => {}
        ConnHeader::Close => out.extend_from_slice(b"Connection: close\r\n"),
        ConnHeader::KeepAlive => out.extend_from_slice(b"Connection: keep-alive\r\n"),
    }
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// Encodes a whole fixed-length response (head, and body unless `head_only` or bodyless).
pub(crate) fn encode_response(
    resp: &Response,
    head_only: bool,
    conn: ConnHeader,
) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(256 + resp.body.len());
    encode_head(
        &mut out,
        resp.status,
        &resp.headers,
        Framing::Length(resp.body.len()),
        conn,
    )?;
    if !head_only && !bodyless(resp.status) {
        out.extend_from_slice(&resp.body);
    }
    Ok(out)
}

/// Why no request could be read from a connection.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ReadError {
    /// The client closed, reset or went idle: close without answering.
    Closed,
    /// Answer with this status and message, then close the connection.
    Reject(u16, &'static str),
}

/// Limits applied while reading one request.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// Largest accepted body in bytes.
    pub max_body: usize,
    /// Deadline for the whole head, from its first byte.
    pub header_timeout: Duration,
    /// Timeout of each read while reading a body.
    pub body_timeout: Duration,
    /// Deadline for the whole body, from the end of the head.
    pub body_deadline: Duration,
}

/// The read side of one connection: the socket plus bytes received but not yet consumed
/// (`buf[pos..end]`, e.g. pipelined requests).
pub(crate) struct Wire {
    stream: TcpStream,
    remote: SocketAddr,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    /// While a body is read: when it must be complete.
    body_until: Option<Instant>,
    /// The socket's read timeout as last set (one `setsockopt` only when it changes).
    read_timeout: Option<Duration>,
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Socket timeouts must be non-zero.
fn at_least_1ms(d: Duration) -> Duration {
    d.max(Duration::from_millis(1))
}

impl Wire {
    /// Wraps an accepted stream.
    pub fn new(stream: TcpStream, remote: SocketAddr) -> Wire {
        Wire {
            stream,
            remote,
            buf: vec![0; READ_CHUNK],
            pos: 0,
            end: 0,
            body_until: None,
            read_timeout: None,
        }
    }

    /// The socket (for writing responses).
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Whether bytes of a next request are already buffered.
    pub fn has_buffered(&self) -> bool {
        self.pos < self.end
    }

    /// Reads once from the socket (with `timeout`) into the buffer; returns the byte count.
    /// Unconsumed bytes are moved to the front, and the buffer grows only while a head
    /// larger than it is being received (so it stays below `MAX_HEAD + 2 * READ_CHUNK`).
    fn fill(&mut self, timeout: Duration) -> io::Result<usize> {
        if self.pos == self.end {
            (self.pos, self.end) = (0, 0);
        }
        if self.buf.len() - self.end < READ_CHUNK / 2 {
            self.buf.copy_within(self.pos..self.end, 0);
            (self.pos, self.end) = (0, self.end - self.pos);
            if self.buf.len() - self.end < READ_CHUNK / 2 {
                self.buf.resize(self.end + READ_CHUNK, 0);
            }
        }
        let timeout = Some(at_least_1ms(timeout));
        if self.read_timeout != timeout {
            self.stream.set_read_timeout(timeout)?;
            self.read_timeout = timeout;
        }
        loop {
            match self.stream.read(&mut self.buf[self.end..]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(n) => {
                    self.end += n;
                    return Ok(n);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Like [`fill`](Self::fill) while reading a body: timeout (of this read, or of the
    /// whole body) → 408, EOF/error → closed.
    fn fill_body(&mut self, timeout: Duration) -> Result<(), ReadError> {
        let timeout = self.body_read_timeout(timeout)?;
        match self.fill(timeout) {
            Ok(0) => Err(closed("eof in body")),
            Ok(_) => Ok(()),
            Err(e) if is_timeout(&e) => Err(ReadError::Reject(408, "body read timed out")),
            Err(e) => Err(closed(&e.to_string())),
        }
    }

    /// The timeout of the next body read: `timeout`, cut to what is left of the whole-body
    /// deadline; 408 once that has passed.
    fn body_read_timeout(&self, timeout: Duration) -> Result<Duration, ReadError> {
        let Some(until) = self.body_until else {
            return Ok(timeout);
        };
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ReadError::Reject(408, "body took too long"));
        }
        Ok(timeout.min(left))
    }

    /// Waits up to `idle` for the first byte of a next request. `false`: the client
    /// closed the connection, reset it, or stayed idle too long.
    pub fn wait_for_request(&mut self, idle: Duration) -> bool {
        if self.has_buffered() {
            return true;
        }
        match self.fill(idle) {
            Ok(0) => false,
            Ok(_) => true,
            Err(e) => {
                log::debug!("{}: idle connection ends: {e}", self.remote);
                false
            }
        }
    }

    /// Reads one whole request (head and body). `100 Continue` is written to the socket
    /// when the client sent `Expect: 100-continue`, the body is acceptable and none of it
    /// has arrived yet.
    pub fn read_request(&mut self, limits: &Limits) -> Result<Request, ReadError> {
        let mut req = self.read_head(limits.header_timeout)?;
        let body = body_framing(&req, limits.max_body)?;
        let expect_continue = expects_continue(&req)?;
        if body != BodyFraming::None
            && expect_continue
            && !self.has_buffered()
            && let Err(e) = self.stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
        {
            return Err(closed(&e.to_string()));
        }
        if body == BodyFraming::None {
            return Ok(req);
        }
        self.body_until = Some(Instant::now() + limits.body_deadline);
        let read = match body {
            BodyFraming::Length(n) => self.read_exact_body(n, &mut req.body, limits.body_timeout),
            _ => self.read_chunked(&mut req.body, limits),
        };
        self.body_until = None;
        read?;
        Ok(req)
    }

    /// Reads and parses the head, enforcing the size limits and the head deadline.
    fn read_head(&mut self, header_timeout: Duration) -> Result<Request, ReadError> {
        let deadline = Instant::now() + header_timeout;
        let mut scan = HeadScan::default();
        loop {
            if let Some(end) = scan.scan(&self.buf[self.pos..self.end])? {
                let req = parse_head(&self.buf[self.pos..self.pos + end], self.remote)?;
                self.pos += end;
                return Ok(req);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ReadError::Reject(408, "request head timed out"));
            }
            match self.fill(left) {
                Ok(0) => return Err(closed("eof in request head")),
                Ok(_) => {}
                Err(e) if is_timeout(&e) => {
                    return Err(ReadError::Reject(408, "request head timed out"));
                }
                Err(e) => return Err(closed(&e.to_string())),
            }
        }
    }

    /// Appends exactly `n` body bytes to `out`, through the buffer (bytes after the body stay
    /// there for the next request). The body grows as it arrives, never by what the head
    /// declared; each read is bounded by `timeout` and the whole-body deadline.
    fn read_exact_body(
        &mut self,
        mut n: usize,
        out: &mut Vec<u8>,
        timeout: Duration,
    ) -> Result<(), ReadError> {
        loop {
            let take = n.min(self.end - self.pos);
            out.extend_from_slice(&self.buf[self.pos..self.pos + take]);
            self.pos += take;
            n -= take;
            if n == 0 {
                return Ok(());
            }
            self.fill_body(timeout)?;
        }
    }

    /// Takes one CRLF-terminated line (without the CRLF). A line longer than `max` is
    /// answered with `too_long`; a bare LF or CR is a 400.
    fn take_line(
        &mut self,
        max: usize,
        too_long: u16,
        timeout: Duration,
    ) -> Result<Vec<u8>, ReadError> {
        let mut searched = 0;
        loop {
            let avail = &self.buf[self.pos..self.end];
            let lf = avail[searched..].iter().position(|&b| b == b'\n');
            if let Some(i) = lf.map(|i| i + searched) {
                if i == 0 || avail[i - 1] != b'\r' || avail[..i - 1].contains(&b'\r') {
                    return Err(ReadError::Reject(400, "bad line ending in chunked body"));
                }
                if i - 1 > max {
                    return Err(ReadError::Reject(too_long, "line too long in chunked body"));
                }
                let line = avail[..i - 1].to_vec();
                self.pos += i + 1;
                return Ok(line);
            }
            if avail.len() > max + 1 {
                return Err(ReadError::Reject(too_long, "line too long in chunked body"));
            }
            searched = avail.len();
            self.fill_body(timeout)?;
        }
    }

    /// Decodes a chunked body into `out`, bounded by `max_body` payload bytes and by the
    /// same amount (at least 64 KiB) of framing overhead, then reads and discards trailers.
    fn read_chunked(&mut self, out: &mut Vec<u8>, limits: &Limits) -> Result<(), ReadError> {
        let t = limits.body_timeout;
        let overhead_budget = limits.max_body.max(64 * 1024);
        let mut overhead = 0usize;
        loop {
            let line = self.take_line(MAX_LINE, 400, t)?;
            overhead += line.len() + 2;
            let size = parse_chunk_size(&line)?;
            if size == 0 {
                break;
            }
            if size > (limits.max_body - out.len()) as u64 {
                return Err(ReadError::Reject(413, "request body too large"));
            }
            self.read_exact_body(size as usize, out, t)?;
            loop {
                let avail = &self.buf[self.pos..self.end.min(self.pos + 2)];
                if !b"\r\n".starts_with(avail) {
                    return Err(ReadError::Reject(400, "chunk data not followed by CRLF"));
                }
                if avail.len() == 2 {
                    break;
                }
                self.fill_body(t)?;
            }
            self.pos += 2;
            overhead += 2;
            if overhead > overhead_budget {
                return Err(ReadError::Reject(413, "too much chunked framing"));
            }
        }
        // Trailer section: header-like lines up to an empty line, within the head limits.
        let (mut total, mut count) = (0usize, 0usize);
        loop {
            let line = self.take_line(MAX_LINE, 431, t)?;
            if line.is_empty() {
                return Ok(());
            }
            total += line.len() + 2;
            count += 1;
            if count > MAX_HEADERS || total > MAX_HEAD {
                return Err(ReadError::Reject(431, "chunked trailer too large"));
            }
            let name_ok = match line.iter().position(|&b| b == b':') {
                Some(c) => c > 0 && line[..c].iter().all(|&b| is_tchar(b)),
                None => false,
            };
            if !name_ok || line.iter().any(|&b| b < 0x20 && b != b'\t') {
                return Err(ReadError::Reject(400, "invalid chunked trailer"));
            }
        }
    }
}

fn closed(why: &str) -> ReadError {
    log::debug!("client connection closed: {why}");
    ReadError::Closed
}

/// Incremental scanner over a partly received head: enforces line length, line count
/// and total size without rescanning, and finds the blank line that ends the head.
#[derive(Default)]
pub(crate) struct HeadScan {
    scanned: usize,
    line_len: usize,
    lines: usize,
}

impl HeadScan {
    /// Scans newly arrived bytes of `head` (which starts at the head's first byte). Returns
    /// the head length once its terminating empty line has arrived.
    pub(crate) fn scan(&mut self, head: &[u8]) -> Result<Option<usize>, ReadError> {
        for (i, &b) in head.iter().enumerate().skip(self.scanned) {
            if i >= MAX_HEAD {
                return Err(ReadError::Reject(431, "request head too large"));
            }
            match b {
                b'\n' if self.line_len == 0 && self.lines > 0 => return Ok(Some(i + 1)),
                b'\n' => {
                    if self.line_len > 0 {
                        self.lines += 1;
                        if self.lines > MAX_HEADERS + 1 {
                            return Err(ReadError::Reject(431, "too many header fields"));
                        }
                    }
                    self.line_len = 0;
                }
                b'\r' => {}
                _ => {
                    self.line_len += 1;
                    if self.line_len > MAX_LINE {
                        return Err(ReadError::Reject(431, "request head line too long"));
                    }
                }
            }
        }
        self.scanned = head.len();
        Ok(None)
    }
}

/// Parses a complete head with `httparse` into a [`Request`] with an empty body.
pub(crate) fn parse_head(head: &[u8], remote: SocketAddr) -> Result<Request, ReadError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut slots);
    match parsed.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(ReadError::Reject(400, "malformed head")),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(ReadError::Reject(431, "too many header fields"));
        }
        // httparse reports any request line it cannot split as a version error, e.g.
        // `GET /a b HTTP/1.1`: only a well-formed but unsupported version is a 505.
        Err(httparse::Error::Version) if has_version_token(head) => {
            return Err(ReadError::Reject(
                505,
                "only HTTP/1.0 and HTTP/1.1 are supported",
            ));
        }
        Err(_) => return Err(ReadError::Reject(400, "malformed request head")),
    }
    let version = match parsed.version {
        Some(0) => Version::Http10,
        Some(1) => Version::Http11,
        _ => {
            return Err(ReadError::Reject(
                505,
                "only HTTP/1.0 and HTTP/1.1 are supported",
            ));
        }
    };
    let (Some(method), Some(target)) = (parsed.method, parsed.path) else {
        return Err(ReadError::Reject(400, "malformed request line"));
    };
    let headers = parsed
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    Ok(Request {
        method: method.to_string(),
        target: target.to_string(),
        version,
        headers,
        body: Vec::new(),
        remote,
    })
}

/// Whether the request line is `method SP target SP HTTP/d.d`, the shape in which an
/// unsupported version is answered 505 (anything else malformed is a 400).
fn has_version_token(head: &[u8]) -> bool {
    let start = head.iter().position(|&b| b != b'\r' && b != b'\n');
    let line = head[start.unwrap_or(head.len())..]
        .split(|&b| b == b'\n')
        .next()
        .unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let parts: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    match parts.as_slice() {
        [method, target, version] => {
            !method.is_empty()
                && !target.is_empty()
                && matches!(version, [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
                    if major.is_ascii_digit() && minor.is_ascii_digit())
        }
        _ => false,
    }
}

/// How a request's body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BodyFraming {
    None,
    Length(usize),
    Chunked,
}

/// Applies the strict framing rules to a parsed head.
pub(crate) fn body_framing(req: &Request, max_body: usize) -> Result<BodyFraming, ReadError> {
    if req.header_all("host").count() > 1 {
        return Err(ReadError::Reject(400, "more than one Host header"));
    }
    let cl: Vec<&str> = req.header_all("content-length").collect();
    let te: Vec<&str> = req.header_all("transfer-encoding").collect();
    match (cl.as_slice(), te.as_slice()) {
        ([], []) => Ok(BodyFraming::None),
        ([_, ..], [_, ..]) => Err(ReadError::Reject(
            400,
            "both Content-Length and Transfer-Encoding",
        )),
        ([v], []) => {
            let v = v.trim_matches([' ', '\t']);
            if v.is_empty() || v.len() > 18 || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ReadError::Reject(400, "invalid Content-Length"));
            }
            match v.parse::<u64>() {
                Ok(n) if n <= max_body as u64 => Ok(BodyFraming::Length(n as usize)),
                Ok(_) => Err(ReadError::Reject(413, "request body too large")),
                Err(_) => Err(ReadError::Reject(400, "invalid Content-Length")),
            }
        }
        (_, []) => Err(ReadError::Reject(400, "more than one Content-Length")),
        ([], [v]) if v.trim_matches([' ', '\t']).eq_ignore_ascii_case("chunked") => {
            if req.version == Version::Http10 {
                return Err(ReadError::Reject(
                    400,
                    "Transfer-Encoding in an HTTP/1.0 request",
                ));
            }
            Ok(BodyFraming::Chunked)
        }
        ([], _) => Err(ReadError::Reject(400, "unsupported Transfer-Encoding")),
    }
}

/// `Ok(true)` for `Expect: 100-continue` on HTTP/1.1; 417 for any other expectation.
/// HTTP/1.0 expectations are ignored (RFC 9110 §10.1.1).
pub(crate) fn expects_continue(req: &Request) -> Result<bool, ReadError> {
    if req.version == Version::Http10 {
        return Ok(false);
    }
    let mut found = false;
    for v in req.header_all("expect") {
        if !v
            .trim_matches([' ', '\t'])
            .eq_ignore_ascii_case("100-continue")
        {
            return Err(ReadError::Reject(417, "unsupported expectation"));
        }
        found = true;
    }
    Ok(found)
}

/// Parses a chunk-size line: 1–16 hex digits, then nothing or `BWS ; extensions`
/// (ignored, but free of control characters other than HTAB).
pub(crate) fn parse_chunk_size(line: &[u8]) -> Result<u64, ReadError> {
    let bad = || ReadError::Reject(400, "invalid chunk size");
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return Err(bad());
    }
    let rest = &line[digits..];
    let ext = rest
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .map(|i| &rest[i..]);
    match ext {
        None if rest.is_empty() => {}
        Some([b';', ext @ ..]) if !ext.iter().any(|&b| b < 0x20 && b != b'\t' || b == 0x7f) => {}
        _ => return Err(bad()),
    }
    let hex = std::str::from_utf8(&line[..digits]).map_err(|_| bad())?;
    u64::from_str_radix(hex, 16).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)], version: Version) -> Request {
        Request {
            method: "POST".into(),
            target: "/mcp?x=1".into(),
            version,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: Vec::new(),
            remote: "127.0.0.1:1".parse().expect("addr"),
        }
    }

    #[test]
    fn request_accessors() {
        let r = req(
            &[("X-A", "1"), ("x-a", "2"), ("Host", "h")],
            Version::Http11,
        );
        assert_eq!(r.path(), "/mcp");
        assert_eq!(r.header("X-a"), Some("1"));
        assert_eq!(r.header_all("X-A").collect::<Vec<_>>(), vec!["1", "2"]);
        assert_eq!(r.header("missing"), None);
        assert!(r.wants_keep_alive());
        assert!(!req(&[("Connection", "foo, Close")], Version::Http11).wants_keep_alive());
        assert!(!req(&[], Version::Http10).wants_keep_alive());
        assert!(req(&[("Connection", "Keep-Alive")], Version::Http10).wants_keep_alive());
    }

    #[test]
    fn header_validation() {
        assert!(valid_header("X-Ok", "a\tb \u{e9}"));
        assert!(!valid_header("", "v"));
        assert!(!valid_header("Bad Name", "v"));
        assert!(!valid_header("X:", "v"));
        assert!(!valid_header("X", "a\r\nX-Injected: 1"));
        assert!(!valid_header("X", "a\nb"));
        assert!(!valid_header("X", "a\0b"));
        assert_eq!(reason(431), "Request Header Fields Too Large");
        assert_eq!(reason(299), "");
    }

    #[test]
    fn response_encoding() {
        let r = Response::new(200)
            .with_header("Content-Length", "99")
            .with_header("connection", "keep-alive")
            .with_header("X-A", "b")
            .with_body("text/plain", b"hi".to_vec());
        let out = encode_response(&r, false, ConnHeader::Close).expect("valid");
        assert_eq!(
            String::from_utf8_lossy(&out),
            "HTTP/1.1 200 OK\r\nX-A: b\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\
             Connection: close\r\n\r\nhi"
        );
        let head = encode_response(&r, true, ConnHeader::None).expect("valid");
        assert!(head.ends_with(b"Content-Length: 2\r\n\r\n"));
        let no_content = encode_response(&Response::new(204), false, ConnHeader::None);
        assert_eq!(
            no_content.expect("valid"),
            b"HTTP/1.1 204 No Content\r\n\r\n"
        );
        let bad = Response::new(200).with_header("X", "a\r\nX-Injected: 1");
        assert!(encode_response(&bad, false, ConnHeader::None).is_err());
        assert!(encode_response(&Response::new(101), false, ConnHeader::None).is_err());
    }

    #[test]
    fn chunk_sizes() {
        assert_eq!(parse_chunk_size(b"1a").ok(), Some(26));
        assert_eq!(parse_chunk_size(b"0").ok(), Some(0));
        assert_eq!(parse_chunk_size(b"A ; name=val").ok(), Some(10));
        assert_eq!(parse_chunk_size(b"ffffffffffffffff").ok(), Some(u64::MAX));
        for bad in [
            &b""[..],
            b"+5",
            b"0x5",
            b" 5",
            b"5 ",
            b"5x",
            b"11111111111111111",
            b"5;\x01",
        ] {
            assert!(parse_chunk_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn framing_rules() {
        let f = |h: &[(&str, &str)]| body_framing(&req(h, Version::Http11), 100);
        let reject = |s| Err(ReadError::Reject(s, ""));
        let status = |r: Result<BodyFraming, ReadError>| match r {
            Err(ReadError::Reject(s, _)) => reject(s),
            other => other,
        };
        assert_eq!(f(&[]), Ok(BodyFraming::None));
        assert_eq!(f(&[("Content-Length", "007")]), Ok(BodyFraming::Length(7)));
        assert_eq!(
            f(&[("Transfer-Encoding", " Chunked ")]),
            Ok(BodyFraming::Chunked)
        );
        for bad in ["abc", "+5", "-1", "1 2", "5,5", "", "1234567890123456789"] {
            assert_eq!(status(f(&[("Content-Length", bad)])), reject(400), "{bad}");
        }
        assert_eq!(
            status(f(&[("Content-Length", "5"), ("content-length", "5")])),
            reject(400)
        );
        assert_eq!(status(f(&[("Content-Length", "101")])), reject(413));
        for bad in ["gzip, chunked", "identity", "xchunked", "chunked, chunked"] {
            assert_eq!(
                status(f(&[("Transfer-Encoding", bad)])),
                reject(400),
                "{bad}"
            );
        }
        let dup = [
            ("Transfer-Encoding", "chunked"),
            ("Transfer-Encoding", "chunked"),
        ];
        assert_eq!(status(f(&dup)), reject(400));
        let both = [("Transfer-Encoding", "chunked"), ("Content-Length", "3")];
        assert_eq!(status(f(&both)), reject(400));
        let te10 = body_framing(
            &req(&[("Transfer-Encoding", "chunked")], Version::Http10),
            9,
        );
        assert_eq!(status(te10), reject(400));
        assert_eq!(status(f(&[("Host", "a"), ("Host", "a")])), reject(400));
    }

    #[test]
    fn head_scanner_limits() {
        let mut s = HeadScan::default();
        assert_eq!(s.scan(b"\r\nGET / HTTP/1.1\r\nA: b\r\n").ok(), Some(None));
        assert_eq!(
            s.scan(b"\r\nGET / HTTP/1.1\r\nA: b\r\n\r\nrest").ok(),
            Some(Some(26))
        );
        let long = vec![b'a'; MAX_LINE + 1];
        assert!(matches!(
            HeadScan::default().scan(&long),
            Err(ReadError::Reject(431, _))
        ));
        let many = "A: b\r\n".repeat(MAX_HEADERS + 1);
        let many = format!("GET / HTTP/1.1\r\n{many}");
        let r = HeadScan::default().scan(many.as_bytes());
        assert!(matches!(r, Err(ReadError::Reject(431, _))));
    }

    #[test]
    fn head_parsing() {
        let remote = "127.0.0.1:1".parse().expect("addr");
        let r = parse_head(b"GET /a?b HTTP/1.0\r\nX: \xff\r\n\r\n", remote).expect("valid");
        assert_eq!((r.method.as_str(), r.target.as_str()), ("GET", "/a?b"));
        assert_eq!(r.version, Version::Http10);
        assert_eq!(r.header("x"), Some("\u{fffd}"));
        let status = |h: &[u8]| match parse_head(h, remote) {
            Err(ReadError::Reject(s, _)) => s,
            _ => 0,
        };
        assert_eq!(status(b"GET / HTTP/2.0\r\n\r\n"), 505);
        assert_eq!(status(b"\r\nGET / HTTP/1.2\r\n\r\n"), 505);
        assert_eq!(status(b"GET /a b HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status(b"GET /  HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTX/1.1\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nA : x\r\n\r\n"), 400);
        assert_eq!(status(b"GET /\x01 HTTP/1.1\r\n\r\n"), 400);
    }
}
