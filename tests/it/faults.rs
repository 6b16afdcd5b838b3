//! An HTTP upstream that misbehaves on 30 % of requests: the pool and sockets must come out
//! whole and every client must get an answer.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::support::*;

/// Counts of what the fault server did.
#[derive(Default)]
struct Faults {
    served: AtomicUsize,
    open: AtomicUsize,
}

/// The fault server (stopped on drop): request n is faulty when n % 10 < 3, the kind cycling
/// through reset, stall past the deadline, 500, truncated body, never-ending body.
fn fault_server(f: Arc<Faults>) -> Acceptor {
    Acceptor::start(move |s| {
        f.open.fetch_add(1, Ordering::SeqCst);
        serve_conn(s, &f);
        f.open.fetch_sub(1, Ordering::SeqCst);
    })
}

fn serve_conn(s: TcpStream, f: &Faults) {
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    loop {
        let mut len = 0usize;
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h.trim().is_empty() {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let n = f.served.fetch_add(1, Ordering::SeqCst);
        let ok = serde_json::json!({"jsonrpc":"2.0","id":v["id"],"result":{"n":n}}).to_string();
        let fault = if n % 10 < 3 { Some((n / 10) % 5) } else { None };
        match fault {
            None => {
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{ok}",
                    ok.len()
                );
                if w.write_all(resp.as_bytes()).is_err() {
                    return;
                }
            }
            Some(0) => {
                // Connection reset: linger 0, then close.
                let lg = libc::linger {
                    l_onoff: 1,
                    l_linger: 0,
                };
                unsafe {
                    libc::setsockopt(
                        w.as_raw_fd(),
                        libc::SOL_SOCKET,
                        libc::SO_LINGER,
                        &lg as *const _ as *const libc::c_void,
                        std::mem::size_of::<libc::linger>() as libc::socklen_t,
                    );
                }
                return;
            }
            Some(1) => {
                std::thread::sleep(Duration::from_millis(400)); // past the 150 ms deadline
                return;
            }
            Some(2) => {
                let b = "oops";
                let _ = write!(
                    w,
                    "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{b}",
                    b.len()
                );
            }
            Some(3) => {
                let _ = write!(
                    w,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"jsonrpc\""
                );
                return;
            }
            _ => {
                let _ = write!(
                    w,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                );
                let until = Instant::now() + Duration::from_secs(5);
                while Instant::now() < until && w.write_all(b"1\r\n \r\n").is_ok() {
                    std::thread::sleep(Duration::from_millis(5));
                }
                return;
            }
        }
    }
}

const MODERN: &str = "2026-07-28";

#[test]
fn ten_thousand_requests_thirty_percent_faults() {
    let f = Arc::new(Faults::default());
    let server = fault_server(f.clone());
    let up = server.addr;
    let p = demo_proxy(&[
        "--upstream",
        &format!("http://{up}/mcp"),
        "--request-timeout",
        "150ms",
        "--sse-idle-timeout",
        "150ms",
        "--upstream-pool",
        "16",
    ]);
    let a = p.local_addr();
    let clients = 32;
    let per = 10_000 / clients + 1;
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            std::thread::spawn(move || {
                let mut conn = Conn::open(a);
                let mut answered = 0;
                let mut ok = 0;
                for i in 0..per {
                    let id = c * 100_000 + i;
                    let body = format!(
                        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"x","_meta":{{"io.modelcontextprotocol/protocolVersion":"{MODERN}","io.modelcontextprotocol/clientCapabilities":{{}}}}}}}}"#
                    );
                    let mut h: Vec<(&str, &str)> = JSON_HEADERS.to_vec();
                    h.push(("MCP-Protocol-Version", MODERN));
                    h.push(("Mcp-Method", "tools/call"));
                    h.push(("Mcp-Name", "x"));
                    let r = conn.request("POST", "/mcp", &h, body.as_bytes());
                    answered += 1;
                    if r.status == 200 {
                        let v = r.json();
                        assert_eq!(v["id"], id);
                        ok += 1;
                    } else {
                        assert!(matches!(r.status, 500 | 502 | 503 | 504), "{}", r.status);
                        assert!(r.json().get("error").is_some() || r.status == 500);
                    }
                }
                (answered, ok)
            })
        })
        .collect();
    let (mut answered, mut ok) = (0, 0);
    for h in handles {
        let (a, o) = h.join().unwrap();
        answered += a;
        ok += o;
    }
    assert_eq!(answered, clients * per, "every client got an answer");
    assert!(ok >= answered * 6 / 10, "ok {ok} of {answered}");
    // The pool: nothing checked out, nothing over capacity.
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let pool = p.proxy().upstream().pool().unwrap();
        let (conns, idle) = (pool.connections, pool.idle);
        if conns == idle && conns <= 16 {
            break;
        }
        assert!(
            Instant::now() < until,
            "pool not whole: {conns} connections, {idle} idle"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Upstream sockets: at most one per slot is left open (kept alive).
    let until = Instant::now() + Duration::from_secs(6);
    while f.open.load(Ordering::SeqCst) > 16 {
        assert!(
            Instant::now() < until,
            "{} upstream sockets open",
            f.open.load(Ordering::SeqCst)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(p);
    // Proxy gone: every upstream socket closes.
    let until = Instant::now() + Duration::from_secs(6);
    while f.open.load(Ordering::SeqCst) > 0 {
        assert!(
            Instant::now() < until,
            "{} upstream sockets still open",
            f.open.load(Ordering::SeqCst)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(server);
}
