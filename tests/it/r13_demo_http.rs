//! Issue #13 part C: `shadowcat demo-server --era E --http 127.0.0.1:0` over raw HTTP. The
//! 2026-07-28 front (`--era modern`): header/body agreement (-32020), `_meta` validation, the
//! status of each error (400, 404), 405 for GET, the DNS-rebinding check, MRTR round trips and a
//! `subscriptions/listen` stream. The session era (`--era legacy`): `Mcp-Session-Id`, a server
//! request on the POST stream answered by a POST, the GET stream, DELETE.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

const MODERN: &str = "2026-07-28";

fn meta(caps: Value) -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": caps,
    })
}

/// A 2026-07-28 POST with the standard headers derived from `body`, plus `extra`.
fn modern_post(addr: SocketAddr, body: &Value, extra: &[(&str, &str)]) -> Resp {
    let method = body["method"].as_str().unwrap_or("").to_string();
    let name = body["params"]["name"]
        .as_str()
        .or(body["params"]["uri"].as_str())
        .map(str::to_string);
    let mut headers: Vec<(&str, &str)> = JSON_HEADERS.to_vec();
    headers.push(("MCP-Protocol-Version", MODERN));
    headers.push(("Mcp-Method", &method));
    if let Some(name) = &name {
        headers.push(("Mcp-Name", name));
    }
    for (k, v) in extra {
        headers.retain(|(h, _)| !h.eq_ignore_ascii_case(k));
        headers.push((k, v));
    }
    Conn::open(addr).request("POST", "/mcp", &headers, body.to_string().as_bytes())
}

fn call(id: u64, name: &str, extra: Value, caps: Value) -> Value {
    let mut params = json!({"name": name, "arguments": {}, "_meta": meta(caps)});
    if let (Some(p), Value::Object(extra)) = (params.as_object_mut(), extra) {
        p.extend(extra);
    }
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params})
}

#[test]
fn modern_http_validates_headers_and_maps_statuses() {
    let (_demo, addr) = demo_http("modern");
    let echo = call(
        1,
        "echo",
        json!({"arguments": {"message": "hi"}}),
        json!({}),
    );
    let ok = modern_post(addr, &echo, &[]);
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(ok.json()["result"]["resultType"], "complete");
    assert_eq!(ok.json()["result"]["content"][0]["text"], "Echo: hi");

    let spaced = modern_post(addr, &echo, &[("Mcp-Name", "  echo  ")]);
    assert_eq!(spaced.status, 200, "header values are trimmed");
    for (header, value) in [("Mcp-Name", "other"), ("Mcp-Method", "tools/list")] {
        let bad = modern_post(addr, &echo, &[(header, value)]);
        assert_eq!(bad.status, 400, "{header}: {}", bad.text());
        assert_eq!(bad.json()["error"]["code"], -32020);
        assert_eq!(bad.json()["id"], 1);
    }
    let bad = modern_post(addr, &echo, &[("MCP-Protocol-Version", "2025-11-25")]);
    assert_eq!(bad.json()["error"]["code"], -32020);

    let no_meta = json!({"jsonrpc": "2.0", "id": 2, "method": "server/discover", "params": {}});
    let r = modern_post(addr, &no_meta, &[]);
    assert_eq!(
        (r.status, r.json()["error"]["code"].clone()),
        (400, json!(-32602))
    );
    let ping =
        json!({"jsonrpc": "2.0", "id": 3, "method": "ping", "params": {"_meta": meta(json!({}))}});
    let r = modern_post(addr, &ping, &[]);
    assert_eq!(
        (r.status, r.json()["error"]["code"].clone()),
        (404, json!(-32601))
    );
    let missing = call(4, "test_missing_capability", json!({}), json!({}));
    let r = modern_post(addr, &missing, &[]);
    assert_eq!(
        (r.status, r.json()["error"]["code"].clone()),
        (400, json!(-32021))
    );
    let old = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/list", "params": {"_meta": {
        "io.modelcontextprotocol/protocolVersion": "v9", "io.modelcontextprotocol/clientCapabilities": {}}}});
    let r = modern_post(addr, &old, &[("MCP-Protocol-Version", "v9")]);
    assert_eq!(
        (r.status, r.json()["error"]["code"].clone()),
        (400, json!(-32022))
    );
    assert_eq!(r.json()["error"]["data"]["requested"], "v9");

    let region = call(
        6,
        "test_custom_headers",
        json!({"arguments": {"region": "Hello"}}),
        json!({}),
    );
    for (value, status) in [
        ("Hello", 200),
        ("=?base64?SGVsbG8=?=", 200),
        ("=?base64?SGVsbG8?=", 400),
        ("=?base64?SGVs!!!bG8=?=", 400),
        ("Bye", 400),
    ] {
        let r = modern_post(addr, &region, &[("Mcp-Param-Region", value)]);
        assert_eq!(r.status, status, "Mcp-Param-Region: {value}: {}", r.text());
    }
    let r = modern_post(addr, &region, &[]);
    assert_eq!(
        (r.status, r.json()["error"]["code"].clone()),
        (400, json!(-32020))
    );

    assert_eq!(get(addr, "/mcp", &[]).status, 405);
    let evil = modern_post(addr, &echo, &[("Host", "evil.example.com")]);
    assert_eq!(evil.status, 403);
}

#[test]
fn modern_http_mrtr_round_trip() {
    let (_demo, addr) = demo_http("modern");
    let caps = json!({"elicitation": {}});
    let first = modern_post(
        addr,
        &call(
            1,
            "test_input_required_result_request_state",
            json!({}),
            caps.clone(),
        ),
        &[],
    );
    let result = &first.json()["result"];
    assert_eq!(result["resultType"], "input_required", "{}", first.text());
    let answers = json!({"confirm": {"action": "accept", "content": {"ok": true}}});
    let retry = json!({"inputResponses": answers, "requestState": result["requestState"]});
    let done = modern_post(
        addr,
        &call(2, "test_input_required_result_request_state", retry, caps),
        &[],
    );
    let text = done.json()["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(text.contains("state-ok"), "{}", done.text());
}

#[test]
fn modern_http_listen_stream_acknowledges_and_tags() {
    let (_demo, addr) = demo_http("modern");
    let listen = json!({"jsonrpc": "2.0", "id": 42, "method": "subscriptions/listen",
        "params": {"_meta": meta(json!({})), "notifications": {"toolsListChanged": true}}});
    let headers = [
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
        ("MCP-Protocol-Version", MODERN),
        ("Mcp-Method", "subscriptions/listen"),
    ];
    let mut stream = SseConn::open(addr, "POST", &headers, listen.to_string().as_bytes());
    assert_eq!(stream.status, 200);
    stream.r_timeout(Duration::from_secs(5));
    let ack = stream.next_event().expect("ack").json();
    assert_eq!(ack["method"], "notifications/subscriptions/acknowledged");
    assert_eq!(
        ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        42
    );
    let trigger = modern_post(
        addr,
        &call(1, "test_trigger_tool_change", json!({}), json!({})),
        &[],
    );
    assert_eq!(trigger.status, 200);
    let note = stream.next_event().expect("change").json();
    assert_eq!(note["method"], "notifications/tools/list_changed");
    assert_eq!(
        note["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        42
    );
}

#[test]
fn legacy_http_sessions_server_requests_and_get_stream() {
    let (_demo, addr) = demo_http("legacy");
    let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    assert_eq!(post(addr, None, list).status, 400, "no session");
    assert_eq!(
        post(addr, Some("nope"), list).status,
        404,
        "unknown session"
    );
    let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"sampling":{}},"clientInfo":{"name":"it","version":"1"}}}"#;
    let r = post(addr, None, init);
    assert_eq!(r.status, 200, "{}", r.text());
    let sid = r.header("mcp-session-id").expect("session id").to_string();
    assert_eq!(r.json()["result"]["protocolVersion"], "2025-11-25");
    let tools = post(addr, Some(&sid), list).json()["result"]["tools"].clone();
    assert!(
        tools
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["name"] == "echo"))
    );

    let mut get_stream = open_get(addr, &sid);
    assert_eq!(get_stream.status, 200);
    get_stream.r_timeout(Duration::from_secs(5));

    let sampling = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"test_sampling","arguments":{"prompt":"hi"}}}"#;
    let mut call = SseConn::open(addr, "POST", &session_headers(&sid), sampling.as_bytes());
    call.r_timeout(Duration::from_secs(5));
    let ask = call.next_event().expect("sampling request").json();
    assert_eq!(ask["method"], "sampling/createMessage");
    let answer = json!({"jsonrpc": "2.0", "id": ask["id"],
        "result": {"role": "assistant", "content": {"type": "text", "text": "hello"}}});
    assert_eq!(post(addr, Some(&sid), &answer.to_string()).status, 202);
    let done = call.next_event().expect("response").json();
    assert_eq!(done["id"], 7);
    assert_eq!(done["result"]["content"][0]["text"], "LLM response: hello");

    let trigger = r#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"test_trigger_tool_change","arguments":{}}}"#;
    assert_eq!(post(addr, Some(&sid), trigger).json()["id"], 8);
    let note = get_stream
        .next_event()
        .expect("list change on the GET stream")
        .json();
    assert_eq!(note["method"], "notifications/tools/list_changed");

    let mut headers = session_headers(&sid);
    headers.retain(|(k, _)| *k != "Content-Type");
    assert_eq!(
        Conn::open(addr)
            .request("DELETE", "/mcp", &headers, b"")
            .status,
        200
    );
    assert_eq!(post(addr, Some(&sid), list).status, 404, "deleted");
}
