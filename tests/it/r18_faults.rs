//! Issue #18, fault and mock rules (`[[fault]]` in the config file): every action against the
//! demo server, seen by the official Python SDK and by raw HTTP; probability 0, 1 and a seeded
//! 0.5; a pointer condition; `shadowcat_fault_hits_total`; the `fault` and `synthetic` marks on
//! tapes (and `tape show`) and in the audit log; `/admin/config` and `check-config` showing
//! the rules; config errors naming their line; a stateless (2026-07-28) request under a rule.
//! `examples/faults.toml` is the file the first test loads.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shadowcat::expand_config_file;
use shadowcat::tools::tape::read;

use crate::support::*;

fn example() -> String {
    format!("{}/examples/faults.toml", env!("CARGO_MANIFEST_DIR"))
}

/// A proxy (in process) from the config file `file` plus command-line flags.
fn proxy_from(file: &str, flags: &[&str]) -> shadowcat::Shadowcat {
    let mut args = vec!["--config".to_owned(), file.to_owned()];
    args.extend(["--bind", "127.0.0.1:0"].map(String::from));
    args.extend(flags.iter().map(|f| f.to_string()));
    let expanded = expand_config_file(&args).expect("the file expands");
    let refs: Vec<&str> = expanded.iter().map(String::as_str).collect();
    demo_proxy(&refs)
}

/// Every message line of every tape in `dir`.
fn tape_lines(dir: &Path) -> Vec<read::Line> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("tape dir").flatten() {
        if e.path().extension().is_some_and(|x| x == "jsonl") {
            out.extend(read::read_file(&e.path()).expect("a tape").lines);
        }
    }
    out
}

fn hits(metrics: &str, rule: &str, action: &str) -> Option<u64> {
    let prefix = format!("shadowcat_fault_hits_total{{rule=\"{rule}\",action=\"{action}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|n| n.parse().ok())
}

fn call(id: u64, tool: &str, message: &str) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": tool, "arguments": {"message": message}}})
    .to_string()
}

/// The example file through the Python SDK: a mock, an error (probability 1), a drop (the
/// SDK's own timeout), a delay, and a probability-0 rule that lets the plain echo through;
/// each counted, marked on the tape and in the audit log, and listed by /admin/config.
#[test]
fn r18_faults_example_file_with_the_python_sdk() {
    let dir = TempDir::new("r18-faults");
    let tapes = dir.path().join("tapes");
    let audit = dir.path().join("audit.jsonl");
    let p = proxy_from(
        &example(),
        &[
            "--record",
            tapes.to_str().unwrap(),
            "--audit-log",
            audit.to_str().unwrap(),
            "--admin-bind",
            "127.0.0.1:0",
        ],
    );
    let url = format!("http://{}/mcp", p.local_addr());
    let out = run_py("faults.py", &url);
    assert_eq!(out["mock"], "mocked by shadowcat", "{out}");
    assert_eq!(out["error"]["code"], -32042, "{out}");
    assert_eq!(out["error"]["message"], "injected", "{out}");
    assert!(
        out["drop"].is_object(),
        "the dropped call never got an answer: {out}"
    );
    assert_eq!(out["plain"], "Echo: plain", "{out}");
    assert!(out["tools"].as_u64().unwrap_or(0) > 0, "{out}");

    let metrics = get(p.local_addr(), "/metrics", &[]).text();
    for (rule, action, n) in [
        ("mock-echo", "mock", 1),
        ("boom", "error", 1),
        ("black-hole", "drop", 1),
        ("never", "error", 0),
    ] {
        assert_eq!(hits(&metrics, rule, action), Some(n), "{rule}: {metrics}");
    }
    // The SDK lists tools itself too (for output schemas): every list is delayed and counted.
    let lists = hits(&metrics, "slow-lists", "delay").unwrap_or(0);
    assert!(lists >= 1, "{metrics}");

    let admin = p.admin_addr().expect("admin");
    let shown: Value = serde_json::from_str(&get(admin, "/admin/config", &[]).text()).unwrap();
    let rules = shown["faults"].as_array().expect("faults listed");
    assert_eq!(rules.len(), 5, "{shown}");
    assert_eq!(rules[0]["name"], "mock-echo");
    assert_eq!(rules[0]["match"]["pointer"], "/arguments/message");
    assert_eq!(
        rules[0]["action"]["mock"]["content"][0]["text"],
        "mocked by shadowcat"
    );
    assert_eq!(rules[2]["action"], "drop");
    assert_eq!(rules[3]["action"]["delay"], 50);
    assert_eq!(rules[4]["probability"], 0.0);

    // (The dropped call's stream ends at --request-timeout, after the SDK closed its session
    // and so its tape: that mark is checked over raw HTTP below.)
    assert!(p.proxy().recorder().sync(Duration::from_secs(5)));
    let lines = tape_lines(&tapes);
    let marked = |rule: &str| {
        lines
            .iter()
            .find(|l| l.fault.as_deref() == Some(rule))
            .unwrap_or_else(|| panic!("no tape line marked {rule}"))
    };
    let mock = marked("mock-echo");
    assert!(mock.synthetic);
    assert_eq!(
        mock.msg["result"]["content"][0]["text"],
        "mocked by shadowcat"
    );
    assert!(marked("boom").synthetic);
    let slow = marked("slow-lists");
    assert!(!slow.synthetic, "a delayed answer is the server's");
    assert!(slow.msg["result"]["tools"].is_array());
    assert!(lines.iter().all(|l| l.fault.as_deref() != Some("never")));

    assert!(p.proxy().auditor().sync(Duration::from_secs(5)));
    let audited: Vec<Value> = std::fs::read_to_string(&audit)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let by_fault = |rule: &str| audited.iter().filter(|l| l["fault"] == rule).count();
    assert_eq!(by_fault("mock-echo"), 1, "{audited:?}");
    assert_eq!(by_fault("boom"), 1);
    assert_eq!(by_fault("slow-lists") as u64, lists);
    let boom = audited.iter().find(|l| l["fault"] == "boom").unwrap();
    assert_eq!(
        (boom["outcome"].as_str(), boom["code"].as_i64()),
        (Some("error"), Some(-32042))
    );
    assert!(
        audited
            .iter()
            .any(|l| l["name"] == "echo" && l["outcome"] == "ok" && l.get("fault").is_none()),
        "the plain echo has no fault"
    );
    p.shutdown(Duration::from_secs(1));
}

/// Writes a config file into `dir` and returns its path.
fn write_config(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write config");
    path.to_string_lossy().into_owned()
}

/// A drop rule over raw HTTP: the request gets an SSE stream (no worker held) that ends with
/// the proxy's timeout error at --request-timeout; an error rule on `initialize` refuses the
/// session; other requests pass.
#[test]
fn r18_drop_ends_at_the_request_timeout_and_initialize_can_fail() {
    let dir = TempDir::new("r18-drop");
    let file = write_config(
        dir.path(),
        "drop.toml",
        "request-timeout = \"1s\"\n\
         [[fault]]\nname = \"hole\"\nmatch = { tool = \"echo\" }\ndrop = true\n\
         [[fault]]\nname = \"no-init\"\nprobability = 1\n\
         match = { method = \"initialize\", pointer = \"/clientInfo/name\", equals = \"refused\" }\n\
         error = { code = -32099, message = \"not you\", data = { why = \"test\" } }\n",
    );
    let tapes = dir.path().join("tapes");
    let p = proxy_from(&file, &["--record", tapes.to_str().unwrap()]);
    let addr = p.local_addr();
    let refused = INIT.replace("\"name\":\"it\"", "\"name\":\"refused\"");
    let r = post(addr, None, &refused);
    assert_eq!(r.status, 200);
    assert!(r.header("mcp-session-id").is_none(), "no session");
    assert_eq!(
        r.json()["error"],
        json!({"code": -32099, "message": "not you", "data": {"why": "test"}})
    );
    let mut c = Conn::open(addr);
    let sid = c.initialize();
    let started = Instant::now();
    let r = c.post(Some(&sid), &call(5, "echo", "into the void"));
    let took = started.elapsed();
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .is_some_and(|t| t.starts_with("text/event-stream")),
        "a stream: {:?}",
        r.headers
    );
    let last = r.json();
    assert_eq!(last["id"], 5);
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("timed out"),
        "{last}"
    );
    assert!(
        took >= Duration::from_millis(900),
        "ended at the timeout, {took:?}"
    );
    let other = c.post(
        Some(&sid),
        r#"{"jsonrpc":"2.0","id":6,"method":"tools/list"}"#,
    );
    assert!(other.json()["result"]["tools"].is_array());
    assert!(p.proxy().recorder().sync(Duration::from_secs(5)));
    let lines = tape_lines(&tapes);
    let dropped = lines
        .iter()
        .find(|l| l.fault.as_deref() == Some("hole"))
        .expect("the timeout answer is on the tape");
    assert!(dropped.synthetic);
    assert_eq!(dropped.msg["id"], 5);
    assert!(dropped.msg["error"].is_object(), "{}", dropped.msg);
    // `tape show` prints the mark.
    let tape = std::fs::read_dir(&tapes)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .expect("a tape");
    let shown = Command::new(exe())
        .args(["tape", "show"])
        .arg(&tape)
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(text.contains("[synthetic] [fault hole]"), "{text}");
    let metrics = get(addr, "/metrics", &[]).text();
    assert_eq!(hits(&metrics, "hole", "drop"), Some(1));
    assert_eq!(hits(&metrics, "no-init", "error"), Some(1));
}

/// Probability 0.5 with --fault-seed: some calls fail, some pass, the metric counts exactly
/// the failures, and the same seed gives the same pattern again.
#[test]
fn r18_a_seeded_probability_repeats_and_the_metric_counts_each_hit() {
    let dir = TempDir::new("r18-half");
    let file = write_config(
        dir.path(),
        "half.toml",
        "[[fault]]\nname = \"coin\"\nmatch = { method = \"tools/call\" }\n\
         error = { code = -32050, message = \"tails\" }\nprobability = 0.5\n",
    );
    let pattern = || {
        let p = proxy_from(&file, &["--fault-seed", "7"]);
        let mut c = Conn::open(p.local_addr());
        let sid = c.initialize();
        let got: Vec<bool> = (0..40)
            .map(|i| {
                let v = c.post(Some(&sid), &call(i, "echo", "x")).json();
                v["error"]["code"] == -32050
            })
            .collect();
        let metrics = get(p.local_addr(), "/metrics", &[]).text();
        let failed = got.iter().filter(|f| **f).count() as u64;
        assert_eq!(hits(&metrics, "coin", "error"), Some(failed));
        got
    };
    let a = pattern();
    let failed = a.iter().filter(|f| **f).count();
    assert!((5..35).contains(&failed), "{failed} of 40 at 0.5");
    assert_eq!(a, pattern(), "the same seed, the same draws");
}

/// A mock_from rule answers from a recorded tape (the fixture of the demo server): a recorded
/// request gets its recorded answer with the client's id; another gets replay's error naming
/// the closest recorded request; both are marked synthetic on this proxy's tape.
#[test]
fn r18_mock_from_answers_with_the_recorded_response() {
    let dir = TempDir::new("r18-mock-from");
    let fixture =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tapes/demo-session.jsonl");
    let file = write_config(
        dir.path(),
        "mock.toml",
        &format!(
            "[[fault]]\nname = \"taped\"\nmatch = {{ tool = \"echo\" }}\nmock_from = {:?}\n",
            fixture.to_str().unwrap()
        ),
    );
    let tapes = dir.path().join("tapes");
    let p = proxy_from(&file, &["--record", tapes.to_str().unwrap()]);
    let mut c = Conn::open(p.local_addr());
    let sid = c.initialize();
    let v = c.post(Some(&sid), &call(41, "echo", "hello")).json();
    assert_eq!(v["id"], 41);
    assert_eq!(v["result"]["content"][0]["text"], "Echo: hello");
    let again = c.post(Some(&sid), &call(42, "echo", "hello")).json();
    assert_eq!(again["result"], v["result"], "the same answer every time");
    let miss = c.post(Some(&sid), &call(43, "echo", "not recorded")).json();
    assert_eq!(miss["error"]["code"], -32602, "{miss}");
    assert!(
        miss["error"]["message"]
            .as_str()
            .unwrap()
            .contains("tools/call"),
        "{miss}"
    );
    assert!(p.proxy().recorder().sync(Duration::from_secs(5)));
    let marked = tape_lines(&tapes)
        .into_iter()
        .filter(|l| l.fault.as_deref() == Some("taped") && l.synthetic)
        .count();
    assert_eq!(marked, 3);
    // A tape that cannot be read stops the start.
    let bad = write_config(
        dir.path(),
        "gone.toml",
        "[[fault]]\nmock_from = \"no-such-tape.jsonl\"\n",
    );
    let args = expand_config_file(&[
        "--config".to_owned(),
        bad.clone(),
        "--bind".to_owned(),
        "127.0.0.1:0".to_owned(),
    ])
    .unwrap();
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let e = shadowcat::Shadowcat::start(config(&refs))
        .err()
        .expect("refused");
    assert!(e.to_string().contains("mock_from"), "{e}");
}

/// `check-config` prints the rules; bad rules are refused with the file and line, and a
/// table other than [[fault]] is still refused.
#[test]
fn r18_fault_config_errors_name_the_line_and_check_config_shows_rules() {
    let out = Command::new(exe())
        .args(["check-config", &example()])
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["faults"][1]["name"], "boom");
    assert_eq!(v["faults"][1]["action"]["error"]["code"], -32042);

    let dir = TempDir::new("r18-bad");
    for (text, want) in [
        (
            "bind = \"127.0.0.1:0\"\n\n[[fault]]\ndelay_ms = 5\nmatch = { tool = \"x\", colour = 1 }\n",
            "bad.toml:5: [[fault]]",
        ),
        (
            "[[fault]]\nname = \"x\"\ndelay_ms = 5\nerror = { code = 1, message = \"m\" }\n",
            "bad.toml:4: [[fault]] x: give only one",
        ),
        (
            "[[fault]]\ndrop = true\nprobability = 2\n",
            "bad.toml:3: [[fault]] #0: `probability` must be from 0 to 1",
        ),
        (
            "[[fault]]\ndrop = true\nmatch = { upstream = \"elsewhere\" }\n",
            "names no upstream",
        ),
        ("[bind]\nx = \"y\"\n", "[upstream.NAME] and [[fault]] only"),
    ] {
        let bad = write_config(dir.path(), "bad.toml", text);
        let out = Command::new(exe())
            .args(["check-config", &bad])
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(2), "{text}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{text}: {err}");
    }
}

/// A stateless (2026-07-28) request meets the same rules: a mock answers it, and the stateless
/// tape marks the answer.
#[test]
fn r18_stateless_requests_meet_the_rules_too() {
    let dir = TempDir::new("r18-stateless");
    let file = write_config(
        dir.path(),
        "modern.toml",
        "[[fault]]\nname = \"modern-mock\"\nmatch = { tool = \"echo\" }\n\
         mock = { result = { content = [{ type = \"text\", text = \"from the rule\" }] } }\n",
    );
    let tapes = dir.path().join("tapes");
    let p = proxy_from(&file, &["--record", tapes.to_str().unwrap()]);
    let v = "2026-07-28";
    let body = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {
        "name": "echo", "arguments": {"message": "hi"},
        "_meta": {"io.modelcontextprotocol/protocolVersion": v,
                  "io.modelcontextprotocol/clientCapabilities": {}}}})
    .to_string();
    let h = [
        ("MCP-Protocol-Version", v),
        ("Mcp-Method", "tools/call"),
        ("Mcp-Name", "echo"),
    ];
    let r = post_with(p.local_addr(), &h, None, &body);
    assert_eq!(r.status, 200, "{}", r.text());
    let got = r.json();
    assert_eq!(got["id"], 9);
    assert_eq!(got["result"]["content"][0]["text"], "from the rule");
    assert!(p.proxy().recorder().sync(Duration::from_secs(5)));
    let marked: Vec<read::Line> = tape_lines(&tapes)
        .into_iter()
        .filter(|l| l.fault.as_deref() == Some("modern-mock"))
        .collect();
    assert_eq!(marked.len(), 1);
    assert!(marked[0].synthetic);
}
