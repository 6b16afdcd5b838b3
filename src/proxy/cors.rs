//! CORS for browser clients on the MCP endpoint: the preflight answer and the headers every
//! answer to an allowed origin carries. The one place these rules live.
//!
//! Which origins are allowed is `checks.rs`'s Origin check (loopback origins and
//! `--allowed-origin`): a request from any other origin is refused (403) before it gets here,
//! preflight included, so nothing below ever names a foreign origin. Requests without `Origin`
//! (every non-browser client) are not touched.
//!
//! * **Preflight** (`OPTIONS` with `Origin` and `Access-Control-Request-Method`): answered 204
//!   before authentication (a browser never sends credentials with one) and not charged to any
//!   rate limit (it carries no credentials to charge, costs no upstream work, and the request
//!   it announces is charged as usual), but counted in the metrics (class `OPTIONS`) and the
//!   access log like any other request. It allows `POST`, `GET`, `DELETE` and the request
//!   headers the transport uses ([`ALLOWED_HEADERS`]) plus any `Mcp-Param-*` name that is a
//!   valid token; since a preflight answer must list header names exactly, the requested
//!   `Mcp-Param-*` names are echoed back. Any other method or header: 403, and the browser
//!   does not send the request. The answer may be cached by the browser for `--cors-max-age`
//!   (default 2 h, Chromium's cap).
//! * **Every answer** to an allowed origin, preflight, JSON, SSE and errors alike (401, 403,
//!   429 included, so a page can read why): `Access-Control-Allow-Origin: <that origin>`,
//!   `Vary: Origin`, and `Access-Control-Expose-Headers` so that the page can read the
//!   session id, the authentication challenge and `Retry-After`. Never `*`, and never
//!   `Access-Control-Allow-Credentials`: tokens are set by the page in `Authorization`, and
//!   ambient credentials (cookies) are not honoured cross-origin. The RFC 9728 metadata
//!   document keeps its own `Access-Control-Allow-Origin: *` (it is public and credential-free).
//!
//! The HTTP layer's own refusals once it has parsed a request's head (413 body too large, 400
//! bad framing, 417, 408 body timeout, 431 trailer, 503 no worker free) carry the same headers
//! under the same conditions (the endpoint's path, one `Origin`, allowed), through
//! [`Handler::error_headers`](crate::http::Handler::error_headers). Not covered, because no
//! head was parsed to read an `Origin` from: 431 head too large, 400 malformed head, 505, 408
//! head timeout and 503 at the connection cap; nor is the 500 after a handler panic. A page
//! sees those as network errors.

use crate::error::Error;
use crate::http::{Request, Response, valid_header};

/// The methods a preflight may ask for: the endpoint's own.
pub(super) const METHODS: &str = "POST, GET, DELETE";

/// The request headers a page may send (lowercase), besides `Mcp-Param-*`.
pub(super) const ALLOWED_HEADERS: [&str; 8] = [
    "content-type",
    "accept",
    "authorization",
    "mcp-session-id",
    "mcp-protocol-version",
    "last-event-id",
    "mcp-method",
    "mcp-name",
];

/// The response headers a page may read, besides the CORS-safelisted ones.
pub(super) const EXPOSED_HEADERS: &str = "mcp-session-id, www-authenticate, retry-after";

/// The prefix of the per-parameter headers (`Mcp-Param-<Name>`).
const PARAM_PREFIX: &str = "mcp-param-";

/// Whether `name` is an `Mcp-Param-*` header name: the prefix (any case) and a non-empty
/// token after it.
fn is_param_header(name: &str) -> bool {
    name.get(..PARAM_PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(PARAM_PREFIX))
        && name.len() > PARAM_PREFIX.len()
        && valid_header(name, "")
}

/// The `Origin` an answer echoes in `Access-Control-Allow-Origin`: the request's own value, as
/// sent (browsers compare it byte for byte), once the Origin check has allowed it. `None`
/// without an `Origin`.
pub(super) fn origin(req: &Request) -> Option<String> {
    req.header("origin")
        .map(|o| o.trim_matches([' ', '\t']).to_owned())
        .filter(|o| !o.is_empty())
}

/// Adds the headers every answer to an allowed origin carries (none without one).
pub(super) fn decorate(headers: &mut Vec<(String, String)>, origin: Option<&str>) {
    let Some(origin) = origin else { return };
    headers.extend([
        ("access-control-allow-origin".into(), origin.to_owned()),
        ("vary".into(), "Origin".into()),
        (
            "access-control-expose-headers".into(),
            EXPOSED_HEADERS.into(),
        ),
    ]);
}

/// Whether `req` is a CORS preflight: `OPTIONS` with `Origin` and
/// `Access-Control-Request-Method`. Any other `OPTIONS` is a 405 as before.
pub(super) fn is_preflight(req: &Request) -> bool {
    req.method == "OPTIONS"
        && req.header("origin").is_some()
        && req.header("access-control-request-method").is_some()
}

/// The answer to a preflight from an allowed origin (the caller has checked the origin and
/// adds the [`decorate`] headers): 204 allowing the endpoint's methods and headers, or 403
/// when the browser asks for another method or header.
pub(super) fn preflight(req: &Request, max_age_secs: u64) -> Result<Response, Error> {
    let method = req
        .header("access-control-request-method")
        .unwrap_or("")
        .trim_matches([' ', '\t']);
    // Methods are case-sensitive; browsers send these three upper case.
    if !matches!(method, "POST" | "GET" | "DELETE") {
        return Err(Error::Forbidden(
            "CORS preflight for a method the endpoint does not serve",
        ));
    }
    let mut allowed = ALLOWED_HEADERS.join(", ");
    let requested = req
        .header_all("access-control-request-headers")
        .flat_map(|v| v.split(','))
        .map(|n| n.trim_matches([' ', '\t']))
        .filter(|n| !n.is_empty());
    for name in requested {
        if ALLOWED_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(name)) {
            continue;
        }
        if !is_param_header(name) {
            return Err(Error::Forbidden(
                "CORS preflight for a header the endpoint does not take",
            ));
        }
        allowed.push_str(", ");
        allowed.push_str(name);
    }
    Ok(Response::new(204)
        .with_header("access-control-allow-methods", METHODS)
        .with_header("access-control-allow-headers", &allowed)
        .with_header("access-control-max-age", &max_age_secs.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, headers: &[(&str, &str)]) -> Request {
        Request {
            method: method.into(),
            target: "/mcp".into(),
            version: crate::http::Version::Http11,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: Vec::new(),
            remote: ([127, 0, 0, 1], 1).into(),
            client_cert: None,
        }
    }

    fn header<'a>(r: &'a Response, name: &str) -> Option<&'a str> {
        r.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    const ORIGIN: (&str, &str) = ("Origin", "https://app.example");

    #[test]
    fn a_preflight_is_options_with_origin_and_a_requested_method() {
        let acrm = ("Access-Control-Request-Method", "POST");
        assert!(is_preflight(&req("OPTIONS", &[ORIGIN, acrm])));
        assert!(!is_preflight(&req("OPTIONS", &[ORIGIN])), "no method asked");
        assert!(!is_preflight(&req("OPTIONS", &[acrm])), "no Origin");
        assert!(!is_preflight(&req("POST", &[ORIGIN, acrm])));
    }

    #[test]
    fn preflight_allows_the_endpoints_methods_and_headers() {
        for method in ["POST", "GET", "DELETE"] {
            let r = preflight(
                &req(
                    "OPTIONS",
                    &[
                        ORIGIN,
                        ("Access-Control-Request-Method", method),
                        (
                            "Access-Control-Request-Headers",
                            "content-type,mcp-protocol-version, Mcp-Session-Id,authorization",
                        ),
                    ],
                ),
                7200,
            )
            .expect("allowed");
            assert_eq!(r.status, 204);
            assert!(r.body.is_empty());
            assert_eq!(header(&r, "access-control-allow-methods"), Some(METHODS));
            assert_eq!(header(&r, "access-control-max-age"), Some("7200"));
            let allowed = header(&r, "access-control-allow-headers").unwrap_or_default();
            for h in ALLOWED_HEADERS {
                assert!(allowed.split(", ").any(|a| a == h), "{h} in {allowed}");
            }
        }
    }

    #[test]
    fn preflight_echoes_valid_mcp_param_names_only() {
        let ask = |headers: &str| {
            preflight(
                &req(
                    "OPTIONS",
                    &[
                        ORIGIN,
                        ("Access-Control-Request-Method", "POST"),
                        ("Access-Control-Request-Headers", headers),
                    ],
                ),
                60,
            )
        };
        let r = ask("content-type, mcp-param-region,MCP-PARAM-Max_Items, mcp-method").expect("ok");
        let allowed = header(&r, "access-control-allow-headers").unwrap_or_default();
        assert!(
            allowed.ends_with(", mcp-param-region, MCP-PARAM-Max_Items"),
            "{allowed}"
        );
        // Empty items (",,") are skipped; two header fields are one list.
        let two = preflight(
            &req(
                "OPTIONS",
                &[
                    ORIGIN,
                    ("Access-Control-Request-Method", "GET"),
                    ("Access-Control-Request-Headers", "last-event-id,,"),
                    ("Access-Control-Request-Headers", "mcp-param-a"),
                ],
            ),
            60,
        )
        .expect("ok");
        let allowed = header(&two, "access-control-allow-headers").unwrap_or_default();
        assert!(allowed.ends_with("mcp-name, mcp-param-a"), "{allowed}");
        for bad in [
            "x-api-key",
            "cookie",
            "mcp-param-",
            "mcp-param-a b",
            "mcp-param-(x)",
            "mcp-param-\u{e9}",
            "content-type, x-custom",
            "mcp-params",
        ] {
            match ask(bad) {
                Err(Error::Forbidden(_)) => {}
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn preflight_refuses_other_methods() {
        for method in ["PUT", "PATCH", "OPTIONS", "post", "", "CONNECT"] {
            let r = preflight(
                &req(
                    "OPTIONS",
                    &[ORIGIN, ("Access-Control-Request-Method", method)],
                ),
                60,
            );
            assert!(matches!(r, Err(Error::Forbidden(_))), "{method:?}: {r:?}");
        }
    }

    #[test]
    fn answers_to_an_allowed_origin_echo_it_and_vary() {
        let mut h = vec![("content-type".to_string(), "application/json".to_string())];
        decorate(&mut h, None);
        assert_eq!(h.len(), 1, "no Origin: unchanged");
        decorate(&mut h, Some("https://App.example:8443"));
        let get = |n: &str| h.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        assert_eq!(
            get("access-control-allow-origin"),
            Some("https://App.example:8443")
        );
        assert_eq!(get("vary"), Some("Origin"));
        assert_eq!(get("access-control-expose-headers"), Some(EXPOSED_HEADERS));
        assert!(
            !h.iter()
                .any(|(k, _)| k == "access-control-allow-credentials")
        );
        // The echoed origin is the value as sent, trimmed.
        assert_eq!(
            origin(&req("GET", &[("Origin", " http://localhost:3000 ")])).as_deref(),
            Some("http://localhost:3000")
        );
        assert_eq!(origin(&req("GET", &[])), None);
    }
}
