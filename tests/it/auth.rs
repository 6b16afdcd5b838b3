//! Inbound authentication through the whole proxy: static tokens, JWTs from a JWKS URL,
//! RFC 9728 metadata, sessions bound to their principal, the metrics token, the Python SDK
//! with a bearer token, and the stdio children's environment.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use shadowcat::http::{Handler, Responder, Server, ServerConfig};
use shadowcat::http::{Request, Response};

use crate::support::*;

const ALICE: &str = "alice-0123456789abcdef";
const BOB: &str = "bob-0123456789abcdef";

fn tokens_file(dir: &TempDir) -> String {
    let f = dir.path().join("tokens");
    std::fs::write(&f, format!("# test tokens\n{ALICE} alice\n{BOB} bob\n")).unwrap();
    f.display().to_string()
}

/// POST with a bearer token (or none) and an optional session.
fn post_as(addr: SocketAddr, token: Option<&str>, sid: Option<&str>, body: &str) -> Resp {
    let auth = token.map(|t| format!("Bearer {t}"));
    let extra: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    post_with(addr, &extra, sid, body)
}

const LIST: &str = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;

#[test]
fn static_tokens_gate_the_endpoint_and_bind_sessions() {
    let dir = TempDir::new("auth-static");
    let p = demo_proxy(&[
        "--auth-tokens",
        &tokens_file(&dir),
        "--authorization-server",
        "https://auth.example.com",
    ]);
    let addr = p.local_addr();
    let meta_url = format!("http://{addr}/.well-known/oauth-protected-resource/mcp");

    // No token: 401, a challenge naming the metadata, a JSON-RPC error body.
    let r = post_as(addr, None, None, INIT);
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(
        r.header("www-authenticate"),
        Some(format!("Bearer resource_metadata=\"{meta_url}\"").as_str())
    );
    assert_eq!(r.json()["error"]["code"], -32600);
    // A wrong token: 401 with error="invalid_token".
    let r = post_as(addr, Some("not-a-known-token-at-all"), None, INIT);
    assert_eq!(r.status, 401);
    let challenge = r.header("www-authenticate").unwrap();
    assert!(
        challenge.starts_with("Bearer error=\"invalid_token\""),
        "{challenge}"
    );
    // Another scheme is no token.
    let basic = [("Authorization", "Basic YWxpY2U6eA==")];
    let mut h = JSON_HEADERS.to_vec();
    h.extend(basic);
    let r = Conn::open(addr).request("POST", "/mcp", &h, INIT.as_bytes());
    assert_eq!(r.status, 401);

    // Alice's session works for Alice only.
    let r = post_as(addr, Some(ALICE), None, INIT);
    assert_eq!(r.status, 200, "{}", r.text());
    let sid = r.header("mcp-session-id").unwrap().to_string();
    assert_eq!(post_as(addr, Some(ALICE), Some(&sid), LIST).status, 200);
    assert_eq!(post_as(addr, Some(BOB), Some(&sid), LIST).status, 404);
    assert_eq!(post_as(addr, None, Some(&sid), LIST).status, 401);
    let bob = format!("Bearer {BOB}");
    let mut gh = get_headers(&sid);
    gh.push(("Authorization", &bob));
    assert_eq!(get(addr, "/mcp", &gh).status, 404, "bob's GET");
    let mut dh = vec![("Mcp-Session-Id", sid.as_str())];
    dh.push(("Authorization", &bob));
    let r = Conn::open(addr).request("DELETE", "/mcp", &dh, b"");
    assert_eq!(r.status, 404, "bob's DELETE");
    assert_eq!(
        post_as(addr, Some(ALICE), Some(&sid), LIST).status,
        200,
        "bob's attempts left alice's session alone"
    );
    let alice = format!("Bearer {ALICE}");
    dh[1] = ("Authorization", &alice);
    assert_eq!(
        Conn::open(addr).request("DELETE", "/mcp", &dh, b"").status,
        200
    );

    // Operations endpoints stay open; the metadata is served at both paths.
    assert_eq!(get(addr, "/healthz", &[]).status, 200);
    assert_eq!(get(addr, "/readyz", &[]).status, 200);
    let m = get(addr, "/metrics", &[]);
    assert_eq!(m.status, 200);
    assert!(
        m.text()
            .contains("shadowcat_rejected_total{reason=\"auth\"} 4"),
        "three 401s and one 401 on the session, counted: {}",
        m.text()
            .lines()
            .filter(|l| l.contains("rejected"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    for path in [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
    ] {
        let r = get(addr, path, &[]);
        assert_eq!(r.status, 200, "{path}");
        let doc = r.json();
        assert_eq!(doc["resource"], format!("http://{addr}/mcp"));
        assert_eq!(
            doc["authorization_servers"],
            json!(["https://auth.example.com"])
        );
        assert_eq!(doc["bearer_methods_supported"], json!(["header"]));
        assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    }
    assert_eq!(
        get(addr, "/.well-known/oauth-protected-resource/other", &[]).status,
        404
    );
}

#[test]
fn metrics_token_guards_metrics_only() {
    let p = demo_proxy(&["--metrics-token", "metrics-0123456789abcdef"]);
    let addr = p.local_addr();
    let r = get(addr, "/metrics", &[]);
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"metrics\"")
    );
    let wrong = get(
        addr,
        "/metrics",
        &[("Authorization", "Bearer metrics-0123456789abcdeX")],
    );
    assert_eq!(wrong.status, 401);
    let ok = get(
        addr,
        "/metrics",
        &[("Authorization", "Bearer metrics-0123456789abcdef")],
    );
    assert_eq!(ok.status, 200);
    assert!(ok.text().contains("shadowcat_requests_total"));
    // The MCP endpoint itself needs no token: authentication is off.
    assert_eq!(post_as(addr, None, None, INIT).status, 200);
    // Metadata is only served when authentication is on.
    assert_eq!(
        get(addr, "/.well-known/oauth-protected-resource", &[]).status,
        404
    );
}

/// Serves `tests/fixtures/jwt/jwks.json`, counting fetches.
struct Jwks {
    body: Vec<u8>,
    hits: AtomicUsize,
}

impl Handler for Jwks {
    fn handle(&self, _req: Request, res: &mut Responder<'_>) {
        self.hits.fetch_add(1, Ordering::SeqCst);
        let _ = res.send(Response::new(200).with_body("application/json", self.body.clone()));
    }
}

/// A loopback JWKS server (stopped when the returned [`Server`] drops).
fn jwks_server() -> (Server, Arc<Jwks>) {
    let jwks = Arc::new(Jwks {
        body: std::fs::read(fixture("jwks.json")).unwrap(),
        hits: AtomicUsize::new(0),
    });
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = Server::start(l, ServerConfig::default(), jwks.clone()).unwrap();
    (server, jwks)
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/jwt")
        .join(name)
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn jwt(alg: Algorithm, kid: &str, pem: &str, claims: &Value) -> String {
    shadowcat::internals::install_jwt_crypto();
    let pem = std::fs::read(fixture(pem)).unwrap();
    let key = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem).unwrap(),
        _ => EncodingKey::from_rsa_pem(&pem).unwrap(),
    };
    let mut h = Header::new(alg);
    h.kid = Some(kid.into());
    encode(&h, claims, &key).unwrap()
}

const RESOURCE: &str = "https://mcp.example.com/api/mcp";
const ISSUER: &str = "https://auth.example.com";

fn claims(sub: &str, scope: &str, exp: u64) -> Value {
    json!({"sub": sub, "iss": ISSUER, "aud": RESOURCE, "exp": exp, "scope": scope})
}

#[test]
fn jwt_bearer_tokens_from_a_jwks_url() {
    let (jwks, fixture) = jwks_server();
    let url = format!("http://{}/jwks.json", jwks.local_addr());
    let hits = &fixture.hits;
    let p = demo_proxy(&[
        "--auth-jwt",
        "--jwks-url",
        &url,
        "--jwt-issuer",
        ISSUER,
        "--required-scope",
        "mcp:tools",
        "--resource-url",
        RESOURCE,
        "--authorization-server",
        ISSUER,
    ]);
    let addr = p.local_addr();
    assert_eq!(hits.load(Ordering::SeqCst), 1, "fetched once at start-up");
    let later = now() + 300;

    let alice = jwt(
        Algorithm::RS256,
        "rsa1",
        "rsa1.pem",
        &claims("alice", "mcp:tools", later),
    );
    let r = post_as(addr, Some(&alice), None, INIT);
    assert_eq!(r.status, 200, "{}", r.text());
    let sid = r.header("mcp-session-id").unwrap().to_string();
    assert_eq!(post_as(addr, Some(&alice), Some(&sid), LIST).status, 200);

    // Bob (ES256) is valid, but not the owner of Alice's session.
    let bob = jwt(
        Algorithm::ES256,
        "ec1",
        "ec1.pem",
        &claims("bob", "a mcp:tools", later),
    );
    assert_eq!(post_as(addr, Some(&bob), None, INIT).status, 200);
    assert_eq!(post_as(addr, Some(&bob), Some(&sid), LIST).status, 404);

    let meta = "resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/api/mcp\"";
    // Valid but without the scope: 403 insufficient_scope.
    let weak = jwt(
        Algorithm::RS256,
        "rsa1",
        "rsa1.pem",
        &claims("carol", "read", later),
    );
    let r = post_as(addr, Some(&weak), None, INIT);
    assert_eq!(r.status, 403);
    assert_eq!(
        r.header("www-authenticate").unwrap(),
        format!("Bearer error=\"insufficient_scope\", scope=\"mcp:tools\", {meta}")
    );
    // Expired (beyond the 30 s leeway): 401 invalid_token.
    let old = jwt(
        Algorithm::RS256,
        "rsa1",
        "rsa1.pem",
        &claims("alice", "mcp:tools", now() - 120),
    );
    let r = post_as(addr, Some(&old), None, INIT);
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate").unwrap(),
        format!("Bearer error=\"invalid_token\", error_description=\"token expired\", {meta}")
    );
    // An unknown kid is refused; the set was fetched less than 10 s ago, so it is not
    // fetched again (a flood of random kids cannot hammer the key server).
    let stranger = jwt(
        Algorithm::RS256,
        "rsa2",
        "rsa2.pem",
        &claims("eve", "mcp:tools", later),
    );
    for _ in 0..5 {
        assert_eq!(post_as(addr, Some(&stranger), None, INIT).status, 401);
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "no refetch within the interval"
    );
    // The metadata is served at the resource URL's path and at the local MCP path.
    for path in [
        "/.well-known/oauth-protected-resource/api/mcp",
        "/.well-known/oauth-protected-resource/mcp",
    ] {
        let r = get(addr, path, &[]);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.json()["resource"], RESOURCE);
        assert_eq!(r.json()["scopes_supported"], json!(["mcp:tools"]));
    }
}

#[test]
fn unreachable_jwks_url_stops_start_up() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/jwks.json");
    let cfg = config(&["--auth-jwt", "--jwks-url", &url]);
    let err = shadowcat::Shadowcat::start(cfg)
        .err()
        .expect("start-up fails");
    let line = err.to_string();
    assert!(line.starts_with(&format!("--jwks-url {url}: ")), "{line}");
}

#[test]
fn python_sdk_with_a_bearer_token() {
    let dir = TempDir::new("auth-py");
    let p = demo_proxy(&[
        "--auth-tokens",
        &tokens_file(&dir),
        "--authorization-server",
        "https://auth.example.com",
    ]);
    let url = format!("http://{}/mcp", p.local_addr());
    let out = run_py_args("auth.py", &url, &[ALICE]);
    assert_eq!(out["unauthorized"], 401, "{out}");
    assert_eq!(out["metadata"]["resource"], url);
    assert_eq!(
        out["metadata"]["authorization_servers"],
        json!(["https://auth.example.com"])
    );
    assert_eq!(out["echo"], "Echo: authenticated");
}

#[test]
fn stdio_children_get_only_the_configured_environment() {
    let server = format!(
        "{} {}/tests/py/envserver.py",
        python().display(),
        env!("CARGO_MANIFEST_DIR")
    );
    let p = demo_proxy(&[
        "--stdio",
        &server,
        "--stdio-children",
        "1",
        "--stdio-clear-env",
        "--stdio-env",
        "SHADOWCAT_SECRET=s3cret-${CARGO_PKG_NAME}",
        "--metrics-token",
        "metrics-0123456789abcdef",
        "--admin-bind",
        "127.0.0.1:0",
    ]);
    let addr = p.local_addr();
    let mut c = Conn::open(addr);
    let sid = c.initialize();
    let getenv = |c: &mut Conn, name: &str| {
        let body = json!({"jsonrpc":"2.0","id":3,"method":"tools/call",
            "params":{"name":"getenv","arguments":{"name":name}}});
        let r = c.post(Some(&sid), &body.to_string());
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(getenv(&mut c, "SHADOWCAT_SECRET"), "s3cret-shadowcat");
    assert_eq!(getenv(&mut c, "HOME"), "<unset>", "--stdio-clear-env");
    // The admin API shows names, never values.
    let admin = p.admin_addr().unwrap();
    let cfg = get(admin, "/admin/config", &[]);
    assert_eq!(cfg.status, 200);
    let text = cfg.text();
    assert!(!text.contains("s3cret"), "{text}");
    assert!(!text.contains("metrics-0123456789abcdef"), "{text}");
    let doc = cfg.json();
    assert_eq!(doc["stdioEnv"]["SHADOWCAT_SECRET"], "<redacted>");
    assert_eq!(doc["metricsToken"], "<redacted>");
    assert_eq!(doc["stdioClearEnv"], true);
}
