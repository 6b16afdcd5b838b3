//! The proxy and sessions parts: the endpoint (`--path`, `--allowed-origin`, `--cors-max-age`,
//! `--sse-keepalive`, `--log-format`), the 2026-07-28 bridge (`--cache-ttl`,
//! `--input-max-per-client`), and sessions with their SSE replay (`--max-sessions*`,
//! `--session-idle`, `--replay-*`), into a [`ProxyConfig`] and a [`SessionConfig`].
//!
//! Owns: these flags' checks, the Origin syntax, and the default per-client quotas (never more
//! than half of what there is). Must not touch: the listener's limits (`cli/listen.rs`) or the
//! upstream (`cli/upstream.rs`); what they share comes in already checked.

use std::time::Duration;

use super::syntax::positive;
use crate::config::{BridgeConfig, ProxyConfig, SessionConfig};
use crate::error::Error;
use crate::http::origin::{normalize_origin, parse_authority};
use crate::stream::{MAX_REPLAY_BYTES, ReplayLimits};
use crate::util::{duration, size};

/// The endpoint and bridge flags, as given.
pub(super) struct Flags<'a> {
    pub path: String,
    pub allowed_origin: &'a [String],
    pub cors_max_age: &'a str,
    pub sse_keepalive: &'a str,
    pub log_format: &'a str,
    pub max_streams_per_client: Option<usize>,
    pub cache_ttl: &'a str,
    pub input_max_per_client: usize,
}

/// What the proxy part takes from the others, already checked.
pub(super) struct Shared {
    /// `--request-timeout`.
    pub request_timeout: Duration,
    /// `--input-timeout`.
    pub input_timeout: Duration,
    /// Whether `--bind` is a loopback address.
    pub loopback: bool,
    /// `--max-streams`: the default per-client quota is at most half of it.
    pub max_streams: usize,
    /// This instance's id, which a bridged call's requestState names.
    pub instance: String,
}

/// The endpoint and its bridge.
pub(super) fn config(f: Flags, shared: Shared) -> Result<ProxyConfig, Error> {
    if !f.path.starts_with('/') {
        return Err(Error::Config(format!(
            "--path must start with '/' (got {:?})",
            f.path
        )));
    }
    if let Some(n) = f.max_streams_per_client {
        positive("--max-streams-per-client", n)?;
    }
    positive("--input-max-per-client", f.input_max_per_client)?;
    let log_json = match f.log_format {
        "text" => false,
        "json" => true,
        other => {
            return Err(Error::Config(format!(
                "--log-format {other:?}: use text or json"
            )));
        }
    };
    let allowed_origins = f
        .allowed_origin
        .iter()
        .map(|o| allowed_origin(o))
        .collect::<Result<Vec<_>, _>>()?;
    let cors_max_age = match f.cors_max_age.trim() {
        "0" => Duration::ZERO,
        other => duration("--cors-max-age", other)?,
    };
    // 0 (the default) is a valid ttlMs: do not cache.
    let cache_ttl = match f.cache_ttl.trim().trim_end_matches(['m', 's']) {
        "0" => Duration::ZERO,
        _ => duration("--cache-ttl", f.cache_ttl)?,
    };
    let sse_keepalive = duration("--sse-keepalive", f.sse_keepalive)?;
    // A value given explicitly is the operator's.
    let max_streams_per_client = f
        .max_streams_per_client
        .unwrap_or_else(|| half(shared.max_streams).min(32));
    Ok(ProxyConfig {
        path: f.path,
        allowed_origins,
        cors_max_age,
        request_timeout: shared.request_timeout,
        sse_keepalive,
        log_json,
        loopback: shared.loopback,
        max_streams_per_client,
        bridge: BridgeConfig {
            // A requestState names its instance, so a load balancer routes the retry.
            instance: shared.instance,
            max_per_client: f.input_max_per_client,
            ..BridgeConfig::new(cache_ttl, shared.input_timeout)
        },
    })
}

/// The session flags, as given.
pub(super) struct SessionFlags<'a> {
    pub max_sessions: usize,
    pub max_sessions_per_client: Option<usize>,
    pub session_idle: &'a str,
    pub replay_events: usize,
    pub replay_ttl: &'a str,
    pub replay_budget: &'a str,
}

/// The sessions. `per_session_children` is the child count of a per-session stdio upstream,
/// which caps the sessions there can be at once.
pub(super) fn sessions(
    f: &SessionFlags,
    per_session_children: Option<usize>,
) -> Result<SessionConfig, Error> {
    positive("--max-sessions", f.max_sessions)?;
    if let Some(n) = f.max_sessions_per_client {
        positive("--max-sessions-per-client", n)?;
    }
    positive("--replay-events", f.replay_events)?;
    let replay_budget = size("--replay-budget", f.replay_budget)?;
    positive("--replay-budget", replay_budget)?;
    let idle = duration("--session-idle", f.session_idle)?;
    let replay_ttl = duration("--replay-ttl", f.replay_ttl)?;
    // What one client may hold: by default 64 sessions, and never more than half of what there
    // is, so that another client always finds room. A value given explicitly is the operator's.
    let room = per_session_children.map_or(f.max_sessions, |c| f.max_sessions.min(c));
    let max_per_client = f
        .max_sessions_per_client
        .unwrap_or_else(|| half(room).min(64));
    Ok(SessionConfig {
        max: f.max_sessions,
        max_per_client,
        idle,
        replay: ReplayLimits {
            events: f.replay_events,
            bytes: MAX_REPLAY_BYTES,
            ttl: replay_ttl,
            budget: replay_budget,
        },
    })
}

/// Half of `n`, at least 1: the most one client gets of `n` by default.
fn half(n: usize) -> usize {
    (n / 2).max(1)
}

/// Parses one `--allowed-origin`: `scheme://host[:port]` and nothing else, normalised as the
/// Origin check compares it. `null` (shared by every sandboxed frame and `file:` page, of any
/// site) and `*` are refused, as is anything with a path.
fn allowed_origin(o: &str) -> Result<String, Error> {
    let n = normalize_origin(o);
    let valid = n.split_once("://").is_some_and(|(scheme, authority)| {
        scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
            && authority.trim_matches([' ', '\t']) == authority
            && parse_authority(authority).is_some()
    });
    if !valid {
        return Err(Error::Config(format!(
            "--allowed-origin {o:?}: not an origin (scheme://host[:port], no path; null and * \
             are refused)"
        )));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::cli::parse;

    #[test]
    fn allowed_origins_are_origins_and_cors_max_age_parses() {
        let c = parse(&[
            "reverse",
            "--allowed-origin",
            "https://App.Example.com/",
            "--allowed-origin",
            "http://[::1]:3000",
            "--allowed-origin",
            "chrome-extension://abcdefghijklmnop",
            "--cors-max-age",
            "10m",
        ])
        .unwrap();
        assert_eq!(
            c.proxy.allowed_origins,
            [
                "https://app.example.com",
                "http://[::1]:3000",
                "chrome-extension://abcdefghijklmnop"
            ]
        );
        assert_eq!(c.proxy.cors_max_age, Duration::from_secs(600));
        let zero = parse(&["reverse", "--cors-max-age", "0"]).unwrap();
        assert_eq!(zero.proxy.cors_max_age, Duration::ZERO);
        for bad in [
            "null",
            "*",
            "https://app.example.com/path",
            "app.example.com",
            "https://",
            "https://a b",
            "https://user@app.example.com",
            "://app.example.com",
            "1http://app.example.com",
        ] {
            let e = parse(&["reverse", "--allowed-origin", bad]).unwrap_err();
            assert!(e.to_string().contains("not an origin"), "{bad}: {e}");
        }
        assert!(parse(&["reverse", "--cors-max-age", "soon"]).is_err());
    }

    #[test]
    fn client_quotas_leave_room_for_another_client() {
        let quotas = |args: &[&str]| {
            let c = parse(args).unwrap();
            (c.sessions.max_per_client, c.proxy.max_streams_per_client)
        };
        assert_eq!(quotas(&["reverse", "--max-sessions", "100"]), (50, 32));
        assert_eq!(quotas(&["reverse", "--max-streams", "10"]), (64, 5));
        assert_eq!(quotas(&["reverse", "--max-sessions", "1"]), (1, 32));
        assert_eq!(
            quotas(&["reverse", "--stdio-mode", "per-session"]),
            (8, 32),
            "16 children by default"
        );
        let c = [
            "reverse",
            "--max-sessions-per-client",
            "3",
            "--max-streams-per-client",
            "2",
        ];
        assert_eq!(quotas(&c), (3, 2));
        let c = [
            "reverse",
            "--max-sessions",
            "10",
            "--max-sessions-per-client",
            "10",
        ];
        assert_eq!(quotas(&c), (10, 32), "an explicit quota is the operator's");
        assert!(parse(&["reverse", "--max-sessions-per-client", "0"]).is_err());
        assert!(parse(&["reverse", "--max-streams-per-client", "0"]).is_err());
    }
}
