//! Prompts (`prompts/list`, `prompts/get`, the `test_*` fixtures) and argument completion
//! (`completion/complete`) for the prompts and the resource template.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{Value, json};

use super::connection::{Era, Handled, RpcError};
use super::mrtr::{SCRIPTED_PROMPT, run_legacy, run_modern};
use super::request::Req;
use super::{PNG_1X1, ServerEra, TEMPLATE_URI};

pub(super) fn prompts_list() -> Value {
    let arg = |name: &str, description: &str| {
        json!({
            "name": name, "description": description, "required": true,
        })
    };
    let prompt = |name: &str, title: &str, description: &str, arguments: Vec<Value>| {
        json!({
            "name": name, "title": title, "description": description, "arguments": arguments,
        })
    };
    json!({"prompts": [
        prompt("test_simple_prompt", "Simple Test Prompt", "A simple prompt without arguments",
            vec![]),
        prompt("test_prompt_with_arguments", "Prompt With Arguments",
            "A prompt with required arguments",
            vec![arg("arg1", "First test argument"), arg("arg2", "Second test argument")]),
        prompt("test_prompt_with_embedded_resource", "Prompt With Embedded Resource",
            "A prompt that includes an embedded resource",
            vec![arg("resourceUri", "URI of the resource to embed")]),
        prompt("test_prompt_with_image", "Prompt With Image",
            "A prompt that includes image content", vec![]),
    ]})
}

/// [`prompts_list`] plus the prompt of `--era legacy|modern` that needs input.
pub(super) fn prompts_list_all() -> Value {
    let mut all = prompts_list();
    if let Some(prompts) = all["prompts"].as_array_mut() {
        prompts.push(json!({
            "name": SCRIPTED_PROMPT, "title": "Prompt Needing Input",
            "description": "Asks the user for context (MRTR in 2026-07-28, elicitation before)",
            "arguments": [],
        }));
    }
    all
}

pub(super) fn get_prompt(req: &Req) -> Handled {
    #[derive(Deserialize)]
    struct Get {
        name: String,
        #[serde(default)]
        arguments: HashMap<String, String>,
    }
    let get: Get = req.parse()?;
    let modern = matches!(req.era, Era::Modern { .. });
    if get.name == SCRIPTED_PROMPT && (modern || req.sh.options.era != ServerEra::Dual) {
        return match req.era {
            Era::Modern { .. } => run_modern(req, SCRIPTED_PROMPT, &json!({}), &req.parse()?),
            Era::Legacy => run_legacy(req, SCRIPTED_PROMPT, json!({}), true),
        };
    }
    let arg = |name: &str| {
        get.arguments
            .get(name)
            .ok_or_else(|| RpcError::params(format!("Missing required argument: {name}")))
    };
    let user = |content: Value| json!({"role": "user", "content": content});
    let text = |text: &str| user(json!({"type": "text", "text": text}));
    let messages = match get.name.as_str() {
        "test_simple_prompt" => vec![text("This is a simple prompt for testing.")],
        "test_prompt_with_arguments" => {
            vec![text(&format!(
                "Prompt with arguments: arg1='{}', arg2='{}'",
                arg("arg1")?,
                arg("arg2")?
            ))]
        }
        "test_prompt_with_embedded_resource" => vec![
            user(json!({"type": "resource", "resource": {
                "uri": arg("resourceUri")?, "mimeType": "text/plain",
                "text": "Embedded resource content for testing.",
            }})),
            text("Please process the embedded resource above."),
        ],
        "test_prompt_with_image" => vec![
            user(json!({"type": "image", "data": PNG_1X1, "mimeType": "image/png"})),
            text("Please analyze the image above."),
        ],
        other => return Err(RpcError::params(format!("Unknown prompt: {other}")).into()),
    };
    req.reply(&json!({"messages": messages}))
}

pub(super) fn complete(req: &Req) -> Handled {
    #[derive(Deserialize)]
    struct Complete {
        #[serde(rename = "ref")]
        reference: Ref,
        argument: Argument,
    }
    #[derive(Deserialize)]
    struct Ref {
        #[serde(rename = "type")]
        kind: String,
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        uri: Option<String>,
    }
    #[derive(Deserialize)]
    struct Argument {
        name: String,
        #[serde(default)]
        value: String,
    }
    let c: Complete = req.parse()?;
    let target = c
        .reference
        .name
        .as_deref()
        .or(c.reference.uri.as_deref())
        .unwrap_or("");
    let candidates: &[&str] = match (c.reference.kind.as_str(), target, c.argument.name.as_str()) {
        ("ref/prompt", "test_prompt_with_arguments", "arg1") => {
            &["paris", "park", "party", "test1", "test2"]
        }
        ("ref/prompt", "test_prompt_with_arguments", "arg2") => &["alpha", "beta", "gamma"],
        ("ref/prompt", name, _)
            if !prompts_list()["prompts"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p["name"] == name)) =>
        {
            return Err(RpcError::params(format!("Unknown prompt: {name}")).into());
        }
        ("ref/resource", TEMPLATE_URI, "id") => &["1", "2", "3", "123"],
        _ => &[],
    };
    let values: Vec<&str> = candidates
        .iter()
        .copied()
        .filter(|v| v.starts_with(&c.argument.value))
        .collect();
    req.reply(&json!({"completion": {"values": values, "total": values.len(), "hasMore": false}}))
}
