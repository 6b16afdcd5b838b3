//! Issue #16: the official SDK clients over HTTPS, trusting a test CA, to shadowcat in front of
//! the real server-everything over stdio: tools/list, echo, and progress notifications that
//! travel back over the TLS stream.

use std::path::Path;

use crate::support::*;

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// shadowcat serving HTTPS with `pki`'s certificate in front of server-everything over stdio.
fn https_everything(pki: &Pki) -> shadowcat::Shadowcat {
    let (cert, key) = pki.server("server");
    let cmd = format!("node {}", everything_js());
    demo_proxy(&[
        "--tls-cert",
        &s(&cert),
        "--tls-key",
        &s(&key),
        "--stdio",
        &cmd,
        "--stdio-children",
        "1",
    ])
}

#[test]
fn python_sdk_https_everything_stdio() {
    let pki = Pki::new("py-everything");
    let p = https_everything(&pki);
    let url = format!("https://127.0.0.1:{}/mcp", p.local_addr().port());
    let env = [("SSL_CERT_FILE", s(&pki.ca))];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = run_py_env("tape_session.py", &url, &[], &env);
    assert!(out["tools"].as_u64().unwrap_or(0) >= 13, "{out}");
    assert_eq!(out["echo"], "Echo: hello tape", "{out}");
    assert_eq!(out["progress"], serde_json::json!([1.0, 2.0, 3.0]), "{out}");
}

#[test]
fn ts_sdk_https_everything_stdio() {
    let pki = Pki::new("ts-everything");
    let p = https_everything(&pki);
    let url = format!("https://127.0.0.1:{}/mcp", p.local_addr().port());
    let out = run_js_env(&url, &[("NODE_EXTRA_CA_CERTS", &s(&pki.ca))]);
    assert_eq!(out["server"], "mcp-servers/everything", "{out}");
    assert!(
        out["tools"]
            .as_array()
            .is_some_and(|t| t.iter().any(|n| n == "echo")),
        "{out}"
    );
    assert_eq!(out["echo"], "Echo: hello from TS", "{out}");
    assert_eq!(out["progress"], serde_json::json!([1, 2, 3]), "{out}");
    assert_eq!(out["ping"], true, "{out}");
    assert_eq!(
        p.proxy().sessions().len(),
        0,
        "the client ended its session"
    );
    // Without the CA, Node refuses the certificate.
    let refused = js_command(&url, None)
        .env_remove("NODE_EXTRA_CA_CERTS")
        .output()
        .expect("node runs");
    assert!(!refused.status.success(), "trusted an unknown CA");
}
