//! What a bridged answer looks like to a 2026-07-28 client: the client's own id, a
//! `resultType`, the server's identity in `_meta`, caching hints on list and read results,
//! and a `server/discover` result synthesised from the upstream's `initialize` answer.

use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use crate::error::Error;
use crate::jsonrpc::{LEGACY_VERSIONS, MODERN_VERSION};

/// The `_meta` key of a result's server identity.
pub const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";

/// How a bridged result is finished.
#[derive(Clone, Debug)]
pub struct Finish {
    /// `serverInfo` of the upstream's `initialize` answer (raw JSON), if it had one.
    pub server_info: Option<Value>,
    /// `ttlMs`, for list and read results.
    pub ttl_ms: u64,
}

/// True for the methods whose results are cacheable in 2026-07-28.
pub fn cacheable(method: &str) -> bool {
    matches!(
        method,
        "tools/list"
            | "resources/list"
            | "resources/templates/list"
            | "prompts/list"
            | "resources/read"
            | "server/discover"
    )
}

impl Finish {
    /// The upstream's response `body` as the answer to the client's request `id` of
    /// `method`. A result gains `resultType: "complete"`, `_meta[serverInfo]` and, when
    /// cacheable, `ttlMs`/`cacheScope: "private"` (members the upstream set are kept); an
    /// error keeps its error.
    pub fn answer(&self, body: &[u8], id: &RawValue, method: &str) -> Result<Vec<u8>, Error> {
        let mut msg: Map<String, Value> = serde_json::from_slice(body)
            .map_err(|_| Error::UpstreamProtocol("upstream answered with invalid JSON".into()))?;
        let id: Value = serde_json::from_str(id.get()).unwrap_or(Value::Null);
        msg.insert("id".into(), id);
        if let Some(Value::Object(result)) = msg.get_mut("result") {
            self.complete(result, method);
        }
        serde_json::to_vec(&msg).map_err(|e| Error::Internal(e.to_string()))
    }

    /// Adds the 2026-07-28 members to a complete result.
    pub fn complete(&self, result: &mut Map<String, Value>, method: &str) {
        result
            .entry("resultType")
            .or_insert_with(|| Value::from("complete"));
        if let Some(info) = &self.server_info {
            let meta = result
                .entry("_meta")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(meta) = meta {
                meta.entry(META_SERVER_INFO).or_insert_with(|| info.clone());
            }
        }
        if cacheable(method) {
            result
                .entry("ttlMs")
                .or_insert_with(|| Value::from(self.ttl_ms));
            result
                .entry("cacheScope")
                .or_insert_with(|| Value::from("private"));
        }
    }
}

/// The `serverInfo` of an `initialize` result (raw JSON text).
pub fn server_info(init_result: &str) -> Option<Value> {
    let [info] = crate::jsonrpc::pick(init_result, ["serverInfo"])?;
    serde_json::from_str(info?.get()).ok()
}

/// A `server/discover` result from an `initialize` result: its capabilities, instructions
/// and `serverInfo`; `supportedVersions` is 2026-07-28 and the session-era versions. `listen` says whether the proxy serves `subscriptions/listen` for it: if
/// not, the list-change and subscribe flags are dropped.
pub fn discover(init_result: &str, finish: &Finish, listen: bool) -> Value {
    let init: Map<String, Value> = serde_json::from_str(init_result).unwrap_or_default();
    let mut caps = match init.get("capabilities") {
        Some(Value::Object(c)) => c.clone(),
        _ => Map::new(),
    };
    // Session-era tasks are not bridged (2026-07-28 has them as an extension).
    caps.remove("tasks");
    if !listen {
        for cap in ["tools", "prompts", "resources"] {
            if let Some(Value::Object(c)) = caps.get_mut(cap) {
                c.remove("listChanged");
                c.remove("subscribe");
            }
        }
    }
    // The versions a client may use through the proxy: 2026-07-28 (bridged) and every
    // session era version (forwarded to the upstream's own `initialize`), newest first (a
    // -32022's `data.supported` lists only 2026-07-28, the one version `_meta` may name).
    let mut versions = vec![MODERN_VERSION];
    versions.extend(LEGACY_VERSIONS.iter().rev());
    let mut result = Map::new();
    result.insert("supportedVersions".into(), json!(versions));
    result.insert("capabilities".into(), Value::Object(caps));
    if let Some(i @ Value::String(_)) = init.get("instructions") {
        result.insert("instructions".into(), i.clone());
    }
    finish.complete(&mut result, "server/discover");
    Value::Object(result)
}

/// The server capability a 2026-07-28 method needs, if any.
pub fn needs(method: &str) -> Option<&'static str> {
    match method {
        "tools/list" | "tools/call" => Some("tools"),
        "resources/list" | "resources/templates/list" | "resources/read" => Some("resources"),
        "prompts/list" | "prompts/get" => Some("prompts"),
        "completion/complete" => Some("completions"),
        _ => None,
    }
}

/// True when the `initialize` result declares the capability `name`.
pub fn declares(init_result: &str, name: &str) -> bool {
    crate::jsonrpc::pick(init_result, ["capabilities"])
        .and_then(|[c]| c)
        .and_then(|c| crate::jsonrpc::pick(c.get(), [name]))
        .is_some_and(|[v]| v.is_some_and(|v| v.get().trim_start().starts_with('{')))
}

#[cfg(test)]
mod tests {
    use super::*;

    const INIT: &str = r#"{"protocolVersion":"2025-06-18","capabilities":{"tools":{"listChanged":true},"logging":{},"resources":{"subscribe":true}},"serverInfo":{"name":"ev","version":"1"},"instructions":"hi"}"#;

    fn finish() -> Finish {
        Finish {
            server_info: server_info(INIT),
            ttl_ms: 0,
        }
    }

    #[test]
    fn results_gain_the_modern_members() {
        let id = RawValue::from_string("7".into()).unwrap();
        let out = finish()
            .answer(
                br#"{"jsonrpc":"2.0","id":"sc-b-1","result":{"tools":[]}}"#,
                &id,
                "tools/list",
            )
            .unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["id"], 7);
        assert_eq!(v["result"]["resultType"], "complete");
        assert_eq!(v["result"]["ttlMs"], 0);
        assert_eq!(v["result"]["cacheScope"], "private");
        assert_eq!(v["result"]["_meta"][META_SERVER_INFO]["name"], "ev");
        let out = finish()
            .answer(
                br#"{"jsonrpc":"2.0","id":"x","result":{"content":[]}}"#,
                &id,
                "tools/call",
            )
            .unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert!(v["result"].get("ttlMs").is_none());
        let err = finish()
            .answer(
                br#"{"jsonrpc":"2.0","id":"x","error":{"code":-32602,"message":"no"}}"#,
                &id,
                "tools/call",
            )
            .unwrap();
        let v: Value = serde_json::from_slice(&err).unwrap();
        assert_eq!(
            (v["id"].clone(), v["error"]["code"].clone()),
            (json!(7), json!(-32602))
        );
        assert!(finish().answer(b"nope", &id, "tools/list").is_err());
    }

    #[test]
    fn discover_from_initialize() {
        let d = discover(INIT, &finish(), false);
        assert_eq!(d["supportedVersions"][0], "2026-07-28");
        assert!(
            d["supportedVersions"]
                .as_array()
                .unwrap()
                .contains(&json!("2025-06-18"))
        );
        assert_eq!(d["instructions"], "hi");
        assert!(d["capabilities"]["tools"].get("listChanged").is_none());
        assert!(d["capabilities"]["resources"].get("subscribe").is_none());
        assert_eq!(d["resultType"], "complete");
        assert!(declares(INIT, "tools") && !declares(INIT, "prompts"));
        let d = discover(INIT, &finish(), true);
        assert_eq!(d["capabilities"]["tools"]["listChanged"], true);
    }
}
