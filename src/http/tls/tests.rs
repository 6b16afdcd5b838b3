use super::*;
use crate::http::write::{Watch, call_timeout};
use crate::http::{Request, Responder, Response, Server, ServerConfig};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::ServerName;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;

const T: Duration = Duration::from_secs(5);

/// A test CA that issues certificates into a temporary directory (removed on drop).
struct Pki {
    dir: PathBuf,
    issuer: Issuer<'static, KeyPair>,
    ca_pem: String,
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Pki {
    fn new(name: &str) -> Pki {
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "shadowcat-tls-unit-{}-{name}-{seq}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        let key = KeyPair::generate().expect("key");
        let ca_pem = params.self_signed(&key).expect("ca").pem();
        std::fs::write(dir.join("ca.pem"), &ca_pem).expect("write ca");
        Pki {
            dir,
            issuer: Issuer::new(params, key),
            ca_pem,
        }
    }

    fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Issues a certificate for `names` (subject alternative names) with common name `cn`;
    /// returns the DER and the paths of the PEM certificate and key, named after `file`.
    fn issue(&self, file: &str, cn: Option<&str>, names: &[&str]) -> (Vec<u8>, PathBuf, PathBuf) {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(cn) = cn {
            params.distinguished_name.push(DnType::CommonName, cn);
        }
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        let (c, k) = (
            self.dir.join(format!("{file}.pem")),
            self.dir.join(format!("{file}.key")),
        );
        std::fs::write(&c, cert.pem()).expect("write cert");
        std::fs::write(&k, key.serialize_pem()).expect("write key");
        (cert.der().to_vec(), c, k)
    }

    fn server_files(&self) -> TlsFiles {
        let (_, cert, key) = self.issue("server", Some("localhost"), &["localhost", "127.0.0.1"]);
        TlsFiles {
            cert,
            key,
            client_ca: None,
            client_crl: None,
        }
    }

    /// A client configuration trusting this CA, with a client certificate if given.
    fn client(&self, auth: Option<(&PathBuf, &PathBuf)>) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            roots.add(c.expect("pem")).expect("root");
        }
        let b = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots);
        let mut config = match auth {
            None => b.with_no_client_auth(),
            Some((c, k)) => b
                .with_client_auth_cert(
                    load_certs(c, "cert").expect("cert"),
                    load_key(k, "key").expect("key"),
                )
                .expect("client auth"),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

type Client = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn connect(addr: std::net::SocketAddr, config: Arc<rustls::ClientConfig>) -> Client {
    let sock = TcpStream::connect(addr).expect("connect");
    sock.set_read_timeout(Some(T)).expect("timeout");
    let name = ServerName::try_from("localhost").expect("name");
    let conn = rustls::ClientConnection::new(config, name).expect("client");
    rustls::StreamOwned::new(conn, sock)
}

/// One GET on `c`; the response as text (status line to body), read until the body is whole.
fn get(c: &mut Client, path: &str) -> std::io::Result<String> {
    write!(c, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n")?;
    c.flush()?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = c.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if body.len() >= len {
                return Ok(text);
            }
        }
    }
}

/// Answers with the client certificate's subject.
fn whoami(req: Request, res: &mut Responder<'_>) {
    let who = req.client_cert.as_deref().unwrap_or("-").to_owned();
    let _ = res.send(Response::new(200).with_body("text/plain", who.into_bytes()));
}

fn tls_server(files: TlsFiles, config: ServerConfig) -> (Server, Arc<Tls>) {
    let tls = Arc::new(Tls::load(files).expect("tls loads"));
    let config = ServerConfig {
        tls: Some(tls.clone()),
        ..config
    };
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    (
        Server::start(l, config, Arc::new(whoami)).expect("start"),
        tls,
    )
}

#[test]
fn principal_is_the_common_name_then_the_first_alt_name_then_the_serial() {
    let pki = Pki::new("names");
    let (der, ..) = pki.issue("a", Some("alice"), &["a.example"]);
    assert_eq!(subject::principal(&der), "alice");
    let (der, ..) = pki.issue("b", None, &["b.example", "c.example"]);
    assert_eq!(subject::principal(&der), "b.example");
    let (der, ..) = pki.issue("c", None, &["10.0.0.7"]);
    assert_eq!(subject::principal(&der), "10.0.0.7");
    let (der, ..) = pki.issue("d", Some("line\nbreak"), &[]);
    assert_eq!(subject::principal(&der), "line?break");
    let (der, ..) = pki.issue("e", None, &[]);
    assert!(subject::principal(&der).starts_with("serial:"));
    // Anything cut short or garbled is read without a panic.
    for end in 0..der.len() {
        let _ = subject::principal(&der[..end]);
    }
    let mut flipped = der.clone();
    for i in 0..flipped.len() {
        flipped[i] ^= 0xff;
        let _ = subject::principal(&flipped);
        flipped[i] ^= 0xff;
    }
    assert_eq!(subject::principal(b"\x30\x84\xff\xff\xff\xff"), "unnamed");
}

#[test]
fn files_that_do_not_load_say_which_and_why() {
    let pki = Pki::new("files");
    let good = pki.server_files();
    let (_, other_cert, _) = pki.issue("other", Some("other"), &["other"]);
    let missing = TlsFiles {
        cert: pki.dir.join("nope.pem"),
        ..good.clone()
    };
    let err = Tls::load(missing).expect_err("missing cert");
    assert!(
        err.starts_with("TLS certificate ") && err.contains("nope.pem"),
        "{err}"
    );
    let swapped = TlsFiles {
        cert: good.key.clone(),
        ..good.clone()
    };
    let err = Tls::load(swapped).expect_err("key as cert");
    assert!(err.contains("no PEM certificate"), "{err}");
    let no_key = TlsFiles {
        key: good.cert.clone(),
        ..good.clone()
    };
    let err = Tls::load(no_key).expect_err("cert as key");
    assert!(err.contains("no PEM private key"), "{err}");
    let mismatched = TlsFiles {
        cert: other_cert,
        ..good.clone()
    };
    let err = Tls::load(mismatched).expect_err("key of another cert");
    assert!(err.contains("and key"), "{err}");
    let bad_ca = TlsFiles {
        client_ca: Some(good.key.clone()),
        client_crl: None,
        ..good
    };
    let err = Tls::load(bad_ca).expect_err("key as CA");
    assert!(err.starts_with("TLS client CA "), "{err}");
}

#[test]
fn requests_over_tls_with_alpn_http11() {
    let pki = Pki::new("serve");
    let (s, _tls) = tls_server(pki.server_files(), ServerConfig::default());
    let mut c = connect(s.local_addr(), pki.client(None));
    let text = get(&mut c, "/a").expect("first");
    assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
    assert!(text.ends_with("\r\n\r\n-"), "{text}");
    assert_eq!(c.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    // Keep-alive: a second request on the same session.
    assert!(
        get(&mut c, "/b")
            .expect("second")
            .starts_with("HTTP/1.1 200 ")
    );
    // A plain-HTTP request on the TLS port is not a handshake: refused, connection closed.
    let mut plain = TcpStream::connect(s.local_addr()).expect("connect");
    plain.set_read_timeout(Some(T)).expect("timeout");
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let mut buf = Vec::new();
    let _ = plain.read_to_end(&mut buf);
    assert!(!buf.starts_with(b"HTTP/1.1 200"), "{buf:?}");
}

#[test]
fn a_stalled_handshake_ends_at_the_deadline_and_holds_no_worker() {
    let pki = Pki::new("stall");
    let config = ServerConfig {
        workers: 1,
        header_timeout: Duration::from_millis(400),
        ..ServerConfig::default()
    };
    let (s, _tls) = tls_server(pki.server_files(), config);
    let mut silent = TcpStream::connect(s.local_addr()).expect("connect");
    // Half a ClientHello: a handshake record header promising 512 bytes, and 5 of them.
    let mut half = TcpStream::connect(s.local_addr()).expect("connect");
    half.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03])
        .expect("write");
    // The one worker is free: a real client is served while both stall.
    let started = Instant::now();
    let mut c = connect(s.local_addr(), pki.client(None));
    assert!(
        get(&mut c, "/")
            .expect("served")
            .starts_with("HTTP/1.1 200 ")
    );
    assert!(started.elapsed() < Duration::from_millis(400));
    for sock in [&mut silent, &mut half] {
        sock.set_read_timeout(Some(T)).expect("timeout");
        let mut buf = [0u8; 64];
        let closed = matches!(sock.read(&mut buf), Ok(0) | Err(_));
        assert!(closed, "a stalled handshake was not closed");
    }
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn client_certificates_are_required_and_name_the_client() {
    let pki = Pki::new("mtls");
    let clients = Pki::new("mtls-clients");
    let files = TlsFiles {
        client_ca: Some(clients.ca_path()),
        client_crl: None,
        ..pki.server_files()
    };
    let (s, _tls) = tls_server(files, ServerConfig::default());
    let (_, alice_cert, alice_key) = clients.issue("alice", Some("alice"), &["alice.example"]);
    let mut c = connect(s.local_addr(), pki.client(Some((&alice_cert, &alice_key))));
    let text = get(&mut c, "/").expect("alice is served");
    assert!(text.ends_with("\r\n\r\nalice"), "{text}");
    // No certificate: the handshake (or the first read after it, in TLS 1.3) fails.
    let mut anon = connect(s.local_addr(), pki.client(None));
    assert!(
        get(&mut anon, "/").is_err(),
        "served without a client certificate"
    );
    // A certificate from a CA the server does not trust: refused too.
    let (_, mallory_cert, mallory_key) = pki.issue("mallory", Some("mallory"), &[]);
    let mut mallory = connect(
        s.local_addr(),
        pki.client(Some((&mallory_cert, &mallory_key))),
    );
    assert!(
        get(&mut mallory, "/").is_err(),
        "served an untrusted certificate"
    );
}

#[test]
fn reload_swaps_the_certificate_for_new_connections_only() {
    let pki = Pki::new("reload");
    let files = pki.server_files();
    let (s, tls) = tls_server(files.clone(), ServerConfig::default());
    let mut before = connect(s.local_addr(), pki.client(None));
    assert!(get(&mut before, "/").is_ok());
    let first = before.conn.peer_certificates().expect("certs")[0].clone();
    // A broken file: the old configuration stays, and the error names the file.
    std::fs::write(&files.cert, "not a certificate").expect("write");
    let err = tls.reload().expect_err("broken file");
    assert!(err.contains("server.pem"), "{err}");
    let mut same = connect(s.local_addr(), pki.client(None));
    assert!(get(&mut same, "/").is_ok());
    assert_eq!(same.conn.peer_certificates().expect("certs")[0], first);
    // A new pair: new connections see it, the old one goes on.
    let (_, cert, key) = pki.issue("server2", Some("localhost"), &["localhost"]);
    std::fs::copy(&cert, &files.cert).expect("copy");
    std::fs::copy(&key, &files.key).expect("copy");
    tls.reload().expect("reload");
    let mut after = connect(s.local_addr(), pki.client(None));
    assert!(get(&mut after, "/").is_ok());
    assert_ne!(after.conn.peer_certificates().expect("certs")[0], first);
    assert!(get(&mut before, "/").is_ok(), "the old connection broke");
}

#[test]
fn the_write_timeout_counts_ciphertext_a_client_does_not_acknowledge() {
    let pki = Pki::new("slow");
    let tls = Tls::load(pki.server_files()).expect("tls");
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let config = pki.client(None);
    // The client completes the handshake, then reads nothing.
    let client = std::thread::spawn(move || {
        let mut c = connect(addr, config);
        let _ = c.conn.complete_io(&mut c.sock);
        std::thread::sleep(Duration::from_secs(4));
        drop(c);
    });
    let (sock, _) = l.accept().expect("accept");
    let timeout = Duration::from_millis(300);
    let (mut t, _) = tls
        .accept(sock, Instant::now() + T, call_timeout(timeout))
        .expect("handshake");
    let mut watch = Watch::default();
    let started = Instant::now();
    let chunk = vec![b'x'; 16 * 1024];
    let err = loop {
        if let Err(e) = watch.write_all(&mut t, &chunk, timeout) {
            break e;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "writes never fail"
        );
    };
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
    assert!(t.sent() > 0);
    drop(t);
    let _ = client.join();
}

/// Records every handshake the layer reports, and answers like [`whoami`].
#[derive(Default)]
struct Handshakes(std::sync::Mutex<Vec<(Handshake, Duration)>>);

impl crate::http::Handler for Handshakes {
    fn handle(&self, req: Request, res: &mut Responder<'_>) {
        whoami(req, res)
    }

    fn tls_handshake(&self, outcome: Handshake, took: Duration) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((outcome, took));
    }
}

#[test]
fn every_handshake_is_reported_once_with_its_outcome_and_duration() {
    let pki = Pki::new("told");
    let tls = Arc::new(Tls::load(pki.server_files()).expect("tls loads"));
    let config = ServerConfig {
        header_timeout: Duration::from_millis(300),
        tls: Some(tls),
        ..ServerConfig::default()
    };
    let told = Arc::new(Handshakes::default());
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let s = Server::start(l, config, told.clone()).expect("start");
    let outcomes = || -> Vec<Handshake> {
        let v = told.0.lock().unwrap_or_else(|e| e.into_inner());
        v.iter().map(|(o, _)| *o).collect()
    };
    let wait_for = |n: usize| {
        let until = Instant::now() + T;
        while outcomes().len() < n && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    // Completed.
    let mut c = connect(s.local_addr(), pki.client(None));
    assert!(
        get(&mut c, "/")
            .expect("served")
            .starts_with("HTTP/1.1 200 ")
    );
    wait_for(1);
    assert_eq!(outcomes(), [Handshake::Ok]);
    // Plain HTTP on the TLS port: refused.
    let mut plain = TcpStream::connect(s.local_addr()).expect("connect");
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    wait_for(2);
    assert_eq!(outcomes(), [Handshake::Ok, Handshake::Failed]);
    // Silent: timed out at the deadline, and its duration says so.
    let _silent = TcpStream::connect(s.local_addr()).expect("connect");
    wait_for(3);
    let v = told.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert_eq!(v.len(), 3, "{v:?}");
    assert_eq!(v[2].0, Handshake::TimedOut);
    assert!(v[2].1 >= Duration::from_millis(290), "{v:?}");
    assert!(v[0].1 < Duration::from_secs(3), "{v:?}");
}
