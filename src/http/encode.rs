//! HTTP/1.1 response encoding: [`Response`], response heads (status line, headers, framing),
//! reason phrases and header validity.
//!
//! Response header names must be tokens and values free of CR, LF and NUL
//! ([`valid_header`]), so that no value can add a header or end the head early; the framing
//! headers (`Content-Length`, `Transfer-Encoding`, `Connection`, ...) are always written by
//! this layer, and a handler's copies are dropped.

use std::io::Write;

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
pub(super) fn is_tchar(b: u8) -> bool {
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

#[cfg(test)]
mod tests;
