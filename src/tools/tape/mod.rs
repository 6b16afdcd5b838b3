//! `shadowcat tape …` and `shadowcat replay`: the tools that read tapes (recordings of MCP
//! sessions, `docs/tape-format.md` version 1).
//!
//! Owns: reading tapes, the exchange view of a tape, the four inspection commands (`list`,
//! `show`, `stats`, `diff`), rewriting a tape under the redaction rules (`redact`), and the
//! replay server. Must not touch: the proxy's internals; replay is a peer on the wire (HTTP or
//! stdio) like the demo server. From the crate it uses `crate::util`, the protocol constants of
//! `crate::jsonrpc`, the HTTP server of `crate::http` (replay), the shared redaction rules of
//! `crate::tape::redact`, and [`crate::Error`] for exit codes: a bad input file or flag is
//! [`Error::Config`] (exit 2); `tape diff` finding differences is [`Error::Tool`] (exit 1).
//!
//! ```text
//! shadowcat tape list DIR
//! shadowcat tape show TAPE [--json]
//! shadowcat tape stats TAPE [--json]
//! shadowcat tape redact TAPE [--redact key=NAME,… | pointer=/ptr]… [--output FILE | --in-place]
//! shadowcat tape diff A B [--ignore /pointer]… [--json]
//! shadowcat replay TAPE|DIR [--http 127.0.0.1:PORT | --stdio] [--strict]
//! ```
//!
//! A TAPE is the first file of a tape; its continuation parts (`<name>.1.jsonl`, …) are read
//! with it (`read.rs`). `tape redact` rewrites one file.
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | flags, [`run`] and [`replay()`] |
//! | `read.rs` | parsing tapes: header, lines, parts, the incomplete last line |
//! | `exchange.rs` | a tape as exchanges: request, response, the server messages between (the attribution rule) |
//! | `json.rs` | comparing JSON as replay and diff do (`_meta`, redacted values, numbers), pointers, edit distance |
//! | `list.rs`, `show.rs`, `stats.rs`, `diff.rs`, `redact.rs` | one subcommand each |
//! | `replay/` | the replay server: the plan of an answer (`mod.rs`), the matching rule (`matching.rs`), HTTP (`http.rs`), stdio (`stdio.rs`) |

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use argh::FromArgs;

use crate::error::Error;

pub mod diff;
pub mod exchange;
pub mod json;
pub mod list;
pub mod read;
pub mod redact;
pub mod replay;
pub mod show;
pub mod stats;

/// inspect, check, redact and compare tapes (recordings of MCP sessions)
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "tape")]
pub struct TapeArgs {
    /// what to do
    #[argh(subcommand)]
    pub command: TapeCommand,
}

/// A `tape` subcommand.
#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum TapeCommand {
    /// One line per tape of a directory.
    List(ListArgs),
    /// A tape's timeline.
    Show(ShowArgs),
    /// Per-method counts, errors and latencies.
    Stats(StatsArgs),
    /// Apply the redaction rules to a tape.
    Redact(RedactArgs),
    /// Compare two tapes of the same scenario.
    Diff(DiffArgs),
}

/// one line per tape in DIR: file, session/principal, era, upstream, start, duration, messages
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "list")]
pub struct ListArgs {
    /// the tape directory
    #[argh(positional)]
    pub dir: PathBuf,

    /// one JSON object per tape, one per line
    #[argh(switch)]
    pub json: bool,
}

/// a tape's timeline: every message, with the latency from each request to its response
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "show")]
pub struct ShowArgs {
    /// the tape (its first file)
    #[argh(positional)]
    pub tape: PathBuf,

    /// print one JSON document (header and every message) instead
    #[argh(switch)]
    pub json: bool,
}

/// per-method request counts, errors, tool errors and latency percentiles (p50, p90, p99)
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "stats")]
pub struct StatsArgs {
    /// the tape (its first file)
    #[argh(positional)]
    pub tape: PathBuf,

    /// print JSON instead
    #[argh(switch)]
    pub json: bool,
}

/// rewrite one tape file with the redaction rules of docs/tape-format.md applied (the
/// defaults plus --redact), hashed with the salt of the output's directory
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "redact")]
pub struct RedactArgs {
    /// the tape file
    #[argh(positional)]
    pub tape: PathBuf,

    /// extra rule, repeatable: key=NAME[,NAME…] (member names, case ignored) or
    /// pointer=/json/pointer (from the message, e.g. /params/arguments/token)
    #[argh(option)]
    pub redact: Vec<String>,

    /// where to write (default: beside the tape, NAME.redacted.jsonl); never overwritten
    #[argh(option, short = 'o')]
    pub output: Option<PathBuf>,

    /// replace the tape itself (atomically, through a temporary file)
    #[argh(switch)]
    pub in_place: bool,
}

/// compare two tapes of the same scenario, ignoring ids, timestamps, _meta, progress tokens
/// and redacted values; exit 1 when they differ, 0 when not
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "diff")]
pub struct DiffArgs {
    /// the first tape
    #[argh(positional)]
    pub a: PathBuf,

    /// the second tape
    #[argh(positional)]
    pub b: PathBuf,

    /// JSON pointer in a message to ignore as well, repeatable (e.g.
    /// /result/serverInfo/version)
    #[argh(option)]
    pub ignore: Vec<String>,

    /// print the differences as JSON
    #[argh(switch)]
    pub json: bool,
}

/// serve a tape as an MCP server in its era: each request is answered with the recorded
/// response of the first unused recorded request with the same method and params, with the
/// recorded notifications, progress and server-to-client requests before it
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "replay")]
pub struct ReplayArgs {
    /// the tape (its first file), or a directory: all its tapes replayed as one, each
    /// request answered from the first tape that recorded it
    #[argh(positional)]
    pub tape: PathBuf,

    /// serve Streamable HTTP on this address (default 127.0.0.1:8080; port 0 for any)
    #[argh(option)]
    pub http: Option<SocketAddr>,

    /// serve newline-delimited JSON-RPC on stdin/stdout instead
    #[argh(switch)]
    pub stdio: bool,

    /// path of the HTTP endpoint (default /mcp)
    #[argh(option, default = "String::from(\"/mcp\")")]
    pub path: String,

    /// match requests in recorded order only
    #[argh(switch)]
    pub strict: bool,

    /// how long a replayed sampling, elicitation or roots request waits for the client's
    /// answer before the replay goes on (default 30s)
    #[argh(option, default = "String::from(\"30s\")")]
    pub answer_timeout: String,
}

/// `shadowcat tape …`.
pub fn run(args: TapeArgs) -> Result<(), Error> {
    match args.command {
        TapeCommand::List(a) => list::run(&a.dir, a.json),
        TapeCommand::Show(a) => {
            let tape = read::read_tape(&a.tape)?;
            if a.json {
                print(&format!("{}\n", show::json(&tape)))
            } else {
                print(&show::text(&tape))
            }
        }
        TapeCommand::Stats(a) => {
            let tape = read::read_tape(&a.tape)?;
            let s = stats::Stats::of(&tape);
            if a.json {
                print(&format!("{}\n", s.json()))
            } else {
                print(&s.text())
            }
        }
        TapeCommand::Redact(a) => redact::run(&a),
        TapeCommand::Diff(a) => {
            for p in &a.ignore {
                if !p.starts_with('/') {
                    return Err(Error::Config(format!(
                        "--ignore {p}: a JSON pointer starts with /"
                    )));
                }
            }
            let (ta, tb) = (read::read_tape(&a.a)?, read::read_tape(&a.b)?);
            let report = diff::diff(&ta, &tb, &a.ignore);
            if a.json {
                print(&format!("{}\n", report.json()))?;
            } else {
                print(&report.text())?;
            }
            match report.findings.len() {
                0 => Ok(()),
                1 => Err(Error::Tool("the tapes differ in 1 place".into())),
                n => Err(Error::Tool(format!("the tapes differ in {n} places"))),
            }
        }
    }
}

/// `shadowcat replay TAPE`: serves until the process is stopped (HTTP) or stdin ends (stdio).
pub fn replay(args: ReplayArgs) -> Result<(), Error> {
    if args.stdio && args.http.is_some() {
        return Err(Error::Config(
            "--stdio and --http exclude each other".into(),
        ));
    }
    if !args.path.starts_with('/') {
        return Err(Error::Config(format!(
            "--path {}: must start with /",
            args.path
        )));
    }
    let timeout = crate::util::duration("--answer-timeout", &args.answer_timeout)?;
    let script = Arc::new(replay::Script::load(&args.tape, args.strict, timeout)?);
    if args.stdio {
        let stdin = std::io::stdin().lock();
        return replay::stdio::serve(script, stdin, std::io::stdout()).map_err(Error::Io);
    }
    let bind = args
        .http
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
    let name = script.tape.name();
    let requests = script.exchanges.len();
    let era = script.tape.header.era.clone();
    let server = replay::http::start(script, bind, &args.path)?;
    // The one line a caller (or a test) reads to learn the port.
    eprintln!(
        "shadowcat replay: {name} ({requests} requests, era {era}) on http://{}{}",
        server.local_addr(),
        args.path
    );
    loop {
        std::thread::park();
    }
}

/// Writes `text` to stdout; a reader that went away (`| head`) is not an error.
fn print(text: &str) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::Io(e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use serde_json::json;

    use super::read::{Tape, parse};
    use super::*;

    const TAPE: &str = include_str!("../../../tests/fixtures/tapes/demo-session.jsonl");

    /// Every tool over `bytes`: an error or an answer, never a panic.
    fn exercise(bytes: &[u8]) {
        let Ok(f) = parse(Path::new("m.jsonl"), bytes) else {
            return;
        };
        let tape = Tape {
            path: "m.jsonl".into(),
            header: f.header,
            lines: f.lines,
            files: 1,
            incomplete: usize::from(f.incomplete),
        };
        let _ = show::text(&tape);
        let _ = show::json(&tape);
        let s = stats::Stats::of(&tape);
        let _ = (s.text(), s.json());
        let _ = diff::diff(&tape, &tape, &[]).text();
        let requests: Vec<serde_json::Value> = tape
            .lines
            .iter()
            .filter(|l| l.kind() == read::Kind::Request)
            .map(|l| l.msg.clone())
            .collect();
        for strict in [false, true] {
            let script = Arc::new(replay::Script::new(
                tape.clone(),
                strict,
                Duration::from_millis(1),
            ));
            let session = replay::Session::new(script);
            for r in &requests {
                let _ = session.plan(r);
            }
            let _ = session.plan(&json!({"jsonrpc": "2.0", "id": 1, "method": "x"}));
        }
    }

    #[test]
    fn mangled_tapes_never_panic() {
        let bytes = TAPE.as_bytes();
        for cut in (0..bytes.len()).step_by(29) {
            exercise(&bytes[..cut]);
        }
        // Flip bytes into characters that change JSON structure and types.
        let mut seed = 0x2545_f491_u32;
        for _ in 0..150 {
            let mut m = bytes.to_vec();
            for _ in 0..3 {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                let at = seed as usize % m.len();
                m[at] = b"{}[]\":,0n\n-e"[(seed >> 8) as usize % 12];
            }
            exercise(&m);
        }
        // Members of the wrong type where the tools look.
        let odd = TAPE
            .replace(
                r#""method":"tools/call""#,
                r#""method":"tools/call","params":7"#,
            )
            .replace(r#""progressToken":3"#, r#""progressToken":{"a":[1]}"#)
            .replace(
                r#""result":{"content""#,
                r#""result":{"isError":"yes","content""#,
            );
        exercise(odd.as_bytes());
    }
}
