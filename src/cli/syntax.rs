//! Flag syntax shared by the part builders: `${VAR}` expansion, bearer tokens from a flag or the
//! environment, and the "at least 1" check of counts.
//!
//! Owns: these three rules and their error messages. Must not touch: any one flag's meaning;
//! durations and sizes are `crate::util::{duration, size}`.

use crate::config::Secret;
use crate::error::Error;

/// A bearer token from its flag, else from the environment variable `env`; empty means none,
/// shorter than 16 characters is refused.
pub(super) fn token(flag: &str, given: Option<String>, env: &str) -> Result<Option<Secret>, Error> {
    let t = given
        .or_else(|| std::env::var(env).ok())
        .filter(|t| !t.is_empty());
    if t.as_deref().is_some_and(|t| t.len() < 16) {
        return Err(Error::Config(format!(
            "{flag} must be at least 16 characters"
        )));
    }
    Ok(t.map(Secret::new))
}

/// Replaces each `${NAME}` with the environment variable NAME; an unset variable is an error.
/// A `$` not followed by `{` is kept as is.
pub fn expand_env(flag: &str, s: &str) -> Result<String, Error> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find("${") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| Error::Config(format!("{flag}: unterminated ${{ in value")))?;
        let name = &after[..end];
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(Error::Config(format!("{flag}: bad variable name {name:?}")));
        }
        let v = std::env::var(name).map_err(|_| {
            Error::Config(format!("{flag}: environment variable {name} is not set"))
        })?;
        out.push_str(&v);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A count that must be at least 1: `{flag} must be at least 1` otherwise.
pub(super) fn positive(flag: &str, v: usize) -> Result<(), Error> {
    if v == 0 {
        return Err(Error::Config(format!("{flag} must be at least 1")));
    }
    Ok(())
}
