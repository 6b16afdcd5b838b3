//! The MRTR machinery against a scripted session-era upstream: several input requests at
//! once, several rounds, a missing answer asked again, log filtering, cancellation of an
//! abandoned call, the bounds on waiting calls (in all and per client), parking (the call lets
//! go of its upstream while it waits, and takes it back before its answers go up). The bridge
//! sessions' pool is tested in `pool_tests.rs`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, unbounded};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::legacy::Lease;
use super::mrtr::{Bridged, CallInfo, Ctx, Running, resume};
use super::shape::Finish;
use super::state::digest;
use crate::config::{BridgeConfig, SessionConfig};
use crate::error::Error;
use crate::session::{Binding, ClientCaps, LogLevel, Session, Sessions};
use crate::stream::ReplayLimits;
use crate::upstream::{Call, Item, MessageStream, Operate, Poll, Reply, Upstream};

/// Records what the bridge sends upstream, and (in `order`) when, beside parking.
#[derive(Default)]
struct Script {
    sent: Mutex<Vec<Value>>,
    order: Order,
}

/// What happened, in order: `park`, `unpark`, `send`.
type Order = Arc<Mutex<Vec<&'static str>>>;

impl Upstream for Script {
    fn initialize(&self, _call: Call<'_>) -> Result<(Binding, Reply), Error> {
        Err(Error::Internal("not used".into()))
    }
    fn forward(&self, call: Call<'_>) -> Result<Reply, Error> {
        let v = serde_json::to_value(&call.msg).map_err(|e| Error::Internal(e.to_string()))?;
        self.sent.lock().unwrap().push(v);
        self.order.lock().unwrap().push("send");
        Ok(Reply::Accepted)
    }
    fn close(&self, _session: &Session) {}
}

impl Operate for Script {
    fn name(&self) -> &str {
        "script"
    }
    fn kind(&self) -> &'static str {
        "test"
    }
    fn mode(&self) -> &'static str {
        "test"
    }
    fn ready(&self) -> Result<(), String> {
        Ok(())
    }
    fn shutdown(&self, _grace: Duration) {}
}

/// The upstream's side of one call: items the test pushes.
struct Fake(Receiver<Item>, Order);

impl MessageStream for Fake {
    fn poll_until(&mut self, wake: Instant) -> Result<Poll, Error> {
        match self.0.recv_deadline(wake) {
            Ok(item) => Ok(Poll::Item(item)),
            Err(RecvTimeoutError::Timeout) => Ok(Poll::Idle),
            Err(RecvTimeoutError::Disconnected) => Ok(Poll::End),
        }
    }

    fn park(&mut self) {
        self.1.lock().unwrap().push("park");
    }

    fn unpark(&mut self, _deadline: Instant) -> Result<(), Error> {
        self.1.lock().unwrap().push("unpark");
        Ok(())
    }
}

struct Rig {
    ctx: Arc<Ctx>,
    script: Arc<Script>,
    tx: Sender<Item>,
    call: CallInfo,
}

fn session() -> Arc<Session> {
    let sessions = Sessions::new(&SessionConfig {
        max: 10,
        max_per_client: 10,
        idle: Duration::from_secs(60),
        replay: ReplayLimits::default(),
    });
    sessions
        .build("2025-11-25".into(), Binding::default(), None, "t".into())
        .unwrap()
}

fn rig(max_pending: usize, log_level: Option<LogLevel>) -> (Rig, Bridged) {
    let cfg = BridgeConfig {
        max_pending,
        ..BridgeConfig::default()
    };
    let ctx = Ctx::new(&cfg);
    let script = Arc::new(Script::default());
    let (tx, rx) = unbounded();
    let run = Running {
        stream: Box::new(Fake(rx, script.order.clone())),
        lease: Lease::detached(session()),
        upstream: script.clone(),
        id: "\"shadowcat-b1\"".into(),
        version: "2025-11-25",
        finished: false,
    };
    let call = CallInfo {
        client: "ip:127.0.0.1".into(),
        method: "tools/call".into(),
        principal: digest(&[""]),
        request: digest(&["tools/call", "t"]),
        caps: ClientCaps::ALL,
        log_level,
        finish: Finish {
            server_info: Some(json!({"name":"up","version":"1"})),
            ttl_ms: 0,
        },
        asked: 0,
    };
    let b = Bridged::new(
        ctx.clone(),
        run,
        call.clone(),
        id("1"),
        Vec::new(),
        Instant::now() + Duration::from_secs(10),
    );
    (
        Rig {
            ctx,
            script,
            tx,
            call,
        },
        b,
    )
}

fn id(text: &str) -> Box<RawValue> {
    RawValue::from_string(text.to_owned()).unwrap()
}

fn push(tx: &Sender<Item>, v: Value) {
    let bytes = v.to_string().into_bytes();
    let item = if v.get("method").is_none() {
        Item::Final(bytes)
    } else {
        Item::Message(bytes)
    };
    tx.send(item).unwrap();
}

/// Polls until an item or the end, for at most 5 s.
fn next(b: &mut Bridged) -> Result<Option<Value>, Error> {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        match b.poll_until(Instant::now() + Duration::from_millis(20))? {
            Poll::Item(Item::Message(m) | Item::Final(m)) => {
                return Ok(Some(serde_json::from_slice(&m).unwrap()));
            }
            Poll::End => return Ok(None),
            Poll::Idle if Instant::now() < until => {}
            Poll::Idle => panic!("nothing came"),
        }
    }
}

fn ask(id: &str, method: &str) -> Value {
    json!({"jsonrpc":"2.0","id":id,"method":method,"params":{"x":id}})
}

#[test]
fn several_inputs_at_once_and_several_rounds() {
    let (r, mut b) = rig(8, None);
    push(&r.tx, ask("s1", "sampling/createMessage"));
    push(&r.tx, ask("e1", "elicitation/create"));
    let first = next(&mut b).unwrap().unwrap();
    let res = &first["result"];
    assert_eq!(res["resultType"], "input_required", "{first}");
    assert_eq!(first["id"], 1);
    let asks = res["inputRequests"].as_object().unwrap();
    assert_eq!(asks.len(), 2, "both requests in one result: {first}");
    assert_eq!(asks["input-1"]["method"], "sampling/createMessage");
    assert_eq!(asks["input-2"]["params"]["x"], "e1");
    let state = res["requestState"].as_str().unwrap().to_owned();
    // Round 2: both answered; the upstream asks for roots next.
    let answers = json!({"input-1":{"role":"assistant"},"input-2":{"action":"accept"}});
    let mut b = resume(
        &r.ctx,
        &state,
        Some(&answers),
        r.call.clone(),
        id("2"),
        Duration::from_secs(10),
    )
    .unwrap();
    {
        let sent = r.script.sent.lock().unwrap();
        assert_eq!(sent.len(), 2, "{sent:?}");
        assert_eq!(sent[0]["id"], "s1");
        assert_eq!(sent[0]["result"]["role"], "assistant");
        assert_eq!(sent[1]["id"], "e1");
    }
    push(&r.tx, ask("r1", "roots/list"));
    let second = next(&mut b).unwrap().unwrap();
    assert_eq!(second["id"], 2);
    let asks = second["result"]["inputRequests"].as_object().unwrap();
    assert_eq!(asks.keys().collect::<Vec<_>>(), ["input-3"]);
    // The used state is gone.
    let again = resume(
        &r.ctx,
        &state,
        None,
        r.call.clone(),
        id("9"),
        Duration::from_secs(1),
    );
    assert!(matches!(again, Err(Error::InvalidParams(_))));
    let state = second["result"]["requestState"]
        .as_str()
        .unwrap()
        .to_owned();
    let answers = json!({"input-3":{"roots":[]}});
    let mut b = resume(
        &r.ctx,
        &state,
        Some(&answers),
        r.call.clone(),
        id("3"),
        Duration::from_secs(10),
    )
    .unwrap();
    push(
        &r.tx,
        json!({"jsonrpc":"2.0","id":"shadowcat-b1","result":{"content":[]}}),
    );
    let done = next(&mut b).unwrap().unwrap();
    assert_eq!(done["id"], 3, "{done}");
    assert_eq!(done["result"]["resultType"], "complete");
    assert_eq!(
        done["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "up"
    );
    assert!(next(&mut b).unwrap().is_none());
    drop(b);
    let sent = r.script.sent.lock().unwrap();
    assert!(
        !sent
            .iter()
            .any(|m| m["method"] == "notifications/cancelled"),
        "a finished call is not cancelled: {sent:?}"
    );
}

#[test]
fn a_missing_answer_is_asked_again() {
    let (r, mut b) = rig(8, None);
    push(&r.tx, ask("s1", "sampling/createMessage"));
    push(&r.tx, ask("e1", "elicitation/create"));
    let first = next(&mut b).unwrap().unwrap();
    let state = first["result"]["requestState"].as_str().unwrap().to_owned();
    let answers = json!({"input-1":{"role":"assistant"}});
    let mut b = resume(
        &r.ctx,
        &state,
        Some(&answers),
        r.call.clone(),
        id("2"),
        Duration::from_secs(10),
    )
    .unwrap();
    let again = next(&mut b).unwrap().unwrap();
    let asks = again["result"]["inputRequests"].as_object().unwrap();
    assert_eq!(asks.keys().collect::<Vec<_>>(), ["input-2"], "{again}");
    assert_eq!(r.script.sent.lock().unwrap().len(), 1);
}

#[test]
fn logs_pass_only_at_the_requested_level_and_progress_always() {
    let (r, mut b) = rig(8, Some(LogLevel::Warning));
    let log = |level: &str| json!({"jsonrpc":"2.0","method":"notifications/message","params":{"level":level,"data":level}});
    push(&r.tx, log("info"));
    push(
        &r.tx,
        json!({"jsonrpc":"2.0","method":"notifications/tools/list_changed"}),
    );
    push(&r.tx, log("error"));
    push(
        &r.tx,
        json!({"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"p","progress":1}}),
    );
    let a = next(&mut b).unwrap().unwrap();
    assert_eq!(a["params"]["level"], "error", "{a}");
    let p = next(&mut b).unwrap().unwrap();
    assert_eq!(p["method"], "notifications/progress");
    // Without a level: no logs at all.
    let (r, mut b) = rig(8, None);
    push(&r.tx, log("emergency"));
    push(&r.tx, json!({"jsonrpc":"2.0","id":"x","result":{}}));
    let only = next(&mut b).unwrap().unwrap();
    assert_eq!(only["result"]["resultType"], "complete", "{only}");
}

#[test]
fn an_abandoned_call_is_cancelled_and_waiting_calls_are_bounded() {
    let (r, b) = rig(1, None);
    drop(b);
    let sent = r.script.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["method"], "notifications/cancelled");
    assert_eq!(sent[0]["params"]["requestId"], "shadowcat-b1");
    // One call waits; a second one over the bound is refused (and cancelled).
    let (r1, mut b1) = rig(1, None);
    push(&r1.tx, ask("s1", "sampling/createMessage"));
    assert!(next(&mut b1).unwrap().is_some());
    // A second call on the same context, over the bound: refused, and cancelled upstream.
    let (tx, rx) = unbounded();
    let run2 = Running {
        stream: Box::new(Fake(rx, r1.script.order.clone())),
        lease: Lease::detached(session()),
        upstream: r1.script.clone(),
        id: "\"shadowcat-b2\"".into(),
        version: "2025-11-25",
        finished: false,
    };
    let mut over = Bridged::new(
        r1.ctx.clone(),
        run2,
        r1.call.clone(),
        id("5"),
        Vec::new(),
        Instant::now() + Duration::from_secs(10),
    );
    push(&tx, ask("s3", "sampling/createMessage"));
    let e = next(&mut over).unwrap_err();
    assert!(matches!(e, Error::InputPending { .. }), "{e}");
    assert_eq!(e.status(), 503);
    // Its Retry-After is the first waiting call's timeout (5 min by default), not a guess.
    assert!(e.retry_after().is_some_and(|s| s > 290), "{e}");
    let sent = r1.script.sent.lock().unwrap();
    assert!(
        sent.iter()
            .any(|m| m["params"]["requestId"] == "shadowcat-b2"),
        "the refused call is cancelled upstream: {sent:?}"
    );
}

#[test]
fn expired_inputs_are_swept_and_cancelled() {
    let (r, mut b) = rig(8, None);
    push(&r.tx, ask("s1", "sampling/createMessage"));
    let first = next(&mut b).unwrap().unwrap();
    assert_eq!(first["result"]["resultType"], "input_required");
    r.ctx.sweep(Instant::now() + Duration::from_secs(301));
    let sent = r.script.sent.lock().unwrap();
    assert!(
        sent.iter()
            .any(|m| m["method"] == "notifications/cancelled"),
        "{sent:?}"
    );
}

/// Thread CPU time, for the cost measurement below.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// The CPU a bridged `tools/call echo` costs the proxy beyond a call within a session: the
/// 2026-07-28 checks, the request rewritten for the bridge session, and the answer shaped.
/// The hand-offs to and from the child are the same for both and are not in it.
///
/// `cargo test --release --lib bridge::tests::bridged_call_cost -- --ignored --nocapture`
#[test]
#[ignore = "a measurement, run by hand (docs/benchmarks.md)"]
fn bridged_call_cost() {
    use crate::jsonrpc::Message;
    let body = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"message":"x"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#;
    let answer = br#"{"jsonrpc":"2.0","id":"shadowcat-b1","result":{"content":[{"type":"text","text":"Echo: x"}]}}"#;
    let headers = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "echo"),
    ];
    let finish = Finish {
        server_info: Some(json!({"name":"mcp-servers/everything","version":"2.0.0"})),
        ttl_ms: 0,
    };
    let n = 200_000u32;
    let mut best = Duration::MAX;
    for _ in 0..5 {
        let t0 = thread_cpu();
        for _ in 0..n {
            let msg = Message::parse(body).unwrap();
            let declared = super::validate(&msg, |h| {
                headers.iter().find(|(k, _)| *k == h).map(|(_, v)| *v)
            })
            .unwrap();
            // What `Bridge::bridged` adds: the body re-read, params as a tree, a new id.
            let msg = Message::parse(body).unwrap();
            let mut params = match msg.params_value() {
                Some(Value::Object(p)) => p,
                _ => unreachable!(),
            };
            let _ = (
                params.remove("requestState"),
                params.remove("inputResponses"),
            );
            let _ = (msg.target_name(), declared.caps.any());
            let up = format!(
                r#"{{"jsonrpc":"2.0","id":"shadowcat-b1","method":{},"params":{}}}"#,
                serde_json::to_string(msg.method()).unwrap(),
                Value::Object(params)
            );
            let _ = Message::parse(up.as_bytes()).unwrap();
            let id = msg.id.clone().unwrap();
            std::hint::black_box(finish.answer(answer, &id, "tools/call").unwrap());
        }
        best = best.min((thread_cpu() - t0) / n);
    }
    // The one parse a session call makes too.
    let mut parse = Duration::MAX;
    for _ in 0..5 {
        let t0 = thread_cpu();
        for _ in 0..n {
            std::hint::black_box(Message::parse(body).unwrap());
        }
        parse = parse.min((thread_cpu() - t0) / n);
    }
    let us = |d: Duration| d.as_nanos() as f64 / 1000.0;
    println!(
        "bridged call: {:.2} us of proxy CPU beyond a session call ({:.2} us minus the {:.2} us \
         parse both make; best of 5 x {n})",
        us(best.saturating_sub(parse)),
        us(best),
        us(parse)
    );
}

/// A second call on `r`'s context for `client`, asking for sampling; polled to its answer.
fn park_another(r: &Rig, client: &str, n: u64) -> Result<Option<Value>, Error> {
    let (tx, rx) = unbounded();
    let run = Running {
        stream: Box::new(Fake(rx, r.script.order.clone())),
        lease: Lease::detached(session()),
        upstream: r.script.clone(),
        id: format!("\"shadowcat-b{n}\""),
        version: "2025-11-25",
        finished: false,
    };
    let call = CallInfo {
        client: client.to_owned(),
        ..r.call.clone()
    };
    let mut b = Bridged::new(
        r.ctx.clone(),
        run,
        call,
        id(&n.to_string()),
        Vec::new(),
        Instant::now() + Duration::from_secs(10),
    );
    push(&tx, ask(&format!("s{n}"), "sampling/createMessage"));
    next(&mut b)
}

#[test]
fn r13_a_parked_call_lets_go_and_takes_back_before_answering() {
    let (r, mut b) = rig(8, None);
    push(&r.tx, ask("s1", "sampling/createMessage"));
    let first = next(&mut b).unwrap().unwrap();
    assert_eq!(first["result"]["resultType"], "input_required");
    assert_eq!(*r.script.order.lock().unwrap(), ["park"]);
    let state = first["result"]["requestState"].as_str().unwrap().to_owned();
    let answers = json!({"input-1":{"role":"assistant"}});
    let _b = resume(
        &r.ctx,
        &state,
        Some(&answers),
        r.call.clone(),
        id("2"),
        Duration::from_secs(10),
    )
    .unwrap();
    // The child is taken back before it hears the answer.
    assert_eq!(*r.script.order.lock().unwrap(), ["park", "unpark", "send"]);
}

#[test]
fn r13_waiting_calls_are_bounded_per_client() {
    let cfg = BridgeConfig {
        max_per_client: 2,
        ..BridgeConfig::default()
    };
    let (mut r, _b) = rig(8, None);
    r.ctx = Ctx::new(&cfg);
    for n in 1..=2 {
        let v = park_another(&r, "ip:10.0.0.1", n).unwrap().unwrap();
        assert_eq!(v["result"]["resultType"], "input_required", "{v}");
    }
    let e = park_another(&r, "ip:10.0.0.1", 3).unwrap_err();
    assert!(
        matches!(e, Error::InputQuota { limit: 2, .. }),
        "the third of one client: {e}"
    );
    let a = e.answer();
    assert_eq!((a.status, a.code), (429, -32600));
    assert!(e.to_string().contains("--input-max-per-client"), "{e}");
    assert!(e.retry_after().is_some_and(|s| s > 290), "{e}");
    assert!(
        r.script
            .sent
            .lock()
            .unwrap()
            .iter()
            .any(|m| m["params"]["requestId"] == "shadowcat-b3"),
        "the refused call is cancelled upstream"
    );
    // Another client is not held up by the first one's waiting calls.
    let v = park_another(&r, "ip:10.0.0.2", 4).unwrap().unwrap();
    assert_eq!(v["result"]["resultType"], "input_required", "{v}");
    assert_eq!(r.ctx.parked(), 3);
}
