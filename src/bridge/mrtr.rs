//! Multi round-trip requests over a session-era upstream.
//!
//! A bridged call's upstream stream is read through [`Bridged`]: progress passes, log
//! messages pass when the request's `_meta` asked for their level, other notifications are
//! dropped (they belong to `subscriptions/listen`). A server-to-client request the upstream
//! makes (`sampling/createMessage`, `elicitation/create`, `roots/list`) is held; once no other
//! one follows within [`COLLECT`], the call is *parked* in the [`Ctx`] table and the client
//! gets an `InputRequiredResult` naming every held request and a sealed `requestState`. The
//! retry carrying `inputResponses` takes the call back out, answers the upstream's requests
//! and goes on reading the same upstream stream. A parked call nobody takes back within
//! `--input-timeout` is dropped, which cancels it upstream ([`Running`]'s drop).
//!
//! While parked, the call lets go of what it held upstream ([`Running::park`]): over a shared
//! stdio child, other sessions' shared calls use the child meanwhile (its own input requests
//! were collected before it parked; what the child says while both are in flight is attributed
//! by the usual rule, never guessed), and its bridge session stops counting against the bound
//! of running bridged calls. The retry takes both back ([`Running::unpark`]) before the input
//! responses go upstream, so what the child says once answered is provably the call's.
//!
//! A request
//! for a capability the client did not declare is refused upstream (-32601) when its round is
//! gathered; if the client is asked nothing else and the call then fails, the client gets
//! -32021 naming that capability.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::shape::META_SERVER_INFO;
use super::state::State;
use super::waiting::Parked;
pub use super::waiting::{Ask, CallInfo, Ctx, Running, unix_ms};
use crate::error::Error;
use crate::jsonrpc::{Kind, Message};
use crate::session::{ClientCaps, LogLevel};
use crate::upstream::{Item, MessageStream, Poll};

/// How long more server-to-client requests are awaited after the first one, so that
/// requests the upstream makes together go to the client in one `InputRequiredResult`.
pub const COLLECT: Duration = Duration::from_millis(30);
/// Input requests one `InputRequiredResult` carries at most; more go in the next round.
const MAX_ASKS: usize = 32;

/// A bridged call's stream, as the pipeline reads it.
pub struct Bridged {
    ctx: Arc<Ctx>,
    run: Option<Running>,
    call: CallInfo,
    client_id: Box<RawValue>,
    asks: Vec<Ask>,
    /// Requests for a capability the client did not declare, held with the round's asks and
    /// refused upstream when the round is gathered.
    undeclared: Vec<(Box<RawValue>, ClientCaps)>,
    /// A capability the upstream asked for alone and was refused: if the call then fails, it
    /// fails with -32021 naming it.
    refused: Option<ClientCaps>,
    collect_until: Option<Instant>,
    round_deadline: Instant,
    done: bool,
}

impl Bridged {
    /// Reads `run` for the client request `client_id`; `asks` are requests still unanswered
    /// from an earlier round (they go back to the client at once).
    pub fn new(
        ctx: Arc<Ctx>,
        run: Running,
        call: CallInfo,
        client_id: Box<RawValue>,
        asks: Vec<Ask>,
        round_deadline: Instant,
    ) -> Bridged {
        let collect_until = (!asks.is_empty()).then(Instant::now);
        Bridged {
            ctx,
            run: Some(run),
            call,
            client_id,
            asks,
            undeclared: Vec::new(),
            refused: None,
            collect_until,
            round_deadline,
            done: false,
        }
    }

    /// Ends the stream, the upstream side finished (or not: then it is cancelled).
    fn end(&mut self, finished: bool) {
        self.done = true;
        if let Some(mut run) = self.run.take() {
            run.finished = finished;
        }
    }

    /// What one upstream message becomes.
    fn classify(&mut self, raw: Vec<u8>) -> Result<Option<Vec<u8>>, Error> {
        let Ok(msg) = Message::parse(&raw) else {
            return Ok(None);
        };
        match msg.kind() {
            Ok(Kind::Request) => self.asked(msg).map(|()| None),
            Ok(Kind::Notification) => Ok(match msg.method() {
                "notifications/progress" => Some(raw),
                "notifications/message" if self.wants_log(&msg) => Some(raw),
                _ => None,
            }),
            _ => Ok(None),
        }
    }

    /// True when the request asked for logs at this message's level or more severe.
    fn wants_log(&self, msg: &Message) -> bool {
        let Some(min) = self.call.log_level else {
            return false;
        };
        let level = msg
            .params
            .as_deref()
            .and_then(|p| crate::jsonrpc::pick(p.get(), ["level"]))
            .and_then(|[l]| l)
            .and_then(|l| serde_json::from_str::<String>(l.get()).ok())
            .and_then(|l| LogLevel::parse(&l));
        level.is_some_and(|l| l >= min)
    }

    /// A server-to-client request: held for the client (or, when the client did not declare
    /// what it needs, for refusal when the round is gathered), and answered here when it is
    /// not an input request.
    fn asked(&mut self, msg: Message) -> Result<(), Error> {
        let Some(run) = &self.run else {
            return Ok(());
        };
        let id = msg.id.clone().unwrap_or_else(crate::jsonrpc::null);
        let deadline = Instant::now() + Duration::from_secs(5);
        let method = msg.method().to_owned();
        let mode = msg
            .params
            .as_deref()
            .and_then(|p| crate::jsonrpc::pick(p.get(), ["mode"]))
            .and_then(|[m]| m)
            .and_then(|m| serde_json::from_str::<String>(m.get()).ok());
        let Some(need) = ClientCaps::needed(&method, mode.as_deref()) else {
            let body = if method == "ping" {
                crate::jsonrpc::result_body(&id, "{}")
            } else {
                crate::jsonrpc::error_body(Some(&id), -32601, "method not found")
            };
            return run.send(&body, deadline);
        };
        if !self.call.caps.has(need) {
            // Decided when the round is gathered (`park`): the upstream may be asking for
            // something the client can answer too.
            self.undeclared.push((id, need));
            self.collect();
            return Ok(());
        }
        self.call.asked += 1;
        let params = msg.params.as_deref().map_or("{}", RawValue::get);
        let method_json = serde_json::to_string(&method).unwrap_or_default();
        self.asks.push(Ask {
            key: format!("input-{}", self.call.asked),
            id,
            request: format!(r#"{{"method":{method_json},"params":{params}}}"#),
        });
        if self.asks.len() >= MAX_ASKS {
            self.collect_until = Some(Instant::now());
        }
        self.collect();
        Ok(())
    }

    /// Starts gathering the round's requests, if not yet.
    fn collect(&mut self) {
        if self.collect_until.is_none() {
            // A stream that cannot wait with a timeout would block until the next event,
            // which the upstream sends only once answered: no collecting. (An HTTP upstream's
            // is read by a thread of its own, `pump`, and so can.)
            let wait = match self.run.as_ref().is_some_and(|r| r.stream.must_stream()) {
                true => Duration::ZERO,
                false => COLLECT,
            };
            self.collect_until = Some(Instant::now() + wait);
        }
    }

    /// Ends a round: the requests for a capability the client did not declare are refused
    /// upstream with -32601 (what a client without it answers; spec basic/patterns/mrtr: a
    /// server includes only input requests the client declared). If the client is asked
    /// something else, the call is parked (`Some`, the `InputRequiredResult`); if not, the
    /// call goes on (`None`): the upstream may do without (a server asking for roots in
    /// passing), and if it fails instead, the client gets -32021 (see `poll_until`).
    fn gather(&mut self) -> Result<Option<Vec<u8>>, Error> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let undeclared = std::mem::take(&mut self.undeclared);
        if let Some(run) = &self.run {
            for (id, need) in &undeclared {
                let text = format!("the client did not declare {}", need.name());
                let _ = run.send(
                    &crate::jsonrpc::error_body(Some(id), -32601, &text),
                    deadline,
                );
            }
        }
        if self.asks.is_empty() {
            if let Some((_, need)) = undeclared.first() {
                self.refused.get_or_insert(*need);
            }
            self.collect_until = None;
            return Ok(None);
        }
        self.park().map(Some)
    }

    /// Parks the call and gives the client its `InputRequiredResult`.
    fn park(&mut self) -> Result<Vec<u8>, Error> {
        self.done = true;
        let Some(mut run) = self.run.take() else {
            return Err(Error::Internal("bridged call parked twice".into()));
        };
        run.park();
        let asks = std::mem::take(&mut self.asks);
        let mut requests = Map::new();
        for a in &asks {
            let v: Value = serde_json::from_str(&a.request).unwrap_or(Value::Null);
            requests.insert(a.key.clone(), v);
        }
        let bytes = asks.iter().map(|a| a.request.len() + 64).sum::<usize>() + 256;
        let timeout = self.ctx.cfg.input_timeout;
        let parked = Parked {
            run,
            call: self.call.clone(),
            asks,
            expires: Instant::now() + timeout,
            bytes,
        };
        let token = self.ctx.park(parked)?;
        let state = self.ctx.codec.seal(&State {
            token,
            expires_ms: unix_ms() + timeout.as_millis() as u64,
            principal: self.call.principal,
            request: self.call.request,
        });
        let mut result = Map::new();
        result.insert("resultType".into(), Value::from("input_required"));
        result.insert("inputRequests".into(), Value::Object(requests));
        result.insert("requestState".into(), Value::from(state));
        if let Some(info) = &self.call.finish.server_info {
            let mut meta = Map::new();
            meta.insert(META_SERVER_INFO.into(), info.clone());
            result.insert("_meta".into(), Value::Object(meta));
        }
        let result = serde_json::to_string(&result).map_err(|e| Error::Internal(e.to_string()))?;
        Ok(crate::jsonrpc::result_body(&self.client_id, &result))
    }
}

impl MessageStream for Bridged {
    fn poll_until(&mut self, wake: Instant) -> Result<Poll, Error> {
        loop {
            if self.done {
                return Ok(Poll::End);
            }
            if self.collect_until.is_some_and(|c| Instant::now() >= c) {
                match self.gather()? {
                    Some(b) => return Ok(Poll::Item(Item::Final(b))),
                    None => continue,
                }
            }
            let Some(run) = self.run.as_mut() else {
                return Ok(Poll::End);
            };
            let mut until = wake.min(self.round_deadline);
            if let Some(c) = self.collect_until {
                until = until.min(c);
            }
            let polled = run.stream.poll_until(until);
            match polled {
                Err(e) => {
                    self.end(true);
                    return Err(e);
                }
                Ok(Poll::Item(Item::Final(body))) => {
                    self.end(true);
                    if let Some(need) = self.refused
                        && failed(&body)
                    {
                        return Err(Error::MissingCapability(match need {
                            ClientCaps::SAMPLING => "sampling",
                            ClientCaps::ROOTS => "roots",
                            _ => "elicitation",
                        }));
                    }
                    let out = self
                        .call
                        .finish
                        .answer(&body, &self.client_id, &self.call.method)?;
                    return Ok(Poll::Item(Item::Final(out)));
                }
                Ok(Poll::Item(Item::Message(m))) => match self.classify(m) {
                    Ok(Some(pass)) => return Ok(Poll::Item(Item::Message(pass))),
                    Ok(None) => {}
                    Err(e) => {
                        self.end(false);
                        return Err(e);
                    }
                },
                Ok(Poll::Idle) => {
                    let now = Instant::now();
                    if self.collect_until.is_some_and(|c| now >= c) {
                        match self.gather()? {
                            Some(b) => return Ok(Poll::Item(Item::Final(b))),
                            None => continue,
                        }
                    }
                    if now >= self.round_deadline {
                        self.end(false);
                        return Err(Error::Timeout);
                    }
                    if now >= wake {
                        return Ok(Poll::Idle);
                    }
                }
                Ok(Poll::End) => {
                    self.end(true);
                    return Ok(Poll::End);
                }
            }
        }
    }

    fn must_stream(&self) -> bool {
        self.run.as_ref().is_some_and(|r| r.stream.must_stream())
    }

    fn dropped(&mut self) -> u64 {
        self.run.as_mut().map_or(0, |r| r.stream.dropped())
    }
}

/// True when an upstream response is an error or a tool result marked `isError`.
fn failed(body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Answer {
        error: Option<serde::de::IgnoredAny>,
        result: Option<Outcome>,
    }
    #[derive(serde::Deserialize)]
    struct Outcome {
        #[serde(rename = "isError", default)]
        is_error: bool,
    }
    serde_json::from_slice::<Answer>(body)
        .is_ok_and(|a| a.error.is_some() || a.result.is_some_and(|r| r.is_error))
}

/// Takes the parked call `state` names back for a retry, answers the upstream's requests
/// from `responses`, and returns the stream that goes on with it. Nothing reaches the
/// upstream unless the state verifies and matches this request and principal.
pub fn resume(
    ctx: &Arc<Ctx>,
    state: &str,
    responses: Option<&Value>,
    call: CallInfo,
    client_id: Box<RawValue>,
    request_timeout: Duration,
) -> Result<Bridged, Error> {
    let s = ctx.codec.open(state, unix_ms())?;
    if s.principal != call.principal || s.request != call.request {
        return Err(Error::InvalidParams(
            "requestState belongs to another request".into(),
        ));
    }
    let responses = match responses {
        None => None,
        Some(Value::Object(m)) => Some(m),
        Some(_) => {
            return Err(Error::InvalidParams(
                "inputResponses must be an object".into(),
            ));
        }
    };
    let mut parked = ctx
        .take(s.token)
        .ok_or_else(|| Error::InvalidParams("requestState is unknown, used or timed out".into()))?;
    let deadline = Instant::now() + request_timeout;
    // The child back before it hears the answers: what it says next is the call's.
    parked.run.unpark(deadline)?;
    let mut missing = Vec::new();
    for ask in parked.asks {
        match responses.and_then(|r| r.get(&ask.key)) {
            Some(v @ Value::Object(_)) => {
                let result =
                    serde_json::to_string(v).map_err(|e| Error::Internal(e.to_string()))?;
                parked
                    .run
                    .send(&crate::jsonrpc::result_body(&ask.id, &result), deadline)?;
            }
            _ => missing.push(ask),
        }
    }
    let call = CallInfo {
        asked: parked.call.asked,
        finish: parked.call.finish,
        ..call
    };
    Ok(Bridged::new(
        ctx.clone(),
        parked.run,
        call,
        client_id,
        missing,
        deadline,
    ))
}

#[cfg(test)]
mod failed_tests {
    use super::failed;

    #[test]
    fn an_error_or_an_is_error_result_failed() {
        assert!(failed(
            br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32603,"message":"x"}}"#
        ));
        assert!(failed(
            br#"{"jsonrpc":"2.0","id":1,"result":{"isError":true,"content":[]}}"#
        ));
        assert!(!failed(
            br#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#
        ));
        assert!(!failed(
            br#"{"jsonrpc":"2.0","id":1,"result":{"isError":false}}"#
        ));
        assert!(!failed(b"not json"));
    }
}
