//! The gate part: who may call (`--auth-*`, `--jwt-*`, `--jwks-*`, `--required-scope`, the
//! resource metadata) and how often (`--rate-limit`, `--global-rate-limit`, `--tool-limit`,
//! `--limits-store*`, `--trusted-proxy`), and the `/metrics` token, into a [`GateConfig`].
//!
//! Owns: these flags' checks, taken together. Must not touch: token files, JWK sets and Redis
//! (read or reached at start-up by `crate::gate`); which TLS the JWKS fetch uses is set by
//! `cli/compose.rs`, which sees the upstream too.

use std::path::PathBuf;
use std::time::Duration;

use super::syntax::{positive, token};
use crate::config::{ClientTlsConfig, GateConfig};
use crate::error::Error;
use crate::gate::auth::{AuthConfig, is_hmac};
use crate::gate::ratelimit::{Limits, StoreConfig};
use crate::util::duration;

/// The inbound authentication flags, as given.
pub(super) struct AuthFlags<'a> {
    pub auth_tokens: Option<&'a str>,
    pub auth_jwt: bool,
    pub jwt_secret_file: Option<&'a str>,
    pub jwks_file: Option<&'a str>,
    pub jwks_url: Option<&'a str>,
    pub jwt_algorithms: Option<&'a str>,
    pub jwt_issuer: Option<&'a str>,
    pub jwt_leeway: &'a str,
    pub required_scope: &'a [String],
    pub resource_url: Option<&'a str>,
    pub authorization_server: &'a [String],
}

/// The `--auth-*`, `--jwt-*`, `--jwks-*` and resource flags, checked together. `jwks_tls` is
/// left at its default.
pub(super) fn auth(f: &AuthFlags) -> Result<AuthConfig, Error> {
    let path = |p: Option<&str>| p.map(PathBuf::from);
    let jwt_flags = f.jwt_secret_file.is_some()
        || f.jwks_file.is_some()
        || f.jwks_url.is_some()
        || f.jwt_algorithms.is_some()
        || f.jwt_issuer.is_some()
        || !f.required_scope.is_empty();
    if jwt_flags && !f.auth_jwt {
        return Err(Error::Config(
            "--jwt-*, --jwks-* and --required-scope need --auth-jwt".into(),
        ));
    }
    let enabled = f.auth_jwt || f.auth_tokens.is_some();
    if !enabled && (f.resource_url.is_some() || !f.authorization_server.is_empty()) {
        return Err(Error::Config(
            "--resource-url and --authorization-server need --auth-tokens or --auth-jwt".into(),
        ));
    }
    if f.jwks_file.is_some() && f.jwks_url.is_some() {
        return Err(Error::Config(
            "give either --jwks-file or --jwks-url, not both".into(),
        ));
    }
    if let Some(u) = f.jwks_url
        && !u.starts_with("http://")
        && !u.starts_with("https://")
    {
        return Err(Error::Config(format!(
            "--jwks-url must be an http:// or https:// URL (got {u:?})"
        )));
    }
    let has_secret = f.jwt_secret_file.is_some();
    let has_jwks = f.jwks_file.is_some() || f.jwks_url.is_some();
    if f.auth_jwt && !has_secret && !has_jwks {
        return Err(Error::Config(
            "--auth-jwt needs --jwt-secret-file, --jwks-file or --jwks-url".into(),
        ));
    }
    let algorithms = match f.jwt_algorithms {
        Some(list) => crate::gate::auth::parse_algorithms(list)
            .map_err(|e| Error::Config(format!("--jwt-algorithms: {e}")))?,
        None => {
            let mut v = Vec::new();
            if has_secret {
                v.push(jsonwebtoken::Algorithm::HS256);
            }
            if has_jwks {
                v.extend([
                    jsonwebtoken::Algorithm::RS256,
                    jsonwebtoken::Algorithm::ES256,
                ]);
            }
            v
        }
    };
    for a in &algorithms {
        if is_hmac(*a) && !has_secret {
            return Err(Error::Config(format!(
                "--jwt-algorithms: {a:?} needs --jwt-secret-file"
            )));
        }
        if !is_hmac(*a) && !has_jwks {
            return Err(Error::Config(format!(
                "--jwt-algorithms: {a:?} needs --jwks-file or --jwks-url"
            )));
        }
    }
    if let Some(r) = f.resource_url
        && !r.starts_with("http://")
        && !r.starts_with("https://")
    {
        return Err(Error::Config(format!(
            "--resource-url must be an http:// or https:// URL (got {r:?})"
        )));
    }
    let leeway = match f.jwt_leeway.trim() {
        "0" | "0s" => Duration::ZERO,
        other => duration("--jwt-leeway", other)?,
    };
    Ok(AuthConfig {
        tokens_file: path(f.auth_tokens),
        jwt: f.auth_jwt,
        jwt_secret_file: path(f.jwt_secret_file),
        jwks_file: path(f.jwks_file),
        jwks_url: f.jwks_url.map(str::to_owned),
        algorithms,
        issuer: f.jwt_issuer.map(str::to_owned),
        leeway,
        required_scopes: f.required_scope.to_vec(),
        resource_url: f.resource_url.map(str::to_owned),
        authorization_servers: f.authorization_server.to_vec(),
        jwks_min_refresh: crate::gate::auth::JWKS_MIN_REFRESH,
        jwks_tls: ClientTlsConfig::default(),
    })
}

/// The rate-limit, proxy-trust and metrics flags, as given.
pub(super) struct Flags<'a> {
    pub metrics_token: Option<String>,
    pub rate_limit: Option<&'a str>,
    pub global_rate_limit: Option<&'a str>,
    pub tool_limit: &'a [String],
    pub rate_limit_keys: usize,
    pub trusted_proxy: &'a [String],
    pub limits_store: Option<&'a str>,
    pub limits_store_fail: &'a str,
    pub limits_store_lease: &'a str,
}

/// The gate, around `auth` from [`auth`].
pub(super) fn config(f: Flags, auth: AuthConfig) -> Result<GateConfig, Error> {
    let metrics_token = token(
        "--metrics-token",
        f.metrics_token,
        "SHADOWCAT_METRICS_TOKEN",
    )?;
    let rate = |flag: &str, v: Option<&str>| {
        v.map(|r| r.parse().map_err(|e| Error::Config(format!("{flag}: {e}"))))
            .transpose()
    };
    positive("--rate-limit-keys", f.rate_limit_keys)?;
    let limits = Limits {
        per_client: rate("--rate-limit", f.rate_limit)?,
        global: rate("--global-rate-limit", f.global_rate_limit)?,
        tools: f
            .tool_limit
            .iter()
            .map(|t| {
                t.parse()
                    .map_err(|e| Error::Config(format!("--tool-limit: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?,
        max_keys: f.rate_limit_keys,
    };
    let trusted_proxies = f
        .trusted_proxy
        .iter()
        .map(|c| {
            c.parse()
                .map_err(|e| Error::Config(format!("--trusted-proxy: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let limits_store = f
        .limits_store
        .map(|u| StoreConfig::new(u, f.limits_store_fail)?.with_lease(f.limits_store_lease))
        .transpose()
        .map_err(Error::Config)?;
    Ok(GateConfig {
        auth,
        limits,
        trusted_proxies,
        metrics_token,
        limits_store,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::cli::parse;
    use crate::config::UpstreamConfig;

    #[test]
    fn gatekeeping_flags() {
        let err = |args: &[&str]| parse(args).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err(&["reverse", "--jwks-file", "x"]).contains("need --auth-jwt"));
        assert!(err(&["reverse", "--auth-jwt"]).contains("needs --jwt-secret-file"));
        assert!(
            err(&[
                "reverse",
                "--auth-jwt",
                "--jwks-file",
                "a",
                "--jwks-url",
                "http://b/"
            ])
            .contains("not both")
        );
        assert!(
            err(&[
                "reverse",
                "--auth-jwt",
                "--jwks-file",
                "a",
                "--jwt-algorithms",
                "HS256"
            ])
            .contains("HS256 needs --jwt-secret-file")
        );
        assert!(err(&["reverse", "--resource-url", "http://x/mcp"]).contains("need --auth"));
        assert!(err(&["reverse", "--metrics-token", "short"]).contains("at least 16"));
        assert!(err(&["reverse", "--rate-limit", "fast"]).starts_with("--rate-limit: "));
        assert!(err(&["reverse", "--tool-limit", "echo"]).starts_with("--tool-limit: "));
        assert!(err(&["reverse", "--trusted-proxy", "10.0.0.0/33"]).starts_with("--trusted-proxy"));
        assert!(
            err(&["reverse", "--upstream-header", "X: 1"]).contains("needs an HTTP --upstream")
        );
        let up = [
            "reverse",
            "--upstream",
            "http://127.0.0.1:1/mcp",
            "--upstream-header",
        ];
        assert!(err(&[&up[..], &["Host: x"]].concat()).contains("set by the proxy"));
        assert!(err(&[&up[..], &["NoColon"]].concat()).contains("expected 'Name: value'"));
        assert!(
            err(&[&up[..], &["X-K: ${SHADOWCAT_SURELY_UNSET_VAR}"]].concat())
                .contains("SHADOWCAT_SURELY_UNSET_VAR is not set")
        );
        let c = parse(&[&up[..], &["X-K: a-${CARGO_PKG_NAME}-$x"]].concat()).unwrap();
        let UpstreamConfig::Http(h) = &c.upstream else {
            panic!("{:?}", c.upstream)
        };
        assert_eq!(h.headers[0].0, "x-k");
        assert_eq!(h.headers[0].1.expose(), "a-shadowcat-$x");
        assert_eq!(format!("{:?}", h.headers[0].1), "<redacted>");
        assert_eq!(
            serde_json::to_value(&c).unwrap()["upstreamHeaders"]["x-k"],
            "<redacted>"
        );
        let c = parse(&["reverse", "--auth-jwt", "--jwks-url", "https://idp/jwks"]).unwrap();
        assert_eq!(
            c.gate.auth.algorithms,
            [
                jsonwebtoken::Algorithm::RS256,
                jsonwebtoken::Algorithm::ES256
            ]
        );
        assert_eq!(c.gate.auth.leeway, Duration::from_secs(30));
        let c = parse(&["reverse", "--stdio-env", "A=1", "--rate-limit", "20/40"]).unwrap();
        let UpstreamConfig::Stdio(s) = &c.upstream else {
            panic!("{:?}", c.upstream)
        };
        assert_eq!(s.env.vars[0].0, "A");
        assert_eq!(c.gate.limits.per_client.map(|r| r.burst), Some(40));
        assert!(!parse(&["reverse"]).unwrap().gate.auth.enabled());
    }
}
