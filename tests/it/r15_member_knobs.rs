//! Issue #15, the last per-member knobs of federation, with the demo over stdio:
//! `[upstream.NAME.prompts.PROMPT]` (a prompt listed, fetched and completed under its new
//! name; the old name unknown) and a member's own `request-timeout` (its slow call answered
//! as a request past `--request-timeout` is, naming it, while another member's call in the
//! same session takes longer and works).

use serde_json::{Value, json};

use crate::support::*;

/// A request body.
fn req(id: u64, method: &str, params: Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string()
}

fn slow_echo(id: u64, tool: &str, ms: u64) -> String {
    req(
        id,
        "tools/call",
        json!({"name": tool, "arguments": {"message": "late", "delayMs": ms}}),
    )
}

#[test]
fn r15_member_prompt_renamed_and_a_member_request_timeout() {
    let dir = TempDir::new("r15-knobs");
    let file = dir.path().join("knobs.toml");
    std::fs::write(
        &file,
        format!(
            "request-timeout = \"20s\"\n\n[upstream.demo]\nstdio = \"{exe} demo-server\"\n\n\
             [upstream.demo.prompts.test_simple_prompt]\nname = \"simple\"\n\
             description = \"A renamed prompt.\"\n\n\
             [upstream.demo.prompts.test_prompt_with_arguments]\nname = \"with_args\"\n\n\
             [upstream.slow]\nstdio = \"{exe} demo-server\"\nrequest-timeout = \"1s\"\n",
            exe = exe()
        ),
    )
    .expect("write");
    let p = demo_proxy(&["--config", &file.to_string_lossy()]);
    let mut c = Conn::open(p.local_addr());
    let sid = c.initialize();

    // Listed under its new name with its new description; the old name is gone.
    let list = c
        .post(Some(&sid), &req(1, "prompts/list", json!({})))
        .json();
    let prompts = list["result"]["prompts"].as_array().expect("prompts");
    let names: Vec<&str> = prompts.iter().filter_map(|p| p["name"].as_str()).collect();
    assert!(names.contains(&"demo__with_args"), "{names:?}");
    assert!(
        names.contains(&"slow__test_simple_prompt"),
        "the other member's own"
    );
    assert!(!names.contains(&"demo__test_simple_prompt"), "{names:?}");
    let simple = prompts
        .iter()
        .find(|p| p["name"] == "demo__simple")
        .expect("demo__simple listed");
    assert_eq!(simple["description"], "A renamed prompt.");

    // Fetched by its new name; the old one is unknown.
    let got = c
        .post(
            Some(&sid),
            &req(2, "prompts/get", json!({"name": "demo__simple"})),
        )
        .json();
    assert_eq!(
        got["result"]["messages"][0]["content"]["text"], "This is a simple prompt for testing.",
        "{got}"
    );
    let old = c
        .post(
            Some(&sid),
            &req(
                3,
                "prompts/get",
                json!({"name": "demo__test_simple_prompt"}),
            ),
        )
        .json();
    assert_eq!(old["error"]["code"], -32602, "{old}");

    // Completed by its new name (`ref/prompt`); the old one is unknown.
    let complete = |id: u64, name: &str| {
        req(
            id,
            "completion/complete",
            json!({"ref": {"type": "ref/prompt", "name": name},
                "argument": {"name": "arg1", "value": "pa"}}),
        )
    };
    let done = c.post(Some(&sid), &complete(4, "demo__with_args")).json();
    assert_eq!(
        done["result"]["completion"]["values"],
        json!(["paris", "park", "party"]),
        "{done}"
    );
    let old = c
        .post(Some(&sid), &complete(5, "demo__test_prompt_with_arguments"))
        .json();
    assert_eq!(old["error"]["code"], -32602, "{old}");

    // The slow member's call ends at its own 1 s, as a timed-out stream ends: an error event
    // naming it. The demo's call in the same session takes longer and is answered.
    let r = c.post(Some(&sid), &slow_echo(6, "slow__slow_echo", 5000));
    assert_eq!(r.status, 200, "{}", r.text());
    let kind = r.header("content-type").map(str::to_owned);
    let timed_out = r.json();
    assert_eq!(timed_out["id"], 6, "{timed_out}");
    assert_eq!(timed_out["error"]["code"], -32603, "{timed_out}");
    let text = timed_out["error"]["message"].as_str().unwrap_or("");
    assert!(
        text.contains("request timed out") && text.contains("upstream slow"),
        "{timed_out}"
    );
    let r = c
        .post(Some(&sid), &slow_echo(7, "demo__slow_echo", 1500))
        .json();
    assert_eq!(r["result"]["content"][0]["text"], "Echo: late", "{r}");
    let r = c
        .post(Some(&sid), &slow_echo(8, "slow__slow_echo", 10))
        .json();
    assert_eq!(
        r["result"]["content"][0]["text"], "Echo: late",
        "the slow member still answers quick calls: {r}"
    );

    // The same call past a global request-timeout of 1 s: the same kind of answer.
    let global = dir.path().join("global.toml");
    std::fs::write(
        &global,
        format!(
            "request-timeout = \"1s\"\n[upstream.slow]\nstdio = \"{} demo-server\"\n",
            exe()
        ),
    )
    .expect("write");
    let g = demo_proxy(&["--config", &global.to_string_lossy()]);
    let mut c = Conn::open(g.local_addr());
    let sid = c.initialize();
    let r = c.post(Some(&sid), &slow_echo(6, "slow__slow_echo", 5000));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type").map(str::to_owned), kind);
    let global = r.json();
    assert_eq!(
        global["error"]["code"], timed_out["error"]["code"],
        "{global}"
    );
    assert_eq!(global["id"], 6, "{global}");
}
