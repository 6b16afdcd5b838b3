//! `shadowcat replay` and the tape tools, through the binary: the fixture tape
//! (tests/fixtures/tapes/demo-session.jsonl, the demo server's answers to tests/py/replay.py)
//! replayed to the official Python SDK over HTTP and to a raw JSON-RPC client over stdio;
//! `tape diff`, `show`, `stats`, `list` and `redact` exit codes and output.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, ChildStdout, Command, Output, Stdio};

use serde_json::{Value, json};

use crate::support::*;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tapes")
        .join(name)
}

fn tape() -> PathBuf {
    fixture("demo-session.jsonl")
}

fn shadowcat(args: &[&str]) -> Output {
    Command::new(exe())
        .args(args)
        .output()
        .expect("shadowcat runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `shadowcat replay TAPE --http` on a free port, killed on drop.
fn replay_http(tape: &Path, extra: &[&str]) -> (Peer, SocketAddr) {
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let child = Command::new(exe())
        .arg("replay")
        .arg(tape)
        .args(["--http", &addr.to_string()])
        .args(extra)
        .stderr(Stdio::null())
        .spawn()
        .expect("replay starts");
    let peer = Peer(child);
    wait_listening(addr);
    (peer, addr)
}

/// The tool names of the fixture's recorded tools/list.
fn recorded_tools() -> Vec<Value> {
    let text = std::fs::read_to_string(tape()).expect("fixture");
    let line = text
        .lines()
        .find(|l| l.contains(r#""dir":"s2c","id":1,"#))
        .expect("tools/list response");
    let v: Value = serde_json::from_str(line).expect("json");
    v["msg"]["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .map(|t| t["name"].clone())
        .collect()
}

#[test]
fn replay_http_python_sdk_gets_what_the_demo_server_gave() {
    let (_replay, addr) = replay_http(&tape(), &[]);
    let mut replayed = run_py("replay.py", &format!("http://{addr}/mcp"));
    assert_eq!(replayed["echo"], "Echo: hello", "{replayed}");
    assert_eq!(replayed["stream"], "streamed 3 events", "{replayed}");
    assert_eq!(
        replayed["progress"],
        json!([
            [1.0, 3.0, "event 1"],
            [2.0, 3.0, "event 2"],
            [3.0, 3.0, "event 3"]
        ]),
        "progress reached the client's callback under its own token: {replayed}"
    );
    assert_eq!(replayed["logs"], json!(["event 1", "event 2", "event 3"]));
    assert_eq!(
        replayed["sampling"],
        json!({"requests": ["hi"],
               "result": "LLM response: This is a test response from the client"}),
        "the sampling request reached the client's callback: {replayed}"
    );
    assert_eq!(replayed["tools"], json!(recorded_tools()));

    // The same script against the live demo server (through the proxy) prints the same,
    // apart from timing and the tool list, which the demo server may grow after the tape.
    let live = demo_proxy(&[]);
    let mut direct = run_py("replay.py", &format!("http://{}/mcp", live.local_addr()));
    for out in [&mut replayed, &mut direct] {
        let o = out.as_object_mut().expect("object");
        o.remove("elapsedMs");
        o.remove("tools");
    }
    assert_eq!(replayed, direct);
}

#[test]
fn replay_http_sessions_are_independent_and_misses_name_the_closest() {
    let (_replay, addr) = replay_http(&tape(), &[]);
    let mut a = Conn::open(addr);
    let sid_a = a.initialize();
    let sid_b = Conn::open(addr).initialize();
    assert_ne!(sid_a, sid_b);
    let echo = r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hello"}}}"#;
    for sid in [&sid_a, &sid_b] {
        let r = post(addr, Some(sid), echo);
        assert_eq!(r.status, 200);
        assert_eq!(
            r.json()["result"]["content"][0]["text"],
            "Echo: hello",
            "{}",
            r.text()
        );
        assert_eq!(r.json()["id"], 5);
    }
    // Used up in session A.
    let again = post(addr, Some(&sid_a), echo).json();
    assert_eq!(again["error"]["code"], -32602, "{again}");
    let other = r#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"echo","arguments":{"message":"bye"}}}"#;
    let miss = post(addr, Some(&sid_b), other).json();
    assert_eq!(miss["error"]["code"], -32602, "{miss}");
    let message = miss["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("closest recorded request: #3 tools/call"),
        "{message}"
    );
    assert_eq!(
        miss["error"]["data"]["differs"],
        json!(["/arguments/message"])
    );
    let unknown = r#"{"jsonrpc":"2.0","id":7,"method":"prompts/list"}"#;
    assert_eq!(
        post(addr, Some(&sid_b), unknown).json()["error"]["code"],
        -32601
    );
    // Without a session, or with an unknown one.
    assert_eq!(post(addr, None, unknown).status, 400);
    assert_eq!(post(addr, Some("nope"), unknown).status, 404);
}

struct Stdio2 {
    _peer: Peer,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
}

impl Stdio2 {
    fn start(args: &[&str]) -> Stdio2 {
        let mut child = Command::new(exe())
            .arg("replay")
            .arg(tape())
            .arg("--stdio")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("replay starts");
        let input = child.stdin.take().expect("stdin");
        let output = BufReader::new(child.stdout.take().expect("stdout"));
        Stdio2 {
            _peer: Peer(child),
            input,
            output,
        }
    }

    fn send(&mut self, msg: Value) {
        writeln!(self.input, "{msg}").expect("write");
        self.input.flush().expect("flush");
    }

    fn recv(&mut self) -> Value {
        let mut line = String::new();
        let n = self.output.read_line(&mut line).expect("read");
        assert!(n > 0, "replay closed stdout");
        serde_json::from_str(&line).expect("a JSON line")
    }
}

#[test]
fn replay_stdio_raw_jsonrpc() {
    let mut s = Stdio2::start(&[]);
    s.send(
        json!({"jsonrpc": "2.0", "id": "i", "method": "initialize", "params":
        {"protocolVersion": "2025-11-25", "capabilities": {"sampling": {}},
         "clientInfo": {"name": "raw", "version": "1"}}}),
    );
    let init = s.recv();
    assert_eq!(init["id"], "i");
    assert_eq!(init["result"]["serverInfo"]["name"], "shadowcat-demo");
    s.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    // Out of recorded order: the sampling call first.
    s.send(
        json!({"jsonrpc": "2.0", "id": 40, "method": "tools/call", "params":
        {"name": "test_sampling", "arguments": {"prompt": "hi"}}}),
    );
    let ask = s.recv();
    assert_eq!(ask["method"], "sampling/createMessage", "{ask}");
    assert_eq!(ask["params"]["messages"][0]["content"]["text"], "hi");
    s.send(json!({"jsonrpc": "2.0", "id": ask["id"], "result":
        {"role": "assistant", "model": "m", "content": {"type": "text", "text": "ok"}}}));
    let done = s.recv();
    assert_eq!(done["id"], 40);
    assert_eq!(
        done["result"]["content"][0]["text"],
        "LLM response: This is a test response from the client",
        "the recorded response, whatever the client answered"
    );
    s.send(
        json!({"jsonrpc": "2.0", "id": 41, "method": "tools/call", "params":
        {"name": "stream_events", "arguments": {"intervalMs": 10, "count": 3},
         "_meta": {"progressToken": "mine"}}}),
    );
    let mut progress = Vec::new();
    let end = loop {
        let m = s.recv();
        if m.get("id").is_some() {
            break m;
        }
        if m["method"] == "notifications/progress" {
            assert_eq!(m["params"]["progressToken"], "mine", "{m}");
            progress.push(m["params"]["progress"].clone());
        }
    };
    assert_eq!(progress, [json!(1), json!(2), json!(3)]);
    assert_eq!(end["id"], 41);
    s.send(json!({"jsonrpc": "2.0", "id": 42, "method": "ping"}));
    assert_eq!(s.recv(), json!({"jsonrpc": "2.0", "id": 42, "result": {}}));
    writeln!(s.input, "not json").expect("write");
    assert_eq!(s.recv()["error"]["code"], -32700);
}

#[test]
fn replay_stdio_strict_order() {
    let mut s = Stdio2::start(&["--strict"]);
    s.send(json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}));
    assert!(s.recv().get("result").is_some());
    s.send(
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params":
        {"name": "echo", "arguments": {"message": "hello"}}}),
    );
    let miss = s.recv();
    assert_eq!(miss["error"]["code"], -32602, "{miss}");
    let message = miss["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("expected recorded request: #2 tools/list"),
        "{message}"
    );
    s.send(json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"}));
    assert!(s.recv()["result"]["tools"].is_array());
    s.send(
        json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params":
        {"name": "echo", "arguments": {"message": "hello"}}}),
    );
    assert_eq!(s.recv()["result"]["content"][0]["text"], "Echo: hello");
}

#[test]
fn tape_diff_exit_codes() {
    let dir = TempDir::new("tape-diff");
    let a = tape();
    let original = std::fs::read_to_string(&a).expect("fixture");
    let b = dir.path().join("b.jsonl");
    std::fs::write(&b, original.replace("\"Echo: hello\"", "\"Echo: hullo\"")).expect("write");
    let (a, b) = (
        a.to_string_lossy().into_owned(),
        b.to_string_lossy().into_owned(),
    );

    let same = shadowcat(&["tape", "diff", &a, &a]);
    assert_eq!(same.status.code(), Some(0), "{}", text(&same.stderr));
    assert!(text(&same.stdout).contains("no differences"));

    let differ = shadowcat(&["tape", "diff", &a, &b]);
    assert_eq!(differ.status.code(), Some(1));
    let out = text(&differ.stdout);
    assert_eq!(
        out,
        "request 3 tools/call (echo): response differs at /result/content/0/text\n    \
         A: \"Echo: hello\"\n    B: \"Echo: hullo\"\n1 difference (5 requests compared)\n"
    );
    let ignored = shadowcat(&["tape", "diff", &a, &b, "--ignore", "/result/content/0/text"]);
    assert_eq!(ignored.status.code(), Some(0));
    let as_json = shadowcat(&["tape", "diff", &a, &b, "--json"]);
    let v: Value = serde_json::from_slice(&as_json.stdout).expect("json");
    assert_eq!(v["differences"][0]["path"], "/result/content/0/text");

    // Bad input files: exit 2, with a clear reason.
    let v2 = dir.path().join("v2.jsonl");
    std::fs::write(&v2, original.replacen("\"version\":1", "\"version\":2", 1)).expect("write");
    let bad = shadowcat(&["tape", "diff", &a, &v2.to_string_lossy()]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad.stderr).contains("tape format version 2 is not supported"),
        "{}",
        text(&bad.stderr)
    );
    let missing = shadowcat(&["tape", "diff", &a, "/nonexistent/x.jsonl"]);
    assert_eq!(missing.status.code(), Some(2));
    let garbage = dir.path().join("garbage.jsonl");
    std::fs::write(&garbage, b"\x00\xffnot a tape\n{]\n").expect("write");
    let g = shadowcat(&["tape", "diff", &garbage.to_string_lossy(), &a]);
    assert_eq!(g.status.code(), Some(2), "{}", text(&g.stderr));
}

#[test]
fn tape_show_stats_list_and_a_truncated_tape() {
    let dir = TempDir::new("tape-tools");
    let original = std::fs::read_to_string(tape()).expect("fixture");
    // A crash mid-line: the last line has no newline.
    let cut = dir.path().join("cut.jsonl");
    std::fs::write(&cut, &original[..original.len() - 40]).expect("write");
    let cut = cut.to_string_lossy().into_owned();

    let show = shadowcat(&["tape", "show", &cut]);
    assert_eq!(show.status.code(), Some(0), "{}", text(&show.stderr));
    let out = text(&show.stdout);
    assert!(out.contains("tools/call echo: ok in 0.289 ms"), "{out}");
    assert!(out.contains("(1 incomplete last line ignored)"), "{out}");
    let json_show = shadowcat(&["tape", "show", &cut, "--json"]);
    let v: Value = serde_json::from_slice(&json_show.stdout).expect("json");
    assert_eq!(v["messages"].as_array().map(Vec::len), Some(18));
    assert_eq!(
        v["messages"][6]["latency_ms"]
            .as_f64()
            .map(|l| (l * 1000.0).round()),
        Some(289.0)
    );

    let stats = shadowcat(&["tape", "stats", &tape().to_string_lossy(), "--json"]);
    let s: Value = serde_json::from_slice(&stats.stdout).expect("json");
    assert_eq!(s["methods"]["tools/call"]["count"], 3);
    assert_eq!(s["tools"]["stream_events"]["p50_ms"], 32.25);
    assert_eq!(s["total"]["unanswered"], 0);
    let cut_stats = shadowcat(&["tape", "stats", &cut, "--json"]);
    let s: Value = serde_json::from_slice(&cut_stats.stdout).expect("json");
    assert_eq!(s["tools"]["test_sampling"]["unanswered"], 1, "{s}");

    std::fs::copy(tape(), dir.path().join("20261206T211319Z-3f2a9c1e.jsonl")).expect("copy");
    std::fs::write(
        dir.path().join("20261206T211319Z-3f2a9c1e.1.jsonl"),
        original
            .lines()
            .take(1)
            .map(|l| format!("{l}\n"))
            .collect::<String>(),
    )
    .expect("part");
    std::fs::write(dir.path().join("zz-broken.jsonl"), "{}\n").expect("write");
    let list = shadowcat(&["tape", "list", &dir.path().to_string_lossy()]);
    assert_eq!(list.status.code(), Some(2), "one unreadable file");
    let out = text(&list.stdout);
    assert!(out.starts_with("FILE"), "{out}");
    assert!(
        out.contains("20261206T211319Z-3f2a9c1e.jsonl (+1 parts)"),
        "{out}"
    );
    assert!(out.contains("3f2a9c1e"), "{out}");
    assert!(out.contains("cut.jsonl"), "{out}");
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(
        text(&list.stderr).contains("zz-broken.jsonl"),
        "{}",
        text(&list.stderr)
    );
}

#[test]
fn tape_redact_replaces_secrets_and_equal_ones_hash_equally() {
    let dir = TempDir::new("tape-redact");
    let original = std::fs::read_to_string(tape()).expect("fixture");
    let secret = original
        .replace(
            r#""arguments":{"message":"hello"}"#,
            r#""arguments":{"message":"hello","api_key":"sk-123","pin":"4321"}"#,
        )
        .replace(
            r#""arguments":{"prompt":"hi"}"#,
            r#""arguments":{"prompt":"hi","auth":{"token":"sk-123"}}"#,
        );
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, &secret).expect("write");
    let input = input.to_string_lossy().into_owned();
    let r = shadowcat(&["tape", "redact", &input, "--redact", "key=pin"]);
    assert_eq!(r.status.code(), Some(0), "{}", text(&r.stderr));
    assert!(
        text(&r.stdout).contains("3 values redacted in 2 lines"),
        "{}",
        text(&r.stdout)
    );
    let out = std::fs::read_to_string(dir.path().join("in.redacted.jsonl")).expect("output");
    assert!(!out.contains("sk-123") && !out.contains("4321"), "{out}");
    let hashes: Vec<&str> = out
        .match_indices("<redacted:")
        .map(|(i, _)| &out[i..i + 19])
        .collect();
    assert_eq!(hashes.len(), 3);
    assert_eq!(
        hashes[0], hashes[2],
        "equal secrets hash equally: {hashes:?}"
    );
    assert_ne!(hashes[0], hashes[1]);
    assert!(dir.path().join(".salt").exists());
    // The redacted tape still replays and diffs equal to the original (redacted values are
    // wildcards), and a second run refuses to overwrite.
    let d = shadowcat(&[
        "tape",
        "diff",
        &input,
        &dir.path().join("in.redacted.jsonl").to_string_lossy(),
    ]);
    assert_eq!(d.status.code(), Some(0), "{}", text(&d.stdout));
    assert_eq!(
        shadowcat(&["tape", "redact", &input]).status.code(),
        Some(2)
    );
    let bad = shadowcat(&[
        "tape",
        "redact",
        &input,
        "--redact",
        "pointer=nope",
        "--in-place",
    ]);
    assert_eq!(bad.status.code(), Some(2));
    let inplace = shadowcat(&["tape", "redact", &input, "--in-place"]);
    assert_eq!(inplace.status.code(), Some(0));
    assert!(
        !std::fs::read_to_string(&input)
            .expect("read")
            .contains("sk-123")
    );
}

#[test]
fn replay_http_stateless_tape_needs_no_session() {
    let dir = TempDir::new("tape-stateless");
    let path = dir.path().join("stateless-0123456789ab-20261206T21Z.jsonl");
    let meta = r#"{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}"#;
    let lines = [
        r#"{"tape":"shadowcat","version":1,"shadowcat":"0.1.0","upstream":{"name":"demo","kind":"stdio","mode":"shared"},"era":"2026-07-28","session":null,"principal":"token:alice","client":null,"server":{"info":{"name":"shadowcat-demo","version":"0.1.0"},"capabilities":{"tools":{}}},"started":"2026-12-06T21:00:00Z","part":0}"#.to_owned(),
        format!(r#"{{"t":1.5,"dir":"c2s","id":1,"upstream_id":null,"msg":{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo","arguments":{{"message":"x"}},"_meta":{meta}}}}}}}"#),
        r#"{"t":2.0,"dir":"s2c","id":1,"upstream_id":null,"msg":{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"Echo: x"}],"resultType":"complete"}}}"#.to_owned(),
    ];
    std::fs::write(&path, lines.join("\n") + "\n").expect("write");
    let (_replay, addr) = replay_http(&path, &[]);
    let call = r#"{"jsonrpc":"2.0","id":"q","method":"tools/call","params":{"name":"echo","arguments":{"message":"x"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;
    let r = post(addr, None, call);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("mcp-session-id"), None);
    assert_eq!(r.json()["result"]["content"][0]["text"], "Echo: x");
    assert_eq!(r.json()["id"], "q");
    // No initialize on the tape: answered from the header.
    let init = post(addr, None, INIT).json();
    assert_eq!(init["result"]["protocolVersion"], "2026-07-28", "{init}");
    assert_eq!(init["result"]["serverInfo"]["name"], "shadowcat-demo");
    let list = shadowcat(&["tape", "list", &dir.path().to_string_lossy()]);
    assert!(
        text(&list.stdout).contains("stateless/token:alice"),
        "{}",
        text(&list.stdout)
    );
}
