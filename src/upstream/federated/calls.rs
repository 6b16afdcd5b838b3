//! Calls by name through the federation (`tools/call`, `prompts/get`): routed by the name's
//! prefix, sent under the member's own name with the params otherwise as the client wrote
//! them.

use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::members::Fed;
use super::messages::with_params;
use super::overrides::{self, Named};
use super::policy::Of;
use super::route::{allowed, route_name, unknown, who};
use super::{State, Table};
use crate::error::Error;
use crate::jsonrpc::{self, Message};
use crate::upstream::{Call, Reply};

/// A `tools/call` or `prompts/get`: to the member its name routes to, under the member's own
/// name. Only the name is read: the params go on as the client sent them with that one
/// member's value replaced in place, unless fixed arguments are to be set (then they are
/// read whole, changed and written again).
pub(super) fn call_by_name(
    f: &State,
    t: &Table,
    fed: &Fed,
    call: &Call<'_>,
    method: &str,
    err: &dyn Fn(i64, &str) -> Reply,
) -> Result<Reply, Error> {
    let tools = method == "tools/call";
    let (what, named) = match tools {
        true => ("tool", Named::Tool),
        false => ("prompt", Named::Prompt),
    };
    let raw_name = call.msg.head().name;
    let name: String = raw_name
        .and_then(|n| serde_json::from_str(n.get()).ok())
        .unwrap_or_default();
    // A renamed tool or prompt is asked for by its new name only (`overrides.rs`).
    let target = route_name(t, &name).and_then(|(m, shown)| {
        let local = overrides::original(&m.policy, who(call), named, shown)?;
        allowed(m, call, Of::Names, local).then_some((m, local))
    });
    let Some((m, local)) = target else {
        return Ok(err(-32602, &unknown(t, what, &name)));
    };
    let spliced = raw_name
        .filter(|_| !(tools && overrides::fixes(&m.policy, who(call), local)))
        .and_then(|raw| renamed(&call.msg, raw, local));
    let msg = match spliced {
        Some(msg) => msg,
        None => {
            let mut p = call.msg.params_value().unwrap_or_else(|| json!({}));
            p["name"] = Value::String(local.to_owned());
            if tools {
                overrides::inject(&m.policy, who(call), local, &mut p);
            }
            with_params(&call.msg, &p)
        }
    };
    Ok(f.send(fed, m, msg, call))
}

/// `msg` with its `params.name` (`raw`, a slice of its params text) replaced by `name`, the
/// rest of the params byte for byte; `None` if `raw` is not inside them.
fn renamed(msg: &Message, raw: &RawValue, name: &str) -> Option<Message> {
    let text = msg.params.as_ref()?.get();
    let start = (raw.get().as_ptr() as usize).checked_sub(text.as_ptr() as usize)?;
    let end = start.checked_add(raw.get().len())?;
    let (head, tail) = (text.get(..start)?, text.get(end..)?);
    // Another `name` member (a duplicate key, however written) would be read by a parser that
    // keeps the first: then the params are read whole and written again instead.
    // (`head` ends with this member's own key, written plainly, and a colon.)
    let key = head.rfind("\"name\"")?;
    if head[key + "\"name\"".len()..].trim() != ":" {
        return None;
    }
    if [&head[..key], tail]
        .iter()
        .any(|t| t.contains("\"name\"") || t.contains("\\u"))
    {
        return None;
    }
    let quoted = serde_json::to_string(name).ok()?;
    let mut out = String::with_capacity(head.len() + quoted.len() + tail.len());
    out.push_str(head);
    out.push_str(&quoted);
    out.push_str(tail);
    Some(Message {
        jsonrpc: msg.jsonrpc.clone(),
        id: msg.id.clone(),
        method: msg.method.clone(),
        params: Some(jsonrpc::raw(out)),
        result: None,
        error: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(params: &str) -> Message {
        let text = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{params}}}"#);
        Message::parse(text.as_bytes()).expect("message")
    }

    #[test]
    fn the_name_is_replaced_in_place_and_nothing_else_moves() {
        let m = msg(
            r#"{ "arguments": {"b": 1, "a": [2.50, "x"]}, "name" : "demo__echo", "_meta": {} }"#,
        );
        let raw = m.head().name.expect("name");
        let out = renamed(&m, raw, "echo").expect("spliced");
        assert_eq!(
            out.params.as_ref().map(|p| p.get()),
            Some(r#"{ "arguments": {"b": 1, "a": [2.50, "x"]}, "name" : "echo", "_meta": {} }"#)
        );
        assert_eq!(out.id.as_ref().map(|i| i.get()), Some("1"));
    }

    #[test]
    fn another_name_anywhere_means_the_slow_way() {
        for params in [
            r#"{"name": "a__x", "name": "a__y"}"#,
            r#"{"n\u0061me": "a__x", "name": "a__y"}"#,
            r#"{"arguments": {"name": "n"}, "name": "a__y"}"#,
        ] {
            let m = msg(params);
            let raw = m.head().name.expect("name");
            assert!(renamed(&m, raw, "y").is_none(), "{params}");
        }
    }
}
