//! Reading tapes (`docs/tape-format.md`, version 1): the header, the message lines, the
//! continuation parts of a rotated tape, and the one kind of damage a crash leaves (a last
//! line without its `\n`, ignored).
//!
//! Everything a tape file holds is untrusted: a malformed file is an [`Error::Config`] naming
//! the file and line (exit code 2), never a panic.

use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::Error;

/// The one format version this reader understands.
pub const VERSION: u64 = 1;

/// Direction of a message line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
pub enum Dir {
    /// Client to server, as the client sent it.
    #[serde(rename = "c2s")]
    C2s,
    /// Server to client, as the client received it.
    #[serde(rename = "s2c")]
    S2c,
}

impl Dir {
    /// `c2s` or `s2c`.
    pub fn as_str(self) -> &'static str {
        match self {
            Dir::C2s => "c2s",
            Dir::S2c => "s2c",
        }
    }
}

/// The header line, with the members the tools read picked out; `raw` keeps all of it.
#[derive(Clone, Debug)]
pub struct Header {
    /// The whole header object, as read.
    pub raw: Map<String, Value>,
    /// Negotiated protocol version, or `2026-07-28` for stateless tapes.
    pub era: String,
    /// First 8 hex digits of the session id; `None` for stateless tapes.
    pub session: Option<String>,
    /// Who the proxy authenticated, if anyone.
    pub principal: Option<String>,
    /// Start time as written (RFC 3339, UTC).
    pub started: String,
    /// Rotation counter: 0 for the first file of a tape.
    pub part: u64,
}

impl Header {
    /// `upstream.name (kind, mode)`, whatever of it is present.
    pub fn upstream(&self) -> String {
        let up = self.raw.get("upstream");
        let field = |k: &str| up.and_then(|u| u.get(k)).and_then(Value::as_str);
        let name = field("name").unwrap_or("-");
        let rest: Vec<&str> = [field("kind"), field("mode")]
            .into_iter()
            .flatten()
            .collect();
        if rest.is_empty() {
            name.to_owned()
        } else {
            format!("{name} ({})", rest.join(", "))
        }
    }

    /// `info.name info.version` of `client` or `server`, if recorded.
    pub fn peer(&self, side: &str) -> Option<String> {
        let info = self.raw.get(side)?.get("info")?;
        let name = info.get("name").and_then(Value::as_str)?;
        Some(match info.get("version").and_then(Value::as_str) {
            Some(v) => format!("{name} {v}"),
            None => name.to_owned(),
        })
    }

    /// Whether this is a stateless (2026-07-28) tape.
    pub fn stateless(&self) -> bool {
        self.era == crate::jsonrpc::MODERN_VERSION
    }
}

/// One message line.
#[derive(Clone, Debug)]
pub struct Line {
    /// Milliseconds since the tape's (first part's) `started`.
    pub t: f64,
    /// Direction.
    pub dir: Dir,
    /// The JSON-RPC id the client sees, or null.
    pub id: Value,
    /// The id on the upstream side when it differs, else null.
    pub upstream_id: Value,
    /// The message (a JSON object).
    pub msg: Value,
    /// Made by the proxy itself.
    pub synthetic: bool,
    /// The fault rule that acted on the request this answers, if one did.
    pub fault: Option<String>,
    /// Which file of the tape it is in (0 = the first).
    pub part: usize,
    /// 1-based line number in its file.
    pub line: usize,
}

/// What a message is, by its members.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `method` and `id`.
    Request,
    /// `method`, no `id`.
    Notification,
    /// `id`, no `method`.
    Response,
    /// Neither.
    Other,
}

impl Line {
    /// The message's `method`, if any.
    pub fn method(&self) -> Option<&str> {
        self.msg.get("method").and_then(Value::as_str)
    }

    /// What the message is.
    pub fn kind(&self) -> Kind {
        kind(&self.msg)
    }
}

/// What `msg` is, by its members (`id: null` counts as no id).
pub fn kind(msg: &Value) -> Kind {
    let has_id = msg.get("id").is_some_and(|id| !id.is_null());
    match (msg.get("method").and_then(Value::as_str), has_id) {
        (Some(_), true) => Kind::Request,
        (Some(_), false) => Kind::Notification,
        (None, true) => Kind::Response,
        (None, false) => Kind::Other,
    }
}

/// A whole tape: its first file's header and the message lines of all its parts.
#[derive(Clone, Debug)]
pub struct Tape {
    /// The path it was read from (its first file).
    pub path: PathBuf,
    /// The first file's header.
    pub header: Header,
    /// Every complete message line, in order, parts concatenated.
    pub lines: Vec<Line>,
    /// How many files: 1 plus the continuation parts found.
    pub files: usize,
    /// Incomplete last lines ignored (at most one per file).
    pub incomplete: usize,
}

impl Tape {
    /// `t` of the last line (0 when there are none).
    pub fn duration_ms(&self) -> f64 {
        self.lines.last().map_or(0.0, |l| l.t)
    }

    /// The file name, for display.
    pub fn name(&self) -> String {
        file_name(&self.path)
    }
}

/// The file name of `path`, lossily.
pub fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

fn bad(path: &Path, line: usize, why: impl std::fmt::Display) -> Error {
    if line == 0 {
        Error::Config(format!("{}: {why}", path.display()))
    } else {
        Error::Config(format!("{}:{line}: {why}", path.display()))
    }
}

/// Reads the tape at `path` and its continuation parts (`<name>.1.jsonl`, `<name>.2.jsonl`,
/// … while they exist; not when `path` is itself a part). Each part's `t` is moved onto the
/// first part's clock by the difference of the headers' `started`.
pub fn read_tape(path: &Path) -> Result<Tape, Error> {
    let first = read_file(path)?;
    let mut tape = Tape {
        path: path.to_owned(),
        header: first.header,
        lines: first.lines,
        files: 1,
        incomplete: usize::from(first.incomplete),
    };
    let start = started_ms(&tape.header.started);
    for (n, part_path) in parts(path).into_iter().enumerate() {
        let part = read_file(&part_path)?;
        let offset = match (start, started_ms(&part.header.started)) {
            (Some(a), Some(b)) => b - a,
            _ => tape.duration_ms(),
        };
        tape.lines.extend(part.lines.into_iter().map(|mut l| {
            l.t += offset;
            l.part = n + 1;
            l
        }));
        tape.files += 1;
        tape.incomplete += usize::from(part.incomplete);
    }
    Ok(tape)
}

/// The continuation parts of the tape whose first file is `path` that exist, in order.
pub fn parts(path: &Path) -> Vec<PathBuf> {
    let name = file_name(path);
    let Some(stem) = name.strip_suffix(".jsonl") else {
        return Vec::new();
    };
    if part_of(&name).is_some() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for n in 1.. {
        let p = path.with_file_name(format!("{stem}.{n}.jsonl"));
        if !p.is_file() {
            break;
        }
        out.push(p);
    }
    out
}

/// The first files of the tapes in `dir` (`*.jsonl` but hidden ones), by name: a continuation
/// part goes with its first file, and stands for its tape only when that file is gone.
pub fn tape_files(dir: &Path) -> Result<Vec<String>, Error> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Error::Config(format!("{}: cannot read the directory: {e}", dir.display())))?;
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| file_name(&e.path()))
        .filter(|n| n.ends_with(".jsonl") && !n.starts_with('.'))
        .collect();
    names.sort();
    let all = names.clone();
    names.retain(|n| part_of(n).is_none_or(|first| !all.contains(&first)));
    Ok(names)
}

/// For a continuation part's file name (`<name>.<N>.jsonl`, N ≥ 1), the first file's name.
pub fn part_of(name: &str) -> Option<String> {
    let stem = name.strip_suffix(".jsonl")?;
    let (base, n) = stem.rsplit_once('.')?;
    let is_number = !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && !n.starts_with('0');
    (is_number && !base.is_empty()).then(|| format!("{base}.jsonl"))
}

/// One file of a tape.
#[derive(Debug)]
pub struct File {
    /// Its header.
    pub header: Header,
    /// Its complete message lines (`part` 0).
    pub lines: Vec<Line>,
    /// Whether an incomplete last line was ignored.
    pub incomplete: bool,
}

/// Reads one tape file.
pub fn read_file(path: &Path) -> Result<File, Error> {
    let bytes = fs::read(path).map_err(|e| bad(path, 0, format!("cannot read: {e}")))?;
    parse(path, &bytes)
}

/// Parses the bytes of one tape file (`path` only names it in errors).
pub fn parse(path: &Path, bytes: &[u8]) -> Result<File, Error> {
    let mut pieces: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    // After the last `\n` comes either nothing or a line the writer never finished.
    let tail = pieces.pop().unwrap_or_default();
    let incomplete = !tail.is_empty();
    let mut numbered = pieces
        .into_iter()
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace));
    let Some((n, head)) = numbered.next() else {
        return Err(bad(
            path,
            0,
            if incomplete {
                "not a tape: the header line is incomplete"
            } else {
                "not a tape: the file is empty"
            },
        ));
    };
    let header = parse_header(head).map_err(|why| bad(path, n, why))?;
    let mut lines = Vec::new();
    for (n, text) in numbered {
        let raw: RawLine = serde_json::from_slice(text)
            .map_err(|e| bad(path, n, format!("not a tape message line: {e}")))?;
        if !raw.msg.is_object() {
            return Err(bad(path, n, "msg is not a JSON object"));
        }
        if !raw.t.is_finite() {
            return Err(bad(path, n, "t is not a finite number"));
        }
        lines.push(Line {
            t: raw.t,
            dir: raw.dir,
            id: raw.id,
            upstream_id: raw.upstream_id,
            msg: raw.msg,
            synthetic: raw.synthetic,
            fault: raw.fault,
            part: 0,
            line: n,
        });
    }
    Ok(File {
        header,
        lines,
        incomplete,
    })
}

#[derive(Deserialize)]
struct RawLine {
    t: f64,
    dir: Dir,
    #[serde(default)]
    id: Value,
    #[serde(default)]
    upstream_id: Value,
    msg: Value,
    #[serde(default)]
    synthetic: bool,
    #[serde(default)]
    fault: Option<String>,
}

/// Parses and checks a header line: `"tape": "shadowcat"` and a version this reader knows.
pub fn parse_header(text: &[u8]) -> Result<Header, String> {
    let value: Value =
        serde_json::from_slice(text).map_err(|e| format!("not a tape: bad header line: {e}"))?;
    let Value::Object(raw) = value else {
        return Err("not a tape: the header line is not a JSON object".into());
    };
    if raw.get("tape").and_then(Value::as_str) != Some("shadowcat") {
        return Err("not a shadowcat tape (the header has no \"tape\": \"shadowcat\")".into());
    }
    match raw.get("version") {
        Some(v) if v.as_u64() == Some(VERSION) => {}
        Some(v) => {
            return Err(format!(
                "tape format version {v} is not supported (this shadowcat reads version {VERSION}; \
                 a newer shadowcat may read it)"
            ));
        }
        None => return Err("the header has no format version".into()),
    }
    let text_of = |k: &str| raw.get(k).and_then(Value::as_str).map(str::to_owned);
    let era = text_of("era").ok_or("the header has no era")?;
    Ok(Header {
        era,
        session: text_of("session"),
        principal: text_of("principal"),
        started: text_of("started").unwrap_or_default(),
        part: raw.get("part").and_then(Value::as_u64).unwrap_or(0),
        raw,
    })
}

/// Milliseconds since the Unix epoch of an RFC 3339 UTC time
/// (`YYYY-MM-DDTHH:MM:SS[.fff…]Z`); `None` for anything else.
pub fn started_ms(s: &str) -> Option<f64> {
    let s = s.strip_suffix('Z').or_else(|| s.strip_suffix('z'))?;
    let (date, time) = s.split_once(['T', 't'])?;
    let mut d = date.splitn(3, '-');
    let year: i64 = d.next()?.parse().ok()?;
    let month: i64 = d.next()?.parse().ok()?;
    let day: i64 = d.next()?.parse().ok()?;
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.splitn(3, ':');
    let h: i64 = t.next()?.parse().ok()?;
    let m: i64 = t.next()?.parse().ok()?;
    let sec: i64 = t.next()?.parse().ok()?;
    let in_range = (0..=9999).contains(&year) && (1..=12).contains(&month);
    if !in_range
        || !(1..=31).contains(&day)
        || !(0..=23).contains(&h)
        || !(0..=59).contains(&m)
        || !(0..=60).contains(&sec)
    {
        return None;
    }
    let frac: f64 = if frac.is_empty() {
        0.0
    } else if frac.bytes().all(|b| b.is_ascii_digit()) {
        format!("0.{frac}").parse().ok()?
    } else {
        return None;
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + m * 60 + sec;
    Some(secs as f64 * 1000.0 + frac * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = r#"{"tape":"shadowcat","version":1,"shadowcat":"0.1.0","upstream":{"name":"demo","kind":"stdio","mode":"shared"},"era":"2025-11-25","session":"3f2a9c1e","principal":null,"client":{"info":{"name":"mcp","version":"1.0"},"capabilities":{}},"server":null,"started":"2026-12-06T21:13:19.533Z","part":0}"#;

    fn p() -> &'static Path {
        Path::new("t.jsonl")
    }

    #[test]
    fn parses_header_and_lines() {
        let text = format!(
            "{HEADER}\n{}\n\n{}\n",
            r#"{"t":0.5,"dir":"c2s","id":1,"upstream_id":null,"msg":{"jsonrpc":"2.0","id":1,"method":"ping"}}"#,
            r#"{"t":1.25,"dir":"s2c","id":1,"upstream_id":7,"msg":{"jsonrpc":"2.0","id":1,"result":{}},"synthetic":true}"#,
        );
        let f = parse(p(), text.as_bytes()).expect("tape");
        assert_eq!(f.header.era, "2025-11-25");
        assert_eq!(f.header.session.as_deref(), Some("3f2a9c1e"));
        assert_eq!(f.header.principal, None);
        assert_eq!(f.header.upstream(), "demo (stdio, shared)");
        assert_eq!(f.header.peer("client").as_deref(), Some("mcp 1.0"));
        assert_eq!(f.header.peer("server"), None);
        assert!(!f.incomplete);
        assert_eq!(f.lines.len(), 2);
        assert_eq!(f.lines[0].kind(), Kind::Request);
        assert_eq!(f.lines[0].method(), Some("ping"));
        assert_eq!((f.lines[1].dir, f.lines[1].synthetic), (Dir::S2c, true));
        assert_eq!(f.lines[1].kind(), Kind::Response);
        assert_eq!(f.lines[1].line, 4, "line numbers count the blank line");
    }

    #[test]
    fn a_truncated_last_line_is_ignored() {
        let text = format!(
            "{HEADER}\n{}\n{}",
            r#"{"t":0.5,"dir":"c2s","id":1,"msg":{"jsonrpc":"2.0","id":1,"method":"ping"}}"#,
            r#"{"t":1.25,"dir":"s2c","id":1,"msg":{"jsonrpc":"2.0","id""#,
        );
        let f = parse(p(), text.as_bytes()).expect("tape");
        assert!(f.incomplete);
        assert_eq!(f.lines.len(), 1);
        // Even a last line that happens to parse is ignored without its newline.
        let whole = r#"{"t":2,"dir":"c2s","id":null,"msg":{"jsonrpc":"2.0","method":"x"}}"#;
        let f = parse(p(), format!("{HEADER}\n{whole}").as_bytes()).expect("tape");
        assert!(f.incomplete && f.lines.is_empty());
    }

    #[test]
    fn unknown_versions_are_refused_clearly() {
        let v2 = HEADER.replace(r#""version":1"#, r#""version":2"#);
        let e = parse(p(), format!("{v2}\n").as_bytes()).expect_err("v2");
        let text = e.to_string();
        assert!(text.contains("version 2 is not supported"), "{text}");
        assert!(text.contains("reads version 1"), "{text}");
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn malformed_files_are_errors_not_panics() {
        let cases: [&[u8]; 9] = [
            b"",
            b"{\"tape\":\"shadowcat\"",
            b"[]\n",
            b"{\"tape\":\"other\",\"version\":1,\"era\":\"x\"}\n",
            b"{\"tape\":\"shadowcat\",\"version\":1}\n",
            b"{\"tape\":\"shadowcat\",\"version\":\"1\",\"era\":\"x\"}\n",
            b"\xff\xfe\n",
            b"{\"tape\":\"shadowcat\",\"version\":1,\"era\":\"x\"}\n{\"t\":1}\n",
            b"{\"tape\":\"shadowcat\",\"version\":1,\"era\":\"x\"}\n{\"t\":1,\"dir\":\"up\",\"msg\":{}}\n",
        ];
        for bytes in cases {
            let e = parse(p(), bytes).expect_err("malformed");
            assert_eq!(e.exit_code(), 2, "{e}");
        }
        let not_object = format!("{HEADER}\n{}\n", r#"{"t":1,"dir":"c2s","msg":[1]}"#);
        let e = parse(p(), not_object.as_bytes()).expect_err("msg array");
        assert!(e.to_string().starts_with("t.jsonl:2:"), "{e}");
    }

    #[test]
    fn part_names() {
        assert_eq!(part_of("a-b.1.jsonl").as_deref(), Some("a-b.jsonl"));
        assert_eq!(part_of("a.12.jsonl").as_deref(), Some("a.jsonl"));
        assert_eq!(part_of("a.jsonl"), None);
        assert_eq!(part_of("a.01.jsonl"), None);
        assert_eq!(part_of(".1.jsonl"), None);
    }

    #[test]
    fn rfc3339_times() {
        assert_eq!(started_ms("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(
            started_ms("2026-12-06T21:13:19.533Z"),
            Some(1_796_591_599_533.0)
        );
        assert_eq!(started_ms("2026-12-06T21:13:19"), None);
        assert_eq!(started_ms("nonsense"), None);
        assert_eq!(started_ms("99999999999999999-01-01T00:00:00Z"), None);
        assert_eq!(started_ms("2026-01-01T-1:00:00Z"), None);
    }
}
