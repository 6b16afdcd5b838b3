//! The pipeline's raw field pickers and id handling on arbitrary JSON.

use serde_json::value::RawValue;

use crate::jsonrpc::{self, Message};
use crate::proxy;

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
