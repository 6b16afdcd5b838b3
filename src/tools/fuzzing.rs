//! Fuzz entry points. Not an API: each function takes arbitrary bytes, drives the production
//! code on them and checks invariants with `assert!`, so a violated invariant is a crash.
//!
//! The cargo-fuzz targets in `fuzz/fuzz_targets/` call these (`scripts/fuzz` runs them) and
//! `tests/it/fuzz_corpus.rs` replays the committed corpus (`fuzz/corpus/<target>/`) on stable.
//! Everything here is deterministic: where a parameter is needed (a call id, where to split a
//! stream), it is derived from a hash of the input.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::net::{IpAddr, SocketAddr};

use serde_json::value::RawValue;

use crate::error::Error;
use crate::http::{self, BodyFraming, ConnHeader, Framing, HeadScan, ReadError, Request, Version};
use crate::jsonrpc::{self, Kind, Message};
use crate::proxy;
use crate::stream;
use crate::upstream::http::{RawEvent, read_sse_event};
use crate::upstream::stdio::child;

/// `--max-body` for the framing checks (the default).
const MAX_BODY: usize = 4 * 1024 * 1024;

/// The JSON-RPC envelope parser and the stdio id rewrite/restore path, on one message.
///
/// Invariants:
/// * [`Message::parse`] never panics; it fails only with [`Error::Parse`] (-32700) or
///   [`Error::InvalidMessage`] (-32600), and always with -32700 when the bytes are not JSON;
///   the error reply for either is a JSON-RPC error object with the error's code and message;
/// * a parsed message is a JSON object with a valid kind and a string or number id, and
///   serialising it gives the same message back (same kind, method, byte-identical id,
///   params, result and error); replies built around its id keep that id byte for byte;
/// * a request sent to a stdio child ([`child::rewrite_ids`], [`child::line`]) reaches it as
///   exactly one line carrying the child-unique call id, the same method, `_meta.progressToken`
///   rewritten to the call id when there was one, and every other params member unchanged
///   (up to JSON whitespace); the child's response, once its id is restored, carries the
///   client's id byte for byte; a progress notification for the call, once
///   [`child::restore_progress_token`] ran, carries the client's token (up to whitespace).
pub fn jsonrpc(data: &[u8]) {
    let valid_json = serde_json::from_slice::<serde::de::IgnoredAny>(data).is_ok();
    let msg = match Message::parse(data) {
        Ok(m) => m,
        Err(e) => {
            assert!(
                matches!(e, Error::Parse(_) | Error::InvalidMessage(_)),
                "unexpected error {e:?}"
            );
            assert!(
                valid_json || matches!(e, Error::Parse(_)),
                "bytes that are not JSON must get -32700, not {e}"
            );
            let reply: serde_json::Value = serde_json::from_slice(&jsonrpc::error_for(None, &e))
                .expect("an error reply is JSON");
            assert_eq!(reply["jsonrpc"], "2.0");
            assert!(reply["id"].is_null());
            assert_eq!(reply["error"]["code"], e.rpc_code());
            assert_eq!(reply["error"]["message"], e.to_string());
            return;
        }
    };
    assert!(valid_json, "parsed bytes that are not JSON");
    assert_eq!(
        data.iter().find(|b| !b.is_ascii_whitespace()),
        Some(&b'{'),
        "only a JSON object is a message"
    );
    let kind = msg.kind().expect("a parsed message has a kind");
    if let Some(id) = msg.id.as_deref() {
        let t = id.get().as_bytes().first().copied();
        assert!(
            matches!(t, Some(b'"' | b'-' | b'0'..=b'9')),
            "id {:?} is not a string or a number",
            id.get()
        );
        // Replies built around the id keep it byte for byte.
        let text = String::from_utf8_lossy(data);
        for body in [
            jsonrpc::error_body(Some(id), -32603, &text),
            jsonrpc::result_body(id, r#"{"ok":true}"#),
        ] {
            let r = Message::parse(&body).expect("a reply parses");
            assert_eq!(r.kind().ok(), Some(Kind::Response));
            assert_eq!(r.id.as_deref().map(RawValue::get), Some(id.get()));
        }
    }
    let again = Message::parse(&msg.to_vec()).expect("a serialised message parses");
    assert_eq!(again.kind().ok(), Some(kind));
    assert_eq!(again.method, msg.method);
    for (a, b) in [
        (&again.id, &msg.id),
        (&again.params, &msg.params),
        (&again.result, &msg.result),
        (&again.error, &msg.error),
    ] {
        assert_eq!(
            a.as_deref().map(RawValue::get),
            b.as_deref().map(RawValue::get)
        );
    }
    let _ = msg.modern_version();
    let _ = msg.target_name();
    match kind {
        Kind::Request => stdio_round_trip(msg, fnv(data)),
        Kind::Notification => {
            let _ = child::progress_token_id(&msg);
        }
        Kind::Response => {}
    }
}

/// A request's trip to a stdio child as call `n` and its response's trip back.
fn stdio_round_trip(mut msg: Message, n: u64) {
    let client_id = msg
        .id
        .as_deref()
        .map(|i| i.get().to_owned())
        .expect("a request has an id");
    let members_before = members(msg.params.as_deref().map(RawValue::get));
    let meta_before = members(members_before.get("_meta").map(String::as_str));
    let token_before = meta_before.get("progressToken").cloned();

    let (saved_id, saved_token) = child::rewrite_ids(&mut msg, n);
    assert_eq!(saved_id.get(), client_id);
    if let Some(t) = &saved_token {
        assert_eq!(
            Some(squeeze(t.get())),
            token_before.as_deref().map(squeeze),
            "the saved progress token is not the client's"
        );
    }

    // What the child reads: one line.
    let line = child::line(&msg);
    assert_eq!(line.last(), Some(&b'\n'));
    assert!(
        !line[..line.len() - 1].contains(&b'\n'),
        "a request must reach a stdio child as one line: {:?}",
        String::from_utf8_lossy(&line)
    );
    let seen =
        Message::parse(crate::util::trim_line(&line)).expect("the child can parse the request");
    assert_eq!(seen.kind().ok(), Some(Kind::Request));
    assert_eq!(seen.method, msg.method);
    assert_eq!(seen.id.as_deref().and_then(jsonrpc::id_u64), Some(n));
    let members_after = members(seen.params.as_deref().map(RawValue::get));
    let meta_after = members(members_after.get("_meta").map(String::as_str));
    for (before, after) in [
        (&members_before, &members_after),
        (&meta_before, &meta_after),
    ] {
        for (k, v) in before {
            if k == "_meta" || (k == "progressToken" && saved_token.is_some()) {
                continue;
            }
            assert_eq!(
                after.get(k).map(|a| squeeze(a)),
                Some(squeeze(v)),
                "params member {k:?} changed on the way to the child"
            );
        }
    }
    if saved_token.is_some() {
        assert_eq!(
            meta_after.get("progressToken").map(String::as_str),
            Some(n.to_string().as_str()),
            "the child must see the call id as progress token"
        );
    }

    // The child answers; its reader puts the client's id back (as `child::route` does).
    let reply = jsonrpc::result_body(seen.id.as_deref().expect("id"), r#"{"ok":true}"#);
    let mut back = Message::parse(crate::util::trim_line(&reply)).expect("the response parses");
    assert_eq!(back.kind().ok(), Some(Kind::Response));
    assert_eq!(back.id.as_deref().and_then(jsonrpc::id_u64), Some(n));
    back.id = Some(saved_id);
    let out = Message::parse(&back.to_vec()).expect("the restored response parses");
    assert_eq!(
        out.id.as_deref().map(RawValue::get),
        Some(client_id.as_str()),
        "the client's id must come back byte for byte"
    );

    // The child reports progress with the call id as token; the client gets its own token.
    if let Some(token) = saved_token {
        let note = format!(
            r#"{{"jsonrpc":"2.0","method":"notifications/progress","params":{{"progressToken":{n},"progress":1,"total":2}}}}"#
        );
        let mut note = Message::parse(note.as_bytes()).expect("progress parses");
        assert_eq!(child::progress_token_id(&note), Some(n));
        child::restore_progress_token(&mut note, &token);
        let out = Message::parse(&note.to_vec()).expect("restored progress parses");
        let restored = members(out.params.as_deref().map(RawValue::get));
        assert_eq!(
            restored.get("progressToken").map(|t| squeeze(t)),
            token_before.as_deref().map(squeeze),
            "the client's progress token must come back"
        );
    }
}

/// The members of a JSON object as raw text (empty if `raw` is not an object).
fn members(raw: Option<&str>) -> BTreeMap<String, String> {
    raw.and_then(|r| serde_json::from_str::<crate::jsonrpc::RawObject>(r).ok())
        .map(|m| {
            m.into_iter()
                .map(|(k, v)| (k, v.get().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// Valid JSON text without the whitespace between tokens.
fn squeeze(json: &str) -> String {
    let (mut out, mut in_string, mut escaped) = (String::with_capacity(json.len()), false, false);
    for c in json.chars() {
        if in_string {
            out.push(c);
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            in_string = c == '"';
            out.push(c);
        }
    }
    out
}

/// The SSE parser that reads upstream streams ([`read_sse_event`]) and the proxy's framing.
///
/// Invariants:
/// * the parser never panics, and yields the same events (and the same error, if any) whether
///   the stream arrives in one piece or in pieces of arbitrary sizes;
/// * no event's data is larger than the parser's bound (derived from the input), and an
///   event's id never contains a line break;
/// * an event's data re-framed by the proxy under its own id ([`stream::frame`]) parses back
///   as exactly that id and data and nothing else (unless the data holds a CR, which framing
///   drops), so upstream data can never inject SSE fields or events into a client stream;
/// * [`stream::parse_event_id`] on any id never panics and round-trips what it accepts.
pub fn sse(data: &[u8]) {
    let h = fnv(data);
    let max = 32 + (h % 2048) as usize;
    let whole = events(data, max);
    let pieces = Pieces { data, state: h | 1 };
    let split = events(
        BufReader::with_capacity(1 + (h >> 16) as usize % 64, pieces),
        max,
    );
    assert_eq!(whole, split, "splitting the stream changed its events");
    for (id, data) in &whole.0 {
        assert!(data.len() <= max, "an event of {} bytes passed", data.len());
        if let Some(id) = id {
            assert!(!id.contains('\n'), "event id {id:?} holds a line break");
            if let Some((s, n)) = stream::parse_event_id(id) {
                assert_eq!(stream::parse_event_id(&format!("{s}-{n}")), Some((s, n)));
            }
        }
        if data.contains(&b'\r') {
            continue;
        }
        let own = format!("{}-{}", h >> 48, h & 0xffff);
        for id in [Some(own.as_str()), id.as_deref(), None] {
            let framed = stream::frame(id, data);
            let (got, err) = events(&framed[..], usize::MAX);
            assert_eq!(err, None);
            assert_eq!(
                got,
                vec![(id.map(str::to_owned), data.clone())],
                "re-framed event does not parse back as itself: {:?}",
                String::from_utf8_lossy(&framed)
            );
        }
    }
}

/// Every event of an SSE body, and the error that ended it, if one did.
fn events(mut r: impl BufRead, max: usize) -> (Vec<RawEvent>, Option<String>) {
    let mut line = Vec::new();
    let mut out = Vec::new();
    loop {
        match read_sse_event(&mut r, &mut line, max) {
            Ok((Some(ev), _)) => out.push(ev),
            Ok((None, ended)) => {
                assert!(ended, "no event but not at the end");
                return (out, None);
            }
            Err(e) => return (out, Some(format!("{:?}: {e}", e.kind()))),
        }
    }
}

/// A reader that hands out its bytes in pieces of pseudo-random sizes (1 to 32 bytes).
struct Pieces<'a> {
    data: &'a [u8],
    state: u64,
}

impl Read for Pieces<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        // xorshift64: any sequence of piece sizes is as good as another.
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        let n = (1 + (self.state % 32) as usize)
            .min(out.len())
            .min(self.data.len());
        out[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

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

/// The fields the proxy reads out of bodies without building a tree, and the text it
/// derives from them: [`jsonrpc::pick`] and [`jsonrpc::ParamsHead`] (`_meta`, `name`, `uri`,
/// `arguments`), id canonical forms ([`jsonrpc::id_key`]), the answer classification of the
/// access log ([`jsonrpc::answered`]), the mirrored header checks (`Mcp-Name` and
/// `Mcp-Param-*` value encoding, argument matching) and log escaping
/// ([`crate::util::Escaped`]).
///
/// The input is a JSON document, optionally followed by a `0xFF` byte and header values, one
/// per line. Invariants (the oracle is a parsed `serde_json::Value` wherever one can be built):
/// * nothing panics, whatever the input;
/// * picked members are exactly the members a `Value` has (the last of a repeated key), and the
///   `_meta` protocol version, the mirrored name and the answer classification agree with
///   reading the `Value`;
/// * an id's canonical form, when there is one, is the same string (compact JSON) or the same
///   integer (plain decimal digits, at most [`jsonrpc::MAX_ID_DIGITS`], rounding to the same
///   float as the id's own text); an id [`Message::parse`] accepts has one;
/// * every value survives the mirrored-header encoding (`encode` then `decode` gives it back,
///   and the encoded form is visible ASCII without edge whitespace), and a decoded plain value
///   is the value itself;
/// * an `Mcp-Param-*` value matches the arguments exactly when a walk of the `Value` (through
///   objects, not arrays, below the root) finds that string, boolean or integer;
/// * escaped log text holds no control characters, line or paragraph separators or
///   bidirectional controls, and text without them is left as it is.
pub fn fields(data: &[u8]) {
    let (doc, extra) = match data.iter().position(|&b| b == 0xff) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let text = String::from_utf8_lossy(doc);
    let values: Vec<String> = String::from_utf8_lossy(extra)
        .split('\n')
        .map(str::to_owned)
        .collect();
    for v in values.iter().chain(std::iter::once(&text.to_string())) {
        escaped(v);
        mirrored(v);
    }
    let Ok(raw) = serde_json::from_str::<&RawValue>(&text) else {
        return;
    };
    let oracle = serde_json::from_str::<serde_json::Value>(&text).ok();
    ids(raw, oracle.as_ref());
    let head = jsonrpc::ParamsHead::of(raw);
    let _ = (head.modern_version(), head.mirrored_name("tools/call"));
    for tools_call in [false, true] {
        let got = jsonrpc::answered(text.as_bytes(), tools_call);
        if let Some(v) = &oracle {
            assert_eq!(got, answered_oracle(v, tools_call), "answer of {text:?}");
        }
    }
    let wanted: Vec<std::borrow::Cow<'_, str>> =
        values.iter().take(8).map(|v| v.as_str().into()).collect();
    let found = proxy::argument_values(Some(raw), &wanted);
    assert_eq!(found.len(), wanted.len());
    let Some(v) = oracle else { return };
    let member = |r: Option<&RawValue>| {
        r.map(|r| {
            serde_json::from_str::<serde_json::Value>(r.get()).expect("a picked member parses")
        })
    };
    let obj = v.as_object();
    for (name, got) in [
        ("_meta", head.meta),
        ("name", head.name),
        ("uri", head.uri),
        ("arguments", head.arguments),
    ] {
        assert_eq!(
            member(got),
            obj.and_then(|o| o.get(name)).cloned(),
            "member {name}"
        );
    }
    let version = v
        .get("_meta")
        .and_then(|m| m.get(jsonrpc::META_VERSION))
        .and_then(serde_json::Value::as_str);
    assert_eq!(head.modern_version().as_deref(), version);
    for method in ["tools/call", "prompts/get", "resources/read", "tools/list"] {
        let key = match method {
            "resources/read" => Some("uri"),
            "tools/list" => None,
            _ => Some("name"),
        };
        let want = key
            .and_then(|k| v.get(k))
            .and_then(serde_json::Value::as_str);
        assert_eq!(head.mirrored_name(method).as_deref(), want, "{method}");
    }
    let mut strings = Vec::new();
    let mut ints = Vec::new();
    if let Some(o) = obj {
        for child in o.values() {
            primitives(child, &mut strings, &mut ints);
        }
    }
    // The scan streams over every member, a `Value` keeps the last of a repeated key: with
    // repeated keys the scan may match more (the upstream, which knows the schema, decides).
    let repeated = members_in(&text) != Some(members_of(&v));
    for (w, f) in wanted.iter().zip(&found) {
        let int = jsonrpc::canonical_integer(w).and_then(|c| c.parse::<i128>().ok());
        let expect = strings.iter().any(|s| s == w) || int.is_some_and(|i| ints.contains(&i));
        if repeated {
            assert!(*f || !expect, "Mcp-Param value {w:?} missed in {text:?}");
        } else {
            assert_eq!(*f, expect, "Mcp-Param value {w:?} against {text:?}");
        }
    }
}

/// Object members in a parsed value, at every depth.
fn members_of(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::Object(o) => o.len() + o.values().map(members_of).sum::<usize>(),
        serde_json::Value::Array(a) => a.iter().map(members_of).sum(),
        _ => 0,
    }
}

/// Object members in JSON text as written (repeated keys counted each time), at every depth.
fn members_in(text: &str) -> Option<usize> {
    use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
    struct Count;
    impl<'de> DeserializeSeed<'de> for Count {
        type Value = usize;
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
            d.deserialize_any(self)
        }
    }
    impl<'de> Visitor<'de> for Count {
        type Value = usize;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_bool<E>(self, _: bool) -> Result<usize, E> {
            Ok(0)
        }
        fn visit_i64<E>(self, _: i64) -> Result<usize, E> {
            Ok(0)
        }
        fn visit_u64<E>(self, _: u64) -> Result<usize, E> {
            Ok(0)
        }
        fn visit_f64<E>(self, _: f64) -> Result<usize, E> {
            Ok(0)
        }
        fn visit_str<E>(self, _: &str) -> Result<usize, E> {
            Ok(0)
        }
        fn visit_unit<E>(self) -> Result<usize, E> {
            Ok(0)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
            let mut n = 0;
            while let Some(k) = seq.next_element_seed(Count)? {
                n += k;
            }
            Ok(n)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<usize, A::Error> {
            let mut n = 0;
            while map.next_key::<IgnoredAny>()?.is_some() {
                n += 1 + map.next_value_seed(Count)?;
            }
            Ok(n)
        }
    }
    let mut de = serde_json::Deserializer::from_str(text);
    Count.deserialize(&mut de).ok()
}

/// The strings (booleans as `true`/`false`) and integers reachable from `v` through objects.
fn primitives(v: &serde_json::Value, strings: &mut Vec<String>, ints: &mut Vec<i128>) {
    use serde_json::Value;
    match v {
        Value::String(s) => strings.push(s.clone()),
        Value::Bool(b) => strings.push(b.to_string()),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                ints.push(i128::from(i));
            } else if let Some(u) = n.as_u64() {
                ints.push(i128::from(u));
            } else if let Some(f) = n.as_f64()
                && f.fract() == 0.0
                && f.abs() < 9_007_199_254_740_992.0
            {
                ints.push(f as i128);
            }
        }
        Value::Object(o) => o.values().for_each(|c| primitives(c, strings, ints)),
        Value::Array(_) | Value::Null => {}
    }
}

/// What [`jsonrpc::answered`] must say of `v`.
fn answered_oracle(v: &serde_json::Value, tools_call: bool) -> Option<jsonrpc::Answered> {
    let o = v.as_object()?;
    if let Some(e) = o.get("error") {
        let code = e.get("code").and_then(serde_json::Value::as_i64);
        return Some(jsonrpc::Answered::Error(code));
    }
    let r = o.get("result")?;
    if tools_call && r.get("isError") == Some(&serde_json::Value::Bool(true)) {
        return Some(jsonrpc::Answered::ToolError);
    }
    Some(jsonrpc::Answered::Ok)
}

/// Id canonical forms against the parsed value.
fn ids(raw: &RawValue, oracle: Option<&serde_json::Value>) {
    let key = jsonrpc::id_key(raw);
    let msg = format!(r#"{{"jsonrpc":"2.0","id":{},"method":"m"}}"#, raw.get());
    if Message::parse(msg.as_bytes()).is_ok() {
        assert!(
            key.is_some(),
            "accepted id {:?} has no canonical form",
            raw.get()
        );
    }
    let (Some(key), Some(v)) = (key, oracle) else {
        return;
    };
    match v {
        serde_json::Value::String(s) => {
            assert_eq!(key, serde_json::to_string(s).expect("a string serialises"));
        }
        serde_json::Value::Number(n) => {
            let digits = key.strip_prefix('-').unwrap_or(&key);
            assert!(
                !digits.is_empty()
                    && digits.len() <= jsonrpc::MAX_ID_DIGITS
                    && digits.bytes().all(|b| b.is_ascii_digit())
                    && (digits == "0" || !digits.starts_with('0'))
                    && key != "-0",
                "canonical form {key:?} of {n}"
            );
            // Both spellings of one exact value round to the same float (std's parser rounds
            // correctly; serde_json's default one can be a unit off on long digit strings).
            let (f, g) = (raw.get().parse::<f64>().ok(), key.parse::<f64>().ok());
            assert!(f.is_some() && f == g, "{key} is not {n}");
        }
        other => panic!("{other} has a canonical id form {key:?}"),
    }
}

/// The mirrored-header value codec on one value.
fn mirrored(v: &str) {
    let e = proxy::encode_mirrored(v);
    assert!(
        e.bytes().all(|b| (0x20..0x7f).contains(&b)) && e.trim() == e,
        "encoded {e:?} is no plain header value"
    );
    assert_eq!(
        proxy::decode_mirrored(&e).as_deref(),
        Some(v),
        "round trip of {v:?}"
    );
    if let Some(d) = proxy::decode_mirrored(v)
        && !v.starts_with("=?base64?")
    {
        assert_eq!(d, v);
    }
}

/// Log escaping on one value.
fn escaped(v: &str) {
    let out = crate::util::Escaped(v).to_string();
    let bad = |c: char| {
        c.is_control()
            || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}')
            || ('\u{202a}'..='\u{202e}').contains(&c)
            || ('\u{2066}'..='\u{2069}').contains(&c)
    };
    assert!(
        !out.chars().any(bad),
        "escaped {out:?} still holds a control"
    );
    if !v.chars().any(bad) {
        assert_eq!(out, v);
    }
}

/// FNV-1a, for deterministic parameters derived from the input.
fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The era bridge's parsing (issue #13) on one request: `MCP-Protocol-Version`, `Mcp-Method`
/// and `Mcp-Name` header lines, a blank line, then a JSON-RPC body.
///
/// Invariants:
/// * validating it as a 2026-07-28 request never panics, and refuses only with the spec's
///   answers: 400 -32602, 400 -32020, 400 -32022 (whose `data` names the requested version
///   and lists 2026-07-28), or 404 -32601; every refusal's body is JSON with that code;
/// * a `requestState` the proxy did not seal never opens (tamper, foreign or garbage alike),
///   while a state it sealed opens to the same fields until it expires;
/// * a `subscriptions/listen` filter is read without panicking, refused only with -32602;
/// * a body shaped as a bridged answer keeps the client's id and, for a result object, gains
///   `resultType`.
pub fn bridge(data: &[u8]) {
    use crate::bridge::{listen, shape, state, validate};
    let split = data
        .windows(2)
        .position(|w| w == b"\n\n")
        .unwrap_or(data.len());
    let head = String::from_utf8_lossy(&data[..split]).into_owned();
    let body = data.get(split + 2..).unwrap_or(&[]);
    let headers: Vec<(String, String)> = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let h = fnv(data);
    let codec = state::Codec::new([7; 32], "fuzz");
    let sealed = state::State {
        token: u128::from(h),
        expires_ms: 1_000 + (h % 1_000),
        principal: state::digest(&[&head]),
        request: state::digest(&[&head, "x"]),
    };
    let text = codec.seal(&sealed);
    assert_eq!(codec.open(&text, 999).ok().as_ref(), Some(&sealed));
    assert!(codec.open(&text, sealed.expires_ms).is_err());
    let Ok(msg) = Message::parse(body) else {
        return;
    };
    if let Err(e) = validate::validate(&msg, header) {
        let a = e.answer();
        assert!(
            matches!(
                (a.status, a.code),
                (400, -32602) | (400, -32020) | (400, -32022) | (404, -32601)
            ),
            "unexpected refusal {e:?}"
        );
        let reply: serde_json::Value =
            serde_json::from_slice(&jsonrpc::error_for(msg.id.as_deref(), &e))
                .expect("a refusal is JSON");
        assert_eq!(reply["error"]["code"], a.code);
        if a.code == -32022 {
            assert!(reply["error"]["data"]["requested"].is_string());
            assert_eq!(
                reply["error"]["data"]["supported"][0],
                jsonrpc::MODERN_VERSION
            );
        }
    }
    let params = msg.params_value();
    if let Some(s) = params
        .as_ref()
        .and_then(|p| p.get("requestState"))
        .and_then(|s| s.as_str())
    {
        assert!(
            s == text || codec.open(s, 0).is_err(),
            "a state the proxy never sealed opened"
        );
    }
    if let Err(e) = listen::Filter::of(params.as_ref()) {
        assert_eq!(e.rpc_code(), -32602);
    }
    let finish = shape::Finish {
        server_info: None,
        ttl_ms: h % 10_000,
    };
    let id = msg.id.clone().unwrap_or_else(jsonrpc::null);
    if let Ok(out) = finish.answer(body, &id, msg.method()) {
        let v: serde_json::Value = serde_json::from_slice(&out).expect("an answer is JSON");
        let want: serde_json::Value = serde_json::from_str(id.get()).unwrap_or_default();
        assert_eq!(v["id"], want);
        if v["result"].is_object() {
            assert!(v["result"]["resultType"].is_string());
        }
    }
}

/// The longest principal [`subject`] accepts (the reader's own cap).
const MAX_PRINCIPAL: usize = 256;

/// The client-certificate subject reader (`http/tls/subject.rs`), on a certificate's DER.
///
/// The reader runs only on certificates rustls has verified, but walks DER itself; the input
/// is any bytes (the committed corpus starts from real certificates). Invariants:
/// * nothing panics, whatever the input;
/// * the principal is never empty, at most 256 characters, without control characters, and
///   the same on a second read;
/// * only the first DER element counts: bytes after it change nothing;
/// * a prefix that cuts the first element short reads as `unnamed`.
///
/// (A name may itself read `serial:…`: the first run found a certificate whose email SAN is
/// `serial:carol@example`, so the serial fallback is not told apart from a name here; see
/// docs/security.md on that collision.)
pub fn subject(data: &[u8]) {
    let p = http::cert_principal(data);
    let chars = p.chars().count();
    assert!(chars > 0 && chars <= MAX_PRINCIPAL, "{p:?}");
    assert!(!p.chars().any(char::is_control), "{p:?}");
    assert_eq!(http::cert_principal(data), p, "not deterministic");
    let mut longer = data.to_vec();
    longer.extend_from_slice(&[0x30, 0x03, 0x02, 0x01, 0x00]);
    let same = http::cert_principal(&longer);
    if let Some(len) = first_element_len(data) {
        assert_eq!(same, p, "bytes after the certificate changed its principal");
        if len > 1 {
            let cut = http::cert_principal(&data[..len - 1]);
            assert_eq!(cut, "unnamed", "a truncated certificate was read");
        }
    }
}

/// The length (header and contents) of the first DER element of `data`, when it is a
/// SEQUENCE that is whole: what the subject reader treats as the certificate.
fn first_element_len(data: &[u8]) -> Option<usize> {
    let (&tag, rest) = data.split_first()?;
    if tag != 0x30 {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let bytes = rest.get(..n)?;
        let len = bytes.iter().fold(0usize, |a, &b| (a << 8) | usize::from(b));
        (len, 2 + n)
    };
    let total = header.checked_add(len)?;
    (total <= data.len()).then_some(total)
}
