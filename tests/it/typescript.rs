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

/// Issue 7: the SDK with a bearer token through an authenticating proxy; without one it fails.
#[test]
fn ts_sdk_with_a_bearer_token() {
    let dir = TempDir::new("ts-auth");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "ts-token-0123456789abcdef ts\n").unwrap();
    let p = demo_proxy(&["--auth-tokens", &tokens.display().to_string()]);
    let url = format!("http://{}/mcp", p.local_addr());
    let out = run_js_with_token(&url, Some("ts-token-0123456789abcdef"));
    assert_eq!(out["echo"], "Echo: hello from TS", "{out}");
    let refused = js_command(&url, None).output().expect("node runs");
    assert!(!refused.status.success(), "connected without a token");
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("bearer token required"), "{err}");
    assert_eq!(p.proxy().sessions().len(), 0);
}
