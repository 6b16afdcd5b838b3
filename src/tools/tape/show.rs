//! `shadowcat tape show TAPE`: the timeline, one line per message, each response with the
//! latency from its request; `--json` for the same as one JSON document.
//!
//! ```text
//!       t ms  dir  req  id      message
//!      5.102  ->   #3   2       tools/call echo {"arguments":{"message":"hello"},"name":"echo"}
//!      5.391  <-   #3   2       tools/call: ok in 0.289 ms {"content":[{"text":"Echo: hello",…
//! ```
//!
//! `->` is client to server, `<-` server to client; `req` is the number of the request the
//! message belongs to (`tools/tape/exchange.rs` says how that is decided).

use std::fmt::Write;

use serde_json::{Value, json};

use super::exchange::{self, Timeline, outcome};
use super::json::brief;
use super::read::{Dir, Kind, Line, Tape};

/// Width of a message's JSON in the text timeline.
const BRIEF: usize = 100;

/// The header lines of a tape, for `show` and `stats`.
pub fn title(tape: &Tape) -> String {
    let h = &tape.header;
    let mut s = match &h.session {
        Some(id) => format!("{}: session {id},", tape.name()),
        None => format!("{}: stateless,", tape.name()),
    };
    if let Some(p) = &h.principal {
        write!(s, " principal {p},").ok();
    }
    writeln!(s, " era {}, upstream {}", h.era, h.upstream()).ok();
    write!(
        s,
        "started {}",
        if h.started.is_empty() {
            "-"
        } else {
            &h.started
        }
    )
    .ok();
    if let Some(c) = h.peer("client") {
        write!(s, ", client {c}").ok();
    }
    if let Some(c) = h.peer("server") {
        write!(s, ", server {c}").ok();
    }
    write!(
        s,
        ", {} messages, {}",
        tape.lines.len(),
        duration(tape.duration_ms())
    )
    .ok();
    if tape.files > 1 {
        write!(s, ", {} files", tape.files).ok();
    }
    s.push('\n');
    s
}

/// A duration in milliseconds for people: `0.412 ms`, `12.5 s`, `3m05s`.
pub fn duration(ms: f64) -> String {
    if ms < 1000.0 {
        format!("{ms:.3} ms")
    } else if ms < 60_000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else {
        let s = (ms / 1000.0).round() as u64;
        if s < 3600 {
            format!("{}m{:02}s", s / 60, s % 60)
        } else {
            format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
        }
    }
}

fn kind_label(k: Kind) -> &'static str {
    match k {
        Kind::Request => "request",
        Kind::Notification => "notification",
        Kind::Response => "response",
        Kind::Other => "other",
    }
}

/// The text timeline.
pub fn text(tape: &Tape) -> String {
    let tl = exchange::build(&tape.lines);
    let mut s = title(tape);
    s.push('\n');
    writeln!(s, "{:>11}  dir  {:<5} {:<12} message", "t ms", "req", "id").ok();
    for (i, line) in tape.lines.iter().enumerate() {
        let owner = tl.owner.get(i).copied().flatten();
        let req = owner.map_or(String::new(), |x| format!("#{}", x + 1));
        let id = if line.msg.get("id").is_some_and(|v| !v.is_null()) {
            brief(&line.msg["id"], 12)
        } else {
            "-".to_owned()
        };
        let arrow = match line.dir {
            Dir::C2s => "->",
            Dir::S2c => "<-",
        };
        let mut what = describe(line, owner, &tl);
        if line.synthetic {
            what.push_str(" [synthetic]");
        }
        if let Some(rule) = &line.fault {
            what.push_str(&format!(" [fault {}]", crate::util::Escaped(rule)));
        }
        writeln!(s, "{:>11.3}  {arrow}   {req:<5} {id:<12} {what}", line.t).ok();
    }
    if tape.incomplete > 0 {
        writeln!(
            s,
            "({} incomplete last line{} ignored)",
            tape.incomplete,
            if tape.incomplete == 1 { "" } else { "s" }
        )
        .ok();
    }
    s
}

fn describe(line: &Line, owner: Option<usize>, tl: &Timeline) -> String {
    let msg = &line.msg;
    let params = || {
        msg.get("params")
            .map_or(String::new(), |p| format!(" {}", brief(p, BRIEF)))
    };
    match (line.dir, line.kind()) {
        (Dir::C2s, Kind::Request) => {
            let target = exchange::target(msg).map_or(String::new(), |t| format!(" {t}"));
            format!("{}{target}{}", line.method().unwrap_or(""), params())
        }
        (Dir::S2c, Kind::Request) => {
            format!(
                "{} (server request){}",
                line.method().unwrap_or(""),
                params()
            )
        }
        (_, Kind::Notification) => format!("{}{}", line.method().unwrap_or(""), params()),
        (Dir::S2c, Kind::Response) => {
            let x = owner.and_then(|x| tl.exchanges.get(x));
            let method = x.map_or_else(
                || "response".to_owned(),
                |x| match x.target() {
                    Some(t) => format!("{} {t}", x.method),
                    None => x.method.clone(),
                },
            );
            let latency = x
                .and_then(|x| x.latency_ms())
                .map_or(String::new(), |l| format!(" in {l:.3} ms"));
            format!("{method}: {}{latency}{}", outcome(msg).label(), body(msg))
        }
        (Dir::C2s, Kind::Response) => format!("answer: {}{}", outcome(msg).label(), body(msg)),
        (_, Kind::Other) => format!("(not JSON-RPC) {}", brief(msg, BRIEF)),
    }
}

fn body(msg: &Value) -> String {
    match msg.get("error") {
        Some(e) => format!(
            " {}",
            e.get("message").and_then(Value::as_str).unwrap_or_default()
        ),
        None => msg
            .get("result")
            .map_or(String::new(), |r| format!(" {}", brief(r, BRIEF))),
    }
}

/// The JSON document: `file`, `header`, `files`, `incomplete` and `messages`, each message
/// with `t`, `dir`, `id`, `upstream_id`, `kind`, `method`, `request` (the number of the
/// request it belongs to), for responses `outcome` and `latency_ms`, `synthetic` and `msg`.
pub fn json(tape: &Tape) -> Value {
    let tl = exchange::build(&tape.lines);
    let messages: Vec<Value> = tape
        .lines
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let owner = tl.owner.get(i).copied().flatten();
            let mut m = json!({
                "t": line.t,
                "dir": line.dir.as_str(),
                "id": line.id,
                "upstream_id": line.upstream_id,
                "kind": kind_label(line.kind()),
                "method": line.method(),
                "request": owner.map(|x| x + 1),
                "synthetic": line.synthetic,
                "msg": line.msg,
            });
            if let Some(rule) = &line.fault {
                m["fault"] = json!(rule);
            }
            if line.kind() == Kind::Response {
                m["outcome"] = json!(outcome(&line.msg).label());
                if line.dir == Dir::S2c {
                    let latency = owner
                        .and_then(|x| tl.exchanges.get(x))
                        .and_then(|x| x.latency_ms());
                    m["latency_ms"] = json!(latency);
                }
            }
            m
        })
        .collect();
    json!({
        "file": tape.path.display().to_string(),
        "header": tape.header.raw,
        "files": tape.files,
        "incomplete": tape.incomplete,
        "messages": messages,
    })
}
