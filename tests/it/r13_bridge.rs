//! Issue #13 part A: shadowcat as a conformant 2026-07-28 server in front of any upstream.
//! Validation of modern requests, `server/discover`, and the bridge to session-era upstreams
//! (real server-everything over stdio, shared and per-session, and over HTTP): shaped results,
//! sampling and elicitation as MRTR, sealed `requestState`, progress on the call's stream.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::demo_proxy;
use crate::support::everything_http;
use crate::support::everything_js;
use crate::support::run_py_args;
use crate::support::{Resp, post_with};

const V: &str = "2026-07-28";

/// The `_meta` envelope declaring `caps`, plus `extra` members.
fn meta(caps: Value, extra: Value) -> Value {
    let mut m = json!({
        "io.modelcontextprotocol/protocolVersion": V,
        "io.modelcontextprotocol/clientCapabilities": caps,
    });
    if let (Value::Object(m), Value::Object(e)) = (&mut m, extra) {
        m.extend(e);
    }
    m
}

/// POSTs a 2026-07-28 request with its mirrored headers.
fn modern(addr: SocketAddr, id: u64, method: &str, mut params: Value, caps: Value) -> Resp {
    if params.get("_meta").is_none() {
        params["_meta"] = meta(caps, json!({}));
    }
    let name = params
        .get("name")
        .or_else(|| params.get("uri"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let body = json!({"jsonrpc":"2.0","id":id,"method":method,"params":params}).to_string();
    let mut h = vec![("MCP-Protocol-Version", V), ("Mcp-Method", method)];
    if let Some(n) = &name {
        h.push(("Mcp-Name", n));
    }
    post_with(addr, &h, None, &body)
}

/// The proxy in front of one server-everything child over stdio, once the child has settled:
/// server-everything asks `roots/list` right after its handshake (the proxy declares roots to
/// children), and on a loaded machine that request can come late, while the test's first
/// bridged call is the only one on the child (it would then be that call's, provably, and a
/// client without `roots` would get -32021). A plain call and a pause first let it come and be
/// refused with nothing of the test's in flight.
fn everything_stdio(extra: &[&str]) -> shadowcat::Shadowcat {
    let cmd = format!("node {}", everything_js());
    let mut args = vec!["--stdio", &cmd, "--stdio-children", "1"];
    args.extend_from_slice(extra);
    let p = demo_proxy(&args);
    let echo = json!({"name":"echo","arguments":{"message":"settle"}});
    let _ = modern(p.local_addr(), 0, "tools/call", echo, json!({}));
    std::thread::sleep(std::time::Duration::from_millis(500));
    p
}

fn refused(r: &Resp, status: u16, code: i64) {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], code, "{}", r.text());
}

const SAMPLED: &str = "sampled through the bridge";

fn sampling_answer() -> Value {
    json!({"role":"assistant","content":{"type":"text","text":SAMPLED},
           "model":"test-model","stopReason":"endTurn"})
}

#[test]
fn r13_modern_requests_are_validated() {
    let p = demo_proxy(&[]);
    let a = p.local_addr();
    let list = |h: &[(&str, &str)], body: Value| post_with(a, h, None, &body.to_string());
    let hv = [("MCP-Protocol-Version", V), ("Mcp-Method", "tools/list")];
    // No _meta, or _meta without capabilities: 400 -32602.
    refused(
        &list(&hv, json!({"jsonrpc":"2.0","id":1,"method":"tools/list"})),
        400,
        -32602,
    );
    let no_caps = json!({"jsonrpc":"2.0","id":2,"method":"tools/list",
        "params":{"_meta":{"io.modelcontextprotocol/protocolVersion":V}}});
    refused(&list(&hv, no_caps), 400, -32602);
    // An unsupported version: 400 -32022 with {supported, requested}.
    let old = json!({"jsonrpc":"2.0","id":3,"method":"tools/list","params":{"_meta":{
        "io.modelcontextprotocol/protocolVersion":"1900-01-01",
        "io.modelcontextprotocol/clientCapabilities":{}}}});
    let r = list(
        &[
            ("MCP-Protocol-Version", "1900-01-01"),
            ("Mcp-Method", "tools/list"),
        ],
        old,
    );
    refused(&r, 400, -32022);
    assert_eq!(r.json()["id"], 3);
    assert_eq!(r.json()["error"]["data"]["requested"], "1900-01-01");
    assert!(
        r.json()["error"]["data"]["supported"]
            .as_array()
            .is_some_and(|s| s.contains(&json!(V)))
    );
    // Mirrored headers missing or contradicting the body: 400 -32020.
    let r = modern(a, 4, "tools/list", json!({}), json!({}));
    assert_eq!(r.status, 200, "{}", r.text());
    let body = json!({"jsonrpc":"2.0","id":5,"method":"tools/list","params":{"_meta":meta(json!({}), json!({}))}});
    refused(
        &list(&[("MCP-Protocol-Version", V)], body.clone()),
        400,
        -32020,
    );
    refused(
        &list(
            &[("MCP-Protocol-Version", V), ("Mcp-Method", "tools/call")],
            body,
        ),
        400,
        -32020,
    );
    // Removed methods: 404 -32601, with the request's id.
    for (i, m) in [
        "initialize",
        "ping",
        "logging/setLevel",
        "resources/subscribe",
    ]
    .iter()
    .enumerate()
    {
        let r = modern(a, 10 + i as u64, m, json!({}), json!({}));
        refused(&r, 404, -32601);
        assert_eq!(r.json()["id"], 10 + i as u64);
    }
}

#[test]
fn r13_everything_stdio_discover_list_and_echo() {
    let p = everything_stdio(&["--cache-ttl", "1500ms"]);
    let a = p.local_addr();
    let d = modern(a, 1, "server/discover", json!({}), json!({}));
    assert_eq!(d.status, 200, "{}", d.text());
    let d = d.json()["result"].clone();
    let versions = d["supportedVersions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(versions.first(), Some(&json!(V)), "{d}");
    assert!(versions.len() >= 2, "and the session-era version: {d}");
    assert!(d["capabilities"]["tools"].is_object(), "{d}");
    assert_eq!(
        d["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "mcp-servers/everything"
    );
    let tools = modern(a, 2, "tools/list", json!({}), json!({})).json();
    let r = &tools["result"];
    assert_eq!(
        (r["resultType"].clone(), r["ttlMs"].clone()),
        (json!("complete"), json!(1500))
    );
    assert_eq!(r["cacheScope"], "private");
    assert!(
        r["tools"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["name"] == "echo"))
    );
    let echo = modern(
        a,
        3,
        "tools/call",
        json!({"name":"echo","arguments":{"message":"hi"}}),
        json!({}),
    );
    let e = echo.json();
    assert_eq!(e["id"], 3);
    assert_eq!(e["result"]["content"][0]["text"], "Echo: hi", "{e}");
    assert_eq!(e["result"]["resultType"], "complete");
    assert!(
        e["result"].get("ttlMs").is_none(),
        "tools/call is not cacheable"
    );
    // An unknown method: 404 -32601 (the bridge serves only 2026-07-28's own methods).
    refused(
        &modern(a, 4, "tasks/list", json!({}), json!({})),
        404,
        -32601,
    );
}

#[test]
fn r13_everything_stdio_sampling_and_elicitation_via_mrtr() {
    let p = everything_stdio(&[]);
    let a = p.local_addr();
    let caps = json!({"sampling":{},"elicitation":{}});
    let args = json!({"prompt":"hello","maxTokens":10});
    let call = json!({"name":"trigger-sampling-request","arguments":args});
    let first = modern(a, 1, "tools/call", call.clone(), caps.clone()).json();
    let r = &first["result"];
    assert_eq!(first["id"], 1);
    assert_eq!(r["resultType"], "input_required", "{first}");
    let (key, ask) = r["inputRequests"]
        .as_object()
        .and_then(|m| m.iter().next())
        .map(|(k, v)| (k.clone(), v.clone()))
        .expect("one input request");
    assert_eq!(ask["method"], "sampling/createMessage", "{ask}");
    let state = r["requestState"].as_str().expect("requestState").to_owned();

    // A tampered state is refused, and the real one still works afterwards.
    let mut bad = state.clone().into_bytes();
    let last = bad.len() - 3;
    bad[last] = if bad[last] == b'A' { b'B' } else { b'A' };
    let bad = String::from_utf8(bad).unwrap();
    let mut retry = call.clone();
    retry["inputResponses"] = json!({ key.clone(): sampling_answer() });
    retry["requestState"] = json!(bad);
    refused(
        &modern(a, 2, "tools/call", retry.clone(), caps.clone()),
        400,
        -32602,
    );
    // A state presented on another request is refused too.
    let mut other = json!({"name":"echo","arguments":{"message":"x"}});
    other["requestState"] = json!(state);
    refused(
        &modern(a, 3, "tools/call", other, caps.clone()),
        400,
        -32602,
    );

    retry["requestState"] = json!(state);
    let done = modern(a, 4, "tools/call", retry.clone(), caps.clone()).json();
    assert_eq!(done["id"], 4, "the retry's id: {done}");
    assert_eq!(done["result"]["resultType"], "complete", "{done}");
    let text = done["result"]["content"][0]["text"].as_str().unwrap_or("");
    assert!(text.contains(SAMPLED), "{done}");
    // Used once: a replay is refused.
    refused(
        &modern(a, 5, "tools/call", retry, caps.clone()),
        400,
        -32602,
    );

    // Elicitation the same way.
    let call = json!({"name":"trigger-elicitation-request","arguments":{}});
    let first = modern(a, 6, "tools/call", call.clone(), caps.clone()).json();
    assert_eq!(first["result"]["resultType"], "input_required", "{first}");
    let (key, ask) = first["result"]["inputRequests"]
        .as_object()
        .and_then(|m| m.iter().next())
        .map(|(k, v)| (k.clone(), v.clone()))
        .expect("one input request");
    assert_eq!(ask["method"], "elicitation/create", "{ask}");
    let mut retry = call;
    retry["inputResponses"] = json!({ key: {"action":"decline"} });
    retry["requestState"] = first["result"]["requestState"].clone();
    let done = modern(a, 7, "tools/call", retry, caps).json();
    assert_eq!(done["result"]["resultType"], "complete", "{done}");
}

#[test]
fn r13_undeclared_capability_is_32021() {
    let p = everything_stdio(&[]);
    let a = p.local_addr();
    // Declares sampling only; the tool asks for elicitation.
    let r = modern(
        a,
        1,
        "tools/call",
        json!({"name":"trigger-elicitation-request","arguments":{}}),
        json!({"sampling":{}}),
    );
    refused(&r, 400, -32021);
    assert!(r.json()["error"]["data"]["requiredCapabilities"]["elicitation"].is_object());
    // The child is free again: the refused call was cancelled upstream.
    let echo = modern(
        a,
        2,
        "tools/call",
        json!({"name":"echo","arguments":{"message":"after"}}),
        json!({"sampling":{}}),
    );
    assert_eq!(echo.json()["result"]["content"][0]["text"], "Echo: after");
}

#[test]
fn r13_abandoned_input_is_cancelled_and_its_state_expires() {
    let p = everything_stdio(&["--input-timeout", "1s"]);
    let a = p.local_addr();
    let caps = json!({"sampling":{}});
    let call = json!({"name":"trigger-sampling-request","arguments":{"prompt":"x","maxTokens":5}});
    let first = modern(a, 1, "tools/call", call.clone(), caps.clone()).json();
    assert_eq!(first["result"]["resultType"], "input_required", "{first}");
    std::thread::sleep(Duration::from_millis(2500));
    // The child is not held by the abandoned call: another call runs at once.
    let echo = modern(
        a,
        2,
        "tools/call",
        json!({"name":"echo","arguments":{"message":"free"}}),
        caps.clone(),
    );
    assert_eq!(echo.json()["result"]["content"][0]["text"], "Echo: free");
    let mut retry = call;
    retry["requestState"] = first["result"]["requestState"].clone();
    retry["inputResponses"] = json!({"input-1": sampling_answer()});
    let r = modern(a, 3, "tools/call", retry, caps);
    refused(&r, 400, -32602);
    assert!(r.text().contains("expired"), "{}", r.text());
}

#[test]
fn r13_progress_flows_on_the_calls_own_stream() {
    let p = everything_stdio(&[]);
    let a = p.local_addr();
    let params = json!({"name":"trigger-long-running-operation",
        "arguments":{"duration":1,"steps":3},
        "_meta": meta(json!({}), json!({"progressToken":"p-1"}))});
    let r = modern(a, 1, "tools/call", params, json!({}));
    let msgs = r.messages();
    let progress: Vec<&Value> = msgs
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .collect();
    assert!(!progress.is_empty(), "{msgs:?}");
    assert!(
        progress
            .iter()
            .all(|m| m["params"]["progressToken"] == "p-1")
    );
    let last = msgs.last().expect("a response");
    assert_eq!(last["id"], 1);
    assert_eq!(last["result"]["resultType"], "complete", "{last}");
    // No log message without `_meta` logLevel.
    assert!(!msgs.iter().any(|m| m["method"] == "notifications/message"));
}

#[test]
fn r13_everything_per_session_and_http_are_bridged() {
    let cmd = format!("node {}", everything_js());
    let per = demo_proxy(&["--stdio", &cmd, "--stdio-mode", "per-session"]);
    let (_peer, addr) = everything_http();
    let http = demo_proxy(&["--upstream", &format!("http://{addr}/mcp")]);
    for a in [per.local_addr(), http.local_addr()] {
        let d = modern(a, 1, "server/discover", json!({}), json!({}));
        assert_eq!(d.status, 200, "{}", d.text());
        assert_eq!(d.json()["result"]["supportedVersions"][0], V);
        let echo = modern(
            a,
            2,
            "tools/call",
            json!({"name":"echo","arguments":{"message":"bridged"}}),
            json!({}),
        );
        assert_eq!(echo.status, 200, "{}", echo.text());
        let e = echo.json();
        assert_eq!(e["result"]["content"][0]["text"], "Echo: bridged", "{e}");
        assert!(!echo.text().contains("not initialized"), "{}", echo.text());
        // Sampling over HTTP and per-session children too.
        let caps = json!({"sampling":{}});
        let call =
            json!({"name":"trigger-sampling-request","arguments":{"prompt":"y","maxTokens":5}});
        let first = modern(a, 3, "tools/call", call.clone(), caps.clone()).json();
        assert_eq!(first["result"]["resultType"], "input_required", "{first}");
        let key = first["result"]["inputRequests"]
            .as_object()
            .and_then(|m| m.keys().next().cloned())
            .expect("a key");
        let mut retry = call;
        retry["requestState"] = first["result"]["requestState"].clone();
        retry["inputResponses"] = json!({ key: sampling_answer() });
        let done = modern(a, 4, "tools/call", retry, caps).json();
        let text = done["result"]["content"][0]["text"].as_str().unwrap_or("");
        assert!(text.contains(SAMPLED), "{done}");
    }
}

#[test]
fn r13_python_client_pinned_to_2026_07_28() {
    let p = everything_stdio(&[]);
    let url = format!("http://{}/mcp", p.local_addr());
    let out = run_py_args("modern.py", &url, &[]);
    assert_eq!(out["protocolVersion"], V, "{out}");
    assert_eq!(out["echo"], "Echo: hello through the bridge", "{out}");
    assert!(
        out["sampling"]
            .as_str()
            .is_some_and(|s| s.contains(SAMPLED)),
        "{out}"
    );
    assert_eq!(out["samplingRequests"], 1, "{out}");
    assert_eq!(out["elicitationRequests"], 1, "{out}");
}

/// Opens a `subscriptions/listen` stream for `notifications`.
fn listen(addr: SocketAddr, id: &str, notifications: Value) -> crate::support::SseConn {
    let body = json!({"jsonrpc":"2.0","id":id,"method":"subscriptions/listen",
        "params":{"notifications":notifications,"_meta":meta(json!({}), json!({}))}})
    .to_string();
    let h = [
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
        ("MCP-Protocol-Version", V),
        ("Mcp-Method", "subscriptions/listen"),
    ];
    crate::support::SseConn::open(addr, "POST", &h, body.as_bytes())
}

#[test]
fn r13_subscriptions_listen_is_served_for_a_session_era_upstream() {
    let p = everything_stdio(&[]);
    let a = p.local_addr();
    let uri = "demo://resource/static/document/architecture.md";
    let mut s = listen(
        a,
        "L1",
        json!({"toolsListChanged":true,"resourceSubscriptions":[uri]}),
    );
    assert_eq!(s.status, 200);
    let ack = s.next_event().expect("the acknowledgement").json();
    assert_eq!(
        ack["method"], "notifications/subscriptions/acknowledged",
        "{ack}"
    );
    assert_eq!(
        ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        "L1"
    );
    assert_eq!(
        ack["params"]["notifications"]["resourceSubscriptions"][0],
        uri
    );
    // server-everything then sends resources/updated for subscribed URIs every 5 s.
    let r = modern(
        a,
        1,
        "tools/call",
        json!({"name":"toggle-subscriber-updates","arguments":{}}),
        json!({}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    // Every notification is tagged; a tools list change may come first.
    let mut update = Value::Null;
    for _ in 0..10 {
        let n = s.next_event().expect("an update within 20 s").json();
        assert_eq!(
            n["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], "L1",
            "{n}"
        );
        if n["method"] == "notifications/resources/updated" {
            update = n;
            break;
        }
        assert_eq!(n["method"], "notifications/tools/list_changed", "{n}");
    }
    assert_eq!(update["params"]["uri"], uri);
    assert_eq!(
        update["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        "L1"
    );
    // Discover advertises what the proxy now serves.
    let d = modern(a, 2, "server/discover", json!({}), json!({})).json();
    assert!(d["result"]["capabilities"].is_object(), "{d}");
}

#[test]
fn r13_dual_era_demo_unknown_methods_and_listen() {
    let p = demo_proxy(&[]);
    let a = p.local_addr();
    // The demo speaks 2026-07-28: an unknown method it answers -32601 is HTTP 404.
    refused(&modern(a, 1, "no/such", json!({}), json!({})), 404, -32601);
    // It does not serve subscriptions/listen itself: the proxy does, over a bridge session.
    let mut s = listen(a, "L2", json!({"toolsListChanged":true}));
    assert_eq!(s.status, 200);
    let ack = s.next_event().expect("the acknowledgement").json();
    assert_eq!(
        ack["method"], "notifications/subscriptions/acknowledged",
        "{ack}"
    );
    assert_eq!(
        ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        "L2"
    );
}
