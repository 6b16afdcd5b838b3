//! HTTP upstream streams: resumption of a broken upstream stream, the standalone GET relay.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::*;

/// A fake upstream whose request streams break every 10 events.
#[derive(Default)]
struct Flaky {
    resumes: AtomicUsize,
    stop: AtomicBool,
}

/// Method, headers (lowercase names) and JSON body of one request.
type Req = (String, Vec<(String, String)>, Value);

fn read_request(r: &mut BufReader<TcpStream>) -> Option<Req> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let method = line.split_whitespace().next()?.to_string();
    let mut headers = Vec::new();
    let mut len = 0;
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        let (k, v) = (k.trim().to_lowercase(), v.trim().to_string());
        if k == "content-length" {
            len = v.parse().unwrap_or(0);
        }
        headers.push((k, v));
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some((
        method,
        headers,
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    ))
}

fn progress(n: u64) -> String {
    let v = json!({"jsonrpc":"2.0","method":"notifications/progress",
        "params":{"progressToken":"p","progress":n,"total":100}});
    format!("id: {n}\nevent: message\ndata: {v}\n\n")
}

fn sse_head(w: &mut TcpStream) {
    let _ = w.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n",
    );
}

fn serve(s: TcpStream, f: &Flaky) {
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    let Some((method, headers, body)) = read_request(&mut r) else {
        return;
    };
    let header = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let json_reply = |w: &mut TcpStream, v: Value, extra: &str| {
        let b = v.to_string();
        let _ = write!(
            w,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{b}",
            b.len()
        );
    };
    match (method.as_str(), body["method"].as_str()) {
        ("POST", Some("initialize")) => json_reply(
            &mut w,
            json!({"jsonrpc":"2.0","id":body["id"],"result":{"protocolVersion":"2025-11-25",
                "capabilities":{},"serverInfo":{"name":"flaky","version":"1"}}}),
            "Mcp-Session-Id: up-1\r\n",
        ),
        ("POST", Some("tools/call")) if body["params"]["name"] == "hundred" => {
            sse_head(&mut w);
            let _ = w.write_all(b"id: 0\ndata: \n\n"); // priming
            for n in 1..=10 {
                let _ = w.write_all(progress(n).as_bytes());
            }
            // ...and the connection drops before the response.
        }
        ("POST", Some("tools/call")) => {
            sse_head(&mut w);
            for n in 1..=3 {
                let v = json!({"jsonrpc":"2.0","method":"notifications/message",
                    "params":{"level":"info","data":n}});
                let _ = write!(w, "data: {v}\n\n");
            }
        }
        ("POST", _) => {
            let _ = w.write_all(
                b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
        ("GET", _) => match header("last-event-id").and_then(|v| v.parse::<u64>().ok()) {
            Some(last) => {
                assert_eq!(header("mcp-session-id").as_deref(), Some("up-1"));
                f.resumes.fetch_add(1, Ordering::SeqCst);
                sse_head(&mut w);
                // Replays one event already sent, which the proxy must drop.
                let _ = w.write_all(progress(last).as_bytes());
                let end = (last + 10).min(100);
                for n in last + 1..=end {
                    let _ = w.write_all(progress(n).as_bytes());
                }
                if end == 100 {
                    let fin = json!({"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"done"}]}});
                    let _ = write!(w, "id: 101\nevent: message\ndata: {fin}\n\n");
                }
            }
            None => {
                sse_head(&mut w);
                for n in 1..=3 {
                    let v = json!({"jsonrpc":"2.0","method":"notifications/tools/list_changed","params":{"n":n}});
                    let _ = write!(w, "id: s{n}\nevent: message\ndata: {v}\n\n");
                }
                let until = Instant::now() + Duration::from_secs(10);
                while !f.stop.load(Ordering::Relaxed) && Instant::now() < until {
                    if w.write_all(b": ping\n\n").is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        },
        _ => {
            let _ =
                w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    }
}

/// The fixture, its server (stopped on drop) and its URL.
fn flaky() -> (Arc<Flaky>, Acceptor, String) {
    let f = Arc::new(Flaky::default());
    let f2 = f.clone();
    let up = Acceptor::start(move |s| serve(s, &f2));
    let url = format!("http://{}/mcp", up.addr);
    (f, up, url)
}

#[test]
fn broken_upstream_stream_is_resumed_without_loss_or_duplicates() {
    let (f, _up, url) = flaky();
    let p = demo_proxy(&["--upstream", &url]);
    let a = p.local_addr();
    let sid = Conn::open(a).initialize();
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"hundred","arguments":{}}}"#;
    let mut s = SseConn::open(a, "POST", &session_headers(&sid), body.as_bytes());
    assert_eq!(s.status, 200);
    let evs = s.until_response();
    let got: Vec<u64> = evs
        .iter()
        .filter_map(|e| e.json()["params"]["progress"].as_u64())
        .collect();
    assert_eq!(
        got,
        (1..=100).collect::<Vec<_>>(),
        "in order, none lost, none twice"
    );
    let last = evs.last().unwrap().json();
    assert_eq!(last["id"], 1);
    assert_eq!(last["result"]["content"][0]["text"], "done");
    assert_eq!(f.resumes.load(Ordering::SeqCst), 9);
    f.stop.store(true, Ordering::Relaxed);
}

#[test]
fn stream_without_ids_that_breaks_ends_with_an_error() {
    let (f, _up, url) = flaky();
    let p = demo_proxy(&["--upstream", &url]);
    let a = p.local_addr();
    let sid = Conn::open(a).initialize();
    let body = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"other","arguments":{}}}"#;
    let mut s = SseConn::open(a, "POST", &session_headers(&sid), body.as_bytes());
    let evs: Vec<_> = s
        .until_response()
        .into_iter()
        .filter(|e| !e.data.is_empty())
        .collect();
    assert_eq!(evs.len(), 4, "{evs:?}");
    let last = evs.last().unwrap().json();
    assert_eq!(last["id"], 7);
    assert_eq!(last["error"]["code"], -32603);
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot be resumed")
    );
    f.stop.store(true, Ordering::Relaxed);
}

#[test]
fn client_get_opens_the_upstream_get_stream() {
    let (f, _up, url) = flaky();
    let p = demo_proxy(&["--upstream", &url]);
    let a = p.local_addr();
    let sid = Conn::open(a).initialize();
    let mut g = open_get(a, &sid);
    assert_eq!(g.status, 200);
    let mut ns = Vec::new();
    while ns.len() < 3 {
        let ev = g.next_event().expect("relayed event");
        assert!(
            ev.id.as_deref().is_some_and(|i| !i.starts_with('s')),
            "proxy ids, not upstream's"
        );
        ns.push(ev.json()["params"]["n"].as_u64().unwrap());
    }
    assert_eq!(ns, vec![1, 2, 3]);
    f.stop.store(true, Ordering::Relaxed);
}
