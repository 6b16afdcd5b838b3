//! Issue #15, reload: `SIGHUP` and `POST /admin/reload` read the `--config` file again.
//! Members are added, removed, replaced (rolling) or updated in place while clients call; an
//! invalid file is refused and the old configuration keeps serving; a policy-only change
//! keeps the children. Members are the built-in demo server (fast to start), so each test
//! stays well under 30 s; the issue's "reload under load" runs 8 Python SDK clients.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

const CALL: &str = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"NAME","arguments":{"message":"hi"}}}"#;

/// A config file of `members` (`[upstream.NAME]` bodies) with `top` keys above them.
fn config(top: &str, members: &[(&str, &str)]) -> String {
    let mut text = format!("request-timeout = \"10s\"\n{top}\n");
    for (name, body) in members {
        text.push_str(&format!(
            "[upstream.{name}]\nstdio = \"{} demo-server\"\n{body}\n",
            exe()
        ));
    }
    text
}

/// The proxy with `file` as its `--config` and an admin listener.
fn start(file: &std::path::Path) -> (Peer, SocketAddr, SocketAddr) {
    let admin: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let (peer, addr) = spawn_proxy(
        &[
            "--config",
            &file.to_string_lossy(),
            "--admin-bind",
            &admin.to_string(),
        ],
        Stdio::null(),
        &[],
    );
    wait_listening(admin);
    (peer, addr, admin)
}

fn reload(admin: SocketAddr) -> Resp {
    Conn::open(admin).request(
        "POST",
        "/admin/reload",
        &[("Content-Type", "application/json")],
        b"{}",
    )
}

/// Each member's child pids, by member name, from `/admin/upstreams`.
fn pids(admin: SocketAddr) -> Vec<(String, Vec<u64>)> {
    let ups = get(admin, "/admin/upstreams", &[]).json();
    ups[0]["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter(|m| m["draining"] == false)
        .map(|m| {
            let pids = m["children"]
                .as_array()
                .expect("children")
                .iter()
                .filter_map(|c| c["pid"].as_u64())
                .collect();
            (m["member"].as_str().unwrap_or_default().to_owned(), pids)
        })
        .collect()
}

fn call(addr: SocketAddr, sid: &str, name: &str) -> Value {
    post(addr, Some(sid), &CALL.replace("NAME", name)).json()
}

fn reloads(addr: SocketAddr, result: &str) -> String {
    let text = get(addr, "/metrics", &[]).text();
    let line = format!("shadowcat_config_reloads_total{{result=\"{result}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&line))
        .unwrap_or("absent")
        .to_owned()
}

/// The issue's "Reload under load", scaled to 8 clients × (3 rounds before, 5 after) of two
/// calls (the replaced member's take 100 ms, so some are in flight when it is swapped and
/// must finish on it while it drains): zero failed calls on the unchanged member (and on the
/// replaced one), the added
/// member's tools appear after `tools/list_changed`, the removed member's name gets a clear
/// `-32602`, and the unchanged member keeps its children.
#[test]
fn r15_reload_under_load_sighup_adds_removes_and_replaces() {
    let dir = TempDir::new("reload-load");
    let file = dir.path().join("shadowcat.toml");
    let next = dir.path().join("next.toml");
    std::fs::write(
        &file,
        config(
            "",
            &[("keep", ""), ("change", "stdio-children = 1"), ("gone", "")],
        ),
    )
    .expect("write");
    std::fs::write(
        &next,
        config(
            "",
            &[("keep", ""), ("change", "stdio-children = 2"), ("add", "")],
        ),
    )
    .expect("write");
    let (proxy, addr, admin) = start(&file);
    let before = pids(admin);
    let pid = proxy.0.id().to_string();
    let url = format!("http://{addr}/mcp");
    let out = run_py_args(
        "federation_reload.py",
        &url,
        &[&file.to_string_lossy(), &next.to_string_lossy(), &pid],
    );
    let keep = &out["calls"]["keep"];
    assert_eq!(keep["failed"], json!([]), "unchanged member: {out}");
    assert!(keep["ok"].as_u64() >= Some(8 * 8), "{out}");
    assert_eq!(
        out["calls"]["change"]["failed"],
        json!([]),
        "replaced member: {out}"
    );
    assert_eq!(out["watcherToldBeforeTheEnd"], true, "{out}");
    assert_eq!(out["listChanged"], 9, "every session was told: {out}");
    let tools: Vec<&str> = out["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(tools.contains(&"add__echo"), "{tools:?}");
    assert!(tools.contains(&"change__echo"), "{tools:?}");
    assert!(!tools.iter().any(|t| t.starts_with("gone__")), "{tools:?}");
    assert_eq!(out["added"], "Echo: added", "{out}");
    let removed = out["removed"].as_str().unwrap_or_default();
    assert!(
        removed.contains("-32602") && removed.contains("upstream gone was removed"),
        "{out}"
    );
    let after = pids(admin);
    let of =
        |v: &[(String, Vec<u64>)], n: &str| v.iter().find(|(m, _)| m == n).map(|(_, p)| p.clone());
    assert_eq!(of(&before, "keep"), of(&after, "keep"), "the same children");
    assert_eq!(of(&after, "change").map(|p| p.len()), Some(2), "{after:?}");
    assert!(of(&after, "gone").is_none(), "{after:?}");
    assert_eq!(reloads(addr, "ok"), "1");
    let shown = get(admin, "/admin/config", &[]).json();
    let names: Vec<&str> = shown["upstream"]["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["keep", "change", "add"],
        "the config in force: {shown}"
    );
}

/// A file that does not parse, or does not validate, is refused (422, the reason) and the
/// old configuration keeps serving the same session; without `--config` a reload is refused
/// (400) and SIGHUP leaves the proxy serving.
#[test]
fn r15_reload_invalid_file_is_refused_and_the_old_config_serves() {
    let dir = TempDir::new("reload-bad");
    let file = dir.path().join("shadowcat.toml");
    let good = config("", &[("a", ""), ("b", "")]);
    std::fs::write(&file, &good).expect("write");
    let (_proxy, addr, admin) = start(&file);
    let sid = Conn::open(addr).initialize();
    assert_eq!(
        call(addr, &sid, "a__echo")["result"]["content"][0]["text"],
        "Echo: hi"
    );
    let shown = get(admin, "/admin/config", &[]).json();
    for (bad, why) in [
        (format!("{good}\nbind = [1\n"), "TOML parse error"),
        (
            config("", &[("a", "stdio-children = 0"), ("c", "")]),
            "stdio-children",
        ),
        (config("", &[("a", "colour = \"red\"")]), "colour"),
    ] {
        std::fs::write(&file, &bad).expect("write");
        let r = reload(admin);
        assert_eq!(r.status, 422, "{bad}: {}", r.text());
        assert!(
            r.json()["error"].as_str().is_some_and(|e| e.contains(why)),
            "{}",
            r.text()
        );
        assert_eq!(
            call(addr, &sid, "a__echo")["result"]["content"][0]["text"],
            "Echo: hi"
        );
        assert_eq!(
            call(addr, &sid, "b__echo")["result"]["content"][0]["text"],
            "Echo: hi"
        );
        assert_eq!(call(addr, &sid, "c__echo")["error"]["code"], -32602);
        assert_eq!(get(admin, "/admin/config", &[]).json(), shown, "unchanged");
    }
    assert_eq!(reloads(addr, "refused"), "3");
    assert_eq!(reloads(addr, "ok"), "0");

    // Flags only: nothing to read again.
    let admin2: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let (flags, addr2) = spawn_proxy(&["--admin-bind", &admin2.to_string()], Stdio::null(), &[]);
    wait_listening(admin2);
    let r = reload(admin2);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("without --config"), "{}", r.text());
    // SIGHUP: TLS only (none here); it keeps serving.
    // SAFETY: a plain kill(2) of the child this test started.
    unsafe { libc::kill(flags.0.id() as libc::pid_t, libc::SIGHUP) };
    let sid2 = Conn::open(addr2).initialize();
    assert_eq!(
        call(addr2, &sid2, "echo")["result"]["content"][0]["text"],
        "Echo: hi"
    );
    assert_eq!(reloads(addr2, "refused"), "1");
}

/// A change of policy and prefix only is applied in place: the same children (pids), the
/// same member sessions; the session's standalone stream is told the tools changed; keys that
/// need a restart are named and not applied.
#[test]
fn r15_reload_policy_only_keeps_the_children() {
    let dir = TempDir::new("reload-policy");
    let file = dir.path().join("shadowcat.toml");
    std::fs::write(&file, config("max-sessions = 50", &[("a", ""), ("b", "")])).expect("write");
    let (_proxy, addr, admin) = start(&file);
    let sid = Conn::open(addr).initialize();
    assert_eq!(
        call(addr, &sid, "a__echo")["result"]["content"][0]["text"],
        "Echo: hi"
    );
    assert_eq!(
        call(addr, &sid, "b__echo")["result"]["content"][0]["text"],
        "Echo: hi"
    );
    let mut stream = open_get(addr, &sid);
    assert_eq!(stream.status, 200);
    stream.r_timeout(Duration::from_secs(10));
    let before = pids(admin);

    let policy = config(
        "max-sessions = 60",
        &[
            (
                "a",
                "deny = [\"echo\"]\nrequest-timeout = \"5s\"\n\
                 [upstream.a.prompts.test_simple_prompt]\nname = \"simple\"",
            ),
            ("b", "prefix = \"bee\""),
        ],
    );
    std::fs::write(&file, policy).expect("write");
    let r = reload(admin);
    assert_eq!(r.status, 200, "{}", r.text());
    let report = r.json();
    assert_eq!(
        report["upstreams"]["updated"],
        json!(["a", "b"]),
        "{report}"
    );
    assert_eq!(report["upstreams"]["changed"], json!([]), "{report}");
    assert_eq!(report["needsRestart"], json!(["max-sessions"]), "{report}");
    assert_eq!(pids(admin), before, "the same children");

    let mut told = false;
    while let Some(ev) = stream.next_event() {
        if ev.json()["method"] == "notifications/tools/list_changed" {
            told = true;
            break;
        }
    }
    assert!(told, "the standalone stream got tools/list_changed");
    let denied = call(addr, &sid, "a__echo");
    assert_eq!(denied["error"]["code"], -32602, "{denied}");
    assert_eq!(
        call(addr, &sid, "bee__echo")["result"]["content"][0]["text"],
        "Echo: hi"
    );
    assert_eq!(call(addr, &sid, "b__echo")["error"]["code"], -32602);
    assert_eq!(
        call(addr, &sid, "a__slow_echo")["error"],
        Value::Null,
        "the rest of a"
    );
    let shown = get(admin, "/admin/config", &[]).json();
    assert_eq!(shown["maxSessions"], 50, "not applied: {shown}");
    assert_eq!(
        shown["upstream"]["members"][0]["deny"],
        json!(["echo"]),
        "{shown}"
    );
    assert_eq!(
        shown["upstream"]["members"][0]["requestTimeoutSeconds"], 5.0,
        "{shown}"
    );
    assert_eq!(
        shown["upstream"]["members"][0]["prompts"][0]["rename"], "simple",
        "{shown}"
    );
    assert_eq!(shown["upstream"]["members"][1]["prefix"], "bee", "{shown}");
}

/// The authentication's files are read again on a reload (SIGHUP here, then `POST
/// /admin/reload`): a token taken out of `--auth-tokens` is refused from then on, a new one
/// admitted; a tokens file that does not load keeps the tokens in use (the answer says why).
#[test]
fn r15_reload_rereads_the_auth_tokens_file() {
    let dir = TempDir::new("reload-auth");
    let file = dir.path().join("shadowcat.toml");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "alpha-token-0123456789 alice\n").expect("write");
    let top = format!("auth-tokens = \"{}\"", tokens.display());
    std::fs::write(&file, config(&top, &[("a", "")])).expect("write");
    let (proxy, addr, admin) = start(&file);
    let init = |token: &str| {
        let bearer = format!("Bearer {token}");
        post_with(addr, &[("Authorization", bearer.as_str())], None, INIT).status
    };
    assert_eq!(init("alpha-token-0123456789"), 200);
    assert_eq!(init("beta-token-0123456789"), 401);

    std::fs::write(&tokens, "beta-token-0123456789 bob\n").expect("write");
    // SAFETY: a plain kill(2) of the child this test started.
    unsafe { libc::kill(proxy.0.id() as libc::pid_t, libc::SIGHUP) };
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while reloads(addr, "ok") != "1" && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(reloads(addr, "ok"), "1");
    assert_eq!(init("alpha-token-0123456789"), 401, "taken out");
    assert_eq!(init("beta-token-0123456789"), 200, "admitted");

    std::fs::write(&tokens, "short bob\n").expect("write");
    let r = reload(admin);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["auth"]["error"].is_string(), "{}", r.text());
    assert_eq!(
        r.json()["upstreams"]["unchanged"],
        json!(["a"]),
        "{}",
        r.text()
    );
    assert_eq!(init("beta-token-0123456789"), 200, "the tokens in use stay");
}
