//! Issue #16, the remaining gaps: TLS handshake metrics on `/metrics`, and client
//! certificates revoked by a CRL (`--tls-client-crl`), re-read on SIGHUP.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use crate::support::*;

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// One sample of `/metrics`, by exact series name and labels.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn tls_handshakes_by_outcome_and_their_duration_are_in_the_metrics() {
    let pki = Pki::new("metrics");
    let (cert, key) = pki.server("server");
    let p = demo_proxy(&["--tls-cert", &s(&cert), "--tls-key", &s(&key)]);
    let addr = p.local_addr();
    // One completed handshake (this connection), one refused: plain HTTP on the TLS port.
    let mut c = tls_conn(addr, pki.client(None));
    assert_eq!(c.request("GET", "/healthz", &[], b"").status, 200);
    let mut plain = TcpStream::connect(addr).expect("connect");
    plain.set_read_timeout(Some(Duration::from_secs(5))).ok();
    plain
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let mut buf = Vec::new();
    let _ = plain.read_to_end(&mut buf);
    assert!(!buf.starts_with(b"HTTP/1.1 200"), "served over plain HTTP");
    // Told after the connection ends: poll until the refused one is counted.
    let until = std::time::Instant::now() + Duration::from_secs(5);
    let text = loop {
        let text = c.request("GET", "/metrics", &[], b"").text();
        let failed = sample(&text, "shadowcat_tls_handshakes_total{outcome=\"failed\"}");
        if failed == Some(1.0) || std::time::Instant::now() > until {
            break text;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let get = |series: &str| sample(&text, series).unwrap_or_else(|| panic!("{series}: {text}"));
    assert_eq!(get("shadowcat_tls_handshakes_total{outcome=\"ok\"}"), 1.0);
    assert_eq!(
        get("shadowcat_tls_handshakes_total{outcome=\"failed\"}"),
        1.0
    );
    assert_eq!(
        get("shadowcat_tls_handshakes_total{outcome=\"timed_out\"}"),
        0.0
    );
    assert_eq!(get("shadowcat_tls_handshake_duration_seconds_count"), 2.0);
    assert_eq!(
        get("shadowcat_tls_handshake_duration_seconds_bucket{le=\"+Inf\"}"),
        2.0
    );
    let sum = get("shadowcat_tls_handshake_duration_seconds_sum");
    assert!(sum > 0.0 && sum < 10.0, "{sum}");
    // A plain listener has no TLS families.
    let q = demo_proxy(&[]);
    let text = get_metrics(q.local_addr());
    assert!(!text.contains("shadowcat_tls_"), "{text}");
}

fn get_metrics(addr: std::net::SocketAddr) -> String {
    Conn::open(addr).request("GET", "/metrics", &[], b"").text()
}

/// Whether a TLS client with `auth` gets an answer to a GET (the handshake, or in TLS 1.3 the
/// first read after it, fails for a refused certificate).
fn served(addr: std::net::SocketAddr, pki: &Pki, auth: (&Path, &Path)) -> bool {
    let got = tls_stream(addr, pki.client(Some(auth))).and_then(|mut t| {
        t.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")?;
        t.flush()?;
        let mut b = [0u8; 64];
        t.read(&mut b).map(|n| b[..n].starts_with(b"HTTP/1.1 200"))
    });
    matches!(got, Ok(true))
}

#[test]
fn a_client_certificate_the_crl_revokes_is_refused_another_passes() {
    let pki = Pki::new("crl");
    let clients = Pki::new("crl-clients");
    let (cert, key) = pki.server("server");
    let (alice, alice_key) = clients.client_cert("alice", "alice", 0x1001);
    let (bob, bob_key) = clients.client_cert("bob", "bob", 0x1002);
    let crl = clients.crl("crl.pem", &[0x1002]);
    let p = demo_proxy(&[
        "--tls-cert",
        &s(&cert),
        "--tls-key",
        &s(&key),
        "--tls-client-ca",
        &s(&clients.ca),
        "--tls-client-crl",
        &s(&crl),
        "--admin-bind",
        "127.0.0.1:0",
    ]);
    let addr = p.local_addr();
    assert!(served(addr, &pki, (&alice, &alice_key)), "alice refused");
    assert!(!served(addr, &pki, (&bob, &bob_key)), "revoked bob served");
    // Alice works end to end, as the principal her certificate names.
    let mut c = tls_conn(addr, pki.client(Some((&alice, &alice_key))));
    let sid = c.initialize();
    let owner = p.proxy().sessions().list();
    assert!(
        owner
            .iter()
            .any(|x| x.id == sid && x.principal.as_deref() == Some("cert:alice")),
        "{owner:?}"
    );
    // The refusal is counted; the admin API shows the CRL by path.
    let text = c.request("GET", "/metrics", &[], b"").text();
    assert!(
        sample(&text, "shadowcat_tls_handshakes_total{outcome=\"failed\"}").unwrap_or(0.0) >= 1.0,
        "{text}"
    );
    let cfg = get(p.admin_addr().expect("admin"), "/admin/config", &[]).json();
    assert_eq!(cfg["tlsClientCrl"], s(&crl).as_str());

    // A certificate from a second trusted CA the CRL file does not cover: refused too (fail
    // closed: unknown revocation status).
    let others = Pki::new("crl-others");
    let both = clients.dir().join("both-cas.pem");
    let mut pem = std::fs::read(&clients.ca).expect("ca");
    pem.extend(std::fs::read(&others.ca).expect("ca"));
    std::fs::write(&both, pem).expect("write");
    let q = demo_proxy(&[
        "--tls-cert",
        &s(&cert),
        "--tls-key",
        &s(&key),
        "--tls-client-ca",
        &s(&both),
        "--tls-client-crl",
        &s(&crl),
    ]);
    let (carol, carol_key) = others.client_cert("carol", "carol", 0x1001);
    assert!(served(q.local_addr(), &pki, (&alice, &alice_key)));
    assert!(!served(q.local_addr(), &pki, (&carol, &carol_key)));
}

#[test]
fn a_crl_file_that_does_not_load_is_a_startup_error_naming_it() {
    let pki = Pki::new("crl-bad");
    let (cert, key) = pki.server("server");
    let bad = pki.dir().join("not-a-crl.pem");
    std::fs::write(&bad, std::fs::read(&pki.ca).expect("ca")).expect("write");
    let cfg = config(&[
        "--tls-cert",
        &s(&cert),
        "--tls-key",
        &s(&key),
        "--tls-client-ca",
        &s(&pki.ca),
        "--tls-client-crl",
        &s(&bad),
    ]);
    let err = match shadowcat::Shadowcat::start(cfg) {
        Ok(_) => panic!("started with a CRL file holding no CRL"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("TLS client CRL") && err.contains("not-a-crl.pem") && err.contains("X509 CRL"),
        "{err}"
    );
}

#[test]
fn sighup_rereads_the_crl() {
    let pki = Pki::new("crl-hup");
    let clients = Pki::new("crl-hup-clients");
    let (cert, key) = pki.server("server");
    let (alice, alice_key) = clients.client_cert("alice", "alice", 0x2001);
    let (bob, bob_key) = clients.client_cert("bob", "bob", 0x2002);
    let crl = clients.crl("crl.pem", &[]);
    let (peer, addr) = spawn_proxy(
        &[
            "--tls-cert",
            &s(&cert),
            "--tls-key",
            &s(&key),
            "--tls-client-ca",
            &s(&clients.ca),
            "--tls-client-crl",
            &s(&crl),
        ],
        std::process::Stdio::null(),
        &[],
    );
    assert!(served(addr, &pki, (&alice, &alice_key)));
    assert!(served(addr, &pki, (&bob, &bob_key)));
    // An open connection of Alice's survives her revocation (revocation is checked at the
    // handshake); her new connections are refused once the new CRL is read.
    let mut open = tls_conn(addr, pki.client(Some((&alice, &alice_key))));
    assert_eq!(open.request("GET", "/healthz", &[], b"").status, 200);
    let revoked = clients.crl("revoked.pem", &[0x2001]);
    std::fs::copy(&revoked, &crl).expect("copy");
    // SAFETY: signals a child process this test started and still owns.
    let rc = unsafe { libc::kill(peer.0.id() as i32, libc::SIGHUP) };
    assert_eq!(rc, 0);
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while served(addr, &pki, (&alice, &alice_key)) {
        assert!(std::time::Instant::now() < until, "the new CRL is not used");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(served(addr, &pki, (&bob, &bob_key)), "bob refused");
    assert_eq!(open.request("GET", "/healthz", &[], b"").status, 200);
}
