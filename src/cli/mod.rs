//! The command line: the argh structs (they are the `--help` text) and the one function that
//! turns raw `reverse` flags into a validated [`Config`](crate::config::Config).
//!
//! Owns: the subcommands ([`Cli`], [`Command`]), and through the files below, every flag of
//! `shadowcat reverse` and its validation. Must not touch: running anything; the parts built
//! from a `Config` (listener, proxy, upstream, gate, admin, tapes) read only their own config.
//!
//! [`ReverseArgs::into_config`] validates the flags once at start-up and fails with one clear
//! line; nothing re-checks later. Raw flags become the config part by part (as ripgrep's
//! lowargs become hiargs): `compose.rs` hands each part builder only the flags it needs.
//!
//! * `reverse.rs`: the `reverse` flag struct (names, defaults, help);
//! * `compose.rs`: [`ReverseArgs::into_config`], which calls the part builders in turn;
//! * `listen.rs`: the listener and every TLS file flag; `proxy.rs`: the endpoint, the bridge
//!   and sessions; `upstream.rs`: HTTP or stdio, with `replicas.rs` and `stdio.rs`;
//!   `members.rs` and `overrides.rs`: named upstreams; `gate.rs`: auth and rate limits;
//!   `ops.rs`: the admin API, the instance id and shutdown; `tapes.rs`: recording and audit;
//!   `faults.rs`: `[[fault]]` rules;
//! * `syntax.rs`: `${VAR}` expansion, tokens from a flag or the environment, counts;
//! * `file.rs`: a TOML file as those same flags; `reread.rs`: which keys a reload may change.
//!
//! Durations accept `500ms`, `10s`, `5m`, `1h` or a bare number of seconds. Sizes accept a bare
//! number of bytes or a `KiB`/`MiB` suffix.

use argh::FromArgs;

mod compose;
mod faults;
mod file;
mod gate;
mod listen;
mod members;
mod ops;
mod overrides;
mod proxy;
mod replicas;
mod reread;
mod reverse;
mod stdio;
mod syntax;
mod tapes;
mod upstream;
pub use file::expand as expand_config_file;
pub use reread::{FileFlags, Source, reread};
pub use reverse::ReverseArgs;
pub use syntax::expand_env;

use crate::error::Error;

/// shadowcat: a small, fast reverse proxy for the Model Context Protocol.
#[derive(FromArgs, Debug)]
#[argh(note = "shadowcat --version prints the version and the git revision it was built from.")]
pub struct Cli {
    /// what to run
    #[argh(subcommand)]
    pub command: Command,
}

/// What to run.
#[derive(FromArgs, Debug)]
#[allow(clippy::large_enum_variant)] // parsed once at start-up
#[argh(subcommand)]
pub enum Command {
    /// Serve Streamable HTTP in front of an upstream MCP server.
    Reverse(ReverseArgs),
    /// Run the built-in demo MCP server on stdin/stdout.
    DemoServer(crate::tools::demo::DemoServerArgs),
    /// Load-test a Streamable HTTP MCP endpoint.
    Bench(crate::tools::bench::BenchArgs),
    /// Inspect, check, redact and compare tapes.
    Tape(crate::tools::tape::TapeArgs),
    /// Serve a tape as an MCP server.
    Replay(crate::tools::tape::ReplayArgs),
    /// Validate a config file without starting anything.
    CheckConfig(CheckConfigArgs),
}

/// read a config file as `shadowcat reverse --config FILE` would, validate every part, and
/// print the resulting configuration (secrets redacted) without starting anything
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "check-config")]
pub struct CheckConfigArgs {
    /// the TOML file (keys are the flags of `shadowcat reverse` without --)
    #[argh(positional)]
    pub file: String,
}

impl CheckConfigArgs {
    /// The configuration `file` gives, as `/admin/config` shows it; or why it is invalid.
    pub fn run(&self, self_exe: &str) -> Result<String, Error> {
        file::check(&self.file, self_exe)
    }
}

/// `shadowcat ARGS...` as `reverse` flags, into a `Config`: what the unit tests of each part
/// check their flags through.
#[cfg(test)]
fn parse(args: &[&str]) -> Result<crate::config::Config, Error> {
    let cli = Cli::from_args(&["shadowcat"], args).map_err(|e| Error::Config(e.output))?;
    match cli.command {
        Command::Reverse(r) => r.into_config("/bin/shadowcat"),
        _ => unreachable!(),
    }
}
