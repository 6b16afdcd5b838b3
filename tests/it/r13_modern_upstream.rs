//! Issue #13 part B: session-era clients in front of a 2026-07-28-only upstream
//! (`shadowcat demo-server --era modern` over stdio, shared and per-session). The proxy answers
//! `initialize` from the child's `server/discover`, keeps the session, adds the per-request
//! `_meta`, and answers `ping` itself, and turns `InputRequiredResult`s into classic
//! server-to-client requests (`src/bridge/modern_upstream.rs`); `resources/subscribe` and the
//! GET stream are served from the proxy's own `subscriptions/listen` on the child
//! (`src/upstream/stdio/modern_child.rs`).

use std::time::Duration;

use crate::support::*;

fn modern_proxy() -> shadowcat::Shadowcat {
    let cmd = format!("'{}' demo-server --era modern", exe());
    demo_proxy(&["--stdio", &cmd])
}

/// Python `ClientSession` (mcp 2.3.0): initialize, tools/list, echo, resources, ping.
#[test]
fn r13_modern_upstream_python_session_client() {
    let p = modern_proxy();
    let out = run_py("smoke.py", &format!("http://{}/mcp", p.local_addr()));
    assert_eq!(out["protocolVersion"], "2025-11-25", "{out}");
    assert_eq!(out["serverName"], "shadowcat-demo", "{out}");
    assert_eq!(out["echo"], "Echo: hello through MCP", "{out}");
    assert_eq!(out["ping"], true, "{out}");
    assert!(out["resources"].as_u64().unwrap_or(0) > 0, "{out}");
}

/// The TypeScript SDK 1.32 client: initialize, echo with progress, DELETE.
#[test]
fn r13_modern_upstream_ts_session_client() {
    let p = modern_proxy();
    let out = run_js(&format!("http://{}/mcp", p.local_addr()));
    assert_eq!(out["echo"], "Echo: hello from TS", "{out}");
    assert_eq!(out["sessionId"], true, "{out}");
    eprintln!("TS SDK through the proxy to --era modern: {out}");
}

/// Python `ClientSession` with sampling and elicitation callbacks: the child's
/// `InputRequiredResult`s become classic server-to-client requests on the call's stream, and
/// the client's answers go back as `inputResponses` with the child's `requestState`.
#[test]
fn r13_modern_upstream_python_sampling_and_elicitation() {
    let p = modern_proxy();
    let out = run_py("sampling.py", &format!("http://{}/mcp", p.local_addr()));
    assert_eq!(out["sampling"]["requests"], 1, "{out}");
    assert_eq!(out["sampling"]["isError"], false, "{out}");
    assert_eq!(out["elicitation"]["requests"], 1, "{out}");
    assert_eq!(out["elicitation"]["isError"], false, "{out}");
    assert!(
        out["sampling"]["result"]
            .as_str()
            .is_some_and(|t| t.contains("This is a test response from the client")),
        "{out}"
    );
}

/// `resources/subscribe` in front of a 2026-07-28-only child, shared and per-session: the
/// subscriber's GET stream gets `notifications/resources/updated` when the resource changes,
/// another session's does not, and after `resources/unsubscribe` the subscriber's does not
/// either (in per-session mode before this: -32601, and initialize itself refused).
#[test]
fn r13_modern_upstream_resource_subscriptions_reach_the_get_stream() {
    let cmd = format!("'{}' demo-server --era modern", exe());
    for per_session in [false, true] {
        let mut args = vec!["--stdio", cmd.as_str(), "--stdio-children", "1"];
        if per_session {
            args = vec!["--stdio", cmd.as_str(), "--stdio-mode", "per-session"];
        }
        let p = demo_proxy(&args);
        let a = p.local_addr();
        let sub = Conn::open(a).initialize();
        let other = Conn::open(a).initialize();
        let mut gets: Vec<SseConn> = [&sub, &other].iter().map(|s| open_get(a, s)).collect();
        assert!(gets.iter().all(|g| g.status == 200));
        let subscribe = r#"{"jsonrpc":"2.0","id":1,"method":"resources/subscribe","params":{"uri":"test://watched-resource"}}"#;
        let r = post(a, Some(&sub), subscribe);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["result"], serde_json::json!({}), "{}", r.text());
        let update = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"update_watched","arguments":{}}}"#;
        let r = post(a, Some(&sub), update);
        assert_eq!(r.status, 200, "{}", r.text());
        let updated = |g: &mut SseConn| loop {
            match g.next_event() {
                Some(ev) if ev.data.is_empty() => continue, // priming
                Some(ev) => break Some(ev.json()),
                None => break None,
            }
        };
        let ev = updated(&mut gets[0]).expect("the subscriber is told");
        assert_eq!(ev["method"], "notifications/resources/updated", "{ev}");
        assert_eq!(ev["params"]["uri"], "test://watched-resource", "{ev}");
        assert!(ev["params"].get("_meta").is_none(), "no listen tag: {ev}");
        gets[1].r_timeout(Duration::from_millis(300));
        assert_eq!(updated(&mut gets[1]), None, "per-session {per_session}");
        let unsubscribe = r#"{"jsonrpc":"2.0","id":3,"method":"resources/unsubscribe","params":{"uri":"test://watched-resource"}}"#;
        let r = post(a, Some(&sub), unsubscribe);
        assert_eq!(r.status, 200, "{}", r.text());
        let r = post(a, Some(&sub), update);
        assert_eq!(r.status, 200, "{}", r.text());
        gets[0].r_timeout(Duration::from_millis(300));
        assert_eq!(updated(&mut gets[0]), None, "per-session {per_session}");
    }
}

/// Part B over HTTP: Python `ClientSession` (mcp 2.3.0) through the proxy in front of
/// `demo-server --era modern --http` (a 2026-07-28-only HTTP server, which refuses
/// `initialize`): initialize, tools/list, echo, resources, ping; then sampling and elicitation
/// callbacks answering the server's input rounds as classic server-to-client requests.
#[test]
fn r13_modern_http_upstream_python_session_client() {
    let (_demo, addr) = demo_http("modern");
    let upstream = format!("http://{addr}/mcp");
    let p = demo_proxy(&["--upstream", &upstream]);
    let url = format!("http://{}/mcp", p.local_addr());
    let out = run_py("smoke.py", &url);
    assert_eq!(out["protocolVersion"], "2025-11-25", "{out}");
    assert_eq!(out["serverName"], "shadowcat-demo", "{out}");
    assert_eq!(out["echo"], "Echo: hello through MCP", "{out}");
    assert_eq!(out["ping"], true, "{out}");
    let out = run_py("sampling.py", &url);
    assert_eq!(out["sampling"]["requests"], 1, "{out}");
    assert_eq!(out["sampling"]["isError"], false, "{out}");
    assert_eq!(out["elicitation"]["requests"], 1, "{out}");
    assert_eq!(out["elicitation"]["isError"], false, "{out}");
}
