//! Federation over in-process fake upstreams: names, routing, cursors, a member that is down.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::Federated;
use crate::config::{MemberConfig, SessionConfig, StdioUpstreamConfig, UpstreamConfig};
use crate::error::Error;
use crate::jsonrpc::{self, Message};
use crate::session::{Binding, Session, Sessions};
use crate::upstream::{Call, MessageStream, Operate, Poll, Reply, Upstream};

mod policy;
mod reload;

/// Answers `initialize` with tools and resources, lists `pages` pages of two tools each
/// (`t<page><n>`) and one resource `mem://<tag>/<page>` (plus `mem://shared`), and echoes
/// the tool name and URI it was called with. Counts the `tools/list` it is asked; is of
/// kind `stdio`, so its tool lists are cached (`cache.rs`).
struct Fake {
    tag: &'static str,
    pages: usize,
    down: Arc<AtomicBool>,
    tool_lists: Arc<AtomicUsize>,
}

fn fake(tag: &'static str, pages: usize, down: bool) -> Fake {
    Fake {
        tag,
        pages,
        down: Arc::new(AtomicBool::new(down)),
        tool_lists: Arc::new(AtomicUsize::new(0)),
    }
}

impl Operate for Fake {
    fn name(&self) -> &str {
        self.tag
    }
    fn kind(&self) -> &'static str {
        "stdio"
    }
    fn mode(&self) -> &'static str {
        "fake"
    }
    fn ready(&self) -> Result<(), String> {
        Ok(())
    }
    fn shutdown(&self, _grace: Duration) {}
}

fn answer(msg: &Message, result: Value) -> Reply {
    let id = msg.id.clone().unwrap_or_else(jsonrpc::null);
    Reply::Message(jsonrpc::result_body(&id, &result.to_string()))
}

impl Upstream for Fake {
    fn initialize(&self, call: Call<'_>) -> Result<(Binding, Reply), Error> {
        if self.down.load(Ordering::Relaxed) {
            return Err(Error::Unavailable(format!("{} is down", self.tag)));
        }
        let result = json!({
            "protocolVersion": "2025-11-25",
            "capabilities": {"tools": {"listChanged": true}, "resources": {}},
            "serverInfo": {"name": self.tag, "version": "1"},
            "instructions": format!("I am {}.", self.tag),
        });
        Ok((Binding::default(), answer(&call.msg, result)))
    }

    fn forward(&self, call: Call<'_>) -> Result<Reply, Error> {
        let p = call.msg.params_value().unwrap_or(Value::Null);
        let page: usize = p["cursor"]
            .as_str()
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let more = |r: &mut Value| {
            if page + 1 < self.pages {
                r["nextCursor"] = Value::String((page + 1).to_string());
            }
        };
        Ok(match call.msg.method() {
            "tools/list" => {
                self.tool_lists.fetch_add(1, Ordering::Relaxed);
                let mut r = json!({"tools": [{"name": format!("t{page}a")}, {"name": format!("t{page}b")}]});
                more(&mut r);
                answer(&call.msg, r)
            }
            "resources/list" => {
                let mut r = json!({"resources": [
                    {"uri": format!("mem://{}/{page}", self.tag), "name": "x"},
                    {"uri": "mem://shared", "name": self.tag},
                ]});
                more(&mut r);
                answer(&call.msg, r)
            }
            // A call whose stream keeps no deadline of its own (as an HTTP member's).
            "tools/call" if p["name"] == "wait" => Reply::Stream(Box::new(Waits)),
            "tools/call" => answer(
                &call.msg,
                json!({"content": [{"type": "text", "text": format!("{} ran {}", self.tag, p["name"])}], "args": p["arguments"]}),
            ),
            "completion/complete" => answer(
                &call.msg,
                json!({"completion": {"values": [format!("{} completed {}", self.tag, p["ref"])]}}),
            ),
            "resources/read" => answer(
                &call.msg,
                json!({"contents": [{"uri": p["uri"], "text": self.tag}]}),
            ),
            _ => Reply::Accepted,
        })
    }

    fn close(&self, _session: &Session) {}
}

/// A stream that never answers and waits until it is told to wake.
struct Waits;

impl MessageStream for Waits {
    fn poll_until(&mut self, wake: Instant) -> Result<Poll, Error> {
        std::thread::sleep(wake.saturating_duration_since(Instant::now()));
        Ok(Poll::Idle)
    }
}

fn member(name: &str, prefix: &str) -> MemberConfig {
    MemberConfig {
        name: name.into(),
        prefix: prefix.into(),
        upstream: UpstreamConfig::Stdio(StdioUpstreamConfig {
            argv: vec!["x".into()],
            children: 1,
            mode: crate::config::StdioMode::Shared,
            env: Default::default(),
            max_message: 1,
            max_call_buffer: 1,
            max_subscriptions: 1,
            evict_idle: Duration::from_secs(1),
            queue: 1,
            exclusive_tools: Vec::new(),
            learn_exclusive: true,
            input_timeout: Duration::from_secs(300),
        }),
        policy: Default::default(),
        request_timeout: None,
        record: None,
    }
}

struct Setup {
    fed: Federated,
    session: Arc<Session>,
}

fn setup(members: Vec<(&str, &str, Fake)>) -> Setup {
    setup_with(
        members
            .into_iter()
            .map(|(n, p, f)| (member(n, p), f))
            .collect(),
    )
}

fn setup_with(members: Vec<(MemberConfig, Fake)>) -> Setup {
    let fed = Federated::new(
        "__".into(),
        members
            .into_iter()
            .map(|(m, f)| (m, Arc::new(f) as Arc<dyn Upstream>))
            .collect(),
    );
    let init = Message::parse(br#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{}}"#)
        .expect("message");
    let (binding, reply) = fed.initialize(call(init, None)).expect("initialize");
    let Reply::Message(body) = reply else {
        panic!("one message")
    };
    let v: Value = serde_json::from_slice(&body).expect("JSON");
    assert!(v["result"]["instructions"].as_str().is_some(), "{v}");
    let sessions = Sessions::new(&SessionConfig {
        max: 4,
        max_per_client: 4,
        idle: Duration::from_secs(60),
        replay: Default::default(),
    });
    let session = sessions
        .build("2025-11-25".into(), binding, None, "c".into())
        .expect("session");
    fed.attach(&session);
    Setup { fed, session }
}

fn call<'a>(msg: Message, session: Option<&'a Arc<Session>>) -> Call<'a> {
    Call {
        msg,
        session,
        deadline: Instant::now() + Duration::from_secs(5),
        headers: Vec::new(),
    }
}

impl Setup {
    fn ask(&self, method: &str, params: Value) -> Value {
        let text = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let msg = Message::parse(text.to_string().as_bytes()).expect("message");
        match self.fed.forward(call(msg, Some(&self.session))) {
            Ok(Reply::Message(b)) => serde_json::from_slice(&b).expect("JSON"),
            _ => panic!("one message"),
        }
    }
}

fn names(v: &Value, items: &str, key: &str) -> Vec<String> {
    v["result"][items]
        .as_array()
        .expect("items")
        .iter()
        .map(|t| t[key].as_str().expect("name").to_owned())
        .collect()
}

#[test]
fn lists_merge_with_prefixes_and_cursors_walk_every_member() {
    let s = setup(vec![
        ("a", "a", fake("A", 2, false)),
        ("b", "", fake("B", 1, false)),
    ]);
    let first = s.ask("tools/list", json!({}));
    assert_eq!(
        names(&first, "tools", "name"),
        ["a__t0a", "a__t0b", "t0a", "t0b"]
    );
    let cursor = first["result"]["nextCursor"]
        .as_str()
        .expect("more")
        .to_owned();
    let second = s.ask("tools/list", json!({ "cursor": cursor }));
    assert_eq!(names(&second, "tools", "name"), ["a__t1a", "a__t1b"]);
    assert!(second["result"].get("nextCursor").is_none(), "{second}");
    for bad in ["[[1,null],[0,null]]", "[[9,null]]", "nope"] {
        let e = s.ask("tools/list", json!({ "cursor": bad }));
        assert_eq!(e["error"]["code"], -32602, "{bad}: {e}");
    }
    // Routing: the prefix picks the member and is stripped; no prefix goes to `b`.
    let r = s.ask("tools/call", json!({"name": "a__t0a"}));
    assert_eq!(r["result"]["content"][0]["text"], "A ran \"t0a\"", "{r}");
    let r = s.ask("tools/call", json!({"name": "t0a"}));
    assert_eq!(r["result"]["content"][0]["text"], "B ran \"t0a\"", "{r}");
}

#[test]
fn resources_go_to_who_listed_them_first() {
    let s = setup(vec![
        ("a", "a", fake("A", 1, false)),
        ("b", "b", fake("B", 1, false)),
    ]);
    let list = s.ask("resources/list", json!({}));
    assert_eq!(
        names(&list, "resources", "uri"),
        ["mem://A/0", "mem://shared", "mem://B/0"]
    );
    for (uri, by) in [
        ("mem://B/0", "B"),
        ("mem://shared", "A"),
        ("mem://other", "A"),
    ] {
        let r = s.ask("resources/read", json!({ "uri": uri }));
        assert_eq!(r["result"]["contents"][0]["text"], by, "{uri}: {r}");
    }
    let r = s.ask("tools/call", json!({"name": "c__x"}));
    assert_eq!(r["error"]["code"], -32602, "{r}");
}

#[test]
fn a_member_that_is_down_is_left_out_and_named() {
    let s = setup(vec![
        ("a", "a", fake("A", 1, false)),
        ("gone", "g", fake("G", 1, true)),
    ]);
    let list = s.ask("tools/list", json!({}));
    assert_eq!(names(&list, "tools", "name"), ["a__t0a", "a__t0b"]);
    let r = s.ask("tools/call", json!({"name": "g__t0a"}));
    assert_eq!(r["error"]["code"], -32603, "{r}");
    let text = r["error"]["message"].as_str().unwrap_or_default();
    assert!(text.contains("upstream gone is down"), "{text}");
    let r = s.ask("ping", json!({}));
    assert_eq!(r["result"], json!({}));
    assert!(s.fed.ready().is_ok());
    s.fed.close(&s.session);
    assert!(s.fed.sessions.lock().expect("lock").is_empty());
}

#[test]
fn a_member_that_comes_back_is_announced_and_reopened() {
    let g = fake("G", 1, true);
    let down = g.down.clone();
    let s = setup(vec![("a", "a", fake("A", 1, false)), ("gone", "g", g)]);
    let standalone = s.session.streams.standalone();
    let before = standalone.last_seq();
    down.store(false, Ordering::Relaxed);
    // The prober asks every second; bounded wait, no timing asserted.
    let until = Instant::now() + Duration::from_secs(20);
    while s.fed.is_down(1) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!s.fed.is_down(1), "the prober saw it answer");
    assert_eq!(
        standalone.last_seq(),
        before + 3,
        "three list_changed notifications"
    );
    let list = s.ask("tools/list", json!({}));
    assert_eq!(
        names(&list, "tools", "name"),
        ["a__t0a", "a__t0b", "g__t0a", "g__t0b"]
    );
    let r = s.ask("tools/call", json!({"name": "g__t0b"}));
    assert_eq!(r["result"]["content"][0]["text"], "G ran \"t0b\"", "{r}");
}

fn copy_of(m: &Message) -> Message {
    Message::parse(&m.to_vec()).expect("message")
}

#[test]
fn lists_are_cached_per_session_until_their_member_changes() {
    let a = fake("A", 2, false);
    let asked = a.tool_lists.clone();
    let s = setup(vec![("a", "a", a), ("b", "b", fake("B", 1, false))]);
    let first = s.ask("tools/list", json!({}));
    let cursor = first["result"]["nextCursor"].clone();
    let page2 = s.ask("tools/list", json!({ "cursor": cursor }));
    assert_eq!(asked.load(Ordering::Relaxed), 2);
    assert_eq!(s.ask("tools/list", json!({})), first);
    assert_eq!(s.ask("tools/list", json!({ "cursor": cursor })), page2);
    assert_eq!(
        asked.load(Ordering::Relaxed),
        2,
        "both pages from the cache"
    );

    // The member's own list_changed, of the matching kind only, forgets its pages.
    let child = s.fed.fed(&s.session).expect("fed").live(0).expect("live");
    child.noted("notifications/prompts/list_changed");
    s.ask("tools/list", json!({}));
    assert_eq!(asked.load(Ordering::Relaxed), 2);
    child.noted("notifications/tools/list_changed");
    assert_eq!(s.ask("tools/list", json!({})), first);
    assert_eq!(asked.load(Ordering::Relaxed), 3);

    // Going down forgets them too (and the member is left out meanwhile).
    let fed = s.fed.fed(&s.session).expect("fed");
    assert!(fed.lists.get(0, "tools/list", None).is_some());
    s.fed.went_down(&s.fed.member(0).expect("member 0"), "test");
    assert!(fed.lists.get(0, "tools/list", None).is_none());
    assert!(fed.lists.get(1, "tools/list", None).is_some(), "b's stay");
    let list = s.ask("tools/list", json!({}));
    assert_eq!(names(&list, "tools", "name"), ["b__t0a", "b__t0b"]);
}

#[test]
fn a_member_request_timeout_ends_its_calls_and_names_it() {
    let mut slow = member("slow", "slow");
    slow.request_timeout = Some(Duration::from_millis(100));
    let s = setup_with(vec![
        (slow, fake("S", 1, false)),
        (member("fast", "fast"), fake("F", 1, false)),
    ]);
    let text = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "slow__wait"}});
    let msg = Message::parse(text.to_string().as_bytes()).expect("message");
    let started = Instant::now();
    let reply = s.fed.forward(call(msg, Some(&s.session))).expect("a reply");
    let Reply::Stream(mut stream) = reply else {
        panic!("a stream")
    };
    // Polled as the pipeline does, up to the request's own (5 s) deadline.
    let e = loop {
        match stream.poll_until(started + Duration::from_secs(5)) {
            Ok(Poll::Idle) => {}
            Ok(_) => panic!("no answer was coming"),
            Err(e) => break e,
        }
    };
    assert!(
        matches!(&e, Error::MemberTimeout { member, .. } if member == "slow"),
        "{e:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5), "ended early");
    assert_eq!(e.rpc_code(), Error::Timeout.rpc_code());
    // The other member has no deadline of its own: the request's.
    let r = s.ask("tools/call", json!({"name": "fast__t0a"}));
    assert_eq!(r["result"]["content"][0]["text"], "F ran \"t0a\"", "{r}");
}
