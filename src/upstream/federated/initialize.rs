//! The federation's answer to `initialize`: its members' answers merged.

use std::sync::Arc;

use serde_json::{Value, json};

use super::Member;

/// The `initialize` result of the federation: the protocol version of the first member that
/// answered, the union of the members' capabilities, and their instructions under their
/// names.
pub fn merged_initialize(sep: &str, results: &[(Arc<Member>, Value)]) -> Value {
    let any = |ptr: &str| results.iter().any(|(_, r)| r.pointer(ptr).is_some());
    let flag = |ptr: &str| {
        results
            .iter()
            .any(|(_, r)| r.pointer(ptr).and_then(Value::as_bool) == Some(true))
    };
    let mut caps = serde_json::Map::new();
    for cap in ["tools", "prompts"] {
        if any(&format!("/capabilities/{cap}")) {
            let changed = flag(&format!("/capabilities/{cap}/listChanged"));
            caps.insert(cap.into(), json!({ "listChanged": changed }));
        }
    }
    if any("/capabilities/resources") {
        caps.insert(
            "resources".into(),
            json!({
                "subscribe": flag("/capabilities/resources/subscribe"),
                "listChanged": flag("/capabilities/resources/listChanged"),
            }),
        );
    }
    for cap in ["logging", "completions"] {
        if any(&format!("/capabilities/{cap}")) {
            caps.insert(cap.into(), json!({}));
        }
    }
    let mut instructions = String::new();
    for (m, r) in results {
        let Some(text) = r.get("instructions").and_then(Value::as_str) else {
            continue;
        };
        if !instructions.is_empty() {
            instructions.push_str("\n\n");
        }
        if m.prefix.is_empty() {
            instructions.push_str(&format!("## {}\n{text}", m.name));
        } else {
            let names = format!("{}{sep}", m.prefix);
            instructions.push_str(&format!(
                "## {} (tools and prompts named {names}*)\n{text}",
                m.name
            ));
        }
    }
    let version = results
        .first()
        .and_then(|(_, r)| r.get("protocolVersion").cloned())
        .unwrap_or(Value::Null);
    let mut out = json!({
        "protocolVersion": version,
        "capabilities": caps,
        "serverInfo": { "name": "shadowcat", "version": env!("CARGO_PKG_VERSION") },
    });
    if !instructions.is_empty() {
        out["instructions"] = Value::String(instructions);
    }
    out
}
