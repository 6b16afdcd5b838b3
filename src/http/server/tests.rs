use super::*;
use crate::http::{Request, Responder, StreamError};
use std::io::BufRead;
use std::io::BufReader;
use std::sync::mpsc;

const T: Duration = Duration::from_secs(5);

fn start<F>(config: ServerConfig, f: F) -> Server
where
    F: Fn(Request, &mut Responder<'_>) + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    Server::start(listener, config, Arc::new(f)).expect("start")
}

/// Echoes method, target and body.
fn echo(req: Request, res: &mut Responder<'_>) {
    let mut body = format!("{} {} ", req.method, req.target).into_bytes();
    body.extend_from_slice(&req.body);
    let _ = res.send(Response::new(200).with_body("text/plain", body));
}

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        let mut it = self.headers.iter();
        it.find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

struct Client(BufReader<TcpStream>);

impl Client {
    fn new(server: &Server) -> Client {
        let s = TcpStream::connect(server.local_addr()).expect("connect");
        s.set_read_timeout(Some(T)).expect("timeout");
        Client(BufReader::new(s))
    }
    fn send(&mut self, bytes: &[u8]) {
        self.0.get_mut().write_all(bytes).expect("write");
    }
    fn line(&mut self) -> String {
        let mut l = String::new();
        self.0.read_line(&mut l).expect("read line");
        l.trim_end_matches(['\r', '\n']).to_string()
    }
    fn head(&mut self) -> Resp {
        let status_line = self.line();
        let status = status_line.split(' ').nth(1).and_then(|s| s.parse().ok());
        let status = status.unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let mut headers = Vec::new();
        loop {
            let l = self.line();
            if l.is_empty() {
                break;
            }
            let (n, v) = l.split_once(':').expect("header line");
            headers.push((n.to_string(), v.trim().to_string()));
        }
        Resp {
            status,
            headers,
            body: Vec::new(),
        }
    }
    fn chunk(&mut self) -> Vec<u8> {
        let size = usize::from_str_radix(&self.line(), 16).expect("chunk size");
        let mut data = vec![0; size + 2];
        self.0.read_exact(&mut data).expect("chunk");
        data.truncate(size);
        data
    }
    fn resp(&mut self) -> Resp {
        let mut r = self.head();
        if let Some(n) = r.header("content-length") {
            r.body = vec![0; n.parse().expect("length")];
            self.0.read_exact(&mut r.body).expect("body");
        } else if r.header("transfer-encoding").is_some() {
            loop {
                let c = self.chunk();
                if c.is_empty() {
                    break;
                }
                r.body.extend(c);
            }
        }
        r
    }
    /// Whether the server closed the connection (EOF or reset) within the timeout.
    fn closed(&mut self) -> bool {
        let mut buf = [0; 64];
        match self.0.read(&mut buf) {
            Ok(0) => true,
            Err(e) => e.kind() == io::ErrorKind::ConnectionReset,
            Ok(_) => false,
        }
    }
}

/// Waits (bounded) for a condition that becomes true right after a response is sent.
fn wait_until(cond: impl Fn() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < T, "condition not reached");
        thread::sleep(Duration::from_millis(2));
    }
}

fn expect_reject(server: &Server, request: &[u8], status: u16) {
    let mut c = Client::new(server);
    c.send(request);
    let r = c.resp();
    assert_eq!(r.status, status, "{}", String::from_utf8_lossy(request));
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.closed(), "connection stays open after {status}");
}

#[test]
fn get_and_post_echo() {
    let s = start(ServerConfig::default(), echo);
    let mut c = Client::new(&s);
    c.send(b"GET /x?y=1 HTTP/1.1\r\nHost: a\r\n\r\n");
    let r = c.resp();
    assert_eq!((r.status, r.text().as_str()), (200, "GET /x?y=1 "));
    assert_eq!(r.header("connection"), None);
    c.send(b"POST /mcp HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello");
    assert_eq!(c.resp().text(), "POST /mcp hello");
    c.send(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\nGET /after HTTP/1.1\r\nHost: t\r\n\r\n");
    let head = c.head();
    assert_eq!(head.header("content-length"), Some("7"));
    assert_eq!(c.resp().text(), "GET /after ");
}

#[test]
fn keep_alive_and_close() {
    let s = start(ServerConfig::default(), echo);
    let mut c = Client::new(&s);
    c.send(b"GET /1 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.resp().text(), "GET /1 ");
    c.send(b"GET /2 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let r = c.resp();
    assert_eq!(
        (r.text().as_str(), r.header("connection")),
        ("GET /2 ", Some("close"))
    );
    assert!(c.closed());
    let mut c = Client::new(&s);
    c.send(b"GET /3 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(c.resp().header("connection"), Some("keep-alive"));
    c.send(b"GET /4 HTTP/1.0\r\n\r\n");
    assert_eq!(c.resp().header("connection"), Some("close"));
    assert!(c.closed());
}

#[test]
fn pipelined_requests_in_order() {
    let s = start(ServerConfig::default(), echo);
    let mut c = Client::new(&s);
    c.send(b"GET /a HTTP/1.1\r\nHost: t\r\n\r\nPOST /b HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhiGET /c HTTP/1.1\r\nHost: t\r\n\r\n");
    let texts: Vec<_> = (0..3).map(|_| c.resp().text()).collect();
    assert_eq!(texts, ["GET /a ", "POST /b hi", "GET /c "]);
}

#[test]
fn head_limits() {
    let s = start(ServerConfig::default(), echo);
    let long = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX: {}\r\n\r\n",
        "a".repeat(9000)
    );
    expect_reject(&s, long.as_bytes(), 431);
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(9000));
    expect_reject(&s, long_target.as_bytes(), 431);
    let many = format!("GET / HTTP/1.1\r\nHost: t\r\n{}\r\n", "X: y\r\n".repeat(65));
    expect_reject(&s, many.as_bytes(), 431);
    let big = format!(
        "GET / HTTP/1.1\r\nHost: t\r\n{}\r\n",
        format!("X: {}\r\n", "a".repeat(8000)).repeat(5)
    );
    expect_reject(&s, big.as_bytes(), 431);
    expect_reject(&s, b"GET / HTTP/2.0\r\n\r\n", 505);
    expect_reject(&s, b"GET / HTTP/1.1\r\nHost: t\r\nBad Header\r\n\r\n", 400);
}

#[test]
fn framing_rejections() {
    let s = start(ServerConfig::default(), echo);
    for headers in [
        "Content-Length: 3\r\nTransfer-Encoding: chunked",
        "Content-Length: abc",
        "Content-Length: +5",
        "Content-Length: 3\r\nContent-Length: 3",
        "Content-Length: 3, 3",
        "Transfer-Encoding: gzip, chunked",
        "Transfer-Encoding: identity",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
    ] {
        let req = format!("POST / HTTP/1.1\r\nHost: t\r\n{headers}\r\n\r\nabc\r\n0\r\n\r\n");
        expect_reject(&s, req.as_bytes(), 400);
    }
    expect_reject(
        &s,
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nx\r\n",
        400,
    );
    expect_reject(
        &s,
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd",
        400,
    );
    expect_reject(
        &s,
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n",
        400,
    );
}

#[test]
fn chunked_bodies() {
    let s = start(ServerConfig::default(), echo);
    let mut c = Client::new(&s);
    c.send(
        b"POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
          5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\nGET /next HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    assert_eq!(c.resp().text(), "POST /c hello world");
    assert_eq!(c.resp().text(), "GET /next ");
    c.send(b"POST /d HTTP/1.1\r\nHost: t\r\nTransfer-Encoding:  Chunked \r\n\r\n");
    c.send(b"A\r\n0123456789\r\n0\r\n\r\n");
    assert_eq!(c.resp().text(), "POST /d 0123456789");
    // Framing split across reads, including inside CRLFs.
    c.send(b"POST /e HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    for part in [&b"3\r"[..], b"\nabc\r", b"\n", b"0\r\n", b"\r", b"\n"] {
        thread::sleep(Duration::from_millis(5));
        c.send(part);
    }
    assert_eq!(c.resp().text(), "POST /e abc");
}

#[test]
fn bodies_over_max_body() {
    let config = ServerConfig {
        max_body: 16,
        ..ServerConfig::default()
    };
    let s = start(config, echo);
    expect_reject(
        &s,
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 17\r\n\r\n0123456789",
        413,
    );
    expect_reject(
        &s,
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 999999999999\r\n\r\n",
        413,
    );
    let chunked = b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
                    8\r\n01234567\r\n8\r\n01234567\r\n1\r\nx\r\n0\r\n\r\n";
    expect_reject(&s, chunked, 413);
    let mut c = Client::new(&s);
    c.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 16\r\n\r\n0123456789abcdef");
    assert_eq!(c.resp().status, 200);
}

#[test]
fn expect_continue() {
    let config = ServerConfig {
        max_body: 16,
        ..ServerConfig::default()
    };
    let s = start(config, echo);
    let mut c = Client::new(&s);
    c.send(b"POST /e HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
    assert_eq!(c.head().status, 100);
    c.send(b"hello");
    assert_eq!(c.resp().text(), "POST /e hello");
    expect_reject(
        &s,
        b"POST / HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 17\r\n\r\n",
        413,
    );
    expect_reject(
        &s,
        b"POST / HTTP/1.1\r\nHost: t\r\nExpect: magic\r\nContent-Length: 1\r\n\r\n",
        417,
    );
}

#[test]
fn trickled_head_times_out() {
    let config = ServerConfig {
        header_timeout: Duration::from_millis(300),
        ..ServerConfig::default()
    };
    let s = start(config, echo);
    let mut c = Client::new(&s);
    let t0 = Instant::now();
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n");
    for _ in 0..4 {
        thread::sleep(Duration::from_millis(100));
        let _ = c.0.get_mut().write_all(b"X: y\r\n");
    }
    let r = c.resp();
    assert_eq!(r.status, 408);
    assert!(
        t0.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t0.elapsed()
    );
}

#[test]
fn idle_connection_closed() {
    let config = ServerConfig {
        idle_timeout: Duration::from_millis(200),
        ..ServerConfig::default()
    };
    let s = start(config, echo);
    let mut c = Client::new(&s);
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.resp().status, 200);
    let t0 = Instant::now();
    assert!(c.closed());
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(150) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
}

#[test]
fn connection_limit_answers_503() {
    let config = ServerConfig {
        max_connections: 2,
        ..ServerConfig::default()
    };
    let s = start(config, echo);
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut c = Client::new(&s);
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(c.resp().status, 200);
        open.push(c);
    }
    let mut third = Client::new(&s);
    let r = third.resp();
    assert_eq!((r.status, r.header("connection")), (503, Some("close")));
    assert!(third.closed());
    assert_eq!(s.stats().connections, 2);
    drop(open);
    wait_until(|| s.stats().connections == 0);
    let mut c = Client::new(&s);
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.resp().status, 200);
}

#[test]
fn handler_panic_answers_500_and_returns_permit() {
    let config = ServerConfig {
        workers: 1,
        ..ServerConfig::default()
    };
    let s = start(config, |req: Request, res: &mut Responder<'_>| {
        if req.path() == "/panic" {
            panic!("test panic");
        }
        echo(req, res);
    });
    let mut c = Client::new(&s);
    c.send(b"GET /panic HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.resp();
    assert_eq!((r.status, r.header("connection")), (500, Some("close")));
    assert!(c.closed());
    let mut c = Client::new(&s);
    c.send(b"GET /ok HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.resp().text(), "GET /ok ");
    wait_until(|| s.stats().busy_workers == 0);
}

#[test]
fn worker_permit_is_returned_before_the_write() {
    // One worker; a 16 MiB answer to a client that never reads blocks in the write, without
    // the worker: the next client is answered at once, and the stalled write ends at
    // `write_timeout` with the connection closed.
    let config = ServerConfig {
        workers: 1,
        write_timeout: Duration::from_millis(300),
        ..ServerConfig::default()
    };
    let entered = Arc::new(AtomicBool::new(false));
    let flag = entered.clone();
    let s = start(config, move |req: Request, res: &mut Responder<'_>| {
        if req.path() == "/big" {
            flag.store(true, Ordering::SeqCst);
            let _ = res.send(Response::new(200).with_body("text/plain", vec![b'x'; 16 << 20]));
        } else {
            echo(req, res);
        }
    });
    let mut stuck = Client::new(&s);
    stuck.send(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n");
    wait_until(|| entered.load(Ordering::SeqCst) && s.stats().busy_workers == 0);
    let mut c = Client::new(&s);
    c.send(b"GET /next HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.resp().text(), "GET /next ");
    drop(c);
    wait_until(|| s.stats().connections == 0);
    drop(stuck);
}

#[test]
fn worker_wait_is_bounded_and_answered_503() {
    let config = ServerConfig {
        workers: 1,
        worker_wait: Duration::from_millis(200),
        ..ServerConfig::default()
    };
    let (hold_tx, hold_rx) = mpsc::channel::<()>();
    let hold_rx = Mutex::new(hold_rx);
    let s = start(config, move |req: Request, res: &mut Responder<'_>| {
        if req.path() == "/hold" {
            let _ = lock(&hold_rx).recv_timeout(T);
        }
        echo(req, res);
    });
    let mut holder = Client::new(&s);
    holder.send(b"GET /hold HTTP/1.1\r\nHost: t\r\n\r\n");
    wait_until(|| s.stats().busy_workers == 1);
    let mut c = Client::new(&s);
    let started = Instant::now();
    c.send(b"GET /waits HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.resp();
    assert!(started.elapsed() >= Duration::from_millis(180));
    assert_eq!((r.status, r.header("retry-after")), (503, Some("1")));
    assert_eq!(r.header("connection"), None, "the connection stays usable");
    hold_tx.send(()).expect("release");
    assert_eq!(holder.resp().text(), "GET /hold ");
    c.send(b"GET /again HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.resp().text(), "GET /again ");
}

#[test]
fn invalid_response_header_becomes_500() {
    let s = start(
        ServerConfig::default(),
        |_req: Request, res: &mut Responder<'_>| {
            let _ = res.send(Response::new(200).with_header("X", "a\r\nX-Injected: 1"));
        },
    );
    let mut c = Client::new(&s);
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.resp();
    assert_eq!((r.status, r.header("x-injected")), (500, None));
}

/// `/sse` streams "a", waits for a signal, streams "b" and finishes; others echo.
fn sse_server(config: ServerConfig) -> (Server, mpsc::SyncSender<()>) {
    let (tx, rx) = mpsc::sync_channel::<()>(8);
    let rx = Mutex::new(rx);
    let s = start(config, move |req: Request, res: &mut Responder<'_>| {
        if req.path() != "/sse" {
            return echo(req, res);
        }
        let headers = [("Content-Type".to_string(), "text/event-stream".to_string())];
        match res.stream(200, &headers) {
            Ok(mut w) => {
                let _ = w.write_chunk(b"data: a\n\n");
                let _ = lock(&rx).recv_timeout(T);
                let _ = w.write_chunk(b"data: b\n\n");
                let _ = w.finish();
            }
            Err(StreamError::Busy) => drop(res.send(Response::new(503))),
            Err(StreamError::Http10) => drop(res.send(Response::new(505))),
            Err(StreamError::Io(_)) => {}
        }
    });
    (s, tx)
}

#[test]
fn streaming_chunks_arrive_before_finish() {
    let (s, release) = sse_server(ServerConfig::default());
    let mut c = Client::new(&s);
    c.send(b"GET /sse HTTP/1.1\r\nHost: t\r\n\r\n");
    let head = c.head();
    assert_eq!(head.header("transfer-encoding"), Some("chunked"));
    assert_eq!(c.chunk(), b"data: a\n\n");
    assert_eq!((s.stats().streams, s.stats().busy_workers), (1, 0));
    release.send(()).expect("release");
    assert_eq!(c.chunk(), b"data: b\n\n");
    assert_eq!(c.chunk(), b"");
    c.send(b"GET /after HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.resp().text(), "GET /after ");
    wait_until(|| s.stats().streams == 0);
    let mut c = Client::new(&s);
    c.send(b"GET /sse HTTP/1.0\r\n\r\n");
    assert_eq!(c.resp().status, 505);
}

#[test]
fn stream_limit_gives_busy() {
    let config = ServerConfig {
        max_streams: 1,
        ..ServerConfig::default()
    };
    let (s, release) = sse_server(config);
    let mut first = Client::new(&s);
    first.send(b"GET /sse HTTP/1.1\r\nHost: t\r\n\r\n");
    first.head();
    assert_eq!(first.chunk(), b"data: a\n\n");
    let mut second = Client::new(&s);
    second.send(b"GET /sse HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(second.resp().status, 503);
    release.send(()).expect("release");
    assert_eq!(first.chunk(), b"data: b\n\n");
    assert_eq!(first.chunk(), b"");
    first.send(b"GET /sse HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(
        first.head().status,
        200,
        "stream permit returned after finish"
    );
    release.send(()).expect("release");
}

#[test]
fn stream_notices_client_gone() {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let s = start(
        ServerConfig::default(),
        move |_req: Request, res: &mut Responder<'_>| {
            let Ok(mut w) = res.stream(200, &[]) else {
                return;
            };
            let t0 = Instant::now();
            let result = loop {
                if let Err(e) = w.write_chunk(b": ping\n\n") {
                    break Ok(e.kind());
                }
                if t0.elapsed() > T {
                    break Err("no error");
                }
                thread::sleep(Duration::from_millis(20));
            };
            let _ = lock(&tx).send(result);
        },
    );
    let mut c = Client::new(&s);
    c.send(b"GET /sse HTTP/1.1\r\nHost: t\r\n\r\n");
    c.head();
    assert_eq!(c.chunk(), b": ping\n\n");
    drop(c);
    let result = rx.recv_timeout(T + T).expect("handler result");
    assert!(result.is_ok(), "{result:?}");
}

#[test]
fn shutdown_closes_idle_connections_quickly() {
    let s = start(ServerConfig::default(), echo);
    let mut c = Client::new(&s);
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.resp().status, 200);
    assert!(s.stats().threads >= 2);
    let t0 = Instant::now();
    s.shutdown(Duration::from_secs(5));
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    assert!(c.closed());
    assert_eq!(s.stats(), ServerStats::default());
    s.shutdown(Duration::from_secs(5));
    assert!(
        TcpStream::connect(s.local_addr()).is_err(),
        "listener closed"
    );
}

#[test]
fn shutdown_lets_inflight_request_finish() {
    let (started_tx, started) = mpsc::channel();
    let started_tx = Mutex::new(started_tx);
    let s = Arc::new(start(
        ServerConfig::default(),
        move |req: Request, res: &mut Responder<'_>| {
            let _ = lock(&started_tx).send(());
            thread::sleep(Duration::from_millis(300));
            echo(req, res);
        },
    ));
    let mut c = Client::new(&s);
    c.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n");
    started.recv_timeout(T).expect("handler started");
    let t0 = Instant::now();
    s.shutdown(Duration::from_secs(3));
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_secs(2),
        "{took:?}"
    );
    let r = c.resp();
    assert_eq!((r.status, r.header("connection")), (200, Some("close")));
    assert_eq!(s.stats(), ServerStats::default());
}

#[test]
fn shutdown_ends_streams() {
    // One stream polls shutting_down and finishes; one ignores it until its socket dies.
    let s = start(
        ServerConfig::default(),
        |req: Request, res: &mut Responder<'_>| {
            let Ok(mut w) = res.stream(200, &[]) else {
                return;
            };
            let t0 = Instant::now();
            while t0.elapsed() < T + T {
                if req.path() == "/polite" && w.shutting_down() {
                    let _ = w.finish();
                    return;
                }
                if w.write_chunk(b": ping\n\n").is_err() {
                    return;
                }
                thread::sleep(Duration::from_millis(10));
            }
        },
    );
    let mut polite = Client::new(&s);
    polite.send(b"GET /polite HTTP/1.1\r\nHost: t\r\n\r\n");
    polite.head();
    let mut rude = Client::new(&s);
    rude.send(b"GET /rude HTTP/1.1\r\nHost: t\r\n\r\n");
    rude.head();
    let t0 = Instant::now();
    s.shutdown(Duration::from_millis(300));
    let took = t0.elapsed();
    assert!(took < Duration::from_millis(1500), "{took:?}");
    assert_eq!(s.stats(), ServerStats::default());
    while !polite.chunk().is_empty() {}
    assert!(polite.closed());
}

#[test]
fn pooled_thread_is_reused() {
    let s = start(ServerConfig::default(), echo);
    for i in 0..3 {
        let mut c = Client::new(&s);
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        assert_eq!(c.resp().status, 200);
        assert!(c.closed());
        wait_until(|| s.stats().connections == 0);
        // Wait until the thread is back in the pool (blocked in recv), then reconnect.
        thread::sleep(Duration::from_millis(20));
        assert_eq!(
            s.stats().threads,
            2,
            "round {i}: accept + one pooled thread"
        );
    }
}

/// Names of this process's threads started by a shadowcat server (comm is truncated).
fn shadowcat_threads() -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("shadowcat-"))
        .count()
}

#[test]
fn threads_are_joined_after_shutdown() {
    let s = start(ServerConfig::default(), echo);
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let mut c = Client::new(&s);
            c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
            assert_eq!(c.resp().status, 200);
            c
        })
        .collect();
    assert_eq!(s.stats().threads, 5);
    assert!(shadowcat_threads() >= 5);
    s.shutdown(Duration::from_secs(1));
    assert_eq!(s.stats().threads, 0);
    drop(clients);
}
