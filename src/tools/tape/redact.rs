//! `shadowcat tape redact TAPE`: rewrites one tape file with the format's redaction rules
//! applied to every message (`crate::tape::redact`, the same rules the recorder applies), the
//! defaults plus `--redact`, under the salt of the output's directory.
//!
//! The file is checked whole first (a malformed tape is refused before anything is written).
//! The header and every line where nothing was redacted are copied byte for byte; a line
//! where something was is written again (members in the format's order). An incomplete last
//! line is dropped. The output is written to a temporary file in its directory (mode 0600),
//! synced, and renamed into place: `--in-place` replaces the tape atomically, otherwise the
//! output (default `<name>.redacted.jsonl` beside the tape) must not exist yet.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::RedactArgs;
use super::read::{file_name, parse};
use crate::error::Error;
use crate::tape::redact::{Rules, dir_salt};

/// Runs `tape redact`.
pub fn run(args: &RedactArgs) -> Result<(), Error> {
    let out = output(args)?;
    let bytes = fs::read(&args.tape)
        .map_err(|e| Error::Config(format!("{}: cannot read: {e}", args.tape.display())))?;
    let checked = parse(&args.tape, &bytes)?;
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let salt = dir_salt(&dir).map_err(|e| {
        Error::Config(format!(
            "{}: cannot read or create the salt: {e}",
            dir.display()
        ))
    })?;
    let mut rules = Rules::new(salt);
    for spec in &args.redact {
        rules.add(spec).map_err(Error::Config)?;
    }
    let (text, values, lines) = rewrite(&bytes, &rules)?;
    write_atomically(&out, &text, args.in_place)?;
    let dropped = if checked.incomplete {
        ", incomplete last line dropped"
    } else {
        ""
    };
    super::print(&format!(
        "{}: {values} value{} redacted in {lines} line{}{dropped}\n",
        out.display(),
        if values == 1 { "" } else { "s" },
        if lines == 1 { "" } else { "s" },
    ))
}

fn output(args: &RedactArgs) -> Result<PathBuf, Error> {
    match (&args.output, args.in_place) {
        (Some(_), true) => Err(Error::Config(
            "--output and --in-place exclude each other".into(),
        )),
        (Some(o), false) => Ok(o.clone()),
        (None, true) => Ok(args.tape.clone()),
        (None, false) => {
            let name = file_name(&args.tape);
            let stem = name.strip_suffix(".jsonl").unwrap_or(&name);
            Ok(args.tape.with_file_name(format!("{stem}.redacted.jsonl")))
        }
    }
}

/// The redacted text of a (checked) tape file: (text, values replaced, lines changed).
pub fn rewrite(bytes: &[u8], rules: &Rules) -> Result<(Vec<u8>, usize, usize), Error> {
    let mut out = Vec::with_capacity(bytes.len());
    let (mut values, mut lines) = (0, 0);
    let mut pieces: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    pieces.pop(); // the incomplete last line, or the nothing after the final newline
    let mut header = true;
    for piece in pieces {
        if piece.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if header {
            header = false;
            out.extend_from_slice(piece);
            out.push(b'\n');
            continue;
        }
        let mut line: Map<String, Value> = serde_json::from_slice(piece)
            .map_err(|e| Error::Config(format!("not a tape message line: {e}")))?;
        let n = line.get_mut("msg").map_or(0, |m| rules.redact(m));
        if n == 0 {
            out.extend_from_slice(piece);
        } else {
            values += n;
            lines += 1;
            write_line(&mut out, &mut line);
        }
        out.push(b'\n');
    }
    Ok((out, values, lines))
}

/// Writes a message line with its members in the format's order, then any others.
fn write_line(out: &mut Vec<u8>, line: &mut Map<String, Value>) {
    out.push(b'{');
    let mut first = true;
    let mut member = |out: &mut Vec<u8>, k: &str, v: &Value| {
        if !first {
            out.push(b',');
        }
        first = false;
        out.extend_from_slice(Value::String(k.to_owned()).to_string().as_bytes());
        out.push(b':');
        out.extend_from_slice(v.to_string().as_bytes());
    };
    for k in ["t", "dir", "id", "upstream_id", "msg", "synthetic", "fault"] {
        if let Some(v) = line.remove(k) {
            member(out, k, &v);
        }
    }
    for (k, v) in line.iter() {
        member(out, k, v);
    }
    out.push(b'}');
}

fn write_atomically(path: &Path, bytes: &[u8], replace: bool) -> Result<(), Error> {
    if !replace && path.exists() {
        return Err(Error::Config(format!(
            "{}: exists already (choose another --output, or --in-place)",
            path.display()
        )));
    }
    let tmp = path.with_file_name(format!(".{}.tmp-{}", file_name(path), std::process::id()));
    let written = (|| {
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut f = options.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(Error::Io(e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_only_lines_with_secrets() {
        let text = concat!(
            r#"{"tape":"shadowcat","version":1,"era":"2025-11-25"}"#,
            "\n",
            r#"{"t":1,"dir":"c2s","id":1,"upstream_id":null,"msg":{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"login","arguments":{"password":"hunter2","user":"bob"}}}}"#,
            "\n",
            r#"{"t":2,"dir":"s2c","id":1,"msg":{"jsonrpc":"2.0","id":1,"result":{}}}"#,
            "\n",
            r#"{"t":3,"dir":"s2c","id":null,"msg":{"jsonrpc":"2.0","meth"#,
        );
        let mut rules = Rules::new(b"s".to_vec());
        rules.add("key=user").expect("rule");
        let (out, values, lines) = rewrite(text.as_bytes(), &rules).expect("rewrite");
        assert_eq!((values, lines), (2, 1));
        let out = String::from_utf8(out).expect("utf-8");
        let l: Vec<&str> = out.lines().collect();
        assert_eq!(l.len(), 3, "the incomplete line is dropped: {out}");
        assert!(out.ends_with('\n'));
        assert!(!out.contains("hunter2") && !out.contains("bob"), "{out}");
        assert!(
            l[1].starts_with(r#"{"t":1,"dir":"c2s","id":1,"upstream_id":null,"msg":"#),
            "{}",
            l[1]
        );
        assert_eq!(
            l[2],
            r#"{"t":2,"dir":"s2c","id":1,"msg":{"jsonrpc":"2.0","id":1,"result":{}}}"#
        );
        // Still a tape, and redacting again changes nothing.
        parse(Path::new("x"), out.as_bytes()).expect("tape");
        let (again, values, _) = rewrite(out.as_bytes(), &rules).expect("again");
        assert_eq!(values, 0);
        assert_eq!(again, out.as_bytes());
    }
}
