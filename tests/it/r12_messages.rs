//! Issue 12, items 7–11 (messages and headers): mirrored routing headers built from the body
//! and repeated headers refused, log lines that cannot be forged, ids compared by one
//! canonical form, `_meta` read without parsing the rest of params, fractional JWT dates, and
//! the JSON-RPC outcome in the access log. Each test failed before its fix.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use shadowcat::http::{Handler, Request, Responder, Response, Server, ServerConfig};

use crate::support::*;

/// An HTTP upstream that answers every request with the request headers it received
/// (`result.headers`, names lowercased), and counts the POSTs that reached it. It reads only
/// `id` and `method` of a body, so any params get through it.
#[derive(Default)]
struct EchoHeaders {
    posts: AtomicUsize,
}

impl Handler for EchoHeaders {
    fn handle(&self, req: Request, res: &mut Responder<'_>) {
        if req.method != "POST" {
            let _ = res.send(Response::new(405));
            return;
        }
        self.posts.fetch_add(1, Ordering::SeqCst);
        #[derive(serde::Deserialize)]
        struct Envelope {
            id: Option<Box<RawValue>>,
            method: Option<String>,
        }
        let Ok(env) = serde_json::from_slice::<Envelope>(&req.body) else {
            let _ = res.send(Response::new(400));
            return;
        };
        let Some(id) = env.id else {
            let _ = res.send(Response::new(202));
            return;
        };
        let mut resp = Response::new(200);
        let result = if env.method.as_deref() == Some("initialize") {
            resp = resp.with_header("mcp-session-id", "upstream-1");
            json!({"protocolVersion": "2025-11-25", "capabilities": {},
                "serverInfo": {"name": "echo-headers", "version": "1"}})
        } else {
            let h: Vec<Value> = req
                .headers
                .iter()
                .map(|(k, v)| json!([k.to_lowercase(), v]))
                .collect();
            json!({ "headers": h })
        };
        let body = format!(r#"{{"jsonrpc":"2.0","id":{},"result":{result}}}"#, id.get());
        let _ = res.send(resp.with_body("application/json", body.into_bytes()));
    }
}

fn echo_headers() -> (Server, Arc<EchoHeaders>, String) {
    let f = Arc::new(EchoHeaders::default());
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let s = Server::start(l, ServerConfig::default(), f.clone()).unwrap();
    let url = format!("http://{}/mcp", s.local_addr());
    (s, f, url)
}

/// A 2026-07-28 (stateless) request body: `method` with `params` plus the `_meta` envelope.
fn modern(id: u32, method: &str, mut params: Value) -> String {
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
    });
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string()
}

/// POSTs `body` with the MCP headers plus `extra`.
fn post_extra(addr: SocketAddr, extra: &[(&str, &str)], body: &str) -> Resp {
    let mut h: Vec<(&str, &str)> = JSON_HEADERS.to_vec();
    h.extend_from_slice(extra);
    Conn::open(addr).request("POST", "/mcp", &h, body.as_bytes())
}

/// The `Mcp-*` headers an upstream saw, lowercased and sorted.
fn mcp_headers_seen(r: &Resp) -> Vec<(String, String)> {
    let mut seen: Vec<(String, String)> = r.json()["result"]["headers"]
        .as_array()
        .unwrap_or_else(|| panic!("no headers in {}", r.text()))
        .iter()
        .filter_map(|p| {
            let (k, v) = (p[0].as_str()?, p[1].as_str()?);
            k.starts_with("mcp-")
                .then(|| (k.to_string(), v.to_string()))
        })
        .collect();
    seen.sort();
    seen
}

/// `(name, value)` pairs, sorted as [`mcp_headers_seen`] sorts.
fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = v
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    out.sort();
    out
}

/// Asserts a 400 with the given JSON-RPC code.
fn assert_refused(r: &Resp, code: i64, what: &str) {
    assert_eq!(r.status, 400, "{what}: {}", r.text());
    assert_eq!(r.json()["error"]["code"], code, "{what}: {}", r.text());
}

/// Item 7: what an HTTP upstream gets as `Mcp-Method`, `Mcp-Name` and `Mcp-Param-*` is built
/// from (or checked against) the body, never a client's word; disagreement is 400 -32020 and
/// never reaches the upstream.
#[test]
fn r12_routing_headers_come_from_the_body() {
    let (_up, f, url) = echo_headers();
    let p = demo_proxy(&["--upstream", &url]);
    let addr = p.local_addr();
    let echo = modern(
        1,
        "tools/call",
        json!({"name": "echo", "arguments": {"message": "hi", "opts": {"region": "eu-west1"}}}),
    );
    let v = [
        ("MCP-Protocol-Version", "2026-07-28"),
        ("Mcp-Method", "tools/call"),
        ("Mcp-Name", "echo"),
    ];

    // A client that sends them: the upstream gets them, built from the body.
    let r = post_extra(addr, &v, &echo);
    assert_eq!(r.status, 200, "{}", r.text());
    let built = pairs(&[
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "echo"),
    ]);
    assert_eq!(mcp_headers_seen(&r), built);
    // Issue #13: 2026-07-28 requires them; one missing is 400 -32020, never forwarded.
    let before = f.posts.load(Ordering::SeqCst);
    for missing in 0..v.len() {
        let mut h = v.to_vec();
        h.remove(missing);
        assert_refused(&post_extra(addr, &h, &echo), -32020, &format!("{h:?}"));
    }
    assert_eq!(f.posts.load(Ordering::SeqCst), before);

    // Correct headers pass; an Mcp-Param-* matching an argument is forwarded as sent.
    let mut ok = v.to_vec();
    ok.extend([("Mcp-Param-Region", "eu-west1")]);
    let r = post_extra(addr, &ok, &echo);
    assert_eq!(r.status, 200, "{}", r.text());
    let with_param = pairs(&[
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "echo"),
        ("mcp-param-region", "eu-west1"),
    ]);
    assert_eq!(mcp_headers_seen(&r), with_param);

    // The attack of the issue, one header at a time: each is 400 -32020 and never forwarded.
    let before = f.posts.load(Ordering::SeqCst);
    for bad in [
        ("Mcp-Method", "tools/list"),
        ("Mcp-Name", "other_tool"),
        ("Mcp-Param-X", "inj"),
        ("Mcp-Name", "=?base64?b3RoZXJfdG9vbA==?="),
    ] {
        let mut h = v.to_vec();
        h.retain(|(n, _)| *n != bad.0);
        h.push(bad);
        assert_refused(&post_extra(addr, &h, &echo), -32020, &format!("{bad:?}"));
    }
    // The protocol version in the header and in `_meta` must agree.
    let r = post_extra(
        addr,
        &[
            ("MCP-Protocol-Version", "2025-11-25"),
            ("Mcp-Method", "tools/call"),
            ("Mcp-Name", "echo"),
        ],
        &echo,
    );
    assert_refused(&r, -32020, "version header vs _meta");
    // Two MCP-Protocol-Version fields: 400, neither is used.
    let two = [
        ("MCP-Protocol-Version", "2026-07-28"),
        ("MCP-Protocol-Version", "2025-11-25"),
        ("Mcp-Method", "tools/call"),
        ("Mcp-Name", "echo"),
    ];
    assert_refused(&post_extra(addr, &two, &echo), -32020, "two versions");
    assert_eq!(
        f.posts.load(Ordering::SeqCst),
        before,
        "no refused request may reach the upstream"
    );

    // Mcp-Param-* headers exist only for tools/call: dropped elsewhere.
    let list = modern(2, "tools/list", json!({}));
    let r = post_extra(
        addr,
        &[
            ("Mcp-Param-X", "inj"),
            ("MCP-Protocol-Version", "2026-07-28"),
            ("Mcp-Method", "tools/list"),
        ],
        &list,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        mcp_headers_seen(&r),
        pairs(&[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/list")
        ])
    );
}

/// Item 7 (and 11): a header the proxy reads as one value may appear once; a second copy is
/// 400 whatever the two say, on POST, GET and DELETE alike.
#[test]
fn r12_repeated_single_value_headers_are_400() {
    let p = demo_proxy(&[]);
    let addr = p.local_addr();
    let mut c = Conn::open(addr);
    let sid = c.initialize();
    let list = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;
    let post = |extra: &[(&str, &str)]| {
        let mut h = session_headers(&sid);
        h.extend_from_slice(extra);
        Conn::open(addr).request("POST", "/mcp", &h, list.as_bytes())
    };
    assert_eq!(post(&[]).status, 200);
    // The issue's case: localhost first, evil second, used to be 200.
    let r = post(&[
        ("Origin", "http://localhost"),
        ("Origin", "http://evil.example"),
    ]);
    assert_refused(&r, -32600, "two Origins");
    for (name, code) in [
        ("Content-Type", -32600),
        ("Authorization", -32600),
        ("Mcp-Session-Id", -32600),
        ("MCP-Protocol-Version", -32020),
        ("Mcp-Method", -32020),
        ("Mcp-Name", -32020),
        ("Mcp-Param-Region", -32020),
    ] {
        let value = match name {
            "Content-Type" => "application/json",
            "Mcp-Session-Id" => sid.as_str(),
            "MCP-Protocol-Version" => "2025-11-25",
            "Mcp-Method" => "tools/list",
            _ => "x",
        };
        // Same value twice, in different spellings of the name.
        let lower = name.to_ascii_lowercase();
        let mut h = vec![(name, value), (lower.as_str(), value)];
        if name == "Mcp-Session-Id" || name == "MCP-Protocol-Version" || name == "Content-Type" {
            h.truncate(1); // session_headers already carry one
        }
        assert_refused(&post(&h), code, name);
    }
    // GET with two Last-Event-IDs, DELETE with two session ids.
    let mut g = get_headers(&sid);
    g.extend([("Last-Event-ID", "1-1"), ("last-event-id", "1-2")]);
    let r = Conn::open(addr).request("GET", "/mcp", &g, b"");
    assert_refused(&r, -32600, "two Last-Event-IDs");
    let d = [("Mcp-Session-Id", sid.as_str()), ("Mcp-Session-Id", "x")];
    let r = Conn::open(addr).request("DELETE", "/mcp", &d, b"");
    assert_refused(&r, -32600, "two session ids on DELETE");
    // The session is still there: nothing above acted on it.
    assert_eq!(post(&[]).status, 200);
}

/// Spawns the proxy binary with a piped stderr, runs `f` against it, stops it and returns
/// every stderr line.
fn logged(args: &[&str], f: impl FnOnce(SocketAddr)) -> Vec<String> {
    let (mut proxy, addr) = spawn_proxy(args, Stdio::piped(), &[("RUST_LOG", "info")]);
    let stderr = proxy.0.stderr.take().expect("stderr piped");
    let reader = std::thread::spawn(move || {
        BufReader::new(stderr)
            .split(b'\n')
            .map_while(Result::ok)
            .map(|l| String::from_utf8_lossy(&l).into_owned())
            .collect::<Vec<String>>()
    });
    f(addr);
    unsafe { libc::kill(proxy.0.id() as i32, libc::SIGTERM) };
    // Bounded: killed after 20 s if it does not stop, which also ends the reader.
    crate::lifecycle::wait_timeout(&mut proxy.0, Duration::from_secs(20)).expect("stops");
    reader.join().expect("stderr reader")
}

/// Item 8 (CWE-117): a method name with a line break and a forged access line, and ANSI
/// escapes, reach the text log escaped: no forged line, no escape byte.
#[test]
fn r12_log_lines_cannot_be_forged() {
    let forged =
        "[2026-01-01T00:00:00.000Z INFO  shadowcat::access] 10.0.0.1:1 POST tools/call 200";
    let method = format!("x\n{forged}\r\u{1b}[2J\u{1b}[31mred\u{2028}");
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method}).to_string();
    let lines = logged(&["--stdio-children", "1"], |addr| {
        // No session: 400, and the access line names the method.
        assert_eq!(post(addr, None, &body).status, 400);
    });
    let text = lines.join("\n");
    // (env_logger indents a message's later lines; a reader that trims them, or a terminal
    // after the CR, still sees the forged line.)
    assert!(
        !lines
            .iter()
            .any(|l| l.trim_start().starts_with("[2026-01-01")),
        "a forged line made it into the log:\n{text}"
    );
    assert!(!text.contains('\u{1b}'), "an ANSI escape reached the log");
    assert!(!text.contains('\r') && !text.contains('\u{2028}'));
    let access = lines
        .iter()
        .find(|l| l.contains("shadowcat::access") && l.contains("POST x"))
        .unwrap_or_else(|| panic!("no access line:\n{text}"));
    assert!(
        access.contains(r"x\n[2026-01-01") && access.contains(r"\u{1b}[2J"),
        "{access}"
    );
}

/// Item 9: `notifications/cancelled` finds its call whatever the id's spelling, and ids that
/// are not strings or integers are refused.
#[test]
fn r12_cancellation_matches_ids_by_value() {
    let p = demo_proxy(&["--stdio-children", "1"]);
    let addr = p.local_addr();
    let sid = Conn::open(addr).initialize();
    for (id, cancel_as) in [
        (r#""\u0061bc""#, r#""\u0061bc""#),
        (r#""\u0061bc""#, r#""abc""#),
        ("1e2", "1e2"),
        ("1e2", "100"),
        ("18446744073709551616", "18446744073709551616"),
    ] {
        let call = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"slow_echo","arguments":{{"message":"m","delayMs":20000}}}}}}"#
        );
        let started = Instant::now();
        let mut stream = SseConn::open(addr, "POST", &session_headers(&sid), call.as_bytes());
        assert_eq!(stream.status, 200, "{id}");
        // The head arrived: the call is in flight.
        let cancel = format!(
            r#"{{"jsonrpc":"2.0","method":"notifications/cancelled","params":{{"requestId":{cancel_as},"reason":"r12 cancel"}}}}"#
        );
        assert_eq!(post(addr, Some(&sid), &cancel).status, 202, "{id}");
        stream.r_timeout(Duration::from_secs(10));
        let events = stream.until_response();
        let last = events.last().unwrap_or_else(|| panic!("{id}: no response"));
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{id} cancelled as {cancel_as}: the call ran on"
        );
        assert_eq!(last.json()["error"]["message"], "r12 cancel", "{id}");
        assert!(
            last.data.contains(&format!(r#""id":{id}"#)),
            "the client's id comes back as written: {}",
            last.data
        );
    }
    for bad in ["1.5", "1e400", "-0.5", "true"] {
        let body = format!(r#"{{"jsonrpc":"2.0","id":{bad},"method":"tools/list"}}"#);
        assert_refused(&post(addr, Some(&sid), &body), -32600, bad);
    }
}

/// Item 10: a stateless request is recognised by `_meta` without parsing the rest of params
/// into a tree: params nested deeper than a JSON tree may be (here 10,000 levels) still go
/// through, where building the tree failed and the request was taken for a session-era one.
#[test]
fn r12_meta_is_read_without_parsing_the_rest() {
    let (_up, f, url) = echo_headers();
    let p = demo_proxy(&["--upstream", &url]);
    let deep = format!("{}0{}", "[".repeat(10_000), "]".repeat(10_000));
    let body = modern(1, "tools/list", json!({}));
    let body = body.replacen(r#""params":{"#, &format!(r#""params":{{"pad":{deep},"#), 1);
    assert!(
        serde_json::from_str::<Value>(&body).is_err(),
        "too deep for a tree"
    );
    let v = [
        ("MCP-Protocol-Version", "2026-07-28"),
        ("Mcp-Method", "tools/list"),
    ];
    let r = post_extra(p.local_addr(), &v, &body);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(f.posts.load(Ordering::SeqCst), 1, "forwarded statelessly");
}

/// Item 11: RFC 7519 NumericDates may carry fractions; a token with a fractional `exp`,
/// `nbf` and `iat` is accepted.
#[test]
fn r12_fractional_jwt_dates_are_accepted() {
    let dir = TempDir::new("r12-jwt");
    let secret = "r12-secret-0123456789abcdef";
    let file = dir.path().join("secret");
    std::fs::write(&file, secret).unwrap();
    let resource = "https://mcp.example.com/mcp";
    let p = demo_proxy(&[
        "--auth-jwt",
        "--jwt-secret-file",
        &file.display().to_string(),
        "--resource-url",
        resource,
    ]);
    let now = jsonwebtoken::get_current_timestamp() as f64;
    shadowcat::internals::install_jwt_crypto();
    let token = |exp: f64| {
        let claims = json!({"sub": "alice", "aud": resource, "exp": exp,
            "nbf": now - 10.25, "iat": now - 10.25});
        let key = EncodingKey::from_secret(secret.as_bytes());
        format!(
            "Bearer {}",
            encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap()
        )
    };
    let good = token(now + 300.5);
    let r = post_with(p.local_addr(), &[("Authorization", &good)], None, INIT);
    assert_eq!(r.status, 200, "{}", r.text());
    let stale = token(now - 300.5);
    let r = post_with(p.local_addr(), &[("Authorization", &stale)], None, INIT);
    assert_eq!(r.status, 401, "{}", r.text());
}

/// Item 11: the access log tells a JSON-RPC error or a failed tool inside a 200 from a
/// success, for JSON answers and for the final message of a stream, in both formats.
#[test]
fn r12_access_log_shows_the_jsonrpc_outcome() {
    let run = |format: &str| {
        logged(&["--stdio-children", "1", "--log-format", format], |addr| {
            let mut c = Conn::open(addr);
            let sid = c.initialize();
            let calls = [
                r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
                r#"{"jsonrpc":"2.0","id":3,"method":"no/such_method"}"#,
                r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"test_error_handling","arguments":{}}}"#,
                r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"stream_events","arguments":{"count":3,"intervalMs":150}}}"#,
            ];
            for body in calls {
                let r = c.post(Some(&sid), body);
                assert_eq!(r.status, 200, "{body}: {}", r.text());
            }
        })
    };
    let want = [
        ("tools/list", 200, "ok", None),
        ("no/such_method", 200, "error", Some(-32601)),
        ("tools/call", 200, "tool_error", None),
        ("tools/call", 200, "ok", None),
        ("notifications/initialized", 202, "-", None),
    ];

    let lines = run("json");
    let access: Vec<Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|o| o["target"] == "shadowcat::access")
        .collect();
    for (method, status, rpc, code) in want {
        let hit = access.iter().any(|o| {
            o["mcp_method"] == method
                && o["status"] == status
                && o["rpc"] == rpc
                && o.get("rpc_code").and_then(Value::as_i64) == code
        });
        assert!(
            hit,
            "no access line {method} rpc={rpc} {code:?} in {access:#?}"
        );
    }

    let lines = run("text");
    let text: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("shadowcat::access"))
        .collect();
    for (method, status, rpc, code) in want {
        let tail = match code {
            Some(c) => format!("rpc={rpc}:{c}"),
            None => format!("rpc={rpc}"),
        };
        let hit = text
            .iter()
            .any(|l| l.contains(&format!(" {method} {status} ")) && l.ends_with(&tail));
        assert!(hit, "no access line {method} … {tail} in {text:#?}");
    }
}
