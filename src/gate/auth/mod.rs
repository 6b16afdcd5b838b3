//! Inbound authentication: who a request comes from, and whether it may in.
//!
//! Off by default. `--auth-tokens FILE` and `--auth-jwt` turn it on; then every request to the
//! MCP endpoint needs `Authorization: Bearer <token>`, and the proxy serves RFC 9728 metadata.
//!
//! * **Static tokens** (`--auth-tokens FILE`): one per line, `TOKEN [NAME]`, `#` comments. A
//!   token is at least 16 characters. Every configured token is compared in constant time on
//!   every request (no early exit), so timing tells nothing about which one nearly matched.
//!   Static tokens are operator-issued and carry every scope.
//! * **JWT** (`--auth-jwt`, verified by the `jsonwebtoken` crate on ring, rustls' crypto
//!   library; no crypto of ours, `auth/jwt_crypto.rs` only maps algorithms): HS256 with
//!   `--jwt-secret-file`, RS256/ES256 (and the other RSA/EC algorithms if listed in
//!   `--jwt-algorithms`) with keys from `--jwks-file` or `--jwks-url`. The header's `alg` must be
//!   on the allow-list and of the key's family, so an RSA public key can never be used as an
//!   HMAC secret. Claims: `exp` and `sub` required, `nbf` checked when present, `aud` must
//!   contain the resource URL, `iss` must equal `--jwt-issuer` when given; `--jwt-leeway`
//!   (default 30 s) of clock skew. Scopes come from `scope` (space-separated) or `scp`.
//! * **JWKS** keys are loaded at start-up (a failure stops start-up). A token whose `kid` is not
//!   in the set makes one refetch (at most one per [`JWKS_MIN_REFRESH`], one thread at a time,
//!   others keep using the old set), and a set older than [`JWKS_MAX_AGE`] is refetched the same
//!   way; a failed refetch keeps the old keys and is logged at warn.
//! * **Verified JWTs are remembered** by their exact bytes for at most [`JWT_CACHE_TTL`] (and
//!   never past `exp` + leeway), at most 10,000 of them, so a client sending the same token on
//!   every request pays one signature check a minute (an RS256 check costs about 120 µs of CPU,
//!   ES256 about 240 µs; `cargo bench --bench hotpath`). Refusals are not remembered.
//!
//! Answers: no or bad token → 401 with `WWW-Authenticate: Bearer
//! resource_metadata="<url>"` (plus `error="invalid_token"` when a token was sent); a valid
//! token without a `--required-scope` → 403 with `error="insufficient_scope"`. Tokens are never
//! logged, and the client's `Authorization` header is never forwarded upstream.
//!
//! The principal a request authenticates as (`token:NAME` or `jwt:SUB`) owns the sessions it
//! creates: another principal presenting that session id gets 404, as if it did not exist.
//!
//! Owns: checking credentials into a [`Principal`] (name and JWT scopes) or a [`Denial`], and
//! the RFC 9728 metadata. Must not touch: what a principal may do (rate limits, sessions,
//! tool policy are decided elsewhere from the principal it gives).
//!
//! This file: the settings, static tokens, the `Authorization` header, challenges and the
//! metadata document. JWT verification and the JWK set are in `auth/jwt.rs`, the signature
//! algorithms on ring in `auth/jwt_crypto.rs`; unit tests in `auth/tests.rs`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jsonwebtoken::Algorithm;

use crate::error::{Denial, Error};
use crate::http::{Request, Response};

mod jwt;
mod jwt_crypto;
use jwt::Jwt;
pub use jwt::{is_hmac, parse_algorithms};
pub use jwt_crypto::install as install_jwt_crypto;

/// A JWKS is refetched for an unknown `kid` at most this often.
pub const JWKS_MIN_REFRESH: Duration = Duration::from_secs(10);
/// A JWKS older than this is refetched on the next request.
pub const JWKS_MAX_AGE: Duration = Duration::from_secs(3600);
/// Largest JWKS document or key file read.
const MAX_KEY_FILE: u64 = 1024 * 1024;
/// Timeout for fetching `--jwks-url`.
pub const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// A verified JWT is remembered (by its exact bytes) this long at most, so a client sending the
/// same token on every request pays for one signature check per minute, not per request.
pub const JWT_CACHE_TTL: Duration = Duration::from_secs(60);
/// Most verified JWTs remembered; when full, expired entries go, and if none did, all.
const JWT_CACHE_MAX: usize = 10_000;
/// Shortest static token or HMAC secret accepted.
pub const MIN_SECRET_LEN: usize = 16;

/// The well-known path prefix of RFC 9728 metadata.
pub const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";

/// Authentication settings, validated by `cli/gate.rs`. Defaults: everything off.
#[derive(Clone, Debug, Default)]
pub struct AuthConfig {
    /// `--auth-tokens`: file of static bearer tokens.
    pub tokens_file: Option<PathBuf>,
    /// `--auth-jwt`: accept JWT bearer tokens.
    pub jwt: bool,
    /// `--jwt-secret-file`: HMAC secret (the file's bytes, one trailing newline trimmed).
    pub jwt_secret_file: Option<PathBuf>,
    /// `--jwks-file`: a JWK set on disk, re-read like a fetched one.
    pub jwks_file: Option<PathBuf>,
    /// `--jwks-url`: a JWK set fetched over HTTP(S).
    pub jwks_url: Option<String>,
    /// `--jwt-algorithms`: the allow-list. Default HS256 with a secret, RS256 and ES256 with a
    /// JWKS.
    pub algorithms: Vec<Algorithm>,
    /// `--jwt-issuer`: required `iss`. Default: not checked.
    pub issuer: Option<String>,
    /// `--jwt-leeway`: allowed clock skew for `exp`/`nbf`. Default 30 s.
    pub leeway: Duration,
    /// `--required-scope`: scopes every JWT must carry. Default none.
    pub required_scopes: Vec<String>,
    /// `--resource-url`: this proxy's MCP URL as clients see it (the `aud` JWTs must carry).
    /// Default `http://<bound address><path>`.
    pub resource_url: Option<String>,
    /// `--authorization-server`: issuers listed in the metadata. Default none.
    pub authorization_servers: Vec<String>,
    /// Shortest gap between two JWKS refetches for unknown `kid`s. Default `JWKS_MIN_REFRESH` (10 s).
    pub jwks_min_refresh: Duration,
    /// How an `https://` `--jwks-url` is verified: the `--upstream-ca`,
    /// `--upstream-client-cert` and `--upstream-client-key` an HTTP upstream uses. Default: the
    /// built-in roots.
    pub jwks_tls: crate::upstream::http::tls::ClientTlsConfig,
}

impl AuthConfig {
    /// True when any inbound authentication is configured.
    pub fn enabled(&self) -> bool {
        self.tokens_file.is_some() || self.jwt
    }
}

/// Who a request comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// `token:NAME` or `jwt:SUB`.
    pub name: String,
    /// A JWT's scopes (`scope`, `scp`), at most [`MAX_SCOPES`] of at most [`MAX_SCOPE_LEN`]
    /// bytes (the rest are ignored); none for a static token. Tool policy may name them
    /// (`crate::upstream::federated`).
    pub scopes: std::sync::Arc<[String]>,
}

/// Scopes of one JWT kept for policy, at most.
pub const MAX_SCOPES: usize = 64;
/// Longest scope kept for policy.
pub const MAX_SCOPE_LEN: usize = 128;

impl Principal {
    /// A principal without scopes.
    pub fn named(name: String) -> Principal {
        Principal {
            name,
            scopes: std::sync::Arc::from(Vec::new()),
        }
    }
}

/// The authenticator: built once at start-up, shared by all workers.
pub struct Auth {
    tokens: Vec<(String, Vec<u8>)>,
    jwt: Option<Jwt>,
    required_scopes: Vec<String>,
    resource: String,
    metadata_url: String,
    /// The RFC 9728 document, built once.
    metadata: Vec<u8>,
}

impl Auth {
    /// Loads tokens, secrets and keys. `resource` is the effective resource URL.
    pub fn new(cfg: &AuthConfig, resource: String) -> Result<Auth, Error> {
        let tokens = match &cfg.tokens_file {
            Some(p) => load_tokens(p)?,
            None => Vec::new(),
        };
        let jwt = if cfg.jwt { Some(Jwt::load(cfg)?) } else { None };
        let mut doc = serde_json::json!({
            "resource": resource,
            "bearer_methods_supported": ["header"],
            "resource_name": "shadowcat MCP proxy",
        });
        // Optional in RFC 9728; MCP clients need at least one to start OAuth.
        if !cfg.authorization_servers.is_empty() {
            doc["authorization_servers"] = serde_json::json!(cfg.authorization_servers);
        }
        if !cfg.required_scopes.is_empty() {
            doc["scopes_supported"] = serde_json::json!(cfg.required_scopes);
        }
        Ok(Auth {
            tokens,
            jwt,
            required_scopes: cfg.required_scopes.clone(),
            metadata_url: metadata_url(&resource),
            metadata: doc.to_string().into_bytes(),
            resource,
        })
    }

    /// The resource URL (`aud` of accepted JWTs, `resource` in the metadata).
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// Checks the request's bearer token. Blocks only when a JWKS refetch is due (at most
    /// [`JWKS_FETCH_TIMEOUT`], one thread at a time).
    pub fn authenticate(&self, req: &Request) -> Result<Principal, Denial> {
        let token = bearer_token(req).ok_or(Denial::Missing)?;
        let mut found = None;
        for (name, want) in &self.tokens {
            if constant_time_eq(token.as_bytes(), want) && found.is_none() {
                found = Some(name);
            }
        }
        if let Some(name) = found {
            return Ok(Principal::named(format!("token:{name}")));
        }
        match &self.jwt {
            Some(jwt) if token.split('.').count() == 3 => self.check_jwt(jwt, token),
            _ => Err(Denial::Invalid("unknown token".into())),
        }
    }

    /// The `WWW-Authenticate` value for a refusal.
    pub fn challenge(&self, d: &Denial) -> String {
        let meta = format!("resource_metadata=\"{}\"", self.metadata_url);
        match d {
            Denial::Missing => format!("Bearer {meta}"),
            Denial::Invalid(why) => format!(
                "Bearer error=\"invalid_token\", error_description=\"{}\", {meta}",
                quoted(why)
            ),
            Denial::Scope(scopes) => format!(
                "Bearer error=\"insufficient_scope\", scope=\"{}\", {meta}",
                quoted(scopes)
            ),
        }
    }

    /// True for the paths the RFC 9728 document is served at: the bare well-known path and the
    /// one with the MCP path (or the resource URL's path) appended.
    pub fn is_metadata_path(&self, path: &str, mcp_path: &str) -> bool {
        let Some(rest) = path.strip_prefix(METADATA_PATH) else {
            return false;
        };
        rest.is_empty() || rest == mcp_path || rest == url_path(&self.resource)
    }

    /// The RFC 9728 protected resource metadata document.
    pub fn metadata(&self) -> Response {
        // Public by design; browser-based clients fetch it from another origin.
        Response::new(200)
            .with_header("cache-control", "max-age=300")
            .with_header("access-control-allow-origin", "*")
            .with_body("application/json", self.metadata.clone())
    }
}

fn read_limited(p: &Path, flag: &str) -> Result<Vec<u8>, Error> {
    use std::io::Read;
    let f = std::fs::File::open(p)
        .map_err(|e| Error::Config(format!("{flag} {}: {e}", p.display())))?;
    let mut buf = Vec::new();
    f.take(MAX_KEY_FILE + 1)
        .read_to_end(&mut buf)
        .map_err(|e| Error::Config(format!("{flag} {}: {e}", p.display())))?;
    if buf.len() as u64 > MAX_KEY_FILE {
        return Err(Error::Config(format!(
            "{flag} {}: larger than 1 MiB",
            p.display()
        )));
    }
    Ok(buf)
}

/// Parses a tokens file: `TOKEN [NAME]` per line, `#` comments, blank lines ignored. A line
/// without a name is named after its line number.
pub fn parse_tokens(text: &str) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        let token = words.next().unwrap_or_default();
        let name = words
            .next()
            .map_or_else(|| format!("line{}", n + 1), str::to_owned);
        if words.next().is_some() {
            return Err(format!("line {}: expected TOKEN [NAME]", n + 1));
        }
        if token.len() < MIN_SECRET_LEN {
            return Err(format!(
                "line {}: token shorter than {MIN_SECRET_LEN} characters",
                n + 1
            ));
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "line {}: token has non-printable characters",
                n + 1
            ));
        }
        if out.iter().any(|(have, _)| *have == name) {
            return Err(format!("line {}: name {name:?} used twice", n + 1));
        }
        out.push((name, token.as_bytes().to_vec()));
    }
    if out.is_empty() {
        return Err("no tokens".into());
    }
    Ok(out)
}

fn load_tokens(p: &Path) -> Result<Vec<(String, Vec<u8>)>, Error> {
    let bytes = read_limited(p, "--auth-tokens")?;
    let text = String::from_utf8(bytes)
        .map_err(|_| Error::Config(format!("--auth-tokens {}: not UTF-8", p.display())))?;
    parse_tokens(&text).map_err(|e| Error::Config(format!("--auth-tokens {}: {e}", p.display())))
}

/// `https://host/.well-known/oauth-protected-resource/path` for `https://host/path` (RFC 9728
/// section 3.1: the well-known segment goes between the authority and the path).
pub fn metadata_url(resource: &str) -> String {
    let (scheme, rest) = resource.split_once("://").unwrap_or(("http", resource));
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let path = if path == "/" { "" } else { path };
    format!("{scheme}://{authority}{METADATA_PATH}{path}")
}

fn url_path(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.find('/').map_or("", |i| &rest[i..])
}

/// Characters safe inside a quoted-string of a challenge.
fn quoted(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
        .collect()
}

/// The token of the request's one `Authorization: Bearer` header (scheme case-insensitive).
/// `None` without one, with two `Authorization` fields, another scheme, or an empty token.
pub fn bearer_token(req: &Request) -> Option<&str> {
    let mut values = req.header_all("authorization");
    let (Some(value), None) = (values.next(), values.next()) else {
        return None;
    };
    match value.trim().split_once(' ') {
        Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") && !t.trim().is_empty() => {
            Some(t.trim())
        }
        _ => None,
    }
}

/// True when the request's bearer token is `want` (compared in constant time).
pub fn bearer_is(req: &Request, want: &str) -> bool {
    bearer_token(req).is_some_and(|t| constant_time_eq(t.as_bytes(), want.as_bytes()))
}

/// Compares two secrets in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests;
