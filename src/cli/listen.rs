//! The listen part: `--bind` and the client-facing limits into a [`ListenConfig`], and every
//! TLS file flag (`--tls-*`, `--admin-tls-*`, `--upstream-ca`, `--upstream-client-*`).
//!
//! Owns: these flags' checks; TLS files come in whole pairs, and a client CA, a CRL or an admin
//! pair only with what it applies to. Must not touch: the files themselves (read at start-up
//! by `crate::http`), nor whether an https upstream or JWKS URL uses our client TLS (that
//! needs the upstream and gate parts: `cli/compose.rs`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::syntax::positive;
use crate::config::{ClientTlsConfig, ListenConfig};
use crate::error::Error;
use crate::http::TlsFiles;
use crate::util::{duration, size};

/// The listener's flags, as given.
pub(super) struct Flags<'a> {
    pub bind: SocketAddr,
    pub workers: usize,
    pub max_connections: usize,
    pub max_streams: usize,
    pub max_body: &'a str,
    pub client_idle_timeout: &'a str,
    pub client_write_timeout: &'a str,
}

/// The listener: `worker_wait` is how long a request may wait for a worker (`--request-timeout`,
/// parsed by the caller), `tls` its files from [`tls_files`].
pub(super) fn config(
    f: &Flags,
    worker_wait: Duration,
    tls: Option<TlsFiles>,
) -> Result<ListenConfig, Error> {
    positive("--workers", f.workers)?;
    positive("--max-connections", f.max_connections)?;
    positive("--max-streams", f.max_streams)?;
    let max_body = size("--max-body", f.max_body)?;
    let client_idle_timeout = duration("--client-idle-timeout", f.client_idle_timeout)?;
    let client_write_timeout = duration("--client-write-timeout", f.client_write_timeout)?;
    Ok(ListenConfig {
        bind: f.bind,
        workers: f.workers,
        max_connections: f.max_connections,
        max_streams: f.max_streams,
        max_body,
        client_idle_timeout,
        client_write_timeout,
        worker_wait,
        tls,
    })
}

/// The TLS file flags, as given.
pub(super) struct TlsFlags<'a> {
    pub cert: Option<&'a str>,
    pub key: Option<&'a str>,
    pub client_ca: Option<&'a str>,
    pub client_crl: Option<&'a str>,
    pub admin_cert: Option<&'a str>,
    pub admin_key: Option<&'a str>,
    /// Whether `--admin-bind` was given.
    pub admin_bind: bool,
    pub upstream_ca: Option<&'a str>,
    pub upstream_client_cert: Option<&'a str>,
    pub upstream_client_key: Option<&'a str>,
}

/// The TLS files of each side.
pub(super) struct Tls {
    /// The listener's (`--tls-*`).
    pub listen: Option<TlsFiles>,
    /// The admin listener's (`--admin-tls-*`).
    pub admin: Option<TlsFiles>,
    /// Ours as a client (`--upstream-ca`, `--upstream-client-*`).
    pub client: ClientTlsConfig,
}

/// The TLS files: the listener's, the admin listener's and ours as a client. Pairs come whole;
/// the files themselves are read at start-up, by the part that uses them.
pub(super) fn tls_files(f: &TlsFlags) -> Result<Tls, Error> {
    let path = |p: Option<&str>| p.map(PathBuf::from);
    let pair = |cert: Option<&str>, key: Option<&str>, names: &str| match (path(cert), path(key)) {
        (Some(cert), Some(key)) => Ok(Some((cert, key))),
        (None, None) => Ok(None),
        _ => Err(Error::Config(format!("give {names} together"))),
    };
    let listen = pair(f.cert, f.key, "--tls-cert and --tls-key")?;
    if listen.is_none() && f.client_ca.is_some() {
        return Err(Error::Config(
            "--tls-client-ca needs --tls-cert and --tls-key".into(),
        ));
    }
    if f.client_ca.is_none() && f.client_crl.is_some() {
        return Err(Error::Config(
            "--tls-client-crl needs --tls-client-ca".into(),
        ));
    }
    let listen = listen.map(|(cert, key)| TlsFiles {
        cert,
        key,
        client_ca: path(f.client_ca),
        client_crl: path(f.client_crl),
    });
    let admin = pair(
        f.admin_cert,
        f.admin_key,
        "--admin-tls-cert and --admin-tls-key",
    )?;
    if admin.is_some() && !f.admin_bind {
        return Err(Error::Config("--admin-tls-* need --admin-bind".into()));
    }
    let admin = admin.map(|(cert, key)| TlsFiles {
        cert,
        key,
        client_ca: None,
        client_crl: None,
    });
    let client = pair(
        f.upstream_client_cert,
        f.upstream_client_key,
        "--upstream-client-cert and --upstream-client-key",
    )?;
    let (client_cert, client_key) = client.unzip();
    let client = ClientTlsConfig {
        ca: path(f.upstream_ca),
        client_cert,
        client_key,
    };
    Ok(Tls {
        listen,
        admin,
        client,
    })
}

#[cfg(test)]
mod tests {
    use crate::cli::parse;

    #[test]
    fn tls_flags() {
        let err = |args: &[&str]| parse(args).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err(&["reverse", "--tls-cert", "c.pem"]).contains("together"));
        assert!(err(&["reverse", "--tls-client-ca", "ca.pem"]).contains("needs --tls-cert"));
        assert!(
            err(&[
                "reverse",
                "--tls-cert",
                "c",
                "--tls-key",
                "k",
                "--tls-client-crl",
                "r"
            ])
            .contains("--tls-client-crl needs --tls-client-ca")
        );
        assert!(
            err(&["reverse", "--admin-tls-cert", "c", "--admin-tls-key", "k"])
                .contains("need --admin-bind")
        );
        assert!(err(&["reverse", "--upstream-ca", "ca.pem"]).contains("need an https://"));
        assert!(
            err(&[
                "reverse",
                "--upstream",
                "http://127.0.0.1:1/mcp",
                "--upstream-ca",
                "ca.pem"
            ])
            .contains("need an https://")
        );
        assert!(
            err(&[
                "reverse",
                "--upstream",
                "https://h/mcp",
                "--upstream-client-cert",
                "c"
            ])
            .contains("together")
        );
        let c = parse(&[
            "reverse",
            "--tls-cert",
            "/etc/c.pem",
            "--tls-key",
            "/etc/k.pem",
            "--tls-client-ca",
            "/etc/ca.pem",
            "--tls-client-crl",
            "/etc/crl.pem",
            "--admin-bind",
            "127.0.0.1:0",
            "--admin-tls-cert",
            "/etc/c.pem",
            "--admin-tls-key",
            "/etc/k.pem",
            "--upstream",
            "https://mcp.example/mcp",
            "--upstream-ca",
            "/etc/up-ca.pem",
            "--upstream-client-cert",
            "/etc/me.pem",
            "--upstream-client-key",
            "/etc/me.key",
        ])
        .unwrap();
        let shown = serde_json::to_value(&c).unwrap();
        assert_eq!(shown["tlsCert"], "/etc/c.pem");
        assert_eq!(shown["tlsKey"], "/etc/k.pem");
        assert_eq!(shown["tlsClientCa"], "/etc/ca.pem");
        assert_eq!(shown["tlsClientCrl"], "/etc/crl.pem");
        assert_eq!(shown["adminTlsKey"], "/etc/k.pem");
        assert_eq!(shown["upstreamTls"]["ca"], "/etc/up-ca.pem");
        assert_eq!(shown["upstreamTls"]["clientKey"], "/etc/me.key");
        assert_eq!(c.upstream.name(), "mcp.example");
        let plain = serde_json::to_value(parse(&["reverse"]).unwrap()).unwrap();
        assert_eq!(plain["tlsCert"], serde_json::Value::Null);
        // A CA for an https JWKS URL alone is fine, and is what the JWKS fetch uses.
        let c = parse(&[
            "reverse",
            "--auth-jwt",
            "--jwks-url",
            "https://idp/jwks",
            "--upstream-ca",
            "/etc/idp-ca.pem",
        ])
        .unwrap();
        assert_eq!(
            c.gate.auth.jwks_tls.ca.as_deref(),
            Some(std::path::Path::new("/etc/idp-ca.pem"))
        );
    }
}
