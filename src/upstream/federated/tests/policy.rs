//! Policy through the federation: who sees and may call which tools, prompts and resources
//! (`policy.rs`, `overrides.rs`), including the review's regressions (#15).

use super::*;

#[test]
fn r15_resource_policy_hides_and_refuses_as_not_found() {
    let mut a = member("a", "a");
    a.policy.rules.deny_resources = Some(vec!["mem://shared".into(), "mem://B/*".into()]);
    let mut b = member("b", "b");
    b.policy.rules.allow_resources = Some(vec!["mem://sh*".into()]);
    let s = setup_with(vec![(a, fake("A", 1, false)), (b, fake("B", 1, false))]);
    let list = s.ask("resources/list", json!({}));
    // a's `mem://shared` is denied, so b's (allowed) is listed and answers for it.
    assert_eq!(
        names(&list, "resources", "uri"),
        ["mem://A/0", "mem://shared"]
    );
    for (uri, by) in [("mem://shared", "B"), ("mem://other", "A")] {
        let r = s.ask("resources/read", json!({ "uri": uri }));
        assert_eq!(r["result"]["contents"][0]["text"], by, "{uri}: {r}");
    }
    // Listed by b but not allowed there, and denied at a (which would be asked next).
    for method in ["resources/read", "resources/subscribe"] {
        let r = s.ask(method, json!({"uri": "mem://B/0"}));
        assert_eq!(r["error"]["code"], -32002, "{method}: not found: {r}");
    }
}

#[test]
fn policies_hide_and_refuse_per_principal() {
    let mut a = member("a", "a");
    a.policy.rules.deny = Some(vec!["t0b".into()]);
    a.policy.principals.push((
        "token:alice".into(),
        crate::config::RulesConfig {
            allow: None,
            deny: Some(vec![]),
            ..Default::default()
        },
    ));
    let mut fed = Federated::new(
        "__".into(),
        vec![(a, Arc::new(fake("A", 1, false)) as Arc<dyn Upstream>)],
    );
    let init = Message::parse(br#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{}}"#)
        .expect("message");
    let sessions = Sessions::new(&SessionConfig {
        max: 4,
        max_per_client: 4,
        idle: Duration::from_secs(60),
        replay: Default::default(),
    });
    for (who, want) in [
        (None, vec!["a__t0a"]),
        (Some("token:alice"), vec!["a__t0a", "a__t0b"]),
    ] {
        let (binding, _) = fed.initialize(call(copy_of(&init), None)).expect("init");
        let session = sessions
            .build(
                "2025-11-25".into(),
                binding,
                who.map(str::to_owned),
                "c".into(),
            )
            .expect("session");
        fed.attach(&session);
        let s = Setup { fed, session };
        let list = s.ask("tools/list", json!({}));
        assert_eq!(names(&list, "tools", "name"), want, "{who:?}");
        let r = s.ask("tools/call", json!({"name": "a__t0b"}));
        if who.is_none() {
            assert_eq!(r["error"]["code"], -32602, "refused as unknown: {r}");
        } else {
            assert_eq!(r["result"]["content"][0]["text"], "A ran \"t0b\"", "{r}");
        }
        s.fed.close(&s.session);
        let Setup { fed: back, .. } = s;
        fed = back;
    }
}

#[test]
fn r15_completion_goes_by_the_ref_type_so_a_name_cannot_carry_a_denied_uri() {
    let mut a = member("a", "a");
    a.policy.rules.deny_resources = Some(vec!["mem://A/*".into()]);
    let s = setup_with(vec![(a, fake("A", 1, false))]);
    // Plain: refused as not found.
    let r = s.ask("completion/complete", json!({"ref": {"type": "ref/resource", "uri": "mem://A/{x}"}, "argument": {"name": "x", "value": ""}}));
    assert_eq!(r["error"]["code"], -32002, "{r}");
    // Same ref with a `name` added: routed as a prompt, uri untouched.
    let r = s.ask("completion/complete", json!({"ref": {"type": "ref/resource", "uri": "mem://A/{x}", "name": "a__anything"}, "argument": {"name": "x", "value": ""}}));
    assert_eq!(r["error"]["code"], -32002, "the uri is what counts: {r}");
}

#[test]
fn r15_a_template_denied_by_its_text_denies_its_expansions() {
    let mut a = member("a", "a");
    a.policy.rules.deny_resources = Some(vec!["mem://secret/{id}".into()]);
    let s = setup_with(vec![(a, fake("A", 1, false))]);
    let r = s.ask("resources/read", json!({"uri": "mem://secret/42"}));
    assert_eq!(r["error"]["code"], -32002, "{r}");
}

#[test]
fn r15_array_params_are_refused_not_a_panic() {
    let s = setup(vec![("b", "", fake("B", 1, false))]);
    for method in [
        "tools/call",
        "prompts/get",
        "completion/complete",
        "resources/read",
    ] {
        let r = s.ask(method, json!([1, 2]));
        assert_eq!(r["error"]["code"], -32602, "{method}: {r}");
    }
}

#[test]
fn r15_the_bridge_session_cannot_skip_a_principals_fixed_arguments() {
    let mut a = member("a", "a");
    let mut fixed = serde_json::Map::new();
    fixed.insert("tenant".into(), "alice".into());
    a.policy.principals.push((
        "jwt:alice".into(),
        crate::config::RulesConfig {
            tools: vec![crate::config::ToolOverride {
                tool: "t0a".into(),
                rename: None,
                description: None,
                fixed,
            }],
            ..Default::default()
        },
    ));
    let s = setup_with(vec![(a, fake("A", 1, false))]);
    // alice's own session: pinned.
    let sessions = Sessions::new(&SessionConfig {
        max: 4,
        max_per_client: 4,
        idle: Duration::from_secs(60),
        replay: Default::default(),
    });
    let init = Message::parse(br#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{}}"#)
        .expect("m");
    let ask = |sess: &Arc<Session>| {
        let text = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "a__t0a", "arguments": {"tenant": "bob"}}});
        let msg = Message::parse(text.to_string().as_bytes()).expect("message");
        match s.fed.forward(call(msg, Some(sess))) {
            Ok(Reply::Message(b)) => serde_json::from_slice::<Value>(&b).expect("JSON"),
            _ => panic!("one message"),
        }
    };
    let (b1, _) = s.fed.initialize(call(copy_of(&init), None)).expect("init");
    let alice = sessions
        .build(
            "2025-11-25".into(),
            b1,
            Some("jwt:alice".into()),
            "principal:jwt:alice".into(),
        )
        .expect("s");
    s.fed.attach(&alice);
    let r = ask(&alice);
    assert_eq!(r["result"]["args"]["tenant"], "alice");
    let (b2, _) = s.fed.initialize(call(init, None)).expect("init");
    let bridge = sessions
        .build("2025-11-25".into(), b2, None, "bridge".into())
        .expect("s");
    s.fed.attach(&bridge);
    // Whose call it is is unknown on the bridge's shared session: a tool some principal
    // sees differently is not there at all (not called without alice's pin).
    let r = ask(&bridge);
    assert_eq!(r["error"]["code"], -32602, "{r}");
}
