//! Every malformed request gets the status and JSON-RPC error the transport prescribes.

use std::time::Duration;

use crate::support::*;

fn rpc_code(r: &Resp) -> i64 {
    r.json()["error"]["code"].as_i64().unwrap_or(0)
}

#[test]
fn matrix() {
    let p = demo_proxy(&["--max-body", "2KiB", "--stdio-children", "1"]);
    let a = p.local_addr();
    let h = JSON_HEADERS;
    let ping = br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;

    // Content-Type not application/json -> 415
    let r = Conn::open(a).request(
        "POST",
        "/mcp",
        &[("Content-Type", "text/plain"), h[1]],
        ping,
    );
    assert_eq!(r.status, 415);

    // Accept without text/event-stream -> 406
    let r = Conn::open(a).request(
        "POST",
        "/mcp",
        &[h[0], ("Accept", "application/json")],
        ping,
    );
    assert_eq!(r.status, 406);

    // Body over --max-body -> 413
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"x":"{}"}}}}"#,
        "a".repeat(4096)
    );
    let r = Conn::open(a).request("POST", "/mcp", &h, big.as_bytes());
    assert_eq!(r.status, 413);

    // Invalid JSON -> 400, -32700, id null
    let r = post(a, None, "{not json");
    assert_eq!((r.status, rpc_code(&r)), (400, -32700));
    assert!(r.json()["id"].is_null());

    // Valid JSON, not JSON-RPC -> 400, -32600
    let r = post(a, None, r#"{"hello":"world"}"#);
    assert_eq!((r.status, rpc_code(&r)), (400, -32600));

    // A batch -> 400, -32600
    let r = post(a, None, r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#);
    assert_eq!((r.status, rpc_code(&r)), (400, -32600));

    // initialize -> 200 with a 128-bit session id
    let r = post(a, None, INIT);
    assert_eq!(r.status, 200);
    let sid = r.header("mcp-session-id").unwrap().to_string();
    assert!(sid.len() >= 32 && sid.bytes().all(|b| (0x21..=0x7e).contains(&b)));
    assert_eq!(r.json()["result"]["protocolVersion"], "2025-11-25");

    // A legacy request without a session -> 400
    let r = post(a, None, std::str::from_utf8(ping).unwrap());
    assert_eq!(r.status, 400);

    // Unknown session -> 404
    let r = post(
        a,
        Some("00000000000000000000000000000000"),
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}",
    );
    assert_eq!(r.status, 404);

    // Unsupported MCP-Protocol-Version -> 400
    let r = Conn::open(a).request(
        "POST",
        "/mcp",
        &[
            h[0],
            h[1],
            ("Mcp-Session-Id", &sid),
            ("MCP-Protocol-Version", "1999-01-01"),
        ],
        ping,
    );
    assert_eq!(r.status, 400);

    // A notification -> 202, no body
    let r = post(
        a,
        Some(&sid),
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    );
    assert_eq!((r.status, r.body.len()), (202, 0));

    // A response -> 202, no body
    let r = post(a, Some(&sid), r#"{"jsonrpc":"2.0","id":"x","result":{}}"#);
    assert_eq!((r.status, r.body.len()), (202, 0));

    // A request in the session works
    let r = post(a, Some(&sid), std::str::from_utf8(ping).unwrap());
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["id"], 1);

    // GET without a session -> 400
    let r = Conn::open(a).request("GET", "/mcp", &[("Accept", "text/event-stream")], b"");
    assert_eq!(r.status, 400);

    // Other methods -> 405 with Allow
    let r = Conn::open(a).request("PUT", "/mcp", &h, ping);
    assert_eq!(r.status, 405);
    assert!(r.header("allow").unwrap().contains("POST"));

    // Other paths -> 404
    let r = Conn::open(a).request("POST", "/other", &h, ping);
    assert_eq!(r.status, 404);

    // Foreign Origin -> 403
    let r = Conn::open(a).request(
        "POST",
        "/mcp",
        &[h[0], h[1], ("Origin", "http://evil.example")],
        INIT.as_bytes(),
    );
    assert_eq!(r.status, 403);

    // Loopback Origin is fine
    let r = Conn::open(a).request(
        "POST",
        "/mcp",
        &[h[0], h[1], ("Origin", "http://localhost:5173")],
        INIT.as_bytes(),
    );
    assert_eq!(r.status, 200);

    // Non-loopback Host on a loopback listener -> 403 (DNS rebinding)
    let r = Conn::open(a).request(
        "POST",
        "/mcp",
        &[h[0], h[1], ("Host", "evil.example")],
        INIT.as_bytes(),
    );
    assert_eq!(r.status, 403);

    // DELETE ends the session; its next use -> 404
    let r = Conn::open(a).request("DELETE", "/mcp", &[("Mcp-Session-Id", &sid)], b"");
    assert_eq!(r.status, 200);
    let r = post(a, Some(&sid), std::str::from_utf8(ping).unwrap());
    assert_eq!(r.status, 404);
}

#[test]
fn sessions_expire_and_are_capped() {
    let p = demo_proxy(&[
        "--session-idle",
        "300ms",
        "--max-sessions",
        "2",
        "--stdio-children",
        "1",
        // One client (one address) here: its own quota must not be what refuses it.
        "--max-sessions-per-client",
        "3",
    ]);
    let a = p.local_addr();
    let s1 = Conn::open(a).initialize();
    let _s2 = Conn::open(a).initialize();
    // Full of live sessions: 503 with Retry-After, nobody evicted.
    let r = post(a, None, INIT);
    assert_eq!(r.status, 503);
    assert!(r.header("retry-after").is_some());
    std::thread::sleep(Duration::from_millis(450));
    // Idle past the limit: gone.
    let r = post(a, Some(&s1), r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#);
    assert_eq!(r.status, 404);
    // And room again.
    assert_eq!(post(a, None, INIT).status, 200);
}
