//! The official Python SDK (mcp 2.3.0) as a client through the proxy.

use crate::support::*;

fn smoke(url: &str) -> serde_json::Value {
    let out = run_py("smoke.py", url);
    assert_eq!(out["echo"], "Echo: hello through MCP", "{out}");
    assert_eq!(out["ping"], true, "{out}");
    out
}

#[test]
fn python_sdk_demo_stdio() {
    let p = demo_proxy(&[]);
    let url = format!("http://{}/mcp", p.local_addr());
    let out = smoke(&url);
    assert!(
        out["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "test_simple_text")
    );
}

#[test]
fn python_sdk_everything_stdio() {
    let cmd = format!("node {}", everything_js());
    let p = demo_proxy(&["--stdio", &cmd]);
    let url = format!("http://{}/mcp", p.local_addr());
    let out = smoke(&url);
    // 13 tools, plus the roots, sampling and elicitation ones (form and URL) server-everything
    // registers because the proxy tells shared children it can route those requests. This
    // client declared none of them: calling one gets the tool's error, never another
    // client's help (tests/it/r14_children.rs).
    let tools = out["tools"].as_array().unwrap();
    assert_eq!(tools.len(), 17, "{out}");
    assert!(
        tools.iter().any(|t| t == "trigger-sampling-request"),
        "{out}"
    );
    assert_eq!(out["resources"], 7, "{out}");
}

#[test]
fn python_sdk_everything_http() {
    let (_peer, addr) = everything_http();
    let p = demo_proxy(&["--upstream", &format!("http://{addr}/mcp")]);
    let url = format!("http://{}/mcp", p.local_addr());
    let out = smoke(&url);
    assert_eq!(out["resources"], 7, "{out}");
}

#[test]
fn python_client_auto_mode_demo_stdio() {
    let p = demo_proxy(&[]);
    let out = run_py("auto.py", &format!("http://{}/mcp", p.local_addr()));
    assert_eq!(out["echo"], "Echo: hello through MCP", "{out}");
    // The demo child speaks 2026-07-28: the client stays modern, statelessly.
    assert_eq!(out["protocolVersion"], "2026-07-28", "{out}");
}

#[test]
fn python_client_auto_mode_everything_stdio() {
    let cmd = format!("node {}", everything_js());
    let p = demo_proxy(&["--stdio", &cmd, "--stdio-children", "1"]);
    let out = run_py("auto.py", &format!("http://{}/mcp", p.local_addr()));
    assert_eq!(out["echo"], "Echo: hello through MCP", "{out}");
    // server-everything is session-era only: the proxy bridges it (issue #13), so the
    // client stays on 2026-07-28.
    assert_eq!(out["protocolVersion"], "2026-07-28", "{out}");
}

#[test]
fn python_client_auto_mode_everything_http() {
    let (_peer, addr) = everything_http();
    let p = demo_proxy(&["--upstream", &format!("http://{addr}/mcp")]);
    let out = run_py("auto.py", &format!("http://{}/mcp", p.local_addr()));
    assert_eq!(out["echo"], "Echo: hello through MCP", "{out}");
    // Bridged (issue #13): the upstream's own "Server not initialized" never reaches the
    // client, which stays on 2026-07-28.
    assert_eq!(out["protocolVersion"], "2026-07-28", "{out}");
}
