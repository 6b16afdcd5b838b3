//! The official TypeScript SDK (@modelcontextprotocol/sdk 1.32) as a client through the proxy.

use crate::support::*;

#[test]
fn ts_sdk_demo_stdio_with_progress() {
    let p = demo_proxy(&[]);
    let out = run_js(&format!("http://{}/mcp", p.local_addr()));
    assert_eq!(out["echo"], "Echo: hello from TS", "{out}");
    assert_eq!(out["progress"], serde_json::json!([0, 50, 100]), "{out}");
    assert_eq!(out["sessionId"], true);
    // The client ended its session with DELETE.
    assert_eq!(p.proxy().sessions().len(), 0);
}

#[test]
fn ts_sdk_everything_stdio() {
    let cmd = format!("node {}", everything_js());
    let p = demo_proxy(&["--stdio", &cmd, "--stdio-children", "1"]);
    let out = run_js(&format!("http://{}/mcp", p.local_addr()));
    assert_eq!(out["echo"], "Echo: hello from TS", "{out}");
    assert_eq!(out["server"], "mcp-servers/everything", "{out}");
}

#[test]
fn ts_sdk_everything_http() {
    let (_peer, addr) = everything_http();
    let p = demo_proxy(&["--upstream", &format!("http://{addr}/mcp")]);
    let out = run_js(&format!("http://{}/mcp", p.local_addr()));
    assert_eq!(out["echo"], "Echo: hello from TS", "{out}");
}
