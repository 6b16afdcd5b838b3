use super::*;

fn rule(name: &str, when: Match, action: Action, probability: f64) -> Rule {
    Rule {
        name: name.into(),
        when,
        action,
        probability,
    }
}

fn faults(rules: Vec<Rule>, seed: u64) -> Arc<Faults> {
    let cfg = FaultConfig {
        rules,
        seed: Some(seed),
    };
    let no_tapes = |_: &std::path::Path| -> Result<Arc<dyn Recorded>, Error> {
        Err(Error::Config("no tapes here".into()))
    };
    Faults::start(&cfg, "demo", &no_tapes)
        .expect("starts")
        .expect("rules")
}

fn msg(text: &str) -> Message {
    Message::parse(text.as_bytes()).expect("a message")
}

const ECHO: &str = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"message":"boom"}}}"#;

#[test]
fn no_rules_no_faults() {
    let none = Faults::start(&FaultConfig::default(), "demo", &|_| {
        Err(Error::Config("unused".into()))
    });
    assert!(none.expect("ok").is_none());
}

#[test]
fn the_first_matching_rule_decides_and_answers_with_the_request_id() {
    let f = faults(
        vec![
            rule(
                "other-tool",
                Match {
                    tool: Some("add".into()),
                    ..Match::default()
                },
                Action::Drop,
                1.0,
            ),
            rule(
                "boom",
                Match {
                    pointer: Some("/arguments/message".into()),
                    equals: Some(serde_json::json!("boom")),
                    ..Match::default()
                },
                Action::Error {
                    code: -32000,
                    message: "injected".into(),
                    data: None,
                },
                1.0,
            ),
            rule(
                "all",
                Match::default(),
                Action::Mock(serde_json::json!({"x": 1})),
                1.0,
            ),
        ],
        1,
    );
    let hit = f.decide(&msg(ECHO)).expect("a hit");
    assert_eq!((hit.index, &*hit.label), (1, "boom"));
    let Decision::Answer(body) = hit.decision else {
        panic!("an answer")
    };
    let v: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(
        v,
        serde_json::json!({"jsonrpc": "2.0", "id": 7, "error": {"code": -32000, "message": "injected"}})
    );
    let other = r#"{"jsonrpc":"2.0","id":"s","method":"tools/list"}"#;
    let hit = f.decide(&msg(other)).expect("the catch-all");
    let Decision::Answer(body) = hit.decision else {
        panic!("an answer")
    };
    assert_eq!(
        String::from_utf8(body).unwrap(),
        r#"{"jsonrpc":"2.0","id":"s","result":{"x":1}}"#
    );
    // initialize only for a rule that names it.
    let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{}}"#;
    assert!(f.decide(&msg(init)).is_none());
}

#[test]
fn upstream_method_and_name_matches() {
    let f = faults(
        vec![
            rule(
                "elsewhere",
                Match {
                    upstream: Some("not-this-one".into()),
                    ..Match::default()
                },
                Action::Drop,
                1.0,
            ),
            rule(
                "prompt",
                Match {
                    method: Some("prompts/get".into()),
                    name: Some("greet".into()),
                    ..Match::default()
                },
                Action::Delay(Duration::from_millis(5)),
                1.0,
            ),
            rule(
                "init",
                Match {
                    method: Some("initialize".into()),
                    ..Match::default()
                },
                Action::Drop,
                1.0,
            ),
        ],
        1,
    );
    assert!(f.decide(&msg(ECHO)).is_none());
    let p = r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"greet"}}"#;
    let hit = f.decide(&msg(p)).expect("the prompt rule");
    assert!(matches!(hit.decision, Decision::Delay(d) if d == Duration::from_millis(5)));
    let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{}}"#;
    assert!(matches!(
        f.decide(&msg(init)).map(|h| h.decision),
        Some(Decision::Drop)
    ));
    assert_eq!(
        f.labels(),
        [
            ("elsewhere".to_owned(), "drop"),
            ("prompt".to_owned(), "delay"),
            ("init".to_owned(), "drop")
        ]
    );
}

#[test]
fn probabilities_are_drawn_and_a_seed_repeats_them() {
    let half = || faults(vec![rule("half", Match::default(), Action::Drop, 0.5)], 42);
    let draws =
        |f: &Faults| -> Vec<bool> { (0..1000).map(|_| f.decide(&msg(ECHO)).is_some()).collect() };
    let a = draws(&half());
    assert_eq!(a, draws(&half()), "the same seed, the same draws");
    let hits = a.iter().filter(|h| **h).count();
    assert!((400..600).contains(&hits), "{hits} of 1000 at 0.5");
    let never = faults(vec![rule("never", Match::default(), Action::Drop, 0.0)], 1);
    assert!((0..100).all(|_| never.decide(&msg(ECHO)).is_none()));
    // A rule that matches but does not act still decides: the request goes on.
    let shadow = faults(
        vec![
            rule("never", Match::default(), Action::Drop, 0.0),
            rule("always", Match::default(), Action::Drop, 1.0),
        ],
        1,
    );
    assert!(shadow.decide(&msg(ECHO)).is_none());
}

#[test]
fn a_pointer_without_equals_asks_for_presence() {
    let f = faults(
        vec![rule(
            "has-n",
            Match {
                pointer: Some("/arguments/n".into()),
                ..Match::default()
            },
            Action::Drop,
            1.0,
        )],
        1,
    );
    assert!(f.decide(&msg(ECHO)).is_none());
    let with_n = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","arguments":{"n":null}}}"#;
    assert!(f.decide(&msg(with_n)).is_some());
}

#[test]
fn a_mock_from_rule_answers_what_its_tape_gives() {
    struct Fixed;
    impl Recorded for Fixed {
        fn answer(&self, method: &str, _: Option<&Value>) -> Value {
            serde_json::json!({"jsonrpc": "2.0", "id": 99, "result": {"method": method}})
        }
    }
    let cfg = FaultConfig {
        rules: vec![rule(
            "tape",
            Match::default(),
            Action::MockFrom("t.jsonl".into()),
            1.0,
        )],
        seed: None,
    };
    let f = Faults::start(&cfg, "demo", &|p: &std::path::Path| {
        assert_eq!(p, std::path::Path::new("t.jsonl"));
        Ok(Arc::new(Fixed) as Arc<dyn Recorded>)
    })
    .expect("starts")
    .expect("rules");
    let Some(Decision::Answer(body)) = f.decide(&msg(ECHO)).map(|h| h.decision) else {
        panic!("an answer")
    };
    let v: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(v["id"], 7, "the request's id, not the tape's");
    assert_eq!(v["result"]["method"], "tools/call");
    let e = Faults::start(&cfg, "demo", &|_| Err(Error::Config("gone".into())))
        .err()
        .expect("a tape that does not load stops the start");
    assert!(e.to_string().contains("[[fault]] tape: mock_from: "), "{e}");
}
