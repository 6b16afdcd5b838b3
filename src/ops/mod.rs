//! Operating a running proxy: health, readiness, metrics and the admin API.
//!
//! Owns: the operator's views, gathered from the pipeline, the sessions and the upstream.
//! Must not touch: the request path; nothing below this folder imports it.

pub mod admin;

use std::sync::Arc;
use std::time::Duration;

use crate::http::{Handler, Handshake, Request, Responder, Response};
use crate::metrics::TlsOutcome;
use crate::proxy::Proxy;

/// The main listener's handler: answers the operations endpoints (`GET` and `HEAD` of
/// `/healthz`, `/readyz`, `/metrics`: no MCP validation, no Origin/Host checks; HEAD gets
/// GET's status and headers without the body, RFC 9110 §9.3.2) and hands everything else to
/// the pipeline. `/healthz` and `/readyz` are answered without a worker permit
/// ([`Handler::needs_worker`]), so a probe is answered even when every worker is taken.
pub struct Front {
    proxy: Arc<Proxy>,
}

impl Front {
    /// In front of `proxy`.
    pub fn new(proxy: Arc<Proxy>) -> Front {
        Front { proxy }
    }

    fn operations(&self, req: &Request) -> Option<Response> {
        if !is_get_or_head(req) {
            return None;
        }
        match req.path() {
            "/healthz" => Some(Response::new(200).with_body("text/plain", b"ok\n".to_vec())),
            "/readyz" => Some(admin::readyz(&self.proxy)),
            "/metrics" => Some(
                self.proxy
                    .gate()
                    .metrics_refusal(req)
                    .unwrap_or_else(|| admin::metrics(&self.proxy)),
            ),
            _ => None,
        }
    }
}

fn is_get_or_head(req: &Request) -> bool {
    matches!(req.method.as_str(), "GET" | "HEAD")
}

impl Handler for Front {
    fn handle(&self, req: Request, res: &mut Responder<'_>) {
        match self.operations(&req) {
            Some(resp) => self.proxy.answer(&req, res, resp),
            None => self.proxy.handle(req, res),
        }
    }

    /// `/healthz` and `/readyz` take no worker: both are cheap and bounded (`/readyz` of an
    /// HTTP upstream not reached for 30 s makes a connect with a 1 s timeout, one at a time
    /// and at most one a second, others answering with its last result).
    fn needs_worker(&self, req: &Request) -> bool {
        !(is_get_or_head(req) && matches!(req.path(), "/healthz" | "/readyz"))
    }

    fn error_response(&self, status: u16, message: &str) -> Response {
        self.proxy.error_response(status, message)
    }

    fn error_headers(&self, head: &Request) -> Vec<(String, String)> {
        self.proxy.error_headers(head)
    }

    fn tls_handshake(&self, outcome: Handshake, took: Duration) {
        let outcome = match outcome {
            Handshake::Ok => TlsOutcome::Ok,
            Handshake::Failed => TlsOutcome::Failed,
            Handshake::TimedOut => TlsOutcome::TimedOut,
        };
        self.proxy.metrics().tls_handshake(outcome, took);
    }
}
