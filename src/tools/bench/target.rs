//! Where the bench sends requests: the [`Target`] parsed from `--url` and the TLS client
//! configuration of an `https://` run.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::ServerName;

use super::error::BenchError;
use super::{cfg, header_safe};

/// Where requests go.
#[derive(Debug)]
pub(super) struct Target {
    /// `host[:port]` as written, for the Host header.
    pub(super) authority: String,
    /// Path and query.
    pub(super) path: String,
    /// Resolved addresses, tried in order.
    pub(super) addrs: Vec<SocketAddr>,
    /// For an `https://` URL: the name the server's certificate must carry (and SNI).
    pub(super) tls_name: Option<ServerName<'static>>,
}

/// The rustls client configuration of an `https://` run: TLS 1.2 and 1.3, ALPN `http/1.1`,
/// trusting the certificates in `ca` (default: the system's bundle).
pub(super) fn tls_client(ca: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, BenchError> {
    let ca = ca.unwrap_or(Path::new(SYSTEM_CA));
    let mut roots = rustls::RootCertStore::empty();
    for c in crate::http::load_certs(ca, "--ca").map_err(cfg)? {
        roots
            .add(c)
            .map_err(|e| cfg(format!("--ca {}: {e}", ca.display())))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| cfg(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The CA bundle of Debian and its kin, trusted for `https://` without `--ca`.
pub(super) const SYSTEM_CA: &str = "/etc/ssl/certs/ca-certificates.crt";

impl Target {
    /// Parses `http(s)://host[:port][/path]`, resolves it, and refuses non-loopback addresses
    /// unless `allow_remote`.
    pub(super) fn parse(url: &str, allow_remote: bool) -> Result<Target, BenchError> {
        let scheme = |s: &str| {
            url.get(..s.len())
                .filter(|p| p.eq_ignore_ascii_case(s))
                .map(|_| &url[s.len()..])
        };
        let (rest, tls) = match (scheme("http://"), scheme("https://")) {
            (Some(rest), _) => (rest, false),
            (_, Some(rest)) => (rest, true),
            _ => {
                return Err(cfg(format!(
                    "--url must be an http:// or https:// URL (got {url:?})"
                )));
            }
        };
        let rest = rest.split('#').next().unwrap_or("");
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_string()),
        };
        if authority.is_empty() || authority.contains('@') || !header_safe(authority) {
            return Err(cfg(format!("--url {url:?}: bad host")));
        }
        if !header_safe(&path) || path.contains(' ') {
            return Err(cfg(format!("--url {url:?}: bad path")));
        }
        let (host, port) = split_host_port(authority, if tls { 443 } else { 80 })
            .ok_or_else(|| cfg(format!("--url {url:?}: bad host or port")))?;
        let tls_name = if tls {
            let name = ServerName::try_from(host.trim_matches(['[', ']']))
                .map_err(|e| cfg(format!("--url {url:?}: {e}")))?;
            Some(name.to_owned())
        } else {
            None
        };
        let addrs: Vec<SocketAddr> = (host, port)
            .to_socket_addrs()
            .map_err(|e| cfg(format!("--url: cannot resolve {host}: {e}")))?
            .collect();
        if addrs.is_empty() {
            return Err(cfg(format!("--url: {host} resolves to no address")));
        }
        if !allow_remote && let Some(a) = addrs.iter().find(|a| !a.ip().is_loopback()) {
            let ip = a.ip().to_string();
            let resolved = if ip == host.trim_matches(['[', ']']) {
                String::new()
            } else {
                format!(" (resolves to {ip})")
            };
            return Err(cfg(format!(
                "--url {url}: {host} is not a loopback address{resolved}; \
                     pass --allow-remote to load a remote server"
            )));
        }
        Ok(Target {
            authority: authority.to_string(),
            path,
            addrs,
            tls_name,
        })
    }
}

/// `host`, `host:port`, `[v6]`, `[v6]:port` (default port `default_port`).
fn split_host_port(authority: &str, default_port: u16) -> Option<(&str, u16)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        match after {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':')?)),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    let port = match port {
        Some(p) => p.parse().ok()?,
        None => default_port,
    };
    Some((host, port))
}
