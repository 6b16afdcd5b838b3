//! The config file (`shadowcat reverse --config shadowcat.toml`, `shadowcat check-config FILE`).
//!
//! Owns: reading a TOML file and turning it into the flags of `shadowcat reverse`. Must not
//! touch: what a flag means (that is [`super::ReverseArgs::into_config`], the one place flags
//! and files become a [`crate::Config`]).
//!
//! Every key is a flag of `shadowcat reverse` without its `--` (`bind = "127.0.0.1:8080"`,
//! `stdio = "shadowcat demo-server"`, `max-sessions = 500`), so the file and the flags cannot
//! drift apart: they go through the same parser and the same validation. Values:
//! * a string or a number is the flag's value; `${VAR}` in a string is the environment variable
//!   (unset: an error), as a shell expands a flag;
//! * `true` gives a switch (`false` leaves it off); a boolean for an option is an error;
//! * an array gives a repeatable flag once per element, in order;
//! * `[upstream.NAME]` tables are named upstreams behind one endpoint, read by
//!   [`super::members`]; `[[fault]]` tables are the fault and mock rules, which
//!   `cli/faults.rs` reads; any other table is refused.
//!
//! A flag given on the command line replaces the same key of the file (the whole list, for a
//! repeatable flag). Unknown keys and values of the wrong kind are errors naming the file and the
//! line.

use argh::{ArgsInfo, FlagInfoKind, FromArgs, Optionality};
use toml::Spanned;
use toml::de::{DeString, DeTable, DeValue};

use super::ReverseArgs;
use crate::error::Error;

/// The largest config file read (a guard against pointing `--config` at the wrong file).
const MAX_FILE_BYTES: u64 = 1 << 20;

/// Flags whose values the flag parser expands itself (`${VAR}`), late, so the values stay out
/// of everything shown; every other string in the file is expanded here, as a shell would
/// expand a flag.
const EXPANDED_BY_THE_FLAG: [&str; 2] = ["upstream-header", "stdio-env"];

/// What the file may hold for one key: the flag it names.
struct Flag {
    long: String,
    switch: bool,
    repeating: bool,
}

/// The flags of `shadowcat reverse` a file may set (all but `--config` and `--help`).
fn flags() -> Vec<Flag> {
    ReverseArgs::get_args_info()
        .flags
        .iter()
        .map(|f| Flag {
            long: f.long.trim_start_matches("--").to_owned(),
            switch: matches!(f.kind, FlagInfoKind::Switch),
            repeating: matches!(f.optionality, Optionality::Repeating),
        })
        .filter(|f| f.long != "config" && f.long != "help")
        .collect()
}

/// Reads `path` and returns the `reverse` flags it stands for, in the order of its keys.
pub fn read_flags(path: &str) -> Result<Vec<(String, Vec<String>)>, Error> {
    flags_of(path, &read_text(path)?)
}

/// The text of config file `path`.
pub(super) fn read_text(path: &str) -> Result<String, Error> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| Error::Config(format!("{path}: {e}")))?;
    let mut text = String::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| Error::Config(format!("{path}: {e}")))?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(Error::Config(format!(
            "{path}: larger than {MAX_FILE_BYTES} bytes; is this the config file?"
        )));
    }
    Ok(text)
}

/// The top-level key of `[[fault]]` tables: read by `cli/faults.rs`, skipped here.
pub const FAULT_KEY: &str = "fault";

/// The flags `text` (the contents of `path`) stands for: `(flag, arguments)` per key, where a
/// switch has no argument and a repeatable flag one per element.
pub fn flags_of(path: &str, text: &str) -> Result<Vec<(String, Vec<String>)>, Error> {
    let table = DeTable::parse(text).map_err(|e| Error::Config(format!("{path}: {e}")))?;
    let known = flags();
    let mut out = Vec::new();
    for (key, value) in table.get_ref() {
        let at = |span: std::ops::Range<usize>| format!("{path}:{}", line_of(text, span.start));
        let name: &str = key.get_ref();
        if name == FAULT_KEY {
            continue;
        }
        let Some(flag) = known.iter().find(|f| f.long == name) else {
            return Err(Error::Config(format!(
                "{}: unknown key `{name}` (a key is a flag of `shadowcat reverse` without its \
                 --; see `shadowcat reverse --help`)",
                at(key.span())
            )));
        };
        let bad = |why: &str| Error::Config(format!("{}: `{name}`: {why}", at(value.span())));
        let args = match value.get_ref() {
            DeValue::Boolean(b) if flag.switch => {
                if !b {
                    continue;
                }
                Vec::new()
            }
            _ if flag.switch => return Err(bad("a switch: write true or false")),
            DeValue::Array(items) if flag.repeating => items
                .iter()
                .map(|v| scalar(v).ok_or_else(|| bad("elements must be strings or numbers")))
                .collect::<Result<_, _>>()?,
            DeValue::Array(_) => return Err(bad("takes one value, not a list")),
            // `[upstream.NAME]`: named upstreams, read by `super::members`.
            DeValue::Table(_) if name == "upstream" => continue,
            DeValue::Table(_) => {
                return Err(bad(
                    "is not a table a config file may hold ([upstream.NAME] and [[fault]] only)",
                ));
            }
            _ => vec![scalar(value).ok_or_else(|| bad("must be a string or a number"))?],
        };
        let args = if EXPANDED_BY_THE_FLAG.contains(&name) {
            args
        } else {
            let flag = format!("{}: `{name}`", at(value.span()));
            args.iter()
                .map(|a| super::expand_env(&flag, a))
                .collect::<Result<_, _>>()?
        };
        out.push((name.to_owned(), args));
    }
    Ok(out)
}

/// A string, integer or float as the text a flag takes.
pub(super) fn scalar(v: &Spanned<DeValue<'_>>) -> Option<String> {
    match v.get_ref() {
        DeValue::String(s) => Some(DeString::to_string(s)),
        DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
            .ok()
            .map(|n| n.to_string()),
        DeValue::Float(f) => Some(f.as_str().to_owned()),
        _ => None,
    }
}

/// The 1-based line of byte `offset` in `text`.
pub(super) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// `reverse`'s arguments with `--config FILE` expanded: the file's flags first, then the
/// command line's, a key of the file dropped when the command line gives the same flag.
/// `--config` itself stays, so `/admin/config` and the logs can name the file.
pub fn expand(args: &[String]) -> Result<Vec<String>, Error> {
    let Some(i) = args.iter().position(|a| a == "--config") else {
        return Ok(args.to_vec());
    };
    let Some(path) = args.get(i + 1) else {
        return Ok(args.to_vec()); // argh reports the missing value
    };
    let given = |flag: &str| args.iter().any(|a| a.strip_prefix("--") == Some(flag));
    let mut out = Vec::new();
    for (flag, values) in read_flags(path)? {
        if given(&flag) {
            continue;
        }
        if values.is_empty() {
            out.push(format!("--{flag}"));
        }
        for v in values {
            out.push(format!("--{flag}"));
            out.push(v);
        }
    }
    out.extend(args.iter().cloned());
    Ok(out)
}

/// `shadowcat check-config FILE`: builds the whole configuration as `reverse --config FILE`
/// would, without starting anything, and returns it as `/admin/config` shows it (secrets
/// redacted).
pub fn check(path: &str, self_exe: &str) -> Result<String, Error> {
    let args = expand(&["--config".to_owned(), path.to_owned()])?;
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let parsed = ReverseArgs::from_args(&["shadowcat", "reverse"], &refs)
        .map_err(|e| Error::Config(format!("{path}: {}", e.output.trim())))?;
    let config = parsed.into_config(self_exe)?;
    serde_json::to_string_pretty(&config).map_err(|e| Error::Config(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(v: Vec<(String, Vec<String>)>) -> Vec<String> {
        v.into_iter()
            .flat_map(|(k, vs)| std::iter::once(k).chain(vs))
            .collect()
    }

    #[test]
    fn keys_are_flags_and_values_their_arguments() {
        let text = "bind = \"127.0.0.1:0\"\nmax-sessions = 7\nstdio = \"cat\"\n\
                    allowed-origin = [\"http://a.test\", \"http://b.test\"]\n";
        let got = flat(flags_of("f.toml", text).expect("valid"));
        for want in ["bind", "127.0.0.1:0", "max-sessions", "7", "stdio", "cat"] {
            assert!(got.iter().any(|g| g == want), "{want} in {got:?}");
        }
        let i = got
            .iter()
            .position(|g| g == "allowed-origin")
            .expect("list");
        assert_eq!(got[i + 1..i + 3], ["http://a.test", "http://b.test"]);
    }

    #[test]
    fn unknown_keys_and_wrong_kinds_name_the_line() {
        let e = flags_of("f.toml", "bind = \"127.0.0.1:0\"\n\nbnid = 1\n").unwrap_err();
        assert!(
            e.to_string().starts_with("f.toml:3: unknown key `bnid`"),
            "{e}"
        );
        let e = flags_of("f.toml", "\nbind = [\"a\", \"b\"]\n").unwrap_err();
        assert!(
            e.to_string().contains("f.toml:2: `bind`: takes one value"),
            "{e}"
        );
        let e = flags_of("f.toml", "[bind]\nx = \"y\"\n").unwrap_err();
        assert!(
            e.to_string().contains("[upstream.NAME] and [[fault]] only"),
            "{e}"
        );
        let e = flags_of("f.toml", "bind = \n").unwrap_err();
        assert!(e.to_string().contains("line 1"), "{e}");
        let e = flags_of("f.toml", "path = \"${SHADOWCAT_NO_SUCH_VAR_1}\"\n").unwrap_err();
        assert!(
            e.to_string().contains("SHADOWCAT_NO_SUCH_VAR_1 is not set"),
            "{e}"
        );
        let e = flags_of("f.toml", "config = \"other.toml\"\n").unwrap_err();
        assert!(e.to_string().contains("unknown key `config`"), "{e}");
    }

    #[test]
    fn the_command_line_replaces_a_key_of_the_file() {
        let dir = std::env::temp_dir().join(format!("shadowcat-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("a.toml");
        std::fs::write(&path, "bind = \"127.0.0.1:1\"\npath = \"/x\"\n").expect("write");
        let p = path.to_string_lossy().into_owned();
        let args: Vec<String> = ["--config", &p, "--bind", "127.0.0.1:2"]
            .map(String::from)
            .to_vec();
        let got = expand(&args).expect("expands");
        assert_eq!(got.iter().filter(|a| *a == "--bind").count(), 1, "{got:?}");
        assert!(got.windows(2).any(|w| w == ["--path", "/x"]), "{got:?}");
        assert!(
            got.windows(2).any(|w| w == ["--bind", "127.0.0.1:2"]),
            "{got:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn exclusive_tools_come_from_the_file_too() {
        let dir = std::env::temp_dir().join(format!("shadowcat-cfg-x-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("x.toml");
        let text = "stdio-exclusive-tools = [\"stream_events\", \"a,b\"]\n\
                    stdio-learn-exclusive = \"off\"\n";
        std::fs::write(&path, text).expect("write");
        let shown = check(&path.to_string_lossy(), "/bin/shadowcat").expect("valid");
        let v: serde_json::Value = serde_json::from_str(&shown).expect("JSON");
        assert_eq!(
            v["stdioExclusiveTools"],
            serde_json::json!(["stream_events", "a", "b"])
        );
        assert_eq!(v["stdioLearnExclusive"], false);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
