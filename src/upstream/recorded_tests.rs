//! Tests of `recorded.rs`: a member's tape from a fake member, the openings' bound, and the
//! `record` keys of a table.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use argh::FromArgs;
use serde_json::Value;

use super::*;
use crate::config::{Config, SessionConfig, UpstreamConfig};
use crate::jsonrpc::Message;
use crate::session::Sessions;

/// A member that answers `initialize` at once and `tools/call` on a stream: one progress
/// notification, then the answer.
struct Fake;

impl Upstream for Fake {
    fn initialize(&self, _call: Call<'_>) -> Result<(Binding, Reply), Error> {
        let answer = br#"{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"fake","version":"1"}}}"#;
        Ok((Binding::default(), Reply::Message(answer.to_vec())))
    }
    fn forward(&self, call: Call<'_>) -> Result<Reply, Error> {
        if call.msg.method() != "tools/call" {
            return Ok(Reply::Accepted);
        }
        let items = vec![
            Item::Message(
                br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1}}"#
                    .to_vec(),
            ),
            Item::Final(br#"{"jsonrpc":"2.0","id":5,"result":{"content":[]}}"#.to_vec()),
        ];
        Ok(Reply::Stream(Box::new(Items(items.into_iter()))))
    }
    fn close(&self, _session: &Session) {}
}

impl Operate for Fake {
    fn name(&self) -> &str {
        "fake"
    }
    fn kind(&self) -> &'static str {
        "stdio"
    }
    fn mode(&self) -> &'static str {
        "shared"
    }
    fn ready(&self) -> Result<(), String> {
        Ok(())
    }
    fn shutdown(&self, _grace: Duration) {}
}

struct Items(std::vec::IntoIter<Item>);

impl MessageStream for Items {
    fn poll_until(&mut self, _wake: Instant) -> Result<Poll, Error> {
        Ok(self.0.next().map_or(Poll::End, Poll::Item))
    }
}

fn parse(args: &[&str]) -> Result<Config, Error> {
    let all: Vec<&str> = ["reverse"].iter().chain(args).copied().collect();
    let cli = crate::Cli::from_args(&["shadowcat"], &all).map_err(|e| Error::Config(e.output))?;
    match cli.command {
        crate::Command::Reverse(r) => r.into_config("/bin/shadowcat"),
        _ => unreachable!(),
    }
}

fn temp(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("shadowcat-recorded-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The lines of the one tape in `dir`.
fn one_tape(dir: &Path) -> Vec<Value> {
    let tapes: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    assert_eq!(tapes.len(), 1, "{tapes:?}");
    let text = std::fs::read_to_string(&tapes[0]).expect("tape");
    text.lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

fn member(dir: &Path, name: &str) -> MemberConfig {
    MemberConfig {
        name: name.into(),
        prefix: name.into(),
        upstream: parse(&[]).expect("config").upstream,
        policy: Default::default(),
        request_timeout: None,
        record: Some(crate::config::MemberRecord {
            dir: dir.to_owned(),
            max_bytes: None,
            keep: None,
        }),
    }
}

fn call<'a>(text: &str, session: Option<&'a Arc<Session>>) -> Call<'a> {
    Call {
        msg: Message::parse(text.as_bytes()).expect("message"),
        session,
        deadline: Instant::now() + Duration::from_secs(5),
        headers: Vec::new(),
    }
}

fn sessions() -> Sessions {
    Sessions::new(&SessionConfig {
        max: 4,
        max_per_client: 4,
        idle: Duration::from_secs(60),
        replay: Default::default(),
    })
}

#[test]
fn a_member_tape_holds_what_the_member_saw_in_order() {
    let dir = temp("order");
    let top = parse(&[]).expect("config").tapes;
    let metrics = Arc::new(Metrics::new("fed"));
    let up = wrap(&member(&dir, "alpha"), Arc::new(Fake), &top, &metrics).expect("recorded");
    let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"c","version":"1"}}}"#;
    let (binding, _) = up.initialize(call(init, None)).expect("opened");
    assert_ne!(binding.tape, 0);
    let parent = sessions()
        .build("2025-11-25".into(), Binding::default(), None, String::new())
        .expect("session");
    let child = parent.member(0, binding);
    up.attach(&child);
    let note = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    assert!(matches!(
        up.forward(call(note, Some(&child))),
        Ok(Reply::Accepted)
    ));
    let tool = r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo","arguments":{"token":"s3cret"}}}"#;
    let Ok(Reply::Stream(mut s)) = up.forward(call(tool, Some(&child))) else {
        panic!("a stream");
    };
    while let Ok(Poll::Item(_)) = s.poll_until(Instant::now()) {}
    up.close(&child);
    up.shutdown(Duration::from_secs(1));

    let lines = one_tape(&dir);
    let header = &lines[0];
    assert_eq!(header["upstream"]["name"], "alpha", "{header}");
    assert_eq!(header["server"]["info"]["name"], "fake", "{header}");
    assert_eq!(header["client"]["info"]["name"], "c", "{header}");
    let seen: Vec<(String, String)> = lines[1..]
        .iter()
        .map(|l| {
            let m = &l["msg"];
            let what = m["method"]
                .as_str()
                .map_or_else(|| format!("answer {}", m["id"]), |s| s.to_owned());
            (l["dir"].as_str().unwrap_or("?").to_owned(), what)
        })
        .collect();
    let want = [
        ("c2s", "initialize"),
        ("s2c", "answer 0"),
        ("c2s", "notifications/initialized"),
        ("c2s", "tools/call"),
        ("s2c", "notifications/progress"),
        ("s2c", "answer 5"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(d, w)| ((*d).to_owned(), (*w).to_owned()))
        .collect();
    assert_eq!(seen, want);
    let text = serde_json::to_string(&lines).expect("text");
    assert!(!text.contains("s3cret"), "redacted as --record: {text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_opening_without_a_session_leaves_no_tape_and_openings_are_bounded() {
    let dir = temp("unopened");
    let top = parse(&[]).expect("config").tapes;
    let metrics = Arc::new(Metrics::new("fed"));
    let rec = Recorded::new(
        Arc::new(Fake),
        Recorder::start(
            &TapeConfig {
                record: Some(dir.clone()),
                ..top
            },
            Arc::new(Redactor::new(
                tape::rules(&Default::default(), b"s".to_vec()).expect("rules"),
            )),
            tape::format::Upstream {
                name: "x".into(),
                kind: "stdio".into(),
                mode: "shared".into(),
            },
            metrics,
        )
        .expect("recorder"),
    );
    let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{}}"#;
    let (binding, _) = rec.initialize(call(init, None)).expect("opened");
    // The federation gives up on it (a failed slot): released, never attached.
    let s = sessions()
        .build(String::new(), binding, None, String::new())
        .expect("session");
    rec.close(&s);
    assert!(lock(&rec.openings).by_token.is_empty());
    rec.shutdown(Duration::from_secs(1));
    let files = std::fs::read_dir(&dir).expect("dir").flatten();
    assert_eq!(files.filter(|e| e.path().extension().is_some()).count(), 0);

    let mut o = Openings::default();
    for token in 1..=10 {
        let big = Opening {
            at: Instant::now(),
            request: vec![b'x'; OPENINGS_BYTES / 4],
            answer: None,
        };
        o.put(token, big);
        assert!(o.bytes <= OPENINGS_BYTES);
    }
    assert_eq!(
        o.by_token.keys().copied().collect::<Vec<_>>(),
        [7, 8, 9, 10]
    );
    // An answer counts too: the oldest goes to make room for it.
    o.answer(10, b"{}".to_vec());
    assert_eq!(o.by_token.keys().copied().collect::<Vec<_>>(), [8, 9, 10]);
    assert_eq!(o.take(10).and_then(|x| x.answer), Some(b"{}".to_vec()));
    assert_eq!(o.bytes, 2 * (OPENINGS_BYTES / 4));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn record_keys_are_the_tables_own_and_one_directory_has_one_writer() {
    let dir = temp("keys");
    let file = dir.join("fed.toml");
    std::fs::write(
        &file,
        "record = \"/tmp/top\"\nrecord-max-bytes = \"1MiB\"\n\n\
         [upstream.a]\nstdio = \"cat\"\nrecord = \"/tmp/a\"\nrecord-keep = \"1d\"\n\n\
         [upstream.b]\nstdio = \"cat\"\n",
    )
    .expect("write");
    let flags = crate::expand_config_file(&["--config".into(), file.display().to_string()])
        .expect("expands");
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let c = parse(&flags).expect("valid");
    let UpstreamConfig::Federated(f) = &c.upstream else {
        panic!("federated")
    };
    let a = f.members[0].record.as_ref().expect("a records");
    assert_eq!(a.dir, Path::new("/tmp/a"));
    assert_eq!(a.keep, Some(Duration::from_secs(86400)));
    assert_eq!(a.max_bytes, None, "the top-level one applies");
    assert_eq!(
        f.members[1].record, None,
        "top-level --record is not a member's"
    );
    assert!(check_dirs(&f.members, &c.tapes).is_ok());
    let mut same = f.members.clone();
    same[1].record = same[0].record.clone();
    let e = check_dirs(&same, &c.tapes).expect_err("one directory, two tables");
    assert!(e.to_string().contains("also a's"), "{e}");
    let mut top = c.tapes.clone();
    top.record = Some("/tmp/a".into());
    assert!(check_dirs(&f.members, &top).is_err());

    // --redact needs something to redact: a member's tapes are enough.
    std::fs::write(
        &file,
        "redact = [\"key=motto\"]\n\n[upstream.a]\nstdio = \"cat\"\nrecord = \"/tmp/a\"\n\n\
         [upstream.b]\nstdio = \"cat\"\n",
    )
    .expect("write");
    let flags = crate::expand_config_file(&["--config".into(), file.display().to_string()])
        .expect("expands");
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let c = parse(&flags).expect("valid");
    assert_eq!(c.tapes.redact.keys, ["motto"]);

    std::fs::write(
        &file,
        "[upstream.a]\nstdio = \"cat\"\nrecord-keep = \"1d\"\n",
    )
    .expect("write");
    let flags = crate::expand_config_file(&["--config".into(), file.display().to_string()])
        .expect("expands");
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let e = parse(&flags).expect_err("record-keep alone");
    assert!(e.to_string().contains("go with `record`"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
