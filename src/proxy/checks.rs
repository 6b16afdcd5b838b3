//! The checks a request meets before anything else happens to it: `Host`/`Origin` (DNS
//! rebinding), headers that may appear only once, media types, and the MCP headers that go
//! upstream.
//!
//! **Mirrored headers** (2026-07-28, SEP-2243: `MCP-Protocol-Version`, `Mcp-Method`,
//! `Mcp-Name`, `Mcp-Param-*`) repeat values of the body so that intermediaries can route
//! without parsing it. The proxy parses the body, so it never trusts them:
//!
//! * `MCP-Protocol-Version`, `Mcp-Method` and `Mcp-Name` that go upstream are built by the
//!   proxy from the body it validated (the version from the header it checked, or from
//!   `_meta`); a client's own copy must equal the body's value, else 400 -32020
//!   `HeaderMismatch` (`Mcp-Name` compared after `=?base64?…?=` decoding; an `Mcp-Name` on a
//!   method without a name is a mismatch too);
//! * `Mcp-Param-{Name}` is defined only for `tools/call`, from the tool's `x-mcp-header`
//!   schema annotations, which the proxy does not know. On `tools/call` each one must be
//!   well formed (visible ASCII, a valid base64 sentinel) and its decoded value must equal
//!   some string, integer or boolean of `params.arguments` (at any depth through objects, where
//!   an annotation can point): a value the body does not carry at all is a mismatch (400
//!   -32020). Those that pass are forwarded as sent, for the upstream, which knows the schema,
//!   to check name by name (a server MUST). On every other method they are dropped;
//! * nothing else a client sends goes upstream.

use std::borrow::Cow;

use base64::Engine as _;
use serde_json::value::RawValue;

use crate::error::Error;
use crate::http::Request;
use crate::http::origin::{is_loopback_host, loopback_origin, normalize_origin};
use crate::jsonrpc::{Message, ParamsHead, canonical_integer};

use super::Proxy;

/// Headers a request may carry at most once (lower case); so may each `Mcp-Param-*` name.
const SINGLE: [&str; 8] = [
    "origin",
    "content-type",
    "authorization",
    "mcp-session-id",
    "last-event-id",
    "mcp-protocol-version",
    "mcp-method",
    "mcp-name",
];

/// The prefix of the headers mirrored from tool arguments.
const PARAM_PREFIX: &str = "mcp-param-";

impl Proxy {
    pub(super) fn check_origin(&self, req: &Request) -> Result<(), Error> {
        if self.cfg.loopback
            && let Some(host) = req.header("host")
            && !is_loopback_host(host)
        {
            return Err(Error::Forbidden("host is not a loopback name"));
        }
        if let Some(origin) = req.header("origin") {
            let o = normalize_origin(origin);
            let ok = loopback_origin(&o) || self.cfg.allowed_origins.contains(&o);
            if !ok {
                return Err(Error::Forbidden("origin not allowed"));
            }
        }
        Ok(())
    }
}

/// Refuses (400) a request that repeats a header the proxy reads as one value: with two
/// `Origin`s, two `Authorization`s or two `Mcp-Method`s, a reader of the first and a reader of
/// the last copy would disagree. Two `Mcp-Param-*` fields of the same name count too.
pub(super) fn single_headers(req: &Request) -> Result<(), Error> {
    for name in SINGLE {
        if req.header_all(name).nth(1).is_some() {
            return Err(Error::RepeatedHeader(name.to_owned()));
        }
    }
    let params: Vec<&str> = req
        .headers
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| is_param_header(k))
        .collect();
    for (i, a) in params.iter().enumerate() {
        if params[..i].iter().any(|b| b.eq_ignore_ascii_case(a)) {
            return Err(Error::RepeatedHeader(a.to_ascii_lowercase()));
        }
    }
    Ok(())
}

/// True for an `Mcp-Param-*` header name.
fn is_param_header(name: &str) -> bool {
    name.len() > PARAM_PREFIX.len()
        && name
            .get(..PARAM_PREFIX.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(PARAM_PREFIX))
}

/// The MCP headers that go upstream with `msg`, built from the body (see the module doc):
/// `MCP-Protocol-Version` (`version`, already checked), `Mcp-Method`, `Mcp-Name` where the
/// method has a name, and the client's `Mcp-Param-*` on `tools/call` once checked against
/// the arguments. A client header that disagrees with the body is [`Error::HeaderMismatch`].
pub(super) fn upstream_headers(
    req: &Request,
    msg: &Message,
    head: &ParamsHead<'_>,
    version: Option<&str>,
) -> Result<Vec<(String, String)>, Error> {
    let method = msg.method.as_deref();
    if let Some(sent) = req.header("mcp-method")
        && Some(sent) != method
    {
        return Err(Error::HeaderMismatch(
            "Mcp-Method does not match the body's method".into(),
        ));
    }
    let name = method.and_then(|m| head.mirrored_name(m));
    if let Some(sent) = req.header("mcp-name")
        && (name.is_none() || decode_mirrored(sent).as_deref() != name.as_deref())
    {
        return Err(Error::HeaderMismatch(
            "Mcp-Name does not match the body's name or uri".into(),
        ));
    }
    let mut out = Vec::with_capacity(3);
    if let Some(v) = version.filter(|v| header_safe(v)) {
        out.push(("MCP-Protocol-Version".to_owned(), v.to_owned()));
    }
    // A method that is no valid header value gets no header (and an upstream that needs it
    // refuses the request, as it would refuse the method).
    if let Some(m) = method.filter(|m| header_safe(m)) {
        out.push(("Mcp-Method".to_owned(), m.to_owned()));
    }
    if let Some(n) = &name {
        out.push(("Mcp-Name".to_owned(), encode_mirrored(n).into_owned()));
    }
    if method == Some("tools/call") {
        let params: Vec<&(String, String)> = req
            .headers
            .iter()
            .filter(|(k, _)| is_param_header(k))
            .collect();
        if !params.is_empty() {
            let mut wanted = Vec::with_capacity(params.len());
            for (k, v) in &params {
                let decoded = decode_mirrored(v)
                    .ok_or_else(|| Error::HeaderMismatch(format!("{k} is malformed")))?;
                wanted.push(decoded);
            }
            let found = argument_values(head.arguments, &wanted);
            if let Some(i) = found.iter().position(|f| !f) {
                return Err(Error::HeaderMismatch(format!(
                    "{} matches no argument of the body",
                    params[i].0
                )));
            }
            out.extend(params.into_iter().cloned());
        }
    }
    Ok(out)
}

/// True when `v` can be sent as a header value as it is: visible ASCII and spaces, no
/// leading or trailing whitespace.
fn header_safe(v: &str) -> bool {
    v.bytes().all(|b| (0x20..0x7f).contains(&b)) && v.trim() == v
}

/// True for a value in the `=?base64?…?=` wrapping.
fn is_sentinel(v: &str) -> bool {
    v.len() >= 11 && v.starts_with("=?base64?") && v.ends_with("?=")
}

/// A mirrored header value for `value` (2026-07-28 value encoding): as it is when it is a
/// safe header value, else `=?base64?…?=` around its UTF-8 bytes (so are values that look
/// like that wrapping themselves).
pub(crate) fn encode_mirrored(value: &str) -> Cow<'_, str> {
    if header_safe(value) && !is_sentinel(value) {
        return Cow::Borrowed(value);
    }
    let b64 = base64::engine::general_purpose::STANDARD.encode(value);
    Cow::Owned(format!("=?base64?{b64}?="))
}

/// The value a mirrored header carries: a `=?base64?…?=` value decoded (canonical base64 of
/// UTF-8 only), anything else as it is. `None` when malformed: a bad wrapping, or characters
/// a header value may not have (outside visible ASCII, space and tab).
pub(crate) fn decode_mirrored(sent: &str) -> Option<Cow<'_, str>> {
    if !sent
        .bytes()
        .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
    {
        return None;
    }
    if !is_sentinel(sent) {
        return Some(Cow::Borrowed(sent));
    }
    let payload = &sent[9..sent.len() - 2];
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(payload)
        .ok()?;
    String::from_utf8(bytes).ok().map(Cow::Owned)
}

/// For each of `wanted`, whether some string, integer or boolean inside the `arguments`
/// object equals it (`true`/`false` for booleans, integers compared by value, so `42`, `42.0`
/// and `4.2e1` are alike). Objects are searched at any depth; arrays are skipped (an
/// `x-mcp-header` annotation cannot point into one). One pass, nothing materialised, so every
/// copy of a repeated key counts (the upstream, which checks by name, has the last word); a
/// body nested deeper than the JSON parser's limit matches nothing.
pub(crate) fn argument_values(arguments: Option<&RawValue>, wanted: &[Cow<'_, str>]) -> Vec<bool> {
    use serde::de::DeserializeSeed;
    let mut found = vec![false; wanted.len()];
    let Some(args) = arguments else {
        return found;
    };
    let wants: Vec<Want<'_>> = wanted
        .iter()
        .map(|w| Want {
            text: w,
            int: canonical_integer(w).and_then(|c| c.parse().ok()),
        })
        .collect();
    let mut de = serde_json::Deserializer::from_str(args.get());
    let scan = Scan {
        wants: &wants,
        found: &mut found,
        top: true,
    };
    if scan.deserialize(&mut de).is_err() {
        found.iter_mut().for_each(|f| *f = false);
    }
    found
}

/// One decoded `Mcp-Param-*` value, and its integer value if it spells one.
struct Want<'a> {
    text: &'a str,
    int: Option<i128>,
}

/// [`argument_values`]'s visitor over one value of the arguments.
struct Scan<'w, 'a> {
    wants: &'w [Want<'a>],
    found: &'w mut [bool],
    /// The arguments object itself (an annotation names a property, never the root).
    top: bool,
}

impl Scan<'_, '_> {
    fn mark(self, hit: impl Fn(&Want<'_>) -> bool) {
        if self.top {
            return;
        }
        for (w, f) in self.wants.iter().zip(self.found.iter_mut()) {
            *f |= hit(w);
        }
    }

    fn int(self, v: i128) {
        self.mark(|w| w.int == Some(v));
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for Scan<'_, '_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        if self.top {
            d.deserialize_map(self)
        } else {
            d.deserialize_any(self)
        }
    }
}

impl<'de> serde::de::Visitor<'de> for Scan<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("tool arguments")
    }

    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        let text = if v { "true" } else { "false" };
        self.mark(|w| w.text == text);
        Ok(())
    }

    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        self.int(i128::from(v));
        Ok(())
    }

    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        self.int(i128::from(v));
        Ok(())
    }

    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        // Integral values written with a fraction or exponent; exact only within 2^53
        // (the range `x-mcp-header` integers must keep to anyway).
        if v.fract() == 0.0 && v.abs() < 9_007_199_254_740_992.0 {
            self.int(v as i128);
        }
        Ok(())
    }

    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        self.mark(|w| w.text == v);
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(())
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key::<serde::de::IgnoredAny>()?.is_some() {
            map.next_value_seed(Scan {
                wants: self.wants,
                found: &mut *self.found,
                top: false,
            })?;
        }
        Ok(())
    }
}

/// True when a `Content-Type` value is `want` (parameters ignored).
pub(crate) fn media_is(value: &str, want: &str) -> bool {
    value
        .split(';')
        .next()
        .is_some_and(|m| m.trim().eq_ignore_ascii_case(want))
}

/// True when the request's `Accept` headers list `want` explicitly (a bare `*/*` is not
/// enough, as the MCP transport requires clients to name both types).
pub(crate) fn accepts(req: &Request, want: &str) -> bool {
    req.header_all("accept").any(|v| lists(v, want))
}

/// True when one `Accept` value lists `want`.
fn lists(accept: &str, want: &str) -> bool {
    accept.split(',').any(|part| media_is(part, want))
}

#[cfg(test)]
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types() {
        assert!(media_is(
            "application/json; charset=utf-8",
            "application/json"
        ));
        assert!(!media_is("text/plain", "application/json"));
        assert!(lists(
            "application/json, text/event-stream",
            "text/event-stream"
        ));
        assert!(!lists("*/*", "application/json"));
    }

    fn request(headers: &[(&str, &str)]) -> Request {
        Request {
            method: "POST".into(),
            target: "/mcp".into(),
            version: crate::http::Version::Http11,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: Vec::new(),
            remote: "127.0.0.1:9".parse().unwrap(),
            client_cert: None,
        }
    }

    /// What goes upstream for `body` sent with `headers` (names lowercased).
    fn upstream(headers: &[(&str, &str)], body: &str) -> Result<Vec<(String, String)>, Error> {
        let req = request(headers);
        let msg = Message::parse(body.as_bytes()).unwrap();
        let version = req.header("mcp-protocol-version");
        upstream_headers(&req, &msg, &msg.head(), version).map(|v| {
            v.into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect()
        })
    }

    const CALL: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi","opts":{"region":"eu-west1","n":42,"on":true},"list":["inj"]}}}"#;

    fn mismatch(r: Result<Vec<(String, String)>, Error>) -> bool {
        matches!(r, Err(Error::HeaderMismatch(_)))
    }

    #[test]
    fn header_allow_list() {
        // Only the mirrored headers go upstream, built from the body; nothing else a client
        // sends (credentials, cookies, forwarding headers, its own routing headers) does.
        let sent = [
            ("MCP-Protocol-Version", "2025-11-25"),
            ("Authorization", "Bearer x"),
            ("Cookie", "c=1"),
            ("X-Api-Key", "k"),
            ("X-Forwarded-For", "1.2.3.4"),
            ("Proxy-Authorization", "Basic x"),
            ("Mcp-Param-Region", "eu-west1"),
        ];
        let got = upstream(&sent, CALL).unwrap();
        let want = [
            ("mcp-protocol-version", "2025-11-25"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "echo"),
            ("mcp-param-region", "eu-west1"),
        ];
        assert_eq!(got.len(), want.len(), "{got:?}");
        for ((k, v), (wk, wv)) in got.iter().zip(want) {
            assert_eq!((k.as_str(), v.as_str()), (wk, wv));
        }
        // Mcp-Param-* only on tools/call.
        let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
        let got = upstream(&[("Mcp-Param-X", "y")], list).unwrap();
        assert_eq!(
            got,
            vec![("mcp-method".to_string(), "tools/list".to_string())]
        );
    }

    #[test]
    fn routing_headers_must_match_the_body() {
        assert!(upstream(&[("Mcp-Method", "tools/call"), ("Mcp-Name", "echo")], CALL).is_ok());
        assert!(mismatch(upstream(&[("Mcp-Method", "tools/list")], CALL)));
        assert!(mismatch(upstream(&[("Mcp-Method", "Tools/call")], CALL)));
        assert!(mismatch(upstream(&[("Mcp-Name", "other_tool")], CALL)));
        // Mcp-Name in the base64 wrapping is decoded first.
        let wrapped = encode_mirrored("=?base64?echo?=").into_owned();
        assert!(mismatch(upstream(&[("Mcp-Name", &wrapped)], CALL)));
        assert!(upstream(&[("Mcp-Name", "=?base64?ZWNobw==?=")], CALL).is_ok());
        // No name in the body (or a method without one): a client Mcp-Name disagrees.
        let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
        assert!(mismatch(upstream(&[("Mcp-Name", "echo")], list)));
        // resources/read names its uri; prompts/get its name.
        let read = r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///a b","name":"x"}}"#;
        assert!(upstream(&[("Mcp-Name", "file:///a b")], read).is_ok());
        assert!(mismatch(upstream(&[("Mcp-Name", "x")], read)));
        // A response has no method: any Mcp-Method disagrees.
        let resp = r#"{"jsonrpc":"2.0","id":1,"result":{}}"#;
        assert!(mismatch(upstream(&[("Mcp-Method", "x")], resp)));
        // The name goes upstream encoded when it is no safe header value.
        let uni =
            r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///é"}}"#;
        let got = upstream(&[], uni).unwrap();
        assert_eq!(
            got[1],
            ("mcp-name".into(), "=?base64?ZmlsZTovLy/DqQ==?=".into())
        );
    }

    #[test]
    fn param_headers_must_match_an_argument() {
        for ok in ["eu-west1", "hi", "42", "true", "=?base64?ZXUtd2VzdDE=?="] {
            assert!(upstream(&[("Mcp-Param-X", ok)], CALL).is_ok(), "{ok}");
        }
        // Not in the body at all; only inside an array; a bad wrapping; non-canonical base64;
        // invalid characters.
        for bad in [
            "inj",
            "false",
            "43",
            "=?base64?not base64?=",
            "=?base64?ZXUtd2VzdDF=?=",
            "é",
        ] {
            assert!(mismatch(upstream(&[("Mcp-Param-X", bad)], CALL)), "{bad}");
        }
        // The name of the tool or of an argument is no argument value.
        assert!(mismatch(upstream(&[("Mcp-Param-X", "echo")], CALL)));
        assert!(mismatch(upstream(&[("Mcp-Param-X", "region")], CALL)));
        // Integers compare by value.
        let f = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"a":4.2e1,"b":-0}}}"#;
        assert!(upstream(&[("Mcp-Param-A", "42")], f).is_ok());
        assert!(upstream(&[("Mcp-Param-A", "42.0")], f).is_ok());
        assert!(upstream(&[("Mcp-Param-B", "0")], f).is_ok());
    }

    #[test]
    fn repeated_single_value_headers() {
        assert!(single_headers(&request(&[("Origin", "a"), ("Host", "h")])).is_ok());
        for name in SINGLE {
            let r = request(&[
                (name, "a"),
                ("X-Other", "b"),
                (&name.to_ascii_uppercase(), "c"),
            ]);
            assert!(
                matches!(single_headers(&r), Err(Error::RepeatedHeader(n)) if n == name),
                "{name}"
            );
        }
        let r = request(&[("Mcp-Param-Region", "a"), ("mcp-param-region", "b")]);
        assert!(
            matches!(single_headers(&r), Err(Error::RepeatedHeader(n)) if n == "mcp-param-region")
        );
        let r = request(&[
            ("Mcp-Param-A", "a"),
            ("Mcp-Param-B", "b"),
            ("Accept", "x"),
            ("Accept", "y"),
        ]);
        assert!(single_headers(&r).is_ok());
    }

    #[test]
    fn mirrored_value_encoding_round_trips() {
        for v in [
            "us-west1",
            "Hello, 世界",
            " padded ",
            "line1\nline2",
            "=?base64?literal?=",
            "",
            "a\tb",
        ] {
            let e = encode_mirrored(v);
            assert!(e.bytes().all(|b| (0x20..0x7f).contains(&b)), "{e}");
            assert_eq!(decode_mirrored(&e).as_deref(), Some(v), "{e}");
        }
        // The spec's own examples.
        assert_eq!(
            encode_mirrored("Hello, 世界"),
            "=?base64?SGVsbG8sIOS4lueVjA==?="
        );
        assert_eq!(encode_mirrored(" padded "), "=?base64?IHBhZGRlZCA=?=");
        assert_eq!(
            encode_mirrored("=?base64?literal?="),
            "=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?="
        );
        assert_eq!(decode_mirrored("=?base64?/w==?="), None, "not UTF-8");
    }
}
