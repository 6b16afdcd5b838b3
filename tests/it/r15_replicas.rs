//! Issue #15, replicas: one HTTP upstream served by two server-everything processes
//! (`--upstream` twice), one killed mid-run: stateless 2026-07-28 calls go on over the other,
//! sessions on the dead one get 404 and a new session works, its circuit breaker opens (admin
//! API and metrics) and closes again once the replica is back on the same port. And the file
//! form: `url = [...]` in an `[upstream.NAME]` table, with per-member counters.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::*;

/// server-everything's streamableHttp transport on `port` (the same port again after a kill).
fn everything_on(port: u16) -> Peer {
    let child = Command::new("node")
        .arg(everything_js())
        .arg("streamableHttp")
        .env("PORT", port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("node starts");
    let peer = Peer(child);
    wait_listening(([127, 0, 0, 1], port).into());
    peer
}

/// The replicas `/admin/upstreams` shows (of the upstream, or of its first member).
fn replicas(admin: SocketAddr) -> Vec<Value> {
    let ups = get(admin, "/admin/upstreams", &[]).json();
    let u = &ups[0];
    let shown = if u["replicas"].is_array() {
        &u["replicas"]
    } else {
        &u["members"][0]["replicas"]
    };
    shown.as_array().cloned().unwrap_or_default()
}

/// The replica with `url`.
fn replica(admin: SocketAddr, url: &str) -> Value {
    replicas(admin)
        .into_iter()
        .find(|r| r["url"] == url)
        .unwrap_or_else(|| panic!("replica {url} in /admin/upstreams"))
}

/// Waits (at most 20 s) until `ok` holds of replica `url`; returns it.
fn wait_replica(admin: SocketAddr, url: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let r = replica(admin, url);
        if ok(&r) {
            return r;
        }
        assert!(Instant::now() < until, "replica {url} never {what}: {r}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The value of the metrics line that starts with `series` (name and labels).
fn metric(addr: SocketAddr, series: &str) -> Option<f64> {
    let text = get(addr, "/metrics", &[]).text();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

const ECHO: &str = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"message":"replica"}}}"#;

/// A 2026-07-28 (stateless) `tools/call` of server-everything's echo.
fn modern_echo(addr: SocketAddr, id: u64) -> Resp {
    let body = json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{
        "name":"echo","arguments":{"message":"stateless"},
        "_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28",
                 "io.modelcontextprotocol/clientCapabilities":{}}}});
    let h = [
        ("MCP-Protocol-Version", "2026-07-28"),
        ("Mcp-Method", "tools/call"),
        ("Mcp-Name", "echo"),
    ];
    post_with(addr, &h, None, &body.to_string())
}

fn echoed(r: &Resp, want: &str) -> bool {
    r.status == 200 && r.text().contains(want)
}

#[test]
fn r15_replica_killed_sessions_404_stateless_continue_breaker_opens_and_closes() {
    let (port_a, port_b) = (free_port(), free_port());
    let _a = everything_on(port_a);
    let b = everything_on(port_b);
    let (url_a, url_b) = (
        format!("http://127.0.0.1:{port_a}/mcp"),
        format!("http://127.0.0.1:{port_b}/mcp"),
    );
    let p = demo_proxy(&[
        "--upstream",
        &url_a,
        "--upstream",
        &url_b,
        "--replica-failures",
        "2",
        "--replica-backoff",
        "500ms",
        "--replica-backoff-max",
        "1s",
        "--replica-probe-interval",
        "200ms",
        "--request-timeout",
        "15s",
        "--admin-bind",
        "127.0.0.1:0",
    ]);
    let (addr, admin) = (p.local_addr(), p.admin_addr().expect("admin"));
    let ups = get(admin, "/admin/upstreams", &[]).json();
    assert_eq!(ups[0]["mode"], "replicas", "{ups}");
    assert_eq!(replicas(admin).len(), 2);

    // Four sessions: the fewest sessions wins, so two land on each replica.
    let sids: Vec<String> = (0..4).map(|_| Conn::open(addr).initialize()).collect();
    for url in [&url_a, &url_b] {
        assert_eq!(replica(admin, url)["sessions"], 2, "{url}");
    }
    for sid in &sids {
        assert!(echoed(&post(addr, Some(sid), ECHO), "replica"), "{sid}");
    }
    assert!(echoed(&modern_echo(addr, 1), "stateless"));

    // B dies.
    drop(b);
    let mut lost = Vec::new();
    for sid in &sids {
        let r = post(addr, Some(sid), ECHO);
        match r.status {
            200 => assert!(r.text().contains("replica"), "{}", r.text()),
            404 => {
                assert_eq!(r.json()["error"]["code"], -32001, "{}", r.text());
                lost.push(sid.clone());
            }
            s => panic!("{sid}: {s} {}", r.text()),
        }
    }
    assert_eq!(lost.len(), 2, "the sessions on the dead replica get 404");
    // Stateless calls go on over A, whichever replica the bridge's sessions were on.
    for id in 2..8 {
        let r = modern_echo(addr, id);
        assert!(echoed(&r, "stateless"), "{id}: {} {}", r.status, r.text());
    }
    // The breaker opened (failures of sessions and probes), seen by the admin API and metrics.
    let shown = wait_replica(admin, &url_b, "opened", |r| {
        r["ejections"].as_u64() >= Some(1) && r["state"] != "closed"
    });
    assert!(shown["lastError"].is_string(), "{shown}");
    let up_b = format!(
        "shadowcat_upstream_replica_up{{upstream=\"127.0.0.1:{port_a}+1\",replica=\"{url_b}\"}}"
    );
    let up_a = up_b.replace(&url_b, &url_a);
    assert_eq!(metric(addr, &up_a), Some(1.0));
    let ejections = up_b.replace("replica_up", "replica_ejections_total");
    assert!(metric(addr, &ejections) >= Some(1.0));
    // Clients that lost their session start a new one, on the live replica.
    for _ in &lost {
        let sid = Conn::open(addr).initialize();
        assert!(echoed(&post(addr, Some(&sid), ECHO), "replica"));
    }

    // B comes back on the same port: a probe closes its breaker, and it takes new sessions.
    let _b = everything_on(port_b);
    wait_replica(admin, &url_b, "closed again", |r| r["state"] == "closed");
    assert_eq!(metric(addr, &up_b), Some(1.0));
    let before = replica(admin, &url_b)["sessions"].as_u64().unwrap_or(0);
    let sid = Conn::open(addr).initialize();
    assert!(echoed(&post(addr, Some(&sid), ECHO), "replica"));
    let after = replica(admin, &url_b)["sessions"].as_u64().unwrap_or(0);
    assert_eq!(
        after,
        before + 1,
        "the least-loaded replica takes the new session"
    );
    assert!(echoed(&modern_echo(addr, 9), "stateless"));
}

#[test]
fn r15_replica_member_urls_from_the_file_with_one_dead() {
    let port = free_port();
    let _live = everything_on(port);
    let live = format!("http://127.0.0.1:{port}/mcp");
    let dead = format!("http://127.0.0.1:{}/mcp", free_port());
    let dir = TempDir::new("r15-replicas");
    let file = dir.path().join("replicas.toml");
    std::fs::write(
        &file,
        format!(
            "replica-probe-interval = \"200ms\"\n\n[upstream.web]\nurl = [\"{live}\", \
             \"{dead}\"]\nreplica-failures = 1\nreplica-backoff = \"1m\"\n"
        ),
    )
    .expect("write");
    let file = file.to_string_lossy().into_owned();
    let p = demo_proxy(&["--config", &file, "--admin-bind", "127.0.0.1:0"]);
    let (addr, admin) = (p.local_addr(), p.admin_addr().expect("admin"));

    // The effective configuration shows both URLs and the member's knobs.
    let cfg = get(admin, "/admin/config", &[]).json();
    let member = &cfg["upstream"]["members"][0];
    assert_eq!(member["upstream"]["url"], live.as_str(), "{cfg}");
    assert_eq!(member["upstream"]["replicas"][0], dead.as_str(), "{cfg}");
    assert_eq!(member["replicaFailures"], 1, "{cfg}");
    assert_eq!(member["replicaProbeIntervalSeconds"], 0.2, "{cfg}");

    // The dead replica is ejected by the prober before any client needs it.
    wait_replica(admin, &dead, "ejected", |r| r["state"] == "open");
    // Every session lands on the live one, and calls work.
    for _ in 0..3 {
        let sid = Conn::open(addr).initialize();
        let call = r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"web__echo","arguments":{"message":"member"}}}"#;
        assert!(echoed(&post(addr, Some(&sid), call), "member"));
    }
    assert_eq!(replica(admin, &live)["sessions"], 3);
    let ups = get(admin, "/admin/upstreams", &[]).json();
    let web = &ups[0]["members"][0];
    assert!(web["requests"].as_u64() >= Some(6), "{ups}");
    assert_eq!(web["errors"], 0, "{ups}");
    assert!(metric(addr, "shadowcat_member_requests_total{member=\"web\"}") >= Some(6.0));
    assert_eq!(
        metric(addr, "shadowcat_member_errors_total{member=\"web\"}"),
        Some(0.0)
    );
    let up = format!("shadowcat_upstream_replica_up{{upstream=\"web\",replica=\"{dead}\"}}");
    assert_eq!(metric(addr, &up), Some(0.0));
}

#[test]
fn r15_replica_member_session_reopens_on_the_live_replica() {
    let (port_a, port_b) = (free_port(), free_port());
    let _a = everything_on(port_a);
    let b = everything_on(port_b);
    let (url_a, url_b) = (
        format!("http://127.0.0.1:{port_a}/mcp"),
        format!("http://127.0.0.1:{port_b}/mcp"),
    );
    let dir = TempDir::new("r15-replicas-member");
    let file = dir.path().join("member.toml");
    std::fs::write(
        &file,
        format!(
            "[upstream.web]\nurl = [\"{url_a}\", \"{url_b}\"]\nreplica-probe-interval = \
             \"60s\"\n\n[upstream.demo]\nstdio = \"{} demo-server\"\n",
            exe()
        ),
    )
    .expect("write");
    let file = file.to_string_lossy().into_owned();
    let p = demo_proxy(&["--config", &file, "--admin-bind", "127.0.0.1:0"]);
    let (addr, admin) = (p.local_addr(), p.admin_addr().expect("admin"));
    let call = r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"web__echo","arguments":{"message":"moved"}}}"#;
    // Two client sessions: their member sessions land one on each replica.
    let sids: Vec<String> = (0..2).map(|_| Conn::open(addr).initialize()).collect();
    for url in [&url_a, &url_b] {
        assert_eq!(replica(admin, url)["sessions"], 1, "{url}");
    }
    drop(b);
    // The client sessions stay; the one whose member session was on B is re-opened on A
    // and its call tried again.
    for sid in &sids {
        let r = post(addr, Some(sid), call);
        assert!(echoed(&r, "moved"), "{sid}: {} {}", r.status, r.text());
    }
    assert_eq!(replica(admin, &url_a)["sessions"], 2);
}

/// A 2026-07-28 `tools/call` of server-everything's long-running operation (1 s, 1 step).
fn modern_slow(addr: SocketAddr, id: u64) -> Resp {
    let body = json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{
        "name":"trigger-long-running-operation","arguments":{"duration":1,"steps":1},
        "_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28",
                 "io.modelcontextprotocol/clientCapabilities":{}}}});
    let h = [
        ("MCP-Protocol-Version", "2026-07-28"),
        ("Mcp-Method", "tools/call"),
        ("Mcp-Name", "trigger-long-running-operation"),
    ];
    post_with(addr, &h, None, &body.to_string())
}

#[test]
fn r15_replica_stateless_calls_survive_many_bridge_sessions_on_the_dead_replica() {
    let (port_a, port_b) = (free_port(), free_port());
    let _a = everything_on(port_a);
    let b = everything_on(port_b);
    let (url_a, url_b) = (
        format!("http://127.0.0.1:{port_a}/mcp"),
        format!("http://127.0.0.1:{port_b}/mcp"),
    );
    let p = demo_proxy(&[
        "--upstream",
        &url_a,
        "--upstream",
        &url_b,
        "--replica-probe-interval",
        "60s",
        "--admin-bind",
        "127.0.0.1:0",
    ]);
    let (addr, admin) = (p.local_addr(), p.admin_addr().expect("admin"));
    // Eight calls at once: the era bridge opens a session for each, spread over both replicas.
    let calls: Vec<_> = (0..8)
        .map(|id| std::thread::spawn(move || modern_slow(addr, id)))
        .collect();
    for c in calls {
        let r = c.join().expect("call");
        assert!(echoed(&r, "completed"), "{} {}", r.status, r.text());
    }
    let on_b = replica(admin, &url_b)["sessions"].as_u64().unwrap_or(0);
    assert!(on_b >= 3, "bridge sessions on B: {on_b}");
    drop(b);
    // Each call may find one of B's idle bridge sessions first: none fails for it.
    for id in 10..20 {
        let r = modern_echo(addr, id);
        assert!(echoed(&r, "stateless"), "{id}: {} {}", r.status, r.text());
    }
}
