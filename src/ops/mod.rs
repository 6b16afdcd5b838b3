//! Operating a running proxy: health, readiness, metrics and the admin API.
//!
//! Owns: the operator's views, gathered from the pipeline, the sessions and the upstream.
//! Must not touch: the request path; nothing below this folder imports it.

pub mod admin;

use std::sync::Arc;

use crate::http::{Handler, Request, Responder, Response};
use crate::proxy::Proxy;

/// The main listener's handler: answers the operations endpoints (`GET /healthz`, `/readyz`,
/// `/metrics`: no MCP validation, no Origin/Host checks) and hands everything else to the
/// pipeline.
pub struct Front {
    proxy: Arc<Proxy>,
}

impl Front {
    /// In front of `proxy`.
    pub fn new(proxy: Arc<Proxy>) -> Front {
        Front { proxy }
    }

    fn operations(&self, req: &Request) -> Option<Response> {
        if req.method != "GET" {
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

impl Handler for Front {
    fn handle(&self, req: Request, res: &mut Responder<'_>) {
        match self.operations(&req) {
            Some(resp) => self.proxy.answer(&req, res, resp),
            None => self.proxy.handle(req, res),
        }
    }

    fn error_response(&self, status: u16, message: &str) -> Response {
        self.proxy.error_response(status, message)
    }
}
