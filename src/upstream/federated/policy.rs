//! Which tools, prompts and resources of a member a principal may see and use.
//!
//! A member's `allow` (default: everything) and `deny` (default: nothing) are lists of names
//! as the member knows them, with `*` (any run of characters) and `?` (one character); `deny`
//! wins. `allow-resources` and `deny-resources` do the same for its resources, matched
//! against their URIs (a template: against its URI template text).
//! `[upstream.NAME.principal."token:alice"]` gives one principal (`token:NAME`, `jwt:SUB`,
//! `cert:CN`) its own lists, each replacing the member's; `"scope:admin"` gives them to
//! every JWT with that scope whose principal has no table of its own (the first such scope
//! in the file's order wins). A name that is not allowed is absent
//! from lists and refused on call as unknown (`-32602`), never as forbidden; a resource that
//! is not allowed is absent from lists and not found (`-32002`) when read, subscribed to or
//! completed. `[upstream.NAME.tools.TOOL]` renames a tool, replaces its description, and
//! fixes argument values (left out of its schema, set on every call);
//! `[upstream.NAME.prompts.PROMPT]` renames a prompt and replaces its description. A
//! principal's (or scope's) own override of a tool or prompt replaces the member's. The era
//! bridge's shared session (2026-07-28 stateless requests) belongs to no principal: it gets
//! only what every principal may have (and the member's own overrides).

use serde_json::Value;

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

/// True when `name` matches `pattern` (`*`: any run, `?`: one character).
pub fn glob(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // Iterative matching with one backtrack point: linear in practice, no recursion.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

fn any(patterns: &[String], name: &str) -> bool {
    patterns.iter().any(|p| glob(p, name))
}

/// What a rule list is about: tool and prompt names, or resource URIs and URI templates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Of {
    /// `allow` and `deny`.
    Names,
    /// `allow-resources` and `deny-resources`.
    Resources,
}

fn lists(r: &RulesConfig, of: Of) -> (Option<&Vec<String>>, Option<&Vec<String>>) {
    match of {
        Of::Names => (r.allow.as_ref(), r.deny.as_ref()),
        Of::Resources => (r.allow_resources.as_ref(), r.deny_resources.as_ref()),
    }
}

/// Who asks: a principal (`token:NAME`, `jwt:SUB`, `cert:CN`) and its JWT's scopes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Who<'a> {
    pub principal: Option<&'a str>,
    pub scopes: &'a [String],
}

impl<'a> Who<'a> {
    /// Just a principal, without scopes.
    pub fn named(principal: &'a str) -> Who<'a> {
        Who {
            principal: Some(principal),
            scopes: &[],
        }
    }
}

/// The rules of a principal table that apply to `who`: its own (`"token:alice"`), else the
/// first, in the file's order, of its scopes' (`"scope:admin"`).
fn own<'p>(policy: &'p PolicyConfig, who: Who<'_>) -> Option<&'p RulesConfig> {
    let named = who
        .principal
        .and_then(|p| policy.principals.iter().find(|(k, _)| k == p));
    named
        .or_else(|| {
            policy.principals.iter().find(|(k, _)| {
                k.strip_prefix("scope:")
                    .is_some_and(|s| who.scopes.iter().any(|have| have == s))
            })
        })
        .map(|(_, r)| r)
}

/// True when `who` may see and call member tool or prompt `name` ([`Of::Names`]), or see and
/// read resource `name` (a URI, or a template's URI template: [`Of::Resources`]).
pub fn allows(policy: &PolicyConfig, who: Who<'_>, of: Of, name: &str) -> bool {
    let own = own(policy, who).map(|r| lists(r, of));
    let (allow, deny) = lists(&policy.rules, of);
    let allow = own.and_then(|(a, _)| a).or(allow);
    let deny = own.and_then(|(_, d)| d).or(deny);
    allow.is_none_or(|a| any(a, name)) && !deny.is_some_and(|d| any(d, name))
}

/// True when every principal, and anyone without rules of their own, may have `name`: what
/// a caller the federation cannot name (the era bridge's shared session) is allowed.
pub fn allows_everyone(policy: &PolicyConfig, of: Of, name: &str) -> bool {
    allows(policy, Who::default(), of, name)
        && policy.principals.iter().all(|(key, _)| {
            let scope = key.strip_prefix("scope:").map(|s| [s.to_owned()]);
            let who = match &scope {
                Some(s) => Who {
                    principal: None,
                    scopes: s,
                },
                None => Who::named(key),
            };
            allows(policy, who, of, name)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(allow: Option<&[&str]>, deny: Option<&[&str]>) -> RulesConfig {
        let own = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        RulesConfig {
            allow: allow.map(own),
            deny: deny.map(own),
            ..RulesConfig::default()
        }
    }

    #[test]
    fn globs() {
        for (p, n, want) in [
            ("*", "", true),
            ("echo", "echo", true),
            ("echo", "echo2", false),
            ("get-*", "get-sum", true),
            ("get-*", "toget-sum", false),
            ("*-sum", "get-sum", true),
            ("g?t*m", "get-sum", true),
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "aXbYbZ", false),
        ] {
            assert_eq!(glob(p, n), want, "{p} {n}");
        }
    }

    #[test]
    fn principals_replace_the_member_lists_and_deny_wins() {
        let policy = PolicyConfig {
            rules: rules(Some(&["echo", "get-*"]), Some(&["get-env"])),
            principals: vec![
                ("token:alice".into(), rules(Some(&["*"]), None)),
                ("token:bob".into(), rules(None, Some(&["echo"]))),
            ],
            ..PolicyConfig::default()
        };
        let everyone = [
            ("echo", true),
            ("get-sum", true),
            ("get-env", false),
            ("crash", false),
        ];
        for (name, want) in everyone {
            assert_eq!(
                allows(&policy, Who::default(), Of::Names, name),
                want,
                "anyone: {name}"
            );
            assert_eq!(
                allows(&policy, Who::named("token:carol"), Of::Names, name),
                want,
                "carol: {name}"
            );
        }
        // alice: her allow (everything), the member's deny.
        for (name, want) in [("crash", true), ("get-env", false)] {
            assert_eq!(
                allows(&policy, Who::named("token:alice"), Of::Names, name),
                want,
                "alice: {name}"
            );
        }
        // bob: the member's allow, his deny.
        for (name, want) in [("echo", false), ("get-env", true), ("crash", false)] {
            assert_eq!(
                allows(&policy, Who::named("token:bob"), Of::Names, name),
                want,
                "bob: {name}"
            );
        }
        assert!(allows(
            &PolicyConfig::default(),
            Who::default(),
            Of::Names,
            "anything"
        ));
        // The bridge's shared session: only what everyone may have.
        assert!(!allows_everyone(&policy, Of::Names, "echo"), "bob may not");
        assert!(allows_everyone(&policy, Of::Names, "get-sum"));
    }

    #[test]
    fn scopes_pick_rules_when_the_principal_has_none_of_its_own() {
        let policy = PolicyConfig {
            rules: rules(Some(&["echo"]), None),
            principals: vec![
                ("jwt:carol".into(), rules(Some(&["get-*"]), None)),
                ("scope:admin".into(), rules(Some(&["*"]), None)),
                ("scope:read".into(), rules(Some(&["get-*", "echo"]), None)),
            ],
            ..PolicyConfig::default()
        };
        let scopes = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (admin, read, none) = (scopes(&["read", "admin"]), scopes(&["read"]), scopes(&[]));
        let who = |p, s| Who {
            principal: Some(p),
            scopes: s,
        };
        let may = |w, name| allows(&policy, w, Of::Names, name);
        // The first scope rule in the file's order that the token has (admin before read).
        assert!(may(who("jwt:dave", &admin), "crash"));
        assert!(may(who("jwt:dave", &read), "get-sum"));
        assert!(!may(who("jwt:dave", &read), "crash"));
        assert!(!may(who("jwt:dave", &none), "get-sum"), "the table's rules");
        // A principal's own rules win over its scopes'.
        assert!(!may(who("jwt:carol", &admin), "crash"));
        assert!(may(who("jwt:carol", &admin), "get-sum"));
        // The bridge's shared session: what the table and every principal and scope allow.
        assert!(!allows_everyone(&policy, Of::Names, "crash"));
        assert!(
            !allows_everyone(&policy, Of::Names, "echo"),
            "carol may not"
        );
    }

    #[test]
    fn resource_lists_are_their_own() {
        let policy = PolicyConfig {
            rules: RulesConfig {
                allow: Some(vec!["echo".into()]),
                deny_resources: Some(vec!["file:///secret/*".into()]),
                ..RulesConfig::default()
            },
            principals: vec![(
                "token:ops".into(),
                RulesConfig {
                    deny_resources: Some(Vec::new()),
                    ..RulesConfig::default()
                },
            )],
            ..PolicyConfig::default()
        };
        let r = |who, uri| allows(&policy, who, Of::Resources, uri);
        assert!(
            r(Who::default(), "file:///docs/a"),
            "the tool allow list does not apply"
        );
        assert!(!r(Who::default(), "file:///secret/key"));
        assert!(
            r(Who::default(), "file:///{path}"),
            "a template is matched as its text"
        );
        assert!(
            r(Who::named("token:ops"), "file:///secret/key"),
            "ops' own deny list"
        );
        assert!(!allows(
            &policy,
            Who::named("token:ops"),
            Of::Names,
            "crash"
        ));
        assert!(!allows_everyone(
            &policy,
            Of::Resources,
            "file:///secret/key"
        ));
    }

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
