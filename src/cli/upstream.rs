//! The upstream part: `--upstream` (HTTP, with replicas) or `--stdio` (child processes), or
//! neither (the built-in demo server as a stdio child), into an [`UpstreamConfig`].
//!
//! Owns: the choice between them, the HTTP upstream's flags (`--upstream-*`, `--replica-*`
//! through `cli/replicas.rs`) and the checks that a flag of one kind is not given with the
//! other. Must not touch: the stdio flags' own syntax (`cli/stdio.rs`); named upstreams
//! (`[upstream.NAME]`, `cli/members.rs`), which replace this part's answer in `cli/compose.rs`.

use std::time::Duration;

use super::replicas;
use super::stdio;
use super::syntax::{expand_env, positive};
use crate::config::{ClientTlsConfig, HttpUpstreamConfig, Secret, StdioMode, UpstreamConfig};
use crate::error::Error;
use crate::util::{duration, split_command};

/// The upstream flags, as given.
pub(super) struct Flags<'a> {
    /// `--upstream`, in order: the first is the URL, the others its replicas.
    pub urls: Vec<String>,
    /// `--stdio`.
    pub stdio: Option<String>,
    pub replicas: replicas::Knobs<'a>,
    pub pool: u32,
    pub connect_timeout: &'a str,
    pub sse_idle_timeout: &'a str,
    pub reconnect_max: &'a str,
    pub headers: &'a [String],
    pub stdio_flags: stdio::Flags<'a>,
}

/// What this part takes from the others, already checked.
pub(super) struct Shared {
    /// `--request-timeout`.
    pub request_timeout: Duration,
    /// `--input-timeout`.
    pub input_timeout: Duration,
    /// `--max-streams`: an HTTP upstream's stream slots.
    pub max_streams: usize,
    /// Ours as a TLS client (`--upstream-ca`, `--upstream-client-*`).
    pub tls: ClientTlsConfig,
}

/// The upstream `--upstream` or `--stdio` chose, before the flags of its kind are read.
enum Chosen {
    /// The first URL and the other replicas'.
    Http(String, Vec<String>),
    Stdio {
        argv: Vec<String>,
        children: usize,
        mode: StdioMode,
    },
}

/// The upstream. `self_exe` is the program to spawn for the built-in demo server.
pub(super) fn config(f: Flags, self_exe: &str, shared: Shared) -> Result<UpstreamConfig, Error> {
    let breaker = replicas::breaker(&f.replicas)?;
    let chosen = choose(f.urls, f.stdio, &f.stdio_flags, self_exe)?;
    positive("--upstream-pool", f.pool as usize)?;
    let knobs = stdio::knobs(&f.stdio_flags)?;
    let shared_stdio = matches!(
        chosen,
        Chosen::Stdio {
            mode: StdioMode::Shared,
            ..
        }
    );
    if !knobs.exclusive_tools.is_empty() && !shared_stdio {
        return Err(Error::Config(
            "--stdio-exclusive-tools needs shared stdio children (a per-session child or an \
             HTTP upstream never mixes sessions' calls)"
                .into(),
        ));
    }
    let headers = f
        .headers
        .iter()
        .map(|h| upstream_header(h))
        .collect::<Result<Vec<_>, _>>()?;
    if !headers.is_empty() && !matches!(chosen, Chosen::Http(..)) {
        return Err(Error::Config(
            "--upstream-header needs an HTTP --upstream".into(),
        ));
    }
    if (knobs.env.clear || !knobs.env.vars.is_empty()) && !matches!(chosen, Chosen::Stdio { .. }) {
        return Err(Error::Config(
            "--stdio-env and --stdio-clear-env need a stdio upstream".into(),
        ));
    }
    let connect_timeout = duration("--upstream-connect-timeout", f.connect_timeout)?;
    let stream_idle = duration("--sse-idle-timeout", f.sse_idle_timeout)?;
    let reconnect_max = duration("--upstream-reconnect-max", f.reconnect_max)?;
    Ok(match chosen {
        Chosen::Http(url, replicas) => UpstreamConfig::Http(HttpUpstreamConfig {
            url,
            replicas,
            breaker,
            pool: f.pool,
            stream_slots: shared.max_streams as u32,
            connect_timeout,
            request_timeout: shared.request_timeout,
            stream_idle,
            reconnect_max,
            headers,
            tls: shared.tls,
            input_timeout: shared.input_timeout,
        }),
        Chosen::Stdio {
            argv,
            children,
            mode,
        } => UpstreamConfig::Stdio(knobs.into_config(argv, children, mode, shared.input_timeout)),
    })
}

/// `--upstream` or `--stdio` (or neither: the demo server); the stdio mode and child count are
/// checked only for a stdio upstream.
fn choose(
    mut urls: Vec<String>,
    stdio: Option<String>,
    f: &stdio::Flags,
    self_exe: &str,
) -> Result<Chosen, Error> {
    match (urls.is_empty(), stdio) {
        (false, Some(_)) => Err(Error::Config(
            "give either --upstream or --stdio, not both".into(),
        )),
        (false, None) => {
            replicas::check_urls(&urls)?;
            let url = urls.remove(0);
            Ok(Chosen::Http(url, urls))
        }
        (true, cmd) => {
            let argv = match cmd {
                Some(cmd) => {
                    split_command(&cmd).map_err(|e| Error::Config(format!("--stdio: {e}")))?
                }
                None => vec![self_exe.to_string(), "demo-server".to_string()],
            };
            if argv.is_empty() {
                return Err(Error::Config("--stdio: empty command".into()));
            }
            let (mode, children) = stdio::mode(f)?;
            Ok(Chosen::Stdio {
                argv,
                children,
                mode,
            })
        }
    }
}

/// Parses `--upstream-header 'Name: value'`. Names the proxy sets itself are refused.
fn upstream_header(h: &str) -> Result<(String, Secret), Error> {
    let (name, value) = h.split_once(':').ok_or_else(|| {
        Error::Config(format!(
            "--upstream-header {:?}: expected 'Name: value'",
            h.split(':').next().unwrap_or_default()
        ))
    })?;
    let name = name.trim().to_ascii_lowercase();
    let value = expand_env("--upstream-header", value.trim())?;
    const OURS: [&str; 10] = [
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "content-type",
        "accept",
        "mcp-session-id",
        "mcp-protocol-version",
        "last-event-id",
        "te",
    ];
    if OURS.contains(&name.as_str()) {
        return Err(Error::Config(format!(
            "--upstream-header: {name} is set by the proxy itself"
        )));
    }
    if name.is_empty() || !crate::http::valid_header(&name, &value) {
        return Err(Error::Config(format!(
            "--upstream-header {name:?}: not a valid header name or value"
        )));
    }
    Ok((name, Secret::new(value)))
}
