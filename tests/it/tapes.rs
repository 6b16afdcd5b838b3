//! Tapes (`--record`), redaction and the audit log (`--audit-log`), issue #18: a Python SDK
//! session against server-everything recorded and read back with the tape tools' reader,
//! secrets in arguments and headers kept off disk, a tape directory that fails under a
//! running proxy, audit lines for each outcome, and the conformance suite with recording on.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use shadowcat::tools::tape::read::{self, Header, Line};

use crate::support::*;

/// One tape file: its name, its raw bytes, its header and its message lines (each with the
/// message parsed).
struct Tape {
    name: String,
    bytes: Vec<u8>,
    header: Header,
    lines: Vec<(Line, Value)>,
}

fn read_tapes(dir: &Path) -> Vec<Tape> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("tape directory")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).unwrap();
            assert!(bytes.ends_with(b"\n"), "{} ends mid-line", path.display());
            let file = read::parse(&path, &bytes)
                .unwrap_or_else(|e| panic!("the tape tools cannot read it: {e}"));
            assert!(!file.incomplete);
            let header = file.header;
            let lines = file
                .lines
                .into_iter()
                .map(|l| {
                    let msg = l.msg.clone();
                    (l, msg)
                })
                .collect();
            Tape {
                name: path.file_name().unwrap().to_string_lossy().into_owned(),
                bytes,
                header,
                lines,
            }
        })
        .collect()
}

fn id_of(line: &Line) -> Value {
    line.id.clone()
}

fn dir_label(line: &Line) -> &'static str {
    line.dir.as_str()
}

const SECRET: &str = "tape-secret-7f3a9c0e55d1";

fn shadowcat(args: &[&str]) -> std::process::Output {
    std::process::Command::new(exe())
        .args(args)
        .output()
        .expect("shadowcat runs")
}

/// Round trip: the Python SDK's replay scenario (tests/py/replay.py) recorded twice through
/// the proxy in front of the demo server; `shadowcat tape diff` finds the two recordings equal
/// (ids and times aside); `tape show` and `tape stats` read a tape; `shadowcat replay` serves
/// it, and the same script against the replay prints what it printed live (sampling request,
/// progress and logs included).
#[test]
fn r18_a_recorded_session_replays_with_the_tape_tools() {
    let dir = TempDir::new("tapes-roundtrip");
    let tapes = dir.path().join("tapes");
    let p = demo_proxy(&["--record", tapes.to_str().unwrap()]);
    let mut live = run_py("replay.py", &format!("http://{}/mcp", p.local_addr()));
    let again = run_py("replay.py", &format!("http://{}/mcp", p.local_addr()));
    assert_eq!(again["echo"], live["echo"]);
    p.shutdown(Duration::from_secs(2));
    let all = read_tapes(&tapes);
    assert_eq!(
        all.len(),
        2,
        "{:?}",
        all.iter().map(|t| &t.name).collect::<Vec<_>>()
    );
    let path = tapes.join(&all[0].name);
    let path_s = path.to_str().unwrap();
    let other = tapes.join(&all[1].name);

    let diff = shadowcat(&["tape", "diff", path_s, other.to_str().unwrap()]);
    assert_eq!(
        diff.status.code(),
        Some(0),
        "two recordings of one script differ:\n{}{}",
        String::from_utf8_lossy(&diff.stdout),
        String::from_utf8_lossy(&diff.stderr)
    );

    let show = shadowcat(&["tape", "show", path_s]);
    let shown = String::from_utf8_lossy(&show.stdout).into_owned();
    assert!(
        show.status.success(),
        "{shown}{}",
        String::from_utf8_lossy(&show.stderr)
    );
    for want in [
        "initialize",
        "tools/call",
        "sampling/createMessage",
        "notifications/progress",
    ] {
        assert!(shown.contains(want), "tape show lacks {want}:\n{shown}");
    }
    let stats = shadowcat(&["tape", "stats", path_s, "--json"]);
    assert!(
        stats.status.success(),
        "{}",
        String::from_utf8_lossy(&stats.stderr)
    );
    let stats: Value = serde_json::from_slice(&stats.stdout).expect("stats --json");
    assert!(stats.to_string().contains("tools/call"), "{stats}");

    let addr: std::net::SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let child = std::process::Command::new(exe())
        .arg("replay")
        .arg(&path)
        .args(["--http", &addr.to_string()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("replay starts");
    let _replay = Peer(child);
    wait_listening(addr);
    let mut replayed = run_py("replay.py", &format!("http://{addr}/mcp"));
    for out in [&mut live, &mut replayed] {
        out.as_object_mut().expect("object").remove("elapsedMs");
    }
    assert_eq!(replayed, live);
}

/// The Python SDK's session (initialize, tools/list, echo, a progress tool, sampling, a
/// resource read) through shadowcat against server-everything over stdio, recorded: the
/// tape has the header from initialize and every message in order, as the client saw it.
#[test]
fn a_python_sdk_session_against_server_everything_is_recorded() {
    let dir = TempDir::new("tapes-py");
    let tapes = dir.path().join("tapes");
    let cmd = format!("node {}", everything_js());
    let p = demo_proxy(&[
        "--stdio",
        &cmd,
        "--stdio-children",
        "1",
        "--record",
        tapes.to_str().unwrap(),
    ]);
    let url = format!("http://{}/mcp", p.local_addr());
    let out = run_py_args("tape_session.py", &url, &[SECRET]);
    assert_eq!(out["echo"], "Echo: hello tape", "{out}");
    assert_eq!(out["sampling"]["requests"], 1, "{out}");
    // The client closes its session (DELETE): its tape is closed; shutdown writes all out.
    p.shutdown(Duration::from_secs(2));

    let all = read_tapes(&tapes);
    assert_eq!(
        all.len(),
        1,
        "one session, one tape: {:?}",
        all.iter().map(|t| &t.name).collect::<Vec<_>>()
    );
    let tape = &all[0];
    let name_ok = {
        let n = tape.name.as_bytes();
        n.len() == "20261206T211319Z-3f2a9c1e.jsonl".len()
            && n[8] == b'T'
            && n[15] == b'Z'
            && tape.name.ends_with(".jsonl")
            && tape.name[17..25].bytes().all(|b| b.is_ascii_hexdigit())
    };
    assert!(name_ok, "{}", tape.name);
    assert!(
        !String::from_utf8_lossy(&tape.bytes).contains(SECRET),
        "the api_token argument reached the tape"
    );

    // The header: from the session's initialize and the server's answer.
    let h = &tape.header;
    let raw = Value::Object(h.raw.clone());
    assert_eq!(
        (&raw["tape"], &raw["version"], h.part),
        (&Value::from("shadowcat"), &Value::from(1), 0)
    );
    assert_eq!(raw["shadowcat"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        (&raw["upstream"]["kind"], &raw["upstream"]["mode"]),
        (&Value::from("stdio"), &Value::from("shared"))
    );
    assert_eq!(h.era, out["protocolVersion"].as_str().unwrap());
    assert_eq!(h.session.as_deref(), Some(&tape.name[17..25]));
    let client = &raw["client"];
    assert!(client["info"]["name"].is_string(), "{client}");
    assert!(client["capabilities"].get("sampling").is_some(), "{client}");
    let server = &raw["server"];
    assert!(
        server["info"]["name"]
            .as_str()
            .unwrap()
            .contains("everything"),
        "{server}"
    );
    assert!(server["capabilities"].get("tools").is_some());
    assert!(
        h.started.ends_with('Z') && h.started.len() == 24,
        "{}",
        h.started
    );

    let lines = &tape.lines;
    for (l, msg) in lines {
        // `id` is the message's own id (as the client saw it); t counts from `started`.
        assert_eq!(
            id_of(l),
            msg.get("id").cloned().unwrap_or(Value::Null),
            "{msg}"
        );
        assert!(l.t >= 0.0);
    }
    let (first, first_msg) = &lines[0];
    assert_eq!(
        (dir_label(first), first_msg["method"].as_str()),
        ("c2s", Some("initialize"))
    );
    assert!(
        first.t < 1.0,
        "t counts from the initialize request: {}",
        first.t
    );

    // Every client request has exactly one answer, after it, with the same id and, on this
    // shared stdio child, the same upstream id.
    let requests: Vec<(usize, &Line, &Value)> = lines
        .iter()
        .enumerate()
        .filter(|(_, (l, m))| {
            dir_label(l) == "c2s" && m.get("method").is_some() && m.get("id").is_some()
        })
        .map(|(i, (l, m))| (i, l, m))
        .collect();
    let methods: Vec<&str> = requests
        .iter()
        .map(|(_, _, m)| m["method"].as_str().unwrap())
        .collect();
    assert_eq!(
        methods,
        [
            "initialize",
            "tools/list",
            "tools/call",
            "tools/call",
            "tools/call",
            "resources/list",
            "resources/read"
        ],
    );
    let mut answer_at = BTreeMap::new();
    for (i, l, m) in &requests {
        let answers: Vec<(usize, &Line)> = lines
            .iter()
            .enumerate()
            .filter(|(_, (a, am))| {
                dir_label(a) == "s2c" && am.get("method").is_none() && am["id"] == m["id"]
            })
            .map(|(j, (a, _))| (j, a))
            .collect();
        assert_eq!(answers.len(), 1, "answers to {m}");
        let (j, a) = answers[0];
        assert!(j > *i, "the answer to {m} comes after it");
        assert_eq!(a.upstream_id, l.upstream_id, "{m}");
        if m["method"] != "initialize" {
            assert!(
                l.upstream_id.is_u64(),
                "a stdio session request has its upstream id: {m}"
            );
        }
        answer_at.insert(*i, j);
    }
    // The client's own ids, in its order.
    let ids: Vec<i64> = requests
        .iter()
        .map(|(_, _, m)| m["id"].as_i64().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");

    let call = |tool: &str| {
        requests
            .iter()
            .find(|(_, _, m)| m["method"] == "tools/call" && m["params"]["name"] == tool)
            .map(|(i, _, m)| (*i, answer_at[i], *m))
            .unwrap_or_else(|| panic!("no tools/call {tool}"))
    };
    let (_, _, echo) = call("echo");
    let token = echo["params"]["arguments"]["api_token"].as_str().unwrap();
    assert!(token.starts_with("<redacted:"), "{echo}");
    assert_eq!(echo["params"]["arguments"]["message"], "hello tape");

    // Progress: the notifications between the long call and its answer, in order, with the
    // request's token.
    let (start, end, long) = call("trigger-long-running-operation");
    let token = &long["params"]["_meta"]["progressToken"];
    assert!(!token.is_null(), "{long}");
    let progress: Vec<f64> = lines[start..end]
        .iter()
        .filter(|(l, m)| dir_label(l) == "s2c" && m["method"] == "notifications/progress")
        .map(|(_, m)| {
            assert_eq!(&m["params"]["progressToken"], token);
            m["params"]["progress"].as_f64().unwrap()
        })
        .collect();
    assert_eq!(progress, [1.0, 2.0, 3.0]);
    assert_eq!(out["progress"], serde_json::json!([1.0, 2.0, 3.0]));

    // Sampling: the server's request to the client, then the client's answer with the same id,
    // then the tool's answer.
    let (start, end, _) = call("trigger-sampling-request");
    let between = &lines[start..=end];
    let asked = between
        .iter()
        .position(|(l, m)| dir_label(l) == "s2c" && m["method"] == "sampling/createMessage")
        .expect("the sampling request on the tape");
    let sampling_id = &between[asked].1["id"];
    assert!(!sampling_id.is_null());
    assert_eq!(
        between[asked].1["params"]["maxTokens"], 10,
        "maxTokens is not a secret"
    );
    let answered = between
        .iter()
        .position(|(l, m)| {
            dir_label(l) == "c2s" && m.get("method").is_none() && &m["id"] == sampling_id
        })
        .expect("the client's sampling answer on the tape");
    assert!(asked < answered);
    assert_eq!(
        between[answered].1["result"]["content"]["text"],
        "a recorded answer from the client"
    );
    // The notification the client sends after initialize is there too.
    assert!(
        lines
            .iter()
            .any(|(l, m)| dir_label(l) == "c2s" && m["method"] == "notifications/initialized")
    );
}

/// A token in tool arguments (default key set, a configured key, a pointer) and the bearer
/// token in `Authorization` never reach the tape's bytes; equal secrets hash equally.
#[test]
fn secrets_in_arguments_and_headers_never_reach_the_tape() {
    let dir = TempDir::new("tapes-redact");
    let tokens = dir.path().join("tokens");
    let bearer_token = "alice-bearer-0123456789abcdef";
    std::fs::write(&tokens, format!("{bearer_token} alice\n")).unwrap();
    let tapes = dir.path().join("tapes");
    let p = demo_proxy(&[
        "--auth-tokens",
        tokens.to_str().unwrap(),
        "--record",
        tapes.to_str().unwrap(),
        "--redact",
        "key=pin",
        "--redact",
        "pointer=/params/arguments/account",
    ]);
    let a = p.local_addr();
    let auth = format!("Bearer {bearer_token}");
    let h = [("Authorization", auth.as_str())];
    let r = post_with(a, &h, None, INIT);
    assert_eq!(r.status, 200, "{}", r.text());
    let sid = r.header("mcp-session-id").unwrap().to_string();
    let call = format!(
        r#"{{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{{"name":"echo","arguments":{{"message":"m","token":"{SECRET}-1","api_key":"{SECRET}-1","pin":"{SECRET}-2","account":"{SECRET}-3"}}}}}}"#
    );
    let r = post_with(a, &h, Some(&sid), &call);
    assert_eq!(r.status, 200, "{}", r.text());
    // A stateless (2026-07-28) request: the same redaction in its own hourly tape.
    let modern = format!(
        r#"{{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{{"name":"echo","arguments":{{"message":"m","password":"{SECRET}-4"}},"_meta":{{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{{}}}}}}}}"#
    );
    let mut hm = h.to_vec();
    hm.push(("MCP-Protocol-Version", "2026-07-28"));
    hm.push(("Mcp-Method", "tools/call"));
    hm.push(("Mcp-Name", "echo"));
    let r = post_with(a, &hm, None, &modern);
    assert_eq!(r.status, 200, "{}", r.text());
    p.shutdown(Duration::from_secs(2));

    let all = read_tapes(&tapes);
    assert_eq!(
        all.len(),
        2,
        "{:?}",
        all.iter().map(|t| &t.name).collect::<Vec<_>>()
    );
    for t in &all {
        let text = String::from_utf8_lossy(&t.bytes);
        assert!(!text.contains(SECRET), "{}: {text}", t.name);
        assert!(!text.contains(bearer_token), "{}: {text}", t.name);
        assert!(!text.to_ascii_lowercase().contains("bearer"), "{}", t.name);
        assert_eq!(t.header.principal.as_deref(), Some("token:alice"));
    }
    let session = all.iter().find(|t| t.header.session.is_some()).unwrap();
    let (_, msg) = session
        .lines
        .iter()
        .find(|(_, m)| m["id"] == 5 && m["method"] == "tools/call")
        .unwrap();
    let args = &msg["params"]["arguments"];
    for k in ["token", "api_key", "pin", "account"] {
        assert!(
            args[k].as_str().unwrap().starts_with("<redacted:"),
            "{k}: {args}"
        );
    }
    assert_eq!(args["token"], args["api_key"], "equal secrets hash equally");
    assert_ne!(args["token"], args["pin"]);
    assert_eq!(args["message"], "m");
    let stateless = all.iter().find(|t| t.header.session.is_none()).unwrap();
    assert!(
        stateless.name.starts_with("stateless-"),
        "{}",
        stateless.name
    );
    assert_eq!(stateless.header.era, "2026-07-28");
    assert_eq!(stateless.lines.len(), 2);
    // The salt stays in the directory, readable by its owner only.
    let salt = std::fs::metadata(tapes.join(".salt")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(salt.permissions().mode() & 0o777, 0o600);
}

/// The tape directory goes away under a running proxy: every call still succeeds, and the
/// tapes that could not be written are counted as dropped.
#[test]
fn calls_go_on_when_tapes_cannot_be_written_and_drops_are_counted() {
    let dir = TempDir::new("tapes-gone");
    let tapes = dir.path().join("tapes");
    let p = demo_proxy(&["--record", tapes.to_str().unwrap()]);
    let a = p.local_addr();
    std::fs::remove_dir_all(&tapes).unwrap();
    let mut c = Conn::open(a);
    for i in 0..10 {
        let sid = c.initialize();
        let r = c.post(
            Some(&sid),
            &format!(r#"{{"jsonrpc":"2.0","id":{i},"method":"tools/call","params":{{"name":"echo","arguments":{{"message":"m"}}}}}}"#),
        );
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["result"]["content"][0]["text"], "Echo: m");
    }
    assert!(p.proxy().recorder().sync(Duration::from_secs(5)));
    let m = get(a, "/metrics", &[]).text();
    let io: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("shadowcat_tape_dropped_total{reason=\"io\"} "))
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(io >= 10, "{m}");
}

fn audit_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// One audit line per MCP request: a success, a tool error, a JSON-RPC error, and refusals
/// (401 without a token, 429 past a tool limit, 400 for bad JSON), each with its outcome;
/// never argument values. The tool-level metric counts the same calls.
#[test]
fn audit_lines_for_every_outcome_including_refusals() {
    let dir = TempDir::new("audit");
    let tokens = dir.path().join("tokens");
    let token = "audit-token-0123456789abcdef";
    std::fs::write(&tokens, format!("{token} alice\n")).unwrap();
    let log = dir.path().join("audit.jsonl");
    let p = demo_proxy(&[
        "--auth-tokens",
        tokens.to_str().unwrap(),
        "--tool-limit",
        "echo=0.001/2",
        "--audit-log",
        log.to_str().unwrap(),
    ]);
    let a = p.local_addr();
    let auth = format!("Bearer {token}");
    let h = [("Authorization", auth.as_str())];
    let r = post_with(a, &h, None, INIT);
    let sid = r.header("mcp-session-id").unwrap().to_string();
    let call = |id: u32, tool: &str, args: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}","arguments":{args}}}}}"#
        )
    };
    let secret_args = format!(r#"{{"message":"{SECRET}"}}"#);
    assert_eq!(
        post_with(a, &h, Some(&sid), &call(1, "echo", &secret_args)).status,
        200
    );
    let r = post_with(a, &h, Some(&sid), &call(2, "test_error_handling", "{}"));
    assert_eq!(r.json()["result"]["isError"], true, "{}", r.text());
    let r = post_with(
        a,
        &h,
        Some(&sid),
        r#"{"jsonrpc":"2.0","id":3,"method":"no/such"}"#,
    );
    assert_eq!(r.json()["error"]["code"], -32601);
    assert_eq!(
        post_with(a, &[], Some(&sid), &call(4, "echo", r#"{"message":"m"}"#)).status,
        401
    );
    assert_eq!(
        post_with(a, &h, Some(&sid), &call(5, "echo", r#"{"message":"m"}"#)).status,
        200
    );
    assert_eq!(
        post_with(a, &h, Some(&sid), &call(6, "echo", r#"{"message":"m"}"#)).status,
        429
    );
    assert_eq!(post_with(a, &h, Some(&sid), "{not json").status, 400);
    // A request is counted once its answer is sent: wait for the last echo to be.
    let up = r#"upstream="shadowcat""#;
    let wanted = [
        format!(r#"shadowcat_tool_calls_total{{{up},tool="echo",outcome="ok"}} 2"#),
        format!(r#"shadowcat_tool_calls_total{{{up},tool="other",outcome="tool_error"}} 1"#),
    ];
    let until = std::time::Instant::now() + Duration::from_secs(5);
    let metrics = loop {
        let m = get(a, "/metrics", &[]).text();
        if wanted.iter().all(|w| m.lines().any(|l| l == w)) || std::time::Instant::now() > until {
            break m;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    p.shutdown(Duration::from_secs(2));

    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !text.contains(SECRET),
        "argument values are not audited by default"
    );
    let lines = audit_lines(&log);
    // Lines are written as requests complete; each request here came on its own connection,
    // so two may finish in either order: compare them sorted.
    let key = |l: &Value| {
        (
            l["method"].as_str().unwrap_or("-").to_owned(),
            l["status"].as_u64().unwrap(),
            l["outcome"].as_str().unwrap().to_owned(),
            l["code"].to_string(),
        )
    };
    let mut summary: Vec<(String, u64, String, String)> = lines.iter().map(key).collect();
    summary.sort();
    let refused_429 = lines
        .iter()
        .find(|l| l["status"] == 429)
        .expect("the 429 line");
    assert!(refused_429["code"].is_i64());
    let s = |m: &str, st: u64, o: &str, c: Value| (m.to_owned(), st, o.to_owned(), c.to_string());
    let mut want = vec![
        s("initialize", 200, "ok", Value::Null),
        s("tools/call", 200, "ok", Value::Null),
        s("tools/call", 200, "tool_error", Value::Null),
        s("no/such", 200, "error", (-32601).into()),
        s("tools/call", 401, "error", (-32600).into()),
        s("tools/call", 200, "ok", Value::Null),
        s("tools/call", 429, "error", refused_429["code"].clone()),
        s("-", 400, "error", (-32700).into()),
    ];
    want.sort();
    assert_eq!(summary, want, "{text}");
    for l in &lines {
        assert!(l["time"].as_str().unwrap().ends_with('Z'));
        assert_eq!(l["client_ip"], "127.0.0.1");
        assert_eq!(l["http_method"], "POST");
        assert!(l["duration_ms"].as_f64().unwrap() >= 0.0);
        assert!(l["bytes_in"].as_u64().unwrap() > 0);
        assert!(l.get("arguments").is_none());
        let principal = if l["status"] == 401 {
            Value::Null
        } else {
            "token:alice".into()
        };
        assert_eq!(l["principal"], principal, "{l}");
    }
    let ok_echo = lines
        .iter()
        .find(|l| l["name"] == "echo" && l["status"] == 200)
        .unwrap();
    assert_eq!(ok_echo["session"], short_sid(&sid));
    assert!(ok_echo["bytes_out"].as_u64().unwrap() > 0);
    let tool_error = lines.iter().find(|l| l["outcome"] == "tool_error").unwrap();
    assert_eq!(tool_error["name"], "test_error_handling");
    // Refusals come before the body is parsed; their method and tool are still named.
    for refused in lines
        .iter()
        .filter(|l| l["status"] == 401 || l["status"] == 429)
    {
        assert_eq!(refused["name"], "echo", "{refused}");
    }
    assert!(lines.iter().all(|l| l["upstream"] == "shadowcat"));

    for want in &wanted {
        assert!(metrics.lines().any(|l| l == want), "{want} in\n{metrics}");
    }
}

/// `--audit-arguments` adds the arguments, redacted by the tape rules.
#[test]
fn audited_arguments_are_redacted() {
    let dir = TempDir::new("audit-args");
    let log = dir.path().join("audit.jsonl");
    let p = demo_proxy(&[
        "--audit-log",
        log.to_str().unwrap(),
        "--audit-arguments",
        "--redact",
        "pointer=/params/arguments/message",
    ]);
    let mut c = Conn::open(p.local_addr());
    let sid = c.initialize();
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo","arguments":{{"message":"{SECRET}","client_secret":"{SECRET}","n":3}}}}}}"#
    );
    assert_eq!(c.post(Some(&sid), &body).status, 200);
    // The line is queued once the answer is sent: wait for it to be written.
    let until = std::time::Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(&log)
        .unwrap()
        .contains("tools/call")
    {
        assert!(std::time::Instant::now() < until, "no audit line");
        assert!(p.proxy().auditor().sync(Duration::from_secs(5)));
    }
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains(SECRET), "{text}");
    let lines = audit_lines(&log);
    let l = lines.iter().find(|l| l["method"] == "tools/call").unwrap();
    assert_eq!(l["arguments"]["n"], 3);
    assert_eq!(l["arguments"]["message"], l["arguments"]["client_secret"]);
    assert!(
        l["arguments"]["message"]
            .as_str()
            .unwrap()
            .starts_with("<redacted:")
    );
}

/// The conformance suite passes as many scenarios with recording on as without, and its
/// tapes are all readable.
#[test]
fn conformance_with_recording_matches_without() {
    let dir = TempDir::new("tapes-conformance");
    let plain = demo_proxy(&[]);
    let without = crate::conformance::run_conformance(
        &format!("http://{}/mcp", plain.local_addr()),
        &dir.path().join("without"),
    );
    drop(plain);
    let tapes = dir.path().join("tapes");
    let recording = demo_proxy(&["--record", tapes.to_str().unwrap()]);
    let with = crate::conformance::run_conformance(
        &format!("http://{}/mcp", recording.local_addr()),
        &dir.path().join("with"),
    );
    assert!(recording.proxy().recorder().sync(Duration::from_secs(5)));
    let metrics = get(recording.local_addr(), "/metrics", &[]).text();
    recording.shutdown(Duration::from_secs(2));
    let dropped: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("shadowcat_tape_dropped_total{") && !l.ends_with(" 0"))
        .collect();
    assert!(dropped.is_empty(), "{dropped:?}");
    let passed =
        |o: &BTreeMap<String, Result<(), String>>| o.values().filter(|r| r.is_ok()).count();
    assert_eq!(passed(&with), passed(&without), "with recording: {with:?}");
    assert_eq!(passed(&with), 30);
    let all = read_tapes(&tapes);
    assert!(all.len() >= 25, "{} tapes", all.len());
    let messages: usize = all.iter().map(|t| t.lines.len()).sum();
    assert!(messages > 100, "{messages} messages");
}

/// `--audit-log` naming a FIFO (a log shipper's): the proxy starts without waiting for a
/// reader, calls go on while nobody reads, a reader that comes later gets the lines, and a
/// FIFO that never gets a reader does not hold the shutdown (the writer is left after 5 s).
#[test]
fn r18_an_audit_fifo_nobody_reads_never_blocks_the_proxy() {
    use std::io::BufRead;
    let dir = TempDir::new("audit-fifo");
    let fifo = dir.path().join("audit.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(made.success());
    let call = |i: u32| {
        format!(
            r#"{{"jsonrpc":"2.0","id":{i},"method":"tools/call","params":{{"name":"echo","arguments":{{"message":"m{i}"}}}}}}"#
        )
    };

    // A reader comes only after the calls.
    let p = demo_proxy(&["--audit-log", fifo.to_str().unwrap()]);
    let mut c = Conn::open(p.local_addr());
    let sid = c.initialize();
    for i in 1..=20 {
        let r = c.post(Some(&sid), &call(i));
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let path = fifo.clone();
    std::thread::spawn(move || {
        let f = std::fs::File::open(path).expect("open the FIFO for reading");
        for line in std::io::BufReader::new(f).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut calls = 0;
    while calls < 20 {
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the reader gets the queued lines");
        let v: Value = serde_json::from_str(&line).expect("a JSON line");
        if v["method"] == "tools/call" {
            assert_eq!(v["outcome"], "ok", "{v}");
            calls += 1;
        }
    }
    p.shutdown(Duration::from_secs(2));

    // Nobody ever reads: the proxy still serves, and its shutdown ends.
    let fifo2 = dir.path().join("unread.fifo");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo2)
            .status()
            .expect("mkfifo runs")
            .success()
    );
    let p = demo_proxy(&["--audit-log", fifo2.to_str().unwrap()]);
    let mut c = Conn::open(p.local_addr());
    let sid = c.initialize();
    for i in 1..=20 {
        assert_eq!(c.post(Some(&sid), &call(i)).status, 200);
    }
    let t = std::time::Instant::now();
    p.shutdown(Duration::from_secs(2));
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "shutdown took {:?}",
        t.elapsed()
    );
}
