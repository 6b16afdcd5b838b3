//! Strict HTTP/1.1 request parsing: bytes from one connection ([`Transport`], plain or TLS) in,
//! whole [`Request`]s out.
//!
//! This module knows nothing about threads. The rules are deliberately strict, because of
//! request smuggling: when two hops frame the same bytes differently (one reads a body where
//! the other reads the start of a next request), a client can slip a request past the hop in
//! front of this one. So every request that is not framed one unambiguous way is refused:
//!
//! * head: at most [`MAX_LINE`] bytes per line, [`MAX_HEADERS`] header fields and
//!   [`MAX_HEAD`] bytes in all (431), parsed by `httparse`; only HTTP/1.0 and 1.1 (505);
//!   exactly one `Host` on HTTP/1.1, at most one on HTTP/1.0 (400);
//! * `Content-Length`: ASCII digits only, at most 18 of them, exactly one field (400);
//! * `Transfer-Encoding`: exactly one field whose value is `chunked` (400), never together
//!   with `Content-Length` (400), never on HTTP/1.0 (400);
//! * bodies above `max_body` are refused (413) without reading more than `max_body + 1`
//!   payload bytes; `Expect: 100-continue` is honoured, other expectations get 417.
//!
//! Request header values are decoded lossily: bytes that are not UTF-8 become U+FFFD.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::encode::is_tchar;
use super::request::{Request, Version};
use super::transport::Transport;

/// Longest accepted line of a request head or chunked trailer, in bytes (CRLF excluded).
pub const MAX_LINE: usize = 8 * 1024;
/// Most header fields accepted in a request head (and in a chunked trailer).
pub const MAX_HEADERS: usize = 64;
/// Longest accepted request head (request line and all header lines), in bytes.
pub const MAX_HEAD: usize = 32 * 1024;

/// Size of one socket read into the connection buffer.
const READ_CHUNK: usize = 8 * 1024;

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

/// The read side of one connection: the stream plus bytes received but not yet consumed
/// (`buf[pos..end]`, e.g. pipelined requests).
pub(crate) struct Wire {
    stream: Transport,
    remote: SocketAddr,
    /// The verified client certificate's subject (mTLS), given to every request.
    client_cert: Option<Arc<str>>,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    /// While a body is read: when it must be complete.
    body_until: Option<Instant>,
    /// The socket's read timeout as last set (one `setsockopt` only when it changes).
    read_timeout: Option<Duration>,
    /// The head of the request whose reading was last refused after its head was parsed
    /// (its framing or body), body empty: the error answer may depend on it (CORS).
    refused_head: Option<Request>,
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
    /// Wraps an accepted stream; `client_cert` is the subject of the client certificate its TLS
    /// handshake verified, if any.
    pub fn new(stream: Transport, remote: SocketAddr, client_cert: Option<Arc<str>>) -> Wire {
        Wire {
            stream,
            remote,
            client_cert,
            buf: vec![0; READ_CHUNK],
            pos: 0,
            end: 0,
            body_until: None,
            read_timeout: None,
            refused_head: None,
        }
    }

    /// The head of the request [`read_request`](Self::read_request) last refused, when the
    /// refusal came after the head was parsed (413, 417, 400 framing, 408 body, 431 trailer).
    pub fn take_refused_head(&mut self) -> Option<Request> {
        self.refused_head.take()
    }

    /// The stream (for writing responses).
    pub fn stream(&mut self) -> &mut Transport {
        &mut self.stream
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
            self.stream.socket().set_read_timeout(timeout)?;
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
    /// When the request is refused after its head was parsed, the head is kept for
    /// [`take_refused_head`](Self::take_refused_head).
    pub fn read_request(&mut self, limits: &Limits) -> Result<Request, ReadError> {
        self.refused_head = None;
        let mut req = self.read_head(limits.header_timeout)?;
        match self.read_body(&mut req, limits) {
            Ok(()) => Ok(req),
            Err(e) => {
                if matches!(e, ReadError::Reject(..)) {
                    req.body = Vec::new();
                    self.refused_head = Some(req);
                }
                Err(e)
            }
        }
    }

    /// Applies the framing rules to `req`'s head and reads its body into `req.body`.
    fn read_body(&mut self, req: &mut Request, limits: &Limits) -> Result<(), ReadError> {
        let body = body_framing(req, limits.max_body)?;
        let expect_continue = expects_continue(req)?;
        if body != BodyFraming::None
            && expect_continue
            && !self.has_buffered()
            && let Err(e) = self.stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
        {
            return Err(closed(&e.to_string()));
        }
        if body == BodyFraming::None {
            return Ok(());
        }
        self.body_until = Some(Instant::now() + limits.body_deadline);
        let read = match body {
            BodyFraming::Length(n) => self.read_exact_body(n, &mut req.body, limits.body_timeout),
            _ => self.read_chunked(&mut req.body, limits),
        };
        self.body_until = None;
        read
    }

    /// Reads and parses the head, enforcing the size limits and the head deadline.
    fn read_head(&mut self, header_timeout: Duration) -> Result<Request, ReadError> {
        let deadline = Instant::now() + header_timeout;
        let mut scan = HeadScan::default();
        loop {
            if let Some(end) = scan.scan(&self.buf[self.pos..self.end])? {
                let mut req = parse_head(&self.buf[self.pos..self.pos + end], self.remote)?;
                req.client_cert = self.client_cert.clone();
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
        client_cert: None,
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

/// Applies the strict framing rules to a parsed head, after the `Host` rule: exactly one
/// `Host` field on HTTP/1.1 (RFC 9112 §3.2), at most one on HTTP/1.0 (else 400).
pub(crate) fn body_framing(req: &Request, max_body: usize) -> Result<BodyFraming, ReadError> {
    match req.header_all("host").count() {
        0 if req.version == Version::Http11 => {
            return Err(ReadError::Reject(400, "HTTP/1.1 request without Host"));
        }
        0 | 1 => {}
        _ => return Err(ReadError::Reject(400, "more than one Host header")),
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
mod tests;
