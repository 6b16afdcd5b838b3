//! Issue #18's port onto main: what the recorder writes is what the tape tools read
//! (`tools/tape/read.rs`, `docs/tape-format.md`), and the recorder redacts exactly as
//! `shadowcat tape redact` does (one set of rules, `redact.rs`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::redact::Rules;
use super::scan::Redactor;
use super::tests::{MemStore, SID, init_answer, init_request, recorder};
use crate::tools::tape::read::{self, Dir, Kind};
use crate::util::lock;

/// The in-memory files written out under a fresh directory.
fn to_disk(store: &MemStore, tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("shadowcat-r18-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    for (name, bytes) in lock(&store.files).iter() {
        std::fs::write(dir.join(name), bytes).expect("write");
    }
    dir
}

fn first_tape(dir: &Path) -> PathBuf {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let n = read::file_name(p);
            n.ends_with(".jsonl") && read::part_of(&n).is_none()
        })
        .collect();
    names.sort();
    assert_eq!(names.len(), 1, "{names:?}");
    names.remove(0)
}

#[test]
fn r18_recorded_tapes_read_with_the_tape_tools() {
    let store = MemStore::default();
    let (rec, _) = recorder(store.clone(), 1 << 20, 1 << 20);
    let t0 = Instant::now();
    let tap = rec
        .open_session(SID, "2025-11-25", Some("token:alice"), t0)
        .expect("tap");
    rec.client_sent(&tap, t0, init_request());
    rec.client_got(&tap, init_answer(), true, false);
    let call = tap.clone().with_upstream_id(Some(7));
    rec.client_sent(
        &call,
        Instant::now(),
        br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"api_key":"hunter2"}}}"#.to_vec(),
    );
    rec.client_got(
        &call,
        br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32001,"message":"timed out"}}"#.to_vec(),
        true,
        true,
    );
    rec.close_session(SID);
    assert!(rec.sync(Duration::from_secs(5)));
    let dir = to_disk(&store, "read");
    let tape = read::read_tape(&first_tape(&dir)).expect("the tape tools read it");
    assert_eq!(tape.header.era, "2025-11-25");
    assert_eq!(tape.header.session.as_deref(), Some("3f2a9c1e"));
    assert_eq!(tape.header.principal.as_deref(), Some("token:alice"));
    assert_eq!(tape.header.upstream(), "test (stdio, shared)");
    assert_eq!(tape.header.peer("client").as_deref(), Some("t 1"));
    assert_eq!(tape.header.peer("server").as_deref(), Some("srv 2"));
    let kinds: Vec<(Dir, Kind, bool)> = tape
        .lines
        .iter()
        .map(|l| (l.dir, l.kind(), l.synthetic))
        .collect();
    assert_eq!(
        kinds,
        [
            (Dir::C2s, Kind::Request, false),
            (Dir::S2c, Kind::Response, false),
            (Dir::C2s, Kind::Request, false),
            (Dir::S2c, Kind::Response, true),
        ]
    );
    assert_eq!(tape.lines[2].upstream_id, json!(7));
    // The placeholder is the one `shadowcat tape redact` computes under the same salt.
    let want = Rules::new(b"07".to_vec()).placeholder(&json!("hunter2"));
    assert_eq!(tape.lines[2].msg["params"]["arguments"]["api_key"], want);
    let _ = std::fs::remove_dir_all(&dir);
    rec.shutdown();
}

#[test]
fn r18_rotated_parts_read_as_one_tape() {
    let store = MemStore::default();
    let (rec, _) = recorder(store.clone(), 4096, 1 << 20);
    let t0 = Instant::now();
    let tap = rec.open_session(SID, "2025-06-18", None, t0).expect("tap");
    rec.client_sent(&tap, t0, init_request());
    rec.client_got(&tap, init_answer(), true, false);
    let n = 100;
    for i in 0..n {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{i},"method":"ping","pad":"{}"}}"#,
            "x".repeat(100)
        );
        rec.client_sent(&tap, Instant::now(), body.into_bytes());
    }
    rec.close_session(SID);
    assert!(rec.sync(Duration::from_secs(5)));
    let dir = to_disk(&store, "parts");
    let tape = read::read_tape(&first_tape(&dir)).expect("read");
    assert!(tape.files > 2, "{} files", tape.files);
    assert_eq!(tape.lines.len(), n + 2);
    assert!(tape.lines.windows(2).all(|w| w[0].t <= w[1].t));
    assert_eq!(tape.header.era, "2025-06-18");
    let _ = std::fs::remove_dir_all(&dir);
    rec.shutdown();
}

#[test]
fn r18_a_session_tape_whose_opening_was_lost_still_reads() {
    let store = MemStore::default();
    let (rec, _) = recorder(store.clone(), 1 << 20, 1 << 20);
    // No open_session: the writer starts the tape from the first message, with its era.
    let tap = rec.session(SID, "2025-03-26").expect("tap");
    rec.client_sent(
        &tap,
        Instant::now(),
        br#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#.to_vec(),
    );
    rec.close_session(SID);
    assert!(rec.sync(Duration::from_secs(5)));
    let dir = to_disk(&store, "lost");
    let tape = read::read_tape(&first_tape(&dir)).expect("read");
    assert_eq!(tape.header.era, "2025-03-26");
    assert_eq!(tape.lines.len(), 1);
    let _ = std::fs::remove_dir_all(&dir);
    rec.shutdown();
}

#[test]
fn r18_stateless_tapes_read_with_the_modern_era() {
    let store = MemStore::default();
    let (rec, _) = recorder(store.clone(), 1 << 20, 1 << 20);
    let tap = rec
        .stateless(None, "192.0.2.7".parse().expect("ip"))
        .expect("tap");
    rec.client_sent(
        &tap,
        Instant::now(),
        br#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#.to_vec(),
    );
    rec.client_got(
        &tap,
        br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}"#.to_vec(),
        true,
        false,
    );
    assert!(rec.sync(Duration::from_secs(5)));
    let dir = to_disk(&store, "stateless");
    let path = first_tape(&dir);
    let name = read::file_name(&path);
    assert!(
        name.starts_with("stateless-") && name.ends_with("Z.jsonl"),
        "{name}"
    );
    assert!(!name.contains("192.0.2.7"));
    let tape = read::read_tape(&path).expect("read");
    assert!(tape.header.stateless());
    assert_eq!(tape.header.session, None);
    assert_eq!(tape.lines.len(), 2);
    let _ = std::fs::remove_dir_all(&dir);
    rec.shutdown();
}

/// The recorder (byte scan, then `Rules::redact` when needed) and `shadowcat tape redact`
/// (`Rules::redact` on every message) give the same message.
#[test]
fn r18_the_recorder_redacts_as_tape_redact_does() {
    let mut rules = Rules::new(b"salt".to_vec());
    rules.add("key=pin").expect("key");
    rules
        .add("pointer=/params/arguments/account")
        .expect("pointer");
    let scan = Redactor::new(rules.clone());
    for text in [
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"e","arguments":{"message":"hi"}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"e","arguments":{"Pin":1,"account":{"b":2,"a":[1]},"x":{"password":"p"}}}}"#,
        r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"t","progress":1}}"#,
        r#"{"jsonrpc":"2.0","id":2,"method":"sampling/createMessage","params":{"maxTokens":100,"messages":[]}}"#,
        r#"{"a":{"\u0074oken":"x"},"b":"line\nbreak"}"#,
    ] {
        let recorded = scan.message(text.as_bytes()).expect("json");
        let recorded: Value = serde_json::from_slice(&recorded).expect("recorded json");
        let mut by_tool: Value = serde_json::from_str(text).expect("json");
        rules.redact(&mut by_tool);
        assert_eq!(recorded, by_tool, "{text}");
    }
}
