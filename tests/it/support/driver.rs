//! The client drivers: the official Python SDK scripts under tests/py and the TypeScript SDK
//! client tests/js/client.mjs, run as processes that print one JSON object.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use super::{peers, python};

/// Runs a Python driver from tests/py against `url`; returns its JSON output.
pub fn run_py(script: &str, url: &str) -> Value {
    run_py_args(script, url, &[])
}

/// Runs a Python driver with extra arguments after the URL.
pub fn run_py_args(script: &str, url: &str, args: &[&str]) -> Value {
    run_py_env(script, url, args, &[])
}

/// Runs a Python driver with extra arguments and environment variables (e.g. `SSL_CERT_FILE`).
pub fn run_py_env(script: &str, url: &str, args: &[&str], env: &[(&str, &str)]) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/py")
        .join(script);
    let out = Command::new(python())
        .arg(path)
        .arg(url)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("python runs");
    driver_json(script, &out)
}

/// Runs the TypeScript SDK driver (tests/js/client.mjs) against `url`; returns its JSON output.
pub fn run_js(url: &str) -> Value {
    run_js_with_token(url, None)
}

/// The TypeScript SDK client, sending `Authorization: Bearer <token>` when given.
pub fn run_js_with_token(url: &str, token: Option<&str>) -> Value {
    let out = js_command(url, token).output().expect("node runs");
    driver_json("client.mjs", &out)
}

/// The TypeScript SDK driver with extra environment variables (e.g. `NODE_EXTRA_CA_CERTS`).
pub fn run_js_env(url: &str, env: &[(&str, &str)]) -> Value {
    let out = js_command(url, None)
        .envs(env.iter().copied())
        .output()
        .expect("node runs");
    driver_json("client.mjs", &out)
}

/// The command that runs the TypeScript SDK client against `url`.
pub fn js_command(url: &str, token: Option<&str>) -> Command {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/js/client.mjs");
    let mut cmd = Command::new("node");
    cmd.arg(path).arg(url).env("SHADOWCAT_PEERS", peers());
    match token {
        Some(t) => cmd.env("MCP_BEARER_TOKEN", t),
        None => cmd.env_remove("MCP_BEARER_TOKEN"),
    };
    cmd
}

/// A test driver's one JSON object, or a panic showing what it printed.
fn driver_json(name: &str, out: &std::process::Output) -> Value {
    assert!(
        out.status.success(),
        "{name} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{name} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}
