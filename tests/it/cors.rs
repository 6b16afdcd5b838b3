//! CORS for browser clients, raw HTTP: preflights from allowed and foreign origins, the
//! headers on JSON, SSE and error answers (401, 429 included), requests without `Origin`
//! unchanged, and the metadata document's own `*`. The rules: `src/proxy/cors.rs`.

use shadowcat::http::Handler;

use crate::support::*;

const APP: &str = "https://app.example";

/// The proxy with `https://app.example` allowed, plus `args`.
fn proxy(args: &[&str]) -> shadowcat::Shadowcat {
    let mut all = vec!["--allowed-origin", APP];
    all.extend_from_slice(args);
    demo_proxy(&all)
}

/// A preflight for `method` with `headers` requested, from `origin`.
fn preflight(addr: std::net::SocketAddr, origin: &str, method: &str, headers: &str) -> Resp {
    let mut h = vec![
        ("Origin", origin),
        ("Access-Control-Request-Method", method),
    ];
    if !headers.is_empty() {
        h.push(("Access-Control-Request-Headers", headers));
    }
    Conn::open(addr).request("OPTIONS", "/mcp", &h, b"")
}

/// Asserts the headers every answer to allowed `origin` carries.
fn assert_cors(headers: &[(String, String)], origin: &str, what: &str) {
    let all = |n: &str| -> Vec<&str> {
        headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.as_str())
            .collect()
    };
    assert_eq!(
        all("access-control-allow-origin"),
        [origin],
        "{what}: {headers:?}"
    );
    assert!(
        all("vary").iter().any(|v| v.eq_ignore_ascii_case("origin")),
        "{what}: {headers:?}"
    );
    let exposed = all("access-control-expose-headers").join(",");
    for h in ["mcp-session-id", "www-authenticate", "retry-after"] {
        assert!(exposed.contains(h), "{what}: {h} not exposed: {headers:?}");
    }
    assert!(
        all("access-control-allow-credentials").is_empty(),
        "{what}: {headers:?}"
    );
}

fn has_no_cors(headers: &[(String, String)]) -> bool {
    !headers.iter().any(|(k, _)| {
        k.to_ascii_lowercase().starts_with("access-control-") || k.eq_ignore_ascii_case("vary")
    })
}

#[test]
fn preflight_from_an_allowed_origin_is_204_with_the_endpoints_methods_and_headers() {
    let p = proxy(&[]);
    let addr = p.local_addr();
    let r = preflight(
        addr,
        APP,
        "POST",
        "content-type,mcp-protocol-version,mcp-session-id,mcp-param-region",
    );
    assert_eq!(r.status, 204, "{}", r.text());
    assert!(r.body.is_empty());
    assert_cors(&r.headers, APP, "preflight");
    assert_eq!(
        r.header("access-control-allow-methods"),
        Some("POST, GET, DELETE")
    );
    let allowed = r.header("access-control-allow-headers").unwrap_or_default();
    for h in [
        "content-type",
        "accept",
        "authorization",
        "mcp-session-id",
        "mcp-protocol-version",
        "last-event-id",
        "mcp-method",
        "mcp-name",
        "mcp-param-region",
    ] {
        assert!(allowed.split(", ").any(|a| a == h), "{h} in {allowed}");
    }
    assert_eq!(r.header("access-control-max-age"), Some("7200"));
    // Loopback origins need no flag; GET and DELETE are preflighted the same way.
    for (origin, method) in [
        ("http://localhost:5173", "GET"),
        ("http://127.0.0.1:9", "DELETE"),
    ] {
        let r = preflight(addr, origin, method, "mcp-session-id, last-event-id");
        assert_eq!(r.status, 204, "{origin}: {}", r.text());
        assert_cors(&r.headers, origin, origin);
    }
    // --cors-max-age is what the answer says, and what /admin/config shows.
    let q = proxy(&["--cors-max-age", "10m", "--admin-bind", "127.0.0.1:0"]);
    let r = preflight(q.local_addr(), APP, "POST", "content-type");
    assert_eq!(r.header("access-control-max-age"), Some("600"));
    let admin = q.admin_addr().expect("admin listener");
    let cfg = get(admin, "/admin/config", &[]).json();
    assert_eq!(cfg["corsMaxAgeSeconds"], 600.0);
    assert_eq!(cfg["allowedOrigins"], serde_json::json!([APP]));
}

#[test]
fn preflight_from_a_foreign_origin_is_403_without_cors_headers() {
    let p = proxy(&[]);
    for origin in [
        "https://evil.example",
        "https://app.example.evil.example",
        "http://app.example",
        "null",
    ] {
        let r = preflight(p.local_addr(), origin, "POST", "content-type");
        assert_eq!(r.status, 403, "{origin}: {}", r.text());
        assert!(has_no_cors(&r.headers), "{origin}: {:?}", r.headers);
    }
}

#[test]
fn preflight_for_another_method_or_an_unknown_header_is_refused() {
    let p = proxy(&[]);
    let addr = p.local_addr();
    for (method, headers) in [
        ("PUT", "content-type"),
        ("PATCH", ""),
        ("POST", "content-type, x-api-key"),
        ("POST", "cookie"),
        ("POST", "mcp-param-"),
        ("GET", "mcp-param-a(b)"),
    ] {
        let r = preflight(addr, APP, method, headers);
        assert_eq!(r.status, 403, "{method} {headers}: {}", r.text());
        assert!(r.header("access-control-allow-methods").is_none());
        assert!(r.header("access-control-allow-headers").is_none());
    }
    // An OPTIONS that is no preflight (no requested method) is a 405 as before.
    let r = Conn::open(addr).request("OPTIONS", "/mcp", &[("Origin", APP)], b"");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, POST, DELETE"));
}

#[test]
fn json_sse_and_delete_answers_to_an_allowed_origin_carry_the_cors_headers() {
    let p = proxy(&[]);
    let addr = p.local_addr();
    let origin = [("Origin", APP)];
    let init = post_with(addr, &origin, None, INIT);
    assert_eq!(init.status, 200, "{}", init.text());
    assert_cors(&init.headers, APP, "initialize");
    let sid = init.header("mcp-session-id").expect("session").to_string();
    let note = post_with(
        addr,
        &origin,
        Some(&sid),
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    );
    assert_eq!(note.status, 202);
    assert_cors(&note.headers, APP, "notification");
    // A request answered as a stream.
    let mut h = session_headers(&sid);
    h.push(("Origin", APP));
    let call = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"test_tool_with_progress","arguments":{},"_meta":{"progressToken":"p"}}}"#;
    let mut sse = SseConn::open(addr, "POST", &h, call.as_bytes());
    assert_eq!(sse.status, 200);
    assert_eq!(sse.header("content-type"), Some("text/event-stream"));
    assert_cors(&sse.headers, APP, "POST stream");
    assert!(!sse.until_response().is_empty());
    // The standalone stream.
    let mut g = get_headers(&sid);
    g.push(("Origin", APP));
    let get = SseConn::open(addr, "GET", &g, b"");
    assert_eq!(get.status, 200);
    assert_cors(&get.headers, APP, "GET stream");
    drop(get);
    let del = Conn::open(addr).request("DELETE", "/mcp", &g, b"");
    assert_eq!(del.status, 200);
    assert_cors(&del.headers, APP, "DELETE");
    // An error answer: the session is gone.
    let gone = post_with(addr, &origin, Some(&sid), call);
    assert_eq!(gone.status, 404);
    assert_cors(&gone.headers, APP, "404");
}

#[test]
fn requests_without_origin_are_unchanged() {
    let p = proxy(&[]);
    let addr = p.local_addr();
    let init = post(addr, None, INIT);
    assert_eq!(init.status, 200);
    assert!(has_no_cors(&init.headers), "{:?}", init.headers);
    let bad = post(addr, None, "not json");
    assert_eq!(bad.status, 400);
    assert!(has_no_cors(&bad.headers), "{:?}", bad.headers);
    // OPTIONS without Origin is no preflight: 405 as before, even asking for a method.
    let r = Conn::open(addr).request(
        "OPTIONS",
        "/mcp",
        &[("Access-Control-Request-Method", "POST")],
        b"",
    );
    assert_eq!(r.status, 405);
    assert!(has_no_cors(&r.headers), "{:?}", r.headers);
    // A foreign origin's actual request is refused without CORS headers, as before.
    let evil = post_with(addr, &[("Origin", "https://evil.example")], None, INIT);
    assert_eq!(evil.status, 403);
    assert!(has_no_cors(&evil.headers), "{:?}", evil.headers);
}

#[test]
fn auth_refusals_carry_cors_headers_and_preflights_need_no_token() {
    let dir = TempDir::new("cors-auth");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "cors-token-0123456789abcdef page\n").unwrap();
    let p = proxy(&["--auth-tokens", &tokens.display().to_string()]);
    let addr = p.local_addr();
    // The preflight carries no credentials and is answered all the same.
    let r = preflight(addr, APP, "POST", "authorization, content-type");
    assert_eq!(r.status, 204, "{}", r.text());
    // 401 that the page can read, challenge included.
    let denied = post_with(addr, &[("Origin", APP)], None, INIT);
    assert_eq!(denied.status, 401);
    assert_cors(&denied.headers, APP, "401");
    assert!(denied.header("www-authenticate").is_some());
    let ok = post_with(
        addr,
        &[
            ("Origin", APP),
            ("Authorization", "Bearer cors-token-0123456789abcdef"),
        ],
        None,
        INIT,
    );
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_cors(&ok.headers, APP, "authenticated");
    // The RFC 9728 metadata document keeps its own `*`, once, whatever the Origin.
    let meta = get(
        addr,
        "/.well-known/oauth-protected-resource",
        &[("Origin", APP)],
    );
    assert_eq!(meta.status, 200);
    let acao: Vec<&str> = meta
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("access-control-allow-origin"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(acao, ["*"]);
}

#[test]
fn preflights_are_not_charged_and_429_carries_cors_headers() {
    // Two tokens, refilled once every 100 s: nothing refills during the test.
    let p = proxy(&["--rate-limit", "0.01/2"]);
    let addr = p.local_addr();
    for _ in 0..10 {
        let r = preflight(addr, APP, "POST", "content-type");
        assert_eq!(r.status, 204, "preflights are not charged: {}", r.text());
    }
    let origin = [("Origin", APP)];
    assert_eq!(post_with(addr, &origin, None, INIT).status, 200);
    assert_eq!(post_with(addr, &origin, None, INIT).status, 200);
    let limited = post_with(addr, &origin, None, INIT);
    assert_eq!(limited.status, 429);
    assert_cors(&limited.headers, APP, "429");
    assert!(limited.header("retry-after").is_some());
    // Preflights still pass while the client is limited.
    assert_eq!(preflight(addr, APP, "POST", "content-type").status, 204);
}

#[test]
fn preflights_are_counted_in_the_metrics_as_options() {
    let p = proxy(&[]);
    let addr = p.local_addr();
    assert_eq!(preflight(addr, APP, "POST", "content-type").status, 204);
    assert_eq!(preflight(addr, APP, "PUT", "").status, 403);
    let text = get(addr, "/metrics", &[]).text();
    for line in [
        r#"shadowcat_requests_total{class="OPTIONS",status="204"} 1"#,
        r#"shadowcat_requests_total{class="OPTIONS",status="403"} 1"#,
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing");
    }
}

// --- The HTTP layer's own answers (413, 400, 417, 408, 503 ...) once a head was parsed ----

/// Sends `raw` on a fresh connection and reads the one answer.
fn raw(addr: std::net::SocketAddr, raw: &str) -> Resp {
    let mut c = Conn::open(addr);
    c.send_raw(raw.as_bytes());
    c.read_response().expect("an answer")
}

#[test]
fn the_http_layers_refusals_after_the_head_carry_cors_headers_for_allowed_origins() {
    let p = proxy(&["--max-body", "1KiB"]);
    let addr = p.local_addr();
    let cases = [
        (
            413,
            "POST /mcp HTTP/1.1\r\nHost: {a}\r\nOrigin: {o}\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n",
        ),
        (
            400,
            "POST /mcp HTTP/1.1\r\nHost: {a}\r\nOrigin: {o}\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
        ),
        (
            400,
            "POST /mcp HTTP/1.1\r\nHost: {a}\r\nOrigin: {o}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        ),
        (
            417,
            "POST /mcp HTTP/1.1\r\nHost: {a}\r\nOrigin: {o}\r\nExpect: teapot\r\nContent-Length: 2\r\n\r\n{}",
        ),
    ];
    for (status, template) in cases {
        let req = |origin: &str, path: &str| {
            template
                .replace("{a}", &addr.to_string())
                .replace("{o}", origin)
                .replace("/mcp", path)
        };
        // An allowed origin reads the status.
        let r = raw(addr, &req(APP, "/mcp"));
        assert_eq!(r.status, status, "{template}: {}", r.text());
        assert_cors(&r.headers, APP, template);
        // A loopback origin is allowed too (as in the pipeline).
        let r = raw(addr, &req("http://localhost:3000", "/mcp"));
        assert_eq!(r.status, status);
        assert_cors(&r.headers, "http://localhost:3000", template);
        // A foreign origin, no origin, another path: never.
        for (origin, path) in [
            ("https://evil.example", "/mcp"),
            ("", "/mcp"),
            (APP, "/other"),
        ] {
            let text = req(origin, path).replace("Origin: \r\n", "");
            let r = raw(addr, &text);
            assert_eq!(r.status, status, "{text}");
            assert!(has_no_cors(&r.headers), "{text}: {:?}", r.headers);
        }
    }
    // Two Origins: the pipeline would refuse it (400), so no origin is echoed.
    let two = format!(
        "POST /mcp HTTP/1.1\r\nHost: {addr}\r\nOrigin: {APP}\r\nOrigin: https://evil.example\r\nContent-Length: 5000\r\n\r\n"
    );
    let r = raw(addr, &two);
    assert_eq!(r.status, 413);
    assert!(has_no_cors(&r.headers), "{:?}", r.headers);
    // A head that was never parsed (431) cannot be answered with its Origin.
    let big = format!(
        "POST /mcp HTTP/1.1\r\nHost: {addr}\r\nOrigin: {APP}\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(9000)
    );
    let r = raw(addr, &big);
    assert_eq!(r.status, 431);
    assert!(has_no_cors(&r.headers), "{:?}", r.headers);
    // 405 is the pipeline's own answer: it always carried them.
    let r = Conn::open(addr).request("PUT", "/mcp", &[("Origin", APP)], b"");
    assert_eq!(r.status, 405);
    assert_cors(&r.headers, APP, "405");
}

/// A running proxy behind a [`shadowcat::http::Server`] with short body timeouts and one
/// worker (settings without flags); `GET /hold` holds the worker until released.
struct Tight {
    proxy: std::sync::Arc<shadowcat::Shadowcat>,
    hold: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
}

impl Handler for Tight {
    fn handle(&self, req: shadowcat::http::Request, res: &mut shadowcat::http::Responder<'_>) {
        if req.path() == "/hold" {
            let rx = self.hold.lock().unwrap_or_else(|e| e.into_inner());
            let _ = rx.recv_timeout(std::time::Duration::from_secs(10));
        }
        self.proxy.proxy().handle(req, res)
    }

    fn error_response(&self, status: u16, message: &str) -> shadowcat::http::Response {
        self.proxy.proxy().error_response(status, message)
    }

    fn error_headers(&self, head: &shadowcat::http::Request) -> Vec<(String, String)> {
        self.proxy.proxy().error_headers(head)
    }
}

#[test]
fn body_timeouts_and_busy_workers_carry_cors_headers_for_allowed_origins() {
    use std::time::Duration;
    let (release, hold) = std::sync::mpsc::channel();
    let tight = std::sync::Arc::new(Tight {
        proxy: std::sync::Arc::new(proxy(&[])),
        hold: std::sync::Mutex::new(hold),
    });
    let config = shadowcat::http::ServerConfig {
        body_timeout: Duration::from_millis(300),
        workers: 1,
        worker_wait: Duration::from_millis(300),
        ..Default::default()
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let server = shadowcat::http::Server::start(listener, config, tight).expect("server");
    let addr = server.local_addr();
    // 408: the body stops coming.
    for (origin, cors) in [(APP, true), ("https://evil.example", false)] {
        let r = raw(
            addr,
            &format!(
                "POST /mcp HTTP/1.1\r\nHost: {addr}\r\nOrigin: {origin}\r\nContent-Length: 100\r\n\r\n{{\"js"
            ),
        );
        assert_eq!(r.status, 408, "{}", r.text());
        if cors {
            assert_cors(&r.headers, APP, "408");
        } else {
            assert!(has_no_cors(&r.headers), "{:?}", r.headers);
        }
    }
    // 503: the only worker is held.
    let mut holder = Conn::open(addr);
    holder.send_raw(format!("GET /hold HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while server.stats().busy_workers == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut h = JSON_HEADERS.to_vec();
    h.push(("Origin", APP));
    let busy = Conn::open(addr).request("POST", "/mcp", &h, INIT.as_bytes());
    assert_eq!(busy.status, 503, "{}", busy.text());
    assert_cors(&busy.headers, APP, "503");
    assert_eq!(busy.header("retry-after"), Some("1"));
    let plain = Conn::open(addr).request("POST", "/mcp", &JSON_HEADERS, INIT.as_bytes());
    assert_eq!(plain.status, 503);
    assert!(has_no_cors(&plain.headers), "{:?}", plain.headers);
    release.send(()).expect("release");
    assert!(holder.read_response().is_some());
    server.shutdown(Duration::from_secs(1));
}
