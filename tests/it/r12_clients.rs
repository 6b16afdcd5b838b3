//! Issue #12, items 3, 4 and 6: no client can spy on, reconfigure or lock out another. A stdio
//! child's messages reach only the request or session they provably belong to (and each
//! session's own log level); the admin API refuses what a browser page could send it (DNS
//! rebinding, CSRF); one client cannot take every session or stream slot, and `Retry-After`
//! tells the real wait.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::*;

/// POSTed within the admin tests: what a CSRF form can send.
const FORM: [(&str, &str); 1] = [("Content-Type", "text/plain")];
const JSON: [(&str, &str); 1] = [("Content-Type", "application/json")];

fn admin_proxy() -> shadowcat::Shadowcat {
    demo_proxy(&["--admin-bind", "127.0.0.1:0"])
}

fn admin(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
    Conn::open(addr).request(method, path, headers, b"")
}

#[test]
fn r12_4_admin_refuses_foreign_host_names() {
    let p = admin_proxy();
    let a = p.local_addr();
    let ad = p.admin_addr().expect("admin listener");
    let sid = Conn::open(a).initialize();
    let rebound = format!("rebind.attacker.example:{}", ad.port());
    for path in ["/admin/sessions", "/admin/config", "/admin/upstreams"] {
        let r = admin(ad, "GET", path, &[("Host", &rebound)]);
        assert_eq!(
            r.status,
            403,
            "GET {path} under a rebound name: {}",
            r.text()
        );
        assert!(
            !r.text().contains(short_sid(&sid)),
            "{path} leaked the session"
        );
    }
    let kill = format!("/admin/sessions/{}", short_sid(&sid));
    let mut h = JSON.to_vec();
    h.push(("Host", &rebound));
    assert_eq!(admin(ad, "DELETE", &kill, &h).status, 403);
    let r = post(a, Some(&sid), r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#);
    assert_eq!(r.status, 200, "the session survived the rebound DELETE");
    // The operator's own names still work.
    for host in [
        format!("127.0.0.1:{}", ad.port()),
        format!("localhost:{}", ad.port()),
    ] {
        let r = admin(ad, "GET", "/admin/sessions", &[("Host", &host)]);
        assert_eq!(r.status, 200, "{host}");
        assert_eq!(r.json()["count"], 1);
    }
}

#[test]
fn r12_4_admin_refuses_browser_origins_and_form_posts() {
    let p = admin_proxy();
    let a = p.local_addr();
    let ad = p.admin_addr().expect("admin listener");
    let pids = p.stdio_child_pids();
    let restart = "/admin/upstreams/shadowcat/restart";
    // A cross-site form POST: Origin and a CORS-safelisted type.
    let mut h = FORM.to_vec();
    h.push(("Origin", "https://evil.example"));
    let r = admin(ad, "POST", restart, &h);
    assert_eq!(r.status, 403, "{}", r.text());
    // Any Origin at all, even with the right type or on a read, even a loopback one.
    for origin in ["https://evil.example", "http://localhost:1", "null"] {
        let mut h = JSON.to_vec();
        h.push(("Origin", origin));
        assert_eq!(admin(ad, "POST", restart, &h).status, 403, "{origin}");
        let r = admin(ad, "GET", "/admin/config", &[("Origin", origin)]);
        assert_eq!(r.status, 403, "{origin}");
    }
    // No Origin but no JSON either (a form, or a bare curl -d): 415.
    assert_eq!(admin(ad, "POST", restart, &FORM).status, 415);
    assert_eq!(admin(ad, "POST", restart, &[]).status, 415);
    let sid = Conn::open(a).initialize();
    let kill = format!("/admin/sessions/{}", short_sid(&sid));
    assert_eq!(admin(ad, "DELETE", &kill, &FORM).status, 415);
    assert_eq!(
        p.stdio_child_pids(),
        pids,
        "no refused request restarted a child"
    );
    let r = post(a, Some(&sid), r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#);
    assert_eq!(r.status, 200, "no refused request ended the session");
    // The operator's JSON requests pass.
    let json_utf8 = [("Content-Type", "application/json; charset=utf-8")];
    assert_eq!(admin(ad, "DELETE", &kill, &json_utf8).status, 200);
    let r = admin(ad, "POST", restart, &JSON);
    assert_eq!(r.status, 200, "{}", r.text());
}

const ALICE: &str = "alice-0123456789abcdef";
const BOB: &str = "bob-0123456789abcdef";
const CAROL: &str = "carol-0123456789abcdef";

/// `--auth-tokens` for alice, bob and carol.
fn tokens(dir: &TempDir) -> String {
    let f = dir.path().join("tokens");
    std::fs::write(&f, format!("{ALICE} alice\n{BOB} bob\n{CAROL} carol\n")).expect("tokens");
    f.display().to_string()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A POST as `token` (within session `sid`, if given).
fn post_as(addr: SocketAddr, token: &str, sid: Option<&str>, body: &str) -> Resp {
    let auth = bearer(token);
    post_with(addr, &[("Authorization", &auth)], sid, body)
}

/// `initialize` as `token`: the answer (200 with the session id, or the refusal).
fn init_as(addr: SocketAddr, token: &str) -> Resp {
    post_as(addr, token, None, INIT)
}

/// Initializes as `token` until refused (at most `cap` times): the session ids and the
/// refusal.
fn sessions_until_refused(addr: SocketAddr, token: &str, cap: usize) -> (Vec<String>, Resp) {
    let mut ids = Vec::new();
    for _ in 0..cap {
        let r = init_as(addr, token);
        match r.header("mcp-session-id") {
            Some(sid) if r.status == 200 => ids.push(sid.to_string()),
            _ => return (ids, r),
        }
    }
    panic!("{token}: {cap} sessions and never refused");
}

/// `session_headers` plus a bearer token, for GETs (no Content-Type).
fn get_as(token: &str, sid: &str) -> Vec<(String, String)> {
    let mut h: Vec<(String, String)> = get_headers(sid)
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    h.push(("Authorization".into(), bearer(token)));
    h
}

fn refs(h: &[(String, String)]) -> Vec<(&str, &str)> {
    h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// The value of one sample in `/metrics` (`name{labels}` exactly), 0 if absent.
fn metric(addr: SocketAddr, sample: &str) -> f64 {
    let text = get(addr, "/metrics", &[]).text();
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
        .unwrap_or(0.0)
}

fn retry_after(r: &Resp) -> u64 {
    r.header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Retry-After: {:?}", r.headers))
}

fn logs(messages: &[Value]) -> Vec<&Value> {
    messages
        .iter()
        .filter(|m| m["method"] == "notifications/message")
        .collect()
}

fn tool_call(id: u64, name: &str, args: Value) -> String {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call",
           "params":{"name":name,"arguments":args}})
    .to_string()
}

/// A stateless (2026-07-28) `tools/call` as `token`, asking for logs (`_meta` logLevel: a
/// 2026-07-28 request gets none without it).
fn stateless_call_as(addr: SocketAddr, token: &str, id: u64, name: &str) -> Resp {
    let body = json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{
        "name":name,"arguments":{},
        "_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28",
                 "io.modelcontextprotocol/clientCapabilities":{},
                 "io.modelcontextprotocol/logLevel":"debug"}}})
    .to_string();
    let auth = bearer(token);
    let mut h = JSON_HEADERS.to_vec();
    h.push(("MCP-Protocol-Version", "2026-07-28"));
    h.push(("Mcp-Method", "tools/call"));
    h.push(("Mcp-Name", name));
    h.push(("Authorization", &auth));
    Conn::open(addr).request("POST", "/mcp", &h, body.as_bytes())
}

/// Events on `s` until it stays quiet for its read timeout.
fn drain(s: &mut SseConn) -> Vec<Value> {
    let mut out = Vec::new();
    while let Some(ev) = s.next_event() {
        if !ev.data.is_empty() {
            out.push(ev.json());
        }
    }
    out
}

#[test]
fn r12_3_stateless_logs_never_reach_another_principals_stream() {
    let dir = TempDir::new("r12-3-leak");
    // One child, so alice's session and bob's stateless calls share it.
    let p = demo_proxy(&["--auth-tokens", &tokens(&dir), "--stdio-children", "1"]);
    let a = p.local_addr();
    let r = init_as(a, ALICE);
    let sid = r
        .header("mcp-session-id")
        .expect("alice's session")
        .to_string();
    let h = get_as(ALICE, &sid);
    let mut alice_stream = SseConn::open(a, "GET", &refs(&h), b"");
    assert_eq!(alice_stream.status, 200);

    // Bob's stateless call is the only call in flight: its logs are its own, on its answer.
    let r = stateless_call_as(a, BOB, 1, "test_tool_with_logging");
    assert_eq!(r.status, 200, "{}", r.text());
    let bobs = r.messages();
    assert_eq!(logs(&bobs).len(), 3, "bob gets his own logs: {bobs:?}");
    assert!(bobs.last().is_some_and(|m| m["result"].is_object()));

    // Bob again while alice has a call in flight on the same child: nobody provably owns
    // bob's logs any more, so they are dropped (and counted), never given to alice.
    let before = metric(
        a,
        "shadowcat_dropped_messages_total{reason=\"unattributed\"}",
    );
    let alice_call = std::thread::spawn(move || {
        let body = tool_call(2, "slow_echo", json!({"message":"mine","delayMs":1500}));
        post_as(a, ALICE, Some(&sid), &body).messages()
    });
    let until = Instant::now() + Duration::from_secs(5);
    while p.proxy().upstream().children()[0].inflight == 0 {
        assert!(
            Instant::now() < until,
            "alice's call never reached the child"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let r = stateless_call_as(a, BOB, 3, "test_tool_with_logging");
    assert_eq!(r.status, 200, "{}", r.text());
    let bobs = r.messages();
    assert!(
        logs(&bobs).is_empty(),
        "unattributable logs delivered: {bobs:?}"
    );
    assert!(bobs.last().is_some_and(|m| m["result"].is_object()));
    let alices = alice_call.join().expect("alice's call");
    assert!(
        logs(&alices).is_empty(),
        "bob's logs on alice's call: {alices:?}"
    );
    assert_eq!(alices.last().map(|m| m["id"].clone()), Some(json!(2)));
    alice_stream.r_timeout(Duration::from_millis(700));
    let seen = drain(&mut alice_stream);
    assert!(
        seen.is_empty(),
        "alice's stream got bob's messages: {seen:?}"
    );
    let after = metric(
        a,
        "shadowcat_dropped_messages_total{reason=\"unattributed\"}",
    );
    assert!(
        after >= before + 3.0,
        "dropped logs counted: {before} -> {after}"
    );
}

#[test]
fn r12_3_one_sessions_log_level_does_not_silence_another() {
    let p = demo_proxy(&["--stdio-children", "1"]);
    let a = p.local_addr();
    let alice = Conn::open(a).initialize();
    let bob = Conn::open(a).initialize();
    let set = |sid: &str, level: &str| {
        let body = json!({"jsonrpc":"2.0","id":9,"method":"logging/setLevel",
                          "params":{"level":level}});
        post(a, Some(sid), &body.to_string())
    };
    let r = set(&alice, "emergency");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["result"], json!({}), "{}", r.text());
    let call = |sid: &str| {
        let r = post(
            a,
            Some(sid),
            &tool_call(1, "test_tool_with_logging", json!({})),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        r.messages()
    };
    // Bob never asked for a level: he still gets every log.
    assert_eq!(logs(&call(&bob)).len(), 3, "alice's level silenced bob");
    // Alice gets none of hers (info < emergency), each counted.
    let before = metric(
        a,
        "shadowcat_dropped_messages_total{reason=\"below_log_level\"}",
    );
    let mine = call(&alice);
    assert!(logs(&mine).is_empty(), "{mine:?}");
    assert!(mine.last().is_some_and(|m| m["result"].is_object()));
    let after = metric(
        a,
        "shadowcat_dropped_messages_total{reason=\"below_log_level\"}",
    );
    assert!(after >= before + 3.0, "{before} -> {after}");
    // Bob at warning: info is below his level now, alice's emergency does not move it.
    assert_eq!(set(&bob, "warning").status, 200);
    assert!(logs(&call(&bob)).is_empty());
    assert_eq!(set(&bob, "debug").status, 200);
    assert_eq!(logs(&call(&bob)).len(), 3);
    // Alice leaving does not change bob's level either.
    let gone = Conn::open(a).request("DELETE", "/mcp", &[("Mcp-Session-Id", &alice)], b"");
    assert_eq!(gone.status, 200);
    assert_eq!(logs(&call(&bob)).len(), 3);
    // A level that does not exist is refused, and a stateless caller cannot set one at all.
    let r = set(&bob, "loud");
    assert_eq!(r.json()["error"]["code"], -32602, "{}", r.text());
    let body = json!({"jsonrpc":"2.0","id":4,"method":"logging/setLevel","params":{
        "level":"emergency","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}});
    let mut h = JSON_HEADERS.to_vec();
    h.push(("MCP-Protocol-Version", "2026-07-28"));
    let r = Conn::open(a).request("POST", "/mcp", &h, body.to_string().as_bytes());
    assert_eq!(r.json()["error"]["code"], -32601, "{}", r.text());
    assert_eq!(
        logs(&call(&bob)).len(),
        3,
        "a stateless setLevel silenced bob"
    );
}

#[test]
fn r12_6_one_principal_cannot_take_every_session() {
    let dir = TempDir::new("r12-6-sessions");
    let p = demo_proxy(&[
        "--auth-tokens",
        &tokens(&dir),
        "--max-sessions",
        "10",
        "--session-idle",
        "600s",
    ]);
    let a = p.local_addr();
    // At most half of the room: 5 of 10.
    let (mine, refused) = sessions_until_refused(a, ALICE, 20);
    assert_eq!(mine.len(), 5, "alice's sessions");
    assert_eq!(refused.status, 429, "{}", refused.text());
    let msg = refused.json()["error"]["message"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(msg.contains("--max-sessions-per-client"), "{msg}");
    assert_eq!(refused.json()["error"]["code"], -32600);
    // Her sessions expire unused in 600 s: that is the wait, not 1 s.
    let wait = retry_after(&refused);
    assert!((590..=600).contains(&wait), "Retry-After {wait}");
    let r = init_as(a, BOB);
    assert_eq!(r.status, 200, "bob locked out: {}", r.text());
    assert!(metric(a, "shadowcat_rejected_total{reason=\"session_quota\"}") >= 1.0);
    // Ending one of hers gives her room again.
    let mut h = vec![("Mcp-Session-Id", mine[0].as_str())];
    let auth = bearer(ALICE);
    h.push(("Authorization", &auth));
    assert_eq!(Conn::open(a).request("DELETE", "/mcp", &h, b"").status, 200);
    assert_eq!(init_as(a, ALICE).status, 200);
}

#[test]
fn r12_6_full_table_retry_after_is_the_real_wait() {
    let dir = TempDir::new("r12-6-full");
    let p = demo_proxy(&[
        "--auth-tokens",
        &tokens(&dir),
        "--max-sessions",
        "4",
        "--session-idle",
        "600s",
    ]);
    let a = p.local_addr();
    for who in [ALICE, ALICE, BOB, BOB] {
        assert_eq!(init_as(a, who).status, 200);
    }
    let r = init_as(a, CAROL);
    assert_eq!(r.status, 503, "{}", r.text());
    let wait = retry_after(&r);
    assert!(
        (590..=600).contains(&wait),
        "Retry-After {wait}, the sessions expire in 600 s"
    );
}

#[test]
fn r12_6_unauthenticated_clients_are_counted_by_ip() {
    let p = demo_proxy(&["--max-sessions", "4", "--trusted-proxy", "127.0.0.1"]);
    let a = p.local_addr();
    let init_from = |ip: &str| post_with(a, &[("X-Forwarded-For", ip)], None, INIT);
    assert_eq!(init_from("203.0.113.1").status, 200);
    assert_eq!(init_from("203.0.113.1").status, 200);
    let r = init_from("203.0.113.1");
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(
        init_from("203.0.113.2").status,
        200,
        "another address has room"
    );
}

#[test]
fn r12_6_per_session_children_are_not_one_clients_either() {
    let dir = TempDir::new("r12-6-dedicated");
    let p = demo_proxy(&[
        "--auth-tokens",
        &tokens(&dir),
        "--stdio-mode",
        "per-session",
        "--stdio-children",
        "4",
        "--stdio-spares",
        "1",
    ]);
    let a = p.local_addr();
    let (mine, refused) = sessions_until_refused(a, ALICE, 8);
    assert_eq!(mine.len(), 2, "half of the 4 children");
    assert_eq!(refused.status, 429, "{}", refused.text());
    assert!(
        retry_after(&refused) > 1700,
        "her sessions expire in 30 min"
    );
    let r = init_as(a, BOB);
    assert_eq!(r.status, 200, "bob locked out: {}", r.text());
    let r = init_as(a, BOB);
    assert_eq!(r.status, 200, "{}", r.text());
    // Every child is some session's now: 503, and the wait is until the session unused
    // longest may be evicted (--session-evict-idle, 60 s; issue #14), not its expiry.
    let r = init_as(a, CAROL);
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(
        (55..=60).contains(&retry_after(&r)),
        "Retry-After {}",
        retry_after(&r)
    );
}

#[test]
fn r12_6_one_principal_cannot_take_every_stream() {
    let dir = TempDir::new("r12-6-streams");
    let p = demo_proxy(&["--auth-tokens", &tokens(&dir), "--max-streams", "4"]);
    let a = p.local_addr();
    let sids: Vec<String> = (0..3)
        .map(|_| {
            let r = init_as(a, ALICE);
            r.header("mcp-session-id").expect("session").to_string()
        })
        .collect();
    // Half of the 4 streams: two GETs stay open, the third is refused.
    let h0 = get_as(ALICE, &sids[0]);
    let h1 = get_as(ALICE, &sids[1]);
    let h2 = get_as(ALICE, &sids[2]);
    let s0 = SseConn::open(a, "GET", &refs(&h0), b"");
    let s1 = SseConn::open(a, "GET", &refs(&h1), b"");
    assert_eq!((s0.status, s1.status), (200, 200));
    // (Read the head only first: a stream that opened would never end.)
    assert_eq!(SseConn::open(a, "GET", &refs(&h2), b"").status, 429);
    let r = Conn::open(a).request("GET", "/mcp", &refs(&h2), b"");
    assert_eq!(r.status, 429, "{}", r.text());
    let msg = r.json()["error"]["message"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(msg.contains("--max-streams-per-client"), "{msg}");
    // Nothing of hers ends before her sessions expire unused (30 min).
    assert!(retry_after(&r) > 1700, "Retry-After {}", retry_after(&r));
    // A request that must stream is refused the same way; one answered at once is not.
    let slow = tool_call(5, "slow_echo", json!({"message":"x","delayMs":400}));
    let r = post_as(a, ALICE, Some(&sids[2]), &slow);
    assert_eq!(r.status, 429, "{}", r.text());
    let r = post_as(
        a,
        ALICE,
        Some(&sids[2]),
        &tool_call(6, "echo", json!({"message":"x"})),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    // Reconnecting to a stream she follows is never refused (it replaces the old GET).
    let again = SseConn::open(a, "GET", &refs(&h0), b"");
    assert_eq!(again.status, 200);
    // Bob still gets a stream.
    let r = init_as(a, BOB);
    let bob = r
        .header("mcp-session-id")
        .expect("bob's session")
        .to_string();
    let hb = get_as(BOB, &bob);
    let sb = SseConn::open(a, "GET", &refs(&hb), b"");
    assert_eq!(sb.status, 200, "bob locked out of streams");
    assert!(metric(a, "shadowcat_rejected_total{reason=\"stream_quota\"}") >= 2.0);
    drop((s0, s1, again, sb));
}
