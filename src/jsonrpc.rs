//! JSON-RPC 2.0 envelopes, parsed lazily.
//!
//! Only the envelope is parsed: `id`, `params`, `result` and `error` stay raw JSON text
//! ([`RawValue`]), so a large tool result is copied, never re-parsed, and an id keeps its exact
//! spelling: a string stays a string and a number stays the same digits.
//!
//! The few members the proxy reads inside `params` (`_meta`, `name`, `uri`, `arguments`) and
//! inside an answer (`error.code`, `result.isError`) are picked by [`pick`], which skips every
//! other member without building a tree.
//!
//! **Ids.** MCP ids are strings or integers. A number id is accepted when its value is an
//! integer (`7`, `-7`, `1e2`, `100.0`) of at most [`MAX_ID_DIGITS`] digits; a fraction (`1.5`),
//! a value too large for that (`1e400`) or any other number is refused (-32600). Integers
//! beyond u64/i64 are kept as exact text, never converted. Ids are compared by one canonical
//! form ([`id_key`]), so `"\u0061bc"` is `"abc"` and `1e2` is `100` wherever ids are matched;
//! the client always gets its id back spelled as it wrote it.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::Error;

/// The `_meta` key that marks a 2026-07-28 ("modern") request.
pub const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// The `_meta` key of a 2026-07-28 request's client capabilities.
pub const META_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";

/// One JSON-RPC message.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Message {
    /// Must be `"2.0"`.
    pub jsonrpc: String,
    /// Request or response id, kept as written (an explicit `null` is kept too, and refused).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub id: Option<Box<RawValue>>,
    /// Request or notification method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Request or notification parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Box<RawValue>>,
    /// A successful response's result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Box<RawValue>>,
    /// A failed response's error object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Box<RawValue>>,
}

/// Keeps a present field, even `null`, as `Some`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Box<RawValue>>, D::Error> {
    Box::<RawValue>::deserialize(d).map(Some)
}

/// What a message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `method` and `id`: expects a response.
    Request,
    /// `method`, no `id`.
    Notification,
    /// `id` and `result` or `error`, no `method`.
    Response,
}

impl Message {
    /// Parses and validates one message from a body or a line.
    ///
    /// A top-level array (a 2025-03-26 batch) is refused: batching was removed in 2025-06-18.
    pub fn parse(bytes: &[u8]) -> Result<Message, Error> {
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
        match first {
            Some(b'[') => {
                // Still has to be valid JSON to deserve -32600 rather than -32700.
                serde_json::from_slice::<serde::de::IgnoredAny>(bytes).map_err(Error::Parse)?;
                return Err(Error::InvalidMessage("batches are not supported"));
            }
            Some(b'{') => {}
            _ => {
                serde_json::from_slice::<serde::de::IgnoredAny>(bytes).map_err(Error::Parse)?;
                return Err(Error::InvalidMessage("not a JSON-RPC object"));
            }
        }
        let msg: Message = match serde_json::from_slice(bytes) {
            Ok(m) => m,
            Err(e) if e.is_syntax() || e.is_eof() => return Err(Error::Parse(e)),
            Err(_) => {
                // A wrong field can stop the parse before a syntax error further on: only
                // valid JSON earns -32600 rather than -32700.
                serde_json::from_slice::<serde::de::IgnoredAny>(bytes).map_err(Error::Parse)?;
                return Err(Error::InvalidMessage("not a JSON-RPC 2.0 message"));
            }
        };
        msg.kind()?;
        Ok(msg)
    }

    /// Classifies the message, refusing shapes JSON-RPC does not allow.
    pub fn kind(&self) -> Result<Kind, Error> {
        if self.jsonrpc != "2.0" {
            return Err(Error::InvalidMessage("jsonrpc must be \"2.0\""));
        }
        if let Some(id) = &self.id
            && !id.get().starts_with('"')
            && canonical_integer(id.get()).is_none()
        {
            return Err(Error::InvalidMessage("id must be a string or an integer"));
        }
        match (&self.method, &self.id, &self.result, &self.error) {
            (Some(_), Some(_), None, None) => Ok(Kind::Request),
            (Some(_), None, None, None) => Ok(Kind::Notification),
            (None, Some(_), Some(_), None) | (None, Some(_), None, Some(_)) => Ok(Kind::Response),
            _ => Err(Error::InvalidMessage(
                "need method (request/notification) or id with result or error (response)",
            )),
        }
    }

    /// The method, or "" for a response.
    pub fn method(&self) -> &str {
        self.method.as_deref().unwrap_or("")
    }

    /// Serialises to bytes (never fails for a parsed message).
    pub fn to_vec(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The params as a generic value, for the few places that look inside.
    pub fn params_value(&self) -> Option<serde_json::Value> {
        self.params
            .as_ref()
            .and_then(|p| serde_json::from_str(p.get()).ok())
    }

    /// The members of `params` the proxy reads, each kept as raw text; every other member is
    /// skipped unparsed. Empty when there are no params or they are not an object.
    pub fn head(&self) -> ParamsHead<'_> {
        self.params
            .as_deref()
            .map(ParamsHead::of)
            .unwrap_or_default()
    }

    /// `params._meta["io.modelcontextprotocol/protocolVersion"]`, set on 2026-07-28 requests.
    pub fn modern_version(&self) -> Option<String> {
        self.head().modern_version()
    }

    /// `params.name` (tools/call, prompts/get) or `params.uri` (resources/read), for logs and
    /// rate limits.
    pub fn target_name(&self) -> Option<String> {
        let h = self.head();
        string(h.name.or(h.uri)?)
    }
}

/// The members of a request's `params` the proxy reads ([`Message::head`]), raw. A repeated
/// key keeps its last value, as a parsed `Value` (and JavaScript's `JSON.parse`) would.
#[derive(Clone, Copy, Debug, Default)]
pub struct ParamsHead<'a> {
    /// `_meta`.
    pub meta: Option<&'a RawValue>,
    /// `name` (tools/call, prompts/get).
    pub name: Option<&'a RawValue>,
    /// `uri` (resources/read).
    pub uri: Option<&'a RawValue>,
    /// `arguments` (tools/call).
    pub arguments: Option<&'a RawValue>,
}

impl<'a> ParamsHead<'a> {
    /// Picks the members out of `params` text (nothing when it is not an object).
    pub fn of(params: &'a RawValue) -> ParamsHead<'a> {
        match pick(params.get(), ["_meta", "name", "uri", "arguments"]) {
            Some([meta, name, uri, arguments]) => ParamsHead {
                meta,
                name,
                uri,
                arguments,
            },
            None => ParamsHead::default(),
        }
    }

    /// `_meta["io.modelcontextprotocol/protocolVersion"]` when it is a string.
    pub fn modern_version(&self) -> Option<String> {
        let [v] = pick(self.meta?.get(), [META_VERSION])?;
        string(v?)
    }

    /// The body value the `Mcp-Name` header mirrors for `method`: `params.name` for
    /// `tools/call` and `prompts/get`, `params.uri` for `resources/read`; `None` for other
    /// methods, or when the member is missing or not a string.
    pub fn mirrored_name(&self, method: &str) -> Option<String> {
        match method {
            "tools/call" | "prompts/get" => string(self.name?),
            "resources/read" => string(self.uri?),
            _ => None,
        }
    }
}

/// A raw JSON string's value (`None` for anything else).
fn string(raw: &RawValue) -> Option<String> {
    serde_json::from_str(raw.get()).ok()
}

/// The members `names` of the JSON object `text`, each as raw text borrowed from it, in the
/// order of `names`. Every other member is skipped without being materialised (no tree, no
/// copy), so a huge `arguments` or result costs one scan and no memory. A repeated key keeps
/// its last value. `None` when `text` is not a JSON object.
pub fn pick<'a, const N: usize>(
    text: &'a str,
    names: [&str; N],
) -> Option<[Option<&'a RawValue>; N]> {
    use serde::de::DeserializeSeed;
    let mut de = serde_json::Deserializer::from_str(text);
    let out = Pick(&names).deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(out)
}

/// [`pick`]'s visitor: the wanted members of one object.
struct Pick<'n, const N: usize>(&'n [&'n str; N]);

impl<'de, const N: usize> serde::de::DeserializeSeed<'de> for Pick<'_, N> {
    type Value = [Option<&'de RawValue>; N];

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, const N: usize> serde::de::Visitor<'de> for Pick<'_, N> {
    type Value = [Option<&'de RawValue>; N];

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = [None; N];
        while let Some(key) = map.next_key_seed(KeyIndex(self.0))? {
            match key {
                Some(i) => out[i] = Some(map.next_value::<&'de RawValue>()?),
                None => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(out)
    }
}

/// A member name, as its index among the wanted names (`None`: not wanted). Escapes in the
/// name are decoded first, as any JSON parser would.
struct KeyIndex<'n, const N: usize>(&'n [&'n str; N]);

impl<'de, const N: usize> serde::de::DeserializeSeed<'de> for KeyIndex<'_, N> {
    type Value = Option<usize>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<const N: usize> serde::de::Visitor<'_> for KeyIndex<'_, N> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a member name")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.0.iter().position(|n| *n == v))
    }
}

/// How a JSON-RPC answer came out, for the access log ([`answered`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answered {
    /// A result.
    Ok,
    /// A `tools/call` result with `isError: true` (the tool failed, the call did not).
    ToolError,
    /// An error object, with its code when that is an integer.
    Error(Option<i64>),
}

impl Answered {
    /// `ok`, `tool_error` or `error`.
    pub fn label(self) -> &'static str {
        match self {
            Answered::Ok => "ok",
            Answered::ToolError => "tool_error",
            Answered::Error(_) => "error",
        }
    }

    /// The error code, for an error.
    pub fn code(self) -> Option<i64> {
        match self {
            Answered::Error(c) => c,
            _ => None,
        }
    }
}

/// How the JSON-RPC response `body` came out; `tools_call` looks for `result.isError`. Only
/// the envelope, `error.code` and the top level of `result` are scanned: nothing is built
/// into a tree. `None` when `body` is not a response.
pub fn answered(body: &[u8], tools_call: bool) -> Option<Answered> {
    let text = std::str::from_utf8(body).ok()?;
    let [result, error] = pick(text.trim_ascii(), ["result", "error"])?;
    if let Some(e) = error {
        let code =
            pick(e.get(), ["code"]).and_then(|[c]| serde_json::from_str::<i64>(c?.get()).ok());
        return Some(Answered::Error(code));
    }
    let result = result?;
    if tools_call
        && let Some([Some(flag)]) = pick(result.get(), ["isError"])
        && flag.get() == "true"
    {
        return Some(Answered::ToolError);
    }
    Some(Answered::Ok)
}

pub use crate::version::{LEGACY_VERSIONS, MODERN_VERSION};

/// A JSON object's members, each kept as raw text (numbers of any size keep their digits; a
/// repeated key keeps its last value, as a parsed `Value` would).
pub type RawObject = std::collections::BTreeMap<String, Box<RawValue>>;

/// Builds a raw JSON value from text known to be valid JSON.
pub fn raw(text: String) -> Box<RawValue> {
    RawValue::from_string(text).unwrap_or_else(|_| null())
}

/// The raw `null` value.
pub fn null() -> Box<RawValue> {
    RawValue::from_string("null".to_string()).expect("null is JSON")
}

/// A raw number.
pub fn raw_u64(n: u64) -> Box<RawValue> {
    raw(n.to_string())
}

/// Reads a raw id as the unsigned number the proxy assigned, if it is one (in any spelling
/// of that integer, as [`id_key`] compares ids).
pub fn id_u64(id: &RawValue) -> Option<u64> {
    let text = id.get();
    text.parse()
        .ok()
        .or_else(|| canonical_integer(text)?.parse().ok())
}

/// Integer ids whose canonical form has more digits than this are refused (-32600): an id
/// is a name, not a number to compute with, and `1e400` must not cost 400 digits.
pub const MAX_ID_DIGITS: usize = 64;

/// The canonical form of an id, by which ids are compared: a string id is its value as
/// compact JSON (`"\u0061bc"` → `"abc"`), an integer id its shortest decimal (`1e2` → `100`,
/// `-0` → `0`). `None` for anything that is not a valid id (see the module doc).
pub fn id_key(id: &RawValue) -> Option<String> {
    let text = id.get();
    if text.starts_with('"') {
        let s: String = serde_json::from_str(text).ok()?;
        return serde_json::to_string(&s).ok();
    }
    canonical_integer(text).map(std::borrow::Cow::into_owned)
}

/// The shortest decimal text of the JSON number `text` when its value is an integer of at
/// most [`MAX_ID_DIGITS`] digits (`100`, `1e2`, `100.0` and `1000e-1` all give `100`; `-0`
/// gives `0`); `None` for a fraction, a larger value, or text that is not a JSON number.
/// Exact: no floating point is involved.
pub fn canonical_integer(text: &str) -> Option<std::borrow::Cow<'_, str>> {
    use std::borrow::Cow;
    let (neg, body) = match text.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, text),
    };
    let int_len = body.bytes().take_while(u8::is_ascii_digit).count();
    let (int, rest) = body.split_at(int_len);
    if int.is_empty() || (int.len() > 1 && int.starts_with('0')) {
        return None;
    }
    if rest.is_empty() {
        // The common case: a plain integer literal, kept as written.
        if int.len() > MAX_ID_DIGITS {
            return None;
        }
        if neg && int == "0" {
            return Some(Cow::Borrowed("0"));
        }
        return Some(Cow::Borrowed(text));
    }
    let (frac, exp_text) = match rest.strip_prefix('.') {
        Some(r) => {
            let n = r.bytes().take_while(u8::is_ascii_digit).count();
            if n == 0 {
                return None;
            }
            r.split_at(n)
        }
        None => ("", rest),
    };
    let exp: i64 = match exp_text.as_bytes().first() {
        None => 0,
        Some(b'e' | b'E') => {
            let e = &exp_text[1..];
            let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            // An exponent too long for i64 is far outside any id we keep: unless every
            // digit is zero, the value is then too large or not an integer.
            match e.parse::<i64>() {
                Ok(x) => x,
                Err(_) if int.bytes().chain(frac.bytes()).all(|b| b == b'0') => 0,
                Err(_) => return None,
            }
        }
        Some(_) => return None,
    };
    // The value is digits × 10^(exp − frac.len()), digits = int followed by frac.
    let digits: Vec<u8> = int.bytes().chain(frac.bytes()).collect();
    let lead = digits.iter().take_while(|&&b| b == b'0').count();
    let digits = &digits[lead..];
    let trail = digits.iter().rev().take_while(|&&b| b == b'0').count();
    let significant = &digits[..digits.len() - trail];
    if significant.is_empty() {
        return Some(Cow::Borrowed("0"));
    }
    // Zeros to append after the significant digits; negative means a fraction remains.
    let zeros = exp
        .checked_sub(i64::try_from(frac.len()).ok()?)?
        .checked_add(i64::try_from(trail).ok()?)?;
    let zeros = usize::try_from(zeros).ok()?;
    if significant.len().checked_add(zeros)? > MAX_ID_DIGITS {
        return None;
    }
    let mut out = String::with_capacity(1 + significant.len() + zeros);
    if neg {
        out.push('-');
    }
    out.extend(significant.iter().map(|&b| char::from(b)));
    out.extend(std::iter::repeat_n('0', zeros));
    Some(Cow::Owned(out))
}

/// A JSON-RPC error response body.
pub fn error_body(id: Option<&RawValue>, code: i64, message: &str) -> Vec<u8> {
    let id = id.map(|i| i.get()).unwrap_or("null");
    let msg = serde_json::to_string(message).unwrap_or_else(|_| "\"error\"".into());
    format!(r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":{code},"message":{msg}}}}}"#)
        .into_bytes()
}

/// A JSON-RPC success response body around raw result text.
pub fn result_body(id: &RawValue, result: &str) -> Vec<u8> {
    format!(r#"{{"jsonrpc":"2.0","id":{},"result":{result}}}"#, id.get()).into_bytes()
}

/// The error response for `err`, with the id of the request it answers.
pub fn error_for(id: Option<&RawValue>, err: &Error) -> Vec<u8> {
    let body = error_body(id, err.rpc_code(), &err.to_string());
    match err.data() {
        // `..."}}` becomes `...","data":{...}}}`.
        Some(data) if body.ends_with(b"}}") => {
            let mut body = body;
            body.truncate(body.len() - 2);
            body.extend_from_slice(b",\"data\":");
            body.extend_from_slice(data.to_string().as_bytes());
            body.extend_from_slice(b"}}");
            body
        }
        _ => body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies() {
        let m = Message::parse(br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#).unwrap();
        assert_eq!(m.kind().unwrap(), Kind::Request);
        let m = Message::parse(br#"{"jsonrpc":"2.0","method":"notifications/x"}"#).unwrap();
        assert_eq!(m.kind().unwrap(), Kind::Notification);
        let m = Message::parse(br#"{"jsonrpc":"2.0","id":"a","result":{}}"#).unwrap();
        assert_eq!(m.kind().unwrap(), Kind::Response);
    }

    #[test]
    fn refuses_bad_shapes() {
        assert!(matches!(Message::parse(b"{"), Err(Error::Parse(_))));
        assert!(matches!(Message::parse(b"nope"), Err(Error::Parse(_))));
        for bad in [
            &br#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#[..],
            br#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#,
            br#"{"jsonrpc":"2.0","id":null,"method":"ping","x":1}"#,
            br#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#,
            br#"{"jsonrpc":"2.0","method":7}"#,
            br#"{"jsonrpc":"2.0","id":1}"#,
            br#"{"jsonrpc":"2.0","id":1,"result":1,"error":{}}"#,
            br#"42"#,
            br#"{}"#,
        ] {
            assert!(
                matches!(Message::parse(bad), Err(Error::InvalidMessage(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn ids_keep_their_spelling() {
        let big = r#"{"jsonrpc":"2.0","id":123456789012345678901234567890,"method":"ping"}"#;
        let m = Message::parse(big.as_bytes()).unwrap();
        assert_eq!(
            m.id.as_ref().unwrap().get(),
            "123456789012345678901234567890"
        );
        assert_eq!(String::from_utf8(m.to_vec()).unwrap(), big);
        let s = Message::parse(br#"{"jsonrpc":"2.0","id":"7","method":"ping"}"#).unwrap();
        assert_eq!(s.id.unwrap().get(), "\"7\"");
    }

    #[test]
    fn modern_detection() {
        let m = Message::parse(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
        )
        .unwrap();
        assert_eq!(m.modern_version().as_deref(), Some("2026-07-28"));
        let e = error_body(m.id.as_deref(), -32600, "bad \"x\"");
        let v: serde_json::Value = serde_json::from_slice(&e).unwrap();
        assert_eq!(v["error"]["message"], "bad \"x\"");
        assert_eq!(v["id"], 1);
    }

    #[test]
    fn ids_are_strings_or_integers() {
        for (id, key) in [
            (r#""abc""#, r#""abc""#),
            (r#""\u0061bc""#, r#""abc""#),
            ("7", "7"),
            ("-7", "-7"),
            ("-0", "0"),
            ("1e2", "100"),
            ("1E+2", "100"),
            ("100.0", "100"),
            ("1000e-1", "100"),
            ("0.0e99999999999999999999", "0"),
            ("18446744073709551616", "18446744073709551616"),
            ("-9223372036854775809", "-9223372036854775809"),
        ] {
            let body = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#);
            let m = Message::parse(body.as_bytes()).unwrap_or_else(|e| panic!("{id}: {e}"));
            let raw = m.id.as_deref().unwrap();
            assert_eq!(raw.get(), id, "kept as written");
            assert_eq!(id_key(raw).as_deref(), Some(key), "{id}");
        }
        let max = "9".repeat(MAX_ID_DIGITS);
        let over = format!("1{max}");
        for bad in [
            "1.5",
            "1e400",
            "1e-2",
            "0.1",
            "-1.01e1",
            "1e99999999999999999999",
            &over,
            "true",
            "null",
            "[]",
            "{}",
        ] {
            let body = format!(r#"{{"jsonrpc":"2.0","id":{bad},"method":"ping"}}"#);
            assert!(
                matches!(
                    Message::parse(body.as_bytes()),
                    Err(Error::InvalidMessage(_))
                ),
                "{bad} must be refused"
            );
        }
        let body = format!(r#"{{"jsonrpc":"2.0","id":{max},"method":"ping"}}"#);
        assert!(Message::parse(body.as_bytes()).is_ok());
        assert_eq!(id_u64(&raw("1e2".into())), Some(100));
        assert_eq!(id_u64(&raw("42".into())), Some(42));
        assert_eq!(id_u64(&raw("\"42\"".into())), None);
        // Not JSON numbers at all.
        for junk in ["", "-", "01", "1.", ".5", "1e", "1e+", "+1", "0x10", "1_0"] {
            assert_eq!(canonical_integer(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn params_members_are_picked_without_a_tree() {
        // Arguments nested far deeper than a `Value` may be (serde_json stops at 128 levels):
        // building a tree of these params fails, picking `_meta` and `name` does not.
        let deep = format!("{}0{}", "[".repeat(10_000), "]".repeat(10_000));
        let params = format!(
            r#"{{"arguments":{{"x":{deep}}},"name":"echo","_meta":{{"other":{deep},"{META_VERSION}":"2026-07-28"}}}}"#
        );
        assert!(serde_json::from_str::<serde_json::Value>(&params).is_err());
        let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{params}}}"#);
        let m = Message::parse(body.as_bytes()).unwrap();
        assert_eq!(m.modern_version().as_deref(), Some("2026-07-28"));
        assert_eq!(m.target_name().as_deref(), Some("echo"));
        assert_eq!(
            m.head().mirrored_name("tools/call").as_deref(),
            Some("echo")
        );
        assert!(
            m.head()
                .arguments
                .is_some_and(|a| a.get().starts_with(r#"{"x":[[["#))
        );
        // Escaped key names are decoded; a repeated key keeps its last value.
        let p = raw(format!(
            r#"{{"\u005fmeta":{{"{META_VERSION}":"a"}},"_meta":{{"{META_VERSION}":"b"}}}}"#
        ));
        assert_eq!(ParamsHead::of(&p).modern_version().as_deref(), Some("b"));
        // Not an object, or a version that is not a string: nothing.
        assert!(
            ParamsHead::of(&raw(r#"["_meta","name"]"#.into()))
                .name
                .is_none()
        );
        let p = raw(format!(r#"{{"_meta":{{"{META_VERSION}":7}}}}"#));
        assert_eq!(ParamsHead::of(&p).modern_version(), None);
        assert!(pick("{\"a\":1} x", ["a"]).is_none(), "trailing bytes");
    }

    #[test]
    fn answers_are_classified_by_a_scan() {
        let a = |body: &str, tool: bool| answered(body.as_bytes(), tool);
        assert_eq!(
            a(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#, false),
            Some(Answered::Ok)
        );
        assert_eq!(
            a(
                r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"x"}}"#,
                false
            ),
            Some(Answered::Error(Some(-32601)))
        );
        assert_eq!(
            a(r#"{"jsonrpc":"2.0","id":1,"error":{"code":"x"}}"#, true),
            Some(Answered::Error(None))
        );
        let tool_error = r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"\"isError\":true"}],"isError":true}}"#;
        assert_eq!(a(tool_error, true), Some(Answered::ToolError));
        assert_eq!(
            a(tool_error, false),
            Some(Answered::Ok),
            "only tools/call has isError"
        );
        let fine =
            r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"isError":true}],"isError":false}}"#;
        assert_eq!(a(fine, true), Some(Answered::Ok));
        assert_eq!(a(r#"{"jsonrpc":"2.0","method":"x"}"#, false), None);
        assert_eq!(a("not json", false), None);
        assert_eq!(Answered::Error(Some(-1)).label(), "error");
        assert_eq!(Answered::ToolError.label(), "tool_error");
    }
}
