//! `[upstream.NAME]` tables of the config file: several named upstreams behind one endpoint.
//!
//! Owns: reading the tables into a [`FederationConfig`]. Must not touch: what the flags mean.
//! Each table's keys are the upstream flags of `shadowcat reverse` (with three short forms:
//! `url` for `upstream`, `headers` for `upstream-header`, `env` for `stdio-env`) plus
//! `prefix`, the policy keys (`cli/overrides.rs`) and `request-timeout` (the member's own
//! deadline, at most the file's: it is not given to the member's upstream, so that a reload
//! changing it updates the member in place); a member is built by the same parser and
//! validation as the one-upstream case, from the file's top-level keys (timeouts, sizes)
//! with its own keys on top.

use std::time::Duration;

use toml::Spanned;
use toml::de::{DeString, DeTable, DeValue};

use super::ReverseArgs;
use super::file::{line_of, scalar};
use super::overrides::Over;
use crate::config::{FederationConfig, MemberConfig, MemberRecord, PolicyConfig, UpstreamConfig};
use crate::error::Error;

/// At most this many named upstreams.
pub const MAX_MEMBERS: usize = 32;

/// Flags a table may set: they say what the upstream is and how it is reached. `(key, flag,
/// kind)`; a top-level key among the first seven is refused when there are tables.
const MEMBER_KEYS: [(&str, &str, Kind); 29] = [
    ("stdio", "stdio", Kind::One),
    // A list: replicas of one server (a string stays one URL).
    ("url", "upstream", Kind::List),
    ("upstream", "upstream", Kind::List),
    ("replica-failures", "replica-failures", Kind::One),
    ("replica-backoff", "replica-backoff", Kind::One),
    ("replica-backoff-max", "replica-backoff-max", Kind::One),
    (
        "replica-probe-interval",
        "replica-probe-interval",
        Kind::One,
    ),
    ("stdio-mode", "stdio-mode", Kind::One),
    ("stdio-children", "stdio-children", Kind::One),
    ("stdio-spares", "stdio-spares", Kind::One),
    ("stdio-clear-env", "stdio-clear-env", Kind::Switch),
    ("env", "stdio-env", Kind::List),
    ("stdio-env", "stdio-env", Kind::List),
    ("headers", "upstream-header", Kind::List),
    ("upstream-header", "upstream-header", Kind::List),
    ("upstream-ca", "upstream-ca", Kind::One),
    ("upstream-client-cert", "upstream-client-cert", Kind::One),
    ("upstream-client-key", "upstream-client-key", Kind::One),
    ("upstream-pool", "upstream-pool", Kind::One),
    (
        "upstream-connect-timeout",
        "upstream-connect-timeout",
        Kind::One,
    ),
    (
        "upstream-reconnect-max",
        "upstream-reconnect-max",
        Kind::One,
    ),
    ("stdio-queue", "stdio-queue", Kind::One),
    ("max-message", "max-message", Kind::One),
    ("max-call-buffer", "max-call-buffer", Kind::One),
    ("max-subscriptions", "max-subscriptions", Kind::One),
    ("session-evict-idle", "session-evict-idle", Kind::One),
    // Its own tapes (`crate::upstream::recorded`): taken from the table only.
    ("record", "record", Kind::One),
    ("record-max-bytes", "record-max-bytes", Kind::One),
    ("record-keep", "record-keep", Kind::One),
];

/// Top-level keys that choose or reach the one upstream: with tables they belong in a table.
const CHOOSING: [&str; 10] = [
    "upstream",
    "stdio",
    "stdio-mode",
    "stdio-children",
    "stdio-spares",
    "stdio-env",
    "stdio-clear-env",
    "upstream-header",
    "upstream-client-cert",
    "upstream-client-key",
];

/// Flags the flag parser expands itself (`${VAR}`), so their values stay out of what is shown.
const EXPANDED_BY_THE_FLAG: [&str; 2] = ["upstream-header", "stdio-env"];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    One,
    Switch,
    List,
}

/// One table, read.
struct Spec {
    name: String,
    at: String,
    prefix: Option<String>,
    flags: Vec<(String, Vec<String>)>,
    policy: PolicyConfig,
    request_timeout: Option<Duration>,
}

/// True when `s` is made of what a tool name may hold and model APIs take: ASCII letters,
/// digits, `_`, `-` and `.`.
fn name_chars(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Checks `--name-separator`.
pub fn check_separator(sep: &str) -> Result<(), Error> {
    if sep.is_empty() || sep.len() > 8 || !name_chars(sep) {
        return Err(Error::Config(format!(
            "--name-separator {sep:?}: 1 to 8 of A-Z a-z 0-9 _ - ."
        )));
    }
    Ok(())
}

/// The named upstreams of config file `path`, or `None` when it has no `[upstream.NAME]`
/// tables (then the file describes one upstream, as the flags do). `self_exe` runs the
/// built-in demo server.
pub fn federation(
    path: &str,
    sep: &str,
    self_exe: &str,
) -> Result<Option<FederationConfig>, Error> {
    let text = super::file::read_text(path)?;
    let top = super::file::flags_of(path, &text)?;
    federation_from(path, &text, &top, sep, self_exe)
}

/// Like [`federation`], for the file's `text`, its members built on `top` as the file's
/// top-level flags (a reload keeps the values in force of keys that need a restart).
pub fn federation_from(
    path: &str,
    text: &str,
    top: &[(String, Vec<String>)],
    sep: &str,
    self_exe: &str,
) -> Result<Option<FederationConfig>, Error> {
    let specs = specs(path, text)?;
    if specs.is_empty() {
        return Ok(None);
    }
    check_separator(sep)?;
    if let Some((k, _)) = top.iter().find(|(k, _)| CHOOSING.contains(&k.as_str())) {
        return Err(Error::Config(format!(
            "{path}: `{k}` at the top level and [upstream.NAME] tables: put it in a table"
        )));
    }
    let mut members: Vec<MemberConfig> = Vec::new();
    for spec in specs {
        let prefix = spec.prefix.clone().unwrap_or_else(|| spec.name.clone());
        if prefix.contains(sep) {
            return Err(Error::Config(format!(
                "{}: prefix {prefix:?} holds the separator {sep:?}",
                spec.at
            )));
        }
        if let Some(m) = members.iter().find(|m| m.prefix == prefix) {
            let why = if prefix.is_empty() {
                "two upstreams without a prefix: their names could collide".to_owned()
            } else {
                format!("prefix {prefix:?} is also upstream {}'s", m.name)
            };
            return Err(Error::Config(format!("{}: {why}", spec.at)));
        }
        let (upstream, record) = build(&spec, top, self_exe)?;
        members.push(MemberConfig {
            name: spec.name,
            prefix,
            upstream,
            policy: spec.policy,
            request_timeout: spec.request_timeout,
            record,
        });
    }
    Ok(Some(FederationConfig {
        separator: sep.to_owned(),
        members,
    }))
}

/// A member's upstream: the file's top-level flags with the table's on top, through the
/// same parser and validation as one upstream; and its `record` (the table's own keys only).
fn build(
    spec: &Spec,
    top: &[(String, Vec<String>)],
    self_exe: &str,
) -> Result<(UpstreamConfig, Option<MemberRecord>), Error> {
    let mut args = Vec::new();
    for (flag, values) in top {
        // The redaction and audit flags are the proxy's (and apply to the member's tapes).
        let proxys = ["redact", "audit-log", "audit-arguments"].contains(&flag.as_str());
        if proxys || spec.flags.iter().any(|(f, _)| f == flag) {
            continue;
        }
        push(&mut args, flag, values);
    }
    for (flag, values) in &spec.flags {
        push(&mut args, flag, values);
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let parsed = <ReverseArgs as argh::FromArgs>::from_args(&["shadowcat", "reverse"], &refs)
        .map_err(|e| Error::Config(format!("{}: {}", spec.at, e.output.trim())))?;
    let config = parsed
        .into_config(self_exe)
        .map_err(|e| Error::Config(format!("{}: upstream {}: {e}", spec.at, spec.name)))?;
    let longest = config.proxy.request_timeout;
    if let Some(t) = spec.request_timeout.filter(|t| *t > longest) {
        return Err(Error::Config(format!(
            "{}: upstream {}: request-timeout {t:?} is longer than the file's request-timeout \
             ({longest:?}): a member's may only be shorter",
            spec.at, spec.name
        )));
    }
    let set = |flag: &str| spec.flags.iter().any(|(f, _)| f == flag);
    let t = config.tapes;
    let record = match t.record {
        Some(dir) if set("record") => Some(MemberRecord {
            dir,
            max_bytes: set("record-max-bytes").then_some(t.max_bytes),
            keep: set("record-keep").then_some(t.keep),
        }),
        _ if set("record-max-bytes") || set("record-keep") => {
            return Err(Error::Config(format!(
                "{}: record-max-bytes and record-keep go with `record` in the table",
                spec.at
            )));
        }
        _ => None,
    };
    Ok((config.upstream, record))
}

fn push(args: &mut Vec<String>, flag: &str, values: &[String]) {
    if values.is_empty() {
        args.push(format!("--{flag}"));
    }
    for v in values {
        args.push(format!("--{flag}"));
        args.push(v.clone());
    }
}

/// The `[upstream.NAME]` tables of `text`, in the file's order.
fn specs(path: &str, text: &str) -> Result<Vec<Spec>, Error> {
    let table = DeTable::parse(text).map_err(|e| Error::Config(format!("{path}: {e}")))?;
    let at = |offset: usize| format!("{path}:{}", line_of(text, offset));
    let Some((_, value)) = table
        .get_ref()
        .iter()
        .find(|(k, _)| k.get_ref() == "upstream")
    else {
        return Ok(Vec::new());
    };
    let DeValue::Table(tables) = value.get_ref() else {
        return Ok(Vec::new()); // `upstream = "URL"`: the one-upstream flag
    };
    let mut entries: Vec<_> = tables.iter().collect();
    entries.sort_by_key(|(k, _)| k.span().start);
    if entries.len() > MAX_MEMBERS {
        return Err(Error::Config(format!(
            "{path}: more than {MAX_MEMBERS} [upstream.NAME] tables"
        )));
    }
    let mut out = Vec::new();
    for (key, value) in entries {
        let name: &str = key.get_ref();
        let here = at(key.span().start);
        if name.is_empty() || name.len() > 64 || !name_chars(name) {
            return Err(Error::Config(format!(
                "{here}: upstream name {name:?}: 1 to 64 of A-Z a-z 0-9 _ - ."
            )));
        }
        let DeValue::Table(keys) = value.get_ref() else {
            return Err(Error::Config(format!(
                "{here}: `upstream.{name}` must be a table ([upstream.{name}])"
            )));
        };
        out.push(spec(path, text, name, here, keys)?);
    }
    Ok(out)
}

/// One table's keys.
fn spec(
    path: &str,
    text: &str,
    name: &str,
    here: String,
    keys: &DeTable<'_>,
) -> Result<Spec, Error> {
    let at = |offset: usize| format!("{path}:{}", line_of(text, offset));
    let mut prefix = None;
    let mut flags: Vec<(String, Vec<String>)> = Vec::new();
    let mut policy = PolicyConfig::default();
    let mut request_timeout = None;
    for (key, value) in keys {
        let k: &str = key.get_ref();
        let bad = |why: &str| Error::Config(format!("{}: `{k}`: {why}", at(value.span().start)));
        if super::overrides::RULE_KEYS.contains(&k) {
            super::overrides::rule(&mut policy.rules, k, value).map_err(bad)?;
            continue;
        }
        if k == "tools" {
            policy.tools = super::overrides::overrides(path, text, value, Over::Tools)?;
            continue;
        }
        if k == "prompts" {
            policy.prompts = super::overrides::overrides(path, text, value, Over::Prompts)?;
            continue;
        }
        if k == "request-timeout" {
            let v = scalar(value).ok_or_else(|| bad("a duration such as \"30s\""))?;
            let what = format!("{}: `{k}`", at(value.span().start));
            // Refuses 0 too.
            let t = crate::util::duration(&what, &super::expand_env(&what, &v)?)?;
            request_timeout = Some(t);
            continue;
        }
        if k == "principal" {
            policy.principals = super::overrides::principals(path, text, value)?;
            continue;
        }
        if k == "prefix" {
            let p = match value.get_ref() {
                DeValue::String(s) => DeString::to_string(s),
                _ => return Err(bad("must be a string")),
            };
            if p.len() > 64 || !name_chars(&p) {
                return Err(bad("0 to 64 of A-Z a-z 0-9 _ - ."));
            }
            prefix = Some(p);
            continue;
        }
        let Some(&(_, flag, kind)) = MEMBER_KEYS.iter().find(|(key, _, _)| *key == k) else {
            return Err(Error::Config(format!(
                "{}: unknown key `{k}` in [upstream.{name}] (stdio, url, prefix, headers, env, \
                 allow, deny, allow-resources, deny-resources, principal, tools, prompts, \
                 request-timeout, or an upstream flag such as stdio-mode)",
                at(key.span().start)
            )));
        };
        if flags.iter().any(|(f, _)| f == flag) {
            return Err(bad("given twice"));
        }
        let args = values(value, kind).map_err(bad)?;
        let args = if EXPANDED_BY_THE_FLAG.contains(&flag) {
            args
        } else {
            let what = format!("{}: `{k}`", at(value.span().start));
            args.iter()
                .map(|a| super::expand_env(&what, a))
                .collect::<Result<_, _>>()?
        };
        if kind == Kind::Switch
            && args.is_empty()
            && matches!(value.get_ref(), DeValue::Boolean(false))
        {
            continue;
        }
        flags.push((flag.to_owned(), args));
    }
    if !flags.iter().any(|(f, _)| f == "stdio" || f == "upstream") {
        return Err(Error::Config(format!(
            "{here}: [upstream.{name}] needs `stdio = \"command\"` or `url = \"http://...\"`"
        )));
    }
    for (who, rules) in &policy.principals {
        super::overrides::renames_apart(&policy.tools, &rules.tools)
            .and_then(|()| super::overrides::renames_apart(&policy.prompts, &rules.prompts))
            .map_err(|why| Error::Config(format!("{here}: principal {who:?}: {why}")))?;
    }
    Ok(Spec {
        name: name.to_owned(),
        at: here,
        prefix,
        flags,
        policy,
        request_timeout,
    })
}

/// A key's value as flag arguments.
fn values(value: &Spanned<DeValue<'_>>, kind: Kind) -> Result<Vec<String>, &'static str> {
    match (value.get_ref(), kind) {
        (DeValue::Boolean(_), Kind::Switch) => Ok(Vec::new()),
        (_, Kind::Switch) => Err("a switch: write true or false"),
        (DeValue::Array(items), Kind::List) => items
            .iter()
            .map(|v| scalar(v).ok_or("elements must be strings"))
            .collect(),
        (DeValue::Array(_), _) => Err("takes one value, not a list"),
        _ => scalar(value)
            .map(|s| vec![s])
            .ok_or("must be a string or a number"),
    }
}

#[cfg(test)]
#[path = "members_tests.rs"]
mod tests;
