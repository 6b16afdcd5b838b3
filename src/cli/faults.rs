//! The config file's `[[fault]]` tables (issue #18): fault and mock rules, read from the same
//! file as the flags (`cli/file.rs` leaves the `fault` key to this file) and validated into a
//! [`FaultConfig`]. Errors name the file and line, as the flags' do.
//!
//! ```toml
//! [[fault]]
//! name = "slow-echo"                  # optional: the metric's `rule` label (default: 0, 1, …)
//! match = { tool = "echo" }           # upstream, method, tool, name, pointer (+ equals)
//! delay_ms = 250                      # or error = {…}, drop = true, mock = {…}, mock_from = "…"
//! probability = 0.5                   # default 1
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use toml::Spanned;

use crate::error::Error;
use crate::fault::{Action, FaultConfig, Match, Rule};

use super::file::line_of;

/// Longest rule name.
const MAX_NAME: usize = 64;

#[derive(Deserialize)]
struct Top {
    #[serde(default)]
    fault: Option<Spanned<Vec<Spanned<RawRule>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Option<Spanned<String>>,
    #[serde(rename = "match")]
    when: Option<Spanned<RawMatch>>,
    probability: Option<Spanned<f64>>,
    delay_ms: Option<Spanned<u64>>,
    error: Option<Spanned<RawError>>,
    drop: Option<Spanned<bool>>,
    mock: Option<Spanned<RawMock>>,
    mock_from: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMatch {
    upstream: Option<String>,
    method: Option<String>,
    tool: Option<String>,
    name: Option<String>,
    pointer: Option<String>,
    equals: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawError {
    code: i64,
    message: String,
    data: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMock {
    result: Value,
}

/// The fault rules of the config file `path` (none without one), for an instance whose
/// upstream is named `upstream`; `seed` is `--fault-seed`.
pub fn read(path: Option<&str>, upstream: &str, seed: Option<u64>) -> Result<FaultConfig, Error> {
    let Some(path) = path else {
        return Ok(FaultConfig {
            rules: Vec::new(),
            seed,
        });
    };
    let text = std::fs::read_to_string(path).map_err(|e| Error::Config(format!("{path}: {e}")))?;
    let base = Path::new(path).parent().unwrap_or(Path::new(""));
    let rules = rules_of(path, &text, upstream, base)?;
    Ok(FaultConfig { rules, seed })
}

/// The rules in `text` (the contents of `path`); `mock_from` paths are taken relative to
/// `base` (the file's directory).
pub fn rules_of(path: &str, text: &str, upstream: &str, base: &Path) -> Result<Vec<Rule>, Error> {
    let at = |span: std::ops::Range<usize>| format!("{path}:{}", line_of(text, span.start));
    let top: Top = toml::from_str(text).map_err(|e| {
        let line = e.span().map_or(String::from(path), at);
        let hint = if e.message().contains("expected a sequence") {
            " (write the rules as [[fault]] tables)"
        } else {
            ""
        };
        Error::Config(format!("{line}: [[fault]]: {}{hint}", e.message().trim()))
    })?;
    let Some(list) = top.fault else {
        return Ok(Vec::new());
    };
    let mut rules: Vec<Rule> = Vec::new();
    for (i, raw) in list.into_inner().into_iter().enumerate() {
        let span = raw.span();
        let raw = raw.into_inner();
        let label = raw
            .name
            .as_ref()
            .map_or_else(|| format!("#{i}"), |n| n.get_ref().clone());
        let bad = |span: std::ops::Range<usize>, why: &str| {
            Error::Config(format!("{}: [[fault]] {label}: {why}", at(span)))
        };
        let rule = rule(i, raw, upstream, base, &bad, span.clone())?;
        if rules.iter().any(|r| r.name == rule.name) {
            return Err(bad(span, "another rule has this name"));
        }
        rules.push(rule);
    }
    Ok(rules)
}

type Bad<'a> = &'a dyn Fn(std::ops::Range<usize>, &str) -> Error;

fn rule(
    i: usize,
    raw: RawRule,
    upstream: &str,
    base: &Path,
    bad: Bad<'_>,
    span: std::ops::Range<usize>,
) -> Result<Rule, Error> {
    let name = match raw.name {
        Some(n) => {
            let ok = !n.get_ref().is_empty()
                && n.get_ref().len() <= MAX_NAME
                && n.get_ref()
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
            if !ok {
                return Err(bad(
                    n.span(),
                    "`name`: 1-64 of A-Z a-z 0-9 _ . - (it is a metric label)",
                ));
            }
            n.into_inner()
        }
        None => i.to_string(),
    };
    let probability = match raw.probability {
        Some(p) if !(0.0..=1.0).contains(p.get_ref()) => {
            return Err(bad(p.span(), "`probability` must be from 0 to 1"));
        }
        Some(p) => p.into_inner(),
        None => 1.0,
    };
    let mut actions = Vec::new();
    if let Some(d) = raw.delay_ms {
        actions.push((
            d.span(),
            Action::Delay(Duration::from_millis(d.into_inner())),
        ));
    }
    if let Some(e) = raw.error {
        let s = e.span();
        let e = e.into_inner();
        actions.push((
            s,
            Action::Error {
                code: e.code,
                message: e.message,
                data: e.data,
            },
        ));
    }
    if let Some(d) = raw.drop {
        if !d.get_ref() {
            return Err(bad(d.span(), "`drop = false` does nothing: remove it"));
        }
        actions.push((d.span(), Action::Drop));
    }
    if let Some(m) = raw.mock {
        actions.push((m.span(), Action::Mock(m.into_inner().result)));
    }
    if let Some(t) = raw.mock_from {
        if t.get_ref().is_empty() {
            return Err(bad(t.span(), "`mock_from`: empty tape path"));
        }
        let p = PathBuf::from(t.get_ref());
        let p = if p.is_relative() { base.join(p) } else { p };
        actions.push((t.span(), Action::MockFrom(p)));
    }
    let action = match actions.len() {
        1 => actions.remove(0).1,
        0 => {
            return Err(bad(
                span,
                "no action: give one of delay_ms, error, drop, mock, mock_from",
            ));
        }
        _ => {
            return Err(bad(
                actions[1].0.clone(),
                "give only one of delay_ms, error, drop, mock, mock_from",
            ));
        }
    };
    let (when, when_span) = match raw.when {
        Some(m) => {
            let s = m.span();
            (m.into_inner(), s)
        }
        None => (RawMatch::default(), span),
    };
    let when = validate_match(when, &action, upstream, &|why| bad(when_span.clone(), why))?;
    Ok(Rule {
        name,
        when,
        action,
        probability,
    })
}

fn validate_match(
    m: RawMatch,
    action: &Action,
    upstream: &str,
    bad: &dyn Fn(&str) -> Error,
) -> Result<Match, Error> {
    if let Some(u) = &m.upstream
        && u != upstream
    {
        return Err(bad(&format!(
            "`match.upstream` {u:?} names no upstream (this instance's is {upstream:?})"
        )));
    }
    if m.tool.is_some() && m.method.as_deref().is_some_and(|x| x != "tools/call") {
        return Err(bad(
            "`match.tool` is a tools/call's tool: method must be tools/call",
        ));
    }
    if let Some(p) = &m.pointer
        && !p.is_empty()
        && !p.starts_with('/')
    {
        return Err(bad(
            "`match.pointer` is a JSON pointer into params: it starts with /",
        ));
    }
    if m.equals.is_some() && m.pointer.is_none() {
        return Err(bad("`match.equals` needs `match.pointer`"));
    }
    if m.method.as_deref() == Some("initialize")
        && matches!(action, Action::Mock(_) | Action::MockFrom(_))
    {
        return Err(bad(
            "a mock cannot answer initialize (the session would have no upstream)",
        ));
    }
    Ok(Match {
        upstream: m.upstream,
        method: m.method,
        tool: m.tool,
        name: m.name,
        pointer: m.pointer,
        equals: m.equals,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> Result<Vec<Rule>, Error> {
        rules_of("f.toml", text, "demo", Path::new("/etc/sc"))
    }

    fn err(text: &str) -> String {
        rules(text).unwrap_err().to_string()
    }

    #[test]
    fn every_action_and_match_key() {
        let got = rules(
            "bind = \"127.0.0.1:0\"\n\
             [[fault]]\nname = \"slow\"\nmatch = { tool = \"echo\", upstream = \"demo\" }\n\
             delay_ms = 250\nprobability = 0.5\n\
             [[fault]]\nmatch = { method = \"prompts/get\", pointer = \"/arguments/x\", equals = 3 }\n\
             error = { code = -32000, message = \"no\", data = { a = 1 } }\n\
             [[fault]]\ndrop = true\nprobability = 0\n\
             [[fault]]\nmock = { result = { content = [] } }\n[fault.match]\nname = \"r\"\n\
             [[fault]]\nmock_from = \"t.jsonl\"\n",
        )
        .expect("valid");
        assert_eq!(got.len(), 5);
        assert_eq!(got[0].name, "slow");
        assert_eq!(got[0].action, Action::Delay(Duration::from_millis(250)));
        assert_eq!(got[0].probability, 0.5);
        assert_eq!(got[1].name, "1");
        assert_eq!(got[1].when.equals, Some(serde_json::json!(3)));
        assert_eq!(got[1].action.label(), "error");
        assert_eq!(got[2].action, Action::Drop);
        assert_eq!(got[2].probability, 0.0);
        assert_eq!(got[3].when.name.as_deref(), Some("r"));
        assert_eq!(
            got[3].action,
            Action::Mock(serde_json::json!({"content": []}))
        );
        assert_eq!(
            got[4].action,
            Action::MockFrom(PathBuf::from("/etc/sc/t.jsonl"))
        );
        assert!(rules("bind = \"x\"\n").expect("no rules").is_empty());
    }

    #[test]
    fn bad_rules_name_their_line() {
        let e = err("\n[[fault]]\ndelay_ms = 1\nwhat = 2\n");
        assert!(e.starts_with("f.toml:4: [[fault]]"), "{e}");
        assert!(e.contains("unknown field `what`"), "{e}");
        let e = err("[[fault]]\nmatch = { tool = \"a\" }\n");
        assert!(e.starts_with("f.toml:1:") && e.contains("no action"), "{e}");
        let e = err("[[fault]]\ndelay_ms = 1\n\ndrop = true\n");
        assert!(e.starts_with("f.toml:4:") && e.contains("only one"), "{e}");
        let e = err("[[fault]]\ndrop = true\nprobability = 1.5\n");
        assert!(
            e.starts_with("f.toml:3:") && e.contains("from 0 to 1"),
            "{e}"
        );
        let e = err("[[fault]]\ndrop = true\nmatch = { upstream = \"other\" }\n");
        assert!(
            e.starts_with("f.toml:3:") && e.contains("names no upstream"),
            "{e}"
        );
        let e = err("[[fault]]\ndrop = true\nmatch = { pointer = \"a\" }\n");
        assert!(e.contains("starts with /"), "{e}");
        let e = err("[[fault]]\ndrop = true\nmatch = { equals = 1 }\n");
        assert!(e.contains("needs `match.pointer`"), "{e}");
        let e = err("[[fault]]\nmock = { result = {} }\nmatch = { method = \"initialize\" }\n");
        assert!(e.contains("cannot answer initialize"), "{e}");
        let e = err("[[fault]]\nname = \"a b\"\ndrop = true\n");
        assert!(
            e.starts_with("f.toml:2:") && e.contains("metric label"),
            "{e}"
        );
        let e = err("[[fault]]\nname = \"a\"\ndrop = true\n[[fault]]\nname = \"a\"\ndrop = true\n");
        assert!(e.contains("another rule has this name"), "{e}");
        let e = err("[fault]\ndrop = true\n");
        assert!(e.contains("[[fault]] tables"), "{e}");
        let e = err("[[fault]]\nerror = { code = 1 }\n");
        assert!(e.starts_with("f.toml:2:") && e.contains("message"), "{e}");
        let e = err("[[fault]]\ndrop = false\n");
        assert!(e.contains("does nothing"), "{e}");
    }
}
