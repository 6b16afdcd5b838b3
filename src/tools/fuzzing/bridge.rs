//! The era bridge's parsing (issue #13).

use super::fnv;
use crate::jsonrpc::{self, Message};

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
