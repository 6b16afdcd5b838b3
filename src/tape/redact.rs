//! Redaction of tape messages: the rules of `docs/tape-format.md` ("Redaction"), in one place
//! for the recorder (before a line is written) and `shadowcat tape redact` (on a tape already
//! written).
//!
//! A value is replaced by `"<redacted:XXXXXXXX>"` when
//! * its member name contains, ignoring ASCII case, one of [`DEFAULT_KEYS`] (except the MCP
//!   members [`EXEMPT`], which carry no secret and which replay needs intact), or
//! * its member name equals, ignoring ASCII case, a name given with `key=NAME,…`, or
//! * it sits at a JSON pointer given with `pointer=/json/pointer` (relative to the JSON-RPC
//!   message, e.g. `/params/arguments/token`).
//!
//! The whole value is replaced (an object or array too; nothing under it is visited), a value
//! that is a placeholder already is left alone (redacting twice changes nothing), and
//! `XXXXXXXX` is the first 8 hex digits of SHA-256 over the salt's bytes followed by the
//! value's [`canonical`] JSON text. The salt is the text of the file [`SALT_FILE`] in the tape
//! directory ([`dir_salt`]).

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Member names redacted by default: a name containing one of these (ASCII case ignored).
pub const DEFAULT_KEYS: [&str; 7] = [
    "password",
    "secret",
    "token",
    "api_key",
    "apikey",
    "authorization",
    "cookie",
];

/// MCP's own members whose names contain a default key but which carry no secret: the
/// default rules skip them (a `pointer=` or `key=` rule still applies). `progressToken` is
/// how progress is matched to its request; `maxTokens` is a required number of
/// `sampling/createMessage`, which a client refuses as a string.
pub const EXEMPT: [&str; 2] = ["progressToken", "maxTokens"];

/// The salt file in a tape directory.
pub const SALT_FILE: &str = ".salt";

const PREFIX: &str = "<redacted:";

/// The redaction rules of one tape directory: the default names, extra names, pointers and
/// the directory's salt.
#[derive(Clone, Debug)]
pub struct Rules {
    defaults: bool,
    /// Extra names, lower-cased, matched whole.
    keys: Vec<String>,
    pointers: Vec<String>,
    salt: Vec<u8>,
}

impl Rules {
    /// The default rules under `salt` (normally from [`dir_salt`]).
    pub fn new(salt: Vec<u8>) -> Rules {
        Rules {
            defaults: true,
            keys: Vec::new(),
            pointers: Vec::new(),
            salt,
        }
    }

    /// Adds one `--redact` value: `key=NAME[,NAME…]` or `pointer=/json/pointer`. Err: the
    /// syntax is wrong (the text says why).
    pub fn add(&mut self, spec: &str) -> Result<(), String> {
        if let Some(names) = spec.strip_prefix("key=") {
            let names: Vec<String> = names
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_ascii_lowercase)
                .collect();
            if names.is_empty() {
                return Err(format!("--redact {spec}: no key name"));
            }
            self.keys.extend(names);
            Ok(())
        } else if let Some(pointer) = spec.strip_prefix("pointer=") {
            if !pointer.starts_with('/') {
                return Err(format!(
                    "--redact {spec}: a JSON pointer starts with / (e.g. /params/arguments/token)"
                ));
            }
            self.pointers.push(pointer.to_owned());
            Ok(())
        } else {
            Err(format!(
                "--redact {spec}: expected key=NAME[,NAME…] or pointer=/json/pointer"
            ))
        }
    }

    /// The names given with `key=`, lower-cased (for the recorder's byte scan, `scan.rs`).
    pub fn extra_keys(&self) -> &[String] {
        &self.keys
    }

    /// The pointers given with `pointer=`.
    pub fn pointers(&self) -> &[String] {
        &self.pointers
    }

    /// The first `bytes` bytes (at most 32) of SHA-256 over the salt followed by `text`, in
    /// lower-case hex: how the recorder names a stateless client's tape without its address.
    pub fn digest_hex(&self, text: &[u8], bytes: usize) -> String {
        let mut h = Sha256::new();
        h.update(&self.salt);
        h.update(text);
        h.finalize()
            .iter()
            .take(bytes)
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Redacts `msg` (one JSON-RPC message) in place; returns how many values were replaced.
    pub fn redact(&self, msg: &mut Value) -> usize {
        let mut n = 0;
        for p in &self.pointers {
            if let Some(v) = msg.pointer_mut(p) {
                n += self.replace(v);
            }
        }
        n + self.walk(msg)
    }

    fn walk(&self, v: &mut Value) -> usize {
        match v {
            Value::Object(map) => map
                .iter_mut()
                .map(|(k, v)| {
                    if self.secret_key(k) {
                        self.replace(v)
                    } else {
                        self.walk(v)
                    }
                })
                .sum(),
            Value::Array(items) => items.iter_mut().map(|v| self.walk(v)).sum(),
            _ => 0,
        }
    }

    /// Whether values under the member `name` are redacted.
    pub fn secret_key(&self, name: &str) -> bool {
        let lower = name.to_ascii_lowercase();
        let by_default = self.defaults
            && !EXEMPT.contains(&name)
            && DEFAULT_KEYS.iter().any(|k| lower.contains(k));
        by_default || self.keys.contains(&lower)
    }

    fn replace(&self, v: &mut Value) -> usize {
        if is_redacted(v) {
            return 0;
        }
        *v = Value::String(self.placeholder(v));
        1
    }

    /// The placeholder for `v`: `<redacted:XXXXXXXX>`.
    pub fn placeholder(&self, v: &Value) -> String {
        let mut h = Sha256::new();
        h.update(&self.salt);
        h.update(canonical(v).as_bytes());
        let digest = h.finalize();
        let mut s = String::with_capacity(PREFIX.len() + 9);
        s.push_str(PREFIX);
        for b in &digest[..4] {
            s.push_str(&format!("{b:02x}"));
        }
        s.push('>');
        s
    }
}

/// Whether `v` is a placeholder: the string `<redacted:` + 8 lower-case hex digits + `>`.
pub fn is_redacted(v: &Value) -> bool {
    let Some(s) = v.as_str() else {
        return false;
    };
    let b = s.as_bytes();
    b.len() == PREFIX.len() + 9
        && s.starts_with(PREFIX)
        && b.last() == Some(&b'>')
        && b[PREFIX.len()..PREFIX.len() + 8]
            .iter()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The canonical JSON text of a value, which the digest covers: compact (no whitespace),
/// object members sorted by key (byte order of their UTF-8), strings and numbers as
/// `serde_json` writes them. Equal values have equal text however they were spelled.
pub fn canonical(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// The salt of the tape directory `dir`: the trimmed text of `dir/.salt`, created first (64
/// hex digits from `/dev/urandom`, mode 0600, never overwritten) if it does not exist.
pub fn dir_salt(dir: &Path) -> io::Result<Vec<u8>> {
    let path = dir.join(SALT_FILE);
    match fs::read(&path) {
        Ok(text) => return Ok(trimmed(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut random = [0u8; 32];
    fs::File::open("/dev/urandom")?.read_exact(&mut random)?;
    let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(&path) {
        Ok(mut f) => {
            f.write_all(format!("{hex}\n").as_bytes())?;
            f.sync_all()?;
            Ok(hex.into_bytes())
        }
        // Someone else created it first: theirs is the salt.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(trimmed(fs::read(&path)?)),
        Err(e) => Err(e),
    }
}

fn trimmed(mut text: Vec<u8>) -> Vec<u8> {
    while text.last().is_some_and(u8::is_ascii_whitespace) {
        text.pop();
    }
    let start = text
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(text.len());
    text.drain(..start);
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules() -> Rules {
        Rules::new(b"00ff".to_vec())
    }

    #[test]
    fn default_keys_are_substrings_ignoring_case() {
        let r = rules();
        let mut m = json!({"params": {"arguments": {
            "Password": "p", "x_api_key": "k", "AccessToken": "t", "user": "bob",
            "headers": {"Authorization": "Bearer x", "cookies": ["a"]},
        }}});
        assert_eq!(r.redact(&mut m), 5);
        let a = &m["params"]["arguments"];
        assert!(is_redacted(&a["Password"]) && is_redacted(&a["AccessToken"]));
        assert!(is_redacted(&a["x_api_key"]));
        assert_eq!(a["user"], "bob");
        assert!(is_redacted(&a["headers"]["Authorization"]));
        assert!(
            is_redacted(&a["headers"]["cookies"]),
            "whole arrays are replaced"
        );
    }

    #[test]
    fn protocol_members_are_exempt_from_the_defaults() {
        let r = rules();
        let mut m = json!({"params": {"maxTokens": 100, "_meta": {"progressToken": 7}}});
        assert_eq!(r.redact(&mut m), 0);
        assert_eq!(m["params"]["maxTokens"], 100);
        let mut r = rules();
        r.add("pointer=/params/maxTokens").expect("rule");
        assert_eq!(r.redact(&mut m), 1);
    }

    #[test]
    fn key_and_pointer_rules() {
        let mut r = rules();
        r.add("key=ssn, pin").expect("keys");
        r.add("pointer=/params/arguments/list/1").expect("pointer");
        let mut m = json!({"params": {"arguments": {
            "SSN": "1", "pin_code": "2", "pin": 3, "list": ["a", "b"],
        }}});
        assert_eq!(r.redact(&mut m), 3);
        let a = &m["params"]["arguments"];
        assert!(is_redacted(&a["SSN"]) && is_redacted(&a["pin"]));
        assert_eq!(a["pin_code"], "2", "extra names match whole");
        assert_eq!(a["list"][0], "a");
        assert!(is_redacted(&a["list"][1]));
        assert!(r.add("pointer=params").is_err());
        assert!(r.add("key=").is_err());
        assert!(r.add("nonsense").is_err());
    }

    #[test]
    fn equal_values_hash_equally_and_salts_differ() {
        let r = rules();
        let a = r.placeholder(&json!({"b": 1, "a": [true, "x"]}));
        let b =
            r.placeholder(&serde_json::from_str(r#"{ "a": [true,"x"], "b": 1 }"#).expect("json"));
        assert_eq!(a, b);
        assert_ne!(a, r.placeholder(&json!("x")));
        assert_ne!(
            a,
            Rules::new(b"other".to_vec()).placeholder(&json!({"b": 1, "a": [true, "x"]}))
        );
        assert!(is_redacted(&Value::String(a)));
        // Known answer: SHA-256("00ff" ++ "\"hunter2\"").
        let mut h = Sha256::new();
        h.update(b"00ff\"hunter2\"");
        let want = format!("<redacted:{}>", &format!("{:x}", h.finalize())[..8]);
        assert_eq!(r.placeholder(&json!("hunter2")), want);
    }

    #[test]
    fn redacting_twice_changes_nothing() {
        let r = rules();
        let mut m = json!({"token": "abc"});
        assert_eq!(r.redact(&mut m), 1);
        let once = m.clone();
        assert_eq!(r.redact(&mut m), 0);
        assert_eq!(m, once);
    }

    #[test]
    fn canonical_text() {
        let v: Value =
            serde_json::from_str(r#"{"b":{"y":1,"x":"\u00e9\n"},"a":[1.5,null]}"#).expect("json");
        assert_eq!(canonical(&v), r#"{"a":[1.5,null],"b":{"x":"é\n","y":1}}"#);
    }

    #[test]
    fn salt_file_is_created_once() {
        let dir = std::env::temp_dir().join(format!("shadowcat-salt-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("dir");
        let first = dir_salt(&dir).expect("salt");
        assert_eq!(first.len(), 64);
        assert_eq!(dir_salt(&dir).expect("again"), first);
        fs::write(dir.join(SALT_FILE), "  abc \n").expect("write");
        assert_eq!(dir_salt(&dir).expect("given"), b"abc");
        let _ = fs::remove_dir_all(&dir);
    }
}
