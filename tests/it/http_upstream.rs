//! HTTP upstreams: header hygiene, session mapping, streaming, failures.

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shadowcat::http::{Handler, Responder, Server, ServerConfig};
use shadowcat::http::{Request, Response};

use crate::support::*;

/// A small MCP-ish upstream for edge cases.
#[derive(Default)]
struct Fixture {
    sessions: Mutex<HashSet<String>>,
    next: Mutex<u32>,
    deleted: Mutex<Vec<String>>,
    /// The Authorization header of each DELETE.
    delete_auth: Mutex<Vec<Option<String>>>,
}

impl Handler for Fixture {
    fn handle(&self, req: Request, res: &mut Responder<'_>) {
        if req.method == "DELETE" {
            if let Some(s) = req.header("mcp-session-id") {
                self.sessions.lock().unwrap().remove(s);
                self.deleted.lock().unwrap().push(s.to_string());
                self.delete_auth
                    .lock()
                    .unwrap()
                    .push(req.header("authorization").map(str::to_owned));
            }
            let _ = res.send(Response::new(200));
            return;
        }
        let msg: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let id = msg["id"].clone();
        if msg["method"] == "initialize" {
            let mut n = self.next.lock().unwrap();
            *n += 1;
            let sid = format!("upstream-session-{n}");
            self.sessions.lock().unwrap().insert(sid.clone());
            let body = json!({"jsonrpc":"2.0","id":id,"result":{"protocolVersion":"2025-11-25",
                "capabilities":{},"serverInfo":{"name":"fixture","version":"1"}}});
            let _ = res.send(
                Response::new(200)
                    .with_header("mcp-session-id", &sid)
                    .with_header("set-cookie", "secret=1")
                    .with_body("application/json", body.to_string().into_bytes()),
            );
            return;
        }
        let known = req
            .header("mcp-session-id")
            .is_some_and(|s| self.sessions.lock().unwrap().contains(s));
        if !known {
            let _ =
                res.send(Response::new(404).with_body("text/plain", b"no such session".to_vec()));
            return;
        }
        if msg.get("id").is_none() {
            let _ = res.send(Response::new(202));
            return;
        }
        match msg["params"]["name"].as_str() {
            Some("headers") => {
                let h: Vec<Value> = req.headers.iter().map(|(k, v)| json!([k, v])).collect();
                let body = json!({"jsonrpc":"2.0","id":id,"result":{"headers":h}});
                let _ = res.send(
                    Response::new(200)
                        .with_header("set-cookie", "secret=2")
                        .with_header("mcp-session-id", "leak")
                        .with_body("application/json", body.to_string().into_bytes()),
                );
            }
            Some("sse") => {
                let hs = [("content-type".to_string(), "text/event-stream".to_string())];
                let Ok(mut w) = res.stream(200, &hs) else {
                    return;
                };
                for i in 0..3 {
                    let ev = json!({"jsonrpc":"2.0","method":"notifications/progress",
                        "params":{"progressToken":1,"progress":i}});
                    let _ = w.write_chunk(
                        format!("id: e{i}\nevent: message\ndata: {ev}\n\n").as_bytes(),
                    );
                    std::thread::sleep(Duration::from_millis(300));
                }
                let fin = json!({"jsonrpc":"2.0","id":id,"result":{"done":true}});
                let _ = w.write_chunk(format!("data: {fin}\n\n").as_bytes());
                let _ = w.finish();
            }
            _ => {
                let body = json!({"jsonrpc":"2.0","id":id,"result":{}});
                let _ = res.send(
                    Response::new(200).with_body("application/json", body.to_string().into_bytes()),
                );
            }
        }
    }
}

fn fixture() -> (Server, Arc<Fixture>, String) {
    let f = Arc::new(Fixture::default());
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let s = Server::start(l, ServerConfig::default(), f.clone()).unwrap();
    let url = format!("http://{}/mcp", s.local_addr());
    (s, f, url)
}

/// The request headers the fixture's `headers` tool saw, names lowercased.
fn upstream_saw(r: &Resp) -> Vec<(String, String)> {
    r.json()["result"]["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap().to_lowercase(),
                p[1].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn call(name: &str, id: u32) -> String {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":name,"arguments":{}}})
        .to_string()
}

#[test]
fn headers_are_allow_listed_both_ways() {
    let (_up, _f, url) = fixture();
    let p = demo_proxy(&["--upstream", &url]);
    let mut c = Conn::open(p.local_addr());
    let r = c.post(None, INIT);
    assert_eq!(r.status, 200);
    assert!(r.header("set-cookie").is_none());
    let sid = r.header("mcp-session-id").unwrap().to_string();
    assert!(
        !sid.starts_with("upstream-session"),
        "client must only see our id"
    );
    let mut h: Vec<(&str, &str)> = JSON_HEADERS.to_vec();
    h.extend([
        ("Mcp-Session-Id", sid.as_str()),
        ("MCP-Protocol-Version", "2025-11-25"),
        ("Authorization", "Bearer client-token"),
        ("Proxy-Authorization", "Basic x"),
        ("Cookie", "c=1"),
        ("X-Api-Key", "k"),
        ("X-Forwarded-For", "1.2.3.4"),
        ("Mcp-Param-Region", "eu"),
    ]);
    // An `Mcp-Param-*` header must mirror an argument of the body (issue 12) to go upstream.
    let body = json!({"jsonrpc":"2.0","id":1,"method":"tools/call",
        "params":{"name":"headers","arguments":{"region":"eu"}}})
    .to_string();
    let r = c.request("POST", "/mcp", &h, body.as_bytes());
    assert_eq!(r.status, 200);
    assert!(r.header("set-cookie").is_none());
    assert!(r.header("mcp-session-id").is_none());
    let seen = upstream_saw(&r);
    let has = |n: &str| seen.iter().any(|(k, _)| k == n);
    for banned in [
        "authorization",
        "proxy-authorization",
        "cookie",
        "x-api-key",
        "x-forwarded-for",
    ] {
        assert!(!has(banned), "{banned} was forwarded: {seen:?}");
    }
    assert!(
        seen.iter()
            .any(|(k, v)| k == "mcp-session-id" && v == "upstream-session-1")
    );
    assert!(
        seen.iter()
            .any(|(k, v)| k == "mcp-param-region" && v == "eu")
    );
    assert!(has("mcp-protocol-version"));
}

/// Issue 7: the client's credentials never travel upstream; the upstream's come only from
/// `--upstream-header` (with `${VAR}` expanded), on every request, and are never shown.
#[test]
fn upstream_credentials_come_from_configuration_only() {
    let (_up, f, url) = fixture();
    let dir = TempDir::new("upstream-cred");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "client-token-0123456789 client\n").unwrap();
    let p = demo_proxy(&[
        "--upstream",
        &url,
        "--auth-tokens",
        &tokens.display().to_string(),
        "--upstream-header",
        "Authorization: Bearer upstream-${CARGO_PKG_NAME}",
        "--upstream-header",
        "X-Upstream-Key: key-${CARGO_PKG_NAME}",
        "--admin-bind",
        "127.0.0.1:0",
    ]);
    let addr = p.local_addr();
    let auth = [("Authorization", "Bearer client-token-0123456789")];
    let mut h: Vec<(&str, &str)> = JSON_HEADERS.to_vec();
    h.extend(auth);
    let r = Conn::open(addr).request("POST", "/mcp", &h, INIT.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    let sid = r.header("mcp-session-id").unwrap().to_string();
    h.extend([
        ("Mcp-Session-Id", sid.as_str()),
        ("MCP-Protocol-Version", "2025-11-25"),
    ]);
    let r = Conn::open(addr).request("POST", "/mcp", &h, call("headers", 1).as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = upstream_saw(&r);
    let values = |n: &str| -> Vec<&str> {
        seen.iter()
            .filter(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    assert_eq!(values("authorization"), ["Bearer upstream-shadowcat"]);
    assert_eq!(values("x-upstream-key"), ["key-shadowcat"]);
    // DELETE carries them too (the fixture records the session it ended).
    let mut d: Vec<(&str, &str)> = auth.to_vec();
    d.push(("Mcp-Session-Id", sid.as_str()));
    assert_eq!(
        Conn::open(addr).request("DELETE", "/mcp", &d, b"").status,
        200
    );
    assert_eq!(
        *f.delete_auth.lock().unwrap(),
        [Some("Bearer upstream-shadowcat".to_string())]
    );
    let cfg = Conn::open(p.admin_addr().unwrap()).request("GET", "/admin/config", &[], b"");
    assert!(!cfg.text().contains("shadowcat\""), "{}", cfg.text());
    assert!(!cfg.text().contains("upstream-shadowcat"), "{}", cfg.text());
    assert_eq!(cfg.json()["upstreamHeaders"]["authorization"], "<redacted>");
}

#[test]
fn upstream_forgetting_the_session_gives_404() {
    let (_up, f, url) = fixture();
    let p = demo_proxy(&["--upstream", &url]);
    let mut c = Conn::open(p.local_addr());
    let sid = c.initialize();
    assert_eq!(c.post(Some(&sid), &call("x", 1)).status, 200);
    f.sessions.lock().unwrap().clear(); // the upstream restarted
    assert_eq!(c.post(Some(&sid), &call("x", 2)).status, 404);
    // Our session is gone too, not just one answer.
    assert_eq!(c.post(Some(&sid), &call("x", 3)).status, 404);
}

#[test]
fn delete_is_forwarded() {
    let (_up, f, url) = fixture();
    let p = demo_proxy(&["--upstream", &url]);
    let mut c = Conn::open(p.local_addr());
    let sid = c.initialize();
    let r = c.request("DELETE", "/mcp", &[("Mcp-Session-Id", &sid)], b"");
    assert_eq!(r.status, 200);
    assert_eq!(f.deleted.lock().unwrap().as_slice(), ["upstream-session-1"]);
}

#[test]
fn sse_is_relayed_event_by_event() {
    let (_up, _f, url) = fixture();
    let p = demo_proxy(&["--upstream", &url]);
    let mut c = Conn::open(p.local_addr());
    let sid = c.initialize();
    let started = Instant::now();
    let r = c.post(Some(&sid), &call("sse", 9));
    let total = started.elapsed();
    assert_eq!(r.status, 200);
    let msgs = r.messages();
    assert_eq!(msgs.len(), 4, "{msgs:?}");
    assert_eq!(msgs[3]["result"]["done"], true);
    assert!(total >= Duration::from_millis(800));
}

#[test]
fn sse_first_event_arrives_before_the_stream_ends() {
    use std::io::{BufRead, BufReader, Write};
    let (_up, _f, url) = fixture();
    let p = demo_proxy(&["--upstream", &url]);
    let sid = Conn::open(p.local_addr()).initialize();
    let mut s = std::net::TcpStream::connect(p.local_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let body = call("sse", 3);
    let req = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nMcp-Session-Id: {sid}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let started = Instant::now();
    s.write_all(req.as_bytes()).unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    while !line.contains("notifications/progress") {
        line.clear();
        assert!(r.read_line(&mut line).unwrap() > 0);
    }
    // The upstream needs ~900 ms for the whole stream; the first event must not wait for it.
    assert!(
        started.elapsed() < Duration::from_millis(600),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn refused_upstream_is_502_naming_it() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/mcp");
    let p = demo_proxy(&["--upstream", &url]);
    let r = post(p.local_addr(), None, INIT);
    assert_eq!(r.status, 502);
    let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(msg.contains(&format!("127.0.0.1:{port}")), "{msg}");
}

#[test]
fn server_everything_streamable_http() {
    let (_peer, addr) = everything_http();
    let url = format!("http://{addr}/mcp");
    let p = demo_proxy(&["--upstream", &url]);
    let mut c = Conn::open(p.local_addr());
    let sid = c.initialize();
    let r = c.post(
        Some(&sid),
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hello through MCP"}}}"#,
    );
    assert_eq!(r.status, 200);
    let msgs = r.messages();
    let last = msgs.last().unwrap();
    assert_eq!(last["id"], 2);
    assert_eq!(
        last["result"]["content"][0]["text"],
        "Echo: hello through MCP"
    );
    let r = c.request("DELETE", "/mcp", &[("Mcp-Session-Id", &sid)], b"");
    assert_eq!(r.status, 200);
}
