//! Issue #13 part B: session-era clients in front of a 2026-07-28-only upstream
//! (`shadowcat demo-server --era modern` over stdio, shared). The proxy answers `initialize`
//! from the child's `server/discover`, keeps the session, adds the per-request `_meta`, and
//! answers `ping` itself, and turns `InputRequiredResult`s into classic server-to-client
//! requests (`src/bridge/modern_upstream.rs`).

use crate::support::*;

fn modern_proxy() -> shadowcat::Shadowcat {
    let cmd = format!("'{}' demo-server --era modern", exe());
    demo_proxy(&["--stdio", &cmd])
}

/// Python `ClientSession` (mcp 2.3.0): initialize, tools/list, echo, resources, ping.
#[test]
fn r13_modern_upstream_python_session_client() {
    let p = modern_proxy();
    let out = run_py("smoke.py", &format!("http://{}/mcp", p.local_addr()));
    assert_eq!(out["protocolVersion"], "2025-11-25", "{out}");
    assert_eq!(out["serverName"], "shadowcat-demo", "{out}");
    assert_eq!(out["echo"], "Echo: hello through MCP", "{out}");
    assert_eq!(out["ping"], true, "{out}");
    assert!(out["resources"].as_u64().unwrap_or(0) > 0, "{out}");
}

/// The TypeScript SDK 1.32 client: initialize, echo with progress, DELETE.
#[test]
fn r13_modern_upstream_ts_session_client() {
    let p = modern_proxy();
    let out = run_js(&format!("http://{}/mcp", p.local_addr()));
    assert_eq!(out["echo"], "Echo: hello from TS", "{out}");
    assert_eq!(out["sessionId"], true, "{out}");
    eprintln!("TS SDK through the proxy to --era modern: {out}");
}

/// Python `ClientSession` with sampling and elicitation callbacks: the child's
/// `InputRequiredResult`s become classic server-to-client requests on the call's stream, and
/// the client's answers go back as `inputResponses` with the child's `requestState`.
#[test]
fn r13_modern_upstream_python_sampling_and_elicitation() {
    let p = modern_proxy();
    let out = run_py("sampling.py", &format!("http://{}/mcp", p.local_addr()));
    assert_eq!(out["sampling"]["requests"], 1, "{out}");
    assert_eq!(out["sampling"]["isError"], false, "{out}");
    assert_eq!(out["elicitation"]["requests"], 1, "{out}");
    assert_eq!(out["elicitation"]["isError"], false, "{out}");
    assert!(
        out["sampling"]["result"]
            .as_str()
            .is_some_and(|t| t.contains("This is a test response from the client")),
        "{out}"
    );
}
