//! Issue #13, a bridged call waiting for its client's input (parked) in front of real
//! server-everything over stdio in shared mode: it lets other sessions' shared calls use its
//! child meanwhile, completes when retried, is cancelled upstream when abandoned, and one client
//! may have only `--input-max-per-client` of them.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Conn, demo_proxy, everything_js, get, post_with};

const V: &str = "2026-07-28";
const SAMPLED: &str = "sampled while others ran";

/// POSTs a 2026-07-28 request declaring `caps`, with its mirrored headers.
fn modern(
    addr: SocketAddr,
    id: u64,
    method: &str,
    mut params: Value,
    caps: Value,
) -> crate::support::Resp {
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": V,
        "io.modelcontextprotocol/clientCapabilities": caps,
    });
    let name = params["name"].as_str().unwrap_or_default().to_owned();
    let body = json!({"jsonrpc":"2.0","id":id,"method":method,"params":params}).to_string();
    let mut h = vec![("MCP-Protocol-Version", V), ("Mcp-Method", method)];
    if !name.is_empty() {
        h.push(("Mcp-Name", name.as_str()));
    }
    post_with(addr, &h, None, &body)
}

fn everything(extra: &[&str]) -> shadowcat::Shadowcat {
    let cmd = format!("node {}", everything_js());
    let mut args = vec!["--stdio", &cmd, "--admin-bind", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    demo_proxy(&args)
}

fn sampling_call() -> Value {
    json!({"name":"trigger-sampling-request","arguments":{"prompt":"p","maxTokens":5}})
}

/// Starts a sampling call; returns its `InputRequiredResult`'s `result`.
fn park(addr: SocketAddr, id: u64) -> Value {
    let r = modern(
        addr,
        id,
        "tools/call",
        sampling_call(),
        json!({"sampling":{}}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["result"]["resultType"], "input_required", "{v}");
    v["result"].clone()
}

/// Calls in flight on the first child, as the admin API shows them.
fn inflight(p: &shadowcat::Shadowcat) -> u64 {
    let admin = p.admin_addr().expect("admin listener");
    let ups = get(admin, "/admin/upstreams", &[]).json();
    ups[0]["children"][0]["inflight"]
        .as_u64()
        .unwrap_or(u64::MAX)
}

/// `shadowcat_rejected_total{reason="<reason>"}`.
fn rejected(addr: SocketAddr, reason: &str) -> u64 {
    metric(
        addr,
        &format!("shadowcat_rejected_total{{reason=\"{reason}\"}}"),
    )
}

/// The value of the metric line `name` (with its labels).
fn metric(addr: SocketAddr, name: &str) -> u64 {
    let text = get(addr, "/metrics", &[]).text();
    let key = format!("{name} ");
    text.lines()
        .find_map(|l| l.strip_prefix(key.as_str()))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(u64::MAX)
}

/// One child, one parked sampling call: a session-era client's echo and a 2026-07-28 client's
/// `tools/list` on that child answer at once (before: they waited for the parked call until
/// `--request-timeout`, 504), then the parked call completes when retried.
#[test]
fn r13_a_parked_call_lets_plain_calls_use_its_child() {
    let p = everything(&["--stdio-children", "1", "--request-timeout", "20s"]);
    let a = p.local_addr();
    let parked = park(a, 1);
    let key = parked["inputRequests"]
        .as_object()
        .and_then(|m| m.keys().next().cloned())
        .expect("an input request");
    assert_eq!(
        parked["inputRequests"][&key]["method"],
        "sampling/createMessage"
    );
    assert_eq!(metric(a, "shadowcat_bridge_waiting_calls"), 1);

    // A session-era client that declared nothing: its calls are shared.
    let mut c = Conn::open(a);
    let sid = c.initialize();
    let started = Instant::now();
    let echo = c.post(
        Some(&sid),
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"message":"meanwhile"}}}"#,
    );
    let text = echo.text();
    assert_eq!(echo.status, 200, "{text}");
    assert!(text.contains("Echo: meanwhile"), "{text}");
    // Not a timing assertion: just what happened, for the log.
    eprintln!(
        "session-era echo beside a parked call: {:?}",
        started.elapsed()
    );
    // A 2026-07-28 request that is not a call (here `tools/list`) goes over the plain bridge
    // session: shared too. (A 2026-07-28 `tools/call` runs on a capable bridge session whatever
    // its client declared, so that an upstream's request for an undeclared capability becomes
    // -32021: in shared mode it is exclusive and waits, like a capable client's call.)
    let plain = modern(a, 3, "tools/list", json!({}), json!({}));
    let listed = plain.json();
    assert!(
        listed["result"]["tools"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["name"] == "echo")),
        "{}",
        plain.text()
    );

    // The parked call takes its child back and completes.
    let mut retry = sampling_call();
    retry["requestState"] = parked["requestState"].clone();
    retry["inputResponses"] = json!({ key: {"role":"assistant",
        "content":{"type":"text","text":SAMPLED},"model":"m","stopReason":"endTurn"} });
    let done = modern(a, 4, "tools/call", retry, json!({"sampling":{}}));
    let v = done.json();
    assert_eq!(v["id"], 4, "{v}");
    assert_eq!(v["result"]["resultType"], "complete", "{v}");
    let out = v["result"]["content"][0]["text"].as_str().unwrap_or("");
    assert!(out.contains(SAMPLED), "{v}");
    assert_eq!(metric(a, "shadowcat_bridge_waiting_calls"), 0);
    // And the child serves everyone again.
    let after = c.post(
        Some(&sid),
        r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo","arguments":{"message":"after"}}}"#,
    );
    assert!(after.text().contains("Echo: after"), "{}", after.text());
}

/// An abandoned parked call: plain calls ran beside it; once `--input-timeout` passes it is
/// cancelled upstream (the child has nothing in flight) and a capable call runs at once.
#[test]
fn r13_an_abandoned_parked_call_expires_and_is_cancelled_upstream() {
    let p = everything(&["--stdio-children", "1", "--input-timeout", "2s"]);
    let a = p.local_addr();
    let parked = park(a, 1);
    assert_eq!(inflight(&p), 1, "the parked call is in flight on the child");
    let echo = modern(
        a,
        2,
        "tools/call",
        json!({"name":"echo","arguments":{"message":"beside"}}),
        json!({}),
    );
    assert_eq!(echo.json()["result"]["content"][0]["text"], "Echo: beside");
    // Bounded wait for the sweep (every 0.5 s) past the 2 s timeout.
    let until = Instant::now() + Duration::from_secs(10);
    while inflight(&p) != 0 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(inflight(&p), 0, "the abandoned call was cancelled upstream");
    // The next capable call asking for input, let in while the child's messages are not
    // attributed yet (the cancellation's settling), waits that out: its request reaches it.
    let next = park(a, 5);
    assert_eq!(
        next["inputRequests"]["input-1"]["method"], "sampling/createMessage",
        "{next}"
    );
    // An exclusive (capable) call waits for that parked one, which times out in turn.
    let capable = modern(
        a,
        3,
        "tools/call",
        json!({"name":"echo","arguments":{"message":"free"}}),
        json!({"sampling":{}}),
    );
    assert_eq!(capable.json()["result"]["content"][0]["text"], "Echo: free");
    // Its state is refused now.
    let mut retry = sampling_call();
    retry["requestState"] = parked["requestState"].clone();
    retry["inputResponses"] = json!({"input-1":{"role":"assistant"}});
    let r = modern(a, 4, "tools/call", retry, json!({"sampling":{}}));
    assert_eq!(r.status, 400, "{}", r.text());
}

/// `--input-max-per-client 2`: a client's third waiting call is refused with 429, a
/// `Retry-After` of the first waiting call's timeout and a JSON-RPC error naming the flag, and
/// counted. Four children: the plain bridge session takes the first, and each capable call
/// (exclusive on its child, so it would wait behind a parked one) is placed on its own.
#[test]
fn r13_waiting_calls_are_bounded_per_client() {
    let p = everything(&[
        "--stdio-children",
        "4",
        "--input-max-per-client",
        "2",
        "--input-timeout",
        "60s",
    ]);
    let a = p.local_addr();
    park(a, 1);
    park(a, 2);
    let r = modern(a, 3, "tools/call", sampling_call(), json!({"sampling":{}}));
    assert_eq!(r.status, 429, "{}", r.text());
    let secs: u64 = r
        .header("retry-after")
        .and_then(|s| s.parse().ok())
        .expect("Retry-After");
    assert!((1..=60).contains(&secs), "{secs}");
    let v = r.json();
    assert_eq!(v["id"], 3, "{v}");
    assert_eq!(v["error"]["code"], -32600, "{v}");
    let msg = v["error"]["message"].as_str().unwrap_or("");
    assert!(msg.contains("--input-max-per-client"), "{v}");
    assert_eq!(rejected(a, "input_quota"), 1);
    // Calls that do not wait for input are not limited by it.
    let echo = modern(
        a,
        4,
        "tools/call",
        json!({"name":"echo","arguments":{"message":"still"}}),
        json!({}),
    );
    assert_eq!(echo.json()["result"]["content"][0]["text"], "Echo: still");
}
