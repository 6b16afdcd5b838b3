//! Fault and mock rules (`[[fault]]` tables in the config file, issue #18): for testing MCP
//! clients and servers, the proxy delays a request, answers it with an error or a made-up
//! result, answers it from a recorded tape, or never answers it.
//!
//! Owns: the rules as configured ([`FaultConfig`], [`Rule`], [`Match`], [`Action`]; shown in
//! `/admin/config`), choosing the rule for a request ([`Faults::decide`]: the first rule whose
//! match fits decides, by its probability, drawn from a per-process PRNG) and building the
//! answer it gives. Must not touch: the config file's syntax (`cli/faults.rs` reads it), the
//! pipeline (`proxy/fault.rs` applies a [`Decision`]: sleeps, answers, counts, marks tapes), or
//! tapes' format (a `mock_from` rule reads its tape through a [`Recorded`] that the wiring in
//! `app.rs` builds with the replay tool's matcher).
//!
//! Rules are off unless configured: without rules the pipeline holds no [`Faults`] and pays
//! one branch per request. Only requests are matched (never notifications or responses), and
//! `initialize` only by a rule that names it as its `method`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::error::Error;
use crate::jsonrpc::Message;

/// The `[[fault]]` rules of the config file, in order, and the PRNG seed.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct FaultConfig {
    /// The rules; the first whose match fits a request decides.
    #[serde(rename = "faults")]
    pub rules: Vec<Rule>,
    /// `--fault-seed`: the PRNG's seed, for repeatable runs. Default: from the clock and pid.
    #[serde(rename = "faultSeed")]
    pub seed: Option<u64>,
}

/// One rule.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Rule {
    /// `name`, or its position (`"0"`, `"1"`, …): the `rule` label of
    /// `shadowcat_fault_hits_total` and the `fault` member of tape and audit lines.
    pub name: String,
    /// Which requests it applies to.
    #[serde(rename = "match")]
    pub when: Match,
    /// What it does.
    pub action: Action,
    /// The chance, 0..=1, that it acts on a request it matches (else the request goes on
    /// untouched). Default 1.
    pub probability: f64,
}

/// What a request must be for a rule to apply; an absent key matches anything.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Match {
    /// The upstream's name (as logs and metrics show it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// The JSON-RPC method.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// A `tools/call`'s tool (`params.name`); implies `method = "tools/call"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// `params.name` (tools, prompts) or `params.uri` (resources) of any request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A JSON pointer (RFC 6901) into `params`; with `equals`, the value there must equal it,
    /// else it must exist.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pointer: Option<String>,
    /// The value `pointer` must lead to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub equals: Option<Value>,
}

/// What a rule does to a request it acts on.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// `delay_ms`: wait this long (at most until the request's deadline), then forward.
    Delay(#[serde(serialize_with = "millis")] Duration),
    /// `error = {code, message, data}`: answer with this JSON-RPC error.
    Error {
        /// The error code.
        code: i64,
        /// The message.
        message: String,
        /// Optional `data`.
        #[serde(skip_serializing_if = "Option::is_none")]
        data: Option<Value>,
    },
    /// `drop = true`: never answer; the client sees its own timeout, or the proxy's
    /// `--request-timeout` answer. Not forwarded.
    Drop,
    /// `mock = {result = …}`: answer with this result. Not forwarded.
    Mock(Value),
    /// `mock_from = "TAPE"`: answer with the recorded response of the first request on the
    /// tape that matches (replay's matching rule), else replay's error naming the closest.
    MockFrom(PathBuf),
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

impl Action {
    /// `delay`, `error`, `drop`, `mock` or `mock_from`: the `action` label.
    pub fn label(&self) -> &'static str {
        match self {
            Action::Delay(_) => "delay",
            Action::Error { .. } => "error",
            Action::Drop => "drop",
            Action::Mock(_) => "mock",
            Action::MockFrom(_) => "mock_from",
        }
    }

    /// Whether it answers in the upstream's place (everything but a delay).
    pub fn answers(&self) -> bool {
        !matches!(self, Action::Delay(_))
    }
}

/// A tape's recorded answers, for `mock_from` (built by the replay tool's matcher).
pub trait Recorded: Send + Sync {
    /// The recorded response for a request with `method` and `params` (a JSON-RPC response
    /// object, its id to be replaced), or replay's error response when nothing matches.
    fn answer(&self, method: &str, params: Option<&Value>) -> Value;
}

/// Loads the tape of a `mock_from` rule.
pub type LoadTape<'a> = &'a dyn Fn(&std::path::Path) -> Result<Arc<dyn Recorded>, Error>;

/// A rule ready to act: the answer it gives prepared once.
struct Live {
    rule: Rule,
    label: Arc<str>,
    /// `mock`: the result's JSON text.
    result: Option<String>,
    /// `error`: the error object's JSON text.
    error: Option<String>,
    /// `mock_from`: the tape.
    tape: Option<Arc<dyn Recorded>>,
}

/// The rules at work, with the PRNG that decides the probabilities.
pub struct Faults {
    rules: Vec<Live>,
    rng: AtomicU64,
    upstream: String,
}

/// What the pipeline does with a request a rule acted on.
pub enum Decision {
    /// Wait this long, then forward.
    Delay(Duration),
    /// Answer with this JSON-RPC response body instead of forwarding.
    Answer(Vec<u8>),
    /// Never answer (until the request's deadline).
    Drop,
}

/// A rule that acted: which one (its index and label) and what to do.
pub struct Hit {
    /// The rule's position, for `shadowcat_fault_hits_total`.
    pub index: usize,
    /// Its name.
    pub label: Arc<str>,
    /// What to do.
    pub decision: Decision,
}

impl Faults {
    /// The rules of `cfg` against the upstream named `upstream`; `None` when there are none
    /// (then the pipeline pays nothing). `load` reads each `mock_from` tape once, here.
    pub fn start(
        cfg: &FaultConfig,
        upstream: &str,
        load: LoadTape<'_>,
    ) -> Result<Option<Arc<Faults>>, Error> {
        if cfg.rules.is_empty() {
            return Ok(None);
        }
        let mut rules = Vec::with_capacity(cfg.rules.len());
        for rule in &cfg.rules {
            let (mut result, mut error, mut tape) = (None, None, None);
            match &rule.action {
                Action::Mock(r) => result = Some(r.to_string()),
                Action::Error {
                    code,
                    message,
                    data,
                } => {
                    let mut e = serde_json::json!({"code": code, "message": message});
                    if let Some(d) = data {
                        e["data"] = d.clone();
                    }
                    error = Some(e.to_string());
                }
                Action::MockFrom(path) => {
                    tape = Some(load(path).map_err(|e| {
                        Error::Config(format!("[[fault]] {}: mock_from: {e}", rule.name))
                    })?);
                }
                Action::Delay(_) | Action::Drop => {}
            }
            rules.push(Live {
                label: Arc::from(rule.name.as_str()),
                rule: rule.clone(),
                result,
                error,
                tape,
            });
        }
        let seed = cfg.seed.unwrap_or_else(clock_seed);
        Ok(Some(Arc::new(Faults {
            rules,
            rng: AtomicU64::new(seed),
            upstream: upstream.to_owned(),
        })))
    }

    /// `(name, action)` of each rule, in order, for the metric's labels.
    pub fn labels(&self) -> Vec<(String, &'static str)> {
        self.rules
            .iter()
            .map(|l| (l.rule.name.clone(), l.rule.action.label()))
            .collect()
    }

    /// What to do with the request `msg` (already known to be a request): the first rule
    /// whose match fits decides; it acts with its probability, else the request goes on.
    pub fn decide(&self, msg: &Message) -> Option<Hit> {
        let method = msg.method();
        let mut params: Option<Option<Value>> = None;
        let (index, live) = self
            .rules
            .iter()
            .enumerate()
            .find(|(_, l)| self.fits(&l.rule.when, method, msg, &mut params))?;
        if !self.roll(live.rule.probability) {
            return None;
        }
        let id = msg.id.as_deref();
        let decision = match &live.rule.action {
            Action::Delay(d) => Decision::Delay(*d),
            Action::Drop => Decision::Drop,
            Action::Mock(_) => Decision::Answer(body(id, "result", live.result.as_deref())),
            Action::Error { .. } => Decision::Answer(body(id, "error", live.error.as_deref())),
            Action::MockFrom(_) => {
                let params = params.get_or_insert_with(|| msg.params_value());
                let mut answer = match &live.tape {
                    Some(t) => t.answer(method, params.as_ref()),
                    None => Value::Null,
                };
                if let Some(m) = answer.as_object_mut() {
                    let id = id.and_then(|i| serde_json::from_str(i.get()).ok());
                    m.insert("id".into(), id.unwrap_or(Value::Null));
                    m.insert("jsonrpc".into(), "2.0".into());
                }
                Decision::Answer(answer.to_string().into_bytes())
            }
        };
        Some(Hit {
            index,
            label: live.label.clone(),
            decision,
        })
    }

    /// Whether `m` fits the request (`params` parsed at most once, and only for a pointer).
    fn fits(
        &self,
        m: &Match,
        method: &str,
        msg: &Message,
        params: &mut Option<Option<Value>>,
    ) -> bool {
        if m.upstream.as_deref().is_some_and(|u| u != self.upstream) {
            return false;
        }
        match m.method.as_deref() {
            Some(want) if want != method => return false,
            // initialize only when a rule names it.
            None if method == "initialize" => return false,
            _ => {}
        }
        if let Some(tool) = &m.tool
            && (method != "tools/call" || msg.head().mirrored_name(method).as_ref() != Some(tool))
        {
            return false;
        }
        if let Some(name) = &m.name
            && msg.target_name().as_ref() != Some(name)
        {
            return false;
        }
        if let Some(p) = &m.pointer {
            let params = params.get_or_insert_with(|| msg.params_value());
            let at = params.as_ref().and_then(|v| v.pointer(p));
            return match (&m.equals, at) {
                (_, None) => false,
                (None, Some(_)) => true,
                (Some(want), Some(got)) => want == got,
            };
        }
        true
    }

    /// True with probability `p` (0 never draws, 1 always acts).
    fn roll(&self, p: f64) -> bool {
        if p >= 1.0 {
            return true;
        }
        if p <= 0.0 {
            return false;
        }
        let x = splitmix(
            self.rng
                .fetch_add(GAMMA, Ordering::Relaxed)
                .wrapping_add(GAMMA),
        );
        ((x >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

/// A response body: `{"jsonrpc":"2.0","id":ID,"<member>":TEXT}`.
fn body(id: Option<&RawValue>, member: &str, text: Option<&str>) -> Vec<u8> {
    let id = id.map_or("null", RawValue::get);
    let text = text.unwrap_or("{}");
    format!(r#"{{"jsonrpc":"2.0","id":{id},"{member}":{text}}}"#).into_bytes()
}

/// SplitMix64's increment.
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's output function: a well-mixed 64-bit value from a counter.
fn splitmix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A seed from the clock and the process id.
fn clock_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    splitmix(t ^ u64::from(std::process::id()).rotate_left(32))
}

#[cfg(test)]
mod tests;
