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
