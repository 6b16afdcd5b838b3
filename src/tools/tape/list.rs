//! `shadowcat tape list DIR`: one line per tape of a directory (its continuation parts are
//! counted with it): file, session/principal, era, upstream, start, duration, messages.
//!
//! Files are the `*.jsonl` of DIR, by name. A file that is not a readable tape is named on
//! stderr and the others are still listed; the exit code is then 2.

use std::path::Path;

use serde_json::json;

use super::print;
use super::read::{Tape, read_tape, tape_files};
use super::show::duration;
use crate::error::Error;

/// Lists the tapes of `dir`.
pub fn run(dir: &Path, as_json: bool) -> Result<(), Error> {
    // A continuation part is listed with its first file, unless that is gone.
    let firsts = tape_files(dir)?;
    let mut rows = Vec::new();
    let mut bad = 0;
    for name in &firsts {
        match read_tape(&dir.join(name)) {
            Ok(tape) => rows.push(tape),
            Err(e) => {
                bad += 1;
                eprintln!("shadowcat tape list: {e}");
            }
        }
    }
    let text = if as_json {
        json_lines(&rows)
    } else {
        table(&rows)
    };
    print(&text)?;
    match bad {
        0 => Ok(()),
        n => Err(Error::Config(format!(
            "{n} of {} files in {} are not readable tapes",
            firsts.len(),
            dir.display()
        ))),
    }
}

fn who(t: &Tape) -> String {
    let session = t.header.session.as_deref().unwrap_or("stateless");
    match &t.header.principal {
        Some(p) => format!("{session}/{p}"),
        None => session.to_owned(),
    }
}

fn file_label(t: &Tape) -> String {
    match t.files {
        1 => t.name(),
        n => format!("{} (+{} parts)", t.name(), n - 1),
    }
}

fn table(rows: &[Tape]) -> String {
    let head = [
        "FILE",
        "SESSION/PRINCIPAL",
        "ERA",
        "UPSTREAM",
        "START",
        "DURATION",
        "MESSAGES",
    ];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|t| {
            [
                file_label(t),
                who(t),
                t.header.era.clone(),
                t.header.upstream(),
                if t.header.started.is_empty() {
                    "-".into()
                } else {
                    t.header.started.clone()
                },
                duration(t.duration_ms()),
                t.lines.len().to_string(),
            ]
        })
        .collect();
    let mut widths = head.map(str::len);
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[String]| {
        let mut l = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            if i == 6 {
                l.push_str(&format!("{c:>w$}"));
            } else {
                l.push_str(&format!("{c:<w$}  "));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&head.map(String::from));
    for row in &cells {
        line(row);
    }
    out
}

fn json_lines(rows: &[Tape]) -> String {
    rows.iter()
        .map(|t| {
            let v = json!({
                "file": t.name(), "files": t.files, "session": t.header.session,
                "principal": t.header.principal, "era": t.header.era,
                "upstream": t.header.raw.get("upstream"), "started": t.header.started,
                "duration_ms": t.duration_ms(), "messages": t.lines.len(),
            });
            format!("{v}\n")
        })
        .collect()
}
