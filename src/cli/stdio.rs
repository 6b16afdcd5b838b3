//! The stdio upstream's flags (`--stdio-*`, and the limits only stdio children have) into the
//! parts of a [`StdioUpstreamConfig`].
//!
//! Owns: the mode and child count, the children's environment (`--stdio-env KEY=VALUE`), the
//! exclusive-tool flags, and the per-child limits. Must not touch: the `--stdio` command
//! itself or the choice between an HTTP and a stdio upstream (`cli/upstream.rs`); running
//! children is `crate::upstream::stdio`.

use std::time::Duration;

use super::syntax::{expand_env, positive};
use crate::config::{ChildEnv, Secret, StdioMode, StdioUpstreamConfig};
use crate::error::Error;
use crate::util::{duration, size};

/// The stdio flags, as given.
pub(super) struct Flags<'a> {
    pub mode: &'a str,
    pub children: Option<usize>,
    pub spares: usize,
    pub env: &'a [String],
    pub clear_env: bool,
    pub max_message: &'a str,
    pub max_call_buffer: &'a str,
    pub max_subscriptions: usize,
    pub evict_idle: &'a str,
    pub queue: usize,
    pub exclusive_tools: &'a [String],
    pub learn_exclusive: &'a str,
}

/// `--stdio-mode` and `--stdio-children`: checked only when the upstream is stdio.
pub(super) fn mode(f: &Flags) -> Result<(StdioMode, usize), Error> {
    let (mode, default_children, cap) = match f.mode {
        "shared" => (StdioMode::Shared, 2, 256),
        "per-session" => (StdioMode::PerSession { spares: f.spares }, 16, 4096),
        other => {
            return Err(Error::Config(format!(
                "--stdio-mode {other:?}: use shared or per-session"
            )));
        }
    };
    let children = f.children.unwrap_or(default_children);
    if children == 0 || children > cap {
        return Err(Error::Config(format!("--stdio-children must be 1..={cap}")));
    }
    Ok((mode, children))
}

/// Everything of a stdio upstream but its command, mode and child count: checked whatever the
/// upstream, so that a bad value is an error even where it would not apply.
pub(super) struct Knobs {
    pub env: ChildEnv,
    pub max_message: usize,
    pub max_call_buffer: usize,
    pub max_subscriptions: usize,
    pub evict_idle: Duration,
    pub queue: usize,
    pub exclusive_tools: Vec<String>,
    pub learn_exclusive: bool,
}

/// Checks the flags [`Knobs`] holds.
pub(super) fn knobs(f: &Flags) -> Result<Knobs, Error> {
    positive("--max-subscriptions", f.max_subscriptions)?;
    positive("--stdio-queue", f.queue)?;
    let exclusive_tools = crate::upstream::stdio::exclusive::parse_names(f.exclusive_tools)
        .map_err(|e| Error::Config(format!("--stdio-exclusive-tools: {e}")))?;
    let learn_exclusive = match f.learn_exclusive {
        "on" => true,
        "off" => false,
        other => {
            return Err(Error::Config(format!(
                "--stdio-learn-exclusive {other:?}: use on or off"
            )));
        }
    };
    let env = ChildEnv {
        vars: f
            .env
            .iter()
            .map(|kv| child_var(kv))
            .collect::<Result<Vec<_>, _>>()?,
        clear: f.clear_env,
    };
    let max_message = size("--max-message", f.max_message)?;
    let max_call_buffer = size("--max-call-buffer", f.max_call_buffer)?;
    positive("--max-call-buffer", max_call_buffer)?;
    let evict_idle = duration("--session-evict-idle", f.evict_idle)?;
    Ok(Knobs {
        env,
        max_message,
        max_call_buffer,
        max_subscriptions: f.max_subscriptions,
        evict_idle,
        queue: f.queue,
        exclusive_tools,
        learn_exclusive,
    })
}

impl Knobs {
    /// The stdio upstream running `argv`; `input_timeout` is the bridge's (`--input-timeout`).
    pub(super) fn into_config(
        self,
        argv: Vec<String>,
        children: usize,
        mode: StdioMode,
        input_timeout: Duration,
    ) -> StdioUpstreamConfig {
        StdioUpstreamConfig {
            argv,
            children,
            mode,
            env: self.env,
            max_message: self.max_message,
            max_call_buffer: self.max_call_buffer,
            max_subscriptions: self.max_subscriptions,
            evict_idle: self.evict_idle,
            queue: self.queue,
            exclusive_tools: self.exclusive_tools,
            learn_exclusive: self.learn_exclusive,
            input_timeout,
        }
    }
}

/// Parses `--stdio-env KEY=VALUE`.
fn child_var(kv: &str) -> Result<(String, Secret), Error> {
    let (k, v) = kv
        .split_once('=')
        .ok_or_else(|| Error::Config("--stdio-env: expected KEY=VALUE".into()))?;
    if k.is_empty() || k.contains('\0') || v.contains('\0') {
        return Err(Error::Config(format!(
            "--stdio-env: bad variable name {k:?}"
        )));
    }
    Ok((k.to_owned(), Secret::new(expand_env("--stdio-env", v)?)))
}

#[cfg(test)]
mod tests {
    use crate::cli::parse;
    use crate::config::UpstreamConfig;

    #[test]
    fn exclusive_tools_and_learning() {
        let stdio = |args: &[&str]| match parse(args).map(|c| c.upstream) {
            Ok(UpstreamConfig::Stdio(s)) => Ok((s.exclusive_tools, s.learn_exclusive)),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e.to_string()),
        };
        let args = [
            "reverse",
            "--stdio-exclusive-tools",
            "stream_events,slow_echo",
            "--stdio-exclusive-tools",
            "x",
            "--stdio-learn-exclusive",
            "off",
        ];
        assert_eq!(
            stdio(&args).unwrap(),
            (
                vec!["stream_events".into(), "slow_echo".into(), "x".into()],
                false
            )
        );
        let e = stdio(&["reverse", "--stdio-exclusive-tools", "a,,b"]).unwrap_err();
        assert!(e.contains("--stdio-exclusive-tools"), "{e}");
        let e = stdio(&["reverse", "--stdio-learn-exclusive", "maybe"]).unwrap_err();
        assert!(e.contains("use on or off"), "{e}");
        for other in [
            &["--stdio-mode", "per-session"][..],
            &["--upstream", "http://127.0.0.1:1/mcp"][..],
        ] {
            let mut args = vec!["reverse", "--stdio-exclusive-tools", "x"];
            args.extend_from_slice(other);
            let e = parse(&args).unwrap_err().to_string();
            assert!(e.contains("needs shared stdio children"), "{e}");
        }
    }
}
