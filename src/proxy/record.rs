//! The pipeline's hand-off to tapes (`--record`), the audit log (`--audit-log`) and
//! `shadowcat_tool_calls_total`: one call at each point of `handle`, `route` and `sse`. Each
//! only queues (the `tape` writers do the rest on their own threads) and costs one branch when
//! its feature is off.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::error::Error;
use crate::gate::Caller;
use crate::http::Request;
use crate::jsonrpc::{self, Answered, Kind, Message};
use crate::metrics::ToolOutcome;
use crate::session::Session;
use crate::tape::{AuditRecord, Tap};

use super::{Access, Proxy, error_response};

/// Bodies of refused requests at most this large are read for the audit line's method and
/// name (a refusal comes before the body is parsed).
const AUDIT_PEEK: usize = 64 * 1024;

impl Proxy {
    /// Notes the tool, prompt or resource a request names (and its arguments with
    /// `--audit-arguments`), for the audit line and `shadowcat_tool_calls_total`. `tool`: the
    /// name already read for the rate limits, if it was.
    pub(super) fn note_target(
        &self,
        msg: &Message,
        kind: Kind,
        tool: Option<String>,
        acc: &mut Access,
    ) {
        if kind != Kind::Request || !(self.audit.is_on() || msg.method() == "tools/call") {
            return;
        }
        acc.name = tool.or_else(|| msg.target_name());
        if self.audit.wants_arguments() {
            acc.arguments = msg.head().arguments.map(|a| a.to_owned());
        }
    }

    /// A stateless (2026-07-28) message goes on its client's tape for this hour.
    pub(super) fn tap_stateless(&self, req: &Request, caller: &Caller, acc: &mut Access) {
        let ip = || self.gate.client_ip(req);
        if self.tapes.is_on()
            && let Some(tap) = self.tapes.stateless(caller.principal.as_deref(), ip())
        {
            acc.tap = Some(tap);
            acc.sent_unrecorded = true;
        }
    }

    /// A new session's tape opens with the request that created it.
    pub(super) fn tap_new_session(&self, session: &Session, acc: &mut Access) {
        let at = acc.at.unwrap_or_else(Instant::now);
        let principal = session.principal.as_deref();
        if let Some(tap) =
            self.tapes
                .open_session(&session.id, &session.protocol_version, principal, at)
        {
            acc.tap = Some(tap);
            acc.sent_unrecorded = true;
        }
    }

    /// Before a session's message is forwarded: a response or notification goes on the tape
    /// now (it takes effect on other threads: the tool that waited for this sampling answer
    /// answers on its own stream). A request waits until it is forwarded (its answer comes
    /// back on this thread), so that its upstream id is known: its id key is kept for that.
    pub(super) fn tap_before_forward(
        &self,
        req: &Request,
        session: &Session,
        msg: &Message,
        acc: &Access,
    ) -> Option<(Tap, Option<String>)> {
        let tap = self.tapes.session(&session.id, &session.protocol_version)?;
        if acc.kind == Some(Kind::Request) {
            let key = msg.id.as_deref().and_then(jsonrpc::id_key);
            return Some((tap, key));
        }
        let at = acc.at.unwrap_or_else(Instant::now);
        self.tapes.client_sent(&tap, at, req.body.clone());
        Some((tap, None))
    }

    /// Once forwarded: the request's tape, with the upstream's id for it (stdio), for the
    /// request itself (recorded by `record_request`) and everything of its answer.
    pub(super) fn tap_after_forward(
        &self,
        session: &Session,
        tapped: Option<(Tap, Option<String>)>,
        acc: &mut Access,
    ) {
        let Some((tap, key)) = tapped else { return };
        let request = acc.kind == Some(Kind::Request);
        acc.tap = Some(match key {
            Some(k) => tap.with_upstream_id(session.upstream_call_id(&k)),
            None => tap,
        });
        acc.sent_unrecorded = request;
    }

    /// The session was lost under a request: the request and its answer go on the tape now,
    /// before the session's end closes it.
    pub(super) fn record_lost_session(&self, req: &Request, acc: &mut Access) {
        let Some(tap) = acc.tap.take() else { return };
        if std::mem::take(&mut acc.sent_unrecorded) {
            let at = acc.at.unwrap_or_else(Instant::now);
            self.tapes.client_sent(&tap, at, req.body.clone());
        }
        let answer = error_response(&Error::UnknownSession, acc.id.as_deref());
        self.tapes.client_got(&tap, answer.body, true, true);
    }

    /// The request goes on its tape once routing tied it to one, before anything sent back
    /// (the writer keeps this thread's order). Its body is handed over, not copied: the
    /// pipeline is done with it.
    pub(super) fn record_request(&self, req: &mut Request, acc: &mut Access, at: Instant) {
        if let (Some(tap), true) = (&acc.tap, acc.sent_unrecorded) {
            self.tapes
                .client_sent(tap, at, std::mem::take(&mut req.body));
            acc.sent_unrecorded = false;
        }
    }

    /// A single answer (JSON or an error): on the tape (`synthetic`: the proxy made it) and
    /// counted in the audit's bytes out.
    pub(super) fn record_answer(&self, acc: &Access, body: &[u8], synthetic: bool) {
        acc.bytes_out.set(body.len() as u64);
        if let Some(tap) = &acc.tap
            && !body.is_empty()
        {
            let fault = acc.fault.clone();
            self.tapes
                .client_got_marked(tap, body.to_vec(), true, synthetic, fault);
        }
    }

    /// One message on a request's stream: on the tape (`answer`: the final one), its frame's
    /// bytes counted.
    pub(super) fn record_streamed(
        &self,
        acc: &Access,
        data: Vec<u8>,
        frame: usize,
        answer: bool,
        synthetic: bool,
    ) {
        acc.bytes_out.set(acc.bytes_out.get() + frame as u64);
        if let Some(tap) = &acc.tap {
            // The answer carries the mark of the fault rule that acted on the request.
            let fault = if answer { acc.fault.clone() } else { None };
            self.tapes
                .client_got_marked(tap, data, answer, synthetic, fault);
        }
    }

    /// One event of a followed log (the standalone stream when `acc` has a tap; resumption
    /// replays have none): on the tape once, however often it is replayed.
    pub(super) fn record_event(&self, acc: &Access, frame: &std::sync::Arc<Vec<u8>>) {
        acc.bytes_out.set(acc.bytes_out.get() + frame.len() as u64);
        if let Some(tap) = &acc.tap {
            self.tapes.client_got_event(tap, frame.clone());
        }
    }

    /// `shadowcat_tool_calls_total` for a finished `tools/call` whose outcome is known.
    pub(super) fn count_tool_call(&self, acc: &Access) {
        if acc.kind != Some(Kind::Request) || acc.mcp_method != "tools/call" {
            return;
        }
        let outcome = match acc.answered() {
            Some(Answered::Ok) => ToolOutcome::Ok,
            Some(Answered::ToolError) => ToolOutcome::ToolError,
            Some(Answered::Error(_)) => ToolOutcome::Error,
            None => return,
        };
        self.metrics.tool_call(acc.name.as_deref(), outcome);
    }

    /// The audit line of a finished request on the MCP endpoint (requests, and refusals of
    /// anything). A refused request was refused before its body was read: its method and
    /// name come from a raw scan of the body (only the envelope and `params.name`/`.uri`),
    /// if it is small.
    pub(super) fn audit_line(
        &self,
        req: &Request,
        acc: Access,
        bytes_in: u64,
        status: u16,
        elapsed: Duration,
    ) {
        if !self.audit.is_on()
            || req.path() != self.cfg.path
            || (acc.kind != Some(Kind::Request) && status < 400)
        {
            return;
        }
        let answered = acc.answered();
        let mut method = (!acc.mcp_method.is_empty()).then_some(acc.mcp_method);
        let mut name = acc.name;
        let mut arguments = acc.arguments;
        if method.is_none() && req.method == "POST" && req.body.len() <= AUDIT_PEEK {
            let text = std::str::from_utf8(&req.body).unwrap_or("");
            if let Some([m, params]) = jsonrpc::pick(text.trim_ascii(), ["method", "params"]) {
                method = m.and_then(|m| serde_json::from_str(m.get()).ok());
                let head = params.map(jsonrpc::ParamsHead::of).unwrap_or_default();
                name = head
                    .name
                    .or(head.uri)
                    .and_then(|n| serde_json::from_str(n.get()).ok());
                if self.audit.wants_arguments() {
                    arguments = head.arguments.map(|a| a.to_owned());
                }
            }
        }
        let at = SystemTime::now().checked_sub(elapsed).unwrap_or(UNIX_EPOCH);
        let http_method = match req.method.as_str() {
            "POST" => "POST".into(),
            "GET" => "GET".into(),
            "DELETE" => "DELETE".into(),
            other => other.to_owned().into(),
        };
        self.audit.log(AuditRecord {
            at,
            principal: acc.principal,
            client_ip: self.gate.client_ip(req),
            session: (!acc.session.is_empty()).then_some(acc.session),
            http_method,
            method,
            name,
            status,
            answered,
            duration: elapsed,
            bytes_in,
            bytes_out: acc.bytes_out.get(),
            arguments,
            fault: acc.fault,
        });
    }
}
