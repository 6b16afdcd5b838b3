//! `shadowcat bench` against the in-process proxy in front of the demo child.

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use shadowcat::tools::bench::{BenchOptions, bench};

use crate::support::*;

fn options(p: &shadowcat::Shadowcat) -> BenchOptions {
    BenchOptions {
        url: format!("http://{}/mcp", p.local_addr()),
        duration: None,
        warmup: Duration::ZERO,
        timeout: Duration::from_secs(10),
        ..BenchOptions::default()
    }
}

#[test]
fn bench_echo_4_sessions_x_200() {
    let p = demo_proxy(&[]);
    let opts = BenchOptions {
        sessions: 4,
        requests: Some(800),
        ..options(&p)
    };
    let r = bench(&opts).expect("bench runs");
    assert_eq!(r.requests, 800);
    assert_eq!(r.ok, 800, "errors: {:?}", r.errors);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!((r.reconnects, r.reinitialized, r.sse_replies), (0, 0, 0));
    assert_eq!(r.latency.count(), 800);
    assert!(r.latency.min() > 0 && r.latency.percentile(50.0) <= r.latency.max());
    assert!(r.throughput() > 0.0);
    // Every session was DELETEd at the end.
    assert_eq!(p.proxy().sessions().len(), 0);
}

#[test]
fn bench_progress_replies_are_sse() {
    let p = demo_proxy(&[]);
    let opts = BenchOptions {
        sessions: 4,
        requests: Some(20),
        progress: true,
        ..options(&p)
    }
    .call_tool("test_tool_with_progress", json!({}));
    let r = bench(&opts).expect("bench runs");
    assert_eq!(r.ok, 20, "errors: {:?}", r.errors);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.sse_replies, 20);
    // The tool takes about 100 ms.
    assert!(r.latency.min() >= 90_000_000, "{}", r.latency.min());
}

#[test]
fn bench_recovers_when_sessions_vanish() {
    // Sessions idle for 1 s expire; a run with a pause longer than that is hard to arrange, so
    // instead delete them behind the client's back while it runs.
    let p = demo_proxy(&[]);
    let opts = BenchOptions {
        sessions: 2,
        duration: Some(Duration::from_millis(1500)),
        ..options(&p)
    };
    let r = std::thread::scope(|s| {
        let run = s.spawn(|| bench(&opts));
        std::thread::sleep(Duration::from_millis(700));
        for _ in p.proxy().sessions().drain() {}
        run.join().expect("no panic")
    })
    .expect("bench runs");
    assert!(r.ok > 0);
    assert!(r.reinitialized >= 1, "{r:?}");
    assert_eq!(
        r.errors.keys().collect::<Vec<_>>(),
        vec!["http_404"],
        "{:?}",
        r.errors
    );
    assert!(r.errors["http_404"] <= 2, "{:?}", r.errors);
}

#[test]
fn bench_cli_json_and_refusals() {
    let p = demo_proxy(&[]);
    let url = format!("http://{}/mcp", p.local_addr());
    let out = Command::new(exe())
        .args([
            "bench",
            "--url",
            &url,
            "--sessions",
            "2",
            "--requests",
            "100",
        ])
        .args(["--warmup", "0", "--method", "ping", "--json"])
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 1, "one JSON object: {text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["url"], url.as_str());
    assert_eq!(v["sessions"], 2);
    assert_eq!(v["requests"], 100);
    assert_eq!(v["ok"], 100);
    assert_eq!(v["errors"], json!({}));
    assert!(v["throughput_rps"].as_f64().unwrap() > 0.0);
    assert!(v["duration_s"].as_f64().unwrap() > 0.0);
    for k in ["min", "p50", "p90", "p99", "p999", "max", "mean"] {
        assert!(v["latency_us"][k].as_f64().unwrap() > 0.0, "{k}: {v}");
    }

    let out = Command::new(exe())
        .args(["bench", "--url", "http://192.0.2.1:8080/mcp"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--allow-remote"), "{err}");

    let out = Command::new(exe())
        .args(["bench", "--url", &url, "--tool", "echo", "--method", "ping"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
}
