use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::format::{self, Header, Line, Utc};
use super::scan::Redactor;
use super::writer::{Setup, Store, TapeFile};
use super::*;
use crate::config::RedactRules;
use crate::jsonrpc::Answered;
use crate::metrics::Metrics;
use crate::util::lock;

fn rules(keys: &[&str], pointers: &[&str]) -> RedactRules {
    RedactRules {
        keys: keys.iter().map(|s| s.to_string()).collect(),
        pointers: pointers.iter().map(|s| s.to_string()).collect(),
    }
}

pub(super) fn redactor(keys: &[&str], pointers: &[&str]) -> Redactor {
    Redactor::new(super::rules(&rules(keys, pointers), b"07".to_vec()).unwrap())
}

fn redacted(r: &Redactor, msg: &str) -> String {
    String::from_utf8(r.message(msg.as_bytes()).expect("JSON").into_owned()).unwrap()
}

// ---- redaction ----

#[test]
fn a_token_in_arguments_never_appears_in_the_bytes() {
    let r = redactor(&[], &[]);
    let secret = "ghp_0123456789abcdefSECRET";
    for msg in [
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"deploy","arguments":{{"token":"{secret}"}}}}}}"#
        ),
        format!(r#"{{"a":{{"Authorization":"Bearer {secret}"}}}}"#),
        format!(r#"{{"a":[{{"x":{{"API_KEY":"{secret}"}}}}]}}"#),
        format!(r#"{{"a":{{"db_password":{{"nested":"{secret}"}}}}}}"#),
        format!(r#"{{"a":{{"Set-Cookie":"{secret}"}}}}"#),
        // A key spelled with escapes is the same key.
        format!(r#"{{"a":{{"\u0074oken":"{secret}"}}}}"#),
        format!(r#"{{"a":{{"client\u005fsecret":"{secret}"}}}}"#),
        // Line breaks between tokens: re-serialized on one line.
        format!("{{\"a\":\n{{\"password\":\"{secret}\"}}}}"),
    ] {
        let out = redacted(&r, &msg);
        assert!(!out.contains(secret), "{msg} -> {out}");
        assert!(!out.contains('\n'));
        assert!(out.contains("<redacted:"), "{out}");
        serde_json::from_str::<Value>(&out).unwrap();
    }
}

#[test]
fn equal_secrets_hash_equally_and_salts_differ() {
    let r = redactor(&[], &[]);
    let a = redacted(&r, r#"{"token":"s3cret","other":{"password":"s3cret"}}"#);
    let v: Value = serde_json::from_str(&a).unwrap();
    assert_eq!(v["token"], v["other"]["password"]);
    let h = v["token"].as_str().unwrap();
    assert!(
        h.starts_with("<redacted:") && h.ends_with('>') && h.len() == 19,
        "{h}"
    );
    // A different secret, or the same under another directory's salt, hashes differently.
    let b: Value = serde_json::from_str(&redacted(&r, r#"{"token":"s3cret2"}"#)).unwrap();
    assert_ne!(b["token"], v["token"]);
    let other = Redactor::new(super::rules(&RedactRules::default(), b"08".to_vec()).unwrap());
    let c: Value = serde_json::from_str(&redacted(&other, r#"{"token":"s3cret"}"#)).unwrap();
    assert_ne!(c["token"], v["token"]);
    // The same value hashes the same however it was spelled (its JSON value, not its text).
    let d: Value = serde_json::from_str(&redacted(&r, r#"{"token":"s3\u0063ret"}"#)).unwrap();
    assert_eq!(d["token"], v["token"]);
}

#[test]
fn pointers_and_configured_keys() {
    let r = redactor(
        &["PIN", "otp"],
        &["/params/arguments/account", "/params/list/1"],
    );
    let out: Value = serde_json::from_str(&redacted(
        &r,
        r#"{"params":{"arguments":{"account":"12345","pin":"0000","spinner":"x","Otp":7},"list":["a","b"]}}"#,
    ))
    .unwrap();
    let args = &out["params"]["arguments"];
    assert!(args["account"].as_str().unwrap().starts_with("<redacted:"));
    assert!(args["pin"].as_str().unwrap().starts_with("<redacted:"));
    assert!(args["Otp"].as_str().unwrap().starts_with("<redacted:"));
    // Configured keys match whole names, not parts.
    assert_eq!(args["spinner"], "x");
    assert_eq!(out["params"]["list"][0], "a");
    assert!(
        out["params"]["list"][1]
            .as_str()
            .unwrap()
            .starts_with("<redacted:")
    );
    // A pointer that does not resolve changes nothing.
    assert_eq!(
        redacted(&r, r#"{"params":{"other":1}}"#),
        r#"{"params":{"other":1}}"#
    );
    // An escaped `/` in a key is found too.
    let r = redactor(&[], &["/a~1b"]);
    let out: Value = serde_json::from_str(&redacted(&r, r#"{"a\/b":"v"}"#)).unwrap();
    assert!(out["a/b"].as_str().unwrap().starts_with("<redacted:"));
}

#[test]
fn protocol_fields_are_not_secrets_unless_configured() {
    let r = redactor(&[], &[]);
    let msg = r#"{"params":{"_meta":{"progressToken":"p1"},"maxTokens":100,"tokens":5}}"#;
    let out: Value = serde_json::from_str(&redacted(&r, msg)).unwrap();
    assert_eq!(out["params"]["_meta"]["progressToken"], "p1");
    assert_eq!(out["params"]["maxTokens"], 100);
    assert!(
        out["params"]["tokens"]
            .as_str()
            .unwrap()
            .starts_with("<redacted:")
    );
    let r = redactor(&["maxTokens"], &[]);
    let out: Value = serde_json::from_str(&redacted(&r, msg)).unwrap();
    assert!(
        out["params"]["maxTokens"]
            .as_str()
            .unwrap()
            .starts_with("<redacted:")
    );
}

#[test]
fn clean_messages_are_written_as_they_came() {
    let r = redactor(&["pin"], &["/params/arguments/account"]);
    let msg = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"message":"a \"quoted\"\tline"}}}"#;
    assert!(!r.must_parse(msg));
    assert!(matches!(
        r.message(msg),
        Some(std::borrow::Cow::Borrowed(_))
    ));
    // Anything that could hide a key, or a line break, is parsed.
    assert!(r.must_parse(br#"{"a":"\u0041"}"#));
    assert!(r.must_parse(br#"{"a":"\/"}"#));
    assert!(r.must_parse(b"{\"a\":\n1}"));
    assert!(r.must_parse(br#"{"ACCOUNT":1}"#));
    assert!(r.must_parse(br#"{"Pin":1}"#));
    // Not JSON: nothing to write.
    assert!(r.message(b"{\"a\":").is_none());
    // A pointer ending in an index needs a parse every time.
    assert!(redactor(&[], &["/0"]).must_parse(b"{}"));
}

// ---- format ----

#[test]
fn calendar_and_names() {
    let t = UNIX_EPOCH + Duration::from_millis(1_796_591_599_533);
    let u = Utc::of(t);
    assert_eq!(u.rfc3339(), "2026-12-06T21:13:19.533Z");
    assert_eq!(u.compact(), "20261206T211319Z");
    assert_eq!(Utc::of(UNIX_EPOCH).rfc3339(), "1970-01-01T00:00:00.000Z");
    assert_eq!(
        Utc::of(UNIX_EPOCH + Duration::from_secs(951_782_400)).rfc3339(),
        "2000-02-29T00:00:00.000Z"
    );
    assert_eq!(
        format::session_base(t, "3f2a9c1e0000aaaabbbbccccddddeeee"),
        "20261206T211319Z-3f2a9c1e"
    );
    assert_eq!(
        format::stateless_base("0123456789ab", format::hour_of(t)),
        "stateless-0123456789ab-20261206T21Z"
    );
    assert_eq!(format::file_name("x", 0), "x.jsonl");
    assert_eq!(format::file_name("x", 2), "x.2.jsonl");
}

// ---- the writer, against a store in memory ----

pub(super) type Files = Arc<Mutex<BTreeMap<String, Vec<u8>>>>;

/// Files in memory; each write waits `delay` (a slow disk).
#[derive(Clone, Default)]
pub(super) struct MemStore {
    pub(super) files: Files,
    pub(super) delay: Duration,
}

struct MemFile {
    files: Files,
    name: String,
    delay: Duration,
}

impl Write for MemFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        std::thread::sleep(self.delay);
        lock(&self.files)
            .entry(self.name.clone())
            .or_default()
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl TapeFile for MemFile {
    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Store for MemStore {
    fn create(&mut self, name: &str) -> io::Result<Box<dyn TapeFile>> {
        let mut files = lock(&self.files);
        if files.contains_key(name) {
            return Err(io::ErrorKind::AlreadyExists.into());
        }
        files.insert(name.to_owned(), Vec::new());
        Ok(Box::new(MemFile {
            files: self.files.clone(),
            name: name.to_owned(),
            delay: self.delay,
        }))
    }
    fn append(&mut self, name: &str) -> io::Result<Box<dyn TapeFile>> {
        Ok(Box::new(MemFile {
            files: self.files.clone(),
            name: name.to_owned(),
            delay: self.delay,
        }))
    }
    fn sweep(&mut self, _keep: Duration, _in_use: &dyn Fn(&str) -> bool) -> usize {
        0
    }
}

pub(super) fn recorder(store: MemStore, max_bytes: u64, queue: usize) -> (Recorder, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new("test"));
    let setup = Setup {
        store: Box::new(store),
        redactor: Arc::new(redactor(&[], &[])),
        upstream: format::Upstream {
            name: "test".into(),
            kind: "stdio".into(),
            mode: "shared".into(),
        },
        max_bytes,
        keep: Duration::from_secs(3600),
        metrics: metrics.clone(),
        epoch: (Instant::now(), SystemTime::now()),
    };
    (
        Recorder::with_writer(setup, queue, metrics.clone()).unwrap(),
        metrics,
    )
}

fn lines_of(bytes: &[u8]) -> (Header, Vec<Line>) {
    let text = std::str::from_utf8(bytes).unwrap();
    assert!(text.ends_with('\n'));
    let mut it = text.lines();
    let header: Header = serde_json::from_str(it.next().unwrap()).unwrap();
    let lines = it.map(|l| serde_json::from_str(l).unwrap()).collect();
    (header, lines)
}

pub(super) const SID: &str = "3f2a9c1e0000aaaabbbbccccddddeeee";

pub(super) fn init_request() -> Vec<u8> {
    br#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"sampling":{}},"clientInfo":{"name":"t","version":"1"}}}"#.to_vec()
}

pub(super) fn init_answer() -> Vec<u8> {
    br#"{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"srv","version":"2"}}}"#.to_vec()
}

#[test]
fn a_session_tape_has_its_header_then_every_message_in_order() {
    let store = MemStore::default();
    let files = store.files.clone();
    let (rec, _) = recorder(store, 1 << 20, 1 << 20);
    let t0 = Instant::now();
    let tap = rec
        .open_session(SID, "2025-11-25", Some("token:alice"), t0)
        .unwrap();
    rec.client_sent(&tap, t0, init_request());
    rec.client_got(&tap, init_answer(), true, false);
    let call = tap.clone().with_upstream_id(Some(1042));
    rec.client_sent(
        &call,
        Instant::now(),
        br#"{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"x","arguments":{"token":"hunter2"}}}"#.to_vec(),
    );
    rec.client_got(
        &call,
        br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"p","progress":1}}"#.to_vec(),
        false,
        false,
    );
    rec.client_got(
        &call,
        br#"{"jsonrpc":"2.0","id":"a","error":{"code":-32001,"message":"timed out"}}"#.to_vec(),
        true,
        true,
    );
    // Standalone events, replayed twice to a reconnecting client: recorded once.
    let ev = |seq: u64, data: &str| {
        Arc::new(crate::stream::frame(
            Some(&format!("2-{seq}")),
            data.as_bytes(),
        ))
    };
    for _ in 0..2 {
        rec.client_got_event(&tap, ev(1, ""));
        rec.client_got_event(
            &tap,
            ev(
                2,
                r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#,
            ),
        );
    }
    rec.close_session(SID);
    // A message that outlives the session starts no tape.
    rec.client_got(&tap, b"{}".to_vec(), false, false);
    assert!(rec.sync(Duration::from_secs(5)));
    let files = lock(&files);
    assert_eq!(files.len(), 1, "{:?}", files.keys());
    let (name, bytes) = files.iter().next().unwrap();
    assert!(name.ends_with("-3f2a9c1e.jsonl"), "{name}");
    assert!(!String::from_utf8_lossy(bytes).contains("hunter2"));
    let (h, lines) = lines_of(bytes);
    assert_eq!(h.tape, "shadowcat");
    assert_eq!(h.version, 1);
    assert_eq!(h.era, "2025-11-25");
    assert_eq!(h.session.as_deref(), Some("3f2a9c1e"));
    assert_eq!(h.principal.as_deref(), Some("token:alice"));
    assert_eq!(h.upstream.kind, "stdio");
    let client = h.client.unwrap();
    assert_eq!(client.info.unwrap()["name"], "t");
    assert_eq!(client.capabilities.unwrap(), json!({"sampling": {}}));
    assert_eq!(h.server.unwrap().info.unwrap()["name"], "srv");
    assert_eq!(h.part, 0);
    let got: Vec<(&str, String, Option<u64>, bool)> = lines
        .iter()
        .map(|l| {
            (
                l.dir.label(),
                l.id.as_ref().map_or("null".into(), |i| i.get().to_owned()),
                l.upstream_id,
                l.synthetic,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("c2s", "0".into(), None, false),
            ("s2c", "0".into(), None, false),
            ("c2s", "\"a\"".into(), Some(1042), false),
            ("s2c", "null".into(), None, false),
            ("s2c", "\"a\"".into(), Some(1042), true),
            ("s2c", "null".into(), None, false),
        ]
    );
    assert_eq!(lines[0].t, 0.0);
    assert!(lines.windows(2).all(|w| w[0].t <= w[1].t));
    let text = std::str::from_utf8(bytes).unwrap();
    assert!(text.contains(r#""synthetic":true"#));
    assert_eq!(text.matches("synthetic").count(), 1);
    rec.shutdown();
}

#[test]
fn tapes_rotate_into_parts_each_with_a_header() {
    let store = MemStore::default();
    let files = store.files.clone();
    let (rec, _) = recorder(store, 4096, 1 << 20);
    let tap = rec.stateless(None, "203.0.113.9".parse().unwrap()).unwrap();
    let body = format!(
        r#"{{"jsonrpc":"2.0","method":"notifications/message","params":{{"data":"{}"}}}}"#,
        "x".repeat(1000)
    );
    for _ in 0..10 {
        rec.client_got(&tap, body.clone().into_bytes(), false, false);
    }
    assert!(rec.sync(Duration::from_secs(5)));
    let files = lock(&files);
    let names: Vec<&String> = files.keys().collect();
    assert!(names.len() >= 3, "{names:?}");
    let first = names.iter().min_by_key(|n| n.len()).unwrap();
    let base = first.trim_end_matches(".jsonl");
    assert!(
        base.starts_with("stateless-") && base.ends_with('Z'),
        "{base}"
    );
    let mut messages = 0;
    for (i, name) in [format::file_name(base, 0), format::file_name(base, 1)]
        .iter()
        .enumerate()
    {
        let (h, lines) = lines_of(&files[name]);
        assert_eq!(h.part, i as u32);
        assert_eq!(h.era, "2026-07-28");
        assert_eq!(h.session, None);
        assert!(files[name].len() <= 4096 + 1200);
        messages += lines.len();
    }
    let total: usize = files.values().map(|b| lines_of(b).1.len()).sum();
    assert_eq!(total, 10);
    assert!(messages >= 2);
    rec.shutdown();
}

#[test]
fn a_slow_writer_never_slows_the_sender_and_drops_are_counted() {
    // Each write takes 20 ms; the queue holds 8 KiB: the writer falls behind at once.
    let store = MemStore {
        delay: Duration::from_millis(20),
        ..MemStore::default()
    };
    let (rec, metrics) = recorder(store, 1 << 20, 8 * 1024);
    let tap = rec
        .stateless(Some("token:bob"), "127.0.0.1".parse().unwrap())
        .unwrap();
    let body = br#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"hello"}]}}"#;
    let started = Instant::now();
    let mut worst = Duration::ZERO;
    for _ in 0..5000 {
        let t = Instant::now();
        rec.client_got(&tap, body.to_vec(), true, false);
        worst = worst.max(t.elapsed());
    }
    let took = started.elapsed();
    // 5,000 sends at 20 ms a write would be 100 s if the sender waited.
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert!(worst < Duration::from_millis(50), "{worst:?}");
    let dropped = metrics.tape_dropped_total();
    assert!(dropped > 4000, "{dropped}");
    let text = metrics.render(&Default::default());
    assert!(text.contains(&format!(
        "shadowcat_tape_dropped_total{{reason=\"behind\"}} {dropped}"
    )));
    rec.shutdown();
}

#[test]
fn the_queue_charges_bytes_and_refuses_past_its_budget() {
    let (q, d) = queue::bounded::<u32>(1000);
    assert!(q.try_send(1, 500).is_ok());
    assert_eq!(q.used(), 500 + queue::OVERHEAD);
    assert!(q.try_send(2, 500).is_err());
    assert!(q.try_send_slack(3, 500, 1000).is_ok());
    assert_eq!(d.try_recv(), Some(1));
    assert_eq!(d.try_recv(), Some(3));
    assert_eq!(q.used(), 0);
    assert!(q.try_send(4, 100).is_ok());
}

// ---- the audit log ----

#[derive(Clone, Default)]
pub(super) struct MemSink {
    out: Arc<Mutex<Vec<u8>>>,
    delay: Duration,
}

impl audit::Sink for MemSink {
    fn write_all(&mut self, b: &[u8]) -> io::Result<()> {
        std::thread::sleep(self.delay);
        lock(&self.out).extend_from_slice(b);
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }
}

pub(super) fn record(args: Option<&str>) -> AuditRecord {
    AuditRecord {
        at: UNIX_EPOCH + Duration::from_millis(1_796_591_599_533),
        principal: Some("token:alice".into()),
        client_ip: "127.0.0.1".parse().unwrap(),
        session: Some("3f2a9c1e".into()),
        http_method: "POST".into(),
        method: Some("tools/call".into()),
        name: Some("deploy".into()),
        status: 200,
        answered: Some(Answered::ToolError),
        duration: Duration::from_micros(1234),
        bytes_in: 120,
        bytes_out: 96,
        arguments: args.map(|a| serde_json::value::RawValue::from_string(a.into()).unwrap()),
        fault: None,
    }
}

#[test]
fn audit_lines_carry_the_outcome_and_redacted_arguments() {
    let sink = MemSink::default();
    let out = sink.out.clone();
    let metrics = Arc::new(Metrics::new("up"));
    let r = Arc::new(redactor(&[], &["/params/arguments/target"]));
    let a = Auditor::with_sink(Box::new(sink), 1 << 20, true, "up", r, metrics).unwrap();
    a.log(record(Some(
        r#"{"api_key":"AKIA-SECRET","target":"prod-db","n":1}"#,
    )));
    a.log(record(None));
    assert!(a.sync(Duration::from_secs(5)));
    let text = String::from_utf8(lock(&out).clone()).unwrap();
    assert!(
        !text.contains("AKIA-SECRET") && !text.contains("prod-db"),
        "{text}"
    );
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    let l = &lines[0];
    assert_eq!(l["time"], "2026-12-06T21:13:19.533Z");
    assert_eq!(l["principal"], "token:alice");
    assert_eq!(l["client_ip"], "127.0.0.1");
    assert_eq!(l["session"], "3f2a9c1e");
    assert_eq!(l["upstream"], "up");
    assert_eq!(l["method"], "tools/call");
    assert_eq!(l["name"], "deploy");
    assert_eq!(l["outcome"], "tool_error");
    assert_eq!(l["code"], Value::Null);
    assert_eq!(l["duration_ms"], 1.234);
    assert_eq!(l["bytes_in"], 120);
    assert_eq!(l["arguments"]["n"], 1);
    assert!(
        l["arguments"]["target"]
            .as_str()
            .unwrap()
            .starts_with("<redacted:")
    );
    assert!(lines[1].get("arguments").is_none());
    a.shutdown();
}

/// Arguments are written as `serde_json` writes the value (compact, members in key order)
/// whether or not the redaction runs: with no pointer rule and nothing the scan could match it
/// is skipped; a pointer that replaces `params` whole leaves `null`, never a panic.
#[test]
fn r18_audit_arguments_are_written_alike_with_and_without_redaction() {
    let cases: [(&[&str], &[&str], &str, &str); 5] = [
        (
            &[],
            &[],
            r#"{ "z": 1, "a": [1.0, "x\/y"], "m": {"b": 2, "a": 1} }"#,
            r#"{"a":[1.0,"x/y"],"m":{"a":1,"b":2},"z":1}"#,
        ),
        (
            &[],
            &[],
            r#"{"b":"\u0074oken","a":2}"#,
            r#"{"a":2,"b":"token"}"#,
        ),
        (
            &["pin"],
            &[],
            r#"{"b":1,"PIN":"1234"}"#,
            r#"{"PIN":"<redacted:"#,
        ),
        (
            &[],
            &["/params/arguments/b"],
            r#"{"b":"x","a":1}"#,
            r#"{"a":1,"b":"<redacted:"#,
        ),
        (&[], &["/params"], r#"{"b":"x"}"#, "null"),
    ];
    for (keys, pointers, args, want) in cases {
        let sink = MemSink::default();
        let out = sink.out.clone();
        let r = Arc::new(redactor(keys, pointers));
        let m = Arc::new(Metrics::new("up"));
        let a = Auditor::with_sink(Box::new(sink), 1 << 20, true, "up", r, m).unwrap();
        a.log(record(Some(args)));
        assert!(a.sync(Duration::from_secs(5)));
        a.shutdown();
        let text = String::from_utf8(lock(&out).clone()).unwrap();
        let at = text.find(",\"arguments\":").expect("arguments") + 13;
        assert!(text[at..].starts_with(want), "{args}: {text}");
        let v: Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(v["duration_ms"], 1.234);
    }
}

#[test]
fn a_slow_audit_sink_never_slows_the_request_and_drops_are_counted() {
    let sink = MemSink {
        delay: Duration::from_millis(20),
        ..MemSink::default()
    };
    let metrics = Arc::new(Metrics::new("up"));
    let a = Auditor::with_sink(
        Box::new(sink),
        4 * 1024,
        false,
        "up",
        Arc::new(redactor(&[], &[])),
        metrics.clone(),
    )
    .unwrap();
    let started = Instant::now();
    for _ in 0..2000 {
        a.log(record(None));
    }
    assert!(started.elapsed() < Duration::from_secs(1));
    let text = metrics.render(&Default::default());
    let dropped: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("shadowcat_audit_dropped_total{reason=\"behind\"} "))
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(dropped > 1500, "{dropped}");
    a.shutdown();
}

#[test]
fn tool_label_is_bounded_and_learned_from_results_only() {
    use crate::metrics::{MAX_TOOLS, ToolOutcome};
    let m = Metrics::new("up");
    // A name only a client made up (it never answered with a result) gets no label.
    m.tool_call(Some("made-up"), ToolOutcome::Error);
    for i in 0..MAX_TOOLS + 10 {
        m.tool_call(Some(&format!("t{i}")), ToolOutcome::Ok);
    }
    m.tool_call(Some("t0"), ToolOutcome::ToolError);
    m.tool_call(None, ToolOutcome::Ok);
    let text = m.render(&Default::default());
    let series: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("shadowcat_tool_calls_total{"))
        .collect();
    assert_eq!(series.len(), MAX_TOOLS + 1 + 2, "{series:#?}");
    assert!(text.contains(r#"shadowcat_tool_calls_total{upstream="up",tool="t0",outcome="ok"} 1"#));
    assert!(
        text.contains(
            r#"shadowcat_tool_calls_total{upstream="up",tool="t0",outcome="tool_error"} 1"#
        )
    );
    assert!(
        text.contains(r#"shadowcat_tool_calls_total{upstream="up",tool="other",outcome="ok"} 11"#)
    );
    assert!(
        text.contains(
            r#"shadowcat_tool_calls_total{upstream="up",tool="other",outcome="error"} 1"#
        )
    );
    assert!(!text.contains("made-up"));
    assert!(!text.contains(r#"tool="t64""#));
}

#[test]
fn the_directory_salt_is_made_once_and_kept() {
    let dir = std::env::temp_dir().join(format!("shadowcat-salt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let a = directory_salt(&dir).unwrap();
    let b = directory_salt(&dir).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.len(), 64, "64 hex digits");
    // The salt is the file's text, whatever it is (the tape tools read it the same way).
    std::fs::write(dir.join(".salt"), "nope\n").unwrap();
    assert_eq!(directory_salt(&dir).unwrap(), b"nope");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The pair-table scan finds every needle a plain case-insensitive search finds, wherever it
/// sits (start, end, split across any boundary), in texts built from needle fragments.
#[test]
fn the_scan_misses_no_needle() {
    let r = redactor(&["x-pin", "Zq"], &["/a/b/deep_key"]);
    let pieces = [
        "to",
        "ken",
        "TOK",
        "EN",
        "pass",
        "word",
        "sec",
        "ret",
        "api",
        "_key",
        "apik",
        "ey",
        "auth",
        "orization",
        "coo",
        "kie",
        "x-",
        "pin",
        "zq",
        "deep",
        "_KEY",
        "\"",
        ":",
        "{",
        "}",
        "a",
        " ",
    ];
    let needles = [
        "token",
        "password",
        "secret",
        "api_key",
        "apikey",
        "authorization",
        "cookie",
        "x-pin",
        "zq",
        "deep_key",
    ];
    let mut seed = 0x2545f4914f6cdd1du64;
    for _ in 0..20_000 {
        let mut text = String::new();
        for _ in 0..(seed % 7 + 1) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            text.push_str(pieces[(seed % pieces.len() as u64) as usize]);
        }
        let lower = text.to_ascii_lowercase();
        let naive = needles.iter().any(|n| lower.contains(n));
        if naive {
            assert!(r.must_parse(text.as_bytes()), "{text:?}");
        }
    }
}

/// A rotated audit file (moved away) is noticed at the next fsync: later lines go to a new
/// file at the path, mode 0600.
#[test]
fn a_moved_audit_file_is_reopened() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("shadowcat-audit-rot-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("audit.jsonl");
    let cfg = crate::config::TapeConfig {
        record: None,
        max_bytes: 1 << 20,
        keep: Duration::from_secs(60),
        audit_log: Some(path.display().to_string()),
        audit_arguments: false,
        redact: RedactRules::default(),
        queue_bytes: 1 << 20,
        audit_queue_bytes: 1 << 20,
    };
    let metrics = Arc::new(Metrics::new("up"));
    let a = Auditor::start(&cfg, "up", Arc::new(redactor(&[], &[])), metrics).unwrap();
    a.log(record(None));
    assert!(a.sync(Duration::from_secs(5)));
    std::fs::rename(&path, dir.join("audit.jsonl.1")).unwrap();
    a.log(record(None));
    assert!(a.sync(Duration::from_secs(5)));
    a.log(record(None));
    a.shutdown();
    let count = |p: &std::path::Path| std::fs::read_to_string(p).unwrap().lines().count();
    assert_eq!(count(&dir.join("audit.jsonl.1")), 2);
    assert_eq!(count(&path), 1);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Retention: tape files last written longer ago than `--record-keep` are deleted, unless a
/// tape is still being written to them; the salt and other files stay.
#[test]
fn the_sweep_deletes_only_old_tapes() {
    let dir = std::env::temp_dir().join(format!("shadowcat-sweep-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let old = SystemTime::now() - Duration::from_secs(3 * 86_400);
    for name in [
        "old.jsonl",
        "old.1.jsonl",
        "open.jsonl",
        "notes.txt",
        ".salt",
        "new.jsonl",
    ] {
        let f = std::fs::File::create(dir.join(name)).unwrap();
        if name != "new.jsonl" {
            f.set_modified(old).unwrap();
        }
    }
    let mut store = writer::DirStore::new(dir.clone());
    let removed = store.sweep(Duration::from_secs(86_400), &|n| n == "open.jsonl");
    assert_eq!(removed, 2);
    let mut left: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, [".salt", "new.jsonl", "notes.txt", "open.jsonl"]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A stateless client's tape closes once its hour is over and it has been quiet a minute;
/// this hour's stays open.
#[test]
fn stateless_tapes_close_after_their_hour() {
    let store = MemStore::default();
    let files = store.files.clone();
    let metrics = Arc::new(Metrics::new("test"));
    let mut w = writer::Writer::new(Setup {
        store: Box::new(store),
        redactor: Arc::new(redactor(&[], &[])),
        upstream: format::Upstream {
            name: "t".into(),
            kind: "http".into(),
            mode: "pooled".into(),
        },
        max_bytes: 1 << 20,
        keep: Duration::from_secs(3600),
        metrics,
        epoch: (Instant::now(), SystemTime::now()),
    });
    let wall = SystemTime::now();
    let hour = format::hour_of(wall);
    let t0 = Instant::now();
    for h in [hour - 1, hour] {
        w.handle(writer::Event::Msg(writer::Msg {
            key: Arc::new(TapeKey::Stateless {
                principal: None,
                ip: Some("192.0.2.1".parse().unwrap()),
                hour: h,
            }),
            at: t0,
            dir: Dir::ClientToServer,
            upstream_id: None,
            body: writer::Body::Json(br#"{"jsonrpc":"2.0","method":"ping","id":1}"#.to_vec()),
            synthetic: false,
            fault: None,
            era: crate::jsonrpc::MODERN_VERSION,
        }));
    }
    // Quiet for less than a minute: both stay.
    assert_eq!(w.close_quiet_at(wall, t0 + Duration::from_secs(30)), 2);
    // Quiet a minute: last hour's closes, this hour's stays.
    assert_eq!(w.close_quiet_at(wall, t0 + Duration::from_secs(61)), 1);
    let names: Vec<String> = lock(&files).keys().cloned().collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.iter().all(|n| n.starts_with("stateless-")));
    // One client: the same hash in both names, different hours.
    assert_eq!(names[0][..22], names[1][..22]);
    assert_ne!(names[0], names[1]);
}
