//! Tools and prompts that need input from the client, written once as a [`script`] and run
//! in either era: in 2026-07-28 natively as Multi Round-Trip Requests ([`run_modern`]: an
//! `InputRequiredResult` with `inputRequests` and an integrity-protected `requestState`, the
//! client's retry carrying `inputResponses`), in the legacy era ([`run_legacy`]) as classic
//! server→client requests on a job thread. A script sees the answers gathered so far and says
//! what it needs next ([`Step::Need`]) or its result ([`Step::Done`]).
//!
//! The fixtures are those the 2026-07-28 conformance scenarios call
//! (`test_input_required_result_*`, the prompt `test_input_required_result_prompt`,
//! `test_missing_capability`, `test_streaming_elicitation`) and, in the 2026-07-28 era of
//! `--era modern`, the legacy fixtures `test_sampling`, `test_elicitation` and the SEP-1034 /
//! SEP-1330 elicitation forms.

use serde_json::{Map, Value, json};

use super::connection::{Handled, RpcError};
use super::jobs::spawn_job;
use super::request::{Req, error_result, text_result};
use super::state;
use super::{INTERNAL_ERROR, INVALID_PARAMS, MISSING_CAPABILITY};

/// One server→client request a script needs answered, under its `inputRequests` key.
pub(super) struct Input {
    pub(super) key: &'static str,
    pub(super) method: &'static str,
    pub(super) params: Value,
}

impl Input {
    /// The client capability the request needs.
    pub(super) fn capability(&self) -> &'static str {
        match self.method {
            "sampling/createMessage" => "sampling",
            "elicitation/create" => "elicitation",
            _ => "roots",
        }
    }
}

pub(super) enum Step {
    Need(Vec<Input>),
    Done(Value),
}

/// Rounds one request may take before the script is considered stuck.
const MAX_ROUNDS: usize = 8;

fn elicit(key: &'static str, message: &str, properties: Value, required: &[&str]) -> Input {
    Input {
        key,
        method: "elicitation/create",
        params: json!({
            "mode": "form",
            "message": message,
            "requestedSchema": {"type": "object", "properties": properties, "required": required},
        }),
    }
}

fn sample(key: &'static str, prompt: &str, max_tokens: u64) -> Input {
    Input {
        key,
        method: "sampling/createMessage",
        params: json!({
            "messages": [{"role": "user", "content": {"type": "text", "text": prompt}}],
            "maxTokens": max_tokens,
        }),
    }
}

fn roots(key: &'static str) -> Input {
    Input {
        key,
        method: "roots/list",
        params: json!({}),
    }
}

/// The text of a sampling answer (`content` an object or an array of them).
fn sampled_text(answer: &Value) -> &str {
    let text = match answer.get("content") {
        Some(Value::Array(items)) => items.iter().find_map(|c| c.get("text")),
        Some(content) => content.get("text"),
        None => None,
    };
    text.and_then(Value::as_str).unwrap_or("No response")
}

/// A field of an accepted elicitation's content, as text.
fn field(answer: &Value, name: &str) -> String {
    match answer.get("content").and_then(|c| c.get(name)) {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => "(none)".into(),
    }
}

fn root_uris(answer: &Value) -> String {
    let uris: Vec<&str> = answer
        .get("roots")
        .and_then(Value::as_array)
        .map(|roots| roots.iter().filter_map(|r| r["uri"].as_str()).collect())
        .unwrap_or_default();
    if uris.is_empty() {
        "no roots".into()
    } else {
        uris.join(", ")
    }
}

/// Names of the tools that are scripts (listed by `tools/list` in `--era legacy|modern`).
pub(super) const SCRIPTED_TOOLS: [(&str, &str); 10] = [
    (
        "test_input_required_result_elicitation",
        "Asks the user's name by elicitation, then greets them",
    ),
    (
        "test_input_required_result_sampling",
        "Asks the client's LLM for the capital of France",
    ),
    (
        "test_input_required_result_list_roots",
        "Asks the client for its roots, then lists them",
    ),
    (
        "test_input_required_result_request_state",
        "Asks for a confirmation; the answer says state-ok once the requestState verified",
    ),
    (
        "test_input_required_result_multiple_inputs",
        "Asks for an elicitation, a sampling and the roots at once",
    ),
    (
        "test_input_required_result_multi_round",
        "Asks two questions, one per round",
    ),
    (
        "test_input_required_result_tampered_state",
        "Asks for a confirmation; a tampered requestState is rejected (-32602)",
    ),
    (
        "test_input_required_result_capabilities",
        "Asks only for the inputs the client declared capabilities for",
    ),
    (
        "test_missing_capability",
        "Needs the sampling capability; without it the call fails with -32021",
    ),
    (
        "test_streaming_elicitation",
        "Asks for input by elicitation (an InputRequiredResult in 2026-07-28, never a request on the response stream)",
    ),
];

/// The prompt that is a script.
pub(super) const SCRIPTED_PROMPT: &str = "test_input_required_result_prompt";

/// The next step of script `name` (a tool, or [`SCRIPTED_PROMPT`]) given its arguments and
/// the answers so far; `None` if `name` is not a script. `modern` enables the legacy fixtures'
/// scripts (`test_sampling` etc.), which the legacy era runs the old way.
pub(super) fn script(
    name: &str,
    args: &Value,
    answers: &Map<String, Value>,
    declared: &dyn Fn(&str) -> bool,
    modern: bool,
) -> Option<Result<Step, RpcError>> {
    let name_schema = json!({"name": {"type": "string"}});
    let got = |key: &str| answers.get(key);
    let need_or = |inputs: Vec<Input>, done: &dyn Fn() -> Value| {
        let missing: Vec<Input> = inputs
            .into_iter()
            .filter(|i| !answers.contains_key(i.key))
            .collect();
        if missing.is_empty() {
            Step::Done(done())
        } else {
            Step::Need(missing)
        }
    };
    let declined = |key: &str| {
        got(key)
            .and_then(|a| a.get("action"))
            .and_then(Value::as_str)
            .is_some_and(|a| a != "accept")
    };
    let step = match name {
        "test_input_required_result_elicitation" => need_or(
            vec![elicit(
                "user_name",
                "What is your name?",
                name_schema,
                &["name"],
            )],
            &|| match declined("user_name") {
                true => text_result("The user declined to give a name"),
                false => text_result(format!("Hello, {}!", field(&answers["user_name"], "name"))),
            },
        ),
        "test_input_required_result_sampling" => need_or(
            vec![sample(
                "capital_question",
                "What is the capital of France?",
                100,
            )],
            &|| {
                let text = sampled_text(&answers["capital_question"]);
                text_result(format!("LLM response: {text}"))
            },
        ),
        "test_input_required_result_list_roots" => need_or(vec![roots("client_roots")], &|| {
            text_result(format!(
                "Client roots: {}",
                root_uris(&answers["client_roots"])
            ))
        }),
        "test_input_required_result_request_state"
        | "test_input_required_result_tampered_state" => {
            let ok = json!({"ok": {"type": "boolean"}});
            need_or(
                vec![elicit("confirm", "Please confirm", ok, &["ok"])],
                &|| {
                    let ok = field(&answers["confirm"], "ok");
                    text_result(format!("state-ok: requestState verified, confirmed={ok}"))
                },
            )
        }
        "test_input_required_result_multiple_inputs" => need_or(
            vec![
                elicit("user_name", "What is your name?", name_schema, &["name"]),
                sample("greeting", "Generate a greeting", 50),
                roots("client_roots"),
            ],
            &|| {
                text_result(format!(
                    "name={}, greeting={}, roots={}",
                    field(&answers["user_name"], "name"),
                    sampled_text(&answers["greeting"]),
                    root_uris(&answers["client_roots"])
                ))
            },
        ),
        "test_input_required_result_multi_round" => {
            let color = json!({"color": {"type": "string"}});
            match (got("step1"), got("step2")) {
                (None, _) => Step::Need(vec![elicit(
                    "step1",
                    "Step 1: What is your name?",
                    name_schema,
                    &["name"],
                )]),
                (Some(_), None) => Step::Need(vec![elicit(
                    "step2",
                    "Step 2: What is your favorite color?",
                    color,
                    &["color"],
                )]),
                (Some(a), Some(b)) => Step::Done(text_result(format!(
                    "name={}, color={}",
                    field(a, "name"),
                    field(b, "color")
                ))),
            }
        }
        "test_input_required_result_capabilities" => {
            if answers.is_empty() {
                let mut inputs = Vec::new();
                if declared("sampling") || !declared("elicitation") {
                    inputs.push(sample(
                        "capital_question",
                        "What is the capital of France?",
                        100,
                    ));
                }
                if declared("elicitation") {
                    inputs.push(elicit(
                        "user_name",
                        "What is your name?",
                        name_schema,
                        &["name"],
                    ));
                }
                Step::Need(inputs)
            } else {
                let keys: Vec<&str> = answers.keys().map(String::as_str).collect();
                Step::Done(text_result(format!("answered: {}", keys.join(", "))))
            }
        }
        "test_missing_capability" => need_or(vec![sample("completion", "Say hello", 20)], &|| {
            text_result(format!(
                "LLM response: {}",
                sampled_text(&answers["completion"])
            ))
        }),
        "test_streaming_elicitation" => need_or(
            vec![elicit(
                "input",
                "Please provide input",
                name_schema,
                &["name"],
            )],
            &|| text_result(format!("Received: {}", field(&answers["input"], "name"))),
        ),
        SCRIPTED_PROMPT => {
            let context = json!({"context": {"type": "string"}});
            need_or(
                vec![elicit(
                    "user_context",
                    "What context should the prompt use?",
                    context,
                    &["context"],
                )],
                &|| {
                    let text = format!(
                        "Use this context: {}",
                        field(&answers["user_context"], "context")
                    );
                    json!({"messages": [{"role": "user", "content": {"type": "text", "text": text}}]})
                },
            )
        }
        "test_sampling" if modern => {
            let Some(prompt) = args.get("prompt").and_then(Value::as_str) else {
                return Some(Err(RpcError::params(
                    "test_sampling: missing string argument prompt",
                )));
            };
            need_or(vec![sample("sampling", prompt, 100)], &|| {
                text_result(format!(
                    "LLM response: {}",
                    sampled_text(&answers["sampling"])
                ))
            })
        }
        "test_elicitation" if modern => {
            let Some(message) = args.get("message").and_then(Value::as_str) else {
                return Some(Err(RpcError::params(
                    "test_elicitation: missing string argument message",
                )));
            };
            let properties = json!({
                "username": {"type": "string", "description": "User's response"},
                "email": {"type": "string", "description": "User's email address"},
            });
            let input = elicit("elicitation", message, properties, &["username", "email"]);
            need_or(vec![input], &|| {
                elicited("User response", &answers["elicitation"])
            })
        }
        other if modern => {
            let (message, schema) = super::tools::elicitation_form(other)?;
            let mut input = elicit("elicitation", message, json!({}), &[]);
            input.params["requestedSchema"] = schema;
            need_or(vec![input], &|| {
                elicited("Elicitation completed", &answers["elicitation"])
            })
        }
        _ => return None,
    };
    Some(Ok(step))
}

fn elicited(label: &str, answer: &Value) -> Value {
    let action = answer
        .get("action")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    let content = answer.get("content").cloned().unwrap_or_else(|| json!({}));
    text_result(format!("{label}: action={action}, content={content}"))
}

/// The -32021 error for inputs the client cannot answer.
fn missing_capabilities(inputs: &[Input]) -> RpcError {
    let mut required = Map::new();
    for input in inputs {
        required.insert(input.capability().into(), json!({}));
    }
    let names: Vec<&String> = required.keys().collect();
    let mut error = RpcError::new(
        MISSING_CAPABILITY,
        format!("Missing required client capability: {names:?}"),
    );
    error.data = Some(json!({"requiredCapabilities": required}));
    error
}

/// Runs script `name` as a 2026-07-28 request: verifies `requestState`, takes the answers of
/// `inputResponses` the script asked for (others are ignored), and answers the next step: an
/// `InputRequiredResult` (every input filtered to the client's declared capabilities; none
/// left is -32021) or the complete result. `params` is the request's whole `params` object.
pub(super) fn run_modern(req: &Req, name: &str, args: &Value, params: &Value) -> Handled {
    let declared = |c: &str| req.declared(c);
    let mut answers = match params.get("requestState") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::String(s)) => state::open(s, name).map_err(RpcError::params)?,
        Some(_) => return Err(RpcError::params("requestState must be a string").into()),
    };
    let Some(first) = script(name, args, &answers, &declared, true) else {
        return Err(RpcError::params(format!("{name} is not an input-requiring fixture")).into());
    };
    if let Step::Need(pending) = first? {
        match params.get("inputResponses") {
            None => {}
            Some(Value::Object(responses)) => {
                for input in &pending {
                    match responses.get(input.key) {
                        None => {}
                        Some(answer @ Value::Object(_)) => {
                            answers.insert(input.key.to_owned(), answer.clone());
                        }
                        Some(_) => {
                            let msg = format!("inputResponses.{} must be an object", input.key);
                            return Err(RpcError::params(msg).into());
                        }
                    }
                }
            }
            Some(_) => return Err(RpcError::params("inputResponses must be an object").into()),
        }
    }
    match script(name, args, &answers, &declared, true) {
        Some(Ok(Step::Done(result))) => req.reply(&result),
        Some(Ok(Step::Need(inputs))) => {
            let (ok, missing): (Vec<Input>, Vec<Input>) =
                inputs.into_iter().partition(|i| declared(i.capability()));
            if !missing.is_empty() || ok.is_empty() {
                return Err(missing_capabilities(&missing).into());
            }
            let mut requests = Map::new();
            for input in ok {
                requests.insert(
                    input.key.into(),
                    json!({"method": input.method, "params": input.params}),
                );
            }
            let request_state = state::seal(name, &answers);
            let result = json!({"inputRequests": requests, "requestState": request_state});
            Ok(req.sh.send_input_required(req.id, &result)?)
        }
        Some(Err(e)) => Err(e.into()),
        None => Err(RpcError::new(INVALID_PARAMS, format!("unknown fixture {name}")).into()),
    }
}

/// Runs script `name` in the legacy era: each input becomes a server→client request (in key
/// order, one at a time) on a job thread. An undeclared capability or a failed request ends a
/// tool with an `isError` result and a prompt with a JSON-RPC error.
pub(super) fn run_legacy(req: &Req, name: &str, args: Value, prompt: bool) -> Handled {
    let declared: Vec<&str> = ["sampling", "elicitation", "roots"]
        .into_iter()
        .filter(|c| req.declared(c))
        .collect();
    let name = name.to_owned();
    spawn_job(req, move |job| {
        let fail = |text: String| {
            if prompt {
                Err(RpcError::new(INTERNAL_ERROR, text))
            } else {
                Ok(error_result(text))
            }
        };
        let is_declared = |c: &str| declared.contains(&c);
        let mut answers = Map::new();
        for _ in 0..MAX_ROUNDS {
            let inputs = match script(&name, &args, &answers, &is_declared, false)? {
                Ok(Step::Done(result)) => return Some(Ok(result)),
                Ok(Step::Need(inputs)) => inputs,
                Err(e) => return Some(Err(e)),
            };
            if inputs.is_empty() {
                return Some(fail(format!("{name}: nothing to ask")));
            }
            if let Some(input) = inputs.iter().find(|i| !is_declared(i.capability())) {
                let capability = input.capability();
                return Some(fail(format!(
                    "The client did not declare the {capability} capability"
                )));
            }
            // What one step needs is asked at once, each request with its own id (a bridge
            // gathers them into one InputRequiredResult).
            let keys: Vec<(&str, &str)> = inputs.iter().map(|i| (i.key, i.method)).collect();
            let asks = inputs.into_iter().map(|i| (i.method, i.params)).collect();
            for ((key, method), answer) in keys.into_iter().zip(job.ask_all(asks)?) {
                match answer {
                    Ok(answer) => {
                        answers.insert(key.to_owned(), answer);
                    }
                    Err(error) => {
                        let detail = error["message"].as_str().unwrap_or("unknown error");
                        return Some(fail(format!("{method} failed: {detail}")));
                    }
                }
            }
        }
        Some(fail(format!("{name}: too many rounds")))
    })
}
