//! The client side: a small keep-alive HTTP/1.1 client over raw sockets or TLS ([`Conn`], [`Resp`]),
//! an SSE reader ([`SseConn`]), and the MCP request helpers built on them (`post`, `post_with`,
//! `get`, `open_get`, the session headers).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The JSON body; for an SSE answer (the proxy streams whatever takes longer than its
    /// short wait, which a loaded machine can cause for any call), its last message, which is
    /// the response. Tests about the answer's form check `content-type` themselves.
    pub fn json(&self) -> Value {
        if self
            .header("content-type")
            .is_some_and(|c| c.starts_with("text/event-stream"))
            && let Some(last) = sse_data(&self.body).into_iter().rfind(|d| !d.is_empty())
        {
            return serde_json::from_str(&last)
                .unwrap_or_else(|e| panic!("last event is not JSON ({e}): {last:?}"));
        }
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// JSON-RPC messages in an SSE body (or the one JSON body).
    pub fn messages(&self) -> Vec<Value> {
        if self
            .header("content-type")
            .is_some_and(|c| c.starts_with("text/event-stream"))
        {
            sse_data(&self.body)
                .into_iter()
                .filter(|d| !d.is_empty())
                .map(|d| serde_json::from_str(&d).expect("event data is JSON"))
                .collect()
        } else {
            vec![self.json()]
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The `data:` payloads of an SSE body, one per event.
pub fn sse_data(body: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(body);
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    for line in text.split('\n') {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            if let Some(d) = cur.take() {
                out.push(d);
            }
        } else if let Some(rest) = line.strip_prefix("data:") {
            let rest = rest.strip_prefix(' ').unwrap_or(rest);
            match &mut cur {
                Some(d) => {
                    d.push('\n');
                    d.push_str(rest);
                }
                None => cur = Some(rest.to_string()),
            }
        }
    }
    out
}

/// What a [`Conn`] talks over: a plain socket or a TLS session on one (`support/tls.rs`).
pub trait Wire: Read + Write + Send {
    fn socket(&self) -> &TcpStream;
    /// The server's certificate (DER), on TLS.
    fn peer_cert(&self) -> Option<Vec<u8>> {
        None
    }
}

impl Wire for TcpStream {
    fn socket(&self) -> &TcpStream {
        self
    }
}

/// A keep-alive client connection.
pub struct Conn {
    r: BufReader<Box<dyn Wire>>,
    pub addr: SocketAddr,
}

impl Conn {
    pub fn open(addr: SocketAddr) -> Conn {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30))).ok();
        s.set_nodelay(true).ok();
        Conn::over(addr, Box::new(s))
    }

    /// A connection over an already connected stream.
    pub fn over(addr: SocketAddr, wire: Box<dyn Wire>) -> Conn {
        Conn {
            r: BufReader::new(wire),
            addr,
        }
    }

    /// The stream underneath (e.g. to look at the TLS session).
    pub fn wire(&self) -> &dyn Wire {
        self.r.get_ref().as_ref()
    }

    /// Sends raw bytes.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.r.get_mut().write_all(bytes).expect("write");
    }

    /// Sends a request with Host and Content-Length added.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Resp {
        let mut head = format!("{method} {path} HTTP/1.1\r\n");
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            head.push_str(&format!("Host: {}\r\n", self.addr));
        }
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body);
        self.send_raw(&bytes);
        self.read_response().expect("a response")
    }

    /// Reads one response (Content-Length, chunked, or until close).
    pub fn read_response(&mut self) -> Option<Resp> {
        let mut line = String::new();
        if self.r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let status: u16 = line.split_whitespace().nth(1)?.parse().ok()?;
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            self.r.read_line(&mut h).ok()?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':')?;
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
        let get = |n: &str| {
            headers
                .iter()
                .find(|(k, _): &&(String, String)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.clone())
        };
        let mut body = Vec::new();
        if status == 100 {
            return self.read_response();
        }
        if get("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
            loop {
                let mut size = String::new();
                self.r.read_line(&mut size).ok()?;
                let n = usize::from_str_radix(size.trim(), 16).ok()?;
                let mut chunk = vec![0; n + 2];
                self.r.read_exact(&mut chunk).ok()?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        } else if let Some(n) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
            body.resize(n, 0);
            self.r.read_exact(&mut body).ok()?;
        } else if status != 204 && status != 304 && !(100..200).contains(&status) {
            self.r.read_to_end(&mut body).ok()?;
        }
        Some(Resp {
            status,
            headers,
            body,
        })
    }

    /// True when the server closed the connection (read returns EOF within `wait`).
    pub fn is_closed(&mut self, wait: Duration) -> bool {
        self.r.get_ref().socket().set_read_timeout(Some(wait)).ok();
        let mut b = [0u8; 1];
        matches!(self.r.read(&mut b), Ok(0) | Err(_))
    }

    /// POSTs a JSON-RPC body on this connection.
    pub fn post(&mut self, session: Option<&str>, body: &str) -> Resp {
        self.request("POST", "/mcp", &post_headers(session), body.as_bytes())
    }

    /// initialize + notifications/initialized; returns the session id.
    pub fn initialize(&mut self) -> String {
        let r = self.post(None, INIT);
        assert_eq!(r.status, 200, "initialize: {}", r.text());
        let sid = r.header("mcp-session-id").expect("session id").to_string();
        let n = self.post(
            Some(&sid),
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        );
        assert_eq!(n.status, 202);
        sid
    }
}

/// The 8 characters of a session id the access log and the admin API show: the start of its
/// random part (after `<instance>.`, issue #17).
pub fn short_sid(sid: &str) -> &str {
    let random = sid.split_once('.').map_or(sid, |(_, r)| r);
    &random[..8.min(random.len())]
}

/// MCP POST headers.
pub const JSON_HEADERS: [(&str, &str); 2] = [
    ("Content-Type", "application/json"),
    ("Accept", "application/json, text/event-stream"),
];

/// A 2025-11-25 initialize request.
pub const INIT: &str = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"it","version":"1"}}}"#;

/// POSTs a JSON-RPC body within a session (if any) on a new connection.
pub fn post(addr: SocketAddr, session: Option<&str>, body: &str) -> Resp {
    Conn::open(addr).post(session, body)
}

/// Like [`post`], with `extra` headers (e.g. `Authorization`, `X-Forwarded-For`).
pub fn post_with(addr: SocketAddr, extra: &[(&str, &str)], sid: Option<&str>, body: &str) -> Resp {
    let mut h = post_headers(sid);
    h.extend_from_slice(extra);
    Conn::open(addr).request("POST", "/mcp", &h, body.as_bytes())
}

/// A GET on a new connection.
pub fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Resp {
    Conn::open(addr).request("GET", path, headers, b"")
}

/// Headers of a POST, within session `sid` if given.
fn post_headers(sid: Option<&str>) -> Vec<(&str, &str)> {
    match sid {
        Some(s) => session_headers(s),
        None => JSON_HEADERS.to_vec(),
    }
}

/// Headers of a request within session `sid`.
pub fn session_headers(sid: &str) -> Vec<(&str, &str)> {
    let mut h: Vec<(&str, &str)> = JSON_HEADERS.to_vec();
    h.push(("Mcp-Session-Id", sid));
    h.push(("MCP-Protocol-Version", "2025-11-25"));
    h
}

/// Headers of a GET within session `sid` (no Content-Type).
pub fn get_headers(sid: &str) -> Vec<(&str, &str)> {
    let mut h = session_headers(sid);
    h.retain(|(k, _)| *k != "Content-Type");
    h
}

/// One SSE event as read off the wire.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub id: Option<String>,
    pub data: String,
}

impl SseEvent {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or(Value::Null)
    }
}

/// A streaming response read event by event (chunked transfer decoded on the fly).
pub struct SseConn {
    r: BufReader<TcpStream>,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    buf: String,
    done: bool,
}

impl SseConn {
    /// Sends a request and reads the response head.
    pub fn open(addr: SocketAddr, method: &str, headers: &[(&str, &str)], body: &[u8]) -> SseConn {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20))).ok();
        let mut head = format!("{method} /mcp HTTP/1.1\r\nHost: {addr}\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let mut w = s.try_clone().unwrap();
        w.write_all(head.as_bytes()).unwrap();
        w.write_all(body).unwrap();
        let mut r = BufReader::new(s);
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        let status = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            r.read_line(&mut h).unwrap();
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').unwrap();
            headers.push((k.trim().to_lowercase(), v.trim().to_string()));
        }
        SseConn {
            r,
            status,
            headers,
            buf: String::new(),
            done: false,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Sets the read timeout (a read that times out ends [`SseConn::next_event`] with None).
    pub fn r_timeout(&mut self, d: Duration) {
        self.r.get_ref().set_read_timeout(Some(d)).ok();
    }

    /// The next event with data or an id (comments skipped); `None` at the end of the body.
    pub fn next_event(&mut self) -> Option<SseEvent> {
        loop {
            while let Some(at) = self.buf.find("\n\n") {
                let block: String = self.buf[..at].to_string();
                self.buf.drain(..at + 2);
                let mut id = None;
                let mut data: Option<String> = None;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        let v = v.strip_prefix(' ').unwrap_or(v);
                        match &mut data {
                            Some(d) => {
                                d.push('\n');
                                d.push_str(v);
                            }
                            None => data = Some(v.to_string()),
                        }
                    }
                }
                if id.is_some() || data.is_some() {
                    return Some(SseEvent {
                        id,
                        data: data.unwrap_or_default(),
                    });
                }
            }
            if self.done {
                return None;
            }
            let mut size = String::new();
            if self.r.read_line(&mut size).ok()? == 0 {
                self.done = true;
                continue;
            }
            let n = usize::from_str_radix(size.trim(), 16).ok()?;
            let mut chunk = vec![0; n + 2];
            self.r.read_exact(&mut chunk).ok()?;
            if n == 0 {
                self.done = true;
                continue;
            }
            self.buf.push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
    }

    /// The whole body of a response that is not a stream (`Content-Length`).
    pub fn read_body(&mut self) -> Vec<u8> {
        let n: usize = self
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; n];
        self.r.read_exact(&mut body).expect("body");
        body
    }

    /// Reads events until one holds a JSON-RPC response (or the stream ends).
    pub fn until_response(&mut self) -> Vec<SseEvent> {
        let mut out = Vec::new();
        while let Some(ev) = self.next_event() {
            let is_response = ev.json().get("result").is_some() || ev.json().get("error").is_some();
            out.push(ev);
            if is_response {
                break;
            }
        }
        out
    }
}

/// Opens session `sid`'s standalone stream (`GET /mcp`).
pub fn open_get(addr: SocketAddr, sid: &str) -> SseConn {
    SseConn::open(addr, "GET", &get_headers(sid), b"")
}
