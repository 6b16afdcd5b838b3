//! Rate limits through the whole proxy: each key type (IP, forwarded IP behind a trusted
//! proxy, principal), the global and per-tool limits, the 429 answer and its Retry-After.
//! Buckets refill slowly in these tests (at most 1 token/s), so a refill during a test cannot
//! turn an expected 429 into a 200 unless the machine stalls for a second between requests;
//! where exact counts matter the rate is 0.1/s.

use std::net::SocketAddr;

use serde_json::json;

use crate::support::*;

const PING: &str = r#"{"jsonrpc":"2.0","id":"p-7","method":"ping"}"#;

fn echo(id: u32) -> String {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call",
        "params":{"name":"echo","arguments":{"message":"m"}}})
    .to_string()
}

fn rejected_rate(addr: SocketAddr) -> u64 {
    let m = get(addr, "/metrics", &[]);
    m.text()
        .lines()
        .find_map(|l| l.strip_prefix("shadowcat_rejected_total{reason=\"rate\"} "))
        .and_then(|v| v.trim().parse().ok())
        .expect("rate rejections exported")
}

#[test]
fn client_limit_answers_429_with_retry_after_and_a_jsonrpc_error() {
    let p = demo_proxy(&["--rate-limit", "0.1/3"]);
    let addr = p.local_addr();
    let sid = Conn::open(addr).initialize(); // initialize + initialized: 2 tokens
    assert_eq!(post_with(addr, &[], Some(&sid), PING).status, 200);
    let r = post_with(addr, &[], Some(&sid), PING);
    assert_eq!(r.status, 429, "{}", r.text());
    // 0.1 token/s from an empty bucket: 10 s to the next token.
    assert_eq!(r.header("retry-after"), Some("10"));
    let body = r.json();
    assert_eq!(body["id"], "p-7", "the error answers the request's id");
    assert_eq!(body["error"]["code"], -32600);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("rate limited (client limit)"),
        "{body}"
    );
    // GET and DELETE are charged too, and malformed requests as well.
    assert_eq!(
        Conn::open(addr)
            .request("GET", "/mcp", &get_headers(&sid), b"")
            .status,
        429
    );
    assert_eq!(post_with(addr, &[], None, "{not json").status, 429);
    assert_eq!(rejected_rate(addr), 3);
    // Operations endpoints are never limited.
    assert_eq!(get(addr, "/healthz", &[]).status, 200);
}

#[test]
fn retry_after_rounds_the_wait_up() {
    // 0.339 token/s: an empty bucket waits 2.95 s, announced as 3 (and still 3 if this
    // machine stalls up to 0.95 s between the two requests).
    let p = demo_proxy(&["--rate-limit", "0.339/1"]);
    let addr = p.local_addr();
    assert_eq!(post_with(addr, &[], None, INIT).status, 200);
    let r = post_with(addr, &[], None, INIT);
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("3"));
}

#[test]
fn forwarded_for_counts_only_behind_a_trusted_proxy() {
    // Untrusted peer: X-Forwarded-For is ignored, every request is 127.0.0.1's.
    let p = demo_proxy(&["--rate-limit", "0.1/2"]);
    let addr = p.local_addr();
    for (i, ip) in ["198.51.100.1", "198.51.100.2", "198.51.100.3"]
        .iter()
        .enumerate()
    {
        let r = post_with(addr, &[("X-Forwarded-For", ip)], None, INIT);
        assert_eq!(r.status, if i < 2 { 200 } else { 429 }, "{ip}");
    }
    drop(p);
    // Trusted loopback proxy: each forwarded client has its own bucket; the rightmost
    // untrusted hop is the client, so a spoofed leftmost entry changes nothing.
    let p = demo_proxy(&["--rate-limit", "0.1/2", "--trusted-proxy", "127.0.0.1"]);
    let addr = p.local_addr();
    for ip in ["198.51.100.1", "198.51.100.2"] {
        for _ in 0..2 {
            let r = post_with(addr, &[("X-Forwarded-For", ip)], None, INIT);
            assert_eq!(r.status, 200, "{ip}");
        }
    }
    let spoofed = "203.0.113.66, 198.51.100.1";
    let r = post_with(addr, &[("X-Forwarded-For", spoofed)], None, INIT);
    assert_eq!(r.status, 429, "still 198.51.100.1's bucket");
    assert_eq!(
        post_with(addr, &[("X-Forwarded-For", "198.51.100.3")], None, INIT).status,
        200
    );
    let m = get(addr, "/metrics", &[]);
    assert!(
        m.text().contains("shadowcat_rate_limit_keys 3\n"),
        "three clients tracked"
    );
}

#[test]
fn principals_have_their_own_buckets_and_bad_tokens_spend_the_ip() {
    let dir = TempDir::new("rate-auth");
    let f = dir.path().join("tokens");
    std::fs::write(
        &f,
        "alice-0123456789abcdef alice\nbob-0123456789abcdef bob\n",
    )
    .unwrap();
    let p = demo_proxy(&[
        "--auth-tokens",
        &f.display().to_string(),
        "--rate-limit",
        "0.1/2",
    ]);
    let addr = p.local_addr();
    let alice = [("Authorization", "Bearer alice-0123456789abcdef")];
    let bob = [("Authorization", "Bearer bob-0123456789abcdef")];
    assert_eq!(post_with(addr, &alice, None, INIT).status, 200);
    assert_eq!(post_with(addr, &alice, None, INIT).status, 200);
    assert_eq!(post_with(addr, &alice, None, INIT).status, 429);
    // Same IP, other principal: untouched.
    assert_eq!(post_with(addr, &bob, None, INIT).status, 200);
    // Failed authentication is charged to the IP: 401 while it lasts, then 429.
    let eve = [("Authorization", "Bearer eve-guessing-00000000")];
    assert_eq!(post_with(addr, &eve, None, INIT).status, 401);
    assert_eq!(post_with(addr, &eve, None, INIT).status, 401);
    assert_eq!(post_with(addr, &eve, None, INIT).status, 429);
    // Bob's bucket is his own, not the IP's.
    assert_eq!(post_with(addr, &bob, None, INIT).status, 200);
}

#[test]
fn global_limit_spans_clients() {
    let p = demo_proxy(&[
        "--global-rate-limit",
        "0.1/3",
        "--trusted-proxy",
        "127.0.0.0/8",
    ]);
    let addr = p.local_addr();
    for ip in ["198.51.100.1", "198.51.100.2", "198.51.100.3"] {
        assert_eq!(
            post_with(addr, &[("X-Forwarded-For", ip)], None, INIT).status,
            200
        );
    }
    let r = post_with(addr, &[("X-Forwarded-For", "198.51.100.4")], None, INIT);
    assert_eq!(r.status, 429);
    assert!(r.text().contains("global limit"), "{}", r.text());
}

#[test]
fn tool_limit_applies_to_that_tool_only() {
    let p = demo_proxy(&["--tool-limit", "echo=0.1/1"]);
    let addr = p.local_addr();
    let sid = Conn::open(addr).initialize();
    let r = post_with(addr, &[], Some(&sid), &echo(1));
    assert_eq!(r.status, 200, "{}", r.text());
    let r = post_with(addr, &[], Some(&sid), &echo(2));
    assert_eq!(r.status, 429);
    assert!(r.text().contains("tool limit"), "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("10"));
    let other = json!({"jsonrpc":"2.0","id":3,"method":"tools/call",
        "params":{"name":"test_simple_text","arguments":{}}});
    assert_eq!(
        post_with(addr, &[], Some(&sid), &other.to_string()).status,
        200
    );
    assert_eq!(
        post_with(
            addr,
            &[],
            Some(&sid),
            r#"{"jsonrpc":"2.0","id":4,"method":"tools/list"}"#
        )
        .status,
        200
    );
}
