//! The checks every 2026-07-28 request passes, whatever the upstream speaks: removed methods,
//! the required `_meta` members, the protocol version, and the headers that must mirror the
//! body. Each refusal is an [`Error`] variant, so the answer comes from `Error::answer`.

use serde_json::value::RawValue;

use crate::error::Error;
use crate::jsonrpc::{self, META_CAPABILITIES, META_VERSION, MODERN_VERSION, Message};
use crate::session::{ClientCaps, LogLevel};

/// The `_meta` key of a request's log level.
pub const META_LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";

/// Session-era methods that 2026-07-28 removed: 404 -32601 whatever the upstream.
const REMOVED: &[&str] = &[
    "initialize",
    "ping",
    "logging/setLevel",
    "resources/subscribe",
    "resources/unsubscribe",
];

/// The request methods of 2026-07-28 itself; anything else is an extension, forwarded to an
/// upstream that speaks 2026-07-28 and refused (404) by the bridge.
pub const KNOWN: &[&str] = &[
    "server/discover",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "subscriptions/listen",
];

/// What a valid 2026-07-28 request declared in its `_meta`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Declared {
    /// The client capabilities the proxy can serve requests for.
    pub caps: ClientCaps,
    /// The log level it asked for; `None`: no log messages at all.
    pub log_level: Option<LogLevel>,
}

/// True when the request is a 2026-07-28 one: its `MCP-Protocol-Version` header says so, or
/// its `_meta` names a protocol version.
pub fn is_modern(header_version: Option<&str>, meta: Option<&RawValue>) -> bool {
    header_version == Some(MODERN_VERSION)
        || meta
            .is_some_and(|m| jsonrpc::pick(m.get(), [META_VERSION]).is_some_and(|[v]| v.is_some()))
}

/// Checks a 2026-07-28 request. `header` reads a request header (lower-case name).
pub fn validate<'h>(
    msg: &Message,
    header: impl Fn(&str) -> Option<&'h str>,
) -> Result<Declared, Error> {
    let method = msg.method();
    if REMOVED.contains(&method) {
        return Err(Error::UnknownMethod(format!(
            "{method} does not exist in protocol revision {MODERN_VERSION}"
        )));
    }
    let head = msg.head();
    let Some(meta) = head.meta else {
        return Err(Error::InvalidParams(format!(
            "a {MODERN_VERSION} request needs params._meta"
        )));
    };
    let Some([version, caps, level]) = jsonrpc::pick(
        meta.get(),
        [META_VERSION, META_CAPABILITIES, META_LOG_LEVEL],
    ) else {
        return Err(Error::InvalidParams(
            "params._meta must be an object".into(),
        ));
    };
    let version: String = version
        .and_then(|v| serde_json::from_str(v.get()).ok())
        .ok_or_else(|| Error::InvalidParams(format!("_meta needs {META_VERSION} (a string)")))?;
    let caps = caps
        .filter(|c| c.get().trim_start().starts_with('{'))
        .ok_or_else(|| {
            Error::InvalidParams(format!("_meta needs {META_CAPABILITIES} (an object)"))
        })?;
    let header_version = header("mcp-protocol-version").map(str::trim);
    match header_version {
        None => {
            return Err(Error::HeaderMismatch(
                "MCP-Protocol-Version is required".into(),
            ));
        }
        Some(h) if h != version => {
            return Err(Error::HeaderMismatch(
                "MCP-Protocol-Version does not match _meta's protocol version".into(),
            ));
        }
        Some(_) => {}
    }
    if version != MODERN_VERSION {
        return Err(Error::UnsupportedModernVersion(
            version.chars().take(64).collect(),
        ));
    }
    if header("mcp-method").is_none() {
        return Err(Error::HeaderMismatch("Mcp-Method is required".into()));
    }
    if matches!(method, "tools/call" | "prompts/get" | "resources/read")
        && header("mcp-name").is_none()
    {
        return Err(Error::HeaderMismatch(format!(
            "Mcp-Name is required for {method}"
        )));
    }
    let log_level = match level {
        None => None,
        Some(l) => Some(
            serde_json::from_str::<String>(l.get())
                .ok()
                .and_then(|s| LogLevel::parse(&s))
                .ok_or_else(|| {
                    Error::InvalidParams(format!("_meta {META_LOG_LEVEL} is invalid"))
                })?,
        ),
    };
    Ok(Declared {
        caps: ClientCaps::of(caps),
        log_level,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(body: &str, headers: &[(&str, &str)]) -> Result<Declared, Error> {
        let msg = Message::parse(body.as_bytes()).unwrap();
        validate(&msg, |name| {
            headers.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
        })
    }

    const OK_HEADERS: &[(&str, &str)] = &[
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/list"),
    ];

    fn meta(extra: &str) -> String {
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{{"_meta":{{{extra}}}}}}}"#
        )
    }

    #[test]
    fn meta_is_required() {
        let no_meta = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
        let e = check(no_meta, OK_HEADERS).unwrap_err();
        assert_eq!((e.status(), e.rpc_code()), (400, -32602));
        let no_caps = meta(r#""io.modelcontextprotocol/protocolVersion":"2026-07-28""#);
        assert_eq!(check(&no_caps, OK_HEADERS).unwrap_err().rpc_code(), -32602);
        let no_version = meta(r#""io.modelcontextprotocol/clientCapabilities":{}"#);
        assert_eq!(
            check(&no_version, OK_HEADERS).unwrap_err().rpc_code(),
            -32602
        );
        let ok = meta(
            r#""io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{"sampling":{}},"io.modelcontextprotocol/logLevel":"info""#,
        );
        let d = check(&ok, OK_HEADERS).unwrap();
        assert!(d.caps.has(ClientCaps::SAMPLING));
        assert_eq!(d.log_level, LogLevel::parse("info"));
    }

    #[test]
    fn versions_and_headers() {
        let old = meta(
            r#""io.modelcontextprotocol/protocolVersion":"1900-01-01","io.modelcontextprotocol/clientCapabilities":{}"#,
        );
        let e = check(
            &old,
            &[
                ("mcp-protocol-version", "1900-01-01"),
                ("mcp-method", "tools/list"),
            ],
        )
        .unwrap_err();
        assert_eq!((e.status(), e.rpc_code()), (400, -32022));
        let data = e.data().unwrap();
        assert_eq!(data["requested"], "1900-01-01");
        assert_eq!(data["supported"][0], "2026-07-28");
        // The header disagrees with _meta, or is missing.
        assert_eq!(check(&old, OK_HEADERS).unwrap_err().rpc_code(), -32020);
        let ok = meta(
            r#""io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}"#,
        );
        assert_eq!(check(&ok, &[]).unwrap_err().rpc_code(), -32020);
        let e = check(&ok, &[("mcp-protocol-version", "2026-07-28")]).unwrap_err();
        assert_eq!((e.status(), e.rpc_code()), (400, -32020));
    }

    #[test]
    fn removed_methods_are_not_found() {
        for m in REMOVED {
            let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{m}"}}"#);
            let e = check(&body, OK_HEADERS).unwrap_err();
            assert_eq!((e.status(), e.rpc_code()), (404, -32601), "{m}");
        }
    }
}
