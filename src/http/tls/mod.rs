//! TLS on a listener: the rustls server configuration built from PEM files, re-read on demand
//! (SIGHUP), and the handshake, run on the connection's own thread under a deadline.
//!
//! * **Configuration:** rustls's safe defaults (TLS 1.2 and 1.3, its default cipher suites and
//!   key exchange groups, the `ring` provider), ALPN `http/1.1` only (a client that offers ALPN
//!   without it is refused with `no_application_protocol`), one certificate chain and key
//!   ([`TlsFiles`]: PKCS#8, PKCS#1 or SEC1 keys; the key must match the certificate).
//! * **Client certificates (mTLS):** with `client_ca`, every client must present a certificate
//!   that chains to one of its certificates, or the handshake fails. The certificate's subject
//!   ([`subject::principal`]: common name, else first subject alternative name) is handed to
//!   every request of the connection as [`Request::client_cert`](crate::http::Request).
//!   With `client_crl` (PEM CRLs, rustls's `WebPkiClientVerifier` policy): a certificate of the
//!   client's chain that a CRL revokes fails the handshake, and so does one whose status no CRL
//!   in the file covers (fail closed: the file needs a CRL from every CA that issues client
//!   certificates or intermediates). A CRL past its `nextUpdate` is still used.
//! * **Reload:** [`Tls::reload`] builds a whole new configuration from the same files (CRLs
//!   included) and swaps it in; connections already open keep the session they have, new ones
//!   get the new configuration. A file that does not load leaves the old configuration in
//!   place.
//! * **Handshake** ([`Tls::accept`]): on the connection's thread, before any request is read and
//!   before any worker permit is asked for, under one deadline for the whole handshake (the
//!   server's `header_timeout`, 10 s by default, counted from when the thread took the
//!   connection). Each socket read and write waits at most what is left of it, so a client that
//!   sends nothing, half a ClientHello or one byte at a time holds only its own connection
//!   thread, and only until the deadline.
//!
//! The certificate subject parsing is in `tls/subject.rs`; unit tests in `tls/tests.rs`.

use std::fmt;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use rustls::ServerConnection;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

use super::transport::{Counted, Transport, drain};

pub(crate) mod subject;

/// Largest certificate, key or CA file read.
const MAX_PEM_FILE: u64 = 1024 * 1024;

/// The files a TLS listener is configured from (PEM).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key of the leaf certificate.
    pub key: PathBuf,
    /// Certificates of the CAs client certificates must chain to: with it, every client needs
    /// one (mTLS). Default none.
    pub client_ca: Option<PathBuf>,
    /// Certificate revocation lists (PEM `X509 CRL`) for the client certificates: a client whose
    /// certificate, or a CA certificate of its chain, is revoked, or whose revocation status
    /// none of them covers, is refused. Only with `client_ca`. Default none.
    pub client_crl: Option<PathBuf>,
}

/// How a handshake ended, as told to [`Handler::tls_handshake`](crate::http::Handler).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handshake {
    /// Completed: the connection goes on to its requests.
    Ok,
    /// Refused by either side, closed by the client, or a socket error.
    Failed,
    /// Not complete by the deadline (the server's `header_timeout`).
    TimedOut,
}

/// Why [`Tls::accept`] failed: the outcome and, for the debug log, what happened.
#[derive(Debug)]
pub(crate) struct HandshakeError {
    pub outcome: Handshake,
    pub why: String,
}

impl From<String> for HandshakeError {
    fn from(why: String) -> HandshakeError {
        HandshakeError {
            outcome: Handshake::Failed,
            why,
        }
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.why)
    }
}

fn timed_out_error() -> HandshakeError {
    HandshakeError {
        outcome: Handshake::TimedOut,
        why: "handshake timed out".into(),
    }
}

/// A listener's TLS configuration, swappable while the server runs.
pub struct Tls {
    files: TlsFiles,
    current: RwLock<Arc<rustls::ServerConfig>>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls").field("files", &self.files).finish()
    }
}

/// The crypto provider of every configuration: rustls's `ring` provider, with its defaults.
fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// Reads a PEM file of at most [`MAX_PEM_FILE`] bytes.
pub(crate) fn read_pem(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| format!("{what} {}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{what} {}: {e}", path.display()))?;
    if bytes.len() as u64 > MAX_PEM_FILE {
        return Err(format!(
            "{what} {}: larger than {MAX_PEM_FILE} bytes",
            path.display()
        ));
    }
    Ok(bytes)
}

/// The certificates of a PEM file, in order; at least one.
pub(crate) fn load_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read_pem(path, what)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{what} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{what} {}: no PEM certificate (BEGIN CERTIFICATE) in it",
            path.display()
        ));
    }
    Ok(certs)
}

/// The first private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub(crate) fn load_key(path: &Path, what: &str) -> Result<PrivateKeyDer<'static>, String> {
    let pem = read_pem(path, what)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => format!(
            "{what} {}: no PEM private key (BEGIN PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY) in it",
            path.display()
        ),
        e => format!("{what} {}: {e}", path.display()),
    })
}

/// The certificate revocation lists of a PEM file (`BEGIN X509 CRL`), in order; at least one.
fn load_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, String> {
    let what = "TLS client CRL";
    let pem = read_pem(path, what)?;
    let crls = CertificateRevocationListDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{what} {}: {e}", path.display()))?;
    if crls.is_empty() {
        return Err(format!(
            "{what} {}: no PEM certificate revocation list (BEGIN X509 CRL) in it",
            path.display()
        ));
    }
    Ok(crls)
}

/// Builds a server configuration from the files.
fn build(files: &TlsFiles) -> Result<rustls::ServerConfig, String> {
    let certs = load_certs(&files.cert, "TLS certificate")?;
    let key = load_key(&files.key, "TLS key")?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in load_certs(ca, "TLS client CA")? {
                roots
                    .add(c)
                    .map_err(|e| format!("TLS client CA {}: {e}", ca.display()))?;
            }
            let mut verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
            if let Some(crl) = &files.client_crl {
                verifier = verifier.with_crls(load_crls(crl)?);
            }
            let verifier = verifier.build().map_err(|e| match &files.client_crl {
                Some(crl) => format!(
                    "TLS client CA {} or CRL {}: {e}",
                    ca.display(),
                    crl.display()
                ),
                None => format!("TLS client CA {}: {e}", ca.display()),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        format!(
            "TLS certificate {} and key {}: {e}",
            files.cert.display(),
            files.key.display()
        )
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

impl Tls {
    /// Loads the files (a failure names the file and why).
    pub fn load(files: TlsFiles) -> Result<Tls, String> {
        let config = build(&files)?;
        Ok(Tls {
            files,
            current: RwLock::new(Arc::new(config)),
        })
    }

    /// The files it loads from.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// Re-reads the files; connections made from now on use them. On failure the configuration
    /// in use stays, and the error says which file and why.
    pub fn reload(&self) -> Result<(), String> {
        let config = build(&self.files)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
        Ok(())
    }

    fn config(&self) -> Arc<rustls::ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Runs the server side of a handshake on `sock` until it completes or `deadline` passes;
    /// returns the connection's stream, with the socket's write timeout set back to
    /// `write_timeout`, and the verified client certificate's subject (mTLS). Err: why it failed
    /// (timed out, closed, refused by either side), for the debug log. When we refuse the
    /// handshake, the alert saying why is sent, the write side closed and the input drained
    /// (at most 500 ms), so the client reads the alert (say, "certificate required") rather
    /// than a reset when its first request crosses our close.
    pub(crate) fn accept(
        &self,
        sock: TcpStream,
        deadline: Instant,
        write_timeout: Duration,
    ) -> Result<(Transport, Option<Arc<str>>), HandshakeError> {
        let mut conn = ServerConnection::new(self.config()).map_err(|e| e.to_string())?;
        let mut sent = 0u64;
        let timed_out = |e: &std::io::Error| {
            matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            )
        };
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(timed_out_error());
            }
            if conn.wants_write() {
                sock.set_write_timeout(Some(left))
                    .map_err(|e| e.to_string())?;
                let mut out = Counted {
                    sock: &sock,
                    sent: &mut sent,
                };
                match conn.write_tls(&mut out) {
                    Ok(_) => continue,
                    Err(e) if timed_out(&e) => return Err(timed_out_error()),
                    Err(e) => return Err(format!("while writing: {e}").into()),
                }
            }
            if !conn.is_handshaking() {
                break;
            }
            sock.set_read_timeout(Some(left))
                .map_err(|e| e.to_string())?;
            match conn.read_tls(&mut &sock) {
                Ok(0) => return Err(String::from("closed by the client").into()),
                Ok(_) => {}
                Err(e) if timed_out(&e) => return Err(timed_out_error()),
                Err(e) => return Err(format!("while reading: {e}").into()),
            }
            if let Err(e) = conn.process_new_packets() {
                // Send the alert rustls queued (best-effort), so the client learns why.
                let _ = sock.set_write_timeout(Some(Duration::from_millis(100)));
                let _ = conn.write_tls(&mut Counted {
                    sock: &sock,
                    sent: &mut sent,
                });
                let _ = sock.shutdown(std::net::Shutdown::Write);
                drain(&sock);
                return Err(e.to_string().into());
            }
        }
        sock.set_write_timeout(Some(write_timeout))
            .map_err(|e| e.to_string())?;
        let subject = conn
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|leaf| Arc::<str>::from(subject::principal(leaf.as_ref())));
        Ok((Transport::tls(sock, conn, sent), subject))
    }
}

#[cfg(test)]
mod tests;
