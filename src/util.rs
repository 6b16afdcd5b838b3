//! Small helpers every part may use: they depend on nothing in the crate but [`Error`].
//!
//! Owns: poison-tolerant locking, bounded line reading, the value syntax flags share
//! (durations, sizes, command lines) and log-safe text ([`Escaped`]). Must not touch: anything of the
//! proxy's own types; a helper that needs one belongs beside that type instead.

use std::io::{self, BufRead};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use crate::error::Error;

/// Locks a mutex, ignoring poisoning: every critical section here leaves its data consistent.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Read-locks an `RwLock`, ignoring poisoning (as [`lock`]).
pub fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

/// Write-locks an `RwLock`, ignoring poisoning (as [`lock`]).
pub fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

/// A line without its trailing CR and LF bytes.
pub fn trim_line(mut l: &[u8]) -> &[u8] {
    while let [rest @ .., b'\n' | b'\r'] = l {
        l = rest;
    }
    l
}

/// Reads one line into `buf` (newline included), refusing lines longer than `max`.
/// Returns the bytes read; 0 at EOF.
pub fn read_line_bounded<R: BufRead>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> io::Result<usize> {
    let mut n = 0;
    loop {
        let available = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(n);
        }
        let (take, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        if buf.len() + take > max.saturating_add(1) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("line longer than {max} bytes"),
            ));
        }
        buf.extend_from_slice(&available[..take]);
        r.consume(take);
        n += take;
        if done {
            return Ok(n);
        }
    }
}

/// Parses `500ms`, `10s`, `5m`, `1h` or bare seconds. Zero is refused.
pub fn duration(flag: &str, s: &str) -> Result<Duration, Error> {
    let s = s.trim();
    let (num, unit) = split_unit(s);
    let n: u64 = num
        .parse()
        .map_err(|_| Error::Config(format!("{flag}: bad duration {s:?} (try 500ms, 10s, 5m)")))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        "d" => Duration::from_secs(n.saturating_mul(86_400)),
        _ => {
            return Err(Error::Config(format!(
                "{flag}: bad duration unit in {s:?} (ms, s, m, h or d)"
            )));
        }
    };
    if d.is_zero() {
        return Err(Error::Config(format!("{flag} must be more than zero")));
    }
    Ok(d)
}

/// Parses bytes, `KiB` or `MiB` (also `K`, `M`). Zero is refused.
pub fn size(flag: &str, s: &str) -> Result<usize, Error> {
    let s = s.trim();
    let (num, unit) = split_unit(s);
    let n: usize = num
        .parse()
        .map_err(|_| Error::Config(format!("{flag}: bad size {s:?} (try 65536, 64KiB, 4MiB)")))?;
    let mult = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" | "kb" => 1024,
        "m" | "mib" | "mb" => 1024 * 1024,
        _ => return Err(Error::Config(format!("{flag}: bad size unit in {s:?}"))),
    };
    let v = n
        .checked_mul(mult)
        .ok_or_else(|| Error::Config(format!("{flag}: {s:?} is too large")))?;
    if v == 0 {
        return Err(Error::Config(format!("{flag} must be more than zero")));
    }
    Ok(v)
}

fn split_unit(s: &str) -> (&str, &str) {
    let at = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    (&s[..at], s[at..].trim())
}

/// Splits a command line into argv without a shell.
///
/// Rules: unquoted whitespace separates words; `'…'` keeps everything literally; `"…"` keeps
/// everything but lets `\` escape `"` and `\`; outside quotes `\` escapes any character. No
/// variables, globs, pipes or redirections: `$HOME` is passed as the five characters.
pub fn split_command(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err("unterminated single quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => cur.push(c),
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => return Err("unterminated double quote".into()),
                        },
                        Some(c) => cur.push(c),
                        None => return Err("unterminated double quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => cur.push(c),
                    None => return Err("trailing backslash".into()),
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// Text that a client, a child or an upstream controls, made safe for a text log line
/// (CWE-117): control characters (C0, DEL, C1) become `\n`, `\r`, `\t` or `\u{…}`, and so do
/// the Unicode line and paragraph separators and the bidirectional overrides, so a value can
/// neither start a forged line nor reach a terminal as an escape sequence. Anything else,
/// backslashes included (a child's JSON on stderr stays readable), is written as it is.
pub struct Escaped<'a>(pub &'a str);

impl std::fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut rest = self.0;
        while let Some(i) = rest.find(needs_escape) {
            f.write_str(&rest[..i])?;
            let Some(c) = rest[i..].chars().next() else {
                break;
            };
            match c {
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                c => write!(f, "\\u{{{:x}}}", c as u32)?,
            }
            rest = &rest[i + c.len_utf8()..];
        }
        f.write_str(rest)?;
        Ok(())
    }
}

/// True for the characters [`Escaped`] rewrites.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}')
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes() {
        assert_eq!(duration("x", "500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(duration("x", "7").unwrap(), Duration::from_secs(7));
        assert_eq!(duration("x", "2m").unwrap(), Duration::from_secs(120));
        assert_eq!(
            duration("x", "7d").unwrap(),
            Duration::from_secs(7 * 86_400)
        );
        assert_eq!(size("x", "64KiB").unwrap(), 65536);
        assert_eq!(size("x", "100").unwrap(), 100);
    }

    #[test]
    fn escaped_log_text() {
        let forged = "tools/list\n[2026-01-01T00:00:00Z INFO  shadowcat::access] forged\r\x1b[31mred\u{9b}\u{2028}\u{202e}";
        let out = Escaped(forged).to_string();
        assert_eq!(
            out,
            "tools/list\\n[2026-01-01T00:00:00Z INFO  shadowcat::access] forged\\r\\u{1b}[31mred\\u{9b}\\u{2028}\\u{202e}"
        );
        assert!(!out.chars().any(needs_escape));
        assert_eq!(
            Escaped("tools/call é \\n ok").to_string(),
            "tools/call é \\n ok"
        );
        assert_eq!(Escaped("").to_string(), "");
    }

    #[test]
    fn argv_splitting() {
        assert_eq!(
            split_command(r#"node "my server.js" --name 'a b' x\ y "q\"q""#).unwrap(),
            vec!["node", "my server.js", "--name", "a b", "x y", "q\"q"]
        );
        assert_eq!(split_command("  a   b ").unwrap(), vec!["a", "b"]);
        assert_eq!(split_command("''").unwrap(), vec![""]);
        assert!(split_command("'open").is_err());
    }
}
