//! TLS for the tests: [`Pki`], a test CA made at run time (rcgen) that issues server and
//! client certificates into a temporary directory (no private key is ever committed), and
//! [`tls_conn`], a [`Conn`] over a rustls client session.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use super::{Conn, TempDir, Wire};

/// A test certificate authority and the files it issued.
pub struct Pki {
    dir: TempDir,
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate (PEM).
    pub ca: PathBuf,
}

impl Pki {
    /// A new CA whose common name is `"{name} test CA"`.
    pub fn new(name: &str) -> Pki {
        let dir = TempDir::new(&format!("pki-{name}"));
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        let key = KeyPair::generate().expect("key");
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, params.self_signed(&key).expect("ca").pem()).expect("write ca");
        Pki {
            dir,
            issuer: Issuer::new(params, key),
            ca,
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Issues `file.pem` and `file.key` (ECDSA P-256): common name `cn` (if any), subject
    /// alternative names `sans` (IP addresses or DNS names). Returns their paths.
    pub fn issue(&self, file: &str, cn: Option<&str>, sans: &[&str]) -> (PathBuf, PathBuf) {
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).expect("params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(cn) = cn {
            params.distinguished_name.push(DnType::CommonName, cn);
        }
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        let c = self.dir.path().join(format!("{file}.pem"));
        let k = self.dir.path().join(format!("{file}.key"));
        std::fs::write(&c, cert.pem()).expect("write cert");
        std::fs::write(&k, key.serialize_pem()).expect("write key");
        (c, k)
    }

    /// A client certificate `file.pem`/`file.key` with common name `cn` and serial number
    /// `serial` (what a CRL names it by).
    pub fn client_cert(&self, file: &str, cn: &str, serial: u64) -> (PathBuf, PathBuf) {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.serial_number = Some(rcgen::SerialNumber::from(serial));
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        let c = self.dir.path().join(format!("{file}.pem"));
        let k = self.dir.path().join(format!("{file}.key"));
        std::fs::write(&c, cert.pem()).expect("write cert");
        std::fs::write(&k, key.serialize_pem()).expect("write key");
        (c, k)
    }

    /// Writes `file` (PEM), a CRL of this CA revoking the certificates with these serial
    /// numbers (valid from 2020 to 2100); returns its path.
    pub fn crl(&self, file: &str, revoked: &[u64]) -> PathBuf {
        let params = rcgen::CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2020, 1, 1),
            next_update: rcgen::date_time_ymd(2100, 1, 1),
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|&serial| rcgen::RevokedCertParams {
                    serial_number: rcgen::SerialNumber::from(serial),
                    revocation_time: rcgen::date_time_ymd(2024, 1, 1),
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.issuer).expect("crl");
        let path = self.dir.path().join(file);
        std::fs::write(&path, crl.pem().expect("pem")).expect("write crl");
        path
    }

    /// A server certificate for `localhost` and `127.0.0.1`.
    pub fn server(&self, file: &str) -> (PathBuf, PathBuf) {
        self.issue(file, Some("localhost"), &["localhost", "127.0.0.1"])
    }

    /// A rustls client configuration trusting this CA, showing `auth` (cert, key) if given.
    pub fn client(&self, auth: Option<(&Path, &Path)>) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(&self.ca).expect("ca") {
            roots.add(c.expect("pem")).expect("root");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let b = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots);
        let mut config = match auth {
            None => b.with_no_client_auth(),
            Some((c, k)) => b
                .with_client_auth_cert(
                    CertificateDer::pem_file_iter(c)
                        .expect("cert")
                        .collect::<Result<_, _>>()
                        .expect("cert"),
                    PrivateKeyDer::from_pem_file(k).expect("key"),
                )
                .expect("client auth"),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

/// A client TLS session over a socket.
pub type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

impl Wire for TlsStream {
    fn socket(&self) -> &TcpStream {
        &self.sock
    }

    fn peer_cert(&self) -> Option<Vec<u8>> {
        let certs = self.conn.peer_certificates()?;
        certs.first().map(|c| c.as_ref().to_vec())
    }
}

/// Connects to `addr` (as `localhost`) and completes the handshake; Err: why it failed. With
/// TLS 1.3 a refused client certificate shows only on the first read after the handshake.
pub fn tls_stream(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream> {
    let sock = TcpStream::connect(addr)?;
    sock.set_read_timeout(Some(Duration::from_secs(30)))?;
    sock.set_nodelay(true)?;
    let name = ServerName::try_from("localhost").expect("name");
    let conn = rustls::ClientConnection::new(config, name).map_err(std::io::Error::other)?;
    let mut s = rustls::StreamOwned::new(conn, sock);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock)?;
    }
    Ok(s)
}

/// A keep-alive [`Conn`] over TLS to `addr`.
pub fn tls_conn(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> Conn {
    Conn::over(
        addr,
        Box::new(tls_stream(addr, config).expect("TLS handshake")),
    )
}
