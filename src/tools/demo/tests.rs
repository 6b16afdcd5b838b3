//! Unit tests of the demo server, driven over an in-memory pipe like a client would.

use std::io::{BufReader, PipeWriter};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, unbounded};
use serde_json::{Value, json};

use super::faults::{HUGE_LINE_PIECE, write_huge_line};
use super::*;

/// Collects whole output lines into a channel.
struct LineSink {
    buf: Vec<u8>,
    tx: Sender<String>,
}

impl Write for LineSink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        while let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=pos).collect();
            let line = String::from_utf8(line).expect("utf-8");
            let _ = self.tx.send(line.trim_end().to_owned());
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A client driving `serve` over an in-memory pipe.
struct Peer {
    input: Option<PipeWriter>,
    lines: Receiver<String>,
    server: Option<JoinHandle<io::Result<()>>>,
}

impl Peer {
    fn start() -> Peer {
        Peer::start_with(Options::default())
    }
    fn start_with(options: Options) -> Peer {
        let (reader, writer) = io::pipe().expect("pipe");
        let (tx, rx) = unbounded();
        let sink = LineSink {
            buf: Vec::new(),
            tx,
        };
        let server = std::thread::spawn(move || serve_with(BufReader::new(reader), sink, options));
        Peer {
            input: Some(writer),
            lines: rx,
            server: Some(server),
        }
    }
    fn send(&mut self, line: &str) {
        let input = self.input.as_mut().expect("open");
        writeln!(input, "{line}").expect("write");
    }
    fn raw(&self) -> String {
        let line = self.lines.recv_timeout(Duration::from_secs(2));
        line.expect("no output from the demo server")
    }
    fn recv(&self) -> Value {
        serde_json::from_str(&self.raw()).expect("json")
    }
    /// Sends a request built by [`request`] and returns the next line.
    fn call(&mut self, id: impl std::fmt::Display, method: &str, params: Value) -> Value {
        self.send(&request(id, method, params));
        self.recv()
    }
    fn tool(&mut self, id: u64, name: &str, arguments: Value) -> Value {
        self.call(
            id,
            "tools/call",
            json!({"name": name, "arguments": arguments}),
        )
    }
    fn silent_for(&self, ms: u64) -> bool {
        self.lines.recv_timeout(Duration::from_millis(ms)).is_err()
    }
    fn close(mut self) {
        self.input = None;
        let server = self.server.take().expect("server");
        server.join().expect("join").expect("serve result");
    }
}

/// A request line; `id` is written verbatim so tests can use any JSON.
fn request(id: impl std::fmt::Display, method: &str, params: Value) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{params}}}"#)
}

fn tool_call(id: impl std::fmt::Display, name: &str, arguments: Value) -> String {
    request(
        id,
        "tools/call",
        json!({"name": name, "arguments": arguments}),
    )
}

fn text(reply: &Value) -> &str {
    reply["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or("<no text>")
}

#[test]
fn initialize_negotiates_versions() {
    let mut peer = Peer::start();
    for (asked, expected) in [
        ("2025-06-18", "2025-06-18"),
        ("2024-11-05", "2024-11-05"),
        ("1999-01-01", "2025-11-25"),
        ("2026-07-28", "2025-11-25"),
    ] {
        let params = json!({"protocolVersion": asked, "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"}});
        let result = &peer.call(1, "initialize", params)["result"];
        assert_eq!(result["protocolVersion"], expected);
        assert_eq!(result["serverInfo"]["name"], SERVER_NAME);
        assert_eq!(result["serverInfo"]["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(result["capabilities"]["resources"]["subscribe"], true);
        assert!(result["capabilities"]["completions"].is_object());
    }
    peer.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    assert_eq!(peer.call(2, "ping", json!({}))["result"], json!({}));
    let bad = peer.call(3, "initialize", json!({}));
    assert_eq!(bad["error"]["code"], INVALID_PARAMS);
    peer.close();
}

#[test]
fn tools_list_has_every_tool() {
    let mut peer = Peer::start();
    let reply = peer.call(1, "tools/list", json!({}));
    let tools = reply["result"]["tools"].as_array().expect("tools");
    let names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
    for name in [
        "echo",
        "slow_echo",
        "stream_events",
        "crash",
        "exit",
        "hang",
        "garbage",
        "huge_line",
        "close_stdout",
        "stop_reading",
        "update_watched",
        "test_simple_text",
        "test_image_content",
        "test_audio_content",
        "test_embedded_resource",
        "test_multiple_content_types",
        "test_tool_with_logging",
        "test_tool_with_progress",
        "test_error_handling",
        "test_sampling",
        "test_elicitation",
        "test_elicitation_sep1034_defaults",
        "test_elicitation_sep1330_enums",
        "json_schema_2020_12_tool",
        "test_reconnection",
    ] {
        assert!(names.contains(&name), "{name} missing");
    }
    for tool in tools {
        assert!(tool["description"].is_string() && tool["inputSchema"]["type"] == "object");
    }
    let json_2020_12 = tools
        .iter()
        .find(|t| t["name"] == "json_schema_2020_12_tool");
    let schema = &json_2020_12.expect("tool")["inputSchema"];
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert_eq!(schema["additionalProperties"], false);
    assert!(schema["$defs"]["address"].is_object());
    peer.close();
}

#[test]
fn echo_keeps_ids_exact() {
    let mut peer = Peer::start();
    peer.send(&tool_call(
        r#""abc""#,
        "echo",
        json!({"message": "hi \"there\""}),
    ));
    let raw = peer.raw();
    assert!(raw.contains(r#""id":"abc""#), "{raw}");
    let reply: Value = serde_json::from_str(&raw).expect("json");
    assert_eq!(text(&reply), "Echo: hi \"there\"");
    for big in [
        "123456789012345678901234567890",
        "9007199254740993",
        "-1.5e300",
    ] {
        peer.send(&tool_call(big, "echo", json!({"message": "x"})));
        assert!(peer.raw().contains(&format!(r#""id":{big},"#)), "{big}");
    }
    peer.close();
}

#[test]
fn errors_have_standard_codes() {
    let mut peer = Peer::start();
    let code = |reply: Value| reply["error"]["code"].clone();
    assert_eq!(code(peer.call(1, "no/such", json!({}))), METHOD_NOT_FOUND);
    assert_eq!(code(peer.tool(2, "echo", json!({}))), INVALID_PARAMS);
    assert_eq!(code(peer.tool(3, "nope", json!({}))), INVALID_PARAMS);
    assert_eq!(
        code(peer.tool(4, "slow_echo", json!({"delayMs": -1}))),
        INVALID_PARAMS
    );
    peer.send("{not json");
    let bad = peer.recv();
    assert_eq!(code(bad.clone()), PARSE_ERROR);
    assert!(bad["id"].is_null());
    assert_eq!(
        peer.tool(5, "test_error_handling", json!({}))["result"]["isError"],
        true
    );
    peer.close();
}

#[test]
fn progress_and_logs_in_order() {
    let mut peer = Peer::start();
    let meta = |token: Value| json!({"progressToken": token});
    let params = json!({"name": "test_tool_with_progress", "arguments": {},
            "_meta": meta(json!("tok-1"))});
    peer.send(&request(1, "tools/call", params));
    for expected in [0, 50, 100] {
        let note = peer.recv();
        assert_eq!(note["method"], "notifications/progress");
        assert_eq!(note["params"]["progressToken"], "tok-1");
        assert_eq!(note["params"]["progress"], expected);
        assert_eq!(note["params"]["total"], 100);
    }
    assert_eq!(peer.recv()["id"], 1);

    let params = json!({"name": "stream_events", "arguments": {"count": 2, "intervalMs": 1},
            "_meta": meta(json!(7))});
    peer.send(&request(2, "tools/call", params));
    let methods: Vec<Value> = (0..4).map(|_| peer.recv()["method"].clone()).collect();
    let (progress, message) = ("notifications/progress", "notifications/message");
    assert_eq!(methods, [progress, message, progress, message]);
    assert_eq!(text(&peer.recv()), "streamed 2 events");

    let set = peer.call(3, "logging/setLevel", json!({"level": "warning"}));
    assert_eq!(set["result"], json!({}));
    assert_eq!(
        peer.tool(4, "test_tool_with_logging", json!({}))["id"],
        4,
        "info is filtered"
    );
    peer.close();
}

#[test]
fn sampling_and_elicitation_round_trip() {
    let mut peer = Peer::start();
    let caps = json!({"sampling": {}, "elicitation": {}});
    peer.call(
        1,
        "initialize",
        json!({"protocolVersion": "2025-11-25", "capabilities": caps}),
    );
    peer.send(&tool_call(2, "test_sampling", json!({"prompt": "Say hi"})));
    let ask = peer.recv();
    assert_eq!(ask["method"], "sampling/createMessage");
    assert_eq!(ask["params"]["messages"][0]["content"]["text"], "Say hi");
    let demo_id = ask["id"].as_str().expect("string id").to_owned();
    assert!(demo_id.starts_with("demo-"));
    // Quick requests are still answered while the tool waits.
    assert_eq!(peer.call(3, "ping", json!({}))["id"], 3);
    let answer = json!({"jsonrpc": "2.0", "id": demo_id, "result": {"role": "assistant",
            "content": {"type": "text", "text": "hi"}, "model": "m"}});
    peer.send(&answer.to_string());
    let reply = peer.recv();
    assert_eq!(reply["id"], 2);
    assert_eq!(text(&reply), "LLM response: hi");

    peer.send(&tool_call(
        4,
        "test_elicitation_sep1034_defaults",
        json!({}),
    ));
    let ask = peer.recv();
    assert_eq!(ask["method"], "elicitation/create");
    assert_eq!(
        ask["params"]["requestedSchema"]["properties"]["score"]["default"],
        95.5
    );
    assert_eq!(ask["params"]["mode"], "form");
    let answer = json!({"jsonrpc": "2.0", "id": ask["id"],
            "result": {"action": "accept", "content": {"age": 3}}});
    peer.send(&answer.to_string());
    let expected = r#"Elicitation completed: action=accept, content={"age":3}"#;
    assert_eq!(text(&peer.recv()), expected);
    peer.close();
}

#[test]
fn cancellation_stops_slow_requests() {
    let mut peer = Peer::start();
    peer.send(&tool_call(
        5,
        "slow_echo",
        json!({"message": "late", "delayMs": 10000}),
    ));
    assert_eq!(peer.tool(6, "echo", json!({"message": "fast"}))["id"], 6);
    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
            "params": {"requestId": 5, "reason": "test"}});
    peer.send(&cancel.to_string());
    assert!(
        peer.silent_for(100),
        "a cancelled request must not be answered"
    );
    let reply = peer.tool(7, "slow_echo", json!({"message": "soon", "delayMs": 10}));
    assert_eq!(text(&reply), "Echo: soon");
    peer.close();
}

#[test]
fn hang_never_answers_until_cancelled() {
    let mut peer = Peer::start();
    peer.send(&tool_call(5, "hang", json!({})));
    assert_eq!(
        peer.call(6, "ping", json!({}))["id"],
        6,
        "others still served"
    );
    assert!(peer.silent_for(200), "hang must not answer");
    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
            "params": {"requestId": 5, "reason": "test"}});
    peer.send(&cancel.to_string());
    assert!(peer.silent_for(100), "a cancelled hang sends nothing");
    // A second hang is still running at EOF; serve must return anyway.
    peer.send(&tool_call(7, "hang", json!({})));
    assert_eq!(peer.call(8, "ping", json!({}))["id"], 8);
    peer.close();
}

#[test]
fn garbage_then_a_normal_answer() {
    let mut peer = Peer::start();
    peer.send(&tool_call(1, "garbage", json!({})));
    for _ in 0..3 {
        assert_eq!(peer.raw(), "this is not json");
    }
    assert_eq!(peer.raw(), r#"{"hello":1}"#);
    let reply = peer.recv();
    assert_eq!(
        (reply["id"].clone(), text(&reply)),
        (json!(1), "garbage sent")
    );
    peer.send(&tool_call(2, "garbage", json!({"lines": 0})));
    assert_eq!(peer.raw(), r#"{"hello":1}"#);
    assert_eq!(peer.recv()["id"], 2);
    peer.close();
}

#[test]
fn huge_line_has_the_exact_length() {
    let mut peer = Peer::start();
    // Several 64 KiB pieces plus a ragged end.
    let bytes = 3 * HUGE_LINE_PIECE as u64 + 1234;
    peer.send(&tool_call(1, "huge_line", json!({"bytes": bytes})));
    let line = peer.raw();
    assert_eq!(line.len() as u64, bytes);
    let note: Value = serde_json::from_str(&line).expect("json");
    assert_eq!(note["method"], "notifications/message");
    let data = note["params"]["data"].as_str().expect("data");
    assert!(data.bytes().all(|b| b == b'x'));
    assert_eq!(
        text(&peer.recv()),
        format!("huge line sent ({bytes} bytes)")
    );
    // Too small for the envelope: bare padding of exactly that length.
    peer.send(&tool_call(2, "huge_line", json!({"bytes": 10})));
    assert_eq!(peer.raw(), "x".repeat(10));
    assert_eq!(peer.recv()["id"], 2);
    peer.close();

    let mut out = Vec::new();
    write_huge_line(&mut out, HUGE_LINE_DEFAULT).expect("write");
    assert_eq!(out.len() as u64, HUGE_LINE_DEFAULT + 1);
    assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 1);
    assert_eq!(out.last(), Some(&b'\n'));
}

#[test]
fn close_stdout_drops_the_writer_and_serves_on_until_eof() {
    let mut peer = Peer::start();
    assert_eq!(
        text(&peer.tool(1, "close_stdout", json!({}))),
        "closing stdout"
    );
    // The writer (and with it the channel's only sender) is gone.
    let next = peer.lines.recv_timeout(Duration::from_secs(2));
    assert_eq!(next, Err(RecvTimeoutError::Disconnected));
    peer.send(&request(2, "ping", json!({})));
    peer.close();
}

#[test]
fn stop_reading_and_ignore_eof_never_return() {
    let mut peer = Peer::start();
    let reply = peer.tool(1, "stop_reading", json!({}));
    assert_eq!(text(&reply), "no longer reading stdin");
    peer.send(&request(2, "ping", json!({})));
    assert!(peer.silent_for(200), "stdin is no longer read");
    let server = peer.server.take().expect("server");
    drop(peer); // EOF: still nothing, the reader thread sleeps (and leaks).
    std::thread::sleep(Duration::from_millis(50));
    assert!(!server.is_finished());

    let options = Options {
        ignore_eof: true,
        ..Options::default()
    };
    let mut peer = Peer::start_with(options);
    assert_eq!(peer.call(1, "ping", json!({}))["id"], 1);
    let server = peer.server.take().expect("server");
    peer.input = None;
    std::thread::sleep(Duration::from_millis(100));
    assert!(!server.is_finished(), "--ignore-eof must not return at EOF");
}

#[test]
fn fail_initialize_refuses_the_handshake() {
    let options = Options {
        fail_initialize: true,
        ..Options::default()
    };
    let mut peer = Peer::start_with(options);
    let params = json!({"protocolVersion": "2025-11-25", "capabilities": {}});
    let reply = peer.call(1, "initialize", params);
    assert_eq!(reply["error"]["code"], INTERNAL_ERROR);
    assert!(reply.get("result").is_none());
    assert_eq!(
        peer.call(2, "ping", json!({}))["id"],
        2,
        "the rest still works"
    );
    peer.close();
}

#[test]
fn modern_era_discover_and_meta() {
    let mut peer = Peer::start();
    let discover = &peer.call(1, "server/discover", json!({}))["result"];
    assert_eq!(discover["supportedVersions"][0], MODERN_VERSION);
    assert_eq!(discover["resultType"], "complete");
    assert_eq!(discover["serverInfo"]["name"], SERVER_NAME);

    let meta = json!({"io.modelcontextprotocol/protocolVersion": MODERN_VERSION});
    let params = json!({"name": "echo", "arguments": {"message": "m"}, "_meta": meta});
    let echo = peer.call(2, "tools/call", params);
    assert_eq!(text(&echo), "Echo: m");
    assert_eq!(echo["result"]["resultType"], "complete");
    let info = &echo["result"]["_meta"]["io.modelcontextprotocol/serverInfo"];
    assert_eq!(info["name"], SERVER_NAME);

    // A 2026-07-28 request is served as `--era modern` serves it: a tool needing a capability
    // the request did not declare is -32021; declared, the tool asks by MRTR.
    let params = json!({"name": "test_sampling", "arguments": {"prompt": "p"}, "_meta": meta});
    assert_eq!(
        peer.call(3, "tools/call", params)["error"]["code"],
        MISSING_CAPABILITY
    );
    let capable = json!({"io.modelcontextprotocol/protocolVersion": MODERN_VERSION,
        "io.modelcontextprotocol/clientCapabilities": {"sampling": {}}});
    let params = json!({"name": "test_sampling", "arguments": {"prompt": "p"}, "_meta": capable});
    let asked = &peer.call(3, "tools/call", params)["result"];
    assert_eq!(asked["resultType"], "input_required", "{asked}");
    assert_eq!(
        peer.call(4, "ping", json!({"_meta": meta}))["error"]["code"],
        METHOD_NOT_FOUND
    );

    let wrong = json!({"io.modelcontextprotocol/protocolVersion": "2099-01-01"});
    let error = &peer.call(5, "tools/list", json!({"_meta": wrong}))["error"];
    assert_eq!(error["code"], UNSUPPORTED_VERSION);
    assert_eq!(error["data"]["requested"], "2099-01-01");
    assert_eq!(error["data"]["supported"][0], MODERN_VERSION);
    peer.close();
}

#[test]
fn resources_prompts_and_completion() {
    let mut peer = Peer::start();
    let mut read = |uri: &str| peer.call(1, "resources/read", json!({"uri": uri}));
    let contents = |reply: &Value| reply["result"]["contents"][0].clone();
    assert_eq!(
        contents(&read("test://static-text"))["mimeType"],
        "text/plain"
    );
    assert_eq!(contents(&read("test://static-binary"))["blob"], PNG_1X1);
    let template = contents(&read("test://template/123/data"));
    assert!(
        template["text"]
            .as_str()
            .expect("text")
            .contains("Data for ID: 123")
    );
    assert_eq!(read("test://missing")["error"]["code"], RESOURCE_NOT_FOUND);

    let sub = peer.call(2, "resources/subscribe", json!({"uri": WATCHED_URI}));
    assert_eq!(sub["result"], json!({}));
    peer.send(&tool_call(3, "update_watched", json!({"content": "new"})));
    assert_eq!(peer.recv()["method"], "notifications/resources/updated");
    assert_eq!(peer.recv()["id"], 3);
    let watched = peer.call(4, "resources/read", json!({"uri": WATCHED_URI}));
    assert_eq!(contents(&watched)["text"], "new");

    let args = json!({"arg1": "testValue1", "arg2": "testValue2"});
    let params = json!({"name": "test_prompt_with_arguments", "arguments": args});
    let prompt = peer.call(5, "prompts/get", params);
    let expected = "Prompt with arguments: arg1='testValue1', arg2='testValue2'";
    assert_eq!(prompt["result"]["messages"][0]["content"]["text"], expected);
    let missing = peer.call(
        6,
        "prompts/get",
        json!({"name": "test_prompt_with_arguments"}),
    );
    assert_eq!(missing["error"]["code"], INVALID_PARAMS);

    let params = json!({"ref": {"type": "ref/prompt", "name": "test_prompt_with_arguments"},
            "argument": {"name": "arg1", "value": "par"}});
    let done = peer.call(7, "completion/complete", params);
    let expected = json!({"values": ["paris", "park", "party"], "total": 3, "hasMore": false});
    assert_eq!(done["result"]["completion"], expected);
    peer.close();
}

#[test]
fn serves_a_cursor_and_exits_at_eof() {
    let input = io::Cursor::new(format!(
        "{}\n\n{}\n",
        request(1, "ping", json!({})),
        tool_call(2, "test_simple_text", json!({}))
    ));
    let (tx, rx) = unbounded();
    serve(
        input,
        LineSink {
            buf: Vec::new(),
            tx,
        },
    )
    .expect("serve");
    let lines: Vec<Value> = rx
        .try_iter()
        .map(|l| serde_json::from_str(&l).expect("json"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(
        text(&lines[1]),
        "This is a simple text response for testing."
    );
}

/// `--era legacy` and `--era modern`.
mod eras;
