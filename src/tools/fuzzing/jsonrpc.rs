//! The JSON-RPC envelope parser and the stdio id rewrite/restore path.

use std::collections::BTreeMap;

use serde_json::value::RawValue;

use super::fnv;
use crate::error::Error;
use crate::jsonrpc::{self, Kind, Message};
use crate::upstream::stdio::child;

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
