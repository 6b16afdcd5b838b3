//! TLS as a client, to an `https://` upstream and to `--jwks-url`: ureq's settings built from
//! [`ClientTlsConfig`] (files read and checked once, at start-up), and the words for a TLS
//! failure.
//!
//! * **Roots:** the Mozilla root certificates built into the binary (the `webpki-roots` crate,
//!   ureq's default with its `rustls` feature; no crate that reads the system's store is in
//!   the tree), or with `--upstream-ca FILE` only the certificates in that file (pass
//!   `/etc/ssl/certs/ca-certificates.crt` for the system's, or a bundle with both).
//! * **Client certificate** (`--upstream-client-cert`, `--upstream-client-key`): shown when the
//!   server asks for one. Chain and key are checked here to match, because ureq panics on a
//!   client certificate rustls refuses.
//! * SNI and hostname (or IP address) verification are always on; there is no way to turn
//!   verification off. TLS 1.2 and 1.3, rustls's defaults, the `ring` provider.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;
use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig, TlsProvider};

use crate::error::Error;
use crate::http::{load_certs, load_key, read_pem};

/// TLS as a client (to an `https://` upstream, and to `--jwks-url`): SNI and hostname
/// verification always on, TLS 1.2 and 1.3.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientTlsConfig {
    /// `--upstream-ca`: the only certificates trusted as roots (PEM). Default none: the
    /// Mozilla roots built in (`webpki-roots`).
    #[serde(serialize_with = "path")]
    pub ca: Option<PathBuf>,
    /// `--upstream-client-cert`: certificate chain shown when the server asks for one (mTLS).
    /// Default none.
    #[serde(serialize_with = "path")]
    pub client_cert: Option<PathBuf>,
    /// `--upstream-client-key`: its private key. Default none.
    #[serde(serialize_with = "path")]
    pub client_key: Option<PathBuf>,
}

/// A file path as `/admin/config` shows it (null when none).
fn path<S: serde::Serializer>(p: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
    match p {
        Some(p) => s.serialize_str(&p.display().to_string()),
        None => s.serialize_none(),
    }
}

/// ureq's TLS settings for `cfg`; a file that does not load is a configuration error naming it.
pub(crate) fn tls_config(cfg: &ClientTlsConfig) -> Result<TlsConfig, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = match &cfg.ca {
        None => RootCerts::WebPki,
        Some(path) => {
            let certs = load_certs(path, "--upstream-ca").map_err(Error::Config)?;
            let mut store = rustls::RootCertStore::empty();
            for c in &certs {
                store
                    .add(c.clone())
                    .map_err(|e| Error::Config(format!("--upstream-ca {}: {e}", path.display())))?;
            }
            RootCerts::new_with_certs(
                &certs
                    .iter()
                    .map(|c| Certificate::from_der(c.as_ref()).to_owned())
                    .collect::<Vec<_>>(),
            )
        }
    };
    let client_cert = match (&cfg.client_cert, &cfg.client_key) {
        (Some(cert), Some(key)) => {
            let chain = load_certs(cert, "--upstream-client-cert").map_err(Error::Config)?;
            let key_der = load_key(key, "--upstream-client-key").map_err(Error::Config)?;
            rustls::sign::CertifiedKey::from_der(chain.clone(), key_der.clone_key(), &provider)
                .map_err(|e| {
                    Error::Config(format!(
                        "--upstream-client-cert {} and --upstream-client-key {}: {e}",
                        cert.display(),
                        key.display()
                    ))
                })?;
            // ureq does not export its key kinds: it reads the PEM itself (the same first key).
            let pem = read_pem(key, "--upstream-client-key").map_err(Error::Config)?;
            let key = PrivateKey::from_pem(&pem).map_err(|e| {
                Error::Config(format!("--upstream-client-key {}: {e}", key.display()))
            })?;
            let chain: Vec<_> = chain
                .iter()
                .map(|c| Certificate::from_der(c.as_ref()).to_owned())
                .collect();
            Some(ClientCert::new_with_certs(&chain, key))
        }
        _ => None,
    };
    Ok(TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .root_certs(roots)
        .client_cert(client_cert)
        .use_sni(true)
        .disable_verification(false)
        .unversioned_rustls_crypto_provider(provider)
        .build())
}

/// The rustls error somewhere in `e`'s chain of causes, if it is a TLS failure.
fn rustls_cause<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut at = Some(e);
    while let Some(e) = at {
        if let Some(r) = e.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        if let Some(ureq::Error::Rustls(r)) = e.downcast_ref::<ureq::Error>() {
            return Some(r);
        }
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|i| i.downcast_ref::<rustls::Error>())
        {
            return Some(inner);
        }
        if let Some(ureq::Error::Io(io)) = e.downcast_ref::<ureq::Error>()
            && let Some(inner) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>())
        {
            return Some(inner);
        }
        at = e.source();
    }
    None
}

/// A TLS failure said plainly: what rustls reported and what to check. `None` if `e` is not
/// a TLS failure.
pub(crate) fn describe_failure(
    e: &(dyn std::error::Error + 'static),
    cfg: &ClientTlsConfig,
) -> Option<String> {
    use rustls::AlertDescription as A;
    let r = rustls_cause(e)?;
    // Clients see this message: the roots are named by flag, not by file path.
    let roots = match &cfg.ca {
        Some(_) => "the CAs in --upstream-ca",
        None => "the built-in Mozilla roots (--upstream-ca names others)",
    };
    Some(match r {
        rustls::Error::InvalidCertificate(_) => {
            format!("TLS: the server's certificate was refused: {r}; trusted: {roots}")
        }
        rustls::Error::AlertReceived(
            A::CertificateRequired | A::BadCertificate | A::UnknownCA | A::AccessDenied,
        ) => {
            let ours = if cfg.client_cert.is_some() {
                "ours (--upstream-client-cert) was refused"
            } else {
                "none was given (--upstream-client-cert, --upstream-client-key)"
            };
            format!("TLS: the server wants a client certificate it accepts: {r}; {ours}")
        }
        _ => format!("TLS: {r}"),
    })
}

/// A TLS failure as the source of an [`Error::UpstreamUnreachable`].
#[derive(Debug)]
pub(crate) struct TlsFailure(pub(crate) String);

impl std::fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsFailure {}
