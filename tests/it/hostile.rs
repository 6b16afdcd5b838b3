//! Hostile input against the whole proxy, over raw sockets: request smuggling (conflicting
//! or odd `Transfer-Encoding` / `Content-Length`, chunked framing tricks), header injection
//! (CR, LF, NUL in header lines, obs-fold), oversized heads and bodies, slow clients, and
//! whether any client value is echoed into a response header.
//!
//! Every rejection is checked the same way ([`refused`]): exactly one response with the
//! expected status and `Connection: close`, then EOF; the bytes after the hostile request
//! are a complete `initialize` POST, so a request that had been smuggled through would show
//! as a second response *and* as a new session. Afterwards the proxy must still answer an
//! `initialize` with 200 and its open-connection count must fall back to zero
//! ([`still_serves`]).
//!
//! Slow-client tests need head and body timeouts of a few hundred milliseconds, which have
//! no flags (10 s and 30 s); [`Tight`] serves a running proxy's pipeline from a second
//! [`Server`] configured with short timeouts.
//!
//! Origin / Host checks against DNS rebinding are in `validation::matrix`; this module adds
//! look-alike names only.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use shadowcat::Proxy;
use shadowcat::Shadowcat;
use shadowcat::http::{Handler, Responder, Server, ServerConfig};
use shadowcat::http::{Request, Response};

use crate::support::*;

/// Bound on every read of a test socket.
const READ: Duration = Duration::from_secs(5);

/// A raw client connection: writes are best effort (the server may close early), reads
/// are bounded by [`READ`].
struct Raw(TcpStream);

impl Raw {
    fn open(addr: SocketAddr) -> Raw {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(READ)).expect("read timeout");
        s.set_write_timeout(Some(READ)).expect("write timeout");
        s.set_nodelay(true).expect("nodelay");
        Raw(s)
    }

    /// Writes `bytes`; false if the server had already closed.
    fn send(&mut self, bytes: &[u8]) -> bool {
        self.0.write_all(bytes).is_ok()
    }

    /// Everything the server sends until it closes the connection. Panics if it is still
    /// open after [`READ`] of silence.
    fn until_closed(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        loop {
            match self.0.read(&mut buf) {
                Ok(0) => return out,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return out,
                Err(e) => panic!(
                    "connection not closed ({e}); got so far: {:?}",
                    String::from_utf8_lossy(&out)
                ),
            }
        }
    }

    /// All responses until the server closes.
    fn responses(&mut self) -> Vec<Resp> {
        parse_responses(&self.until_closed())
    }
}

/// Splits a byte stream into responses (Content-Length, chunked, or to the end).
fn parse_responses(mut bytes: &[u8]) -> Vec<Resp> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let end = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("incomplete head: {:?}", String::from_utf8_lossy(bytes)));
        let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
        bytes = &bytes[end + 4..];
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (k, v) = l.split_once(':').expect("header line");
                (k.to_string(), v.trim().to_string())
            })
            .collect();
        let mut r = Resp {
            status,
            headers,
            body: Vec::new(),
        };
        if let Some(n) = r.header("content-length") {
            let n: usize = n.parse().expect("content-length");
            r.body = bytes[..n].to_vec();
            bytes = &bytes[n..];
        } else if r.header("transfer-encoding").is_some() {
            loop {
                let eol = bytes.windows(2).position(|w| w == b"\r\n").expect("size");
                let size = std::str::from_utf8(&bytes[..eol]).expect("ascii size");
                let size = usize::from_str_radix(size, 16).expect("hex size");
                r.body.extend_from_slice(&bytes[eol + 2..eol + 2 + size]);
                bytes = &bytes[eol + 2 + size + 2..];
                if size == 0 {
                    break;
                }
            }
        } else if !(status < 200 || status == 204 || status == 304) {
            r.body = bytes.to_vec();
            bytes = &[];
        }
        out.push(r);
    }
    out
}

/// An `initialize` POST: what a smuggled request would be. It creates a session.
fn initialize_request(extra: &str) -> String {
    format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\n{extra}Content-Length: {}\r\n\r\n{INIT}",
        INIT.len()
    )
}

/// A hostile POST to the MCP endpoint: `headers` (CRLF-separated lines, without the final
/// CRLF) and `body`, followed by a complete `initialize` POST that must never be executed.
fn hostile(headers: &str, body: &str) -> Vec<u8> {
    format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\n{headers}\r\n\r\n{body}{}",
        initialize_request("")
    )
    .into_bytes()
}

/// Sends `request` on a fresh connection and asserts: one response, `status`,
/// `Connection: close`, then EOF, and no session was created.
fn refused(proxy: &Proxy, addr: SocketAddr, request: &[u8], status: u16) -> Resp {
    let sessions = proxy.sessions().len();
    let mut c = Raw::open(addr);
    c.send(request);
    let mut all = c.responses();
    let shown = String::from_utf8_lossy(request);
    assert_eq!(all.len(), 1, "exactly one response to {shown:?}: {all:?}");
    let r = all.remove(0);
    assert_eq!(r.status, status, "{shown:?}: {}", r.text());
    assert_eq!(r.header("connection"), Some("close"), "{shown:?}");
    assert_eq!(
        proxy.sessions().len(),
        sessions,
        "a smuggled initialize ran after {shown:?}"
    );
    r
}

/// The proxy answers an `initialize` with 200, and once every test connection is gone its
/// open-connection count falls back to zero (nothing wedged, no thread stuck on a socket).
fn still_serves(addr: SocketAddr, connections: impl Fn() -> usize) {
    let r = post(addr, None, INIT);
    assert_eq!(
        r.status,
        200,
        "initialize after hostile input: {}",
        r.text()
    );
    let until = Instant::now() + Duration::from_secs(3);
    while connections() > 0 {
        assert!(
            Instant::now() < until,
            "{} connection(s) still open",
            connections()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn demo() -> Shadowcat {
    demo_proxy(&["--stdio-children", "1"])
}

#[test]
fn conflicting_content_length_and_transfer_encoding_are_400() {
    let p = demo();
    let (proxy, a) = (p.proxy(), p.local_addr());
    // The body is a terminating chunk; the Content-Length also covers the smuggled request,
    // so a CL.TE or TE.CL disagreement would run it.
    let smuggled_len = initialize_request("").len() + 5;
    let cl = format!("Content-Length: {smuggled_len}");
    for headers in [
        format!("{cl}\r\nTransfer-Encoding: chunked"),
        format!("Transfer-Encoding: chunked\r\n{cl}"),
        format!("{cl}\r\nTransfer-Encoding: identity"),
        format!("{cl}\r\ntransfer-encoding: CHUNKED"),
        format!("Transfer-Encoding:\tchunked\r\n{cl}"),
        // A bare LF is a line end here, as for the parser: the hidden field is seen.
        format!("X-A: 1\nTransfer-Encoding: chunked\r\n{cl}"),
        // Conflicting or duplicated lengths.
        "Content-Length: 5\r\nContent-Length: 0".to_string(),
        "Content-Length: 5\r\nContent-Length: 5".to_string(),
        "Content-Length: 0\r\ncontent-length: 5".to_string(),
    ] {
        refused(proxy, a, &hostile(&headers, "0\r\n\r\n"), 400);
    }
    still_serves(a, || proxy.connections());
}

#[test]
fn odd_transfer_encodings_are_400() {
    let p = demo();
    let (proxy, a) = (p.proxy(), p.local_addr());
    for te in [
        "chunked, chunked",
        "gzip, chunked",
        "chunked, gzip",
        "identity",
        "gzip",
        "xchunked",
        "chunked;q=1",
        "chunked\r\nTransfer-Encoding: chunked",
        "\r\nTransfer-Encoding: chunked",
        ",chunked",
    ] {
        let req = hostile(&format!("Transfer-Encoding: {te}"), "0\r\n\r\n");
        refused(proxy, a, &req, 400);
    }
    // HTTP/1.0 has no chunked framing: a TE there is refused, not guessed.
    let req = format!(
        "POST /mcp HTTP/1.0\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\n\r\n0\r\n\r\n{}",
        initialize_request("")
    );
    refused(proxy, a, req.as_bytes(), 400);
    still_serves(a, || proxy.connections());
}

#[test]
fn malformed_framing_header_lines_are_400() {
    let p = demo();
    let (proxy, a) = (p.proxy(), p.local_addr());
    for headers in [
        // Whitespace between name and colon (RFC 9112 §5.1 requires 400).
        "Transfer-Encoding : chunked",
        "Content-Length : 0",
        // A field line starting with whitespace: obs-fold, or a hidden field.
        " Transfer-Encoding: chunked",
        "X-A: 1\r\n Transfer-Encoding: chunked",
        "X-A: 1\r\n\tTransfer-Encoding: chunked",
        "Transfer-Encoding:\r\n chunked",
        // Control characters other than HTAB around or inside the value.
        "Transfer-Encoding: \x0bchunked",
        "Transfer-Encoding: chunked\x0c",
        "Content-Length: \x0b0",
    ] {
        refused(proxy, a, &hostile(headers, "0\r\n\r\n"), 400);
    }
    still_serves(a, || proxy.connections());
}

#[test]
fn odd_content_lengths_are_400() {
    let p = demo();
    let (proxy, a) = (p.proxy(), p.local_addr());
    for v in [
        "+0",
        "-0",
        "-1",
        "0x0",
        "0x10",
        "1e1",
        "0 0",
        "0,0",
        ",0",
        "0,",
        "",
        "0.0",
        "٣",
        "1234567890123456789",
        "99999999999999999999999",
    ] {
        let req = hostile(&format!("Content-Length: {v}"), "");
        refused(proxy, a, &req, 400);
    }
    // Surrounding whitespace is optional whitespace, not part of the value: accepted.
    let mut c = Raw::open(a);
    c.send(
        initialize_request("Connection: close\r\n")
            .replace("Content-Length: ", "Content-Length:  \t")
            .as_bytes(),
    );
    let r = c.responses();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].status, 200, "{}", r[0].text());
    still_serves(a, || proxy.connections());
}

#[test]
fn control_characters_in_header_lines_are_400() {
    let p = demo();
    let (proxy, a) = (p.proxy(), p.local_addr());
    for line in [
        "X-A: a\rb",
        "X-A: a\r",
        "X-A: a\0b",
        "X-A: \x7f",
        "X-A: a\x1bb",
        "X\0A: b",
        "X-A\r: b",
        "Bad Name: x",
        ": empty name",
        "X-\u{e9}: non-ASCII name",
        "no colon at all",
        // An attempt to inject a second request line through a header value.
        "X-A: a\rPOST /mcp HTTP/1.1",
    ] {
        refused(proxy, a, &hostile(line, ""), 400);
    }
    // A bare CR ending the request line or the head.
    refused(proxy, a, b"GET /healthz HTTP/1.1\r\r\n\r\n", 400);
    refused(proxy, a, b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\r\n", 400);
    still_serves(a, || proxy.connections());
}

#[test]
fn bare_lf_line_ends_frame_exactly_like_crlf() {
    // RFC 9112 §2.2 lets a recipient accept a bare LF as a line end. The head scanner and
    // the parser agree on it, so an LF cannot hide or reveal a field: the request after it
    // is framed the same way, and answered in order.
    let p = demo();
    let (proxy, a) = (p.proxy(), p.local_addr());
    let mut c = Raw::open(a);
    c.send(b"GET /healthz HTTP/1.1\nHost: 127.0.0.1\nContent-Length: 3\n\nabcGET /healthz HTTP/1.1\r\nHost: 127.0.0.1\nConnection: close\r\n\r\n");
    let r = c.responses();
    let got: Vec<_> = r.iter().map(|r| (r.status, r.text())).collect();
    assert_eq!(got, [(200, "ok\n".into()), (200, "ok\n".into())]);
    still_serves(a, || proxy.connections());
}

#[test]
fn chunked_framing_tricks_are_refused() {
    let p = demo();
    let (proxy, a) = (p.proxy(), p.local_addr());
    let te = "Transfer-Encoding: chunked";
    for (body, status) in [
        // 18 hex digits: overflows u64 → 400; 16 digits: within u64 but over --max-body →
        // 413 at once, without reading (or allocating) the chunk.
        ("ffffffffffffffffff\r\n", 400),
        ("1ffffffffffffffff\r\n", 400),
        ("ffffffffffffffff\r\n", 413),
        ("0000000000000000000000001\r\nx\r\n0\r\n\r\n", 400),
        // Junk around the size.
        ("5x\r\nhello\r\n0\r\n\r\n", 400),
        (" 5\r\nhello\r\n0\r\n\r\n", 400),
        ("+5\r\nhello\r\n0\r\n\r\n", 400),
        ("-1\r\nx\r\n0\r\n\r\n", 400),
        ("0x5\r\nhello\r\n0\r\n\r\n", 400),
        ("\r\n", 400),
        ("5;a=\x01\r\nhello\r\n0\r\n\r\n", 400),
        // Chunk data not followed by CRLF, or a shorter chunk than announced.
        ("5\r\nhelloXX\r\n0\r\n\r\n", 400),
        ("5\r\nhel\r\n0\r\n\r\n", 400),
        // Bare LF or bare CR in chunked framing.
        ("5\nhello\n0\n\n", 400),
        ("5\r\nhello\n0\r\n\r\n", 400),
        ("5\r\r\nhello\r\n0\r\n\r\n", 400),
        ("0\r\n\n", 400),
        // Bad trailer lines: obs-fold, no colon, space before the colon, control characters.
        ("0\r\nX-T: 1\r\n folded\r\n\r\n", 400),
        ("0\r\nno colon\r\n\r\n", 400),
        ("0\r\nX-T : 1\r\n\r\n", 400),
        ("0\r\nX-T: \x00\r\n\r\n", 400),
    ] {
        refused(proxy, a, &hostile(te, body), status);
    }
    still_serves(a, || proxy.connections());
}

#[test]
fn chunk_extensions_and_trailers_are_read_and_dropped() {
    // Valid chunked framing with extensions and trailers works; trailer fields (even
    // framing ones) are discarded, never merged into the head, so the pipelined request
    // after them is framed normally.
    let p = demo();
    let (proxy, a) = (p.proxy(), p.local_addr());
    let (first, rest) = INIT.split_at(20);
    let body = format!(
        "{:x};ext=1;quoted=\"a b\"\r\n{first}\r\n{:x} ; bws\r\n{rest}\r\n0\r\n\
         Content-Length: 999\r\nTransfer-Encoding: chunked\r\nX-T:\t1\r\n\r\n",
        first.len(),
        rest.len()
    );
    let req = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nTransfer-Encoding:\tchunked\r\n\r\n{body}\
         GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    );
    let mut c = Raw::open(a);
    c.send(req.as_bytes());
    let r = c.responses();
    assert_eq!(r.len(), 2, "{r:?}");
    assert_eq!(r[0].status, 200, "{}", r[0].text());
    assert_eq!(r[0].json()["result"]["protocolVersion"], "2025-11-25");
    assert_eq!((r[1].status, r[1].text().as_str()), (200, "ok\n"));
    still_serves(a, || proxy.connections());
}

#[test]
fn odd_request_lines() {
    let p = demo();
    let (proxy, a) = (p.proxy(), p.local_addr());
    let close = "Connection: close\r\n";
    for (line, status) in [
        // Absolute-form: not a forward proxy, nothing is fetched; the path does not match.
        (format!("POST http://{a}/mcp HTTP/1.1"), 404),
        ("POST http://evil.example/mcp HTTP/1.1".to_string(), 404),
        ("CONNECT evil.example:443 HTTP/1.1".to_string(), 404),
        ("OPTIONS * HTTP/1.1".to_string(), 404),
        // Method names are case-sensitive.
        ("post /mcp HTTP/1.1".to_string(), 405),
    ] {
        let req = format!("{line}\r\nHost: 127.0.0.1\r\n{close}\r\n");
        let mut c = Raw::open(a);
        c.send(req.as_bytes());
        let r = c.responses();
        assert_eq!(r.len(), 1, "{line}");
        assert_eq!(r[0].status, status, "{line}: {}", r[0].text());
    }
    for (line, status) in [
        ("POST  /mcp HTTP/1.1", 400),
        ("POST /mcp  HTTP/1.1", 400),
        ("POST /m cp HTTP/1.1", 400),
        ("POST /mcp HTTP/1.1 x", 400),
        ("POST /mcp\tHTTP/1.1", 400),
        ("POST /mcp", 400),
        ("POST /m\0cp HTTP/1.1", 400),
        ("POST /mcp HTTX/1.1", 400),
        ("POST /mcp HTTP/2.0", 505),
        ("POST /mcp HTTP/1.2", 505),
        ("POST /mcp HTTP/0.9", 505),
    ] {
        let req = format!(
            "{line}\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\n0\r\n\r\n{}",
            initialize_request("")
        );
        refused(proxy, a, req.as_bytes(), status);
    }
    still_serves(a, || proxy.connections());
}

#[test]
fn oversized_bodies_are_413_without_reading_them() {
    let p = demo_proxy(&["--stdio-children", "1", "--max-body", "2KiB"]);
    let (proxy, a) = (p.proxy(), p.local_addr());
    // A huge declared length is refused from the head alone, at once: the layer never
    // reads (or allocates) the body, and what follows the head (here a complete
    // initialize, only part of the declared body) is never parsed as a request.
    for len in ["2049", "1000000000000", "999999999999999999"] {
        let req = format!(
            "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\nContent-Length: {len}\r\n\r\n{}",
            initialize_request("")
        );
        let started = Instant::now();
        refused(proxy, a, req.as_bytes(), 413);
        assert!(started.elapsed() < Duration::from_secs(1), "{len}");
    }
    // With Expect: 100-continue the client is told 413 instead of 100.
    let req = "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\n\
               Content-Length: 4096\r\n\r\n";
    refused(proxy, a, req.as_bytes(), 413);
    // Chunked: refused as soon as the running total would pass the limit.
    let chunk = "x".repeat(1024);
    let body = format!("400\r\n{chunk}\r\n400\r\n{chunk}\r\n1\r\nx\r\n0\r\n\r\n");
    refused(proxy, a, &hostile("Transfer-Encoding: chunked", &body), 413);
    // Exactly the limit is fine (and the metric counts the three refusals above).
    let body = format!("{INIT}{}", " ".repeat(2048 - INIT.len()));
    assert_eq!(body.len(), 2048);
    let r = post(a, None, &body);
    assert_eq!(r.status, 200, "{}", r.text());
    still_serves(a, || proxy.connections());
}

#[test]
fn upgrade_requests_are_never_switched() {
    // No protocol switch (h2c, WebSocket) is ever made, so a front proxy's rules cannot be
    // bypassed through an upgraded tunnel: the request is answered as plain HTTP/1.1, and
    // the HTTP/2 preface that follows is refused as an unsupported version.
    let p = demo();
    let (proxy, a) = (p.proxy(), p.local_addr());
    let mut c = Raw::open(a);
    c.send(
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade, HTTP2-Settings\r\n\
          Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n\
          PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    );
    let r = c.responses();
    let got: Vec<_> = r.iter().map(|r| r.status).collect();
    assert_eq!(got, [200, 505]);
    assert!(r[0].header("upgrade").is_none());
    let mut c = Raw::open(a);
    c.send(
        b"GET /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
          Accept: text/event-stream\r\n\r\n\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58\r\n\r\n",
    );
    let r = c.responses();
    let got: Vec<_> = r.iter().map(|r| r.status).collect();
    // 400: a GET without a session; then the WebSocket frame bytes (and a blank line) are
    // read as a request head, and refused.
    assert_eq!(got, [400, 400]);
    still_serves(a, || proxy.connections());
}

#[test]
fn oversized_heads_are_431() {
    let p = demo();
    let (proxy, a) = (p.proxy(), p.local_addr());
    let head = |lines: String| {
        format!("POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n{lines}Content-Length: 0\r\n\r\n")
    };
    // More header fields than the count limit (64).
    refused(proxy, a, head("X-A: 1\r\n".repeat(64)).as_bytes(), 431);
    refused(proxy, a, head("X:\r\n".repeat(200)).as_bytes(), 431);
    // One header line over the line limit (8 KiB).
    let long = format!("X-A: {}\r\n", "a".repeat(8 * 1024));
    refused(proxy, a, head(long).as_bytes(), 431);
    // A request-target over the line limit.
    let target = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(9000));
    refused(proxy, a, target.as_bytes(), 431);
    // Every line within limits, the whole head over 32 KiB.
    let big = format!("X-A: {}\r\n", "a".repeat(8000)).repeat(5);
    refused(proxy, a, head(big).as_bytes(), 431);
    // Empty lines before the request line count towards the head size.
    refused(proxy, a, "\r\n".repeat(17 * 1024).as_bytes(), 431);
    // Just under the limits is fine.
    let many = "X-A: 1\r\n".repeat(56);
    let ok = initialize_request(&format!("{many}Connection: close\r\n"));
    let mut c = Raw::open(a);
    c.send(ok.as_bytes());
    assert_eq!(c.responses()[0].status, 200);
    still_serves(a, || proxy.connections());
}

#[test]
fn deeply_nested_json_cannot_overflow_the_proxy_stack() {
    // 100,000 levels in a 200-500 KB body. The proxy parses only the envelope and keeps
    // `params` as raw text, so nothing recurses that deep (a stack overflow would abort
    // the whole process): a nested top-level array is a refused batch, nested params are
    // forwarded as they are and answered by the child, which is not restarted.
    let p = demo();
    let (proxy, a) = (p.proxy(), p.local_addr());
    let before = p.stdio_child_pids();
    let deep = 100_000;
    let nested = format!("{}{}", "[".repeat(deep), "]".repeat(deep));
    let r = post(a, None, &nested);
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], -32600, "{}", r.text());
    let object = format!("{}0{}", "{\"a\":".repeat(deep), "}".repeat(deep));
    for params in [&nested, &object] {
        let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{params}}}"#);
        let r = post(a, None, &body);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["id"], 1);
    }
    // Unbalanced nesting is a parse error.
    let r = post(
        a,
        None,
        &format!(r#"{{"jsonrpc":"2.0","id":1,"params":{}"#, "[".repeat(deep)),
    );
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_i64()),
        (400, Some(-32700))
    );
    assert_eq!(p.stdio_child_pids(), before, "the child was not restarted");
    still_serves(a, || proxy.connections());
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let p = demo();
    let (proxy, a) = (p.proxy(), p.local_addr());
    let sid = Conn::open(a).initialize();
    let ping = |id: u32, extra: &str| {
        let body = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#);
        format!(
            "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\nMcp-Session-Id: {sid}\r\n\
             MCP-Protocol-Version: 2025-11-25\r\n{extra}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let mut c = Raw::open(a);
    c.send(
        format!(
            "{}{}{}",
            ping(1, ""),
            ping(2, ""),
            ping(3, "Connection: close\r\n")
        )
        .as_bytes(),
    );
    let r = c.responses();
    let ids: Vec<_> = r
        .iter()
        .map(|r| (r.status, r.json()["id"].clone()))
        .collect();
    assert_eq!(ids, [(200, 1.into()), (200, 2.into()), (200, 3.into())]);
    // A refused request in a pipeline ends it: what follows is never parsed as a request.
    let mut c = Raw::open(a);
    c.send(
        format!(
            "{}POST /mcp HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx{}",
            ping(4, ""),
            ping(5, "")
        )
        .as_bytes(),
    );
    let r = c.responses();
    let got: Vec<_> = r.iter().map(|r| r.status).collect();
    assert_eq!(got, [200, 400]);
    assert_eq!(r[0].json()["id"], 4);
    still_serves(a, || proxy.connections());
}

#[test]
fn client_values_never_reach_response_headers() {
    // The only client-influenced values that come back are JSON strings in bodies; every
    // response header is either constant or generated (the session id). Marker strings in
    // every header a client might expect echoed must not appear in any response header.
    let p = demo();
    let (proxy, a) = (p.proxy(), p.local_addr());
    let marker = "x-injected-marker";
    let evil = format!("{marker}%0d%0aSet-Cookie:%20a=b \u{85}\u{2028}");
    let allowed = [
        "content-type",
        "content-length",
        "connection",
        "mcp-session-id",
        "cache-control",
        "x-accel-buffering",
        "transfer-encoding",
        "retry-after",
        "allow",
    ];
    let check = |r: &Resp, what: &str| {
        for (k, v) in &r.headers {
            assert!(
                allowed.contains(&k.to_ascii_lowercase().as_str()),
                "{what}: unexpected response header {k}: {v}"
            );
            assert!(
                !v.contains(marker) && !k.contains(marker),
                "{what}: {k}: {v}"
            );
        }
    };
    let sid = Conn::open(a).initialize();
    let mut c = Conn::open(a);
    // initialize with foreign values in session, version and custom headers
    let r = c.request(
        "POST",
        "/mcp",
        &[
            JSON_HEADERS[0],
            JSON_HEADERS[1],
            ("Mcp-Session-Id", &evil),
            ("X-Request-Id", &evil),
            ("Mcp-Param-Name", &evil),
        ],
        INIT.as_bytes(),
    );
    assert_eq!(r.status, 200);
    check(&r, "initialize");
    let new_sid = r.header("mcp-session-id").expect("session id");
    // `<instance>.<32 hex digits>` (issue #17): nothing of the client's text.
    let random = new_sid.rsplit('.').next().unwrap_or_default();
    assert!(
        random.len() == 32 && random.bytes().all(|b| b.is_ascii_hexdigit()),
        "{new_sid}"
    );
    assert_ne!(new_sid, sid);
    // unknown session id → 404
    let r = c.post(Some(&evil), r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#);
    assert_eq!(r.status, 404);
    check(&r, "unknown session");
    // unsupported protocol version (echoed in the JSON body only) → 400
    let r = c.request(
        "POST",
        "/mcp",
        &[
            JSON_HEADERS[0],
            JSON_HEADERS[1],
            ("Mcp-Session-Id", &sid),
            ("MCP-Protocol-Version", &evil),
        ],
        br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
    );
    assert_eq!(r.status, 400);
    check(&r, "protocol version");
    // unknown Last-Event-ID on a GET → 400
    let mut h = get_headers(&sid);
    h.push(("Last-Event-ID", &evil));
    let r = c.request("GET", "/mcp", &h, b"");
    assert_eq!(r.status, 400);
    check(&r, "last-event-id");
    // foreign Origin → 403; method not allowed → 405 with a constant Allow
    let r = c.request("POST", "/mcp", &[("Origin", &evil)], b"{}");
    assert_eq!(r.status, 403);
    check(&r, "origin");
    let r = c.request("PATCH", "/mcp", &[("Mcp-Session-Id", &evil)], b"");
    assert_eq!(r.status, 405);
    check(&r, "405");
    drop(c);
    still_serves(a, || proxy.connections());
}

#[test]
fn rebinding_look_alike_hosts_and_origins_are_403() {
    // The plain cases (evil Origin, evil Host, loopback Origin allowed) are in
    // validation::matrix; these are names that merely contain a loopback name.
    let p = demo();
    let (proxy, a) = (p.proxy(), p.local_addr());
    let init = |headers: &[(&str, &str)]| {
        let mut h = JSON_HEADERS.to_vec();
        h.extend_from_slice(headers);
        Conn::open(a)
            .request("POST", "/mcp", &h, INIT.as_bytes())
            .status
    };
    for host in [
        "localhost.evil.example",
        "127.0.0.1.nip.io",
        "evil.example:80",
        "0x7f.evil.example",
        "[::2]:8080",
    ] {
        assert_eq!(init(&[("Host", host)]), 403, "Host: {host}");
    }
    for origin in [
        "null",
        "http://localhost.evil.example",
        "http://127.0.0.1.nip.io:8080",
        "file://localhost",
        "http://localhost/evil",
        "ws://localhost",
    ] {
        assert_eq!(init(&[("Origin", origin)]), 403, "Origin: {origin}");
    }
    // GET and DELETE are checked too.
    let sid = Conn::open(a).initialize();
    let mut h = get_headers(&sid);
    h.push(("Host", "evil.example"));
    assert_eq!(Conn::open(a).request("GET", "/mcp", &h, b"").status, 403);
    let h = [
        ("Mcp-Session-Id", sid.as_str()),
        ("Origin", "http://evil.example"),
    ];
    assert_eq!(Conn::open(a).request("DELETE", "/mcp", &h, b"").status, 403);
    // Two Host fields (a loopback one to pass the check, a foreign one for a later hop) → 400.
    let req = initialize_request("Host: evil.example\r\n");
    refused(proxy, a, req.as_bytes(), 400);
    still_serves(a, || proxy.connections());
}

/// The real pipeline (a running proxy's [`Proxy`], in front of the demo server) served by
/// a second [`Server`] with short head and body timeouts, which have no flags.
struct Tight {
    server: Server,
    _proxy: Arc<Shadowcat>,
}

/// Hands requests and the layer's error answers to a running proxy's pipeline.
struct Pipeline(Arc<Shadowcat>);

impl Handler for Pipeline {
    fn handle(&self, req: Request, res: &mut Responder<'_>) {
        self.0.proxy().handle(req, res)
    }

    fn error_response(&self, status: u16, message: &str) -> Response {
        self.0.proxy().error_response(status, message)
    }
}

impl Tight {
    fn start(timeout: Duration) -> Tight {
        Tight::with(ServerConfig {
            header_timeout: timeout,
            body_timeout: timeout,
            body_deadline: Duration::from_secs(60),
            ..ServerConfig::default()
        })
    }

    fn with(config: ServerConfig) -> Tight {
        let proxy = Arc::new(demo());
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let handler = Arc::new(Pipeline(proxy.clone()));
        let server = Server::start(listener, config, handler).expect("server");
        Tight {
            server,
            _proxy: proxy,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }
}

/// Writes `bytes` one at a time, `every` apart, on its own thread, until done, a write
/// fails or the returned flag is set.
fn trickle(
    mut s: TcpStream,
    bytes: Vec<u8>,
    every: Duration,
) -> (Arc<AtomicBool>, std::thread::JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let h = std::thread::spawn(move || {
        for b in bytes {
            if flag.load(Ordering::SeqCst) || s.write_all(&[b]).is_err() {
                return;
            }
            std::thread::sleep(every);
        }
    });
    (stop, h)
}

/// Asserts a 408 with `Connection: close` then EOF, between `min` and 2 s after `started`.
fn timed_out(c: &mut Raw, started: Instant, min: Duration) {
    let r = c.responses();
    let took = started.elapsed();
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].status, 408, "{}", r[0].text());
    assert_eq!(r[0].header("connection"), Some("close"));
    assert!(took >= min && took < Duration::from_secs(2), "{took:?}");
}

const TIGHT: Duration = Duration::from_millis(300);
/// Least time before a 408 (the server's timer may start a moment before the test's).
const MIN_WAIT: Duration = Duration::from_millis(250);

#[test]
fn slowloris_head_gets_408_and_is_closed() {
    let t = Tight::start(TIGHT);
    // Every byte arrives well within the timeout, but the head as a whole does not: the
    // head deadline runs from its first byte, so trickling cannot extend it.
    let mut c = Raw::open(t.addr());
    let started = Instant::now();
    let head = initialize_request("").into_bytes();
    let (stop, h) = trickle(
        c.0.try_clone().expect("clone"),
        head,
        Duration::from_millis(20),
    );
    timed_out(&mut c, started, MIN_WAIT);
    stop.store(true, Ordering::SeqCst);
    h.join().expect("trickler");
    // The same with one byte sent and then silence.
    let mut c = Raw::open(t.addr());
    let started = Instant::now();
    c.send(b"P");
    timed_out(&mut c, started, MIN_WAIT);
    drop(c);
    still_serves(t.addr(), || t.server.stats().connections);
}

#[test]
fn slow_bodies_get_408_and_are_closed() {
    let t = Tight::start(TIGHT);
    let a = t.addr();
    let req = initialize_request("");
    let split = req.len() - INIT.len() + 10;
    // A body that stops arriving.
    let mut c = Raw::open(a);
    c.send(&req.as_bytes()[..split]);
    let started = Instant::now();
    timed_out(&mut c, started, MIN_WAIT);
    // A body trickled slower than one byte per body timeout.
    let mut c = Raw::open(a);
    c.send(&req.as_bytes()[..split]);
    let started = Instant::now();
    let (stop, h) = trickle(
        c.0.try_clone().expect("clone"),
        req.as_bytes()[split..].to_vec(),
        Duration::from_millis(500),
    );
    timed_out(&mut c, started, MIN_WAIT);
    stop.store(true, Ordering::SeqCst);
    h.join().expect("trickler");
    // A chunked body that stops inside a chunk-size line, and inside a chunk.
    for tail in ["1", "5\r\nab"] {
        let mut c = Raw::open(a);
        let head = format!(
            "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n{tail}"
        );
        c.send(head.as_bytes());
        let started = Instant::now();
        timed_out(&mut c, started, MIN_WAIT);
    }
    still_serves(a, || t.server.stats().connections);
}

/// Issue 7: a body trickled just inside the per-read timeout still has a whole-body
/// deadline, so it cannot hold a connection thread for as long as it likes.
#[test]
fn body_trickled_inside_the_read_timeout_meets_the_body_deadline() {
    let t = Tight::with(ServerConfig {
        body_timeout: Duration::from_secs(5),
        body_deadline: TIGHT,
        ..ServerConfig::default()
    });
    let a = t.addr();
    let req = initialize_request("");
    let split = req.len() - INIT.len();
    let mut c = Raw::open(a);
    c.send(&req.as_bytes()[..split]);
    let started = Instant::now();
    let (stop, h) = trickle(
        c.0.try_clone().expect("clone"),
        req.as_bytes()[split..].to_vec(),
        Duration::from_millis(20),
    );
    timed_out(&mut c, started, MIN_WAIT);
    stop.store(true, Ordering::SeqCst);
    h.join().expect("trickler");
    still_serves(a, || t.server.stats().connections);
}

#[test]
fn slow_and_idle_clients_hold_no_worker() {
    // One worker: clients stuck mid-head, mid-body and idle hold only their own connection
    // thread, so a normal request is still answered at once.
    let p = demo_proxy(&["--stdio-children", "1", "--workers", "1"]);
    let (proxy, a) = (p.proxy(), p.local_addr());
    let req = initialize_request("");
    let mut stuck = Vec::new();
    for part in [
        &req.as_bytes()[..20],
        &req.as_bytes()[..req.len() - 10],
        b"",
    ] {
        let mut c = Raw::open(a);
        c.send(part);
        stuck.push(c);
    }
    std::thread::sleep(Duration::from_millis(50));
    let started = Instant::now();
    let r = post(a, None, INIT);
    assert_eq!(r.status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    drop(stuck);
    still_serves(a, || proxy.connections());
}

#[test]
fn child_output_flood_is_skipped() {
    // 20,000 non-JSON lines from the child in one burst: skipped line by line, the child is
    // not restarted and keeps answering.
    let p = demo();
    let (proxy, a) = (p.proxy(), p.local_addr());
    let mut c = Conn::open(a);
    let sid = c.initialize();
    let before = p.stdio_child_pids();
    let call = |c: &mut Conn, id: u32, name: &str, args: &str| {
        c.post(
            Some(&sid),
            &format!(
                r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{name}","arguments":{args}}}}}"#
            ),
        )
    };
    let r = call(&mut c, 1, "garbage", r#"{"lines":20000}"#);
    assert_eq!(
        r.messages().pop().unwrap()["result"]["content"][0]["text"],
        "garbage sent"
    );
    let r = call(&mut c, 2, "echo", r#"{"message":"after the flood"}"#);
    assert_eq!(
        r.messages().pop().unwrap()["result"]["content"][0]["text"],
        "Echo: after the flood"
    );
    assert_eq!(p.stdio_child_pids(), before, "no restart for garbage");
    drop(c);
    still_serves(a, || proxy.connections());
}
