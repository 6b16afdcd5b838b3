//! Lifecycle and failure: shutdown without leaks, child crashes, hangs, panics, idle clients.

use std::net::TcpStream;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shadowcat::Error;
use shadowcat::Shadowcat;
use shadowcat::{Binding, Session};
use shadowcat::{Call, Operate, Reply, Upstream};

use crate::support::*;

/// Runs `test` (a test of this module) alone in a fresh process, so counts of threads and
/// descriptors are not disturbed by tests running in parallel. Returns true in the child.
fn isolated(test: &str) -> bool {
    if std::env::var_os("SHADOWCAT_ISOLATED").is_some() {
        return true;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--test-threads", "1", "--nocapture"])
        .env("SHADOWCAT_ISOLATED", "1")
        .output()
        .expect("test binary reruns");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("1 passed"),
        "isolated {test} failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    false
}

fn count_dir(path: &str) -> usize {
    std::fs::read_dir(path).map(|d| d.count()).unwrap_or(0)
}

/// (threads, fds, child processes) of this process.
fn census() -> (usize, usize, usize) {
    let mut children = 0;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for t in tasks.flatten() {
            let list = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
            children += list.split_whitespace().count();
        }
    }
    (
        count_dir("/proc/self/task"),
        count_dir("/proc/self/fd"),
        children,
    )
}

/// Waits up to 3 s for the census to return to `base`.
fn settles_to(base: (usize, usize, usize)) -> (usize, usize, usize) {
    let until = Instant::now() + Duration::from_secs(3);
    loop {
        let now = census();
        if now == base || Instant::now() > until {
            return now;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn start_stop_20_times_leaks_nothing() {
    if !isolated("lifecycle::start_stop_20_times_leaks_nothing") {
        return;
    }
    init_log();
    let base = census();
    for round in 0..20 {
        let p = Shadowcat::start(config(&["--stdio-children", "2"])).unwrap();
        let mut c = Conn::open(p.local_addr());
        let sid = c.initialize();
        let r = c.post(Some(&sid), r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#);
        assert_eq!(r.status, 200);
        let (threads, _, children) = census();
        assert!(
            threads > base.0 && children == base.2 + 2,
            "round {round}: not running?"
        );
        drop(c);
        p.shutdown(Duration::from_secs(2));
        p.shutdown(Duration::from_secs(2)); // harmless twice
        drop(p);
        assert_eq!(
            settles_to(base),
            base,
            "round {round}: (threads, fds, children)"
        );
    }
}

#[test]
fn sigterm_stops_cleanly_with_exit_0() {
    let (mut proxy, addr) = spawn_proxy(&[], std::process::Stdio::null(), &[]);
    let sid = Conn::open(addr).initialize();
    assert!(!sid.is_empty());
    let kids = child_pids(proxy.0.id());
    assert_eq!(kids.len(), 2);
    unsafe { libc::kill(proxy.0.id() as i32, libc::SIGTERM) };
    let status = wait_timeout(&mut proxy.0, Duration::from_secs(10)).expect("exits");
    assert_eq!(status.code(), Some(0));
    for k in kids {
        assert!(!alive(k), "child {k} outlived the proxy");
    }
}

/// Direct children of `pid`.
pub fn child_pids(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            let list = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
            out.extend(
                list.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    out
}

/// True while `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

pub fn wait_timeout(
    child: &mut std::process::Child,
    d: Duration,
) -> Option<std::process::ExitStatus> {
    let until = Instant::now() + d;
    while Instant::now() < until {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    None
}

#[test]
fn crashed_child_fails_in_flight_at_once_and_restarts() {
    let p = demo_proxy(&["--stdio-children", "1"]);
    let a = p.local_addr();
    let before = p.stdio_child_pids();
    let mut c = Conn::open(a);
    let sid = c.initialize();
    let started = Instant::now();
    let r = c.post(
        Some(&sid),
        r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"crash","arguments":{}}}"#,
    );
    assert!(started.elapsed() < Duration::from_secs(2), "not at once");
    let v = r.json();
    assert_eq!(v["id"], 7);
    assert_eq!(v["error"]["code"], -32603);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("shadowcat#0"),
        "{v}"
    );
    // Restarted with a new pid within the first backoff step.
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let now = p.stdio_child_pids();
        if now[0].is_some() && now != before {
            break;
        }
        assert!(Instant::now() < until, "child not restarted");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The pinned session is gone: 404, and a new initialize works.
    let r = c.post(Some(&sid), r#"{"jsonrpc":"2.0","id":8,"method":"ping"}"#);
    assert_eq!(r.status, 404);
    let sid2 = c.initialize();
    let r = c.post(Some(&sid2), r#"{"jsonrpc":"2.0","id":9,"method":"ping"}"#);
    assert_eq!(r.status, 200);
}

#[test]
fn hung_request_times_out_with_504_and_child_stays_usable() {
    let p = demo_proxy(&["--stdio-children", "1", "--request-timeout", "400ms"]);
    let mut c = Conn::open(p.local_addr());
    let sid = c.initialize();
    let started = Instant::now();
    let r = c.post(
        Some(&sid),
        r#"{"jsonrpc":"2.0","id":"slow","method":"tools/call","params":{"name":"slow_echo","arguments":{"message":"x","delayMs":5000}}}"#,
    );
    let took = started.elapsed();
    // Slower than "immediate", so the answer is a stream that ends with the timeout error.
    let last = r.messages().pop().unwrap();
    assert_eq!(last["id"], "slow");
    assert_eq!(last["error"]["code"], -32603);
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(3),
        "{took:?}"
    );
    let r = c.post(Some(&sid), r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#);
    assert_eq!(r.status, 200);
}

#[test]
fn json_reply_timeout_is_504() {
    let p = demo_proxy(&["--stdio-children", "1", "--request-timeout", "100ms"]);
    let mut c = Conn::open(p.local_addr());
    let sid = c.initialize();
    let r = c.post(
        Some(&sid),
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"slow_echo","arguments":{"message":"x","delayMs":3000}}}"#,
    );
    assert_eq!(r.status, 504);
    assert_eq!(r.json()["id"], 1);
}

/// An upstream whose every call panics.
struct Panicky;

impl Upstream for Panicky {
    fn initialize(&self, _call: Call<'_>) -> Result<(Binding, Reply), Error> {
        panic!("boom in initialize")
    }
    fn forward(&self, _call: Call<'_>) -> Result<Reply, Error> {
        panic!("boom")
    }
    fn close(&self, _session: &Session) {}
}

impl Operate for Panicky {
    fn name(&self) -> &str {
        "panicky"
    }
    fn kind(&self) -> &'static str {
        "test"
    }
    fn mode(&self) -> &'static str {
        "panics"
    }
    fn ready(&self) -> Result<(), String> {
        Ok(())
    }
    fn shutdown(&self, _grace: Duration) {}
}

#[test]
fn panicking_upstream_answers_500_and_workers_survive() {
    init_log();
    let p = Shadowcat::start_with(config(&["--workers", "1"]), Arc::new(Panicky)).unwrap();
    for _ in 0..5 {
        let r = post(p.local_addr(), None, INIT);
        assert_eq!(r.status, 500);
        assert_eq!(r.json()["error"]["code"], -32603);
    }
}

#[test]
fn idle_connections_do_not_block_new_clients() {
    let p = demo_proxy(&["--stdio-children", "1"]);
    let a = p.local_addr();
    let idle: Vec<TcpStream> = (0..500).map(|_| TcpStream::connect(a).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let r = post(a, None, INIT);
    assert_eq!(r.status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    drop(idle);
}

#[test]
fn idle_client_connection_is_closed() {
    let p = demo_proxy(&["--stdio-children", "1", "--client-idle-timeout", "300ms"]);
    let mut c = Conn::open(p.local_addr());
    c.initialize();
    std::thread::sleep(Duration::from_millis(500));
    assert!(c.is_closed(Duration::from_secs(2)));
}

fn demo_cmd(flags: &str) -> String {
    format!("{} demo-server {flags}", exe())
}

fn call_tool(c: &mut Conn, sid: &str, id: u32, name: &str, args: &str) -> Resp {
    c.post(
        Some(sid),
        &format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{name}","arguments":{args}}}}}"#
        ),
    )
}

#[test]
fn sigkilled_proxy_leaves_no_child_behind() {
    let stdio = demo_cmd("--ignore-eof --ignore-sigterm");
    let (mut proxy, _) = spawn_proxy(&["--stdio", &stdio], std::process::Stdio::null(), &[]);
    let kids = child_pids(proxy.0.id());
    assert_eq!(kids.len(), 2);
    proxy.0.kill().unwrap(); // SIGKILL: no cleanup code runs
    proxy.0.wait().unwrap();
    let until = Instant::now() + Duration::from_secs(5);
    while kids.iter().any(|&k| alive(k)) {
        assert!(Instant::now() < until, "children outlived the proxy by 5 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn children_that_fail_at_start_fail_start_up_clearly() {
    init_log();
    let cfg = config(&["--stdio", &demo_cmd("--exit-at-start 1")]);
    let err = Shadowcat::start(cfg).err().expect("start fails");
    assert!(
        err.to_string().contains("demo-server") || err.to_string().contains("shadowcat"),
        "{err}"
    );
    let cfg = config(&["--stdio", &demo_cmd("--fail-initialize")]);
    let err = Shadowcat::start(cfg).err().expect("start fails");
    assert!(err.to_string().contains("initialize"), "{err}");
}

#[test]
fn child_that_keeps_dying_makes_requests_fail_fast_with_503() {
    let p = demo_proxy(&["--stdio-children", "1"]);
    let a = p.local_addr();
    // Crash it repeatedly so the backoff grows past the first steps.
    for _ in 0..4 {
        let until = Instant::now() + Duration::from_secs(10);
        let sid = loop {
            let r = post(a, None, INIT);
            if r.status == 200 {
                break r.header("mcp-session-id").unwrap().to_string();
            }
            assert_eq!(r.status, 503, "while down: {}", r.text());
            assert!(Instant::now() < until);
            std::thread::sleep(Duration::from_millis(20));
        };
        let _ = call_tool(&mut Conn::open(a), &sid, 1, "crash", "{}");
    }
    let started = Instant::now();
    let r = post(a, None, INIT);
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.header("retry-after").is_some());
    assert!(started.elapsed() < Duration::from_millis(200));
}

#[test]
fn garbage_lines_are_skipped() {
    let p = demo_proxy(&["--stdio-children", "1"]);
    let mut c = Conn::open(p.local_addr());
    let sid = c.initialize();
    let before = p.stdio_child_pids();
    let r = call_tool(&mut c, &sid, 1, "garbage", r#"{"lines":5}"#);
    assert_eq!(r.json()["result"]["content"][0]["text"], "garbage sent");
    let r = call_tool(&mut c, &sid, 2, "echo", r#"{"message":"still here"}"#);
    assert_eq!(r.json()["result"]["content"][0]["text"], "Echo: still here");
    assert_eq!(p.stdio_child_pids(), before, "no restart for garbage");
}

/// Waits until the single child's pid differs from `before` and is up.
fn restarted(p: &Shadowcat, before: &[Option<u32>]) {
    let until = Instant::now() + Duration::from_secs(8);
    loop {
        let now = p.stdio_child_pids();
        if now[0].is_some() && now != before {
            return;
        }
        assert!(Instant::now() < until, "child not restarted");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn over_long_line_marks_the_child_broken_and_it_restarts() {
    let p = demo_proxy(&["--stdio-children", "1", "--max-message", "64KiB"]);
    let mut c = Conn::open(p.local_addr());
    let sid = c.initialize();
    let before = p.stdio_child_pids();
    let r = call_tool(&mut c, &sid, 1, "huge_line", r#"{"bytes":200000}"#);
    assert_eq!(r.json()["error"]["code"], -32603, "{}", r.text());
    restarted(&p, &before);
    let sid = c.initialize();
    let r = call_tool(&mut c, &sid, 2, "echo", r#"{"message":"x"}"#);
    assert_eq!(r.status, 200);
}

#[test]
fn child_closing_stdout_is_replaced() {
    let p = demo_proxy(&["--stdio-children", "1"]);
    let mut c = Conn::open(p.local_addr());
    let sid = c.initialize();
    let before = p.stdio_child_pids();
    let r = call_tool(&mut c, &sid, 1, "close_stdout", "{}");
    assert_eq!(r.status, 200);
    restarted(&p, &before);
    // The old process was stopped, not left running.
    let old = before[0].unwrap();
    let until = Instant::now() + Duration::from_secs(6);
    while alive(old) {
        assert!(Instant::now() < until, "old child {old} still running");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn child_that_stops_reading_cannot_block_workers() {
    let p = demo_proxy(&[
        "--stdio-children",
        "1",
        "--workers",
        "4",
        "--request-timeout",
        "500ms",
    ]);
    let a = p.local_addr();
    let mut c = Conn::open(a);
    let sid = c.initialize();
    let r = call_tool(&mut c, &sid, 1, "stop_reading", "{}");
    assert_eq!(r.status, 200);
    // Big requests fill the pipe; every one must still be answered by its deadline.
    let big = "y".repeat(200_000);
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let sid = sid.clone();
            let big = big.clone();
            std::thread::spawn(move || {
                let started = Instant::now();
                let body = format!(
                    r#"{{"jsonrpc":"2.0","id":{i},"method":"tools/call","params":{{"name":"echo","arguments":{{"message":"{big}"}}}}}}"#
                );
                let r = post(a, Some(&sid), &body);
                (r.status, started.elapsed())
            })
        })
        .collect();
    for h in handles {
        let (status, took) = h.join().unwrap();
        assert!(status == 504 || status == 200, "{status}");
        assert!(took < Duration::from_secs(3), "{took:?}");
    }
    // Workers are free again: the health endpoint answers at once.
    let r = Conn::open(a).request("GET", "/healthz", &[], b"");
    assert_eq!(r.status, 200);
}
