//! stdio per-session mode: a dedicated child per session from a warm pool.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::lifecycle::alive;
use crate::support::*;

fn read_watched(c: &mut Conn, sid: &str) -> String {
    let r = c.post(
        Some(sid),
        r#"{"jsonrpc":"2.0","id":9,"method":"resources/read","params":{"uri":"test://watched-resource"}}"#,
    );
    r.json()["result"]["contents"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn sessions_do_not_share_demo_state() {
    let p = demo_proxy(&["--stdio-mode", "per-session"]);
    let a = p.local_addr();
    let mut ca = Conn::open(a);
    let mut cb = Conn::open(a);
    let sa = ca.initialize();
    let sb = cb.initialize();
    let before = read_watched(&mut cb, &sb);
    let r = ca.post(
        Some(&sa),
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"update_watched","arguments":{}}}"#,
    );
    assert_eq!(r.status, 200);
    assert_ne!(read_watched(&mut ca, &sa), before, "A sees its own change");
    assert_eq!(
        read_watched(&mut cb, &sb),
        before,
        "B does not see A's change"
    );
}

fn tool_names(c: &mut Conn, sid: &str) -> Vec<String> {
    let r = c.post(
        Some(sid),
        r#"{"jsonrpc":"2.0","id":5,"method":"tools/list"}"#,
    );
    r.messages().last().unwrap()["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

/// server-everything registers tools from the client's declared capabilities: with a child
/// per session and the client's initialize forwarded verbatim, each session sees its own.
#[test]
fn server_everything_sessions_keep_their_own_state() {
    let cmd = format!("node {}", everything_js());
    let p = demo_proxy(&[
        "--stdio",
        &cmd,
        "--stdio-mode",
        "per-session",
        "--stdio-spares",
        "2",
    ]);
    let a = p.local_addr();
    let mut with = Conn::open(a);
    let r = with.post(
        None,
        &INIT.replace(r#""capabilities":{}"#, r#""capabilities":{"sampling":{}}"#),
    );
    assert_eq!(r.status, 200);
    let s_with = r.header("mcp-session-id").unwrap().to_string();
    with.post(
        Some(&s_with),
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    );
    let mut without = Conn::open(a);
    let s_without = without.initialize();
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let t = tool_names(&mut with, &s_with);
        if t.iter().any(|n| n == "trigger-sampling-request") {
            break;
        }
        assert!(
            Instant::now() < until,
            "sampling tool never registered: {t:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let t = tool_names(&mut without, &s_without);
    assert!(!t.iter().any(|n| n == "trigger-sampling-request"), "{t:?}");
}

#[test]
fn children_are_capped_and_killed_with_their_session() {
    let p = demo_proxy(&[
        "--stdio-mode",
        "per-session",
        "--stdio-children",
        "2",
        "--stdio-spares",
        "1",
        // One client (one address) here: its own quota must not be what refuses it.
        "--max-sessions-per-client",
        "3",
    ]);
    let a = p.local_addr();
    let s1 = Conn::open(a).initialize();
    let _s2 = Conn::open(a).initialize();
    let r = post(a, None, INIT);
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.header("retry-after").is_some());
    let pids_before = p.stdio_child_pids();
    assert_eq!(pids_before.len(), 2);
    let r = Conn::open(a).request("DELETE", "/mcp", &[("Mcp-Session-Id", &s1)], b"");
    assert_eq!(r.status, 200);
    // The deleted session's child goes away...
    let until = Instant::now() + Duration::from_secs(8);
    while pids_before.iter().flatten().filter(|&&p| !alive(p)).count() != 1 {
        assert!(
            Instant::now() < until,
            "child of the deleted session still running"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // ...and its room goes to a new session.
    loop {
        let r = post(a, None, INIT);
        if r.status == 200 {
            break;
        }
        assert_eq!(r.status, 503);
        assert!(Instant::now() < until, "no room after the delete");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn idle_sessions_lose_their_child() {
    let p = demo_proxy(&[
        "--stdio-mode",
        "per-session",
        "--stdio-spares",
        "1",
        "--session-idle",
        "300ms",
    ]);
    let a = p.local_addr();
    let _sid = Conn::open(a).initialize();
    let until = Instant::now() + Duration::from_secs(10);
    while p.stdio_child_pids().len() < 2 {
        assert!(Instant::now() < until, "spare not replenished");
        std::thread::sleep(Duration::from_millis(20));
    }
    let until = Instant::now() + Duration::from_secs(5);
    while p.stdio_child_pids().len() != 1 {
        assert!(Instant::now() < until, "idle session's child still there");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn python_sdk_through_per_session_mode() {
    let cmd = format!("node {}", everything_js());
    let p = demo_proxy(&["--stdio", &cmd, "--stdio-mode", "per-session"]);
    let out = run_py("smoke.py", &format!("http://{}/mcp", p.local_addr()));
    assert_eq!(out["echo"], "Echo: hello through MCP", "{out}");
    assert_eq!(out["resources"], 7, "{out}");
}

fn tool_call(id: u64, name: &str, args: serde_json::Value) -> String {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":name,"arguments":args}})
        .to_string()
}

/// Their I/O is one shared thread now (issue #14): crashes, broken lines and children that
/// stop reading are still seen, each by its own session only.
#[test]
fn children_still_crash_hang_and_break_visibly() {
    let p = demo_proxy(&[
        "--stdio-mode",
        "per-session",
        "--stdio-spares",
        "1",
        "--request-timeout",
        "700ms",
        "--max-message",
        "64KiB",
        "--max-sessions-per-client",
        "8",
    ]);
    let a = p.local_addr();
    // A crash fails the call in flight at once; the session is gone (404).
    let sid = Conn::open(a).initialize();
    let started = Instant::now();
    let r = post(a, Some(&sid), &tool_call(1, "crash", json!({})));
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(started.elapsed() < Duration::from_millis(650));
    let r = post(a, Some(&sid), &tool_call(2, "echo", json!({"message":"x"})));
    assert_eq!(r.status, 404, "{}", r.text());
    // A line over --max-message marks the child broken.
    let sid = Conn::open(a).initialize();
    let r = post(
        a,
        Some(&sid),
        &tool_call(1, "huge_line", json!({"bytes":200000})),
    );
    assert_eq!(r.json()["error"]["code"], -32603, "{}", r.text());
    let r = post(a, Some(&sid), &tool_call(2, "echo", json!({"message":"x"})));
    assert_eq!(r.status, 404, "{}", r.text());
    // A child that stops reading: big requests fill its pipe and its outbox, and each is
    // answered by its deadline; nothing waits forever.
    let sid = Conn::open(a).initialize();
    let r = post(a, Some(&sid), &tool_call(1, "stop_reading", json!({})));
    assert_eq!(r.status, 200, "{}", r.text());
    let big = "y".repeat(300_000);
    let calls: Vec<_> = (0..6)
        .map(|i| {
            let (sid, big) = (sid.clone(), big.clone());
            std::thread::spawn(move || {
                let started = Instant::now();
                let r = post(
                    a,
                    Some(&sid),
                    &tool_call(10 + i, "echo", json!({"message": big})),
                );
                (r.status, started.elapsed())
            })
        })
        .collect();
    for c in calls {
        let (status, took) = c.join().expect("call");
        assert!(status == 504 || status == 200, "{status}");
        assert!(took < Duration::from_secs(10), "{took:?}");
    }
    // Other sessions never noticed.
    let other = Conn::open(a).initialize();
    let r = post(
        a,
        Some(&other),
        &tool_call(1, "echo", json!({"message":"fine"})),
    );
    assert!(r.text().contains("fine"), "{}", r.text());
}
