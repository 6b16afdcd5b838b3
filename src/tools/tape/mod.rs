//! `shadowcat tape …`: the tools that read tapes (recordings of MCP
//! sessions, `docs/tape-format.md` version 1).
//!
//! Owns: reading tapes, the exchange view of a tape, the four inspection commands (`list`,
//! `show`, `stats`, `diff`) and rewriting a tape under the redaction rules (`redact`). Must not
//! touch: the proxy's internals. From the crate it uses `crate::util`, the protocol constants of
//! `crate::jsonrpc`, the shared redaction rules of
//! `crate::tape::redact`, and [`crate::Error`] for exit codes: a bad input file or flag is
//! [`Error::Config`] (exit 2); `tape diff` finding differences is [`Error::Tool`] (exit 1).
//!
//! ```text
//! shadowcat tape list DIR
//! shadowcat tape show TAPE [--json]
//! shadowcat tape stats TAPE [--json]
//! shadowcat tape redact TAPE [--redact key=NAME,… | pointer=/ptr]… [--output FILE | --in-place]
//! shadowcat tape diff A B [--ignore /pointer]… [--json]
//! ```
//!
//! A TAPE is the first file of a tape; its continuation parts (`<name>.1.jsonl`, …) are read
//! with it (`read.rs`). `tape redact` rewrites one file.
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | flags and [`run`] |
//! | `read.rs` | parsing tapes: header, lines, parts, the incomplete last line |
//! | `exchange.rs` | a tape as exchanges: request, response, the server messages between (the attribution rule) |
//! | `json.rs` | comparing JSON as diff does (`_meta`, redacted values, numbers), pointers, edit distance |
//! | `list.rs`, `show.rs`, `stats.rs`, `diff.rs`, `redact.rs` | one subcommand each |

use std::io::Write;
use std::path::PathBuf;

use argh::FromArgs;

use crate::error::Error;

pub mod diff;
pub mod exchange;
pub mod json;
pub mod list;
pub mod read;
pub mod redact;
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

    /// where to write (default: beside the tape, <name>.redacted.jsonl); never overwritten
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
