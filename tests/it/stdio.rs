//! stdio upstreams: persistent children, id rewriting, isolation.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;

#[test]
fn demo_echo_round_trip() {
    let p = demo_proxy(&[]);
    let mut c = Conn::open(p.local_addr());
    let sid = c.initialize();
    let r = c.post(
        Some(&sid),
        r#"{"jsonrpc":"2.0","id":"abc","method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"}}}"#,
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    assert_eq!(v["id"], "abc");
    assert_eq!(v["result"]["content"][0]["text"], "Echo: hi");
}

#[test]
fn ids_are_restored_exactly() {
    let p = demo_proxy(&[]);
    let mut c = Conn::open(p.local_addr());
    let sid = c.initialize();
    for id in [
        "\"7\"",
        "7",
        "0",
        "-3",
        "9007199254740993",
        "18446744073709551615",
        "\"\"",
    ] {
        let r = c.post(
            Some(&sid),
            &format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#),
        );
        assert_eq!(r.status, 200, "{id}");
        let text = r.text();
        assert!(
            text.contains(&format!("\"id\":{id}")),
            "{id} came back as {text}"
        );
    }
}

#[test]
fn version_negotiation_keeps_the_clients_version() {
    let p = demo_proxy(&[]);
    for v in ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"] {
        let body = INIT.replace("2025-11-25", v);
        let r = post(p.local_addr(), None, &body);
        assert_eq!(r.json()["result"]["protocolVersion"], v);
    }
    // Unknown future version: the child's.
    let r = post(
        p.local_addr(),
        None,
        &INIT.replace("2025-11-25", "2099-01-01"),
    );
    assert_eq!(r.json()["result"]["protocolVersion"], "2025-11-25");
}

#[test]
fn progress_streams_as_sse_then_result() {
    let p = demo_proxy(&[]);
    let mut c = Conn::open(p.local_addr());
    let sid = c.initialize();
    let r = c.post(
        Some(&sid),
        r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"test_tool_with_progress","arguments":{},"_meta":{"progressToken":"tok-1"}}}"#,
    );
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("text/event-stream")
    );
    let msgs = r.messages();
    let progress: Vec<_> = msgs
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .collect();
    assert_eq!(progress.len(), 3, "{msgs:?}");
    assert!(
        progress
            .iter()
            .all(|m| m["params"]["progressToken"] == "tok-1")
    );
    let last = msgs.last().unwrap();
    assert_eq!(last["id"], 5);
    assert!(last.get("result").is_some());
    // Keep-alive still works after a stream.
    let r = c.post(Some(&sid), r#"{"jsonrpc":"2.0","id":6,"method":"ping"}"#);
    assert_eq!(r.status, 200);
}

/// 32 sessions × 100 calls through 2 children, every client using ids 1..=100: each caller
/// gets exactly its own replies, ids restored.
#[test]
fn isolation_32_sessions_same_ids() {
    let p = Arc::new(demo_proxy(&["--stdio-children", "2"]));
    let addr = p.local_addr();
    let handles: Vec<_> = (0..32)
        .map(|client| {
            std::thread::spawn(move || {
                let mut c = Conn::open(addr);
                let sid = c.initialize();
                for id in 1..=100 {
                    let msg = format!("client {client} call {id}");
                    let body = json!({"jsonrpc":"2.0","id":id,"method":"tools/call",
                        "params":{"name":"echo","arguments":{"message": msg}}});
                    let r = c.post(Some(&sid), &body.to_string());
                    assert_eq!(r.status, 200);
                    // JSON, or an SSE stream when the answer took longer than the proxy waits
                    // to answer plainly (a loaded machine): the last message is the response.
                    let v = r.messages().pop().expect("an answer");
                    assert_eq!(v["id"], id);
                    assert_eq!(v["result"]["content"][0]["text"], format!("Echo: {msg}"));
                }
                sid
            })
        })
        .collect();
    let sids: HashSet<String> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(sids.len(), 32);
    // Sessions were spread over both children.
    let pids = p.stdio_child_pids();
    assert_eq!(pids.iter().flatten().count(), 2);
}

#[test]
fn server_everything_over_stdio() {
    let cmd = format!("node {}", everything_js());
    let p = demo_proxy(&["--stdio", &cmd, "--stdio-children", "1"]);
    let mut c = Conn::open(p.local_addr());
    let sid = c.initialize();
    let r = c.post(
        Some(&sid),
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hello through MCP"}}}"#,
    );
    assert_eq!(r.status, 200);
    let v = &r.messages()[0];
    assert_eq!(v["result"]["content"][0]["text"], "Echo: hello through MCP");
    let r = c.post(
        Some(&sid),
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#,
    );
    let tools = r.messages()[0]["result"]["tools"].as_array().unwrap().len();
    assert!(tools >= 13, "{tools} tools");
}

#[test]
fn plain_calls_of_two_sessions_share_a_child() {
    // Clients that can take nothing and asked for nothing share the child freely: two slow
    // calls of two sessions overlap.
    let p = demo_proxy(&["--stdio-children", "1"]);
    let a = p.local_addr();
    let (s1, s2) = (Conn::open(a).initialize(), Conn::open(a).initialize());
    let started = Instant::now();
    let calls: Vec<_> = [s1, s2]
        .into_iter()
        .map(|sid| {
            std::thread::spawn(move || {
                let body = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"slow_echo","arguments":{"message":"x","delayMs":600}}}).to_string();
                post(a, Some(&sid), &body).status
            })
        })
        .collect();
    for c in calls {
        assert_eq!(c.join().unwrap(), 200);
    }
    assert!(
        started.elapsed() < Duration::from_millis(1100),
        "plain calls were serialized: {:?}",
        started.elapsed()
    );
}
