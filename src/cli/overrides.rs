//! The policy keys of `[upstream.NAME]` tables: `allow` and `deny` lists, principals' tables,
//! `[upstream.NAME.tools.TOOL]` tables (how one tool is shown and called) and
//! `[upstream.NAME.prompts.PROMPT]` tables (how one prompt is shown and fetched).
//!
//! Owns: reading patterns into [`RulesConfig`], and `name` (a rename), `description` and, for
//! a tool, `arguments` (fixed values, injected on every call and left out of the schema
//! clients see) into a [`ToolOverride`]. Must not touch: what they do to lists and calls
//! (`crate::upstream::federated`).

use toml::Spanned;
use toml::de::{DeString, DeValue};

use super::file::line_of;
use crate::config::{RulesConfig, ToolOverride};
use crate::error::Error;

/// Tools (or prompts) one table may override, and fixed arguments one tool may have, at most.
const MAX: usize = 256;

/// What a table of overrides is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Over {
    /// `tools`: `name`, `description`, `arguments`.
    Tools,
    /// `prompts`: `name`, `description`.
    Prompts,
}

impl Over {
    /// The key of the table (`tools`, `prompts`).
    pub fn key(self) -> &'static str {
        match self {
            Over::Tools => "tools",
            Over::Prompts => "prompts",
        }
    }

    fn one(self) -> &'static str {
        match self {
            Over::Tools => "tool",
            Over::Prompts => "prompt",
        }
    }
}

/// The overrides in `table`, the value of a member's (or a principal's) `tools` or
/// `prompts` key.
pub fn overrides(
    path: &str,
    text: &str,
    table: &Spanned<DeValue<'_>>,
    over: Over,
) -> Result<Vec<ToolOverride>, Error> {
    let at = |offset: usize| format!("{path}:{}", line_of(text, offset));
    let (key, one) = (over.key(), over.one());
    let DeValue::Table(tools) = table.get_ref() else {
        return Err(Error::Config(format!(
            "{}: `{key}`: tables, one per {one} ([upstream.NAME.{key}.{})",
            at(table.span().start),
            one.to_uppercase()
        )));
    };
    if tools.len() > MAX {
        return Err(Error::Config(format!(
            "{}: more than {MAX} {key}",
            at(table.span().start)
        )));
    }
    let mut entries: Vec<_> = tools.iter().collect();
    entries.sort_by_key(|(k, _)| k.span().start);
    let mut out: Vec<ToolOverride> = Vec::new();
    for (tool, keys) in entries {
        let here = at(tool.span().start);
        let DeValue::Table(keys) = keys.get_ref() else {
            return Err(Error::Config(format!(
                "{here}: a {one}'s overrides are a table"
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
                ("arguments", DeValue::Table(args)) if over == Over::Tools => {
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
                ("arguments", _) if over == Over::Tools => {
                    return Err(bad("a table of argument values"));
                }
                _ => {
                    let keys = match over {
                        Over::Tools => "name, description or arguments",
                        Over::Prompts => "name or description",
                    };
                    return Err(Error::Config(format!(
                        "{}: unknown key `{k}` ({keys})",
                        at(v.span().start)
                    )));
                }
            }
        }
        // Two entries shown under one name: only one of them could be reached.
        let shown = |x: &ToolOverride| x.rename.clone().unwrap_or_else(|| x.tool.clone());
        let mine = shown(&o);
        let clash = out
            .iter()
            .find(|x| shown(x) == mine || (o.rename.is_some() && x.tool == mine));
        if let Some(other) = clash {
            return Err(Error::Config(match &o.rename {
                Some(r) => format!("{here}: `name = {r:?}` is also {one} {}'s", other.tool),
                None => format!(
                    "{here}: {one} {mine} keeps its name, which {one} {} is renamed to",
                    other.tool
                ),
            }));
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

/// The principals' tables in `value` (a member's `principal` key), in the file's order:
/// `[upstream.NAME.principal."P"]` with rule lists, `tools` and `prompts`.
pub fn principals(
    path: &str,
    text: &str,
    value: &Spanned<DeValue<'_>>,
) -> Result<Vec<(String, RulesConfig)>, Error> {
    let at = |offset: usize| format!("{path}:{}", line_of(text, offset));
    let bad = |why: &str| Error::Config(format!("{}: `principal`: {why}", at(value.span().start)));
    let DeValue::Table(who) = value.get_ref() else {
        return Err(bad("a table: [upstream.NAME.principal.\"token:NAME\"]"));
    };
    if who.len() > MAX_PATTERNS {
        return Err(bad("too many principals"));
    }
    let mut entries: Vec<_> = who.iter().collect();
    entries.sort_by_key(|(k, _)| k.span().start);
    let mut out = Vec::new();
    for (p, lists) in entries {
        let here = at(p.span().start);
        let DeValue::Table(lists) = lists.get_ref() else {
            return Err(Error::Config(format!(
                "{here}: a principal's rules are a table"
            )));
        };
        let mut rules = RulesConfig::default();
        for (lk, lv) in lists {
            let lk: &str = lk.get_ref();
            if lk == "tools" {
                rules.tools = overrides(path, text, lv, Over::Tools)?;
                continue;
            }
            if lk == "prompts" {
                rules.prompts = overrides(path, text, lv, Over::Prompts)?;
                continue;
            }
            if !RULE_KEYS.contains(&lk) {
                return Err(Error::Config(format!(
                    "{}: unknown key `{lk}` (allow, deny, allow-resources, deny-resources, \
                     tools or prompts)",
                    at(lv.span().start)
                )));
            }
            rule(&mut rules, lk, lv)
                .map_err(|why| Error::Config(format!("{}: `{lk}`: {why}", at(lv.span().start))))?;
        }
        let name: &str = p.get_ref();
        out.push((name.to_owned(), rules));
    }
    Ok(out)
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

/// Ok when the tool (or prompt) names one principal sees stay apart: its own overrides (`own`) over the
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
                "{} is shown as {r:?}, as {} is",
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
        overrides("f.toml", text, v, Over::Tools)
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

    fn prompts(text: &str) -> Result<Vec<ToolOverride>, Error> {
        let table = DeTable::parse(text).expect("TOML");
        let (_, v) = table.get_ref().iter().next().expect("a key");
        overrides("f.toml", text, v, Over::Prompts)
    }

    #[test]
    fn prompts_are_renamed_and_described_without_arguments() {
        let got =
            prompts("[prompts.test_simple_prompt]\nname = \"simple\"\ndescription = \"Short.\"\n")
                .expect("valid");
        assert_eq!(got[0].tool, "test_simple_prompt");
        assert_eq!(got[0].rename.as_deref(), Some("simple"));
        assert_eq!(got[0].description.as_deref(), Some("Short."));
        assert!(got[0].fixed.is_empty());
        for (text, want) in [
            (
                "[prompts.a]\narguments = { x = 1 }\n",
                "f.toml:2: unknown key `arguments` (name or description)",
            ),
            (
                "[prompts.a]\nname = \"b\"\n[prompts.c]\nname = \"b\"\n",
                "f.toml:3: `name = \"b\"` is also prompt a's",
            ),
            (
                "[prompts.a]\nname = \"c\"\n[prompts.c]\ndescription = \"x\"\n",
                "f.toml:3: prompt c keeps its name, which prompt a is renamed to",
            ),
            ("[prompts.a]\nname = \"b c\"\n", "f.toml:2: `name`: 1 to 64"),
            ("prompts = 1\n", "`prompts`: tables, one per prompt"),
        ] {
            let e = prompts(text).expect_err(text).to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }
}
