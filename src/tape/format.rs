//! Tape format version 1 (`docs/tape-format.md`) as Rust types: the header line, the message
//! lines, the file names and the clock they are stamped with. The writer builds message lines
//! by hand (they are the hot path) and a unit test parses them back with [`Line`]; readers
//! (the tape tools, the replay server) deserialize both types.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The `version` of the header line.
pub const VERSION: u32 = 1;

/// The header's `tape` value.
pub const MAGIC: &str = "shadowcat";

/// Which way a message crossed the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Dir {
    /// Client to server, as the client sent it.
    #[serde(rename = "c2s")]
    ClientToServer,
    /// Server to client, as the client received it (ids restored).
    #[serde(rename = "s2c")]
    ServerToClient,
}

impl Dir {
    /// `c2s` or `s2c`.
    pub fn label(self) -> &'static str {
        match self {
            Dir::ClientToServer => "c2s",
            Dir::ServerToClient => "s2c",
        }
    }
}

/// The upstream a tape was recorded against.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upstream {
    /// The upstream's name, as logs and metrics show it.
    pub name: String,
    /// `stdio` or `http`.
    pub kind: String,
    /// `shared`, `per-session` (stdio) or `pooled` (http).
    pub mode: String,
}

/// One side of `initialize`: the client's `clientInfo` and `capabilities`, or the server's
/// `serverInfo` and `capabilities`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Party {
    /// `clientInfo` / `serverInfo`.
    pub info: Option<Value>,
    /// `capabilities`.
    pub capabilities: Option<Value>,
}

/// The first line of every tape file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// Always `"shadowcat"`.
    pub tape: String,
    /// The format version, [`VERSION`].
    pub version: u32,
    /// The version of the shadowcat that wrote it.
    pub shadowcat: String,
    /// What the proxy forwarded to.
    pub upstream: Upstream,
    /// The negotiated protocol version (a session) or `2026-07-28` (stateless).
    pub era: String,
    /// The session id's first 8 hex digits; null for stateless tapes.
    pub session: Option<String>,
    /// The authenticated principal, if authentication is on.
    pub principal: Option<String>,
    /// What the client's `initialize` carried; null when unknown when the tape starts.
    pub client: Option<Party>,
    /// What the server's answer to `initialize` carried; null when unknown.
    pub server: Option<Party>,
    /// When the tape started, RFC 3339 UTC with milliseconds; every `t` counts from here.
    pub started: String,
    /// Rotations before this file: 0 for the first.
    pub part: u32,
}

/// One message line (the writer builds them by hand; tests parse them back with this).
#[cfg(test)]
#[derive(Debug, Serialize, Deserialize)]
pub struct Line {
    /// Milliseconds since the header's `started` (monotonic clock, µs precision).
    pub t: f64,
    /// Direction.
    pub dir: Dir,
    /// The JSON-RPC id the client sees; null for notifications.
    pub id: Option<Box<serde_json::value::RawValue>>,
    /// The id on the upstream side when it differs (stdio id rewriting).
    pub upstream_id: Option<u64>,
    /// The message, redacted.
    pub msg: Box<serde_json::value::RawValue>,
    /// The proxy made this message itself (an error answer, a fault rule's answer).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub synthetic: bool,
    /// The fault rule that acted on the request this answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
}

/// A UTC calendar time, for file names and RFC 3339 stamps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Utc {
    /// Year.
    pub year: i64,
    /// 1..=12.
    pub month: u32,
    /// 1..=31.
    pub day: u32,
    /// 0..=23.
    pub hour: u32,
    /// 0..=59.
    pub minute: u32,
    /// 0..=59.
    pub second: u32,
    /// 0..=999.
    pub millis: u32,
}

impl Utc {
    /// The calendar time of `t` (times before 1970 count as 1970).
    pub fn of(t: SystemTime) -> Utc {
        let since = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        let secs = since.as_secs();
        let (year, month, day) = civil_from_days((secs / 86_400) as i64);
        let rem = secs % 86_400;
        Utc {
            year,
            month,
            day,
            hour: (rem / 3600) as u32,
            minute: (rem % 3600 / 60) as u32,
            second: (rem % 60) as u32,
            millis: since.subsec_millis(),
        }
    }

    /// `2026-12-06T21:13:19.533Z`.
    pub fn rfc3339(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second, self.millis
        )
    }

    /// `20261206T211319Z`, as session tape names start.
    pub fn compact(&self) -> String {
        format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }

    /// `20261206T21`, as stateless tape names end (before the `Z`).
    pub fn compact_hour(&self) -> String {
        format!(
            "{:04}{:02}{:02}T{:02}",
            self.year, self.month, self.day, self.hour
        )
    }
}

/// Year, month, day of a count of days since 1970-01-01 (Howard Hinnant's `civil_from_days`,
/// proleptic Gregorian calendar).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The hour a moment falls in, as hours since the Unix epoch (stateless tapes are per hour).
pub fn hour_of(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() / 3600)
        .unwrap_or(0)
}

/// The file name of a tape's part `part` from its base name: `base.jsonl`, then
/// `base.1.jsonl`, `base.2.jsonl`, …
pub fn file_name(base: &str, part: u32) -> String {
    if part == 0 {
        format!("{base}.jsonl")
    } else {
        format!("{base}.{part}.jsonl")
    }
}

/// The base name of a session's tape: `<YYYYMMDDTHHMMSSZ>-<first 8 hex of the id's random part>`.
pub fn session_base(started: SystemTime, session_id: &str) -> String {
    let short = crate::session::short_id(session_id);
    format!("{}-{short}", Utc::of(started).compact())
}

/// The base name of a stateless client's tape for one hour:
/// `stateless-<12 hex of the client's salted hash>-<YYYYMMDDTHH>Z`.
pub fn stateless_base(client_hash12: &str, hour: u64) -> String {
    let t = UNIX_EPOCH + Duration::from_secs(hour.saturating_mul(3600));
    format!("stateless-{client_hash12}-{}Z", Utc::of(t).compact_hour())
}

/// Appends the decimal digits of `n` (by hand: this runs several times per recorded message
/// and audit line, where `write!` costs more than the rest of the number's handling).
pub fn push_u64(b: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    b.extend_from_slice(&digits[i..]);
}

/// Appends `us` microseconds as milliseconds with three decimals (`1234` → `1.234`).
pub fn push_millis(b: &mut Vec<u8>, us: u64) {
    push_u64(b, us / 1000);
    let frac = (us % 1000) as u16;
    b.extend_from_slice(&[
        b'.',
        b'0' + (frac / 100) as u8,
        b'0' + (frac / 10 % 10) as u8,
        b'0' + (frac % 10) as u8,
    ]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_written_as_format_writes_them() {
        for n in [0, 7, 10, 999, 1000, 1_234_567, u64::MAX] {
            let mut b = Vec::new();
            push_u64(&mut b, n);
            assert_eq!(b, n.to_string().into_bytes());
            let mut b = Vec::new();
            push_millis(&mut b, n);
            assert_eq!(b, format!("{}.{:03}", n / 1000, n % 1000).into_bytes());
        }
    }
}
