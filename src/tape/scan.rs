//! The recorder's fast path over [`Rules`]: most messages contain nothing a rule could match,
//! and a byte scan finds that out without building a tree, so such a message is written byte
//! for byte as it crossed. Only a message the scan cannot clear is parsed, redacted by
//! [`Rules::redact`] (the one redaction the tape tools use too) and re-serialized.
//!
//! The scan is sound because every member name a rule matches appears literally in the text
//! unless written with a `\u` or `\/` escape (the other JSON escapes cannot produce a letter,
//! digit, `_` or `-`), and text with either escape is always parsed. A pointer rule is looked
//! for by its last member name (a pointer ending in array indexes only makes every message
//! parsed).
//!
//! A re-serialized message is compact with object members in key order: `serde_json` (built
//! without `preserve_order`) keeps them sorted, which is also the canonical order the
//! placeholders hash ([`super::redact::canonical`]).

use std::borrow::Cow;

use serde_json::Value;
use serde_json::value::RawValue;

use super::redact::{DEFAULT_KEYS, Rules};

/// [`Rules`] with the byte scan that tells a message no rule can match.
#[derive(Clone)]
pub struct Redactor {
    rules: Rules,
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
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

impl Redactor {
    /// The scan for `rules`.
    pub fn new(rules: Rules) -> Redactor {
        let mut needles: Vec<Vec<u8>> =
            DEFAULT_KEYS.iter().map(|k| k.as_bytes().to_vec()).collect();
        needles.extend(rules.extra_keys().iter().map(|k| k.as_bytes().to_vec()));
        let mut always_parse = false;
        for p in rules.pointers() {
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
        // A needle with a character an escape other than \u and \/ could write, or one
        // shorter than two bytes (pairs cannot find it), cannot be ruled out by looking.
        always_parse |= needles
            .iter()
            .any(|n| n.len() < 2 || n.iter().any(|&b| b == b'"' || b == b'\\' || b < 0x20));
        let mut pairs = Box::new([0u64; 1024]);
        for n in needles.iter().filter(|n| n.len() >= 2) {
            let bit = pair(n[0], n[1]);
            pairs[bit >> 6] |= 1 << (bit & 63);
        }
        Redactor {
            rules,
            needles,
            pairs,
            always_parse,
        }
    }

    /// The rules.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Redacts `v` in place ([`Rules::redact`]).
    pub fn redact(&self, v: &mut Value) {
        self.rules.redact(v);
    }

    /// The text to write for the JSON message `bytes`, on one line: `bytes` itself when no
    /// rule can match and it has no line break, else the parsed, redacted and re-serialized
    /// message. `None` when `bytes` is not JSON (nothing is written rather than something
    /// unredacted).
    pub fn message<'a>(&self, bytes: &'a [u8]) -> Option<Cow<'a, [u8]>> {
        if !self.must_parse(bytes) {
            serde_json::from_slice::<&RawValue>(bytes).ok()?;
            return Some(Cow::Borrowed(bytes));
        }
        self.reserialize(bytes)
    }

    /// [`Redactor::message`] for a message the caller has already checked is one JSON object
    /// (the writer picks its members first): a clean one is not validated twice.
    pub fn checked_message<'a>(&self, bytes: &'a [u8]) -> Option<Cow<'a, [u8]>> {
        if !self.must_parse(bytes) {
            return Some(Cow::Borrowed(bytes));
        }
        self.reserialize(bytes)
    }

    fn reserialize<'a>(&self, bytes: &'a [u8]) -> Option<Cow<'a, [u8]>> {
        let mut v: Value = serde_json::from_slice(bytes).ok()?;
        self.rules.redact(&mut v);
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
