//! The tools: `tools/list` and `tools/call`. The benchmark tools (`echo` on a no-allocation hot
//! path, `slow_echo`, `stream_events`, `update_watched`), the conformance fixtures (fixed
//! content, logging, progress, sampling and elicitation round trips), and the dispatch to the
//! fault-injection tools of [`super::faults`]. Tools that wait run as [`super::jobs`].

use std::borrow::Cow;
use std::sync::OnceLock;
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::util::lock;

use super::connection::{Era, Handled, RpcError};
use super::faults::{self, HUGE_LINE_DEFAULT};
use super::jobs::spawn_job;
use super::listen::watched_changed;
use super::request::{Req, ReqMeta, error_result, parse_args, text_result};
use super::{INFO, LATEST_LEGACY, METHOD_NOT_FOUND, MODERN_VERSION, PNG_1X1, WAV_MIN};

/// Text content serialized as `prefix + body` without building the string.
struct Joined<'a>(&'static str, &'a str);

impl Serialize for Joined<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{}{}", self.0, self.1))
    }
}

#[derive(Serialize)]
struct TextContent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: Joined<'a>,
}

#[derive(Serialize)]
struct TextResult<'a> {
    content: [TextContent<'a>; 1],
}

pub(super) fn tool(name: &str, description: &str, schema: Value) -> Value {
    json!({"name": name, "description": description, "inputSchema": schema})
}

pub(super) fn no_args() -> Value {
    json!({"type": "object", "properties": {}})
}

pub(super) fn string_arg(name: &str, description: &str) -> Value {
    json!({
        "type": "object",
        "properties": {name: {"type": "string", "description": description}},
        "required": [name],
    })
}

pub(super) fn tools_list() -> &'static Value {
    static TOOLS: OnceLock<Value> = OnceLock::new();
    TOOLS.get_or_init(|| {
        let int = |default: u64, description: &str| {
            json!({"type": "integer", "minimum": 0, "default": default, "description": description})
        };
        let mut slow = string_arg("message", "Message to echo back");
        slow["properties"]["delayMs"] = int(1000, "Delay before answering, in milliseconds");
        let streams = json!({"type": "object", "properties": {
            "count": int(10, "Number of events"),
            "intervalMs": int(50, "Delay between events, in milliseconds"),
        }});
        let content = json!({"type": "object", "properties": {
            "content": {"type": "string", "description": "New content"},
        }});
        let json_2020_12 = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "$defs": {"address": {"type": "object", "properties": {
                "street": {"type": "string"}, "city": {"type": "string"},
            }}},
            "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"}},
            "additionalProperties": false,
        });
        let mut exit_code = int(0, "Exit status");
        exit_code["maximum"] = json!(255);
        let exit = json!({"type": "object", "properties": {"code": exit_code}});
        let garbage = json!({"type": "object", "properties": {
            "lines": int(3, "Number of non-JSON lines"),
        }});
        let huge = json!({"type": "object", "properties": {
            "bytes": int(HUGE_LINE_DEFAULT, "Length of the line in bytes, without the newline"),
        }});
        let plain = |name: &str, description: &str| tool(name, description, no_args());
        json!({"tools": [
            tool("echo", "Echoes the message back as \"Echo: <message>\"",
                string_arg("message", "Message to echo back")),
            tool("slow_echo", "Echoes after delayMs milliseconds; honours cancellation", slow),
            tool("stream_events", "Sends count progress notifications (if _meta.progressToken \
                is set) and log messages, intervalMs apart", streams),
            plain("crash", "Exits the demo server at once with status 3, without answering"),
            tool("exit", "Answers, flushes, then exits the demo server with status code",
                exit),
            plain("hang", "Never answers; notifications/cancelled ends it silently"),
            tool("garbage", "Writes lines non-JSON lines and one non-JSON-RPC JSON line to \
                stdout, then answers", garbage),
            tool("huge_line", "Writes one stdout line of exactly bytes bytes (a \
                notifications/message padded with x), then answers", huge),
            plain("close_stdout", "Answers, then closes stdout but keeps running until stdin \
                EOF"),
            plain("stop_reading", "Answers, then never reads stdin again (runs until killed)"),
            tool("update_watched", "Changes test://watched-resource and notifies subscribers",
                content),
            plain("test_simple_text", "Tests simple text content response"),
            plain("test_image_content", "Tests image content response"),
            plain("test_audio_content", "Tests audio content response"),
            plain("test_embedded_resource", "Tests embedded resource content response"),
            plain("test_multiple_content_types",
                "Tests response with multiple content types (text, image, resource)"),
            plain("test_tool_with_logging", "Tests tool that emits log messages during execution"),
            plain("test_tool_with_progress", "Tests tool that reports progress notifications"),
            plain("test_error_handling", "Tests error response handling"),
            tool("test_sampling", "Tests server-initiated sampling (LLM completion request)",
                string_arg("prompt", "The prompt to send to the LLM")),
            tool("test_elicitation", "Tests server-initiated elicitation (user input request)",
                string_arg("message", "The message to show the user")),
            plain("test_elicitation_sep1034_defaults",
                "Tests elicitation with default values per SEP-1034"),
            plain("test_elicitation_sep1330_enums",
                "Tests elicitation with enum schema improvements per SEP-1330"),
            tool("json_schema_2020_12_tool",
                "Tool with JSON Schema 2020-12 features for conformance testing (SEP-1613)",
                json_2020_12),
            plain("test_reconnection", "SEP-1699 fixture; over stdio there is no SSE stream to \
                close, so it just answers"),
        ]})
    })
}

/// The results of the fixture tools that answer at once with fixed content.
fn fixed_result(tool: &str) -> Option<Value> {
    let embedded = json!({"type": "resource", "resource": {
        "uri": "test://embedded-resource", "mimeType": "text/plain",
        "text": "This is an embedded resource content.",
    }});
    let image = json!({"type": "image", "data": PNG_1X1, "mimeType": "image/png"});
    Some(match tool {
        "test_simple_text" => text_result("This is a simple text response for testing."),
        "test_image_content" => json!({"content": [image]}),
        "test_audio_content" => {
            json!({"content": [{"type": "audio", "data": WAV_MIN, "mimeType": "audio/wav"}]})
        }
        "test_embedded_resource" => json!({"content": [embedded]}),
        "test_multiple_content_types" => json!({"content": [
            {"type": "text", "text": "Multiple content types test:"},
            image,
            {"type": "resource", "resource": {
                "uri": "test://mixed-content-resource", "mimeType": "application/json",
                "text": r#"{"test":"data","value":123}"#,
            }},
        ]}),
        "test_error_handling" => {
            error_result("This tool intentionally returns an error for testing")
        }
        "test_reconnection" => text_result(
            "Reconnection test completed successfully. If you received this, the client \
             properly reconnected after stream closure.",
        ),
        _ => return None,
    })
}

/// The `elicitation/create` message and schema of the elicitation fixture tools.
pub(super) fn elicitation_form(tool: &str) -> Option<(&'static str, Value)> {
    let described =
        |kind: &str, description: &str| json!({"type": kind, "description": description});
    let titled = |kind: &str| {
        let names = ["First", "Second", "Third"];
        let option = |i: usize| {
            json!({
                "const": format!("value{}", i + 1),
                "title": format!("{} {kind}", names[i]),
            })
        };
        (0..3).map(option).collect::<Vec<_>>()
    };
    let (message, properties) = match tool {
        "test_elicitation_sep1034_defaults" => {
            let mut p = json!({
                "name": described("string", "User name"),
                "age": described("integer", "User age"),
                "score": described("number", "User score"),
                "status": described("string", "User status"),
                "verified": described("boolean", "Verification status"),
            });
            p["name"]["default"] = json!("John Doe");
            p["age"]["default"] = json!(30);
            p["score"]["default"] = json!(95.5);
            p["status"]["enum"] = json!(["active", "inactive", "pending"]);
            p["status"]["default"] = json!("active");
            p["verified"]["default"] = json!(true);
            ("Please review and update the form fields with defaults", p)
        }
        "test_elicitation_sep1330_enums" => {
            let mut p = json!({
                "untitledSingle": described("string", "Select one option"),
                "titledSingle": described("string", "Select one option with titles"),
                "legacyEnum": described("string", "Select one option (legacy)"),
                "untitledMulti": described("array", "Select multiple options"),
                "titledMulti": described("array", "Select multiple options with titles"),
            });
            p["untitledSingle"]["enum"] = json!(["option1", "option2", "option3"]);
            p["titledSingle"]["oneOf"] = json!(titled("Option"));
            p["legacyEnum"]["enum"] = json!(["opt1", "opt2", "opt3"]);
            p["legacyEnum"]["enumNames"] = json!(["Option One", "Option Two", "Option Three"]);
            for (field, items) in [
                (
                    "untitledMulti",
                    json!({"type": "string", "enum": ["option1", "option2", "option3"]}),
                ),
                ("titledMulti", json!({"anyOf": titled("Choice")})),
            ] {
                p[field]["minItems"] = json!(1);
                p[field]["maxItems"] = json!(3);
                p[field]["items"] = items;
            }
            ("Please select options from the enum fields", p)
        }
        _ => return None,
    };
    Some((
        message,
        json!({"type": "object", "properties": properties, "required": []}),
    ))
}

/// How the tools only `--era legacy|modern` have are called (`extra::strict_tool`), given by
/// the dispatcher so that this file does not import the one that builds on it.
pub(super) type StrictTools = fn(&Req, &str, Option<&RawValue>) -> Option<Handled>;

pub(super) fn call_tool(req: &Req, strict: Option<StrictTools>) -> Handled {
    #[derive(Deserialize)]
    struct Call<'a> {
        #[serde(borrow)]
        name: Cow<'a, str>,
        #[serde(borrow, default)]
        arguments: Option<&'a RawValue>,
        #[serde(rename = "_meta", borrow, default)]
        meta: Option<ReqMeta<'a>>,
    }
    #[derive(Deserialize)]
    struct Text<'a> {
        #[serde(borrow)]
        message: Cow<'a, str>,
    }
    #[derive(Deserialize)]
    struct ToolArgs {
        message: Option<String>,
        prompt: Option<String>,
        content: Option<String>,
        #[serde(rename = "delayMs")]
        delay_ms: Option<u64>,
        count: Option<u64>,
        #[serde(rename = "intervalMs")]
        interval_ms: Option<u64>,
        lines: Option<u64>,
        bytes: Option<u64>,
        code: Option<i32>,
    }
    let call: Call = req.parse()?;
    let name = &*call.name;
    if name == "echo" {
        // The hot path: borrowed input, no intermediate `Value`, no extra string.
        let a: Text = parse_args(call.arguments)?;
        let text = Joined("Echo: ", &a.message);
        return req.reply(&TextResult {
            content: [TextContent { kind: "text", text }],
        });
    }
    if let Some(result) = fixed_result(name) {
        return req.reply(&result);
    }
    if let Some(strict) = strict
        && let Some(handled) = strict(req, name, call.arguments)
    {
        return handled;
    }
    if let Some((message, schema)) = elicitation_form(name) {
        return elicit(req, message, schema, "Elicitation completed");
    }
    let token = call
        .meta
        .unwrap_or_default()
        .progress_token
        .map(RawValue::to_owned);
    let a: ToolArgs = parse_args(call.arguments)?;
    let required = |value: Option<String>, field: &str| {
        value.ok_or_else(|| RpcError::params(format!("{name}: missing string argument {field}")))
    };
    match name {
        "slow_echo" => {
            let message = required(a.message, "message")?;
            spawn_job(req, move |job| {
                job.sleep(a.delay_ms.unwrap_or(1000))?;
                Some(Ok(text_result(format!("Echo: {message}"))))
            })
        }
        "stream_events" => {
            let (count, interval) = (a.count.unwrap_or(10), a.interval_ms.unwrap_or(50));
            spawn_job(req, move |job| {
                for i in 1..=count {
                    if i > 1 {
                        job.sleep(interval)?;
                    }
                    let message = format!("event {i}");
                    if let Some(token) = &token {
                        job.sh.progress(token, i, count, &message);
                    }
                    job.log(INFO, &message);
                }
                Some(Ok(text_result(format!("streamed {count} events"))))
            })
        }
        "crash" => faults::crash(),
        "exit" => faults::exit(req, a.code),
        "hang" => faults::hang(req),
        "garbage" => faults::garbage(req, a.lines),
        "huge_line" => faults::huge_line(req, a.bytes),
        "close_stdout" => faults::close_stdout(req),
        "stop_reading" => faults::stop_reading(req),
        "update_watched" => {
            let serial = req.sh.serial.fetch_add(1, Ordering::Relaxed);
            let content = a
                .content
                .unwrap_or_else(|| format!("Watched resource content ({serial})"));
            *lock(&req.sh.hub.watched) = content;
            watched_changed(req.sh);
            req.reply(&text_result("test://watched-resource updated"))
        }
        "test_tool_with_logging" => spawn_job(req, |job| {
            job.log(INFO, "Tool execution started");
            job.sleep(50)?;
            job.log(INFO, "Tool processing data");
            job.sleep(50)?;
            job.log(INFO, "Tool execution completed");
            Some(Ok(text_result("Tool with logging executed successfully")))
        }),
        "test_tool_with_progress" => spawn_job(req, move |job| {
            for step in [0, 50, 100] {
                if step > 0 {
                    job.sleep(50)?;
                }
                if let Some(token) = &token {
                    let message = format!("Completed step {step} of 100");
                    job.sh.progress(token, step, 100, &message);
                }
            }
            Some(Ok(text_result("Progress reporting completed")))
        }),
        "test_sampling" => {
            let prompt = required(a.prompt, "prompt")?;
            let params = json!({
                "messages": [{"role": "user", "content": {"type": "text", "text": prompt}}],
                "maxTokens": 100,
            });
            ask_client(
                req,
                "sampling",
                "sampling/createMessage",
                params,
                |answer| {
                    let text = match answer.get("content") {
                        Some(Value::Array(items)) => items.iter().find_map(|c| c.get("text")),
                        Some(content) => content.get("text"),
                        None => None,
                    };
                    let text = text.and_then(Value::as_str).unwrap_or("No response");
                    format!("LLM response: {text}")
                },
            )
        }
        "test_elicitation" => {
            let message = required(a.message, "message")?;
            let schema = json!({"type": "object", "properties": {
                "username": {"type": "string", "description": "User's response"},
                "email": {"type": "string", "description": "User's email address"},
            }, "required": ["username", "email"]});
            elicit(req, &message, schema, "User response")
        }
        "json_schema_2020_12_tool" => {
            let args: Value = parse_args(call.arguments)?;
            req.reply(&text_result(format!(
                "JSON Schema 2020-12 tool called with: {args}"
            )))
        }
        other => Err(RpcError::params(format!("Unknown tool: {other}")).into()),
    }
}

fn elicit(req: &Req, message: &str, schema: Value, label: &'static str) -> Handled {
    let mut params = json!({"message": message, "requestedSchema": schema});
    if lock(&req.sh.session)
        .version
        .as_deref()
        .is_none_or(|v| v == LATEST_LEGACY)
    {
        params["mode"] = json!("form");
    }
    ask_client(
        req,
        "elicitation",
        "elicitation/create",
        params,
        move |answer| {
            let action = answer
                .get("action")
                .and_then(Value::as_str)
                .unwrap_or("unknown");
            let content = answer.get("content").cloned().unwrap_or_else(|| json!({}));
            format!("{label}: action={action}, content={content}")
        },
    )
}

/// Runs a tool that sends `method` to the client and turns the answer into text.
fn ask_client(
    req: &Req,
    capability: &str,
    method: &'static str,
    params: Value,
    render: impl FnOnce(&Value) -> String + Send + 'static,
) -> Handled {
    if matches!(req.era, Era::Modern { .. }) {
        let msg = format!(
            "This tool needs a server-to-client {method} request; in protocol revision \
             {MODERN_VERSION} that requires MRTR (input_required results), which the demo \
             server does not implement"
        );
        return Err(RpcError::new(METHOD_NOT_FOUND, msg).into());
    }
    let declared = {
        let session = lock(&req.sh.session);
        session.version.is_none() || session.capabilities.get(capability).is_some()
    };
    if !declared {
        return req.reply(&error_result(format!(
            "The client did not declare the {capability} capability"
        )));
    }
    spawn_job(req, move |job| {
        Some(Ok(match job.ask(method, params)? {
            Ok(answer) => text_result(render(&answer)),
            Err(error) => {
                let detail = error
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown error");
                error_result(format!("{method} failed: {detail}"))
            }
        }))
    })
}
