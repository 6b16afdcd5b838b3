//! The request a [`Handler`](crate::http::Handler) is given: [`Request`] and its [`Version`].
//!
//! Built by the parser (`parse.rs`) once head and body are complete; the body is already
//! decoded, so nothing here knows about framing.

use std::net::SocketAddr;
use std::sync::Arc;

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
    /// The subject of the client certificate the TLS handshake verified (mTLS, `--tls-client-ca`):
    /// its common name, else its first subject alternative name. `None` on plain connections
    /// and when no client certificate is asked for.
    pub client_cert: Option<Arc<str>>,
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
