//! Operating it: health, readiness, metrics, admin API, access log.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

/// Parses `/metrics` with the real Prometheus parser (prometheus_client, via promparse.py).
fn scrape(addr: std::net::SocketAddr) -> Value {
    run_py("promparse.py", &format!("http://{addr}/metrics"))
}

/// The value of one sample, by family, sample name and labels (all given labels must match).
fn sample(m: &Value, family: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let fam = &m[family];
    assert!(!fam.is_null(), "no family {family}");
    fam["samples"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s[0] == name)
        .filter(|s| labels.iter().all(|(k, v)| s[1][*k] == *v))
        .map(|s| s[2].as_f64().unwrap())
        .sum()
}

#[test]
fn metrics_move_with_traffic_and_parse() {
    let p = demo_proxy(&[]);
    let a = p.local_addr();
    let mut c = Conn::open(a);
    let sid = c.initialize();
    for i in 0..3 {
        let r = c.post(
            Some(&sid),
            &format!(r#"{{"jsonrpc":"2.0","id":{i},"method":"tools/call","params":{{"name":"echo","arguments":{{"message":"m"}}}}}}"#),
        );
        assert_eq!(r.status, 200);
    }
    let r = c.request("POST", "/mcp", &[("Content-Type", "text/plain")], b"{}");
    assert_eq!(r.status, 415);
    let m = scrape(a);
    let req = |class: &str, status: &str| {
        sample(
            &m,
            "shadowcat_requests",
            "shadowcat_requests_total",
            &[("class", class), ("status", status)],
        )
    };
    assert_eq!(req("initialize", "200"), 1.0);
    assert_eq!(req("tools/call", "200"), 3.0);
    assert_eq!(req("notification", "202"), 1.0);
    assert_eq!(req("invalid", "415"), 1.0);
    assert_eq!(
        sample(&m, "shadowcat_sessions", "shadowcat_sessions", &[]),
        1.0
    );
    assert_eq!(
        sample(&m, "shadowcat_child_up", "shadowcat_child_up", &[]),
        2.0
    );
    let count = sample(
        &m,
        "shadowcat_request_duration_seconds",
        "shadowcat_request_duration_seconds_count",
        &[("class", "tools/call")],
    );
    assert_eq!(count, 3.0);
    let inf = sample(
        &m,
        "shadowcat_request_duration_seconds",
        "shadowcat_request_duration_seconds_bucket",
        &[("class", "tools/call"), ("le", "+Inf")],
    );
    assert_eq!(inf, 3.0);
    assert!(
        sample(
            &m,
            "shadowcat_bytes_received",
            "shadowcat_bytes_received_total",
            &[]
        ) > 0.0
    );
}

#[test]
fn http_upstream_pool_metrics() {
    let (_peer, addr) = everything_http();
    let p = demo_proxy(&["--upstream", &format!("http://{addr}/mcp")]);
    let mut c = Conn::open(p.local_addr());
    let sid = c.initialize();
    let r = c.post(
        Some(&sid),
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
    );
    assert_eq!(r.status, 200);
    let m = scrape(p.local_addr());
    assert_eq!(
        sample(
            &m,
            "shadowcat_pool_max_connections",
            "shadowcat_pool_max_connections",
            &[]
        ),
        32.0
    );
    assert!(
        sample(
            &m,
            "shadowcat_pool_connections",
            "shadowcat_pool_connections",
            &[]
        ) >= 1.0
    );
    let waits = sample(
        &m,
        "shadowcat_pool_checkout_wait_seconds",
        "shadowcat_pool_checkout_wait_seconds_count",
        &[],
    );
    assert!(waits >= 3.0, "checkouts counted: {waits}");
}

#[test]
fn readyz_flips_while_the_child_cannot_restart() {
    let dir = TempDir::new("readyz");
    let flag = dir.path().join("block");
    let cmd = format!(
        "sh -c 'test -e {} && exit 1; exec {} demo-server'",
        flag.display(),
        exe()
    );
    let p = demo_proxy(&["--stdio", &cmd, "--stdio-children", "1"]);
    let a = p.local_addr();
    assert_eq!(get(a, "/healthz", &[]).status, 200);
    assert_eq!(get(a, "/readyz", &[]).status, 200);
    std::fs::write(&flag, b"").unwrap();
    let pid = p.stdio_child_pids()[0].unwrap();
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let until = Instant::now() + Duration::from_secs(5);
    let r = loop {
        let r = get(a, "/readyz", &[]);
        if r.status == 503 {
            break r;
        }
        assert!(Instant::now() < until, "never unready");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(r.json()["ready"], false);
    assert!(
        r.json()["reason"].as_str().unwrap().contains("no live"),
        "{}",
        r.text()
    );
    assert_eq!(get(a, "/healthz", &[]).status, 200, "alive while unready");
    std::fs::remove_file(&flag).unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    while get(a, "/readyz", &[]).status != 200 {
        assert!(Instant::now() < until, "never ready again");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn admin_proxy(extra: &[&str]) -> shadowcat::Shadowcat {
    let mut args = vec!["--admin-bind", "127.0.0.1:0"];
    args.extend(extra);
    demo_proxy(&args)
}

#[test]
fn admin_lists_and_kills_sessions() {
    let p = admin_proxy(&[]);
    let a = p.local_addr();
    let admin = p.admin_addr().unwrap();
    let mut c = Conn::open(a);
    let sid = c.initialize();
    let list = get(admin, "/admin/sessions", &[]).json();
    assert_eq!(list["count"], 1);
    let s = &list["sessions"][0];
    assert_eq!(s["id"], short_sid(&sid));
    assert_eq!(s["protocolVersion"], "2025-11-25");
    assert!(s["child"].is_u64());
    let r = Conn::open(admin).request(
        "DELETE",
        &format!("/admin/sessions/{}", short_sid(&sid)),
        &[("Content-Type", "application/json")],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = c.post(Some(&sid), r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#);
    assert_eq!(r.status, 404);
    let r = Conn::open(admin).request(
        "DELETE",
        "/admin/sessions/deadbeefdeadbeef",
        &[("Content-Type", "application/json")],
        b"",
    );
    assert_eq!(r.status, 404);
    let ups = get(admin, "/admin/upstreams", &[]).json();
    assert_eq!(ups[0]["kind"], "stdio");
    assert_eq!(ups[0]["mode"], "shared");
    assert_eq!(ups[0]["children"].as_array().unwrap().len(), 2);
    let cfg = get(admin, "/admin/config", &[]).json();
    assert_eq!(cfg["workers"], 64);
}

#[test]
fn admin_token_is_required_and_redacted() {
    let token = "s3cret-token-0123456789";
    let p = admin_proxy(&["--admin-token", token]);
    let admin = p.admin_addr().unwrap();
    assert_eq!(get(admin, "/admin/config", &[]).status, 401);
    assert_eq!(
        get(
            admin,
            "/admin/config",
            &[("Authorization", "Bearer nope-nope-nope-nope")]
        )
        .status,
        401
    );
    let bearer = format!("Bearer {token}");
    let r = get(admin, "/admin/config", &[("Authorization", &bearer)]);
    assert_eq!(r.status, 200);
    assert!(!r.text().contains(token), "token leaked");
    assert_eq!(r.json()["adminToken"], "<redacted>");
}

#[test]
fn rolling_restart_loses_no_request() {
    let p = admin_proxy(&["--stdio-children", "2"]);
    let a = p.local_addr();
    let admin = p.admin_addr().unwrap();
    let before: Vec<u32> = p.stdio_child_pids().into_iter().flatten().collect();
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let loops: Vec<_> = (0..4)
        .map(|_| {
            let (stop, done) = (stop.clone(), done.clone());
            std::thread::spawn(move || {
                let mut c = Conn::open(a);
                let sid = c.initialize();
                let mut failures = Vec::new();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let r = c.post(
                        Some(&sid),
                        &format!(r#"{{"jsonrpc":"2.0","id":{i},"method":"tools/call","params":{{"name":"slow_echo","arguments":{{"message":"x","delayMs":30}}}}}}"#),
                    );
                    let ok = r.status == 200
                        && r.messages().last().is_some_and(|m| m["result"]["content"][0]["text"] == "Echo: x");
                    if !ok {
                        failures.push(format!("{} {}", r.status, r.text()));
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
                failures
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let r = Conn::open(admin).request(
        "POST",
        "/admin/upstreams/shadowcat/restart",
        &[("Content-Type", "application/json")],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let failures: Vec<String> = loops.into_iter().flat_map(|h| h.join().unwrap()).collect();
    assert!(failures.is_empty(), "lost requests: {failures:?}");
    assert!(done.load(Ordering::Relaxed) > 20);
    let after: Vec<u32> = p.stdio_child_pids().into_iter().flatten().collect();
    assert_eq!(after.len(), 2);
    assert!(
        after.iter().all(|p| !before.contains(p)),
        "{before:?} -> {after:?}"
    );
}

#[test]
fn access_log_as_json_lines() {
    let (mut proxy, addr) = spawn_proxy(
        &["--log-format", "json", "--stdio-children", "1"],
        Stdio::piped(),
        &[("RUST_LOG", "info")],
    );
    let sid = Conn::open(addr).initialize();
    let stderr = proxy.0.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<String>>()
    });
    unsafe { libc::kill(proxy.0.id() as i32, libc::SIGTERM) };
    // Bounded: killed after 20 s if it does not stop, which also ends the reader.
    crate::lifecycle::wait_timeout(&mut proxy.0, Duration::from_secs(20)).expect("stops");
    let lines = reader.join().expect("stderr reader");
    let access: Vec<HashMap<String, Value>> = lines
        .iter()
        .map(|l| serde_json::from_str::<HashMap<String, Value>>(l).expect("every line is JSON"))
        .filter(|o| o.get("target").is_some_and(|t| t == "shadowcat::access"))
        .collect();
    let init = access
        .iter()
        .find(|o| o["mcp_method"] == "initialize")
        .expect("initialize logged");
    assert_eq!(init["status"], 200);
    assert_eq!(init["method"], "POST");
    assert_eq!(init["session"], short_sid(&sid));
    assert!(init["duration_ms"].is_f64());
    assert!(init["remote"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(
        !lines.iter().any(|l| l.contains(&sid)),
        "full session id never logged"
    );
}

/// Issue 16: `--version` names the version and the git revision the binary was built from.
#[test]
fn version_names_the_git_revision() {
    let expected_rev = std::env::var("SHADOWCAT_GIT_REV")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .or_else(|| {
            let out = std::process::Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    for flag in ["--version", "-V"] {
        let out = std::process::Command::new(exe())
            .arg(flag)
            .output()
            .expect("runs");
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            text.trim_end(),
            format!(
                "shadowcat {} (git {expected_rev})",
                env!("CARGO_PKG_VERSION")
            ),
            "{flag}"
        );
    }
}
