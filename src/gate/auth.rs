//! Inbound authentication: who a request comes from, and whether it may in.
//!
//! Off by default. `--auth-tokens FILE` and `--auth-jwt` turn it on; then every request to the
//! MCP endpoint needs `Authorization: Bearer <token>`, and the proxy serves RFC 9728 metadata.
//!
//! * **Static tokens** (`--auth-tokens FILE`): one per line, `TOKEN [NAME]`, `#` comments. A
//!   token is at least 16 characters. Every configured token is compared in constant time on
//!   every request (no early exit), so timing tells nothing about which one nearly matched.
//!   Static tokens are operator-issued and carry every scope.
//! * **JWT** (`--auth-jwt`, verified by the `jsonwebtoken` crate; no crypto of ours): HS256 with
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

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::error::{Denial, Error};
use crate::http::{Request, Response};

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

/// Authentication settings, validated by `config.rs`. Defaults: everything off.
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
    /// Shortest gap between two JWKS refetches for unknown `kid`s. Default [`JWKS_MIN_REFRESH`].
    pub jwks_min_refresh: Duration,
}

impl AuthConfig {
    /// True when any inbound authentication is configured.
    pub fn enabled(&self) -> bool {
        self.tokens_file.is_some() || self.jwt
    }
}

/// Who a request comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal(pub String);

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

struct Jwt {
    algorithms: Vec<Algorithm>,
    secret: Option<DecodingKey>,
    jwks: Option<Jwks>,
    issuer: Option<String>,
    leeway: Duration,
    /// Tokens that passed every check: principal, usable until (unix seconds), when checked.
    verified: Mutex<std::collections::HashMap<Box<str>, (String, u64, Instant)>>,
}

enum JwksSource {
    File(PathBuf),
    Url(String),
}

struct Jwks {
    source: JwksSource,
    keys: RwLock<(Arc<JwkSet>, Instant)>,
    refreshing: Mutex<()>,
    min_refresh: Duration,
}

#[derive(Deserialize)]
struct Claims {
    exp: Option<u64>,
    sub: Option<String>,
    scope: Option<String>,
    scp: Option<Scp>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Scp {
    One(String),
    Many(Vec<String>),
}

impl Auth {
    /// Loads tokens, secrets and keys. `resource` is the effective resource URL.
    pub fn new(cfg: &AuthConfig, resource: String) -> Result<Auth, Error> {
        let tokens = match &cfg.tokens_file {
            Some(p) => load_tokens(p)?,
            None => Vec::new(),
        };
        let jwt = if cfg.jwt {
            let secret = match &cfg.jwt_secret_file {
                Some(p) => {
                    let mut s = read_limited(p, "--jwt-secret-file")?;
                    if s.last() == Some(&b'\n') {
                        s.pop();
                        if s.last() == Some(&b'\r') {
                            s.pop();
                        }
                    }
                    if s.len() < MIN_SECRET_LEN {
                        return Err(Error::Config(format!(
                            "--jwt-secret-file: secret must be at least {MIN_SECRET_LEN} bytes"
                        )));
                    }
                    Some(DecodingKey::from_secret(&s))
                }
                None => None,
            };
            let source = match (&cfg.jwks_file, &cfg.jwks_url) {
                (Some(p), _) => Some(JwksSource::File(p.clone())),
                (None, Some(u)) => Some(JwksSource::Url(u.clone())),
                (None, None) => None,
            };
            let jwks = match source {
                Some(source) => {
                    let set = source.fetch()?;
                    Some(Jwks {
                        source,
                        keys: RwLock::new((Arc::new(set), Instant::now())),
                        refreshing: Mutex::new(()),
                        min_refresh: cfg.jwks_min_refresh,
                    })
                }
                None => None,
            };
            Some(Jwt {
                algorithms: cfg.algorithms.clone(),
                secret,
                jwks,
                issuer: cfg.issuer.clone(),
                leeway: cfg.leeway,
                verified: Mutex::new(std::collections::HashMap::new()),
            })
        } else {
            None
        };
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
            return Ok(Principal(format!("token:{name}")));
        }
        match &self.jwt {
            Some(jwt) if token.split('.').count() == 3 => self.check_jwt(jwt, token),
            _ => Err(Denial::Invalid("unknown token".into())),
        }
    }

    /// Verifies a JWT, or finds it among those verified within [`JWT_CACHE_TTL`] (byte for
    /// byte the same token, not yet past `exp` + leeway).
    fn check_jwt(&self, jwt: &Jwt, token: &str) -> Result<Principal, Denial> {
        let now = jsonwebtoken::get_current_timestamp();
        let cache = || jwt.verified.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((p, until, at)) = cache().get(token)
            && now < *until
            && at.elapsed() < JWT_CACHE_TTL
        {
            return Ok(Principal(p.clone()));
        }
        let (principal, exp) = self.verify_jwt(jwt, token)?;
        let mut c = cache();
        if c.len() >= JWT_CACHE_MAX {
            c.retain(|_, (_, until, at)| now < *until && at.elapsed() < JWT_CACHE_TTL);
            if c.len() >= JWT_CACHE_MAX {
                c.clear();
            }
        }
        let until = exp.saturating_add(jwt.leeway.as_secs());
        c.insert(token.into(), (principal.0.clone(), until, Instant::now()));
        Ok(principal)
    }

    /// Checks signature, claims and scopes; returns the principal and `exp`.
    fn verify_jwt(&self, jwt: &Jwt, token: &str) -> Result<(Principal, u64), Denial> {
        let invalid = |e: jsonwebtoken::errors::Error| Denial::Invalid(jwt_reason(&e));
        let header = jsonwebtoken::decode_header(token).map_err(invalid)?;
        if !jwt.algorithms.contains(&header.alg) {
            return Err(Denial::Invalid(format!(
                "algorithm {:?} not allowed",
                header.alg
            )));
        }
        let key_from_set;
        let key = if is_hmac(header.alg) {
            jwt.secret
                .as_ref()
                .ok_or_else(|| Denial::Invalid("no secret for HMAC".into()))?
        } else {
            let jwks = jwt
                .jwks
                .as_ref()
                .ok_or_else(|| Denial::Invalid("no key set".into()))?;
            key_from_set = jwks.key(header.kid.as_deref(), header.alg)?;
            &key_from_set
        };
        let mut v = Validation::new(header.alg);
        v.leeway = jwt.leeway.as_secs();
        v.validate_nbf = true;
        v.set_required_spec_claims(&["exp", "aud", "sub"]);
        v.set_audience(&[&self.resource]);
        if let Some(iss) = &jwt.issuer {
            v.set_issuer(&[iss]);
        }
        let data = jsonwebtoken::decode::<Claims>(token, key, &v).map_err(invalid)?;
        let sub = data
            .claims
            .sub
            .filter(|s| !s.is_empty())
            .ok_or_else(|| Denial::Invalid("no subject".into()))?;
        let mut scopes: Vec<&str> = Vec::new();
        if let Some(s) = &data.claims.scope {
            scopes.extend(s.split_whitespace());
        }
        match &data.claims.scp {
            Some(Scp::One(s)) => scopes.extend(s.split_whitespace()),
            Some(Scp::Many(v)) => scopes.extend(v.iter().map(String::as_str)),
            None => {}
        }
        if self
            .required_scopes
            .iter()
            .any(|r| !scopes.contains(&r.as_str()))
        {
            return Err(Denial::Scope(self.required_scopes.join(" ")));
        }
        // `exp` is a required claim, so it is there; 0 would only make the cache entry useless.
        Ok((
            Principal(format!("jwt:{sub}")),
            data.claims.exp.unwrap_or(0),
        ))
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

impl Jwks {
    /// The key for `kid` (or the only key of a one-key set when the token names none).
    fn key(&self, kid: Option<&str>, alg: Algorithm) -> Result<DecodingKey, Denial> {
        let (set, age) = {
            let g = self.keys.read().unwrap_or_else(|e| e.into_inner());
            (g.0.clone(), g.1.elapsed())
        };
        let found = pick(&set, kid);
        if (found.is_none() || age >= JWKS_MAX_AGE)
            && let Some(fresh) = self.refresh(age)
        {
            if let Some(jwk) = pick(&fresh, kid) {
                return decoding_key(jwk, alg);
            }
            return Err(Denial::Invalid("unknown key id".into()));
        }
        match found {
            Some(jwk) => decoding_key(jwk, alg),
            None => Err(Denial::Invalid("unknown key id".into())),
        }
    }

    /// Refetches the set if no other thread is doing so and the last fetch is old enough.
    fn refresh(&self, age: Duration) -> Option<Arc<JwkSet>> {
        if age < self.min_refresh {
            return None;
        }
        let _only_one = self.refreshing.try_lock().ok()?;
        // Another thread may have refreshed while this one waited to look.
        if self
            .keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .elapsed()
            < self.min_refresh
        {
            return None;
        }
        match self.source.fetch() {
            Ok(set) => {
                let set = Arc::new(set);
                *self.keys.write().unwrap_or_else(|e| e.into_inner()) =
                    (set.clone(), Instant::now());
                log::info!("jwks refreshed: {} keys", set.keys.len());
                Some(set)
            }
            Err(e) => {
                log::warn!("jwks refresh failed, keeping the old keys: {e}");
                // Count the failure as a fetch so a dead key server is not hammered.
                self.keys.write().unwrap_or_else(|e| e.into_inner()).1 = Instant::now();
                None
            }
        }
    }
}

fn pick<'a>(set: &'a JwkSet, kid: Option<&str>) -> Option<&'a jsonwebtoken::jwk::Jwk> {
    match kid {
        Some(k) => set.find(k),
        None if set.keys.len() == 1 => set.keys.first(),
        None => None,
    }
}

fn decoding_key(jwk: &jsonwebtoken::jwk::Jwk, alg: Algorithm) -> Result<DecodingKey, Denial> {
    if let Some(ka) = jwk.common.key_algorithm
        && ka.to_string() != format!("{alg:?}")
    {
        return Err(Denial::Invalid("algorithm does not match the key".into()));
    }
    if jwk.common.public_key_use == Some(jsonwebtoken::jwk::PublicKeyUse::Encryption) {
        return Err(Denial::Invalid("key is for encryption".into()));
    }
    DecodingKey::from_jwk(jwk).map_err(|e| Denial::Invalid(jwt_reason(&e)))
}

impl JwksSource {
    fn fetch(&self) -> Result<JwkSet, Error> {
        let (text, what) = match self {
            JwksSource::File(p) => (
                String::from_utf8(read_limited(p, "--jwks-file")?)
                    .map_err(|_| Error::Config("--jwks-file: not UTF-8".into()))?,
                "--jwks-file",
            ),
            JwksSource::Url(u) => (fetch_url(u)?, "--jwks-url"),
        };
        let set: JwkSet = serde_json::from_str(&text)
            .map_err(|e| Error::Config(format!("{what}: not a JWK set: {e}")))?;
        if set.keys.is_empty() {
            return Err(Error::Config(format!("{what}: the key set is empty")));
        }
        Ok(set)
    }
}

fn fetch_url(url: &str) -> Result<String, Error> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(JWKS_FETCH_TIMEOUT))
        .build()
        .into();
    let mut resp = agent
        .get(url)
        .call()
        .map_err(|e| Error::Config(format!("--jwks-url {url}: {e}")))?;
    resp.body_mut()
        .with_config()
        .limit(MAX_KEY_FILE)
        .read_to_string()
        .map_err(|e| Error::Config(format!("--jwks-url {url}: {e}")))
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

/// Parses `--jwt-algorithms` (comma-separated names such as `RS256,ES256`).
pub fn parse_algorithms(s: &str) -> Result<Vec<Algorithm>, String> {
    let mut out = Vec::new();
    for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let alg: Algorithm = name
            .parse()
            .map_err(|_| format!("unknown JWT algorithm {name:?} (e.g. HS256, RS256, ES256)"))?;
        if !out.contains(&alg) {
            out.push(alg);
        }
    }
    if out.is_empty() {
        return Err("empty algorithm list".into());
    }
    Ok(out)
}

/// True for the HMAC algorithms.
pub fn is_hmac(a: Algorithm) -> bool {
    matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
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

/// A short reason for a JWT refusal (never the token or its claims).
fn jwt_reason(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::ExpiredSignature => "token expired".into(),
        K::ImmatureSignature => "token not yet valid".into(),
        K::InvalidAudience => "wrong audience".into(),
        K::InvalidIssuer => "wrong issuer".into(),
        K::InvalidSignature => "bad signature".into(),
        K::InvalidAlgorithm => "algorithm does not match the key".into(),
        K::MissingRequiredClaim(c) => format!("missing claim {c}"),
        _ => "malformed token".into(),
    }
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
