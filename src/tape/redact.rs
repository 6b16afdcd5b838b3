//! Redaction: what never reaches a tape or the audit log, applied on the writer threads before
//! anything is written.
//!
//! A value is replaced by `"<redacted:XXXXXXXX>"` (the first 8 hex digits of the SHA-256 of
//! the salt followed by the value's compact JSON text) when
//!
//! * its key contains, ignoring ASCII case, `password`, `secret`, `token`, `api_key`,
//!   `apikey`, `authorization` or `cookie` (the default set), except the MCP protocol's own
//!   `progressToken` and `maxTokens` (exact names: a progress token is an opaque handle the
//!   client chose, `maxTokens` a number sampling needs; neither is a credential);
//! * its key is one of `--redact key=NAME,...` (exact, ignoring ASCII case; this wins over the
//!   exceptions above);
//! * it is at one of `--redact pointer=/json/pointer` (RFC 6901, from the message's root).
//!
//! The salt is per tape directory, so equal secrets hash equally within it and cannot be
//! looked up in a table made elsewhere.
//!
//! Most messages contain nothing a rule could match: a byte scan finds that out without
//! building a tree ([`Redactor::message`]). The scan is sound because every key a rule
//! matches appears literally in the text unless written with a `\u` or `\/` escape (the other
//! JSON escapes cannot produce a letter, digit, `_` or `-`), and text with either escape is
//! always parsed.

use std::borrow::Cow;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::config::RedactRules;

/// The default key set: a key containing one of these (ignoring ASCII case) is redacted.
pub const DEFAULT_KEYS: [&str; 7] = [
    "password",
    "secret",
    "token",
    "api_key",
    "apikey",
    "authorization",
    "cookie",
];

/// Keys the default set would match that the MCP protocol itself uses for non-secrets.
pub const NOT_SECRETS: [&str; 2] = ["progressToken", "maxTokens"];

/// The redaction rules with their salt.
#[derive(Clone)]
pub struct Redactor {
    /// `--redact key=`: lowercase, matched exactly (ignoring ASCII case).
    keys: Vec<String>,
    /// `--redact pointer=`.
    pointers: Vec<String>,
    salt: [u8; 32],
    /// Byte strings whose absence (ignoring ASCII case) proves that no rule can match.
    needles: Vec<Vec<u8>>,
    /// Bit `(a | 0x20) << 8 | (b | 0x20)` is set when some needle starts with the bytes
    /// `a b` (ignoring ASCII case): one lookup per byte of text instead of a comparison at
    /// every common letter.
    pairs: Box<[u64; 1024]>,
    /// A rule the byte scan cannot rule out: every message is parsed.
    always_parse: bool,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("keys", &self.keys)
            .field("pointers", &self.pointers)
            .finish_non_exhaustive()
    }
}

impl Redactor {
    /// The default set plus `rules`, hashing under `salt`.
    pub fn new(rules: &RedactRules, salt: [u8; 32]) -> Redactor {
        let keys: Vec<String> = rules.keys.iter().map(|k| k.to_ascii_lowercase()).collect();
        let mut needles: Vec<Vec<u8>> =
            DEFAULT_KEYS.iter().map(|k| k.as_bytes().to_vec()).collect();
        needles.extend(keys.iter().map(|k| k.as_bytes().to_vec()));
        let mut always_parse = false;
        for p in &rules.pointers {
            // The last member name on the path must appear in the text for the pointer to
            // resolve; array indexes name no member.
            let segments: Vec<&str> = p.split('/').skip(1).collect();
            let last = segments
                .iter()
                .rev()
                .find(|s| s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()));
            match last {
                Some(s) => needles.push(
                    s.replace("~1", "/")
                        .replace("~0", "~")
                        .to_ascii_lowercase()
                        .into_bytes(),
                ),
                None => always_parse = true,
            }
        }
        // A needle with a character an escape other than \u and \/ could write, or an empty
        // one, cannot be ruled out by looking for it.
        always_parse |= needles
            .iter()
            .any(|n| n.is_empty() || n.iter().any(|&b| b == b'"' || b == b'\\' || b < 0x20));
        // A needle shorter than two bytes cannot be found by pairs.
        always_parse |= needles.iter().any(|n| n.len() < 2);
        let mut pairs = Box::new([0u64; 1024]);
        for n in needles.iter().filter(|n| n.len() >= 2) {
            let bit = pair(n[0], n[1]);
            pairs[bit >> 6] |= 1 << (bit & 63);
        }
        Redactor {
            keys,
            pointers: rules.pointers.clone(),
            salt,
            needles,
            pairs,
            always_parse,
        }
    }

    /// True when a value under `key` is redacted.
    pub fn key_matches(&self, key: &str) -> bool {
        if self.keys.iter().any(|k| k.eq_ignore_ascii_case(key)) {
            return true;
        }
        if NOT_SECRETS.contains(&key) {
            return false;
        }
        DEFAULT_KEYS
            .iter()
            .any(|d| contains_ignore_case(key.as_bytes(), d.as_bytes()))
    }

    /// `"<redacted:XXXXXXXX>"` for `value`.
    pub fn replacement(&self, value: &Value) -> Value {
        let text = serde_json::to_vec(value).unwrap_or_default();
        Value::String(format!("<redacted:{}>", self.hex(&text, 4)))
    }

    /// The first `bytes` bytes of the salted SHA-256 of `text`, in lowercase hex.
    pub fn hex(&self, text: &[u8], bytes: usize) -> String {
        let digest = Sha256::new()
            .chain_update(self.salt)
            .chain_update(text)
            .finalize();
        digest
            .iter()
            .take(bytes)
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Redacts `v` in place: pointers first (their values hash as they were), then keys at
    /// any depth.
    pub fn redact(&self, v: &mut Value) {
        for p in &self.pointers {
            if let Some(target) = v.pointer_mut(p) {
                *target = self.replacement(target);
            }
        }
        self.walk(v);
    }

    fn walk(&self, v: &mut Value) {
        match v {
            Value::Object(map) => {
                for (k, child) in map.iter_mut() {
                    if self.key_matches(k) {
                        if !is_redacted(child) {
                            *child = self.replacement(child);
                        }
                    } else {
                        self.walk(child);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|i| self.walk(i)),
            _ => {}
        }
    }

    /// The text to write for the JSON message `bytes`, on one line: `bytes` itself when no
    /// rule can match and it has no line break, else the parsed, redacted and re-serialized
    /// message (compact; object members then come in key order). `None` when `bytes` is not
    /// JSON (nothing is written rather than something unredacted).
    pub fn message<'a>(&self, bytes: &'a [u8]) -> Option<Cow<'a, [u8]>> {
        if !self.must_parse(bytes) {
            serde_json::from_slice::<&serde_json::value::RawValue>(bytes).ok()?;
            return Some(Cow::Borrowed(bytes));
        }
        self.reserialize(bytes)
    }

    /// [`Redactor::message`] for a message the caller has already checked is one JSON object
    /// (the writer picks its members first): a clean one is not scanned twice.
    pub fn checked_message<'a>(&self, bytes: &'a [u8]) -> Option<Cow<'a, [u8]>> {
        if !self.must_parse(bytes) {
            return Some(Cow::Borrowed(bytes));
        }
        self.reserialize(bytes)
    }

    fn reserialize<'a>(&self, bytes: &'a [u8]) -> Option<Cow<'a, [u8]>> {
        let mut v: Value = serde_json::from_slice(bytes).ok()?;
        self.redact(&mut v);
        serde_json::to_vec(&v).ok().map(Cow::Owned)
    }

    /// True when `bytes` may hold something a rule matches, or a line break.
    pub fn must_parse(&self, bytes: &[u8]) -> bool {
        if self.always_parse {
            return true;
        }
        let mut prev = 0u8;
        for (i, &b) in bytes.iter().enumerate() {
            match b {
                b'\n' | b'\r' => return true,
                b'\\' if matches!(bytes.get(i + 1), Some(b'u' | b'/')) => return true,
                _ => {}
            }
            let bit = pair(prev, b);
            if i > 0 && self.pairs[bit >> 6] & (1 << (bit & 63)) != 0 {
                let rest = &bytes[i - 1..];
                if self
                    .needles
                    .iter()
                    .any(|n| rest.len() >= n.len() && rest[..n.len()].eq_ignore_ascii_case(n))
                {
                    return true;
                }
            }
            prev = b;
        }
        false
    }
}

/// The index of two bytes in the pair table, folding ASCII case (`| 0x20` also folds a few
/// non-letters together, which only costs a comparison that fails).
fn pair(a: u8, b: u8) -> usize {
    ((a | 0x20) as usize) << 8 | (b | 0x20) as usize
}

/// A value this redactor (or another run's) already replaced.
fn is_redacted(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.starts_with("<redacted:") && s.ends_with('>'))
}

/// `hay` contains `needle` (lowercase) ignoring ASCII case.
fn contains_ignore_case(hay: &[u8], needle: &[u8]) -> bool {
    hay.len() >= needle.len()
        && hay
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}
