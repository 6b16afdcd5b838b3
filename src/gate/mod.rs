//! The gate in front of the MCP endpoint: who the caller is ([`crate::gate::auth`]) and whether it
//! may go on now ([`crate::gate::ratelimit`]). `proxy.rs` asks it once per request, after the
//! Origin/Host checks and before any session or upstream work.
//!
//! Order: authenticate; on failure, charge the client's IP bucket, so a flood of bad tokens is
//! answered 429 once its budget is spent (each bad token is still verified first: about
//! 0.12 ms for RS256). On success the caller's key is its principal
//! (`principal:token:alice`, `principal:jwt:sub`). Without token authentication, a client
//! certificate the TLS handshake verified (`--tls-client-ca`) is the principal
//! (`principal:cert:alice`, from its CN, else its first SAN), so sessions bind to it like to a
//! token's; with neither the key is the IP (`ip:203.0.113.9`, from `X-Forwarded-For` only
//! behind a `--trusted-proxy`). A POST is
//! charged once, with the tool name for `tools/call`, so `--tool-limit` applies.
//!
//! With `--limits-store` the buckets are charged in Redis instead (`ratelimit/store.rs`,
//! shared by every instance), and new sessions and streams claim holds against the
//! cluster-wide `--max-sessions-per-client` and `--max-streams-per-client` (`shared.rs`); when Redis cannot decide, the in-process limiter decides
//! (`--limits-store-fail open`) or the request gets 503 (`closed`), counted either way.
//!
//! Owns: the [`Caller`] of a request (principal, JWT scopes, quota key), the authenticator in
//! force (swapped whole by a reload) and the limiters. Must not touch: sessions, upstreams or
//! answers: it says who and whether; the pipeline (`crate::proxy`) acts on it.

pub mod auth;
pub mod ratelimit;
mod shared;

use std::sync::Arc;
use std::time::Instant;

use crate::config::{GateConfig, Secret};
use crate::error::Denial;
use crate::error::Error;
use crate::gate::auth::Auth;
use crate::gate::ratelimit::{Cidr, Limiter, client_ip};
pub use crate::gate::shared::StreamHolds;
use crate::gate::shared::{Shared, hold_of, sessions_set, streams_set};
use crate::http::{Request, Response};

/// Authentication, rate limits and the `/metrics` token, built once at start-up (the
/// authentication's key material is read again on a reload: [`Gatekeeper::reload_auth`]).
pub struct Gatekeeper {
    /// Swapped whole by [`Gatekeeper::reload_auth`]; read once per request.
    auth: std::sync::RwLock<Option<Arc<Auth>>>,
    limiter: Limiter,
    /// `--limits-store`: the buckets shared by every instance, and what to do without them.
    shared: Option<Arc<Shared>>,
    trusted: Vec<Cidr>,
    metrics_token: Option<Secret>,
}

/// The identified caller of one request.
#[derive(Debug)]
pub struct Caller {
    /// The authenticated principal, when authentication is on.
    pub principal: Option<String>,
    /// Its JWT's scopes (none otherwise): for tool policy.
    pub scopes: std::sync::Arc<[String]>,
    /// The rate-limit key.
    key: String,
}

impl Gatekeeper {
    /// Builds the gate. `resource` is the effective resource URL (the JWT audience); JWKS keys
    /// are loaded here, so a bad key source stops start-up.
    pub fn new(cfg: &GateConfig, resource: String) -> Result<Gatekeeper, Error> {
        let auth = if cfg.auth.enabled() {
            Some(Arc::new(Auth::new(&cfg.auth, resource)?))
        } else {
            None
        };
        let auth = std::sync::RwLock::new(auth);
        let limiter = Limiter::new(cfg.limits.clone());
        let shared = cfg
            .limits_store
            .as_ref()
            .map(|s| Shared::new(s).map(Arc::new))
            .transpose()?;
        Ok(Gatekeeper {
            auth,
            shared,
            limiter,
            trusted: cfg.trusted_proxies.clone(),
            metrics_token: cfg.metrics_token.clone(),
        })
    }

    /// Authenticates the request (when on) and names its rate-limit key. Does not charge a
    /// successful caller; see [`Gatekeeper::charge`].
    pub fn identify(&self, req: &Request) -> Result<Caller, Error> {
        // The key is only built when a limit is on: no allocation per request otherwise.
        let limited = !self.limiter.is_off();
        let ip_key = || {
            if !limited {
                return String::new();
            }
            let ip = client_ip(
                req.remote.ip(),
                req.header_all("x-forwarded-for"),
                &self.trusted,
            );
            format!("ip:{ip}")
        };
        let Some(auth) = self.auth() else {
            if let Some(subject) = &req.client_cert {
                let principal = format!("cert:{subject}");
                return Ok(Caller {
                    key: if limited {
                        format!("principal:{principal}")
                    } else {
                        String::new()
                    },
                    principal: Some(principal),
                    scopes: no_scopes(),
                });
            }
            return Ok(Caller {
                principal: None,
                key: ip_key(),
                scopes: no_scopes(),
            });
        };
        match auth.authenticate(req) {
            Ok(p) => Ok(Caller {
                key: if limited {
                    format!("principal:{}", p.name)
                } else {
                    String::new()
                },
                principal: Some(p.name),
                scopes: p.scopes,
            }),
            Err(d) => {
                let anonymous = Caller {
                    principal: None,
                    key: ip_key(),
                    scopes: no_scopes(),
                };
                self.charge(&anonymous, None)?;
                if let Denial::Invalid(why) = &d {
                    log::debug!("{}: token refused: {why}", req.remote);
                }
                Err(Error::Auth {
                    challenge: auth.challenge(&d),
                    denial: d,
                })
            }
        }
    }

    /// The caller as quotas count it (`--max-sessions-per-client`, `--max-streams-per-client`):
    /// the same key as its rate-limit bucket, `principal:<principal>` or `ip:<address>`.
    pub fn client_key(&self, req: &Request, caller: &Caller) -> String {
        if !caller.key.is_empty() {
            return caller.key.clone();
        }
        match &caller.principal {
            Some(p) => format!("principal:{p}"),
            None => {
                let ip = client_ip(
                    req.remote.ip(),
                    req.header_all("x-forwarded-for"),
                    &self.trusted,
                );
                format!("ip:{ip}")
            }
        }
    }

    /// True when `--tool-limit` is set: only then does [`Gatekeeper::charge`] need the tool.
    pub fn limits_tools(&self) -> bool {
        self.limiter.limits_tools()
    }

    /// Takes one token from every bucket that applies (`tool`: the tool of a `tools/call`).
    pub fn charge(&self, caller: &Caller, tool: Option<&str>) -> Result<(), Error> {
        if self.limiter.is_off() {
            return Ok(());
        }
        let decided = match &self.shared {
            Some(shared) => shared.take(&self.limiter.charges(&caller.key, tool))?,
            None => None,
        };
        match decided {
            Some(r) => r,
            None => self.limiter.check(&caller.key, tool, Instant::now()),
        }
        .map_err(|d| {
            // The key can be a JWT's `sub`: escaped for the log.
            log::debug!("{}: {d}", crate::util::Escaped(&caller.key));
            Error::RateLimited {
                scope: d.scope.as_str(),
                retry_after: d.retry_after_secs(),
            }
        })
    }

    /// With `--limits-store`: holds one of `client`'s at most `max` sessions cluster-wide
    /// (after this instance's own check passed), [`Error::SessionQuota`] when the client
    /// holds `max` across all instances. Without a store, or failing open, `Ok`.
    pub fn claim_session(&self, client: &str, session_id: &str, max: usize) -> Result<(), Error> {
        match &self.shared {
            Some(shared) => {
                shared.claim(&sessions_set(client), &hold_of(session_id), max, |secs| {
                    Error::SessionQuota {
                        limit: max,
                        retry_after: secs,
                    }
                })
            }
            None => Ok(()),
        }
    }

    /// Gives back a session's hold (with `--limits-store`).
    pub fn release_session(&self, client: &str, session_id: &str) {
        if let Some(shared) = &self.shared {
            shared.release(&sessions_set(client), &hold_of(session_id));
        }
    }

    /// Renews the holds of the live `sessions` (`(client, session id)`) and `streams`
    /// (`(client, hold)`, from [`StreamHolds`]), at most every 15 s; from housekeeping.
    pub fn refresh_holds<'a>(
        &self,
        sessions: impl Iterator<Item = (&'a str, &'a str)>,
        streams: Vec<(String, String)>,
    ) {
        if let Some(shared) = &self.shared {
            shared.refresh(|| {
                sessions
                    .map(|(client, id)| (sessions_set(client), hold_of(id)))
                    .chain(streams.into_iter().map(|(c, h)| (streams_set(&c), h)))
                    .collect()
            });
        }
    }

    /// The cluster-wide side of `--max-streams-per-client`, with `--limits-store`.
    pub fn stream_holds(&self) -> Option<StreamHolds> {
        self.shared.clone().map(StreamHolds)
    }

    /// `--limits-store` only: requests decided without the store so far.
    pub fn limits_store_fallbacks(&self) -> Option<u64> {
        self.shared.as_ref().map(|s| s.fallbacks())
    }

    fn auth(&self) -> Option<Arc<Auth>> {
        crate::util::read(&self.auth).clone()
    }

    /// Reads the authentication's files again (`--auth-tokens`, `--jwt-secret-file`,
    /// `--jwks-file`; `--jwks-url` is fetched again) with `cfg`, the configuration in force:
    /// requests from now on are checked against them. `Ok(false)`: authentication is off.
    /// On an error the authentication in use stays.
    pub fn reload_auth(&self, cfg: &crate::gate::auth::AuthConfig) -> Result<bool, Error> {
        let Some(old) = self.auth() else {
            return Ok(false);
        };
        let new = Auth::new(cfg, old.resource().to_owned())?;
        *crate::util::write(&self.auth) = Some(Arc::new(new));
        Ok(true)
    }

    /// Drops idle (full) rate-limit buckets; called from housekeeping.
    pub fn sweep(&self) {
        self.limiter.sweep(Instant::now());
    }

    /// The client's IP: the TCP peer, or what `X-Forwarded-For` says behind a
    /// `--trusted-proxy` (for the audit log and stateless tapes).
    pub fn client_ip(&self, req: &Request) -> std::net::IpAddr {
        client_ip(
            req.remote.ip(),
            req.header_all("x-forwarded-for"),
            &self.trusted,
        )
    }

    /// Clients the rate limiter tracks now.
    pub fn keys(&self) -> usize {
        self.limiter.keys()
    }

    /// The RFC 9728 document, when authentication is on and `path` is one of its paths.
    pub fn metadata(&self, path: &str, mcp_path: &str) -> Option<Response> {
        let auth = self.auth()?;
        auth.is_metadata_path(path, mcp_path)
            .then(|| auth.metadata())
    }

    /// `None` when `/metrics` may be served to this request, else the 401 to send.
    pub fn metrics_refusal(&self, req: &Request) -> Option<Response> {
        let want = self.metrics_token.as_ref()?;
        if crate::gate::auth::bearer_is(req, want.expose()) {
            return None;
        }
        Some(
            Response::new(401)
                .with_header("www-authenticate", "Bearer realm=\"metrics\"")
                .with_body("text/plain", b"metrics token required\n".to_vec()),
        )
    }
}

/// The scopes of a caller without a JWT.
fn no_scopes() -> std::sync::Arc<[String]> {
    std::sync::Arc::from(Vec::new())
}
