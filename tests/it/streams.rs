//! Server-to-client traffic, resumable streams and routing.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;

fn progress_of(ev: &SseEvent) -> Option<u64> {
    let v = ev.json();
    (v["method"] == "notifications/progress").then(|| v["params"]["progress"].as_u64().unwrap())
}

/// Cut a client mid tool call after 5 events, resume with Last-Event-ID: every remaining
/// event and the result arrive exactly once.
#[test]
fn resume_after_a_cut_gets_every_event_once() {
    let p = demo_proxy(&["--stdio-children", "1"]);
    let a = p.local_addr();
    let sid = Conn::open(a).initialize();
    let body = json!({"jsonrpc":"2.0","id":42,"method":"tools/call","params":{
        "name":"stream_events","arguments":{"count":20,"intervalMs":20},
        "_meta":{"progressToken":"resume-me"}}})
    .to_string();
    let mut first = SseConn::open(a, "POST", &session_headers(&sid), body.as_bytes());
    assert_eq!(first.status, 200);
    let mut seen = Vec::new();
    let mut last_id = None;
    while seen.len() < 5 {
        let ev = first.next_event().expect("event");
        assert!(ev.id.is_some(), "every event carries an id: {ev:?}");
        last_id = ev.id.clone();
        if let Some(n) = progress_of(&ev) {
            seen.push(n);
        }
    }
    drop(first); // the client's connection is cut
    std::thread::sleep(Duration::from_millis(100));
    let last = last_id.unwrap();
    let mut h = session_headers(&sid);
    h.push(("Last-Event-ID", &last));
    let mut resumed = SseConn::open(a, "GET", &h, b"");
    assert_eq!(resumed.status, 200);
    let rest = resumed.until_response();
    let mut ids = HashSet::new();
    let mut results = 0;
    for ev in &rest {
        assert!(ids.insert(ev.id.clone().unwrap()), "duplicate event {ev:?}");
        if let Some(n) = progress_of(ev) {
            seen.push(n);
        }
        if ev.json()["id"] == 42 {
            results += 1;
            assert_eq!(
                ev.json()["result"]["content"][0]["text"],
                "streamed 20 events"
            );
        }
    }
    assert_eq!(results, 1);
    let expected: Vec<u64> = (1..=20).collect();
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(sorted, expected, "got {seen:?}");
    assert_eq!(seen, expected, "in order");
    // The stream ended after the result.
    assert!(resumed.next_event().is_none());
}

#[test]
fn unknown_or_foreign_event_ids_are_refused() {
    let p = demo_proxy(&["--stdio-children", "1"]);
    let a = p.local_addr();
    let sid = Conn::open(a).initialize();
    for bad in ["99-1", "garbage", "1-999"] {
        let mut h = session_headers(&sid);
        h.push(("Last-Event-ID", bad));
        let r = Conn::open(a).request("GET", "/mcp", &h, b"");
        assert_eq!(r.status, 400, "{bad}");
        assert_eq!(r.json()["error"]["code"], -32600);
    }
}

#[test]
fn priming_event_then_progress_then_result() {
    let p = demo_proxy(&["--stdio-children", "1"]);
    let a = p.local_addr();
    let sid = Conn::open(a).initialize();
    let body = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{
        "name":"test_tool_with_progress","arguments":{},"_meta":{"progressToken":7}}})
    .to_string();
    let mut s = SseConn::open(a, "POST", &session_headers(&sid), body.as_bytes());
    let evs = s.until_response();
    assert!(
        evs[0].data.is_empty() && evs[0].id.is_some(),
        "priming first: {evs:?}"
    );
    let progress: Vec<_> = evs.iter().filter_map(progress_of).collect();
    assert_eq!(progress, vec![0, 50, 100]);
    assert!(evs.iter().all(|e| e.id.is_some()));
    assert_eq!(evs.last().unwrap().json()["id"], 1);
}

#[test]
fn resource_updates_reach_only_subscribers() {
    let p = demo_proxy(&["--stdio-children", "1"]);
    let a = p.local_addr();
    let sub = Conn::open(a).initialize();
    let other = Conn::open(a).initialize();
    let mut gets: Vec<SseConn> = [&sub, &other].iter().map(|sid| open_get(a, sid)).collect();
    assert!(gets.iter().all(|g| g.status == 200));
    let r = post(
        a,
        Some(&sub),
        r#"{"jsonrpc":"2.0","id":1,"method":"resources/subscribe","params":{"uri":"test://watched-resource"}}"#,
    );
    assert_eq!(r.status, 200);
    let r = post(
        a,
        Some(&sub),
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"update_watched","arguments":{}}}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let ev = gets[0].next_event().expect("subscriber notified");
    assert_eq!(ev.json()["method"], "notifications/resources/updated");
    assert_eq!(ev.json()["params"]["uri"], "test://watched-resource");
    // The other session got nothing: its next event is a keep-alive-free timeout.
    let other_get = &mut gets[1];
    other_get.r_timeout(Duration::from_millis(300));
    assert!(other_get.next_event().is_none());
}

#[test]
fn second_get_replaces_the_first() {
    let p = demo_proxy(&["--stdio-children", "1"]);
    let a = p.local_addr();
    let sid = Conn::open(a).initialize();
    let h = get_headers(&sid);
    let mut g1 = SseConn::open(a, "GET", &h, b"");
    assert_eq!(g1.status, 200);
    let g2 = SseConn::open(a, "GET", &h, b"");
    assert_eq!(g2.status, 200);
    let started = Instant::now();
    assert!(g1.next_event().is_none(), "the first stream ends");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn ambiguous_server_request_is_refused_not_guessed() {
    let p = demo_proxy(&["--stdio-children", "1"]);
    let a = p.local_addr();
    let busy = Conn::open(a).initialize();
    let asker = Conn::open(a).initialize();
    // Session "busy" keeps a call in flight on the shared child...
    let t = std::thread::spawn(move || {
        post(
            a,
            Some(&busy),
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"slow_echo","arguments":{"message":"x","delayMs":1500}}}"#,
        )
    });
    std::thread::sleep(Duration::from_millis(200));
    // ...so a sampling request caused by "asker" cannot be attributed: the child is answered
    // with an error and the tool reports it, instead of the request reaching a wrong client.
    let r = post(
        a,
        Some(&asker),
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"test_sampling","arguments":{"prompt":"hi"}}}"#,
    );
    let msgs = r.messages();
    assert!(
        msgs.iter().all(|m| m["method"] != "sampling/createMessage"),
        "{msgs:?}"
    );
    let last = msgs.last().unwrap();
    assert_eq!(last["id"], 2);
    assert!(
        last["result"]["isError"] == true || last.get("error").is_some(),
        "{last}"
    );
    assert_eq!(t.join().unwrap().status, 200);
}

#[test]
fn python_sdk_sampling_and_elicitation_callbacks() {
    let p = demo_proxy(&[]);
    let out = run_py("sampling.py", &format!("http://{}/mcp", p.local_addr()));
    assert_eq!(
        out["sampling"]["result"], "LLM response: This is a test response from the client",
        "{out}"
    );
    assert_eq!(out["sampling"]["requests"], 1);
    assert_eq!(out["elicitation"]["requests"], 1);
    assert_eq!(out["elicitation"]["isError"], false, "{out}");
}

#[test]
fn streams_beyond_the_cap_get_503() {
    // One client (one address) here: its own quota must not be what refuses it.
    let p = demo_proxy(&[
        "--stdio-children",
        "1",
        "--max-streams",
        "1",
        "--max-streams-per-client",
        "2",
    ]);
    let a = p.local_addr();
    let s1 = Conn::open(a).initialize();
    let s2 = Conn::open(a).initialize();
    let first = open_get(a, &s1);
    assert_eq!(first.status, 200);
    let mut second = Conn::open(a);
    let r = second.request("GET", "/mcp", &get_headers(&s2), b"");
    assert_eq!(r.status, 503);
    assert!(r.header("retry-after").is_some());
    // Plain JSON requests are not streams: still served.
    let r = post(a, Some(&s2), r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#);
    assert_eq!(r.status, 200);
    drop(first);
}
