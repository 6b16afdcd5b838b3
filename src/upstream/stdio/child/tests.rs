//! Unit tests of `child.rs` and `child/stdout.rs`.

use std::io::Cursor;

use super::stdout::KEEP_PARAMS;
use super::*;

#[test]
fn the_writer_queue_is_bounded_in_bytes() {
    let q = Queued::default();
    let soon = || Some(Instant::now() + Duration::from_millis(20));
    assert!(
        q.take(OUTBOX_LIMIT * 3, None),
        "one line bigger than the bound goes alone"
    );
    assert!(!q.take(1, soon()), "nothing more while it waits");
    q.give(OUTBOX_LIMIT * 3);
    assert!(q.take(OUTBOX_LIMIT - 10, None));
    assert!(q.take(10, None), "up to the bound");
    assert!(!q.take(1, None), "not beyond");
    q.close();
    assert!(q.take(1, None), "a closed writer keeps nobody waiting");
}

fn sink() -> EventSink {
    Arc::new(|_, _, _| {})
}

#[test]
fn bounded_lines() {
    let mut r = Cursor::new(b"ab\ncdef\n".to_vec());
    let mut buf = Vec::new();
    assert_eq!(read_line_bounded(&mut r, &mut buf, 10).unwrap(), 3);
    buf.clear();
    assert!(read_line_bounded(&mut r, &mut buf, 3).is_err());
    let mut r = Cursor::new(b"".to_vec());
    assert_eq!(read_line_bounded(&mut r, &mut buf, 3).unwrap(), 0);
}

#[test]
fn cat_round_trip_restores_ids() {
    // `cat` echoes each request back; a request echoed is not a response, so use a shell
    // one-liner that turns requests into responses instead.
    let script = r#"while IFS= read -r l; do printf '%s\n' "$l" | sed 's/"method":"[^"]*",//; s/"params":{[^}]*}/"result":{}/'; done"#;
    let argv = vec!["sh".to_string(), "-c".to_string(), script.to_string()];
    let child = Child::spawn(&Program::argv(argv), 0, 0, 1 << 20, sink()).unwrap();
    for id in [
        r#""abc""#,
        "18446744073709551615",
        "123456789012345678901234567890",
    ] {
        let msg = Message::parse(
            format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"x","params":{{}}}}"#).as_bytes(),
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let (_, rx) = child
            .call_deadline(msg, deadline, Caller::internal())
            .unwrap();
        match rx.recv_deadline(deadline).unwrap() {
            Item::Final(bytes) => {
                let m = Message::parse(&bytes).unwrap();
                assert_eq!(m.id.unwrap().get(), id);
            }
            Item::Message(_) => panic!("expected the response"),
        }
    }
    child.stop(Duration::from_millis(500));
    assert!(!child.is_alive() || child.inflight() == 0);
}

#[test]
fn death_fails_calls_at_once() {
    let argv = vec![
        "sh".to_string(),
        "-c".to_string(),
        "read l; exit 1".to_string(),
    ];
    let child = Child::spawn(&Program::argv(argv), 0, 0, 1 << 20, sink()).unwrap();
    let msg = Message::parse(br#"{"jsonrpc":"2.0","id":1,"method":"x"}"#).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let (_, rx) = child
        .call_deadline(msg, deadline, Caller::internal())
        .unwrap();
    let started = Instant::now();
    assert!(rx.recv_deadline(deadline).is_err());
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(!child.is_alive());
}

/// Calls `tool` on `child`, learning from it, and waits for the response.
fn learn_call(child: &Child, tool: &str) -> u64 {
    let text = format!(
        r#"{{"jsonrpc":"2.0","id":"c","method":"tools/call","params":{{"name":"{tool}"}}}}"#
    );
    let caller = Caller {
        learn: true,
        ..Caller::default()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let msg = Message::parse(text.as_bytes()).unwrap();
    let (id, rx) = child.call_deadline(msg, deadline, caller).unwrap();
    loop {
        match rx.recv_deadline(deadline).expect("answered") {
            Item::Final(_) => return id,
            Item::Message(_) => {}
        }
    }
}

#[test]
fn calls_alone_on_the_child_report_whether_it_logged() {
    // Answers every request; logs first when the line says "loud", sleeps first when it
    // says "slow" (so that the next request is sent while it is in flight).
    let script = r#"while IFS= read -r l; do
        id=$(printf '%s' "$l" | sed 's/.*"id":\([0-9]*\).*/\1/')
        case "$l" in *slow*) sleep 0.5;; esac
        case "$l" in *loud*) printf '%s\n' '{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"x"}}';; esac
        printf '{"jsonrpc":"2.0","id":%s,"result":{}}\n' "$id"
    done"#;
    let seen: Arc<Mutex<Vec<(String, bool)>>> = Arc::default();
    let log = seen.clone();
    let events: EventSink = Arc::new(move |_, _, ev| {
        if let Event::Observed { params, logged } = ev {
            let name = crate::upstream::stdio::exclusive::tool_name(&params)
                .unwrap_or_default()
                .into_owned();
            lock(&log).push((name, logged));
        }
    });
    let argv = vec!["sh".to_string(), "-c".to_string(), script.to_string()];
    let child = Child::spawn(&Program::argv(argv), 0, 0, 1 << 20, events).unwrap();
    learn_call(&child, "loud");
    learn_call(&child, "quiet");
    assert_eq!(
        *lock(&seen),
        [("loud".to_owned(), true), ("quiet".to_owned(), false)],
        "reported before the response"
    );
    // Two calls in flight together: neither proves anything.
    let slow = {
        let text =
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"slow loud"}}"#;
        let caller = Caller {
            learn: true,
            ..Caller::default()
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        child
            .call_deadline(Message::parse(text.as_bytes()).unwrap(), deadline, caller)
            .unwrap()
    };
    learn_call(&child, "loud");
    let until = Instant::now() + Duration::from_secs(10);
    while let Ok(Item::Message(_)) = slow.1.recv_deadline(until) {}
    assert_eq!(lock(&seen).len(), 2, "{:?}", lock(&seen));
    // Alone again.
    learn_call(&child, "loud");
    assert_eq!(lock(&seen).len(), 3);
    child.stop(Duration::from_millis(500));
}

#[test]
fn large_params_are_not_kept_for_learning() {
    let small = jsonrpc::raw(r#"{"name":"t","arguments":{}}"#.into());
    assert_eq!(learnable(small.clone()).unwrap().get(), small.get());
    let big = format!(
        r#"{{"arguments":{{"x":"{}"}},"name":"t\u0031"}}"#,
        "y".repeat(KEEP_PARAMS)
    );
    let kept = learnable(jsonrpc::raw(big)).unwrap();
    assert_eq!(kept.get(), r#"{"name":"t\u0031"}"#);
    assert!(
        learnable(jsonrpc::raw(format!(
            "[{}]",
            "1,".repeat(KEEP_PARAMS) + "1"
        )))
        .is_none()
    );
}

#[test]
fn progress_token_rewritten() {
    let mut m = Message::parse(
        br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","_meta":{"progressToken":"tok"}}}"#,
    )
    .unwrap();
    let old = rewrite_progress_token(&mut m, 42).unwrap();
    assert_eq!(old.get(), "\"tok\"");
    assert!(m.params.unwrap().get().contains("\"progressToken\":42"));
}
