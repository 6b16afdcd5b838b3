//! JWT bearer tokens: signature and claim checks (by `jsonwebtoken`), the cache of verified
//! tokens, and the JWK set (loaded at start-up, refetched for an unknown `kid` or when old).
//! The rules are in the doc of [`crate::gate::auth`].

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::{
    Auth, AuthConfig, JWKS_FETCH_TIMEOUT, JWKS_MAX_AGE, JWT_CACHE_MAX, JWT_CACHE_TTL, MAX_KEY_FILE,
    MIN_SECRET_LEN, Principal, read_limited,
};
use crate::error::{Denial, Error};
use crate::upstream::http::tls::{ClientTlsConfig, describe_failure, tls_config};

pub(super) struct Jwt {
    algorithms: Vec<Algorithm>,
    secret: Option<DecodingKey>,
    jwks: Option<Jwks>,
    issuer: Option<String>,
    leeway: Duration,
    /// Tokens that passed every check: principal, usable until (unix seconds), when checked.
    verified: Mutex<std::collections::HashMap<Box<str>, (Principal, u64, Instant)>>,
}

enum JwksSource {
    File(PathBuf),
    /// The URL, ureq's TLS settings for it (`--upstream-ca`, `--upstream-client-*`), and those
    /// settings as configured, to explain a TLS failure.
    Url(String, ureq::tls::TlsConfig, ClientTlsConfig),
}

struct Jwks {
    source: JwksSource,
    keys: RwLock<(Arc<JwkSet>, Instant)>,
    refreshing: Mutex<()>,
    min_refresh: Duration,
}

#[derive(Deserialize)]
struct Claims {
    /// Checked by `jsonwebtoken` (which takes fractions too, rounded to the nearest second),
    /// read here for the cache and an exact check of its own.
    #[serde(default, deserialize_with = "numeric_date")]
    exp: Option<u64>,
    sub: Option<String>,
    scope: Option<String>,
    scp: Option<Scp>,
}

/// An RFC 7519 NumericDate: seconds since the epoch, where a fraction is allowed
/// (`1767225600.5`). Rounded down, so a token is never taken for valid past its `exp`.
/// Negative, non-finite or out-of-range values are refused (a malformed token).
fn numeric_date<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    if let Some(u) = n.as_u64() {
        return Ok(Some(u));
    }
    match n.as_f64() {
        Some(f) if f.is_finite() && f >= 0.0 && f < u64::MAX as f64 => Ok(Some(f.floor() as u64)),
        _ => Err(serde::de::Error::custom("NumericDate out of range")),
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Scp {
    One(String),
    Many(Vec<String>),
}

impl Jwt {
    /// Loads the HMAC secret and the JWK set that `cfg` names (a failure stops start-up).
    pub(super) fn load(cfg: &AuthConfig) -> Result<Jwt, Error> {
        super::jwt_crypto::install();
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
            (None, Some(u)) => Some(JwksSource::Url(
                u.clone(),
                tls_config(&cfg.jwks_tls)?,
                cfg.jwks_tls.clone(),
            )),
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
        Ok(Jwt {
            algorithms: cfg.algorithms.clone(),
            secret,
            jwks,
            issuer: cfg.issuer.clone(),
            leeway: cfg.leeway,
            verified: Mutex::new(std::collections::HashMap::new()),
        })
    }
}

impl Auth {
    /// Verifies a JWT, or finds it among those verified within [`JWT_CACHE_TTL`] (byte for
    /// byte the same token, not yet past `exp` + leeway).
    pub(super) fn check_jwt(&self, jwt: &Jwt, token: &str) -> Result<Principal, Denial> {
        let now = jsonwebtoken::get_current_timestamp();
        let cache = || jwt.verified.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((p, until, at)) = cache().get(token)
            && now < *until
            && at.elapsed() < JWT_CACHE_TTL
        {
            return Ok(p.clone());
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
        c.insert(token.into(), (principal.clone(), until, Instant::now()));
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
        // `jsonwebtoken` rounds a fractional `exp` to the nearest second; ours is rounded
        // down, so half a second past a fractional `exp` (plus leeway) is already too late.
        if let Some(exp) = data.claims.exp
            && exp.saturating_add(jwt.leeway.as_secs()) < jsonwebtoken::get_current_timestamp()
        {
            return Err(Denial::Invalid("token expired".into()));
        }
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
        let kept: Vec<String> = scopes
            .iter()
            .filter(|s| s.len() <= super::MAX_SCOPE_LEN)
            .take(super::MAX_SCOPES)
            .map(|s| (*s).to_owned())
            .collect();
        Ok((
            Principal {
                name: format!("jwt:{sub}"),
                scopes: kept.into(),
            },
            data.claims.exp.unwrap_or(0),
        ))
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
            JwksSource::Url(u, tls, cfg) => (fetch_url(u, tls, cfg)?, "--jwks-url"),
        };
        let set: JwkSet = serde_json::from_str(&text)
            .map_err(|e| Error::Config(format!("{what}: not a JWK set: {e}")))?;
        if set.keys.is_empty() {
            return Err(Error::Config(format!("{what}: the key set is empty")));
        }
        Ok(set)
    }
}

/// GETs the JWK set at `url`, over TLS as an HTTP upstream would (same roots and client
/// certificate, verification always on).
fn fetch_url(
    url: &str,
    tls: &ureq::tls::TlsConfig,
    cfg: &ClientTlsConfig,
) -> Result<String, Error> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(JWKS_FETCH_TIMEOUT))
        .tls_config(tls.clone())
        .build()
        .into();
    let why = |e: &(dyn std::error::Error + 'static)| {
        let said = describe_failure(e, cfg).unwrap_or_else(|| e.to_string());
        Error::Config(format!("--jwks-url {url}: {said}"))
    };
    let mut resp = agent.get(url).call().map_err(|e| why(&e))?;
    resp.body_mut()
        .with_config()
        .limit(MAX_KEY_FILE)
        .read_to_string()
        .map_err(|e| why(&e))
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
