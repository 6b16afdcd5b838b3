//! Unit tests of the load generator: flags, the histogram, URLs, the SSE parser, the HTTP client
//! against a tiny fake server, the report, and the direct pipe against a fake stdio child.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::histogram::{BUCKETS, bucket, bucket_high, bucket_low};
use super::report::fmt_ns;
use super::rpc::Verdict;
use super::sse::SseParser;
use super::target::Target;
use super::*;
use crate::{Cli, Command};

fn parse(args: &[&str]) -> Result<BenchOptions, BenchError> {
    let mut all = vec!["bench"];
    all.extend(args);
    let cli = Cli::from_args(&["shadowcat"], &all).map_err(|e| BenchError::Config(e.output))?;
    match cli.command {
        Command::Bench(b) => b.into_options(),
        _ => unreachable!(),
    }
}

#[test]
fn histogram_small_values_are_exact() {
    let mut h = Histogram::new();
    for v in 0..128 {
        h.record(v);
    }
    assert_eq!(h.count(), 128);
    assert_eq!(h.min(), 0);
    assert_eq!(h.max(), 127);
    assert_eq!(h.percentile(50.0), 63);
    assert_eq!(h.percentile(100.0), 127);
    assert_eq!(h.percentile(0.0), 0);
    assert!((h.mean() - 63.5).abs() < 1e-9);
}

#[test]
fn histogram_buckets_are_contiguous_and_tight() {
    let mut prev_high = None;
    for i in 0..BUCKETS {
        let (lo, hi) = (bucket_low(i), bucket_high(i));
        assert!(lo <= hi, "bucket {i}");
        if let Some(p) = prev_high {
            assert_eq!(lo, p + 1, "gap before bucket {i}");
        }
        assert_eq!(bucket(lo), i);
        assert_eq!(bucket(hi), i);
        assert!((hi - lo) as f64 <= lo as f64 / 128.0, "bucket {i} too wide");
        prev_high = Some(hi);
    }
    assert_eq!(prev_high, Some(u64::MAX));
    let mut h = Histogram::new();
    h.record(u64::MAX);
    assert_eq!(h.percentile(99.0), u64::MAX);
}

#[test]
fn histogram_percentiles_within_one_percent() {
    // 1 µs .. 100 ms in 1 µs steps, shuffled order does not matter.
    let mut h = Histogram::new();
    let n = 100_000u64;
    for i in (1..=n).rev() {
        h.record(i * 1_000);
    }
    assert_eq!(h.count(), n);
    assert_eq!(h.min(), 1_000);
    assert_eq!(h.max(), n * 1_000);
    assert!((h.mean() - 50_000.5 * 1_000.0).abs() < 1e-3);
    for (p, exact) in [
        (50.0, 50_000_000.0),
        (90.0, 90_000_000.0),
        (99.0, 99_000_000.0),
        (99.9, 99_900_000.0),
        (100.0, 100_000_000.0),
    ] {
        let got = h.percentile(p) as f64;
        assert!(
            (got - exact).abs() / exact < 0.01,
            "p{p}: got {got}, want {exact}"
        );
        assert!(
            got >= exact,
            "p{p} reports the bucket's top: {got} < {exact}"
        );
    }
    // A skewed distribution: 990 fast, 10 slow.
    let mut h = Histogram::new();
    for _ in 0..990 {
        h.record(50_000);
    }
    for _ in 0..10 {
        h.record(5_000_000);
    }
    assert!((h.percentile(99.0) as f64 - 50_000.0).abs() / 50_000.0 < 0.01);
    assert_eq!(h.percentile(99.9), 5_000_000);
}

#[test]
fn histogram_merge_equals_recording_everything() {
    let (mut a, mut b, mut all) = (Histogram::new(), Histogram::new(), Histogram::new());
    for i in 0..10_000u64 {
        let v = i * i % 7_919_993 + 17;
        if i % 3 == 0 { &mut a } else { &mut b }.record(v);
        all.record(v);
    }
    let mut merged = Histogram::new();
    merged.merge(&a);
    merged.merge(&Histogram::new());
    merged.merge(&b);
    assert_eq!(merged, all);
    assert_eq!(merged.percentile(99.9), all.percentile(99.9));
    let empty = Histogram::new();
    assert_eq!(empty.percentile(50.0), 0);
    assert_eq!(empty.mean(), 0.0);
}

#[test]
fn flag_defaults() {
    let o = parse(&[]).unwrap();
    assert_eq!(o.url, "http://127.0.0.1:8080/mcp");
    assert_eq!(o.sessions, 1);
    assert_eq!(o.duration, Some(Duration::from_secs(10)));
    assert_eq!(o.requests, None);
    assert_eq!(o.warmup, Duration::from_secs(1));
    assert_eq!(o.timeout, Duration::from_secs(30));
    assert_eq!(o.method, "tools/call");
    assert_eq!(
        o.params,
        Some(json!({"name": "echo", "arguments": {"message": "hello"}}))
    );
    assert_eq!(o.protocol_version, "2025-11-25");
    assert!(!o.allow_remote && !o.progress);
    assert_eq!(o.label(), "tools/call echo");

    let o = parse(&["--requests", "500", "--warmup", "0"]).unwrap();
    assert_eq!((o.duration, o.requests), (None, Some(500)));
    assert_eq!(o.warmup, Duration::ZERO);
    let o = parse(&["--requests", "5", "--duration", "2s"]).unwrap();
    assert_eq!(
        (o.duration, o.requests),
        (Some(Duration::from_secs(2)), Some(5))
    );
    let o = parse(&["--method", "tools/list"]).unwrap();
    assert_eq!((o.method.as_str(), o.params), ("tools/list", None));
    let o = parse(&["--method", "ping", "--params", "{}", "--progress"]).unwrap();
    assert_eq!(o.params, Some(json!({})));
    let o = parse(&["--tool", "slow_echo", "--args", r#"{"delayMs":5}"#]).unwrap();
    assert_eq!(o.label(), "tools/call slow_echo");
}

#[test]
fn flag_validation() {
    for bad in [
        &["--sessions", "0"][..],
        &["--sessions", "10001"],
        &["--requests", "0"],
        &["--duration", "0s"],
        &["--duration", "ten"],
        &["--timeout", "0"],
        &["--warmup", "-1"],
        &["--method", "ping", "--tool", "echo"],
        &["--method", "ping", "--args", "{}"],
        &["--params", "{}"],
        &["--args", "[1]"],
        &["--args", "{nope"],
        &["--method", "x", "--params", "3"],
        &["--method", "x", "--params", "[1]", "--progress"],
        &["--method", "x", "--params", r#"{"_meta":1}"#, "--progress"],
        &["--protocol-version", "a\r\nb"],
    ] {
        assert!(
            matches!(parse(bad), Err(BenchError::Config(_))),
            "{bad:?} accepted"
        );
    }
}

#[test]
fn urls_and_loopback() {
    let t = Target::parse("http://127.0.0.1:9/mcp", false).unwrap();
    assert_eq!(
        (t.authority.as_str(), t.path.as_str()),
        ("127.0.0.1:9", "/mcp")
    );
    let t = Target::parse("HTTP://[::1]:8080", false).unwrap();
    assert_eq!((t.authority.as_str(), t.path.as_str()), ("[::1]:8080", "/"));
    let t = Target::parse("http://localhost?x=1", false).unwrap();
    assert_eq!(t.path, "/?x=1");
    assert!(
        t.addrs
            .iter()
            .all(|a| a.ip().is_loopback() && a.port() == 80)
    );
    let e = Target::parse("http://192.0.2.1:8080/mcp", false).unwrap_err();
    assert!(e.to_string().contains("--allow-remote"), "{e}");
    assert!(Target::parse("http://192.0.2.1:8080/mcp", true).is_ok());
    let t = Target::parse("https://localhost/mcp", false).unwrap();
    assert!(t.addrs.iter().all(|a| a.port() == 443));
    assert!(t.tls_name.is_some());
    assert!(
        Target::parse("http://127.0.0.1/", false)
            .unwrap()
            .tls_name
            .is_none()
    );
    for bad in [
        "ftp://127.0.0.1/mcp",
        "127.0.0.1:8080/mcp",
        "http:///mcp",
        "http://u@127.0.0.1/",
        "http://127.0.0.1:x/",
        "http://127.0.0.1/a b",
    ] {
        assert!(
            matches!(Target::parse(bad, false), Err(BenchError::Config(_))),
            "{bad}"
        );
    }
}

#[test]
fn sse_parser_finds_the_response_across_pieces() {
    let stream = concat!(
        ": comment\r\n",
        "event: message\r\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",",
        "\"params\":{\"progressToken\":1,\"progress\":1}}\r\n\r\n",
        "id: x\ndata: \n\n",
        "data: {\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"sampling/createMessage\"}\n\n",
        "data: {\"jsonrpc\":\"2.0\",\"id\":6,\"result\":{}}\n\n",
        "data: {\"jsonrpc\":\"2.0\",\n",
        "data: \"id\":7,\"result\":{\"protocolVersion\":\"v\"}}\n\n",
        "data: trailing"
    )
    .as_bytes();
    // Feed it in 5-byte pieces: lines and events straddle the pieces.
    let mut p = SseParser::default();
    let mut body = Vec::new();
    let mut found = None;
    for piece in stream.chunks(5) {
        body.extend_from_slice(piece);
        if let Some(v) = p.feed(&mut body, 7, true) {
            found = Some(v);
            break;
        }
    }
    assert!(matches!(found, Some(Verdict::Result(Some(ref v))) if v == "v"));
    let mut body =
        br#"data: {"jsonrpc":"2.0","id":7,"error":{"code":-32000,"message":"no"}}"#.to_vec();
    body.extend_from_slice(b"\n\n");
    assert!(matches!(
        SseParser::default().feed(&mut body, 7, false),
        Some(Verdict::Error(ref m)) if m == "-32000 no"
    ));
    assert!(body.is_empty());
}

/// A tiny keep-alive MCP server for the client side: no session id, JSON for even ids,
/// chunked SSE split mid-line for odd ids, one 404 for id 3, a JSON-RPC error for id 4.
fn fake_server() -> (SocketAddr, JoinHandle<Vec<String>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let t = thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        let mut seen = Vec::new();
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return seen;
            }
            let method = line.split(' ').next().unwrap_or("").to_string();
            let mut len = 0;
            let mut headers = Vec::new();
            loop {
                let mut h = String::new();
                r.read_line(&mut h).unwrap();
                let h = h.trim_end().to_string();
                if h.is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
                headers.push(h);
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let m = v["method"].as_str().unwrap_or("").to_string();
            seen.push(format!("{method} {m}"));
            if m != "initialize" {
                assert!(
                    headers
                        .iter()
                        .any(|h| h == "MCP-Protocol-Version: 2025-06-18"),
                    "{headers:?}"
                );
                assert!(!headers.iter().any(|h| h.starts_with("Mcp-Session-Id")));
            }
            let id = v["id"].as_u64();
            let reply: Vec<u8> = match (m.as_str(), id) {
                ("initialize", Some(0)) => json_reply(
                    r#"{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-06-18"}}"#,
                ),
                (_, None) => b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n".to_vec(),
                (_, Some(3)) => b"HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\ngone".to_vec(),
                (_, Some(4)) => json_reply(
                    r#"{"jsonrpc":"2.0","id":4,"error":{"code":-32602,"message":"bad"}}"#,
                ),
                (_, Some(n)) if n % 2 == 0 => {
                    json_reply(&format!(r#"{{"jsonrpc":"2.0","id":{n},"result":{{}}}}"#))
                }
                (_, Some(n)) => {
                    let events = format!(
                        "event: message\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{{}}}}\n\n\
                             data: {{\"jsonrpc\":\"2.0\",\"id\":{n},\"result\":{{}}}}\n\n"
                    );
                    let mut out = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
                                        Transfer-Encoding: chunked\r\n\r\n"
                        .to_vec();
                    for piece in events.as_bytes().chunks(7) {
                        out.extend_from_slice(format!("{:x};ext=1\r\n", piece.len()).as_bytes());
                        out.extend_from_slice(piece);
                        out.extend_from_slice(b"\r\n");
                    }
                    out.extend_from_slice(b"0\r\nx-trailer: 1\r\n\r\n");
                    out
                }
            };
            w.write_all(&reply).unwrap();
        }
    });
    (addr, t)
}

fn json_reply(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[test]
fn client_handles_json_sse_errors_and_no_session_id() {
    let (addr, server) = fake_server();
    let opts = BenchOptions {
        url: format!("http://{addr}/mcp"),
        duration: None,
        requests: Some(12),
        warmup: Duration::ZERO,
        timeout: Duration::from_secs(5),
        ..BenchOptions::default()
    };
    let r = bench(&opts).unwrap();
    assert_eq!(r.requests, 12);
    assert_eq!(r.ok, 10, "{:?}", r.errors);
    assert_eq!(r.errors.get("http_404"), Some(&1));
    assert_eq!(r.errors.get("jsonrpc_error"), Some(&1));
    // Without a session id a 404 cannot be cured by initializing again.
    assert_eq!(r.reinitialized, 0);
    assert_eq!(r.reconnects, 0);
    assert_eq!(r.sse_replies, 5);
    assert_eq!(r.latency.count(), 10);
    let seen = server.join().unwrap();
    assert_eq!(seen[0], "POST initialize");
    assert_eq!(seen[1], "POST notifications/initialized");
    assert_eq!(seen.len(), 14, "no DELETE without a session: {seen:?}");
    let j = r.to_json();
    let line = r.to_json_line();
    assert!(
        line.starts_with(r#"{"url":"#) && !line.contains('\n'),
        "{line}"
    );
    assert_eq!(serde_json::from_str::<Value>(&line).unwrap(), j);
    for key in ["url", "sessions", "duration_s", "requests", "ok", "errors"] {
        assert!(j.get(key).is_some(), "{key} missing in {j}");
    }
    assert_eq!(j["errors"]["http_404"], 1);
    for key in ["min", "p50", "p90", "p99", "p999", "max", "mean"] {
        assert!(j["latency_us"][key].as_f64().unwrap() > 0.0, "{key}: {j}");
    }
    let table = r.to_table();
    assert!(table.contains("http_404 1"), "{table}");
    assert!(table.contains("p99.9"), "{table}");
}

#[test]
fn refuses_before_connecting() {
    let opts = BenchOptions {
        url: "http://192.0.2.1:9/mcp".into(),
        ..BenchOptions::default()
    };
    assert!(matches!(bench(&opts), Err(BenchError::Config(_))));
    // Nothing listens: initialize fails with a connect error, quickly.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let opts = BenchOptions {
        url: format!("http://127.0.0.1:{port}/mcp"),
        sessions: 3,
        timeout: Duration::from_secs(2),
        ..BenchOptions::default()
    };
    let e = bench(&opts).unwrap_err();
    assert!(matches!(e, BenchError::Unreachable { .. }), "{e}");
    assert!(e.to_string().contains("3 of 3 sessions"), "{e}");
}

#[test]
fn formats_durations() {
    assert_eq!(fmt_ns(812.0), "812ns");
    assert_eq!(fmt_ns(45_300.0), "45.3µs");
    assert_eq!(fmt_ns(812_000.0), "812µs");
    assert_eq!(fmt_ns(12_340_000.0), "12.34ms");
    assert_eq!(fmt_ns(1_234_000_000.0), "1.234s");
}

/// A fake stdio MCP server in Python: answers initialize; before every other answer prints a
/// notification and a non-JSON line; ids ≡ 3 (mod 7) get a JSON-RPC error; after
/// `stop_after` calls it stays silent (keeps reading).
fn fake_child(stop_after: u64) -> Vec<String> {
    let script = format!(
        r#"
import json, sys
n = 0
for line in sys.stdin:
    m = json.loads(line)
    if "id" not in m:
        continue
    if m["method"] == "initialize":
        r = {{"protocolVersion": "2025-11-25", "capabilities": {{}},
              "serverInfo": {{"name": "fake", "version": "1"}}}}
        print(json.dumps({{"jsonrpc": "2.0", "id": m["id"], "result": r}}), flush=True)
        continue
    n += 1
    if n > {stop_after}:
        continue
    print('{{"jsonrpc":"2.0","method":"notifications/message","params":{{}}}}')
    print("not json")
    if m["id"] % 7 == 3:
        out = {{"jsonrpc": "2.0", "id": m["id"], "error": {{"code": -32000, "message": "no"}}}}
    else:
        out = {{"jsonrpc": "2.0", "id": m["id"], "result": m["params"]}}
    print(json.dumps(out), flush=True)
"#
    );
    vec!["python3".into(), "-c".into(), script]
}

fn pipe_options(argv: Vec<String>) -> BenchOptions {
    BenchOptions {
        pipe: Some(argv),
        duration: None,
        warmup: Duration::ZERO,
        timeout: Duration::from_secs(10),
        ..BenchOptions::default()
    }
}

#[test]
fn pipe_single_caller_skips_other_lines_and_counts_errors() {
    let opts = BenchOptions {
        requests: Some(50),
        ..pipe_options(fake_child(u64::MAX))
    };
    let r = bench(&opts).expect("pipe bench runs");
    assert!(r.url.starts_with("pipe:python3 -c"), "{}", r.url);
    assert_eq!(r.requests, 50);
    // One caller sends ids 1..=50: 3, 10, 17, 24, 31, 38, 45 fail.
    assert_eq!(r.ok, 43, "{:?}", r.errors);
    assert_eq!(r.errors.get("jsonrpc_error"), Some(&7));
    assert_eq!(r.latency.count(), 43);
    assert_eq!((r.reconnects, r.reinitialized, r.sse_replies), (0, 0, 0));
}

#[test]
fn pipe_multiplexed_callers_get_their_own_responses() {
    let opts = BenchOptions {
        sessions: 4,
        requests: Some(400),
        progress: true,
        ..pipe_options(fake_child(u64::MAX))
    };
    let r = bench(&opts).expect("pipe bench runs");
    assert_eq!(r.requests, 400);
    assert_eq!(
        r.ok + r.errors.get("jsonrpc_error").copied().unwrap_or(0),
        400
    );
    assert!(r.ok > 300, "{:?}", r.errors);
    assert_eq!(r.errors.len(), 1, "{:?}", r.errors);
    assert!(r.throughput() > 0.0);
}

#[test]
fn pipe_silent_child_is_killed_and_bounded() {
    // Never answers initialize.
    let t = Instant::now();
    let opts = BenchOptions {
        timeout: Duration::from_millis(500),
        requests: Some(10),
        ..pipe_options(fake_child(0))
    };
    let opts = BenchOptions {
        pipe: Some(vec![
            "python3".into(),
            "-c".into(),
            "import sys\nfor l in sys.stdin: pass".into(),
        ]),
        ..opts
    };
    let e = bench(&opts).unwrap_err();
    assert!(e.to_string().contains("initialize failed: timeout"), "{e}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());

    // Answers 5 calls, then goes silent mid-run: the watchdog ends the run.
    let t = Instant::now();
    let opts = BenchOptions {
        sessions: 2,
        duration: Some(Duration::from_secs(30)),
        timeout: Duration::from_secs(2),
        ..pipe_options(fake_child(5))
    };
    let r = bench(&opts).expect("the run itself completes");
    assert_eq!(r.requests, 7, "{r:?}");
    assert!(r.ok >= 4, "{r:?}");
    assert_eq!(r.errors.get("timeout"), Some(&2), "{:?}", r.errors);
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());

    // A program that does not exist.
    let opts = pipe_options(vec!["/nonexistent/shadowcat-bench-child".into()]);
    assert!(matches!(bench(&opts), Err(BenchError::Config(_))));
}

#[test]
fn pipe_flag() {
    let o = parse(&["--pipe", r#"node "/a b/index.js" stdio"#]).unwrap();
    assert_eq!(
        o.pipe,
        Some(vec![
            "node".to_string(),
            "/a b/index.js".into(),
            "stdio".into()
        ])
    );
    assert_eq!(parse(&[]).unwrap().pipe, None);
    for bad in [&["--pipe", ""][..], &["--pipe", "'open"]] {
        assert!(
            matches!(parse(bad), Err(BenchError::Config(_))),
            "{bad:?} accepted"
        );
    }
}
