//! Regression tests for issue #12, items 1 and 11 (the HTTP layer), over raw sockets.
//!
//! Item 1: clients that send requests and never read the answers must not take the workers.
//! A worker permit is returned before a response is written, every write has
//! `--client-write-timeout`, `/healthz` and `/readyz` need no worker, and a request waits at
//! most `--request-timeout` for one (then 503 with `Retry-After`).
//!
//! Item 11: an HTTP/1.1 request without `Host` is a 400 (RFC 9112 §3.2); `HEAD` of the
//! operations endpoints answers like `GET` without the body (RFC 9110 §9.3.2); `Host` and
//! `Origin` are parsed as `host[:port]` authorities, so look-alikes such as
//! `[::1]evil.example` are not loopback.
//!
//! Every test is bounded: each read has a timeout, waits poll with a deadline, sockets are on
//! loopback and servers on port 0.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use shadowcat::http::{Handler, Request, Responder, Server, ServerConfig};
use shadowcat::{Binding, Call, Error, Operate, Reply, Session, Shadowcat, Upstream};

use crate::support::*;

/// The generous bound on an answer that must not be held up (not a speed target; the
/// measured times are in `scripts/hostile.d/slow-readers.sh`).
const ANSWERED: Duration = Duration::from_secs(5);

/// A TCP connection with a 4 KiB receive buffer (set before connecting, so the window the
/// proxy sees is small from the start): a client that reads slowly or not at all.
fn connect_small_rcvbuf(addr: SocketAddr) -> TcpStream {
    use std::os::fd::FromRawFd;
    let SocketAddr::V4(v4) = addr else {
        panic!("IPv4 loopback expected, got {addr}")
    };
    // SAFETY: plain socket calls on a descriptor this function owns; it is handed to a
    // TcpStream (which closes it) before anything can fail.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let stream = TcpStream::from_raw_fd(fd);
        let size: libc::c_int = 4096;
        let rc = libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        assert_eq!(rc, 0, "SO_RCVBUF: {}", std::io::Error::last_os_error());
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: v4.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*v4.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        let rc = libc::connect(
            fd,
            (&sin as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert_eq!(rc, 0, "connect: {}", std::io::Error::last_os_error());
        stream
    }
}

/// A client that pipelines `request` ×`count` on a small-window connection and never reads.
/// Its writer thread stops when everything is sent, the proxy closes, or [`stop`](Self::stop).
struct SlowReader {
    stream: TcpStream,
    done: Arc<AtomicBool>,
    writer: Option<JoinHandle<()>>,
}

impl SlowReader {
    fn start(addr: SocketAddr, request: &[u8], count: usize) -> SlowReader {
        let stream = connect_small_rcvbuf(addr);
        let mut w = stream.try_clone().expect("clone");
        w.set_write_timeout(Some(Duration::from_millis(200)))
            .expect("write timeout");
        let bytes = request.repeat(count);
        let done = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        let writer = std::thread::spawn(move || {
            let mut at = 0;
            while at < bytes.len() && !d.load(Ordering::SeqCst) {
                match w.write(&bytes[at..]) {
                    Ok(0) => break,
                    Ok(k) => at += k,
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(_) => break,
                }
            }
            d.store(true, Ordering::SeqCst);
        });
        SlowReader {
            stream,
            done,
            writer: Some(writer),
        }
    }

    fn stop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
        let _ = self.stream.shutdown(Shutdown::Both);
        if let Some(h) = self.writer.take() {
            let _ = h.join();
        }
    }
}

impl Drop for SlowReader {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits (at most `bound`) until `cond` holds.
fn wait_for(bound: Duration, what: &str, cond: impl Fn() -> bool) {
    let until = Instant::now() + bound;
    while !cond() {
        assert!(Instant::now() < until, "not within {bound:?}: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The proxy's Send-Q (bytes written to the socket and not yet acknowledged) on its
/// connection from each client port, from `/proc/net/tcp`; `None` where there is no
/// established connection (the proxy closed it).
fn proxy_send_queues(proxy_port: u16, client_ports: &[u16]) -> Vec<Option<u64>> {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let port = |a: &str| {
        a.rsplit_once(':')
            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
    };
    let mut queues = std::collections::HashMap::new();
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 5 || f[3] != "01" || port(f[1]) != Some(proxy_port) {
            continue;
        }
        let tx = f[4]
            .split_once(':')
            .and_then(|(t, _)| u64::from_str_radix(t, 16).ok());
        if let (Some(remote), Some(tx)) = (port(f[2]), tx) {
            queues.insert(remote, tx);
        }
    }
    client_ports
        .iter()
        .map(|p| queues.get(p).copied())
        .collect()
}

/// Waits until the proxy is stuck writing to every slow reader: its send queue to each is
/// non-empty and has not moved for 500 ms (the client's window is closed, so it can only
/// grow while the proxy writes). A connection the proxy closed meanwhile (write timeout)
/// counts as done. Filling the kernel's buffers (up to 4 MiB per socket on loopback) takes a
/// few seconds of `/metrics` answers, hence the long bound.
fn wait_until_stuck(proxy_port: u16, readers: &[SlowReader]) {
    let ports: Vec<u16> = readers
        .iter()
        .map(|r| r.stream.local_addr().expect("local addr").port())
        .collect();
    let until = Instant::now() + Duration::from_secs(90);
    let mut last = proxy_send_queues(proxy_port, &ports);
    let mut quiet_since = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let now = proxy_send_queues(proxy_port, &ports);
        let still = now.iter().zip(&last).all(|(n, l)| match (n, l) {
            (None, _) => true,
            (Some(n), Some(l)) => n == l && *n > 0,
            (Some(_), None) => false,
        });
        if !still {
            quiet_since = Instant::now();
        } else if quiet_since.elapsed() >= Duration::from_millis(500) {
            let stuck = now.iter().flatten().count();
            eprintln!(
                "the proxy is stuck writing to {stuck} of {} slow readers",
                ports.len()
            );
            return;
        }
        last = now;
        assert!(
            Instant::now() < until,
            "the proxy never got stuck: {last:?}"
        );
    }
}

/// Sends `request` on a fresh connection and reads until the proxy closes it (the request
/// says `Connection: close`), at most `bound`. Returns the bytes and the time taken, or
/// `None` when the answer did not arrive in time.
fn exchange(addr: SocketAddr, request: &[u8], bound: Duration) -> Option<(Vec<u8>, Duration)> {
    let started = Instant::now();
    let mut s = TcpStream::connect_timeout(&addr, bound).ok()?;
    s.set_write_timeout(Some(bound)).ok()?;
    s.write_all(request).ok()?;
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let left = bound.checked_sub(started.elapsed())?;
        s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .ok()?;
        match s.read(&mut buf) {
            Ok(0) => return Some((out, started.elapsed())),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset && !out.is_empty() => {
                return Some((out, started.elapsed()));
            }
            Err(_) => return None,
        }
    }
}

/// The status of the first response in `bytes`.
fn status_of(bytes: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(bytes);
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"))
}

/// Head lines (status line and fields) and the bytes after the head.
fn split_head(bytes: &[u8]) -> (Vec<String>, &[u8]) {
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete head in {:?}", String::from_utf8_lossy(bytes)));
    let head = String::from_utf8_lossy(&bytes[..end]);
    (
        head.split("\r\n").map(str::to_owned).collect(),
        &bytes[end + 4..],
    )
}

fn field<'a>(head: &'a [String], name: &str) -> Option<&'a str> {
    head.iter().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn healthz_request(method: &str) -> Vec<u8> {
    format!("{method} /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .into_bytes()
}

fn initialize_request() -> Vec<u8> {
    format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nConnection: close\r\n\
         Content-Length: {}\r\n\r\n{INIT}",
        INIT.len()
    )
    .into_bytes()
}

/// Asserts that `request` is answered with `status` within [`ANSWERED`].
fn answered(addr: SocketAddr, request: &[u8], status: u16, what: &str) -> Vec<u8> {
    let (bytes, took) = exchange(addr, request, ANSWERED)
        .unwrap_or_else(|| panic!("{what}: no answer within {ANSWERED:?}"));
    assert_eq!(status_of(&bytes), status, "{what}");
    assert!(took < ANSWERED, "{what}: {took:?}");
    bytes
}

#[test]
fn r12_1_slow_readers_leave_health_and_mcp_answered() {
    // 64 clients (the default --workers) each pipeline 1,000 GET /metrics with a 4 KiB
    // receive buffer and never read. Before the fix each held a worker while its answer
    // could not be written (60 s), so nothing else was answered.
    // (3,000 of them, not 1,000: the answers must exceed what the kernel buffers for the
    // proxy, or it ends up idle instead of stuck.)
    let p = demo_proxy(&["--stdio-children", "1"]);
    let a = p.local_addr();
    let metrics = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    let mut readers: Vec<SlowReader> = (0..64)
        .map(|_| SlowReader::start(a, metrics, 3000))
        .collect();
    wait_until_stuck(a.port(), &readers);
    answered(a, &healthz_request("GET"), 200, "GET /healthz under attack");
    answered(a, &initialize_request(), 200, "initialize under attack");
    for r in &mut readers {
        r.stop();
    }
}

#[test]
fn r12_1_a_write_without_progress_closes_the_connection() {
    // One slow reader, --client-write-timeout 300ms: once the proxy cannot write for that long
    // it closes the connection (before the fix: the idle timeout, 60 s, was the write timeout).
    let p = demo_proxy(&["--stdio-children", "1", "--client-write-timeout", "300ms"]);
    let (proxy, a) = (p.proxy(), p.local_addr());
    let metrics = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    let mut r = SlowReader::start(a, metrics, 3000);
    wait_for(ANSWERED, "the slow reader's connection is closed", || {
        proxy.connections() == 0
    });
    // The client learns it too: the proxy's side is gone, so a write is refused (reset) soon.
    r.stream
        .set_write_timeout(Some(Duration::from_millis(200)))
        .expect("write timeout");
    let until = Instant::now() + ANSWERED;
    loop {
        match r.stream.write(metrics) {
            Err(e) if !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            _ => {}
        }
        assert!(Instant::now() < until, "the client's side stays open");
        std::thread::sleep(Duration::from_millis(50));
    }
    r.stop();
    answered(a, &healthz_request("GET"), 200, "GET /healthz afterwards");
}

/// Streams 16 KiB chunks until a write fails; reports how long that took.
struct Firehose(Mutex<mpsc::Sender<Duration>>);

impl Handler for Firehose {
    fn handle(&self, _req: Request, res: &mut Responder<'_>) {
        let started = Instant::now();
        let headers = [("Content-Type".to_string(), "text/event-stream".to_string())];
        if let Ok(mut w) = res.stream(200, &headers) {
            let chunk = vec![b'x'; 16 * 1024];
            // Bounded in case writes never fail: 1 GiB.
            for _ in 0..64 * 1024 {
                if w.write_chunk(&chunk).is_err() {
                    break;
                }
            }
        }
        let _ = self.0.lock().map(|tx| tx.send(started.elapsed()));
    }
}

#[test]
fn r12_1_a_stream_write_without_progress_ends_the_stream() {
    // Each chunk of a stream is written under the same write timeout: a client that stops
    // reading ends the stream (and frees its stream permit and connection thread).
    let (tx, rx) = mpsc::channel();
    let config = ServerConfig {
        write_timeout: Duration::from_millis(300),
        ..ServerConfig::default()
    };
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let server =
        Server::start(listener, config, Arc::new(Firehose(Mutex::new(tx)))).expect("start");
    let mut c = connect_small_rcvbuf(server.local_addr());
    c.write_all(b"GET /sse HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .expect("write");
    let took = rx
        .recv_timeout(ANSWERED)
        .expect("the stream to a client that does not read never ended");
    assert!(took < ANSWERED, "{took:?}");
    wait_for(ANSWERED, "stream permit and connection released", || {
        let s = server.stats();
        s.streams == 0 && s.connections == 0
    });
    drop(c);
}

/// An upstream whose `initialize` holds its worker until released (ignoring the request
/// deadline), so a test can take every worker for as long as it wants.
struct Holding {
    entered: AtomicUsize,
    release: Mutex<mpsc::Receiver<()>>,
}

impl Upstream for Holding {
    fn initialize(&self, _call: Call<'_>) -> Result<(Binding, Reply), Error> {
        self.entered.fetch_add(1, Ordering::SeqCst);
        if let Ok(rx) = self.release.lock() {
            let _ = rx.recv_timeout(Duration::from_secs(20));
        }
        Err(Error::Timeout)
    }
    fn forward(&self, _call: Call<'_>) -> Result<Reply, Error> {
        Err(Error::Timeout)
    }
    fn close(&self, _session: &Session) {}
}

impl Operate for Holding {
    fn name(&self) -> &str {
        "holding"
    }
    fn kind(&self) -> &'static str {
        "test"
    }
    fn mode(&self) -> &'static str {
        "holds"
    }
    fn ready(&self) -> Result<(), String> {
        Ok(())
    }
    fn shutdown(&self, _grace: Duration) {}
}

#[test]
fn r12_1_health_needs_no_worker_and_a_worker_wait_is_bounded() {
    // The one worker is held by an initialize that never ends on its own. /healthz and
    // /readyz (GET and HEAD) are still answered; another MCP request waits at most
    // --request-timeout for a worker, then gets 503 with Retry-After.
    init_log();
    let (release, rx) = mpsc::channel();
    let up = Arc::new(Holding {
        entered: AtomicUsize::new(0),
        release: Mutex::new(rx),
    });
    let cfg = config(&["--workers", "1", "--request-timeout", "500ms"]);
    let p = Shadowcat::start_with(cfg, up.clone()).expect("proxy starts");
    let a = p.local_addr();
    let holder = std::thread::spawn(move || exchange(a, &initialize_request(), ANSWERED * 4));
    wait_for(ANSWERED, "the worker is taken", || {
        up.entered.load(Ordering::SeqCst) == 1
    });
    answered(
        a,
        &healthz_request("GET"),
        200,
        "GET /healthz, no worker free",
    );
    answered(
        a,
        &healthz_request("HEAD"),
        200,
        "HEAD /healthz, no worker free",
    );
    let readyz = b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    answered(a, readyz, 200, "GET /readyz, no worker free");
    let started = Instant::now();
    let busy = answered(a, &initialize_request(), 503, "initialize, no worker free");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(450), "{waited:?}");
    let (head, _) = split_head(&busy);
    assert_eq!(field(&head, "retry-after"), Some("1"), "{head:?}");
    assert_eq!(
        up.entered.load(Ordering::SeqCst),
        1,
        "the 503 reached the upstream"
    );
    let _ = release.send(());
    let held = holder
        .join()
        .expect("holder")
        .expect("the held request is answered");
    assert_eq!(status_of(&held.0), 504);
}

#[test]
fn r12_11_http11_request_without_host_is_400() {
    // RFC 9112 §3.2: a server MUST answer 400 to an HTTP/1.1 request without Host. The
    // pipelined initialize after it is never run.
    let p = demo_proxy(&["--stdio-children", "1"]);
    let (proxy, a) = (p.proxy(), p.local_addr());
    let body = INIT;
    let no_host = format!(
        "POST /mcp HTTP/1.1\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    for first in [
        no_host.into_bytes(),
        b"GET /healthz HTTP/1.1\r\n\r\n".to_vec(),
        b"GET /healthz HTTP/1.1\r\nHostname: 127.0.0.1\r\n\r\n".to_vec(),
    ] {
        let mut req = first.clone();
        req.extend_from_slice(&initialize_request());
        let (bytes, _) = exchange(a, &req, ANSWERED).expect("an answer, then close");
        let (head, rest) = split_head(&bytes);
        let shown = String::from_utf8_lossy(&first);
        assert_eq!(status_of(&bytes), 400, "{shown:?}");
        assert_eq!(field(&head, "connection"), Some("close"), "{shown:?}");
        let len: usize = field(&head, "content-length")
            .and_then(|v| v.parse().ok())
            .expect("content-length");
        assert_eq!(rest.len(), len, "a second response after {shown:?}");
        assert_eq!(proxy.sessions().len(), 0, "initialize ran after {shown:?}");
    }
    // HTTP/1.0 has no such rule; an empty Host is allowed on HTTP/1.1 (not loopback though).
    answered(
        a,
        b"GET /healthz HTTP/1.0\r\n\r\n",
        200,
        "HTTP/1.0 without Host",
    );
    answered(
        a,
        b"GET /healthz HTTP/1.1\r\nHost:\r\nConnection: close\r\n\r\n",
        200,
        "empty Host",
    );
}

/// GET and then HEAD of `path` (with `extra` header lines) on one connection: the two heads,
/// and the bytes after the HEAD answer's head (must be none).
fn get_then_head(addr: SocketAddr, path: &str, extra: &str) -> (Vec<String>, Vec<String>, usize) {
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n\
         HEAD {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{extra}\r\n"
    );
    let (bytes, _) = exchange(addr, req.as_bytes(), ANSWERED).expect("two answers");
    let (get, rest) = split_head(&bytes);
    let len: usize = field(&get, "content-length")
        .and_then(|v| v.parse().ok())
        .expect("GET content-length");
    let (head, after) = split_head(&rest[len..]);
    (get, head, after.len())
}

#[test]
fn r12_11_head_of_the_operations_endpoints_is_get_without_a_body() {
    // RFC 9110 §9.3.2: HEAD is GET without the content; before the fix HEAD /healthz was 404.
    let p = demo_proxy(&[
        "--stdio-children",
        "1",
        "--metrics-token",
        "m-token-0123456789",
    ]);
    let a = p.local_addr();
    for path in ["/healthz", "/readyz"] {
        let (get, head, body) = get_then_head(a, path, "");
        assert_eq!(status_of(get[0].as_bytes()), 200, "GET {path}");
        // Same status line and fields (HEAD's carries Connection: close, as asked).
        let without_close = |h: &[String]| -> Vec<String> {
            h.iter()
                .filter(|l| !l.eq_ignore_ascii_case("connection: close"))
                .cloned()
                .collect()
        };
        assert_eq!(without_close(&head), without_close(&get), "HEAD {path}");
        assert_eq!(body, 0, "HEAD {path} sent a body");
    }
    // /metrics: the body changes between two requests, so compare all but its length.
    let auth = "Authorization: Bearer m-token-0123456789\r\n";
    let (get, head, body) = get_then_head(a, "/metrics", auth);
    assert_eq!(head[0], get[0]);
    assert_eq!(status_of(head[0].as_bytes()), 200);
    assert_eq!(field(&head, "content-type"), field(&get, "content-type"));
    let n = field(&head, "content-length").and_then(|v| v.parse::<usize>().ok());
    assert!(n.is_some_and(|n| n > 0), "HEAD /metrics: {head:?}");
    assert_eq!(body, 0, "HEAD /metrics sent a body");
    // Without the token HEAD is refused like GET.
    let (get, head, body) = get_then_head(a, "/metrics", "");
    assert_eq!(status_of(get[0].as_bytes()), 401);
    assert_eq!(head[0], get[0]);
    assert_eq!(
        field(&head, "www-authenticate"),
        field(&get, "www-authenticate")
    );
    assert_eq!(body, 0);
}

#[test]
fn r12_11_host_and_origin_are_parsed_not_pattern_matched() {
    // An authority is host[:port]: bytes after `]`, a second port or userinfo make it no
    // authority, so not loopback (403). Before the fix the first three were taken as ::1 or
    // 127.0.0.1.
    let p = demo_proxy(&["--stdio-children", "1"]);
    let a = p.local_addr();
    let port = a.port().to_string();
    let status = |headers: &[(&str, &str)]| post_with(a, headers, None, INIT).status;
    for host in [
        "[::1]evil.example",
        "127.0.0.1:80:evil.example",
        "[::1]:80:evil.example",
        "localhost:1@evil.example",
        "[::1].evil.example",
    ] {
        assert_eq!(status(&[("Host", host)]), 403, "Host: {host}");
    }
    for origin in [
        "http://[::1].evil.example",
        "http://[::1]evil.example",
        "http://127.0.0.1:80:evil.example",
    ] {
        assert_eq!(status(&[("Origin", origin)]), 403, "Origin: {origin}");
    }
    // Real loopback authorities still pass.
    let v6 = format!("[::1]:{port}");
    let v4 = format!("127.0.0.1:{port}");
    for host in [v6.as_str(), v4.as_str(), "localhost"] {
        assert_eq!(status(&[("Host", host)]), 200, "Host: {host}");
    }
    for origin in [
        "http://[::1]:3000",
        "https://localhost",
        "http://127.0.0.1:1",
    ] {
        assert_eq!(status(&[("Origin", origin)]), 200, "Origin: {origin}");
    }
}
