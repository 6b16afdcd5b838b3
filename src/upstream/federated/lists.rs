//! Requests through the federation: merged `*/list` answers, names with their member's
//! prefix, and routing a call to the member it names.
//!
//! Names: a tool or prompt of member `m` is `<prefix><separator><name>` (just `<name>` with
//! `prefix = ""`). Resources and resource templates keep their URIs; the member that listed a
//! URI first (in the file's order) answers for it, and another member's entry with the same
//! URI is left out of the list. A URI no member listed (a template's expansion) is asked of
//! each member that has resources in turn, and the first answer that is not an error wins.
//!
//! Cursors: a merged list's `nextCursor` is the JSON text of `[[member id, its cursor], ...]`
//! for every member with more pages; the next page asks each of them for theirs (a member a
//! reload removed meanwhile is skipped).

use std::sync::Arc;

use serde_json::{Value, json};

use super::members::Fed;
use super::messages::{collect, copy, result_of, with_params};
use super::overrides::{self, Named};
use super::policy::Of;
use super::route::{allowed, route_name, serving, unknown, who};
use super::{Member, State, Table, each};
use crate::error::Error;
use crate::jsonrpc::{self, Message};
use crate::upstream::{Call, Reply};

/// What a list method lists: its capability, the result member holding the items, and the
/// item member that names them (`name`: prefixed; `uri`/`uriTemplate`: routed).
struct Listing {
    method: &'static str,
    cap: &'static str,
    items: &'static str,
    key: &'static str,
}

fn listing(method: &str) -> Option<Listing> {
    let (method, cap, items, key) = match method {
        "tools/list" => ("tools/list", "tools", "tools", "name"),
        "prompts/list" => ("prompts/list", "prompts", "prompts", "name"),
        "resources/list" => ("resources/list", "resources", "resources", "uri"),
        "resources/templates/list" => (
            "resources/templates/list",
            "resources",
            "resourceTemplates",
            "uriTemplate",
        ),
        _ => return None,
    };
    Some(Listing {
        method,
        cap,
        items,
        key,
    })
}

/// The answer to one request of a client session.
pub fn request(f: &State, t: &Table, fed: &Fed, call: &Call<'_>) -> Result<Reply, Error> {
    let method = call.msg.method().to_owned();
    let id = call.msg.id.clone().unwrap_or_else(jsonrpc::null);
    let ok = |result: Value| Reply::Message(jsonrpc::result_body(&id, &result.to_string()));
    let err = |code: i64, text: &str| Reply::Message(jsonrpc::error_body(Some(&id), code, text));
    if call
        .msg
        .params
        .as_ref()
        .is_some_and(|p| !p.get().trim_start().starts_with('{'))
    {
        return Ok(err(-32602, "Invalid params: must be an object"));
    }
    // Calls read only their name (below); everything else reads its params whole.
    if matches!(method.as_str(), "tools/call" | "prompts/get") {
        return super::calls::call_by_name(f, t, fed, call, &method, &err);
    }
    let params = call.msg.params_value().unwrap_or_else(|| json!({}));
    if let Some(l) = listing(&method) {
        return Ok(match list(f, t, fed, call, &l, &params) {
            Ok(result) => ok(result),
            Err(text) => err(-32602, &text),
        });
    }
    match method.as_str() {
        "ping" => Ok(ok(json!({}))),
        "logging/setLevel" => {
            let live: Vec<Arc<Member>> = t
                .members
                .iter()
                .filter(|m| serving(fed, m, "logging"))
                .cloned()
                .collect();
            each(&live, |m| {
                let reply = f.send(fed, m, with_params(&call.msg, &params), call);
                if let Err(e) = collect(reply, call.deadline) {
                    log::debug!("upstream {}: logging/setLevel: {e}", m.name);
                }
            });
            Ok(ok(json!({})))
        }
        "completion/complete" => {
            // The ref's type says what it names: a prompt by `name`, a resource (template)
            // by `uri`; the other member is never looked at.
            let r = params.get("ref").cloned().unwrap_or_else(|| json!({}));
            match r.get("type").and_then(Value::as_str) {
                Some("ref/prompt") => {
                    let name = r.get("name").and_then(Value::as_str).unwrap_or("");
                    let target = route_name(t, name).and_then(|(m, shown)| {
                        let local =
                            overrides::original(&m.policy, who(call), Named::Prompt, shown)?;
                        allowed(m, call, Of::Names, local).then_some((m, local))
                    });
                    let Some((m, local)) = target else {
                        return Ok(err(-32602, &unknown(t, "prompt", name)));
                    };
                    let mut p = params.clone();
                    p["ref"]["name"] = Value::String(local.to_owned());
                    Ok(f.send(fed, m, with_params(&call.msg, &p), call))
                }
                Some("ref/resource") => {
                    let uri = r.get("uri").and_then(Value::as_str).unwrap_or("");
                    by_uri(f, t, fed, call, uri)
                }
                _ => Ok(err(
                    -32602,
                    "Invalid params: ref.type must be ref/prompt or ref/resource",
                )),
            }
        }
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            let uri = params.get("uri").and_then(Value::as_str).unwrap_or("");
            by_uri(f, t, fed, call, uri)
        }
        _ => Ok(err(-32601, &format!("Method not found: {method}"))),
    }
}

/// A request about resource `uri`: to the member that listed it, else to each member with
/// resources in turn until one answers without an error.
fn by_uri(f: &State, t: &Table, fed: &Fed, call: &Call<'_>, uri: &str) -> Result<Reply, Error> {
    let msg = || copy(&call.msg);
    if fed.owner(uri).is_none() && fed.first_index() {
        index(f, t, fed, call);
    }
    let not_found = || {
        let text = format!("Resource not found: {uri}");
        Reply::Message(jsonrpc::error_body(call.msg.id.as_deref(), -32002, &text))
    };
    if let Some(m) = fed.owner(uri).and_then(|i| t.get(i)) {
        if !allowed(m, call, Of::Resources, uri) {
            return Ok(not_found());
        }
        return Ok(f.send(fed, m, msg(), call));
    }
    let mut first_error = None;
    for m in t
        .members
        .iter()
        .filter(|m| serving(fed, m, "resources") && allowed(m, call, Of::Resources, uri))
    {
        let body = match collect(f.send(fed, m, msg(), call), call.deadline) {
            Ok(b) => b,
            Err(e) => {
                jsonrpc::error_body(call.msg.id.as_deref(), super::UNAVAILABLE, &e.to_string())
            }
        };
        if result_of(&body).is_ok() {
            return Ok(Reply::Message(body));
        }
        first_error.get_or_insert(body);
    }
    Ok(first_error.map_or_else(not_found, Reply::Message))
}

/// Learns who lists which resources and templates (first pages), for a session whose client
/// reads or completes without listing first.
fn index(f: &State, t: &Table, fed: &Fed, call: &Call<'_>) {
    for method in ["resources/list", "resources/templates/list"] {
        let Some(l) = listing(method) else { continue };
        let msg = Message {
            jsonrpc: "2.0".into(),
            id: Some(jsonrpc::raw("0".into())),
            method: Some(method.into()),
            params: None,
            result: None,
            error: None,
        };
        let c = Call {
            msg,
            session: call.session,
            deadline: call.deadline,
            headers: Vec::new(),
        };
        if let Err(why) = list(f, t, fed, &c, &l, &json!({})) {
            log::debug!("federation: {method}: {why}");
        }
    }
}

/// One page of a merged list, or why the cursor is refused.
fn list(
    f: &State,
    t: &Table,
    fed: &Fed,
    call: &Call<'_>,
    l: &Listing,
    params: &Value,
) -> Result<Value, String> {
    let pages: Vec<(usize, Option<String>)> = match params.get("cursor") {
        None | Some(Value::Null) => {
            // A first page: members out of this session are tried again first.
            for m in &t.members {
                if fed.live(m.id).is_err() {
                    f.revive(fed, m, call.deadline);
                }
            }
            t.members
                .iter()
                .filter(|m| serving(fed, m, l.cap))
                .map(|m| (m.id, None))
                .collect()
        }
        Some(Value::String(c)) => serde_json::from_str(c)
            .ok()
            // Members in the table's order, each at most once (a cursor cannot ask for more
            // pages than there are members), ids that were given out.
            .filter(|p: &Vec<(usize, Option<String>)>| {
                let made = f.next_id.load(std::sync::atomic::Ordering::Relaxed);
                let at = |i: usize| t.members.iter().position(|m| m.id == i);
                let places: Vec<usize> = p.iter().filter_map(|(i, _)| at(*i)).collect();
                p.iter().all(|(i, _)| *i < made)
                    && p.windows(2).all(|w| w[0].0 != w[1].0)
                    && places.windows(2).all(|w| w[0] < w[1])
            })
            .ok_or_else(|| "Invalid cursor".to_owned())?,
        Some(_) => return Err("Invalid cursor".into()),
    };
    // In the table's order; a member removed since the cursor was made is skipped.
    let members: Vec<Arc<Member>> = t
        .members
        .iter()
        .filter(|m| pages.iter().any(|(i, _)| *i == m.id))
        .cloned()
        .collect();
    let cursor_of = |i: usize| {
        pages
            .iter()
            .find(|(j, _)| *j == i)
            .and_then(|(_, c)| c.clone())
    };
    // Cached pages first, here; only the members to ask get a thread each (`each`).
    let mut answers: Vec<Option<Result<Arc<Value>, String>>> = members
        .iter()
        .map(|m| {
            cacheable(fed, m, l)
                .then(|| fed.lists.get(m.id, l.method, cursor_of(m.id).as_deref()))
                .flatten()
                .map(Ok)
        })
        .collect();
    let ask: Vec<Arc<Member>> = members
        .iter()
        .zip(&answers)
        .filter(|(_, a)| a.is_none())
        .map(|(m, _)| m.clone())
        .collect();
    let asked = each(&ask, |m| {
        let i = m.id;
        let cursor = cursor_of(i);
        let generation = fed.lists.generation(i, l.method);
        let mut p = params.clone();
        match &cursor {
            Some(c) => p["cursor"] = Value::String(c.clone()),
            None => {
                if let Some(o) = p.as_object_mut() {
                    o.remove("cursor");
                }
            }
        }
        let page = collect(
            f.send(fed, m, with_params(&call.msg, &p), call),
            call.deadline,
        )
        .map_err(|e| e.to_string())
        .and_then(|b| result_of(&b))
        .map(Arc::new)?;
        if cacheable(fed, m, l) {
            fed.lists
                .put(i, l.method, cursor.as_deref(), generation, &page);
        }
        Ok(page)
    });
    let mut asked = asked.into_iter();
    for a in answers.iter_mut().filter(|a| a.is_none()) {
        *a = asked.next();
    }
    let mut items = Vec::new();
    let mut next = Vec::new();
    for (m, answer) in members.iter().zip(answers) {
        let i = m.id;
        let result = match answer {
            Some(Ok(r)) => r,
            None => continue,
            Some(Err(why)) => {
                log::debug!("upstream {}: {}: {why}", m.name, l.items);
                continue;
            }
        };
        if let Some(c) = result.get("nextCursor").and_then(Value::as_str) {
            next.push((i, Some(c.to_owned())));
        }
        let Some(Value::Array(list)) = result.get(l.items) else {
            continue;
        };
        for mut item in list.iter().cloned() {
            let Some(key) = item.get(l.key).and_then(Value::as_str).map(str::to_owned) else {
                continue;
            };
            if l.key == "name" {
                if !allowed(m, call, Of::Names, &key) {
                    continue;
                }
                let named = match l.items {
                    "tools" => Named::Tool,
                    _ => Named::Prompt,
                };
                overrides::reshape(&m.policy, who(call), named, &key, &mut item);
                let local = overrides::shown_as(&m.policy, who(call), named, &key);
                match shown_name(t, m, local) {
                    Some(n) => item[l.key] = Value::String(n),
                    None => continue,
                }
            } else if !allowed(m, call, Of::Resources, &key) || !fed.claim(&key, i) {
                continue;
            }
            items.push(item);
        }
    }
    let mut out = serde_json::Map::new();
    out.insert(l.items.to_owned(), Value::Array(items));
    let mut out = Value::Object(out);
    if !next.is_empty() {
        out["nextCursor"] = Value::String(serde_json::to_string(&next).unwrap_or_default());
    }
    Ok(out)
}

/// True when member `i`'s `l` pages may be cached in `fed`'s session (`cache.rs`): the
/// member declared `listChanged` for them, and is a stdio upstream, whose list changes reach
/// its sessions whether or not the client listens (an HTTP member's arrive only on a
/// standalone stream the client opened, so they could be missed).
fn cacheable(fed: &Fed, m: &Member, l: &Listing) -> bool {
    m.up.kind() == "stdio" && fed.declares(m.id, &format!("/capabilities/{}/listChanged", l.cap))
}

/// The name member `m`'s item `name` is shown as; `None` when a prefix-less member's name
/// would be taken for another member's (it could not be called, so it is not listed).
fn shown_name(t: &Table, m: &Member, name: &str) -> Option<String> {
    if !m.prefix.is_empty() {
        return Some(format!("{}{}{name}", m.prefix, t.sep));
    }
    let taken = t.members.iter().any(|o| {
        !o.prefix.is_empty()
            && name
                .strip_prefix(o.prefix.as_str())
                .is_some_and(|r| r.starts_with(t.sep.as_str()))
    });
    if taken {
        log::warn!(
            "upstream {}: `{name}` looks like another upstream's name and is not listed",
            m.name
        );
        return None;
    }
    Some(name.to_owned())
}
