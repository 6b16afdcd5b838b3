//! Issue #17: many instances behind a load balancer. Session ids that name their instance,
//! graceful scale-in, shared limits in Redis, and three instances behind a real HAProxy.
//! Real `haproxy` and `redis-server` (Debian packages, `scripts/lib.sh` installs them) run
//! on free loopback ports, started and stopped by the tests (`infra.rs`); a test whose
//! binary is missing fails with the install hint rather than passing quietly.

use crate::support::{Conn, demo_proxy, get, session_headers};

mod cluster;
mod infra;

/// The value of an unlabelled counter in a `/metrics` text, 0 when absent.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn session_ids_name_their_instance_and_foreign_ones_are_404() {
    let a = demo_proxy(&["--instance-id", "web-a"]);
    let b = demo_proxy(&["--instance-id", "web-b"]);
    let sid = Conn::open(a.local_addr()).initialize();
    let (instance, random) = sid.split_once('.').expect("instance.random");
    assert_eq!(instance, "web-a");
    assert_eq!(random.len(), 32);
    // At its own instance the session works; at another it is unknown (the client
    // re-initializes there) and counted as foreign.
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    assert_eq!(
        Conn::open(a.local_addr()).post(Some(&sid), ping).status,
        200
    );
    let r = Conn::open(b.local_addr()).post(Some(&sid), ping);
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], -32001);
    let del = Conn::open(b.local_addr()).request("DELETE", "/mcp", &session_headers(&sid), b"");
    assert_eq!(del.status, 404);
    let m = get(b.local_addr(), "/metrics", &[]).text();
    assert_eq!(metric(&m, "shadowcat_foreign_sessions_total"), 2.0);
    // An unknown id of its own instance is not foreign.
    let own = format!("web-b.{random}");
    assert_eq!(
        Conn::open(b.local_addr()).post(Some(&own), ping).status,
        404
    );
    let m = get(b.local_addr(), "/metrics", &[]).text();
    assert_eq!(metric(&m, "shadowcat_foreign_sessions_total"), 2.0);
    let m = get(a.local_addr(), "/metrics", &[]).text();
    assert_eq!(metric(&m, "shadowcat_foreign_sessions_total"), 0.0);
}

/// A `tools/call` of the demo's `slow_echo` taking `ms` milliseconds.
pub fn slow_call(id: u64, ms: u64) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"slow_echo","arguments":{{"message":"x","delayMs":{ms}}}}}}}"#
    )
}

/// SIGTERM drains: `/readyz` 503 at once, new sessions refused (503 + Retry-After), existing
/// sessions and the call in flight still served, then the process exits 0.
#[test]
fn sigterm_reports_not_ready_refuses_new_sessions_and_finishes_calls() {
    use crate::lifecycle::wait_timeout;
    use crate::support::spawn_proxy;
    let (mut peer, addr) = spawn_proxy(
        &["--instance-id", "drainer", "--drain-time", "1500ms"],
        std::process::Stdio::null(),
        &[],
    );
    let sid = Conn::open(addr).initialize();
    assert_eq!(get(addr, "/readyz", &[]).status, 200);
    let slow = std::thread::spawn({
        let sid = sid.clone();
        move || Conn::open(addr).post(Some(&sid), &slow_call(7, 2500))
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    let started = std::time::Instant::now();
    unsafe { libc::kill(peer.0.id() as i32, libc::SIGTERM) };
    std::thread::sleep(std::time::Duration::from_millis(200));
    let ready = get(addr, "/readyz", &[]);
    assert_eq!(ready.status, 503, "{}", ready.text());
    assert_eq!(ready.json()["reason"], "shutting down");
    let init = Conn::open(addr).post(None, crate::support::INIT);
    assert_eq!(init.status, 503, "{}", init.text());
    assert_eq!(init.header("retry-after"), Some("1"));
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    assert_eq!(Conn::open(addr).post(Some(&sid), ping).status, 200);
    // The call in flight finishes with its answer.
    let r = slow.join().expect("slow call");
    assert_eq!(r.status, 200, "{}", r.text());
    let last = r.messages().pop().unwrap_or_default();
    assert_eq!(
        last["result"]["content"][0]["text"],
        "Echo: x",
        "{}",
        r.text()
    );
    let status = wait_timeout(&mut peer.0, std::time::Duration::from_secs(10)).expect("exits");
    assert_eq!(status.code(), Some(0));
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(1500),
        "drained first"
    );
}

/// A stateless 2026-07-28 `tools/call` of the demo's `echo`, with `extra` headers.
pub fn stateless_echo(conn: &mut Conn, id: u64, extra: &[(&str, &str)]) -> crate::support::Resp {
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{"message":"s{id}"}},"_meta":{{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{{}}}}}}}}"#
    );
    let mut h: Vec<(&str, &str)> = crate::support::JSON_HEADERS.to_vec();
    h.push(("MCP-Protocol-Version", "2026-07-28"));
    h.push(("Mcp-Method", "tools/call"));
    h.push(("Mcp-Name", "echo"));
    h.extend_from_slice(extra);
    conn.request("POST", "/mcp", &h, body.as_bytes())
}

/// Sends stateless calls round-robin over `addrs` as fast as one thread can for `run`;
/// returns (allowed, refused with 429, other statuses).
fn hammer(addrs: &[std::net::SocketAddr], run: std::time::Duration) -> (u64, u64, u64) {
    let mut conns: Vec<Conn> = addrs.iter().map(|a| Conn::open(*a)).collect();
    let (mut ok, mut limited, mut other) = (0, 0, 0);
    let until = std::time::Instant::now() + run;
    let mut i = 0u64;
    while std::time::Instant::now() < until {
        let n = conns.len();
        let c = &mut conns[(i as usize) % n];
        i += 1;
        match stateless_echo(c, i, &[]).status {
            200 => ok += 1,
            429 => limited += 1,
            _ => other += 1,
        }
        if i.is_multiple_of(50) {
            // Fresh connections now and then: a 429 may close one.
            conns = addrs.iter().map(|a| Conn::open(*a)).collect();
        }
    }
    (ok, limited, other)
}

/// One client limited to 20/s (burst 20) across three instances sharing Redis gets about
/// 20/s in total, not 60/s. Scaled down from the issue's 20 s to 3 s: the bound is
/// burst + rate × seconds = 80 allowed at most, against 240 without the store.
#[test]
fn redis_shares_one_clients_limit_across_three_instances() {
    let redis = infra::Redis::start();
    let url = redis.url();
    let args = ["--rate-limit", "20/20", "--limits-store", url.as_str()];
    let proxies: Vec<_> = ["r1", "r2", "r3"]
        .iter()
        .map(|id| {
            let mut a = args.to_vec();
            a.extend(["--instance-id", id]);
            demo_proxy(&a)
        })
        .collect();
    let addrs: Vec<_> = proxies.iter().map(|p| p.local_addr()).collect();
    let secs = 3.0;
    let (ok, limited, other) = hammer(&addrs, std::time::Duration::from_secs_f64(secs));
    assert_eq!(other, 0);
    assert!(limited > 0, "never limited: {ok} allowed");
    let bound = 20.0 + 20.0 * secs;
    assert!(
        (ok as f64) <= bound + 5.0 && (ok as f64) >= 0.8 * bound,
        "allowed {ok} in {secs}s across 3 instances, expected about {bound}"
    );
    // Redis holds only the counters of this one client's bucket.
    let keys = redis.command("KEYS *");
    assert!(keys.contains("shadowcat:rl:c:ip:127.0.0.1"), "{keys}");
    assert_eq!(redis.command("DBSIZE"), ":1");
    for p in &proxies {
        let m = get(p.local_addr(), "/metrics", &[]).text();
        assert_eq!(metric(&m, "shadowcat_limits_store_fallbacks_total"), 0.0);
    }
}

/// Fast buckets are leased (`--limits-store-lease`, default 2 ms of their rate): a bucket of
/// 100,000/s far above the load costs a round trip per lease (64 tokens, or fewer spent in the 50 ms a
/// lease lasts) instead of one per
/// request with the lease off; and a 1,000/s bucket (two tokens per round trip) that three
/// instances drive past its limit never allows more than it holds (burst + rate × time).
#[test]
fn r17_fast_buckets_are_leased_and_never_over_admitted() {
    let evalshas = |redis: &infra::Redis| -> f64 {
        let info = redis.command("INFO commandstats");
        info.lines()
            .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
            .and_then(|l| l.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0.0)
    };
    for (limit, lease) in [
        ("100000/10000", "2ms"),
        ("100000/10000", "0"),
        ("1000/40", "2ms"),
    ] {
        let redis = infra::Redis::start();
        let url = redis.url();
        let proxies: Vec<_> = ["l1", "l2", "l3"]
            .iter()
            .map(|id| {
                demo_proxy(&[
                    "--rate-limit",
                    limit,
                    "--limits-store",
                    url.as_str(),
                    "--limits-store-lease",
                    lease,
                    "--instance-id",
                    id,
                ])
            })
            .collect();
        let addrs: Vec<_> = proxies.iter().map(|p| p.local_addr()).collect();
        let t = std::time::Instant::now();
        let (ok, limited, other) = hammer(&addrs, std::time::Duration::from_secs(2));
        let secs = t.elapsed().as_secs_f64();
        let trips = evalshas(&redis);
        eprintln!(
            "{limit} lease {lease}: {ok} allowed, {limited} refused, {trips} EVALSHA in {secs:.2}s"
        );
        assert_eq!(other, 0);
        assert!(ok > 0);
        match (limit, lease) {
            ("1000/40", _) => {
                let bound = 40.0 + 1000.0 * secs;
                assert!(
                    ok as f64 <= bound + 5.0,
                    "allowed {ok} in {secs:.2}s > {bound}"
                );
            }
            (_, "0") => assert!(trips >= (ok + limited) as f64, "{trips} round trips"),
            _ => {
                assert_eq!(limited, 0);
                assert!(
                    trips <= 0.25 * ok as f64 + 3.0,
                    "{trips} round trips for {ok}"
                );
            }
        }
    }
}

/// Redis stopped mid-run: fail open, each instance limits with its own buckets (so up to
/// three times the rate), logs a warning and counts the fallbacks; fail closed refuses with
/// 503. Redis back: shared limits again.
#[test]
fn redis_down_falls_back_as_configured_and_is_counted() {
    let mut redis = infra::Redis::start();
    let url = redis.url();
    let start = |id: &str, fail: &str| {
        demo_proxy(&[
            "--rate-limit",
            "5/5",
            "--limits-store",
            url.as_str(),
            "--limits-store-fail",
            fail,
            "--instance-id",
            id,
        ])
    };
    let open: Vec<_> = ["o1", "o2", "o3"]
        .iter()
        .map(|i| start(i, "open"))
        .collect();
    let closed = start("c1", "closed");
    let open_addrs: Vec<_> = open.iter().map(|p| p.local_addr()).collect();
    let ping = |a| stateless_echo(&mut Conn::open(a), 1, &[]).status;
    assert_eq!(ping(closed.local_addr()), 200);
    redis.stop();
    // Fail open: each instance's own bucket (5 at once, 5/s), so up to 3 × 10 in 1 s where
    // the shared bucket would allow 10.
    let (ok, limited, other) = hammer(&open_addrs, std::time::Duration::from_secs(1));
    assert_eq!(other, 0);
    assert!(limited > 0, "{ok} allowed");
    assert!(ok > 10 && ok <= 3 * 10 + 5, "fail open allowed {ok} in 1 s");
    let fallbacks: f64 = open
        .iter()
        .map(|p| {
            metric(
                &get(p.local_addr(), "/metrics", &[]).text(),
                "shadowcat_limits_store_fallbacks_total",
            )
        })
        .sum();
    assert_eq!(
        fallbacks,
        (ok + limited) as f64,
        "every request decided without Redis is counted"
    );
    // Fail closed: 503 with Retry-After, counted as well.
    let r = stateless_echo(&mut Conn::open(closed.local_addr()), 2, &[]);
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"));
    let m = get(closed.local_addr(), "/metrics", &[]).text();
    assert!(metric(&m, "shadowcat_limits_store_fallbacks_total") >= 1.0);
    // Redis back (after the 1 s back-off): decided by the store again.
    redis.restart();
    assert!(infra::wait_until(
        std::time::Duration::from_secs(5),
        || ping(closed.local_addr()) == 200
    ));
    assert_eq!(redis.command("DBSIZE"), ":1");
}

/// `--max-sessions-per-client` across instances sharing Redis: one client's sessions count
/// on every instance; an ended session gives its hold back; Redis never sees a session id.
#[test]
fn redis_shares_the_session_quota_across_instances() {
    let redis = infra::Redis::start();
    let url = redis.url();
    let start = |id: &str| {
        demo_proxy(&[
            "--max-sessions-per-client",
            "2",
            "--limits-store",
            url.as_str(),
            "--instance-id",
            id,
        ])
    };
    let (a, b) = (start("qa"), start("qb"));
    let s1 = Conn::open(a.local_addr()).initialize();
    let s2 = Conn::open(b.local_addr()).initialize();
    // A third session of the same client (127.0.0.1), on either instance: 429.
    for p in [&a, &b] {
        let r = Conn::open(p.local_addr()).post(None, crate::support::INIT);
        assert_eq!(r.status, 429, "{}", r.text());
        assert!(r.header("retry-after").is_some());
    }
    // Ending one (DELETE at its instance) makes room on the other instance.
    let del = Conn::open(b.local_addr()).request("DELETE", "/mcp", &session_headers(&s2), b"");
    assert_eq!(del.status, 200);
    let s3 = Conn::open(a.local_addr()).initialize();
    // Redis holds one sorted set for the client: opaque holds, no session id.
    let members = redis.command("ZRANGE shadowcat:rl:s:ip:127.0.0.1 0 -1");
    for sid in [&s1, &s3] {
        let (_, random) = sid.split_once('.').unwrap();
        assert!(!members.contains(random), "{members}");
    }
    assert!(members.starts_with("*2"), "{members}");
}

/// `--max-streams-per-client` across instances sharing Redis: a client's open stream on one
/// instance counts on the other; when it ends, the other lets the client stream.
#[test]
fn redis_shares_the_stream_quota_across_instances() {
    use crate::support::open_get;
    let redis = infra::Redis::start();
    let url = redis.url();
    let start = |id: &str| {
        demo_proxy(&[
            "--max-streams-per-client",
            "1",
            "--limits-store",
            url.as_str(),
            "--instance-id",
            id,
        ])
    };
    let (a, b) = (start("sa"), start("sb"));
    let s1 = Conn::open(a.local_addr()).initialize();
    let g1 = open_get(a.local_addr(), &s1);
    assert_eq!(g1.status, 200);
    let s2 = Conn::open(b.local_addr()).initialize();
    let g2 = open_get(b.local_addr(), &s2);
    assert_eq!(g2.status, 429, "the stream on the other instance counts");
    assert!(g2.header("retry-after").is_some());
    drop(g2);
    // Its session ends: the stream ends and gives its hold back.
    let del = Conn::open(a.local_addr()).request("DELETE", "/mcp", &session_headers(&s1), b"");
    assert_eq!(del.status, 200);
    drop(g1);
    assert!(infra::wait_until(std::time::Duration::from_secs(5), || {
        open_get(b.local_addr(), &s2).status == 200
    }));
    // Refused at least once (more while the first stream was still winding down).
    let m = get(b.local_addr(), "/metrics", &[]).text();
    let refused: f64 = m
        .lines()
        .find_map(|l| l.strip_prefix("shadowcat_rejected_total{reason=\"stream_quota\"} "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(refused >= 1.0, "{m}");
}
