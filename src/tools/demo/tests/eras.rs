//! `--era modern` (2026-07-28 only: `_meta` validation, MRTR, `subscriptions/listen`, per-request
//! logging) and `--era legacy` (session era only, the same fixtures as server→client requests).

use super::*;

fn start(era: ServerEra) -> Peer {
    Peer::start_with(Options {
        era,
        ..Options::default()
    })
}

fn meta(caps: Value) -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": MODERN_VERSION,
        "io.modelcontextprotocol/clientCapabilities": caps,
    })
}

fn all_caps() -> Value {
    json!({"sampling": {}, "elicitation": {}, "roots": {}})
}

fn modern_call(peer: &mut Peer, id: u64, name: &str, extra: Value) -> Value {
    let mut params = json!({"name": name, "arguments": {}, "_meta": meta(all_caps())});
    if let (Some(p), Value::Object(extra)) = (params.as_object_mut(), extra) {
        p.extend(extra);
    }
    peer.call(id, "tools/call", params)
}

#[test]
fn modern_validates_meta_and_refuses_the_session_era() {
    let mut peer = start(ServerEra::Modern);
    let init = peer.call(1, "initialize", json!({"protocolVersion": "2025-11-25"}));
    assert_eq!(init["error"]["code"], METHOD_NOT_FOUND);
    assert_eq!(init["error"]["data"]["supported"], json!([MODERN_VERSION]));
    for params in [
        json!({}),
        json!({"_meta": {"io.modelcontextprotocol/clientCapabilities": {}}}),
        json!({"_meta": {"io.modelcontextprotocol/protocolVersion": MODERN_VERSION}}),
    ] {
        let reply = peer.call(2, "server/discover", params);
        assert_eq!(reply["error"]["code"], INVALID_PARAMS, "{reply}");
    }
    let old = json!({"_meta": {"io.modelcontextprotocol/protocolVersion": "2025-11-25",
        "io.modelcontextprotocol/clientCapabilities": {}}});
    let reply = peer.call(3, "tools/list", old);
    assert_eq!(reply["error"]["code"], UNSUPPORTED_VERSION);
    assert_eq!(reply["error"]["data"]["supported"], json!([MODERN_VERSION]));
    let discover = peer.call(4, "server/discover", json!({"_meta": meta(json!({}))}));
    assert_eq!(
        discover["result"]["supportedVersions"],
        json!([MODERN_VERSION])
    );
    for removed in ["ping", "logging/setLevel", "resources/subscribe"] {
        let reply = peer.call(5, removed, json!({"_meta": meta(json!({}))}));
        assert_eq!(reply["error"]["code"], METHOD_NOT_FOUND, "{removed}");
    }
    let tools = peer.call(6, "tools/list", json!({"_meta": meta(json!({}))}));
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    for name in [
        "test_missing_capability",
        "test_logging_tool",
        "test_input_required_result_multi_round",
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    peer.close();
}

#[test]
fn modern_mrtr_rounds_state_and_capabilities() {
    let mut peer = start(ServerEra::Modern);
    let r1 = modern_call(
        &mut peer,
        1,
        "test_input_required_result_multi_round",
        json!({}),
    );
    assert_eq!(r1["result"]["resultType"], "input_required", "{r1}");
    assert_eq!(
        r1["result"]["inputRequests"]["step1"]["method"],
        "elicitation/create"
    );
    let state1 = r1["result"]["requestState"].clone();
    let answer = |content: Value| json!({"action": "accept", "content": content});
    let r2 = modern_call(
        &mut peer,
        2,
        "test_input_required_result_multi_round",
        json!({
            "requestState": state1, "inputResponses": {"step1": answer(json!({"name": "Ann"}))},
        }),
    );
    assert!(r2["result"]["inputRequests"]["step2"].is_object(), "{r2}");
    assert_ne!(r2["result"]["requestState"], state1);
    let r3 = modern_call(
        &mut peer,
        3,
        "test_input_required_result_multi_round",
        json!({
            "requestState": r2["result"]["requestState"],
            "inputResponses": {"step2": answer(json!({"color": "blue"}))},
        }),
    );
    assert_eq!(r3["result"]["resultType"], "complete");
    assert_eq!(text(&r3), "name=Ann, color=blue");

    // A tampered state is an error and nothing completes.
    let tampered = format!("{}-TAMPERED", state1.as_str().expect("state"));
    let bad = modern_call(
        &mut peer,
        4,
        "test_input_required_result_tampered_state",
        json!({
            "requestState": tampered, "inputResponses": {"confirm": answer(json!({"ok": true}))},
        }),
    );
    assert_eq!(bad["error"]["code"], INVALID_PARAMS, "{bad}");
    // Another fixture's state is refused too.
    let foreign = modern_call(
        &mut peer,
        5,
        "test_input_required_result_request_state",
        json!({
            "requestState": state1, "inputResponses": {"confirm": answer(json!({"ok": true}))},
        }),
    );
    assert_eq!(foreign["error"]["code"], INVALID_PARAMS, "{foreign}");

    // Wrong keys re-request; a non-object answer or null inputResponses is an error.
    let again = modern_call(
        &mut peer,
        6,
        "test_input_required_result_elicitation",
        json!({"inputResponses": {"wrong_key": answer(json!({}))}}),
    );
    assert_eq!(again["result"]["resultType"], "input_required");
    for bad in [json!({"user_name": 12345}), Value::Null] {
        let reply = modern_call(
            &mut peer,
            7,
            "test_input_required_result_elicitation",
            json!({"inputResponses": bad}),
        );
        assert_eq!(reply["error"]["code"], INVALID_PARAMS, "{reply}");
    }
    let done = modern_call(
        &mut peer,
        8,
        "test_input_required_result_elicitation",
        json!({"inputResponses": {"user_name": answer(json!({"name": "Alice"})), "extra": 1}}),
    );
    assert_eq!(text(&done), "Hello, Alice!");

    // Only declared capabilities are asked for; none at all is -32021.
    let params = json!({"name": "test_input_required_result_capabilities", "arguments": {},
        "_meta": meta(json!({"sampling": {}}))});
    let only = peer.call(9, "tools/call", params);
    let keys: Vec<&String> = only["result"]["inputRequests"]
        .as_object()
        .expect("map")
        .keys()
        .collect();
    assert_eq!(keys, ["capital_question"]);
    let params =
        json!({"name": "test_missing_capability", "arguments": {}, "_meta": meta(json!({}))});
    let missing = peer.call(10, "tools/call", params);
    assert_eq!(missing["error"]["code"], MISSING_CAPABILITY);
    assert_eq!(
        missing["error"]["data"]["requiredCapabilities"],
        json!({"sampling": {}})
    );

    // The legacy fixtures become MRTR, and so does the prompt.
    let sampled = modern_call(
        &mut peer,
        11,
        "test_sampling",
        json!({"arguments": {"prompt": "p"}}),
    );
    let request = &sampled["result"]["inputRequests"]["sampling"];
    assert_eq!(request["method"], "sampling/createMessage");
    let params = json!({"name": "test_input_required_result_prompt", "_meta": meta(all_caps())});
    let prompt = peer.call(12, "prompts/get", params);
    assert!(
        prompt["result"]["inputRequests"]["user_context"].is_object(),
        "{prompt}"
    );
    peer.close();
}

#[test]
fn modern_logs_only_with_a_request_log_level() {
    let mut peer = start(ServerEra::Modern);
    let reply = modern_call(&mut peer, 1, "test_logging_tool", json!({}));
    assert_eq!(
        text(&reply),
        "Logging tool completed",
        "no log before the answer"
    );
    let mut m = meta(json!({}));
    m["io.modelcontextprotocol/logLevel"] = json!("info");
    let params = json!({"name": "test_logging_tool", "arguments": {}, "_meta": m});
    peer.send(&request(2, "tools/call", params));
    for _ in 0..3 {
        assert_eq!(peer.recv()["method"], "notifications/message");
    }
    assert_eq!(peer.recv()["id"], 2);
    m["io.modelcontextprotocol/logLevel"] = json!("error");
    let params = json!({"name": "test_logging_tool", "arguments": {}, "_meta": m});
    assert_eq!(
        peer.call(3, "tools/call", params)["id"],
        3,
        "info logs filtered at error"
    );
    peer.close();
}

#[test]
fn modern_listen_acknowledges_filters_tags_and_cancels() {
    let mut peer = start(ServerEra::Modern);
    let filter = json!({"toolsListChanged": true, "resourceSubscriptions": [WATCHED_URI]});
    let ack = peer.call(
        7,
        "subscriptions/listen",
        json!({"_meta": meta(json!({})), "notifications": filter}),
    );
    assert_eq!(ack["method"], "notifications/subscriptions/acknowledged");
    assert_eq!(
        ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        7
    );
    assert_eq!(ack["params"]["notifications"], filter);
    let tagged =
        |note: &Value| note["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"].clone();

    peer.send(&request(
        8,
        "tools/call",
        json!({"name": "test_trigger_prompt_change", "arguments": {}, "_meta": meta(json!({}))}),
    ));
    assert_eq!(peer.recv()["id"], 8, "prompts were not asked for");
    peer.send(&request(
        9,
        "tools/call",
        json!({"name": "test_trigger_tool_change", "arguments": {}, "_meta": meta(json!({}))}),
    ));
    let note = peer.recv();
    assert_eq!(note["method"], "notifications/tools/list_changed");
    assert_eq!(tagged(&note), 7);
    assert_eq!(peer.recv()["id"], 9);
    peer.send(&request(
        10,
        "tools/call",
        json!({"name": "update_watched", "arguments": {"content": "x"}, "_meta": meta(json!({}))}),
    ));
    let note = peer.recv();
    assert_eq!(note["method"], "notifications/resources/updated");
    assert_eq!(note["params"]["uri"], WATCHED_URI);
    assert_eq!(tagged(&note), 7);
    assert_eq!(peer.recv()["id"], 10);

    peer.send(r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":7}}"#);
    peer.send(&request(
        11,
        "tools/call",
        json!({"name": "test_trigger_tool_change", "arguments": {}, "_meta": meta(json!({}))}),
    ));
    assert_eq!(peer.recv()["id"], 11, "a cancelled listener hears nothing");
    peer.close();
}

#[test]
fn legacy_needs_initialize_and_asks_the_client() {
    let mut peer = start(ServerEra::Legacy);
    let early = peer.call(1, "tools/list", json!({}));
    assert_eq!(early["error"]["code"], INVALID_REQUEST);
    let discover = peer.call(2, "server/discover", json!({"_meta": meta(json!({}))}));
    assert_eq!(discover["error"]["code"], METHOD_NOT_FOUND);
    let init = json!({"protocolVersion": "2025-11-25", "capabilities": all_caps()});
    assert_eq!(
        peer.call(3, "initialize", init)["result"]["protocolVersion"],
        "2025-11-25"
    );
    // A modern _meta is ignored: a legacy-shaped result.
    let list = peer.call(4, "tools/list", json!({"_meta": meta(json!({}))}));
    assert!(list["result"].get("resultType").is_none());

    peer.send(&tool_call(
        5,
        "test_input_required_result_multiple_inputs",
        json!({}),
    ));
    let mut answers = Vec::new();
    for (answer, method) in [
        (
            json!({"action": "accept", "content": {"name": "Bo"}}),
            "elicitation/create",
        ),
        (
            json!({"role": "assistant", "content": {"type": "text", "text": "hi"}}),
            "sampling/createMessage",
        ),
        (json!({"roots": [{"uri": "file:///r"}]}), "roots/list"),
    ] {
        let ask = peer.recv();
        assert_eq!(ask["method"], method);
        answers.push(ask["id"].clone());
        peer.send(&json!({"jsonrpc": "2.0", "id": ask["id"], "result": answer}).to_string());
    }
    let done = peer.recv();
    assert_eq!(done["id"], 5);
    assert_eq!(text(&done), "name=Bo, greeting=hi, roots=file:///r");

    peer.send(&request(
        6,
        "tools/call",
        json!({"name": "test_trigger_tool_change", "arguments": {}}),
    ));
    assert_eq!(peer.recv()["method"], "notifications/tools/list_changed");
    assert_eq!(peer.recv()["id"], 6);
    peer.close();
}
