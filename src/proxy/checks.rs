//! The checks a request meets before anything else happens to it: `Host`/`Origin` (DNS
//! rebinding), media types, and which client headers may go upstream.

use crate::error::Error;
use crate::http::Request;
use crate::http::origin::{is_loopback_host, loopback_origin, normalize_origin};

use super::Proxy;

impl Proxy {
    pub(super) fn check_origin(&self, req: &Request) -> Result<(), Error> {
        if self.cfg.loopback
            && let Some(host) = req.header("host")
            && !is_loopback_host(host)
        {
            return Err(Error::Forbidden("host is not a loopback name"));
        }
        if let Some(origin) = req.header("origin") {
            let o = normalize_origin(origin);
            let ok = loopback_origin(&o) || self.cfg.allowed_origins.contains(&o);
            if !ok {
                return Err(Error::Forbidden("origin not allowed"));
            }
        }
        Ok(())
    }
}

/// Headers a client may send that go upstream. Everything else (notably `Authorization`,
/// `Cookie`, `X-Api-Key`, `X-Forwarded-*`) stays here.
/// (`Last-Event-ID` goes upstream only on the proxy's own resumption GETs.)
pub(super) fn forwardable(name: &str) -> bool {
    ["mcp-protocol-version", "mcp-method", "mcp-name"]
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h))
        || name
            .get(..10)
            .is_some_and(|p| p.eq_ignore_ascii_case("mcp-param-"))
}

/// True when a `Content-Type` value is `want` (parameters ignored).
pub(crate) fn media_is(value: &str, want: &str) -> bool {
    value
        .split(';')
        .next()
        .is_some_and(|m| m.trim().eq_ignore_ascii_case(want))
}

/// True when the request's `Accept` headers list `want` explicitly (a bare `*/*` is not
/// enough, as the MCP transport requires clients to name both types).
pub(crate) fn accepts(req: &Request, want: &str) -> bool {
    req.header_all("accept").any(|v| lists(v, want))
}

/// True when one `Accept` value lists `want`.
fn lists(accept: &str, want: &str) -> bool {
    accept.split(',').any(|part| media_is(part, want))
}

#[cfg(test)]
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types() {
        assert!(media_is(
            "application/json; charset=utf-8",
            "application/json"
        ));
        assert!(!media_is("text/plain", "application/json"));
        assert!(lists(
            "application/json, text/event-stream",
            "text/event-stream"
        ));
        assert!(!lists("*/*", "application/json"));
    }

    #[test]
    fn header_allow_list() {
        for ok in [
            "MCP-Protocol-Version",
            "mcp-method",
            "Mcp-Name",
            "Mcp-Param-Region",
        ] {
            assert!(forwardable(ok), "{ok}");
        }
        for no in [
            "Authorization",
            "Cookie",
            "X-Api-Key",
            "X-Forwarded-For",
            "Proxy-Authorization",
        ] {
            assert!(!forwardable(no), "{no}");
        }
    }
}
