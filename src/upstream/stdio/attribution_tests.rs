//! Unit tests of `attribution.rs`: whose a child's message is.

use super::attribution::*;
use std::sync::Arc;
use std::time::Duration;

use crate::config::SessionConfig;
use crate::jsonrpc::Message;
use crate::metrics::DropReason;
use crate::session::{Binding, Sessions};
use crate::session::{ClientCaps, Session};

fn session(t: &Sessions) -> Arc<Session> {
    t.create("v".into(), Binding::default(), None, "ip:a".into())
        .unwrap()
}

fn table() -> Sessions {
    Sessions::new(&SessionConfig {
        max: 10,
        max_per_client: 10,
        idle: Duration::from_secs(60),
        replay: Default::default(),
    })
}

fn msg(text: &str) -> Message {
    Message::parse(text.as_bytes()).unwrap()
}

const SAMPLE: &str = r#"{"jsonrpc":"2.0","id":"s1","method":"sampling/createMessage","params":{}}"#;
const URL: &str = r#"{"jsonrpc":"2.0","id":"e1","method":"elicitation/create","params":{"mode":"url","url":"https://x"}}"#;
const LOG: &str =
    r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"x"}}"#;

fn code(v: &Verdict) -> i64 {
    match v {
        Verdict::Refuse { code, .. } => *code,
        other => panic!("not refused: {other:?}"),
    }
}

#[test]
fn one_sessions_calls_own_everything_capability_permitting() {
    let t = table();
    let a = session(&t);
    let capable = Caller::session(&a, ClientCaps::SAMPLING);
    let calls = [
        InFlight {
            id: 3,
            caller: &capable,
            has_token: false,
            listen: false,
        },
        InFlight {
            id: 7,
            caller: &capable,
            has_token: false,
            listen: false,
        },
    ];
    assert_eq!(attribute(&msg(SAMPLE), &calls, false), Verdict::Call(7));
    assert_eq!(attribute(&msg(LOG), &calls, false), Verdict::Call(7));
    // It declared sampling only: URL elicitation is refused to the child, never routed.
    assert_eq!(code(&attribute(&msg(URL), &calls, false)), -32601);
    // Just after a call was abandoned, nothing is attributed.
    assert_eq!(code(&attribute(&msg(SAMPLE), &calls, true)), -32603);
    assert_eq!(
        attribute(&msg(LOG), &calls, true),
        Verdict::Drop(DropReason::Unattributed)
    );
}

#[test]
fn several_sessions_own_nothing() {
    let t = table();
    let (a, b) = (session(&t), session(&t));
    let (ca, cb) = (
        Caller::session(&a, ClientCaps::NONE),
        Caller::session(&b, ClientCaps::NONE),
    );
    let internal = Caller::internal();
    let calls = [
        InFlight {
            id: 1,
            caller: &ca,
            has_token: true,
            listen: false,
        },
        InFlight {
            id: 2,
            caller: &cb,
            has_token: false,
            listen: false,
        },
        InFlight {
            id: 3,
            caller: &internal,
            has_token: false,
            listen: false,
        },
    ];
    assert_eq!(
        attribute(&msg(LOG), &calls, false),
        Verdict::Drop(DropReason::Unattributed)
    );
    // Nobody in flight declared sampling: whoever asked lacks it.
    assert_eq!(code(&attribute(&msg(SAMPLE), &calls, false)), -32601);
    let progress = r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":1}}"#;
    assert_eq!(attribute(&msg(progress), &calls, false), Verdict::Call(1));
    let stray = r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":9,"progress":1}}"#;
    assert_eq!(
        attribute(&msg(stray), &calls, false),
        Verdict::Drop(DropReason::Unattributed)
    );
    let ping = r#"{"jsonrpc":"2.0","id":5,"method":"ping"}"#;
    assert_eq!(attribute(&msg(ping), &calls, false), Verdict::Ping);
    let changed = r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#;
    assert_eq!(
        attribute(&msg(changed), &calls, false),
        Verdict::SessionWide
    );
    // One of them capable: not provable either way.
    let cb = Caller::session(&b, ClientCaps::SAMPLING);
    let calls = [
        InFlight {
            id: 1,
            caller: &ca,
            has_token: false,
            listen: false,
        },
        InFlight {
            id: 2,
            caller: &cb,
            has_token: false,
            listen: false,
        },
    ];
    assert_eq!(code(&attribute(&msg(SAMPLE), &calls, false)), -32603);
}

#[test]
fn what_only_the_calls_in_flight_attribute() {
    assert!(by_calls_in_flight(&msg(LOG)));
    assert!(by_calls_in_flight(&msg(SAMPLE)));
    let custom = r#"{"jsonrpc":"2.0","method":"notifications/custom","params":{}}"#;
    assert!(by_calls_in_flight(&msg(custom)));
    for other in [
        r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":1}}"#,
        r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#,
        r#"{"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"uri":"x"}}"#,
        r#"{"jsonrpc":"2.0","id":5,"method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":5,"result":{}}"#,
    ] {
        assert!(!by_calls_in_flight(&msg(other)), "{other}");
    }
}

#[test]
fn stateless_and_empty() {
    let modern = Caller::stateless(ClientCaps::SAMPLING);
    let internal = Caller::internal();
    let calls = [
        InFlight {
            id: 4,
            caller: &modern,
            has_token: false,
            listen: false,
        },
        InFlight {
            id: 5,
            caller: &internal,
            has_token: false,
            listen: false,
        },
    ];
    assert_eq!(attribute(&msg(LOG), &calls, false), Verdict::Call(4));
    assert_eq!(code(&attribute(&msg(SAMPLE), &calls, false)), -32603);
    let only_internal = [InFlight {
        id: 5,
        caller: &internal,
        has_token: false,
        listen: false,
    }];
    assert_eq!(
        attribute(&msg(LOG), &only_internal, false),
        Verdict::Drop(DropReason::Unattributed)
    );
    assert_eq!(code(&attribute(&msg(SAMPLE), &[], false)), -32603);
}

#[test]
fn listen_notifications_go_to_the_listen_their_subscription_id_names() {
    let stateless = Caller::stateless(ClientCaps::default());
    let internal = Caller::internal();
    let call = |id, caller, listen| InFlight {
        id,
        caller,
        has_token: false,
        listen,
    };
    // Two stateless calls in flight: without the tag nobody provably owns a notification.
    let calls = [
        call(7, &stateless, true),
        call(8, &stateless, true),
        call(9, &stateless, false),
        call(10, &internal, true),
    ];
    let tagged = |method: &str, id: &str| {
        msg(&format!(
            r#"{{"jsonrpc":"2.0","method":"{method}","params":{{"_meta":{{"{META_SUBSCRIPTION}":{id}}}}}}}"#
        ))
    };
    let ack = "notifications/subscriptions/acknowledged";
    let tools = "notifications/tools/list_changed";
    assert_eq!(
        attribute(&tagged(ack, "8"), &calls, false),
        Verdict::Call(8)
    );
    assert_eq!(
        attribute(&tagged(tools, "7"), &calls, false),
        Verdict::Call(7)
    );
    // Even while settling: the tag is proof.
    assert_eq!(
        attribute(&tagged(tools, "7"), &calls, true),
        Verdict::Call(7)
    );
    // A call that is no listen, or no call at all: the usual rule.
    assert_eq!(
        attribute(&tagged(tools, "9"), &calls, false),
        Verdict::SessionWide
    );
    assert_eq!(
        attribute(&tagged(ack, "99"), &calls[..2], false),
        Verdict::Drop(DropReason::Unattributed)
    );
    // The proxy's own listen: its acknowledgement is its own, its changes the sessions'.
    assert_eq!(
        attribute(&tagged(ack, "10"), &calls, false),
        Verdict::Call(10)
    );
    assert_eq!(
        attribute(&tagged(tools, "10"), &calls, false),
        Verdict::SessionWide
    );
    // The client's own id goes back in, the rest untouched.
    let mut m = msg(&format!(
        r#"{{"jsonrpc":"2.0","method":"{tools}","params":{{"x":1,"_meta":{{"{META_SUBSCRIPTION}":7,"k":"v"}}}}}}"#
    ));
    assert_eq!(subscription_id(&m), Some(7));
    restore_subscription_id(&mut m, &crate::jsonrpc::raw("\"client-1\"".to_owned()));
    let p = m.params_value().unwrap();
    assert_eq!(p["_meta"][META_SUBSCRIPTION], "client-1");
    assert_eq!(p["_meta"]["k"], "v");
    assert_eq!(p["x"], 1);
    // The proxy's own listen's tag is taken out before its sessions see the notification.
    strip_subscription_id(&mut m);
    let p = m.params_value().unwrap();
    assert_eq!(p["_meta"], serde_json::json!({"k": "v"}));
    let mut bare = tagged(tools, "10");
    strip_subscription_id(&mut bare);
    assert_eq!(bare.params_value().unwrap(), serde_json::json!({}));
    // An untagged log beside a listen: the listen did not cause it; the one other call did.
    let beside = [call(7, &stateless, true), call(9, &stateless, false)];
    assert_eq!(attribute(&msg(LOG), &beside, false), Verdict::Call(9));
}
