//! Issue #15, federation: one endpoint in front of several named upstreams, from
//! `examples/federation.toml`: the demo over stdio (shared), server-everything over stdio
//! (per-session) and server-everything over Streamable HTTP, seen by the Python SDK: names,
//! calls, prompts, resources, sampling and elicitation, progress, a resource update on the
//! standalone stream, the 2026-07-28 era through the bridge, and an upstream that goes down
//! and comes back.

use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::support::*;

fn example() -> String {
    format!("{}/examples/federation.toml", env!("CARGO_MANIFEST_DIR"))
}

const TOKEN: &str = "federation-secret-0123456789";

/// What the example needs from the environment, `web` being server-everything's URL.
fn example_env(web: &str) -> Vec<(&'static str, String)> {
    vec![
        ("SHADOWCAT_EXE", exe().to_owned()),
        ("EVERYTHING_JS", everything_js()),
        ("EVERYTHING_URL", web.to_owned()),
        ("EXAMPLE_TOKEN", TOKEN.to_owned()),
    ]
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn echo(name: &str) -> Value {
    json!([name, {"message": "hello federation"}])
}

#[test]
fn r15_federation_three_upstreams_namespaced_then_one_down() {
    let (web, web_addr) = everything_http();
    let env = example_env(&format!("http://{web_addr}/mcp"));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (_proxy, addr) = spawn_proxy(&["--config", &example()], Stdio::null(), &env);
    let url = format!("http://{addr}/mcp");

    let plan = json!({
        "calls": [echo("demo__echo"), echo("ev__echo"), echo("web__echo"), echo("nope__echo"),
                  echo("echo"), echo("demo__wait_and_echo")],
        "prompts": [["ev__simple-prompt", {}], ["web__simple-prompt", {}]],
    });
    let out = run_py_args("federation.py", &url, &[&plan.to_string()]);
    let tools = strs(&out["tools"]);
    for want in ["demo__echo", "ev__echo", "web__echo"] {
        assert!(tools.iter().any(|t| t == want), "{want} in {tools:?}");
    }
    assert!(
        tools.iter().all(|t| t.contains("__")
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))),
        "every tool namespaced, in the spec's characters: {tools:?}"
    );
    for name in ["demo__echo", "ev__echo", "web__echo", "demo__wait_and_echo"] {
        let call = &out["calls"][name];
        assert_eq!(call["isError"], false, "{name}: {out}");
        assert!(
            call["text"]
                .as_str()
                .is_some_and(|t| t.contains("hello federation")),
            "{name}: {out}"
        );
    }
    for name in ["nope__echo", "echo"] {
        let e = out["calls"][name]["error"].as_str().unwrap_or_default();
        assert!(e.contains("-32602") && e.contains(name), "{name}: {out}");
    }
    for name in ["ev__simple-prompt", "web__simple-prompt"] {
        assert_eq!(out["gets"][name]["messages"], 1, "{name}: {out}");
    }
    let prompts = strs(&out["prompts"]);
    assert!(prompts.iter().all(|p| p.contains("__")), "{prompts:?}");
    let instructions = out["instructions"].as_str().unwrap_or_default();
    assert!(
        instructions.contains("## everything") && instructions.contains("## web"),
        "instructions under each upstream's name: {out}"
    );
    // Both server-everything instances list the same URIs: the first in the file (`ev`)
    // answers for them, and the list shows each URI once.
    let resources = strs(&out["resources"]);
    assert!(!resources.is_empty(), "{out}");
    let mut unique = resources.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), resources.len(), "no URI twice: {resources:?}");
    // The demo's `deny-resources` hides its binary resource (and its read is not found below).
    assert!(
        resources.iter().any(|r| r == "test://static-text"),
        "{resources:?}"
    );
    assert!(
        !resources.iter().any(|r| r == "test://static-binary"),
        "{resources:?}"
    );

    // The TypeScript SDK client: each upstream's echo and progress.
    for prefix in ["demo__", "ev__", "web__"] {
        let out = run_js_env(&url, &[("TOOL_PREFIX", prefix)]);
        assert_eq!(out["echo"], "Echo: hello from TS", "{prefix}: {out}");
        assert_eq!(
            out["progress"].as_array().map(Vec::len),
            Some(3),
            "{prefix}: {out}"
        );
    }

    // A 2026-07-28 client (auto mode) is served through the era bridge, over a federated
    // session of the proxy's own.
    let out = run_py_env("auto.py", &url, &[], &[("ECHO_TOOL", "web__echo")]);
    assert_eq!(out["era"], "modern", "{out}");
    assert_eq!(out["echo"], "Echo: hello through MCP", "{out}");

    // Every listed resource (the first few) reads through the member that listed it.
    let reads: Vec<&String> = resources.iter().take(4).collect();
    // Completions go where their prompt or template lives (a template's owner is learnt by
    // listing, here without the client listing first); a URI nobody has is not found.
    let plan = json!({
        "reads": reads.iter().map(|r| r.as_str()).chain(["nope://x", "test://static-binary"]).collect::<Vec<_>>(),
        "completions": [
            ["prompt", "ev__completable-prompt", "department", "E"],
            ["template", "demo://resource/dynamic/text/{resourceId}", "resourceId", "1"],
        ],
    });
    let out = run_py_args("federation.py", &url, &[&plan.to_string()]);
    assert_eq!(
        out["completions"]["ev__completable-prompt"]["values"],
        json!(["Engineering"]),
        "{out}"
    );
    assert_eq!(
        out["completions"]["demo://resource/dynamic/text/{resourceId}"]["values"],
        json!(["1"]),
        "{out}"
    );
    let missing = out["reads"]["nope://x"]["error"]
        .as_str()
        .unwrap_or_default();
    assert!(missing.contains("-32002"), "{out}");
    let denied = out["reads"]["test://static-binary"]["error"]
        .as_str()
        .unwrap_or_default();
    // Denied at the demo, the URI is asked of the other upstreams, which do not have it
    // (server-everything says so with its own -32602).
    assert!(
        denied.contains("not found"),
        "denied reads as not found: {out}"
    );
    for uri in &reads {
        assert!(
            out["reads"][uri.as_str()].get("error").is_none(),
            "{uri}: {out}"
        );
    }

    // Server to client: sampling requests from a per-session child and an HTTP upstream
    // reach this client and its answers go back; progress arrives; the demo's sampling and
    // elicitation (a shared child) too; what the demo sends outside requests (a resource
    // update) reaches the standalone stream.
    let out = run_py_args("federation_s2c.py", &url, &["ev__", "web__"]);
    assert_eq!(out["samplingRequests"], 4, "{out}");
    assert_eq!(out["together"], 2, "{out}");
    for prefix in ["ev__", "web__"] {
        assert_eq!(out[prefix]["progress"], 3, "{prefix}: {out}");
    }
    let out = run_py_args("sampling.py", &url, &["demo__"]);
    assert_eq!(out["sampling"]["requests"], 1, "{out}");
    assert_eq!(out["elicitation"]["requests"], 1, "{out}");
    let out = run_py("federation_notify.py", &url);
    assert_eq!(out["updated"][0], "test://watched-resource", "{out}");

    // Within one client session, the HTTP upstream goes down and comes back: a call names
    // it, list_changed arrives both times, its tools leave the list and return, and the
    // call works again (its session re-opened).
    let (pid, port) = (web.0.id().to_string(), web_addr.port().to_string());
    let out = run_py_args(
        "federation_updown.py",
        &url,
        &[&pid, &port, "node", &everything_js()],
    );
    assert!(out["before"].as_u64().unwrap_or(0) > 0, "{out}");
    assert!(
        out["downError"]
            .as_str()
            .is_some_and(|e| e.contains("upstream web")),
        "{out}"
    );
    assert_eq!(out["whileDown"], 0, "{out}");
    assert_eq!(out["after"], out["before"], "{out}");
    assert_eq!(out["echo"], "Echo: back", "{out}");
    assert!(out["changes"].as_u64().unwrap_or(0) >= 2, "{out}");

    // The HTTP upstream goes away (the driver stopped the one it started): its tools are absent, a call to it names it, the others
    // keep working.
    drop(web);
    let plan = json!({ "calls": [echo("web__echo"), echo("demo__echo"), echo("ev__echo")] });
    let out = run_py_args("federation.py", &url, &[&plan.to_string()]);
    let tools = strs(&out["tools"]);
    assert!(!tools.iter().any(|t| t.starts_with("web__")), "{tools:?}");
    assert!(tools.iter().any(|t| t == "ev__echo"), "{tools:?}");
    let e = out["calls"]["web__echo"]["error"]
        .as_str()
        .unwrap_or_default();
    assert!(e.contains("upstream web"), "{out}");
    for name in ["demo__echo", "ev__echo"] {
        assert_eq!(out["calls"][name]["isError"], false, "{name}: {out}");
    }
}

#[test]
fn r15_federation_check_config_shows_members_and_names_bad_lines() {
    let env = example_env("http://127.0.0.1:9/mcp");
    let out = Command::new(exe())
        .args(["check-config", &example()])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(v["upstream"]["kind"], "federated", "{v}");
    assert_eq!(v["upstream"]["nameSeparator"], "__");
    let members = v["upstream"]["members"].as_array().expect("members");
    assert_eq!(members[0]["tools"][0]["rename"], "wait_and_echo", "{v}");
    assert_eq!(
        members[0]["tools"][0]["fixedArguments"],
        json!(["delayMs"]),
        "{v}"
    );
    assert_eq!(
        members[0]["prompts"][0]["prompt"], "test_simple_prompt",
        "{v}"
    );
    assert_eq!(members[0]["prompts"][0]["rename"], "simple", "{v}");
    assert_eq!(members[2]["requestTimeoutSeconds"], 20.0, "{v}");
    assert!(members[1].get("requestTimeoutSeconds").is_none(), "{v}");
    let names: Vec<&str> = members.iter().filter_map(|m| m["name"].as_str()).collect();
    assert_eq!(names, ["demo", "everything", "web"]);
    assert_eq!(members[1]["prefix"], "ev");
    assert_eq!(members[1]["upstream"]["mode"], "per-session");
    assert_eq!(members[2]["upstream"]["kind"], "http");
    assert_eq!(
        members[2]["upstreamHeaders"]["x-example-token"],
        "<redacted>"
    );
    assert!(!text.contains(TOKEN), "a secret printed: {text}");

    let dir = TempDir::new("r15fed");
    let bad = dir.path().join("bad.toml");
    let cases = [
        (
            "[upstream.a]\nstdio = \"cat\"\n\n[upstream.b]\nurl = \"http://127.0.0.1:1/mcp\"\nprefx = \"b\"\n",
            "bad.toml:6: unknown key `prefx` in [upstream.b]",
        ),
        (
            "[upstream.a]\nstdio = \"cat\"\n\n[upstream.b]\nstdio = \"cat\"\nprefix = \"a\"\n",
            "bad.toml:4: prefix \"a\" is also upstream a's",
        ),
        (
            "bind = \"127.0.0.1:0\"\n[upstream.a]\nstdio-mode = \"shared\"\n",
            "bad.toml:2: [upstream.a] needs",
        ),
    ];
    for (text, want) in cases {
        std::fs::write(&bad, text).expect("w");
        let out = Command::new(exe())
            .arg("check-config")
            .arg(&bad)
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(2), "{text}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{text}: {err}");
    }
}

const ALICE: &str = "alice-token-0123456789abcdef";
const BOB: &str = "bob-token-0123456789abcdef";

/// POSTs `body` as the holder of `token`, within `sid` if given; the JSON-RPC answer.
fn rpc(addr: std::net::SocketAddr, token: &str, sid: Option<&str>, body: &str) -> (Resp, Value) {
    let auth = format!("Bearer {token}");
    let r = post_with(addr, &[("Authorization", &auth)], sid, body);
    let v = r.messages().last().cloned().unwrap_or(Value::Null);
    (r, v)
}

#[test]
fn r15_federation_policy_per_principal() {
    let dir = TempDir::new("r15fed-policy");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("{ALICE} alice\n{BOB} bob\n")).expect("w");
    let file = dir.path().join("policy.toml");
    // Everyone sees the demo's echo; alice every tool but crash; bob only test_simple_text.
    std::fs::write(
        &file,
        format!(
            "auth-tokens = \"{}\"\n\n[upstream.demo]\nstdio = \"{} demo-server\"\n\
             allow = [\"echo\"]\n\n[upstream.demo.principal.\"token:alice\"]\nallow = [\"*\"]\n\
             deny = [\"crash\", \"e?it\"]\n\n[upstream.demo.principal.\"token:bob\"]\n\
             allow = [\"test_simple_*\"]\n",
            tokens.display(),
            exe()
        ),
    )
    .expect("w");
    let admin = format!("127.0.0.1:{}", free_port());
    let (_p, addr) = spawn_proxy(
        &["--config", &file.to_string_lossy(), "--admin-bind", &admin],
        Stdio::null(),
        &[],
    );
    // The admin API shows each upstream of the federation, and restarts one by its name.
    let admin: std::net::SocketAddr = admin.parse().expect("addr");
    let shown = get(admin, "/admin/upstreams", &[]).json();
    assert_eq!(shown[0]["kind"], "federated", "{shown}");
    assert_eq!(shown[0]["members"][0]["member"], "demo", "{shown}");
    assert_eq!(shown[0]["members"][0]["down"], false, "{shown}");
    assert_eq!(shown[0]["members"][0]["kind"], "stdio", "{shown}");
    let r = Conn::open(admin).request(
        "POST",
        "/admin/upstreams/demo/restart",
        &JSON_HEADERS,
        b"{}",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = Conn::open(admin).request(
        "POST",
        "/admin/upstreams/nope/restart",
        &JSON_HEADERS,
        b"{}",
    );
    assert_eq!(r.status, 404, "{}", r.text());
    let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    let call = |name: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"name":"{name}","arguments":{{"message":"hi"}}}}}}"#
        )
    };
    for (token, sees, refused) in [
        (
            ALICE,
            vec![
                "demo__echo",
                "demo__test_image_content",
                "demo__test_simple_text",
            ],
            vec!["demo__crash", "demo__exit"],
        ),
        (
            BOB,
            vec!["demo__test_simple_text"],
            vec!["demo__echo", "demo__crash"],
        ),
    ] {
        let (r, _) = rpc(addr, token, None, INIT);
        assert_eq!(r.status, 200, "{}", r.text());
        let sid = r.header("mcp-session-id").expect("session").to_owned();
        let (_, v) = rpc(addr, token, Some(&sid), list);
        let names: Vec<&str> = v["result"]["tools"]
            .as_array()
            .expect("tools")
            .iter()
            .filter_map(|t| t["name"].as_str())
            .collect();
        for want in &sees {
            assert!(names.contains(want), "{want} in {names:?}");
            let (_, v) = rpc(addr, token, Some(&sid), &call(want));
            assert!(v.get("result").is_some(), "{want}: {v}");
        }
        for hidden in &refused {
            assert!(!names.contains(hidden), "{hidden} hidden: {names:?}");
            let (_, v) = rpc(addr, token, Some(&sid), &call(hidden));
            assert_eq!(
                v["error"]["code"], -32602,
                "{hidden} refused as unknown: {v}"
            );
        }
    }
}

/// Policy by JWT scope: `[upstream.NAME.principal."scope:admin"]` applies to every JWT with
/// that scope (whose principal has no table of its own); other tokens get the table's rules.
#[test]
fn r15_federation_policy_by_jwt_scope() {
    let dir = TempDir::new("r15fed-scope");
    let secret = "r15-secret-0123456789abcdef";
    let key = dir.path().join("secret");
    std::fs::write(&key, secret).expect("w");
    let resource = "https://mcp.example.com/mcp";
    let file = dir.path().join("scope.toml");
    std::fs::write(
        &file,
        format!(
            "auth-jwt = true\njwt-secret-file = \"{}\"\nresource-url = \"{resource}\"\n\n\
             [upstream.demo]\nstdio = \"{} demo-server\"\nallow = [\"echo\"]\n\n\
             [upstream.demo.principal.\"scope:admin\"]\nallow = [\"echo\", \"test_simple_*\"]\n",
            key.display(),
            exe()
        ),
    )
    .expect("w");
    let p = demo_proxy(&["--config", &file.to_string_lossy()]);
    shadowcat::internals::install_jwt_crypto();
    let token = |sub: &str, scope: &str| {
        let claims = json!({"sub": sub, "aud": resource, "scope": scope,
            "exp": jsonwebtoken::get_current_timestamp() + 300});
        let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
        let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        jsonwebtoken::encode(&header, &claims, &key).expect("jwt")
    };
    let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    let simple = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"demo__test_simple_text","arguments":{}}}"#;
    for (who, scope, sees_simple) in [("ann", "read admin", true), ("ben", "read", false)] {
        let t = token(who, scope);
        let (r, _) = rpc(p.local_addr(), &t, None, INIT);
        assert_eq!(r.status, 200, "{}", r.text());
        let sid = r.header("mcp-session-id").expect("session").to_owned();
        let (_, v) = rpc(p.local_addr(), &t, Some(&sid), list);
        let names: Vec<&str> = v["result"]["tools"]
            .as_array()
            .expect("tools")
            .iter()
            .filter_map(|t| t["name"].as_str())
            .collect();
        assert!(names.contains(&"demo__echo"), "{who}: {names:?}");
        assert_eq!(
            names.contains(&"demo__test_simple_text"),
            sees_simple,
            "{who}: {names:?}"
        );
        // The same principal with other scopes is another caller: the session is not its.
        let (r, _) = rpc(p.local_addr(), &token(who, "other"), Some(&sid), list);
        assert_eq!(r.status, 404, "{who}: {}", r.text());
        let (_, v) = rpc(p.local_addr(), &t, Some(&sid), simple);
        if sees_simple {
            assert!(v.get("result").is_some(), "{who}: {v}");
        } else {
            assert_eq!(v["error"]["code"], -32602, "{who}: refused as unknown: {v}");
        }
    }
}

/// Conformance 0.1.16 (active server suite) through a federation of one upstream, the demo,
/// with `prefix = ""`: the federation is transparent, every scenario passes as in front of
/// the demo alone (`conformance::conformance_demo_stdio_shared`).
#[test]
fn r15_federation_conformance_one_upstream_without_prefix() {
    let dir = TempDir::new("r15fed-conformance");
    let file = dir.path().join("one.toml");
    std::fs::write(
        &file,
        format!(
            "[upstream.demo]\nstdio = \"{} demo-server\"\nprefix = \"\"\n",
            exe()
        ),
    )
    .expect("w");
    let p = demo_proxy(&["--config", &file.to_string_lossy()]);
    let out = crate::conformance::run_conformance(
        &format!("http://{}/mcp", p.local_addr()),
        &dir.path().join("out"),
    );
    let failed: Vec<String> = out
        .iter()
        .filter_map(|(name, r)| r.as_ref().err().map(|why| format!("{name}: {why}")))
        .collect();
    assert!(
        failed.is_empty() && out.len() == 30,
        "{}/30 ran, failing:\n{}",
        out.len(),
        failed.join("\n")
    );
}

/// Conformance 0.2.0-alpha.12 (2026-07-28 and 2025-11-25 requirement sets) through a
/// federation of the demo alone (`prefix = ""`) passes what the flag form passes, except the
/// input-required fixtures only the dual demo's own 2026-07-28 side has (a federation is
/// bridged to the demo's session-era side).
#[test]
fn r15_federation_conformance26_same_as_the_flag_form() {
    use crate::conformance26::{SCORED_2026, SERIAL, SET_2025};
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new("r15fed-conformance26");
    let demo = format!("{} demo-server --era dual", exe());
    let file = dir.path().join("one.toml");
    std::fs::write(
        &file,
        format!("[upstream.demo]\nstdio = \"{demo}\"\nprefix = \"\"\n"),
    )
    .expect("w");
    let file = file.to_string_lossy().into_owned();
    let mut counts = Vec::new();
    for (label, flags) in [
        ("flags", vec!["--stdio", demo.as_str()]),
        ("federation", vec!["--config", file.as_str()]),
    ] {
        let mut flags = flags;
        flags.extend(["--input-timeout", "3s"]);
        let p = demo_proxy(&flags);
        let url = format!("http://{}/mcp", p.local_addr());
        let out26 = run_requirements(
            &url,
            "2026-07-28",
            &dir.path().join(label).join("26"),
            &SCORED_2026,
        );
        let out25 = run_requirements(
            &url,
            "2025-11-25",
            &dir.path().join(label).join("25"),
            &SET_2025,
        );
        counts.push((
            label,
            passing_of(&out26, &SCORED_2026),
            passing_of(&out25, &SET_2025),
        ));
    }
    let (flags, federation) = (&counts[0], &counts[1]);
    eprintln!(
        "conformance 0.2: flags {}/37 + {}/33, federation {}/37 + {}/33",
        flags.1.len(),
        flags.2.len(),
        federation.1.len(),
        federation.2.len()
    );
    // The flag form reaches the dual demo's own 2026-07-28 side (it does MRTR itself); a
    // federation is a session-era upstream to the era bridge, so 2026-07-28 requests reach the
    // demo's session-era side, which has no input-required fixtures of its own (the legacy era
    // has them). Everything else passes alike.
    let native_only = [
        "input-required-result-basic-elicitation",
        "input-required-result-basic-list-roots",
        "input-required-result-basic-sampling",
        "input-required-result-multi-round",
        "input-required-result-multiple-input-requests",
        "input-required-result-non-tool-request",
        "input-required-result-request-state",
    ];
    let missing: Vec<_> = flags
        .1
        .difference(&federation.1)
        .filter(|s| !native_only.contains(&s.as_str()))
        .collect();
    assert!(missing.is_empty(), "2026-07-28 scenarios lost: {missing:?}");
    assert_eq!(flags.2, federation.2, "2025-11-25 scenarios passing");
}

/// `[upstream.NAME.tools.TOOL]`: a renamed tool with its own description and a fixed argument
/// (gone from its schema, set on every call); its old name is unknown.
#[test]
fn r15_federation_tool_renamed_described_and_fixed() {
    let dir = TempDir::new("r15fed-tools");
    let file = dir.path().join("tools.toml");
    std::fs::write(
        &file,
        format!(
            "[upstream.demo]\nstdio = \"{} demo-server\"\n\n[upstream.demo.tools.echo]\n\
             name = \"say\"\ndescription = \"Says the fixed words.\"\n\
             arguments = {{ message = \"fixed words\" }}\n",
            exe()
        ),
    )
    .expect("w");
    let p = demo_proxy(&["--config", &file.to_string_lossy()]);
    let mut c = Conn::open(p.local_addr());
    let sid = c.initialize();
    let list = c
        .post(
            Some(&sid),
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
        )
        .json();
    let tools = list["result"]["tools"].as_array().expect("tools");
    assert!(
        !tools.iter().any(|t| t["name"] == "demo__echo"),
        "old name hidden"
    );
    let say = tools
        .iter()
        .find(|t| t["name"] == "demo__say")
        .expect("demo__say listed");
    assert_eq!(say["description"], "Says the fixed words.");
    assert!(
        say["inputSchema"]["properties"].get("message").is_none(),
        "{say}"
    );
    let r = c
        .post(
            Some(&sid),
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"demo__say","arguments":{"message":"mine"}}}"#,
        )
        .json();
    assert_eq!(
        r["result"]["content"][0]["text"], "Echo: fixed words",
        "{r}"
    );
    let r = c
        .post(
            Some(&sid),
            r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"demo__echo","arguments":{"message":"x"}}}"#,
        )
        .json();
    assert_eq!(r["error"]["code"], -32602, "{r}");
}

/// The list cache (issue #15's performance note): a second `tools/list` of a session is
/// answered without asking the member again; the member's `notifications/tools/list_changed`
/// makes the next one ask again; each principal's policy still applies to the cached page.
/// The member is the demo (`--era legacy`, which has the list-change triggers) behind `tee`,
/// so every line the proxy sends it is counted.
#[test]
fn r15_federation_list_cache_filled_then_invalidated_by_list_changed() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("r15fed-cache");
    let seen = dir.path().join("to-member.jsonl");
    let wrapper = dir.path().join("demo.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\ntee -a '{}' | '{}' demo-server --era legacy\n",
            seen.display(),
            exe()
        ),
    )
    .expect("w");
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("{ALICE} alice\n{BOB} bob\n")).expect("w");
    let file = dir.path().join("cache.toml");
    std::fs::write(
        &file,
        format!(
            "auth-tokens = \"{}\"\n\n[upstream.demo]\nstdio = \"{}\"\n\
             [upstream.demo.principal.\"token:bob\"]\nallow = [\"echo\"]\n",
            tokens.display(),
            wrapper.display()
        ),
    )
    .expect("w");
    let (_p, addr) = spawn_proxy(&["--config", &file.to_string_lossy()], Stdio::null(), &[]);
    let lists_asked = || {
        std::fs::read_to_string(&seen)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(r#""method":"tools/list""#))
            .count()
    };
    let names = |v: &Value| -> Vec<String> {
        v["result"]["tools"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    let init = |token: &str| {
        let (r, _) = rpc(addr, token, None, INIT);
        assert_eq!(r.status, 200, "{}", r.text());
        r.header("mcp-session-id").expect("session").to_owned()
    };

    let alice = init(ALICE);
    let before = lists_asked();
    let (_, first) = rpc(addr, ALICE, Some(&alice), list);
    assert!(names(&first).len() > 1, "{first}");
    assert_eq!(lists_asked(), before + 1, "the first list asks the member");
    let (_, second) = rpc(addr, ALICE, Some(&alice), list);
    assert_eq!(names(&second), names(&first));
    assert_eq!(
        lists_asked(),
        before + 1,
        "the second is answered from the cache"
    );

    // The member's list_changed (sent before the call's answer) makes the next list ask.
    let change = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"demo__test_trigger_tool_change","arguments":{}}}"#;
    let (_, v) = rpc(addr, ALICE, Some(&alice), change);
    assert!(v.get("result").is_some(), "{v}");
    let (_, third) = rpc(addr, ALICE, Some(&alice), list);
    assert_eq!(names(&third), names(&first));
    assert_eq!(lists_asked(), before + 2, "asked again after list_changed");
    rpc(addr, ALICE, Some(&alice), list);
    assert_eq!(lists_asked(), before + 2);

    // Another session has its own cache, and its principal's policy filters the page.
    let bob = init(BOB);
    for _ in 0..2 {
        let (_, v) = rpc(addr, BOB, Some(&bob), list);
        assert_eq!(names(&v), vec!["demo__echo".to_owned()], "{v}");
    }
    assert_eq!(lists_asked(), before + 3, "bob's session asked once");
}
