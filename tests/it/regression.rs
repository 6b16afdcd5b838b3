//! Regression tests, named after the issue whose work found the bug.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;

/// Issue #6 (found by the peer benchmark): every ended SSE request stream was kept for the
/// replay TTL and scanned on each new stream, so CPU and memory grew with traffic. A stream
/// whose client received everything must leave nothing behind.
#[test]
fn r6_delivered_streams_leave_no_replay_log() {
    let p = demo_proxy(&["--stdio-children", "1"]);
    let a = p.local_addr();
    let sid = Conn::open(a).initialize();
    for i in 0..50 {
        let body = json!({"jsonrpc":"2.0","id":i,"method":"tools/call","params":{
            "name":"test_tool_with_progress","arguments":{},"_meta":{"progressToken":i}}})
        .to_string();
        let mut s = SseConn::open(a, "POST", &session_headers(&sid), body.as_bytes());
        let evs = s.until_response();
        assert_eq!(evs.last().unwrap().json()["id"], i);
        assert!(s.next_event().is_none());
    }
    let until = Instant::now() + Duration::from_secs(2);
    loop {
        let bytes: usize = p
            .proxy()
            .sessions()
            .list()
            .iter()
            .map(|s| s.streams.bytes())
            .sum();
        if bytes == 0 {
            break;
        }
        assert!(
            Instant::now() < until,
            "{bytes} bytes of replay kept for delivered streams"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Issue #4: "a client that disconnects is noticed on write and its thread ends", here for a
/// standalone stream relayed from an HTTP upstream.
#[test]
fn r4_get_stream_ends_when_its_client_leaves() {
    let (_peer, addr) = everything_http();
    let url = format!("http://{addr}/mcp");
    let p = demo_proxy(&[
        "--upstream",
        &url,
        "--sse-keepalive",
        "50ms",
        "--max-streams",
        "2",
    ]);
    let a = p.local_addr();
    let sid = Conn::open(a).initialize();
    let g = open_get(a, &sid);
    assert_eq!(g.status, 200);
    let until = Instant::now() + Duration::from_secs(2);
    while p.proxy().open_streams() != 1 {
        assert!(Instant::now() < until, "stream never counted");
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(g);
    let until = Instant::now() + Duration::from_secs(2);
    while p.proxy().open_streams() != 0 {
        assert!(
            Instant::now() < until,
            "stream thread still running after its client left"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Issue #6 (found by the peer benchmark): when no slot was left to relay an HTTP upstream's
/// GET stream, the client still got a 200 stream that could never carry anything.
#[test]
fn r6_unrelayable_get_stream_is_refused() {
    let (_peer, addr) = everything_http();
    let url = format!("http://{addr}/mcp");
    let p = demo_proxy(&[
        "--upstream",
        &url,
        "--max-streams",
        "2",
        "--sse-keepalive",
        "50ms",
        // One client (one address) here: its own quota must not be what refuses it.
        "--max-streams-per-client",
        "3",
    ]);
    let a = p.local_addr();
    let init = || {
        // Departed clients' stream permits come back on the next keep-alive write.
        let until = Instant::now() + Duration::from_secs(3);
        loop {
            let r = post(a, None, INIT);
            if r.status == 200 {
                return r.header("mcp-session-id").unwrap().to_string();
            }
            assert!(Instant::now() < until, "{}", r.text());
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    // Two sessions' relays take both upstream stream slots; their clients leave, which frees
    // the proxy's own stream permits but not the relays (the upstream streams stay open).
    for _ in 0..2 {
        let g = open_get(a, &init());
        assert_eq!(g.status, 200);
        drop(g);
        std::thread::sleep(Duration::from_millis(200));
    }
    let started = Instant::now();
    let g = open_get(a, &init());
    assert_eq!(
        g.status, 503,
        "no relay slot: refuse, do not hand out a dead stream"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

/// Issue #7 (found by the jsonrpc fuzz target): a pretty-printed request kept its newlines on
/// the way to a stdio child, which reads one message per line: the child got broken JSON and
/// the call hung until the request timeout.
#[test]
fn r7_pretty_printed_request_reaches_the_child_as_one_line() {
    let p = demo_proxy(&["--stdio-children", "1", "--request-timeout", "5s"]);
    let a = p.local_addr();
    let sid = Conn::open(a).initialize();
    let body = "{\n  \"jsonrpc\": \"2.0\",\r\n  \"id\": 9,\n  \"method\": \"tools/call\",\n  \
                \"params\": {\n    \"name\": \"echo\",\n    \"arguments\": {\"message\": \"a\\nb\"}\n  }\n}\n";
    let started = Instant::now();
    let r = Conn::open(a).post(Some(&sid), body);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["result"]["content"][0]["text"], "Echo: a\nb");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

/// Issue #7 (found by the jsonrpc fuzz target): with a progress token, params went through a
/// parsed JSON value, so a token like `-1.5e3` came back as `-1500.0` (and big numbers in
/// arguments were rounded). The token must come back exactly as sent.
#[test]
fn r7_progress_token_comes_back_byte_identical() {
    let p = demo_proxy(&["--stdio-children", "1"]);
    let a = p.local_addr();
    let sid = Conn::open(a).initialize();
    for token in [
        "-1.5e3",
        "18446744073709551615",
        "9007199254740993",
        "\"t-1\"",
    ] {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"test_tool_with_progress","arguments":{{}},"_meta":{{"progressToken":{token}}}}}}}"#
        );
        let mut s = SseConn::open(a, "POST", &session_headers(&sid), body.as_bytes());
        let evs = s.until_response();
        let progress: Vec<&SseEvent> = evs.iter().filter(|e| e.data.contains("progress")).collect();
        assert!(progress.len() >= 2, "{evs:?}");
        for e in progress.iter().filter(|e| e.json().get("method").is_some()) {
            assert!(
                e.data.contains(&format!("\"progressToken\":{token}")),
                "{token} changed: {}",
                e.data
            );
        }
    }
}

/// Issue #7 (found by the headers fuzz target): a Host or Origin with userinfo
/// (`localhost:1@evil.example`) passed the loopback check.
#[test]
fn r7_userinfo_in_host_or_origin_is_not_loopback() {
    let p = demo_proxy(&[]);
    let a = p.local_addr();
    for (name, value) in [
        ("Host", "localhost:1@evil.example"),
        ("Host", "[::1]:@9"),
        ("Origin", "http://localhost:80@evil.example"),
    ] {
        let mut h: Vec<(&str, &str)> = JSON_HEADERS.to_vec();
        h.push((name, value));
        let r = Conn::open(a).request("POST", "/mcp", &h, INIT.as_bytes());
        assert_eq!(r.status, 403, "{name}: {value}");
    }
}
