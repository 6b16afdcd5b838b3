//! Reading the config file again for a reload (`SIGHUP`, `POST /admin/reload`).
//!
//! Owns: deciding which of the file's top-level keys a running proxy may change, and building
//! the new [`Config`] through the same parser and validation as at start. Must not touch:
//! applying it (`crate::reload`).
//!
//! A top-level key whose value changed is taken only when it is one of [`RELOADABLE`] (keys
//! that only shape the members of a federation) and the proxy serves `[upstream.NAME]`
//! tables. Any other changed key needs a restart: it is named in the answer and its value in
//! force is kept, so the new configuration is built from one consistent set of flags (the
//! members too are built on the kept values), never half of each. A key the command line
//! gives is the command line's, whatever the file says.

use argh::FromArgs;

use super::ReverseArgs;
use super::{file, members};
use crate::config::{Config, UpstreamConfig};
use crate::error::Error;

/// Top-level keys a reload applies (with `[upstream.NAME]` tables): they shape only the
/// members, each of which a reload replaces when its settings change.
pub const RELOADABLE: [&str; 9] = [
    "name-separator",
    "stdio-queue",
    "max-message",
    "max-call-buffer",
    "max-subscriptions",
    "session-evict-idle",
    "upstream-pool",
    "upstream-connect-timeout",
    "upstream-reconnect-max",
];

/// A file's top-level keys: `(flag, arguments)` in the file's order.
pub type FileFlags = Vec<(String, Vec<String>)>;

/// What `shadowcat reverse` was started with, to read its config file again.
#[derive(Clone, Debug)]
pub struct Source {
    /// The command line after `reverse`, as given (`--config FILE` not expanded).
    pub args: Vec<String>,
    /// The program that runs the built-in demo server.
    pub self_exe: String,
}

/// The configuration a reload would put in force.
pub struct Reread {
    /// Built from the file, with the values in force of the keys in `restart`.
    pub config: Config,
    /// The file's top-level keys as `config` took them (the next reload compares with them).
    pub file: FileFlags,
    /// Top-level keys whose new values need a restart (not applied).
    pub restart: Vec<String>,
}

impl Source {
    /// The `--config` file, if one was given.
    pub fn path(&self) -> Option<&str> {
        let i = self.args.iter().position(|a| a == "--config")?;
        self.args.get(i + 1).map(String::as_str)
    }

    /// The file's top-level keys now (at start: the ones in force).
    pub fn file_flags(&self) -> Result<FileFlags, Error> {
        match self.path() {
            Some(path) => file::read_flags(path),
            None => Ok(Vec::new()),
        }
    }

    fn given(&self, flag: &str) -> bool {
        self.args.iter().any(|a| a.strip_prefix("--") == Some(flag))
    }
}

/// The configuration of config file `path` (its `text`) with `top` as its top-level keys,
/// and `src`'s command line.
fn build(
    src: &Source,
    path: &str,
    text: &str,
    top: &[(String, Vec<String>)],
) -> Result<Config, Error> {
    // The file's keys, then the command line's, as at start (`file::expand`).
    let mut args = Vec::new();
    for (k, values) in top.iter().filter(|(k, _)| !src.given(k)) {
        if values.is_empty() {
            args.push(format!("--{k}"));
        }
        for v in values {
            args.push(format!("--{k}"));
            args.push(v.clone());
        }
    }
    args.extend(src.args.iter().cloned());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let parsed = ReverseArgs::from_args(&["shadowcat", "reverse"], &refs)
        .map_err(|e| Error::Config(format!("{path}: {}", e.output.trim())))?;
    let sep = parsed.name_separator.clone();
    let mut config = parsed.into_config(&src.self_exe)?;
    if matches!(config.upstream, UpstreamConfig::Federated(_))
        && let Some(f) = members::federation_from(path, text, top, &sep, &src.self_exe)?
    {
        config.upstream = UpstreamConfig::Federated(f);
    }
    Ok(config)
}

/// Reads `src`'s config file again: the keys in force are `in_force`; `federated`: the proxy
/// serves `[upstream.NAME]` tables (else no key is reloadable).
pub fn reread(
    src: &Source,
    in_force: &[(String, Vec<String>)],
    federated: bool,
) -> Result<Reread, Error> {
    let Some(path) = src.path() else {
        return Err(Error::Config(
            "started without --config: there is no file to read again".into(),
        ));
    };
    let text = file::read_text(path)?;
    let new = file::flags_of(path, &text)?;
    let old = |k: &str| in_force.iter().find(|(o, _)| o == k).map(|(_, v)| v);
    let takes = |k: &str| src.given(k) || (federated && RELOADABLE.contains(&k));
    let mut kept: FileFlags = Vec::new();
    let mut restart = Vec::new();
    for (k, v) in &new {
        match old(k) {
            Some(o) if o == v => kept.push((k.clone(), v.clone())),
            _ if takes(k) => kept.push((k.clone(), v.clone())),
            before => {
                restart.push(k.clone());
                if let Some(o) = before {
                    kept.push((k.clone(), o.clone()));
                }
            }
        }
    }
    for (k, v) in in_force {
        if new.iter().all(|(n, _)| n != k) && !takes(k) {
            restart.push(k.clone());
            kept.push((k.clone(), v.clone()));
        }
    }
    // The file as written must be valid, even where its new values are not taken.
    let written = build(src, path, &text, &new)?;
    if matches!(written.upstream, UpstreamConfig::Federated(_)) != federated {
        // Between one upstream and tables: nothing of it can be taken (`crate::reload` says
        // so); the keys in force stay.
        return Ok(Reread {
            config: written,
            file: in_force.to_vec(),
            restart,
        });
    }
    let config = build(src, path, &text, &kept)?;
    Ok(Reread {
        config,
        file: kept,
        restart,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &std::path::Path, text: &str) -> String {
        let path = dir.join("r.toml");
        std::fs::write(&path, text).expect("write");
        path.to_string_lossy().into_owned()
    }

    #[test]
    fn changed_keys_that_need_a_restart_keep_their_values_in_force() {
        let dir = std::env::temp_dir().join(format!("shadowcat-reread-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let members = "[upstream.a]\nstdio = \"cat\"\n";
        let path = write(
            &dir,
            &format!("max-sessions = 7\nmax-message = \"1MiB\"\n{members}"),
        );
        let src = Source {
            args: vec!["--config".into(), path.clone()],
            self_exe: "/bin/shadowcat".into(),
        };
        let in_force = src.file_flags().expect("valid");
        write(
            &dir,
            &format!("max-sessions = 9\nmax-message = \"2MiB\"\nworkers = 3\n{members}"),
        );
        let r = reread(&src, &in_force, true).expect("valid");
        assert_eq!(r.restart, ["max-sessions", "workers"]);
        assert_eq!(r.config.sessions.max, 7, "kept");
        let UpstreamConfig::Federated(f) = &r.config.upstream else {
            panic!("federated");
        };
        let UpstreamConfig::Stdio(s) = &f.members[0].upstream else {
            panic!("stdio");
        };
        assert_eq!(s.max_message, 2 << 20, "a member's key is taken");
        // Without tables nothing is reloadable; without --config nothing to read.
        let one = reread(&src, &in_force, false).expect("valid");
        assert!(
            one.restart.iter().any(|k| k == "max-message"),
            "{:?}",
            one.restart
        );
        let none = Source {
            args: Vec::new(),
            self_exe: String::new(),
        };
        assert!(reread(&none, &[], true).is_err());
        // From tables to one upstream: not taken, the keys in force stay.
        write(&dir, "max-sessions = 7\nstdio = \"cat\"\n");
        let switch = reread(&src, &in_force, true).expect("valid");
        assert!(matches!(switch.config.upstream, UpstreamConfig::Stdio(_)));
        assert_eq!(switch.file, in_force);
        assert!(
            switch.restart.iter().any(|k| k == "stdio"),
            "{:?}",
            switch.restart
        );
        write(&dir, "max-sessions = \"many\"\n");
        assert!(reread(&src, &in_force, true).is_err(), "invalid: refused");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
