//! The HTTP/1.1 head parser, body framing and header checks.

use std::net::{IpAddr, SocketAddr};

use super::fnv;
use crate::http::{self, BodyFraming, ConnHeader, Framing, HeadScan, ReadError, Request, Version};
use crate::proxy;

/// `--max-body` for the framing checks (the default).
const MAX_BODY: usize = 4 * 1024 * 1024;

/// The HTTP request-head layer and the header, `Origin` and `Host` checks.
///
/// The whole input is a request head; each of its lines is also tried on its own as an
/// `Origin` value, a `Host` value, a chunk-size line and a `name: value` response header.
///
/// Invariants:
/// * the head scanner ([`HeadScan`]) finds the same end (or the same error) whether the head
///   arrives in one piece or two;
/// * a parsed head ([`http::parse_head`]) has a token method, HTTP/1.0 or 1.1, and only
///   headers the proxy could write back ([`http::valid_header`]: no CR, LF or NUL);
/// * [`http::body_framing`] picks a length only from exactly one all-digit `Content-Length`
///   within `max_body` and no `Transfer-Encoding`, chunked only from exactly one
///   `Transfer-Encoding: chunked` on HTTP/1.1 and no `Content-Length`, and refuses with 400
///   or 413 otherwise; [`http::expects_continue`] answers `true`, `false` or 417;
/// * a header [`http::valid_header`] accepts has no CR, LF or NUL in its value and cannot
///   add a line to a response head ([`http::encode_head`]);
/// * [`http::body_framing`] refuses (400) an HTTP/1.1 head without exactly one `Host`;
/// * an `Origin` accepted as loopback ([`http::origin::loopback_origin`], after the normalisation
///   of the pipeline) is `http` or `https`, a URI parser (the `http` crate's) understands it,
///   and it names `localhost`, `127.0.0.0/8` or `::1`; likewise a `Host` accepted by
///   [`http::origin::is_loopback_host`] (as an authority); and whatever
///   [`http::origin::parse_authority`] accepts is `host[:port]` with nothing after a `]` and
///   no `@`;
/// * an accepted chunk-size line is 1–16 hex digits (the size) then nothing or `;` and
///   extensions, and the size written in hex parses back to itself;
/// * content-type matching ([`proxy::media_is`]) agrees with `Accept` matching
///   ([`proxy::accepts`]).
pub fn headers(data: &[u8]) {
    let h = fnv(data);
    head(data, (h % (data.len() as u64 + 1)) as usize);
    for raw in data.split(|&b| b == b'\n') {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        chunk_size(line);
        let text = String::from_utf8_lossy(line);
        origin(&text);
        host(&text);
        match text.split_once(':') {
            Some((name, value)) => header(name, value.trim_start()),
            None => header("X-Fuzz", &text),
        }
    }
}

fn head(data: &[u8], cut: usize) {
    let whole = HeadScan::default().scan(data);
    let mut scan = HeadScan::default();
    let split = match scan.scan(&data[..cut]) {
        Ok(None) => scan.scan(data),
        other => other,
    };
    assert_eq!(whole, split, "splitting the head at {cut} changed the scan");
    let Ok(Some(end)) = whole else { return };
    let remote: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 40000));
    let req = match http::parse_head(&data[..end], remote) {
        Ok(r) => r,
        Err(ReadError::Reject(status, _)) => {
            assert!(
                matches!(status, 400 | 431 | 505),
                "head refused with {status}"
            );
            return;
        }
        Err(ReadError::Closed) => panic!("parsing a head cannot close the connection"),
    };
    assert!(!req.method.is_empty() && http::valid_header(&req.method, ""));
    assert!(matches!(req.version, Version::Http10 | Version::Http11));
    for (n, v) in &req.headers {
        assert!(
            http::valid_header(n, v),
            "parsed header {n:?}: {v:?} is invalid"
        );
    }
    framing(&req);
    match http::expects_continue(&req) {
        Ok(_) | Err(ReadError::Reject(417, _)) => {}
        Err(e) => panic!("expects_continue: {e:?}"),
    }
    if let Some(o) = req.header("origin") {
        origin(o);
    }
    if let Some(h) = req.header("host") {
        host(h);
    }
    for want in ["application/json", "text/event-stream"] {
        if req.header_all("accept").any(|v| proxy::media_is(v, want)) {
            assert!(proxy::accepts(&req, want), "Accept: {want} not seen");
        }
        if let Some(ct) = req.header("content-type") {
            let _ = proxy::media_is(ct, want);
        }
    }
}

fn framing(req: &Request) {
    let cl: Vec<&str> = req.header_all("content-length").collect();
    let te: Vec<&str> = req.header_all("transfer-encoding").collect();
    let hosts = req.header_all("host").count();
    match http::body_framing(req, MAX_BODY) {
        Ok(f) => {
            assert!(hosts <= 1, "more than one Host accepted");
            assert!(
                hosts == 1 || req.version == Version::Http10,
                "HTTP/1.1 without Host accepted"
            );
            match f {
                BodyFraming::None => assert!(cl.is_empty() && te.is_empty()),
                BodyFraming::Length(n) => {
                    assert!(te.is_empty() && cl.len() == 1 && n <= MAX_BODY);
                    let v = cl[0].trim_matches([' ', '\t']);
                    assert!(v.bytes().all(|b| b.is_ascii_digit()));
                    assert_eq!(v.parse::<usize>().ok(), Some(n));
                }
                BodyFraming::Chunked => {
                    assert!(cl.is_empty() && te.len() == 1 && req.version == Version::Http11);
                    assert!(
                        te[0]
                            .trim_matches([' ', '\t'])
                            .eq_ignore_ascii_case("chunked")
                    );
                }
            }
        }
        Err(ReadError::Reject(400 | 413, _)) => {}
        Err(e) => panic!("body_framing: {e:?}"),
    }
}

fn header(name: &str, value: &str) {
    if !http::valid_header(name, value) {
        return;
    }
    assert!(
        !value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0),
        "header value {value:?} accepted"
    );
    let mut out = Vec::new();
    let headers = [(name.to_owned(), value.to_owned())];
    http::encode_head(
        &mut out,
        200,
        &headers,
        Framing::Length(0),
        ConnHeader::None,
    )
    .expect("a valid header encodes");
    // Status line, the header (unless a framing header the layer drops), Content-Length.
    let lines = out.split(|&b| b == b'\n').count() - 1;
    let dropped = http::is_framing_header(name);
    assert_eq!(
        lines,
        if dropped { 3 } else { 4 },
        "header {name:?} split the head"
    );
    assert_eq!(
        out.iter().filter(|&&b| b == b'\r').count(),
        lines,
        "a CR outside a CRLF"
    );
}

fn origin(raw: &str) {
    // Normalised as `Proxy::check_origin` does before the loopback test.
    let o = http::origin::normalize_origin(raw);
    if !http::origin::loopback_origin(&o) {
        return;
    }
    assert!(o.starts_with("http://") || o.starts_with("https://"));
    let named = o
        .parse::<ureq::http::Uri>()
        .ok()
        .filter(|u| u.path_and_query().is_none_or(|p| p.as_str() == "/"))
        .and_then(|u| u.host().map(loopback_name));
    assert_eq!(named, Some(true), "{o:?} accepted as a loopback origin");
}

fn host(raw: &str) {
    if let Some(h) = http::origin::parse_authority(raw) {
        let a = raw.trim_matches([' ', '\t']);
        assert!(!a.contains('@'), "userinfo in {raw:?} accepted");
        if let Some(i) = a.find(']') {
            let after = &a[i + 1..];
            assert!(
                after.is_empty() || after.starts_with(':'),
                "{raw:?}: bytes after ']' accepted"
            );
        }
        let port = a.rsplit_once(']').map_or(a, |(_, p)| p);
        assert!(
            port.matches(':').count() <= 1,
            "{raw:?}: two ports accepted"
        );
        assert_eq!(
            h.is_loopback(),
            http::origin::is_loopback_host(raw),
            "{raw:?}"
        );
    }
    if !http::origin::is_loopback_host(raw) {
        return;
    }
    let named = raw
        .trim_matches([' ', '\t'])
        .parse::<ureq::http::uri::Authority>()
        .ok()
        .map(|a| loopback_name(a.host()));
    assert_eq!(named, Some(true), "{raw:?} accepted as a loopback host");
}

/// The oracle: `localhost` or a loopback address (IPv6 in brackets or not).
fn loopback_name(host: &str) -> bool {
    let h = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    h.eq_ignore_ascii_case("localhost") || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn chunk_size(line: &[u8]) {
    let Ok(n) = http::parse_chunk_size(line) else {
        return;
    };
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    assert!((1..=16).contains(&digits), "{digits} hex digits accepted");
    let hex = String::from_utf8_lossy(&line[..digits]);
    assert_eq!(u64::from_str_radix(&hex, 16).ok(), Some(n));
    let rest = &line[digits..];
    let ext = rest.iter().position(|&b| b != b' ' && b != b'\t');
    assert!(ext.is_none_or(|i| rest[i] == b';'), "junk after the size");
    assert!(!line.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0));
    assert_eq!(
        http::parse_chunk_size(format!("{n:x}").as_bytes()).ok(),
        Some(n)
    );
}
