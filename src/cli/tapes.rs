//! The tapes part: `--record*`, `--redact` and `--audit-*` into a [`TapeConfig`].
//!
//! Owns: these flags' checks, taken together (`--redact` needs something to redact, an audit
//! option needs the audit log), and the `--redact` rule syntax. Must not touch: other parts'
//! flags; writing tapes is `crate::tape`.

use std::path::PathBuf;

use crate::config::{RedactRules, TapeConfig};
use crate::error::Error;
use crate::util::{duration, size};

/// The tape and audit flags, as given.
pub(super) struct Flags<'a> {
    pub record: Option<&'a str>,
    pub record_max_bytes: &'a str,
    pub record_keep: &'a str,
    pub redact: &'a [String],
    pub audit_log: Option<&'a str>,
    pub audit_arguments: bool,
    /// An `[upstream.NAME]` table has `record` (`--redact` applies to its tapes).
    pub members_record: bool,
}

/// `--record*`, `--redact` and `--audit-*`, checked together.
pub(super) fn config(f: &Flags) -> Result<TapeConfig, Error> {
    let max_bytes = size("--record-max-bytes", f.record_max_bytes)?;
    if max_bytes < 4096 {
        return Err(Error::Config(
            "--record-max-bytes must be at least 4KiB".into(),
        ));
    }
    let keep = duration("--record-keep", f.record_keep)?;
    let mut redact = RedactRules::default();
    for rule in f.redact {
        parse_redact(rule, &mut redact)?;
    }
    if f.audit_arguments && f.audit_log.is_none() {
        return Err(Error::Config("--audit-arguments needs --audit-log".into()));
    }
    if !f.redact.is_empty() && f.record.is_none() && !f.audit_arguments && !f.members_record {
        return Err(Error::Config(
            "--redact applies to --record, `record` in an [upstream.NAME] table and \
             --audit-arguments: give one of them"
                .into(),
        ));
    }
    if f.record.is_some_and(str::is_empty) {
        return Err(Error::Config("--record: empty directory name".into()));
    }
    if f.audit_log.is_some_and(str::is_empty) {
        return Err(Error::Config("--audit-log: empty file name".into()));
    }
    Ok(TapeConfig {
        record: f.record.map(PathBuf::from),
        max_bytes: max_bytes as u64,
        keep,
        audit_log: f.audit_log.map(str::to_owned),
        audit_arguments: f.audit_arguments,
        redact,
        queue_bytes: crate::tape::DEFAULT_QUEUE_BYTES,
        audit_queue_bytes: crate::tape::audit::DEFAULT_QUEUE_BYTES,
    })
}

/// Parses one `--redact` rule into `rules`: `key=NAME,...` or `pointer=/json/pointer`.
fn parse_redact(rule: &str, rules: &mut RedactRules) -> Result<(), Error> {
    let bad = |why: &str| Error::Config(format!("--redact {rule:?}: {why}"));
    match rule.split_once('=') {
        Some(("key", names)) => {
            for name in names.split(',').map(str::trim) {
                if name.is_empty() {
                    return Err(bad("empty key name"));
                }
                rules.keys.push(name.to_owned());
            }
            Ok(())
        }
        Some(("pointer", p)) => {
            if !p.starts_with('/') {
                return Err(bad("a JSON pointer starts with '/'"));
            }
            // RFC 6901: `~` only as `~0` or `~1`.
            let mut chars = p.chars();
            while let Some(c) = chars.next() {
                if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
                    return Err(bad("'~' must be followed by 0 or 1"));
                }
            }
            rules.pointers.push(p.to_owned());
            Ok(())
        }
        _ => Err(bad("expected key=NAME,... or pointer=/json/pointer")),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::cli::parse;

    #[test]
    fn tape_flags() {
        let err = |args: &[&str]| parse(args).err().map(|e| e.to_string()).unwrap_or_default();
        let c = parse(&["reverse"]).unwrap();
        assert_eq!(c.tapes.record, None);
        assert_eq!(c.tapes.max_bytes, 64 * 1024 * 1024);
        assert_eq!(c.tapes.keep, Duration::from_secs(7 * 86_400));
        assert_eq!(c.tapes.audit_log, None);
        let c = parse(&[
            "reverse",
            "--record",
            "/tmp/tapes",
            "--redact",
            "key=pin, otp",
            "--redact",
            "pointer=/params/arguments/a~1b",
            "--audit-log",
            "-",
            "--audit-arguments",
            "--record-keep",
            "2h",
        ])
        .unwrap();
        assert_eq!(c.tapes.redact.keys, ["pin", "otp"]);
        assert_eq!(c.tapes.redact.pointers, ["/params/arguments/a~1b"]);
        assert_eq!(c.tapes.keep, Duration::from_secs(7200));
        let shown = serde_json::to_value(&c).unwrap();
        assert_eq!(shown["record"], "/tmp/tapes");
        assert_eq!(shown["auditLog"], "-");
        assert_eq!(shown["redactKeys"][1], "otp");
        assert_eq!(shown["recordMaxBytes"], 64 * 1024 * 1024);
        assert!(err(&["reverse", "--audit-arguments"]).contains("needs --audit-log"));
        assert!(err(&["reverse", "--redact", "key=x"]).contains("give one of them"));
        let rec = ["reverse", "--record", "/tmp/t", "--redact"];
        assert!(err(&[&rec[..], &["pointer=a/b"]].concat()).contains("starts with '/'"));
        assert!(err(&[&rec[..], &["pointer=/a~2"]].concat()).contains("~"));
        assert!(err(&[&rec[..], &["key="]].concat()).contains("empty key"));
        assert!(err(&[&rec[..], &["keys=a"]].concat()).contains("expected key="));
        assert!(err(&["reverse", "--record-max-bytes", "100"]).contains("at least 4KiB"));
        assert!(err(&["reverse", "--record-keep", "0d"]).contains("more than zero"));
    }
}
