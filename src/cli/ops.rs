//! The operations part: the admin API (`--admin-bind`, `--admin-token`, with its TLS files from
//! `cli/listen.rs`), this instance's name (`--instance-id`) and how it stops
//! (`--shutdown-grace`, `--drain-time`).
//!
//! Owns: these flags' checks; an admin API off loopback needs a token. Must not touch: the
//! admin API itself (`crate::ops`) or the MCP listener's flags.

use std::net::SocketAddr;
use std::time::Duration;

use super::syntax::token;
use crate::config::{AdminConfig, InstanceConfig};
use crate::error::Error;
use crate::http::TlsFiles;
use crate::util::duration;

/// The operations flags, as given.
pub(super) struct Flags<'a> {
    pub admin_bind: Option<SocketAddr>,
    pub admin_token: Option<String>,
    pub instance_id: Option<&'a str>,
    /// `--bind`'s port: the default instance id ends with it.
    pub port: u16,
    pub shutdown_grace: &'a str,
    pub drain_time: &'a str,
}

/// The operations parts of a `Config`.
pub(super) struct Ops {
    pub admin: Option<AdminConfig>,
    pub instance: InstanceConfig,
    pub shutdown_grace: Duration,
    pub drain_time: Duration,
}

/// The operations parts; `admin_tls` are the admin listener's files, if any.
pub(super) fn config(f: Flags, admin_tls: Option<TlsFiles>) -> Result<Ops, Error> {
    let admin_token = token("--admin-token", f.admin_token, "SHADOWCAT_ADMIN_TOKEN")?;
    if let Some(a) = f.admin_bind
        && !a.ip().is_loopback()
        && admin_token.is_none()
    {
        return Err(Error::Config(format!(
            "--admin-bind {a} is not loopback: set --admin-token too"
        )));
    }
    let shutdown_grace = duration("--shutdown-grace", f.shutdown_grace)?;
    let instance = InstanceConfig::new(f.instance_id, f.port).map_err(Error::Config)?;
    let drain_time = match f.drain_time.trim() {
        "0" | "0s" | "0ms" => Duration::ZERO,
        d => duration("--drain-time", d)?,
    };
    Ok(Ops {
        admin: f.admin_bind.map(|bind| AdminConfig {
            bind,
            token: admin_token,
            tls: admin_tls,
        }),
        instance,
        shutdown_grace,
        drain_time,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::cli::parse;

    #[test]
    fn scale_out_flags_parse_and_validate() {
        let err = |args: &[&str]| parse(args).err().map(|e| e.to_string()).unwrap_or_default();
        let c = parse(&["reverse", "--bind", "127.0.0.1:9001"]).unwrap();
        assert!(c.instance.id.ends_with("-9001"), "{}", c.instance.id);
        assert_eq!(c.drain_time, Duration::ZERO);
        assert!(c.gate.limits_store.is_none());
        let c = parse(&[
            "reverse",
            "--instance-id",
            "web-1",
            "--drain-time",
            "3s",
            "--limits-store",
            "redis://u:secret@127.0.0.1:6379/1",
            "--limits-store-fail",
            "closed",
        ])
        .unwrap();
        assert_eq!(c.instance.id, "web-1");
        assert_eq!(c.drain_time, Duration::from_secs(3));
        let store = c.gate.limits_store.clone().unwrap();
        assert_eq!(store.fail, crate::gate::ratelimit::FailMode::Closed);
        // /admin/config shows the store without its password.
        let shown = serde_json::to_value(&c).unwrap();
        assert_eq!(shown["instanceId"], "web-1");
        assert_eq!(shown["drainTimeSeconds"], 3.0);
        assert_eq!(shown["limitsStore"]["url"], "redis://127.0.0.1:6379/1");
        assert!(!shown.to_string().contains("secret"));
        assert!(err(&["reverse", "--instance-id", "a.b"]).starts_with("--instance-id"));
        assert!(err(&["reverse", "--limits-store", "http://x/0"]).starts_with("--limits-store"));
        assert!(
            err(&[
                "reverse",
                "--limits-store",
                "redis://h:1/0",
                "--limits-store-fail",
                "x"
            ])
            .starts_with("--limits-store-fail")
        );
        assert!(err(&["reverse", "--drain-time", "soon"]).starts_with("--drain-time"));
    }
}
