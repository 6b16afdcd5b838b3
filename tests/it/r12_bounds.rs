//! Issue #12, items 2 and 5: what a client can make the proxy hold is bounded in bytes.
//!
//! * Item 2: a call that streams as fast as it can to a client that never reads costs at
//!   most the call's queue (`--max-call-buffer`) and the stream's replay log, not a copy of
//!   everything the child says; another session on the same child is still served; what was
//!   dropped is counted. An HTTP upstream's stream is read only as fast as the client reads.
//! * Item 5: a session stores a known protocol version, never the client's text; it holds at
//!   most `--max-subscriptions` URIs of bounded length; all replay logs share one
//!   `--replay-budget`, the oldest ended streams evicted first.
//!
//! Memory is measured as the proxy process's RSS (`/proc/PID/status`), so these tests run
//! the proxy as a process of its own ([`spawn_proxy`]) where they measure it.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shadowcat::http::{Handler, Request, Responder, Response, Server, ServerConfig};

use crate::support::*;

/// KiB in a MiB (RSS is read in KiB).
const MIB: u64 = 1024;

/// Resident set size of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// The value of the sample `series` (name and labels, exactly) in the proxy's `/metrics`.
fn metric(addr: SocketAddr, series: &str) -> f64 {
    let text = get(addr, "/metrics", &[]).text();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in /metrics"))
}

/// Sends a POST on a raw socket and never reads the answer.
fn post_and_never_read(addr: SocketAddr, sid: &str, body: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    let mut head = format!("POST /mcp HTTP/1.1\r\nHost: {addr}\r\n");
    for (k, v) in session_headers(sid) {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(head.as_bytes()).expect("write");
    s
}

/// Calls `echo` `n` times on `c` in session `sid`, checking each answer; returns the
/// latencies.
fn echoes(c: &mut Conn, sid: &str, n: usize) -> Vec<Duration> {
    (0..n)
        .map(|i| {
            let body = json!({"jsonrpc":"2.0","id":i,"method":"tools/call",
                "params":{"name":"echo","arguments":{"message":format!("m{i}")}}});
            let t = Instant::now();
            let r = c.post(Some(sid), &body.to_string());
            let took = t.elapsed();
            assert_eq!(r.status, 200, "{}", r.text());
            let m = r.messages();
            let last = m.last().expect("an answer");
            assert_eq!(last["result"]["content"][0]["text"], format!("Echo: m{i}"));
            took
        })
        .collect()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// Item 2: `stream_events` with no pause, from a socket that never reads. Before the fix the
/// call's channel grew without limit (~140 MiB/s in a release build) until the write timed
/// out. Now the proxy holds the call's queue and the stream's log, and drops the rest. (The
/// 20 s measurement against a release build is `scripts/hostile flood`.)
#[test]
fn r12_2_a_flood_to_a_client_that_never_reads_stays_bounded_and_others_are_served() {
    // One child, so the flood and the other session share its reader thread. A small call
    // buffer, so that drops start early even when a loaded machine slows the flood down.
    let (peer, addr) = spawn_proxy(
        &[
            "--stdio-children",
            "1",
            "--request-timeout",
            "20s",
            "--max-call-buffer",
            "256KiB",
        ],
        Stdio::null(),
        &[],
    );
    let pid = peer.0.id();
    let mut other = Conn::open(addr);
    let osid = other.initialize();
    echoes(&mut other, &osid, 3);
    let fsid = Conn::open(addr).initialize();
    let before = rss_kib(pid);
    let flood = json!({"jsonrpc":"2.0","id":"flood","method":"tools/call","params":{
        "name":"stream_events","arguments":{"count":1_000_000_000u64,"intervalMs":0},
        "_meta":{"progressToken":"flood"}}});
    let sock = post_and_never_read(addr, &fsid, &flood.to_string());
    let mut peak = before;
    let mut latencies = Vec::new();
    let until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < until {
        latencies.extend(echoes(&mut other, &osid, 1));
        peak = peak.max(rss_kib(pid));
        std::thread::sleep(Duration::from_millis(50));
    }
    let grown = peak.saturating_sub(before);
    eprintln!(
        "flood: RSS {before} KiB -> peak {peak} KiB (+{grown} KiB); other session: {} calls, \
         median {:?}",
        latencies.len(),
        median(latencies.clone())
    );
    // The bound the issue asks for; the call's queue (8 MiB) and the stream's replay log
    // (4 MiB) are what may be held. A debug build without the fix grows ~12 MiB/s here.
    assert!(
        grown < 32 * MIB,
        "the proxy grew by {grown} KiB while a client did not read"
    );
    assert!(latencies.len() >= 5, "the other session was barely served");
    assert!(
        median(latencies) < Duration::from_secs(1),
        "the other session was slowed down"
    );
    // The client leaves: its stream thread polls again and counts what was dropped.
    drop(sock);
    let series = r#"shadowcat_dropped_messages_total{reason="slow_client"}"#;
    let until = Instant::now() + Duration::from_secs(15);
    while metric(addr, series) == 0.0 {
        assert!(Instant::now() < until, "no dropped messages were counted");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An HTTP upstream whose `flood` tool streams events until the proxy stops reading (or
/// 15 s pass); anything else is answered at once.
struct Flooder {
    stop: AtomicBool,
}

impl Handler for Flooder {
    fn handle(&self, req: Request, res: &mut Responder<'_>) {
        let msg: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let id = msg["id"].clone();
        if msg.get("id").is_none() {
            let _ = res.send(Response::new(202));
            return;
        }
        if msg["params"]["name"] != "flood" {
            let result = if msg["method"] == "initialize" {
                json!({"protocolVersion":"2025-11-25","capabilities":{},
                    "serverInfo":{"name":"flooder","version":"1"}})
            } else {
                json!({"content":[{"type":"text","text":"ok"}]})
            };
            let body = json!({"jsonrpc":"2.0","id":id,"result":result});
            let _ = res.send(
                Response::new(200)
                    .with_header("mcp-session-id", "flooder-session")
                    .with_body("application/json", body.to_string().into_bytes()),
            );
            return;
        }
        let hs = [("content-type".to_string(), "text/event-stream".to_string())];
        let Ok(mut w) = res.stream(200, &hs) else {
            return;
        };
        let until = Instant::now() + Duration::from_secs(15);
        let pad = "x".repeat(512);
        for i in 0u64.. {
            if self.stop.load(Ordering::Relaxed) || Instant::now() > until {
                break;
            }
            let ev = json!({"jsonrpc":"2.0","method":"notifications/progress",
                "params":{"progressToken":1,"progress":i,"message":pad}});
            if w.write_chunk(format!("id: {i}\ndata: {ev}\n\n").as_bytes())
                .is_err()
            {
                return;
            }
        }
        let fin = json!({"jsonrpc":"2.0","id":id,"result":{"content":[]}});
        let _ = w.write_chunk(format!("data: {fin}\n\n").as_bytes());
        let _ = w.finish();
    }
}

/// Item 2, HTTP upstream: nothing to fix there (a stream is read only when polled), and this
/// keeps it so: the same flood through an HTTP upstream leaves the proxy's memory flat while
/// another session is served.
#[test]
fn r12_2_http_upstream_flood_is_read_only_as_fast_as_the_client_reads() {
    init_log();
    let flooder = Arc::new(Flooder {
        stop: AtomicBool::new(false),
    });
    let cfg = ServerConfig {
        idle_timeout: Duration::from_secs(3),
        ..ServerConfig::default()
    };
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let server = Server::start(l, cfg, flooder.clone()).expect("fixture starts");
    let url = format!("http://{}/mcp", server.local_addr());
    let (peer, addr) = spawn_proxy(&["--upstream", &url], Stdio::null(), &[]);
    let pid = peer.0.id();
    let mut other = Conn::open(addr);
    let osid = other.initialize();
    let fsid = Conn::open(addr).initialize();
    let before = rss_kib(pid);
    let flood = json!({"jsonrpc":"2.0","id":1,"method":"tools/call",
        "params":{"name":"flood","arguments":{}}});
    let sock = post_and_never_read(addr, &fsid, &flood.to_string());
    let mut peak = before;
    let until = Instant::now() + Duration::from_secs(3);
    let mut served = 0;
    while Instant::now() < until {
        let r = other.post(
            Some(&osid),
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"x"}}"#,
        );
        assert_eq!(r.status, 200, "{}", r.text());
        served += 1;
        peak = peak.max(rss_kib(pid));
        std::thread::sleep(Duration::from_millis(50));
    }
    let grown = peak.saturating_sub(before);
    eprintln!("http flood: RSS {before} KiB -> peak {peak} KiB (+{grown} KiB), {served} served");
    assert!(grown < 64 * MIB, "the proxy grew by {grown} KiB");
    flooder.stop.store(true, Ordering::Relaxed);
    drop(sock);
    drop(peer);
    drop(server);
}

/// Item 5: a 3 MiB `protocolVersion` is negotiated, not stored: the answer and the session
/// (as `/admin/sessions` shows it) carry a version the proxy knows.
#[test]
fn r12_5_an_unknown_protocol_version_is_negotiated_not_stored() {
    let p = demo_proxy(&["--admin-bind", "127.0.0.1:0"]);
    let (addr, admin) = (p.local_addr(), p.admin_addr().expect("admin"));
    let huge = "9".repeat(3 * 1024 * 1024);
    let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
        "protocolVersion":huge,"capabilities":{},"clientInfo":{"name":"it","version":"1"}}});
    for _ in 0..3 {
        let r = post(addr, None, &init.to_string());
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["result"]["protocolVersion"], "2025-11-25");
    }
    // A known older version is kept as the constant it is.
    let old = INIT.replace("2025-11-25", "2025-03-26");
    let r = post(addr, None, &old);
    assert_eq!(r.json()["result"]["protocolVersion"], "2025-03-26");
    let list = get(admin, "/admin/sessions", &[]);
    assert!(
        list.body.len() < 64 * 1024,
        "/admin/sessions is {} bytes",
        list.body.len()
    );
    let list = list.json();
    let versions: Vec<&str> = list["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .filter_map(|s| s["protocolVersion"].as_str())
        .collect();
    assert_eq!(versions.len(), 4);
    assert_eq!(
        versions.iter().filter(|v| **v == "2025-11-25").count(),
        3,
        "{versions:?}"
    );
    assert!(versions.contains(&"2025-03-26"));
    // The new bounds are shown with their defaults.
    let cfg = get(admin, "/admin/config", &[]).json();
    assert_eq!(cfg["maxCallBufferBytes"], 8 * 1024 * 1024);
    assert_eq!(cfg["maxSubscriptions"], 64);
    assert_eq!(cfg["replayBudgetBytes"], 256 * 1024 * 1024);
}

fn subscribe(c: &mut Conn, sid: &str, id: usize, method: &str, uri: &str) -> Value {
    let body = json!({"jsonrpc":"2.0","id":id,"method":method,"params":{"uri":uri}});
    let r = c.post(Some(sid), &body.to_string());
    assert_eq!(
        r.status, 200,
        "a refusal is a JSON-RPC error, not a transport error"
    );
    r.json()
}

/// Item 5: a session holds at most `--max-subscriptions` (64) URIs, each at most 8 KiB; past
/// that, the request gets a JSON-RPC error and the session stays usable.
#[test]
fn r12_5_subscriptions_per_session_are_capped() {
    let p = demo_proxy(&[]);
    let addr = p.local_addr();
    let mut c = Conn::open(addr);
    let sid = c.initialize();
    for i in 0..64 {
        let a = subscribe(
            &mut c,
            &sid,
            i,
            "resources/subscribe",
            &format!("test://r/{i}"),
        );
        assert!(a.get("result").is_some(), "subscription {i}: {a}");
    }
    let refused = subscribe(&mut c, &sid, 64, "resources/subscribe", "test://r/64");
    assert_eq!(refused["error"]["code"], -32602, "{refused}");
    assert_eq!(refused["id"], 64);
    assert!(
        refused["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("--max-subscriptions"))
    );
    // One already held is still fine; unsubscribing makes room.
    let again = subscribe(&mut c, &sid, 65, "resources/subscribe", "test://r/0");
    assert!(again.get("result").is_some(), "{again}");
    let un = subscribe(&mut c, &sid, 66, "resources/unsubscribe", "test://r/0");
    assert!(un.get("result").is_some(), "{un}");
    let now = subscribe(&mut c, &sid, 67, "resources/subscribe", "test://r/64");
    assert!(now.get("result").is_some(), "{now}");
    // Another session has its own allowance, but no URI may be over 8 KiB.
    let mut d = Conn::open(addr);
    let sid2 = d.initialize();
    let long = format!("test://{}", "u".repeat(8 * 1024));
    let refused = subscribe(&mut d, &sid2, 1, "resources/subscribe", &long);
    assert_eq!(refused["error"]["code"], -32602, "{refused}");
    let ok = subscribe(&mut d, &sid2, 2, "resources/subscribe", "test://r/0");
    assert!(ok.get("result").is_some(), "{ok}");
    let r = d.post(Some(&sid2), r#"{"jsonrpc":"2.0","id":3,"method":"ping"}"#);
    assert_eq!(r.status, 200);
}

/// Starts a streaming call in session `sid`, reads its priming event and leaves at once, so
/// the stream ends undelivered and is kept for resumption; then follows it with
/// `Last-Event-ID` until the call ends. Returns the priming event's id.
fn stream_and_leave(addr: SocketAddr, sid: &str) -> String {
    let body = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{
        "name":"stream_events","arguments":{"count":600,"intervalMs":1},
        "_meta":{"progressToken":"p"}}});
    let mut s = SseConn::open(
        addr,
        "POST",
        &session_headers(sid),
        body.to_string().as_bytes(),
    );
    assert_eq!(s.status, 200);
    let priming = s.next_event().and_then(|e| e.id).expect("a priming event");
    drop(s);
    let mut f = resume(addr, sid, &priming);
    assert_eq!(f.status, 200);
    while f.next_event().is_some() {}
    priming
}

fn resume(addr: SocketAddr, sid: &str, last: &str) -> SseConn {
    let mut h = get_headers(sid);
    h.push(("Last-Event-ID", last));
    let mut c = SseConn::open(addr, "GET", &h, b"");
    c.r_timeout(Duration::from_secs(20));
    c
}

/// Item 5: the replay logs of all sessions share `--replay-budget`; the oldest ended stream,
/// in whichever session, is forgotten first. Three undelivered streams of ~180 KB each in two
/// sessions, with a budget of 256 KiB: before the fix all three were kept.
#[test]
fn r12_5_replay_logs_share_one_budget_oldest_ended_first() {
    let budget = 256 * 1024;
    let p = demo_proxy(&["--replay-budget", "256KiB", "--replay-events", "100000"]);
    let addr = p.local_addr();
    let a = Conn::open(addr).initialize();
    let b = Conn::open(addr).initialize();
    let first = stream_and_leave(addr, &a);
    let second = stream_and_leave(addr, &b);
    let third = stream_and_leave(addr, &a);
    let held = metric(addr, "shadowcat_replay_buffer_bytes");
    assert!(
        held <= budget as f64,
        "{held} bytes held, over the {budget} budget"
    );
    assert!(held > 0.0, "the newest stream is kept");
    let gone = resume(addr, &a, &first);
    assert_eq!(gone.status, 400, "the oldest ended stream is forgotten");
    let kept = resume(addr, &a, &third);
    assert_eq!(kept.status, 200, "the newest is kept");
    eprintln!(
        "replay budget: {held} bytes held; second stream resumable: {}",
        resume(addr, &b, &second).status
    );
}
