//! The policy keys of `[upstream.NAME]` tables: `allow` and `deny` lists, and
//! `[upstream.NAME.tools.TOOL]` tables (how one tool is shown and called).
//!
//! Owns: reading patterns into [`RulesConfig`], and `name` (a rename), `description` and
//! `arguments` (fixed values, injected on every call and left out of the schema clients see)
//! into a [`ToolOverride`]. Must not touch: what they do to lists and calls
//! (`crate::upstream::federated`).

use toml::Spanned;
use toml::de::{DeString, DeValue};

use super::file::line_of;
use crate::config::{RulesConfig, ToolOverride};
use crate::error::Error;

/// Tools one table may override, and fixed arguments one tool may have, at most.
const MAX: usize = 256;

/// The overrides in `tools` (the value of a member's `tools` key).
pub fn tools(
    path: &str,
    text: &str,
    tools: &Spanned<DeValue<'_>>,
) -> Result<Vec<ToolOverride>, Error> {
    let at = |offset: usize| format!("{path}:{}", line_of(text, offset));
    let DeValue::Table(tools) = tools.get_ref() else {
        return Err(Error::Config(format!(
            "{}: `tools`: tables, one per tool ([upstream.NAME.tools.TOOL])",
            at(tools.span().start)
        )));
    };
    if tools.len() > MAX {
        return Err(Error::Config(format!("{}: more than {MAX} tools", at(0))));
    }
    let mut entries: Vec<_> = tools.iter().collect();
    entries.sort_by_key(|(k, _)| k.span().start);
    let mut out: Vec<ToolOverride> = Vec::new();
    for (tool, keys) in entries {
        let here = at(tool.span().start);
        let DeValue::Table(keys) = keys.get_ref() else {
            return Err(Error::Config(format!(
                "{here}: a tool's overrides are a table"
            )));
        };
        let mut o = ToolOverride {
            tool: DeString::to_string(tool.get_ref()),
            ..ToolOverride::default()
        };
        for (k, v) in keys {
            let k: &str = k.get_ref();
            let bad = |why: &str| Error::Config(format!("{}: `{k}`: {why}", at(v.span().start)));
            match (k, v.get_ref()) {
                ("name", DeValue::String(s)) => {
                    let ok = !s.is_empty()
                        && s.len() <= 64
                        && s.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
                    if !ok {
                        return Err(bad("1 to 64 of A-Z a-z 0-9 _ - ."));
                    }
                    o.rename = Some(DeString::to_string(s));
                }
                ("description", DeValue::String(s)) => o.description = Some(DeString::to_string(s)),
                ("arguments", DeValue::Table(args)) => {
                    if args.len() > MAX {
                        return Err(bad("too many arguments"));
                    }
                    for (name, value) in args {
                        let value = json(value).ok_or_else(|| {
                            bad("values: strings, numbers, booleans, lists, tables")
                        })?;
                        o.fixed.insert(DeString::to_string(name.get_ref()), value);
                    }
                }
                ("name" | "description", _) => return Err(bad("must be a string")),
                ("arguments", _) => return Err(bad("a table of argument values")),
                _ => {
                    return Err(Error::Config(format!(
                        "{}: unknown key `{k}` (name, description or arguments)",
                        at(v.span().start)
                    )));
                }
            }
        }
        if let Some(r) = &o.rename
            && let Some(other) = out
                .iter()
                .find(|x| x.rename.as_ref() == Some(r) || &x.tool == r)
        {
            return Err(Error::Config(format!(
                "{here}: `name = {r:?}` is also tool {}'s",
                other.tool
            )));
        }
        out.push(o);
    }
    Ok(out)
}

/// Patterns in one `allow` or `deny` list (and principals of a table), at most.
pub const MAX_PATTERNS: usize = 256;

/// Reads an `allow`, `deny`, `allow-resources` or `deny-resources` list into `rules`.
pub fn rule(
    rules: &mut RulesConfig,
    key: &str,
    value: &Spanned<DeValue<'_>>,
) -> Result<(), &'static str> {
    let resources = key.ends_with("-resources");
    let DeValue::Array(items) = value.get_ref() else {
        return Err(if resources {
            "a list of resource URIs and URI templates (* and ? match)"
        } else {
            "a list of tool and prompt names (* and ? match)"
        });
    };
    if items.len() > MAX_PATTERNS {
        return Err("too many patterns");
    }
    let longest = if resources { 1024 } else { 128 };
    let patterns = items
        .iter()
        .map(|v| match v.get_ref() {
            DeValue::String(s) if !s.is_empty() && s.len() <= longest => Ok(DeString::to_string(s)),
            _ if resources => Err("patterns are strings of 1 to 1,024 characters"),
            _ => Err("patterns are strings of 1 to 128 characters"),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let slot = match key {
        "allow" => &mut rules.allow,
        "deny" => &mut rules.deny,
        "allow-resources" => &mut rules.allow_resources,
        _ => &mut rules.deny_resources,
    };
    *slot = Some(patterns);
    Ok(())
}

/// The keys of a rule list, in a member table and in a principal's.
pub const RULE_KEYS: [&str; 4] = ["allow", "deny", "allow-resources", "deny-resources"];

/// A TOML value as JSON.
fn json(v: &Spanned<DeValue<'_>>) -> Option<serde_json::Value> {
    use serde_json::Value;
    Some(match v.get_ref() {
        DeValue::String(s) => Value::String(DeString::to_string(s)),
        DeValue::Integer(i) => Value::from(i64::from_str_radix(i.as_str(), i.radix()).ok()?),
        DeValue::Float(f) => Value::from(f.as_str().parse::<f64>().ok()?),
        DeValue::Boolean(b) => Value::Bool(*b),
        DeValue::Array(items) => Value::Array(items.iter().map(json).collect::<Option<_>>()?),
        DeValue::Table(t) => Value::Object(
            t.iter()
                .map(|(k, v)| Some((DeString::to_string(k.get_ref()), json(v)?)))
                .collect::<Option<_>>()?,
        ),
        _ => return None,
    })
}

/// Ok when the tool names one principal sees stay apart: its own overrides (`own`) over the
/// member's (`member`), no shown name taken twice (a rename that is another tool's name or
/// another rename); else which clash.
pub fn renames_apart(member: &[ToolOverride], own: &[ToolOverride]) -> Result<(), String> {
    let effective: Vec<&ToolOverride> = own
        .iter()
        .chain(
            member
                .iter()
                .filter(|m| own.iter().all(|o| o.tool != m.tool)),
        )
        .collect();
    for o in &effective {
        let Some(r) = &o.rename else { continue };
        if let Some(other) = effective
            .iter()
            .find(|x| x.tool != o.tool && (x.rename.as_ref() == Some(r) || &x.tool == r))
        {
            return Err(format!(
                "tool {} is shown as {r:?}, as tool {} is",
                o.tool, other.tool
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use toml::de::DeTable;

    fn read(text: &str) -> Result<Vec<ToolOverride>, Error> {
        let table = DeTable::parse(text).expect("TOML");
        let (_, v) = table.get_ref().iter().next().expect("a key");
        tools("f.toml", text, v)
    }

    #[test]
    fn renames_descriptions_and_fixed_arguments() {
        let got = read(
            "[tools.echo]\nname = \"say\"\ndescription = \"Says it.\"\n\
             arguments = { loud = true, times = 2, who = { name = \"x\" } }\n",
        )
        .expect("valid");
        assert_eq!(got[0].tool, "echo");
        assert_eq!(got[0].rename.as_deref(), Some("say"));
        assert_eq!(got[0].fixed["times"], 2);
        assert_eq!(got[0].fixed["who"]["name"], "x");
        let e = read("[tools.a]\nname = \"b\"\n[tools.c]\nname = \"b\"\n").unwrap_err();
        assert!(
            e.to_string()
                .contains("f.toml:3: `name = \"b\"` is also tool a's"),
            "{e}"
        );
        let e = read("[tools.a]\nnmae = \"b\"\n").unwrap_err();
        assert!(
            e.to_string().contains("f.toml:2: unknown key `nmae`"),
            "{e}"
        );
    }
}
