//! Tool and prompt overrides: how a member's tools and prompts are shown and called.
//!
//! Owns: what `[upstream.NAME.tools.TOOL]` does (renames a tool, replaces its description,
//! fixes argument values: left out of its schema, set on every call) and
//! `[upstream.NAME.prompts.PROMPT]` (renames a prompt, replaces its description). A
//! principal's (or scope's) own override of a tool or prompt replaces the member's for it. A
//! renamed name's old name is unknown (to whom the rename applies).
//! Must not touch: who may see what (`policy.rs`), routing (`lists.rs`).

use serde_json::Value;

use super::policy::{Who, own};
use crate::config::{PolicyConfig, RulesConfig, ToolOverride};

/// What an override is of: a tool (`tools` tables) or a prompt (`prompts` tables).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Named {
    Tool,
    Prompt,
}

/// `rules`' overrides of `named`s.
fn overrides(rules: &RulesConfig, named: Named) -> &[ToolOverride] {
    match named {
        Named::Tool => &rules.tools,
        Named::Prompt => &rules.prompts,
    }
}

/// The member's own overrides of `named`s.
fn member_overrides(policy: &PolicyConfig, named: Named) -> &[ToolOverride] {
    match named {
        Named::Tool => &policy.tools,
        Named::Prompt => &policy.prompts,
    }
}

/// The override of member tool (or prompt) `name` that applies to `who`: its principal (or
/// scope) table's, else the member's.
fn overridden<'p>(
    policy: &'p PolicyConfig,
    who: Who<'_>,
    named: Named,
    name: &str,
) -> Option<&'p ToolOverride> {
    own(policy, who)
        .and_then(|r| overrides(r, named).iter().find(|o| o.tool == name))
        .or_else(|| {
            member_overrides(policy, named)
                .iter()
                .find(|o| o.tool == name)
        })
}

/// The name member tool (or prompt) `name` is shown as to `who` (before the prefix): its
/// rename, or itself.
pub fn shown_as<'p>(
    policy: &'p PolicyConfig,
    who: Who<'_>,
    named: Named,
    name: &'p str,
) -> &'p str {
    overridden(policy, who, named, name)
        .and_then(|o| o.rename.as_deref())
        .unwrap_or(name)
}

/// The member's own name of the tool (or prompt) `who` is shown as `shown`; `None` for an
/// old name once it is renamed (for `who`).
pub fn original<'p>(
    policy: &'p PolicyConfig,
    who: Who<'_>,
    named: Named,
    shown: &'p str,
) -> Option<&'p str> {
    let own_list = own(policy, who).map_or(&[][..], |r| overrides(r, named));
    let renamed = own_list
        .iter()
        .chain(member_overrides(policy, named))
        .find(|o| {
            o.rename.as_deref() == Some(shown)
            // A member-wide rename the principal's own override of that name undoes.
            && overridden(policy, who, named, &o.tool).is_some_and(|e| std::ptr::eq(e, *o))
        });
    if let Some(o) = renamed {
        return Some(&o.tool);
    }
    match overridden(policy, who, named, shown) {
        Some(o) if o.rename.is_some() => None,
        _ => Some(shown),
    }
}

/// A `tools/list` (or `prompts/list`) item of member tool (or prompt) `name` as `who` sees
/// it: its description replaced, a tool's fixed arguments gone from `inputSchema`.
pub fn reshape(policy: &PolicyConfig, who: Who<'_>, named: Named, name: &str, item: &mut Value) {
    let Some(o) = overridden(policy, who, named, name) else {
        return;
    };
    if let Some(d) = &o.description {
        item["description"] = Value::String(d.clone());
    }
    let Some(schema) = item.get_mut("inputSchema") else {
        return;
    };
    if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
        for name in o.fixed.keys() {
            props.remove(name);
        }
    }
    if let Some(Value::Array(required)) = schema.get_mut("required") {
        required.retain(|r| r.as_str().is_none_or(|r| !o.fixed.contains_key(r)));
    }
}

/// A `tools/call`'s params from `who` for member tool `tool` with its fixed arguments set
/// (over any the client sent).
/// True when a `tools/call` of member tool `tool` from `who` gets fixed arguments
/// ([`inject`] would change its params).
pub fn fixes(policy: &PolicyConfig, who: Who<'_>, tool: &str) -> bool {
    overridden(policy, who, Named::Tool, tool).is_some_and(|o| !o.fixed.is_empty())
}

pub fn inject(policy: &PolicyConfig, who: Who<'_>, tool: &str, params: &mut Value) {
    let Some(o) = overridden(policy, who, Named::Tool, tool).filter(|o| !o.fixed.is_empty()) else {
        return;
    };
    if !params.get("arguments").is_some_and(Value::is_object) {
        params["arguments"] = Value::Object(serde_json::Map::new());
    }
    if let Some(args) = params["arguments"].as_object_mut() {
        for (k, v) in &o.fixed {
            args.insert(k.clone(), v.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_principal_overrides_a_tool_its_own_way() {
        let over = |tool: &str, rename: Option<&str>, key: &str, v: &str| {
            let mut fixed = serde_json::Map::new();
            fixed.insert(key.into(), v.into());
            ToolOverride {
                tool: tool.into(),
                rename: rename.map(str::to_owned),
                description: None,
                fixed,
            }
        };
        let policy = PolicyConfig {
            tools: vec![over("echo", Some("say"), "key", "everyone")],
            principals: vec![(
                "token:ops".into(),
                RulesConfig {
                    tools: vec![over("echo", None, "key", "ops")],
                    ..RulesConfig::default()
                },
            )],
            ..PolicyConfig::default()
        };
        let (anyone, ops) = (Who::default(), Who::named("token:ops"));
        assert_eq!(shown_as(&policy, anyone, Named::Tool, "echo"), "say");
        assert_eq!(original(&policy, anyone, Named::Tool, "say"), Some("echo"));
        assert_eq!(original(&policy, anyone, Named::Tool, "echo"), None);
        // ops' own override has no rename: echo is echo, and `say` is nothing to ops.
        assert_eq!(shown_as(&policy, ops, Named::Tool, "echo"), "echo");
        assert_eq!(original(&policy, ops, Named::Tool, "echo"), Some("echo"));
        assert_eq!(
            original(&policy, ops, Named::Tool, "say"),
            Some("say"),
            "not echo's name for ops"
        );
        let mut p = serde_json::json!({"name": "echo"});
        inject(&policy, ops, "echo", &mut p);
        assert_eq!(p["arguments"]["key"], "ops");
        inject(&policy, anyone, "echo", &mut p);
        assert_eq!(p["arguments"]["key"], "everyone");
    }

    #[test]
    fn prompts_have_overrides_of_their_own() {
        let over = |name: &str, rename: &str, description: Option<&str>| ToolOverride {
            tool: name.into(),
            rename: Some(rename.into()),
            description: description.map(str::to_owned),
            ..ToolOverride::default()
        };
        let policy = PolicyConfig {
            tools: vec![over("simple", "tool_simple", None)],
            prompts: vec![over("simple", "brief", Some("Brief."))],
            principals: vec![(
                "scope:ops".into(),
                RulesConfig {
                    prompts: vec![over("simple", "ops_brief", None)],
                    ..RulesConfig::default()
                },
            )],
            ..PolicyConfig::default()
        };
        let scopes = ["ops".to_owned()];
        let (anyone, ops) = (
            Who::default(),
            Who {
                principal: Some("jwt:x"),
                scopes: &scopes,
            },
        );
        // A tool and a prompt of one name are overridden apart.
        assert_eq!(shown_as(&policy, anyone, Named::Prompt, "simple"), "brief");
        assert_eq!(
            shown_as(&policy, anyone, Named::Tool, "simple"),
            "tool_simple"
        );
        assert_eq!(
            original(&policy, anyone, Named::Prompt, "brief"),
            Some("simple")
        );
        assert_eq!(
            original(&policy, anyone, Named::Prompt, "tool_simple"),
            Some("tool_simple")
        );
        assert_eq!(
            original(&policy, anyone, Named::Prompt, "simple"),
            None,
            "renamed"
        );
        // The scope's own override replaces the member's: its name, and no description.
        assert_eq!(shown_as(&policy, ops, Named::Prompt, "simple"), "ops_brief");
        assert_eq!(
            original(&policy, ops, Named::Prompt, "ops_brief"),
            Some("simple")
        );
        assert_eq!(
            original(&policy, ops, Named::Prompt, "brief"),
            Some("brief")
        );
        let mut item = serde_json::json!({"name": "simple", "description": "Long.",
            "arguments": [{"name": "a"}]});
        reshape(&policy, anyone, Named::Prompt, "simple", &mut item);
        assert_eq!(item["description"], "Brief.");
        assert_eq!(item["arguments"][0]["name"], "a", "arguments stay");
        let mut item = serde_json::json!({"name": "simple", "description": "Long."});
        reshape(&policy, ops, Named::Prompt, "simple", &mut item);
        assert_eq!(item["description"], "Long.");
    }

    #[test]
    fn renamed_described_and_fixed() {
        let mut fixed = serde_json::Map::new();
        fixed.insert("key".into(), "s3cret".into());
        let policy = PolicyConfig {
            tools: vec![ToolOverride {
                tool: "echo".into(),
                rename: Some("say".into()),
                description: Some("Says it.".into()),
                fixed,
            }],
            ..PolicyConfig::default()
        };
        assert_eq!(
            shown_as(&policy, Who::default(), Named::Tool, "echo"),
            "say"
        );
        assert_eq!(
            original(&policy, Who::default(), Named::Tool, "say"),
            Some("echo")
        );
        assert_eq!(
            original(&policy, Who::default(), Named::Tool, "echo"),
            None,
            "the old name is unknown"
        );
        assert_eq!(
            original(&policy, Who::default(), Named::Tool, "other"),
            Some("other")
        );
        let mut item = serde_json::json!({"name": "echo", "inputSchema": {"type": "object",
            "properties": {"message": {}, "key": {}}, "required": ["message", "key"]}});
        reshape(&policy, Who::default(), Named::Tool, "echo", &mut item);
        assert_eq!(item["description"], "Says it.");
        assert_eq!(
            item["inputSchema"]["required"],
            serde_json::json!(["message"])
        );
        assert!(item["inputSchema"]["properties"].get("key").is_none());
        let mut params =
            serde_json::json!({"name": "echo", "arguments": {"key": "mine", "message": "m"}});
        inject(&policy, Who::default(), "echo", &mut params);
        assert_eq!(params["arguments"]["key"], "s3cret");
        assert_eq!(params["arguments"]["message"], "m");
    }
}
