//! The tools only `--era legacy|modern` list ([`tools_list_all`]: the scripted input fixtures
//! of [`super::mrtr`], `test_logging_tool`, the list-change triggers, `test_custom_headers`
//! with its `x-mcp-header` parameter, the SEP-2106 schema) and how they are called
//! ([`strict_tool`]), including the 2026-07-28 MRTR form of the legacy fixtures that ask the
//! client.

use std::sync::OnceLock;

use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use super::INFO;
use super::connection::{Era, Handled, RpcError};
use super::hub::Change;
use super::jobs::spawn_job;
use super::mrtr::{SCRIPTED_TOOLS, run_legacy, run_modern, script};
use super::request::{Req, parse_args, text_result};
use super::tools::{no_args, string_arg, tool, tools_list};

/// [`tools_list`] plus the tools of `--era legacy|modern`: the scripted input fixtures of
/// [`super::mrtr`], `test_logging_tool` and the list-change triggers.
pub(super) fn tools_list_all() -> &'static Value {
    static TOOLS: OnceLock<Value> = OnceLock::new();
    TOOLS.get_or_init(|| {
        let mut all = tools_list().clone();
        if let Some(tools) = all["tools"].as_array_mut() {
            // A tool that takes no argument comes first (the 2026-07-28 header checks call
            // the first tool listed with no arguments), and the SEP-2106 schema keywords.
            if let Some(at) = tools.iter().position(|t| t["name"] == "test_simple_text") {
                let simple = tools.remove(at);
                tools.insert(0, simple);
            }
            for t in tools.iter_mut() {
                if t["name"] == "json_schema_2020_12_tool" {
                    t["inputSchema"] = schema_2020_12_sep2106();
                }
            }
            let mut region = string_arg("region", "Region to query; sent as Mcp-Param-Region too");
            region["properties"]["region"]["x-mcp-header"] = json!("Region");
            tools.push(tool(
                "test_custom_headers",
                "Echoes region, which the client also sends in the Mcp-Param-Region header",
                region,
            ));
            for (name, description) in SCRIPTED_TOOLS {
                tools.push(tool(name, description, no_args()));
            }
            tools.push(tool(
                "test_logging_tool",
                "Sends three log messages (in 2026-07-28 only with _meta logLevel), then answers",
                no_args(),
            ));
            tools.push(tool(
                "test_trigger_tool_change",
                "Sends notifications/tools/list_changed (to listeners that asked for it)",
                no_args(),
            ));
            tools.push(tool(
                "test_trigger_prompt_change",
                "Sends notifications/prompts/list_changed (to listeners that asked for it)",
                no_args(),
            ));
        }
        all
    })
}

/// The schema of `json_schema_2020_12_tool` in `--era legacy|modern`: with an `$anchor`, the
/// composition and the conditional keywords of SEP-2106.
fn schema_2020_12_sep2106() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "$defs": {"address": {"$anchor": "addressDef", "type": "object", "properties": {
            "street": {"type": "string"}, "city": {"type": "string"},
        }}},
        "properties": {
            "name": {"type": "string"},
            "address": {"$ref": "#/$defs/address"},
            "contactMethod": {"type": "string", "enum": ["phone", "email"]},
            "phone": {"type": "string"},
            "email": {"type": "string"},
        },
        "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
        "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
        "then": {"required": ["phone"]},
        "else": {"required": ["email"]},
        "additionalProperties": false,
    })
}

/// The tools only `--era legacy|modern` have, and the 2026-07-28 MRTR form of the legacy
/// fixtures that ask the client; `None` for the rest.
pub(super) fn strict_tool(req: &Req, name: &str, arguments: Option<&RawValue>) -> Option<Handled> {
    let modern = matches!(req.era, Era::Modern { .. });
    let args = || match parse_args::<Value>(arguments) {
        Ok(Value::Null) => Ok(json!({})),
        other => other,
    };
    match name {
        "test_logging_tool" => {
            return Some(spawn_job(req, |job| {
                for message in ["Log 1: starting", "Log 2: working", "Log 3: done"] {
                    job.log(INFO, message);
                    job.sleep(20)?;
                }
                Some(Ok(text_result("Logging tool completed")))
            }));
        }
        "test_custom_headers" => {
            let region = match args() {
                Ok(a) => a["region"].as_str().map(str::to_owned),
                Err(e) => return Some(Err(e.into())),
            };
            return Some(match region {
                Some(region) => req.reply(&text_result(format!("Region: {region}"))),
                None => Err(RpcError::params(
                    "test_custom_headers: missing string argument region",
                )
                .into()),
            });
        }
        "test_trigger_tool_change" | "test_trigger_prompt_change" => {
            let (change, method) = if name == "test_trigger_tool_change" {
                (Change::Tools, "notifications/tools/list_changed")
            } else {
                (Change::Prompts, "notifications/prompts/list_changed")
            };
            if !modern {
                req.sh.notify(method, json!({}));
            }
            req.sh.hub.broadcast(change, None);
            return Some(req.reply(&text_result(format!("{method} sent"))));
        }
        _ => {}
    }
    let declared = |_: &str| true;
    let args = match args() {
        Ok(args) => args,
        Err(e) => return Some(Err(e.into())),
    };
    if modern {
        script(name, &args, &Map::new(), &declared, true)?.ok();
        let params = match req.parse::<Value>() {
            Ok(params) => params,
            Err(e) => return Some(Err(e.into())),
        };
        Some(run_modern(req, name, &args, &params))
    } else {
        SCRIPTED_TOOLS.iter().find(|(n, _)| *n == name)?;
        Some(run_legacy(req, name, args, false))
    }
}
